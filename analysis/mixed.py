"""Linear mixed model with random intercepts, fitted by REML from per-group sums.

The model (the ``mixed`` model of a protocol) is

    y = X β + Z_c u_c + Z_s u_s + e,   e ~ N(0, σ² I),  u_c ~ N(0, σ² γ_c I),
                                       u_s ~ N(0, σ² γ_s I),

with one random intercept per class (``u_c``) and, optionally, one per school (``u_s``)
for classes nested in schools. ``X`` holds the fixed effects (intercept, arm indicators,
baseline, covariates, strata dummies: the caller builds it). ``θ = sqrt(γ)`` is lme4's
parameter (relative standard deviations), ``σ`` the residual standard deviation.

Algorithm
---------
Write ``H = V / σ²`` and ``W = [X, y]`` (``N × (p + 1)``). Within a school, ``H`` is
``A + γ_s 1 1'`` with ``A`` block-diagonal over its classes (``I + γ_c 1 1'`` each), so with
``f_c = 1 / (1 + n_c γ_c)``, ``a_c = γ_c f_c``, ``m_s = Σ_{c∈s} n_c f_c`` and
``b_s = γ_s / (1 + γ_s m_s)`` (Sherman-Morrison twice; Searle, Casella & McCulloch,
*Variance Components*, 1992, ch. 6):

    W' H⁻¹ W = W'W − Σ_c a_c S_c' S_c − Σ_s b_s S̃_s' S̃_s,   S̃_s = Σ_{c∈s} f_c S_c,
    log |H|  = Σ_c log(1 + n_c γ_c) + Σ_s log(1 + γ_s m_s),

where ``S_c`` is the row of column sums of ``W`` over class ``c``. So the data enter only
through ``W'W`` (one BLAS product), the class sums ``S`` (``C × (p + 1)``, one ``bincount``
per column) and the class sizes: :class:`GroupSums`. Without schools the ``b_s`` terms drop.

The fixed effects and ``σ²`` are profiled out: ``β̂(γ)`` solves ``X'H⁻¹X β = X'H⁻¹y``,
``Q(γ) = y'H⁻¹y − β̂'X'H⁻¹y`` and the REML criterion (lme4's ``REMLcrit``, Bates et al.
2015, *J. Stat. Softw.* 67(1), eq. 41) is

    d(γ) = (N − p) (1 + log(2π Q / (N − p))) + log |H| + log |X'H⁻¹X|,

minimised over ``γ ≥ 0`` by L-BFGS-B with its analytic gradient (from the rows
``1_g'H⁻¹W`` of each class and school, which the same sums give in closed form) and
polished by Newton steps on ``θ`` (Hessian by differences of that gradient), then
``σ̂² = Q / (N − p)`` and ``cov(β̂) = σ̂² (X'H⁻¹X)⁻¹`` (lme4's ``vcov``).

Degrees of freedom (Satterthwaite, as lmerTest's default; Kuznetsova, Brockhoff &
Christensen 2017, *J. Stat. Softw.* 82(13), section 3.2): for a contrast ``L``,
``ν = 2 (L'ĈL)² / (g' A g)`` with ``g`` the gradient of ``L' cov(β̂) L`` with respect to the
variance parameters ``(θ, σ)`` (analytic here: ``∂(X'H⁻¹X)/∂γ_k = −Σ_g R_g'R_g``, ``R_g`` the
``X`` part of ``1_g'H⁻¹W``), and ``A = 2 H⁻¹`` the inverse of the Hessian of the REML
deviance in ``(θ, σ)`` (lmerTest: ``numDeriv::hessian`` of ``devfun_vp``, then a
Moore-Penrose inverse over eigenvalues above ``1e-8``). We take the Hessian by central
differences of the analytic gradient of that deviance (step ``1e-5`` relative, error about
``1e-10`` relative, far inside the ``1e-3`` tolerance against lmerTest), on the same
``(θ, σ)`` scale and with the same pseudo-inverse, so that a variance at its boundary 0
contributes as it does in lmerTest (its gradient is 0 there).

Kenward-Roger (:func:`kenward_roger`, as pbkrtest's ``vcovAdj`` and ``Lb_ddf``): the
adjusted covariance and df, from the same sums in closed form. Not yet selectable in a
protocol (the effects use Satterthwaite); verified against pbkrtest in the tests.

Cost
----
Building the sums: ``O(N p²)`` for ``W'W`` plus ``O(N p)`` for the class sums, once.
Each evaluation of the criterion and its gradient: ``O(C p² + p³)`` (``C`` classes), with
no loop in Python over groups; the optimiser needs some 10 to 40 evaluations, the
Hessian ``4 k`` more (``k ≤ 3`` parameters). At 1M pupils in 40,000 classes of 20,000
schools with ``p = 4`` that is well under a second beyond reading the rows once, where
lme4 factors a sparse ``60,000 × 60,000`` system at every evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import linalg, optimize

__all__ = [
    "GroupSums",
    "MixedFit",
    "fit_random_intercepts",
    "group_sums",
    "kenward_roger",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

HESSIAN_TOL = 1e-8
"""Eigenvalues of the deviance Hessian at or below this are dropped (lmerTest's ``tol``)."""


@dataclass(frozen=True)
class GroupSums:
    """Sufficient statistics of a random-intercept model with classes (nested in schools).

    ``cross`` is ``W'W`` for ``W = [X, y]``; ``sums`` the column sums of ``W`` over each
    class (``C × (p + 1)``); ``sizes`` the pupils of each class; ``school`` the school of
    each class (``None`` for one level). ``n`` pupils, ``p`` fixed effects.
    """

    cross: FloatArray
    sums: FloatArray
    sizes: FloatArray
    school: IntArray | None
    n_schools: int
    n: int

    @property
    def p(self) -> int:
        """Number of fixed effects."""
        return int(self.cross.shape[0]) - 1

    @property
    def n_components(self) -> int:
        """Variance ratios of the model: 1 (class) or 2 (class, school)."""
        return 1 if self.school is None else 2

    def __add__(self, other: GroupSums) -> GroupSums:
        """Sums of two disjoint sets of classes (and schools), e.g. two chunks of rows."""
        if (self.school is None) != (other.school is None):
            raise ValueError("cannot add one-level and two-level group sums")
        school = None
        if self.school is not None and other.school is not None:
            school = np.concatenate([self.school, other.school + self.n_schools])
        return GroupSums(self.cross + other.cross, np.vstack([self.sums, other.sums]),
                         np.concatenate([self.sizes, other.sizes]), school,
                         self.n_schools + other.n_schools, self.n + other.n)


def group_sums(y: FloatArray, x: FloatArray, cluster: IntArray, n_clusters: int,
               school_of_cluster: IntArray | None = None) -> GroupSums:
    """The :class:`GroupSums` of rows ``(y, x)`` in classes ``cluster`` (``0..C-1``).

    ``school_of_cluster`` (length ``C``, codes ``0..S-1``) nests the classes in schools.

    Examples
    --------
    >>> s = group_sums(np.array([1.0, 2.0, 4.0]), np.ones((3, 1)), np.array([0, 0, 1]), 2)
    >>> s.sums.tolist(), s.sizes.tolist()
    ([[2.0, 3.0], [1.0, 4.0]], [2.0, 1.0])
    """
    w = np.column_stack([x, y])
    sums = np.column_stack([np.bincount(cluster, weights=w[:, j], minlength=n_clusters)
                            for j in range(w.shape[1])]).astype(np.float64)
    sizes = np.bincount(cluster, minlength=n_clusters).astype(float)
    n_schools = 0 if school_of_cluster is None else int(school_of_cluster.max()) + 1
    return GroupSums(w.T @ w, sums, sizes, school_of_cluster, n_schools, int(y.size))


@dataclass(frozen=True)
class _Pieces:
    """Everything one value of ``γ`` gives (see the module docstring)."""

    beta: FloatArray
    xhx_inv: FloatArray
    q: float
    logdet_h: float
    logdet_xhx: float
    rows: tuple[FloatArray, ...]
    """Per level (class, then school): the rows ``1_g'H⁻¹W`` (``G_k × (p + 1)``)."""
    diag: tuple[FloatArray, ...]
    """Per level: ``1_g'H⁻¹1_g``."""


def _pieces(sums: GroupSums, gamma: FloatArray) -> _Pieces:
    n_c = sums.sizes
    s = sums.sums
    f = 1.0 / (1.0 + n_c * gamma[0])
    a = gamma[0] * f
    m = sums.cross - (s * a[:, None]).T @ s
    logdet_h = float(np.sum(np.log1p(n_c * gamma[0])))
    class_rows = s * f[:, None]
    class_diag = n_c * f
    rows: tuple[FloatArray, ...]
    diag: tuple[FloatArray, ...]
    if sums.school is None:
        rows, diag = (class_rows,), (class_diag,)
    else:
        k = sums.n_schools
        tilde = np.column_stack([np.bincount(sums.school, weights=class_rows[:, j], minlength=k)
                                 for j in range(s.shape[1])])
        m_s = np.bincount(sums.school, weights=class_diag, minlength=k)
        b = gamma[1] / (1.0 + gamma[1] * m_s)
        m -= (tilde * b[:, None]).T @ tilde
        logdet_h += float(np.sum(np.log1p(gamma[1] * m_s)))
        b_c = b[sums.school]
        rows = (class_rows - (b_c * class_diag)[:, None] * tilde[sums.school],
                tilde / (1.0 + gamma[1] * m_s)[:, None])
        diag = (class_diag - b_c * class_diag ** 2, m_s / (1.0 + gamma[1] * m_s))
    p = sums.p
    xhx, xhy, yhy = m[:p, :p], m[:p, p], float(m[p, p])
    chol = linalg.cho_factor(xhx, lower=True)
    beta = linalg.cho_solve(chol, xhy)
    xhx_inv = linalg.cho_solve(chol, np.eye(p))
    q = yhy - float(xhy @ beta)
    logdet_xhx = 2.0 * float(np.sum(np.log(np.diag(chol[0]))))
    return _Pieces(beta, xhx_inv, q, logdet_h, logdet_xhx, rows, diag)


def _reml_criterion(sums: GroupSums, theta: FloatArray) -> tuple[float, FloatArray]:
    """Profiled REML deviance ``d(θ)`` (lme4's ``REMLcrit``) and its gradient in ``γ = θ²``.

    The gradient in ``θ`` is ``2 θ`` times this one.
    """
    gamma = theta ** 2
    pc = _pieces(sums, gamma)
    dof = sums.n - sums.p
    q = max(pc.q, 1e-300)
    value = (dof * (1.0 + math.log(2.0 * math.pi * q / dof)) + pc.logdet_h + pc.logdet_xhx)
    grad = np.empty(theta.size)
    p = sums.p
    for k in range(theta.size):
        rx, ry = pc.rows[k][:, :p], pc.rows[k][:, p]
        resid = ry - rx @ pc.beta
        d_gamma = (float(np.sum(pc.diag[k])) - float(np.sum((rx @ pc.xhx_inv) * rx))
                   - dof * float(np.dot(resid, resid)) / q)
        grad[k] = d_gamma
    return value, grad


def _deviance_gradient_vp(sums: GroupSums, varpar: FloatArray) -> FloatArray:
    """Gradient of lmerTest's ``devfun_vp`` (REML deviance at ``(θ, σ)``, σ not profiled).

    ``D = (N − p) log(2πσ²) + log|H| + log|X'H⁻¹X| + Q(θ) / σ²``.
    """
    theta, sigma = varpar[:-1], float(varpar[-1])
    pc = _pieces(sums, theta ** 2)
    p = sums.p
    dof = sums.n - p
    grad = np.empty(varpar.size)
    for k in range(theta.size):
        rx, ry = pc.rows[k][:, :p], pc.rows[k][:, p]
        resid = ry - rx @ pc.beta
        d_gamma = (float(np.sum(pc.diag[k])) - float(np.sum((rx @ pc.xhx_inv) * rx))
                   - float(np.dot(resid, resid)) / sigma ** 2)
        grad[k] = 2.0 * theta[k] * d_gamma
    grad[-1] = 2.0 * dof / sigma - 2.0 * pc.q / sigma ** 3
    return grad


@dataclass(frozen=True)
class MixedFit:
    """A REML fit: fixed effects, their covariance, and what the df need.

    ``theta`` is lme4's ``getME(fit, "theta")`` (class, then school), ``sigma`` its
    ``sigma(fit)``; ``vcov`` is ``vcov(fit)``; ``vcov_varpar`` and ``jacobian`` are
    lmerTest's slots of the same names (``Jac_list`` as a ``k × p × p`` array).
    """

    params: FloatArray
    vcov: FloatArray
    theta: FloatArray
    sigma: float
    reml_criterion: float
    vcov_varpar: FloatArray
    jacobian: FloatArray
    converged: bool
    n_evaluations: int

    @property
    def variances(self) -> FloatArray:
        """Variances of the random intercepts (class, then school)."""
        return (self.theta * self.sigma) ** 2

    def std_error(self, contrast: FloatArray) -> float:
        """Standard error of ``contrast' β̂`` (from ``vcov``)."""
        return math.sqrt(max(float(contrast @ self.vcov @ contrast), 0.0))

    def satterthwaite_df(self, contrast: FloatArray) -> float:
        """Satterthwaite degrees of freedom of ``contrast' β̂`` (lmerTest ``contest1D``)."""
        var = float(contrast @ self.vcov @ contrast)
        grad = np.array([float(contrast @ j @ contrast) for j in self.jacobian])
        denom = float(grad @ self.vcov_varpar @ grad)
        if not (denom > 0.0 and var > 0.0):
            return math.nan
        return 2.0 * var ** 2 / denom


def _central_hessian(gradient: Callable[[FloatArray], FloatArray], x: FloatArray
                     ) -> FloatArray:
    """Hessian by central differences of an analytic ``gradient`` (step 1e-5 relative)."""
    k = x.size
    hess = np.empty((k, k))
    for i in range(k):
        step = 1e-5 * max(abs(float(x[i])), 1e-2)
        up, down = x.copy(), x.copy()
        up[i] += step
        down[i] -= step
        hess[:, i] = (gradient(up) - gradient(down)) / (2.0 * step)
    return 0.5 * (hess + hess.T)


def _theta_gradient(sums: GroupSums, theta: FloatArray) -> FloatArray:
    return 2.0 * theta * _reml_criterion(sums, theta)[1]


NEWTON_DECREMENT = 1e-12
"""Converged when a Newton step would lower the REML deviance by less than this."""


def _polish(sums: GroupSums, theta: FloatArray) -> tuple[FloatArray, bool]:
    """Newton steps in ``θ`` from the quasi-Newton optimum; ``(θ, converged)``.

    L-BFGS-B stops a little short of machine precision (a line search that cannot
    progress); a few Newton steps on the analytic gradient land on the optimum to about
    1e-10 relative, which the comparison with lme4 at 1e-6 on standard errors needs. A
    ratio at its bound 0 stays there when the criterion rises with it (``∂d/∂γ ≥ 0``).
    """
    theta = theta.copy()
    for _ in range(10):
        value, grad_gamma = _reml_criterion(sums, theta)
        stuck = (theta <= 0.0) & (grad_gamma < 0.0)
        if stuck.any():
            # θ = 0 is stationary on the θ scale whatever the slope in γ: the criterion
            # falls as the variance grows from 0, so step away from the bound.
            theta[stuck] = 0.1
            continue
        free = theta > 0.0
        if not free.any():
            return theta, True
        grad = (2.0 * theta * grad_gamma)[free]
        hess = _central_hessian(lambda t: _theta_gradient(sums, t), theta)[np.ix_(free, free)]
        try:
            step = linalg.solve(hess, grad, assume_a="pos")
        except (linalg.LinAlgError, ValueError):
            return theta, _flat(grad)
        if float(grad @ step) <= NEWTON_DECREMENT:
            return theta, True
        trial = theta.copy()
        trial[free] = np.maximum(theta[free] - step, 0.0)
        # Reject a step that raises the criterion beyond its rounding error (relative
        # 1e-12: a sum of N terms; the last steps change it by less than that).
        if _reml_criterion(sums, trial)[0] > value + 1e-12 * max(1.0, abs(value)):
            return theta, _flat(grad)
        theta = trial
    return theta, _flat(2.0 * theta * _reml_criterion(sums, theta)[1])


def _flat(grad_theta: FloatArray) -> bool:
    """Fallback test of an optimum when Newton cannot proceed: slope below 1e-4 per unit
    of θ (the deviance then moves by less than 1e-8 over the remaining error in θ)."""
    return bool(np.all(np.abs(grad_theta) <= 1e-4))


def _start(sums: GroupSums) -> FloatArray:
    """Starting ``θ``: 1 for each level, as lme4 does."""
    return np.ones(sums.n_components)


def fit_random_intercepts(sums: GroupSums) -> MixedFit:
    """Fit the REML random-intercept model of the module docstring from its sums.

    Parameters
    ----------
    sums : GroupSums
        From :func:`group_sums` (``X`` must have full column rank).

    Returns
    -------
    MixedFit

    Raises
    ------
    numpy.linalg.LinAlgError
        ``X'H⁻¹X`` is not positive definite (collinear fixed effects).
    ValueError
        No residual degree of freedom, or the fixed effects fit ``y`` exactly.

    Examples
    --------
    Balanced classes, no covariate: the REML estimate of the arm effect is the difference
    of the arm means.

    >>> rng = np.random.default_rng(1)
    >>> cls = np.repeat(np.arange(10), 5); arm = (cls % 2).astype(float)
    >>> y = arm + rng.normal(size=10)[cls] + rng.normal(size=50)
    >>> fit = fit_random_intercepts(group_sums(y, np.column_stack([np.ones(50), arm]), cls, 10))
    >>> bool(np.isclose(fit.params[1], y[arm == 1].mean() - y[arm == 0].mean()))
    True
    """
    p = sums.p
    if sums.n - p < 1:
        raise ValueError(f"{sums.n} observations for {p} fixed effects")
    ols = _pieces(sums, np.zeros(sums.n_components))
    total = float(sums.cross[p, p])
    if not ols.q > 1e-13 * max(total, 1e-300):
        raise ValueError("no residual variation left once the fixed effects are fitted")
    evaluations = 0

    def objective(gamma: FloatArray) -> tuple[float, FloatArray]:
        nonlocal evaluations
        evaluations += 1
        return _reml_criterion(sums, np.sqrt(gamma))

    # Quasi-Newton on the ratios γ ≥ 0 (on lme4's θ scale the slope vanishes at θ = 0,
    # so a step onto the bound would look like an optimum), then Newton on θ.
    start = _start(sums) ** 2
    result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B",
                               bounds=[(0.0, None)] * start.size,
                               options={"ftol": 1e-12, "gtol": 1e-7, "maxiter": 500})
    theta, converged = _polish(sums, np.sqrt(np.asarray(result.x, dtype=float)))
    reml = _reml_criterion(sums, theta)[0]
    pc = _pieces(sums, theta ** 2)
    dof = sums.n - sums.p
    sigma = math.sqrt(max(pc.q, 0.0) / dof)
    vcov = sigma ** 2 * pc.xhx_inv
    varpar = np.append(theta, sigma)
    hess = _central_hessian(lambda v: _deviance_gradient_vp(sums, v), varpar)
    values, vectors = np.linalg.eigh(hess)
    keep = values > HESSIAN_TOL
    vcov_varpar = 2.0 * (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    jacobian = np.empty((varpar.size, p, p))
    for k in range(theta.size):
        rx = pc.rows[k][:, :p]
        middle = rx.T @ rx
        jacobian[k] = 2.0 * theta[k] * sigma ** 2 * (pc.xhx_inv @ middle @ pc.xhx_inv)
    jacobian[-1] = 2.0 * sigma * pc.xhx_inv
    return MixedFit(params=pc.beta, vcov=vcov, theta=theta, sigma=sigma,
                    reml_criterion=reml, vcov_varpar=vcov_varpar,
                    jacobian=jacobian, converged=converged,
                    n_evaluations=evaluations)


def kenward_roger(sums: GroupSums, fit: MixedFit, contrast: FloatArray) -> tuple[float, float]:
    """Kenward-Roger ``(standard error, df)`` of ``contrast' β̂`` (pbkrtest's ``vcovAdj`` and
    ``Lb_ddf``, which ``lmerTest::contest1D(ddf = "Kenward-Roger")`` calls).

    Kenward & Roger (1997), *Biometrics* 53(3), 983-997, with the expected information of
    pbkrtest (Halekoh & Højsgaard 2014, *J. Stat. Softw.* 59(9)): with ``Σ = Σ_r τ_r G_r``
    (``G`` = ``Z_c Z_c'``, ``Z_s Z_s'``, ``I``), ``P_r = −X'Σ⁻¹G_rΣ⁻¹X``,
    ``Q_rs = X'Σ⁻¹G_rΣ⁻¹G_sΣ⁻¹X``, ``W = 2 I_E⁻¹`` and ``Φ = (X'Σ⁻¹X)⁻¹``, the adjusted
    covariance is ``Φ + 2 Φ (Σ_rs W_rs (Q_rs − P_r Φ P_s)) Φ``. Every matrix is computed
    from the per-class sums in closed form (``H⁻¹``, ``H⁻²`` and ``H⁻³`` quadratic forms of the
    compound-symmetric blocks), so the cost is that of one criterion evaluation.
    """
    gamma = fit.theta ** 2
    pc = _pieces(sums, gamma)
    p = sums.p
    n_c = sums.sizes
    s_x = sums.sums[:, :p]
    xx = sums.cross[:p, :p]
    f = 1.0 / (1.0 + n_c * gamma[0])
    a = gamma[0] * f
    w = n_c * f
    nested = sums.school is not None
    if sums.school is not None:
        school, k = sums.school, sums.n_schools

        def by_school(values: FloatArray) -> FloatArray:
            if values.ndim == 1:
                return np.bincount(school, weights=values, minlength=k).astype(np.float64)
            return np.column_stack([np.bincount(school, weights=values[:, j], minlength=k)
                                    for j in range(values.shape[1])]).astype(np.float64)

        m_s = by_school(w)
        b = gamma[1] / (1.0 + gamma[1] * m_s)
        b_c = b[school]
        shrink = 1.0 / (1.0 + gamma[1] * m_s)
        tilde_s = by_school(s_x * f[:, None])
        u = a[:, None] * s_x + (b_c * f)[:, None] * tilde_s[school]
    else:
        u = a[:, None] * s_x
    t_c = s_x - n_c[:, None] * u
    xh2x = xx - s_x.T @ u - u.T @ s_x + (u * n_c[:, None]).T @ u
    xh3x = xh2x - (t_c * a[:, None]).T @ t_c
    rows_c = pc.rows[0][:, :p]
    if nested:
        t_s = by_school(t_c * f[:, None])
        xh3x -= (t_s * b[:, None]).T @ t_s
        y_c = f[:, None] * t_c - (b_c * w)[:, None] * t_s[school]
        rows_s = pc.rows[1][:, :p]
        y_s = t_s * shrink[:, None]
    else:
        y_c = f[:, None] * t_c
    # H-scale pieces, levels: class, (school), residual.
    levels = 3 if nested else 2
    xgx: list[FloatArray] = [rows_c.T @ rows_c]
    if nested:
        xgx.append(rows_s.T @ rows_s)
    xgx.append(xh2x)
    q: dict[tuple[int, int], FloatArray] = {}
    ktr = np.empty((levels, levels))
    e = levels - 1
    if nested:
        wr = by_school(rows_c * w[:, None])
        q[0, 0] = (rows_c * w[:, None]).T @ rows_c - (wr * b[:, None]).T @ wr
        q[0, 1] = (rows_c * (w * shrink[school])[:, None]).T @ rows_s[school]
        q[1, 1] = (rows_s * (m_s * shrink)[:, None]).T @ rows_s
        q[1, e] = rows_s.T @ y_s
        w2 = by_school(w ** 2)
        nf2 = by_school(n_c * f ** 2)
        ktr[0, 0] = float(np.sum(w ** 2) - 2.0 * np.sum(b_c * w ** 3) + np.sum(b ** 2 * w2 ** 2))
        ktr[0, 1] = float(np.sum((w * shrink[school]) ** 2))
        ktr[1, 1] = float(np.sum((m_s * shrink) ** 2))
        ktr[0, e] = float(np.sum(n_c * f ** 2 - 2.0 * b_c * w ** 2 * f
                                 + b_c ** 2 * w ** 2 * nf2[school]))
        ktr[1, e] = float(np.sum(nf2 * shrink ** 2))
        ktr[e, e] = float(sums.n - 2.0 * (np.sum(a * n_c) + np.sum(b * nf2))
                          + np.sum((a * n_c) ** 2) + 2.0 * np.sum(b_c * a * w ** 2)
                          + np.sum(b ** 2 * nf2 ** 2))
    else:
        q[0, 0] = (rows_c * w[:, None]).T @ rows_c
        ktr[0, 0] = float(np.sum(w ** 2))
        ktr[0, e] = float(np.sum(n_c * f ** 2))
        ktr[e, e] = float(sums.n - 2.0 * np.sum(a * n_c) + np.sum((a * n_c) ** 2))
    q[0, e] = rows_c.T @ y_c
    q[e, e] = xh3x
    for (r, s_), value in list(q.items()):
        q[s_, r] = value.T
    ktr = np.triu(ktr) + np.triu(ktr, 1).T
    sigma2 = fit.sigma ** 2
    phi = fit.vcov
    big_p = [-g / sigma2 ** 2 for g in xgx]
    big_q = {key: value / sigma2 ** 3 for key, value in q.items()}
    ktr = ktr / sigma2 ** 2
    info = np.empty((levels, levels))
    for r in range(levels):
        for s_ in range(levels):
            info[r, s_] = (ktr[r, s_] - 2.0 * float(np.sum(phi * big_q[r, s_]))
                           + float(np.sum((phi @ big_p[r]) * (big_p[s_] @ phi))))
    # pbkrtest: the inverse, or the generalised inverse when the information is singular.
    inverse = (np.linalg.inv if np.min(np.abs(np.linalg.eigvalsh(info))) > 1e-10
               else np.linalg.pinv)
    weights: FloatArray = 2.0 * np.asarray(inverse(info), dtype=np.float64)
    adjust = np.zeros((p, p))
    for r in range(levels):
        for s_ in range(levels):
            adjust += weights[r, s_] * (big_q[r, s_] - big_p[r] @ phi @ big_p[s_])
    phi_adj = phi + 2.0 * phi @ adjust @ phi
    se = math.sqrt(max(float(contrast @ phi_adj @ contrast), 0.0))
    return se, _kr_ddf(contrast, phi, big_p, weights)


def _kr_ddf(contrast: FloatArray, phi: FloatArray, big_p: list[FloatArray],
            weights: FloatArray) -> float:
    """pbkrtest's ``Lb_ddf`` for one contrast (``q = 1``)."""
    theta = np.outer(contrast, contrast) / float(contrast @ phi @ contrast)
    u = [theta @ phi @ pr @ phi for pr in big_p]
    a1 = a2 = 0.0
    for i in range(len(u)):
        for j in range(i, len(u)):
            e = 1.0 if i == j else 2.0
            a1 += e * weights[i, j] * float(np.trace(u[i])) * float(np.trace(u[j]))
            a2 += e * weights[i, j] * float(np.sum(u[i] * u[j].T))
    q = 1.0
    big_b = (a1 + 6.0 * a2) / (2.0 * q)
    g = ((q + 1.0) * a1 - (q + 4.0) * a2) / ((q + 2.0) * a2)
    c1 = g / (3.0 * q + 2.0 * (1.0 - g))
    c2 = (q - g) / (3.0 * q + 2.0 * (1.0 - g))
    c3 = (q + 2.0 - g) / (3.0 * q + 2.0 * (1.0 - g))
    v0 = 1.0 + c1 * big_b
    v0 = 0.0 if abs(v0) < 1e-10 else v0
    v1 = 1.0 - c2 * big_b
    v2 = 1.0 - c3 * big_b
    rho = (1.0 / q) * ((1.0 - a2 / q) / v1) ** 2 * v0 / v2
    return 4.0 + (q + 2.0) / (q * rho - 1.0)
