"""Reading topics back in tests."""

from __future__ import annotations

import time


def consume_all(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0
) -> list[tuple[dict[str, bytes], bytes]]:
    """(headers, value) of every record of ``topic``, waiting for ``expected`` of them,
    then reading a little longer to catch any extra copy."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=2000,
    )
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
