"""Coverage of the ``mixed`` model's intervals on the four designs of issue 15.

    .venv/bin/python benchmarks/simulation_coverage_mixed.py        # --trials 500 --seed 15
    .venv/bin/python benchmarks/simulation_coverage_mixed.py --df kenward-roger

For each design, ``trials`` seeded trials are simulated in memory and analysed by
:func:`analysis.effects.estimate_effects` with ``model: mixed`` (REML random intercepts,
Satterthwaite df: :mod:`analysis.mixed`); printed per design: the share of 95 % intervals
that cover the true effect (0.25 SD), the share of trials rejecting at 5 % when the true
effect is 0, the mean Satterthwaite df, and the ratio of the mean standard error to the
standard deviation of the estimates. A correct 95 % interval covers in [93.1 %, 96.9 %]
of 500 trials with probability 0.95 (binomial sd ~1 point).

Designs (pupils' outcome: arm effect + school and class random intercepts + a baseline
explaining a quarter of the pupil variance + noise; total variance about 1):

* ``paired``: 20 schools × 2 classes of 18 to 28 pupils, one class per arm in each school
  (strata: school; the model has school and class random intercepts);
* ``small-unbalanced``: 14 classes of 5 to 25 pupils in strata of 6, 5 and 3 classes
  (class random intercept, strata fixed);
* ``large-strata``: 120 classes of 15 to 30 pupils in 2 strata of 60;
* ``pupil-randomised``: 30 classes of 16 to 28 pupils, pupils randomised within their class
  (class random intercept; strata: the class).

:func:`mixed_coverage` is what another script (``benchmarks/simulation_coverage.py``) or a
test can call; ``tests/statistics/test_mixed_coverage.py`` runs a smaller seeded version.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from analysis.effects import estimate_effects
from analysis.inputs import AnalysisPlan, OutcomeSpec
from analysis.sample import AnalysisSample

EFFECT = 0.25
SCHOOL_VAR, CLASS_VAR, BASELINE_VAR, PUPIL_VAR = 0.05, 0.15, 0.2, 0.6
DESIGNS = ("paired", "small-unbalanced", "large-strata", "pupil-randomised")


def _plan(unit: str, strata: tuple[str, ...]) -> AnalysisPlan:
    return AnalysisPlan(
        experiment="coverage", protocol_sha256="", unit=unit,  # type: ignore[arg-type]
        arms=("resource", "usual"), control="usual", allocation=(1.0, 1.0),
        outcomes=(OutcomeSpec("score", True, "score"),), strata=strata, model="mixed",
    )


def _outcome(rng: np.random.Generator, effect: float, treated: npt.NDArray[np.bool_],
             klass: npt.NDArray[np.intp], school_of_class: npt.NDArray[np.intp]
             ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    n, n_classes = klass.size, int(klass.max()) + 1
    baseline = rng.normal(0.0, 1.0, n)
    y = (effect * treated + math.sqrt(BASELINE_VAR) * baseline
         + rng.normal(0.0, math.sqrt(SCHOOL_VAR), int(school_of_class.max()) + 1
                      )[school_of_class][klass]
         + rng.normal(0.0, math.sqrt(CLASS_VAR), n_classes)[klass]
         + rng.normal(0.0, math.sqrt(PUPIL_VAR), n))
    return y, baseline


def _class_sample(rng: np.random.Generator, effect: float, sizes: npt.NDArray[np.int64],
                  stratum_of_class: npt.NDArray[np.intp], school_of_class: npt.NDArray[np.intp],
                  nested: bool) -> AnalysisSample:
    """Classes randomised within strata (half of each stratum, rounded at random)."""
    n_classes = sizes.size
    treated_class = np.zeros(n_classes, dtype=bool)
    for s in range(int(stratum_of_class.max()) + 1):
        here = np.flatnonzero(stratum_of_class == s)
        treated_class[rng.permutation(here)[: (here.size + rng.integers(0, 2)) // 2]] = True
    klass = np.repeat(np.arange(n_classes), sizes).astype(np.intp)
    treated = treated_class[klass]
    y, baseline = _outcome(rng, effect, treated, klass, school_of_class)
    arm = np.where(treated, 0, 1).astype(np.int8)
    stratum = stratum_of_class[klass]
    return AnalysisSample(
        "score", y, arm, np.arange(klass.size), klass.astype(np.int64), klass, n_classes,
        stratum, int(stratum.max()) + 1, school_of_class[klass] if nested else None,
        baseline[:, None], ("score_baseline",), 0, outer_stratum=None)


def paired(rng: np.random.Generator, effect: float) -> tuple[AnalysisPlan, AnalysisSample]:
    """20 schools × 2 classes, one per arm; school and class random intercepts."""
    school = np.repeat(np.arange(20), 2).astype(np.intp)
    sample = _class_sample(rng, effect, rng.integers(18, 29, 40), school, school, nested=True)
    return _plan("class", ("school_uai",)), sample


def small_unbalanced(rng: np.random.Generator, effect: float
                     ) -> tuple[AnalysisPlan, AnalysisSample]:
    """14 classes of 5 to 25 pupils in strata of 6, 5 and 3 classes."""
    stratum = np.repeat([0, 1, 2], [6, 5, 3]).astype(np.intp)
    sample = _class_sample(rng, effect, rng.integers(5, 26, 14), stratum,
                           np.arange(14, dtype=np.intp), nested=False)
    return _plan("class", ("stratum",)), sample


def large_strata(rng: np.random.Generator, effect: float
                 ) -> tuple[AnalysisPlan, AnalysisSample]:
    """120 classes of 15 to 30 pupils in 2 strata of 60."""
    stratum = np.repeat([0, 1], 60).astype(np.intp)
    sample = _class_sample(rng, effect, rng.integers(15, 31, 120), stratum,
                           np.arange(120, dtype=np.intp), nested=False)
    return _plan("class", ("stratum",)), sample


def pupil_randomised(rng: np.random.Generator, effect: float
                     ) -> tuple[AnalysisPlan, AnalysisSample]:
    """30 classes of 16 to 28 pupils, half of each class (rounded at random) treated."""
    sizes = rng.integers(16, 29, 30)
    klass = np.repeat(np.arange(30), sizes).astype(np.intp)
    treated = np.concatenate([rng.permutation(np.arange(k) < (k + rng.integers(0, 2)) // 2)
                              for k in sizes])
    y, baseline = _outcome(rng, effect, treated, klass, np.arange(30, dtype=np.intp) // 3)
    n = klass.size
    arm = np.where(treated, 0, 1).astype(np.int8)
    learners = np.arange(n, dtype=np.intp)
    sample = AnalysisSample(
        "score", y, arm, learners.astype(np.int64), learners.astype(np.int64), learners, n,
        klass, 30, None, baseline[:, None], ("score_baseline",), 0, outer_stratum=None,
        learner_class=klass)
    return _plan("learner", ("class_id",)), sample


TRIALS: dict[str, Callable[[np.random.Generator, float], tuple[AnalysisPlan, AnalysisSample]]] = {
    "paired": paired, "small-unbalanced": small_unbalanced, "large-strata": large_strata,
    "pupil-randomised": pupil_randomised,
}


@dataclass(frozen=True)
class Coverage:
    """What :func:`mixed_coverage` measures on one design."""

    design: str
    trials: int
    coverage: float
    """Share of 95 % intervals covering the true effect."""
    rejection_under_null: float
    """Share of trials with p < 0.05 when the true effect is 0."""
    mean_df: float
    se_to_sd: float
    """Mean standard error over the standard deviation of the estimates."""
    not_estimable: int
    seconds: float


def mixed_coverage(design: str, trials: int = 500, seed: int = 15,
                   vcov: str | None = None, mixed_df: str = "satterthwaite") -> Coverage:
    """Coverage of the ``mixed`` model on ``design`` (one of :data:`DESIGNS`).

    ``mixed_df="kenward-roger"`` uses Kenward-Roger's SE and df instead of Satterthwaite's.
    ``vcov="iid"`` analyses the same trials by OLS with iid errors instead (clustering
    ignored), which a coverage bar must reject: the tests use it to show the bar's teeth.
    """
    make = TRIALS[design]
    rng = np.random.default_rng([seed, DESIGNS.index(design)])
    start = time.perf_counter()
    covered = rejected = failed = 0
    estimates: list[float] = []
    ses: list[float] = []
    dfs: list[float] = []
    for _ in range(trials):
        plan, sample = make(rng, EFFECT)
        plan = replace(plan, mixed_df=mixed_df)  # type: ignore[arg-type]
        (effect,) = estimate_effects(plan, sample, vcov=vcov)  # type: ignore[arg-type]
        plan0, sample0 = make(rng, 0.0)
        plan0 = replace(plan0, mixed_df=mixed_df)  # type: ignore[arg-type]
        (null,) = estimate_effects(plan0, sample0, vcov=vcov)  # type: ignore[arg-type]
        if not (effect.estimable and null.estimable):
            failed += 1
            continue
        covered += effect.ci_low <= EFFECT <= effect.ci_high
        rejected += null.p_value < 0.05
        estimates.append(effect.estimate)
        ses.append(effect.std_error)
        dfs.append(effect.df)
    done = trials - failed
    return Coverage(design, trials, covered / done, rejected / done, float(np.mean(dfs)),
                    float(np.mean(ses) / np.std(estimates, ddof=1)), failed,
                    time.perf_counter() - start)


def main() -> None:
    """Print one line per design."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=DESIGNS)
    parser.add_argument("--df", default="satterthwaite",
                        choices=["satterthwaite", "kenward-roger"])
    args = parser.parse_args()
    print(f"# mixed model (REML, {args.df} df): {args.trials} trials per design, "
          f"seed {args.seed}, true effect {EFFECT}")
    for design in args.designs:
        c = mixed_coverage(design, args.trials, args.seed, mixed_df=args.df)
        print(f"design={c.design} trials={c.trials} coverage={c.coverage:.3f} "
              f"rejection_under_null={c.rejection_under_null:.3f} mean_df={c.mean_df:.1f} "
              f"se_to_sd={c.se_to_sd:.3f} not_estimable={c.not_estimable} "
              f"seconds={c.seconds:.0f}", flush=True)


if __name__ == "__main__":
    main()
