"""Producing to Kafka with kafka-python: usage events and enrollment records.

The producers come from :mod:`ingest.kafka.clients`, each acting for its principal.

Every producer here waits for ``acks=all`` with idempotence on, so that a call that
returns has durably written its records; records are keyed by ``class_id`` so that all
of a class's events and its enrollment land in the same partition (co-partitioning is
what lets the stream worker look enrollments up locally).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.settings import Settings
from ingest.contract import EnrollmentMessage
from ingest.errors import BrokerError
from ingest.kafka import clients
from ingest.kafka.principals import ENROLLMENT, GATEWAY, edtech_principal
from ingest.kafka.topics import resource_topic

__all__ = [
    "EnrollmentPublisher",
    "SendReport",
    "enrollment_key",
    "enrollment_key_parts",
    "publish_enrollments",
    "read_jsonl",
    "send_raw_events",
]

logger = logging.getLogger(__name__)


class EnrollmentPublisher:
    """One long-lived producer that publishes enrollment records as the ``enrollment``
    principal (the only one allowed to write ``preuve.enrollments``).

    Made on first use and kept: the enrollment API publishes at each request. After a
    failed publication the producer is dropped and the next call makes a new one (an
    idempotent kafka-python producer can stay stuck on the sequence numbers of the
    batches it failed to deliver). Thread-safe: one publication at a time.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: Any = None
        self._lock = threading.Lock()

    def publish(self, messages: Iterable[EnrollmentMessage]) -> int:
        """Publish records keyed by :func:`enrollment_key`; returns how many were durably
        written (all, or an error is raised)."""
        with self._lock:
            if self._producer is None:
                self._producer = clients.producer(self.settings, ENROLLMENT)
            producer = self._producer
            try:
                futures = [
                    producer.send(self.settings.topics.enrollments,
                                  key=enrollment_key(m.class_id, m.resource_id), value=m.to_json())
                    for m in messages
                ]
                producer.flush()
                for future in futures:
                    future.get()
            except BaseException:
                self._producer = None
                producer.close(timeout=5)
                raise
            return len(futures)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close()
                self._producer = None


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


def send_raw_events(settings: Settings, lines: Iterable[bytes],
                    resource_id: str | None = None) -> SendReport:
    """Produce events as they are (validation is the stream worker's job, so that bad
    events reach the dead-letter topic with their reason), keyed by ``class_id``.

    Without ``resource_id``: to ``preuve.events``, as the gateway's principal (the
    platform's own ingress). With it: to the resource's own topic
    ``preuve.events.<resource>``, as the EdTech's principal, which may write nothing else.
    """
    if resource_id is None:
        topic, principal = settings.topics.events, GATEWAY
    else:
        topic, principal = resource_topic(settings, resource_id), edtech_principal(resource_id)
    from kafka.errors import KafkaError

    sent = unkeyed = 0
    try:
        producer = clients.producer(settings, principal)
        try:
            futures = []
            for raw in lines:
                key = _class_key(raw)
                unkeyed += key is None
                futures.append(producer.send(topic, key=key, value=raw))
                sent += 1
            producer.flush()
            for future in futures:
                future.get()  # an authorization failure is an error, not a silent drop
        finally:
            producer.close(timeout=5)
    except KafkaError as exc:
        raise BrokerError(f"Kafka did not take the events for {topic} as user "
                          f"{clients.user_of(settings, principal)}: {exc!r}") from exc
    logger.info("sent %d events to %s (%d without class_id)", sent, topic, unkeyed)
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
    """Publish enrollment records once, with a producer of its own (scripts, tests); a
    long-running process keeps an :class:`EnrollmentPublisher`."""
    publisher = EnrollmentPublisher(settings)
    try:
        return publisher.publish(messages)
    finally:
        publisher.close()
