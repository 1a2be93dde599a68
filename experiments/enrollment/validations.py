"""Double validation: a class counts as enrolled once its académie and the collectivité that
equips its school have both validated it.

A protocol declares it with ``enrollment: {validations: [academie, collectivite]}``
(``protocols/tablettes-ce2-2027.yaml``); without it (``protocols/fluence-cp-2027.yaml``),
the académie's file enrolls and randomises at once, as before.

1. **The académie validates** its file (portal, ``POST …/enrollments``, ``preuve
   enroll``): the rows are checked exactly as for an enrollment (the protocol's population,
   the académie's own criteria) and each valid class is recorded in
   ``enrollment_validations`` with who validated it and when, and a sequence number: the
   order of the file, file after file. Nothing is randomised, nothing is published.
2. **The collectivité validates** classes of the schools it equips
   (``settings.collectivites``; portal ``/validations/ID``, ``POST …/validations``). In
   the same transaction, the classes it validates are enrolled and randomised by the one
   enrollment code path (:func:`experiments.enrollment.transaction.enroll_classes`' rows,
   the same randomiser and allocation log), and the validation records who and when.

**Reproducibility.** A class is drawn when its second validation is recorded, by the
protocol's seeded stratified permuted blocks, at the next position of its stratum's
sequence; the allocation log keeps that position, the block and the draw, so that
:func:`experiments.enrollment.assignments.verify_allocations` re-derives every arm from
the seed and the log. The draw order is fixed by the data, not by clicks: the classes
validated in one call are drawn in the order the académie validated them (its sequence
number), whatever the order the collectivité ticked or listed them, so the same
validations give the same arms. What does change an arm, as for single validation, is
which classes completed their validations before it (the order of the calls); that order
is the allocation log's, and nobody can choose an arm: there is no parameter for it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from experiments.access import record_audit
from experiments.database import RegistryBase
from experiments.enrollment.files import ClassesFile, ClassRow, EnrollmentDesign, Refusal
from experiments.enrollment.publishing import Publish, publish_after
from experiments.enrollment.tables import ENROLLMENTS, in_utc
from experiments.enrollment.transaction import (
    EnrollmentOutcome,
    _enroll_class_rows,
    in_one_transaction,
)
from experiments.errors import EnrollmentError

__all__ = [
    "PendingClass",
    "ValidationOutcome",
    "ValidationRow",
    "pending_classes",
    "validate_as_academie",
    "validate_as_collectivite",
]

logger = logging.getLogger(__name__)


class ValidationRow(RegistryBase):
    """A class validated by its académie, waiting for (or enrolled after) its collectivité's
    validation (migration ``validations_0001``)."""

    __tablename__ = "enrollment_validations"
    __table_args__ = (sa.UniqueConstraint("experiment_id", "class_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(sa.String(63), index=True)
    class_id: Mapped[str] = mapped_column(sa.String(128))
    sequence: Mapped[int] = mapped_column(sa.Integer)
    school_uai: Mapped[str] = mapped_column(sa.String(8))
    academie: Mapped[str] = mapped_column(sa.String(32))
    level: Mapped[str] = mapped_column(sa.String(8))
    pupils: Mapped[int] = mapped_column(sa.Integer)
    attributes: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    stratum: Mapped[str] = mapped_column(sa.String(512))
    unit_id: Mapped[str] = mapped_column(sa.String(128))
    academie_by: Mapped[str] = mapped_column(sa.String(256))
    academie_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    collectivite_by: Mapped[str | None] = mapped_column(sa.String(256))
    collectivite_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


VALIDATIONS = cast(sa.Table, ValidationRow.__table__)


@dataclass(frozen=True)
class PendingClass:
    """A class validated by its académie; ``collectivite_at`` None while it waits."""

    class_id: str
    school_uai: str
    academie: str
    level: str
    pupils: int
    academie_by: str
    academie_at: datetime
    collectivite_by: str | None
    collectivite_at: datetime | None


@dataclass
class ValidationOutcome:
    """What the académie's validation of a file did."""

    experiment_id: str
    validated: list[PendingClass] = field(default_factory=list)
    already: list[PendingClass] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)


def _pending(row: Mapping[Any, Any]) -> PendingClass:
    return PendingClass(
        class_id=str(row["class_id"]), school_uai=str(row["school_uai"]),
        academie=str(row["academie"]), level=str(row["level"]),
        pupils=int(cast(int, row["pupils"])), academie_by=str(row["academie_by"]),
        academie_at=in_utc(cast(datetime, row["academie_at"])),
        collectivite_by=cast("str | None", row["collectivite_by"]),
        collectivite_at=None if row["collectivite_at"] is None
        else in_utc(cast(datetime, row["collectivite_at"])),
    )


def validate_as_academie(engine: Engine, design: EnrollmentDesign, classes: ClassesFile, *,
                         actor: str, now: datetime | None = None,
                         dry_run: bool = False) -> ValidationOutcome:
    """Record the académie's validation of each valid row of ``classes`` (one transaction).

    A class validated before with the same values is reported ``already``; with other
    values, or a class already enrolled elsewhere, it is refused. ``dry_run`` checks
    everything and writes nothing (the portal's preview).

    Raises
    ------
    EnrollmentError
        The protocol does not ask for a collectivité's validation.
    """
    from experiments.enrollment.files import refusal

    if not design.double_validation:
        raise EnrollmentError(f"experiment {design.experiment_id} enrolls at the académie's "
                              "validation: enroll the file", field="enrollment.validations")
    now = now or datetime.now(UTC)
    outcome = ValidationOutcome(design.experiment_id, refusals=list(classes.refusals))

    class _DryRun(Exception):
        pass

    def write(session: Session) -> None:
        t = VALIDATIONS
        where = t.c.experiment_id == design.experiment_id
        known: dict[str, Mapping[Any, Any]] = {
            r["class_id"]: r for r in session.execute(sa.select(t).where(where)).mappings()}
        enrolled = {
            class_id: experiment for class_id, experiment in session.execute(
                sa.select(ENROLLMENTS.c.class_id, ENROLLMENTS.c.experiment_id).where(
                    ENROLLMENTS.c.class_id.in_([r.class_id for r in classes.rows]),
                    ENROLLMENTS.c.status == "enrolled"))}
        last = session.execute(sa.select(sa.func.max(t.c.sequence)).where(where)).scalar()
        sequence = int(last or 0)
        for row in classes.rows:
            old = known.get(row.class_id)
            if old is not None and old["academie"] != row.academie:
                # Another académie's validated class: nothing of it is told.
                outcome.refusals.append(refusal(
                    "validated_elsewhere", row.line, row.class_id, "class_id", row.class_id))
                continue
            if old is not None:
                new_values = {"school_uai": row.school_uai, "level": row.level,
                              "pupils": row.pupils, "attributes": dict(row.attributes)}
                changed = next((k for k, v in new_values.items()
                                if (dict(old[k]) if k == "attributes" else old[k]) != v), None)
                if changed is None:
                    outcome.already.append(_pending(old))
                else:
                    # The académie's own class: its stored value may be shown.
                    outcome.refusals.append(refusal(
                        "enrolled_differently", row.line, row.class_id, changed,
                        str(new_values[changed]), stored=old[changed]))
                continue
            other = enrolled.get(row.class_id)
            if other is not None and other != design.experiment_id:
                outcome.refusals.append(refusal(
                    "enrolled_elsewhere", row.line, row.class_id, "class_id", row.class_id,
                    other=other))
                continue
            sequence += 1
            record = {
                "experiment_id": design.experiment_id, "class_id": row.class_id,
                "sequence": sequence, "school_uai": row.school_uai, "academie": row.academie,
                "level": row.level, "pupils": row.pupils, "attributes": dict(row.attributes),
                "stratum": row.stratum, "unit_id": row.cluster, "academie_by": actor,
                "academie_at": now, "collectivite_by": None, "collectivite_at": None,
            }
            session.execute(sa.insert(t).values(**record))
            known[row.class_id] = record
            outcome.validated.append(_pending(record))
        record_audit(session, actor, "enrollment.validate_academie", design.experiment_id, {
            "file": classes.path, "validated": len(outcome.validated),
            "already": len(outcome.already), "refused": len(outcome.refusals)})
        if dry_run:
            raise _DryRun()

    try:
        in_one_transaction(engine, design.experiment_id, write)
    except _DryRun:
        pass
    outcome.refusals.sort(key=lambda r: r.line)
    return outcome


def pending_classes(engine: Engine, experiment_id: str, *, academie: str | None = None,
                    schools: Collection[str] | None = None,
                    waiting: bool = False) -> list[PendingClass]:
    """The académie-validated classes of ``experiment_id`` (of one académie, or of the
    ``schools`` a collectivité equips), in the académie's order; ``waiting``: only those
    still waiting for their collectivité."""
    t = VALIDATIONS
    query = sa.select(t).where(t.c.experiment_id == experiment_id).order_by(t.c.sequence)
    if academie is not None:
        query = query.where(t.c.academie == academie)
    if schools is not None:
        query = query.where(t.c.school_uai.in_(list(schools)))
    if waiting:
        query = query.where(t.c.collectivite_at.is_(None))
    with Session(engine) as session:
        return [_pending(r) for r in session.execute(query).mappings()]


def validate_as_collectivite(
    engine: Engine, design: EnrollmentDesign, class_ids: Sequence[str], *,
    schools: Collection[str], actor: str, publish: Publish | None = None,
    now: datetime | None = None, today: date | None = None,
) -> EnrollmentOutcome:
    """Record the collectivité's validation of ``class_ids`` (classes of its ``schools``
    that the académie validated) and enroll and randomise them, in one transaction.

    The classes are drawn in the académie's order (see the module's docstring), so the
    arms do not depend on the order of ``class_ids``.

    ``today`` (the settings' school date) must be inside the enrollment window, as for
    the académie's validation: a class is not randomised after enrollment has closed.

    Raises
    ------
    EnrollmentError
        A class id that is not waiting for this collectivité's validation (not validated
        by its académie, of another collectivité's school, or validated already): nothing
        is validated (``field="class_id"``); the window is not open (``field="window"``).
    """
    from experiments.enrollment.files import closed_window

    now = now or datetime.now(UTC)
    closed = closed_window(design, today) if today is not None else None
    if closed is not None:
        raise EnrollmentError(f"{closed.message_en} / {closed.message_fr}", field="window")
    outcome = EnrollmentOutcome(design.experiment_id)
    wanted = set(class_ids)

    def write(session: Session) -> None:
        t = VALIDATIONS
        rows = list(session.execute(
            sa.select(t).where(t.c.experiment_id == design.experiment_id,
                               t.c.class_id.in_(sorted(wanted)),
                               t.c.school_uai.in_(list(schools)),
                               t.c.collectivite_at.is_(None))
            .order_by(t.c.sequence)).mappings())
        missing = sorted(wanted - {r["class_id"] for r in rows})
        if missing:
            # Another collectivité's class answers like an unknown one (no probing).
            raise EnrollmentError(
                f"class {missing[0]} is not waiting for your validation in "
                f"{design.experiment_id}; nothing was validated", field="class_id")
        session.execute(sa.update(t).where(
            t.c.experiment_id == design.experiment_id,
            t.c.class_id.in_(sorted(wanted))).values(collectivite_by=actor,
                                                     collectivite_at=now))
        record_audit(session, actor, "enrollment.validate_collectivite",
                     design.experiment_id, {"classes": sorted(wanted)})
        classes = ClassesFile(f"validation:{actor}", [
            ClassRow(line=int(r["sequence"]), class_id=r["class_id"],
                     school_uai=r["school_uai"], academie=r["academie"], level=r["level"],
                     pupils=int(r["pupils"]), attributes=dict(r["attributes"]),
                     stratum=r["stratum"], cluster=r["unit_id"])
            for r in rows], [])
        _enroll_class_rows(session, design, classes, outcome, now=now, actor=actor)

    in_one_transaction(engine, design.experiment_id, write)
    logger.info("experiment %s: a collectivité validated %d classes, %d enrolled",
                design.experiment_id, len(wanted), len(outcome.enrolled))
    publish_after(engine, design.experiment_id, publish, outcome)
    return outcome
