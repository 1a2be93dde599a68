"""The ``preuve`` command line.

This module only assembles the command tree; each command lives with the concept it
serves (``experiments/cli/protocol.py``, ``experiments/cli/enrollment.py``,
``analysis/cli.py``, ``ingest/cli.py``). Heavy imports (aiokafka, statsmodels) happen inside
the commands so that ``preuve --help`` stays fast.

Every command runs inside :func:`experiments.cli.console.database_errors`: a database that
refuses the caller or cannot be reached ends as one line on stderr and exit code 4,
whichever command met it (the detail is logged at DEBUG, ``preuve -vv``).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from analysis import cli as analysis_cli
from experiments.cli import database as database_cli
from experiments.cli import enrollment as enrollment_cli
from experiments.cli import outcomes as outcomes_cli
from experiments.cli import privacy as retention_cli
from experiments.cli import programme as programme_cli
from experiments.cli import protocol as protocol_cli
from experiments.cli import runs as runs_cli
from experiments.cli import services as services_cli
from experiments.cli import tokens as access_cli
from experiments.cli.console import configure_logging, database_errors
from ingest import cli as ingest_cli

__all__ = ["app", "main"]



class _PreuveGroup(TyperGroup):
    """The root command: runs the chosen command inside :func:`database_errors`."""

    def invoke(self, ctx: Any) -> Any:
        from experiments.secrets import SecretFileError

        try:
            with database_errors():
                return super().invoke(ctx)
        except SecretFileError as error:  # a *_FILE secret, read when Settings() is built
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=2) from None


app = typer.Typer(
    cls=_PreuveGroup,
    name="preuve",
    help="Preuve: protocols, randomisation, usage events and impact reports for EdTech trials.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _configure(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, show_default=False,
        help="Log what happens (-v: INFO; -vv: DEBUG, with the detail of a database error)."),
) -> None:
    """Logging is configured once, here, for every command."""
    configure_logging(("WARNING", "INFO", "DEBUG")[min(verbose, 2)])


app.add_typer(protocol_cli.app, name="protocol")
app.add_typer(access_cli.app, name="token")
app.add_typer(outcomes_cli.app, name="outcomes")
app.add_typer(runs_cli.app, name="runs")
app.command("analyze")(analysis_cli.analyze)
app.command("enroll")(enrollment_cli.enroll)
app.add_typer(ingest_cli.kafka_app, name="kafka")
app.add_typer(ingest_cli.events_app, name="events")
app.command("worker")(ingest_cli.worker)
app.command("gateway")(ingest_cli.gateway)
app.command("scheduler")(services_cli.scheduler)
app.command("serve")(services_cli.serve)
app.command("demo")(services_cli.demo)
app.command("purge")(retention_cli.purge)
app.command("erase")(retention_cli.erase)
app.command("export")(retention_cli.export)
app.add_typer(programme_cli.app, name="programme")
app.add_typer(database_cli.app, name="db")


def main() -> None:
    """Entry point of the ``preuve`` console script."""
    app()
