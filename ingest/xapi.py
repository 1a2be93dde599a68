"""xAPI statements mapped onto event contract v1.

Many learning tools (Moodle, H5P, cmi5 players, Open edX, TRAX, Marsha) already emit
xAPI statements. The gateway accepts them, as those tools send them, at ``POST
/v1/xapi/statements`` and turns each into one :class:`~ingest.contract.UsageEvent`; the
table of the mapping, with a real statement of each tool, is ``docs/xapi-mapping.md``. In
short:

- ``actor`` is an Agent identified by an ``account`` (a pseudonymous ``name``, e.g. the
  GAR's opaque id): ``account.name`` is the ``learner_id``. A person's ``name``, an
  ``mbox``, ``mbox_sha1sum`` or ``openid`` next to the account is dropped, never stored,
  and the answer says so; an actor with nothing pseudonymous left is refused.
- ``verb.id`` gives the contract verb (:mod:`ingest.xapi_verbs`); a verb we cannot classify
  is stored as ``interacted``, which does not count as active use.
- ``object.id`` is the ``object_id``; ``result.score`` the score as the xAPI spec reads it
  (``scaled``, else ``raw`` within ``min``/``max``), stored with its scale;
  ``result.success`` the success, ``result.duration`` (ISO 8601) the ``duration_s``.
- the class and the school come from Preuve's context extensions or grouping activities
  (below), or from where the resource's context mapping says (:mod:`ingest.xapi_context`);
  the resource is the API key's, unless the resource extension names it.
- ``timestamp`` is ``occurred_at``; a statement without one gets the time the gateway
  received it, as the xAPI spec lets the receiver do (``timestamp`` defaults to ``stored``),
  marked ``extensions.xapi_timestamp = "filled-on-receipt"``. The statement ``id`` is the
  ``event_id``, or, when absent, a UUIDv5 of the statement's canonical JSON.

A questionnaire answer is an ``answered`` statement on an activity of type
``cmi.interaction`` with ``interactionType`` ``likert`` and the context extension
``QUESTIONNAIRE_EXTENSION`` (the questionnaire's id in the protocol): it becomes
``questionnaire_answered``, ``object_id`` the item id (the last segment of ``object.id``),
``score`` the 1-based position of ``result.response`` in the activity's ``scale``, and a
``RESPONDENT_EXTENSION`` of ``teacher`` marks a teacher's answer (the actor is then the
teacher's pseudonymous account).

Everything else (``result.response`` outside a Likert answer, ``context.instructor``,
``object.definition``, other extensions, attachments...) is dropped, never stored: free
text and instructors may identify a person. Every problem of a statement is reported,
each with the xAPI path of the field (``timestamp``, ``actor.mbox``,
``context.extensions[<IRI>]``...), in one :class:`~ingest.errors.StatementRejected`.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import ValidationError

from ingest.contract import _PSEUDONYM, _SLUG, _UAI, UsageEvent, rejections_from
from ingest.errors import EventRejected, StatementRejected
from ingest.xapi_context import ContextMapping
from ingest.xapi_verbs import VERB_RULES, verb_rule

__all__ = [
    "CLASS_ACTIVITY_PREFIX",
    "CLASS_EXTENSION",
    "MappedStatement",
    "Note",
    "QUESTIONNAIRE_EXTENSION",
    "RESPONDENT_EXTENSION",
    "RESOURCE_EXTENSION",
    "SCALED_TOLERANCE",
    "SCHOOL_ACTIVITY_PREFIX",
    "SCHOOL_EXTENSION",
    "STATEMENT_ID_NAMESPACE",
    "STATEMENT_JSON_SCHEMA",
    "TIMESTAMP_FILLED",
    "map_statement",
    "parse_duration",
    "statement_id",
    "statement_to_event",
]

PREUVE_XAPI: Final = "https://preuve.example/xapi/"
CLASS_EXTENSION: Final = PREUVE_XAPI + "extensions/class-id"
SCHOOL_EXTENSION: Final = PREUVE_XAPI + "extensions/school-uai"
RESOURCE_EXTENSION: Final = PREUVE_XAPI + "extensions/resource-id"
QUESTIONNAIRE_EXTENSION: Final = PREUVE_XAPI + "extensions/questionnaire"
RESPONDENT_EXTENSION: Final = PREUVE_XAPI + "extensions/respondent"
ANSWERED_VERB: Final = "http://adlnet.gov/expapi/verbs/answered"
INTERACTION_TYPE: Final = "http://adlnet.gov/expapi/activities/cmi.interaction"
# Grouping activities: https://preuve.example/xapi/classes/<class_id>, .../schools/<UAI>.
CLASS_ACTIVITY_PREFIX: Final = PREUVE_XAPI + "classes/"
SCHOOL_ACTIVITY_PREFIX: Final = PREUVE_XAPI + "schools/"
# Namespace of ids derived from statements that have none (fixed: changing it would give
# re-sent statements new ids).
STATEMENT_ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, PREUVE_XAPI + "statements")
# The mark in a stored event's extensions that its occurred_at is the time of receipt.
TIMESTAMP_FILLED: Final = "filled-on-receipt"
# How far result.score.scaled may be from (raw - min) / (max - min) and still agree with it:
# tools round scaled to 2 decimals (2/3 is sent as 0.67, 0.0033 away), so 0.01 leaves room
# for rounding while a scaled 0.0 next to raw 50 on [0, 100] is a contradiction.
SCALED_TOLERANCE: Final = 0.01

_DIRECT_IDENTIFIERS = {
    "name": "a person's name",
    "mbox": "an e-mail address",
    "mbox_sha1sum": "a hash of an e-mail address (linkable across systems)",
    "openid": "a personal OpenID URL",
}

# Where each contract field comes from, to name the xAPI field in a refusal.
_SOURCE_OF = {
    "event_id": "id",
    "occurred_at": "timestamp",
    "learner_id": "actor.account.name",
    "class_id": f"context.extensions[{CLASS_EXTENSION}]",
    "school_uai": f"context.extensions[{SCHOOL_EXTENSION}]",
    "resource_id": f"context.extensions[{RESOURCE_EXTENSION}]",
    "verb": "verb.id",
    "object_id": "object.id",
    "duration_s": "result.duration",
    "score": "result.score",
    "success": "result.success",
    "extensions": "verb.id",
}

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:[.,]\d+)?)W)?(?:(?P<days>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:[.,]\d+)?)H)?(?:(?P<minutes>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:[.,]\d+)?)S)?)?$"
)
_SECONDS_PER = {"weeks": 604_800, "days": 86_400, "hours": 3_600, "minutes": 60, "seconds": 1}

_ACTIVITY = {
    "type": "object",
    "required": ["id"],
    "properties": {"objectType": {"const": "Activity"}, "id": {"type": "string"}},
}
_ACTIVITIES = {"type": "array", "items": _ACTIVITY}
STATEMENT_JSON_SCHEMA: Final[dict[str, Any]] = {
    "title": "XapiStatement",
    "description": "An xAPI 1.0.3 statement as Preuve accepts it (see docs/xapi-mapping.md); "
    "fields not listed are ignored and never stored.",
    "type": "object",
    "required": ["actor", "verb", "object"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "actor": {
            "type": "object",
            "required": ["account"],
            "description": "An Agent identified by an account. A `name`, `mbox`, "
            "`mbox_sha1sum` or `openid` beside the account is dropped (the answer's `notes` "
            "say so); without an account the statement is refused.",
            "properties": {
                "objectType": {"const": "Agent"},
                "account": {
                    "type": "object",
                    "required": ["homePage", "name"],
                    "properties": {
                        "homePage": {"type": "string"},
                        "name": {
                            "type": "string",
                            "pattern": _PSEUDONYM,
                            "description": "Pseudonymous learner id.",
                        },
                    },
                },
            },
        },
        "verb": {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {
                    "type": "string",
                    "description": "A verb IRI; those of docs/xapi-mapping.md are classified, "
                    "any other is stored as `interacted` (not active use).",
                    "examples": sorted(VERB_RULES)[:3],
                }
            },
        },
        "object": _ACTIVITY,
        "result": {
            "type": "object",
            "properties": {
                "score": {
                    "type": "object",
                    "properties": {
                        "scaled": {"type": "number", "minimum": -1, "maximum": 1},
                        "raw": {"type": "number"},
                        "min": {"type": "number"},
                        "max": {"type": "number"},
                    },
                },
                "success": {"type": "boolean"},
                "completion": {"type": "boolean"},
                "duration": {"type": "string", "description": "ISO 8601 duration, e.g. PT1M30S."},
            },
        },
        "context": {
            "type": "object",
            "properties": {
                "extensions": {
                    "type": "object",
                    "properties": {
                        CLASS_EXTENSION: {"type": "string", "pattern": _PSEUDONYM},
                        SCHOOL_EXTENSION: {"type": "string", "pattern": _UAI},
                        RESOURCE_EXTENSION: {"type": "string", "pattern": _SLUG},
                        QUESTIONNAIRE_EXTENSION: {"type": "string"},
                        RESPONDENT_EXTENSION: {"enum": ["pupil", "teacher"]},
                    },
                },
                "contextActivities": {
                    "type": "object",
                    "properties": {
                        "grouping": _ACTIVITIES, "parent": _ACTIVITIES,
                        "category": _ACTIVITIES, "other": _ACTIVITIES,
                    },
                },
            },
        },
        "timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 with a UTC offset (Z or ±HH:MM); absent: the time of "
            "receipt (marked in the event's extensions).",
        },
    },
}


@dataclass(frozen=True)
class Note:
    """Something the mapping did to a statement it accepted: a field dropped, a timestamp
    filled, a verb stored as ``interacted``, a contradictory ``scaled`` set aside."""

    field: str
    note: str


@dataclass(frozen=True)
class MappedStatement:
    """One accepted statement: its event and what was done to get it."""

    event: UsageEvent
    notes: tuple[Note, ...] = ()


def parse_duration(text: str) -> float:
    """Seconds in an ISO 8601 duration (weeks, days, hours, minutes, seconds).

    Years and months are refused: they have no fixed length.

    Examples
    --------
    >>> parse_duration("PT1M30S")
    90.0
    >>> parse_duration("P1DT0.5S")
    86400.5
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not an ISO 8601 duration in weeks, days, hours, minutes and "
            "seconds (e.g. PT1M30S)"
        )
    return float(
        sum(
            float(value.replace(",", ".")) * _SECONDS_PER[unit]
            for unit, value in match.groupdict().items()
            if value is not None
        )
    )



def _canonical_timestamp(value: Any) -> Any:
    """``value`` as a UTC instant in one spelling, when it is an RFC 3339 timestamp: the same
    instant written with Z or +02:00 is the same statement."""
    if not isinstance(value, str):
        return value
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return value
    if instant.tzinfo is None:
        return value
    return instant.astimezone(UTC).isoformat(timespec="microseconds")


def statement_id(statement: dict[str, Any], received_at: datetime | None = None) -> uuid.UUID:
    """The statement's ``id``, or a UUIDv5 of its canonical JSON when it has none.

    Canonical JSON sorts keys, drops insignificant white space, escapes non-ASCII and
    writes ``timestamp`` as its UTC instant, so the same statement re-sent (even
    re-serialised, or with its timestamp in another offset) gets the same id. A statement
    with neither ``id`` nor ``timestamp`` is told apart by ``received_at`` (its filled
    timestamp): two identical answers at two moments are two events, and a re-sent copy
    cannot be recognised (send an ``id`` to make re-sending safe).
    """
    given = statement.get("id")
    if given is not None:
        if not isinstance(given, str):
            raise EventRejected(f"a statement id is a UUID string, got {given!r}", field="id")
        try:
            return uuid.UUID(given)
        except ValueError:
            raise EventRejected(f"a statement id is a UUID, got {given!r}", field="id") from None
    canonical_form = dict(statement)
    if "timestamp" in canonical_form:
        canonical_form["timestamp"] = _canonical_timestamp(canonical_form["timestamp"])
    elif received_at is not None:
        canonical_form["timestamp"] = _canonical_timestamp(received_at.isoformat())
    # ensure_ascii: a lone surrogate in a string must not make the id underivable.
    canonical = json.dumps(canonical_form, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return uuid.uuid5(STATEMENT_ID_NAMESPACE, canonical)


class _Report:
    """The problems and notes of one statement, gathered as the mapping goes."""

    def __init__(self) -> None:
        self.problems: list[EventRejected] = []
        self.notes: list[Note] = []

    def problem(self, field: str | None, reason: str) -> None:
        self.problems.append(EventRejected(reason, field=field))

    def note(self, field: str, note: str) -> None:
        self.notes.append(Note(field, note))

    def object(self, value: Any, field: str, *, required: bool = True) -> dict[str, Any] | None:
        """``value`` if it is a JSON object ({} when absent and optional), else a problem."""
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            got = "nothing" if value is None else type(value).__name__
            self.problem(field, f"expecting an object, got {got}")
            return None
        return value


def _learner_id(statement: dict[str, Any], report: _Report) -> str | None:
    actor = report.object(statement.get("actor"), "actor")
    if actor is None:
        return None
    kind = actor.get("objectType", "Agent")
    if kind != "Agent":
        report.problem(
            "actor.objectType",
            f"expecting an Agent (one learner per statement), got objectType {kind!r}",
        )
        return None
    identifiers = [key for key in _DIRECT_IDENTIFIERS if key in actor]
    if "account" not in actor:
        for key in identifiers:
            report.problem(
                f"actor.{key}",
                f"is {_DIRECT_IDENTIFIERS[key]}, a direct identifier, and the actor has no "
                "pseudonymous account: refused (identify the learner by actor.account, "
                "e.g. the GAR's opaque id)",
            )
        if not identifiers:
            report.problem("actor.account", "required: the learner's pseudonymous account")
        return None
    account = report.object(actor.get("account"), "actor.account")
    if account is None:
        return None
    home_page = account.get("homePage")
    if not isinstance(home_page, str) or not home_page:
        report.problem("actor.account.homePage", "required (the system that issued the account)")
    name = account.get("name")
    if not isinstance(name, str):
        report.problem("actor.account.name", "required: the learner's pseudonymous id")
        return None
    for key in identifiers:
        report.note(
            f"actor.{key}",
            f"dropped, never stored: {_DIRECT_IDENTIFIERS[key]}; the learner is identified "
            "by actor.account.name",
        )
    return name


def _object_id(statement: dict[str, Any], report: _Report) -> str | None:
    target = report.object(statement.get("object"), "object")
    if target is None:
        return None
    kind = target.get("objectType", "Activity")
    if kind != "Activity":
        report.problem(
            "object.objectType",
            f"expecting an Activity, got objectType {kind!r} (a person or a statement as "
            "object is not part of the contract)",
        )
        return None
    object_id = target.get("id")
    if not isinstance(object_id, str):
        report.problem("object.id", "required: the activity's IRI")
        return None
    return object_id


ScoreScale = Literal["scaled"] | dict[str, float]


def _number(score: dict[str, Any], key: str, report: _Report) -> float | None:
    value = score.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        report.problem(f"result.score.{key}", f"expecting a number, got {value!r}")
        return None
    return float(value)


def _score(result: dict[str, Any], report: _Report) -> tuple[float | None, ScoreScale | None]:
    """The score as the xAPI spec defines it, and the scale it came on.

    ``scaled`` (in [-1, 1]) when given, else ``raw`` with its ``min``/``max``. A ``scaled``
    that contradicts ``raw`` on [min, max] (beyond :data:`SCALED_TOLERANCE`) is set aside
    and ``raw`` kept on its scale, with a note.
    """
    score = report.object(result.get("score"), "result.score", required=False)
    if not score:
        return None, None
    before = len(report.problems)
    scaled, raw = _number(score, "scaled", report), _number(score, "raw", report)
    low, high = _number(score, "min", report), _number(score, "max", report)
    if scaled is not None and not -1 <= scaled <= 1:
        report.problem("result.score.scaled", f"must be within [-1, 1], got {scaled:g}")
    if low is not None and high is not None and low >= high:
        report.problem("result.score.min", f"must be below max ({high:g}), got {low:g}")
    elif raw is not None and (
        (low is not None and raw < low) or (high is not None and raw > high)
    ):
        report.problem(
            "result.score.raw",
            f"{raw:g} is outside [{'' if low is None else f'{low:g}'}, "
            f"{'' if high is None else f'{high:g}'}] (min and max)",
        )
    if scaled is None and raw is None and len(report.problems) == before:
        report.problem("result.score", "has neither 'scaled' nor 'raw'")
    if len(report.problems) > before:
        return None, None
    bounds = {key: value for key, value in (("min", low), ("max", high)) if value is not None}
    if scaled is not None:
        if raw is not None and low is not None and high is not None:
            implied = (raw - low) / (high - low)
            if abs(implied - scaled) > SCALED_TOLERANCE:
                report.note(
                    "result.score.scaled",
                    f"set aside: scaled {scaled:g} contradicts raw {raw:g} on "
                    f"[{low:g}, {high:g}] (which is {implied:.4g} scaled); the raw score is "
                    "stored on its scale",
                )
                return raw, bounds
        return scaled, "scaled"
    assert raw is not None
    return raw, bounds


def _duration(result: dict[str, Any], report: _Report) -> float | None:
    duration = result.get("duration")
    if duration is None:
        return None
    if not isinstance(duration, str):
        report.problem("result.duration", f"expecting an ISO 8601 string, got {duration!r}")
        return None
    try:
        return parse_duration(duration)
    except ValueError as error:
        report.problem("result.duration", str(error))
        return None


def _grouping(context: dict[str, Any], report: _Report) -> list[str]:
    activities = report.object(
        context.get("contextActivities"), "context.contextActivities", required=False
    )
    grouping = (activities or {}).get("grouping", [])
    if isinstance(grouping, dict):  # xAPI 1.0 allowed a single activity; 1.0.3 normalises
        grouping = [grouping]
    if not isinstance(grouping, list):
        report.problem(
            "context.contextActivities.grouping",
            f"expecting an array of activities, got {type(grouping).__name__}",
        )
        return []
    return [a["id"] for a in grouping if isinstance(a, dict) and isinstance(a.get("id"), str)]


def _placement(
    statement: dict[str, Any],
    extensions: dict[str, Any],
    grouping: list[str],
    field: Literal["class_id", "school_uai"],
    mapping: ContextMapping | None,
    report: _Report,
) -> Any:
    """The class or the school: Preuve's extension or grouping activity, else the first
    source of the resource's context mapping that finds it."""
    iri, prefix, what = (
        (CLASS_EXTENSION, CLASS_ACTIVITY_PREFIX, "class id")
        if field == "class_id"
        else (SCHOOL_EXTENSION, SCHOOL_ACTIVITY_PREFIX, "school UAI")
    )
    where = f"context.extensions[{iri}]"
    in_extension = extensions.get(iri)
    in_grouping = sorted({g[len(prefix) :] for g in grouping if g.startswith(prefix)})
    if len(in_grouping) > 1:
        report.problem(
            "context.contextActivities.grouping", f"several {what}s in grouping activities: "
            f"{in_grouping}"
        )
        return None
    if in_extension is not None and in_grouping and in_grouping[0] != in_extension:
        report.problem(
            where,
            f"{what} {in_extension!r} differs from grouping activity {prefix}{in_grouping[0]}",
        )
        return None
    if in_extension is not None:
        return in_extension
    if in_grouping:
        return in_grouping[0]
    for source in mapping.sources(field) if mapping is not None else ():
        found = sorted(source.values(statement))
        if len(found) > 1:
            report.problem(
                f"context (the resource's mapping of the {what})",
                f"several {what}s found in {source.where or 'value'}: {found}",
            )
            return None
        if found:
            return found[0]
    mapped = " or where the resource's context mapping says" if mapping is not None else ""
    report.problem(
        where,
        f"required: the {what} (context extension {iri}, a grouping activity "
        f"{prefix}<id>{mapped}; see docs/xapi-mapping.md)",
    )
    return None


def _verb(
    statement: dict[str, Any], has_score: bool, report: _Report
) -> tuple[str | None, Any, bool | None]:
    """(verb IRI, contract verb, the success the verb itself states)."""
    verb = report.object(statement.get("verb"), "verb")
    if verb is None:
        return None, None, None
    verb_id = verb.get("id")
    if not isinstance(verb_id, str) or not verb_id:
        report.problem("verb.id", f"required: the verb's IRI, got {verb_id!r}")
        return None, None, None
    rule, known = verb_rule(verb_id)
    if not known:
        report.note(
            "verb.id",
            f"verb {verb_id} is not classified: stored as 'interacted', which does not "
            "count as active use (docs/xapi-mapping.md lists the classified verbs)",
        )
    return verb_id, rule.contract_verb(has_score), rule.verdict


def _likert(statement: dict[str, Any], result: dict[str, Any], extensions: dict[str, Any],
            verb_id: str | None, report: _Report) -> tuple[str, float, dict[str, Any]] | None:
    """(item id, 1-based answer, event extensions) of a questionnaire answer, or None when
    the statement is not one (see the module's docstring)."""
    questionnaire = extensions.get(QUESTIONNAIRE_EXTENSION)
    if questionnaire is None or verb_id != ANSWERED_VERB:
        return None
    field = f"context.extensions[{QUESTIONNAIRE_EXTENSION}]"
    if not isinstance(questionnaire, str) or not questionnaire:
        report.problem(field, f"expecting the questionnaire's id, got {questionnaire!r}")
        return None
    target: Any = statement.get("object")
    raw = target.get("definition") if isinstance(target, dict) else None
    definition: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if definition.get("type") != INTERACTION_TYPE or definition.get("interactionType") != "likert":
        report.problem("object.definition", "a questionnaire answer is on an activity of type "
                       f"{INTERACTION_TYPE} with interactionType 'likert'")
        return None
    scale = definition.get("scale")
    choices = [c.get("id") for c in scale if isinstance(c, dict)] if isinstance(scale, list) else []
    if not choices:
        report.problem("object.definition.scale", "required: the Likert scale's choices")
        return None
    response = result.get("response")
    if response not in choices:
        report.problem("result.response",
                       f"must be one of the scale's ids {choices}, got {response!r}")
        return None
    respondent = extensions.get(RESPONDENT_EXTENSION, "pupil")
    object_id = target.get("id") if isinstance(target, dict) else None
    item = re.split(r"[/#]", object_id.rstrip("/"))[-1] if isinstance(object_id, str) else ""
    if not item:
        report.problem("object.id", "required: the item's IRI, ending with the item's id")
        return None
    return item, float(choices.index(response) + 1), {
        "questionnaire": questionnaire, "respondent": respondent,
        "score_scale": {"min": 1.0, "max": float(len(choices))}}


def map_statement(
    statement: Any,
    *,
    resource_id: str | None = None,
    mapping: ContextMapping | None = None,
    received_at: datetime | None = None,
) -> MappedStatement:
    """Map one xAPI statement onto contract v1, reporting every problem at once.

    Parameters
    ----------
    statement
        The decoded statement (a JSON object).
    resource_id
        The resource of the API key that sent it; a context extension
        ``RESOURCE_EXTENSION`` overrides it (the gateway checks the result against the
        key's scope).
    mapping
        The resource's context mapping (where its statements carry class and school).
    received_at
        When the gateway received it: the ``occurred_at`` of a statement without
        ``timestamp`` (default: now).

    Returns
    -------
    MappedStatement
        The event, validated against the contract, and the notes of what was dropped or
        filled.

    Raises
    ------
    StatementRejected
        With ``problems``: each problem, its ``field`` the xAPI path.

    Examples
    --------
    >>> mapped = map_statement(
    ...     {
    ...         "actor": {"name": "Jeanne Martin",
    ...                   "account": {"homePage": "https://ent.example", "name": "a1b2c3"}},
    ...         "verb": {"id": "https://w3id.org/xapi/video/verbs/played"},
    ...         "object": {"id": "https://lectio.example/videos/3"},
    ...         "context": {
    ...             "extensions": {CLASS_EXTENSION: "cls-42", SCHOOL_EXTENSION: "0750001A"}
    ...         },
    ...     },
    ...     resource_id="lectio",
    ...     received_at=datetime(2027, 10, 4, 9, 15, tzinfo=UTC),
    ... )
    >>> mapped.event.verb, mapped.event.occurred_at.isoformat()
    ('content_viewed', '2027-10-04T09:15:00+00:00')
    >>> [note.field for note in mapped.notes]
    ['actor.name', 'timestamp']
    """
    if not isinstance(statement, dict):
        raise StatementRejected(
            [EventRejected(f"a statement is a JSON object, got {type(statement).__name__}")]
        )
    received_at = received_at if received_at is not None else datetime.now(UTC)
    report = _Report()
    event_id: uuid.UUID | None = None
    try:
        event_id = statement_id(statement, received_at)
    except EventRejected as bad_id:
        report.problem(bad_id.field, bad_id.reason)
    learner_id = _learner_id(statement, report)
    result = report.object(statement.get("result"), "result", required=False) or {}
    score, scale = _score(result, report)
    verb_id, verb, verdict = _verb(statement, score is not None, report)
    success = result.get("success")
    if verdict is not None and isinstance(success, bool) and success is not verdict:
        said = "passed" if verdict else "failed"
        report.problem("result.success", f"is {success!r} but the verb says {said}")
    context = report.object(statement.get("context"), "context", required=False) or {}
    extensions = (
        report.object(context.get("extensions"), "context.extensions", required=False) or {}
    )
    grouping = _grouping(context, report)
    event_extensions: dict[str, Any] = {"xapi_verb": verb_id}
    timestamp = statement.get("timestamp")
    if timestamp is None:
        timestamp = received_at.isoformat()
        event_extensions["xapi_timestamp"] = TIMESTAMP_FILLED
        report.note(
            "timestamp",
            f"missing: filled with the time of receipt {timestamp} (the xAPI spec lets the "
            "receiver set it: timestamp defaults to stored)",
        )
    if scale is not None:
        event_extensions["score_scale"] = scale
    answer = _likert(statement, result, extensions, verb_id, report)
    if answer is not None:
        verb, score = "questionnaire_answered", answer[1]
        event_extensions.update(answer[2])
    fields: dict[str, Any] = {
        "event_id": None if event_id is None else str(event_id),
        "occurred_at": timestamp,
        "resource_id": extensions.get(RESOURCE_EXTENSION, resource_id),
        "learner_id": learner_id,
        "class_id": _placement(statement, extensions, grouping, "class_id", mapping, report),
        "school_uai": _placement(statement, extensions, grouping, "school_uai", mapping, report),
        "verb": verb,
        "object_id": answer[0] if answer is not None else _object_id(statement, report),
        "duration_s": _duration(result, report),
        "score": score,
        "success": success if success is not None else verdict,
        "extensions": event_extensions,
    }
    if fields["resource_id"] is None:
        report.problem(
            _SOURCE_OF["resource_id"],
            f"required: the resource (the API key's, or context extension {RESOURCE_EXTENSION})",
        )
    problems = report.problems
    event: UsageEvent | None = None
    try:
        event = UsageEvent.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        reported = {p.field for p in problems}
        for rejection in rejections_from(error):
            if rejection.field in fields and fields[rejection.field] is None and (
                rejection.reason == "required field is missing"
            ):
                continue  # its source's problem is already reported
            field = _SOURCE_OF.get(rejection.field or "", rejection.field)
            if field not in reported:
                problems.append(EventRejected(rejection.reason, field=field))
    if problems or event is None:
        known = None if event_id is None else str(event_id)
        raise StatementRejected(
            [EventRejected(p.reason, field=p.field, event_id=known) for p in problems],
            event_id=known,
        )
    return MappedStatement(event, tuple(report.notes))


def statement_to_event(statement: Any, *, resource_id: str | None = None) -> UsageEvent:
    """Map one xAPI statement onto contract v1 (:func:`map_statement`, without the notes).

    Raises
    ------
    StatementRejected
        Every problem of the statement (``field`` and ``reason`` are the first one's).

    Examples
    --------
    >>> event = statement_to_event(
    ...     {
    ...         "id": "6690e6c9-3ef0-4ed3-8b37-7f3964730bee",
    ...         "actor": {"account": {"homePage": "https://gar.education.fr", "name": "a1b2c3"}},
    ...         "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
    ...         "object": {"id": "https://lectio.example/lessons/12"},
    ...         "result": {"success": True, "duration": "PT4M"},
    ...         "context": {
    ...             "extensions": {CLASS_EXTENSION: "cls-42", SCHOOL_EXTENSION: "0750001A"}
    ...         },
    ...         "timestamp": "2027-10-04T09:15:00Z",
    ...     },
    ...     resource_id="lectio",
    ... )
    >>> event.verb, event.duration_s, event.learner_id
    ('activity_completed', 240.0, 'a1b2c3')
    """
    return map_statement(statement, resource_id=resource_id).event
