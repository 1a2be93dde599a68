"""The portal's page of the post-experiment step (issue 19): the decision rule evaluated
on the final analysis, the research team's decision, and the programme officer's
acknowledgement, without which the experiment cannot be closed
(:mod:`experiments.closing`).

===================================  ===========  ===========  =====  ======  ====
route                                officer      researcher   admin  others  none
===================================  ===========  ===========  =====  ======  ====
``GET /experiences/ID/decision``     200 (scope)  200 (scope)  200    403     302
``POST /experiences/ID/decision``    303 (scope)  403          403    403     302
``GET /experiences/ID/cloture``      200 (scope)  200 (scope)  200    403     302
===================================  ===========  ===========  =====  ======  ====

Only an officer acknowledges (issue 19: "the programme officer's acknowledgement"); the
closing report answers 404 until the experiment is closed. The form carries the
session's CSRF token and the id of the decision it showed, so that a decision recorded
again in between is not acknowledged unseen. The acknowledgement is audited
(``experiment.decision_acknowledgement``). Out of scope, an experiment answers 404 like
one that does not exist. Mounted by :func:`experiments.portal.app.create_portal` with
one line (``add_decision_routes(app, portal)``).
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from analysis.options import LANGUAGES, Language
from experiments.access import Role
from experiments.closing import (
    DecisionRecord,
    acknowledge_decision,
    closing_report_paths,
    latest_decision,
)
from experiments.errors import RegistryError
from experiments.portal.text import translate
from experiments.registry import registered_protocol
from experiments.runs.records import list_runs

if TYPE_CHECKING:
    from experiments.portal.app import _Portal

__all__ = ["ACKNOWLEDGING_ROLES", "DECISION_READERS", "add_decision_routes"]

DECISION_READERS: tuple[Role, ...] = ("officer", "researcher", "admin")
ACKNOWLEDGING_ROLES: tuple[Role, ...] = ("officer",)
# The closing report is self-contained (inline style), like the impact reports.
_REPORT_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                  "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _language(request: Request) -> Language:
    for candidate in (request.query_params.get("lang"), request.cookies.get("preuve_lang")):
        if candidate in LANGUAGES:
            return candidate
    return "fr"


def _evaluated(portal: _Portal, experiment_id: str, lang: str) -> tuple[str | None,
                                                                        list[str]]:
    """The rule of the protocol in force, and its evaluation on the latest final run."""
    from analysis.report.document import decision_lines

    protocol = registered_protocol(portal.registry, experiment_id).protocol
    rule = protocol.decision.rule if protocol.decision is not None else None
    finals = [r for r in list_runs(portal.registry, experiment_id, "final")
              if r.status == "done" and r.results_json]
    if rule is None or not finals:
        return rule, []
    final = finals[-1]
    used = registered_protocol(portal.registry, experiment_id, final.protocol_version).protocol
    return rule, decision_lines(used, json.loads(final.results_json or "{}"), lang)[1:]


def add_decision_routes(app: FastAPI, portal: _Portal) -> None:
    """Add the decision routes to the portal's ``app``, bound to its state."""

    def page(request: Request, experiment_id: str, status: int = 200,
             message: str | None = None) -> Response:
        session = portal.require(request, DECISION_READERS)
        summary = portal.summary(session.principal, experiment_id)  # 404 out of scope
        lang = _language(request)
        rule, evaluated = _evaluated(portal, experiment_id, lang)
        decision = latest_decision(portal.registry, experiment_id)
        can = (session.principal.role in ACKNOWLEDGING_ROLES and decision is not None
               and decision.acknowledged_at is None and summary.state == "analysing")
        closing = closing_report_paths(portal.settings.state_dir, experiment_id)[lang]
        return portal.render(request, "decision.html", status, experiment=summary,
                             rule=rule, evaluated=evaluated, decision=decision,
                             can_acknowledge=can, message=message,
                             closing_report=summary.state == "closed" and closing.is_file())

    @app.get("/experiences/{experiment_id}/decision", include_in_schema=False)
    def decision_page(request: Request, experiment_id: str) -> Response:
        return page(request, experiment_id)

    @app.post("/experiences/{experiment_id}/decision", include_in_schema=False)
    async def acknowledge(request: Request, experiment_id: str) -> Response:
        # Who is asking is checked before the body is read.
        session = await run_in_threadpool(portal.require, request, ACKNOWLEDGING_ROLES)
        await run_in_threadpool(portal.summary, session.principal, experiment_id)
        body = (await request.body()).decode("utf-8", errors="replace")
        try:
            form = {k: v[0] for k, v in parse_qs(body, max_num_fields=8).items()}
        except ValueError:
            form = {}
        if not secrets.compare_digest(session.csrf, form.get("csrf", "")):
            return portal.render(request, "erreur.html", 403, title_key="forbidden",
                                 text_key="forbidden_text")
        shown = form.get("decision_id", "")
        try:
            record: DecisionRecord = await run_in_threadpool(
                acknowledge_decision, portal.registry, experiment_id,
                session.principal.actor, int(shown) if shown.isdigit() else -1)
        except RegistryError as error:
            lang = _language(request)
            return await run_in_threadpool(
                page, request, experiment_id, 409,
                translate(lang, "decision.refused", reason=error.reason))
        del record
        return Response(status_code=303,
                        headers={"Location": f"/experiences/{experiment_id}/decision"})

    @app.get("/experiences/{experiment_id}/cloture", include_in_schema=False)
    def closing_report(request: Request, experiment_id: str) -> Response:
        session = portal.require(request, DECISION_READERS)
        summary = portal.summary(session.principal, experiment_id)
        path = closing_report_paths(portal.settings.state_dir, experiment_id)[
            _language(request)]
        if summary.state != "closed" or not path.is_file():
            return portal.render(request, "erreur.html", 404, title_key="not_found",
                                 text_key="not_found_text")
        return Response(path.read_bytes(), media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": _REPORT_POLICY})


