"""Analysis inputs read from the enrollment registry and an experiment store (SQLite),
through the same readers as the offline files; and a run recorded without Kafka."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from experiments.analysis_inputs import read_analysis_inputs, write_analysis_files
from experiments.analysis_runs import list_runs, perform_run
from experiments.database import registry_engine
from experiments.enrollment import enroll_classes, enrollment_design
from experiments.enrollment_file import read_classes
from experiments.errors import StoreError
from experiments.protocol import Protocol, parse_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.scheduler import AnalysisRequest, ScheduledRun, due_time
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")
EXPERIMENT = "fluence-cp-2027"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def setup(settings: Settings, text: str = TEXT) -> tuple[Engine, Protocol, dict[str, str]]:
    engine = registry_engine(settings)
    protocol = parse_protocol(text)
    register_protocol(engine, protocol, text)
    transition_experiment(engine, EXPERIMENT, "enrolling")
    design, _ = enrollment_design(engine, EXPERIMENT)
    rows = "class_id,school_uai,level,pupils,academie,education_priority\n" + "".join(
        f"c{i},078000{i // 2}A,CP,20,versailles,REP\n" for i in range(4))
    enrolled = enroll_classes(engine, design, read_classes(rows, design, today=date(2027, 9, 1)),
                              actor="test").enrolled
    return engine, protocol, {c.class_id: c.arm for c in enrolled}


def scored(learner: str, class_id: str, arm: str, when: str, score: float,
           measure: str = "fluence") -> StoredEvent:
    return StoredEvent(str(uuid.uuid4()), at(when), "lectio", learner, class_id, "0780000A", arm,
                       "assessment_scored", measure, None, score)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def test_waves_follow_the_protocol_periods(settings: Settings, tmp_path: Path) -> None:
    engine, protocol, arms = setup(settings)
    store = ExperimentStore(settings, EXPERIMENT)
    store.write_events([
        scored("l1", "c0", arms["c0"], "2027-09-10T09:00:00+02:00", 40.0),  # baseline period
        scored("l1", "c0", arms["c0"], "2027-09-11T09:00:00+02:00", 45.0),  # a retake: ignored
        scored("l1", "c0", arms["c0"], "2028-01-10T09:00:00+01:00", 50.0),  # intervention
        scored("l1", "c0", arms["c0"], "2028-06-01T09:00:00+02:00", 60.0),  # follow-up
        scored("l1", "c0", arms["c0"], "2028-06-02T09:00:00+02:00", 10.0, "other"),  # undeclared
        scored("l2", "unknown", "usual", "2028-06-01T09:00:00+02:00", 60.0),  # not enrolled
        # Sunday 23:30 UTC is Monday in Paris: the first day of the intervention.
        scored("l3", "c1", arms["c1"], "2027-09-26T22:30:00+00:00", 30.0),
        StoredEvent(str(uuid.uuid4()), at("2027-10-05T10:00:00+02:00"), "lectio", "l1", "c0",
                    "0780000A", arms["c0"], "activity_completed", "ex", 1200.0, is_usage=True),
    ], datetime.now(UTC))
    files = write_analysis_files(settings, engine, protocol, tmp_path)
    assert rows(files.outcomes) == [
        {"learner_id": "l1", "unit_id": "c0", "measure": "fluence", "wave": "baseline",
         "score": "40.0"},
        {"learner_id": "l1", "unit_id": "c0", "measure": "fluence", "wave": "endline",
         "score": "60.0"},
    ]
    assert files.assessments_ignored == 4
    assert rows(files.usage) == [{"learner_id": "l1", "unit_id": "c0", "week": "2027-W40",
                                  "active_minutes": "20.0"}]
    units = rows(files.units)
    assert [(u["unit_id"], u["arm"], u["education_priority"], u["status"]) for u in units] == [
        (f"c{i}", arms[f"c{i}"], "REP", "enrolled") for i in range(4)]
    assert files.watermark.stored_events == 8
    assert files.watermark.latest_event_at == at("2028-06-02T09:00:00+02:00")
    inputs = read_analysis_inputs(settings, engine, protocol, tmp_path)
    assert inputs.units.n_units == 4 and inputs.outcomes.n_learners == 1
    assert inputs.usage.minutes.tolist() == [20.0]


def test_school_units_gather_their_classes(settings: Settings, tmp_path: Path) -> None:
    text = TEXT.replace("unit: class ", "unit: school").replace("strata: [school_uai]",
                                                                "strata: [academie]")
    engine, protocol, _ = setup(settings, text)
    units = rows(write_analysis_files(settings, engine, protocol, tmp_path).units)
    assert [(u["unit_id"], u["pupils"]) for u in units] == [("0780000A", "40"),
                                                            ("0780001A", "40")]


def test_learner_randomisation_is_not_read_from_the_store() -> None:
    from experiments.analysis_inputs import _unit_rows

    protocol = parse_protocol(TEXT.replace("unit: class ", "unit: learner")
                              .replace("pupils_per_unit: 22", "pupils_per_unit: 1"))
    with pytest.raises(StoreError, match="population.unit is learner"):
        _unit_rows(protocol, [])


def test_a_run_is_recorded_once_without_kafka(settings: Settings) -> None:
    engine, protocol, arms = setup(settings)
    transition_experiment(engine, EXPERIMENT, "running")
    store = ExperimentStore(settings, EXPERIMENT)
    events = []
    for class_id, arm in arms.items():
        for k in range(12):
            learner = f"{class_id}-{k}"
            events.append(scored(learner, class_id, arm, "2027-09-10T09:00:00+02:00", 40.0 + k))
            events.append(scored(learner, class_id, arm, "2028-06-01T09:00:00+02:00",
                                 50.0 + k + (3 if arm == "lectio" else 0)))
    store.write_events(events, datetime.now(UTC))
    run = ScheduledRun(EXPERIMENT, "final", due_time(date(2028, 6, 30)), 1, protocol.sha256,
                       "at: 2028-06-30")
    record = perform_run(settings, AnalysisRequest.of(run), engine)
    assert record.status == "done", record.reason
    assert record.watermark["kafka"]["offsets"] is None  # no broker: said, not guessed
    assert perform_run(settings, AnalysisRequest.of(run), engine) == record
    assert list_runs(engine, EXPERIMENT) == [record]


def test_a_monitoring_run_before_any_assessment_is_done(settings: Settings) -> None:
    engine, protocol, arms = setup(settings)
    ExperimentStore(settings, EXPERIMENT).write_events([
        StoredEvent(str(uuid.uuid4()), at("2027-10-05T10:00:00+02:00"), "lectio", "l1", "c0",
                    "0780000A", arms["c0"], "activity_completed", "ex", 600.0, is_usage=True),
    ], datetime.now(UTC))
    run = ScheduledRun(EXPERIMENT, "monitoring", due_time(date(2027, 10, 11)), 1,
                       protocol.sha256, "every: week")
    record = perform_run(settings, AnalysisRequest.of(run), engine)
    assert record.status == "done", record.reason
    assert record.watermark["stored_events"] == 1


def test_assessment_results_imported_from_a_file_become_outcomes(settings: Settings,
                                                                 tmp_path: Path) -> None:
    from experiments.analysis_inputs import import_outcomes
    from ingest.pseudonym import load_pseudonym_key, pseudonymise

    engine, protocol, _ = setup(settings)
    results = tmp_path / "results.csv"
    results.write_text(
        "learner_id,unit_id,measure,wave,score,assessed_on\n"
        "gar-1,c0,fluence,baseline,41.5,\n"
        "gar-1,c0,fluence,endline,55,2028-06-02\n"
        "gar-2,c1,fluence,baseline,38,2027-09-20\n", encoding="utf-8")
    assert import_outcomes(settings, engine, protocol, results).stored == 3
    again = import_outcomes(settings, engine, protocol, results)
    assert (again.stored, again.already) == (0, 3)
    files = write_analysis_files(settings, engine, protocol, tmp_path)
    key = load_pseudonym_key(settings)
    one, two = (pseudonymise(key, EXPERIMENT, g) for g in ("gar-1", "gar-2"))
    assert sorted((r["learner_id"], r["wave"], r["score"]) for r in rows(files.outcomes)) == \
        sorted([(one, "baseline", "41.5"), (one, "endline", "55.0"), (two, "baseline", "38.0")])

    bad = tmp_path / "bad.csv"
    bad.write_text("learner_id,unit_id,measure,wave,score\ngar-3,c0,fluence,endline,12\n"
                   "gar-3,c9,fluence,endline,12\n", encoding="utf-8")
    with pytest.raises(StoreError, match=r"bad.csv:3: unit_id: not a class enrolled"):
        import_outcomes(settings, engine, protocol, bad)
    bad.write_text("learner_id,unit_id,measure,wave,score,assessed_on\n"
                   "gar-3,c0,fluence,endline,12,2028-01-10\n", encoding="utf-8")
    with pytest.raises(StoreError, match="assessed_on: outside the endline window"):
        import_outcomes(settings, engine, protocol, bad)


def test_a_request_whose_hash_differs_from_the_registry_is_a_failed_run(
    settings: Settings,
) -> None:
    engine, _, _ = setup(settings)
    run = ScheduledRun(EXPERIMENT, "interim", due_time(date(2028, 1, 15)), 1, "0" * 64,
                       "at: 2028-01-15")
    record = perform_run(settings, AnalysisRequest.of(run), engine)
    assert record.status == "failed"
    assert record.reason is not None and f"the request says {'0' * 64}" in record.reason
    assert record.json_path is None and record.html_path is None
