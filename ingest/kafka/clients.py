"""The one module that builds Kafka clients (kafka-python and aiokafka), secured.

Every producer, consumer and admin client of Preuve is made here, so that the
``kafka.security`` settings apply to all of them. Each client acts for a *principal*:
one per service, each with only the ACLs it needs (:mod:`ingest.kafka.access`):

========== ============================================================================
admin      creates topics, SCRAM users and ACLs (``preuve kafka up`` / ``setup``)
gateway    writes ``preuve.events``
worker     reads the ingress topics (its group), writes the dead-letter topic, reads
           ``preuve.enrollments``
enrollment writes ``preuve.enrollments`` (enrollment API and CLI, purge tombstones)
scheduler  writes ``preuve.analysis.requests``
analysis   reads ``preuve.analysis.requests`` (its group)
edtech-R   writes ``preuve.events.R`` only (an EdTech producing directly)
========== ============================================================================

Credentials: ``kafka.security.user`` / ``password`` when set (one identity for the
process, as on a cluster an operator manages); otherwise the principal's own password
file ``<secrets_dir>/<principal>.password``, which ``preuve kafka up`` writes (0600) for
the local broker, and compose mounts as Docker secrets. The CA is ``ca_file`` or
``<secrets_dir>/ca.pem``.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.settings import Settings
from ingest.errors import BrokerError
from ingest.kafka.broker import LocalBroker
from ingest.kafka.principals import (
    ADMIN,
    ANALYSIS,
    ENROLLMENT,
    GATEWAY,
    SCHEDULER,
    SERVICES,
    USERS,
    WORKER,
    edtech_principal,
)

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

__all__ = [
    "ADMIN",
    "ANALYSIS",
    "ENROLLMENT",
    "GATEWAY",
    "SCHEDULER",
    "SERVICES",
    "WORKER",
    "admin",
    "aio_admin",
    "aio_consumer",
    "aio_producer",
    "bootstrap",
    "consumer",
    "edtech_principal",
    "has_credentials",
    "local_broker",
    "password_file",
    "producer",
    "secrets_dir",
    "security_env",
    "security_options",
    "user_of",
]

def local_broker(settings: Settings) -> LocalBroker:
    """The local broker configured by ``settings`` (``preuve kafka up``)."""
    kafka = settings.kafka
    return LocalBroker(
        settings.state_dir / "kafka",
        settings.cache_dir,
        kafka.version,
        port=kafka.port,
        partitions=kafka.partitions,
        heap=kafka.heap,
        retention_hours=24 * kafka.ingress_retention_days,
        secured=kafka.security.protocol == "SASL_SSL",
        secrets_dir=secrets_dir(settings),
        users=USERS,
    )


def bootstrap(settings: Settings) -> str:
    """Bootstrap servers: ``PREUVE_KAFKA_BOOTSTRAP``, else the running local broker."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    state = local_broker(settings).state()
    if state is None:
        raise BrokerError("no Kafka broker: run `preuve kafka up`, or set PREUVE_KAFKA_BOOTSTRAP")
    return state.bootstrap


def secrets_dir(settings: Settings) -> Path:
    """Where the local CA and the principals' passwords are (``kafka.security.secrets_dir``)."""
    return settings.kafka.security.secrets_dir or settings.state_dir / "kafka" / "secrets"


def password_file(settings: Settings, principal: str) -> Path:
    """The file holding a principal's SCRAM password."""
    return secrets_dir(settings) / f"{principal}.password"


def _uses_sasl(settings: Settings) -> bool:
    return settings.kafka.security.protocol.startswith("SASL_")


def has_credentials(settings: Settings, principal: str) -> bool:
    """Whether this process can act as ``principal`` (or needs no credentials)."""
    security = settings.kafka.security
    return (not _uses_sasl(settings) or security.user is not None
            or password_file(settings, principal).exists())


def user_of(settings: Settings, principal: str) -> str:
    """The SASL user that acts for ``principal`` in this process."""
    return settings.kafka.security.user or principal


def _credentials(settings: Settings, principal: str) -> tuple[str, str]:
    security = settings.kafka.security
    if security.user is not None:
        if security.password is None:
            raise BrokerError("kafka.security.user is set without kafka.security.password "
                              "(PREUVE_KAFKA__SECURITY__PASSWORD)")
        return security.user, security.password.get_secret_value()
    path = password_file(settings, principal)
    try:
        return principal, path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise BrokerError(
            f"no Kafka credentials for {principal!r} ({path} is missing): run `preuve kafka "
            "up` for the local broker, or set PREUVE_KAFKA__SECURITY__USER and "
            "PREUVE_KAFKA__SECURITY__PASSWORD (or PREUVE_KAFKA__SECURITY__SECRETS_DIR)"
        ) from None


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    security = settings.kafka.security
    ca_file = security.ca_file
    if ca_file is None and (secrets_dir(settings) / "ca.pem").exists():
        ca_file = secrets_dir(settings) / "ca.pem"
    return _context(ca_file, security.cert_file, security.key_file, security.check_hostname)


@functools.lru_cache(maxsize=8)
def _context(ca_file: Path | None, cert_file: Path | None, key_file: Path | None,
             check_hostname: bool) -> ssl.SSLContext:
    # One context per set of files, shared by every client of the process.
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context


def security_options(settings: Settings, principal: str) -> dict[str, Any]:
    """The connection options of ``principal``, in the names both libraries share
    (``security_protocol``, ``sasl_*``, ``ssl_context``)."""
    security = settings.kafka.security
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.protocol in ("SASL_SSL", "SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if _uses_sasl(settings):
        user, password = _credentials(settings, principal)
        options.update(sasl_mechanism=security.mechanism, sasl_plain_username=user,
                       sasl_plain_password=password)
    return options


def security_env(settings: Settings) -> dict[str, str]:
    """The ``PREUVE_KAFKA__SECURITY__*`` variables that give a child process (whatever its
    state directory) the same Kafka security settings, the secrets directory included."""
    security = settings.kafka.security
    env = {"PREUVE_KAFKA__SECURITY__PROTOCOL": security.protocol,
           "PREUVE_KAFKA__SECURITY__MECHANISM": security.mechanism,
           "PREUVE_KAFKA__SECURITY__CHECK_HOSTNAME": str(security.check_hostname).lower(),
           "PREUVE_KAFKA__SECURITY__SECRETS_DIR": str(secrets_dir(settings))}
    if security.user is not None:
        env["PREUVE_KAFKA__SECURITY__USER"] = security.user
    if security.password is not None:
        env["PREUVE_KAFKA__SECURITY__PASSWORD"] = security.password.get_secret_value()
    for name in ("ca_file", "cert_file", "key_file"):
        value = getattr(security, name)
        if value is not None:
            env[f"PREUVE_KAFKA__SECURITY__{name.upper()}"] = str(value)
    return env


def _options(settings: Settings, principal: str, defaults: dict[str, Any],
             overrides: dict[str, Any]) -> dict[str, Any]:
    options = {"bootstrap_servers": bootstrap(settings), "client_id": f"preuve-{principal}",
               **defaults, **overrides}
    options.update(security_options(settings, principal))
    return options


# kafka-python ------------------------------------------------------------------------

#: Every producer only acknowledges durably written records.
_PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "retries": 2**31 - 1,
    "delivery_timeout_ms": 120_000,
    "linger_ms": 5,
    "batch_size": 256 * 1024,
}


def producer(settings: Settings, principal: str, **overrides: Any) -> KafkaProducer:
    """A kafka-python producer acting for ``principal`` (acks=all, idempotent)."""
    from kafka import KafkaProducer

    return KafkaProducer(**_options(settings, principal, _PRODUCER_DEFAULTS, overrides))


def consumer(settings: Settings, principal: str, *topics: str, **options: Any) -> KafkaConsumer:
    """A kafka-python consumer acting for ``principal`` (no auto-commit unless asked)."""
    from kafka import KafkaConsumer

    defaults = {"enable_auto_commit": False, "auto_offset_reset": "earliest"}
    return KafkaConsumer(*topics, **_options(settings, principal, defaults, options))


def admin(settings: Settings, principal: str = ADMIN, **options: Any) -> KafkaAdminClient:
    """A kafka-python admin client acting for ``principal`` (the admin by default)."""
    from kafka import KafkaAdminClient

    return KafkaAdminClient(**_options(settings, principal, {}, options))


# aiokafka ----------------------------------------------------------------------------


def aio_producer(settings: Settings, principal: str, **overrides: Any) -> AIOKafkaProducer:
    """An aiokafka producer acting for ``principal`` (acks=all, idempotent)."""
    from aiokafka import AIOKafkaProducer

    defaults = {"acks": "all", "enable_idempotence": True}
    return AIOKafkaProducer(**_options(settings, principal, defaults, overrides))


def aio_consumer(settings: Settings, principal: str, *topics: str,
                 **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer acting for ``principal`` (no auto-commit unless asked)."""
    from aiokafka import AIOKafkaConsumer

    defaults = {"enable_auto_commit": False, "auto_offset_reset": "earliest"}
    return AIOKafkaConsumer(*topics, **_options(settings, principal, defaults, options))


def aio_admin(settings: Settings, principal: str, **options: Any) -> AIOKafkaAdminClient:
    """An aiokafka admin client acting for ``principal``."""
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(**_options(settings, principal, {}, options))
