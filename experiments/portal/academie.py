"""The académies' and collectivités' pages (issue 17): enrollment without a terminal.

An académie (DRANE/DANE staff) uploads its classes (or pupils) file, including the one
Excel writes in France (``;``, Windows-1252, French headers:
:mod:`experiments.enrollment.files`); the **preview** lists every row that would be
refused, with its reason, before anything is written; **confirming** enrolls and
randomises the file; its classes' arms and the balance table are readable in every state
of the experiment; a class or a pupil is **withdrawn** with a reason. When the protocol
asks for it (``enrollment: {validations: [academie, collectivite]}``), confirming records
the académie's validation, and the **collectivité** that equips the school validates the
class on ``/validations/ID``: it is randomised then
(:mod:`experiments.enrollment.validations`).

Every write goes through the enrollment API's own functions
(:mod:`experiments.enrollment.api`: the same service as ``preuve enroll`` and ``POST
/v1/experiments/…``, the same audit entries), never a second code path. Forms carry the
session's CSRF token; the upload is capped at ``portal.server.max_upload_bytes``, the
other forms at the portal's form size (:mod:`experiments.limits`).

Who reads what (the role matrix, ``tests/integration/test_role_matrix.py``):

=========================================  =============  ============  ======
route                                      académie       collectivité  others
=========================================  =============  ============  ======
``/inscriptions``, ``/inscriptions/ID``    200 (own)      403           403
``POST /inscriptions/ID/…`` (file, etc.)   own classes    403           403
``/validations``, ``/validations/ID``      403            200 (own)     403
``POST /validations/ID``                   403            own schools   403
=========================================  =============  ============  ======

Admins may do everything. An experiment outside an académie's territory, or without a
collectivité's validation for a collectivité, answers the same 404 as a missing one.
"""

from __future__ import annotations

import email.parser
import email.policy
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from experiments.access import Principal, Role
from experiments.enrollment.api import (
    EnrollmentContext,
    WithdrawalRequest,
    balance_for,
    collectivite_schools,
    enrollment_answer,
    withdrawal_answer,
)
from experiments.enrollment.assignments import enrolled_classes
from experiments.enrollment.design import (
    ENROLLING_STATES,
    enrollment_design,
    registered_design,
)
from experiments.enrollment.publishing import Publish
from experiments.enrollment.validations import pending_classes, validate_as_collectivite
from experiments.errors import EnrollmentError, RegistryError
from experiments.portal.views import ExperimentSummary, experiment_ids, experiment_summary

if TYPE_CHECKING:
    from experiments.portal.app import _Portal, _Session

__all__ = ["ACADEMIE_ROLES", "COLLECTIVITE_ROLES", "PortalHooks", "add_academie_routes"]

ACADEMIE_ROLES: tuple[Role, ...] = ("academie", "admin")
COLLECTIVITE_ROLES: tuple[Role, ...] = ("collectivite", "admin")
#: How long an uploaded file waits for its confirmation (in the portal's memory only).
PREVIEW_TTL_S = 1800.0
# A validation form: the CSRF token and up to 500 class ids (ValidationRequest's cap).
_MAX_VALIDATION_FIELDS = 502


@dataclass(frozen=True)
class _Upload:
    session_id: str
    experiment_id: str
    name: str
    body: bytes
    expires: float


class _Uploads:
    """Files previewed and not confirmed yet, by an opaque id bound to its session."""

    def __init__(self) -> None:
        self._files: dict[str, _Upload] = {}
        self._lock = threading.Lock()

    def keep(self, session_id: str, experiment_id: str, name: str, body: bytes) -> str:
        key = secrets.token_urlsafe(24)
        with self._lock:
            now = time.monotonic()
            for stale in [k for k, u in self._files.items() if u.expires <= now]:
                del self._files[stale]
            self._files[key] = _Upload(session_id, experiment_id, name, body,
                                       now + PREVIEW_TTL_S)
        return key

    def take(self, key: str, session_id: str, experiment_id: str) -> _Upload | None:
        with self._lock:
            upload = self._files.get(key)
            if (upload is None or upload.session_id != session_id
                    or upload.experiment_id != experiment_id
                    or upload.expires <= time.monotonic()):
                return None
            del self._files[key]
            return upload


class _BadUpload(Exception):
    """A body that is not the upload form."""


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """The fields of a ``multipart/form-data`` body: name → (file name, bytes).

    Parsed with the standard library's MIME parser rather than python-multipart, which
    is not among Preuve's dependencies: the upload form has two fields, the body is
    already capped (:mod:`experiments.limits`), and the email package parses MIME
    multipart bodies, which is what form-data is (RFC 7578).
    """
    if not content_type.startswith("multipart/form-data"):
        raise _BadUpload()
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise _BadUpload()
    fields: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        fields[name] = (part.get_filename() or "", payload if isinstance(payload, bytes)
                        else b"")
    return fields


def _reason(language: str, exc: HTTPException) -> str:
    """The message of a refusal of the enrollment service, in the page's language."""
    detail = exc.detail
    if isinstance(detail, dict):
        return str(detail.get("raison" if language == "fr" else "reason", detail))
    return str(detail)


@dataclass(frozen=True)
class PortalHooks:
    """What these routes take from :mod:`experiments.portal.app` (passed in, so that this
    module does not import it: no import cycle): its refusals and helpers."""

    forbidden: type[Exception]
    not_found: type[Exception]
    bad_form: type[Exception]
    language_of: Callable[[Request], str]
    session_cookie: str


def _upload_key(exc: HTTPException) -> str:
    """The page's words for a refused file (the service's reason follows them)."""
    return {400: "upload.unreadable", 403: "upload.other_academie",
            409: "upload.closed"}.get(exc.status_code, "upload.refused")


def add_academie_routes(app: FastAPI, portal: _Portal, publish: Publish | None,
                        hooks: PortalHooks) -> None:
    """Add the académie and collectivité routes to the portal's ``app``.

    ``publish`` hands new enrollments to ``preuve.enrollments`` (None leaves them
    pending, published later by ``preuve enroll EXPERIMENT --republish`` or the next
    enrollment).
    """
    _BadForm, _Forbidden, _NotFound = hooks.bad_form, hooks.forbidden, hooks.not_found
    language_of, SESSION_COOKIE = hooks.language_of, hooks.session_cookie  # noqa: N806

    uploads = _Uploads()
    context = EnrollmentContext(portal.settings, portal.registry, publish)

    def own_experiment(principal: Principal, experiment_id: str) -> ExperimentSummary:
        try:
            summary = experiment_summary(portal.registry, experiment_id, portal.clock())
        except RegistryError as error:
            raise _NotFound() from error
        if principal.role != "admin" and principal.scope not in summary.academies:
            raise _NotFound()  # as for a missing experiment: nothing tells it exists
        return summary

    def academie_of(principal: Principal) -> str | None:
        return None if principal.role == "admin" else principal.scope

    def checked(session: _Session, form: dict[str, list[str]]) -> None:
        if not secrets.compare_digest(session.csrf, (form.get("csrf") or [""])[0]):
            raise _Forbidden()

    async def small_form(request: Request, max_fields: int = 8) -> dict[str, list[str]]:
        body = await request.body()
        try:
            return parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=max_fields)
        except ValueError:
            raise _BadForm() from None

    def enrollment_page(request: Request, session: _Session, experiment_id: str,
                        status: int = 200, **extra: Any) -> Response:
        principal = session.principal
        summary = own_experiment(principal, experiment_id)
        design = registered_design(portal.registry, experiment_id)
        academie = academie_of(principal)
        classes = enrolled_classes(portal.registry, experiment_id, academie=academie)
        waiting = pending_classes(portal.registry, experiment_id, academie=academie,
                                  waiting=True) if design.double_validation else []
        return portal.render(
            request, "inscriptions.html", status, experiment=summary, design=design,
            classes=classes, waiting=waiting,
            balance=balance_for(portal.registry, design, academie) if classes else None,
            enrolling=summary.state in ENROLLING_STATES, **extra)

    @app.get("/inscriptions", include_in_schema=False)
    def enrollment_list(request: Request) -> Response:
        session = portal.require(request, ACADEMIE_ROLES)
        return portal.render(request, "inscriptions_liste.html",
                             experiments=portal.academie_summaries(session.principal))

    @app.get("/inscriptions/{experiment_id}", include_in_schema=False)
    def enrollment(request: Request, experiment_id: str, retrait: str = "") -> Response:
        session = portal.require(request, ACADEMIE_ROLES)
        return enrollment_page(request, session, experiment_id,
                               withdrawn=retrait if retrait else None)

    @app.post("/inscriptions/{experiment_id}/fichier", include_in_schema=False)
    async def upload(request: Request, experiment_id: str) -> Response:
        session = await run_in_threadpool(portal.require, request, ACADEMIE_ROLES)
        await run_in_threadpool(own_experiment, session.principal, experiment_id)
        body = await request.body()  # after the session was checked; capped by BodyLimits
        try:
            fields = _multipart(request.headers.get("content-type", ""), body)
        except _BadUpload:
            raise _BadForm() from None
        checked(session, {"csrf": [fields.get("csrf", ("", b""))[1].decode(errors="replace")]})
        name, data = fields.get("fichier", ("", b""))
        language = language_of(request)
        if not data.strip():
            return await run_in_threadpool(enrollment_page, request, session, experiment_id,
                                           400, error_key="upload.empty")
        try:
            answer = await run_in_threadpool(enrollment_answer, context, experiment_id, data,
                                             False, session.principal, preview=True,
                                             source="portal")
        except HTTPException as exc:
            return await run_in_threadpool(enrollment_page, request, session, experiment_id,
                                           exc.status_code, error_key=_upload_key(exc),
                                           error=_reason(language, exc))
        key = uploads.keep(request.cookies.get(SESSION_COOKIE, ""), experiment_id,
                           name or "fichier.csv", data)
        summary = own_experiment(session.principal, experiment_id)
        design = registered_design(portal.registry, experiment_id)
        return portal.render(request, "inscription_apercu.html", experiment=summary,
                             design=design, preview=answer, upload=key,
                             file_name=name or "fichier.csv")

    @app.post("/inscriptions/{experiment_id}/confirmation", include_in_schema=False)
    async def confirm(request: Request, experiment_id: str) -> Response:
        session = await run_in_threadpool(portal.require, request, ACADEMIE_ROLES)
        form = await small_form(request)
        checked(session, form)
        upload = uploads.take((form.get("apercu") or [""])[0],
                              request.cookies.get(SESSION_COOKIE, ""), experiment_id)
        if upload is None:
            return await run_in_threadpool(enrollment_page, request, session, experiment_id,
                                           409, error_key="upload.expired")
        language = language_of(request)
        try:
            answer = await run_in_threadpool(enrollment_answer, context, experiment_id,
                                             upload.body, False, session.principal,
                                             source="portal")
        except HTTPException as exc:
            return await run_in_threadpool(enrollment_page, request, session, experiment_id,
                                           exc.status_code, error_key=_upload_key(exc),
                                           error=_reason(language, exc))
        return await run_in_threadpool(enrollment_page, request, session, experiment_id,
                                       200, result=answer, file_name=upload.name)

    @app.post("/inscriptions/{experiment_id}/retrait", include_in_schema=False)
    async def withdrawal(request: Request, experiment_id: str) -> Response:
        session = await run_in_threadpool(portal.require, request, ACADEMIE_ROLES)
        form = await small_form(request)
        checked(session, form)
        await run_in_threadpool(own_experiment, session.principal, experiment_id)
        values = {k: v[0].strip() for k, v in form.items() if k != "csrf" and v[0].strip()}
        try:
            body = WithdrawalRequest(class_id=values.get("class_id", ""),
                                     reason=values.get("motif", ""),
                                     learner_id=values.get("eleve") or None)
        except ValueError:
            return await run_in_threadpool(enrollment_page, request, session, experiment_id,
                                           400, error_key="withdraw.incomplete")
        try:
            done = await run_in_threadpool(withdrawal_answer, context, experiment_id, body,
                                           session.principal)
        except HTTPException as exc:
            key = {404: "withdraw.unknown", 409: "withdraw.refused"}.get(exc.status_code,
                                                                         "withdraw.bad_reason")
            return await run_in_threadpool(enrollment_page, request, session, experiment_id,
                                           exc.status_code, error_key=key,
                                           error=_reason(language_of(request), exc))
        return RedirectResponse(
            f"/inscriptions/{experiment_id}?retrait={done['class_id']}", 303)

    # --- collectivités

    def validation_experiments(principal: Principal) -> list[tuple[ExperimentSummary, int]]:
        schools = collectivite_schools(portal.settings, principal)
        found = []
        for eid in experiment_ids(portal.registry):
            try:
                design = registered_design(portal.registry, eid)
            except RegistryError:
                continue
            if design.double_validation:
                waiting = pending_classes(portal.registry, eid, schools=schools, waiting=True)
                found.append((experiment_summary(portal.registry, eid, portal.clock()),
                              len(waiting)))
        return found

    def validation_page(request: Request, session: _Session, experiment_id: str,
                        status: int = 200, **extra: Any) -> Response:
        try:
            design = registered_design(portal.registry, experiment_id)
        except RegistryError as error:
            raise _NotFound() from error
        if not design.double_validation:
            raise _NotFound()
        schools = collectivite_schools(portal.settings, session.principal)
        classes = pending_classes(portal.registry, experiment_id, schools=schools)
        enrolled = {c.class_id: c for c in enrolled_classes(portal.registry, experiment_id)
                    if c.class_id in {p.class_id for p in classes}}
        summary = experiment_summary(portal.registry, experiment_id, portal.clock())
        return portal.render(request, "validations.html", status, experiment=summary,
                             classes=classes, enrolled=enrolled,
                             enrolling=summary.state in ENROLLING_STATES, **extra)

    @app.get("/validations", include_in_schema=False)
    def validation_list(request: Request) -> Response:
        session = portal.require(request, COLLECTIVITE_ROLES)
        return portal.render(request, "validations_liste.html",
                             experiments=validation_experiments(session.principal),
                             schools=collectivite_schools(portal.settings, session.principal))

    @app.get("/validations/{experiment_id}", include_in_schema=False)
    def validations(request: Request, experiment_id: str) -> Response:
        session = portal.require(request, COLLECTIVITE_ROLES)
        return validation_page(request, session, experiment_id)

    @app.post("/validations/{experiment_id}", include_in_schema=False)
    async def validate(request: Request, experiment_id: str) -> Response:
        session = await run_in_threadpool(portal.require, request, COLLECTIVITE_ROLES)
        form = await small_form(request, _MAX_VALIDATION_FIELDS)
        checked(session, form)
        chosen = [c for c in form.get("classe", []) if c]
        if not chosen:
            return await run_in_threadpool(validation_page, request, session, experiment_id,
                                           400, error_key="validate.none")

        def run() -> Response:
            try:
                design = registered_design(portal.registry, experiment_id)
            except RegistryError as error:
                raise _NotFound() from error
            if not design.double_validation:
                raise _NotFound()
            schools = collectivite_schools(portal.settings, session.principal)
            if schools is None:  # an admin validates for every school
                schools = frozenset(c.school_uai for c in pending_classes(
                    portal.registry, experiment_id))
            try:
                design = enrollment_design(portal.registry, experiment_id)[0]
                outcome = validate_as_collectivite(
                    portal.registry, design, chosen, schools=schools,
                    actor=session.principal.actor, publish=publish,
                    today=portal.settings.today())
            except EnrollmentError as exc:
                unknown = exc.field == "class_id"
                return validation_page(request, session, experiment_id,
                                       404 if unknown else 409,
                                       error_key="validate.not_waiting" if unknown
                                       else "validate.closed", error=exc.reason)
            return validation_page(request, session, experiment_id, 200,
                                   validated=outcome.enrolled)

        return await run_in_threadpool(run)
