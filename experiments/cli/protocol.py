"""``preuve protocol ...``: validate, power, register, amend, show, status, export, advance.

User errors (an invalid protocol, a refused registration) end as messages and exit
code 2, never a traceback; a database that refuses the caller or cannot be reached, as
one line and exit code 4 (:mod:`experiments.cli.console`). The audit log names the
operating-system account that ran a registry command
(:func:`experiments.access.cli_actor`). Heavy imports (scipy, SQLAlchemy) happen inside
the commands, and the settings are read once per command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from experiments.errors import ProtocolError, RegistryError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from experiments.protocol.language import Protocol

__all__ = ["app"]

app = typer.Typer(
    help="Validate, power, register and amend experiment protocols.", no_args_is_help=True
)

_EXIT_INVALID = 2

PathArg = Annotated[Path, typer.Argument(help="Protocol YAML file.", show_default=False)]
ExperimentArg = Annotated[str, typer.Argument(help="Experiment id.", show_default=False)]


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(_EXIT_INVALID)


def _programmes() -> tuple[str, ...]:
    from experiments.settings import Settings

    return Settings().programme_names


def _load_or_exit(path: Path) -> Protocol:
    from experiments.protocol.language import load_protocol

    try:
        return load_protocol(path, programmes=_programmes())
    except ProtocolError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(_EXIT_INVALID) from None


def _actor() -> str:
    """Who the audit log names: the account holding the registry's credentials."""
    from experiments.access import cli_actor

    return cli_actor()


def _engine() -> Engine:
    from experiments.database import registry_engine
    from experiments.settings import Settings

    return registry_engine(Settings())


@app.command("validate")
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Protocol YAML files.", show_default=False)],
) -> None:
    """Check protocols: exit 0 if all are valid, else 2 and one PATH:LINE:COL line per problem."""
    from experiments.protocol.checks import protocol_warnings
    from experiments.protocol.language import load_protocol

    invalid = False
    programmes = _programmes()
    for path in paths:
        try:
            protocol = load_protocol(path, programmes=programmes)
        except ProtocolError as exc:
            invalid = True
            for problem in exc.problems:
                typer.echo(str(problem))
        else:
            typer.echo(f"{path}: valid")
            for warning in protocol_warnings(protocol):
                typer.echo(f"{path}: warning: {warning}")
    if invalid:
        raise typer.Exit(_EXIT_INVALID)


@app.command("power")
def power(
    path: PathArg,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    target_mdes: Annotated[
        float | None,
        typer.Option("--target-mdes", help="Also the units needed for this MDES (in SD)."),
    ] = None,
) -> None:
    """Minimum detectable effect size of the declared design (PowerUp!, Dong & Maynard 2013)."""
    from experiments.protocol.power import DESIGN_NAMES, protocol_power

    protocol = _load_or_exit(path)
    if protocol.power is None:
        raise _fail(f"{path}: power: no `power:` section to compute from")
    if target_mdes is not None and target_mdes <= 0:
        raise _fail(f"--target-mdes: must be positive, got {target_mdes}")
    report = protocol_power(protocol, target_mdes)
    rows: list[dict[str, Any]] = [
        {
            "contrast": c.contrast,
            "units": c.inputs.units,
            "treated_share": c.inputs.treated_share,
            "mdes": c.result.mdes,
            "df": c.result.df,
            "multiplier": c.result.multiplier,
            "std_error": c.result.std_error,
            "reason": c.result.reason,
            **(
                {"units_needed": c.units_needed, "units_needed_reason": c.units_needed_reason}
                if target_mdes is not None
                else {}
            ),
        }
        for c in report.contrasts
    ]
    head = report.headline
    p = protocol.power
    if json_output:
        out: dict[str, Any] = {
            "experiment": protocol.id,
            "protocol_sha256": protocol.sha256,
            "design": report.design,
            "mdes": head.result.mdes,
            "df": head.result.df,
            "alpha": protocol.analysis.alpha,
            "power": p.power,
            "two_tailed": p.two_tailed,
            "icc": p.icc,
            "pupils_per_unit": p.pupils_per_unit,
            "units": p.units,
            "blocks": p.blocks,
            # The R² used (0 for a model without pre-test nor covariate; see the notes).
            "r2_learner": head.inputs.r2_learner,
            "r2_unit": head.inputs.r2_unit,
            "contrasts": rows,
            "notes": list(report.notes),
        }
        if target_mdes is not None:
            needs = [c.units_needed for c in report.contrasts]
            out["target_mdes"] = target_mdes
            out["units_needed"] = None if None in needs else max(n or 0 for n in needs)
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    unit = protocol.population.unit
    typer.echo(
        f"{protocol.id}: {report.design} ({DESIGN_NAMES[report.design]}), {p.units} units ({unit})"
        + (f" × {p.pupils_per_unit} pupils" if unit != "learner" else "")
        + (f" in {p.blocks} blocks" if report.design == "BCRA3_2f" else "")
        + f"; α {protocol.analysis.alpha}, power {p.power}"
        + (", two-tailed" if p.two_tailed else ", one-tailed")
    )
    for r in rows:
        if r["mdes"] is None:
            typer.echo(f"  {r['contrast']}: not estimable: {r['reason']}")
        else:
            typer.echo(
                f"  {r['contrast']}: MDES {r['mdes']:.3f} SD (df {r['df']}, "
                f"multiplier {r['multiplier']:.3f}, SE {r['std_error']:.4f})"
            )
        if target_mdes is not None:
            needed = r["units_needed"]
            typer.echo(
                f"    units needed (all arms) for MDES {target_mdes}: "
                + (str(needed) if needed is not None else str(r["units_needed_reason"]))
            )
    for note in report.notes:
        typer.echo(f"  note: {note}")


@app.command("register")
def register(path: PathArg) -> None:
    """Register a protocol: store it with its SHA-256 and lock its design."""
    from experiments.registry import register_protocol

    protocol = _load_or_exit(path)
    try:
        result = register_protocol(_engine(), protocol, path.read_text(encoding="utf-8"), _actor())
    except RegistryError as exc:
        raise _fail(f"{path}: {exc.reason}") from None
    if result.outcome == "unchanged":
        typer.echo(f"{protocol.id}: already registered, version {result.version} ({result.sha256})")
    elif result.outcome == "updated":
        typer.echo(
            f"{protocol.id}: version {result.version} ({result.sha256}); changed outside the "
            f"design: {', '.join(result.changed_fields)}"
        )
    else:
        typer.echo(f"{protocol.id}: registered, version {result.version} ({result.sha256})")


@app.command("amend")
def amend(
    path: PathArg,
    reason: Annotated[str, typer.Option("--reason", help="Why the protocol changes.")],
) -> None:
    """Record a change of a registered protocol, with its reason, as a new version.

    Refused, naming the fields, for what has frozen: after the first allocation the
    randomisation (seed, strata), the arms (names, allocation, control) and the
    population; once the intervention has started (running, or its start date passed)
    also the primary outcome, the estimand and the model. Every later report lists the
    amendment under « Écarts au protocole »."""
    from experiments.registry import amend_protocol

    protocol = _load_or_exit(path)
    try:
        result = amend_protocol(
            _engine(), protocol, path.read_text(encoding="utf-8"), reason, _actor()
        )
    except RegistryError as exc:
        raise _fail(f"{path}: {exc.reason}") from None
    typer.echo(
        f"{protocol.id}: amendment recorded, version {result.version} ({result.sha256}); "
        f"changed: {', '.join(result.changed_fields)}"
    )


@app.command("show")
def show(experiment: ExperimentArg) -> None:
    """The registry's record of an experiment: state, versions, amendments, transitions."""
    from experiments.registry import get_experiment

    try:
        record = get_experiment(_engine(), experiment)
    except RegistryError as exc:
        raise _fail(exc.reason) from None
    current = record.current
    typer.echo(f"experiment: {record.id}")
    typer.echo(f"state: {record.state}")
    typer.echo(f"version: {current.version} (sha256 {current.sha256})")
    registered = record.registered_at
    typer.echo(f"registered: {registered.isoformat() if registered else 'no (draft)'}")
    typer.echo("versions:")
    for v in record.versions:
        line = f"  v{v.version} {v.kind} {v.recorded_at.isoformat()} by {v.actor} sha256 {v.sha256}"
        if v.reason:
            line += f"\n      reason: {v.reason}"
        if v.changed_fields:
            line += f"\n      changed: {', '.join(v.changed_fields)}"
        typer.echo(line)
    typer.echo("lifecycle:")
    for t in record.transitions:
        typer.echo(f"  {t.at.isoformat()} {t.from_state or '-'} -> {t.to_state} by {t.actor}")


@app.command("status")
def status(
    experiment: ExperimentArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Whether the data will support the next analyses: the state, the interim and final
    analyses still to come, the data checks the scheduler recorded a week before each
    (endline scores per arm, baseline and usage coverage, the MDES the data now
    supports) and the same checks on the data now."""
    from datetime import timedelta

    from experiments.registry import get_experiment, registered_protocol
    from experiments.runs.scheduler import due_runs
    from experiments.runs.sufficiency import CHECKED_ANALYSES, check_data, recorded_checks
    from experiments.settings import Settings

    settings = Settings()
    engine = _engine()
    now = settings.now()
    try:
        record = get_experiment(engine, experiment)
        protocol = registered_protocol(engine, experiment).protocol
    except RegistryError as exc:
        raise _fail(exc.reason) from None
    horizon = now + timedelta(days=3660)
    coming = [r for r in due_runs(engine, horizon)
              if r.experiment_id == experiment and r.due_at > now
              and r.analysis in CHECKED_ANALYSES] if record.state not in {
                  "draft", "closed"} else []
    recorded = recorded_checks(engine, experiment, since=now)
    live = (check_data(settings, engine, protocol, coming[0].analysis, now, coming[0].due_at)
            if coming else None)
    if as_json:
        typer.echo(json.dumps({
            "experiment": experiment, "state": record.state, "now": now.isoformat(),
            "next_analyses": [{"analysis": r.analysis, "due_at": r.due_at.isoformat()}
                              for r in coming],
            "recorded_checks": [r.to_json() for r in recorded],
            "checks_now": None if live is None else live.to_json(),
        }, ensure_ascii=False, indent=2))
        return
    typer.echo(f"experiment: {experiment}")
    typer.echo(f"state: {record.state}")
    typer.echo("next analyses:" if coming else "next analyses: none (interim or final)")
    for run in coming:
        typer.echo(f"  {run.analysis} due {run.due_at.isoformat()}")
    for report in recorded:
        due = report.due_at.isoformat() if report.due_at else "?"
        typer.echo(f"data checks recorded {report.checked_at.isoformat()} for the "
                   f"{report.analysis} due {due}: {report.status.upper()}")
        for check in report.checks:
            typer.echo(f"  [{check.status}] {check.message('en')}")
    if live is not None:
        typer.echo(f"data checks now ({now.isoformat()}) for the {live.analysis} due "
                   f"{coming[0].due_at.isoformat()}: {live.status.upper()}")
        for check in live.checks:
            typer.echo(f"  [{check.status}] {check.message('en')}")


@app.command("export")
def export(
    experiment: ExperimentArg,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of stdout.")
    ] = None,
    version: Annotated[int | None, typer.Option("--version", help="Default: in force.")] = None,
) -> None:
    """The registered protocol as a pre-registration document (Markdown, for OSF)."""
    from experiments.protocol.preregistration import preregistration_markdown
    from experiments.registry import get_experiment, registered_protocol

    engine = _engine()
    try:
        record = get_experiment(engine, experiment)
        stored = registered_protocol(engine, experiment, version)
    except RegistryError as exc:
        raise _fail(exc.reason) from None
    if record.state == "draft":
        raise _fail(f"{experiment}: a draft is not a pre-registration; register it first")
    text = preregistration_markdown(stored.protocol, record, stored.source_yaml)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"{experiment}: pre-registration written to {out}")


@app.command("advance")
def advance(
    experiment: ExperimentArg,
    state: Annotated[str, typer.Argument(help="The next state.", show_default=False)],
    note: Annotated[str | None, typer.Option("--note", help="Why, for the audit log.")] = None,
) -> None:
    """Move an experiment to the next state of draft → registered → enrolling → running →
    analysing → closed."""
    from experiments.registry import STATES, transition_experiment

    if state not in STATES:
        raise _fail(f"state: expecting one of {', '.join(STATES)}, got {state!r}")
    try:
        transition_experiment(_engine(), experiment, state, _actor(), note)
    except RegistryError as exc:
        raise _fail(exc.reason) from None
    typer.echo(f"{experiment}: {state}")
