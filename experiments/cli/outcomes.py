"""``preuve outcomes import``: assessment results from another platform into the store;
``preuve questionnaires import``: questionnaire answers likewise."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Assessment results (outcomes) of an experiment.", no_args_is_help=True)


@app.command("import")
def import_file(
    experiment: str = typer.Argument(..., help="Experiment id (registered)."),
    path: Path = typer.Argument(..., help="Outcomes CSV: learner_id,unit_id,measure,wave,score."),
    correct: bool = typer.Option(
        False, "--correct",
        help="The file corrects results imported before (needs --reason): each different "
        "score is stored as a new version, which the analyses use; the old one is kept."),
    reason: str | None = typer.Option(
        None, "--reason", help="Why the scores are corrected (kept in the audit log; never "
        "a pupil's name)."),
) -> None:
    """Store an outcomes file (offline format) as assessment events, learner ids
    pseudonymised with the experiment's key; importing the same file twice stores it once.
    A result (pupil, measure, wave) already imported with another score is refused unless
    --correct --reason is given. The audit log records who imported which file and how many
    rows (outcomes.import), and each correction with its reason (outcomes.correct)."""
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
        report = import_outcomes(settings, registry, protocol, path, actor=cli_actor(),
                                 correct=correct, reason=reason)
    typer.echo(f"{experiment}: {report.stored} results stored, {report.corrected} corrected, "
               f"{report.already} already there")


questionnaires_app = typer.Typer(help="Questionnaire answers of an experiment.",
                                 no_args_is_help=True)


@questionnaires_app.command("import")
def import_questionnaires_file(
    experiment: str = typer.Argument(..., help="Experiment id (registered)."),
    path: Path = typer.Argument(
        ..., help="Answers CSV: respondent_id,unit_id,questionnaire,wave, then one column "
        "per item (empty: not answered)."),
) -> None:
    """Store a file of questionnaire answers (pupils' or teachers') as events, respondent
    ids pseudonymised with the experiment's key. Importing the same file twice stores it
    once, and an answer already stored with another value is refused. The audit log
    records who imported which file and how many rows (questionnaires.import)."""
    from experiments.access import cli_actor
    from experiments.cli.console import user_errors
    from experiments.database import registry_engine
    from experiments.registry import registered_protocol
    from experiments.runs.questionnaires import import_questionnaires
    from experiments.settings import Settings

    settings = Settings()
    if not path.is_file():
        typer.echo(f"error: {path}: no such file", err=True)
        raise typer.Exit(2)
    with user_errors(exit_code=2):
        registry = registry_engine(settings)
        protocol = registered_protocol(registry, experiment).protocol
        report = import_questionnaires(settings, registry, protocol, path, actor=cli_actor())
    typer.echo(f"{experiment}: {report.respondents} respondents, {report.stored} answers "
               f"stored, {report.already} already there")
