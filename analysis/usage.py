"""Usage metrics from the usage file: how much each arm used the resource.

Per arm: learners with any active minute, mean and median active minutes per analysed
learner (learners without usage count as 0), mean active weeks, and the share of
learners meeting the protocol's compliance threshold. Every cell of fewer than 10 learners
is suppressed (its numbers are ``None``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analysis.inputs import AnalysisPlan, UsageTable
from analysis.sample import AnalysisSample
from analysis.suppression import is_suppressed, suppress_count

__all__ = ["ArmUsage", "compliance", "summarise_usage"]


@dataclass(frozen=True)
class ArmUsage:
    """Usage of one arm's analysed learners."""

    arm: str
    learners: int | None
    learners_with_usage: int | None
    mean_active_minutes: float | None
    median_active_minutes: float | None
    mean_active_weeks: float | None
    share_compliant: float | None


def compliance(plan: AnalysisPlan, usage: UsageTable, learner: npt.NDArray[np.int64]
               ) -> npt.NDArray[np.bool_]:
    """Whether each learner's active minutes over the file reach the protocol's threshold.

    The usage file is expected to cover the intervention period (docs/architecture.md: minutes per
    learner over the intervention); ``min_active_minutes`` is inclusive.
    """
    if plan.min_active_minutes is None:
        raise ValueError("the protocol declares no usage.compliance.min_active_minutes")
    return np.asarray(usage.minutes[learner] >= plan.min_active_minutes)


def summarise_usage(plan: AnalysisPlan, usage: UsageTable, sample: AnalysisSample
                    ) -> list[ArmUsage]:
    """Usage per arm over the learners of ``sample`` (the primary analysis sample)."""
    out: list[ArmUsage] = []
    for a, arm in enumerate(plan.arms):
        learners = sample.learner[sample.arm == a]
        n = int(learners.size)
        if is_suppressed(n):
            out.append(ArmUsage(arm, None, None, None, None, None, None))
            continue
        minutes = usage.minutes[learners]
        share = math.nan
        if plan.min_active_minutes is not None:
            compliant = int(np.count_nonzero(compliance(plan, usage, learners)))
            # The share and n give the count: hide it when the count is a small cell.
            share = math.nan if is_suppressed(compliant) else compliant / n
        out.append(ArmUsage(
            arm=arm,
            learners=n,
            learners_with_usage=suppress_count(int(np.count_nonzero(minutes > 0))),
            mean_active_minutes=float(minutes.mean()),
            median_active_minutes=float(np.median(minutes)),
            mean_active_weeks=float(usage.weeks[learners].mean()),
            share_compliant=share if math.isfinite(share) else None,
        ))
    return out
