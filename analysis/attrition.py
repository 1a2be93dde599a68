"""Overall and differential attrition against the What Works Clearinghouse boundaries.

For each contrast (treatment arm vs control) and each level:

* ``unit`` (class or school): units randomised vs units with at least one analysed learner;
* ``learner``: learners on record (any score in the outcomes file) in the units that remain,
  vs learners analysed for the outcome (WWC Standards Handbook v4.1, cluster-level
  designs: individual attrition is assessed within the clusters that remain).

A third level, ``all_learners``, counts every randomised pupil, including the pupils of
units lost entirely (their count comes from the units file's ``pupils`` column, or from
their learners on record): the share of pupils lost between randomisation and analysis
that the evidence rating reads (:mod:`analysis.report.rating`). It is shown with the WWC
boundaries but is not one of the WWC's two cluster-design checks.

Overall attrition is ``1 - analysed / randomised`` over both arms; differential attrition
is the absolute difference between the arms' attrition rates. The boundary table (WWC
Standards Handbook v4.1, Table II.1) ships as data in ``wwc_attrition_boundaries.json``
with its source. Reading rule (Preuve's, issue 15): the row is the overall attrition
**rounded up** to the next whole percent (conservative), and the differential is compared
**unrounded** with that row's boundary.

Boundary: the WWC's *cautious* one by default; the *optimistic* one only when the protocol
declares it (``analysis.attrition_boundary: optimistic``), and then each check says when
the row it read is one of the unverified rows of that column. The data file's
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
    "AttritionLevel",
    "AttritionRating",
    "attrition_boundary",
    "boundary_row",
    "boundary_table",
    "check_attrition",
    "optimistic_row_unverified",
    "rate_attrition",
]

AttritionRating = Literal["low", "high"]
AttritionLevel = Literal["unit", "learner", "all_learners"]


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
    >>> attrition_boundary(0.102, "cautious")   # read on the row of 11 %
    0.062
    """
    percent = boundary_row(overall)
    rows = boundary_table()["rows"]
    assert isinstance(rows, list)
    if percent < 0 or percent >= len(rows):
        return None
    value = rows[percent][assumption]
    return None if value is None else round(float(value) / 100.0, 6)


def boundary_row(overall: float) -> int:
    """The row of Table II.1 read for an overall attrition: the whole percent above it.

    Rounded up (issue 15: the conservative choice); ``1e-9`` keeps a rate that is a whole
    percent up to binary noise (``0.1 * 100``) on its own row.

    Examples
    --------
    >>> boundary_row(0.10), boundary_row(0.1001), boundary_row(0.0)
    (10, 11, 0)
    """
    return math.ceil(overall * 100 - 1e-9)


def optimistic_row_unverified(overall: float) -> bool:
    """True when the optimistic boundary of this overall rate is an unverified row.

    Examples
    --------
    >>> optimistic_row_unverified(0.12), optimistic_row_unverified(0.121)
    (False, True)
    """
    span = boundary_table()["optimistic_unverified_rows"]
    assert isinstance(span, dict)
    return int(span["first"]) <= boundary_row(overall) <= int(span["last"])


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
    """Attrition of one contrast at one level; learner counts under 10 are suppressed.

    ``rating`` and ``boundary`` are those of the protocol's ``assumption`` (cautious by
    default); the cautious ones are always given as well, the optimistic ones only when the
    protocol declares that boundary. ``boundary_row`` is the row read (whole percent,
    rounded up); ``unverified`` says why that row of the optimistic column is not verified.
    """

    outcome: str
    contrast: str
    level: AttritionLevel
    randomised: dict[str, int | None]
    analysed: dict[str, int | None]
    overall: float
    differential: float
    boundary_cautious: float | None
    boundary_optimistic: float | None
    cautious: AttritionRating | None
    optimistic: AttritionRating | None
    reason: str | None = None
    assumption: AttritionAssumption = "cautious"
    boundary: float | None = None
    rating: AttritionRating | None = None
    boundary_row: int | None = None
    unverified: str | None = None


def check_attrition(
    *,
    outcome: str,
    contrast: str,
    level: AttritionLevel,
    randomised: dict[str, int],
    analysed: dict[str, int],
    assumption: AttritionAssumption = "cautious",
) -> AttritionCheck:
    """Rate the attrition of a two-arm contrast (``randomised`` and ``analysed`` by arm).

    The first key of the mappings is the treatment arm, the second the control.
    ``assumption`` is the protocol's WWC boundary (``analysis.attrition_boundary``).
    """
    arms = list(randomised)
    rates = [1.0 - analysed[a] / randomised[a] if randomised[a] else math.nan for a in arms]
    total = sum(randomised.values())
    overall = 1.0 - sum(analysed.values()) / total if total else math.nan
    differential = abs(rates[0] - rates[1]) if len(rates) == 2 else math.nan
    # Rates and randomised counts would give away an analysed count under 10: hide both.
    pupils = level != "unit"
    hidden = pupils and any(
        is_suppressed(randomised[a]) or is_suppressed(analysed[a]) for a in arms)
    shown = {a: (None if pupils and is_suppressed(n) else n) for a, n in randomised.items()}
    shown_analysed = {a: (None if pupils and is_suppressed(n) else n)
                      for a, n in analysed.items()}
    if hidden or not (math.isfinite(overall) and math.isfinite(differential)):
        return AttritionCheck(outcome, contrast, level, shown, shown_analysed, math.nan,
                              math.nan, None, None, None, None,
                              reason="suppressed: fewer than 10 learners in an arm" if hidden
                              else "no unit or learner randomised in an arm",
                              assumption=assumption)
    optimistic = assumption == "optimistic"
    unverified = None
    if optimistic and optimistic_row_unverified(overall):
        span = boundary_table()["optimistic_unverified_rows"]
        assert isinstance(span, dict)
        unverified = (f"optimistic boundary of row {boundary_row(overall)} % not verified: "
                      f"rows {span['first']}-{span['last']} of that column are unverified "
                      f"({span['why']})")
    return AttritionCheck(
        outcome=outcome, contrast=contrast, level=level, randomised=shown,
        analysed=shown_analysed, overall=overall, differential=differential,
        boundary_cautious=attrition_boundary(overall, "cautious"),
        boundary_optimistic=attrition_boundary(overall, "optimistic") if optimistic else None,
        cautious=rate_attrition(overall, differential, "cautious"),
        optimistic=rate_attrition(overall, differential, "optimistic") if optimistic else None,
        assumption=assumption,
        boundary=attrition_boundary(overall, assumption),
        rating=rate_attrition(overall, differential, assumption),
        boundary_row=boundary_row(overall),
        unverified=unverified,
    )
