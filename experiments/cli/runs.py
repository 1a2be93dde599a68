"""``preuve runs``: the recorded analysis runs, and computing one again to audit it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Recorded analysis runs: list them, write their files, compute one "
                       "again to audit it.",
                  no_args_is_help=True)

#: Exit code of ``preuve runs reproduce`` when the numbers differ from the record.
EXIT_DIFFERENT = 3


def _differences(recorded: Any, again: Any, path: str = "") -> list[str]:
    """Paths where two JSON values differ (first 20)."""
    if isinstance(recorded, dict) and isinstance(again, dict):
        out = []
        for key in sorted(set(recorded) | set(again)):
            out += _differences(recorded.get(key), again.get(key), f"{path}.{key}")
        return out[:20]
    if isinstance(recorded, list) and isinstance(again, list) and len(recorded) == len(again):
        out = []
        for i, (a, b) in enumerate(zip(recorded, again, strict=True)):
            out += _differences(a, b, f"{path}[{i}]")
        return out[:20]
    return [] if recorded == again else [f"{path or '.'}: recorded {recorded!r}, now {again!r}"]


@app.command("list")
def list_runs_command(
    experiment: Annotated[str, typer.Argument(help="The experiment's id.")],
) -> None:
    """The recorded runs of an experiment: run id, analysis, due time, status, cut-off."""
    from experiments.cli.console import user_errors
    from experiments.database import registry_engine
    from experiments.runs.records import list_runs
    from experiments.settings import Settings

    with user_errors():
        for r in list_runs(registry_engine(Settings()), experiment):
            cutoff = r.watermark.get("cutoff") or "-"
            typer.echo(f"{r.run_id}\t{r.analysis}\t{r.due_at.isoformat()}\t{r.status}\t"
                       f"data as of {cutoff}")


@app.command("files")
def files_command(
    run: Annotated[str, typer.Argument(help="A run id (as `preuve runs list` prints it) or "
                                            "a run key.")],
    experiment: Annotated[str, typer.Option("--experiment", help="The experiment's id.")],
    to: Annotated[Path, typer.Option("--to", help="Folder to write the files in.")] = Path("."),
) -> None:
    """Write a recorded run's results JSON and HTML report, as the registry stores them, to
    ``TO/<run-id>.json`` and ``TO/<run-id>.html`` (never replacing a file). The files are
    checked against their recorded SHA-256."""
    from experiments.cli.console import user_errors
    from experiments.database import registry_engine
    from experiments.runs.artefacts import write_artefacts
    from experiments.settings import Settings

    with user_errors():
        registry = registry_engine(Settings())
        record = _find(registry, experiment, run)
        for path in write_artefacts(registry, record.run_id, to):
            typer.echo(str(path))


def _find(registry: Any, experiment: str, run: str) -> Any:
    """The record of a run id or key of an experiment; SchedulerError if none."""
    from experiments.errors import SchedulerError
    from experiments.runs.records import list_runs

    record = next((r for r in list_runs(registry, experiment) if run in (r.run_id, r.run_key)),
                  None)
    if record is None:
        raise SchedulerError(f"{experiment}: no recorded run {run!r} "
                             "(see `preuve runs list`)", field="run")
    return record


@app.command("reproduce")
def reproduce_command(
    run: Annotated[str, typer.Argument(help="A run id (as `preuve runs list` prints it) or "
                                            "a run key.")],
    experiment: Annotated[str, typer.Option("--experiment", help="The experiment's id.")],
) -> None:
    """Compute a recorded run again from the data of its due time and compare its results
    JSON with the record's. Exit codes: 0 identical; 3 different (the paths that differ
    are printed); 1 unknown or failed run."""
    from experiments.cli.console import user_errors
    from experiments.database import registry_engine
    from experiments.runs.records import reproduce_run
    from experiments.settings import Settings

    settings = Settings()
    with user_errors():
        registry = registry_engine(settings)
        record = _find(registry, experiment, run)
        again = reproduce_run(settings, record, registry)
    recorded = json.loads(record.results_json or "{}")
    differences = _differences(recorded, again)
    if differences:
        typer.echo(f"run {record.run_id}: results differ from the record:")
        for line in differences:
            typer.echo(f"  {line}")
        raise typer.Exit(code=EXIT_DIFFERENT)
    typer.echo(f"run {record.run_id}: identical results (data as of "
               f"{record.watermark.get('cutoff') or record.due_at.isoformat()})")
