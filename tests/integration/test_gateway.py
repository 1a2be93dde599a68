"""The gateway against a real Kafka broker: every answer of POST /v1/events and
/v1/xapi/statements, and what lands in the topic (consumed back with kafka-python)."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # kafka-python 3.0 reads its protocol schemas with importlib.resources.open_text at import
    # time; that DeprecationWarning is attributed to importlib, so pyproject's kafka.* filter
    # misses it and filterwarnings=error would fail collection.
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from kafka import TopicPartition

from experiments.access import issue_token
from experiments.database import registry_engine
from experiments.settings import GatewaySettings, KafkaSettings, Settings, TopicNames
from ingest.gateway import OPENAPI_PATH, create_app, openapi_document
from ingest.kafka import clients
from ingest.kafka.access import ensure_topics
from ingest.kafka.broker import free_port
from ingest.kafka.principals import ADMIN, GATEWAY
from ingest.receipts import purge_receipts, receipts
from ingest.xapi import CLASS_EXTENSION, SCHOOL_EXTENSION
from tests.conftest import SIMULATED_NOW
from tests.support.gateway_client import AppClient as InProcessClient

pytestmark = pytest.mark.integration


class AppClient(InProcessClient):
    """The gateway app in process (tests/support/gateway_client.py), with GET too."""

    async def _get(self, url: str, kwargs: dict[str, Any]) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.get(url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._portal.call(self._get, url, kwargs)


def _with_topics(settings: Settings) -> Settings:
    ensure_topics(settings)  # as the admin: the topics and the gateway's ACL on its topic
    return settings


@pytest.fixture
def settings(tmp_path: Path, kafka_bootstrap: str, kafka_settings: KafkaSettings) -> Settings:
    topic = f"test.gateway.{uuid.uuid4().hex[:12]}"
    return _with_topics(Settings(
        simulated_now=SIMULATED_NOW,  # its events: 2027-2028
        state_dir=tmp_path,
        kafka_bootstrap=kafka_bootstrap,
        kafka=kafka_settings.model_copy(update={"partitions": 2}),
        topics=TopicNames(events=topic),
        gateway=GatewaySettings(max_batch_items=5, max_batch_bytes=8192, kafka_timeout_s=15),
    ))


@pytest.fixture
def engine(settings: Settings) -> Iterator[sa.Engine]:
    engine = registry_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def key(engine: sa.Engine) -> str:
    return issue_token(engine, "edtech", "lectio", label="lectio-test")


@pytest.fixture
def client(settings: Settings, engine: sa.Engine) -> Iterator[AppClient]:
    # The app creates its own producer on first use and closes it at shutdown.
    with AppClient(create_app(settings, engine=engine)) as client:
        yield client


def _records(settings: Settings) -> list[tuple[bytes | None, dict[str, Any]]]:
    """Every record of the events topic, read from the beginning to the end offsets."""
    consumer = clients.consumer(settings, ADMIN, client_id="test-gateway-reader")
    try:
        topic = settings.topics.events
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert partitions, f"topic {topic} has no partitions"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[tuple[bytes | None, dict[str, Any]]] = []
        deadline = time.monotonic() + 15
        while any(consumer.position(p) < end[p] for p in partitions):
            assert time.monotonic() < deadline, "could not read the topic to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend((record.key, json.loads(record.value)) for record in batch)
        return records
    finally:
        consumer.close()


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2027-10-04T09:15:00+02:00",
        "resource_id": "lectio",
        "learner_id": "gar-7f3a9c",
        "class_id": "cls-42",
        "school_uai": "0750001U",
        "verb": "exercise_answered",
        "object_id": "lectio:exercise:12",
        "score": 0.75,
        "success": True,
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not None}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_one_event_is_written_to_the_topic_keyed_by_class(
    client: AppClient, settings: Settings, key: str
) -> None:
    event = _event()
    answer = client.post("/v1/events", json=event, headers=_auth(key))
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "accepted": 1, "duplicates": 0, "event_ids": [event["event_id"]], "notes": []
    }
    [(record_key, value)] = _records(settings)
    assert record_key == b"cls-42"
    assert value["event_id"] == event["event_id"]
    assert value["occurred_at"] == "2027-10-04T09:15:00+02:00"
    assert {k: v for k, v in value.items() if k != "occurred_at"} == {
        k: v for k, v in event.items() if k != "occurred_at"
    }


def test_a_batch_is_written_whole_with_the_x_api_key_header(
    client: AppClient, settings: Settings, key: str
) -> None:
    batch = [_event(class_id=f"cls-{n}") for n in range(5)]
    answer = client.post("/v1/events", json=batch, headers={"X-API-Key": key})
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 5
    records = _records(settings)
    assert sorted(v["event_id"] for _, v in records) == sorted(e["event_id"] for e in batch)
    assert {k: v["class_id"].encode() for k, v in records} == {
        f"cls-{n}".encode(): f"cls-{n}".encode() for n in range(5)
    }


def test_a_resent_event_is_a_success_without_a_second_copy(
    client: AppClient, settings: Settings, key: str, engine: sa.Engine
) -> None:
    first, second = _event(), _event(learner_id="gar-11aa")
    assert client.post("/v1/events", json=first, headers=_auth(key)).status_code == 202
    # Same event, keys in another order and 1.0 vs 1: identical content.
    resent = dict(reversed(list(first.items())))
    answer = client.post("/v1/events", json=[resent, second, second], headers=_auth(key))
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 3
    assert answer.json()["duplicates"] == 2  # the re-sent one, and `second` twice in the batch
    ids = [v["event_id"] for _, v in _records(settings)]
    assert sorted(ids) == sorted([first["event_id"], second["event_id"]])
    with engine.connect() as connection:
        states = dict(connection.execute(sa.select(receipts.c.event_id, receipts.c.state)).all())
    assert states == {first["event_id"]: "confirmed", second["event_id"]: "confirmed"}


def test_the_same_event_id_with_other_content_is_a_conflict(
    client: AppClient, settings: Settings, key: str
) -> None:
    event = _event()
    assert client.post("/v1/events", json=event, headers=_auth(key)).status_code == 202
    other = _event()
    answer = client.post("/v1/events", json=[other, {**event, "score": 0.5}], headers=_auth(key))
    assert answer.status_code == 409, answer.text
    [problem] = answer.json()["errors"]
    assert (problem["index"], problem["field"]) == (1, "event_id")
    assert event["event_id"] in problem["reason"]
    # Nothing of the refused batch was written, not even the good item.
    assert [v["event_id"] for _, v in _records(settings)] == [event["event_id"]]

    twice = _event()
    answer = client.post("/v1/events", json=[twice, {**twice, "score": 0.1}], headers=_auth(key))
    assert answer.status_code == 409
    assert [(p["index"], p["field"]) for p in answer.json()["errors"]] == [(1, "event_id")]


def test_a_malformed_batch_lists_each_bad_item_and_writes_nothing(
    client: AppClient, settings: Settings, key: str
) -> None:
    batch = [
        _event(),
        _event(occurred_at=None),
        _event(school_uai="75001"),
        _event(occurred_at="2027-10-04T09:15:00"),
        "not an event",
    ]
    answer = client.post("/v1/events", json=batch, headers=_auth(key))
    assert answer.status_code == 422, answer.text
    problems = [(p["index"], p["field"]) for p in answer.json()["errors"]]
    assert problems == [(1, "occurred_at"), (2, "school_uai"), (3, "occurred_at"), (4, None)]
    assert "missing UTC offset" in answer.json()["errors"][2]["reason"]
    extra = client.post("/v1/events", json=_event(name="Jeanne"), headers=_auth(key))
    assert extra.status_code == 422
    assert extra.json()["errors"][0] | {"reason": ""} == {"index": 0, "field": "name", "reason": ""}
    for body in (b"{not json", b"42", b"[]", b"", b'{"score": NaN}'):
        answer = client.post("/v1/events", content=body, headers=_auth(key))
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["errors"][0]["index"] is None
    assert _records(settings) == []


def test_an_oversized_batch_is_refused(client: AppClient, settings: Settings, key: str) -> None:
    answer = client.post("/v1/events", json=[_event() for _ in range(6)], headers=_auth(key))
    assert answer.status_code == 413, answer.text
    assert "6 items, at most 5" in answer.json()["errors"][0]["reason"]
    big = _event(extensions={"notes": "x" * 1500})
    answer = client.post("/v1/events", json=[big] * 5, headers=_auth(key))
    assert answer.status_code == 413, answer.text
    assert "8192" in answer.json()["errors"][0]["reason"]
    assert _records(settings) == []


def test_a_request_without_a_valid_key_is_unauthorized(
    client: AppClient, settings: Settings, engine: sa.Engine
) -> None:
    for headers in ({}, {"Authorization": "Bearer pv_edtech_unknown"}, {"X-API-Key": "nope"}):
        answer = client.post("/v1/events", json=_event(), headers=headers)
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.headers["www-authenticate"] == "Bearer"
    answer = client.post("/v1/xapi/statements", json={}, headers={})
    assert answer.status_code == 401
    assert _records(settings) == []


def test_events_of_another_resource_are_forbidden(
    client: AppClient, settings: Settings, key: str, engine: sa.Engine
) -> None:
    answer = client.post(
        "/v1/events", json=[_event(), _event(resource_id="mathix")], headers=_auth(key)
    )
    assert answer.status_code == 403, answer.text
    assert [(p["index"], p["field"]) for p in answer.json()["errors"]] == [(1, "resource_id")]
    academie = issue_token(engine, "academie", "versailles")
    assert client.post("/v1/events", json=_event(), headers=_auth(academie)).status_code == 403
    assert _records(settings) == []


def test_kafka_unreachable_is_503_with_retry_after_and_a_retry_writes_once(
    settings: Settings, engine: sa.Engine, key: str
) -> None:
    dead = settings.model_copy(
        update={
            "kafka_bootstrap": f"127.0.0.1:{free_port()}",
            "gateway": GatewaySettings(kafka_timeout_s=1.0, retry_after_s=7),
        }
    )
    event = _event()
    with AppClient(create_app(dead, engine=engine)) as client:
        answer = client.post("/v1/events", json=event, headers=_auth(key))
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "7"
    # A producer that exists but whose broker is gone: the send times out.
    producer = clients.producer(
        dead, GATEWAY,
        api_version=(3, 9),
        max_block_ms=1000,
        acks="all",
        client_id="test-gateway-dead",
    )
    try:
        with AppClient(create_app(dead, producer=producer, engine=engine)) as client:
            answer = client.post("/v1/events", json=event, headers=_auth(key))
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "7"
    finally:
        producer.close(timeout=1)
    with engine.connect() as connection:
        state = connection.execute(sa.select(receipts.c.state)).scalar_one()
    assert state == "failed"
    # The client retries once Kafka is back: written once, confirmed.
    with AppClient(create_app(settings, engine=engine)) as client:
        answer = client.post("/v1/events", json=event, headers=_auth(key))
    assert answer.status_code == 202, answer.text
    assert [v["event_id"] for _, v in _records(settings)] == [event["event_id"]]


def test_xapi_statements_are_mapped_and_written(
    client: AppClient, settings: Settings, key: str
) -> None:
    statement = {
        "actor": {
            "objectType": "Agent",
            "account": {"homePage": "https://gar.example", "name": "gar-7f3a9c"},
        },
        "verb": {
            "id": "http://adlnet.gov/expapi/verbs/answered",
            "display": {"fr-FR": "a répondu"},
        },
        "object": {"id": "https://lectio.example/exercises/12"},
        "result": {"score": {"scaled": 0.8}, "success": True, "duration": "PT1M30S"},
        "context": {"extensions": {CLASS_EXTENSION: "cls-42", SCHOOL_EXTENSION: "0750001U"}},
        "timestamp": "2027-10-04T09:15:00.000Z",
    }
    answer = client.post("/v1/xapi/statements", json=[statement], headers=_auth(key))
    assert answer.status_code == 202, answer.text
    [event_id] = answer.json()["event_ids"]
    again = client.post("/v1/xapi/statements", json=statement, headers=_auth(key))
    assert again.json() == {"accepted": 1, "duplicates": 1, "event_ids": [event_id], "notes": []}
    [(record_key, value)] = _records(settings)
    assert record_key == b"cls-42"
    assert value["event_id"] == event_id
    assert (value["verb"], value["resource_id"], value["duration_s"], value["score"]) == (
        "exercise_answered",
        "lectio",
        90.0,
        0.8,
    )
    with_mbox = {**statement, "actor": {"mbox": "mailto:jeanne@example.fr"}}
    answer = client.post("/v1/xapi/statements", json=[statement, with_mbox], headers=_auth(key))
    assert answer.status_code == 422
    assert [(p["index"], p["field"]) for p in answer.json()["errors"]] == [(1, "actor.mbox")]
    other = {
        **statement,
        "context": {
            "extensions": {
                CLASS_EXTENSION: "cls-42",
                SCHOOL_EXTENSION: "0750001U",
                "https://preuve.example/xapi/extensions/resource-id": "mathix",
            }
        },
    }
    answer = client.post("/v1/xapi/statements", json=other, headers=_auth(key))
    assert answer.status_code == 403, answer.text
    assert [(p["index"], p["field"]) for p in answer.json()["errors"]] == [
        (0, "context.extensions[https://preuve.example/xapi/extensions/resource-id]")
    ]


def test_the_same_instant_in_another_offset_is_the_same_event_not_a_conflict(
    client: AppClient, settings: Settings, key: str
) -> None:
    event = _event(occurred_at="2027-10-04T07:15:00Z")
    assert client.post("/v1/events", json=event, headers=_auth(key)).status_code == 202
    in_paris = {**event, "occurred_at": "2027-10-04T09:15:00+02:00"}
    answer = client.post("/v1/events", json=in_paris, headers=_auth(key))
    assert (answer.status_code, answer.json()["duplicates"]) == (202, 1), answer.text
    later = {**event, "occurred_at": "2027-10-04T09:16:00+02:00"}
    answer = client.post("/v1/events", json=later, headers=_auth(key))
    assert answer.status_code == 409, answer.text
    statement = {
        "id": str(uuid.uuid4()),
        "actor": {"account": {"homePage": "https://gar.example", "name": "gar-7f3a9c"}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
        "object": {"id": "https://lectio.example/lessons/3"},
        "context": {"extensions": {CLASS_EXTENSION: "cls-42", SCHOOL_EXTENSION: "0750001U"}},
        "timestamp": "2027-10-04T09:15:00+02:00",
    }
    assert client.post("/v1/xapi/statements", json=statement, headers=_auth(key)).status_code == 202
    in_utc = {**statement, "timestamp": "2027-10-04T07:15:00.000Z"}
    answer = client.post("/v1/xapi/statements", json=in_utc, headers=_auth(key))
    assert (answer.status_code, answer.json()["duplicates"]) == (202, 1), answer.text
    # A statement without timestamp, re-sent with its id: the filled time of receipt is
    # not content, so the re-send is a duplicate, not a conflict.
    untimed = {**statement, "id": str(uuid.uuid4())}
    del untimed["timestamp"]
    for _ in range(2):
        answer = client.post("/v1/xapi/statements", json=untimed, headers=_auth(key))
        assert answer.status_code == 202, answer.text
    assert answer.json()["duplicates"] == 1
    assert len(_records(settings)) == 3


def test_statements_as_tools_send_them_with_the_resource_s_context_mapping(
    settings: Settings, engine: sa.Engine, tmp_path: Path
) -> None:
    contexts = tmp_path / "contexts.yaml"
    contexts.write_text(
        "moodle-college:\n"
        '  class: [{in: parent, pattern: "http://www.example.org/course/view.php?id={}"}]\n'
        '  school: [{value: "0750001U"}]\n'
    )
    settings = settings.model_copy(
        update={"gateway": settings.gateway.model_copy(update={"xapi_contexts": contexts})}
    )
    key = issue_token(engine, "edtech", "moodle-college", label="moodle-test")
    # Moodle's logstore_xapi, tests/mod_page/course_module_viewed (tests/data/xapi/moodle):
    # an actor.name beside the account, no timestamp, no id.
    data = Path(__file__).parent.parent / "data" / "xapi" / "moodle"
    fixture = data / "mod_page--course_module_viewed--existing_module.json"
    [viewed] = json.loads(fixture.read_text())
    with AppClient(create_app(settings, engine=engine)) as client:
        answer = client.post("/v1/xapi/statements", json=[viewed], headers=_auth(key))
        assert answer.status_code == 202, answer.text
        notes = answer.json()["notes"]
        assert [(n["index"], n["field"]) for n in notes] == [(0, "actor.name"), (0, "timestamp")]
        broken = {**viewed, "actor": {"name": "test_fullname", "mbox": "mailto:t@example.fr"},
                  "result": {"duration": "P1M"}}
        answer = client.post("/v1/xapi/statements", json=[viewed, broken], headers=_auth(key))
    assert answer.status_code == 422, answer.text
    assert [(p["index"], p["field"]) for p in answer.json()["errors"]] == [
        (1, "actor.name"), (1, "actor.mbox"), (1, "result.duration")
    ]
    [(record_key, value)] = _records(settings)
    assert (record_key, value["class_id"], value["verb"]) == (b"2", "2", "content_viewed")
    assert value["extensions"]["xapi_timestamp"] == "filled-on-receipt"
    assert "test_fullname" not in json.dumps(value)


def test_one_info_line_per_batch_without_learner_ids(
    client: AppClient, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ingest.gateway"):
        client.post("/v1/events", json=[_event(), _event()], headers=_auth(key))
    lines = [r.getMessage() for r in caplog.records if r.name == "ingest.gateway"]
    assert lines == ["accepted 2 events (0 duplicates) for lectio by edtech:lectio:lectio-test"]
    assert "gar-7f3a9c" not in caplog.text


def test_health_and_the_saved_openapi_document(client: AppClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    served = client.get("/openapi.json").json()
    assert set(served["paths"]) == {
        "/healthz", "/v1/events", "/v1/xapi/statements",
        "/v1/experiments/{experiment_id}/assignments",
        "/v1/experiments/{experiment_id}/corrections",
        "/v1/experiments/{experiment_id}/enrollments",
        "/v1/experiments/{experiment_id}/withdrawals",
        # issue 17: validate-only and the dead letters of a resource
        "/v1/events:validate", "/v1/xapi/statements:validate",
        "/v1/resources/{resource_id}/deadletters",
    }
    assert OPENAPI_PATH.read_text() == openapi_document(), (
        "ingest/schemas/gateway-openapi.json is stale: run "
        "`python -c 'from ingest.gateway import *; OPENAPI_PATH.write_text(openapi_document())'`"
    )


def test_receipts_older_than_the_retention_are_purged(engine: sa.Engine) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "event_id": str(uuid.uuid4()),
            "content_sha256": "0" * 64,
            "resource_id": "lectio",
            "state": "confirmed",
            "received_at": now - timedelta(days=age),
        }
        for age in (0, 29, 31, 400)
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(receipts), rows)
    assert purge_receipts(engine, timedelta(days=30)) == 2
    with engine.connect() as connection:
        kept = set(connection.execute(sa.select(receipts.c.event_id)).scalars())
    assert kept == {rows[0]["event_id"], rows[1]["event_id"]}


@pytest.mark.parametrize("workers", [1, 2])
def test_preuve_gateway_serves_on_127_0_0_1(settings: Settings, key: str, workers: int) -> None:
    port = free_port()
    environment = {
        **os.environ,
        "PREUVE_STATE_DIR": str(settings.state_dir),
        "PREUVE_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "PREUVE_TOPICS__EVENTS": settings.topics.events,
        "PREUVE_LOG_LEVEL": "WARNING",
        **clients.security_env(settings),
        "PREUVE_SIMULATED_NOW": SIMULATED_NOW,
    }
    preuve = Path(sys.executable).parent / "preuve"
    server = subprocess.Popen(
        [str(preuve), "gateway", "--port", str(port), "--workers", str(workers)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "preuve gateway did not answer in 30 s"
                time.sleep(0.2)
        event = _event()
        answer = httpx.post(f"{base}/v1/events", json=event, headers=_auth(key), timeout=20)
        assert answer.status_code == 202, answer.text
        assert [v["event_id"] for _, v in _records(settings)] == [event["event_id"]]
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
            if server.stdout:
                server.stdout.close()


def test_several_gateways_share_their_receipts_in_postgresql(
    kafka_bootstrap: str, kafka_settings: KafkaSettings, tmp_path: Path, postgres_url: str
) -> None:
    topic = f"test.gateway.{uuid.uuid4().hex[:12]}"
    settings = _with_topics(Settings(
        simulated_now=SIMULATED_NOW,  # its events: 2027-2028
        state_dir=tmp_path / "pg",
        database_url=postgres_url,
        kafka_bootstrap=kafka_bootstrap,
        kafka=kafka_settings.model_copy(update={"partitions": 2}),
        topics=TopicNames(events=topic),
    ))
    first_engine = registry_engine(settings)
    # A second gateway process has its own engine on the same registry.
    second_engine = sa.create_engine(
        postgres_url, connect_args={"options": "-csearch_path=preuve_registry"}
    )
    key = issue_token(first_engine, "edtech", "lectio")
    event = _event()
    try:
        with (
            AppClient(create_app(settings, engine=first_engine)) as first,
            AppClient(create_app(settings, engine=second_engine)) as second,
        ):
            assert first.post("/v1/events", json=event, headers=_auth(key)).status_code == 202
            again = second.post("/v1/events", json=event, headers=_auth(key))
            assert again.json()["duplicates"] == 1, again.text
            changed = second.post("/v1/events", json={**event, "score": 0.1}, headers=_auth(key))
            assert changed.status_code == 409, changed.text
            # The same new event sent to both gateways at once, eight times over: every
            # answer is a success, and the gateways that lost the race wait for the winner's
            # write instead of writing a second copy.
            racing = _event()
            with ThreadPoolExecutor(max_workers=8) as pool:
                answers = list(
                    pool.map(
                        lambda n: (first if n % 2 else second).post(
                            "/v1/events", json=racing, headers=_auth(key)
                        ),
                        range(8),
                    )
                )
        assert [a.status_code for a in answers] == [202] * 8, [a.text for a in answers]
        ids = [v["event_id"] for _, v in _records(settings)]
        assert ids.count(event["event_id"]) == 1
        assert ids.count(racing["event_id"]) == 1
        with second_engine.connect() as connection:
            states = dict(
                connection.execute(sa.select(receipts.c.event_id, receipts.c.state)).all()
            )
        assert states == {event["event_id"]: "confirmed", racing["event_id"]: "confirmed"}
    finally:
        second_engine.dispose()


def test_a_receipt_left_pending_by_a_dead_gateway_is_taken_over(
    client: AppClient, settings: Settings, key: str, engine: sa.Engine
) -> None:
    event = _event()
    assert client.post("/v1/events", json=event, headers=_auth(key)).status_code == 202
    # As if the gateway had died after the Kafka write, before confirming, a minute ago.
    with engine.begin() as connection:
        connection.execute(
            sa.update(receipts).values(
                state="pending", received_at=datetime.now(UTC) - timedelta(minutes=1)
            )
        )
    answer = client.post("/v1/events", json=event, headers=_auth(key))
    assert answer.status_code == 202, answer.text
    assert answer.json()["duplicates"] == 0
    # The documented second copy after a failure: same event_id, for the worker to drop.
    assert [v["event_id"] for _, v in _records(settings)] == [event["event_id"]] * 2
    with engine.connect() as connection:
        assert connection.execute(sa.select(receipts.c.state)).scalar_one() == "confirmed"
