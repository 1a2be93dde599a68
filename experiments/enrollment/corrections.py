"""Corrections of an enrollment before the intervention starts: pupil count, attributes.

An académie that wrote 240 pupils for 24, or « REP » for « REP+ », corrects the class
with a reason, as long as the intervention has not started. Each correction is a new
version of the class's enrollment (``enrollment_corrections``: the changed fields with
their old and new values, the reason, who and when) and an audit entry. The **arm and the
allocation log never change**: the class was randomised as it was first enrolled, and its
randomisation stratum stays the one it was drawn in (an analysis adjusting for strata
adjusts for the stratum of the draw). Once the intervention has started, a class can only
be withdrawn (:mod:`experiments.enrollment.withdrawal`), as before.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from experiments.access import reason_problem, record_audit
from experiments.database import RegistryBase
from experiments.enrollment.files import MAX_PUPILS, EnrollmentDesign
from experiments.enrollment.tables import ENROLLMENTS, enrolled_row
from experiments.errors import EnrollmentError
from experiments.protocol.vocabulary import ATTRIBUTE_VOCABULARIES, canonical_value

__all__ = ["Correction", "CorrectionRow", "correct_enrollment", "corrections_of"]

logger = logging.getLogger(__name__)


class CorrectionRow(RegistryBase):
    """A correction of an enrolled class (migration ``corrections_0001``)."""

    __tablename__ = "enrollment_corrections"
    __table_args__ = (sa.UniqueConstraint("experiment_id", "class_id", "version"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(sa.String(63), index=True)
    class_id: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[int] = mapped_column(sa.Integer)
    changes: Mapped[dict[str, list[object]]] = mapped_column(sa.JSON)
    reason: Mapped[str] = mapped_column(sa.String(512))
    actor: Mapped[str] = mapped_column(sa.String(256))
    corrected_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


@dataclass(frozen=True)
class Correction:
    """A correction made: the class's new version, what changed (old, new), its arm (kept)."""

    experiment_id: str
    class_id: str
    version: int
    changes: Mapping[str, tuple[object, object]]
    arm: str
    corrected_at: datetime


def correct_enrollment(
    engine: Engine,
    design: EnrollmentDesign,
    class_id: str,
    *,
    reason: str,
    actor: str,
    intervention_start: date,
    today: date,
    pupils: int | None = None,
    attributes: Mapping[str, str] | None = None,
    academie: str | None = None,
    now: datetime | None = None,
) -> Correction:
    """Correct the pupil count or the attributes of an enrolled class, before the
    intervention starts; the arm and the allocation are unchanged.

    Raises
    ------
    EnrollmentError
        No reason; the intervention has started (withdraw instead); the class is not
        enrolled by ``academie`` or is withdrawn; a value is invalid, outside the
        vocabulary, or would no longer meet a criterion of the population; nothing changes.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.enrollment import enroll_classes, read_classes
    >>> from experiments.protocol.language import load_protocol
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> design = EnrollmentDesign.from_protocol(load_protocol("protocols/fluence-cp-2027.yaml"))
    >>> text = "class_id,school_uai,level,pupils,academie,education_priority\\n"
    >>> text += "c1,0781234T,CP,42,versailles,REP\\n"
    >>> enrolled = enroll_classes(engine, design, read_classes(text, design), actor="doc")
    >>> fixed = correct_enrollment(engine, design, "c1", pupils=24, reason="typo: 24 pupils",
    ...                            actor="doc", intervention_start=date(2027, 9, 27),
    ...                            today=date(2027, 9, 10))
    >>> fixed.version, fixed.changes, fixed.arm == enrolled.enrolled[0].arm
    (1, {'pupils': (42, 24)}, True)
    """
    if not reason.strip():
        raise EnrollmentError("a correction needs a reason", field="reason")
    if problem := reason_problem(reason):
        raise EnrollmentError(problem, field="reason")
    if today >= intervention_start:
        raise EnrollmentError(
            f"the intervention started on {intervention_start.isoformat()}: an enrollment can "
            "no longer be corrected, only withdrawn (preuve enroll EXPERIMENT --withdraw CLASS) "
            f"/ l'intervention a commencé le {intervention_start.isoformat()} : une inscription "
            "ne se corrige plus, elle se retire", field="class_id")
    if design.unit == "learner":
        raise EnrollmentError("a learner-randomised experiment enrolls pupils, not head "
                              "counts: withdraw a pupil enrolled by mistake", field="class_id")
    wanted = _checked_values(design, pupils, attributes or {})
    now = now or datetime.now(UTC)
    with Session(engine) as session, session.begin():
        row = enrolled_row(session, ENROLLMENTS, design.experiment_id, "class_id", class_id,
                           academie=academie)
        if row is None:
            raise EnrollmentError(
                f"class {class_id} is not enrolled in {design.experiment_id} by your académie",
                field="class_id")
        if row["status"] == "withdrawn":
            raise EnrollmentError(f"class {class_id} is withdrawn: it cannot be corrected",
                                  field="status")
        current: dict[str, object] = {"pupils": row["pupils"],
                                      **{k: row["attributes"].get(k) for k in wanted
                                         if k != "pupils"}}
        changes = {k: (current[k], v) for k, v in wanted.items() if current[k] != v}
        if not changes:
            raise EnrollmentError(f"class {class_id}: nothing to correct (the values given "
                                  "are the enrolled ones)", field="class_id")
        version = 1 + (session.scalar(
            sa.select(sa.func.max(CorrectionRow.version)).where(
                CorrectionRow.experiment_id == design.experiment_id,
                CorrectionRow.class_id == class_id)) or 0)
        new_attributes = {**row["attributes"],
                          **{k: v for k, v in wanted.items() if k != "pupils"}}
        session.execute(sa.update(ENROLLMENTS).where(ENROLLMENTS.c.id == row["id"]).values(
            pupils=wanted.get("pupils", row["pupils"]), attributes=new_attributes))
        listed = {k: [old, new] for k, (old, new) in changes.items()}
        session.add(CorrectionRow(experiment_id=design.experiment_id, class_id=class_id,
                                  version=version, changes=listed, reason=reason.strip(),
                                  actor=actor, corrected_at=now))
        record_audit(session, actor, "enrollment.correct", f"{design.experiment_id}/{class_id}",
                     {"version": version, "changes": listed, "reason": reason.strip()})
    logger.info("experiment %s: class %s corrected (version %d)", design.experiment_id,
                class_id, version)
    return Correction(design.experiment_id, class_id, version, changes, row["arm"], now)


def _checked_values(design: EnrollmentDesign, pupils: int | None,
                    attributes: Mapping[str, str]) -> dict[str, object]:
    """The corrected values, checked as enrollment checks them."""
    wanted: dict[str, object] = {}
    if pupils is not None:
        if not 1 <= pupils <= MAX_PUPILS:
            raise EnrollmentError(f"number of pupils {pupils} is invalid: expecting an integer "
                                  f"from 1 to {MAX_PUPILS}", field="pupils")
        wanted["pupils"] = pupils
    for name, written in attributes.items():
        if name not in design.attributes:
            raise EnrollmentError(
                f"'{name}' is not an attribute of this experiment's units (they carry: "
                f"{', '.join(design.attributes) or 'none'})", field=name)
        value = canonical_value(name, written.strip())
        if value is None:
            raise EnrollmentError(
                f"'{written}' is not a value of '{name}': expecting one of "
                f"{', '.join(ATTRIBUTE_VOCABULARIES[name])}", field=name)
        allowed = design.criteria.get(name)
        if allowed is not None and value not in allowed:
            raise EnrollmentError(
                f"'{value}' would no longer meet the criterion '{name}' ({', '.join(allowed)}):"
                " a class outside the population is withdrawn, not corrected", field=name)
        wanted[name] = value
    if not wanted:
        raise EnrollmentError("give the corrected pupils or attributes", field="class_id")
    return wanted


def corrections_of(engine: Engine, experiment_id: str, class_id: str) -> list[CorrectionRow]:
    """The corrections of a class, in version order."""
    with Session(engine) as session:
        return list(session.scalars(
            sa.select(CorrectionRow).where(CorrectionRow.experiment_id == experiment_id,
                                           CorrectionRow.class_id == class_id)
            .order_by(CorrectionRow.version)))
