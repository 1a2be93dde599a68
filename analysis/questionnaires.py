"""Questionnaire scales: scale scores and their reliability (Cronbach's alpha).

A scale is a group of Likert items answered on ``min..max``; reverse-coded items are
recoded ``min + max - x`` before scoring. A respondent's scale score is the mean of the
recoded items, on the items' own range (what R's ``psych::alpha`` reports as ``scores``
with ``cumulative = FALSE``). A respondent who left items unanswered is scored on the
answered items when at least ``min_answered`` of them were answered (the scale's declared
minimum), otherwise not scored; by default every item is needed (complete cases).

Cronbach's alpha (Cronbach 1951) is computed on complete cases only:
``alpha = k / (k - 1) * (1 - sum(var(item)) / var(sum of items))`` with sample variances.
``tests/statistics/test_questionnaires_vs_psych.py`` checks both against ``psych::alpha``
(Revelle, Debian ``r-cran-psych``) to 1e-10. Hand-written because the formula is four
lines and numpy is already here; pingouin would pull pandas into ``analysis``'s core.

Pure functions over typed inputs: the protocol and the stores are read elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ItemSpec",
    "ScaleSpec",
    "ScaleSummary",
    "cronbach_alpha",
    "recode",
    "reliability",
    "scale_scores",
]

#: One respondent's answers: item id → score on the item's range (absent: unanswered).
Answers = Mapping[str, float]


@dataclass(frozen=True)
class ItemSpec:
    """One Likert item answered on ``min..max``; ``reverse`` items are recoded."""

    id: str
    min: float
    max: float
    reverse: bool = False

    def __post_init__(self) -> None:
        if not self.min < self.max:
            raise ValueError(f"item {self.id!r}: min ({self.min}) must be below max ({self.max})")


@dataclass(frozen=True)
class ScaleSpec:
    """A scale: the mean of its items (after recoding reverse items)."""

    id: str
    items: tuple[ItemSpec, ...]
    min_answered: int | None = None
    """Fewest answered items for a score; ``None``: every item (complete cases)."""

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError(f"scale {self.id!r} has no item")
        needed = self.needed
        if not 1 <= needed <= len(self.items):
            raise ValueError(
                f"scale {self.id!r}: min_answered must be between 1 and {len(self.items)}, "
                f"got {needed}")

    @property
    def needed(self) -> int:
        """How many answered items a score needs."""
        return len(self.items) if self.min_answered is None else self.min_answered


@dataclass(frozen=True)
class ScaleSummary:
    """A scale over a group of respondents."""

    scale: str
    n_respondents: int
    """Respondents who answered at least one of its items."""
    n_scored: int
    """Respondents with a score (enough answered items)."""
    n_complete: int
    """Respondents who answered every item: the sample of alpha."""
    alpha: float | None
    """Cronbach's alpha on complete cases; None under two complete cases or one item, or
    when the total has no variance."""
    mean: float | None
    """Mean of the scores; None when nobody was scored."""


def recode(item: ItemSpec, value: float) -> float:
    """``value`` checked against the item's range, reversed for a reverse item.

    Examples
    --------
    >>> recode(ItemSpec("q3", 1, 5, reverse=True), 2)
    4
    """
    if not (item.min <= value <= item.max) or math.isnan(value):
        raise ValueError(
            f"item {item.id!r}: {value} is outside its scale {item.min}..{item.max}")
    return item.min + item.max - value if item.reverse else value


def _matrix(scale: ScaleSpec, respondents: Sequence[Answers]) -> np.ndarray:
    rows = [[recode(item, float(answers[item.id])) if item.id in answers else math.nan
             for item in scale.items] for answers in respondents]
    return np.array(rows, dtype=float).reshape(len(rows), len(scale.items))


def scale_scores(scale: ScaleSpec, responses: Mapping[str, Answers]) -> dict[str, float]:
    """Each respondent's score: the mean of the answered, recoded items, when enough are
    answered (``scale.needed``); respondents with too few answers are left out.

    Examples
    --------
    >>> s = ScaleSpec("m", (ItemSpec("a", 1, 4), ItemSpec("b", 1, 4, reverse=True)))
    >>> scale_scores(s, {"p1": {"a": 4, "b": 1}, "p2": {"a": 2}})
    {'p1': 4.0}
    """
    keys = list(responses)
    x = _matrix(scale, [responses[k] for k in keys])
    answered = (~np.isnan(x)).sum(axis=1)
    scores: dict[str, float] = {}
    for key, row, n in zip(keys, x, answered, strict=True):
        if n >= scale.needed:
            scores[key] = float(np.nanmean(row))
    return scores


def cronbach_alpha(scale: ScaleSpec, responses: Mapping[str, Answers]) -> float | None:
    """Cronbach's alpha of the recoded items on complete cases.

    Returns None when it is not defined: one item, fewer than two complete cases, or a
    total score without variance.

    Examples
    --------
    >>> s = ScaleSpec("m", (ItemSpec("a", 1, 5), ItemSpec("b", 1, 5)))
    >>> answers = {"1": {"a": 1, "b": 2}, "2": {"a": 3, "b": 3}, "3": {"a": 5, "b": 4}}
    >>> round(cronbach_alpha(s, answers), 6)
    0.888889
    """
    x = _matrix(scale, list(responses.values()))
    complete = x[~np.isnan(x).any(axis=1)]
    k = complete.shape[1]
    if k < 2 or complete.shape[0] < 2:
        return None
    total_var = float(complete.sum(axis=1).var(ddof=1))
    if total_var == 0.0:
        return None
    item_var = float(complete.var(axis=0, ddof=1).sum())
    return float(k / (k - 1) * (1.0 - item_var / total_var))


def reliability(scale: ScaleSpec, responses: Mapping[str, Answers]) -> ScaleSummary:
    """Counts, alpha and mean score of ``scale`` over ``responses``."""
    own = {key: {i: v for i, v in answers.items() if i in {it.id for it in scale.items}}
           for key, answers in responses.items()}
    own = {key: answers for key, answers in own.items() if answers}
    scores = scale_scores(scale, own)
    complete = sum(len(a) == len(scale.items) for a in own.values())
    return ScaleSummary(
        scale=scale.id,
        n_respondents=len(own),
        n_scored=len(scores),
        n_complete=complete,
        alpha=cronbach_alpha(scale, own),
        mean=float(np.mean(list(scores.values()))) if scores else None,
    )
