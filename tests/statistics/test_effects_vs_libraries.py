"""ITT ANCOVA against pyfixest, linearmodels and statsmodels on the reference trial.

Tolerance: ``rtol = 1e-6`` (the acceptance bar of issue 6) and ``atol = 1e-9``: every
library solves the same least-squares problem in float64; differences are rounding.

Small-sample corrections matched (see ``analysis/_ols.py``):

* pyfixest ``feols(..., vcov={"CRV1": unit})`` with ``| stratum`` fixed effects, default
  ``ssc()``: ``G/(G-1) * (N-1)/(N-K)`` with the strata counted in ``K`` (not nested in the
  clusters), t on ``G-1`` df: CR1;
* linearmodels ``IV2SLS(...).fit(cov_type="clustered", debiased=True)`` with strata as
  dummies: ``g(n-1)/((g-1)(n-k))``: the same CR1;
* pyfixest ``vcov="hetero"`` and statsmodels ``cov_type="HC1"``: ``N/(N-K)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
import statsmodels.api as sm
from analysis_trials import load, plan_for, reference_trial, with_dummy_baseline
from linearmodels.iv import IV2SLS

from analysis.effects import estimate_effects

pytestmark = pytest.mark.statistics

RTOL = 1e-6
ATOL = 1e-9


@pytest.fixture(scope="module")
def trial() -> pd.DataFrame:
    return reference_trial()


def _ours(trial: pd.DataFrame, tmp_path: Path, **changes: object) -> dict[str, object]:
    changes.setdefault("cluster_correction", "cr1")
    plan = plan_for(trial, **changes)
    _, _, sample = load(trial, tmp_path, plan)
    return {e.contrast: e for e in estimate_effects(plan, sample)}


def test_cluster_robust_ancova_matches_pyfixest_crv1(trial: pd.DataFrame, tmp_path: Path) -> None:
    ours = _ours(trial, tmp_path)
    ref = pf.feols("endline ~ t1 + t2 + b0 + bmiss + class_cov | stratum",
                   data=with_dummy_baseline(trial), vcov={"CRV1": "cluster"})
    tidy = ref.tidy()
    for contrast, name in (("lectio vs usual", "t1"), ("lectio_plus vs usual", "t2")):
        e = ours[contrast]
        np.testing.assert_allclose(e.estimate, tidy.loc[name, "Estimate"], rtol=RTOL, atol=ATOL,
                                   err_msg="estimate != pyfixest coef")
        np.testing.assert_allclose(e.std_error, tidy.loc[name, "Std. Error"], rtol=RTOL,
                                   atol=ATOL, err_msg="std_error != pyfixest CRV1 se")
        np.testing.assert_allclose(e.ci_low, tidy.loc[name, "2.5%"], rtol=RTOL, atol=ATOL,
                                   err_msg="ci_low != pyfixest (t, G-1 df)")
        np.testing.assert_allclose(e.ci_high, tidy.loc[name, "97.5%"], rtol=RTOL, atol=ATOL,
                                   err_msg="ci_high != pyfixest")
        np.testing.assert_allclose(e.p_value, tidy.loc[name, "Pr(>|t|)"], rtol=RTOL, atol=ATOL,
                                   err_msg="p_value != pyfixest")
        assert e.df == trial["unit_id"].nunique() - 1


def test_cluster_robust_ancova_matches_linearmodels(trial: pd.DataFrame, tmp_path: Path) -> None:
    ours = _ours(trial, tmp_path)
    frame = with_dummy_baseline(trial)
    strata = pd.get_dummies(frame["stratum"], drop_first=True, dtype=float)
    exog = pd.concat([frame[["t1", "t2", "b0", "bmiss", "class_cov"]], strata], axis=1)
    exog = sm.add_constant(exog)
    ref = IV2SLS(frame["endline"], exog, None, None).fit(
        cov_type="clustered", clusters=frame["cluster"], debiased=True)
    for contrast, name in (("lectio vs usual", "t1"), ("lectio_plus vs usual", "t2")):
        np.testing.assert_allclose(ours[contrast].estimate, ref.params[name], rtol=RTOL,
                                   atol=ATOL, err_msg="estimate != linearmodels")
        np.testing.assert_allclose(ours[contrast].std_error, ref.std_errors[name], rtol=RTOL,
                                   atol=ATOL, err_msg="std_error != linearmodels clustered")


def test_learner_randomised_uses_hc1_like_pyfixest_and_statsmodels(
    trial: pd.DataFrame, tmp_path: Path
) -> None:
    # Pretend pupils were randomised individually: unit = learner, no strata.
    pupils = trial.assign(unit_id=trial["learner_id"])
    ours = _ours(pupils, tmp_path, unit="learner", strata=(), covariates=())
    frame = with_dummy_baseline(pupils)
    ref = pf.feols("endline ~ t1 + t2 + b0 + bmiss", data=frame, vcov="hetero").tidy()
    x = sm.add_constant(frame[["t1", "t2", "b0", "bmiss"]])
    sm_fit = sm.OLS(frame["endline"], x).fit(cov_type="HC1")
    for contrast, name in (("lectio vs usual", "t1"), ("lectio_plus vs usual", "t2")):
        e = ours[contrast]
        np.testing.assert_allclose(e.std_error, ref.loc[name, "Std. Error"], rtol=RTOL,
                                   atol=ATOL, err_msg="std_error != pyfixest hetero")
        np.testing.assert_allclose(e.std_error, sm_fit.bse[name], rtol=RTOL, atol=ATOL,
                                   err_msg="std_error != statsmodels HC1")
        np.testing.assert_allclose(e.p_value, ref.loc[name, "Pr(>|t|)"], rtol=RTOL, atol=ATOL,
                                   err_msg="p_value != pyfixest (t, N-K df)")


def test_strata_aware_correction_rescales_cr1_exactly(trial: pd.DataFrame, tmp_path: Path) -> None:
    """Default errors = pyfixest CRV1 * sqrt((G-1)/(G-S)), t on G-S df (analysis/_ols.py)."""
    ours = _ours(trial, tmp_path, cluster_correction="cr1-strata")
    ref = pf.feols("endline ~ t1 + t2 + b0 + bmiss + class_cov | stratum",
                   data=with_dummy_baseline(trial), vcov={"CRV1": "cluster"}).tidy()
    g, s = trial["unit_id"].nunique(), trial["stratum"].nunique()
    for contrast, name in (("lectio vs usual", "t1"), ("lectio_plus vs usual", "t2")):
        e = ours[contrast]
        np.testing.assert_allclose(e.estimate, ref.loc[name, "Estimate"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(e.std_error,
                                   ref.loc[name, "Std. Error"] * np.sqrt((g - 1) / (g - s)),
                                   rtol=RTOL, atol=ATOL, err_msg="G/(G-S) factor")
        assert e.df == g - s
