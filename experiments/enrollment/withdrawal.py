"""Withdrawals of classes and pupils: they keep their arm (intention to treat).

A class or a pupil withdrawn is recorded with its reason and data policy; a pupil's
objection (policy ``remove``) removes their data at once (:mod:`experiments.privacy.retention`).
Another académie's class is answered like a missing one (no probing).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from experiments.access import reason_problem, record_audit
from experiments.enrollment.files import (
    EnrollmentDesign,
)
from experiments.enrollment.tables import (
    ENROLLMENTS,
    LEARNERS,
    WithdrawalRow,
    enrolled_row,
    in_utc,
)
from experiments.errors import EnrollmentError

__all__ = [
    "Withdrawal",
    "record_withdrawal",
    "registry_pseudonym_key",
    "withdraw",
    "withdraw_learner",
    "withdrawn_pupil_keys",
]

logger = logging.getLogger(__name__)



def _mark_withdrawn(
    session: Session, table: sa.Table, row: Mapping[Any, Any], who: str, now: datetime
) -> None:
    """Mark an enrolled class or pupil withdrawn; ``who`` names it if it already is."""
    if row["status"] == "withdrawn":
        raise EnrollmentError(
            f"{who} was already withdrawn on {row['withdrawn_at']:%Y-%m-%d}", field="status"
        )
    session.execute(
        sa.update(table).where(table.c.id == row["id"]).values(status="withdrawn", withdrawn_at=now)
    )



# --- withdrawing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Withdrawal:
    """A recorded withdrawal; ``data_policy`` says what happens to data collected.

    ``learner_id`` is the pupil's per-experiment pseudonym (what the registry stores),
    never the id the académie gave.
    """

    experiment_id: str
    class_id: str
    learner_id: str | None
    arm: str
    data_policy: str
    withdrawn_at: datetime


def registry_pseudonym_key(engine: Engine) -> bytes:
    """The pseudonymisation key of the deployment that owns the registry ``engine``.

    For callers that hold a registry engine but not the :class:`Settings` it was built
    from: the settings of the environment (``PREUVE_PSEUDONYM_KEY``, ``PREUVE_STATE_DIR``),
    with, for a SQLite registry, its own directory as the state directory (where
    ``pseudonym.key`` lives). Callers that hold the settings pass
    ``load_pseudonym_key(settings)`` instead, which is exact.

    Examples
    --------
    >>> from experiments.database import registry_engine
    >>> from ingest.pseudonym import load_pseudonym_key
    >>> settings = fresh_settings()
    >>> registry_pseudonym_key(registry_engine(settings)) == load_pseudonym_key(settings)
    True
    """
    from experiments.settings import Settings
    from ingest.pseudonym import load_pseudonym_key

    if engine.dialect.name == "sqlite" and engine.url.database:
        return load_pseudonym_key(Settings(state_dir=Path(engine.url.database).parent))
    return load_pseudonym_key(Settings())


def withdrawn_pupil_keys(engine: Engine, experiment_id: str, *,
                         data_policy: str | None = None,
                         as_of: datetime | None = None) -> set[str]:
    """Pseudonyms of the pupils withdrawn from an experiment (all of them, or those of one
    ``data_policy``), as the withdrawals table stores them: :func:`withdraw` records the
    pseudonym, never the id as given; rows written before that were re-keyed by migration
    enrollment_0004.

    Examples
    --------
    >>> engine = fresh_registry()
    >>> withdrawn_pupil_keys(engine, "x", data_policy="remove")
    set()
    """
    query = sa.select(WithdrawalRow.learner_id).where(
        WithdrawalRow.experiment_id == experiment_id, WithdrawalRow.scope == "pupil",
        WithdrawalRow.learner_id.is_not(None))
    if data_policy is not None:
        query = query.where(WithdrawalRow.data_policy == data_policy)
    if as_of is not None:  # withdrawals recorded by then (a cut-off's view)
        query = query.where(WithdrawalRow.withdrawn_at <= in_utc(as_of))
    with engine.connect() as connection:
        return {str(key) for key in connection.scalars(query)}


def record_withdrawal(
    session: Session,
    design: EnrollmentDesign,
    class_id: str,
    *,
    learner_key: str | None,
    reason: str,
    actor: str,
    now: datetime,
    data_policy: str | None = None,
) -> str:
    """Add a withdrawal record and its audit entry to ``session``'s transaction.

    The one place that writes ``withdrawals`` (classes, pupils of a class-randomised
    design, pupils of a learner design): ``learner_key`` is a per-experiment pseudonym
    (:func:`ingest.pseudonym.pseudonymise`), never an id as the académie wrote it.
    Returns the data policy recorded (``design.class_data`` or ``design.pupil_data``
    unless ``data_policy`` says otherwise).
    """
    scope = "class" if learner_key is None else "pupil"
    policy = data_policy or (design.class_data if learner_key is None else design.pupil_data)
    session.add(WithdrawalRow(
        experiment_id=design.experiment_id, class_id=class_id, learner_id=learner_key,
        scope=scope, reason=reason, data_policy=policy, withdrawn_at=now, actor=actor,
    ))
    record_audit(session, actor, "enrollment.withdraw", f"{design.experiment_id}/{class_id}",
                 {"scope": scope, "policy": policy})
    return policy


def withdraw(
    engine: Engine,
    design: EnrollmentDesign,
    class_id: str,
    *,
    reason: str,
    actor: str,
    learner_id: str | None = None,
    key: bytes | None = None,
    academie: str | None = None,
    now: datetime | None = None,
) -> Withdrawal:
    """Withdraw a class (or one pupil of it) from an experiment; the class keeps its arm.

    A class withdrawal marks the enrollment ``withdrawn`` (publish it with
    :func:`publish_pending`); a pupil withdrawal records the pupil's **per-experiment
    pseudonym** (``pseudonymise(key, experiment_id, learner_id)``, the key the store
    gives the pupil's events), never the id as given: pupils are minors and no raw id
    enters a database. In a learner-randomised design the pupil is also marked withdrawn
    (:func:`experiments.enrollment.withdrawal.withdraw_learner`, the same record). What
    happens to the data already collected follows ``design.class_data`` or
    ``design.pupil_data`` and is recorded with the withdrawal, for the store's purge and
    the CONSORT counts.

    Parameters
    ----------
    learner_id
        A pupil's id as the académie knows it (the id events carry): withdraw only them.
    key
        The pseudonymisation key (:func:`ingest.pseudonym.load_pseudonym_key` of the
        settings); default: :func:`registry_pseudonym_key` of ``engine``.

    Raises
    ------
    EnrollmentError
        The class is not enrolled, belongs to another académie, or is already withdrawn.

    Examples
    --------
    >>> from experiments.enrollment import enroll_classes, read_classes
    >>> engine = fresh_registry()
    >>> design = core_design()
    >>> text = "class_id,school_uai,level,pupils,academie,education_priority\\n"
    >>> text += "c1,0781234T,CP,24,versailles,REP\\n"
    >>> _ = enroll_classes(engine, design, read_classes(text, design), actor="doc")
    >>> pupil = withdraw(engine, design, "c1", reason="parents object", actor="doc",
    ...                  learner_id="gar-7f3a91", key=b"k")
    >>> pupil.data_policy, pupil.learner_id != "gar-7f3a91", len(pupil.learner_id)
    ('remove', True, 64)
    >>> withdraw(engine, design, "c1", reason="teacher left", actor="doc").data_policy
    'keep'
    """
    if not reason.strip():
        raise EnrollmentError("a withdrawal needs a reason", field="reason")
    if problem := reason_problem(reason):
        raise EnrollmentError(problem, field="reason")
    if learner_id is not None:
        learner_id = learner_id.strip()  # as read_pupils and the pupils' events have it
        if not learner_id:
            raise EnrollmentError("learner id: empty", field="learner_id")
    if learner_id is not None and design.unit == "learner":
        return withdraw_learner(
            engine, design, key if key is not None else registry_pseudonym_key(engine),
            learner_id, reason=reason, actor=actor, class_id=class_id, academie=academie,
            now=now,
        )
    learner_key: str | None = None
    if learner_id is not None:
        from ingest.pseudonym import check_pseudonym_key, pseudonymise

        known = key if key is not None else registry_pseudonym_key(engine)
        check_pseudonym_key(engine, design.experiment_id, known)
        learner_key = pseudonymise(known, design.experiment_id, learner_id)
    now = now or datetime.now(UTC)
    with Session(engine) as session, session.begin():
        row = enrolled_row(session, ENROLLMENTS, design.experiment_id, "class_id", class_id,
                            academie=academie)
        if row is None:
            raise EnrollmentError(
                f"class {class_id} is not enrolled in {design.experiment_id} by your académie",
                field="class_id",
            )
        if learner_key is None:
            _mark_withdrawn(session, ENROLLMENTS, row, f"class {class_id}", now)
        elif (earlier := session.scalar(sa.select(WithdrawalRow.withdrawn_at).where(
                WithdrawalRow.experiment_id == design.experiment_id,
                WithdrawalRow.class_id == class_id,
                WithdrawalRow.learner_id == learner_key).limit(1))) is not None:
            # As in a pupil-randomised design: one record per pupil, not one per request.
            raise EnrollmentError(f"pupil {learner_id} of class {class_id} was already "
                                  f"withdrawn on {earlier:%Y-%m-%d}", field="status")
        policy = record_withdrawal(session, design, class_id, learner_key=learner_key,
                                   reason=reason.strip(), actor=actor, now=now)
    logger.info("experiment %s: class %s withdrew (%s)", design.experiment_id, class_id,
                "class" if learner_key is None else "one pupil")
    return Withdrawal(design.experiment_id, class_id, learner_key, row["arm"], policy, now)


# --- withdrawing -------------------------------------------------------------------------


def withdraw_learner(
    engine: Engine,
    design: EnrollmentDesign,
    key: bytes,
    learner_id: str,
    *,
    reason: str,
    actor: str,
    class_id: str | None = None,
    academie: str | None = None,
    now: datetime | None = None,
) -> Withdrawal:
    """Withdraw one pupil of a learner-randomised experiment; the pupil keeps its arm (ITT).

    ``learner_id`` is the id the académie knows (the one of the pupils file); the pupil is
    found, and the withdrawal recorded, by its per-experiment pseudonym. What happens to
    the data collected follows ``design.pupil_data``.

    Raises
    ------
    EnrollmentError
        No reason, or the pupil is not enrolled (in ``class_id``, by ``academie``), or
        already withdrawn.

    Examples
    --------
    >>> from experiments.enrollment import enroll_learners, read_pupils
    >>> from experiments.protocol.language import load_protocol
    >>> engine = fresh_registry()
    >>> design = EnrollmentDesign.from_protocol(
    ...     load_protocol("tests/data/enrollment/learner-protocol.yaml"))
    >>> text = "learner_id,class_id,school_uai,level,academie,education_priority,repeater\\n"
    >>> text += "L1,c1,0781234T,CP,versailles,REP,non\\n"
    >>> _ = enroll_learners(engine, design, read_pupils(text, design), key=b"k", actor="doc")
    >>> withdraw_learner(engine, design, b"k", "L1", reason="parents object",
    ...                  actor="doc").data_policy
    'remove'
    """
    from ingest.pseudonym import check_pseudonym_key, pseudonymise

    if not reason.strip():
        raise EnrollmentError("a withdrawal needs a reason", field="reason")
    if problem := reason_problem(reason):
        raise EnrollmentError(problem, field="reason")
    learner_id = learner_id.strip()  # as read_pupils stored it
    if not learner_id:
        raise EnrollmentError("learner id: empty", field="learner_id")
    now = now or datetime.now(UTC)
    check_pseudonym_key(engine, design.experiment_id, key)
    learner_key = pseudonymise(key, design.experiment_id, learner_id)
    with Session(engine) as session, session.begin():
        row = enrolled_row(session, LEARNERS, design.experiment_id, "learner_key",
                            learner_key, academie=academie)
        if row is None or (class_id is not None and row["class_id"] != class_id):
            # Same answer for "not enrolled", "another class" and "another académie's".
            where = f" in class {class_id}" if class_id else ""
            raise EnrollmentError(
                f"pupil {learner_id} is not enrolled{where} in {design.experiment_id} by "
                "your académie", field="learner_id",
            )
        _mark_withdrawn(session, LEARNERS, row, f"pupil {learner_id}", now)
        record_withdrawal(session, design, str(row["class_id"]), learner_key=learner_key,
                          reason=reason.strip(), actor=actor, now=now)
    logger.info("experiment %s: a pupil of class %s withdrew", design.experiment_id,
                row["class_id"])
    return Withdrawal(design.experiment_id, str(row["class_id"]), learner_key, str(row["arm"]),
                      design.pupil_data, now)
