"""The evidence rating of a report: 0 to 5 padlocks, « note de solidité Preuve, inspirée de l'EEF ».

The Education Endowment Foundation rates how secure a trial's finding is with padlocks
(EEF, *Classifying the security of EEF findings*, 2019). Not every rule below is the
EEF's, so the rating is named « note de solidité Preuve, inspirée de l'EEF », and each
step carries its source (``RatingStep.source``), shown beside it in the report:
``eef`` (EEF 2019), ``wwc`` (What Works Clearinghouse Standards Handbook v4.1) or
``preuve`` (« règle propre à Preuve »).

1. **Design** (``eef``). A randomised trial can reach 5 (every Preuve experiment is
   randomised).
2. **Power** (``eef``). The minimum detectable effect size *at randomisation* caps the
   rating: ≤ 0.20 → 5, 0.21-0.29 → 4, 0.30-0.39 → 3, 0.40-0.49 → 2, 0.50-0.59 → 1,
   ≥ 0.60 → 0 (EEF 2019, table 1, MDES column; read on the MDES rounded to 2 decimals, as
   the table is written). The MDES is the design's (``design.mdes_at_randomisation`` of
   the results, :mod:`analysis.design_mdes`: the units randomised, the protocol's ICC and
   R² assumptions, PowerUp!), not the trial's achieved standard error.
3. **Attrition** (``eef``). Pupil attrition from randomisation to analysis of the primary
   outcome caps the rating: 0-10 % → 5, 11-20 % → 4, 21-30 % → 3, 31-40 % → 2,
   41-50 % → 1, > 50 % → 0 (EEF 2019, table 1, attrition column; read on whole percents).
   It counts *every* randomised pupil, those of classes lost entirely included (the
   ``all_learners`` row of :mod:`analysis.attrition`; the ``learner`` row when pupils are
   the units).

   The two columns were transcribed from the EEF document as we know it; a reviewer
   should check them against the published PDF before a report is used for funding.
   Not verified: on 2026-11-22 no stored copy of *Classifying the security of EEF
   findings* (nor a secondary copy of its table 1) could be found with the search tools
   available offline; the EEF pages found describe the padlocks without the thresholds.
4. **Deductions**, after the start:
   - ``minus_differential_attrition`` (−1; boundary ``wwc``, size ``preuve``): a WWC
     attrition check (units, or pupils within the units that remain) is rated high
     against the protocol's boundary (cautious by default);
   - ``minus_imbalance_large`` (−2; threshold ``wwc``, size ``preuve``): a baseline
     difference over 0.25 SD (WWC: equivalence not established) — *except* on a
     characteristic the model adjusts for when attrition is low: the WWC asks for baseline
     equivalence only when attrition is high (a randomised trial with low attrition meets
     standards without it), and the adjustment removes the chance imbalance;
   - ``minus_imbalance_unadjusted`` (−1; threshold ``wwc``, size ``preuve``): a difference
     of 0.05-0.25 SD on a characteristic the model does not adjust for (WWC: adjustment
     required);
   - ``minus_sample_ratio`` (−1, ``preuve``): the allocation of units differs from the
     protocol's (χ² p < 0.001): the randomisation may not have been followed;
   - ``minus_few_units`` (−1, ``preuve``): fewer than 20 units analysed (cluster-robust
     inference with few clusters is fragile; Cameron & Miller 2015 discuss "few clusters"
     from around 20-50);
   - ``minus_developer_measure`` (−1, ``preuve``): the primary outcome is measured by the
     evaluated resource itself (the protocol declares it as the outcome's ``source``;
     ``design.developer_outcomes`` in the results): a measure designed by the developer
     (the WWC's standards do not accept an outcome over-aligned with the intervention).
     A rule of Preuve's own: we found no published padlock count for it
     (:func:`developer_measure_step`).
5. **Combination** (``eef`` for the start, ``preuve`` for the sum): the start is the lower
   of the design, power and attrition caps (as the EEF does); each deduction then removes
   its padlocks, the deductions add up, and the result is floored at 0. So a trial at the
   best caps with every deduction loses 1 + 2 + 1 + 1 = 5 (the two imbalance deductions
   exclude each other) and reaches 0; a trial without deductions keeps the lower cap.
   ``tests/unit/test_report.py`` checks both extremes.
6. No primary estimate: 0.

The rule is a pure function of the results JSON, so a reader can recompute it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from scipy import stats

from analysis.results import AnalysisResults

__all__ = [
    "ATTRITION_STEPS",
    "MDES_STEPS",
    "EvidenceRating",
    "RatingSource",
    "RatingStep",
    "attrition_padlocks",
    "developer_measure_step",
    "mdes_from_interval",
    "mdes_padlocks",
    "rate_evidence",
]

# (highest value of the row, padlocks): EEF 2019, "Classifying the security of EEF
# findings", table 1. MDES rows are read on 2 decimals, attrition rows on whole percents.
MDES_STEPS: Final[tuple[tuple[float, int], ...]] = (
    (0.20, 5), (0.29, 4), (0.39, 3), (0.49, 2), (0.59, 1))
ATTRITION_STEPS: Final[tuple[tuple[float, int], ...]] = (
    (0.10, 5), (0.20, 4), (0.30, 3), (0.40, 2), (0.50, 1))
FEW_UNITS: Final[int] = 20
"""Fewer analysed units than this cost a padlock (few-cluster inference; see module doc)."""


RatingSource = Literal["eef", "wwc", "preuve"]
"""Where a rule comes from: EEF 2019, the WWC Handbook v4.1, or Preuve's own rule."""


@dataclass(frozen=True)
class RatingStep:
    """One step of the rating: a message key, its padlocks (cap or deduction), a value,
    and the source of the rule (module docstring)."""

    key: str
    padlocks: int
    value: float | None = None
    source: RatingSource = "preuve"


@dataclass(frozen=True)
class EvidenceRating:
    """The padlocks (0-5) and the steps that led there, in order."""

    padlocks: int
    steps: tuple[RatingStep, ...]


def _step(value: float, steps: tuple[tuple[float, int], ...]) -> int:
    # 1e-9: a value exactly on a boundary (0.2, 10 %) gets the better rating, as in the
    # EEF table ("≤").
    for bound, padlocks in steps:
        if value <= bound + 1e-9:
            return padlocks
    return 0


def mdes_padlocks(mdes: float) -> int:
    """Padlocks allowed by the achieved MDES (Hedges' g units).

    Examples
    --------
    >>> mdes_padlocks(0.2), mdes_padlocks(0.21), mdes_padlocks(0.3), mdes_padlocks(0.6)
    (5, 4, 3, 0)
    """
    # 1e-12: 0.205 (a binary 0.20499…) rounds half up, as a reader of the table would.
    return _step(round(mdes + 1e-12, 2), MDES_STEPS) if math.isfinite(mdes) else 0


def attrition_padlocks(attrition: float) -> int:
    """Padlocks allowed by overall pupil attrition (a proportion).

    Examples
    --------
    >>> attrition_padlocks(0.1), attrition_padlocks(0.104), attrition_padlocks(0.51)
    (5, 5, 0)
    """
    if not math.isfinite(attrition):
        return 0
    return _step(round(100 * attrition + 1e-9) / 100, ATTRITION_STEPS)


def mdes_from_interval(g_low: float, g_high: float, df: float, alpha: float = 0.05,
                       power: float = 0.8) -> float:
    """Achieved MDES from a Hedges' g confidence interval (Bloom 1995 multiplier).

    Not what the rating reads (it reads the MDES at randomisation, issue 15); kept for
    readers who want to compare the design's MDES with what the trial achieved.

    Examples
    --------
    >>> round(mdes_from_interval(-0.196, 0.196, 1e6), 3)   # SE 0.1: 2.8 × SE
    0.28
    """
    if not (math.isfinite(g_low) and math.isfinite(g_high)) or not df > 0:
        return math.nan
    t_alpha = float(stats.t.ppf(1 - alpha / 2, df))
    se = (g_high - g_low) / 2 / t_alpha
    return (t_alpha + float(stats.t.ppf(power, df))) * se


def rate_evidence(results: AnalysisResults | Mapping[str, Any]) -> EvidenceRating:
    """The evidence rating of results (or of a results JSON object,
    :func:`analysis.results.to_json_dict`).

    Examples
    --------
    >>> rate_evidence({"effects": [], "checks": {}, "design": {}}).padlocks
    0
    """
    if not isinstance(results, AnalysisResults):
        results = AnalysisResults.from_json(results)
    primary = next(iter(results.effects_where(role="primary", estimand="ITT")), None)
    if primary is None or not primary.estimable:
        return EvidenceRating(0, (RatingStep("no_estimate", 0, source="preuve"),))
    checks = results.checks
    design = results.design
    outcome, contrast = primary.outcome, primary.contrast
    steps: list[RatingStep] = [RatingStep("design_rct", 5, source="eef")]
    planned = next((m for m in design.get("mdes_at_randomisation") or []
                    if m.get("contrast") == contrast), None)
    mdes = _num(planned.get("mdes")) if planned else math.nan
    cap_power = mdes_padlocks(mdes)
    steps.append(RatingStep("cap_power", cap_power, mdes if math.isfinite(mdes) else None,
                            source="eef"))
    mine = [a for a in checks.get("attrition", [])
            if a.outcome == outcome and a.contrast == contrast]
    level = "learner" if design.get("unit") == "learner" else "all_learners"
    pupils = next((a for a in mine if a.level == level), None)
    overall = _num(pupils.overall) if pupils else math.nan
    cap_attrition = attrition_padlocks(overall)
    steps.append(RatingStep("cap_attrition", cap_attrition,
                            overall if math.isfinite(overall) else None, source="eef"))
    padlocks = min(5, cap_power, cap_attrition)
    wwc = [a for a in mine if a.level in ("unit", "learner")]
    # (a check stored before ``rating`` is rated under the cautious boundary: from_json)
    high_attrition = any(a.rating == "high" for a in wwc)
    if high_attrition:
        steps.append(RatingStep("minus_differential_attrition", -1, source="wwc"))
        padlocks -= 1
    balance = [b for b in checks.get("baseline_equivalence", [])
               if b.outcome == outcome and b.contrast == contrast]
    # WWC: baseline equivalence matters when attrition is high; with low attrition, an
    # imbalance on a characteristic the model adjusts for costs nothing.
    counted = [b for b in balance if high_attrition or not b.adjusted_in_model]
    if any(b.equivalence == "not satisfied" for b in counted):
        steps.append(RatingStep("minus_imbalance_large", -2, source="wwc"))
        padlocks -= 2
    elif any(b.equivalence == "adjustment required" and not b.adjusted_in_model
             for b in counted):
        steps.append(RatingStep("minus_imbalance_unadjusted", -1, source="wwc"))
        padlocks -= 1
    srm = checks.get("sample_ratio")
    if srm and srm.mismatch:
        steps.append(RatingStep("minus_sample_ratio", -1, source="preuve"))
        padlocks -= 1
    units = sum(v for v in (primary.n_units or {}).values() if v is not None)
    if design.get("unit") != "learner" and units < FEW_UNITS:
        steps.append(RatingStep("minus_few_units", -1, float(units), source="preuve"))
        padlocks -= 1
    developer = developer_measure_step(results, outcome)
    if developer is not None:
        steps.append(developer)
        padlocks += developer.padlocks
    return EvidenceRating(max(0, padlocks), tuple(steps))


def developer_measure_step(results: AnalysisResults | Mapping[str, Any], outcome: str
                           ) -> RatingStep | None:
    """−1 padlock when ``outcome`` (the primary one) is measured by the evaluated resource
    itself (``design.developer_outcomes``); None otherwise. Règle propre à Preuve.

    Examples
    --------
    >>> developer_measure_step({"design": {"developer_outcomes": ["fluence"]}}, "fluence")
    RatingStep(key='minus_developer_measure', padlocks=-1, value=None, source='preuve')
    >>> developer_measure_step({"design": {}}, "fluence") is None
    True
    """
    design = results.design if isinstance(results, AnalysisResults) else results.get("design", {})
    if outcome in (design.get("developer_outcomes") or []):
        return RatingStep("minus_developer_measure", -1, source="preuve")
    return None


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan
