"""Overall and differential attrition against the What Works Clearinghouse boundaries.

For each contrast (treatment arm vs control) and each level:

* ``unit`` (class or school): units randomised vs units with at least one analysed learner;
* ``learner``: learners on record (any score in the outcomes file) in the units that remain,
  vs learners analysed for the outcome (WWC Standards Handbook v4.1, cluster-level
  designs: individual attrition is assessed within the clusters that remain).

Overall attrition is ``1 - analysed / randomised`` over both arms; differential attrition
is the absolute difference between the arms' attrition rates. The boundary table (WWC
Standards Handbook v4.1, Table II.1) ships as data in ``wwc_attrition_boundaries.json``
with its source; overall attrition is rounded to a whole percent to read it. Its
``verification`` note says what could be checked: the cautious column agrees with a second
transcription; the optimistic column differs from it by one row from 13 % on, unresolved
without the Handbook (``tests/statistics/test_analysis_reference_tables.py``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

from analysis.options import AttritionAssumption
from analysis.suppression import is_suppressed

__all__ = [
    "AttritionCheck",
    "AttritionRating",
    "attrition_boundary",
    "boundary_table",
    "check_attrition",
    "rate_attrition",
]

AttritionRating = Literal["low", "high"]


@cache
def boundary_table() -> dict[str, object]:
    """The WWC boundary table as shipped (``source``, ``rows``…)."""
    text = resources.files("analysis").joinpath("wwc_attrition_boundaries.json").read_text(
        encoding="utf-8")
    table: dict[str, object] = json.loads(text)
    return table


def attrition_boundary(overall: float, assumption: AttritionAssumption) -> float | None:
    """Highest differential attrition (a proportion) still rated low, or None (always high).

    Parameters
    ----------
    overall : float
        Overall attrition as a proportion in [0, 1].
    assumption : {"cautious", "optimistic"}

    Examples
    --------
    >>> attrition_boundary(0.10, "cautious"), attrition_boundary(0.70, "optimistic")
    (0.063, None)
    """
    percent = int(math.floor(overall * 100 + 0.5 + 1e-9))  # round half up, as a reader would
    rows = boundary_table()["rows"]
    assert isinstance(rows, list)
    if percent < 0 or percent >= len(rows):
        return None
    value = rows[percent][assumption]
    return None if value is None else round(float(value) / 100.0, 6)


def rate_attrition(overall: float, differential: float, assumption: AttritionAssumption
                   ) -> AttritionRating:
    """``"low"`` when the differential is at or under the boundary for that overall rate."""
    boundary = attrition_boundary(overall, assumption)
    if boundary is None:
        return "high"
    # 1e-9: a differential exactly on the boundary must not be pushed over by rounding.
    return "low" if differential <= boundary + 1e-9 else "high"


@dataclass(frozen=True)
class AttritionCheck:
    """Attrition of one contrast at one level; learner counts under 10 are suppressed."""

    outcome: str
    contrast: str
    level: Literal["unit", "learner"]
    randomised: dict[str, int | None]
    analysed: dict[str, int | None]
    overall: float
    differential: float
    boundary_cautious: float | None
    boundary_optimistic: float | None
    cautious: AttritionRating | None
    optimistic: AttritionRating | None
    reason: str | None = None


def check_attrition(
    *,
    outcome: str,
    contrast: str,
    level: Literal["unit", "learner"],
    randomised: dict[str, int],
    analysed: dict[str, int],
) -> AttritionCheck:
    """Rate the attrition of a two-arm contrast (``randomised`` and ``analysed`` by arm).

    The first key of the mappings is the treatment arm, the second the control.
    """
    arms = list(randomised)
    rates = [1.0 - analysed[a] / randomised[a] if randomised[a] else math.nan for a in arms]
    total = sum(randomised.values())
    overall = 1.0 - sum(analysed.values()) / total if total else math.nan
    differential = abs(rates[0] - rates[1]) if len(rates) == 2 else math.nan
    # Rates and randomised counts would give away an analysed count under 10: hide both.
    hidden = level == "learner" and any(
        is_suppressed(randomised[a]) or is_suppressed(analysed[a]) for a in arms)
    shown = {a: (None if level == "learner" and is_suppressed(n) else n)
             for a, n in randomised.items()}
    shown_analysed = {a: (None if level == "learner" and is_suppressed(n) else n)
                      for a, n in analysed.items()}
    if hidden or not (math.isfinite(overall) and math.isfinite(differential)):
        return AttritionCheck(outcome, contrast, level, shown, shown_analysed, math.nan,
                              math.nan, None, None, None, None,
                              reason="suppressed: fewer than 10 learners in an arm" if hidden
                              else "no unit or learner randomised in an arm")
    return AttritionCheck(
        outcome=outcome, contrast=contrast, level=level, randomised=shown,
        analysed=shown_analysed, overall=overall, differential=differential,
        boundary_cautious=attrition_boundary(overall, "cautious"),
        boundary_optimistic=attrition_boundary(overall, "optimistic"),
        cautious=rate_attrition(overall, differential, "cautious"),
        optimistic=rate_attrition(overall, differential, "optimistic"),
    )
