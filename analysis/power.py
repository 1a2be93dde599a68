"""Minimum detectable effect sizes, PowerUp!-style.

Formulas of Dong & Maynard (2013), "PowerUp!: A Tool for Calculating Minimum Detectable
Effect Sizes and Minimum Required Sample Sizes for Experimental and Quasi-Experimental
Design Studies", *Journal of Research on Educational Effectiveness* 6(1), 24-67, for
four designs (their names):

- ``IRA``: individual random assignment;
- ``BIRA2_1c``: pupils randomised within blocks (strata), constant treatment effect;
- ``CRA2_2r``: two-level cluster random assignment (pupils in units), random effects;
- ``BCRA3_2f``: units randomised within blocks (strata), fixed block effects.

    MDES = M(df) * SE,   M(df) = t(1 - α/2, df) + t(power, df)   (two-tailed; t(1 - α) one-tailed)

    IRA       SE² = (1 - R1²) / (P(1-P) n)                                  df = n - g* - 2
    BIRA2_1c  SE² = (1 - R1²) / (P(1-P) n)                                  df = n - K - g* - 1
    CRA2_2r   SE² = ρ(1 - R2²) / (P(1-P) J) + (1-ρ)(1 - R1²) / (P(1-P) J n)  df = J - g* - 2
    BCRA3_2f  SE² = ρ(1 - R2²) / (P(1-P) J K) + (1-ρ)(1 - R1²) / (P(1-P) J K n)
                                                                            df = K(J - 2) - g*

with n pupils (per unit; in all for IRA and BIRA2_1c), J units (per block for BCRA3_2f),
K blocks, P the share of units treated, ρ the intra-class correlation, R² the variance
explained by covariates at each level and g* the number of covariates at the level of
randomisation. BCRA3_2f
estimates an impact per block, so blocks of two units leave no degrees of freedom:
that is a :class:`MdesResult` with ``mdes=None`` and a reason, not an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

# scipy.special's Student t functions are what scipy.stats.t calls (ppf = stdtrit,
# cdf = stdtr, sf(x) = stdtr(-x)); importing scipy.stats would add ~0.4 s to every
# ``preuve analyze``, which computes the MDES at randomisation (analysis.design_mdes).
from scipy import special

__all__ = [
    "DesignInputs",
    "MdesResult",
    "PowerDesign",
    "UnitsNeeded",
    "compute_mdes",
    "model_r2",
    "multiplier",
    "power_for_effect",
    "units_needed",
]

PowerDesign = Literal["IRA", "BIRA2_1c", "CRA2_2r", "BCRA3_2f"]


@dataclass(frozen=True)
class DesignInputs:
    """A design, as PowerUp! describes it.

    ``units`` counts all units randomised (pupils for ``IRA`` and ``BIRA2_1c``);
    ``blocks`` is required for the blocked designs (units per block: ``units / blocks``,
    PowerUp!'s average).
    """

    design: PowerDesign
    units: int
    pupils_per_unit: int = 1
    icc: float = 0.0
    r2_learner: float = 0.0
    r2_unit: float = 0.0
    treated_share: float = 0.5
    blocks: int | None = None
    covariates: int = 0
    alpha: float = 0.05
    power: float = 0.8
    two_tailed: bool = True


@dataclass(frozen=True)
class MdesResult:
    """The minimum detectable effect size (in standard deviations) of a design."""

    design: PowerDesign
    mdes: float | None
    df: int
    multiplier: float | None
    std_error: float
    """Standard error of the impact estimate, in standard deviations of the outcome."""
    reason: str | None = None
    """Why the MDES is not estimable (``mdes`` is then ``None``)."""


@dataclass(frozen=True)
class UnitsNeeded:
    """The fewest units reaching a target MDES (``units`` is ``None`` if none below the cap)."""

    target_mdes: float
    units: int | None
    result: MdesResult | None
    reason: str | None = None


def multiplier(df: int, alpha: float = 0.05, power: float = 0.8, two_tailed: bool = True) -> float:
    """PowerUp!'s multiplier M = t(1-α/2) + t(power) with ``df`` degrees of freedom.

    Examples
    --------
    >>> round(multiplier(18), 3)
    2.963
    """
    critical = special.stdtrit(df, 1 - alpha / 2 if two_tailed else 1 - alpha)
    return float(critical + special.stdtrit(df, power))


def _df_and_se(d: DesignInputs) -> tuple[int, float]:
    pq = d.treated_share * (1 - d.treated_share)
    if d.design in ("IRA", "BIRA2_1c"):
        se = math.sqrt((1 - d.r2_learner) / (pq * d.units))
        if d.design == "IRA":
            return d.units - d.covariates - 2, se
        if d.blocks is None:
            raise ValueError("BIRA2_1c needs the number of blocks")
        return d.units - d.blocks - d.covariates - 1, se
    between = d.icc * (1 - d.r2_unit)
    within = (1 - d.icc) * (1 - d.r2_learner) / d.pupils_per_unit
    if d.design == "CRA2_2r":
        return d.units - d.covariates - 2, math.sqrt((between + within) / (pq * d.units))
    if d.blocks is None:
        raise ValueError("BCRA3_2f needs the number of blocks")
    per_block = d.units / d.blocks
    df = math.ceil(d.blocks * (per_block - 2) - d.covariates)
    return df, math.sqrt((between + within) / (pq * d.units))


def compute_mdes(inputs: DesignInputs) -> MdesResult:
    """The MDES of a design (Dong & Maynard 2013).

    Parameters
    ----------
    inputs:
        The design.

    Returns
    -------
    MdesResult
        ``mdes`` is ``None`` with a ``reason`` when the design has no degrees of freedom.

    Examples
    --------
    >>> r = compute_mdes(DesignInputs("CRA2_2r", units=20, pupils_per_unit=15, icc=0.17))
    >>> round(r.mdes, 3), r.df
    (0.629, 18)
    """
    df, se = _df_and_se(inputs)
    if df < 1:
        return MdesResult(
            inputs.design,
            None,
            df,
            None,
            se,
            reason=f"the design has {df} degrees of freedom"
            + (
                " (BCRA3_2f needs more than 2 units per block)"
                if inputs.design == "BCRA3_2f"
                else ""
            ),
        )
    m = multiplier(df, inputs.alpha, inputs.power, inputs.two_tailed)
    return MdesResult(inputs.design, m * se, df, m, se)


def power_for_effect(inputs: DesignInputs, effect_size: float) -> float:
    """Power to detect ``effect_size`` (central-t approximation, as PowerUp!).

    Examples
    --------
    >>> d = DesignInputs("BCRA3_2f", units=220, pupils_per_unit=20, icc=0.10, blocks=5)
    >>> round(power_for_effect(d, 0.145), 3)
    0.803
    """
    df, se = _df_and_se(inputs)
    if df < 1:
        raise ValueError(f"the design has {df} degrees of freedom")
    shift = effect_size / se
    if inputs.two_tailed:
        critical = special.stdtrit(df, 1 - inputs.alpha / 2)
        return float(special.stdtr(df, shift - critical) + special.stdtr(df, -critical - shift))
    return float(special.stdtr(df, shift - special.stdtrit(df, 1 - inputs.alpha)))


def units_needed(inputs: DesignInputs, target_mdes: float, cap: int = 1_000_000) -> UnitsNeeded:
    """The fewest units (all arms; same blocks) whose MDES is at most ``target_mdes``.

    MDES decreases as units are added, so a binary search finds the smallest count.

    Examples
    --------
    >>> units_needed(DesignInputs("IRA", units=2), 0.356).units
    250
    """
    if target_mdes <= 0:
        raise ValueError(f"target MDES must be positive, got {target_mdes}")

    def at(units: int) -> MdesResult:
        return compute_mdes(replace(inputs, units=units))

    def reaches(units: int) -> bool:
        mdes = at(units).mdes
        return mdes is not None and mdes <= target_mdes

    if not reaches(cap):
        return UnitsNeeded(target_mdes, None, None, reason=f"not reached with {cap} units")
    low, high = (inputs.blocks or 1) * 2, cap
    while low < high:
        mid = (low + high) // 2
        if reaches(mid):
            high = mid
        else:
            low = mid + 1
    return UnitsNeeded(target_mdes, low, at(low))


def model_r2(r2_learner: float, r2_unit: float, *, pretest: bool, covariates: bool
             ) -> tuple[float, float]:
    """The R² a model can reach: the assumed ones, or 0 with neither pre-test nor covariate.

    An outcome without pre-test is analysed on its declared covariates and strata only
    (issue 15); with no covariate either, nothing explains variance at any level.

    Examples
    --------
    >>> model_r2(0.5, 0.3, pretest=False, covariates=False)
    (0.0, 0.0)
    >>> model_r2(0.5, 0.3, pretest=False, covariates=True)
    (0.5, 0.3)
    """
    if not pretest and not covariates:
        return 0.0, 0.0
    return r2_learner, r2_unit
