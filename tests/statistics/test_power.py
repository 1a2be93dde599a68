"""PowerUp! MDES (analysis/power.py) against published values and an independent library.

Tolerance: published PowerUp! values are given to 3 decimals, so we compare rounded
values (``round(x, 3)``), i.e. |error| < 5e-4.

Sources:
- [DM2013] Dong, N. & Maynard, R. (2013). PowerUp!: A tool for calculating minimum
  detectable effect sizes and minimum required sample sizes for experimental and
  quasi-experimental design studies. Journal of Research on Educational Effectiveness,
  6(1), 24-67. MDES formulas for IRA, CRA2_2r and BCRA3_2f (reproduced in the
  docstring of analysis/power.py).
- [ISSUE3] The values quoted in issue 3 as the PowerUp! examples (CRA2_2r with ICC 0.17,
  15 pupils per cluster, 20 clusters: 0.629; IRA with 250 pupils: 0.356). We recomputed
  both by hand from [DM2013]: M(18) = t.975 + t.80 = 2.101 + 0.862 = 2.963,
  SE = sqrt(.17/(.25*20) + .83/(.25*20*15)) = 0.2123, MDES = 0.629; and
  M(248) = 1.970 + 0.843 = 2.812, SE = sqrt(1/(.25*250)) = 0.1265, MDES = 0.356.
- [PYPOWERUP] The README example of pyPowerUp (a Python port of the PowerUpR package):
  power_bcra3f2(effect_size=.145, rho2=.10, n=20, J=44, K=5, alpha=.05) = 0.803; its
  BCRA3_2f degrees of freedom are K(J - 2) - g*, as in [DM2013].
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from statsmodels.stats.power import TTestIndPower
from typer.testing import CliRunner

from analysis.power import (
    DesignInputs,
    compute_mdes,
    multiplier,
    power_for_effect,
    units_needed,
)
from experiments.cli.protocol import app

pytestmark = pytest.mark.statistics

ROOT = Path(__file__).resolve().parents[2]


def test_cra2_published_example() -> None:
    # [ISSUE3], [DM2013] CRA2_2r: ICC .17, n 15, J 20, no covariates, power .8, α .05 two-sided.
    result = compute_mdes(DesignInputs("CRA2_2r", units=20, pupils_per_unit=15, icc=0.17))
    assert result.df == 18
    assert round(result.multiplier or 0, 3) == 2.963
    assert round(result.mdes or 0, 3) == 0.629


def test_ira_published_example() -> None:
    # [ISSUE3], [DM2013] IRA: 250 pupils, P .5, no covariates, power .8, α .05 two-sided.
    result = compute_mdes(DesignInputs("IRA", units=250))
    assert result.df == 248
    assert round(result.mdes or 0, 3) == 0.356


def test_ira_agrees_with_statsmodels_noncentral_t() -> None:
    # Independent check: statsmodels solves the exact noncentral-t power equation, PowerUp!
    # uses the central-t multiplier approximation; at df 248 they agree to 1e-4.
    exact = TTestIndPower().solve_power(nobs1=125, ratio=1.0, alpha=0.05, power=0.8)
    assert compute_mdes(DesignInputs("IRA", units=250)).mdes == pytest.approx(exact, abs=1e-4)


def test_bcra3f2_matches_pypowerup_example() -> None:
    # [PYPOWERUP]: 5 blocks of 44 clusters of 20 pupils, ICC .10, effect .145 → power .803.
    inputs = DesignInputs("BCRA3_2f", units=5 * 44, pupils_per_unit=20, icc=0.10, blocks=5)
    assert compute_mdes(inputs).df == 5 * (44 - 2)
    assert round(power_for_effect(inputs, 0.145), 3) == 0.803


def test_mdes_gives_the_target_power() -> None:
    # Definition check: at the MDES, power is (about) the requested power. PowerUp!'s
    # multiplier ignores the far rejection tail, so power at the MDES is >= 0.8, barely.
    inputs = DesignInputs("CRA2_2r", units=20, pupils_per_unit=15, icc=0.17)
    mdes = compute_mdes(inputs).mdes or 0
    assert power_for_effect(inputs, mdes) == pytest.approx(0.8, abs=1e-3)


def test_covariates_reduce_df_and_mdes() -> None:
    plain = compute_mdes(DesignInputs("CRA2_2r", units=40, pupils_per_unit=20, icc=0.2))
    adjusted = compute_mdes(
        DesignInputs("CRA2_2r", units=40, pupils_per_unit=20, icc=0.2, r2_unit=0.5, covariates=1)
    )
    assert adjusted.df == plain.df - 1
    assert (adjusted.mdes or 1) < (plain.mdes or 0)


def test_one_tailed_multiplier() -> None:
    # t(.95, 18) + t(.80, 18) = 1.734 + 0.862
    assert round(multiplier(18, two_tailed=False), 3) == 2.596


def test_blocks_of_two_units_are_not_estimable() -> None:
    # BCRA3_2f has K(J - 2) - g* df: blocks of two clusters leave none. A result, not a crash.
    result = compute_mdes(
        DesignInputs("BCRA3_2f", units=80, pupils_per_unit=22, icc=0.15, blocks=40)
    )
    assert result.mdes is None and result.df == 0
    assert result.reason is not None and "more than 2 units per block" in result.reason


def test_units_needed_is_the_smallest_count() -> None:
    inputs = DesignInputs("CRA2_2r", units=2, pupils_per_unit=15, icc=0.17)
    needed = units_needed(inputs, 0.629)
    assert needed.units == 21  # 20 clusters give 0.62901 > 0.629
    assert (
        compute_mdes(DesignInputs("CRA2_2r", units=20, pupils_per_unit=15, icc=0.17)).mdes > 0.629
    )  # type: ignore[operator]
    assert units_needed(DesignInputs("IRA", units=2), 0.356).units == 250


def test_cli_power_json_on_the_design_example() -> None:
    path = ROOT / "protocols" / "fluence-cp-2027.yaml"
    result = CliRunner().invoke(app, ["power", str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    # CRA2_2r, J 80, n 22, ICC .15, R² .5/.3, one unit-level covariate: df = 80 - 1 - 2.
    expected = compute_mdes(
        DesignInputs(
            "CRA2_2r",
            units=80,
            pupils_per_unit=22,
            icc=0.15,
            r2_learner=0.5,
            r2_unit=0.3,
            covariates=1,
        )
    )
    assert out["df"] == 77 == expected.df
    assert out["mdes"] == pytest.approx(expected.mdes, rel=1e-12)
    assert isinstance(out["mdes"], float) and out["design"] == "CRA2_2r"


def test_cli_power_target_mdes_counts_units_of_all_arms() -> None:
    path = ROOT / "protocols" / "lecture-ce1-vagues-2027.yaml"
    result = CliRunner().invoke(app, ["power", str(path), "--json", "--target-mdes", "0.2"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["design"] == "BCRA3_2f"
    # Three equal arms: each contrast uses 2/3 of the units; the total keeps the ratio.
    per_pair = units_needed(
        DesignInputs(
            "BCRA3_2f",
            units=60,
            pupils_per_unit=40,
            icc=0.18,
            r2_learner=0.45,
            r2_unit=0.4,
            blocks=6,
            covariates=1,
        ),
        0.2,
    ).units
    assert per_pair is not None
    assert out["units_needed"] == -(-per_pair * 3 // 2)
    text = CliRunner().invoke(app, ["power", str(path), "--target-mdes", "0.2"])
    assert text.exit_code == 0, text.output
    assert "vague1 vs attente: MDES" in text.output


def test_bira2c1_degrees_of_freedom() -> None:
    # [DM2013] BIRA2_1c (PowerUpR's mdes.bira2c1): df = J(n - 1) - g* - 1, SE as IRA.
    blocked = compute_mdes(DesignInputs("BIRA2_1c", units=20 * 25, blocks=20))
    plain = compute_mdes(DesignInputs("IRA", units=500))
    assert blocked.df == 20 * (25 - 1) - 0 - 1
    assert blocked.std_error == plain.std_error
    # Fewer df → a larger multiplier, by little at this size.
    assert (plain.mdes or 0) < (blocked.mdes or 0) < (plain.mdes or 0) * 1.001


def _without_pretest(tmp_path: Path, covariates: str = "[]") -> Path:
    """The DESIGN.md example with its pre-test removed (an ancova on covariates only)."""
    text = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")
    line = "    baseline: fluence            # pre-test measure (wave baseline) used as covariate\n"
    assert line in text
    text = text.replace(line, "").replace("  covariates: []", f"  covariates: {covariates}")
    path = tmp_path / "sans-pre-test.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_power_without_pretest_nor_covariates_uses_r2_zero(tmp_path: Path) -> None:
    # Issue 15: an outcome without pre-test is analysed on its covariates and strata only;
    # with no covariate, nothing explains variance: PowerUp! with R² = 0 and g* = 0.
    path = _without_pretest(tmp_path)
    result = CliRunner().invoke(app, ["power", str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    expected = compute_mdes(DesignInputs("CRA2_2r", units=80, pupils_per_unit=22, icc=0.15))
    assert (out["df"], out["r2_learner"], out["r2_unit"]) == (78, 0.0, 0.0)
    assert out["mdes"] == pytest.approx(expected.mdes, rel=1e-12)
    assert any("no pre-test" in n and "R² set to 0" in n for n in out["notes"])


def test_power_without_pretest_with_covariates_keeps_declared_r2(tmp_path: Path) -> None:
    path = _without_pretest(tmp_path, "[education_priority]")
    result = CliRunner().invoke(app, ["power", str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert (out["df"], out["r2_learner"], out["r2_unit"]) == (77, 0.5, 0.3)
    assert any("covariates ['education_priority'] alone" in n for n in out["notes"])
