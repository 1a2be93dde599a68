"""« Écarts au protocole » (issue 14, item 3) and the developer-made measure (item 1) in
the impact report, from the registry to the HTML of a recorded run."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from analysis.report.context import Amendment, ReportContext
from analysis.report.deviations import deviation_lines
from analysis.report.rating import rate_evidence
from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.design import enrollment_design
from experiments.enrollment.files import read_classes
from experiments.enrollment.transaction import enroll_classes
from experiments.protocol.language import parse_protocol
from experiments.registry import amend_protocol, register_protocol, transition_experiment
from experiments.runs.records import perform_run
from experiments.runs.scheduler import AnalysisRequest, ScheduledRun, due_time
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent
from tests.support.decision import with_decision
from tests.support.uai import uai

ROOT = Path(__file__).resolve().parents[2]
# With a decision rule, so that it may run (issue 19).
TEXT = with_decision((ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8"))
EXPERIMENT = "fluence-cp-2027"
DEVELOPER_TEXT = TEXT.replace("    primary: true\n",
                              "    primary: true\n    source: {resource: lectio}\n", 1)


def _section(page: str, title: str) -> str:
    """The visible text from the heading ``title`` on (3000 characters, spaces folded)."""
    text = html.unescape(re.sub(r"<[^>]+>", "\n", page))
    start = text.index(title)
    return re.sub(r"\s+", " ", text[start:start + 3000])


def _final_report(settings: Settings, text: str, amend: bool) -> tuple[str, dict[str, object]]:
    """Register, enroll 4 classes, store trusted scores (and the resource's own, for a
    developer-made measure), amend (or not), and record the final run; its HTML and JSON."""
    import json

    engine = registry_engine(settings)
    protocol = parse_protocol(text)
    register_protocol(engine, protocol, text)
    transition_experiment(engine, EXPERIMENT, "enrolling")
    design, _ = enrollment_design(engine, EXPERIMENT)
    rows = "class_id,school_uai,level,pupils,academie,education_priority\n" + "".join(
        f"c{i},{uai(f'078000{i // 2}')},CP,20,versailles,REP\n" for i in range(8))
    enrolled = enroll_classes(engine, design, read_classes(rows, design, today=date(2027, 9, 1)),
                              actor="test").enrolled
    if amend:
        amended = text.replace("subgroups: [education_priority]", "subgroups: []")
        amend_protocol(engine, parse_protocol(amended), amended,
                       reason="Sous-groupes retirés : trop peu de classes REP+",
                       today=date(2027, 9, 1))
    transition_experiment(engine, EXPERIMENT, "running")
    source = "edtech:lectio:0123456789ab" if "source:" in text else "import:admin:*:test"
    events = []
    for c in enrolled:
        for k in range(12):
            for when, score in ((datetime(2027, 9, 10, 9, tzinfo=UTC), 40.0 + k),
                                (datetime(2028, 6, 1, 9, tzinfo=UTC),
                                 50.0 + k + (3 if c.arm == "lectio" else 0) + (k % 3))):
                events.append(StoredEvent(str(uuid.uuid4()), when, "lectio", f"{c.class_id}-{k}",
                                          c.class_id, c.school_uai, c.arm, "assessment_scored",
                                          "fluence", None, score, authority=source))
    ExperimentStore(settings, EXPERIMENT).write_events(events, datetime.now(UTC))
    version = 2 if amend else 1
    current = parse_protocol(text if not amend else text.replace(
        "subgroups: [education_priority]", "subgroups: []"))
    run = ScheduledRun(EXPERIMENT, "final", due_time(date(2028, 6, 30)), version,
                       current.sha256, "at: 2028-06-30")
    record = perform_run(settings, AnalysisRequest.of(run), engine)
    assert record.status == "done", record.reason
    assert record.html_path is not None and record.json_path is not None
    page = Path(record.html_path).read_text(encoding="utf-8")
    results = json.loads(Path(record.json_path).read_text(encoding="utf-8"))
    dispose_engines()
    return page, results


def test_an_amendment_is_listed_in_every_later_report(make_settings: Callable[..., Settings]
                                                      ) -> None:
    page, _ = _final_report(make_settings(), TEXT, amend=True)
    deviations = _section(page, "Écarts au protocole")
    today = datetime.now(UTC).date().isoformat()  # the amendment is recorded now
    assert (f"Avenant v2 du {today} : Sous-groupes retirés : trop peu de classes REP+ "
            "(champs modifiés : analysis.subgroups)") in deviations, deviations
    assert "Aucun écart" not in page


def test_no_amendment_says_no_deviation(make_settings: Callable[..., Settings]) -> None:
    page, results = _final_report(make_settings(), TEXT, amend=False)
    assert "Aucun écart au protocole signalé." in _section(page, "Écarts au protocole")
    assert "Menace pour la validité" not in page
    assert results["design"]["developer_outcomes"] == []  # type: ignore[index]


def test_a_developer_made_primary_outcome_is_flagged_and_costs_a_padlock(
        make_settings: Callable[..., Settings]) -> None:
    """The protocol declares the resource as the source of the primary outcome: its own
    scores are outcomes, and the report says it is a threat to validity and deducts."""
    page, results = _final_report(make_settings(), DEVELOPER_TEXT, amend=False)
    assert results["design"]["developer_outcomes"] == ["fluence"]  # type: ignore[index]
    primary = next(e for e in results["effects"]  # type: ignore[attr-defined]
                   if e["role"] == "primary" and e["estimand"] == "ITT")
    assert primary["estimate"] is not None  # the resource's scores were used
    deviations = _section(page, "Écarts au protocole")
    assert "Menace pour la validité : la mesure « fluence » provient de la ressource" \
        in deviations
    assert "Aucun écart" not in page
    rating = rate_evidence(results)
    without = rate_evidence({**results, "design": {**results["design"],  # type: ignore[dict-item]
                                                   "developer_outcomes": []}})
    assert [s.key for s in rating.steps][-1] == "minus_developer_measure"
    assert rating.padlocks == max(0, without.padlocks - 1)
    assert "règle propre à Preuve" in html.unescape(page)


def test_scores_counted_as_usage_are_said_without_hiding_no_deviation() -> None:
    context = ReportContext(protocol_version=1, watermark={"assessments_as_usage": 180})
    assert deviation_lines(context, {}, "fr") == [
        "Aucun écart au protocole signalé.",
        "180 scores d'évaluation venus d'une source que le protocole ne reconnaît pas pour "
        "les résultats (par exemple les quiz de la ressource) sont comptés comme usage, "
        "jamais comme résultats.",
    ]


def test_deviation_lines_in_english_and_outside_the_registry() -> None:
    context = ReportContext(protocol_version=4, amendments=(
        Amendment(2, "2027-10-02", "window extended", ("enrollment.closes",)),
        Amendment(3, "2027-11-02", None, ()),
        Amendment(4, "2027-11-03", None, ("periods.followup.end",), kind="update")))
    assert deviation_lines(context, {}, "en") == [
        "Amendment v2 of 2027-10-02: window extended (fields changed: enrollment.closes)",
        "Amendment v3 of 2027-11-02: — (fields changed: fields not stated)",
        "Update v4 of 2027-11-03, outside the locked design, no reason stated (fields "
        "changed: periods.followup.end)",
    ]
    assert deviation_lines(ReportContext(), {}, "fr") == [
        "Écarts au protocole non connus : analyse produite hors du registre."]
