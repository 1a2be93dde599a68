"""Schemathesis against the gateway's OpenAPI document, in process (ASGI), with the real
producer writing to the real test broker: no input may make the gateway answer 5xx other
than its documented 503.

The event API runs on a SQLite registry; the enrollment API (also in the document) on a
PostgreSQL registry of the throwaway cluster, with a registered experiment open to
enrollment and tokens of the roles that may call each route, so that generated requests
reach the handlers rather than stop at 401/404.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # kafka-python 3.0 reads its protocol schemas with importlib.resources.open_text at import
    # time (see tests/integration/test_gateway.py).
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka  # noqa: F401

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from experiments.access import issue_token
from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.design import enrollment_design
from experiments.enrollment.files import read_classes
from experiments.enrollment.transaction import enroll_classes
from experiments.protocol.language import load_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.settings import GatewaySettings, KafkaSettings, Settings, TopicNames
from ingest.gateway import OPENAPI_PATH, create_app
from ingest.kafka import clients
from ingest.kafka.access import ensure_topics
from ingest.kafka.principals import GATEWAY
from tests.conftest import SIMULATED_NOW
from tests.support.postgres import PostgresCluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bootstrap(kafka_bootstrap: str) -> str:
    """The session broker of tests/conftest.py."""
    return kafka_bootstrap


@pytest.fixture(scope="module")
def gateway(
    bootstrap: str, kafka_settings: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FastAPI, str]]:
    settings_ = Settings(
        simulated_now=SIMULATED_NOW,  # its events: 2027-2028
        state_dir=tmp_path_factory.mktemp("gateway-state"),
        kafka_bootstrap=bootstrap, kafka=kafka_settings,
        topics=TopicNames(events=f"test.fuzz.{uuid.uuid4().hex[:12]}"),
        gateway=GatewaySettings(max_batch_items=20, max_batch_bytes=65536, kafka_timeout_s=15),
    )
    ensure_topics(settings_)
    engine = registry_engine(settings_)
    key = issue_token(engine, "edtech", "lectio")
    producer: Any = clients.producer(settings_, GATEWAY, client_id="test-gateway-fuzz",
                                     linger_ms=1)
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
        # Issue 17. Validate-only answers 200 with per-item verdicts whatever the items
        # (a bad item is a refused verdict, not a 4xx): positive mode only.
        ("POST", "/v1/events:validate", GenerationMode.POSITIVE),
        ("POST", "/v1/xapi/statements:validate", GenerationMode.POSITIVE),
        ("GET", "/v1/resources/{resource_id}/deadletters", GenerationMode.POSITIVE),
        ("GET", "/v1/resources/{resource_id}/deadletters", GenerationMode.NEGATIVE),
    ],
)
def test_no_input_makes_the_gateway_fail(
    gateway: tuple[FastAPI, str], method: str, path: str, mode: GenerationMode
) -> None:
    # schemathesis' pytest integration (`from_fixture` + `parametrize`) breaks on pytest 9
    # (it reads `request.node._nodeid`), so its strategies are driven by hypothesis directly.
    app, key = gateway
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # A schema-violating batch that is also over the size limit is refused with 413 before
    # its items are read: a rejection like any other (schemathesis' list omits 413, which
    # made this test fail whenever a negative batch drew more than 20 items).
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    operation = schema[path][method]
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


# --- the enrollment API ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "fluence-cp-2027"
HEADER = ["class_id", "school_uai", "level", "pupils", "academie", "education_priority"]
ENROLLMENT_ROUTES = {
    ("POST", "/v1/experiments/{experiment_id}/enrollments"),
    ("GET", "/v1/experiments/{experiment_id}/enrollments"),
    ("POST", "/v1/experiments/{experiment_id}/withdrawals"),
}


def test_the_published_document_holds_the_enrollment_api() -> None:
    published = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    routes = {(m.upper(), p) for p, ops in published["paths"].items() for m in ops}
    assert ENROLLMENT_ROUTES <= routes, sorted(routes)
    for method, path in ENROLLMENT_ROUTES:
        operation = published["paths"][path][method.lower()]
        assert {"401", "403", "404"} <= set(operation["responses"]), (method, path)
        assert operation["security"], (method, path)


#: An enrolled class the fuzzing never withdraws (:data:`NUL_REQUESTS` needs one).
KEPT_CLASS = "kept-0"


@dataclass(frozen=True)
class EnrollmentGateway:
    app: FastAPI
    tokens: dict[str, str]
    """Role → a token: académie of Versailles, EdTech of the experiment's resource,
    researcher of the experiment."""
    classes: tuple[str, ...]
    """Versailles classes enrolled before the run (to withdraw)."""


@pytest.fixture(scope="module")
def enrollment_gateway(
    bootstrap: str, kafka_settings: KafkaSettings, postgres_cluster: PostgresCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EnrollmentGateway]:
    tag = uuid.uuid4().hex[:8]
    settings_ = Settings(
        simulated_now=SIMULATED_NOW,  # its events: 2027-2028
        state_dir=tmp_path_factory.mktemp("enrollment-fuzz"), pseudonym_key=f"fuzz-{tag}" * 5,
        database_url=postgres_cluster.create_database(f"fuzz_{tag}"),
        kafka_bootstrap=bootstrap, kafka=kafka_settings,
        topics=TopicNames(events=f"test.fuzz.{tag}", enrollments=f"test.fuzz.{tag}.enrollments"),
    )
    ensure_topics(settings_)
    engine = registry_engine(settings_)
    path = ROOT / "protocols" / f"{EXPERIMENT}.yaml"
    register_protocol(engine, load_protocol(path), path.read_text(encoding="utf-8"), "test")
    transition_experiment(engine, EXPERIMENT, "enrolling", "test")
    design, _ = enrollment_design(engine, EXPERIMENT)
    classes = tuple(f"fuzz-{i}" for i in range(6))
    text = ",".join(HEADER) + "\n" + "".join(
        f"{c},0780001C,CP,20,versailles,REP\n" for c in (*classes, KEPT_CLASS))
    enroll_classes(engine, design, read_classes(text, design, today=date(2027, 9, 1)),
                   actor="test")
    tokens = {"academie": issue_token(engine, "academie", "versailles"),
              "edtech": issue_token(engine, "edtech", design.resource_id),
              "researcher": issue_token(engine, "researcher", EXPERIMENT)}
    producer: Any = clients.producer(settings_, GATEWAY, client_id="test-enrollment-fuzz",
                                     linger_ms=1)
    try:
        yield EnrollmentGateway(create_app(settings_, producer=producer, engine=engine),
                                tokens, classes)
    finally:
        producer.close(timeout=10)
        dispose_engines()


def _field(known: list[str]) -> st.SearchStrategy[str]:
    """A CSV cell: a value the protocol knows, or any text (commas, quotes, NUL...)."""
    return st.sampled_from(known) | st.text(max_size=12)


_ROW = st.tuples(
    st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}", fullmatch=True) | st.text(max_size=12),
    _field(["0780001C", "0930001W"]),
    _field(["CP", "CE1", "6e"]),
    st.integers(-3, 40).map(str) | st.text(max_size=6),
    _field(["versailles", "creteil"]),
    _field(["REP", "REP+", ""]),
)
_CSV = st.builds(
    lambda header, rows: ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows),
    st.sampled_from([HEADER, HEADER[:-1], HEADER[::-1], [*HEADER, "extra"], ["class_id"]]),
    st.lists(_ROW, max_size=4),
)
_JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=10,
)
_JSON_ROWS = st.builds(
    lambda rows: {"classes": rows},
    st.lists(st.dictionaries(st.sampled_from([*HEADER, "x"]), st.one_of(
        st.text(max_size=10), st.integers(-3, 40), st.none())), max_size=4),
) | _JSON_VALUE.map(lambda v: {"classes": v}) | _JSON_VALUE
#: (media type, body) of an enrollment request: a CSV file, JSON rows, or any bytes.
_ENROLLMENT_BODY = (
    st.tuples(st.just("text/csv"), _CSV)
    | st.tuples(st.just("application/json"), _JSON_ROWS.map(json.dumps))
    | st.tuples(st.sampled_from(["text/csv", "application/json"]), st.binary(max_size=200))
)


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    [
        ("POST", "/v1/experiments/{experiment_id}/enrollments", GenerationMode.POSITIVE),
        ("GET", "/v1/experiments/{experiment_id}/enrollments", GenerationMode.POSITIVE),
        ("POST", "/v1/experiments/{experiment_id}/withdrawals", GenerationMode.POSITIVE),
        ("POST", "/v1/experiments/{experiment_id}/withdrawals", GenerationMode.NEGATIVE),
    ],
)
def test_no_input_makes_the_enrollment_api_fail(
    enrollment_gateway: EnrollmentGateway, method: str, path: str, mode: GenerationMode
) -> None:
    world = enrollment_gateway
    operation = schemathesis.openapi.from_asgi("/openapi.json", world.app)[path][method]
    statuses: Counter[int] = Counter()
    # Who may call each route: an académie enrolls and withdraws; an EdTech, the
    # académie and the experiment's researcher read (each sees a different answer).
    readers = ["edtech", "academie", "researcher"] if method == "GET" else ["academie"]

    @settings(
        max_examples=150 if method == "POST" else 60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def call(case: Any, data: st.DataObject) -> None:
        if mode == GenerationMode.NEGATIVE:
            # The token and the experiment are set below, so a case whose only invalid
            # part is its credentials or its path would be sent valid (and accepted):
            # negative cases here are invalid bodies.
            assume(case.meta.is_negative_at(ParameterLocation.BODY))
            assume(not case.meta.is_negative_at(ParameterLocation.HEADER))
            assume(not case.meta.is_negative_at(ParameterLocation.PATH))
        # Mostly the experiment open to enrollment, so that the handler runs; one case in
        # five keeps what schemathesis generated (an unknown experiment, odd characters).
        # Hypothesis favours small draws: 0 to 3 is the experiment.
        if data.draw(st.integers(0, 4), label="generated experiment id") < 4:
            case.path_parameters = {**(case.path_parameters or {}), "experiment_id": EXPERIMENT}
        token = world.tokens[data.draw(st.sampled_from(readers), label="role")]
        # Both schemes of the document, with the real token (X-API-Key wins when both
        # come, and schemathesis would otherwise generate one).
        headers = {"Authorization": f"Bearer {token}", "X-API-Key": token}
        if path.endswith("/enrollments") and method == "POST":
            # The operation reads its body itself (CSV or JSON rows, as documented in
            # experiments/enrollment/api.py), so the body is drawn here.
            media_type, body = data.draw(_ENROLLMENT_BODY, label="body")
            headers["Content-Type"] = media_type
            response = case.call(headers=headers, data=body.encode() if isinstance(body, str)
                                 else body)
            assert response.status_code < 500, (response.status_code, response.text[:500])
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
        else:
            if (mode == GenerationMode.POSITIVE and isinstance(case.body, dict)
                    and data.draw(st.booleans(), label="an enrolled class")):
                case.body["class_id"] = data.draw(st.sampled_from(world.classes))
            # positive_data_acceptance is left out: a schema-valid withdrawal may name a
            # class that does not exist (404) or is already withdrawn (409).
            response = case.call_and_validate(
                headers=headers, excluded_checks=[positive_data_acceptance])
        statuses[response.status_code] += 1

    call()
    print(f"{method} {path} {mode}: answers {dict(sorted(statuses.items()))}")
    # The run reached the handlers, not only the token check.
    assert set(statuses) - {401, 403, 404}, statuses


#: Requests with a NUL character, which PostgreSQL cannot store in text ("text fields
#: cannot contain NUL"): found by the fuzzing above as 500s; now refused (404, 422).
NUL_REQUESTS = {
    "withdrawal class_id": ("POST", f"/v1/experiments/{EXPERIMENT}/withdrawals",
                            {"class_id": "\x00", "reason": "r"}),
    "withdrawal reason": ("POST", f"/v1/experiments/{EXPERIMENT}/withdrawals",
                          {"class_id": KEPT_CLASS, "reason": "\x00"}),
    "experiment id (read)": ("GET", "/v1/experiments/%00/enrollments", None),
    "experiment id (enroll)": ("POST", "/v1/experiments/%00/enrollments", None),
}


@pytest.mark.parametrize("request_name", sorted(NUL_REQUESTS))
def test_a_nul_character_is_refused_not_a_server_error(
    enrollment_gateway: EnrollmentGateway, request_name: str
) -> None:
    method, url, body = NUL_REQUESTS[request_name]
    token = enrollment_gateway.tokens["academie"]

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=enrollment_gateway.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.request(method, url, json=body,
                                        headers={"Authorization": f"Bearer {token}"})

    answer = anyio.run(ask)
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
