"""Complier average causal effect (CACE) by two-stage least squares.

Declared by ``usage.compliance.min_active_minutes``: a learner complies when their active
minutes over the intervention reach the threshold (computed from the usage file; learners
absent from it have 0 minutes). The random assignment instruments compliance:

* two arms: one endogenous regressor, ``complied`` (in either arm, so that control learners
  who used the resource count as always-takers);
* more arms: one per treatment arm, ``complied and in arm t``, instrumented by the arm
  indicators (control learners' use is then outside the model, and a warning says so).

Exogenous regressors are those of the ITT model (baseline, covariates, absorbed strata).
Standard errors are cluster-robust by unit with the ITT model's estimator: CR2 with
Satterthwaite df by default, computed on the first-stage fitted regressors as
``estimatr::iv_robust(se_type = "CR2")`` does; ``cr1`` is linearmodels ``IV2SLS``,
``cov_type="clustered", debiased=True``. The effect's ``model`` names the estimator used.
Assumptions (Angrist, Imbens & Rubin 1996): exclusion restriction (assignment affects the
outcome only through use) and monotonicity; the threshold is the protocol's, not a
natural definition of "treated", so the CACE is that of reaching the threshold.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analysis._ols import VcovKind, absorb, fit_2sls, independent_columns, standard_error
from analysis.effect_sizes import hedges_g
from analysis.effects import (
    arm_counts,
    cluster_params,
    contrast_name,
    t_inference,
    variance_label,
    vcov_kind,
)
from analysis.inputs import AnalysisPlan, UsageTable
from analysis.options import MIN_CELL_PUPILS
from analysis.results import Effect, not_estimable
from analysis.sample import AnalysisSample
from analysis.statistics import SampleMeanStatistic
from analysis.suppression import suppress_count
from analysis.usage import compliance
from analysis.warning_codes import AnalysisWarning

__all__ = ["estimate_cace"]


def estimate_cace(plan: AnalysisPlan, sample: AnalysisSample, usage: UsageTable | None
                  ) -> tuple[list[Effect], list[AnalysisWarning]]:
    """CACE of each treatment arm on one outcome, and warnings.

    Returns
    -------
    (effects, warnings)
        Effects with ``estimand="CACE"``; not-estimable ones carry a reason.
    """
    control = plan.arms.index(plan.control)
    treatments = [plan.arms.index(a) for a in plan.treatment_arms]
    kind: VcovKind = vcov_kind(plan)
    model = f"2SLS, {variance_label(plan, kind)}"
    counts = arm_counts(sample, len(plan.arms))
    warnings: list[AnalysisWarning] = []

    def fail(reason: str) -> list[Effect]:
        return [not_estimable(
            outcome=sample.outcome, contrast=contrast_name(plan.arms[t], plan.control),
            estimand="CACE", role="cace", model=model, reason=reason,
            n_units={plan.arms[a]: int(counts.units[a]) for a in (t, control)},
            n_learners={plan.arms[a]: suppress_count(int(counts.learners[a]))
                        for a in (t, control)},
        ) for t in treatments]

    if plan.min_active_minutes is None:
        return fail("the protocol declares no usage.compliance"), warnings
    if usage is None:
        return fail("no usage file given (--usage): compliance cannot be computed"), warnings
    for a in [control, *treatments]:
        if counts.learners[a] < MIN_CELL_PUPILS:
            return fail(f"suppressed: fewer than {MIN_CELL_PUPILS} learners in arm "
                        f"{plan.arms[a]!r}"), warnings
        if plan.clustered and counts.units[a] < 2:
            return fail(f"too few units: arm {plan.arms[a]!r}"), warnings
    complied = compliance(plan, usage, sample.learner).astype(float)
    z = np.column_stack([(sample.arm == t).astype(float) for t in treatments])
    if len(treatments) == 1:
        d = complied[:, None]
    else:
        d = z * complied[:, None]
        if np.any(complied[sample.arm == control] > 0):
            warnings.append(AnalysisWarning("cace_control_compliers"))
    y = sample.y
    exog = sample.covariates
    k_absorbed = 0
    stratum = None
    if sample.stratum is not None:
        y, exog = sample.within_strata  # shared with the ITT model
        block = absorb(np.column_stack([d, z]), sample.stratum, sample.n_strata)
        d = block[:, : d.shape[1]]
        z = block[:, d.shape[1]:]
        k_absorbed = sample.n_strata
        stratum = sample.stratum
    else:
        exog = np.column_stack([np.ones(sample.n), exog])
    kept_exog = independent_columns(exog)
    exog = exog[:, kept_exog]
    first_stage = np.column_stack([z, exog])
    if len(independent_columns(np.column_stack([d, exog]))) < d.shape[1] + exog.shape[1] or \
            len(independent_columns(first_stage)) < first_stage.shape[1]:
        return fail("no variation in compliance beyond the covariates"), warnings
    if _weak(d, z, exog):
        return fail("assignment does not change compliance (no first stage)"), warnings
    c_params = cluster_params(plan, k_absorbed)
    if kind in ("cr1", "cr2") and sample.n_clusters - c_params < 1:
        return fail("too few units for cluster-robust standard errors (units ≤ strata)"), warnings
    fit = fit_2sls(y, exog, d, z, kind=kind, cluster=sample.cluster,
                   n_clusters=sample.n_clusters, k_absorbed=k_absorbed, cluster_params=c_params,
                   stratum=stratum)
    effects: list[Effect] = []
    for i, t in enumerate(treatments):
        estimate = float(fit.params[i])
        se = standard_error(float(fit.vcov[i, i]))
        df = float(fit.df_params[i])
        low, high, p = t_inference(estimate, se, df, plan.alpha)
        size = hedges_g(estimate, low, high,
                        SampleMeanStatistic.of(sample.y[sample.arm == t]),
                        SampleMeanStatistic.of(sample.y[sample.arm == control]))
        effects.append(Effect(
            outcome=sample.outcome, contrast=contrast_name(plan.arms[t], plan.control),
            estimand="CACE", role="cace", model=model, estimate=estimate, std_error=se,
            ci_low=low, ci_high=high, p_value=p, df=df, hedges_g=size.hedges_g,
            hedges_g_ci_low=size.hedges_g_ci_low, hedges_g_ci_high=size.hedges_g_ci_high,
            months_progress=size.months_progress,
            n_units={plan.arms[a]: int(counts.units[a]) for a in (t, control)},
            n_learners={plan.arms[a]: suppress_count(int(counts.learners[a]))
                        for a in (t, control)},
            notes=(f"compliance: at least {plan.min_active_minutes:g} active minutes",),
        ))
    return effects, warnings


def _weak(d: npt.NDArray[np.float64], z: npt.NDArray[np.float64],
          exog: npt.NDArray[np.float64]) -> bool:
    """True when the instruments explain (numerically) none of the endogenous variation."""
    x = np.column_stack([z, exog])
    coef, *_ = np.linalg.lstsq(x, d, rcond=None)
    return bool(np.all(np.abs(coef[: z.shape[1]]) < 1e-10))

