"""Difference-in-differences for waitlist and staggered roll-out designs.

The offline files have two waves (baseline and endline). In a waitlist design the control
arm receives the resource after the endline; in a staggered design arms start in waves.
With two waves, the difference-in-differences estimate of the effect of arm ``t`` is the
difference between arms of the mean gain ``endline - baseline``: the regression of the
gain on the arm indicators with the strata absorbed, and cluster-robust errors as in the
ITT model. It equals the two-way fixed-effects estimate (learner and wave fixed effects,
``treated x endline``) on the long data, which the tests check with pyfixest.

It complements the ANCOVA (which is more precise when the baseline is a good predictor,
and is the primary analysis); it needs a baseline score, and learners without one are
left out (they cannot have a gain). It adds no assumption in a randomised trial, and
shows the parallel-trends view reviewers of roll-out designs expect. Later waves of a
staggered design would need more than two waves; they are out of scope of the files.
"""

from __future__ import annotations

import numpy as np

from analysis._ols import VcovKind, absorb, fit_ols, independent_columns, standard_error
from analysis.effect_sizes import hedges_g
from analysis.effects import (
    arm_counts,
    cluster_params,
    contrast_name,
    subset_sample,
    t_inference,
    variance_label,
    vcov_kind,
)
from analysis.inputs import AnalysisPlan
from analysis.options import MIN_CELL_PUPILS
from analysis.results import Effect, not_estimable
from analysis.sample import AnalysisSample
from analysis.statistics import SampleMeanStatistic
from analysis.suppression import suppress_count

__all__ = ["estimate_did"]

ESTIMAND = "DiD (gain score, 2 waves)"


def estimate_did(plan: AnalysisPlan, sample: AnalysisSample) -> list[Effect]:
    """Difference-in-differences of each treatment arm against the control."""
    control = plan.arms.index(plan.control)
    treatments = [plan.arms.index(a) for a in plan.treatment_arms]
    kind: VcovKind = vcov_kind(plan)
    model = f"gain score, {variance_label(plan, kind)}"
    name = next((n for n in sample.covariate_names if n.endswith("_baseline")), None)
    has_baseline = np.zeros(sample.n, dtype=bool)
    if name is not None:
        has_baseline = np.ones(sample.n, dtype=bool)
        missing = f"{name}_manquant"
        if missing in sample.covariate_names:
            has_baseline = sample.covariates[:, sample.covariate_names.index(missing)] == 0.0
    sub = subset_sample(sample, has_baseline)
    counts = arm_counts(sub, len(plan.arms))
    effects: list[Effect] = []
    fitted: dict[int, tuple[float, float, float]] = {}
    failure = None if name is not None else "no baseline score declared for this outcome"
    for a in [control, *treatments]:
        if failure is None and counts.learners[a] < MIN_CELL_PUPILS:
            failure = f"suppressed: fewer than {MIN_CELL_PUPILS} learners with both waves in " \
                      f"arm {plan.arms[a]!r}"
        if failure is None and plan.clustered and counts.units[a] < 2:
            failure = f"too few units: arm {plan.arms[a]!r}"
    if failure is None:
        assert name is not None
        gain = sub.y - sub.covariates[:, sub.covariate_names.index(name)]
        x = np.column_stack([(sub.arm == t).astype(float) for t in treatments])
        k_absorbed = 0
        if sub.stratum is not None:
            both = absorb(np.column_stack([gain, x]), sub.stratum, sub.n_strata)
            gain, x, k_absorbed = both[:, 0], both[:, 1:], sub.n_strata
        else:
            x = np.column_stack([x, np.ones(sub.n)])
        kept = independent_columns(x)
        c_params = cluster_params(plan, k_absorbed)
        if any(i not in kept for i in range(len(treatments))):
            failure = "arm indistinguishable from strata"
        elif kind in ("cr1", "cr2") and sub.n_clusters - c_params < 1:
            failure = "too few units for cluster-robust standard errors (units ≤ strata)"
        else:
            fit = fit_ols(gain, x[:, kept], kind=kind, cluster=sub.cluster,
                          n_clusters=sub.n_clusters, k_absorbed=k_absorbed,
                          cluster_params=c_params, stratum=sub.stratum)
            for i, t in enumerate(treatments):
                j = kept.index(i)
                fitted[t] = (float(fit.params[j]), standard_error(float(fit.vcov[j, j])),
                             float(fit.df_params[j]))
    for t in treatments:
        n_units = {plan.arms[a]: int(counts.units[a]) for a in (t, control)}
        n_learners = {plan.arms[a]: suppress_count(int(counts.learners[a]))
                      for a in (t, control)}
        common = dict(outcome=sample.outcome, contrast=contrast_name(plan.arms[t], plan.control),
                      estimand=ESTIMAND, role="did", model=model)
        if t not in fitted:
            effects.append(not_estimable(**common, reason=failure or "not estimable",  # type: ignore[arg-type]
                                         n_units=n_units, n_learners=n_learners))
            continue
        estimate, se, df = fitted[t]
        low, high, p = t_inference(estimate, se, df, plan.alpha)
        size = hedges_g(estimate, low, high, SampleMeanStatistic.of(sub.y[sub.arm == t]),
                        SampleMeanStatistic.of(sub.y[sub.arm == control]))
        effects.append(Effect(
            **common,  # type: ignore[arg-type]
            estimate=estimate, std_error=se, ci_low=low, ci_high=high, p_value=p, df=df,
            hedges_g=size.hedges_g, hedges_g_ci_low=size.hedges_g_ci_low,
            hedges_g_ci_high=size.hedges_g_ci_high, months_progress=size.months_progress,
            n_units=n_units, n_learners=n_learners,
            notes=("learners with both waves only",),
        ))
    return effects
