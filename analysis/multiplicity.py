"""Multiple-comparison corrections within a family of tests.

* Holm (1979), step-down: ``p_(i) * (m - i + 1)``, made monotone, capped at 1.
* Benjamini & Hochberg (1995), step-up false discovery rate: ``p_(i) * m / i``, made
  monotone from the largest p-value down, capped at 1.
* Bonferroni: ``p * m``, capped at 1.

NaN p-values (not-estimable effects) are left out of the family and stay NaN. Checked
against ``statsmodels.stats.multitest.multipletests`` in ``tests/statistics``.

One standard of certainty
-------------------------
:func:`certainty` says whether an effect of the results JSON is *established*, by the
test the protocol prescribes, and every place that draws a conclusion uses it: the
report's summary (one sentence per treated arm), the evidence rating's explanation, the
portal's verdict and ``/api/experiences``. The test is the **adjusted p-value** (the
protocol's ``analysis.multiple_comparisons`` over the primary family: every treated arm
against the control) compared with ``alpha``, or, in a group-sequential design, with the
nominal threshold of the look (:mod:`analysis.sequential`). An interim analysis that the
protocol does not declare confirmatory concludes nothing (descriptive).

Confidence intervals stay **unadjusted** (the model's t interval at ``1 - alpha``), and
the report says so whenever the family has more than one test or the design is
sequential: Holm's step-down test has no simple compatible interval, and an interval
"adjusted" by Bonferroni could disagree with Holm's decision. So no sentence ever says
"avec une confiance de 95 %" from an interval alone: the certainty claim rests on the
adjusted test, and the interval is described as what it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from analysis.options import MultipleComparisons, check_option
from analysis.results import AnalysisResults, Effect

__all__ = ["Certainty", "adjust_p_values", "certainty"]


def adjust_p_values(p_values: Sequence[float], method: MultipleComparisons) -> list[float]:
    """Adjusted p-values of one family, in the order given.

    Parameters
    ----------
    p_values : sequence of float
        Unadjusted p-values; NaN entries are not counted in the family.
    method : {"holm", "bonferroni", "benjamini-hochberg", "none"}

    Returns
    -------
    list of float

    Examples
    --------
    >>> [round(p, 6) for p in adjust_p_values([0.01, 0.04, 0.03], "holm")]
    [0.03, 0.06, 0.06]
    """
    check_option(method, MultipleComparisons, "analysis.multiple_comparisons")
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return [float(v) for v in out]
    values = p[ok]
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    if method == "none":
        adjusted = ranked
    elif method == "bonferroni":
        adjusted = ranked * m
    elif method == "holm":
        adjusted = np.maximum.accumulate(ranked * (m - np.arange(m)))
    else:  # Benjamini-Hochberg
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    result = np.empty(m)
    result[order] = np.minimum(adjusted, 1.0)
    out[ok] = result
    return [float(v) for v in out]


Claim = Literal["positive", "negative", "not established", "descriptive", "none"]


@dataclass(frozen=True)
class Certainty:
    """What the protocol's test says of one effect."""

    claim: Claim
    """``positive``/``negative``: established; ``not established``: the test does not
    reject; ``descriptive``: an interim look that may not conclude; ``none``: no
    estimate."""
    p: float | None
    """The p-value the rule tests (adjusted when a correction applies)."""
    threshold: float
    """``alpha``, or the look's nominal threshold in a group-sequential design."""
    family: int
    """Number of tests in the primary family (estimable treated arms)."""
    method: str
    """``analysis.multiple_comparisons`` (``none`` when uncorrected)."""
    look: int | None = None
    looks: int | None = None

    @property
    def established(self) -> bool:
        """Whether the effect is established (positive or negative)."""
        return self.claim in ("positive", "negative")

    @property
    def interval_unadjusted(self) -> bool:
        """Whether the interval shown is not the test's (family > 1 or a sequential look)."""
        return (self.family > 1 and self.method != "none") or self.look is not None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def certainty(effect: Effect | Mapping[str, Any],
              results: AnalysisResults | Mapping[str, Any]) -> Certainty:
    """Whether an effect of the results is established by the protocol's test.

    Parameters
    ----------
    effect : Effect or mapping
        One of the results' effects (or an item of the results JSON ``effects``).
    results : AnalysisResults or mapping
        The results (or the results JSON object): ``design`` and ``analysis`` are read,
        and the primary family's size from ``effects``.

    Examples
    --------
    >>> results = {"analysis": "final", "design": {"alpha": 0.05,
    ...     "multiple_comparisons": "holm"}, "effects": [
    ...     {"role": "primary", "estimand": "ITT", "estimate": 6.6, "p_value": 0.043,
    ...      "p_adjusted": 0.087},
    ...     {"role": "primary", "estimand": "ITT", "estimate": 0.4, "p_value": 0.8,
    ...      "p_adjusted": 0.8}]}
    >>> certainty(results["effects"][0], results).claim
    'not established'
    """
    if not isinstance(results, AnalysisResults):
        results = AnalysisResults.from_json(results)
    if not isinstance(effect, Effect):
        effect = Effect.from_json(effect)
    design = results.design
    alpha = float(design.get("alpha", 0.05))
    method = str(design.get("multiple_comparisons") or "none")
    family = sum(1 for e in results.effects_where(role="primary", estimand="ITT",
                                                  whole_sample=True)
                 if _number(e.p_value) is not None)
    sequential = design.get("sequential") or None
    look = looks = None
    threshold = alpha
    if sequential:
        look, looks = int(sequential["look"]), int(sequential["looks"])
        threshold = float(sequential["nominal_alpha"][look - 1])
    estimate = _number(effect.estimate)
    p = _number(effect.p_adjusted)
    if p is None:
        p = _number(effect.p_value)
    confirmatory = design.get("confirmatory")
    if confirmatory is None:  # results written before the key: interim looks concluded
        confirmatory = results.analysis != "interim"
    if estimate is None or p is None:
        claim: Claim = "none"
    elif not confirmatory:
        claim = "descriptive"
    elif p <= threshold:
        claim = "positive" if estimate > 0 else "negative"
    else:
        claim = "not established"
    return Certainty(claim, p, threshold, family, method, look, looks)
