"""The results JSON read back as objects (issue 13, "typed end to end").

``AnalysisResults.from_json`` on real runs of simulated trials (final, interim, monitoring;
with high attrition; with small cells): the JSON written again is the JSON read, the
checks are the analysis's dataclasses again, and the warnings are codes rendered by one
catalogue. Results stored before the codes (warnings as French sentences, attrition
checks without ``rating``) are read too.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from analysis.attrition import AttritionCheck
from analysis.balance import BalanceCheck, SampleRatioCheck
from analysis.consort import ConsortArm
from analysis.icc import IccEstimate
from analysis.inputs import plan_from_protocol, read_outcomes, read_units, read_usage
from analysis.report import render_report
from analysis.results import AnalysisResults, Effect, InteractionTest, to_json_dict
from analysis.run import run_analysis
from analysis.sequential import sequential_look
from analysis.simulate import simulate_trial
from analysis.usage import ArmUsage
from analysis.warning_codes import MESSAGES, SUMMARY_MESSAGES, AnalysisWarning, render_warning
from experiments.protocol.language import load_protocol, parse_protocol

PROTOCOL = Path(__file__).resolve().parents[2] / "protocols" / "fluence-cp-2027.yaml"

TRIALS = {
    "plain": {"n_units": 40, "pupils_per_unit": 20},
    "attrition": {"n_units": 24, "pupils_per_unit": 12, "missing_endline": 0.4},
    "small": {"n_units": 8, "pupils_per_unit": 6, "usage_weeks": 3, "seed": 7},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Results JSON of every trial and analysis, as ``preuve analyze --json`` writes it."""
    protocol = load_protocol(PROTOCOL)
    plan = plan_from_protocol(protocol)
    out = {}
    for name, simulation in TRIALS.items():
        files = simulate_trial(tmp_path_factory.mktemp(name), **simulation)
        units = read_units(files.units, plan)
        outcomes = read_outcomes(files.outcomes, units)
        assert files.usage is not None
        usage = read_usage(files.usage, outcomes, units)
        for analysis in ("final", "interim", "monitoring"):
            results = run_analysis(plan, units, outcomes, usage, analysis)
            out[f"{name}-{analysis}"] = json.loads(json.dumps(to_json_dict(results)))
    return out


def test_the_json_written_again_is_the_json_read(runs: dict[str, dict[str, Any]]) -> None:
    for name, data in runs.items():
        assert to_json_dict(AnalysisResults.from_json(data)) == data, name
    # A key the dataclass does not hold (a cohort's ``waves``, experiments.runs.waves) is
    # kept as read.
    cohort = {**runs["plain-final"], "waves": [{"wave": "fin-CE1", "estimate": 1.5}]}
    assert to_json_dict(AnalysisResults.from_json(cohort)) == cohort


def test_the_results_read_are_objects(runs: dict[str, dict[str, Any]]) -> None:
    results = AnalysisResults.from_json(runs["plain-final"])
    assert all(isinstance(e, Effect) for e in results.effects)
    kinds = {"consort": ConsortArm, "attrition": AttritionCheck,
             "baseline_equivalence": BalanceCheck, "icc": IccEstimate,
             "subgroup_interactions": InteractionTest}
    for key, kind in kinds.items():
        assert all(isinstance(c, kind) for c in results.checks[key]), key
    assert isinstance(results.checks["sample_ratio"], SampleRatioCheck)
    assert results.usage is not None
    assert all(isinstance(a, ArmUsage) for a in results.usage["arms"])
    primary = results.primary_effect()
    assert primary is not None and primary.role == "primary" and primary.estimand == "ITT"
    assert primary.estimable and isinstance(primary.estimate, float)
    # Numbers that are null in the JSON are NaN again, and tuples are tuples.
    monitoring = AnalysisResults.from_json(runs["plain-monitoring"])
    assert all(math.isnan(e.estimate) and not e.estimable for e in monitoring.effects)
    assert all(isinstance(t.levels, tuple) for t in results.checks["subgroup_interactions"])


def test_warnings_are_codes_with_an_english_message(runs: dict[str, dict[str, Any]]) -> None:
    codes = {w["code"] for data in runs.values() for w in data["warnings"]}
    assert {"interim_descriptive", "attrition_high"} <= codes
    for data in runs.values():
        for w in data["warnings"]:
            assert set(w) == {"code", "params", "message"}
            assert w["message"] == render_warning(AnalysisWarning(w["code"], w["params"]), "en")


def test_the_one_catalogue_speaks_french_and_english() -> None:
    assert set(MESSAGES["fr"]) == set(MESSAGES["en"])
    assert set(SUMMARY_MESSAGES["fr"]) == set(SUMMARY_MESSAGES["en"])
    imputed = AnalysisWarning("units_imputed", {"count": 2})
    assert render_warning(imputed, "fr").startswith("2 unité(s) sans élève connu")
    assert render_warning(imputed, "en").startswith("2 unit(s) without any known pupil")


def test_a_confirmatory_interim_says_its_boundary(tmp_path: Path) -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    interim = "  - {analysis: interim, at: 2028-01-15}\n"
    protocol = parse_protocol(text.replace(
        interim, "  - {analysis: interim, at: 2028-01-15, confirmatory: true, information: 0.5}\n"
    ) + "interim: {spending: obrien-fleming}\n")
    plan = plan_from_protocol(protocol)
    look = sequential_look(protocol, "interim", date(2028, 1, 15))
    assert look is not None
    files = simulate_trial(tmp_path)
    units = read_units(files.units, plan)
    outcomes = read_outcomes(files.outcomes, units)
    data = to_json_dict(run_analysis(plan, units, outcomes, None, "interim", sequential=look))
    (first,) = [w for w in data["warnings"] if w["code"] == "interim_confirmatory"]
    assert first["params"]["look"] == 1
    assert "O'Brien-Fleming" in first["message"]
    assert to_json_dict(AnalysisResults.from_json(data)) == data


def _stored_before_the_codes(data: dict[str, Any]) -> dict[str, Any]:
    """The same results as an earlier version stored them: warnings in French sentences,
    attrition checks without the keys added with a default since."""
    old = json.loads(json.dumps(data))
    old["warnings"] = [render_warning(AnalysisWarning(w["code"], w["params"]), "fr")
                       for w in data["warnings"]]
    for check in old["checks"]["attrition"]:
        for key in ("assumption", "boundary", "rating", "boundary_row", "unverified"):
            del check[key]
    return old


def test_results_stored_before_the_codes_are_read(runs: dict[str, dict[str, Any]]) -> None:
    for name in ("attrition-final", "attrition-interim", "plain-final"):
        data = runs[name]
        old = AnalysisResults.from_json(_stored_before_the_codes(data))
        new = AnalysisResults.from_json(data)
        # The warnings the checks imply are derived again as codes (not the imputed units:
        # no check says how many there were).
        assert ([w.code for w in old.warnings]
                == [w.code for w in new.warnings if w.code != "units_imputed"]), name
        # Attrition checks get their rating under the cautious boundary, as it then was.
        for a, b in zip(old.checks["attrition"], new.checks["attrition"], strict=True):
            assert a.rating == a.cautious and a.assumption == "cautious"
            assert dataclasses.replace(a, boundary_row=b.boundary_row,
                                       unverified=b.unverified) == b
        # Read again, it is stable.
        again = to_json_dict(old)
        assert to_json_dict(AnalysisResults.from_json(again)) == again


def test_the_report_of_old_results_says_the_same(runs: dict[str, dict[str, Any]]) -> None:
    protocol = load_protocol(PROTOCOL)
    data = runs["attrition-interim"]
    for lang in ("fr", "en"):
        assert (render_report(_stored_before_the_codes(data), protocol=protocol, lang=lang)
                == render_report(data, protocol=protocol, lang=lang))
