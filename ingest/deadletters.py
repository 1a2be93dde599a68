"""The dead-letter index: refused events, queryable by their resource (issue 17).

The stream worker sends every refused record to ``preuve.events.deadletter`` (original
bytes, reason headers) and, once the broker has it, records it here too, so that an
EdTech company can learn why its events were refused without reading a Kafka topic or
the worker's log: the portal's console (:mod:`experiments.portal.edtech`) and the
gateway's ``GET /v1/resources/{resource_id}/deadletters`` read this table.

What a row keeps, and what it never keeps:

- the resource (the record's own topic's, else the payload's ``resource_id`` when it is a
  slug; ``""`` when neither is known: only administrators see those), a reason code
  (:data:`REASON_CODES`), the reason in English and in French, the field it names, the
  event id, the time of receipt, and where the record sits in the ingress topic (the
  row's key: recording the same record twice keeps one row);
- an **example payload**: the JSON object with ``learner_id`` and every field outside
  contract v1 replaced by :data:`REMOVED` (raw learner ids never enter a database:
  :mod:`ingest.stream.parking`), and every string that could name someone replaced too
  (white space, an e-mail address, a phone number: :func:`plain`), cut to
  :data:`PAYLOAD_LIMIT` characters. A record that is not a JSON object keeps no payload
  at all (its bytes could be anything, a learner's name included).

Rows are forgotten after the dead-letter topic's own retention
(``settings.kafka.ingress_retention_days``): :func:`forget_old_dead_letters`, called by
the worker with its parked-event expiry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from experiments.database import RegistryBase, insert_for

__all__ = [
    "PAYLOAD_LIMIT",
    "REASON_CODES",
    "REMOVED",
    "DeadLetterPage",
    "DeadLetterRow",
    "dead_letter_page",
    "dead_letters_table",
    "forget_old_dead_letters",
    "reason_counts",
    "record_dead_letters",
    "plain",
    "safe_payload",
    "split_reason",
]

PAYLOAD_LIMIT = 2000
"""Characters of an example payload kept (the rest is cut, marked with ``…``)."""
REMOVED = "[retiré]"
"""What stands for a learner id (or an identifying string) in a kept payload."""

#: Reason code → its French explanation, shown above the English detail.
REASON_CODES: dict[str, str] = {
    "not_json": "Le message n'est pas un objet JSON lisible.",
    "contract": "L'événement ne respecte pas le contrat v1 (champ indiqué).",
    "future": "L'événement est daté dans le futur, au-delà de l'écart d'horloge toléré.",
    "before_start": "L'événement est antérieur à la première période de l'expérimentation.",
    "other_school": "L'école (UAI) de l'événement n'est pas celle où la classe est inscrite.",
    "other_resource": "Le resource_id de l'événement n'est pas celui de la ressource de ce "
                      "flux.",
}

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")

dead_letters_table = sa.Table(
    "dead_letters",
    RegistryBase.metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(320), nullable=False),
    sa.Column("resource_id", sa.String(64), nullable=False, index=True),
    sa.Column("code", sa.String(32), nullable=False),
    sa.Column("field", sa.String(128)),
    sa.Column("event_id", sa.String(64)),
    sa.Column("reason_en", sa.Text, nullable=False),
    sa.Column("reason_fr", sa.Text, nullable=False),
    sa.Column("payload", sa.Text),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.UniqueConstraint("source", name="uq_dead_letters_source"),
)


@dataclass(frozen=True)
class DeadLetterRow:
    """One refused record as the index keeps it (no raw learner id, ever)."""

    source: str
    """``topic/partition/offset`` of the record in the ingress topic (its identity)."""
    resource_id: str
    code: str
    field: str | None
    event_id: str | None
    reason_en: str
    reason_fr: str
    payload: str | None
    received_at: datetime
    id: int = 0

    def as_json(self) -> dict[str, Any]:
        """The API's view of the row (``GET /v1/resources/{id}/deadletters``)."""
        return {
            "id": self.id, "event_id": self.event_id, "code": self.code, "field": self.field,
            "reason": {"fr": self.reason_fr, "en": self.reason_en},
            "received_at": self.received_at.isoformat(), "payload": self.payload,
        }


@dataclass(frozen=True)
class DeadLetterPage:
    """One page of a resource's dead letters, newest first, and the cursor of the next."""

    items: list[DeadLetterRow]
    next_cursor: str | None


def split_reason(reason: str, code: str, field: str | None) -> tuple[str, str]:
    """(English, French) of a worker's reason: the gates write ``English / French``; a
    contract breach is English only, so its French is the code's explanation.

    Examples
    --------
    >>> split_reason("school_uai X is not ... / l'école X n'est pas ...", "other_school", None)
    ('school_uai X is not ...', "l'école X n'est pas ...")
    >>> split_reason("field required", "contract", "verb")[1].split(". ", 1)[1]
    'Champ « verb ». Détail (en anglais) : field required'
    """
    if " / " in reason and code != "contract":
        english, french = reason.split(" / ", 1)
        return english, french
    french = REASON_CODES.get(code, REASON_CODES["contract"])
    where = f" Champ « {field} »." if field else ""
    return reason, f"{french}{where} Détail (en anglais) : {reason}"


#: Fields of contract v1 whose values a kept payload may show (when plain, below).
_CONTRACT_FIELDS = frozenset({
    "event_id", "occurred_at", "resource_id", "class_id", "school_uai", "verb", "object_id",
    "duration_s", "score", "success", "extensions",
})


def plain(value: str) -> bool:
    """Whether a string may be kept: no white space (a name is "Camille Martin"), no
    e-mail address or phone number (:func:`ingest.contract.identifying_text`), at most
    128 characters.

    Examples
    --------
    >>> plain("cp-01a"), plain("Camille Martin"), plain("camille.martin@example.fr")
    (True, False, False)
    """
    from ingest.contract import identifying_text

    return (len(value) <= 128 and not any(c.isspace() for c in value)
            and identifying_text(value) is None)


def _scrub(value: Any) -> Any:
    """``value`` with every string that is not :func:`plain` replaced."""
    if isinstance(value, str):
        return value if plain(value) else REMOVED
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def safe_payload(value: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """(the payload to keep, the decoded object) of a record's bytes.

    Only the fields of contract v1 keep their values, and only plain ones (:func:`plain`):
    ``learner_id`` and any other field (``name``, an xAPI ``actor``) are replaced by
    :data:`REMOVED`, their names kept so that the sender sees what it sent.

    Examples
    --------
    >>> kept, _ = safe_payload(b'{"learner_id": "eleve-42", "verb": "x", "name": "Camille Martin"}')
    >>> kept
    '{"learner_id": "[retiré]", "verb": "x", "name": "[retiré]"}'
    >>> safe_payload(b"Camille Martin")
    (None, None)
    """
    try:
        decoded = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        return None, None
    if not isinstance(decoded, dict):
        return None, None
    scrubbed = {key: _scrub(item) if key in _CONTRACT_FIELDS else REMOVED
                for key, item in decoded.items()}
    text = json.dumps(scrubbed, ensure_ascii=False)
    if len(text) > PAYLOAD_LIMIT:
        text = text[:PAYLOAD_LIMIT - 1] + "…"
    return text, decoded


def resource_of(decoded: dict[str, Any] | None, topic_resource: str | None) -> str:
    """The resource a dead letter belongs to: its topic's, else its payload's slug."""
    if topic_resource is not None:
        return topic_resource
    value = decoded.get("resource_id") if decoded is not None else None
    if isinstance(value, str) and _SLUG.fullmatch(value):
        return value
    return ""


def record_dead_letters(engine: Engine, rows: Sequence[DeadLetterRow]) -> None:
    """Add rows (idempotent: a record already recorded, by its source, is kept once)."""
    if not rows:
        return
    values = [{k: v for k, v in row.__dict__.items() if k != "id"} for row in rows]
    insert = insert_for(engine, dead_letters_table)
    with engine.begin() as connection:
        connection.execute(insert.on_conflict_do_nothing(index_elements=["source"]), values)


def _row(row: Any) -> DeadLetterRow:
    received = row.received_at
    if received.tzinfo is None:  # SQLite keeps no offset; we store UTC
        received = received.replace(tzinfo=UTC)
    return DeadLetterRow(
        source=row.source, resource_id=row.resource_id, code=row.code, field=row.field,
        event_id=row.event_id, reason_en=row.reason_en, reason_fr=row.reason_fr,
        payload=row.payload, received_at=received, id=row.id,
    )


def dead_letter_page(engine: Engine, resource_id: str, cursor: str | None = None,
                     limit: int = 50, code: str | None = None) -> DeadLetterPage:
    """A resource's dead letters, newest first, ``limit`` at a time.

    The cursor is opaque to callers (the id of the last row given); a cursor that is
    not one raises ``ValueError``.
    """
    table = dead_letters_table
    query = sa.select(table).where(table.c.resource_id == resource_id)
    if code is not None:
        query = query.where(table.c.code == code)
    if cursor:
        if not cursor.isdigit() or len(cursor) > 18:
            raise ValueError(f"cursor: not a cursor of this list: {cursor[:40]!r}")
        query = query.where(table.c.id < int(cursor))
    query = query.order_by(table.c.id.desc()).limit(limit + 1)
    with engine.connect() as connection:
        rows = [_row(r) for r in connection.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return DeadLetterPage(rows, str(rows[-1].id) if more and rows else None)


def reason_counts(engine: Engine, resource_id: str) -> list[tuple[str, int]]:
    """(reason code, how many) of a resource's dead letters, most frequent first."""
    table = dead_letters_table
    query = (sa.select(table.c.code, sa.func.count()).where(table.c.resource_id == resource_id)
             .group_by(table.c.code).order_by(sa.func.count().desc(), table.c.code))
    with engine.connect() as connection:
        return [(code, int(n)) for code, n in connection.execute(query)]


def forget_old_dead_letters(engine: Engine, received_before: datetime) -> int:
    """Drop the rows received before ``received_before`` (the topic's retention);
    returns how many."""
    with engine.begin() as connection:
        result = connection.execute(dead_letters_table.delete().where(
            dead_letters_table.c.received_at < received_before))
    return int(result.rowcount or 0)
