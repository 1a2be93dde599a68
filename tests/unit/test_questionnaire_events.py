"""Questionnaire answers on the wire: the native ``questionnaire_answered`` event and the
xAPI Likert answer mapped onto it (issue 19 item 4)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ingest.contract import parse_event
from ingest.errors import EventRejected, StatementRejected
from ingest.xapi import (
    CLASS_EXTENSION,
    QUESTIONNAIRE_EXTENSION,
    RESPONDENT_EXTENSION,
    SCHOOL_EXTENSION,
    map_statement,
)

ANSWER: dict[str, Any] = {
    "event_id": "3f2c1a9e-8e7b-4b8e-9a47-1f6d2c0b5e11",
    "occurred_at": "2027-09-10T09:00:00+02:00", "resource_id": "lectio",
    "learner_id": "gar-7f3a", "class_id": "cp-01a", "school_uai": "0781001A",
    "verb": "questionnaire_answered", "object_id": "m3", "score": 2,
    "extensions": {"questionnaire": "eleves"},
}

LIKERT = [{"id": "pas-du-tout", "description": {"fr-FR": "Pas du tout d'accord"}},
          {"id": "plutot-pas", "description": {"fr-FR": "Plutôt pas d'accord"}},
          {"id": "plutot", "description": {"fr-FR": "Plutôt d'accord"}},
          {"id": "tout-a-fait", "description": {"fr-FR": "Tout à fait d'accord"}}]

STATEMENT: dict[str, Any] = {
    "id": "6690e6c9-3ef0-4ed3-8b37-7f3964730bee",
    "actor": {"account": {"homePage": "https://gar.education.fr", "name": "ens-91x"}},
    "verb": {"id": "http://adlnet.gov/expapi/verbs/answered"},
    "object": {"id": "https://lectio.example/questionnaires/enseignants/f2",
               "definition": {"type": "http://adlnet.gov/expapi/activities/cmi.interaction",
                              "interactionType": "likert", "scale": LIKERT}},
    "result": {"response": "plutot"},
    "context": {"extensions": {CLASS_EXTENSION: "cls-42", SCHOOL_EXTENSION: "0750001A",
                               QUESTIONNAIRE_EXTENSION: "enseignants",
                               RESPONDENT_EXTENSION: "teacher"}},
    "timestamp": "2027-09-10T09:15:00Z",
}


def test_a_native_answer_is_valid() -> None:
    event = parse_event(ANSWER)
    assert (event.verb, event.object_id, event.score) == ("questionnaire_answered", "m3", 2)


@pytest.mark.parametrize(("change", "field", "fragment"), [
    ({"object_id": None}, "object_id", "the item id"),
    ({"score": None}, "score", "the answer"),
    ({"extensions": {"wave": "baseline"}}, "extensions.questionnaire", "questionnaire id"),
    ({"extensions": {"questionnaire": "eleves", "respondent": "parent"}},
     "extensions.respondent", "'pupil' or 'teacher'"),
])
def test_an_incomplete_answer_is_refused_naming_the_field(
        change: dict[str, Any], field: str, fragment: str) -> None:
    raw = {k: v for k, v in {**ANSWER, **change}.items() if v is not None}
    with pytest.raises(EventRejected) as caught:
        parse_event(raw)
    assert caught.value.field == field
    assert fragment in caught.value.reason


def test_an_xapi_likert_answer_becomes_a_questionnaire_answer() -> None:
    event = map_statement(STATEMENT, resource_id="lectio").event
    assert event.verb == "questionnaire_answered"
    assert event.object_id == "f2"
    assert event.score == 3.0  # "plutot" is the third choice of the scale
    assert event.learner_id == "ens-91x"
    assert event.extensions is not None
    assert event.extensions["questionnaire"] == "enseignants"
    assert event.extensions["respondent"] == "teacher"
    assert "plutot" not in str(event.to_json())  # the response itself is never stored


def test_an_answer_outside_the_scale_is_refused() -> None:
    statement = copy.deepcopy(STATEMENT)
    statement["result"]["response"] = "peut-etre"
    with pytest.raises(StatementRejected) as caught:
        map_statement(statement, resource_id="lectio")
    assert [p.field for p in caught.value.problems] == ["result.response"]


def test_answered_without_the_questionnaire_extension_stays_an_exercise() -> None:
    statement = copy.deepcopy(STATEMENT)
    del statement["context"]["extensions"][QUESTIONNAIRE_EXTENSION]
    assert map_statement(statement, resource_id="lectio").event.verb == "exercise_answered"
