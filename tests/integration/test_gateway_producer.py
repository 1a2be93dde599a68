"""The gateway's own aiokafka producer (issue 20), against the real test broker: a failed
write answers 503 with Retry-After, marks the receipts failed and drops the producer; the
next request starts a fresh one and writes each event once, with its authority header."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kafka import TopicPartition

from experiments.access import issue_token
from experiments.database import registry_engine
from experiments.settings import GatewaySettings, KafkaSettings, Settings, TopicNames
from ingest.authority import AUTHORITY_HEADER
from ingest.gateway import create_app
from ingest.kafka import clients
from ingest.kafka.access import ensure_topics
from ingest.kafka.principals import ADMIN
from ingest.receipts import receipts
from tests.conftest import SIMULATED_NOW
from tests.support.gateway_client import AppClient

pytestmark = pytest.mark.integration


def _event() -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "occurred_at": "2027-10-04T09:15:00+02:00",
            "resource_id": "lectio", "learner_id": "gar-7f3a9c", "class_id": "cls-42",
            "school_uai": "0750001U", "verb": "exercise_answered"}


def _records(settings: Settings) -> list[tuple[str, bytes]]:
    """(event_id, preuve.authority) of every record of the events topic."""
    consumer = clients.consumer(settings, ADMIN, client_id="test-gateway-producer-reader")
    try:
        topic = settings.topics.events
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        found: list[tuple[str, bytes]] = []
        while any(consumer.position(p) < end[p] for p in partitions):
            for batch in consumer.poll(timeout_ms=500).values():
                found.extend((json.loads(r.value)["event_id"], dict(r.headers)[AUTHORITY_HEADER])
                             for r in batch)
        return found
    finally:
        consumer.close()


def test_a_failed_write_drops_the_producer_and_the_next_request_starts_a_fresh_one(
    tmp_path: Path, kafka_bootstrap: str, kafka_settings: KafkaSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The events topic does not exist yet (the broker creates none on its own): the
    # write cannot be acknowledged within the gateway's Kafka timeout.
    settings = Settings(
        simulated_now=SIMULATED_NOW, state_dir=tmp_path, kafka_bootstrap=kafka_bootstrap,
        kafka=kafka_settings.model_copy(update={"partitions": 2}),
        topics=TopicNames(events=f"test.gateway.later.{uuid.uuid4().hex[:12]}"),
        gateway=GatewaySettings(kafka_timeout_s=2.0, retry_after_s=3))
    engine = registry_engine(settings)
    key = issue_token(engine, "edtech", "lectio", label="lectio-test")
    made: list[Any] = []
    original = clients.aio_producer

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(clients, "aio_producer", counted)
    first, second = _event(), _event()
    headers = {"Authorization": f"Bearer {key}"}
    app = create_app(settings, engine=engine)
    with AppClient(app) as client:
        failed = client.post("/v1/events", json=first, headers=headers)
        assert failed.status_code == 503, failed.text
        assert failed.headers["retry-after"] == "3"
        with engine.connect() as connection:
            assert connection.execute(sa.select(receipts.c.state)).scalar_one() == "failed"
        assert len(made) == 1

        ensure_topics(settings)  # Kafka can take the events now
        retried = client.post("/v1/events", json=first, headers=headers)
        assert retried.status_code == 202, retried.text
        assert retried.json()["duplicates"] == 0
        assert len(made) == 2, "the failed producer was used again"
        assert client.post("/v1/events", json=second, headers=headers).status_code == 202
        assert len(made) == 2, "a working producer is kept"
    assert made[0]._closed and made[1]._closed  # both stopped by the app's shutdown
    authority = b"edtech:lectio:"
    written = _records(settings)
    assert sorted(event_id for event_id, _ in written) == sorted(
        [first["event_id"], second["event_id"]])
    assert all(value.startswith(authority) for _, value in written)
