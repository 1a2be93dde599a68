"""Per-experiment stores: the events routed to one experiment and their usage aggregates.

One SQLite file per experiment by default, one PostgreSQL schema per experiment in
production (see :mod:`experiments.database`). Writes are idempotent: an event already
stored (same ``event_id``) is skipped, so that re-delivery after a crash or a re-sent
batch never stores a second copy. Usage aggregates are updated in the same transaction
from the rows actually inserted, so they can never count a duplicate.

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
    "ActiveTime", "ExperimentStore", "StagedBatch", "StoredEvent", "WriteResult",
    "daily_usage_table", "events_table", "read_active_time", "stage_events",
]

logger = logging.getLogger(__name__)

# Usage days follow the school's clock, not UTC: an 23:30 UTC event in winter is the next
# school day in Paris. (Overseas académies would need their own zone: see the README.)

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

    ``store`` inserts the new events and folds them into the daily usage, and returns
    the ids (SQLite) or the number (PostgreSQL) of the events inserted; on SQLite,
    ``add_usage`` then folds the rows left in ``preuve_incoming`` (``drop_incoming``
    having removed the ones already stored)."""

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
            .join_from(staging, new, new.c.event_id == i.event_id)
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
        transaction (:func:`stage_events` then :meth:`write_staged`)."""
        return self.write_staged(stage_events(events, self.engine.dialect.name), now)

    def write_staged(self, staged: StagedBatch, now: datetime) -> WriteResult:
        """Write a staged batch: the events not stored yet, with ``stored_at`` = ``now``,
        and their daily usage, in one transaction.

        The batch is bulk-loaded into a temporary table (PostgreSQL ``COPY``, SQLite
        ``executemany``), then set statements do the work: insert the new events
        (``ON CONFLICT DO NOTHING RETURNING``) and fold exactly those into
        ``daily_usage``. Written against the DBAPI connection on purpose: SQLAlchemy's
        per-row parameter processing cost more than the database itself (profiled at
        about 60% of the worker's time), and it has no COPY.
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
