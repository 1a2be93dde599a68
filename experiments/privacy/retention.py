"""Retention and erasure: an experiment's row-level data leaves when its protocol says.

Four operations, each recorded in the audit log (who, what, when; never a learner id):

- :func:`purge_experiment` — once the protocol's ``retention.keep_until`` has passed (or
  before, with ``force`` and a reason), remove every row-level trace of the experiment:
  its store (the SQLite file with its WAL, or the PostgreSQL schema), the parked
  references of its classes' unrouted events, the gateway receipts of its stored events,
  the pupils of a learner-randomised design (``learner_enrollments``), the pupil
  pseudonyms recorded with pupil withdrawals, and its enrollments in the compacted
  Kafka topic ``preuve.enrollments`` (a tombstone per class, see below). What stays:
  the registry's protocol versions and lifecycle, the enrollments and allocation log
  (class-level: the randomisation's evidence and the CONSORT counts), the analysis run
  records and report files (aggregates, already small-cell suppressed) and the audit
  log. A purge is recorded in ``retention_purges``.
- :func:`erase_learner` — one pupil, named by the id the académie or resource knows
  (re-keyed here with the experiment's key, as the stream worker does): their events and
  daily usage, the receipts of those events, their pseudonym in pupil withdrawals and,
  in a learner design, their enrollment row (their draw stays in the allocation log,
  anonymous: ``pupil:<sequence>``).
- :func:`remove_withdrawn_pupil_data` — what a pupil's withdrawal with the data policy
  ``remove`` (the default for pupils: their objection) does at once: their events, daily
  usage and receipts go; their enrollment, draw and withdrawal record (pseudonym) stay.
  ``preuve enroll --withdraw … --pupil`` and the enrollment API call it.
- :func:`erase_class` — one class: it stops taking part (withdrawn if it was enrolled,
  its enrollment tombstoned in Kafka so the router forgets it) and every pupil-level
  trace goes: its pupils' events and usage, parked references, receipts, withdrawn
  pupils' pseudonyms, and in a learner design its pupils' enrollment rows.

**What an erased class leaves, and why.** The class's line in ``enrollments`` and in the
append-only ``allocation_log`` stay, with its class id, school, stratum, draw and arm;
so do its withdrawal record and the audit entries. This is the option we hold
defensible before a data-protection officer:

1. None of it is about a pupil. A class id is the académie's identifier of a group
   (like the school's UAI), and the rows hold class-level facts only (niveau, declared
   head count, the attributes the protocol stratifies on, the arm). Every pupil-level
   row — events, usage, scores, pseudonyms, receipts, parked references — is deleted,
   and the SQLite files are rewritten (``VACUUM``) so the bytes go too.
2. The allocation is what the intention-to-treat analysis and its audit rest on: an
   erased class still counts as randomised (CONSORT flow, attrition), and the log
   replays from the protocol (:func:`experiments.enrollment.assignments.verify_allocations`). The
   RGPD's research exemption (art. 17(3)(d) with art. 89) covers keeping what would
   otherwise make the trial's result unverifiable, with minimisation as the safeguard.
3. Keeping the append-only guarantee whole is itself a safeguard: a database that lets
   a code path rewrite the log to redact a label also lets it rewrite an arm. And the
   class id is what refuses a later re-enrollment of the erased class, which would
   re-draw its arm (a way to pick arms).

Replacing the class id by a keyed hash in the log was the alternative considered: it
would keep (2) but weaken (3), for a label that identifies no pupil. If the product
side decides class ids must go too, that is a new migration allowing exactly that one
column to change.

**Kafka.** Purging an experiment, or erasing a class, writes a tombstone (key
:func:`ingest.kafka.producer.enrollment_key`, value ``None``) for each of its enrollments to
the compacted topic ``preuve.enrollments`` with kafka-python (``acks=all``), *before*
anything else is removed; the stream worker then forgets those enrollments and
compaction removes the records. The audit entry gives the topic and the number of
tombstones. If the broker cannot be reached, the purge or erasure fails with a
:class:`~experiments.errors.RetentionError` and removes nothing (run it again when the
broker is back): it never claims a success that Kafka does not share. When none of the
enrollments concerned was ever published (``published_status`` never set), there is
nothing to forget in the topic and no broker is needed; the audit entry says so. After
the tombstones, every enrollment concerned has ``published_status``
:data:`experiments.enrollment.publishing.FORGOTTEN`, so that
:func:`experiments.enrollment.publishing.publish_pending` never brings one back, and a second purge
needs no broker.

Not covered here: the ingress topic ``preuve.events`` and the dead-letter topic keep what
resources sent for ``Settings.kafka.ingress_retention_days`` (bounded by Kafka's
retention, see the README "Kafka"). A stream worker still consuming events of a
purged experiment's classes would create a new, empty store: purge after the lifecycle
closed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from experiments import database
from experiments.access import reason_problem, record_audit
from experiments.database import is_postgres, registry_engine, store_engine, store_schema
from experiments.enrollment.files import EnrollmentDesign
from experiments.enrollment.publishing import FORGOTTEN
from experiments.enrollment.tables import EnrollmentRow, LearnerEnrollmentRow, WithdrawalRow
from experiments.enrollment.withdrawal import Withdrawal, record_withdrawal
from experiments.errors import RetentionError
from experiments.protocol.vocabulary import SCHOOL_TIMEZONE
from experiments.registry import registered_protocol
from experiments.settings import Settings
from experiments.store import daily_usage_table, events_table, fold_usage

__all__ = [
    "Erasure",
    "Purge",
    "erase_class",
    "erase_learner",
    "purge_due",
    "purge_expired",
    "purge_experiment",
    "purges",
    "remove_withdrawn_pupil_data",
    "store_exists",
]

logger = logging.getLogger(__name__)

_CHUNK = 500  # ids per IN (...): under SQLite's historical limit of 999 variables
# How long a tombstone may wait for the broker (metadata, then acknowledgement): long
# enough for a leader election, short enough for an operator waiting on the command.
_KAFKA_TIMEOUT_MS = 30_000

purges_table = sa.Table(
    "retention_purges",
    database.RegistryBase.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment_id", sa.String(63), nullable=False, index=True),
    sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("keep_until", sa.Date, nullable=False),
    sa.Column("forced", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("removed", sa.JSON, nullable=False),
)


@dataclass(frozen=True)
class Purge:
    """What a purge removed (counts of rows or files, never their content)."""

    experiment_id: str
    keep_until: date
    forced: bool
    removed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Erasure:
    """What an erasure of one pupil or one class removed."""

    experiment_id: str
    scope: str
    """``pupil`` or ``class``."""
    removed: dict[str, int] = field(default_factory=dict)


# --- the store -----------------------------------------------------------------------


def _sqlite_store_files(settings: Settings, experiment_id: str) -> list[Path]:
    base = settings.state_dir / "stores" / f"{experiment_id}.sqlite"
    return [base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm"),
            base.with_name(base.name + "-journal"),
            base.with_name(base.name + ".migrate-lock")]  # experiments.database


def store_exists(settings: Settings, experiment_id: str) -> bool:
    """Whether the experiment has a store (without creating one)."""
    if is_postgres(settings):
        query = sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s")
        with registry_engine(settings).connect() as connection:
            return connection.scalar(query, {"s": store_schema(experiment_id)}) is not None
    return _sqlite_store_files(settings, experiment_id)[0].exists()


def _forget_engine(settings: Settings, experiment_id: str) -> None:
    # The engine cache of experiments.database keeps pooled connections to the store;
    # they must be closed before the file or schema goes, and not be reused after.
    key = (settings.database_dsn() or str(settings.state_dir), store_schema(experiment_id))
    with database._engines_lock:
        engine = database._engines.pop(key, None)
    if engine is not None:
        engine.dispose()


def _count(connection: sa.Connection, table: sa.Table) -> int:
    return int(connection.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


def _event_ids(engine: Engine, where: Any = None) -> Iterator[list[str]]:
    query = sa.select(events_table.c.event_id)
    if where is not None:
        query = query.where(where)
    with engine.connect() as connection:
        result = connection.execution_options(yield_per=_CHUNK).execute(query)
        for chunk in result.partitions(_CHUNK):
            yield [row[0] for row in chunk]


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _delete_receipts(registry: Engine, event_ids: Sequence[str]) -> int:
    from ingest.receipts import receipts  # the gateway's table: imported only when needed

    removed = 0
    with registry.begin() as connection:
        for chunk in _chunks(event_ids):
            removed += connection.execute(
                receipts.delete().where(receipts.c.event_id.in_(chunk))
            ).rowcount or 0
    return removed


def _delete_parked(registry: Engine, class_ids: Sequence[str], resource_id: str) -> int:
    from ingest.stream.parking import parked_table

    removed = 0
    with registry.begin() as connection:
        for chunk in _chunks(class_ids):
            removed += connection.execute(
                parked_table.delete().where(parked_table.c.class_id.in_(chunk),
                                            parked_table.c.resource_id == resource_id)
            ).rowcount or 0
    return removed


def _drop_store(settings: Settings, experiment_id: str) -> tuple[int, int]:
    """Remove the store; returns the (events, usage rows) it held."""
    if not store_exists(settings, experiment_id):
        return 0, 0
    engine = store_engine(settings, experiment_id)
    with engine.connect() as connection:
        events, usage = _count(connection, events_table), _count(connection, daily_usage_table)
    _forget_engine(settings, experiment_id)
    if is_postgres(settings):
        with registry_engine(settings).begin() as connection:
            connection.execute(
                sa.text(f'DROP SCHEMA IF EXISTS "{store_schema(experiment_id)}" CASCADE'))
    else:
        for path in _sqlite_store_files(settings, experiment_id):
            path.unlink(missing_ok=True)
    return events, usage


# --- Kafka: tombstones of enrollments ------------------------------------------------


@dataclass(frozen=True)
class _Enrollments:
    """Enrollments a purge or an erasure makes the router forget."""

    class_ids: list[str]
    resource_id: str
    published: bool
    """Whether any of them was published to ``preuve.enrollments`` and not forgotten."""


def _enrollments(registry: Engine, experiment_id: str, resource_id: str,
                 class_ids: Sequence[str] | None = None) -> _Enrollments:
    query = sa.select(EnrollmentRow.class_id, EnrollmentRow.published_status).where(
        EnrollmentRow.experiment_id == experiment_id).order_by(EnrollmentRow.id)
    if class_ids is not None:
        query = query.where(EnrollmentRow.class_id.in_(list(class_ids)))
    with registry.connect() as connection:
        rows = connection.execute(query).all()
    return _Enrollments([str(c) for c, _ in rows], resource_id,
                        any(status not in (None, FORGOTTEN) for _, status in rows))


def _tombstone(settings: Settings, what: str, enrollments: _Enrollments) -> dict[str, Any]:
    """Write a tombstone for each enrollment to ``preuve.enrollments`` (acks=all) and
    wait until every one is acknowledged; the audit entry's ``kafka`` detail.

    Raises :class:`RetentionError` (field ``kafka``) when the broker cannot be reached or
    does not acknowledge: the caller has removed nothing yet.
    """
    from kafka.errors import KafkaError

    from ingest.errors import IngestError
    from ingest.kafka import clients
    from ingest.kafka.principals import ENROLLMENT
    from ingest.kafka.producer import enrollment_key

    topic = settings.topics.enrollments
    if not enrollments.class_ids or not enrollments.published:
        return {"topic": topic, "tombstones": 0,
                "skipped": "none of its enrollments is published (never, or already "
                           "tombstoned)"}
    keys = [enrollment_key(c, enrollments.resource_id) for c in enrollments.class_ids]
    try:
        producer: Any = clients.producer(
            settings, ENROLLMENT, client_id="preuve-retention",
            bootstrap_timeout_ms=_KAFKA_TIMEOUT_MS, max_block_ms=_KAFKA_TIMEOUT_MS,
            delivery_timeout_ms=2 * _KAFKA_TIMEOUT_MS)
        try:
            futures = [producer.send(topic, key=key, value=None) for key in keys]
            producer.flush(timeout=2 * _KAFKA_TIMEOUT_MS / 1000)
            for future in futures:
                future.get(timeout=_KAFKA_TIMEOUT_MS / 1000)
        finally:
            producer.close(timeout=5)
    except (KafkaError, IngestError, OSError) as exc:
        raise RetentionError(
            f"{what}: cannot write the tombstones of its {len(keys)} enrollments to Kafka "
            f"topic {topic} ({type(exc).__name__}: {exc}); nothing was removed: start the "
            "broker (preuve kafka up) or set PREUVE_KAFKA_BOOTSTRAP, then run it again",
            field="kafka",
        ) from exc
    logger.info("%s: %d enrollment tombstones written to %s", what, len(keys), topic)
    return {"topic": topic, "tombstones": len(keys)}


def _mark_forgotten(session: Session, experiment_id: str, class_ids: Sequence[str]) -> None:
    """The router has forgotten these enrollments: nothing may publish them again."""
    for chunk in _chunks(class_ids):
        session.execute(
            sa.update(EnrollmentRow)
            .where(EnrollmentRow.experiment_id == experiment_id,
                   EnrollmentRow.class_id.in_(list(chunk)))
            .values(published_status=FORGOTTEN)
        )


def _delete_learner_enrollments(session: Session, experiment_id: str, where: Any) -> int:
    return _rowcount(session.execute(
        sa.delete(LearnerEnrollmentRow)
        .where(LearnerEnrollmentRow.experiment_id == experiment_id, where)
    ))


# --- purge ---------------------------------------------------------------------------


def purge_experiment(
    settings: Settings,
    experiment_id: str,
    *,
    actor: str,
    force: bool = False,
    reason: str | None = None,
    today: date | None = None,
) -> Purge:
    """Remove an experiment's row-level data once its retention period is over.

    Parameters
    ----------
    settings
        Where the registry and the stores are.
    experiment_id
        A registered experiment.
    actor
        Who purges, as the audit log names principals (``admin:*:cli``).
    force
        Purge before ``retention.keep_until``; needs ``reason``.
    reason
        Why (required with ``force``; recorded).
    today
        The day in Paris (default: now); tests pass it.

    Returns
    -------
    Purge
        Counts of what was removed. Purging twice removes nothing the second time.

    Raises
    ------
    RetentionError
        Before ``keep_until`` without ``force``, or ``force`` without a reason, or Kafka
        did not take the enrollments' tombstones (then nothing was removed).
    RegistryError
        The experiment is not in the registry.
    """
    registry = registry_engine(settings)
    protocol = registered_protocol(registry, experiment_id).protocol
    keep_until = protocol.retention.keep_until
    today = today or datetime.now(SCHOOL_TIMEZONE).date()
    reason = (reason or "").strip() or None
    if today <= keep_until and not force:
        raise RetentionError(
            f"{experiment_id}: its data is kept until {keep_until.isoformat()} "
            f"(retention.keep_until); purging earlier needs --force and a reason",
            field="retention.keep_until",
        )
    if force and reason is None:
        raise RetentionError("a forced purge needs a reason", field="reason")
    if reason is not None and (problem := reason_problem(reason)):
        raise RetentionError(problem, field="reason")
    enrollments = _enrollments(registry, experiment_id, protocol.resource.id)
    # Kafka first: if the broker cannot take the tombstones, nothing is removed at all.
    kafka = _tombstone(settings, f"purge of {experiment_id}", enrollments)
    removed: dict[str, int] = {"enrollment_tombstones": int(kafka["tombstones"])}
    removed["receipts"] = 0
    if store_exists(settings, experiment_id):
        for ids in _event_ids(store_engine(settings, experiment_id)):
            removed["receipts"] += _delete_receipts(registry, ids)
    removed["events"], removed["daily_usage"] = _drop_store(settings, experiment_id)
    removed["parked_references"] = _delete_parked(registry, enrollments.class_ids,
                                                  protocol.resource.id)
    now = datetime.now(UTC)
    with Session(registry) as session, session.begin():
        removed["withdrawal_pupil_ids"] = _rowcount(session.execute(
            sa.update(WithdrawalRow)
            .where(WithdrawalRow.experiment_id == experiment_id,
                   WithdrawalRow.learner_id.is_not(None))
            .values(learner_id=None)
        ))
        removed["learner_enrollments"] = _delete_learner_enrollments(
            session, experiment_id, LearnerEnrollmentRow.id.is_not(None))
        _mark_forgotten(session, experiment_id, enrollments.class_ids)
        session.execute(purges_table.insert().values(
            experiment_id=experiment_id, purged_at=now, keep_until=keep_until,
            forced=bool(force and today <= keep_until), reason=reason, actor=actor,
            removed=removed,
        ))
        record_audit(session, actor, "retention.purge", experiment_id,
                     {"keep_until": keep_until.isoformat(), "forced": force, "reason": reason,
                      "removed": dict(removed), "kafka": kafka})
    _compact(registry)
    logger.info("experiment %s: purged (%d events, %d usage rows, %d parked, %d receipts, "
                "%d enrollment tombstones)", experiment_id, removed["events"],
                removed["daily_usage"], removed["parked_references"], removed["receipts"],
                removed["enrollment_tombstones"])
    return Purge(experiment_id, keep_until, force and today <= keep_until, removed)


def purges(settings: Settings, experiment_id: str) -> list[dict[str, Any]]:
    """The recorded purges of an experiment, oldest first."""
    query = (sa.select(purges_table).where(purges_table.c.experiment_id == experiment_id)
             .order_by(purges_table.c.id))
    with registry_engine(settings).connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def purge_due(settings: Settings, today: date | None = None) -> list[str]:
    """Registered experiments whose ``retention.keep_until`` has passed and that were not
    purged since: what a scheduler calls :func:`purge_experiment` on.

    Examples
    --------
    >>> purge_due(fresh_settings())
    []
    """
    from experiments.registry import ExperimentRow

    today = today or datetime.now(SCHOOL_TIMEZONE).date()
    registry = registry_engine(settings)
    with Session(registry) as session:
        ids = session.scalars(sa.select(ExperimentRow.id).where(ExperimentRow.state != "draft")
                              .order_by(ExperimentRow.id)).all()
    done = {row["experiment_id"] for experiment_id in ids
            for row in purges(settings, experiment_id)}
    return [experiment_id for experiment_id in ids if experiment_id not in done
            and registered_protocol(registry, experiment_id).protocol.retention.keep_until
            < today]


def purge_expired(settings: Settings, *, actor: str, today: date | None = None) -> list[Purge]:
    """Purge every experiment whose retention is over: what ``preuve scheduler`` does at
    each look (``scheduler.purge_expired``), so that a protocol's ``keep_until`` is kept
    without anyone having to remember it.

    An experiment whose purge fails because Kafka did not take the enrollments'
    tombstones is left whole and logged; it is still due, so the next look tries again.

    Returns
    -------
    list[Purge]
        The purges done by this call (none when nothing is due).
    """
    done = []
    for experiment_id in purge_due(settings, today):
        try:
            done.append(purge_experiment(settings, experiment_id, actor=actor, today=today))
        except RetentionError as error:
            logger.error("experiment %s: retention over but not purged yet (%s); "
                         "the next look tries again", experiment_id, error)
    return done


# --- erasure -------------------------------------------------------------------------


def _erase_rows(settings: Settings, experiment_id: str, where_events: Any,
                where_usage: Any) -> dict[str, int]:
    """Delete matching events and usage rows of the store, and the receipts of those
    events."""
    removed = {"events": 0, "daily_usage": 0, "receipts": 0}
    if not store_exists(settings, experiment_id):
        return removed
    engine = store_engine(settings, experiment_id)
    registry = registry_engine(settings)
    for ids in _event_ids(engine, where_events):
        removed["receipts"] += _delete_receipts(registry, ids)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Fold the usage queue first, holding the fold's lock to the commit: what is
            # deleted below can then never be folded back (experiments/store.py).
            fold_usage(connection, wait=True)
        removed["events"] = connection.execute(
            events_table.delete().where(where_events)).rowcount or 0
        removed["daily_usage"] = connection.execute(
            daily_usage_table.delete().where(where_usage)).rowcount or 0
    _compact(engine)
    return removed


def _compact(engine: Engine) -> None:
    """SQLite keeps deleted rows in free pages and in the WAL until they are rewritten:
    rewrite the file so that erased values are gone from the disk too."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.exec_driver_sql("VACUUM")
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


def _need_reason(reason: str) -> str:
    if not reason.strip():
        raise RetentionError("an erasure needs a reason (the request it answers)",
                             field="reason")
    if problem := reason_problem(reason):
        raise RetentionError(problem, field="reason")
    return reason.strip()


def erase_learner(
    settings: Settings, experiment_id: str, learner_id: str, *, actor: str, reason: str
) -> Erasure:
    """Erase one pupil's data from an experiment.

    Parameters
    ----------
    learner_id
        The pupil's id as the académie or the resource knows it (the id events carry);
        it is re-keyed with the experiment's key, never stored nor logged.

    Raises
    ------
    RetentionError
        No reason, or an empty id.
    """
    from ingest.pseudonym import check_pseudonym_key, load_pseudonym_key, pseudonymise

    reason = _need_reason(reason)
    if not learner_id.strip():
        raise RetentionError("learner id: empty", field="learner_id")
    registry = registry_engine(settings)
    registered_protocol(registry, experiment_id)  # the experiment must be registered
    secret = load_pseudonym_key(settings)
    check_pseudonym_key(registry, experiment_id, secret)
    key = pseudonymise(secret, experiment_id, learner_id.strip())
    removed = _erase_rows(settings, experiment_id, events_table.c.learner_key == key,
                          daily_usage_table.c.learner_key == key)
    with Session(registry) as session, session.begin():
        # Withdrawals hold the pseudonym (migration enrollment_0004 re-keyed older rows).
        removed["withdrawal_pupil_ids"] = _rowcount(session.execute(
            sa.update(WithdrawalRow)
            .where(WithdrawalRow.experiment_id == experiment_id,
                   WithdrawalRow.learner_id == key)
            .values(learner_id=None)
        ))
        removed["learner_enrollments"] = _delete_learner_enrollments(
            session, experiment_id, LearnerEnrollmentRow.learner_key == key)
        record_audit(session, actor, "retention.erase_pupil", experiment_id,
                     {"reason": reason, "removed": dict(removed)})
    _compact(registry)
    logger.info("experiment %s: one pupil erased (%d events, %d usage rows)", experiment_id,
                removed["events"], removed["daily_usage"])
    return Erasure(experiment_id, "pupil", removed)


def remove_withdrawn_pupil_data(settings: Settings, withdrawal: Withdrawal, *,
                                actor: str) -> dict[str, int] | None:
    """Carry out a pupil withdrawal's data policy: with ``remove`` (a pupil's objection,
    RGPD art. 21: the default for pupils, see
    :meth:`~experiments.enrollment.files.EnrollmentDesign.from_protocol`), the events,
    daily usage and receipts the experiment holds for the pupil are deleted now. The pupil
    keeps their arm and stays counted as randomised (intention to treat, attrition).
    Events of the pupil that arrive later are stored but never analysed: the analyses
    leave out every pupil withdrawn with ``remove``
    (:func:`experiments.runs.inputs.write_analysis_files`).

    Returns
    -------
    dict[str, int] | None
        What was deleted, or None for a class withdrawal or a policy that keeps the data.
    """
    if withdrawal.learner_id is None or withdrawal.data_policy != "remove":
        return None
    key = withdrawal.learner_id  # the per-experiment pseudonym, as the store has it
    removed = _erase_rows(settings, withdrawal.experiment_id,
                          events_table.c.learner_key == key,
                          daily_usage_table.c.learner_key == key)
    with Session(registry_engine(settings)) as session, session.begin():
        record_audit(session, actor, "retention.remove_withdrawn_pupil",
                     f"{withdrawal.experiment_id}/{withdrawal.class_id}",
                     {"removed": dict(removed)})
    logger.info("experiment %s: a withdrawn pupil's data removed (%d events, %d usage rows)",
                withdrawal.experiment_id, removed["events"], removed["daily_usage"])
    return removed


def erase_class(
    settings: Settings, experiment_id: str, class_id: str, *, actor: str, reason: str
) -> Erasure:
    """Erase the pupil-level data of one class; the class stops taking part.

    In order: the class's enrollment is tombstoned in ``preuve.enrollments`` (when it
    was ever published; the router forgets the class, so no new event of it is stored);
    an enrolled class is withdrawn (keeping its arm, intention to treat; the withdrawal
    record's data policy is ``remove``); then its pupils' events and usage, parked
    references, receipts, withdrawn pupils' pseudonyms and, in a learner design, its
    pupils' enrollment rows are deleted.

    The class's enrollment and its line of the allocation log stay, class id included:
    they are the randomisation's evidence (append-only by design, class-level, no pupil
    in them) and keep the CONSORT counts and the balance whole; see the module's
    docstring for why this is the defensible choice.

    Raises
    ------
    RetentionError
        No reason, the class is not enrolled in the experiment, or Kafka did not take
        the tombstone (then nothing was removed).
    """
    reason = _need_reason(reason)
    registry = registry_engine(settings)
    protocol = registered_protocol(registry, experiment_id).protocol
    enrollments = _enrollments(registry, experiment_id, protocol.resource.id, [class_id])
    if not enrollments.class_ids:
        raise RetentionError(f"class {class_id} is not enrolled in {experiment_id}",
                             field="class_id")
    kafka = _tombstone(settings, f"erasure of class {class_id} of {experiment_id}",
                       enrollments)
    now = datetime.now(UTC)
    withdrawn = False
    with Session(registry) as session, session.begin():
        status = session.scalar(
            sa.select(EnrollmentRow.status).where(EnrollmentRow.experiment_id == experiment_id,
                                                  EnrollmentRow.class_id == class_id))
        if status == "enrolled":
            session.execute(
                sa.update(EnrollmentRow)
                .where(EnrollmentRow.experiment_id == experiment_id,
                       EnrollmentRow.class_id == class_id)
                .values(status="withdrawn", withdrawn_at=now))
            record_withdrawal(session, EnrollmentDesign.from_protocol(protocol), class_id,
                              learner_key=None, reason=f"erasure: {reason}", actor=actor,
                              now=now, data_policy="remove")
            withdrawn = True
        _mark_forgotten(session, experiment_id, [class_id])
    removed = _erase_rows(settings, experiment_id, events_table.c.class_id == class_id,
                          daily_usage_table.c.class_id == class_id)
    removed["parked_references"] = _delete_parked(registry, [class_id], protocol.resource.id)
    removed["enrollment_tombstones"] = int(kafka["tombstones"])
    with Session(registry) as session, session.begin():
        removed["withdrawal_pupil_ids"] = _rowcount(session.execute(
            sa.update(WithdrawalRow)
            .where(WithdrawalRow.experiment_id == experiment_id,
                   WithdrawalRow.class_id == class_id, WithdrawalRow.learner_id.is_not(None))
            .values(learner_id=None)
        ))
        removed["learner_enrollments"] = _delete_learner_enrollments(
            session, experiment_id, LearnerEnrollmentRow.class_id == class_id)
        record_audit(session, actor, "retention.erase_class", f"{experiment_id}/{class_id}",
                     {"reason": reason, "removed": dict(removed), "kafka": kafka,
                      "withdrawn": withdrawn})
    _compact(registry)
    logger.info("experiment %s: class %s erased (%d events, %d usage rows, %d tombstones)",
                experiment_id, class_id, removed["events"], removed["daily_usage"],
                removed["enrollment_tombstones"])
    return Erasure(experiment_id, "class", removed)
