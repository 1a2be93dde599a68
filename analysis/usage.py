"""Usage metrics from the usage file: how much each arm used the resource.

Per arm: learners with any active minute, mean and median active minutes per analysed
learner (learners without usage count as 0), mean active weeks, and the share of
learners meeting the protocol's compliance threshold. Every cell of fewer than 10 learners
is suppressed (its numbers are ``None``).

The three levels of use and the GAR funnel (:func:`usage_levels`), per arm, control arm
included (its exposure): **availability** (the resource assigned to the pupil in the GAR,
``resource_assigned``; the pupil's licence activated, ``licence_activated``),
**utilisation** (the resource opened: a login verb of the protocol, ``session_started``),
**usage** (active time over the intervention at least the protocol's threshold,
``usage.compliance.min_active_minutes``; any active minute without one). The funnel is
nested by definition: a pupil counts at a level when they reached it **and every level
above it**, so that assigned ≥ activated ≥ opened ≥ active in every arm. A level no pupil
of any arm reached (the resource does not send that verb) is *not observed*: shown as such
and left out of the nesting, rather than emptying every level below it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.inputs import AnalysisPlan, UsageTable
from analysis.sample import AnalysisSample
from analysis.suppression import is_suppressed, suppress_count

__all__ = [
    "LEVELS",
    "LEVEL_FILE_COLUMNS",
    "ArmLevels",
    "ArmUsage",
    "UsageLevels",
    "compliance",
    "summarise_usage",
    "usage_levels",
    "usage_levels_from_files",
    "usage_levels_from_frames",
]

LEVELS = ("assigned", "activated", "opened", "active")
"""The funnel's levels, top to bottom: availability (2), utilisation, usage."""

LEVEL_FILE_COLUMNS = ("learner_id", "unit_id", "assigned", "activated", "opened")
"""The levels file a scheduled run writes beside the offline files (``1``/``0`` flags)."""


@dataclass(frozen=True)
class ArmUsage:
    """Usage of one arm's analysed learners."""

    arm: str
    learners: int | None
    learners_with_usage: int | None
    mean_active_minutes: float | None
    median_active_minutes: float | None
    mean_active_weeks: float | None
    share_compliant: float | None


def compliance(plan: AnalysisPlan, usage: UsageTable, learner: npt.NDArray[np.int64]
               ) -> npt.NDArray[np.bool_]:
    """Whether each learner's active minutes over the file reach the protocol's threshold.

    The usage file is expected to cover the intervention period (docs/architecture.md: minutes per
    learner over the intervention); ``min_active_minutes`` is inclusive.
    """
    if plan.min_active_minutes is None:
        raise ValueError("the protocol declares no usage.compliance.min_active_minutes")
    return np.asarray(usage.minutes[learner] >= plan.min_active_minutes)


def summarise_usage(plan: AnalysisPlan, usage: UsageTable, sample: AnalysisSample
                    ) -> list[ArmUsage]:
    """Usage per arm over the learners of ``sample`` (the primary analysis sample)."""
    out: list[ArmUsage] = []
    for a, arm in enumerate(plan.arms):
        learners = sample.learner[sample.arm == a]
        n = int(learners.size)
        if n == 0:  # nobody analysed in the arm: counts are 0, averages do not exist
            out.append(ArmUsage(arm, 0, 0, None, None, None, None))
            continue
        if is_suppressed(n):
            out.append(ArmUsage(arm, None, None, None, None, None, None))
            continue
        minutes = usage.minutes[learners]
        share = math.nan
        if plan.min_active_minutes is not None:
            compliant = int(np.count_nonzero(compliance(plan, usage, learners)))
            # The share and n give the count: hide it when the count is a small cell.
            share = math.nan if is_suppressed(compliant) else compliant / n
        out.append(ArmUsage(
            arm=arm,
            learners=n,
            learners_with_usage=suppress_count(int(np.count_nonzero(minutes > 0))),
            mean_active_minutes=float(minutes.mean()),
            median_active_minutes=float(np.median(minutes)),
            mean_active_weeks=float(usage.weeks[learners].mean()),
            share_compliant=share if math.isfinite(share) else None,
        ))
    return out


@dataclass(frozen=True)
class ArmLevels:
    """The nested funnel of one arm: pupils at each of :data:`LEVELS` (``None``: a cell
    of 1 to 9 pupils, suppressed; also ``None`` for a level not observed)."""

    arm: str
    control: bool
    pupils_enrolled: int | None
    """Pupils of the arm's units as enrolled (the units' ``pupils``), for scale."""
    reached: tuple[int | None, ...]
    """Pupils at each level of :data:`LEVELS` and every observed level above it."""


@dataclass(frozen=True)
class UsageLevels:
    """The three levels of use per arm (see the module docstring)."""

    arms: tuple[ArmLevels, ...]
    observed: tuple[bool, ...]
    """Per level of :data:`LEVELS`: whether any pupil of any arm reached it."""
    threshold_minutes: float | None
    """Active minutes that make the usage level (None: any active minute)."""
    idle_timeout_s: float | None
    """The pause of the active-time rule (:mod:`analysis.sessions`), for the report."""


def usage_levels(
    unit_of: Mapping[str, str],
    arm_of_unit: Mapping[str, str],
    reached: Mapping[str, Collection[str]],
    active_minutes: Mapping[str, float],
    *,
    arms: Sequence[str],
    control: str | None,
    threshold_minutes: float | None,
    pupils_enrolled: Mapping[str, int] | None = None,
    idle_timeout_s: float | None = None,
) -> UsageLevels:
    """Pupils per arm at each level, nested (each level: reached it and every observed
    level above), suppressed under 10.

    Parameters
    ----------
    unit_of
        Each pupil's unit; a pupil's arm is their unit's (intention to treat).
    arm_of_unit
        Each unit's arm.
    reached
        For ``assigned``, ``activated`` and ``opened``: the pupils who reached it.
    active_minutes
        Each pupil's active minutes over the intervention.
    arms, control
        The protocol's arms in order, and its control arm.
    threshold_minutes
        The usage level: at least this many active minutes (None: more than 0).
    pupils_enrolled
        Pupils enrolled per arm (shown for scale; not a level).
    idle_timeout_s
        The active-time rule's pause, carried for the report.

    Examples
    --------
    >>> pupils = {f"p{i}": "u1" for i in range(30)}
    >>> levels = usage_levels(pupils, {"u1": "a"}, {
    ...     "assigned": [f"p{i}" for i in range(30)],
    ...     "activated": [f"p{i}" for i in range(25)],
    ...     "opened": [f"p{i}" for i in range(5, 30)]},  # p25-p29 opened, never activated
    ...     {f"p{i}": 60.0 for i in range(30)}, arms=["a"], control=None,
    ...     threshold_minutes=30)
    >>> levels.arms[0].reached  # opened and active: p5-p24 only
    (30, 25, 20, 20)
    """
    observed = tuple(bool(reached.get(level)) for level in LEVELS[:-1]) + (
        any(m > 0 for m in active_minutes.values()),)
    sets = [set(reached.get(level, ())) for level in LEVELS[:-1]]
    if threshold_minutes is None:
        sets.append({p for p, m in active_minutes.items() if m > 0})
    else:
        sets.append({p for p, m in active_minutes.items() if m >= threshold_minutes})
    counts = {arm: [0] * len(LEVELS) for arm in arms}
    for pupil, unit in unit_of.items():
        arm = arm_of_unit.get(unit)
        if arm not in counts:
            continue
        for k, members in enumerate(sets):
            if observed[k] and pupil not in members:
                break
            counts[arm][k] += 1
    enrolled = pupils_enrolled or {}
    out = tuple(
        ArmLevels(
            arm=arm, control=arm == control,
            pupils_enrolled=suppress_count(int(enrolled[arm])) if arm in enrolled else None,
            reached=tuple(suppress_count(n) if observed[k] else None
                          for k, n in enumerate(counts[arm])),
        )
        for arm in arms
    )
    return UsageLevels(out, observed, threshold_minutes, idle_timeout_s)


def usage_levels_from_files(
    units: Path, usage: Path, levels: Path | None, *, arms: Sequence[str],
    control: str | None, threshold_minutes: float | None, idle_timeout_s: float | None = None,
) -> UsageLevels:
    """:func:`usage_levels` from the offline units and usage files and, when a scheduled
    run wrote one, the levels file (:data:`LEVEL_FILE_COLUMNS`). Without it, availability
    and utilisation are not observed: the funnel has its usage level only.

    A pupil belongs to the unit the levels file gives, else the usage file's first.
    """
    unit_frame = pd.read_csv(units, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    rows = pd.read_csv(usage, encoding="utf-8-sig", dtype={"learner_id": str, "unit_id": str},
                       usecols=["learner_id", "unit_id", "active_minutes"])
    flags = (pd.read_csv(levels, dtype=str, keep_default_na=False, encoding="utf-8-sig")
             if levels is not None and levels.exists() else None)
    return usage_levels_from_frames(unit_frame, rows, flags, arms=arms, control=control,
                                    threshold_minutes=threshold_minutes,
                                    idle_timeout_s=idle_timeout_s)


def usage_levels_from_frames(
    unit_frame: pd.DataFrame, rows: pd.DataFrame, flags: pd.DataFrame | None, *,
    arms: Sequence[str], control: str | None, threshold_minutes: float | None,
    idle_timeout_s: float | None = None,
) -> UsageLevels:
    """:func:`usage_levels_from_files` on the files' content already in memory: the units
    (every column as text), the usage rows (``learner_id``, ``unit_id``,
    ``active_minutes``) and the levels (:data:`LEVEL_FILE_COLUMNS`, as text; None: none).

    A scheduled run reads the store once and passes these (:mod:`experiments.runs`).
    """
    arm_of_unit = dict(zip(unit_frame["unit_id"], unit_frame["arm"], strict=True))
    enrolled: dict[str, int] = {}
    if "pupils" in unit_frame.columns:
        pupils = pd.to_numeric(unit_frame["pupils"], errors="coerce").fillna(0).astype(int)
        enrolled = {str(k): int(v) for k, v in pupils.groupby(unit_frame["arm"]).sum().items()}
    minutes = pd.to_numeric(rows["active_minutes"], errors="coerce").fillna(0.0)
    active = {str(k): float(v) for k, v in minutes.groupby(rows["learner_id"]).sum().items()}
    unit_of: dict[str, str] = {}
    reached: dict[str, list[str]] = {level: [] for level in LEVELS[:-1]}
    if flags is not None:
        unit_of.update(zip(flags["learner_id"], flags["unit_id"], strict=True))
        for level in LEVELS[:-1]:
            reached[level] = flags.loc[flags[level] == "1", "learner_id"].tolist()
    for learner, unit in zip(rows["learner_id"], rows["unit_id"], strict=True):
        unit_of.setdefault(learner, unit)
    return usage_levels(unit_of, arm_of_unit, reached, active, arms=arms, control=control,
                        threshold_minutes=threshold_minutes, pupils_enrolled=enrolled,
                        idle_timeout_s=idle_timeout_s)
