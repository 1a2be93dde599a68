"""Every Kafka topic of Preuve, declared once: name, partitions and configuration.

``ensure_topics`` creates what is missing (the admin principal's job: ``preuve kafka up``
locally, ``preuve kafka setup`` on an existing cluster) and grants the services their
ACLs (:mod:`ingest.kafka.access`). A service that is not allowed to create topics only
checks that they exist.

Topics:

- ``preuve.events`` (``topics.events``): what the gateway accepted, keyed by class;
- ``preuve.events.<resource>``: what an EdTech producing directly wrote (one topic per
  resource, only its own principal writes it; the stream worker reads them all);
- ``preuve.events.deadletter``: refused events with their reason;
- ``preuve.enrollments``: compacted enrollment records, keyed by class/resource;
- ``preuve.analysis.requests``: due analysis runs claimed by the scheduler.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from experiments.settings import Settings
from ingest.errors import BrokerError

__all__ = [
    "TopicSpec",
    "committed_offsets",
    "partitions_of",
    "events_pattern",
    "resource_of_topic",
    "resource_topic",
    "resource_topic_spec",
    "topic_specs",
]

logger = logging.getLogger(__name__)

# Compaction is lazy: it only cleans closed segments. Rolling a segment a day and cleaning
# at 10% dirty means a superseded enrollment, or one removed by a tombstone (purge,
# erasure), leaves the topic within a couple of days instead of weeks; tombstones
# themselves are kept a day so that every worker sees them.
_ENROLLMENT_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": str(24 * 3600 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(24 * 3600 * 1000),
}

# Resource ids are slugs (protocol language: a-z, 0-9, dashes), so a resource's topic
# name is always a legal Kafka topic name.
_RESOURCE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class TopicSpec:
    """One topic as Preuve creates it."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)


def _ingress_config(settings: Settings) -> dict[str, str]:
    # The ingress and dead-letter topics hold what resources sent before
    # pseudonymisation, so their retention is bounded.
    return {"retention.ms": str(settings.kafka.ingress_retention_days * 24 * 3600 * 1000)}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Preuve's own topics. ``preuve.events`` and ``preuve.enrollments`` share the
    partition count (both keyed by class)."""
    topics, partitions = settings.topics, settings.kafka.partitions
    return [
        TopicSpec(topics.events, partitions, _ingress_config(settings)),
        TopicSpec(topics.enrollments, partitions, _ENROLLMENT_CONFIG),
        TopicSpec(topics.deadletter, 1, _ingress_config(settings)),
        TopicSpec(topics.analysis_requests, settings.scheduler.request_partitions),
    ]


def resource_topic(settings: Settings, resource_id: str) -> str:
    """The topic an EdTech producing directly writes: ``preuve.events.<resource>``.

    >>> resource_topic(Settings(), "lectio")
    'preuve.events.lectio'
    """
    if not _RESOURCE.fullmatch(resource_id):
        raise BrokerError(f"resource id {resource_id!r}: expected a slug (a-z, 0-9, dashes)")
    name = f"{settings.topics.events}.{resource_id}"
    if name == settings.topics.deadletter:
        raise BrokerError(f"resource id {resource_id!r}: its topic would be the dead-letter topic")
    return name


def resource_topic_spec(settings: Settings, resource_id: str) -> TopicSpec:
    """The spec of an EdTech's own ingress topic (like ``preuve.events``)."""
    return TopicSpec(resource_topic(settings, resource_id), settings.kafka.partitions,
                     _ingress_config(settings))


def resource_of_topic(settings: Settings, topic: str) -> str | None:
    """The resource whose own topic ``topic`` is; None for ``preuve.events`` (any resource).

    >>> s = Settings()
    >>> resource_of_topic(s, "preuve.events.lectio"), resource_of_topic(s, "preuve.events")
    ('lectio', None)
    """
    prefix = settings.topics.events + "."
    if topic.startswith(prefix) and topic != settings.topics.deadletter:
        return topic[len(prefix):]
    return None


def events_pattern(settings: Settings) -> str:
    """The regular expression of the topics the stream worker reads: ``preuve.events``
    and every resource's ``preuve.events.<resource>``, not the dead-letter topic.

    >>> import re
    >>> pattern = re.compile(events_pattern(Settings()))
    >>> [bool(pattern.fullmatch(t)) for t in ("preuve.events", "preuve.events.lectio",
    ...                                        "preuve.events.deadletter", "preuve.enrollments")]
    [True, True, False, False]
    """
    events = re.escape(settings.topics.events)
    deadletter = re.escape(settings.topics.deadletter)
    return rf"^(?!{deadletter}$){events}(\.[a-z0-9][a-z0-9-]*)?$"


async def partitions_of(settings: Settings, principal: str, topic: str) -> list[int]:
    """The partition numbers of ``topic``, as ``principal`` sees it (aiokafka admin).

    Raises :class:`BrokerError` when the topic does not exist or is not visible to it.
    """
    from ingest.kafka import clients

    admin = clients.aio_admin(settings, principal, client_id=f"preuve-{principal}-admin")
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = sorted(p["partition"] for p in description.get("partitions", []))
    if description.get("error_code") or not partitions:
        raise BrokerError(f"topic {topic} does not exist or is not visible to "
                          f"{clients.user_of(settings, principal)} (run `preuve kafka up` or "
                          "`preuve kafka setup`)")
    return partitions


def committed_offsets(settings: Settings, principal: str, group: str, topic: str
                      ) -> dict[int, int]:
    """The offsets ``group`` committed on ``topic``, by partition (kafka-python admin)."""
    from ingest.kafka import clients

    admin = clients.admin(settings, principal, client_id=f"preuve-{principal}-offsets")
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    return {tp.partition: int(meta.offset) for tp, meta in sorted(offsets.items())
            if tp.topic == topic}
