"""Where a resource's xAPI statements carry the class and the school: the per-resource
context mapping a vendor configures once.

No tool carries a class or a school the way Preuve's own IRIs do: Moodle and Open edX
put the course in ``context.contextActivities.parent``, cmi5 LMSs in ``grouping``, LTI
tools the LTI context id in ``parent``, some tools a ``context.team``. The deployment's
file (``settings.gateway.xapi_contexts``, YAML) says, per resource, where to look::

    moodle-college:                  # resource_id: the API key's resource
      class:                         # tried in order; the first that matches wins
        - in: parent                 # parent | grouping | category | other | object
          type: http://id.tincanapi.com/activitytype/lms-course   # optional filter
          pattern: "https://moodle.college.example/course/view.php?id={}"
        - in: object
          pattern: "https://moodle.college.example/course/view.php?id={}"
      school:
        - in: extension
          key: "https://moodle.college.example/xapi/uai"
        - value: "0750001A"          # a resource that serves one school only

``in: team`` reads ``context.team.account.name`` (an identified Group); ``in:
extension`` reads ``context.extensions[key]`` (a string); ``value`` (school only) is a
constant.

Patterns are a restricted syntax, not regular expressions, so that a pattern cannot make
matching slow (no ReDoS): literal text with exactly one ``{}`` (the id to take: the longest
run of letters, digits and ``. _ : + -`` there), optionally a leading ``*`` (anything
before) and a final ``*`` (anything after), e.g. ``https://lms.example/courses/{}*`` or
``*/xapi/activities/course/{}``; at most 256 characters. Matching is one search and one
scan, linear in the IRI. The id taken must then pass the contract's checks (a
pseudonymous class id, a UAI).
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ingest.contract import _SLUG
from ingest.errors import IngestError

__all__ = [
    "ContextMapping",
    "ContextPattern",
    "ContextSource",
    "MAX_PATTERN_LENGTH",
    "load_context_mappings",
]

MAX_PATTERN_LENGTH = 256
MAX_SOURCES = 4  # per field: a vendor needs one or two; a long list is a mistake
ActivityList = Literal["parent", "grouping", "category", "other", "object"]


_ID_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._:+-")


@dataclass(frozen=True)
class ContextPattern:
    """A parsed pattern: ``[*]prefix{}suffix[*]``.

    ``{}`` takes the longest run of id characters (letters, digits and ``. _ : + -``)
    after ``prefix``; the text after it must be ``suffix``, or begin with it when the
    pattern ends with ``*``. A leading ``*`` lets anything come before ``prefix`` (its first
    occurrence is used). No backtracking: matching is linear in the IRI.

    Examples
    --------
    >>> ContextPattern.parse("https://lms.example/courses/{}*").match(
    ...     "https://lms.example/courses/cm2-b/aus/4c07")
    'cm2-b'
    >>> ContextPattern.parse("*/xapi/activities/course/{}").match(
    ...     "http://moodle.college.example/xapi/activities/course/ba29-7687")
    'ba29-7687'
    >>> ContextPattern.parse("https://lms.example/course/view.php?id={}").match(
    ...     "https://lms.example/course/section.php?id=3") is None
    True
    """

    prefix: str
    suffix: str
    open_start: bool
    open_end: bool

    @classmethod
    def parse(cls, text: str) -> ContextPattern:
        """Parse ``text``; ValueError says what is wrong with it."""
        if len(text) > MAX_PATTERN_LENGTH:
            raise ValueError(f"is {len(text)} characters long, at most {MAX_PATTERN_LENGTH}")
        others = text.replace("{}", "")
        if text.count("{}") != 1 or "{" in others or "}" in others:
            raise ValueError(
                f"needs exactly one '{{}}' (the id to take) and no other braces: {text!r}"
            )
        open_start, open_end = text.startswith("*"), text.endswith("*")
        body = text[1 if open_start else 0 : len(text) - 1 if open_end else len(text)]
        if "*" in body:
            raise ValueError(f"'*' may only begin or end a pattern: {text!r}")
        prefix, suffix = body.split("{}")
        if open_start and not prefix:
            raise ValueError(f"'*{{}}' cannot tell where the id begins: {text!r}")
        return cls(prefix, suffix, open_start, open_end)

    def match(self, iri: str) -> str | None:
        """The id ``{}`` stands for in ``iri``, or None when ``iri`` does not match."""
        if self.open_start:
            found = iri.find(self.prefix)
            if found < 0:
                return None
            start = found + len(self.prefix)
        elif iri.startswith(self.prefix):
            start = len(self.prefix)
        else:
            return None
        end = start
        while end < len(iri) and iri[end] in _ID_CHARACTERS:
            end += 1
        rest = iri[end:]
        follows = rest.startswith(self.suffix) if self.open_end else rest == self.suffix
        if end == start or not follows:
            return None
        return iri[start:end]


@functools.lru_cache(maxsize=256)
def _parsed(text: str) -> ContextPattern:
    """The parsed pattern, once per pattern text (sources are frozen and few)."""
    return ContextPattern.parse(text)


class ContextSource(BaseModel):
    """One place to read the class or the school from (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    where: ActivityList | Literal["team", "extension"] | None = Field(
        None, alias="in", description="Which part of the statement to read."
    )
    pattern: str = Field("{}", description="Where the id is in the IRI or text, e.g. "
                         "'https://lms.example/course/view.php?id={}'.")
    type: str | None = Field(None, description="Only activities of this definition.type.")
    key: str | None = Field(None, description="The extension IRI (with `in: extension`).")
    value: str | None = Field(None, description="A constant (school only).")

    @model_validator(mode="after")
    def _one_place(self) -> ContextSource:
        if (self.where is None) == (self.value is None):
            raise ValueError("give either 'in' (where to read) or 'value' (a constant)")
        if (self.where == "extension") != (self.key is not None):
            raise ValueError("'key' (the extension IRI) goes with 'in: extension', and only there")
        if self.type is not None and self.where in ("team", "extension", None):
            raise ValueError("'type' filters activities: it goes with parent, grouping, "
                             "category, other or object")
        ContextPattern.parse(self.pattern)
        return self

    def values(self, statement: dict[str, Any]) -> set[str]:
        """The distinct ids this source finds in ``statement``."""
        if self.value is not None:
            return {self.value}
        pattern = _parsed(self.pattern)
        return {
            taken for text in self._texts(statement) if (taken := pattern.match(text)) is not None
        }

    def _texts(self, statement: dict[str, Any]) -> Iterable[str]:
        context = statement.get("context")
        context = context if isinstance(context, dict) else {}
        if self.where == "extension":
            extensions = context.get("extensions")
            found = extensions.get(self.key) if isinstance(extensions, dict) else None
            return [str(found)] if isinstance(found, str | int) else []
        if self.where == "team":
            team = context.get("team")
            account = team.get("account") if isinstance(team, dict) else None
            name = account.get("name") if isinstance(account, dict) else None
            return [name] if isinstance(name, str) else []
        if self.where == "object":
            activities: Any = [statement.get("object")]
        else:
            lists = context.get("contextActivities")
            activities = lists.get(self.where, []) if isinstance(lists, dict) else []
            if isinstance(activities, dict):  # xAPI 1.0 allowed a single activity
                activities = [activities]
        return [
            activity["id"]
            for activity in (activities if isinstance(activities, list) else [])
            if isinstance(activity, dict)
            and activity.get("objectType", "Activity") == "Activity"
            and isinstance(activity.get("id"), str)
            and (self.type is None or _definition_type(activity) == self.type)
        ]


def _definition_type(activity: dict[str, Any]) -> Any:
    definition = activity.get("definition")
    return definition.get("type") if isinstance(definition, dict) else None


class ContextMapping(BaseModel):
    """Where one resource's statements carry the class and the school."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    class_id: list[ContextSource] = Field(
        default_factory=list, alias="class", max_length=MAX_SOURCES
    )
    school_uai: list[ContextSource] = Field(
        default_factory=list, alias="school", max_length=MAX_SOURCES
    )

    @model_validator(mode="after")
    def _no_constant_class(self) -> ContextMapping:
        if any(source.value is not None for source in self.class_id):
            raise ValueError("class: a constant 'value' would put every pupil in one class")
        return self

    def sources(self, field: Literal["class_id", "school_uai"]) -> Sequence[ContextSource]:
        """The sources of ``field``, in order."""
        return self.class_id if field == "class_id" else self.school_uai


class _Mappings(RootModel[dict[str, ContextMapping]]):
    pass


def load_context_mappings(path: Path | None) -> dict[str, ContextMapping]:
    """Read the per-resource context mappings of ``path`` (None: no mapping).

    Raises
    ------
    IngestError
        The file cannot be read or breaks the format; the message names the file and the
        offending key.
    """
    if path is None:
        return {}
    try:
        raw = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, YAMLError) as error:
        raise IngestError(f"{path}: cannot be read: {error}") from None
    try:
        mappings = _Mappings.model_validate(raw).root
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise IngestError(
            f"{path}: {where}: {first['msg'].removeprefix('Value error, ')}", field=where
        ) from None
    for resource in mappings:
        if not re.fullmatch(_SLUG, resource):  # the resource ids of protocols and API keys
            raise IngestError(f"{path}: {resource!r} is not a resource id (a-z, 0-9, dashes)")
    return mappings
