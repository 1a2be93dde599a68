"""Two `preuve worker` processes share preuve.events as one consumer group."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from experiments.store import ExperimentStore
from ingest.kafka.access import ensure_topics
from ingest.kafka.producer import send_raw_events
from tests.conftest import SettingsFactory
from tests.support.events import enrollment, publish_registered, workload
from tests.support.postgres import wait_until
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _stored_by(log: Path) -> int:
    text = log.read_text(errors="replace")
    return sum(int(n) for n in re.findall(r"stored (\d+) events in experiment", text))


def test_two_workers_share_the_partitions_and_store_everything_once(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(kafka=True)
    ensure_topics(settings)
    classes = {f"cls-{i:02d}": "exp-scale" for i in range(40)}
    publish_registered(settings, [enrollment(c, "exp-scale", "usual") for c in classes])

    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [WorkerProcess(settings, log) for log in logs]
    try:
        for worker in workers:
            worker.start()
        # Both members must hold partitions before the load arrives.
        assert wait_until(
            lambda: all(re.search(r"assigned partitions \[\d", log.read_text(errors="replace"))
                        for log in logs), 60
        )
        load = workload(random.Random(3), classes, total=8_000, invalid=0, duplicates=0)
        send_raw_events(settings, load.lines)
        store = ExperimentStore(settings, "exp-scale")
        assert wait_until(lambda: store.count_events() >= 8_000, 120)
    finally:
        for worker in workers:
            worker.stop()

    assert store.event_ids() == load.expected["exp-scale"]
    shares = [_stored_by(log) for log in logs]
    assert sum(shares) == 8_000, shares
    assert all(share > 0 for share in shares), f"one worker did all the work: {shares}"
