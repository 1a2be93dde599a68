"""``preuve programme``: a funder's programmes across experiments (issue 22)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Programmes: portfolios, evidence syntheses, committee documents.",
                  no_args_is_help=True)


@app.command("export")
def export(
    programme: Annotated[str, typer.Argument(help="Programme name (TNE, eFRAN, P2IA, ...).",
                                             show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Folder of the committee document.")
                   ] = Path("."),
    pdf: Annotated[bool, typer.Option("--pdf/--no-pdf", help="Also write the PDF.")] = False,
    lang: Annotated[str, typer.Option(
        "--lang", help="Language of the document: fr (default) or en.")] = "fr",
) -> None:
    """The committee document of a programme (HTML): portfolio, syntheses, costs against
    effects, decisions, with the date of its data; from the registry (aggregates only)."""
    from analysis.options import LANGUAGES
    from experiments.database import registry_engine
    from experiments.portfolio.committee import programme_view, write_committee
    from experiments.portfolio.entries import portfolio_entries
    from experiments.settings import Settings

    if lang not in LANGUAGES:
        typer.echo(f"--lang: expecting one of {list(LANGUAGES)}. Got {lang!r}", err=True)
        raise typer.Exit(2)
    settings = Settings()
    entries = portfolio_entries(registry_engine(settings), programme)
    if programme not in settings.programme_names and not entries:
        known = ", ".join(settings.programme_names)
        typer.echo(f"programme {programme!r}: unknown (expecting one of {known})", err=True)
        raise typer.Exit(2)
    view = programme_view(entries, programme, "en" if lang == "en" else "fr")
    for path in write_committee(view, out, generated_at=datetime.now(UTC), pdf=pdf):
        typer.echo(str(path))
