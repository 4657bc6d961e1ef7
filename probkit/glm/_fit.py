"""Fitting one GLM: the penalised deviance, its IRLS derivatives and the statistics of the fit.

Shared by :class:`~probkit.glm.GeneralizedLinearModel` and the binary face of
:class:`~probkit.glm.GeneralizedLinearClassifier`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special
from sklearn.exceptions import ConvergenceWarning

from probkit.glm._design import Design, PerfectSeparationError, check_full_rank, find_separation
from probkit.glm._families import NegativeBinomialFamily
from probkit.glm._solver import penalized_newton
from probkit.utils._warnings import warn_user

__all__ = ["GLMFit", "fit_glm", "penalty_vectors"]

# Range of an estimated negative-binomial total_count (the upper end is the Poisson limit).
_TOTAL_COUNT_BOUNDS = (1e-8, 1e8)
_RANK_HINT = "drop or combine those columns, or set alpha > 0"
# A fitted probability closer than exp(-23) ~ 1e-10 to 0 or 1 prompts the separation check.
_EXTREME_LOG_PROB = -23.0


class _LinearLoss:
    """What the GLM losses share: the design, the observation weights (their total normalises the
    loss) and an optional offset added to the linear predictor ``_linear(coefficients)``."""

    def __init__(self, design, weights, offset):
        self.design = design
        self.weights = weights
        self.total_weight = float(weights.sum())
        self.offset = offset

    def eta(self, coefficients):
        eta = self._linear(coefficients)
        return eta + self.offset if self.offset is not None else eta


class GLMLoss(_LinearLoss):
    """Half the weighted mean deviance of a GLM and its IRLS (Fisher-scoring) derivatives.

    ``f(theta) = sum_i w_i d(y_i, mu_i) / (2 sum_i w_i)`` with ``mu = g^{-1}([1, X] theta + offset)``.
    The gradient is ``-[1, X]' (w (y - mu) mu' / V(mu)) / W`` and the curvature the Fisher
    information ``[1, X]' diag(w mu'**2 / V(mu)) [1, X] / W`` (the Hessian for a canonical link).

    Examples
    --------
    >>> from probkit.glm._families import resolve_glm_family
    >>> from probkit.glm._links import LogLink
    >>> X = np.array([[0.0], [1.0], [2.0]]); y = np.array([1.0, 2.0, 4.0])
    >>> loss = GLMLoss(Design(X, True), y, np.ones(3), np.zeros(3), resolve_glm_family("poisson"), LogLink())
    >>> f, grad, hess = loss(np.zeros(2))
    >>> grad.round(4)
    array([-1.3333, -2.3333])
    """

    def __init__(self, design, y, weights, offset, family, link):
        super().__init__(design, weights, offset)
        self.y = y
        self.family = family
        self.link = link
        self.canonical = link == family.canonical_link()
        self._last = (None, None)  # (theta bytes, (eta, mu, f)) of the last evaluation

    def _evaluate(self, theta):
        """``(eta, mu, f)`` at ``theta`` (``mu`` None outside the domain); the line search's last
        evaluation is the next step's point, so it is kept."""
        key = theta.tobytes()
        if self._last[0] == key:
            return self._last[1]
        eta = self.eta(theta)
        mu = self._mu(eta)
        f = math.inf
        if mu is not None:
            f = 0.5 * float(self.weights @ self.deviances(eta, mu)) / self.total_weight
            f = f if math.isfinite(f) else math.inf
        self._last = (key, (eta, mu, f))
        return eta, mu, f

    def _linear(self, theta):
        return self.design.linear(theta)

    def _mu(self, eta):
        if not self.link.valid_eta(eta):
            return None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mu = self.link.inverse(eta)
        return mu if self.family.valid_mu(mu) else None

    def deviances(self, eta, mu):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self.family.unit_deviance(self.y, mu, eta, self.link)

    def value(self, theta):
        return self._evaluate(theta)[2]

    def irls_weights(self, eta, mu):
        """``(s, h)``: the score factor ``w (y - mu) mu' / V`` and the Fisher weight ``w mu'**2 / V``."""
        dmu = self.link.inverse_derivative(eta)
        if self.canonical:
            ratio = self.family.canonical_sign
        else:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                ratio = self.family.score_ratio(eta, mu, dmu, self.link)
        s = self.weights * (self.y - mu) * ratio
        h = self.weights * dmu * ratio
        return s, np.maximum(h, 0.0)

    def __call__(self, theta):
        eta, mu, f = self._evaluate(theta)
        if mu is None or not math.isfinite(f):
            return math.inf, None, None
        s, h = self.irls_weights(eta, mu)
        grad = -self.design.rmatvec(s) / self.total_weight
        hess = self.design.gram(h) / self.total_weight
        return f, grad, hess


def penalty_vectors(n_columns, fit_intercept, alpha, l1_ratio):
    """Per-coordinate ``(l2, l1)`` weights of the elastic-net penalty; the intercept is not penalised.

    Examples
    --------
    >>> penalty_vectors(3, True, 2.0, 0.25)
    (array([0. , 1.5, 1.5]), array([0. , 0.5, 0.5]))
    """
    l2 = np.full(n_columns, alpha * (1.0 - l1_ratio))
    l1 = np.full(n_columns, alpha * l1_ratio)
    if fit_intercept:
        l2[0] = l1[0] = 0.0
    return l2, l1


def _start(loss, l2, check_rank=False):
    """One IRLS step from ``mu = (y + mean(y)) / 2`` (as statsmodels starts), or the intercept-only start.

    With ``check_rank``, the Gram matrix of that step (positive weights on the same rows as
    the sample weights) also serves the rank check of an unpenalised design.
    """
    design, family, link = loss.design, loss.family, loss.link
    y, w = loss.y, loss.weights
    ybar = float(w @ y / w.sum())
    q = design.n_columns
    candidates = []
    with np.errstate(all="ignore"):
        mu0 = family.start_mu(y, ybar)
        eta0 = link.link(mu0)
        dmu = link.inverse_derivative(eta0)
        if np.all(np.isfinite(eta0)) and np.all(np.isfinite(dmu)) and np.all(dmu != 0):
            h = w * dmu * dmu / family.variance(mu0)
            z = eta0 + (y - mu0) / dmu - (loss.offset if loss.offset is not None else 0.0)
            if np.all(np.isfinite(h)) and np.all(np.isfinite(z)) and np.all((h > 0) == (w > 0)):
                gram = design.gram(h)
                if check_rank:
                    check_full_rank(design, w, _RANK_HINT, gram=gram)
                    check_rank = False
                try:
                    step = gram / w.sum() + np.diag(l2 + 1e-10 * (l2 == 0))
                    candidates.append(np.linalg.solve(step, design.rmatvec(h * z) / w.sum()))
                except np.linalg.LinAlgError:
                    pass
        theta = np.zeros(q)
        if design.fit_intercept:
            theta[0] = float(link.link(np.array([ybar]))[0])
            if loss.offset is not None:
                theta[0] -= float(w @ loss.offset / w.sum())
            candidates.append(theta)
        candidates.append(np.zeros(q))
    if check_rank:
        check_full_rank(design, w, _RANK_HINT)
    for theta in candidates:
        if np.all(np.isfinite(theta)) and math.isfinite(loss.value(theta)):
            return theta
    raise ValueError(f"no starting point gives valid means under the {link.name} link of the {family.name} "
                     "family (every start puts some fitted mean outside the support); try another link or offset")


@dataclass
class GLMFit:
    """Coefficients and statistics of a fitted GLM.

    Attributes
    ----------
    theta : numpy.ndarray
        ``[intercept, coef...]`` (no intercept entry without one).
    family, link
        The fitted family (with an estimated total_count set) and link.
    """

    theta: np.ndarray
    family: object
    link: object
    n_iter: int
    converged: bool
    hess: np.ndarray = None


def fit_glm(design, y, weights, offset, family, link, *, alpha, l1_ratio, tol, max_iter, verbose=0):
    """Fit the penalised GLM, estimate a negative-binomial total_count if asked, and check the fit.

    Raises ``ValueError`` for a rank-deficient unpenalised design and
    :class:`PerfectSeparationError` for separated binary data without a penalty.

    Examples
    --------
    >>> from probkit.glm._families import resolve_glm_family
    >>> from probkit.glm._links import LogLink
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([1.0, 1.0, 3.0, 4.0])
    >>> res = fit_glm(Design(X, True), y, np.ones(4), None, resolve_glm_family("poisson"), LogLink(),
    ...               alpha=0.0, l1_ratio=0.0, tol=1e-10, max_iter=100)
    >>> res.converged, res.theta.round(4)
    (True, array([-0.1452,  0.5262]))
    """
    l2, l1 = penalty_vectors(design.n_columns, design.fit_intercept, alpha, l1_ratio)
    if family.estimate_total_count:
        return _fit_negative_binomial(design, y, weights, offset, link, l2, l1, tol, max_iter, verbose,
                                      check_rank=alpha == 0)
    loss = GLMLoss(design, y, weights, offset, family, link)
    start = _start(loss, l2, check_rank=alpha == 0)
    result = penalized_newton(loss, start, l2, l1, tol=tol, max_iter=max_iter, value=loss.value, verbose=verbose)
    if family.name in ("bernoulli", "binomial") and alpha == 0:
        _check_binary_separation(loss, result)
    if not result.converged:
        warn_user(f"the {family.name} GLM did not converge in {max_iter} iterations (largest gradient entry "
                  f"{result.optimality:.3g}); increase max_iter", ConvergenceWarning)
    return GLMFit(theta=result.theta, family=family, link=link, n_iter=result.n_iter, converged=result.converged,
                  hess=result.hess)


def _check_binary_separation(loss, result):
    eta = loss.eta(result.theta)
    rows = loss.weights > 0
    with np.errstate(all="ignore"):
        extreme = np.minimum(loss.link.log_inverse(eta[rows]), loss.link.log1m_inverse(eta[rows]))
    if result.converged and not np.any(extreme < _EXTREME_LOG_PROB):
        return
    y = loss.y
    labels = np.where(y >= 1, 1, np.where(y <= 0, 0, -1))
    direction = find_separation(loss.design, labels, 2, loss.weights)
    if direction is not None:
        raise PerfectSeparationError(
            "the outcomes are perfectly separated by a linear function of the features (complete or quasi-complete "
            "separation): the maximum-likelihood coefficients are infinite. Set alpha > 0 (an L2 penalty) for "
            "finite coefficients, or remove the separating features")


def profile_total_count(y, mu, weights):
    """The maximum-likelihood negative-binomial ``total_count`` for fixed means ``mu``.

    The score in ``r``, ``sum_i w_i (digamma(y_i + r) - digamma(r) + log(r / (r + mu_i))
    + (mu_i - y_i) / (r + mu_i))``, is solved on ``log r`` by Brent's method. As
    ``r -> infinity`` it behaves as ``-sum_i w_i ((y_i - mu_i)**2 - y_i) / (2 r**2)``, which
    decides the Poisson limit without evaluating the score where its terms cancel: counts
    that are not over-dispersed give the upper bound.

    Examples
    --------
    >>> y = np.array([0.0, 1.0, 5.0, 10.0, 2.0, 0.0])
    >>> r = profile_total_count(y, np.full(6, y.mean()), np.ones(6))
    >>> from probkit.distributions import NegativeBinomial
    >>> bool(abs(r - float(NegativeBinomial().fit(y).total_count)) < 1e-8 * r)
    True
    """
    keep = weights > 0
    y, mu, w = y[keep], mu[keep], weights[keep]
    low_r, high_r = _TOTAL_COUNT_BOUNDS
    if float(w @ ((y - mu) ** 2 - y)) <= 0:
        return high_r

    def score(log_r):
        r = math.exp(log_r)
        return float(w @ (special.digamma(y + r) - special.digamma(r) - np.log1p(mu / r) + (mu - y) / (r + mu)))

    low = math.log(low_r)
    if score(low) <= 0:
        return low_r
    # Below 1e6 the score's terms are evaluated accurately enough for its sign; beyond, the
    # asymptotic form above says it is negative.
    high = math.log(1e6)
    if score(high) >= 0:
        high = math.log(high_r)
        if score(high) >= 0:
            return high_r
    return math.exp(optimize.brentq(score, low, high, xtol=1e-13, rtol=4 * np.finfo(float).eps, maxiter=500))


def _fit_negative_binomial(design, y, weights, offset, link, l2, l1, tol, max_iter, verbose, check_rank):
    """Alternate the coefficients at a fixed total_count and the profile total_count at fixed means.

    For the log link the two blocks are orthogonal in the Fisher information, so the
    alternation converges in a few rounds; it stops at a joint stationary point.
    """
    from probkit.glm._families import PoissonFamily

    if link.name not in NegativeBinomialFamily.allowed_links - {"negative_binomial"}:
        raise ValueError(f"an estimated negative-binomial total_count needs a link that does not depend on it "
                         f"('log' or 'identity'), got {link.name!r}; or give NegativeBinomial(fixed_total_count=r)")
    # Start from the Poisson fit (the r -> infinity limit).
    loss = GLMLoss(design, y, weights, offset, PoissonFamily(), link)
    result = penalized_newton(loss, _start(loss, l2, check_rank), l2, l1, tol=tol, max_iter=max_iter,
                              value=loss.value)
    theta = result.theta
    r = profile_total_count(y, link.inverse(loss.eta(theta)), weights)
    n_iter, converged = result.n_iter, False
    for _ in range(max_iter):
        family = NegativeBinomialFamily(r)
        loss = GLMLoss(design, y, weights, offset, family, link)
        result = penalized_newton(loss, theta, l2, l1, tol=tol, max_iter=max_iter, value=loss.value,
                                  verbose=verbose)
        n_iter += result.n_iter
        change = float(np.abs(result.theta - theta).max())
        theta = result.theta
        r_new = profile_total_count(y, link.inverse(loss.eta(theta)), weights)
        r_change = abs(math.log(r_new) - math.log(r))
        r = r_new
        if verbose:
            print(f"  total_count {r:.10g}  coefficient change {change:.3g}")
        if result.converged and r_change <= tol and change <= tol * max(1.0, float(np.abs(theta).max())):
            converged = True
            break
    family = NegativeBinomialFamily(r)
    family.estimate_total_count = True
    if not converged:
        warn_user(f"the negative-binomial GLM did not converge in {max_iter} rounds of coefficients and "
                  "total_count; increase max_iter", ConvergenceWarning)
    return GLMFit(theta=theta, family=family, link=link, n_iter=n_iter, converged=converged, hess=result.hess)


def glm_statistics(design, y, weights, offset, fit, *, alpha):
    """Deviance, Pearson chi2, dispersion, log-likelihood, AIC/BIC and standard errors of a fitted GLM.

    The conventions are statsmodels': ``sample_weight`` counts repeated rows (its
    ``freq_weights``) except for binomial proportions, where it is the number of trials
    (its ``var_weights``); the dispersion is Pearson chi2 / residual degrees of freedom
    for the normal and Gamma families; the log-likelihood of the normal family with the
    identity link uses the maximum-likelihood variance ``RSS / n``; AIC and BIC count the
    coefficients (plus an estimated total_count), not the dispersion.
    """
    family, link = fit.family, fit.link
    loss = GLMLoss(design, y, weights, offset, family, link)
    eta = loss.eta(fit.theta)
    mu = link.inverse(eta)
    deviance = float(weights @ loss.deviances(eta, mu))
    var = family.variance(mu)
    with np.errstate(divide="ignore", invalid="ignore"):
        pearson_terms = np.where(weights > 0, weights * (y - mu) ** 2 / var, 0.0)
    pearson = float(pearson_terms.sum())
    nobs = float((weights > 0).sum()) if family.weights_are_trials else float(weights.sum())
    n_params = int(np.count_nonzero(fit.theta)) if alpha > 0 else design.n_columns
    df_resid = nobs - n_params
    if family.dispersion is None:
        dispersion = pearson / df_resid if df_resid > 0 else math.nan
    else:
        dispersion = float(family.dispersion)
    if family.name == "normal" and link.name == "identity":
        llf_dispersion = float(weights @ (y - mu) ** 2) / float(weights.sum())
    else:
        llf_dispersion = dispersion
    llf = math.nan
    if math.isfinite(llf_dispersion) and llf_dispersion > 0:
        rows = weights > 0
        if family.weights_are_trials:
            llf = float(family.log_likelihood(y[rows], mu[rows], llf_dispersion, trials=weights[rows]).sum())
        else:
            llf = float(weights[rows] @ family.log_likelihood(y[rows], mu[rows], llf_dispersion))
    k = n_params + int(family.estimate_total_count)
    stats = dict(deviance=deviance, pearson_chi2=pearson, nobs=nobs, df_resid=df_resid, dispersion=dispersion,
                 llf=llf, aic=-2 * llf + 2 * k, bic=-2 * llf + k * math.log(nobs), n_params=k)
    stats["bse"] = None
    if alpha == 0 and math.isfinite(dispersion):
        if fit.hess is not None and not family.estimate_total_count:
            info = fit.hess * loss.total_weight  # the Fisher information at the final coefficients
        else:
            info = design.gram(loss.irls_weights(eta, mu)[1])
        try:
            cov = dispersion * np.linalg.inv(info)
            stats["bse"] = np.sqrt(np.clip(np.diag(cov), 0.0, None))
            stats["cov"] = cov
        except np.linalg.LinAlgError:
            stats["bse"] = None
    return stats


def null_deviance(y, weights, offset, family, link, tol, max_iter):
    """Deviance of the intercept-only model (with the offset), as statsmodels' ``null_deviance``.

    Without an offset the null model's mean is the weighted mean of ``y``; with one it is
    fitted by the same Newton iteration.
    """
    if offset is None:
        mu = np.full_like(y, float(weights @ y / weights.sum()))
        with np.errstate(all="ignore"):
            return float(weights @ family.unit_deviance(y, mu))
    loss = GLMLoss(Design(np.empty((len(y), 0)), True), y, weights, offset, family, link)
    zero = np.zeros(1)
    result = penalized_newton(loss, _start(loss, zero), zero, zero, tol=tol, max_iter=max_iter, value=loss.value)
    eta = loss.eta(result.theta)
    return float(weights @ loss.deviances(eta, link.inverse(eta)))
