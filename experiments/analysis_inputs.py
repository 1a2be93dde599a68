"""Analysis inputs taken from an experiment's store and the enrollment registry.

The scheduled analyses read the same tables as ``preuve analyze`` reads from files: this
module writes the three files of DESIGN.md "Offline analysis files" from the registry
and the store, into a private directory, and reads them back with
:mod:`analysis.inputs`. One set of readers and checks serves both paths, and the files
can be handed to a researcher to reproduce a run offline.

Where each table comes from
---------------------------
- **units**: the enrollment registry. ``unit_id`` is the class (``population.unit:
  class``) or its school's UAI (``school``); then ``arm``, ``school_uai``, ``academie``,
  ``level``, ``pupils``, ``status`` (enrolled / withdrawn: a withdrawn class stays in
  its arm, intention to treat) and every enrollment attribute (strata, criteria,
  subgroups). Learner-level randomisation is not read from the store (yet).
- **outcomes**: ``assessment_scored`` events of the store whose ``object_id`` is a
  declared ``measure`` (an outcome's ``id`` or its ``baseline`` measure) and that carry a
  ``score``. The wave follows the protocol's periods, by the school day (Paris) the
  assessment happened: before the intervention starts (the baseline period) →
  ``baseline``; after it ends (the follow-up period, or later) → ``endline``; during the
  intervention → not an outcome (a quiz inside the resource is usage, not a test).
  A learner's first score of a measure in a wave is kept (a retake is practice); a
  learner counts in the unit of their first assessment.
- **usage**: ``daily_usage`` of the store over the intervention period, summed per
  learner and ISO week (``2027-W40``) into active minutes; days without active use
  (a login only) give no row, so that ``weeks`` counts weeks of real use.

Assessment results from another platform enter the store as ``assessment_scored``
events (``object_id`` = the measure, ``score``, ``occurred_at`` = the day of the test),
sent like any other event, with the same pseudonymous learner ids.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from analysis.inputs import (
    AnalysisPlan,
    OutcomeTable,
    UnitTable,
    UsageTable,
    plan_from_protocol,
    read_outcomes,
    read_units,
    read_usage,
)
from experiments.enrollment import EnrolledClass, enrolled_classes
from experiments.errors import StoreError
from experiments.protocol import Protocol
from experiments.settings import Settings
from experiments.store import SCHOOL_TIMEZONE, ExperimentStore, daily_usage_table, events_table

__all__ = [
    "AnalysisFiles",
    "AnalysisInputs",
    "Watermark",
    "read_analysis_inputs",
    "write_analysis_files",
]

logger = logging.getLogger(__name__)

_UNIT_COLUMNS = ("unit_id", "arm", "school_uai", "academie", "level", "pupils", "status")


@dataclass(frozen=True)
class Watermark:
    """How far the data of a run goes: what the store held when it was read."""

    stored_events: int
    latest_event_at: datetime | None
    """Latest ``occurred_at`` of a stored event."""
    latest_stored_at: datetime | None
    """When the latest event was written to the store."""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (ISO 8601 times)."""
        return {
            "stored_events": self.stored_events,
            "latest_event_at": None if self.latest_event_at is None
            else self.latest_event_at.isoformat(),
            "latest_stored_at": None if self.latest_stored_at is None
            else self.latest_stored_at.isoformat(),
        }


@dataclass(frozen=True)
class AnalysisFiles:
    """The three offline files written from the store, and what they cover."""

    units: Path
    outcomes: Path
    usage: Path
    watermark: Watermark
    assessments_ignored: int
    """``assessment_scored`` events of a declared measure not used: during the
    intervention, a retake, or a class that is not enrolled."""


@dataclass(frozen=True)
class AnalysisInputs:
    """The tables of :mod:`analysis.inputs`, read from the files of :class:`AnalysisFiles`."""

    plan: AnalysisPlan
    units: UnitTable
    outcomes: OutcomeTable
    usage: UsageTable | None
    """None when no outcome is stored yet (no learner to attach usage to)."""
    files: AnalysisFiles


def _unit_rows(protocol: Protocol, classes: list[EnrolledClass]) -> tuple[
        list[dict[str, str]], dict[str, str]]:
    """Rows of the units file and the unit of each class."""
    unit = protocol.population.unit
    if unit == "learner":
        raise StoreError(
            f"{protocol.id}: population.unit is learner; scheduled analyses read units of "
            "class or school from the enrollment registry (use preuve analyze with files)",
            field="population.unit",
        )
    rows: dict[str, dict[str, str]] = {}
    unit_of: dict[str, str] = {}
    for enrolled in classes:
        unit_id = enrolled.class_id if unit == "class" else enrolled.school_uai
        unit_of[enrolled.class_id] = unit_id
        if unit_id in rows:  # a school's other class: same arm, pupils add up
            rows[unit_id]["pupils"] = str(int(rows[unit_id]["pupils"]) + enrolled.pupils)
            continue
        row = {str(k): str(v) for k, v in enrolled.attributes.items()}
        row.update(unit_id=unit_id, arm=enrolled.arm, school_uai=enrolled.school_uai,
                   academie=enrolled.academie, level=enrolled.level,
                   pupils=str(enrolled.pupils), status=enrolled.status)
        rows[unit_id] = row
    return list(rows.values()), unit_of


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:  # SQLite drops the offset; the stream worker writes UTC
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _school_day(moment: datetime) -> date:
    return _utc(moment).astimezone(SCHOOL_TIMEZONE).date()


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _write(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _snapshot(engine: Engine) -> Any:
    """A connection whose reads all see one state of the store (a read transaction)."""
    if engine.dialect.name == "postgresql":
        return engine.connect().execution_options(isolation_level="REPEATABLE READ")
    connection = engine.connect()
    # pysqlite only opens transactions before writes; an explicit BEGIN makes the
    # following SELECTs share one WAL snapshot while the stream worker keeps writing.
    connection.exec_driver_sql("BEGIN")
    return connection


def write_analysis_files(
    settings: Settings,
    registry: Engine,
    protocol: Protocol,
    directory: Path,
) -> AnalysisFiles:
    """Write ``units.csv``, ``outcomes.csv`` and ``usage.csv`` of an experiment.

    Parameters
    ----------
    settings
        Where the experiment's store is.
    registry
        The registry's engine (enrollments).
    protocol
        The protocol version the analysis follows (periods, measures, unit).
    directory
        An existing private directory: the files hold pseudonymous learner keys.

    Returns
    -------
    AnalysisFiles
        The paths, the watermark of the store when it was read, and what was left out.
    """
    classes = enrolled_classes(registry, protocol.id)
    if not classes:
        raise StoreError(f"{protocol.id}: no class is enrolled yet; nothing to analyse",
                         field="enrollments")
    unit_rows, unit_of = _unit_rows(protocol, classes)
    named = set(protocol.randomisation.strata) | set(protocol.analysis.subgroups)
    attributes = sorted(({k for r in unit_rows for k in r} | named) - set(_UNIT_COLUMNS))
    measures = sorted({o.id for o in protocol.outcomes}
                      | {o.baseline for o in protocol.outcomes if o.baseline})
    intervention = protocol.periods.intervention
    store = ExperimentStore(settings, protocol.id)
    events = events_table
    usage_table = daily_usage_table
    with _snapshot(store.engine) as connection:
        count, latest, stored = connection.execute(
            sa.select(sa.func.count(), sa.func.max(events.c.occurred_at),
                      sa.func.max(events.c.stored_at)).select_from(events)
        ).one()
        assessments = connection.execute(
            sa.select(events.c.learner_key, events.c.class_id, events.c.object_id,
                      events.c.occurred_at, events.c.score)
            .where(events.c.verb == "assessment_scored", events.c.score.is_not(None),
                   events.c.object_id.in_(measures))
            .order_by(events.c.occurred_at, events.c.event_id)
        ).all()
        daily = connection.execute(
            sa.select(usage_table.c.learner_key, usage_table.c.class_id, usage_table.c.day,
                      usage_table.c.active_seconds)
            .where(usage_table.c.day >= intervention.start,
                   usage_table.c.day <= intervention.end, usage_table.c.active_seconds > 0)
            .order_by(usage_table.c.learner_key, usage_table.c.day)
        ).all()
        connection.rollback()
    watermark = Watermark(int(count), None if latest is None else _utc(latest),
                          None if stored is None else _utc(stored))

    learner_unit: dict[str, str] = {}
    seen: set[tuple[str, str, str]] = set()
    outcome_rows: list[dict[str, str]] = []
    ignored = 0
    for learner, class_id, measure, occurred_at, score in assessments:
        day = _school_day(occurred_at)
        wave = ("baseline" if day < intervention.start
                else "endline" if day > intervention.end else None)
        unit_id = unit_of.get(class_id)
        if wave is None or unit_id is None or (learner, measure, wave) in seen:
            ignored += 1
            continue
        seen.add((learner, measure, wave))
        unit_id = learner_unit.setdefault(learner, unit_id)
        outcome_rows.append({"learner_id": learner, "unit_id": unit_id, "measure": measure,
                             "wave": wave, "score": repr(float(score))})

    weekly: dict[tuple[str, str, str], float] = defaultdict(float)
    for learner, class_id, day, seconds in daily:
        unit_id = learner_unit.get(learner, unit_of.get(class_id))
        if unit_id is None:
            continue
        year, week, _ = _day(day).isocalendar()
        weekly[(learner, unit_id, f"{year}-W{week:02d}")] += float(seconds) / 60.0
    usage_rows = [
        {"learner_id": learner, "unit_id": unit_id, "week": week,
         "active_minutes": repr(minutes)}
        for (learner, unit_id, week), minutes in sorted(weekly.items())
    ]

    files = AnalysisFiles(directory / "units.csv", directory / "outcomes.csv",
                          directory / "usage.csv", watermark, ignored)
    _write(files.units, list(_UNIT_COLUMNS) + attributes, unit_rows)
    _write(files.outcomes, ["learner_id", "unit_id", "measure", "wave", "score"], outcome_rows)
    _write(files.usage, ["learner_id", "unit_id", "week", "active_minutes"], usage_rows)
    logger.info("experiment %s: %d units, %d outcome records, %d usage rows read from the "
                "store (%d events)", protocol.id, len(unit_rows), len(outcome_rows),
                len(usage_rows), watermark.stored_events)
    return files


def read_analysis_inputs(
    settings: Settings, registry: Engine, protocol: Protocol, directory: Path
) -> AnalysisInputs:
    """Write the offline files of an experiment (:func:`write_analysis_files`) and read
    them with :mod:`analysis.inputs`, as ``preuve analyze`` would.

    Raises
    ------
    analysis.errors.InputError
        The store's data breaks a rule of the offline files (the message names the file
        and line).
    StoreError
        Learner-level randomisation (not read from the store).
    """
    files = write_analysis_files(settings, registry, protocol, directory)
    plan = plan_from_protocol(protocol)
    units = read_units(files.units, plan)
    outcomes = read_outcomes(files.outcomes, units)
    # Without outcome records no learner can enter an analysis, and analysis.inputs'
    # read_usage indexes the (empty) learners: its usage would be empty anyway.
    usage = read_usage(files.usage, outcomes, units) if outcomes.n_learners else None
    return AnalysisInputs(plan, units, outcomes, usage, files)
