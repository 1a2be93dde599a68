"""Ingest benchmark (`make bench-ingest`): how close the stream worker gets to Kafka itself.

On a local broker it pre-loads N valid events (default 1,000,000) into a fresh
`preuve.events`, then measures in the same run:

  (a) a bare aiokafka consumer reading the topic and decoding JSON, nothing else — the
      ceiling, and the baseline of the ratios;
  (b) one `preuve worker` from the same topic into the SQLite store;
  (c) one `preuve worker` into the PostgreSQL store (a throwaway cluster);
  (d) the HTTP gateway's accepted events/s under a concurrent load generator;
  (e) end-to-end latency (occurred_at → stored_at) at a steady offered load of 5,000
      events/s through one worker into PostgreSQL;
  (f) the PostgreSQL store alone: the worker's store writes (batches of 2,000 already
      validated, pseudonymised events), with no Kafka and no validation in the loop —
      the ceiling that the database path puts on (c) on this machine;
  (g) the PostgreSQL COPY floor of the same rows, before and after (c);
  (h) Kafka Connect + Debezium's JDBC sink, the worker's peer (both: `ingest_peers.py`);

and prints events/s, the worker's peak memory, p50/p99 latency, and last every
`ratio_*=X.XX` line of the run, each naming its baseline. Results and the machine go in
benchmarks/README.md.

All of it twice by default (``--security both``): on a PLAINTEXT broker, then on a
SASL_SSL one (SCRAM-SHA-512 over TLS, ACLs, every client its service's user, as Preuve
runs), and last a table of the two side by side: the cost of security, measured.

    .venv/bin/python benchmarks/bench_ingest.py [--events 1000000] [--skip-gateway]
        [--skip-connect]
        [--security both|SASL_SSL|PLAINTEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from ingest_gateway import measure_gateway  # noqa: E402  (benchmarks/)

from benchmarks.proc_cpu import cpu_seconds, peak_rss_mb, postgres_cpu_seconds  # noqa: E402
from experiments.database import dispose_engines  # noqa: E402
from experiments.settings import (  # noqa: E402
    KafkaSecurity,
    KafkaSettings,
    Settings,
    TopicNames,
    WorkerSettings,
)
from experiments.store import ExperimentStore, events_table  # noqa: E402
from ingest.contract import EnrollmentMessage  # noqa: E402
from ingest.kafka import clients  # noqa: E402
from ingest.kafka.access import ensure_topics  # noqa: E402
from ingest.kafka.broker import LocalBroker  # noqa: E402
from ingest.kafka.principals import GATEWAY, USERS, WORKER  # noqa: E402
from ingest.kafka.producer import publish_enrollments  # noqa: E402
from tests.support.events import register_enrollments  # noqa: E402
from tests.support.postgres import PostgresCluster  # noqa: E402
from tests.support.worker import WorkerProcess  # noqa: E402

CLASSES = 2_000
EXPERIMENT = "bench-ingest"


def _settings(root: Path, kafka: KafkaSettings, bootstrap: str, tag: str,
              database_url: str | None = None) -> Settings:
    return Settings(
        simulated_now="2028-08-31T12:00:00+02:00",  # its events: 2027-2028
        state_dir=root / tag,
        kafka_bootstrap=bootstrap,
        kafka=kafka,
        database_url=database_url,
        pseudonym_key="bench-key" * 5,
        topics=TopicNames(
            events="bench.events",
            deadletter="bench.deadletter",
            enrollments="bench.enrollments",
            analysis_requests="bench.requests",
        ),
        worker=WorkerSettings(group_id=f"bench-{tag}", batch_size=2000, batch_seconds=0.2),
    )


def _event(rng: random.Random, when: datetime) -> dict[str, object]:
    class_no = rng.randrange(CLASSES)
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "occurred_at": when.isoformat(),
        "resource_id": "lectio",
        "learner_id": f"gar-{class_no}-{rng.randrange(25)}",
        "class_id": f"c{class_no:05d}",
        "school_uai": "0750001U",
        "verb": "exercise_answered",
        "duration_s": rng.randrange(5, 600),
    }


def _enrollments() -> list[EnrollmentMessage]:
    return [
        EnrollmentMessage(
            class_id=f"c{i:05d}", experiment_id=EXPERIMENT, resource_id="lectio",
            arm="lectio" if i % 2 else "usual", school_uai="0750001U", academie="paris",
            at=datetime(2027, 9, 1, tzinfo=UTC),
        )
        for i in range(CLASSES)
    ]


def preload(settings: Settings, count: int) -> float:
    rng = random.Random(1)
    start = datetime(2027, 10, 1, tzinfo=UTC)
    producer = clients.producer(settings, GATEWAY, linger_ms=20)
    began = time.perf_counter()
    for i in range(count):
        event = _event(rng, start + timedelta(seconds=i))
        producer.send(
            settings.topics.events,
            key=str(event["class_id"]).encode(),  # type: ignore[attr-defined]
            value=json.dumps(event).encode(),
        )
    producer.flush()  # type: ignore[attr-defined]
    producer.close()  # type: ignore[attr-defined]
    return count / (time.perf_counter() - began)


async def _bare_consumer(settings: Settings, topic: str, count: int) -> float:
    consumer = clients.aio_consumer(
        settings, WORKER, topic, group_id=None, max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    seen = 0
    began = time.perf_counter()
    try:
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in batch.values():
                for message in messages:
                    json.loads(message.value)
                    seen += 1
    finally:
        await consumer.stop()
    return count / (time.perf_counter() - began)


def _stored_in_log(log: Path) -> int:
    """Events the worker says it stored (its per-batch log lines): polling the store with
    COUNT(*) every half second would cost the database a scan of a growing table."""
    text = log.read_text(errors="replace")
    return sum(int(m) for m in re.findall(r"stored (\d+) events in experiment", text))


def run_worker(
    settings: Settings, count: int, log: Path, cluster: PostgresCluster | None = None
) -> tuple[float, float, float, float]:
    """(events/s, peak RSS in MiB, worker CPU µs/event, PostgreSQL CPU µs/event) of one
    worker storing ``count`` events; the store is counted once at the end."""
    store = ExperimentStore(settings, EXPERIMENT)
    register_enrollments(settings, _enrollments())  # the worker believes the registry's only
    worker = WorkerProcess(settings, log)
    worker.start(ready_timeout_s=120)
    assert worker.process is not None
    pid = worker.process.pid
    cpu_before = cpu_seconds(pid)
    pg_before = postgres_cpu_seconds(cluster) if cluster else 0.0
    began = time.perf_counter()
    try:
        while _stored_in_log(log) < count:
            if worker.process.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:])
            time.sleep(0.2)
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds(pid) - cpu_before
        pg = (postgres_cpu_seconds(cluster) - pg_before) if cluster else float("nan")
        peak = peak_rss_mb(pid)
    finally:
        worker.stop()
    stored = store.count_events()
    if stored != count:
        raise RuntimeError(f"the store holds {stored:,} events, expected {count:,}")
    return count / elapsed, peak, cpu / count * 1e6, pg / count * 1e6


def run_store_alone(settings: Settings, count: int) -> float:
    """Events/s of ``ExperimentStore.write_events`` alone, in batches like the worker's."""
    from experiments.store import StoredEvent

    rng = random.Random(2)
    start = datetime(2027, 10, 1, tzinfo=UTC)
    events = []
    for i in range(count):
        e = _event(rng, start + timedelta(seconds=i))
        events.append(StoredEvent(
            str(e["event_id"]), start + timedelta(seconds=i), "lectio",
            f"key-{e['learner_id']}", str(e["class_id"]), "0750001U",
            "lectio" if i % 2 else "usual", "exercise_answered",
            duration_s=float(e["duration_s"]),  # type: ignore[arg-type]
            is_usage=True,
        ))
    store = ExperimentStore(settings, EXPERIMENT)
    batch = settings.worker.batch_size
    began = time.perf_counter()
    for k in range(0, count, batch):
        store.write_events(events[k:k + batch], datetime.now(UTC))
    return count / (time.perf_counter() - began)


def _send_steadily(settings: Settings, producer: Any, rng: random.Random, rate: int,
                   total: int) -> None:
    """Produce ``total`` events at ``rate`` events/s, each dated when it is sent."""
    began = time.perf_counter()
    for i in range(total):
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        event = _event(rng, datetime.now(UTC))
        producer.send(
            settings.topics.events,
            key=str(event["class_id"]).encode(),
            value=json.dumps(event).encode(),
        )
    producer.flush()


def _wait_stored(log: Path, offset: int, count: int, worker: WorkerProcess,
                 timeout_s: float = 120) -> None:
    """Until the worker's log (from ``offset``) says ``count`` events were stored."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_bytes()[offset:].decode(errors="replace")
        if sum(int(m) for m in re.findall(r"stored (\d+) events in experiment", text)) >= count:
            return
        if worker.process is not None and worker.process.poll() is not None:
            raise RuntimeError(text[-3000:])
        time.sleep(0.2)
    raise RuntimeError(f"the worker did not store {count:,} events in {timeout_s:.0f} s:\n"
                       + log.read_text(errors="replace")[-3000:])


def run_latency(settings: Settings, rate: int, seconds: int, log: Path,
                warmup_s: float = 5) -> tuple[float, float]:
    """p50 and p99 (ms) of occurred_at → stored_at at a steady offered load, on a warmed
    worker: it is started, has its partitions assigned, and has stored ``warmup_s``
    seconds of the same load before the measured events are sent (so the figures are the
    steady state's, not a start-up's: group join, first look-ups, empty caches).

    occurred_at is the time the benchmark sent the event; stored_at the time the worker
    began the write of its batch (the worker's clock, same machine). The worker's progress
    is read from its log: counting the store's rows every 0.2 s (COUNT(*) over 10^6 rows)
    took a core of PostgreSQL away from the worker while it was measured."""
    offset = log.stat().st_size if log.exists() else 0
    worker = WorkerProcess(settings, log).start(ready_timeout_s=120)
    producer = clients.producer(settings, GATEWAY, linger_ms=1)
    # Each call its own event ids (the same seed twice made duplicates, never stored).
    rng = random.Random(f"{rate}-{time.time_ns()}")
    total = rate * seconds
    warm = int(rate * warmup_s)
    try:
        deadline = time.monotonic() + 60  # the group's rebalance is over
        while b"assigned partitions" not in log.read_bytes()[offset:]:
            if time.monotonic() > deadline:
                raise RuntimeError("the latency worker was never assigned partitions")
            time.sleep(0.1)
        _send_steadily(settings, producer, rng, rate, warm)
        _wait_stored(log, offset, warm, worker)
        began_at = datetime.now(UTC)
        _send_steadily(settings, producer, rng, rate, total)
        _wait_stored(log, offset, warm + total, worker)
    finally:
        producer.close()  # type: ignore[attr-defined]
        worker.stop()
    ended_at = datetime.now(UTC)
    store = ExperimentStore(settings, EXPERIMENT)
    with store.engine.connect() as connection:  # only the events of this measurement
        # (the pre-loaded events are dated 2027, after the run: bound both sides)
        rows = connection.execute(
            sa.select(events_table.c.occurred_at, events_table.c.stored_at).where(
                events_table.c.occurred_at >= began_at, events_table.c.occurred_at <= ended_at
            )
        ).all()
    latencies = sorted(
        (stored.replace(tzinfo=UTC) - occurred.replace(tzinfo=UTC)).total_seconds() * 1000
        for occurred, stored in rows
    )
    if not latencies:
        return float("nan"), float("nan")
    return latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


#: The figures compared between a PLAINTEXT and a SASL_SSL broker (name, unit).
FIGURES = {
    "preload": "events/s", "raw": "events/s", "sqlite": "events/s", "pg": "events/s",
    "gateway": "events/s", "p50_5000": "ms", "p99_5000": "ms", "p50_500": "ms", "p99_500": "ms",
}


def measure(args: argparse.Namespace, protocol: str) -> dict[str, float]:
    """Every measurement on a fresh broker of that security protocol; returns the figures."""
    root = Path(tempfile.mkdtemp(prefix="preuve-bench-"))
    secured = protocol == "SASL_SSL"
    broker = LocalBroker(
        root / "kafka", Settings().cache_dir, KafkaSettings().version, partitions=4, heap="2g",
        secured=secured, users=USERS,
    )
    kafka = KafkaSettings(security=KafkaSecurity(protocol=protocol,  # type: ignore[arg-type]
                                                 secrets_dir=broker.secrets_dir))
    figures: dict[str, float] = {}
    cluster = None
    try:
        bootstrap = broker.up().bootstrap
        cluster = PostgresCluster.start(durable=True)  # fsync on, as in production
        print(
            f"\n=== Kafka {protocol} ===\n"
            f"machine: {platform.node()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, "
            f"Kafka {broker.version}, {args.events:,} events, 4 partitions"
        )
        base = _settings(root, kafka, bootstrap, "preload")
        ensure_topics(base)
        publish_enrollments(base, _enrollments())
        rate = figures["preload"] = preload(base, args.events)
        print(f"preload (kafka-python producer, acks=all): {rate:,.0f} events/s")

        raw = figures["raw"] = asyncio.run(_bare_consumer(base, base.topics.events, args.events))
        print(f"(a) bare aiokafka consumer + json decode:  {raw:,.0f} events/s")

        sqlite_settings = _settings(root, kafka, bootstrap, "sqlite")
        sqlite_rate, sqlite_peak, sqlite_cpu, _ = run_worker(
            sqlite_settings, args.events, root / "worker-sqlite.log"
        )
        figures["sqlite"] = sqlite_rate
        print(
            f"(b) preuve worker -> SQLite store:         {sqlite_rate:,.0f} events/s, "
            f"peak RSS {sqlite_peak:,.0f} MiB, worker CPU {sqlite_cpu:.1f} us/event"
        )

        # The COPY floor before and after the worker (interleaved), then Connect (peers).
        import ingest_peers as peers

        peer_rows = peers.stored_rows(peers.raw_events(args.events), b"bench-key" * 5,
                                      EXPERIMENT, {e.class_id: e.arm for e in _enrollments()})
        floors = [peers.copy_floor(base, cluster, peer_rows, EXPERIMENT, "floor1")]
        pg_settings = _settings(root, kafka, bootstrap, "pg", cluster.create_database("bench"))
        pg_rate, pg_peak, pg_cpu, pg_server_cpu = run_worker(
            pg_settings, args.events, root / "worker-pg.log", cluster
        )
        floors.append(peers.copy_floor(base, cluster, peer_rows, EXPERIMENT, "floor2"))
        figures["pg"] = pg_rate
        print(
            f"(c) preuve worker -> PostgreSQL store:     {pg_rate:,.0f} events/s, "
            f"peak RSS {pg_peak:,.0f} MiB, worker CPU {pg_cpu:.1f} us/event, "
            f"PostgreSQL CPU {pg_server_cpu:.1f} us/event"
        )
        # Both processes need their CPU time per event; on this many cores no pipeline of
        # the two can go faster than this, however well the work overlaps.
        cores = os.cpu_count() or 1
        cpu_bound = cores / ((pg_cpu + pg_server_cpu) * 1e-6)
        print(f"    CPU bound of (c) on {cores} cores: {cpu_bound:,.0f} events/s")
        figures |= peers.floor_ratio(pg_rate, floors)
        if args.skip_connect:
            figures |= peers.connect_ratio(pg_rate, None, "--skip-connect")
        else:
            try:
                figures |= peers.connect_ratio(pg_rate, peers.connect_peer(
                    base, cluster, peer_rows, EXPERIMENT, "connect", root / "connect"))
            except peers.PeerUnavailable as error:
                figures |= peers.connect_ratio(pg_rate, None, str(error))

        alone = run_store_alone(
            _settings(root, kafka, bootstrap, "alone", cluster.create_database("alone")),
            min(args.events, 200_000),
        )
        print(f"(f) PostgreSQL store alone (no Kafka, no validation): {alone:,.0f} events/s")

        if not args.skip_gateway:  # issue 20: against a bare producer (ingest_gateway.py)
            figures.update(measure_gateway(
                _settings(root, kafka, bootstrap, "gateway", cluster.create_database("gateway")),
                root, cluster, seconds=args.gateway_seconds / 2))

        # 5,000/s is the figure; the second rate is one the worker can sustain, so
        # that the latency of the pipeline itself is seen, not only the queue.
        for offered in (5_000, 500):
            p50, p99 = run_latency(
                pg_settings, offered, args.latency_seconds, root / f"worker-latency-{offered}.log",
                warmup_s=min(5, args.latency_seconds),
            )
            figures[f"p50_{offered}"], figures[f"p99_{offered}"] = p50, p99
            print(
                f"(e) end-to-end latency at {offered:,} events/s offered (PostgreSQL): "
                f"p50 {p50:,.0f} ms, p99 {p99:,.0f} ms"
            )
        figures["ratio_worker_sqlite_to_raw"] = sqlite_rate / raw
        figures["ratio_pg_store_alone_to_raw"] = alone / raw
        figures["ratio_cpu_bound_pg_to_raw"] = cpu_bound / raw
        figures["ratio_worker_pg_to_raw"] = pg_rate / raw
        return figures
    finally:
        dispose_engines()
        if cluster is not None:
            cluster.stop()
        broker.down()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--skip-gateway", action="store_true")
    parser.add_argument("--skip-connect", action="store_true",
                        help="no Kafka Connect + Debezium peer (it needs Maven Central once)")
    parser.add_argument("--latency-seconds", type=int, default=20)
    parser.add_argument("--gateway-seconds", type=float, default=20)
    parser.add_argument("--security", choices=["both", "SASL_SSL", "PLAINTEXT"], default="both",
                        help="Kafka security protocol of the run(s) [default: both, compared]")
    args = parser.parse_args()
    # SIGTERM ends the run like Ctrl-C, so that the broker and cluster are still stopped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    protocols = ["PLAINTEXT", "SASL_SSL"] if args.security == "both" else [args.security]
    results = {protocol: measure(args, protocol) for protocol in protocols}
    if len(results) == 2:
        plain, secured = results["PLAINTEXT"], results["SASL_SSL"]
        print("\n=== the cost of security: PLAINTEXT vs SASL_SSL (SCRAM-SHA-512 over TLS) ===")
        print(f"{'figure':<10} {'PLAINTEXT':>12} {'SASL_SSL':>12}  change")
        for name, unit in FIGURES.items():
            if name in plain and name in secured:
                change = (secured[name] / plain[name] - 1) * 100 if plain[name] else float("nan")
                print(f"{name:<10} {plain[name]:>12,.0f} {secured[name]:>12,.0f}  "
                      f"{change:+.0f}% ({unit})")
    print_ratios(results)


#: The baseline of each ratio, printed next to it; a helper module's ratios come with its
#: own ``BASELINES`` (e.g. ``ingest_peers.BASELINES``).
RATIO_BASELINES = {
    "ratio_worker_sqlite_to_raw": "(a) bare aiokafka consumer + JSON decode, same topic",
    "ratio_pg_store_alone_to_raw": "(a) bare aiokafka consumer + JSON decode, same topic",
    "ratio_cpu_bound_pg_to_raw": "(a) bare aiokafka consumer + JSON decode, same topic",
    "ratio_worker_pg_to_raw": "(a) bare aiokafka consumer + JSON decode, same topic",
    "ratio_worker_pg_sasl_ssl_to_plaintext": "the same worker -> PostgreSQL on a PLAINTEXT "
    "broker, same events",
}


def print_ratios(results: dict[str, dict[str, float]]) -> None:
    """Every ``ratio_*`` figure of the run(s), last, each naming its baseline (and the
    broker's security protocol of its run)."""
    import ingest_gateway
    import ingest_peers

    baselines = {**RATIO_BASELINES, **ingest_peers.BASELINES}
    print("\n=== ratios, each against its baseline (measured in the same run) ===")
    for protocol, figures in results.items():
        for name, value in figures.items():
            if name.startswith("ratio_"):
                baseline = baselines.get(name, ingest_gateway.RATIO_BASELINE
                                         if name.startswith("ratio_gateway")
                                         else "see benchmarks/README.md")
                print(f"{name}={value:.2f}  (baseline: {baseline}; Kafka {protocol})")
    if set(results) == {"PLAINTEXT", "SASL_SSL"}:
        name = "ratio_worker_pg_sasl_ssl_to_plaintext"
        value = results["SASL_SSL"]["pg"] / results["PLAINTEXT"]["pg"]
        print(f"{name}={value:.2f}  (baseline: {RATIO_BASELINES[name]})")


if __name__ == "__main__":
    main()
