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
from typing import TYPE_CHECKING

from experiments.protocol.vocabulary import EDUCATION_PRIORITY, did_you_mean, unit_attributes

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
    """Metric ids are unique; logins and active use count different verbs."""
    found = _duplicates(("metrics",), [m.id for m in usage.metrics], "metric")
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
    return found


def check_schedule_entry(entry: ScheduleEntry) -> list[Finding]:
    """Each entry has ``at`` (a date), ``every`` (a rhythm) or ``cron`` (an expression);
    a final analysis has a date."""
    given = [entry.at is not None, entry.every is not None, entry.cron is not None]
    if sum(given) != 1:
        return [Finding((), "give exactly one of `at` (a date), `every` (week, month, period) "
                            "or `cron` (minute hour day month weekday)")]
    if entry.cron is not None:
        from croniter import croniter

        if len(entry.cron.split()) != 5 or not croniter.is_valid(entry.cron):
            return [Finding(("cron",), f"not a cron expression of 5 fields "
                                       f"(minute hour day month weekday), got {entry.cron!r}")]
    if entry.analysis == "final" and entry.at is None:
        where = "every" if entry.every is not None else "cron"
        return [Finding((where,), "the final analysis happens once: give `at: YYYY-MM-DD`")]
    return []


# --- across sections ---------------------------------------------------------------


def _not_attribute(name: str, unit: str, attributes: Sequence[str]) -> str:
    return (
        f"{name!r} is not an attribute of a {unit}{did_you_mean(name, attributes)} "
        f"(attributes: {', '.join(attributes)}; declare others in population.attributes)"
    )


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
        *_check_analysis(protocol),
        *_check_power(protocol),
        *_check_schedule(protocol),
        *_check_after_final(protocol),
        *_check_territories(protocol),
        *_check_funders(protocol),
    ]


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


def _final_at(p: Protocol) -> tuple[int, date] | None:
    finals = [(i, s.at) for i, s in enumerate(p.schedule) if s.analysis == "final" and s.at]
    return finals[0] if len(finals) == 1 else None


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
        if (
            entry.analysis == "interim"
            and entry.at is not None
            and not (intervention.start < entry.at < at)
        ):
            found.append(
                Finding(
                    ("schedule", j, "at"),
                    f"an interim analysis ({entry.at}) must "
                    f"come after the intervention starts ({intervention.start}) and before "
                    f"the final analysis ({at})",
                )
            )
    return found


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
