"""The honest answer of a command that does not exist yet."""

from __future__ import annotations

from typing import NoReturn

import typer

__all__ = ["not_built"]


def not_built(command: str, issue: int) -> NoReturn:
    """Say that ``command`` is not built yet (tracked in issue ``issue``) and exit 2."""
    typer.echo(f"preuve {command}: not built yet (issue #{issue}).", err=True)
    raise typer.Exit(code=2)
