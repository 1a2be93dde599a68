"""Synthetic events and enrollments for the integration tests."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast

import sqlalchemy as sa

from experiments.settings import Settings
from ingest.contract import EnrollmentMessage

START = datetime(2027, 10, 4, 8, 0, tzinfo=UTC)


def enrollment(
    class_id: str, experiment_id: str, arm: str, resource_id: str = "lectio"
) -> EnrollmentMessage:
    return EnrollmentMessage(
        class_id=class_id,
        experiment_id=experiment_id,
        resource_id=resource_id,
        arm=arm,
        school_uai="0750001U",
        academie="paris",
        at=datetime(2027, 9, 1, tzinfo=UTC),
    )


def valid_event(
    rng: random.Random, class_id: str, resource_id: str = "lectio",
    school_uai: str = "0750001U",
) -> dict[str, object]:
    """A valid event of ``class_id``; ``school_uai`` must be the class's enrolled school
    (the stream worker dead-letters an event of another school)."""
    verb = rng.choice(
        ["session_started", "exercise_answered", "activity_completed", "content_viewed"]
    )
    event: dict[str, object] = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "occurred_at": (START + timedelta(minutes=rng.randrange(60 * 24 * 60))).isoformat(),
        "resource_id": resource_id,
        "learner_id": f"gar-{class_id}-{rng.randrange(25):02d}",
        "class_id": class_id,
        "school_uai": school_uai,
        "verb": verb,
    }
    if verb != "session_started":
        event["duration_s"] = rng.randrange(5, 600)
    return event


INVALID_KINDS = ("occurred_at", "school_uai", "verb", "learner_id", "extensions", "name", "json")


def invalid_event(rng: random.Random, class_id: str, kind: str) -> tuple[bytes, str | None]:
    """An invalid event and the field its dead letter must name (None: not JSON)."""
    event = valid_event(rng, class_id)
    if kind == "occurred_at":
        event["occurred_at"] = "2027-10-05T10:00:00"
    elif kind == "school_uai":
        event["school_uai"] = "PARIS-12"
    elif kind == "verb":
        event["verb"] = "clicked_somewhere"
    elif kind == "learner_id":
        event["learner_id"] = "camille.martin@example.fr"
    elif kind == "extensions":
        event["extensions"] = {"teacher_phone": "06 12 34 56 78"}
    elif kind == "name":
        event["name"] = "Camille Martin"
    else:
        return b"{not json", None
    return json.dumps(event).encode(), kind


@dataclass
class Workload:
    lines: list[bytes] = field(default_factory=list)
    expected: dict[str, set[str]] = field(default_factory=dict)  # experiment -> event ids
    invalid_fields: list[str | None] = field(default_factory=list)
    raw_learner_ids: set[str] = field(default_factory=set)


def workload(
    rng: random.Random, classes: dict[str, str], total: int, invalid: int, duplicates: int
) -> Workload:
    """``total`` lines: valid events, ``duplicates`` exact re-sends and ``invalid`` bad ones.

    ``classes`` maps class id → experiment id (None-valued classes are not enrolled yet).
    """
    result = Workload()
    unique = total - invalid - duplicates
    class_ids = sorted(classes)
    valid_lines: list[bytes] = []
    for _ in range(unique):
        class_id = rng.choice(class_ids)
        event = valid_event(rng, class_id)
        line = json.dumps(event).encode()
        valid_lines.append(line)
        result.expected.setdefault(classes[class_id], set()).add(str(event["event_id"]))
        result.raw_learner_ids.add(str(event["learner_id"]))
    lines = valid_lines + [rng.choice(valid_lines) for _ in range(duplicates)]
    for index in range(invalid):
        line, field_name = invalid_event(
            rng, rng.choice(class_ids), INVALID_KINDS[index % len(INVALID_KINDS)]
        )
        lines.append(line)
        result.invalid_fields.append(field_name)
    rng.shuffle(lines)
    result.lines = lines
    return result


def register_enrollments(settings: Settings, messages: Sequence[EnrollmentMessage]) -> None:
    """Write these enrollments into the registry of ``settings``, as `preuve enroll` would
    have (the stream worker believes an enrollment record only if its registry holds it)."""
    from experiments.database import insert_for, registry_engine
    from experiments.enrollment.tables import EnrollmentDesignRow, EnrollmentRow

    engine = registry_engine(settings)
    designs = cast(sa.Table, EnrollmentDesignRow.__table__)
    rows = cast(sa.Table, EnrollmentRow.__table__)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for experiment_id, resource_id in sorted({(m.experiment_id, m.resource_id)
                                                  for m in messages}):
            connection.execute(insert_for(engine, designs).values(
                experiment_id=experiment_id, resource_id=resource_id, fingerprint="test",
                design={}, first_enrolled_at=now, last_enrolled_at=now,
            ).on_conflict_do_nothing())
        for message in messages:
            connection.execute(insert_for(engine, rows).values(
                experiment_id=message.experiment_id, class_id=message.class_id,
                school_uai=message.school_uai, academie=message.academie, level="CP",
                pupils=20, attributes={}, stratum="", unit_id=message.class_id,
                arm=message.arm, status=message.status, enrolled_at=message.at,
                withdrawn_at=None, published_status=message.status,
            ).on_conflict_do_nothing())


def publish_registered(settings: Settings, messages: Sequence[EnrollmentMessage]) -> int:
    """Register the enrollments (:func:`register_enrollments`), then publish them."""
    from ingest.kafka.producer import publish_enrollments

    register_enrollments(settings, messages)
    return publish_enrollments(settings, messages)
