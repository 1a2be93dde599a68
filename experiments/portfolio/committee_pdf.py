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

if TYPE_CHECKING:  # committee.py imports this module to write the PDF
    from experiments.portfolio.committee import ProgrammeView

__all__ = ["write_committee_pdf"]


def write_committee_pdf(view: ProgrammeView, path: Path, *, generated_at: datetime) -> Path:
    """Write the committee document of ``view`` as a PDF at ``path``; returns ``path``."""
    metadata = {"Title": f"Comité — programme {view.programme}", "Creator": "Preuve",
                "CreationDate": None, "ModDate": None}
    with PdfPages(path, metadata=metadata) as pdf:
        pages = _Pages(pdf, f"Programme {view.programme} — page {{n}}")
        pages.write(f"Programme {view.programme} : ce qui marche, où, à quel coût", "h1")
        as_of = "—" if view.data_as_of is None else view.data_as_of.date().isoformat()
        pages.write(f"Données arrêtées au {as_of} ; document généré le "
                    f"{generated_at.replace(microsecond=0).isoformat()}. "
                    f"{len(view.entries)} expérimentation(s).")
        pages.write("Portefeuille", "h2")
        for r in view.rows:
            pages.write(f"{r['title']} ({r['id']}) — {r['state']} — {r['resource']} — "
                        f"{r['academies']} — {r['classes']} classes, {r['pupils']} élèves — "
                        f"g {r['g']}, {r['months']} mois — solidité {r['rating']} — "
                        f"usage {r['usage']} — "
                        f"coût par élève {r['cost']}", "row")
        pages.write("Territoires", "h2")
        for t in view.territory_table:
            pages.write(f"{t['name']} : {t['experiments']} expérimentation(s), "
                        f"{t['pupils']} élèves", "row")
        pages.write("Synthèses des preuves", "h2")
        for b in view.synthesis_blocks:
            pages.write(b["title"], "h3")
            pages.write(f"Repose sur {b['k']} étude(s) et {b['pupils']} élèves.")
            pooled = b["pooled"]
            if pooled:
                pages.write(f"Effet combiné : g = {pooled['g']} [IC 95 % {pooled['low']} ; "
                            f"{pooled['high']}], {pooled['months']} mois de progrès ; "
                            f"tau² = {pooled['tau2']}, I² = {pooled['i2']} % ; intervalle de "
                            f"prédiction [{pooled['pi_low']} ; {pooled['pi_high']}].")
            elif b["k"]:
                pages.write("Pas d'effet combiné : moins de 3 études (côte à côte).")
            for s in b["studies"]:
                pages.write(f"{s['label']} : g {s['g']} [{s['low']} ; {s['high']}], "
                            f"{s['pupils']} élèves, solidité {s['rating']}", "row")
        pages.write("Coûts et effets", "h2")
        for c in view.costs:
            pages.write(f"{c['id']} ({c['resource']}) : budget {c['budget']}, coût par élève "
                        f"{c['cost']}, g {c['g']}, par mois de progrès {c['per_month']}", "row")
        pages.write("Décisions", "h2")
        for d in view.decisions:
            pages.write(f"{d['id']} : {d['rule']} Seuil g {d['threshold']} ({d['met']}). "
                        f"Clôture : {d['note']}", "row")
        pages.write("Provenance", "h2")
        for p in view.provenance:
            pages.write(f"{p['id']} : protocole {p['sha']}, analyse {p['run']}, résultats "
                        f"{p['json']}, données du {p['date']}", "row")
        for scope in view.syntheses:
            if scope.synthesis.k:
                pages.figure_page(synthesis_forest_figure(
                    scope.synthesis, x_label=f"g de Hedges (IC 95 %) — {scope.name}",
                    pooled_label="Effet combiné (REML, HKSJ)",
                    number=lambda x: format_number(x, "fr", 1)))
        pages.close()
    return path
