"""The stream worker (``preuve worker``): ``preuve.events`` → the experiments' stores.

One loop per process on a plain aiokafka consumer group, with offsets committed by hand:

1. fetch a batch (at most ``worker.batch_size`` records, across the assigned partitions);
2. prepare it (:meth:`~ingest.stream.router.EventRouter.prepare`, in a thread):
   validate, pseudonymise, find each event's experiment, make its store's rows ready;
3. write it (:meth:`~ingest.stream.router.EventRouter.write`, in another thread): each
   experiment's store in one transaction, and the events of classes not enrolled yet
   parked by offset in the registry; meanwhile the next batch is prepared;
4. send the refused records to the dead-letter topic and wait for the broker's
   acknowledgement, then record them in the registry's dead-letter index
   (:mod:`ingest.deadletters`: what an EdTech reads in the portal and the API);
5. only then commit, per partition, the offset after the last record of the batch.

The stores' daily usage is folded apart (issue 20): a PostgreSQL store's insert
transaction queues the usage of the events it inserts, and a fold task moves each written
store's queue into ``daily_usage`` at most every ``worker.batch_seconds``, in its own
thread and transaction (:func:`experiments.store.fold_usage`), then once more, waiting
for any fold in progress, when the worker stops. A fold never blocks a batch: when another
worker is folding the same store it skips, and the queued rows wait for the next fold. A
crash anywhere leaves rows queued, never counted twice nor lost (the queue is deleted in
the transaction that counts it); readers count the queue too
(:func:`experiments.store.read_daily_usage`).

A crash between 1 and 5 re-delivers the batch, and the stores skip event ids they
already hold, so an accepted event is stored exactly once whatever the crash. Nothing
is ever acknowledged that was not stored, parked or dead-lettered: the commit is the
last step and covers exactly the records handled.

Why not faust's agents (they were the first version): faust acknowledges the messages
it *skips* while a rebalance is in progress (``faust/streams.py``: a message of an old
generation is replaced by a skip marker, then acked), so a committed offset can pass
events that no agent saw. Our 20-minute soak of the faust version lost 3 of 235,182
events, all within a second of a worker restart, which fits that path (we did not prove
it was the only one). Owning the commit makes the rule "commit only what is stored"
hold by construction, whatever the framework does during a rebalance.

While a store is down the loop waits (:func:`StreamWorker._until_written`): it fetches
nothing more, aiokafka's prefetch buffer fills, and the heartbeats go on from their own
task, so the partitions stay with this worker until the store answers again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError, OperationalError

from experiments.cli.console import start_service
from experiments.database import registry_engine
from experiments.enrollment.publishing import registered_enrollments
from experiments.settings import Settings
from ingest.deadletters import (
    DeadLetterRow,
    forget_old_dead_letters,
    plain,
    record_dead_letters,
    resource_of,
    safe_payload,
    split_reason,
)
from ingest.kafka import clients
from ingest.kafka.access import ensure_topics
from ingest.kafka.principals import WORKER
from ingest.kafka.topics import events_pattern
from ingest.pseudonym import load_pseudonym_key
from ingest.stream.enrollments import EnrollmentView
from ingest.stream.parking import (
    forget_expired,
    forget_parked,
    parked_classes,
    parked_for_classes,
)
from ingest.stream.replay import read_parked
from ingest.stream.router import (
    BatchOutcome,
    DeadLetter,
    EventRouter,
    IngressRecord,
    PreparedBatch,
)

__all__ = ["READY_LINE", "StreamWorker", "run_worker"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

READY_LINE = "preuve worker ready"
"""Logged once the worker has read the enrollments and joined its consumer group."""

_RETRY_MAX_SECONDS = 30.0
_EXPIRY_CHECK_S = 3600.0


class _FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batch in progress finish (and commit) before partitions move away, so
    the next owner does not redo it. Bounded: a batch stuck on a dead store must not
    hold the whole group; its commit then fails and the new owner re-reads it."""

    def __init__(self, lock: asyncio.Lock, timeout_s: float) -> None:
        self.lock = lock
        self.timeout_s = timeout_s

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await asyncio.wait_for(self.lock.acquire(), self.timeout_s)
        except TimeoutError:
            logger.warning("a batch is still being written while partitions %s are revoked",
                           sorted(tp.partition for tp in revoked))
            return
        self.lock.release()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        logger.info("assigned partitions %s", sorted(tp.partition for tp in assigned))


class StreamWorker:
    """One stream worker process: consumer, dead-letter producer, enrollment view, replay.

    Parameters
    ----------
    settings
        Topics, consumer group, batch size and where the stores live.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        registry = registry_engine(settings)
        self.router = EventRouter(settings, load_pseudonym_key(settings), registry)
        self.enrollments = EnrollmentView(
            settings, functools.partial(registered_enrollments, registry)
        )
        self._batch_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        # One thread writes (the stores and the registry, one batch at a time), another
        # prepares the next batch meanwhile.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preuve-store")
        self._prepare_executor = ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix="preuve-prepare")
        # A third folds the stores' queued daily usage, apart from the batches.
        self._fold_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preuve-fold")
        self._unfolded: set[str] = set()  # experiments whose store may have queued usage

    def stop(self) -> None:
        """Finish the current batch, commit it, and leave the group."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`stop` (SIGTERM or SIGINT when run by :func:`run_worker`)."""
        worker = self.settings.worker
        producer = clients.aio_producer(self.settings, WORKER,
                                        client_id="preuve-worker-deadletter")
        consumer = clients.aio_consumer(
            self.settings, WORKER, group_id=worker.group_id,
            client_id="preuve-worker", max_poll_records=worker.batch_size,
            session_timeout_ms=int(worker.session_timeout_s * 1000),
            heartbeat_interval_ms=1000,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            # The pattern subscription sees a new EdTech topic at the next metadata refresh.
            metadata_max_age_ms=30_000,
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.enrollments.start()
            await producer.start()
            await consumer.start()
            # preuve.events and every resource's own preuve.events.<resource>.
            consumer.subscribe(
                pattern=events_pattern(self.settings),
                listener=_FinishBatchOnRevoke(self._batch_lock, worker.session_timeout_s),
            )
            tasks = [
                asyncio.create_task(self.enrollments.follow(), name="follow-enrollments"),
                asyncio.create_task(self._replay_forever(producer), name="replay-parked"),
                asyncio.create_task(self._fold_forever(), name="fold-usage"),
            ]
            logger.info("%s: group %s on %s, %d enrollments known", READY_LINE,
                        worker.group_id, self.settings.topics.events, len(self.enrollments))
            await self._consume(consumer, producer)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await consumer.stop()  # leaves the group: the partitions move at once
            await producer.stop()
            await self.enrollments.stop()
            try:  # what this worker queued, counted before it exits
                await self._fold(wait=True)
            except Exception:
                logger.exception("folding daily usage failed")
            self._executor.shutdown(wait=True)
            self._prepare_executor.shutdown(wait=True)
            self._fold_executor.shutdown(wait=True)
            logger.info("preuve worker stopped")

    async def _consume(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        """Fetch, prepare and write batches in order, two stages deep: batch N+1 is
        validated and pseudonymised (CPU, in one thread) while batch N is written and
        committed (mostly waiting on the database, in another). Batch N+1 is written
        only after batch N is committed, so offsets are still committed in order."""
        worker = self.settings.worker
        stopping = asyncio.create_task(self._stopping.wait())
        writing: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                fetch = asyncio.create_task(consumer.getmany(
                    timeout_ms=int(worker.batch_seconds * 1000), max_records=worker.batch_size
                ))
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()  # nothing fetched is lost: it was not committed
                    await asyncio.gather(fetch, return_exceptions=True)
                    break
                batches = fetch.result()
                if not batches:
                    continue
                records = [
                    IngressRecord(tp.topic, tp.partition, m.offset, m.key, m.value,
                                  tuple(m.headers or ()))
                    for tp, messages in batches.items() for m in messages
                ]
                prepared = await self._until_written(
                    functools.partial(self.router.prepare, records, self.enrollments.lookup),
                    "preparing a batch", self._prepare_executor,
                )
                offsets = {tp: messages[-1].offset + 1
                           for tp, messages in batches.items() if messages}
                if writing is not None:
                    await writing
                writing = asyncio.create_task(
                    self._write(consumer, producer, prepared, offsets, len(records))
                )
        finally:
            stopping.cancel()
            if writing is not None:
                await writing  # the batch in hand is written and committed before leaving

    async def _write(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, prepared: PreparedBatch,
        offsets: dict[TopicPartition, int], size: int,
    ) -> None:
        async with self._batch_lock:
            outcome = await self._until_written(lambda: self.router.write(prepared),
                                                "storing a batch")
            await self._dead_letter(producer, outcome)
            await self._commit(consumer, offsets)
        self._unfolded.update(outcome.stored)
        self._log_batch(outcome, size)

    async def _fold_forever(self) -> None:
        """Fold the daily usage queued by this worker's writes, at most every
        ``worker.batch_seconds``, never waiting for another worker's fold."""
        while True:
            await asyncio.sleep(self.settings.worker.batch_seconds)
            try:
                await self._fold(wait=False)
            except Exception:  # a bug: said loudly, and the usage stays queued, not lost
                logger.exception("folding daily usage failed")

    async def _fold(self, *, wait: bool) -> None:
        """Fold the queued usage of the stores this worker wrote since their last fold.
        A failure is logged and the store kept for the next fold: its rows stay queued
        (counted by readers from the queue), never lost nor counted twice."""
        loop = asyncio.get_running_loop()
        for experiment_id in sorted(self._unfolded):
            self._unfolded.discard(experiment_id)
            store = self.router.store(experiment_id)
            try:
                folded = await loop.run_in_executor(
                    self._fold_executor, functools.partial(store.fold_usage, wait=wait))
            except DBAPIError as error:
                self._unfolded.add(experiment_id)
                logger.warning("folding the daily usage of experiment %s failed (%s); its "
                               "events stay queued for the next fold", experiment_id,
                               type(error).__name__)
                return
            except BaseException:  # cancelled (stopping: the last fold retries), or a bug
                self._unfolded.add(experiment_id)
                raise
            if folded is None:  # another worker is folding this store
                self._unfolded.add(experiment_id)
            elif folded:
                logger.debug("folded the daily usage of %d events of experiment %s",
                             folded, experiment_id)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        owned = consumer.assignment()
        mine = {tp: offset for tp, offset in offsets.items() if tp in owned}
        if not mine:
            return
        try:
            await consumer.commit(mine)
        except KafkaError as error:  # CommitFailedError, IllegalStateError among them
            # The partitions moved during the batch: their next owner re-reads from the
            # last committed offset, and the stores skip what this batch already wrote.
            logger.warning("offsets %s not committed (%s); their events will be re-read "
                           "and skipped as duplicates",
                           {tp.partition: o for tp, o in mine.items()}, type(error).__name__)

    async def _dead_letter(self, producer: AIOKafkaProducer, outcome: BatchOutcome) -> None:
        pending = []
        for dead in outcome.dead:
            pending.append(await producer.send(
                self.settings.topics.deadletter, key=dead.record.key, value=dead.record.value,
                headers=dead.headers(),
            ))
            logger.info("dead-lettered event %s: %s%s", dead.event_id or "(no id)",
                        f"field '{dead.field}': " if dead.field else "", dead.reason)
        for future in pending:
            await future  # the broker has the dead letter before the source is committed
        if outcome.dead:
            # Then the index the portal and the API read (idempotent by source: a batch
            # re-delivered after a crash records its dead letters once).
            rows = [self._index_row(dead) for dead in outcome.dead]
            await self._until_written(
                lambda: record_dead_letters(self.router.registry, rows),
                "recording dead letters")

    def _index_row(self, dead: DeadLetter) -> DeadLetterRow:
        """The dead-letter index's row of a refused record: no raw learner id, the
        payload cut (:func:`ingest.deadletters.safe_payload`)."""
        record = dead.record
        payload, decoded = safe_payload(record.value)
        english, french = split_reason(dead.reason, dead.code, dead.field)
        return DeadLetterRow(
            source=f"{record.topic}/{record.partition}/{record.offset}"[:320],
            resource_id=resource_of(decoded, self.router.topic_resource(record.topic)),
            code=dead.code, field=dead.field,
            event_id=dead.event_id if dead.event_id and plain(dead.event_id[:64]) else None,
            reason_en=english, reason_fr=french, payload=payload,
            received_at=datetime.now(UTC),
        )

    async def _until_written(
        self, action: Callable[[], T], what: str, executor: ThreadPoolExecutor | None = None
    ) -> T:
        """Run a database action in a thread (the store thread by default) until it
        succeeds, backing off while the database is down (this wait is the back-pressure)."""
        loop = asyncio.get_running_loop()
        delay = 0.5
        while True:
            try:
                return await loop.run_in_executor(executor or self._executor, action)
            except DBAPIError as error:
                if not (isinstance(error, OperationalError) or error.connection_invalidated):
                    raise  # a bug, not an outage: crash loudly rather than loop
                logger.warning("%s failed (%s); retrying in %.1fs", what,
                               type(error).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_SECONDS)

    async def _replay_forever(self, producer: AIOKafkaProducer) -> None:
        retention = timedelta(days=self.settings.kafka.ingress_retention_days)
        expired_checked_at = 0.0
        while True:
            await asyncio.sleep(self.settings.worker.replay_interval_s)
            async with self._batch_lock:
                await self._replay(producer)
            if time.monotonic() - expired_checked_at > _EXPIRY_CHECK_S:
                expired_checked_at = time.monotonic()
                dropped = await self._until_written(
                    lambda: forget_expired(self.router.registry, datetime.now(UTC) - retention),
                    "forgetting expired parked events",
                )
                if dropped:
                    logger.warning("forgot %d parked events older than the ingress retention "
                                   "(%g days): their class was never enrolled", dropped,
                                   self.settings.kafka.ingress_retention_days)
                # The dead-letter index keeps what the dead-letter topic keeps.
                await self._until_written(
                    lambda: forget_old_dead_letters(self.router.registry,
                                                    datetime.now(UTC) - retention),
                    "forgetting old dead letters")

    async def _replay(self, producer: AIOKafkaProducer) -> None:
        """Route the parked events of classes that this worker now knows as enrolled.

        On a timer rather than on each enrollment record, so that a burst of enrollments
        (a whole académie at once, or a worker starting on a full topic) is replayed in a
        few bulk reads instead of one Kafka read per class. Parked events are forgotten
        only after they are stored (or dead-lettered).
        """
        router = self.router
        waiting = await self._until_written(lambda: parked_classes(router.registry),
                                            "reading parking")
        ready = [key for key in waiting if self.enrollments.lookup(*key) is not None]
        if not ready:
            return
        parked = await self._until_written(lambda: parked_for_classes(router.registry, ready),
                                           "reading parked events")
        loop = asyncio.get_running_loop()
        records, missing = await loop.run_in_executor(None, read_parked, self.settings, parked)
        outcome = await self._until_written(
            lambda: router.route(records, self.enrollments.lookup), "replaying"
        )
        await self._dead_letter(producer, outcome)
        await self._until_written(
            lambda: forget_parked(router.registry, [p.event_id for p in parked]),
            "forgetting replayed events",
        )
        logger.info("replayed %d parked events of %d newly enrolled classes "
                    "(%d no longer in the topic)", len(records), len(ready), len(missing))

    @staticmethod
    def _log_batch(outcome: BatchOutcome, size: int) -> None:
        for experiment_id, stored in outcome.stored.items():
            logger.info("stored %d events in experiment %s", stored, experiment_id)
        if outcome.duplicates or outcome.parked or outcome.dead:
            logger.info("batch of %d: %d duplicates skipped, %d parked (class not enrolled), "
                        "%d dead-lettered", size, outcome.duplicates, outcome.parked,
                        len(outcome.dead))


def run_worker(settings: Settings) -> None:
    """Create the topics if needed and run one worker until SIGTERM or SIGINT."""
    # The CLI already configured logging (WARNING unless --verbose); a long-running
    # service logs its own lines at settings.log_level whatever the CLI's verbosity.
    start_service(settings)
    for name in ("ingest", "experiments"):
        logging.getLogger(name).setLevel(settings.log_level.upper())
    ensure_topics(settings)

    async def main() -> None:
        worker = StreamWorker(settings)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop)
        await worker.run()

    asyncio.run(main())
