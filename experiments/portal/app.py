"""The portal (``preuve serve``): impact reports and the portfolio for programme officers
and researchers, weekly usage of their own classes for académies.

Sign-in takes an API token (:mod:`experiments.access`) once, in a form (refused sign-ins
are audited and throttled per client address: :mod:`experiments.portal.sign_ins`); the
portal then keeps an opaque session id in an HTTP-only, ``SameSite=Strict`` cookie
(sessions live in the process' memory and end after ``settings.portal.session_ttl_s``,
at sign-out, when their token is revoked, or when the portal restarts). Every POST form
carries a CSRF token: the session's for sign-out, a double-submit cookie for sign-in.

Who reads what (each route checks it; see ``tests/unit/test_portal.py``). Officers and
researchers read the experiments their scope covers (``*`` or one experiment id);
académies, the experiments whose protocol names them:

================================  ==================  ==========  ======  =======
route                             officer/researcher  académie    edtech  none
================================  ==================  ==========  ======  =======
``/experiences`` (portfolio)      200                 403         403     302
``/experiences/ID``               200 (scope)         403         403     302
``/experiences/ID/rapports/RUN``  200 (scope)         403         403     302
``/experiences/ID/decision``      200 (scope)         403         403     302
``/usages``, ``/usages/ID``       403                 200 (own)   403     302
``/api/experiences``              200 (aggregates)    403         403     401
``/api/agregat``, ``.csv``         200 (closed, scope) 403         403     401
``/api/usages/ID``                403                 200 (own)   403     401
================================  ==================  ==========  ======  =======

Out of its scope, an experiment answers the same 404 as one that does not exist.
Admins read everything. Pages answer a missing session with a redirect to the sign-in
form, the JSON endpoints with 401. Officers only ever receive aggregates; the only rows
per class are an académie's own classes (they enrolled them), with cells of fewer than
10 pupils suppressed.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from analysis.options import LANGUAGES, Language
from analysis.report.document import report_summary, summary_sentence
from analysis.report.text import Text, format_number
from analysis.usage import LEVELS
from experiments.access import (
    AuditAction,
    Principal,
    Role,
    authenticate,
    record_audit,
    still_valid,
)
from experiments.database import registry_engine
from experiments.enrollment.publishing import Publish, kafka_publisher
from experiments.errors import RegistryError
from experiments.limits import BodyLimits, portal_body_limits
from experiments.portal.academie import PortalHooks, add_academie_routes
from experiments.portal.decisions import add_decision_routes
from experiments.portal.edtech import add_edtech_routes
from experiments.portal.national import add_aggregate_routes
from experiments.portal.programmes import add_programme_routes
from experiments.portal.sign_ins import SignInGuard
from experiments.portal.text import academie_name, format_date, translate
from experiments.portal.views import (
    ExperimentSummary,
    UsageTable,
    Verdict,
    experiment_ids,
    experiment_summary,
    run_views,
    weekly_usage,
)
from experiments.refusals import Problem, install_refusals, refusal_response
from experiments.runs.artefacts import ArtefactAltered, read_artefact
from experiments.runs.records import list_runs
from experiments.runs.sufficiency import recorded_checks
from experiments.settings import Settings

__all__ = ["SESSION_COOKIE", "create_portal", "describe_verdict"]

logger = logging.getLogger(__name__)

SESSION_COOKIE = "preuve_session"
_LOGIN_CSRF_COOKIE = "preuve_login_csrf"
_LANG_COOKIE = "preuve_lang"
_SIGN_IN_FIRST = "sign in first (no valid session)"
_STATIC = Path(__file__).parent / "static"
_ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]

_READERS: tuple[Role, ...] = ("officer", "researcher", "admin")
_ACADEMIES: tuple[Role, ...] = ("academie", "admin")

_PAGE_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                "frame-ancestors 'none'; base-uri 'none'")
# Stored reports are self-contained: inline styles and SVG figures, never a script.
_REPORT_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                  "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


# --- sessions ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Session:
    principal: Principal
    csrf: str
    expires: float


class _SessionBook:
    """Opaque session ids → principals, in memory, each with its CSRF token."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def open(self, principal: Principal) -> tuple[str, _Session]:
        session_id = secrets.token_urlsafe(32)
        session = _Session(principal, secrets.token_urlsafe(32), time.monotonic() + self._ttl)
        with self._lock:
            now = time.monotonic()
            for stale in [k for k, s in self._sessions.items() if s.expires <= now]:
                del self._sessions[stale]
            self._sessions[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> _Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires <= time.monotonic():
                del self._sessions[session_id]
                return None
        return session

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)


# --- refusals ------------------------------------------------------------------------


class _SignInNeeded(Exception):
    """No valid session: pages redirect to the sign-in form, the API answers 401."""


class _Forbidden(Exception):
    """A session whose role or scope does not cover the route: 403."""


class _NotFound(Exception):
    """No such experiment or run (for a caller allowed to ask): 404."""


class _BadForm(Exception):
    """A POST body that is not a small urlencoded form: 400."""


class _Altered(Exception):
    """A stored report or results file differs from its run record: 500, not served."""


def describe_verdict(language: Language, verdict: Verdict) -> str:
    """The verdict in ``language``: the report's summary sentence and evidence rating.

    Examples
    --------
    >>> describe_verdict("fr", Verdict("none"))
    "pas encore d'analyse"
    >>> from analysis.results import Effect
    >>> describe_verdict("fr", Verdict("effect", effect=Effect.from_json({"estimate": 2.5,
    ...     "months_progress": 3}), padlocks=3, resource="Lectio", outcome="fluence"))
    "Les élèves des classes ayant utilisé Lectio ont progressé de 2,5 points de plus en \
fluence que ceux des classes témoins, soit environ 3 mois de progrès supplémentaires. \
Note de solidité Preuve, inspirée de l'EEF : 3 sur 5."
    """
    if verdict.kind != "effect" or verdict.effect is None:
        return translate(language, f"verdict.{verdict.kind}")
    if verdict.results is not None:
        # The report's own summary: one sentence per treated arm, each followed by the
        # conclusion of the protocol's test (analysis.multiplicity.certainty), so the
        # portfolio never claims more than the report.
        brief = report_summary(verdict.results, protocol=verdict.protocol, lang=language)
        parts = [f"{arm['sentence']} {arm['sure'][-1]}" if arm["sure"] else arm["sentence"]
                 for arm in brief["arms"]] or [brief["sentence"]]
        sentence = " ".join(parts)
    else:
        sentence = summary_sentence(verdict.effect, resource=verdict.resource,
                                    outcome=verdict.outcome, unit=verdict.unit,
                                    lang=language)
    if verdict.padlocks is None:
        return sentence
    return f"{sentence} {Text(language)('rating', n=verdict.padlocks)}."


# --- the app -------------------------------------------------------------------------


class _Portal:
    """State shared by the routes: settings, registry, sessions, templates, clock."""

    def __init__(self, settings: Settings, registry: Engine,
                 clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.registry = registry
        self.clock = clock
        self.sessions = _SessionBook(settings.portal.session_ttl_s)
        self.sign_ins = SignInGuard(registry, settings.portal, clock)
        self.templates = Environment(
            loader=PackageLoader("experiments.portal.app", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.reports_root = (settings.state_dir / "reports").resolve()

    # who is calling

    def session(self, request: Request) -> _Session | None:
        session_id = request.cookies.get(SESSION_COOKIE)
        session = self.sessions.get(session_id)
        if session is not None and not still_valid(self.registry, session.principal):
            # Revoking a token ends its sessions now, not at their expiry.
            logger.info("portal: session of %s ended (token revoked)", session.principal.actor)
            self.sessions.close(session_id)
            return None
        return session

    def require(self, request: Request, roles: tuple[Role, ...]) -> _Session:
        session = self.session(request)
        if session is None:
            raise _SignInNeeded()
        if session.principal.role not in roles:
            raise _Forbidden()
        return session

    def readable(self, principal: Principal, experiment_id: str) -> bool:
        return principal.role in _READERS and principal.can_act_for(experiment_id)

    def summaries(self, principal: Principal) -> list[ExperimentSummary]:
        now = self.clock()
        return [experiment_summary(self.registry, eid, now)
                for eid in experiment_ids(self.registry) if self.readable(principal, eid)]

    def summary(self, principal: Principal, experiment_id: str) -> ExperimentSummary:
        if not self.readable(principal, experiment_id):
            raise _NotFound()  # as for a missing experiment: nothing tells it exists
        try:
            return experiment_summary(self.registry, experiment_id, self.clock())
        except RegistryError as error:
            raise _NotFound() from error

    def academie_summaries(self, principal: Principal) -> list[ExperimentSummary]:
        now = self.clock()
        summaries = [experiment_summary(self.registry, eid, now)
                     for eid in experiment_ids(self.registry)]
        if principal.role == "admin":
            return summaries
        return [s for s in summaries if principal.scope in s.academies]

    def usage(self, principal: Principal, experiment_id: str) -> tuple[ExperimentSummary,
                                                                        UsageTable]:
        try:
            summary = experiment_summary(self.registry, experiment_id, self.clock())
        except RegistryError as error:
            raise _NotFound() from error
        if principal.role != "admin" and principal.scope not in summary.academies:
            raise _NotFound()  # as for a missing experiment: nothing tells it exists
        academie = None if principal.role == "admin" else principal.scope
        return summary, weekly_usage(self.settings, self.registry, experiment_id, academie)

    # pages

    def language(self, request: Request) -> Language:
        """The caller's language (:func:`language_of`), for routes mounted from elsewhere."""
        return language_of(request)

    def render(self, request: Request, template: str, status: int = 200,
               **context: Any) -> HTMLResponse:
        language = language_of(request)
        session = self.session(request)

        def t(key: str, **values: object) -> str:
            return translate(language, key, **values)

        html = self.templates.get_template(template).render(
            t=t, lang=language, session=session, path=request.url.path,
            number=lambda v, d=2: format_number(v, language, d),
            date=lambda m, with_time=False: format_date(language, m, with_time),
            verdict=lambda v: describe_verdict(language, v),
            academies=lambda slugs: ", ".join(academie_name(s) for s in slugs),
            **context,
        )
        return HTMLResponse(html, status_code=status)


def language_of(request: Request) -> Language:
    """``?lang=`` first, then the language cookie, then French."""
    for candidate in (request.query_params.get("lang"), request.cookies.get(_LANG_COOKIE)):
        if candidate in LANGUAGES:
            return candidate
    return "fr"


def _wants_page(request: Request) -> bool:
    return not request.url.path.startswith("/api/")


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (no multipart: the portal's forms have two or three
    fields). Its size is capped before routing (:mod:`experiments.limits`); a body that
    is not such a form (more than 8 fields) is a 400, not a crash."""
    body = await request.body()
    try:
        fields = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=8)
    except ValueError:
        raise _BadForm() from None
    return {name: values[0] for name, values in fields.items()}


def _cookie(response: Response, settings: Settings, name: str, value: str,
            max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="strict", secure=settings.portal.secure_cookies)


class _PageHeaders:
    """Security headers on every answer, and the language cookie of ``?lang=`` (a plain
    ASGI middleware: it never touches the request body)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        chosen = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("lang", [""])[0]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", _PAGE_POLICY)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers["X-Frame-Options"] = "DENY"
                if not path.startswith("/static/"):
                    headers["Cache-Control"] = "no-store"
                if chosen in LANGUAGES:
                    cookie = Response()
                    _cookie(cookie, self.settings, _LANG_COOKIE, chosen, max_age=365 * 86400)
                    headers.append("set-cookie", cookie.headers["set-cookie"])
            await send(message)

        await self.app(scope, receive, with_headers)


def _portal(request: Request) -> _Portal:
    portal: _Portal = request.app.state.portal
    return portal


_State = Annotated[_Portal, Depends(_portal)]

router = APIRouter()
"""The portal's routes; :func:`create_portal` gives them their state (``app.state.portal``)."""


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/static/portal.css", include_in_schema=False)
def stylesheet() -> Response:
    return Response((_STATIC / "portal.css").read_bytes(), media_type="text/css")


@router.get("/", include_in_schema=False)
def home(request: Request, portal: _State) -> Response:
    session = portal.session(request)
    if session is None:
        return RedirectResponse("/connexion", 303)
    role = session.principal.role
    if role == "academie":
        return RedirectResponse("/usages", 303)
    if role == "edtech":  # issue 17: its console (no more 403 loop)
        return RedirectResponse("/ressource", 303)
    if role == "collectivite":
        return RedirectResponse("/validations", 303)
    if role in _READERS:
        return RedirectResponse("/experiences", 303)
    raise _Forbidden()


# --- sign-in and sign-out


def _sign_in_page(request: Request, portal: _Portal, suite: str, error_key: str | None,
                  status: int, headers: dict[str, str] | None = None) -> Response:
    csrf = secrets.token_urlsafe(32)
    response = portal.render(request, "connexion.html", status, csrf=csrf,
                             suite=_safe_target(suite), error_key=error_key)
    _cookie(response, portal.settings, _LOGIN_CSRF_COOKIE, csrf, max_age=3600)
    response.headers.update(headers or {})
    return response


@router.get("/connexion", include_in_schema=False)
def sign_in_form(request: Request, portal: _State, suite: str = "/") -> Response:
    return _sign_in_page(request, portal, suite, error_key=None, status=200)


@router.post("/connexion", include_in_schema=False)
async def sign_in(request: Request, portal: _State) -> Response:
    client = request.client.host if request.client is not None else "unknown"
    wait = portal.sign_ins.wait_s(client)
    if wait > 0:
        # Too many refused sign-ins from this address: its token is not even looked up.
        return _sign_in_page(request, portal, "/", "throttled", 429,
                             {"Retry-After": str(math.ceil(wait))})
    form = await _form(request)
    expected = request.cookies.get(_LOGIN_CSRF_COOKIE, "")
    suite = _safe_target(form.get("suite", "/"))
    if not expected or not secrets.compare_digest(expected, form.get("csrf", "")):
        return _sign_in_page(request, portal, suite, "bad_form", 400)
    principal = await run_in_threadpool(authenticate, portal.registry,
                                        form.get("token", "").strip())
    if principal is None:
        await run_in_threadpool(portal.sign_ins.refused, client)
        return _sign_in_page(request, portal, suite, "bad_token", 401)
    portal.sign_ins.signed_in(client)
    session_id, _ = portal.sessions.open(principal)
    await run_in_threadpool(_audit, portal.registry, principal, "portal.sign_in")
    logger.info("portal: %s signed in", principal.actor)
    response = RedirectResponse(suite, 303)
    _cookie(response, portal.settings, SESSION_COOKIE, session_id,
            max_age=portal.settings.portal.session_ttl_s)
    response.delete_cookie(_LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/deconnexion", include_in_schema=False)
async def sign_out(request: Request, portal: _State) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    session = await run_in_threadpool(portal.session, request)
    if session is None:  # checked before the body is read
        return RedirectResponse("/connexion", 303)
    form = await _form(request)
    if not secrets.compare_digest(session.csrf, form.get("csrf", "")):
        raise _Forbidden()
    portal.sessions.close(session_id)
    response = RedirectResponse("/connexion", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- officers and researchers: aggregates only


@router.get("/experiences", include_in_schema=False)
def portfolio(request: Request, portal: _State) -> Response:
    session = portal.require(request, _READERS)
    return portal.render(request, "portefeuille.html",
                         experiments=portal.summaries(session.principal))


@router.get("/experiences/{experiment_id}", include_in_schema=False)
def experiment_page(request: Request, portal: _State, experiment_id: str) -> Response:
    session = portal.require(request, _READERS)
    summary = portal.summary(session.principal, experiment_id)
    runs = run_views(list_runs(portal.registry, experiment_id))
    verdict = summary.verdict
    brief = None if verdict.results is None else report_summary(
        verdict.results, protocol=verdict.protocol, lang=language_of(request))
    checks = (recorded_checks(portal.registry, experiment_id, since=portal.clock())
              if session.principal.role in ("researcher", "admin") else [])
    return portal.render(request, "experience.html", experiment=summary, runs=runs,
                         brief=brief, checks=checks)


def _stored_file(request: Request, portal: _Portal, experiment_id: str, run_id: str,
                 kind: str) -> bytes:
    """A run's stored report (``html``) or results (``json``), as recorded."""
    session = portal.require(request, _READERS)
    portal.summary(session.principal, experiment_id)
    record = next((r for r in list_runs(portal.registry, experiment_id)
                   if r.run_id == run_id), None)
    name, digest = ((record.html_path, record.html_sha256) if kind == "html" else
                    (record.json_path, record.json_sha256)) if record else (None, None)
    if name is None:
        raise _NotFound()
    try:
        # The registry holds the run's files: served whatever machine wrote them.
        stored = read_artefact(portal.registry, run_id, kind, digest)
    except ArtefactAltered as error:
        logger.error("%s", error)
        raise _Altered() from error
    if stored is not None:
        return stored.content
    # A run recorded before the registry held files: its file in this portal's state_dir.
    path = Path(name).resolve()
    if not path.is_relative_to(portal.reports_root) or not path.is_file():
        logger.error("run %s: file %s is missing or outside %s", run_id, path,
                     portal.reports_root)
        raise _NotFound()
    content = path.read_bytes()
    if digest and hashlib.sha256(content).hexdigest() != digest:
        # Reports are immutable; a file that differs from its record is not served.
        logger.error("run %s: file %s differs from its recorded SHA-256", run_id, path)
        raise _Altered()
    return content


@router.get("/experiences/{experiment_id}/rapports/{run_id}", include_in_schema=False)
def report(request: Request, portal: _State, experiment_id: str, run_id: str) -> Response:
    return Response(_stored_file(request, portal, experiment_id, run_id, "html"),
                    media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": _REPORT_POLICY})


@router.get("/experiences/{experiment_id}/rapports/{run_id}/resultats.json",
            include_in_schema=False)
def results(request: Request, portal: _State, experiment_id: str, run_id: str) -> Response:
    return Response(_stored_file(request, portal, experiment_id, run_id, "json"),
                    media_type="application/json",
                    headers={"Content-Disposition":
                             f'attachment; filename="{experiment_id}-{run_id}.json"'})


@router.get("/api/experiences")
def portfolio_json(request: Request, portal: _State) -> list[dict[str, Any]]:
    session = portal.require(request, _READERS)
    language = language_of(request)
    return [_summary_json(s, language) for s in portal.summaries(session.principal)]


# --- académies: their own classes


@router.get("/usages", include_in_schema=False)
def usage_list(request: Request, portal: _State) -> Response:
    session = portal.require(request, _ACADEMIES)
    return portal.render(request, "usages_liste.html",
                         experiments=portal.academie_summaries(session.principal))


@router.get("/usages/{experiment_id}", include_in_schema=False)
def usage_page(request: Request, portal: _State, experiment_id: str) -> Response:
    session = portal.require(request, _ACADEMIES)
    summary, table = portal.usage(session.principal, experiment_id)
    return portal.render(request, "usages.html", experiment=summary, usage=table)


@router.get("/api/usages/{experiment_id}")
def usage_json(request: Request, portal: _State, experiment_id: str) -> dict[str, Any]:
    session = portal.require(request, _ACADEMIES)
    _, table = portal.usage(session.principal, experiment_id)
    return _usage_json(table)


def create_portal(settings: Settings, *, registry: Engine | None = None,
                  clock: Callable[[], datetime] | None = None,
                  publish: Publish | Literal["kafka"] | None = "kafka") -> FastAPI:
    """The portal's ASGI app.

    Parameters
    ----------
    settings
        ``state_dir`` (reports), the database, ``settings.portal`` (sessions, cookies,
        sign-in throttling, request limits).
    registry
        The registry's engine. None: ``registry_engine(settings)``.
    clock
        What time it is (the next scheduled analysis); tests inject it.
    publish
        Hands the académies' new enrollments to ``preuve.enrollments``: ``"kafka"`` (the
        enrollment API's producer), or None to leave them pending (a portal without a
        broker; ``preuve enroll EXPERIMENT --republish`` publishes them).

    Returns
    -------
    FastAPI
        Serve it with uvicorn (``preuve serve``) or test it in process.

    Examples
    --------
    >>> from experiments.database import migrate_all
    >>> settings = fresh_settings()
    >>> _ = migrate_all(settings)  # `preuve db migrate`: the portal itself never migrates
    >>> app = create_portal(settings)
    >>> sorted(app.openapi()["paths"])
    ['/api/agregat', '/api/agregat.csv', '/api/experiences', '/api/programmes', \
'/api/programmes/{programme}', '/api/usages/{experiment_id}']
    """
    # The portal reads with a read-only database role: it never migrates (no DDL), it
    # checks that the schemas are current (`preuve db migrate` is the explicit step).
    settings = settings.model_copy(update={"database_migrate": False})
    portal = _Portal(settings, registry if registry is not None else registry_engine(settings),
                     clock or (lambda: datetime.now(UTC)))
    app = FastAPI(title="Preuve portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.portal = portal
    app.state.registry = portal.registry

    app.add_middleware(_PageHeaders, settings=settings)
    # Outermost: the body cap runs before routing.
    app.add_middleware(BodyLimits, limits=portal_body_limits(settings))
    install_refusals(app)

    @app.exception_handler(_SignInNeeded)
    async def sign_in_needed(request: Request, _exc: _SignInNeeded) -> Response:
        if _wants_page(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/connexion?suite={quote(target, safe='')}", 302)
        return refusal_response(401, _SIGN_IN_FIRST,
                                [Problem(index=None, field=None, reason=_SIGN_IN_FIRST)])

    def refusal(status: int, title_key: str, detail: str) -> _ExceptionHandler:
        """A page (erreur.html, ``title_key`` and its ``_text``) or, for the API, JSON."""

        async def answer(request: Request, _exc: Exception) -> Response:
            if _wants_page(request):
                return portal.render(request, "erreur.html", status, title_key=title_key,
                                     text_key=f"{title_key}_text")
            return refusal_response(status, detail,
                                    [Problem(index=None, field=None, reason=detail)])

        return answer

    app.add_exception_handler(
        _Forbidden, refusal(403, "forbidden", "your role or scope does not cover this"))
    app.add_exception_handler(_NotFound, refusal(404, "not_found", "not found"))
    app.add_exception_handler(_BadForm, refusal(400, "bad_request",
                                                "the body is not a small urlencoded form"))

    @app.exception_handler(_Altered)
    async def altered(_request: Request, _exc: _Altered) -> Response:
        return Response("report altered since its run was recorded: not served", 500,
                        media_type="text/plain; charset=utf-8")

    app.include_router(router)
    add_programme_routes(app, portal)  # issue 22: experiments/portal/programmes.py
    add_decision_routes(app, portal)  # issue 19: experiments/portal/decisions.py
    add_aggregate_routes(app, portal)  # issue 19: experiments/portal/national.py
    add_edtech_routes(app, portal)  # issue 17: experiments/portal/edtech.py
    # issue 17: académies and collectivités, experiments/portal/academie.py
    add_academie_routes(app, portal, kafka_publisher(settings) if publish == "kafka"
                        else publish, PortalHooks(_Forbidden, _NotFound, _BadForm,
                                                  language_of, SESSION_COOKIE))
    return app


def _safe_target(target: str) -> str:
    """Only a path of this site after sign-in (never ``//evil`` or ``https://...``)."""
    # Browsers drop tabs and newlines in URLs ("/\t/evil" is "//evil"): no control
    # characters or spaces either.
    if (not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in target)):
        return "/"
    return target


def _audit(registry: Engine, principal: Principal, action: AuditAction) -> None:
    from sqlalchemy.orm import Session

    with Session(registry) as session, session.begin():
        record_audit(session, principal.actor, action, "portal")


def _summary_json(summary: ExperimentSummary, language: Language) -> dict[str, Any]:
    return {
        "id": summary.id,
        "title": summary.title,
        "state": summary.state,
        "academies": list(summary.academies),
        "resource": summary.resource,
        "protocol_version": summary.protocol_version,
        "protocol_sha256": summary.protocol_sha256,
        "classes_per_arm": summary.classes_per_arm,
        "verdict": {"kind": summary.verdict.kind, "analysis": summary.verdict.analysis,
                    "padlocks": summary.verdict.padlocks,
                    "text": describe_verdict(language, summary.verdict),
                    "effects": _verdict_effects(summary.verdict)},
        "next_analysis": None if summary.next_analysis is None else {
            "analysis": summary.next_analysis[0],
            "due_at": summary.next_analysis[1].isoformat()},
    }


def _verdict_effects(verdict: Verdict) -> list[dict[str, Any]]:
    """Each treated arm's primary effect and what the protocol's test concludes of it
    (:func:`analysis.multiplicity.certainty`: adjusted p against alpha, or against the
    look's boundary), the same conclusion as the report's."""
    from analysis.multiplicity import certainty
    from analysis.results import finite

    results = verdict.results
    if verdict.kind != "effect" or results is None:
        return []
    out = []
    for e in results.effects_where(role="primary", estimand="ITT", whole_sample=True):
        c = certainty(e, results)
        out.append({"contrast": e.contrast, "outcome": e.outcome,
                    "estimate": finite(e.estimate), "ci_low": finite(e.ci_low),
                    "ci_high": finite(e.ci_high), "ci_adjusted": False,
                    "p_value": finite(e.p_value), "p_adjusted": c.p,
                    "threshold": c.threshold, "adjustment": c.method, "conclusion": c.claim})
    return out


def _usage_json(table: UsageTable) -> dict[str, Any]:
    return {
        "experiment": table.experiment_id,
        "academie": table.academie,
        "weeks": [w.isoformat() for w in table.weeks],
        "classes": [
            {"class_id": c.class_id, "school_uai": c.school_uai, "arm": c.arm,
             "status": c.status,
             "weeks": [{"week": w.isoformat(),
                        "active_pupils": table.cells[c.class_id, w].pupils,
                        "active_minutes": table.cells[c.class_id, w].minutes}
                       for w in table.weeks]}
            for c in table.classes
        ],
        "totals": [{"week": w.isoformat(), "active_pupils": table.totals[w].pupils,
                    "active_minutes": table.totals[w].minutes} for w in table.weeks],
        "suppressed_below": 10,
        "levels": None if table.levels is None else {
            "levels": list(LEVELS),
            "observed": list(table.levels.observed),
            "threshold_minutes": table.levels.threshold_minutes,
            "idle_timeout_s": table.levels.idle_timeout_s,
            "arms": [{"arm": a.arm, "control": a.control, "pupils_enrolled": a.pupils_enrolled,
                      "reached": dict(zip(LEVELS, a.reached, strict=True))}
                     for a in table.levels.arms]},
    }
