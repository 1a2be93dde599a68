"""Daily usage folded outside the insert transaction (issue 20), on a real PostgreSQL.

A PostgreSQL store's insert transaction queues the usage of the events it inserts
(``usage_pending``); :func:`experiments.store.fold_usage` moves the queue into
``daily_usage``. These tests check, without Kafka, what the stream worker relies on:
readers count the queue and state the watermark; folds are serialised by ``usage_fold``'s
row lock (a worker's fold skips while another holds it); writers and folders running at
once in several threads leave ``daily_usage`` equal to a recomputation from the events;
an erasure folds first, so nothing it deletes is folded back; store_0003 starts an
existing store's watermark at the events its usage already counts. The kills are in
``tests/integration/test_usage_fold_kills.py``.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from experiments import database
from experiments.privacy.retention import _erase_rows
from experiments.protocol.vocabulary import SCHOOL_TIMEZONE
from experiments.store import (
    ExperimentStore,
    StoredEvent,
    daily_usage_table,
    events_table,
    fold_usage,
    stage_events,
    usage_fold_table,
    usage_pending_table,
)
from tests.conftest import SettingsFactory

pytestmark = [pytest.mark.integration]

START = datetime(2027, 10, 4, 21, 30, tzinfo=UTC)  # some events fall on the next Paris day
Usage = dict[tuple[str, date], tuple[int, int, int, float]]


def _event(n: int, rng: random.Random) -> StoredEvent:
    verb = rng.choice(["session_started", "exercise_answered", "content_viewed"])
    return StoredEvent(
        event_id=f"00000000-0000-4000-8000-{n:012d}",
        occurred_at=START + timedelta(minutes=rng.randrange(0, 240)),
        resource_id="lectio", learner_key=f"k{rng.randrange(8)}", class_id="c1",
        school_uai="0750001U", arm="lectio", verb=verb,
        duration_s=float(rng.randrange(0, 300)) if rng.random() < 0.8 else None,
        is_session=verb == "session_started", is_usage=verb != "session_started",
    )


def recomputed(connection: sa.Connection, sessions: frozenset[str],
               activities: frozenset[str]) -> Usage:
    """Daily usage recomputed from the ``events`` table (shared with the kill test)."""
    totals: dict[tuple[str, date], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    e = events_table.c
    for learner, occurred_at, verb, duration in connection.execute(
            sa.select(e.learner_key, e.occurred_at, e.verb, e.duration_s)):
        row = totals[(learner, occurred_at.astimezone(SCHOOL_TIMEZONE).date())]
        row[0] += 1
        row[1] += verb in sessions
        row[2] += verb in activities
        row[3] += (duration or 0.0) if verb in activities else 0.0
    return {key: (int(n), int(s), int(a), round(t, 6)) for key, (n, s, a, t) in totals.items()}


def folded(connection: sa.Connection) -> Usage:
    """The ``daily_usage`` table as it is (folded rows only)."""
    u = daily_usage_table.c
    return {(k, d): (n, s, a, round(t, 6)) for k, d, n, s, a, t in connection.execute(
        sa.select(u.learner_key, u.day, u.events, u.sessions, u.activities, u.active_seconds))}


_SESSIONS, _ACTIVITIES = frozenset({"session_started"}), frozenset(
    {"exercise_answered", "content_viewed"})


def test_the_insert_queues_usage_readers_count_the_queue_and_a_fold_empties_it(
    make_settings: SettingsFactory, postgres_url: str
) -> None:
    store = ExperimentStore(make_settings(database_url=postgres_url), "exp-fold")
    rng = random.Random(1)
    events = [_event(n, rng) for n in range(300)]
    # write_staged (the worker's path) leaves the usage queued; a repeat is not queued.
    assert store.write_staged(stage_events(events[:200], "postgresql"), START).inserted == 200
    assert store.write_staged(stage_events(events[100:], "postgresql"), START).inserted == 100
    with store.engine.connect() as connection:
        assert folded(connection) == {}
        expected = recomputed(connection, _SESSIONS, _ACTIVITIES)
    read = store.read_daily_usage()
    assert read.watermark.pending_events == 300 and read.watermark.folded_at is None
    assert "300 events stored since" in read.watermark.statement()
    assert {(r.learner_key, r.day): (r.events, r.sessions, r.activities,
                                     round(r.active_seconds, 6)) for r in read.rows} == expected

    assert store.fold_usage() == 300
    assert store.fold_usage() == 0
    with store.engine.connect() as connection:
        assert folded(connection) == expected
        assert connection.scalar(sa.select(sa.func.count()).select_from(usage_pending_table)) == 0
    after = store.read_daily_usage()
    assert after.watermark.pending_events == 0 and after.watermark.folded_events == 300
    assert after.watermark.folded_at is not None
    assert [tuple(r) for r in after.rows] == [tuple(r) for r in read.rows]


def test_a_fold_in_progress_makes_a_worker_skip_and_a_reader_wait(
    make_settings: SettingsFactory, postgres_url: str
) -> None:
    store = ExperimentStore(make_settings(database_url=postgres_url), "exp-lock")
    rng = random.Random(2)
    store.write_staged(stage_events([_event(n, rng) for n in range(50)], "postgresql"), START)
    waited: list[int | None] = []
    with store.engine.begin() as holder:
        assert fold_usage(holder, wait=True) == 50  # holds the lock until this commits
        assert store.fold_usage(wait=False) is None  # a worker skips
        reader = threading.Thread(target=lambda: waited.append(store.fold_usage(wait=True)))
        reader.start()
        reader.join(1.0)
        assert reader.is_alive(), "a waiting fold did not wait for the lock"
    reader.join(60)
    assert waited == [0]  # it waited, then found the queue empty
    with store.engine.connect() as connection:
        assert sum(n for n, *_ in folded(connection).values()) == 50


def test_writers_and_folders_at_once_count_every_event_once(
    make_settings: SettingsFactory, postgres_url: str
) -> None:
    """Four threads, as four workers on their partitions, write batches of their own
    events (with repeats, as re-deliveries) for the same pupil-days, and fold after a
    batch without waiting, as workers do. (Their event ids are disjoint, as partitions'
    are: two transactions inserting the same new ids in different orders may deadlock
    on the primary key, a property of any concurrent INSERT, fold or not.)"""
    store = ExperimentStore(make_settings(database_url=postgres_url), "exp-threads")
    rng = random.Random(3)
    pools = [[_event(n, rng) for n in range(seed, 3000, 4)] for seed in range(4)]
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        r, pool = random.Random(seed), pools[seed]
        try:
            for _ in range(25):
                batch = r.sample(pool, r.randrange(20, 200))
                store.write_staged(stage_events(batch, "postgresql"), START)
                if r.random() < 0.7:
                    store.fold_usage(wait=False)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    read = store.read_daily_usage()  # before the last fold: the queue counts
    store.fold_usage()
    with store.engine.connect() as connection:
        expected = recomputed(connection, _SESSIONS, _ACTIVITIES)
        assert folded(connection) == expected
        total = connection.scalar(sa.select(sa.func.count()).select_from(events_table))
        assert connection.scalar(sa.select(usage_fold_table.c.folded_events)) == total
    assert {(r.learner_key, r.day): (r.events, r.sessions, r.activities,
                                     round(r.active_seconds, 6)) for r in read.rows} == expected


def test_an_erasure_folds_first_so_nothing_erased_is_folded_back(
    make_settings: SettingsFactory, postgres_url: str
) -> None:
    settings = make_settings(database_url=postgres_url)
    store = ExperimentStore(settings, "exp-erase")
    rng = random.Random(4)
    store.write_staged(stage_events([_event(n, rng) for n in range(400)], "postgresql"), START)
    removed = _erase_rows(settings, "exp-erase", events_table.c.learner_key == "k0",
                          daily_usage_table.c.learner_key == "k0")
    assert removed["events"] > 0 and removed["daily_usage"] > 0
    store.fold_usage()
    with store.engine.connect() as connection:
        usage = folded(connection)
        assert not [key for key in usage if key[0] == "k0"], "erased usage folded back"
        assert usage == recomputed(connection, _SESSIONS, _ACTIVITIES)


def test_store_0003_starts_the_watermark_at_the_usage_already_counted(
    make_settings: SettingsFactory, postgres_url: str
) -> None:
    store = ExperimentStore(make_settings(database_url=postgres_url), "exp-migrate")
    rng = random.Random(5)
    store.write_events([_event(n, rng) for n in range(120)], START)  # folded at once
    config = Config()
    config.set_main_option("script_location",
                           str(Path(database.__file__).parent / "migrations" / "store"))
    for action, target in (("downgrade", "store_0002"), ("upgrade", "heads")):
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            getattr(command, action)(config, target)
    with store.engine.connect() as connection:
        assert connection.scalar(sa.select(usage_fold_table.c.folded_events)) == 120
        assert sum(n for n, *_ in folded(connection).values()) == 120
    assert store.read_daily_usage().watermark.pending_events == 0
