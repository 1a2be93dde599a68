"""Result dataclasses, the JSON writer and reader.

Field names are exactly those of the JSON results contract (docs/architecture.md): ``estimate``,
``std_error``, ``ci_low``… (gbstats ``models/results.py``, in snake_case). Numbers that
cannot be computed are NaN in Python and ``null`` in JSON, and the object then carries a
``reason``: "cannot estimate" is a result, not a crash (gbstats ``_default_output``).

:meth:`AnalysisResults.from_json` reads a results JSON object back into these objects
(the checks as :mod:`analysis.attrition`, :mod:`analysis.balance`… dataclasses, the
warnings as :class:`~analysis.warning_codes.AnalysisWarning`), so that the report and the
portal read attributes, not keys; ``to_json_dict(AnalysisResults.from_json(x)) == x``.
Results written by earlier versions are read too: a key added since is given its default,
and warnings stored as French sentences are derived again from the checks as codes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.attrition import AttritionCheck, boundary_table
from analysis.balance import BalanceCheck, SampleRatioCheck
from analysis.consort import ConsortArm
from analysis.icc import IccEstimate
from analysis.options import Role
from analysis.usage import ArmUsage
from analysis.warning_codes import AnalysisWarning, warnings_from_checks

__all__ = [
    "AnalysisResults",
    "Effect",
    "InteractionTest",
    "finite",
    "not_estimable",
    "to_json_dict",
    "write_json",
]

NAN = math.nan


@dataclass(frozen=True)
class Effect:
    """The effect of one arm against the control on one outcome (one JSON ``effects`` item).

    ``n_units`` and ``n_learners`` are keyed by arm (the two arms of the contrast); a count
    of fewer than 10 learners is ``None`` (suppressed). ``reason`` says why the numbers are
    missing when they are.
    """

    outcome: str
    contrast: str
    estimand: str
    role: Role
    model: str
    estimate: float
    std_error: float
    ci_low: float
    ci_high: float
    p_value: float
    df: float
    hedges_g: float
    hedges_g_ci_low: float
    hedges_g_ci_high: float
    months_progress: int | None
    n_units: Mapping[str, int | None]
    n_learners: Mapping[str, int | None]
    subgroup: str | None = None
    p_adjusted: float = NAN
    adjustment: str | None = None
    reason: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def estimable(self) -> bool:
        """True when the estimate is a number."""
        return math.isfinite(self.estimate)

    @property
    def arm(self) -> str:
        """The treated arm of the contrast (``lectio vs usual`` → ``lectio``)."""
        return str(self.contrast or "").split(" vs ")[0]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Effect:
        """An effect of the results JSON (``null`` numbers are NaN; a key it lacks takes
        its default, or None).

        Examples
        --------
        >>> e = Effect.from_json({"outcome": "fluence", "contrast": "a vs b",
        ...                       "estimate": 2.5, "p_value": None})
        >>> e.arm, e.estimable, math.isnan(e.p_value)
        ('a', True, True)
        """
        effect: Effect = _typed(cls, data)
        return effect

    def to_json(self) -> dict[str, Any]:
        """The effect as one item of the results JSON ``effects`` (NaN → ``null``)."""
        out: dict[str, Any] = _plain(self)
        return out


def finite(value: float | None) -> float | None:
    """A number of the results, or None when it is missing (NaN or None).

    Examples
    --------
    >>> finite(math.nan), finite(0.25)
    (None, 0.25)
    """
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class InteractionTest:
    """Does the effect of ``contrast`` differ between the levels of ``attribute``?
    (:func:`analysis.subgroups.estimate_subgroups`)"""

    outcome: str
    contrast: str
    attribute: str
    levels: tuple[str, ...]
    statistic: float
    df_num: int
    df_den: float
    p_value: float
    p_adjusted: float = math.nan
    reason: str | None = None


def not_estimable(
    *,
    outcome: str,
    contrast: str,
    estimand: str,
    role: Role,
    model: str,
    reason: str,
    n_units: Mapping[str, int | None] | None = None,
    n_learners: Mapping[str, int | None] | None = None,
    subgroup: str | None = None,
    notes: tuple[str, ...] = (),
) -> Effect:
    """An :class:`Effect` without numbers, carrying the ``reason``."""
    return Effect(
        outcome=outcome, contrast=contrast, estimand=estimand, role=role, model=model,
        estimate=NAN, std_error=NAN, ci_low=NAN, ci_high=NAN, p_value=NAN, df=NAN,
        hedges_g=NAN, hedges_g_ci_low=NAN, hedges_g_ci_high=NAN, months_progress=None,
        n_units=dict(n_units or {}), n_learners=dict(n_learners or {}), subgroup=subgroup,
        reason=reason, notes=notes,
    )


@dataclass(frozen=True)
class AnalysisResults:
    """Everything an analysis produces; :func:`to_json_dict` is the JSON contract."""

    experiment: str
    protocol_sha256: str
    analysis: str
    design: Mapping[str, Any]
    effects: tuple[Effect, ...]
    checks: Mapping[str, Any] = field(default_factory=dict)
    """``consort`` (:class:`~analysis.consort.ConsortArm`), ``attrition``
    (:class:`~analysis.attrition.AttritionCheck`), ``baseline_equivalence``
    (:class:`~analysis.balance.BalanceCheck`), ``sample_ratio``
    (:class:`~analysis.balance.SampleRatioCheck`), ``icc``
    (:class:`~analysis.icc.IccEstimate`), ``subgroup_interactions``
    (:class:`InteractionTest`)."""
    usage: Mapping[str, Any] | None = None
    """``arms`` (:class:`~analysis.usage.ArmUsage`) and ``compliance_min_active_minutes``."""
    warnings: tuple[AnalysisWarning, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Keys of a results JSON that these fields do not hold (``waves``, which
    ``experiments.runs.waves`` adds to a cohort's results), kept as read and written
    again by :func:`to_json_dict`."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnalysisResults:
        """The results of a results JSON object (:func:`to_json_dict`), as objects.

        A number that is ``null`` is NaN again; a key that earlier versions did not write
        takes its default (an attrition check without ``rating`` is rated under the
        cautious boundary, as it then was); warnings stored as sentences are derived again
        from the checks as codes (:func:`analysis.warning_codes.warnings_from_checks`).
        Top-level keys the fields do not hold are kept in ``extra``.

        Examples
        --------
        >>> r = AnalysisResults.from_json({"experiment": "x", "protocol_sha256": "",
        ...     "analysis": "final", "design": {}, "effects": [], "warnings": [
        ...     {"code": "interim_descriptive", "params": {}, "message": "…"}]})
        >>> r.warnings[0].code
        'interim_descriptive'
        """
        effects = tuple(_typed(Effect, e) for e in data.get("effects") or ())
        checks = _checks_from_json(data.get("checks") or {})
        usage = data.get("usage")
        if usage is not None:
            usage = {**usage, "arms": [_typed(ArmUsage, a) for a in usage.get("arms") or ()]}
        stored = list(data.get("warnings") or ())
        if "warnings" not in data or any(isinstance(w, str) for w in stored):
            warnings = _derived_warnings(str(data.get("analysis", "")), effects, checks,
                                         data.get("design") or {})
        else:
            warnings = [AnalysisWarning(str(w["code"]), dict(w.get("params") or {}))
                        for w in stored]
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(
            extra={k: v for k, v in data.items() if k not in known},
            experiment=str(data.get("experiment", "")),
            protocol_sha256=str(data.get("protocol_sha256", "")),
            analysis=str(data.get("analysis", "")),
            design=dict(data.get("design") or {}),
            effects=effects,
            checks=checks,
            usage=usage,
            warnings=tuple(warnings),
        )

    def effects_where(self, *, role: str | None = None, estimand: str | None = None,
                      whole_sample: bool = False, estimable: bool = False
                      ) -> list[Effect]:
        """The effects of one ``role`` and ``estimand`` (any when None), only those of the
        whole sample (no subgroup) and only estimable ones when asked."""
        return [e for e in self.effects
                if (role is None or e.role == role)
                and (estimand is None or e.estimand == estimand)
                and not (whole_sample and e.subgroup)
                and not (estimable and not e.estimable)]

    def primary_effect(self, *, estimable: bool = False) -> Effect | None:
        """The primary ITT effect of the whole sample (the first contrast), if any."""
        return next(iter(self.effects_where(role="primary", estimand="ITT", whole_sample=True,
                                            estimable=estimable)), None)

    def tidy(self) -> pd.DataFrame:
        """The effects as a table, one row per effect (pyfixest ``tidy()`` style).

        Examples
        --------
        >>> AnalysisResults("x", "", "final", {}, ()).tidy().empty
        True
        """
        rows = [{f.name: getattr(e, f.name) for f in dataclasses.fields(e)}
                for e in self.effects]
        columns = [f.name for f in dataclasses.fields(Effect)]
        return pd.DataFrame(rows, columns=columns)


def _plain(value: Any) -> Any:
    """Convert to plain JSON values: NaN/inf → None, numpy scalars → Python numbers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "item") and not isinstance(value, (int, float)):
        value = value.item()  # numpy scalar
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    return value


def _typed(cls: Any, data: Mapping[str, Any]) -> Any:
    """A result dataclass from its JSON object: ``null`` numbers back to NaN, lists back to
    tuples where the field is a tuple, a missing key to its default (or None)."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = str(hints[f.name])
        if f.name not in data:
            if (f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING):
                values[f.name] = math.nan if _is_float(hints[f.name]) else None
            continue
        value = data[f.name]
        if value is None and _is_float(hints[f.name]):
            value = math.nan
        elif isinstance(value, list) and hint.startswith("tuple"):
            value = tuple(value)
        values[f.name] = value
    return cls(**values)


def _is_float(hint: Any) -> bool:
    """Whether a field holds a float that cannot be None (so ``null`` is NaN)."""
    return hint is float


_CHECKS: dict[str, Any] = {
    "consort": ConsortArm,
    "attrition": AttritionCheck,
    "baseline_equivalence": BalanceCheck,
    "icc": IccEstimate,
    "subgroup_interactions": InteractionTest,
}


def _checks_from_json(checks: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in checks.items():
        if name in _CHECKS:
            if name == "attrition":
                value = [_attrition_shape(a) for a in value]
            out[name] = [_typed(_CHECKS[name], item) for item in value]
        elif name == "sample_ratio" and value:
            out[name] = _typed(SampleRatioCheck, value)
        else:
            out[name] = value
    return out


def _attrition_shape(check: Mapping[str, Any]) -> Mapping[str, Any]:
    """An attrition check of the earlier shape (``cautious`` and ``optimistic`` only) in
    the current one: the cautious boundary was the one the protocol's rating used."""
    if "rating" in check:
        return check
    return {"assumption": "cautious", "boundary": check.get("boundary_cautious"),
            "rating": check.get("cautious"), **check}


def _derived_warnings(analysis: str, effects: Iterable[Effect], checks: Mapping[str, Any],
                      design: Mapping[str, Any]) -> list[AnalysisWarning]:
    """The warnings of results stored before the codes, derived again from their checks."""
    out = []
    if analysis == "interim":
        sequential = design.get("sequential")
        out.append(AnalysisWarning("interim_descriptive") if not sequential else
                   AnalysisWarning("interim_confirmatory", {
                       "look": sequential.get("look"), "looks": sequential.get("looks"),
                       "nominal_alpha": _this_look_alpha(sequential)}))
    span = boundary_table()["optimistic_unverified_rows"]
    srm = checks.get("sample_ratio")
    out.extend(warnings_from_checks(
        effects, checks.get("attrition") or (), checks.get("baseline_equivalence") or (),
        bool(getattr(srm, "mismatch", False)), span if isinstance(span, dict) else None))
    return out


def _this_look_alpha(sequential: Mapping[str, Any]) -> float:
    look, alphas = sequential.get("look"), sequential.get("nominal_alpha")
    if isinstance(alphas, list) and isinstance(look, int) and 0 < look <= len(alphas):
        return float(alphas[look - 1])
    return float(alphas) if isinstance(alphas, (int, float)) else math.nan


_NUMBERS = ("estimate", "std_error", "ci_low", "ci_high", "p_value", "hedges_g")


def to_json_dict(results: AnalysisResults) -> dict[str, Any]:
    """The JSON results object (docs/architecture.md contract), with plain numbers and ``null``.

    Every effect whose contract numbers are ``null`` has a ``reason``.
    """
    out: dict[str, Any] = _plain(dataclasses.replace(results, warnings=(), extra={}))
    out["warnings"] = [_warning_json(w) for w in results.warnings]
    del out["extra"]
    out.update(_plain(results.extra))
    for effect in out["effects"]:
        if effect.get("reason") is None and any(effect.get(k) is None for k in _NUMBERS):
            missing = [k for k in _NUMBERS if effect.get(k) is None]
            effect["reason"] = f"not computable: {', '.join(missing)} undefined"
    return out


def _warning_json(warning: AnalysisWarning) -> dict[str, Any]:
    """``{code, params, message}``, the message in English."""
    return {"code": warning.code, "params": _plain(warning.params),
            "message": warning.message("en")}


def write_json(results: AnalysisResults, path: Path) -> None:
    """Write the JSON results to ``path`` (UTF-8, ``allow_nan=False``)."""
    text = json.dumps(to_json_dict(results), ensure_ascii=False, indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
