"""Events that arrived before their class's enrollment: parked, counted, replayed.

An event is parked by reference (its topic, partition and offset in ``preuve.events``),
never by content: the content carries the raw learner id, which no database may hold.
When the enrollment arrives, the parked events are re-read from the ingress topic, so
replay is possible for as long as the ingress topic retains them
(``Settings.kafka.ingress_retention_days``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from experiments.database import RegistryBase, insert_for

__all__ = [
    "ParkedEvent",
    "count_parked",
    "forget_expired",
    "forget_parked",
    "park",
    "parked_classes",
    "parked_for",
    "parked_for_classes",
]

parked_table = sa.Table(
    "unrouted_events",
    RegistryBase.metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("class_id", sa.String(128), nullable=False),
    sa.Column("resource_id", sa.String(128), nullable=False),
    sa.Column("topic", sa.String(249), nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class ParkedEvent:
    """Where an unrouted event sits in the ingress topic."""

    event_id: str
    class_id: str
    resource_id: str
    topic: str
    partition: int
    offset: int


def park(engine: Engine, events: Sequence[ParkedEvent], now: datetime) -> None:
    """Remember unrouted events (idempotent: an event parked twice is kept once)."""
    if not events:
        return
    insert = insert_for(engine, parked_table)
    rows = [{**event.__dict__, "parked_at": now} for event in events]
    with engine.begin() as connection:
        connection.execute(insert.on_conflict_do_nothing(index_elements=["event_id"]), rows)


def parked_for(engine: Engine, class_id: str, resource_id: str) -> list[ParkedEvent]:
    """The parked events of a class and resource, in topic order."""
    query = (
        sa.select(parked_table)
        .where(parked_table.c.class_id == class_id, parked_table.c.resource_id == resource_id)
        .order_by(parked_table.c.partition, parked_table.c.offset)
    )
    with engine.connect() as connection:
        return [
            ParkedEvent(
                event_id=row.event_id, class_id=row.class_id, resource_id=row.resource_id,
                topic=row.topic, partition=row.partition, offset=row.offset,
            )
            for row in connection.execute(query)
        ]


def parked_classes(engine: Engine) -> set[tuple[str, str]]:
    """The (class_id, resource_id) pairs that have parked events."""
    query = sa.select(parked_table.c.class_id, parked_table.c.resource_id).distinct()
    with engine.connect() as connection:
        return {(row.class_id, row.resource_id) for row in connection.execute(query)}


def parked_for_classes(
    engine: Engine, keys: Sequence[tuple[str, str]], limit: int = 10_000
) -> list[ParkedEvent]:
    """Parked events of several (class_id, resource_id) pairs, at most ``limit``, in
    topic order."""
    wanted = set(keys)
    query = (
        sa.select(parked_table)
        .where(parked_table.c.class_id.in_(sorted({class_id for class_id, _ in wanted})))
        .order_by(parked_table.c.partition, parked_table.c.offset)
    )
    found: list[ParkedEvent] = []
    with engine.connect() as connection:
        for row in connection.execute(query):
            if (row.class_id, row.resource_id) in wanted:
                found.append(
                    ParkedEvent(
                        event_id=row.event_id, class_id=row.class_id, resource_id=row.resource_id,
                        topic=row.topic, partition=row.partition, offset=row.offset,
                    )
                )
                if len(found) >= limit:
                    break
    return found


def forget_parked(engine: Engine, event_ids: Sequence[str]) -> None:
    """Drop parked events once they are stored (or are known to be gone)."""
    if not event_ids:
        return
    with engine.begin() as connection:
        connection.execute(parked_table.delete().where(parked_table.c.event_id.in_(event_ids)))


def forget_expired(engine: Engine, parked_before: datetime) -> int:
    """Drop the references parked before ``parked_before``: the ingress topic's retention
    has deleted those records, so no enrollment can bring them back (a class never
    enrolled, or erased). Returns how many were dropped."""
    with engine.begin() as connection:
        result = connection.execute(
            parked_table.delete().where(parked_table.c.parked_at < parked_before)
        )
    return int(result.rowcount or 0)


def count_parked(engine: Engine) -> int:
    """How many events wait for their class's enrollment."""
    with engine.connect() as connection:
        return int(connection.scalar(sa.select(sa.func.count()).select_from(parked_table)) or 0)
