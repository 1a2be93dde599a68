"""Corrections of an enrollment: before the intervention, versioned and audited, the arm
kept; after, only withdrawal (the issue: a wrong pupil count could only be withdrawn)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from experiments.access import AuditEntry
from experiments.cli.app import app
from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.corrections import correct_enrollment, corrections_of
from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.enrollment.tables import ENROLLMENTS
from experiments.enrollment.transaction import enroll_classes
from experiments.errors import EnrollmentError
from experiments.protocol.language import load_protocol
from experiments.settings import Settings

PROTOCOL = Path(__file__).resolve().parents[2] / "protocols" / "fluence-cp-2027.yaml"
HEADER = "class_id,school_uai,level,pupils,academie,education_priority\n"
START = date(2027, 9, 27)   # fluence-cp-2027: intervention from 27 September 2027
BEFORE = date(2027, 9, 10)


@pytest.fixture
def design() -> EnrollmentDesign:
    return EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))


@pytest.fixture
def engine(tmp_path: Path, design: EnrollmentDesign) -> Iterator[Engine]:
    engine = registry_engine(Settings(state_dir=tmp_path / "state"))
    rows = HEADER + "c1,0781234T,CP,42,versailles,REP\nc2,0781234T,CP,20,versailles,REP\n"
    enroll_classes(engine, design, read_classes(rows, design), actor="t")
    yield engine
    dispose_engines()


def _row(engine: Engine, class_id: str) -> dict[str, object]:
    with engine.connect() as connection:
        row = connection.execute(sa.select(ENROLLMENTS).where(
            ENROLLMENTS.c.class_id == class_id)).mappings().one()
    return dict(row)


def _allocations(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(sa.text(
            "SELECT class_id, stratum, arm, draw FROM allocation_log ORDER BY sequence"))]


def test_a_correction_before_the_intervention_is_versioned_audited_and_keeps_the_arm(
    engine: Engine, design: EnrollmentDesign
) -> None:
    before, allocations = _row(engine, "c1"), _allocations(engine)
    first = correct_enrollment(engine, design, "c1", pupils=24, reason="typo: 24, not 42",
                               actor="academie:versailles:t", intervention_start=START,
                               today=BEFORE, academie="versailles")
    second = correct_enrollment(engine, design, "c1", attributes={"education_priority": "rep+"},
                                reason="the school joined REP+", actor="academie:versailles:t",
                                intervention_start=START, today=BEFORE)
    after = _row(engine, "c1")
    assert (first.version, second.version) == (1, 2)
    assert dict(first.changes) == {"pupils": (42, 24)}
    assert dict(second.changes) == {"education_priority": ("REP", "REP+")}
    assert after["pupils"] == 24 and after["attributes"] == {"education_priority": "REP+"}
    assert (after["arm"], after["stratum"]) == (before["arm"], before["stratum"])
    assert _allocations(engine) == allocations  # the allocation log is untouched
    assert [(c.version, c.reason) for c in corrections_of(engine, design.experiment_id, "c1")] \
        == [(1, "typo: 24, not 42"), (2, "the school joined REP+")]
    with Session(engine) as session:
        audit = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "enrollment.correct").order_by(AuditEntry.id)).all()
    assert [(a.subject, (a.detail or {})["version"]) for a in audit] == [
        ("fluence-cp-2027/c1", 1), ("fluence-cp-2027/c1", 2)]


def test_after_the_intervention_starts_only_withdrawal(
    engine: Engine, design: EnrollmentDesign
) -> None:
    with pytest.raises(EnrollmentError, match="only withdrawn"):
        correct_enrollment(engine, design, "c1", pupils=24, reason="typo", actor="t",
                           intervention_start=START, today=START)
    assert _row(engine, "c1")["pupils"] == 42


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"pupils": 24, "reason": " "}, "needs a reason"),
    ({"pupils": 240, "reason": "typo"}, "expecting an integer from 1 to 60"),
    ({"attributes": {"education_priority": "REP++"}, "reason": "x"}, "not a value of"),
    ({"attributes": {"education_priority": "hors EP"}, "reason": "x"}, "withdrawn, not corrected"),
    ({"attributes": {"sector": "public"}, "reason": "x"}, "not an attribute of"),
    ({"pupils": 42, "reason": "x"}, "nothing to correct"),
])
def test_invalid_corrections_are_refused(
    engine: Engine, design: EnrollmentDesign, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(EnrollmentError, match=match):
        correct_enrollment(engine, design, "c1", actor="t", intervention_start=START,
                           today=BEFORE, **kwargs)  # type: ignore[arg-type]


def test_another_academie_s_class_is_answered_like_a_missing_one(
    engine: Engine, design: EnrollmentDesign
) -> None:
    with pytest.raises(EnrollmentError, match="not enrolled in fluence-cp-2027 by your"):
        correct_enrollment(engine, design, "c1", pupils=24, reason="x", actor="t",
                           intervention_start=START, today=BEFORE, academie="creteil")


def test_the_cli_corrects_before_and_refuses_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREUVE_STATE_DIR", str(tmp_path / "cli"))
    classes = tmp_path / "classes.csv"
    classes.write_text(HEADER + "c1,0781234T,CP,42,versailles,REP\n", encoding="utf-8")
    runner = CliRunner()
    monkeypatch.setenv("PREUVE_SIMULATED_NOW", "2027-09-10T09:00:00+02:00")
    enrolled = runner.invoke(app, ["enroll", "fluence-cp-2027", str(classes), "--protocol",
                                   str(PROTOCOL), "--no-publish"])
    assert enrolled.exit_code == 0, enrolled.output
    fixed = runner.invoke(app, ["enroll", "fluence-cp-2027", "--correct", "c1", "--pupils", "24",
                                "--set", "education_priority=REP+", "--reason", "typo",
                                "--protocol", str(PROTOCOL)])
    assert fixed.exit_code == 0, fixed.output
    assert "class c1 corrected (version 1; pupils: 42 -> 24, education_priority: REP -> REP+)" \
        in fixed.output
    monkeypatch.setenv("PREUVE_SIMULATED_NOW", "2027-09-28T09:00:00+02:00")
    late = runner.invoke(app, ["enroll", "fluence-cp-2027", "--correct", "c1", "--pupils", "23",
                               "--reason", "typo", "--protocol", str(PROTOCOL)])
    assert late.exit_code == 2 and "only withdrawn" in late.output, late.output
    dispose_engines()
