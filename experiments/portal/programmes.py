"""The portal's programme pages (issue 22): the portfolio by programme and territory, the
evidence syntheses with their forest plots, the maps of France by académie and by
département (``?carte=academies|departements``, two links: the portal serves no script)
with their tables; and the same as JSON for programs and scripts (``/api/programmes``,
``/api/programmes/{programme}``: :mod:`experiments.portfolio.aggregates`). French first,
English with the portal's language switch (``?lang=en``, then its cookie).

Filters (page and API alike): ``academie``, ``departement``, ``etat`` (state), ``type``
(a protocol tag); the page's programme selector (``autre``) goes to another programme.

Who sees what (the role matrix, ``tests/integration/test_role_matrix.py``; in process,
``tests/unit/test_portal_programmes.py``):

* officers, researchers and administrators: the programme's experiments they may read
  (officers: all; a researcher: the experiments of their scope), aggregates only;
* académies: the experiments of their own territory only;
* EdTech companies: nothing (403); no session: the pages redirect to the sign-in form,
  the API answers 401.

Mounted by :func:`experiments.portal.app.create_portal` with one line
(``add_programme_routes(app, portal)``); the routes use the portal's sign-in
(``portal.require``), language (``portal.language``) and page rendering (``portal.render``)
only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from experiments.access import Principal, Role
from experiments.portfolio.aggregates import entry_json, synthesis_json
from experiments.portfolio.committee import programme_view
from experiments.portfolio.entries import PortfolioEntry, portfolio_entries
from experiments.portfolio.territory_map import ACADEMIE_NAMES, DEPARTEMENT_NAMES

if TYPE_CHECKING:
    from experiments.portal.app import _Portal

__all__ = ["PROGRAMME_ROLES", "add_programme_routes", "visible_entries"]

PROGRAMME_ROLES: tuple[Role, ...] = ("officer", "researcher", "academie", "admin")
"""Roles that reach the programme pages (what each sees is narrowed by its scope)."""

MAPS: tuple[str, ...] = ("academies", "departements")
"""The two maps of a programme page (``?carte=``): by académie (default), by département."""


def visible_entries(entries: list[PortfolioEntry], principal: Principal) -> list[PortfolioEntry]:
    """The entries a principal may see: an académie its territory's, others their scope's."""
    if principal.role == "admin":
        return entries
    if principal.role == "academie":
        return [e for e in entries if principal.scope in e.academies]
    return [e for e in entries if principal.can_act_for(e.id)]


def _filtered(entries: list[PortfolioEntry], academie: str, state: str, tag: str,
              departement: str = "") -> list[PortfolioEntry]:
    return [e for e in entries
            if (not academie or academie in e.academies) and (not state or e.state == state)
            and (not tag or tag in e.tags)
            and (not departement or departement in e.departements)]


def add_programme_routes(app: FastAPI, portal: _Portal) -> None:
    """Add the programme routes to the portal's ``app``, bound to its state."""
    router = app

    def readable(request: Request, programme: str | None = None) -> list[PortfolioEntry]:
        session = portal.require(request, PROGRAMME_ROLES)
        return visible_entries(portfolio_entries(portal.registry, programme),
                               session.principal)

    def summary(entries: list[PortfolioEntry]) -> list[dict[str, Any]]:
        names = sorted({e.programme for e in entries})
        return [{"name": n, "experiments": sum(e.programme == n for e in entries),
                 "closed": sum(e.programme == n and e.closed for e in entries)}
                for n in names]

    @router.get("/programmes", include_in_schema=False)
    def programmes(request: Request) -> Response:
        return portal.render(request, "programmes.html", programmes=summary(readable(request)))

    @router.get("/programmes/{programme}", include_in_schema=False)
    def programme_page(request: Request, programme: str, academie: str = "", etat: str = "",
                       type: str = "",  # noqa: A002 (the query's French word)
                       departement: str = "", carte: str = "academies",
                       autre: str = "") -> Response:
        if autre and autre != programme:  # the programme filter: another programme's page
            query = {k: v for k, v in request.query_params.items() if k != "autre"}
            return RedirectResponse(f"/programmes/{quote(autre, safe='')}"
                                    + (f"?{urlencode(query)}" if query else ""), 303)
        everything = readable(request)
        entries = [e for e in everything if e.programme == programme]
        shown = _filtered(entries, academie, etat, type, departement)
        view = programme_view(shown, programme, portal.language(request))
        filters: dict[str, Any] = {
            "programmes": sorted({e.programme for e in everything} | {programme}),
            "academies": sorted({a for e in entries for a in e.academies}),
            "departements": sorted({d for e in entries for d in e.departements}),
            "states": sorted({e.state for e in entries}),
            "tags": sorted({t for e in entries for t in e.tags}),
            "academie": academie, "etat": etat, "type": type, "departement": departement,
        }
        kept = {k: v for k, v in request.query_params.items()
                if k in ("academie", "etat", "type", "departement") and v}
        links = {m: f"?{urlencode({**kept, 'carte': m})}#territoires" for m in MAPS}
        return portal.render(request, "programme.html", view=view, filters=filters,
                             total=len(entries), academie_names=ACADEMIE_NAMES,
                             departement_names=DEPARTEMENT_NAMES,
                             carte=carte if carte in MAPS else "academies", map_links=links)

    @router.get("/api/programmes")
    def programmes_json(request: Request) -> list[dict[str, Any]]:
        """The programmes the caller may read, with their numbers of experiments."""
        return summary(readable(request))

    @router.get("/api/programmes/{programme}")
    def programme_json(request: Request, programme: str, academie: str = "", etat: str = "",
                       type: str = "",  # noqa: A002 (as the page's query)
                       departement: str = "") -> dict[str, Any]:
        """A programme's portfolio and syntheses (aggregates only), filtered as the page."""
        entries = _filtered(readable(request, programme), academie, etat, type, departement)
        view = programme_view(entries, programme, portal.language(request))
        return {
            "programme": programme,
            "data_as_of": None if view.data_as_of is None else view.data_as_of.isoformat(),
            "experiments": [entry_json(e) for e in view.entries],
            "syntheses": [synthesis_json(s) for s in view.syntheses],
        }
