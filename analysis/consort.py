"""CONSORT flow of a cluster trial (Campbell et al. 2012, CONSORT 2010 extension to
cluster randomised trials, item 13): units and pupils per arm, from allocation to analysis.

In the offline files, the units file lists the units allocated (enrolled units that were
not randomised do not reach it), so ``units_enrolled`` equals ``units_allocated`` there;
pupils are on record when they have any score in the outcomes file. Pupil counts under 10
are suppressed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.inputs import AnalysisPlan, OutcomeTable, UnitTable
from analysis.sample import AnalysisSample
from analysis.suppression import suppress_count

__all__ = ["ConsortArm", "consort_flow"]


@dataclass(frozen=True)
class ConsortArm:
    """The flow of one arm."""

    arm: str
    units_enrolled: int
    units_allocated: int
    units_analysed: int
    learners_on_record: int | None
    learners_with_baseline: int | None
    learners_analysed: int | None


def consort_flow(plan: AnalysisPlan, units: UnitTable, outcomes: OutcomeTable,
                 primary: AnalysisSample, baseline_measure: str | None) -> list[ConsortArm]:
    """CONSORT counts per arm for the primary outcome's analysis."""
    n_arms = len(plan.arms)
    allocated = np.bincount(units.arm_code, minlength=n_arms)
    learner_arm = units.arm_code[outcomes.learner_unit]
    on_record = np.bincount(learner_arm, minlength=n_arms)
    with_baseline = np.zeros(n_arms, dtype=np.int64)
    if baseline_measure is not None and baseline_measure in outcomes.measure.categories:
        code = outcomes.measure.categories.get_loc(baseline_measure)
        rows = (outcomes.measure.codes == code) & ~outcomes.is_endline & ~np.isnan(outcomes.score)
        has_baseline = np.zeros(outcomes.n_learners, dtype=bool)
        has_baseline[outcomes.learner[rows]] = True
        with_baseline = np.bincount(learner_arm[has_baseline], minlength=n_arms)
    analysed = np.bincount(primary.arm, minlength=n_arms)
    unit_arm = units.arm_code[np.flatnonzero(np.bincount(primary.unit, minlength=units.n_units))]
    units_analysed = np.bincount(unit_arm, minlength=n_arms)
    return [
        ConsortArm(
            arm=arm,
            units_enrolled=int(allocated[i]),
            units_allocated=int(allocated[i]),
            units_analysed=int(units_analysed[i]),
            learners_on_record=suppress_count(int(on_record[i])),
            learners_with_baseline=suppress_count(int(with_baseline[i])),
            learners_analysed=suppress_count(int(analysed[i])),
        )
        for i, arm in enumerate(plan.arms)
    ]
