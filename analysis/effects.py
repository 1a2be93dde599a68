"""Intention-to-treat effects: every arm against the control, all arms in one model.

``ancova`` (the default): OLS of the endline score on the arm indicators, the baseline
score (dummy-variable method when missing), the declared covariates and fixed effects of
the randomisation strata (absorbed). Standard errors are cluster-robust at the unit of
randomisation, by default CR2 (Bell & McCaffrey 2002) with t intervals on the Satterthwaite
degrees of freedom of Pustejovsky & Tipton (2018), as R's clubSandwich and estimatr compute
them; when the unit is the learner each learner is its own cluster (HC2 with Bell-McCaffrey
df). ``cluster_correction: cr1`` gives CR1 (``G-1`` df; HC1 with ``N-K`` df for learners).
See :mod:`analysis._ols` for the algorithm and which libraries each option matches.

``mixed``: linear mixed model with random intercepts for the unit (and for the school when
classes are nested in schools), fitted by REML (:mod:`analysis.mixed`, equal to lme4);
standard errors from the REML covariance and t intervals on Satterthwaite degrees of
freedom, both as lmerTest's ``summary`` (or, with ``plan.mixed_df = "kenward-roger"``, the
Kenward-Roger standard error and df of pbkrtest). When pupils are randomised the random intercept is
their class (units-file column ``class_id``; a random intercept per pupil is not
identified), and without that column the model says it cannot estimate. Strata are fixed
effects, except the strata of the grouping's own column (the school with a random school
intercept, the class when pupils are randomised: the random intercept stands for them); at
most 100 strata.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special

from analysis._ols import VcovKind, absorb, fit_ols, independent_columns, standard_error
from analysis.effect_sizes import hedges_g
from analysis.inputs import AnalysisPlan
from analysis.options import MIN_CELL_PUPILS, Role, check_option
from analysis.results import Effect, not_estimable
from analysis.sample import CLASS_COLUMN, AnalysisSample, compact_codes
from analysis.statistics import SampleMeanStatistic
from analysis.suppression import suppress_count

__all__ = [
    "ArmCounts",
    "arm_counts",
    "cluster_params",
    "contrast_name",
    "estimate_effects",
    "subset_sample",
    "t_inference",
    "variance_label",
    "vcov_kind",
]


MAX_MIXED_STRATA = 100
"""Most strata the ``mixed`` model takes as fixed-effect dummies."""


def contrast_name(treatment: str, control: str) -> str:
    """Name of a contrast, e.g. ``"lectio vs usual"``."""
    return f"{treatment} vs {control}"


@dataclass(frozen=True)
class ArmCounts:
    """Learners and units of each arm in an analysis sample (index = ``plan.arms``)."""

    learners: npt.NDArray[np.int64]
    units: npt.NDArray[np.int64]


def arm_counts(sample: AnalysisSample, n_arms: int, rows: npt.NDArray[np.bool_] | None = None
               ) -> ArmCounts:
    """Count learners and distinct units per arm (optionally within ``rows``)."""
    arm = sample.arm if rows is None else sample.arm[rows]
    cluster = sample.cluster if rows is None else sample.cluster[rows]
    learners = np.bincount(arm, minlength=n_arms).astype(np.int64)
    pairs = np.bincount(arm.astype(np.int64) * sample.n_clusters + cluster,
                        minlength=n_arms * sample.n_clusters)
    units = np.count_nonzero(pairs.reshape(n_arms, sample.n_clusters), axis=1).astype(np.int64)
    return ArmCounts(learners=learners, units=units)


def cluster_params(plan: AnalysisPlan, n_absorbed_strata: int) -> int:
    """``c`` of the CR1 factor ``G/(G-c)`` and ``G-c`` df (see ``analysis/_ols.py``).

    ``S`` absorbed strata for ``cr1-strata``, else 1 (CR1; unused by CR2).
    """
    if plan.cluster_correction == "cr1-strata" and n_absorbed_strata > 0:
        return n_absorbed_strata
    return 1


def vcov_kind(plan: AnalysisPlan) -> VcovKind:
    """Covariance of the OLS and 2SLS estimators for the plan's ``cluster_correction``.

    Examples
    --------
    >>> from analysis.inputs import AnalysisPlan, OutcomeSpec
    >>> plan = AnalysisPlan("x", "", "learner", ("t", "c"), "c", (1.0, 1.0),
    ...                     (OutcomeSpec("y", True),))
    >>> from dataclasses import replace
    >>> vcov_kind(plan), vcov_kind(replace(plan, cluster_correction="cr1"))
    ('cr2', 'hc1')
    """
    if plan.cluster_correction == "cr2":
        return "cr2"
    return "cr1" if plan.clustered else "hc1"


def variance_label(plan: AnalysisPlan, kind: VcovKind) -> str:
    """Short name of the variance estimator and its degrees of freedom, for labels.

    Examples
    --------
    >>> from analysis.inputs import AnalysisPlan, OutcomeSpec
    >>> plan = AnalysisPlan("x", "", "class", ("t", "c"), "c", (1.0, 1.0),
    ...                     (OutcomeSpec("y", True),))
    >>> variance_label(plan, "cr2")
    'CR2 cluster-robust by unit, Satterthwaite df'
    """
    if kind == "cr2":
        if plan.clustered:
            return "CR2 cluster-robust by unit, Satterthwaite df"
        return "HC2 robust (CR2, one learner per cluster), Satterthwaite df"
    if kind == "cr1":
        if plan.cluster_correction == "cr1-strata":
            return "CR1 with G/(G-S) (cr1-strata, Preuve's own), G-S df"
        return "CR1 cluster-robust by unit, G-1 df"
    if kind == "hc1":
        return "HC1 robust, N-K df"
    return "iid (clustering ignored)"


def t_inference(estimate: float, se: float, df: float, alpha: float
                ) -> tuple[float, float, float]:
    """``(ci_low, ci_high, p_value)`` from a t distribution with ``df`` degrees of freedom."""
    if not (math.isfinite(se) and se > 0 and df > 0):
        return math.nan, math.nan, math.nan
    # scipy.special's Student t functions (what scipy.stats.t calls, without the 0.4 s
    # import of scipy.stats at every ``preuve analyze``).
    crit = float(special.stdtrit(df, 1.0 - alpha / 2.0))
    p = float(2.0 * special.stdtr(df, -abs(estimate / se)))
    return estimate - crit * se, estimate + crit * se, p


def _count_maps(plan: AnalysisPlan, counts: ArmCounts, arms: Sequence[int]
                ) -> tuple[dict[str, int | None], dict[str, int | None]]:
    units: dict[str, int | None] = {plan.arms[a]: int(counts.units[a]) for a in arms}
    learners = {plan.arms[a]: suppress_count(int(counts.learners[a])) for a in arms}
    return units, learners


def _blocking_reason(plan: AnalysisPlan, counts: ArmCounts, treatment: int, control: int
                     ) -> str | None:
    """Why a contrast cannot be estimated from these counts, or None."""
    for a in (treatment, control):
        name = plan.arms[a]
        if counts.learners[a] == 0:
            return f"no learner of arm {name!r} has an endline score"
        if counts.learners[a] < MIN_CELL_PUPILS:
            return (f"suppressed: fewer than {MIN_CELL_PUPILS} learners in arm {name!r}")
        if plan.clustered and counts.units[a] < 2:
            return f"too few units: arm {name!r} has {int(counts.units[a])} unit(s) with data"
    return None


def _model_label(plan: AnalysisPlan, kind: VcovKind | None) -> str:
    if plan.model == "mixed" and kind is None:
        df_name = "Kenward-Roger" if plan.mixed_df == "kenward-roger" else "Satterthwaite"
        return f"mixed (REML, random intercepts), {df_name} df"
    return f"ancova, {variance_label(plan, kind or vcov_kind(plan))}"


def _notes(sample: AnalysisSample, plan: AnalysisPlan, mixed: bool = False
           ) -> tuple[str, ...]:
    notes: list[str] = []
    if sample.baseline_missing:
        notes.append(
            f"baseline missing for {sample.baseline_missing} learners: dummy-variable method "
            "(missing set to 0, missingness indicator in the model)"
            if sample.baseline_missing >= MIN_CELL_PUPILS
            else "baseline missing for fewer than 10 learners: dummy-variable method"
        )
    covered = _mixed_grouping_column(plan, sample) if mixed else None
    fixed = [s for s in plan.strata if s != covered]
    if fixed:
        notes.append(f"fixed effects of the randomisation strata {fixed}")
    if covered is not None and covered in plan.strata:
        level = "class" if plan.unit == "learner" else "school"
        notes.append(f"the random intercept of the {level} stands for the randomisation "
                     f"strata {[covered]}")
    return tuple(notes)


def _mixed_grouping_column(plan: AnalysisPlan, sample: AnalysisSample) -> str | None:
    """Units-file column whose random intercept the ``mixed`` model adds beyond the unit's:
    the class when pupils are randomised, the school for classes nested in schools."""
    if plan.unit == "learner":
        return CLASS_COLUMN if sample.learner_class is not None else None
    if (plan.clustered and sample.school is not None and sample.n > 0
            and int(sample.school.max()) + 1 < sample.n_clusters):
        return plan.school
    return None


def _design(sample: AnalysisSample, arm_columns: Sequence[int]
            ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int]:
    """``(y, X, k_absorbed)``: arm indicators then covariates; strata absorbed."""
    dummies = [(sample.arm == a).astype(float) for a in arm_columns]
    if sample.stratum is not None:
        y, covariates = sample.within_strata
        arms = absorb(np.column_stack(dummies), sample.stratum, sample.n_strata) if dummies \
            else np.empty((sample.n, 0))
        return y, np.column_stack([arms, covariates]), sample.n_strata
    x = np.column_stack(dummies + [sample.covariates]) if dummies else sample.covariates
    return sample.y, np.column_stack([x[:, : len(dummies)], np.ones(sample.n),
                                      x[:, len(dummies):]]), 0


def estimate_effects(
    plan: AnalysisPlan,
    sample: AnalysisSample,
    *,
    role: Role = "primary",
    vcov: VcovKind | None = None,
) -> list[Effect]:
    """ITT effect of each treatment arm against the control on one outcome.

    Parameters
    ----------
    plan : AnalysisPlan
    sample : AnalysisSample
        From :func:`analysis.sample.build_sample`.
    role : {"primary", "secondary", …}
        Carried into the results.
    vcov : {"cr2", "cr1", "hc1", "iid"}, optional
        Overrides the covariance implied by the plan (``iid`` exists to show what ignoring
        clustering does; never use it for a report).

    Returns
    -------
    list of Effect
        One per treatment arm, in protocol order; not-estimable contrasts carry a reason.

    Examples
    --------
    >>> import numpy as np
    >>> from analysis.inputs import AnalysisPlan, OutcomeSpec
    >>> from analysis.sample import AnalysisSample
    >>> rng = np.random.default_rng(1)
    >>> unit = np.repeat(np.arange(20), 15); arm = (unit % 2).astype(np.int8)
    >>> y = 0.3 * (arm == 0) + rng.normal(size=300) + rng.normal(size=20)[unit]
    >>> s = AnalysisSample("y", y, arm, np.arange(300), unit, unit, 20, None, 0, None,
    ...                    np.empty((300, 0)), (), 0)
    >>> plan = AnalysisPlan("x", "", "class", ("t", "c"), "c", (1.0, 1.0),
    ...                     (OutcomeSpec("y", True),))
    >>> [e.contrast for e in estimate_effects(plan, s)]
    ['t vs c']
    """
    if vcov is not None:
        check_option(vcov, VcovKind, "vcov")
    control = plan.arms.index(plan.control)
    treatments = [plan.arms.index(a) for a in plan.treatment_arms]
    counts = arm_counts(sample, len(plan.arms))
    model = _model_label(plan, vcov)
    notes = _notes(sample, plan, mixed=plan.model == "mixed" and vcov is None)
    blocked = {t: _blocking_reason(plan, counts, t, control) for t in treatments}
    if sample.n == 0:
        empty = f"no learner has an endline score of outcome {sample.outcome!r} in the records"
        blocked = {t: empty for t in treatments}
    estimable = [t for t in treatments if blocked[t] is None]
    control_reason = _blocking_reason(plan, counts, control, control)

    fitted: dict[int, tuple[float, float, float]] = {}
    failure: str | None = control_reason
    if failure is None and estimable:
        if float(np.var(sample.y)) == 0.0:
            failure = "no variance: every analysed learner has the same endline score"
        elif plan.model == "mixed" and vcov is None:
            fitted, failure = _fit_mixed(plan, sample, estimable)
        else:
            fitted, failure = _fit_ancova(plan, sample, estimable, vcov)

    effects: list[Effect] = []
    for t in treatments:
        n_units, n_learners = _count_maps(plan, counts, (t, control))
        reason = blocked[t] or failure or (None if t in fitted else
                                           "arm indistinguishable from strata or covariates")
        common = dict(outcome=sample.outcome, contrast=contrast_name(plan.arms[t], plan.control),
                      estimand="ITT", role=role, model=model)
        if reason is not None:
            effects.append(not_estimable(**common, reason=reason, n_units=n_units,  # type: ignore[arg-type]
                                         n_learners=n_learners, notes=notes))
            continue
        estimate, se, df = fitted[t]
        low, high, p = t_inference(estimate, se, df, plan.alpha)
        size = hedges_g(estimate, low, high,
                        SampleMeanStatistic.of(sample.y[sample.arm == t]),
                        SampleMeanStatistic.of(sample.y[sample.arm == control]))
        effects.append(Effect(
            **common,  # type: ignore[arg-type]
            estimate=estimate, std_error=se, ci_low=low, ci_high=high, p_value=p, df=df,
            hedges_g=size.hedges_g, hedges_g_ci_low=size.hedges_g_ci_low,
            hedges_g_ci_high=size.hedges_g_ci_high, months_progress=size.months_progress,
            n_units=n_units, n_learners=n_learners, notes=notes,
        ))
    return effects


def _fit_ancova(plan: AnalysisPlan, sample: AnalysisSample, arms: list[int],
                vcov: VcovKind | None) -> tuple[dict[int, tuple[float, float, float]], str | None]:
    """Fit the ANCOVA; ``{arm: (estimate, se, df)}`` or a reason."""
    kind: VcovKind = vcov or vcov_kind(plan)
    # Keep only rows of the arms in the model (the control and estimable arms).
    control = plan.arms.index(plan.control)
    rows = np.isin(sample.arm, arms + [control])
    sub = subset_sample(sample, rows)
    y, x, k_absorbed = _design(sub, arms)
    kept = independent_columns(x)
    lost = [a for i, a in enumerate(arms) if i not in kept]
    if len(lost) == len(arms):  # nothing left to estimate (and maybe no column at all)
        return {}, ("arm indistinguishable from strata or covariates (no randomisation "
                    "stratum holds both the arm and the control)")
    x = x[:, kept]
    n, k = x.shape
    c_params = cluster_params(plan, k_absorbed)
    if kind in ("cr1", "cr2") and sub.n_clusters - c_params < 1:
        return {}, "too few units for cluster-robust standard errors (units ≤ strata)"
    if n - k - k_absorbed <= 0:
        return {}, f"too few learners ({n}) for the {k + k_absorbed} model parameters"
    fit = fit_ols(y, x, kind=kind, cluster=sub.cluster, n_clusters=sub.n_clusters,
                  k_absorbed=k_absorbed, cluster_params=c_params, stratum=sub.stratum)
    out: dict[int, tuple[float, float, float]] = {}
    for i, a in enumerate(arms):
        if a in lost:
            continue
        j = kept.index(i)
        se = standard_error(float(fit.vcov[j, j]))
        if not math.isfinite(se):
            return {}, ("no residual variation to estimate a standard error from (the model "
                        "fits the endline scores exactly)")
        out[a] = (float(fit.params[j]), se, float(fit.df_params[j]))
    return out, None


def subset_sample(sample: AnalysisSample, rows: npt.NDArray[np.bool_]) -> AnalysisSample:
    """The sample restricted to ``rows``, with clusters and strata renumbered."""
    if rows.all():
        return sample
    cluster, n_clusters = compact_codes(sample.cluster[rows])
    stratum = None
    n_strata = 0
    if sample.stratum is not None:
        stratum, n_strata = compact_codes(sample.stratum[rows])
    school = None if sample.school is None else compact_codes(sample.school[rows])[0]
    return AnalysisSample(
        outcome=sample.outcome, y=sample.y[rows], arm=sample.arm[rows],
        learner=sample.learner[rows], unit=sample.unit[rows],
        cluster=cluster, n_clusters=n_clusters, stratum=stratum, n_strata=n_strata,
        school=school,
        covariates=sample.covariates[rows], covariate_names=sample.covariate_names,
        baseline_missing=sample.baseline_missing,
        outer_stratum=None if sample.outer_stratum is None
        else compact_codes(sample.outer_stratum[rows])[0],
        learner_class=None if sample.learner_class is None
        else compact_codes(sample.learner_class[rows])[0],
    )


def _fit_mixed(plan: AnalysisPlan, sample: AnalysisSample, arms: list[int]
               ) -> tuple[dict[int, tuple[float, float, float]], str | None]:
    """REML random-intercept model (:mod:`analysis.mixed`), Satterthwaite df per arm."""
    from analysis.mixed import fit_random_intercepts, group_sums, kenward_roger

    control = plan.arms.index(plan.control)
    rows = np.isin(sample.arm, arms + [control])
    sub = subset_sample(sample, rows)
    if plan.unit == "learner":
        # One random intercept per pupil is not identified beside the residual (lme4
        # refuses it): pupils randomised individually are grouped by their class.
        if sub.learner_class is None:
            return {}, (f"mixed model: pupils are randomised and the units file has no "
                        f"{CLASS_COLUMN!r} column to group them by class (a random "
                        f"intercept per pupil is not identified); the ancova model needs none")
        group, n_groups = compact_codes(sub.learner_class)
        school_of_group = None
        covered_stratum: str | None = CLASS_COLUMN
    else:
        group, n_groups = sub.cluster, sub.n_clusters
        school_of_group = None
        if (sub.school is not None and plan.clustered
                and int(sub.school.max()) + 1 < sub.n_clusters):
            school_of_group = np.zeros(n_groups, dtype=np.intp)
            school_of_group[group] = sub.school
        covered_stratum = plan.school if school_of_group is not None else None
    if n_groups < 2:
        return {}, f"mixed model: {n_groups} class(es) with data, at least 2 are needed"
    if n_groups >= sub.n:
        # A random intercept per observation is confounded with the residual (lme4
        # refuses it the same way: levels of a grouping factor must be fewer than rows).
        return {}, (f"mixed model: as many groups as learners ({sub.n}): the random "
                    f"intercept is not identified; the ancova model needs none")
    dummies = [(sub.arm == a).astype(float) for a in arms]
    blocks = [np.ones(sub.n)] + dummies + [sub.covariates]
    # Strata enter as fixed effects, except the column the random intercept stands for
    # (the school with classes nested in schools, the class when pupils are randomised):
    # fixed effects and a random intercept of the same groups are not identified together.
    strata = (sub.outer_stratum if covered_stratum is not None
              and covered_stratum in plan.strata else sub.stratum)
    if strata is not None:
        n_levels = int(strata.max()) + 1
        if n_levels > MAX_MIXED_STRATA:
            return {}, (f"{n_levels} strata are too many fixed effects for the mixed model "
                        f"(at most {MAX_MIXED_STRATA}); the ancova model absorbs them")
        if n_levels > 1:
            blocks.append(pd.get_dummies(strata, drop_first=True, dtype=float).to_numpy())
    x = np.column_stack(blocks)
    kept = independent_columns(x)
    if any(1 + i not in kept for i in range(len(arms))):
        return {}, "arm indistinguishable from strata or covariates"
    x = x[:, kept]
    if sub.n - x.shape[1] < 1:
        return {}, f"too few learners ({sub.n}) for the {x.shape[1]} fixed effects"
    try:
        sums = group_sums(sub.y, x, group, n_groups, school_of_group)
        fit = fit_random_intercepts(sums)
    except (np.linalg.LinAlgError, ValueError) as exc:
        return {}, f"mixed model failed to fit: {exc}"
    if not fit.converged:
        return {}, "mixed model did not converge (REML)"
    out = {}
    for i, a in enumerate(arms):
        contrast = np.zeros(x.shape[1])
        contrast[kept.index(1 + i)] = 1.0
        estimate = float(contrast @ fit.params)
        if plan.mixed_df == "kenward-roger":
            se, df = kenward_roger(sums, fit, contrast)
        else:
            se = standard_error(float(contrast @ fit.vcov @ contrast))
            df = fit.satterthwaite_df(contrast)
        if not (math.isfinite(se) and math.isfinite(estimate)):
            return {}, ("mixed model gave no valid standard error (no residual variation "
                        "left once the fixed effects are fitted)")
        if not (math.isfinite(df) and df > 0):
            return {}, ("mixed model: no degrees of freedom (the REML information about "
                        "the variances is singular)")
        out[a] = (estimate, se, df)
    return out, None
