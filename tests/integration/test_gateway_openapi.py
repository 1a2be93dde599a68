"""Schemathesis against the gateway's OpenAPI document, in process (ASGI), with the real
producer writing to the real test broker: no input may make the gateway answer 5xx other
than its documented 503."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # kafka-python 3.0 reads its protocol schemas with importlib.resources.open_text at import
    # time (see tests/integration/test_gateway.py).
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from experiments.access import issue_token
from experiments.database import registry_engine
from experiments.settings import GatewaySettings, Settings, TopicNames
from ingest.broker import LocalBroker
from ingest.gateway import create_app
from ingest.producer import new_producer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bootstrap(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The session broker of tests/conftest.py when there is one, else a broker of our own."""
    try:
        shared = request.getfixturevalue("kafka_bootstrap")
    except pytest.FixtureLookupError:
        shared = None
    if shared is not None:
        yield shared if isinstance(shared, str) else shared.bootstrap
        return
    broker = LocalBroker(
        tmp_path_factory.mktemp("kafka"), Path.home() / ".cache" / "preuve", "4.3.1", partitions=2
    )
    try:
        yield broker.up().bootstrap
    finally:
        broker.down()


@pytest.fixture(scope="module")
def gateway(
    bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FastAPI, str]]:
    settings_ = Settings(
        state_dir=tmp_path_factory.mktemp("gateway-state"),
        kafka_bootstrap=bootstrap,
        topics=TopicNames(events=f"test.fuzz.{uuid.uuid4().hex[:12]}"),
        gateway=GatewaySettings(max_batch_items=20, max_batch_bytes=65536, kafka_timeout_s=15),
    )
    engine = registry_engine(settings_)
    key = issue_token(engine, "edtech", "lectio")
    producer: Any = new_producer(settings_, client_id="test-gateway-fuzz", linger_ms=1)
    try:
        yield create_app(settings_, producer=producer, engine=engine), key
    finally:
        producer.close(timeout=10)
        engine.dispose()


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    [
        ("POST", "/v1/events", GenerationMode.POSITIVE),
        ("POST", "/v1/events", GenerationMode.NEGATIVE),
        ("POST", "/v1/xapi/statements", GenerationMode.POSITIVE),
        ("POST", "/v1/xapi/statements", GenerationMode.NEGATIVE),
        ("GET", "/healthz", GenerationMode.POSITIVE),
    ],
)
def test_no_input_makes_the_gateway_fail(
    gateway: tuple[FastAPI, str], method: str, path: str, mode: GenerationMode
) -> None:
    # schemathesis' pytest integration (`from_fixture` + `parametrize`) breaks on pytest 9
    # (it reads `request.node._nodeid`), so its strategies are driven by hypothesis directly.
    app, key = gateway
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)[path][method]
    statuses: Counter[int] = Counter()

    @settings(
        max_examples={"POST": 200 if mode == GenerationMode.POSITIVE else 100}.get(method, 10),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: Any) -> None:
        # positive_data_acceptance is left out: the contract refuses schema-valid events on
        # purpose (score required for assessment_scored, e-mail or phone-looking text),
        # rules a JSON Schema does not express. Every other check runs, not_a_server_error
        # first.
        if path == "/v1/events" and mode == GenerationMode.POSITIVE:
            # Events of the key's resource, so that valid ones go all the way to Kafka (202).
            items = case.body if isinstance(case.body, list) else [case.body]
            for item in items:
                if isinstance(item, dict):
                    item["resource_id"] = "lectio"
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {key}", "X-API-Key": key},
            excluded_checks=[positive_data_acceptance],
        )
        statuses[response.status_code] += 1

    call()
    print(f"{method} {path} {mode}: answers {dict(sorted(statuses.items()))}")
