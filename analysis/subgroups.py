"""Subgroup effects: arm × subgroup interactions in one model per attribute.

For an attribute with levels ``l`` (a unit attribute such as ``education_priority``, or
a learner column of the outcomes file), the model replaces each arm indicator by its
products with the level indicators and adds the level main effects; the coefficient of
``arm t × level l`` is the effect of ``t`` in subgroup ``l``. Everything else is the
primary model (baseline, covariates, absorbed strata, same covariance). The interaction
test is the Wald test that the effect of ``t`` is the same in every level. With CR2 (the
default) it is the HTZ test of clubSandwich's ``Wald_test`` (Tipton & Pustejovsky 2015):
``F = delta Q / q`` on ``(q, nu - q + 1)`` df (with two levels, the Satterthwaite t test
squared); with ``cr1`` it is ``F(q, G - 1)`` (``G - S`` with ``cr1-strata``) and
``F(q, N - K)`` for learners.

A level where an arm of the contrast has fewer than 10 learners is suppressed: its
learners leave the subgroup model and the level is reported without numbers.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from analysis._ols import (
    LinearFit,
    VcovKind,
    absorb,
    fit_ols,
    independent_columns,
    standard_error,
)
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
from analysis.inputs import AnalysisPlan, OutcomeTable, UnitTable
from analysis.options import MIN_CELL_PUPILS
from analysis.results import Effect, InteractionTest, not_estimable
from analysis.sample import AnalysisSample, attribute_codes
from analysis.statistics import SampleMeanStatistic
from analysis.suppression import suppress_count

__all__ = ["InteractionTest", "estimate_subgroups"]


def estimate_subgroups(
    plan: AnalysisPlan, sample: AnalysisSample, units: UnitTable, outcomes: OutcomeTable,
    attribute: str,
) -> tuple[list[Effect], list[InteractionTest]]:
    """Effects per level of ``attribute`` and the interaction test of each contrast."""
    labels, levels = attribute_codes(attribute, units, outcomes, sample.learner)
    control = plan.arms.index(plan.control)
    treatments = [plan.arms.index(a) for a in plan.treatment_arms]
    kind: VcovKind = vcov_kind(plan)
    model = f"ancova × {attribute}, {variance_label(plan, kind)}"

    # Which (contrast, level) cells may be shown, and which learners stay in the model.
    shown: dict[tuple[int, str], str | None] = {}
    keep = np.zeros(sample.n, dtype=bool)
    for code, level in enumerate(levels):
        in_level = labels == code
        counts = arm_counts(sample, len(plan.arms), in_level)
        level_ok = True
        for t in treatments:
            reason = None
            for a in (t, control):
                if counts.learners[a] < MIN_CELL_PUPILS:
                    reason = f"suppressed: fewer than {MIN_CELL_PUPILS} learners in arm " \
                             f"{plan.arms[a]!r} of this subgroup"
                elif plan.clustered and counts.units[a] < 2:
                    reason = f"too few units: arm {plan.arms[a]!r} has fewer than 2 units here"
            shown[(t, level)] = reason
            level_ok = level_ok and reason is None
        if level_ok:
            keep |= in_level
    kept_levels = [lv for lv in levels if all(shown[(t, lv)] is None for t in treatments)]

    effects: list[Effect] = []
    tests: list[InteractionTest] = []
    fitted: dict[tuple[int, str], tuple[float, float, float]] = {}
    fit_reason: str | None = None
    vcov = params = None
    index: dict[tuple[int, str], int] = {}
    fit: LinearFit | None = None
    if kept_levels:
        sub = subset_sample(sample, keep)
        sub_labels = labels[keep]
        columns: list[npt.NDArray[np.float64]] = []
        for t in treatments:
            for level in kept_levels:
                index[(t, level)] = len(columns)
                in_level = sub_labels == levels.index(level)
                columns.append(((sub.arm == t) & in_level).astype(float))
        for level in kept_levels[1:]:
            columns.append((sub_labels == levels.index(level)).astype(float))
        k_absorbed = 0
        if sub.stratum is not None:
            y, covariates = sub.within_strata  # shared with the ITT model
            own = absorb(np.column_stack(columns), sub.stratum, sub.n_strata)
            x, k_absorbed = np.column_stack([own, covariates]), sub.n_strata
        else:
            y = sub.y
            x = np.column_stack(columns + [sub.covariates, np.ones(sub.n)])
        kept = independent_columns(x)
        if any(i not in kept for i in index.values()):
            fit_reason = "subgroup indistinguishable from strata or covariates"
        elif sub.n - len(kept) - k_absorbed <= 0 or (
                kind in ("cr1", "cr2")
                and sub.n_clusters - cluster_params(plan, k_absorbed) < 2):
            fit_reason = "too few learners or units for the subgroup model"
        else:
            fit = fit_ols(y, x[:, kept], kind=kind, cluster=sub.cluster,
                          n_clusters=sub.n_clusters, k_absorbed=k_absorbed,
                          cluster_params=cluster_params(plan, k_absorbed), stratum=sub.stratum)
            params, vcov = fit.params, fit.vcov
            index = {key: kept.index(i) for key, i in index.items()}
            for key, j in index.items():
                fitted[key] = (float(params[j]), standard_error(float(vcov[j, j])),
                               float(fit.df_params[j]))

    for t in treatments:
        contrast = contrast_name(plan.arms[t], plan.control)
        for code, level in enumerate(levels):
            in_level = labels == code
            counts = arm_counts(sample, len(plan.arms), in_level)
            n_units = {plan.arms[a]: int(counts.units[a]) for a in (t, control)}
            n_learners = {plan.arms[a]: suppress_count(int(counts.learners[a]))
                          for a in (t, control)}
            tag = f"{attribute}={level}"
            reason = shown[(t, level)]
            if reason is None and (t, level) not in fitted:
                # With three or more arms, a level shown for this contrast leaves the model
                # when another contrast has a suppressed cell in it.
                reason = fit_reason or ("subgroup left out of the interaction model: another "
                                        "arm has too few learners or units in it")
            if reason is not None:
                effects.append(not_estimable(
                    outcome=sample.outcome, contrast=contrast, estimand="ITT", role="subgroup",
                    model=model, reason=reason, n_units=n_units, n_learners=n_learners,
                    subgroup=tag))
                continue
            estimate, se, df = fitted[(t, level)]
            low, high, p = t_inference(estimate, se, df, plan.alpha)
            size = hedges_g(estimate, low, high,
                            SampleMeanStatistic.of(sample.y[in_level & (sample.arm == t)]),
                            SampleMeanStatistic.of(sample.y[in_level & (sample.arm == control)]))
            effects.append(Effect(
                outcome=sample.outcome, contrast=contrast, estimand="ITT", role="subgroup",
                model=model, estimate=estimate, std_error=se, ci_low=low, ci_high=high,
                p_value=p, df=df, hedges_g=size.hedges_g, hedges_g_ci_low=size.hedges_g_ci_low,
                hedges_g_ci_high=size.hedges_g_ci_high, months_progress=size.months_progress,
                n_units=n_units, n_learners=n_learners, subgroup=tag))
        tests.append(_interaction_test(sample.outcome, contrast, attribute, t, kept_levels,
                                       index, fit, fit_reason))
    return effects, tests


def _interaction_test(
    outcome: str, contrast: str, attribute: str, t: int, levels: list[str],
    index: dict[tuple[int, str], int], fit: LinearFit | None, fit_reason: str | None,
) -> InteractionTest:
    q = len(levels) - 1
    if fit is None or q < 1:
        return InteractionTest(outcome, contrast, attribute, tuple(levels), math.nan, max(q, 0),
                               math.nan, math.nan,
                               reason=fit_reason or "fewer than two subgroups can be shown")
    r = np.zeros((q, fit.params.size))
    for row, level in enumerate(levels[1:]):
        r[row, index[(t, level)]] = 1.0
        r[row, index[(t, levels[0])]] = -1.0
    try:
        statistic, _, df_den, p = fit.wald_test(r)
    except np.linalg.LinAlgError:
        return InteractionTest(outcome, contrast, attribute, tuple(levels), math.nan, q,
                               math.nan, math.nan,
                               reason="singular covariance of the interactions")
    return InteractionTest(outcome, contrast, attribute, tuple(levels), statistic, q, df_den, p)
