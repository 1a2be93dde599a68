"""Intraclass correlation of an outcome: one-way ANOVA estimator.

``ICC = (MSB - MSW) / (MSB + (n0 - 1) MSW)`` with ``n0 = (N - sum n_j^2 / N) / (G - 1)``
for unequal cluster sizes (Donner & Koval 1980; Snijders & Bosker, *Multilevel Analysis*,
2nd ed. 2012, section 3.3). Computed on the analysed learners, within arms (arm means are
removed first, so that the effect being measured does not inflate the ICC). For balanced
data and a positive estimate this equals the REML estimate of a random-intercept model,
which the tests check against statsmodels ``MixedLM``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analysis.options import MIN_CELL_PUPILS
from analysis.suppression import suppress_count

__all__ = ["IccEstimate", "estimate_icc"]


@dataclass(frozen=True)
class IccEstimate:
    """ICC of one outcome; negative ANOVA estimates are reported as they are."""

    outcome: str
    icc: float
    n_units: int
    n_learners: int | None
    """Suppressed (None) under 10 learners."""
    mean_unit_size: float
    reason: str | None = None


def estimate_icc(
    outcome: str,
    y: npt.NDArray[np.float64],
    cluster: npt.NDArray[np.intp],
    n_clusters: int,
    group: npt.NDArray[np.int8] | None = None,
) -> IccEstimate:
    """ANOVA estimator of the ICC of ``y`` between clusters (within ``group`` when given).

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([1.0, 2, 3, 4, 5, 3, 4, 5, 6, 7]); c = np.repeat([0, 1], 5)
    >>> estimate_icc("y", y, c, 2).icc   # MSB = 10, MSW = 2.5, n0 = 5 → 7.5 / 20
    0.375
    """
    n = y.size
    if group is None:
        group = np.zeros(n, dtype=np.int8)
    size = np.bincount(cluster, minlength=n_clusters).astype(float)
    present = size > 0
    g = int(present.sum())
    arms = np.unique(group)
    a = int(arms.size)
    if g - a < 1 or n - g < 1:
        return IccEstimate(outcome, math.nan, g, suppress_count(n),
                           n / g if g and n >= MIN_CELL_PUPILS else math.nan,
                           reason="too few units or learners for an ICC")
    # Nested one-way ANOVA: clusters within arms (each cluster belongs to one arm).
    arm_sum = np.bincount(group, weights=y)
    arm_n = np.bincount(group).astype(float)
    resid = y - np.divide(arm_sum, arm_n, out=np.zeros_like(arm_sum), where=arm_n > 0)[group]
    sums = np.bincount(cluster, weights=resid, minlength=n_clusters)
    means = np.divide(sums, size, out=np.zeros_like(sums), where=present)
    ssw = float(np.sum((resid - means[cluster]) ** 2))
    ssb = float(np.sum(size[present] * means[present] ** 2))
    cluster_arm = np.zeros(n_clusters, dtype=np.int64)
    cluster_arm[cluster] = group
    sq_by_arm = np.bincount(cluster_arm[present], weights=size[present] ** 2,
                            minlength=arm_n.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        n0 = (n - float(np.nansum(sq_by_arm / arm_n))) / (g - a)
    msb = ssb / (g - a)
    msw = ssw / (n - g)
    denominator = msb + (n0 - 1) * msw
    if denominator <= 0:
        return IccEstimate(outcome, math.nan, g, suppress_count(n),
                           n / g if n >= MIN_CELL_PUPILS else math.nan, reason="no variance")
    if n < MIN_CELL_PUPILS:
        return IccEstimate(outcome, math.nan, g, None, math.nan,
                           reason="suppressed: fewer than 10 learners")
    return IccEstimate(outcome, (msb - msw) / denominator, g, n, n / g)
