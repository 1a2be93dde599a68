"""The routing logic without Kafka: validate, look up, pseudonymise, store, park, dead-letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from experiments.database import registry_engine
from experiments.protocol.language import load_protocol
from experiments.registry import register_protocol
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent, daily_usage_table, events_table
from ingest.pseudonym import pseudonymise
from ingest.stream.parking import (
    ParkedEvent,
    count_parked,
    forget_expired,
    park,
    parked_for,
)
from ingest.stream.router import EventRouter, IngressRecord, UsageRule
from tests.conftest import SettingsFactory
from tests.support.events import enrollment

PROTOCOL = Path(__file__).resolve().parents[2] / "protocols" / "fluence-cp-2027.yaml"
KEY = b"unit-test-key"


def _event(
    event_id: int, verb: str = "exercise_answered", class_id: str = "cp-01a", **extra: object
) -> dict[str, object]:
    return {
        "event_id": f"00000000-0000-4000-8000-{event_id:012d}",
        "occurred_at": "2027-10-04T09:00:00+02:00", "resource_id": "lectio",
        "learner_id": "gar-raw-0042", "class_id": class_id, "school_uai": "0750001U",
        "verb": verb, **extra,
    }


def _records(events: list[dict[str, object] | bytes]) -> list[IngressRecord]:
    return [
        IngressRecord("preuve.events", 0, offset, None,
                      e if isinstance(e, bytes) else json.dumps(e).encode())
        for offset, e in enumerate(events)
    ]


def test_a_batch_is_stored_pseudonymised_parked_and_dead_lettered(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    router = EventRouter(settings, KEY, registry_engine(settings))
    enrolled = {("cp-01a", "lectio"): enrollment("cp-01a", "exp-unit", "lectio")}
    batch = _records([
        _event(1, duration_s=60),
        _event(1, duration_s=60),              # the same event twice in one batch
        _event(2, verb="session_started"),
        _event(3, class_id="cp-99z"),          # class not enrolled yet
        _event(4, occurred_at="2027-10-04T09:00:00"),
        b"\xff\xfe not json",
    ])
    outcome = router.route(batch, lambda c, r: enrolled.get((c, r)))

    assert outcome.stored == {"exp-unit": 2}
    assert outcome.duplicates == 1
    assert outcome.parked == 1
    assert [(d.field, d.record.offset) for d in outcome.dead] == [("occurred_at", 4), (None, 5)]
    assert "not valid JSON" in outcome.dead[1].reason
    assert dict(outcome.dead[0].headers())["preuve.field"] == b"occurred_at"

    parked = parked_for(router.registry, "cp-99z", "lectio")
    assert [(p.topic, p.partition, p.offset) for p in parked] == [("preuve.events", 0, 3)]

    store = router.store("exp-unit")
    with store.engine.connect() as connection:
        keys = set(connection.scalars(sa.select(events_table.c.learner_key)))
        arms = set(connection.scalars(sa.select(events_table.c.arm)))
    assert keys == {pseudonymise(KEY, "exp-unit", "gar-raw-0042")}
    assert arms == {"lectio"}

    again = router.route(batch[:3], lambda c, r: enrolled.get((c, r)))
    assert again.stored == {"exp-unit": 0} and again.duplicates == 3, "re-delivery stores nothing"


def test_usage_counts_follow_the_registered_protocol(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    registry = registry_engine(settings)
    protocol = load_protocol(PROTOCOL)
    register_protocol(registry, protocol, PROTOCOL.read_text())
    router = EventRouter(settings, KEY, registry)
    rule = router.usage_rule(protocol.id)
    assert rule == UsageRule.from_protocol(protocol)
    assert "session_started" in rule.login_verbs and "session_started" not in rule.active_verbs

    enrolled = enrollment("cp-01a", protocol.id, "lectio")
    router.route(
        _records([
            _event(1, verb="session_started"),
            _event(2, verb="exercise_answered", duration_s=120),
            _event(3, verb="content_viewed", duration_s=600),  # not active use in this protocol
        ]),
        lambda c, r: enrolled,
    )
    with router.store(protocol.id).engine.connect() as connection:
        row = connection.execute(sa.select(daily_usage_table)).one()
    assert (row.events, row.sessions, row.activities, row.active_seconds) == (3, 1, 1, 120.0)


def test_parked_references_older_than_the_ingress_retention_are_forgotten(tmp_path: Path) -> None:
    engine = registry_engine(Settings(state_dir=tmp_path))
    now = datetime(2027, 10, 20, tzinfo=UTC)
    park(engine, [ParkedEvent("e-old", "cls-1", "lectio", "t", 0, 1)], now - timedelta(days=8))
    park(engine, [ParkedEvent("e-new", "cls-1", "lectio", "t", 0, 2)], now - timedelta(days=1))
    assert forget_expired(engine, now - timedelta(days=7)) == 1
    assert count_parked(engine) == 1


def test_a_store_write_skips_repeats_within_the_call_and_across_calls(tmp_path: Path) -> None:
    store = ExperimentStore(Settings(state_dir=tmp_path), "exp-repeats")
    when = datetime(2027, 10, 4, 8, tzinfo=UTC)

    def event(n: int, duration: float) -> StoredEvent:
        return StoredEvent(f"00000000-0000-4000-8000-{n:012d}", when, "lectio", "k1", "c1",
                           "0750001U", "lectio", "exercise_answered", duration_s=duration,
                           is_usage=True)

    first = store.write_events([event(1, 10.0), event(2, 20.0), event(1, 99.0)], when)
    again = store.write_events([event(2, 20.0), event(3, 30.0)], when)
    assert (first.inserted, first.duplicates) == (2, 1)
    assert (again.inserted, again.duplicates) == (1, 1)
    with store.engine.connect() as connection:
        usage = connection.execute(
            sa.select(daily_usage_table.c.events, daily_usage_table.c.active_seconds)
        ).one()
    assert tuple(usage) == (3, 60.0)  # the first copy of event 1 counts, once
