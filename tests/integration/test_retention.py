"""Retention and erasure on SQLite and PostgreSQL: what is removed is gone from every
table of the store and the registry (and from the SQLite files' bytes), what must stay
(protocol, allocation, reports' records, audit) stays, and each act is in the audit log."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from experiments.access import AuditEntry
from experiments.cli.app import app
from experiments.database import registry_engine
from experiments.enrollment.assignments import enrolled_classes
from experiments.enrollment.files import EnrollmentDesign
from experiments.enrollment.withdrawal import withdraw
from experiments.errors import RetentionError
from experiments.privacy.retention import (
    erase_class,
    erase_learner,
    purge_due,
    purge_experiment,
    purges,
    store_exists,
)
from experiments.protocol.language import load_protocol
from experiments.settings import Settings
from experiments.store import ExperimentStore
from ingest.pseudonym import load_pseudonym_key
from ingest.receipts import receipts
from ingest.stream.parking import ParkedEvent, count_parked, park
from tests.conftest import SettingsFactory
from tests.support.trial import EXPERIMENT, PROTOCOL, Trial, build_trial, every_row_text
from tests.support.worker import settings_env

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(make_settings: SettingsFactory, request: pytest.FixtureRequest) -> Settings:
    """A registry and stores on SQLite, then on PostgreSQL."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return make_settings(database_url=url)


@pytest.fixture
def trial(settings: Settings) -> Trial:
    """The trial of tests/support/trial.py, with a gateway receipt for each of its events."""
    built = build_trial(settings)
    _add_receipts(settings, built.event_ids)
    return built


def _text(settings: Settings) -> str:
    engines = [registry_engine(settings)]
    if store_exists(settings, EXPERIMENT):
        engines.append(ExperimentStore(settings, EXPERIMENT).engine)
    text = every_row_text(settings, engines)
    if settings.database_url is None:  # the SQLite files' bytes: free pages, WAL
        for path in settings.state_dir.rglob("*.sqlite*"):
            text += path.read_bytes().decode("latin-1")
    return text


def _audit(settings: Settings, action: str) -> list[AuditEntry]:
    with sa.orm.Session(registry_engine(settings)) as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def _add_receipts(settings: Settings, event_ids: set[str]) -> None:
    with registry_engine(settings).begin() as connection:
        connection.execute(receipts.insert(), [
            {"event_id": e, "content_sha256": "0" * 64, "resource_id": "lectio",
             "state": "confirmed", "received_at": datetime.now(UTC)} for e in event_ids])


def test_erasing_a_pupil_and_a_class_leaves_nothing_of_them(
    settings: Settings, trial: Trial
) -> None:
    registry = registry_engine(settings)
    design = EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))
    pupil_class, class_gone = sorted(trial.classes)[:2]
    pupil = trial.learners[pupil_class][3]
    key = trial.key(pupil)
    withdraw(registry, design, pupil_class, reason="parents' request", actor="academie:v:t",
             learner_id=pupil, key=load_pseudonym_key(settings))
    withdraw(registry, design, class_gone, reason="teacher left", actor="academie:v:t")
    park(registry, [ParkedEvent("11111111-1111-4111-8111-111111111111", class_gone, "lectio",
                                "preuve.events", 0, 5)], datetime.now(UTC))
    before = _text(settings)
    assert key in before and class_gone in before, "the fixture must hold what is erased"

    done = erase_learner(settings, EXPERIMENT, pupil, actor="admin:*:test",
                         reason="CNIL request 2029-17")
    assert done.removed["events"] == 6 and done.removed["daily_usage"] >= 1
    assert done.removed["receipts"] == 6 and done.removed["withdrawal_pupil_ids"] == 1
    text = _text(settings)
    assert key not in text, "the pupil's pseudonym is still somewhere"
    assert pupil not in text, "the pupil's raw id is still somewhere"
    other = trial.key(trial.learners[pupil_class][4])
    assert other in text, "another pupil of the class was erased too"

    gone = erase_class(settings, EXPERIMENT, class_gone, actor="admin:*:test",
                       reason="académie request")
    assert gone.removed["events"] == 12 * 6 and gone.removed["parked_references"] == 1
    text = _text(settings)
    for raw in trial.learners[class_gone]:
        assert trial.key(raw) not in text and raw not in text
    # The class id stays only in the randomisation's evidence (enrollment, allocation log,
    # withdrawal record, audit), never with pupil-level data.
    store_text = every_row_text(settings, [ExperimentStore(settings, EXPERIMENT).engine])
    assert class_gone not in store_text
    arms = sorted(c.arm for c in enrolled_classes(registry, EXPERIMENT))
    assert arms == sorted(trial.classes.values())
    assert count_parked(registry) == 0

    (pupil_entry,) = _audit(settings, "retention.erase_pupil")
    assert pupil_entry.actor == "admin:*:test" and pupil_entry.detail is not None
    assert pupil_entry.detail["reason"] == "CNIL request 2029-17"
    (class_entry,) = _audit(settings, "retention.erase_class")
    assert class_entry.subject == f"{EXPERIMENT}/{class_gone}"
    with pytest.raises(RetentionError, match="reason"):
        erase_learner(settings, EXPERIMENT, pupil, actor="admin:*:test", reason=" ")
    with pytest.raises(RetentionError, match="phone number"):
        erase_learner(settings, EXPERIMENT, pupil, actor="admin:*:test",
                      reason="mother called from 01 23 45 67 89")


def test_purge_refuses_before_keep_until_then_removes_every_row_and_keeps_reports(
    settings: Settings, trial: Trial
) -> None:
    registry = registry_engine(settings)
    park(registry, [ParkedEvent("22222222-2222-4222-8222-222222222222", "cls-00", "lectio",
                                "preuve.events", 1, 9),
                    ParkedEvent("33333333-3333-4333-8333-333333333333", "cls-other", "lectio",
                                "preuve.events", 1, 10)], datetime.now(UTC))
    report = settings.state_dir / "reports" / EXPERIMENT / "final" / "run.json"
    report.parent.mkdir(parents=True)
    report.write_text('{"experiment": "fluence-cp-2027"}')

    assert purge_due(settings, today=date(2030, 6, 30)) == []
    assert purge_due(settings, today=date(2030, 7, 1)) == [EXPERIMENT]
    with pytest.raises(RetentionError, match="2030-06-30") as refused:
        purge_experiment(settings, EXPERIMENT, actor="admin:*:test", today=date(2030, 6, 30))
    assert refused.value.field == "retention.keep_until"
    with pytest.raises(RetentionError, match="reason"):
        purge_experiment(settings, EXPERIMENT, actor="admin:*:test", force=True,
                         today=date(2029, 1, 1))
    assert ExperimentStore(settings, EXPERIMENT).count_events() == len(trial.event_ids)

    done = purge_experiment(settings, EXPERIMENT, actor="admin:*:test", today=date(2030, 7, 1))
    assert done.removed["events"] == len(trial.event_ids)
    assert done.removed["receipts"] == len(trial.event_ids)
    assert done.removed["parked_references"] == 1 and not done.forced
    assert not store_exists(settings, EXPERIMENT)
    if settings.database_url is None:  # SQLite: the store's files are gone too
        assert not list((settings.state_dir / "stores").glob(f"{EXPERIMENT}*"))
    text = _text(settings)
    for raws in trial.learners.values():
        assert not [r for r in raws if trial.key(r) in text or r in text]
    with registry.connect() as connection:
        left = connection.scalar(sa.select(sa.func.count()).select_from(receipts))
    assert left == 0
    assert count_parked(registry) == 1, "another experiment's parked event was removed"
    # What stays: the protocol, the allocation, report files, the audit trail.
    assert len(enrolled_classes(registry, EXPERIMENT)) == len(trial.classes)
    assert report.read_text() == '{"experiment": "fluence-cp-2027"}'
    (entry,) = _audit(settings, "retention.purge")
    assert entry.subject == EXPERIMENT and entry.detail is not None
    assert entry.detail["removed"]["events"] == len(trial.event_ids)  # type: ignore[index]
    assert [p["forced"] for p in purges(settings, EXPERIMENT)] == [False]
    assert purge_due(settings, today=date(2031, 1, 1)) == []
    again = purge_experiment(settings, EXPERIMENT, actor="admin:*:test", today=date(2031, 1, 1))
    assert again.removed["events"] == 0


def test_cli_purge_refuses_early_and_forces_with_a_reason(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    build_trial(settings, n_classes=2, pupils=3)
    for name, value in settings_env(settings).items():
        if name.startswith("PREUVE_"):
            monkeypatch.setenv(name, value)
    runner = CliRunner()
    early = runner.invoke(app, ["purge", EXPERIMENT])
    assert early.exit_code == 2, early.output
    assert "2030-06-30" in early.output and "Traceback" not in early.output
    forced = runner.invoke(app, ["purge", EXPERIMENT, "--force", "--reason", "trial stopped"])
    assert forced.exit_code == 0, forced.output
    assert "forced" in forced.output
    assert not store_exists(settings, EXPERIMENT)
    erased = runner.invoke(app, ["erase", EXPERIMENT, "--learner", "x", "--reason", ""])
    assert erased.exit_code == 2 and "reason" in erased.output
