"""What every entry point does the same way: logging set-up and user-facing errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from analysis.errors import AnalysisError
from experiments.errors import ExperimentError
from ingest.errors import IngestError

__all__ = ["configure_logging", "user_errors"]


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr, one line per record.

    The Kafka clients log every refused connection as an error while a broker starts;
    Preuve reports real failures itself, so their loggers only speak when critical.
    """
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


@contextmanager
def user_errors(exit_code: int = 1) -> Iterator[None]:
    """Turn Preuve's own errors into a one-line message and an exit code, never a traceback."""
    try:
        yield
    except (ExperimentError, IngestError, AnalysisError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=exit_code) from None
