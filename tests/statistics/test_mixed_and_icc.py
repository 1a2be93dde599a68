"""Random-intercept model and ICC against textbook identities for balanced designs.

Balanced cluster trial, no covariates: the REML random-intercept estimate of the arm effect
is the difference of arm means, and its standard error is that of the two-sample t-test on
class means (pooled variance, ``G - 2`` df) whenever the class variance estimate is
positive (Snijders & Bosker, *Multilevel Analysis*, 2nd ed., 2012, section 3.3; Donner &
Klar, *Design and Analysis of Cluster Randomization Trials*, 2000, ch. 6). The REML
variance components then equal the one-way ANOVA ones, so our ANOVA ICC must match
statsmodels ``MixedLM``. Tolerances: ``1e-10`` for closed forms; ``1e-4`` where an
iterative REML optimum is compared (the optimiser stops at a gradient tolerance).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM

from analysis.effects import estimate_effects
from analysis.icc import estimate_icc
from analysis.inputs import AnalysisPlan, OutcomeSpec
from analysis.mixed import fit_random_intercepts, group_sums
from analysis.sample import AnalysisSample

pytestmark = pytest.mark.statistics

G, M = 20, 15


def _balanced(seed: int = 7) -> AnalysisSample:
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(G), M)
    arm = (np.arange(G) % 2).astype(np.int8)[unit]  # 0 = resource, 1 = usual
    y = 0.3 * (arm == 0) + rng.normal(0, np.sqrt(0.2), G)[unit] + rng.normal(0, np.sqrt(0.8), G * M)
    return AnalysisSample("y", y, arm, np.arange(G * M), unit, unit.astype(np.intp), G, None, 0,
                          None, np.empty((G * M, 0)), (), 0)


PLAN = AnalysisPlan("x", "", "class", ("resource", "usual"), "usual", (1.0, 1.0),
                    (OutcomeSpec("y", True),), model="mixed")


def test_mixed_equals_t_test_on_class_means() -> None:
    sample = _balanced()
    (effect,) = estimate_effects(PLAN, sample)
    means = np.bincount(sample.cluster, weights=sample.y) / M
    arm_of_class = sample.arm[:: M]
    treated, control = means[arm_of_class == 0], means[arm_of_class == 1]
    t_test = stats.ttest_ind(treated, control)  # pooled variance, G - 2 df
    np.testing.assert_allclose(effect.estimate, treated.mean() - control.mean(), rtol=1e-10,
                               err_msg="REML estimate != difference of means (balanced)")
    t_se = (treated.mean() - control.mean()) / t_test.statistic
    np.testing.assert_allclose(effect.std_error, t_se,
                               rtol=1e-4, err_msg="REML se != t-test on class means")
    # Satterthwaite's df (analysis/mixed.py) equal the t-test's G - 2 in this balanced
    # design; ours come from a finite-difference Hessian (about 1e-8 relative error). Was
    # ``== G - 2`` when the model used df = G - A by construction (issue 15 replaced it).
    np.testing.assert_allclose(effect.df, G - 2, rtol=1e-6, err_msg="Satterthwaite df != G - 2")
    np.testing.assert_allclose(effect.p_value, t_test.pvalue, rtol=1e-3)


def test_icc_anova_equals_reml_on_balanced_data() -> None:
    sample = _balanced(seed=11)
    ours = estimate_icc("y", sample.y, sample.cluster, G, sample.arm)
    x = np.column_stack([np.ones(sample.n), (sample.arm == 0).astype(float)])
    fit = MixedLM(sample.y, x, groups=sample.cluster).fit(reml=True)
    between = float(np.asarray(fit.cov_re)[0, 0])
    reml_icc = between / (between + fit.scale)
    np.testing.assert_allclose(ours.icc, reml_icc, rtol=1e-4, err_msg="ANOVA ICC != REML ICC")


def test_icc_hand_computed_unbalanced() -> None:
    # Clusters {1,2,3}, {3,4,5,6,7}, {9,11}: grand mean 51/10 = 5.1.
    # SSB = 3(2-5.1)^2 + 5(5-5.1)^2 + 2(10-5.1)^2 = 28.83 + 0.05 + 48.02 = 76.9, MSB = 38.45
    # SSW = 2 + 10 + 2 = 14, MSW = 14 / 7 = 2
    # n0 = (10 - (9 + 25 + 4) / 10) / 2 = 3.1
    # ICC = (38.45 - 2) / (38.45 + 2.1 * 2) = 36.45 / 42.65
    y = np.array([1, 2, 3, 3, 4, 5, 6, 7, 9, 11], dtype=float)
    cluster = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
    result = estimate_icc("y", y, cluster, 3)
    np.testing.assert_allclose(result.icc, 36.45 / 42.65, rtol=1e-12)


def test_mixed_with_classes_nested_in_schools_matches_statsmodels_formula() -> None:
    """Our REML fit (analysis/mixed.py) against statsmodels' formula interface
    (``re_formula="1"``, ``vc_formula`` for classes): the same REML model specified
    independently. Two iterative REML optima agree to the optimiser's precision: the
    estimates to 1e-3 of a standard error, the variance components to 1e-3 relative.

    The standard errors are not compared here: statsmodels' ``bse_fe`` inverts the Hessian
    of the REML likelihood in all parameters, lme4/lmerTest's (ours) is
    ``σ² (X'V⁻¹X)⁻¹`` (0.2116 against statsmodels' 0.2152 on this trial); the comparison
    with lmerTest is tests/statistics/test_mixed_vs_lmertest.py. Until issue 15 our model
    was MixedLM itself and this test pinned its standard errors."""
    import pandas as pd

    rng = np.random.default_rng(3)
    schools, per_school, pupils = 15, 3, 15
    n_classes = schools * per_school
    school_of_class = np.repeat(np.arange(schools), per_school)
    unit = np.repeat(np.arange(n_classes), pupils)
    arm = (rng.permutation(n_classes) % 2).astype(np.int8)[unit]
    y = (0.3 * (arm == 0) + rng.normal(0, 0.6, schools)[school_of_class][unit]
         + rng.normal(0, 0.5, n_classes)[unit] + rng.normal(0, 1, unit.size))
    sample = AnalysisSample("y", y, arm, np.arange(unit.size), unit, unit.astype(np.intp),
                            n_classes, None, 0, school_of_class[unit].astype(np.intp),
                            np.empty((unit.size, 0)), (), 0)
    (effect,) = estimate_effects(PLAN, sample)
    frame = pd.DataFrame({"y": y, "treated": (arm == 0).astype(float),
                          "school": school_of_class[unit], "klass": unit})
    ref = MixedLM.from_formula("y ~ treated", frame, groups="school", re_formula="1",
                               vc_formula={"klass": "0 + C(klass)"}).fit(reml=True)
    se = float(ref.bse_fe["treated"])
    np.testing.assert_allclose(effect.estimate, ref.fe_params["treated"], rtol=0, atol=1e-3 * se)
    x = np.column_stack([np.ones(unit.size), frame["treated"]])
    fit = fit_random_intercepts(group_sums(y, x, unit.astype(np.intp), n_classes,
                                           school_of_class.astype(np.intp)))
    np.testing.assert_allclose(fit.params[1], effect.estimate, rtol=1e-12)
    np.testing.assert_allclose(fit.variances, [ref.vcomp[0], float(ref.cov_re.iloc[0, 0])],
                               rtol=1e-3, err_msg="variance components != MixedLM's")
    np.testing.assert_allclose(fit.sigma ** 2, ref.scale, rtol=1e-3)
