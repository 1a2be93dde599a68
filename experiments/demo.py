"""`preuve demo` (what `make demo` runs): a whole simulated experiment, end to end.

It goes through the same doors as real users, each as its own process: a researcher
validates and registers the protocol, an académie enrolls 40 classes (Preuve randomises
them), the resource streams a school year of usage events to Kafka (a few of them
invalid), the evaluation team imports the baseline and endline reading tests (outcomes
come from trusted sources only: :mod:`experiments.runs.provenance`), the stream worker
routes the events into the experiment's store, the scheduler runs the protocol's schedule (weekly
monitoring, interim, final) through analysis workers, and the final run's French impact
report is stored, ready for the portal; the researcher then records the post-experiment
decision (the programme officer acknowledges it in the portal before closing).

Everything the demo writes lives in ``state_dir/demo/<run>/``; it uses its own topics and
consumer group, so runs never mix. A broker it had to start is stopped at the end.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa

from experiments.protocol.calendar import uai_check_letter
from experiments.settings import Settings

if TYPE_CHECKING:
    from analysis.results import Effect
from experiments.store import ExperimentStore, events_table
from ingest.stream.worker import READY_LINE

__all__ = ["DemoResult", "run_demo"]

logger = logging.getLogger(__name__)

PROTOCOL = Path(__file__).resolve().parent.parent / "protocols" / "fluence-cp-2027.yaml"
EXPERIMENT = "fluence-cp-2027"
RESOURCE = "lectio"
INTERVENTION_START = datetime(2027, 9, 27, 8, 30, tzinfo=UTC)
#: The demo's simulated clock (settings.simulated_now): the day after its final analysis.
SIMULATED_NOW = "2028-07-01T08:00:00+02:00"
INTERVENTION_WEEKS = 34
INVALID_SHARE = 0.03
#: The demo's post-experiment decision rule (issue 19): the core example declares none and
#: an experiment cannot run without one, so the demo registers a copy of it with this
#: section appended (the core example itself stays as the design document has it).
DEMO_DECISION = (
    "decision:                        # added by the demo: running needs a decision rule\n"
    "  at: 2028-09-30\n"
    "  deciders: [\"Comité de pilotage du programme\"]\n"
    "  rule: \"Généraliser si l'effet sur la fluence est positif et d'au moins 0,10 "
    "écart-type, avec au moins la moitié des élèves au-dessus du seuil d'usage.\"\n"
    "  min_effect_size: 0.10\n"
    "  min_active_share: 0.5\n"
)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo's outputs are."""

    home: Path
    results_json: Path
    report_html: Path
    stored_events: int
    dead_letters: int


class _Step:
    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.number = 0

    def __call__(self, title: str) -> None:
        self.number += 1
        self.say(f"\n[{self.number}] {title}")


def _child_env(settings: Settings, home: Path, bootstrap: str, run: str) -> dict[str, str]:
    from ingest.kafka.clients import security_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREUVE_")}
    # The children's state is the run's directory; Kafka's credentials stay the broker's.
    env.update(security_env(settings))
    env.update(
        PREUVE_STATE_DIR=str(home),
        PREUVE_CACHE_DIR=str(settings.cache_dir),
        PREUVE_KAFKA_BOOTSTRAP=bootstrap,
        PREUVE_TOPICS__EVENTS=f"demo-{run}.events",
        PREUVE_TOPICS__DEADLETTER=f"demo-{run}.events.deadletter",
        PREUVE_TOPICS__ENROLLMENTS=f"demo-{run}.enrollments",
        PREUVE_TOPICS__ANALYSIS_REQUESTS=f"demo-{run}.analysis.requests",
        PREUVE_WORKER__GROUP_ID=f"demo-{run}-router",
        PREUVE_KAFKA__PARTITIONS=str(settings.kafka.partitions),
        # The demo plays the school year 2027-2028: its services' clock is at its end
        # (after the final analysis), so that its events are not "in the future" for the
        # gates of ingest/gates.py. Only the demo's children get it.
        PREUVE_SIMULATED_NOW=SIMULATED_NOW,
    )
    dsn = settings.database_dsn()
    if dsn:
        env["PREUVE_DATABASE_URL"] = dsn
    return env


def _preuve(env: dict[str, str], *args: str, ok: tuple[int, ...] = (0,)) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "experiments", *args], env=env, capture_output=True, text=True,
        check=False,
    )
    if result.returncode not in ok:
        raise RuntimeError(
            f"`preuve {' '.join(args)}` exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def _write_classes(path: Path, rng: random.Random) -> list[dict[str, str]]:
    """40 CP classes in 20 REP/REP+ schools of Versailles and Créteil (2 per school)."""
    rows = []
    for school in range(20):
        academie = "versailles" if school < 10 else "creteil"
        department = "078" if academie == "versailles" else "093"
        number = f"{department}{1000 + school:04d}"
        uai = number + uai_check_letter(number)  # enrollment refuses a wrong check letter
        priority = "REP+" if school % 3 == 0 else "REP"
        for letter in "ab":
            rows.append({
                "class_id": f"cp-{school:02d}{letter}", "school_uai": uai, "level": "CP",
                "pupils": str(rng.randint(16, 24)), "academie": academie,
                "education_priority": priority,
            })
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _arms(home: Path) -> dict[str, str]:
    from experiments.database import registry_engine
    from experiments.enrollment.assignments import enrolled_classes

    engine = registry_engine(Settings(state_dir=home))
    return {c.class_id: c.arm for c in enrolled_classes(engine, EXPERIMENT)}


def _write_events(
    path: Path, classes: list[dict[str, str]], arms: dict[str, str], rng: random.Random
) -> tuple[int, int]:
    """A term of usage: pupils of the treatment arm use the resource most weeks; a few
    control pupils use it too (contamination). Returns (valid, invalid) counts."""
    valid = invalid = 0
    with path.open("w", encoding="utf-8") as out:
        for row in classes:
            treated = arms[row["class_id"]] == RESOURCE
            for pupil in range(int(row["pupils"])):
                learner = f"gar-{row['class_id']}-{pupil:02d}"
                sessions = rng.randint(4, 12) if treated else int(rng.random() < 0.15)
                for _ in range(sessions):
                    start = INTERVENTION_START + timedelta(
                        days=rng.randrange(INTERVENTION_WEEKS * 7), minutes=rng.randrange(420)
                    )
                    base = {
                        "occurred_at": start.isoformat(), "resource_id": RESOURCE,
                        "learner_id": learner, "class_id": row["class_id"],
                        "school_uai": row["school_uai"],
                    }
                    events: list[dict[str, object]] = [
                        {**base, "verb": "session_started"},
                        {**base, "verb": "exercise_answered", "duration_s": rng.randint(900, 3000),
                         "score": round(rng.random(), 2), "success": rng.random() < 0.7},
                    ]
                    for event in events:
                        event["event_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                        if rng.random() < INVALID_SHARE:
                            _corrupt(event, rng)
                            invalid += 1
                        else:
                            valid += 1
                        out.write(json.dumps(event) + "\n")
    return valid, invalid


BASELINE_TEST = datetime(2027, 9, 14, 9, 0, tzinfo=UTC)
ENDLINE_TEST = datetime(2028, 6, 6, 9, 0, tzinfo=UTC)


def _write_assessments(
    path: Path, classes: list[dict[str, str]], arms: dict[str, str], rng: np.random.Generator
) -> int:
    """Baseline (September) and endline (June) fluence tests, as the evaluation team hands
    them over: an outcomes file (``learner_id,unit_id,measure,wave,score,assessed_on``)
    that ``preuve outcomes import`` stores; returns how many results.

    Words read per minute in CP: mean ~50, SD ~14 at baseline; class effects give an ICC
    of about 0.15; the resource adds about 0.25 SD (3.8 words) on average; some pupils
    miss a test (3 % at baseline, 6 % at endline).
    """
    count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["learner_id", "unit_id", "measure", "wave", "score", "assessed_on"])
        for row in classes:
            class_effect = rng.normal(0, 6)
            treated = arms[row["class_id"]] == RESOURCE
            for pupil in range(int(row["pupils"])):
                learner = f"gar-{row['class_id']}-{pupil:02d}"
                baseline = rng.normal(50 + class_effect, 14)
                endline = (25 + 0.7 * baseline + class_effect + (3.8 if treated else 0)
                           + rng.normal(0, 10))
                for wave, when, score, missing in (
                        ("baseline", BASELINE_TEST, baseline, 0.03),
                        ("endline", ENDLINE_TEST, endline, 0.06)):
                    if rng.random() < missing:
                        continue
                    writer.writerow([learner, row["class_id"], "fluence", wave,
                                     round(float(score), 1), when.date().isoformat()])
                    count += 1
    return count


def _corrupt(event: dict[str, object], rng: random.Random) -> None:
    """The mistakes resources really make: a naive timestamp, an e-mail instead of a
    pseudonym, a made-up verb, a missing class."""
    kind = rng.randrange(4)
    if kind == 0:
        event["occurred_at"] = str(event["occurred_at"])[:19]
    elif kind == 1:
        event["learner_id"] = "prenom.nom@example.fr"
    elif kind == 2:
        event["verb"] = "clicked"
    else:
        del event["class_id"]


def _wait_for_worker(log: Path, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if READY_LINE in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError("the worker exited:\n" + log.read_text(errors="replace")[-3000:])
        time.sleep(0.3)
    raise RuntimeError("the worker was not ready in time")


def _dead_letters(settings: Settings, topic: str, expected: int) -> Counter[str]:
    from ingest.kafka import clients
    from ingest.kafka.principals import ADMIN

    # The demo plays the operator here: the admin reads the dead-letter topic.
    consumer = clients.consumer(settings, ADMIN, topic, group_id=None, consumer_timeout_ms=3000)
    reasons: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + 30
        while sum(reasons.values()) < expected and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=1000).values():
                for message in messages:
                    headers = dict(message.headers or [])
                    field = headers.get("preuve.field", b"").decode()
                    reasons[f"{field}: {headers.get('preuve.reason', b'').decode()}"] += 1
    finally:
        consumer.close()
    return reasons


FINAL_DUE = "2028-06-30T23:00:00+0000"


@dataclass(frozen=True)
class _FinalRun:
    runs: int
    run_id: str
    protocol_version: int
    protocol_sha256: str
    results_json: Path
    report_html: Path
    primary: Effect | None


def _final_run(home: Path) -> _FinalRun:
    from experiments.database import registry_engine
    from experiments.runs.records import list_runs

    registry = registry_engine(Settings(state_dir=home))
    runs = list_runs(registry, EXPERIMENT)
    finals = [r for r in runs if r.analysis == "final" and r.status == "done"]
    if not finals:
        failed = [f"{r.analysis}: {r.reason}" for r in runs if r.status != "done"][:3]
        raise RuntimeError(f"the final analysis did not complete: {failed}")
    final = finals[-1]
    assert final.json_path is not None and final.html_path is not None
    from analysis.results import AnalysisResults

    results = AnalysisResults.from_json(json.loads(Path(final.json_path).read_text()))
    primary = next((e for e in results.effects if e.estimable), None)
    return _FinalRun(len(runs), final.run_id, final.protocol_version, final.protocol_sha256,
                     Path(final.json_path), Path(final.html_path), primary)


def _officer_token(home: Path) -> str:
    from experiments.access import issue_token
    from experiments.database import registry_engine

    return issue_token(registry_engine(Settings(state_dir=home)), "officer", "*", "demo")


def run_demo(settings: Settings, say: Callable[[str], None] = print) -> DemoResult:
    """Run the whole simulated experiment; returns where its outputs are."""
    from ingest.kafka.clients import local_broker

    run = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    home = settings.state_dir / "demo" / run
    home.mkdir(parents=True, exist_ok=True)
    step = _Step(say)
    seed = 20270901
    rng = random.Random(seed)

    broker = None
    if settings.kafka_bootstrap:
        bootstrap = settings.kafka_bootstrap
    else:
        broker = local_broker(settings)
        started_here = broker.state() is None
        step("Kafka: starting the local broker (Apache Kafka from Maven Central, KRaft mode)")
        bootstrap = broker.up().bootstrap
        say(f"    broker at {bootstrap}")
        if not started_here:
            broker = None  # it was already running: leave it as it was
    env = _child_env(settings, home, bootstrap, run)
    worker: subprocess.Popen[bytes] | None = None
    try:
        # The run's own topics, and each service's ACLs on them, as the Kafka admin.
        _preuve(env, "kafka", "setup")
        # The database's explicit step (the portal, read-only, never migrates).
        _preuve(env, "db", "migrate")
        say(f"    SASL_SSL (SCRAM-SHA-512), one Kafka user per service; topics demo-{run}.*"
            if settings.kafka.security.protocol == "SASL_SSL" else
            f"    {settings.kafka.security.protocol}; topics demo-{run}.*")
        step(f"Researcher: validate and register the protocol {PROTOCOL.name} (with a "
             "decision rule)")
        protocol = home / PROTOCOL.name
        protocol.write_text(PROTOCOL.read_text(encoding="utf-8").rstrip("\n") + "\n"
                            + DEMO_DECISION, encoding="utf-8")
        say("    " + _preuve(env, "protocol", "validate", str(protocol)).strip())
        registered = _preuve(env, "protocol", "register", str(protocol)).strip()
        say("    " + registered.replace("\n", "\n    "))

        step("Académies: enroll 40 CP classes of 20 REP/REP+ schools; Preuve randomises them")
        classes_csv = home / "classes.csv"
        classes = _write_classes(classes_csv, rng)
        output = _preuve(env, "enroll", EXPERIMENT, str(classes_csv))
        say("    " + "\n    ".join(output.strip().splitlines()[-12:]))
        arms = _arms(home)
        say(f"    arms: {dict(Counter(arms.values()))}")

        _preuve(env, "protocol", "advance", EXPERIMENT, "enrolling", "--note", "demo")
        _preuve(env, "protocol", "advance", EXPERIMENT, "running", "--note", "demo")

        step("EdTech: a school year of usage events, sent to Kafka")
        events_file = home / "events.jsonl"
        valid, invalid = _write_events(events_file, classes, arms, rng)
        say("    " + _preuve(env, "events", "send", str(events_file)).strip())
        say(f"    {valid} usage events ({invalid} invalid)")

        step("Evaluation team: the reading tests (baseline in September 2027, endline in "
             "June 2028), imported as the experiment's outcomes")
        outcomes_file = home / "outcomes.csv"
        tests = _write_assessments(outcomes_file, classes, arms, np.random.default_rng(seed))
        say("    " + _preuve(env, "outcomes", "import", EXPERIMENT, str(outcomes_file)).strip())
        valid += tests

        step("Stream worker: validate, pseudonymise, route into the experiment's store")
        log = home / "worker.log"
        with log.open("ab") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "experiments", "worker"], env=env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        _wait_for_worker(log, worker)
        store = ExperimentStore(Settings(state_dir=home), EXPERIMENT)
        deadline = time.monotonic() + 300
        while store.count_events() < valid and time.monotonic() < deadline:
            time.sleep(0.5)
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)
        worker = None
        stored = store.count_events()
        with store.engine.connect() as connection:
            pupils = sa.func.count(sa.distinct(events_table.c.learner_key))
            learners = connection.execute(
                sa.select(events_table.c.arm, pupils).group_by(events_table.c.arm)
            ).all()
        say(f"    stored {stored} of {valid} valid events in experiment {EXPERIMENT}")
        for arm, count in sorted(store.counts_by_arm().items()):
            active = {str(a): int(n) for a, n in learners}.get(arm, 0)
            say(f"      arm {arm:<8} {count:>6} events from {active} pupils")
        reasons = _dead_letters(settings.model_copy(update={"kafka_bootstrap": bootstrap}),
                                env["PREUVE_TOPICS__DEADLETTER"], invalid)
        deadletter = env["PREUVE_TOPICS__DEADLETTER"]
        say(f"    dead-letter topic {deadletter}: {sum(reasons.values())} events")
        for reason, count in reasons.most_common():
            say(f"      {count:>4} × {reason}")
        _preuve(env, "protocol", "advance", EXPERIMENT, "analysing", "--note", "demo")

        step("Scheduler: the protocol's schedule up to 30 June 2028 (weekly monitoring, "
             "interim, final), run by an analysis worker")
        say("    " + _preuve(env, "scheduler", "--once", "--now", FINAL_DUE).strip())
        _preuve(env, "scheduler", "--worker", "--once")
        result = _final_run(home)
        say(f"    {result.runs} analyses recorded; final run {result.run_id} "
            f"(protocol v{result.protocol_version}, sha256 {result.protocol_sha256[:12]}…)")
        effect = result.primary
        if effect is not None:
            say(
                f"    {effect.outcome} ({effect.contrast}, {effect.estimand}): "
                f"{effect.estimate:+.2f} points [{effect.ci_low:+.2f}; "
                f"{effect.ci_high:+.2f}], Hedges' g {effect.hedges_g:+.2f}, "
                f"p = {effect.p_value:.3f}"
            )

        step("Researcher: the post-experiment decision (the programme officer acknowledges "
             "it in the portal, then the experiment can be closed)")
        low = effect.ci_low if effect is not None else None
        decision = "generaliser" if isinstance(low, float) and low > 0 else "ajuster"
        say("    " + _preuve(env, "protocol", "decide", EXPERIMENT, "--decision", decision,
                             "--reason", "Décision de démonstration, au vu du rapport "
                             "final.").strip())

        step("Done")
        token = _officer_token(home)
        say(f"    impact report (HTML, French): {result.report_html}")
        say(f"    results (JSON):               {result.results_json}")
        say(f"    everything of this run:       {home}")
        say(f"    portal: PREUVE_STATE_DIR={home} preuve serve   then open "
            f"http://127.0.0.1:{Settings().portal.port}/ and sign in with the officer token")
        say(f"            {token}")
        return DemoResult(home, result.results_json, result.report_html, stored,
                          sum(reasons.values()))
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(60)
        if broker is not None:
            broker.down()
            say("    (the Kafka broker started for the demo is stopped)")
