"""Penalised Newton (IRLS) with a line search, and proximal Newton for an L1 penalty.

The objective is ``f(theta) + sum_j l2_j theta_j**2 / 2 + sum_j l1_j |theta_j|`` where ``f``
is a smooth convex loss (half the mean deviance of a GLM) whose gradient and Hessian
(the Fisher information, as in IRLS) the caller supplies. Without an L1 term each step
solves the Newton system by Cholesky; with one, each step minimises the quadratic model
plus the L1 term by cyclic coordinate descent (the glmnet scheme). Steps are
backtracked until the objective decreases enough (Armijo), so the iteration also
converges where plain IRLS can oscillate (non-canonical links).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg

__all__ = ["NewtonResult", "penalized_newton", "soft_threshold"]

_ARMIJO = 1e-4
_MAX_HALVINGS = 60


@dataclass
class NewtonResult:
    """Outcome of :func:`penalized_newton`.

    Attributes
    ----------
    theta : numpy.ndarray
    n_iter : int
    converged : bool
    optimality : float
        Largest entry of the minimum-norm subgradient of the penalised objective.
    objective : float
    hess : numpy.ndarray
        The curvature matrix at ``theta`` (reused for standard errors).
    """

    theta: np.ndarray
    n_iter: int
    converged: bool
    optimality: float
    objective: float
    hess: np.ndarray = None


def soft_threshold(x, threshold):
    """``sign(x) * max(|x| - threshold, 0)``.

    Examples
    --------
    >>> soft_threshold(np.array([-3.0, 0.5, 2.0]), 1.0)
    array([-2.,  0.,  1.])
    """
    return np.sign(x) * np.maximum(np.abs(x) - threshold, 0.0)


def _penalty(theta, l2, l1):
    return 0.5 * float(l2 @ (theta * theta)) + float(l1 @ np.abs(theta))


def _optimality(theta, grad, l2, l1):
    """Largest entry of the minimum-norm subgradient (0 exactly at the optimum)."""
    g = grad + l2 * theta
    nonzero = theta != 0
    sub = np.where(nonzero, np.abs(g + l1 * np.sign(theta)), np.maximum(np.abs(g) - l1, 0.0))
    return float(sub.max()) if sub.size else 0.0


def _newton_direction(hess, rhs):
    """Solve ``hess @ d = rhs`` for a symmetric positive (semi-)definite ``hess``."""
    try:
        factor = linalg.cho_factor(hess, lower=True, check_finite=False)
        d = linalg.cho_solve(factor, rhs, check_finite=False)
        if np.all(np.isfinite(d)):
            return d
    except linalg.LinAlgError:
        pass
    # Numerically singular: the least-squares direction (minimum norm) still descends.
    return linalg.lstsq(hess, rhs, cond=None, check_finite=False, lapack_driver="gelsd")[0]


def _coordinate_descent(hess, linear, l2, l1, start, tol, max_sweeps=10_000):
    """Minimise ``z' H z / 2 + linear' z + sum l2 z**2 / 2 + sum l1 |z|`` by cyclic coordinate descent."""
    z = start.copy()
    hz = hess @ z
    diag = np.diag(hess) + l2
    scale = max(1.0, float(np.abs(z).max(initial=0.0)))
    for _ in range(max_sweeps):
        largest = 0.0
        for j in range(z.shape[0]):
            if diag[j] <= 0.0:
                if l1[j] > 0.0 and z[j] != 0.0:
                    hz -= hess[:, j] * z[j]
                    z[j] = 0.0
                continue
            partial = linear[j] + hz[j] - hess[j, j] * z[j]
            new = -soft_threshold(partial, l1[j]) / diag[j]
            change = new - z[j]
            if change != 0.0:
                hz += hess[:, j] * change
                z[j] = new
                largest = max(largest, abs(change))
        scale = max(1.0, float(np.abs(z).max(initial=0.0)))
        if largest <= tol * scale:
            break
    return z


def penalized_newton(fun, theta0, l2, l1, *, tol=1e-8, max_iter=100, value=None, verbose=0):
    """Minimise ``f(theta) + l2-penalty + l1-penalty`` by damped (proximal) Newton steps.

    Parameters
    ----------
    fun : callable
        ``fun(theta) -> (f, grad, hess)``: the smooth loss, its gradient and a positive
        semi-definite curvature matrix (Hessian or Fisher information). ``f`` is ``inf``
        where ``theta`` is outside the domain.
    theta0 : numpy.ndarray
        A start inside the domain.
    l2, l1 : numpy.ndarray
        Per-coordinate penalty weights (0 for unpenalised coordinates such as an intercept).
    tol : float
        Stop when the (proximal) Newton step changes no coordinate by more than
        ``tol * max(1, |theta|_inf)``: the step estimates the distance to the optimum, so
        unlike a bound on the gradient this does not depend on the scale of the features.
    max_iter : int
    value : callable, optional
        ``value(theta) -> f`` alone, for the line search (defaults to ``fun(theta)[0]``).
    verbose : int

    Returns
    -------
    NewtonResult

    Examples
    --------
    >>> H = np.array([[2.0, 0.5], [0.5, 1.0]]); b = np.array([1.0, -1.0])
    >>> quad = lambda t: (0.5 * t @ H @ t - b @ t, H @ t - b, H)
    >>> res = penalized_newton(quad, np.zeros(2), np.zeros(2), np.zeros(2))
    >>> np.allclose(res.theta, np.linalg.solve(H, b)), res.converged
    (True, True)
    """
    value = value or (lambda t: fun(t)[0])
    theta = np.array(theta0, dtype=float)
    use_l1 = bool(np.any(l1 > 0))
    f, grad, hess = fun(theta)
    if not np.isfinite(f):
        raise ValueError("the starting point is outside the domain of the model")
    objective = f + _penalty(theta, l2, l1)
    converged = False
    n_iter = 0
    opt = _optimality(theta, grad, l2, l1)
    for n_iter in range(1, max_iter + 1):
        if use_l1:
            target = _coordinate_descent(hess, grad - hess @ theta, l2, l1, theta, tol=min(1e-6, 0.01 * opt + 1e-14))
            direction = target - theta
            decrease = float(grad @ direction) + _penalty(target, l2, l1) - _penalty(theta, l2, l1)
        else:
            pen_grad = grad + l2 * theta
            direction = _newton_direction(hess + np.diag(l2), -pen_grad)
            decrease = float(pen_grad @ direction)
        size = float(np.abs(direction).max(initial=0.0))
        if size <= tol * max(1.0, float(np.abs(theta).max(initial=0.0))):
            # The (proximal) Newton step is negligible: take it and stop.
            if size > 0 and math.isfinite(value(theta + direction)):
                theta = theta + direction
                f, grad, hess = fun(theta)
                objective = f + _penalty(theta, l2, l1)
                opt = _optimality(theta, grad, l2, l1)
            converged = True
            break
        if decrease >= 0:
            # No descent left although the step is not negligible: stationary up to rounding.
            break
        step = 1.0
        slack = 64 * np.finfo(float).eps * abs(objective)
        for _ in range(_MAX_HALVINGS):
            candidate = theta + step * direction
            f_new = value(candidate)
            new_objective = f_new + _penalty(candidate, l2, l1)
            if np.isfinite(new_objective) and new_objective <= objective + _ARMIJO * step * decrease + slack:
                break
            step *= 0.5
        else:
            break
        theta = candidate
        f, grad, hess = fun(theta)
        objective = f + _penalty(theta, l2, l1)
        opt = _optimality(theta, grad, l2, l1)
        if verbose:
            print(f"  iteration {n_iter:3d}  objective {objective:.12g}  step {step:.3g}  optimality {opt:.3g}")
    return NewtonResult(theta=theta, n_iter=n_iter, converged=converged, optimality=opt, objective=objective,
                        hess=hess)
