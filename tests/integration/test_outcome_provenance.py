"""Outcome provenance end to end (issue 14, item 1): gateway → real Kafka → worker → store
→ the final run, against ``preuve analyze`` on the official outcomes file.

The researcher imports the official results (``import_outcomes``), with the endline
missing for 3 pupils of each class. The EdTech then sends, with its own key, forged
endline ``assessment_scored`` events of the declared measure ``fluence`` for every pupil
(+20 points in the treated arm): they are stored, as usage, and the final run's primary
estimate equals ``preuve analyze`` on the official file alone (1e-9). The same events
sent with an ``assessor`` token of the experiment are outcomes: the next run equals
``preuve analyze`` on the official file plus the assessor's scores of the pupils the file
lacks (an imported result takes precedence over another source: the researcher's file is
the reference, corrected only with ``preuve outcomes import --correct``).
"""

from __future__ import annotations

import csv
import json
import random
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from experiments.access import issue_token
from experiments.cli.app import app
from experiments.database import registry_engine
from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.enrollment.publishing import kafka_publisher
from experiments.enrollment.transaction import enroll_classes
from experiments.protocol.language import load_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.runs.inputs import import_outcomes, write_analysis_files
from experiments.runs.records import perform_run
from experiments.runs.scheduler import AnalysisRequest, ScheduledRun, due_time
from experiments.settings import Settings
from experiments.store import ExperimentStore, events_table
from ingest.gateway import create_app
from ingest.kafka.access import ensure_topics
from tests.conftest import SettingsFactory
from tests.support.decision import add_decision
from tests.support.gateway_client import AppClient
from tests.support.postgres import wait_until
from tests.support.trial import EXPERIMENT, HEADER, PROTOCOL
from tests.support.uai import uai
from tests.support.worker import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOLERANCE = 1e-9  # same data, same estimator: only the order of floating-point sums differs
CLASSES = {f"cls-{s}{k}": uai(f"078123{s}") for s in range(6) for k in "ab"}  # 6 schools × 2
PUPILS = 15
MISSING_ENDLINE = range(12, 15)  # pupils the official file has no endline for


def _official_rows(rng: random.Random, arms: dict[str, str]) -> list[dict[str, str]]:
    rows = []
    for class_id in CLASSES:
        class_effect = rng.gauss(0, 4)
        for p in range(PUPILS):
            learner = f"gar-{class_id}-{p:02d}"
            baseline = rng.gauss(50 + class_effect, 12)
            endline = (20 + 0.7 * baseline + class_effect + rng.gauss(0, 8)
                       + (3 if arms[class_id] == "lectio" else 0))
            rows.append({"learner_id": learner, "unit_id": class_id, "measure": "fluence",
                         "wave": "baseline", "score": f"{baseline:.1f}"})
            if p not in MISSING_ENDLINE:
                rows.append({"learner_id": learner, "unit_id": class_id, "measure": "fluence",
                             "wave": "endline", "score": f"{endline:.1f}"})
    return rows


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ["learner_id", "unit_id", "measure", "wave", "score"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _forged(rng: random.Random, arms: dict[str, str]) -> list[dict[str, Any]]:
    """Endline scores of every pupil as the resource would send them (in the follow-up)."""
    return [{
        "event_id": str(uuid.uuid4()), "occurred_at": "2028-06-01T10:00:00+02:00",
        "resource_id": "lectio", "learner_id": f"gar-{class_id}-{p:02d}",
        "class_id": class_id, "school_uai": school, "verb": "assessment_scored",
        "object_id": "fluence",
        "score": round(rng.gauss(80 if arms[class_id] == "lectio" else 55, 5), 1),
    } for class_id, school in CLASSES.items() for p in range(PUPILS)]


def _primary(results: dict[str, Any]) -> float:
    effect = next(e for e in results["effects"]
                  if e["outcome"] == "fluence" and e["estimand"] == "ITT"
                  and e.get("subgroup") in (None, "") and e["estimate"] is not None)
    return float(effect["estimate"])


def _analyze(tmp_path: Path, units: Path, outcomes: Path, name: str) -> float:
    """``preuve analyze`` on files: the researcher's offline path."""
    out = tmp_path / f"{name}.json"
    result = CliRunner().invoke(app, ["analyze", "--protocol", str(PROTOCOL), "--units",
                                      str(units), "--outcomes", str(outcomes), "--json",
                                      str(out)])
    assert result.exit_code == 0, result.output
    return _primary(json.loads(out.read_text(encoding="utf-8")))


def _final(settings: Settings, registry: sa.Engine, sha: str, day: date,
           as_usage: int) -> float:
    """The primary estimate of a final run; its record and report say how many scores
    were left to usage."""
    run = ScheduledRun(EXPERIMENT, "final", due_time(day), 1, sha, "at: 2028-06-30")
    record = perform_run(settings, AnalysisRequest.of(run), registry)
    assert record.status == "done", record.reason
    assert record.json_path is not None and record.html_path is not None
    assert record.watermark["assessments_as_usage"] == as_usage
    page = Path(record.html_path).read_text(encoding="utf-8")
    assert f"{as_usage} scores d&#39;évaluation venus d&#39;une source" in page \
        or f"{as_usage} scores d'évaluation venus d'une source" in page
    return _primary(json.loads(Path(record.json_path).read_text(encoding="utf-8")))


def _authorities(store: ExperimentStore) -> dict[str | None, int]:
    query = (sa.select(events_table.c.authority, sa.func.count())
             .group_by(events_table.c.authority))
    with store.engine.connect() as connection:
        return {authority: int(n) for authority, n in connection.execute(query)}


def test_forged_edtech_scores_are_usage_and_assessor_scores_are_outcomes(
        make_settings: SettingsFactory, tmp_path: Path) -> None:
    settings = make_settings(kafka=True)
    ensure_topics(settings)
    registry = registry_engine(settings)
    protocol = load_protocol(PROTOCOL)
    register_protocol(registry, protocol, PROTOCOL.read_text(), actor="researcher:test")
    design = EnrollmentDesign.from_protocol(protocol)
    rows = "".join(f"{c},{uai},CP,{PUPILS},versailles,REP\n" for c, uai in CLASSES.items())
    outcome = enroll_classes(registry, design, read_classes(HEADER + rows, design),
                             actor="academie:versailles:test", publish=kafka_publisher(settings))
    assert outcome.pending == 0, outcome.publish_error
    arms = {c.class_id: c.arm for c in outcome.enrolled}
    assert set(arms.values()) == {"lectio", "usual"}
    transition_experiment(registry, EXPERIMENT, "enrolling")
    add_decision(registry, EXPERIMENT)  # the core example has none; running needs one
    transition_experiment(registry, EXPERIMENT, "running")

    rng = random.Random(20280601)
    official_rows = _official_rows(rng, arms)
    official = _write(tmp_path / "official.csv", official_rows)
    assert import_outcomes(settings, registry, protocol, official).stored == len(official_rows)
    units = write_analysis_files(settings, registry, protocol, tmp_path).units

    edtech_key = issue_token(registry, "edtech", "lectio", label="lectio")
    assessor_key = issue_token(registry, "assessor", EXPERIMENT, label="DEPP")
    forged = _forged(rng, arms)
    store = ExperimentStore(settings, EXPERIMENT)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        with AppClient(create_app(settings, engine=registry)) as gateway:
            sent = gateway.post("/v1/events", json=forged,
                                headers={"Authorization": f"Bearer {edtech_key}"})
            assert sent.status_code == 202, sent.text
            stored = len(official_rows) + len(forged)
            assert wait_until(lambda: store.count_events() == stored, 120), store.count_events()

            # The final run ignores the EdTech's scores: equal to the official file alone.
            alone = _analyze(tmp_path, units, official, "official")
            first = _final(settings, registry, protocol.sha256, date(2028, 6, 30), len(forged))
            assert abs(first - alone) <= TOLERANCE, (first, alone)
            # ... and they would have moved it (the test is not vacuous).
            with_forged = _write(tmp_path / "with-forged.csv", [
                *[r for r in official_rows if r["wave"] == "baseline"],
                *({"learner_id": e["learner_id"], "unit_id": e["class_id"],
                   "measure": "fluence", "wave": "endline", "score": str(e["score"])}
                  for e in forged)])
            assert abs(_analyze(tmp_path, units, with_forged, "forged") - alone) > 5.0

            # An assessor token sends outcome scores of its experiment's measures only.
            auth = {"Authorization": f"Bearer {assessor_key}"}
            usage = {**forged[0], "event_id": str(uuid.uuid4()), "verb": "activity_completed"}
            refused = gateway.post("/v1/events", json=[usage], headers=auth)
            assert refused.status_code == 403 and "assessment_scored" in refused.text
            other = {**forged[0], "event_id": str(uuid.uuid4()), "object_id": "comprehension"}
            refused = gateway.post("/v1/events", json=[other], headers=auth)
            assert refused.status_code == 403 and "object_id" in refused.text

            # The same events with the assessor's token (new ids: another sender's copy).
            again = [{**e, "event_id": str(uuid.uuid4())} for e in forged]
            sent = gateway.post("/v1/events", json=again, headers=auth)
            assert sent.status_code == 202, sent.text
            stored += len(again)
            assert wait_until(lambda: store.count_events() == stored, 120), store.count_events()
    finally:
        assert worker.stop() == 0

    missing = {f"gar-{c}-{p:02d}" for c in CLASSES for p in MISSING_ENDLINE}
    completed = _write(tmp_path / "completed.csv", [*official_rows, *(
        {"learner_id": e["learner_id"], "unit_id": e["class_id"], "measure": "fluence",
         "wave": "endline", "score": str(e["score"])}
        for e in again if e["learner_id"] in missing)])
    used = _final(settings, registry, protocol.sha256, date(2028, 7, 1), len(forged))
    expected = _analyze(tmp_path, units, completed, "completed")
    assert abs(used - expected) <= TOLERANCE, (used, expected)
    assert abs(used - first) > TOLERANCE  # the assessor's scores changed the estimate

    # Every stored event names who wrote it: the import, the EdTech key, the assessor key
    # (a prefix of the token's hash, never the token).
    authorities = _authorities(store)
    assert authorities.pop("import:admin:*:python") == len(official_rows)
    by_role = {a.split(":")[0]: (a, n) for a, n in authorities.items() if a is not None}
    assert set(by_role) == {"edtech", "assessor"} and None not in authorities
    assert by_role["edtech"][0].startswith("edtech:lectio:") and by_role["edtech"][1] == len(forged)
    assert by_role["assessor"][0].startswith(f"assessor:{EXPERIMENT}:")
    assert by_role["assessor"][1] == len(again)
    for token in (edtech_key, assessor_key):
        assert not any(token[3:] in authority or token[-12:] in authority
                       for authority, _ in by_role.values())
