"""Should a store's ``events`` table be partitioned by month? Measured both ways.

One throwaway PostgreSQL cluster (fsync on), two copies of the store's ``events`` table
(the columns, primary key and two secondary indexes of
``experiments/migrations/store/versions/0001_events.py``):

- ``plain``: as today, primary key ``event_id``;
- ``monthly``: ``PARTITION BY RANGE (occurred_at)``, one partition per month (Paris
  months) of the school year. PostgreSQL requires a unique key of a partitioned table to
  include the partition key, so the primary key becomes ``(event_id, occurred_at)``.

It measures, in one run, batches interleaved (plain, monthly, monthly, plain, ...):

1. **insert cost** of the store's write path: ``COPY`` of a 2,000-row batch into a
   temporary staging table, then ``INSERT … SELECT … ON CONFLICT DO NOTHING`` into
   ``events`` (the daily-usage fold is left out: the same in both), as wall time and as
   the CPU time of each table's own PostgreSQL backend (/proc), per row;
2. **de-duplication**: an identical re-send is dropped by both; the same ``event_id``
   with another ``occurred_at`` (an event re-sent with its time corrected, or a forged
   copy) is dropped by ``plain`` and stored a second time by ``monthly``;
3. **retention**, deleting the oldest month: ``DELETE … WHERE occurred_at`` in a month
   (then ``VACUUM``, to make the space reusable) vs ``DETACH PARTITION`` + ``DROP
   TABLE``: wall time and WAL bytes written;
4. **erasing one pupil** (``DELETE … WHERE learner_key``), which ``monthly`` must do in
   every partition;
5. the sizes (``pg_total_relation_size``, over the partitions for ``monthly``).

    .venv/bin/python benchmarks/partitioning.py [--rows 3000000]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from tests.support.postgres import PostgresCluster  # noqa: E402

COLUMNS = """
    event_id varchar(36) NOT NULL,
    occurred_at timestamptz NOT NULL,
    stored_at timestamptz NOT NULL,
    resource_id varchar(128) NOT NULL,
    learner_key varchar(64) NOT NULL,
    class_id varchar(128) NOT NULL,
    school_uai varchar(16) NOT NULL,
    arm varchar(64) NOT NULL,
    verb varchar(64) NOT NULL,
    object_id varchar(256),
    duration_s double precision,
    score double precision,
    success boolean,
    extensions json,
    authority varchar(256)
"""
NAMES = ("event_id, occurred_at, resource_id, learner_key, class_id, school_uai, arm, verb, "
         "object_id, duration_s, score, success, extensions, authority")
#: Paris months of the school year 2027-2028 (the partitions), and the data's span.
MONTHS = [datetime(2027 + (m < 9), m, 1) for m in (9, 10, 11, 12, 1, 2, 3, 4, 5, 6, 7, 8)]
START = datetime(2027, 9, 1, 6, tzinfo=UTC)
SPAN_S = 300 * 86400  # September to June
BATCH = 2_000
CLASSES, PUPILS = 2_000, 25


def _month_bound(month: datetime) -> str:
    return f"{month:%Y-%m-%d} 00:00:00 Europe/Paris"


def create_tables(connection: psycopg.Connection[Any]) -> None:
    connection.execute(f"""
        CREATE SCHEMA plain;
        CREATE TABLE plain.events ({COLUMNS}, PRIMARY KEY (event_id));
        CREATE INDEX ON plain.events (class_id);
        CREATE INDEX ON plain.events (learner_key);
        CREATE SCHEMA monthly;
        CREATE TABLE monthly.events ({COLUMNS}, PRIMARY KEY (event_id, occurred_at))
            PARTITION BY RANGE (occurred_at);
        CREATE INDEX ON monthly.events (class_id);
        CREATE INDEX ON monthly.events (learner_key);
    """)
    for month, following in zip(MONTHS, [*MONTHS[1:], datetime(2028, 9, 1)], strict=True):
        connection.execute(
            f"CREATE TABLE monthly.events_{month:%Y_%m} PARTITION OF monthly.events "
            f"FOR VALUES FROM ('{_month_bound(month)}') TO ('{_month_bound(following)}')")


def _learner_key(class_no: int, pupil: int) -> str:
    return hashlib.sha256(f"{class_no}-{pupil}".encode()).hexdigest()


def batches(rows: int, seed: int = 1) -> list[str]:
    """COPY text of ``rows`` events in batches, in roughly the order they happen."""
    rng = random.Random(seed)
    keys = [[_learner_key(c, p) for p in range(PUPILS)] for c in range(CLASSES)]
    out: list[str] = []
    for first in range(0, rows, BATCH):
        lines = io.StringIO()
        for i in range(first, min(first + BATCH, rows)):
            # time advances with the stream, a few minutes of jitter (late tablets)
            when = START + timedelta(seconds=i * SPAN_S / rows + rng.uniform(-600, 0))
            c = rng.randrange(CLASSES)
            lines.write(
                f"{uuid.UUID(int=rng.getrandbits(128), version=4)}\t{when.isoformat()}\tlectio\t"
                f"{keys[c][rng.randrange(PUPILS)]}\tc{c:05d}\t0750001U\t"
                f"{'lectio' if c % 2 else 'usual'}\texercise_answered\tex-{rng.randrange(300)}"
                f"\t{rng.randrange(5, 600)}\t\\N\t\\N\t\\N\t\\N\n")
        out.append(lines.getvalue())
    return out


class Writer:
    """One connection writing one table the store's way; its backend's CPU is read."""

    def __init__(self, dsn: str, schema: str, conflict: str) -> None:
        self.connection = psycopg.connect(dsn)
        self.schema = schema
        self.backend = self.connection.info.backend_pid
        self.connection.execute(
            f"CREATE TEMPORARY TABLE incoming ({COLUMNS}) "
            "ON COMMIT DELETE ROWS")
        self.connection.execute("ALTER TABLE incoming DROP COLUMN stored_at")
        self.connection.commit()
        self.insert = (f"INSERT INTO {schema}.events ({NAMES}, stored_at) "
                       f"SELECT {NAMES}, now() FROM incoming ON CONFLICT ({conflict}) DO NOTHING")
        self.wall = self.cpu = 0.0
        self.rows = 0

    def _cpu(self) -> float:
        fields = Path(f"/proc/{self.backend}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def write(self, text: str) -> int:
        cpu, began = self._cpu(), time.perf_counter()
        with self.connection.cursor() as cursor:
            with cursor.copy(f"COPY incoming ({NAMES}) FROM STDIN") as copy:
                copy.write(text)
            cursor.execute(self.insert)
            inserted = cursor.rowcount
        self.connection.commit()
        self.wall += time.perf_counter() - began
        self.cpu += self._cpu() - cpu
        self.rows += inserted
        return inserted


def _wal(connection: psycopg.Connection[Any]) -> Any:
    return connection.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]


def _wal_bytes(connection: psycopg.Connection[Any], since: Any) -> int:
    return int(connection.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)",
                                  (since,)).fetchone()[0])  # type: ignore[index]


def _size(connection: psycopg.Connection[Any], schema: str) -> int:
    return int(connection.execute(
        "SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) "
        "FROM pg_partition_tree(%s::regclass)), pg_total_relation_size(%s::regclass))",
        (f"{schema}.events",) * 2).fetchone()[0])  # type: ignore[index]


def _timed(connection: psycopg.Connection[Any], *statements: str) -> tuple[float, int, int]:
    """(seconds, WAL bytes, rows of the first statement) of ``statements``, committed."""
    wal, began = _wal(connection), time.perf_counter()
    rows = -1
    with connection.transaction():
        for statement in statements:
            cursor = connection.execute(statement)
            rows = cursor.rowcount if rows == -1 else rows
    return time.perf_counter() - began, _wal_bytes(connection, wal), rows


def measure(rows: int) -> dict[str, float]:
    cluster = PostgresCluster.start(durable=True)  # fsync on, as in production
    figures: dict[str, float] = {}
    try:
        dsn = f"host=127.0.0.1 port={cluster.port} user=preuve dbname=postgres"
        admin = psycopg.connect(dsn, autocommit=True)
        create_tables(admin)
        print(f"machine: {platform.node()} {os.cpu_count()} cores, PostgreSQL "
              f"{admin.info.server_version // 10000}, {rows:,} events in {BATCH:,}-row "
              f"batches, 12 monthly partitions, load average {os.getloadavg()[0]:.2f}")
        began = time.perf_counter()
        texts = batches(rows)
        print(f"  (made the rows in {time.perf_counter() - began:.1f} s)")

        plain = Writer(dsn, "plain", "event_id")
        monthly = Writer(dsn, "monthly", "event_id, occurred_at")
        for k, text in enumerate(texts):
            pair = (plain, monthly) if k % 2 == 0 else (monthly, plain)  # interleaved
            for writer in pair:
                writer.write(text)
        for writer in (plain, monthly):
            assert writer.rows == rows, (writer.schema, writer.rows)
            figures[f"{writer.schema}_us_wall"] = writer.wall / rows * 1e6
            figures[f"{writer.schema}_us_cpu"] = writer.cpu / rows * 1e6
            print(f"insert {writer.schema:<8} {rows / writer.wall:9,.0f} rows/s  "
                  f"{writer.wall / rows * 1e6:6.1f} us wall/row  "
                  f"{writer.cpu / rows * 1e6:6.1f} us backend CPU/row")
        print(f"ratio_insert_monthly_to_plain={plain.wall / monthly.wall:.2f}  "
              f"(rows/s of the partitioned table / the plain one, same batches interleaved)")

        # De-duplication: an identical re-send, then the same id at another time.
        first = texts[len(texts) // 2].splitlines()[0].split("\t")
        again = "\t".join(first) + "\n"
        moved = first.copy()
        moved[1] = (datetime.fromisoformat(first[1]) + timedelta(days=40)).isoformat()
        for writer in (plain, monthly):
            same = writer.write(again)
            other = writer.write("\t".join(moved) + "\n")
            count = writer.connection.execute(
                f"SELECT count(*) FROM {writer.schema}.events WHERE event_id = %s",
                (first[0],)).fetchone()[0]  # type: ignore[index]
            writer.connection.commit()
            figures[f"{writer.schema}_copies"] = count
            print(f"dedup  {writer.schema:<8} identical re-send stored {same} more, same "
                  f"event_id 40 days later stored {other} more: {count} rows for one event_id")

        for writer in (plain, monthly):
            writer.connection.close()
        sizes = {schema: _size(admin, schema) for schema in ("plain", "monthly")}
        for schema, size in sizes.items():
            figures[f"{schema}_bytes_per_row"] = size / rows
            print(f"size   {schema:<8} {size / 2**20:9,.0f} MiB, {size / rows:.0f} bytes/row "
                  f"(heap, TOAST and the three indexes)")

        # Erasing one pupil (the right to erasure): every partition's index is probed.
        pupil = _learner_key(7, 3)
        for schema in ("plain", "monthly"):
            seconds, wal, erased = _timed(
                admin, f"DELETE FROM {schema}.events WHERE learner_key = '{pupil}'")
            figures[f"{schema}_erase_ms"] = seconds * 1000
            print(f"erase  {schema:<8} one pupil's {erased} events: {seconds * 1000:7.1f} ms, "
                  f"WAL {wal / 2**10:,.0f} KiB")

        # Retention: the oldest month goes.
        september = (f"occurred_at >= '{_month_bound(MONTHS[0])}' AND occurred_at < "
                     f"'{_month_bound(MONTHS[1])}'")
        seconds, wal, deleted = _timed(admin, f"DELETE FROM plain.events WHERE {september}")
        vacuum_began = time.perf_counter()
        wal_before = _wal(admin)
        admin.execute("VACUUM plain.events")
        vacuum = time.perf_counter() - vacuum_began
        vacuum_wal = _wal_bytes(admin, wal_before)
        figures["delete_month_s"], figures["vacuum_s"] = seconds, vacuum
        print(f"retain plain    DELETE a month ({deleted:,} rows): {seconds:6.2f} s, WAL "
              f"{wal / 2**20:,.0f} MiB; then VACUUM {vacuum:.2f} s, WAL "
              f"{vacuum_wal / 2**20:,.0f} MiB; table still {_size(admin, 'plain') / 2**20:,.0f} "
              f"MiB (space reusable, not returned)")
        rows_september = admin.execute(
            "SELECT count(*) FROM monthly.events_2027_09").fetchone()[0]  # type: ignore[index]
        seconds, wal, _ = _timed(
            admin, "ALTER TABLE monthly.events DETACH PARTITION monthly.events_2027_09",
            "DROP TABLE monthly.events_2027_09")
        figures["drop_month_s"] = seconds
        print(f"retain monthly  DETACH + DROP a month ({rows_september:,} rows): "
              f"{seconds:6.2f} s, WAL {wal / 2**10:,.0f} KiB; table now "
              f"{_size(admin, 'monthly') / 2**20:,.0f} MiB")
        print(f"ratio_delete_month_to_drop={(figures['delete_month_s'] + vacuum) / seconds:.0f}  "
              f"(DELETE + VACUUM of a month / DETACH + DROP of its partition, wall time)")
        admin.close()
        return figures
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3_000_000)
    measure(parser.parse_args().rows)


if __name__ == "__main__":
    main()
