"""Hand-written statements shaped like common tools' (tests/data/xapi/*.json) mapped onto
contract v1, and statements the contract cannot take refused with the xAPI field named.
Real statements of each tool family are in tests/unit/test_xapi_tools.py."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

import pytest

from ingest.contract import UsageEvent
from ingest.errors import EventRejected, StatementRejected
from ingest.xapi import (
    CLASS_EXTENSION,
    RESOURCE_EXTENSION,
    SCHOOL_EXTENSION,
    STATEMENT_ID_NAMESPACE,
    parse_duration,
    statement_id,
    statement_to_event,
)

DATA = Path(__file__).parent.parent / "data" / "xapi"
PARIS_AUTUMN = timezone(timedelta(hours=2))
ADL = "http://adlnet.gov/expapi/verbs/"


def _statement(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.json").read_text())


EXPECTED = {
    # H5P MultiChoice: scaled score, success, "PT1M30S"; the free-text response is dropped.
    "h5p-answered": UsageEvent(
        event_id=UUID("0c5d7c0e-4b1f-4f5e-9a9c-3a2e8f1d6b21"),
        occurred_at=datetime(2027, 10, 4, 9, 15, 27, 123000, tzinfo=PARIS_AUTUMN),
        resource_id="lectio",
        learner_id="f3a9c2e1b7d84a6e",
        class_id="cls-0750001A-cp-b",
        school_uai="0750001A",
        verb="exercise_answered",
        object_id="https://lectio.example/wp-admin/admin-ajax.php?action=h5p_embed&id=12",
        duration_s=90.0,
        score=0.75,
        success=False,
        extensions={"xapi_verb": ADL + "answered", "score_scale": "scaled"},
    ),
    "lms-completed": UsageEvent(
        event_id=UUID("7a1e9e7b-2f7d-4a73-bb5f-0e3c9f2d8a44"),
        occurred_at=datetime(2027, 10, 4, 9, 22, 40, tzinfo=UTC),
        resource_id="lectio",
        learner_id="gar.9d2e7f51",
        class_id="cls-0750001A-cp-b",
        school_uai="0750001A",
        verb="activity_completed",
        object_id="https://lectio.example/parcours/fluence-cp/lecon-07",
        duration_s=432.0,
        success=True,
        extensions={"xapi_verb": ADL + "completed"},
    ),
    # cmi5 session pair: class and school from grouping activities, not extensions.
    "cmi5-initialized": UsageEvent(
        event_id=UUID("5b1c3a7e-9d34-4f0e-8b2a-6c7d8e9f0a11"),
        occurred_at=datetime(2027, 10, 4, 9, 10, tzinfo=PARIS_AUTUMN),
        resource_id="lectio",
        learner_id="f3a9c2e1b7d84a6e",
        class_id="cls-0750001A-cp-b",
        school_uai="0750001A",
        verb="session_started",
        object_id="https://lectio.example/au/fluence-cp",
        extensions={"xapi_verb": ADL + "initialized"},
    ),
    "cmi5-terminated": UsageEvent(
        event_id=UUID("5b1c3a7e-9d34-4f0e-8b2a-6c7d8e9f0a12"),
        occurred_at=datetime(2027, 10, 4, 9, 34, 15, 500000, tzinfo=PARIS_AUTUMN),
        resource_id="lectio",
        learner_id="f3a9c2e1b7d84a6e",
        class_id="cls-0750001A-cp-b",
        school_uai="0750001A",
        verb="session_ended",
        object_id="https://lectio.example/au/fluence-cp",
        duration_s=1455.5,
        extensions={"xapi_verb": ADL + "terminated"},
    ),
    # SCORM-ish "passed" with a score: no statement id (derived below), the resource named
    # by a context extension (the gateway checks it against the key).
    "scorm-passed": None,
}


@pytest.mark.parametrize("name", [n for n, e in EXPECTED.items() if e is not None])
def test_real_shaped_statements_map_onto_the_contract(name: str) -> None:
    assert statement_to_event(_statement(name), resource_id="lectio") == EXPECTED[name]


def test_a_scorm_passed_statement_without_id_gets_a_stable_derived_id() -> None:
    statement = _statement("scorm-passed")
    event = statement_to_event(statement, resource_id="lectio")
    # The canonical form writes the timestamp as its UTC instant (2028-01-12T14:03:55+01:00).
    in_utc = {**statement, "timestamp": "2028-01-12T13:03:55.000000+00:00"}
    canonical = json.dumps(in_utc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert event == UsageEvent(
        event_id=uuid5(STATEMENT_ID_NAMESPACE, canonical),
        occurred_at=datetime(2028, 1, 12, 14, 3, 55, tzinfo=timezone(timedelta(hours=1))),
        resource_id="mathix",
        learner_id="u-5e8a41c2",
        class_id="6e-b.0781234Z",
        school_uai="0781234Z",
        verb="assessment_scored",
        object_id="http://mathix.example/scorm/fractions-6e/sco3",
        duration_s=723.25,
        score=0.85,
        success=True,
        extensions={"xapi_verb": ADL + "passed", "score_scale": "scaled"},
    )
    # Re-sent, even re-serialised with other key order, it keeps its id.
    reordered = json.loads(json.dumps(dict(reversed(list(statement.items())))))
    assert statement_id(reordered) == event.event_id
    other = copy.deepcopy(statement)
    other["timestamp"] = "2028-01-12T14:04:55+01:00"
    assert statement_id(other) != event.event_id
    # The same instant written in UTC is the same statement.
    other["timestamp"] = "2028-01-12T13:03:55Z"
    assert statement_id(other) == event.event_id


def test_passed_without_score_is_a_completion_and_raw_scores_are_used_without_scaled() -> None:
    statement = _statement("scorm-passed")
    del statement["result"]["score"]
    assert statement_to_event(statement).verb == "activity_completed"
    assert statement_to_event(statement).success is True
    statement = _statement("scorm-passed")
    del statement["result"]["score"]["scaled"]
    assert statement_to_event(statement).score == 17.0
    failed = _statement("scorm-passed")
    failed["verb"]["id"] = "https://w3id.org/xapi/adl/verbs/failed"
    failed["result"]["success"] = False
    assert (statement_to_event(failed).verb, statement_to_event(failed).success) == (
        "assessment_scored",
        False,
    )


def _without(statement: dict[str, Any], *path: str) -> dict[str, Any]:
    statement = copy.deepcopy(statement)
    target = statement
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return statement


def _with(statement: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    statement = copy.deepcopy(statement)
    target = statement
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return statement


H5P = _statement("h5p-answered")
CMI5 = _statement("cmi5-initialized")
CLASS_FIELD = f"context.extensions[{CLASS_EXTENSION}]"
SCHOOL_FIELD = f"context.extensions[{SCHOOL_EXTENSION}]"

REFUSED = [
    # (what, statement, field named, words of the reason)
    ("no class", _without(H5P, "context", "extensions", CLASS_EXTENSION), CLASS_FIELD, "class id"),
    (
        "no grouping",
        _without(CMI5, "context", "contextActivities", "grouping"),
        CLASS_FIELD,
        "class",
    ),
    ("no context", _without(H5P, "context"), CLASS_FIELD, "class id"),
    ("context not an object", _with(H5P, [], "context"), "context", "expecting an object"),
    ("naive timestamp", _with(H5P, "2027-10-04T09:15:27", "timestamp"), "timestamp", "UTC offset"),
    (
        "mbox actor",
        _with(H5P, {"objectType": "Agent", "mbox": "mailto:lea.martin@example.fr"}, "actor"),
        "actor.mbox",
        "e-mail",
    ),
    (
        "mbox_sha1sum actor",
        _with(H5P, {"mbox_sha1sum": "ebd31e95054c018b10727ccffd2ef2ec3a016ee9"}, "actor"),
        "actor.mbox_sha1sum",
        "direct identifier",
    ),
    (
        "named actor without account",
        _with(H5P, {"name": "Léa Martin"}, "actor"),
        "actor.name",
        "person's name",
    ),
    (
        "e-mail as account name",
        _with(H5P, "lea.martin@example.fr", "actor", "account", "name"),
        "actor.account.name",
        "looks like an e-mail address",
    ),
    ("group actor", _with(H5P, "Group", "actor", "objectType"), "actor.objectType", "Agent"),
    ("no account", _without(H5P, "actor", "account"), "actor.account", "required"),
    ("account not an object", _with(H5P, "a1b2", "actor", "account"), "actor.account", "object"),
    ("verb without id", _with(H5P, {"display": {"en": "did"}}, "verb"), "verb.id", "required"),
    (
        "scored without a score",
        _with(_without(H5P, "result", "score"), {"id": ADL + "scored"}, "verb"),
        "result.score",
        "required",
    ),
    ("duration in months", _with(H5P, "P1M", "result", "duration"), "result.duration", "ISO 8601"),
    (
        "score as text",
        _with(H5P, {"scaled": "0.75"}, "result", "score"),
        "result.score.scaled",
        "number",
    ),
    ("bad id", _with(H5P, "statement-1", "id"), "id", "UUID"),
    (
        "bad UAI",
        _with(H5P, "75001", "context", "extensions", SCHOOL_EXTENSION),
        SCHOOL_FIELD,
        "pattern",
    ),
    (
        "agent as object",
        _with(H5P, "Agent", "object", "objectType"),
        "object.objectType",
        "Activity",
    ),
    (
        "passed but unsuccessful",
        _with(_with(H5P, {"id": ADL + "passed"}, "verb"), False, "result", "success"),
        "result.success",
        "passed",
    ),
]


@pytest.mark.parametrize(
    ("statement", "field", "words"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
def test_statements_missing_what_the_contract_needs_are_refused_naming_the_field(
    statement: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(StatementRejected) as refusal:
        statement_to_event(statement, resource_id="lectio")
    problems = [(p.field, p.reason) for p in refusal.value.problems]
    assert any(f == field and words in reason for f, reason in problems), problems


def test_the_resource_comes_from_the_key_unless_an_extension_names_it() -> None:
    with pytest.raises(EventRejected) as refusal:
        statement_to_event(H5P)
    assert refusal.value.field == f"context.extensions[{RESOURCE_EXTENSION}]"
    named = _with(H5P, "mathix", "context", "extensions", RESOURCE_EXTENSION)
    assert statement_to_event(named, resource_id="lectio").resource_id == "mathix"


def test_grouping_and_extension_must_agree_on_the_class() -> None:
    both = _with(CMI5, {CLASS_EXTENSION: "cls-other"}, "context", "extensions")
    with pytest.raises(EventRejected) as refusal:
        statement_to_event(both, resource_id="lectio")
    assert refusal.value.field == CLASS_FIELD
    assert "differs" in refusal.value.reason


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT1M30S", 90.0),
        ("PT0.5S", 0.5),
        ("PT1H", 3600.0),
        ("P1DT2H", 93600.0),
        ("PT1,5S", 1.5),
        ("P1W", 604800.0),
    ],
)
def test_iso_8601_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["P1M", "P1Y", "PT", "P", "1M30S", "PT1M30", "PT-1S"])
def test_durations_without_fixed_length_or_malformed_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
