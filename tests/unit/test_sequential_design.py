"""Confirmatory interim looks: the protocol keys, their checks, and what a run does with
them (the boundary in the results and the report, the conclusion at each look)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from analysis.inputs import plan_from_protocol, read_outcomes, read_units
from analysis.multiplicity import certainty
from analysis.report.document import build_view, render_report
from analysis.results import to_json_dict
from analysis.run import run_analysis
from analysis.sequential import sequential_boundary, sequential_look
from analysis.simulate import simulate_trial
from experiments.errors import ProtocolError
from experiments.protocol.language import parse_protocol

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")
INTERIM = "  - {analysis: interim, at: 2028-01-15}\n"
SEQUENTIAL = TEXT.replace(
    INTERIM, "  - {analysis: interim, at: 2028-01-15, confirmatory: true, information: 0.5}\n"
) + "interim: {spending: obrien-fleming}\n"


def test_a_confirmatory_look_is_declared_with_its_information_and_spending() -> None:
    protocol = parse_protocol(SEQUENTIAL)
    assert protocol.interim is not None and protocol.schedule[1].confirmatory
    interim = sequential_look(protocol, "interim", date(2028, 1, 15))
    final = sequential_look(protocol, "final")
    assert interim is not None and final is not None
    assert (interim.look, interim.looks, final.look) == (1, 2, 2)
    expected = sequential_boundary([0.5, 1.0], alpha=0.05)
    assert interim.boundary == expected
    # rpact asOF, informationRates c(.5, 1), alpha .05, sided 2: 2.96259, 1.96860
    assert final.nominal_alpha == pytest.approx(2 * 0.024497, abs=1e-5)
    assert sequential_look(protocol, "interim", date(2028, 2, 1)) is None  # not a look
    assert sequential_look(parse_protocol(TEXT), "final") is None  # fixed design


@pytest.mark.parametrize(("text", "message"), [
    (TEXT.replace(INTERIM, "  - {analysis: interim, at: 2028-01-15, confirmatory: true}\n"),
     "needs its planned information fraction"),
    (TEXT.replace(INTERIM, "  - {analysis: interim, at: 2028-01-15, confirmatory: true, "
                  "information: 0.5}\n"), "confirmatory interim looks need `interim:"),
    (TEXT.replace(INTERIM, "  - {analysis: interim, at: 2028-01-15, information: 0.5}\n"),
     "add `confirmatory: true`"),
    (TEXT + "interim: {spending: obrien-fleming}\n", "no schedule entry is `confirmatory"),
    (SEQUENTIAL.replace("{analysis: monitoring, every: week}",
                        "{analysis: monitoring, every: week, confirmatory: true}"),
     "only an interim analysis on a date"),
    (SEQUENTIAL.replace(
        "  - {analysis: final", "  - {analysis: interim, at: 2028-03-15, confirmatory: true, "
        "information: 0.4}\n  - {analysis: final"), "must grow with the looks' dates"),
])
def test_bad_declarations_are_refused_with_the_field(text: str, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_protocol(text)
    assert any(message in str(p) for p in caught.value.problems), caught.value.problems


def test_a_look_tests_against_its_boundary_and_the_report_shows_it(tmp_path: Path) -> None:
    protocol = parse_protocol(SEQUENTIAL)
    files = simulate_trial(tmp_path, n_units=40, pupils_per_unit=20, effect=0.3, seed=3)
    plan = plan_from_protocol(protocol)
    units = read_units(files.units, plan)
    outcomes = read_outcomes(files.outcomes, units)
    look = sequential_look(protocol, "interim", date(2028, 1, 15))
    results = to_json_dict(run_analysis(plan, units, outcomes, analysis="interim",
                                        sequential=look))
    design = results["design"]
    assert design["confirmatory"] is True
    assert design["sequential"]["critical_values"] == pytest.approx(
        [2.96258804272755, 1.96859564632177], abs=1e-6)  # rpact (see test_sequential)
    (primary,) = [e for e in results["effects"] if e["role"] == "primary"]
    c = certainty(primary, results)
    assert c.threshold == pytest.approx(design["sequential"]["nominal_alpha"][0])
    assert c.claim == ("positive" if primary["p_adjusted"] <= c.threshold
                       else "not established")
    # Between the look's threshold and alpha: not established at this look.
    edited = {**results, "effects": [{**e, "p_adjusted": 0.01, "p_value": 0.01}
                                     if e is primary else e for e in results["effects"]]}
    assert certainty(edited["effects"][0], edited).claim == "not established"
    view = build_view(edited, protocol=protocol)
    assert "frontière d'O'Brien-Fleming, regard 1 sur 2" in " ".join(view["summary"]["sure"])
    page = render_report(results, protocol=protocol)
    assert 'data-role="sequential-boundary"' in page and "regard 1 sur 2" in page
    # Without the declaration the same interim is descriptive.
    descriptive = to_json_dict(run_analysis(plan, units, outcomes, analysis="interim"))
    assert descriptive["design"]["confirmatory"] is False
    assert certainty(descriptive["effects"][0], descriptive).claim == "descriptive"
