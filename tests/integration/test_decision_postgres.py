"""The officer's acknowledgement with the portal's own PostgreSQL role (issue 19): the
portal reads with a read-only role (:mod:`experiments.database_roles`) whose only writes
are its audit entries, an EdTech's keys and the acknowledgement of a post-experiment
decision; the acknowledgement works through the portal, while the portal's role may
still neither record a decision nor change the experiment's state."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from experiments.closing import latest_decision, record_decision
from experiments.database import dispose_engines, migrate_all, registry_engine
from experiments.database_roles import OWNER
from experiments.portal.app import create_portal
from experiments.registry import transition_experiment
from experiments.settings import Settings
from tests.integration.test_database_roles import _create_roles, _refused, _with_role
from tests.support.portal import CSRF, EXPERIMENT, NOW, PortalClient, build_world

pytestmark = pytest.mark.integration


def test_the_portal_role_acknowledges_and_nothing_more(
        make_settings: Callable[..., Settings], postgres_url: str) -> None:
    _create_roles(postgres_url)
    owner = _with_role(make_settings(), postgres_url, OWNER)
    migrate_all(owner)
    world = build_world(owner)
    registry = registry_engine(owner)
    transition_experiment(registry, EXPERIMENT, "analysing")
    record = record_decision(registry, EXPERIMENT, "prolonger",
                             "Une année de plus pour mesurer l'effet au CE1.",
                             "researcher:*:test")

    portal_settings = _with_role(owner, postgres_url, "preuve_portal")
    client = PortalClient(create_portal(portal_settings, clock=lambda: NOW))
    try:
        officer = client.sign_in(world.tokens["officer"])
        page = client.request("GET", f"/experiences/{EXPERIMENT}/decision", officer)
        assert page.status_code == 200 and "prolonger" in page.text
        csrf = CSRF.search(page.text)
        assert csrf is not None
        answer = client.request(
            "POST", f"/experiences/{EXPERIMENT}/decision", officer,
            content=urlencode({"csrf": csrf.group(1), "decision_id": str(record.id)}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 303, answer.text
    finally:
        client.close()
    acknowledged = latest_decision(registry, EXPERIMENT)
    assert acknowledged is not None and acknowledged.acknowledged_by is not None
    portal = registry_engine(portal_settings)
    with portal.connect() as connection:
        actions = set(connection.execute(sa.text("SELECT action FROM audit_log")).scalars())
    assert "experiment.decision_acknowledgement" in actions
    for statement in (
        "INSERT INTO post_experiment_decisions (experiment_id, decision, reason, decided_at, "
        "decided_by) VALUES ('x', 'arreter', 'forged by the portal', now(), 'x')",
        "DELETE FROM post_experiment_decisions",
        "UPDATE experiments SET state = 'closed'",
    ):
        _refused(portal, statement)
    dispose_engines()
