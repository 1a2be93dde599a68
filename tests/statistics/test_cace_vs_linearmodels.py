"""CACE by 2SLS against linearmodels ``IV2SLS`` on the reference trial.

Tolerance ``rtol = 1e-6`` (issue 6). linearmodels ``cov_type="clustered", debiased=True``
applies ``g(n-1)/((g-1)(n-k))``, which is our plain CR1 (``cluster_correction="cr1"``);
the strata enter linearmodels as dummies and ours are absorbed (Frisch-Waugh-Lovell: the
same 2SLS coefficients and residuals).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from analysis_trials import load, plan_for, reference_trial, with_dummy_baseline
from linearmodels.iv import IV2SLS

from analysis.cace import estimate_cace
from analysis.inputs import read_usage

pytestmark = pytest.mark.statistics

RTOL = 1e-6
ATOL = 1e-9


def _usage(frame: pd.DataFrame, path: Path) -> Path:
    # Compliers used the resource 400 minutes over two weeks; threshold 300.
    users = frame[frame["compliant"] == 1]
    rows = pd.concat([users.assign(week=w, active_minutes=200.0) for w in ("2027-W40", "2027-W41")])
    rows[["learner_id", "unit_id", "week", "active_minutes"]].to_csv(path, index=False)
    return path


@pytest.mark.parametrize("arms", [3, 2])
def test_cace_matches_linearmodels_iv2sls(tmp_path: Path, arms: int) -> None:
    trial = reference_trial()
    if arms == 2:
        trial = trial[trial["arm"] != "lectio_plus"].reset_index(drop=True)
    plan = plan_for(trial, min_active_minutes=300.0, estimands=("ITT", "CACE"),
                    cluster_correction="cr1")
    units, outcomes, sample = load(trial, tmp_path, plan)
    usage = read_usage(_usage(trial, tmp_path / "usage.csv"), outcomes, units)
    effects, _ = estimate_cace(plan, sample, usage)

    frame = with_dummy_baseline(trial)
    strata = pd.get_dummies(frame["stratum"], drop_first=True, dtype=float)
    exog = sm.add_constant(pd.concat([frame[["b0", "bmiss", "class_cov"]], strata], axis=1))
    if arms == 3:
        endog = pd.DataFrame({"d1": frame["t1"] * frame["compliant"],
                              "d2": frame["t2"] * frame["compliant"]})
        instruments = frame[["t1", "t2"]]
    else:
        endog = frame[["compliant"]].astype(float).rename(columns={"compliant": "d1"})
        instruments = frame[["t1"]]
    ref = IV2SLS(frame["endline"], exog, endog, instruments).fit(
        cov_type="clustered", clusters=frame["cluster"], debiased=True)
    assert [e.contrast for e in effects] == (["lectio vs usual", "lectio_plus vs usual"]
                                              if arms == 3 else ["lectio vs usual"])
    for effect, name in zip(effects, ["d1", "d2"], strict=False):
        assert effect.estimand == "CACE" and effect.reason is None
        # Issue 15: the label names the estimator actually used (here CR1, G-1 df).
        assert effect.model == "2SLS, CR1 cluster-robust by unit, G-1 df", effect.model
        assert effect.df == trial["unit_id"].nunique() - 1
        np.testing.assert_allclose(effect.estimate, ref.params[name], rtol=RTOL, atol=ATOL,
                                   err_msg="CACE != linearmodels 2SLS")
        np.testing.assert_allclose(effect.std_error, ref.std_errors[name], rtol=RTOL,
                                   atol=ATOL, err_msg="CACE se != linearmodels clustered")


def test_cace_without_usage_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    trial = reference_trial()
    plan = plan_for(trial, min_active_minutes=300.0, estimands=("ITT", "CACE"))
    _, _, sample = load(trial, tmp_path, plan)
    effects, _ = estimate_cace(plan, sample, None)
    assert all(e.reason and "usage" in e.reason and not e.estimable for e in effects)


@pytest.mark.parametrize(("correction", "label"), [
    ("cr2", "2SLS, CR2 cluster-robust by unit, Satterthwaite df"),
    ("cr1", "2SLS, CR1 cluster-robust by unit, G-1 df"),
    ("cr1-strata", "2SLS, CR1 with G/(G-S) (cr1-strata, Preuve's own), G-S df"),
])
def test_cace_label_names_its_variance_estimator(tmp_path: Path, correction: str,
                                                 label: str) -> None:
    """Issue 15: the CACE was labelled CR1 while it used G/(G-S)."""
    trial = reference_trial()
    plan = plan_for(trial, min_active_minutes=300.0, estimands=("ITT", "CACE"),
                    cluster_correction=correction)
    units, outcomes, sample = load(trial, tmp_path, plan)
    usage = read_usage(_usage(trial, tmp_path / "usage.csv"), outcomes, units)
    effects, _ = estimate_cace(plan, sample, usage)
    g, s = trial["unit_id"].nunique(), trial["stratum"].nunique()
    for effect in effects:
        assert effect.model == label
        if correction == "cr1-strata":
            assert effect.df == g - s
        elif correction == "cr2":
            assert 1 < effect.df < g - 1  # Satterthwaite: fewer than the G-1 of CR1

