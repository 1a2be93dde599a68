"""``preuve analyze``: a protocol's analysis on files, without Kafka.

Exit codes: 0 done; 2 a user error (bad protocol, bad CSV), printed as
``PATH:LINE: field: message`` without a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["analyze"]

logger = logging.getLogger(__name__)


def analyze(
    protocol: Annotated[Path, typer.Option("--protocol", help="The protocol (YAML).")],
    units: Annotated[Path, typer.Option("--units", help="Units CSV: unit_id,arm,attributes…")],
    outcomes: Annotated[
        Path, typer.Option("--outcomes", help="Outcomes CSV: learner_id,unit_id,measure,wave,score")
    ],
    usage: Annotated[
        Path | None,
        typer.Option("--usage", help="Usage CSV: learner_id,unit_id,week,active_minutes"),
    ] = None,
    analysis: Annotated[str, typer.Option("--analysis", help="Name of the analysis.")] = "final",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the JSON results here.")
    ] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write the impact report (HTML) here.")
    ] = None,
    pdf_out: Annotated[
        Path | None, typer.Option("--pdf", help="Write the impact report (PDF) here.")
    ] = None,
    lang: Annotated[
        str, typer.Option("--lang", help="Language of the report: fr (default) or en.")
    ] = "fr",
) -> None:
    """Run a protocol's analysis on CSV files (the researcher's offline path)."""
    from analysis.errors import AnalysisError
    from analysis.inputs import plan_from_protocol, read_outcomes, read_units, read_usage
    from analysis.options import LANGUAGES
    from analysis.results import to_json_dict, write_json
    from analysis.run import run_analysis
    from experiments.errors import ProtocolError
    from experiments.protocol.language import load_protocol

    if lang not in LANGUAGES:
        typer.echo(f"--lang: expecting one of {list(LANGUAGES)}. Got {lang!r}", err=True)
        raise typer.Exit(code=2)
    try:
        loaded = load_protocol(protocol)
    except ProtocolError as exc:
        for line in [str(p) for p in exc.problems] or [exc.reason]:
            typer.echo(line, err=True)
        raise typer.Exit(code=2) from None
    try:
        plan = plan_from_protocol(loaded)
    except ValueError as exc:  # an option of the protocol this engine does not support
        typer.echo(f"{protocol}: {exc}", err=True)
        raise typer.Exit(code=2) from None
    try:
        unit_table = read_units(units, plan)
        outcome_table = read_outcomes(outcomes, unit_table)
        usage_table = read_usage(usage, outcome_table, unit_table) if usage else None
        results = run_analysis(plan, unit_table, outcome_table, usage_table, analysis)
    except AnalysisError as exc:
        where = f"{exc.path}:{exc.line}: " if exc.path else ""
        field = f"{exc.field}: " if exc.field else ""
        typer.echo(f"{where}{field}{exc.reason}", err=True)
        raise typer.Exit(code=2) from None
    if json_out is not None:
        write_json(results, json_out)
    if html_out is not None or pdf_out is not None:
        from analysis.report.context import ReportContext, usage_context_from_files
        from analysis.report.document import write_report, write_report_pdf

        context = (usage_context_from_files(units, usage, outcomes, arms=plan.arms)
                   if usage else ReportContext())
        if html_out is not None:
            write_report(results, html_out, protocol=loaded, context=context, lang=lang)
        if pdf_out is not None:
            write_report_pdf(results, pdf_out, protocol=loaded, context=context, lang=lang)
    if json_out is None and html_out is None and pdf_out is None:
        import json

        typer.echo(json.dumps(to_json_dict(results), ensure_ascii=False, indent=2,
                              allow_nan=False))
