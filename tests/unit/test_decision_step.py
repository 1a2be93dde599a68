"""The post-experiment step (issue 19, item 5): a protocol without ``decision:`` registers
but cannot run until one is added by amendment; closing needs the researcher's recorded
decision and the programme officer's acknowledgement (in the portal); the closing report
carries the evaluated rule, the decision, its reason, who and when, and the
acknowledgement, in French and English."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from experiments.access import AuditEntry, issue_token
from experiments.cli.app import app
from experiments.closing import (
    acknowledge_decision,
    closing_report_paths,
    latest_decision,
    record_decision,
)
from experiments.database import dispose_engines, registry_engine
from experiments.errors import RegistryError
from experiments.portal.app import create_portal
from experiments.protocol.language import parse_protocol
from experiments.registry import get_experiment, register_protocol, transition_experiment
from experiments.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.decision import DECISION_YAML, record_final_run, with_decision
from tests.support.portal import CSRF, NOW, PortalClient

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "protocols" / "fluence-cp-2027.yaml"
TEXT = EXAMPLE.read_text(encoding="utf-8")
EXPERIMENT = "fluence-cp-2027"


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"PREUVE_STATE_DIR": str(settings.state_dir)})
    return result.exit_code, result.output


def _audit(engine: Engine, action: str) -> list[AuditEntry]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(AuditEntry).where(AuditEntry.action == action)))


def test_the_core_example_has_no_decision_and_registers_but_cannot_run(
        make_settings: SettingsFactory, tmp_path: Path) -> None:
    assert "\ndecision:" not in TEXT  # the design document's core example stays as it is
    settings = make_settings()
    code, out = _cli(settings, "protocol", "validate", str(EXAMPLE))
    assert code == 0 and "decision: not declared" in out, out
    code, out = _cli(settings, "protocol", "register", str(EXAMPLE))
    assert code == 0, out
    assert _cli(settings, "protocol", "advance", EXPERIMENT, "enrolling")[0] == 0
    code, out = _cli(settings, "protocol", "advance", EXPERIMENT, "running")
    assert code == 2 and "Traceback" not in out
    assert "cannot go to running" in out and "no decision: section" in out
    assert 'preuve protocol amend PATH --reason "..."' in out
    engine = registry_engine(settings)
    assert get_experiment(engine, EXPERIMENT).state == "enrolling"

    amended = tmp_path / "fluence-cp-2027.yaml"
    amended.write_text(with_decision(TEXT), encoding="utf-8")
    code, out = _cli(settings, "protocol", "amend", str(amended), "--reason",
                     "Règle de décision ajoutée avant le début de l'intervention")
    assert code == 0 and "changed: decision" in out, out
    code, out = _cli(settings, "protocol", "advance", EXPERIMENT, "running")
    assert code == 0, out
    dispose_engines()


def _analysing(settings: Settings, tmp_path: Path) -> Engine:
    engine = registry_engine(settings)
    text = with_decision(TEXT)
    register_protocol(engine, parse_protocol(text), text)
    for state in ("enrolling", "running", "analysing"):
        transition_experiment(engine, EXPERIMENT, state)  # type: ignore[arg-type]
    return engine


def test_closing_needs_a_decision_then_its_acknowledgement(
        make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = make_settings()
    engine = _analysing(settings, tmp_path)
    results = record_final_run(engine, EXPERIMENT, tmp_path, effect=0.4, seed=11)

    code, out = _cli(settings, "protocol", "advance", EXPERIMENT, "closed")
    assert code == 2 and "Traceback" not in out
    assert "no post-experiment decision is recorded" in out
    assert f"preuve protocol decide {EXPERIMENT} --decision" in out

    for bad, why in ((("--decision", "continuer", "--reason", "Parce que c'est ainsi."),
                      "expecting one of généraliser, ajuster, arrêter, prolonger"),
                     (("--decision", "ajuster", "--reason", "court"), "states its reason")):
        code, out = _cli(settings, "protocol", "decide", EXPERIMENT, *bad)
        assert code == 2 and why in out and "Traceback" not in out, out
    code, out = _cli(settings, "protocol", "decide", EXPERIMENT, "--decision", "Généraliser",
                     "--reason", "Effet établi, usage suffisant : extension à l'académie.")
    assert code == 0 and "decision generaliser recorded" in out, out
    assert f"/experiences/{EXPERIMENT}/decision" in out

    code, out = _cli(settings, "protocol", "advance", EXPERIMENT, "closed")
    assert code == 2 and "is not acknowledged yet" in out and "portal" in out, out
    with pytest.raises(RegistryError, match="changed since the page was shown"):
        acknowledge_decision(engine, EXPERIMENT, "officer:*:test", decision_id=999)
    decision = latest_decision(engine, EXPERIMENT)
    assert decision is not None and decision.decision == "generaliser"
    acknowledge_decision(engine, EXPERIMENT, "officer:*:test", decision.id)
    with pytest.raises(RegistryError, match="already acknowledged"):
        acknowledge_decision(engine, EXPERIMENT, "officer:*:test")

    code, out = _cli(settings, "protocol", "advance", EXPERIMENT, "closed")
    assert code == 0 and "closing report (fr)" in out, out
    assert get_experiment(engine, EXPERIMENT).state == "closed"
    with pytest.raises(RegistryError, match="closed; a decision is recorded after"):
        record_decision(engine, EXPERIMENT, "arreter", "Trop tard pour changer d'avis.")

    # Audited, both.
    decided = _audit(engine, "experiment.decision")
    acknowledged = _audit(engine, "experiment.decision_acknowledgement")
    assert len(decided) == 1 and decided[0].subject == EXPERIMENT
    assert len(acknowledged) == 1 and acknowledged[0].actor == "officer:*:test"

    # The closing report, in French and English.
    paths = closing_report_paths(settings.state_dir, EXPERIMENT)
    fr = paths["fr"].read_text(encoding="utf-8")
    en = paths["en"].read_text(encoding="utf-8")
    assert "Rapport de clôture" in fr and "Closing report" in en
    assert "Décision : généraliser." in fr and "Decision: scale up (généraliser)." in en
    assert "Effet établi, usage suffisant : extension à l&#39;académie." in fr
    assert "Prise en compte par le chargé de programme (officer:*:test)" in fr
    assert "Acknowledged by the programme officer (officer:*:test)" in en
    assert "Règle de décision écrite avant les résultats :" in fr
    assert "Critères chiffrés de la règle" in fr and "The rule&#39;s criteria in numbers" in en
    # The rule evaluated as the final report evaluates it: g against min_effect_size.
    g = next(e["hedges_g"] for e in results["effects"]
             if e["role"] == "primary" and e["estimand"] == "ITT" and not e.get("subgroup"))
    answer = "oui" if g >= 0.10 else "non"
    assert re.search(rf"taille d&#39;effet d&#39;au moins 0,10 : {answer}", fr), fr
    assert "Analyse finale du 30 juin 2028" in fr
    # The portfolio (and the committee document) shows the decision taken, with its reason.
    from experiments.portfolio.entries import portfolio_entries

    entry = next(e for e in portfolio_entries(engine) if e.id == EXPERIMENT)
    assert entry.closing_note == ("généraliser — Effet établi, usage suffisant : extension à "
                                  "l'académie.")
    dispose_engines()


def test_decisions_only_after_the_final_analysis(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    engine = registry_engine(settings)
    text = with_decision(TEXT)
    register_protocol(engine, parse_protocol(text), text)
    with pytest.raises(RegistryError, match="registered; a decision is recorded after the "
                                            "final analysis"):
        record_decision(engine, EXPERIMENT, "prolonger", "Une année de plus est nécessaire.")
    assert DECISION_YAML in registered_text(engine)
    dispose_engines()


def registered_text(engine: Engine) -> str:
    from experiments.registry import registered_protocol

    return registered_protocol(engine, EXPERIMENT).source_yaml


# --- the portal: the officer acknowledges --------------------------------------------


@pytest.fixture
def portal_world(make_settings: SettingsFactory, tmp_path: Path
                 ) -> Iterator[tuple[Settings, Engine, PortalClient, dict[str, str]]]:
    settings = make_settings()
    engine = _analysing(settings, tmp_path)
    record_final_run(engine, EXPERIMENT, tmp_path, effect=0.4, seed=12)
    tokens = {"officer": issue_token(engine, "officer", "*", "test"),
              "researcher": issue_token(engine, "researcher", EXPERIMENT, "test"),
              "other_officer": issue_token(engine, "officer", "autre-experience", "test"),
              "academie": issue_token(engine, "academie", "versailles", "test")}
    client = PortalClient(create_portal(settings, registry=engine, clock=lambda: NOW))
    try:
        yield settings, engine, client, tokens
    finally:
        client.close()
        dispose_engines()


def _post(client: PortalClient, session: dict[str, str], body: dict[str, str]) -> int:
    answer = client.request("POST", f"/experiences/{EXPERIMENT}/decision", session,
                            content=urlencode(body).encode(),
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    return answer.status_code


def test_the_officer_acknowledges_in_the_portal(
        portal_world: tuple[Settings, Engine, PortalClient, dict[str, str]]) -> None:
    settings, engine, client, tokens = portal_world
    officer = client.sign_in(tokens["officer"])
    researcher = client.sign_in(tokens["researcher"])
    page = client.request("GET", f"/experiences/{EXPERIMENT}/decision", officer)
    assert page.status_code == 200
    assert "Aucune décision enregistrée" in page.text
    assert "Règle de décision écrite avant les résultats" not in page.text  # the rule alone
    assert "Critères chiffrés de la règle" in page.text  # evaluated on the final run
    record = record_decision(engine, EXPERIMENT, "ajuster",
                             "Effet modeste : ajuster la formation des enseignants.",
                             "researcher:*:test")

    page = client.request("GET", f"/experiences/{EXPERIMENT}/decision", officer)
    assert "ajuster" in page.text and "Je prends acte de cette décision" in page.text
    csrf = CSRF.search(page.text)
    assert csrf is not None
    # The researcher sees the decision but has no button and may not acknowledge.
    seen = client.request("GET", f"/experiences/{EXPERIMENT}/decision?lang=en", researcher)
    assert seen.status_code == 200 and "adjust (ajuster)" in seen.text
    assert "I acknowledge" not in seen.text
    assert _post(client, researcher, {"csrf": csrf.group(1), "decision_id": str(record.id)}) == 403
    # Out of scope: 404, like a missing experiment; académies: 403; nobody: sign in.
    other = client.sign_in(tokens["other_officer"])
    assert client.request("GET", f"/experiences/{EXPERIMENT}/decision", other).status_code == 404
    assert _post(client, other, {"csrf": "x", "decision_id": str(record.id)}) == 404
    academie = client.sign_in(tokens["academie"])
    assert client.request("GET", f"/experiences/{EXPERIMENT}/decision",
                          academie).status_code == 403
    assert _post(client, {}, {"csrf": "x"}) == 302
    # Without the session's CSRF token: refused, nothing recorded.
    assert _post(client, officer, {"csrf": "forged", "decision_id": str(record.id)}) == 403
    assert latest_decision(engine, EXPERIMENT).acknowledged_at is None  # type: ignore[union-attr]

    assert _post(client, officer, {"csrf": csrf.group(1), "decision_id": str(record.id)}) == 303
    acknowledged = latest_decision(engine, EXPERIMENT)
    assert acknowledged is not None and acknowledged.acknowledged_by is not None
    assert acknowledged.acknowledged_by.startswith("officer:*:")
    assert len(_audit(engine, "experiment.decision_acknowledgement")) == 1
    again = client.request("POST", f"/experiences/{EXPERIMENT}/decision", officer,
                           content=urlencode({"csrf": csrf.group(1),
                                              "decision_id": str(record.id)}).encode(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert again.status_code == 409 and "already acknowledged" in again.text

    code, out = _cli(settings, "protocol", "advance", EXPERIMENT, "closed")
    assert code == 0, out
    closing = client.request("GET", f"/experiences/{EXPERIMENT}/cloture", officer)
    assert closing.status_code == 200 and "Décision : ajuster." in closing.text
    english = client.request("GET", f"/experiences/{EXPERIMENT}/cloture?lang=en", researcher)
    assert "Decision: adjust (ajuster)." in english.text


def test_the_rule_is_added_by_amendment_and_frozen_once_started(
        make_settings: SettingsFactory) -> None:
    from datetime import date

    from experiments.registry import amend_protocol

    settings = make_settings()
    engine = registry_engine(settings)
    register_protocol(engine, parse_protocol(TEXT), TEXT)
    text = with_decision(TEXT)
    with pytest.raises(RegistryError, match="locked since registration.*decision"):
        register_protocol(engine, parse_protocol(text), text)
    amend_protocol(engine, parse_protocol(text), text, "Règle de décision ajoutée à temps",
                   today=date(2027, 9, 1))
    transition_experiment(engine, EXPERIMENT, "enrolling")
    transition_experiment(engine, EXPERIMENT, "running")
    changed = text.replace("min_effect_size: 0.10", "min_effect_size: 0.05")
    with pytest.raises(RegistryError, match=r"cannot change decision \(frozen since the "
                                            "intervention started"):
        amend_protocol(engine, parse_protocol(changed), changed, "Seuil abaissé après coup")
    dispose_engines()
