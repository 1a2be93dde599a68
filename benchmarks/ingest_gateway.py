"""The gateway against a bare aiokafka producer (issue 20, goal 1), interleaved in one run.

Both sides send the same events with the same pattern: 16 concurrent clients, each
sending a 100-event batch and waiting for its answer before the next, for a fixed time.

* ``gateway``: ``preuve gateway`` (one process, or ``--workers N``) with its registry
  (receipts) in PostgreSQL; the clients ``POST /v1/events`` (a JSON array of contract-v1
  events) or ``POST /v1/xapi/statements`` (a JSON array of xAPI statements) on keep-alive
  connections, and count the events of the 202 answers.
* ``producer``: 16 coroutines of one aiokafka producer (acks=all, idempotent, the
  gateway's principal and the run's security), each sending its 100 records (keyed by
  class, with the ``preuve.authority`` header) and awaiting their acknowledgements before
  the next batch. For xAPI the producer sends the events the statements map onto.

Phases alternate (producer, gateway, producer, gateway, …) so that the load of the
machine weighs on both alike. Printed: events/s of each, the gateway's CPU per event
(``/proc/<pid>/stat``, all its threads and worker processes), PostgreSQL's CPU per event
during the gateway phases (its receipts), and the ratios. The load generator is the same
process for both sides; its own CPU per event is printed too.

Run alone (its own broker and PostgreSQL cluster)::

    .venv/bin/python benchmarks/ingest_gateway.py [--seconds 10] [--rounds 2]
        [--security SASL_SSL|PLAINTEXT] [--workers 1]

or as step (d) of ``benchmarks/bench_ingest.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks.proc_cpu import postgres_cpu_seconds, tree_cpu_seconds  # noqa: E402
from experiments.access import issue_token  # noqa: E402
from experiments.database import dispose_engines, registry_engine  # noqa: E402
from experiments.settings import Settings  # noqa: E402
from ingest.authority import AUTHORITY_HEADER  # noqa: E402
from ingest.kafka import clients  # noqa: E402
from ingest.kafka.access import ensure_topics  # noqa: E402
from ingest.kafka.broker import free_port  # noqa: E402
from ingest.kafka.principals import GATEWAY  # noqa: E402
from tests.support.postgres import PostgresCluster  # noqa: E402
from tests.support.worker import settings_env  # noqa: E402

CONCURRENCY = 16
BATCH = 100
CLASSES = 2_000
XAPI_VERB = "http://adlnet.gov/expapi/verbs/answered"
CLASS_EXTENSION = "https://preuve.example/xapi/extensions/class-id"
SCHOOL_EXTENSION = "https://preuve.example/xapi/extensions/school-uai"


# -- the events -------------------------------------------------------------------------


class Events:
    """Batches of fresh events (new ids each time), as JSON text: contract v1 for
    ``/v1/events`` and the producer, xAPI statements for ``/v1/xapi/statements``.

    Hand-formatted rather than ``json.dumps`` of dicts: the load generator shares the two
    cores with what it measures, so it must cost little per event (all values are plain
    ASCII without characters to escape)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def _draw(self) -> tuple[str, str, int, int, int]:
        rng = self.rng
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        when = datetime.now(UTC).isoformat(timespec="milliseconds")
        return event_id, when, rng.randrange(CLASSES), rng.randrange(25), rng.randrange(5, 600)

    @staticmethod
    def _native(event_id: str, when: str, class_no: int, pupil: int, duration: int,
                xapi: bool) -> bytes:
        extensions = f',"extensions":{{"xapi_verb":"{XAPI_VERB}"}}' if xapi else ""
        return (
            f'{{"event_id":"{event_id}","occurred_at":"{when}","resource_id":"lectio",'
            f'"learner_id":"gar-{class_no}-{pupil}","class_id":"c{class_no:05d}",'
            f'"school_uai":"0750001U","verb":"exercise_answered","duration_s":{duration}'
            f"{extensions}}}"
        ).encode()

    def native(self, count: int, xapi: bool = False) -> list[bytes]:
        """Contract-v1 events (``xapi``: as mapped from :meth:`statements`' statements)."""
        return [self._native(*self._draw(), xapi=xapi) for _ in range(count)]

    def statements(self, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            event_id, when, class_no, pupil, duration = self._draw()
            out.append((
                f'{{"id":"{event_id}","actor":{{"objectType":"Agent","account":'
                f'{{"homePage":"https://ent.example","name":"gar-{class_no}-{pupil}"}}}},'
                f'"verb":{{"id":"{XAPI_VERB}"}},'
                f'"object":{{"objectType":"Activity","id":"https://lectio.example/ex/{pupil}"}},'
                f'"result":{{"duration":"PT{duration}S"}},'
                f'"context":{{"extensions":{{"{CLASS_EXTENSION}":"c{class_no:05d}",'
                f'"{SCHOOL_EXTENSION}":"0750001U"}}}},'
                f'"timestamp":"{when}"}}'
            ).encode())
        return out


def _class_key(value: bytes) -> bytes:
    start = value.index(b'"class_id":"') + 12
    return value[start:value.index(b'"', start)]


# -- CPU time from /proc ------------------------------------------------------------------


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# -- the two sides ---------------------------------------------------------------------


class _Http:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the status.

    Hand-written over asyncio streams (rather than httpx) so that the load generator's
    CPU per request stays small beside the gateway's on this 2-core machine."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        if b"connection: close" in head.lower():
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _gateway_phase(port: int, token: str, xapi: bool, seconds: float) -> int:
    """Events accepted (202) by the gateway in ``seconds``."""
    accepted = 0
    refused: dict[int, int] = {}
    path = "/v1/xapi/statements" if xapi else "/v1/events"
    stop_at = time.perf_counter() + seconds

    async def client(seed: int) -> None:
        nonlocal accepted
        events = Events(seed)
        http = _Http(port, token)
        try:
            while time.perf_counter() < stop_at:
                items = events.statements(BATCH) if xapi else events.native(BATCH)
                status = await http.post(path, b"[" + b",".join(items) + b"]")
                if status == 202:
                    accepted += len(items)
                else:
                    refused[status] = refused.get(status, 0) + 1
        finally:
            http.close()

    await asyncio.gather(*(client(random.getrandbits(32)) for _ in range(CONCURRENCY)))
    if refused:
        print(f"    gateway answers other than 202: {refused}")
    return accepted


async def _producer_phase(settings: Settings, authority: bytes, xapi: bool,
                          seconds: float) -> int:
    """Events acknowledged (acks=all) to a bare aiokafka producer in ``seconds``."""
    producer = clients.aio_producer(settings, GATEWAY, linger_ms=2)
    await producer.start()
    sent = 0
    topic = settings.topics.events
    headers = [(AUTHORITY_HEADER, authority)]
    stop_at = time.perf_counter() + seconds
    try:
        async def client(seed: int) -> None:
            nonlocal sent
            events = Events(seed)
            while time.perf_counter() < stop_at:
                values = events.native(BATCH, xapi=xapi)
                futures = [await producer.send(topic, value=value, key=_class_key(value),
                                               headers=headers) for value in values]
                await asyncio.gather(*futures)
                sent += len(values)

        await asyncio.gather(*(client(random.getrandbits(32)) for _ in range(CONCURRENCY)))
    finally:
        await producer.stop()
    return sent


@dataclass
class _Tally:
    events: int = 0
    seconds: float = 0.0
    cpu: float = 0.0  # the gateway's (producer: none)
    postgres: float = 0.0
    client: float = 0.0  # this process's

    def add(self, events: int, seconds: float, cpu: float, postgres: float,
            client: float) -> None:
        self.events += events
        self.seconds += seconds
        self.cpu += cpu
        self.postgres += postgres
        self.client += client

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else float("nan")

    def per_event_us(self, seconds: float) -> float:
        return seconds / self.events * 1e6 if self.events else float("nan")


def bench_topic(settings: Settings) -> str:
    """The topic the gateway and the bare producer write here: one of their own, so that
    what they send does not queue in front of what another measurement of the run
    (bench_ingest's latency) reads. Not ``<events>.<name>``: the stream worker subscribes
    to that pattern (every resource's own topic), and would read it all first.

    >>> bench_topic(Settings())
    'bench-gateway.preuve.events'
    """
    return f"bench-gateway.{settings.topics.events}"


class GatewayProcess:
    """``preuve gateway`` in a child process (its own session), logging to a file."""

    def __init__(self, settings: Settings, log: Path, workers: int = 1) -> None:
        self.port = free_port()
        env = settings_env(settings)
        self.log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "experiments", "gateway", "--port", str(self.port),
             "--workers", str(workers)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(log.read_text()[-3000:])
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz",
                             timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start: " + log.read_text()[-3000:])
            time.sleep(0.3)

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self.log.close()


def measure_gateway(settings: Settings, root: Path, cluster: PostgresCluster | None,
                    seconds: float = 20, rounds: int = 2, workers: int = 1,
                    warmup_s: float = 2.0, profile: Path | None = None) -> dict[str, float]:
    """Gateway vs bare producer, native events and xAPI statements, interleaved.

    ``settings`` should name a PostgreSQL registry (``database_url``) for the receipts'
    figures; ``cluster`` is that registry's cluster (its CPU is read from ``/proc``).
    Prints one line per figure and returns them (``ratio_*`` keys for the final block).
    ``profile``: record the gateway with py-spy (``--gil``, collapsed stacks) during each
    gateway phase of the first round, into ``profile``-<workers>w-native.txt and -xapi.txt."""
    topics = settings.topics.model_copy(update={"events": bench_topic(settings)})
    settings = settings.model_copy(update={"topics": topics})
    ensure_topics(settings)  # as the admin: the topic, and the gateway's ACL on it
    engine = registry_engine(settings)
    token = issue_token(engine, "edtech", "lectio", "bench-gateway")
    principal_authority = _authority(engine, token)
    gateway = GatewayProcess(settings, root / f"gateway-{workers}.log", workers)
    tallies = {(side, kind): _Tally() for side in ("gateway", "producer")
               for kind in ("native", "xapi")}
    try:
        asyncio.run(_gateway_phase(gateway.port, token, False, warmup_s))  # connections, JIT
        for _round in range(rounds):
            for kind in ("native", "xapi"):
                xapi = kind == "xapi"
                for side in ("producer", "gateway"):
                    cpu0, pg0, own0 = gateway.cpu_seconds(), postgres_cpu_seconds(
                        cluster), _own_cpu_seconds()
                    spy = None
                    if profile is not None and side == "gateway" and _round == 0:
                        spy = subprocess.Popen(
                            ["py-spy", "record", "--gil", "--subprocesses", "-p",
                             str(gateway.process.pid), "-r", "200", "-f", "raw", "-o",
                             f"{profile}-{workers}w-{kind}.txt"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        time.sleep(1)
                    began = time.perf_counter()
                    if side == "gateway":
                        count = asyncio.run(_gateway_phase(gateway.port, token, xapi, seconds))
                    else:
                        count = asyncio.run(_producer_phase(
                            settings, principal_authority, xapi, seconds))
                    elapsed = time.perf_counter() - began
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)
                        spy.wait(60)
                    tallies[side, kind].add(
                        count, elapsed, gateway.cpu_seconds() - cpu0,
                        postgres_cpu_seconds(cluster) - pg0, _own_cpu_seconds() - own0)
    finally:
        gateway.stop()
        dispose_engines()
    figures: dict[str, float] = {}
    label = f"{workers} process{'es' if workers > 1 else ''}"
    for kind, title in (("native", "POST /v1/events"), ("xapi", "POST /v1/xapi/statements")):
        gw, bare = tallies["gateway", kind], tallies["producer", kind]
        suffix = "" if kind == "native" else "_xapi"
        figures[f"gateway{suffix}"] = gw.rate
        figures[f"producer{suffix}"] = bare.rate
        figures[f"gateway{suffix}_cpu_us"] = gw.per_event_us(gw.cpu)
        figures[f"gateway{suffix}_pg_us"] = gw.per_event_us(gw.postgres)
        print(f"(d) gateway ({label}), {title}, {CONCURRENCY} clients x {BATCH}-event "
              f"batches: {gw.rate:,.0f} accepted events/s, gateway CPU "
              f"{gw.per_event_us(gw.cpu):.1f} us/event, PostgreSQL (receipts) "
              f"{gw.per_event_us(gw.postgres):.1f} us/event, load generator "
              f"{gw.per_event_us(gw.client):.1f} us/event")
        print(f"    bare aiokafka producer, same events, {CONCURRENCY} x {BATCH}: "
              f"{bare.rate:,.0f} events/s, load generator + producer "
              f"{bare.per_event_us(bare.client):.1f} us/event")
    prefix = "ratio_gateway" if workers == 1 else f"ratio_gateway_{workers}w"
    figures[f"{prefix}_to_producer"] = figures["gateway"] / figures["producer"]
    figures[f"{prefix}_xapi_to_producer"] = figures["gateway_xapi"] / figures["producer_xapi"]
    return figures


def _authority(engine: object, token: str) -> bytes:
    """The ``preuve.authority`` header value the gateway would write for ``token``."""
    from experiments.access import authenticate

    principal = authenticate(engine, token)  # type: ignore[arg-type]
    assert principal is not None
    return principal.authority.encode()


RATIO_BASELINE = "bare aiokafka producer, same 16x100 pattern"


def print_ratios(figures: dict[str, float]) -> None:
    for name, value in figures.items():
        if name.startswith("ratio_gateway"):
            print(f"{name}={value:.2f}  (baseline: {RATIO_BASELINE})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="gateway processes; several values run one after the other")
    parser.add_argument("--profile", type=Path, help="py-spy the gateway into PROFILE-*.txt")
    parser.add_argument("--security", choices=["SASL_SSL", "PLAINTEXT"], default="SASL_SSL")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    import shutil

    from experiments.settings import KafkaSecurity, KafkaSettings, TopicNames
    from ingest.kafka.broker import LocalBroker
    from ingest.kafka.principals import USERS

    root = Path(tempfile.mkdtemp(prefix="preuve-bench-gw-"))
    broker = LocalBroker(root / "kafka", Settings().cache_dir, KafkaSettings().version,
                         partitions=4, heap="1g", secured=args.security == "SASL_SSL",
                         users=USERS)
    cluster = None
    try:
        bootstrap = broker.up().bootstrap
        cluster = PostgresCluster.start(durable=True)
        kafka = KafkaSettings(security=KafkaSecurity(
            protocol=args.security, secrets_dir=broker.secrets_dir))  # type: ignore[arg-type]
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
              f"Kafka {args.security}")
        figures: dict[str, float] = {}
        for workers in args.workers:
            settings = Settings(
                simulated_now="2028-08-31T12:00:00+02:00", state_dir=root / f"gw{workers}",
                kafka_bootstrap=bootstrap, kafka=kafka,
                database_url=cluster.create_database(f"gateway{workers}"),
                topics=TopicNames(events="bench.events", deadletter="bench.deadletter",
                                  enrollments="bench.enrollments",
                                  analysis_requests="bench.requests"))
            figures.update(measure_gateway(settings, root, cluster, seconds=args.seconds,
                                           rounds=args.rounds, workers=workers,
                                           profile=args.profile))
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        print_ratios(figures)
    finally:
        dispose_engines()
        if cluster is not None:
            cluster.stop()
        broker.down()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
