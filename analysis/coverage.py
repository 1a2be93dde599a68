"""Simulation study: do the intervals of an estimator cover the true effect 95% of the time?

Each design of :func:`analysis.simulate.simulate_design` (``paired``, ``small-unbalanced``,
``large-strata``, ``pupil-randomised``) is drawn many times with a true ITT effect of
0.25 SD; each estimator of :data:`ESTIMATORS` gives an estimate, a standard error and
degrees of freedom, and the study counts how often the 95% t interval covers the truth.
``benchmarks/simulation_coverage.py`` prints the study at 500 trials a design (figures in
``benchmarks/README.md``); ``tests/statistics/test_simulation_study.py`` runs a smaller
seeded version.

To add an estimator (e.g. the mixed model), append an :class:`Estimator` to
:data:`ESTIMATORS`: a name and a function of a :class:`~analysis.simulate.DesignTrial`
returning ``(estimate, std_error, df)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

from analysis._ols import absorb, fit_ols
from analysis.effects import estimate_effects
from analysis.inputs import AnalysisPlan, OutcomeSpec
from analysis.options import ClusterCorrection
from analysis.sample import AnalysisSample
from analysis.simulate import DESIGNS, DesignName, DesignTrial, simulate_design

__all__ = [
    "ESTIMATORS",
    "EFFECT",
    "CoverageResult",
    "Estimator",
    "coverage_study",
    "design_plan",
    "design_sample",
]

EFFECT = 0.25
"""True ITT effect of the study, in SD units."""


def design_plan(trial: DesignTrial, cluster_correction: ClusterCorrection = "cr2"
                ) -> AnalysisPlan:
    """The analysis plan of a simulated trial: two arms, school strata, baseline covariate."""
    return AnalysisPlan(
        experiment="coverage", protocol_sha256="", unit=trial.unit_level,
        arms=("resource", "usual"), control="usual", allocation=(1.0, 1.0),
        outcomes=(OutcomeSpec("score", True, "score"),), strata=("school_uai",),
        cluster_correction=cluster_correction,
    )


def design_sample(trial: DesignTrial) -> AnalysisSample:
    """The :class:`AnalysisSample` :func:`analysis.sample.build_sample` would build.

    Endline score, baseline by the dummy-variable method, the school as stratum (and as
    the school of the classes, for nested models).

    Examples
    --------
    >>> from analysis.simulate import simulate_design
    >>> sample = design_sample(simulate_design("paired", np.random.default_rng(3)))
    >>> sample.n_clusters, sample.n_strata, sample.covariate_names
    (40, 20, ('score_baseline', 'score_baseline_manquant'))
    """
    missing = np.isnan(trial.baseline)
    columns = [np.where(missing, 0.0, trial.baseline)]
    names = ["score_baseline"]
    if missing.any():
        columns.append(missing.astype(float))
        names.append("score_baseline_manquant")
    n_units = int(trial.unit.max()) + 1
    n_strata = int(trial.school.max()) + 1
    return AnalysisSample(
        outcome="score", y=trial.endline, arm=trial.arm, learner=np.arange(trial.n),
        unit=trial.unit.astype(np.int64), cluster=trial.unit, n_clusters=n_units,
        stratum=trial.school, n_strata=n_strata,
        school=trial.school if trial.unit_level == "class" else None,
        covariates=np.column_stack(columns), covariate_names=tuple(names),
        baseline_missing=int(missing.sum()),
    )


def _preuve(correction: ClusterCorrection) -> Callable[[DesignTrial], tuple[float, float,
                                                                                 float]]:
    def fit(trial: DesignTrial) -> tuple[float, float, float]:
        (effect,) = estimate_effects(design_plan(trial, correction), design_sample(trial))
        return effect.estimate, effect.std_error, effect.df

    return fit


def _cr0_normal(trial: DesignTrial) -> tuple[float, float, float]:
    """CR0 (no small-sample factor) with normal intervals: the anti-conservative reference."""
    sample = design_sample(trial)
    y, covariates = sample.within_strata
    assert sample.stratum is not None
    arm = absorb((sample.arm == 0).astype(float)[:, None], sample.stratum, sample.n_strata)
    x = np.column_stack([arm, covariates])
    fit = fit_ols(y, x, kind="cr1", cluster=sample.cluster, n_clusters=sample.n_clusters,
                  k_absorbed=sample.n_strata)
    g, n, k = sample.n_clusters, sample.n, x.shape[1] + sample.n_strata
    factor = g / (g - 1) * (n - 1) / (n - k)
    return float(fit.params[0]), math.sqrt(float(fit.vcov[0, 0]) / factor), math.inf


@dataclass(frozen=True)
class Estimator:
    """An interval estimator of the study: ``fit(trial) -> (estimate, std_error, df)``."""

    name: str
    description: str
    fit: Callable[[DesignTrial], tuple[float, float, float]]


ESTIMATORS: tuple[Estimator, ...] = (
    Estimator("cr2", "CR2, Satterthwaite df (Preuve's default)", _preuve("cr2")),
    Estimator("cr1", "CR1, G-1 df (HC1, N-K df for pupils)", _preuve("cr1")),
    Estimator("cr1-strata", "CR1 with G/(G-S), G-S df (Preuve's former default)",
              _preuve("cr1-strata")),
    Estimator("cr0-normal", "CR0, normal intervals (anti-conservative reference)",
              _cr0_normal),
)
"""The estimators compared; the mixed model's entry is added by its own module."""


@dataclass(frozen=True)
class CoverageResult:
    """Coverage of one estimator on one design."""

    design: DesignName
    estimator: str
    trials: int
    coverage: float
    """Share of trials whose 95% interval covers the true effect."""
    mean_df: float
    """Mean degrees of freedom (``inf`` for normal intervals)."""
    mean_se: float
    sd_estimate: float
    """Standard deviation of the estimates over the trials (what the SEs estimate)."""


def coverage_study(design: DesignName, estimators: tuple[Estimator, ...] = ESTIMATORS, *,
                   trials: int = 500, seed: int = 20261204, alpha: float = 0.05
                   ) -> list[CoverageResult]:
    """Draw ``trials`` trials of ``design`` and measure each estimator on the same trials.

    Examples
    --------
    >>> (r,) = coverage_study("large-strata", ESTIMATORS[:1], trials=5, seed=1)
    >>> r.estimator, r.trials, 0.0 <= r.coverage <= 1.0
    ('cr2', 5, True)
    """
    if design not in DESIGNS:
        raise ValueError(f"design: expecting one of {list(DESIGNS)}. Got {design!r}")
    rng = np.random.default_rng(seed)
    fits: npt.NDArray[np.float64] = np.empty((len(estimators), trials, 3))
    for i in range(trials):
        trial = simulate_design(design, rng, effect=EFFECT)
        for j, estimator in enumerate(estimators):
            fits[j, i] = estimator.fit(trial)
    out = []
    for j, estimator in enumerate(estimators):
        estimate, se, df = fits[j].T
        crit = special.stdtrit(df, 1.0 - alpha / 2.0)
        covered = np.abs(estimate - EFFECT) <= crit * se
        out.append(CoverageResult(design, estimator.name, trials, float(covered.mean()),
                                  float(df.mean()), float(se.mean()), float(estimate.std())))
    return out
