"""Refused sign-ins to the portal: each one is an INFO line and an audit entry, an address
that keeps failing must wait (429, its token not even looked up) until its window ends,
and a flood from many addresses cannot flood the audit log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import anyio
import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.orm import Session

from experiments.access import AuditEntry, issue_token
from experiments.database import dispose_engines, migrate_all, registry_engine
from experiments.portal.app import SESSION_COOKIE, create_portal
from experiments.settings import PortalSettings, Settings


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2028, 1, 10, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _sign_in(app: FastAPI, address: str, token: str) -> httpx.Response:
    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://portal") as client:
            return await client.post(
                "/connexion", content=urlencode({"csrf": "c", "token": token}).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded",
                         "Cookie": "preuve_login_csrf=c"})

    return anyio.run(post)


def _audit(settings: Settings) -> list[tuple[str, str]]:
    with Session(registry_engine(settings)) as session:
        rows = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action.like("portal.sign_in%")).order_by(AuditEntry.id)).all()
        return [(row.action, row.actor) for row in rows]


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(state_dir=tmp_path, portal=PortalSettings(
        sign_in_failures=3, sign_in_window_s=300, audit_refusals_per_minute=5))
    migrate_all(settings)  # `preuve db migrate`: the portal never migrates
    yield settings
    dispose_engines()


def test_refused_sign_ins_are_logged_audited_and_throttled_per_address(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    app = create_portal(settings, clock=clock)
    good = issue_token(registry_engine(settings), "officer", "*")
    with caplog.at_level(logging.INFO, logger="experiments.portal"):
        statuses = [_sign_in(app, "198.51.100.1", f"pv_guess_{i}").status_code for i in range(3)]
    assert statuses == [401, 401, 401]
    assert [r.getMessage() for r in caplog.records].count(
        "portal: sign-in refused from 198.51.100.1 (unknown or revoked token; 3 in 300s)") == 1
    throttled = _sign_in(app, "198.51.100.1", good)
    assert throttled.status_code == 429, "a throttled address had its token looked up"
    assert int(throttled.headers["Retry-After"]) == 300
    assert SESSION_COOKIE not in throttled.cookies
    assert _sign_in(app, "198.51.100.2", good).status_code == 303, "another address waits"
    actor = "anonymous:198.51.100.1:portal"
    assert _audit(settings) == [("portal.sign_in_refused", actor)] * 3 + [
        ("portal.sign_in_throttled", actor), ("portal.sign_in", "officer:*:*")]
    clock.now += timedelta(seconds=301)
    assert _sign_in(app, "198.51.100.1", good).status_code == 303, "the window ended"


def test_a_flood_from_many_addresses_cannot_flood_the_audit_log(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_portal(settings, clock=Clock())
    with caplog.at_level(logging.INFO, logger="experiments.portal"):
        for i in range(40):
            assert _sign_in(app, f"203.0.113.{i}", "pv_guess").status_code == 401
    assert len(_audit(settings)) == 5, "at most audit_refusals_per_minute entries a minute"
    assert any("more than 5 refused sign-ins this minute" in r.getMessage()
               for r in caplog.records)
