"""The committee document of one programme (HTML, and PDF): portfolio, syntheses, costs
against effects, what each experiment decided, reproducible from the registry.

The document states the date of its data (the latest due date of the final analyses it
reads) and, for every experiment, the protocol hash, the run id and the SHA-256 of the
results JSON it took its numbers from, so that anyone with the registry can check it.
Regenerating it from the same registry gives the same bytes, except the generation time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from analysis.options import MIN_CELL_PUPILS
from analysis.report.figures import svg_of
from analysis.report.synthesis_figure import synthesis_forest_figure
from analysis.report.text import format_number
from analysis.results import finite
from experiments.portfolio.entries import PortfolioEntry, SynthesisScope, portfolio_syntheses
from experiments.portfolio.territory_map import territory_map_svg, territory_rows

__all__ = ["ProgrammeView", "programme_view", "render_committee", "write_committee"]

_KINDS = {"programme": "Programme", "resource": "Ressource", "tag": "Type de ressource"}
_STATES = {"draft": "brouillon", "registered": "enregistrée", "enrolling": "inclusions",
           "running": "en cours", "analysing": "en analyse", "closed": "close"}


def _number(value: Any, digits: int = 2, signed: bool = False) -> str:
    return format_number(value, "fr", digits, signed=signed)


def _usage(entry: PortfolioEntry) -> str:
    parts = []
    for arm, minutes, share in entry.usage:
        text = f"{arm} : {'—' if minutes is None else _number(minutes, 0)} min"
        if share is not None:
            text += f", {_number(100 * share, 0)} % assidus"
        parts.append(text)
    return " ; ".join(parts) or "—"


def _pupils(value: int | None) -> str:
    if value is None:
        return "masqué"
    if value < MIN_CELL_PUPILS:
        return f"< {MIN_CELL_PUPILS}"
    return _number(value)


@dataclass(frozen=True)
class ProgrammeView:
    """What a programme page and the committee document show (aggregates only)."""

    programme: str
    entries: tuple[PortfolioEntry, ...]
    syntheses: tuple[SynthesisScope, ...]
    data_as_of: datetime | None
    rows: list[dict[str, str]]
    synthesis_blocks: list[dict[str, Any]]
    territory_table: list[dict[str, str]]
    map_svg: str
    costs: list[dict[str, str]]
    decisions: list[dict[str, str]]
    provenance: list[dict[str, str]]
    funding: list[dict[str, str]]


def _synthesis_block(scope: SynthesisScope) -> dict[str, Any]:
    s = scope.synthesis
    pupils = s.n_learners
    title = f"{_KINDS[scope.kind]} « {scope.name} »"
    block: dict[str, Any] = {
        "title": title, "k": s.k, "pupils": _pupils(pupils),
        "excluded": ", ".join(scope.excluded),
        "studies": [{"label": st.label, "g": _number(st.hedges_g, signed=True),
                     "low": _number(st.hedges_g - 1.96 * st.std_error),
                     "high": _number(st.hedges_g + 1.96 * st.std_error),
                     "pupils": _pupils(st.n_learners), "rating": st.rating or "—"}
                    for st in s.studies],
        "pooled": None, "svg": "",
    }
    if s.k == 0:
        return block
    if s.estimable:
        block["pooled"] = {
            "g": _number(s.estimate, signed=True), "low": _number(s.ci_low),
            "high": _number(s.ci_high), "pi_low": _number(s.pi_low),
            "pi_high": _number(s.pi_high), "tau2": _number(s.tau2, 3),
            "i2": _number(s.i2, 0), "months": "—" if s.months_progress is None
            else _number(s.months_progress, signed=True),
            "p": _number(s.p_value, 3), "df": _number(s.df, 0),
        }
        pooled = block["pooled"]
        description = (f"Effet combiné g = {pooled['g']} [IC 95 % {pooled['low']} "
                       f"; {pooled['high']}] sur {s.k} études.")
    else:
        description = f"{s.k} étude(s) côte à côte, sans effet combiné (moins de 3 études)."
    figure = synthesis_forest_figure(s, x_label="g de Hedges (IC 95 %)",
                                     pooled_label="Effet combiné (REML, HKSJ)",
                                     number=lambda x: _number(x, 1))
    block["svg"] = svg_of(figure, f"Forest plot : {title}", description)
    return block


def programme_view(entries: Sequence[PortfolioEntry], programme: str) -> ProgrammeView:
    """The view of a programme's entries (one programme, possibly one académie's part)."""
    entries = tuple(entries)
    syntheses = tuple(portfolio_syntheses(entries, programme))
    dates = [e.data_as_of for e in entries if e.data_as_of is not None]
    rows = [{
        "id": e.id, "title": e.title, "state": _STATES.get(e.state, e.state),
        "resource": e.resource, "academies": ", ".join(e.academies),
        "tags": ", ".join(e.tags), "classes": _number(e.classes), "pupils": _pupils(e.pupils),
        "g": "—" if e.effect is None else _number(finite(e.effect.hedges_g), signed=True),
        "months": "—" if e.effect is None or e.effect.months_progress is None
        else _number(e.effect.months_progress, signed=True),
        "rating": "—" if e.padlocks is None else f"{e.padlocks}/5",
        "usage": _usage(e),
        "cost": "—" if e.cost_per_pupil is None else f"{_number(e.cost_per_pupil, 0)} €",
    } for e in entries]
    table = territory_rows([(e.academies, e.pupils) for e in entries])
    costs = []
    for e in entries:
        g = None if e.effect is None else finite(e.effect.hedges_g)
        months = None if e.effect is None else e.effect.months_progress
        per_month = (e.cost_per_pupil / months if e.cost_per_pupil is not None and months
                     and months > 0 else None)
        costs.append({"id": e.id, "resource": e.resource,
                      "budget": "—" if e.budget_total is None
                      else f"{_number(e.budget_total, 0)} €",
                      "cost": "—" if e.cost_per_pupil is None
                      else f"{_number(e.cost_per_pupil, 0)} €",
                      "g": "—" if g is None else _number(g, signed=True),
                      "per_month": "—" if per_month is None else f"{_number(per_month, 0)} €"})
    decisions = [{
        "id": e.id, "rule": e.decision_rule or "aucune règle déclarée",
        "threshold": "—" if e.min_effect_size is None else _number(e.min_effect_size),
        "met": {True: "atteint", False: "non atteint", None: "—"}[e.meets_threshold],
        "note": e.closing_note or ("—" if e.closed else "expérimentation non close"),
    } for e in entries]
    funders: dict[str, float] = {}
    for e in entries:
        for name, amount in e.funders:
            funders[name] = funders.get(name, 0.0) + amount
    return ProgrammeView(
        programme=programme, entries=entries, syntheses=syntheses,
        data_as_of=max(dates) if dates else None, rows=rows,
        synthesis_blocks=[_synthesis_block(s) for s in syntheses],
        territory_table=[{"name": r.name, "experiments": _number(r.experiments),
                          "pupils": _pupils(r.pupils)} for r in table],
        map_svg=territory_map_svg(
            table, title=f"Carte des expérimentations du programme {programme} par académie",
            description="Nombre d'expérimentations par académie (carte en tuiles, une tuile "
                        "par académie) ; les mêmes chiffres sont dans le tableau qui suit."),
        costs=costs, decisions=decisions,
        provenance=[{"id": e.id, "sha": e.protocol_sha256[:12], "run": e.run_id or "—",
                     "json": (e.json_sha256 or "—")[:12],
                     "date": "—" if e.data_as_of is None else e.data_as_of.date().isoformat()}
                    for e in entries],
        funding=[{"name": n, "amount": f"{_number(a, 0)} €"} for n, a in sorted(funders.items())],
    )


def _environment() -> Environment:
    return Environment(loader=PackageLoader("experiments.portfolio", "templates"),
                       autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                       lstrip_blocks=True)


def render_committee(view: ProgrammeView, *, generated_at: datetime) -> str:
    """The committee document as one self-contained HTML page (French)."""
    template = _environment().get_template("comite.html.j2")
    return template.render(view=view, generated_at=generated_at.replace(microsecond=0),
                           data_as_of=None if view.data_as_of is None
                           else view.data_as_of.date().isoformat())


def write_committee(view: ProgrammeView, directory: Path, *, generated_at: datetime,
                    pdf: bool = False) -> list[Path]:
    """Write ``comite-PROGRAMME.html`` (and ``.pdf``) into ``directory``; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in view.programme.lower()).strip("-")
    html = directory / f"comite-{slug}.html"
    html.write_text(render_committee(view, generated_at=generated_at), encoding="utf-8")
    written = [html]
    if pdf:
        from experiments.portfolio.committee_pdf import write_committee_pdf

        written.append(write_committee_pdf(view, directory / f"comite-{slug}.pdf",
                                           generated_at=generated_at))
    return written
