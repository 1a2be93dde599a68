"""Re-reading parked events from the ingress topic, by their (partition, offset)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from experiments.settings import Settings
from ingest.kafka import clients
from ingest.kafka.principals import WORKER
from ingest.stream.parking import ParkedEvent
from ingest.stream.router import IngressRecord

__all__ = ["read_parked"]


def read_parked(
    settings: Settings, parked: Sequence[ParkedEvent], timeout_s: float = 10.0
) -> tuple[list[IngressRecord], list[ParkedEvent]]:
    """Fetch the parked records from Kafka; returns (found, missing).

    A record is missing when the ingress topic's retention has already deleted it.
    """
    from kafka import TopicPartition

    wanted: dict[TopicPartition, dict[int, ParkedEvent]] = defaultdict(dict)
    for event in parked:
        wanted[TopicPartition(event.topic, event.partition)][event.offset] = event
    consumer = clients.consumer(
        settings, WORKER, group_id=None, client_id="preuve-replay",
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    found: list[IngressRecord] = []
    try:
        consumer.assign(list(wanted))
        beginnings = consumer.beginning_offsets(list(wanted))
        for partition, offsets in wanted.items():
            consumer.seek(partition, max(min(offsets), beginnings[partition]))
        remaining = {tp: set(offsets) for tp, offsets in wanted.items()}
        for tp in wanted:
            remaining[tp] = {o for o in remaining[tp] if o >= beginnings[tp]}
        while any(remaining.values()):
            batch = consumer.poll(timeout_ms=int(timeout_s * 1000))
            if not batch:
                break
            for tp, messages in batch.items():
                for message in messages:
                    if message.offset in remaining.get(tp, set()):
                        remaining[tp].discard(message.offset)
                        found.append(
                            IngressRecord(tp.topic, tp.partition, message.offset,
                                          message.key, message.value,
                                          tuple(message.headers or ()))
                        )
                if remaining.get(tp) and messages and messages[-1].offset >= max(wanted[tp]):
                    remaining[tp].clear()
    finally:
        consumer.close()
    found_keys = {(r.topic, r.partition, r.offset) for r in found}
    missing = [p for p in parked if (p.topic, p.partition, p.offset) not in found_keys]
    return found, missing
