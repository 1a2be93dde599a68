"""``preuve outcomes import``: assessment results from another platform into the store."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Assessment results (outcomes) of an experiment.", no_args_is_help=True)


@app.command("import")
def import_file(
    experiment: str = typer.Argument(..., help="Experiment id (registered)."),
    path: Path = typer.Argument(..., help="Outcomes CSV: learner_id,unit_id,measure,wave,score."),
) -> None:
    """Store an outcomes file (offline format) as assessment events, learner ids
    pseudonymised with the experiment's key; importing the same file twice stores it once.
    The audit log records who imported which file and how many rows (outcomes.import)."""
    from experiments.access import cli_actor
    from experiments.cli.console import user_errors
    from experiments.database import registry_engine
    from experiments.registry import registered_protocol
    from experiments.runs.inputs import import_outcomes
    from experiments.settings import Settings

    settings = Settings()
    if not path.is_file():
        typer.echo(f"error: {path}: no such file", err=True)
        raise typer.Exit(2)
    with user_errors(exit_code=2):
        registry = registry_engine(settings)
        protocol = registered_protocol(registry, experiment).protocol
        report = import_outcomes(settings, registry, protocol, path, actor=cli_actor())
    typer.echo(f"{experiment}: {report.stored} results stored, {report.already} already there")
