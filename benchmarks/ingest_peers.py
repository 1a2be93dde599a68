"""The stream worker's peer and floor (issue 20, goal 2), measured on the same broker and
PostgreSQL cluster as `benchmarks/bench_ingest.py`'s worker, in the same run:

  * the **COPY floor**: PostgreSQL ``COPY`` of the same rows (the stored events' columns,
    as the worker writes them) into the same table, with the same indexes (a store of the
    same cluster, migrated like the worker's), in 2,000-row transactions; events/s and
    PostgreSQL CPU µs/event. Nothing is validated, pseudonymised or folded: the rows are
    made before the clock starts. ``ratio_worker_to_copy_floor`` = the worker's events/s
    into PostgreSQL ÷ this;
  * the **Kafka Connect peer**: Kafka Connect standalone (``connect-runtime`` of the
    broker's Kafka version) with Debezium's JDBC sink connector (its ``plugin`` archive),
    both resolved from Maven Central into the user's cache like the broker's jars, reading
    a topic that holds the same rows in the JSON schema envelope the sink needs, upserting
    them (primary key ``event_id``) into the ``events`` table of another store of the same
    cluster; events/s and CPU µs/event (Connect's JVM + PostgreSQL).
    ``ratio_worker_to_connect`` = the worker's events/s ÷ Connect's. Connect has no
    validation, no pseudonymisation, no enrollment look-up and no usage fold: the work the
    worker does beyond it is Preuve's.

Run alone (its own broker, cluster and worker run, interleaved floor / worker / floor):

    .venv/bin/python benchmarks/ingest_peers.py [--events 100000]
        [--security SASL_SSL|PLAINTEXT] [--skip-connect]

or from `bench_ingest.py`, which calls :func:`copy_floor` before and after its worker run
and :func:`connect_peer` after, on its own broker and cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from benchmarks.proc_cpu import cpu_seconds, postgres_cpu_seconds  # noqa: E402
from experiments.database import dispose_engines, store_schema  # noqa: E402
from experiments.settings import KafkaSecurity, KafkaSettings, Settings  # noqa: E402
from experiments.store import ExperimentStore, StoredEvent, _copy_text  # noqa: E402
from ingest.kafka import clients  # noqa: E402
from ingest.kafka.broker import LocalBroker, free_port  # noqa: E402
from ingest.kafka.principals import ADMIN, USERS  # noqa: E402
from ingest.pseudonym import pseudonymise  # noqa: E402
from tests.support.postgres import PostgresCluster  # noqa: E402

#: Debezium's JDBC sink connector (Maven Central, its ``plugin`` tar.gz: the connector and
#: every jar it needs, drivers included, laid out for Connect's ``plugin.path``).
DEBEZIUM_VERSION = "3.4.3.Final"
_CONNECT_POM = Path(__file__).resolve().parent.parent / "tools" / "kafka-connect" / "pom.xml"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
TRANSACTION_ROWS = 2_000

#: The baseline of each ratio this module adds, printed next to it (bench_ingest.py).
BASELINES = {
    "ratio_worker_to_copy_floor": "PostgreSQL COPY of the same rows into the same table and "
    "indexes, 2,000-row transactions, same cluster, measured before and after the worker",
    "ratio_worker_to_connect": "Kafka Connect standalone + Debezium JDBC sink "
    f"{DEBEZIUM_VERSION}, upsert on event_id, same rows, same broker and cluster",
}


class PeerUnavailable(RuntimeError):
    """The peer could not be resolved or started here (the message says exactly why)."""


@dataclass(frozen=True)
class Figure:
    """One measurement: events/s and CPU µs per event (client side: the peer's process,
    or the worker's; server side: PostgreSQL's postmaster and backends)."""

    events_per_s: float
    client_us: float
    postgres_us: float

    @property
    def total_us(self) -> float:
        return self.client_us + self.postgres_us


# --- the rows ------------------------------------------------------------------------

def stored_rows(raw: Sequence[dict[str, object]], pseudonym_key: bytes, experiment_id: str,
                arm_of: dict[str, str]) -> list[StoredEvent]:
    """The rows the worker stores for ``raw`` (pseudonymised, labelled with their arm),
    made without the worker: the rows both peers load."""
    rows = []
    cache: dict[str, str] = {}
    for e in raw:
        learner = str(e["learner_id"])
        key = cache.get(learner)
        if key is None:
            key = cache[learner] = pseudonymise(pseudonym_key, experiment_id, learner)
        rows.append(StoredEvent(
            str(e["event_id"]), datetime.fromisoformat(str(e["occurred_at"])).astimezone(UTC),
            str(e["resource_id"]), key, str(e["class_id"]), str(e["school_uai"]),
            arm_of[str(e["class_id"])], str(e["verb"]),
            duration_s=float(e["duration_s"]),  # type: ignore[arg-type]
            is_usage=True,
        ))
    return rows


_EVENT_COLUMNS = ("event_id", "occurred_at", "resource_id", "learner_key", "class_id",
                  "school_uai", "arm", "verb", "object_id", "duration_s", "score", "success",
                  "extensions", "authority", "stored_at")


def _events_copy_text(rows: Sequence[StoredEvent], stored_at: datetime) -> str:
    """COPY text of ``events`` rows: the worker's own COPY text of its staging table
    (:func:`experiments.store._copy_text`, same escapes), less the staging-only columns
    (day, is_session, is_usage), plus ``stored_at``."""
    when = stored_at.isoformat()
    lines = _copy_text(rows).split("\n")[:-1]
    return "".join(line.rsplit("\t", 3)[0] + "\t" + when + "\n" for line in lines)




def _libpq(cluster: PostgresCluster, database: str) -> str:
    return f"host=127.0.0.1 port={cluster.port} user=preuve dbname={database}"


def _fresh_store(settings: Settings, cluster: PostgresCluster, database: str,
                 experiment_id: str) -> Settings:
    """A new database of ``cluster`` with ``experiment_id``'s store migrated in it (the
    worker's table and indexes); its settings."""
    url = cluster.create_database(database)
    fresh = settings.model_copy(update={"database_url": SecretStr(url)})
    ExperimentStore(fresh, experiment_id)  # created and migrated on first use
    dispose_engines()
    return fresh


# --- the COPY floor -----------------------------------------------------------------

def copy_floor(settings: Settings, cluster: PostgresCluster, rows: Sequence[StoredEvent],
               experiment_id: str, database: str) -> Figure:
    """PostgreSQL ``COPY`` of ``rows`` into a fresh store's ``events`` (same table, same
    indexes as the worker's), ``TRANSACTION_ROWS`` per transaction."""
    _fresh_store(settings, cluster, database, experiment_id)
    now = datetime.now(UTC)
    texts = [_events_copy_text(rows[k:k + TRANSACTION_ROWS], now)
             for k in range(0, len(rows), TRANSACTION_ROWS)]
    statement = f"COPY events ({', '.join(_EVENT_COLUMNS)}) FROM STDIN"
    with psycopg.connect(_libpq(cluster, database)) as connection:
        connection.execute(f"SET search_path TO {store_schema(experiment_id)}")
        connection.commit()
        client_before = time.process_time()
        pg_before = postgres_cpu_seconds(cluster)
        began = time.perf_counter()
        for text in texts:
            with connection.cursor() as cursor, cursor.copy(statement) as copy:
                copy.write(text)
            connection.commit()
        elapsed = time.perf_counter() - began
        pg = postgres_cpu_seconds(cluster) - pg_before
        client = time.process_time() - client_before
        stored = connection.execute("SELECT count(*) FROM events").fetchone()
    if stored is None or stored[0] != len(rows):
        raise RuntimeError(f"the COPY floor stored {stored} rows, expected {len(rows):,}")
    n = len(rows)
    return Figure(n / elapsed, client / n * 1e6, pg / n * 1e6)


# --- Kafka Connect + Debezium's JDBC sink -------------------------------------------

def _mvn(arguments: list[str], cache_dir: Path, what: str) -> None:
    if shutil.which("mvn") is None:
        raise PeerUnavailable(f"Maven (mvn) is needed to fetch {what}")
    command = ["mvn", "-B", "-q", "-f", str(_CONNECT_POM),
               f"-Dmaven.repo.local={cache_dir / 'm2'}", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PeerUnavailable(f"mvn could not resolve {what}:\n"
                              + (result.stdout + result.stderr)[-2000:])


def connect_jars(cache_dir: Path, kafka_version: str,
                 debezium_version: str = DEBEZIUM_VERSION) -> tuple[Path, Path]:
    """(Connect's class path directory, the plugin path holding Debezium's JDBC sink),
    resolved with Maven into ``cache_dir/kafka-connect`` once per version."""
    home = cache_dir / "kafka-connect"
    lib = home / kafka_version / "lib"
    if not (lib / ".complete").exists():
        partial = lib.with_name("lib.partial")
        shutil.rmtree(partial, ignore_errors=True)
        _mvn([f"-Dkafka.version={kafka_version}", f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
              "-DincludeScope=runtime", f"-DoutputDirectory={partial}"],
             cache_dir, f"org.apache.kafka:connect-runtime:{kafka_version}")
        shutil.rmtree(lib, ignore_errors=True)
        partial.rename(lib)
        (lib / ".complete").touch()
    plugins = home / f"debezium-{debezium_version}" / "plugins"
    if not (plugins / ".complete").exists():
        archive_dir = plugins.with_name("archive")
        artifact = f"io.debezium:debezium-connector-jdbc:{debezium_version}:tar.gz:plugin"
        _mvn([f"{_DEPENDENCY_PLUGIN}:copy", f"-Dartifact={artifact}",
              f"-DoutputDirectory={archive_dir}"], cache_dir, artifact)
        partial = plugins.with_name("plugins.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        (archive,) = archive_dir.glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
        shutil.rmtree(plugins, ignore_errors=True)
        partial.rename(plugins)
        (plugins / ".complete").touch()
    return lib, plugins


#: The value schema of the Connect topic (JsonConverter, ``schemas.enable=true``): the
#: stored events' columns that the benchmark's events carry (the others are NULL in the
#: worker's rows too); ``stored_at`` is added by Connect's InsertField transform.
_CONNECT_SCHEMA = {
    "type": "struct", "name": "preuve.bench.Event", "optional": False, "fields": [
        {"field": "event_id", "type": "string", "optional": False},
        {"field": "occurred_at", "type": "string", "optional": False,
         "name": "io.debezium.time.ZonedTimestamp"},
        {"field": "resource_id", "type": "string", "optional": False},
        {"field": "learner_key", "type": "string", "optional": False},
        {"field": "class_id", "type": "string", "optional": False},
        {"field": "school_uai", "type": "string", "optional": False},
        {"field": "arm", "type": "string", "optional": False},
        {"field": "verb", "type": "string", "optional": False},
        {"field": "duration_s", "type": "double", "optional": True},
    ],
}


def _envelope(row: StoredEvent) -> bytes:
    payload = {
        "event_id": row.event_id, "occurred_at": row.occurred_at.isoformat(),
        "resource_id": row.resource_id, "learner_key": row.learner_key,
        "class_id": row.class_id, "school_uai": row.school_uai, "arm": row.arm,
        "verb": row.verb, "duration_s": row.duration_s,
    }
    return json.dumps({"schema": _CONNECT_SCHEMA, "payload": payload}).encode()


def load_connect_topic(settings: Settings, topic: str, rows: Sequence[StoredEvent],
                       partitions: int = 4) -> None:
    """Create ``topic`` and fill it with ``rows`` in the sink's JSON envelope."""
    from kafka.admin import NewTopic

    admin = clients.admin(settings, ADMIN)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    producer = clients.producer(settings, ADMIN, linger_ms=20)
    for row in rows:
        producer.send(topic, key=row.class_id.encode(), value=_envelope(row))
    producer.flush()
    producer.close()


def _client_properties(settings: Settings, bootstrap: str) -> list[str]:
    """Connect's Kafka client settings: the same security as Preuve's clients (SASL_SSL:
    SCRAM-SHA-512 over TLS, the local CA), as the ``admin`` user."""
    security = settings.kafka.security
    lines = [f"bootstrap.servers={bootstrap}"]
    if security.protocol == "SASL_SSL":
        secrets = clients.secrets_dir(settings)
        password = clients.password_file(settings, ADMIN).read_text().strip()
        jaas = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{ADMIN}" password="{password}";')
        common = [
            "security.protocol=SASL_SSL", f"sasl.mechanism={security.mechanism}",
            f"sasl.jaas.config={jaas}", "ssl.truststore.type=PEM",
            f"ssl.truststore.location={secrets / 'ca.pem'}",
            "ssl.endpoint.identification.algorithm=",
        ]
        for prefix in ("", "consumer.", "producer.", "admin."):
            lines += [prefix + line for line in common]
    return lines


def connect_peer(settings: Settings, cluster: PostgresCluster, rows: Sequence[StoredEvent],
                 experiment_id: str, database: str, work: Path, topic: str = "bench.connect",
                 timeout_s: float = 900, insert_mode: str = "upsert") -> Figure:
    """Kafka Connect standalone + Debezium's JDBC sink from a topic of ``rows`` into a fresh
    store's ``events``; timed from the first row stored to the last (Connect's start-up,
    plugin scan and group join excluded), CPU of its JVM and of PostgreSQL over that span."""
    lib, plugins = connect_jars(settings.cache_dir, settings.kafka.version)
    _fresh_store(settings, cluster, database, experiment_id)
    load_connect_topic(settings, topic, rows)
    work.mkdir(parents=True, exist_ok=True)
    rest = free_port()
    worker_properties = work / "connect-standalone.properties"
    worker_properties.write_text("\n".join([
        *_client_properties(settings, clients.bootstrap(settings)),
        "key.converter=org.apache.kafka.connect.storage.StringConverter",
        "value.converter=org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable=true",
        f"offset.storage.file.filename={work / 'connect.offsets'}",
        f"plugin.path={plugins}",
        f"listeners=http://127.0.0.1:{rest}",
        "consumer.max.poll.records=2000",
        "consumer.auto.offset.reset=earliest",
        "",
    ]))
    os.chmod(worker_properties, 0o600)  # it holds the admin's password
    sink = work / "jdbc-sink.properties"
    sink.write_text("\n".join([
        "name=bench-jdbc-sink",
        "connector.class=io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max=1",
        f"topics={topic}",
        f"connection.url=jdbc:postgresql://127.0.0.1:{cluster.port}/{database}"
        f"?currentSchema={store_schema(experiment_id)}",
        "connection.username=preuve",
        "connection.password=",
        f"insert.mode={insert_mode}",
        "primary.key.mode=record_value",
        "primary.key.fields=event_id",
        "schema.evolution=none",
        "collection.name.format=events",
        "table.name.format=events",
        f"batch.size={TRANSACTION_ROWS}",
        "use.time.zone=UTC",
        "transforms=stored",
        "transforms.stored.type=org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.stored.timestamp.field=stored_at",
        "",
    ]))
    log_path = work / "connect.log"
    log = log_path.open("wb")
    started = time.perf_counter()
    process = subprocess.Popen(
        ["java", "-Xmx1g", "-cp", f"{lib}/*",
         "org.apache.kafka.connect.cli.ConnectStandalone", str(worker_properties), str(sink)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        with psycopg.connect(_libpq(cluster, database), autocommit=True) as connection:
            def inserted() -> int:
                # The statistics counter, not COUNT(*): a scan of a growing table every
                # 0.2 s would be PostgreSQL CPU charged to the peer.
                row = connection.execute(
                    "SELECT n_tup_ins FROM pg_stat_user_tables WHERE schemaname = %s "
                    "AND relname = 'events'", (store_schema(experiment_id),)).fetchone()
                return int(row[0]) if row else 0

            deadline = time.monotonic() + timeout_s

            def alive() -> None:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise PeerUnavailable(
                        f"Kafka Connect {'ended' if process.poll() is not None else 'timed out'}"
                        f" ({_task_state(rest)}):\n"
                        + log_path.read_text(errors='replace')[-3000:])

            while (first := inserted()) == 0:
                alive()
                time.sleep(0.05)
            jvm_before, pg_before = cpu_seconds(process.pid), postgres_cpu_seconds(cluster)
            began = time.perf_counter()
            while inserted() < len(rows):
                alive()
                time.sleep(0.2)
            elapsed = time.perf_counter() - began
            jvm = cpu_seconds(process.pid) - jvm_before
            pg = postgres_cpu_seconds(cluster) - pg_before
            stored = connection.execute("SELECT count(*) FROM "
                                        f"{store_schema(experiment_id)}.events").fetchone()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()
    if stored is None or stored[0] != len(rows):
        raise RuntimeError(f"Connect stored {stored} rows, expected {len(rows):,}")
    n = len(rows) - first
    if n < TRANSACTION_ROWS:  # too few events to leave out the first batch: all of it,
        # Connect's start-up included (tiny runs only; its CPU, then, from its start)
        n, elapsed = len(rows), time.perf_counter() - started
        jvm, pg = jvm_before + jvm, float("nan")
    return Figure(n / elapsed, jvm / n * 1e6, pg / n * 1e6)


def _task_state(rest: int) -> str:
    try:
        with urllib.request.urlopen(
                f"http://127.0.0.1:{rest}/connectors/bench-jdbc-sink/status", timeout=5) as r:
            return str(json.loads(r.read()))[:1500]
    except (OSError, ValueError) as error:
        return f"status unavailable: {error}"


# --- printing -----------------------------------------------------------------------

def print_floor(label: str, figure: Figure) -> None:
    print(f"    COPY floor ({label}): {figure.events_per_s:,.0f} events/s, "
          f"PostgreSQL CPU {figure.postgres_us:.1f} us/event "
          f"(client {figure.client_us:.1f} us/event)")


def floor_ratio(worker_rate: float, floors: Sequence[Figure]) -> dict[str, float]:
    """The floor's figures (mean of the runs around the worker's) and the ratio."""
    rate = sum(f.events_per_s for f in floors) / len(floors)
    pg = sum(f.postgres_us for f in floors) / len(floors)
    print(f"(g) PostgreSQL COPY floor, {TRANSACTION_ROWS:,}-row transactions: {rate:,.0f} "
          f"events/s, PostgreSQL CPU {pg:.1f} us/event (mean of {len(floors)} runs)")
    return {"copy_floor": rate, "copy_floor_pg_us": pg,
            "ratio_worker_to_copy_floor": worker_rate / rate}


def connect_ratio(worker_rate: float, figure: Figure | None, why: str = ""
                  ) -> dict[str, float]:
    if figure is None:
        print(f"(h) Kafka Connect + Debezium JDBC sink: not measured: {why}")
        return {}
    print(f"(h) Kafka Connect + Debezium JDBC sink {DEBEZIUM_VERSION}: "
          f"{figure.events_per_s:,.0f} events/s, CPU {figure.total_us:.1f} us/event "
          f"(Connect {figure.client_us:.1f} + PostgreSQL {figure.postgres_us:.1f})")
    return {"connect": figure.events_per_s, "connect_us": figure.total_us,
            "ratio_worker_to_connect": worker_rate / figure.events_per_s}


def raw_events(count: int) -> list[dict[str, object]]:
    """The events of bench_ingest's pre-load (same seed, same dates)."""
    from bench_ingest import _event

    rng = random.Random(1)
    start = datetime(2027, 10, 1, tzinfo=UTC)
    return [_event(rng, start + timedelta(seconds=i)) for i in range(count)]


def main() -> None:
    import bench_ingest as bench

    from ingest.kafka.access import ensure_topics
    from ingest.kafka.producer import publish_enrollments

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--security", choices=["SASL_SSL", "PLAINTEXT"], default="SASL_SSL")
    parser.add_argument("--skip-connect", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    root = Path(tempfile.mkdtemp(prefix="preuve-peers-"))
    secured = args.security == "SASL_SSL"
    broker = LocalBroker(root / "kafka", Settings().cache_dir, KafkaSettings().version,
                         partitions=4, heap="2g", secured=secured, users=USERS)
    kafka = KafkaSettings(security=KafkaSecurity(protocol=args.security,  # type: ignore[arg-type]
                                                 secrets_dir=broker.secrets_dir))
    cluster = None
    try:
        bootstrap = broker.up().bootstrap
        cluster = PostgresCluster.start(durable=True)
        print(f"=== worker peers, Kafka {args.security}, {args.events:,} events, "
              f"load average {os.getloadavg()[0]:.2f} ===")
        base = bench._settings(root, kafka, bootstrap, "preload")
        ensure_topics(base)
        publish_enrollments(base, bench._enrollments())
        bench.preload(base, args.events)
        rows = stored_rows(raw_events(args.events), b"bench-key" * 5,
                           bench.EXPERIMENT,
                           {e.class_id: e.arm for e in bench._enrollments()})
        floors = [copy_floor(base, cluster, rows, bench.EXPERIMENT, "floor1")]
        print_floor("before the worker", floors[0])
        pg = bench._settings(root, kafka, bootstrap, "pg", cluster.create_database("bench"))
        rate, _, worker_us, pg_us = bench.run_worker(pg, args.events, root / "worker.log",
                                                     cluster)
        print(f"(c) preuve worker -> PostgreSQL store: {rate:,.0f} events/s, CPU "
              f"{worker_us + pg_us:.1f} us/event (worker {worker_us:.1f} + PostgreSQL "
              f"{pg_us:.1f})")
        floors.append(copy_floor(base, cluster, rows, bench.EXPERIMENT, "floor2"))
        print_floor("after the worker", floors[1])
        figures = floor_ratio(rate, floors)
        if args.skip_connect:
            figures |= connect_ratio(rate, None, "--skip-connect")
        else:
            try:
                peer = connect_peer(base, cluster, rows, bench.EXPERIMENT, "connect",
                                    root / "connect")
                figures |= connect_ratio(rate, peer)
            except PeerUnavailable as error:
                figures |= connect_ratio(rate, None, str(error))
        for name, value in figures.items():
            if name.startswith("ratio_"):
                print(f"{name}={value:.2f}  (baseline: {BASELINES[name]})")
    finally:
        dispose_engines()
        if cluster is not None:
            cluster.stop()
        broker.down()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
