"""Routing: validate → look up the enrollment → pseudonymise → store (or park, or dead-letter).

Dead-lettered besides contract breaches (:mod:`ingest.gates`): events dated in the future
beyond the clock skew, before their experiment's first period, or from another school
than their class's enrolled one.

Plain code with no Kafka in it, so that the stream agents stay thin and this logic is
tested directly. The agents hand it batches of ingress records and a lookup of the
enrollment table; it returns what happened to each record.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Engine

from experiments.database import is_postgres
from experiments.errors import RegistryError
from experiments.settings import Settings
from experiments.store import ExperimentStore, StagedBatch, StoredEvent, stage_events
from ingest.authority import record_authority
from ingest.contract import EnrollmentMessage, UsageEvent, parse_event
from ingest.errors import EventRejected
from ingest.gates import before_first_period, in_the_future, other_school
from ingest.kafka.topics import resource_of_topic
from ingest.pseudonym import check_pseudonym_key, pseudonymise
from ingest.stream.parking import ParkedEvent, park

__all__ = [
    "BatchOutcome", "DeadLetter", "EventRouter", "IngressRecord", "Lookup", "PreparedBatch",
    "UsageRule",
]

logger = logging.getLogger(__name__)

_PSEUDONYM_CACHE_SIZE = 500_000

Lookup = Callable[[str, str], EnrollmentMessage | None]
"""(class_id, resource_id) → the class's enrollment for that resource, if any."""


@dataclass(frozen=True)
class UsageRule:
    """Which verbs count as a login (utilisation) and which as active use (usage), from
    the protocol's ``usage.metrics``: mere logins never count as real use."""

    login_verbs: frozenset[str]
    active_verbs: frozenset[str]

    @classmethod
    def from_protocol(cls, protocol: object | None) -> UsageRule:
        from experiments.protocol.language import Usage

        usage = getattr(protocol, "usage", None) or Usage()
        login = {v for m in usage.metrics if m.kind == "login" for v in m.verbs}
        active = {v for m in usage.metrics if m.kind == "active_use" for v in m.verbs}
        return cls(frozenset(login), frozenset(active))


class IngressRecord(NamedTuple):
    """One record of ``preuve.events`` as consumed (a named tuple: one per event, made
    in the event loop's thread, where a frozen dataclass cost several times as much)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...] = ()
    """Kafka headers; ``preuve.authority`` names who wrote it (:mod:`ingest.authority`)."""


@dataclass(frozen=True)
class DeadLetter:
    """A refused record, with why; the original bytes travel unchanged."""

    record: IngressRecord
    reason: str
    field: str | None
    event_id: str | None
    code: str = "contract"
    """Why, as a code of :data:`ingest.deadletters.REASON_CODES` (the dead-letter index)."""

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers carrying the reason (the value stays the original bytes)."""
        source = f"{self.record.topic}/{self.record.partition}/{self.record.offset}"
        headers = [("preuve.reason", self.reason.encode()), ("preuve.source", source.encode()),
                   ("preuve.code", self.code.encode())]
        if self.field:
            headers.append(("preuve.field", self.field.encode()))
        if self.event_id:
            headers.append(("preuve.event_id", self.event_id.encode()))
        return headers


def _contract_code(value: bytes) -> str:
    """``not_json`` for a record that is not a JSON object, else ``contract``."""
    try:
        return "contract" if isinstance(json.loads(value), dict) else "not_json"
    except ValueError:  # UnicodeDecodeError included
        return "not_json"


@dataclass
class BatchOutcome:
    """What one batch did: stored per experiment, duplicates, parked, dead letters."""

    stored: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    parked: int = 0
    dead: list[DeadLetter] = field(default_factory=list)


@dataclass
class PreparedBatch:
    """A batch validated, pseudonymised and staged, not written yet
    (:meth:`EventRouter.prepare`)."""

    by_experiment: dict[str, StagedBatch] = field(default_factory=dict)
    to_park: list[ParkedEvent] = field(default_factory=list)
    outcome: BatchOutcome = field(default_factory=BatchOutcome)


class EventRouter:
    """Routes validated events to their experiment's store.

    Parameters
    ----------
    settings
        Where the stores live.
    pseudonym_key
        HMAC key for re-keying learner ids per experiment.
    registry
        The registry engine (parking of events whose class is not enrolled yet).
    """

    def __init__(self, settings: Settings, pseudonym_key: bytes, registry: Engine) -> None:
        self.settings = settings
        self.pseudonym_key = pseudonym_key
        self.registry = registry
        self._stores: dict[str, ExperimentStore] = {}
        self._rules: dict[str, UsageRule] = {}
        self._topic_resources: dict[str, str | None] = {}
        self._first_days: dict[str, date | None] = {}
        self._keyed: set[str] = set()  # experiments whose recorded key id is this key's
        if settings.simulated_now is not None:
            logger.warning("simulated clock: events are dated against %s, not the system "
                           "clock (settings.simulated_now; never in production)",
                           settings.simulated_now.isoformat())
        # pseudonymise, remembered: a pupil sends hundreds of events, and the HMAC was a
        # tenth of the routing time. Bounded, in memory only (raw ids are cache keys for
        # as long as the worker runs, as in the batch they came in; never written).
        self._pseudonym = functools.lru_cache(maxsize=_PSEUDONYM_CACHE_SIZE)(
            functools.partial(pseudonymise, pseudonym_key)
        )

    def store(self, experiment_id: str) -> ExperimentStore:
        """The (cached) store of an experiment."""
        store = self._stores.get(experiment_id)
        if store is None:
            store = self._stores[experiment_id] = ExperimentStore(self.settings, experiment_id)
        return store

    def topic_resource(self, topic: str) -> str | None:
        """The resource whose own topic this is (None: ``preuve.events``, any resource)."""
        try:
            return self._topic_resources[topic]
        except KeyError:
            own = self._topic_resources[topic] = resource_of_topic(self.settings, topic)
            return own

    def usage_rule(self, experiment_id: str) -> UsageRule:
        """The usage definitions of an experiment's registered protocol (the language's
        defaults when the experiment is not in this registry)."""
        rule = self._rules.get(experiment_id)
        if rule is None:
            from experiments.registry import registered_protocol

            try:
                protocol: object | None = registered_protocol(self.registry, experiment_id).protocol
            except RegistryError:
                logger.warning("experiment %s is not registered here: default usage metrics",
                               experiment_id)
                protocol = None
            rule = self._rules[experiment_id] = UsageRule.from_protocol(protocol)
        return rule

    def route(self, records: Sequence[IngressRecord], lookup: Lookup) -> BatchOutcome:
        """Validate and route a batch. Stores are written before this returns, so the
        caller may acknowledge the records afterwards."""
        return self.write(self.prepare(records, lookup))

    def prepare(self, records: Sequence[IngressRecord], lookup: Lookup) -> PreparedBatch:
        """The CPU half of :meth:`route`: validate, look up, pseudonymise, and make each
        store's rows ready (:func:`~experiments.store.stage_events`); writes nothing (the
        stream worker prepares the next batch while the previous one is written)."""
        prepared = PreparedBatch()
        routed: dict[str, list[StoredEvent]] = defaultdict(list)
        seen: set[str] = set()
        events_topic = self.settings.topics.events
        now = self.settings.now()
        latest = now + timedelta(seconds=self.settings.clock_skew_s)  # once per batch
        for record in records:
            try:
                event = parse_event(record.value)
            except EventRejected as rejected:
                prepared.outcome.dead.append(DeadLetter(
                    record, rejected.reason, rejected.field, rejected.event_id,
                    _contract_code(record.value)))
                continue
            if event.occurred_at > latest and (future := in_the_future(
                    event.occurred_at, now, self.settings.clock_skew_s)) is not None:
                prepared.outcome.dead.append(
                    DeadLetter(record, future, "occurred_at", str(event.event_id), "future"))
                continue
            event_id = str(event.event_id)  # normalised: lower case, hyphens
            own = self.topic_resource(record.topic)
            if own is not None and event.resource_id != own:
                # An EdTech's own topic carries its own resource's events only.
                prepared.outcome.dead.append(DeadLetter(
                    record, f"resource_id {event.resource_id!r} is not the resource of topic "
                    f"{record.topic} ({own!r})", "resource_id", event_id, "other_resource"))
                continue
            if event_id in seen:  # the same event twice in one batch
                prepared.outcome.duplicates += 1
                continue
            seen.add(event_id)
            enrollment = lookup(event.class_id, event.resource_id)
            if enrollment is None:
                prepared.to_park.append(
                    ParkedEvent(event_id, event.class_id, event.resource_id, record.topic,
                                record.partition, record.offset)
                )
                continue
            gate = self._gate(event, enrollment)
            if gate is not None:
                prepared.outcome.dead.append(DeadLetter(
                    record, gate[1], gate[0], event_id,
                    "other_school" if gate[0] == "school_uai" else "before_start"))
                continue
            authority = record_authority(record.topic, record.headers, events_topic)
            routed[enrollment.experiment_id].append(
                self._stored(event_id, event, enrollment, authority))
        # The stores' rows are made ready here too, off the thread that writes.
        dialect = "postgresql" if is_postgres(self.settings) else "sqlite"
        prepared.by_experiment = {experiment_id: stage_events(events, dialect)
                                  for experiment_id, events in routed.items()}
        return prepared

    def write(self, prepared: PreparedBatch) -> BatchOutcome:
        """The I/O half of :meth:`route`: each experiment's events in one transaction of
        its store, then the parked references; returns what the batch did."""
        outcome = prepared.outcome
        now = datetime.now(UTC)
        for experiment_id, staged in prepared.by_experiment.items():
            result = self.store(experiment_id).write_staged(staged, now)
            outcome.stored[experiment_id] = outcome.stored.get(experiment_id, 0) + result.inserted
            outcome.duplicates += result.duplicates
        park(self.registry, prepared.to_park, now)
        outcome.parked = len(prepared.to_park)
        return outcome

    def _gate(self, event: UsageEvent, enrollment: EnrollmentMessage
              ) -> tuple[str, str] | None:
        """(field, reason) when the event's school or date does not fit its class's
        enrollment (:mod:`ingest.gates`), else ``None``."""
        school = other_school(event.school_uai, enrollment.school_uai, event.class_id)
        if school is not None:
            return "school_uai", school
        first = self.first_day(enrollment.experiment_id)
        early = None if first is None else before_first_period(
            event.occurred_at, first, enrollment.experiment_id)
        return ("occurred_at", early) if early is not None else None

    def first_day(self, experiment_id: str) -> date | None:
        """The first day of an experiment's first period (baseline, else intervention) in
        its registered protocol; ``None`` when it is not registered here."""
        if experiment_id not in self._first_days:
            from experiments.registry import registered_protocol

            try:
                periods = registered_protocol(self.registry, experiment_id).protocol.periods
                first: date | None = (periods.baseline or periods.intervention).start
            except RegistryError:
                first = None
            self._first_days[experiment_id] = first
        return self._first_days[experiment_id]

    def _stored(self, event_id: str, event: UsageEvent, enrollment: EnrollmentMessage,
                authority: str | None = None) -> StoredEvent:
        experiment_id = enrollment.experiment_id
        rule = self._rules.get(experiment_id) or self.usage_rule(experiment_id)
        if experiment_id not in self._keyed:
            # Another key than the experiment's would store another pupil: refuse (the
            # worker stops with the reason) rather than mix two keys' pseudonyms.
            check_pseudonym_key(self.registry, experiment_id, self.pseudonym_key)
            self._keyed.add(experiment_id)
        verb = event.verb
        # Positional: a named tuple's keyword call cost twice as much (one per event).
        return StoredEvent(
            event_id,
            event.occurred_at.astimezone(UTC),
            event.resource_id,
            self._pseudonym(experiment_id, event.learner_id),
            event.class_id,
            event.school_uai,
            enrollment.arm,
            verb,
            event.object_id,
            event.duration_s,
            event.score,
            event.success,
            event.extensions,
            authority,
            verb in rule.login_verbs,
            verb in rule.active_verbs,
        )
