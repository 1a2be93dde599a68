"""What the portal shows, assembled from the registry, the run records and the stores.

Officers and researchers read **aggregates only**: an experiment's status, territories,
resource, the runs of its analyses and the verdict of the latest one, and counts of
classes per arm. Nothing here returns an event, a learner pseudonym or a class id to
them. The one view with rows per class is an académie's weekly usage of *its own*
classes (:func:`weekly_usage`), which it enrolled itself; there a cell counting fewer
than 10 pupils is suppressed (docs/architecture.md, Privacy).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from analysis.options import MIN_CELL_PUPILS
from analysis.report.rating import rate_evidence
from analysis.results import AnalysisResults, Effect
from analysis.sessions import rule_text
from analysis.suppression import is_suppressed
from analysis.usage import UsageLevels, usage_levels
from experiments.enrollment.assignments import enrolled_classes
from experiments.protocol.language import Protocol
from experiments.registry import ExperimentRow, get_experiment, registered_protocol
from experiments.runs.inputs import level_verbs
from experiments.runs.records import RunRecord, list_runs
from experiments.runs.scheduler import due_time, occurrences
from experiments.settings import Settings
from experiments.store import ActiveTime, ExperimentStore, events_table, read_active_time

__all__ = [
    "MIN_CELL",
    "ExperimentSummary",
    "RunView",
    "UsageCell",
    "UsageTable",
    "Verdict",
    "experiment_ids",
    "experiment_summary",
    "next_analysis",
    "run_views",
    "verdict",
    "weekly_usage",
]

#: Smallest count of pupils shown (docs/architecture.md: cells under 10 pupils are
#: suppressed); the rule itself is :func:`analysis.suppression.is_suppressed` (1 to 9
#: hidden, 0 shown).
MIN_CELL = MIN_CELL_PUPILS

#: States before which no analysis is scheduled, and after which none remains.
_NO_NEXT_RUN = ("draft", "closed")


@dataclass(frozen=True)
class Verdict:
    """The latest analysis' main effect, as the report says it (the portal renders it
    with :func:`analysis.report.document.summary_sentence` and the evidence rating)."""

    kind: str
    """``effect`` (a primary ITT effect in the results), ``monitoring`` (only usage so
    far), ``failed`` (the latest effect analysis failed) or ``none`` (no run yet)."""
    analysis: str | None = None
    at: datetime | None = None
    reason: str | None = None
    effect: Effect | None = None
    """The primary ITT effect of the results (estimate, interval, months...)."""
    padlocks: int | None = None
    """Evidence rating, 0 to 5 (:func:`analysis.report.rating.rate_evidence`)."""
    resource: str = ""
    outcome: str = ""
    unit: str = "class"
    results: AnalysisResults | None = None
    """The run's results (aggregates), read back from its JSON, for the one-page summary."""
    protocol: Protocol | None = None


@dataclass(frozen=True)
class RunView:
    """One recorded run, as the experiment page lists it."""

    run_id: str
    analysis: str
    sequence: int
    due_at: datetime
    finished_at: datetime
    status: str
    reason: str | None
    protocol_version: int
    protocol_sha256: str
    has_report: bool


@dataclass(frozen=True)
class ExperimentSummary:
    """One experiment of the portfolio (aggregates only)."""

    id: str
    title: str
    state: str
    academies: tuple[str, ...]
    resource: str
    protocol_version: int
    protocol_sha256: str
    classes_per_arm: dict[str, int]
    verdict: Verdict
    next_analysis: tuple[str, datetime] | None


def experiment_ids(registry: Engine) -> list[str]:
    """Every experiment of the registry, by id."""
    with registry.connect() as connection:
        return list(connection.scalars(sa.select(ExperimentRow.id).order_by(ExperimentRow.id)))


def verdict(runs: list[RunRecord], protocol: Protocol) -> Verdict:
    """The verdict of the latest run that is not a monitoring run (or what there is
    instead): its primary ITT effect and evidence rating, as in its report.

    A monitoring run estimates no effect; the verdict then says that only usage has been
    analysed so far.
    """
    if not runs:
        return Verdict("none")
    ordered = sorted(runs, key=lambda r: (r.due_at, r.finished_at))
    latest = ordered[-1]
    effect_runs = [r for r in ordered if r.analysis != "monitoring"]
    if not effect_runs:
        if latest.status == "failed":
            return Verdict("failed", analysis=latest.analysis, reason=latest.reason,
                           at=latest.due_at)
        return Verdict("monitoring", analysis=latest.analysis, at=latest.due_at)
    run = effect_runs[-1]
    if run.status != "done" or not run.results_json:
        return Verdict("failed", analysis=run.analysis, reason=run.reason, at=run.due_at)
    results = AnalysisResults.from_json(json.loads(run.results_json))
    primary = results.primary_effect()
    if primary is None:
        return Verdict("failed", analysis=run.analysis, at=run.due_at,
                       reason="no primary ITT effect in the results")
    labels = {o.id: o.label or o.id for o in protocol.outcomes}
    return Verdict(
        "effect", analysis=run.analysis, at=run.due_at, effect=primary,
        padlocks=rate_evidence(results).padlocks, resource=protocol.resource.name,
        outcome=labels.get(primary.outcome, primary.outcome),
        unit=protocol.population.unit, results=results, protocol=protocol,
    )


def next_analysis(protocol: Protocol, state: str,
                  now: datetime) -> tuple[str, datetime] | None:
    """The next analysis ``protocol`` (the version in force) schedules after ``now``
    (name, due time in UTC), or None (draft, closed, or the schedule is over)."""
    if state in _NO_NEXT_RUN:
        return None
    upcoming = [(due_time(day), entry.analysis)
                for entry in protocol.schedule for day in occurrences(protocol, entry)
                if due_time(day) > now]
    if not upcoming:
        return None
    due, analysis = min(upcoming)
    return analysis, due


def run_views(runs: list[RunRecord]) -> list[RunView]:
    """The runs of an experiment, the most recent first.

    A report's number (``sequence`` here) follows the due dates: the n-th report of an
    analysis is the one of its n-th due date, whatever order the workers recorded them in
    (the record's own ``sequence`` is the order of recording, kept in the registry).
    """
    ordered = sorted(runs, key=lambda r: (r.due_at, r.finished_at, r.run_id))
    number: dict[str, int] = {}
    rank: dict[str, int] = defaultdict(int)
    for r in ordered:
        rank[r.analysis] += 1
        number[r.run_id] = rank[r.analysis]
    return [
        RunView(r.run_id, r.analysis, number[r.run_id], r.due_at, r.finished_at, r.status,
                r.reason, r.protocol_version, r.protocol_sha256, r.html_path is not None)
        for r in reversed(ordered)
    ]


def experiment_summary(registry: Engine, experiment_id: str,
                       now: datetime | None = None) -> ExperimentSummary:
    """An experiment's line of the portfolio (raises RegistryError if it is unknown)."""
    now = now or datetime.now(UTC)
    record = get_experiment(registry, experiment_id)
    protocol = registered_protocol(registry, experiment_id).protocol
    per_arm: dict[str, int] = defaultdict(int)
    for enrolled in enrolled_classes(registry, experiment_id):
        if enrolled.status == "enrolled":
            per_arm[enrolled.arm] += 1
    return ExperimentSummary(
        id=experiment_id,
        title=protocol.title,
        state=record.state,
        academies=tuple(str(a) for a in protocol.population.academies),
        resource=protocol.resource.name or protocol.resource.id,
        protocol_version=record.current.version,
        protocol_sha256=record.current.sha256,
        classes_per_arm={arm.name: per_arm.get(arm.name, 0) for arm in protocol.arms},
        verdict=verdict(list_runs(registry, experiment_id), protocol),
        next_analysis=next_analysis(protocol, record.state, now),
    )


# --- académies: weekly usage of their own classes --------------------------------------


@dataclass(frozen=True)
class UsageCell:
    """Active pupils and active minutes of a class (or all classes) in one week.

    ``pupils`` and ``minutes`` are None when 1 to 9 pupils were active (suppressed).
    """

    pupils: int | None
    minutes: float | None

    @property
    def suppressed(self) -> bool:
        """Whether the cell counts fewer than :data:`MIN_CELL` pupils (not shown)."""
        return self.pupils is None


@dataclass(frozen=True)
class UsageClass:
    """A class of the académie and its arm."""

    class_id: str
    school_uai: str
    arm: str
    status: str


@dataclass(frozen=True)
class UsageTable:
    """Weekly usage of an académie's classes in one experiment."""

    experiment_id: str
    academie: str | None
    weeks: tuple[date, ...]
    """Mondays of the weeks with any usage, in order."""
    classes: tuple[UsageClass, ...]
    cells: dict[tuple[str, date], UsageCell]
    totals: dict[date, UsageCell]
    """All the classes of the table, per week; suppressed too when it would give away
    the pupils of suppressed cells (total minus the cells shown)."""
    levels: UsageLevels | None = None
    """The three levels of use of these classes per arm, nested, as the reports show
    them (:func:`analysis.usage.usage_levels`); None: no class."""
    rule: str | None = None
    """The active-time rule with its pause, in French (:func:`analysis.sessions.rule_text`)."""


def _cell(pupils: int, seconds: float) -> UsageCell:
    if is_suppressed(pupils):
        return UsageCell(None, None)
    return UsageCell(pupils, round(seconds / 60.0, 1))


def _existing_store(settings: Settings, registry: Engine,
                    experiment_id: str) -> ExperimentStore | None:
    """The experiment's store, or None when nothing created it yet (no event arrived and
    `preuve db migrate` has not run since its registration): no usage to show. Any other
    problem (a store behind its migrations) is raised."""
    from experiments.database import is_postgres, store_schema

    if not settings.database_migrate:
        if is_postgres(settings):
            with registry.connect() as connection:  # same database, another schema
                found = connection.execute(
                    sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                    {"s": store_schema(experiment_id)}).first()
            if found is None:
                return None
        elif not (settings.state_dir / "stores" / f"{experiment_id}.sqlite").exists():
            return None
    return ExperimentStore(settings, experiment_id)


def weekly_usage(settings: Settings, registry: Engine, experiment_id: str,
                 academie: str | None) -> UsageTable:
    """Active pupils and minutes per week of the classes of ``academie`` (None: all
    académies, for admins), and their three levels of use per arm.

    Active time is the protocol's (:func:`experiments.store.read_active_time`: rebuilt
    from the events with its idle timeout), as in the reports. A pupil is active in a week
    when they have active time that week. Weeks start on Monday (school days,
    Europe/Paris, as the store's days).
    """
    classes = enrolled_classes(registry, experiment_id, academie=academie)
    wanted = {c.class_id for c in classes}
    learners: dict[tuple[str, date], set[str]] = defaultdict(set)
    seconds: dict[tuple[str, date], float] = defaultdict(float)
    week_learners: dict[date, set[str]] = defaultdict(set)
    week_seconds: dict[date, float] = defaultdict(float)
    levels = rule = None
    store = _existing_store(settings, registry, experiment_id) if wanted else None
    if store is not None:
        protocol = registered_protocol(registry, experiment_id).protocol
        with store.engine.connect() as connection:
            active = read_active_time(connection, protocol.usage.active_verbs,
                                      protocol.usage.idle_timeout_s, class_ids=sorted(wanted))
            for learner, class_id, day, spent in active:
                monday = day - timedelta(days=day.weekday())
                learners[class_id, monday].add(learner)
                seconds[class_id, monday] += spent
                week_learners[monday].add(learner)
                week_seconds[monday] += spent
            levels = _levels(connection, protocol, classes, active)
        rule = rule_text(protocol.usage.idle_timeout_s, "fr")
    weeks = tuple(sorted(week_learners))
    cells = {
        (c.class_id, week): _cell(len(learners.get((c.class_id, week), ())),
                                  seconds.get((c.class_id, week), 0.0))
        for c in classes for week in weeks
    }
    totals = {}
    for week in weeks:
        # Secondary suppression: the total minus the cells shown gives the pupils of the
        # suppressed cells; when that is 1 to 9 pupils, the total is suppressed too.
        hidden = sum(len(learners.get((c.class_id, week), ())) for c in classes
                     if cells[c.class_id, week].suppressed)
        total = _cell(len(week_learners[week]), week_seconds[week])
        totals[week] = UsageCell(None, None) if is_suppressed(hidden) else total
    return UsageTable(
        experiment_id, academie, weeks,
        tuple(UsageClass(c.class_id, c.school_uai, c.arm, c.status) for c in classes),
        cells, totals, levels, rule,
    )


def _levels(connection: Any, protocol: Protocol, classes: Sequence[Any],
            active: Sequence[ActiveTime]) -> UsageLevels:
    """The funnel of these classes: their pupils' levels from the store (the verbs of
    :func:`experiments.runs.inputs.level_verbs`), active time over the intervention."""
    verbs = level_verbs(protocol)
    wanted = sorted(c.class_id for c in classes)
    e = events_table
    rows = connection.execute(
        sa.select(e.c.learner_key, e.c.class_id, e.c.verb).distinct()
        .where(e.c.verb.in_(sorted(set().union(*verbs.values()))), e.c.class_id.in_(wanted))
        .order_by(e.c.learner_key, e.c.class_id)).all()
    unit_of: dict[str, str] = {}
    reached: dict[str, set[str]] = defaultdict(set)
    for learner, class_id, verb in rows:
        unit_of.setdefault(learner, class_id)
        for level, level_verbs_ in verbs.items():
            if verb in level_verbs_:
                reached[level].add(learner)
    intervention = protocol.periods.intervention
    minutes: dict[str, float] = defaultdict(float)
    for a in active:
        unit_of.setdefault(a.learner_key, a.class_id)
        if intervention.start <= a.day <= intervention.end:
            minutes[a.learner_key] += a.seconds / 60.0
    enrolled: dict[str, int] = defaultdict(int)
    for c in classes:
        enrolled[c.arm] += c.pupils
    compliance = protocol.usage.compliance
    return usage_levels(unit_of, {c.class_id: c.arm for c in classes}, reached, minutes,
                        arms=[a.name for a in protocol.arms], control=protocol.control_arm.name,
                        threshold_minutes=compliance.min_active_minutes if compliance else None,
                        pupils_enrolled=enrolled, idle_timeout_s=protocol.usage.idle_timeout_s)
