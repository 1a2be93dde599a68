"""Enrollment of classes: row checks and refusals (FR/EN), one transaction, no double
enrollment, publishing through an injected callable, withdrawal, balance report."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from experiments.cli.app import app
from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.assignments import enrolled_classes
from experiments.enrollment.balance import BalanceUnit, balance_report, enrollment_balance
from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.enrollment.publishing import pending_messages, publish_pending
from experiments.enrollment.transaction import enroll_classes
from experiments.enrollment.withdrawal import withdraw
from experiments.errors import EnrollmentError
from experiments.protocol.language import load_protocol
from experiments.settings import Settings
from ingest.contract import EnrollmentMessage
from ingest.errors import BrokerError
from ingest.pseudonym import load_pseudonym_key, pseudonymise
from tests.support.uai import uai

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = REPO / "protocols" / "fluence-cp-2027.yaml"
CLASSES = REPO / "tests" / "data" / "enrollment" / "classes.csv"
HEADER = "class_id,school_uai,level,pupils,academie,education_priority\n"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    yield registry_engine(Settings(state_dir=tmp_path / "state"))
    dispose_engines()


@pytest.fixture
def design() -> EnrollmentDesign:
    return EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))


class Recorder:
    """A publish callable that keeps what it was handed (Kafka is the lead's tests' job)."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[EnrollmentMessage]] = []
        self.fail = fail

    def __call__(self, messages: Sequence[EnrollmentMessage]) -> int:
        if self.fail:
            raise BrokerError("no Kafka broker: run `preuve kafka up`")
        self.batches.append(list(messages))
        return len(messages)


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as c:
        return int(c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


# --- refusals -------------------------------------------------------------------------


def test_each_bad_row_is_refused_with_a_precise_reason_while_valid_rows_are_enrolled(
    engine: Engine, design: EnrollmentDesign
) -> None:
    text = HEADER + (
        "c1,0781234T,CP,24,versailles,REP\n"       # 2 valid
        "c2,0931111C,CP,20,creteil,REP+\n"         # 3 other académie for a versailles account
        "c3,0781234T,CE1,22,versailles,REP\n"      # 4 wrong niveau
        "c1,0781234T,CP,24,versailles,REP\n"       # 5 duplicated class id
        "c4,0781234T,CP,21,versailles\n"           # 6 malformed: a field is missing
        "c5,0781234T,CP,23,versailles,none\n"      # 7 criterion not met
        "c6,0781234T,CP,19,versailles,REP+\n"      # 8 valid
        'c7,"0781234T,CP,19,versailles,REP\n'      # 9 unterminated quote: unreadable
    )
    classes = read_classes(text, design, name="classes.csv", academie="versailles")
    outcome = enroll_classes(engine, design, classes, actor="test")
    assert [c.class_id for c in outcome.enrolled] == ["c1", "c6"]
    by_line = {r.line: r for r in outcome.refusals}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 9]
    assert (by_line[3].code, by_line[3].field, by_line[3].value) == (
        "other_academie", "academie", "creteil"
    )
    assert by_line[3].message_en == (
        "class of académie 'creteil': your account (académie 'versailles') may only enroll "
        "classes of its own schools"
    )
    assert by_line[3].message_fr == (
        "classe de l'académie « creteil » : votre compte (académie « versailles ») ne peut "
        "inscrire que les classes de ses propres écoles"
    )
    assert by_line[4].message_en == (
        "niveau 'CE1' is not in the experiment's population (niveaux: CP)"
    )
    assert by_line[4].message_fr == (
        "le niveau « CE1 » ne fait pas partie de l'expérimentation (niveaux : CP)"
    )
    assert by_line[5].message_en == "class 'c1' already appears on line 2 of the file"
    assert by_line[5].message_fr == "la classe « c1 » figure déjà à la ligne 2 du fichier"
    assert by_line[6].message_en == "malformed row: 5 fields, the header has 6"
    assert by_line[6].message_fr == "ligne mal formée : 5 champs, l'en-tête en a 6"
    assert by_line[7].message_en == (
        "criterion 'education_priority' not met: 'none' is not one of REP, REP+"
    )
    assert by_line[7].message_fr == (
        "critère « education_priority » non rempli : « none » n'est pas parmi REP, REP+"
    )
    assert by_line[9].code == "unreadable_row"
    assert {c.class_id for c in enrolled_classes(engine, design.experiment_id)} == {"c1", "c6"}


@pytest.mark.parametrize(
    ("row", "code", "field"),
    [
        ("c1,0781234T,CP,24,paris,REP", "academie_outside_population", "academie"),
        ("c1,0781234T,CE3,24,versailles,REP", "unknown_level", "level"),
        ("c1,781234A,CP,24,versailles,REP", "bad_uai", "school_uai"),
        ("c1,0781234T,CP,240,versailles,REP", "bad_pupils", "pupils"),
        ("c1,0781234T,CP,,versailles,REP", "empty_field", "pupils"),
        ("jean.dupont@ecole.fr,0781234T,CP,24,versailles,REP", "bad_class_id", "class_id"),
    ],
)
def test_other_row_refusals(design: EnrollmentDesign, row: str, code: str, field: str) -> None:
    classes = read_classes(HEADER + row + "\n", design)
    assert classes.rows == []
    (refused,) = classes.refusals
    assert (refused.line, refused.code, refused.field) == (2, code, field)
    assert refused.message_fr and refused.message_en and refused.message_fr != refused.message_en


def test_enrollment_window_is_enforced(design: EnrollmentDesign) -> None:
    windowed = dataclasses.replace(design, opens=date(2027, 6, 1), closes=date(2027, 9, 20))
    text = HEADER + "c1,0781234T,CP,24,versailles,REP\n"
    assert read_classes(text, windowed, today=date(2027, 9, 1)).rows
    (refused,) = read_classes(text, windowed, today=date(2027, 9, 21)).refusals
    assert refused.code == "outside_window"
    assert refused.message_en == (
        "enrollment is closed on 2027-09-21: it is open from 2027-06-01 to 2027-09-20"
    )


def test_a_file_without_a_required_column_is_refused_as_a_whole(design: EnrollmentDesign) -> None:
    with pytest.raises(EnrollmentError) as caught:
        read_classes("class_id,school_uai,level,pupils,academie\nc1,0781234T,CP,24,versailles\n",
                     design, name="f.csv")
    assert caught.value.field == "education_priority"
    assert caught.value.line == 1 and caught.value.path == "f.csv"


# --- one transaction, no double enrollment ---------------------------------------------


def test_rerunning_the_same_file_does_not_double_enroll(
    engine: Engine, design: EnrollmentDesign
) -> None:
    first = enroll_classes(engine, design, read_classes(CLASSES, design), actor="test")
    second = enroll_classes(engine, design, read_classes(CLASSES, design), actor="test")
    assert len(first.enrolled) == 6 and second.enrolled == []
    assert [(c.class_id, c.arm) for c in second.already] == [
        (c.class_id, c.arm) for c in first.enrolled
    ]
    assert _count(engine, "enrollments") == 6
    assert _count(engine, "allocation_log") == 6


def test_a_changed_row_of_an_enrolled_class_is_refused_not_edited(
    engine: Engine, design: EnrollmentDesign
) -> None:
    enroll_classes(engine, design, read_classes(HEADER + "c1,0781234T,CP,24,versailles,REP\n",
                                                design), actor="t")
    again = enroll_classes(
        engine, design, read_classes(HEADER + "c1,0781234T,CP,25,versailles,REP\n", design),
        actor="t",
    )
    (refused,) = again.refusals
    assert (refused.code, refused.field) == ("enrolled_differently", "pupils")
    assert refused.message_en.startswith("the class is already enrolled with 'pupils' = '24'")
    assert enrolled_classes(engine, design.experiment_id)[0].pupils == 24


def test_a_class_cannot_be_in_two_running_experiments(
    engine: Engine, design: EnrollmentDesign
) -> None:
    other = dataclasses.replace(design, experiment_id="autre-exp")
    row = HEADER + "c1,0781234T,CP,24,versailles,REP\n"
    enroll_classes(engine, design, read_classes(row, design), actor="t")
    (refused,) = enroll_classes(engine, other, read_classes(row, other), actor="t").refusals
    assert refused.code == "enrolled_elsewhere"
    assert refused.message_en == "class 'c1' is already enrolled in experiment 'fluence-cp-2027'"


def test_the_randomisation_cannot_change_once_enrolling(
    engine: Engine, design: EnrollmentDesign
) -> None:
    row = HEADER + "c1,0781234T,CP,24,versailles,REP\n"
    enroll_classes(engine, design, read_classes(row, design), actor="t")
    reseeded = dataclasses.replace(design, seed=design.seed + 1)
    with pytest.raises(EnrollmentError, match="differs from the one"):
        enroll_classes(engine, reseeded, read_classes(row, reseeded), actor="t")


def test_the_allocation_log_is_append_only(engine: Engine, design: EnrollmentDesign) -> None:
    enroll_classes(engine, design, read_classes(CLASSES, design), actor="t")
    for statement in ("UPDATE allocation_log SET arm = 'lectio'", "DELETE FROM allocation_log"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as c:
            c.execute(sa.text(statement))
    assert _count(engine, "allocation_log") == 6


def test_arms_match_the_log_and_a_fresh_randomiser(
    engine: Engine, design: EnrollmentDesign
) -> None:
    from experiments.enrollment.randomisation import Randomiser, Unit

    outcome = enroll_classes(engine, design, read_classes(CLASSES, design), actor="t")
    replay = Randomiser(design.scheme).assign_all(
        Unit(c.class_id, c.class_id, c.stratum) for c in outcome.enrolled
    )
    assert [a.arm for a in replay] == [c.arm for c in outcome.enrolled]
    with engine.connect() as c:
        log = c.execute(sa.text("SELECT class_id, arm, draw FROM allocation_log ORDER BY sequence"))
        rows = log.all()
    assert [(r.class_id, r.arm) for r in rows] == [(c.class_id, c.arm) for c in outcome.enrolled]
    assert [r.draw for r in rows] == [a.allocation.draw for a in replay if a.allocation]


def test_school_randomisation_gives_all_classes_of_a_school_one_arm(
    engine: Engine, design: EnrollmentDesign
) -> None:
    by_school = dataclasses.replace(design, unit="school", strata=("education_priority",))
    rows = "".join(
        f"c{s}-{k},{uai(f'078{s:04d}')},CP,{20 + k},versailles,REP\n"
        for s in range(10) for k in range(3)
    )
    rows += "x-1,0780000B,CP,20,versailles,REP+\n"  # same school, other stratum: refused
    outcome = enroll_classes(engine, by_school, read_classes(HEADER + rows, by_school), actor="t")
    arms: dict[str, set[str]] = {}
    for c in outcome.enrolled:
        arms.setdefault(c.school_uai, set()).add(c.arm)
    assert len(arms) == 10 and all(len(a) == 1 for a in arms.values())
    assert _count(engine, "allocation_log") == 10  # one draw per school
    (refused,) = outcome.refusals
    assert refused.code == "school_stratum_conflict"


# --- publishing ---------------------------------------------------------------------------


def test_each_enrollment_is_handed_to_publish_after_the_commit(
    engine: Engine, design: EnrollmentDesign
) -> None:
    recorder = Recorder()
    outcome = enroll_classes(engine, design, read_classes(CLASSES, design), actor="t",
                             publish=recorder)
    (batch,) = recorder.batches
    assert [(m.class_id, m.arm) for m in batch] == [(c.class_id, c.arm) for c in outcome.enrolled]
    first = batch[0]
    assert (first.experiment_id, first.resource_id, first.school_uai, first.academie,
            first.status) == ("fluence-cp-2027", "lectio", "0781234T", "versailles", "enrolled")
    assert first.at.tzinfo is not None
    assert outcome.published == 6 and outcome.pending == 0
    # nothing left to publish
    assert publish_pending(engine, design.experiment_id, recorder).published == 0


def test_an_unreachable_broker_leaves_the_enrollment_committed_and_pending(
    engine: Engine, design: EnrollmentDesign
) -> None:
    outcome = enroll_classes(engine, design, read_classes(CLASSES, design), actor="t",
                             publish=Recorder(fail=True))
    assert len(outcome.enrolled) == 6 and outcome.pending == 6
    assert outcome.publish_error is not None and "no Kafka broker" in outcome.publish_error
    assert _count(engine, "enrollments") == 6
    recorder = Recorder()
    assert publish_pending(engine, design.experiment_id, recorder).published == 6
    assert pending_messages(engine, design.experiment_id) == []


# --- withdrawal ---------------------------------------------------------------------------


def test_a_withdrawn_class_keeps_its_arm_and_is_published_as_withdrawn(
    engine: Engine, design: EnrollmentDesign
) -> None:
    outcome = enroll_classes(engine, design, read_classes(CLASSES, design), actor="t",
                             publish=Recorder())
    arm = outcome.enrolled[0].arm
    done = withdraw(engine, design, "c-001", reason="teacher on leave", actor="t",
                    academie="versailles")
    assert (done.arm, done.data_policy) == (arm, "keep")
    (c1,) = [c for c in enrolled_classes(engine, design.experiment_id) if c.class_id == "c-001"]
    assert (c1.status, c1.arm) == ("withdrawn", arm)
    (message,) = pending_messages(engine, design.experiment_id)
    assert (message.class_id, message.status, message.arm) == ("c-001", "withdrawn", arm)
    with pytest.raises(EnrollmentError, match="already withdrawn"):
        withdraw(engine, design, "c-001", reason="again", actor="t")
    pupil = withdraw(engine, design, "c-002", reason="parents object", actor="t",
                     learner_id="l-42", key=b"test-key")
    assert pupil.data_policy == "remove"
    assert pupil.learner_id == pseudonymise(b"test-key", design.experiment_id, "l-42")
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT learner_id, scope FROM withdrawals "
                                            "WHERE scope = 'pupil'")).all()
    assert stored == [(pupil.learner_id, "pupil")], "the raw pupil id was stored"
    with pytest.raises(EnrollmentError, match="already withdrawn") as twice:
        withdraw(engine, design, "c-002", reason="asked again", actor="t",
                 learner_id=" l-42 ", key=b"test-key")  # the same pupil, spaces stripped
    assert twice.value.field == "status"
    with pytest.raises(EnrollmentError, match="learner id: empty"):
        withdraw(engine, design, "c-002", reason="x", actor="t", learner_id="  ")
    with pytest.raises(EnrollmentError, match="e-mail address") as named:
        withdraw(engine, design, "c-003", reason="see jeanne.martin@example.fr", actor="t")
    assert named.value.field == "reason"
    with pytest.raises(EnrollmentError, match="not enrolled"):
        withdraw(engine, design, "c-005", reason="x", actor="t", academie="versailles")


# --- balance --------------------------------------------------------------------------------


def test_balance_report_matches_a_hand_computation() -> None:
    # Treatment pupils 20, 22, 27 (mean 23, variance 13); control 24, 26 (mean 25,
    # variance 2). Pooled SD = sqrt((2*13 + 1*2) / 3) = sqrt(28/3); J = 1 - 3/(4*5 - 9)
    # = 8/11; g = 8/11 * (23 - 25) / sqrt(28/3) = -0.4761...
    # REP: 2/3 treatment, 1/2 control; Cox = J * (ln 2 - 0) / 1.65 = 0.30553...
    units = [
        BalanceUnit("lectio", 1, 20, {"education_priority": "REP"}),
        BalanceUnit("lectio", 1, 22, {"education_priority": "REP"}),
        BalanceUnit("lectio", 1, 27, {"education_priority": "REP+"}),
        BalanceUnit("usual", 1, 24, {"education_priority": "REP"}),
        BalanceUnit("usual", 1, 26, {"education_priority": "REP+"}),
    ]
    report = balance_report(units, ["lectio", "usual"], "usual", ["education_priority"])
    assert [(c.arm, c.units, c.pupils) for c in report.counts] == [("lectio", 3, 69),
                                                                   ("usual", 2, 50)]
    pupils, rep, rep_plus = report.differences
    assert pupils.difference == pytest.approx(8 / 11 * -2 / math.sqrt(28 / 3), rel=1e-12)
    assert round(pupils.difference, 4) == -0.4761
    assert pupils.equivalence == "not satisfied"
    assert (rep.level, rep.treatment, rep.control) == ("REP", pytest.approx(2 / 3), 0.5)
    assert rep.difference == pytest.approx(8 / 11 * math.log(2) / 1.65, rel=1e-12)
    assert rep.equivalence == "not satisfied"
    assert rep_plus.difference == pytest.approx(-rep.difference, rel=1e-12)


def test_balance_thresholds_and_undefined_cox_index() -> None:
    units = [BalanceUnit("t", 1, n, {"rural": r}) for n, r in ((20, "yes"), (21, "yes"))]
    units += [BalanceUnit("c", 1, n, {"rural": r}) for n, r in ((20, "yes"), (21, "no"))]
    report = balance_report(units, ["t", "c"], "c", ["rural"])
    pupils, no, yes = report.differences
    assert pupils.difference == 0.0 and pupils.equivalence == "satisfied"
    assert math.isnan(no.difference) and no.equivalence is None
    assert no.reason is not None and "difference of proportions -0.500" in no.reason


def test_balance_after_enrollment_counts_classes_and_pupils_per_arm(
    engine: Engine, design: EnrollmentDesign
) -> None:
    outcome = enroll_classes(engine, design, read_classes(CLASSES, design), actor="t")
    report = enrollment_balance(engine, design)
    for count in report.counts:
        mine = [c for c in outcome.enrolled if c.arm == count.arm]
        assert (count.classes, count.pupils) == (len(mine), sum(c.pupils for c in mine))
    assert {d.attribute for d in report.differences} == {"pupils", "education_priority",
                                                         "academie"}


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # The command builds Settings() from the environment, as any entry point does.
    monkeypatch.setenv("PREUVE_STATE_DIR", str(tmp_path / "cli-state"))
    yield tmp_path
    dispose_engines()


def _enroll(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["enroll", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_cli_prints_arms_refusals_and_balance_and_exits_1_on_refusals(cli_env: Path) -> None:
    code, output = _enroll("fluence-cp-2027", str(CLASSES), "--protocol", str(PROTOCOL),
                           "--no-publish")
    assert code == 1, output
    assert "c-001\t0781234T\tCP\t24\t-> " in output
    assert f"REFUSED {CLASSES}:8: level: niveau 'CE1'" in output
    assert "REFUSÉE : le niveau « CE1 »" in output
    assert "6 enrolled (inscrites)" in output and "Balance (unit: class)" in output


def test_cli_exits_0_when_every_row_is_enrolled_and_2_on_file_errors(cli_env: Path) -> None:
    good = cli_env / "good.csv"
    good.write_text(HEADER + "c1,0781234T,CP,24,versailles,REP\nc2,0781234T,CP,20,versailles,REP\n")
    code, output = _enroll("fluence-cp-2027", str(good), "--protocol", str(PROTOCOL),
                           "--no-publish", "--academie", "versailles")
    assert code == 0, output
    code, output = _enroll("fluence-cp-2027", str(good), "--protocol", str(PROTOCOL),
                           "--no-publish")
    assert code == 0 and "already enrolled" in output
    bad = cli_env / "bad.csv"
    bad.write_text("class_id,school_uai\nc1,0781234T\n")
    code, output = _enroll("fluence-cp-2027", str(bad), "--protocol", str(PROTOCOL))
    assert code == 2 and "missing column(s) level, pupils, academie" in output
    code, output = _enroll("fluence-cp-2027", str(cli_env / "nope.csv"), "--protocol",
                           str(PROTOCOL))
    assert code == 2 and "cannot read the file" in output
    code, output = _enroll("unknown-exp", str(good))
    assert code == 2 and "not in the registry" in output


def test_cli_json_withdraw_and_pending_publication(cli_env: Path) -> None:
    import json

    good = cli_env / "good.csv"
    good.write_text(HEADER + "c1,0781234T,CP,24,versailles,REP\n")
    # No broker is configured: the enrollment commits and the command exits 3 (pending).
    result = CliRunner().invoke(app, ["enroll", "fluence-cp-2027", str(good), "--protocol",
                                      str(PROTOCOL), "--json"])
    assert result.exit_code == 3, result.output
    payload = json.loads(result.stdout.splitlines()[0])
    assert payload["pending"] == 1 and payload["enrolled"][0]["class_id"] == "c1"
    assert "publishing pending" in result.stderr
    code, output = _enroll("fluence-cp-2027", "--withdraw", "c1", "--reason", "moved",
                           "--protocol", str(PROTOCOL), "--no-publish")
    assert code == 3 and "arm " in output and "kept (ITT)" in output
    code, output = _enroll("fluence-cp-2027", "--republish")
    assert code == 3 and "published 0" in output
    # A pupil of a class-randomised design: recorded by pseudonym, never by the id given.
    code, output = _enroll("fluence-cp-2027", "--withdraw", "c1", "--pupil", "gar-c1-07",
                           "--reason", "parents object", "--protocol", str(PROTOCOL))
    assert code == 0 and "data already collected: remove" in output, output
    settings = Settings(state_dir=cli_env / "cli-state")
    with registry_engine(settings).connect() as connection:
        stored = connection.execute(sa.text(
            "SELECT learner_id FROM withdrawals WHERE scope = 'pupil'")).scalar_one()
    assert stored == pseudonymise(load_pseudonym_key(settings), "fluence-cp-2027", "gar-c1-07")


def test_stored_times_read_back_exactly(engine: Engine, design: EnrollmentDesign) -> None:
    # The SQLite fast insert applies SQLAlchemy's own DateTime and JSON processors.
    from datetime import UTC, datetime

    now = datetime(2027, 9, 1, 8, 30, 15, 123456, tzinfo=UTC)
    enroll_classes(engine, design, read_classes(CLASSES, design), actor="t", now=now)
    (message, *_) = pending_messages(engine, design.experiment_id)
    assert message.at == now
    with engine.connect() as c:
        stored = c.execute(sa.text("SELECT enrolled_at, attributes FROM enrollments")).first()
    assert stored is not None
    assert stored.enrolled_at == "2027-09-01 08:30:15.123456"
    assert stored.attributes == '{"education_priority": "REP"}'


def test_cli_uses_the_registered_protocol_and_refuses_drafts_and_other_files(
    cli_env: Path, tmp_path: Path
) -> None:
    from experiments.registry import register_protocol, save_draft

    engine = registry_engine(Settings(state_dir=cli_env / "cli-state"))
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "c1,0781234T,CP,24,versailles,REP\n")
    protocol = load_protocol(PROTOCOL)
    draft = protocol.model_copy(update={"id": "brouillon"})
    save_draft(engine, draft, PROTOCOL.read_text().replace("fluence-cp-2027", "brouillon"))
    code, output = _enroll("brouillon", str(good), "--no-publish")
    assert code == 2 and "experiment brouillon is draft" in output
    register_protocol(engine, protocol, PROTOCOL.read_text(), actor="test")
    code, output = _enroll("fluence-cp-2027", str(good), "--no-publish")
    assert code == 0, output
    assert "not registered" not in output and "c1\t0781234T\tCP\t24\t-> " in output
    other = tmp_path / "other.yaml"
    other.write_text(PROTOCOL.read_text().replace("seed: 20270901", "seed: 1"))
    code, output = _enroll("fluence-cp-2027", str(good), "--protocol", str(other))
    assert code == 2 and "is not the registered protocol" in output


def test_the_allocation_log_replays_from_the_protocol_and_tampering_shows(
    engine: Engine, design: EnrollmentDesign
) -> None:
    from experiments.enrollment.assignments import verify_allocations

    enroll_classes(engine, design, read_classes(CLASSES, design), actor="t")
    late = HEADER + "late-1,0781234T,CP,22,versailles,REP\nlate-2,0931111C,CP,20,creteil,REP\n"
    enroll_classes(engine, design, read_classes(late, design), actor="t")  # continues blocks
    assert verify_allocations(engine, design) == []
    flip = sa.text("UPDATE enrollments SET arm = CASE arm WHEN 'lectio' THEN 'usual' "
                   "ELSE 'lectio' END WHERE class_id = 'c-002'")
    with pytest.raises(sa.exc.DatabaseError, match="cannot change"), engine.begin() as c:
        c.execute(flip)
    with engine.begin() as c:  # someone with the database's keys removes the guard
        c.execute(sa.text("DROP TRIGGER enrollments_arm_fixed"))
        c.execute(flip)
    (problem,) = verify_allocations(engine, design)
    assert problem.startswith("class c-002: arm ")


def test_cli_verify(cli_env: Path) -> None:
    code, output = _enroll("fluence-cp-2027", str(CLASSES), "--protocol", str(PROTOCOL),
                           "--no-publish")
    code, output = _enroll("fluence-cp-2027", "--verify", "--protocol", str(PROTOCOL))
    assert code == 0 and "allocation log reproduces from the protocol" in output


# --- attributes that cannot be stored ---------------------------------------------------

WITH_NOTE = HEADER.rstrip("\n") + ",note\n"


@pytest.mark.parametrize(
    ("note", "code"),
    [
        ("contact jean.dupont@ecole.fr", "identifying_attribute"),
        ("06 12 34 56 78", "identifying_attribute"),
        ("x" * 65, "attribute_too_long"),
        ("a\x00b", "control_character"),
    ],
)
def test_an_attribute_with_an_identifier_a_long_text_or_a_nul_is_refused(
    design: EnrollmentDesign, note: str, code: str
) -> None:
    noted = dataclasses.replace(design, attributes=(*design.attributes, "note"))
    classes = read_classes(WITH_NOTE + f"c1,0781234T,CP,24,versailles,REP,{note}\n", noted)
    assert classes.rows == []
    (refused,) = classes.refusals
    assert (refused.code, refused.field) == (code, "note")
    assert "@" not in refused.value and "06 12" not in refused.value, "the refusal echoes it"
    ok = read_classes(WITH_NOTE + "c1,0781234T,CP,24,versailles,REP,tuteur-b\n", noted)
    assert [r.attributes["note"] for r in ok.rows] == ["tuteur-b"]
