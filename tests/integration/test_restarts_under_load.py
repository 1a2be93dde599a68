"""Events produced *while* workers die and rejoin: rebalances under load lose nothing.

The 200k test kills a lone worker between bursts. This one keeps a steady stream going
while two workers of one group are SIGKILLed and restarted in turn, so that events are
produced during every rebalance (a killed member's partitions move only when its session
expires; a restarted one triggers another rebalance). This is the situation in which
faust-based workers lost events in our soak (3 of 235,182, all within a second of a
restart): a commit passed events that no agent had stored.

Active time (issue 19) is rebuilt from the stored events with the protocol's idle
timeout; after the kills, each pupil's active time read from the store equals the
reference computed here from the events sent (every covered second marked, one pupil at a
time, from the rule's words): nothing lost, nothing counted twice.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from experiments.protocol.language import Usage
from experiments.settings import Settings
from experiments.store import ExperimentStore, daily_usage_table, read_active_time
from ingest.kafka import clients
from ingest.kafka.access import ensure_topics
from ingest.kafka.principals import GATEWAY
from ingest.pseudonym import load_pseudonym_key, pseudonymise
from tests.conftest import SettingsFactory
from tests.support.events import enrollment, publish_registered, workload
from tests.support.postgres import wait_until
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE_PER_S = 800
RESTARTS = 6


class SteadyProducer:
    """Sends ``lines`` at about RATE_PER_S until stopped, keyed by class like the gateway,
    waiting for each small batch to be acknowledged (acks=all) before the next; ``sent``
    counts the lines Kafka acknowledged."""

    def __init__(self, settings: Settings, lines: list[bytes]) -> None:
        self.settings = settings
        self.lines = lines
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        producer = clients.producer(self.settings, GATEWAY, linger_ms=0)
        chunk = max(RATE_PER_S // 20, 1)
        try:
            while not self.stop.is_set() and self.sent < len(self.lines):
                began = time.monotonic()
                batch = self.lines[self.sent : self.sent + chunk]
                futures = [
                    producer.send(self.settings.topics.events, key=_class_of(line), value=line)  # type: ignore[attr-defined]
                    for line in batch
                ]
                for future in futures:
                    future.get(timeout=60)
                self.sent += len(batch)
                time.sleep(max(0.0, 0.05 - (time.monotonic() - began)))
        finally:
            producer.close()  # type: ignore[attr-defined]


def _class_of(line: bytes) -> bytes:
    return str(json.loads(line)["class_id"]).encode()


def test_workers_killed_while_events_stream_lose_and_double_nothing(
    make_settings: SettingsFactory, postgres_url: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka=True, database_url=postgres_url)
    ensure_topics(settings)
    classes = {f"cls-{i:03d}": "exp-restarts" for i in range(60)}
    publish_registered(settings, [enrollment(c, "exp-restarts", "usual") for c in classes])
    # More than the restarts need: the stream is stopped once they are done.
    load = workload(random.Random(11), classes, total=200_000, invalid=0, duplicates=4_000)
    store = ExperimentStore(settings, "exp-restarts")

    workers = [WorkerProcess(settings, tmp_path / f"worker-{n}.log") for n in (0, 1)]
    stream = SteadyProducer(settings, load.lines)
    thread = threading.Thread(target=stream.run, daemon=True)
    try:
        for worker in workers:
            worker.start()
        thread.start()
        rng = random.Random(3)
        for restart in range(RESTARTS):
            time.sleep(rng.uniform(3.0, 6.0))
            victim = workers[restart % 2]
            victim.kill()
            victim.start()  # at once: the dead member is still in the group
        time.sleep(3.0)
        stream.stop.set()
        thread.join(120)
        assert not thread.is_alive()
        assert stream.sent < len(load.lines), "the stream ran dry before the restarts ended"
        expected = {str(json.loads(line)["event_id"]) for line in load.lines[: stream.sent]}
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

    # Active time per pupil, as the runs read it, equals the reference from what was sent.
    usage = Usage()  # the protocol's defaults: written out, 300 s
    with store.engine.connect() as connection:
        rebuilt: dict[str, float] = defaultdict(float)
        for row in read_active_time(connection, usage.active_verbs, usage.idle_timeout_s):
            rebuilt[row.learner_key] += row.seconds
    key = load_pseudonym_key(settings)
    reference = _active_seconds_reference(
        [json.loads(line) for line in load.lines[: stream.sent]], usage.active_verbs,
        usage.idle_timeout_s, lambda learner: pseudonymise(key, "exp-restarts", learner))
    assert sum(reference.values()) > 0
    assert dict(rebuilt) == reference


def _active_seconds_reference(events: list[dict[str, object]], verbs: frozenset[str],
                              idle_s: int, pseudonym: Callable[[str], str]
                              ) -> dict[str, float]:
    """Active seconds per pupil from the events sent (each event id once), by the rule's
    words: an event covers its ``duration_s`` up to the pause, or else the time since the
    pupil's previous active event when that is at most the pause; covered seconds count
    once. Event times are whole minutes and durations whole seconds: exact."""
    unique = {str(e["event_id"]): e for e in events if e["verb"] in verbs}
    by_pupil: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
    for e in unique.values():
        moment = int(datetime.fromisoformat(str(e["occurred_at"])).timestamp())
        duration = e.get("duration_s")
        by_pupil[str(e["learner_id"])].append(
            (moment, None if duration is None else int(str(duration))))
    out = {}
    for learner, seq in by_pupil.items():
        seq.sort()
        covered: set[int] = set()
        previous = None
        for end, duration in seq:
            if duration is not None:
                length = min(duration, idle_s)
            elif previous is not None and end - previous <= idle_s:
                length = end - previous
            else:
                length = 0
            covered.update(range(end - length, end))
            previous = end
        if covered:
            out[pseudonym(learner)] = float(len(covered))
    return out
