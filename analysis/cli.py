"""``preuve analyze``: a protocol's analysis on files, without Kafka."""

from __future__ import annotations

from pathlib import Path

import typer

from experiments.not_built import not_built


def analyze(
    protocol: Path = typer.Option(..., "--protocol"),
    units: Path = typer.Option(..., "--units"),
    outcomes: Path = typer.Option(..., "--outcomes"),
    usage: Path | None = typer.Option(None, "--usage"),
    analysis: str = typer.Option("final", "--analysis"),
    json_out: Path | None = typer.Option(None, "--json"),
    html_out: Path | None = typer.Option(None, "--html"),
) -> None:
    """Run a protocol's analysis on CSV files (the researcher's offline path)."""
    not_built("analyze", 6)
