"""Errors of the experiments package.

    ExperimentError
     ├── ProtocolError         a protocol file is invalid (carries every problem found)
     ├── RegistryError         the registry refuses an operation (lifecycle, locked design)
     ├── EnrollmentError       an enrollment file or row is refused
     └── StoreError            an experiment store cannot be opened or migrated

Every error carries ``reason``; those tied to input also carry ``path``, ``line`` and
``field`` so the CLI and the dead-letter writer read structure instead of parsing text.
"""

from __future__ import annotations

__all__ = [
    "EnrollmentError",
    "ExperimentError",
    "ProtocolError",
    "RegistryError",
    "StoreError",
]


class ExperimentError(Exception):
    """Base class of every error raised by :mod:`experiments`."""

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


class ProtocolError(ExperimentError):
    """A protocol is invalid."""


class RegistryError(ExperimentError):
    """The registry refuses an operation."""


class EnrollmentError(ExperimentError):
    """An enrollment is refused."""


class StoreError(ExperimentError):
    """An experiment store cannot be opened or migrated."""
