"""The protocol language: pydantic models, the loader, and the canonical hash.

A protocol is the contract of an experiment. The core of the language is fixed by
``docs/architecture.md`` ("The protocol language (core)"); this module adds the sections a
research team needs (hypotheses, secondary outcomes, resource metadata, deployment
conditions, budget, usage metric definitions, roll-out design, enrollment window,
post-experiment decision). Every key of the YAML is an attribute of the same name.

Validation happens in two layers, both reported with file positions by
:func:`load_protocol`: types and closed vocabularies (pydantic, strict: YAML ``"1"`` is
not the number 1), then meaning (:mod:`experiments.protocol.checks`).

The hash (:attr:`Protocol.sha256`) is the SHA-256 of the *canonical JSON* of the
validated model: ``model_dump(mode="json")`` with defaults filled in, keys sorted, no
whitespace, UTF-8. Comments, key order, quoting and YAML layout therefore do not change
it, and neither does writing a default explicitly; any change of meaning does. The
registry stores this hash, and reports quote it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails

from analysis.options import (
    ClusterCorrection,
    DesignType,
    Estimand,
    Model,
    MultipleComparisons,
    UnitLevel,
)
from experiments.errors import CalendarError, Problem, ProtocolError
from experiments.protocol import checks
from experiments.protocol.source import YamlSyntaxError, dump_yaml, format_field, locate, read_yaml
from experiments.protocol.vocabulary import (
    ACADEMIES,
    CYCLES,
    DEPARTEMENTS,
    FORMER_ACADEMIES,
    LEVELS,
    PROGRAMMES,
    did_you_mean,
)

__all__ = [
    "SCHEMA_PATH",
    "Analysis",
    "Arm",
    "Budget",
    "BudgetItem",
    "Compliance",
    "Decision",
    "Deployment",
    "Design",
    "EnrollmentWindow",
    "Funder",
    "Hypothesis",
    "Investigator",
    "Outcome",
    "Period",
    "Periods",
    "Population",
    "PowerInputs",
    "Programme",
    "Protocol",
    "Randomisation",
    "Resource",
    "Retention",
    "Territories",
    "RolloutStep",
    "ScheduleEntry",
    "Training",
    "Usage",
    "UsageMetric",
    "dump_protocol",
    "load_protocol",
    "parse_protocol",
    "protocol_schema_text",
    "write_schema",
]

# --- value types -------------------------------------------------------------------

_SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_NAME = r"^[a-z][a-z0-9_]*$"


def _pattern(pattern: str, what: str) -> Any:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if len(value) > 63 or not compiled.match(value):
            raise ValueError(f"must be {what}, got {value!r}")
        return value

    return AfterValidator(check)


def _vocabulary(
    values: tuple[str, ...], what: str, former: Mapping[str, str] | None = None
) -> Any:
    former = former or {}

    def check(value: str) -> str:
        if value in former:
            raise ValueError(
                f"{value!r} is no longer a{'n' if what[0] in 'aeiou' else ''} {what}; "
                f"it was merged into {former[value]!r}"
            )
        if value not in values:
            raise ValueError(f"unknown {what} {value!r}{did_you_mean(value, values)}")
        return value

    return AfterValidator(check)


def _parse_date(value: object) -> object:
    # YAML dates reach us as the text written (protocol_yaml keeps timestamps as text).
    if isinstance(value, datetime):
        raise ValueError(f"must be a date (YYYY-MM-DD) without a time, got {value.isoformat()}")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value} is not a date: {exc}") from None
    raise ValueError(f"must be a date written YYYY-MM-DD, got {value!r}")


Slug = Annotated[
    str,
    _pattern(_SLUG, "a slug (a-z, 0-9, dashes; at most 63 characters)"),
    WithJsonSchema({"type": "string", "pattern": _SLUG, "maxLength": 63}),
]
Name = Annotated[
    str,
    _pattern(_NAME, "a name (a-z, 0-9, underscores, starting with a letter)"),
    WithJsonSchema({"type": "string", "pattern": _NAME, "maxLength": 63}),
]
Text = Annotated[str, Field(min_length=1)]
Level = Annotated[
    str, _vocabulary(LEVELS, "niveau"), WithJsonSchema({"type": "string", "enum": list(LEVELS)})
]
Academie = Annotated[
    str,
    _vocabulary(ACADEMIES, "académie", FORMER_ACADEMIES),
    WithJsonSchema({"type": "string", "enum": list(ACADEMIES)}),
]
Departement = Annotated[
    str,
    _vocabulary(DEPARTEMENTS, "département (INSEE code)"),
    WithJsonSchema({"type": "string", "enum": list(DEPARTEMENTS)}),
]
Tag = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[^A-Z]+$")]
"""A kind of resource, in lower case: "lecture", "mathématiques", "cycle 2"."""
SchoolDate = Annotated[
    date, BeforeValidator(_parse_date), WithJsonSchema({"type": "string", "format": "date"})
]
PeriodeEnd = Annotated[
    str,
    _pattern(r"^fin-periode-[1-5](-[0-9]{4}-[0-9]{4})?$",
             "fin-periode-N (N from 1 to 5), optionally followed by the school year "
             "(fin-periode-2-2027-2028)"),
]
Share = Annotated[float, Field(ge=0, lt=1)]
Cycle = Literal[1, 2, 3, 4]


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, allow_inf_nan=False, use_attribute_docstrings=True
    )


# --- sections ----------------------------------------------------------------------


class Investigator(_Section):
    """A member of the research team."""

    name: Text
    affiliation: Text | None = None
    role: Text | None = None
    """E.g. investigateur principal, statisticien."""


class Resource(_Section):
    """The evaluated resource and its descriptors (cycle, niveaux, usage modes)."""

    id: Slug
    """``resource_id`` carried by the usage events."""
    name: Text
    publisher: Text | None = None
    cycles: list[Cycle] = []
    """Cycles the resource is made for (1: PS-GS, 2: CP-CE2, 3: CM1-6e, 4: 5e-3e)."""
    levels: list[Level] = []
    """Niveaux the resource is made for, beyond those of its cycles."""
    usage_modes: list[Literal["in_class", "at_home"]] = []
    """Where pupils use it: in class, at home."""
    autonomy: Literal["autonomous", "guided", "both"] | None = None
    """Whether pupils use it on their own or led by the teacher."""

    def all_levels(self) -> list[str]:
        """Niveaux of the declared cycles and levels, in school order (empty: not declared)."""
        declared = set(self.levels) | {lv for c in self.cycles for lv in CYCLES[c]}
        return [lv for lv in LEVELS if lv in declared]


class Population(_Section):
    """Who is in the experiment, and the unit of randomisation."""

    unit: UnitLevel
    levels: list[Level] = Field(min_length=1)
    academies: list[Academie] = Field(min_length=1)
    criteria: dict[Name, list[str | int | bool]] = {}
    """Unit attributes checked at enrollment, with the accepted values."""
    attributes: list[Name] = []
    """Unit attributes beyond the standard ones (see protocol_vocabulary)."""

    @model_validator(mode="after")
    def _meaning(self) -> Population:
        checks.raise_findings(checks.check_population(self))
        return self


class Arm(_Section):
    """An arm of the experiment."""

    name: Name
    allocation: float = Field(gt=0)
    """Relative weight in the randomisation (1 and 1: half of the units each)."""
    control: bool = False
    description: Text | None = None


class Randomisation(_Section):
    """How units are assigned to arms."""

    strata: list[Name] = []
    """Unit attributes to randomise within; the analysis adjusts for them."""
    seed: int = Field(ge=0, lt=2**63)


PeriodeSpan = Annotated[
    str,
    _pattern(r"^[1-5](-[1-5])?$", "a période or a span of périodes of one school year "
             "(2, or 2-4)"),
]
SchoolYear = Annotated[
    str,
    _pattern(r"^[0-9]{4}-[0-9]{4}$", "a school year written YYYY-YYYY (2027-2028)"),
]


class Period(_Section):
    """A span of school days, both ends included: dates, or périodes of a school year
    (``{periodes: 2-4, school_year: 2027-2028}``), which the loader turns into dates."""

    start: SchoolDate
    end: SchoolDate
    periodes: PeriodeSpan | None = None
    """Written in périodes: the first and last périodes (``2-4``, or ``3`` for one),
    resolved per zone of the protocol's académies: ``start`` is the earliest first day of
    the first période among the zones, ``end`` the latest last day of the last one (a
    span across zones covers every class's périodes; the report says which were meant)."""
    school_year: SchoolYear | None = None
    """The school year of ``periodes``."""

    @model_validator(mode="before")
    @classmethod
    def _from_periodes(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping) or "periodes" not in data:
            return data
        context = info.context if isinstance(info.context, Mapping) else {}
        academies = context.get("academies")
        if academies is None:  # a stored protocol read back: its dates were resolved then
            return data
        if not isinstance(data.get("periodes"), str) or not isinstance(
                data.get("school_year"), str):
            raise ValueError("periodes (e.g. 2-4) and school_year (e.g. 2027-2028) go "
                             "together, both as text")
        first, _, last = data["periodes"].partition("-")
        from experiments.protocol.calendar import deployment_calendar, zones_of

        try:
            zones = zones_of(academies)
            calendar = deployment_calendar()
            start = min(calendar.periode(data["school_year"], int(first), z).start
                        for z in zones)
            end = max(calendar.periode(data["school_year"], int(last or first), z).end
                      for z in zones)
        except (CalendarError, ValueError) as exc:
            raise ValueError(f"périodes {data['periodes']} of {data['school_year']}: "
                             f"{getattr(exc, 'reason', exc)}") from None
        for name, resolved in (("start", start), ("end", end)):
            given = data.get(name)
            if given is not None and str(given) != resolved.isoformat():
                raise ValueError(f"{name} {given} is not the {name} of périodes "
                                 f"{data['periodes']} of {data['school_year']} "
                                 f"({resolved.isoformat()}): give dates or périodes")
        return {**data, "start": start, "end": end}

    @model_validator(mode="after")
    def _meaning(self) -> Period:
        checks.raise_findings(checks.check_period(self))
        return self

    @model_serializer(mode="wrap")
    def _without_absent_periodes(self, handler: SerializerFunctionWrapHandler
                                 ) -> dict[str, Any]:
        # Left out when the period is written in dates, so that the canonical JSON (and the
        # SHA-256) of protocols written before périodes does not change.
        dumped: dict[str, Any] = handler(self)
        for name in ("periodes", "school_year"):
            if dumped.get(name) is None:
                dumped.pop(name, None)
        return dumped

    def describe(self, lang: str = "fr") -> str:
        """The period as the protocol wrote it: périodes with their dates, or dates."""
        if self.periodes is None:
            return (f"du {self.start} au {self.end}" if lang == "fr"
                    else f"from {self.start} to {self.end}")
        first, _, last = self.periodes.partition("-")
        if lang == "fr":
            span = f"période {first}" if not last else f"périodes {first} à {last}"
            return f"{span} de {self.school_year} (du {self.start} au {self.end})"
        span = f"période {first}" if not last else f"périodes {first} to {last}"
        return f"{span} of {self.school_year} (from {self.start} to {self.end})"


class Periods(_Section):
    """Baseline measures, intervention, follow-up (endline) measures, in that order."""

    baseline: Period | None = None
    intervention: Period
    followup: Period | None = None

    def ordered(self) -> list[tuple[str, Period | None]]:
        """The periods in the order they must happen."""
        return [
            ("baseline", self.baseline),
            ("intervention", self.intervention),
            ("followup", self.followup),
        ]

    def endline(self) -> date:
        """The last day outcomes are measured: end of the follow-up, else of the intervention."""
        return (self.followup or self.intervention).end

    @model_validator(mode="after")
    def _meaning(self) -> Periods:
        checks.raise_findings(checks.check_periods(self))
        return self


class RolloutStep(_Section):
    """When an arm starts receiving the resource."""

    arm: Name
    starts: SchoolDate


class Design(_Section):
    """The shape of the trial: parallel arms, a waitlist, or a staggered roll-out."""

    type: DesignType = "parallel"
    """parallel: the control arm never receives the resource during the trial; waitlist:
    it receives it after the endline; staggered: arms start in waves."""
    rollout: list[RolloutStep] = []


class EnrollmentWindow(_Section):
    """When académies may enroll units (randomisation happens at the close)."""

    opens: SchoolDate
    closes: SchoolDate

    @model_validator(mode="after")
    def _meaning(self) -> EnrollmentWindow:
        if self.closes < self.opens:
            checks.raise_findings(
                [
                    checks.Finding(
                        ("closes",), f"closes ({self.closes}) before it opens ({self.opens})"
                    )
                ]
            )
        return self


class Hypothesis(_Section):
    """A pre-registered hypothesis about one outcome."""

    id: Name
    outcome: Name
    statement: Text
    direction: Literal["increase", "decrease"] = "increase"
    confirmatory: bool = False
    """Confirmatory (about the primary outcome) or exploratory."""


class OutcomeSource(_Section):
    """Where the scores of an outcome may come from besides the trusted sources (an
    import by the researchers, an ``assessor`` token): the evaluated resource itself."""

    resource: Slug
    """The resource whose own ``assessment_scored`` events are this outcome's scores (it
    must be the protocol's ``resource.id``). A measure designed by the developer: every
    report flags it as a threat to validity and the evidence rating loses a padlock."""


class Outcome(_Section):
    """A measure of learning; exactly one is primary, the others are secondary."""

    id: Name
    """``measure`` in outcome records."""
    primary: bool = False
    baseline: Name | None = None
    """Pre-test measure (wave baseline) used as covariate."""
    label: Text | None = None
    instrument: Text | None = None
    """The test used, e.g. « ELFE », « évaluations nationales repères »."""
    kind: Literal["attainment", "attitude", "other"] = "attainment"
    """What the measure is: ``attainment`` (a test of learning: the report may translate
    its effect into months of progress, the EEF's table being calibrated on attainment),
    ``attitude`` (motivation, self-confidence, a questionnaire scale) or ``other``: no
    months of progress. The default keeps the meaning of protocols written before the key
    (every example measures attainment); declare any other measure."""
    source: OutcomeSource | None = None
    """Only to take the scores from the resource's own events (``{resource: lectio}``);
    absent, the scores come from ``preuve outcomes import`` or an ``assessor`` token."""

    @model_serializer(mode="wrap")
    def _without_absent_source(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # ``source`` came after the first registered protocols: left out of the dump when
        # absent, so that their canonical JSON, hence their SHA-256, does not change.
        dumped: dict[str, Any] = handler(self)
        if dumped.get("source") is None:
            dumped.pop("source", None)
        return dumped


class Analysis(_Section):
    """The pre-registered analysis plan."""

    estimand: Estimand = "ITT"
    """ITT first; CACE also when usage.compliance is declared."""
    model: Model = "ancova"
    """ancova: OLS, cluster-robust by unit; mixed: random intercepts."""
    covariates: list[Name] = []
    alpha: float = Field(0.05, gt=0, le=0.2)
    multiple_comparisons: MultipleComparisons = "holm"
    """Across secondary outcomes and subgroups."""
    subgroups: list[Name] = []
    attrition_boundary: Literal["cautious", "optimistic"] = "cautious"
    """WWC attrition boundary (Standards Handbook v4.1, Table II.1): cautious unless the
    protocol argues that attrition is unrelated to the outcome; the optimistic column has
    unverified rows, stated in every report that uses it."""
    cluster_correction: ClusterCorrection = "cr2"
    """Standard errors of ancova and CACE: cr2 (Bell-McCaffrey, Satterthwaite df), cr1, or
    cr1-strata (G/(G-S), unpublished, kept to reproduce earlier reports)."""


class Compliance(_Section):
    """What counts as having received the resource (for CACE)."""

    min_active_minutes: int = Field(gt=0)
    """Active minutes per learner over the intervention period."""


class UsageMetric(_Section):
    """How a usage indicator is computed from events."""

    id: Name
    kind: Literal["login", "active_use"]
    """login: the resource was opened (utilisation); active_use: pupils worked in it (usage)."""
    verbs: list[Name] = Field(min_length=1)
    """Event verbs that count."""
    idle_timeout_s: int | None = Field(None, gt=0)
    """For active use: a gap longer than this between two events is not counted as active
    (:mod:`analysis.sessions`). Omitted on an ``active_use`` metric it is 300 s, written out
    in the registered protocol (its canonical JSON, its pre-registration) so that what was
    pre-registered is explicit."""
    description: Text | None = None

    @model_validator(mode="before")
    @classmethod
    def _explicit_idle_timeout(cls, data: Any) -> Any:
        if (isinstance(data, dict) and data.get("kind") == "active_use"
                and data.get("idle_timeout_s") is None):
            return {**data, "idle_timeout_s": DEFAULT_IDLE_TIMEOUT_S}
        return data


DEFAULT_IDLE_TIMEOUT_S: Final = 300
"""The pause an ``active_use`` metric allows when its protocol does not say (seconds)."""


def _default_metrics() -> list[UsageMetric]:
    return [
        UsageMetric(id="logins", kind="login", verbs=["session_started"], idle_timeout_s=None),
        UsageMetric(
            id="active_minutes",
            kind="active_use",
            verbs=["activity_completed", "exercise_answered", "assessment_scored"],
            idle_timeout_s=DEFAULT_IDLE_TIMEOUT_S,
        ),
    ]


class Usage(_Section):
    """Usage: the compliance rule and the definitions of the usage metrics."""

    compliance: Compliance | None = None
    metrics: list[UsageMetric] = Field(default_factory=_default_metrics)

    @property
    def login_verbs(self) -> frozenset[str]:
        """Verbs of the ``login`` metrics: the resource was opened (utilisation)."""
        return frozenset(v for m in self.metrics if m.kind == "login" for v in m.verbs)

    @property
    def active_verbs(self) -> frozenset[str]:
        """Verbs of the ``active_use`` metrics: the pupil worked (usage)."""
        return frozenset(v for m in self.metrics if m.kind == "active_use" for v in m.verbs)

    @property
    def idle_timeout_s(self) -> int:
        """The idle timeout of active time: the ``active_use`` metrics' one value
        (:func:`~experiments.protocol.checks.check_usage` refuses two different ones)."""
        timeouts = [m.idle_timeout_s for m in self.metrics if m.kind == "active_use"]
        return next((t for t in timeouts if t is not None), DEFAULT_IDLE_TIMEOUT_S)

    @model_validator(mode="after")
    def _meaning(self) -> Usage:
        checks.raise_findings(checks.check_usage(self))
        return self


class PowerInputs(_Section):
    """PowerUp!-style inputs (Dong & Maynard 2013) for ``preuve protocol power``."""

    icc: Share = 0.0
    """Share of the outcome variance between units (level 2)."""
    pupils_per_unit: int = Field(1, ge=1)
    units: int = Field(ge=2)
    """Units randomised, all arms together."""
    r2_learner: Share = 0.0
    """Share of variance explained by covariates, level 1."""
    r2_unit: Share = 0.0
    """Share of variance explained by covariates, level 2."""
    power: float = Field(0.8, gt=0, lt=1)
    blocks: int | None = Field(None, ge=1)
    """Number of strata (blocks) of the randomisation; given: a blocked design."""
    covariates: int | None = Field(None, ge=0)
    """Covariates at the level of randomisation (g*); default 1 if its R² > 0, else 0."""
    two_tailed: bool = True


class ScheduleEntry(_Section):
    """When an analysis runs: once (``at``), repeatedly (``every``), or on the days of a
    cron expression (``cron``)."""

    analysis: Literal["monitoring", "interim", "final"]
    every: Literal["week", "month", "period", "periode"] | None = None
    """``period``: after each of the protocol's own periods (baseline, intervention,
    follow-up); ``periode``: after each période of the school year (between holidays),
    per zone, the latest across the protocol's zones (experiments/protocol/calendar.py)."""
    at: SchoolDate | PeriodeEnd | None = None
    """A date, or the end of a période: ``fin-periode-2`` (of the school year in which
    the intervention starts) or ``fin-periode-2-2027-2028``; due the day after it ends in
    the last of the protocol's zones."""
    cron: str | None = None
    """Cron expression (minute hour day-of-month month day-of-week), e.g. ``0 6 1,15 * *``:
    the analysis runs on the days it fires, between the start of the intervention and the
    end of the follow-up, each ready in the morning (Paris time)."""
    confirmatory: bool = False
    """An interim analysis that may conclude (an ``at`` date and its ``information``; the
    protocol's ``interim`` section says how alpha is spent). Otherwise an interim analysis
    is descriptive: the report draws no conclusion from it."""
    information: float | None = Field(None, gt=0, lt=1)
    """Planned information fraction of a confirmatory interim look: the share of the
    final analysis' pupils (with an endline score) expected by then, e.g. 0.5."""

    @model_validator(mode="after")
    def _meaning(self) -> ScheduleEntry:
        checks.raise_findings(checks.check_schedule_entry(self))
        return self


class Interim(_Section):
    """How confirmatory interim looks share the type I error (``analysis.alpha``)."""

    spending: Literal["obrien-fleming"] = "obrien-fleming"
    """Lan-DeMets alpha-spending function of O'Brien-Fleming type (``asOF`` in R's
    rpact): almost no alpha early, nearly all of it left for the final analysis."""


class Retention(_Section):
    """How long the experiment's data is kept (RGPD); a purge removes it afterwards."""

    keep_until: SchoolDate


class Training(_Section):
    """Training of the teachers in the treatment arms."""

    hours: float = Field(ge=0)
    provider: Text | None = None
    description: Text | None = None


class Deployment(_Section):
    """Deployment conditions (« taille de la population, mesures d'accompagnement »)."""

    schools: int | None = Field(None, ge=1)
    classes: int | None = Field(None, ge=1)
    pupils: int | None = Field(None, ge=1)
    teacher_training: Training | None = None
    support: Text | None = None
    """Accompagnement: who helps the teachers, how."""
    equipment: Text | None = None


class BudgetItem(_Section):
    """A cost, with who pays it."""

    label: Text
    amount: float = Field(ge=0)
    funder: Text
    arm: Name | None = None
    """The treated arm this cost is for (e.g. a second arm's extra training); without it
    the cost is shared by every treated arm, in proportion to their pupils."""


class Budget(_Section):
    """Costs of the treatment, for cost per pupil and cost-effectiveness."""

    currency: Literal["EUR"] = "EUR"
    items: list[BudgetItem] = Field(min_length=1)
    pupils: int = Field(ge=1)
    """Pupils who receive the resource (the denominator of the cost per pupil)."""

    @property
    def total(self) -> float:
        """Sum of the items."""
        return sum(item.amount for item in self.items)

    @property
    def cost_per_pupil(self) -> float:
        """Total cost divided by the pupils who receive the resource."""
        return self.total / self.pupils

    def arm_cost(self, arm: str, share: float) -> tuple[float, float]:
        """(cost, pupils) of one treated arm: its own items plus ``share`` (its share of
        the treated pupils, from the allocation) of the shared items, over ``share`` of
        the pupils. Every arm's cost per pupil is the budget's when all items are shared.

        Examples
        --------
        >>> b = Budget(items=[BudgetItem(label="licences", amount=600, funder="x"),
        ...     BudgetItem(label="formation", amount=300, funder="x", arm="b")], pupils=30)
        >>> b.arm_cost("a", 0.5), b.arm_cost("b", 0.5)
        ((300.0, 15.0), (600.0, 15.0))
        """
        own = sum(item.amount for item in self.items if item.arm == arm)
        shared = sum(item.amount for item in self.items if item.arm is None)
        return own + share * shared, share * self.pupils


class Programme(_Section):
    """The funding programme the experiment belongs to (the portfolio groups by it)."""

    name: Annotated[str, WithJsonSchema({"type": "string", "examples": list(PROGRAMMES)})]
    """TNE, eFRAN, P2IA, France 2030 or autre; more by configuration (``PREUVE_PROGRAMMES``)."""
    action: Text | None = None
    """The programme's action or call, in words (e.g. a France 2030 call for projects)."""

    @field_validator("name")
    @classmethod
    def _known(cls, name: str, info: ValidationInfo) -> str:
        # The vocabulary comes from the validation context (built-ins plus the configured
        # names); a registered protocol read back is checked with ``programmes=None``: it
        # was checked at registration, under the configuration of that day.
        context = info.context if isinstance(info.context, Mapping) else {}
        allowed = context.get("programmes", PROGRAMMES)
        if allowed is not None and name not in allowed:
            raise ValueError(f"unknown programme {name!r}{did_you_mean(name, allowed)}; "
                             f"expecting one of {', '.join(allowed)}")
        return name


class Territories(_Section):
    """Where the experiment runs, for the portfolio's map (within ``population.academies``)."""

    academies: list[Academie] = []
    departements: list[Departement] = []


class Funder(_Section):
    """Who funds the experiment, and how much (budget items name their funder)."""

    name: Text
    amount: float = Field(ge=0)
    """Euros committed to this experiment (treatment and evaluation)."""


WaveId = Annotated[
    str,
    _pattern(r"^[A-Za-z][A-Za-z0-9-]{0,31}$",
             "a wave name (letters, digits and dashes, e.g. debut-CP, fin-CE1)"),
]


class Wave(_Section):
    """A named outcome wave: the scores taken between ``start`` and ``end`` (school days,
    both included). Without ``waves:`` a protocol has two, from its periods: ``baseline``
    (before the intervention) and ``endline`` (after it)."""

    id: WaveId
    start: SchoolDate
    end: SchoolDate
    baseline: bool = False
    """The pre-test wave: its scores are the covariates named by ``outcomes[].baseline``."""
    primary: bool = False
    """The wave of the confirmatory effect (exactly one); the effects at the other waves
    are secondary, adjusted for multiplicity like secondary outcomes."""
    label: Text | None = None


class Cohort(_Section):
    """Pupils followed over several school years: next year's classes of the pupils are
    enrolled for the same experiment (``preuve enroll EXPERIMENT FILE --follow``), each
    pupil keeping the arm of the class randomised (intention to treat)."""

    school_years: list[SchoolYear] = Field(min_length=2)
    """The school years followed, consecutive (``[2027-2028, 2028-2029]``)."""


class Decision(_Section):
    """The post-experiment step: who decides what, when, on which rule."""

    at: SchoolDate
    deciders: list[Text] = Field(min_length=1)
    rule: Text
    """The decision rule, in words, written before the results are known."""
    min_effect_size: float | None = None
    """Smallest effect (Hedges' g) that would justify scaling up."""
    min_active_share: float | None = Field(None, ge=0, le=1)
    """Smallest share of pupils meeting the compliance rule that would justify scaling up."""


class Protocol(_Section):
    """A whole protocol. Build it with :func:`load_protocol` to get located errors."""

    preuve: Literal[1]
    """Language version."""
    id: Slug
    title: Text
    summary: Text | None = None
    investigators: list[Investigator] = []
    resource: Resource
    population: Population
    design: Design = Design()
    enrollment: EnrollmentWindow | None = None
    arms: list[Arm] = Field(min_length=2)
    randomisation: Randomisation
    periods: Periods
    hypotheses: list[Hypothesis] = []
    outcomes: list[Outcome] = Field(min_length=1)
    analysis: Analysis
    usage: Usage = Usage()
    power: PowerInputs | None = None
    schedule: list[ScheduleEntry] = Field(min_length=1)
    interim: Interim | None = None
    """Alpha spending over confirmatory interim looks (``schedule[].confirmatory``)."""
    retention: Retention
    deployment: Deployment | None = None
    budget: Budget | None = None
    decision: Decision | None = None
    programme: Programme | None = None
    territories: Territories | None = None
    funders: list[Funder] = []
    tags: list[Tag] = []
    """Kinds of resource, for syntheses across experiments ("lecture", "cycle 2")."""
    waves: list[Wave] = []
    """Named outcome waves (a cohort over school years: ``debut-CP``, ``fin-CP``,
    ``fin-CE1``); absent, the two waves come from the periods."""
    cohort: Cohort | None = None

    @field_validator("arms")
    @classmethod
    def _one_control(cls, arms: list[Arm]) -> list[Arm]:
        checks.raise_findings(checks.check_arms(arms))
        return arms

    @field_validator("outcomes")
    @classmethod
    def _one_primary(cls, outcomes: list[Outcome]) -> list[Outcome]:
        checks.raise_findings(checks.check_outcomes(outcomes))
        return outcomes

    @model_validator(mode="after")
    def _meaning(self) -> Protocol:
        checks.raise_findings(checks.check_protocol(self))
        return self

    @property
    def control_arm(self) -> Arm:
        """The control arm (validation guarantees there is exactly one)."""
        return next(a for a in self.arms if a.control)

    @property
    def primary_outcome(self) -> Outcome:
        """The primary outcome (validation guarantees there is exactly one)."""
        return next(o for o in self.outcomes if o.primary)

    @property
    def primary_wave(self) -> Wave | None:
        """The wave of the confirmatory effect, when the protocol names its waves."""
        return next((w for w in self.waves if w.primary), None)

    @property
    def baseline_wave(self) -> Wave | None:
        """The pre-test wave, when the protocol names its waves and has one."""
        return next((w for w in self.waves if w.baseline), None)

    @model_serializer(mode="wrap")
    def _without_absent_cohort(self, handler: SerializerFunctionWrapHandler
                               ) -> dict[str, Any]:
        # Waves and cohorts came after the first registered protocols: left out of the
        # dump when absent, so that their canonical JSON (and SHA-256) does not change.
        dumped: dict[str, Any] = handler(self)
        if not dumped.get("waves"):
            dumped.pop("waves", None)
        if dumped.get("cohort") is None:
            dumped.pop("cohort", None)
        return dumped

    def canonical_json(self) -> str:
        """The JSON the hash is computed on (defaults filled, keys sorted, compact)."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of :meth:`canonical_json`, UTF-8 encoded."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


# --- loading -----------------------------------------------------------------------


def load_protocol(path: str | Path, *,
                  programmes: Sequence[str] | None = PROGRAMMES) -> Protocol:
    """Read and validate a protocol file.

    Parameters
    ----------
    path:
        A YAML protocol file.
    programmes:
        The programme names ``programme.name`` may take: the built-ins, plus the
        configured ones (``Settings.programme_names``); ``None`` accepts any name.

    Returns
    -------
    Protocol
        The validated protocol.

    Raises
    ------
    ProtocolError
        With ``problems``: every problem found, each located (file, line, column, field).

    Examples
    --------
    >>> load_protocol("protocols/fluence-cp-2027.yaml").population.unit
    'class'
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = Problem(name, 1, 1, "", f"cannot read the file: {exc}")
        raise ProtocolError(str(problem), problems=[problem]) from None
    return parse_protocol(text, name, programmes=programmes)


def _academies_of(plain: Any) -> tuple[str, ...]:
    """The académies a document names (``population.academies``), read before validation
    so that periods written in périodes resolve per zone; () when absent or malformed (the
    validation of ``population`` reports it)."""
    population = plain.get("population") if isinstance(plain, Mapping) else None
    academies = population.get("academies") if isinstance(population, Mapping) else None
    if not isinstance(academies, list) or not all(isinstance(a, str) for a in academies):
        return ()
    return tuple(academies)


def parse_protocol(text: str, path: str = "<protocol>", *,
                   programmes: Sequence[str] | None = PROGRAMMES) -> Protocol:
    """Validate protocol YAML text; ``path`` names it in the problems.

    Raises
    ------
    ProtocolError
        As :func:`load_protocol`.
    """
    try:
        plain, tree = read_yaml(text)
    except YamlSyntaxError as exc:
        problem = Problem(path, exc.line, exc.col, "", exc.message)
        raise ProtocolError(str(problem), problems=[problem]) from None
    try:
        return Protocol.model_validate(plain, context={"programmes": programmes,
                                                       "academies": _academies_of(plain)})
    except ValidationError as exc:
        problems = _problems(exc, tree, path)
        reason = "\n".join(str(p) for p in problems)
        raise ProtocolError(reason, problems=problems) from None


def dump_protocol(protocol: Protocol) -> str:
    """The protocol as YAML (defaults written out, ``None`` left out).

    Loading the result gives back an equal protocol with the same hash.
    """
    return dump_yaml(protocol.model_dump(mode="json", exclude_none=True))


def _problems(exc: ValidationError, tree: Any, path: str) -> list[Problem]:
    found: dict[tuple[int, int, str, str], Problem] = {}
    for error in exc.errors():
        for loc, message in _explain(error):
            kept, line, col = locate(tree, loc)
            field = format_field(kept)
            # A value failing every member of a union gives one type error per member: keep
            # one per field. Meaning checks (value errors) are all kept.
            key = message if error["type"] == "value_error" else ""
            found.setdefault((line, col, field, key), Problem(path, line, col, field, message))
    return sorted(found.values(), key=lambda p: (p.line, p.col))


def _explain(error: ErrorDetails) -> list[tuple[tuple[int | str, ...], str]]:
    loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, checks.ProtocolProblems):
        return [((*loc, *f.loc), f.message) for f in cause.findings]
    kind = error["type"]
    if kind == "missing":
        return [(loc, "required, but missing")]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        known = list(model.model_fields) if model is not None else []
        key = str(loc[-1])
        return [(loc, f"unknown key {key!r}{did_you_mean(key, known)}")]
    if kind == "model_type" and not loc:
        return [(loc, f"a protocol is a mapping of sections, got {_kind(error['input'])}")]
    if isinstance(cause, ValueError):
        return [(loc, str(cause))]
    message = error["msg"].replace("Input should be", "must be")
    if kind == "model_type":
        message = "must be a mapping"
    return [(loc, f"{message}, got {_show(error['input'])}")]


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class validating the mapping at ``loc`` (for did-you-mean hints)."""
    current: Any = Protocol
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            if get_origin(current) is not list:
                return None
            current = get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    if get_origin(tp) is Annotated:
        return _unwrap(get_args(tp)[0])
    args = [a for a in get_args(tp) if a is not type(None)]
    if get_origin(tp) is not None and type(None) in get_args(tp) and len(args) == 1:
        return _unwrap(args[0])
    return tp


def write_schema(path: str | Path | None = None) -> str:
    """Write the JSON Schema of the language (default: ``protocols/schema/protocol.schema.json``).

    Returns
    -------
    str
        The schema text written (also what :func:`protocol_schema_text` returns).
    """
    text = protocol_schema_text()
    target = Path(path) if path is not None else SCHEMA_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return text


SCHEMA_PATH = (
    Path(__file__).resolve().parents[2] / "protocols" / "schema" / "protocol.schema.json"
)


def protocol_schema_text() -> str:
    """The JSON Schema of the protocol language, as published in ``protocols/schema/``."""
    schema = Protocol.model_json_schema()
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
    }
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m experiments.protocol.language: regenerate the schema file
    write_schema()
