"""Enrollment: académies enroll classes; the platform checks them and assigns the arms.

The file and its checks are in :mod:`experiments.enrollment.files` (re-exported here).
The valid rows of one file are enrolled, randomised and logged in **one transaction**
(:func:`enroll_classes`): a crash leaves all of them or none. Rows already enrolled with
the same values are reported as such, so re-running a file after a crash or a timeout
never enrolls a class twice. After the commit, each enrollment is handed to ``publish``
(by default, Kafka topic ``preuve.enrollments``); if that fails the enrollments stay
committed and are marked pending, and :func:`publish_pending` publishes them later.

Nobody picks an arm: there is no parameter for it anywhere. A withdrawn class keeps its
arm (intention to treat); see :func:`withdraw`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from experiments.access import reason_problem, record_audit
from experiments.database import RegistryBase, insert_for
from experiments.enrollment.balance import BalanceReport, BalanceUnit, balance_report
from experiments.enrollment.files import (
    BASE_COLUMNS,
    ClassesFile,
    ClassRow,
    EnrollmentDesign,
    Refusal,
    read_classes,
    refusal,
)
from experiments.enrollment.randomisation import Allocation, Randomiser, Unit
from experiments.errors import EnrollmentError, RegistryError

if TYPE_CHECKING:
    from experiments.settings import Settings
    from ingest.contract import EnrollmentMessage

__all__ = [
    "BASE_COLUMNS",
    "ClassRow",
    "ClassesFile",
    "ENROLLING_STATES",
    "FORGOTTEN",
    "EnrolledClass",
    "EnrollmentDesign",
    "EnrollmentOutcome",
    "Publish",
    "PublishReport",
    "PublishingOutcome",
    "Refusal",
    "Withdrawal",
    "enroll_classes",
    "enrolled_classes",
    "enrollment_balance",
    "enrollment_design",
    "in_one_transaction",
    "kafka_publisher",
    "registered_enrollments",
    "pending_messages",
    "publish_after",
    "publish_pending",
    "read_classes",
    "record_withdrawal",
    "registry_pseudonym_key",
    "verify_allocations",
    "withdraw",
    "withdrawn_pupil_keys",
]

logger = logging.getLogger(__name__)

Publish = Callable[[Sequence["EnrollmentMessage"]], int]
"""Publishes enrollment records and returns how many were durably written."""

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


_ENROLLMENTS = cast(sa.Table, EnrollmentRow.__table__)
_ALLOCATIONS = cast(sa.Table, AllocationRow.__table__)
_DESIGNS = cast(sa.Table, EnrollmentDesignRow.__table__)


# --- which protocol --------------------------------------------------------------------

#: Lifecycle states in which classes may be enrolled (late enrollments while running).
ENROLLING_STATES = ("registered", "enrolling", "running")


def enrollment_design(
    engine: Engine, experiment: str, protocol_path: Path | None = None
) -> tuple[EnrollmentDesign, str | None]:
    """The enrollment design of ``experiment`` and a warning to show, if any.

    The design comes from the registry (the protocol version in force), and the
    experiment must be in one of :data:`ENROLLING_STATES`. ``protocol_path`` enrolls an
    experiment that is not in the registry against a protocol file (demos, dry runs; the
    warning says so); for a registered experiment it must be the registered version.

    Raises
    ------
    EnrollmentError
        The experiment is unknown (and no protocol file is given), not in an enrolling
        state, or the file is not the registered protocol.
    ProtocolError
        The protocol file is invalid.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> design, warning = enrollment_design(
    ...     engine, "fluence-cp-2027", Path("protocols/fluence-cp-2027.yaml"))
    >>> design.seed, warning.startswith("experiment fluence-cp-2027 is not registered")
    (20270901, True)
    """
    from experiments.protocol.language import load_protocol
    from experiments.registry import get_experiment, registered_protocol

    try:
        record = get_experiment(engine, experiment)
    except RegistryError:
        record = None
    if record is None:
        if protocol_path is None:
            raise EnrollmentError(
                f"experiment {experiment} is not in the registry: register its protocol "
                "(preuve protocol register) or pass --protocol PATH", field="experiment",
            )  # fmt: skip
        protocol = load_protocol(protocol_path)
        if protocol.id != experiment:
            raise EnrollmentError(
                f"{protocol_path}: protocol id is {protocol.id!r}, not {experiment!r}",
                path=str(protocol_path), field="id",
            )  # fmt: skip
        warning = (f"experiment {experiment} is not registered: enrolling against "
                   f"{protocol_path} (sha256 {protocol.sha256[:12]}), not a locked protocol")
        return EnrollmentDesign.from_protocol(protocol), warning
    if record.state not in ENROLLING_STATES:
        raise EnrollmentError(
            f"experiment {experiment} is {record.state}: classes can be enrolled when it is "
            f"{', '.join(ENROLLING_STATES)}", field="state",
        )  # fmt: skip
    registered = registered_protocol(engine, experiment).protocol
    if protocol_path is not None and load_protocol(protocol_path).sha256 != registered.sha256:
        raise EnrollmentError(
            f"{protocol_path} is not the registered protocol of {experiment} (version "
            f"{record.current_version}); drop --protocol to use the registered one",
            path=str(protocol_path),
        )  # fmt: skip
    return EnrollmentDesign.from_protocol(registered), None



# --- enrolling -----------------------------------------------------------------------


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
class EnrollmentOutcome:
    """What :func:`enroll_classes` did."""

    experiment_id: str
    enrolled: list[EnrolledClass] = field(default_factory=list)
    already: list[EnrolledClass] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    published: int = 0
    pending: int = 0
    publish_error: str | None = None


def _lock_experiment(session: Session, design: EnrollmentDesign, now: datetime) -> None:
    # Insert-if-missing then UPDATE: the first statement takes SQLite's write lock (on
    # PostgreSQL a concurrent first insert waits on the key, then does nothing), the
    # UPDATE takes the row lock, all before anything is read; so two enrollments of one
    # experiment run one after the other and never draw the same block position twice.
    table = _DESIGNS
    session.execute(
        insert_for(session.connection(), table).values(
            experiment_id=design.experiment_id, resource_id=design.resource_id,
            fingerprint=design.fingerprint(),
            design={"unit": design.unit, "strata": list(design.strata), "arms": list(design.arms),
                    "ratios": list(design.ratios), "seed": design.seed,
                    "control": design.control},
            first_enrolled_at=now, last_enrolled_at=now,
        ).on_conflict_do_nothing(index_elements=["experiment_id"])
    )  # fmt: skip
    session.execute(
        sa.update(table).where(table.c.experiment_id == design.experiment_id)
        .values(last_enrolled_at=now)
    )  # fmt: skip
    stored = session.execute(
        sa.select(table.c.fingerprint, table.c.first_enrolled_at)
        .where(table.c.experiment_id == design.experiment_id)
    ).one()  # fmt: skip
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
    :mod:`experiments.enrollment.pupils`)."""
    log = _ALLOCATIONS
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
        })  # fmt: skip

    def insert(self, session: Session) -> None:
        """Insert the rows logged so far (one statement), in ``session``'s transaction."""
        if self.rows:
            _insert_many(session, _ALLOCATIONS, self.rows,
                         {"experiment_id": self.experiment_id, "allocated_at": self.now})


def _chunks(items: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _enrolled_elsewhere(
    session: Session, experiment_id: str, class_ids: Sequence[str]
) -> dict[str, str]:
    # The router is keyed by class: a class can be in one running experiment at a time.
    table = _ENROLLMENTS
    found: dict[str, str] = {}
    for chunk in _chunks(class_ids):
        for class_id, other in session.execute(
            sa.select(table.c.class_id, table.c.experiment_id).where(
                table.c.class_id.in_(chunk),
                table.c.experiment_id != experiment_id,
                table.c.status == "enrolled",
            )
        ):
            found[class_id] = other
    return found


def _as_enrolled(row: Mapping[Any, Any], new: bool) -> EnrolledClass:
    return EnrolledClass(
        class_id=str(row["class_id"]), school_uai=str(row["school_uai"]),
        academie=str(row["academie"]), level=str(row["level"]), pupils=int(row["pupils"]),
        attributes=dict(row["attributes"]),
        stratum=str(row["stratum"]), arm=str(row["arm"]), status=str(row["status"]), new=new,
    )  # fmt: skip


def _difference(
    known: Mapping[Any, Any], values: Mapping[str, object]
) -> tuple[str, object] | None:
    """The first of ``values`` (a row of the file) that the enrolled row ``known`` holds
    otherwise, and the value it holds; None when the row is enrolled identically (shared
    with :mod:`experiments.enrollment.pupils`)."""
    for name, value in values.items():
        stored = dict(known[name]) if name == "attributes" else known[name]
        if stored != value:
            return name, stored
    return None


def _enrolled_rows(
    session: Session, table: sa.Table, key: str, experiment_id: str
) -> dict[str, Mapping[Any, Any]]:
    """The rows of ``experiment_id`` in ``table`` (``enrollments``, or the pupils'
    ``learner_enrollments``), by their column ``key`` (shared with
    :mod:`experiments.enrollment.pupils`)."""
    return {
        row[key]: row
        for row in session.execute(
            sa.select(table).where(table.c.experiment_id == experiment_id)
        ).mappings()
    }


def _enrolled_row(
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
    :func:`experiments.enrollment.pupils.withdraw_learner`)."""
    row = session.execute(
        sa.select(table).where(table.c.experiment_id == experiment_id, table.c[key] == value)
    ).mappings().first()
    if row is None or (academie is not None and row["academie"] != academie):
        return None
    return row


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


def _enroll_rows(
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
    existing = _enrolled_rows(session, _ENROLLMENTS, "class_id", design.experiment_id)
    elsewhere = _enrolled_elsewhere(
        session, design.experiment_id,
        [r.class_id for r in classes.rows if r.class_id not in existing],
    )  # fmt: skip
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
                outcome.already.append(_as_enrolled(known, new=False))
            else:
                changed, stored = difference
                outcome.refusals.append(refusal(
                    "enrolled_differently", row.line, row.class_id, changed,
                    str(row.values()[changed]), stored=stored,
                ))  # fmt: skip
            continue
        if row.class_id in elsewhere:
            outcome.refusals.append(refusal(
                "enrolled_elsewhere", row.line, row.class_id, "class_id", row.class_id,
                other=elsewhere[row.class_id],
            ))  # fmt: skip
            continue
        school_stratum = school_strata.setdefault(row.cluster, row.stratum)
        if school_stratum != row.stratum:
            outcome.refusals.append(refusal(
                "school_stratum_conflict", row.line, row.class_id, ",".join(design.strata),
                row.stratum, school=row.school_uai, stratum=school_stratum,
            ))  # fmt: skip
            continue
        assignment = randomiser.assign(Unit(row.class_id, row.cluster, row.stratum))
        record = {
            "experiment_id": design.experiment_id, "class_id": row.class_id,
            "school_uai": row.school_uai, "academie": row.academie, "level": row.level,
            "pupils": row.pupils, "attributes": dict(row.attributes), "stratum": row.stratum,
            "unit_id": row.cluster, "arm": assignment.arm, "status": "enrolled",
            "enrolled_at": now, "withdrawn_at": None, "published_status": None,
        }  # fmt: skip
        new_rows.append(record)
        existing[row.class_id] = record  # a later duplicate in the same call is "already"
        log.add(row.class_id, assignment.allocation)
        outcome.enrolled.append(_as_enrolled(record, new=True))
    if new_rows:
        _insert_many(session, _ENROLLMENTS, new_rows, {
            "experiment_id": design.experiment_id, "status": "enrolled", "enrolled_at": now,
            "withdrawn_at": None, "published_status": None,
        })  # fmt: skip
    log.insert(session)
    record_audit(session, actor, "enrollment.file", design.experiment_id, {
        "file": classes.path, "enrolled": len(new_rows), "already": len(outcome.already),
        "refused": len(outcome.refusals),
    })  # fmt: skip


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
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.protocol.language import load_protocol
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> design = EnrollmentDesign.from_protocol(load_protocol("protocols/fluence-cp-2027.yaml"))
    >>> text = "class_id,school_uai,level,pupils,academie,education_priority\\n"
    >>> text += "c1,0781234A,CP,24,versailles,REP\\nc2,0781234A,CP,21,versailles,REP\\n"
    >>> outcome = enroll_classes(engine, design, read_classes(text, design), actor="doc")
    >>> sorted(c.arm for c in outcome.enrolled), outcome.pending
    (['lectio', 'usual'], 2)
    """
    now = now or datetime.now(UTC)
    outcome = EnrollmentOutcome(design.experiment_id, refusals=list(classes.refusals))
    in_one_transaction(
        engine, design.experiment_id,
        lambda session: _enroll_rows(session, design, classes, outcome, now=now, actor=actor),
        before_commit,
    )  # fmt: skip
    outcome.refusals.sort(key=lambda r: r.line)
    logger.info(
        "experiment %s: enrolled %d classes, %d already enrolled, %d refused",
        design.experiment_id, len(outcome.enrolled), len(outcome.already), len(outcome.refusals),
    )
    publish_after(engine, design.experiment_id, publish, outcome)
    return outcome


class PublishingOutcome(Protocol):
    """The publishing fields shared by the outcomes of a classes and a pupils file."""

    published: int
    pending: int
    publish_error: str | None


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


def publish_after(
    engine: Engine, experiment_id: str, publish: Publish | None, outcome: PublishingOutcome
) -> None:
    """After the commit: publish what is pending (unless ``publish`` is None) and count
    what is left pending, into ``outcome``."""
    if publish is not None:
        report = publish_pending(engine, experiment_id, publish)
        outcome.published, outcome.publish_error = report.published, report.error
    outcome.pending = _count_pending(engine, experiment_id)


# --- reading back ---------------------------------------------------------------------


def enrolled_classes(
    engine: Engine,
    experiment_id: str,
    *,
    academie: str | None = None,
    arms: Sequence[str] | None = None,
) -> list[EnrolledClass]:
    """Classes of an experiment, in enrollment order, optionally of one académie or arms.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.settings import Settings
    >>> enrolled_classes(registry_engine(Settings(state_dir=Path(tempfile.mkdtemp()))), "x")
    []
    """
    table = _ENROLLMENTS
    query = sa.select(table).where(table.c.experiment_id == experiment_id).order_by(table.c.id)
    if academie is not None:
        query = query.where(table.c.academie == academie)
    if arms is not None:
        query = query.where(table.c.arm.in_(list(arms)))
    with engine.connect() as connection:
        return [_as_enrolled(row, new=False) for row in connection.execute(query).mappings()]


def enrollment_balance(engine: Engine, design: EnrollmentDesign) -> BalanceReport:
    """Balance of the arms over every unit enrolled so far (withdrawn ones too: ITT).

    Compared attributes: ``pupils``, the declared unit attributes, and ``level`` and
    ``academie`` when the population has more than one.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.protocol.language import load_protocol
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> design = EnrollmentDesign.from_protocol(load_protocol("protocols/fluence-cp-2027.yaml"))
    >>> [c.units for c in enrollment_balance(engine, design).counts]
    [0, 0]
    """
    if design.unit == "learner":
        from experiments.enrollment.pupils import learner_balance

        return learner_balance(engine, design)
    units: dict[str, BalanceUnit] = {}
    for c in enrolled_classes(engine, design.experiment_id):
        attributes = {**c.attributes, "level": c.level, "academie": c.academie}
        key = c.school_uai if design.unit == "school" else c.class_id
        known = units.get(key)
        units[key] = BalanceUnit(c.arm, 1, c.pupils, attributes) if known is None else (
            BalanceUnit(known.arm, known.classes + 1, known.pupils + c.pupils, known.attributes)
        )
    # A school mixes levels: its level is not an attribute of the unit.
    compared = _compared_attributes(design, level=design.unit != "school")
    return balance_report(list(units.values()), design.arms, design.control, compared,
                          unit=design.unit)  # fmt: skip


def _compared_attributes(design: EnrollmentDesign, *, level: bool) -> list[str]:
    """What a balance report compares: the declared unit attributes, then ``level`` (if
    ``level``) and ``academie`` when the population has more than one (shared with
    :func:`experiments.enrollment.pupils.learner_balance`)."""
    compared = list(design.attributes)
    if level and len(design.levels) > 1:
        compared.append("level")
    if len(design.academies) > 1:
        compared.append("academie")
    return compared


def verify_allocations(engine: Engine, design: EnrollmentDesign) -> list[str]:
    """Replay the allocation log from the protocol alone; return every discrepancy.

    Each logged allocation is re-drawn from the scheme (seed, arms, ratios), its stratum
    and its rank in the log, and must give the same block, position, draw and arm; every
    enrollment must carry its unit's logged arm. An empty list means the assignment is
    exactly what the protocol and the enrollment order produce.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.protocol.language import load_protocol
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> design = EnrollmentDesign.from_protocol(load_protocol("protocols/fluence-cp-2027.yaml"))
    >>> text = "class_id,school_uai,level,pupils,academie,education_priority\\n"
    >>> text += "c1,0781234A,CP,24,versailles,REP\\nc2,0781234A,CP,21,versailles,REP\\n"
    >>> _ = enroll_classes(engine, design, read_classes(text, design), actor="doc")
    >>> verify_allocations(engine, design)
    []
    """
    randomiser = Randomiser(design.scheme)
    problems: list[str] = []
    arm_of: dict[str, str] = {}
    with engine.connect() as connection:
        log = connection.execute(
            sa.select(_ALLOCATIONS).where(_ALLOCATIONS.c.experiment_id == design.experiment_id)
            .order_by(_ALLOCATIONS.c.sequence)
        ).mappings().all()  # fmt: skip
        enrolled = connection.execute(
            sa.select(_ENROLLMENTS.c.class_id, _ENROLLMENTS.c.unit_id, _ENROLLMENTS.c.arm)
            .where(_ENROLLMENTS.c.experiment_id == design.experiment_id)
        ).all()  # fmt: skip
    for row in log:
        a = randomiser.assign(Unit(row["class_id"], row["unit_id"], row["stratum"])).allocation
        arm_of[row["unit_id"]] = row["arm"]
        logged = (row["block"], row["position"], row["draw"], row["arm"])
        if a is None or (a.block, a.position, a.draw, a.arm) != logged:
            replayed = None if a is None else (a.block, a.position, a.draw, a.arm)
            problems.append(f"allocation {row['sequence']} ({row['unit_id']}): logged "
                            f"{logged}, the protocol gives {replayed}")  # fmt: skip
    for class_id, unit_id, arm in enrolled:
        if arm == "*":  # a class of a learner design: its pupils' arms are checked apart
            continue
        if arm_of.get(unit_id) != arm:
            problems.append(f"class {class_id}: arm {arm}, its unit {unit_id} was allocated "
                            f"{arm_of.get(unit_id)}")  # fmt: skip
    return problems


# --- publishing -------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishReport:
    """What :func:`publish_pending` published, and the error if it could not."""

    published: int
    error: str | None


def pending_messages(engine: Engine, experiment_id: str) -> list[EnrollmentMessage]:
    """Enrollment records whose current status has not been published yet.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.settings import Settings
    >>> pending_messages(registry_engine(Settings(state_dir=Path(tempfile.mkdtemp()))), "x")
    []
    """
    from ingest.contract import EnrollmentMessage

    table = _ENROLLMENTS
    designs = _DESIGNS
    with engine.connect() as connection:
        resource = connection.execute(
            sa.select(designs.c.resource_id).where(designs.c.experiment_id == experiment_id)
        ).scalar()
        rows = connection.execute(
            sa.select(table).where(table.c.experiment_id == experiment_id, _unpublished(table))
            .order_by(table.c.id)
        ).mappings().all()  # fmt: skip
    return [
        EnrollmentMessage(
            class_id=row["class_id"], experiment_id=experiment_id, resource_id=str(resource),
            arm=row["arm"], school_uai=row["school_uai"], academie=row["academie"],
            status=row["status"], at=_utc(row["withdrawn_at"] or row["enrolled_at"]),
        )  # fmt: skip
        for row in rows
    ]


#: ``enrollments.published_status`` of an enrollment that a purge or an erasure made the
#: router forget (a tombstone in ``preuve.enrollments``): it is never published again.
FORGOTTEN = "forgotten"


def _unpublished(table: sa.Table) -> sa.ColumnElement[bool]:
    status = table.c.published_status
    return sa.or_(status.is_(None), sa.and_(status != table.c.status, status != FORGOTTEN))


def _utc(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; the registry only ever stores UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _count_pending(engine: Engine, experiment_id: str) -> int:
    table = _ENROLLMENTS
    with engine.connect() as connection:
        return int(connection.execute(
            sa.select(sa.func.count()).select_from(table)
            .where(table.c.experiment_id == experiment_id, _unpublished(table))
        ).scalar() or 0)  # fmt: skip


def publish_pending(engine: Engine, experiment_id: str, publish: Publish) -> PublishReport:
    """Publish every enrollment of ``experiment_id`` whose status is not published yet.

    ``publish`` signals a broker it cannot reach or write to with
    :class:`ingest.errors.IngestError` (``BrokerError``) or ``OSError``; the records then
    stay pending. Publishing twice is harmless: the topic is keyed (and compacted) by class, and the
    router keeps the latest record of each class.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> publish_pending(engine, "x", lambda messages: len(messages))
    PublishReport(published=0, error=None)
    """
    from ingest.errors import IngestError

    messages = pending_messages(engine, experiment_id)
    if not messages:
        return PublishReport(0, None)
    try:
        written = publish(messages)
    except (IngestError, OSError) as exc:
        logger.warning("experiment %s: publishing %d enrollments failed: %s",
                       experiment_id, len(messages), exc)  # fmt: skip
        return PublishReport(0, f"{type(exc).__name__}: {exc}")
    if written != len(messages):
        return PublishReport(written, f"only {written} of {len(messages)} records were written")
    table = _ENROLLMENTS
    with Session(engine) as session, session.begin():
        session.execute(
            sa.update(table)
            .where(table.c.experiment_id == experiment_id,
                   table.c.class_id == sa.bindparam("c"), table.c.status == sa.bindparam("s"))
            .values(published_status=sa.bindparam("s")),
            [{"c": m.class_id, "s": m.status} for m in messages],
        )  # fmt: skip
    logger.info("experiment %s: published %d enrollment records", experiment_id, written)
    return PublishReport(written, None)


def kafka_publisher(settings: Settings) -> Publish:
    """The default ``publish``: one long-lived kafka-python producer (the ``enrollment``
    principal's, :class:`ingest.kafka.producer.EnrollmentPublisher`) to
    ``settings.topics.enrollments``, acks=all.

    kafka-python's errors are raised as :class:`ingest.errors.BrokerError`, which
    :func:`publish_pending` turns into pending records.

    Examples
    --------
    >>> from experiments.settings import Settings
    >>> callable(kafka_publisher(Settings()))
    True
    """
    from kafka.errors import KafkaError

    from ingest.errors import BrokerError
    from ingest.kafka.producer import EnrollmentPublisher

    publisher = EnrollmentPublisher(settings)  # its producer is made at the first call

    def publish(messages: Sequence[EnrollmentMessage]) -> int:
        try:
            return publisher.publish(messages)
        except KafkaError as exc:  # kafka-python's errors, in the ingest vocabulary
            raise BrokerError(f"Kafka: {exc}") from exc

    return publish


def registered_enrollments(
    engine: Engine, messages: Sequence[EnrollmentMessage]
) -> set[EnrollmentMessage]:
    """The records of ``messages`` that the registry holds: same class, experiment,
    resource and arm (the stream worker ignores the others: forged or stray records).

    Examples
    --------
    >>> import tempfile
    >>> from datetime import UTC, datetime
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.settings import Settings
    >>> from ingest.contract import EnrollmentMessage
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> forged = EnrollmentMessage(class_id="cls-1", experiment_id="x", resource_id="r",
    ...     arm="a", school_uai="0750001A", academie="paris", at=datetime.now(UTC))
    >>> registered_enrollments(engine, [forged])
    set()
    """
    table, designs = _ENROLLMENTS, _DESIGNS
    held: set[tuple[str, str, str, str]] = set()
    with engine.connect() as connection:
        for chunk in _chunks(sorted({m.class_id for m in messages})):
            rows = connection.execute(
                sa.select(table.c.class_id, table.c.experiment_id, designs.c.resource_id,
                          table.c.arm)
                .join(designs, designs.c.experiment_id == table.c.experiment_id)
                .where(table.c.class_id.in_(chunk))
            )  # fmt: skip
            held.update((r.class_id, r.experiment_id, r.resource_id, r.arm) for r in rows)
    return {m for m in messages
            if (m.class_id, m.experiment_id, m.resource_id, m.arm) in held}



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
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.settings import Settings
    >>> from ingest.pseudonym import load_pseudonym_key
    >>> settings = Settings(state_dir=Path(tempfile.mkdtemp()))
    >>> registry_pseudonym_key(registry_engine(settings)) == load_pseudonym_key(settings)
    True
    """
    from experiments.settings import Settings
    from ingest.pseudonym import load_pseudonym_key

    if engine.dialect.name == "sqlite" and engine.url.database:
        return load_pseudonym_key(Settings(state_dir=Path(engine.url.database).parent))
    return load_pseudonym_key(Settings())


def withdrawn_pupil_keys(engine: Engine, experiment_id: str, *,
                         data_policy: str | None = None) -> set[str]:
    """Pseudonyms of the pupils withdrawn from an experiment (all of them, or those of one
    ``data_policy``), as the withdrawals table stores them: :func:`withdraw` records the
    pseudonym, never the id as given; rows written before that were re-keyed by migration
    enrollment_0004.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> withdrawn_pupil_keys(engine, "x", data_policy="remove")
    set()
    """
    query = sa.select(WithdrawalRow.learner_id).where(
        WithdrawalRow.experiment_id == experiment_id, WithdrawalRow.scope == "pupil",
        WithdrawalRow.learner_id.is_not(None))
    if data_policy is not None:
        query = query.where(WithdrawalRow.data_policy == data_policy)
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
    ))  # fmt: skip
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
    (:func:`experiments.enrollment.pupils.withdraw_learner`, the same record). What
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
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.protocol.language import load_protocol
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> design = EnrollmentDesign.from_protocol(load_protocol("protocols/fluence-cp-2027.yaml"))
    >>> text = "class_id,school_uai,level,pupils,academie,education_priority\\n"
    >>> text += "c1,0781234A,CP,24,versailles,REP\\n"
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
        from experiments.enrollment.pupils import withdraw_learner

        return withdraw_learner(
            engine, design, key if key is not None else registry_pseudonym_key(engine),
            learner_id, reason=reason, actor=actor, class_id=class_id, academie=academie,
            now=now,
        )  # fmt: skip
    learner_key: str | None = None
    if learner_id is not None:
        from ingest.pseudonym import pseudonymise

        learner_key = pseudonymise(key if key is not None else registry_pseudonym_key(engine),
                                   design.experiment_id, learner_id)
    now = now or datetime.now(UTC)
    with Session(engine) as session, session.begin():
        row = _enrolled_row(session, _ENROLLMENTS, design.experiment_id, "class_id", class_id,
                            academie=academie)  # fmt: skip
        if row is None:
            raise EnrollmentError(
                f"class {class_id} is not enrolled in {design.experiment_id} by your académie",
                field="class_id",
            )
        if learner_key is None:
            _mark_withdrawn(session, _ENROLLMENTS, row, f"class {class_id}", now)
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
                "class" if learner_key is None else "one pupil")  # fmt: skip
    return Withdrawal(design.experiment_id, class_id, learner_key, row["arm"], policy, now)
