"""Small-cell suppression: no output shows a cell of fewer than 10 pupils (docs/architecture.md).

A count of pupils below :data:`~analysis.options.MIN_CELL_PUPILS` is replaced by ``None``;
an estimate computed on such a cell is not shown at all (the effect carries a reason).
"""

from __future__ import annotations

from collections.abc import Mapping

from analysis.options import MIN_CELL_PUPILS

__all__ = ["is_suppressed", "suppress_count", "suppress_counts"]


def is_suppressed(n_pupils: int) -> bool:
    """True when a cell of ``n_pupils`` must not be shown (fewer than 10, 0 included)."""
    return n_pupils < MIN_CELL_PUPILS


def suppress_count(n_pupils: int) -> int | None:
    """``n_pupils``, or ``None`` when the cell is suppressed.

    Examples
    --------
    >>> suppress_count(9), suppress_count(10), suppress_count(0)
    (None, 10, None)
    """
    return None if is_suppressed(n_pupils) else int(n_pupils)


def suppress_counts(counts: Mapping[str, int]) -> dict[str, int | None]:
    """Apply :func:`suppress_count` to each value."""
    return {key: suppress_count(value) for key, value in counts.items()}
