"""The store's two secondary indexes (``ix_events_learner_key``, ``ix_events_class_id``):
what erasing one pupil costs without them, and what they cost each insert (issue 20).

Builds one experiment's PostgreSQL store of N events (default 10,000,000) directly in
the database (``INSERT … SELECT`` over ``generate_series``, then the keys and indexes
built once: a measurement, not the ingest path), with its daily usage, in a throwaway
durable cluster (fsync on). Pupils have 64-hex-digit pseudonyms like the router's and
their events are spread over the whole table, as events of a school year interleave.
Then, with the indexes and again after dropping them:

  erase  one pupil's data as the erasure does it (``experiments.privacy.retention``'s
         ``_erase_rows``: the pupil's event ids read for their receipts, then in one
         transaction the fold, the events and the daily usage deleted), three pupils,
         the median; and one class's (the index on ``class_id``);
  insert batches of 2,000 new events written by ``write_staged`` plus their fold, the
         PostgreSQL CPU µs per event (/proc, the postmaster and its backends).

    .venv/bin/python benchmarks/store_indexes.py [--events 10000000] [--batches 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from benchmarks.store_write import events, postgres_cpu_seconds  # noqa: E402
from experiments.database import dispose_engines  # noqa: E402
from experiments.privacy.retention import _erase_rows  # noqa: E402
from experiments.settings import Settings  # noqa: E402
from experiments.store import (  # noqa: E402
    ExperimentStore,
    daily_usage_table,
    events_table,
    stage_events,
)
from tests.support.postgres import PostgresCluster  # noqa: E402

EXPERIMENT = "bench-indexes"
PER_PUPIL = 100  # events per pupil: 100,000 pupils at 10M events
CHUNK = 1_000_000

_FILL = """
INSERT INTO events (event_id, occurred_at, stored_at, resource_id, learner_key, class_id,
                    school_uai, arm, verb, object_id, duration_s, score, success, extensions,
                    authority)
SELECT md5(g::text)::uuid::text,
       timestamptz '2027-09-06 07:00+00' + ((g * 7919) % (200 * 86400)) * interval '1 second',
       timestamptz '2027-09-06 07:00+00' + ((g * 7919) % (200 * 86400)) * interval '1 second',
       'lectio', encode(sha256(('pupil-' || p)::bytea), 'hex'), 'cls-' || (p / 25),
       '0750001U', CASE WHEN p % 2 = 0 THEN 'lectio' ELSE 'usual' END,
       (ARRAY['session_started', 'exercise_answered', 'content_viewed',
              'exercise_answered'])[g % 4 + 1],
       'item-' || (g % 300), (g % 115) + 5, NULL, NULL, NULL, 'edtech:lectio:ab12'
FROM (SELECT g, (g * 48271) % :pupils AS p FROM generate_series(CAST(:first AS bigint),
                                                        CAST(:last AS bigint)) AS g) AS s
"""

_USAGE = """
INSERT INTO daily_usage (learner_key, day, class_id, arm, events, sessions, activities,
                         active_seconds)
SELECT learner_key, (occurred_at AT TIME ZONE 'Europe/Paris')::date, max(class_id), max(arm),
       count(*), count(*) FILTER (WHERE verb = 'session_started'),
       count(*) FILTER (WHERE verb <> 'session_started'),
       coalesce(sum(duration_s) FILTER (WHERE verb <> 'session_started'), 0)
FROM events GROUP BY 1, 2
"""

_INDEXES = {"ix_events_learner_key": "learner_key", "ix_events_class_id": "class_id"}


def build(store: ExperimentStore, count: int) -> float:
    """Fill the store with ``count`` events and their usage; returns the seconds taken."""
    began = time.perf_counter()
    pupils = max(count // PER_PUPIL, 25)
    with store.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE events DROP CONSTRAINT events_pkey")
        for name in _INDEXES:  # gone since store_0004; this script measures both ways
            connection.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    for first in range(1, count + 1, CHUNK):
        last = min(first + CHUNK - 1, count)
        with store.engine.begin() as connection:
            connection.execute(sa.text(_FILL), {"pupils": pupils, "first": first, "last": last})
        print(f"  {last:,} events ({time.perf_counter() - began:.0f} s)", flush=True)
    with store.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE events ADD PRIMARY KEY (event_id)")
        connection.exec_driver_sql(_USAGE)
    create_indexes(store)
    with store.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM ANALYZE")
    return time.perf_counter() - began


def create_indexes(store: ExperimentStore) -> float:
    began = time.perf_counter()
    with store.engine.begin() as connection:
        for name, column in _INDEXES.items():
            connection.exec_driver_sql(f"CREATE INDEX {name} ON events ({column})")
    return time.perf_counter() - began


def drop_indexes(store: ExperimentStore) -> None:
    with store.engine.begin() as connection:
        for name in _INDEXES:
            connection.exec_driver_sql(f"DROP INDEX {name}")


def erase(settings: Settings, store: ExperimentStore, pupils: list[str],
          class_id: str) -> tuple[float, float, int]:
    """(median seconds to erase one pupil, seconds to erase one class, events removed
    per pupil)."""
    times, removed = [], []
    for key in pupils:
        began = time.perf_counter()
        done = _erase_rows(settings, EXPERIMENT, events_table.c.learner_key == key,
                           daily_usage_table.c.learner_key == key)
        times.append(time.perf_counter() - began)
        removed.append(done["events"])
    began = time.perf_counter()
    _erase_rows(settings, EXPERIMENT, events_table.c.class_id == class_id,
                daily_usage_table.c.class_id == class_id)
    return statistics.median(times), time.perf_counter() - began, int(statistics.median(removed))


def insert_cost(store: ExperimentStore, cluster: PostgresCluster, batches: int,
                seed: int) -> float:
    """PostgreSQL CPU µs per event of ``batches`` batches of 2,000 new events + folds."""
    staged = [stage_events(events(2_000, seed * 1000 + b), "postgresql") for b in range(batches)]
    before = postgres_cpu_seconds(cluster)
    for k, batch in enumerate(staged, 1):
        store.write_staged(batch, datetime.now(UTC))
        if k % 4 == 0:
            store.fold_usage()
    store.fold_usage()
    return (postgres_cpu_seconds(cluster) - before) / (batches * 2_000) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--batches", type=int, default=40)
    args = parser.parse_args()
    free = shutil.disk_usage("/tmp").free / 2**30
    need = args.events * 700 / 2**30  # table, keys, usage and WAL, generously
    if free < need + 5:
        sys.exit(f"{free:.0f} GiB free under /tmp, {need:.0f} GiB needed for "
                 f"{args.events:,} events")
    cluster = PostgresCluster.start(durable=True)
    try:
        url = cluster.create_database("bench_store_indexes")
        settings = Settings(database_url=url, state_dir=cluster.root / "state")
        store = ExperimentStore(settings, EXPERIMENT)
        print(f"building a store of {args.events:,} events ({free:.0f} GiB free)", flush=True)
        built = build(store, args.events)
        with store.engine.connect() as connection:
            size = connection.scalar(sa.text(
                "SELECT pg_total_relation_size('events') / 1048576"))
            pupils = list(connection.scalars(sa.text(
                "SELECT learner_key FROM daily_usage GROUP BY learner_key "
                "ORDER BY learner_key LIMIT 6")))
            classes = list(connection.scalars(sa.text(
                "SELECT DISTINCT class_id FROM daily_usage ORDER BY class_id LIMIT 2")))
        with_idx = erase(settings, store, pupils[:3], classes[0])
        insert_with = insert_cost(store, cluster, args.batches, seed=1)
        drop_indexes(store)
        without = erase(settings, store, pupils[3:], classes[1])
        insert_without = insert_cost(store, cluster, args.batches, seed=2)
        rebuild = create_indexes(store)
        insert_with_again = insert_cost(store, cluster, args.batches, seed=3)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
              f"store of {args.events:,} events ({size:,} MiB with its indexes), "
              f"{PER_PUPIL} events per pupil, built in {built:.0f} s")
        print(f"erase_pupil_s_with_indexes={with_idx[0]:.3f}  ({with_idx[2]} events)")
        print(f"erase_pupil_s_without_indexes={without[0]:.3f}  ({without[2]} events)")
        print(f"erase_class_s_with_indexes={with_idx[1]:.3f}")
        print(f"erase_class_s_without_indexes={without[1]:.3f}")
        print(f"insert_pg_us_per_event_with_indexes={insert_with:.1f}  "
              f"(again after rebuilding them: {insert_with_again:.1f})")
        print(f"insert_pg_us_per_event_without_indexes={insert_without:.1f}")
        print(f"index_rebuild_s={rebuild:.0f}")
        print(f"ratio_insert_pg_us_without_to_with_indexes="
              f"{insert_without / ((insert_with + insert_with_again) / 2):.2f}  "
              "(baseline: the same store with both indexes, mean of the runs before and after)")
        print(f"ratio_erase_pupil_without_to_with_indexes={without[0] / with_idx[0]:.1f}  "
              "(baseline: erasing one pupil with the index on learner_key)")
    finally:
        dispose_engines()
        cluster.stop()


if __name__ == "__main__":
    main()
