"""The HTTP event gateway: EdTech resources post usage events, the gateway writes them to Kafka.

Two endpoints take events: ``POST /v1/events`` (contract v1, one event or a JSON array)
and ``POST /v1/xapi/statements`` (xAPI statements, mapped by :mod:`ingest.xapi`). Each
request is all-or-nothing: every item is validated, scope-checked and de-duplicated
first, and only a request with no bad item is written. The answer is 202 only once Kafka
has durably written every record of the request (``acks=all``, keyed by ``class_id`` on
``settings.topics.events``).

Answers: 202 written (or already written before); 400 the body is not a JSON event, array
or statement; 401 no valid API key; 403 an event of another resource than the key's;
409 an ``event_id`` already received with other content; 413 too many items or bytes;
422 items break the contract; 503 Kafka (or the registry) cannot take the batch in time,
with ``Retry-After``. Refusals list each bad item: ``{"errors": [{"index", "field",
"reason"}]}``.

De-duplication: the receipts index
----------------------------------
The gateway keeps a receipt per event in the registry table ``gateway_receipts``
(``event_id`` primary key, SHA-256 of the event's canonical JSON, ``state``,
``received_at``), shared by every gateway process and surviving restarts. A receipt is
``pending`` (a gateway is writing it since ``received_at``), ``confirmed`` (Kafka
acknowledged it) or ``failed`` (a write timed out: it may or may not be in Kafka). For
each request:

1. Receipts of the request's ids are read. An id known with another content hash is a
   409 (nothing written). An id ``confirmed`` with the same hash is a duplicate: answered
   as a success and not produced again.
2. Receipts of new ids are inserted as ``pending`` and committed **before** the Kafka
   write; ``failed`` receipts, and ``pending`` ones older than the Kafka timeout (their
   gateway died), are taken over (``pending`` again, from now). If another gateway
   inserts the same id in between, the claim is re-read.
3. Those ids are produced and awaited. Ids ``pending`` on another gateway within its
   Kafka timeout are waited for instead: once that gateway confirms them they are
   duplicates; if it fails or outlives its timeout, this gateway takes them over.
4. Once Kafka acknowledged the writes, their receipts become ``confirmed``; then 202. If
   Kafka times out, they become ``failed`` and the answer is 503 with ``Retry-After``.

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

Logging: one INFO line per accepted request (count and resource ids), never a learner
id or a payload.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from kafka.errors import KafkaError
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from experiments.access import Principal, authenticate
from experiments.database import RegistryBase, registry_engine
from experiments.settings import Settings
from ingest.contract import UsageEvent, parse_event
from ingest.errors import BatchRefused, BrokerError, EventRejected, ItemProblem
from ingest.producer import new_producer
from ingest.xapi import RESOURCE_EXTENSION, STATEMENT_JSON_SCHEMA, statement_to_event

__all__ = [
    "Accepted",
    "EventProducer",
    "OPENAPI_PATH",
    "Refusal",
    "app_from_environment",
    "create_app",
    "openapi_document",
    "purge_receipts",
    "receipts",
]

logger = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).parent / "schemas" / "gateway-openapi.json"
_PURGE_EVERY_S = 3600.0
_SQL_CHUNK = 500  # ids per IN (...) query: under SQLite's historical 999 variables
_IN_FLIGHT_MARGIN_S = 2.0  # beyond the Kafka timeout, before a pending receipt is stale
_IN_FLIGHT_POLL_S = 0.05

receipts = sa.Table(
    "gateway_receipts",
    RegistryBase.metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("content_sha256", sa.String(64), nullable=False),
    sa.Column("resource_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


class EventProducer(Protocol):
    """What the gateway needs of a Kafka producer (kafka-python's ``KafkaProducer``)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any: ...

    def close(self, timeout: float | None = None) -> None: ...


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


class Problem(BaseModel):
    """One reason to refuse a request."""

    index: int | None = Field(description="Index of the item in the batch; null: the request.")
    field: str | None = Field(description="The offending field, when there is one.")
    reason: str


class Refusal(BaseModel):
    """Answer of a refused request: nothing of it was written."""

    errors: list[Problem]


@dataclass(frozen=True)
class _Item:
    index: int
    event: UsageEvent
    value: bytes
    digest: str

    @property
    def event_id(self) -> str:
        return str(self.event.event_id)


@dataclass(frozen=True)
class _Claim:
    to_send: list[_Item]  # new ids, and ids whose earlier write failed or went stale
    in_flight: list[_Item]  # ids another request is writing right now


@dataclass(frozen=True)
class _Outcome:
    written: int
    duplicates: int


_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")
_Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_ApiKey = Annotated[str | None, Depends(_api_key)]

_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": Refusal, "description": "The body is not JSON, or not an object or array."},
    401: {"model": Refusal, "description": "No valid API key."},
    403: {"model": Refusal, "description": "An item of another resource than the key's."},
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


def _canonical_digest(event: UsageEvent) -> str:
    # Key order and 1 vs 1.0 must not make an identical re-send look like new content.
    canonical = json.dumps(
        event.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":")
    )
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
        self._producer = producer
        self._owns_producer = producer is None
        self._lock = threading.Lock()
        self._last_purge = float("-inf")

    # -- who is calling ------------------------------------------------------------------

    def principal(
        self, bearer: HTTPAuthorizationCredentials | None, api_key: str | None
    ) -> Principal:
        token = api_key or (bearer.credentials if bearer is not None else None)
        principal = authenticate(self.engine, token) if token else None
        if principal is None:
            reason = "an API key is required" if not token else "the API key is unknown or revoked"
            raise BatchRefused(
                401,
                [
                    ItemProblem(
                        None,
                        "Authorization",
                        f"{reason} (Authorization: Bearer <key> or X-API-Key)",
                    )
                ],
                headers={"WWW-Authenticate": "Bearer"},
            )
        if principal.role not in ("edtech", "admin"):
            raise BatchRefused(
                403,
                [
                    ItemProblem(
                        None, "Authorization", f"role '{principal.role}' may not send events"
                    )
                ],
            )
        return principal

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
        to_event: Callable[[Any, int], UsageEvent],
        resource_field: str = "resource_id",
    ) -> list[_Item]:
        """Decode, validate and scope-check every item; refuse the request on any problem.

        ``resource_field`` is how a refusal names the resource (the xAPI path for statements).
        """
        raw_items = _decode_items(body, self.settings.gateway.max_batch_items)
        items: list[_Item] = []
        problems: list[ItemProblem] = []
        for index, raw in enumerate(raw_items):
            try:
                event = to_event(raw, index)
            except EventRejected as rejection:
                problems.append(ItemProblem(index, rejection.field, rejection.reason))
                continue
            items.append(_Item(index, event, event.to_json(), _canonical_digest(event)))
        if problems:
            raise BatchRefused(422, problems)
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

    # -- de-duplication and the Kafka write ------------------------------------------------

    def accept(self, items: Sequence[_Item]) -> _Outcome:
        """Claim receipts, write to Kafka, confirm; see the module docstring."""
        unique: dict[str, _Item] = {}
        conflicts: list[ItemProblem] = []
        for item in items:
            first = unique.setdefault(item.event_id, item)
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
        try:
            claim = self._claim(list(unique.values()))
            self._write(claim.to_send)
            late = self._await_in_flight(claim.in_flight)
            if late:
                self._take_over(late)
                self._write(late)
        except sa.exc.OperationalError as error:
            raise self._unavailable(
                f"the registry (receipts) is unavailable: {error.orig}"
            ) from None
        self._purge_if_due()
        written = len(claim.to_send) + len(late)
        return _Outcome(written=written, duplicates=len(items) - written)

    def _write(self, items: Sequence[_Item]) -> None:
        """Produce and await ``items``, then confirm their receipts (or mark them failed)."""
        if not items:
            return
        try:
            self._produce(items)
        except BatchRefused:
            self._set_state([item.event_id for item in items], "failed")
            raise
        # A registry failure here leaves the receipts pending: the client's retry writes
        # the events again once they are stale, and the worker de-duplicates by event_id.
        self._set_state([item.event_id for item in items], "confirmed")

    def _claim(self, items: list[_Item]) -> _Claim:
        for _attempt in range(3):
            try:
                return self._claim_once(items)
            except sa.exc.IntegrityError:
                # Another gateway claimed one of these ids between our read and our insert:
                # read again, its receipt now decides (duplicate, conflict or in flight).
                continue
        raise BatchRefused(
            503,
            [
                ItemProblem(
                    None, "event_id", "these event ids are being received concurrently; retry"
                )
            ],
            headers={"Retry-After": str(self.settings.gateway.retry_after_s)},
        )

    def _in_flight_since(self) -> datetime:
        # A pending receipt younger than this has a gateway still waiting for Kafka on it.
        window = self.settings.gateway.kafka_timeout_s + _IN_FLIGHT_MARGIN_S
        return datetime.now(UTC) - timedelta(seconds=window)

    def _receipts_of(
        self, connection: sa.Connection, ids: list[str]
    ) -> dict[str, tuple[str, str, datetime]]:
        known: dict[str, tuple[str, str, datetime]] = {}
        for start in range(0, len(ids), _SQL_CHUNK):
            rows = connection.execute(
                sa.select(
                    receipts.c.event_id,
                    receipts.c.content_sha256,
                    receipts.c.state,
                    receipts.c.received_at,
                ).where(receipts.c.event_id.in_(ids[start : start + _SQL_CHUNK]))
            )
            for row in rows:
                received_at = row.received_at
                if received_at.tzinfo is None:  # SQLite keeps no offset; we store UTC
                    received_at = received_at.replace(tzinfo=UTC)
                known[row.event_id] = (row.content_sha256, row.state, received_at)
        return known

    def _claim_once(self, items: list[_Item]) -> _Claim:
        """Insert pending receipts of new ids, take over failed or stale ones; sort the
        items into those to produce now and those another gateway is writing."""
        now = datetime.now(UTC)
        in_flight_since = self._in_flight_since()
        with self.engine.begin() as connection:
            known = self._receipts_of(connection, [item.event_id for item in items])
            conflicts = [
                ItemProblem(
                    item.index,
                    "event_id",
                    f"event_id {item.event_id} was already received with other content",
                )
                for item in items
                if item.event_id in known and known[item.event_id][0] != item.digest
            ]
            if conflicts:
                raise BatchRefused(409, conflicts)
            fresh = [item for item in items if item.event_id not in known]
            if fresh:
                connection.execute(
                    sa.insert(receipts),
                    [
                        {
                            "event_id": item.event_id,
                            "content_sha256": item.digest,
                            "resource_id": item.event.resource_id,
                            "state": "pending",
                            "received_at": now,
                        }
                        for item in fresh
                    ],
                )
            in_flight, stale = [], []
            for item in items:
                if item.event_id not in known:
                    continue
                _digest, state, received_at = known[item.event_id]
                if state == "pending" and received_at >= in_flight_since:
                    in_flight.append(item)
                elif state != "confirmed":
                    stale.append(item)
            self._take_over(stale, connection)
        return _Claim(to_send=fresh + stale, in_flight=in_flight)

    def _take_over(self, items: Sequence[_Item], connection: sa.Connection | None = None) -> None:
        """Mark receipts pending from now: this gateway writes them (others wait)."""
        if not items:
            return
        if connection is None:
            with self.engine.begin() as own:
                self._take_over(items, own)
            return
        ids = [item.event_id for item in items]
        for start in range(0, len(ids), _SQL_CHUNK):
            connection.execute(
                sa.update(receipts)
                .where(receipts.c.event_id.in_(ids[start : start + _SQL_CHUNK]))
                .values(state="pending", received_at=datetime.now(UTC))
            )

    def _await_in_flight(self, items: Sequence[_Item]) -> list[_Item]:
        """Wait for other gateways' writes of ``items``; return those they did not confirm
        in time (failed, or pending past the window: that gateway died or gave up)."""
        waiting = {item.event_id: item for item in items}
        late: list[_Item] = []
        while waiting:
            in_flight_since = self._in_flight_since()
            with self.engine.connect() as connection:
                known = self._receipts_of(connection, list(waiting))
            for event_id, (_digest, state, received_at) in known.items():
                if state == "confirmed":
                    del waiting[event_id]
                elif state == "failed" or received_at < in_flight_since:
                    late.append(waiting.pop(event_id))
            for event_id in set(waiting) - set(known):  # purged meanwhile: write it
                late.append(waiting.pop(event_id))
            if waiting:
                time.sleep(_IN_FLIGHT_POLL_S)
        return late

    def producer(self) -> EventProducer:
        with self._lock:
            if self._producer is None:
                timeout_ms = int(self.settings.gateway.kafka_timeout_s * 1000)
                linger_ms = 2
                try:
                    self._producer = new_producer(  # type: ignore[assignment]
                        self.settings,
                        client_id="preuve-gateway",
                        linger_ms=linger_ms,
                        max_block_ms=timeout_ms,
                        request_timeout_ms=timeout_ms,
                        delivery_timeout_ms=timeout_ms + linger_ms,
                        bootstrap_timeout_ms=timeout_ms,
                    )
                except (BrokerError, KafkaError) as error:
                    raise self._unavailable(f"Kafka is not reachable: {error}") from None
            assert self._producer is not None
            return self._producer

    def _produce(self, items: Sequence[_Item]) -> None:
        if not items:
            return
        producer = self.producer()
        topic = self.settings.topics.events
        deadline = time.monotonic() + self.settings.gateway.kafka_timeout_s
        try:
            futures = [
                producer.send(topic, key=item.event.class_id.encode(), value=item.value)
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
        logger.warning("answering 503: %s", reason)
        return BatchRefused(
            503,
            [ItemProblem(None, None, reason)],
            headers={"Retry-After": str(self.settings.gateway.retry_after_s)},
        )

    def _set_state(self, event_ids: list[str], state: str) -> None:
        with self.engine.begin() as connection:
            for start in range(0, len(event_ids), _SQL_CHUNK):
                connection.execute(
                    sa.update(receipts)
                    .where(receipts.c.event_id.in_(event_ids[start : start + _SQL_CHUNK]))
                    .values(state=state)
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

    def close(self) -> None:
        with self._lock:
            if self._owns_producer and self._producer is not None:
                self._producer.close(timeout=self.settings.gateway.kafka_timeout_s)
                self._producer = None


def purge_receipts(engine: Engine, older_than: timedelta) -> int:
    """Delete receipts older than ``older_than``; returns how many were deleted."""
    cutoff = datetime.now(UTC) - older_than
    with engine.begin() as connection:
        result = connection.execute(sa.delete(receipts).where(receipts.c.received_at < cutoff))
    if result.rowcount:
        logger.info("purged %d gateway receipts older than %s", result.rowcount, cutoff.isoformat())
    return int(result.rowcount or 0)


def _native_event(raw: Any, index: int) -> UsageEvent:
    return parse_event(raw) if isinstance(raw, dict) else parse_event(json.dumps(raw))


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
        A kafka-python producer to write with (tests inject one; the caller closes it).
        None: the app creates one on first use (``acks=all``, idempotent) and closes it
        at shutdown.
    engine
        The registry engine (API keys, receipts). None: ``registry_engine(settings)``.

    Returns
    -------
    FastAPI
        The app; serve it with uvicorn (``preuve gateway``) or test it in process.

    Examples
    --------
    >>> from experiments.settings import Settings
    >>> import tempfile, pathlib
    >>> app = create_app(Settings(state_dir=pathlib.Path(tempfile.mkdtemp())))
    >>> sorted(app.openapi()["paths"])
    ['/healthz', '/v1/events', '/v1/xapi/statements']
    """
    gateway = _Gateway(
        settings, producer, engine if engine is not None else registry_engine(settings)
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        await run_in_threadpool(gateway.close)

    app = FastAPI(
        title="Preuve event gateway",
        version="1",
        summary="EdTech resources send pupils' usage events (contract v1 or xAPI).",
        description=(
            "Each EdTech company has an API key scoped to its `resource_id`. " + _ALL_OR_NOTHING
        ),
        lifespan=lifespan,
    )
    app.state.gateway = gateway

    @app.exception_handler(BatchRefused)
    async def _refused(_request: Request, refusal: BatchRefused) -> JSONResponse:
        body = Refusal(
            errors=[
                Problem(index=p.index, field=p.field, reason=p.reason) for p in refusal.problems
            ]
        )
        return JSONResponse(body.model_dump(), status_code=refusal.status, headers=refusal.headers)

    async def _accept(
        request: Request,
        bearer: HTTPAuthorizationCredentials | None,
        api_key: str | None,
        to_event: Callable[[Principal], Callable[[Any, int], UsageEvent]],
        resource_field: str = "resource_id",
    ) -> JSONResponse:
        principal = await run_in_threadpool(gateway.principal, bearer, api_key)
        body = await gateway.read_body(request)
        items = await run_in_threadpool(
            gateway.items, body, principal, to_event(principal), resource_field
        )
        outcome = await run_in_threadpool(gateway.accept, items)
        resources = sorted({item.event.resource_id for item in items})
        logger.info(
            "accepted %d events (%d duplicates) for %s",
            len(items),
            outcome.duplicates,
            ",".join(resources),
        )
        answer = Accepted(
            accepted=len(items),
            duplicates=outcome.duplicates,
            event_ids=[item.event_id for item in items],
        )
        return JSONResponse(answer.model_dump(), status_code=202)

    @app.post(
        "/v1/events",
        status_code=202,
        response_model=Accepted,
        responses=_REFUSALS,
        summary="Send one usage event or a batch (contract v1)",
        description="Body: one contract-v1 event, or a JSON array of them. " + _ALL_OR_NOTHING,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/UsageEvent"},
                                {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/UsageEvent"},
                                    "minItems": 1,
                                },
                            ]
                        }
                    }
                },
            }
        },
    )
    async def post_events(
        request: Request,
        bearer: _Bearer,
        api_key: _ApiKey,
    ) -> JSONResponse:
        return await _accept(request, bearer, api_key, lambda _principal: _native_event)

    @app.post(
        "/v1/xapi/statements",
        status_code=202,
        response_model=Accepted,
        responses=_REFUSALS,
        summary="Send xAPI statements (one or an array), mapped onto contract v1",
        description=(
            "The mapping is documented in docs/xapi-mapping.md: the actor is an `account` "
            "with a pseudonymous `name`; class and school come from context extensions or "
            "grouping activities; the resource is the API key's unless a context extension "
            "names it. " + _ALL_OR_NOTHING
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/XapiStatement"},
                                {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/XapiStatement"},
                                    "minItems": 1,
                                },
                            ]
                        }
                    }
                },
            }
        },
    )
    async def post_statements(
        request: Request,
        bearer: _Bearer,
        api_key: _ApiKey,
    ) -> JSONResponse:
        def to_event(principal: Principal) -> Callable[[Any, int], UsageEvent]:
            default = principal.scope if principal.role == "edtech" else None
            return lambda raw, _index: statement_to_event(raw, resource_id=default)

        return await _accept(
            request, bearer, api_key, to_event, f"context.extensions[{RESOURCE_EXTENSION}]"
        )

    @app.get("/healthz", summary="Liveness: the gateway process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

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
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def app_from_environment() -> FastAPI:
    """The app configured by ``PREUVE_*`` variables: the factory each worker process of
    ``preuve gateway --workers N`` calls (uvicorn imports it by name)."""
    from experiments.console import configure_logging

    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def openapi_document(settings: Settings | None = None) -> str:
    """The gateway's OpenAPI document as saved in ``ingest/schemas/gateway-openapi.json``."""
    app = create_app(settings or Settings(), producer=None, engine=sa.create_engine("sqlite://"))
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
