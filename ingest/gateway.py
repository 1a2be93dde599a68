"""The HTTP event gateway: EdTech resources post usage events, the gateway writes them to Kafka.

Two endpoints take events: ``POST /v1/events`` (contract v1, one event or a JSON array)
and ``POST /v1/xapi/statements`` (xAPI statements, mapped by :mod:`ingest.xapi`). Each
request is all-or-nothing: every item is validated, scope-checked and de-duplicated
first, and only a request with no bad item is written. The answer is 202 only once Kafka
has durably written every record of the request (``acks=all``, keyed by ``class_id`` on
``settings.topics.events``).

``POST /v1/events:validate`` and ``POST /v1/xapi/statements:validate`` check a batch the
same way and answer a verdict per item (200), storing and producing nothing; the dead
letters of a resource are read at ``GET /v1/resources/{id}/deadletters``
(:mod:`ingest.edtech_api`).

Answers: 202 written (or already written before); 400 the body is not a JSON event, array
or statement; 401 no valid API key; 403 an event of another resource than the key's;
409 an ``event_id`` already received with other content; 413 too many items or bytes;
422 items break the contract; 503 Kafka (or the registry) cannot take the batch in time,
with ``Retry-After``. Refusals list each bad item: ``{"errors": [{"index", "field",
"reason"}]}``.

The gateway also serves the enrollment API of :mod:`experiments.enrollment.api`
(``/v1/experiments/{id}/enrollments``, ``/withdrawals`` and, for the resource of a
pupil-randomised experiment, ``/assignments``: académie, EdTech, researcher and admin
tokens, each scoped), published in the same OpenAPI document.

Each record carries the header ``preuve.authority`` naming the key that sent it (role,
scope, a prefix of its hash: :mod:`ingest.authority`); the worker stores it with the
event, and analyses take outcomes only from trusted authorities. An ``assessor`` key
(one experiment) sends only ``assessment_scored`` events of that experiment's measures.

De-duplication is the receipts index of :mod:`ingest.receipts`: a re-sent identical event
is answered 202 without a second copy, another content under a known ``event_id`` is a
409; a request's new receipts are committed before its Kafka write and confirmed after.
"Identical" is judged on a canonical form of the event: keys sorted, ``occurred_at`` as
its UTC instant (the same instant written with ``Z`` or ``+02:00`` is the same event),
and, for a statement whose timestamp the gateway filled, without ``occurred_at``.

xAPI statements are mapped by :func:`ingest.xapi.map_statement`, with the context mapping
of the statement's resource (``settings.gateway.xapi_contexts``, read once at start-up);
the 202 answer's ``notes`` say what was dropped or filled (an ``actor.name`` dropped, a
missing ``timestamp`` filled with the time of receipt, a verb stored as ``interacted``).

Kafka is written with aiokafka's producer in the event loop (``acks=all``, idempotent,
started on first use, replaced after a failed write); the receipts' statements run in
the event loop too on PostgreSQL (:mod:`ingest.receipts`), so that a request waits for
no worker thread (issue 20). kafka-python stays where a synchronous client fits: the CLI,
and a producer a caller injects (:func:`create_app`), used in worker threads.

Logging: one INFO line per accepted request (count, resource ids and the key's role,
scope and label), never a learner id or a payload.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import sqlalchemy as sa
from aiokafka.errors import KafkaError as AioKafkaError
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from kafka.errors import KafkaError
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from experiments.access import Principal, caller
from experiments.database import registry_engine
from experiments.enrollment.api import install_enrollment_api
from experiments.enrollment.api import openapi_components as enrollment_openapi_components
from experiments.limits import BodyLimits, gateway_body_limits
from experiments.refusals import Refusal, install_refusals
from experiments.settings import Settings
from ingest.authority import AUTHORITY_HEADER, assessor_problems
from ingest.contract import UsageEvent, parse_event
from ingest.edtech_api import install_edtech_api
from ingest.errors import BatchRefused, BrokerError, EventRejected, ItemProblem, StatementRejected
from ingest.gates import in_the_future
from ingest.kafka import clients
from ingest.kafka.principals import GATEWAY
from ingest.receipts import Receipt, ReceiptBook, purge_receipts
from ingest.xapi import (
    RESOURCE_EXTENSION,
    STATEMENT_JSON_SCHEMA,
    TIMESTAMP_FILLED,
    MappedStatement,
    map_statement,
)
from ingest.xapi_context import ContextMapping, load_context_mappings

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

__all__ = [
    "Accepted",
    "EventProducer",
    "OPENAPI_PATH",
    "Refusal",
    "app_from_environment",
    "create_app",
    "event_sender",
    "openapi_document",
    "router",
]

logger = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).parent / "schemas" / "gateway-openapi.json"
_PURGE_EVERY_S = 3600.0
_IN_FLIGHT_MARGIN_S = 2.0  # beyond the Kafka timeout, before a pending receipt is stale


class EventProducer(Protocol):
    """What the gateway needs of an injected Kafka producer (kafka-python's
    ``KafkaProducer``, or a test's stand-in): the gateway then sends and awaits in a
    worker thread. Without one, the gateway writes with its own aiokafka producer, in
    the event loop (issue 20)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> Any: ...

    def close(self, timeout: float | None = None) -> None: ...


class ItemNote(BaseModel):
    """Something done to an accepted item: a field dropped, a value filled."""

    index: int = Field(description="Index of the item in the batch.")
    field: str = Field(description="The field concerned (for xAPI, its path in the statement).")
    note: str


class Accepted(BaseModel):
    """Answer of an accepted request (202)."""

    accepted: int = Field(description="Items of the request, all durably written to Kafka.")
    duplicates: int = Field(
        description="Of those, items already received before (not written a second time)."
    )
    event_ids: list[str] = Field(
        description="The event_id of each item, in request order (for xAPI: the statement "
        "id, or the id derived from its content when it had none)."
    )
    notes: list[ItemNote] = Field(
        default_factory=list,
        description="What was dropped or filled to accept the items (xAPI: an actor's name "
        "or e-mail dropped, a missing timestamp filled with the time of receipt, a verb "
        "stored as `interacted`); empty for contract-v1 events.",
    )


class ItemProblemModel(BaseModel):
    """One problem of one item (the same words as a refusal's ``errors``)."""

    field: str | None = None
    reason: str


class Verdict(BaseModel):
    """What the gateway would do with one item of a validate-only request."""

    index: int = Field(description="Index of the item in the batch.")
    valid: bool = Field(description="True: this item would be accepted as it is.")
    event_id: str | None = Field(None, description="The event's id, once it could be read.")
    problems: list[ItemProblemModel] = Field(default_factory=list)
    notes: list[ItemNote] = Field(
        default_factory=list, description="What the mapping would drop or fill (xAPI).")


class Validated(BaseModel):
    """Answer of ``POST /v1/events:validate`` and ``/v1/xapi/statements:validate``:
    per-item verdicts. Nothing is stored or written to Kafka."""

    valid: int = Field(description="Items that would be accepted.")
    refused: int = Field(description="Items that would be refused (each with its problems).")
    verdicts: list[Verdict]


@dataclass(frozen=True)
class _Item:
    index: int
    event: UsageEvent
    value: bytes
    digest: str
    notes: tuple[ItemNote, ...] = field(default=())
    authority: str = ""
    """Who sends it (:attr:`Principal.authority`), the record's ``preuve.authority``."""
    event_id: str = field(init=False)
    receipt: Receipt = field(init=False)

    def __post_init__(self) -> None:  # read several times per request: made once
        event_id = str(self.event.event_id)
        object.__setattr__(self, "event_id", event_id)
        object.__setattr__(self, "receipt", Receipt(self.index, event_id, self.digest,
                                                    self.event.resource_id))


@dataclass(frozen=True)
class _Outcome:
    written: int
    duplicates: int


_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": Refusal, "description": "The body is not JSON, or not an object or array."},
    401: {"model": Refusal, "description": "No valid API key."},
    403: {"model": Refusal, "description": "An item of another resource than the key's; "
          "for an assessor key, an item that is not an outcome score of its experiment."},
    409: {"model": Refusal, "description": "An event_id already received with other content."},
    413: {"model": Refusal, "description": "Too many items or bytes in one request."},
    422: {"model": Refusal, "description": "Items break the contract (each listed)."},
    503: {
        "model": Refusal,
        "description": "Kafka could not durably write the batch in time; retry after "
        "`Retry-After` seconds (re-sending is safe: event_id is the idempotency key).",
    },
}



_ALL_OR_NOTHING = (
    "All-or-nothing per request: if any item is refused, nothing of the request is "
    "written, and the answer lists every bad item by index and field. 202 means every "
    "item is durably written to Kafka (acks=all). Re-sending an identical event is a "
    "success without a second copy; the same event_id with other content is a 409. "
    "A request holds at most `max_batch_items` items and `max_batch_bytes` bytes (deployment "
    "settings, by default 1000 items and 1 MiB), else 413."
)


_EVENT_FIELDS = tuple(UsageEvent.model_fields)


def _canonical_digest(event: UsageEvent) -> str:
    """SHA-256 of the event's canonical form: key order, 1 vs 1.0 and the offset an instant
    is written in must not make an identical re-send look like new content; a timestamp the
    gateway filled (the time of receipt) is left out, since a re-send gets another.

    The form is ``model_dump(mode="json", exclude_none=True)`` with keys sorted (receipts
    kept across upgrades compare against it: it must not change), built here from the
    fields directly, which costs a third of pydantic's dump (issue 20); values that are
    not plain JSON take pydantic's way (``tests/unit/test_gateway_digest.py``)."""
    content: dict[str, Any] = {}
    for name in _EVENT_FIELDS:
        value = getattr(event, name)
        if value is not None:
            content[name] = value
    content["event_id"] = str(event.event_id)
    try:
        return _digest_of(event, content)
    except TypeError:  # an extension value json cannot write as it is
        return _digest_of(event, event.model_dump(mode="json", exclude_none=True))


def _digest_of(event: UsageEvent, content: dict[str, Any]) -> str:
    if (event.extensions or {}).get("xapi_timestamp") == TIMESTAMP_FILLED:
        del content["occurred_at"]
    else:
        content["occurred_at"] = event.occurred_at.astimezone(UTC).isoformat(
            timespec="microseconds"
        )
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_items(body: bytes, limit: int) -> list[Any]:
    if not body.strip():
        raise BatchRefused(400, [ItemProblem(None, None, "the body is empty")])
    try:
        decoded = json.loads(body, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise BatchRefused(400, [ItemProblem(None, None, f"not valid JSON: {error}")]) from None
    except RecursionError:
        raise BatchRefused(400, [ItemProblem(None, None, "JSON nested too deeply")]) from None
    if isinstance(decoded, dict):
        return [decoded]
    if not isinstance(decoded, list):
        raise BatchRefused(
            400,
            [
                ItemProblem(
                    None, None, f"expecting an object or an array, got {type(decoded).__name__}"
                )
            ],
        )
    if not decoded:
        raise BatchRefused(400, [ItemProblem(None, None, "the batch is empty")])
    if len(decoded) > limit:
        raise BatchRefused(
            413,
            [
                ItemProblem(
                    None, None, f"the batch has {len(decoded)} items, at most {limit} allowed"
                )
            ],
        )
    return decoded


class _Gateway:
    """The state behind one app: settings, registry engine, producer, purge clock."""

    def __init__(self, settings: Settings, producer: EventProducer | None, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.receipts = ReceiptBook(
            engine,
            in_flight_s=settings.gateway.kafka_timeout_s + _IN_FLIGHT_MARGIN_S,
            retry_after_s=settings.gateway.retry_after_s,
        )
        self._producer = producer  # injected (kafka-python-like): used in a worker thread
        self._lock = threading.Lock()
        #: The gateway's own aiokafka producer (when none was injected), started in the
        #: event loop on first use, dropped after a failed write.
        self._aio: AIOKafkaProducer | None = None
        self._aio_lock: asyncio.Lock | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._last_purge = float("-inf")
        #: Per-resource xAPI context mappings (``settings.gateway.xapi_contexts``).
        self.contexts: dict[str, ContextMapping] = {}

    # -- the request body ----------------------------------------------------------------

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.gateway.max_batch_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BatchRefused(
                413,
                [
                    ItemProblem(
                        None, None, f"the body has {declared} bytes, at most {limit} allowed"
                    )
                ],
            )
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise BatchRefused(
                    413,
                    [
                        ItemProblem(
                            None,
                            None,
                            f"the body has more than {limit} bytes, at most {limit} allowed",
                        )
                    ],
                )
        return bytes(body)

    def items(
        self,
        body: bytes,
        principal: Principal,
        to_event: Callable[[Any, int], MappedStatement],
        resource_field: str = "resource_id",
    ) -> list[_Item]:
        """Decode, validate and scope-check every item; refuse the request on any problem.

        ``resource_field`` is how a refusal names the resource (the xAPI path for statements).
        Every problem of every item is listed.
        """
        raw_items = _decode_items(body, self.settings.gateway.max_batch_items)
        items: list[_Item] = []
        problems: list[ItemProblem] = []
        for index, raw in enumerate(raw_items):
            try:
                mapped = to_event(raw, index)
            except StatementRejected as rejection:
                problems.extend(ItemProblem(index, p.field, p.reason) for p in rejection.problems)
                continue
            except EventRejected as rejection:
                problems.append(ItemProblem(index, rejection.field, rejection.reason))
                continue
            event = mapped.event
            notes = tuple(ItemNote(index=index, field=n.field, note=n.note) for n in mapped.notes)
            items.append(
                _Item(index, event, event.to_json(), _canonical_digest(event), notes,
                      principal.authority)
            )
        problems.extend(_future_problems(items, self.settings))
        if problems:
            raise BatchRefused(422, problems)
        if principal.role == "assessor":  # outcome scores of its experiment, nothing else
            refused = assessor_problems(self.engine, principal,
                                        [(item.index, item.event) for item in items])
            if refused:
                raise BatchRefused(403, refused)
            return items
        foreign = [
            ItemProblem(
                item.index,
                resource_field,
                f"resource '{item.event.resource_id}' is not the resource of this API key "
                f"('{principal.scope}')",
            )
            for item in items
            if not principal.can_act_for(item.event.resource_id)
        ]
        if foreign:
            raise BatchRefused(403, foreign)
        return items

    def verdicts(
        self,
        body: bytes,
        principal: Principal,
        to_event: Callable[[Any, int], MappedStatement],
        resource_field: str = "resource_id",
    ) -> Validated:
        """The checks of :meth:`items`, item by item, without refusing the request and
        without touching receipts or Kafka (the validate-only endpoints). A body that is
        not JSON, or too large, is still refused (400, 413) as for sending."""
        raw_items = _decode_items(body, self.settings.gateway.max_batch_items)
        verdicts: list[Verdict] = []
        for index, raw in enumerate(raw_items):
            problems: list[ItemProblem] = []
            notes: list[ItemNote] = []
            event: UsageEvent | None = None
            try:
                mapped = to_event(raw, index)
                event = mapped.event
                notes = [ItemNote(index=index, field=n.field, note=n.note) for n in mapped.notes]
            except StatementRejected as rejection:
                problems.extend(ItemProblem(index, p.field, p.reason) for p in rejection.problems)
            except EventRejected as rejection:
                problems.append(ItemProblem(index, rejection.field, rejection.reason))
            if event is not None:
                reason = in_the_future(event.occurred_at, self.settings.now(),
                                       self.settings.clock_skew_s)
                if reason is not None:
                    problems.append(ItemProblem(index, "occurred_at", reason))
                if principal.role == "assessor":
                    problems.extend(assessor_problems(self.engine, principal, [(index, event)]))
                elif not principal.can_act_for(event.resource_id):
                    problems.append(ItemProblem(
                        index, resource_field,
                        f"resource '{event.resource_id}' is not the resource of this API key "
                        f"('{principal.scope}')"))
            verdicts.append(Verdict(
                index=index, valid=not problems,
                event_id=str(event.event_id) if event is not None else None,
                problems=[ItemProblemModel(field=p.field, reason=p.reason) for p in problems],
                notes=notes))
        valid = sum(v.valid for v in verdicts)
        return Validated(valid=valid, refused=len(verdicts) - valid, verdicts=verdicts)

    # -- de-duplication and the Kafka write ------------------------------------------------

    async def accept(self, items: Sequence[_Item]) -> _Outcome:
        """Claim receipts, write to Kafka, confirm (see :mod:`ingest.receipts`).

        The Kafka write is awaited in the event loop, and so are the claim and the
        confirmation on PostgreSQL (on SQLite, and for the rare waits for another
        gateway's write, the registry is used from worker threads)."""
        unique: dict[tuple[str, str], _Item] = {}
        conflicts: list[ItemProblem] = []
        for item in items:
            first = unique.setdefault(item.receipt.key, item)
            if first.digest != item.digest:
                conflicts.append(
                    ItemProblem(
                        item.index,
                        "event_id",
                        f"event_id {item.event_id} is also item {first.index} of this batch, "
                        "with other content",
                    )
                )
        if conflicts:
            raise BatchRefused(409, conflicts)
        late: list[_Item] = []
        try:
            claim = await self.receipts.aclaim([item.receipt for item in unique.values()])
            await self._write([unique[r.key] for r in claim.to_send])
            if claim.in_flight:
                late = [unique[r.key] for r in await run_in_threadpool(
                    self.receipts.await_in_flight, claim.in_flight)]
            if late:
                await run_in_threadpool(self.receipts.take_over, [item.receipt for item in late])
                await self._write(late)
        except sa.exc.OperationalError as error:
            raise self._unavailable(
                f"the registry (receipts) is unavailable: {error.orig}"
            ) from None
        if time.monotonic() - self._last_purge >= _PURGE_EVERY_S:
            await run_in_threadpool(self._purge_if_due)
        written = len(claim.to_send) + len(late)
        return _Outcome(written=written, duplicates=len(items) - written)

    async def _write(self, items: Sequence[_Item]) -> None:
        """Produce and await ``items``, then confirm their receipts (or mark them failed)."""
        if not items:
            return
        try:
            if self._producer is not None:  # injected: kafka-python's futures, in a thread
                await run_in_threadpool(self._produce, items)
            else:
                await self._aio_produce(items)
        except BatchRefused:
            await self.receipts.aset_state([item.receipt for item in items], "failed")
            raise
        # A registry failure here leaves the receipts pending: the client's retry writes
        # the events again once they are stale, and the worker de-duplicates by event_id.
        await self.receipts.aset_state([item.receipt for item in items], "confirmed")

    # -- the gateway's own producer: aiokafka, in the event loop ---------------------------

    async def _aio_producer(self) -> AIOKafkaProducer:
        if self._aio is not None:
            return self._aio
        if self._aio_lock is None:
            self._aio_lock = asyncio.Lock()
        async with self._aio_lock:  # one start, however many requests wait for it
            if self._aio is None:
                timeout_ms = int(self.settings.gateway.kafka_timeout_s * 1000)
                try:
                    producer = clients.aio_producer(
                        self.settings, GATEWAY, linger_ms=2, request_timeout_ms=timeout_ms,
                        max_batch_size=256 * 1024)
                except BrokerError as error:
                    raise self._unavailable(f"Kafka is not reachable: {error}") from None
                try:
                    async with asyncio.timeout(self.settings.gateway.kafka_timeout_s):
                        await producer.start()
                except (AioKafkaError, OSError, TimeoutError) as error:
                    self._stop_later(producer)
                    raise self._unavailable(
                        f"Kafka is not reachable: {error!r}") from None
                self._aio = producer
            return self._aio

    async def _aio_produce(self, items: Sequence[_Item]) -> None:
        """Send ``items`` (keyed by class, with the ``preuve.authority`` header) and await
        every acknowledgement (acks=all) within ``gateway.kafka_timeout_s``; on any
        failure the producer is dropped (the next request starts a fresh one) and the
        answer is 503."""
        producer = await self._aio_producer()
        topic = self.settings.topics.events
        timeout = self.settings.gateway.kafka_timeout_s
        try:
            async with asyncio.timeout(timeout):
                # send() only queues the record (it waits if the buffer is full); the
                # futures resolve once the broker acknowledged their batch.
                futures = [
                    await producer.send(topic, key=item.event.class_id.encode(),
                                        value=item.value,
                                        headers=[(AUTHORITY_HEADER, item.authority.encode())])
                    for item in items
                ]
                await asyncio.gather(*futures)
        except (AioKafkaError, TimeoutError) as error:
            if self._aio is producer:
                self._aio = None
                self._stop_later(producer)
            raise self._unavailable(
                f"Kafka did not durably write the batch within {timeout:g}s: {error!r}"
            ) from None

    def _stop_later(self, producer: AIOKafkaProducer) -> None:
        """Stop a failed producer without making the request wait for it (its pending
        batches expire on their own)."""
        task = asyncio.get_running_loop().create_task(producer.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def aclose(self) -> None:
        """At shutdown: stop the aiokafka producer (and failed ones still stopping), and
        close the receipts' asyncio connections. An injected producer is the caller's."""
        producer, self._aio = self._aio, None
        if producer is not None:
            try:
                async with asyncio.timeout(self.settings.gateway.kafka_timeout_s):
                    await producer.stop()
            except (AioKafkaError, TimeoutError) as error:
                logger.warning("stopping the Kafka producer: %r", error)
        if self._stopping:
            await asyncio.wait(self._stopping, timeout=self.settings.gateway.kafka_timeout_s)
        await self.receipts.aclose()

    # -- an injected, kafka-python-like producer (tests, synchronous callers) ----------------

    def _produce(self, items: Sequence[_Item]) -> None:
        producer = self._producer
        assert producer is not None
        topic = self.settings.topics.events
        deadline = time.monotonic() + self.settings.gateway.kafka_timeout_s
        try:
            futures = [
                producer.send(topic, key=item.event.class_id.encode(), value=item.value,
                              headers=[(AUTHORITY_HEADER, item.authority.encode())])
                for item in items
            ]
            for future in futures:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaError as error:
            raise self._unavailable(
                f"Kafka did not durably write the batch within "
                f"{self.settings.gateway.kafka_timeout_s:g}s: {error}"
            ) from None

    def _unavailable(self, reason: str) -> BatchRefused:
        # The reason (a broker address, a database host and user) is for the log; the
        # client learns only that it may retry.
        logger.warning("answering 503: %s", reason)
        retry = self.settings.gateway.retry_after_s
        return BatchRefused(
            503,
            [ItemProblem(None, None, f"the events cannot be durably written now: retry in "
                                     f"{retry} s (re-sending is safe)")],
            headers={"Retry-After": str(retry)},
        )

    def _purge_if_due(self) -> None:
        with self._lock:
            if time.monotonic() - self._last_purge < _PURGE_EVERY_S:
                return
            self._last_purge = time.monotonic()
        try:
            purge_receipts(
                self.engine, timedelta(days=self.settings.gateway.receipt_retention_days)
            )
        except sa.exc.OperationalError as error:
            # The batch is written and confirmed; the purge is retried an hour later.
            logger.warning("could not purge gateway receipts: %s", error.orig)



def _future_problems(items: Sequence[_Item], settings: Settings) -> list[ItemProblem]:
    """Items dated in the future beyond the clock skew (:mod:`ingest.gates`)."""
    now = settings.now()
    found = []
    for item in items:
        reason = in_the_future(item.event.occurred_at, now, settings.clock_skew_s)
        if reason is not None:
            found.append(ItemProblem(item.index, "occurred_at", reason))
    return found


def _native_event(raw: Any, index: int) -> MappedStatement:
    event = parse_event(raw) if isinstance(raw, dict) else parse_event(json.dumps(raw))
    return MappedStatement(event)


def _gateway(request: Request) -> _Gateway:
    gateway: _Gateway = request.app.state.gateway
    return gateway


def event_sender(principal: Annotated[Principal, Depends(caller)]) -> Principal:
    """The caller (:func:`experiments.access.caller`), if its role may send events."""
    if principal.role not in ("edtech", "admin", "assessor"):
        raise BatchRefused(
            403,
            [ItemProblem(None, "Authorization", f"role '{principal.role}' may not send events")],
        )
    return principal


_Sender = Annotated[Principal, Depends(event_sender)]
_State = Annotated[_Gateway, Depends(_gateway)]

router = APIRouter()
"""The event routes; :func:`create_app` gives them their state (``app.state.gateway``)."""


async def _accept(
    request: Request,
    gateway: _Gateway,
    principal: Principal,
    to_event: Callable[[Any, int], MappedStatement],
    resource_field: str = "resource_id",
) -> JSONResponse:
    body = await gateway.read_body(request)  # after the caller's key was checked
    if principal.role == "assessor":  # its checks read the registry
        items = await run_in_threadpool(gateway.items, body, principal, to_event,
                                        resource_field)
    else:  # decoding and validating 100 events costs less than a hop to a thread
        items = gateway.items(body, principal, to_event, resource_field)
    outcome = await gateway.accept(items)
    resources = sorted({item.event.resource_id for item in items})
    # Batches are traced by the receipts index (event ids) and this line, which names
    # the key that wrote them; the audit log keeps the registry's writes.
    logger.info(
        "accepted %d events (%d duplicates) for %s by %s",
        len(items),
        outcome.duplicates,
        ",".join(resources),
        principal.actor,
    )
    answer = Accepted(
        accepted=len(items),
        duplicates=outcome.duplicates,
        event_ids=[item.event_id for item in items],
        notes=[note for item in items for note in item.notes],
    )
    return JSONResponse(answer.model_dump(), status_code=202)


def _batch_body(schema: str) -> dict[str, Any]:
    """The OpenAPI request body: one ``schema`` object or a non-empty array of them."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": f"#/components/schemas/{schema}"},
                            {
                                "type": "array",
                                "items": {"$ref": f"#/components/schemas/{schema}"},
                                "minItems": 1,
                            },
                        ]
                    }
                }
            },
        }
    }


@router.post(
    "/v1/events",
    status_code=202,
    response_model=Accepted,
    responses=_REFUSALS,
    summary="Send one usage event or a batch (contract v1)",
    description="Body: one contract-v1 event, or a JSON array of them. " + _ALL_OR_NOTHING,
    openapi_extra=_batch_body("UsageEvent"),
)
async def post_events(request: Request, principal: _Sender, gateway: _State) -> JSONResponse:
    return await _accept(request, gateway, principal, _native_event)


@router.post(
    "/v1/xapi/statements",
    status_code=202,
    response_model=Accepted,
    responses=_REFUSALS,
    summary="Send xAPI statements (one or an array), mapped onto contract v1",
    description=(
        "The mapping is documented in docs/xapi-mapping.md: the actor is an `account` "
        "with a pseudonymous `name` (a `name`, `mbox` or `openid` beside it is dropped "
        "and listed in `notes`); class and school come from context extensions, grouping "
        "activities or the resource's context mapping; the resource is the API key's "
        "unless a context extension names it; a missing `timestamp` is filled with the "
        "time of receipt; a verb outside the mapping is stored as `interacted`. A refused "
        "statement lists every problem. " + _ALL_OR_NOTHING
    ),
    openapi_extra=_batch_body("XapiStatement"),
)
async def post_statements(
    request: Request, principal: _Sender, gateway: _State
) -> JSONResponse:
    return await _accept(request, gateway, principal, _statement_mapper(gateway, principal),
                         f"context.extensions[{RESOURCE_EXTENSION}]")


def _statement_mapper(gateway: _Gateway, principal: Principal
                      ) -> Callable[[Any, int], MappedStatement]:
    """How this key's statements map onto contract v1 (the resource is the key's unless a
    context extension names it; that resource's context mapping applies)."""
    received_at = datetime.now(UTC)
    default = principal.scope if principal.role == "edtech" else None

    def mapped(raw: Any, _index: int) -> MappedStatement:
        resource = default
        context = raw.get("context") if isinstance(raw, dict) else None
        extensions = context.get("extensions") if isinstance(context, dict) else None
        if isinstance(extensions, dict) and isinstance(extensions.get(RESOURCE_EXTENSION), str):
            resource = extensions[RESOURCE_EXTENSION]
        return map_statement(
            raw, resource_id=default, received_at=received_at,
            mapping=gateway.contexts.get(resource) if resource is not None else None,
        )

    return mapped


_VALIDATE_ONLY = (
    "Validate-only (as event debuggers do): every item is checked as for sending (the "
    "contract, the clock, the key's resource) and the answer gives a verdict per item; "
    "nothing is stored, no receipt is kept and nothing is written to Kafka. What only "
    "the stream worker knows (whether the class is enrolled, its school, the experiment's "
    "first day) is not checked here, on purpose: a verdict on enrollment would tell a key "
    "which classes take part, control classes included. The dead letters say it "
    "(`GET /v1/resources/{resource_id}/deadletters`)."
)
_VALIDATE_REFUSALS: dict[int | str, dict[str, Any]] = {
    k: v for k, v in _REFUSALS.items() if k in (400, 401, 403, 413)}


async def _validate(request: Request, gateway: _Gateway, principal: Principal,
                    to_event: Callable[[Any, int], MappedStatement],
                    resource_field: str = "resource_id") -> Validated:
    body = await gateway.read_body(request)  # after the caller's key was checked
    return await run_in_threadpool(gateway.verdicts, body, principal, to_event, resource_field)


@router.post(
    "/v1/events:validate",
    response_model=Validated,
    responses=_VALIDATE_REFUSALS,
    summary="Check events (contract v1) without sending them: a verdict per item",
    description="Body: as for `POST /v1/events`. " + _VALIDATE_ONLY,
    openapi_extra=_batch_body("UsageEvent"),
)
async def validate_events(request: Request, principal: _Sender, gateway: _State) -> Validated:
    return await _validate(request, gateway, principal, _native_event)


@router.post(
    "/v1/xapi/statements:validate",
    response_model=Validated,
    responses=_VALIDATE_REFUSALS,
    summary="Check xAPI statements without sending them: a verdict per statement",
    description="Body: as for `POST /v1/xapi/statements`. " + _VALIDATE_ONLY,
    openapi_extra=_batch_body("XapiStatement"),
)
async def validate_statements(request: Request, principal: _Sender,
                              gateway: _State) -> Validated:
    return await _validate(request, gateway, principal, _statement_mapper(gateway, principal),
                           f"context.extensions[{RESOURCE_EXTENSION}]")


@router.get("/healthz", summary="Liveness: the gateway process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def create_app(
    settings: Settings,
    producer: EventProducer | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    """The gateway's ASGI app.

    Parameters
    ----------
    settings
        Settings (Kafka, topics, ``settings.gateway`` limits and timeouts).
    producer
        A kafka-python producer to write with, in worker threads (tests inject one; the
        caller closes it). None: the app writes with its own aiokafka producer in the
        event loop, started on first use (``acks=all``, idempotent), replaced after a
        failed write, stopped at shutdown.
    engine
        The registry engine (API keys, receipts). None: ``registry_engine(settings)``.

    Returns
    -------
    FastAPI
        The app; serve it with uvicorn (``preuve gateway``) or test it in process.

    Examples
    --------
    >>> app = create_app(fresh_settings())
    >>> sorted(app.openapi()["paths"])  # doctest: +NORMALIZE_WHITESPACE
    ['/healthz', '/v1/events', '/v1/events:validate',
     '/v1/experiments/{experiment_id}/assignments',
     '/v1/experiments/{experiment_id}/corrections',
     '/v1/experiments/{experiment_id}/enrollments',
     '/v1/experiments/{experiment_id}/validations',
     '/v1/experiments/{experiment_id}/withdrawals',
     '/v1/resources/{resource_id}/deadletters', '/v1/xapi/statements',
     '/v1/xapi/statements:validate']
    """
    gateway = _Gateway(
        settings, producer, engine if engine is not None else registry_engine(settings)
    )
    gateway.contexts = load_context_mappings(settings.gateway.xapi_contexts)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        await gateway.aclose()

    app = FastAPI(
        title="Preuve event gateway",
        version="1",
        summary="EdTech resources send pupils' usage events (contract v1 or xAPI).",
        description=(
            "Each EdTech company has an API key scoped to its `resource_id`. An assessor "
            "key (the evaluation team, scoped to one experiment) sends only "
            "`assessment_scored` events of the measures its protocol names: the outcome "
            "scores; an EdTech's own scores are usage. " + _ALL_OR_NOTHING
        ),
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.registry = gateway.engine
    install_refusals(app)
    app.include_router(router)
    # The enrollment API (académies enroll and withdraw, EdTechs read their treatment
    # classes) is served by the gateway, on the registry engine it authenticates with,
    # and published in the same OpenAPI document (tag "enrollment").
    install_enrollment_api(app, settings, engine=gateway.engine)
    # Issue 17: an EdTech reads its own resource's dead letters (ingest/edtech_api.py).
    install_edtech_api(app, engine=gateway.engine)
    app.add_middleware(BodyLimits, limits=gateway_body_limits(settings))
    _publish_openapi(app)
    return app


def _publish_openapi(app: FastAPI) -> None:
    """The document lists the event and statement schemas and the enrollment bodies."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            event_schema = UsageEvent.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(event_schema.pop("$defs", {}))
            components["UsageEvent"] = event_schema
            components["XapiStatement"] = STATEMENT_JSON_SCHEMA
            components.update(enrollment_openapi_components())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_environment() -> FastAPI:
    """The app configured by ``PREUVE_*`` variables: the factory each worker process of
    ``preuve gateway --workers N`` calls (uvicorn imports it by name)."""
    from experiments.cli.console import start_service

    settings = Settings()
    start_service(settings)
    return create_app(settings)


def openapi_document(settings: Settings | None = None) -> str:
    """The gateway's OpenAPI document as saved in ``ingest/schemas/gateway-openapi.json``."""
    app = create_app(settings or Settings(), producer=None, engine=sa.create_engine("sqlite://"))
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
