"""Result dataclasses and the JSON writer.

Field names are exactly those of the JSON results contract (docs/architecture.md): ``estimate``,
``std_error``, ``ci_low``… (gbstats ``models/results.py``, in snake_case). Numbers that
cannot be computed are NaN in Python and ``null`` in JSON, and the object then carries a
``reason``: "cannot estimate" is a result, not a crash (gbstats ``_default_output``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.options import Role

__all__ = [
    "AnalysisResults",
    "Effect",
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
    usage: Mapping[str, Any] | None = None
    warnings: tuple[str, ...] = ()

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


_NUMBERS = ("estimate", "std_error", "ci_low", "ci_high", "p_value", "hedges_g")


def to_json_dict(results: AnalysisResults) -> dict[str, Any]:
    """The JSON results object (docs/architecture.md contract), with plain numbers and ``null``.

    Every effect whose contract numbers are ``null`` has a ``reason``.
    """
    out: dict[str, Any] = _plain(results)
    for effect in out["effects"]:
        if effect.get("reason") is None and any(effect.get(k) is None for k in _NUMBERS):
            missing = [k for k in _NUMBERS if effect.get(k) is None]
            effect["reason"] = f"not computable: {', '.join(missing)} undefined"
    return out


def write_json(results: AnalysisResults, path: Path) -> None:
    """Write the JSON results to ``path`` (UTF-8, ``allow_nan=False``)."""
    text = json.dumps(to_json_dict(results), ensure_ascii=False, indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
