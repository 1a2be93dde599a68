"""The national aggregate over HTTP (issue 19, item 6): ``GET /api/agregat`` (JSON, the
document of :func:`experiments.privacy.aggregate.to_json_document`) and
``GET /api/agregat.csv`` (the same rows as CSV), for programme officers, researchers and
administrators, over the closed experiments their scope covers (``*`` or one experiment
id). Aggregates only, small cells suppressed; académies, EdTechs and assessors get 403,
a caller without a session 401. Mounted by :func:`experiments.portal.app.create_portal`
with one line (``add_aggregate_routes(app, portal)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response

from experiments.access import Role
from experiments.privacy.aggregate import aggregate_rows, to_csv, to_json_document

if TYPE_CHECKING:
    from experiments.portal.app import _Portal

__all__ = ["AGGREGATE_READERS", "add_aggregate_routes"]

AGGREGATE_READERS: tuple[Role, ...] = ("officer", "researcher", "admin")


def add_aggregate_routes(app: FastAPI, portal: _Portal) -> None:
    """Add the aggregate routes to the portal's ``app``, bound to its state."""

    def rows(request: Request) -> list[dict[str, Any]]:
        principal = portal.require(request, AGGREGATE_READERS).principal
        return aggregate_rows(portal.registry, principal.can_act_for)

    @app.get("/api/agregat")
    def aggregate_json(request: Request) -> dict[str, Any]:
        return to_json_document(rows(request))

    @app.get("/api/agregat.csv")
    def aggregate_csv(request: Request) -> Response:
        return Response(to_csv(rows(request)), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition":
                                 'attachment; filename="national-aggregate.csv"'})
