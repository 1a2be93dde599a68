"""The stream worker's agents: route events, track enrollments, replay parked events.

Delivery: events are consumed in batches with ``take_events``, which acknowledges a
batch only after the loop body has finished with it; the body writes the stores and the
dead letters (awaiting the broker's acknowledgement) before it finishes. Offsets are
therefore committed only after the data is durable, and stores ignore re-delivered
event ids: a crash anywhere loses nothing and stores nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import faust
from sqlalchemy.exc import DBAPIError, OperationalError

from experiments.settings import Settings
from ingest.contract import EnrollmentMessage
from ingest.stream.parking import forget_parked, parked_classes, parked_for_classes
from ingest.stream.replay import read_parked
from ingest.stream.router import BatchOutcome, EventRouter, IngressRecord
from ingest.stream.topics import StreamTopics

__all__ = ["declare_agents"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_RETRY_MAX_SECONDS = 30.0


async def _until_written(action: Callable[[], T], what: str) -> T:
    """Run a database write until it succeeds, backing off while the database is down.

    Waiting here is the back-pressure: the agent consumes nothing more, faust's buffer
    fills and the partitions are paused until the store answers again.
    """
    delay = 0.5
    while True:
        try:
            return action()
        except DBAPIError as error:
            if not (isinstance(error, OperationalError) or error.connection_invalidated):
                raise  # a bug, not an outage: crash loudly rather than loop
            logger.warning("%s failed (%s); retrying in %.1fs", what, type(error).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_SECONDS)


class EnrollmentCache:
    """Parsed view of the enrollment table, so routing does not re-parse JSON per event."""

    def __init__(self, table: faust.Table) -> None:
        self.table = table
        self._parsed: dict[tuple[str, str], EnrollmentMessage] = {}

    def lookup(self, class_id: str, resource_id: str) -> EnrollmentMessage | None:
        key = (class_id, resource_id)
        hit = self._parsed.get(key)
        if hit is not None:
            return hit
        entry = self.table.get(class_id)
        if not entry or resource_id not in entry:
            return None
        parsed = self._parsed[key] = EnrollmentMessage.model_validate(entry[resource_id])
        return parsed

    def record(self, message: EnrollmentMessage) -> None:
        """Write an enrollment into the table (inside the enrollments stream)."""
        entry: dict[str, Any] = dict(self.table.get(message.class_id) or {})
        entry[message.resource_id] = message.model_dump(mode="json")
        self.table[message.class_id] = entry
        self._parsed[(message.class_id, message.resource_id)] = message


def _records(events: Sequence[faust.EventT]) -> list[IngressRecord]:
    return [
        IngressRecord(
            topic=event.message.topic, partition=event.message.partition,
            offset=event.message.offset, key=event.message.key, value=event.message.value,
        )
        for event in events
    ]


def declare_agents(
    app: faust.App,
    settings: Settings,
    topics: StreamTopics,
    table: faust.Table,
    router: EventRouter,
    bootstrap: str,
) -> None:
    """Declare the agents of the stream worker on ``app``."""
    cache = EnrollmentCache(table)
    batch_size = settings.worker.batch_size
    batch_seconds = settings.worker.batch_seconds

    async def dead_letter(outcome: BatchOutcome) -> None:
        pending = []
        for dead in outcome.dead:
            pending.append(
                await topics.deadletter.send(
                    key=dead.record.key, value=dead.record.value, headers=dead.headers()
                )
            )
            logger.info(
                "dead-lettered event %s: %s%s", dead.event_id or "(no id)",
                f"field '{dead.field}': " if dead.field else "", dead.reason,
            )
        for future in pending:
            await future  # the broker has the dead letter before the source is acknowledged

    def log_batch(outcome: BatchOutcome, size: int) -> None:
        for experiment_id, stored in outcome.stored.items():
            logger.info("stored %d events in experiment %s", stored, experiment_id)
        if outcome.duplicates or outcome.parked or outcome.dead:
            logger.info(
                "batch of %d: %d duplicates skipped, %d parked (class not enrolled), %d dead-lettered",
                size, outcome.duplicates, outcome.parked, len(outcome.dead),
            )

    @app.agent(topics.events, name="route-events")
    async def route_events(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(batch_size, within=batch_seconds):
            records = _records(events)
            outcome = await _until_written(
                lambda batch=records: router.route(batch, cache.lookup), "storing a batch"
            )
            await dead_letter(outcome)
            log_batch(outcome, len(records))

    @app.agent(topics.enrollments, name="track-enrollments")
    async def track_enrollments(stream: faust.StreamT[bytes]) -> None:
        # One event at a time on purpose: a table write goes to the changelog partition
        # of the *current* event, which a batched stream would not give reliably.
        async for event in stream.events():
            try:
                message = EnrollmentMessage.model_validate_json(event.message.value)
            except ValueError as error:
                logger.error("ignoring a malformed enrollment record at offset %d: %s",
                             event.message.offset, error)
                continue
            cache.record(message)

    @app.timer(interval=settings.worker.replay_interval_s, name="replay-parked")
    async def replay_parked() -> None:
        """Route the parked events of classes that this worker now knows as enrolled.

        Replay is a timer rather than part of the enrollment agent so that a burst of
        enrollments (a whole académie at once, or a worker starting on a full topic) is
        replayed in a few bulk reads instead of one Kafka read per class.
        """
        waiting = await _until_written(lambda: parked_classes(router.registry), "reading parking")
        ready = [key for key in waiting if cache.lookup(*key) is not None]
        if not ready:
            return
        parked = await _until_written(
            lambda: parked_for_classes(router.registry, ready), "reading parked events"
        )
        loop = asyncio.get_running_loop()
        records, missing = await loop.run_in_executor(None, read_parked, bootstrap, parked)
        outcome = await _until_written(lambda: router.route(records, cache.lookup), "replaying")
        await dead_letter(outcome)
        await _until_written(
            lambda: forget_parked(router.registry, [p.event_id for p in parked]),
            "forgetting replayed events",
        )
        logger.info(
            "replayed %d parked events of %d newly enrolled classes (%d no longer in the topic)",
            len(records), len(ready), len(missing),
        )
