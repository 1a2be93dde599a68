"""Bounded requests on every app (gateway events, enrollment API, portal): a body is read
only after the caller's token is checked, never beyond its route's cap, never for longer
than the body timeout; a malformed form is a 400; a registry or Kafka outage is a 503
whose body names no host or user.

The apps are driven as ASGI callables with a ``receive`` that counts the bytes it hands
out: the assertions are on bytes read, not on memory or time.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from kafka.errors import KafkaTimeoutError

from experiments.access import issue_token
from experiments.database import dispose_engines, migrate_all, registry_engine
from experiments.portal.app import create_portal
from experiments.settings import GatewaySettings, PortalSettings, ServerSettings, Settings
from ingest.gateway import create_app
from tests.conftest import SIMULATED_NOW
from tests.support.events import valid_event

CHUNK = 64 * 1024
HUNDRED_MB = 100 * 1024 * 1024


class Body:
    """An endless (or dripped) request body that counts what the app read of it."""

    def __init__(self, *, drip: bool = False) -> None:
        self.drip = drip
        self.bytes_read = 0
        self.reads = 0

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        if self.drip and self.reads > 1:
            await anyio.sleep_forever()  # the next byte never comes
        chunk = b"x" if self.drip else b"{" * CHUNK
        self.bytes_read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}


def _call(app: FastAPI, method: str, path: str, body: Body,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Run one request through ``app``; the status and the answer's body."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("192.0.2.7", 50000), "server": ("testserver", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    answer: dict[str, Any] = {"status": 0, "body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    anyio.run(app, scope, body.receive, send)
    return answer["status"], answer["body"]


class NoProducer:
    """A producer that must not be reached (every request here stops before Kafka)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> Any:
        raise KafkaTimeoutError("broker kafka-internal.example:9093 did not answer")

    def close(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    server = ServerSettings(body_timeout_s=0.2)
    settings = Settings(state_dir=tmp_path / "state", gateway=GatewaySettings(server=server),
                        simulated_now=SIMULATED_NOW,  # the events of 2027-2028
                        portal=PortalSettings(server=server))
    migrate_all(settings)  # `preuve db migrate`: the portal never migrates
    yield settings
    dispose_engines()


@pytest.fixture
def gateway(settings: Settings) -> FastAPI:
    return create_app(settings, producer=NoProducer())


API_ROUTES = ["/v1/events", "/v1/xapi/statements",
              "/v1/experiments/fluence-cp-2027/enrollments",
              "/v1/experiments/fluence-cp-2027/withdrawals",
              "/v1/experiments/fluence-cp-2027/assignments"]


@pytest.mark.parametrize("path", API_ROUTES)
def test_an_endless_body_without_a_token_is_refused_unread(gateway: FastAPI, path: str) -> None:
    body = Body()
    status, answer = _call(gateway, "POST", path, body, {"Content-Type": "application/json"})
    assert status == 401, answer
    assert body.bytes_read == 0, "the body was read before the token was checked"
    assert json.loads(answer)["errors"][0]["field"] == "Authorization"


@pytest.mark.parametrize("path", API_ROUTES)
def test_a_dripped_body_without_a_token_is_refused_at_once(gateway: FastAPI, path: str) -> None:
    body = Body(drip=True)
    status, _ = _call(gateway, "POST", path, body, {"Content-Type": "application/json"})
    assert status == 401, "the gateway waited for the body (a 408) instead of refusing"
    assert body.reads == 0


def test_a_declared_oversized_body_is_a_413_before_anything_is_read(gateway: FastAPI) -> None:
    body = Body()
    status, answer = _call(gateway, "POST", "/v1/events", body,
                           {"Content-Length": str(HUNDRED_MB)})
    assert status == 413 and body.bytes_read == 0
    assert str(HUNDRED_MB) in json.loads(answer)["detail"]


def test_an_authenticated_endless_body_is_cut_at_the_cap(
    gateway: FastAPI, settings: Settings
) -> None:
    key = issue_token(registry_engine(settings), "edtech", "lectio")
    caps = {"/v1/events": settings.gateway.max_batch_bytes,
            "/v1/experiments/fluence-cp-2027/enrollments": settings.gateway.server.max_upload_bytes,
            "/v1/experiments/fluence-cp-2027/withdrawals": 16 * 1024}
    for path, cap in caps.items():
        body = Body()
        status, answer = _call(gateway, "POST", path, body, {"Authorization": f"Bearer {key}"})
        assert status == 413, (path, answer)
        assert cap < body.bytes_read <= cap + CHUNK, (path, body.bytes_read)


def test_an_authenticated_dripped_body_is_a_408(gateway: FastAPI, settings: Settings) -> None:
    key = issue_token(registry_engine(settings), "edtech", "lectio")
    body = Body(drip=True)
    status, _ = _call(gateway, "POST", "/v1/events", body, {"X-API-Key": key})
    assert status == 408 and body.bytes_read == 1


def test_the_portal_caps_and_times_its_sign_in_form(settings: Settings) -> None:
    portal = create_portal(settings)
    endless = Body()
    status, _ = _call(portal, "POST", "/connexion", endless,
                      {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 413
    assert settings.portal.server.max_form_bytes < endless.bytes_read <= CHUNK
    dripped = Body(drip=True)
    status, _ = _call(portal, "POST", "/connexion", dripped)
    assert status == 408 and dripped.bytes_read == 1
    declared = Body()
    status, _ = _call(portal, "POST", "/connexion", declared, {"Content-Length": "5000"})
    assert status == 413 and declared.bytes_read == 0
    signed_out = Body()
    status, _ = _call(portal, "POST", "/deconnexion", signed_out)
    assert status == 303 and signed_out.bytes_read == 0, "read before the session was checked"


class Form:
    """A whole form body, in one message."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.bytes_read = 0

    async def receive(self) -> dict[str, Any]:
        self.bytes_read += len(self.content)
        return {"type": "http.request", "body": self.content, "more_body": False}


def test_a_form_with_nine_fields_is_a_400_not_a_500(settings: Settings) -> None:
    portal = create_portal(settings)
    fields = urlencode({f"f{i}": "x" for i in range(9)}).encode()
    status, answer = _call(portal, "POST", "/connexion", Form(fields),  # type: ignore[arg-type]
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400, answer[:300]
    assert b"Traceback" not in answer


UNREACHABLE = "postgresql+psycopg://secret_owner:pw@127.0.0.1:9/preuve_registry"


def test_a_registry_outage_is_a_generic_503(settings: Settings) -> None:
    engine = sa.create_engine(UNREACHABLE, connect_args={"connect_timeout": 2})
    gateway = create_app(settings, producer=NoProducer(), engine=engine)
    portal = create_portal(settings, registry=engine)
    answers = [
        _call(gateway, "POST", "/v1/events", Form(b"{}"), {"X-API-Key": "pv_edtech_x"}),
        _call(gateway, "GET", "/v1/experiments/x/enrollments", Form(b""),
              {"Authorization": "Bearer pv_academie_x"}),
        _call(portal, "GET", "/api/experiences", Form(b""),
              {"Cookie": "preuve_session=s"}),
    ]
    for status, answer in answers[:2]:
        assert status == 503, answer
        assert b"secret_owner" not in answer and b"127.0.0.1" not in answer, answer
        assert json.loads(answer)["detail"] == "the registry is unavailable; retry later"
    # The portal's sessions live in memory: no session, no registry question (401).
    assert answers[2][0] == 401


def test_a_kafka_outage_is_a_generic_503(gateway: FastAPI, settings: Settings) -> None:
    key = issue_token(registry_engine(settings), "edtech", "lectio")
    event = json.dumps(valid_event(random.Random(1), "c1", resource_id="lectio")).encode()
    status, answer = _call(gateway, "POST", "/v1/events", Form(event),  # type: ignore[arg-type]
                           {"X-API-Key": key, "Content-Type": "application/json"})
    assert status == 503, answer
    assert b"kafka-internal" not in answer and b"9093" not in answer, answer
    assert "retry" in json.loads(answer)["detail"]


def test_a_json_body_that_is_not_utf8_is_a_422_not_a_500(
    gateway: FastAPI, settings: Settings
) -> None:
    token = issue_token(registry_engine(settings), "academie", "versailles")
    status, answer = _call(gateway, "POST", "/v1/experiments/x/withdrawals",
                           Form(b"\x80"),  # type: ignore[arg-type]
                           {"Authorization": f"Bearer {token}"})
    assert status == 422, answer
    assert json.loads(answer)["errors"][0]["reason"].startswith("Invalid JSON")


def test_the_services_run_uvicorn_with_their_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging
    import os

    import uvicorn
    from typer.testing import CliRunner

    from experiments.cli.app import app as preuve

    started: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda _app, **options: started.append(options))
    umask, level = os.umask(0o022), logging.getLogger().level
    try:
        env = {"PREUVE_STATE_DIR": str(tmp_path), "PREUVE_PORTAL__SERVER__MAX_CONNECTIONS": "7",
               "PREUVE_GATEWAY__SERVER__KEEP_ALIVE_S": "3"}
        for command in (["db", "migrate"], ["serve"], ["gateway"]):
            result = CliRunner().invoke(preuve, command, env=env)
            assert result.exit_code == 0, result.output
    finally:
        os.umask(umask)
        logging.getLogger().setLevel(level)
        dispose_engines()
    serve, gateway = started
    assert (serve["limit_concurrency"], serve["timeout_keep_alive"]) == (7, 5)
    assert (gateway["limit_concurrency"], gateway["timeout_keep_alive"]) == (200, 3)
    assert serve["forwarded_allow_ips"] == gateway["forwarded_allow_ips"] == "127.0.0.1"


def _routes(routes: Any) -> Iterator[Any]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI >= 0.16x
        yield from (_routes(included.routes) if included is not None else [route])


def test_no_route_has_a_body_that_fastapi_would_read_before_the_token(
    gateway: FastAPI, settings: Settings
) -> None:
    # FastAPI reads and parses a body parameter before it solves any dependency, the
    # authentication included: routes read their bodies themselves, after it.
    for app in (gateway, create_portal(settings)):
        with_body = [r.path for r in _routes(app.routes) if getattr(r, "body_field", None)]
        assert not with_body, with_body
