"""The published JSON Schema of event contract v1 is the one the code enforces."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ingest.contract import EnrollmentMessage, event_json_schema, parse_event
from ingest.errors import EventRejected

SCHEMA = Path(__file__).resolve().parents[2] / "ingest" / "schemas" / "event-v1.schema.json"

GOOD = {
    "event_id": "3f2c1a9e-8e7b-4b8e-9a47-1f6d2c0b5e11", "occurred_at": "2027-10-01T09:00:00+02:00",
    "resource_id": "lectio", "learner_id": "gar-7f3a", "class_id": "cp-01a",
    "school_uai": "0781001A", "verb": "exercise_answered", "duration_s": 42.0,
}


def test_the_schema_file_is_generated_from_the_contract() -> None:
    published = json.loads(SCHEMA.read_text())
    assert published == event_json_schema(), (
        "ingest/schemas/event-v1.schema.json is stale: regenerate it from event_json_schema()"
    )


def test_a_valid_event_passes_both_the_schema_and_the_contract() -> None:
    jsonschema.validate(GOOD, event_json_schema())
    assert str(parse_event(GOOD).event_id) == GOOD["event_id"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"occurred_at": "2027-10-01T09:00:00"}, "occurred_at"),
        ({"school_uai": "75-PARIS"}, "school_uai"),
        ({"verb": "clicked"}, "verb"),
        ({"learner_id": "camille.martin@example.fr"}, "learner_id"),
        ({"duration_s": -1}, "duration_s"),
        ({"first_name": "Camille"}, "first_name"),
        ({"extensions": {"phone": "0612345678"}}, "extensions"),
        ({"verb": "assessment_scored"}, "score"),
    ],
)
def test_refusals_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(EventRejected) as refused:
        parse_event({**GOOD, **change})
    assert refused.value.field == field
    assert f"field '{field}'" in str(refused.value)


def test_not_json_is_refused_with_a_reason() -> None:
    with pytest.raises(EventRejected, match="not valid JSON"):
        parse_event(b"{oops")


def test_enrollment_records_round_trip() -> None:
    message = EnrollmentMessage(
        class_id="cp-01a", experiment_id="fluence-cp-2027", resource_id="lectio", arm="lectio",
        school_uai="0781001A", academie="versailles", at="2027-09-01T08:00:00+00:00",  # type: ignore[arg-type]
    )
    assert EnrollmentMessage.model_validate_json(message.to_json()) == message
