"""The router's view of ``preuve.enrollments``: (class_id, resource_id) → enrollment.

Every worker reads the whole compacted topic (all partitions, from the beginning) into
memory, then follows it. A global view rather than a table co-partitioned with the
events: it does not depend on two consumer groups agreeing on an assignment, and even a
national roll-out is a few hundred thousand small records. A record whose value is
``None`` (a tombstone, written by a purge or an erasure) removes the enrollment.

A record is believed only if the registry holds the same enrollment (class, experiment,
resource, arm): only the enrollment principal may write the topic, and this check makes a
forged record (a stolen credential, a misconfigured ACL) harmless: it is logged and ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from aiokafka import TopicPartition
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from experiments.settings import Settings
from ingest.contract import EnrollmentMessage
from ingest.kafka import clients
from ingest.kafka.principals import WORKER
from ingest.kafka.producer import enrollment_key_parts
from ingest.kafka.topics import partitions_of

Verify = Callable[[Sequence[EnrollmentMessage]], set[EnrollmentMessage]]
"""Which of these records the registry holds (see
:func:`experiments.enrollment.publishing.registered_enrollments`)."""

__all__ = ["EnrollmentView"]

logger = logging.getLogger(__name__)

_STALLED_READS = 5


class EnrollmentView:
    """An in-memory copy of the enrollment topic, kept up to date by :meth:`follow`.

    Parameters
    ----------
    settings
        Kafka and the enrollment topic (``settings.topics.enrollments``).
    verify
        Returns the records the registry holds; the others are ignored.
    """

    def __init__(self, settings: Settings, verify: Verify) -> None:
        self.settings = settings
        self.topic = settings.topics.enrollments
        self.verify = verify
        self.ignored = 0
        self._enrollments: dict[tuple[str, str], EnrollmentMessage] = {}
        self._consumer = clients.aio_consumer(
            settings, WORKER, group_id=None, client_id="preuve-enrollments",
        )

    def lookup(self, class_id: str, resource_id: str) -> EnrollmentMessage | None:
        """The class's enrollment for that resource, if this worker has seen it.

        Called from the routing thread while :meth:`follow` writes on the event loop: a
        single ``dict.get`` is atomic in CPython, so no lock is needed.
        """
        return self._enrollments.get((class_id, resource_id))

    async def _verified(self, messages: Sequence[EnrollmentMessage]) -> set[EnrollmentMessage]:
        """The registry's answer for these records, waiting out a database outage (the
        records are in hand, already past the consumer's position: they must not be
        dropped, nor believed unchecked)."""
        delay = 0.5
        while True:
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    None, self.verify, messages)
            except DBAPIError as error:
                if not (isinstance(error, OperationalError) or error.connection_invalidated):
                    raise  # a bug, not an outage
                logger.warning("checking %d enrollment records against the registry failed "
                               "(%s); retrying in %.1fs", len(messages),
                               type(error).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def __len__(self) -> int:
        return len(self._enrollments)

    async def start(self) -> None:
        """Assign every partition of the topic and read it up to its current end."""
        await self._consumer.start()
        assigned = [TopicPartition(self.topic, p) for p in await self._partitions()]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_beginning(*assigned)
        ends = await self._consumer.end_offsets(assigned)
        positions = await self._positions(assigned)
        stalled = 0
        while any(positions[tp] < end for tp, end in ends.items()):
            known = len(self._enrollments)
            await self._read_once(timeout_ms=1000)
            before, positions = positions, await self._positions(assigned)
            stalled = stalled + 1 if (positions, len(self._enrollments)) == (before, known) else 0
            if stalled >= _STALLED_READS:
                # A compacted tail can leave the position short of the end offset with
                # nothing left to fetch; what could be read has been read.
                logger.warning("%s: stopped short of the end offsets %s at %s", self.topic,
                               {tp.partition: o for tp, o in ends.items()},
                               {tp.partition: o for tp, o in positions.items()})
                break
        logger.info("read %d enrollments from %s", len(self._enrollments), self.topic)

    async def _positions(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: await self._consumer.position(tp) for tp in partitions}

    async def _partitions(self) -> list[int]:
        return await partitions_of(self.settings, WORKER, self.topic)

    async def follow(self) -> None:
        """Apply new enrollment records until cancelled."""
        while True:
            await self._read_once(timeout_ms=1000)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def _read_once(self, timeout_ms: int) -> None:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        parsed: list[tuple[bytes | None, EnrollmentMessage | None]] = []
        for records in batches.values():
            for record in records:
                if record.value is None:
                    parsed.append((record.key, None))
                    continue
                try:
                    parsed.append((record.key,
                                   EnrollmentMessage.model_validate_json(record.value)))
                except ValidationError as error:
                    logger.error("ignoring a malformed enrollment record at offset %d: %s",
                                 record.offset, error)
        messages = [message for _, message in parsed if message is not None]
        held = await self._verified(messages) if messages else set()
        for key, message in parsed:  # in order: a tombstone after a record removes it
            if message is None:
                self._enrollments.pop(enrollment_key_parts(key or b""), None)
            elif message in held:
                self._enrollments[(message.class_id, message.resource_id)] = message
            else:
                self.ignored += 1
                logger.warning(
                    "ignoring an enrollment record the registry does not hold: class %s in "
                    "experiment %s (resource %s, arm %s)", message.class_id,
                    message.experiment_id, message.resource_id, message.arm)

