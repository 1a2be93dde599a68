"""Per-experiment stores: the events routed to one experiment and their usage aggregates.

One SQLite file per experiment by default, one PostgreSQL schema per experiment in
production (see :mod:`experiments.database`). Writes are idempotent: an event already
stored (same ``event_id``) is skipped, so that re-delivery after a crash or a re-sent
batch never stores a second copy. Usage aggregates are updated in the same transaction
from the rows actually inserted, so they can never count a duplicate.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from experiments.database import StoreBase, insert_for, store_engine
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


@dataclass(frozen=True)
class StoredEvent:
    """An event as it is stored: pseudonymised and labelled with its arm."""

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
        transaction."""
        if not events:
            return WriteResult(0, 0)
        rows = [
            {
                "event_id": e.event_id, "occurred_at": e.occurred_at, "stored_at": now,
                "resource_id": e.resource_id, "learner_key": e.learner_key,
                "class_id": e.class_id, "school_uai": e.school_uai, "arm": e.arm,
                "verb": e.verb, "object_id": e.object_id, "duration_s": e.duration_s,
                "score": e.score, "success": e.success, "extensions": e.extensions,
            }
            for e in events
        ]
        by_id = {e.event_id: e for e in events}
        statement = (
            insert_for(self.engine, events_table)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(events_table.c.event_id)
        )
        with self.engine.begin() as connection:
            # executemany with RETURNING ("insertmanyvalues") yields one row per inserted
            # event on SQLite >= 3.35 and PostgreSQL; conflicting rows yield nothing.
            inserted_ids = [row[0] for row in connection.execute(statement, rows)]
            self._add_usage(connection, [by_id[event_id] for event_id in inserted_ids])
        return WriteResult(inserted=len(inserted_ids), duplicates=len(events) - len(inserted_ids))

    def _add_usage(self, connection: sa.Connection, events: Sequence[StoredEvent]) -> None:
        if not events:
            return
        totals: dict[tuple[str, date], dict[str, Any]] = defaultdict(
            lambda: {"events": 0, "sessions": 0, "activities": 0, "active_seconds": 0.0}
        )
        for event in events:
            day = event.occurred_at.astimezone(SCHOOL_TIMEZONE).date()
            total = totals[(event.learner_key, day)]
            total["class_id"] = event.class_id
            total["arm"] = event.arm
            total["events"] += 1
            total["sessions"] += int(event.is_session)
            if event.is_usage:
                total["activities"] += 1
                total["active_seconds"] += event.duration_s or 0.0
        rows = [
            {"learner_key": learner, "day": day, **total}
            for (learner, day), total in sorted(totals.items())
        ]
        statement = insert_for(self.engine, daily_usage_table)
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=["learner_key", "day"],
            set_={
                "events": daily_usage_table.c.events + excluded.events,
                "sessions": daily_usage_table.c.sessions + excluded.sessions,
                "activities": daily_usage_table.c.activities + excluded.activities,
                "active_seconds": daily_usage_table.c.active_seconds + excluded.active_seconds,
            },
        )
        connection.execute(statement, rows)

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
