"""Options of the analysis engine, as ``Literal`` aliases (gbstats ``models/settings.py``).

Every option the protocol can set is listed here once, with the check that turns a bad
value into a message naming the allowed values (pyfixest ``estimation/internals/literals.py``).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "MIN_CELL_PUPILS",
    "AttritionAssumption",
    "ClusterCorrection",
    "LANGUAGES",
    "DesignType",
    "Estimand",
    "Language",
    "MixedDf",
    "Model",
    "MultipleComparisons",
    "Role",
    "SynthesisMethod",
    "SynthesisTest",
    "UnitLevel",
    "check_option",
]

UnitLevel = Literal["learner", "class", "school"]
"""Unit of randomisation (``population.unit`` of the protocol)."""

Model = Literal["ancova", "mixed"]
"""``ancova``: OLS with cluster-robust standard errors; ``mixed``: random intercepts (REML)."""

MixedDf = Literal["satterthwaite", "kenward-roger"]
"""Degrees of freedom of the ``mixed`` model: Satterthwaite (lmerTest's default) or
Kenward-Roger (pbkrtest; adjusted standard error too)."""

Estimand = Literal["ITT", "CACE"]
"""Intention-to-treat; complier average causal effect (needs ``usage.compliance``)."""

MultipleComparisons = Literal["holm", "bonferroni", "benjamini-hochberg", "none"]
"""Correction applied within each family of tests (the protocol's ``multiple_comparisons``)."""

AttritionAssumption = Literal["cautious", "optimistic"]
"""The two WWC attrition boundaries (Standards Handbook v4.1, Table II.1)."""

ClusterCorrection = Literal["cr2", "cr1", "cr1-strata"]
"""Cluster-robust inference by unit (see ``analysis/_ols.py``): ``cr2`` (default), the
Bell-McCaffrey CR2 with Satterthwaite df (Pustejovsky & Tipton 2018), which is HC2 with
Bell-McCaffrey df when learners are randomised; ``cr1``, ``G/(G-1) (N-1)/(N-K)`` with
``G-1`` df (HC1 with ``N-K`` df for learners); ``cr1-strata``, ``G/(G-S)`` with ``S``
absorbed strata and ``G-S`` df: Preuve's earlier default, not a published estimator, kept
only to reproduce reports made with it."""

Role = Literal["primary", "secondary", "subgroup", "cace", "did", "exploratory"]
"""What an effect is for: confirmatory (primary), secondary, a subgroup, CACE,
difference-in-differences (roll-out designs), exploratory."""

SynthesisMethod = Literal["reml", "dl", "pm"]
"""Estimator of the between-study variance tau² in an evidence synthesis (``analysis/
synthesis.py``): restricted maximum likelihood, DerSimonian-Laird, Paule-Mandel."""

SynthesisTest = Literal["knha", "z"]
"""Interval of a pooled effect: Hartung-Knapp-Sidik-Jonkman (t, k - 1 df) or normal."""

DesignType = Literal["parallel", "waitlist", "staggered"]
"""The protocol's ``design.type``: DiD estimates are added for waitlist and staggered."""

Language = Literal["fr", "en"]
"""Languages of the reports and the portal: French first, English available."""

LANGUAGES: Final[tuple[Language, ...]] = get_args(Language)

MIN_CELL_PUPILS: Final = 10
"""Cells of fewer pupils than this are suppressed in every output (docs/architecture.md)."""


def check_option(value: str, allowed: object, name: str) -> str:
    """Return ``value`` if it is one of the ``Literal`` alias ``allowed``, else raise.

    Parameters
    ----------
    value : str
        The value given (e.g. by a protocol).
    allowed : a ``Literal`` alias
        The alias listing the valid values.
    name : str
        Name of the option, for the message.

    Returns
    -------
    str
        ``value`` unchanged.

    Raises
    ------
    ValueError
        ``"{name}: expecting one of {valid}. Got {value!r}"``.

    Examples
    --------
    >>> check_option("ancova", Model, "analysis.model")
    'ancova'
    """
    valid = get_args(allowed)
    if value not in valid:
        raise ValueError(f"{name}: expecting one of {list(valid)}. Got {value!r}")
    return value
