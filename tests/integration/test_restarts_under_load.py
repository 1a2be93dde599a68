"""Events produced *while* workers die and rejoin: rebalances under load lose nothing.

The 200k test kills a lone worker between bursts. This one keeps a steady stream going
while two workers of one group are SIGKILLed and restarted in turn, so that events are
produced during every rebalance (a killed member's partitions move only when its session
expires; a restarted one triggers another rebalance). This is the situation in which
faust-based workers lost events in our soak (3 of 235,182, all within a second of a
restart): a commit passed events that no agent had stored.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from experiments.store import ExperimentStore, daily_usage_table
from ingest.producer import ensure_topics, new_producer, publish_enrollments
from tests.conftest import SettingsFactory
from tests.support.events import enrollment, workload
from tests.support.postgres import wait_until
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE_PER_S = 800
RESTARTS = 6


def _produce_steadily(settings, lines: list[bytes], stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
    """Send ``lines`` at about RATE_PER_S, keyed by class like the gateway does, waiting
    for each small batch to be acknowledged (acks=all) before the next."""
    producer = new_producer(settings, linger_ms=0)
    chunk = max(RATE_PER_S // 20, 1)
    try:
        for start in range(0, len(lines), chunk):
            began = time.monotonic()
            futures = [
                producer.send(settings.topics.events, key=_class_of(line), value=line)  # type: ignore[attr-defined]
                for line in lines[start : start + chunk]
            ]
            for future in futures:
                future.get(timeout=60)
            time.sleep(max(0.0, 0.05 - (time.monotonic() - began)))
    finally:
        producer.close()  # type: ignore[attr-defined]
        stop.set()


def _class_of(line: bytes) -> bytes | None:
    marker = b'"class_id": "'
    at = line.find(marker)
    if at < 0:
        return None
    end = line.index(b'"', at + len(marker))
    return line[at + len(marker) : end]


def test_workers_killed_while_events_stream_lose_and_double_nothing(
    make_settings: SettingsFactory, postgres_url: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka=True, database_url=postgres_url)
    ensure_topics(settings)
    classes = {f"cls-{i:03d}": "exp-restarts" for i in range(60)}
    publish_enrollments(settings, [enrollment(c, "exp-restarts", "usual") for c in classes])
    load = workload(random.Random(11), classes, total=40_000, invalid=200, duplicates=800)
    expected = load.expected["exp-restarts"]
    store = ExperimentStore(settings, "exp-restarts")

    workers = [WorkerProcess(settings, tmp_path / f"worker-{n}.log") for n in (0, 1)]
    done = threading.Event()
    producer = threading.Thread(target=_produce_steadily, args=(settings, load.lines, done),
                                daemon=True)
    try:
        for worker in workers:
            worker.start()
        producer.start()
        restarts = 0
        rng = random.Random(3)
        while not done.is_set() and restarts < RESTARTS:
            time.sleep(rng.uniform(3.0, 6.0))
            victim = workers[restarts % 2]
            victim.kill()
            victim.start()  # at once: the dead member is still in the group
            restarts += 1
        producer.join(600)
        assert not producer.is_alive()
        assert restarts == RESTARTS, "the stream ended before every restart happened"
        assert wait_until(lambda: store.count_events() >= len(expected), 300), (
            f"events lost: {len(expected) - store.count_events()} missing"
        )
        time.sleep(2 * settings.worker.batch_seconds + 1)  # anything doubled would show now
    finally:
        for worker in workers:
            worker.stop()

    assert store.event_ids() == expected
    with store.engine.connect() as connection:
        usage_events = connection.scalar(sa.select(sa.func.sum(daily_usage_table.c.events)))
    assert usage_events == len(expected), "an event was counted twice in the usage aggregates"
