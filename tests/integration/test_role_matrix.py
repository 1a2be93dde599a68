"""Role matrix: every HTTP route and every ``preuve`` command × every caller.

What it checks, against running code (registry and stores on PostgreSQL, events to the
real broker):

- every route served by the gateway (event API and enrollment API) and by the portal has
  a row below, and every leaf command of ``preuve`` an entry in :data:`CLI_ACCESS`: a new
  route or command fails :func:`test_every_route_is_in_the_matrix` /
  :func:`test_every_command_is_in_the_matrix` until someone says who may call it;
- each caller gets exactly the declared status (401 no valid token, 403 a role or scope
  that may not, 404 where telling "not yours" from "does not exist" would let a caller
  probe another académie's classes);
- no answer holds a learner key; nothing an officer or an EdTech receives holds a class
  it may not know; nothing an académie receives holds another académie's class;
  usage cells under 10 pupils are suppressed;
- every allowed write leaves an audit entry naming the caller, and a refused write
  leaves nothing (no row, no audit entry, no event in the topic).

How the CLI is authorised: commands that act on the registry open it with the
deployment's database credentials (``PREUVE_DATABASE_URL``, or the files of
``PREUVE_STATE_DIR``). Holding them *is* the administrator role: a token gives no CLI
rights, and a caller without the credentials is refused by the database itself
(:func:`test_registry_commands_are_refused_without_the_registry_credentials`).
Académies, EdTechs, researchers and officers use the HTTP API and the portal, whose
tokens are scoped.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # kafka-python reads its protocol schemas with a deprecated importlib call at import.
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from typer.testing import CliRunner

from experiments.access import AuditEntry, cli_actor
from experiments.cli.app import app as preuve
from experiments.cli.console import EXIT_DATABASE
from experiments.database import dispose_engines
from experiments.enrollment.assignments import enrolled_classes
from experiments.portal.app import SESSION_COOKIE, create_portal
from experiments.settings import KafkaSettings, Settings, TopicNames
from ingest.gateway import create_app
from ingest.kafka.access import ensure_topics
from ingest.kafka.clients import security_env
from ingest.xapi import CLASS_EXTENSION, RESOURCE_EXTENSION, SCHOOL_EXTENSION
from tests.conftest import SIMULATED_NOW
from tests.support.kafka import consume_all
from tests.support.portal import CSRF, EXPERIMENT, NOW, PortalClient
from tests.support.postgres import PostgresCluster
from tests.support.roles import (
    CALLERS,
    AppClient,
    RoleWorld,
    build_role_world,
    leaf_commands,
    served_routes,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def codes(row: str) -> dict[str, int]:
    """A row of the matrix: one status per caller, in the order of :data:`CALLERS`."""
    numbers = [int(n) for n in row.replace("|", " ").split()]
    assert len(numbers) == len(CALLERS), row
    return dict(zip(CALLERS, numbers, strict=True))


# --- the world ------------------------------------------------------------------------


@dataclass
class Matrix:
    """One registry, one broker topic, the two apps, and what the calls did."""

    world: RoleWorld
    gateway: AppClient
    portal: PortalClient
    sessions: dict[str, dict[str, str]]
    called: set[tuple[str, str, str]] = field(default_factory=set)
    """(method, path, caller) of the gateway cells that ran."""
    events_sent: dict[str, set[str]] = field(default_factory=lambda: {"ok": set(), "no": set()})

    @property
    def registry(self) -> sa.Engine:
        return self.world.portal.registry

    def bearer(self, caller: str) -> dict[str, str]:
        token = self.world.tokens[caller]
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    def audit(self, since: datetime, action: str | None = None) -> list[AuditEntry]:
        with sa.orm.Session(self.registry) as session:
            query = sa.select(AuditEntry).where(AuditEntry.at >= since)
            if action is not None:
                query = query.where(AuditEntry.action == action)
            return list(session.scalars(query.order_by(AuditEntry.id)))


@pytest.fixture(scope="module")
def matrix(postgres_cluster: PostgresCluster, kafka_bootstrap: str,
           kafka_settings: KafkaSettings,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    tag = uuid.uuid4().hex[:8]
    topics = TopicNames(events=f"t{tag}.events", deadletter=f"t{tag}.events.deadletter",
                        enrollments=f"t{tag}.enrollments",
                        analysis_requests=f"t{tag}.analysis.requests")
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("roles"), pseudonym_key=f"roles-{tag}" * 5,
        database_url=postgres_cluster.create_database(f"roles_{tag}"),
        kafka_bootstrap=kafka_bootstrap, topics=topics, simulated_now=SIMULATED_NOW,
        kafka=kafka_settings.model_copy(update={"partitions": 2}),
    )
    ensure_topics(settings)  # as the Kafka admin: the topics and the services' ACLs
    world = build_role_world(settings)
    portal = PortalClient(create_portal(settings, registry=world.portal.registry,
                                        clock=lambda: NOW))
    try:
        sessions = {caller: portal.sign_in(token) for caller, token in world.tokens.items()
                    if token is not None and caller != "bad"}
        sessions["none"] = {}
        sessions["bad"] = {SESSION_COOKIE: "forged-" + uuid.uuid4().hex}
        # Revoked after signing in: the session must die with the token.
        revoked = _cli(settings, "token", "list")
        prefix = next(line.split("\t")[0] for line in revoked.output.splitlines()
                      if "\trevoked-later\t" in line)
        assert _cli(settings, "token", "revoke", prefix).exit_code == 0
        with AppClient(create_app(settings, engine=world.portal.registry)) as gateway:
            yield Matrix(world, gateway, portal, sessions)
    finally:
        portal.close()
        dispose_engines()


def _env(settings: Settings, database_url: str | None = None) -> dict[str, str]:
    assert settings.pseudonym_key is not None and settings.kafka_bootstrap is not None
    return {
        "PREUVE_DATABASE_URL": database_url or settings.database_dsn() or "",
        "PREUVE_STATE_DIR": str(settings.state_dir),
        "PREUVE_PSEUDONYM_KEY": settings.pseudonym_key.get_secret_value(),
        "PREUVE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "PREUVE_TOPICS__EVENTS": settings.topics.events,
        "PREUVE_TOPICS__ENROLLMENTS": settings.topics.enrollments,
        "PREUVE_TOPICS__DEADLETTER": settings.topics.deadletter,
        "PREUVE_TOPICS__ANALYSIS_REQUESTS": settings.topics.analysis_requests,
        **security_env(settings),
        # The simulated school year's clock (tests/conftest.py), as the in-process services.
        "PREUVE_SIMULATED_NOW": SIMULATED_NOW,
    }


def _cli(settings: Settings, *args: str, database_url: str | None = None) -> Any:
    return CliRunner().invoke(preuve, list(args), env=_env(settings, database_url))


# --- the HTTP matrix ------------------------------------------------------------------

Call = Callable[[Matrix, str], httpx.Response]


@dataclass(frozen=True)
class Row:
    expect: dict[str, int]
    call: Call
    write: str | None = None
    """The audit action an allowed call must leave (None: a read)."""


def _get(app: str, url: str) -> Call:
    def call(m: Matrix, caller: str) -> httpx.Response:
        if app == "portal":
            return m.portal.request("GET", url, m.sessions[caller])
        return m.gateway.request("GET", url, headers=m.bearer(caller))
    return call


def _final_run(m: Matrix) -> str:
    return next(r.run_id for r in m.world.portal.runs if r.analysis == "final")


def _portal_get(template: str) -> Call:
    def call(m: Matrix, caller: str) -> httpx.Response:
        url = template.format(experiment_id=EXPERIMENT, run_id=_final_run(m))
        return m.portal.request("GET", url, m.sessions[caller])
    return call


def _event(class_id: str) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "occurred_at": "2027-10-04T10:00:00+02:00",
            "resource_id": "lectio", "learner_id": f"gar-{uuid.uuid4().hex[:10]}",
            "class_id": class_id, "school_uai": "0780001C", "verb": "session_started"}


def _post_event(m: Matrix, caller: str) -> httpx.Response:
    event = _event(sorted(m.world.treatment_classes)[0])
    answer = m.gateway.request("POST", "/v1/events", json=[event], headers=m.bearer(caller))
    m.events_sent["ok" if answer.status_code == 202 else "no"].add(event["event_id"])
    return answer


def _post_statement(m: Matrix, caller: str) -> httpx.Response:
    statement_id = str(uuid.uuid4())
    statement = {
        "id": statement_id,
        "actor": {"account": {"homePage": "https://gar.example", "name": "gar-7f3a9c"}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": "https://lectio.example/exercises/12"},
        "context": {"extensions": {CLASS_EXTENSION: sorted(m.world.treatment_classes)[0],
                                   SCHOOL_EXTENSION: "0780001C",
                                   RESOURCE_EXTENSION: "lectio"}},
        "timestamp": "2027-10-04T09:15:00.000Z",
    }
    answer = m.gateway.request("POST", "/v1/xapi/statements", json=statement,
                               headers=m.bearer(caller))
    m.events_sent["ok" if answer.status_code == 202 else "no"].add(statement_id)
    return answer


ENROLL_HEADER = "class_id,school_uai,level,pupils,academie,education_priority\n"


def _new_class(caller: str) -> str:
    return f"new-{caller}"


def _post_enrollments(m: Matrix, caller: str) -> httpx.Response:
    # Everyone sends Versailles classes: Créteil's token sends another académie's rows.
    body = ENROLL_HEADER + f"{_new_class(caller)},0780002D,CP,21,versailles,REP\n"
    return m.gateway.request("POST", f"/v1/experiments/{EXPERIMENT}/enrollments",
                             content=body.encode(),
                             headers={**m.bearer(caller), "Content-Type": "text/csv"})


def _post_assignments(m: Matrix, caller: str) -> httpx.Response:
    return m.gateway.request(
        "POST", f"/v1/experiments/{EXPERIMENT}/assignments", headers=m.bearer(caller),
        json={"learner_ids": ["gar-7f3a9c"]})


def _post_withdrawal(m: Matrix, caller: str) -> httpx.Response:
    return m.gateway.request(
        "POST", f"/v1/experiments/{EXPERIMENT}/withdrawals", headers=m.bearer(caller),
        json={"class_id": m.world.withdrawable[caller], "reason": "role matrix"})


def _post_correction(m: Matrix, caller: str) -> httpx.Response:
    # The world's clock (SIMULATED_NOW) is after the intervention's start: an académie's
    # class is answered 409 (only a withdrawal now), before any look-up of the class.
    return m.gateway.request(
        "POST", f"/v1/experiments/{EXPERIMENT}/corrections", headers=m.bearer(caller),
        json={"class_id": m.world.withdrawable[caller], "reason": "role matrix", "pupils": 21})


def _sign_in(m: Matrix, caller: str) -> httpx.Response:
    form = m.portal.request("GET", "/connexion")
    csrf = CSRF.search(form.text)
    assert csrf is not None
    return m.portal.request(
        "POST", "/connexion", cookies={"preuve_login_csrf": form.cookies["preuve_login_csrf"]},
        content=urlencode({"csrf": csrf.group(1), "token": m.world.tokens[caller] or "",
                           "suite": "/"}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})


def _sign_out(m: Matrix, caller: str) -> httpx.Response:
    # A session of its own (the shared ones serve the other rows), when the caller can
    # have one; its CSRF token is in every page's sign-out form.
    # Callers without a valid session send no CSRF token: a session that outlived its
    # token would answer 403 (and the shared session is not closed for the other rows).
    cookies = m.sessions[caller]
    csrf = None
    if caller not in ("none", "bad", "revoked"):
        signed = _sign_in(m, caller)
        cookies = {SESSION_COOKIE: signed.cookies[SESSION_COOKIE]}
        page = m.portal.request("GET", "/experiences", cookies).text
        csrf = re.search(r'action="/deconnexion".*?name="csrf" value="([^"]+)"', page, re.S)
    answer = m.portal.request(
        "POST", "/deconnexion", cookies,
        content=urlencode({"csrf": csrf.group(1) if csrf else ""}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    if caller not in ("none", "bad", "revoked"):
        assert csrf is not None
        after = m.portal.request("GET", "/api/experiences", cookies)
        assert after.status_code == 401, "the session outlived its sign-out"
    return answer


def _post_decision(m: Matrix, caller: str) -> httpx.Response:
    # The acknowledgement of the post-experiment decision (issue 19), with the session's
    # CSRF token when the caller has a session. The world's experiment is not analysing
    # and has no decision: the officer, the one role that may acknowledge, gets 409 and
    # nothing is recorded (experiments/portal/decisions.py; tests/unit/test_decision_step.py
    # acknowledges one).
    cookies = m.sessions[caller]
    page = m.portal.request("GET", f"/experiences/{EXPERIMENT}/decision", cookies).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    return m.portal.request(
        "POST", f"/experiences/{EXPERIMENT}/decision", cookies,
        content=urlencode({"csrf": csrf.group(1) if csrf else "", "decision_id": "1"}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})


# --- issue 17: validate-only, dead letters, the EdTech console ---------------------------


def _validate_event(m: Matrix, caller: str) -> httpx.Response:
    event = _event(sorted(m.world.treatment_classes)[0])
    return m.gateway.request("POST", "/v1/events:validate", json=[event],
                             headers=m.bearer(caller))


def _validate_statement(m: Matrix, caller: str) -> httpx.Response:
    statement = {
        "actor": {"account": {"homePage": "https://gar.example", "name": "gar-7f3a9c"}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": "https://lectio.example/exercises/12"},
        "context": {"extensions": {CLASS_EXTENSION: sorted(m.world.treatment_classes)[0],
                                   SCHOOL_EXTENSION: "0780001C",
                                   RESOURCE_EXTENSION: "lectio"}},
        "timestamp": "2027-10-04T09:15:00.000Z",
    }
    return m.gateway.request("POST", "/v1/xapi/statements:validate", json=[statement],
                             headers=m.bearer(caller))


def _session_csrf(m: Matrix, caller: str) -> str:
    """The CSRF token of the caller's shared session ("" without one)."""
    if caller in ("none", "bad", "revoked"):
        return ""
    page = m.portal.request("GET", "/connexion", m.sessions[caller]).text
    found = CSRF.search(page.split('action="/deconnexion"', 1)[-1])
    return found.group(1) if found else ""


def _portal_form(m: Matrix, caller: str, url: str, fields: dict[str, str]) -> httpx.Response:
    return m.portal.request(
        "POST", url, m.sessions[caller],
        content=urlencode({"csrf": _session_csrf(m, caller), **fields}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})


def _create_key(m: Matrix, caller: str) -> httpx.Response:
    return _portal_form(m, caller, "/ressource/cles", {"label": "role matrix"})


def _revoke_key(m: Matrix, caller: str) -> httpx.Response:
    # A key of the caller's own resource when it is an EdTech (else of lectio): revoking
    # it must not end the shared session, which signed in with another key.
    from experiments.access import issue_token

    scope = "scriptum" if caller == "edtech_other" else "lectio"
    key = issue_token(m.registry, "edtech", scope, "to revoke")
    prefix = hashlib.sha256(key.encode()).hexdigest()[:12]
    return _portal_form(m, caller, "/ressource/cles/revocation", {"cle": prefix})


# --- issue 17: the académies' enrollment pages, the collectivités' validations ----------


def _excel_rows(caller: str) -> bytes:
    # Everyone sends a Versailles class, as Excel writes it: Créteil's token is refused.
    return ("Classe;UAI;Niveau;Effectif;Académie;Éducation prioritaire\r\n"
            f"xl-{caller};0780002D;CP;23;Versailles;REP\r\n").encode("cp1252")


def _post_upload(m: Matrix, caller: str) -> httpx.Response:
    # The multipart body encoded beforehand: the matrix reads each request's content.
    form = httpx.Request("POST", "http://portal/", data={"csrf": _session_csrf(m, caller)},
                         files={"fichier": ("classes.csv", _excel_rows(caller), "text/csv")})
    return m.portal.request(
        "POST", f"/inscriptions/{EXPERIMENT}/fichier", m.sessions[caller],
        content=form.read(), headers={"Content-Type": form.headers["Content-Type"]})


def _post_confirmation(m: Matrix, caller: str) -> httpx.Response:
    preview = _post_upload(m, caller)
    upload = re.search(r'name="apercu" value="([^"]+)"', preview.text)
    return m.portal.request(
        "POST", f"/inscriptions/{EXPERIMENT}/confirmation", m.sessions[caller],
        content=urlencode({"csrf": _session_csrf(m, caller),
                           "apercu": upload.group(1) if upload else "none"}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})


def _post_portal_withdrawal(m: Matrix, caller: str) -> httpx.Response:
    # The class the gateway row withdraws is taken: a fresh one of the same caller.
    class_id = m.world.withdrawable[f"portal-{caller}"]
    return m.portal.request(
        "POST", f"/inscriptions/{EXPERIMENT}/retrait", m.sessions[caller],
        content=urlencode({"csrf": _session_csrf(m, caller), "class_id": class_id,
                           "motif": "matrice des rôles"}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})


def _post_portal_validation(m: Matrix, caller: str) -> httpx.Response:
    return m.portal.request(
        "POST", f"/validations/{EXPERIMENT}", m.sessions[caller],
        content=urlencode({"csrf": _session_csrf(m, caller), "classe": "xl-1"}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})


def _post_validations(m: Matrix, caller: str) -> httpx.Response:
    return m.gateway.request("POST", f"/v1/experiments/{EXPERIMENT}/validations",
                             headers=m.bearer(caller), json={"class_ids": ["xl-1"]})


PUBLIC = codes("200 200 200 | 200 200 | 200 200 | 200 200 | 200 200 | 200 | 200")

#                                   none bad revk| res res'| aca aca'| edt edt'| ass ass'| off| adm
GATEWAY: dict[tuple[str, str], Row] = {
    ("GET", "/healthz"): Row(PUBLIC, _get("gateway", "/healthz")),
    ("GET", "/openapi.json"): Row(PUBLIC, _get("gateway", "/openapi.json")),
    ("GET", "/docs"): Row(PUBLIC, _get("gateway", "/docs")),
    ("GET", "/docs/oauth2-redirect"): Row(PUBLIC, _get("gateway", "/docs/oauth2-redirect")),
    ("GET", "/redoc"): Row(PUBLIC, _get("gateway", "/redoc")),
    ("POST", "/v1/events"): Row(
        codes("401 401 401 | 403 403 | 403 403 | 202 403 | 403 403 | 403 | 202"),
        _post_event),
    ("POST", "/v1/xapi/statements"): Row(
        codes("401 401 401 | 403 403 | 403 403 | 202 403 | 403 403 | 403 | 202"),
        _post_statement),
    ("POST", "/v1/experiments/{experiment_id}/enrollments"): Row(
        codes("401 401 401 | 403 403 | 200 403 | 403 403 | 403 403 | 403 | 200"),
        _post_enrollments,
        write="enrollment.file"),
    # Out of the token's scope (another experiment's researcher, another resource): the
    # 404 of a missing experiment, so that no token learns which experiments exist.
    ("GET", "/v1/experiments/{experiment_id}/enrollments"): Row(
        codes("401 401 401 | 200 404 | 200 200 | 200 404 | 403 403 | 403 | 200"),
        _get("gateway", f"/v1/experiments/{EXPERIMENT}/enrollments")),
    # A class design: the pupils' lookup answers its own resource 409 (arms are by class).
    ("POST", "/v1/experiments/{experiment_id}/assignments"): Row(
        codes("401 401 401 | 403 403 | 403 403 | 409 404 | 403 403 | 403 | 403"),
        _post_assignments),
    ("POST", "/v1/experiments/{experiment_id}/withdrawals"): Row(
        codes("401 401 401 | 403 403 | 200 404 | 403 403 | 403 403 | 403 | 200"),
        _post_withdrawal,
        write="enrollment.withdraw"),
    ("POST", "/v1/experiments/{experiment_id}/corrections"): Row(
        codes("401 401 401 | 403 403 | 409 409 | 403 403 | 403 403 | 403 | 409"), _post_correction),
    # Issue 17. Validate-only: whoever may send gets verdicts (another resource's item is
    # a refused verdict, 200), nothing is written.
    ("POST", "/v1/events:validate"): Row(
        codes("401 401 401 | 403 403 | 403 403 | 200 200 | 200 200 | 403 | 200"),
        _validate_event),
    ("POST", "/v1/xapi/statements:validate"): Row(
        codes("401 401 401 | 403 403 | 403 403 | 200 200 | 200 200 | 403 | 200"),
        _validate_statement),
    # Another resource's dead letters: the 404 of an unknown resource.
    ("GET", "/v1/resources/{resource_id}/deadletters"): Row(
        codes("401 401 401 | 403 403 | 403 403 | 200 404 | 403 403 | 403 | 200"),
        _get("gateway", "/v1/resources/lectio/deadletters")),
    # Issue 17: an académie reads its classes' validations; fluence-cp-2027 asks for no
    # collectivité's (409); the collectivités' own cells: test_collectivites_* below.
    ("GET", "/v1/experiments/{experiment_id}/validations"): Row(
        codes("401 401 401 | 403 403 | 200 200 | 403 403 | 403 403 | 403 | 200"),
        _get("gateway", f"/v1/experiments/{EXPERIMENT}/validations")),
    ("POST", "/v1/experiments/{experiment_id}/validations"): Row(
        codes("401 401 401 | 403 403 | 403 403 | 403 403 | 403 403 | 403 | 409"),
        _post_validations),
}

# Pages send a caller without a valid session to the sign-in form (302); the JSON
# endpoints answer 401.
#                                   none bad revk| res res'| aca aca'| edt edt'| ass ass'| off| adm
READERS_PAGE = codes("302 302 302 | 200 404 | 403 403 | 403 403 | 403 403 | 200 | 200")
PORTAL: dict[tuple[str, str], Row] = {
    ("GET", "/healthz"): Row(PUBLIC, _get("portal", "/healthz")),
    ("GET", "/static/portal.css"): Row(PUBLIC, _get("portal", "/static/portal.css")),
    ("GET", "/"): Row(
        codes("303 303 303 | 303 303 | 303 303 | 303 303 | 403 403 | 303 | 303"),
        _get("portal", "/")),
    ("GET", "/connexion"): Row(PUBLIC, _get("portal", "/connexion")),
    ("POST", "/connexion"): Row(
        codes("401 401 401 | 303 303 | 303 303 | 303 303 | 303 303 | 303 | 303"),
        _sign_in,
        write="portal.sign_in"),
    ("POST", "/deconnexion"): Row(
        codes("303 303 303 | 303 303 | 303 303 | 303 303 | 303 303 | 303 | 303"),
        _sign_out),
    ("GET", "/experiences"): Row(
        codes("302 302 302 | 200 200 | 403 403 | 403 403 | 403 403 | 200 | 200"),
        _get("portal", "/experiences")),
    ("GET", "/experiences/{experiment_id}"): Row(
        READERS_PAGE, _portal_get("/experiences/{experiment_id}")),
    ("GET", "/experiences/{experiment_id}/rapports/{run_id}"): Row(
        READERS_PAGE, _portal_get("/experiences/{experiment_id}/rapports/{run_id}")),
    ("GET", "/experiences/{experiment_id}/rapports/{run_id}/resultats.json"): Row(
        READERS_PAGE,
        _portal_get("/experiences/{experiment_id}/rapports/{run_id}/resultats.json")),
    ("GET", "/api/experiences"): Row(
        codes("401 401 401 | 200 200 | 403 403 | 403 403 | 403 403 | 200 | 200"),
        _get("portal", "/api/experiences")),
    ("GET", "/usages"): Row(
        codes("302 302 302 | 403 403 | 200 200 | 403 403 | 403 403 | 403 | 200"),
        _get("portal", "/usages")),
    ("GET", "/usages/{experiment_id}"): Row(
        codes("302 302 302 | 403 403 | 200 200 | 403 403 | 403 403 | 403 | 200"),
        _portal_get("/usages/{experiment_id}")),
    ("GET", "/api/usages/{experiment_id}"): Row(
        codes("401 401 401 | 403 403 | 200 200 | 403 403 | 403 403 | 403 | 200"),
        _portal_get("/api/usages/{experiment_id}")),
    # The post-experiment decision (issue 19): readers see it, only an officer
    # acknowledges; the closing report exists once the experiment is closed (404 before).
    ("GET", "/experiences/{experiment_id}/decision"): Row(
        READERS_PAGE, _portal_get("/experiences/{experiment_id}/decision")),
    ("POST", "/experiences/{experiment_id}/decision"): Row(
        codes("302 302 302 | 403 403 | 403 403 | 403 403 | 403 403 | 409 | 403"),
        _post_decision),  # its audit entry: tests/unit/test_decision_step.py
    ("GET", "/experiences/{experiment_id}/cloture"): Row(
        codes("302 302 302 | 404 404 | 403 403 | 403 403 | 403 403 | 404 | 404"),
        _portal_get("/experiences/{experiment_id}/cloture")),
    # The national aggregate (issue 19): readers, over the closed experiments of their
    # scope (the world's experiment is not closed: empty rows, still 200).
    ("GET", "/api/agregat"): Row(
        codes("401 401 401 | 200 200 | 403 403 | 403 403 | 403 403 | 200 | 200"),
        _get("portal", "/api/agregat")),
    ("GET", "/api/agregat.csv"): Row(
        codes("401 401 401 | 200 200 | 403 403 | 403 403 | 403 403 | 200 | 200"),
        _get("portal", "/api/agregat.csv")),
    # Programme pages (issue 22): readers and académies (their territory's experiments).
    ("GET", "/programmes"): Row(
        codes("302 302 302 | 200 200 | 200 200 | 403 403 | 403 403 | 200 | 200"),
        _get("portal", "/programmes")),
    ("GET", "/programmes/{programme}"): Row(
        codes("302 302 302 | 200 200 | 200 200 | 403 403 | 403 403 | 200 | 200"),
        _get("portal", "/programmes/TNE")),
    # Their JSON API: aggregates only, narrowed the same way (académies: their territory).
    ("GET", "/api/programmes"): Row(
        codes("401 401 401 | 200 200 | 200 200 | 403 403 | 403 403 | 200 | 200"),
        _get("portal", "/api/programmes")),
    ("GET", "/api/programmes/{programme}"): Row(
        codes("401 401 401 | 200 200 | 200 200 | 403 403 | 403 403 | 200 | 200"),
        _get("portal", "/api/programmes/TNE")),
    # Issue 17: the EdTech console, its own resource's only; public accessibility pages.
    ("GET", "/ressource"): Row(
        codes("302 302 302 | 403 403 | 403 403 | 200 200 | 403 403 | 403 | 403"),
        _get("portal", "/ressource")),
    ("GET", "/ressource/cles"): Row(
        codes("302 302 302 | 403 403 | 403 403 | 200 200 | 403 403 | 403 | 403"),
        _get("portal", "/ressource/cles")),
    ("POST", "/ressource/cles"): Row(
        codes("302 302 302 | 403 403 | 403 403 | 201 201 | 403 403 | 403 | 403"),
        _create_key, write="token.issue"),
    # edtech_other revokes a key of its own resource (scriptum): a lectio key answers it
    # the 404 of an unknown key (test_an_edtech_cannot_revoke_another_resources_key).
    ("POST", "/ressource/cles/revocation"): Row(
        codes("302 302 302 | 403 403 | 403 403 | 200 200 | 403 403 | 403 | 403"),
        _revoke_key, write="token.revoke"),
    ("GET", "/accessibilite"): Row(PUBLIC, _get("portal", "/accessibilite")),
    ("GET", "/mentions-legales"): Row(PUBLIC, _get("portal", "/mentions-legales")),
    # Issue 17 (experiments/portal/academie.py): académies enroll their own classes; a
    # preview writes nothing; Créteil's file of Versailles classes is refused (403), and
    # so is its confirmation (no preview to confirm: 409); another académie's class is
    # withdrawn by nobody but its own (404, as if it did not exist).
    ("GET", "/inscriptions"): Row(
        codes("302 302 302 | 403 403 | 200 200 | 403 403 | 403 403 | 403 | 200"),
        _get("portal", "/inscriptions")),
    ("GET", "/inscriptions/{experiment_id}"): Row(
        codes("302 302 302 | 403 403 | 200 200 | 403 403 | 403 403 | 403 | 200"),
        _portal_get("/inscriptions/{experiment_id}")),
    ("POST", "/inscriptions/{experiment_id}/fichier"): Row(
        codes("302 302 302 | 403 403 | 200 403 | 403 403 | 403 403 | 403 | 200"),
        _post_upload),
    ("POST", "/inscriptions/{experiment_id}/confirmation"): Row(
        codes("302 302 302 | 403 403 | 200 409 | 403 403 | 403 403 | 403 | 200"),
        _post_confirmation, write="enrollment.file"),
    ("POST", "/inscriptions/{experiment_id}/retrait"): Row(
        codes("302 302 302 | 403 403 | 303 404 | 403 403 | 403 403 | 403 | 303"),
        _post_portal_withdrawal, write="enrollment.withdraw"),
    # Collectivités: fluence-cp-2027 asks for no collectivité's validation (404 as for a
    # missing experiment); their own cells: test_collectivites_* below.
    ("GET", "/validations"): Row(
        codes("302 302 302 | 403 403 | 403 403 | 403 403 | 403 403 | 403 | 200"),
        _get("portal", "/validations")),
    ("GET", "/validations/{experiment_id}"): Row(
        codes("302 302 302 | 403 403 | 403 403 | 403 403 | 403 403 | 403 | 404"),
        _portal_get("/validations/{experiment_id}")),
    ("POST", "/validations/{experiment_id}"): Row(
        codes("302 302 302 | 403 403 | 403 403 | 403 403 | 403 403 | 403 | 404"),
        _post_portal_validation),
}

APPS = {"gateway": GATEWAY, "portal": PORTAL}
CELLS = [(app, method, path, caller) for app, rows in APPS.items()
         for (method, path) in rows for caller in CALLERS]


def test_every_route_is_in_the_matrix(matrix: Matrix) -> None:
    served = {
        "gateway": set(served_routes(matrix.gateway.app.routes)),
        "portal": set(served_routes(matrix.portal.app.routes)),
    }
    for app, rows in APPS.items():
        assert served[app] == set(rows), (
            f"{app}: routes without a row: {sorted(served[app] - set(rows))}; "
            f"rows of no route: {sorted(set(rows) - served[app])}")


def _forbidden_text(m: Matrix, caller: str, status: int) -> list[str]:
    """What ``caller`` must never read, whatever the route (a refusal may repeat the
    experiment id of the URL it refuses)."""
    w = m.world
    never = list(w.learner_keys)
    control = [c.class_id for c in enrolled_classes(m.registry, EXPERIMENT)
               if c.arm not in ("lectio",)]  # fluence-cp-2027's one treatment arm
    versailles, creteil = w.classes_of("versailles"), w.classes_of("creteil")
    if caller in ("officer", "edtech_other", "researcher_other", "none", "bad", "revoked",
                  "assessor", "assessor_other"):
        never += versailles + creteil
    elif caller == "edtech":
        never += control
    elif caller == "academie":
        never += creteil
    elif caller == "academie_other":
        never += versailles
    if caller in ("researcher_other", "edtech_other", "assessor_other") and status < 400:
        never.append(EXPERIMENT)
    return never


@pytest.mark.parametrize(("app", "method", "path", "caller"), CELLS,
                         ids=[f"{a}:{m} {p}:{c}" for a, m, p, c in CELLS])
def test_route_answers_each_caller_as_declared(
        matrix: Matrix, app: str, method: str, path: str, caller: str) -> None:
    row = APPS[app][method, path]
    before = datetime.now(UTC)
    answer = row.call(matrix, caller)
    if app == "gateway":
        matrix.called.add((method, path, caller))
    assert answer.status_code == row.expect[caller], answer.text[:500]
    text = answer.text
    # A refusal may repeat what the caller sent (the class it asked for), nothing else.
    sent = str(answer.request.url) + answer.request.content.decode(errors="replace")
    leaked = [s for s in _forbidden_text(matrix, caller, answer.status_code)
              if s in text and not (answer.status_code >= 400 and s in sent)]
    assert not leaked, f"{caller} reads {leaked[:5]} from {method} {path}"
    if answer.status_code >= 400 and app == "gateway" and "detail" in text:
        assert "Traceback" not in text
    if row.write is not None:
        actors = [e.actor for e in matrix.audit(before, row.write)]
        if answer.status_code < 400 and answer.status_code != 302:  # 302: to the sign-in form
            assert actors, f"{method} {path} by {caller}: no {row.write!r} audit entry"
            assert all(a.startswith(("academie:", "admin:", "researcher:", "officer:",
                                     "edtech:", "assessor:")) for a in actors), actors
        else:
            assert not actors, f"refused {method} {path} by {caller} left {actors}"


def test_refused_callers_changed_nothing(matrix: Matrix) -> None:
    """After the matrix: refused enrollments and withdrawals left no row behind."""
    enroll = ("POST", "/v1/experiments/{experiment_id}/enrollments")
    withdraw = ("POST", "/v1/experiments/{experiment_id}/withdrawals")
    if not {enroll, withdraw} <= {(m, p) for m, p, _ in matrix.called}:
        pytest.skip("runs after the matrix's enrollment and withdrawal cells")
    classes = {c.class_id: c for c in enrolled_classes(matrix.registry, EXPERIMENT)}
    for caller in CALLERS:
        if (*enroll, caller) in matrix.called:
            allowed = GATEWAY[enroll].expect[caller] == 200
            assert (_new_class(caller) in classes) == allowed, caller
        if (*withdraw, caller) in matrix.called:
            withdrawn = classes[matrix.world.withdrawable[caller]].status == "withdrawn"
            assert withdrawn == (GATEWAY[withdraw].expect[caller] == 200), caller


def test_officers_read_aggregates_only(matrix: Matrix) -> None:
    officer = matrix.sessions["officer"]
    portfolio = matrix.portal.request("GET", "/api/experiences", officer).json()
    assert [e["id"] for e in portfolio] == [EXPERIMENT]
    assert all(isinstance(n, int) for n in portfolio[0]["classes_per_arm"].values())
    results = matrix.portal.request(
        "GET", f"/experiences/{EXPERIMENT}/rapports/{_final_run(matrix)}/resultats.json",
        officer).json()

    def keys(value: Any) -> set[str]:
        if isinstance(value, dict):
            return set(value) | {k for v in value.values() for k in keys(v)}
        if isinstance(value, list):
            return {k for v in value for k in keys(v)}
        return set()

    assert not keys(results) & {"learner_id", "learner_key", "class_id", "unit_id"}

    def head_counts(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield from head_counts(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from head_counts(v, f"{path}[{i}]")
        elif "learners" in path or "pupils" in path:
            yield path, value

    counts = list(head_counts(results))
    assert counts, "the results hold head counts (n_learners by arm at least)"
    small = [(p, n) for p, n in counts
             if isinstance(n, int) and not isinstance(n, bool) and 0 < n < 10]
    assert not small, f"cells of fewer than 10 pupils in the results: {small[:5]}"


def test_academie_usage_cells_under_ten_pupils_are_suppressed(matrix: Matrix) -> None:
    for caller, academie in (("academie", "versailles"), ("academie_other", "creteil")):
        usage = matrix.portal.request("GET", f"/api/usages/{EXPERIMENT}",
                                      matrix.sessions[caller]).json()
        assert usage["academie"] == academie and usage["suppressed_below"] == 10
        shown = [w["active_pupils"] for c in usage["classes"] for w in c["weeks"]]
        shown += [t["active_pupils"] for t in usage["totals"]]
        assert not [n for n in shown if n is not None and 0 < n < 10], shown


def test_an_edtech_reads_only_its_treatment_classes(matrix: Matrix) -> None:
    answer = matrix.gateway.request("GET", f"/v1/experiments/{EXPERIMENT}/enrollments",
                                    headers=matrix.bearer("edtech"))
    classes = answer.json()["classes"]
    treatment = {c.class_id for c in enrolled_classes(matrix.registry, EXPERIMENT)
                 if c.arm == "lectio" and c.status == "enrolled"}
    assert classes and {c["class_id"] for c in classes} == treatment
    assert all(set(c) == {"class_id", "school_uai", "arm"} for c in classes)


def test_accepted_events_and_only_those_reach_the_topic(matrix: Matrix) -> None:
    sent = matrix.events_sent
    if not sent["ok"]:
        pytest.skip("run with the event rows of the matrix")
    records = consume_all(matrix.world.settings,
                          matrix.world.settings.topics.events, expected=len(sent["ok"]))
    ids = {json.loads(value)["event_id"] for _, value in records}
    assert sent["ok"] <= ids
    assert not sent["no"] & ids
    # Each record names the key that wrote it (role:scope:hash prefix), never the token.
    tokens = [t for t in matrix.world.tokens.values() if t]
    for headers, _ in records:
        authority = headers["preuve.authority"].decode()
        assert authority.split(":")[0] in ("edtech", "admin", "assessor"), authority
        assert not any(t[3:] in authority for t in tokens), authority


def _score(m: Matrix, measure: str = "fluence") -> dict[str, Any]:
    return {**_event(sorted(m.world.treatment_classes)[0]), "verb": "assessment_scored",
            "object_id": measure, "score": 42.0, "occurred_at": "2028-06-01T10:00:00+02:00"}


@pytest.mark.parametrize(("caller", "measure", "status"), [
    ("assessor", "fluence", 202),          # its experiment's declared measure
    ("assessor", "comprehension", 403),    # a measure the protocol does not name
    ("assessor_other", "fluence", 403),    # another experiment's assessor
    ("edtech", "fluence", 202),            # accepted, stored as usage (never an outcome)
    ("researcher", "fluence", 403),
    ("officer", "fluence", 403),
    ("academie", "fluence", 403),
])
def test_outcome_scores_come_from_the_experiments_assessor(
        matrix: Matrix, caller: str, measure: str, status: int) -> None:
    """An assessor token sends ``assessment_scored`` of its experiment's measures, and
    nothing else (its usage-event cells are the 403s of the matrix above)."""
    score = _score(matrix, measure)
    answer = matrix.gateway.request("POST", "/v1/events", json=[score],
                                    headers=matrix.bearer(caller))
    assert answer.status_code == status, answer.text
    matrix.events_sent["ok" if status == 202 else "no"].add(str(score["event_id"]))


# --- the CLI --------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """How a ``preuve`` command is authorised.

    ``offline``: reads and writes only the caller's own files; ``broker``: the local
    broker, its topics, users and ACLs, or the events topic (the broker's own access
    control: SCRAM users and ACLs, ``tests/integration/test_kafka_acls.py``); ``service``: a
    long-running service whose HTTP routes are the matrix above; ``sandbox``: a whole
    simulated experiment in a registry and broker of its own (``state_dir/demo/RUN``,
    ``tests/integration/test_demo.py``); ``database``: schemas and roles, with the
    database owner's or a superuser's credentials (``preuve db``, no registry row
    written; ``tests/integration/test_database_roles.py``); ``registry``: opens the
    registry with the deployment's credentials (administrator), ``audit`` naming the
    entry each write leaves.
    """

    access: str
    audit: str | None = None


CLI_ACCESS: dict[str, Command] = {
    "protocol validate": Command("offline"),
    "protocol power": Command("offline"),
    "analyze": Command("offline"),
    "kafka up": Command("broker"),
    "kafka down": Command("broker"),
    "kafka status": Command("broker"),
    "kafka setup": Command("broker"),
    "kafka add-edtech": Command("broker"),
    "events send": Command("broker"),
    "worker": Command("service"),
    "gateway": Command("service"),
    "scheduler": Command("service"),
    "serve": Command("service"),
    "demo": Command("sandbox"),
    "protocol register": Command("registry", "protocol.registration"),
    "protocol amend": Command("registry", "protocol.amendment"),
    "protocol advance": Command("registry", "experiment.transition"),
    "protocol decide": Command("registry", "experiment.decision"),
    "protocol show": Command("registry"),
    "protocol status": Command("registry"),
    "protocol export": Command("registry"),
    "token issue": Command("registry", "token.issue"),
    "token list": Command("registry"),
    "token revoke": Command("registry", "token.revoke"),
    "enroll": Command("registry", "enrollment.file"),
    "outcomes import": Command("registry", "outcomes.import"),
    "questionnaires import": Command("registry", "questionnaires.import"),
    "purge": Command("registry", "retention.purge"),
    "erase": Command("registry", "retention.erase_class"),
    "export": Command("registry", "data.export"),
    "programme export": Command("registry"),
    "runs list": Command("registry"),
    "runs files": Command("registry"),
    "runs reproduce": Command("registry"),
    "db migrate": Command("database"),
    "db roles": Command("database"),
}


def test_every_command_is_in_the_matrix() -> None:
    commands = leaf_commands(preuve)
    assert commands == set(CLI_ACCESS), (
        f"commands without an entry: {sorted(commands - set(CLI_ACCESS))}; "
        f"entries of no command: {sorted(set(CLI_ACCESS) - commands)}")


CLI_EXPERIMENT = "role-matrix-cli"


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A protocol of its own (purged at the end), its amendment, classes and outcomes."""
    folder = tmp_path_factory.mktemp("cli")
    text = (ROOT / "protocols" / f"{EXPERIMENT}.yaml").read_text(encoding="utf-8").replace(
        f"id: {EXPERIMENT}", f"id: {CLI_EXPERIMENT}", 1) + (
        "questionnaires:\n  - {id: eleves, respondent: pupil, waves: [baseline], items: "
        "[{id: m1, min: 1, max: 4}, {id: m2, min: 1, max: 4}], scales: [{id: motivation, "
        "items: [m1, m2]}]}\n")
    assert "alpha: 0.05" in text
    files = {
        "protocol": folder / "protocol.yaml",
        "amended": folder / "amended.yaml",
        "classes": folder / "classes.csv",
        "outcomes": folder / "outcomes.csv",
        "questionnaires": folder / "questionnaires.csv",
        "export": folder / "export",
    }
    files["questionnaires"].write_text(
        "respondent_id,unit_id,questionnaire,wave,m1,m2\n" + "".join(
            f"gar-cli-{i},cli-{i % 4},eleves,baseline,{1 + i % 4},\n" for i in range(8)),
        encoding="utf-8")
    files["protocol"].write_text(text, encoding="utf-8")
    files["amended"].write_text(text.replace("alpha: 0.05", "alpha: 0.1", 1), encoding="utf-8")
    files["classes"].write_text(ENROLL_HEADER + "".join(
        f"cli-{i},0780003E,CP,22,versailles,REP\n" for i in range(4)), encoding="utf-8")
    files["outcomes"].write_text("learner_id,unit_id,measure,wave,score\n" + "".join(
        f"gar-cli-{i},cli-{i % 4},fluence,baseline,{40 + i}\n" for i in range(8)),
        encoding="utf-8")
    return files


def _registry_argv(files: dict[str, Path]) -> dict[str, list[str]]:
    """One call of every registry command (as the administrator runs it below)."""
    return {
        "token issue": ["token", "issue", "researcher", CLI_EXPERIMENT, "--label", "cli-lab"],
        "token list": ["token", "list"],
        "token revoke": ["token", "revoke", "PREFIX"],
        "protocol register": ["protocol", "register", str(files["protocol"])],
        "protocol amend": ["protocol", "amend", str(files["amended"]), "--reason",
                           "alpha revu avec le comité"],
        "protocol show": ["protocol", "show", CLI_EXPERIMENT],
        "protocol status": ["protocol", "status", CLI_EXPERIMENT],
        "protocol export": ["protocol", "export", CLI_EXPERIMENT],
        "protocol advance": ["protocol", "advance", CLI_EXPERIMENT, "enrolling"],
        "protocol decide": ["protocol", "decide", CLI_EXPERIMENT, "--decision", "arreter",
                            "--reason", "avant l'analyse finale : refusé"],
        "enroll": ["enroll", CLI_EXPERIMENT, str(files["classes"]), "--academie", "versailles"],
        "outcomes import": ["outcomes", "import", CLI_EXPERIMENT, str(files["outcomes"])],
        "questionnaires import": ["questionnaires", "import", CLI_EXPERIMENT,
                                  str(files["questionnaires"])],
        "export": ["export", CLI_EXPERIMENT, "--out", str(files["export"]), "--format", "csv"],
        "programme export": ["programme", "export", "autre", "--out", str(files["export"])],
        "runs list": ["runs", "list", CLI_EXPERIMENT],
        "runs files": ["runs", "files", "no-such-run", "--experiment", CLI_EXPERIMENT,
                       "--to", str(files["export"])],
        "runs reproduce": ["runs", "reproduce", "no-such-run", "--experiment", CLI_EXPERIMENT],
        "erase": ["erase", CLI_EXPERIMENT, "--class", "cli-3", "--reason", "demande RGPD"],
        "purge": ["purge", CLI_EXPERIMENT, "--force", "--reason", "fin de l'étude"],
    }


REGISTRY_COMMANDS = sorted(c for c, how in CLI_ACCESS.items() if how.access == "registry")

#: Whom each registry command's audit entries name: the operating-system account that
#: holds the registry's credentials, as an administrator (``enroll --academie`` also
#: says for which académie).
CLI_ACTORS = {"enroll": cli_actor("academie:versailles")}


def test_registry_commands_are_audited_when_the_administrator_runs_them(
        matrix: Matrix, cli_files: dict[str, Path]) -> None:
    settings = matrix.world.settings
    argv = _registry_argv(cli_files)
    assert set(argv) == set(REGISTRY_COMMANDS)
    unaudited: set[str] = set()
    for command in argv:  # in lifecycle order
        args = argv[command]
        if command == "token revoke":
            listed = _cli(settings, "token", "list").output.splitlines()
            args = [*args[:-1], next(li.split("\t")[0] for li in listed if "\tcli-lab\t" in li)]
        before = datetime.now(UTC)
        result = _cli(settings, *args)
        if command in ("runs reproduce", "runs files"):  # no recorded run: it says so
            assert result.exit_code == 1 and "no recorded run" in result.output, result.output
            continue
        if command == "protocol decide":  # enrolling: a decision comes after the final analysis
            assert result.exit_code == 2 and "after the final analysis" in result.output, \
                result.output
            assert not matrix.audit(before, "experiment.decision")
            continue
        assert result.exit_code == 0, f"{command}: {result.output}"
        action = CLI_ACCESS[command].audit
        entries = matrix.audit(before) if action is not None else []
        if action is not None and not [e for e in entries if e.action == action]:
            unaudited.add(command)
        for entry in entries:
            assert entry.at >= before and entry.subject, entry
        actor = CLI_ACTORS.get(command, cli_actor())
        assert all(e.actor == actor for e in entries), (command, [e.actor for e in entries])
    assert not unaudited, f"registry writes without their audit entry: {sorted(unaudited)}"


def test_outcomes_import_says_what_it_stored(matrix: Matrix, cli_files: dict[str, Path]) -> None:
    """The lifecycle above imported the 8 rows of a new file: its entry counts them."""
    entries = [e for e in matrix.audit(datetime(2000, 1, 1, tzinfo=UTC), "outcomes.import")
               if e.subject == CLI_EXPERIMENT]
    if not entries:
        pytest.skip("runs after the registry commands' lifecycle test")
    (entry,) = entries
    assert entry.detail == {"file": str(cli_files["outcomes"]), "rows": 8, "stored": 8,
                            "corrected": 0, "already": 0}, entry.detail


@pytest.fixture(scope="module")
def outsider_url(matrix: Matrix, postgres_cluster: PostgresCluster) -> str:
    """The registry's database, as a PostgreSQL role that holds no right on it."""
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={postgres_cluster.port} user=preuve "
                         "dbname=postgres", autocommit=True) as connection:
        connection.execute("CREATE ROLE outsider LOGIN")
    url = matrix.world.settings.database_dsn()
    assert url is not None and "//preuve@" in url
    return url.replace("//preuve@", "//outsider@")


@pytest.mark.parametrize("command", REGISTRY_COMMANDS)
def test_registry_commands_are_refused_without_the_registry_credentials(
        matrix: Matrix, cli_files: dict[str, Path], outsider_url: str, command: str) -> None:
    before = datetime.now(UTC)
    args = _registry_argv(cli_files)[command]
    result = _cli(matrix.world.settings, *args, database_url=outsider_url)
    dispose_engines()  # the outsider's engine, cached by URL, is no use to anyone
    assert result.exit_code != 0, result.output
    assert matrix.audit(before) == [], "a refused command wrote to the audit log"
    # A refusal is one line and the database's exit code, never a traceback.
    assert isinstance(result.exception, SystemExit), (command, result.exception)
    assert result.exit_code == EXIT_DATABASE, (command, result.output)
    (line,) = result.output.splitlines()
    assert line.startswith("error: the database refused: permission denied"), (command, line)


def test_offline_commands_need_no_registry_at_all(
        matrix: Matrix, outsider_url: str, tmp_path: Path) -> None:
    """``offline`` is honest: these commands run for someone the registry refuses."""
    from analysis.simulate import simulate_trial

    protocol = ROOT / "protocols" / f"{EXPERIMENT}.yaml"
    trial = simulate_trial(tmp_path / "trial", n_units=20, pupils_per_unit=10)
    runs = {
        "protocol validate": ["protocol", "validate", str(protocol)],
        "protocol power": ["protocol", "power", str(protocol), "--json"],
        "analyze": ["analyze", "--protocol", str(protocol), "--units", str(trial.units),
                    "--outcomes", str(trial.outcomes), "--json", str(tmp_path / "r.json")],
    }
    assert set(runs) == {c for c, how in CLI_ACCESS.items() if how.access == "offline"}
    for command, args in runs.items():
        result = _cli(matrix.world.settings, *args, database_url=outsider_url)
        assert result.exit_code == 0, f"{command}: {result.output}"
    dispose_engines()


# --- cross-académie: what an académie's own requests may reveal -----------------------


def _post_as(m: Matrix, caller: str, rows: str) -> httpx.Response:
    return m.gateway.request("POST", f"/v1/experiments/{EXPERIMENT}/enrollments",
                             content=(ENROLL_HEADER + rows).encode(),
                             headers={**m.bearer(caller), "Content-Type": "text/csv"})


def test_an_academie_reads_the_balance_of_its_own_classes_only(matrix: Matrix) -> None:
    """Re-sending one of its classes (no write) must not show the arms of the others':
    polling the whole experiment's counts would tell each new class's arm."""
    own = [c for c in enrolled_classes(matrix.registry, EXPERIMENT, academie="creteil")]
    first = own[0]
    row = (f"{first.class_id},{first.school_uai},{first.level},{first.pupils},creteil,"
           f"{first.attributes.get('education_priority', '')}\n")
    answer = _post_as(matrix, "academie_other", row)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [c["class_id"] for c in body["already"]] == [first.class_id]
    counts = {c["arm"]: c["classes"] for c in body["balance"]["counts"]}
    mine = {arm: sum(1 for c in own if c.arm == arm) for arm in counts}
    assert counts == mine
    assert "versailles" not in answer.text


def test_a_class_of_another_academie_is_refused_without_its_details(matrix: Matrix) -> None:
    """Créteil naming a Versailles class id learns nothing of it (school, académie, arm,
    pupils, other experiment) beyond that the id is not its own to enroll."""
    theirs = next(c for c in enrolled_classes(matrix.registry, EXPERIMENT, academie="versailles")
                  if c.school_uai == "0780001C")
    answer = _post_as(matrix, "academie_other",
                      f"{theirs.class_id},0930001W,CP,{theirs.pupils + 1},creteil,REP\n")
    assert answer.status_code == 200, answer.text
    (refused,) = answer.json()["refused"]
    assert refused["class_id"] == theirs.class_id
    for secret in ("0780001C", "versailles", theirs.arm):
        assert secret not in json.dumps(refused), f"the refusal shows {secret}: {refused}"


def test_tokens_are_stored_hashed_only(matrix: Matrix) -> None:
    with matrix.registry.connect() as connection:
        dump = " ".join(str(tuple(row)) for table in ("api_tokens", "audit_log")
                        for row in connection.execute(sa.text(f"SELECT * FROM {table}")))
    issued = [t for c, t in matrix.world.tokens.items() if t is not None and c != "bad"]
    assert issued and not [t for t in issued if t in dump]


def test_an_edtech_cannot_revoke_another_resources_key(matrix: Matrix) -> None:
    """Issue 17: a key of another resource is "no such key" (404) in the console, and
    still works at the gateway afterwards; its hash prefix is not listed either."""
    from experiments.access import issue_token

    other = issue_token(matrix.registry, "edtech", "scriptum", "not yours")
    prefix = hashlib.sha256(other.encode()).hexdigest()[:12]
    assert prefix not in matrix.portal.request("GET", "/ressource/cles",
                                               matrix.sessions["edtech"]).text
    answer = _portal_form(matrix, "edtech", "/ressource/cles/revocation", {"cle": prefix})
    assert answer.status_code == 404
    still = matrix.gateway.request("POST", "/v1/events:validate",
                                   json=[{**_event("cp-x"), "resource_id": "scriptum"}],
                                   headers={"X-API-Key": other})
    assert still.status_code == 200 and still.json()["valid"] == 1
# --- issue 17: collectivités, on PostgreSQL, with the broker ---------------------------


def test_collectivites_read_and_validate_only_their_schools(
        matrix: Matrix, postgres_cluster: PostgresCluster) -> None:
    """Each collectivité (a département, a commune) reads and validates the classes of
    the schools it equips, nothing of another's; académies cannot validate for it; every
    validation is audited with its author; the arms drawn at the second validation replay
    from the log. Through the API (gateway) and the portal, on PostgreSQL."""
    from experiments.enrollment.assignments import verify_allocations
    from experiments.enrollment.design import registered_design
    from tests.support.academie import DOUBLE, SIMULATED_NOW, build_academie_world, excel_file

    settings = matrix.world.settings.model_copy(update={
        "database_url": SecretStr(postgres_cluster.create_database(
            f"coll_{uuid.uuid4().hex[:8]}")),
        "simulated_now": SIMULATED_NOW,
        "collectivites": {"departement-93": ["0930001W", "0930002X"],
                          "commune-93066": ["0930003Y"]},
    })
    world = build_academie_world(settings)
    portal = PortalClient(create_portal(settings, registry=world.registry,
                                        clock=lambda: SIMULATED_NOW))
    try:
        with AppClient(create_app(settings, engine=world.registry)) as gateway:
            def api(method: str, who: str, **kwargs: Any) -> httpx.Response:
                return gateway.request(method, f"/v1/experiments/{DOUBLE}/validations",
                                       headers={"Authorization": f"Bearer {world.tokens[who]}"},
                                       **kwargs)

            sent = gateway.request(
                "POST", f"/v1/experiments/{DOUBLE}/enrollments", content=excel_file("CE2"),
                headers={"Authorization": f"Bearer {world.tokens['creteil']}",
                         "Content-Type": "text/csv"})
            assert sent.status_code == 200, sent.text
            assert [c["class_id"] for c in sent.json()["validated"]] == ["cr-a", "cr-b", "cr-d"]
            # Reads: each its own schools' classes, an académie its own, others nothing.
            seen = {who: [c["class_id"] for c in api("GET", who).json()["classes"]]
                    for who in ("dep93", "commune", "dep78", "creteil", "versailles")}
            assert seen == {"dep93": ["cr-a", "cr-b"], "commune": ["cr-d"], "dep78": [],
                            "creteil": ["cr-a", "cr-b", "cr-d"], "versailles": []}
            for who in ("officer", "edtech"):
                assert api("GET", who).status_code == 403
            # Writes: another collectivité's class is as unknown (404), nothing validated.
            assert api("POST", "commune", json={"class_ids": ["cr-a"]}).status_code == 404
            assert api("POST", "dep78", json={"class_ids": ["cr-d"]}).status_code == 404
            assert api("POST", "creteil", json={"class_ids": ["cr-a"]}).status_code == 403
            assert api("GET", "dep93").json()["classes"][0]["collectivite_validated"] is None
            done = api("POST", "commune", json={"class_ids": ["cr-d"]})
            assert done.status_code == 200, done.text
            assert [c["class_id"] for c in done.json()["enrolled"]] == ["cr-d"]
            assert done.json()["published"] == 1  # to the real topic
        # The portal: the département's page shows its classes, not the commune's.
        dep93, commune = (portal.sign_in(world.tokens[w]) for w in ("dep93", "commune"))
        page = portal.request("GET", f"/validations/{DOUBLE}", dep93)
        assert page.status_code == 200 and "cr-a" in page.text and "cr-d" not in page.text
        other = portal.request("GET", f"/validations/{DOUBLE}", commune).text
        assert "cr-a" not in other and "cr-b" not in other and "cr-d" in other
        csrf = CSRF.search(page.text)
        assert csrf is not None
        validated = portal.request(
            "POST", f"/validations/{DOUBLE}", dep93,
            content=urlencode([("csrf", csrf.group(1)), ("classe", "cr-b"),
                               ("classe", "cr-a")]).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert validated.status_code == 200, validated.text
        enrolled = {c.class_id: c for c in enrolled_classes(world.registry, DOUBLE)}
        assert sorted(enrolled) == ["cr-a", "cr-b", "cr-d"]
        assert verify_allocations(world.registry, registered_design(world.registry, DOUBLE)) == []
        with sa.orm.Session(world.registry) as session:
            actors = sorted(session.scalars(sa.select(AuditEntry.actor).where(
                AuditEntry.action == "enrollment.validate_collectivite")))
        assert actors == ["collectivite:commune-93066:saint-denis",
                          "collectivite:departement-93:cd93"]
    finally:
        portal.close()
