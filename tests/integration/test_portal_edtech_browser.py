"""The EdTech console end to end (issue 17): real Kafka, a real stream worker, the gateway,
and the portal in Debian's Chromium driven by Playwright.

Lectio's bad events take the dead-letter path through the broker: one breaks the
contract and one is not JSON at all, produced straight to Lectio's own topic (its SCRAM
user, as ``preuve events send --resource`` does); an event of a mistyped class goes
through the gateway and is parked. The worker records the dead letters in the registry's
index; the EdTech then signs in with the keyboard, lands on its console (not on a 403),
reads its accepted events per day, its refused events with their reasons and its own
payloads (learner id removed), and its parked class with how to fix it; the same dead
letters come from ``GET /v1/resources/lectio/deadletters``, and another resource's key
reads none. It creates a key (shown once), revokes it, and the gateway refuses it. Every
page passes axe-core (WCAG 2.1 A and AA) and the keyboard reaches its forms; the
accessibility statement and legal notices are linked from the footer and pass too.
Screenshots land in ``test-artifacts/portal-edtech-*.png``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn

from experiments.access import issue_token
from experiments.database import dispose_engines
from experiments.portal.app import create_portal
from experiments.settings import Settings
from ingest.deadletters import REMOVED, dead_letters_table
from ingest.gateway import create_app
from ingest.kafka.access import add_edtech, ensure_topics
from ingest.kafka.broker import free_port
from ingest.kafka.producer import send_raw_events
from ingest.stream.parking import count_parked
from tests.conftest import SettingsFactory
from tests.support.axe import axe_violations
from tests.support.portal import NOW, PortalWorld, build_world
from tests.support.postgres import wait_until
from tests.support.roles import AppClient
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
RAW_LEARNER = "lectio-eleve-8841"
MISTYPED = "cp-b-typo-2027"


@dataclass(frozen=True)
class Scene:
    base: str
    world: PortalWorld
    gateway: AppClient
    bad_event_id: str


def _event(**changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": str(uuid.uuid4()), "occurred_at": "2027-10-05T09:00:00+02:00",
        "resource_id": "lectio", "learner_id": RAW_LEARNER, "class_id": MISTYPED,
        "school_uai": "0780001C", "verb": "activity_completed",
    }
    event.update(changes)
    return event


@pytest.fixture
def scene(make_settings: SettingsFactory, tmp_path: Path) -> Iterator[Scene]:
    settings: Settings = make_settings(kafka=True)
    ensure_topics(settings)
    world = build_world(settings)
    add_edtech(settings, "lectio")
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_portal(settings, registry=world.registry, clock=lambda: NOW),
        host="127.0.0.1", port=port, log_level="warning", access_log=False,
    ))
    thread = threading.Thread(target=server.run, name="portal", daemon=True)
    try:
        with AppClient(create_app(settings, engine=world.registry)) as gateway:
            # Straight to Lectio's own topic: a contract breach (no verb) and a record
            # that is not JSON; through the gateway: an event of a class never enrolled.
            bad = _event(verb=None, class_id="cp-a")
            bad.pop("verb")
            send_raw_events(settings, [json.dumps(bad).encode(), b"Jeanne Dupont, CP-B"],
                            resource_id="lectio")
            sent = gateway.request("POST", "/v1/events", json=[_event(), _event()],
                                   headers={"X-API-Key": world.tokens["edtech"]})
            assert sent.status_code == 202, sent.text

            def indexed() -> int:
                with world.registry.connect() as connection:
                    return int(connection.scalar(
                        sa.select(sa.func.count()).select_from(dead_letters_table)) or 0)

            assert wait_until(lambda: indexed() >= 2 and count_parked(world.registry) >= 2,
                              120), (tmp_path / "worker.log").read_text()[-3000:]
            thread.start()
            deadline = time.monotonic() + 20
            while not server.started:
                assert thread.is_alive() and time.monotonic() < deadline, "no portal"
                time.sleep(0.05)
            yield Scene(f"http://127.0.0.1:{port}", world, gateway, str(bad["event_id"]))
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(timeout=10)
        assert worker.stop() == 0
        dispose_engines()


def _tab_to(page: Any, locator: Any, presses: int = 40) -> None:
    """Press Tab until ``locator`` has the focus (the keyboard reaches it)."""
    for _ in range(presses):
        if locator.evaluate("e => e === document.activeElement"):
            return
        page.keyboard.press("Tab")
    assert locator.evaluate("e => e === document.activeElement"), "not reached by Tab"


def test_an_edtech_reads_its_refused_and_parked_events_and_manages_its_keys(
        scene: Scene) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: run tools/install-system-deps.sh"
    base, world = scene.base, scene.world
    key = {"X-API-Key": world.tokens["edtech"]}

    # The API first: the same dead letters, newest first, the learner id removed.
    answer = scene.gateway.request("GET", "/v1/resources/lectio/deadletters", headers=key)
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert {i["code"] for i in items} == {"contract", "not_json"}
    contract = next(i for i in items if i["code"] == "contract")
    assert contract["event_id"] == scene.bad_event_id and contract["field"] == "verb"
    assert contract["reason"]["fr"].startswith("L'événement ne respecte pas le contrat v1")
    assert REMOVED in contract["payload"] and RAW_LEARNER not in answer.text
    assert next(i for i in items if i["code"] == "not_json")["payload"] is None
    assert "Jeanne" not in answer.text
    other = issue_token(world.registry, "edtech", "scriptum", "autre")
    assert scene.gateway.request("GET", "/v1/resources/lectio/deadletters",
                                 headers={"X-API-Key": other}).status_code == 404

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # bypass_csp: the portal forbids every script; axe-core is injected by the test.
            context = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 900},
                                          bypass_csp=True)
            page = context.new_page()

            # Sign in with the keyboard; the home page is the console, not a 403.
            page.goto(f"{base}/")
            page.get_by_label("Jeton d'accès").focus()
            page.keyboard.type(world.tokens["edtech"])
            page.keyboard.press("Enter")
            expect(page).to_have_url(f"{base}/ressource")
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Console de la ressource lectio")
            assert axe_violations(page) == []

            accepted = page.get_by_role("table", name="Événements acceptés par jour, du plus "
                                                      "récent au plus ancien")
            expect(accepted).to_contain_text("04/10/2027")
            refused = page.get_by_role("table", name="Événements refusés par motif")
            expect(refused).to_contain_text("contrat v1 non respecté")
            expect(refused).to_contain_text("message illisible")
            examples = page.get_by_role("table", name="Exemples : contrat v1 non respecté")
            expect(examples).to_contain_text(scene.bad_event_id)
            expect(examples).to_contain_text(REMOVED)
            parked = page.get_by_role("table", name="Événements en attente de l'inscription "
                                                    "de leur classe")
            expect(parked.get_by_role("row").filter(has_text=MISTYPED)).to_contain_text("2")
            expect(page.get_by_text("faute de frappe")).to_be_visible()
            text = page.content()
            assert RAW_LEARNER not in text and "Jeanne" not in text
            assert not any(k in text for k in world.learner_keys)
            page.screenshot(path=str(ARTIFACTS / "portal-edtech-console.png"), full_page=True)

            # Its keys: the keyboard reaches the form; a new key is shown once.
            page.get_by_role("link", name="Mes clés d'API").click()
            expect(page).to_have_url(f"{base}/ressource/cles")
            assert axe_violations(page) == []
            page.keyboard.press("Tab")
            expect(page.get_by_role("link", name="Aller au contenu")).to_be_focused()
            name_field = page.get_by_label("Nom de la clé")
            _tab_to(page, name_field)
            page.keyboard.type("serveur de production")
            page.keyboard.press("Enter")
            secret_box = page.locator('[data-role="new-key"]')
            expect(secret_box).to_have_text(re.compile(r"^pv_edtech_"))
            new_key = secret_box.inner_text().strip()
            assert axe_violations(page) == []
            page.screenshot(path=str(ARTIFACTS / "portal-edtech-keys.png"), full_page=True)
            assert scene.gateway.request(
                "POST", "/v1/events:validate", json=[_event()],
                headers={"X-API-Key": new_key}).json()["valid"] == 1
            page.goto(f"{base}/ressource/cles")
            assert new_key not in page.content()  # never shown again

            # Revoke it (keyboard: Tab to its button, Enter): the gateway refuses it.
            prefix = hashlib.sha256(new_key.encode()).hexdigest()[:12]
            revoke = page.get_by_role("button", name=re.compile(f"Révoquer la clé .*{prefix}"))
            _tab_to(page, revoke, presses=60)
            page.keyboard.press("Enter")
            expect(page.get_by_role("status")).to_contain_text(f"La clé {prefix} est révoquée")
            row = page.get_by_role("row").filter(has_text=prefix)
            expect(row).to_contain_text("révoquée")
            assert scene.gateway.request(
                "POST", "/v1/events", json=[_event()],
                headers={"X-API-Key": new_key}).status_code == 401

            # The footer's accessibility statement and legal notices.
            page.get_by_role("link", name="Accessibilité : non conforme").click()
            expect(page).to_have_url(f"{base}/accessibilite")
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Déclaration d'accessibilité")
            expect(page.get_by_role("heading", name="État de conformité")).to_be_visible()
            expect(page.get_by_role("heading", name="Voies de recours")).to_be_visible()
            assert axe_violations(page) == []
            page.screenshot(path=str(ARTIFACTS / "portal-accessibilite.png"), full_page=True)
            page.get_by_role("link", name="Mentions légales").click()
            expect(page).to_have_url(f"{base}/mentions-legales")
            assert axe_violations(page) == []
            page.goto(f"{base}/ressource?lang=en")
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Console of resource lectio")
            assert axe_violations(page) == []
        finally:
            browser.close()
