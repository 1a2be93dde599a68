"""Analysis workers and the records of analysis runs.

Workers are a Kafka consumer group on ``preuve.analysis.requests`` (kafka-python, one
request at a time, manual commit): several workers share the topic's partitions. For
each request a worker:

1. returns at once if the run key is already recorded (a copy of a request, or a
   request re-delivered after a crash that happened after the record);
2. reads the experiment's store and enrollments into the analysis tables
   (:mod:`experiments.runs.inputs`), under the protocol version named by the request;
3. runs :func:`analysis.run.run_analysis`, writes the results JSON and the HTML page
   (:func:`analysis.report.document.write_html`) as new files
   ``state_dir/reports/<experiment>/<analysis>/<run-id>.{json,html}``; a run id is never
   reused and the files are created exclusively, so nothing is ever overwritten;
4. records the run in ``analysis_runs`` (unique run key, immutable: the database refuses
   updates and deletes), with the protocol version and SHA-256, the data watermark
   (stored events, latest event time, the stream workers' committed offsets of
   ``preuve.events``), the software versions, the results JSON and the files' hashes,
   and, in the same transaction, the files themselves (:mod:`experiments.runs.artefacts`:
   the portal and ``preuve runs files`` read them from the registry, so neither needs
   this worker's ``state_dir``);
5. commits the request's offset.

A worker killed anywhere before 4 leaves at most orphan files that no record names; the
request was not committed, so the next worker that owns the partition runs it again and
records it once. Killed between 4 and 5, the re-delivered request finds the record.

Deterministic failures (the analysis refuses its inputs, the registry has no such
protocol version, the request's hash differs from the registry's: an
:class:`analysis.errors.AnalysisError` or :class:`experiments.errors.ExperimentError`)
are recorded as ``failed`` runs with their reason, so that a bad experiment cannot block
the topic. Anything else (a database or Kafka outage, a bug) stops the worker without
committing, and the request is retried by the next worker that owns its partition.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from analysis.errors import AnalysisError
from analysis.report.context import (
    ReportContext,
    amendments_from_versions,
    software_versions,
    usage_context_from_files,
    usage_context_from_frames,
)
from analysis.report.document import write_html
from analysis.results import to_json_dict
from analysis.run import run_analysis
from analysis.sequential import SequentialLook, sequential_look
from experiments.database import insert_for
from experiments.errors import ExperimentError, SchedulerError
from experiments.protocol.language import Protocol
from experiments.protocol.vocabulary import SCHOOL_TIMEZONE
from experiments.registry import get_experiment, registered_protocol
from experiments.runs.artefacts import Artefact, insert_artefacts
from experiments.runs.inputs import read_analysis_inputs
from experiments.runs.scheduler import (
    AnalysisRequest,
    claimed_request,
    ensure_request_topic,
    utc,
)
from experiments.runs.waves import wave_effects
from experiments.settings import Settings
from experiments.store import ExperimentStore, events_table

__all__ = [
    "RunRecord",
    "analysis_runs_table",
    "find_run",
    "list_runs",
    "perform_run",
    "report_dir",
    "reproduce_run",
    "run_analysis_worker",
]

logger = logging.getLogger(__name__)

_metadata = sa.MetaData()
#: Records of runs (see ``migrations/registry/versions/scheduler_0001.py``).
analysis_runs_table = sa.Table(
    "analysis_runs",
    _metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("run_key", sa.String(160), nullable=False, unique=True),
    sa.Column("experiment_id", sa.String(63), nullable=False),
    sa.Column("analysis", sa.String(32), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("protocol_version", sa.Integer, nullable=False),
    sa.Column("protocol_sha256", sa.String(64), nullable=False),
    sa.Column("watermark", sa.JSON, nullable=False),
    sa.Column("software", sa.JSON, nullable=False),
    sa.Column("results_json", sa.Text),
    sa.Column("json_path", sa.Text),
    sa.Column("json_sha256", sa.String(64)),
    sa.Column("html_path", sa.Text),
    sa.Column("html_sha256", sa.String(64)),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("worker", sa.String(128), nullable=False),
)



@dataclass(frozen=True)
class RunRecord:
    """A recorded analysis run (one row of ``analysis_runs``)."""

    run_id: str
    run_key: str
    experiment_id: str
    analysis: str
    due_at: datetime
    sequence: int
    """1, 2, 3... per (experiment, analysis), in the order runs were recorded: the
    version of the report (with several workers, not necessarily the order of due times)."""
    status: str
    """``done`` or ``failed`` (then ``reason`` says why)."""
    reason: str | None
    protocol_version: int
    protocol_sha256: str
    watermark: dict[str, Any]
    software: dict[str, str]
    results_json: str | None
    json_path: str | None
    json_sha256: str | None
    html_path: str | None
    html_sha256: str | None
    started_at: datetime
    finished_at: datetime
    worker: str


def report_dir(settings: Settings, experiment_id: str, analysis: str) -> Path:
    """Where the reports of an experiment's analysis are written."""
    return settings.state_dir / "reports" / experiment_id / analysis


def _record(row: Any) -> RunRecord:
    values = dict(row._mapping)
    for moment in ("due_at", "started_at", "finished_at"):
        values[moment] = utc(values[moment])
    return RunRecord(**values)


def find_run(registry: Engine, key: str) -> RunRecord | None:
    """The record of a run key, if the run was recorded."""
    table = analysis_runs_table
    with registry.connect() as connection:
        row = connection.execute(sa.select(table).where(table.c.run_key == key)).first()
    return None if row is None else _record(row)


def list_runs(registry: Engine, experiment_id: str, analysis: str | None = None
              ) -> list[RunRecord]:
    """Recorded runs of an experiment (optionally one analysis), oldest first."""
    table = analysis_runs_table
    query = sa.select(table).where(table.c.experiment_id == experiment_id)
    if analysis is not None:
        query = query.where(table.c.analysis == analysis)
    query = query.order_by(table.c.analysis, table.c.sequence)
    with registry.connect() as connection:
        return [_record(row) for row in connection.execute(query)]


def _events_offsets(settings: Settings) -> dict[str, Any]:
    """Committed offsets of the stream workers on ``preuve.events`` (what the stores hold
    at least), or why they are unknown."""
    from kafka.errors import KafkaError

    from ingest.errors import BrokerError
    from ingest.kafka.principals import ANALYSIS
    from ingest.kafka.topics import committed_offsets

    group, topic = settings.worker.group_id, settings.topics.events
    try:
        offsets = committed_offsets(settings, ANALYSIS, group, topic)
    except (KafkaError, BrokerError) as exc:  # the run stays valid; the watermark says why
        logger.warning("committed offsets of group %s unknown: %s", group, exc)
        return {"group": group, "topic": topic, "offsets": None, "reason": str(exc)}
    return {"group": group, "topic": topic,
            "offsets": {str(partition): offset for partition, offset in offsets.items()}}


def _store_watermark(settings: Settings, experiment_id: str) -> dict[str, Any]:
    store = ExperimentStore(settings, experiment_id)
    events = events_table
    with store.engine.connect() as connection:
        count, latest, stored = connection.execute(
            sa.select(sa.func.count(), sa.func.max(events.c.occurred_at),
                      sa.func.max(events.c.stored_at)).select_from(events)).one()
    return {"stored_events": int(count),
            "latest_event_at": None if latest is None else utc(latest).isoformat(),
            "latest_stored_at": None if stored is None else utc(stored).isoformat()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _create(path: Path, write: Any) -> str:
    """Write a new file at ``path`` through ``write(tmp)``; never replace an existing one.

    Returns the file's SHA-256. ``os.link`` fails if ``path`` exists, atomically.
    """
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as handle:
        tmp = Path(handle.name)
    try:
        write(tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return _sha256(path)


def _insert(registry: Engine, values: dict[str, Any],
            artefacts: list[Artefact] | None = None) -> RunRecord:
    """Insert a run record once per run key; the sequence is the next free one. The
    run's artefacts are stored in the same transaction, if this insert records the run."""
    table = analysis_runs_table
    statement = insert_for(registry, table).on_conflict_do_nothing(
        index_elements=["run_key"]).returning(table.c.run_id)
    for _attempt in range(20):
        try:
            with registry.begin() as connection:
                last = connection.scalar(
                    sa.select(sa.func.max(table.c.sequence)).where(
                        table.c.experiment_id == values["experiment_id"],
                        table.c.analysis == values["analysis"]))
                inserted = connection.execute(statement.values(
                    **values, sequence=(last or 0) + 1)).first() is not None
                if inserted:
                    insert_artefacts(connection, values["run_id"], artefacts or [])
        except IntegrityError:
            # Another run of this analysis took the sequence number: take the next one.
            continue
        found = find_run(registry, values["run_key"])
        assert found is not None
        if not inserted:
            logger.info("run %s was recorded by another worker as %s", values["run_key"],
                        found.run_id)
        return found
    raise SchedulerError(f"run {values['run_key']}: no free sequence number after 20 tries",
                         field="sequence")


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def _requested_protocol(registry: Engine, request: AnalysisRequest) -> Protocol:
    """The protocol version a request names, checked against its hash."""
    registered = registered_protocol(registry, request.experiment_id, request.protocol_version)
    if registered.version.sha256 != request.protocol_sha256:
        raise SchedulerError(
            f"run {request.run_key}: protocol version {request.protocol_version} has sha256 "
            f"{registered.version.sha256}, the request says {request.protocol_sha256}",
            field="protocol_sha256",
        )
    return registered.protocol


def _look(protocol: Protocol, analysis: str, due_at: datetime) -> SequentialLook | None:
    """The group-sequential look of a run: its due day (Paris) names its schedule entry."""
    return sequential_look(protocol, analysis, utc(due_at).astimezone(SCHOOL_TIMEZONE).date())


def _reason(error: AnalysisError | ExperimentError) -> str:
    """The error's message; an input file is named by its name (its directory is gone)."""
    if error.path and error.line is not None:
        where = f"{Path(error.path).name}:{error.line}"
        return f"{where}: {error.field}: {error.reason}" if error.field else \
            f"{where}: {error.reason}"
    return str(error)


def _periode_of(protocol: Any, request: AnalysisRequest) -> tuple[int, str] | None:
    """The période a run closes when its protocol schedules in périodes (reports say it)."""
    from experiments.protocol.calendar import periode_closed_on
    from experiments.protocol.vocabulary import SCHOOL_TIMEZONE

    schedule = getattr(protocol, "schedule", ())
    if protocol is None or not any(e.every == "periode" or isinstance(e.at, str)
                                   for e in schedule):
        return None
    periods = protocol.periods
    return periode_closed_on(request.due_at.astimezone(SCHOOL_TIMEZONE).date(),
                             periods.intervention.start, periods.endline(),
                             protocol.population.academies)


def _questionnaire_watermark(files: Any) -> dict[str, int]:
    """How many questionnaire answers the run left out (only when the protocol has any)."""
    answers = getattr(files, "questionnaires", None)
    return {} if answers is None else {"questionnaire_answers_ignored": answers.ignored}


def _report_context(registry: Engine, request: AnalysisRequest, files: Any,
                    values: dict[str, Any], started: datetime, protocol: Any = None
                    ) -> ReportContext:
    """What the report shows beyond the results: the usage funnel and weekly use, the
    three levels of use (from the tables the run read from the store, not from its files
    parsed again), the amendments up to the version used, the watermark and the software
    versions."""
    tables = files.tables
    usage = (usage_context_from_frames(*tables.usage_frames()) if tables is not None
             else usage_context_from_files(files.units, files.usage, files.outcomes))
    versions = get_experiment(registry, request.experiment_id).versions
    levels = None
    if protocol is not None:
        from analysis.usage import usage_levels_from_files, usage_levels_from_frames

        compliance = protocol.usage.compliance
        rule = {"arms": [a.name for a in protocol.arms], "control": protocol.control_arm.name,
                "threshold_minutes": compliance.min_active_minutes if compliance else None,
                "idle_timeout_s": protocol.usage.idle_timeout_s}
        levels = (usage_levels_from_frames(tables.units, tables.usage.to_pandas(),
                                           tables.levels, **rule) if tables is not None
                  else usage_levels_from_files(files.units, files.usage, files.levels,
                                               **rule))
    return dataclasses.replace(
        usage,
        usage_levels=levels,
        protocol_version=request.protocol_version,
        protocol_sha256=request.protocol_sha256,
        amendments=amendments_from_versions(versions, up_to=request.protocol_version),
        watermark=values["watermark"],
        software=values["software"],
        generated_at=started.isoformat(timespec="seconds"),
        questionnaires=getattr(files, "questionnaire_summary", ()),
    )


def perform_run(settings: Settings, request: AnalysisRequest, registry: Engine | None = None,
                *, source: dict[str, int] | None = None) -> RunRecord:
    """Run one requested analysis and record it, once per run key.

    Parameters
    ----------
    settings
        Where the store and the reports are; Kafka for the watermark's offsets.
    request
        The request published by the scheduler.
    registry
        The registry's engine (default: :func:`experiments.database.registry_engine`).
    source
        Partition and offset of the request in ``preuve.analysis.requests``, kept in the
        watermark.

    Returns
    -------
    RunRecord
        The record (an existing one if the run key was already recorded).

    Raises
    ------
    SchedulerError
        The request names a protocol version whose hash differs from the registry's.
    """
    from experiments.database import registry_engine

    registry = registry if registry is not None else registry_engine(settings)
    existing = find_run(registry, request.run_key)
    if existing is not None:
        logger.info("run %s already recorded as %s: nothing to do", request.run_key,
                    existing.run_id)
        return existing
    started = datetime.now(UTC)
    run_id = f"{utc(request.due_at):%Y%m%dT%H%MZ}-{secrets.token_hex(4)}"
    offsets = {**_events_offsets(settings), "request": source}
    values: dict[str, Any] = {
        "run_id": run_id, "run_key": request.run_key, "experiment_id": request.experiment_id,
        "analysis": request.analysis, "due_at": utc(request.due_at),
        "protocol_version": request.protocol_version,
        "protocol_sha256": request.protocol_sha256, "software": software_versions(),
        "status": "done", "reason": None, "results_json": None, "json_path": None,
        "json_sha256": None, "html_path": None, "html_sha256": None,
        "started_at": started, "worker": _worker_id(),
    }
    scratch = settings.state_dir / "analysis-scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    results = None
    protocol = None
    context = None
    with tempfile.TemporaryDirectory(dir=scratch, prefix=f"{run_id}-") as private:
        try:
            protocol = _requested_protocol(registry, request)
            # The data of the due time, not of the moment it runs (see
            # experiments.runs.inputs: "The data of a date").
            inputs = read_analysis_inputs(settings, registry, protocol, Path(private),
                                          cutoff=utc(request.due_at))
            results = run_analysis(inputs.plan, inputs.units, inputs.outcomes, inputs.usage,
                                   analysis=request.analysis,
                                   sequential=_look(protocol, request.analysis,
                                                    request.due_at))
        except (AnalysisError, ExperimentError) as error:
            # Deterministic: running it again would fail the same way. Recorded, so that
            # the request is committed and the next ones are served.
            values.update(status="failed", reason=_reason(error),
                          watermark={**_store_watermark(settings, request.experiment_id),
                                     "kafka": offsets})
        else:
            values["watermark"] = {**inputs.files.watermark.to_json(),
                                   "assessments_ignored": inputs.files.assessments_ignored,
                                   "assessments_as_usage": inputs.files.assessments_as_usage,
                                   **_questionnaire_watermark(inputs.files),
                                   "kafka": offsets}
            context = _report_context(registry, request, inputs.files, values, started,
                                      protocol)
            # Named waves (a cohort over school years): the effect at each of them.
            waves = wave_effects(settings, registry, protocol, Path(private),
                                 utc(request.due_at), results, request.analysis)
            context = dataclasses.replace(context, periode=_periode_of(protocol, request),
                                          waves=tuple(w.to_json() for w in waves))
    if results is not None:
        folder = report_dir(settings, request.experiment_id, request.analysis)
        folder.mkdir(parents=True, exist_ok=True)
        json_path, html_path = folder / f"{run_id}.json", folder / f"{run_id}.html"
        payload = to_json_dict(results)
        if context is not None and context.waves:
            payload["waves"] = list(context.waves)
        values["results_json"] = json.dumps(payload, ensure_ascii=False,
                                            allow_nan=False, sort_keys=True)
        values["json_sha256"] = _create(json_path, lambda p: p.write_text(
            json.dumps(payload, ensure_ascii=False, indent=2, allow_nan=False) + "\n",
            encoding="utf-8"))
        values["html_sha256"] = _create(
            html_path, lambda p: write_html(results, p, protocol=protocol, context=context)
        )
        values["json_path"], values["html_path"] = str(json_path), str(html_path)
    values["finished_at"] = datetime.now(UTC)
    # The registry holds the files (experiments.runs.artefacts): the portal and the CLI
    # read them there, on whatever machine they run; the files above are this worker's
    # local copy.
    artefacts = [Artefact.of("json", Path(values["json_path"]).read_bytes()),
                 Artefact.of("html", Path(values["html_path"]).read_bytes())
                 ] if results is not None else []
    record = _insert(registry, values, artefacts)
    if record.run_id != run_id:  # another worker recorded it first: ours is an orphan
        for name in ("json_path", "html_path"):
            if values[name]:
                Path(values[name]).unlink(missing_ok=True)
    elif record.status == "done":
        logger.info("experiment %s: %s analysis due %s done, run %s (report v%d, protocol "
                    "v%d, %d events)", record.experiment_id, record.analysis,
                    record.due_at.isoformat(), record.run_id, record.sequence,
                    record.protocol_version, record.watermark.get("stored_events", 0))
    else:
        logger.warning("experiment %s: %s analysis due %s failed, run %s: %s",
                       record.experiment_id, record.analysis, record.due_at.isoformat(),
                       record.run_id, record.reason)
    return record


def reproduce_run(settings: Settings, record: RunRecord, registry: Engine | None = None
                  ) -> dict[str, Any]:
    """Compute a recorded run again, from the store and the registry as they are now, and
    return its results JSON object (nothing is written or recorded).

    A run reads the data of its due time (:mod:`experiments.runs.inputs`), so the object
    equals the recorded ``results_json`` even after more data arrived; an auditor compares
    the two. (A pupil's objection recorded since then is the one expected difference:
    their data was deleted.)

    Raises
    ------
    SchedulerError
        The run failed when it was recorded (nothing to reproduce), or its protocol
        version's hash differs from the registry's.
    """
    from experiments.database import registry_engine

    registry = registry if registry is not None else registry_engine(settings)
    if record.status != "done":
        raise SchedulerError(f"run {record.run_key} failed when it ran ({record.reason}): "
                             "no results to reproduce", field="status")
    request = AnalysisRequest(record.run_key, record.experiment_id, record.analysis,
                              record.due_at, record.protocol_version, record.protocol_sha256)
    protocol = _requested_protocol(registry, request)
    scratch = settings.state_dir / "analysis-scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=f"{record.run_id}-again-") as private:
        inputs = read_analysis_inputs(settings, registry, protocol, Path(private),
                                      cutoff=utc(record.due_at))
        results = run_analysis(inputs.plan, inputs.units, inputs.outcomes, inputs.usage,
                               analysis=record.analysis,
                               sequential=_look(protocol, record.analysis, record.due_at))
        payload = to_json_dict(results)
        waves = wave_effects(settings, registry, protocol, Path(private), utc(record.due_at),
                             results, record.analysis)
        if waves:
            payload["waves"] = [w.to_json() for w in waves]
    plain: dict[str, Any] = json.loads(json.dumps(payload, ensure_ascii=False,
                                                  allow_nan=False, sort_keys=True))
    return plain


def _claimed_request(registry: Engine, value: bytes, partition: int, offset: int
                     ) -> AnalysisRequest | None:
    """The request in a message, if it is well formed and the scheduler claimed it in the
    registry; else None, logged (a malformed or forged request is skipped, not run)."""
    try:
        request = AnalysisRequest.from_json(value)
    except SchedulerError as error:
        logger.error("%s (partition %d, offset %d): skipped", error, partition, offset)
        return None
    if not claimed_request(registry, request):
        logger.error("analysis request %s (partition %d, offset %d): not claimed by the "
                     "scheduler in the registry: ignored", request.run_key, partition, offset)
        return None
    return request


def run_analysis_worker(
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    once: bool = False,
    idle_exit_s: float = 5.0,
) -> int:
    """``preuve scheduler --worker``: consume analysis requests until ``stop`` is set.

    Parameters
    ----------
    settings
        Kafka, topics, ``scheduler.worker_group_id`` and ``scheduler.max_run_s``.
    stop
        Set it to end the loop after the current run.
    once
        Return once no request arrived for ``idle_exit_s`` seconds (tests, cron).

    Returns
    -------
    int
        Requests served (recorded, found recorded, or refused as malformed).
    """
    from kafka.errors import CommitFailedError, KafkaError
    from kafka.structs import OffsetAndMetadata

    from experiments.database import registry_engine
    from ingest.kafka import clients
    from ingest.kafka.principals import ANALYSIS

    stop = stop or threading.Event()
    registry = registry_engine(settings)
    try:
        ensure_request_topic(settings)
        consumer = clients.consumer(
            settings, ANALYSIS, settings.topics.analysis_requests,
            group_id=settings.scheduler.worker_group_id,
            client_id="preuve-analysis-worker",
            max_poll_records=1,
            max_poll_interval_ms=int(settings.scheduler.max_run_s * 1000),
            session_timeout_ms=int(settings.worker.session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.worker.session_timeout_s * 1000 / 3),
        )
    except KafkaError as exc:
        raise SchedulerError(f"analysis worker: cannot reach Kafka to read analysis requests "
                             f"({type(exc).__name__}: {exc})", field="kafka_bootstrap") from exc
    served = 0
    idle_since = time.monotonic()
    logger.info("analysis worker ready on %s (group %s)", settings.topics.analysis_requests,
                settings.scheduler.worker_group_id)
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=500, max_records=1)
            if not polled:
                idle = time.monotonic() - idle_since
                # A worker without partitions (more workers than partitions) waits longer,
                # in case a rebalance gives it some.
                if once and idle > idle_exit_s * (1 if consumer.assignment() else 6):
                    break
                continue
            for partition, records in polled.items():
                for message in records:
                    request = _claimed_request(registry, message.value,
                                               partition.partition, message.offset)
                    if request is not None:
                        perform_run(settings, request, registry, source={
                            "partition": partition.partition, "offset": message.offset})
                    try:
                        consumer.commit({partition: OffsetAndMetadata(message.offset + 1, "",
                                                                      -1)})
                    except CommitFailedError as error:
                        # The group moved the partition while this run was going on: its
                        # new owner gets the request again and finds the run recorded.
                        logger.warning("request at offset %d of partition %d: not committed "
                                       "(%s); its next owner finds it recorded",
                                       message.offset, partition.partition, error)
                    served += 1
            idle_since = time.monotonic()
    finally:
        consumer.close()
    return served
