"""The ``mixed`` model against R's lme4 + lmerTest on generated trials (issue 15).

Each trial goes through the real input path (units and outcomes CSV files read by
:mod:`analysis.inputs`, :func:`analysis.sample.build_sample`, then
:func:`analysis.effects.estimate_effects`); the same pupils are fitted by
``lmerTest::lmer(..., REML = TRUE)`` in ``tests/statistics/r/mixed/fit_lmer.R``.

Tolerances (issue 15): estimate and standard error 1e-6 relative (lmerTest's ``summary``:
``vcov(fit)``), Satterthwaite df 1e-3 relative. Both fits are REML optima found by
iteration; the R script tightens BOBYQA's stopping rules so that its optimum is exact to
well below 1e-6 (see the script). Designs: 20 schools × 2 classes randomised within school
(paired: random school and class intercepts), small unbalanced strata, large strata,
classes nested in schools with other strata and three arms (two levels), pupils randomised
within their class (the class is the random intercept), and a singular fit (class
variance estimated at 0).

R is required: without ``Rscript`` the tests are skipped with a message, except under
``CI=true`` where they fail (a reference that silently stops running is no reference).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.effects import estimate_effects
from analysis.inputs import AnalysisPlan, OutcomeSpec, read_outcomes, read_units
from analysis.mixed import fit_random_intercepts, group_sums, kenward_roger
from analysis.results import Effect
from analysis.sample import build_sample

pytestmark = pytest.mark.statistics

SCRIPT = Path(__file__).parent / "r" / "mixed" / "fit_lmer.R"
RTOL_ESTIMATE = 1e-6
RTOL_SE = 1e-6
RTOL_DF = 1e-3


def _rscript() -> str:
    found = shutil.which("Rscript")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Rscript is not installed but CI=true: the lmerTest comparisons must "
                        "run in CI (tools/install-system-deps.sh installs R)")
        pytest.skip("Rscript not found: install R, lme4 and lmerTest "
                    "(tools/install-system-deps.sh) to compare the mixed model with lmerTest")
    return found


def run_lmer(frame: pd.DataFrame, formula: str, terms: list[str], directory: Path,
             kenward_roger: bool = False) -> pd.DataFrame:
    """lmerTest's estimates of ``terms`` (one row each) for ``formula`` on ``frame``."""
    trial, out = directory / "lmer_trial.csv", directory / "lmer_out.csv"
    frame.to_csv(trial, index=False)
    env = dict(os.environ, PREUVE_KR="1" if kenward_roger else "0")
    done = subprocess.run([_rscript(), str(SCRIPT), str(trial), formula, str(out), *terms],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_csv(out).set_index("term")


@dataclass(frozen=True)
class Trial:
    """Pupils of a generated trial, with everything both fits need."""

    pupils: pd.DataFrame
    """learner_id, unit_id, arm, school_uai, stratum, class_id, baseline, endline."""
    plan: AnalysisPlan


def _pupils(rng: np.random.Generator, class_sizes: np.ndarray, school_of_class: np.ndarray,
            stratum_of_class: np.ndarray, arm_of_pupil: np.ndarray, arms: tuple[str, ...],
            effects: tuple[float, ...], school_sd: float, class_sd: float,
            missing_baseline: float = 0.0) -> pd.DataFrame:
    klass = np.repeat(np.arange(class_sizes.size), class_sizes)
    n = klass.size
    n_schools = int(school_of_class.max()) + 1
    baseline = rng.normal(50.0, 10.0, n)
    endline = (np.asarray(effects)[arm_of_pupil] + 0.06 * (baseline - 50.0)
               + rng.normal(0.0, school_sd, n_schools)[school_of_class][klass]
               + rng.normal(0.0, class_sd, class_sizes.size)[klass] + rng.normal(0.0, 1.0, n))
    observed = np.where(rng.random(n) < missing_baseline, np.nan, baseline)
    return pd.DataFrame({
        "learner_id": [f"L{i}" for i in range(n)], "class_id": [f"C{c}" for c in klass],
        "school_uai": [f"S{s}" for s in school_of_class[klass]],
        "stratum": [f"st{s}" for s in stratum_of_class[klass]],
        "arm": np.asarray(arms)[arm_of_pupil], "baseline": observed, "endline": endline,
    })


def _plan(unit: str, arms: tuple[str, ...], strata: tuple[str, ...]) -> AnalysisPlan:
    return AnalysisPlan(
        experiment="mixed-vs-lmertest", protocol_sha256="0" * 64, unit=unit,  # type: ignore[arg-type]
        arms=arms, control="usual", allocation=tuple(1.0 for _ in arms),
        outcomes=(OutcomeSpec("score", True, "score"),), strata=strata, model="mixed",
    )


def paired_trial(seed: int = 1) -> Trial:
    """20 schools × 2 classes, one class of each school per arm (strata: the school)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(18, 29, 40)
    school = np.repeat(np.arange(20), 2)
    arm_of_class = np.concatenate([rng.permutation(2) for _ in range(20)])
    arm = np.repeat(arm_of_class, sizes)
    pupils = _pupils(rng, sizes, school, school, arm, ("lectio", "usual"), (0.3, 0.0),
                     school_sd=0.5, class_sd=0.3)
    pupils["unit_id"] = pupils["class_id"]
    return Trial(pupils, _plan("class", ("lectio", "usual"), ("school_uai",)))


def small_unbalanced_trial(seed: int = 2) -> Trial:
    """14 classes of 5 to 25 pupils in strata of 6, 5 and 3 classes; 8 % baselines missing."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 26, 14)
    stratum = np.repeat([0, 1, 2], [6, 5, 3])
    arm_of_class = np.concatenate([rng.permutation(np.arange(k) % 2) for k in (6, 5, 3)])
    arm = np.repeat(arm_of_class, sizes)
    pupils = _pupils(rng, sizes, np.arange(14), stratum, arm, ("lectio", "usual"), (0.3, 0.0),
                     school_sd=0.0, class_sd=0.5, missing_baseline=0.08)
    pupils["unit_id"] = pupils["class_id"]
    return Trial(pupils, _plan("class", ("lectio", "usual"), ("stratum",)))


def large_strata_trial(seed: int = 3) -> Trial:
    """120 classes of 15 to 30 pupils in 2 strata of 60; one school per class."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(15, 31, 120)
    stratum = np.repeat([0, 1], 60)
    arm_of_class = np.concatenate([rng.permutation(np.arange(60) % 2) for _ in range(2)])
    arm = np.repeat(arm_of_class, sizes)
    pupils = _pupils(rng, sizes, np.arange(120), stratum, arm, ("lectio", "usual"), (0.2, 0.0),
                     school_sd=0.0, class_sd=0.4)
    pupils["unit_id"] = pupils["class_id"]
    return Trial(pupils, _plan("class", ("lectio", "usual"), ("stratum",)))


def nested_trial(seed: int = 4) -> Trial:
    """14 schools of 2 to 5 classes in 2 académies (strata), three arms by class."""
    rng = np.random.default_rng(seed)
    per_school = rng.integers(2, 6, 14)
    school = np.repeat(np.arange(14), per_school)
    n_classes = school.size
    sizes = rng.integers(12, 28, n_classes)
    stratum = (school >= 7).astype(int)
    arm_of_class = np.empty(n_classes, dtype=int)
    for s in (0, 1):
        here = np.flatnonzero(stratum == s)
        arm_of_class[here] = rng.permutation(np.arange(here.size) % 3)
    arm = np.repeat(arm_of_class, sizes)
    arms = ("lectio", "lectio_plus", "usual")
    pupils = _pupils(rng, sizes, school, stratum, arm, arms, (0.2, 0.35, 0.0),
                     school_sd=0.45, class_sd=0.3)
    pupils["unit_id"] = pupils["class_id"]
    return Trial(pupils, _plan("class", arms, ("stratum",)))


def pupil_randomised_trial(seed: int = 5) -> Trial:
    """30 classes of 16 to 28 pupils, pupils randomised within their class."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(16, 29, 30)
    arm = np.concatenate([rng.permutation(np.arange(k) % 2) for k in sizes])
    pupils = _pupils(rng, sizes, np.arange(30) // 3, np.zeros(30, dtype=int), arm,
                     ("lectio", "usual"), (0.25, 0.0), school_sd=0.2, class_sd=0.5)
    pupils["unit_id"] = pupils["learner_id"]
    return Trial(pupils, _plan("learner", ("lectio", "usual"), ("class_id",)))


def singular_trial(seed: int = 2) -> Trial:
    """16 classes of 10 to 19 pupils without class variance: lme4's θ is 0 (singular fit);
    lmerTest's df then come from the residual variance alone."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(10, 20, 16)
    arm = np.repeat(rng.permutation(np.arange(16) % 2), sizes)
    pupils = _pupils(rng, sizes, np.arange(16), np.zeros(16, dtype=int), arm,
                     ("lectio", "usual"), (0.2, 0.0), school_sd=0.0, class_sd=0.0)
    pupils["unit_id"] = pupils["class_id"]
    return Trial(pupils, _plan("class", ("lectio", "usual"), ()))


def analyse(trial: Trial, directory: Path) -> list[Effect]:
    """Write the offline files of ``trial``, read them back and estimate the effects."""
    units = trial.pupils.groupby("unit_id", sort=False).first().reset_index()
    units_path, outcomes_path = directory / "units.csv", directory / "outcomes.csv"
    units[["unit_id", "arm", "school_uai", "stratum", "class_id"]].to_csv(units_path,
                                                                         index=False)
    p = trial.pupils
    long = pd.concat([p.assign(wave="baseline", score=p["baseline"]),
                      p.assign(wave="endline", score=p["endline"])]).assign(measure="score")
    long[["learner_id", "unit_id", "measure", "wave", "score"]].to_csv(outcomes_path,
                                                                       index=False)
    unit_table = read_units(units_path, trial.plan)
    outcome_table = read_outcomes(outcomes_path, unit_table)
    sample = build_sample(trial.plan, unit_table, outcome_table, trial.plan.outcomes[0])
    return estimate_effects(trial.plan, sample)


def r_frame(trial: Trial) -> pd.DataFrame:
    """The pupils in the columns of the R formulas (dummy-variable baseline)."""
    p = trial.pupils
    missing = p["baseline"].isna()
    return pd.DataFrame({
        "y": p["endline"], "t1": (p["arm"] == trial.plan.arms[0]).astype(float),
        "t2": (p["arm"] == "lectio_plus").astype(float),
        "b0": np.where(missing, 0.0, p["baseline"]), "bmiss": missing.astype(float),
        "stratum": p["stratum"], "class": p["class_id"], "school": p["school_uai"],
    })


CASES = {
    # name: (trial, lme4 formula, terms in the order of the contrasts)
    "paired": (paired_trial, "y ~ t1 + b0 + (1|class) + (1|school)", ["t1"]),
    "small-unbalanced": (small_unbalanced_trial,
                         "y ~ t1 + b0 + bmiss + stratum + (1|class)", ["t1"]),
    "large-strata": (large_strata_trial, "y ~ t1 + b0 + stratum + (1|class)", ["t1"]),
    "nested-three-arms": (nested_trial,
                          "y ~ t1 + t2 + b0 + stratum + (1|class) + (1|school)", ["t1", "t2"]),
    "pupil-randomised": (pupil_randomised_trial, "y ~ t1 + b0 + (1|class)", ["t1"]),
    "singular": (singular_trial, "y ~ t1 + b0 + (1|class)", ["t1"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_effects_equal_lmertest(case: str, tmp_path: Path) -> None:
    make, formula, terms = CASES[case]
    trial = make()
    reference = run_lmer(r_frame(trial), formula, terms, tmp_path)
    effects = analyse(trial, tmp_path)
    assert len(effects) == len(terms)
    for effect, term in zip(effects, terms, strict=True):
        ref = reference.loc[term]
        assert effect.reason is None, effect.reason
        assert effect.model == "mixed (REML, random intercepts), Satterthwaite df"
        np.testing.assert_allclose(effect.estimate, ref["estimate"], rtol=RTOL_ESTIMATE,
                                   err_msg=f"{case} {term}: estimate != lmerTest's")
        np.testing.assert_allclose(effect.std_error, ref["std_error"], rtol=RTOL_SE,
                                   err_msg=f"{case} {term}: std_error != lmerTest's vcov")
        np.testing.assert_allclose(effect.df, ref["df"], rtol=RTOL_DF,
                                   err_msg=f"{case} {term}: df != lmerTest's Satterthwaite")
    stands_for = {"paired": "school", "pupil-randomised": "class"}.get(case)
    if stands_for is not None:
        assert any(f"random intercept of the {stands_for} stands for" in note
                   for note in effects[0].notes), effects[0].notes


def _design_of(frame: pd.DataFrame, formula: str) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray | None]:
    """``(X, class codes, school of each class or None)`` of an R formula of :data:`CASES`."""
    columns = [c for c in ("t1", "t2", "b0", "bmiss") if f" {c} " in f"{formula} "]
    blocks = [np.ones(len(frame))] + [frame[c].to_numpy() for c in columns]
    if "stratum" in formula:
        blocks.append(pd.get_dummies(frame["stratum"], drop_first=True, dtype=float).to_numpy())
    klass = pd.factorize(frame["class"])[0]
    school = None
    if "school" in formula:
        first = frame.groupby("class", sort=False)["school"].first()
        school = pd.factorize(first.loc[pd.unique(frame["class"])])[0]
    return np.column_stack(blocks), klass, school


@pytest.mark.parametrize("case", list(CASES))
def test_kenward_roger_equals_pbkrtest(case: str, tmp_path: Path) -> None:
    """``analysis.mixed.kenward_roger`` against ``lmerTest::contest1D(ddf = "Kenward-Roger")``
    (pbkrtest's ``vcovAdj`` and ``Lb_ddf``): adjusted SE 1e-6 and df 1e-3 relative (both
    agree to about 1e-7 on these trials)."""
    make, formula, terms = CASES[case]
    trial = make()
    frame = r_frame(trial)
    reference = run_lmer(frame, formula, terms, tmp_path, kenward_roger=True)
    # Through the effects (plan.mixed_df), as a report would get them ...
    kr_trial = Trial(trial.pupils, replace(trial.plan, mixed_df="kenward-roger"))
    for effect, term in zip(analyse(kr_trial, tmp_path), terms, strict=True):
        assert effect.model == "mixed (REML, random intercepts), Kenward-Roger df"
        np.testing.assert_allclose(effect.std_error, reference.loc[term, "kr_std_error"],
                                   rtol=1e-6, err_msg=f"{case} {term}: effects' KR SE")
        np.testing.assert_allclose(effect.df, reference.loc[term, "kr_df"], rtol=RTOL_DF,
                                   err_msg=f"{case} {term}: effects' KR df")
    # ... and from analysis.mixed directly on the R formula's design.
    x, klass, school = _design_of(frame, formula)
    sums = group_sums(frame["y"].to_numpy(), x, klass, int(klass.max()) + 1, school)
    fit = fit_random_intercepts(sums)
    for i, term in enumerate(terms):
        contrast = np.zeros(x.shape[1])
        contrast[1 + i] = 1.0
        se, df = kenward_roger(sums, fit, contrast)
        ref = reference.loc[term]
        np.testing.assert_allclose(se, ref["kr_std_error"], rtol=1e-6,
                                   err_msg=f"{case} {term}: KR SE != pbkrtest's vcovAdj")
        np.testing.assert_allclose(df, ref["kr_df"], rtol=RTOL_DF,
                                   err_msg=f"{case} {term}: KR df != pbkrtest's Lb_ddf")


def test_variance_parameters_and_reml_criterion_equal_lme4(tmp_path: Path) -> None:
    """theta, sigma and REMLcrit of the two-level model (classes nested in schools)."""
    trial = nested_trial()
    frame = r_frame(trial)
    reference = run_lmer(frame, "y ~ t1 + t2 + b0 + (1|class) + (1|school)", ["t1"],
                         tmp_path).iloc[0]
    x = frame[["t1", "t2", "b0"]].to_numpy()
    x = np.column_stack([np.ones(len(frame)), x])
    klass, n_classes = pd.factorize(frame["class"])[0], frame["class"].nunique()
    school_of_class = pd.factorize(
        frame.groupby("class", sort=False)["school"].first().loc[pd.unique(frame["class"])])[0]
    fit = fit_random_intercepts(group_sums(frame["y"].to_numpy(), x, klass, n_classes,
                                           school_of_class))
    np.testing.assert_allclose(fit.theta, [reference["theta_class"], reference["theta_school"]],
                               rtol=1e-6, err_msg="theta != getME(fit, 'theta')")
    np.testing.assert_allclose(fit.sigma, reference["sigma"], rtol=1e-8)
    np.testing.assert_allclose(fit.reml_criterion, reference["reml_criterion"], rtol=1e-10,
                               err_msg="REML criterion != REMLcrit(fit)")


def test_pupil_randomised_without_class_column_says_why(tmp_path: Path) -> None:
    """No per-pupil random intercept: without ``class_id`` there is nothing to group by."""
    trial = pupil_randomised_trial()
    plan = _plan("learner", ("lectio", "usual"), ())
    trial = Trial(trial.pupils.drop(columns="class_id").assign(class_id=""), plan)
    units_dir = tmp_path
    pupils = trial.pupils
    units = pupils.groupby("unit_id", sort=False).first().reset_index()
    units[["unit_id", "arm", "school_uai", "stratum"]].to_csv(units_dir / "units.csv",
                                                             index=False)
    long = pd.concat([pupils.assign(wave="baseline", score=pupils["baseline"]),
                      pupils.assign(wave="endline", score=pupils["endline"])]
                     ).assign(measure="score")
    long[["learner_id", "unit_id", "measure", "wave", "score"]].to_csv(
        units_dir / "outcomes.csv", index=False)
    unit_table = read_units(units_dir / "units.csv", plan)
    sample = build_sample(plan, unit_table, read_outcomes(units_dir / "outcomes.csv",
                                                          unit_table), plan.outcomes[0])
    (effect,) = estimate_effects(plan, sample)
    assert effect.reason is not None and "'class_id'" in effect.reason, effect.reason
    assert not effect.estimable
