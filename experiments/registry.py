"""The registry: protocols locked by registration, their versions, and the lifecycle.

An experiment moves ``draft → registered → enrolling → running → analysing → closed``,
one step at a time (:func:`transition_experiment` refuses anything else). Registering
stores the protocol's YAML as written, its canonical JSON and its SHA-256
(:attr:`experiments.protocol.language.Protocol.sha256`) as version 1.

After registration the *design* is locked: the sections :data:`LOCKED_SECTIONS`
(population, design, arms, randomisation, hypotheses, outcomes, analysis, usage). The
brief names population, arms, randomisation, outcomes and analysis; hypotheses, the
roll-out design and the usage definitions (which define compliance, hence the CACE)
are locked too, because changing them after seeing data is the same kind of drift; so are
the questionnaires (their scales are outcomes and covariates) and the named waves (the
primary wave is the confirmatory one). The decision rule (issue 19) is locked too: it is
added or changed by amendment only, and once the intervention has started a rule in force
no longer changes. Re-registering:

- the same protocol: nothing happens (``unchanged``);
- changes outside the design (periods, schedule, retention, budget...): a new version
  of kind ``update`` listing the changed fields;
- changes to the design: refused with :class:`RegistryError` naming the fields.

:func:`amend_protocol` records a change, design included, as a new version of kind
``amendment`` with its stated reason, except what has frozen as the trial advanced
(:func:`frozen_changes`): after the first allocation (a row of the allocation log), the
randomisation's seed and strata, the arms (names, allocation, control) and the
population; once the intervention has started (state ``running`` or later, or the first
day of the intervention period reached, whichever comes first), also which outcome is
primary, the estimand and the primary model. Every amendment is listed, with its date,
fields and reason, under « Écarts au protocole » in each later report. Every version
stays in ``protocol_versions`` (the audit of the protocol), every state change in
``experiment_transitions``, and both are also written to the core ``audit_log``.

Two moves have conditions (issue 19): ``running`` needs a ``decision:`` section in the
protocol in force (a protocol may be registered without one, then amended), and
``closed`` needs the researcher's post-experiment decision recorded and acknowledged by
the programme officer (:mod:`experiments.closing`).
Reports quote the version they follow (:func:`registered_protocol`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from experiments.access import AuditAction, record_audit
from experiments.database import RegistryBase
from experiments.errors import ExperimentError, RegistryError
from experiments.protocol.language import Protocol, parse_protocol
from experiments.protocol.vocabulary import SCHOOL_TIMEZONE

__all__ = [
    "DECISION_CHOICES",
    "LOCKED_SECTIONS",
    "STATES",
    "ExperimentRecord",
    "RegisteredProtocol",
    "Registration",
    "State",
    "TransitionRecord",
    "VersionRecord",
    "amend_protocol",
    "changed_fields",
    "frozen_changes",
    "get_experiment",
    "register_protocol",
    "registered_protocol",
    "save_draft",
    "transition_experiment",
]

logger = logging.getLogger(__name__)

State = Literal["draft", "registered", "enrolling", "running", "analysing", "closed"]
STATES: tuple[State, ...] = ("draft", "registered", "enrolling", "running", "analysing", "closed")
#: The only legal moves: one step forward.
_NEXT: Mapping[str, str] = dict(zip(STATES, STATES[1:], strict=False))

LOCKED_SECTIONS: tuple[str, ...] = (
    "id", "population", "design", "arms", "randomisation", "hypotheses", "outcomes",
    "analysis", "usage", "questionnaires", "waves", "decision",
)

VersionKind = Literal["registration", "update", "amendment"]
_VERSION_ACTIONS: dict[VersionKind, AuditAction] = {
    "registration": "protocol.registration", "update": "protocol.update",
    "amendment": "protocol.amendment",
}


# --- tables ------------------------------------------------------------------------


class ExperimentRow(RegistryBase):
    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(sa.String(63), primary_key=True)
    state: Mapped[str] = mapped_column(sa.String(16))
    current_version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class ProtocolVersionRow(RegistryBase):
    __tablename__ = "protocol_versions"

    experiment_id: Mapped[str] = mapped_column(
        sa.String(63), sa.ForeignKey("experiments.id"), primary_key=True
    )
    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    changed_fields: Mapped[list[str] | None] = mapped_column(sa.JSON, nullable=True)
    source_yaml: Mapped[str] = mapped_column(sa.Text)
    canonical_json: Mapped[str] = mapped_column(sa.Text)
    recorded_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(sa.String(128))


class TransitionRow(RegistryBase):
    __tablename__ = "experiment_transitions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(
        sa.String(63), sa.ForeignKey("experiments.id"), index=True
    )
    from_state: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(sa.String(128))
    note: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


# --- records -----------------------------------------------------------------------


@dataclass(frozen=True)
class VersionRecord:
    """One stored version of a protocol."""

    version: int
    sha256: str
    kind: VersionKind
    reason: str | None
    changed_fields: tuple[str, ...]
    recorded_at: datetime
    actor: str


@dataclass(frozen=True)
class TransitionRecord:
    """One move of the lifecycle."""

    from_state: State | None
    to_state: State
    at: datetime
    actor: str
    note: str | None


@dataclass(frozen=True)
class ExperimentRecord:
    """An experiment as the registry knows it."""

    id: str
    state: State
    current_version: int
    versions: tuple[VersionRecord, ...]
    transitions: tuple[TransitionRecord, ...]

    @property
    def current(self) -> VersionRecord:
        """The version in force."""
        return next(v for v in self.versions if v.version == self.current_version)

    @property
    def registered_at(self) -> datetime | None:
        """When the design was locked (``None`` for a draft)."""
        return next((t.at for t in self.transitions if t.to_state == "registered"), None)


@dataclass(frozen=True)
class Registration:
    """What a registration or an amendment did."""

    experiment_id: str
    version: int
    sha256: str
    outcome: Literal["registered", "unchanged", "updated", "amended", "drafted"]
    changed_fields: tuple[str, ...] = ()


# --- comparing versions ------------------------------------------------------------


def _in_force(version: Any) -> dict[str, Any]:
    """The canonical dump of a stored version as today's language reads it.

    The language gains keys with defaults (``analysis.cluster_correction``,
    ``outcomes[].kind`` …): a version stored before one of them lacks it, and compared as
    stored it would look like a change of the locked design when its own file is
    registered again. Read through the current models, it gets the default it always meant.
    """
    stored: dict[str, Any] = json.loads(version.canonical_json)
    try:
        upgraded: dict[str, Any] = Protocol.model_validate(stored).model_dump(mode="json")
    except (ValidationError, ExperimentError):  # not readable today: compare it as stored
        return stored
    return upgraded


def changed_fields(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths of the fields that differ between two canonical dumps.

    A list whose length changed is reported as a whole.

    Examples
    --------
    >>> changed_fields({"arms": [{"name": "a", "allocation": 1.0}]},
    ...                {"arms": [{"name": "a", "allocation": 2.0}]})
    ['arms[0].allocation']
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                out.append(sub)
            else:
                out += changed_fields(old[key], new[key], sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            c
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for c in changed_fields(a, b, f"{path}[{i}]")
        ]
    return [] if old == new else [path]


def _section(field: str) -> str:
    return field.split(".", 1)[0].split("[", 1)[0]


# --- operations --------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


#: The post-experiment decisions (owned by :mod:`experiments.closing`, which reads this
#: module: a table reference here keeps the import graph acyclic).
_DECISIONS = sa.table("post_experiment_decisions", sa.column("id"),
                      sa.column("experiment_id"), sa.column("decision"),
                      sa.column("decided_at"), sa.column("acknowledged_at"))
DECISION_CHOICES: tuple[str, ...] = ("generaliser", "ajuster", "arreter", "prolonger")
"""The post-experiment decisions a researcher records (généraliser, ajuster, arrêter,
prolonger), spelt without accents on the command line and in the database."""


def _gate(session: Session, row: ExperimentRow, to: State) -> None:
    """Refuse ``running`` without a decision rule, ``closed`` without a recorded,
    acknowledged post-experiment decision (issue 19)."""
    if to == "running":
        current = _current_row(session, row)
        if json.loads(current.canonical_json).get("decision") is None:
            raise RegistryError(
                f"{row.id}: cannot go to running: the protocol in force (version "
                f"{row.current_version}) has no decision: section (who decides, when, and "
                "the rule that will be evaluated on the final results). Add it by amendment: "
                'preuve protocol amend PATH --reason "..."',
                field="decision",
            )
    if to == "closed":
        latest = session.execute(
            sa.select(_DECISIONS.c.decision, _DECISIONS.c.acknowledged_at)
            .where(_DECISIONS.c.experiment_id == row.id)
            .order_by(_DECISIONS.c.id.desc()).limit(1)
        ).first()
        if latest is None:
            raise RegistryError(
                f"{row.id}: cannot close: no post-experiment decision is recorded. The "
                f"researcher records it: preuve protocol decide {row.id} --decision "
                f"{'|'.join(DECISION_CHOICES)} --reason \"...\"",
                field="decision",
            )
        if latest.acknowledged_at is None:
            raise RegistryError(
                f"{row.id}: cannot close: the decision '{latest.decision}' is not "
                "acknowledged yet; the programme officer acknowledges it in the portal "
                f"(/experiences/{row.id}/decision)",
                field="decision",
            )


def _move(
    session: Session, row: ExperimentRow, to: State, actor: str, note: str | None
) -> TransitionRecord:
    if _NEXT.get(row.state) == to:
        _gate(session, row, to)
    if _NEXT.get(row.state) != to:
        allowed = _NEXT.get(row.state)
        raise RegistryError(
            f"{row.id}: cannot go from {row.state} to {to}; "
            + (f"the next state is {allowed}" if allowed else f"{row.state} is final"),
            field="state",
        )
    moved = TransitionRecord(row.state, to, _now(), actor, note)  # type: ignore[arg-type]
    session.add(
        TransitionRow(
            experiment_id=row.id,
            from_state=row.state,
            to_state=to,
            at=moved.at,
            actor=actor,
            note=note,
        )
    )
    record_audit(
        session, actor, "experiment.transition", row.id, {"from": row.state, "to": to, "note": note}
    )
    logger.info("experiment %s: %s -> %s", row.id, row.state, to)
    row.state = to
    row.updated_at = moved.at
    return moved


def _add_version(
    session: Session,
    row: ExperimentRow,
    protocol: Protocol,
    source_yaml: str,
    kind: VersionKind,
    actor: str,
    reason: str | None = None,
    changed: Sequence[str] = (),
) -> int:
    version = row.current_version + 1
    session.add(
        ProtocolVersionRow(
            experiment_id=row.id,
            version=version,
            sha256=protocol.sha256,
            kind=kind,
            reason=reason,
            changed_fields=list(changed) or None,
            source_yaml=source_yaml,
            canonical_json=protocol.canonical_json(),
            recorded_at=_now(),
            actor=actor,
        )
    )
    record_audit(
        session,
        actor,
        _VERSION_ACTIONS[kind],
        row.id,
        {
            "version": version,
            "sha256": protocol.sha256,
            "reason": reason,
            "changed_fields": list(changed),
        },
    )
    row.current_version = version
    row.updated_at = _now()
    return version


def _create(session: Session, protocol: Protocol, source_yaml: str, actor: str) -> ExperimentRow:
    now = _now()
    row = ExperimentRow(
        id=protocol.id, state="draft", current_version=0, created_at=now, updated_at=now
    )
    session.add(row)
    session.add(
        TransitionRow(
            experiment_id=row.id, from_state=None, to_state="draft", at=now, actor=actor, note=None
        )
    )
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise RegistryError(
            f"{protocol.id}: created by someone else at the same time; try again", field="id"
        ) from None
    _add_version(session, row, protocol, source_yaml, "registration", actor)
    return row


def _put_draft(
    session: Session,
    row: ExperimentRow | None,
    protocol: Protocol,
    source_yaml: str,
    actor: str,
) -> ExperimentRow:
    """Create the experiment as a draft, or replace the content of its draft version."""
    if row is None:
        return _create(session, protocol, source_yaml, actor)
    draft = _current_row(session, row)
    draft.sha256, draft.source_yaml = protocol.sha256, source_yaml
    draft.canonical_json, draft.recorded_at = protocol.canonical_json(), _now()
    return row


def _current_row(session: Session, row: ExperimentRow) -> ProtocolVersionRow:
    current = session.get(ProtocolVersionRow, (row.id, row.current_version))
    assert current is not None, f"{row.id}: version {row.current_version} is missing"
    return current


def _commit(session: Session, experiment_id: str) -> None:
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise RegistryError(
            f"{experiment_id}: changed by someone else at the same time; try again",
            field="version",
        ) from None


def save_draft(
    engine: Engine, protocol: Protocol, source_yaml: str, actor: str = "researcher:cli"
) -> Registration:
    """Store (or replace) the draft of an experiment that is not registered yet."""
    with Session(engine) as session:
        row = session.get(ExperimentRow, protocol.id, with_for_update=True)
        if row is not None and row.state != "draft":
            raise RegistryError(
                f"{protocol.id}: already {row.state}; a draft cannot replace it", field="state"
            )
        row = _put_draft(session, row, protocol, source_yaml, actor)
        version = row.current_version
        _commit(session, protocol.id)
    return Registration(protocol.id, version, protocol.sha256, "drafted")


def register_protocol(
    engine: Engine, protocol: Protocol, source_yaml: str, actor: str = "researcher:cli"
) -> Registration:
    """Register a protocol: lock its design, or record a change outside the design.

    Parameters
    ----------
    engine:
        The registry's engine (``experiments.database.registry_engine``).
    protocol:
        The validated protocol.
    source_yaml:
        The file as written (kept with its comments).
    actor:
        Who registers (``role:scope:label``, never a person's name).

    Returns
    -------
    Registration
        ``registered`` (version 1), ``unchanged`` or ``updated`` (a new version).

    Raises
    ------
    RegistryError
        The design changed since registration (the message names the fields), or the
        experiment is closed.
    """
    if "usage" not in protocol.model_fields_set:
        raise RegistryError(
            f"{protocol.id}: usage: a registered protocol declares its usage section (what "
            "counts as using the resource is pre-registered like the outcomes)",
            field="usage",
        )
    with Session(engine) as session:
        row = session.get(ExperimentRow, protocol.id, with_for_update=True)
        if row is None or row.state == "draft":
            row = _put_draft(session, row, protocol, source_yaml, actor)
            _move(session, row, "registered", actor, f"sha256 {protocol.sha256}")
            result = Registration(protocol.id, row.current_version, protocol.sha256, "registered")
        else:
            if row.state == "closed":
                raise RegistryError(
                    f"{protocol.id}: closed; its protocol cannot change", field="state"
                )
            current = _current_row(session, row)
            if current.sha256 == protocol.sha256:
                return Registration(protocol.id, row.current_version, protocol.sha256, "unchanged")
            changed = changed_fields(_in_force(current), protocol.model_dump(mode="json"))
            if not changed:  # the same file, read by a language that gained keys since
                return Registration(protocol.id, row.current_version, current.sha256,
                                    "unchanged")
            locked = [f for f in changed if _section(f) in LOCKED_SECTIONS]
            if locked:
                raise RegistryError(
                    f"{protocol.id}: the design is locked since registration (version "
                    f"{row.current_version} in force); changed: {', '.join(locked)}. "
                    'Record the change as an amendment: preuve protocol amend PATH --reason "..."',
                    field=locked[0],
                )
            version = _add_version(
                session, row, protocol, source_yaml, "update", actor, changed=changed
            )
            result = Registration(protocol.id, version, protocol.sha256, "updated", tuple(changed))
        _commit(session, protocol.id)
    return result


def amend_protocol(
    engine: Engine,
    protocol: Protocol,
    source_yaml: str,
    reason: str,
    actor: str = "researcher:cli",
    *,
    today: date | None = None,
) -> Registration:
    """Record a change of a registered protocol, design included, with its reason.

    The design freezes as the trial advances (:func:`frozen_changes`): after the first
    allocation, the randomisation, the arms and the population; once the intervention
    has started, also which outcome is primary, the estimand and the primary model.
    ``today`` is the school day (Paris) the intervention's start is compared with
    (default: today).

    Raises
    ------
    RegistryError
        No reason, an unknown, draft or closed experiment, nothing changed, or a change
        of a frozen field (the message names the fields).
    """
    reason = reason.strip()
    if len(reason) < 10:
        raise RegistryError(
            f"{protocol.id}: an amendment states its reason (10 characters "
            f"at least), got {reason!r}",
            field="reason",
        )
    with Session(engine) as session:
        row = session.get(ExperimentRow, protocol.id, with_for_update=True)
        if row is None or row.state in ("draft", "closed"):
            state = "not registered" if row is None else row.state
            raise RegistryError(
                f"{protocol.id}: {state}; only a registered, open experiment is amended",
                field="state",
            )
        current = _current_row(session, row)
        if current.sha256 == protocol.sha256:
            raise RegistryError(
                f"{protocol.id}: identical to version {row.current_version}; nothing to amend",
                field="sha256",
            )
        changed = changed_fields(_in_force(current), protocol.model_dump(mode="json"))
        refused = _frozen_refusal(session, row, current, protocol, today)
        if refused is not None:
            raise refused
        version = _add_version(
            session, row, protocol, source_yaml, "amendment", actor, reason=reason, changed=changed
        )
        _commit(session, protocol.id)
    logger.info("experiment %s: amendment, version %d", protocol.id, version)
    return Registration(protocol.id, version, protocol.sha256, "amended", tuple(changed))


# --- what freezes as the trial advances ---------------------------------------------

#: States in which the intervention has started, whatever the calendar says.
_STARTED_STATES = ("running", "analysing", "closed")
_ALLOCATIONS = sa.table("allocation_log", sa.column("experiment_id"),
                        sa.column("allocated_at"))


def _arm_fields(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
                ) -> list[str]:
    """The arms' frozen fields that differ: names, allocation, control (descriptions are
    free)."""
    if len(old) != len(new):
        return ["arms"]
    return [f"arms[{i}].{key}" for i, (a, b) in enumerate(zip(old, new, strict=True))
            for key in ("name", "allocation", "control") if a.get(key) != b.get(key)]


def _primary(dump: Mapping[str, Any]) -> str | None:
    return next((o["id"] for o in dump.get("outcomes", []) if o.get("primary")), None)


def frozen_changes(old: Mapping[str, Any], new: Mapping[str, Any], *, allocated: bool,
                   started: bool) -> list[str]:
    """The fields changed from ``old`` to ``new`` (canonical dumps of two versions:
    ``Protocol.model_dump(mode="json")``) that may no longer change.

    After the first allocation (``allocated``): the randomisation's seed and strata, the
    arms (names, allocation, control) and the population (unit, levels, académies,
    criteria, attributes): changing them would change who is in which arm, or whom the
    finding is about, after the draw. Once the intervention has started (``started``):
    also which outcome is primary, the estimand, the primary model and the decision rule
    (when one is in force), so that nobody
    picks them after seeing data. Compared on the dumps, so that a version registered
    under older validation rules is compared all the same.

    Examples
    --------
    >>> from experiments.protocol.language import load_protocol
    >>> old = load_protocol("protocols/fluence-cp-2027.yaml").model_dump(mode="json")
    >>> new = {**old, "randomisation": {**old["randomisation"], "seed": 1}}
    >>> frozen_changes(old, new, allocated=True, started=False)
    ['randomisation.seed']
    >>> frozen_changes(old, new, allocated=False, started=True)
    []
    """
    fields: list[str] = []
    if allocated:
        fields += [f"randomisation.{key}" for key in ("seed", "strata")
                   if old["randomisation"].get(key) != new["randomisation"].get(key)]
        fields += _arm_fields(old["arms"], new["arms"])
        fields += [f"population.{f}"
                   for f in changed_fields(old["population"], new["population"])]
    if started:
        if old.get("decision") is not None and old.get("decision") != new.get("decision"):
            fields.append("decision")  # the rule is written before the results are known
        if _primary(old) != _primary(new):
            fields.append(f"outcomes[].primary ({_primary(old)} → {_primary(new)})")
        fields += [f"analysis.{key}" for key in ("estimand", "model")
                   if old["analysis"].get(key) != new["analysis"].get(key)]
    return fields


def _frozen_refusal(session: Session, row: ExperimentRow, current: ProtocolVersionRow,
                    protocol: Protocol, today: date | None) -> RegistryError | None:
    """The refusal of an amendment that touches a frozen field, or None.

    The intervention has started when the experiment is ``running`` (or later), or when
    the school day is on or after the start of the intervention period of the version in
    force, whichever comes first: a late ``preuve protocol advance`` must not leave the
    primary outcome open while pupils already use the resource.
    """
    old = _in_force(current)
    new = protocol.model_dump(mode="json")
    first = session.scalar(sa.select(sa.func.min(_ALLOCATIONS.c.allocated_at))
                           .where(_ALLOCATIONS.c.experiment_id == row.id))
    day = today or datetime.now(SCHOOL_TIMEZONE).date()
    start = date.fromisoformat(old["periods"]["intervention"]["start"])
    started = row.state in _STARTED_STATES or day >= start
    by_allocation = frozen_changes(old, new, allocated=first is not None, started=False)
    by_start = frozen_changes(old, new, allocated=False, started=started)
    if not by_allocation and not by_start:
        return None
    why = []
    if by_allocation:
        why.append(f"{', '.join(by_allocation)} (frozen since the first allocation, "
                   f"{_day_of(first)})")
    if by_start:
        why.append(f"{', '.join(by_start)} (frozen since the intervention started: state "
                   f"{row.state}, intervention period from {start})")
    return RegistryError(
        f"{row.id}: an amendment cannot change {'; nor '.join(why)}. Other changes stay "
        "possible with a reason.",
        field=(by_allocation or by_start)[0],
    )


def _day_of(moment: Any) -> str:
    return moment.date().isoformat() if isinstance(moment, datetime) else str(moment)[:10]


def transition_experiment(
    engine: Engine,
    experiment_id: str,
    to_state: State,
    actor: str = "researcher:cli",
    note: str | None = None,
) -> TransitionRecord:
    """Move an experiment one step along its lifecycle.

    Raises
    ------
    RegistryError
        Unknown experiment, unknown state, or a move other than the next step.
    """
    if to_state not in STATES:
        raise RegistryError(
            f"state: expecting one of {', '.join(STATES)}, got {to_state!r}", field="state"
        )
    with Session(engine) as session:
        row = session.get(ExperimentRow, experiment_id, with_for_update=True)
        if row is None:
            raise RegistryError(f"{experiment_id}: no such experiment in the registry", field="id")
        moved = _move(session, row, to_state, actor, note)
        _commit(session, experiment_id)
    return moved


def get_experiment(engine: Engine, experiment_id: str) -> ExperimentRecord:
    """The registry's record of an experiment, with all its versions and transitions."""
    with Session(engine) as session:
        row = session.get(ExperimentRow, experiment_id)
        if row is None:
            raise RegistryError(f"{experiment_id}: no such experiment in the registry", field="id")
        versions = session.scalars(
            sa.select(ProtocolVersionRow)
            .where(ProtocolVersionRow.experiment_id == experiment_id)
            .order_by(ProtocolVersionRow.version)
        ).all()
        transitions = session.scalars(
            sa.select(TransitionRow)
            .where(TransitionRow.experiment_id == experiment_id)
            .order_by(TransitionRow.id)
        ).all()
        return ExperimentRecord(
            id=row.id,
            state=row.state,  # type: ignore[arg-type]
            current_version=row.current_version,
            versions=tuple(
                VersionRecord(
                    v.version,
                    v.sha256,
                    v.kind,  # type: ignore[arg-type]
                    v.reason,
                    tuple(v.changed_fields or ()),
                    v.recorded_at,
                    v.actor,
                )
                for v in versions
            ),
            transitions=tuple(
                TransitionRecord(t.from_state, t.to_state, t.at, t.actor, t.note)  # type: ignore[arg-type]
                for t in transitions
            ),
        )


@dataclass(frozen=True)
class RegisteredProtocol:
    """A stored version of a protocol: the model, its record, and the YAML as written."""

    protocol: Protocol
    version: VersionRecord
    source_yaml: str


def registered_protocol(
    engine: Engine, experiment_id: str, version: int | None = None
) -> RegisteredProtocol:
    """A stored version of an experiment's protocol (default: the one in force).

    Reports use this to say which version they follow (``.version.version``).
    """
    record = get_experiment(engine, experiment_id)
    wanted = record.current_version if version is None else version
    found = next((v for v in record.versions if v.version == wanted), None)
    if found is None:
        raise RegistryError(
            f"{experiment_id}: no version {wanted} (versions 1 to {record.current_version})",
            field="version",
        )
    with Session(engine) as session:
        stored = session.get(ProtocolVersionRow, (experiment_id, wanted))
        assert stored is not None
        text = stored.source_yaml
    # Checked at registration: a programme configured then is still read back.
    protocol = parse_protocol(text, f"{experiment_id}@v{wanted}", programmes=None)
    return RegisteredProtocol(protocol, found, text)
