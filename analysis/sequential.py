"""Group-sequential boundaries: alpha spent over confirmatory looks (Lan-DeMets).

A protocol that declares an interim look *confirmatory* may conclude at that look; the
type I error of the whole trial then stays at ``alpha`` only if each look tests against a
stricter boundary. Lan & DeMets (1983) spend alpha as a function of the information
fraction ``t`` (0 < t <= 1); the O'Brien-Fleming type function (``asOF`` in R's rpact) is

    alpha(t) = 2 * (1 - Phi(z_{1 - alpha_side/2} / sqrt(t)))

for a one-sided test at level ``alpha_side``. Two-sided tests at level ``alpha`` are
symmetric: each side spends ``alpha/2`` (rpact's ``sided = 2``). The critical value
``c_k`` of look ``k`` solves, under the null hypothesis,

    P(|Z_1| < c_1, ..., |Z_{k-1}| < c_{k-1}, |Z_k| >= c_k) = alpha(t_k) - alpha(t_{k-1})

where ``(Z_1, ..., Z_K)`` is multivariate normal with ``corr(Z_i, Z_j) = sqrt(t_i/t_j)``
(i <= j): the canonical joint distribution of Jennison & Turnbull (2000, ch. 3). The
probabilities are computed by recursive numerical integration over the score statistic
``S_k = Z_k sqrt(t_k)``, whose increments are independent (Armitage, McPherson & Rowe
1969; Jennison & Turnbull 2000, ch. 19), with Simpson's rule on a fine grid; each
``c_k`` is then found by Brent's method. Checked against rpact's
``getDesignGroupSequential(typeOfDesign = "asOF")`` to 1e-6 in
``tests/statistics/test_sequential.py``.

Information fractions are the protocol's **planned** ones (the share of the final
analysis' information each look is expected to hold), so the boundary is fixed before
any data is seen; the final look has ``t = 1`` and spends what is left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
from scipy import optimize, stats

__all__ = [
    "GroupSequentialBoundary",
    "SequentialLook",
    "obrien_fleming_spending",
    "sequential_boundary",
    "sequential_look",
]

#: Points per unit of the score scale in the integration grid (Simpson's rule): errors
#: well under 1e-9 in the probabilities for boundaries between 1.5 and 5 (checked
#: against rpact to 1e-6 in the critical values).
_GRID_PER_UNIT = 400
#: The grid stops this many standard deviations below the continuation region.
_TAIL_SD = 9.0


@dataclass(frozen=True)
class GroupSequentialBoundary:
    """The boundary of a group-sequential design, one value per look.

    ``critical_values`` are on the z scale (reject at look k when ``|Z_k| >= c_k``,
    two-sided); ``nominal_alpha`` is the same boundary as a p-value threshold
    (``2 (1 - Phi(c_k))`` two-sided, ``1 - Phi(c_k)`` one-sided), the form a report
    compares a p-value with; ``alpha_spent`` is the cumulative alpha spent by each look.
    """

    information: tuple[float, ...]
    critical_values: tuple[float, ...]
    nominal_alpha: tuple[float, ...]
    alpha_spent: tuple[float, ...]
    alpha: float
    sided: Literal[1, 2]
    spending: str = "obrien-fleming"


def obrien_fleming_spending(t: float, alpha: float, sided: Literal[1, 2] = 2) -> float:
    """Alpha spent by information fraction ``t`` (Lan-DeMets, O'Brien-Fleming type).

    Examples
    --------
    >>> round(obrien_fleming_spending(1.0, 0.05), 12)
    0.05
    >>> f"{obrien_fleming_spending(0.33, 0.025, sided=1):.6e}"   # rpact: 9.548740e-05
    '9.548740e-05'
    """
    if not 0.0 < t <= 1.0:
        raise ValueError(f"information fraction: must be in (0, 1], got {t}")
    side = alpha / sided
    z = stats.norm.isf(side / 2.0)
    return float(sided * 2.0 * stats.norm.sf(z / math.sqrt(t)))


def _simpson(lower: float, upper: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of Simpson's rule on [lower, upper]."""
    intervals = max(2, int(math.ceil((upper - lower) * _GRID_PER_UNIT)))
    intervals += intervals % 2
    nodes = np.linspace(lower, upper, intervals + 1)
    weights = np.ones(intervals + 1)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    return nodes, weights * (upper - lower) / (3.0 * intervals)


_State = tuple[np.ndarray, np.ndarray, np.ndarray] | None
"""Grid nodes, Simpson weights and density of the score statistic on the continuation
region of the looks so far (None before the first look)."""


def _excess(c: float, state: _State, t: float, sd: float, sided: int, target: float
            ) -> float:
    """P(continue until now, then cross ±c at this look) minus the alpha to spend (one
    side only when ``sided`` is 1)."""
    bound = c * math.sqrt(t)
    if state is None:
        return float(stats.norm.sf(bound / sd) * sided) - target
    nodes, weights, density = state
    upper = stats.norm.sf((bound - nodes) / sd)
    lower = stats.norm.cdf((-bound - nodes) / sd) if sided == 2 else 0.0
    return float(np.sum(weights * density * (upper + lower))) - target


def sequential_boundary(information: Sequence[float], alpha: float = 0.05,
                        sided: Literal[1, 2] = 2) -> GroupSequentialBoundary:
    """Critical values of the Lan-DeMets O'Brien-Fleming-type design at the given
    information fractions.

    Parameters
    ----------
    information : sequence of float
        Information fractions of the looks, increasing, in (0, 1]; the last one is the
        final analysis (usually 1).
    alpha : float
        The trial's type I error (two-sided when ``sided = 2``, the protocol's
        ``analysis.alpha``).
    sided : {1, 2}

    Returns
    -------
    GroupSequentialBoundary

    Examples
    --------
    >>> b = sequential_boundary([0.33, 0.67, 1.0], alpha=0.025, sided=1)
    >>> [round(c, 4) for c in b.critical_values]   # rpact asOF: 3.7307 2.5039 1.9937
    [3.7307, 2.5039, 1.9937]
    """
    fractions = [float(t) for t in information]
    if not fractions or any(not 0.0 < t <= 1.0 for t in fractions) or any(
            b <= a for a, b in zip(fractions, fractions[1:], strict=False)):
        raise ValueError("information: expecting increasing fractions in (0, 1], got "
                         f"{fractions}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
    spent = [obrien_fleming_spending(t, alpha, sided) for t in fractions]
    critical: list[float] = []
    state: _State = None
    previous_t = 0.0
    previous_spent = 0.0
    for t, cumulative in zip(fractions, spent, strict=True):
        target = cumulative - previous_spent
        step = t - previous_t
        sd = math.sqrt(step)
        if target <= 0.0:
            c = math.inf
        else:
            c = float(optimize.brentq(_excess, 0.0, 40.0, args=(state, t, sd, sided, target),
                                      xtol=1e-13, rtol=1e-14, maxiter=500))
        critical.append(c)
        # Density of S_k on the continuation region (|S_k| < c sqrt(t)).
        bound = c * math.sqrt(t) if math.isfinite(c) else (_TAIL_SD + 10.0) * math.sqrt(t)
        low = -bound if sided == 2 else -(_TAIL_SD * math.sqrt(t))
        new_nodes, new_weights = _simpson(low, bound)
        if state is None:
            new_density = stats.norm.pdf(new_nodes / sd) / sd
        else:
            nodes, weights, density = state
            kernel = stats.norm.pdf((new_nodes[:, None] - nodes[None, :]) / sd) / sd
            new_density = kernel @ (weights * density)
        state = (new_nodes, new_weights, new_density)
        previous_t, previous_spent = t, cumulative
    nominal = tuple(float(sided * stats.norm.sf(c)) for c in critical)
    return GroupSequentialBoundary(tuple(fractions), tuple(critical), nominal, tuple(spent),
                                   alpha, sided)


@dataclass(frozen=True)
class SequentialLook:
    """Where one analysis stands in the protocol's group-sequential design."""

    look: int
    """1-based number of this look; the final analysis is the last."""
    boundary: GroupSequentialBoundary

    @property
    def looks(self) -> int:
        """Number of confirmatory looks, the final analysis included."""
        return len(self.boundary.information)

    @property
    def nominal_alpha(self) -> float:
        """The p-value threshold of this look (two-sided when the design is)."""
        return self.boundary.nominal_alpha[self.look - 1]

    def to_json(self) -> dict[str, Any]:
        """The ``design.sequential`` object of the results JSON."""
        b = self.boundary
        return {
            "spending": "Lan-DeMets, O'Brien-Fleming type (rpact asOF)",
            "look": self.look, "looks": self.looks, "information": list(b.information),
            "critical_values": list(b.critical_values), "nominal_alpha": list(b.nominal_alpha),
            "alpha_spent": list(b.alpha_spent), "alpha": b.alpha, "sided": b.sided,
        }


def sequential_look(protocol: Any, analysis: str, day: date | None = None
                    ) -> SequentialLook | None:
    """The look an analysis is in the protocol's group-sequential design, or None.

    None when the protocol declares no confirmatory interim look (a fixed design: the
    final analysis tests at ``analysis.alpha``), and for an interim analysis that is not
    one of its confirmatory looks (descriptive). ``day`` is the analysis' due date, which
    tells the interim looks apart; without it (an analysis on files) an interim analysis
    is a confirmatory look only when the protocol declares exactly one.

    Parameters
    ----------
    protocol : experiments.protocol.language.Protocol
    analysis : str
        ``interim`` or ``final`` (anything else has no look).
    day : date, optional

    Examples
    --------
    >>> from experiments.protocol.language import load_protocol
    >>> print(sequential_look(load_protocol("protocols/fluence-cp-2027.yaml"), "final"))
    None
    """
    looks = sorted((entry.at, float(entry.information)) for entry in protocol.schedule
                   if getattr(entry, "confirmatory", False) and entry.at is not None
                   and entry.information is not None)
    if not looks or analysis not in ("interim", "final"):
        return None
    fractions = [fraction for _, fraction in looks] + [1.0]
    boundary = sequential_boundary(fractions, alpha=float(protocol.analysis.alpha), sided=2)
    if analysis == "final":
        return SequentialLook(len(fractions), boundary)
    if day is None:
        return SequentialLook(1, boundary) if len(looks) == 1 else None
    index = next((i for i, (at, _) in enumerate(looks) if at == day), None)
    return None if index is None else SequentialLook(index + 1, boundary)
