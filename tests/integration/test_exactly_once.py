"""Exactly-once effect: 200,000 events stream in while the worker is SIGKILLed 5 times."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from experiments.store import ExperimentStore, daily_usage_table
from ingest.kafka.access import ensure_topics
from ingest.kafka.producer import send_raw_events
from tests.conftest import SettingsFactory
from tests.support.events import enrollment, publish_registered, workload
from tests.support.postgres import wait_until
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL = 200_000
KILLS = 5


def test_five_sigkills_during_200k_events_leave_exactly_the_valid_set(
    make_settings: SettingsFactory, postgres_url: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka=True, database_url=postgres_url)
    ensure_topics(settings)
    classes = {f"cls-{i:03d}": "exp-once" for i in range(100)}
    publish_registered(settings, [enrollment(c, "exp-once", "usual") for c in classes])
    load = workload(random.Random(5), classes, total=TOTAL, invalid=1_000, duplicates=4_000)
    expected = load.expected["exp-once"]
    store = ExperimentStore(settings, "exp-once")

    # The producer streams in the background while the worker is killed and restarted.
    chunks = [load.lines[i : i + 20_000] for i in range(0, len(load.lines), 20_000)]
    producer = threading.Thread(
        target=lambda: [send_raw_events(settings, chunk) for chunk in chunks], daemon=True
    )
    producer.start()
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    kills: list[int] = []
    try:
        for k in range(1, KILLS + 1):
            worker.start()
            target = len(expected) * k // (KILLS + 1)
            assert wait_until(lambda t=target: store.count_events() >= t, 300, interval_s=0.05)
            worker.kill()
            kills.append(store.count_events())
        producer.join(300)
        assert not producer.is_alive()
        worker.start()
        assert wait_until(lambda: store.count_events() >= len(expected), 300), "events lost"
    finally:
        worker.stop()

    assert len(kills) == KILLS and all(k < len(expected) for k in kills), kills
    assert store.event_ids() == expected
    with store.engine.connect() as connection:
        usage_events = connection.scalar(sa.select(sa.func.sum(daily_usage_table.c.events)))
    assert usage_events == len(expected), "an event was counted twice in the usage aggregates"
