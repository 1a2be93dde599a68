"""Numbers of the report that must agree with the protocol: months of progress only for
attainment measures, the decision rule evaluated per arm, run titles that say the
schedule's real frequency, report numbers that follow the due dates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analysis.inputs import plan_from_protocol, read_outcomes, read_units, read_usage
from analysis.report.document import build_view, report_summary
from analysis.results import to_json_dict
from analysis.run import run_analysis
from analysis.simulate import simulate_trial
from experiments.errors import ProtocolError
from experiments.portal.views import run_views
from experiments.protocol.language import parse_protocol
from experiments.runs.records import RunRecord

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")
CALCUL = (ROOT / "protocols" / "calcul-6e-rep-2027.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return simulate_trial(tmp_path_factory.mktemp("trial"), n_units=40, pupils_per_unit=20,
                          effect=0.35, seed=2)


def _results(text: str, files: Any, analysis: str = "final") -> dict[str, Any]:
    plan = plan_from_protocol(parse_protocol(text))
    units = read_units(files.units, plan)
    outcomes = read_outcomes(files.outcomes, units)
    usage = read_usage(files.usage, outcomes, units) if files.usage else None
    return to_json_dict(run_analysis(plan, units, outcomes, usage, analysis))


def test_months_of_progress_only_for_attainment(files: Any) -> None:
    attainment = _results(TEXT, files)
    assert attainment["effects"][0]["months_progress"] is not None
    attitude_text = TEXT.replace("    baseline: fluence            # pre-test measure",
                                 "    kind: attitude\n    baseline: fluence            # "
                                 "pre-test measure")
    assert parse_protocol(attitude_text).outcomes[0].kind == "attitude"
    attitude = _results(attitude_text, files)
    assert attitude["effects"][0]["estimate"] == attainment["effects"][0]["estimate"]
    assert all(e["months_progress"] is None for e in attitude["effects"])
    summary = report_summary(attitude, protocol=parse_protocol(attitude_text))
    assert "mois de progrès" not in summary["sentence"]
    assert "mois de progrès" in report_summary(attainment,
                                               protocol=parse_protocol(TEXT))["sentence"]


def test_the_decision_rule_is_evaluated(files: Any) -> None:
    # The calcul protocol's rule: g >= 0.10 and 60 % of pupils above the usage threshold.
    protocol = parse_protocol(CALCUL)
    assert protocol.decision is not None and protocol.decision.min_effect_size is not None
    data = {"analysis": "final", "design": {"alpha": 0.05, "multiple_comparisons": "holm",
                                            "arms": ["calculo", "usual"], "control": "usual",
                                            "confirmatory": True, "unit": "class"},
            "effects": [{"outcome": protocol.primary_outcome.id, "contrast": "calculo vs usual",
                         "estimand": "ITT", "role": "primary", "estimate": 3.0, "ci_low": 1.0,
                         "ci_high": 5.0, "p_value": 0.004, "p_adjusted": 0.004,
                         "hedges_g": 0.27, "months_progress": 3}],
            "usage": {"arms": [{"arm": "calculo", "share_compliant": 0.45}]}}
    cost = " ".join(report_summary(data, protocol=protocol)["cost"])
    assert "effet positif établi par le test du protocole : oui" in cost
    assert "taille d'effet d'au moins 0,10 : oui (0,27)" in cost
    assert "d'au moins 60\u202f% : non (45\u202f%)" in cost
    assert "critères non remplis" in cost
    data["usage"]["arms"][0]["share_compliant"] = 0.7
    assert "critères remplis" in " ".join(report_summary(data, protocol=protocol)["cost"])


@pytest.mark.parametrize(("every", "title"), [("week", "suivi hebdomadaire"),
                                               ("month", "suivi mensuel")])
def test_a_monitoring_run_is_titled_by_its_real_frequency(files: Any, every: str,
                                                          title: str) -> None:
    text = TEXT.replace("{analysis: monitoring, every: week}",
                        f"{{analysis: monitoring, every: {every}}}")
    view = build_view(_results(text, files, "monitoring"), protocol=parse_protocol(text))
    assert view["analysis"] == title


def _record(run_id: str, analysis: str, due: datetime, sequence: int) -> RunRecord:
    return RunRecord(run_id, f"x/{analysis}/{due.isoformat()}", "x", analysis, due, sequence,
                     "done", None, 1, "0" * 64, {}, {}, None, None, None, None, None, due,
                     due + timedelta(hours=1), "w")


def test_report_numbers_follow_the_due_dates() -> None:
    """Two workers recorded December's run before November's: the portal still numbers
    November's report 1 and December's 2."""
    november = datetime(2027, 11, 1, 5, tzinfo=UTC)
    december = datetime(2027, 12, 1, 5, tzinfo=UTC)
    views = run_views([_record("b", "monitoring", december, 1),
                       _record("a", "monitoring", november, 2),
                       _record("f", "final", december, 1)])
    assert [(v.run_id, v.sequence) for v in views] == [("f", 1), ("b", 2), ("a", 1)]


def test_costs_are_per_arm() -> None:
    """A three-arm budget with an item for one arm: each arm's cost per pupil and its
    cost per month of progress use its own cost and its own months (never the whole
    budget over the first arm's months)."""
    text = (ROOT / "protocols" / "lecture-ce1-vagues-2027.yaml").read_text(encoding="utf-8")
    text = text.replace('    - {label: "Formation", amount: 9000, funder: "Académies"}\n',
                        '    - {label: "Formation", amount: 9000, funder: "Académies"}\n'
                        '    - {label: "Tutorat de janvier", amount: 7200, funder: '
                        '"Académies", arm: vague2}\n')
    # the funder commits what it now pays (a funder covers its budget items)
    text = text.replace('  - {name: "Académies", amount: 9000}',
                        '  - {name: "Académies", amount: 16200}')
    protocol = parse_protocol(text)
    effects = [{"outcome": "comprehension", "contrast": f"{arm} vs attente",
                "estimand": "ITT", "role": "primary", "estimate": 3.0, "ci_low": 1.0,
                "ci_high": 5.0, "p_value": 0.004, "p_adjusted": 0.008, "hedges_g": 0.3,
                "months_progress": months} for arm, months in (("vague1", 3), ("vague2", 4))]
    data = {"analysis": "final", "effects": effects,
            "design": {"alpha": 0.05, "multiple_comparisons": "holm", "unit": "school",
                       "arms": ["vague1", "vague2", "attente"], "control": "attente",
                       "confirmatory": True}}
    cost = report_summary(data, protocol=protocol)["cost"]
    # Shared 63 000 € over 3 600 pupils, half each (allocation 1:1): 17,5 € per pupil;
    # vague2 adds 7 200 € over its 1 800 pupils: 21,5 €.
    assert "Coût par élève bénéficiaire : 18 € (groupe « vague1 »)." in cost  # 17,5 rounded
    assert "Coût par élève bénéficiaire : 22 € (groupe « vague2 »)." in cost  # 21,5
    assert "Coût par mois de progrès gagné par élève : 6 € (groupe « vague1 »)." in cost
    assert "Coût par mois de progrès gagné par élève : 5 € (groupe « vague2 »)." in cost
    bad = text.replace("arm: vague2}", "arm: attente}")
    with pytest.raises(ProtocolError, match="not a treated arm"):
        parse_protocol(bad)
