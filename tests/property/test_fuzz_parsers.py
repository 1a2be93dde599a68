"""Fuzzing the two parsers users feed by hand: the classes CSV (``read_classes``) and the
protocol YAML (``parse_protocol``). Whatever the input: never a traceback (only the
package's own error), and every refusal or problem names its field or its place.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.errors import EnrollmentError, ProtocolError
from experiments.protocol.language import load_protocol, parse_protocol

PROTOCOL = Path(__file__).resolve().parents[2] / "protocols" / "fluence-cp-2027.yaml"
DESIGN = EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))
BASE = yaml.safe_load(PROTOCOL.read_text())
HEADER = ["class_id", "school_uai", "level", "pupils", "academie", "education_priority"]

ANY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
CELL = st.one_of(
    ANY_TEXT,
    st.sampled_from(["CP", "CE1", "0781234T", "versailles", "creteil", "REP", "REP+", "24",
                     "-3", "1e9", "", " ", '"', "\ufeff", "NaN", "0", "c1"]),
)
ROW = st.lists(CELL, min_size=0, max_size=8)


def _csv(cells: list[list[str]], header: list[str]) -> str:
    def quote(cell: str) -> str:
        return cell if not any(c in cell for c in ',"\n\r') else '"' + cell.replace('"', '""') + '"'

    return "\n".join(",".join(quote(c) for c in row) for row in [header, *cells]) + "\n"


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, max_size=12),
       header=st.one_of(st.just(HEADER), st.permutations(HEADER),
                        st.lists(st.sampled_from(HEADER + ["extra", ""]), max_size=8)))
def test_classes_csv_never_crashes_and_each_refusal_names_its_field(
    rows: list[list[str]], header: list[str]
) -> None:
    try:
        read = read_classes(_csv(rows, list(header)), DESIGN, name="classes.csv")
    except EnrollmentError as error:
        assert error.reason and (error.field or error.path or error.line is not None), error
        return
    for refusal in read.refusals:
        assert refusal.line >= 2 and refusal.message_en and refusal.message_fr
        # Whole-row problems name the row (its line) instead of a field.
        assert refusal.field or refusal.code in (
            "unreadable_row", "malformed_row", "outside_window"), refusal


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=200))
def test_any_text_as_classes_csv_never_crashes(text: str) -> None:
    try:
        read_classes(text, DESIGN, name="classes.csv")
    except EnrollmentError as error:
        assert error.reason


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += _paths(value, (*prefix, index))
    return found


PATHS = _paths(BASE)
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
              st.floats(allow_nan=True, allow_infinity=True), ANY_TEXT,
              st.dates().map(str)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(ANY_TEXT, inner, max_size=3)),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), VALUES,
                                st.sampled_from(["set", "delete"])), min_size=1, max_size=3))
def test_mutated_protocol_is_valid_or_every_problem_names_its_field(
    edits: list[tuple[tuple[Any, ...], Any, str]]
) -> None:
    tree = copy.deepcopy(BASE)
    for path, value, action in edits:
        node = tree
        try:
            for step in path[:-1]:
                node = node[step]
            if action == "delete" and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit changed the shape: skip this one
    text = yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)
    try:
        parse_protocol(text, "fuzz.yaml")
    except ProtocolError as error:
        assert error.problems, error
        for problem in error.problems:
            assert problem.path == "fuzz.yaml" and problem.line >= 1 and problem.message
            assert problem.field or "fuzz.yaml" in str(problem), problem


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=300))
def test_any_text_as_protocol_is_a_located_problem(text: str) -> None:
    try:
        parse_protocol(text, "fuzz.yaml")
    except ProtocolError as error:
        assert error.problems and all(p.line >= 1 and p.message for p in error.problems)
