"""Scheduler and analysis workers on a real Kafka broker and real registries (SQLite and
PostgreSQL): runs happen once per due time, missed runs are caught up, amendments change
future runs only, a worker killed mid-run completes the run once, records are complete
and reports immutable.

The clock is injected (``now``): the example protocol's dates are in 2027-2028.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from experiments.database import REGISTRY_SCHEMA, _postgres_engine, _sqlite_engine, registry_engine
from experiments.enrollment.design import enrollment_design
from experiments.enrollment.files import read_classes
from experiments.enrollment.transaction import enroll_classes
from experiments.protocol.language import parse_protocol
from experiments.registry import amend_protocol, register_protocol, transition_experiment
from experiments.runs.records import find_run, list_runs, run_analysis_worker
from experiments.runs.scheduler import (
    AnalysisRequest,
    ScheduledRun,
    due_time,
    run_scheduler,
    scheduled_runs_table,
    tick,
)
from experiments.settings import SchedulerSettings, Settings, WorkerSettings
from experiments.store import ExperimentStore, StoredEvent
from ingest.kafka import clients
from ingest.kafka.principals import SCHEDULER
from tests.support.decision import with_decision
from tests.support.kafka import consume_all
from tests.support.postgres import wait_until
from tests.support.uai import uai
from tests.support.worker import settings_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# With a decision rule, so that it may run (issue 19).
TEXT = with_decision((ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8"))
EXPERIMENT = "fluence-cp-2027"
WEEKLY = 38  # Mondays from 2027-10-04 to 2028-06-19 (tests/unit/test_scheduler_calendar.py)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Settings:
    tag = uuid.uuid4().hex[:8]
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    settings = make_settings(
        kafka=True,
        database_url=database_url,
        scheduler=SchedulerSettings(worker_group_id=f"t{tag}-analysis", poll_interval_s=0.2),
        # 6 s is the broker's smallest session timeout: a killed worker's partitions move fast.
        worker=WorkerSettings(group_id=f"t{tag}-router", session_timeout_s=6.0),
    )
    # The topics and the services' ACLs first, as `preuve kafka up` does: a producer made
    # before its principal may write anything cannot get a producer id.
    from experiments.runs.scheduler import ensure_request_topic

    ensure_request_topic(settings)
    return settings


def running_experiment(engine: Engine, *, classes: bool = False,
                       settings: Settings | None = None) -> None:
    """Register the example protocol and take it to ``running``; with ``classes``, enroll
    16 classes and store a baseline and an endline assessment and some usage."""
    register_protocol(engine, parse_protocol(TEXT), TEXT)
    transition_experiment(engine, EXPERIMENT, "enrolling")
    if classes:
        assert settings is not None
        design, _ = enrollment_design(engine, EXPERIMENT)
        rows = "class_id,school_uai,level,pupils,academie,education_priority\n" + "".join(
            f"c{i:02d},{uai(f'078{i // 4:04d}')},CP,20,versailles,{'REP' if i % 2 else 'REP+'}\n"
            for i in range(16))
        enrolled = enroll_classes(engine, design, read_classes(rows, design,
                                                               today=date(2027, 9, 1)),
                                  actor="test").enrolled
        store_events(settings, {c.class_id: (c.arm, c.school_uai) for c in enrolled})
    transition_experiment(engine, EXPERIMENT, "running")


def store_events(settings: Settings, arms: dict[str, tuple[str, str]]) -> None:
    rng = random.Random(20270901)
    events = []
    for class_id, (arm, school) in arms.items():
        for k in range(20):
            learner = f"{class_id}-{k:02d}"  # a pseudonym in the store's sense
            baseline = rng.gauss(50, 14)
            endline = 25 + 0.7 * baseline + (4 if arm == "lectio" else 0) + rng.gauss(0, 10)
            for when, score in ((at("2027-09-15T09:00:00+02:00"), baseline),
                                (at("2028-06-05T09:00:00+02:00"), endline)):
                events.append(StoredEvent(str(uuid.uuid4()), when, "lectio", learner, class_id,
                                          school, arm, "assessment_scored", "fluence", None, score,
                                          authority=f"assessor:{EXPERIMENT}:0123456789ab"))
            if arm == "lectio":
                for week in range(5):
                    events.append(StoredEvent(
                        str(uuid.uuid4()), at("2027-10-05T10:00:00+02:00") + timedelta(weeks=week),
                        "lectio", learner, class_id, school, arm, "activity_completed", "ex-1",
                        900.0, is_usage=True))
    ExperimentStore(settings, EXPERIMENT).write_events(events, datetime.now(UTC))


def backdate_version(engine: Engine, version: int, when: datetime) -> None:
    """Pretend a protocol version was recorded at ``when`` (the clock here is in 2028)."""
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE protocol_versions SET recorded_at = :t "
                    "WHERE experiment_id = :e AND version = :v"),
            {"t": when, "e": EXPERIMENT, "v": version},
        )


def requests(settings: Settings, expected: int) -> list[AnalysisRequest]:
    records = consume_all(settings, settings.topics.analysis_requests, expected,
                          timeout_s=30)
    return [AnalysisRequest.from_json(value) for _, value in records]


def separate_engine(settings: Settings) -> Engine:
    """A registry engine of its own (not the process-wide cached one): another scheduler."""
    dsn = settings.database_dsn()
    if dsn:
        return _postgres_engine(dsn, REGISTRY_SCHEMA)
    return _sqlite_engine(settings.state_dir / "registry.sqlite")


# --- once per due time -------------------------------------------------------------------


def test_two_scheduler_processes_publish_each_run_once(settings: Settings) -> None:
    engine = registry_engine(settings)  # migrated here, before the two processes race
    running_experiment(engine)
    env = settings_env(settings) | {"PREUVE_SCHEDULER__CATCH_UP": "all"}
    command = [sys.executable, "-m", "experiments", "scheduler", "--once",
               "--now", "2028-07-10T00:00:00+0000"]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, start_new_session=True)
                 for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=120)[0].decode() for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(30)
    assert [p.returncode for p in processes] == [0, 0], outputs
    due = WEEKLY + 2
    published = requests(settings, due)
    assert len(published) == due, (Counter(r.run_key for r in published).most_common(3), outputs)
    assert len({r.run_key for r in published}) == due
    with engine.connect() as connection:
        claims = connection.execute(sa.select(scheduled_runs_table)).all()
    assert len(claims) == due and all(c.published_at is not None for c in claims)
    # Both processes looked at the schedule; the summary lines add up to one claim each.
    claimed = sum(int(o.strip().splitlines()[-1].split(",")[1].split()[0]) for o in outputs)
    assert claimed == due, outputs


def test_two_scheduler_threads_with_separate_engines_race_all_year(settings: Settings) -> None:
    running_experiment(registry_engine(settings))
    engines = [separate_engine(settings), separate_engine(settings)]
    producers: list[Any] = [clients.producer(settings, SCHEDULER) for _ in range(2)]
    # Each step the two schedulers look at the same moment: every Monday 06:00:30 Paris.
    moments = [due_time(date(2027, 10, 4) + timedelta(weeks=w)) + timedelta(seconds=30)
               for w in range(40)]
    barrier = threading.Barrier(2)
    claimed = [0, 0]
    errors: list[BaseException] = []

    def scheduler(i: int) -> None:
        try:
            for moment in moments:
                barrier.wait(timeout=60)
                claimed[i] += tick(settings, engines[i], producers[i], moment).claimed
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    from experiments.runs.scheduler import ensure_request_topic

    ensure_request_topic(settings)
    threads = [threading.Thread(target=scheduler, args=(i,)) for i in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        for producer in producers:
            producer.close()
        for engine in engines:
            engine.dispose()
    assert not errors, errors
    due = WEEKLY + 2
    assert sum(claimed) == due
    published = requests(settings, due)
    assert sorted(r.run_key for r in published) == sorted({r.run_key for r in published})
    assert len(published) == due


# --- retention ---------------------------------------------------------------------------


def test_the_first_look_after_keep_until_purges_the_experiment_once(settings: Settings) -> None:
    """The example protocol keeps its data until 2030-06-30 (a Paris date): the scheduler
    purges it at its first look on 1 July in Paris, not before, once, and not at all
    when ``scheduler.purge_expired`` is off."""
    from experiments.access import AuditEntry
    from experiments.privacy.retention import purges, store_exists

    engine = registry_engine(settings)
    running_experiment(engine, classes=True, settings=settings)
    assert ExperimentStore(settings, EXPERIMENT).count_events() > 0
    off = settings.model_copy(update={
        "scheduler": settings.scheduler.model_copy(update={"purge_expired": False})})
    producer: Any = clients.producer(settings, SCHEDULER)
    try:
        last_day = tick(settings, engine, producer, at("2030-06-30T23:59:00+02:00"))
        assert last_day.purged == 0 and store_exists(settings, EXPERIMENT)
        assert tick(off, engine, producer, at("2030-07-01T00:01:00+02:00")).purged == 0
        assert store_exists(settings, EXPERIMENT)
        first = tick(settings, engine, producer, at("2030-06-30T22:01:00+00:00"))  # 00:01 Paris
        assert first.purged == 1 and not store_exists(settings, EXPERIMENT)
        assert tick(settings, engine, producer, at("2030-07-02T06:00:00+02:00")).purged == 0
    finally:
        producer.close()
    (purge,) = purges(settings, EXPERIMENT)
    assert purge["actor"].startswith("admin:*:scheduler@") and not purge["forced"]
    with sa.orm.Session(engine) as session:
        (entry,) = session.scalars(sa.select(AuditEntry)
                                   .where(AuditEntry.action == "retention.purge")).all()
    assert entry.actor == purge["actor"] and entry.subject == EXPERIMENT


# --- catching up -------------------------------------------------------------------------


def test_a_run_missed_during_downtime_is_caught_up_on_start(settings: Settings) -> None:
    engine = registry_engine(settings)
    running_experiment(engine)
    clock = {"now": at("2027-12-01T12:00:00+01:00")}
    stop = threading.Event()
    service = threading.Thread(target=run_scheduler, args=(settings,),
                               kwargs={"stop": stop, "clock": lambda: clock["now"]})
    service.start()
    try:
        first = requests(settings, 1)
        assert [(r.analysis, r.due_at) for r in first] == [
            ("monitoring", at("2027-11-29T06:00:00+01:00"))]
    finally:
        stop.set()
        service.join(60)
    # Everything is down from 2027-12-01 to 2028-02-01, across the interim (2028-01-15).
    clock["now"] = at("2028-02-01T12:00:00+01:00")
    stop = threading.Event()
    service = threading.Thread(target=run_scheduler, args=(settings,),
                               kwargs={"stop": stop, "clock": lambda: clock["now"]})
    service.start()
    try:
        published = requests(settings, 3)
    finally:
        stop.set()
        service.join(60)
    # Four partitions: the order across them is not Kafka's to keep.
    assert sorted((r.due_at, r.analysis) for r in published) == [
        (at("2027-11-29T06:00:00+01:00"), "monitoring"),
        (at("2028-01-15T06:00:00+01:00"), "interim"),
        (at("2028-01-31T06:00:00+01:00"), "monitoring"),  # the latest missed Monday
    ]
    with engine.connect() as connection:
        skipped = connection.scalar(sa.select(sa.func.count()).select_from(scheduled_runs_table)
                                    .where(scheduled_runs_table.c.status == "skipped"))
    assert skipped == 8 + 8  # Oct 4 - Nov 22 at the first start, Dec 6 - Jan 24 after


def test_a_scheduler_dead_before_publishing_is_relayed(settings: Settings) -> None:
    engine = registry_engine(settings)
    running_experiment(engine)
    from experiments.runs.scheduler import claim_runs, due_runs

    # A scheduler claimed the interim, then died before Kafka acknowledged it.
    runs = [r for r in due_runs(engine, at("2028-01-16T00:00:00+01:00"))
            if r.analysis == "interim"]
    assert len(claim_runs(engine, runs, claimed_by="dead")) == 1
    relayed = settings.model_copy(update={"scheduler": settings.scheduler.model_copy(
        update={"republish_after_s": 0.01, "catch_up": "latest"})})
    time.sleep(0.05)
    report = run_scheduler(relayed, once=True, clock=lambda: at("2028-01-16T00:00:00+01:00"))
    assert report.republished == 1
    assert [r.analysis for r in requests(settings, 2)].count("interim") == 1


# --- amendments --------------------------------------------------------------------------


def test_a_protocol_amendment_changes_future_runs_only(settings: Settings) -> None:
    engine = registry_engine(settings)
    running_experiment(engine)
    backdate_version(engine, 1, at("2027-06-01T00:00:00+02:00"))
    run_scheduler(settings, once=True, clock=lambda: at("2028-01-20T00:00:00+01:00"))
    amended = (TEXT.replace("- {analysis: interim, at: 2028-01-15}",
                            "- {analysis: interim, at: 2028-01-10}\n"
                            "  - {analysis: interim, at: 2028-03-01}")
               .replace("final, at: 2028-06-30", "final, at: 2028-07-03"))
    amend_protocol(engine, parse_protocol(amended), amended,
                   reason="Second interim requested by the steering committee")
    backdate_version(engine, 2, at("2028-02-01T00:00:00+01:00"))
    run_scheduler(settings, once=True, clock=lambda: at("2028-07-10T00:00:00+02:00"))
    one_offs = {(r.analysis, r.due_at.astimezone(UTC).date(), r.protocol_version)
                for r in requests(settings, 5) if r.analysis != "monitoring"}
    assert one_offs == {("interim", date(2028, 1, 15), 1), ("interim", date(2028, 3, 1), 2),
                        ("final", date(2028, 7, 3), 2)}
    v2 = parse_protocol(amended).sha256
    assert all(r.protocol_sha256 == v2 for r in requests(settings, 5)
               if r.protocol_version == 2)


# --- workers -----------------------------------------------------------------------------

_KILLABLE_WORKER = """
import sys, time
from pathlib import Path
import experiments.runs.records as runs
from experiments.settings import Settings

marker, point = Path(sys.argv[1]), sys.argv[2]
original = runs.write_html if point == "files" else runs._insert

def then_hang(*args, **kwargs):
    found = original(*args, **kwargs)
    marker.write_text(str(args[1]) if point == "files" else found.html_path)
    time.sleep(3600)  # SIGKILLed here

# files: reports written, run not recorded, request not committed;
# record: run recorded, request not committed.
setattr(runs, "write_html" if point == "files" else "_insert", then_hang)
runs.run_analysis_worker(Settings())
"""


def publish(settings: Settings, engine: Engine, *moments: datetime) -> None:
    producer: Any = clients.producer(settings, SCHEDULER)
    try:
        for moment in moments:
            tick(settings, engine, producer, moment)
    finally:
        producer.close()


def serve(settings: Settings) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    worker = threading.Thread(target=run_analysis_worker, args=(settings,),
                              kwargs={"stop": stop})
    worker.start()
    return stop, worker


@pytest.mark.slow
@pytest.mark.parametrize("point", ["files", "record"])
def test_a_worker_killed_mid_run_completes_the_run_once_after_restart(
    settings: Settings, tmp_path: Path, point: str
) -> None:
    engine = registry_engine(settings)
    running_experiment(engine, classes=True, settings=settings)
    from experiments.runs.scheduler import ensure_request_topic

    ensure_request_topic(settings)
    publish(settings, engine, at("2028-01-16T00:00:00+01:00"))  # monitoring + interim
    marker = tmp_path / "killed-after"
    env = settings_env(settings) | {
        "PREUVE_SCHEDULER__WORKER_GROUP_ID": settings.scheduler.worker_group_id}
    log = (tmp_path / "killable.log").open("wb")
    child = subprocess.Popen([sys.executable, "-c", _KILLABLE_WORKER, str(marker), point],
                             env=env,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_until(lambda: marker.exists() or child.poll() is not None, 120), \
            (tmp_path / "killable.log").read_text()
        assert child.poll() is None, (tmp_path / "killable.log").read_text()
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
        log.close()
    written = Path(marker.read_text())
    assert written.exists()
    assert len(list_runs(engine, EXPERIMENT)) == (0 if point == "files" else 1)

    stop, worker = serve(settings)
    try:
        assert wait_until(lambda: len(list_runs(engine, EXPERIMENT)) == 2, 120)
        # A second copy of a request (a relayed publication) changes nothing.
        run = ScheduledRun(EXPERIMENT, "interim", at("2028-01-15T06:00:00+01:00"), 1,
                           parse_protocol(TEXT).sha256, "at: 2028-01-15")
        producer: Any = clients.producer(settings, SCHEDULER)
        producer.send(settings.topics.analysis_requests, key=run.run_key.encode(),
                      value=AnalysisRequest.of(run).to_json()).get(timeout=30)
        producer.close()
        time.sleep(3)
    finally:
        stop.set()
        worker.join(60)
    records = list_runs(engine, EXPERIMENT)
    assert sorted((r.analysis, r.sequence, r.status) for r in records) == [
        ("interim", 1, "done"), ("monitoring", 1, "done")]
    if point == "files":  # the killed attempt's file is an orphan no record names
        assert str(written) not in {r.html_path for r in records}
    else:  # the killed attempt's record stands: the restarted worker did not run it again
        assert str(written) in {r.html_path for r in records}
    for record in records:
        assert record.json_path and Path(record.json_path).exists()
        assert record.html_path and Path(record.html_path).exists()


def test_run_records_hold_what_they_used_and_reports_are_immutable(settings: Settings) -> None:
    engine = registry_engine(settings)
    running_experiment(engine, classes=True, settings=settings)
    from experiments.runs.scheduler import ensure_request_topic

    ensure_request_topic(settings)
    publish(settings, engine, at("2027-10-05T00:00:00+02:00"))  # monitoring of Oct 4
    stop, worker = serve(settings)
    try:
        assert wait_until(lambda: len(list_runs(engine, EXPERIMENT)) == 1, 120)
        (first,) = list_runs(engine, EXPERIMENT)
        assert first.json_path is not None and first.html_path is not None
        first_bytes = Path(first.json_path).read_bytes(), Path(first.html_path).read_bytes()
        publish(settings, engine, at("2027-10-12T00:00:00+02:00"))  # monitoring of Oct 11
        assert wait_until(lambda: len(list_runs(engine, EXPERIMENT)) == 2, 120)
    finally:
        stop.set()
        worker.join(60)
    first, second = list_runs(engine, EXPERIMENT, "monitoring")
    protocol = parse_protocol(TEXT)
    assert (first.sequence, second.sequence) == (1, 2)
    assert first.run_id != second.run_id and first.json_path != second.json_path
    assert (Path(first.json_path).read_bytes(), Path(first.html_path).read_bytes()) == first_bytes
    reports = settings.state_dir / "reports" / EXPERIMENT / "monitoring"
    assert Path(first.html_path).parent == reports
    assert {p.name for p in reports.iterdir()} == {
        f"{r.run_id}.{ext}" for r in (first, second) for ext in ("json", "html")}
    # What the run used.
    assert (first.protocol_version, first.protocol_sha256) == (1, protocol.sha256)
    store = ExperimentStore(settings, EXPERIMENT)
    assert store.count_events() == 16 * 20 * 2 + 8 * 20 * 5
    # The run read the data of its due time (Monday 4 October 2027, 06:00 Paris), not
    # the whole store: the 320 baseline scores of September; neither the endline scores of
    # June 2028 nor the usage from 5 October on.
    due = at("2027-10-04T06:00:00+02:00")
    assert first.watermark["cutoff"] == due.isoformat()
    assert first.watermark["stored_events"] == 16 * 20
    assert first.watermark["latest_event_at"] == at("2027-09-15T09:00:00+02:00").isoformat()
    assert second.watermark["stored_events"] == 16 * 20 + 8 * 20  # one week of usage more
    assert first.watermark["kafka"]["topic"] == settings.topics.events
    # The analysis user may read the stream workers' committed offsets (its ACLs).
    assert first.watermark["kafka"]["offsets"] is not None, first.watermark["kafka"]
    assert {"preuve", "python", "numpy", "scipy", "statsmodels", "pandas"} <= set(first.software)
    results = json.loads(first.results_json or "")
    assert results["experiment"] == EXPERIMENT and results["analysis"] == "monitoring"
    assert results["protocol_sha256"] == protocol.sha256
    assert json.loads(Path(first.json_path).read_text(encoding="utf-8")) == results
    # The database refuses to change a record.
    with pytest.raises(DBAPIError, match="immutable"), engine.begin() as connection:
        connection.execute(sa.text("UPDATE analysis_runs SET status = 'failed'"))
    assert find_run(engine, first.run_key) == first


def test_an_analysis_that_cannot_run_is_recorded_as_failed(settings: Settings) -> None:
    engine = registry_engine(settings)
    running_experiment(engine)  # no class enrolled, nothing stored
    from experiments.runs.records import perform_run

    run = ScheduledRun(EXPERIMENT, "interim", at("2028-01-15T06:00:00+01:00"), 1,
                       parse_protocol(TEXT).sha256, "at: 2028-01-15")
    record = perform_run(settings, AnalysisRequest.of(run), engine)
    assert record.status == "failed" and record.reason == (
        f"{EXPERIMENT}: no class is enrolled yet; nothing to analyse")
    assert record.json_path is None and record.watermark["stored_events"] == 0
    assert perform_run(settings, AnalysisRequest.of(run), engine) == record


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()
                and not t.daemon]
    assert not leftover, leftover


@pytest.mark.slow
def test_several_workers_share_the_requests(settings: Settings, tmp_path: Path) -> None:
    engine = registry_engine(settings)
    running_experiment(engine, classes=True, settings=settings)
    env = settings_env(settings) | {
        "PREUVE_SCHEDULER__WORKER_GROUP_ID": settings.scheduler.worker_group_id,
        "PREUVE_WORKER__SESSION_TIMEOUT_S": "6.0"}
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    handles = [log.open("wb") for log in logs]
    workers = [subprocess.Popen([sys.executable, "-m", "experiments", "scheduler", "--worker"],
                                env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True) for handle in handles]
    try:
        assert wait_until(lambda: all("analysis worker ready" in log.read_text() for log in logs),
                          90), [log.read_text()[-2000:] for log in logs]
        time.sleep(8)  # both join the group and share its 4 partitions
        caught_up = settings.model_copy(update={"scheduler": settings.scheduler.model_copy(
            update={"catch_up": "all"})})
        publish(caught_up, engine, at("2027-12-28T00:00:00+01:00"))  # 13 Mondays
        assert wait_until(lambda: len(list_runs(engine, EXPERIMENT)) == 13, 180), \
            [log.read_text()[-2000:] for log in logs]
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(30)
        for handle in handles:
            handle.close()
    records = list_runs(engine, EXPERIMENT)
    assert sorted(r.sequence for r in records) == list(range(1, 14))
    assert len({r.run_key for r in records}) == 13
    assert len({r.worker.split(":")[1] for r in records}) == 2, "one worker did everything"
    assert [w.returncode for w in workers] == [0, 0]


def test_a_request_the_scheduler_did_not_claim_is_ignored_and_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A forged early "final" written to the requests topic (here by the scheduler's own
    principal, as a stolen credential would) runs nothing: the registry holds no claim."""
    engine = registry_engine(settings)
    running_experiment(engine, classes=True, settings=settings)
    from experiments.runs.scheduler import ensure_request_topic

    ensure_request_topic(settings)
    forged = ScheduledRun(EXPERIMENT, "final", at("2028-06-30T06:00:00+02:00"), 1,
                          parse_protocol(TEXT).sha256, "at: 2028-06-30")
    producer: Any = clients.producer(settings, SCHEDULER)
    try:
        producer.send(settings.topics.analysis_requests, key=forged.run_key.encode(),
                      value=AnalysisRequest.of(forged).to_json()).get(timeout=30)
    finally:
        producer.close()
    with caplog.at_level("ERROR", logger="experiments.runs.records"):
        served = run_analysis_worker(settings, once=True, idle_exit_s=3.0)
    assert served == 1
    assert list_runs(engine, EXPERIMENT) == []
    assert any("not claimed by the scheduler" in r.getMessage() and forged.run_key in
               r.getMessage() for r in caplog.records), caplog.text
