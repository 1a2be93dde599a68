"""The local single-node Kafka broker (KRaft), run from Apache Kafka's Maven artifacts.

``preuve kafka up`` resolves ``org.apache.kafka:kafka_2.13`` with Maven from
``tools/kafka/pom.xml`` into the user's cache directory, formats a KRaft log directory
under ``state_dir/kafka`` and starts ``kafka.Kafka`` on 127.0.0.1. The broker's pid and
ports are kept in ``state_dir/kafka/broker.json`` so that ``down`` stops only the process
that ``up`` started and ``status`` can tell the truth.

Written by hand because no library starts a Kafka broker without Docker; the recipe and
the reasons for each setting are in ``../shared/KAFKA-LOCAL.md``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from ingest.errors import BrokerError

__all__ = ["BrokerState", "LocalBroker", "broker_answers", "free_port"]

logger = logging.getLogger(__name__)

_POM = Path(__file__).resolve().parents[2] / "tools" / "kafka" / "pom.xml"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"

_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={log_dir}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
auto.create.topics.enable=true
log.retention.hours={retention_hours}
"""

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.stdout.ref = STDOUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes in URL-safe base64 without padding. One that
    starts with '-' would be read by StorageTool as an option, so draw again."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_answers(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """Whether a Kafka broker at ``bootstrap`` answers a metadata request."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
            client_id="preuve-status",
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


@dataclass(frozen=True)
class BrokerState:
    """What ``up`` recorded about the broker it started."""

    pid: int
    port: int
    controller_port: int
    version: str

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists": read its state to tell it apart.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"


def _is_our_broker(pid: int, home: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(home).encode() in b" ".join(cmdline)


class LocalBroker:
    """A single-node KRaft broker whose files live under ``home``.

    Parameters
    ----------
    home
        State directory of this broker (config, data, log, ``broker.json``).
    cache_dir
        Where jars and the Maven repository are cached (``~/.cache/preuve``).
    version
        Apache Kafka release, e.g. ``"4.3.1"``.
    """

    def __init__(
        self,
        home: Path,
        cache_dir: Path,
        version: str,
        *,
        port: int = 0,
        partitions: int = 4,
        heap: str = "1g",
        retention_hours: int = 24 * 30,
    ) -> None:
        self.home = home
        self.cache_dir = cache_dir
        self.version = version
        self.port = port
        self.partitions = partitions
        self.heap = heap
        self.retention_hours = retention_hours
        # The broker outlives `up` on purpose; when this object started it, keep the handle
        # so that `down` can reap it and no "still running" warning fires at collection.
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def lib_dir(self) -> Path:
        return self.cache_dir / "kafka" / self.version / "lib"

    @property
    def state_file(self) -> Path:
        return self.home / "broker.json"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    def state(self) -> BrokerState | None:
        """The recorded broker if its process is still alive, else None."""
        try:
            state = BrokerState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if _alive(state.pid) and _is_our_broker(state.pid, self.home):
            return state
        return None

    def ensure_jars(self) -> Path:
        """Resolve the broker's jars with Maven into the cache (once per version)."""
        marker = self.lib_dir / ".complete"
        if marker.exists():
            return self.lib_dir
        if shutil.which("mvn") is None:
            raise BrokerError(
                "Maven (mvn) is needed to fetch Kafka: apt-get install maven, "
                "or use docker compose, or set PREUVE_KAFKA_BOOTSTRAP to an existing cluster"
            )
        partial = self.lib_dir.with_name("lib.partial")
        shutil.rmtree(partial, ignore_errors=True)
        logger.info("resolving Apache Kafka %s from Maven Central into %s", self.version, partial)
        command = [
            "mvn", "-B", "-q", "-f", str(_POM), f"-Dkafka.version={self.version}",
            f"-Dmaven.repo.local={self.cache_dir / 'm2'}", _DEPENDENCY_PLUGIN,
            "-DincludeScope=runtime", f"-DoutputDirectory={partial}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError(
                f"mvn could not resolve org.apache.kafka:kafka_2.13:{self.version}:\n"
                + (result.stdout + result.stderr)[-2000:]
            )
        shutil.rmtree(self.lib_dir, ignore_errors=True)
        partial.rename(self.lib_dir)
        marker.touch()
        return self.lib_dir

    def up(self, timeout_s: float = 90.0) -> BrokerState:
        """Start the broker unless it already runs; wait until it answers metadata."""
        if shutil.which("java") is None:
            raise BrokerError(
                "Java 17+ is needed to run Kafka: apt-get install openjdk-17-jre-headless, "
                "or use docker compose, or set PREUVE_KAFKA_BOOTSTRAP to an existing cluster"
            )
        running = self.state()
        if running is not None:
            if broker_answers(running.bootstrap):
                return running
            self._wait_until_answering(running, timeout_s)
            return running
        lib = self.ensure_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        # A restart on the same home keeps its client port, so that producers, consumers
        # and PREUVE_KAFKA_BOOTSTRAP settings that knew it reconnect (if it is still free).
        port = self.port or self._previous_port() or free_port()
        controller_port = free_port()
        while controller_port == port:
            controller_port = free_port()
        config = self.home / "server.properties"
        data_dir = self.home / "data"
        config.write_text(
            _SERVER_PROPERTIES.format(
                port=port, controller_port=controller_port, log_dir=data_dir,
                partitions=self.partitions, retention_hours=self.retention_hours,
            )
        )
        log_config = self.home / "log4j2.properties"
        log_config.write_text(_LOG4J2.format(level="warn"))
        classpath = f"{lib}/*"
        common = [f"-Dlog4j2.configurationFile={log_config}", "-cp", classpath]
        if not (data_dir / "meta.properties").exists():
            cluster_id = _cluster_id()
            result = subprocess.run(
                ["java", *common, "kafka.tools.StorageTool", "format", "-g",
                 "-t", cluster_id, "-c", str(config)],
                capture_output=True, text=True, check=False,
            )
            if result.returncode != 0:
                raise BrokerError(f"formatting the KRaft log dir failed: {result.stderr[-2000:]}")
        java_opts = [
            "-Xms256m", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.home}", f"-Dpreuve.home={self.home}",
        ]
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                ["java", *java_opts, *common, "kafka.Kafka", str(config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._process = process
        state = BrokerState(
            pid=process.pid, port=port, controller_port=controller_port, version=self.version
        )
        self.state_file.write_text(json.dumps(asdict(state)))
        try:
            self._wait_until_answering(state, timeout_s, process)
        except BaseException:
            self.down()  # never leave a half-started broker behind (Ctrl-C included)
            raise
        logger.info("Kafka %s up at %s (pid %d)", self.version, state.bootstrap, state.pid)
        return state

    def _previous_port(self) -> int | None:
        """The client port of this home's last start, if it is free now."""
        try:
            text = (self.home / "server.properties").read_text()
        except OSError:
            return None
        match = re.search(r"^listeners=PLAINTEXT://127\.0\.0\.1:(\d+),", text, re.MULTILINE)
        if match is None:
            return None
        port = int(match.group(1))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # Like the broker's own listener, ignore the old connections still in
            # TIME_WAIT: only a live listener makes the port unusable.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return None
        return port

    def _wait_until_answering(
        self, state: BrokerState, timeout_s: float, process: subprocess.Popen[bytes] | None = None
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-3000:]
                raise BrokerError(f"the Kafka broker exited with {process.returncode}:\n{tail}")
            if broker_answers(state.bootstrap, timeout_s=2.0):
                return
            time.sleep(0.5)
        raise BrokerError(f"the Kafka broker did not answer within {timeout_s:.0f}s")

    def down(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker that ``up`` started. Returns whether one was running."""
        state = self.state()
        if state is None:
            self.state_file.unlink(missing_ok=True)
            return False
        os.kill(state.pid, signal.SIGTERM)
        if not _wait_gone(state.pid, timeout_s):
            os.kill(state.pid, signal.SIGKILL)
            _wait_gone(state.pid, timeout_s)
        self.state_file.unlink(missing_ok=True)
        if self._process is not None and self._process.pid == state.pid:
            self._process.wait()
            self._process = None
        logger.info("Kafka broker (pid %d) stopped", state.pid)
        return True


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if _gone(pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _gone(pid: int) -> bool:
    """Whether the process has ended (and, when it is our child, has been collected).

    A multi-threaded process (the JVM) shows its leader as a zombie while its other
    threads still exit; ``waitpid`` can only collect it after that, so for our own child
    only a successful ``waitpid`` means gone.
    """
    try:
        collected, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not _alive(pid)  # not our child: its parent (or init) collects it
    return collected == pid
