"""Producing to Kafka with kafka-python: usage events and enrollment records.

Every producer here waits for ``acks=all`` with idempotence on, so that a call that
returns has durably written its records; records are keyed by ``class_id`` so that all
of a class's events and its enrollment land in the same partition (co-partitioning is
what lets the stream worker look enrollments up locally).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from experiments.settings import Settings
from ingest.contract import EnrollmentMessage
from ingest.errors import BrokerError
from ingest.kafka.broker import LocalBroker

__all__ = [
    "SendReport",
    "ensure_topics",
    "kafka_bootstrap",
    "local_broker",
    "enrollment_key",
    "enrollment_key_parts",
    "new_producer",
    "publish_enrollments",
    "read_jsonl",
    "send_raw_events",
]

logger = logging.getLogger(__name__)


def local_broker(settings: Settings) -> LocalBroker:
    """The local broker configured by ``settings`` (``preuve kafka up``)."""
    return LocalBroker(
        settings.state_dir / "kafka",
        settings.cache_dir,
        settings.kafka.version,
        port=settings.kafka.port,
        partitions=settings.kafka.partitions,
        heap=settings.kafka.heap,
        retention_hours=24 * settings.kafka.ingress_retention_days,
    )


def kafka_bootstrap(settings: Settings) -> str:
    """Bootstrap servers: ``PREUVE_KAFKA_BOOTSTRAP``, else the running local broker."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    state = local_broker(settings).state()
    if state is None:
        raise BrokerError(
            "no Kafka broker: run `preuve kafka up`, or set PREUVE_KAFKA_BOOTSTRAP"
        )
    return state.bootstrap


def new_producer(settings: Settings, **overrides: object) -> object:
    """A kafka-python producer that only acknowledges durably written records."""
    from kafka import KafkaProducer

    options: dict[str, object] = {
        "bootstrap_servers": kafka_bootstrap(settings),
        "acks": "all",
        "enable_idempotence": True,
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 120_000,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "client_id": "preuve-producer",
    }
    options.update(overrides)
    return KafkaProducer(**options)


# Compaction is lazy: it only cleans closed segments. Rolling a segment a day and cleaning
# at 10% dirty means a superseded enrollment, or one removed by a tombstone (purge,
# erasure), leaves the topic within a couple of days instead of weeks; tombstones
# themselves are kept a day so that every worker sees them.
_ENROLLMENT_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": str(24 * 3600 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(24 * 3600 * 1000),
}


def ensure_topics(settings: Settings) -> None:
    """Create Preuve's topics if they do not exist, with the configured partitions.

    ``preuve.events`` and ``preuve.enrollments`` share the partition count, since the
    stream worker joins them by class. The ingress and dead-letter topics hold what
    resources sent before pseudonymisation, so their retention is bounded.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    retention_ms = str(settings.kafka.ingress_retention_days * 24 * 3600 * 1000)
    topics = settings.topics
    partitions = settings.kafka.partitions
    wanted = [
        NewTopic(topics.events, partitions, 1, topic_configs={"retention.ms": retention_ms}),
        NewTopic(topics.enrollments, partitions, 1, topic_configs=_ENROLLMENT_TOPIC_CONFIG),
        NewTopic(topics.deadletter, 1, 1, topic_configs={"retention.ms": retention_ms}),
        NewTopic(topics.analysis_requests, settings.scheduler.request_partitions, 1),
    ]
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap(settings), client_id="preuve-admin")
    try:
        existing = set(admin.list_topics())
        missing = [topic for topic in wanted if topic.name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created them in between: what we wanted
            logger.info("created topics %s", ", ".join(topic.name for topic in missing))
    finally:
        admin.close()


@dataclass(frozen=True)
class SendReport:
    """What ``send_raw_events`` produced."""

    sent: int
    unkeyed: int


def read_jsonl(path: Path) -> Iterator[bytes]:
    """The non-blank lines of a JSONL file, as bytes."""
    with path.open("rb") as lines:
        for line in lines:
            line = line.strip()
            if line:
                yield line


def _class_key(raw: bytes) -> bytes | None:
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    class_id = obj.get("class_id") if isinstance(obj, dict) else None
    return class_id.encode() if isinstance(class_id, str) else None


def send_raw_events(settings: Settings, lines: Iterable[bytes]) -> SendReport:
    """Produce events as they are (validation is the stream worker's job, so that bad
    events reach the dead-letter topic with their reason), keyed by ``class_id``."""
    producer = new_producer(settings)
    sent = unkeyed = 0
    try:
        for raw in lines:
            key = _class_key(raw)
            unkeyed += key is None
            producer.send(settings.topics.events, key=key, value=raw)  # type: ignore[attr-defined]
            sent += 1
        producer.flush()  # type: ignore[attr-defined]
    finally:
        producer.close()  # type: ignore[attr-defined]
    logger.info("sent %d events to %s (%d without class_id)", sent, settings.topics.events, unkeyed)
    return SendReport(sent=sent, unkeyed=unkeyed)


def enrollment_key(class_id: str, resource_id: str) -> bytes:
    """The key of a class's enrollment for one resource in ``preuve.enrollments``.

    The topic is compacted, which keeps only the last record of each key: keying by the
    class alone would let compaction drop the enrollment of a class taking part in two
    experiments (two resources). A ``None`` value under this key (a tombstone) removes
    the enrollment, which is how a purge or an erasure reaches the topic.
    """
    return f"{class_id}/{resource_id}".encode()


def enrollment_key_parts(key: bytes) -> tuple[str, str]:
    """(class_id, resource_id) of an :func:`enrollment_key` (class ids hold no ``/``).

    >>> enrollment_key_parts(enrollment_key("cp-01a", "lectio"))
    ('cp-01a', 'lectio')
    """
    class_id, _, resource_id = key.decode(errors="replace").partition("/")
    return class_id, resource_id


def publish_enrollments(settings: Settings, messages: Iterable[EnrollmentMessage]) -> int:
    """Publish enrollment records to ``preuve.enrollments`` (keyed by
    :func:`enrollment_key`); returns how many were durably written."""
    producer = new_producer(settings)
    count = 0
    try:
        for message in messages:
            producer.send(  # type: ignore[attr-defined]
                settings.topics.enrollments,
                key=enrollment_key(message.class_id, message.resource_id),
                value=message.to_json(),
            )
            count += 1
        producer.flush()  # type: ignore[attr-defined]
    finally:
        producer.close()  # type: ignore[attr-defined]
    return count
