"""The minimum detectable effect size at randomisation, for the evidence rating.

The EEF reads the power of a trial on its MDES *at randomisation*: what the design could
detect with the units actually randomised, under the assumptions written before the
results (issue 15: not each trial's achieved standard error, which rewards a lucky draw
and punishes an unlucky one). For each contrast:

- **units**: the units randomised in the two arms (the units file), with the treated
  share they give;
- **pupils per unit**: the protocol's ``power.pupils_per_unit``; without a ``power:``
  section, the mean number of randomised pupils per unit (see
  :func:`analysis.run` ``_randomised_pupils``);
- **ICC and R²**: the protocol's ``power:`` assumptions, with the R² the model can reach
  (:func:`analysis.power.model_r2`: 0 without pre-test nor covariate). Without a
  ``power:`` section there is no assumption written in advance: the ICC estimated on the
  primary outcome stands in (0 if it cannot be estimated) and the R² are 0 (conservative),
  and ``source`` says so;
- **design** (PowerUp!, Dong & Maynard 2013, :mod:`analysis.power`): learners randomised
  → ``IRA`` (``BIRA2_1c`` when ``power.blocks`` is given); classes or schools → ``CRA2_2r``
  (``BCRA3_2f`` when ``power.blocks`` is given, unless its blocks leave no degrees of
  freedom: then ``CRA2_2r``, which ignores the blocking and so overstates the MDES a
  little); 80 % power unless the protocol says otherwise, the analysis's α.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from analysis.inputs import AnalysisPlan
from analysis.power import DesignInputs, PowerDesign, compute_mdes, model_r2

__all__ = ["DesignMdes", "mdes_at_randomisation"]

AssumptionSource = Literal["protocol", "estimated"]


@dataclass(frozen=True)
class DesignMdes:
    """MDES at randomisation of one contrast (``mdes`` None with a ``reason``)."""

    contrast: str
    mdes: float | None
    design: PowerDesign
    units: int
    treated_share: float
    pupils_per_unit: float
    icc: float
    r2_learner: float
    r2_unit: float
    df: int
    source: AssumptionSource
    reason: str | None = None


def mdes_at_randomisation(
    plan: AnalysisPlan,
    contrast: str,
    units_treated: int,
    units_control: int,
    pupils_per_unit: float,
    estimated_icc: float | None = None,
) -> DesignMdes:
    """The PowerUp! MDES of one contrast with the units randomised (module docstring).

    Parameters
    ----------
    plan : AnalysisPlan
        Its ``power`` (the protocol's assumptions), unit, alpha, outcomes and covariates.
    contrast : str
        Name of the contrast, carried into the result.
    units_treated, units_control : int
        Units randomised in each arm of the contrast.
    pupils_per_unit : float
        Mean randomised pupils per unit (used without a ``power:`` section).
    estimated_icc : float, optional
        The primary outcome's estimated ICC (used without a ``power:`` section).

    Examples
    --------
    >>> from analysis.inputs import AnalysisPlan, DesignAssumptions, OutcomeSpec
    >>> plan = AnalysisPlan("x", "", "class", ("t", "c"), "c", (1.0, 1.0),
    ...                     (OutcomeSpec("y", True),),
    ...                     power=DesignAssumptions(icc=0.17, pupils_per_unit=15))
    >>> round(mdes_at_randomisation(plan, "t vs c", 10, 10, 0.0).mdes, 3)  # Dong & Maynard
    0.629
    """
    units = units_treated + units_control
    share = units_treated / units if units else math.nan
    individual = plan.unit == "learner"
    primary = next((o for o in plan.outcomes if o.primary), plan.outcomes[0])
    assumptions = plan.power
    source: AssumptionSource = "protocol"
    if assumptions is None:
        source = "estimated"
        icc = estimated_icc if estimated_icc is not None and math.isfinite(estimated_icc) else 0.0
        icc = min(max(icc, 0.0), 1.0)
        r2_learner = r2_unit = 0.0
        per_unit = pupils_per_unit
        power, blocks, covariates, two_tailed = 0.8, None, 0, True
    else:
        icc = assumptions.icc
        r2_learner, r2_unit = model_r2(assumptions.r2_learner, assumptions.r2_unit,
                                       pretest=primary.baseline is not None,
                                       covariates=bool(plan.covariates))
        per_unit = float(assumptions.pupils_per_unit)
        power, blocks, two_tailed = assumptions.power, assumptions.blocks, assumptions.two_tailed
        r2_level = r2_learner if individual else r2_unit
        covariates = (assumptions.covariates if assumptions.covariates is not None
                      else int(r2_level > 0))
    design: PowerDesign
    if individual:
        design = "IRA" if blocks is None else "BIRA2_1c"
    else:
        design = "CRA2_2r" if blocks is None else "BCRA3_2f"
    if units < 2 or not 0.0 < share < 1.0:
        return DesignMdes(contrast, None, design, units, share, per_unit, icc, r2_learner,
                          r2_unit, 0, source, reason="an arm of the contrast has no unit")
    inputs = DesignInputs(
        design=design, units=units,
        pupils_per_unit=max(1, round(per_unit)) if not individual else 1,
        icc=0.0 if individual else icc, r2_learner=r2_learner, r2_unit=r2_unit,
        treated_share=share, blocks=blocks, covariates=covariates, alpha=plan.alpha,
        power=power, two_tailed=two_tailed,
    )
    result = compute_mdes(inputs)
    if result.mdes is None and design == "BCRA3_2f":
        design = "CRA2_2r"
        result = compute_mdes(replace(inputs, design=design, blocks=None))
    return DesignMdes(contrast, result.mdes, design, units, share, per_unit,
                      inputs.icc, r2_learner, r2_unit, result.df, source, result.reason)
