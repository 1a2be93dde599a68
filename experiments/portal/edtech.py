"""The portal's EdTech console (issue 17), and the accessibility and legal pages.

An EdTech company signs in with one of its resource's keys and reads, for that resource
only (its token's scope):

* ``/ressource``: accepted events per day (counted in the stores of the experiments whose
  protocol names the resource; counts only, no learner or class id), refused events by
  reason with examples of its own payloads (the dead-letter index,
  :mod:`ingest.deadletters`: learner id removed), and events parked because their class is
  not enrolled, by class, with how to fix them (:mod:`ingest.stream.parking`: an
  enrollment that arrives within the ingress retention replays them);
* ``/ressource/cles``: its resource's keys; it creates one (the secret is shown once, in
  the answer to the form, never again: only its SHA-256 is stored) and revokes one (the
  gateway refuses it at once). Both are audited (``token.issue``, ``token.revoke``) in
  the EdTech's name.

Who reads what: the console is for ``edtech`` sessions (every other role 403, no session
a redirect to the sign-in form); a key of another resource cannot be revoked (the same
"no such key" as an unknown one). ``/accessibilite`` (« Déclaration d'accessibilité »)
and ``/mentions-legales`` are public, linked from every page's footer.

Mounted by :func:`experiments.portal.app.create_portal` with one line
(``add_edtech_routes(app, portal)``), as :mod:`experiments.portal.programmes`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import sqlalchemy as sa
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from experiments.access import ApiToken, Principal, Role, issue_token, record_audit
from experiments.errors import RegistryError
from experiments.portal.views import experiment_ids
from experiments.registry import registered_protocol
from experiments.settings import Settings
from experiments.store import ExperimentStore, events_table
from ingest.contract import identifying_text
from ingest.deadletters import DeadLetterRow, dead_letter_page, reason_counts
from ingest.stream.parking import parked_table

if TYPE_CHECKING:
    from experiments.portal.app import _Portal

__all__ = ["EDTECH_ROLES", "ResourceOverview", "add_edtech_routes", "resource_overview"]

EDTECH_ROLES: tuple[Role, ...] = ("edtech",)
"""Roles that reach the console: a resource's own keys (an admin has the CLI)."""

_EXAMPLES = 3  # example payloads per reason code
_DAYS_SHOWN = 60
_LABEL_MAX = 64


@dataclass(frozen=True)
class ParkedClass:
    class_id: str
    events: int
    first_parked: datetime
    deadline: datetime


@dataclass(frozen=True)
class ResourceOverview:
    """What the console shows of one resource."""

    resource_id: str
    accepted: list[tuple[date, int]]
    refused: list[tuple[str, int, list[DeadLetterRow]]]
    parked: list[ParkedClass]
    retention_days: int


@dataclass(frozen=True)
class KeyView:
    prefix: str
    label: str
    created_at: datetime
    state: str
    current: bool


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _experiments_of(registry: Engine, resource_id: str) -> list[str]:
    """The experiments whose registered protocol names ``resource_id``."""
    found = []
    for experiment_id in experiment_ids(registry):
        try:
            protocol = registered_protocol(registry, experiment_id).protocol
        except RegistryError:
            continue
        if protocol.resource.id == resource_id:
            found.append(experiment_id)
    return found


def accepted_per_day(settings: Settings, registry: Engine, resource_id: str
                     ) -> list[tuple[date, int]]:
    """Events stored per day (UTC) for ``resource_id``, newest first: counts only."""
    totals: dict[date, int] = {}
    day = sa.func.date(events_table.c.occurred_at)
    query = (sa.select(day, sa.func.count()).where(events_table.c.resource_id == resource_id)
             .group_by(day))
    for experiment_id in _experiments_of(registry, resource_id):
        with ExperimentStore(settings, experiment_id).engine.connect() as connection:
            for value, n in connection.execute(query):
                key = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
                totals[key] = totals.get(key, 0) + int(n)
    return sorted(totals.items(), reverse=True)[:_DAYS_SHOWN]


def parked_classes_of(registry: Engine, resource_id: str, retention_days: int
                      ) -> list[ParkedClass]:
    """The classes with events parked for ``resource_id``, most events first."""
    table = parked_table
    query = (sa.select(table.c.class_id, sa.func.count(), sa.func.min(table.c.parked_at))
             .where(table.c.resource_id == resource_id).group_by(table.c.class_id)
             .order_by(sa.func.count().desc(), table.c.class_id))
    with registry.connect() as connection:
        rows = list(connection.execute(query))
    return [ParkedClass(class_id, int(n), _aware(first),
                        _aware(first) + timedelta(days=retention_days))
            for class_id, n, first in rows]


def resource_overview(settings: Settings, registry: Engine, resource_id: str
                      ) -> ResourceOverview:
    """The console's figures for ``resource_id`` (stores, dead-letter index, parking)."""
    retention = settings.kafka.ingress_retention_days
    refused = [(code, n, dead_letter_page(registry, resource_id, limit=_EXAMPLES,
                                          code=code).items)
               for code, n in reason_counts(registry, resource_id)]
    return ResourceOverview(
        resource_id=resource_id,
        accepted=accepted_per_day(settings, registry, resource_id),
        refused=refused,
        parked=parked_classes_of(registry, resource_id, retention),
        retention_days=retention,
    )


def resource_keys(registry: Engine, principal: Principal) -> list[KeyView]:
    """The EdTech keys of the principal's resource, newest first (hash prefixes only)."""
    now = datetime.now(UTC)
    with sa.orm.Session(registry) as session:
        rows = session.scalars(
            sa.select(ApiToken).where(ApiToken.role == "edtech",
                                      ApiToken.scope == principal.scope)
            .order_by(ApiToken.created_at.desc())).all()
        return [KeyView(row.token_sha256[:12], row.label, _aware(row.created_at),
                        "revoked" if row.revoked else "active" if row.usable(now) else "expired",
                        row.token_sha256 == principal.token_sha256)
                for row in rows]


def revoke_resource_key(registry: Engine, principal: Principal, prefix: str) -> bool:
    """Revoke the principal's resource's key whose hash starts with ``prefix`` (12 hex
    digits); False when no key of that resource matches (another resource's included)."""
    if len(prefix) != 12 or any(c not in "0123456789abcdef" for c in prefix):
        return False
    with sa.orm.Session(registry) as session, session.begin():
        rows = session.scalars(
            sa.select(ApiToken).where(ApiToken.role == "edtech",
                                      ApiToken.scope == principal.scope,
                                      ApiToken.token_sha256.startswith(prefix))).all()
        if len(rows) != 1:
            return False
        rows[0].revoked = True
        record_audit(session, principal.actor, "token.revoke",
                     f"{rows[0].role}:{rows[0].scope}", {"label": rows[0].label,
                                                         "prefix": prefix})
    return True


def label_problem(label: str) -> str | None:
    """Why a key's name cannot be kept, or None (it stays in the registry and the audit log)."""
    if not label:
        return None  # the key is then named after its resource
    if len(label) > _LABEL_MAX:
        return f"at most {_LABEL_MAX} characters"
    if any(ord(c) < 0x20 for c in label):
        return "control characters"
    return identifying_text(label)


async def _form(request: Request) -> dict[str, str] | None:
    """A small urlencoded form (the body is capped before routing), or None."""
    body = await request.body()
    try:
        fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=8)
    except ValueError:
        return None
    return {name: values[0] for name, values in fields.items()}


def add_edtech_routes(app: FastAPI, portal: _Portal) -> None:
    """Add the EdTech console and the accessibility and legal pages to the portal's ``app``."""

    def forbidden(request: Request) -> Response:
        return portal.render(request, "erreur.html", 403, title_key="forbidden",
                             text_key="forbidden_text")

    def keys_page(request: Request, principal: Principal, status: int = 200,
                  **context: object) -> Response:
        session = portal.require(request, EDTECH_ROLES)
        keys = resource_keys(portal.registry, principal)
        response = portal.render(request, "cles.html", status, keys=keys,
                                 resource=principal.scope, csrf=session.csrf, **context)
        response.headers["Cache-Control"] = "no-store"  # a new key's secret is in it
        return response

    @app.get("/ressource", include_in_schema=False)
    def console(request: Request) -> Response:
        session = portal.require(request, EDTECH_ROLES)
        overview = resource_overview(portal.settings, portal.registry, session.principal.scope)
        return portal.render(request, "ressource.html", overview=overview)

    @app.get("/ressource/cles", include_in_schema=False)
    def keys(request: Request) -> Response:
        session = portal.require(request, EDTECH_ROLES)
        return keys_page(request, session.principal)

    @app.post("/ressource/cles", include_in_schema=False)
    async def create_key(request: Request) -> Response:
        session = await run_in_threadpool(portal.require, request, EDTECH_ROLES)
        form = await _form(request)
        if form is None or not secrets.compare_digest(session.csrf, form.get("csrf", "")):
            return forbidden(request)
        principal = session.principal
        label = form.get("label", "").strip()
        problem = label_problem(label)
        if problem is not None:
            return await run_in_threadpool(keys_page, request, principal, 400,
                                           label_error=problem, label=label)
        secret = await run_in_threadpool(
            issue_token, portal.registry, "edtech", principal.scope, label or principal.scope,
            principal.actor)
        return await run_in_threadpool(keys_page, request, principal, 201, secret=secret)

    @app.post("/ressource/cles/revocation", include_in_schema=False)
    async def revoke_key(request: Request) -> Response:
        session = await run_in_threadpool(portal.require, request, EDTECH_ROLES)
        form = await _form(request)
        if form is None or not secrets.compare_digest(session.csrf, form.get("csrf", "")):
            return forbidden(request)
        prefix = form.get("cle", "")
        done = await run_in_threadpool(revoke_resource_key, portal.registry,
                                       session.principal, prefix)
        if not done:
            return await run_in_threadpool(keys_page, request, session.principal, 404,
                                           unknown=True)
        if portal.session(request) is None:  # it revoked the key it signed in with
            return RedirectResponse("/connexion", 303)
        return await run_in_threadpool(keys_page, request, session.principal, 200,
                                       revoked=prefix)

    @app.get("/accessibilite", include_in_schema=False)
    def accessibility(request: Request) -> Response:
        return portal.render(request, "accessibilite.html")

    @app.get("/mentions-legales", include_in_schema=False)
    def legal(request: Request) -> Response:
        return portal.render(request, "mentions_legales.html",
                             retention_days=portal.settings.kafka.ingress_retention_days)
