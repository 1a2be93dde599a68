"""The evidence rating of a report: 0 to 5 padlocks, in the spirit of the EEF's.

The Education Endowment Foundation rates how secure a trial's finding is with padlocks
(EEF, *Classifying the security of EEF findings*, 2019). We follow its structure:

1. **Design.** A randomised trial can reach 5 (every Preuve experiment is randomised).
2. **Power.** The minimum detectable effect size (MDES) the trial actually achieved
   caps the rating: ≤ 0.20 → 5, 0.21-0.29 → 4, 0.30-0.39 → 3, 0.40-0.49 → 2,
   0.50-0.59 → 1, ≥ 0.60 → 0 (EEF 2019, table 1, MDES column; read on the MDES rounded
   to 2 decimals, as the table is written). We compute it after the fact from the
   primary effect's confidence interval in Hedges' g units:
   ``MDES = (t(1-α/2, df) + t(0.8, df)) × SE(g)``, with ``SE(g)`` the half-width of the
   interval over ``t(1-α/2, df)`` (Bloom 1995: the MDES is a multiple of the standard
   error; 80 % power as the EEF uses).
3. **Attrition.** Pupil attrition (randomised → analysed, primary outcome) caps the
   rating: 0-10 % → 5, 11-20 % → 4, 21-30 % → 3, 31-40 % → 2, 41-50 % → 1, > 50 % → 0
   (EEF 2019, table 1, attrition column; read on whole percents). The start is the lower
   of the power and attrition caps, as the EEF does.

   The two columns were transcribed from the EEF document as we know it; a reviewer
   should check them against the published PDF before a report is used for funding.
   Not verified: on 2026-11-22 no stored copy of *Classifying the security of EEF
   findings* (nor a secondary copy of its table 1) could be found with the search tools
   available offline; the EEF pages found describe the padlocks without the thresholds.
4. **Deductions** (EEF 2019, "threats to validity" and "balance at baseline"; WWC
   thresholds for the size of an imbalance):
   - one padlock when the WWC cautious boundary rates the attrition (units or pupils) as
     high (differential attrition can bias the estimate even when overall attrition is
     modest);
   - two padlocks when a baseline difference exceeds 0.25 SD (WWC: equivalence not
     established), one when a difference between 0.05 and 0.25 SD is not adjusted for
     in the model (WWC: adjustment required);
   - one padlock when the allocation of units differs from the protocol's (sample ratio
     mismatch, χ² p < 0.001): the randomisation may not have been followed;
   - one padlock when fewer than 20 units were analysed: with so few clusters the
     cluster-robust interval is fragile (Cameron & Miller 2015 discuss "few clusters"
     from around 20–50);
   - one padlock when the primary outcome is measured by the evaluated resource itself
     (the protocol declares it as the outcome's ``source``; ``design.developer_outcomes``
     in the results): a measure designed by the developer (the WWC's standards do not
     accept an outcome over-aligned with the intervention). A rule of Preuve's own: we
     found no published padlock count for it (:func:`developer_measure_step`).
5. No primary estimate: 0.

The rule is a pure function of the results JSON, so a reader can recompute it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from scipy import stats

__all__ = [
    "ATTRITION_STEPS",
    "MDES_STEPS",
    "EvidenceRating",
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


@dataclass(frozen=True)
class RatingStep:
    """One step of the rating: a message key, its padlocks (cap or deduction), a value."""

    key: str
    padlocks: int
    value: float | None = None


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


def rate_evidence(results: Mapping[str, Any]) -> EvidenceRating:
    """The evidence rating of a results JSON object (:func:`analysis.results.to_json_dict`).

    Examples
    --------
    >>> rate_evidence({"effects": [], "checks": {}, "design": {}}).padlocks
    0
    """
    effects = results.get("effects", [])
    primary = next((e for e in effects if e.get("role") == "primary"
                    and e.get("estimand") == "ITT"), None)
    if primary is None or primary.get("estimate") is None:
        return EvidenceRating(0, (RatingStep("no_estimate", 0),))
    checks = results.get("checks", {})
    alpha = float(results.get("design", {}).get("alpha", 0.05))
    steps: list[RatingStep] = [RatingStep("design_rct", 5)]
    mdes = mdes_from_interval(_num(primary.get("hedges_g_ci_low")),
                              _num(primary.get("hedges_g_ci_high")),
                              _num(primary.get("df")), alpha)
    cap_power = mdes_padlocks(mdes)
    steps.append(RatingStep("cap_power", cap_power, mdes if math.isfinite(mdes) else None))
    outcome, contrast = primary["outcome"], primary["contrast"]
    mine = [a for a in checks.get("attrition", [])
            if a.get("outcome") == outcome and a.get("contrast") == contrast]
    pupils = next((a for a in mine if a.get("level") == "learner"), None)
    overall = _num(pupils.get("overall")) if pupils else math.nan
    cap_attrition = attrition_padlocks(overall)
    steps.append(RatingStep("cap_attrition", cap_attrition,
                            overall if math.isfinite(overall) else None))
    padlocks = min(5, cap_power, cap_attrition)
    if any(a.get("cautious") == "high" for a in mine):
        steps.append(RatingStep("minus_differential_attrition", -1))
        padlocks -= 1
    balance = [b for b in checks.get("baseline_equivalence", [])
               if b.get("outcome") == outcome and b.get("contrast") == contrast]
    if any(b.get("equivalence") == "not satisfied" for b in balance):
        steps.append(RatingStep("minus_imbalance_large", -2))
        padlocks -= 2
    elif any(b.get("equivalence") == "adjustment required" and not b.get("adjusted_in_model")
             for b in balance):
        steps.append(RatingStep("minus_imbalance_unadjusted", -1))
        padlocks -= 1
    if (checks.get("sample_ratio") or {}).get("mismatch"):
        steps.append(RatingStep("minus_sample_ratio", -1))
        padlocks -= 1
    units = sum(v for v in (primary.get("n_units") or {}).values() if v is not None)
    if results.get("design", {}).get("unit") != "learner" and units < FEW_UNITS:
        steps.append(RatingStep("minus_few_units", -1, float(units)))
        padlocks -= 1
    developer = developer_measure_step(results, outcome)
    if developer is not None:
        steps.append(developer)
        padlocks += developer.padlocks
    return EvidenceRating(max(0, padlocks), tuple(steps))


def developer_measure_step(results: Mapping[str, Any], outcome: str) -> RatingStep | None:
    """−1 padlock when ``outcome`` (the primary one) is measured by the evaluated resource
    itself (``design.developer_outcomes``); None otherwise. Règle propre à Preuve.

    Examples
    --------
    >>> developer_measure_step({"design": {"developer_outcomes": ["fluence"]}}, "fluence")
    RatingStep(key='minus_developer_measure', padlocks=-1, value=None)
    >>> developer_measure_step({"design": {}}, "fluence") is None
    True
    """
    if outcome in (results.get("design", {}).get("developer_outcomes") or []):
        return RatingStep("minus_developer_measure", -1)
    return None


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan
