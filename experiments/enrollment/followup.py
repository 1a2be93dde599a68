"""Cohorts over school years: the classes a followed pupil moves to.

A protocol with a ``cohort:`` follows its pupils over several school years. Each new
school year the académie sends a file of the followed pupils in their new classes::

    learner_id,class_id,school_uai,level,academie,previous_class_id
    gar-8f2a,ce1-b,0781234T,CE1,versailles,cp-a

Nothing is drawn again (intention to treat): each pupil keeps **the arm and the unit of
the class randomised** (``previous_class_id``, or the pupil's own follow-up record when
the previous class was itself a follow-up class). The new class is enrolled with the arm
:data:`~experiments.enrollment.tables.MIXED_ARM`, as the classes of a pupil-randomised
experiment are: published to ``preuve.enrollments`` so that the stream worker routes its
events to the experiment instead of parking them, while each pupil's arm and unit come
from ``learner_enrollments`` (one row per followed pupil, by per-experiment pseudonym;
a later move updates its class, never its arm). The analysis maps a followed pupil's
scores and usage in any class to their randomised unit
(:func:`experiments.runs.inputs.write_analysis_files`).

A follow-up file is accepted in any state from ``enrolling`` to ``analysing`` and outside
the enrollment window (it enrolls no new unit); only class-randomised (or
school-randomised) cohorts are followed this way: a pupil-randomised experiment already
follows its pupils by their key.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from experiments.access import record_audit
from experiments.enrollment.files import (
    EnrollmentDesign,
    Refusal,
    _check_learner_id,
    _check_school,
    _CsvTable,
    pupil_refusal,
    refusal,
)
from experiments.enrollment.publishing import Publish, publish_after
from experiments.enrollment.tables import ENROLLMENTS, LEARNERS, MIXED_ARM, enrolled_rows
from experiments.enrollment.transaction import (
    LearnerOutcome,
    _enrolled_elsewhere,
    _insert_many,
    _lock_experiment,
    as_enrolled_learner,
    in_one_transaction,
    mixed_class_row,
)
from experiments.errors import EnrollmentError
from experiments.protocol.vocabulary import LEVELS

__all__ = [
    "FOLLOW_COLUMNS", "FollowRow", "FollowedFile", "follow_pupils", "followed_units",
    "read_followed",
]

logger = logging.getLogger(__name__)

#: The columns of a follow-up file.
FOLLOW_COLUMNS = ("learner_id", "class_id", "school_uai", "level", "academie",
                  "previous_class_id")

#: code -> (French, English) of the refusals of a follow-up file.
FOLLOW_MESSAGES: dict[str, tuple[str, str]] = {
    "previous_class_unknown": (
        "la classe précédente « {value} » n'est pas inscrite dans l'expérimentation : un "
        "élève suivi vient d'une classe tirée au sort (ou d'une classe de suivi où il est "
        "déjà suivi)",
        "previous class '{value}' is not enrolled in the experiment: a followed pupil comes "
        "from a randomised class (or a follow-up class where they are already followed)",
    ),
    "class_randomised": (
        "la classe « {class_id} » est une classe tirée au sort de l'expérimentation : la "
        "nouvelle classe d'un élève suivi est une classe de l'année suivante",
        "class '{class_id}' is a randomised class of the experiment: a followed pupil's new "
        "class is a class of the next school year",
    ),
    "followed_elsewhere": (
        "l'élève est déjà suivi dans la classe « {stored} » (unité « {unit} ») : la classe "
        "précédente « {value} » ne correspond pas",
        "the pupil is already followed in class '{stored}' (unit '{unit}'): previous class "
        "'{value}' does not match",
    ),
}


def _refusal(code: str, line: int, class_id: str, field: str, value: str,
             **details: object) -> Refusal:
    if code in FOLLOW_MESSAGES:
        french, english = FOLLOW_MESSAGES[code]
        values = {"field": field, "value": value, "class_id": class_id, **details}
        return Refusal(line, class_id, field, value, code, french.format(**values),
                       english.format(**values))
    return pupil_refusal(code, line, class_id, field, value, **details)


@dataclass(frozen=True)
class FollowRow:
    """A followed pupil in a new class (``learner_id`` kept in memory only)."""

    line: int
    learner_id: str
    class_id: str
    school_uai: str
    level: str
    academie: str
    previous_class_id: str


@dataclass(frozen=True)
class FollowedFile:
    """A read follow-up file: the rows to record and the rows refused."""

    path: str
    rows: list[FollowRow]
    refusals: list[Refusal]


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


def _row_problem(record: dict[str, str], line: int, academie: str | None) -> Refusal | None:
    """What is wrong with a row, checked without the database (identifiers, school)."""
    class_id = record["class_id"]
    for column in FOLLOW_COLUMNS:
        if not record[column]:
            return refusal("empty_field", line, class_id, column, "")
    problem = _check_learner_id(record, line)
    if problem is not None:
        return problem
    for column in ("class_id", "previous_class_id"):
        if not _ID.match(record[column]):
            return refusal("bad_class_id", line, class_id, column, record[column])
    if academie is not None and record["academie"] != academie:
        return refusal("other_academie", line, class_id, "academie", record["academie"],
                       own=academie)
    if record["level"] not in LEVELS:
        # The next school year's niveau: not the population's (CP), any school niveau.
        return refusal("unknown_level", line, class_id, "level", record["level"])
    return _check_school(record["school_uai"], record["academie"], line, class_id)


def read_followed(source: Path | str, design: EnrollmentDesign, *, name: str | None = None,
                  academie: str | None = None) -> FollowedFile:
    """Read a follow-up file (module docstring) and check what needs no database.

    Raises
    ------
    EnrollmentError
        The file as a whole is unusable (unreadable, a required column missing).
    """
    table = _CsvTable(source, name, unnamed="<followed>")
    table.check_columns(FOLLOW_COLUMNS, header="a follow-up file's header")
    rows: list[FollowRow] = []
    refusals: list[Refusal] = []
    first: dict[str, int] = {}
    for line, record in table.records(refusals):
        problem = _row_problem(record, line, academie)
        if problem is not None:
            refusals.append(problem)
            continue
        class_id = record["class_id"]
        learner_id = record["learner_id"]
        if learner_id in first:
            refusals.append(_refusal("duplicate_learner", line, class_id, "learner_id",
                                     learner_id, first=first[learner_id]))
            continue
        first[learner_id] = line
        rows.append(FollowRow(line, learner_id, class_id, record["school_uai"],
                              record["level"], record["academie"],
                              record["previous_class_id"]))
    refusals.sort(key=lambda r: r.line)
    return FollowedFile(table.name, rows, refusals)


def _follow_rows(session: Session, design: EnrollmentDesign, followed: FollowedFile,
                 key: bytes, outcome: LearnerOutcome, *, now: datetime, actor: str) -> None:
    from ingest.pseudonym import pseudonymise

    experiment = design.experiment_id
    _lock_experiment(session, design, now)
    classes = enrolled_rows(session, ENROLLMENTS, "class_id", experiment)
    learners = enrolled_rows(session, LEARNERS, "learner_key", experiment)
    elsewhere = _enrolled_elsewhere(
        session, experiment, sorted({r.class_id for r in followed.rows} - set(classes)))
    new_classes: list[dict[str, Any]] = []
    new_learners: list[dict[str, Any]] = []
    moved: list[tuple[str, FollowRow]] = []
    touched: set[str] = set()
    for row in followed.rows:
        learner_key = pseudonymise(key, experiment, row.learner_id)
        known = learners.get(learner_key)
        previous = classes.get(row.previous_class_id)
        target = classes.get(row.class_id)
        problem: Refusal | None = None
        if target is not None and target["arm"] != MIXED_ARM:
            problem = _refusal("class_randomised", row.line, row.class_id, "class_id",
                               row.class_id)
        elif row.class_id in elsewhere:
            problem = _refusal("class_enrolled_elsewhere", row.line, row.class_id,
                               "class_id", row.class_id, other=elsewhere[row.class_id])
        elif target is not None and target["status"] == "withdrawn":
            problem = _refusal("class_withdrawn", row.line, row.class_id, "class_id",
                               row.class_id)
        elif known is None and (previous is None or previous["arm"] == MIXED_ARM):
            problem = _refusal("previous_class_unknown", row.line, row.class_id,
                               "previous_class_id", row.previous_class_id)
        elif known is not None and row.previous_class_id not in (
                known["class_id"], known["attributes"].get("randomised_class")):
            problem = _refusal("followed_elsewhere", row.line, row.class_id,
                               "previous_class_id", row.previous_class_id,
                               stored=known["class_id"], unit=known["unit_id"])
        if problem is not None:
            outcome.refusals.append(problem)
            continue
        if target is None:
            target = mixed_class_row(experiment, row, now)
            new_classes.append(target)
            classes[row.class_id] = target
        touched.add(row.class_id)
        if known is not None:
            if known["class_id"] == row.class_id:
                outcome.already.append(as_enrolled_learner(known, row.learner_id, new=False))
            else:
                moved.append((learner_key, row))
                outcome.enrolled.append(as_enrolled_learner(
                    {**known, "class_id": row.class_id, "school_uai": row.school_uai,
                     "academie": row.academie, "level": row.level}, row.learner_id,
                    new=False))
            continue
        assert previous is not None
        record = {
            "experiment_id": experiment, "learner_key": learner_key,
            "unit_id": previous["unit_id"], "class_id": row.class_id,
            "school_uai": row.school_uai, "academie": row.academie, "level": row.level,
            # The class drawn, so that the pupil's next move may name either class.
            "attributes": {"randomised_class": row.previous_class_id},
            "stratum": previous["stratum"], "arm": previous["arm"], "status": "enrolled",
            "enrolled_at": now, "withdrawn_at": None,
        }
        new_learners.append(record)
        learners[learner_key] = record
        outcome.enrolled.append(as_enrolled_learner(record, row.learner_id, new=True))
    same = {"experiment_id": experiment, "enrolled_at": now, "withdrawn_at": None}
    if new_classes:
        _insert_many(session, ENROLLMENTS, new_classes, {**same, "published_status": None})
    if new_learners:
        _insert_many(session, LEARNERS, new_learners, {**same, "status": "enrolled"})
    for learner_key, row in moved:  # a later school year: the class moves, never the arm
        session.execute(
            sa.update(LEARNERS)
            .where(LEARNERS.c.experiment_id == experiment,
                   LEARNERS.c.learner_key == learner_key)
            .values(class_id=row.class_id, school_uai=row.school_uai,
                    academie=row.academie, level=row.level))
    if touched:
        counted = (sa.select(sa.func.count()).select_from(LEARNERS)
                   .where(LEARNERS.c.experiment_id == experiment,
                          LEARNERS.c.class_id == ENROLLMENTS.c.class_id)
                   .scalar_subquery())
        session.execute(sa.update(ENROLLMENTS)
                        .where(ENROLLMENTS.c.experiment_id == experiment,
                               ENROLLMENTS.c.class_id.in_(sorted(touched)))
                        .values(pupils=counted))
    outcome.classes = len(new_classes)
    record_audit(session, actor, "enrollment.follow", experiment, {
        "file": followed.path, "followed": len(new_learners), "moved": len(moved),
        "already": len(outcome.already), "refused": len(outcome.refusals),
        "classes": len(new_classes),
    })


def follow_pupils(engine: Engine, design: EnrollmentDesign, followed: FollowedFile, *,
                  key: bytes, actor: str, publish: Publish | None = None,
                  now: datetime | None = None) -> LearnerOutcome:
    """Record the followed pupils of ``followed`` in their new classes, in one
    transaction, then publish the new classes (module docstring).

    Returns
    -------
    LearnerOutcome
        Pupils followed now (``new`` for a first follow-up, not for a later move), pupils
        already in that class, refusals, new classes and the publication.

    Raises
    ------
    EnrollmentError
        The experiment does not follow a cohort, randomises pupils, or is not between
        ``enrolling`` and ``analysing``.
    """
    from experiments.registry import get_experiment, registered_protocol

    experiment = design.experiment_id
    protocol = registered_protocol(engine, experiment).protocol
    if protocol.cohort is None:
        raise EnrollmentError(f"experiment {experiment} follows no cohort: its protocol "
                              "declares no `cohort:` (school years followed)", field="cohort")
    if design.unit == "learner":
        raise EnrollmentError(f"experiment {experiment} randomises pupils: they are followed "
                              "by their key; enroll their new classes with their pupils file",
                              field="population.unit")
    state = get_experiment(engine, experiment).state
    if state not in ("enrolling", "running", "analysing"):
        raise EnrollmentError(f"experiment {experiment} is {state}: pupils are followed "
                              "while it is enrolling, running or analysing", field="state")
    now = now or datetime.now(UTC)
    outcome = LearnerOutcome(experiment, refusals=list(followed.refusals))
    in_one_transaction(engine, experiment,
                       lambda session: _follow_rows(session, design, followed, key, outcome,
                                                    now=now, actor=actor))
    outcome.refusals.sort(key=lambda r: r.line)
    logger.info("experiment %s: followed %d pupils (%d new classes), %d already there, "
                "%d refused", experiment, len(outcome.enrolled), outcome.classes,
                len(outcome.already), len(outcome.refusals))
    publish_after(engine, experiment, publish, outcome)
    return outcome


def followed_units(engine: Engine, experiment_id: str, as_of: datetime | None = None
                   ) -> dict[str, str]:
    """The randomised unit of each followed pupil, by learner key: what the analysis maps
    their scores and usage in any class to (``as_of``: followed by then)."""
    query = (sa.select(LEARNERS.c.learner_key, LEARNERS.c.unit_id)
             .where(LEARNERS.c.experiment_id == experiment_id))
    if as_of is not None:
        query = query.where(LEARNERS.c.enrolled_at <= as_of.astimezone(UTC))
    with engine.connect() as connection:
        return {str(key): str(unit) for key, unit in connection.execute(query)}
