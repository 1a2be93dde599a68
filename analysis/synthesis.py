"""Evidence synthesis: random-effects meta-analysis of the primary effects of several trials.

Each study brings one confirmatory effect (Hedges' g) and its standard error. The model is
the usual random-effects model ``y_i = mu + u_i + e_i``, ``u_i ~ N(0, tau²)``,
``e_i ~ N(0, v_i)`` with ``v_i`` the study's sampling variance taken as known
(Viechtbauer, "Conducting meta-analyses in R with the metafor package", *J. Stat. Softw.*
36(3), 2010, section 2). The formulas below are metafor's (``rma.uni``, version 3.8), and
``tests/statistics/test_synthesis_metafor.py`` checks every number against R's metafor to
1e-6:

* tau² by REML (the root of the restricted likelihood's score, truncated at 0),
  DerSimonian-Laird (method of moments, *Control. Clin. Trials* 7, 1986) or Paule-Mandel
  (generalised Q equal to its expectation, *J. Res. NBS* 87, 1982);
* the pooled effect ``mu = Σ w_i y_i / Σ w_i`` with ``w_i = 1 / (v_i + tau²)``;
* its interval: normal (``test="z"``) or Hartung-Knapp-Sidik-Jonkman (``test="knha"``,
  Hartung & Knapp, *Stat. Med.* 20, 2001; Sidik & Jonkman, *Stat. Med.* 21, 2002): the
  variance scaled by ``Σ w_i (y_i - mu)² / (k - 1)``, t with ``k - 1`` df, not truncated
  (metafor's ``knha``; the truncated variant is its ``adhoc``);
* I² and H² from tau² and the "typical" within-study variance
  ``s² = (k - 1) Σ w / ((Σ w)² - Σ w²)`` (Higgins & Thompson, *Stat. Med.* 21, 2002, eq. 9);
* the prediction interval ``mu ± c sqrt(se² + tau²)`` with ``c`` the same normal or
  t(k - 1) quantile as the interval (metafor's ``predict.rma``).

Preuve uses HKSJ by default: with the few trials a programme runs, the normal interval
is too narrow (IntHout, Ioannidis & Borm, *BMC Med. Res. Methodol.* 14:25, 2014).
With fewer than :data:`MIN_STUDIES` studies no pooled number is given: the studies are
shown side by side (a result with a ``reason``, not an error).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, stats

from analysis.effect_sizes import months_of_progress
from analysis.options import SynthesisMethod, SynthesisTest, check_option
from analysis.results import Effect

__all__ = [
    "MIN_STUDIES",
    "StudyEffect",
    "Synthesis",
    "study_effect",
    "synthesise",
    "tau2_dersimonian_laird",
    "tau2_paule_mandel",
    "tau2_reml",
]

MIN_STUDIES: Final = 3
"""Fewer studies than this: no pooled effect, the studies side by side (issue 22)."""

_TOLERANCE: Final = 1e-13  # root-finding tolerance on tau²: far below the 1e-6 we check


@dataclass(frozen=True)
class StudyEffect:
    """One study's confirmatory effect as the synthesis reads it.

    ``n_learners`` and ``n_units`` count both arms of the contrast (``None`` when a cell
    was suppressed); ``rating`` is the study's evidence rating, shown beside it.
    """

    study: str
    label: str
    hedges_g: float
    std_error: float
    n_learners: int | None = None
    n_units: int | None = None
    rating: str | None = None

    @property
    def variance(self) -> float:
        """Sampling variance ``v_i``."""
        return self.std_error ** 2


@dataclass(frozen=True)
class Synthesis:
    """The random-effects synthesis of some studies (pooled numbers NaN with a ``reason``).

    ``weights`` are the studies' random-effects weights in percent, in input order.
    """

    studies: tuple[StudyEffect, ...]
    method: SynthesisMethod
    test: SynthesisTest
    alpha: float
    estimate: float
    std_error: float
    ci_low: float
    ci_high: float
    p_value: float
    df: float
    tau2: float
    i2: float
    h2: float
    q: float
    q_p_value: float
    pi_low: float
    pi_high: float
    weights: tuple[float, ...]
    months_progress: int | None
    reason: str | None = None

    @property
    def k(self) -> int:
        """Number of studies."""
        return len(self.studies)

    @property
    def n_learners(self) -> int | None:
        """Pupils the synthesis rests on (``None`` when a study's count is suppressed)."""
        counts = [s.n_learners for s in self.studies]
        return None if any(c is None for c in counts) else sum(c for c in counts if c)

    @property
    def estimable(self) -> bool:
        """True when there is a pooled number."""
        return math.isfinite(self.estimate)


def study_effect(study: str, label: str, effect: Effect, rating: str | None = None) -> StudyEffect:
    """A study's :class:`StudyEffect` from the primary effect of its final analysis.

    The standard error of g is the model's standard error on the scale of g: g's interval
    is the model's interval times ``J / sd`` (``analysis/effect_sizes.py``), so the same
    factor scales the standard error.

    Examples
    --------
    >>> from analysis.results import Effect
    >>> e = Effect("f", "a-vs-c", "ITT", "primary", "ancova", 2.0, 1.0, 0.0, 4.0, 0.05,
    ...            30.0, 0.2, 0.0, 0.4, 2, {"a": 10, "c": 10}, {"a": 200, "c": 210})
    >>> s = study_effect("x", "X", e)
    >>> round(s.std_error, 12), s.n_learners, s.n_units
    (0.1, 410, 20)
    """
    scale = (effect.hedges_g_ci_high - effect.hedges_g_ci_low) / (effect.ci_high - effect.ci_low)
    learners = list(effect.n_learners.values())
    units = list(effect.n_units.values())
    return StudyEffect(
        study=study, label=label, hedges_g=effect.hedges_g,
        std_error=effect.std_error * scale,
        n_learners=None if None in learners else sum(n for n in learners if n is not None),
        n_units=None if None in units else sum(n for n in units if n is not None),
        rating=rating,
    )


def _pooled(y: NDArray[np.float64], v: NDArray[np.float64], tau2: float) -> tuple[float, float]:
    w = 1.0 / (v + tau2)
    return float(np.sum(w * y) / np.sum(w)), float(np.sum(w))


def tau2_dersimonian_laird(y: Sequence[float], v: Sequence[float]) -> float:
    """DerSimonian-Laird tau² (truncated at 0).

    Examples
    --------
    >>> round(tau2_dersimonian_laird([0.1, 0.5, 0.9], [0.01, 0.02, 0.03]), 6)
    0.141667
    """
    ya, va = np.asarray(y, float), np.asarray(v, float)
    w = 1.0 / va
    mu = np.sum(w * ya) / np.sum(w)
    q = float(np.sum(w * (ya - mu) ** 2))
    c = float(np.sum(w) - np.sum(w ** 2) / np.sum(w))
    return max(0.0, (q - (len(ya) - 1)) / c)


def _reml_score(y: NDArray[np.float64], v: NDArray[np.float64], tau2: float) -> float:
    # d logL_REML / d tau² = (y'PPy - tr(P)) / 2 with P = W - W 1 1' W / Σw; for the
    # intercept-only model P y = w (y - mu), tr(P) = Σw - Σw² / Σw.
    w = 1.0 / (v + tau2)
    mu = np.sum(w * y) / np.sum(w)
    py = w * (y - mu)
    trace = np.sum(w) - np.sum(w ** 2) / np.sum(w)
    return float(np.sum(py ** 2) - trace)


def _root_above(f: Callable[[float], float], lower: float, scale: float) -> float:
    # ``f`` decreases and is positive at ``lower``: double an upper bound, then bracket.
    upper = max(scale, 1e-4)
    while f(upper) > 0:
        upper *= 2.0
    return float(optimize.brentq(f, lower, upper, xtol=_TOLERANCE, rtol=4 * np.finfo(float).eps,
                                 maxiter=500))


def tau2_reml(y: Sequence[float], v: Sequence[float]) -> float:
    """REML tau²: the root of the restricted likelihood's score, 0 when it is negative at 0.

    Examples
    --------
    >>> round(tau2_reml([0.1, 0.5, 0.9], [0.01, 0.02, 0.03]), 6)
    0.140415
    """
    ya, va = np.asarray(y, float), np.asarray(v, float)
    if _reml_score(ya, va, 0.0) <= 0:
        return 0.0
    return _root_above(lambda t: _reml_score(ya, va, t), 0.0, float(np.var(ya)))


def tau2_paule_mandel(y: Sequence[float], v: Sequence[float]) -> float:
    """Paule-Mandel tau²: generalised Q equal to ``k - 1`` (0 when already below at 0).

    Examples
    --------
    >>> round(tau2_paule_mandel([0.1, 0.5, 0.9], [0.01, 0.02, 0.03]), 6)
    0.140208
    """
    ya, va = np.asarray(y, float), np.asarray(v, float)

    def excess(tau2: float) -> float:
        mu, _ = _pooled(ya, va, tau2)
        return float(np.sum((ya - mu) ** 2 / (va + tau2))) - (len(ya) - 1)

    if excess(0.0) <= 0:
        return 0.0
    return _root_above(excess, 0.0, float(np.var(ya)))


_TAU2 = {"reml": tau2_reml, "dl": tau2_dersimonian_laird, "pm": tau2_paule_mandel}


def _side_by_side(studies: tuple[StudyEffect, ...], method: SynthesisMethod,
                  test: SynthesisTest, alpha: float, reason: str) -> Synthesis:
    nan = math.nan
    return Synthesis(studies=studies, method=method, test=test, alpha=alpha, estimate=nan,
                     std_error=nan, ci_low=nan, ci_high=nan, p_value=nan, df=nan, tau2=nan,
                     i2=nan, h2=nan, q=nan, q_p_value=nan, pi_low=nan, pi_high=nan,
                     weights=tuple(nan for _ in studies), months_progress=None, reason=reason)


def synthesise(
    studies: Sequence[StudyEffect],
    *,
    method: SynthesisMethod = "reml",
    test: SynthesisTest = "knha",
    alpha: float = 0.05,
) -> Synthesis:
    """Random-effects meta-analysis of the studies' Hedges' g.

    Parameters
    ----------
    studies : sequence of StudyEffect
        One confirmatory effect per study, with a finite g and a positive standard error.
    method : {"reml", "dl", "pm"}
        Estimator of tau² (metafor's ``method="REML"``, ``"DL"``, ``"PM"``).
    test : {"knha", "z"}
        Hartung-Knapp-Sidik-Jonkman (t, k - 1 df) or normal interval and test.
    alpha : float
        1 - the level of the confidence and prediction intervals.

    Returns
    -------
    Synthesis
        With a ``reason`` and no pooled numbers when fewer than :data:`MIN_STUDIES`
        studies have a usable effect.

    Examples
    --------
    >>> s = synthesise([StudyEffect("a", "A", 0.1, 0.1), StudyEffect("b", "B", 0.5, 0.15),
    ...                 StudyEffect("c", "C", 0.3, 0.2)])
    >>> round(s.estimate, 4), s.k, round(s.tau2, 4)
    (0.2796, 3, 0.03)
    >>> synthesise([StudyEffect("a", "A", 0.1, 0.1)]).reason
    'fewer than 3 studies: no pooled effect'
    """
    check_option(method, SynthesisMethod, "method")
    check_option(test, SynthesisTest, "test")
    studies = tuple(studies)
    usable = [s for s in studies
              if math.isfinite(s.hedges_g) and math.isfinite(s.std_error) and s.std_error > 0]
    if len(usable) < len(studies):
        return _side_by_side(studies, method, test, alpha,
                             "a study has no usable effect: no pooled effect")
    if len(studies) < MIN_STUDIES:
        return _side_by_side(studies, method, test, alpha,
                             f"fewer than {MIN_STUDIES} studies: no pooled effect")
    y = np.array([s.hedges_g for s in studies], float)
    v = np.array([s.variance for s in studies], float)
    k = len(studies)
    tau2 = _TAU2[method](y.tolist(), v.tolist())
    mu, sum_w = _pooled(y, v, tau2)
    w = 1.0 / (v + tau2)
    if test == "knha":
        df = float(k - 1)
        variance = float(np.sum(w * (y - mu) ** 2) / (k - 1)) / sum_w
        crit = float(stats.t.ppf(1 - alpha / 2, df))
        se = math.sqrt(variance)
        p_value = float(2 * stats.t.sf(abs(mu / se), df)) if se > 0 else math.nan
    else:
        df = math.inf
        se = math.sqrt(1.0 / sum_w)
        crit = float(stats.norm.ppf(1 - alpha / 2))
        p_value = float(2 * stats.norm.sf(abs(mu / se)))
    fixed_w = 1.0 / v
    fixed_mu = float(np.sum(fixed_w * y) / np.sum(fixed_w))
    q = float(np.sum(fixed_w * (y - fixed_mu) ** 2))
    typical = (k - 1) * np.sum(fixed_w) / (np.sum(fixed_w) ** 2 - np.sum(fixed_w ** 2))
    spread = crit * math.sqrt(se ** 2 + tau2)
    return Synthesis(
        studies=studies, method=method, test=test, alpha=alpha, estimate=mu, std_error=se,
        ci_low=mu - crit * se, ci_high=mu + crit * se, p_value=p_value, df=df, tau2=tau2,
        i2=float(100 * tau2 / (typical + tau2)), h2=float(1 + tau2 / typical), q=q,
        q_p_value=float(stats.chi2.sf(q, k - 1)), pi_low=mu - spread, pi_high=mu + spread,
        weights=tuple(float(x) for x in 100 * w / sum_w), months_progress=months_of_progress(mu),
    )
