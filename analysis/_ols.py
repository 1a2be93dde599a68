"""Least squares with absorbed strata and cluster-robust covariance (private).

The public estimators (:mod:`analysis.effects`, :mod:`analysis.cace`) assemble design
matrices; this module does the linear algebra with numpy, fast enough for a million pupils:

* strata fixed effects are absorbed by demeaning within stratum (Frisch-Waugh-Lovell), so
  a design with thousands of strata never builds a dummy matrix;
* cluster-robust "meat" sums the scores by cluster with :func:`numpy.bincount`.

Covariances (``kind``)
----------------------
* ``cr2`` (the default of every estimator): the bias-reduced linearisation of Bell &
  McCaffrey (2002, *Survey Methodology* 28(2), 169-181), with the Satterthwaite degrees of
  freedom of Pustejovsky & Tipton (2018, "Small-sample methods for cluster-robust variance
  estimation and hypothesis testing in fixed effects models", *JBES* 36(4), 672-683), working
  model ``Phi = I``. Equal to R's ``clubSandwich::coef_test(fit, vcov = vcovCR(fit,
  cluster, type = "CR2"), test = "Satterthwaite")`` on ``lm(y ~ x + factor(stratum))`` and to
  ``estimatr::lm_robust(..., clusters, fixed_effects = ~ stratum, se_type = "CR2")`` (and
  ``iv_robust`` for 2SLS); checked in ``tests/statistics/test_cr2_vs_r.py``. With one
  learner per cluster it is HC2 with Bell-McCaffrey degrees of freedom.
* ``cr1``: ``G/(G-1) * (N-1)/(N-K)``, t with ``G-1`` degrees of freedom, where ``K`` counts
  the regressors *and* the absorbed strata fixed effects: Stata's ``regress …,
  vce(cluster)`` with strata dummies, pyfixest's ``CRV1``, linearmodels' ``clustered,
  debiased=True``, estimatr's ``se_type = "stata"``. Obtained with ``cluster_params=1``.
  With ``cluster_params=S`` it is ``cr1-strata``, ``G/(G-S)`` and ``G-S`` df: Preuve's
  own earlier default, not a published estimator, kept for comparing old reports.
* ``hc1``: ``N/(N-K)``, t with ``N-K`` degrees of freedom.
* ``iid``: the classical ``s^2 (X'X)^-1`` (used to show what ignoring clustering does).

The fixed effects in CR2
------------------------
The adjustment matrices of R's two packages are computed on the *full* design: clubSandwich
on ``lm``'s model matrix with the stratum dummies, estimatr on ``cbind(demeaned X, FE
dummies)`` (``R/helper_lm_robust_fit.R``), which span the same space. Their hat matrix is
``H = Q Q' + P_S`` with ``Q = X~ R^-1`` the orthonormal basis of the demeaned design ``X~``
(``X~ = Q R``) and ``P_S`` the within-stratum averaging projection. Clusters are nested in
strata (strata are unit attributes), so the block of ``P_S`` on cluster ``j`` of stratum
``s`` is ``1 1' / n_s``. Computing the adjustment on the demeaned design alone (dropping
``P_S``) is *not* the same: it only is when the fixed effects are nested in the clusters
(Pustejovsky & Tipton 2018, Theorem 2), the reverse of our case. On the paired design of
the R tests (20 schools of 2 classes) it gives a standard error of 0.072 and 39 df where
both R packages give 0.102 and 19.2.

The algorithm, cluster by cluster, without an ``N x N`` or ``n_j x n_j`` matrix
-----------------------------------------------------------------------------------
Write ``U_j = [Q_j, 1/sqrt(n_s)]`` (``n_j x m``, ``m = k+1``; ``U_j = Q_j`` without absorbed
strata, the intercept being in ``Q``), so that ``H_jj = U_j U_j'``, and
``C_j = U_j' U_j`` (``m x m``). With ``C_j = V diag(lam) V'``,

    ``A_j = (I - H_jj)^(-1/2) = I + U_j F_j U_j'``,  ``F_j = V diag(g(lam)) V'``,
    ``g(lam) = 1 / (sqrt(1-lam) (1 + sqrt(1-lam)))``

(``g(lam) = -1/lam`` where ``1 - lam <= 1e-12``: the pseudo-inverse square root that both R
packages take). Then ``Q_j' A_j e_j = Q_j'e_j + C_j[:k] F_j U_j'e_j`` and
``V_CR2 = R^-1 (sum_j u_j u_j') R^-T``. For the degrees of freedom of a contrast ``c``
(``w = R^-T c``), ``p_j = A_j Q_j w = U_j h_j`` with ``h_j = [w; 0] + F_j C_j[:, :k] w``;
the Satterthwaite df is ``(sum_j Om_jj)^2 / sum_ij Om_ij^2`` with
``Om_ij = p_i'(I - H)_ij p_j = delta_ij h_i'C_i h_i - a_i'a_j - [s(i) = s(j)] t_i t_j``,
``a_j = (C_j h_j)[:k]``, ``t_j = (C_j h_j)[k]``. The double sum over cluster pairs expands to
``||A'A||_F^2 + 2 sum_s |sum_{j in s} t_j a_j|^2 + sum_s (sum_{j in s} t_j^2)^2`` minus
the diagonal terms, so it costs ``O(G k^2)``.

Tests of ``q`` constraints (the subgroup interaction test) use the HTZ approximation of
clubSandwich's ``Wald_test`` (Tipton & Pustejovsky 2015): the same pairwise sums for every
pair of contrasts (``O(G k^2 q^4)``) give ``nu``, and ``F = ((nu - q + 1) / nu) Q / q`` on
``(q, nu - q + 1)`` df (``tests/statistics/test_cr2_vs_r.py`` checks it with three levels).

Cost: ``m(m+1)/2 + m`` weighted :func:`numpy.bincount` passes over the ``N`` rows (the
``C_j`` and ``U_j'e_j``), one batched ``m x m`` eigendecomposition per cluster
(``O(G m^3)``; in closed form when every cluster is one row, as when pupils are
randomised) and ``O(G m^2 p)`` for ``p`` contrasts; memory ``O(N m + G m^2)``. At a
million pupils in 40,000 classes with ``k = 3`` the whole fit takes 0.9 s against 0.3 s
with CR1 on the loaded benchmark machine (``benchmarks/README.md``). The R packages
work on dense matrices with the fixed-effect dummies (clubSandwich the full model matrix,
estimatr ``(K+S)^2 G`` arrays for its df) and fail at 50,000 pupils with school fixed
effects under an 8 GB limit (``benchmarks/cr2_scale.R``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import numpy.typing as npt
from scipy import special

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
VcovKind = Literal["cr2", "cr1", "hc1", "iid"]
"""``cr2`` and ``cr1`` are clustered (``cr1`` with ``cluster_params``; see the module)."""

CR2_EIGEN_TOL = 1e-12
"""Eigenvalues of ``I - H_jj`` at or below this are dropped (pseudo-inverse square root):
clubSandwich's ``matrix_power(tol = -12)`` and estimatr's ``lm_robust_helper.cpp``."""


@dataclass(frozen=True)
class LinearFit:
    """Coefficients and covariance of a least-squares fit.

    ``k`` counts the coefficients of ``params`` plus the absorbed fixed effects.
    ``df_params`` holds the degrees of freedom of the t test of each coefficient: the
    Satterthwaite df of each for ``cr2``, the common ``G-c`` or ``N-K`` otherwise.
    :meth:`wald_test` tests linear constraints (HTZ for ``cr2``).
    """

    params: FloatArray
    vcov: FloatArray
    n: int
    k: int
    n_clusters: int
    df_params: FloatArray
    kind: VcovKind
    _cr2: _CR2Blocks | None = None

    def wald_test(self, constraints: FloatArray) -> tuple[float, int, float, float]:
        """``(F, q, df, p_value)`` of the test that ``constraints @ params = 0``.

        For ``cr2``, the HTZ test of clubSandwich's ``Wald_test`` (Tipton & Pustejovsky
        2015, *J. Educ. Behav. Stat.* 40(6)): ``F = delta Q / q`` on ``(q, nu - q + 1)`` df,
        ``delta = (nu - q + 1) / nu``; otherwise ``F = Q / q`` on ``(q, df)``.
        Raises :class:`numpy.linalg.LinAlgError` if ``C V C'`` is singular.
        """
        rows = np.atleast_2d(np.asarray(constraints, dtype=np.float64))
        q = rows.shape[0]
        diff = rows @ self.params
        wald = float(diff @ np.linalg.solve(rows @ self.vcov @ rows.T, diff))
        if self._cr2 is None:
            df = float(self.df_params[0])
            statistic = wald / q
        else:
            nu = self._cr2.hotelling_df(rows.T)
            df = nu - q + 1.0
            statistic = max(df / nu, 0.0) * wald / q
        p = float(special.fdtrc(q, df, statistic)) if df > 0 else math.nan
        return statistic, q, df, p


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


def _product(x: FloatArray, m: FloatArray) -> FloatArray:
    """``x @ m`` for a tall ``x`` (``n x k``) and a small ``m``, computed as ``(m' x')'``.

    OpenBLAS splits ``x @ m`` over the ``n`` rows among its threads; on the loaded 2-core
    benchmark machine a thread waiting for a descheduled partner made it 10 to 30 times
    slower (0.4 to 0.9 s instead of 0.04 s for a million rows and ``k = 5``); the
    transposed product took 0.02 to 0.1 s in the same minute. Same numbers.
    """
    if m.ndim == 1:
        return np.asarray(x @ m, dtype=np.float64)
    return np.asarray((m.T @ x.T).T, dtype=np.float64)


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
    params = params + solve(x.T @ (y - _product(x, params)))
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


def _nesting(stratum: IntArray, cluster: IntArray, n_clusters: int) -> IntArray:
    """The stratum of each cluster; raises if a cluster spans two strata."""
    counts = np.bincount(cluster, minlength=n_clusters).astype(np.float64)
    codes = stratum.astype(np.float64)
    # Integer codes below 2**53: the mean of equal codes is exact, any other spread is > 0.
    mean = np.bincount(cluster, weights=codes, minlength=n_clusters) / np.maximum(counts, 1.0)
    spread = np.bincount(cluster, weights=(codes - mean[cluster]) ** 2, minlength=n_clusters)
    if np.any(spread > 0.0):
        raise ValueError("CR2 with absorbed strata needs every cluster inside one stratum "
                         "(units are nested in their strata)")
    return mean.astype(np.intp)


def _g(lam: FloatArray) -> FloatArray:
    """``((1 - lam)^(-1/2) - 1) / lam`` (stable form), ``-1/lam`` where ``1 - lam`` vanishes."""
    rest = 1.0 - lam
    root = np.sqrt(np.clip(rest, 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(rest > CR2_EIGEN_TOL, 1.0 / (root * (1.0 + root)),
                                   -1.0 / lam), dtype=np.float64)


class _CR2Blocks:
    """Per-cluster blocks of the CR2 computation (see "The algorithm" in the module).

    Holds ``C_j = U_j'U_j`` and ``F_j`` of every cluster, so that the covariance and the
    Satterthwaite degrees of freedom of any contrast cost ``O(G m^2)`` once built.
    """

    def __init__(self, design: FloatArray, r_inv: FloatArray, cluster: IntArray,
                 n_clusters: int, stratum: IntArray | None, n_strata: int) -> None:
        k = design.shape[1]
        self.k = k
        self.r_inv = r_inv
        self.cluster = cluster
        self.n_clusters = n_clusters
        m = k + (stratum is not None)
        # U in column-major order: every pass below reads whole columns (4x faster).
        u_rows = np.empty((m, design.shape[0]))
        u_rows[:k] = r_inv.T @ design.T  # Q', Q the orthonormal basis of the design
        u = u_rows.T
        self.stratum_of_cluster: IntArray | None = None
        self.n_strata = 0
        if stratum is not None:
            self.stratum_of_cluster = _nesting(stratum, cluster, n_clusters)
            sizes = np.bincount(stratum, minlength=n_strata).astype(np.float64)
            u[:, k] = 1.0 / np.sqrt(sizes[stratum])
            self.n_strata = n_strata
        self.u = u
        c = np.empty((n_clusters, m, m))
        for a in range(m):
            for b in range(a, m):
                c[:, a, b] = np.bincount(cluster, weights=u[:, a] * u[:, b],
                                         minlength=n_clusters)
                c[:, b, a] = c[:, a, b]
        self.c = c
        if n_clusters == design.shape[0]:
            # One row per cluster (pupils randomised: HC2): C_j = u u' has the one eigenvalue
            # |u|^2 = h_jj, and F only ever multiplies vectors along u, so
            # F_j = g(h_jj) / h_jj u u' does; no eigendecomposition of a million blocks.
            lam = np.trace(c, axis1=1, axis2=2)
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(lam > 0.0, _g(lam) / lam, 0.0)
            self.f = c * scale[:, None, None]
        else:
            lam_all, vec = np.linalg.eigh(c)
            self.f = np.einsum("gab,gb,gcb->gac", vec, _g(lam_all), vec)

    def vcov(self, resid: FloatArray) -> FloatArray:
        """``R^-1 (sum_j u_j u_j') R^-T`` with ``u_j = Q_j' A_j e_j``."""
        ue = np.column_stack([
            np.bincount(self.cluster, weights=self.u[:, a] * resid, minlength=self.n_clusters)
            for a in range(self.u.shape[1])
        ])
        fue = np.einsum("gab,gb->ga", self.f, ue)
        scores = ue[:, : self.k] + np.einsum("gab,gb->ga", self.c[:, : self.k, :], fue)
        out = self.r_inv @ (scores.T @ scores) @ self.r_inv.T
        return np.asarray((out + out.T) / 2.0, dtype=np.float64)

    def satterthwaite_df(self, contrasts: FloatArray) -> FloatArray:
        """Satterthwaite df of each column ``c`` of ``contrasts`` (``k x p``)."""
        k = self.k
        m = self.u.shape[1]
        w = self.r_inv.T @ contrasts  # k x p
        w_pad = np.zeros((m, w.shape[1]))
        w_pad[:k] = w
        h = w_pad[None, :, :] + np.einsum("gab,gbc,cp->gap", self.f, self.c[:, :, :k], w)
        ch = np.einsum("gab,gbp->gap", self.c, h)
        d = np.einsum("gap,gap->gp", h, ch)  # p_j'p_j
        a = ch[:, :k, :]  # Q_j'p_j
        diag = np.einsum("gap,gap->gp", a, a)
        gram = np.einsum("gip,gjp->pij", a, a)
        cross = np.einsum("pij,pij->p", gram, gram)  # sum_ij (a_i'a_j)^2
        if self.stratum_of_cluster is not None:
            t = ch[:, k, :]  # 1'p_j / sqrt(n_s)
            diag = diag + t * t
            s = self.stratum_of_cluster
            b = np.stack([
                np.stack([np.bincount(s, weights=t[:, p] * a[:, i, p], minlength=self.n_strata)
                          for i in range(k)], axis=1)
                for p in range(w.shape[1])
            ], axis=2)  # n_strata x k x p
            tt = np.stack([np.bincount(s, weights=t[:, p] ** 2, minlength=self.n_strata)
                           for p in range(w.shape[1])], axis=1)
            cross = cross + 2.0 * np.einsum("sip,sip->p", b, b) + np.sum(tt * tt, axis=0)
        omega_diag = d - diag
        total = np.sum(omega_diag, axis=0)
        squares = np.sum(omega_diag ** 2, axis=0) - np.sum(diag ** 2, axis=0) + cross
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(total ** 2 / squares, dtype=np.float64)

    def _cross_moments(self, contrasts: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``(E, S)`` of the contrasts' CR2 covariance under the working model.

        ``E[s, t] = sum_i Om^st_ii`` (the expectation of ``(C V C')_st`` over ``sigma^2``)
        and ``S[s, t, u, v] = sum_ij Om^st_ij Om^uv_ij``, with
        ``Om^st_ij = p_is'(I - H)_ij p_jt``: the ``P_array`` products of clubSandwich's
        ``Wald_test`` (``R/Wald_test.R``), summed over cluster pairs in ``O(G k^2 q^4)``.
        """
        k = self.k
        m = self.u.shape[1]
        w = self.r_inv.T @ contrasts  # k x q
        q = w.shape[1]
        w_pad = np.zeros((m, q))
        w_pad[:k] = w
        h = w_pad[None, :, :] + np.einsum("gab,gbc,cp->gap", self.f, self.c[:, :, :k], w)
        ch = np.einsum("gab,gbp->gap", self.c, h)
        e = np.einsum("gas,gat->gst", h, ch)  # p_is'p_it
        a = ch[:, :k, :]
        d = np.einsum("gis,git->gst", a, a)  # the diagonal of a_is'a_jt (+ strata below)
        gram = np.einsum("gix,gjy->xyij", a, a)  # A_x'A_y
        big = np.einsum("usij,tvji->stuv", gram, gram)
        if self.stratum_of_cluster is not None:
            t = ch[:, k, :]
            d = d + t[:, :, None] * t[:, None, :]
            z = self.stratum_of_cluster
            b = np.zeros((self.n_strata, q, q, k))  # b[z, x, y] = sum_{i in z} t_ix a_iy
            for x in range(q):
                for y in range(q):
                    for i in range(k):
                        b[:, x, y, i] = np.bincount(z, weights=t[:, x] * a[:, i, y],
                                                    minlength=self.n_strata)
            tt = np.zeros((self.n_strata, q, q))
            for x in range(q):
                for y in range(q):
                    tt[:, x, y] = np.bincount(z, weights=t[:, x] * t[:, y],
                                              minlength=self.n_strata)
            big = (big + np.einsum("zusk,zvtk->stuv", b, b) + np.einsum("zsuk,ztvk->stuv", b, b)
                   + np.einsum("zsu,ztv->stuv", tt, tt))
        expectation = np.sum(e - d, axis=0)
        moments = (np.einsum("gst,guv->stuv", e, e) - np.einsum("gst,guv->stuv", e, d)
                   - np.einsum("gst,guv->stuv", d, e) + big)
        return expectation, moments

    def hotelling_df(self, contrasts: FloatArray) -> float:
        """``nu`` of the HTZ test of ``q`` contrasts (columns; Tipton & Pustejovsky 2015).

        As clubSandwich's ``Wald_test(test = "HTZ")``: the contrasts are first turned by
        ``E^(-1/2)``, then ``nu = q (q + 1) / sum_st (S[s,t,t,s] + S[s,s,t,t])``. With one
        contrast it is the Satterthwaite df.
        """
        expectation, _ = self._cross_moments(contrasts)
        lam, vec = np.linalg.eigh(expectation)
        power = np.where(lam > CR2_EIGEN_TOL, 1.0 / np.sqrt(np.clip(lam, CR2_EIGEN_TOL, None)),
                         0.0)
        turned = contrasts @ (vec * power) @ vec.T
        _, moments = self._cross_moments(turned)
        q = int(contrasts.shape[1])
        total = float(np.einsum("stts->", moments) + np.einsum("sstt->", moments))
        return q * (q + 1) / total


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
    """Covariance of kinds ``cr1``, ``hc1`` and ``iid`` (``cr2`` is :class:`_CR2Blocks`)."""
    n = design.shape[0]
    if kind == "iid":
        sigma2 = float(resid @ resid) / (n - k_total)
        return np.asarray(sigma2 * bread, dtype=np.float64)
    scores = design * resid[:, None]
    if kind == "hc1":
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


def _finish(
    params: FloatArray,
    design: FloatArray,
    resid: FloatArray,
    r: FloatArray,
    *,
    kind: VcovKind,
    cluster: IntArray | None,
    n_clusters: int,
    k_absorbed: int,
    cluster_params: int,
    stratum: IntArray | None,
) -> LinearFit:
    """Covariance and degrees of freedom of a fit whose ``R`` (of ``design``) is known."""
    r_inv = np.asarray(np.linalg.inv(r), dtype=np.float64)
    n, k = design.shape
    k_total = k + k_absorbed
    blocks = None
    if kind == "cr2":
        if cluster is None or (k_absorbed and stratum is None):
            raise ValueError("cr2 needs the cluster codes, and the stratum codes when strata "
                             "are absorbed (their projection enters the adjustment)")
        blocks = _CR2Blocks(design, r_inv, cluster, n_clusters,
                            stratum if k_absorbed else None, k_absorbed)
        vcov = blocks.vcov(resid)
        df = blocks.satterthwaite_df(np.eye(k))
    else:
        vcov = _sandwich(design, resid, r_inv @ r_inv.T, kind, cluster, n_clusters, k_total,
                         cluster_params)
        common = n_clusters - cluster_params if kind == "cr1" else n - k_total
        df = np.full(k, float(common))
    return LinearFit(
        params=params,
        vcov=vcov,
        n=n,
        k=k_total,
        n_clusters=n_clusters if kind in ("cr1", "cr2") else n,
        df_params=df,
        kind=kind,
        _cr2=blocks,
    )


def fit_ols(
    y: FloatArray,
    x: FloatArray,
    *,
    kind: VcovKind,
    cluster: IntArray | None = None,
    n_clusters: int = 0,
    k_absorbed: int = 0,
    cluster_params: int = 1,
    stratum: IntArray | None = None,
) -> LinearFit:
    """OLS of ``y`` on ``x`` (already demeaned if strata are absorbed).

    Parameters
    ----------
    y, x : arrays
        Outcome (n,) and design (n, k); ``x`` holds an intercept column unless strata
        were absorbed.
    kind : {"cr2", "cr1", "hc1", "iid"}
        Covariance (see the module docstring for the small-sample corrections).
    cluster : int array, optional
        Cluster code of each row, ``0 .. n_clusters-1`` (required for ``cr2`` and ``cr1``).
    k_absorbed : int
        Number of absorbed fixed effects (the strata), counted in ``K``.
    cluster_params : int
        ``cr1`` only: cluster-level parameters of the factor ``G/(G-c)`` and of the ``G-c``
        degrees of freedom: 1 for CR1; the number of absorbed strata for ``cr1-strata``.
    stratum : int array, optional
        Stratum code of each row, ``0 .. k_absorbed-1`` (required for ``cr2`` when strata
        were absorbed: their projection enters the CR2 adjustment).

    Returns
    -------
    LinearFit

    Examples
    --------
    Ten clusters of five, two strata absorbed; the CR2 standard error and Satterthwaite df
    of the slope (R 4.2: ``clubSandwich::coef_test(lm(y ~ x + factor(s)), vcov = "CR2",
    cluster = g)`` and ``estimatr::lm_robust(y ~ x, fixed_effects = ~ s, clusters = g,
    se_type = "CR2")`` both print SE 0.2058966 and df 6.8570735):

    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(10), 5); s = (g >= 5).astype(np.intp)
    >>> x = rng.normal(size=50); y = 0.5 * x + rng.normal(size=50)
    >>> xy = absorb(np.column_stack([x, y]), s, 2)
    >>> fit = fit_ols(xy[:, 1], xy[:, :1], kind="cr2", cluster=g, n_clusters=10,
    ...               k_absorbed=2, stratum=s)
    >>> fit.kind, round(float(fit.params[0]), 4)
    ('cr2', 0.3883)
    >>> round(float(np.sqrt(fit.vcov[0, 0])), 7), round(float(fit.df_params[0]), 7)
    (0.2058966, 6.8570735)
    """
    params, r = _least_squares(x, y)
    resid = y - x @ params
    return _finish(params, x, resid, r, kind=kind, cluster=cluster, n_clusters=n_clusters,
                   k_absorbed=k_absorbed, cluster_params=cluster_params, stratum=stratum)


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
    stratum: IntArray | None = None,
) -> LinearFit:
    """Two-stage least squares; ``params`` are ordered ``[endog..., exog...]``.

    The covariance is the sandwich with the first-stage fitted regressors and the
    structural residuals (``y - [endog, exog] @ params``), with the same options as
    :func:`fit_ols`; ``cr2`` computes its adjustment on the fitted regressors (and the
    absorbed strata), as ``estimatr::iv_robust(se_type = "CR2")`` does; ``cr1`` is
    linearmodels ``IV2SLS(...).fit(cov_type="clustered", debiased=True)``.

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> g = np.repeat(np.arange(12), 4); z = (g % 2).astype(float)
    >>> d = ((z + rng.normal(size=48)) > 0.5).astype(float)
    >>> y = 1.0 + 0.4 * d + rng.normal(size=48)
    >>> fit = fit_2sls(y, np.ones((48, 1)), d[:, None], z[:, None], kind="cr2", cluster=g,
    ...                n_clusters=12)
    >>> fit.params.shape, bool(fit.df_params[0] < 11)
    ((2,), True)
    """
    z = np.column_stack([instruments, exog])
    x = np.column_stack([endog, exog])
    first_stage, _ = _least_squares(z, x)
    x_hat = _product(z, first_stage)
    params, r = _least_squares(x_hat, y)
    resid = y - _product(x, params)
    return _finish(params, x_hat, resid, r, kind=kind, cluster=cluster,
                   n_clusters=n_clusters, k_absorbed=k_absorbed,
                   cluster_params=cluster_params, stratum=stratum)
