"""Multiple-comparison corrections within a family of tests.

* Holm (1979), step-down: ``p_(i) * (m - i + 1)``, made monotone, capped at 1.
* Benjamini & Hochberg (1995), step-up false discovery rate: ``p_(i) * m / i``, made
  monotone from the largest p-value down, capped at 1.
* Bonferroni: ``p * m``, capped at 1.

NaN p-values (not-estimable effects) are left out of the family and stay NaN. Checked
against ``statsmodels.stats.multitest.multipletests`` in ``tests/statistics``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analysis.options import MultipleComparisons, check_option

__all__ = ["adjust_p_values"]


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
