"""Errors of the analysis package.

    AnalysisError
     └── InputError           an analysis input file is invalid (carries path, line, field)

"Cannot estimate" is not an error: estimators return a result with a reason instead.
"""

from __future__ import annotations

__all__ = ["AnalysisError", "InputError"]


class AnalysisError(Exception):
    """Base class of every error raised by :mod:`analysis`."""

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


class InputError(AnalysisError):
    """An analysis input file is invalid."""
