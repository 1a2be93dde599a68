"""A small registered trial with stored events, for the retention, export and leak tests.

Everything goes through the real code paths except Kafka: the protocol is registered,
classes are enrolled with the randomiser, events are pseudonymised with the experiment's
key and written with ``ExperimentStore.write_events`` (what the stream worker calls).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from experiments.database import registry_engine
from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.enrollment.transaction import EnrolledClass, enroll_classes
from experiments.protocol.language import load_protocol
from experiments.registry import register_protocol
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent
from ingest.pseudonym import load_pseudonym_key, pseudonymise
from tests.support.uai import uai

PROTOCOL = Path(__file__).resolve().parents[2] / "protocols" / "fluence-cp-2027.yaml"
EXPERIMENT = "fluence-cp-2027"
HEADER = "class_id,school_uai,level,pupils,academie,education_priority\n"
ASSESSOR_AUTHORITY = f"assessor:{EXPERIMENT}:0123456789ab"
"""The authority of scores an assessor token of the experiment sent (trusted outcomes)."""


@dataclass
class Trial:
    settings: Settings
    classes: dict[str, str] = field(default_factory=dict)          # class id -> arm
    learners: dict[str, list[str]] = field(default_factory=dict)   # class id -> raw ids
    event_ids: set[str] = field(default_factory=set)

    def key(self, learner_id: str) -> str:
        return pseudonymise(load_pseudonym_key(self.settings), EXPERIMENT, learner_id)


def build_trial(settings: Settings, n_classes: int = 6, pupils: int = 12,
                events_per_pupil: int = 4, seed: int = 1) -> Trial:
    """Register fluence-cp-2027, enroll ``n_classes`` classes, store events of each pupil
    (in the intervention period, plus a baseline and an endline fluence score)."""
    rng = random.Random(seed)
    registry = registry_engine(settings)
    protocol = load_protocol(PROTOCOL)
    register_protocol(registry, protocol, PROTOCOL.read_text(), actor="researcher:test")
    design = EnrollmentDesign.from_protocol(protocol)
    rows = "".join(
        f"cls-{i:02d},{uai(f'078{i % 3:04d}')},CP,{pupils},versailles,REP\n"
        for i in range(n_classes))
    outcome = enroll_classes(registry, design, read_classes(HEADER + rows, design),
                             actor="academie:versailles:test")
    trial = Trial(settings, {c.class_id: c.arm for c in outcome.enrolled})
    store = ExperimentStore(settings, EXPERIMENT)
    events: list[StoredEvent] = []
    start = datetime(2027, 10, 4, 8, 0, tzinfo=UTC)
    for enrolled in outcome.enrolled:
        raw_ids = [f"gar-{enrolled.class_id}-{p:02d}" for p in range(pupils)]
        trial.learners[enrolled.class_id] = raw_ids
        for raw in raw_ids:
            key = trial.key(raw)

            def stored(verb: str, when: datetime, key: str = key,
                       enrolled: EnrolledClass = enrolled, **extra: object) -> StoredEvent:
                return StoredEvent(
                    event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    occurred_at=when, resource_id="lectio", learner_key=key,
                    class_id=enrolled.class_id, school_uai=enrolled.school_uai,
                    arm=enrolled.arm, verb=verb, **extra)  # type: ignore[arg-type]

            # Scores an assessor token of this experiment sent (trusted outcomes).
            events.append(stored("assessment_scored", datetime(2027, 9, 10, 9, tzinfo=UTC),
                                 object_id="fluence", score=float(rng.randrange(20, 60)),
                                 authority=ASSESSOR_AUTHORITY))
            events.append(stored("assessment_scored", datetime(2028, 6, 1, 9, tzinfo=UTC),
                                 object_id="fluence", score=float(rng.randrange(30, 90)),
                                 authority=ASSESSOR_AUTHORITY))
            for _ in range(events_per_pupil):
                when = start + timedelta(minutes=rng.randrange(60 * 24 * 60))
                events.append(stored("activity_completed", when, duration_s=float(
                    rng.randrange(60, 900)), extensions={"niveau": "2"}, is_usage=True))
    store.write_events(events, datetime.now(UTC))
    trial.event_ids = {e.event_id for e in events}
    return trial


def every_row_text(settings: Settings, engines: list[sa.Engine]) -> str:
    """Every row of every table of the given engines, as one text (for greps)."""
    chunks = []
    for engine in engines:
        for table in sa.inspect(engine).get_table_names():
            with engine.connect() as connection:
                rows = connection.execute(sa.text(f'SELECT * FROM "{table}"')).fetchall()
            chunks.append(f"## {table}\n" + "\n".join(repr(tuple(row)) for row in rows))
    return "\n".join(chunks)
