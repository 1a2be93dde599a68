"""Baseline equivalence and the sample-ratio check.

Baseline equivalence (What Works Clearinghouse Standards Handbook v4.1, section on
baseline equivalence, and Procedures Handbook v4.1 Appendix E for the effect sizes), on the
analysed learners of each contrast:

* a continuous characteristic (the pre-test, a numeric covariate): Hedges' g of the
  baseline difference, ``J (mean_t - mean_c) / pooled SD``;
* a category (one level of a unit attribute): the Cox index
  ``J (logit p_t - logit p_c) / 1.65``.

``|d| <= 0.05``: satisfied; ``0.05 < |d| <= 0.25``: satisfied only with statistical
adjustment (the characteristic must be in the model); ``|d| > 0.25``: not satisfied.

Sample-ratio mismatch: Pearson chi-square of the number of units per arm against the
protocol's allocation. Under stratified randomisation the counts vary less than the
multinomial model assumes, so the test is conservative there; a p-value under 0.001 is
flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special

from analysis.effect_sizes import hedges_correction, pooled_sd
from analysis.statistics import SampleMeanStatistic

__all__ = [
    "SRM_ALPHA",
    "BalanceCheck",
    "Equivalence",
    "SampleRatioCheck",
    "check_sample_ratio",
    "classify_difference",
    "cox_index",
    "standardized_difference",
]

SRM_ALPHA = 0.001

Equivalence = Literal["satisfied", "adjustment required", "not satisfied"]


@dataclass(frozen=True)
class BalanceCheck:
    """Baseline difference of one characteristic for one contrast."""

    outcome: str
    contrast: str
    characteristic: str
    kind: Literal["continuous", "category"]
    difference: float
    equivalence: Equivalence | None
    adjusted_in_model: bool
    reason: str | None = None


def classify_difference(d: float) -> Equivalence | None:
    """WWC rating of a standardized baseline difference (None when NaN).

    Examples
    --------
    >>> classify_difference(0.05), classify_difference(-0.2), classify_difference(0.26)
    ('satisfied', 'adjustment required', 'not satisfied')
    """
    if not math.isfinite(d):
        return None
    if abs(d) <= 0.05 + 1e-12:
        return "satisfied"
    if abs(d) <= 0.25 + 1e-12:
        return "adjustment required"
    return "not satisfied"


def standardized_difference(treatment: npt.ArrayLike, control: npt.ArrayLike) -> float:
    """Hedges' g of a baseline difference (NaN values ignored; NaN when undefined)."""
    t = SampleMeanStatistic.of(treatment)
    c = SampleMeanStatistic.of(control)
    sd = pooled_sd(t, c)
    j = hedges_correction(t.n + c.n)
    if not (math.isfinite(sd) and sd > 0):
        return math.nan
    return j * (t.mean - c.mean) / sd


def cox_index(p_treatment: float, p_control: float, n_total: int) -> float:
    """WWC Cox index ``J (logit p_t - logit p_c) / 1.65`` (NaN when a proportion is 0 or 1)."""
    if not (0.0 < p_treatment < 1.0 and 0.0 < p_control < 1.0):
        return math.nan
    logit = math.log(p_treatment / (1 - p_treatment)) - math.log(p_control / (1 - p_control))
    return hedges_correction(n_total) * logit / 1.65


@dataclass(frozen=True)
class SampleRatioCheck:
    """Units per arm against the allocation: chi-square test."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    df: int
    p_value: float
    mismatch: bool


def check_sample_ratio(counts: dict[str, int], allocation: dict[str, float]) -> SampleRatioCheck:
    """Pearson chi-square goodness of fit of ``counts`` to the ``allocation`` weights.

    Examples
    --------
    >>> round(check_sample_ratio({"a": 30, "b": 10}, {"a": 1, "b": 1}).p_value, 6)
    0.001565
    """
    arms = list(counts)
    observed = np.array([counts[a] for a in arms], dtype=float)
    weights = np.array([allocation[a] for a in arms], dtype=float)
    expected = observed.sum() * weights / weights.sum()
    if observed.sum() == 0 or len(arms) < 2:
        return SampleRatioCheck(dict(counts), dict(zip(arms, expected.tolist(), strict=True)),
                                math.nan, len(arms) - 1, math.nan, False)
    chi2 = float(np.sum((observed - expected) ** 2 / expected))
    p = float(special.chdtrc(len(arms) - 1, chi2))
    return SampleRatioCheck(
        observed={a: int(counts[a]) for a in arms},
        expected=dict(zip(arms, expected.tolist(), strict=True)),
        chi2=chi2, df=len(arms) - 1, p_value=p, mismatch=p < SRM_ALPHA,
    )
