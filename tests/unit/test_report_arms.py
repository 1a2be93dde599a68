"""A three-arm trial's report: every treated arm has its own sentence, named by its own
label, and every conclusion (summary, padlock explanation, portal verdict,
``/api/experiences``) rests on the protocol's test: the Holm-adjusted p against alpha.

The trial is :func:`tests.support.three_arms.simulate_three_arm_trial` (seed 5): arm
vague2 has p = 0.037 (its unadjusted interval excludes 0) and Holm-adjusted p = 0.074,
arm vague1 p = 0.21: no arm's effect is established.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analysis.inputs import plan_from_protocol, read_outcomes, read_units, read_usage
from analysis.multiplicity import certainty
from analysis.report.document import build_view, render_report, report_summary
from analysis.results import AnalysisResults, Effect, to_json_dict
from analysis.run import run_analysis
from experiments.portal.app import _verdict_effects, describe_verdict
from experiments.portal.views import Verdict
from experiments.protocol.language import load_protocol
from tests.support.three_arms import THREE_ARM_PROTOCOL, simulate_three_arm_trial

POSITIVE_CLAIMS = ("avec une confiance de", "l'effet est positif", "l'effet est négatif")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    files = simulate_three_arm_trial(tmp_path_factory.mktemp("three"))
    plan = plan_from_protocol(load_protocol(THREE_ARM_PROTOCOL))
    units = read_units(files.units, plan)
    outcomes = read_outcomes(files.outcomes, units)
    assert files.usage is not None
    return to_json_dict(run_analysis(plan, units, outcomes,
                                     read_usage(files.usage, outcomes, units)))


def _primary(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["contrast"].split(" vs ")[0]: e for e in results["effects"]
            if e["role"] == "primary" and e["estimand"] == "ITT" and not e.get("subgroup")}


def test_the_trial_is_the_case_of_the_issue(results: dict[str, Any]) -> None:
    primary = _primary(results)
    assert set(primary) == {"vague1", "vague2"}
    two = primary["vague2"]
    assert two["p_value"] < 0.05 < two["p_adjusted"] and two["ci_low"] > 0
    assert all(e["p_adjusted"] > 0.05 for e in primary.values())


def test_each_arm_is_named_in_its_own_sentence(results: dict[str, Any]) -> None:
    protocol = load_protocol(THREE_ARM_PROTOCOL)
    summary = report_summary(results, protocol=protocol)
    sentences = summary["sentences"]
    assert len(sentences) == 2
    primary = _primary(results)
    for arm, sentence in zip(("vague1", "vague2"), sentences, strict=True):
        description = next(a.description for a in protocol.arms if a.name == arm)
        assert f"« {arm} »" in sentence and str(description) in sentence, sentence
        shown = f"{round(abs(primary[arm]['estimate']), 1):.1f}".replace(".", ",")
        assert f"progressé de {shown} point" in sentence, sentence
    page = render_report(results, protocol=protocol)
    assert page.count('data-role="summary-sentence"') == 2


def test_no_certainty_is_claimed_when_no_adjusted_test_rejects(results: dict[str, Any]
                                                               ) -> None:
    protocol = load_protocol(THREE_ARM_PROTOCOL)
    summary = report_summary(results, protocol=protocol)
    text = " ".join(summary["sure"] + summary["rating_steps"])
    for claim in POSITIVE_CLAIMS:
        assert claim not in text, text
    assert "intervalle non ajusté pour les comparaisons multiples" in text
    assert "n'est pas établi" in text  # vague2: interval excludes 0, Holm does not reject
    assert "méthode de Holm sur 2 comparaisons" in text
    assert "n'établit l'effet d'aucun groupe" in text
    assert [a["claim"] for a in summary["arms"]] == ["not established", "not established"]
    view = build_view(results, protocol=protocol)
    assert view["summary"]["sure"] == summary["sure"]


def test_a_claim_follows_the_adjusted_test_not_the_interval(results: dict[str, Any]) -> None:
    """Same results with vague2's adjusted p under alpha: now (and only now) its effect is
    established; vague1 still is not."""
    edited = {**results, "effects": [
        {**e, "p_adjusted": 0.01} if e["role"] == "primary" and not e.get("subgroup")
        and e["contrast"].startswith("vague2") else e for e in results["effects"]]}
    summary = report_summary(edited, protocol=load_protocol(THREE_ARM_PROTOCOL))
    assert [a["claim"] for a in summary["arms"]] == ["not established", "positive"]
    (line,) = [s for s in summary["sure"] if "l'effet est positif" in s]
    assert line.startswith("Comprendo (groupe « vague2 »") and "0,010" in line


def test_the_portfolio_verdict_and_the_api_say_the_same(results: dict[str, Any]) -> None:
    protocol = load_protocol(THREE_ARM_PROTOCOL)
    primary = _primary(results)
    verdict = Verdict("effect", analysis="final", effect=Effect.from_json(primary["vague1"]),
                      padlocks=0, resource="Comprendo", outcome="compréhension", unit="school",
                      results=AnalysisResults.from_json(results), protocol=protocol)
    text = describe_verdict("fr", verdict)
    assert "« vague1 »" in text and "« vague2 »" in text, text
    for claim in POSITIVE_CLAIMS:
        assert claim not in text, text
    assert "n'est pas établi" in text
    effects = _verdict_effects(verdict)
    assert [(e["contrast"], e["conclusion"]) for e in effects] == [
        ("vague1 vs attente", "not established"), ("vague2 vs attente", "not established")]
    assert all(e["p_adjusted"] == certainty(primary[e["contrast"].split(" vs ")[0]],
                                            results).p for e in effects)


def test_a_descriptive_interim_concludes_nothing(results: dict[str, Any]) -> None:
    interim = {**results, "analysis": "interim",
               "design": {**results["design"], "confirmatory": False}}
    summary = report_summary(interim, protocol=load_protocol(THREE_ARM_PROTOCOL))
    assert {a["claim"] for a in summary["arms"]} == {"descriptive"}
    assert all("aucune conclusion" in a["sure"][-1] for a in summary["arms"])


def test_the_repository_protocol_is_three_arm() -> None:
    assert len(load_protocol(THREE_ARM_PROTOCOL).arms) == 3
    assert Path(THREE_ARM_PROTOCOL).is_file()


def test_the_report_lint_checks_every_arm(results: dict[str, Any]) -> None:
    from analysis.report.checks import check_report

    protocol = load_protocol(THREE_ARM_PROTOCOL)
    page = render_report(results, protocol=protocol)
    assert check_report(page, results, "fr") == []
    primary = _primary(results)
    wrong = {**results, "effects": [{**e, "estimate": e["estimate"] + 1.0}
                                    if e is primary["vague2"] else e
                                    for e in results["effects"]]}
    assert any("summary says" in p for p in check_report(page, wrong, "fr"))
