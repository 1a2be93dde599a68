"""Active time rebuilt from each pupil's events, with the protocol's idle timeout.

The protocol pre-registers what counts as active use (``usage.metrics`` of kind
``active_use``: its verbs and its ``idle_timeout_s``, the longest pause that still counts
as working). The vendor's ``duration_s`` alone cannot be trusted to follow that rule (it
may be missing, or longer than any pause the protocol allows), so active time is rebuilt
from the sequence of counted events of each pupil:

- an event with a ``duration_s`` covers the interval that ends at its ``occurred_at`` and
  lasts its duration, **capped at the idle timeout** (a vendor's duration never counts
  more than one allowed pause);
- an event without a duration covers the gap since the same pupil's previous counted
  event, when that gap is **at most the idle timeout**; a longer gap ends the session, and
  the event starts a new one (it covers nothing by itself);
- a pupil's active time is the total length of the **union** of the intervals it covers:
  overlapping sessions (two tabs, a duration that reaches back over earlier events) are
  never counted twice;
- time is attributed to school days in Europe/Paris time: an interval that crosses
  midnight is split at midnight.

This module is the rule; :func:`active_seconds_by_day` is the one function that applies
it (vectorised with numpy over all pupils: one sort, one grouped running maximum). The
report states the rule and its parameters (:func:`rule_text`).

Examples
--------
>>> from datetime import datetime
>>> from zoneinfo import ZoneInfo
>>> paris = ZoneInfo("Europe/Paris")
>>> t = [datetime(2027, 10, 4, 9, m, tzinfo=paris) for m in (0, 2, 3, 20)]
>>> active_seconds_by_day(["p1"] * 4, t, [None, None, 60.0, None], idle_timeout_s=240)
{('p1', datetime.date(2027, 10, 4)): 180.0}
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

__all__ = ["SCHOOL_TIME_ZONE", "active_seconds_by_day", "rule_text"]

SCHOOL_TIME_ZONE: Final = ZoneInfo("Europe/Paris")
"""Days are school days in Paris time (``experiments.protocol.vocabulary.SCHOOL_TIMEZONE``;
``analysis`` imports nothing from ``experiments``)."""


def active_seconds_by_day(
    learners: Sequence[str],
    occurred_at: Sequence[datetime],
    durations_s: Sequence[float | None],
    *,
    idle_timeout_s: float,
) -> dict[tuple[str, date], float]:
    """Active seconds per (pupil, Paris day), by the rule of the module docstring.

    Parameters
    ----------
    learners : sequence of str
        The pupil of each counted event (any order; events of other verbs left out).
    occurred_at : sequence of datetime
        When each event occurred (aware datetimes).
    durations_s : sequence of float or None
        The vendor's ``duration_s`` of each event, or None.
    idle_timeout_s : float
        The protocol's ``idle_timeout_s`` (> 0).

    Returns
    -------
    dict
        ``(learner, day) -> seconds``, only days with active time.
    """
    if idle_timeout_s <= 0:
        raise ValueError(f"idle_timeout_s: must be positive, got {idle_timeout_s}")
    n = len(learners)
    if not (n == len(occurred_at) == len(durations_s)):
        raise ValueError("learners, occurred_at and durations_s must have the same length")
    if n == 0:
        return {}
    codes, names = _codes(learners)
    t = np.array([moment.timestamp() for moment in occurred_at], dtype=float)
    d = np.array([np.nan if v is None else float(v) for v in durations_s], dtype=float)
    order = np.lexsort((t, codes))
    codes, t, d = codes[order], t[order], d[order]

    same_pupil = np.concatenate(([False], codes[1:] == codes[:-1]))
    gap = np.concatenate(([np.inf], np.diff(t)))
    gap[~same_pupil] = np.inf
    with_duration = ~np.isnan(d)
    cover = np.where(with_duration, np.minimum(np.maximum(d, 0.0), idle_timeout_s),
                     np.where(gap <= idle_timeout_s, gap, 0.0))
    start, end = t - cover, t
    keep = end > start
    codes, start, end = codes[keep], start[keep], end[keep]
    if codes.size == 0:
        return {}

    # Union of each pupil's intervals: sort by (pupil, start); a new block begins where a
    # pupil begins or where an interval starts after everything before it has ended.
    order = np.lexsort((start, codes))
    codes, start, end = codes[order], start[order], end[order]
    new_pupil = np.concatenate(([True], codes[1:] != codes[:-1]))
    reach = _grouped_running_max(end, new_pupil)
    previous_reach = np.concatenate(([-np.inf], reach[:-1]))
    new_block = new_pupil | (start > previous_reach)
    block_start = start[new_block]
    block_end = np.maximum.reduceat(end, np.flatnonzero(new_block))
    block_pupil = codes[new_block]

    out: dict[tuple[str, date], float] = {}
    for pupil, lo, hi in zip(block_pupil.tolist(), block_start.tolist(), block_end.tolist(),
                             strict=True):
        for day, seconds in _split_by_day(lo, hi):
            key = (names[pupil], day)
            out[key] = out.get(key, 0.0) + seconds
    return out


def rule_text(idle_timeout_s: float, lang: str = "fr") -> str:
    """The rule in words, for the report's method appendix.

    Examples
    --------
    >>> rule_text(240, "en")[:60]
    'Active time is rebuilt from each pupil’s events: a pause lon'
    """
    minutes = idle_timeout_s / 60
    shown = f"{minutes:g}".replace(".", ",") if lang == "fr" else f"{minutes:g}"
    if lang == "fr":
        return (f"Le temps actif est reconstitué à partir des événements de chaque élève : une "
                f"pause de plus de {shown} min (pause maximale déclarée au protocole) clôt la "
                "session ; la durée transmise par la ressource est retenue dans la limite de "
                "cette pause ; les périodes qui se chevauchent ne sont comptées qu’une fois ; "
                "les jours sont ceux de Paris.")
    return (f"Active time is rebuilt from each pupil’s events: a pause longer than {shown} min "
            "(the protocol’s maximum pause) ends the session; the duration sent by the "
            "resource counts up to that pause; overlapping periods count once; days are "
            "Paris days.")


def _codes(learners: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    names: dict[str, int] = {}
    codes = np.fromiter((names.setdefault(x, len(names)) for x in learners), dtype=np.int64,
                        count=len(learners))
    return codes, list(names)


def _grouped_running_max(values: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """Running maximum of ``values`` that restarts where ``group_start`` is True (numpy has
    no grouped accumulate; pandas' groupby cummax is exact and runs in C)."""
    group = np.cumsum(group_start)
    running: np.ndarray = pd.Series(values).groupby(group).cummax().to_numpy(dtype=float)
    return running


def _split_by_day(lo: float, hi: float) -> list[tuple[date, float]]:
    """``[lo, hi]`` (POSIX seconds) split at Paris midnights: (day, seconds) pieces."""
    pieces: list[tuple[date, float]] = []
    moment = datetime.fromtimestamp(lo, SCHOOL_TIME_ZONE)
    while lo < hi:
        midnight = datetime.combine(moment.date() + timedelta(days=1), datetime.min.time(),
                                    tzinfo=SCHOOL_TIME_ZONE).timestamp()
        upto = min(hi, midnight)
        pieces.append((moment.date(), upto - lo))
        lo = upto
        moment = datetime.fromtimestamp(lo, SCHOOL_TIME_ZONE)
    return pieces
