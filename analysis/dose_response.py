"""Dose-response of usage: EXPLORATORY, not causal.

Within each treatment arm, the endline score is regressed on hours of active use (from the
usage file), with the baseline and the covariates of the ITT model, and cluster-robust
errors as there. The randomisation strata are left out: within one arm they are not part
of any contrast, and with one class per school and arm they would absorb every
between-class difference in use. Usage is chosen by learners and teachers, not randomised:
learners who use the resource more differ in ways the covariates may not capture, so the
slope describes an association, never an effect of using the resource more. The results
say so (``role="exploratory"``), and carry no effect size or months of progress.
"""

from __future__ import annotations

import math

import numpy as np

from analysis._ols import VcovKind, fit_ols, independent_columns, standard_error
from analysis.effects import arm_counts, subset_sample, t_inference, vcov_kind
from analysis.inputs import AnalysisPlan, UsageTable
from analysis.options import MIN_CELL_PUPILS
from analysis.results import Effect, not_estimable
from analysis.sample import AnalysisSample
from analysis.suppression import suppress_count

__all__ = ["HOURS_PER_STEP", "estimate_dose_response"]

HOURS_PER_STEP = 10.0
"""The slope is reported per 10 hours of active use."""

ESTIMAND = "dose-response (exploratory, not causal)"


def estimate_dose_response(plan: AnalysisPlan, sample: AnalysisSample, usage: UsageTable
                           ) -> list[Effect]:
    """Slope of the endline score per 10 hours of active use, in each treatment arm."""
    out: list[Effect] = []
    kind: VcovKind = vcov_kind(plan)
    counts = arm_counts(sample, len(plan.arms))
    for arm in plan.treatment_arms:
        t = plan.arms.index(arm)
        contrast = f"{arm}: per {HOURS_PER_STEP:g} hours of active use"
        n_units = {arm: int(counts.units[t])}
        n_learners = {arm: suppress_count(int(counts.learners[t]))}
        common = dict(outcome=sample.outcome, contrast=contrast, estimand=ESTIMAND,
                      role="exploratory", model="ols within arm, usage as regressor")
        sub = subset_sample(sample, sample.arm == t)
        reason = None
        if sub.n < MIN_CELL_PUPILS:
            reason = f"suppressed: fewer than {MIN_CELL_PUPILS} learners in arm {arm!r}"
        elif plan.clustered and sub.n_clusters < 3:
            reason = "too few units in the arm"
        hours = usage.minutes[sub.learner] / 60.0 / HOURS_PER_STEP
        if reason is None and float(np.var(hours)) == 0.0:
            reason = "no variation in usage within the arm"
        if reason is None:
            x = np.column_stack([hours, np.ones(sub.n), sub.covariates])
            y = sub.y
            k_absorbed = 0
            kept = independent_columns(x)
            c_params = 1
            if 0 not in kept:
                reason = "usage indistinguishable from strata or covariates"
            elif kind in ("cr1", "cr2") and sub.n_clusters - c_params < 2:
                reason = "too few units for cluster-robust standard errors"
            elif sub.n - len(kept) - k_absorbed <= 0:
                reason = "too few learners for the model"
            else:
                fit = fit_ols(y, x[:, kept], kind=kind, cluster=sub.cluster,
                              n_clusters=sub.n_clusters, k_absorbed=k_absorbed,
                              cluster_params=c_params)
                estimate, se = float(fit.params[0]), standard_error(float(fit.vcov[0, 0]))
                df = float(fit.df_params[0])
                low, high, p = t_inference(estimate, se, df, plan.alpha)
                out.append(Effect(
                    **common,  # type: ignore[arg-type]
                    estimate=estimate, std_error=se, ci_low=low, ci_high=high, p_value=p,
                    df=df, hedges_g=math.nan, hedges_g_ci_low=math.nan,
                    hedges_g_ci_high=math.nan, months_progress=None, n_units=n_units,
                    n_learners=n_learners,
                    notes=("exploratory: usage is not randomised; an association, not an "
                           "effect",),
                ))
                continue
        out.append(not_estimable(**common, reason=reason or "not estimable",  # type: ignore[arg-type]
                                 n_units=n_units, n_learners=n_learners))
    return out
