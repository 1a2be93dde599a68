"""Event contract v1: what an EdTech resource may send, and nothing more.

An event is one fact about one pseudonymous learner using one resource. The contract is
strict on purpose: unknown fields, naive timestamps, unknown verbs and anything that
looks like a direct identifier (an e-mail, a phone number, a name field) are refused with
a reason that names the field, because pupils are minors and bad data found at analysis
time is data lost.

Verbs are grouped as the French sources ask (DOMAIN.md R6): *availability* (the resource
was made available), *utilisation* (the pupil opened it) and *usage* (the pupil did
something with it). Only usage counts as active use. A fourth group, *other*, holds
``interacted``: an interaction the sending tool could not classify (an xAPI verb outside
the table of :mod:`ingest.xapi_verbs`, e.g. a video ``seeked``); it is stored, and never
counts as active use by default. A fifth, *questionnaire*, holds ``questionnaire_answered``:
one answer to one item of a questionnaire the protocol declares (``object_id`` the item id,
``score`` the answer, ``extensions.questionnaire`` the questionnaire id). A teacher's answer
says ``extensions.respondent: "teacher"`` and carries the teacher's pseudonymous GAR id as
``learner_id``: it is re-keyed per experiment like a pupil's, and the class it describes is
``class_id``. Answers are never usage.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ingest.errors import EventRejected

__all__ = [
    "AVAILABILITY_VERBS",
    "OTHER_VERBS",
    "QUESTIONNAIRE_VERBS",
    "USAGE_VERBS",
    "UTILISATION_VERBS",
    "PSEUDONYM_PATTERN",
    "RESPONDENTS",
    "EnrollmentMessage",
    "UsageEvent",
    "Verb",
    "event_json_schema",
    "identifying_text",
    "parse_event",
    "rejection_from",
    "rejections_from",
]

Verb = Literal[
    # availability: the resource reached the class
    "resource_assigned",
    "licence_activated",
    # utilisation: a pupil opened the resource
    "session_started",
    "session_ended",
    "resource_opened",
    # usage: a pupil did something with it
    "content_viewed",
    "activity_started",
    "activity_completed",
    "exercise_answered",
    "assessment_scored",
    # other: an interaction that cannot be classified (not active use by default)
    "interacted",
    # questionnaire: one answer to one item of a declared questionnaire (never usage)
    "questionnaire_answered",
]
AVAILABILITY_VERBS = frozenset({"resource_assigned", "licence_activated"})
UTILISATION_VERBS = frozenset({"session_started", "session_ended", "resource_opened"})
USAGE_VERBS = frozenset(
    {"content_viewed", "activity_started", "activity_completed", "exercise_answered",
     "assessment_scored"}
)
OTHER_VERBS = frozenset({"interacted"})
QUESTIONNAIRE_VERBS = frozenset({"questionnaire_answered"})
RESPONDENTS = ("pupil", "teacher")

# Pseudonymous ids as the GAR hands them out are opaque tokens; '@' and spaces are refused
# so that an e-mail or a "Prénom Nom" can never pass as an id. '+' is allowed: LTI context
# ids and Open edX course keys (course-v1:ufr+maths+0001) carry it, and class ids come
# from them.
_PSEUDONYM = r"^[A-Za-z0-9][A-Za-z0-9._:+\-]{0,127}$"
PSEUDONYM_PATTERN = _PSEUDONYM
_SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
# UAI (immatriculation of French schools): 7 characters then a check letter, e.g. 0750001A.
_UAI = r"^[0-9]{3}[0-9AB][0-9]{3}[A-Z]$"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_UTC_OFFSET = re.compile(r"(Z|[+-]\d{2}:\d{2})$")
_PHONE = re.compile(r"(?:\+33|0033|\b0)[\s.\-]?[1-9](?:[\s.\-]?\d{2}){4}\b")
_IDENTIFYING_KEYS = frozenset(
    {
        "name", "first_name", "firstname", "last_name", "lastname", "given_name",
        "family_name", "full_name", "fullname", "surname", "nom", "prenom", "prénom",
        "email", "e_mail", "mail", "courriel", "phone", "telephone", "téléphone", "tel",
        "mobile", "address", "adresse", "birth_date", "birthdate", "date_naissance",
        "date_de_naissance", "ine", "username", "login",
    }
)
MAX_EXTENSIONS_BYTES = 2048


def identifying_text(value: str) -> str | None:
    """Why ``value`` looks like a direct identifier (an e-mail address, a French phone
    number), or None. Used on events and on the free-text reasons people type (a
    withdrawal's, an erasure's); a name cannot be told from other words, so the forms
    that take a reason also say not to write one.

    Examples
    --------
    >>> identifying_text("parents object, see marie.dupont@example.fr")
    'looks like an e-mail address (direct identifiers are refused)'
    >>> identifying_text("teacher on leave") is None
    True
    """
    if "@" in value and _EMAIL.search(value):  # the test first: this runs on every event
        return "looks like an e-mail address (direct identifiers are refused)"
    if _PHONE.search(value):
        return "looks like a phone number (direct identifiers are refused)"
    return None


class UsageEvent(BaseModel):
    """One usage event, contract v1 (docs/architecture.md "Event contract v1")."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    event_id: UUID = Field(description="Idempotency key: a re-sent event has the same id.")
    occurred_at: AwareDatetime = Field(description="RFC 3339 timestamp with UTC offset.")
    resource_id: str = Field(pattern=_SLUG, description="The resource, as in the protocol.")
    learner_id: str = Field(pattern=_PSEUDONYM, description="Pseudonymous learner id (GAR).")
    class_id: str = Field(pattern=_PSEUDONYM, description="Pseudonymous class id.")
    school_uai: str = Field(pattern=_UAI, description="UAI of the school, e.g. 0750001A.")
    verb: Verb
    object_id: str | None = Field(None, max_length=256)
    duration_s: float | None = Field(None, ge=0, le=86_400)
    score: float | None = Field(None, allow_inf_nan=False)
    success: bool | None = None
    extensions: dict[str, Any] | None = Field(
        None, description="Small object (at most 2 KiB) of resource-specific facts."
    )

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if isinstance(value, str) and not _ends_with_offset(value):
            raise ValueError("missing UTC offset (RFC 3339 needs Z or ±HH:MM)")
        return value

    @field_validator("learner_id", "class_id", mode="before")
    @classmethod
    def _pseudonymous(cls, value: Any) -> Any:
        # Say plainly why an e-mail or a phone number is refused, before the pattern does.
        if isinstance(value, str) and (problem := identifying_text(value)):
            raise ValueError(f"{problem}; send the pseudonymous id instead")
        return value

    @field_validator("object_id")
    @classmethod
    def _no_identifier_in_object(cls, value: str | None) -> str | None:
        if value is not None and (problem := identifying_text(value)):
            raise ValueError(problem)
        return value

    @field_validator("extensions")
    @classmethod
    def _small_and_anonymous(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        size = len(json.dumps(value, ensure_ascii=False).encode())
        if size > MAX_EXTENSIONS_BYTES:
            raise ValueError(f"is {size} bytes, at most {MAX_EXTENSIONS_BYTES} allowed")
        _check_no_identifiers(value, "extensions")
        return value

    @model_validator(mode="after")
    def _score_needs_assessment(self) -> UsageEvent:
        if self.verb == "assessment_scored" and self.score is None:
            raise ValueError("score: required when verb is 'assessment_scored'")
        if self.verb == "questionnaire_answered":
            _check_answer(self)
        return self

    def to_json(self) -> bytes:
        """Canonical JSON bytes of the event (the form produced to Kafka)."""
        return self.model_dump_json(exclude_none=True).encode()


def _ends_with_offset(value: str) -> bool:
    """``_UTC_OFFSET.search(value)``, in string operations (this runs on every event, and
    the search tried the pattern at each position of the timestamp): ``Z`` or ``±HH:MM``
    at the end, or before one final newline as ``$`` allows; ``str.isdecimal`` is ``\\d``
    (Unicode category Nd).

    >>> [_ends_with_offset(v) for v in ("2027-10-01T08:00:00Z", "2027-10-01T08:00:00+02:00",
    ...                                 "2027-10-01T08:00:00+0200", "2027-10-01T08:00:00")]
    [True, True, False, False]
    """
    if value.endswith("\n"):
        value = value[:-1]
    if value.endswith("Z"):
        return True
    return (len(value) >= 6 and value[-6] in "+-" and value[-3] == ":"
            and value[-5:-3].isdecimal() and value[-2:].isdecimal())


def _check_answer(event: UsageEvent) -> None:
    verb = "when verb is 'questionnaire_answered'"
    if event.object_id is None:
        raise ValueError(f"object_id: required {verb} (the item id)")
    if event.score is None:
        raise ValueError(f"score: required {verb} (the answer on the item's scale)")
    extensions = event.extensions or {}
    questionnaire = extensions.get("questionnaire")
    if not isinstance(questionnaire, str) or not questionnaire:
        raise ValueError(f"extensions.questionnaire: required {verb} (the questionnaire id, "
                         "as in the protocol)")
    respondent = extensions.get("respondent", "pupil")
    if respondent not in RESPONDENTS:
        raise ValueError(f"extensions.respondent: must be 'pupil' or 'teacher', got {respondent!r}")


def _check_no_identifiers(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).strip().lower().replace("-", "_") in _IDENTIFYING_KEYS:
                raise ValueError(f"key '{where}.{key}' is a direct identifier, which is refused")
            if problem := identifying_text(str(key)):
                raise ValueError(f"a key of '{where}' {problem}")
            _check_no_identifiers(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_no_identifiers(item, f"{where}[{index}]")
    elif isinstance(value, str) and (problem := identifying_text(value)):
        raise ValueError(f"'{where}' {problem}")


class EnrollmentMessage(BaseModel):
    """A record of ``preuve.enrollments``: where a class's events go (key: class/resource)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    class_id: str = Field(pattern=_PSEUDONYM)
    experiment_id: str = Field(pattern=_SLUG)
    resource_id: str = Field(pattern=_SLUG)
    arm: str
    school_uai: str = Field(pattern=_UAI)
    academie: str
    status: Literal["enrolled", "withdrawn"] = "enrolled"
    at: datetime

    def to_json(self) -> bytes:
        """JSON bytes of the record, as produced to Kafka."""
        return self.model_dump_json().encode()


def rejections_from(error: ValidationError, event_id: str | None = None) -> list[EventRejected]:
    """Turn every pydantic error into an :class:`EventRejected` naming its field."""
    rejections = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or None
        reason = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            reason = "unknown field (the contract forbids extra fields)"
        elif problem["type"] == "missing":
            reason = "required field is missing"
        elif field is None and ":" in reason:
            field, reason = (part.strip() for part in reason.split(":", 1))
        rejections.append(EventRejected(reason, field=field, event_id=event_id))
    return rejections


def rejection_from(error: ValidationError, event_id: str | None = None) -> EventRejected:
    """Turn the first pydantic error into an :class:`EventRejected` naming the field."""
    return rejections_from(error, event_id)[0]


def parse_event(raw: bytes | str | dict[str, Any]) -> UsageEvent:
    """Validate one event against contract v1.

    Parameters
    ----------
    raw
        The event as JSON bytes or text, or an already decoded object.

    Returns
    -------
    UsageEvent
        The validated event.

    Raises
    ------
    EventRejected
        With ``field`` naming the offending field and ``reason`` saying why.

    Examples
    --------
    >>> parse_event({"verb": "session_started"}).verb
    Traceback (most recent call last):
    ...
    ingest.errors.EventRejected: field 'event_id': required field is missing
    """
    if isinstance(raw, bytes | str):
        # Fast path: pydantic-core parses and validates the JSON in one pass. Only a
        # refused event pays for a second, plain decoding that finds its id and the reason.
        try:
            return UsageEvent.model_validate_json(raw)
        except ValidationError:
            pass
        try:
            obj = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise EventRejected(f"not valid JSON: {error}") from None
    else:
        obj = raw
    if not isinstance(obj, dict):
        raise EventRejected(f"an event is a JSON object, got {type(obj).__name__}")
    event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
    try:
        return UsageEvent.model_validate(obj)
    except ValidationError as error:
        raise rejection_from(error, event_id) from None


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of contract v1 (published as ``ingest/schemas/event-v1.schema.json``)."""
    schema = UsageEvent.model_json_schema()
    schema["$id"] = "https://preuve.example/schemas/event-v1.schema.json"
    schema["title"] = "Preuve usage event, contract v1"
    return schema
