"""Who wrote an event, from the Kafka record to the store (issue 14, item 1), and the
protocol key that lets a resource's own scores be outcomes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from experiments.database import registry_engine
from experiments.errors import ProtocolError
from experiments.protocol.language import load_protocol, parse_protocol
from experiments.store import events_table
from ingest.stream.router import EventRouter, IngressRecord
from tests.conftest import SettingsFactory
from tests.support.events import enrollment

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")
# The example's hash as the language of 2026-12-04 (end of the day) dumps it: the keys
# added that day with a default (analysis.cluster_correction, outcomes[].kind ...) are
# written out in the canonical JSON, what was pre-registered made explicit, and the
# registry reads stored versions through today's language (registry._in_force), so a
# file registered before them is still "unchanged". ``outcomes[].source`` is left out of
# the dump when absent: declaring no source means what it always meant.
EXAMPLE_SHA256 = "ad99397d2b3f2244e7743f31e15fd5af4791340254e1aae4a781b87a40b5ada6"


def _record(n: int, topic: str, headers: tuple[tuple[str, bytes | None], ...]
            ) -> IngressRecord:
    event = {"event_id": f"00000000-0000-4000-8000-{n:012d}",
             "occurred_at": "2028-06-01T09:00:00+02:00", "resource_id": "lectio",
             "learner_id": f"gar-{n}", "class_id": "cp-01a", "school_uai": "0750001U",
             "verb": "assessment_scored", "object_id": "fluence", "score": 50.0}
    return IngressRecord(topic, 0, n, None, json.dumps(event).encode(), headers)


def test_the_worker_stores_the_gateways_authority_header_and_nothing_else(
        make_settings: SettingsFactory) -> None:
    settings = make_settings()
    router = EventRouter(settings, b"unit-test-key", registry_engine(settings))
    enrolled = enrollment("cp-01a", "exp-unit", "lectio")
    gateway_topic = settings.topics.events
    router.route([
        _record(1, gateway_topic, (("preuve.authority", b"assessor:exp-unit:0123456789ab"),)),
        _record(2, gateway_topic, ()),  # a direct producer: unknown
        _record(3, gateway_topic, (("other", b"x"), ("preuve.authority", None))),
        # A made-up header on another topic is not believed.
        _record(4, "somewhere.else", (("preuve.authority", b"assessor:exp-unit:forged"),)),
    ], lambda c, r: enrolled)
    with router.store("exp-unit").engine.connect() as connection:
        stored = dict(connection.execute(
            sa.select(events_table.c.event_id, events_table.c.authority)).all())
    assert stored == {
        "00000000-0000-4000-8000-000000000001": "assessor:exp-unit:0123456789ab",
        "00000000-0000-4000-8000-000000000002": None,
        "00000000-0000-4000-8000-000000000003": None,
        "00000000-0000-4000-8000-000000000004": None,
    }


def test_a_source_key_absent_is_left_out_of_the_canonical_json() -> None:
    protocol = load_protocol(ROOT / "protocols" / "fluence-cp-2027.yaml")
    assert protocol.sha256 == EXAMPLE_SHA256
    assert "source" not in json.loads(protocol.canonical_json())["outcomes"][0]


def test_an_outcome_source_is_the_evaluated_resource_only() -> None:
    declared = parse_protocol(TEXT.replace(
        "    primary: true\n", "    primary: true\n    source: {resource: lectio}\n", 1))
    assert declared.outcomes[0].source is not None
    assert declared.sha256 != EXAMPLE_SHA256  # a change of meaning changes the hash
    with pytest.raises(ProtocolError) as refused:
        parse_protocol(TEXT.replace(
            "    primary: true\n", "    primary: true\n    source: {resource: scriptum}\n", 1))
    assert "outcomes[0].source.resource: must be the evaluated resource 'lectio'" \
        in str(refused.value)
