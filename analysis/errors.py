"""Errors of the analysis package.

    LocatedError              what every package's base error is: a reason and where
     └── AnalysisError
          └── InputError      an analysis input file is invalid (carries path, line, field)

"Cannot estimate" is not an error: estimators return a result with a reason instead.
"""

from __future__ import annotations

__all__ = ["AnalysisError", "InputError", "LocatedError"]


class LocatedError(Exception):
    """An error with its reason and, when known, the file, line and field it is about.

    The base of :class:`AnalysisError` and of ``experiments.errors.ExperimentError``, so
    that the CLI and the dead-letter writer read ``.path``, ``.line``, ``.field`` and
    ``.reason`` the same way whichever package raised.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path
        self.line = line
        self.field = field


class AnalysisError(LocatedError):
    """Base class of every error raised by :mod:`analysis`."""


class InputError(AnalysisError):
    """An analysis input file is invalid."""
