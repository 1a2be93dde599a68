"""Handing enrollments to Kafka (``preuve.enrollments``) after their transaction commits.

An enrollment committed while the broker is unreachable stays pending and is published
later by :func:`publish_pending`; a purged or erased one is marked :data:`FORGOTTEN` so
that it never comes back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from experiments.settings import Settings
    from ingest.contract import EnrollmentMessage
from experiments.enrollment.tables import (
    DESIGNS,
    ENROLLMENTS,
    in_chunks,
    in_utc,
)

__all__ = [
    "FORGOTTEN",
    "Publish",
    "PublishReport",
    "PublishingOutcome",
    "kafka_publisher",
    "pending_messages",
    "publish_after",
    "publish_pending",
    "registered_enrollments",
]

logger = logging.getLogger(__name__)


Publish = Callable[[Sequence["EnrollmentMessage"]], int]
"""Publishes enrollment records and returns how many were durably written."""


class PublishingOutcome(Protocol):
    """The publishing fields shared by the outcomes of a classes and a pupils file."""

    published: int
    pending: int
    publish_error: str | None


def publish_after(
    engine: Engine, experiment_id: str, publish: Publish | None, outcome: PublishingOutcome
) -> None:
    """After the commit: publish what is pending (unless ``publish`` is None) and count
    what is left pending, into ``outcome``."""
    if publish is not None:
        report = publish_pending(engine, experiment_id, publish)
        outcome.published, outcome.publish_error = report.published, report.error
    outcome.pending = _count_pending(engine, experiment_id)


# --- publishing -------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishReport:
    """What :func:`publish_pending` published, and the error if it could not."""

    published: int
    error: str | None


def pending_messages(engine: Engine, experiment_id: str) -> list[EnrollmentMessage]:
    """Enrollment records whose current status has not been published yet.

    Examples
    --------
    >>> pending_messages(fresh_registry(), "x")
    []
    """
    from ingest.contract import EnrollmentMessage

    table = ENROLLMENTS
    designs = DESIGNS
    with engine.connect() as connection:
        resource = connection.execute(
            sa.select(designs.c.resource_id).where(designs.c.experiment_id == experiment_id)
        ).scalar()
        rows = connection.execute(
            sa.select(table).where(table.c.experiment_id == experiment_id, _unpublished(table))
            .order_by(table.c.id)
        ).mappings().all()
    return [
        EnrollmentMessage(
            class_id=row["class_id"], experiment_id=experiment_id, resource_id=str(resource),
            arm=row["arm"], school_uai=row["school_uai"], academie=row["academie"],
            status=row["status"], at=in_utc(row["withdrawn_at"] or row["enrolled_at"]),
        )
        for row in rows
    ]


#: ``enrollments.published_status`` of an enrollment that a purge or an erasure made the
#: router forget (a tombstone in ``preuve.enrollments``): it is never published again.
FORGOTTEN = "forgotten"


def _unpublished(table: sa.Table) -> sa.ColumnElement[bool]:
    status = table.c.published_status
    return sa.or_(status.is_(None), sa.and_(status != table.c.status, status != FORGOTTEN))


def _count_pending(engine: Engine, experiment_id: str) -> int:
    table = ENROLLMENTS
    with engine.connect() as connection:
        return int(connection.execute(
            sa.select(sa.func.count()).select_from(table)
            .where(table.c.experiment_id == experiment_id, _unpublished(table))
        ).scalar() or 0)


def publish_pending(engine: Engine, experiment_id: str, publish: Publish) -> PublishReport:
    """Publish every enrollment of ``experiment_id`` whose status is not published yet.

    ``publish`` signals a broker it cannot reach or write to with
    :class:`ingest.errors.IngestError` (``BrokerError``) or ``OSError``; the records then
    stay pending. Publishing twice is harmless: the topic is keyed (and compacted) by class, and the
    router keeps the latest record of each class.

    Examples
    --------
    >>> engine = fresh_registry()
    >>> publish_pending(engine, "x", lambda messages: len(messages))
    PublishReport(published=0, error=None)
    """
    from ingest.errors import IngestError

    messages = pending_messages(engine, experiment_id)
    if not messages:
        return PublishReport(0, None)
    try:
        written = publish(messages)
    except (IngestError, OSError) as exc:
        logger.warning("experiment %s: publishing %d enrollments failed: %s",
                       experiment_id, len(messages), exc)
        return PublishReport(0, f"{type(exc).__name__}: {exc}")
    if written != len(messages):
        return PublishReport(written, f"only {written} of {len(messages)} records were written")
    table = ENROLLMENTS
    with Session(engine) as session, session.begin():
        session.execute(
            sa.update(table)
            .where(table.c.experiment_id == experiment_id,
                   table.c.class_id == sa.bindparam("c"), table.c.status == sa.bindparam("s"))
            .values(published_status=sa.bindparam("s")),
            [{"c": m.class_id, "s": m.status} for m in messages],
        )
    logger.info("experiment %s: published %d enrollment records", experiment_id, written)
    return PublishReport(written, None)


def kafka_publisher(settings: Settings) -> Publish:
    """The default ``publish``: one long-lived kafka-python producer (the ``enrollment``
    principal's, :class:`ingest.kafka.producer.EnrollmentPublisher`) to
    ``settings.topics.enrollments``, acks=all.

    kafka-python's errors are raised as :class:`ingest.errors.BrokerError`, which
    :func:`publish_pending` turns into pending records.

    Examples
    --------
    >>> from experiments.settings import Settings
    >>> callable(kafka_publisher(Settings()))
    True
    """
    from kafka.errors import KafkaError

    from ingest.errors import BrokerError
    from ingest.kafka.producer import EnrollmentPublisher

    publisher = EnrollmentPublisher(settings)  # its producer is made at the first call

    def publish(messages: Sequence[EnrollmentMessage]) -> int:
        try:
            return publisher.publish(messages)
        except KafkaError as exc:  # kafka-python's errors, in the ingest vocabulary
            raise BrokerError(f"Kafka: {exc}") from exc

    return publish


def registered_enrollments(
    engine: Engine, messages: Sequence[EnrollmentMessage]
) -> set[EnrollmentMessage]:
    """The records of ``messages`` that the registry holds: same class, experiment,
    resource and arm (the stream worker ignores the others: forged or stray records).

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> from ingest.contract import EnrollmentMessage
    >>> forged = EnrollmentMessage(class_id="cls-1", experiment_id="x", resource_id="r",
    ...     arm="a", school_uai="0750001A", academie="paris", at=datetime.now(UTC))
    >>> registered_enrollments(fresh_registry(), [forged])
    set()
    """
    table, designs = ENROLLMENTS, DESIGNS
    held: set[tuple[str, str, str, str]] = set()
    with engine.connect() as connection:
        for chunk in in_chunks(sorted({m.class_id for m in messages})):
            rows = connection.execute(
                sa.select(table.c.class_id, table.c.experiment_id, designs.c.resource_id,
                          table.c.arm)
                .join(designs, designs.c.experiment_id == table.c.experiment_id)
                .where(table.c.class_id.in_(chunk))
            )
            held.update((r.class_id, r.experiment_id, r.resource_id, r.arm) for r in rows)
    return {m for m in messages
            if (m.class_id, m.experiment_id, m.resource_id, m.arm) in held}
