"""Standardised effect sizes: Hedges' g and the EEF "months of progress".

Hedges' g (What Works Clearinghouse, *Procedures and Standards Handbook* v4.1, Appendix E,
"Effect size computations"): the (covariate-adjusted) difference between arms divided by the
pooled within-arm standard deviation of the outcome, times the small-sample correction

    omega = J = 1 - 3 / (4 N - 9),     N = n_treatment + n_control   (learners).

Its confidence interval is the model's interval for the difference (cluster-robust, with
the cluster degrees of freedom) divided by the same standard deviation, times J: the
standard deviation is treated as known, as the Education Endowment Foundation asks its
evaluators to do (EEF, *Statistical analysis guidance for EEF evaluations*, 2022). With
hundreds of learners its sampling error is negligible next to the between-unit error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from analysis.statistics import SampleMeanStatistic

__all__ = [
    "EEF_MONTHS_TABLE",
    "EffectSize",
    "hedges_correction",
    "hedges_g",
    "months_of_progress",
    "pooled_sd",
]

EEF_MONTHS_TABLE: Final[tuple[tuple[float, float, int], ...]] = (
    # (effect size from, to, months of additional progress), effect sizes to 2 decimals.
    # Source: Education Endowment Foundation, Teaching and Learning Toolkit, "About the
    # Toolkits: attainment" (https://educationendowmentfoundation.org.uk/evidence-summaries/
    # about-the-toolkits/attainment/), table "Months' progress / Effect size". Negative
    # effect sizes convert to the same number of months, negative. The Toolkit's last row
    # is 0.96-1.00 → 12; larger effect sizes are shown as 12 (the Toolkit's maximum).
    # Checked row by row on 2026-11-22 against a stored copy of that page (pinned in
    # tests/statistics/test_analysis_reference_tables.py). The same page warns that the
    # conversion "differs slightly" in the reports of individual EEF-funded projects (EEF,
    # "The EEF's months of additional progress measure", v2.educationendowmentfoundation.
    # org.uk/help/projects/the-eefs-months-progress-measure/); that table's rows are not in
    # the stored copy, so it could not be compared: Preuve uses the Toolkit's, for trial
    # reports too, and every report names it (methods appendix, issue 15). Searched again
    # on 2026-12-04 (search tool, pages and docs corpora): the project-report page still
    # shows its heading without rows. One project report shows the difference: Dialogic
    # Teaching, addendum (EEF, April 2019), KS2 reading g = +0.03 → 0 months, where the
    # Toolkit table gives 1 month; so the project table's first row is wider than ±0.01.
    (-0.01, 0.01, 0),
    (0.02, 0.09, 1),
    (0.10, 0.18, 2),
    (0.19, 0.26, 3),
    (0.27, 0.35, 4),
    (0.36, 0.44, 5),
    (0.45, 0.52, 6),
    (0.53, 0.61, 7),
    (0.62, 0.69, 8),
    (0.70, 0.78, 9),
    (0.79, 0.87, 10),
    (0.88, 0.95, 11),
    (0.96, 1.00, 12),
)


@dataclass(frozen=True)
class EffectSize:
    """Hedges' g of one contrast, with its interval and the EEF months of progress."""

    hedges_g: float
    hedges_g_ci_low: float
    hedges_g_ci_high: float
    pooled_sd: float
    correction: float
    months_progress: int | None


def hedges_correction(n_total: int) -> float:
    """Small-sample correction ``J = 1 - 3 / (4 N - 9)`` (WWC Handbook v4.1, Appendix E).

    Examples
    --------
    >>> round(hedges_correction(20), 6)
    0.957746
    """
    if n_total < 3:
        return math.nan
    return 1.0 - 3.0 / (4.0 * n_total - 9.0)


def pooled_sd(treatment: SampleMeanStatistic, control: SampleMeanStatistic) -> float:
    """Pooled within-arm standard deviation ``sqrt(((n1-1)s1² + (n0-1)s0²) / (n1+n0-2))``."""
    dof = treatment.n + control.n - 2
    if treatment.n < 2 or control.n < 2 or dof <= 0:
        return math.nan
    ss = (treatment.n - 1) * treatment.variance + (control.n - 1) * control.variance
    return math.sqrt(ss / dof)


def months_of_progress(g: float) -> int | None:
    """EEF months of additional progress for an effect size (None when ``g`` is NaN).

    Examples
    --------
    >>> months_of_progress(0.18), months_of_progress(0.19), months_of_progress(-0.30)
    (2, 3, -4)
    """
    if not math.isfinite(g):
        return None
    # The table is read on effect sizes rounded to 2 decimals; the small offset makes
    # 0.185 (a binary 0.18499…) round half up as a reader of the table would.
    rounded = round(abs(g) + 1e-12, 2)
    sign = -1 if g < 0 else 1
    for low, high, months in EEF_MONTHS_TABLE:
        if max(low, 0.0) <= rounded <= high:
            return sign * months if months else 0
    return sign * 12


def hedges_g(
    estimate: float,
    ci_low: float,
    ci_high: float,
    treatment: SampleMeanStatistic,
    control: SampleMeanStatistic,
) -> EffectSize:
    """Hedges' g of an (adjusted) difference, with its confidence interval.

    Parameters
    ----------
    estimate, ci_low, ci_high : float
        The model's difference between arms and its confidence interval.
    treatment, control : SampleMeanStatistic
        Endline scores of the analysed learners of each arm (for the pooled SD).

    Returns
    -------
    EffectSize
        NaN fields when the pooled SD is 0 or undefined.

    Examples
    --------
    >>> t = SampleMeanStatistic.of([12.0, 14.0, 16.0])
    >>> c = SampleMeanStatistic.of([10.0, 12.0, 14.0])
    >>> round(hedges_g(2.0, 0.0, 4.0, t, c).hedges_g, 6)   # J = 1 - 3/15 = 0.8
    0.8
    """
    sd = pooled_sd(treatment, control)
    j = hedges_correction(treatment.n + control.n)
    if not (math.isfinite(sd) and sd > 0 and math.isfinite(j)):
        return EffectSize(math.nan, math.nan, math.nan, sd, j, None)
    g = j * estimate / sd
    return EffectSize(
        hedges_g=g,
        hedges_g_ci_low=j * ci_low / sd,
        hedges_g_ci_high=j * ci_high / sd,
        pooled_sd=sd,
        correction=j,
        months_progress=months_of_progress(g),
    )
