"""From a protocol's ``power:`` section to PowerUp! designs, one per contrast.

The design follows the protocol: learners randomised → ``IRA``, or ``BIRA2_1c`` when
``power.blocks`` gives the number of strata; classes or schools → ``CRA2_2r``, or
``BCRA3_2f`` with ``power.blocks``. Each
treatment arm is compared with the control arm on the units of those two arms, with
the treated share given by their allocations.

The R² follow the analysis model. When the primary outcome has no pre-test (no
``baseline:``), the model adjusts for the declared covariates and strata only: with no
covariate either, nothing explains variance and the R² are 0 whatever ``power:``
declares (the declared values are ignored, with a note); with covariates, the declared
R² are used and a note says they must come from those covariates alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.power import (
    DesignInputs,
    MdesResult,
    PowerDesign,
    compute_mdes,
    model_r2,
    units_needed,
)
from experiments.protocol.language import Protocol

__all__ = ["ContrastPower", "PowerReport", "protocol_power"]

DESIGN_NAMES: dict[PowerDesign, str] = {
    "IRA": "individual random assignment",
    "BIRA2_1c": "individual random assignment within blocks, constant effect",
    "CRA2_2r": "2-level cluster random assignment",
    "BCRA3_2f": "cluster random assignment within blocks, fixed block effects",
}


@dataclass(frozen=True)
class ContrastPower:
    """MDES of one contrast; ``units_needed`` counts the units of all arms."""

    contrast: str
    inputs: DesignInputs
    result: MdesResult
    units_needed: int | None = None
    units_needed_reason: str | None = None


@dataclass(frozen=True)
class PowerReport:
    """MDES of every contrast; the headline is the weakest (largest MDES) contrast."""

    design: PowerDesign
    contrasts: tuple[ContrastPower, ...]
    notes: tuple[str, ...]

    @property
    def headline(self) -> ContrastPower:
        """The contrast with the largest MDES (the design must detect effects on all)."""
        estimable = [c for c in self.contrasts if c.result.mdes is not None]
        if not estimable:
            return self.contrasts[0]
        return max(estimable, key=lambda c: c.result.mdes or 0.0)


def protocol_power(protocol: Protocol, target_mdes: float | None = None) -> PowerReport:
    """PowerUp! MDES of a protocol's design, per contrast.

    Parameters
    ----------
    protocol:
        A protocol with a ``power:`` section.
    target_mdes:
        When given, also the fewest units (all arms) reaching it.

    Returns
    -------
    PowerReport

    Raises
    ------
    ValueError
        The protocol has no ``power:`` section.
    """
    power = protocol.power
    if power is None:
        raise ValueError(f"{protocol.id}: no `power:` section")
    notes: list[str] = []
    strata = protocol.randomisation.strata
    design: PowerDesign
    if protocol.population.unit == "learner":
        design = "IRA" if power.blocks is None else "BIRA2_1c"
        if strata and power.blocks is None:
            notes.append(
                "power.blocks is not given: the strata are ignored (IRA); "
                "give the number of blocks for a blocked design (BIRA2_1c)"
            )
    elif power.blocks is not None:
        design = "BCRA3_2f"
    else:
        design = "CRA2_2r"
        if strata:
            notes.append(
                "power.blocks is not given: the strata are ignored (CRA2_2r); "
                "give the number of blocks for a blocked design (BCRA3_2f)"
            )
    individual = protocol.population.unit == "learner"
    r2_learner, r2_unit = _r2_of_the_model(protocol, notes)
    r2_level = r2_learner if individual else r2_unit
    covariates = power.covariates if power.covariates is not None else int(r2_level > 0)
    if r2_learner == r2_unit == 0.0 and not protocol.analysis.covariates:
        covariates = 0
    total = sum(a.allocation for a in protocol.arms)
    control = protocol.control_arm
    contrasts = []
    for arm in protocol.arms:
        if arm.control:
            continue
        pair = arm.allocation + control.allocation
        inputs = DesignInputs(
            design=design,
            units=power.units if len(protocol.arms) == 2 else round(power.units * pair / total),
            pupils_per_unit=power.pupils_per_unit,
            icc=0.0 if individual else power.icc,
            r2_learner=r2_learner,
            r2_unit=r2_unit,
            treated_share=arm.allocation / pair,
            blocks=power.blocks,
            covariates=covariates,
            alpha=protocol.analysis.alpha,
            power=power.power,
            two_tailed=power.two_tailed,
        )
        needed: int | None = None
        reason: str | None = None
        if target_mdes is not None:
            found = units_needed(inputs, target_mdes)
            reason = found.reason
            if found.units is not None:
                # Back to the units of all arms, keeping the allocation ratio.
                needed = math.ceil(found.units * total / pair - 1e-9)
        contrasts.append(
            ContrastPower(
                f"{arm.name} vs {control.name}", inputs, compute_mdes(inputs), needed, reason
            )
        )
    return PowerReport(design, tuple(contrasts), tuple(notes))


def _r2_of_the_model(protocol: Protocol, notes: list[str]) -> tuple[float, float]:
    """``(r2_learner, r2_unit)`` the analysis model can reach (see the module docstring)."""
    power = protocol.power
    assert power is not None
    primary = next((o for o in protocol.outcomes if o.primary), protocol.outcomes[0])
    covariates = protocol.analysis.covariates
    r2 = model_r2(power.r2_learner, power.r2_unit, pretest=primary.baseline is not None,
                  covariates=bool(covariates))
    if primary.baseline is not None:
        return r2
    if not covariates:
        if power.r2_learner or power.r2_unit:
            notes.append(
                f"the primary outcome {primary.id!r} has no pre-test and the analysis "
                "declares no covariate: R² set to 0 (declared r2_learner "
                f"{power.r2_learner}, r2_unit {power.r2_unit} ignored)"
            )
        return r2
    notes.append(
        f"the primary outcome {primary.id!r} has no pre-test: r2_learner and r2_unit must "
        f"be the variance explained by the covariates {covariates} alone"
    )
    return r2
