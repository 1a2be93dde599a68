"""PDF export of the impact report with matplotlib's PDF backend.

Why matplotlib: it is already a dependency, it works offline and in a worker without a
browser or system libraries. The alternatives were checked on the development machine
(Debian): no Chromium is installed (``chromium --headless --print-to-pdf`` is not
available), and WeasyPrint would add a PyPI dependency plus Pango at run time. The PDF
therefore holds the same words as the HTML (from :func:`analysis.report.document.build_view`) set
as text pages in A4, followed by the figures as vector pages. It is a print version, not
a copy of the HTML layout.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.report.context import ReportContext  # noqa: E402

__all__ = ["write_pdf"]

A4 = (8.27, 11.69)  # inches
MARGIN = 0.07  # of the page height/width
STYLES = {"h1": (16, "bold", 0.035), "h2": (13, "bold", 0.03), "h3": (11, "bold", 0.024),
          "p": (9.5, "normal", 0.019), "row": (8.5, "normal", 0.017)}
WRAP = {"h1": 55, "h2": 70, "h3": 75, "p": 95, "row": 105}


class _Pages:
    """Text flowed down A4 pages; a new page when the current one is full."""

    def __init__(self, pdf: PdfPages, footer: str) -> None:
        self.pdf = pdf
        self.footer = footer
        self.number = 0
        self.figure: Figure | None = None
        self.y = 0.0

    def _new_page(self) -> None:
        self._close_page()
        self.figure = Figure(figsize=A4)
        FigureCanvasAgg(self.figure)
        self.number += 1
        self.y = 1 - MARGIN

    def _close_page(self) -> None:
        if self.figure is not None:
            self.figure.text(0.5, MARGIN / 2, self.footer.format(n=self.number), ha="center",
                             fontsize=8, color="#4a4a4a")
            self.pdf.savefig(self.figure)  # type: ignore[no-untyped-call]
            self.figure = None

    def write(self, text: str, style: str = "p") -> None:
        size, weight, step = STYLES[style]
        lines = textwrap.wrap(text, WRAP[style]) or [""]
        if style in ("h1", "h2") and self.figure is not None and self.y < 0.3:
            self._new_page()
        for line in lines:
            if self.figure is None or self.y - step < MARGIN:
                self._new_page()
            assert self.figure is not None
            self.figure.text(MARGIN, self.y, line, fontsize=size, fontweight=weight,
                             va="top", color="#1b1b1b")
            self.y -= step
        self.y -= step * 0.4

    def figure_page(self, figure: Figure | None) -> None:
        if figure is None:
            return
        self._close_page()
        self.number += 1
        figure.text(0.5, 0.005, self.footer.format(n=self.number), ha="center", fontsize=7,
                    color="#4a4a4a")
        self.pdf.savefig(figure, bbox_inches="tight")  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._close_page()


def write_pdf(view: dict[str, Any], *, data: dict[str, Any], context: ReportContext,
              path: Path) -> None:
    """Write the report ``view`` as a PDF at ``path``.

    Parameters
    ----------
    view : dict
        :func:`analysis.report.document.build_view`'s output (words, tables, figures).
    data, context
        The results JSON and context (kept for the document's metadata).
    path : Path
    """
    m = view["m"]
    with PdfPages(path, metadata={"Title": view["title"], "Creator": "Preuve",
                                  "Subject": data.get("experiment", "")}) as pdf:
        pages = _Pages(pdf, m["pdf_page"])
        pages.write(view["title"], "h1")
        if view.get("protocol_title"):
            pages.write(view["protocol_title"])
        pages.write(f"{view['experiment']} · {view['analysis']}")
        s = view["summary"]
        pages.write(m["s_summary"], "h2")
        pages.write(m["question"], "h3")
        pages.write(s["question"])
        pages.write(m["answer"], "h3")
        pages.write(s["sentence"])
        pages.write(m["how_sure"], "h3")
        for line in s["sure"]:
            pages.write(line)
        pages.write(s["rating"] + "  " + "●" * s["padlocks"] + "○" * (5 - s["padlocks"]))
        pages.write(m["rating_help"])
        for line in s["rating_steps"]:
            pages.write("– " + line)
        pages.write(m["cost"], "h3")
        for line in s["cost"]:
            pages.write(line)
        if s["warnings"]:
            pages.write(m["warnings"], "h3")
            for line in s["warnings"]:
                pages.write("– " + line)
        u = view["usage"]
        pages.write(m["s_usage"], "h2")
        for funnel in u["funnels"]:
            pages.write(funnel["caption"], "h3")
            for label, n in funnel["steps"]:
                pages.write(f"{label} : {n}" if view["lang"] == "fr" else f"{label}: {n}",
                            "row")
            if funnel.get("base"):
                pages.write(funnel["base"])
        if u["rows"]:
            pages.write(m["usage_table_caption"], "h3")
            header = [m["u_arm"], m["u_learners"], m["u_with_usage"], m["u_mean"],
                      m["u_median"], m["u_weeks"], m["u_compliant"]]
            pages.write(" | ".join(header), "row")
            for row in u["rows"]:
                pages.write(" | ".join(row), "row")
        pages.write(m["coverage"], "h3")
        for line in u["coverage"]:
            pages.write("– " + line)
        e = view["effects"]
        pages.write(m["s_effect"], "h2")
        pages.write(m["effect_caption"], "h3")
        for r in e["rows"]:
            numbers = (f"{m['e_estimate']} {r['estimate']} {r['ci']}, {m['e_p']} {r['p']}, "
                       f"{m['e_p_adj']} {r['p_adj']}, {m['e_g']} {r['g']}, "
                       f"{m['e_months']} {r['months']}") if r["estimable"] else r["reason"]
            pages.write(f"{r['outcome']} — {r['group']} ({r['role']}) : {numbers} · "
                        f"{m['e_learners']} {r['learners']}", "row")
        pages.write(e["correction"])
        for line in e.get("sequential", []):
            pages.write(line)
        for line in e["interactions"]:
            pages.write(line)
        if e["cace_note"]:
            pages.write(e["cace_note"])
        c = view["credibility"]
        pages.write(m["s_credibility"], "h2")
        pages.write(m["consort_caption"], "h3")
        for row in c["consort_rows"]:
            pages.write(" | ".join(row), "row")
        pages.write(m["balance_caption"], "h3")
        for row in c["balance"]:
            pages.write(" | ".join(row), "row")
        pages.write(m["attrition_caption"], "h3")
        for row in c["attrition"]:
            pages.write(" | ".join(row), "row")
        for line in c["notes"]:
            pages.write(line)
        pages.write(m["deviations"], "h3")
        for line in c["record"]:
            pages.write("– " + line)
        pages.write(m["s_methods"], "h2")
        for line in view["methods"]:
            pages.write("– " + line)
        pages.write(m["footer"])
        for figure in (u.get("figure"), e.get("figure"), c.get("figure")):
            pages.figure_page(figure)
        pages.close()
    del context
