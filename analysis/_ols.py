"""Least squares with absorbed strata and cluster-robust covariance (private).

The public estimators (:mod:`analysis.effects`, :mod:`analysis.cace`) assemble design
matrices; this module does the linear algebra with numpy, fast enough for a million pupils:

* strata fixed effects are absorbed by demeaning within stratum (Frisch-Waugh-Lovell), so
  a design with thousands of strata never builds a dummy matrix;
* cluster-robust "meat" sums the scores by cluster with :func:`numpy.bincount`.

Small-sample corrections (checked against pyfixest and linearmodels in
``tests/statistics/test_effects_vs_libraries.py``):

* ``cluster`` (CR1): ``G/(G-1) * (N-1)/(N-K)``, t with ``G-1`` degrees of freedom, where ``K``
  counts the regressors *and* the absorbed strata fixed effects. This is Stata's
  ``regress …, vce(cluster)`` with strata dummies, pyfixest's default ``CRV1`` (strata as
  ``| stratum`` are not nested in the clusters, so they count in ``K``), and linearmodels'
  ``cov_type="clustered", debiased=True``. Obtained with ``cluster_params=1``.
* ``cluster`` with ``cluster_params=S`` (what the estimators use when ``S`` strata are
  absorbed): ``G/(G-S) * (N-1)/(N-K)``, t with ``G-S`` degrees of freedom. Clusters are
  nested in the strata, and demeaning within stratum removes one degree of freedom per
  stratum from the cluster totals the "meat" is made of, as the intercept removes one in
  CR1; with small strata (two classes of a school, one per arm) plain CR1 is biased
  downward by up to ``sqrt(2)`` (de Chaisemartin & Ramirez-Cuellar, "At what level should
  one cluster standard errors in paired and small-strata experiments?", AEJ: Applied, 2024).
  ``G/(G-S)`` generalises ``G/(G-1)``; ``tests/statistics/test_simulation_study.py`` shows
  the coverage it restores for strata of 2, 4 and 10 classes.
* ``hetero`` (HC1): ``N/(N-K)``, t with ``N-K`` degrees of freedom.
* ``iid``: the classical ``s^2 (X'X)^-1`` (used to show what ignoring clustering does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import numpy.typing as npt

__all__ = [
    "LinearFit",
    "VcovKind",
    "absorb",
    "fit_2sls",
    "fit_ols",
    "independent_columns",
    "standard_error",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
VcovKind = Literal["cluster", "hetero", "iid"]


@dataclass(frozen=True)
class LinearFit:
    """Coefficients and covariance of a least-squares fit.

    ``k`` counts the coefficients of ``params`` plus the absorbed fixed effects.
    """

    params: FloatArray
    vcov: FloatArray
    n: int
    k: int
    n_clusters: int
    df: int
    kind: VcovKind


def absorb(columns: FloatArray, stratum: IntArray, n_strata: int) -> FloatArray:
    """Demean each column of ``columns`` within stratum (returns a new array)."""
    counts = np.bincount(stratum, minlength=n_strata).astype(float)
    out = np.empty_like(columns)
    for j in range(columns.shape[1]):
        means = np.bincount(stratum, weights=columns[:, j], minlength=n_strata) / counts
        out[:, j] = columns[:, j] - means[stratum]
    return out


def standard_error(variance: float) -> float:
    """``sqrt(variance)``, or NaN when the variance is not a positive finite number.

    A zero variance (residuals all zero: the model fits the scores exactly) or a negative
    one (an indefinite Hessian-based covariance of a mixed model fitted on too few units)
    gives no usable standard error; the estimators then report why instead of failing.

    Examples
    --------
    >>> standard_error(4.0), standard_error(-1e-3), standard_error(0.0)
    (2.0, nan, nan)
    """
    if not (math.isfinite(variance) and variance > 0.0):
        return math.nan
    return math.sqrt(variance)


def _least_squares(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Least-squares coefficients of ``y`` (a vector or columns) on ``x``, and ``R`` of ``x``.

    Householder ``R`` only (``numpy.linalg.qr(mode="r")``: a third of the time of forming
    ``Q`` for a million rows), then the corrected semi-normal equations ``R'R b = X'y``
    with one step of iterative refinement, which are as accurate as the QR solution
    (Björck, *Numerical Methods for Least Squares Problems*, SIAM 1996, §6.6.5).
    """
    # numpy's stubs type every mode as QRResult; mode="r" returns the array R.
    r = cast(FloatArray, np.linalg.qr(x, mode="r"))

    def solve(v: FloatArray) -> FloatArray:
        return np.asarray(np.linalg.solve(r, np.linalg.solve(r.T, v)), dtype=np.float64)

    params = solve(x.T @ y)
    params = params + solve(x.T @ (y - x @ params))
    return params, r


def independent_columns(x: FloatArray) -> list[int]:
    """Indices of a maximal set of linearly independent columns, chosen left to right.

    Columns come arms first, so a covariate collinear with an arm indicator is the one
    dropped. A column whose norm is below ``1e-8 * sqrt(n)`` (e.g. a unit attribute that is
    constant within strata, after absorbing them) counts as zero.
    """
    gram = x.T @ x
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    tiny = 1e-8 * np.sqrt(max(x.shape[0], 1))
    kept: list[int] = []
    for j in range(x.shape[1]):
        if norms[j] <= tiny:
            continue
        trial = kept + [j]
        sub = gram[np.ix_(trial, trial)] / np.outer(norms[trial], norms[trial])
        if np.linalg.matrix_rank(sub, tol=1e-10) == len(trial):
            kept = trial
    return kept


def _sandwich(
    design: FloatArray,
    resid: FloatArray,
    bread: FloatArray,
    kind: VcovKind,
    cluster: IntArray | None,
    n_clusters: int,
    k_total: int,
    cluster_params: int,
) -> FloatArray:
    n = design.shape[0]
    if kind == "iid":
        sigma2 = float(resid @ resid) / (n - k_total)
        return np.asarray(sigma2 * bread, dtype=np.float64)
    scores = design * resid[:, None]
    if kind == "hetero":
        meat: FloatArray = scores.T @ scores
        factor = n / (n - k_total)
    else:
        assert cluster is not None
        summed = np.column_stack(
            [
                np.bincount(cluster, weights=scores[:, j], minlength=n_clusters)
                for j in range(scores.shape[1])
            ]
        )
        meat = np.asarray(summed.T @ summed, dtype=np.float64)
        factor = n_clusters / (n_clusters - cluster_params) * (n - 1) / (n - k_total)
    vcov = factor * (bread @ meat @ bread)
    return np.asarray((vcov + vcov.T) / 2.0)


def _degrees_of_freedom(kind: VcovKind, n: int, k_total: int, n_clusters: int,
                        cluster_params: int) -> int:
    return n_clusters - cluster_params if kind == "cluster" else n - k_total


def fit_ols(
    y: FloatArray,
    x: FloatArray,
    *,
    kind: VcovKind,
    cluster: IntArray | None = None,
    n_clusters: int = 0,
    k_absorbed: int = 0,
    cluster_params: int = 1,
) -> LinearFit:
    """OLS of ``y`` on ``x`` (already demeaned if strata are absorbed).

    Parameters
    ----------
    y, x : arrays
        Outcome (n,) and design (n, k); ``x`` holds an intercept column unless strata
        were absorbed.
    kind : {"cluster", "hetero", "iid"}
        Covariance (see the module docstring for the small-sample corrections).
    cluster : int array, optional
        Cluster code of each row, ``0 .. n_clusters-1`` (required for ``cluster``).
    k_absorbed : int
        Number of absorbed fixed effects (the strata), counted in ``K``.
    cluster_params : int
        Cluster-level parameters the small-sample factor ``G/(G-c)`` and the ``G-c``
        degrees of freedom account for: 1 for CR1; the number of absorbed strata for the
        strata-aware correction (see the module docstring).
    """
    params, r = _least_squares(x, y)
    r_inv = np.linalg.inv(r)
    bread = r_inv @ r_inv.T
    resid = y - x @ params
    n, k = x.shape
    k_total = k + k_absorbed
    vcov = _sandwich(x, resid, bread, kind, cluster, n_clusters, k_total, cluster_params)
    g = n_clusters if kind == "cluster" else n
    return LinearFit(
        params=params,
        vcov=vcov,
        n=n,
        k=k_total,
        n_clusters=g,
        df=_degrees_of_freedom(kind, n, k_total, n_clusters, cluster_params),
        kind=kind,
    )


def fit_2sls(
    y: FloatArray,
    exog: FloatArray,
    endog: FloatArray,
    instruments: FloatArray,
    *,
    kind: VcovKind,
    cluster: IntArray | None = None,
    n_clusters: int = 0,
    k_absorbed: int = 0,
    cluster_params: int = 1,
) -> LinearFit:
    """Two-stage least squares; ``params`` are ordered ``[endog..., exog...]``.

    The covariance is the sandwich with the first-stage fitted regressors and the
    structural residuals (``y - [endog, exog] @ params``), with the same small-sample
    factors as :func:`fit_ols` (linearmodels ``IV2SLS``, ``debiased=True``).
    """
    z = np.column_stack([instruments, exog])
    x = np.column_stack([endog, exog])
    first_stage, _ = _least_squares(z, x)
    x_hat = z @ first_stage
    params, r = _least_squares(x_hat, y)
    r_inv = np.linalg.inv(r)
    bread = r_inv @ r_inv.T
    resid = y - x @ params
    n, k = x.shape
    k_total = k + k_absorbed
    vcov = _sandwich(x_hat, resid, bread, kind, cluster, n_clusters, k_total,
                     cluster_params)
    g = n_clusters if kind == "cluster" else n
    return LinearFit(
        params=params,
        vcov=vcov,
        n=n,
        k=k_total,
        n_clusters=g,
        df=_degrees_of_freedom(kind, n, k_total, n_clusters, cluster_params),
        kind=kind,
    )
