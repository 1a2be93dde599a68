"""The portal over PostgreSQL (the production store): the same registry, runs and
stores as the unit tests, read through the portal's JSON endpoints."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from experiments.portal.app import create_portal
from experiments.settings import Settings
from tests.support.portal import EXPERIMENT, NOW, PortalClient, build_world

pytestmark = pytest.mark.integration


def test_portal_reads_registry_runs_and_usage_on_postgres(
        make_settings: Callable[..., Settings], postgres_url: str) -> None:
    settings = make_settings(database_url=postgres_url)
    world = build_world(settings)
    client = PortalClient(create_portal(settings, registry=world.registry, clock=lambda: NOW))
    try:
        officer = client.sign_in(world.tokens["officer"])
        portfolio = client.request("GET", "/api/experiences", officer).json()
        assert [e["id"] for e in portfolio] == [EXPERIMENT]
        assert portfolio[0]["verdict"]["kind"] == "effect"
        assert portfolio[0]["next_analysis"]["analysis"] == "interim"
        page = client.request("GET", f"/experiences/{EXPERIMENT}", officer).text
        assert all(run.run_id in page for run in world.runs)
        academie = client.sign_in(world.tokens["academie_a"])
        usage = client.request("GET", f"/api/usages/{EXPERIMENT}", academie).json()
        assert {c["class_id"] for c in usage["classes"]} == set(world.class_ids["versailles"])
        assert usage["weeks"] == ["2027-10-04", "2027-10-11"]
        assert client.request("GET", f"/api/usages/{EXPERIMENT}", officer).status_code == 403
    finally:
        client.close()
