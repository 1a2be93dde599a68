"""The EdTech console (issue 17) in process: its home page works, it shows its own
resource's accepted, refused and parked events and nothing of another resource, keys are
created (the secret shown once) and revoked (the gateway refuses them at once); the
dead-letter API is cursor-paginated and scoped; the validate-only endpoints store
nothing; the accessibility and legal pages are public and in every footer."""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa

from experiments.access import AuditEntry, issue_token
from experiments.database import dispose_engines
from experiments.portal.app import create_portal
from experiments.settings import Settings
from ingest.deadletters import (
    REMOVED,
    DeadLetterRow,
    dead_letters_table,
    forget_old_dead_letters,
    record_dead_letters,
)
from ingest.gateway import create_app
from ingest.receipts import receipts as receipts_table
from ingest.stream.parking import ParkedEvent, park
from ingest.xapi import CLASS_EXTENSION, SCHOOL_EXTENSION
from tests.conftest import SIMULATED_NOW
from tests.support.portal import CSRF, NOW, PortalClient, PortalWorld, build_world
from tests.support.roles import AppClient

RAW_LEARNER = "eleve-raw-4242"
MISTYPED_CLASS = "cp-a-mistyped"
OTHER_CLASS = "cp-scriptum-secret"


def _row(source: str, resource: str, code: str, reason_en: str, reason_fr: str,
         payload: dict[str, object] | None, minutes_ago: int = 0) -> DeadLetterRow:
    from ingest.deadletters import safe_payload

    kept = safe_payload(json.dumps(payload).encode())[0] if payload is not None else None
    return DeadLetterRow(source=source, resource_id=resource, code=code, field="verb",
                         event_id=str(uuid.uuid4()), reason_en=reason_en, reason_fr=reason_fr,
                         payload=kept,
                         received_at=datetime.now(UTC) - timedelta(minutes=minutes_ago))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, PortalWorld]]:
    settings = Settings(state_dir=tmp_path_factory.mktemp("edtech"),
                        pseudonym_key="edtech-portal-key" * 3, simulated_now=SIMULATED_NOW)
    w = build_world(settings)
    rows = [_row(f"preuve.events/0/{i}", "lectio", "contract", f"bad verb {i}",
                 f"verbe invalide {i}", {"learner_id": RAW_LEARNER, "verb": f"bad-{i}",
                                         "resource_id": "lectio"}, minutes_ago=i)
            for i in range(5)]
    rows.append(_row("preuve.events/1/0", "lectio", "other_school", "school_uai X is not",
                     "l'école X n'est pas celle", {"learner_id": RAW_LEARNER}))
    rows.append(_row("preuve.events/1/1", "scriptum", "future", "scriptum secret reason",
                     "raison secrète de scriptum", {"class_id": OTHER_CLASS}))
    record_dead_letters(w.registry, rows)
    record_dead_letters(w.registry, rows[:2])  # recorded twice (a re-delivered batch): once
    now = datetime.now(UTC)
    park(w.registry, [ParkedEvent(str(uuid.uuid4()), MISTYPED_CLASS, "lectio", "preuve.events",
                                  0, 100 + i) for i in range(3)], now)
    park(w.registry, [ParkedEvent(str(uuid.uuid4()), OTHER_CLASS, "scriptum", "preuve.events",
                                  0, 200)], now)
    try:
        yield settings, w
    finally:
        dispose_engines()


@pytest.fixture(scope="module")
def client(world: tuple[Settings, PortalWorld]) -> Iterator[PortalClient]:
    settings, w = world
    client = PortalClient(create_portal(settings, registry=w.registry, clock=lambda: NOW))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def gateway(world: tuple[Settings, PortalWorld]) -> Iterator[AppClient]:
    settings, w = world
    with AppClient(create_app(settings, engine=w.registry)) as app:
        yield app


def _post_form(client: PortalClient, url: str, cookies: dict[str, str],
               fields: dict[str, str]) -> httpx.Response:
    return client.request("POST", url, cookies, content=urlencode(fields).encode(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})


def _csrf(client: PortalClient, cookies: dict[str, str]) -> str:
    match = CSRF.search(client.request("GET", "/ressource/cles", cookies).text)
    assert match is not None
    return match.group(1)


def test_an_edtech_home_leads_to_its_console_not_to_a_403(
        world: tuple[Settings, PortalWorld], client: PortalClient) -> None:
    _, w = world
    edtech = client.sign_in(w.tokens["edtech"])
    home = client.request("GET", "/", edtech)
    assert home.status_code == 303 and home.headers["location"] == "/ressource"
    page = client.request("GET", "/ressource", edtech)
    assert page.status_code == 200
    assert 'href="/ressource"' in page.text and "Ma ressource" in page.text
    # A refusal page's "Accueil" link leads to the console too, not to the same 403.
    refused = client.request("GET", "/experiences", edtech)
    assert refused.status_code == 403 and 'href="/"' in refused.text


def test_the_console_shows_its_own_resource_only(
        world: tuple[Settings, PortalWorld], client: PortalClient) -> None:
    _, w = world
    page = client.request("GET", "/ressource", client.sign_in(w.tokens["edtech"])).text
    # Accepted events per day: the world stored lectio events on 2027-10-04 and after.
    assert "04/10/2027" in page
    # Refused, by reason, with its own payloads, learner id removed.
    assert "contrat v1 non respecté" in page and "verbe invalide 4" in page
    assert "école différente de celle de la classe" in page
    assert REMOVED in page and RAW_LEARNER not in page
    # Parked, by class, with how to fix it.
    assert MISTYPED_CLASS in page and "faute de frappe" in page
    # Nothing of another resource, nothing of a learner.
    for secret in (OTHER_CLASS, "scriptum secret reason", "raison secrète", *w.learner_keys):
        assert secret not in page
    english = client.request("GET", "/ressource?lang=en",
                             client.sign_in(w.tokens["edtech"])).text
    assert "bad verb 4" in english and "Waiting events, by class" in english


def test_other_roles_do_not_reach_the_console(
        world: tuple[Settings, PortalWorld], client: PortalClient) -> None:
    _, w = world
    for who in ("officer", "academie_a", "researcher", "admin"):
        cookies = client.sign_in(w.tokens[who])
        for url in ("/ressource", "/ressource/cles"):
            assert client.request("GET", url, cookies).status_code == 403, (who, url)
    assert client.request("GET", "/ressource").status_code == 302


def test_a_key_is_shown_once_and_revoking_it_closes_the_gateway(
        world: tuple[Settings, PortalWorld], client: PortalClient, gateway: AppClient) -> None:
    _, w = world
    edtech = client.sign_in(w.tokens["edtech"])
    csrf = _csrf(client, edtech)
    created = _post_form(client, "/ressource/cles", edtech,
                         {"csrf": csrf, "label": "serveur de production"})
    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    secret = re.search(r'data-role="new-key">(pv_edtech_[^<]+)<', created.text)
    assert secret is not None
    key = secret.group(1)
    # Never again: the list shows a prefix of its hash only.
    listing = client.request("GET", "/ressource/cles", edtech).text
    assert key not in listing and "serveur de production" in listing
    # The new key works at the gateway (validate-only: nothing is written).
    event = _event("lectio")
    ok = gateway.request("POST", "/v1/events:validate", json=[event], headers={"X-API-Key": key})
    assert ok.status_code == 200 and ok.json()["valid"] == 1
    # Revoke it: the gateway refuses it at once, and both acts are audited in its name.
    import hashlib

    prefix = hashlib.sha256(key.encode()).hexdigest()[:12]
    revoked = _post_form(client, "/ressource/cles/revocation", edtech,
                         {"csrf": csrf, "cle": prefix})
    assert revoked.status_code == 200
    assert gateway.request("POST", "/v1/events:validate", json=[event],
                        headers={"X-API-Key": key}).status_code == 401
    with sa.orm.Session(w.registry) as session:
        actions = [(e.actor.split(":")[0], e.action) for e in session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action.in_(["token.issue", "token.revoke"]),
                                        AuditEntry.subject == "edtech:lectio"))]
    assert ("edtech", "token.issue") in actions and ("edtech", "token.revoke") in actions


def test_keys_of_another_resource_cannot_be_revoked_and_forms_need_their_csrf(
        world: tuple[Settings, PortalWorld], client: PortalClient, gateway: AppClient) -> None:
    _, w = world
    other = issue_token(w.registry, "edtech", "scriptum", "autre")
    import hashlib

    prefix = hashlib.sha256(other.encode()).hexdigest()[:12]
    edtech = client.sign_in(w.tokens["edtech"])
    assert prefix not in client.request("GET", "/ressource/cles", edtech).text
    csrf = _csrf(client, edtech)
    answer = _post_form(client, "/ressource/cles/revocation", edtech,
                        {"csrf": csrf, "cle": prefix})
    assert answer.status_code == 404
    forged = _post_form(client, "/ressource/cles", edtech, {"csrf": "x", "label": "forged"})
    assert forged.status_code == 403
    named = _post_form(client, "/ressource/cles", edtech,
                       {"csrf": csrf, "label": "jeanne@example.org"})
    assert named.status_code == 400
    event = _event("scriptum")
    assert gateway.request("POST", "/v1/events:validate", json=[event],
                        headers={"X-API-Key": other}).json()["valid"] == 1


def _event(resource: str, **changes: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": str(uuid.uuid4()), "occurred_at": "2027-10-04T09:00:00+02:00",
        "resource_id": resource, "learner_id": "l" * 16, "class_id": "cp-a",
        "school_uai": "0780001C", "verb": "activity_completed",
    }
    event.update(changes)
    return event


def test_validate_only_gives_verdicts_and_stores_nothing(
        world: tuple[Settings, PortalWorld], gateway: AppClient) -> None:
    _, w = world
    key = {"X-API-Key": w.tokens["edtech"]}
    with w.registry.connect() as connection:
        before = connection.scalar(sa.select(sa.func.count()).select_from(receipts_table))
    batch = [_event("lectio"), _event("lectio", verb=""), _event("scriptum"),
             _event("lectio", occurred_at="2031-01-01T00:00:00+00:00")]
    answer = gateway.request("POST", "/v1/events:validate", json=batch, headers=key)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["valid"], body["refused"]) == (1, 3)
    verdicts = body["verdicts"]
    assert [v["valid"] for v in verdicts] == [True, False, False, False]
    assert verdicts[1]["problems"][0]["field"] == "verb"
    assert verdicts[2]["problems"][0]["field"] == "resource_id"
    assert verdicts[3]["problems"][0]["field"] == "occurred_at"
    statement = {
        "actor": {"account": {"homePage": "https://lectio.example", "name": "l" * 16}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
        "object": {"id": "https://lectio.example/lecture-1"},
        "timestamp": "2027-10-04T09:00:00+02:00",
        "context": {"extensions": {
            CLASS_EXTENSION: "cp-a", SCHOOL_EXTENSION: "0780001C"}},
    }
    xapi = gateway.request("POST", "/v1/xapi/statements:validate", json=[statement, {"verb": 1}],
                        headers=key)
    assert xapi.status_code == 200, xapi.text
    assert [v["valid"] for v in xapi.json()["verdicts"]] == [True, False], xapi.text
    with w.registry.connect() as connection:
        after = connection.scalar(sa.select(sa.func.count()).select_from(receipts_table))
    assert after == before  # no receipt: nothing was claimed, nothing produced
    assert gateway.request("POST", "/v1/events:validate", json=batch).status_code == 401
    assert gateway.request("POST", "/v1/events:validate", json=batch, headers={
        "X-API-Key": w.tokens["officer"]}).status_code == 403


def test_dead_letters_api_is_paginated_and_scoped(
        world: tuple[Settings, PortalWorld], gateway: AppClient) -> None:
    _, w = world
    key = {"X-API-Key": w.tokens["edtech"]}
    seen: list[dict[str, object]] = []
    cursor: str | None = None
    for _ in range(10):
        url = "/v1/resources/lectio/deadletters?limit=2" + (f"&cursor={cursor}" if cursor else "")
        answer = _get(gateway, url, key)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6  # five contract breaches and one other school, each once
    assert len({item["id"] for item in seen}) == 6
    assert all(RAW_LEARNER not in json.dumps(item) for item in seen)
    assert {item["code"] for item in seen} == {"contract", "other_school"}
    assert seen[0]["reason"]["fr"] and seen[0]["reason"]["en"]
    assert _get(gateway, "/v1/resources/scriptum/deadletters", key).status_code == 404
    assert _get(gateway, "/v1/resources/lectio/deadletters?cursor=abc", key).status_code == 400
    assert _get(gateway, "/v1/resources/lectio/deadletters",
                {"X-API-Key": w.tokens["academie_a"]}).status_code == 403
    admin = _get(gateway, "/v1/resources/scriptum/deadletters",
                 {"X-API-Key": w.tokens["admin"]})
    assert admin.status_code == 200 and len(admin.json()["items"]) == 1


def _get(gateway: AppClient, url: str, headers: dict[str, str]) -> httpx.Response:
    return gateway.request("GET", url, headers=headers)


def test_dead_letters_are_forgotten_after_the_retention() -> None:
    engine = sa.create_engine("sqlite://")
    dead_letters_table.create(engine)
    old = _row("t/0/1", "lectio", "future", "old", "vieux", None, minutes_ago=60 * 24 * 40)
    new = _row("t/0/2", "lectio", "future", "new", "nouveau", None)
    record_dead_letters(engine, [old, new])
    assert forget_old_dead_letters(engine, datetime.now(UTC) - timedelta(days=30)) == 1
    with engine.connect() as connection:
        assert list(connection.scalars(sa.select(dead_letters_table.c.reason_en))) == ["new"]


def test_accessibility_and_legal_pages_are_public_and_in_every_footer(
        world: tuple[Settings, PortalWorld], client: PortalClient) -> None:
    _, w = world
    statement = client.request("GET", "/accessibilite")
    assert statement.status_code == 200
    for words in ("Déclaration d'accessibilité", "État de conformité", "non conforme",
                  "Voies de recours", "Défenseur des droits", "Retour d'information et contact"):
        assert words in html.unescape(statement.text), words
    legal = client.request("GET", "/mentions-legales")
    assert legal.status_code == 200 and "Mentions légales" in legal.text
    assert "Accessibility statement" in client.request("GET", "/accessibilite?lang=en").text
    pages = [("/connexion", {}), ("/ressource", client.sign_in(w.tokens["edtech"])),
             ("/experiences", client.sign_in(w.tokens["officer"])),
             ("/usages", client.sign_in(w.tokens["academie_a"]))]
    for url, cookies in pages:
        text = client.request("GET", url, cookies).text
        assert 'href="/accessibilite"' in text and 'href="/mentions-legales"' in text, url
        assert "Accessibilité : non conforme" in text, url
