"""Difference-in-differences and the exploratory dose-response against pyfixest.

* DiD with two waves: the gain-score regression (ours) must give the two-way fixed-effects
  estimate on the long data (learner and stratum-by-wave fixed effects, ``arm x endline``):
  with two periods first differences and fixed effects coincide exactly (Wooldridge,
  *Econometric Analysis of Cross Section and Panel Data*, 2nd ed., 2010, section 10.5).
  Estimates to ``1e-6``; standard errors against pyfixest on the gain regression with
  plain CR1 (``cluster_correction="cr1"``), to ``1e-6``.
* Dose-response: within-arm OLS on hours of use (no strata), against pyfixest CRV1, to
  ``1e-6``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
from analysis_trials import load, plan_for, reference_trial, with_dummy_baseline

from analysis.did import estimate_did
from analysis.dose_response import estimate_dose_response
from analysis.inputs import read_usage

pytestmark = pytest.mark.statistics

RTOL = 1e-6
ATOL = 1e-9


def test_did_equals_two_way_fixed_effects(tmp_path: Path) -> None:
    trial = reference_trial()
    plan = plan_for(trial, design="waitlist", cluster_correction="cr1", covariates=())
    _, _, sample = load(trial, tmp_path, plan)
    effects = {e.contrast: e for e in estimate_did(plan, sample)}

    both = with_dummy_baseline(trial).dropna(subset=["baseline"])
    long = pd.concat([
        both.assign(wave="baseline", score=both["baseline"], post=0.0),
        both.assign(wave="endline", score=both["endline"], post=1.0),
    ])
    long = long.assign(d1=long["t1"] * long["post"], d2=long["t2"] * long["post"])
    twfe = pf.feols("score ~ d1 + d2 | learner_id + stratum^wave", data=long,
                    vcov={"CRV1": "cluster"}).coef()
    gain = both.assign(gain=both["endline"] - both["baseline"])
    ref = pf.feols("gain ~ t1 + t2 | stratum", data=gain, vcov={"CRV1": "cluster"}).tidy()
    for contrast, twfe_name, name in (("lectio vs usual", "d1", "t1"),
                                      ("lectio_plus vs usual", "d2", "t2")):
        e = effects[contrast]
        np.testing.assert_allclose(e.estimate, twfe[twfe_name], rtol=RTOL, atol=ATOL,
                                   err_msg="DiD != two-way fixed effects")
        np.testing.assert_allclose(e.std_error, ref.loc[name, "Std. Error"], rtol=RTOL,
                                   atol=ATOL, err_msg="DiD se != pyfixest CRV1 on gains")


def test_dose_response_matches_pyfixest(tmp_path: Path) -> None:
    trial = reference_trial()
    plan = plan_for(trial, cluster_correction="cr1", min_active_minutes=300.0)
    units, outcomes, sample = load(trial, tmp_path, plan)
    rng = np.random.default_rng(1)
    minutes = rng.gamma(3.0, 100.0, len(trial)).round(1)
    usage_path = tmp_path / "usage.csv"
    trial.assign(week="2027-W40", active_minutes=minutes)[
        ["learner_id", "unit_id", "week", "active_minutes"]].to_csv(usage_path, index=False)
    usage = read_usage(usage_path, outcomes, units)
    effects = {e.contrast: e for e in estimate_dose_response(plan, sample, usage)}
    frame = with_dummy_baseline(trial).assign(hours10=minutes / 600.0)
    for arm in ("lectio", "lectio_plus"):
        ref = pf.feols("endline ~ hours10 + b0 + bmiss + class_cov",
                       data=frame[frame["arm"] == arm], vcov={"CRV1": "cluster"}).tidy()
        e = effects[f"{arm}: per 10 hours of active use"]
        assert e.role == "exploratory" and "not causal" in e.estimand
        np.testing.assert_allclose(e.estimate, ref.loc["hours10", "Estimate"], rtol=RTOL,
                                   atol=ATOL, err_msg="slope != pyfixest")
        np.testing.assert_allclose(e.std_error, ref.loc["hours10", "Std. Error"], rtol=RTOL,
                                   atol=ATOL, err_msg="slope se != pyfixest CRV1")
