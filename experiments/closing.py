"""The post-experiment step (issue 19): the researcher's decision, the programme
officer's acknowledgement, and the closing report.

After the final analysis (state ``analysing``), the researcher records what is decided
(``preuve protocol decide EXP --decision generaliser|ajuster|arreter|prolonger --reason
"..."``); the programme officer acknowledges it in the portal (the experiment's
« Décision » page). :func:`experiments.registry.transition_experiment` refuses
``closed`` until both are recorded, whoever asks; :func:`close_experiment` closes and
writes the closing report (French and English) beside the experiment's reports:
``state_dir/reports/<experiment>/closing/closing-<id>.<lang>.html``.

A decision may be recorded again (the researcher changes their mind before closing):
the latest one counts and needs its own acknowledgement. Every decision and
acknowledgement is in the audit log (``experiment.decision``,
``experiment.decision_acknowledgement``).
"""

from __future__ import annotations

import json
import logging
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from experiments.access import record_audit
from experiments.database import RegistryBase
from experiments.errors import RegistryError
from experiments.registry import (
    DECISION_CHOICES,
    ExperimentRow,
    get_experiment,
    registered_protocol,
    transition_experiment,
)

__all__ = [
    "DECISION_CHOICES",
    "DECISION_WORDS",
    "DecisionRecord",
    "acknowledge_decision",
    "close_experiment",
    "closing_report_paths",
    "latest_decision",
    "normalise_decision",
    "record_decision",
]

logger = logging.getLogger(__name__)

_MIN_REASON = 10
#: The decisions as written (the database keeps them without accents).
DECISION_WORDS: dict[str, str] = {"generaliser": "généraliser", "ajuster": "ajuster",
                                  "arreter": "arrêter", "prolonger": "prolonger"}
#: The state in which a decision is recorded and acknowledged: after the final analysis.
_DECIDING_STATE = "analysing"


class DecisionRow(RegistryBase):
    __tablename__ = "post_experiment_decisions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(sa.String(63), index=True)
    decision: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.Text)
    decided_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    decided_by: Mapped[str] = mapped_column(sa.String(256))
    acknowledged_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True),
                                                             nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(sa.String(256), nullable=True)


@dataclass(frozen=True)
class DecisionRecord:
    """A recorded post-experiment decision."""

    id: int
    experiment_id: str
    decision: str
    reason: str
    decided_at: datetime
    decided_by: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None


def _utc(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:  # SQLite keeps no offset; we store UTC
        return moment.replace(tzinfo=UTC)
    return moment


def _record(row: DecisionRow) -> DecisionRecord:
    return DecisionRecord(row.id, row.experiment_id, row.decision, row.reason,
                          _utc(row.decided_at) or row.decided_at, row.decided_by,
                          _utc(row.acknowledged_at), row.acknowledged_by)


def normalise_decision(value: str) -> str:
    """A decision as the database keeps it: lower case, no accents.

    Examples
    --------
    >>> normalise_decision("Généraliser")
    'generaliser'
    >>> normalise_decision("arrêter")
    'arreter'
    >>> normalise_decision("continuer")
    Traceback (most recent call last):
    ...
    experiments.errors.RegistryError: decision: expecting one of généraliser, ajuster, \
arrêter, prolonger (generaliser, ajuster, arreter, prolonger), got 'continuer'
    """
    plain = "".join(c for c in unicodedata.normalize("NFKD", value.strip().lower())
                    if not unicodedata.combining(c))
    if plain not in DECISION_CHOICES:
        raise RegistryError(
            "decision: expecting one of généraliser, ajuster, arrêter, prolonger "
            f"({', '.join(DECISION_CHOICES)}), got {value!r}", field="decision")
    return plain


def _now() -> datetime:
    return datetime.now(UTC)


def _deciding(session: Session, experiment_id: str, what: str, *, lock: bool = True
              ) -> ExperimentRow:
    # The portal's database role may not lock the experiment (SELECT ... FOR UPDATE needs
    # UPDATE on it): an acknowledgement locks the decision's row instead (lock=False).
    row = session.get(ExperimentRow, experiment_id, with_for_update=lock)
    if row is None:
        raise RegistryError(f"{experiment_id}: no such experiment in the registry", field="id")
    if row.state != _DECIDING_STATE:
        raise RegistryError(
            f"{experiment_id}: {row.state}; {what} after the final analysis, while the "
            f"experiment is {_DECIDING_STATE} (preuve protocol advance {experiment_id} "
            f"{_DECIDING_STATE})", field="state")
    return row


def _latest_row(session: Session, experiment_id: str, *, lock: bool = False
                ) -> DecisionRow | None:
    query = (sa.select(DecisionRow).where(DecisionRow.experiment_id == experiment_id)
             .order_by(DecisionRow.id.desc()).limit(1))
    return session.scalars(query.with_for_update() if lock else query).first()


def record_decision(engine: Engine, experiment_id: str, decision: str, reason: str,
                    actor: str = "researcher:cli") -> DecisionRecord:
    """Record the researcher's post-experiment decision (the latest one counts).

    Raises
    ------
    RegistryError
        Unknown experiment, not ``analysing``, an unknown decision, or a reason shorter
        than 10 characters.
    """
    choice = normalise_decision(decision)
    reason = reason.strip()
    if len(reason) < _MIN_REASON:
        raise RegistryError(
            f"{experiment_id}: a decision states its reason ({_MIN_REASON} characters at "
            f"least), got {reason!r}", field="reason")
    with Session(engine) as session:
        _deciding(session, experiment_id, "a decision is recorded")
        row = DecisionRow(experiment_id=experiment_id, decision=choice, reason=reason,
                          decided_at=_now(), decided_by=actor)
        session.add(row)
        session.flush()
        record_audit(session, actor, "experiment.decision", experiment_id,
                     {"decision": choice, "reason": reason, "id": row.id})
        record = _record(row)
        session.commit()
    logger.info("experiment %s: decision %s recorded by %s", experiment_id, choice, actor)
    return record


def acknowledge_decision(engine: Engine, experiment_id: str, actor: str,
                         decision_id: int | None = None) -> DecisionRecord:
    """The programme officer's acknowledgement of the latest decision.

    ``decision_id`` (what the officer's page showed) must still be the latest decision:
    a decision recorded again in between is not acknowledged unseen.

    Raises
    ------
    RegistryError
        Unknown experiment, not ``analysing``, no decision recorded, already
        acknowledged, or ``decision_id`` is not the latest.
    """
    with Session(engine) as session:
        _deciding(session, experiment_id, "a decision is acknowledged", lock=False)
        row = _latest_row(session, experiment_id, lock=True)
        if row is None:
            raise RegistryError(
                f"{experiment_id}: no post-experiment decision to acknowledge; the "
                f"researcher records it first (preuve protocol decide {experiment_id} ...)",
                field="decision")
        if decision_id is not None and row.id != decision_id:
            raise RegistryError(
                f"{experiment_id}: the decision changed since the page was shown; "
                "read it again before acknowledging", field="decision")
        if row.acknowledged_at is not None:
            raise RegistryError(f"{experiment_id}: the decision is already acknowledged",
                                field="decision")
        row.acknowledged_at, row.acknowledged_by = _now(), actor
        record_audit(session, actor, "experiment.decision_acknowledgement", experiment_id,
                     {"decision": row.decision, "id": row.id})
        record = _record(row)
        session.commit()
    logger.info("experiment %s: decision acknowledged by %s", experiment_id, actor)
    return record


def latest_decision(engine: Engine, experiment_id: str) -> DecisionRecord | None:
    """The decision that counts (the latest recorded), or None."""
    with Session(engine) as session:
        row = _latest_row(session, experiment_id)
        return None if row is None else _record(row)


def closing_report_paths(state_dir: Path, experiment_id: str) -> dict[str, Path]:
    """Where the closing reports of an experiment are written, by language."""
    folder = state_dir / "reports" / experiment_id / "closing"
    return {lang: folder / f"closing-{experiment_id}.{lang}.html" for lang in ("fr", "en")}


def _final_run(engine: Engine, experiment_id: str) -> Any:
    from experiments.runs.records import list_runs

    done = [r for r in list_runs(engine, experiment_id, "final") if r.status == "done"
            and r.results_json]
    return done[-1] if done else None


def close_experiment(engine: Engine, state_dir: Path, experiment_id: str,
                     actor: str = "researcher:cli", note: str | None = None
                     ) -> dict[str, Path]:
    """Close an experiment and write its closing report (French and English).

    Refused (:class:`RegistryError`, by the registry) without a recorded decision and its
    acknowledgement. Returns the written reports by language.
    """
    from analysis.report.closing import ClosingFacts, render_closing_report

    moved = transition_experiment(engine, experiment_id, "closed", actor, note)
    decision = latest_decision(engine, experiment_id)
    assert decision is not None  # the registry refuses to close without one
    final = _final_run(engine, experiment_id)
    version = final.protocol_version if final is not None else None
    protocol = registered_protocol(engine, experiment_id, version).protocol
    facts = ClosingFacts(
        experiment_id=experiment_id, title=protocol.title, decision=decision.decision,
        reason=decision.reason, decided_by=decision.decided_by,
        decided_at=decision.decided_at.isoformat(),
        acknowledged_by=decision.acknowledged_by,
        acknowledged_at=(decision.acknowledged_at.isoformat()
                         if decision.acknowledged_at else None),
        closed_at=moved.at.isoformat(),
        final_at=final.due_at.isoformat() if final is not None else None,
        final_version=version)
    results = json.loads(final.results_json) if final is not None else None
    paths = closing_report_paths(state_dir, experiment_id)
    for lang, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_closing_report(facts, protocol, results, lang),
                        encoding="utf-8")
    logger.info("experiment %s closed (%s); closing report %s", experiment_id,
                get_experiment(engine, experiment_id).state, paths["fr"])
    return paths
