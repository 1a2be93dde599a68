"""Reading the offline analysis files and building analysis samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis.errors import InputError
from analysis.inputs import (
    AnalysisPlan,
    OutcomeSpec,
    plan_from_protocol,
    read_outcomes,
    read_units,
    read_usage,
)
from analysis.sample import attribute_codes, build_sample
from experiments.errors import ProtocolError
from experiments.protocol.language import load_protocol

ROOT = Path(__file__).resolve().parents[2]


def _plan(**changes: object) -> AnalysisPlan:
    options: dict[str, object] = dict(
        experiment="t", protocol_sha256="", unit="class", arms=("lectio", "usual"),
        control="usual", allocation=(1.0, 1.0), outcomes=(OutcomeSpec("fluence", True, "fluence"),),
    )
    options.update(changes)
    return AnalysisPlan(**options)  # type: ignore[arg-type]


def _files(tmp_path: Path) -> tuple[Path, Path]:
    units = tmp_path / "units.csv"
    units.write_text("unit_id,arm,school_uai,size,sector\n"
                     "C1,lectio,S1,22,public\nC2,usual,S1,,private\nC3,lectio,S2,25,public\n",
                     encoding="utf-8")
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text(
        "learner_id,unit_id,measure,wave,score,sex\n"
        "a,C1,fluence,baseline,40,F\n"
        "a,C1,fluence,endline,50,F\n"
        "b,C1,fluence,endline,55,\n"       # no baseline: dummy-variable method
        "b,C1,fluence,baseline,,M\n"       # baseline present but empty
        "c,C2,fluence,baseline,41,M\n"
        "c,C2,fluence,endline,,M\n"        # not assessed at endline: not analysed
        "d,C3,fluence,endline,60,F\n",
        encoding="utf-8")
    return units, outcomes


def test_plan_from_the_design_example() -> None:
    protocol = load_protocol(ROOT / "protocols" / "fluence-cp-2027.yaml")
    plan = plan_from_protocol(protocol)
    assert plan.experiment == "fluence-cp-2027"
    assert plan.protocol_sha256 == protocol.sha256
    assert (plan.unit, plan.arms, plan.control) == ("class", ("lectio", "usual"), "usual")
    assert plan.treatment_arms == ("lectio",)
    assert plan.strata == ("school_uai",)
    assert plan.outcomes == (OutcomeSpec("fluence", True, "fluence"),)
    assert plan.estimands == ("ITT", "CACE")  # usage.compliance is declared
    assert plan.min_active_minutes == 300
    assert (plan.model, plan.alpha, plan.multiple_comparisons) == ("ancova", 0.05, "holm")
    assert plan.subgroups == ("education_priority",)
    assert plan.cluster_correction == "cr2"  # issue 15: the default variance estimator


def test_protocol_names_the_cluster_correction(tmp_path: Path) -> None:
    text = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("  alpha: 0.05", "  alpha: 0.05\n  cluster_correction: cr1"),
                    encoding="utf-8")
    assert plan_from_protocol(load_protocol(path)).cluster_correction == "cr1"
    path.write_text(text.replace("  alpha: 0.05", "  alpha: 0.05\n  cluster_correction: cr3"),
                    encoding="utf-8")
    with pytest.raises(ProtocolError, match="cluster_correction"):
        load_protocol(path)


def test_plan_refuses_unknown_options() -> None:
    with pytest.raises(ValueError, match=r"analysis.model: expecting one of \['ancova', 'mixed'\]"):
        _plan(model="gee")
    with pytest.raises(ValueError, match="control arm"):
        _plan(control="placebo")


def test_sample_with_missing_baseline_and_covariates(tmp_path: Path) -> None:
    plan = _plan(covariates=("size", "sector", "sex"), strata=("school_uai",))
    units_path, outcomes_path = _files(tmp_path)
    units = read_units(units_path, plan)
    outcomes = read_outcomes(outcomes_path, units)
    sample = build_sample(plan, units, outcomes, plan.outcomes[0])
    assert sample.n == 3  # a, b, d (c has no endline score)
    assert list(outcomes.learner_ids[sample.learner]) == ["a", "b", "d"]
    assert sample.baseline_missing == 2  # b (empty) and d (absent)
    # C2 (no size, private) has no analysed learner: no missing-size indicator, and
    # "sector" has one level among the analysed, so it adds no column.
    assert sample.covariate_names == (
        "fluence_baseline", "fluence_baseline_manquant", "size", "sex[M]",
    )
    np.testing.assert_array_equal(sample.covariates[:, 0], [40.0, 0.0, 0.0])
    np.testing.assert_array_equal(sample.covariates[:, 1], [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(sample.covariates[:, 2], [22.0, 22.0, 25.0])
    np.testing.assert_array_equal(sample.covariates[:, 3], [0.0, 1.0, 0.0])  # b is M
    assert (sample.n_clusters, sample.n_strata) == (2, 2)


def test_attribute_codes_of_unit_and_learner_columns(tmp_path: Path) -> None:
    plan = _plan()
    units_path, outcomes_path = _files(tmp_path)
    units = read_units(units_path, plan)
    outcomes = read_outcomes(outcomes_path, units)
    learners = np.arange(outcomes.n_learners)
    codes, levels = attribute_codes("size", units, outcomes, learners)
    assert levels == ("(manquant)", "22", "25")
    assert [levels[c] for c in codes] == ["22", "22", "(manquant)", "25"]
    codes, levels = attribute_codes("sex", units, outcomes, learners)
    assert [levels[c] for c in codes] == ["F", "M", "M", "F"]


def test_usage_errors_name_the_line(tmp_path: Path) -> None:
    plan = _plan()
    units_path, outcomes_path = _files(tmp_path)
    units = read_units(units_path, plan)
    outcomes = read_outcomes(outcomes_path, units)
    usage = tmp_path / "usage.csv"
    usage.write_text("learner_id,unit_id,week,active_minutes\n"
                     "a,C1,2027-W40,30\na,C1,2027-W41,-5\n", encoding="utf-8")
    with pytest.raises(InputError) as error:
        read_usage(usage, outcomes, units)
    assert (error.value.line, error.value.field) == (3, "active_minutes")
    usage.write_text("learner_id,unit_id,week,active_minutes\na,C3,2027-W40,30\n",
                     encoding="utf-8")
    with pytest.raises(InputError, match="another unit") as error:
        read_usage(usage, outcomes, units)
    assert error.value.line == 2
    usage.write_text("learner_id,unit_id,week,active_minutes\n"
                     "a,C1,2027-W40,30\na,C1,2027-W40,10\na,C1,2027-W41,5\n"
                     "zz,C2,2027-W40,99\n", encoding="utf-8")
    table = read_usage(usage, outcomes, units)
    assert table.minutes[0] == 45.0 and table.weeks[0] == 2  # zz has no outcome: ignored


def test_learner_in_two_units_is_refused(tmp_path: Path) -> None:
    plan = _plan()
    units_path, _ = _files(tmp_path)
    units = read_units(units_path, plan)
    outcomes = tmp_path / "moved.csv"
    outcomes.write_text("learner_id,unit_id,measure,wave,score\n"
                        "a,C1,fluence,baseline,40\na,C2,fluence,endline,50\n", encoding="utf-8")
    with pytest.raises(InputError, match="another unit earlier") as error:
        read_outcomes(outcomes, units)
    assert (error.value.line, error.value.field) == (3, "unit_id")


def test_usage_with_no_outcome_yet_is_read_not_a_crash(tmp_path: Path) -> None:
    # Early monitoring runs have usage but no assessment yet (reported by the scheduler).
    from analysis.inputs import plan_from_protocol, read_outcomes, read_units, read_usage
    from experiments.protocol.language import load_protocol

    protocol = Path(__file__).resolve().parents[2] / "protocols" / "fluence-cp-2027.yaml"
    plan = plan_from_protocol(load_protocol(protocol))
    (tmp_path / "u.csv").write_text(
        "unit_id,arm,school_uai,education_priority\nc1,lectio,0781234T,REP\nc2,usual,0781234T,REP\n"
    )
    (tmp_path / "o.csv").write_text("learner_id,unit_id,measure,wave,score\n")
    (tmp_path / "x.csv").write_text("learner_id,unit_id,week,active_minutes\nL1,c1,2027-W40,30\n")
    units = read_units(tmp_path / "u.csv", plan)
    outcomes = read_outcomes(tmp_path / "o.csv", units)
    usage = read_usage(tmp_path / "x.csv", outcomes, units)
    assert usage.n_rows == 1 and len(usage.minutes) == 0


@pytest.mark.parametrize(("score", "line_error"), [
    (" 12.5 ", None),         # spaces around a number: read as text, trimmed, accepted
    ("1e1", None),
    ("inf", "got 'inf'"),     # parsed by pyarrow as a float, refused with the text as written
    ("nan", "got 'nan'"),
    ("douze", "got 'douze'"),
])
def test_scores_read_as_numbers_or_refused_as_written(tmp_path: Path, score: str,
                                                      line_error: str | None) -> None:
    """Scores are parsed as float64 by pyarrow; anything else is re-read as text so that the
    message shows the value exactly as the file has it, on its line."""
    plan = _plan()
    units_path, _ = _files(tmp_path)
    units = read_units(units_path, plan)
    outcomes = tmp_path / "typed.csv"
    outcomes.write_text("learner_id,unit_id,measure,wave,score\n"
                        "a,C1,fluence,baseline,40\n"
                        f'a,C1,fluence,endline,"{score}"\nb,C1,fluence,endline,\n',
                        encoding="utf-8")
    if line_error is None:
        table = read_outcomes(outcomes, units)
        assert table.score[1] == float(score) and np.isnan(table.score[2])
        return
    with pytest.raises(InputError, match=line_error) as error:
        read_outcomes(outcomes, units)
    assert (error.value.line, error.value.field) == (3, "score")


def test_blank_or_negative_minutes_are_refused_as_written(tmp_path: Path) -> None:
    plan = _plan()
    units_path, outcomes_path = _files(tmp_path)
    units = read_units(units_path, plan)
    outcomes = read_outcomes(outcomes_path, units)
    usage = tmp_path / "usage.csv"
    for value, shown in (("", "''"), ("-5", "'-5'")):
        usage.write_text(f"learner_id,unit_id,week,active_minutes\na,C1,2027-W40,30\na,C1,2027-W41,{value}\n",
                         encoding="utf-8")
        with pytest.raises(InputError, match=f"got {shown}") as error:
            read_usage(usage, outcomes, units)
        assert (error.value.line, error.value.field) == (3, "active_minutes")


# No other measure: a dense (learner, measure, wave) grid, counted with bincount; 2,000 other
# learners with one measure each: a sparse grid (4M cells for 2,000 rows), hashed by pandas.
@pytest.mark.parametrize("n_other_measures", [0, 2000])
def test_a_score_given_twice_is_refused_on_its_line(tmp_path: Path,
                                                    n_other_measures: int) -> None:
    plan = _plan()
    units_path, _ = _files(tmp_path)
    units = read_units(units_path, plan)
    others = "".join(f"z{k},C1,m{k},endline,1\n" for k in range(n_other_measures))
    outcomes = tmp_path / "twice.csv"
    outcomes.write_text("learner_id,unit_id,measure,wave,score\n" + others +
                        "a,C1,fluence,baseline,40\na,C1,fluence,endline,50\n"
                        "b,C1,fluence,endline,45\na,C1,fluence,endline,51\n", encoding="utf-8")
    with pytest.raises(InputError, match="already has a score") as error:
        read_outcomes(outcomes, units)
    assert (error.value.line, error.value.field) == (n_other_measures + 5, "learner_id")
    outcomes.write_text("learner_id,unit_id,measure,wave,score\n" + others +
                        "a,C1,fluence,baseline,40\na,C1,fluence,endline,50\n", encoding="utf-8")
    assert read_outcomes(outcomes, units).n_learners == n_other_measures + 1


@pytest.mark.parametrize("week", ["banana", "40", "2027-40", "2027-W53", "2027-W00"])
def test_usage_weeks_are_iso_weeks(tmp_path: Path, week: str) -> None:
    # ISO 8601 weeks: 2027 has 52 (it starts on a Friday); the "banana" was accepted.
    units_path, outcomes_path = _files(tmp_path)
    units = read_units(units_path, _plan())
    outcomes = read_outcomes(outcomes_path, units)
    usage = tmp_path / "usage.csv"
    usage.write_text(f"learner_id,unit_id,week,active_minutes\na,C1,2027-W40,30\na,C1,{week},5\n",
                     encoding="utf-8")
    with pytest.raises(InputError, match="ISO week written YYYY-Www") as error:
        read_usage(usage, outcomes, units)
    assert (error.value.line, error.value.field) == (3, "week")
    usage.write_text("learner_id,unit_id,week,active_minutes\na,C1,2026-W53,30\n",
                     encoding="utf-8")
    assert read_usage(usage, outcomes, units).weeks[0] == 1
