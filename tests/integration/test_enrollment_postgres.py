"""Enrollment on PostgreSQL (the production registry): the same behaviour as on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.assignments import enrolled_classes, verify_allocations
from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.enrollment.publishing import pending_messages, publish_pending
from experiments.enrollment.transaction import enroll_classes
from experiments.enrollment.withdrawal import withdraw
from experiments.protocol.language import load_protocol
from experiments.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = REPO / "protocols" / "fluence-cp-2027.yaml"
CLASSES = REPO / "tests" / "data" / "enrollment" / "classes.csv"

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(postgres_url: str, tmp_path: Path) -> Iterator[Engine]:
    yield registry_engine(Settings(state_dir=tmp_path, database_url=postgres_url))
    dispose_engines()


def test_enroll_withdraw_verify_and_guards_on_postgresql(engine: Engine) -> None:
    design = EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))
    first = enroll_classes(engine, design, read_classes(CLASSES, design), actor="t")
    again = enroll_classes(engine, design, read_classes(CLASSES, design), actor="t")
    assert len(first.enrolled) == 6 and len(again.already) == 6 and again.enrolled == []
    assert [r.code for r in first.refusals] == [
        "level_outside_population", "academie_outside_population", "criterion_not_met",
        "duplicate_class", "bad_pupils", "malformed_row",
    ]
    arm = first.enrolled[0].arm
    withdraw(engine, design, "c-001", reason="moved", actor="t")
    (c1,) = [c for c in enrolled_classes(engine, design.experiment_id) if c.class_id == "c-001"]
    assert (c1.status, c1.arm) == ("withdrawn", arm)
    assert verify_allocations(engine, design) == []
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as c:
        c.execute(sa.text("DELETE FROM allocation_log"))
    with pytest.raises(sa.exc.DatabaseError, match="cannot change"), engine.begin() as c:
        c.execute(sa.text("UPDATE enrollments SET arm = 'x'"))
    messages = pending_messages(engine, design.experiment_id)
    assert len(messages) == 6 and all(m.at.tzinfo is not None for m in messages)
    assert publish_pending(engine, design.experiment_id, lambda ms: len(ms)).published == 6
    assert pending_messages(engine, design.experiment_id) == []


def test_pupils_of_a_learner_design_on_postgresql(engine: Engine) -> None:
    from experiments.enrollment.assignments import learner_arms, verify_learner_allocations
    from experiments.enrollment.files import read_pupils
    from experiments.enrollment.tables import MIXED_ARM
    from experiments.enrollment.transaction import enroll_learners
    from experiments.enrollment.withdrawal import withdraw_learner

    design = EnrollmentDesign.from_protocol(
        load_protocol(REPO / "tests" / "data" / "enrollment" / "learner-protocol.yaml"))
    pupils = read_pupils(REPO / "tests" / "data" / "enrollment" / "pupils.csv", design)
    raw = [row.learner_id for row in pupils.rows]
    first = enroll_learners(engine, design, pupils, key=b"pg-key", actor="t")
    again = enroll_learners(engine, design, pupils, key=b"pg-key", actor="t")
    assert len(first.enrolled) == 12 and len(again.already) == 12 and again.enrolled == []
    assert {c.arm for c in enrolled_classes(engine, design.experiment_id)} == {MIXED_ARM}
    assert sorted(c.pupils for c in enrolled_classes(engine, design.experiment_id)) == [3, 4, 5]
    withdraw_learner(engine, design, b"pg-key", raw[0], reason="moved", actor="t")
    assert len(learner_arms(engine, design.experiment_id)) == 12
    assert verify_learner_allocations(engine, design) == []
    with pytest.raises(sa.exc.DatabaseError, match="cannot change"), engine.begin() as c:
        c.execute(sa.text("UPDATE learner_enrollments SET arm = 'x'"))
    with engine.connect() as c:
        dump = " ".join(str(tuple(row)) for table in sa.inspect(engine).get_table_names()
                        for row in c.execute(sa.text(f'SELECT * FROM "{table}"')))
    assert dump and not [learner_id for learner_id in raw if learner_id in dump]
