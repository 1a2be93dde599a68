"""Enrollment of pupils for learner-randomised protocols, on SQLite: balance within strata,
reproducibility, no raw learner id in the registry, refusals (FR/EN), no double enrollment,
routing by class with the arms joined from the registry, withdrawal keeping the arm, CLI."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from experiments.cli.app import app
from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.assignments import (
    enrolled_classes,
    enrolled_learners,
    learner_arms,
    verify_learner_allocations,
)
from experiments.enrollment.balance import enrollment_balance
from experiments.enrollment.files import EnrollmentDesign, read_classes, read_pupils
from experiments.enrollment.publishing import pending_messages
from experiments.enrollment.tables import MIXED_ARM
from experiments.enrollment.transaction import enroll_learners
from experiments.enrollment.withdrawal import withdraw, withdraw_learner
from experiments.errors import EnrollmentError
from experiments.protocol.language import load_protocol
from experiments.settings import Settings
from ingest.contract import EnrollmentMessage
from ingest.pseudonym import pseudonymise
from tests.conftest import SIMULATED_NOW

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = REPO / "tests" / "data" / "enrollment" / "learner-protocol.yaml"
PUPILS = REPO / "tests" / "data" / "enrollment" / "pupils.csv"
CLASS_PROTOCOL = REPO / "protocols" / "fluence-cp-2027.yaml"
HEADER = "learner_id,class_id,school_uai,level,academie,education_priority,repeater\n"
KEY = b"unit-test-pseudonym-key"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    yield registry_engine(Settings(state_dir=tmp_path / "state"))
    dispose_engines()


@pytest.fixture
def design() -> EnrollmentDesign:
    return EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))


def _pupils_text(n_classes: int, per_class: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    lines = [HEADER]
    for c in range(n_classes):
        uai, academie = ("0781234T", "versailles") if c % 2 else ("0931111C", "creteil")
        for p in range(per_class):
            lines.append(f"gar-{c:02d}x{p:03d}q,cls-{c:02d},{uai},CP,{academie},"
                         f"{rng.choice(['REP', 'REP+'])},{rng.choice(['oui', 'non'])}\n")
    return "".join(lines)


def _arms_by_id(engine: Engine, design: EnrollmentDesign, text: str) -> dict[str, str]:
    outcome = enroll_learners(engine, design, read_pupils(text, design), key=KEY, actor="t")
    return {p.learner_id: p.arm for p in outcome.enrolled}


class Recorder:
    def __init__(self) -> None:
        self.messages: list[EnrollmentMessage] = []

    def __call__(self, messages: Sequence[EnrollmentMessage]) -> int:
        self.messages += messages
        return len(messages)


# --- randomisation -----------------------------------------------------------------------


def test_pupils_are_balanced_within_each_stratum(
    engine: Engine, design: EnrollmentDesign
) -> None:
    # Strata are the pupil's class; ratios 1:1, so permuted blocks of 2: within each class
    # the arms differ by at most one (one block remainder).
    text = _pupils_text(n_classes=7, per_class=23)
    outcome = enroll_learners(engine, design, read_pupils(text, design), key=KEY, actor="t")
    assert len(outcome.enrolled) == 7 * 23 and not outcome.refusals
    by_class: dict[str, Counter[str]] = {}
    for pupil in outcome.enrolled:
        by_class.setdefault(pupil.class_id, Counter())[pupil.arm] += 1
    assert len(by_class) == 7
    for class_id, counts in by_class.items():
        assert abs(counts["lectio"] - counts["usual"]) <= 1, (class_id, counts)
    assert verify_learner_allocations(engine, design) == []


def test_the_assignment_is_reproducible_for_a_seed_and_changes_with_it(
    tmp_path: Path, design: EnrollmentDesign
) -> None:
    text = _pupils_text(n_classes=3, per_class=20)
    first = _arms_by_id(registry_engine(Settings(state_dir=tmp_path / "a")), design, text)
    again = _arms_by_id(registry_engine(Settings(state_dir=tmp_path / "b")), design, text)
    reseeded = EnrollmentDesign.from_protocol(
        load_protocol(PROTOCOL).model_copy(update={"randomisation": load_protocol(PROTOCOL)
                                                   .randomisation.model_copy(update={"seed": 7})})
    )
    other = _arms_by_id(registry_engine(Settings(state_dir=tmp_path / "c")), reseeded, text)
    dispose_engines()
    assert first == again
    assert first != other and first.keys() == other.keys()


def test_late_pupils_continue_their_stratum_s_block(
    tmp_path: Path, design: EnrollmentDesign
) -> None:
    text = _pupils_text(n_classes=2, per_class=9)
    lines = text.splitlines(keepends=True)
    late = registry_engine(Settings(state_dir=tmp_path / "late"))
    in_two = _arms_by_id(late, design, "".join(lines[:8]))
    in_two |= _arms_by_id(late, design, lines[0] + "".join(lines[8:]))
    at_once = _arms_by_id(registry_engine(Settings(state_dir=tmp_path / "once")), design, text)
    assert in_two == at_once
    assert verify_learner_allocations(late, design) == []
    dispose_engines()


# --- pseudonyms only -----------------------------------------------------------------------


def test_raw_learner_ids_are_in_no_registry_table(
    tmp_path: Path, engine: Engine, design: EnrollmentDesign
) -> None:
    pupils = read_pupils(PUPILS, design)
    raw = [row.learner_id for row in pupils.rows]
    outcome = enroll_learners(engine, design, pupils, key=KEY, actor="t", publish=Recorder())
    assert [p.learner_id for p in outcome.enrolled] == raw  # echoed to the académie
    withdraw_learner(engine, design, KEY, raw[0], reason="parents object", actor="t")
    keys = {pseudonymise(KEY, design.experiment_id, learner_id) for learner_id in raw}
    assert set(learner_arms(engine, design.experiment_id)) == keys
    texts: list[str] = []
    with engine.connect() as connection:
        for table in sa.inspect(engine).get_table_names():
            for row in connection.execute(sa.text(f'SELECT * FROM "{table}"')):
                texts.append(f"{table}: {tuple(row)}")
    dump = "\n".join(texts)
    assert texts and all(learner_id not in dump for learner_id in raw)
    assert "remarque" not in dump and "lit déjà" not in dump, "unnamed columns are not stored"
    database = tmp_path / "state" / "registry.sqlite"
    engine.dispose()
    data = b"".join(p.read_bytes() for p in database.parent.glob("registry.sqlite*"))
    assert all(learner_id.encode() not in data for learner_id in raw)
    log = [t for t in texts if t.startswith("allocation_log:")]
    assert len(log) == 12 and not [k for k in keys if any(k in t for t in log)], (
        "the append-only log names draws pupil:<sequence>, never a pseudonym")
    (withdrawal,) = [t for t in texts if t.startswith("withdrawals:")]
    assert pseudonymise(KEY, design.experiment_id, raw[0]) in withdrawal


# --- refusals -------------------------------------------------------------------------------


def test_e_mail_like_ids_names_and_duplicated_pupils_are_refused_in_french_and_english(
    engine: Engine, design: EnrollmentDesign
) -> None:
    text = HEADER + (
        "gar-01,cp-a,0781234T,CP,versailles,REP,non\n"              # 2 valid
        "lea.martin@ecole.fr,cp-a,0781234T,CP,versailles,REP,non\n"  # 3 an e-mail
        "Léa Martin,cp-a,0781234T,CP,versailles,REP,non\n"          # 4 a name
        "gar-01,cp-b,0781234T,CP,versailles,REP,oui\n"              # 5 duplicated pupil
        "gar-02,cp-a,0781234T,CE1,versailles,REP,non\n"             # 6 wrong niveau
        "gar-03,cp-a,0781234T,CP,versailles,REP\n"                  # 7 malformed
        "gar-04,cp-a,0781234T,CP,versailles,REP+,oui\n"             # 8 valid
    )
    pupils = read_pupils(text, design, name="eleves.csv")
    outcome = enroll_learners(engine, design, pupils, key=KEY, actor="t")
    assert [p.learner_id for p in outcome.enrolled] == ["gar-01", "gar-04"]
    by_line = {r.line: r for r in outcome.refusals}
    assert sorted(by_line) == [3, 4, 5, 6, 7]
    email = by_line[3]
    assert (email.code, email.field, email.value) == ("learner_id_email", "learner_id", "")
    assert email.message_en == (
        "the learner id looks like an e-mail address (not repeated here): only the "
        "pseudonymous ENT/GAR id is accepted, never a name or an address"
    )
    assert email.message_fr == (
        "l'identifiant d'élève ressemble à une adresse e-mail (non recopiée ici) : seul "
        "l'identifiant pseudonyme de l'ENT/GAR est accepté, jamais un nom ni une adresse"
    )
    assert "lea.martin" not in str(email)
    assert by_line[4].code == "bad_learner_id"
    assert by_line[4].message_en.startswith("learner id 'Léa Martin' is invalid")
    assert by_line[4].message_fr.startswith("identifiant d'élève « Léa Martin » invalide")
    duplicate = by_line[5]
    assert (duplicate.code, duplicate.field, duplicate.value) == (
        "duplicate_learner", "learner_id", "gar-01")
    assert duplicate.message_en == "pupil 'gar-01' already appears on line 2 of the file"
    assert duplicate.message_fr == "l'élève « gar-01 » figure déjà à la ligne 2 du fichier"
    assert by_line[6].code == "level_outside_population"
    assert by_line[7].message_en == "malformed row: 6 fields, the header has 7"


@pytest.mark.parametrize("column", ["nom", "Prénom", "email", "date_de_naissance", "E-mail"])
def test_a_column_that_looks_like_a_direct_identifier_refuses_the_file(
    design: EnrollmentDesign, column: str
) -> None:
    text = HEADER.rstrip("\n") + f",{column}\ngar-01,cp-a,0781234T,CP,versailles,REP,non,x\n"
    with pytest.raises(EnrollmentError, match=f"column '{column}' looks like a direct") as info:
        read_pupils(text, design, name="eleves.csv")
    assert (info.value.path, info.value.line, info.value.field) == ("eleves.csv", 1, column)
    assert "ressemble à une donnée identifiante" in info.value.reason


def test_a_file_of_the_wrong_kind_is_refused_as_a_whole(design: EnrollmentDesign) -> None:
    classes_text = "class_id,school_uai,level,pupils,academie,education_priority\n"
    with pytest.raises(EnrollmentError, match="missing column.s. learner_id"):
        read_pupils(classes_text + "c1,0781234T,CP,24,versailles,REP\n", design)
    with pytest.raises(EnrollmentError, match="randomises learners: enroll a file of pupils"):
        read_classes(classes_text, design)
    class_design = EnrollmentDesign.from_protocol(load_protocol(CLASS_PROTOCOL))
    with pytest.raises(EnrollmentError, match="this is a file of pupils"):
        read_classes(HEADER + "gar-01,cp-a,0781234T,CP,versailles,REP,non\n", class_design)
    with pytest.raises(EnrollmentError, match="not by learner"):
        read_pupils(HEADER, class_design)


# --- idempotence and routing ----------------------------------------------------------------


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as c:
        return int(c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_rerunning_the_same_file_does_not_double_enroll(
    engine: Engine, design: EnrollmentDesign
) -> None:
    first = enroll_learners(engine, design, read_pupils(PUPILS, design), key=KEY, actor="t")
    counts = {t: _count(engine, t) for t in ("learner_enrollments", "allocation_log",
                                             "enrollments")}
    assert counts == {"learner_enrollments": 12, "allocation_log": 12, "enrollments": 3}
    again = enroll_learners(engine, design, read_pupils(PUPILS, design), key=KEY, actor="t")
    assert not again.enrolled and not again.refusals and again.classes == 0
    assert {(p.learner_id, p.arm) for p in again.already} == {
        (p.learner_id, p.arm) for p in first.enrolled}
    assert {t: _count(engine, t) for t in counts} == counts
    moved = HEADER + "gar-7f3a91,cp-b,0781234T,CP,versailles,REP,non\n"
    (refused,) = enroll_learners(engine, design, read_pupils(moved, design), key=KEY,
                                 actor="t").refusals
    assert (refused.code, refused.field) == ("learner_enrolled_differently", "class_id")
    assert refused.message_en == ("the pupil is already enrolled with 'class_id' = 'cp-a', "
                                  "not 'cp-b'; an enrollment cannot be edited")


def test_classes_route_to_the_experiment_with_a_mixed_arm_and_pupils_keep_theirs(
    engine: Engine, design: EnrollmentDesign
) -> None:
    recorder = Recorder()
    outcome = enroll_learners(engine, design, read_pupils(PUPILS, design), key=KEY, actor="t",
                              publish=recorder)
    assert (outcome.published, outcome.pending, outcome.classes) == (3, 0, 3)
    assert {(m.class_id, m.arm, m.status) for m in recorder.messages} == {
        ("cp-a", MIXED_ARM, "enrolled"), ("cp-b", MIXED_ARM, "enrolled"),
        ("cp-c", MIXED_ARM, "enrolled")}
    classes = {c.class_id: c for c in enrolled_classes(engine, design.experiment_id)}
    assert {k: c.pupils for k, c in classes.items()} == {"cp-a": 5, "cp-b": 4, "cp-c": 3}
    late = HEADER + "gar-late01,cp-c,0931111C,CP,creteil,REP+,non\n"
    enroll_learners(engine, design, read_pupils(late, design), key=KEY, actor="t",
                    publish=recorder)
    assert len(recorder.messages) == 3, "a known class is not re-published"
    assert enrolled_classes(engine, design.experiment_id)[2].pupils == 4
    arms = learner_arms(engine, design.experiment_id)
    assert arms[pseudonymise(KEY, design.experiment_id, "gar-late01")] in {"lectio", "usual"}
    assert set(Counter(arms.values())) == {"lectio", "usual"}


def test_events_of_a_mixed_class_are_routed_and_joined_to_each_pupil_s_arm(
    tmp_path: Path, design: EnrollmentDesign
) -> None:
    # The router is unchanged: it stores a mixed class's events under arm '*', keyed by
    # the pupil's pseudonym, which is the key of the registry's arm map.
    from experiments.store import events_table
    from ingest.stream.router import EventRouter, IngressRecord

    # Events of 2027-2028: the simulated clock of the tests (tests/conftest.py).
    settings = Settings(state_dir=tmp_path / "routed", pseudonym_key="router-test-key" * 5,
                        simulated_now=SIMULATED_NOW)
    registry = registry_engine(settings)
    key = b"router-test-key"
    recorder = Recorder()
    outcome = enroll_learners(registry, design, read_pupils(PUPILS, design), key=key,
                              actor="t", publish=recorder)
    lookup = {(m.class_id, m.resource_id): m for m in recorder.messages}
    records = [
        IngressRecord("preuve.events", 0, n, None, json.dumps({
            "event_id": f"00000000-0000-4000-8000-{n:012d}",
            "occurred_at": "2027-10-04T09:00:00+02:00", "resource_id": "lectio",
            "learner_id": p.learner_id, "class_id": p.class_id, "school_uai": p.school_uai,
            "verb": "exercise_answered",
        }).encode())
        for n, p in enumerate(outcome.enrolled)
    ]
    router = EventRouter(settings, key, registry)
    assert router.route(records, lambda c, r: lookup.get((c, r))).stored == {
        design.experiment_id: len(records)}
    with router.store(design.experiment_id).engine.connect() as connection:
        stored = connection.execute(
            sa.select(events_table.c.learner_key, events_table.c.arm)).all()
    arms = learner_arms(registry, design.experiment_id)
    assert {arm for _, arm in stored} == {MIXED_ARM}
    joined = {learner_key: arms[learner_key] for learner_key, _ in stored}
    expected = {pseudonymise(key, design.experiment_id, p.learner_id): p.arm
                for p in outcome.enrolled}
    assert joined == expected
    dispose_engines()


# --- withdrawal, balance, tampering -----------------------------------------------------------


def test_a_withdrawn_pupil_keeps_its_arm(engine: Engine, design: EnrollmentDesign) -> None:
    outcome = enroll_learners(engine, design, read_pupils(PUPILS, design), key=KEY, actor="t")
    pupil = outcome.enrolled[2]
    with pytest.raises(EnrollmentError, match="not enrolled in class cp-b"):
        withdraw_learner(engine, design, KEY, pupil.learner_id, reason="x", actor="t",
                         class_id="cp-b")
    with pytest.raises(EnrollmentError, match="not enrolled"):
        withdraw_learner(engine, design, KEY, pupil.learner_id, reason="x", actor="t",
                         academie="creteil")
    done = withdraw_learner(engine, design, KEY, pupil.learner_id, reason="moved away",
                            actor="t", class_id="cp-a")
    assert (done.arm, done.data_policy, done.class_id) == (pupil.arm, "remove", "cp-a")
    with pytest.raises(EnrollmentError, match="already withdrawn"):
        withdraw_learner(engine, design, KEY, pupil.learner_id, reason="x", actor="t")
    with pytest.raises(EnrollmentError, match="already withdrawn"):  # found despite spaces
        withdraw(engine, design, "cp-a", reason="x", actor="t",
                 learner_id=f" {pupil.learner_id} ", key=KEY)
    (row,) = [p for p in enrolled_learners(engine, design.experiment_id)
              if p.learner_key == pupil.learner_key]
    assert (row.status, row.arm) == ("withdrawn", pupil.arm)
    assert enrollment_balance(engine, design).counts[0].units + enrollment_balance(
        engine, design).counts[1].units == 12, "withdrawn pupils stay in the balance (ITT)"
    other = "usual" if pupil.arm == "lectio" else "lectio"
    with pytest.raises(sa.exc.DatabaseError, match="cannot change"), engine.begin() as c:
        c.execute(sa.text("UPDATE learner_enrollments SET arm = :a"), {"a": other})
    assert [m.status for m in pending_messages(engine, design.experiment_id)] == [
        "enrolled"] * 3, "a pupil's withdrawal does not withdraw the class"


def test_the_balance_report_counts_pupils_and_classes_and_compares_declared_attributes(
    engine: Engine, design: EnrollmentDesign
) -> None:
    outcome = enroll_learners(engine, design, read_pupils(PUPILS, design), key=KEY, actor="t")
    report = enrollment_balance(engine, design)
    assert report.unit == "learner"
    for count in report.counts:
        mine = [p for p in outcome.enrolled if p.arm == count.arm]
        assert (count.units, count.pupils) == (len(mine), len(mine))
        assert count.classes == len({p.class_id for p in mine})
    assert {d.attribute for d in report.differences} == {
        "education_priority", "repeater", "academie"}
    (repeaters,) = [d for d in report.differences if (d.attribute, d.level) == ("repeater", "true")]
    lectio = [p for p in outcome.enrolled if p.arm == "lectio"]
    usual = [p for p in outcome.enrolled if p.arm == "usual"]
    assert repeaters.treatment == sum(p.attributes["repeater"] == "true" for p in lectio) / len(
        lectio)
    assert repeaters.control == sum(p.attributes["repeater"] == "true" for p in usual) / len(usual)


def test_tampering_with_a_pupil_s_arm_shows_in_verify(
    engine: Engine, design: EnrollmentDesign
) -> None:
    enroll_learners(engine, design, read_pupils(PUPILS, design), key=KEY, actor="t")
    assert verify_learner_allocations(engine, design) == []
    with engine.begin() as c:  # someone with the database's keys removes the guard
        c.execute(sa.text("DROP TRIGGER learner_enrollments_arm_fixed"))
        c.execute(sa.text("UPDATE learner_enrollments SET arm = CASE arm WHEN 'lectio' THEN "
                          "'usual' ELSE 'lectio' END WHERE id = 1"))
    (problem,) = verify_learner_allocations(engine, design)
    assert problem.startswith("pupil:1 of class cp-a: arm ")


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PREUVE_STATE_DIR", str(tmp_path / "cli-state"))
    monkeypatch.setenv("PREUVE_PSEUDONYM_KEY", "cli-test-key" * 5)
    yield tmp_path
    dispose_engines()


def _enroll(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["enroll", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_cli_enrolls_a_pupils_file_and_prints_each_pupil_s_arm_by_its_id(cli_env: Path) -> None:
    code, output = _enroll("lectio-eleves-2027", str(PUPILS), "--protocol", str(PROTOCOL),
                           "--no-publish")
    assert code == 0, output
    assert "gar-7f3a91\tcp-a\t0781234T\tCP\t-> " in output
    assert "12 pupils enrolled (élèves inscrits)" in output and "3 new classes" in output
    assert "Balance (unit: learner)" in output
    assert "ignored columns (not stored): remarque" in output
    result = CliRunner().invoke(app, ["enroll", "lectio-eleves-2027", str(PUPILS), "--protocol",
                                      str(PROTOCOL), "--no-publish", "--json"])
    payload = json.loads(result.stdout.splitlines()[0])
    assert result.exit_code == 0 and payload["unit"] == "learner" and not payload["enrolled"]
    assert {p["learner_id"] for p in payload["already"]} >= {"gar-7f3a91", "gar-5f8c27"}
    code, output = _enroll("lectio-eleves-2027", "--withdraw", "cp-a", "--pupil", "gar-b20c44",
                           "--reason", "parents object", "--protocol", str(PROTOCOL))
    assert code == 0 and "kept (ITT)" in output and "data already collected: remove" in output
    code, output = _enroll("lectio-eleves-2027", "--verify", "--protocol", str(PROTOCOL))
    assert code == 0 and "reproduces from the protocol" in output
    engine = registry_engine(Settings(state_dir=cli_env / "cli-state"))
    with engine.connect() as c:
        withdrawn = c.execute(sa.text("SELECT learner_id FROM withdrawals")).scalar_one()
    assert withdrawn == pseudonymise(b"cli-test-key" * 5, "lectio-eleves-2027", "gar-b20c44")


def test_cli_refuses_rows_and_files_of_the_wrong_kind(cli_env: Path) -> None:
    bad = cli_env / "eleves.csv"
    bad.write_text(HEADER + "gar-01,cp-a,0781234T,CP,versailles,REP,non\n"
                   "a.b@ecole.fr,cp-a,0781234T,CP,versailles,REP,non\n")
    code, output = _enroll("lectio-eleves-2027", str(bad), "--protocol", str(PROTOCOL),
                           "--no-publish")
    assert code == 1, output
    assert f"REFUSED {bad}:3: learner_id: the learner id looks like an e-mail" in output
    assert "a.b@ecole.fr" not in output
    classes = REPO / "tests" / "data" / "enrollment" / "classes.csv"
    code, output = _enroll("lectio-eleves-2027", str(classes), "--protocol", str(PROTOCOL))
    assert code == 2 and "missing column(s) learner_id" in output
    code, output = _enroll("fluence-cp-2027", str(PUPILS), "--protocol", str(CLASS_PROTOCOL))
    assert code == 2 and "this is a file of pupils" in output


# --- the HTTP API -------------------------------------------------------------------------------


def test_api_enrolls_pupils_answers_their_arms_and_withdraws_one_by_its_id(
    tmp_path: Path,
) -> None:
    import warnings

    from fastapi import FastAPI
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():  # as in test_enrollment_api.py: TestClient's import warns
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from fastapi.testclient import TestClient

    from experiments.access import issue_token
    from experiments.enrollment.api import install_enrollment_api
    from experiments.registry import register_protocol

    settings = Settings(state_dir=tmp_path / "api", pseudonym_key="api-test-key" * 5)
    engine = registry_engine(settings)
    register_protocol(engine, load_protocol(PROTOCOL), PROTOCOL.read_text(), actor="test")
    versailles = {"Authorization": f"Bearer {issue_token(engine, 'academie', 'versailles')}"}
    edtech = {"Authorization": f"Bearer {issue_token(engine, 'edtech', 'lectio')}"}
    recorder = Recorder()
    app = FastAPI()
    install_enrollment_api(app, settings, publish=recorder)
    url = "/v1/experiments/lectio-eleves-2027"
    rows = [{"learner_id": f"gar-api{i:02d}", "class_id": "cp-a", "school_uai": "0781234T",
             "level": "CP", "academie": "versailles", "education_priority": "REP",
             "repeater": "non"} for i in range(6)]
    with TestClient(app) as client:
        response = client.post(f"{url}/enrollments", json={"pupils": rows}, headers=versailles)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["unit"] == "learner" and body["pending"] == 0
        assert Counter(p["arm"] for p in body["enrolled"]) == {"lectio": 3, "usual": 3}
        assert [p["learner_id"] for p in body["enrolled"]] == [r["learner_id"] for r in rows]
        seen = client.get(f"{url}/enrollments", headers=edtech).json()
        assert seen["classes"] == [{"class_id": "cp-a", "school_uai": "0781234T",
                                    "arm": MIXED_ARM}]
        response = client.post(f"{url}/withdrawals", headers=versailles, json={
            "class_id": "cp-a", "learner_id": "gar-api03", "reason": "parents object"})
        assert response.status_code == 200, response.text
        assert response.json()["arm"] == body["enrolled"][3]["arm"]
        response = client.post(f"{url}/withdrawals", headers=versailles, json={
            "class_id": "cp-a", "learner_id": "gar-nobody", "reason": "x"})
        assert response.status_code == 404
    with engine.connect() as connection:
        dump = " ".join(str(tuple(row)) for table in sa.inspect(engine).get_table_names()
                        for row in connection.execute(sa.text(f'SELECT * FROM "{table}"')))
    assert "gar-api" not in dump
    dispose_engines()


def test_a_failure_before_the_commit_enrolls_no_pupil_and_no_class(
    engine: Engine, design: EnrollmentDesign
) -> None:
    def crash() -> None:
        raise RuntimeError("killed before the commit")

    with pytest.raises(RuntimeError, match="killed"):
        enroll_learners(engine, design, read_pupils(PUPILS, design), key=KEY, actor="t",
                        before_commit=crash)
    assert {t: _count(engine, t) for t in ("learner_enrollments", "allocation_log",
                                           "enrollments")} == dict.fromkeys(
        ("learner_enrollments", "allocation_log", "enrollments"), 0)
    outcome = enroll_learners(engine, design, read_pupils(PUPILS, design), key=KEY, actor="t")
    assert len(outcome.enrolled) == 12, "the whole file enrolls on the next run"
