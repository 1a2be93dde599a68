"""Small-cell suppression: no output shows a cell of 1 to 9 pupils (docs/architecture.md).

A count of 1 to :data:`~analysis.options.MIN_CELL_PUPILS` − 1 pupils is replaced by
``None``; an estimate computed on such a cell is not shown at all (the effect carries a
reason). **0 is a number**: an empty cell tells nothing about any pupil, and hiding it
would hide facts a reader needs ("no pupil reached the usage threshold").

:func:`is_suppressed` is the one rule: the reports, the portal's weekly usage
(:mod:`experiments.portal.views`) and the research export
(:mod:`experiments.privacy.export`) all call it. Whether an estimate can be *computed*
(at least 10 pupils per arm) is another question, asked with ``MIN_CELL_PUPILS`` by the
estimators themselves.
"""

from __future__ import annotations

from collections.abc import Mapping

from analysis.options import MIN_CELL_PUPILS

__all__ = ["MIN_CELL_PUPILS", "is_suppressed", "suppress_count", "suppress_counts"]


def is_suppressed(n_pupils: int) -> bool:
    """True when a cell of ``n_pupils`` must not be shown: 1 to 9 pupils (0 is shown).

    Examples
    --------
    >>> [is_suppressed(n) for n in (0, 1, 9, 10)]
    [False, True, True, False]
    """
    return 0 < n_pupils < MIN_CELL_PUPILS


def suppress_count(n_pupils: int) -> int | None:
    """``n_pupils``, or ``None`` when the cell is suppressed.

    Examples
    --------
    >>> suppress_count(9), suppress_count(10), suppress_count(0)
    (None, 10, 0)
    """
    return None if is_suppressed(n_pupils) else int(n_pupils)


def suppress_counts(counts: Mapping[str, int]) -> dict[str, int | None]:
    """Apply :func:`suppress_count` to each value."""
    return {key: suppress_count(value) for key, value in counts.items()}
