"""The portfolio and its syntheses as JSON (the portal's ``/api/programmes`` routes).

Aggregates only, as on the programme pages: per experiment its state, territories, size,
costs, the verdict of each treated arm (the protocol's test), the evidence rating, usage
levels; per synthesis the pooled numbers and its studies. Every head count of 1 to 9
pupils is suppressed (``null``) by :func:`analysis.suppression.suppress_count`; numbers
that are not finite (a synthesis without a pooled effect) are ``null``; no class, school
or learner identifier is ever written.
"""

from __future__ import annotations

import math
from typing import Any

from analysis.options import MIN_CELL_PUPILS
from analysis.suppression import suppress_count
from experiments.portfolio.entries import PortfolioEntry, SynthesisScope

__all__ = ["entry_json", "synthesis_json"]


def _finite(value: Any) -> float | None:
    """A JSON number, or ``None`` for a missing or non-finite one.

    Examples
    --------
    >>> _finite(0.25), _finite(float("nan")), _finite(None)
    (0.25, None, None)
    """
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _pupils(value: int | None) -> int | None:
    return None if value is None else suppress_count(value)


def entry_json(entry: PortfolioEntry) -> dict[str, Any]:
    """One experiment of the portfolio (aggregates, small cells suppressed)."""
    e = entry.effect
    effect = None if e is None else {
        "outcome": e.outcome, "contrast": e.contrast,
        "hedges_g": _finite(e.hedges_g),
        "hedges_g_ci_low": _finite(e.hedges_g_ci_low),
        "hedges_g_ci_high": _finite(e.hedges_g_ci_high),
        "months_progress": e.months_progress,
        "n_units": dict(e.n_units or {}),
        "n_learners": {arm: _pupils(n) for arm, n in (e.n_learners or {}).items()},
    }
    return {
        "id": entry.id, "title": entry.title, "state": entry.state,
        "programme": entry.programme, "academies": list(entry.academies),
        "departements": list(entry.departements), "tags": list(entry.tags),
        "resource": {"id": entry.resource_id, "name": entry.resource},
        "classes": entry.classes, "pupils": _pupils(entry.pupils),
        "budget_total": _finite(entry.budget_total),
        "cost_per_pupil": _finite(entry.cost_per_pupil),
        "funders": [{"name": n, "amount": a} for n, a in entry.funders],
        "primary_effect": effect,
        "verdicts": [{"arm": v.arm, "conclusion": v.claim, "hedges_g": _finite(v.hedges_g),
                      "p_tested": _finite(v.p), "threshold": v.threshold}
                     for v in entry.verdicts],
        "padlocks": entry.padlocks,
        "usage": [{"arm": arm, "mean_active_minutes": _finite(minutes),
                   "share_compliant": _finite(share)} for arm, minutes, share in entry.usage],
        "decision": {"rule": entry.decision_rule, "min_effect_size": entry.min_effect_size,
                     "threshold_met": entry.meets_threshold, "closing_note": entry.closing_note},
        "provenance": {"protocol_sha256": entry.protocol_sha256, "run_id": entry.run_id,
                       "json_sha256": entry.json_sha256,
                       "data_as_of": None if entry.data_as_of is None
                       else entry.data_as_of.isoformat()},
    }


def synthesis_json(scope: SynthesisScope) -> dict[str, Any]:
    """One synthesis: what it pools, the pooled numbers (``null`` under 3 studies), its
    studies with their evidence ratings."""
    s = scope.synthesis
    pooled = None if not s.estimable else {
        "estimate": _finite(s.estimate), "std_error": _finite(s.std_error),
        "ci_low": _finite(s.ci_low), "ci_high": _finite(s.ci_high),
        "p_value": _finite(s.p_value), "df": _finite(s.df), "tau2": _finite(s.tau2),
        "i2": _finite(s.i2), "q": _finite(s.q), "pi_low": _finite(s.pi_low),
        "pi_high": _finite(s.pi_high), "months_progress": s.months_progress,
    }
    return {
        "kind": scope.kind, "name": scope.name, "method": s.method, "test": s.test,
        "k": s.k, "pupils": _pupils(s.n_learners), "pooled": pooled, "reason": s.reason,
        "studies": [{"experiment": st.study, "label": st.label,
                     "hedges_g": _finite(st.hedges_g), "std_error": _finite(st.std_error),
                     "weight_percent": _finite(w) if s.estimable else None,
                     "pupils": _pupils(st.n_learners), "classes": st.n_units,
                     "rating": st.rating}
                    for st, w in zip(s.studies, s.weights or (math.nan,) * s.k, strict=True)],
        "excluded": list(scope.excluded),
        "suppressed_below": MIN_CELL_PUPILS,
    }
