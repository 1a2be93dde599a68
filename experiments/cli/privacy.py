"""``preuve purge``, ``preuve erase`` and ``preuve export``: data leaves when it should.

Exit codes: 0 done; 2 refused (before ``retention.keep_until`` without ``--force``, no
reason, unknown experiment or class); 3 Kafka could not take the tombstones of the
enrollments concerned, so nothing was removed (run it again once the broker is up);
4 the database refused the credentials or could not be reached (:mod:`experiments.cli.console`).
Every purge and erasure is in the audit log, with the tombstones it wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from experiments.cli.console import user_errors

__all__ = ["erase", "export", "purge"]

EXIT_REFUSED = 2
EXIT_BROKER = 3


@contextmanager
def _retention_errors() -> Iterator[None]:
    """User errors exit 2; a broker that did not take the tombstones exits 3."""
    from experiments.errors import RetentionError

    with user_errors(EXIT_REFUSED):
        try:
            yield
        except RetentionError as error:
            if error.field != "kafka":
                raise
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(EXIT_BROKER) from None


def purge(
    experiment: Annotated[str, typer.Argument(help="The experiment whose row-level data goes.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Purge before retention.keep_until (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(
        help="Why (required with --force; never a name, e-mail or phone number).")] = None,
) -> None:
    """Remove an experiment's row-level data once its protocol's retention is over
    (reports, run records and the registry's aggregates stay)."""
    from experiments.access import cli_actor
    from experiments.privacy.retention import purge_experiment
    from experiments.settings import Settings

    with _retention_errors():
        done = purge_experiment(Settings(), experiment, actor=cli_actor(), force=force,
                                reason=reason)
    removed = ", ".join(f"{n} {what}" for what, n in done.removed.items())
    typer.echo(f"{experiment}: purged ({removed}); kept until "
               f"{done.keep_until.isoformat()}{' — forced' if done.forced else ''}")


def erase(
    experiment: Annotated[str, typer.Argument(help="The experiment.")],
    reason: Annotated[str, typer.Option(
        help="The request this erasure answers (never a name, e-mail or phone number).")],
    learner: Annotated[str | None, typer.Option(
        "--learner", help="The pupil's id as the académie knows it (never stored).")] = None,
    class_id: Annotated[str | None, typer.Option("--class", help="A class id.")] = None,
) -> None:
    """Erase one pupil (--learner) or one class (--class) from an experiment's data."""
    from experiments.access import cli_actor
    from experiments.privacy.retention import erase_class, erase_learner
    from experiments.settings import Settings

    if (learner is None) == (class_id is None):
        typer.echo("preuve erase: give exactly one of --learner or --class", err=True)
        raise typer.Exit(EXIT_REFUSED)
    with _retention_errors():
        if learner is not None:
            done = erase_learner(Settings(), experiment, learner, actor=cli_actor(),
                                 reason=reason)
        else:
            assert class_id is not None
            done = erase_class(Settings(), experiment, class_id, actor=cli_actor(),
                               reason=reason)
    removed = ", ".join(f"{n} {what}" for what, n in done.removed.items())
    typer.echo(f"{experiment}: one {done.scope} erased ({removed})")


def export(
    experiment: Annotated[str | None, typer.Argument(
        help="The experiment to export (omit with --aggregate).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Directory to write (created). Required.", show_default=False)] = None,
    format: Annotated[str, typer.Option(
        "--format", help="parquet or csv (both when omitted); with --aggregate, csv or "
                         "json.")] = "both",
    aggregate: Annotated[bool, typer.Option(
        "--aggregate", help="The national aggregate of every closed experiment (CSV, JSON, "
                            "schema, codebook).")] = False,
) -> None:
    """Export an experiment's pseudonymised tables, codebook, protocol and results; or,
    with --aggregate, the national aggregate of every closed experiment (one row per
    experiment × arm × outcome × level × académie, small cells suppressed)."""
    from experiments.access import cli_actor
    from experiments.settings import Settings

    if out is None:
        typer.echo("preuve export: --out DIRECTORY is required", err=True)
        raise typer.Exit(EXIT_REFUSED)
    if aggregate:
        if experiment is not None:
            typer.echo("preuve export --aggregate: covers every closed experiment; give no "
                       f"experiment id (got {experiment!r})", err=True)
            raise typer.Exit(EXIT_REFUSED)
        if format not in ("csv", "json", "both"):
            typer.echo(f"preuve export --aggregate: --format: expecting csv or json; got "
                       f"{format!r}", err=True)
            raise typer.Exit(EXIT_REFUSED)
        with user_errors(EXIT_REFUSED):
            files = _export_aggregate(Settings(), out, format, cli_actor())
        for path in files:
            typer.echo(str(path))
        return
    if experiment is None:
        typer.echo("preuve export: give the experiment id, or --aggregate", err=True)
        raise typer.Exit(EXIT_REFUSED)
    from experiments.privacy.export import export_experiment

    if format not in ("parquet", "csv", "both"):
        typer.echo(f"preuve export: --format: expecting one of parquet, csv; got {format!r}",
                   err=True)
        raise typer.Exit(EXIT_REFUSED)
    formats: tuple[Literal["parquet", "csv"], ...] = (
        ("parquet", "csv") if format == "both" else (format,))  # type: ignore[assignment]
    with user_errors(EXIT_REFUSED):
        done = export_experiment(Settings(), experiment, out, formats=formats,
                                 actor=cli_actor())
    for path in done.files:
        typer.echo(str(path))


def _export_aggregate(settings: Any, out: Path, format: str, actor: str) -> list[Path]:
    """Every closed experiment (the CLI holds the registry's credentials: administrator),
    written and recorded in the audit log (``data.export_aggregate``)."""
    from sqlalchemy.orm import Session

    from experiments.access import record_audit
    from experiments.database import registry_engine
    from experiments.privacy.aggregate import aggregate_rows, write_aggregate

    registry = registry_engine(settings)
    rows = aggregate_rows(registry)
    files = write_aggregate(rows, out, ("csv", "json") if format == "both" else (format,))
    with Session(registry) as session, session.begin():
        record_audit(session, actor, "data.export_aggregate", "*",
                     {"experiments": sorted({r["experiment_id"] for r in rows}),
                      "rows": len(rows), "out": str(out)})
    return files
