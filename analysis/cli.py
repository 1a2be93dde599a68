"""``preuve analyze``: a protocol's analysis on files, without Kafka.

It prints a one-screen summary of what it estimated (on standard error when the JSON
goes to standard output, so that the JSON stays parseable).

Exit codes: 0 done; 2 a user error (bad protocol, bad CSV), printed as
``PATH:LINE: field: message`` without a traceback; 3 no primary effect could be estimated
(every treated arm's primary ITT effect is missing, with its reason; the files asked for
are still written, so that the flow and checks can be read). A ``monitoring`` analysis
estimates no effect by design and exits 0.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from analysis.results import AnalysisResults

__all__ = ["EXIT_NO_PRIMARY_EFFECT", "analyze", "summary_lines"]

logger = logging.getLogger(__name__)

#: Exit code of ``preuve analyze`` when no primary effect could be estimated.
EXIT_NO_PRIMARY_EFFECT = 3


def _n(value: Any, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def summary_lines(results: AnalysisResults | Mapping[str, Any]) -> list[str]:
    """The one-screen summary of the results (or of a results JSON object): what was
    estimated, per treated arm, and whether the protocol's test establishes it
    (:func:`analysis.multiplicity.certainty`).

    Examples
    --------
    >>> summary_lines({"experiment": "x", "analysis": "final", "protocol_sha256": "ab",
    ...                "design": {"arms": ["a", "b"], "control": "b"}, "effects": []})[-1]
    'no primary effect could be estimated'
    """
    from analysis.multiplicity import certainty
    from analysis.results import AnalysisResults, finite

    if not isinstance(results, AnalysisResults):
        results = AnalysisResults.from_json(results)
    lines = [f"preuve analyze: {results.experiment}, {results.analysis} "
             f"analysis (protocol sha256 {results.protocol_sha256[:12]})"]
    consort = results.checks.get("consort") or []
    if consort:
        lines.append("flow: " + "; ".join(
            f"{c.arm} {c.units_allocated} units randomised, "
            f"{c.learners_analysed if c.learners_analysed is not None else '<10'}"
            " pupils analysed" for c in consort))
    primary = results.effects_where(role="primary", estimand="ITT", whole_sample=True)
    method = results.design.get("multiple_comparisons", "none")
    for e in primary:
        if not e.estimable:
            lines.append(f"primary {e.outcome}, {e.contrast}: not estimated ({e.reason})")
            continue
        c = certainty(e, results)
        lines.append(
            f"primary {e.outcome}, {e.contrast}: {_n(e.estimate, signed=True)} "
            f"points [{_n(finite(e.ci_low))}, {_n(finite(e.ci_high))}], "
            f"p {_n(finite(e.p_value), 4)}, adjusted p ({method}) {_n(c.p, 4)} vs "
            f"{_n(c.threshold, 4)}, g {_n(finite(e.hedges_g), signed=True)}: {c.claim}")
    others = [e for e in results.effects if e not in primary]
    if others:
        estimated = sum(1 for e in others if e.estimable)
        lines.append(f"other effects (secondary, subgroups, CACE...): {estimated} estimated, "
                     f"{len(others) - estimated} not estimable")
    if results.warnings:
        lines.append(f"warnings: {len(results.warnings)} (in the JSON and the report)")
    if not any(e.estimable for e in primary):
        lines.append("monitoring analysis: no effect is estimated by design"
                     if results.analysis == "monitoring"
                     else "no primary effect could be estimated")
    return lines


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
    analysis: Annotated[str, typer.Option(
        "--analysis", help="Name of the analysis: final (default), interim (descriptive "
        "unless the protocol declares it confirmatory) or monitoring.")] = "final",
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
    """Run a protocol's analysis on CSV files (the researcher's offline path).

    Prints a one-screen summary of what was estimated. Exit codes: 0 done; 2 a bad
    protocol or CSV file (PATH:LINE: field: message); 3 no primary effect could be
    estimated (the reason is printed; the files asked for are written).
    """
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
        from analysis.sequential import sequential_look

        results = run_analysis(plan, unit_table, outcome_table, usage_table, analysis,
                               sequential=sequential_look(loaded, analysis))
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
        if usage:  # offline files hold active minutes only: the usage level alone
            import dataclasses

            from analysis.usage import usage_levels_from_files

            context = dataclasses.replace(context, usage_levels=usage_levels_from_files(
                units, usage, None, arms=plan.arms, control=plan.control,
                threshold_minutes=plan.min_active_minutes))
        if html_out is not None:
            write_report(results, html_out, protocol=loaded, context=context, lang=lang)
        if pdf_out is not None:
            write_report_pdf(results, pdf_out, protocol=loaded, context=context, lang=lang)
    data = to_json_dict(results)
    to_stdout = json_out is None and html_out is None and pdf_out is None
    if to_stdout:
        import json

        typer.echo(json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False))
    lines = summary_lines(results)
    for line in lines:
        typer.echo(line, err=to_stdout)
    if analysis != "monitoring" and lines[-1] == "no primary effect could be estimated":
        raise typer.Exit(code=EXIT_NO_PRIMARY_EFFECT)
