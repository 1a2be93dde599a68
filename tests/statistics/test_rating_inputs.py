"""What the evidence rating reads from a run (issue 15), on small trials written as files.

- Attrition counts every randomised pupil, those of classes lost entirely included (the
  ``all_learners`` row), from the units file's ``pupils`` column or, without it, the mean
  class size of the arm (stated in the warnings).
- The MDES at randomisation is PowerUp!'s (Dong & Maynard 2013; ``analysis/power.py`` is
  checked against published values in ``test_power.py``) for the units randomised and the
  protocol's ICC and R²: it does not move with the trial's outcomes.
- The WWC boundary is the cautious one unless the protocol declares the optimistic one.

Counts are exact (integers); the MDES is compared with ``compute_mdes`` on the same
inputs at 1e-12 relative (same formula, same floating-point path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.inputs import AnalysisPlan, DesignAssumptions, OutcomeSpec, read_outcomes, read_units
from analysis.power import DesignInputs, compute_mdes
from analysis.report.rating import rate_evidence
from analysis.results import to_json_dict
from analysis.run import run_analysis

pytestmark = pytest.mark.statistics

CLASSES, PUPILS = 60, 20
LOST = [0, 2, 4, 6, 8, 31, 33, 35, 37]
"""Nine of the sixty classes lost entirely: five of arm ``t`` (even), four of ``c``."""


def _plan(**changes: object) -> AnalysisPlan:
    base: dict[str, object] = dict(
        experiment="x", protocol_sha256="", unit="class", arms=("t", "c"), control="c",
        allocation=(1.0, 1.0), outcomes=(OutcomeSpec("y", True, "y"),),
        strata=("school_uai",),
        power=DesignAssumptions(icc=0.15, pupils_per_unit=20, r2_learner=0.5, r2_unit=0.3))
    base.update(changes)
    return AnalysisPlan(**base)  # type: ignore[arg-type]


def _files(directory: Path, *, pupils_column: bool, effect: float = 0.0, seed: int = 1
           ) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    unit = np.arange(CLASSES)
    arm = np.where(unit % 2 == 0, "t", "c")
    units = pd.DataFrame({"unit_id": [f"k{u}" for u in unit], "arm": arm,
                          "school_uai": [f"s{u // 2}" for u in unit]})
    if pupils_column:
        units["pupils"] = PUPILS
    rows = []
    for u in unit:
        if u in LOST:
            continue  # lost entirely: no score at all, not even a baseline
        shift = rng.normal(0, 0.4) + (effect if u % 2 == 0 else 0.0)
        for p in range(PUPILS):
            base = rng.normal()
            learner = f"k{u}-{p}"
            rows.append((learner, f"k{u}", "y", "baseline", base))
            rows.append((learner, f"k{u}", "y", "endline", base + shift + rng.normal()))
    outcomes = pd.DataFrame(rows, columns=["learner_id", "unit_id", "measure", "wave", "score"])
    directory.mkdir(parents=True, exist_ok=True)
    units.to_csv(directory / "units.csv", index=False)
    outcomes.to_csv(directory / "outcomes.csv", index=False)
    return directory / "units.csv", directory / "outcomes.csv"


def _run(plan: AnalysisPlan, paths: tuple[Path, Path]) -> dict[str, object]:
    units = read_units(paths[0], plan)
    return to_json_dict(run_analysis(plan, units, read_outcomes(paths[1], units)))


@pytest.mark.parametrize("pupils_column", [True, False])
def test_attrition_counts_the_pupils_of_classes_lost_entirely(
    tmp_path: Path, pupils_column: bool
) -> None:
    data = _run(_plan(), _files(tmp_path, pupils_column=pupils_column))
    rows = {a["level"]: a for a in data["checks"]["attrition"]}  # type: ignore[index]
    # Units: 5 of 30 and 4 of 30 lost. Pupils within the remaining classes: none lost.
    assert rows["unit"]["overall"] == pytest.approx(9 / 60, rel=1e-12)
    assert rows["learner"]["overall"] == 0.0
    # Every randomised pupil: 1,200, of whom 180 (9 classes × 20) are lost: 15 %.
    every = rows["all_learners"]
    assert every["randomised"] == {"t": 600, "c": 600}
    assert every["analysed"] == {"t": 500, "c": 520}
    assert every["overall"] == pytest.approx(180 / 1200, rel=1e-12)
    imputed = [w for w in data["warnings"]  # type: ignore[attr-defined]
               if w["code"] == "units_imputed"]
    assert len(imputed) == (0 if pupils_column else 1)
    # The rating's attrition cap reads it: 15 % → at most 4 padlocks (EEF: 11-20 %).
    cap = rate_evidence(data).steps[2]
    assert (cap.key, cap.padlocks) == ("cap_attrition", 4)
    assert cap.value == pytest.approx(0.15, rel=1e-12)


def test_mdes_at_randomisation_comes_from_the_design_not_the_outcomes(tmp_path: Path) -> None:
    plan = _plan()
    first = _run(plan, _files(tmp_path / "a", pupils_column=True, seed=1))
    other = _run(plan, _files(tmp_path / "b", pupils_column=True, effect=1.0, seed=7))
    expected = compute_mdes(DesignInputs("CRA2_2r", units=60, pupils_per_unit=20, icc=0.15,
                                         r2_learner=0.5, r2_unit=0.3, covariates=1))
    for data in (first, other):
        (m,) = data["design"]["mdes_at_randomisation"]  # type: ignore[index]
        assert (m["contrast"], m["design"], m["units"], m["source"]) == (
            "t vs c", "CRA2_2r", 60, "protocol")
        assert m["mdes"] == pytest.approx(expected.mdes, rel=1e-12)
    assert rate_evidence(first).steps[1].value == rate_evidence(other).steps[1].value


def test_mdes_at_randomisation_without_pretest_nor_covariates_uses_r2_zero(
    tmp_path: Path
) -> None:
    plan = _plan(outcomes=(OutcomeSpec("y", True),))
    (m,) = _run(plan, _files(tmp_path, pupils_column=True))["design"][  # type: ignore[index]
        "mdes_at_randomisation"]
    expected = compute_mdes(DesignInputs("CRA2_2r", units=60, pupils_per_unit=20, icc=0.15))
    assert (m["r2_learner"], m["r2_unit"], m["df"]) == (0.0, 0.0, 58)
    assert m["mdes"] == pytest.approx(expected.mdes, rel=1e-12)


def test_wwc_boundary_follows_the_protocol(tmp_path: Path) -> None:
    paths = _files(tmp_path, pupils_column=True)
    cautious = _run(_plan(), paths)
    unit_row = next(a for a in cautious["checks"]["attrition"]  # type: ignore[index]
                    if a["level"] == "unit")
    # Overall 15 % (row 15), differential 5/30 - 4/30 = 3.3 points: low under both.
    assert (unit_row["assumption"], unit_row["boundary_row"], unit_row["rating"]) == (
        "cautious", 15, "low")
    assert unit_row["boundary_optimistic"] is None and unit_row["unverified"] is None
    optimistic = _run(_plan(attrition_assumption="optimistic"), paths)
    unit_row = next(a for a in optimistic["checks"]["attrition"]  # type: ignore[index]
                    if a["level"] == "unit")
    assert (unit_row["assumption"], unit_row["boundary"]) == ("optimistic", 0.107)
    assert "rows 13-65" in unit_row["unverified"]
    assert any(w["code"] == "attrition_unverified"  # type: ignore[attr-defined]
               for w in optimistic["warnings"])
    assert optimistic["design"]["attrition_boundary"] == "optimistic"  # type: ignore[index]


def test_results_name_the_months_table(tmp_path: Path) -> None:
    # Issue 15: the months of progress name their table (EEF Teaching and Learning
    # Toolkit; the project-report table could not be sourced, see analysis/effect_sizes.py).
    data = _run(_plan(), _files(tmp_path, pupils_column=True))
    assert "EEF Teaching and Learning Toolkit" in data["design"]["effect_size"]  # type: ignore[index]


def test_protocol_declares_the_optimistic_boundary(tmp_path: Path) -> None:
    from analysis.inputs import plan_from_protocol
    from experiments.protocol import load_protocol

    root = Path(__file__).resolve().parents[2]
    text = (root / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")
    assert plan_from_protocol(load_protocol(root / "protocols" / "fluence-cp-2027.yaml")
                              ).attrition_assumption == "cautious"  # the default
    line = "  multiple_comparisons: holm     # across secondary outcomes and subgroups\n"
    assert line in text
    path = tmp_path / "optimiste.yaml"
    path.write_text(text.replace(line, line + "  attrition_boundary: optimistic\n"),
                    encoding="utf-8")
    plan = plan_from_protocol(load_protocol(path))
    assert plan.attrition_assumption == "optimistic"
    assert plan.power is not None and plan.power.icc == 0.15  # the power: assumptions too
