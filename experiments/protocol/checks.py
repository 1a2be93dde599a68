"""The meaning checks of the protocol language, beyond types.

Each check returns :class:`Finding` objects located by a field path *relative to the
model that runs it*; the models raise them together as one :class:`ProtocolProblems`
(a ``ValueError``, so pydantic keeps it in the error's context), and
:func:`experiments.protocol.language.load_protocol` unfolds it into one located problem each.

Checks that look at one section run in that section's model, so they are reported
together with type errors elsewhere in the file. Checks across sections
(:func:`check_protocol`) run once every section is well-typed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, get_args

from experiments.protocol.vocabulary import EDUCATION_PRIORITY, did_you_mean, unit_attributes
from ingest.contract import Verb

#: The verbs of event contract v1: a usage metric can only count verbs that events carry.
CONTRACT_VERBS: tuple[str, ...] = get_args(Verb)

if TYPE_CHECKING:
    from experiments.protocol.language import (
        Arm,
        Outcome,
        Period,
        Periods,
        Population,
        Protocol,
        ScheduleEntry,
        Usage,
    )

__all__ = [
    "Finding",
    "ProtocolProblems",
    "check_arms",
    "check_outcomes",
    "check_period",
    "check_periods",
    "check_population",
    "check_protocol",
    "check_schedule_entry",
    "check_usage",
    "protocol_warnings",
    "raise_findings",
]

Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class Finding:
    """A problem at ``loc``, relative to the model that found it."""

    loc: Loc
    message: str


class ProtocolProblems(ValueError):
    """Several findings of one model, raised together."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, f.loc))}: {f.message}" for f in findings))
        self.findings = list(findings)


def raise_findings(findings: Iterable[Finding]) -> None:
    """Raise :class:`ProtocolProblems` if there is any finding."""
    found = list(findings)
    if found:
        raise ProtocolProblems(found)


def _duplicates(loc: Loc, values: Sequence[str], what: str) -> list[Finding]:
    counts = Counter(values)
    return [
        Finding((*loc, i), f"{what} {v!r} is declared more than once")
        for i, v in enumerate(values)
        if counts[v] > 1 and values.index(v) != i
    ]


# --- one section -------------------------------------------------------------------


def check_period(period: Period) -> list[Finding]:
    """A period ends on or after its start."""
    if period.end < period.start:
        return [Finding(("end",), f"ends ({period.end}) before it starts ({period.start})")]
    return []


def check_periods(periods: Periods) -> list[Finding]:
    """Baseline, intervention and follow-up come in that order and do not overlap."""
    named = [(n, p) for n, p in periods.ordered() if p is not None]
    found = []
    for (prev_name, prev), (name, cur) in zip(named, named[1:], strict=False):
        if cur.start < prev.start:
            found.append(
                Finding(
                    (name, "start"),
                    f"starts ({cur.start}) before {prev_name} ({prev.start}); "
                    "periods go baseline, intervention, followup",
                )
            )
        elif cur.start <= prev.end:
            found.append(
                Finding(
                    (name, "start"),
                    f"starts ({cur.start}) before {prev_name} ends ({prev.end}); "
                    "periods must not overlap",
                )
            )
    return found


def check_arms(arms: Sequence[Arm]) -> list[Finding]:
    """Exactly one control arm, and arm names are unique."""
    found = _duplicates((), [a.name for a in arms], "arm")
    controls = [i for i, a in enumerate(arms) if a.control]
    if not controls:
        found.append(Finding((), "no control arm; mark exactly one arm with `control: true`"))
    for i in controls[1:]:
        found.append(
            Finding(
                (i, "control"),
                f"exactly one control arm allowed; {arms[controls[0]].name!r} "
                f"(arms[{controls[0]}]) is already the control",
            )
        )
    return found


def check_outcomes(outcomes: Sequence[Outcome]) -> list[Finding]:
    """Outcome ids are unique and exactly one outcome is primary (the confirmatory one)."""
    found = _duplicates((), [o.id for o in outcomes], "outcome")
    primaries = [i for i, o in enumerate(outcomes) if o.primary]
    if not primaries:
        found.append(Finding((), "no primary outcome; mark exactly one with `primary: true`"))
    for i in primaries[1:]:
        found.append(
            Finding(
                (i, "primary"),
                f"exactly one primary outcome allowed; {outcomes[primaries[0]].id!r} "
                "is already primary (declare the others as secondary outcomes)",
            )
        )
    return found


def check_population(population: Population) -> list[Finding]:
    """Criteria name unit attributes; education_priority values are official labels."""
    attributes = unit_attributes(population.unit, population.attributes)
    found = _duplicates(("levels",), population.levels, "niveau")
    found += _duplicates(("academies",), population.academies, "académie")
    for name, values in population.criteria.items():
        if name not in attributes:
            found.append(
                Finding(("criteria", name), _not_attribute(name, population.unit, attributes))
            )
        if name == "education_priority":
            for i, value in enumerate(values):
                if value not in EDUCATION_PRIORITY:
                    found.append(
                        Finding(
                            ("criteria", name, i),
                            f"must be one of {', '.join(EDUCATION_PRIORITY)}, "
                            f"got {value!r}{did_you_mean(str(value), EDUCATION_PRIORITY)}",
                        )
                    )
    return found


def check_usage(usage: Usage) -> list[Finding]:
    """Metric ids are unique; every verb is one of the event contract's (a misspelt verb
    would silently count nothing); logins and active use count different verbs."""
    found = _duplicates(("metrics",), [m.id for m in usage.metrics], "metric")
    for i, metric in enumerate(usage.metrics):
        for j, verb in enumerate(metric.verbs):
            if verb not in CONTRACT_VERBS:
                found.append(Finding(
                    ("metrics", i, "verbs", j),
                    f"unknown verb {verb!r}: events carry one of the contract's verbs"
                    f"{did_you_mean(verb, CONTRACT_VERBS)}",
                ))
    login_verbs = {v for m in usage.metrics if m.kind == "login" for v in m.verbs}
    active = [(i, m) for i, m in enumerate(usage.metrics) if m.kind == "active_use"]
    for i, metric in active:
        for j, verb in enumerate(metric.verbs):
            if verb in login_verbs:
                found.append(
                    Finding(
                        ("metrics", i, "verbs", j),
                        f"{verb!r} is counted as a login; a login "
                        "alone is not active use (utilisation is not usage)",
                    )
                )
    if not active:
        found.append(
            Finding(("metrics",), "no `kind: active_use` metric: real use must be defined")
        )
    timeouts = {m.idle_timeout_s for _, m in active}
    if len(timeouts) > 1:  # active time is one measure, rebuilt with one pause
        i = next(i for i, m in active if m.idle_timeout_s != active[0][1].idle_timeout_s)
        found.append(Finding(
            ("metrics", i, "idle_timeout_s"),
            "active time is rebuilt with one maximum pause: give every `kind: active_use` "
            f"metric the same idle_timeout_s (here {sorted(t or 0 for t in timeouts)})",
        ))
    return found


def protocol_warnings(protocol: Protocol) -> list[str]:
    """What a valid protocol leaves to defaults that a pre-registration should state.

    ``preuve protocol validate`` prints them; ``preuve protocol register`` refuses a
    protocol without ``usage:`` (:func:`experiments.registry.register_protocol`), since
    usage is one of the two metrics of every experiment and its defaults would otherwise be
    pre-registered without anyone having written them.
    """
    found: list[str] = []
    if "usage" not in protocol.model_fields_set:
        found.append(
            "usage: not declared; the defaults apply (logins: session_started; active use: "
            "activity_completed, exercise_answered, assessment_scored, pause 300 s) and "
            "`preuve protocol register` refuses a protocol without it"
        )
    if protocol.decision is None:
        found.append("decision: not declared; no decision rule will be evaluated at the end")
    return found


def check_schedule_entry(entry: ScheduleEntry) -> list[Finding]:
    """Each entry has ``at`` (a date), ``every`` (a rhythm) or ``cron`` (an expression);
    a final analysis has a date."""
    given = [entry.at is not None, entry.every is not None, entry.cron is not None]
    if sum(given) != 1:
        return [Finding((), "give exactly one of `at` (a date or fin-periode-N), `every` "
                            "(week, month, period, periode) "
                            "or `cron` (minute hour day month weekday)")]
    if entry.cron is not None:
        from croniter import croniter

        if len(entry.cron.split()) != 5 or not croniter.is_valid(entry.cron):
            return [Finding(("cron",), f"not a cron expression of 5 fields "
                                       f"(minute hour day month weekday), got {entry.cron!r}")]
    if entry.analysis == "final" and entry.at is None:
        where = "every" if entry.every is not None else "cron"
        return [Finding((where,), "the final analysis happens once: give `at: YYYY-MM-DD` "
                                  "or `at: fin-periode-N`")]
    if entry.confirmatory and (entry.analysis != "interim" or entry.at is None):
        return [Finding(("confirmatory",), "only an interim analysis on a date "
                                           "(`at: YYYY-MM-DD`) can be confirmatory; the final "
                                           "analysis always is")]
    if entry.confirmatory and entry.information is None:
        return [Finding(("information",), "a confirmatory interim look needs its planned "
                                          "information fraction, e.g. `information: 0.5`")]
    if entry.information is not None and not entry.confirmatory:
        return [Finding(("information",), "only a confirmatory interim look has an "
                                          "information fraction: add `confirmatory: true`")]
    return []


# --- across sections ---------------------------------------------------------------


def _not_attribute(name: str, unit: str, attributes: Sequence[str]) -> str:
    return (
        f"{name!r} is not an attribute of a {unit}{did_you_mean(name, attributes)} "
        f"(attributes: {', '.join(attributes)}; declare others in population.attributes)"
    )


def _check_outcome_sources(p: Protocol) -> list[Finding]:
    """An outcome's declared ``source`` is the evaluated resource, nothing else: another
    resource's events never reach this experiment's store."""
    return [
        Finding(("outcomes", i, "source", "resource"),
                f"must be the evaluated resource {p.resource.id!r} (resource.id), "
                f"got {outcome.source.resource!r}")
        for i, outcome in enumerate(p.outcomes)
        if outcome.source is not None and outcome.source.resource != p.resource.id
    ]


def check_protocol(protocol: Protocol) -> list[Finding]:
    """Every check that needs more than one section.

    Returns
    -------
    list[Finding]
        Located from the root of the protocol, in file order of the sections.
    """
    return [
        *_check_attributes(protocol),
        *_check_resource_levels(protocol),
        *_check_design(protocol),
        *_check_enrollment(protocol),
        *_check_hypotheses(protocol),
        *_check_outcome_baselines(protocol),
        *_check_outcome_sources(protocol),
        *_check_analysis(protocol),
        *_check_power(protocol),
        *_check_schedule(protocol),
        *_check_interim(protocol),
        *_check_budget(protocol),
        *_check_after_final(protocol),
        *_check_periode_ends(protocol),
        *_check_territories(protocol),
        *_check_funders(protocol),
        *_check_waves(protocol),
    ]


def _school_year_span(school_year: str) -> tuple[date, date]:
    first = int(school_year[:4])
    return date(first, 8, 1), date(first + 1, 7, 31)


def _check_waves(p: Protocol) -> list[Finding]:
    """Named waves: unique, in order without overlap, one primary (not the baseline), at
    most one baseline and before the others; a cohort names its waves, its school years
    are consecutive and hold every wave."""
    found: list[Finding] = []
    waves = p.waves
    found += _duplicates(("waves",), [w.id for w in waves], "wave")
    for i, wave in enumerate(waves):
        if wave.end < wave.start:
            found.append(Finding(("waves", i, "end"), f"ends ({wave.end}) before it starts "
                                                      f"({wave.start})"))
        if i and wave.start <= waves[i - 1].end:
            found.append(Finding(("waves", i, "start"),
                                 f"starts ({wave.start}) before the wave before it "
                                 f"({waves[i - 1].id}) ends ({waves[i - 1].end}): waves are "
                                 "written in order, without overlap"))
        if wave.baseline and wave.primary:
            found.append(Finding(("waves", i, "primary"),
                                 "the baseline wave cannot be the primary one"))
        if wave.baseline and i:
            found.append(Finding(("waves", i, "baseline"),
                                 "the baseline wave comes first"))
    if waves and sum(w.primary for w in waves) != 1:
        found.append(Finding(("waves",), "exactly one wave is primary (primary: true): the "
                                         f"wave of the confirmatory effect; got "
                                         f"{sum(w.primary for w in waves)}"))
    if waves and not any(w.baseline for w in waves):
        for i, outcome in enumerate(p.outcomes):
            if outcome.baseline is not None:
                found.append(Finding(("outcomes", i, "baseline"),
                                     "a pre-test needs a baseline wave (baseline: true) "
                                     "among the waves"))
    cohort = p.cohort
    if cohort is not None:
        if not waves:
            found.append(Finding(("cohort",), "a cohort names its outcome waves (waves:), "
                                              "e.g. debut-CP, fin-CP, fin-CE1"))
        years = [int(y[:4]) for y in cohort.school_years]
        for i, y in enumerate(cohort.school_years):
            if int(y[5:]) != int(y[:4]) + 1:
                found.append(Finding(("cohort", "school_years", i),
                                     f"{y} is not a school year (YYYY-YYYY+1)"))
            elif i and years[i] != years[i - 1] + 1:
                found.append(Finding(("cohort", "school_years", i),
                                     f"{y} does not follow {cohort.school_years[i - 1]}: "
                                     "the school years of a cohort are consecutive"))
        first = _school_year_span(cohort.school_years[0])[0]
        last = _school_year_span(cohort.school_years[-1])[1]
        for i, wave in enumerate(waves):
            if not (first <= wave.start and wave.end <= last):
                found.append(Finding(("waves", i),
                                     f"{wave.id} ({wave.start} to {wave.end}) lies outside "
                                     f"the cohort's school years ({first} to {last})"))
    return found


def _check_attributes(p: Protocol) -> list[Finding]:
    attributes = unit_attributes(p.population.unit, p.population.attributes)
    found = []
    for loc, names in (
        (("randomisation", "strata"), p.randomisation.strata),
        (("analysis", "subgroups"), p.analysis.subgroups),
    ):
        found += _duplicates(loc, names, "attribute")
        for i, name in enumerate(names):
            if name not in attributes:
                found.append(
                    Finding((*loc, i), _not_attribute(name, p.population.unit, attributes))
                )
    return found


def _check_resource_levels(p: Protocol) -> list[Finding]:
    made_for = p.resource.all_levels()
    if not made_for:
        return []
    return [
        Finding(
            ("population", "levels", i),
            f"{level} is not a niveau of resource {p.resource.id!r} "
            f"(resource niveaux: {', '.join(made_for)})",
        )
        for i, level in enumerate(p.population.levels)
        if level not in made_for
    ]


def _check_design(p: Protocol) -> list[Finding]:
    design, periods = p.design, p.periods
    names = [a.name for a in p.arms]
    if design.type == "parallel":
        if design.rollout:
            return [
                Finding(
                    ("design", "rollout"),
                    "a parallel design has no roll-out; use `type: waitlist` or `type: staggered`",
                )
            ]
        return []
    found = []
    for i, step in enumerate(design.rollout):
        if step.arm not in names:
            found.append(
                Finding(
                    ("design", "rollout", i, "arm"),
                    f"unknown arm {step.arm!r}{did_you_mean(step.arm, names)}",
                )
            )
    found += _duplicates(("design", "rollout"), [s.arm for s in design.rollout], "arm")
    starts = {s.arm: (i, s.starts) for i, s in enumerate(design.rollout)}
    control = p.control_arm.name
    endline = periods.endline()
    if control not in starts:
        found.append(
            Finding(
                ("design", "rollout"),
                f"the control arm {control!r} must appear in the "
                "roll-out with the date it receives the resource (after the endline)",
            )
        )
    else:
        i, starts_on = starts[control]
        if starts_on <= endline:
            found.append(
                Finding(
                    ("design", "rollout", i, "starts"),
                    f"the control arm starts on {starts_on}, before the endline "
                    f"measure ends ({endline}): the comparison would be contaminated",
                )
            )
    if design.type == "staggered":
        missing = [n for n in names if n not in starts]
        if missing:
            found.append(
                Finding(
                    ("design", "rollout"),
                    "a staggered roll-out gives a start date to "
                    f"every arm; missing: {', '.join(missing)}",
                )
            )
        previous: date | None = None
        for i, step in enumerate(design.rollout):
            if previous is not None and step.starts <= previous:
                found.append(
                    Finding(
                        ("design", "rollout", i, "starts"),
                        f"waves start in order: {step.starts} is not after {previous}",
                    )
                )
            previous = step.starts
            if step.arm != control and not (
                periods.intervention.start <= step.starts <= periods.intervention.end
            ):
                found.append(
                    Finding(
                        ("design", "rollout", i, "starts"),
                        f"{step.starts} is outside the intervention period "
                        f"({periods.intervention.start} to {periods.intervention.end})",
                    )
                )
    return found


def _check_enrollment(p: Protocol) -> list[Finding]:
    window = p.enrollment
    if window is None or window.closes < p.periods.intervention.start:
        return []
    return [
        Finding(
            ("enrollment", "closes"),
            f"enrollment closes on {window.closes}, not before the "
            f"intervention starts ({p.periods.intervention.start}): units must be "
            "randomised before they receive anything",
        )
    ]


def _check_hypotheses(p: Protocol) -> list[Finding]:
    outcomes = {o.id: o for o in p.outcomes}
    found = _duplicates(("hypotheses",), [h.id for h in p.hypotheses], "hypothesis")
    for i, h in enumerate(p.hypotheses):
        if h.outcome not in outcomes:
            found.append(
                Finding(
                    ("hypotheses", i, "outcome"),
                    f"unknown outcome {h.outcome!r}{did_you_mean(h.outcome, outcomes)}",
                )
            )
        elif h.confirmatory and not outcomes[h.outcome].primary:
            found.append(
                Finding(
                    ("hypotheses", i, "confirmatory"),
                    f"a confirmatory hypothesis is about the primary outcome; "
                    f"{h.outcome!r} is secondary",
                )
            )
    return found


def _check_outcome_baselines(p: Protocol) -> list[Finding]:
    found = []
    for i, outcome in enumerate(p.outcomes):
        if outcome.baseline is not None and p.periods.baseline is None:
            found.append(
                Finding(
                    ("outcomes", i, "baseline"),
                    f"pre-test {outcome.baseline!r} needs a baseline period "
                    "(periods.baseline) when it is measured",
                )
            )
    return found


def _check_analysis(p: Protocol) -> list[Finding]:
    if p.analysis.estimand == "CACE" and p.usage.compliance is None:
        return [
            Finding(
                ("analysis", "estimand"),
                "CACE needs a compliance rule: declare usage.compliance.min_active_minutes",
            )
        ]
    return []


def _check_power(p: Protocol) -> list[Finding]:
    power = p.power
    if power is None:
        return []
    found = []
    if p.population.unit == "learner" and power.pupils_per_unit != 1:
        found.append(
            Finding(
                ("power", "pupils_per_unit"),
                f"the unit is the learner: pupils_per_unit must be 1, got {power.pupils_per_unit}",
            )
        )
    if power.blocks is not None:
        if not p.randomisation.strata:
            found.append(
                Finding(
                    ("power", "blocks"),
                    "blocks are strata of the randomisation, but randomisation.strata is empty",
                )
            )
        if power.blocks * 2 > power.units:
            found.append(
                Finding(
                    ("power", "blocks"),
                    f"{power.units} units in {power.blocks} "
                    "blocks: each block needs at least 2 units",
                )
            )
    return found


def _at_day(p: Protocol, at: date | str) -> date | None:
    """The day ``at`` names (a période end resolved in the protocol's zones), ``None``
    when the school calendar has no dates for it (reported by :func:`_check_periode_ends`)."""
    from experiments.errors import CalendarError
    from experiments.protocol.calendar import periode_day

    try:
        return periode_day(at, intervention_start=p.periods.intervention.start,
                           academies=p.population.academies)
    except CalendarError:
        return None


def _final_at(p: Protocol) -> tuple[int, date] | None:
    finals = [(i, _at_day(p, s.at)) for i, s in enumerate(p.schedule)
              if s.analysis == "final" and s.at]
    if len(finals) != 1 or finals[0][1] is None:
        return None
    return finals[0][0], finals[0][1]


def _check_periode_ends(p: Protocol) -> list[Finding]:
    """Every période a schedule names has dates in the school calendar of its zones."""
    from experiments.errors import CalendarError
    from experiments.protocol.calendar import periode_day, periode_days

    found = []
    for i, entry in enumerate(p.schedule):
        try:
            if isinstance(entry.at, str):
                periode_day(entry.at, intervention_start=p.periods.intervention.start,
                            academies=p.population.academies)
            elif entry.every == "periode":
                periode_days(p.periods.intervention.start, p.periods.endline(),
                             p.population.academies)
        except CalendarError as exc:
            found.append(Finding(("schedule", i, "at" if entry.at else "every"), exc.reason))
    return found


def _check_schedule(p: Protocol) -> list[Finding]:
    finals = [i for i, s in enumerate(p.schedule) if s.analysis == "final"]
    if not finals:
        return [
            Finding(("schedule",), "no final analysis: add `- {analysis: final, at: YYYY-MM-DD}`")
        ]
    found = [
        Finding(("schedule", i, "analysis"), "only one final analysis is allowed")
        for i in finals[1:]
    ]
    final = _final_at(p)
    if final is None:
        return found
    i, at = final
    intervention = p.periods.intervention
    if at <= intervention.end:
        found.append(
            Finding(
                ("schedule", i, "at"),
                f"the final analysis ({at}) must come after the "
                f"end of the intervention ({intervention.end})",
            )
        )
    elif p.periods.followup is not None and at < p.periods.followup.end:
        found.append(
            Finding(
                ("schedule", i, "at"),
                f"the final analysis ({at}) must come after the "
                f"end of the follow-up measures ({p.periods.followup.end})",
            )
        )
    for j, entry in enumerate(p.schedule):
        interim = _at_day(p, entry.at) if entry.at is not None else None
        if (
            entry.analysis == "interim"
            and interim is not None
            and not (intervention.start < interim < at)
        ):
            found.append(
                Finding(
                    ("schedule", j, "at"),
                    f"an interim analysis ({interim}) must "
                    f"come after the intervention starts ({intervention.start}) and before "
                    f"the final analysis ({at})",
                )
            )
    return found


def _check_interim(p: Protocol) -> list[Finding]:
    """Confirmatory looks need the ``interim`` section (how alpha is spent), and their
    information fractions grow with their dates."""
    looks = sorted((s.at, s.information, i) for i, s in enumerate(p.schedule)
                   if s.confirmatory and s.at is not None and s.information is not None)
    found = []
    if looks and p.interim is None:
        found.append(Finding(("interim",), "confirmatory interim looks need "
                                           "`interim: {spending: obrien-fleming}` (how alpha "
                                           "is spent over the looks)"))
    if p.interim is not None and not looks:
        found.append(Finding(("interim",), "no schedule entry is `confirmatory: true`: "
                                           "alpha spending has no look to apply to"))
    for (day, fraction, _), (later, next_fraction, j) in zip(looks, looks[1:], strict=False):
        if day == later or next_fraction <= fraction:
            found.append(Finding(("schedule", j, "information"),
                                 f"information fractions must grow with the looks' dates "
                                 f"({fraction} on {day}, {next_fraction} on {later})"))
    return found


def _check_budget(p: Protocol) -> list[Finding]:
    """A budget item's ``arm`` is a treated arm of the protocol."""
    if p.budget is None:
        return []
    treated = [a.name for a in p.arms if not a.control]
    return [Finding(("budget", "items", i, "arm"), f"{item.arm!r} is not a treated arm "
                    f"(treated arms: {', '.join(treated)})")
            for i, item in enumerate(p.budget.items)
            if item.arm is not None and item.arm not in treated]


def _check_after_final(p: Protocol) -> list[Finding]:
    final = _final_at(p)
    if final is None:
        return []
    at = final[1]
    found = []
    if p.retention.keep_until < at:
        found.append(
            Finding(
                ("retention", "keep_until"),
                f"data would be purged ({p.retention.keep_until}) before the final analysis ({at})",
            )
        )
    if p.decision is not None and p.decision.at < at:
        found.append(
            Finding(
                ("decision", "at"),
                f"the decision ({p.decision.at}) must come after the final analysis ({at})",
            )
        )
    return found


def _check_territories(p: Protocol) -> list[Finding]:
    if p.territories is None:
        return []
    found = _duplicates(("territories", "academies"), p.territories.academies, "académie")
    found += _duplicates(("territories", "departements"), p.territories.departements,
                         "département")
    for i, academie in enumerate(p.territories.academies):
        if academie not in p.population.academies:
            found.append(Finding(("territories", "academies", i),
                                 f"{academie!r} is not in population.academies "
                                 f"({', '.join(p.population.academies)})"))
    return found


def _check_funders(p: Protocol) -> list[Finding]:
    names = [f.name for f in p.funders]
    found = _duplicates(("funders",), names, "funder")
    if not p.funders or p.budget is None:
        return found
    paid: dict[str, float] = {}
    for i, item in enumerate(p.budget.items):
        if item.funder not in names:
            found.append(Finding(("budget", "items", i, "funder"),
                                 f"{item.funder!r} is not one of the funders "
                                 f"({', '.join(names)}){did_you_mean(item.funder, names)}"))
        paid[item.funder] = paid.get(item.funder, 0.0) + item.amount
    for i, funder in enumerate(p.funders):
        costs = paid.get(funder.name, 0.0)
        if funder.amount + 1e-9 < costs:
            found.append(Finding(("funders", i, "amount"),
                                 f"{funder.name!r} commits {funder.amount:g} EUR but pays "
                                 f"{costs:g} EUR of budget items"))
    return found
