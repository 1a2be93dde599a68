"""Errors of the ingest package.

    IngestError
     ├── EventRejected        an event breaks the contract (carries ``field`` and ``reason``)
     └── BrokerError          the Kafka broker cannot be started, reached or written to
"""

from __future__ import annotations

__all__ = ["BrokerError", "EventRejected", "IngestError"]


class IngestError(Exception):
    """Base class of every error raised by :mod:`ingest`."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class EventRejected(IngestError):
    """An event breaks the contract. ``field`` names the offending field."""

    def __init__(self, reason: str, *, field: str | None = None, event_id: str | None = None):
        super().__init__(reason, field=field)
        self.event_id = event_id

    def __str__(self) -> str:
        prefix = f"event {self.event_id}: " if self.event_id else ""
        where = f"field '{self.field}': " if self.field else ""
        return f"{prefix}{where}{self.reason}"


class BrokerError(IngestError):
    """The Kafka broker cannot be started, reached or written to."""
