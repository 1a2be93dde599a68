"""The stream worker against a real Kafka broker and real stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from experiments.database import registry_engine
from experiments.settings import Settings
from experiments.store import ExperimentStore, daily_usage_table, events_table
from ingest.kafka.access import ensure_topics
from ingest.kafka.producer import send_raw_events
from ingest.stream.parking import count_parked
from tests.conftest import SettingsFactory
from tests.support.events import enrollment, publish_registered, valid_event, workload
from tests.support.kafka import consume_all
from tests.support.postgres import wait_until
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARMS = ("lectio", "usual")


def _classes() -> dict[str, str]:
    return {f"cls-{i:02d}": ("exp-a" if i < 20 else "exp-b") for i in range(40)}


def _enroll(settings: Settings, classes: dict[str, str]) -> None:
    publish_registered(
        settings,
        [enrollment(c, e, ARMS[i % 2]) for i, (c, e) in enumerate(sorted(classes.items()))],
    )


def _stored(settings: Settings, experiment_id: str) -> set[str]:
    return ExperimentStore(settings, experiment_id).event_ids()


def _all_stored(settings: Settings, expected: dict[str, set[str]]) -> bool:
    return all(len(_stored(settings, e)) >= len(ids) for e, ids in expected.items())


def _settings(
    backend: str, make_settings: SettingsFactory, request: pytest.FixtureRequest
) -> Settings:
    database_url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    settings = make_settings(kafka=True, database_url=database_url)
    ensure_topics(settings)
    return settings


def _text_of_every_store(settings: Settings, experiments: list[str]) -> str:
    """Every row of every table of the registry and the stores, as one text."""
    engines = [registry_engine(settings)] + [
        ExperimentStore(settings, e).engine for e in experiments
    ]
    chunks = []
    for engine in engines:
        inspector = sa.inspect(engine)
        for table in inspector.get_table_names():
            with engine.connect() as connection:
                rows = connection.execute(sa.text(f'SELECT * FROM "{table}"')).fetchall()
            chunks.append("\n".join(repr(tuple(row)) for row in rows))
    return "\n".join(chunks)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_twenty_thousand_events_stored_once_in_the_right_experiment(
    backend: str, make_settings: SettingsFactory, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = _settings(backend, make_settings, request)
    classes = _classes()
    _enroll(settings, classes)
    late = {"cls-late": "exp-late"}  # enrolled only after its events arrived
    load = workload(
        random.Random(20270901), {**classes, **late}, total=20_000, invalid=200, duplicates=1_000
    )
    send_raw_events(settings, load.lines)

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        enrolled = {e: ids for e, ids in load.expected.items() if e != "exp-late"}
        assert wait_until(lambda: _all_stored(settings, enrolled), 240), "events not stored in time"
        registry = registry_engine(settings)
        assert wait_until(lambda: count_parked(registry) == len(load.expected["exp-late"]), 30)

        publish_registered(settings, [enrollment("cls-late", "exp-late", "usual")])
        assert wait_until(lambda: _all_stored(settings, load.expected), 60), (
            "late class not replayed"
        )
        assert wait_until(lambda: count_parked(registry) == 0, 30)
    finally:
        assert worker.stop() == 0, "the worker did not stop cleanly on SIGTERM"

    for experiment_id, expected_ids in load.expected.items():
        assert _stored(settings, experiment_id) == expected_ids, f"{experiment_id}: wrong event set"

    dead = consume_all(settings, settings.topics.deadletter, expected=200)
    assert len(dead) == 200, "every invalid event is dead-lettered exactly once"
    fields = sorted(str(headers.get("preuve.field", b"").decode()) for headers, _ in dead)
    assert fields == sorted(f or "" for f in load.invalid_fields), (
        "each dead letter names its field"
    )
    assert all(headers["preuve.reason"] for headers, _ in dead)

    # Pseudonymisation: no raw learner id anywhere in the stores, the registry or the log.
    text = _text_of_every_store(settings, sorted(load.expected))
    log = (tmp_path / "worker.log").read_text(errors="replace")
    leaked = [raw for raw in load.raw_learner_ids if raw in text or raw in log]
    assert leaked == [], f"raw learner ids found: {leaked[:5]}"


def _usage_total(store: ExperimentStore) -> int:
    with store.engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.sum(daily_usage_table.c.events))) or 0)


def _count(store: ExperimentStore) -> int:
    with store.engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(events_table)) or 0)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_worker_killed_mid_stream_loses_nothing_and_duplicates_nothing(
    backend: str, make_settings: SettingsFactory, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = _settings(backend, make_settings, request)
    settings = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"batch_size": 100})}
    )
    classes = _classes()
    _enroll(settings, classes)
    load = workload(random.Random(7), classes, total=20_000, invalid=0, duplicates=500)
    send_raw_events(settings, load.lines)
    stores = {e: ExperimentStore(settings, e) for e in load.expected}
    total = sum(len(ids) for ids in load.expected.values())

    def stored() -> int:
        return sum(_count(store) for store in stores.values())

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    kills = []
    try:
        for threshold in (total // 5, total // 2):
            worker.start()
            assert wait_until(lambda t=threshold: stored() >= t, 120, interval_s=0.05)
            worker.kill()
            kills.append(stored())
        worker.start()
        assert wait_until(lambda: stored() >= total, 180), "events lost after SIGKILL"
    finally:
        worker.stop()

    assert any(k < total for k in kills), f"the kills came too late to test anything: {kills}"
    for experiment_id, expected_ids in load.expected.items():
        assert _stored(settings, experiment_id) == expected_ids
        # Usage aggregates are updated with the inserts: a re-delivered event counted twice
        # would show here even though the events table cannot hold a second copy.
        assert _usage_total(stores[experiment_id]) == len(expected_ids)


def test_an_edtech_writes_its_own_topic_and_foreign_resources_are_dead_lettered(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    """An EdTech producing directly (its own SCRAM user, `preuve kafka add-edtech`) writes
    preuve.events.<resource>; the worker reads it beside preuve.events, stores its own
    resource's events and dead-letters those that claim another resource."""
    from ingest.errors import BrokerError
    from ingest.kafka.access import add_edtech

    settings = make_settings(kafka=True)
    ensure_topics(settings)
    classes = {f"cls-e{i}": "exp-direct" for i in range(4)}
    publish_registered(settings, [enrollment(c, "exp-direct", "usual") for c in classes])
    publish_registered(settings, [enrollment("cls-n0", "exp-other", "usual",
                                             resource_id="numeris")])
    add_edtech(settings, "lectio")
    rng = random.Random(7)
    own = [valid_event(rng, c) for c in classes for _ in range(5)]
    foreign = [valid_event(rng, "cls-n0", resource_id="numeris") for _ in range(3)]
    send_raw_events(settings, [json.dumps(e).encode() for e in own + foreign],
                    resource_id="lectio")
    with pytest.raises(BrokerError):  # its user may write nothing but its own topic
        send_raw_events(settings, [json.dumps(own[0]).encode()], resource_id="numeris")
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        expected = {str(e["event_id"]) for e in own}
        assert wait_until(lambda: _stored(settings, "exp-direct") >= expected, 120)
        dead = consume_all(settings, settings.topics.deadletter, expected=len(foreign))
    finally:
        assert worker.stop() == 0
    assert _stored(settings, "exp-direct") == expected
    assert _stored(settings, "exp-other") == set(), "another resource's events were stored"
    assert len(dead) == len(foreign)
    assert {h["preuve.field"] for h, _ in dead} == {b"resource_id"}
