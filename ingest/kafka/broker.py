"""The local single-node Kafka broker (KRaft), run from Apache Kafka's Maven artifacts.

``preuve kafka up`` resolves ``org.apache.kafka:kafka_2.13`` with Maven from
``tools/kafka/pom.xml`` into the user's cache directory, formats a KRaft log directory
under ``state_dir/kafka`` and starts ``kafka.Kafka`` on 127.0.0.1. The broker's pid and
ports are kept in ``state_dir/kafka/broker.json`` so that ``down`` stops only the process
that ``up`` started and ``status`` can tell the truth.

Secured by default (``secured=True``): one SASL_SSL listener (SCRAM-SHA-512 over TLS) for
clients, an SSL controller listener that requires the broker's own certificate, the
StandardAuthorizer with ``allow.everyone.if.no.acl.found=false`` and no topic
auto-creation. The first ``up`` creates, in ``secrets_dir`` (0700, files 0600): a CA, the
broker's certificate signed by it (SAN 127.0.0.1 and localhost), and a random SCRAM
password per user (``<user>.password``), created at format time (KIP-900) so that the
broker never runs a moment without them. ``admin`` and the broker's certificate principal
are the super users.

Written by hand because no library starts a Kafka broker without Docker; the recipe and
the reasons for each setting are in ``../shared/KAFKA-LOCAL.md``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ingest.errors import BrokerError

__all__ = ["BROKER_PRINCIPAL", "BrokerState", "LocalBroker", "broker_answers", "free_port"]

logger = logging.getLogger(__name__)

_POM = Path(__file__).resolve().parents[2] / "tools" / "kafka" / "pom.xml"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"

_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
{listeners}
controller.listener.names=CONTROLLER
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
auto.create.topics.enable=false
log.retention.hours={retention_hours}
"""

_PLAINTEXT_LISTENERS = """\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"""

_JAAS = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
         'username="admin" password="{password}";')

#: The broker's certificate principal (it talks to its own controller over mutual TLS).
BROKER_PRINCIPAL = "CN=preuve-broker"

# PEM key stores (Kafka >= 2.7): the broker's key, certificate and CA in one file, the CA
# alone as trust store. Every user, the admin included, is a SCRAM credential created at
# format time.
_SECURED_LISTENERS = """\
listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{port}
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={truststore}
ssl.enabled.protocols=TLSv1.3,TLSv1.2
listener.name.controller.ssl.client.auth=required
ssl.endpoint.identification.algorithm=
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:{broker_principal}"""

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


def broker_answers(bootstrap: str, timeout_s: float = 5.0, **options: Any) -> bool:
    """Whether a Kafka broker at ``bootstrap`` answers a metadata request (``options``:
    the connection's security options, see :func:`ingest.kafka.clients.security_options`)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
            client_id="preuve-status",
            **options,
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


def _run_quietly(command: list[str], what: str) -> None:
    """Run a tool whose output may hold secrets: only its exit status and stderr's tail
    are ever shown."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"{what} failed ({result.returncode}): {result.stderr[-1500:]}")


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)


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
        secured: bool = True,
        secrets_dir: Path | None = None,
        users: Sequence[str] = ("admin",),
    ) -> None:
        self.home = home
        self.secured = secured
        self.secrets_dir = secrets_dir or home / "secrets"
        self.users = tuple(dict.fromkeys(("admin", *users)))
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

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients trust (secured brokers)."""
        return self.secrets_dir / "ca.pem"

    def password(self, user: str) -> str:
        """A user's SCRAM password, as ``up`` created it."""
        return (self.secrets_dir / f"{user}.password").read_text(encoding="utf-8").strip()

    def client_options(self, user: str = "admin") -> dict[str, Any]:
        """kafka-python / aiokafka options that connect as ``user`` (secured brokers)."""
        if not self.secured:
            return {}
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca_file))
        return {"security_protocol": "SASL_SSL", "ssl_context": context,
                "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": user,
                "sasl_plain_password": self.password(user)}

    def ensure_secrets(self) -> None:
        """Create the CA, the broker's certificate and the users' passwords if missing."""
        directory = self.secrets_dir
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        for user in self.users:
            path = directory / f"{user}.password"
            if not path.exists():
                _write_private(path, secrets.token_urlsafe(24) + "\n")
        if (directory / "broker.pem").exists() and self.ca_file.exists():
            return
        if shutil.which("openssl") is None:
            raise BrokerError("openssl is needed to create the local broker's certificates: "
                              "apt-get install openssl")
        old_umask = os.umask(0o077)  # every file openssl writes is the owner's only
        try:
            self._create_certificates(directory)
        finally:
            os.umask(old_umask)

    def _create_certificates(self, directory: Path) -> None:
        ca_key, ca_pem = directory / "ca.key", directory / "ca.pem"
        key, csr = directory / "broker.key", directory / "broker.csr"
        cert = directory / "broker.crt"
        extensions = directory / "broker.ext"
        days = "3650"
        _run_quietly(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                      "-keyout", str(ca_key), "-out", str(ca_pem), "-days", days,
                      "-subj", "/CN=Preuve local Kafka CA",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "creating the CA")
        _run_quietly(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256",
                      "-keyout", str(key), "-out", str(csr), "-subj", f"/{BROKER_PRINCIPAL}"],
                     "creating the broker's key")
        _write_private(extensions, "basicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n"
                       "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _run_quietly(["openssl", "x509", "-req", "-sha256", "-in", str(csr), "-CA", str(ca_pem),
                      "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
                      "-days", days, "-extfile", str(extensions)],
                     "signing the broker's certificate")
        _write_private(directory / "broker.pem",
                       key.read_text() + cert.read_text() + ca_pem.read_text())
        for leftover in (csr, extensions, directory / "ca.srl"):
            leftover.unlink(missing_ok=True)

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
            if broker_answers(running.bootstrap, **self.client_options()):
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
        if self.secured:
            self.ensure_secrets()
            listeners = _SECURED_LISTENERS.format(
                port=port, controller_port=controller_port,
                jaas=_JAAS.format(password=self.password("admin")),
                keystore=self.secrets_dir / "broker.pem",
                truststore=self.ca_file, broker_principal=BROKER_PRINCIPAL,
            )
        else:
            listeners = _PLAINTEXT_LISTENERS.format(port=port, controller_port=controller_port)
        self._check_security_matches(data_dir)
        # The properties hold the admin's password: the owner's only.
        _write_private(config, _SERVER_PROPERTIES.format(
            port=port, controller_port=controller_port, log_dir=data_dir, listeners=listeners,
            partitions=self.partitions, retention_hours=self.retention_hours,
        ))
        log_config = self.home / "log4j2.properties"
        log_config.write_text(_LOG4J2.format(level="warn"))
        classpath = f"{lib}/*"
        common = [f"-Dlog4j2.configurationFile={log_config}", "-cp", classpath]
        if not (data_dir / "meta.properties").exists():
            scram = [
                argument for user in (self.users if self.secured else ())
                for argument in ("--add-scram",
                                 f"SCRAM-SHA-512=[name={user},password={self.password(user)}]")
            ]
            # The format step prints its bootstrap records, SCRAM salts and stored keys
            # included: its stdout is never shown.
            _run_quietly(["java", *common, "kafka.tools.StorageTool", "format", "-g",
                          "-t", _cluster_id(), "-c", str(config), *scram],
                         "formatting the KRaft log dir")
            (self.home / "security").write_text("SASL_SSL" if self.secured else "PLAINTEXT")
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
        match = re.search(r"^listeners=[A-Z_]+://127\.0\.0\.1:(\d+),", text, re.MULTILINE)
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

    def _check_security_matches(self, data_dir: Path) -> None:
        """A log dir formatted without the users (before security, or PLAINTEXT) cannot
        get them now: the broker would start with nobody able to sign in."""
        if not (data_dir / "meta.properties").exists():
            return
        marker = self.home / "security"
        formatted = marker.read_text().strip() if marker.exists() else "PLAINTEXT"
        wanted = "SASL_SSL" if self.secured else "PLAINTEXT"
        if formatted != wanted:
            raise BrokerError(
                f"the local broker's data ({data_dir}) was formatted for {formatted}, not "
                f"{wanted}: stop it (`preuve kafka down`) and remove {data_dir} to start "
                "afresh (the topics' records are lost)"
            )

    def _wait_until_answering(
        self, state: BrokerState, timeout_s: float, process: subprocess.Popen[bytes] | None = None
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-3000:]
                raise BrokerError(f"the Kafka broker exited with {process.returncode}:\n{tail}")
            if broker_answers(state.bootstrap, timeout_s=2.0, **self.client_options()):
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
