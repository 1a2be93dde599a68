"""Effect sizes, EEF months, WWC attrition boundaries, baseline equivalence, SRM, multiplicity.

Hand-computed examples carry their arithmetic in a comment; published tables cite their
source. Closed forms are compared at ``rtol = 1e-12`` (float rounding only).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from analysis.attrition import attrition_boundary, boundary_table, check_attrition, rate_attrition
from analysis.balance import check_sample_ratio, classify_difference, cox_index
from analysis.effect_sizes import hedges_correction, hedges_g, months_of_progress
from analysis.multiplicity import adjust_p_values
from analysis.statistics import SampleMeanStatistic

pytestmark = pytest.mark.statistics

EXACT = 1e-12


def test_hedges_g_equal_groups_by_hand() -> None:
    # t = 12, 14, 16 (mean 14, var 4); c = 10, 12, 14 (mean 12, var 4); pooled SD 2.
    # N = 6: J = 1 - 3 / (4*6 - 9) = 0.8; g = 0.8 * 2 / 2 = 0.8; CI [0, 4] → [0, 1.6].
    size = hedges_g(2.0, 0.0, 4.0, SampleMeanStatistic.of([12.0, 14.0, 16.0]),
                    SampleMeanStatistic.of([10.0, 12.0, 14.0]))
    assert size.correction == pytest.approx(0.8, rel=EXACT)
    assert size.pooled_sd == pytest.approx(2.0, rel=EXACT)
    assert (size.hedges_g, size.hedges_g_ci_low, size.hedges_g_ci_high) == pytest.approx(
        (0.8, 0.0, 1.6), rel=EXACT)
    assert size.months_progress == 10  # EEF: 0.79-0.87 → 10 months


def test_hedges_g_unequal_groups_by_hand() -> None:
    # t = 3, 5, 7, 9: var 20/3; c = 2, 4, 6: var 4; pooled var (3*20/3 + 2*4) / 5 = 5.6.
    # N = 7: J = 1 - 3/19 = 16/19; difference 2 → g = (16/19) * 2 / sqrt(5.6) = 0.711710…
    size = hedges_g(2.0, -1.0, 5.0, SampleMeanStatistic.of([3.0, 5.0, 7.0, 9.0]),
                    SampleMeanStatistic.of([2.0, 4.0, 6.0]))
    assert size.hedges_g == pytest.approx(16 / 19 * 2 / math.sqrt(5.6), rel=EXACT)
    assert size.hedges_g_ci_low == pytest.approx(-16 / 19 / math.sqrt(5.6), rel=EXACT)
    assert hedges_correction(20) == pytest.approx(1 - 3 / 71, rel=EXACT)


def test_hedges_g_without_variance_is_nan() -> None:
    size = hedges_g(1.0, 0.0, 2.0, SampleMeanStatistic.of([5.0, 5.0]),
                    SampleMeanStatistic.of([5.0, 5.0]))
    assert math.isnan(size.hedges_g) and size.months_progress is None


# EEF Teaching and Learning Toolkit, "About the Toolkits: attainment", table "Months'
# progress / Effect size" (https://educationendowmentfoundation.org.uk/evidence-summaries/
# about-the-toolkits/attainment/): each row's two ends, then negatives and beyond the table.
EEF_CASES = [
    (0.0, 0), (0.01, 0), (-0.01, 0), (0.02, 1), (0.09, 1), (0.10, 2), (0.18, 2), (0.19, 3),
    (0.26, 3), (0.27, 4), (0.35, 4), (0.36, 5), (0.44, 5), (0.45, 6), (0.52, 6), (0.53, 7),
    (0.61, 7), (0.62, 8), (0.69, 8), (0.70, 9), (0.78, 9), (0.79, 10), (0.87, 10), (0.88, 11),
    (0.95, 11), (0.96, 12), (1.00, 12), (1.40, 12), (-0.27, -4), (-0.96, -12),
    # Read on 2 decimals: 0.185 → 0.19 → 3; 0.184 → 0.18 → 2; 0.0949 → 0.09 → 1.
    (0.185, 3), (0.184, 2), (0.0949, 1),
]


@pytest.mark.parametrize(("g", "months"), EEF_CASES)
def test_eef_months_of_progress_table(g: float, months: int) -> None:
    assert months_of_progress(g) == months


# WWC Standards Handbook v4.1, Table II.1 (shipped in analysis/wwc_attrition_boundaries.json):
# (overall %, cautious boundary %, optimistic boundary %), spot rows across the table.
WWC_ROWS = [(0, 5.7, 10.0), (10, 6.3, 10.9), (20, 5.4, 10.0), (30, 4.1, 8.2), (40, 2.6, 6.0),
            (50, 1.0, 3.7), (57, 0.0, 2.1), (58, None, 1.9), (65, None, 0.3)]


@pytest.mark.parametrize(("overall", "cautious", "optimistic"), WWC_ROWS)
def test_wwc_boundary_rows(overall: int, cautious: float | None, optimistic: float) -> None:
    got_c = attrition_boundary(overall / 100, "cautious")
    got_o = attrition_boundary(overall / 100, "optimistic")
    assert got_c == (None if cautious is None else pytest.approx(cautious / 100, abs=1e-9))
    assert got_o == pytest.approx(optimistic / 100, abs=1e-9)


def test_wwc_table_shape_and_source() -> None:
    table = boundary_table()
    rows = table["rows"]
    assert "Standards Handbook, Version 4.1" in str(table["source"])
    assert [r["overall"] for r in rows] == list(range(66))
    for r in rows:  # the cautious boundary is never looser than the optimistic one
        assert r["cautious"] is None or r["cautious"] <= r["optimistic"]
    assert attrition_boundary(0.66, "optimistic") is None  # beyond the table: high


def test_wwc_classification_examples() -> None:
    # 8% overall, 3 points differential: low under both boundaries (6.3 and 10.9).
    assert rate_attrition(0.08, 0.03, "cautious") == "low"
    # 30% overall, 6 points: cautious boundary 4.1 → high; optimistic 8.2 → low.
    assert rate_attrition(0.30, 0.06, "cautious") == "high"
    assert rate_attrition(0.30, 0.06, "optimistic") == "low"
    # Exactly on the boundary counts as low: 0% overall, 5.7 points cautious.
    assert rate_attrition(0.0, 0.057, "cautious") == "low"
    # 40 classes randomised per arm, 38 and 40 analysed: overall 2/80 = 2.5% → row 3
    # (rounded up), differential 5 points: cautious 5.9 → low.
    check = check_attrition(outcome="f", contrast="a vs b", level="unit",
                            randomised={"a": 40, "b": 40}, analysed={"a": 38, "b": 40})
    assert check.overall == pytest.approx(0.025, rel=EXACT)
    assert check.differential == pytest.approx(0.05, rel=EXACT)
    assert (check.boundary_row, check.boundary_cautious, check.cautious) == (3, 0.059, "low")
    # Default boundary: cautious; the optimistic column is not even shown.
    assert (check.assumption, check.rating, check.boundary) == ("cautious", "low", 0.059)
    assert (check.boundary_optimistic, check.optimistic) == (None, None)


def test_wwc_overall_rounded_up_differential_unrounded() -> None:
    # Issue 15: the row read is the overall attrition rounded UP to the next whole percent.
    # 10.2 % overall reads row 11 (cautious 6.2), not row 10 (6.3, what rounding to the
    # nearest percent would read): a 6.25-point differential is high.
    assert attrition_boundary(0.102, "cautious") == pytest.approx(0.062, abs=1e-12)
    assert rate_attrition(0.102, 0.0625, "cautious") == "high"
    assert rate_attrition(0.100, 0.0625, "cautious") == "low"  # exactly 10 %: row 10
    # The differential is compared unrounded: 6.21 points > 6.2 → high (rounded to a whole
    # or tenth of a point it would be 6.2 → low).
    assert rate_attrition(0.11, 0.0621, "cautious") == "high"
    assert rate_attrition(0.11, 0.0620, "cautious") == "low"


def test_wwc_optimistic_only_when_declared_with_unverified_rows_stated() -> None:
    # 20 % overall (row 20, in the unverified rows 13-65 of the optimistic column), 8 points:
    # cautious 5.4 → high; optimistic 10.0 → low, with the unverified row said.
    counts = dict(outcome="f", contrast="a vs b", level="learner",
                  randomised={"a": 100, "b": 100}, analysed={"a": 76, "b": 84})
    cautious = check_attrition(**counts)  # type: ignore[arg-type]
    assert (cautious.rating, cautious.optimistic, cautious.unverified) == ("high", None, None)
    optimistic = check_attrition(**counts, assumption="optimistic")  # type: ignore[arg-type]
    assert (optimistic.rating, optimistic.boundary, optimistic.cautious) == ("low", 0.1, "high")
    assert optimistic.unverified is not None and "rows 13-65" in optimistic.unverified
    # Row 12 (verified against the second transcription): no such statement.
    verified = check_attrition(outcome="f", contrast="a vs b", level="learner",
                               randomised={"a": 100, "b": 100}, analysed={"a": 88, "b": 88},
                               assumption="optimistic")
    assert verified.boundary_row == 12 and verified.unverified is None


def test_learner_attrition_with_small_arm_is_suppressed() -> None:
    check = check_attrition(outcome="f", contrast="a vs b", level="learner",
                            randomised={"a": 9, "b": 40}, analysed={"a": 8, "b": 35})
    assert check.randomised["a"] is None and check.analysed["a"] is None
    assert math.isnan(check.overall) and check.reason


def test_cox_index_by_hand() -> None:
    # p_t = 0.6, p_c = 0.4, N = 100: (logit 0.6 - logit 0.4) = 2 ln 1.5; J = 1 - 3/391.
    expected = (1 - 3 / 391) * 2 * math.log(1.5) / 1.65
    assert cox_index(0.6, 0.4, 100) == pytest.approx(expected, rel=EXACT)
    assert math.isnan(cox_index(0.0, 0.4, 100))


def test_wwc_equivalence_thresholds() -> None:
    assert classify_difference(0.0) == "satisfied"
    assert classify_difference(-0.05) == "satisfied"
    assert classify_difference(0.051) == "adjustment required"
    assert classify_difference(0.25) == "adjustment required"
    assert classify_difference(-0.2501) == "not satisfied"
    assert classify_difference(math.nan) is None


def test_sample_ratio_by_hand() -> None:
    # 30 vs 10 units for 1:1: expected 20 each; chi2 = (10^2 + 10^2) / 20 = 10, 1 df.
    check = check_sample_ratio({"a": 30, "b": 10}, {"a": 1.0, "b": 1.0})
    assert check.chi2 == pytest.approx(10.0, rel=EXACT)
    assert check.p_value == pytest.approx(math.erfc(math.sqrt(10.0 / 2)), rel=1e-10)
    assert check.mismatch is False  # p = 0.0016 > 0.001
    # 2:1 allocation honoured exactly: chi2 = 0.
    assert check_sample_ratio({"a": 40, "b": 20}, {"a": 2.0, "b": 1.0}).chi2 == 0.0


P_FAMILIES = [
    [0.01, 0.04, 0.03, 0.005],
    [0.2, 0.2, 0.01, 0.5, 0.049, 0.0001],  # ties
    [0.9],
    [0.001, 0.002, 0.003, 0.004, 0.005, 0.8, 0.9],
]


@pytest.mark.parametrize("p_values", P_FAMILIES)
@pytest.mark.parametrize(("ours", "theirs"), [("holm", "holm"), ("benjamini-hochberg", "fdr_bh"),
                                              ("bonferroni", "bonferroni")])
def test_multiplicity_matches_statsmodels(p_values: list[float], ours: str, theirs: str) -> None:
    expected = multipletests(p_values, method=theirs)[1]
    np.testing.assert_allclose(adjust_p_values(p_values, ours), expected, rtol=EXACT,  # type: ignore[arg-type]
                               err_msg=f"{ours} != statsmodels {theirs}")


def test_multiplicity_leaves_nan_out_of_the_family() -> None:
    got = adjust_p_values([0.01, math.nan, 0.04], "holm")
    assert got[0] == pytest.approx(0.02, rel=EXACT) and math.isnan(got[1])
    assert got[2] == pytest.approx(0.04, rel=EXACT)
    with pytest.raises(ValueError, match="expecting one of"):
        adjust_p_values([0.1], "sidak")  # type: ignore[arg-type]
