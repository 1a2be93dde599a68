"""The portal's programme pages (issue 22): the portfolio by programme and territory, the
evidence syntheses with their forest plots, the map of France by académie and its table.

Who sees what (the role matrix, ``tests/unit/test_portal_programmes.py``):

* officers, researchers and administrators: the programme's experiments they may read
  (officers: all; a researcher: the experiments of their scope), aggregates only;
* académies: the experiments of their own territory only;
* EdTech companies: nothing (403).

Mounted by :func:`experiments.portal.app.create_portal` with one line
(``add_programme_routes(app, portal)``); the routes use the portal's sign-in
(``portal.require``) and page rendering (``portal.render``) only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response

from experiments.access import Principal, Role
from experiments.portfolio.committee import programme_view
from experiments.portfolio.entries import PortfolioEntry, portfolio_entries
from experiments.portfolio.territory_map import ACADEMIE_NAMES

if TYPE_CHECKING:
    from experiments.portal.app import _Portal

__all__ = ["PROGRAMME_ROLES", "add_programme_routes", "visible_entries"]

PROGRAMME_ROLES: tuple[Role, ...] = ("officer", "researcher", "academie", "admin")
"""Roles that reach the programme pages (what each sees is narrowed by its scope)."""


def visible_entries(entries: list[PortfolioEntry], principal: Principal) -> list[PortfolioEntry]:
    """The entries a principal may see: an académie its territory's, others their scope's."""
    if principal.role == "admin":
        return entries
    if principal.role == "academie":
        return [e for e in entries if principal.scope in e.academies]
    return [e for e in entries if principal.can_act_for(e.id)]


def _filtered(entries: list[PortfolioEntry], academie: str, state: str, tag: str
              ) -> list[PortfolioEntry]:
    return [e for e in entries
            if (not academie or academie in e.academies) and (not state or e.state == state)
            and (not tag or tag in e.tags)]


def add_programme_routes(app: FastAPI, portal: _Portal) -> None:
    """Add the programme routes to the portal's ``app``, bound to its state."""
    router = app

    def readable(request: Request, programme: str | None = None) -> list[PortfolioEntry]:
        session = portal.require(request, PROGRAMME_ROLES)
        return visible_entries(portfolio_entries(portal.registry, programme),
                               session.principal)

    @router.get("/programmes", include_in_schema=False)
    def programmes(request: Request) -> Response:
        entries = readable(request)
        names = sorted({e.programme for e in entries})
        summary = [{"name": n, "experiments": sum(e.programme == n for e in entries),
                    "closed": sum(e.programme == n and e.closed for e in entries)}
                   for n in names]
        return portal.render(request, "programmes.html", programmes=summary)

    @router.get("/programmes/{programme}", include_in_schema=False)
    def programme_page(request: Request, programme: str, academie: str = "", etat: str = "",
                       type: str = "") -> Response:  # noqa: A002 (the query's French word)
        entries = readable(request, programme)
        shown = _filtered(entries, academie, etat, type)
        view = programme_view(shown, programme)
        filters: dict[str, Any] = {
            "academies": sorted({a for e in entries for a in e.academies}),
            "states": sorted({e.state for e in entries}),
            "tags": sorted({t for e in entries for t in e.tags}),
            "academie": academie, "etat": etat, "type": type,
        }
        return portal.render(request, "programme.html", view=view, filters=filters,
                             total=len(entries), academie_names=ACADEMIE_NAMES)
