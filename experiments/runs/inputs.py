"""Analysis inputs taken from an experiment's store and the enrollment registry.

The scheduled analyses read the same tables as ``preuve analyze`` reads from files: this
module writes the three files of docs/architecture.md "Offline analysis files" from the registry
and the store, into a private directory, and checks what it wrote with
:mod:`analysis.inputs` from the tables already in memory (:class:`StoreTables`: the store
is read once, the files are not parsed again). One set of readers and checks serves both
paths, and the files can be handed to a researcher to reproduce a run offline.

Where each table comes from
---------------------------
- **units**: the enrollment registry. ``unit_id`` is the class (``population.unit:
  class``) or its school's UAI (``school``); then ``arm``, ``school_uai``, ``academie``,
  ``level``, ``pupils``, ``status`` (enrolled / withdrawn: a withdrawn class stays in
  its arm, intention to treat) and every enrollment attribute (strata, criteria,
  subgroups). With ``population.unit: learner`` each enrolled pupil is a unit, as in the
  offline files of a learner-randomised trial: ``unit_id`` is the pupil's learner key
  (the pseudonym its events carry), ``arm`` its own arm (:func:`~experiments.
  enrollment_learners.enrolled_learners`; its class is enrolled with the arm ``*``),
  ``pupils`` is 1, ``class_id`` its class (the usual stratum), and the pupil's
  attributes; a withdrawn pupil keeps its arm (intention to treat).
- **outcomes**: ``assessment_scored`` events of the store whose ``object_id`` is a
  declared ``measure`` (an outcome's ``id`` or its ``baseline`` measure), that carry a
  ``score`` and that a trusted source wrote (:mod:`experiments.runs.provenance`: an
  import, an ``assessor`` token, or the resource itself only where the protocol declares
  it as the outcome's ``source``); the others are usage, counted in
  ``assessments_as_usage``. An imported result is used at its latest version (a
  correction, :func:`import_outcomes` ``correct=True``), before any other source.
  The wave follows the protocol's periods, by the school day (Paris) the
  assessment happened: before the intervention starts (the baseline period) →
  ``baseline``; after it ends (the follow-up period, or later) → ``endline``; during the
  intervention → not an outcome (a quiz inside the resource is usage, not a test).
  A learner's first score of a measure in a wave is kept (a retake is practice); a
  learner counts in the unit of their first assessment. In a learner-randomised
  experiment only the scores of enrolled pupils are kept.
- **usage**: active time over the intervention period, rebuilt from the stored events of
  the protocol's ``active_use`` verbs with its ``idle_timeout_s``
  (:func:`experiments.store.read_active_time`, the rule of :mod:`analysis.sessions`: a
  pause longer than the timeout ends a session, a vendor's ``duration_s`` counts up to the
  timeout, overlaps count once, Paris days), summed per learner and ISO week
  (``2027-W40``) into active minutes; days without active use (a login only) give no
  row, so that ``weeks`` counts weeks of real use. Not the sum of the vendors'
  ``duration_s`` (``daily_usage.active_seconds``), which the protocol never defined.
- **questionnaires** (:mod:`experiments.runs.questionnaires`): an outcome declared as a
  pupils' questionnaire scale gets one outcome record per pupil and wave (the pupil's
  scale score); a teacher scale given at the baseline becomes a unit column (the mean
  score of the unit's teachers), usable as a covariate; a pupils' scale given at the
  baseline and named as a covariate becomes a learner column of the outcomes file (the
  pupil's baseline score).
- Pupils withdrawn with the data policy ``remove`` (their objection) have no outcome and
  no usage row, even for events that reached the store after the withdrawal
  (:func:`experiments.privacy.retention.remove_withdrawn_pupil_data` deleted those before it);
  their unit stays, so they count as randomised and not analysed (attrition).

The data of a date (``cutoff``)
-------------------------------
A scheduled run due at T reads the data of T, whenever it runs: with ``cutoff=T`` only
the events that **occurred** by T **and** were **stored** by T (``occurred_at <= T`` and
``stored_at <= T``: an event of October that arrived in December is not in an analysis due
in November), the classes (or pupils) **enrolled** by T, with the status they had at T
(a withdrawal recorded after T is not seen), and the withdrawals recorded by T. Active
time is rebuilt from those events only. Running the same run again later, after more
data arrived, therefore reads the same rows and gives the same results.

One exception, on purpose: a pupil who objected (withdrawal with the data policy
``remove``) is left out whenever the run is computed, even when the objection came after
T, because their data was deleted (RGPD art. 21 prevails over reproducibility). Such a
re-run differs from the first one by that pupil only, and the withdrawal is in the audit
log.

Assessment results from another platform enter the store as ``assessment_scored``
events (``object_id`` = the measure, ``score``, ``occurred_at`` = the day of the test),
sent like any other event, with the same pseudonymous learner ids; or from a file in the
offline outcomes format with :func:`import_outcomes`, which pseudonymises the learner
ids with the experiment's key and stores one such event per row.
"""

from __future__ import annotations

import csv
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

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
from experiments.access import record_audit
from experiments.enrollment.assignments import enrolled_classes, enrolled_learners
from experiments.enrollment.followup import followed_units
from experiments.enrollment.tables import MIXED_ARM
from experiments.enrollment.transaction import EnrolledClass, EnrolledLearner
from experiments.enrollment.withdrawal import withdrawn_pupil_keys
from experiments.errors import StoreError
from experiments.protocol.language import Protocol
from experiments.protocol.vocabulary import SCHOOL_TIMEZONE
from experiments.runs.provenance import IMPORT_PREFIX, import_authority, outcome_source
from experiments.runs.questionnaires import (
    QuestionnaireAnswers,
    pupil_covariate_columns,
    pupil_covariate_names,
    questionnaire_summary,
    read_answers,
    scale_outcome_rows,
    teacher_scale_names,
    teacher_unit_columns,
)
from experiments.settings import Settings
from experiments.store import (
    ExperimentStore,
    StoredEvent,
    events_table,
    read_active_time,
)

__all__ = [
    "AnalysisFiles",
    "AnalysisInputs",
    "OutcomesImport",
    "Watermark",
    "import_outcomes",
    "StoreTables",
    "level_verbs",
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
    cutoff: datetime | None = None
    """The data's date: nothing that occurred or was stored after it was read (None:
    everything the store held)."""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (ISO 8601 times)."""
        return {
            "cutoff": None if self.cutoff is None else self.cutoff.isoformat(),
            "stored_events": self.stored_events,
            "latest_event_at": None if self.latest_event_at is None
            else self.latest_event_at.isoformat(),
            "latest_stored_at": None if self.latest_stored_at is None
            else self.latest_stored_at.isoformat(),
        }


@dataclass(frozen=True)
class StoreTables:
    """The three files' content as read from the store, in memory: what the run analyses
    (:func:`read_analysis_inputs`) and what its report's usage section counts, so that the
    files written for the run's record are not parsed again."""

    units: pd.DataFrame
    """The units file's columns, as text."""
    outcomes: pa.Table
    """The outcomes file's columns, ``score`` as float64, the others as strings."""
    usage: pa.Table
    """The usage file's columns, ``active_minutes`` as float64, the others as strings."""
    levels: pd.DataFrame
    """The levels file's columns (:func:`level_verbs`), as text."""

    def usage_frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Units, usage rows and the outcome records' (learner, unit), as
        :func:`analysis.report.context.usage_context_from_frames` takes them."""
        return (self.units, self.usage.to_pandas(),
                self.outcomes.select(["learner_id", "unit_id"]).to_pandas())


def _frame(header: list[str], rows: list[dict[str, str]]) -> pd.DataFrame:
    """Rows as the file holds them (a missing value is empty), every column as text."""
    return pd.DataFrame([[row.get(c, "") for c in header] for row in rows], columns=header,
                        dtype=object)


def _store_tables(units: tuple[list[str], list[dict[str, str]]],
                  outcomes: list[dict[str, str]], usage: list[dict[str, str]],
                  levels: tuple[list[str], list[dict[str, str]]],
                  learner_columns: tuple[str, ...] = ()) -> StoreTables:
    """The rows written to the files, as :class:`StoreTables`."""
    frame = _frame(*units)

    def table(rows: list[dict[str, str]], names: tuple[str, ...], number: str) -> pa.Table:
        return pa.table({name: pa.array([float(r[name]) for r in rows], pa.float64())
                         if name == number else pa.array([r.get(name, "") for r in rows],
                                                         pa.string())
                         for name in names})

    return StoreTables(
        units=frame,
        # the outcomes file's columns, a pupils' baseline questionnaire scale included
        outcomes=table(outcomes, ("learner_id", "unit_id", "measure", "wave", "score",
                                  *learner_columns), "score"),
        usage=table(usage, ("learner_id", "unit_id", "week", "active_minutes"),
                    "active_minutes"),
        levels=_frame(*levels))


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
    assessments_as_usage: int = 0
    """``assessment_scored`` events of a declared measure from a source the protocol does
    not trust for outcomes (:mod:`experiments.runs.provenance`): usage, never outcomes."""
    levels: Path | None = None
    """The pupils' levels of availability and utilisation (:func:`level_verbs`;
    ``analysis.usage.LEVEL_FILE_COLUMNS``), for the report's funnel."""
    questionnaires: QuestionnaireAnswers | None = None
    """The usable questionnaire answers (None: the protocol declares no questionnaire)."""
    questionnaire_summary: tuple[dict[str, Any], ...] = ()
    """The report's « Questionnaires » section (aggregated, small cells suppressed)."""
    tables: StoreTables | None = field(default=None, repr=False, compare=False)
    """The files' content in memory, as read from the store (not parsed again)."""


@dataclass(frozen=True)
class AnalysisInputs:
    """The tables of :mod:`analysis.inputs`, read from the files of :class:`AnalysisFiles`."""

    plan: AnalysisPlan
    units: UnitTable
    outcomes: OutcomeTable
    usage: UsageTable | None
    """None when no outcome is stored yet (no learner to attach usage to)."""
    files: AnalysisFiles


def _learner_unit_rows(pupils: list[EnrolledLearner]) -> list[dict[str, str]]:
    """Rows of the units file of a learner-randomised experiment: one per enrolled pupil."""
    rows = []
    for pupil in pupils:
        row = {str(k): str(v) for k, v in pupil.attributes.items()}
        row.update(unit_id=pupil.learner_key, arm=pupil.arm, class_id=pupil.class_id,
                   school_uai=pupil.school_uai, academie=pupil.academie, level=pupil.level,
                   pupils="1", status=pupil.status)
        rows.append(row)
    return rows


def _unit_rows(protocol: Protocol, classes: list[EnrolledClass]) -> tuple[
        list[dict[str, str]], dict[str, str]]:
    """Rows of the units file and the unit of each class (classes or schools as units)."""
    unit = protocol.population.unit
    if unit == "learner":
        raise StoreError(f"{protocol.id}: population.unit is learner: the units are the "
                         "enrolled pupils (_learner_unit_rows), not classes",
                         field="population.unit")
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
    cutoff: datetime | None = None,
    wave: str | None = None,
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
    cutoff
        The data's date (a scheduled run's due time, timezone-aware): only what occurred
        and was stored by then, enrollments and withdrawals as they were then (see the
        module's docstring). None reads everything.
    wave
        With named waves (``waves:``), the wave written as ``endline`` (default: the
        primary wave); the baseline wave is written as ``baseline``, the other waves are
        left out. Without named waves the two waves come from the periods.

    Returns
    -------
    AnalysisFiles
        The paths, the watermark of the store when it was read, and what was left out.
    """
    cutoff = None if cutoff is None else _utc(cutoff)
    if protocol.population.unit == "learner":
        pupils = enrolled_learners(registry, protocol.id, as_of=cutoff)
        if not pupils:
            raise StoreError(f"{protocol.id}: no pupil is enrolled yet; nothing to analyse",
                             field="learner_enrollments")
        unit_rows = _learner_unit_rows(pupils)
        pupil_keys = {p.learner_key for p in pupils}

        def unit_for(learner: str, class_id: str) -> str | None:
            return learner if learner in pupil_keys else None

        def unit_of_class(class_id: str) -> str | None:
            return None  # pupils are the units: a teacher scale describes no unit

        def class_enrolled(class_id: str) -> bool:
            return True  # each answer's pupil is checked by unit_for
    else:
        # Follow-up classes of a cohort (arm MIXED_ARM) are not units: their pupils keep
        # the unit of the class randomised (experiments.enrollment.followup).
        classes = [c for c in enrolled_classes(registry, protocol.id, as_of=cutoff)
                   if c.arm != MIXED_ARM]
        if not classes:
            raise StoreError(f"{protocol.id}: no class is enrolled yet; nothing to analyse",
                             field="enrollments")
        unit_rows, unit_of = _unit_rows(protocol, classes)
        followed = (followed_units(registry, protocol.id, as_of=cutoff)
                    if protocol.cohort is not None else {})

        def unit_for(learner: str, class_id: str) -> str | None:
            return followed.get(learner) or unit_of.get(class_id)

        def unit_of_class(class_id: str) -> str | None:
            return unit_of.get(class_id)

        def class_enrolled(class_id: str) -> bool:
            return class_id in unit_of
    named = (set(protocol.randomisation.strata) | set(protocol.analysis.subgroups)
             | set(teacher_scale_names(protocol)))
    attributes = sorted(({k for r in unit_rows for k in r} | named) - set(_UNIT_COLUMNS))
    measures = sorted({o.id for o in protocol.outcomes if o.questionnaire is None}
                      | {o.baseline for o in protocol.outcomes
                         if o.baseline and o.questionnaire is None})
    intervention = protocol.periods.intervention
    store = ExperimentStore(settings, protocol.id)
    events = events_table
    # Events stored by the cut-off (stored_at is always written in UTC); those that
    # occurred after it are dropped below, in Python, where occurred_at is read in UTC.
    by_cutoff = sa.true() if cutoff is None else sa.and_(
        events.c.stored_at <= cutoff, events.c.occurred_at <= cutoff)
    with _snapshot(store.engine) as connection:
        count, latest, stored = connection.execute(
            sa.select(sa.func.count(), sa.func.max(events.c.occurred_at),
                      sa.func.max(events.c.stored_at)).select_from(events).where(by_cutoff)
        ).one()
        scored = connection.execute(
            sa.select(events.c.learner_key, events.c.class_id, events.c.object_id,
                      events.c.occurred_at, events.c.score, events.c.authority,
                      events.c.extensions)
            .where(events.c.verb == "assessment_scored", events.c.score.is_not(None),
                   events.c.object_id.in_(measures),
                   sa.true() if cutoff is None else events.c.stored_at <= cutoff)
            .order_by(events.c.occurred_at, events.c.event_id)
        ).all()
        # Active time rebuilt from the events with the protocol's idle timeout, whether
        # or not there is a cut-off (experiments.store explains why not incrementally).
        daily = read_active_time(connection, protocol.usage.active_verbs,
                                 protocol.usage.idle_timeout_s, first_day=intervention.start,
                                 last_day=intervention.end, cutoff=cutoff)
        verbs_of_level = level_verbs(protocol)
        level_events = connection.execute(
            sa.select(events.c.learner_key, events.c.class_id, events.c.verb,
                      sa.func.min(events.c.occurred_at))
            .where(events.c.verb.in_(sorted(set().union(*verbs_of_level.values()))), by_cutoff)
            .group_by(events.c.learner_key, events.c.class_id, events.c.verb)
            .order_by(events.c.learner_key, events.c.class_id, events.c.verb)
        ).all()
        # Objections (policy remove) apply whenever the run is computed: the data is gone.
        removed = withdrawn_pupil_keys(registry, protocol.id, data_policy="remove")
        answers = read_answers(connection, protocol, cutoff=cutoff, removed=removed,
                               enrolled=class_enrolled) if protocol.questionnaires else None
        connection.rollback()
    watermark = Watermark(int(count), None if latest is None else _utc(latest),
                          None if stored is None else _utc(stored), cutoff)
    assessments = _outcome_records(scored, protocol)
    if cutoff is not None:
        assessments = [a for a in assessments if _utc(a[3]) <= cutoff]

    learner_unit: dict[str, str] = {}
    seen: set[tuple[str, str, str]] = set()
    outcome_rows: list[dict[str, str]] = []
    ignored = 0
    endline_wave = wave or (protocol.primary_wave.id if protocol.primary_wave else None)
    for learner, class_id, measure, occurred_at, score in assessments:
        day = _school_day(occurred_at)
        at_wave = _wave_of(protocol, day)
        unit_id = None if learner in removed else unit_for(learner, class_id)
        if at_wave is None or unit_id is None or (learner, measure, at_wave) in seen:
            ignored += 1
            continue
        seen.add((learner, measure, at_wave))
        unit_id = learner_unit.setdefault(learner, unit_id)
        written = at_wave if not protocol.waves else (
            "baseline" if at_wave == "baseline" else "endline" if at_wave == endline_wave
            else None)
        if written is None:
            continue  # another named wave: the analysis of that wave writes it
        outcome_rows.append({"learner_id": learner, "unit_id": unit_id, "measure": measure,
                             "wave": written, "score": repr(float(score))})
    if answers is not None:
        for row in scale_outcome_rows(protocol, answers, unit_for):
            learner = row["learner_id"]
            row["unit_id"] = learner_unit.setdefault(learner, row["unit_id"])
            outcome_rows.append(row)
        pupil_columns = pupil_covariate_columns(protocol, answers)
        for row in outcome_rows:
            row.update(pupil_columns.get(row["learner_id"], {}))
        teachers = teacher_unit_columns(protocol, answers, unit_of_class)
        for unit_row in unit_rows:
            unit_row.update(teachers.get(unit_row["unit_id"], {}))
        arm_of_unit = {r["unit_id"]: r["arm"] for r in unit_rows}

        def arm_of(learner: str, class_id: str) -> str | None:
            unit_id = unit_for(learner, class_id)
            return None if unit_id is None else arm_of_unit.get(unit_id)
        summary = tuple(questionnaire_summary(protocol, answers, arm_of))
    else:
        summary = ()

    weekly: dict[tuple[str, str, str], float] = defaultdict(float)
    for learner, class_id, day, seconds in daily:
        unit_id = learner_unit.get(learner) or unit_for(learner, class_id)
        if unit_id is None or learner in removed:
            continue
        year, week, _ = _day(day).isocalendar()
        weekly[(learner, unit_id, f"{year}-W{week:02d}")] += float(seconds) / 60.0
    usage_rows = [
        {"learner_id": learner, "unit_id": unit_id, "week": week,
         "active_minutes": repr(minutes)}
        for (learner, unit_id, week), minutes in sorted(weekly.items())
    ]

    # Levels of the funnel (analysis.usage): a pupil's unit as for outcomes and usage.
    flags: dict[tuple[str, str], set[str]] = defaultdict(set)
    for learner, class_id, verb, first in level_events:
        if cutoff is not None and _utc(first) > cutoff:  # SQLite compares text: again
            continue
        unit_id = learner_unit.get(learner) or unit_for(learner, class_id)
        if unit_id is None or learner in removed:
            continue
        unit_id = learner_unit.setdefault(learner, unit_id)
        flags[(learner, unit_id)].update(level for level, verbs in verbs_of_level.items()
                                         if verb in verbs)
    level_rows = [
        {"learner_id": learner, "unit_id": unit_id,
         **{level: "1" if level in reached else "0" for level in verbs_of_level}}
        for (learner, unit_id), reached in sorted(flags.items())
    ]

    tables = _store_tables((list(_UNIT_COLUMNS) + attributes, unit_rows), outcome_rows,
                           usage_rows, (["learner_id", "unit_id", *verbs_of_level], level_rows),
                           tuple(pupil_covariate_names(protocol)))
    files = AnalysisFiles(directory / "units.csv", directory / "outcomes.csv",
                          directory / "usage.csv", watermark, ignored,
                          len(scored) - len(assessments), levels=directory / "levels.csv",
                          questionnaires=answers, questionnaire_summary=summary,
                          tables=tables)
    _write(files.units, list(_UNIT_COLUMNS) + attributes, unit_rows)
    _write(files.outcomes, ["learner_id", "unit_id", "measure", "wave", "score",
                            *pupil_covariate_names(protocol)], outcome_rows)
    _write(files.usage, ["learner_id", "unit_id", "week", "active_minutes"], usage_rows)
    _write(directory / "levels.csv", ["learner_id", "unit_id", *verbs_of_level], level_rows)
    logger.info("experiment %s: %d units, %d outcome records, %d usage rows read from the "
                "store (%d events)", protocol.id, len(unit_rows), len(outcome_rows),
                len(usage_rows), watermark.stored_events)
    return files


def _wave_of(protocol: Protocol, day: date) -> str | None:
    """The wave of a score taken on ``day``: with named waves, the one whose window holds
    it (``baseline`` for the baseline wave); without, ``baseline`` before the intervention
    and ``endline`` after it; None during the intervention or between windows."""
    if protocol.waves:
        for named in protocol.waves:
            if named.start <= day <= named.end:
                return "baseline" if named.baseline else named.id
        return None
    intervention = protocol.periods.intervention
    return ("baseline" if day < intervention.start
            else "endline" if day > intervention.end else None)


def level_verbs(protocol: Protocol) -> dict[str, frozenset[str]]:
    """The verbs that put a pupil at each level of availability and utilisation of the
    funnel (``analysis.usage.LEVELS``; the usage level is active time): ``assigned``,
    ``resource_assigned``; ``activated``, ``licence_activated``; ``opened``, any
    utilisation verb of the contract (``session_started``, ``session_ended``,
    ``resource_opened``), the protocol's login verbs, and its active-use verbs but
    ``assessment_scored`` (a pupil who worked in the resource opened it; an imported test
    score says nothing about the resource)."""
    from ingest.contract import UTILISATION_VERBS

    opened = (UTILISATION_VERBS | protocol.usage.login_verbs
              | (protocol.usage.active_verbs - {"assessment_scored"}))
    return {"assigned": frozenset({"resource_assigned"}),
            "activated": frozenset({"licence_activated"}), "opened": frozenset(opened)}


def _outcome_records(scored: Sequence[Any], protocol: Protocol) -> list[tuple[Any, ...]]:
    """The scores an analysis may use, in the order the first per (learner, measure,
    wave) wins: trusted sources only (:func:`~experiments.runs.provenance.outcome_source`);
    imported results first, each at its latest version (a correction replaces the
    version before it, which stays stored), then the others by date.

    Returns (learner key, class id, measure, occurred at, score) rows."""
    ranked = []
    for learner, class_id, measure, occurred_at, score, authority, extensions in scored:
        if outcome_source(authority, measure, protocol) is None:
            continue
        imported = authority.startswith(IMPORT_PREFIX)
        version = int((extensions or {}).get("version", 1)) if imported else 0
        ranked.append(((0 if imported else 1, -version),
                       (learner, class_id, measure, occurred_at, score)))
    ranked.sort(key=lambda item: item[0])  # stable: within a rank, by date then event id
    return [row for _, row in ranked]


def read_analysis_inputs(
    settings: Settings, registry: Engine, protocol: Protocol, directory: Path,
    cutoff: datetime | None = None, wave: str | None = None,
) -> AnalysisInputs:
    """Write the offline files of an experiment (:func:`write_analysis_files`) and check
    their content with :mod:`analysis.inputs`, as ``preuve analyze`` would, from the
    tables already read from the store (:class:`StoreTables`): the store is read once,
    and the files, written for the run's record, are not parsed again.

    Raises
    ------
    analysis.errors.InputError
        The store's data breaks a rule of the offline files (the message names the file
        and line).
    StoreError
        No class (or, learner-randomised, no pupil) is enrolled yet.
    """
    files = write_analysis_files(settings, registry, protocol, directory, cutoff, wave)
    tables = files.tables
    assert tables is not None
    plan = plan_from_protocol(protocol)
    units = read_units(files.units, plan, frame=tables.units)
    outcomes = read_outcomes(files.outcomes, units, table=tables.outcomes)
    # Without outcome records no learner can enter an analysis, and analysis.inputs'
    # read_usage indexes the (empty) learners: its usage would be empty anyway.
    usage = (read_usage(files.usage, outcomes, units, table=tables.usage)
             if outcomes.n_learners else None)
    return AnalysisInputs(plan, units, outcomes, usage, files)


# --- importing assessment results ----------------------------------------------------------


@dataclass(frozen=True)
class OutcomesImport:
    """What :func:`import_outcomes` stored."""

    stored: int
    """New results (no earlier version), corrections included in ``corrected`` only."""
    already: int
    """Rows whose result is already stored with the same score (same learner, measure,
    wave), at its latest version."""
    corrected: int = 0
    """Rows stored as a new version of a result imported before with another score."""


@dataclass(frozen=True)
class _Imported:
    """The latest imported version of one result (learner, measure, wave)."""

    event_id: str
    version: int
    score: float


def _imported_results(store: ExperimentStore, protocol: Protocol
                      ) -> dict[tuple[str, str, str], _Imported]:
    """The results imported so far, at their latest version, by (learner key, measure,
    wave)."""
    events = events_table
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(events.c.event_id, events.c.learner_key, events.c.object_id,
                      events.c.occurred_at, events.c.score, events.c.extensions)
            .where(events.c.verb == "assessment_scored",
                   events.c.authority.startswith(IMPORT_PREFIX))
        ).all()
    intervention = protocol.periods.intervention
    latest: dict[tuple[str, str, str], _Imported] = {}
    for event_id, learner, measure, occurred_at, score, extensions in rows:
        wave = str((extensions or {}).get("wave") or _wave_of(protocol, _school_day(
            occurred_at)) or ("baseline" if _school_day(occurred_at) < intervention.start
                              else "endline"))
        version = int((extensions or {}).get("version", 1))
        known = latest.get((learner, measure, wave))
        if known is None or version > known.version:
            latest[(learner, measure, wave)] = _Imported(event_id, version, float(score))
    return latest


def _wave_day(protocol: Protocol, wave: str) -> date:
    """The day an assessment of ``wave`` is taken to happen when the file gives none."""
    periods = protocol.periods
    if wave == "baseline":
        return (periods.baseline.start if periods.baseline
                else periods.intervention.start - timedelta(days=1))
    return periods.followup.start if periods.followup else periods.intervention.end + timedelta(
        days=1)


def _result_event_id(experiment: str, learner: str, measure: str, wave: str,
                     version: int) -> str:
    """The event id of an imported result: version 1 keeps the derivation of the first
    imports (migration ``store_0002`` recognises them by it); a correction adds ``/vN``."""
    name = f"{experiment}/{learner}/{measure}/{wave}"
    return str(uuid.uuid5(_OUTCOMES_NAMESPACE, name if version == 1 else f"{name}/v{version}"))


def _correction_reason_problem(reason: str | None) -> str | None:
    from experiments.access import reason_problem

    if reason is None or len(reason.strip()) < 10:
        return ("a correction states its reason (--reason, 10 characters at least), "
                f"got {reason!r}")
    return reason_problem(reason)


def import_outcomes(settings: Settings, registry: Engine, protocol: Protocol, path: Path,
                    now: datetime | None = None, *,
                    actor: str = "admin:*:python", correct: bool = False,
                    reason: str | None = None) -> OutcomesImport:
    """Store assessment results from a file as ``assessment_scored`` events.

    The file has the offline outcomes columns ``learner_id,unit_id,measure,wave,score``
    (``unit_id`` is the class; learner ids as the resource sends them, pseudonymised
    here with the experiment's key) and optionally ``assessed_on`` (YYYY-MM-DD, in the
    wave's window: before the intervention for ``baseline``, after it for ``endline``).
    Without it, a baseline is dated the first day of the baseline period and an endline
    the first day of the follow-up. The events' authority is ``import:<actor>``
    (:mod:`experiments.runs.provenance`): imported results are outcomes.

    One result is one (learner, measure, wave). Importing it again with the same score
    stores nothing (``already``). Another score is a correction, never silent: without
    ``correct`` the whole import is refused, naming each such row; with ``correct`` and
    a ``reason``, the new score is stored as the next version (an event of its own, the
    analyses use the latest version) and the earlier one stays in the store, and the
    audit log records the correction (``outcomes.correct``: the file, the reason, and the
    event ids of each result's old and new versions; no score, no learner id).

    Each import that stores is in the registry's audit log (``outcomes.import``: who,
    the file, how many rows it held, how many were new, corrected, already there),
    written once the store has committed. ``actor`` is who imports, as the audit log
    names principals (the CLI passes :func:`experiments.access.cli_actor`; the default
    names a call from Python).

    Raises
    ------
    StoreError
        A row names an unknown class, a measure the protocol does not declare, a bad
        wave, score or date; a row repeats another's result with another score; a result
        already imported with another score and no ``correct``; ``correct`` without a
        valid reason (the message names the file, line and field). Nothing is stored.
    """
    from ingest.pseudonym import check_pseudonym_key, load_pseudonym_key, pseudonymise

    if correct:
        problem = _correction_reason_problem(reason)
        if problem is not None:
            raise StoreError(f"{path}: {problem}", path=str(path), field="reason")
    key = load_pseudonym_key(settings)
    check_pseudonym_key(registry, protocol.id, key)
    classes = {c.class_id: c for c in enrolled_classes(registry, protocol.id)}
    measures = {o.id for o in protocol.outcomes} | {
        o.baseline for o in protocol.outcomes if o.baseline}
    intervention = protocol.periods.intervention
    store = ExperimentStore(settings, protocol.id)
    imported = _imported_results(store, protocol)
    authority = import_authority(actor)
    events: list[StoredEvent] = []
    in_file: dict[tuple[str, str, str], tuple[int, float]] = {}
    changed: list[str] = []
    corrections: list[dict[str, object]] = []
    already = 0
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"learner_id", "unit_id", "measure", "wave", "score"} - set(
            reader.fieldnames or ())
        if missing:
            raise StoreError(f"{path}:1: missing column(s) {sorted(missing)}", path=str(path),
                             line=1, field="header")
        for line, row in enumerate(reader, start=2):
            def refuse(field: str, why: str, row: dict[str, str] = row, line: int = line
                       ) -> StoreError:
                return StoreError(f"{path}:{line}: {field}: {why}, got {row.get(field)!r}",
                                  path=str(path), line=line, field=field)

            enrolled = classes.get(row["unit_id"].strip())
            if enrolled is None:
                raise refuse("unit_id", f"not a class enrolled in {protocol.id}")
            if row["measure"] not in measures:
                raise refuse("measure", f"must be one of {sorted(measures)}")
            wave = row["wave"]
            named = next((w for w in protocol.waves
                          if w.id == wave or (w.baseline and wave == "baseline")), None)
            if protocol.waves and named is None:
                raise refuse("wave", "must be one of the protocol's waves: "
                             + ", ".join(w.id for w in protocol.waves))
            if not protocol.waves and wave not in ("baseline", "endline"):
                raise refuse("wave", "must be 'baseline' or 'endline'")
            try:
                score = float(row["score"])
            except ValueError:
                raise refuse("score", "must be a number") from None
            try:
                day = (date.fromisoformat(row["assessed_on"]) if row.get("assessed_on")
                       else named.start if named is not None else _wave_day(protocol, wave))
            except ValueError:
                raise refuse("assessed_on", "must be a date YYYY-MM-DD") from None
            if named is not None:
                if not named.start <= day <= named.end:
                    raise refuse("assessed_on", f"outside the window of wave {named.id} "
                                 f"({named.start} to {named.end})")
                wave = "baseline" if named.baseline else named.id
            elif (wave == "baseline") != (day < intervention.start) or (
                    wave == "endline" and day <= intervention.end):
                raise refuse("assessed_on", f"outside the {wave} window of the protocol's "
                             "periods")
            learner = pseudonymise(key, protocol.id, row["learner_id"].strip())
            result = (learner, row["measure"], wave)
            earlier = in_file.setdefault(result, (line, score))
            if earlier != (line, score):
                if earlier[1] != score:
                    raise refuse("score", f"line {earlier[0]} gives this pupil's "
                                 f"{row['measure']} ({wave}) another score, {earlier[1]!r}")
                already += 1
                continue
            known = imported.get(result)
            if known is not None and known.score == score:
                already += 1
                continue
            version = 1 if known is None else known.version + 1
            if known is not None:
                if not correct:
                    changed.append(f"{path}:{line}: score: this pupil's {row['measure']} "
                                   f"({wave}) is already imported with the score "
                                   f"{known.score!r}, the file gives {score!r}")
                    continue
                corrections.append({
                    "measure": row["measure"], "wave": wave, "version": version,
                    "corrects": known.event_id,
                    "event_id": _result_event_id(protocol.id, learner, row["measure"],
                                                 wave, version),
                })
            extensions: dict[str, Any] = {"source": "import", "wave": wave}
            if version > 1:
                extensions.update(version=version, corrects=known.event_id if known else None)
            events.append(StoredEvent(
                event_id=_result_event_id(protocol.id, learner, row["measure"], wave, version),
                occurred_at=datetime.combine(day, time(12), tzinfo=SCHOOL_TIMEZONE),
                resource_id=protocol.resource.id, learner_key=learner,
                class_id=enrolled.class_id, school_uai=enrolled.school_uai, arm=enrolled.arm,
                verb="assessment_scored", object_id=row["measure"], score=score,
                extensions=extensions, authority=authority,
            ))
    if changed:
        shown = "\n".join(changed[:20]) + (
            f"\n... and {len(changed) - 20} more" if len(changed) > 20 else "")
        raise StoreError(
            f"{path}: {len(changed)} result(s) already imported with another score; nothing "
            f"was stored. A corrected official score is imported with its reason: preuve "
            f"outcomes import {protocol.id} {path} --correct --reason \"...\"\n{shown}",
            path=str(path), field="score")
    written = store.write_events(events, now or datetime.now(UTC))
    with Session(registry) as session, session.begin():
        record_audit(session, actor, "outcomes.import", protocol.id, {
            "file": str(path), "rows": len(events) + already,
            "stored": written.inserted - len(corrections), "corrected": len(corrections),
            "already": already + written.duplicates,
        })
        if corrections:
            record_audit(session, actor, "outcomes.correct", protocol.id, {
                "file": str(path), "reason": (reason or "").strip(),
                "corrections": corrections,
            })
    logger.info("experiment %s: %d assessment results imported, %d corrected, %d already "
                "stored", protocol.id, written.inserted - len(corrections), len(corrections),
                already + written.duplicates)
    return OutcomesImport(written.inserted - len(corrections), already + written.duplicates,
                          len(corrections))


_OUTCOMES_NAMESPACE = uuid.UUID("5f1d7c56-6a55-4c8e-9a57-0d3c2b7e4a10")
