"""The per-resource xAPI context mapping: its file format, its restricted patterns, and
where it finds the class and the school (parent, grouping, object, team, extension)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from experiments.settings import GatewaySettings, Settings
from ingest.errors import IngestError, StatementRejected
from ingest.gateway import create_app
from ingest.xapi import CLASS_EXTENSION, map_statement
from ingest.xapi_context import (
    MAX_PATTERN_LENGTH,
    ContextMapping,
    ContextPattern,
    load_context_mappings,
)

DATA = Path(__file__).parent.parent / "data" / "xapi"
# A real Open edX statement (event-routing-backends' expected play_video): the course is
# the parent activity, http://localhost:18000/course/course-v1:edX+DemoX+Demo_Course.
PLAYED = json.loads((DATA / "openedx" / "play-video.json").read_text())
RECEIVED_AT = datetime(2027, 10, 4, 8, 0, tzinfo=UTC)


def _mapping(text: str, tmp_path: Path) -> dict[str, ContextMapping]:
    path = tmp_path / "contexts.yaml"
    path.write_text(text)
    return load_context_mappings(path)


def _placed(statement: dict[str, Any], mapping: ContextMapping) -> tuple[str, str]:
    event = map_statement(
        statement, resource_id="lectio", mapping=mapping, received_at=RECEIVED_AT
    ).event
    return event.class_id, event.school_uai


@pytest.mark.parametrize(
    ("pattern", "iri", "taken"),
    [
        ("http://localhost:18000/course/{}", PLAYED["context"]["contextActivities"]["parent"][0]
         ["id"], "course-v1:edX+DemoX+Demo_Course"),
        ("http://www.example.org/course/view.php?id={}",
         "http://www.example.org/course/view.php?id=2", "2"),
        ("http://www.example.org/course/view.php?id={}",
         "http://www.example.org/course/section.php?id=1", None),
        ("https://lms.example/courses/{}*", "https://lms.example/courses/cm2-b/aus/4c07", "cm2-b"),
        ("https://lms.example/courses/{}*", "https://lms.example/courses/cm2-b", "cm2-b"),
        ("https://lms.example/courses/{}/aus", "https://lms.example/courses/cm2-b/aus/4c07", None),
        ("*/xapi/activities/course/{}", "http://moodle.test/xapi/activities/course/ab-12", "ab-12"),
        ("*/xapi/activities/course/{}", "http://moodle.test/xapi/activities/forum/ab-12", None),
        ("{}", "course-v1:ufr+mathematics+0001", "course-v1:ufr+mathematics+0001"),
        ("{}", "https://lms.example/x", None),  # '/' is not an id character
        ("https://lms.example/{}.html", "https://lms.example/cm2.html", None),  # '.' is one
        ("https://lms.example/c/{}", "https://lms.example/c/", None),  # an empty id
    ],
)
def test_patterns_take_the_id_where_the_braces_are(
    pattern: str, iri: str, taken: str | None
) -> None:
    assert ContextPattern.parse(pattern).match(iri) == taken


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("https://lms.example/course/", "exactly one '{}'"),
        ("https://lms.example/{}/{}", "exactly one '{}'"),
        ("https://lms.example/{id}", "exactly one '{}'"),
        ("https://lms.example/*/course/{}", "'*' may only begin or end"),
        ("*{}", "cannot tell where the id begins"),
        ("https://lms.example/" + "a" * MAX_PATTERN_LENGTH + "{}", f"at most {MAX_PATTERN_LENGTH}"),
        ("(a+)+$" + "{}", None),  # regex syntax is literal text: valid, matches nothing else
    ],
)
def test_patterns_are_a_restricted_syntax_with_a_bounded_length(
    pattern: str, words: str | None
) -> None:
    if words is None:
        assert ContextPattern.parse(pattern).match("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!") is None
        return
    with pytest.raises(ValueError, match=words.replace("*", r"\*")):
        ContextPattern.parse(pattern)


def test_matching_scans_a_long_adversarial_iri_once() -> None:
    # What makes a backtracking regex explode (a long run of id characters that does not
    # end as the pattern says) is one linear scan here.
    pattern = ContextPattern.parse("*/c/{}/d*")
    assert pattern.match("/c/" * 50_000 + "!") is None
    assert pattern.match("x/c/" + "a" * 100_000 + "!") is None
    assert pattern.match("x/c/" + "a" * 100_000 + "/d/e") == "a" * 100_000


def test_the_class_and_the_school_come_from_where_the_mapping_says(tmp_path: Path) -> None:
    mappings = _mapping(
        """
lectio:
  class:
    - {in: grouping, pattern: "https://ent.example/classes/{}"}
    - {in: parent, type: "http://adlnet.gov/expapi/activities/course",
       pattern: "http://localhost:18000/course/{}"}
  school:
    - {in: extension, key: "https://ent.example/xapi/uai"}
    - {value: "0750001A"}
""",
        tmp_path,
    )
    # The first source finds nothing (no grouping), the second the Open edX course.
    assert _placed(PLAYED, mappings["lectio"]) == ("course-v1:edX+DemoX+Demo_Course", "0750001A")
    with_uai = copy.deepcopy(PLAYED)
    with_uai["context"]["extensions"]["https://ent.example/xapi/uai"] = "0690001Z"
    with_uai["context"]["contextActivities"]["grouping"] = [
        {"id": "https://ent.example/classes/cm2-b"}
    ]
    assert _placed(with_uai, mappings["lectio"]) == ("cm2-b", "0690001Z")
    # A type filter: the course activity without its type is not taken.
    untyped = copy.deepcopy(PLAYED)
    del untyped["context"]["contextActivities"]["parent"][0]["definition"]
    with pytest.raises(StatementRejected) as refusal:
        _placed(untyped, mappings["lectio"])
    assert f"context.extensions[{CLASS_EXTENSION}]" in [p.field for p in refusal.value.problems]
    assert "context mapping" in refusal.value.reason


def test_preuve_s_own_extensions_come_first_and_a_team_can_carry_the_class(
    tmp_path: Path,
) -> None:
    mappings = _mapping(
        """
lectio:
  class: [{in: team, pattern: "cm2-{}"}]
  school: [{value: "0750001A"}]
""",
        tmp_path,
    )
    team = copy.deepcopy(PLAYED)
    team["context"]["team"] = {
        "objectType": "Group",
        "account": {"homePage": "https://ent.example", "name": "cm2-b.0750001A"},
        "member": [{"name": "Léa Martin", "mbox": "mailto:lea@example.fr"}],
    }
    assert _placed(team, mappings["lectio"]) == ("b.0750001A", "0750001A")
    team["context"]["extensions"][CLASS_EXTENSION] = "cls-42"
    assert _placed(team, mappings["lectio"])[0] == "cls-42"


def test_two_different_classes_in_one_statement_are_refused(tmp_path: Path) -> None:
    mappings = _mapping(
        'lectio: {class: [{in: parent, pattern: "http://localhost:18000/course/{}"}], '
        'school: [{value: "0750001A"}]}',
        tmp_path,
    )
    two = copy.deepcopy(PLAYED)
    two["context"]["contextActivities"]["parent"].append(
        {"id": "http://localhost:18000/course/course-v1:edX+Other+2027"}
    )
    with pytest.raises(StatementRejected) as refusal:
        _placed(two, mappings["lectio"])
    assert "several class ids" in refusal.value.reason


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("lectio: {class: [{value: cls-1}]}", "class: a constant 'value'"),
        ("lectio: {class: [{in: parent}], room: []}", "room"),
        ("lectio: {class: [{in: parents}]}", "class.0.in"),
        ("lectio: {class: [{in: parent, value: x}]}", "either 'in'"),
        ("lectio: {class: [{in: extension}]}", "'key'"),
        ("lectio: {class: [{in: team, type: http://x}]}", "'type' filters activities"),
        ("lectio: {class: [{in: parent, pattern: 'https://x/{}/{}'}]}", "exactly one"),
        ("lectio: {class: [" + "{in: parent}, " * 5 + "]}", "at most 4"),
        ("Lectio!: {class: [{in: parent}]}", "not a resource id"),
        ("lectio: [unclosed", "cannot be read"),
    ],
)
def test_a_bad_mapping_file_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, text: str, words: str
) -> None:
    with pytest.raises(IngestError) as refusal:
        _mapping(text, tmp_path)
    assert str(refusal.value).startswith(str(tmp_path / "contexts.yaml"))
    assert words in str(refusal.value)


def test_the_gateway_reads_the_mapping_file_of_its_settings_at_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lectio: {class: [{value: cls-1}]}")
    settings = Settings(state_dir=tmp_path, gateway=GatewaySettings(xapi_contexts=bad))
    with pytest.raises(IngestError, match="a constant 'value'"):
        create_app(settings)
    contexts = DATA / "contexts.yaml"
    good = Settings(state_dir=tmp_path, gateway=GatewaySettings(xapi_contexts=contexts))
    assert create_app(good).title == "Preuve event gateway"


@pytest.mark.parametrize("name", ["ingest.xapi", "ingest.xapi_context", "ingest.xapi_verbs"])
def test_docstring_examples_run(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
