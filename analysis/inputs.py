"""Inputs of an analysis: the plan taken from the protocol, and the offline CSV files.

Raw input is converted once, here, at the edge (gbstats ``process_data_dict``): the files
of docs/architecture.md "Offline analysis files" become typed tables, and every problem is an
:class:`~analysis.errors.InputError` carrying ``path``, ``line``, ``field`` and the value.

Line numbers count the header as line 1, so data row ``i`` (0-based) is line ``i + 2``;
they assume no quoted field spans several lines (the files are machine-written).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from analysis.errors import InputError
from analysis.options import (
    AttritionAssumption,
    ClusterCorrection,
    DesignType,
    Estimand,
    MixedDf,
    Model,
    MultipleComparisons,
    UnitLevel,
    check_option,
)

__all__ = [
    "AnalysisPlan",
    "DesignAssumptions",
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
_ISO_WEEK = re.compile(r"([0-9]{4})-W([0-9]{2})")
"""A usage file's week: ISO 8601, as experiments/runs/inputs.py writes it (2027-W40)."""
_MAX_MARKS = 100_000_000
"""Largest (learner, week) grid counted with a boolean array (100 MB) in :func:`read_usage`."""


@dataclass(frozen=True)
class OutcomeSpec:
    """One declared outcome: ``id`` is the ``measure`` of the outcome records."""

    id: str
    primary: bool
    baseline: str | None = None
    kind: str = "attainment"
    """``attainment``, ``attitude`` or ``other``: only attainment has months of progress."""


@dataclass(frozen=True)
class DesignAssumptions:
    """The protocol's ``power:`` section: the design's assumptions at randomisation."""

    icc: float = 0.0
    pupils_per_unit: int = 1
    r2_learner: float = 0.0
    r2_unit: float = 0.0
    power: float = 0.8
    blocks: int | None = None
    covariates: int | None = None
    two_tailed: bool = True


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
    mixed_df: MixedDf = "satterthwaite"
    """Degrees of freedom of the ``mixed`` model (``analysis/mixed.py``); not yet a key of
    the protocol language."""
    design: DesignType = "parallel"
    """``design.type`` of the protocol (DiD estimates for waitlist and staggered)."""
    cluster_correction: ClusterCorrection = "cr2"
    """Cluster-robust inference by unit (see :data:`analysis.options.ClusterCorrection`)."""
    attrition_assumption: AttritionAssumption = "cautious"
    """WWC attrition boundary (``analysis.attrition_boundary`` of the protocol)."""
    power: DesignAssumptions | None = None
    """The protocol's ``power:`` assumptions (the evidence rating's MDES at randomisation)."""
    developer_outcomes: tuple[str, ...] = ()
    """Outcomes whose scores come from the evaluated resource itself (the protocol's
    ``outcomes[].source``): measures designed by the developer, a threat to validity that
    reports flag and the evidence rating deducts (:mod:`analysis.report.rating`)."""

    def __post_init__(self) -> None:
        check_option(self.unit, UnitLevel, "population.unit")
        check_option(self.model, Model, "analysis.model")
        check_option(self.cluster_correction, ClusterCorrection, "cluster_correction")
        check_option(self.design, DesignType, "design.type")
        check_option(self.attrition_assumption, AttritionAssumption,
                     "analysis.attrition_boundary")
        check_option(self.mixed_df, MixedDf, "mixed_df")
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
    protocol : experiments.protocol.language.Protocol
        As returned by ``experiments.protocol.language.load_protocol``; its attributes are named
        like the YAML keys of docs/architecture.md (``protocol.arms[i].control`` …).

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
            kind=str(_get(o, "kind", "attainment")),
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
        cluster_correction=str(  # type: ignore[arg-type]
            _get(analysis, "cluster_correction", "cr2") or "cr2"
        ),
        min_active_minutes=None if minutes is None else float(minutes),
        design=str(_get(_get(protocol, "design"), "type", "parallel")),  # type: ignore[arg-type]
        developer_outcomes=tuple(str(_get(o, "id")) for o in _get(protocol, "outcomes", [])
                                 if _get(o, "source") is not None),
        attrition_assumption=str(  # type: ignore[arg-type]
            _get(analysis, "attrition_boundary", "cautious") or "cautious"),
        power=_design_assumptions(_get(protocol, "power")),
    )


def _design_assumptions(power: Any) -> DesignAssumptions | None:
    if power is None:
        return None
    blocks = _get(power, "blocks")
    covariates = _get(power, "covariates")
    return DesignAssumptions(
        icc=float(_get(power, "icc", 0.0) or 0.0),
        pupils_per_unit=int(_get(power, "pupils_per_unit", 1) or 1),
        r2_learner=float(_get(power, "r2_learner", 0.0) or 0.0),
        r2_unit=float(_get(power, "r2_unit", 0.0) or 0.0),
        power=float(_get(power, "power", 0.8) or 0.8),
        blocks=None if blocks is None else int(blocks),
        covariates=None if covariates is None else int(covariates),
        two_tailed=bool(_get(power, "two_tailed", True)),
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
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]  # Excel's BOM
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


def read_units(path: Path, plan: AnalysisPlan, *, frame: pd.DataFrame | None = None
               ) -> UnitTable:
    """Read and check the units file (``unit_id,arm`` and the attributes the plan names).

    ``frame``: the file's content already in memory (every column as text, as the file
    holds it), checked instead of parsing ``path`` again; errors still name ``path``.

    Raises
    ------
    InputError
        Missing column, empty or duplicated ``unit_id``, unknown arm.
    """
    named = tuple(dict.fromkeys(plan.strata + plan.subgroups))
    frame = (_read_csv(path, ("unit_id", "arm") + named) if frame is None
             else _in_memory(frame, path, ("unit_id", "arm") + named))
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


def _in_memory(frame: pd.DataFrame, path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """A units file's content given in memory, with the header checks of :func:`_read_csv`."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"missing column(s) {missing}; header is {list(frame.columns)}",
                         path=str(path), line=1, field="header")
    return frame


def _table_in_memory(table: pa.Table | None, path: Path, required: tuple[str, ...],
                     floats: tuple[str, ...]) -> pa.Table:
    """A file's content given in memory (``floats`` as finite float64 or null, the other
    columns as strings), or, when it is not given or holds anything else, the file parsed
    by :func:`_read_table` (whose reading names the offending line)."""
    if (table is None or any(c not in table.column_names for c in required)
            or not all(pa.types.is_floating(table.column(c).type)
                       and _finite_or_null(table.column(c)) for c in floats)):
        return _read_table(path, required, floats)
    return table


def _read_table(path: Path, required: tuple[str, ...], floats: tuple[str, ...] = ()
                ) -> pa.Table:
    """Read a large UTF-8 CSV with pyarrow: ``floats`` as float64 (empty → null), the other
    columns as strings.

    The numbers are parsed by pyarrow's multi-threaded reader, without a string column in
    between. When a ``floats`` column holds something that is not a plain number (text,
    spaces around a number…), or a number that is not finite (``nan``, ``inf``), the file
    is read again with every column as a string, so that the checks of the callers name
    the offending line and value exactly as written.
    """
    spath = str(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:  # tolerate Excel's BOM
            header = next(csv.reader(handle), None)
    except FileNotFoundError:
        raise InputError("file not found", path=spath, line=0, field="file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 ({exc.reason})", path=spath, line=0, field="file") from None
    if not header:
        raise InputError("empty file: a header row is expected", path=spath, line=1,
                         field="header")
    names = [c.strip() for c in header]
    missing = [c for c in required if c not in names]
    if missing:
        raise InputError(f"missing column(s) {missing}; header is {names}", path=spath,
                         line=1, field="header")
    typed = [name for name in floats if name in names]
    if typed:
        try:
            table = _parse_csv(path, names, typed)
        except pa.ArrowInvalid:
            pass  # a value that is not a plain number: read as text, the checks say where
        else:
            if all(_finite_or_null(table.column(name)) for name in typed):
                return table
    try:
        return _parse_csv(path, names, [])
    except (pa.ArrowInvalid, OSError):
        line, message = _locate_csv_problem(path)
        raise InputError(message, path=spath, line=line, field="row") from None


def _parse_csv(path: Path, names: list[str], floats: list[str]) -> pa.Table:
    types = {name: pa.float64() if name in floats else pa.string() for name in names}
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                             null_values=[""]),
    )


def _finite_or_null(column: pa.ChunkedArray) -> bool:
    """True when every non-null value of a float column is finite."""
    return not bool(pc.any(pc.is_inf(column)).as_py()) and not bool(
        pc.any(pc.is_nan(column)).as_py())


def _mask(array: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.bool_]:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def _fail_where(path: str, rows: npt.NDArray[np.bool_], fieldname: str,
                values: pa.ChunkedArray, message: str) -> None:
    """Raise an InputError at the first row where ``rows`` is true (pyarrow column)."""
    if rows.any():
        i = int(np.flatnonzero(rows)[0])
        raise InputError(f"{message}, got {values[i].as_py()!r}", path=path, line=i + 2,
                         field=fieldname)


def _numbers(path: str, column: pa.ChunkedArray, fieldname: str, message: str
             ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Parse a string column as float64; blanks are NaN. Returns (values, blank).

    A column already read as float64 by :func:`_read_table` (finite numbers or null) is
    taken as it is: nulls are the blanks.
    """
    if pa.types.is_floating(column.type):
        blank = _mask(pc.is_null(column))
        return np.asarray(column.to_numpy(), dtype=float), blank
    trimmed = pc.utf8_trim_whitespace(column)
    blank = _mask(pc.equal(trimmed, ""))
    nullable = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
    try:
        values = np.array(pc.cast(nullable, pa.float64()).to_numpy(zero_copy_only=False),
                          dtype=float)
    except pa.ArrowInvalid:
        # Slow path, only for a bad file: find the first value that is not a number.
        values = pd.to_numeric(pd.Series(nullable.to_numpy(zero_copy_only=False)),
                               errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        _fail_where(path, ~blank & np.isnan(values), fieldname, column, message)
    _fail_where(path, ~blank & ~np.isfinite(values), fieldname, column, message)
    return values, blank


def _is_iso_week(value: str | None) -> bool:
    """Whether ``value`` is an ISO 8601 week ``YYYY-Www`` that exists (W53 only in the
    years that have one).

    Examples
    --------
    >>> [_is_iso_week(v) for v in ("2027-W40", "2026-W53", "2027-W53", "banana", "40")]
    [True, True, False, False, False]
    """
    match = _ISO_WEEK.fullmatch(value or "")
    if match is None:
        return False
    try:
        date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        return False
    return True


def _codes(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.int64], pa.Array]:
    """Integer codes in order of first appearance, and the distinct values."""
    # One contiguous array first: encoding chunk by chunk and merging the dictionaries
    # afterwards costs half as much again with a million distinct learner ids.
    encoded = pc.dictionary_encode(column.combine_chunks())
    return (np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64),
            encoded.dictionary)


def _unit_rows(units: UnitTable, column: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """Row of each value in the units table, -1 when unknown."""
    value_set = pa.array(units.frame["unit_id"].to_numpy(dtype=object), type=pa.string())
    found = pc.index_in(column, value_set=value_set)
    return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _repeated(key: npt.NDArray[np.int64], size: int) -> npt.NDArray[np.bool_]:
    """True at each row whose ``key`` (in ``0..size-1``) already appeared on an earlier row.

    Counting with :func:`numpy.bincount` is O(n); the rows are only located (with pandas)
    when a key is repeated, i.e. for a file that is about to be refused.
    """
    if key.size == 0:
        return np.zeros(0, dtype=bool)
    # Count on a grid only when it is not much larger than the file (many measures, few of
    # them per learner, would make a sparse grid): otherwise hash with pandas.
    if size <= 4 * key.size + 1024 and int(np.bincount(key, minlength=size).max()) <= 1:
        return np.zeros(key.size, dtype=bool)
    return np.asarray(pd.Series(key).duplicated().to_numpy(), dtype=bool)


def read_outcomes(path: Path, units: UnitTable, *, table: pa.Table | None = None
                  ) -> OutcomeTable:
    """Read and check the outcomes file (long format, waves ``baseline``/``endline``).

    An empty ``score`` is a missing score (the learner was not assessed); anything else
    that is not a finite number is an error. ``table``: the file's content already in
    memory (``score`` as float64, the other columns as strings), checked instead of parsing
    ``path`` again.

    Raises
    ------
    InputError
        Missing column, unknown unit, bad wave, bad score, a learner in two units, or a
        (learner, measure, wave) given twice.
    """
    table = _table_in_memory(table, path, ("learner_id", "unit_id", "measure", "wave", "score"),
                             floats=("score",))
    spath = str(path)
    learner_raw = table.column("learner_id")
    _fail_where(spath, _mask(pc.equal(learner_raw, "")), "learner_id", learner_raw,
                "must not be empty")
    unit = _unit_rows(units, table.column("unit_id"))
    _fail_where(spath, unit < 0, "unit_id", table.column("unit_id"),
                "unknown unit (not in the units file)")
    wave = table.column("wave")
    is_endline = _mask(pc.equal(wave, "endline"))
    _fail_where(spath, ~(is_endline | _mask(pc.equal(wave, "baseline"))), "wave", wave,
                "must be 'baseline' or 'endline'")
    score, _ = _numbers(spath, table.column("score"), "score",
                        "must be a finite number (or empty when not assessed)")
    measure_raw = table.column("measure")
    _fail_where(spath, _mask(pc.equal(measure_raw, "")), "measure", measure_raw,
                "must not be empty")
    measure_codes, measure_values = _codes(measure_raw)
    measure = pd.Categorical.from_codes(measure_codes,
                                        categories=measure_values.to_pylist())
    learner, learner_values = _codes(learner_raw)
    learner_ids = pd.Index(learner_values.to_numpy(zero_copy_only=False))
    n_measures = max(len(measure.categories), 1)
    key = (learner * n_measures + measure_codes) * 2 + is_endline
    _fail_where(spath, _repeated(key, len(learner_ids) * n_measures * 2), "learner_id",
                learner_raw, "this learner already has a score for this measure and wave")
    learner_unit = np.full(len(learner_ids), -1, dtype=np.int64)
    learner_unit[learner[::-1]] = unit[::-1]  # the first row of each learner wins
    moved = learner_unit[learner] != unit
    _fail_where(spath, moved, "unit_id", table.column("unit_id"),
                "this learner appears in another unit earlier in the file")
    extras = [c for c in table.column_names
              if c not in ("learner_id", "unit_id", "measure", "wave", "score")]
    extra = table.select(extras).to_pandas() if extras else pd.DataFrame(index=range(len(key)))
    return OutcomeTable(
        path=spath,
        learner_ids=learner_ids,
        learner=learner,
        unit=unit,
        measure=measure,
        is_endline=is_endline,
        score=score,
        learner_unit=learner_unit,
        extra=extra,
    )


def read_usage(path: Path, outcomes: OutcomeTable, units: UnitTable, *,
               table: pa.Table | None = None) -> UsageTable:
    """Read the usage file and sum active minutes per learner.

    ``table``: the file's content already in memory (``active_minutes`` as float64, the
    other columns as strings), checked instead of parsing ``path`` again.

    Learners of the usage file who have no outcome record cannot enter any analysis and
    are ignored; a learner whose ``unit_id`` differs from the outcomes file is an error.

    Raises
    ------
    InputError
        Missing column, negative or non-numeric minutes, unknown unit, inconsistent unit.
    """
    table = _table_in_memory(table, path, ("learner_id", "unit_id", "week", "active_minutes"),
                             floats=("active_minutes",))
    spath = str(path)
    message = "must be a number of minutes >= 0"
    minutes, blank = _numbers(spath, table.column("active_minutes"), "active_minutes", message)
    if (blank | (minutes < 0)).any() and pa.types.is_floating(table.column("active_minutes").type):
        # The file is about to be refused: read it again as written, for the message.
        table = _read_table(path, ("learner_id", "unit_id", "week", "active_minutes"))
        minutes, blank = _numbers(spath, table.column("active_minutes"), "active_minutes",
                                  message)
    _fail_where(spath, blank | (minutes < 0), "active_minutes", table.column("active_minutes"),
                message)
    unit = _unit_rows(units, table.column("unit_id"))
    _fail_where(spath, unit < 0, "unit_id", table.column("unit_id"),
                "unknown unit (not in the units file)")
    value_set = pa.array(outcomes.learner_ids.to_numpy(dtype=object), type=pa.string())
    learner = np.asarray(pc.fill_null(pc.index_in(table.column("learner_id"),
                                                  value_set=value_set), -1)
                         .to_numpy(zero_copy_only=False), dtype=np.int64)
    known = learner >= 0
    if outcomes.n_learners:
        mismatch = known & (outcomes.learner_unit[np.where(known, learner, 0)] != unit)
    else:  # no outcome yet (early monitoring): nothing to compare, and nothing to index
        mismatch = np.zeros(len(learner), dtype=bool)
    _fail_where(spath, mismatch, "unit_id", table.column("unit_id"),
                "this learner belongs to another unit in the outcomes file")
    n = outcomes.n_learners
    total = np.bincount(learner[known], weights=minutes[known], minlength=n)
    week_codes, week_values = _codes(table.column("week"))
    not_week = np.array([not _is_iso_week(v) for v in week_values.to_pylist()], dtype=bool)
    _fail_where(spath, not_week[week_codes], "week", table.column("week"),
                "must be an ISO week written YYYY-Www, e.g. 2027-W40")
    stride = len(week_values) + 1
    key = learner[known] * stride + week_codes[known]
    if n * stride <= _MAX_MARKS:  # mark each (learner, week) seen: O(n), no hashing
        seen = np.zeros(n * stride, dtype=bool)
        seen[key] = True
        weeks = np.bincount(np.flatnonzero(seen) // stride, minlength=n)
    else:
        first = ~pd.Series(key).duplicated().to_numpy()
        weeks = np.bincount(learner[known][first], minlength=n)
    return UsageTable(path=spath, minutes=total.astype(float), weeks=weeks.astype(np.int64),
                      n_rows=table.num_rows)
