"""Questionnaires end to end (issue 19 item 4): import and gateway → real Kafka → worker →
store → the final run, against ``preuve analyze`` on files built from the raw answers.

A protocol (``tests/support/questionnaires.py``) declares a pupils' questionnaire given at
the baseline and the endline (scale ``motivation``, one reverse item, at least 3 of 4
items answered) taken as a secondary outcome with its own pre-test, and a teachers'
questionnaire given at the baseline (scale ``formation``) named as a covariate. The
researcher imports the official fluence results, the pupils' baseline answers and the
teachers' answers (``preuve questionnaires import``); the resource sends the endline
answers through the gateway, as native ``questionnaire_answered`` events and, for four
classes, as xAPI Likert statements. Some answers are missing.

The final run's ``motivation`` effect equals ``preuve analyze`` on an outcomes file whose
scale scores this test computes from the raw answers (recoding and averaging by hand)
and a units file whose ``formation`` column is the teachers' mean computed here, to 1e-9;
the report has its « Questionnaires » section with the alpha of the raw answers
(``analysis.questionnaires``, itself checked against R's psych) and the teachers' means
per arm.
"""

from __future__ import annotations

import csv
import json
import math
import random
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from analysis.questionnaires import ItemSpec, ScaleSpec, cronbach_alpha
from analysis.report.text import format_number
from experiments.access import issue_token
from experiments.cli.app import app
from experiments.database import registry_engine
from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.enrollment.publishing import kafka_publisher
from experiments.enrollment.transaction import enroll_classes
from experiments.protocol.language import load_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.runs.inputs import import_outcomes, write_analysis_files
from experiments.runs.records import perform_run, reproduce_run
from experiments.runs.scheduler import AnalysisRequest, ScheduledRun, due_time
from experiments.store import ExperimentStore
from ingest.gateway import create_app
from ingest.kafka.access import ensure_topics
from ingest.xapi import CLASS_EXTENSION, QUESTIONNAIRE_EXTENSION, SCHOOL_EXTENSION
from tests.conftest import SettingsFactory
from tests.support.gateway_client import AppClient
from tests.support.postgres import wait_until
from tests.support.questionnaires import PUPIL_ITEMS, TEACHER_ITEMS, questionnaire_protocol
from tests.support.trial import EXPERIMENT, HEADER
from tests.support.uai import uai
from tests.support.worker import WorkerProcess, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOLERANCE = 1e-9  # same data, same estimator: only the order of floating-point sums differs
CLASSES = {f"cls-{s}{k}": uai(f"07812{s:02d}") for s in range(10) for k in "ab"}  # 10 × 2
PUPILS = 12
XAPI_CLASSES = 4  # the first classes answer the endline through xAPI statements
LIKERT = ["pas-du-tout", "plutot-pas", "plutot", "tout-a-fait"]
ENDLINE_AT = "2028-06-01T10:00:00+02:00"  # in the follow-up: the endline wave


def _likert(rng: random.Random, trait: float, reverse: bool, high: int) -> int:
    value = round((high + 1) / 2 + (-trait if reverse else trait) + rng.gauss(0, 0.7))
    return min(high, max(1, value))


def _pupil_answers(rng: random.Random, arms: dict[str, str], wave: str
                   ) -> dict[tuple[str, str], dict[str, int]]:
    """(class, raw pupil id) → the items answered (about 8 % left blank)."""
    answers = {}
    for class_id in CLASSES:
        for p in range(PUPILS):
            trait = rng.gauss(0, 0.9) + (0.5 if wave == "endline" and arms[class_id] == "lectio"
                                         else 0.0)
            answers[(class_id, f"gar-{class_id}-{p:02d}")] = {
                item: _likert(rng, trait, reverse, 4) for item, reverse in PUPIL_ITEMS.items()
                if rng.random() >= 0.08}
    return answers


def _score(answers: dict[str, int]) -> float | None:
    """The scale score by hand: reverse items are 5 - x on 1..4; 3 answered items needed."""
    if len(answers) < 3:
        return None
    recoded = [5 - v if PUPIL_ITEMS[item] else v for item, v in answers.items()]
    return sum(recoded) / len(recoded)


def _write_csv(path: Path, header: list[str], rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, header, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _events(answers: dict[tuple[str, str], dict[str, int]], first: int) -> list[dict[str, Any]]:
    return [{
        "event_id": str(uuid.uuid4()), "occurred_at": ENDLINE_AT, "resource_id": "lectio",
        "learner_id": learner, "class_id": class_id, "school_uai": CLASSES[class_id],
        "verb": "questionnaire_answered", "object_id": item, "score": value,
        "extensions": {"questionnaire": "eleves"},
    } for (class_id, learner), items in answers.items()
        if list(CLASSES).index(class_id) >= first for item, value in items.items()]


def _statements(answers: dict[tuple[str, str], dict[str, int]], below: int
                ) -> list[dict[str, Any]]:
    return [{
        "id": str(uuid.uuid4()),
        "actor": {"account": {"homePage": "https://gar.education.fr", "name": learner}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
        "object": {"id": f"https://lectio.example/questionnaires/eleves/{item}",
                   "definition": {"type": "http://adlnet.gov/expapi/activities/cmi.interaction",
                                  "interactionType": "likert",
                                  "scale": [{"id": c} for c in LIKERT]}},
        "result": {"response": LIKERT[value - 1]},
        "context": {"extensions": {CLASS_EXTENSION: class_id,
                                   SCHOOL_EXTENSION: CLASSES[class_id],
                                   QUESTIONNAIRE_EXTENSION: "eleves"}},
        "timestamp": ENDLINE_AT,
    } for (class_id, learner), items in answers.items()
        if list(CLASSES).index(class_id) < below for item, value in items.items()]


def _effect(results: dict[str, Any], outcome: str) -> float:
    effect = next(e for e in results["effects"]
                  if e["outcome"] == outcome and e["estimand"] == "ITT"
                  and e.get("subgroup") in (None, "") and e["estimate"] is not None)
    return float(effect["estimate"])


def test_questionnaires_through_import_and_gateway_reach_the_final_report(
        make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = make_settings(kafka=True)
    ensure_topics(settings)
    registry = registry_engine(settings)
    path = questionnaire_protocol(tmp_path)
    protocol = load_protocol(path)
    register_protocol(registry, protocol, path.read_text(), actor="researcher:test")
    design = EnrollmentDesign.from_protocol(protocol)
    rows = "".join(f"{c},{school},CP,{PUPILS},versailles,REP\n"
                   for c, school in CLASSES.items())
    outcome = enroll_classes(registry, design, read_classes(HEADER + rows, design),
                             actor="academie:versailles:test", publish=kafka_publisher(settings))
    assert outcome.pending == 0, outcome.publish_error
    arms = {c.class_id: c.arm for c in outcome.enrolled}
    assert sorted(arms.values()).count("lectio") == 10
    for state in ("enrolling", "running"):
        transition_experiment(registry, EXPERIMENT, state)
    # The units file before any answer: the teachers' column is there, empty.
    units_dir = tmp_path / "units"
    units_dir.mkdir()
    units_path = write_analysis_files(settings, registry, protocol, units_dir).units

    rng = random.Random(20280601)
    fluence = []
    for class_id in CLASSES:
        for p in range(PUPILS):
            learner, base = f"gar-{class_id}-{p:02d}", rng.gauss(50, 12)
            fluence += [{"learner_id": learner, "unit_id": class_id, "measure": "fluence",
                         "wave": "baseline", "score": f"{base:.1f}"},
                        {"learner_id": learner, "unit_id": class_id, "measure": "fluence",
                         "wave": "endline", "score": f"{20 + 0.7 * base + rng.gauss(0, 8):.1f}"}]
    header = ["learner_id", "unit_id", "measure", "wave", "score"]
    official = _write_csv(tmp_path / "fluence.csv", header, fluence)
    assert import_outcomes(settings, registry, protocol, official).stored == len(fluence)

    baseline = _pupil_answers(rng, arms, "baseline")
    endline = _pupil_answers(rng, arms, "endline")
    teachers = {class_id: {item: _likert(rng, rng.gauss(0, 1), False, 5)
                           for item in TEACHER_ITEMS} for class_id in CLASSES}
    answers_file = _write_csv(
        tmp_path / "answers.csv",
        ["respondent_id", "unit_id", "questionnaire", "wave", *PUPIL_ITEMS, *TEACHER_ITEMS],
        [{"respondent_id": learner, "unit_id": class_id, "questionnaire": "eleves",
          "wave": "baseline", **items} for (class_id, learner), items in baseline.items()]
        + [{"respondent_id": f"ens-{class_id}", "unit_id": class_id,
            "questionnaire": "enseignants", "wave": "baseline", **items}
           for class_id, items in teachers.items()])
    imported = CliRunner().invoke(app, ["questionnaires", "import", EXPERIMENT,
                                        str(answers_file)], env=settings_env(settings))
    assert imported.exit_code == 0, imported.output
    n_imported = sum(map(len, baseline.values())) + len(CLASSES) * len(TEACHER_ITEMS)
    assert f"{len(baseline) + len(CLASSES)} respondents, {n_imported} answers stored" in (
        imported.output)

    edtech_key = issue_token(registry, "edtech", "lectio", label="lectio")
    auth = {"Authorization": f"Bearer {edtech_key}"}
    events, statements = _events(endline, XAPI_CLASSES), _statements(endline, XAPI_CLASSES)
    assert events and statements
    # An answer given during the intervention belongs to no wave: stored, not used.
    events.append({**events[0], "event_id": str(uuid.uuid4()),
                   "occurred_at": "2028-01-11T10:00:00+01:00", "score": 1})
    store = ExperimentStore(settings, EXPERIMENT)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        with AppClient(create_app(settings, engine=registry)) as gateway:
            for start in range(0, len(events), 200):
                sent = gateway.post("/v1/events", json=events[start:start + 200], headers=auth)
                assert sent.status_code == 202, sent.text
            for start in range(0, len(statements), 200):
                sent = gateway.post("/v1/xapi/statements", json=statements[start:start + 200],
                                    headers=auth)
                assert sent.status_code == 202, sent.text
            stored = len(fluence) + n_imported + len(events) + len(statements)
            assert wait_until(lambda: store.count_events() == stored, 180), store.count_events()
    finally:
        assert worker.stop() == 0

    # The researcher's files, from the raw answers.
    motivation = [{"learner_id": learner, "unit_id": class_id, "measure": "motivation",
                   "wave": wave, "score": repr(score)}
                  for wave, answers in (("baseline", baseline), ("endline", endline))
                  for (class_id, learner), items in answers.items()
                  if (score := _score(items)) is not None]
    assert len(motivation) < 2 * len(CLASSES) * PUPILS  # some pupils answered too little
    outcomes = _write_csv(tmp_path / "outcomes.csv", header, [*fluence, *motivation])
    with units_path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        unit_header, unit_rows = list(reader.fieldnames or ()), list(reader)
    assert "formation" in unit_header and all(r["formation"] == "" for r in unit_rows)
    for row in unit_rows:
        row["formation"] = repr(sum(teachers[row["unit_id"]].values()) / len(TEACHER_ITEMS))
    units = _write_csv(tmp_path / "units.csv", unit_header, unit_rows)
    out = tmp_path / "analyze.json"
    result = CliRunner().invoke(app, ["analyze", "--protocol", str(path), "--units", str(units),
                                      "--outcomes", str(outcomes), "--json", str(out)])
    assert result.exit_code == 0, result.output
    expected = json.loads(out.read_text(encoding="utf-8"))

    run = ScheduledRun(EXPERIMENT, "final", due_time(date(2028, 6, 30)), 1, protocol.sha256,
                       "at: 2028-06-30")
    record = perform_run(settings, AnalysisRequest.of(run), registry)
    assert record.status == "done", record.reason
    assert record.json_path is not None and record.html_path is not None
    assert record.watermark["questionnaire_answers_ignored"] == 1
    results = json.loads(Path(record.json_path).read_text(encoding="utf-8"))
    got, want = _effect(results, "motivation"), _effect(expected, "motivation")
    assert abs(got - want) <= TOLERANCE, (got, want)
    assert want > 0.2  # the simulated effect is there: the comparison is not vacuous
    assert abs(_effect(results, "fluence") - _effect(expected, "fluence")) <= TOLERANCE
    # The run reproduces from the store (the answers are read in one order every time).
    assert reproduce_run(settings, record, registry) == json.loads(record.results_json or "{}")

    page = Path(record.html_path).read_text(encoding="utf-8")
    assert 'id="questionnaires"' in page and "Motivation pour la lecture" in page
    assert "Formation et accompagnement" in page
    scale = ScaleSpec("motivation", tuple(ItemSpec(i, 1, 4, r) for i, r in PUPIL_ITEMS.items()),
                      3)
    for answers in (baseline, endline):
        alpha = cronbach_alpha(scale, {k[1]: {i: float(v) for i, v in a.items()}
                                       for k, a in answers.items()})
        assert alpha is not None and math.isfinite(alpha)
        assert f"<td>{format_number(alpha, 'fr', 2)}</td>" in page
    for arm in ("lectio", "usual"):
        means = [sum(teachers[c].values()) / 3 for c, a in arms.items() if a == arm]
        assert f"{format_number(sum(means) / len(means), 'fr', 2)} (10)" in page

