"""Balance of the arms right after enrollment: counts, and standardized differences of
every declared unit attribute, rated against the What Works Clearinghouse thresholds.

The unit of the comparison is the unit of randomisation: the class, or the school when
schools are randomised (a school's pupils are summed, its attributes are those of its
classes, which enrollment keeps consistent within strata). Each treatment arm is compared
with the control arm:

- a numeric attribute (every value a number, like ``pupils``): Hedges' g,
  ``J (mean_t - mean_c) / pooled SD`` with ``J = 1 - 3 / (4N - 9)``;
- a categorical attribute: for each level, the Cox index
  ``J (logit p_t - logit p_c) / 1.65``; when a proportion is 0 or 1 the Cox index is
  undefined, and the report gives the difference of proportions instead, rated on the
  same thresholds only when both are equal (0) and otherwise not rated.

``|d| <= 0.05``: satisfied; ``<= 0.25``: satisfied with statistical adjustment; above: not
satisfied (WWC Standards Handbook v4.1, baseline equivalence). The formulas are those of
:mod:`analysis.balance`, which this module calls.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from sqlalchemy import Engine

from analysis.balance import Equivalence, classify_difference, cox_index, standardized_difference
from experiments.enrollment.assignments import (
    compared_attributes,
    enrolled_classes,
    enrolled_learners,
)
from experiments.enrollment.files import (
    EnrollmentDesign,
)

__all__ = [
    "ArmCount",
    "AttributeDifference",
    "BalanceReport",
    "BalanceUnit",
    "balance_report",
    "enrollment_balance",
    "learner_balance",
]


@dataclass(frozen=True)
class BalanceUnit:
    """One unit of randomisation: its arm, classes, pupils and attributes."""

    arm: str
    classes: int
    pupils: int
    attributes: Mapping[str, str]


@dataclass(frozen=True)
class ArmCount:
    """Units, classes and pupils of one arm."""

    arm: str
    units: int
    classes: int
    pupils: int


@dataclass(frozen=True)
class AttributeDifference:
    """Standardized difference of one attribute (or one level of it), one arm vs control.

    ``treatment`` and ``control`` are means (numeric) or proportions (a level);
    ``difference`` is Hedges' g or the Cox index, NaN when not estimable (then
    ``reason`` says why); ``equivalence`` is the WWC rating.
    """

    attribute: str
    level: str | None
    arm: str
    control_arm: str
    kind: Literal["hedges_g", "cox_index"]
    treatment: float
    control: float
    difference: float
    equivalence: Equivalence | None
    reason: str | None = None


@dataclass(frozen=True)
class BalanceReport:
    """Counts per arm and every standardized difference."""

    unit: str
    counts: list[ArmCount]
    differences: list[AttributeDifference]

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready fields (NaN becomes None)."""
        def number(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "unit": self.unit,
            "counts": [c.__dict__ for c in self.counts],
            "differences": [
                {**d.__dict__, "treatment": number(d.treatment), "control": number(d.control),
                 "difference": number(d.difference)}
                for d in self.differences
            ],
        }

    def lines(self) -> list[str]:
        """The report as text lines (English labels, French in parentheses)."""
        out = [f"Balance (unit: {self.unit})"]
        for c in self.counts:
            out.append(f"  {c.arm}: {c.units} units, {c.classes} classes (classes), "
                       f"{c.pupils} pupils (élèves)")
        for d in self.differences:
            name = d.attribute if d.level is None else f"{d.attribute}={d.level}"
            value = "n/a" if not math.isfinite(d.difference) else f"{d.difference:+.3f}"
            rating = d.equivalence or f"not rated: {d.reason}"
            out.append(f"  {name:32} {d.arm} vs {d.control_arm}: {d.kind} {value} "
                       f"({d.treatment:.3f} vs {d.control:.3f}) -> {rating}")
        return out


def _numeric(values: Sequence[str]) -> list[float] | None:
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return None
    return numbers if all(math.isfinite(x) for x in numbers) else None


def balance_report(
    units: Sequence[BalanceUnit],
    arms: Sequence[str],
    control: str,
    attributes: Sequence[str],
    *,
    unit: str = "class",
) -> BalanceReport:
    """Counts per arm and standardized differences of ``pupils`` and each attribute.

    Parameters
    ----------
    units
        The units of randomisation enrolled so far (withdrawn ones included: ITT).
    arms
        Arm names in protocol order; ``control`` is one of them.
    attributes
        Declared unit attributes to compare (besides ``pupils``, always compared).
    unit
        Name of the unit of randomisation, for the report.

    Returns
    -------
    BalanceReport

    Examples
    --------
    >>> units = [BalanceUnit("t", 1, n, {}) for n in (20, 22)]
    >>> units += [BalanceUnit("c", 1, n, {}) for n in (24, 26)]
    >>> report = balance_report(units, ["t", "c"], "c", [])
    >>> d = report.differences[0]
    >>> round(d.difference, 4)   # J = 1 - 3/(4*4 - 9) = 4/7; (21 - 25) / 1.4142
    -1.6162
    """
    by_arm = {arm: [u for u in units if u.arm == arm] for arm in arms}
    counts = [
        ArmCount(arm, len(members), sum(u.classes for u in members),
                 sum(u.pupils for u in members))
        for arm, members in by_arm.items()
    ]
    differences: list[AttributeDifference] = []
    control_units = by_arm[control]
    for arm in arms:
        if arm == control:
            continue
        treated = by_arm[arm]
        differences.append(_numeric_difference(
            "pupils", arm, control, [float(u.pupils) for u in treated],
            [float(u.pupils) for u in control_units],
        ))
        for attribute in attributes:
            t_values = [u.attributes[attribute] for u in treated]
            c_values = [u.attributes[attribute] for u in control_units]
            t_numbers, c_numbers = _numeric(t_values), _numeric(c_values)
            if t_numbers is not None and c_numbers is not None and (t_numbers or c_numbers):
                differences.append(_numeric_difference(attribute, arm, control, t_numbers,
                                                        c_numbers))
            else:
                differences += _level_differences(attribute, arm, control, t_values, c_values)
    return BalanceReport(unit, counts, differences)


def _numeric_difference(
    attribute: str, arm: str, control: str, treated: list[float], controls: list[float]
) -> AttributeDifference:
    g = standardized_difference(treated, controls) if treated and controls else math.nan
    mean_t = sum(treated) / len(treated) if treated else math.nan
    mean_c = sum(controls) / len(controls) if controls else math.nan
    reason = None
    if not math.isfinite(g):
        reason = "fewer than two units per arm or no variation"
    return AttributeDifference(attribute, None, arm, control, "hedges_g", mean_t, mean_c, g,
                               classify_difference(g), reason)


def _level_differences(
    attribute: str, arm: str, control: str, treated: list[str], controls: list[str]
) -> list[AttributeDifference]:
    found = []
    n_total = len(treated) + len(controls)
    for level in sorted(set(treated) | set(controls)):
        p_t = treated.count(level) / len(treated) if treated else math.nan
        p_c = controls.count(level) / len(controls) if controls else math.nan
        d = cox_index(p_t, p_c, n_total) if n_total > 2 else math.nan
        reason = None
        if not math.isfinite(d):
            if p_t == p_c:
                d = 0.0  # identical proportions (e.g. every unit REP): no difference at all
            else:
                reason = (
                    f"Cox index undefined (a proportion is 0 or 1); difference of proportions "
                    f"{p_t - p_c:+.3f}" if math.isfinite(p_t - p_c) else "an arm has no unit"
                )
        found.append(AttributeDifference(attribute, level, arm, control, "cox_index", p_t, p_c, d,
                                         classify_difference(d), reason))
    return found


def enrollment_balance(engine: Engine, design: EnrollmentDesign) -> BalanceReport:
    """Balance of the arms over every unit enrolled so far (withdrawn ones too: ITT).

    Compared attributes: ``pupils``, the declared unit attributes, and ``level`` and
    ``academie`` when the population has more than one.

    Examples
    --------
    >>> engine = fresh_registry()
    >>> design = core_design()
    >>> [c.units for c in enrollment_balance(engine, design).counts]
    [0, 0]
    """
    if design.unit == "learner":
        return learner_balance(engine, design)
    units: dict[str, BalanceUnit] = {}
    for c in enrolled_classes(engine, design.experiment_id):
        attributes = {**c.attributes, "level": c.level, "academie": c.academie}
        key = c.school_uai if design.unit == "school" else c.class_id
        known = units.get(key)
        units[key] = BalanceUnit(c.arm, 1, c.pupils, attributes) if known is None else (
            BalanceUnit(known.arm, known.classes + 1, known.pupils + c.pupils, known.attributes)
        )
    # A school mixes levels: its level is not an attribute of the unit.
    compared = compared_attributes(design, level=design.unit != "school")
    return balance_report(list(units.values()), design.arms, design.control, compared,
                          unit=design.unit)


def learner_balance(engine: Engine, design: EnrollmentDesign) -> BalanceReport:
    """Balance of the arms over every pupil enrolled so far (withdrawn ones too: ITT).

    Units are pupils: per arm, pupils and the classes they sit in; standardized
    differences of the declared attributes, and of ``level`` and ``academie`` when the
    population has more than one (a head count is not compared: each unit is one pupil).

    Examples
    --------
    >>> from experiments.protocol.language import load_protocol
    >>> engine = fresh_registry()
    >>> design = EnrollmentDesign.from_protocol(
    ...     load_protocol("tests/data/enrollment/learner-protocol.yaml"))
    >>> [(c.arm, c.units) for c in learner_balance(engine, design).counts]
    [('lectio', 0), ('usual', 0)]
    """
    pupils = enrolled_learners(engine, design.experiment_id)
    units = [
        BalanceUnit(p.arm, 0, 1, {**p.attributes, "level": p.level, "academie": p.academie})
        for p in pupils
    ]
    compared = compared_attributes(design, level=True)
    report = balance_report(units, design.arms, design.control, compared, unit="learner")
    classes = Counter(arm for arm, _ in {(p.arm, p.class_id) for p in pupils})
    return BalanceReport(
        report.unit,
        [replace(c, classes=classes[c.arm]) for c in report.counts],
        [d for d in report.differences if d.attribute != "pupils"],
    )
