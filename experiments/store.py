"""Per-experiment stores: the events routed to one experiment and their usage aggregates.

One SQLite file per experiment by default, one PostgreSQL schema per experiment in
production (see :mod:`experiments.database`). Writes are idempotent: an event already
stored (same ``event_id``) is skipped, so that re-delivery after a crash or a re-sent
batch never stores a second copy.

Daily usage (``daily_usage``, per pupil and school day) counts each stored event exactly
once. On PostgreSQL it is **folded outside the insert transaction** (issue 20): the insert
transaction stores the new events and appends their per pupil-day counts to a fold queue,
``usage_pending`` (no key, no index: a plain heap append), from the rows actually inserted,
so a duplicate never reaches it; :func:`fold_usage` later moves the queue into
``daily_usage`` in one transaction (``DELETE … RETURNING`` feeding the upsert), so every
queued row is counted once whatever crashes: the worker killed after the insert leaves its
rows queued for the next fold, a fold killed before its commit leaves them queued too. Why
a queue rather than a watermark over event ids: events have no serial id, and several
workers write one store at once (partitions), so ids committed out of order would pass a
``id > watermark`` reader; a queue row is visible exactly when its events are, and deleted
exactly when it is counted. Folds are serialised per store by a row lock on ``usage_fold``
(its one row: when the last fold ran, how many events were ever folded): a worker that
finds a fold in progress skips (its rows are queued, the next fold takes them), and an
erasure takes the same lock and folds first, so nothing erased is folded back. The
upsert's cost (the ``daily_usage`` key lookups, about 40 % of the store's PostgreSQL time
per event) leaves the insert transaction, and a fold takes the queue of several batches
at once, so a pupil's day is updated once per fold rather than once per batch.

Readers of daily usage go through :func:`read_daily_usage`: in one snapshot it returns the
folded rows plus the rows still queued (so nothing accepted is ever missed, even by a
read-only role that may not fold) and states the watermark it saw (:class:`UsageWatermark`:
the last fold's time and the events still queued). SQLite stores (one writer) keep the
simple path: the usage upsert runs in the insert transaction and the queue stays empty.

Active time, as the protocol pre-registers it (``usage.metrics`` of kind ``active_use``:
verbs and idle timeout), is **not** a running aggregate: :func:`read_active_time` rebuilds
it from the stored events when it is read (:mod:`analysis.sessions`, the rule). Why not
incrementally in the worker: a session is a property of a pupil's whole sequence, and
events arrive late and out of order (a tablet syncing the day after, a re-delivered batch,
a partition moved in a rebalance); an incremental fold would have to keep each pupil's open
sessions and rewrite past days whenever an event lands between two others, in the same
transaction as the insert. Rebuilt from the ``events`` table, the result is exact, the same
whatever the order of arrival, reproducible for a cut-off (``stored_at``), and exactly once
because each event is stored once (its ``event_id`` is the key): the worker's exactly-once
effect carries over with no further state. ``daily_usage.active_seconds`` stays what it
always was, the sum of the vendors' ``duration_s`` of active events (a cheap running monitor
of what vendors send); no analysis, report or portal page reads it as active time.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from experiments.database import StoreBase, insert_for_dialect, store_engine
from experiments.protocol.vocabulary import SCHOOL_TIMEZONE
from experiments.settings import Settings

__all__ = [
    "ActiveTime", "DailyUsage", "ExperimentStore", "StagedBatch", "StoredEvent", "UsageDay",
    "UsageWatermark", "WriteResult", "daily_usage_table", "events_table", "fold_usage",
    "read_active_time", "read_daily_usage", "stage_events", "usage_fold_table",
    "usage_pending_table",
]

logger = logging.getLogger(__name__)

# Usage days follow the school's clock, not UTC: an 23:30 UTC event in winter is the next
# school day in Paris. (Overseas académies would need their own zone: see the README.)

# No secondary index on events since store_0004 (issue 20): erasing a pupil or a class
# scans the table (about 4 s at 10M events, benchmarks/store_indexes.py), and every insert
# costs PostgreSQL about a fifth less.
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
    sa.Column("authority", sa.String(256)),
)
"""``authority``: the principal that wrote the event, as xAPI's ``authority`` (see
:mod:`experiments.runs.provenance`): ``role:scope:<token hash prefix>`` for the gateway's
tokens, ``import:<actor>`` for ``preuve outcomes import``, NULL when unknown (a direct
Kafka producer, or an event stored before the column existed). Never a secret."""

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

_USAGE_COUNTS = ("events", "sessions", "activities", "active_seconds")

usage_pending_table = sa.Table(
    "usage_pending",
    StoreBase.metadata,
    sa.Column("learner_key", sa.String(64), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("class_id", sa.String(128), nullable=False),
    sa.Column("arm", sa.String(64), nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("sessions", sa.Integer, nullable=False),
    sa.Column("activities", sa.Integer, nullable=False),
    sa.Column("active_seconds", sa.Float, nullable=False),
)
"""The fold queue (PostgreSQL): per pupil-day counts of events stored but not yet in
``daily_usage``, one row per pupil-day and insert transaction. No key and no index on
purpose: rows are only appended (by the insert) and taken whole (by :func:`fold_usage`);
an erasure scans it, and it holds at most a few folds' worth of rows."""

usage_fold_table = sa.Table(
    "usage_fold",
    StoreBase.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("folded_at", sa.DateTime(timezone=True)),
    sa.Column("folded_events", sa.BigInteger, nullable=False),
)
"""One row (``id`` 1): the fold's lock (folds lock it ``FOR UPDATE``) and its watermark,
when the last fold committed and how many events were ever folded (erasures do not
subtract: it is a counter of fold work, not of the events held)."""


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
    authority: str | None = None
    """Who wrote it (the ``authority`` column); None: unknown."""
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
    *(sa.Column(c.name, c.type) for c in events_table.c if c.name != "stored_at"),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("is_session", sa.Integer, nullable=False),
    sa.Column("is_usage", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
)
"""A batch on its way into ``events`` (a temporary table, one per database session).
No key: :meth:`ExperimentStore.write_events` loads each event id once, and an index here
would only be maintained for nothing. No ``stored_at``: it is the time of the write,
bound to the INSERT, while the rows may be made ready earlier (:func:`stage_events`)."""

#: The staging table as PostgreSQL statements name it: in the session's temporary schema
#: (``pg_temp``), so that the ``schema_translate_map`` of a store's engine (one engine for
#: every experiment's schema, :func:`experiments.database.store_engine`) leaves it there.
_incoming_pg = _incoming.to_metadata(sa.MetaData(), schema="pg_temp")

_STORED_AT = sa.bindparam("stored_at", type_=sa.DateTime(timezone=True))


@dataclass(frozen=True)
class StagedBatch:
    """Events made ready for their store's transaction (:func:`stage_events`), so that the
    stream worker can do it for the next batch while the current one is written.

    ``rows`` is what the load takes: the text of a PostgreSQL ``COPY``, or the rows of an
    SQLite ``executemany``."""

    events: int
    """Events given, repeats included."""
    unique: tuple[StoredEvent, ...]
    """One event per id, the first copy given."""
    dialect: str
    rows: Any


@dataclass(frozen=True)
class _Statements:
    """The statements of :meth:`ExperimentStore.write_events` for one dialect.

    ``store`` inserts the new events and returns the ids (SQLite) or the number
    (PostgreSQL, which also queues their usage in ``usage_pending``, same statement) of
    the events inserted; on SQLite, ``add_usage`` then folds the rows left in
    ``preuve_incoming`` (``drop_incoming`` having removed the ones already stored) into
    ``daily_usage``, in the same transaction."""

    create_incoming: str
    clear_incoming: str
    drop_incoming: str
    store: sa.Executable
    add_usage: sa.Executable | None
    load: Callable[[Any, Any], None]


# COPY's text format (PostgreSQL manual, "COPY", "Text Format"): fields separated by tabs,
# rows by newlines, NULL as \N, and a backslash, tab, newline or carriage return inside a
# value written as a backslash sequence. Written by hand because psycopg formats rows only
# inside an open COPY, on the connection that runs it; the worker makes the text of the
# next batch ready in another thread while the current batch's COPY and INSERT run.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"


def _copy_text(events: Sequence[StoredEvent]) -> str:
    """The rows of ``preuve_incoming`` for ``events``, in COPY's text format.

    Most batches hold no value that needs a backslash sequence: the rows are first written
    as they are, and one count over the whole text tells whether any value had a
    backslash, tab, newline or carriage return (ten ``str.translate`` per row were the
    largest part of the stream worker's prepare thread); only then are they written again
    with the escapes."""
    null = _COPY_NULL
    days: dict[str, str] = {}
    lines: list[str] = []
    append = lines.append
    for e in events:
        occurred = e.occurred_at
        iso = occurred.isoformat()
        if occurred.tzinfo is UTC:  # a UTC hour is within one school day (DST: whole hours)
            day = days.get(iso[:13])
            if day is None:
                day = days[iso[:13]] = _school_day(occurred)
        else:
            day = _school_day(occurred)
        append("\t".join((
            e.event_id, iso, e.resource_id, e.learner_key, e.class_id, e.school_uai, e.arm,
            e.verb,
            null if e.object_id is None else e.object_id,
            null if e.duration_s is None else repr(float(e.duration_s)),
            null if e.score is None else repr(float(e.score)),
            null if e.success is None else ("t" if e.success else "f"),
            null if e.extensions is None else json.dumps(e.extensions),
            null if e.authority is None else e.authority,
            day,
            "1" if e.is_session else "0",
            "1" if e.is_usage else "0",
        )))
    append("")
    text = "\n".join(lines)
    # The NULL markers are the only backslashes, and the separators the only tabs and
    # newlines, exactly when no value holds one (the six nullable fields are 8..13).
    rows = len(events)
    if (text.count("\t") == 16 * rows and text.count("\n") == rows and "\r" not in text
            and text.count("\\") == sum(e[8:14].count(None) for e in events)):
        return text
    return _escaped_copy_text(events)


def _school_day(occurred: datetime) -> str:
    return occurred.astimezone(SCHOOL_TIMEZONE).date().isoformat()


def _escaped_copy_text(events: Sequence[StoredEvent]) -> str:
    """:func:`_copy_text` of rows of which some value needs a backslash sequence."""
    null, escapes = _COPY_NULL, _COPY_ESCAPES
    lines = []
    for e in events:
        lines.append("\t".join((
            e.event_id.translate(escapes),
            e.occurred_at.isoformat(),
            e.resource_id.translate(escapes),
            e.learner_key.translate(escapes),
            e.class_id.translate(escapes),
            e.school_uai.translate(escapes),
            e.arm.translate(escapes),
            e.verb.translate(escapes),
            null if e.object_id is None else e.object_id.translate(escapes),
            null if e.duration_s is None else repr(float(e.duration_s)),
            null if e.score is None else repr(float(e.score)),
            null if e.success is None else ("t" if e.success else "f"),
            null if e.extensions is None else json.dumps(e.extensions).translate(escapes),
            null if e.authority is None else e.authority.translate(escapes),
            _school_day(e.occurred_at),
            "1" if e.is_session else "0",
            "1" if e.is_usage else "0",
        )))
    lines.append("")
    return "\n".join(lines)


def stage_events(events: Sequence[StoredEvent], dialect: str) -> StagedBatch:
    """Make a batch ready for :meth:`ExperimentStore.write_staged` (no database needed):
    one event per id, then the rows of the staging table as the dialect's load takes them.

    Parameters
    ----------
    dialect
        ``"postgresql"`` or ``"sqlite"``: the store's (:func:`experiments.database.is_postgres`).
    """
    # One row per event id: a repeat within the call is a duplicate like one already
    # stored, and the first copy wins.
    first: dict[str, StoredEvent] = {}
    for event in events:
        first.setdefault(event.event_id, event)
    unique = tuple(first.values())
    if dialect == "postgresql":
        return StagedBatch(len(events), unique, dialect, _copy_text(unique))
    return StagedBatch(len(events), unique, dialect, list(_sqlite_rows(unique)))


def _sqlite_rows(events: Sequence[StoredEvent]) -> Iterator[list[Any]]:
    """The rows of ``preuve_incoming`` for SQLite's ``executemany``, each value as
    SQLAlchemy would bind it (its type processors: datetimes as text, JSON serialised), so
    that the rows read back alike."""
    processors = _sqlite_processors()
    for e in events:
        row = [
            e.event_id, e.occurred_at, e.resource_id, e.learner_key, e.class_id,
            e.school_uai, e.arm, e.verb, e.object_id, e.duration_s, e.score, e.success,
            e.extensions, e.authority, e.occurred_at.astimezone(SCHOOL_TIMEZONE).date(),
            int(e.is_session), int(e.is_usage),
        ]
        for index, process in processors:
            if row[index] is not None:
                row[index] = process(row[index])
        yield row


@functools.cache
def _sqlite_processors() -> list[tuple[int, Callable[[Any], Any]]]:
    """(column index, SQLAlchemy's bind processor) of the staging columns that have one
    on SQLite (looked up once, not per batch)."""
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.pysqlite.dialect()
    return [
        (index, process)
        for index, column in enumerate(_incoming.c)
        if (process := column.type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]


_USAGE_COLUMNS = ["learner_key", "day", "class_id", "arm", *_USAGE_COUNTS]


def _per_day(rows: sa.FromClause) -> sa.Select[Any]:
    """The usage counts of ``rows`` (new events, as staged) per pupil and school day."""
    r = rows.c
    return (
        sa.select(
            r.learner_key, r.day, sa.func.max(r.class_id), sa.func.max(r.arm),
            sa.func.count(), sa.func.sum(r.is_session), sa.func.sum(r.is_usage),
            sa.func.sum(sa.case((r.is_usage == 1, sa.func.coalesce(r.duration_s, 0.0)),
                                else_=0.0)),
        )
        .select_from(rows)
        .where(sa.true())  # a WHERE: SQLite's upsert-after-SELECT ambiguity
        .group_by(r.learner_key, r.day)
    )


def _upsert_usage(dialect: sa.Dialect, per_day: sa.Select[Any]) -> Any:
    """Add ``per_day`` (rows of :data:`_USAGE_COLUMNS`) to ``daily_usage``; a pupil-day
    already there keeps its class and arm (the first counted) and adds the counts."""
    usage = insert_for_dialect(dialect, daily_usage_table).from_select(_USAGE_COLUMNS, per_day)
    return usage.on_conflict_do_update(
        index_elements=["learner_key", "day"],
        set_={name: daily_usage_table.c[name] + usage.excluded[name] for name in _USAGE_COUNTS},
    )


@functools.cache
def _fold_statement(dialect: sa.Dialect) -> sa.Executable:
    """Take the whole fold queue and add it to ``daily_usage`` in one statement (the
    DELETE's RETURNING feeds the upsert in a data-modifying WITH); returns the number of
    events folded. Pupil-days are upserted in key order, so two folds could not deadlock
    even without the ``usage_fold`` lock."""
    q = usage_pending_table
    taken = sa.delete(q).returning(*(q.c[name] for name in _USAGE_COLUMNS)).cte("taken")
    t = taken.c
    per_day = (
        sa.select(t.learner_key, t.day, sa.func.max(t.class_id), sa.func.max(t.arm),
                  *(sa.func.sum(t[name]) for name in _USAGE_COUNTS))
        .where(sa.true())
        .group_by(t.learner_key, t.day)
        .order_by(t.learner_key, t.day)
    )
    upsert = _upsert_usage(dialect, per_day).cte("folded")
    return sa.select(sa.func.coalesce(sa.func.sum(t.events), 0)).select_from(taken).add_cte(upsert)


@functools.cache
def _statements(dialect: sa.Dialect) -> _Statements:
    columns = [column.name for column in _incoming.c]
    names = ", ".join(columns)
    if dialect.name == "postgresql":
        def load(cursor: Any, staged_rows: Any) -> None:  # the text of the COPY
            with cursor.copy(f"COPY preuve_incoming ({names}) FROM STDIN") as copy:
                copy.write(staged_rows)
        placeholder = "%s"
    else:
        marks = ", ".join("?" * len(columns))

        def load(cursor: Any, staged_rows: Any) -> None:  # a list of rows
            cursor.executemany(f"INSERT INTO preuve_incoming ({names}) VALUES ({marks})",
                               staged_rows)
        placeholder = "?"

    staging = _incoming_pg if dialect.name == "postgresql" else _incoming
    i = staging.c
    event_columns = [column.name for column in events_table.c]
    insert_new = (
        insert_for_dialect(dialect, events_table)
        .from_select(event_columns, sa.select(*(
            _STORED_AT if n == "stored_at" else i[n] for n in event_columns))
                     .where(sa.true()))  # a WHERE: SQLite's upsert-after-SELECT ambiguity
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(events_table.c.event_id)
    )

    if dialect.name == "postgresql":
        # One statement: the INSERT's RETURNING feeds the fold queue in a data-modifying
        # WITH, so the database never sends the new ids back and nothing is deleted from
        # the staging table; only the count comes back. The queue is a plain append (no
        # key, no upsert): daily_usage is updated later, by fold_usage.
        new = insert_new.cte("new")
        staged_new = (
            sa.select(i.learner_key, i.day, i.class_id, i.arm, i.is_session, i.is_usage,
                      i.duration_s)
            .join_from(staging, new, new.c.event_id == i.event_id)
            .subquery("staged_new")
        )
        queue_cte = (
            sa.insert(usage_pending_table)
            .from_select(_USAGE_COLUMNS, _per_day(staged_new))
            .cte("queued")
        )
        store: sa.Executable = (
            sa.select(sa.func.count()).select_from(new).add_cte(queue_cte)
        )
        add_usage = None
    else:
        store = insert_new
        add_usage = _upsert_usage(dialect, _per_day(_incoming))
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
        """Insert the events not stored yet (:func:`stage_events` then
        :meth:`write_staged`), then fold the usage queue (:meth:`fold_usage`), so that
        ``daily_usage`` counts them when this returns. The stream worker calls
        :meth:`write_staged` and folds on its own schedule instead."""
        result = self.write_staged(stage_events(events, self.engine.dialect.name), now)
        if result.inserted:
            self.fold_usage()
        return result

    def write_staged(self, staged: StagedBatch, now: datetime) -> WriteResult:
        """Write a staged batch in one transaction: the events not stored yet, with
        ``stored_at`` = ``now``, and their usage (PostgreSQL: queued in
        ``usage_pending`` for :meth:`fold_usage`; SQLite: added to ``daily_usage``).

        The batch is bulk-loaded into a temporary table (PostgreSQL ``COPY``, SQLite
        ``executemany``), then set statements do the work: insert the new events
        (``ON CONFLICT DO NOTHING RETURNING``) and queue (or add) the usage of exactly
        those. Written against the DBAPI connection on purpose: SQLAlchemy's per-row
        parameter processing cost more than the database itself (profiled at about 60% of
        the worker's time), and it has no COPY.
        """
        if not staged.unique:
            return WriteResult(0, 0)
        with self.engine.begin() as connection:
            if connection.dialect.name != staged.dialect:
                raise ValueError(f"a batch staged for {staged.dialect} cannot be written to "
                                 f"a {connection.dialect.name} store")
            statements = _statements(connection.dialect)
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            stored_at = {"stored_at": now}
            try:
                cursor.execute(statements.create_incoming)
                cursor.execute(statements.clear_incoming)
                statements.load(cursor, staged.rows)
                if statements.add_usage is None:  # PostgreSQL: one statement does both
                    inserted = int(connection.execute(statements.store, stored_at).scalar_one())
                else:
                    new = set(connection.execute(statements.store, stored_at).scalars())
                    inserted = len(new)
                    if inserted < len(staged.unique):  # re-delivered: only new ones count
                        cursor.executemany(statements.drop_incoming, [
                            (e.event_id,) for e in staged.unique if e.event_id not in new
                        ])
                    if inserted:
                        connection.execute(statements.add_usage)
            finally:
                cursor.close()
        return WriteResult(inserted=inserted, duplicates=staged.events - inserted)

    def fold_usage(self, *, wait: bool = True) -> int | None:
        """Fold the usage queue into ``daily_usage`` in one transaction
        (:func:`fold_usage`); returns the events folded, or None when ``wait`` is off and
        another fold of this store holds the lock (its fold or the next takes the rows)."""
        if self.engine.dialect.name != "postgresql":
            return 0  # SQLite adds the usage in the insert transaction: nothing is queued
        with self.engine.begin() as connection:
            return fold_usage(connection, wait=wait)

    def read_daily_usage(self) -> DailyUsage:
        """Daily usage, queued rows included, and the watermark seen (one snapshot;
        :func:`read_daily_usage`)."""
        with self.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            return read_daily_usage(connection)

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


def fold_usage(connection: sa.Connection, *, wait: bool = True) -> int | None:
    """Move the fold queue (``usage_pending``) into ``daily_usage``, in the caller's
    transaction: the queued rows are deleted and added in one statement, and the
    watermark (``usage_fold``) advanced, so a committed fold counts them exactly once and
    a fold that does not commit leaves them queued.

    Parameters
    ----------
    connection
        A connection to a PostgreSQL store, in a transaction (committed by the caller:
        an erasure folds first, then deletes, in one transaction).
    wait
        Wait for a fold in progress (readers, erasures, a worker's last fold); off: skip
        and return None (a worker after a batch: the rows stay queued for the next fold).

    Returns
    -------
    int or None
        Events folded (0: the queue was empty), None when skipped.
    """
    f = usage_fold_table
    lock = sa.select(f.c.folded_events).where(f.c.id == 1).with_for_update(skip_locked=not wait)
    if connection.execute(lock).first() is None:
        return None  # SKIP LOCKED: another transaction holds the fold
    folded = int(connection.execute(_fold_statement(connection.dialect)).scalar_one())
    connection.execute(sa.update(f).where(f.c.id == 1).values(
        folded_at=sa.func.now(), folded_events=f.c.folded_events + folded))
    return folded


class UsageWatermark(NamedTuple):
    """How far ``daily_usage`` had been folded when it was read."""

    folded_at: datetime | None
    """When the last fold committed (None: never, or a SQLite store, whose usage is
    added in the insert transaction)."""
    folded_events: int
    """Events folded by every fold so far (erasures do not subtract)."""
    pending_events: int
    """Events stored but still in the fold queue when read (their usage is in the rows
    :func:`read_daily_usage` returns, added from the queue)."""

    def statement(self) -> str:
        """One line for a log or a page footer.

        >>> UsageWatermark(None, 0, 0).statement()
        'daily usage counts every stored event (nothing queued)'
        >>> w = UsageWatermark(datetime(2027, 10, 4, 8, tzinfo=UTC), 1200, 35)
        >>> w.statement()  # doctest: +ELLIPSIS
        'daily usage folded up to 2027-10-04T08:00:00+00:00 (1200 events); 35 events stored...'
        """
        if not self.pending_events:
            return "daily usage counts every stored event (nothing queued)"
        folded = self.folded_at.isoformat() if self.folded_at else "never"
        return (f"daily usage folded up to {folded} ({self.folded_events} events); "
                f"{self.pending_events} events stored since, counted from the fold queue")


class UsageDay(NamedTuple):
    """One pupil's usage on one school day (Paris), as ``daily_usage`` counts it."""

    learner_key: str
    day: date
    class_id: str
    arm: str
    events: int
    sessions: int
    activities: int
    active_seconds: float


class DailyUsage(NamedTuple):
    """Daily usage rows and the watermark seen."""

    rows: list[UsageDay]
    """Per pupil and school day, ordered by pupil then day."""
    watermark: UsageWatermark


def read_daily_usage(connection: sa.Connection) -> DailyUsage:
    """Daily usage as every stored event counts in it: the folded rows plus the fold
    queue's, added per pupil-day, with the watermark seen. Read-only (a portal's or an
    analysis worker's role may call it): nothing accepted is missed, whether folded yet
    or not.

    Parameters
    ----------
    connection
        A connection to the store; give it a repeatable-read snapshot
        (:meth:`ExperimentStore.read_daily_usage` does) so that the rows and the
        watermark agree with each other.
    """
    u, q, f = daily_usage_table, usage_pending_table, usage_fold_table
    days: dict[tuple[str, date], UsageDay] = {}
    for row in connection.execute(sa.select(*(u.c[name] for name in _USAGE_COLUMNS))):
        day = UsageDay(*row)
        days[(day.learner_key, day.day)] = day
    pending = 0
    queued = connection.execute(sa.select(*(q.c[name] for name in _USAGE_COLUMNS))
                                .order_by(q.c.class_id.desc()))
    for row in queued:
        more = UsageDay(*row)
        pending += more.events
        key = (more.learner_key, more.day)
        have = days.get(key)
        # As the fold's upsert would: a folded pupil-day keeps its class and arm.
        days[key] = more if have is None else have._replace(
            events=have.events + more.events, sessions=have.sessions + more.sessions,
            activities=have.activities + more.activities,
            active_seconds=have.active_seconds + more.active_seconds)
    state = connection.execute(sa.select(f.c.folded_at, f.c.folded_events)
                               .where(f.c.id == 1)).first()
    folded_at, folded_events = state if state is not None else (None, 0)
    return DailyUsage([days[key] for key in sorted(days)],
                      UsageWatermark(folded_at, int(folded_events or 0), pending))


class ActiveTime(NamedTuple):
    """Active seconds of one pupil on one school day (Paris), with the pupil's class."""

    learner_key: str
    class_id: str
    day: date
    seconds: float


def read_active_time(
    connection: Any,
    verbs: Sequence[str] | frozenset[str],
    idle_timeout_s: float,
    *,
    first_day: date | None = None,
    last_day: date | None = None,
    cutoff: datetime | None = None,
    class_ids: Sequence[str] | None = None,
) -> list[ActiveTime]:
    """Active time per pupil and school day, rebuilt from the stored events with the
    protocol's idle timeout (:func:`analysis.sessions.active_seconds_by_day`; the module
    docstring says why it is not a running aggregate).

    Parameters
    ----------
    connection
        A connection to the experiment's store (a read snapshot, when several reads must
        agree).
    verbs, idle_timeout_s
        The protocol's active use: the verbs of its ``active_use`` metrics and their
        ``idle_timeout_s``.
    first_day, last_day
        School days (Paris) to return, inclusive (None: unbounded). Events just outside
        are read too, since a session may reach over midnight.
    cutoff
        Only events that occurred **and** were stored by then (timezone-aware).
    class_ids
        Only the events of these classes (None: all).

    Returns
    -------
    list of ActiveTime
        Days with active time, by pupil then day. ``class_id``: the pupil's class in the
        events of that day (the greatest id, as ``daily_usage`` keeps it), else in any of
        their events.
    """
    # Imported here: the stream worker imports this module and never needs numpy/pandas.
    from analysis.sessions import active_seconds_by_day

    e = events_table
    where: list[sa.ColumnElement[bool]] = [e.c.verb.in_(sorted(verbs))]
    if cutoff is not None:
        where += [e.c.stored_at <= cutoff, e.c.occurred_at <= cutoff]
    if first_day is not None:  # a session that ends on first_day started at most here
        where.append(e.c.occurred_at >= datetime.combine(first_day - timedelta(days=1), time(0),
                                                         tzinfo=UTC)
                     - timedelta(seconds=2 * idle_timeout_s))
    if last_day is not None:  # an event after last_day covers it at most this far back
        where.append(e.c.occurred_at < datetime.combine(last_day + timedelta(days=2), time(0),
                                                        tzinfo=UTC)
                     + timedelta(seconds=idle_timeout_s))
    if class_ids is not None:
        where.append(e.c.class_id.in_(sorted(class_ids)))
    rows = connection.execute(
        sa.select(e.c.learner_key, e.c.class_id, e.c.occurred_at, e.c.duration_s)
        .where(*where).order_by(e.c.event_id)  # one order, the same sums every time
    ).all()
    learners, moments, durations = [], [], []
    class_of_day: dict[tuple[str, date], str] = {}
    class_of: dict[str, str] = {}
    for learner, class_id, occurred_at, duration in rows:
        moment = occurred_at.replace(tzinfo=UTC) if occurred_at.tzinfo is None else occurred_at
        if cutoff is not None and moment > cutoff:  # SQLite compares text: check again
            continue
        learners.append(learner)
        moments.append(moment)
        durations.append(duration)
        key = (learner, moment.astimezone(SCHOOL_TIMEZONE).date())
        class_of_day[key] = max(class_of_day.get(key, class_id), class_id)
        class_of[learner] = max(class_of.get(learner, class_id), class_id)
    seconds = active_seconds_by_day(learners, moments, durations, idle_timeout_s=idle_timeout_s)
    return [
        ActiveTime(learner, class_of_day.get((learner, day), class_of[learner]), day, total)
        for (learner, day), total in sorted(seconds.items())
        if total > 0 and (first_day is None or day >= first_day)
        and (last_day is None or day <= last_day)
    ]
