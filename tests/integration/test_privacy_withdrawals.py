"""A pupil's withdrawal never puts the pupil's raw id in a database (SQLite and PostgreSQL):
class-randomised and learner-randomised designs alike store the per-experiment pseudonym,
and rows written before the fix are re-keyed by migration enrollment_0004."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from experiments import database
from experiments.access import AuditEntry
from experiments.database import registry_engine
from experiments.enrollment.assignments import learner_arms
from experiments.enrollment.files import EnrollmentDesign, read_pupils
from experiments.enrollment.tables import WithdrawalRow
from experiments.enrollment.transaction import enroll_learners
from experiments.enrollment.withdrawal import withdraw
from experiments.privacy.export import export_experiment
from experiments.privacy.retention import remove_withdrawn_pupil_data, store_exists
from experiments.protocol.language import load_protocol
from experiments.registry import register_protocol
from experiments.runs.inputs import write_analysis_files
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent, daily_usage_table, events_table
from ingest.pseudonym import load_pseudonym_key, pseudonymise
from tests.conftest import SettingsFactory
from tests.support.trial import EXPERIMENT, PROTOCOL, build_trial, every_row_text

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LEARNER_PROTOCOL = REPO / "tests" / "data" / "enrollment" / "learner-protocol.yaml"
PUPILS_HEADER = "learner_id,class_id,school_uai,level,academie,education_priority,repeater\n"


def _settings(backend: str, make_settings: SettingsFactory,
              request: pytest.FixtureRequest) -> Settings:
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    return make_settings(database_url=url)


def _everything(settings: Settings, experiments: list[str]) -> str:
    """Every row of the registry and of every existing store, and the SQLite files' bytes
    (free pages and WAL included)."""
    engines = [registry_engine(settings)]
    engines += [ExperimentStore(settings, e).engine for e in experiments
                if store_exists(settings, e)]
    text = every_row_text(settings, engines)
    for path in settings.state_dir.rglob("*.sqlite*"):
        text += path.read_bytes().decode("latin-1")
    return text


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_withdrawing_pupils_leaves_no_raw_id_in_any_table(
    backend: str, make_settings: SettingsFactory, request: pytest.FixtureRequest
) -> None:
    settings = _settings(backend, make_settings, request)
    key = load_pseudonym_key(settings)
    registry = registry_engine(settings)
    # A class-randomised trial with stored events.
    trial = build_trial(settings, n_classes=4, pupils=6)
    design = EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))
    pupil_class = sorted(trial.classes)[0]
    pupil = trial.learners[pupil_class][2]
    done = withdraw(registry, design, pupil_class, reason="parents' request",
                    actor="academie:versailles:t", learner_id=pupil, key=key)
    assert done.learner_id == trial.key(pupil)
    # A learner-randomised experiment: the same call withdraws the pupil there.
    learner_protocol = load_protocol(LEARNER_PROTOCOL)
    register_protocol(registry, learner_protocol, LEARNER_PROTOCOL.read_text(), actor="t")
    learner_design = EnrollmentDesign.from_protocol(learner_protocol)
    raw_pupils = [f"ent-pupil-{i:02d}" for i in range(6)]
    text = PUPILS_HEADER + "".join(
        f"{raw},c-learn,0781234T,CP,versailles,REP,non\n" for raw in raw_pupils)
    enroll_learners(registry, learner_design, read_pupils(text, learner_design), key=key,
                    actor="academie:versailles:t")
    learner_done = withdraw(registry, learner_design, "c-learn", reason="moved away",
                            actor="academie:versailles:t", learner_id=raw_pupils[0], key=key)
    assert learner_done.learner_id == pseudonymise(key, learner_design.experiment_id,
                                                   raw_pupils[0])
    assert learner_done.learner_id in learner_arms(registry, learner_design.experiment_id)

    with registry.connect() as connection:
        stored = sorted(connection.execute(
            sa.select(WithdrawalRow.experiment_id, WithdrawalRow.learner_id)
            .where(WithdrawalRow.scope == "pupil")).all())
    assert stored == sorted([(EXPERIMENT, trial.key(pupil)),
                             (learner_design.experiment_id, learner_done.learner_id)])
    everything = _everything(settings, [EXPERIMENT, learner_design.experiment_id])
    raw_ids = [r for raws in trial.learners.values() for r in raws] + raw_pupils
    assert [r for r in raw_ids if r in everything] == [], "a raw pupil id is in a database"
    assert trial.key(pupil) in everything  # the grep does see the pseudonyms

    # The export finds the withdrawn pupil by the stored pseudonym and leaves them out.
    exported = export_experiment(settings, EXPERIMENT, settings.state_dir / "export",
                                 formats=("csv",))
    assert exported.withdrawn_pupils_excluded == 1
    events_csv = (settings.state_dir / "export" / "events.csv").read_text()
    assert trial.key(pupil) not in events_csv
    assert trial.key(trial.learners[pupil_class][3]) in events_csv


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_pupil_withdrawn_with_remove_loses_their_data_and_leaves_the_analyses(
    backend: str, make_settings: SettingsFactory, request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """A pupil's withdrawal has the data policy ``remove`` (their objection): their
    events and usage go at once, an event of theirs arriving later is never analysed,
    and they stay randomised (their class keeps its arm); a class withdrawal keeps."""
    settings = _settings(backend, make_settings, request)
    key = load_pseudonym_key(settings)
    registry = registry_engine(settings)
    trial = build_trial(settings, n_classes=4, pupils=6)
    protocol = load_protocol(PROTOCOL)
    design = EnrollmentDesign.from_protocol(protocol)
    store = ExperimentStore(settings, EXPERIMENT)
    pupil_class = sorted(trial.classes)[0]
    pupil, other = (trial.key(p) for p in trial.learners[pupil_class][1:3])

    def rows_of(learner_key: str) -> tuple[int, int]:
        with store.engine.connect() as connection:
            return (
                connection.scalar(sa.select(sa.func.count()).select_from(events_table)
                                  .where(events_table.c.learner_key == learner_key)) or 0,
                connection.scalar(sa.select(sa.func.count()).select_from(daily_usage_table)
                                  .where(daily_usage_table.c.learner_key == learner_key)) or 0,
            )

    before, other_before = rows_of(pupil), rows_of(other)
    assert min(before) > 0
    done = withdraw(registry, design, pupil_class, reason="parents object",
                    actor="academie:versailles:t", learner_id=trial.learners[pupil_class][1],
                    key=key)
    removed = remove_withdrawn_pupil_data(settings, done, actor="academie:versailles:t")
    assert removed is not None and (removed["events"], removed["daily_usage"]) == before
    assert rows_of(pupil) == (0, 0) and rows_of(other) == other_before
    with sa.orm.Session(registry) as session:
        (entry,) = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "retention.remove_withdrawn_pupil")).all()
    assert entry.subject == f"{EXPERIMENT}/{pupil_class}"

    # The resource sends one more score of the pupil: stored, never analysed.
    late = StoredEvent("99999999-9999-4999-8999-999999999999",
                       datetime(2028, 6, 2, 9, tzinfo=UTC), "lectio", pupil, pupil_class,
                       "0780000B", trial.classes[pupil_class], "assessment_scored",
                       object_id="fluence", score=80.0)
    assert store.write_events([late], datetime.now(UTC)).inserted == 1
    files = write_analysis_files(settings, registry, protocol, tmp_path)
    outcomes, usage = files.outcomes.read_text(), files.usage.read_text()
    assert pupil not in outcomes and pupil not in usage
    assert other in outcomes and other in usage
    assert pupil_class in files.units.read_text(), "the pupil's class stays randomised"

    kept = withdraw(registry, design, sorted(trial.classes)[1], reason="teacher left",
                    actor="academie:versailles:t")
    assert kept.data_policy == "keep"
    assert remove_withdrawn_pupil_data(settings, kept, actor="academie:versailles:t") is None


def _alembic(engine: sa.Engine, action: str, target: str) -> None:
    config = Config()
    config.set_main_option("script_location",
                           str(Path(database.__file__).parent / "migrations" / "registry"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, target)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_rekeys_raw_pupil_ids_written_before_the_fix(
    backend: str, make_settings: SettingsFactory, request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(backend, make_settings, request)
    assert settings.pseudonym_key is not None
    # The migration reads the deployment's key from its environment, as `preuve` does.
    monkeypatch.setenv("PREUVE_PSEUDONYM_KEY", settings.pseudonym_key.get_secret_value())
    key = load_pseudonym_key(settings)
    registry = registry_engine(settings)
    _alembic(registry, "downgrade", "enrollment@enrollment_0003")
    already = pseudonymise(key, "exp-b", "gar-new-1")
    now = datetime.now(UTC)
    rows = [("exp-a", "c1", "gar-old-1", "pupil"), ("exp-a", "c1", "gar-old-2", "pupil"),
            ("exp-b", "c9", already, "pupil"), ("exp-a", "c2", None, "class")]
    with registry.begin() as connection:
        connection.execute(sa.insert(WithdrawalRow), [
            {"experiment_id": e, "class_id": c, "learner_id": learner, "scope": scope,
             "reason": "r", "data_policy": "remove", "withdrawn_at": now, "actor": "t"}
            for e, c, learner, scope in rows])
    _alembic(registry, "upgrade", "heads")
    with registry.connect() as connection:
        after = connection.execute(
            sa.select(WithdrawalRow.learner_id).order_by(WithdrawalRow.id)).scalars().all()
    assert after == [pseudonymise(key, "exp-a", "gar-old-1"),
                     pseudonymise(key, "exp-a", "gar-old-2"), already, None]
    if backend == "sqlite":  # what the migration's docstring asks for (or any erasure)
        with registry.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    text = _everything(settings, [])
    assert "gar-old-1" not in text and "gar-old-2" not in text
