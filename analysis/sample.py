"""The analysis sample of one outcome: who is analysed, with which regressors.

For each declared outcome, the analysis sample holds the learners with an endline score,
their arm, unit (the cluster), stratum, the baseline score and the declared covariates.
A missing baseline is handled by the dummy-variable method (the missing value is set to 0
and an indicator of missingness enters the model; Puma et al. 2009, *What to do when data
are missing in group randomized controlled trials*, NCEE 2009-0049), and the results say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.errors import InputError
from analysis.inputs import AnalysisPlan, OutcomeSpec, OutcomeTable, UnitTable

__all__ = [
    "AnalysisSample",
    "attribute_codes",
    "build_sample",
    "compact_codes",
    "learner_attribute",
]

MISSING_LEVEL = "(manquant)"
CLASS_COLUMN = "class_id"
"""Units-file column of a pupil's class when pupils are randomised (as
``experiments/runs/inputs.py`` writes it): the ``mixed`` model groups pupils by it."""
MAX_COVARIATE_LEVELS = 100
"""A categorical covariate with more levels is refused (one dummy column per level)."""


@dataclass(frozen=True)
class AnalysisSample:
    """Rows of one outcome's analysis, as numpy arrays of equal length ``n``.

    ``arm`` indexes ``plan.arms``; ``cluster`` numbers the units present ``0..n_clusters-1``
    and ``unit`` gives their row in the units table; ``stratum`` numbers the strata present
    (``None`` when the protocol has none); ``covariates`` are the columns that follow the arm
    indicators in every model (baseline, its missingness indicator, declared covariates).
    """

    outcome: str
    y: npt.NDArray[np.float64]
    arm: npt.NDArray[np.int8]
    learner: npt.NDArray[np.int64]
    unit: npt.NDArray[np.int64]
    cluster: npt.NDArray[np.intp]
    n_clusters: int
    stratum: npt.NDArray[np.intp] | None
    n_strata: int
    school: npt.NDArray[np.intp] | None
    covariates: npt.NDArray[np.float64]
    covariate_names: tuple[str, ...]
    baseline_missing: int
    """Learners of the sample whose baseline score was missing (dummy-variable method)."""
    outer_stratum: npt.NDArray[np.intp] | None = None
    """Strata without the column of the ``mixed`` model's grouping (the school for classes
    nested in schools, the class when pupils are randomised): its fixed effects when the
    random intercept stands for those strata; ``None`` when nothing is left."""
    learner_class: npt.NDArray[np.intp] | None = None
    """When pupils are randomised: each learner's class (``CLASS_COLUMN`` of the units
    file, codes ``0..k-1``), the grouping of the ``mixed`` model; ``None`` otherwise or
    when the units file has no such column."""

    @property
    def n(self) -> int:
        """Number of learners analysed."""
        return int(self.y.size)

    @cached_property
    def within_strata(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """``(y, covariates)`` demeaned within stratum, computed once per sample.

        The ITT, subgroup and CACE models of one outcome share the outcome, the baseline
        and the covariates: they absorb the strata from these columns once (a million
        rows: about 25 ms a column) and only demean their own extra columns.
        Requires strata (``stratum`` not None).
        """
        from analysis._ols import absorb

        assert self.stratum is not None
        both = absorb(np.column_stack([self.y, self.covariates]), self.stratum, self.n_strata)
        return both[:, 0], both[:, 1:]


def compact_codes(codes: npt.NDArray[np.integer]) -> tuple[npt.NDArray[np.intp], int]:
    """Renumber non-negative integer codes ``0..k-1`` in increasing order; O(n), no sort.

    Examples
    --------
    >>> compact_codes(np.array([7, 3, 7, 9]))
    (array([1, 0, 1, 2]), 3)
    """
    if codes.size == 0:
        return np.zeros(0, dtype=np.intp), 0
    present = np.bincount(codes) > 0
    mapping = np.cumsum(present) - 1
    return mapping[codes].astype(np.intp), int(present.sum())


def _combined_codes(frame: pd.DataFrame, columns: list[str]) -> npt.NDArray[np.int64]:
    """One integer code per row for the combination of ``columns`` (mixed radix)."""
    combined = np.zeros(len(frame), dtype=np.int64)
    for column in columns:
        codes, uniques = pd.factorize(frame[column])
        combined = combined * (len(uniques) + 1) + codes
    return np.asarray(pd.factorize(combined)[0], dtype=np.int64)


def learner_attribute(name: str, units: UnitTable, outcomes: OutcomeTable) -> pd.Series:
    """The attribute ``name`` of each learner (indexed by learner code), as strings.

    Unit attributes (units file) take precedence; otherwise the column is read from the
    extra columns of the outcomes file (first non-empty value of each learner).

    Raises
    ------
    InputError
        The attribute is in neither file.
    """
    if name in units.frame.columns:
        values = units.frame[name].to_numpy(dtype=object)
        return pd.Series(values[outcomes.learner_unit], dtype=object)
    if name in outcomes.extra.columns:
        column = outcomes.extra[name]
        present = (column != "").to_numpy()
        first = (
            pd.Series(column.to_numpy(dtype=object)[present])
            .groupby(outcomes.learner[present])
            .first()
        )
        out = pd.Series([""] * outcomes.n_learners, dtype=object)
        out.iloc[first.index.to_numpy()] = first.to_numpy()
        return out
    raise InputError(
        f"column {name!r} named by the protocol is in neither the units nor the outcomes file",
        path=units.path, line=1, field=name,
    )


def attribute_codes(
    name: str, units: UnitTable, outcomes: OutcomeTable, learner: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.intp], tuple[str, ...]]:
    """Level code of attribute ``name`` for each of ``learner``, and the sorted levels.

    Empty values become the level ``(manquant)``. Unit attributes are coded on the units
    table (small) and mapped through each learner's unit, so a million learners are fast.
    """
    if name in units.frame.columns:
        values = units.frame[name].astype(str).str.strip()
        index = outcomes.learner_unit[learner]
    else:
        values = learner_attribute(name, units, outcomes).astype(str).str.strip()
        index = learner
    codes, uniques = pd.factorize(values.where(values != "", MISSING_LEVEL), sort=True)
    return codes[index].astype(np.intp), tuple(str(u) for u in uniques)


def _covariate_columns(
    name: str, values: pd.Series
) -> tuple[list[npt.NDArray[np.float64]], list[str]]:
    """Numeric attribute → one column (+ missing indicator); otherwise level dummies.

    An empty ``values`` (an outcome without any endline score) gives one empty column:
    the estimators then say that no learner has a score, instead of this failing.
    """
    if values.empty:
        return [np.zeros(0)], [name]
    text = values.astype(str).str.strip()
    blank = (text == "").to_numpy()
    numeric = pd.to_numeric(text.where(~blank), errors="coerce").to_numpy(dtype=float,
                                                                          na_value=np.nan)
    if np.all(np.isfinite(numeric) | blank) and not blank.all():
        filled = np.where(blank, 0.0, numeric)
        if blank.any():
            return [filled, blank.astype(float)], [name, f"{name}_manquant"]
        return [filled], [name]
    levels = text.where(~blank, MISSING_LEVEL)
    counts = levels.value_counts()
    if len(counts) > MAX_COVARIATE_LEVELS:
        raise InputError(
            f"covariate {name!r} is not numeric and has {len(counts)} distinct values "
            f"(more than {MAX_COVARIATE_LEVELS}): declare a numeric column, or a coarser one",
            field=name,
        )
    reference = str(counts.index[0])
    columns: list[npt.NDArray[np.float64]] = []
    names: list[str] = []
    for level in sorted(str(v) for v in counts.index):
        if level != reference:
            columns.append((levels == level).to_numpy(dtype=float))
            names.append(f"{name}[{level}]")
    return columns, names


def build_sample(
    plan: AnalysisPlan, units: UnitTable, outcomes: OutcomeTable, outcome: OutcomeSpec
) -> AnalysisSample:
    """Assemble the analysis sample of ``outcome``.

    Parameters
    ----------
    plan : AnalysisPlan
    units, outcomes : tables read by :mod:`analysis.inputs`
    outcome : OutcomeSpec

    Returns
    -------
    AnalysisSample
        Possibly empty (the estimators then say why they cannot estimate).
    """
    categories = outcomes.measure.categories
    codes = outcomes.measure.codes

    def code_of(measure: str) -> int:
        return int(categories.get_loc(measure)) if measure in categories else -2

    end_rows = (codes == code_of(outcome.id)) & outcomes.is_endline
    end_rows &= ~np.isnan(outcomes.score)
    learner = outcomes.learner[end_rows]
    y = outcomes.score[end_rows]
    unit = outcomes.unit[end_rows]
    arm = units.arm_code[unit]

    columns: list[npt.NDArray[np.float64]] = []
    names: list[str] = []
    baseline_missing = 0
    if outcome.baseline is not None:
        base_rows = (codes == code_of(outcome.baseline)) & ~outcomes.is_endline
        base_rows &= ~np.isnan(outcomes.score)
        baseline = np.full(outcomes.n_learners, np.nan)
        baseline[outcomes.learner[base_rows]] = outcomes.score[base_rows]
        b = baseline[learner]
        missing = np.isnan(b)
        baseline_missing = int(missing.sum())
        columns.append(np.where(missing, 0.0, b))
        names.append(f"{outcome.baseline}_baseline")
        if baseline_missing:
            columns.append(missing.astype(float))
            names.append(f"{outcome.baseline}_baseline_manquant")
    for covariate in plan.covariates:
        per_learner = learner_attribute(covariate, units, outcomes)
        cols, cnames = _covariate_columns(covariate, per_learner.iloc[learner])
        columns.extend(cols)
        names.extend(cnames)

    cluster, n_clusters = compact_codes(unit)
    stratum: npt.NDArray[np.intp] | None = None
    n_strata = 0
    if plan.strata:
        unit_stratum = _combined_codes(units.frame, list(plan.strata))
        stratum, n_strata = compact_codes(unit_stratum[unit])
    outer: npt.NDArray[np.intp] | None = None
    grouping_column = CLASS_COLUMN if plan.unit == "learner" else plan.school
    others = [s for s in plan.strata if s != grouping_column]
    if others:
        outer = compact_codes(_combined_codes(units.frame, others)[unit])[0]
    school: npt.NDArray[np.intp] | None = None
    if plan.unit == "class" and plan.school and plan.school in units.frame.columns:
        unit_school = pd.factorize(units.frame[plan.school])[0].astype(np.int64)
        school, _ = compact_codes(unit_school[unit])
    learner_class: npt.NDArray[np.intp] | None = None
    if plan.unit == "learner" and CLASS_COLUMN in units.frame.columns:
        unit_class = pd.factorize(units.frame[CLASS_COLUMN])[0].astype(np.int64)
        learner_class, _ = compact_codes(unit_class[unit])
    matrix = np.column_stack(columns) if columns else np.empty((y.size, 0))
    return AnalysisSample(
        outcome=outcome.id,
        y=y,
        arm=arm,
        learner=learner,
        unit=unit,
        cluster=cluster,
        n_clusters=n_clusters,
        stratum=stratum,
        n_strata=n_strata,
        school=school,
        covariates=matrix,
        covariate_names=tuple(names),
        baseline_missing=baseline_missing,
        outer_stratum=outer,
        learner_class=learner_class,
    )
