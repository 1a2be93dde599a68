"""Inputs of an analysis: the plan taken from the protocol, and the offline CSV files.

Raw input is converted once, here, at the edge (gbstats ``process_data_dict``): the files
of DESIGN.md "Offline analysis files" become typed tables, and every problem is an
:class:`~analysis.errors.InputError` carrying ``path``, ``line``, ``field`` and the value.

Line numbers count the header as line 1, so data row ``i`` (0-based) is line ``i + 2``;
they assume no quoted field spans several lines (the files are machine-written).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.errors import InputError
from analysis.settings import (
    ClusterCorrection,
    Estimand,
    Model,
    MultipleComparisons,
    UnitLevel,
    check_option,
)

__all__ = [
    "AnalysisPlan",
    "OutcomeSpec",
    "OutcomeTable",
    "UnitTable",
    "UsageTable",
    "plan_from_protocol",
    "read_outcomes",
    "read_units",
    "read_usage",
]

WAVES = ("baseline", "endline")


@dataclass(frozen=True)
class OutcomeSpec:
    """One declared outcome: ``id`` is the ``measure`` of the outcome records."""

    id: str
    primary: bool
    baseline: str | None = None


@dataclass(frozen=True)
class AnalysisPlan:
    """What the estimators need from a protocol, and nothing else.

    Examples
    --------
    >>> plan = AnalysisPlan(
    ...     experiment="demo", protocol_sha256="0" * 64, unit="class",
    ...     arms=("lectio", "usual"), control="usual", allocation=(1.0, 1.0),
    ...     outcomes=(OutcomeSpec("fluence", True, "fluence"),),
    ... )
    >>> plan.treatment_arms
    ('lectio',)
    """

    experiment: str
    protocol_sha256: str
    unit: UnitLevel
    arms: tuple[str, ...]
    control: str
    allocation: tuple[float, ...]
    outcomes: tuple[OutcomeSpec, ...]
    strata: tuple[str, ...] = ()
    estimands: tuple[Estimand, ...] = ("ITT",)
    model: Model = "ancova"
    covariates: tuple[str, ...] = ()
    alpha: float = 0.05
    multiple_comparisons: MultipleComparisons = "holm"
    subgroups: tuple[str, ...] = ()
    min_active_minutes: float | None = None
    school: str | None = "school_uai"
    """Units-file column naming the school of a class (nesting level of ``mixed``)."""
    cluster_correction: ClusterCorrection = "cr1-strata"
    """Small-sample factor of the cluster-robust errors (see ``analysis/_ols.py``)."""

    def __post_init__(self) -> None:
        check_option(self.unit, UnitLevel, "population.unit")
        check_option(self.model, Model, "analysis.model")
        check_option(self.cluster_correction, ClusterCorrection, "cluster_correction")
        check_option(self.multiple_comparisons, MultipleComparisons,
                     "analysis.multiple_comparisons")
        for estimand in self.estimands:
            check_option(estimand, Estimand, "analysis.estimand")
        if self.control not in self.arms:
            raise ValueError(f"control arm {self.control!r} is not one of {list(self.arms)}")
        if len(self.allocation) != len(self.arms):
            raise ValueError("allocation: one weight per arm is needed")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"analysis.alpha: must be in (0, 1), got {self.alpha}")

    @property
    def treatment_arms(self) -> tuple[str, ...]:
        """Arms other than the control, in protocol order (one contrast each)."""
        return tuple(a for a in self.arms if a != self.control)

    @property
    def clustered(self) -> bool:
        """True when units of randomisation are classes or schools."""
        return self.unit != "learner"


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute or mapping key ``name`` of ``obj`` (protocol sections may be either)."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def plan_from_protocol(protocol: Any) -> AnalysisPlan:
    """Build the :class:`AnalysisPlan` of a loaded protocol.

    Parameters
    ----------
    protocol : experiments.protocol.Protocol
        As returned by ``experiments.protocol.load_protocol``; its attributes are named
        like the YAML keys of DESIGN.md (``protocol.arms[i].control`` …).

    Returns
    -------
    AnalysisPlan
    """
    arms = list(_get(protocol, "arms", []))
    names = tuple(str(_get(a, "name")) for a in arms)
    controls = [str(_get(a, "name")) for a in arms if _get(a, "control", False)]
    analysis = _get(protocol, "analysis")
    estimand = str(_get(analysis, "estimand", "ITT") or "ITT")
    compliance = _get(_get(protocol, "usage"), "compliance")
    minutes = _get(compliance, "min_active_minutes")
    estimands: tuple[Any, ...] = ("ITT",)
    if estimand.upper() == "CACE" or minutes is not None:
        estimands = ("ITT", "CACE")
    outcomes = tuple(
        OutcomeSpec(
            id=str(_get(o, "id")),
            primary=bool(_get(o, "primary", False)),
            baseline=None if _get(o, "baseline") is None else str(_get(o, "baseline")),
        )
        for o in _get(protocol, "outcomes", [])
    )
    return AnalysisPlan(
        experiment=str(_get(protocol, "id")),
        protocol_sha256=str(_get(protocol, "sha256", "")),
        unit=str(_get(_get(protocol, "population"), "unit", "class")),  # type: ignore[arg-type]
        arms=names,
        control=controls[0] if controls else names[-1],
        allocation=tuple(float(_get(a, "allocation", 1.0)) for a in arms),
        outcomes=outcomes,
        strata=tuple(str(s) for s in (_get(_get(protocol, "randomisation"), "strata") or [])),
        estimands=estimands,
        model=str(_get(analysis, "model", "ancova") or "ancova"),  # type: ignore[arg-type]
        covariates=tuple(str(c) for c in (_get(analysis, "covariates") or [])),
        alpha=float(_get(analysis, "alpha", 0.05) or 0.05),
        multiple_comparisons=str(  # type: ignore[arg-type]
            _get(analysis, "multiple_comparisons", "holm") or "holm"
        ),
        subgroups=tuple(str(s) for s in (_get(analysis, "subgroups") or [])),
        min_active_minutes=None if minutes is None else float(minutes),
    )


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class UnitTable:
    """The units file: one row per unit of randomisation.

    ``frame`` has ``unit_id`` (str), ``arm`` (str) and the unit attributes as read (str);
    ``arm_code`` is the index of each unit's arm in ``plan.arms``.
    """

    path: str
    frame: pd.DataFrame
    arm_code: npt.NDArray[np.int8]

    @property
    def n_units(self) -> int:
        """Number of units."""
        return len(self.frame)


@dataclass(frozen=True)
class OutcomeTable:
    """The outcomes file (long format), with codes for fast grouping.

    ``learner`` indexes ``learner_ids``; ``unit`` indexes the rows of the units table;
    ``extra`` holds the columns beyond the five of the contract (learner attributes).
    """

    path: str
    learner_ids: pd.Index
    learner: npt.NDArray[np.int64]
    unit: npt.NDArray[np.int64]
    measure: pd.Categorical
    is_endline: npt.NDArray[np.bool_]
    score: npt.NDArray[np.float64]
    learner_unit: npt.NDArray[np.int64]
    extra: pd.DataFrame = field(repr=False)

    @property
    def n_learners(self) -> int:
        """Number of distinct learners in the file."""
        return len(self.learner_ids)


@dataclass(frozen=True)
class UsageTable:
    """The usage file: active minutes per learner, summed over weeks.

    ``minutes`` is indexed like :attr:`OutcomeTable.learner_ids`; learners absent from the
    usage file have 0 minutes. ``weeks`` counts distinct weeks with usage per learner.
    """

    path: str
    minutes: npt.NDArray[np.float64]
    weeks: npt.NDArray[np.int64]
    n_rows: int


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """Read a UTF-8 CSV as strings; errors name the path and line."""
    spath = str(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, engine="pyarrow")
    except FileNotFoundError:
        raise InputError("file not found", path=spath, line=0, field="file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 ({exc.reason})", path=spath, line=0, field="file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError):
        line, message = _locate_csv_problem(path)
        raise InputError(message, path=spath, line=line, field="row") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(
            f"missing column(s) {missing}; header is {list(frame.columns)}",
            path=spath, line=1, field="header",
        )
    return frame


def _locate_csv_problem(path: Path) -> tuple[int, str]:
    """Find the first malformed row with the ``csv`` module, for the error message."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                return 1, "empty file: a header row is expected"
            for number, row in enumerate(reader, start=2):
                if len(row) != len(header):
                    return number, f"expected {len(header)} fields, got {len(row)}"
    except UnicodeDecodeError as exc:
        return 0, f"not UTF-8 ({exc.reason})"
    except csv.Error as exc:
        return 0, f"malformed CSV ({exc})"
    return 0, "malformed CSV"


def _fail_at(path: str, rows: npt.NDArray[np.bool_], fieldname: str, values: pd.Series,
             message: str) -> None:
    """Raise an InputError at the first row where ``rows`` is true."""
    if rows.any():
        i = int(np.flatnonzero(rows)[0])
        raise InputError(f"{message}, got {values.iloc[i]!r}", path=path, line=i + 2,
                         field=fieldname)


def read_units(path: Path, plan: AnalysisPlan) -> UnitTable:
    """Read and check the units file (``unit_id,arm`` and the attributes the plan names).

    Raises
    ------
    InputError
        Missing column, empty or duplicated ``unit_id``, unknown arm.
    """
    named = tuple(dict.fromkeys(plan.strata + plan.subgroups))
    frame = _read_csv(path, ("unit_id", "arm") + named)
    spath = str(path)
    ids = frame["unit_id"].str.strip()
    _fail_at(spath, (ids == "").to_numpy(), "unit_id", ids, "must not be empty")
    _fail_at(spath, ids.duplicated().to_numpy(), "unit_id", ids, "duplicated unit")
    arm = frame["arm"].str.strip()
    known = arm.isin(plan.arms).to_numpy()
    _fail_at(spath, ~known, "arm", arm, f"must be one of {list(plan.arms)}")
    frame = frame.assign(unit_id=ids, arm=arm)
    codes = pd.Categorical(arm, categories=list(plan.arms)).codes.astype(np.int8)
    return UnitTable(path=spath, frame=frame.reset_index(drop=True), arm_code=codes)


def read_outcomes(path: Path, units: UnitTable) -> OutcomeTable:
    """Read and check the outcomes file (long format, waves ``baseline``/``endline``).

    An empty ``score`` is a missing score (the learner was not assessed); anything else
    that is not a finite number is an error.

    Raises
    ------
    InputError
        Missing column, unknown unit, bad wave, bad score, a learner in two units, or a
        (learner, measure, wave) given twice.
    """
    frame = _read_csv(path, ("learner_id", "unit_id", "measure", "wave", "score"))
    spath = str(path)
    learner_raw = frame["learner_id"]
    _fail_at(spath, (learner_raw == "").to_numpy(), "learner_id", learner_raw,
             "must not be empty")
    unit_index = pd.Index(units.frame["unit_id"])
    unit = unit_index.get_indexer(frame["unit_id"])
    _fail_at(spath, unit < 0, "unit_id", frame["unit_id"], "unknown unit (not in the units file)")
    wave = frame["wave"]
    is_endline = (wave == "endline").to_numpy()
    _fail_at(spath, ~(is_endline | (wave == "baseline").to_numpy()), "wave", wave,
             "must be 'baseline' or 'endline'")
    raw_score = frame["score"]
    score = pd.to_numeric(raw_score, errors="coerce").to_numpy(dtype=float, na_value=np.nan,
                                                             copy=True)
    blank = (raw_score.str.strip() == "").to_numpy()
    _fail_at(spath, ~blank & ~np.isfinite(score), "score", raw_score,
             "must be a finite number (or empty when not assessed)")
    score[blank] = np.nan
    measure = pd.Categorical(frame["measure"])
    _fail_at(spath, (frame["measure"] == "").to_numpy(), "measure", frame["measure"],
             "must not be empty")
    learner_codes, learner_ids = pd.factorize(learner_raw)
    learner = learner_codes.astype(np.int64)
    n_measures = max(len(measure.categories), 1)
    key = (learner * n_measures + measure.codes.astype(np.int64)) * 2 + is_endline
    dup = pd.Series(key).duplicated().to_numpy()
    _fail_at(spath, dup, "learner_id", learner_raw,
             "this learner already has a score for this measure and wave")
    learner_unit = np.full(len(learner_ids), -1, dtype=np.int64)
    learner_unit[learner] = unit
    moved = learner_unit[learner] != unit
    _fail_at(spath, moved, "unit_id", frame["unit_id"],
             "this learner appears in another unit earlier in the file")
    extras = [c for c in frame.columns
              if c not in ("learner_id", "unit_id", "measure", "wave", "score")]
    return OutcomeTable(
        path=spath,
        learner_ids=pd.Index(learner_ids),
        learner=learner,
        unit=unit.astype(np.int64),
        measure=measure,
        is_endline=is_endline,
        score=score,
        learner_unit=learner_unit,
        extra=frame[extras],
    )


def read_usage(path: Path, outcomes: OutcomeTable, units: UnitTable) -> UsageTable:
    """Read the usage file and sum active minutes per learner.

    Learners of the usage file who have no outcome record cannot enter any analysis and
    are ignored; a learner whose ``unit_id`` differs from the outcomes file is an error.

    Raises
    ------
    InputError
        Missing column, negative or non-numeric minutes, unknown unit, inconsistent unit.
    """
    frame = _read_csv(path, ("learner_id", "unit_id", "week", "active_minutes"))
    spath = str(path)
    minutes_raw = frame["active_minutes"]
    minutes = pd.to_numeric(minutes_raw, errors="coerce").to_numpy(dtype=float,
                                                                  na_value=np.nan)
    _fail_at(spath, ~np.isfinite(minutes) | (minutes < 0), "active_minutes", minutes_raw,
             "must be a number of minutes >= 0")
    unit_index = pd.Index(units.frame["unit_id"])
    unit = unit_index.get_indexer(frame["unit_id"])
    _fail_at(spath, unit < 0, "unit_id", frame["unit_id"], "unknown unit (not in the units file)")
    learner = outcomes.learner_ids.get_indexer(frame["learner_id"])
    known = learner >= 0
    mismatch = known & (outcomes.learner_unit[np.where(known, learner, 0)] != unit)
    _fail_at(spath, mismatch, "unit_id", frame["unit_id"],
             "this learner belongs to another unit in the outcomes file")
    n = outcomes.n_learners
    total = np.bincount(learner[known], weights=minutes[known], minlength=n)
    week_codes, week_values = pd.factorize(frame["week"])
    key = learner[known].astype(np.int64) * (len(week_values) + 1) + week_codes[known]
    first = ~pd.Series(key).duplicated().to_numpy()
    weeks = np.bincount(learner[known][first], minlength=n)
    return UsageTable(path=spath, minutes=total.astype(float), weeks=weeks.astype(np.int64),
                      n_rows=len(frame))

