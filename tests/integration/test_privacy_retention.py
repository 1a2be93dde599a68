"""Purge and erasure reach Kafka and leave no pupil-level row behind.

Against the real broker: purging an experiment (or erasing a class) writes a tombstone
under each of its enrollment keys in the compacted topic, read back from the beginning;
an unreachable broker makes the purge fail and remove nothing. On SQLite and PostgreSQL:
an erased class leaves no pupil-level row in the stores, the registry or the parked
events, while its randomisation evidence stays whole."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from kafka import TopicPartition
from typer.testing import CliRunner

from experiments.access import AuditEntry
from experiments.cli.app import app
from experiments.database import registry_engine
from experiments.enrollment.assignments import (
    enrolled_classes,
    learner_arms,
    verify_allocations,
    verify_learner_allocations,
)
from experiments.enrollment.files import EnrollmentDesign, read_classes, read_pupils
from experiments.enrollment.publishing import (
    FORGOTTEN,
    kafka_publisher,
    pending_messages,
    publish_pending,
)
from experiments.enrollment.tables import AllocationRow, EnrollmentRow, WithdrawalRow
from experiments.enrollment.transaction import enroll_classes, enroll_learners
from experiments.enrollment.withdrawal import withdraw
from experiments.errors import RetentionError
from experiments.privacy import retention
from experiments.privacy.retention import (
    erase_class,
    erase_learner,
    purge_due,
    purge_experiment,
    purge_expired,
    purges,
    store_exists,
)
from experiments.protocol.language import load_protocol
from experiments.registry import register_protocol
from experiments.settings import Settings
from experiments.store import ExperimentStore
from ingest.kafka import clients
from ingest.kafka.access import ensure_topics
from ingest.kafka.principals import ADMIN, ENROLLMENT
from ingest.kafka.producer import enrollment_key
from ingest.pseudonym import load_pseudonym_key, pseudonymise
from ingest.receipts import receipts
from ingest.stream.parking import ParkedEvent, park, parked_table
from tests.conftest import SettingsFactory
from tests.support.trial import EXPERIMENT, HEADER, PROTOCOL, Trial, build_trial, every_row_text
from tests.support.uai import uai
from tests.support.worker import settings_env

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LEARNER_PROTOCOL = REPO / "tests" / "data" / "enrollment" / "learner-protocol.yaml"
PUPILS_HEADER = "learner_id,class_id,school_uai,level,academie,education_priority,repeater\n"


def _latest_values(settings: Settings) -> dict[bytes, bytes | None]:
    """The last value of each key of the enrollment topic, read from the beginning up to
    its current end."""
    topic = settings.topics.enrollments
    consumer = clients.consumer(settings, ADMIN, group_id=None)
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"topic {topic} has no partition"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        latest: dict[bytes, bytes | None] = {}
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    latest[record.key] = record.value
    finally:
        consumer.close()
    return latest


def _published_trial(settings: Settings) -> Trial:
    ensure_topics(settings)
    trial = build_trial(settings, n_classes=4, pupils=5, events_per_pupil=2)
    report = publish_pending(registry_engine(settings), EXPERIMENT, kafka_publisher(settings))
    assert report.error is None and report.published == 4
    return trial


def _audit(settings: Settings, action: str) -> list[AuditEntry]:
    with sa.orm.Session(registry_engine(settings)) as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def _settings(backend: str, make_settings: SettingsFactory, request: pytest.FixtureRequest,
              **overrides: object) -> Settings:
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    return make_settings(database_url=url, **overrides)


def test_purge_leaves_a_tombstone_under_every_enrollment_key_of_the_experiment(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(kafka=True)
    trial = _published_trial(settings)
    keys = {enrollment_key(c, "lectio") for c in trial.classes}
    # Another resource's enrollment of the same class must survive the purge.
    other = enrollment_key(sorted(trial.classes)[0], "autre-ressource")
    producer = clients.producer(settings, ENROLLMENT)
    producer.send(settings.topics.enrollments, key=other, value=b'{"other": true}').get(30)
    producer.close()
    before = _latest_values(settings)
    assert all(before[k] is not None for k in keys)

    done = purge_experiment(settings, EXPERIMENT, actor="admin:*:test", force=True,
                            reason="trial stopped")
    assert done.removed["enrollment_tombstones"] == 4
    latest = _latest_values(settings)
    assert {k: latest[k] for k in keys} == dict.fromkeys(keys), "an enrollment survived"
    assert latest[other] == b'{"other": true}'
    (entry,) = _audit(settings, "retention.purge")
    assert entry.detail is not None
    assert entry.detail["kafka"] == {"topic": settings.topics.enrollments, "tombstones": 4}
    # Nothing re-publishes a forgotten enrollment, and purging again needs no tombstone.
    registry = registry_engine(settings)
    assert pending_messages(registry, EXPERIMENT) == []
    assert {c.class_id for c in enrolled_classes(registry, EXPERIMENT)} == set(trial.classes)
    again = purge_experiment(settings, EXPERIMENT, actor="admin:*:test", force=True,
                             reason="again")
    assert again.removed["enrollment_tombstones"] == 0


def test_an_unreachable_broker_fails_the_purge_and_the_erasure_and_removes_nothing(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 9 (discard) has no broker: the bootstrap fails as for a broker that is down.
    # The wait for the broker is shortened from 30 s, the rest is as in production.
    monkeypatch.setattr(retention, "_KAFKA_TIMEOUT_MS", 2_000)
    settings = make_settings(kafka_bootstrap="127.0.0.1:9")
    trial = build_trial(settings, n_classes=2, pupils=3)
    registry = registry_engine(settings)
    assert publish_pending(registry, EXPERIMENT, lambda messages: len(messages)).error is None
    stored = ExperimentStore(settings, EXPERIMENT).count_events()

    with pytest.raises(RetentionError, match="nothing was removed") as refused:
        purge_experiment(settings, EXPERIMENT, actor="admin:*:test", force=True,
                         reason="trial stopped")
    assert refused.value.field == "kafka"
    assert settings.topics.enrollments in str(refused.value)
    with pytest.raises(RetentionError, match="nothing was removed"):
        erase_class(settings, EXPERIMENT, sorted(trial.classes)[0], actor="admin:*:test",
                    reason="académie request")
    # The scheduler's purge of an expired experiment logs the failure and leaves the
    # experiment due, whole, for its next look.
    expired = date(2030, 7, 1)
    assert purge_expired(settings, actor="admin:*:scheduler@test", today=expired) == []
    assert purge_due(settings, today=expired) == [EXPERIMENT]
    for name, value in settings_env(settings).items():
        if name.startswith("PREUVE_"):
            monkeypatch.setenv(name, value)
    cli = CliRunner().invoke(app, ["purge", EXPERIMENT, "--force", "--reason", "stopped"])
    assert cli.exit_code == 3, cli.output
    assert "nothing was removed" in cli.output and "Traceback" not in cli.output
    assert store_exists(settings, EXPERIMENT)
    assert ExperimentStore(settings, EXPERIMENT).count_events() == stored
    assert purges(settings, EXPERIMENT) == []
    assert _audit(settings, "retention.purge") == []
    assert _audit(settings, "retention.erase_class") == []
    assert all(c.status == "enrolled" for c in enrolled_classes(registry, EXPERIMENT))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_erased_class_leaves_no_pupil_row_anywhere_and_its_allocation_whole(
    backend: str, make_settings: SettingsFactory, request: pytest.FixtureRequest
) -> None:
    settings = _settings(backend, make_settings, request, kafka=True)
    trial = _published_trial(settings)
    registry = registry_engine(settings)
    design = EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))
    gone, stays = sorted(trial.classes)[:2]
    with registry.begin() as connection:
        connection.execute(receipts.insert(), [
            {"event_id": e, "content_sha256": "0" * 64, "resource_id": "lectio",
             "state": "confirmed", "received_at": datetime.now(UTC)} for e in trial.event_ids])
    withdraw(registry, design, gone, reason="parents", actor="academie:versailles:t",
             learner_id=trial.learners[gone][0], key=load_pseudonym_key(settings))
    park(registry, [ParkedEvent("44444444-4444-4444-8444-444444444444", gone, "lectio",
                                settings.topics.events, 0, 3),
                    ParkedEvent("55555555-5555-4555-8555-555555555555", stays, "lectio",
                                settings.topics.events, 0, 4)], datetime.now(UTC))
    with registry.connect() as connection:
        log_before = connection.execute(sa.select(AllocationRow)
                                        .order_by(AllocationRow.sequence)).all()
    arms = dict(trial.classes)

    done = erase_class(settings, EXPERIMENT, gone, actor="admin:*:test",
                       reason="demande de l'académie 2029-04")
    assert done.removed["enrollment_tombstones"] == 1
    assert done.removed["events"] == 5 * 4 and done.removed["parked_references"] == 1
    assert done.removed["receipts"] == 5 * 4 and done.removed["withdrawal_pupil_ids"] == 1

    # Kafka: the router forgets the class; the other classes stay enrolled.
    latest = _latest_values(settings)
    assert latest[enrollment_key(gone, "lectio")] is None
    assert latest[enrollment_key(stays, "lectio")] is not None
    # No pupil-level trace of the class anywhere: stores, registry, parked events, bytes.
    store = ExperimentStore(settings, EXPERIMENT)
    text = every_row_text(settings, [registry, store.engine])
    if backend == "sqlite":
        text += "".join(p.read_bytes().decode("latin-1")
                        for p in settings.state_dir.rglob("*.sqlite*"))
    for raw in trial.learners[gone]:
        assert raw not in text and trial.key(raw) not in text, raw
    assert trial.key(trial.learners[stays][0]) in text
    assert gone not in every_row_text(settings, [store.engine])
    with registry.connect() as connection:
        parked = connection.execute(sa.select(parked_table.c.class_id)).scalars().all()
        left = connection.scalar(sa.select(sa.func.count()).select_from(receipts))
        log_after = connection.execute(sa.select(AllocationRow)
                                       .order_by(AllocationRow.sequence)).all()
        row = connection.execute(sa.select(EnrollmentRow.status, EnrollmentRow.published_status)
                                 .where(EnrollmentRow.class_id == gone)).one()
        class_withdrawal = connection.execute(
            sa.select(WithdrawalRow.data_policy, WithdrawalRow.reason)
            .where(WithdrawalRow.class_id == gone, WithdrawalRow.scope == "class")).one()
    assert parked == [stays]
    assert left == len(trial.event_ids) - 5 * 4
    # What stays: the randomisation's evidence, unchanged and still replayable.
    assert log_after == log_before
    assert verify_allocations(registry, design) == []
    assert {c.class_id: c.arm for c in enrolled_classes(registry, EXPERIMENT)} == arms
    assert tuple(row) == ("withdrawn", FORGOTTEN)
    assert class_withdrawal.data_policy == "remove"
    assert class_withdrawal.reason.startswith("erasure: ")
    assert pending_messages(registry, EXPERIMENT) == []
    # The erased class cannot come back with a new draw.
    index = sorted(trial.classes).index(gone)
    again = enroll_classes(registry, design, read_classes(
        HEADER + f"{gone},{uai(f'078{index % 3:04d}')},CP,5,versailles,REP\n", design), actor="t")
    assert again.enrolled == [] and [c.class_id for c in again.already] == [gone]
    (entry,) = _audit(settings, "retention.erase_class")
    assert entry.detail is not None and entry.detail["withdrawn"] is True
    assert entry.detail["kafka"] == {"topic": settings.topics.enrollments, "tombstones": 1}


def test_erasing_in_a_learner_design_removes_the_pupils_enrollment_rows(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    key = load_pseudonym_key(settings)
    registry = registry_engine(settings)
    protocol = load_protocol(LEARNER_PROTOCOL)
    register_protocol(registry, protocol, LEARNER_PROTOCOL.read_text(), actor="t")
    design = EnrollmentDesign.from_protocol(protocol)
    pupils = {c: [f"ent-{c}-{i}" for i in range(6)] for c in ("c-a", "c-b")}
    text = PUPILS_HEADER + "".join(f"{raw},{c},0781234T,CP,versailles,REP,non\n"
                                   for c, raws in pupils.items() for raw in raws)
    enroll_learners(registry, design, read_pupils(text, design), key=key, actor="t")
    pseudonym = {raw: pseudonymise(key, design.experiment_id, raw)
                 for raws in pupils.values() for raw in raws}
    with registry.connect() as connection:
        draws = connection.scalar(sa.select(sa.func.count()).select_from(AllocationRow))

    erase_learner(settings, design.experiment_id, pupils["c-b"][0], actor="admin:*:t",
                  reason="parents' request")
    done = erase_class(settings, design.experiment_id, "c-a", actor="admin:*:t",
                       reason="académie request")
    assert done.removed["learner_enrollments"] == 6
    assert done.removed["enrollment_tombstones"] == 0  # never published: nothing in Kafka
    remaining = set(learner_arms(registry, design.experiment_id))
    assert remaining == {pseudonym[raw] for raw in pupils["c-b"][1:]}
    registry_text = every_row_text(settings, [registry])
    erased = pupils["c-a"] + pupils["c-b"][:1]
    assert [r for r in erased if pseudonym[r] in registry_text or r in registry_text] == []
    with registry.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(AllocationRow)) == draws
    assert verify_learner_allocations(registry, design) == []
    (entry,) = _audit(settings, "retention.erase_class")
    assert entry.detail is not None and "skipped" in entry.detail["kafka"]  # type: ignore[operator]
