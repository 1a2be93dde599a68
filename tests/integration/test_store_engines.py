"""One engine for every experiment schema on PostgreSQL (issue 20, item 3): 200
experiments' stores are written and read through one pool, and the database's connection
count (``pg_stat_activity``) does not grow with the number of experiments. (SQLite keeps
one file, hence one engine, per experiment.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from experiments.database import dispose_engines, store_engine
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent, daily_usage_table
from tests.support.uai import uai

EXPERIMENTS = 200


def _connections(url: str) -> int:
    """Client connections to the test's database, as PostgreSQL counts them."""
    parsed = make_url(url)
    with psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username,
                         dbname="postgres", autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = "
            "'client backend'", (parsed.database,)).fetchone()
    assert row is not None
    return int(row[0])


def _event(n: int) -> StoredEvent:
    return StoredEvent(str(uuid.uuid4()), datetime(2027, 10, 4, 9, n % 60, tzinfo=UTC),
                       "lectio", f"learner-{n}", f"class-{n}", uai("0780001"), "lectio",
                       "activity_completed", duration_s=60.0 + n, is_usage=True)


def test_two_hundred_experiments_share_one_pool(tmp_path: object, postgres_url: str) -> None:
    settings = Settings(state_dir=tmp_path, database_url=postgres_url,  # type: ignore[arg-type]
                        pseudonym_key="engines-key" * 3)
    try:
        counts = []
        for n in range(EXPERIMENTS):
            store = ExperimentStore(settings, f"charge-{n:03d}")
            assert store.write_events([_event(n)], datetime.now(UTC)).inserted == 1
            if n in (9, EXPERIMENTS - 1):
                counts.append(_connections(postgres_url))
        # Every store holds its own event, in its own schema.
        for n in (0, 57, EXPERIMENTS - 1):
            store = ExperimentStore(settings, f"charge-{n:03d}")
            assert store.count_events() == 1
            with store.engine.connect() as connection:
                assert connection.scalar(
                    sa.select(daily_usage_table.c.active_seconds)) == 60.0 + n
        first, last = store_engine(settings, "charge-000"), store_engine(settings, "charge-199")
        assert first.pool is last.pool  # one pool for every schema
        with first.connect() as connection:
            schemas = connection.scalar(sa.text(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'events' "
                "AND table_schema LIKE 'exp_charge_%'"))
        assert schemas == EXPERIMENTS
        after_ten, after_all = counts
        print(f"connections after 10 experiments: {after_ten}, after {EXPERIMENTS}: {after_all}")
        assert after_all <= after_ten, counts
        assert after_all <= 4 + 8 + 2 + 4, counts  # the store pool, the registry's pool
    finally:
        dispose_engines()
