"""Issue 17 below the portal: Excel's French file (``;``, Windows-1252 or UTF-8 with a
byte order mark, French headers), the académies' own criteria, the collectivité role, the
double validation through the API, and the reproducibility of its allocation."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from experiments.access import issue_token, scope_problem
from experiments.cli.app import app
from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.api import install_enrollment_api
from experiments.enrollment.assignments import enrolled_classes, verify_allocations
from experiments.enrollment.design import enrollment_design
from experiments.enrollment.files import decode_csv, read_classes
from experiments.enrollment.transaction import enroll_classes
from experiments.enrollment.validations import (
    pending_classes,
    validate_as_academie,
    validate_as_collectivite,
)
from experiments.errors import EnrollmentError, ProtocolError
from experiments.protocol.language import load_protocol, parse_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.settings import Settings
from tests.support.academie import (
    CRETEIL_SCHOOLS,
    DOUBLE,
    ROOT,
    SINGLE,
    AcademieWorld,
    academie_settings,
    build_academie_world,
    excel_file,
)
from tests.support.decision import decide_and_acknowledge
from tests.support.portal import PortalClient
from tests.support.uai import uai


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Settings, AcademieWorld]]:
    settings = academie_settings(tmp_path / "state",
                                 academie_criteria={"creteil": {"education_priority": ["REP+"]}})
    try:
        yield settings, build_academie_world(settings)
    finally:
        dispose_engines()


# --- the file Excel writes ----------------------------------------------------------------


def test_excel_french_file_is_read_with_its_aliases() -> None:
    from experiments.enrollment.files import EnrollmentDesign

    design = EnrollmentDesign.from_protocol(load_protocol(ROOT / "protocols" / f"{SINGLE}.yaml"))
    for data in (excel_file(), b"\xef\xbb\xbf" + excel_file().decode("cp1252").encode()):
        classes = read_classes(decode_csv(data, "classes.csv"), design, name="classes.csv",
                               today=design.opens)
        assert [r.class_id for r in classes.rows] == ["cr-a", "cr-b", "cr-d"]
        assert {r.academie for r in classes.rows} == {"creteil"}  # « Créteil »
        assert classes.rows[1].attributes == {"education_priority": "REP+"}
        assert [(r.line, r.code) for r in classes.refusals] == [(4, "uai_check_letter")]
        assert classes.ignored_columns == ("Enseignant référent",)


def test_a_file_neither_utf8_nor_windows_1252_is_refused_with_its_byte() -> None:
    with pytest.raises(EnrollmentError, match=r"classes.csv: neither UTF-8 nor Windows-1252 "
                                              r"text \(byte 5\)"):
        decode_csv(b"Class\x81e;UAI", "classes.csv")


def test_preuve_enroll_reads_the_excel_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREUVE_STATE_DIR", str(tmp_path / "cli-state"))
    path = tmp_path / "classes.csv"
    path.write_bytes(excel_file())
    try:
        result = CliRunner().invoke(app, [
            "enroll", SINGLE, str(path), "--protocol", str(ROOT / "protocols" / f"{SINGLE}.yaml"),
            "--no-publish"])
    finally:
        dispose_engines()
    assert result.exit_code == 1, result.output  # one refused row
    assert "3 enrolled (inscrites)" in result.output
    assert f"REFUSED {path}:4: school_uai" in result.output


def test_academie_criteria_apply_on_top_of_the_protocol(
        world: tuple[Settings, AcademieWorld]) -> None:
    settings, w = world
    design, _ = enrollment_design(w.registry, SINGLE)
    classes = read_classes(decode_csv(excel_file(), "f.csv"), design, today=settings.today(),
                           academie_criteria=settings.academie_criteria)
    assert [r.class_id for r in classes.rows] == ["cr-b"]  # the REP+ class only
    refused = {r.class_id: r for r in classes.refusals}
    assert refused["cr-a"].code == "academie_criterion_not_met"
    assert refused["cr-a"].message_fr.startswith("critère de l'académie « creteil » non rempli")
    # Another académie's rows are not concerned.
    versailles = excel_file(prefix="v", schools=(uai("0780001"), uai("0780002")),
                            academie="Versailles", bad_row=False)
    assert len(read_classes(decode_csv(versailles, "v.csv"), design, today=settings.today(),
                            academie_criteria=settings.academie_criteria).rows) == 3


# --- the collectivité role and the protocol --------------------------------------------


@pytest.mark.parametrize(("scope", "ok"), [
    ("departement-93", True), ("departement-2a", True), ("departement-971", True),
    ("commune-93066", True), ("commune-2a004", True), ("region-11", True),
    ("93", False), ("departement-", False), ("commune-9306", False), ("*", False),
    ("creteil", False),
])
def test_a_collectivite_is_scoped_by_its_insee_code(scope: str, ok: bool) -> None:
    assert (scope_problem("collectivite", scope) is None) is ok


def test_validations_must_start_with_the_academie() -> None:
    text = (ROOT / "protocols" / f"{DOUBLE}.yaml").read_text(encoding="utf-8")
    with pytest.raises(ProtocolError, match="validations"):
        parse_protocol(text.replace("validations: [academie, collectivite]",
                                    "validations: [collectivite]"))
    assert load_protocol(ROOT / "protocols" / f"{SINGLE}.yaml").enrollment is None


# --- double validation ------------------------------------------------------------------


def _rows(n: int) -> str:
    lines = ["class_id,school_uai,level,pupils,academie,education_priority"]
    for i in range(n):
        lines.append(f"k{i:02d},{CRETEIL_SCHOOLS[i % 2]},CE2,{18 + i % 7},creteil,"
                     f"{('REP', 'REP+', 'hors_ep')[i % 3]}")
    return "\n".join(lines) + "\n"


def _fresh(tmp_path: Path, name: str) -> tuple[Settings, AcademieWorld]:
    settings = academie_settings(tmp_path / name)
    return settings, build_academie_world(settings)


def test_the_arms_do_not_depend_on_the_order_the_collectivite_ticks(tmp_path: Path) -> None:
    """Same académie file, same validations in one call, ticked in another order: the
    same arms; and they are the arms the same file gets when enrolled at once (the draw
    follows the académie's order), re-derived by verify_allocations from the seed."""
    arms = []
    try:
        for k, order in enumerate((sorted, lambda ids: sorted(ids, reverse=True),
                                   lambda ids: random.Random(7).sample(ids, len(ids)))):
            settings, w = _fresh(tmp_path, f"r{k}")
            design, _ = enrollment_design(w.registry, DOUBLE)
            classes = read_classes(_rows(12), design, today=settings.today())
            validate_as_academie(w.registry, design, classes, actor="academie:creteil:t")
            ids = [c.class_id for c in pending_classes(w.registry, DOUBLE)]
            validate_as_collectivite(w.registry, design, order(ids),
                                     schools=CRETEIL_SCHOOLS, actor="collectivite:t")
            assert verify_allocations(w.registry, design) == []
            arms.append({c.class_id: c.arm for c in enrolled_classes(w.registry, DOUBLE)})
        assert arms[0] == arms[1] == arms[2]
        assert sorted(set(arms[0].values())) == ["calcutab", "usual"]
        # The same rows enrolled at once (single validation) draw the same arms.
        settings, w = _fresh(tmp_path, "direct")
        design, _ = enrollment_design(w.registry, DOUBLE)
        direct = enroll_classes(w.registry, design,
                                read_classes(_rows(12), design, today=settings.today()),
                                actor="t")
        assert {c.class_id: c.arm for c in direct.enrolled} == arms[0]
    finally:
        dispose_engines()


def test_validations_in_several_calls_replay_from_the_log(tmp_path: Path) -> None:
    try:
        settings, w = _fresh(tmp_path, "calls")
        design, _ = enrollment_design(w.registry, DOUBLE)
        validate_as_academie(w.registry, design,
                             read_classes(_rows(9), design, today=settings.today()),
                             actor="academie:creteil:t")
        for batch in (["k04", "k00"], ["k07"], ["k01", "k08", "k02"]):
            validate_as_collectivite(w.registry, design, batch, schools=CRETEIL_SCHOOLS,
                                     actor="collectivite:t")
        assert len(enrolled_classes(w.registry, DOUBLE)) == 6
        assert verify_allocations(w.registry, design) == []
        # A class already validated, or unknown, validates nothing.
        with pytest.raises(EnrollmentError, match="not waiting for your validation"):
            validate_as_collectivite(w.registry, design, ["k03", "k04"],
                                     schools=CRETEIL_SCHOOLS, actor="collectivite:t")
        assert {c.class_id for c in pending_classes(w.registry, DOUBLE, waiting=True)} == {
            "k03", "k05", "k06"}
    finally:
        dispose_engines()


def test_double_validation_through_the_api(world: tuple[Settings, AcademieWorld]) -> None:
    settings, w = world
    api = FastAPI()
    published: list[int] = []
    install_enrollment_api(api, settings, engine=w.registry,
                           publish=lambda messages: published.append(len(messages)) or
                           len(messages))
    client = PortalClient(api)

    def call(method: str, who: str, url: str, headers: dict[str, str] | None = None,
             **kwargs: Any) -> Any:
        return client.request(method, f"/v1/experiments/{DOUBLE}{url}",
                              headers={"Authorization": f"Bearer {w.tokens[who]}",
                                       **(headers or {})}, **kwargs)

    try:
        sent = call("POST", "creteil", "/enrollments", content=excel_file("CE2"),
                    headers={"Content-Type": "text/csv"})
        assert sent.status_code == 200, sent.text
        body = sent.json()
        # The académie's criterion (REP+ only) and the bad UAI are refused.
        assert [c["class_id"] for c in body["validated"]] == ["cr-b"]
        assert body["waiting_for"] == "collectivite" and "enrolled" not in body
        assert published == []
        seen = call("GET", "dep93", "/validations").json()
        assert [c["class_id"] for c in seen["classes"]] == ["cr-b"]
        assert call("GET", "dep78", "/validations").json()["classes"] == []
        assert call("GET", "edtech", "/validations").status_code == 403
        assert call("POST", "creteil", "/validations",
                    json={"class_ids": ["cr-b"]}).status_code == 403
        assert call("POST", "dep78", "/validations",
                    json={"class_ids": ["cr-b"]}).status_code == 404
        done = call("POST", "dep93", "/validations", json={"class_ids": ["cr-b"]})
        assert done.status_code == 200, done.text
        assert [c["class_id"] for c in done.json()["enrolled"]] == ["cr-b"]
        assert published == [1]
        read = call("GET", "creteil", "/validations").json()
        assert read["classes"][0]["collectivite_validated"]["by"] == \
            "collectivite:departement-93:cd93"
        # After the close, the arms stay readable (no 409).
        for state in ("running", "analysing", "closed"):
            if state == "closed":  # the post-experiment step (issue 19)
                decide_and_acknowledge(w.registry, DOUBLE)
            transition_experiment(w.registry, DOUBLE, state)  # type: ignore[arg-type]
        arms = call("GET", "creteil", "/enrollments")
        assert arms.status_code == 200
        assert [c["class_id"] for c in arms.json()["classes"]] == ["cr-b"]
    finally:
        client.close()


def test_fluence_stays_enrolled_at_once(world: tuple[Settings, AcademieWorld]) -> None:
    _, w = world
    design, _ = enrollment_design(w.registry, SINGLE)
    assert not design.double_validation
    with pytest.raises(EnrollmentError, match="enrolls at the académie's validation"):
        validate_as_academie(w.registry, design, read_classes(_rows(0), design),
                             actor="t")


def test_register_needs_no_new_field(tmp_path: Path) -> None:
    # The registered fluence protocol is byte-identical and still registers.
    registry = registry_engine(Settings(state_dir=tmp_path))
    text = (ROOT / "protocols" / f"{SINGLE}.yaml").read_text(encoding="utf-8")
    try:
        assert register_protocol(registry, parse_protocol(text), text) is not None
        assert issue_token(registry, "collectivite", "region-11", "idf").startswith(
            "pv_collectivite_")
    finally:
        dispose_engines()


def test_a_collectivite_validates_inside_the_enrollment_window_only(tmp_path: Path) -> None:
    from datetime import date

    try:
        settings, w = _fresh(tmp_path, "window")
        design, _ = enrollment_design(w.registry, DOUBLE)
        validate_as_academie(w.registry, design,
                             read_classes(_rows(2), design, today=settings.today()),
                             actor="academie:creteil:t")
        assert design.closes == date(2027, 9, 17)
        with pytest.raises(EnrollmentError, match="enrollment closed on 2027-09-17") as caught:
            validate_as_collectivite(w.registry, design, ["k00"], schools=CRETEIL_SCHOOLS,
                                     actor="collectivite:t", today=date(2027, 9, 20))
        assert caught.value.field == "window"
        assert enrolled_classes(w.registry, DOUBLE) == []
        assert len(pending_classes(w.registry, DOUBLE, waiting=True)) == 2
    finally:
        dispose_engines()


def test_a_validated_class_is_neither_edited_nor_told_to_another_academie(
        tmp_path: Path) -> None:
    try:
        settings, w = _fresh(tmp_path, "again")
        design, _ = enrollment_design(w.registry, DOUBLE)
        validate_as_academie(w.registry, design,
                             read_classes(_rows(2), design, today=settings.today()),
                             actor="academie:creteil:t")
        changed = _rows(2).replace(",18,", ",19,")  # k00's head count
        again = validate_as_academie(w.registry, design,
                                     read_classes(changed, design, today=settings.today()),
                                     actor="academie:creteil:t")
        assert [c.class_id for c in again.already] == ["k01"]
        (refused,) = again.refusals
        assert (refused.code, refused.field, refused.value) == ("enrolled_differently",
                                                                 "pupils", "19")
        versailles = (f"class_id,school_uai,level,pupils,academie,education_priority\n"
                      f"k00,{uai('0780001')},CE2,20,versailles,REP\n")
        other = validate_as_academie(w.registry, design,
                                     read_classes(versailles, design, today=settings.today()),
                                     actor="academie:versailles:t")
        (refused,) = other.refusals
        assert refused.code == "validated_elsewhere"
        assert "creteil" not in refused.message_en and CRETEIL_SCHOOLS[0] not in str(refused)
    finally:
        dispose_engines()


@pytest.mark.parametrize("separator", [";", "\t", ","])
def test_the_separator_is_the_one_the_header_uses_most(separator: str) -> None:
    from experiments.enrollment.files import EnrollmentDesign

    design = EnrollmentDesign.from_protocol(load_protocol(ROOT / "protocols" / f"{SINGLE}.yaml"))
    # A comma file whose free-text column name holds a semicolon stays a comma file.
    header = ["Classe", "UAI", "Niveau", "Effectif", "Académie", "Éducation prioritaire",
              "Remarque (oui;non)" if separator == "," else "Remarque"]
    row = ["c1", CRETEIL_SCHOOLS[0], "CP", "24", "Créteil", "REP", "oui"]
    text = separator.join(f'"{h}"' if separator in h else h for h in header) + "\n"
    text += separator.join(row) + "\n"
    classes = read_classes(text, design)
    assert [r.class_id for r in classes.rows] == ["c1"], classes.refusals


def test_preuve_enroll_records_the_academie_validation_of_a_double_protocol(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREUVE_STATE_DIR", str(tmp_path / "cli-state"))
    monkeypatch.setenv("PREUVE_SIMULATED_NOW", "2027-09-01T10:00:00+02:00")
    path = tmp_path / "ce2.csv"
    path.write_bytes(excel_file("CE2"))
    try:
        result = CliRunner().invoke(app, [
            "enroll", DOUBLE, str(path), "--protocol", str(ROOT / "protocols" / f"{DOUBLE}.yaml"),
            "--no-publish", "--academie", "creteil"])
        engine = registry_engine(Settings(state_dir=tmp_path / "cli-state"))
        waiting = [c.class_id for c in pending_classes(engine, DOUBLE, waiting=True)]
        enrolled = enrolled_classes(engine, DOUBLE)
    finally:
        dispose_engines()
    assert result.exit_code == 1, result.output  # the bad row
    assert "3 classes validated for the académie, waiting for their collectivité's " \
           "validation" in result.output
    assert waiting == ["cr-a", "cr-b", "cr-d"] and enrolled == []
