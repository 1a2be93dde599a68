"""What every entry point does the same way: logging set-up and user-facing errors.

A command ends in a message and an exit code, never a traceback:

- Preuve's own errors (:class:`ExperimentError`, :class:`IngestError`,
  :class:`AnalysisError`) exit with the code each command documents (:func:`user_errors`);
- a long-running service starts with :func:`start_service`: its files are its user's
  alone (umask 077, state directory 0700) and Preuve's loggers speak at
  ``settings.log_level`` whatever the CLI's ``--verbose`` said before;
- a database that refuses the caller (no rights on the registry or a store, a wrong
  password) or cannot be reached exits :data:`EXIT_DATABASE` (4) with one line naming
  what the database said (:func:`database_errors`). ``experiments/cli/__init__.py`` wraps every
  ``preuve`` command in it. The full error (statement and stack, never the
  statement's parameters) is logged at DEBUG: ``preuve -vv ...`` shows it.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from analysis.errors import AnalysisError
from experiments.errors import ExperimentError
from ingest.errors import IngestError

if TYPE_CHECKING:
    from experiments.settings import Settings

__all__ = [
    "EXIT_DATABASE",
    "configure_logging",
    "database_errors",
    "start_service",
    "user_errors",
]

logger = logging.getLogger(__name__)

#: Exit code of a command the database refused, or could not serve (connection, password,
#: rights, lock). Distinct from every command's own codes (1 to 3), so that a script can
#: tell "fix your input" from "fix the credentials or wait for the database".
EXIT_DATABASE = 4

# SQLSTATE classes and codes that mean "not you" rather than "a bug" (PostgreSQL
# Appendix A): 28 invalid authorization, 42501 insufficient privilege.
_REFUSED_SQLSTATES = ("28", "42501")


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr, one line per record, from ``level`` up.

    The last call sets the level: ``preuve`` configures WARNING for every command, then a
    service sets its own (``logging.basicConfig`` alone would keep the first level, and
    the services' INFO lines would never be written). The Kafka clients log every refused
    connection as an error while a broker starts; Preuve reports real failures itself, so
    their loggers only speak when critical.

    Examples
    --------
    >>> configure_logging("WARNING"); configure_logging("INFO")
    >>> logging.getLogger("ingest.gateway").isEnabledFor(logging.INFO)
    True
    """
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level.upper())
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def start_service(settings: Settings) -> None:
    """What every long-running service (gateway, worker, scheduler, portal) does first.

    Files it creates (stores, receipts, reports, keys) are readable by its user only
    (umask 077); the state directory and what it holds already are made 0700 and 0600;
    Preuve's loggers write their INFO lines at ``settings.log_level``.
    """
    os.umask(0o077)
    state = settings.state_dir
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    _make_private(state)
    configure_logging(settings.log_level)


def _make_private(state: Path) -> None:
    """Directories 0700 and files 0600 under ``state``, for what an older version or
    another command made with a looser mode (SQLite gives its -wal and -shm files the
    mode of the database file: a 0644 registry would keep having 0644 companions)."""
    for directory, _dirs, files in os.walk(state):
        for path, mode in [(Path(directory), 0o700), *((Path(directory, f), 0o600)
                                                      for f in files)]:
            try:
                if not path.is_symlink() and path.stat().st_mode & 0o077:
                    path.chmod(mode)
            except OSError as error:  # another user's file: say so, do not stop
                logger.warning("cannot make %s private: %s", path, error)


def _database_problem(error: BaseException) -> str | None:
    """The one line to print for a database error, or None if ``error`` is not one.

    Database errors here are SQLAlchemy's wrappers of what the driver raised
    (``DBAPIError``) and a database URL it cannot use; SQLAlchemy's other errors (a
    misused API) are bugs and keep their traceback. SQLAlchemy is looked up, not
    imported: if it was never imported, no database error can have been raised.
    """
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None:
        return None
    if isinstance(error, sa_exc.NoSuchModuleError) or (
            isinstance(error, sa_exc.ArgumentError) and "SQLAlchemy URL" in str(error)):
        # A PREUVE_DATABASE_URL SQLAlchemy cannot read or has no driver for (the message
        # never holds the URL, so never its password).
        return f"the database could not serve the command: PREUVE_DATABASE_URL: {error}"
    if not isinstance(error, sa_exc.DBAPIError):
        return None
    orig = error.orig
    said = (str(orig) if orig is not None else str(error)).strip()
    reason = said.splitlines()[0] if said else type(orig or error).__name__
    sqlstate = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
    if sqlstate.startswith(_REFUSED_SQLSTATES):
        return (f"the database refused: {reason} (registry commands need the deployment's "
                "database credentials, PREUVE_DATABASE_URL)")
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
        # Cannot connect, wrong password, server gone, SQLite file locked or unreadable.
        return f"the database could not serve the command: {reason}"
    return f"unexpected database error: {reason} (preuve -vv shows the detail)"


def _log_detail(error: BaseException) -> None:
    """The whole database error at DEBUG, without the statement's parameters (they may
    hold learner keys): the driver's message, the SQL, and where it was raised."""
    orig = getattr(error, "orig", None)
    logger.debug(
        "database error %s: %s\nstatement: %s\n%s", type(orig or error).__name__,
        str(orig if orig is not None else type(error).__name__).strip(),
        getattr(error, "statement", None), "".join(traceback.format_tb(error.__traceback__)),
    )


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn a database's refusal or absence into one line and exit :data:`EXIT_DATABASE`.

    Examples
    --------
    >>> import sqlalchemy as sa
    >>> try:
    ...     with database_errors():
    ...         sa.create_engine("sqlite:////nonexistent/dir/x.sqlite").connect()
    ... except typer.Exit as done:
    ...     done.exit_code
    4
    """
    try:
        yield
    except Exception as error:  # re-raised unless it is a database error
        problem = _database_problem(error)
        if problem is None:
            raise
        _log_detail(error)
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(code=EXIT_DATABASE) from None


@contextmanager
def user_errors(exit_code: int = 1) -> Iterator[None]:
    """Turn Preuve's own errors into a one-line message and ``exit_code``, and database
    errors into one line and :data:`EXIT_DATABASE` (:func:`database_errors`): never a
    traceback."""
    with database_errors():
        try:
            yield
        except (ExperimentError, IngestError, AnalysisError) as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=exit_code) from None
