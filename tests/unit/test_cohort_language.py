"""Named waves and cohorts in the protocol language, the follow-up file and what a run
reads of it (issue 21, item 2); the whole path through Kafka is
``tests/integration/test_cohorts.py``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from experiments.database import registry_engine
from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.enrollment.followup import follow_pupils, read_followed
from experiments.enrollment.transaction import enroll_classes
from experiments.errors import EnrollmentError, ProtocolError
from experiments.protocol.language import parse_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.settings import Settings
from ingest.pseudonym import load_pseudonym_key
from tests.support.trial import HEADER
from tests.support.uai import uai

ROOT = Path(__file__).resolve().parents[2]
CORE = (ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(encoding="utf-8")
WAVES = """waves:
  - {id: debut-CP, start: 2027-09-06, end: 2027-09-24, baseline: true}
  - {id: fin-CP, start: 2028-05-29, end: 2028-06-16}
  - {id: fin-CE1, start: 2029-05-28, end: 2029-06-15, primary: true}
cohort: {school_years: [2027-2028, 2028-2029]}
"""
FOLLOW_HEADER = "learner_id,class_id,school_uai,level,academie,previous_class_id\n"


def test_waves_and_cohort_are_read_and_absent_keys_keep_the_hash() -> None:
    protocol = parse_protocol(CORE + WAVES)
    assert [w.id for w in protocol.waves] == ["debut-CP", "fin-CP", "fin-CE1"]
    assert protocol.primary_wave is not None and protocol.primary_wave.id == "fin-CE1"
    assert protocol.baseline_wave is not None and protocol.baseline_wave.id == "debut-CP"
    assert protocol.cohort is not None and protocol.cohort.school_years == ["2027-2028",
                                                                             "2028-2029"]
    core = parse_protocol(CORE)
    assert "waves" not in core.canonical_json() and "cohort" not in core.canonical_json()


@pytest.mark.parametrize(("text", "expected"), [
    (WAVES.replace(", primary: true", ""),
     "p.yaml:45:1: waves: exactly one wave is primary (primary: true)"),
    (WAVES.replace("start: 2028-05-29", "start: 2027-09-20"),
     "p.yaml:47:18: waves[1].start: starts (2027-09-20) before the wave before it "
     "(debut-CP) ends (2027-09-24)"),
    (WAVES.replace("[2027-2028, 2028-2029]", "[2027-2028, 2029-2030]"),
     "p.yaml:49:36: cohort.school_years[1]: 2029-2030 does not follow 2027-2028"),
    (WAVES.replace("end: 2029-06-15", "end: 2029-08-15"),
     "p.yaml:48:5: waves[2]: fin-CE1 (2029-05-28 to 2029-08-15) lies outside the cohort's "
     "school years"),
    (WAVES.replace(", baseline: true", ""),
     "p.yaml:23:5: outcomes[0].baseline: a pre-test needs a baseline wave"),
    ("cohort: {school_years: [2027-2028, 2028-2029]}\n",
     "p.yaml:45:1: cohort: a cohort names its outcome waves"),
])
def test_wave_and_cohort_errors_name_the_file_line_and_field(text: str, expected: str
                                                             ) -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_protocol(CORE + text, "p.yaml")
    assert any(str(p).startswith(expected) for p in raised.value.problems), \
        [str(p) for p in raised.value.problems]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


def _cohort(settings: Settings, text: str = CORE + WAVES) -> EnrollmentDesign:
    engine = registry_engine(settings)
    protocol = parse_protocol(text)
    register_protocol(engine, protocol, text)
    design = EnrollmentDesign.from_protocol(protocol)
    rows = "".join(f"cp-{i},{uai('0781230')},CP,10,versailles,REP\n" for i in range(2))
    enroll_classes(engine, design, read_classes(HEADER + rows, design, today=date(2027, 9, 1)),
                   actor="test")
    transition_experiment(engine, protocol.id, "enrolling")
    return design


def test_the_follow_up_file_refuses_what_it_cannot_place(settings: Settings) -> None:
    design = _cohort(settings)
    engine = registry_engine(settings)
    school = uai("0781230")
    followed = read_followed(FOLLOW_HEADER + "\n".join([
        f"gar-1,ce1-a,{school},CE1,versailles,cp-0",
        f"gar-2,ce1-a,{school},CE1,versailles,cp-9",         # unknown previous class
        f"gar-3,cp-1,{school},CE1,versailles,cp-0",          # into a randomised class
        f"jean.dupont@ecole.fr,ce1-a,{school},CE1,versailles,cp-0",  # an e-mail
        "gar-4,ce1-a,0781230A,CE1,versailles,cp-0",          # wrong check letter
        f"gar-5,ce1-a,{school},CE9,versailles,cp-0",          # unknown niveau
        f"gar-1,ce1-b,{school},CE1,versailles,cp-0",          # the same pupil twice
    ]) + "\n", design, name="suivi.csv", academie="versailles")
    assert [(r.line, r.code) for r in followed.refusals] == [
        (5, "learner_id_email"), (6, "uai_check_letter"), (7, "unknown_level"),
        (8, "duplicate_learner")]
    outcome = follow_pupils(engine, design, followed, key=load_pseudonym_key(settings),
                            actor="test")
    assert [(r.line, r.code) for r in outcome.refusals] == [
        (3, "previous_class_unknown"), (4, "class_randomised"), (5, "learner_id_email"),
        (6, "uai_check_letter"), (7, "unknown_level"), (8, "duplicate_learner")]
    [pupil] = outcome.enrolled
    assert pupil.class_id == "ce1-a" and pupil.arm != "*" and outcome.classes == 1
    assert "randomised class" in outcome.refusals[1].message_en
    assert "classe tirée au sort" in outcome.refusals[1].message_fr

    # The next school year: the same pupil moves on; the arm stays.
    again = follow_pupils(engine, design, read_followed(
        FOLLOW_HEADER + f"gar-1,ce2-a,{school},CE2,versailles,ce1-a\n", design), key=
        load_pseudonym_key(settings), actor="test")
    assert not again.refusals and [p.arm for p in again.enrolled] == [pupil.arm]
    assert again.enrolled[0].class_id == "ce2-a"


def test_only_a_cohort_protocol_follows_pupils(settings: Settings) -> None:
    design = _cohort(settings, CORE)
    followed = read_followed(FOLLOW_HEADER + f"gar-1,ce1-a,{uai('0781230')},CE1,versailles,"
                             "cp-0\n", design)
    with pytest.raises(EnrollmentError, match="follows no cohort"):
        follow_pupils(registry_engine(settings), design, followed,
                      key=load_pseudonym_key(settings), actor="test")
