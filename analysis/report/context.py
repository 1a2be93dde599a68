"""What an impact report needs beyond the results JSON: the run's record and weekly usage.

The results JSON (:mod:`analysis.results`) carries the effects and the checks. The report
also shows where the numbers come from (protocol version and hash, amendments, deviations,
data watermark, software versions) and how usage evolved week by week, which the results
do not hold. :class:`ReportContext` carries those; every field is optional, and a report
without context says what it does not know rather than inventing it.

:func:`usage_context_from_files` derives the usage funnel and the weekly active use per
arm from the offline files (units and usage CSVs, docs/architecture.md), aggregated by arm: nothing
per class or per pupil leaves this module (R12, R13), and cells of fewer than 10 pupils
are suppressed.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.suppression import suppress_count
from analysis.usage import UsageLevels

__all__ = [
    "Amendment",
    "ArmFunnel",
    "ReportContext",
    "WeeklyUsage",
    "amendments_from_versions",
    "software_versions",
    "usage_context_from_daily",
    "usage_context_from_files",
    "usage_context_from_frames",
]


@dataclass(frozen=True)
class Amendment:
    """A registered change of the protocol (from the registry's versions)."""

    version: int
    recorded_at: str
    reason: str | None = None
    changed_fields: tuple[str, ...] = ()
    kind: str = "amendment"
    """``amendment`` (with its reason) or ``update`` (a re-registration that changed
    fields outside the locked design, such as periods or the schedule: no reason)."""


@dataclass(frozen=True)
class WeeklyUsage:
    """Pupils of one arm with active use in one week (``None``: a cell under 10)."""

    arm: str
    week: str
    active_learners: int | None
    share_active: float | None


@dataclass(frozen=True)
class ArmFunnel:
    """Usage funnel of one arm: units enrolled → units with use → pupils with use.

    ``units_*`` count classes (or schools), never pupils; pupil counts under 10 are None.
    ``learners_logged_in`` is only known when login events are available (``None``
    otherwise: the offline usage file holds active minutes, not logins).
    """

    arm: str
    units_enrolled: int
    units_activated: int
    learners_on_record: int | None
    learners_logged_in: int | None
    learners_active: int | None
    learners_randomised: int | None = None
    """Pupils of the arm's units: the denominator of the weekly shares (see
    :func:`usage_context_from_files`); None when unknown."""


@dataclass(frozen=True)
class ReportContext:
    """Inputs of the report beyond :class:`~analysis.results.AnalysisResults`.

    Parameters
    ----------
    protocol_version, protocol_sha256
        The registered version the run used (the results carry the hash too).
    amendments
        Registered amendments, oldest first.
    deviations
        Deviations from the protocol, in words (already in the report's language).
    watermark
        The data watermark: e.g. ``stored_events``, ``latest_event_at``, offsets.
    software
        Package versions (default: :func:`software_versions` at render time).
    funnel, weekly_usage
        From :func:`usage_context_from_files` or the experiment store.
    generated_at
        When the run happened (ISO 8601); not set, the report shows no date.
    unobserved
        What the data could not observe, in words (R22), added to the standard notes.
    periode
        (période, school year) the run closes, when the protocol schedules it in périodes
        (``every: periode``, ``at: fin-periode-N``); the report says so.
    """

    protocol_version: int | None = None
    protocol_sha256: str | None = None
    amendments: tuple[Amendment, ...] = ()
    deviations: tuple[str, ...] = ()
    watermark: Mapping[str, Any] = field(default_factory=dict)
    software: Mapping[str, str] = field(default_factory=dict)
    funnel: tuple[ArmFunnel, ...] = ()
    weekly_usage: tuple[WeeklyUsage, ...] = ()
    generated_at: str | None = None
    unobserved: tuple[str, ...] = ()
    periode: tuple[int, str] | None = None
    waves: tuple[Mapping[str, Any], ...] = ()
    """The primary outcome's effect at each named wave (cohorts over school years:
    ``experiments.runs.waves``), one mapping per wave × contrast."""
    usage_levels: UsageLevels | None = None
    """The three levels of use and the GAR funnel per arm (:func:`analysis.usage.
    usage_levels`); None: not computed (the report says so)."""
    questionnaires: tuple[Mapping[str, Any], ...] = ()


def amendments_from_versions(versions: Iterable[Any], up_to: int | None = None
                             ) -> tuple[Amendment, ...]:
    """The amendments and updates among a protocol's registered versions
    (``experiments.registry`` ``VersionRecord`` objects: ``version``, ``kind``, ``reason``,
    ``changed_fields``, ``recorded_at``), up to the version a run used: every change since
    registration, which « Écarts au protocole » lists.

    Examples
    --------
    >>> from types import SimpleNamespace as V
    >>> from datetime import datetime, UTC
    >>> at = datetime(2027, 10, 2, 9, 0, tzinfo=UTC)
    >>> (a,) = amendments_from_versions([V(version=1, kind="registration", reason=None,
    ...     changed_fields=(), recorded_at=at), V(version=2, kind="amendment",
    ...     reason="fenêtre prolongée", changed_fields=("enrollment.closes",), recorded_at=at)])
    >>> a.version, a.recorded_at, a.changed_fields
    (2, '2027-10-02', ('enrollment.closes',))
    """
    out = []
    for v in versions:
        if v.kind not in ("amendment", "update") or (up_to is not None and v.version > up_to):
            continue
        at = v.recorded_at
        out.append(Amendment(int(v.version), at.date().isoformat() if hasattr(at, "date")
                             else str(at), v.reason, tuple(v.changed_fields or ()),
                             str(v.kind)))
    return tuple(sorted(out, key=lambda a: a.version))


def software_versions() -> dict[str, str]:
    """Versions of Python and of the packages the numbers and the report depend on, as a
    run record and a report's appendix name them (a package not installed is left out).

    Examples
    --------
    >>> {"python", "numpy", "scipy", "statsmodels"} <= set(software_versions())
    True
    """
    out = {"python": platform.python_version()}
    for name in ("preuve", "numpy", "scipy", "statsmodels", "pandas", "matplotlib", "jinja2"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def usage_context_from_files(units: Path, usage: Path, outcomes: Path | None = None,
                             *, arms: Sequence[str] | None = None) -> ReportContext:
    """Funnel and weekly active use per arm from the offline files.

    Parameters
    ----------
    units, usage, outcomes : Path
        The offline CSV files (docs/architecture.md). ``outcomes`` gives the pupils on
        record per arm (the denominator of the weekly share); without it the share is not computed.
    arms : sequence of str, optional
        Order of the arms in the output (default: as first met in the units file).

    Returns
    -------
    ReportContext
        With ``funnel`` and ``weekly_usage`` set, aggregated by arm only.

    Notes
    -----
    The funnel is nested by construction, each step a subset of the one before, over one
    set of pupils per arm: the **pupils followed** (``learners_on_record``) are the pupils
    of the arm's units with a score or a usage row; the **active** pupils are those of
    them with active minutes. The arm's **randomised pupils** (``learners_randomised``,
    the weekly chart's denominator) are, unit by unit, the pupils the units file declares
    (``pupils``, the enrollment's count) or the pupils followed in the unit when more
    joined it; without a ``pupils`` column, the pupils followed. So every weekly share
    lies in [0, 1].
    """
    unit_frame = pd.read_csv(units, dtype=str, keep_default_na=False)
    unit_frame.columns = [str(c).strip().lstrip("\ufeff") for c in unit_frame.columns]
    # Categories: a usage file of a million pupils over a school year has tens of millions
    # of rows; only four columns are read, ids as categories.
    rows = pd.read_csv(usage, encoding="utf-8-sig",
                       usecols=["learner_id", "unit_id", "week", "active_minutes"],
                       dtype={"learner_id": "category", "unit_id": "category",
                              "week": "category", "active_minutes": str})
    return usage_context_from_frames(unit_frame, rows, _learners_of(outcomes), arms=arms)


def usage_context_from_frames(unit_frame: pd.DataFrame, rows: pd.DataFrame,
                              scored: pd.DataFrame | None = None, *,
                              arms: Sequence[str] | None = None) -> ReportContext:
    """:func:`usage_context_from_files` on the files' content already in memory: the
    units (every column as text), the usage rows (``learner_id``, ``unit_id``, ``week``,
    ``active_minutes``) and the (``learner_id``, ``unit_id``) of the outcome records.

    A scheduled run reads the store once and passes these (:mod:`experiments.runs`).
    """
    arm_of = dict(zip(unit_frame["unit_id"], unit_frame["arm"], strict=True))
    order = list(arms) if arms is not None else list(dict.fromkeys(unit_frame["arm"]))
    all_usage = rows
    rows = rows[pd.to_numeric(rows["active_minutes"], errors="coerce").fillna(0) > 0]
    rows = rows.assign(week=rows["week"].astype(str))
    # Pupils followed: with a score or a usage row, each counted in the first unit it is
    # met in (outcomes first), and only in units of the units file.
    followed = [all_usage[["learner_id", "unit_id"]].astype(str)]
    if scored is not None:
        followed.insert(0, scored)
    pupils = pd.concat(followed, ignore_index=True).drop_duplicates("learner_id")
    pupils = pupils[pupils["unit_id"].isin(list(arm_of))]
    unit_of = dict(zip(pupils["learner_id"], pupils["unit_id"], strict=True))
    pupils = pupils.assign(arm=pupils["unit_id"].map(arm_of))
    # Active use counts for a followed pupil, in its own unit's arm.
    rows = rows[rows["learner_id"].astype(str).isin(unit_of)]
    rows = rows.assign(arm=rows["learner_id"].astype(str).map(unit_of).map(arm_of),
                       unit_id=rows["learner_id"].astype(str).map(unit_of))
    known = pupils.groupby("unit_id")["learner_id"].nunique().to_dict()
    declared = _declared_pupils(unit_frame)
    funnel = []
    randomised: dict[str, int] = {}
    for arm in order:
        mine = rows[rows["arm"] == arm]
        units_of_arm = unit_frame.loc[unit_frame["arm"] == arm, "unit_id"]
        randomised[arm] = int(sum(max(declared.get(u, 0), known.get(u, 0))
                                  for u in units_of_arm))
        funnel.append(ArmFunnel(
            arm=arm,
            units_enrolled=int(units_of_arm.size),
            units_activated=int(mine["unit_id"].nunique()),
            learners_on_record=suppress_count(int((pupils["arm"] == arm).sum())),
            learners_logged_in=None,
            learners_active=suppress_count(int(mine["learner_id"].nunique())),
            learners_randomised=suppress_count(randomised[arm]),
        ))
    weeks = sorted(rows["week"].unique(), key=_week_key)
    weekly = []
    for arm in order:
        mine = rows[rows["arm"] == arm]
        counts = mine.groupby("week")["learner_id"].nunique().to_dict()
        total = randomised[arm]
        for week in weeks:
            shown = suppress_count(int(counts.get(week, 0)))
            share = shown / total if shown is not None and total else None
            weekly.append(WeeklyUsage(arm, str(week), shown, share))
    return ReportContext(funnel=tuple(funnel), weekly_usage=tuple(weekly))


def _learners_of(outcomes: Path | None) -> pd.DataFrame | None:
    """(learner_id, unit_id) of the outcome records, or None without the file."""
    if outcomes is None:
        return None
    return pd.read_csv(outcomes, dtype=str, keep_default_na=False,
                       usecols=["learner_id", "unit_id"])


def _declared_pupils(unit_frame: pd.DataFrame) -> dict[str, int]:
    """Pupils per unit as the units file declares them (``pupils``), if it does."""
    if "pupils" not in unit_frame.columns:
        return {}
    counts = pd.to_numeric(unit_frame["pupils"], errors="coerce").fillna(0).clip(lower=0)
    return dict(zip(unit_frame["unit_id"], counts.astype(int), strict=True))


def usage_context_from_daily(daily: pd.DataFrame, units_enrolled: Mapping[str, int],
                             arms: Sequence[str]) -> ReportContext:
    """Funnel (with logins) and weekly active use per arm from a store's daily usage.

    Parameters
    ----------
    daily : DataFrame
        Rows of the experiment store's ``daily_usage`` table (``experiments.store``):
        ``learner_key``, ``day``, ``class_id``, ``arm``, ``sessions``, ``events``,
        ``active_seconds``.
    units_enrolled : mapping
        Units enrolled per arm (from the enrollments).
    arms : sequence of str
        The protocol's arms, in order.

    Returns
    -------
    ReportContext
        ``funnel`` tells pupils who logged in (any event: *utilisation*) from pupils with
        active use (*usage*, R6); weeks are ISO weeks (``2027-W39``). Pupil counts under 10
        are suppressed; no class is named. The weekly share is over the arm's pupils seen
        in the store (the store does not know pupils who never logged in).

    Examples
    --------
    >>> rows = pd.DataFrame({"learner_key": [f"k{i}" for i in range(12)],
    ...     "day": ["2027-09-27"] * 12, "class_id": ["c1"] * 12, "arm": ["a"] * 12,
    ...     "sessions": [1] * 12, "events": [2] * 12, "active_seconds": [60.0] * 11 + [0.0]})
    >>> c = usage_context_from_daily(rows, {"a": 1, "b": 1}, ["a", "b"])
    >>> c.funnel[0].learners_logged_in, c.funnel[0].learners_active, c.weekly_usage[0].week
    (12, 11, '2027-W39')
    """
    frame = daily.assign(day=pd.to_datetime(daily["day"]))
    iso = frame["day"].dt.isocalendar()
    frame = frame.assign(week=iso["year"].astype(str) + "-W" + iso["week"].astype(str)
                         .str.zfill(2), active=frame["active_seconds"] > 0)
    active = frame[frame["active"]]
    funnel = []
    for arm in arms:
        mine, mine_active = frame[frame["arm"] == arm], active[active["arm"] == arm]
        funnel.append(ArmFunnel(
            arm=arm, units_enrolled=int(units_enrolled.get(arm, 0)),
            units_activated=int(mine_active["class_id"].nunique()),
            learners_on_record=None,
            learners_logged_in=suppress_count(int(mine["learner_key"].nunique())),
            learners_active=suppress_count(int(mine_active["learner_key"].nunique()))))
    weeks = sorted(frame["week"].unique())
    weekly = []
    for arm in arms:
        counts = active[active["arm"] == arm].groupby("week")["learner_key"].nunique().to_dict()
        seen = int(frame.loc[frame["arm"] == arm, "learner_key"].nunique())
        for week in weeks:
            shown = suppress_count(int(counts.get(week, 0)))
            weekly.append(WeeklyUsage(arm, str(week), shown,
                                      shown / seen if shown is not None and seen else None))
    return ReportContext(funnel=tuple(funnel), weekly_usage=tuple(weekly))


def _week_key(week: str) -> tuple[int, float | str]:
    """Numeric weeks in numeric order, other labels (ISO weeks…) in text order."""
    try:
        return (0, float(week))
    except ValueError:
        return (1, week)
