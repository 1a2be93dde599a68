"""Enrolling classes and pupils: check the file, randomise, log, in one transaction.

The file and its checks are in :mod:`experiments.enrollment.files`. The valid rows of one
file are enrolled, randomised and logged in **one transaction** (:func:`enroll_classes`,
:func:`enroll_learners`): a crash leaves all of them or none. Rows already enrolled with
the same values are reported as such, so re-running a file after a crash or a timeout
never enrolls a class (or a pupil) twice. After the commit, each enrollment is handed to
``publish`` (by default, Kafka topic ``preuve.enrollments``); if that fails the
enrollments stay committed and are marked pending, and
:func:`~experiments.enrollment.publishing.publish_pending` publishes them later.

A pupil-randomised protocol (``population.unit: learner``) randomises each pupil on its
own (stratified permuted blocks, the protocol's seed) and logs the draw ``pupil:<n>``
with no pseudonym; the registry keeps only the pupil's per-experiment pseudonym (the key
the stream worker gives the pupil's events). Each class of the file is enrolled with the
arm :data:`~experiments.enrollment.tables.MIXED_ARM` so that its events are routed.

Nobody picks an arm: there is no parameter for it anywhere. A withdrawn class keeps its
arm (intention to treat); see :mod:`experiments.enrollment.withdrawal`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from experiments.access import record_audit
from experiments.database import insert_for
from experiments.enrollment.files import (
    ClassesFile,
    EnrollmentDesign,
    PupilRow,
    PupilsFile,
    Refusal,
    pupil_refusal,
    refusal,
)
from experiments.enrollment.publishing import (
    Publish,
    publish_after,
)
from experiments.enrollment.randomisation import Allocation, Randomiser, Unit
from experiments.enrollment.tables import (
    ALLOCATIONS,
    DESIGNS,
    ENROLLMENTS,
    LEARNERS,
    MIXED_ARM,
    enrolled_rows,
    in_chunks,
)
from experiments.errors import EnrollmentError

__all__ = [
    "EnrolledClass",
    "EnrolledLearner",
    "EnrollmentOutcome",
    "LearnerOutcome",
    "check_file",
    "enroll_classes",
    "enroll_learners",
    "in_one_transaction",
]

logger = logging.getLogger(__name__)




# --- enrolling -----------------------------------------------------------------------


Enrolled = TypeVar("Enrolled")


@dataclass(frozen=True)
class EnrolledClass:
    """A class of the registry and its arm; ``new`` says whether this call enrolled it."""

    class_id: str
    school_uai: str
    academie: str
    level: str
    pupils: int
    attributes: Mapping[str, str]
    stratum: str
    arm: str
    status: str
    new: bool


@dataclass
class _FileOutcome(Generic[Enrolled]):
    """What enrolling one file did: who was enrolled now, who already was, what was refused,
    and what became of the publication to Kafka."""

    experiment_id: str
    enrolled: list[Enrolled] = field(default_factory=list)
    already: list[Enrolled] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    published: int = 0
    pending: int = 0
    publish_error: str | None = None


@dataclass
class EnrollmentOutcome(_FileOutcome[EnrolledClass]):
    """What :func:`enroll_classes` did."""


def _lock_experiment(session: Session, design: EnrollmentDesign, now: datetime) -> None:
    # Insert-if-missing then UPDATE: the first statement takes SQLite's write lock (on
    # PostgreSQL a concurrent first insert waits on the key, then does nothing), the
    # UPDATE takes the row lock, all before anything is read; so two enrollments of one
    # experiment run one after the other and never draw the same block position twice.
    table = DESIGNS
    session.execute(
        insert_for(session.connection(), table).values(
            experiment_id=design.experiment_id, resource_id=design.resource_id,
            fingerprint=design.fingerprint(),
            design={"unit": design.unit, "strata": list(design.strata), "arms": list(design.arms),
                    "ratios": list(design.ratios), "seed": design.seed,
                    "control": design.control},
            first_enrolled_at=now, last_enrolled_at=now,
        ).on_conflict_do_nothing(index_elements=["experiment_id"])
    )
    session.execute(
        sa.update(table).where(table.c.experiment_id == design.experiment_id)
        .values(last_enrolled_at=now)
    )
    stored = session.execute(
        sa.select(table.c.fingerprint, table.c.first_enrolled_at)
        .where(table.c.experiment_id == design.experiment_id)
    ).one()
    if stored.fingerprint != design.fingerprint():
        raise EnrollmentError(
            f"experiment {design.experiment_id}: the protocol's randomisation (unit, strata, "
            f"arms, ratios or seed) differs from the one its {stored.first_enrolled_at:%Y-%m-%d} "
            "enrollments were randomised with; a registered protocol cannot change",
            field="randomisation",
        )


def _randomiser(
    session: Session, design: EnrollmentDesign, now: datetime
) -> tuple[Randomiser, _AllocationLog]:
    """The randomiser of ``design``, resumed from its allocation log, and the log that the
    allocations of this file are added to (shared with
    :mod:`experiments.enrollment.transaction`)."""
    log = ALLOCATIONS
    where = log.c.experiment_id == design.experiment_id
    counts = {
        stratum: int(n)
        for stratum, n in session.execute(
            sa.select(log.c.stratum, sa.func.count()).where(where).group_by(log.c.stratum)
        )
    }
    allocated = {
        unit: arm for unit, arm in session.execute(sa.select(log.c.unit_id, log.c.arm).where(where))
    }
    last = session.execute(sa.select(sa.func.max(log.c.sequence)).where(where)).scalar()
    randomiser = Randomiser(design.scheme, allocated=allocated, counts=counts)
    return randomiser, _AllocationLog(design.experiment_id, int(last or 0), now)


class _AllocationLog:
    """The rows that one file adds to the append-only allocation log, numbered on from the
    last one logged (:func:`_randomiser`)."""

    def __init__(self, experiment_id: str, last_sequence: int, now: datetime) -> None:
        self.experiment_id = experiment_id
        self.sequence = last_sequence
        self.now = now
        self.rows: list[dict[str, object]] = []

    def add(self, class_id: str, allocation: Allocation | None) -> None:
        """Log ``allocation``, drawn for a unit of ``class_id``; None (a unit allocated
        before: a class of a school already drawn) logs nothing."""
        if allocation is None:
            return
        self.sequence += 1
        a = allocation
        self.rows.append({
            "experiment_id": self.experiment_id, "sequence": self.sequence,
            "class_id": class_id, "unit_id": a.cluster, "stratum": a.stratum, "block": a.block,
            "position": a.position, "draw": a.draw, "arm": a.arm, "allocated_at": self.now,
        })

    def insert(self, session: Session) -> None:
        """Insert the rows logged so far (one statement), in ``session``'s transaction."""
        if self.rows:
            _insert_many(session, ALLOCATIONS, self.rows,
                         {"experiment_id": self.experiment_id, "allocated_at": self.now})


def _enrolled_elsewhere(
    session: Session, experiment_id: str, class_ids: Sequence[str]
) -> dict[str, str]:
    # The router is keyed by class: a class can be in one running experiment at a time.
    table = ENROLLMENTS
    found: dict[str, str] = {}
    for chunk in in_chunks(class_ids):
        for class_id, other in session.execute(
            sa.select(table.c.class_id, table.c.experiment_id).where(
                table.c.class_id.in_(chunk),
                table.c.experiment_id != experiment_id,
                table.c.status == "enrolled",
            )
        ):
            found[class_id] = other
    return found


def as_enrolled_class(row: Mapping[Any, Any], new: bool) -> EnrolledClass:
    return EnrolledClass(
        class_id=str(row["class_id"]), school_uai=str(row["school_uai"]),
        academie=str(row["academie"]), level=str(row["level"]), pupils=int(row["pupils"]),
        attributes=dict(row["attributes"]),
        stratum=str(row["stratum"]), arm=str(row["arm"]), status=str(row["status"]), new=new,
    )


def _difference(
    known: Mapping[Any, Any], values: Mapping[str, object]
) -> tuple[str, object] | None:
    """The first of ``values`` (a row of the file) that the enrolled row ``known`` holds
    otherwise, and the value it holds; None when the row is enrolled identically (shared
    with :mod:`experiments.enrollment.transaction`)."""
    for name, value in values.items():
        stored = dict(known[name]) if name == "attributes" else known[name]
        if stored != value:
            return name, stored
    return None


def _insert_many(
    session: Session, table: sa.Table, rows: list[dict[str, Any]], same: Mapping[str, Any]
) -> None:
    """One executemany INSERT of ``rows``, each completed by the values ``same`` for all.

    On SQLite the statement is compiled once and each column's bind processor (JSON,
    DateTime as text) is applied by hand, a constant value only once, which saves most
    of SQLAlchemy's per-parameter work on 10,000-row files. Other databases take the
    plain Core executemany.
    """
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "sqlite":
        # psycopg adapts JSON and datetimes itself (no bind processors to apply by hand).
        connection.execute(sa.insert(table), [{**row, **same} for row in rows])
        return
    keys = [*(k for k in rows[0] if k not in same), *same]
    compiled = sa.insert(table).compile(dialect=dialect, column_keys=keys)

    def processor(key: str) -> Callable[[Any], Any]:
        process = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        return process if process is not None else (lambda value: value)

    fixed = {key: processor(key)(value) for key, value in same.items()}
    varying = {key: processor(key) for key in rows[0] if key not in same}
    names = list(compiled.positiontup or ()) if compiled.positional else keys
    converted = [
        {**{k: process(row[k]) for k, process in varying.items()}, **fixed} for row in rows
    ]
    params: list[Any] = (
        [tuple(values[name] for name in names) for values in converted]
        if compiled.positional else converted
    )
    connection.exec_driver_sql(str(compiled), params)


def _enroll_class_rows(
    session: Session,
    design: EnrollmentDesign,
    classes: ClassesFile,
    outcome: EnrollmentOutcome,
    *,
    now: datetime,
    actor: str,
) -> None:
    """The transaction of :func:`enroll_classes`: check against the registry, randomise,
    insert; fills ``outcome``."""
    _lock_experiment(session, design, now)
    existing = enrolled_rows(session, ENROLLMENTS, "class_id", design.experiment_id)
    elsewhere = _enrolled_elsewhere(
        session, design.experiment_id,
        [r.class_id for r in classes.rows if r.class_id not in existing],
    )
    randomiser, log = _randomiser(session, design, now)
    school_strata = {
        row["unit_id"]: row["stratum"] for row in existing.values()
    } if design.unit == "school" else {}
    new_rows: list[dict[str, object]] = []
    for row in classes.rows:
        known = existing.get(row.class_id)
        if known is not None:
            difference = _difference(known, row.values())
            if difference is None:
                outcome.already.append(as_enrolled_class(known, new=False))
            else:
                changed, stored = difference
                outcome.refusals.append(refusal(
                    "enrolled_differently", row.line, row.class_id, changed,
                    str(row.values()[changed]), stored=stored,
                ))
            continue
        if row.class_id in elsewhere:
            outcome.refusals.append(refusal(
                "enrolled_elsewhere", row.line, row.class_id, "class_id", row.class_id,
                other=elsewhere[row.class_id],
            ))
            continue
        school_stratum = school_strata.setdefault(row.cluster, row.stratum)
        if school_stratum != row.stratum:
            outcome.refusals.append(refusal(
                "school_stratum_conflict", row.line, row.class_id, ",".join(design.strata),
                row.stratum, school=row.school_uai, stratum=school_stratum,
            ))
            continue
        assignment = randomiser.assign(Unit(row.class_id, row.cluster, row.stratum))
        record = {
            "experiment_id": design.experiment_id, "class_id": row.class_id,
            "school_uai": row.school_uai, "academie": row.academie, "level": row.level,
            "pupils": row.pupils, "attributes": dict(row.attributes), "stratum": row.stratum,
            "unit_id": row.cluster, "arm": assignment.arm, "status": "enrolled",
            "enrolled_at": now, "withdrawn_at": None, "published_status": None,
        }
        new_rows.append(record)
        existing[row.class_id] = record  # a later duplicate in the same call is "already"
        log.add(row.class_id, assignment.allocation)
        outcome.enrolled.append(as_enrolled_class(record, new=True))
    if new_rows:
        _insert_many(session, ENROLLMENTS, new_rows, {
            "experiment_id": design.experiment_id, "status": "enrolled", "enrolled_at": now,
            "withdrawn_at": None, "published_status": None,
        })
    log.insert(session)
    record_audit(session, actor, "enrollment.file", design.experiment_id, {
        "file": classes.path, "enrolled": len(new_rows), "already": len(outcome.already),
        "refused": len(outcome.refusals),
    })


def enroll_classes(
    engine: Engine,
    design: EnrollmentDesign,
    classes: ClassesFile,
    *,
    actor: str,
    publish: Publish | None = None,
    now: datetime | None = None,
    before_commit: Callable[[], None] | None = None,
) -> EnrollmentOutcome:
    """Enroll and randomise the valid rows of ``classes`` in one transaction, then publish.

    Parameters
    ----------
    engine
        The registry engine (:func:`experiments.database.registry_engine`).
    design
        The experiment's enrollment design.
    classes
        The file read by :func:`read_classes`.
    actor
        Who enrolls, as the audit log names it (``Principal.actor``).
    publish
        Hands the new enrollments to the router (:func:`ingest.kafka.producer.publish_enrollments`
        bound to the settings); None publishes nothing and leaves them pending.
    now
        Enrollment time (default: now, UTC).
    before_commit
        Called inside the transaction just before the commit (tests kill the process there).

    Returns
    -------
    EnrollmentOutcome
        New enrollments with their arms, rows already enrolled identically, every refusal,
        and whether publishing succeeded.

    Examples
    --------
    >>> from experiments.enrollment import read_classes
    >>> engine = fresh_registry()
    >>> design = core_design()
    >>> text = "class_id,school_uai,level,pupils,academie,education_priority\\n"
    >>> text += "c1,0781234T,CP,24,versailles,REP\\nc2,0781234T,CP,21,versailles,REP\\n"
    >>> outcome = enroll_classes(engine, design, read_classes(text, design), actor="doc")
    >>> sorted(c.arm for c in outcome.enrolled), outcome.pending
    (['lectio', 'usual'], 2)
    """
    now = now or datetime.now(UTC)
    outcome = EnrollmentOutcome(design.experiment_id, refusals=list(classes.refusals))
    in_one_transaction(
        engine, design.experiment_id,
        lambda session: _enroll_class_rows(session, design, classes, outcome, now=now, actor=actor),
        before_commit,
    )
    outcome.refusals.sort(key=lambda r: r.line)
    logger.info(
        "experiment %s: enrolled %d classes, %d already enrolled, %d refused",
        design.experiment_id, len(outcome.enrolled), len(outcome.already), len(outcome.refusals),
    )
    publish_after(engine, design.experiment_id, publish, outcome)
    return outcome


def in_one_transaction(
    engine: Engine,
    experiment_id: str,
    write: Callable[[Session], None],
    before_commit: Callable[[], None] | None = None,
) -> None:
    """Run ``write`` (the checks, draws and inserts of one file) in one transaction.

    ``before_commit`` is called inside it, just before the commit (crash tests). A unique
    key hit is not expected (:func:`_lock_experiment` serialises the enrollments of an
    experiment), but if it happens the transaction rolled back whole, and the error says
    so plainly.
    """
    try:
        with Session(engine) as session, session.begin():
            write(session)
            if before_commit is not None:
                before_commit()
    except sa.exc.IntegrityError as exc:
        raise EnrollmentError(
            f"experiment {experiment_id}: a concurrent write conflicted ({exc.orig}); "
            "nothing of this file was enrolled, run it again",
            field="experiment",
        ) from exc


# --- enrolling ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrolledLearner:
    """A pupil and its arm. ``learner_id`` is the id of the file when this call read it
    (for the académie's eyes; it is never stored), else the learner key."""

    learner_id: str
    learner_key: str
    class_id: str
    school_uai: str
    academie: str
    level: str
    attributes: Mapping[str, str]
    stratum: str
    arm: str
    status: str
    new: bool


@dataclass
class LearnerOutcome(_FileOutcome[EnrolledLearner]):
    """What :func:`enroll_learners` did (``classes``: the classes enrolled for routing)."""

    classes: int = 0


def as_enrolled_learner(row: Mapping[Any, Any], learner_id: str, new: bool) -> EnrolledLearner:
    return EnrolledLearner(
        learner_id=learner_id, learner_key=str(row["learner_key"]),
        class_id=str(row["class_id"]), school_uai=str(row["school_uai"]),
        academie=str(row["academie"]), level=str(row["level"]),
        attributes=dict(row["attributes"]), stratum=str(row["stratum"]), arm=str(row["arm"]),
        status=str(row["status"]), new=new,
    )


def mixed_class_row(experiment_id: str, row: Any, now: datetime) -> dict[str, Any]:
    """The enrollment of a class whose pupils carry their own arms (arm
    :data:`MIXED_ARM`): a pupil-randomised experiment's class, or a cohort's class of the
    next school year (:mod:`experiments.enrollment.followup`). It routes its events to the
    experiment; its head count is its pupils'."""
    return {
        "experiment_id": experiment_id, "class_id": row.class_id,
        "school_uai": row.school_uai, "academie": row.academie, "level": row.level,
        "pupils": 0, "attributes": {}, "stratum": MIXED_ARM, "unit_id": row.class_id,
        "arm": MIXED_ARM, "status": "enrolled", "enrolled_at": now,
        "withdrawn_at": None, "published_status": None,
    }


def _class_problem(
    row: PupilRow, known: Mapping[Any, Any] | None, elsewhere: Mapping[str, str]
) -> Refusal | None:
    if known is None:
        if row.class_id in elsewhere:
            return pupil_refusal("class_enrolled_elsewhere", row.line, row.class_id, "class_id",
                            row.class_id, other=elsewhere[row.class_id])
        return None
    if known["status"] == "withdrawn":
        return pupil_refusal("class_withdrawn", row.line, row.class_id, "class_id", row.class_id)
    for name in ("school_uai", "academie", "level"):
        if known[name] != getattr(row, name):
            return pupil_refusal("class_enrolled_differently", row.line, row.class_id, name,
                            getattr(row, name), stored=known[name], new=getattr(row, name))
    return None


def _enroll_pupil_rows(
    session: Session, design: EnrollmentDesign, pupils: PupilsFile, key: bytes,
    outcome: LearnerOutcome, *, now: datetime, actor: str,
) -> None:
    from ingest.pseudonym import check_pseudonym_key, pseudonymise

    enrollments = ENROLLMENTS
    experiment = design.experiment_id
    check_pseudonym_key(session.connection(), experiment, key)
    _lock_experiment(session, design, now)
    learners = enrolled_rows(session, LEARNERS, "learner_key", experiment)
    classes = enrolled_rows(session, enrollments, "class_id", experiment)
    elsewhere = _enrolled_elsewhere(
        session, experiment, sorted({r.class_id for r in pupils.rows} - set(classes))
    )
    randomiser, log = _randomiser(session, design, now)
    new_classes: list[dict[str, object]] = []
    new_learners: list[dict[str, object]] = []
    touched: set[str] = set()
    for row in pupils.rows:
        learner_key = pseudonymise(key, experiment, row.learner_id)
        known = learners.get(learner_key)
        if known is not None:
            difference = _difference(known, row.values())
            if difference is None:
                outcome.already.append(as_enrolled_learner(known, row.learner_id, new=False))
            else:
                changed, stored = difference
                outcome.refusals.append(pupil_refusal(
                    "learner_enrolled_differently", row.line, row.class_id, changed,
                    row.learner_id, stored=stored, new=row.values()[changed],
                ))
            continue
        problem = _class_problem(row, classes.get(row.class_id), elsewhere)
        if problem is not None:
            outcome.refusals.append(problem)
            continue
        if row.class_id not in classes:
            # The class routes its events to this experiment; its pupils have both arms.
            record_class = mixed_class_row(experiment, row, now)
            new_classes.append(record_class)
            classes[row.class_id] = record_class
        touched.add(row.class_id)
        # The log names the pupil's draw by its rank, never by its pseudonym (see the
        # migration): "pupil:<sequence>" is new, so the randomiser always draws for it.
        unit_id = f"pupil:{log.sequence + 1}"
        assignment = randomiser.assign(Unit(row.class_id, unit_id, row.stratum))
        record = {
            "experiment_id": experiment, "learner_key": learner_key, "unit_id": unit_id,
            "class_id": row.class_id,
            "school_uai": row.school_uai, "academie": row.academie, "level": row.level,
            "attributes": dict(row.attributes), "stratum": row.stratum,
            "arm": assignment.arm, "status": "enrolled", "enrolled_at": now,
            "withdrawn_at": None,
        }
        new_learners.append(record)
        learners[learner_key] = record
        log.add(row.class_id, assignment.allocation)
        outcome.enrolled.append(as_enrolled_learner(record, row.learner_id, new=True))
    same = {"experiment_id": experiment, "enrolled_at": now, "withdrawn_at": None}
    if new_classes:
        _insert_many(session, enrollments, new_classes, {**same, "published_status": None})
    if new_learners:
        _insert_many(session, LEARNERS, new_learners, {**same, "status": "enrolled"})
    log.insert(session)
    if touched:
        # A class row's head count is the number of its pupils enrolled (withdrawn too: ITT).
        counted = (
            sa.select(sa.func.count()).select_from(LEARNERS)
            .where(LEARNERS.c.experiment_id == experiment,
                   LEARNERS.c.class_id == enrollments.c.class_id)
            .scalar_subquery()
        )
        session.execute(
            sa.update(enrollments)
            .where(enrollments.c.experiment_id == experiment,
                   enrollments.c.class_id.in_(sorted(touched)))
            .values(pupils=counted)
        )
    outcome.classes = len(new_classes)
    record_audit(session, actor, "enrollment.pupils_file", experiment, {
        "file": pupils.path, "enrolled": len(new_learners), "already": len(outcome.already),
        "refused": len(outcome.refusals), "classes": len(new_classes),
    })


def enroll_learners(
    engine: Engine,
    design: EnrollmentDesign,
    pupils: PupilsFile,
    *,
    key: bytes,
    actor: str,
    publish: Publish | None = None,
    now: datetime | None = None,
    before_commit: Callable[[], None] | None = None,
) -> LearnerOutcome:
    """Enroll and randomise the valid pupils of ``pupils`` in one transaction, then publish
    their classes.

    Parameters
    ----------
    engine
        The registry engine.
    design
        The enrollment design of a learner-randomised experiment.
    pupils
        The file read by :func:`read_pupils`.
    key
        The pseudonymisation key (:func:`ingest.pseudonym.load_pseudonym_key`): pupils are
        stored by ``pseudonymise(key, experiment_id, learner_id)`` only.
    actor
        Who enrolls, as the audit log names it.
    publish
        Hands the new class enrollments (arm :data:`MIXED_ARM`) to the router; None
        leaves them pending.
    now
        Enrollment time (default: now, UTC).
    before_commit
        Called inside the transaction just before the commit (crash tests).

    Returns
    -------
    LearnerOutcome
        New pupils with their arms (by the file's ids), pupils already enrolled, refusals,
        new classes and whether publishing succeeded.

    Examples
    --------
    >>> from experiments.enrollment import read_pupils
    >>> from experiments.protocol.language import load_protocol
    >>> engine = fresh_registry()
    >>> design = EnrollmentDesign.from_protocol(
    ...     load_protocol("tests/data/enrollment/learner-protocol.yaml"))
    >>> text = "learner_id,class_id,school_uai,level,academie,education_priority,repeater\\n"
    >>> text += "L1,c1,0781234T,CP,versailles,REP,non\\nL2,c1,0781234T,CP,versailles,REP,oui\\n"
    >>> outcome = enroll_learners(engine, design, read_pupils(text, design), key=b"k",
    ...                           actor="doc")
    >>> sorted(p.arm for p in outcome.enrolled), outcome.classes, outcome.pending
    (['lectio', 'usual'], 1, 1)
    """
    if design.unit != "learner":
        raise EnrollmentError(f"experiment {design.experiment_id} does not randomise learners",
                              field="population.unit")
    now = now or datetime.now(UTC)
    outcome = LearnerOutcome(design.experiment_id, refusals=list(pupils.refusals))
    in_one_transaction(
        engine, design.experiment_id,
        lambda session: _enroll_pupil_rows(session, design, pupils, key, outcome, now=now,
                                     actor=actor),
        before_commit,
    )
    outcome.refusals.sort(key=lambda r: r.line)
    logger.info("experiment %s: enrolled %d pupils (%d new classes), %d already enrolled, "
                "%d refused", design.experiment_id, len(outcome.enrolled), outcome.classes,
                len(outcome.already), len(outcome.refusals))
    publish_after(engine, design.experiment_id, publish, outcome)
    return outcome


# --- checking a file without writing it (the portal's preview, issue 17) ---------------


class _RolledBack(Exception):
    """Raised inside :func:`check_file`'s transaction so that it rolls back."""


def check_file(
    engine: Engine, design: EnrollmentDesign, rows: ClassesFile | PupilsFile, *,
    actor: str, key: bytes | None = None,
) -> tuple[int, list[Refusal]]:
    """How many rows of ``rows`` would be enrolled now, and every row that would be
    refused (the file's checks and the registry's), without writing anything.

    The very transaction of :func:`enroll_classes` or :func:`enroll_learners` runs, then
    rolls back: the preview cannot disagree with the enrollment it announces (unless the
    registry changes in between). The arms it drew are dropped, never returned: showing
    them before the confirmation would let a file be trimmed to the arms one wants.

    Examples
    --------
    >>> from experiments.enrollment import read_classes
    >>> engine, design = fresh_registry(), core_design()
    >>> text = "class_id,school_uai,level,pupils,academie,education_priority\\n"
    >>> text += "c1,0781234T,CP,24,versailles,REP\\nc2,0781234X,CP,21,versailles,REP\\n"
    >>> accepted, refused = check_file(engine, design, read_classes(text, design), actor="doc")
    >>> accepted, [r.code for r in refused]
    (1, ['uai_check_letter'])
    >>> enrolled_rows_count = check_file(engine, design, read_classes(text, design),
    ...                                  actor="doc")[0]  # nothing was written
    >>> enrolled_rows_count
    1
    """
    now = datetime.now(UTC)
    outcome: _FileOutcome[Any]

    def write(session: Session) -> None:
        if isinstance(rows, PupilsFile):
            if key is None:
                raise ValueError("check_file: a pupils file needs the pseudonym key")
            _enroll_pupil_rows(session, design, rows, key, learners, now=now, actor=actor)
        else:
            _enroll_class_rows(session, design, rows, classes, now=now, actor=actor)
        raise _RolledBack()

    learners = LearnerOutcome(design.experiment_id, refusals=list(rows.refusals))
    classes = EnrollmentOutcome(design.experiment_id, refusals=list(rows.refusals))
    outcome = learners if isinstance(rows, PupilsFile) else classes
    try:
        in_one_transaction(engine, design.experiment_id, write)
    except _RolledBack:
        pass
    return len(outcome.enrolled), sorted(outcome.refusals, key=lambda r: r.line)
