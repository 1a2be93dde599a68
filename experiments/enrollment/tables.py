"""The enrollment registry's tables: designs, classes, pupils, allocations, withdrawals.

Classes (``enrollments``) and pupils (``learner_enrollments``) are the two tables of one
service: a class-randomised protocol fills the first; a pupil-randomised one fills both
(each class with the arm :data:`MIXED_ARM`, so that the stream worker routes its events,
and each pupil, by per-experiment pseudonym, with its own arm). Every draw is in the
append-only allocation log. The lookups shared by enrolling and withdrawing live here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from experiments.database import RegistryBase

if TYPE_CHECKING:
    pass

__all__ = [
    "AllocationRow",
    "EnrollmentDesignRow",
    "EnrollmentRow",
    "LearnerEnrollmentRow",
    "MIXED_ARM",
    "WithdrawalRow",
]


# --- registry tables (migration: migrations/registry/versions/*_enrollment.py) ---------


class EnrollmentDesignRow(RegistryBase):
    """One row per experiment that has enrollments: what its assignment depends on.

    Updating this row is also the per-experiment lock of :func:`enroll_classes`.
    """

    __tablename__ = "enrollment_designs"

    experiment_id: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    resource_id: Mapped[str] = mapped_column(sa.String(63))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    design: Mapped[dict[str, object]] = mapped_column(sa.JSON)
    first_enrolled_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    last_enrolled_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class EnrollmentRow(RegistryBase):
    """An enrolled class. ``arm`` is written once, at enrollment, and never changes."""

    __tablename__ = "enrollments"
    __table_args__ = (sa.UniqueConstraint("experiment_id", "class_id"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(sa.String(63))
    class_id: Mapped[str] = mapped_column(sa.String(128), index=True)
    school_uai: Mapped[str] = mapped_column(sa.String(8))
    academie: Mapped[str] = mapped_column(sa.String(32))
    level: Mapped[str] = mapped_column(sa.String(8))
    pupils: Mapped[int] = mapped_column(sa.Integer)
    attributes: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    stratum: Mapped[str] = mapped_column(sa.String(512))
    unit_id: Mapped[str] = mapped_column(sa.String(128))
    arm: Mapped[str] = mapped_column(sa.String(63))
    status: Mapped[str] = mapped_column(sa.String(16))
    enrolled_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    withdrawn_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))
    published_status: Mapped[str | None] = mapped_column(sa.String(16))


class AllocationRow(RegistryBase):
    """The append-only allocation log (database triggers refuse UPDATE and DELETE)."""

    __tablename__ = "allocation_log"

    experiment_id: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    sequence: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    class_id: Mapped[str] = mapped_column(sa.String(128))
    unit_id: Mapped[str] = mapped_column(sa.String(128))
    stratum: Mapped[str] = mapped_column(sa.String(512))
    block: Mapped[int] = mapped_column(sa.Integer)
    position: Mapped[int] = mapped_column(sa.Integer)
    draw: Mapped[float] = mapped_column(sa.Float(precision=53))
    arm: Mapped[str] = mapped_column(sa.String(63))
    allocated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class WithdrawalRow(RegistryBase):
    """A withdrawal of a class or of one pupil, and what happens to collected data."""

    __tablename__ = "withdrawals"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(sa.String(63), index=True)
    class_id: Mapped[str] = mapped_column(sa.String(128))
    learner_id: Mapped[str | None] = mapped_column(sa.String(128))
    scope: Mapped[str] = mapped_column(sa.String(8))
    reason: Mapped[str] = mapped_column(sa.String(512))
    data_policy: Mapped[str] = mapped_column(sa.String(8))
    withdrawn_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(sa.String(256))


ENROLLMENTS = cast(sa.Table, EnrollmentRow.__table__)
ALLOCATIONS = cast(sa.Table, AllocationRow.__table__)
DESIGNS = cast(sa.Table, EnrollmentDesignRow.__table__)


def in_chunks(items: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def enrolled_rows(
    session: Session, table: sa.Table, key: str, experiment_id: str
) -> dict[str, Mapping[Any, Any]]:
    """The rows of ``experiment_id`` in ``table`` (``enrollments``, or the pupils'
    ``learner_enrollments``), by their column ``key`` (shared with
    :mod:`experiments.enrollment.transaction`)."""
    return {
        row[key]: row
        for row in session.execute(
            sa.select(table).where(table.c.experiment_id == experiment_id)
        ).mappings()
    }


def enrolled_row(
    session: Session,
    table: sa.Table,
    experiment_id: str,
    key: str,
    value: str,
    *,
    academie: str | None,
) -> Mapping[Any, Any] | None:
    """The row of ``experiment_id`` in ``table`` whose column ``key`` is ``value``; None
    when there is none, or when it is not ``academie``'s (None: any académie's). Both give
    the same answer, so nobody can probe another académie's enrollments (shared with
    :func:`experiments.enrollment.withdrawal.withdraw_learner`)."""
    row = session.execute(
        sa.select(table).where(table.c.experiment_id == experiment_id, table.c[key] == value)
    ).mappings().first()
    if row is None or (academie is not None and row["academie"] != academie):
        return None
    return row
#: Arm of a class whose pupils are randomised one by one (both arms in one class).
MIXED_ARM = "*"


# --- registry table (migration: migrations/registry/versions/0102_learner_enrollments.py)


class LearnerEnrollmentRow(RegistryBase):
    """An enrolled pupil, by per-experiment pseudonym; ``arm`` never changes."""

    __tablename__ = "learner_enrollments"
    __table_args__ = (sa.UniqueConstraint("experiment_id", "learner_key"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(sa.String(63))
    learner_key: Mapped[str] = mapped_column(sa.String(64))
    unit_id: Mapped[str] = mapped_column(sa.String(128))
    class_id: Mapped[str] = mapped_column(sa.String(128))
    school_uai: Mapped[str] = mapped_column(sa.String(8))
    academie: Mapped[str] = mapped_column(sa.String(32))
    level: Mapped[str] = mapped_column(sa.String(8))
    attributes: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    stratum: Mapped[str] = mapped_column(sa.String(512))
    arm: Mapped[str] = mapped_column(sa.String(63))
    status: Mapped[str] = mapped_column(sa.String(16))
    enrolled_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    withdrawn_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


LEARNERS = cast(sa.Table, LearnerEnrollmentRow.__table__)
