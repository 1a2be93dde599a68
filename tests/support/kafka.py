"""Reading topics back in tests (as the admin, who may read every topic)."""

from __future__ import annotations

import time

from experiments.settings import Settings
from ingest.kafka import clients
from ingest.kafka.principals import ADMIN


def consume_all(
    settings: Settings, topic: str, expected: int, timeout_s: float = 60.0
) -> list[tuple[dict[str, bytes], bytes]]:
    """(headers, value) of every record of ``topic``, waiting for ``expected`` of them,
    then reading a little longer to catch any extra copy."""
    consumer = clients.consumer(settings, ADMIN, topic, group_id=None, consumer_timeout_ms=2000)
    records: list[tuple[dict[str, bytes], bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=1000)
            for messages in batch.values():
                for message in messages:
                    records.append((dict(message.headers or []), message.value))
            if len(records) >= expected and not batch:
                break
    finally:
        consumer.close()
    return records
