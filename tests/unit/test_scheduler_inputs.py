"""Analysis inputs read from the enrollment registry and an experiment store (SQLite),
through the same readers as the offline files; and a run recorded without Kafka."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from analysis.inputs import plan_from_protocol, read_outcomes, read_units
from analysis.run import run_analysis
from experiments.database import registry_engine
from experiments.enrollment.design import enrollment_design
from experiments.enrollment.files import read_classes, read_pupils
from experiments.enrollment.tables import MIXED_ARM
from experiments.enrollment.transaction import EnrolledLearner, enroll_classes, enroll_learners
from experiments.errors import StoreError
from experiments.protocol.language import Protocol, parse_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.runs.inputs import read_analysis_inputs, write_analysis_files
from experiments.runs.records import list_runs, perform_run
from experiments.runs.scheduler import AnalysisRequest, ScheduledRun, due_time
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent
from ingest.pseudonym import load_pseudonym_key
from tests.support.decision import with_decision
from tests.support.uai import uai

ROOT = Path(__file__).resolve().parents[2]
# With a decision rule, so that it may run (issue 19).
TEXT = with_decision((ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8"))
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
        f"c{i},{uai(f'078000{i // 2}')},CP,20,versailles,REP\n" for i in range(4))
    enrolled = enroll_classes(engine, design, read_classes(rows, design, today=date(2027, 9, 1)),
                              actor="test").enrolled
    return engine, protocol, {c.class_id: c.arm for c in enrolled}


def scored(learner: str, class_id: str, arm: str, when: str, score: float,
           measure: str = "fluence") -> StoredEvent:
    return StoredEvent(str(uuid.uuid4()), at(when), "lectio", learner, class_id, "0780000B", arm,
                       "assessment_scored", measure, None, score,
                       authority="import:admin:*:test")  # trusted: an import


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
                    "0780000B", arms["c0"], "activity_completed", "ex", 1200.0, is_usage=True),
    ], datetime.now(UTC))
    files = write_analysis_files(settings, engine, protocol, tmp_path)
    assert rows(files.outcomes) == [
        {"learner_id": "l1", "unit_id": "c0", "measure": "fluence", "wave": "baseline",
         "score": "40.0"},
        {"learner_id": "l1", "unit_id": "c0", "measure": "fluence", "wave": "endline",
         "score": "60.0"},
    ]
    assert files.assessments_ignored == 4
    # the 1200 s the vendor sent count up to the protocol's pause, 300 s (analysis.sessions)
    assert rows(files.usage) == [{"learner_id": "l1", "unit_id": "c0", "week": "2027-W40",
                                  "active_minutes": "5.0"}]
    units = rows(files.units)
    assert [(u["unit_id"], u["arm"], u["education_priority"], u["status"]) for u in units] == [
        (f"c{i}", arms[f"c{i}"], "REP", "enrolled") for i in range(4)]
    assert files.watermark.stored_events == 8
    assert files.watermark.latest_event_at == at("2028-06-02T09:00:00+02:00")
    inputs = read_analysis_inputs(settings, engine, protocol, tmp_path)
    assert inputs.units.n_units == 4 and inputs.outcomes.n_learners == 1
    assert inputs.usage is not None and inputs.usage.minutes.tolist() == [5.0]


def test_school_units_gather_their_classes(settings: Settings, tmp_path: Path) -> None:
    text = TEXT.replace("unit: class ", "unit: school").replace("strata: [school_uai]",
                                                                "strata: [academie]")
    engine, protocol, _ = setup(settings, text)
    units = rows(write_analysis_files(settings, engine, protocol, tmp_path).units)
    assert [(u["unit_id"], u["pupils"]) for u in units] == [("0780000B", "40"),
                                                            ("0780001C", "40")]


LEARNER_PROTOCOL = ROOT / "tests" / "data" / "enrollment" / "learner-protocol.yaml"
LEARNER_EXPERIMENT = "lectio-eleves-2027"


def _enroll_pupils(settings: Settings, engine: Engine, per_class: int
                   ) -> tuple[Protocol, list[EnrolledLearner]]:
    """Register the learner-randomised test protocol and enroll two classes of pupils."""
    text = with_decision(LEARNER_PROTOCOL.read_text(encoding="utf-8"))
    protocol = parse_protocol(text)
    register_protocol(engine, protocol, text)
    transition_experiment(engine, LEARNER_EXPERIMENT, "enrolling")
    design, _ = enrollment_design(engine, LEARNER_EXPERIMENT)
    pupils = "learner_id,class_id,school_uai,level,academie,education_priority,repeater\n" + \
        "".join(f"gar-{c}x{p:03d},cls-{c},{uai(f'078123{c}')},CP,versailles,REP,"
                f"{'oui' if p % 3 == 0 else 'non'}\n"
                for c in range(2) for p in range(per_class))
    outcome = enroll_learners(engine, design, read_pupils(pupils, design, today=date(2027, 9, 1)),
                              key=load_pseudonym_key(settings), actor="test")
    assert not outcome.refusals
    return protocol, outcome.enrolled


def test_learner_randomised_units_are_the_enrolled_pupils(settings: Settings,
                                                           tmp_path: Path) -> None:
    engine = registry_engine(settings)
    protocol, pupils = _enroll_pupils(settings, engine, per_class=3)
    assert {p.arm for p in pupils} == {"lectio", "usual"}
    first = pupils[0]
    store = ExperimentStore(settings, LEARNER_EXPERIMENT)
    # Events of a learner-randomised experiment carry the class's arm "*" (MIXED_ARM).
    store.write_events([
        scored(first.learner_key, first.class_id, MIXED_ARM, "2027-09-10T09:00:00+02:00", 40.0),
        scored(first.learner_key, first.class_id, MIXED_ARM, "2028-06-01T09:00:00+02:00", 55.0),
        # A pupil of an enrolled class who was not enrolled: not in any arm, ignored.
        scored("not-enrolled", first.class_id, MIXED_ARM, "2028-06-01T09:00:00+02:00", 70.0),
        StoredEvent(str(uuid.uuid4()), at("2027-10-05T10:00:00+02:00"), "lectio",
                    first.learner_key, first.class_id, "0781230N", MIXED_ARM,
                    "activity_completed", "ex", 600.0, is_usage=True),
        StoredEvent(str(uuid.uuid4()), at("2027-10-05T10:00:00+02:00"), "lectio",
                    "not-enrolled", first.class_id, "0781230N", MIXED_ARM,
                    "activity_completed", "ex", 600.0, is_usage=True),
    ], datetime.now(UTC))
    files = write_analysis_files(settings, engine, protocol, tmp_path)
    units = rows(files.units)
    assert [(u["unit_id"], u["arm"], u["class_id"], u["pupils"], u["status"], u["repeater"])
            for u in units] == [
        (p.learner_key, p.arm, p.class_id, "1", "enrolled", p.attributes["repeater"])
        for p in pupils]
    assert rows(files.outcomes) == [
        {"learner_id": first.learner_key, "unit_id": first.learner_key, "measure": "fluence",
         "wave": wave, "score": score} for wave, score in (("baseline", "40.0"),
                                                           ("endline", "55.0"))]
    assert files.assessments_ignored == 1
    # 600 s sent by the vendor count up to the protocol's pause (300 s)
    assert rows(files.usage) == [{"learner_id": first.learner_key,
                                  "unit_id": first.learner_key, "week": "2027-W40",
                                  "active_minutes": "5.0"}]
    inputs = read_analysis_inputs(settings, engine, protocol, tmp_path)
    assert inputs.plan.unit == "learner" and not inputs.plan.clustered
    assert inputs.units.n_units == len(pupils) and inputs.outcomes.n_learners == 1
    assert inputs.units.frame.set_index("unit_id").loc[first.learner_key, "arm"] == first.arm


def test_learner_randomised_scheduled_inputs_match_the_offline_files(
        settings: Settings, tmp_path: Path) -> None:
    """The store's path and hand-written offline files (unit_id = learner) give the same
    effects: one set of readers and estimators serves both."""
    engine = registry_engine(settings)
    protocol, pupils = _enroll_pupils(settings, engine, per_class=40)
    rng = np.random.default_rng(7)
    events = []
    offline_outcomes = ["learner_id,unit_id,measure,wave,score"]
    for pupil in pupils:
        base = round(float(rng.normal(50, 10)), 3)
        end = round(base + 5.0 * (pupil.arm == "lectio") + float(rng.normal(0, 5)), 3)
        events.append(scored(pupil.learner_key, pupil.class_id, MIXED_ARM,
                             "2027-09-10T09:00:00+02:00", base))
        events.append(scored(pupil.learner_key, pupil.class_id, MIXED_ARM,
                             "2028-06-01T09:00:00+02:00", end))
        offline_outcomes += [f"{pupil.learner_key},{pupil.learner_key},fluence,baseline,{base!r}",
                             f"{pupil.learner_key},{pupil.learner_key},fluence,endline,{end!r}"]
    ExperimentStore(settings, LEARNER_EXPERIMENT).write_events(events, datetime.now(UTC))
    scheduled = tmp_path / "scheduled"
    scheduled.mkdir()
    inputs = read_analysis_inputs(settings, engine, protocol, scheduled)
    from_store = run_analysis(inputs.plan, inputs.units, inputs.outcomes, inputs.usage)

    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / "units.csv").write_text("unit_id,arm,class_id,repeater\n" + "".join(
        f"{p.learner_key},{p.arm},{p.class_id},{p.attributes['repeater']}\n" for p in pupils),
        encoding="utf-8")
    (offline / "outcomes.csv").write_text("\n".join(offline_outcomes) + "\n", encoding="utf-8")
    plan = plan_from_protocol(protocol)
    units = read_units(offline / "units.csv", plan)
    from_files = run_analysis(plan, units, read_outcomes(offline / "outcomes.csv", units))

    (itt,) = [e for e in from_store.effects if e.role == "primary"]
    (reference,) = [e for e in from_files.effects if e.role == "primary"]
    # Pupils randomised: CR2 with one pupil per cluster, i.e. HC2 (issue 15's default).
    assert itt.reason is None, itt
    assert itt.model == "ancova, HC2 robust (CR2, one learner per cluster), Satterthwaite df"
    assert itt.n_learners == reference.n_learners == {"lectio": 40, "usual": 40}
    # Same numbers read back from the same values: equal to the last bit but for the order
    # of the rows (summation order), hence 1e-12.
    for name in ("estimate", "std_error", "ci_low", "ci_high", "p_value", "hedges_g"):
        assert getattr(itt, name) == pytest.approx(getattr(reference, name), rel=1e-12), name
    assert 2.0 < itt.estimate < 8.0

    # And the scheduled run itself (worker path, no Kafka) is done, not refused.
    transition_experiment(engine, LEARNER_EXPERIMENT, "running")
    run = ScheduledRun(LEARNER_EXPERIMENT, "final", due_time(date(2028, 6, 30)), 1,
                       protocol.sha256, "at: 2028-06-30")
    record = perform_run(settings, AnalysisRequest.of(run), engine)
    assert record.status == "done", record.reason


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
                    "0780000B", arms["c0"], "activity_completed", "ex", 600.0, is_usage=True),
    ], datetime.now(UTC))
    run = ScheduledRun(EXPERIMENT, "monitoring", due_time(date(2027, 10, 11)), 1,
                       protocol.sha256, "every: week")
    record = perform_run(settings, AnalysisRequest.of(run), engine)
    assert record.status == "done", record.reason
    assert record.watermark["stored_events"] == 1


def test_assessment_results_imported_from_a_file_become_outcomes(settings: Settings,
                                                                 tmp_path: Path) -> None:
    from experiments.runs.inputs import import_outcomes
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


def test_scheduled_inputs_of_a_protocol_without_pretest(settings: Settings,
                                                         tmp_path: Path) -> None:
    # Issue 15: an ancova outcome without `baseline` (and no baseline period) runs from the
    # store; the registry's `pupils` (20 per class) count every randomised pupil in the
    # attrition the evidence rating reads, classes without any score included.
    text = TEXT.replace("  baseline:     {start: 2027-09-06, end: 2027-09-24}\n", "").replace(
        "    baseline: fluence            # pre-test measure (wave baseline) used as covariate\n",
        "")
    assert "baseline:" not in text.split("outcomes:")[1].split("analysis:")[0]
    engine, protocol, arms = setup(settings, text)
    assert protocol.periods.baseline is None and protocol.outcomes[0].baseline is None
    store = ExperimentStore(settings, EXPERIMENT)
    rng = np.random.default_rng(5)
    events = [scored(f"{c}-{p}", c, arms[c], "2028-06-01T09:00:00+02:00",
                     float(rng.normal(50, 10)))
              for c in ("c0", "c1", "c2") for p in range(12)]  # c3: lost entirely
    store.write_events(events, datetime.now(UTC))
    inputs = read_analysis_inputs(settings, engine, protocol, tmp_path)
    plan = plan_from_protocol(protocol)
    results = run_analysis(plan, inputs.units, inputs.outcomes)
    every = next(a for a in results.checks["attrition"] if a.level == "all_learners")
    assert sum(v or 0 for v in every.randomised.values()) == 80  # 4 classes × 20 pupils
    assert every.overall == pytest.approx(1 - 36 / 80, rel=1e-12)
    assert results.design["pretest"] == {"fluence": None}


def test_an_interim_run_again_after_later_data_gives_the_same_results(
    settings: Settings, tmp_path: Path
) -> None:
    """A run due at T reads what occurred and was stored by T: computed again after more
    data arrived (late events of before T, events after T, usage), its results JSON is the
    one recorded; without the cut-off the same store gives other numbers."""
    import json

    from experiments.runs.records import reproduce_run

    text = TEXT.replace("{analysis: interim, at: 2028-01-15}",
                        "{analysis: interim, at: 2028-06-20}")
    engine, protocol, arms = setup(settings, text)
    transition_experiment(engine, EXPERIMENT, "running")
    store = ExperimentStore(settings, EXPERIMENT)
    due = due_time(date(2028, 6, 20))

    noise = np.random.default_rng(7)  # scores that no model fits exactly

    def batch(when: str, shift: float, learners: range) -> list[StoredEvent]:
        out = []
        for class_id, arm in sorted(arms.items()):
            for k in learners:
                learner = f"{class_id}-{k}"
                out.append(scored(learner, class_id, arm, "2027-09-10T09:00:00+02:00", 40.0 + k))
                out.append(scored(learner, class_id, arm, when,
                                  50.0 + k + float(noise.normal(0.0, 2.0))
                                  + (shift if arm == "lectio" else 0.0)))
                out.append(StoredEvent(str(uuid.uuid4()), at("2027-10-05T10:00:00+02:00"),
                                       "lectio", learner, class_id, "0780000A", arm,
                                       "activity_completed", "ex", 60.0 * (k + 1),
                                       is_usage=True))
        return out

    # By T: 12 pupils per class, endline on 1 June, stored on 2 June.
    store.write_events(batch("2028-06-01T09:00:00+02:00", 3.0, range(12)),
                       at("2028-06-02T18:00:00+02:00"))
    record = perform_run(settings, AnalysisRequest.of(ScheduledRun(
        EXPERIMENT, "interim", due, 1, protocol.sha256, "at: 2028-06-20")), engine)
    assert record.status == "done", record.reason
    assert record.watermark["cutoff"] == due.isoformat()
    recorded = json.loads(record.results_json or "{}")
    assert recorded["effects"][0]["estimate"] is not None, recorded["effects"][0]["reason"]

    # Later: pupils assessed before T whose scores arrived after T, pupils assessed after
    # T, and more usage of October stored after T.
    store.write_events(batch("2028-06-12T09:00:00+02:00", 9.0, range(12, 20)),
                       at("2028-06-25T18:00:00+02:00"))
    store.write_events(batch("2028-06-22T09:00:00+02:00", -6.0, range(20, 30)),
                       at("2028-06-22T18:00:00+02:00"))
    assert reproduce_run(settings, record, engine) == recorded
    # The same through the CLI an auditor runs.
    from typer.testing import CliRunner

    from experiments.cli.app import app
    from experiments.cli.runs import _differences

    env = {"PREUVE_STATE_DIR": str(settings.state_dir)}
    result = CliRunner().invoke(app, ["runs", "reproduce", record.run_id, "--experiment",
                                      EXPERIMENT], env=env)
    assert result.exit_code == 0, result.output
    assert "identical results (data as of 2028-06-20T04:00:00+00:00)" in result.output
    listed = CliRunner().invoke(app, ["runs", "list", EXPERIMENT], env=env)
    assert listed.exit_code == 0 and record.run_id in listed.output
    assert _differences({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}) == [
        ".a[1].b: recorded 2, now 3"]

    everything = read_analysis_inputs(settings, engine, protocol, tmp_path)
    later = run_analysis(everything.plan, everything.units, everything.outcomes,
                         everything.usage, analysis="interim")
    assert later.effects[0].estimate != pytest.approx(recorded["effects"][0]["estimate"])


def test_a_cutoff_after_everything_reads_what_the_store_holds(settings: Settings,
                                                              tmp_path: Path) -> None:
    """Usage summed from the events by the cut-off equals the store's daily aggregate when
    every event is in; enrollments after the cut-off are not seen."""
    engine, protocol, arms = setup(settings)
    events = []
    for class_id, arm in arms.items():
        for k in range(11):
            learner = f"{class_id}-{k}"
            events.append(scored(learner, class_id, arm, "2027-09-10T09:00:00+02:00", 40.0 + k))
            for day, minutes in (("2027-10-05T23:30:00+02:00", 7), ("2027-10-06T00:30:00+02:00", 5),
                                 ("2027-11-20T10:00:00+01:00", 11 + k)):
                events.append(StoredEvent(str(uuid.uuid4()), at(day), "lectio", learner,
                                          class_id, "0780000A", arm, "activity_completed",
                                          "ex", 60.0 * minutes, is_usage=True))
    ExperimentStore(settings, EXPERIMENT).write_events(events, at("2027-12-01T00:00:00+01:00"))
    (tmp_path / "all").mkdir()
    (tmp_path / "cut").mkdir()
    whole = write_analysis_files(settings, engine, protocol, tmp_path / "all")
    cut = write_analysis_files(settings, engine, protocol, tmp_path / "cut",
                               cutoff=at("2099-01-01T00:00:00+00:00"))
    for name in ("units", "outcomes", "usage"):
        assert rows(getattr(cut, name)) == rows(getattr(whole, name)), name
    assert len(rows(cut.usage)) == 4 * 11 * 2
    with pytest.raises(StoreError, match="no class is enrolled yet"):
        write_analysis_files(settings, engine, protocol, tmp_path / "cut",
                             cutoff=at("2020-01-01T00:00:00+00:00"))


def test_a_run_reads_the_store_once_and_never_parses_its_files(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files are written for the run's record; the analysis and the report's usage
    section take the tables already read from the store, and get exactly what parsing the
    files would give (issue 13)."""
    from analysis.inputs import read_usage
    from analysis.report.context import usage_context_from_files, usage_context_from_frames
    from analysis.results import to_json_dict

    engine, protocol, arms = setup(settings)
    rng = np.random.default_rng(3)
    events = []
    for c in range(4):
        for i in range(12):
            learner, base = f"l{c}-{i}", round(float(rng.normal(50, 10)), 3)
            arm = arms[f"c{c}"]
            events.append(scored(learner, f"c{c}", arm, "2027-09-10T09:00:00+02:00", base))
            events.append(scored(learner, f"c{c}", arm, "2028-06-01T09:00:00+02:00",
                                 base + float(rng.normal(3, 5))))
            for day in range(10, 10 + i % 4):
                events.append(StoredEvent(
                    str(uuid.uuid4()), at(f"2027-10-{day}T10:00:00+02:00"), "lectio", learner,
                    f"c{c}", "0780000B", arm, "activity_completed", "ex",
                    float(rng.integers(60, 1200)), is_usage=True))
    ExperimentStore(settings, EXPERIMENT).write_events(events, datetime.now(UTC))

    def parsed(*args: object, **kwargs: object) -> None:
        raise AssertionError("a scheduled run parsed a file it wrote")

    with monkeypatch.context() as patch:
        patch.setattr("analysis.inputs._read_csv", parsed)
        patch.setattr("analysis.inputs._read_table", parsed)
        inputs = read_analysis_inputs(settings, engine, protocol, tmp_path)
    files, tables = inputs.files, inputs.files.tables
    assert tables is not None and inputs.usage is not None
    # The files hold the same: the analysis of the files parsed is the same, bit for bit.
    units = read_units(files.units, inputs.plan)
    outcomes = read_outcomes(files.outcomes, units)
    usage = read_usage(files.usage, outcomes, units)
    assert (to_json_dict(run_analysis(inputs.plan, inputs.units, inputs.outcomes, inputs.usage))
            == to_json_dict(run_analysis(inputs.plan, units, outcomes, usage)))
    assert (usage_context_from_frames(*tables.usage_frames())
            == usage_context_from_files(files.units, files.usage, files.outcomes))
    assert any(f.learners_active for f in usage_context_from_frames(*tables.usage_frames()).funnel)
    # The three levels of use, likewise (the levels file is written, not parsed again).
    from analysis.usage import usage_levels_from_files, usage_levels_from_frames

    compliance = protocol.usage.compliance
    rule: dict[str, Any] = {
        "arms": [a.name for a in protocol.arms], "control": protocol.control_arm.name,
        "threshold_minutes": compliance.min_active_minutes if compliance else None,
        "idle_timeout_s": protocol.usage.idle_timeout_s}
    assert files.levels is not None and files.levels.exists()
    assert (usage_levels_from_frames(tables.units, tables.usage.to_pandas(), tables.levels,
                                     **rule)
            == usage_levels_from_files(files.units, files.usage, files.levels, **rule))
