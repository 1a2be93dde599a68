"""``preuve protocol ...`` commands."""

from __future__ import annotations

from pathlib import Path

import typer

from experiments.not_built import not_built

app = typer.Typer(help="Validate, power, register and amend experiment protocols.", no_args_is_help=True)


@app.command("validate")
def validate(paths: list[Path]) -> None:
    """Check protocol files; exit 2 with one PATH:LINE:COL line per problem."""
    not_built("protocol validate", 3)


@app.command("power")
def power(path: Path, json_output: bool = typer.Option(False, "--json")) -> None:
    """Minimum detectable effect size of the declared design."""
    not_built("protocol power", 3)
