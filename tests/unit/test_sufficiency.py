"""Data-sufficiency alerts (issue 21): a week before an interim, missing endline scores in
one arm are found, recorded once, audited, shown by `preuve protocol status` and on the
researcher's page of the portal."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from experiments.access import AuditEntry, issue_token
from experiments.cli.app import app
from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.design import enrollment_design
from experiments.enrollment.files import read_classes
from experiments.enrollment.transaction import enroll_classes
from experiments.portal.app import create_portal
from experiments.protocol.language import parse_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.runs.scheduler import upcoming_runs
from experiments.runs.sufficiency import (
    SufficiencyCheck,
    check_data,
    check_upcoming,
    recorded_checks,
    sufficiency_table,
)
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent
from tests.support.portal import PortalClient
from tests.support.uai import uai

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "fluence-cp-2027"
# The core example, with its interim after the follow-up tests (so that endline scores
# can exist by then) and a decision rule that needs an effect of 0.2 SD.
TEXT = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8").replace(
    "{analysis: interim, at: 2028-01-15}", "{analysis: interim, at: 2028-06-22}")
INTERIM_DUE = datetime(2028, 6, 22, 4, 0, tzinfo=UTC)  # 06:00 Paris
A_WEEK_BEFORE = datetime(2028, 6, 15, 8, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(simulated_now=A_WEEK_BEFORE)


def _trial(settings: Settings, *, endline_arms: set[str], per_arm: int = 4
           ) -> tuple[Engine, dict[str, str]]:
    """Eight classes in four schools, 12 pupils each with a baseline score; endline scores
    only in the first ``per_arm`` classes of each arm of ``endline_arms``."""
    engine = registry_engine(settings)
    protocol = parse_protocol(TEXT)
    register_protocol(engine, protocol, TEXT)
    transition_experiment(engine, EXPERIMENT, "enrolling")
    design, _ = enrollment_design(engine, EXPERIMENT)
    rows = "class_id,school_uai,level,pupils,academie,education_priority\n" + "".join(
        f"c{i},{uai(f'078000{i // 2}')},CP,12,versailles,REP\n" for i in range(8))
    enrolled = enroll_classes(engine, design, read_classes(rows, design, today=date(2027, 9, 1)),
                              actor="test").enrolled
    arms = {c.class_id: c.arm for c in enrolled}
    events = []
    tested = {arm: sorted(c for c, a in arms.items() if a == arm)[:per_arm]
              for arm in endline_arms}
    for class_id, arm in arms.items():
        for p in range(12):
            learner = f"{class_id}-p{p}"
            waves = [("2027-09-10T09:00:00+02:00", 40.0 + p)]
            if class_id in tested.get(arm, ()):
                waves.append(("2028-06-01T09:00:00+02:00", 50.0 + p))
            events += [StoredEvent(str(uuid.uuid4()), at(when), "lectio", learner, class_id,
                                   "0780000B", arm, "assessment_scored", "fluence", None, score,
                                   authority="import:admin:*:test")
                       for when, score in waves]
    ExperimentStore(settings, EXPERIMENT).write_events(events, datetime.now(UTC))
    return engine, arms


def test_a_week_before_an_interim_an_arm_without_endline_scores_is_an_alert(
        settings: Settings) -> None:
    engine, arms = _trial(settings, endline_arms={"lectio"})
    # Nothing is checked before the lead time, nor for monitoring runs.
    early = datetime(2028, 6, 1, 8, 0, tzinfo=UTC)
    assert check_upcoming(settings, engine, upcoming_runs(engine, early, settings), early,
                          "test") == []

    runs = upcoming_runs(engine, A_WEEK_BEFORE, settings)
    assert {(r.analysis, r.due_at) for r in runs if r.analysis != "monitoring"} == {
        ("interim", INTERIM_DUE)}
    [report] = check_upcoming(settings, engine, runs, A_WEEK_BEFORE, "test")
    assert (report.analysis, report.due_at, report.status) == ("interim", INTERIM_DUE,
                                                               "blocking")
    checks = {c.code: c for c in report.checks}
    endline = checks["endline_by_arm"]
    assert endline.status == "blocking"
    assert endline.figures["arms"] == {"lectio": {"units": 4, "units_with_endline": 4},
                                       "usual": {"units": 4, "units_with_endline": 0}}
    assert endline.figures["short_arms"] == ["usual"]
    assert "usual" in endline.message("en") and "cannot be estimated" in endline.message("en")
    assert "ne pourra pas être estimé" in endline.message("fr")
    assert checks["mdes"].status == "warning" and checks["mdes"].figures["mdes_now"] is None
    assert checks["baseline_coverage"].figures["share"] == 1.0

    # Recorded once per run: a second look (or a second scheduler) adds nothing.
    assert check_upcoming(settings, engine, runs, A_WEEK_BEFORE, "test") == []
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(
            sufficiency_table)).scalar_one() == 1
    with sa.orm.Session(engine) as session:
        [entry] = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "sufficiency.alert")).all()
    assert (entry.subject, entry.detail["status"]) == (EXPERIMENT, "blocking")
    # No pupil used the resource in this trial: said too.
    assert entry.detail["checks"] == ["endline_by_arm", "usage_coverage", "mdes"]
    assert checks["usage_coverage"].figures["active_share"] == 0.0
    [stored] = recorded_checks(engine, EXPERIMENT)
    assert stored.status == "blocking" and stored.checks == report.checks


def test_protocol_status_prints_the_recorded_and_the_live_checks(settings: Settings) -> None:
    engine, _ = _trial(settings, endline_arms={"lectio"})
    check_upcoming(settings, engine, upcoming_runs(engine, A_WEEK_BEFORE, settings),
                   A_WEEK_BEFORE, "test")
    env = {"PREUVE_STATE_DIR": str(settings.state_dir),
           "PREUVE_PSEUDONYM_KEY": settings.pseudonym_key.get_secret_value(),
           "PREUVE_SIMULATED_NOW": A_WEEK_BEFORE.isoformat()}
    result = CliRunner().invoke(app, ["protocol", "status", EXPERIMENT], env=env)
    assert result.exit_code == 0, result.output
    assert "state: enrolling" in result.output
    assert f"interim due {INTERIM_DUE.isoformat()}" in result.output
    assert "data checks recorded" in result.output and ": BLOCKING" in result.output
    assert "[blocking] Endline scores of the primary outcome" in result.output
    assert "data checks now" in result.output
    as_json = CliRunner().invoke(app, ["protocol", "status", EXPERIMENT, "--json"], env=env)
    payload = json.loads(as_json.output)
    assert payload["checks_now"]["status"] == "blocking"
    assert payload["recorded_checks"][0]["checks"][0]["code"] == "endline_by_arm"
    dispose_engines()


def test_the_researcher_sees_the_alert_in_the_portal_and_the_officer_does_not(
        settings: Settings) -> None:
    engine, _ = _trial(settings, endline_arms={"lectio"})
    check_upcoming(settings, engine, upcoming_runs(engine, A_WEEK_BEFORE, settings),
                   A_WEEK_BEFORE, "test")
    client = PortalClient(create_portal(settings, registry=engine,
                                        clock=lambda: A_WEEK_BEFORE))
    try:
        pages = {role: client.request("GET", f"/experiences/{EXPERIMENT}",
                                      client.sign_in(issue_token(engine, role, "*"))).text
                 for role in ("researcher", "officer")}
        after = PortalClient(create_portal(settings, registry=engine,
                                           clock=lambda: INTERIM_DUE))
        try:  # once the interim has run, its check is history, not a notice
            late = after.request("GET", f"/experiences/{EXPERIMENT}",
                                 after.sign_in(issue_token(engine, "researcher", "*"))).text
        finally:
            after.close()
    finally:
        client.close()
    assert "Les données suffiront-elles ?" in pages["researcher"]
    assert 'data-check="endline_by_arm" data-status="blocking"' in pages["researcher"]
    assert "Les données suffiront-elles ?" not in pages["officer"]
    assert "Les données suffiront-elles ?" not in late


def test_complete_data_raises_no_alert(settings: Settings) -> None:
    engine, _ = _trial(settings, endline_arms={"lectio", "usual"})
    report = check_data(settings, engine, parse_protocol(TEXT), "interim", A_WEEK_BEFORE,
                        INTERIM_DUE)
    statuses = {c.code: c.status for c in report.checks}
    assert statuses == {"endline_by_arm": "ok", "baseline_coverage": "ok", "mdes": "ok",
                        "usage_coverage": "warning"}  # nobody used the resource
    mdes = next(c for c in report.checks if c.code == "mdes")
    # 12 pupils a class tested where the design assumed 22: a little weaker, within 10 %.
    assert mdes.figures["mdes_planned"] < mdes.figures["mdes_now"] < 1.1 * mdes.figures[
        "mdes_planned"]


def test_half_the_classes_tested_weakens_the_design(settings: Settings) -> None:
    engine, _ = _trial(settings, endline_arms={"lectio", "usual"}, per_arm=2)
    report = check_data(settings, engine, parse_protocol(TEXT), "interim", A_WEEK_BEFORE,
                        INTERIM_DUE)
    checks = {c.code: c for c in report.checks}
    assert checks["endline_by_arm"].status == "ok"  # 2 of 4: half, not fewer
    assert checks["mdes"].status == "warning"
    assert checks["mdes"].figures["mdes_now"] > 1.1 * checks["mdes"].figures["mdes_planned"]
    assert "weaker design than planned" in checks["mdes"].message("en")


def test_no_class_enrolled_is_blocking(settings: Settings) -> None:
    engine = registry_engine(settings)
    protocol = parse_protocol(TEXT)
    register_protocol(engine, protocol, TEXT)
    report = check_data(settings, engine, protocol, "final", A_WEEK_BEFORE)
    assert report.checks == (SufficiencyCheck("enrolled", "blocking"),)
    assert report.status == "blocking"
