"""Gates at enrollment: a UAI's check letter and académie, closed attribute vocabularies.

The check letter is ``"ABCDEFGHJKLMNPRSTUVWXYZ"[n % 23]`` (experiments/protocol/calendar.py,
checked on real UAIs in tests/unit/test_school_calendar.py); the département → académie table
is experiments/protocol/data/academies.json (Code de l'éducation, R222-2).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.protocol.language import load_protocol

PROTOCOL = Path(__file__).resolve().parents[2] / "protocols" / "fluence-cp-2027.yaml"
HEADER = "class_id,school_uai,level,pupils,academie,education_priority\n"


@pytest.fixture
def design() -> EnrollmentDesign:
    # fluence-cp-2027: académies versailles and creteil, criterion education_priority REP/REP+.
    return EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))


def test_a_wrong_check_letter_is_refused_naming_the_right_one(design: EnrollmentDesign) -> None:
    classes = read_classes(HEADER + "c1,0781234Z,CP,24,versailles,REP\n", design)
    (refused,) = classes.refusals
    assert (refused.code, refused.field) == ("uai_check_letter", "school_uai")
    assert "should be T" in refused.message_en and "devrait être T" in refused.message_fr
    assert read_classes(HEADER + "c1,0781234T,CP,24,versailles,REP\n", design).refusals == []


def test_the_issue_s_example_0751234z_is_refused() -> None:
    # The issue: "0751234Z (the check letter of 0751234 is J) is enrolled".
    design = dataclasses.replace(
        EnrollmentDesign.from_protocol(load_protocol(PROTOCOL)), academies=("paris",))
    (refused,) = read_classes(HEADER + "c1,0751234Z,CP,24,paris,REP\n", design).refusals
    assert refused.code == "uai_check_letter" and "J" in refused.message_en
    assert read_classes(HEADER + "c1,0751234J,CP,24,paris,REP\n", design).refusals == []


def test_a_school_of_another_academie_is_refused() -> None:
    # The issue: "a Paris school (département 075) declared in the académie of Lyon".
    design = dataclasses.replace(
        EnrollmentDesign.from_protocol(load_protocol(PROTOCOL)), academies=("lyon", "paris"))
    (refused,) = read_classes(HEADER + "c1,0751234J,CP,24,lyon,REP\n", design).refusals
    assert (refused.code, refused.field) == ("uai_other_academie", "school_uai")
    assert "département 75, in académie 'paris'" in refused.message_en
    assert "de l'académie « paris »" in refused.message_fr


@pytest.mark.parametrize(("written", "stored"), [
    ("REP", "REP"), ("rep+", "REP+"), ("REP plus", "REP+"), ("hors EP", "hors_ep"),
    ("none", "hors_ep"), ("Hors  EP", "hors_ep"),
])
def test_documented_aliases_are_stored_in_their_canonical_form(
    design: EnrollmentDesign, written: str, stored: str
) -> None:
    open_design = dataclasses.replace(design, criteria={})
    classes = read_classes(HEADER + f"c1,0781234T,CP,24,versailles,{written}\n", open_design)
    assert classes.refusals == []
    assert classes.rows[0].attributes["education_priority"] == stored


def test_a_value_outside_the_vocabulary_is_refused_with_the_values_and_aliases(
    design: EnrollmentDesign,
) -> None:
    open_design = dataclasses.replace(design, criteria={})
    (refused,) = read_classes(HEADER + "c1,0781234T,CP,24,versailles,REP++\n",
                              open_design).refusals
    assert (refused.code, refused.field) == ("unknown_value", "education_priority")
    assert "REP, REP+, hors_ep" in refused.message_en and "hors EP" not in refused.message_en
    assert "hors ep → hors_ep" in refused.message_fr


def test_hors_ep_and_none_are_one_stratum_not_two(design: EnrollmentDesign) -> None:
    open_design = dataclasses.replace(design, criteria={}, strata=("education_priority",))
    classes = read_classes(HEADER + "c1,0781234T,CP,24,versailles,hors EP\n"
                           "c2,0781234T,CP,24,versailles,none\n", open_design)
    assert {row.stratum for row in classes.rows} == {classes.rows[0].stratum}
