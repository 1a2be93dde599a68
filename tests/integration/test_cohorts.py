"""A cohort over two school years through real Kafka (issue 21, item 2).

CP classes are enrolled and randomised in 2027-2028 (six schools, two classes each, one
per arm). In 2028-2029 the académie sends the follow-up file: the pupils of each school
are mixed into two CE1 classes, whatever their CP arm. Their CE1 events (usage from the
EdTech, end-of-CE1 scores from an assessor) go through the gateway, Kafka and the stream
worker: they are routed to the experiment, not parked. The final run analyses the
primary wave ``fin-CE1`` and the secondary wave ``fin-CP``; each equals ``preuve analyze``
on files built from the raw scores, with each pupil in the CP class randomised (1e-9),
and the report shows « Effets par vague ».
"""

from __future__ import annotations

import csv
import json
import random
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from experiments.access import issue_token
from experiments.cli.app import app
from experiments.database import registry_engine
from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.enrollment.followup import follow_pupils, read_followed
from experiments.enrollment.publishing import kafka_publisher
from experiments.enrollment.tables import MIXED_ARM
from experiments.enrollment.transaction import enroll_classes
from experiments.protocol.language import parse_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.runs.inputs import import_outcomes, write_analysis_files
from experiments.runs.records import perform_run
from experiments.runs.scheduler import AnalysisRequest, ScheduledRun, due_time
from experiments.store import ExperimentStore, events_table
from ingest.gateway import create_app
from ingest.kafka.access import ensure_topics
from ingest.pseudonym import load_pseudonym_key, pseudonymise
from tests.conftest import SettingsFactory
from tests.support.gateway_client import AppClient
from tests.support.postgres import wait_until
from tests.support.trial import HEADER
from tests.support.uai import uai
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOLERANCE = 1e-9  # same data, same estimator: only the order of floating-point sums differs
ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "fluence-cp-2027"
CORE = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")
COHORT = (CORE
          .replace("intervention: {start: 2027-09-27, end: 2028-05-26}",
                   "intervention: {start: 2027-09-27, end: 2029-05-25}")
          .replace("followup:     {start: 2028-05-29, end: 2028-06-16}",
                   "followup:     {start: 2029-05-28, end: 2029-06-15}")
          .replace("  - {analysis: interim, at: 2028-01-15}\n", "")
          .replace("{analysis: final, at: 2028-06-30}", "{analysis: final, at: 2029-06-29}")
          .replace("keep_until: 2030-06-30", "keep_until: 2031-06-30")
          + """waves:
  - {id: debut-CP, start: 2027-09-06, end: 2027-09-24, baseline: true}
  - {id: fin-CP, start: 2028-05-29, end: 2028-06-16, label: fin du CP}
  - {id: fin-CE1, start: 2029-05-28, end: 2029-06-15, primary: true, label: fin du CE1}
cohort: {school_years: [2027-2028, 2028-2029]}
""")
SCHOOLS = 6
PUPILS = 14
CP_CLASSES = {f"cp-{s}{k}": uai(f"078123{s}") for s in range(SCHOOLS) for k in "ab"}
AFTER_YEAR_2 = datetime(2029, 7, 3, 10, 0, tzinfo=UTC)


def _pupils(class_id: str) -> list[str]:
    return [f"gar-{class_id}-{p:02d}" for p in range(PUPILS)]


def _ce1_class(class_id: str, p: int) -> str:
    """The CE1 class of pupil ``p`` of a CP class: pupils of both CP classes of a school
    (both arms) are mixed into its two CE1 classes."""
    return f"ce1-{class_id[3]}{'xy'[p % 2]}"


def _scores(rng: random.Random, arms: dict[str, str]) -> dict[str, dict[str, float]]:
    """wave -> learner -> score, with a class effect and an effect that grows in CE1."""
    scores: dict[str, dict[str, float]] = {"debut-CP": {}, "fin-CP": {}, "fin-CE1": {}}
    for class_id in CP_CLASSES:
        shift = rng.gauss(0, 4)
        treated = arms[class_id] == "lectio"
        for learner in _pupils(class_id):
            base = rng.gauss(40 + shift, 10)
            scores["debut-CP"][learner] = round(base, 1)
            scores["fin-CP"][learner] = round(15 + 0.8 * base + shift + rng.gauss(0, 6)
                                              + (3 if treated else 0), 1)
            scores["fin-CE1"][learner] = round(30 + 0.8 * base + shift + rng.gauss(0, 7)
                                               + (5 if treated else 0), 1)
    return scores


def _write(path: Path, header: list[str], rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _analyze(tmp_path: Path, protocol: Path, units: Path, outcomes: Path, name: str) -> float:
    """``preuve analyze`` on files: the researcher's offline path."""
    out = tmp_path / f"{name}.json"
    result = CliRunner().invoke(app, ["analyze", "--protocol", str(protocol), "--units",
                                      str(units), "--outcomes", str(outcomes), "--json",
                                      str(out)])
    assert result.exit_code == 0, result.output
    effects = json.loads(out.read_text(encoding="utf-8"))["effects"]
    primary = next(e for e in effects if e["outcome"] == "fluence" and e["estimand"] == "ITT"
                   and e.get("subgroup") in (None, "") and e["role"] == "primary")
    return float(primary["estimate"])


def test_two_school_years_pupils_move_classes_and_the_end_of_ce1_is_analysed(
        make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = make_settings(kafka=True, simulated_now=AFTER_YEAR_2)
    ensure_topics(settings)
    registry = registry_engine(settings)
    protocol = parse_protocol(COHORT)
    protocol_file = tmp_path / "cohorte.yaml"
    protocol_file.write_text(COHORT, encoding="utf-8")
    register_protocol(registry, protocol, COHORT, actor="researcher:test")
    design = EnrollmentDesign.from_protocol(protocol)
    rows = "".join(f"{c},{school},CP,{PUPILS},versailles,REP\n"
                   for c, school in CP_CLASSES.items())
    year_1 = enroll_classes(registry, design, read_classes(HEADER + rows, design,
                                                           today=date(2027, 9, 1)),
                            actor="academie:versailles:test", publish=kafka_publisher(settings))
    assert year_1.pending == 0, year_1.publish_error
    arms = {c.class_id: c.arm for c in year_1.enrolled}
    assert set(arms.values()) == {"lectio", "usual"}
    for state in ("enrolling", "running"):
        transition_experiment(registry, EXPERIMENT, state)

    # Year 1: the official tests of the beginning and the end of CP, imported.
    rng = random.Random(20290629)
    scores = _scores(rng, arms)
    year_1_file = _write(tmp_path / "cp.csv", ["learner_id", "unit_id", "measure", "wave",
                                               "score"], [
        {"learner_id": learner, "unit_id": class_id, "measure": "fluence", "wave": wave,
         "score": scores[wave][learner]}
        for class_id in CP_CLASSES for learner in _pupils(class_id)
        for wave in ("debut-CP", "fin-CP")])
    assert import_outcomes(settings, registry, protocol, year_1_file).stored == \
        2 * len(CP_CLASSES) * PUPILS

    # Year 2: the follow-up file moves every pupil into a CE1 class that mixes the arms.
    follow_rows = "".join(
        f"{learner},{_ce1_class(class_id, p)},{school},CE1,versailles,{class_id}\n"
        for class_id, school in CP_CLASSES.items()
        for p, learner in enumerate(_pupils(class_id)))
    followed = read_followed(
        "learner_id,class_id,school_uai,level,academie,previous_class_id\n" + follow_rows
        + f"gar-nowhere-00,ce1-0x,{uai('0781230')},CE1,versailles,cp-unknown\n", design)
    moved = follow_pupils(registry, design, followed, key=load_pseudonym_key(settings),
                          actor="academie:versailles:test", publish=kafka_publisher(settings))
    assert moved.pending == 0, moved.publish_error
    assert len(moved.enrolled) == len(CP_CLASSES) * PUPILS and moved.classes == 2 * SCHOOLS
    assert [r.code for r in moved.refusals] == ["previous_class_unknown"]
    # Each followed pupil keeps the arm of the CP class randomised (intention to treat).
    key = load_pseudonym_key(settings)
    assert {(p.learner_key, p.arm) for p in moved.enrolled} == {
        (pseudonymise(key, EXPERIMENT, learner), arms[class_id])
        for class_id in CP_CLASSES for learner in _pupils(class_id)}

    # Their CE1 events, through the gateway and Kafka: usage and the end-of-CE1 tests.
    edtech = issue_token(registry, "edtech", "lectio", label="lectio")
    assessor = issue_token(registry, "assessor", EXPERIMENT, label="DEPP")
    usage = [{
        "event_id": str(uuid.uuid4()), "occurred_at": "2028-11-14T10:00:00+01:00",
        "resource_id": "lectio", "learner_id": learner,
        "class_id": _ce1_class(class_id, p), "school_uai": school,
        "verb": "activity_completed", "object_id": "lecture-12", "duration_s": 600,
    } for class_id, school in CP_CLASSES.items() if arms[class_id] == "lectio"
        for p, learner in enumerate(_pupils(class_id))]
    tests = [{
        "event_id": str(uuid.uuid4()), "occurred_at": "2029-06-04T10:00:00+02:00",
        "resource_id": "lectio", "learner_id": learner,
        "class_id": _ce1_class(class_id, p), "school_uai": school,
        "verb": "assessment_scored", "object_id": "fluence",
        "score": scores["fin-CE1"][learner],
    } for class_id, school in CP_CLASSES.items() for p, learner in enumerate(_pupils(class_id))]
    store = ExperimentStore(settings, EXPERIMENT)
    before = store.count_events()
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        with AppClient(create_app(settings, engine=registry)) as gateway:
            for batch, token in ((usage, edtech), (tests, assessor)):
                sent = gateway.post("/v1/events", json=batch,
                                    headers={"Authorization": f"Bearer {token}"})
                assert sent.status_code == 202, sent.text
            expected = before + len(usage) + len(tests)
            assert wait_until(lambda: store.count_events() == expected, 120), \
                store.count_events()
    finally:
        assert worker.stop() == 0
    with store.engine.connect() as connection:
        ce1 = connection.execute(
            sa.select(events_table.c.class_id, events_table.c.arm)
            .where(events_table.c.class_id.like("ce1-%"))).all()
    assert len(ce1) == len(usage) + len(tests)  # routed, none parked
    assert {arm for _, arm in ce1} == {MIXED_ARM}  # each pupil's arm is their own, below

    # The final run: fin-CE1 is the primary wave, fin-CP a secondary one.
    run = ScheduledRun(EXPERIMENT, "final", due_time(date(2029, 6, 29)), 1, protocol.sha256,
                       "at: 2029-06-29")
    record = perform_run(settings, AnalysisRequest.of(run), registry)
    assert record.status == "done", record.reason
    assert record.json_path is not None and record.html_path is not None
    results = json.loads(Path(record.json_path).read_text(encoding="utf-8"))
    waves = {w["wave"]: w for w in results["waves"]}
    assert set(waves) == {"fin-CP", "fin-CE1"}
    assert waves["fin-CE1"]["primary"] and not waves["fin-CP"]["primary"]
    assert waves["fin-CE1"]["n_learners"] == len(CP_CLASSES) * PUPILS

    # Each equals `preuve analyze` on the raw scores, every pupil in their CP class.
    units = write_analysis_files(settings, registry, protocol, tmp_path).units
    for wave in ("fin-CE1", "fin-CP"):
        raw = _write(tmp_path / f"{wave}.csv", ["learner_id", "unit_id", "measure", "wave",
                                                "score"], [
            {"learner_id": learner, "unit_id": class_id, "measure": "fluence",
             "wave": name, "score": scores[source][learner]}
            for class_id in CP_CLASSES for learner in _pupils(class_id)
            for name, source in (("baseline", "debut-CP"), ("endline", wave))])
        expected_estimate = _analyze(tmp_path, protocol_file, units, raw, wave)
        assert abs(waves[wave]["estimate"] - expected_estimate) <= TOLERANCE, (
            wave, waves[wave]["estimate"], expected_estimate)
    primary = next(e for e in results["effects"] if e["role"] == "primary"
                   and e["estimand"] == "ITT" and e.get("subgroup") in (None, ""))
    assert primary["estimate"] == waves["fin-CE1"]["estimate"]
    assert waves["fin-CE1"]["estimate"] != waves["fin-CP"]["estimate"]

    page = Path(record.html_path).read_text(encoding="utf-8")
    assert "Effets par vague" in page
    assert 'data-wave="fin du CE1"' in page and 'data-wave="fin du CP"' in page
