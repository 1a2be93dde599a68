"""The committee document as PDF, with matplotlib's PDF backend as the impact report's
(``analysis/report/pdf.py`` says why): the same words and tables as the HTML, as text
pages in A4, then each synthesis' forest plot as a vector page."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_pdf import PdfPages

# The report's page flow, shared rather than copied (a private helper of analysis.report).
from analysis.report.pdf import _Pages
from analysis.report.synthesis_figure import synthesis_forest_figure
from analysis.report.text import format_number
from experiments.portfolio.text import words

if TYPE_CHECKING:  # committee.py imports this module to write the PDF
    from experiments.portfolio.committee import ProgrammeView

__all__ = ["write_committee_pdf"]


def write_committee_pdf(view: ProgrammeView, path: Path, *, generated_at: datetime) -> Path:
    """Write the committee document of ``view`` as a PDF at ``path`` (in the view's
    language); returns ``path``."""
    lang = view.lang

    def m(key: str, **values: object) -> str:
        return words(lang, key, **values)

    sep = m("arm_sep")
    metadata = {"Title": m("doc.title", programme=view.programme), "Creator": "Preuve",
                "CreationDate": None, "ModDate": None}
    with PdfPages(path, metadata=metadata) as pdf:
        pages = _Pages(pdf, f"{m('kind.programme')} {view.programme} — page {{n}}")
        pages.write(m("doc.h1", programme=view.programme), "h1")
        as_of = "—" if view.data_as_of is None else view.data_as_of.date().isoformat()
        pages.write(f"{m('doc.as_of', date=as_of)} " + m(
            "doc.as_of_note", generated=generated_at.replace(microsecond=0).isoformat(),
            n=len(view.entries)))
        pages.write(m("doc.portfolio"), "h2")
        for r in view.rows:
            pages.write(f"{r['title']} ({r['id']}) — {r['state']} — {r['resource']} — "
                        f"{r['academies']} — {m('col.classes')} {r['classes']}, "
                        f"{m('col.pupils')} {r['pupils']} — g {r['g']}, "
                        f"{m('col.months')} {r['months']} — {m('col.verdict')}{sep}"
                        f"{r['verdict']} — {m('col.rating')} {r['rating']} — "
                        f"{m('col.usage')}{sep}{r['usage']} — {m('col.cost')} {r['cost']}",
                        "row")
        pages.write(m("doc.territories"), "h2")
        for t in view.territory_table:
            pages.write(f"{t['name']}{sep}{m('col.experiments')} {t['experiments']}, "
                        f"{m('col.pupils_present')} {t['pupils']}", "row")
        for d in view.departement_table:
            pages.write(f"{d['name']} ({d['code']}, {d['academie']}){sep}"
                        f"{m('col.experiments')} {d['experiments']}, "
                        f"{m('col.pupils_present')} {d['pupils']}", "row")
        pages.write(m("doc.syntheses"), "h2")
        for b in view.synthesis_blocks:
            pages.write(b["title"], "h3")
            pages.write(m("doc.rests_on", k=b["k"], pupils=b["pupils"])
                        .replace("<strong>", "").replace("</strong>", ""))
            pooled = b["pooled"]
            if pooled:
                pages.write(m("doc.pooled", **pooled))
            elif b["k"]:
                pages.write(m("doc.side_by_side"))
            for s in b["studies"]:
                pages.write(f"{s['label']}{sep}g {s['g']} [{s['low']} ; {s['high']}], "
                            f"{m('col.pupils')} {s['pupils']}, {m('col.rating')} "
                            f"{s['rating']}", "row")
        pages.write(m("doc.costs"), "h2")
        for c in view.costs:
            pages.write(f"{c['id']} ({c['resource']}){sep}{m('col.budget')} {c['budget']}, "
                        f"{m('col.cost')} {c['cost']}, g {c['g']}, {m('col.per_month')} "
                        f"{c['per_month']}", "row")
        pages.write(m("doc.decisions"), "h2")
        for d in view.decisions:
            pages.write(f"{d['id']}{sep}{d['rule']} {m('col.threshold')} {d['threshold']} "
                        f"({d['met']}). {m('col.note')}{sep}{d['note']}", "row")
        pages.write(m("doc.provenance"), "h2")
        for p in view.provenance:
            pages.write(f"{p['id']}{sep}{m('col.protocol')} {p['sha']}, {m('col.run')} "
                        f"{p['run']}, {m('col.json')} {p['json']}, {m('col.date')} "
                        f"{p['date']}", "row")
        for scope in view.syntheses:
            if scope.synthesis.k:
                pages.figure_page(synthesis_forest_figure(
                    scope.synthesis, x_label=f"{m('forest_x')} — {scope.name}",
                    pooled_label=m("forest_pooled"),
                    number=lambda x: format_number(x, lang, 1)))
        pages.close()
    return path
