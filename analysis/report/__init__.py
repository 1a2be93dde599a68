"""The impact report: words, numbers, figures, rating, and the HTML/PDF document.

Modules:

- ``checks``: Checks of a written impact report against its results JSON (a report "lint").
- ``context``: What a report needs beyond the results JSON: the run's record and weekly usage.
- ``deviations``: « Écarts au protocole »: amendments, deviations, developer-made measures.
- ``document``: The self-contained HTML document (and its PDF) from the results JSON.
- ``figures``: Figures of the impact report, drawn with matplotlib and returned as inline SVG.
- ``pdf``: PDF export of the impact report with matplotlib's PDF backend.
- ``rating``: The evidence rating of a report: 0 to 5 padlocks, in the spirit of the EEF's.
- ``text``: Words of the report: message catalogues, number formatting, summary sentences.

The public API of ``document`` is re-exported here
(``from analysis.report import render_report``).
"""

from __future__ import annotations

from analysis.report.document import (
    ReportView,
    build_view,
    render_html,
    render_report,
    report_summary,
    summary_sentence,
    write_html,
    write_report,
    write_report_pdf,
)

__all__ = [
    "ReportView",
    "build_view",
    "render_html",
    "render_report",
    "report_summary",
    "summary_sentence",
    "write_html",
    "write_report",
    "write_report_pdf",
]
