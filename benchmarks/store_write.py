"""The store's write statements on PostgreSQL, before and after the daily-usage fold left
the insert transaction (issue 20): PostgreSQL CPU µs per event and events/s, interleaved.

Three ways of writing the same batches (2,000 pseudonymised events, as the worker writes
them), each into its own store of a throwaway durable cluster, round after round in turn
so that the machine's noise falls on all three alike:

  before  the insert and the usage upsert in one statement (the store until issue 20);
  after   the insert and the fold queue in one statement (``write_staged``), and the fold
          (``fold_usage``) every 4 batches, as the worker folds every ``batch_seconds``
          at about 16,000 events/s; the fold's share is printed apart;
  floor   the insert alone, no usage at all (what the issue measured as "without the fold").

PostgreSQL CPU is read from /proc (the postmaster and its backends), the client's time
with a monotonic clock. Prints one line per figure, then ``ratio_*`` lines naming their
baseline.

    .venv/bin/python benchmarks/store_write.py [--events 200000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from benchmarks.proc_cpu import postgres_cpu_seconds  # noqa: E402
from experiments import store as store_module  # noqa: E402
from experiments.database import dispose_engines, insert_for_dialect  # noqa: E402
from experiments.settings import Settings  # noqa: E402
from experiments.store import (  # noqa: E402
    ExperimentStore,
    StagedBatch,
    StoredEvent,
    events_table,
    stage_events,
)
from tests.support.postgres import PostgresCluster  # noqa: E402

BATCH = 2_000
FOLD_EVERY = 4
PUPILS = 5_000




def events(count: int, seed: int) -> list[StoredEvent]:
    """``count`` events of ``PUPILS`` pupils over a school week, as the router makes them."""
    rng = random.Random(seed)
    start = datetime(2027, 10, 4, 7, tzinfo=UTC)
    verbs = ["session_started", "exercise_answered", "content_viewed", "exercise_answered"]
    out = []
    for i in range(count):
        pupil = rng.randrange(PUPILS)
        verb = rng.choice(verbs)
        out.append(StoredEvent(
            event_id=f"{seed:08x}-0000-4000-8000-{i:012x}",
            occurred_at=start + timedelta(days=rng.randrange(5), seconds=rng.randrange(30_000)),
            resource_id="lectio", learner_key=f"key-{pupil:06d}", class_id=f"cls-{pupil // 25}",
            school_uai="0750001U", arm="lectio" if pupil % 2 else "usual", verb=verb,
            object_id=f"item-{rng.randrange(300)}", duration_s=float(rng.randrange(5, 120)),
            score=None, success=None, extensions=None, authority="edtech:lectio:ab12",
            is_session=verb == "session_started", is_usage=verb != "session_started"))
    return out


def _old_statement(dialect: sa.Dialect) -> sa.Executable:
    """The store's statement before issue 20: INSERT … RETURNING feeding the usage upsert
    (built from the module's own pieces, so that only the usage's place differs)."""
    staging = store_module._incoming_pg
    i = staging.c
    columns = [c.name for c in events_table.c]
    new = (
        insert_for_dialect(dialect, events_table)
        .from_select(columns, sa.select(*(
            store_module._STORED_AT if n == "stored_at" else i[n] for n in columns))
                     .where(sa.true()))
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(events_table.c.event_id)
    ).cte("new")
    staged_new = (sa.select(i.learner_key, i.day, i.class_id, i.arm, i.is_session, i.is_usage,
                            i.duration_s)
                  .join_from(staging, new, new.c.event_id == i.event_id).subquery("staged_new"))
    usage = store_module._upsert_usage(dialect, store_module._per_day(staged_new)).cte("usage")
    return sa.select(sa.func.count()).select_from(new).add_cte(usage)


def _insert_only(dialect: sa.Dialect) -> sa.Executable:
    staging = store_module._incoming_pg
    i = staging.c
    columns = [c.name for c in events_table.c]
    new = (
        insert_for_dialect(dialect, events_table)
        .from_select(columns, sa.select(*(
            store_module._STORED_AT if n == "stored_at" else i[n] for n in columns))
                     .where(sa.true()))
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(events_table.c.event_id)
    ).cte("new")
    return sa.select(sa.func.count()).select_from(new)


def write_with(store: ExperimentStore, staged: StagedBatch, statement: sa.Executable) -> int:
    """One batch as ``write_staged`` writes it, with another set statement."""
    with store.engine.begin() as connection:
        statements = store_module._statements(connection.dialect)
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(statements.create_incoming)
            cursor.execute(statements.clear_incoming)
            statements.load(cursor, staged.rows)
            return int(connection.execute(statement, {"stored_at": datetime.now(UTC)})
                       .scalar_one())
        finally:
            cursor.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="per way of writing")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    cluster = PostgresCluster.start(durable=True)  # fsync on, as in production
    try:
        url = cluster.create_database("bench_store_write")
        settings = Settings(database_url=url, state_dir=cluster.root / "state")
        stores = {way: ExperimentStore(settings, f"bench-{way}")
                  for way in ("before", "after", "floor")}
        dialect = stores["before"].engine.dialect
        old, bare = _old_statement(dialect), _insert_only(dialect)
        per_round = max(BATCH, args.events // args.rounds // BATCH * BATCH)
        spent = {k: 0.0 for k in ("before", "after", "after_insert", "after_fold", "floor")}
        pg = dict(spent)
        written = {way: 0 for way in stores}
        for r in range(args.rounds):
            batches = {way: [stage_events(b, "postgresql") for b in (
                lambda evs: [evs[k:k + BATCH] for k in range(0, len(evs), BATCH)])(
                    events(per_round, seed=1000 * r + n))]
                for n, way in enumerate(stores)}
            for way in stores:
                ways: dict[str, Callable[[StagedBatch], object]] = {
                    "before": lambda b: write_with(stores["before"], b, old),
                    "floor": lambda b: write_with(stores["floor"], b, bare),
                }
                pg_before, began = postgres_cpu_seconds(cluster), time.perf_counter()
                if way == "after":
                    store = stores["after"]
                    for k, staged in enumerate(batches[way], 1):
                        store.write_staged(staged, datetime.now(UTC))
                        if k % FOLD_EVERY == 0:
                            pg_mid, mid = postgres_cpu_seconds(cluster), time.perf_counter()
                            store.fold_usage(wait=False)
                            pg["after_fold"] += postgres_cpu_seconds(cluster) - pg_mid
                            spent["after_fold"] += time.perf_counter() - mid
                    pg_mid, mid = postgres_cpu_seconds(cluster), time.perf_counter()
                    store.fold_usage()
                    pg["after_fold"] += postgres_cpu_seconds(cluster) - pg_mid
                    spent["after_fold"] += time.perf_counter() - mid
                else:
                    for staged in batches[way]:
                        ways[way](staged)
                spent[way] += time.perf_counter() - began
                pg[way] += postgres_cpu_seconds(cluster) - pg_before
                written[way] += per_round
        spent["after_insert"] = spent["after"] - spent["after_fold"]
        pg["after_insert"] = pg["after"] - pg["after_fold"]
        n = written["after"]
        us = {k: v / n * 1e6 for k, v in pg.items()}
        rate = {k: n / v for k, v in spent.items() if v > 0}
        with stores["after"].engine.connect() as connection:
            pending = connection.scalar(sa.text("SELECT count(*) FROM usage_pending"))
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
              f"{n:,} events per way, batches of {BATCH:,}, {args.rounds} interleaved rounds, "
              f"fold every {FOLD_EVERY} batches (queue left: {pending})")
        print(f"pg_us_per_event_before={us['before']:.1f}  (insert + usage upsert, one statement)")
        print(f"pg_us_per_event_after={us['after']:.1f}  (insert + queue {us['after_insert']:.1f}"
              f", fold {us['after_fold']:.1f})")
        print(f"pg_us_per_event_floor={us['floor']:.1f}  (insert only, no usage)")
        print(f"events_per_s_before={rate['before']:,.0f}")
        print(f"events_per_s_after={rate['after']:,.0f}  (insert transaction alone: "
              f"{rate['after_insert']:,.0f})")
        print(f"events_per_s_floor={rate['floor']:,.0f}")
        print(f"ratio_store_pg_us_after_to_before={us['after'] / us['before']:.2f}  "
              "(baseline: insert + usage upsert in one statement, same batches, same run)")
        print(f"ratio_store_insert_tx_pg_us_after_to_before={us['after_insert'] / us['before']:.2f}"
              "  (baseline: the same; the insert transaction only, the fold apart)")
        print(f"ratio_store_events_per_s_after_to_before={rate['after'] / rate['before']:.2f}  "
              "(baseline: the same, client time, fold included)")
    finally:
        dispose_engines()
        cluster.stop()


if __name__ == "__main__":
    main()
