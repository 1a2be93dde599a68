"""Errors of the ingest package.

    IngestError
     ├── EventRejected        an event breaks the contract (carries ``field`` and ``reason``)
     │    └── StatementRejected  an xAPI statement cannot be mapped (carries every problem)
     ├── BrokerError          the Kafka broker cannot be started, reached or written to
     └── BatchRefused         the gateway refuses a whole request (carries ``status`` and
                              ``problems``, one per offending item)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BatchRefused", "BrokerError", "EventRejected", "IngestError", "ItemProblem",
    "StatementRejected",
]


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


class StatementRejected(EventRejected):
    """An xAPI statement cannot be mapped onto the contract. ``problems`` holds every
    problem found (each an :class:`EventRejected` naming its xAPI field); ``field`` and
    ``reason`` are the first one's."""

    def __init__(self, problems: list[EventRejected], *, event_id: str | None = None):
        first = problems[0] if problems else EventRejected("refused")
        super().__init__(first.reason, field=first.field, event_id=event_id)
        self.problems = problems

    def __str__(self) -> str:
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return super().__str__() + more


class BrokerError(IngestError):
    """The Kafka broker cannot be started, reached or written to."""


@dataclass(frozen=True)
class ItemProblem:
    """Why one item of a request is refused: its index in the batch (None for the whole
    request), the field it names and the reason."""

    index: int | None
    field: str | None
    reason: str


class BatchRefused(IngestError):
    """The gateway refuses a whole request; nothing of it is written.

    ``status`` is the HTTP status to answer, ``problems`` lists each offending item by
    index and field, ``headers`` holds extra answer headers (``Retry-After``...).
    """

    def __init__(
        self,
        status: int,
        problems: list[ItemProblem],
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        first = problems[0] if problems else ItemProblem(None, None, "refused")
        super().__init__(first.reason, field=first.field)
        self.status = status
        self.problems = problems
        self.headers = headers or {}

    def __str__(self) -> str:
        index = self.problems[0].index if self.problems else None
        where = f"item {index}: " if index is not None else ""
        field = f"field '{self.field}': " if self.field else ""
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"{self.status}: {where}{field}{self.reason}{more}"
