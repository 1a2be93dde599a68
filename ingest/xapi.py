"""xAPI statements mapped onto event contract v1.

Many learning tools (H5P, SCORM and cmi5 players, LMSs) already emit xAPI statements.
The gateway accepts them at ``POST /v1/xapi/statements`` and turns each into one
:class:`~ingest.contract.UsageEvent`; the table of the mapping is in
``docs/xapi-mapping.md``. In short:

- ``actor`` must be an Agent identified by an ``account`` (``homePage`` and a
  pseudonymous ``name``, e.g. the GAR's opaque id): ``account.name`` is the
  ``learner_id``. An actor with ``mbox``, ``mbox_sha1sum``, ``openid`` or a ``name`` (a
  person's display name) is refused: those are direct identifiers.
- ``verb.id`` (ADL vocabulary, http://adlnet.gov/expapi/verbs/ or its
  https://w3id.org/xapi/adl/verbs/ twin) gives the contract verb (:data:`VERBS`).
- ``object.id`` is the ``object_id``; ``result.score.scaled`` (else ``raw``) the score,
  ``result.success`` the success, ``result.duration`` (ISO 8601) the ``duration_s``.
- ``context.extensions`` (or ``context.contextActivities.grouping``) carries the class
  and the school, with the IRIs below; the resource is the API key's, unless the
  resource extension names it (the gateway then checks it against the key).
- ``timestamp`` is ``occurred_at`` (an offset is required); the statement ``id`` is the
  ``event_id``, or, when absent, a UUIDv5 of the statement's canonical JSON, so that a
  re-sent statement keeps its id.

Everything else in a statement (``result.response``, ``context.instructor``,
``object.definition``, other extensions, attachments...) is dropped, never stored: free
text and instructors may identify a person. A statement that lacks what the contract
needs is refused with :class:`~ingest.errors.EventRejected` whose ``field`` is the xAPI
path (``timestamp``, ``actor.mbox``, ``context.extensions[<IRI>]``...).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Final

from ingest.contract import _PSEUDONYM, _SLUG, _UAI, UsageEvent, Verb, parse_event
from ingest.errors import EventRejected

__all__ = [
    "CLASS_ACTIVITY_PREFIX",
    "CLASS_EXTENSION",
    "RESOURCE_EXTENSION",
    "SCHOOL_ACTIVITY_PREFIX",
    "SCHOOL_EXTENSION",
    "STATEMENT_ID_NAMESPACE",
    "STATEMENT_JSON_SCHEMA",
    "VERBS",
    "parse_duration",
    "statement_id",
    "statement_to_event",
]

PREUVE_XAPI: Final = "https://preuve.example/xapi/"
CLASS_EXTENSION: Final = PREUVE_XAPI + "extensions/class-id"
SCHOOL_EXTENSION: Final = PREUVE_XAPI + "extensions/school-uai"
RESOURCE_EXTENSION: Final = PREUVE_XAPI + "extensions/resource-id"
# Grouping activities: https://preuve.example/xapi/classes/<class_id>, .../schools/<UAI>.
CLASS_ACTIVITY_PREFIX: Final = PREUVE_XAPI + "classes/"
SCHOOL_ACTIVITY_PREFIX: Final = PREUVE_XAPI + "schools/"
# Namespace of ids derived from statements that have none (fixed forever: changing it
# would give re-sent statements new ids).
STATEMENT_ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, PREUVE_XAPI + "statements")

_ADL_PREFIXES = ("http://adlnet.gov/expapi/verbs/", "https://w3id.org/xapi/adl/verbs/")
_ADL_VERBS: dict[str, Verb] = {
    "initialized": "session_started",
    "launched": "session_started",
    "resumed": "session_started",
    "logged-in": "session_started",
    "terminated": "session_ended",
    "exited": "session_ended",
    "suspended": "session_ended",
    "logged-out": "session_ended",
    "experienced": "content_viewed",
    "attempted": "activity_started",
    "completed": "activity_completed",
    "answered": "exercise_answered",
    "scored": "assessment_scored",
    # passed/failed: assessment_scored with a score, else activity_completed (see below)
    "passed": "assessment_scored",
    "failed": "assessment_scored",
}
VERBS: Final[dict[str, Verb]] = {
    prefix + name: verb for prefix in _ADL_PREFIXES for name, verb in _ADL_VERBS.items()
} | {"http://id.tincanapi.com/verb/viewed": "content_viewed"}
_VERDICTS = {"passed": True, "failed": False}

_DIRECT_IDENTIFIERS = {
    "mbox": "an e-mail address",
    "mbox_sha1sum": "a hash of an e-mail address (linkable across systems)",
    "openid": "a personal OpenID URL",
    "name": "a person's name",
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
STATEMENT_JSON_SCHEMA: Final[dict[str, Any]] = {
    "title": "XapiStatement",
    "description": "An xAPI 1.0.3 statement as Preuve accepts it (see docs/xapi-mapping.md); "
    "fields not listed are ignored and never stored.",
    "type": "object",
    "required": ["actor", "verb", "object", "timestamp", "context"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "actor": {
            "type": "object",
            "required": ["account"],
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
            "properties": {"id": {"type": "string", "enum": sorted(VERBS)}},
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
                    },
                },
                "contextActivities": {
                    "type": "object",
                    "properties": {"grouping": {"type": "array", "items": _ACTIVITY}},
                },
            },
        },
        "timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 with a UTC offset (Z or ±HH:MM).",
        },
    },
}


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


def statement_id(statement: dict[str, Any]) -> uuid.UUID:
    """The statement's ``id``, or a UUIDv5 of its canonical JSON when it has none.

    Canonical JSON sorts keys, drops insignificant white space and escapes non-ASCII,
    so the same statement re-sent (even re-serialised) gets the same id.
    """
    given = statement.get("id")
    if given is not None:
        if not isinstance(given, str):
            raise EventRejected(f"a statement id is a UUID string, got {given!r}", field="id")
        try:
            return uuid.UUID(given)
        except ValueError:
            raise EventRejected(f"a statement id is a UUID, got {given!r}", field="id") from None
    # ensure_ascii: a lone surrogate in a string must not make the id underivable.
    canonical = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return uuid.uuid5(STATEMENT_ID_NAMESPACE, canonical)


def _object(value: Any, field: str, *, required: bool = True) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        got = "nothing" if value is None else type(value).__name__
        raise EventRejected(f"expecting an object, got {got}", field=field)
    return value


def _learner_id(statement: dict[str, Any]) -> str:
    actor = _object(statement.get("actor"), "actor")
    kind = actor.get("objectType", "Agent")
    if kind != "Agent":
        raise EventRejected(
            f"expecting an Agent (one learner per statement), got objectType {kind!r}",
            field="actor.objectType",
        )
    for key, what in _DIRECT_IDENTIFIERS.items():
        if key in actor:
            raise EventRejected(
                f"is {what}, a direct identifier, which is refused: identify the learner "
                "by an account with a pseudonymous name",
                field=f"actor.{key}",
            )
    account = _object(actor.get("account"), "actor.account")
    home_page = account.get("homePage")
    if not isinstance(home_page, str) or not home_page:
        raise EventRejected(
            "required (the system that issued the account)", field="actor.account.homePage"
        )
    name = account.get("name")
    if not isinstance(name, str):
        raise EventRejected("required: the learner's pseudonymous id", field="actor.account.name")
    return name


def _verb(statement: dict[str, Any], has_score: bool) -> tuple[Verb, bool | None]:
    """The contract verb, and the success that the verb itself says (passed/failed)."""
    verb_id = _object(statement.get("verb"), "verb").get("id")
    if not isinstance(verb_id, str) or verb_id not in VERBS:
        raise EventRejected(
            f"verb {verb_id!r} is not mapped; expecting an ADL verb among "
            f"{sorted({iri.rsplit('/', 1)[1] for iri in VERBS})} (see docs/xapi-mapping.md)",
            field="verb.id",
        )
    name = verb_id.rsplit("/", 1)[1]
    if name in _VERDICTS:
        return ("assessment_scored" if has_score else "activity_completed"), _VERDICTS[name]
    return VERBS[verb_id], None


def _object_id(statement: dict[str, Any]) -> str | None:
    target = _object(statement.get("object"), "object")
    kind = target.get("objectType", "Activity")
    if kind != "Activity":
        raise EventRejected(
            f"expecting an Activity, got objectType {kind!r} (a person or a statement as "
            "object is not part of the contract)",
            field="object.objectType",
        )
    object_id = target.get("id")
    if not isinstance(object_id, str):
        raise EventRejected("required: the activity's IRI", field="object.id")
    return object_id


def _score(result: dict[str, Any]) -> float | None:
    score = _object(result.get("score"), "result.score", required=False)
    for key in ("scaled", "raw"):
        value = score.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EventRejected(f"expecting a number, got {value!r}", field=f"result.score.{key}")
        return float(value)
    if score:
        raise EventRejected("has neither 'scaled' nor 'raw'", field="result.score")
    return None


def _grouping(context: dict[str, Any]) -> list[str]:
    activities = _object(
        context.get("contextActivities"), "context.contextActivities", required=False
    )
    grouping = activities.get("grouping", [])
    if isinstance(grouping, dict):  # xAPI 1.0 allowed a single activity; 1.0.3 normalises
        grouping = [grouping]
    if not isinstance(grouping, list):
        raise EventRejected(
            f"expecting an array of activities, got {type(grouping).__name__}",
            field="context.contextActivities.grouping",
        )
    return [a["id"] for a in grouping if isinstance(a, dict) and isinstance(a.get("id"), str)]


def _from_context(
    extensions: dict[str, Any], grouping: list[str], iri: str, prefix: str | None, what: str
) -> Any:
    field = f"context.extensions[{iri}]"
    in_extension = extensions.get(iri)
    in_grouping = [g[len(prefix) :] for g in grouping if prefix and g.startswith(prefix)]
    if len(set(in_grouping)) > 1:
        raise EventRejected(
            f"several {what}s in grouping activities: {sorted(set(in_grouping))}",
            field="context.contextActivities.grouping",
        )
    if in_extension is not None and in_grouping and in_grouping[0] != in_extension:
        raise EventRejected(
            f"{what} {in_extension!r} differs from grouping activity {prefix}{in_grouping[0]}",
            field=field,
        )
    if in_extension is None and not in_grouping:
        where = f" or a grouping activity {prefix}<id>" if prefix else ""
        raise EventRejected(f"required: the {what} (context extension {iri}{where})", field=field)
    return in_extension if in_extension is not None else in_grouping[0]


def statement_to_event(statement: Any, *, resource_id: str | None = None) -> UsageEvent:
    """Map one xAPI statement onto contract v1.

    Parameters
    ----------
    statement
        The decoded statement (a JSON object).
    resource_id
        The resource of the API key that sent it; a context extension
        ``RESOURCE_EXTENSION`` overrides it (the gateway checks the result against the
        key's scope).

    Returns
    -------
    UsageEvent
        The event, validated against the contract.

    Raises
    ------
    EventRejected
        With ``field`` the xAPI path of what is missing or wrong.

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
    if not isinstance(statement, dict):
        raise EventRejected(f"a statement is a JSON object, got {type(statement).__name__}")
    event_id = statement_id(statement)
    try:
        result = _object(statement.get("result"), "result", required=False)
        score = _score(result)
        verb, verdict = _verb(statement, has_score=score is not None)
        success = result.get("success")
        if verdict is not None and success is not None and success is not verdict:
            raise EventRejected(
                f"is {success!r} but the verb says {'passed' if verdict else 'failed'}",
                field="result.success",
            )
        duration = result.get("duration")
        duration_s: float | None = None
        if duration is not None:
            try:
                duration_s = parse_duration(duration) if isinstance(duration, str) else None
            except ValueError as error:
                raise EventRejected(str(error), field="result.duration") from None
            if duration_s is None:
                raise EventRejected(
                    f"expecting an ISO 8601 string, got {duration!r}", field="result.duration"
                )
        context = _object(statement.get("context"), "context")
        extensions = _object(context.get("extensions"), "context.extensions", required=False)
        grouping = _grouping(context)
        if "timestamp" not in statement:
            raise EventRejected("required: when it happened, with a UTC offset", field="timestamp")
        fields: dict[str, Any] = {
            "event_id": str(event_id),
            "occurred_at": statement["timestamp"],
            "resource_id": extensions.get(RESOURCE_EXTENSION, resource_id),
            "learner_id": _learner_id(statement),
            "class_id": _from_context(
                extensions, grouping, CLASS_EXTENSION, CLASS_ACTIVITY_PREFIX, "class id"
            ),
            "school_uai": _from_context(
                extensions, grouping, SCHOOL_EXTENSION, SCHOOL_ACTIVITY_PREFIX, "school UAI"
            ),
            "verb": verb,
            "object_id": _object_id(statement),
            "duration_s": duration_s,
            "score": score,
            "success": success if success is not None else verdict,
            "extensions": {"xapi_verb": statement["verb"]["id"]},
        }
        if fields["resource_id"] is None:
            raise EventRejected(
                "required: the resource (the API key's, or context extension "
                f"{RESOURCE_EXTENSION})",
                field=_SOURCE_OF["resource_id"],
            )
    except EventRejected as rejection:
        raise EventRejected(
            rejection.reason, field=rejection.field, event_id=str(event_id)
        ) from None
    try:
        return parse_event({key: value for key, value in fields.items() if value is not None})
    except EventRejected as rejection:
        field = _SOURCE_OF.get(rejection.field or "", rejection.field)
        raise EventRejected(rejection.reason, field=field, event_id=str(event_id)) from None
