"""Stream workers SIGKILLed while they fold daily usage (issue 20): real Kafka, real
PostgreSQL, two worker processes on one store.

The insert transaction queues each batch's usage (``usage_pending``); a fold task moves
the queue into ``daily_usage`` apart from the batches (``experiments.store.fold_usage``).
Kills aimed at a fold in progress (a worker's fold statement seen running in
``pg_stat_activity``, the worker found by its connection's port) and kills at random
under a steady stream must leave every stored event counted exactly once: what readers
see (the folded rows plus the queue) while the workers still run, and ``daily_usage``
itself once they have stopped, equal a recomputation from the ``events`` table.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import date
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from experiments.database import registry_engine
from experiments.settings import Settings
from experiments.store import (
    ExperimentStore,
    UsageDay,
    usage_fold_table,
    usage_pending_table,
)
from ingest.kafka.access import ensure_topics
from ingest.kafka.producer import send_raw_events
from ingest.pseudonym import load_pseudonym_key
from ingest.stream.router import EventRouter
from tests.conftest import SettingsFactory
from tests.integration.test_usage_fold import folded, recomputed
from tests.support.events import enrollment, publish_registered, workload
from tests.support.postgres import wait_until
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXPERIMENT = "exp-fold-kills"
KILLS_IN_FOLD = 4
KILLS_AT_RANDOM = 4

_FOLDING = sa.text(
    "SELECT client_port FROM pg_stat_activity WHERE datname = current_database() "
    "AND state = 'active' AND pid <> pg_backend_pid() AND query LIKE 'WITH taken%' "
    "AND query LIKE '%usage_pending%'")


def _folder(store: ExperimentStore, workers: list[WorkerProcess]) -> WorkerProcess | None:
    """The worker whose fold statement is running now, if any."""
    with store.engine.connect() as connection:
        ports = set(connection.scalars(_FOLDING))
    for worker in workers:
        if worker.process is None or worker.process.poll() is not None:
            continue
        try:
            mine = {c.laddr.port for c in psutil.Process(worker.process.pid).net_connections("tcp")}
        except psutil.Error:
            continue
        if mine & ports:
            return worker
    return None


def _usage(rows: list[UsageDay]) -> dict[tuple[str, date], tuple[int, int, int, float]]:
    return {(r.learner_key, r.day): (r.events, r.sessions, r.activities,
                                     round(r.active_seconds, 6)) for r in rows}


def test_workers_killed_while_folding_usage_count_every_event_once(
    make_settings: SettingsFactory, postgres_url: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka=True, database_url=postgres_url)
    # Small batches, folds every 0.1 s: many folds, each racing the next batch's insert.
    settings = settings.model_copy(update={"worker": settings.worker.model_copy(
        update={"batch_size": 500, "batch_seconds": 0.1})})
    ensure_topics(settings)
    classes = {f"cls-{i:03d}": EXPERIMENT for i in range(60)}
    publish_registered(settings, [enrollment(c, EXPERIMENT, "usual") for c in classes])
    load = workload(random.Random(20), classes, total=120_000, invalid=0, duplicates=3_000)
    expected = load.expected[EXPERIMENT]
    store = ExperimentStore(settings, EXPERIMENT)

    chunks = [load.lines[i: i + 5_000] for i in range(0, len(load.lines), 5_000)]

    def produce() -> None:
        for chunk in chunks:
            send_raw_events(settings, chunk)
            time.sleep(0.5)  # a steady stream, so that the kills fall under load

    producer = threading.Thread(target=produce, daemon=True)
    workers = [WorkerProcess(settings, tmp_path / f"worker-{n}.log") for n in (0, 1)]
    rng = random.Random(7)
    in_fold: list[int] = []
    at_random: list[int] = []
    queued_at_kill: list[int] = []
    try:
        for worker in workers:
            worker.start()
        producer.start()
        while len(in_fold) < KILLS_IN_FOLD and store.count_events() < len(expected):
            victim, deadline = None, time.monotonic() + 30
            while victim is None and time.monotonic() < deadline:
                victim = _folder(store, workers)
            if victim is None:
                continue
            victim.kill()
            in_fold.append(store.count_events())
            with store.engine.connect() as connection:
                queued_at_kill.append(int(connection.scalar(
                    sa.select(sa.func.count()).select_from(usage_pending_table)) or 0))
            victim.start()
        for _ in range(KILLS_AT_RANDOM):
            if store.count_events() >= len(expected):
                break
            time.sleep(rng.uniform(0.5, 2.0))
            victim = workers[rng.randrange(2)]
            victim.kill()
            at_random.append(store.count_events())
            victim.start()
        producer.join(600)
        assert not producer.is_alive()
        assert wait_until(lambda: store.count_events() >= len(expected), 300), "events lost"
        # While the workers run, readers see every event: folded or queued.
        seen = store.read_daily_usage()
        with store.engine.connect() as connection:
            reference = recomputed(connection, *_rule(settings))
        assert _usage(seen.rows) == reference, seen.watermark.statement()
    finally:
        for worker in workers:
            worker.stop()

    assert len(in_fold) == KILLS_IN_FOLD, f"only {len(in_fold)} kills during a fold"
    assert all(k < len(expected) for k in in_fold + at_random), (in_fold, at_random)
    assert any(queued_at_kill), "no kill left usage queued: nothing was tested"
    assert store.event_ids() == expected
    with store.engine.connect() as connection:
        assert folded(connection) == reference, "daily usage is not the events' usage"
        assert connection.scalar(sa.select(sa.func.count()).select_from(usage_pending_table)) == 0
        # A fold killed before its commit counted nothing: the counter of folded events
        # is the number of events, each folded once.
        assert connection.scalar(sa.select(usage_fold_table.c.folded_events)) == len(expected)


def _rule(settings: Settings) -> tuple[frozenset[str], frozenset[str]]:
    """The login and active verbs the worker applies to this experiment."""
    router = EventRouter(settings, load_pseudonym_key(settings), registry_engine(settings))
    rule = router.usage_rule(EXPERIMENT)
    return rule.login_verbs, rule.active_verbs
