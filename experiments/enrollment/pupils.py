"""Enrollment of pupils for learner-randomised protocols (``population.unit: learner``).

A pupils file is a UTF-8 CSV with a header row and one pupil per line::

    learner_id,class_id,school_uai,level,academie,education_priority,repeater
    gar-7f3a91,c-001,0781234A,CP,versailles,REP,non

``learner_id`` is the pseudonymous id the académie knows the pupil by (as the ENT/GAR hands
it to resources, the id the events carry); ``level`` may be written ``niveau``. The file
also carries the attributes the protocol names (strata, criteria, subgroups). A pupils
file never holds a name, an e-mail or a birth date: a column that looks like one refuses
the whole file, and an id with ``@`` or a space refuses its row.

Each pupil is randomised on its own (stratified permuted blocks, the protocol's seed,
:mod:`experiments.enrollment.randomisation`) and logged in the append-only allocation log with the
random draw, like a class; the log names the draw ``pupil:<sequence>`` and holds no
pseudonym (an erased pupil leaves an anonymous draw). The registry only keeps the pupil's
**per-experiment pseudonym** (:func:`ingest.pseudonym.pseudonymise`, the same key the
stream worker gives the pupil's events in the store); the id of the file is never
stored, it is only echoed back to the académie with its arm (:class:`EnrolledLearner`).

Routing: the stream worker routes events by class. Each class of the file is enrolled in
``enrollments`` with the arm :data:`MIXED_ARM` (its pupils have both arms), so that its
events reach the experiment's store; the pupils' arms live in ``learner_enrollments`` and
the analysis joins them on the learner key (:func:`learner_arms`). The router and the
event contract are unchanged.

Like the classes file, the valid rows of a file are enrolled in one transaction, and
running the same file again enrolls nobody twice.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from experiments.access import reason_problem, record_audit
from experiments.database import RegistryBase
from experiments.enrollment.balance import BalanceReport, BalanceUnit, balance_report
from experiments.enrollment.classes import (
    AllocationRow,
    EnrollmentRow,
    Publish,
    Withdrawal,
    _chunks,
    _compared_attributes,
    _difference,
    _enrolled_elsewhere,
    _enrolled_row,
    _enrolled_rows,
    _insert_many,
    _lock_experiment,
    _mark_withdrawn,
    _randomiser,
    in_one_transaction,
    publish_after,
    record_withdrawal,
    verify_allocations,
)
from experiments.enrollment.files import (
    _SCHOOL_TIMEZONE,
    EnrollmentDesign,
    Refusal,
    _CsvTable,
    _filled_refusal,
    _RowChecker,
    refusal,
)
from experiments.enrollment.randomisation import Unit, stratum_key
from experiments.errors import EnrollmentError

__all__ = [
    "LEARNER_MESSAGES",
    "MIXED_ARM",
    "PUPIL_COLUMNS",
    "EnrolledLearner",
    "LearnerOutcome",
    "PupilRow",
    "PupilsFile",
    "enroll_learners",
    "enrolled_learners",
    "learner_arms",
    "learner_balance",
    "learner_statuses",
    "read_pupils",
    "verify_learner_allocations",
    "withdraw_learner",
]

logger = logging.getLogger(__name__)

#: Columns every pupils file has (``niveau`` is accepted for ``level``).
PUPIL_COLUMNS: tuple[str, ...] = ("learner_id", "class_id", "school_uai", "level", "academie")
#: Arm of a class whose pupils are randomised one by one (both arms in one class).
MIXED_ARM = "*"
# Same pattern as the event contract's learner_id (ingest/contract.py), so every enrolled
# pupil's events match: an opaque token; '@' and spaces never pass.
_LEARNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
# Column names that announce a direct identifier (compared lower-case, accents and
# separators removed): names, e-mails, birth dates, the national pupil id (INE).
_IDENTIFYING_COLUMNS = frozenset({
    "name", "firstname", "lastname", "givenname", "familyname", "fullname", "surname",
    "nom", "prenom", "nomdefamille", "nomusage", "eleve", "email", "mail", "courriel",
    "adressemail", "adressee-mail", "birthdate", "dateofbirth", "dob", "datenaissance",
    "datedenaissance", "naissance", "ddn", "ine", "username", "login", "phone",
    "telephone", "adresse", "address",
})  # fmt: skip

#: code -> (French, English) of the refusals specific to pupils.
LEARNER_MESSAGES: dict[str, tuple[str, str]] = {
    "learner_id_email": (
        "l'identifiant d'élève ressemble à une adresse e-mail (non recopiée ici) : seul "
        "l'identifiant pseudonyme de l'ENT/GAR est accepté, jamais un nom ni une adresse",
        "the learner id looks like an e-mail address (not repeated here): only the "
        "pseudonymous ENT/GAR id is accepted, never a name or an address",
    ),
    "bad_learner_id": (
        "identifiant d'élève « {value} » invalide : lettres, chiffres et . _ : - seulement, "
        "sans espace (identifiant pseudonyme, jamais un nom)",
        "learner id '{value}' is invalid: letters, digits and . _ : - only, no space (a "
        "pseudonymous id, never a name)",
    ),
    "duplicate_learner": (
        "l'élève « {value} » figure déjà à la ligne {first} du fichier",
        "pupil '{value}' already appears on line {first} of the file",
    ),
    "learner_enrolled_differently": (
        "l'élève est déjà inscrit avec « {field} » = « {stored} », pas « {new} » ; une "
        "inscription ne se modifie pas",
        "the pupil is already enrolled with '{field}' = '{stored}', not '{new}'; an "
        "enrollment cannot be edited",
    ),
    "class_enrolled_differently": (
        "la classe « {class_id} » est déjà inscrite avec « {field} » = « {stored} », pas "
        "« {new} »",
        "class '{class_id}' is already enrolled with '{field}' = '{stored}', not '{new}'",
    ),
    "class_withdrawn": (
        "la classe « {class_id} » s'est retirée de l'expérimentation : ses élèves ne "
        "peuvent plus être inscrits",
        "class '{class_id}' has withdrawn from the experiment: its pupils cannot be enrolled",
    ),
    "class_enrolled_elsewhere": (
        "la classe « {class_id} » est déjà inscrite dans l'expérimentation « {other} »",
        "class '{class_id}' is already enrolled in experiment '{other}'",
    ),
}


def _refusal(
    code: str, line: int, class_id: str, field: str, value: str, **details: object
) -> Refusal:
    return _filled_refusal(LEARNER_MESSAGES, code, line, class_id, field, value, details)


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


_LEARNERS = cast(sa.Table, LearnerEnrollmentRow.__table__)
_ENROLLMENTS = cast(sa.Table, EnrollmentRow.__table__)
_ALLOCATIONS = cast(sa.Table, AllocationRow.__table__)


# --- the pupils file --------------------------------------------------------------------


@dataclass(frozen=True)
class PupilRow:
    """A pupil row that passed every check that needs no database.

    ``learner_id`` is the id of the file: kept in memory to answer the académie, never
    stored.
    """

    line: int
    learner_id: str
    class_id: str
    school_uai: str
    academie: str
    level: str
    attributes: Mapping[str, str]
    stratum: str

    def values(self) -> dict[str, object]:
        """The stored values that must match when the same pupil is enrolled again."""
        return {"class_id": self.class_id, "school_uai": self.school_uai,
                "academie": self.academie, "level": self.level,
                "attributes": dict(self.attributes)}  # fmt: skip


@dataclass(frozen=True)
class PupilsFile:
    """A read pupils file: the rows to enroll and the rows refused."""

    path: str
    rows: list[PupilRow]
    refusals: list[Refusal]
    ignored_columns: tuple[str, ...] = ()


def _column_key(name: str) -> str:
    plain = name.lower().translate(str.maketrans("éèêëàâîïôöûüç", "eeeeaaiioouuc"))
    return re.sub(r"[\s_.\-']", "", plain)


def read_pupils(
    source: Path | str,
    design: EnrollmentDesign,
    *,
    name: str | None = None,
    academie: str | None = None,
    today: date | None = None,
) -> PupilsFile:
    """Read a pupils CSV and check each row against the protocol's population.

    Parameters
    ----------
    source
        A path, or the CSV text itself (then ``name`` names it in messages).
    design
        The enrollment design of a learner-randomised experiment.
    academie
        The caller's académie: pupils of another académie's schools are refused.
    today
        Date checked against the enrollment window (default: today in Paris).

    Returns
    -------
    PupilsFile
        Rows that passed, in file order, and refusals with reasons in French and English.

    Raises
    ------
    EnrollmentError
        The protocol does not randomise learners, or the file as a whole is unusable
        (unreadable, not UTF-8, no header, a required column missing or doubled, a
        column that looks like a name, an e-mail or a birth date).

    Examples
    --------
    >>> from experiments.protocol.language import load_protocol
    >>> design = EnrollmentDesign.from_protocol(
    ...     load_protocol("tests/data/enrollment/learner-protocol.yaml"))
    >>> text = ("learner_id,class_id,school_uai,level,academie,education_priority,repeater\\n"
    ...         "L1,c1,0781234A,CP,versailles,REP,non\\n"
    ...         "jean.dupont@ecole.fr,c1,0781234A,CP,versailles,REP,non\\n")
    >>> pupils = read_pupils(text, design, name="pupils.csv")
    >>> [r.class_id for r in pupils.rows], pupils.refusals[0].code
    (['c1'], 'learner_id_email')
    """
    if design.unit != "learner":
        raise EnrollmentError(
            f"experiment {design.experiment_id} randomises by {design.unit}, not by learner: "
            "enroll a file of classes (class_id,school_uai,level,pupils,academie)",
            field="population.unit",
        )  # fmt: skip
    table = _CsvTable(source, name, unnamed="<pupils>")
    name = table.name
    for column in table.columns:
        if _column_key(column) in _IDENTIFYING_COLUMNS:
            raise EnrollmentError(
                f"{name}:1: column '{column}' looks like a direct identifier (name, e-mail, "
                "birth date): a pupils file carries pseudonymous ids only; remove the "
                f"column / la colonne « {column} » ressemble à une donnée identifiante (nom, "
                "e-mail, date de naissance) : retirez-la, seul l'identifiant pseudonyme est "
                "accepté", path=name, line=1, field=column,
            )  # fmt: skip
    ignored = table.check_columns(
        (*PUPIL_COLUMNS, *(a for a in design.attributes if a not in PUPIL_COLUMNS)),
        header="a pupils file's header",
    )
    checker = _RowChecker(design, academie, today or datetime.now(_SCHOOL_TIMEZONE).date())
    rows: list[PupilRow] = []
    refusals: list[Refusal] = []
    first_line: dict[str, int] = {}
    for line, record in table.records(refusals):
        problem = _check_learner_id(record, line)
        # A pupil row is checked against the population like a class row (académie, niveau,
        # criteria, window); "pupils" is the class file's head count, one pupil here.
        problem = problem or checker.check({**record, "pupils": "1"}, line)
        if problem is not None:
            refusals.append(problem)
            continue
        learner_id = record["learner_id"]
        if learner_id in first_line:
            refusals.append(_refusal("duplicate_learner", line, record["class_id"],
                                     "learner_id", learner_id, first=first_line[learner_id]))
            continue
        first_line[learner_id] = line
        attributes = checker.attributes(record)
        rows.append(PupilRow(
            line=line, learner_id=learner_id, class_id=record["class_id"],
            school_uai=record["school_uai"], academie=record["academie"],
            level=record["level"], attributes=attributes,
            stratum=stratum_key(design.strata, {**record, **attributes}),
        ))  # fmt: skip
    refusals.sort(key=lambda r: r.line)
    return PupilsFile(name, rows, refusals, ignored)


def _check_learner_id(record: Mapping[str, str], line: int) -> Refusal | None:
    learner_id, class_id = record["learner_id"], record["class_id"]
    if not learner_id:
        return refusal("empty_field", line, class_id, "learner_id", "")
    if "@" in learner_id:
        # The value is not repeated (in the message, the output or a log): it is personal.
        return _refusal("learner_id_email", line, class_id, "learner_id", "")
    if not _LEARNER_ID.match(learner_id):
        return _refusal("bad_learner_id", line, class_id, "learner_id", learner_id)
    return None


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
class LearnerOutcome:
    """What :func:`enroll_learners` did."""

    experiment_id: str
    enrolled: list[EnrolledLearner] = field(default_factory=list)
    already: list[EnrolledLearner] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    classes: int = 0
    published: int = 0
    pending: int = 0
    publish_error: str | None = None


def _as_learner(row: Mapping[Any, Any], learner_id: str, new: bool) -> EnrolledLearner:
    return EnrolledLearner(
        learner_id=learner_id, learner_key=str(row["learner_key"]),
        class_id=str(row["class_id"]), school_uai=str(row["school_uai"]),
        academie=str(row["academie"]), level=str(row["level"]),
        attributes=dict(row["attributes"]), stratum=str(row["stratum"]), arm=str(row["arm"]),
        status=str(row["status"]), new=new,
    )  # fmt: skip


def _class_problem(
    row: PupilRow, known: Mapping[Any, Any] | None, elsewhere: Mapping[str, str]
) -> Refusal | None:
    if known is None:
        if row.class_id in elsewhere:
            return _refusal("class_enrolled_elsewhere", row.line, row.class_id, "class_id",
                            row.class_id, other=elsewhere[row.class_id])  # fmt: skip
        return None
    if known["status"] == "withdrawn":
        return _refusal("class_withdrawn", row.line, row.class_id, "class_id", row.class_id)
    for name in ("school_uai", "academie", "level"):
        if known[name] != getattr(row, name):
            return _refusal("class_enrolled_differently", row.line, row.class_id, name,
                            getattr(row, name), stored=known[name], new=getattr(row, name))
    return None


def _enroll_rows(
    session: Session, design: EnrollmentDesign, pupils: PupilsFile, key: bytes,
    outcome: LearnerOutcome, *, now: datetime, actor: str,
) -> None:  # fmt: skip
    from ingest.pseudonym import pseudonymise

    enrollments = _ENROLLMENTS
    experiment = design.experiment_id
    _lock_experiment(session, design, now)
    learners = _enrolled_rows(session, _LEARNERS, "learner_key", experiment)
    classes = _enrolled_rows(session, enrollments, "class_id", experiment)
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
                outcome.already.append(_as_learner(known, row.learner_id, new=False))
            else:
                changed, stored = difference
                outcome.refusals.append(_refusal(
                    "learner_enrolled_differently", row.line, row.class_id, changed,
                    row.learner_id, stored=stored, new=row.values()[changed],
                ))  # fmt: skip
            continue
        problem = _class_problem(row, classes.get(row.class_id), elsewhere)
        if problem is not None:
            outcome.refusals.append(problem)
            continue
        if row.class_id not in classes:
            # The class routes its events to this experiment; its pupils have both arms.
            record_class = {
                "experiment_id": experiment, "class_id": row.class_id,
                "school_uai": row.school_uai, "academie": row.academie, "level": row.level,
                "pupils": 0, "attributes": {}, "stratum": MIXED_ARM, "unit_id": row.class_id,
                "arm": MIXED_ARM, "status": "enrolled", "enrolled_at": now,
                "withdrawn_at": None, "published_status": None,
            }  # fmt: skip
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
        }  # fmt: skip
        new_learners.append(record)
        learners[learner_key] = record
        log.add(row.class_id, assignment.allocation)
        outcome.enrolled.append(_as_learner(record, row.learner_id, new=True))
    same = {"experiment_id": experiment, "enrolled_at": now, "withdrawn_at": None}
    if new_classes:
        _insert_many(session, enrollments, new_classes, {**same, "published_status": None})
    if new_learners:
        _insert_many(session, _LEARNERS, new_learners, {**same, "status": "enrolled"})
    log.insert(session)
    if touched:
        # A class row's head count is the number of its pupils enrolled (withdrawn too: ITT).
        counted = (
            sa.select(sa.func.count()).select_from(_LEARNERS)
            .where(_LEARNERS.c.experiment_id == experiment,
                   _LEARNERS.c.class_id == enrollments.c.class_id)
            .scalar_subquery()
        )  # fmt: skip
        session.execute(
            sa.update(enrollments)
            .where(enrollments.c.experiment_id == experiment,
                   enrollments.c.class_id.in_(sorted(touched)))
            .values(pupils=counted)
        )  # fmt: skip
    outcome.classes = len(new_classes)
    record_audit(session, actor, "enrollment.pupils_file", experiment, {
        "file": pupils.path, "enrolled": len(new_learners), "already": len(outcome.already),
        "refused": len(outcome.refusals), "classes": len(new_classes),
    })  # fmt: skip


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
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.protocol.language import load_protocol
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> design = EnrollmentDesign.from_protocol(
    ...     load_protocol("tests/data/enrollment/learner-protocol.yaml"))
    >>> text = "learner_id,class_id,school_uai,level,academie,education_priority,repeater\\n"
    >>> text += "L1,c1,0781234A,CP,versailles,REP,non\\nL2,c1,0781234A,CP,versailles,REP,oui\\n"
    >>> outcome = enroll_learners(engine, design, read_pupils(text, design), key=b"k",
    ...                           actor="doc")
    >>> sorted(p.arm for p in outcome.enrolled), outcome.classes, outcome.pending
    (['lectio', 'usual'], 1, 1)
    """
    if design.unit != "learner":
        raise EnrollmentError(f"experiment {design.experiment_id} does not randomise learners",
                              field="population.unit")  # fmt: skip
    now = now or datetime.now(UTC)
    outcome = LearnerOutcome(design.experiment_id, refusals=list(pupils.refusals))
    in_one_transaction(
        engine, design.experiment_id,
        lambda session: _enroll_rows(session, design, pupils, key, outcome, now=now,
                                     actor=actor),
        before_commit,
    )  # fmt: skip
    outcome.refusals.sort(key=lambda r: r.line)
    logger.info("experiment %s: enrolled %d pupils (%d new classes), %d already enrolled, "
                "%d refused", design.experiment_id, len(outcome.enrolled), outcome.classes,
                len(outcome.already), len(outcome.refusals))  # fmt: skip
    publish_after(engine, design.experiment_id, publish, outcome)
    return outcome


# --- reading back --------------------------------------------------------------------------


def enrolled_learners(
    engine: Engine, experiment_id: str, *, academie: str | None = None,
    as_of: datetime | None = None,
) -> list[EnrolledLearner]:
    """Pupils of an experiment, in enrollment order (``learner_id`` is the learner key).

    ``as_of`` reads the registry as it was then (a scheduled analysis' cut-off): pupils
    enrolled later are left out, a pupil withdrawn later is still ``enrolled``.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.settings import Settings
    >>> enrolled_learners(registry_engine(Settings(state_dir=Path(tempfile.mkdtemp()))), "x")
    []
    """
    query = (sa.select(_LEARNERS).where(_LEARNERS.c.experiment_id == experiment_id)
             .order_by(_LEARNERS.c.id))  # fmt: skip
    if academie is not None:
        query = query.where(_LEARNERS.c.academie == academie)
    if as_of is not None:
        as_of = _in_utc(as_of)
        query = query.where(_LEARNERS.c.enrolled_at <= as_of)
    with engine.connect() as connection:
        rows = list(connection.execute(query).mappings())
    if as_of is None:
        return [_as_learner(row, str(row["learner_key"]), new=False) for row in rows]
    return [_as_learner({**row, "status": "enrolled"} if row["withdrawn_at"] is not None
                        and _in_utc(row["withdrawn_at"]) > as_of else row,
                        str(row["learner_key"]), new=False) for row in rows]


def _in_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive value (SQLite drops offsets; the registry writes UTC)
    is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def learner_statuses(
    engine: Engine, experiment_id: str, learner_keys: Collection[str] | None = None
) -> dict[str, tuple[str, str]]:
    """(arm, status) of the given pupils (None: every pupil), by learner key; pupils not
    enrolled are absent.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> learner_statuses(engine, "x", ["k1"])
    {}
    """
    query = (sa.select(_LEARNERS.c.learner_key, _LEARNERS.c.arm, _LEARNERS.c.status)
             .where(_LEARNERS.c.experiment_id == experiment_id))  # fmt: skip
    keys = None if learner_keys is None else sorted(set(learner_keys))
    chunks = [query] if keys is None else [  # bounded IN lists
        query.where(_LEARNERS.c.learner_key.in_(chunk)) for chunk in _chunks(keys)
    ]
    found: dict[str, tuple[str, str]] = {}
    with engine.connect() as connection:
        for chunk in chunks:
            found.update({str(key): (str(arm), str(status))
                          for key, arm, status in connection.execute(chunk)})  # fmt: skip
    return found


def learner_arms(engine: Engine, experiment_id: str) -> dict[str, str]:
    """Arm of each enrolled pupil, by learner key (the store's ``learner_key``).

    The events of a learner-randomised experiment are stored with the class's arm
    :data:`MIXED_ARM`; the analysis takes each pupil's arm from here (withdrawn pupils
    included: intention to treat).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.settings import Settings
    >>> learner_arms(registry_engine(Settings(state_dir=Path(tempfile.mkdtemp()))), "x")
    {}
    """
    return {key: arm for key, (arm, _) in learner_statuses(engine, experiment_id).items()}


def learner_balance(engine: Engine, design: EnrollmentDesign) -> BalanceReport:
    """Balance of the arms over every pupil enrolled so far (withdrawn ones too: ITT).

    Units are pupils: per arm, pupils and the classes they sit in; standardized
    differences of the declared attributes, and of ``level`` and ``academie`` when the
    population has more than one (a head count is not compared: each unit is one pupil).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.protocol.language import load_protocol
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> design = EnrollmentDesign.from_protocol(
    ...     load_protocol("tests/data/enrollment/learner-protocol.yaml"))
    >>> [(c.arm, c.units) for c in learner_balance(engine, design).counts]
    [('lectio', 0), ('usual', 0)]
    """
    pupils = enrolled_learners(engine, design.experiment_id)
    units = [
        BalanceUnit(p.arm, 0, 1, {**p.attributes, "level": p.level, "academie": p.academie})
        for p in pupils
    ]
    compared = _compared_attributes(design, level=True)
    report = balance_report(units, design.arms, design.control, compared, unit="learner")
    classes = Counter(arm for arm, _ in {(p.arm, p.class_id) for p in pupils})
    return BalanceReport(
        report.unit,
        [replace(c, classes=classes[c.arm]) for c in report.counts],
        [d for d in report.differences if d.attribute != "pupils"],
    )


def verify_learner_allocations(engine: Engine, design: EnrollmentDesign) -> list[str]:
    """:func:`experiments.enrollment.classes.verify_allocations`, and every pupil's arm checked
    against its logged allocation.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.protocol.language import load_protocol
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> design = EnrollmentDesign.from_protocol(
    ...     load_protocol("tests/data/enrollment/learner-protocol.yaml"))
    >>> verify_learner_allocations(engine, design)
    []
    """
    problems = verify_allocations(engine, design)
    log = _ALLOCATIONS
    with engine.connect() as connection:
        logged = {str(unit): str(arm) for unit, arm in connection.execute(
            sa.select(log.c.unit_id, log.c.arm).where(log.c.experiment_id == design.experiment_id)
        )}  # fmt: skip
        pupils = connection.execute(
            sa.select(_LEARNERS.c.unit_id, _LEARNERS.c.class_id, _LEARNERS.c.arm)
            .where(_LEARNERS.c.experiment_id == design.experiment_id)
            .order_by(_LEARNERS.c.id)
        ).all()  # fmt: skip
    for unit_id, class_id, arm in pupils:
        if logged.get(unit_id) != arm:
            problems.append(f"{unit_id} of class {class_id}: arm {arm}, allocated "
                            f"{logged.get(unit_id)}")  # fmt: skip
    return problems


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
    >>> import tempfile
    >>> from pathlib import Path
    >>> from experiments.database import registry_engine
    >>> from experiments.protocol.language import load_protocol
    >>> from experiments.settings import Settings
    >>> engine = registry_engine(Settings(state_dir=Path(tempfile.mkdtemp())))
    >>> design = EnrollmentDesign.from_protocol(
    ...     load_protocol("tests/data/enrollment/learner-protocol.yaml"))
    >>> text = "learner_id,class_id,school_uai,level,academie,education_priority,repeater\\n"
    >>> text += "L1,c1,0781234A,CP,versailles,REP,non\\n"
    >>> _ = enroll_learners(engine, design, read_pupils(text, design), key=b"k", actor="doc")
    >>> withdraw_learner(engine, design, b"k", "L1", reason="parents object",
    ...                  actor="doc").data_policy
    'remove'
    """
    from ingest.pseudonym import pseudonymise

    if not reason.strip():
        raise EnrollmentError("a withdrawal needs a reason", field="reason")
    if problem := reason_problem(reason):
        raise EnrollmentError(problem, field="reason")
    learner_id = learner_id.strip()  # as read_pupils stored it
    if not learner_id:
        raise EnrollmentError("learner id: empty", field="learner_id")
    now = now or datetime.now(UTC)
    learner_key = pseudonymise(key, design.experiment_id, learner_id)
    with Session(engine) as session, session.begin():
        row = _enrolled_row(session, _LEARNERS, design.experiment_id, "learner_key",
                            learner_key, academie=academie)  # fmt: skip
        if row is None or (class_id is not None and row["class_id"] != class_id):
            # Same answer for "not enrolled", "another class" and "another académie's".
            where = f" in class {class_id}" if class_id else ""
            raise EnrollmentError(
                f"pupil {learner_id} is not enrolled{where} in {design.experiment_id} by "
                "your académie", field="learner_id",
            )  # fmt: skip
        _mark_withdrawn(session, _LEARNERS, row, f"pupil {learner_id}", now)
        record_withdrawal(session, design, str(row["class_id"]), learner_key=learner_key,
                          reason=reason.strip(), actor=actor, now=now)
    logger.info("experiment %s: a pupil of class %s withdrew", design.experiment_id,
                row["class_id"])  # fmt: skip
    return Withdrawal(design.experiment_id, str(row["class_id"]), learner_key, str(row["arm"]),
                      design.pupil_data, now)  # fmt: skip
