"""Per-experiment stores: the events routed to one experiment and their usage aggregates.

One SQLite file per experiment by default, one PostgreSQL schema per experiment in
production (see :mod:`experiments.database`). Writes are idempotent: an event already
stored (same ``event_id``) is skipped, so that re-delivery after a crash or a re-sent
batch never stores a second copy. Usage aggregates are updated in the same transaction
from the rows actually inserted, so they can never count a duplicate.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from experiments.database import StoreBase, insert_for_dialect, store_engine
from experiments.settings import Settings

__all__ = ["StoredEvent", "ExperimentStore", "WriteResult", "events_table", "daily_usage_table"]

logger = logging.getLogger(__name__)

# Usage days follow the school's clock, not UTC: an 23:30 UTC event in winter is the next
# school day in Paris. (Overseas académies would need their own zone: see the README.)
SCHOOL_TIMEZONE = ZoneInfo("Europe/Paris")

events_table = sa.Table(
    "events",
    StoreBase.metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resource_id", sa.String(128), nullable=False),
    sa.Column("learner_key", sa.String(64), nullable=False),
    sa.Column("class_id", sa.String(128), nullable=False),
    sa.Column("school_uai", sa.String(16), nullable=False),
    sa.Column("arm", sa.String(64), nullable=False),
    sa.Column("verb", sa.String(64), nullable=False),
    sa.Column("object_id", sa.String(256)),
    sa.Column("duration_s", sa.Float),
    sa.Column("score", sa.Float),
    sa.Column("success", sa.Boolean),
    sa.Column("extensions", sa.JSON),
)

daily_usage_table = sa.Table(
    "daily_usage",
    StoreBase.metadata,
    sa.Column("learner_key", sa.String(64), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("class_id", sa.String(128), nullable=False),
    sa.Column("arm", sa.String(64), nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("sessions", sa.Integer, nullable=False),
    sa.Column("activities", sa.Integer, nullable=False),
    sa.Column("active_seconds", sa.Float, nullable=False),
)


class StoredEvent(NamedTuple):
    """An event as it is stored: pseudonymised and labelled with its arm.

    A named tuple rather than a frozen dataclass: the stream worker builds one per event,
    and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost
    several times a tuple's."""

    event_id: str
    occurred_at: datetime
    resource_id: str
    learner_key: str
    class_id: str
    school_uai: str
    arm: str
    verb: str
    object_id: str | None = None
    duration_s: float | None = None
    score: float | None = None
    success: bool | None = None
    extensions: dict[str, Any] | None = None
    is_session: bool = False
    is_usage: bool = False


@dataclass(frozen=True)
class WriteResult:
    """How many events of a batch were new, and how many were already stored."""

    inserted: int
    duplicates: int


_incoming = sa.Table(
    "preuve_incoming",
    sa.MetaData(),
    *(sa.Column(c.name, c.type) for c in events_table.c),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("is_session", sa.Integer, nullable=False),
    sa.Column("is_usage", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
)
"""A batch on its way into ``events`` (a temporary table, one per database session).
No key: :meth:`ExperimentStore.write_events` loads each event id once, and an index here
would only be maintained for nothing."""


@dataclass(frozen=True)
class _Statements:
    """The statements of :meth:`ExperimentStore.write_events` for one dialect.

    ``store`` inserts the new events and folds them into the daily usage, and returns
    the ids (SQLite) or the number (PostgreSQL) of the events inserted; on SQLite,
    ``add_usage`` then folds the rows left in ``preuve_incoming`` (``drop_incoming``
    having removed the ones already stored)."""

    create_incoming: str
    clear_incoming: str
    drop_incoming: str
    store: sa.Executable
    add_usage: sa.Executable | None
    load: Callable[[Any, Sequence[StoredEvent], datetime], None]


@functools.cache
def _statements(dialect: sa.Dialect) -> _Statements:
    columns = [column.name for column in _incoming.c]
    # The DBAPI gets exactly what SQLAlchemy would have bound (its type processors:
    # datetimes as text on SQLite, JSON serialised), so the rows read back alike. Only the
    # columns that have one pay for it (two of seventeen on PostgreSQL).
    processors = [
        (index, process)
        for index, column in enumerate(_incoming.c)
        if (process := column.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]

    def rows(events: Sequence[StoredEvent], now: datetime) -> Iterator[list[Any]]:
        for e in events:
            row = [
                e.event_id, e.occurred_at, now, e.resource_id, e.learner_key, e.class_id,
                e.school_uai, e.arm, e.verb, e.object_id, e.duration_s, e.score, e.success,
                e.extensions, e.occurred_at.astimezone(SCHOOL_TIMEZONE).date(),
                int(e.is_session), int(e.is_usage),
            ]
            for index, process in processors:
                if row[index] is not None:
                    row[index] = process(row[index])
            yield row

    names = ", ".join(columns)
    if dialect.name == "postgresql":
        def load(cursor: Any, events: Sequence[StoredEvent], now: datetime) -> None:
            with cursor.copy(f"COPY preuve_incoming ({names}) FROM STDIN") as copy:
                for row in rows(events, now):
                    copy.write_row(row)
        placeholder = "%s"
    else:
        marks = ", ".join("?" * len(columns))

        def load(cursor: Any, events: Sequence[StoredEvent], now: datetime) -> None:
            cursor.executemany(f"INSERT INTO preuve_incoming ({names}) VALUES ({marks})",
                               rows(events, now))
        placeholder = "?"

    i = _incoming.c
    event_columns = [column.name for column in events_table.c]
    insert_new = (
        insert_for_dialect(dialect, events_table)
        .from_select(event_columns, sa.select(*(i[n] for n in event_columns))
                     .where(sa.true()))  # a WHERE: SQLite's upsert-after-SELECT ambiguity
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(events_table.c.event_id)
    )

    def usage_of(rows: sa.FromClause) -> Any:
        """Fold ``rows`` (the new events, as staged) into ``daily_usage``."""
        r = rows.c
        per_day = (
            sa.select(
                r.learner_key, r.day, sa.func.max(r.class_id), sa.func.max(r.arm),
                sa.func.count(), sa.func.sum(r.is_session), sa.func.sum(r.is_usage),
                sa.func.sum(sa.case((r.is_usage == 1, sa.func.coalesce(r.duration_s, 0.0)),
                                    else_=0.0)),
            )
            .select_from(rows)
            .where(sa.true())
            .group_by(r.learner_key, r.day)
        )
        usage = insert_for_dialect(dialect, daily_usage_table).from_select(
            ["learner_key", "day", "class_id", "arm", "events", "sessions", "activities",
             "active_seconds"], per_day,
        )
        return usage.on_conflict_do_update(
            index_elements=["learner_key", "day"],
            set_={
                name: daily_usage_table.c[name] + usage.excluded[name]
                for name in ("events", "sessions", "activities", "active_seconds")
            },
        )

    if dialect.name == "postgresql":
        # One statement: the INSERT's RETURNING feeds the usage in a data-modifying WITH,
        # so the database never sends the new ids back and nothing is deleted from the
        # staging table; only the count comes back.
        new = insert_new.cte("new")
        staged_new = (
            sa.select(i.learner_key, i.day, i.class_id, i.arm, i.is_session, i.is_usage,
                      i.duration_s)
            .join_from(_incoming, new, new.c.event_id == i.event_id)
            .subquery("staged_new")
        )
        usage_cte = usage_of(staged_new).cte("usage")
        store: sa.Executable = (
            sa.select(sa.func.count()).select_from(new).add_cte(usage_cte)
        )
        add_usage = None
    else:
        store = insert_new
        add_usage = usage_of(_incoming)
    create = str(CreateTable(_incoming, if_not_exists=True).compile(dialect=dialect)).strip()
    if dialect.name == "postgresql":
        # Emptied by a real truncation at each commit: autovacuum never visits temporary
        # tables, so rows only deleted would pile up as dead tuples for the connection's
        # whole life, and every batch would scan them again.
        create += " ON COMMIT DELETE ROWS"
    return _Statements(
        create_incoming=create,
        clear_incoming="DELETE FROM preuve_incoming",
        drop_incoming=f"DELETE FROM preuve_incoming WHERE event_id = {placeholder}",
        store=store,
        add_usage=add_usage,
        load=load,
    )


class ExperimentStore:
    """The store of one experiment.

    Parameters
    ----------
    settings
        Where stores live (SQLite directory or PostgreSQL URL).
    experiment_id
        The experiment's slug; its store is created and migrated on first use.
    """

    def __init__(self, settings: Settings, experiment_id: str) -> None:
        self.experiment_id = experiment_id
        self.engine = store_engine(settings, experiment_id)

    def write_events(self, events: Sequence[StoredEvent], now: datetime) -> WriteResult:
        """Insert the events not stored yet and add them to the daily usage, in one
        transaction.

        The batch is bulk-loaded into a temporary table (PostgreSQL ``COPY``, SQLite
        ``executemany``), then two set statements do the work: insert the new events
        (``ON CONFLICT DO NOTHING RETURNING``) and fold exactly those into
        ``daily_usage``. Written against the DBAPI connection on purpose: SQLAlchemy's
        per-row parameter processing cost more than the database itself (profiled at
        about 60% of the worker's time), and it has no COPY.
        """
        if not events:
            return WriteResult(0, 0)
        # One row per event id (the staging table's key): a repeat within the call is a
        # duplicate like one already stored, and the first copy wins as it did before.
        first: dict[str, StoredEvent] = {}
        for event in events:
            first.setdefault(event.event_id, event)
        unique = list(first.values())
        with self.engine.begin() as connection:
            statements = _statements(connection.dialect)
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(statements.create_incoming)
                cursor.execute(statements.clear_incoming)
                statements.load(cursor, unique, now)
                if statements.add_usage is None:  # PostgreSQL: one statement does both
                    inserted = int(connection.execute(statements.store).scalar_one())
                else:
                    new = set(connection.execute(statements.store).scalars())
                    inserted = len(new)
                    if inserted < len(unique):  # re-delivered events: only new ones count
                        cursor.executemany(statements.drop_incoming, [
                            (e.event_id,) for e in unique if e.event_id not in new
                        ])
                    if inserted:
                        connection.execute(statements.add_usage)
            finally:
                cursor.close()
        return WriteResult(inserted=inserted, duplicates=len(events) - inserted)

    def count_events(self) -> int:
        """Number of events stored."""
        with self.engine.connect() as connection:
            return int(connection.scalar(sa.select(sa.func.count()).select_from(events_table)) or 0)

    def counts_by_arm(self) -> dict[str, int]:
        """Number of events stored per arm."""
        query = sa.select(events_table.c.arm, sa.func.count()).group_by(events_table.c.arm)
        with self.engine.connect() as connection:
            return {arm: int(n) for arm, n in connection.execute(query)}

    def event_ids(self) -> set[str]:
        """Every stored event id (tests and audits; not for large stores)."""
        with self.engine.connect() as connection:
            return {row[0] for row in connection.execute(sa.select(events_table.c.event_id))}
