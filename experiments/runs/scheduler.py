"""The scheduler: each registered protocol's ``schedule`` becomes analysis requests.

A run is identified by its **run key**, ``experiment/analysis/due time`` (the due time
in UTC, ISO 8601). The scheduler computes the runs due at ``now`` from the registry,
*claims* each one by inserting its key into ``scheduled_runs`` (a primary key: two
schedulers, or one after a restart, cannot both claim it), and only then publishes it
to ``preuve.analysis.requests`` (keyed by run key, acks=all, idempotent producer). A
scheduler that dies between the claim and Kafka's ack leaves a claim without
``published_at``; any scheduler publishes it again after
``settings.scheduler.republish_after_s``. Workers record a run once per run key
(:mod:`experiments.runs.records`), so a second copy of a request does nothing.

When runs are due
-----------------
Dates are school days in Europe/Paris; a run is due at **06:00 Paris time** on its day,
so that the report covers every school day before it and is ready in the morning.

- ``at: 2028-01-15``: once, on that day;
- ``every: week``: each Monday after the start of the intervention, up to the first
  Monday after the end of the follow-up (or of the intervention if there is none);
- ``every: month``: the first day of each month after the start of the intervention, up
  to the first one after the end of the follow-up;
- ``every: period``: the day after the end of each declared period (baseline,
  intervention, follow-up).
- ``every: periode``: the day after each période of the school year (between holidays)
  that ends between the start of the intervention and the end of the follow-up; a
  protocol across zones takes, for each période, the latest end among its zones
  (:mod:`experiments.protocol.calendar`). ``at: fin-periode-2``: the day after période 2
  of the intervention's school year ends, the same way.

Only experiments that are ``enrolling``, ``running`` or ``analysing`` have runs (a
draft or merely registered experiment has no class to analyse; a closed one is done).

Which protocol version a run follows
------------------------------------
The version in force at its due time: each version's schedule governs the due times
from the moment it was recorded until the next version, so an amendment changes future
runs only, and a run that fell due before the amendment (even one claimed late, after a
downtime) keeps the version that was in force when it fell due. Due times before the
registration produce no run.

Catching up
-----------
On start (and at each look) every due run not claimed yet is claimed: one-off runs
(``at``) are always caught up. Repetitions missed during a downtime are coalesced by
default (``settings.scheduler.catch_up = "latest"``): the latest is published, the
earlier ones are recorded as ``skipped`` (nobody reads last month's weekly monitoring
late). ``catch_up = "all"`` publishes them all; each then analyses the data of its own
due time, like every run (:mod:`experiments.runs.inputs`, "The data of a date"), so a
run published late gives the numbers it would have given on time.

- ``cron: "0 6 1,15 * *"``: the days on which the expression fires (Paris time), over
  the same span as ``every``; like every run, due at 06:00 that day.

Retention
---------
At each look the scheduler also purges the row-level data of every experiment whose
``retention.keep_until`` has passed (Paris date) and that was not purged yet
(:func:`experiments.privacy.retention.purge_expired`, the same purge as ``preuve purge``, audited
as the scheduler), unless ``settings.scheduler.purge_expired`` is off. Two schedulers
may both purge an experiment the same day: a purge removes nothing the second time.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from experiments.database import insert_for
from experiments.errors import SchedulerError
from experiments.protocol.calendar import periode_day, periode_days
from experiments.protocol.language import Protocol, ScheduleEntry
from experiments.protocol.vocabulary import SCHOOL_TIMEZONE
from experiments.registry import ExperimentRow, get_experiment, registered_protocol
from experiments.runs.sufficiency import check_upcoming
from experiments.settings import Settings

__all__ = [
    "ANALYSED_STATES",
    "RUN_TIME",
    "AnalysisRequest",
    "ScheduledRun",
    "TickReport",
    "claim_runs",
    "claimed_request",
    "due_runs",
    "ensure_request_topic",
    "occurrences",
    "publish_runs",
    "run_key",
    "run_scheduler",
    "scheduled_runs_table",
    "tick",
    "upcoming_runs",
]

logger = logging.getLogger(__name__)

_SCHEDULER_ACTOR = f"admin:*:scheduler@{socket.gethostname()}"
"""How the audit log names the scheduler's own acts (it holds the deployment's
credentials, hence the administrator role, like ``preuve`` commands: see
:func:`experiments.access.cli_actor`)."""

#: States of the lifecycle in which scheduled analyses run.
ANALYSED_STATES: tuple[str, ...] = ("enrolling", "running", "analysing")
#: Time of day (Europe/Paris) at which a run falls due.
RUN_TIME = time(6, 0)

_metadata = sa.MetaData()
#: Claims of runs (see ``migrations/registry/versions/scheduler_0001.py``).
scheduled_runs_table = sa.Table(
    "scheduled_runs",
    _metadata,
    sa.Column("run_key", sa.String(160), primary_key=True),
    sa.Column("experiment_id", sa.String(63), nullable=False),
    sa.Column("analysis", sa.String(32), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("protocol_version", sa.Integer, nullable=False),
    sa.Column("protocol_sha256", sa.String(64), nullable=False),
    sa.Column("schedule_entry", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_by", sa.String(128), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
)


# --- runs ------------------------------------------------------------------------------


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive value (SQLite drops offsets) is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def run_key(experiment_id: str, analysis: str, due_at: datetime) -> str:
    """The identity of a run: ``experiment/analysis/due time in UTC``.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> run_key("fluence-cp-2027", "interim", datetime(2028, 1, 15, 5, 0, tzinfo=UTC))
    'fluence-cp-2027/interim/2028-01-15T05:00:00Z'
    """
    return f"{experiment_id}/{analysis}/{utc(due_at):%Y-%m-%dT%H:%M:%SZ}"


@dataclass(frozen=True)
class ScheduledRun:
    """A run that falls due: which analysis, when, under which protocol version."""

    experiment_id: str
    analysis: str
    due_at: datetime
    protocol_version: int
    protocol_sha256: str
    entry: str
    """The schedule entry that made it, e.g. ``every: week`` or ``at: 2028-01-15``."""

    @property
    def recurring(self) -> bool:
        """Whether the run is a repetition (``every``) rather than a one-off (``at``)."""
        return self.entry.startswith(("every", "cron"))

    @property
    def run_key(self) -> str:
        """See :func:`run_key`."""
        return run_key(self.experiment_id, self.analysis, self.due_at)


@dataclass(frozen=True)
class AnalysisRequest:
    """The message published to ``preuve.analysis.requests`` for one claimed run."""

    run_key: str
    experiment_id: str
    analysis: str
    due_at: datetime
    protocol_version: int
    protocol_sha256: str

    @classmethod
    def of(cls, run: ScheduledRun) -> AnalysisRequest:
        """The request of a scheduled run."""
        return cls(run.run_key, run.experiment_id, run.analysis, utc(run.due_at),
                   run.protocol_version, run.protocol_sha256)

    def to_json(self) -> bytes:
        """UTF-8 JSON, the message value."""
        return json.dumps(
            {
                "run_key": self.run_key,
                "experiment_id": self.experiment_id,
                "analysis": self.analysis,
                "due_at": utc(self.due_at).isoformat(),
                "protocol_version": self.protocol_version,
                "protocol_sha256": self.protocol_sha256,
            },
            sort_keys=True,
        ).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> AnalysisRequest:
        """Parse a message value.

        Raises
        ------
        SchedulerError
            Not JSON, a missing field, or a run key that does not match its fields.
        """
        try:
            value = json.loads(raw)
            request = cls(
                run_key=str(value["run_key"]),
                experiment_id=str(value["experiment_id"]),
                analysis=str(value["analysis"]),
                due_at=utc(datetime.fromisoformat(value["due_at"])),
                protocol_version=int(value["protocol_version"]),
                protocol_sha256=str(value["protocol_sha256"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SchedulerError(
                f"analysis request: not a valid request ({type(exc).__name__}: {exc})",
                field="value",
            ) from None
        expected = run_key(request.experiment_id, request.analysis, request.due_at)
        if request.run_key != expected:
            raise SchedulerError(
                f"analysis request: run_key {request.run_key!r} does not match its fields "
                f"({expected!r})",
                field="run_key",
            )
        return request


# --- the calendar ----------------------------------------------------------------------


def due_time(day: date) -> datetime:
    """When a run of ``day`` falls due: 06:00 in Paris, as UTC.

    Examples
    --------
    >>> due_time(date(2028, 1, 15)).isoformat()
    '2028-01-15T05:00:00+00:00'
    """
    return datetime.combine(day, RUN_TIME, tzinfo=SCHOOL_TIMEZONE).astimezone(UTC)


def _next_monday(day: date) -> date:
    return day + timedelta(days=7 - day.weekday())


def _next_first_of_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def occurrences(protocol: Protocol, entry: ScheduleEntry) -> list[date]:
    """The days on which a schedule entry runs (see the module's docstring).

    Examples
    --------
    >>> from pathlib import Path
    >>> from experiments.protocol.language import load_protocol
    >>> protocol = load_protocol(Path("protocols/fluence-cp-2027.yaml"))
    >>> weekly = occurrences(protocol, protocol.schedule[0])
    >>> weekly[0], weekly[-1], len(weekly)
    (datetime.date(2027, 10, 4), datetime.date(2028, 6, 19), 38)
    >>> occurrences(protocol, protocol.schedule[1])
    [datetime.date(2028, 1, 15)]
    """
    periods = protocol.periods
    start, last = periods.intervention.start, periods.endline()
    academies = protocol.population.academies
    if entry.at is not None:
        return [periode_day(entry.at, intervention_start=start, academies=academies)]
    days: list[date] = []
    if entry.cron is not None:
        return _cron_days(entry.cron, start, last)
    if entry.every == "week":
        days = _days_from(_next_monday(start), last, lambda day: day + timedelta(days=7))
    elif entry.every == "month":
        days = _days_from(_next_first_of_month(start), last, _next_first_of_month)
    elif entry.every == "period":
        days = [p.end + timedelta(days=1) for _, p in periods.ordered() if p is not None]
    elif entry.every == "periode":
        days = periode_days(start, last, academies)
    return days


def _days_from(first: date, last: date, following: Callable[[date], date]) -> list[date]:
    """``first`` and each ``following`` day after it, up to and including the first one
    after ``last``."""
    days = [first]
    while days[-1] <= last:
        days.append(following(days[-1]))
    return days


def _cron_days(expression: str, start: date, last: date) -> list[date]:
    """The school days (Paris) on which ``expression`` fires, after ``start`` and up to
    ``last`` included; several firings on one day make one run (runs are daily)."""
    from croniter import croniter

    moment = datetime.combine(start, time(0, 0), tzinfo=SCHOOL_TIMEZONE)
    days: list[date] = []
    for fired in croniter(expression, moment).all_next(datetime):
        day = fired.astimezone(SCHOOL_TIMEZONE).date()
        if day > last:
            break
        if day > start and (not days or days[-1] != day):
            days.append(day)
    return days


def _describe(entry: ScheduleEntry) -> str:
    if entry.at is not None:
        return f"at: {entry.at if isinstance(entry.at, str) else entry.at.isoformat()}"
    return f"cron: {entry.cron}" if entry.cron is not None else f"every: {entry.every}"


def _protocol_runs(protocol: Protocol, version: int, sha256: str, start: datetime,
                   end: datetime | None, now: datetime) -> list[ScheduledRun]:
    runs = []
    for entry in protocol.schedule:
        for day in occurrences(protocol, entry):
            due = due_time(day)
            if start <= due <= now and (end is None or due < end):
                runs.append(ScheduledRun(protocol.id, entry.analysis, due, version, sha256,
                                         _describe(entry)))
    return runs


def due_runs(engine: Engine, now: datetime) -> list[ScheduledRun]:
    """Every run due at ``now`` (claimed or not), each under the version in force at its
    due time, in due order.

    Parameters
    ----------
    engine
        The registry's engine.
    now
        The clock (timezone-aware); tests inject it.
    """
    now = utc(now)
    with engine.connect() as connection:
        experiments = connection.scalars(
            sa.select(ExperimentRow.id)
            .where(ExperimentRow.state.in_(ANALYSED_STATES))
            .order_by(ExperimentRow.id)
        ).all()
    runs: dict[str, ScheduledRun] = {}
    for experiment_id in experiments:
        versions = get_experiment(engine, experiment_id).versions
        for i, version in enumerate(versions):
            start = utc(version.recorded_at)
            end = utc(versions[i + 1].recorded_at) if i + 1 < len(versions) else None
            if start > now:
                break
            protocol = registered_protocol(engine, experiment_id, version.version).protocol
            for run in _protocol_runs(protocol, version.version, version.sha256, start, end,
                                      now):
                runs.setdefault(run.run_key, run)  # two entries on one day: one run
    return sorted(runs.values(), key=lambda r: (r.due_at, r.experiment_id, r.analysis))


# --- claiming --------------------------------------------------------------------------


def _insert(engine: Engine) -> Any:
    return insert_for(engine, scheduled_runs_table)


def _claimed(engine: Engine, runs: Sequence[ScheduledRun]) -> dict[tuple[str, str], datetime]:
    """Latest claimed due time per (experiment, analysis), and nothing else."""
    table = scheduled_runs_table
    experiments = sorted({r.experiment_id for r in runs})
    if not experiments:
        return {}
    query = (
        sa.select(table.c.experiment_id, table.c.analysis, sa.func.max(table.c.due_at))
        .where(table.c.experiment_id.in_(experiments))
        .group_by(table.c.experiment_id, table.c.analysis)
    )
    with engine.connect() as connection:
        return {(e, a): utc(d) for e, a, d in connection.execute(query)}


def _claimed_keys(engine: Engine, runs: Sequence[ScheduledRun]) -> set[str]:
    table = scheduled_runs_table
    keys = [r.run_key for r in runs]
    found: set[str] = set()
    with engine.connect() as connection:
        for i in range(0, len(keys), 500):
            found.update(connection.scalars(
                sa.select(table.c.run_key).where(table.c.run_key.in_(keys[i:i + 500]))
            ))
    return found


def claimed_request(engine: Engine, request: AnalysisRequest) -> bool:
    """Whether the scheduler claimed this very run in the registry (same key, protocol
    version and fingerprint): analysis workers run nothing else, so a request written to
    the topic by anyone but the scheduler (a forged early "final") is ignored."""
    table = scheduled_runs_table
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(table.c.protocol_version, table.c.protocol_sha256)
            .where(table.c.run_key == request.run_key)
        ).first()
    return row is not None and (row.protocol_version, row.protocol_sha256) == (
        request.protocol_version, request.protocol_sha256)


def claim_runs(
    engine: Engine,
    runs: Sequence[ScheduledRun],
    *,
    catch_up: str = "latest",
    claimed_by: str = "scheduler",
) -> list[ScheduledRun]:
    """Claim the runs nobody claimed yet; return those this call claimed to publish.

    Each run key is inserted with ``ON CONFLICT DO NOTHING`` in one transaction, keys in
    sorted order (two schedulers never deadlock): a key inserted by someone else is
    not returned. With ``catch_up="latest"``, the repetitions of an (experiment,
    analysis) older than the latest one due are inserted as ``skipped``.
    """
    done = _claimed_keys(engine, runs)
    pending = [r for r in runs if r.run_key not in done]
    latest_claimed = _claimed(engine, pending)
    status: dict[str, str] = {}
    newest: dict[tuple[str, str, str], datetime] = defaultdict(lambda: datetime.min.replace(
        tzinfo=UTC))
    for run in pending:
        group = (run.experiment_id, run.analysis, run.entry)
        newest[group] = max(newest[group], run.due_at)
    for run in pending:
        superseded = catch_up == "latest" and run.recurring and (
            run.due_at < newest[(run.experiment_id, run.analysis, run.entry)]
            or run.due_at < latest_claimed.get((run.experiment_id, run.analysis), run.due_at)
        )
        status[run.run_key] = "skipped" if superseded else "due"
    claimed: list[ScheduledRun] = []
    now = datetime.now(UTC)
    # RETURNING names the row only if this call inserted it (rowcount is not reliable
    # for ON CONFLICT DO NOTHING across drivers).
    statement = (_insert(engine).on_conflict_do_nothing(index_elements=["run_key"])
                 .returning(scheduled_runs_table.c.run_key))
    with engine.begin() as connection:
        for run in sorted(pending, key=lambda r: r.run_key):
            result = connection.execute(statement.values(
                run_key=run.run_key, experiment_id=run.experiment_id, analysis=run.analysis,
                due_at=utc(run.due_at), protocol_version=run.protocol_version,
                protocol_sha256=run.protocol_sha256, schedule_entry=run.entry,
                status=status[run.run_key], claimed_at=now, claimed_by=claimed_by,
                published_at=None,
            ))
            if result.first() is not None and status[run.run_key] == "due":
                claimed.append(run)
    skipped = sum(1 for s in status.values() if s == "skipped")
    if skipped:
        logger.info("%d missed repetitions superseded by a later run (catch_up=latest)", skipped)
    return sorted(claimed, key=lambda r: (r.due_at, r.run_key))


def unpublished_runs(engine: Engine, older_than: datetime) -> list[ScheduledRun]:
    """Claimed runs never acknowledged by Kafka, claimed before ``older_than``."""
    table = scheduled_runs_table
    query = sa.select(table).where(
        table.c.status == "due", table.c.published_at.is_(None),
        table.c.claimed_at < older_than,
    ).order_by(table.c.due_at, table.c.run_key)
    with engine.connect() as connection:
        return [
            ScheduledRun(row.experiment_id, row.analysis, utc(row.due_at),
                         row.protocol_version, row.protocol_sha256, row.schedule_entry)
            for row in connection.execute(query)
        ]


# --- publishing ------------------------------------------------------------------------


def ensure_request_topic(settings: Settings) -> None:
    """Create Preuve's topics if missing, ``preuve.analysis.requests`` among them, with
    ``settings.scheduler.request_partitions`` partitions (workers share them), and the
    services' ACLs (:func:`ingest.kafka.access.ensure_topics`)."""
    from ingest.kafka.access import ensure_topics

    ensure_topics(settings)


def publish_runs(engine: Engine, producer: Any, topic: str,
                 runs: Iterable[ScheduledRun], timeout_s: float = 30.0) -> int:
    """Publish runs (keyed by run key), wait for Kafka's ack, then mark them published.

    Raises
    ------
    SchedulerError
        Kafka did not acknowledge a request; its claim stays unpublished and is published
        again later.
    """
    from kafka.errors import KafkaError

    table = scheduled_runs_table
    count = 0
    for run in runs:
        request = AnalysisRequest.of(run)
        try:
            producer.send(topic, key=run.run_key.encode(), value=request.to_json()).get(
                timeout=timeout_s)
        except KafkaError as exc:
            raise SchedulerError(
                f"run {run.run_key}: Kafka did not acknowledge the request on {topic} ({exc}); "
                "it stays claimed and is published again later",
                field="published_at",
            ) from exc
        with engine.begin() as connection:
            connection.execute(
                table.update().where(table.c.run_key == run.run_key)
                .values(published_at=datetime.now(UTC))
            )
        logger.info("experiment %s: %s analysis due %s published (protocol v%d)",
                    run.experiment_id, run.analysis, utc(run.due_at).isoformat(),
                    run.protocol_version)
        count += 1
    return count


@dataclass(frozen=True)
class TickReport:
    """What one look at the schedules did."""

    due: int
    """Runs due at ``now`` (claimed earlier or now)."""
    claimed: int
    """Runs this scheduler claimed and published."""
    republished: int
    """Claims of a dead scheduler published again."""
    purged: int = 0
    """Experiments whose row-level data this look purged (retention over)."""
    checked: int = 0
    """Interim and final runs whose data this look checked (:mod:`experiments.runs.sufficiency`)."""
    alerts: int = 0
    """Of those, the checks that found the data may not support the analysis."""


def _scheduler_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def tick(settings: Settings, engine: Engine, producer: Any, now: datetime) -> TickReport:
    """Compute the runs due at ``now``, claim the unclaimed ones, publish what this call
    claimed and the claims nobody published.

    Parameters
    ----------
    settings
        Topic names and the ``scheduler`` group.
    engine
        The registry's engine (tests pass one engine per scheduler).
    producer
        A kafka-python producer (:func:`ingest.kafka.clients.producer`, the scheduler's).
    now
        The clock.
    """
    runs = due_runs(engine, now)
    claimed = claim_runs(engine, runs, catch_up=settings.scheduler.catch_up,
                         claimed_by=_scheduler_id())
    topic = settings.topics.analysis_requests
    published = publish_runs(engine, producer, topic, claimed)
    stale = datetime.now(UTC) - timedelta(seconds=settings.scheduler.republish_after_s)
    orphans = unpublished_runs(engine, stale)
    republished = publish_runs(engine, producer, topic, orphans)
    if republished:
        logger.warning("%d claimed runs were not published by their scheduler: published "
                       "again", republished)
    purged = 0
    if settings.scheduler.purge_expired:
        from experiments.privacy.retention import purge_expired

        today = now.astimezone(SCHOOL_TIMEZONE).date()
        purged = len(purge_expired(settings, actor=_SCHEDULER_ACTOR, today=today))
    checks = check_upcoming(settings, engine, upcoming_runs(engine, now, settings), now,
                            _SCHEDULER_ACTOR)
    return TickReport(due=len(runs), claimed=published, republished=republished,
                      purged=purged, checked=len(checks),
                      alerts=sum(r.status != "ok" for r in checks))


def upcoming_runs(engine: Engine, now: datetime, settings: Settings) -> list[ScheduledRun]:
    """Runs that fall due after ``now`` and within ``settings.scheduler.sufficiency_lead_days``
    (none when it is 0), under the protocol version in force now."""
    lead = timedelta(days=settings.scheduler.sufficiency_lead_days)
    if lead <= timedelta(0):
        return []
    now = utc(now)
    return [run for run in due_runs(engine, now + lead) if run.due_at > now]


def run_scheduler(
    settings: Settings,
    *,
    once: bool = False,
    clock: Callable[[], datetime] | None = None,
    stop: threading.Event | None = None,
    engine: Engine | None = None,
) -> TickReport:
    """``preuve scheduler``: look at the schedules now (catching up missed runs), then
    every ``settings.scheduler.poll_interval_s`` until ``stop`` is set.

    Parameters
    ----------
    settings
        The settings read at start-up.
    once
        Look once and return (tests, cron).
    clock
        Returns "now"; defaults to the wall clock in UTC.
    stop
        Set it to end the loop (signal handlers, tests).
    engine
        The registry's engine (default: :func:`experiments.database.registry_engine`).

    Returns
    -------
    TickReport
        The totals of every look.
    """
    from kafka.errors import KafkaError

    from experiments.database import registry_engine
    from ingest.kafka import clients
    from ingest.kafka.principals import SCHEDULER

    engine = engine if engine is not None else registry_engine(settings)
    clock = clock or (lambda: datetime.now(UTC))
    stop = stop or threading.Event()
    try:
        ensure_request_topic(settings)
        producer: Any = clients.producer(settings, SCHEDULER)
    except KafkaError as exc:
        raise SchedulerError(f"scheduler: cannot reach Kafka to publish analysis requests "
                             f"({type(exc).__name__}: {exc})", field="kafka_bootstrap") from exc
    totals = TickReport(0, 0, 0)
    try:
        while True:
            try:
                report = tick(settings, engine, producer, clock())
            except SchedulerError as error:
                if once:
                    raise
                # Kafka away: the claims stay unpublished and are published at a later look.
                logger.error("scheduler: %s", error)
                report = TickReport(0, 0, 0)
            totals = TickReport(report.due, totals.claimed + report.claimed,
                                totals.republished + report.republished,
                                totals.purged + report.purged)
            if once or stop.wait(settings.scheduler.poll_interval_s):
                break
    finally:
        producer.close()
    return totals
