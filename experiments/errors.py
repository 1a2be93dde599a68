"""Errors of the experiments package.

    ExperimentError (analysis.errors.LocatedError: reason, path, line, field)
     ├── ProtocolError         a protocol file is invalid (carries every problem found)
     ├── RegistryError         the registry refuses an operation (lifecycle, locked design)
     ├── EnrollmentError       an enrollment file or row is refused
     ├── StoreError            an experiment store cannot be opened or migrated
     ├── RetentionError        a purge, an erasure or an export is refused
     ├── SchedulerError        a scheduled analysis cannot be computed, published or recorded
     └── CalendarError         a school year, période or zone has no dates (or is unknown)

Every error carries ``reason``; those tied to input also carry ``path``, ``line`` and
``field`` so the CLI and the dead-letter writer read structure instead of parsing text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from analysis.errors import LocatedError

__all__ = [
    "CalendarError",
    "EnrollmentError",
    "ExperimentError",
    "Problem",
    "ProtocolError",
    "RegistryError",
    "RetentionError",
    "SchedulerError",
    "StoreError",
]


class ExperimentError(LocatedError):
    """Base class of every error raised by :mod:`experiments`."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a protocol file, located in the file.

    ``line`` and ``col`` are 1-based; ``field`` is the dotted path of the field
    (``arms[1].allocation``), or ``""`` when the problem is the file itself.
    """

    path: str
    line: int
    col: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}"
        if not self.field:
            return f"{where}: {self.message}"
        return f"{where}: {self.field}: {self.message}"


class ProtocolError(ExperimentError):
    """A protocol is invalid; ``problems`` holds every problem found, in file order."""

    def __init__(
        self,
        reason: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
        problems: Sequence[Problem] = (),
    ) -> None:
        first = problems[0] if problems else None
        super().__init__(
            reason,
            path=path if path is not None else (first.path if first else None),
            line=line if line is not None else (first.line if first else None),
            field=field if field is not None else (first.field if first else None),
        )
        self.problems: list[Problem] = list(problems)


class RegistryError(ExperimentError):
    """The registry refuses an operation."""


class EnrollmentError(ExperimentError):
    """An enrollment is refused."""


class StoreError(ExperimentError):
    """An experiment store cannot be opened or migrated."""


class SchedulerError(ExperimentError):
    """A scheduled analysis cannot be computed, published or recorded."""


class RetentionError(ExperimentError):
    """A purge, an erasure or an export is refused (too early, no reason, unknown subject)."""


class CalendarError(ExperimentError):
    """A school year, période or zone is unknown or has no dates in the school calendar."""
