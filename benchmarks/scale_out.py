"""Scale-out benchmark (`make bench-scale-out`): Preuve as several processes, some killed.

On this one machine it starts what a national deployment runs on several:

- a Kafka broker as Preuve runs it (SASL_SSL, SCRAM users, ACLs), ``preuve.events`` on 8
  partitions;
- a throwaway PostgreSQL cluster (fsync on): the registry (receipts, runs) and the stores;
- 4 stream workers (``preuve worker``, one consumer group), 2 gateways (``preuve
  gateway`` on two ports, one receipts index in the registry), 2 analysis workers
  (``preuve scheduler --worker``);

then offers a load through both gateways (concurrent HTTP clients, batches of 100 native
events; a batch that fails — connection lost, 503 — is re-sent, to the other gateway,
until it is answered 202), and meanwhile:

- SIGKILLs one stream worker and one gateway mid-load, and restarts them;
- publishes 13 weekly analysis runs of a running experiment (the example protocol, 16
  enrolled classes) and SIGKILLs one analysis worker in the middle of a run (its log
  shows a run started and not recorded), then restarts it.

It checks, and prints as ``exactly_once=yes|no`` and ``analyses_once=yes|no``:

- every event answered 202 is stored exactly once (the stored event ids are exactly the
  accepted ones, as many rows as ids), and how the re-sent batches were de-duplicated
  (by the receipts: ``duplicates`` in the 202 answers; by the worker: copies in Kafka
  beyond one per event);
- every run the scheduler published is recorded once in ``analysis_runs``, ``done``.

And the throughput per core: accepted events/s over the whole window (first request to
last event stored), the CPU time of each kind of process read from /proc (µs/event; a
killed process's CPU is read just before its kill; PostgreSQL's exited backends are in
the postmaster's children time), the cores each kind used, and events/s ÷ cores used by
the ingest path (broker, PostgreSQL, gateways, stream workers; the analysis workers'
CPU is shown per run, the load generator's apart). Last, the on-disk size of the events
table per row (``pg_total_relation_size``: indexes and TOAST included), a figure of the
capacity model (benchmarks/README.md).

    .venv/bin/python benchmarks/scale_out.py [--events 200000] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from benchmarks.proc_cpu import tree_cpu_seconds  # noqa: E402
from experiments.access import issue_token  # noqa: E402
from experiments.database import dispose_engines, registry_engine, store_schema  # noqa: E402
from experiments.settings import (  # noqa: E402
    KafkaSecurity,
    KafkaSettings,
    SchedulerSettings,
    Settings,
    TopicNames,
    WorkerSettings,
)
from experiments.store import ExperimentStore, StoredEvent  # noqa: E402
from ingest.contract import EnrollmentMessage  # noqa: E402
from ingest.kafka import clients  # noqa: E402
from ingest.kafka.access import ensure_topics  # noqa: E402
from ingest.kafka.broker import LocalBroker, free_port  # noqa: E402
from ingest.kafka.principals import ADMIN, SCHEDULER, USERS  # noqa: E402
from ingest.kafka.producer import publish_enrollments  # noqa: E402
from tests.support.events import register_enrollments  # noqa: E402
from tests.support.postgres import PostgresCluster, wait_until  # noqa: E402
from tests.support.worker import WorkerProcess, settings_env  # noqa: E402

LOAD_EXPERIMENT = "scale-out"
ANALYSED = "fluence-cp-2027"
CLASSES = 2_000
SCHOOL = "0750001U"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class CpuMeter:
    """CPU seconds per kind of process since the load began, sampled twice a second.

    A process is tracked from its start (a restarted one's start-up is a cost of the
    fault) or, for those already running when the load begins, from that moment."""

    last: dict[tuple[str, int], float] = field(default_factory=dict)
    base: dict[tuple[str, int], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def track(self, kind: str, pid: int) -> None:
        with self.lock:
            self.last[(kind, pid)] = tree_cpu_seconds(pid)
            self.base.setdefault((kind, pid), 0.0)

    def begin(self) -> None:
        """From now on: the CPU spent so far by every tracked process is left out."""
        self.sample()
        with self.lock:
            self.base = dict(self.last)

    def sample(self, only: int | None = None) -> None:
        with self.lock:
            for (kind, pid) in list(self.last):
                if only is not None and pid != only:
                    continue
                if Path(f"/proc/{pid}").exists():
                    self.last[(kind, pid)] = max(self.last[(kind, pid)], tree_cpu_seconds(pid))

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with self.lock:
            for (kind, pid), seconds in self.last.items():
                out[kind] = out.get(kind, 0.0) + seconds - self.base.get((kind, pid), 0.0)
        return out


# --- processes -------------------------------------------------------------------------------


class Service:
    """A ``preuve`` service in a child process (own session), logging to a file."""

    def __init__(self, kind: str, argv: list[str], env: dict[str, str], log: Path,
                 meter: CpuMeter) -> None:
        self.kind, self.argv, self.env, self.log, self.meter = kind, argv, env, log, meter
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready: Any, timeout_s: float = 120) -> Service:
        """Start it and wait until ``ready(log text written since)`` is true."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "experiments", *self.argv], env=self.env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=ROOT)
        self.meter.track(self.kind, self.process.pid)
        process = self.process

        def since() -> str:
            return self.log.read_bytes()[offset:].decode(errors="replace")

        if not wait_until(lambda: ready(since()) or process.poll() is not None, timeout_s):
            raise RuntimeError(f"{self.kind} not ready:\n{self.log.read_text()[-3000:]}")
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.kind} exited:\n{self.log.read_text()[-3000:]}")
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.meter.sample(only=self.process.pid)
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.meter.sample(only=self.process.pid)
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)


class StreamWorker(WorkerProcess):
    """tests/support's worker process, its CPU tracked."""

    def __init__(self, settings: Settings, log: Path, meter: CpuMeter) -> None:
        super().__init__(settings, log)
        self.meter = meter

    def start(self, ready_timeout_s: float = 120.0) -> StreamWorker:
        super().start(ready_timeout_s)
        assert self.process is not None
        self.meter.track("stream workers", self.process.pid)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.meter.sample(only=self.process.pid)
        super().kill()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        if self.process is not None and self.process.poll() is None:
            self.meter.sample(only=self.process.pid)
        return super().stop(timeout_s)


def _analysis_ready(text: str) -> bool:
    return "analysis worker ready" in text


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# --- the experiments -------------------------------------------------------------------------


def _settings(root: Path, kafka: KafkaSettings, bootstrap: str, database_url: str) -> Settings:
    tag = uuid.uuid4().hex[:6]
    return Settings(
        simulated_now="2028-08-31T12:00:00+02:00",  # the events are of 2027-2028
        state_dir=root / "state",
        kafka_bootstrap=bootstrap,
        kafka=kafka,
        database_url=database_url,
        pseudonym_key="scale-out-key-" * 3,
        topics=TopicNames(events="scale.events", deadletter="scale.deadletter",
                          enrollments="scale.enrollments", analysis_requests="scale.requests"),
        # 6 s is the broker's smallest session timeout: a killed worker's partitions move fast.
        worker=WorkerSettings(group_id=f"scale-{tag}", batch_size=2000, batch_seconds=0.2,
                              session_timeout_s=6.0),
        scheduler=SchedulerSettings(worker_group_id=f"scale-{tag}-analysis", catch_up="all"),
    )


def _load_enrollments() -> list[EnrollmentMessage]:
    return [
        EnrollmentMessage(
            class_id=f"c{i:05d}", experiment_id=LOAD_EXPERIMENT, resource_id="lectio",
            arm="lectio" if i % 2 else "usual", school_uai=SCHOOL, academie="paris",
            at=datetime(2027, 9, 1, tzinfo=UTC))
        for i in range(CLASSES)
    ]


def _analysed_experiment(settings: Settings) -> None:
    """The example protocol, running, 16 enrolled classes with a baseline, an endline and
    some usage in its store (as tests/integration/test_scheduler.py sets it up)."""
    from experiments.enrollment.design import enrollment_design
    from experiments.enrollment.files import read_classes
    from experiments.enrollment.transaction import enroll_classes
    from experiments.protocol.language import parse_protocol
    from experiments.registry import register_protocol, transition_experiment
    from tests.support.decision import with_decision
    from tests.support.uai import uai

    text = with_decision((ROOT / "protocols" / f"{ANALYSED}.yaml").read_text(encoding="utf-8"))
    engine = registry_engine(settings)
    register_protocol(engine, parse_protocol(text), text)
    transition_experiment(engine, ANALYSED, "enrolling")
    design, _ = enrollment_design(engine, ANALYSED)
    rows = "class_id,school_uai,level,pupils,academie,education_priority\n" + "".join(
        f"a{i:02d},{uai(f'078{i // 4:04d}')},CP,20,versailles,{'REP' if i % 2 else 'REP+'}\n"
        for i in range(16))
    enrolled = enroll_classes(engine, design, read_classes(rows, design, today=date(2027, 9, 1)),
                              actor="bench").enrolled
    rng = random.Random(20270901)
    events = []

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).astimezone(UTC)

    for c in enrolled:
        for k in range(20):
            learner = f"{c.class_id}-{k:02d}"
            baseline = rng.gauss(50, 14)
            endline = 25 + 0.7 * baseline + (4 if c.arm == "lectio" else 0) + rng.gauss(0, 10)
            for when, score in ((at("2027-09-15T09:00:00+02:00"), baseline),
                                (at("2028-06-05T09:00:00+02:00"), endline)):
                events.append(StoredEvent(str(uuid.uuid4()), when, "lectio", learner, c.class_id,
                                          c.school_uai, c.arm, "assessment_scored", "fluence",
                                          None, score,
                                          authority=f"assessor:{ANALYSED}:0123456789ab"))
            if c.arm == "lectio":
                for week in range(5):
                    events.append(StoredEvent(
                        str(uuid.uuid4()), at("2027-10-05T10:00:00+02:00") + timedelta(weeks=week),
                        "lectio", learner, c.class_id, c.school_uai, c.arm, "activity_completed",
                        "ex-1", 900.0, is_usage=True))
    ExperimentStore(settings, ANALYSED).write_events(events, datetime.now(UTC))
    transition_experiment(engine, ANALYSED, "running")


def _publish_runs(settings: Settings) -> int:
    """The scheduler's look at 2027-12-28 with catch-up "all": 13 weekly runs."""
    from experiments.runs.scheduler import tick

    producer: Any = clients.producer(settings, SCHEDULER)
    try:
        report = tick(settings, registry_engine(settings), producer,
                      datetime.fromisoformat("2027-12-28T00:00:00+01:00").astimezone(UTC))
    finally:
        producer.close()
    return report.claimed


# --- the load --------------------------------------------------------------------------------


@dataclass
class Load:
    target: int
    accepted: set[str] = field(default_factory=set)
    answered: int = 0
    resent_batches: int = 0
    resend_duplicates: int = 0
    failures: int = 0
    refused: list[str] = field(default_factory=list)


def _event(rng: random.Random) -> dict[str, object]:
    class_no = rng.randrange(CLASSES)
    when = datetime(2027, 9, 6, 8, tzinfo=UTC) + timedelta(seconds=rng.randrange(280 * 86400))
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "occurred_at": when.isoformat(),
        "resource_id": "lectio",
        "learner_id": f"gar-{class_no}-{rng.randrange(25)}",
        "class_id": f"c{class_no:05d}",
        "school_uai": SCHOOL,
        "verb": "exercise_answered",
        "duration_s": rng.randrange(5, 600),
    }


async def _client(number: int, urls: list[str], token: str, load: Load, batch: int,
                  batches: int) -> None:
    import httpx

    rng = random.Random(1000 + number)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=60) as http:
        for sent in range(batches):
            body = [_event(rng) for _ in range(batch)]
            target = (number + sent) % len(urls)
            attempt = 0
            while True:
                try:
                    response = await http.post(f"{urls[target]}/v1/events", json=body,
                                               headers=headers)
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 202:
                    answer = response.json()
                    load.accepted.update(answer["event_ids"])
                    load.answered += len(answer["event_ids"])
                    if attempt:
                        load.resent_batches += 1
                        load.resend_duplicates += int(answer["duplicates"])
                    break
                if response is not None and response.status_code not in (502, 503, 504):
                    load.refused.append(f"{response.status_code} {response.text[:300]}")
                    break
                load.failures += 1
                attempt += 1
                target = (target + 1) % len(urls)  # the other gateway
                await asyncio.sleep(0.2)


async def _offer(urls: list[str], token: str, load: Load, clients_n: int, batch: int) -> None:
    per_client = max(1, load.target // (clients_n * batch))
    await asyncio.gather(*(_client(n, urls, token, load, batch, per_client)
                           for n in range(clients_n)))


# --- the run ---------------------------------------------------------------------------------


def _kafka_records(settings: Settings) -> int:
    from kafka import TopicPartition

    consumer = clients.consumer(settings, ADMIN, group_id=None)
    try:
        partitions = [TopicPartition(settings.topics.events, p)
                      for p in consumer.partitions_for_topic(settings.topics.events)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def run(args: argparse.Namespace) -> bool:
    root = Path(tempfile.mkdtemp(prefix="preuve-scale-"))
    broker = LocalBroker(root / "kafka", Settings().cache_dir, KafkaSettings().version,
                         partitions=args.partitions, heap="1g", users=USERS)
    kafka = KafkaSettings(partitions=args.partitions,
                          security=KafkaSecurity(secrets_dir=broker.secrets_dir))
    meter = CpuMeter()
    cluster: PostgresCluster | None = None
    streams: list[StreamWorker] = []
    services: list[Service] = []
    sampling = threading.Event()
    try:
        bootstrap = broker.up().bootstrap
        cluster = PostgresCluster.start(durable=True)  # fsync on, as in production
        settings = _settings(root, kafka, bootstrap, cluster.create_database("scale"))
        print(f"machine: {platform.node()} {os.cpu_count()} cores, "
              f"Python {platform.python_version()}, Kafka {broker.version} SASL_SSL, "
              f"load average before {os.getloadavg()[0]:.2f}")
        print(f"{args.stream_workers} stream workers on {args.partitions} partitions, "
              f"{args.gateways} gateways, {args.analysis_workers} analysis workers, "
              f"{args.clients} clients x {args.batch}-event batches, {args.events:,} events")
        ensure_topics(settings)
        from experiments.runs.scheduler import ensure_request_topic

        ensure_request_topic(settings)
        register_enrollments(settings, _load_enrollments())
        publish_enrollments(settings, _load_enrollments())
        _analysed_experiment(settings)
        token = issue_token(registry_engine(settings), "edtech", "lectio", "scale-out")
        state = broker.state()
        assert state is not None
        meter.track("kafka broker", state.pid)
        meter.track("postgresql", int((cluster.data / "postmaster.pid").read_text().split()[0]))

        logs = root / "logs"
        logs.mkdir()
        streams = [StreamWorker(settings, logs / f"stream-{i}.log", meter)
                   for i in range(args.stream_workers)]
        for worker in streams:
            worker.start()
        env = settings_env(settings) | {
            "PREUVE_SCHEDULER__WORKER_GROUP_ID": settings.scheduler.worker_group_id}
        ports = [free_port() for _ in range(args.gateways)]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        gateways = [Service("gateways", ["gateway", "--port", str(port)],
                            env | {"PREUVE_GATEWAY__PORT": str(port)},
                            logs / f"gateway-{i}.log", meter)
                    for i, port in enumerate(ports)]
        analysts = [Service("analysis workers", ["scheduler", "--worker"], env,
                            logs / f"analysis-{i}.log", meter)
                    for i in range(args.analysis_workers)]
        services = [*gateways, *analysts]
        for gateway, url in zip(gateways, urls, strict=True):
            gateway.start(lambda _text, url=url: _healthy(url))
        for analyst in analysts:
            analyst.start(_analysis_ready)
        time.sleep(8)  # every group member holds partitions before the load

        store = ExperimentStore(settings, LOAD_EXPERIMENT)
        registry = registry_engine(settings)
        load = Load(target=args.events)
        events: list[str] = []

        def sampler() -> None:
            while not sampling.wait(0.5):
                meter.sample()

        threading.Thread(target=sampler, daemon=True).start()

        async def chaos() -> None:
            while len(load.accepted) < 0.4 * load.target:
                await asyncio.sleep(0.2)
            await asyncio.to_thread(streams[0].kill)
            await asyncio.to_thread(gateways[-1].kill)
            events.append(f"SIGKILL stream worker 0 and gateway {len(gateways) - 1} at "
                          f"{len(load.accepted):,} accepted events")
            await asyncio.sleep(2)
            await asyncio.to_thread(streams[0].start)
            await asyncio.to_thread(gateways[-1].start, lambda _text: _healthy(urls[-1]))
            events.append(f"restarted them at {len(load.accepted):,} accepted events")

        async def analyses() -> None:
            from experiments.runs.records import list_runs

            while len(load.accepted) < 0.2 * load.target:
                await asyncio.sleep(0.2)
            published = await asyncio.to_thread(_publish_runs, settings)
            events.append(f"{published} analysis runs published at "
                          f"{len(load.accepted):,} accepted events")
            def in_hand() -> int:
                """Runs the worker has started and not recorded: a run starts by reading
                its inputs and ends with its record (their log lines)."""
                log = analysts[0].log.read_text(errors="replace")
                return log.count(" units, ") - log.count(" done, run ")

            # The kill lands in the middle of a run, while others are due.
            deadline = time.monotonic() + 300
            while in_hand() < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(analysts[0].kill)
            done = len(list_runs(registry, ANALYSED))
            events.append(f"SIGKILL analysis worker 0 with {done} of {published} runs recorded, "
                          f"{in_hand()} run in its hands")
            await asyncio.sleep(2)
            await asyncio.to_thread(analysts[0].start, _analysis_ready)
            events.append(f"restarted it with {len(list_runs(registry, ANALYSED))} of "
                          f"{published} runs recorded")

        async def offered() -> None:
            await asyncio.gather(_offer(urls, token, load, args.clients, args.batch), chaos(),
                                 analyses())

        meter.begin()
        generator_before = sum(os.times()[:2])
        began = time.perf_counter()
        asyncio.run(offered())
        offered_s = time.perf_counter() - began
        if not wait_until(lambda: store.count_events() >= len(load.accepted), 600, 1.0):
            print(f"the store holds {store.count_events():,} of {len(load.accepted):,} accepted "
                  "events after 10 minutes")
        window = time.perf_counter() - began
        meter.sample()
        cpu = meter.totals()

        from experiments.runs.records import analysis_runs_table, list_runs
        from experiments.runs.scheduler import scheduled_runs_table

        with registry.connect() as connection:
            due = connection.execute(sa.select(sa.func.count()).select_from(scheduled_runs_table)
                                     .where(scheduled_runs_table.c.status != "skipped")).scalar()
        wait_until(lambda: len(list_runs(registry, ANALYSED)) >= (due or 0), 900, 1.0)
        sampling.set()
        for line in events:
            print(f"  {line}")

        # --- checks ---
        stored_ids = store.event_ids()
        rows = store.count_events()
        kafka_records = _kafka_records(settings)
        schema = store_schema(LOAD_EXPERIMENT)
        with cluster_connection(settings) as connection:
            receipts = connection.execute(sa.text(
                "SELECT count(*), count(*) FILTER (WHERE state = 'confirmed') "
                "FROM preuve_registry.gateway_receipts WHERE resource_id = 'lectio'")).one()
            size = connection.execute(sa.text(
                f"SELECT pg_total_relation_size('{schema}.events'), "
                f"pg_relation_size('{schema}.events')")).one()
            with_usage = connection.execute(sa.text(
                f"SELECT pg_total_relation_size('{schema}.daily_usage')")).scalar_one()
        with registry.connect() as connection:
            runs = connection.execute(sa.select(
                analysis_runs_table.c.run_key, analysis_runs_table.c.status)
                .where(analysis_runs_table.c.experiment_id == ANALYSED)).all()
        missing = len(load.accepted - stored_ids)
        extra = len(stored_ids - load.accepted)
        exactly_once = (not load.refused and missing == 0 and extra == 0
                        and rows == len(stored_ids) == len(load.accepted))
        run_keys = [r.run_key for r in runs]
        analyses_once = (len(run_keys) == len(set(run_keys)) == (due or 0) > 0
                         and all(r.status == "done" for r in runs))

        print(f"accepted (202) {len(load.accepted):,} distinct events in {load.answered:,} "
              f"answered items; stored rows {rows:,}, distinct stored ids {len(stored_ids):,}; "
              f"missing {missing}, not accepted but stored {extra}, refused {len(load.refused)}")
        print(f"re-sent batches {load.resent_batches} after {load.failures} failed attempts: "
              f"{load.resend_duplicates} of their events answered as duplicates by the "
              f"receipts; Kafka holds {kafka_records:,} records for {len(stored_ids):,} "
              f"events: {kafka_records - len(stored_ids)} extra copies, de-duplicated by the "
              f"worker; receipts {receipts[0]:,} ({receipts[1]:,} confirmed)")
        print(f"analysis runs due {due}, recorded {len(run_keys)}, distinct run keys "
              f"{len(set(run_keys))}, done {sum(r.status == 'done' for r in runs)}")
        for refusal in load.refused[:5]:
            print(f"  refused: {refusal}")

        count = len(load.accepted)
        rate = count / window
        print(f"offered in {offered_s:.1f} s; last event stored {window:.1f} s after the first "
              f"request: {rate:,.0f} events/s end to end, load average "
              f"{os.getloadavg()[0]:.2f}")
        preuve = 0.0
        for kind in ("gateways", "stream workers", "postgresql", "kafka broker"):
            seconds = cpu.get(kind, 0.0)
            preuve += seconds
            print(f"  {kind:<17} {seconds / count * 1e6:8.1f} us CPU/event  "
                  f"{seconds / window:5.2f} cores")
        analysis = cpu.get("analysis workers", 0.0)
        print(f"  {'analysis workers':<17} {analysis / max(len(run_keys), 1):8.2f} s CPU/run    "
              f"{analysis / window:5.2f} cores  (not per event: not counted below)")
        generator = sum(os.times()[:2]) - generator_before
        print(f"  {'load generator':<17} {generator / count * 1e6:8.1f} us CPU/event  "
              f"{generator / window:5.2f} cores  (this script: not counted below)")
        cores = preuve / window
        print(f"cores used by ingest {cores:.2f} of {os.cpu_count()}: "
              f"{preuve / count * 1e6:.1f} us CPU/event in all")
        print(f"events_bytes_per_row={size[0] / max(rows, 1):.0f}  (heap alone "
              f"{size[1] / max(rows, 1):.0f}; daily_usage {with_usage:,} bytes)")
        print(f"per_core_events_s={rate / cores:.0f}  (events/s end to end / cores used by "
              f"gateways, stream workers, PostgreSQL and Kafka, this run)")
        print(f"analyses_once={'yes' if analyses_once else 'no'}")
        print(f"exactly_once={'yes' if exactly_once else 'no'}  "
              f"(accepted {count}, stored {rows}, missing {missing}, extra {extra})")
        return exactly_once and analyses_once
    finally:
        sampling.set()
        for service in [*services]:
            service.stop()
        for worker in streams:
            worker.stop()
        dispose_engines()
        if cluster is not None:
            cluster.stop()
        broker.down()
        if args.keep:
            print(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def cluster_connection(settings: Settings) -> Any:
    """A connection to the run's database (registry and stores in one cluster)."""
    engine = sa.create_engine(settings.database_dsn() or "", poolclass=sa.pool.NullPool)
    return engine.connect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--stream-workers", type=int, default=4)
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--analysis-workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the logs (printed path)")
    args = parser.parse_args()
    # SIGTERM ends the run like Ctrl-C, so that the broker and cluster are still stopped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.exit(0 if run(args) else 1)


if __name__ == "__main__":
    main()
