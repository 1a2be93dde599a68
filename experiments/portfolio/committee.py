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
from markupsafe import Markup

from analysis.options import MIN_CELL_PUPILS, Language
from analysis.report.figures import svg_of
from analysis.report.synthesis_figure import synthesis_forest_figure
from analysis.report.text import format_number
from analysis.results import finite
from experiments.portfolio.entries import PortfolioEntry, SynthesisScope, portfolio_syntheses
from experiments.portfolio.territory_map import (
    ACADEMIE_NAMES,
    departement_map_svg,
    departement_rows,
    territory_map_svg,
    territory_rows,
)
from experiments.portfolio.text import PORTFOLIO_TEXT, words

__all__ = ["ProgrammeView", "programme_view", "render_committee", "write_committee"]


def _number(value: Any, lang: Language, digits: int = 2, signed: bool = False) -> str:
    return format_number(value, lang, digits, signed=signed)


def _usage(entry: PortfolioEntry, lang: Language) -> str:
    parts = []
    for arm, minutes, share in entry.usage:
        text = words(lang, "usage_arm", arm=arm,
                     minutes="—" if minutes is None else _number(minutes, lang, 0))
        if share is not None:
            text += words(lang, "usage_share", share=_number(100 * share, lang, 0))
        parts.append(text)
    return words(lang, "list_sep").join(parts) or "—"


def _verdicts(entry: PortfolioEntry, lang: Language) -> str:
    """One verdict per treated arm (the protocol's test, as the report says it)."""
    parts = []
    for v in entry.verdicts:
        claim = words(lang, f"claim.{v.claim}")
        text = claim if v.hedges_g is None else words(
            lang, "verdict_g", claim=claim, g=_number(v.hedges_g, lang, signed=True))
        parts.append(f"{v.arm}{words(lang, 'arm_sep')}{text}")
    return words(lang, "list_sep").join(parts) or "—"


def _pupils(value: int | None, lang: Language) -> str:
    if value is None:
        return words(lang, "suppressed")
    if value < MIN_CELL_PUPILS:
        return words(lang, "fewer_than", n=MIN_CELL_PUPILS)
    return _number(value, lang)


@dataclass(frozen=True)
class ProgrammeView:
    """What a programme page and the committee document show (aggregates only)."""

    programme: str
    lang: Language
    entries: tuple[PortfolioEntry, ...]
    syntheses: tuple[SynthesisScope, ...]
    data_as_of: datetime | None
    rows: list[dict[str, str]]
    synthesis_blocks: list[dict[str, Any]]
    territory_table: list[dict[str, str]]
    map_svg: str
    departement_table: list[dict[str, str]]
    departement_map_svg: str
    no_departement: tuple[str, ...]
    """Experiments whose départements are unknown (absent from the département map)."""
    costs: list[dict[str, str]]
    decisions: list[dict[str, str]]
    provenance: list[dict[str, str]]
    funding: list[dict[str, str]]


def _synthesis_block(scope: SynthesisScope, lang: Language) -> dict[str, Any]:
    s = scope.synthesis
    title = words(lang, "scope_title", kind=words(lang, f"kind.{scope.kind}"), name=scope.name)
    block: dict[str, Any] = {
        "title": title, "k": s.k, "pupils": _pupils(s.n_learners, lang),
        "excluded": ", ".join(scope.excluded),
        "studies": [{"label": st.label, "g": _number(st.hedges_g, lang, signed=True),
                     "low": _number(st.hedges_g - 1.96 * st.std_error, lang),
                     "high": _number(st.hedges_g + 1.96 * st.std_error, lang),
                     "pupils": _pupils(st.n_learners, lang), "rating": st.rating or "—"}
                    for st in s.studies],
        "pooled": None, "svg": "",
    }
    if s.k == 0:
        return block
    if s.estimable:
        block["pooled"] = {
            "g": _number(s.estimate, lang, signed=True), "low": _number(s.ci_low, lang),
            "high": _number(s.ci_high, lang), "pi_low": _number(s.pi_low, lang),
            "pi_high": _number(s.pi_high, lang), "tau2": _number(s.tau2, lang, 3),
            "i2": _number(s.i2, lang, 0), "months": "—" if s.months_progress is None
            else _number(s.months_progress, lang, signed=True),
            "p": _number(s.p_value, lang, 3), "df": _number(s.df, lang, 0),
        }
        pooled = block["pooled"]
        description = words(lang, "pooled_desc", g=pooled["g"], low=pooled["low"],
                            high=pooled["high"], k=s.k)
    else:
        description = words(lang, "side_desc", k=s.k)
    figure = synthesis_forest_figure(s, x_label=words(lang, "forest_x"),
                                     pooled_label=words(lang, "forest_pooled"),
                                     number=lambda x: _number(x, lang, 1))
    block["svg"] = svg_of(figure, words(lang, "forest_title", title=title), description)
    return block


def programme_view(entries: Sequence[PortfolioEntry], programme: str,
                   lang: Language = "fr") -> ProgrammeView:
    """The view of a programme's entries (one programme, possibly one académie's part),
    in ``lang``."""
    entries = tuple(entries)
    syntheses = tuple(portfolio_syntheses(entries, programme))
    dates = [e.data_as_of for e in entries if e.data_as_of is not None]

    def money(value: float | None) -> str:
        return "—" if value is None else f"{_number(value, lang, 0)} €"

    rows = [{
        "id": e.id, "title": e.title, "state": words(lang, f"state.{e.state}"),
        "resource": e.resource,
        "academies": ", ".join(ACADEMIE_NAMES.get(a, a) for a in e.academies),
        "tags": ", ".join(e.tags), "classes": _number(e.classes, lang),
        "pupils": _pupils(e.pupils, lang),
        "g": "—" if e.effect is None else _number(finite(e.effect.hedges_g), lang, signed=True),
        "months": "—" if e.effect is None or e.effect.months_progress is None
        else _number(e.effect.months_progress, lang, signed=True),
        "verdict": _verdicts(e, lang),
        "rating": "—" if e.padlocks is None else f"{e.padlocks}/5",
        "usage": _usage(e, lang),
        "cost": money(e.cost_per_pupil),
    } for e in entries]
    table = territory_rows([(e.academies, e.pupils) for e in entries])
    by_departement = departement_rows([(e.departements, e.pupils) for e in entries])
    costs = []
    for e in entries:
        g = None if e.effect is None else finite(e.effect.hedges_g)
        months = None if e.effect is None else e.effect.months_progress
        # A cost per month of progress only where the protocol's test establishes a
        # positive effect, as the report (analysis/report/document.py, _cost).
        established = any(v.claim == "positive" for v in e.verdicts)
        per_month = (e.cost_per_pupil / months if e.cost_per_pupil is not None and months
                     and months > 0 and established else None)
        costs.append({"id": e.id, "resource": e.resource, "budget": money(e.budget_total),
                      "cost": money(e.cost_per_pupil),
                      "g": "—" if g is None else _number(g, lang, signed=True),
                      "per_month": money(per_month)})
    met = {True: words(lang, "met.yes"), False: words(lang, "met.no"), None: "—"}
    decisions = [{
        "id": e.id, "rule": e.decision_rule or words(lang, "no_rule"),
        "threshold": "—" if e.min_effect_size is None else _number(e.min_effect_size, lang),
        "met": met[e.meets_threshold],
        "note": e.closing_note or ("—" if e.closed else words(lang, "not_closed")),
    } for e in entries]
    funders: dict[str, float] = {}
    for e in entries:
        for name, amount in e.funders:
            funders[name] = funders.get(name, 0.0) + amount
    return ProgrammeView(
        programme=programme, lang=lang, entries=entries, syntheses=syntheses,
        data_as_of=max(dates) if dates else None, rows=rows,
        synthesis_blocks=[_synthesis_block(s, lang) for s in syntheses],
        territory_table=[{"name": r.name, "experiments": _number(r.experiments, lang),
                          "pupils": _pupils(r.pupils, lang)} for r in table],
        map_svg=territory_map_svg(
            table, title=words(lang, "map_title", programme=programme),
            description=words(lang, "map_desc"), lang=lang),
        departement_table=[{"code": r.departement, "name": r.name,
                            "academie": ACADEMIE_NAMES.get(r.academie, r.academie),
                            "experiments": _number(r.experiments, lang),
                            "pupils": _pupils(r.pupils, lang)} for r in by_departement],
        departement_map_svg=departement_map_svg(
            by_departement, title=words(lang, "dmap_title", programme=programme),
            description=words(lang, "dmap_desc"), lang=lang),
        no_departement=tuple(e.id for e in entries if not e.departements),
        costs=costs, decisions=decisions,
        provenance=[{"id": e.id, "sha": e.protocol_sha256[:12], "run": e.run_id or "—",
                     "json": (e.json_sha256 or "—")[:12],
                     "date": "—" if e.data_as_of is None else e.data_as_of.date().isoformat()}
                    for e in entries],
        funding=[{"name": n, "amount": money(a)} for n, a in sorted(funders.items())],
    )


def _environment() -> Environment:
    return Environment(loader=PackageLoader("experiments.portfolio", "templates"),
                       autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                       lstrip_blocks=True)


def render_committee(view: ProgrammeView, *, generated_at: datetime) -> str:
    """The committee document as one self-contained HTML page, in the view's language."""
    template = _environment().get_template("comite.html.j2")
    lang = view.lang

    def m(key: str, **values: object) -> Markup:
        # Our words are markup (``<strong>``); the values filled in are escaped.
        text = PORTFOLIO_TEXT[lang].get(key) or PORTFOLIO_TEXT["fr"][key]
        return Markup(text).format(**values) if values else Markup(text)

    return template.render(view=view, m=m, lang=lang, words=PORTFOLIO_TEXT[lang],
                           generated_at=generated_at.replace(microsecond=0),
                           data_as_of=None if view.data_as_of is None
                           else view.data_as_of.date().isoformat())


def write_committee(view: ProgrammeView, directory: Path, *, generated_at: datetime,
                    pdf: bool = False) -> list[Path]:
    """Write ``comite-PROGRAMME.html`` (and ``.pdf``) into ``directory``; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in view.programme.lower()).strip("-")
    suffix = "" if view.lang == "fr" else f".{view.lang}"
    html = directory / f"comite-{slug}{suffix}.html"
    html.write_text(render_committee(view, generated_at=generated_at), encoding="utf-8")
    written = [html]
    if pdf:
        from experiments.portfolio.committee_pdf import write_committee_pdf

        written.append(write_committee_pdf(view, directory / f"comite-{slug}{suffix}.pdf",
                                           generated_at=generated_at))
    return written
