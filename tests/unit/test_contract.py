"""Properties of event contract v1 (hypothesis): valid events round-trip through JSON,
a missing required field is named, and e-mail-looking text in extensions is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ingest.contract import Verb, parse_event
from ingest.errors import EventRejected

REQUIRED = (
    "event_id",
    "occurred_at",
    "resource_id",
    "learner_id",
    "class_id",
    "school_uai",
    "verb",
)

# Offsets in whole minutes, within what real zones use (RFC 3339 offsets are ±HH:MM).
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
)
# Safe text: no '@', no digits runs that could read as a phone number.
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéèàç-_ ", min_size=0, max_size=30)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | words
)
keys = st.from_regex(r"[a-z][a-z_]{0,15}", fullmatch=True).filter(
    lambda key: (
        key
        not in {
            "name",
            "nom",
            "mail",
            "email",
            "tel",
            "phone",
            "login",
            "ine",
            "address",
            "adresse",
            "mobile",
            "surname",
            "prenom",
            "username",
            "telephone",
            "courriel",
            "e_mail",
            "firstname",
            "lastname",
            "first_name",
            "last_name",
            "given_name",
            "family_name",
            "full_name",
            "fullname",
            "birthdate",
            "birth_date",
            "date_naissance",
            "date_de_naissance",
        }
    )
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(draw(st.uuids())),
        "occurred_at": draw(moments).isoformat(),
        "resource_id": draw(st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True)),
        "learner_id": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}", fullmatch=True)),
        "class_id": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}", fullmatch=True)),
        "school_uai": draw(st.from_regex(r"[0-9]{3}[0-9AB][0-9]{3}[A-Z]", fullmatch=True)),
        "verb": draw(st.sampled_from(get_args(Verb))),
    }
    optional = {
        "object_id": st.from_regex(r"[a-z]+:[a-z/._-]{0,60}", fullmatch=True),
        "duration_s": st.floats(min_value=0, max_value=86_400),
        "score": st.floats(allow_nan=False, allow_infinity=False),
        "success": st.booleans(),
        "extensions": st.dictionaries(keys, json_values, max_size=5),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            event[name] = draw(strategy)
    if event["verb"] == "assessment_scored" and "score" not in event:
        event["score"] = draw(st.floats(min_value=0, max_value=1))
    if event["verb"] == "questionnaire_answered":
        event["object_id"] = "m1"
        event["score"] = float(draw(st.integers(min_value=1, max_value=4)))
        event["extensions"] = {"questionnaire": "eleves",
                               "respondent": draw(st.sampled_from(["pupil", "teacher"]))}
    return event


@settings(max_examples=200, deadline=None)
@given(valid_events())
def test_any_valid_event_round_trips_through_json_unchanged(raw: dict[str, Any]) -> None:
    try:
        event = parse_event(raw)
    except EventRejected as rejection:
        # The strategy only builds valid events, except extensions over 2 KiB.
        assume(rejection.field != "extensions" or "bytes" not in rejection.reason)
        raise
    wire = event.to_json()
    again = parse_event(wire)
    assert again == event
    assert again.to_json() == wire
    assert again.occurred_at.utcoffset() == event.occurred_at.utcoffset()
    decoded = json.loads(wire)
    assert set(decoded) == {key for key, value in raw.items() if value is not None}
    assert decoded.get("extensions") == raw.get("extensions")


@settings(max_examples=100, deadline=None)
@given(valid_events(), st.sampled_from(REQUIRED))
def test_any_event_missing_a_required_field_is_refused_naming_it(
    raw: dict[str, Any], missing: str
) -> None:
    raw.pop("extensions", None)  # keep the one refusal under test the only one
    del raw[missing]
    with pytest.raises(EventRejected) as refusal:
        parse_event(json.dumps(raw))
    assert refusal.value.field == missing
    assert refusal.value.reason == "required field is missing"
    assert f"field '{missing}'" in str(refusal.value)


emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[A-Za-z0-9._%+-]{1,20}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9-]{1,20}(\.[A-Za-z0-9-]{1,10}){0,2}", fullmatch=True),
    st.from_regex(r"[A-Za-z]{2,6}", fullmatch=True),
)


@st.composite
def extensions_hiding(draw: st.DrawFn, text: st.SearchStrategy[str]) -> dict[str, Any]:
    """Extensions with ``text`` somewhere inside: a value, in a list, in a nested object."""
    value = draw(words) + draw(text) + draw(words)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        value = draw(
            st.sampled_from(
                [[value], {draw(keys): value}, [draw(json_scalars), {draw(keys): value}]]
            )
        )
    extensions = draw(st.dictionaries(keys, json_scalars, max_size=3))
    extensions[draw(keys)] = value
    return extensions


@settings(max_examples=150, deadline=None)
@given(valid_events(), extensions_hiding(emails))
def test_any_email_looking_string_in_extensions_is_refused(
    raw: dict[str, Any], extensions: dict[str, Any]
) -> None:
    raw["extensions"] = extensions
    with pytest.raises(EventRejected) as refusal:
        parse_event(raw)
    assert refusal.value.field == "extensions"
    assert "e-mail" in refusal.value.reason


@settings(max_examples=50)
@given(valid_events(), emails)
def test_an_email_as_an_extension_key_is_refused(raw: dict[str, Any], email: str) -> None:
    raw["extensions"] = {email: 1}
    with pytest.raises(EventRejected):
        parse_event(raw)


def test_utc_and_offsets_serialise_as_rfc_3339() -> None:
    raw = {
        "event_id": "0c5d7c0e-4b1f-4f5e-9a9c-3a2e8f1d6b21",
        "occurred_at": datetime(2027, 10, 4, 9, 15, tzinfo=UTC).isoformat(),
        "resource_id": "lectio",
        "learner_id": "a1",
        "class_id": "c1",
        "school_uai": "0750001A",
        "verb": "session_started",
    }
    assert json.loads(parse_event(raw).to_json())["occurred_at"] == "2027-10-04T09:15:00Z"
