"""GeneralizedLinearModel: a scikit-learn regressor for any exponential-family response."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import validate_data

from probkit.base import (NumberInterval, ProbkitEstimator, _tensor_to_numpy, non_negative_real, positive_int,
                          positive_real)
from probkit.glm._design import Design
from probkit.glm._families import NegativeBinomialFamily, resolve_glm_family
from probkit.glm._fit import fit_glm, glm_statistics, null_deviance
from probkit.glm._links import resolve_link
from probkit.glm._threads import limit_blas_threads
from probkit.utils._docstrings import ROWS, TARGETS, DocFragments, parameters_returns
from probkit.utils.validation import check_sample_weight

__all__ = ["GeneralizedLinearModel"]


#: Constructor parameters shared by the GLM estimators (booleans refused where a number is meant).
GLM_PARAMETER_CONSTRAINTS = {
    # resolved by the estimator's family resolver, which names the families it takes
    "family": "no_validation",
    "link": [str],
    "alpha": non_negative_real,
    "l1_ratio": [NumberInterval(Real, 0, 1, closed="both")],
    "fit_intercept": ["boolean"],
    "tol": positive_real,
    "max_iter": positive_int,
    "verbose": ["verbose"],
}


def fit_glm_estimator(est, design, y, w, off, family, link):
    """Fit one linear predictor with ``est``'s penalty and stopping options; set the fit's common attributes.

    Sets ``n_iter_``, ``converged_``, ``deviance_``, ``llf_``, ``aic_``, ``bic_`` and
    ``null_deviance_`` on ``est`` and returns the :func:`~probkit.glm._fit.fit_glm` result
    and the :func:`~probkit.glm._fit.glm_statistics` dict, from which the caller shapes
    the coefficients and standard errors.

    Examples
    --------
    >>> from probkit.glm._families import resolve_glm_family
    >>> from probkit.glm._links import LogLink
    >>> est = GeneralizedLinearModel(family="poisson")
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([1.0, 1.0, 3.0, 4.0])
    >>> fit, stats = fit_glm_estimator(est, Design(X, True), y, np.ones(4), None, resolve_glm_family("poisson"),
    ...                                LogLink())
    >>> fit.theta.round(4), est.converged_, bool(est.null_deviance_ > est.deviance_)
    (array([-0.1452,  0.5262]), True, True)
    """
    alpha = float(est.alpha)
    fit = fit_glm(design, y, w, off, family, link, alpha=alpha, l1_ratio=float(est.l1_ratio), tol=float(est.tol),
                  max_iter=int(est.max_iter), verbose=est.verbose)
    est.n_iter_ = int(fit.n_iter)
    est.converged_ = bool(fit.converged)
    stats = glm_statistics(design, y, w, off, fit, alpha=alpha)
    est.deviance_ = stats["deviance"]
    est.llf_ = stats["llf"]
    est.aic_ = stats["aic"]
    est.bic_ = stats["bic"]
    est.null_deviance_ = null_deviance(y, w, off, fit.family, fit.link, float(est.tol), int(est.max_iter))
    return fit, stats


def check_offset(offset, exposure, n_samples, link):
    """The offset vector (``offset + log(exposure)``), or ``None``.

    Examples
    --------
    >>> from probkit.glm._links import LogLink
    >>> check_offset(None, [1.0, np.e], 2, LogLink())
    array([0., 1.])
    """
    total = None
    if offset is not None:
        total = np.asarray(_tensor_to_numpy(offset), dtype=float)
        if total.ndim != 1 or total.shape[0] != n_samples:
            raise ValueError(f"offset must have shape ({n_samples},), got {total.shape}")
        if not np.all(np.isfinite(total)):
            raise ValueError("offset contains NaN or infinity")
    if exposure is not None:
        if link.name != "log":
            raise ValueError(f"exposure enters as log(exposure) in the linear predictor and needs the log link, "
                             f"not {link.name!r}; pass offset= instead")
        exp = np.asarray(_tensor_to_numpy(exposure), dtype=float)
        if exp.ndim != 1 or exp.shape[0] != n_samples:
            raise ValueError(f"exposure must have shape ({n_samples},), got {exp.shape}")
        if not np.all(np.isfinite(exp)) or np.any(exp <= 0):
            raise ValueError("exposure must be positive and finite")
        total = np.log(exp) if total is None else total + np.log(exp)
    return total


_DOCS = DocFragments(sections={
    "labelled_data_to_float": parameters_returns(
        [ROWS, TARGETS, "sample_weight, offset, exposure : array-like of shape (n_samples,), optional"], "float"),
})


@_DOCS.fill
class GeneralizedLinearModel(RegressorMixin, ProbkitEstimator):
    """Generalised linear model of an exponential-family response, fitted by penalised IRLS.

    The mean of ``y`` is ``mu = g^{-1}(X @ coef_ + intercept_ + offset)`` with ``y`` drawn
    from a probkit exponential family of mean ``mu``. The canonical link ``g`` is the
    family's natural parameter as a function of its mean (log for Poisson, logit for
    Bernoulli, identity for the normal). The coefficients minimise

    ``sum_i w_i d(y_i, mu_i) / (2 sum_i w_i) + alpha * ((1 - l1_ratio) * ||coef||_2**2 / 2 + l1_ratio * ||coef||_1)``

    with ``d`` the family's unit deviance and the intercept unpenalised -- scikit-learn's
    GLM objective (``PoissonRegressor(alpha)`` is ``family="poisson", alpha=alpha``) and,
    for ``alpha=0``, the maximum-likelihood estimate of statsmodels' ``GLM``. The solver
    is Newton's method on the Fisher information (IRLS) with a backtracking line search;
    with ``l1_ratio > 0``, proximal Newton steps solved by coordinate descent.

    Parameters
    ----------
    family : str or probkit distribution, default="normal"
        ``"normal"`` (or ``"gaussian"``), ``"poisson"``, ``"gamma"``, ``"exponential"``,
        ``"bernoulli"`` (0/1 responses), ``"binomial"`` (proportions of successes, with
        ``sample_weight`` the number of trials), ``"negative_binomial"`` (total_count
        estimated by maximum likelihood) or ``"geometric"``; or a probkit distribution:
        ``NegativeBinomial(fixed_total_count=r)`` fixes the dispersion,
        ``Gamma(fixed_concentration=a)`` fixes the Gamma shape.
    link : str, default="canonical"
        ``"canonical"`` or one of ``"identity"``, ``"log"``, ``"inverse"``, ``"logit"``,
        ``"probit"``, ``"cloglog"`` allowed for the family (e.g. ``"log"`` for Gamma).
    alpha : float, default=0.0
        Penalty strength (scikit-learn's ``alpha``). ``0`` is maximum likelihood; then the
        design must have full column rank.
    l1_ratio : float, default=0.0
        Elastic-net mixing: 0 is a ridge (L2) penalty, 1 a lasso (L1) penalty.
    fit_intercept : bool, default=True
    tol : float, default=1e-8
        Stop when a full Newton step moves no coefficient by more than
        ``tol * max(1, max|coefficient|)``; Newton's quadratic convergence then leaves an
        error far below ``tol``.
    max_iter : int, default=100
    verbose : int, default=0

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
    intercept_ : float
    n_iter_ : int
    converged_ : bool
    bse_ : ndarray of shape (n_features,) or None
        Standard errors of ``coef_`` from the inverse Fisher information times the
        dispersion (as statsmodels); ``None`` for a penalised fit.
    intercept_bse_ : float or None
    deviance_ : float
        Weighted deviance of the training data.
    null_deviance_ : float
        Deviance of the intercept-only model (with the offset), as statsmodels'.
    pearson_chi2_ : float
    dispersion_ : float
        Pearson chi2 / df_resid for the normal and Gamma families (statsmodels' ``scale``), else the fixed value.
    df_resid_ : float
    llf_ : float
        Log-likelihood of the training data (statsmodels' convention: the normal family
        with the identity link uses the variance RSS / n).
    aic_, bic_ : float
        ``-2 llf_ + 2 k`` and ``-2 llf_ + k log(n)``, with ``k`` the number of coefficients
        (nonzero ones for a penalised fit) plus an estimated total_count.
    total_count_ : float
        The negative binomial's total_count (estimated or fixed); only for that family.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.glm import GeneralizedLinearModel
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(500, 2))
    >>> y = rng.poisson(np.exp(0.5 + X @ [0.3, -0.2]))
    >>> glm = GeneralizedLinearModel(family="poisson").fit(X, y)
    >>> glm.coef_.round(2), round(glm.intercept_, 2)
    (array([ 0.39, -0.16]), 0.53)
    >>> glm.bse_.round(3)
    array([0.033, 0.033])
    >>> round(glm.score(X, y), 3)  # D^2, the fraction of deviance explained
    0.209
    """

    _parameter_constraints = GLM_PARAMETER_CONSTRAINTS

    def __init__(self, family="normal", link="canonical", alpha=0.0, l1_ratio=0.0, fit_intercept=True, tol=1e-8,
                 max_iter=100, verbose=0):
        self.family = family
        self.link = link
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.verbose = verbose

    # ------------------------------------------------------------------ setup
    def _family_and_link(self, fitted=False):
        if fitted:
            self._check_fitted()
        family = resolve_glm_family(self.family)
        if fitted and family.estimate_total_count:
            family = NegativeBinomialFamily(self.total_count_)
            family.estimate_total_count = True
        if family.estimate_total_count and self.link.lower() in ("canonical", "negative_binomial"):
            raise ValueError("the canonical link of the negative binomial depends on its total_count, which is "
                             "estimated here: use link='log', or give NegativeBinomial(fixed_total_count=r)")
        return family, resolve_link(self.link, family)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            tags.target_tags.positive_only = resolve_glm_family(self.family).positive_response
        except (ValueError, TypeError):
            pass
        return tags

    def _check_data(self, X, y, sample_weight, reset):
        X, y = validate_data(self, _tensor_to_numpy(X), _tensor_to_numpy(y), reset=reset, dtype=np.float64,
                             y_numeric=True)
        w = check_sample_weight(_tensor_to_numpy(sample_weight), X.shape[0])
        return X, y, w

    # ------------------------------------------------------------------ fit
    @limit_blas_threads
    def fit(self, X, y, sample_weight=None, *, offset=None, exposure=None):
        """Fit the coefficients (maximum likelihood, or the penalised estimate) and the fit statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Responses in the family's support (counts for Poisson, positive values for Gamma, ...).
        sample_weight : array-like of shape (n_samples,), optional
            Row weights (a weight of 2 counts the row twice); for ``family="binomial"``, the
            number of trials behind each proportion.
        offset : array-like of shape (n_samples,), optional
            Added to the linear predictor with coefficient 1.
        exposure : array-like of shape (n_samples,), optional
            Log link only: ``log(exposure)`` is added to the offset (rates per unit of exposure).

        Returns
        -------
        self
        """
        self._validate_params()
        family, link = self._family_and_link()
        X, y, w = self._check_data(X, y, sample_weight, reset=True)
        family.check_y(y)
        off = check_offset(offset, exposure, X.shape[0], link)
        design = Design(X, self.fit_intercept)
        fit, stats = fit_glm_estimator(self, design, y, w, off, family, link)
        intercept, coef = design.split(fit.theta)
        self.coef_ = np.asarray(coef, dtype=float).copy()
        self.intercept_ = float(intercept)
        if isinstance(fit.family, NegativeBinomialFamily):
            self.total_count_ = float(fit.family.total_count)
        self.pearson_chi2_ = stats["pearson_chi2"]
        self.dispersion_ = stats["dispersion"]
        self.df_resid_ = stats["df_resid"]
        bse = stats["bse"]
        self.bse_ = None if bse is None else bse[design.fit_intercept:].copy()
        self.intercept_bse_ = float(bse[0]) if bse is not None and design.fit_intercept else None
        return self

    # ------------------------------------------------------------------ prediction
    def _linear_predictor(self, X, offset=None, exposure=None):
        _, link = self._family_and_link(fitted=True)
        X = self._validate_X(X, reset=False, dtype=np.float64)
        eta = X @ self.coef_ + self.intercept_
        off = check_offset(offset, exposure, X.shape[0], link)
        return eta + off if off is not None else eta

    def predict(self, X, *, offset=None, exposure=None):
        """The fitted mean ``g^{-1}(X @ coef_ + intercept_ + offset)`` of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        offset, exposure : array-like of shape (n_samples,), optional

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        _, link = self._family_and_link(fitted=True)
        return link.inverse(self._linear_predictor(X, offset, exposure))

    def deviance(self, X, y, sample_weight=None, *, offset=None, exposure=None):
        """Weighted deviance ``sum_i w_i d(y_i, mu_i)`` of data under the fitted model.

        %(labelled_data_to_float)s
        """
        family, link = self._family_and_link(fitted=True)
        eta = self._linear_predictor(X, offset, exposure)
        y, w = self._check_target(y, sample_weight, eta.shape[0], family)
        with np.errstate(all="ignore"):
            return float(w @ family.unit_deviance(y, link.inverse(eta), eta, link))

    def _check_target(self, y, sample_weight, n, family):
        y = np.asarray(_tensor_to_numpy(y), dtype=float).reshape(-1)
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} entries but X has {n} rows")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinity")
        family.check_y(y)
        return y, check_sample_weight(_tensor_to_numpy(sample_weight), n)

    def score(self, X, y, sample_weight=None, *, offset=None, exposure=None):
        """D^2, the fraction of deviance explained: ``1 - D(y, mu) / D(y, mu_null)``.

        As scikit-learn's GLMs: ``mu_null`` is the weighted mean of ``y`` (with an offset,
        the fitted intercept-only model with that offset). 1 is a perfect fit.

        %(labelled_data_to_float)s
        """
        family, link = self._family_and_link(fitted=True)
        dev = self.deviance(X, y, sample_weight, offset=offset, exposure=exposure)
        y, w = self._check_target(y, sample_weight, len(np.asarray(_tensor_to_numpy(y)).reshape(-1)), family)
        off = check_offset(offset, exposure, y.shape[0], link)
        null = null_deviance(y, w, off, family, link, float(self.tol), int(self.max_iter))
        return 1.0 - dev / null if null > 0 else (1.0 if dev == 0 else -math.inf)
