"""Receipts: the gateway's de-duplication index of the events it accepted.

The gateway keeps a receipt per event in the registry table ``gateway_receipts``
(primary key ``(resource_id, event_id)``, SHA-256 of the event's canonical JSON,
``state``, ``received_at``; canonical: keys sorted, ``occurred_at`` as its UTC instant so
that the same instant written with ``Z`` or ``+02:00`` is the same content, see
``ingest.gateway._canonical_digest``), shared by every gateway process and surviving
restarts. A receipt is ``pending`` (a gateway is writing it since ``received_at``),
``confirmed`` (Kafka acknowledged it) or ``failed`` (a write timed out: it may or may not
be in Kafka). For each request:

1. Receipts of the request's ids are read. An id known with another content hash is a
   409 (nothing written). An id ``confirmed`` with the same hash is a duplicate: answered
   as a success and not produced again.
2. Receipts of new ids are inserted as ``pending`` and committed **before** the Kafka
   write; ``failed`` receipts, and ``pending`` ones older than the Kafka timeout (their
   gateway died), are taken over (``pending`` again, from now). Steps 1 and 2 are one
   statement when every id is new (``INSERT … ON CONFLICT DO UPDATE … WHERE`` same
   content and failed or stale ``… RETURNING`` the ids it wrote); the ids it did not
   write are then read, to tell duplicates, conflicts (the claim is rolled back) and
   other gateways' writes apart.
3. Those ids are produced and awaited. Ids ``pending`` on another gateway within its
   Kafka timeout are waited for instead: once that gateway confirms them they are
   duplicates; if it fails or outlives its timeout, this gateway takes them over.
4. Once Kafka acknowledged the writes, their receipts become ``confirmed``; then 202. If
   Kafka times out, they become ``failed`` and the answer is 503 with ``Retry-After``.

Ids are the resource's own: a receipt is keyed by ``(resource_id, event_id)``, so an
EdTech cannot claim another resource's event ids ahead of it (its events would be
refused 409) nor learn, from a 409 or a duplicate, which ids another resource used.

So a re-sent identical event, even sent to two gateways at once, is written once.
A second copy can only reach Kafka after a failure: a 503 whose records Kafka still
wrote later, a gateway that died (or lost the registry) between the Kafka write and the
confirmation, or two gateways taking over the same failed receipt at once. That copy
has the same ``event_id`` and the stream worker de-duplicates by ``event_id``, so the
store holds it once: delivery to Kafka is at-least-once, idempotent per ``event_id``,
and exactly-once when nothing fails. A failed receipt keeps its content hash, since the
first content may be in Kafka: another content under the same id stays a 409.

Receipts older than ``settings.gateway.receipt_retention_days`` are purged (at most once
an hour, by any gateway); past that, the worker's de-duplication is the only one. The
index is bounded by the traffic of that window (one short row per event).

On PostgreSQL the gateway runs the claim and the confirmation in its event loop
(:meth:`ReceiptBook.aclaim`, :meth:`ReceiptBook.aset_state`: SQLAlchemy's asyncio engine
over psycopg, the same statements), so that no request waits for a worker thread to get
the interpreter back (issue 20: in threads each of the two took ~70 ms under load, for
~1 ms of database work); SQLite stays in worker threads.

The index stores no learner id and no payload: an event id, a SHA-256 of the canonical
event, the resource, a state and a time.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.concurrency import run_in_threadpool

from experiments.database import RegistryBase, insert_for_dialect
from ingest.errors import BatchRefused, ItemProblem

__all__ = ["Claim", "Receipt", "ReceiptBook", "ReceiptState", "purge_receipts", "receipts"]

logger = logging.getLogger(__name__)

ReceiptState = Literal["pending", "confirmed", "failed"]
_SQL_CHUNK = 500  # ids per IN (...) query: under SQLite's historical 999 variables
_POLL_S = 0.05  # how often a request waiting for another gateway's write looks again

receipts = sa.Table(
    "gateway_receipts",
    RegistryBase.metadata,
    sa.Column("resource_id", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("content_sha256", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


@dataclass(frozen=True)
class Receipt:
    """What one item of a request claims: its index in the batch (to name it in a 409),
    its event id, the SHA-256 of its canonical content and its resource."""

    index: int
    event_id: str
    digest: str
    resource_id: str

    @property
    def key(self) -> _Key:
        """What identifies the receipt: the resource and its event id."""
        return (self.resource_id, self.event_id)


_Key = tuple[str, str]


@dataclass(frozen=True)
class Claim:
    """The outcome of :meth:`ReceiptBook.claim`: what to write now, what to wait for."""

    to_send: list[Receipt]  # new ids, and ids whose earlier write failed or went stale
    in_flight: list[Receipt]  # ids another gateway is writing right now


@dataclass(frozen=True)
class _Known:
    digest: str
    state: str
    received_at: datetime


class ReceiptBook:
    """The receipts of one registry.

    Parameters
    ----------
    engine
        The registry engine (table ``gateway_receipts``, migration ``gateway_0001``).
    in_flight_s
        How long a pending receipt belongs to the gateway that wrote it (its Kafka timeout
        and a margin); older, it is stale and another gateway takes it over.
    retry_after_s
        ``Retry-After`` of the 503 answered when a claim keeps colliding.
    """

    def __init__(self, engine: Engine, *, in_flight_s: float, retry_after_s: int) -> None:
        self.engine = engine
        self.in_flight_s = in_flight_s
        self.retry_after_s = retry_after_s
        self._async: AsyncEngine | None = None

    def _async_engine(self) -> AsyncEngine | None:
        """PostgreSQL: an asyncio engine on the registry's database, its search path
        included (made on first use, from the event loop). Others: None."""
        if self.engine.dialect.name != "postgresql":
            return None
        if self._async is None:
            with self.engine.connect() as connection:
                search_path = connection.exec_driver_sql("SHOW search_path").scalar_one()
            search_path = search_path.replace(" ", "\\ ")  # libpq's options escape
            # No pre-ping (a round trip per request): a connection the server dropped
            # fails one request (503, retried) and the pool discards it.
            # As many connections as requests in flight (16 clients in the benchmark):
            # an overflow connection is closed when returned, then opened again.
            # Custom plans only: psycopg prepares a statement run five times, and
            # PostgreSQL's generic plan of the confirmation's unnest join cost 5x the
            # custom one (PostgreSQL CPU 65 -> 27 us/event for a claim and its
            # confirmation, 100 receipts a request; issue 20).
            self._async = create_async_engine(
                self.engine.url, pool_size=16, max_overflow=16,
                connect_args={"options": f"-csearch_path={search_path} "
                                         "-cplan_cache_mode=force_custom_plan"})
        return self._async

    async def aclaim(self, wanted: Sequence[Receipt]) -> Claim:
        """:meth:`claim`, awaited: in the event loop on PostgreSQL, in a thread otherwise."""
        engine = self._async_engine()
        if engine is None:
            return await run_in_threadpool(self.claim, wanted)
        for _attempt in range(3):
            try:
                async with engine.begin() as connection:
                    return await connection.run_sync(self._claim_in, wanted)
            except sa.exc.IntegrityError:
                continue  # as in claim()
        raise self._colliding()

    async def aset_state(self, wanted: Sequence[Receipt], state: ReceiptState) -> None:
        """:meth:`set_state`, awaited: in the event loop on PostgreSQL, in a thread
        otherwise."""
        engine = self._async_engine()
        if engine is None:
            await run_in_threadpool(self.set_state, wanted, state)
            return
        async with engine.begin() as connection:
            if state == "confirmed":
                # Not waiting for this commit's WAL flush: should the server crash
                # before it, the receipts stay pending, go stale, and a re-send is
                # written again, which the worker de-duplicates by event_id.
                await connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
            await connection.run_sync(_update, wanted, state=state)

    async def aclose(self) -> None:
        """Dispose of the asyncio engine's connections (at the gateway's shutdown)."""
        if self._async is not None:
            await self._async.dispose()
            self._async = None

    def claim(self, wanted: Sequence[Receipt]) -> Claim:
        """Insert pending receipts of new ids, take over failed or stale ones; sort them
        into those to write now and those another gateway is writing.

        Raises
        ------
        BatchRefused
            409 naming each item whose id is known with other content (nothing claimed).
        """
        for _attempt in range(3):
            try:
                return self._claim_once(wanted)
            except sa.exc.IntegrityError:
                # Another gateway claimed one of these ids between our read and our insert:
                # read again, its receipt now decides (duplicate, conflict or in flight).
                continue
        raise self._colliding()

    def _colliding(self) -> BatchRefused:
        return BatchRefused(
            503,
            [
                ItemProblem(
                    None, "event_id", "these event ids are being received concurrently; retry"
                )
            ],
            headers={"Retry-After": str(self.retry_after_s)},
        )

    def _in_flight_since(self) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=self.in_flight_s)

    def _known(self, connection: sa.Connection, keys: Sequence[_Key]) -> dict[_Key, _Known]:
        known: dict[_Key, _Known] = {}
        for resource_id, ids in _by_resource(keys).items():
            for start in range(0, len(ids), _SQL_CHUNK):
                rows = connection.execute(
                    sa.select(
                        receipts.c.event_id,
                        receipts.c.content_sha256,
                        receipts.c.state,
                        receipts.c.received_at,
                    ).where(receipts.c.resource_id == resource_id,
                            receipts.c.event_id.in_(ids[start : start + _SQL_CHUNK]))
                )
                for row in rows:
                    received_at = row.received_at
                    if received_at.tzinfo is None:  # SQLite keeps no offset; we store UTC
                        received_at = received_at.replace(tzinfo=UTC)
                    known[resource_id, row.event_id] = _Known(
                        row.content_sha256, row.state, received_at)
        return known

    def _claim_once(self, wanted: Sequence[Receipt]) -> Claim:
        with self.engine.begin() as connection:
            return self._claim_in(connection, wanted)

    def _claim_in(self, connection: sa.Connection, wanted: Sequence[Receipt]) -> Claim:
        """The claim in ``connection``'s transaction (rolled back on a 409)."""
        now = datetime.now(UTC)
        in_flight_since = self._in_flight_since()
        # One statement claims what this gateway writes: new ids, and known ids of the
        # same content whose write failed or went stale. Only when some id was not
        # claimed (a duplicate, a conflict, another gateway's write) is anything read.
        claimed = self._upsert(connection, wanted, now, in_flight_since)
        rest = [receipt for receipt in wanted if receipt.key not in claimed]
        known = self._known(connection, [receipt.key for receipt in rest]) if rest else {}
        conflicts = [
            ItemProblem(
                receipt.index,
                "event_id",
                f"event_id {receipt.event_id} was already received with other content",
            )
            for receipt in rest
            if receipt.key in known and known[receipt.key].digest != receipt.digest
        ]
        if conflicts:
            raise BatchRefused(409, conflicts)  # the transaction is rolled back
        # Not claimed and not confirmed: another gateway is writing it (or its state
        # changed since the upsert, or it was purged): waited for, then taken over if
        # that gateway does not confirm it (await_in_flight).
        in_flight = [receipt for receipt in rest
                     if receipt.key not in known or known[receipt.key].state != "confirmed"]
        return Claim(to_send=[receipt for receipt in wanted if receipt.key in claimed],
                     in_flight=in_flight)

    def _upsert(self, connection: sa.Connection, wanted: Sequence[Receipt], now: datetime,
                in_flight_since: datetime) -> set[_Key]:
        """``INSERT … ON CONFLICT DO UPDATE … RETURNING``: pending receipts of new ids, and
        of known ids with the same content that are failed or stale; the keys it wrote."""
        if not wanted:
            return set()
        statement = _claim_statement(connection.dialect)
        times = {"received_at": now, "in_flight_since": in_flight_since}
        if connection.dialect.name == "postgresql":  # three arrays, whatever the batch
            rows = connection.execute(statement, {
                "resources": [receipt.resource_id for receipt in wanted],
                "events": [receipt.event_id for receipt in wanted],
                "digests": [receipt.digest for receipt in wanted], **times})
        else:
            rows = connection.execute(statement, [
                {"resource_id": receipt.resource_id, "event_id": receipt.event_id,
                 "content_sha256": receipt.digest, "state": "pending", **times}
                for receipt in wanted])
        return {(row.resource_id, row.event_id) for row in rows}

    def take_over(self, wanted: Sequence[Receipt]) -> None:
        """Mark receipts pending from now: this gateway writes them (others wait)."""
        with self.engine.begin() as connection:
            self._take_over(connection, wanted)

    def _take_over(self, connection: sa.Connection, wanted: Sequence[Receipt]) -> None:
        _update(connection, wanted, state="pending", received_at=datetime.now(UTC))

    def await_in_flight(self, wanted: Sequence[Receipt]) -> list[Receipt]:
        """Wait for other gateways' writes of ``wanted``; return those they did not
        confirm in time (failed, or pending past the window: that gateway died or gave
        up), for this gateway to take over."""
        waiting = {receipt.key: receipt for receipt in wanted}
        late: list[Receipt] = []
        while waiting:
            in_flight_since = self._in_flight_since()
            with self.engine.connect() as connection:
                known = self._known(connection, list(waiting))
            for key, seen in known.items():
                if seen.state == "confirmed":
                    del waiting[key]
                elif seen.state == "failed" or seen.received_at < in_flight_since:
                    late.append(waiting.pop(key))
            for key in set(waiting) - set(known):  # purged meanwhile: write it
                late.append(waiting.pop(key))
            if waiting:
                time.sleep(_POLL_S)
        return late

    def set_state(self, wanted: Sequence[Receipt], state: ReceiptState) -> None:
        """Set the state of receipts (``confirmed`` after Kafka's ack, ``failed`` after a
        timeout)."""
        with self.engine.begin() as connection:
            _update(connection, wanted, state=state)


@functools.cache
def _claim_statement(dialect: sa.Dialect) -> Any:
    """The claim's upsert (built once per dialect). PostgreSQL takes the batch as three
    arrays (``unnest``): one statement with five parameters, whatever the batch's size;
    SQLite takes it as rows."""
    columns = receipts.c
    received_at = sa.bindparam("received_at", type_=columns.received_at.type)
    if dialect.name == "postgresql":
        text_array = postgresql.ARRAY(sa.String)
        rows = sa.select(
            sa.func.unnest(sa.bindparam("resources", type_=text_array)),
            sa.func.unnest(sa.bindparam("events", type_=text_array)),
            sa.func.unnest(sa.bindparam("digests", type_=text_array)),
            sa.literal("pending"), received_at)
        insert = insert_for_dialect(dialect, receipts).from_select(
            ["resource_id", "event_id", "content_sha256", "state", "received_at"], rows)
    else:
        insert = insert_for_dialect(dialect, receipts).values(received_at=received_at)
    return insert.on_conflict_do_update(
        index_elements=["resource_id", "event_id"],
        set_={"state": "pending", "received_at": insert.excluded.received_at},
        where=sa.and_(columns.content_sha256 == insert.excluded.content_sha256,
                      sa.or_(columns.state == "failed",
                             sa.and_(columns.state == "pending",
                                     columns.received_at < sa.bindparam(
                                         "in_flight_since", type_=columns.received_at.type)))),
    ).returning(columns.resource_id, columns.event_id)


def _by_resource(keys: Sequence[_Key]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for resource_id, event_id in keys:
        grouped.setdefault(resource_id, []).append(event_id)
    return grouped


def _update(connection: sa.Connection, /, wanted: Sequence[Receipt], **values: object) -> None:
    if not wanted:
        return
    if connection.dialect.name == "postgresql":
        connection.execute(_update_statement(tuple(sorted(values))), {
            "resources": [r.resource_id for r in wanted],
            "events": [r.event_id for r in wanted],
            **{f"new_{name}": value for name, value in values.items()}})
        return
    for resource_id, ids in _by_resource([receipt.key for receipt in wanted]).items():
        for start in range(0, len(ids), _SQL_CHUNK):
            connection.execute(
                sa.update(receipts)
                .where(receipts.c.resource_id == resource_id,
                       receipts.c.event_id.in_(ids[start : start + _SQL_CHUNK]))
                .values(**values)
            )


@functools.cache
def _update_statement(columns: tuple[str, ...]) -> Any:
    """PostgreSQL's update of receipts by key (built once per set of columns), joined on
    the whole key (unnest of two arrays): with ``resource_id = … AND event_id IN (…)``
    the planner, on a table whose statistics lag its growth, used the primary key's
    first column only and read every receipt of the resource."""
    text_array = postgresql.ARRAY(sa.String)
    keys = sa.select(
        sa.func.unnest(sa.bindparam("resources", type_=text_array)).label("resource_id"),
        sa.func.unnest(sa.bindparam("events", type_=text_array)).label("event_id"),
    ).subquery("keys")
    return (sa.update(receipts)
            .where(receipts.c.resource_id == keys.c.resource_id,
                   receipts.c.event_id == keys.c.event_id)
            .values({name: sa.bindparam(f"new_{name}", type_=receipts.c[name].type)
                     for name in columns}))


def purge_receipts(engine: Engine, older_than: timedelta) -> int:
    """Delete receipts older than ``older_than``; returns how many were deleted."""
    cutoff = datetime.now(UTC) - older_than
    with engine.begin() as connection:
        result = connection.execute(sa.delete(receipts).where(receipts.c.received_at < cutoff))
    if result.rowcount:
        logger.info("purged %d gateway receipts older than %s", result.rowcount, cutoff.isoformat())
    return int(result.rowcount or 0)
