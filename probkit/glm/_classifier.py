"""GeneralizedLinearClassifier: logistic (Bernoulli) and softmax (categorical) regression on class labels."""

from __future__ import annotations

import inspect
import math

import numpy as np
from scipy import special
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from probkit.base import ProbkitEstimator, _class_indices, _tensor_to_numpy
from probkit.glm._design import Design, PerfectSeparationError, check_full_rank, find_separation
from probkit.glm._families import BinomialFamily
from probkit.glm._fit import _LinearLoss
from probkit.glm._links import resolve_link
from probkit.glm._regressor import GLM_PARAMETER_CONSTRAINTS, fit_glm_estimator
from probkit.glm._solver import penalized_newton
from probkit.glm._threads import limit_blas_threads
from probkit.utils._docstrings import ROWS, TARGETS, DocFragments, parameters_returns
from probkit.utils._warnings import warn_user
from probkit.utils.validation import check_sample_weight

__all__ = ["GeneralizedLinearClassifier", "MultinomialLoss"]

_CLASSIFIER_FAMILIES = {"multinomial": "multinomial", "categorical": "multinomial", "softmax": "multinomial",
                        "bernoulli": "bernoulli", "logistic": "bernoulli"}


def _classifier_family(family):
    from probkit.distributions import Bernoulli, Categorical, ExponentialFamily, Multinomial

    if isinstance(family, str) and family.lower() in _CLASSIFIER_FAMILIES:
        return _CLASSIFIER_FAMILIES[family.lower()]
    cls = family if inspect.isclass(family) else type(family)
    if isinstance(cls, type) and issubclass(cls, ExponentialFamily):
        if issubclass(cls, Bernoulli):
            return "bernoulli"
        if issubclass(cls, (Categorical, Multinomial)):
            return "multinomial"
    raise ValueError(f"family {family!r} is not a family of class labels; expected 'bernoulli' (two classes, "
                     "logistic regression) or 'multinomial' (any number of classes, softmax regression); use "
                     "GeneralizedLinearModel for numeric responses")


class MultinomialLoss(_LinearLoss):
    """Mean softmax cross-entropy of a linear model over ``n_classes`` rows of coefficients.

    ``f(B) = sum_i w_i (logsumexp_k eta_ik - eta_{i, y_i}) / sum_i w_i`` with
    ``eta = [1, X] B' + offset``. Only the entries of ``B`` selected by ``free`` are
    parameters (the others stay 0): this removes the directions along which the softmax is
    invariant (adding one vector to every class) where no penalty pins them down.

    Examples
    --------
    >>> X = np.array([[0.0], [1.0], [2.0]]); labels = np.array([0, 1, 2])
    >>> free = np.ones((3, 2), bool); free[0] = False
    >>> loss = MultinomialLoss(Design(X, True), labels, np.ones(3), None, 3, free)
    >>> bool(np.isclose(loss.value(np.zeros(4)), np.log(3)))  # uniform probabilities
    True
    """

    def __init__(self, design, labels, weights, offset, n_classes, free):
        super().__init__(design, weights, offset)
        self.labels = labels
        self.n_classes = n_classes
        self.free = free
        self.flat_free = np.flatnonzero(free.ravel())
        self.onehot = np.zeros((labels.shape[0], n_classes))
        self.onehot[np.arange(labels.shape[0]), labels] = 1.0

    def full(self, theta):
        B = np.zeros(self.free.shape)
        B[self.free] = theta
        return B

    def _linear(self, B):
        return self.design.linear_many(B)

    def value(self, theta):
        eta = self.eta(self.full(theta))
        lse = special.logsumexp(eta, axis=1)
        own = eta[np.arange(eta.shape[0]), self.labels]
        f = float(self.weights @ (lse - own)) / self.total_weight
        return f if math.isfinite(f) else math.inf

    def probabilities(self, eta):
        return np.exp(eta - special.logsumexp(eta, axis=1, keepdims=True))

    def fisher(self, P):
        """The full ``(K q, K q)`` Hessian ``[1, X]' diag(w p_k (delta_kl - p_l)) [1, X] / W``."""
        K, q = self.free.shape
        hess = np.empty((K * q, K * q))
        w = self.weights / self.total_weight
        for k in range(K):
            hess[k * q:(k + 1) * q, k * q:(k + 1) * q] = self.design.gram(w * P[:, k] * (1.0 - P[:, k]))
            for l in range(k + 1, K):
                block = -self.design.gram(w * P[:, k] * P[:, l])
                hess[k * q:(k + 1) * q, l * q:(l + 1) * q] = block
                hess[l * q:(l + 1) * q, k * q:(k + 1) * q] = block
        return hess

    def __call__(self, theta):
        eta = self.eta(self.full(theta))
        lse = special.logsumexp(eta, axis=1, keepdims=True)
        own = eta[np.arange(eta.shape[0]), self.labels]
        f = float(self.weights @ (lse[:, 0] - own)) / self.total_weight
        P = np.exp(eta - lse)
        grad = self.design.rmatvec((P - self.onehot) * self.weights[:, None]).T / self.total_weight  # (K, q)
        hess = self.fisher(P)
        idx = self.flat_free
        return f, grad.ravel()[idx], hess[np.ix_(idx, idx)]


_OFFSET = "offset : array-like, optional"
_DOCS = DocFragments(sections={
    "rows_offset_to_array": parameters_returns([ROWS, _OFFSET], "ndarray"),
    "rows_offset_to_labels": parameters_returns([ROWS, _OFFSET], "ndarray of shape (n_samples,)"),
    "labelled_data_to_float": parameters_returns([ROWS, TARGETS, "sample_weight, offset : array-like, optional"],
                                                 "float"),
})


@_DOCS.fill
class GeneralizedLinearClassifier(ClassifierMixin, ProbkitEstimator):
    """Logistic, probit or softmax regression: the GLM of class labels, fitted by penalised Newton steps.

    Two classes follow the Bernoulli GLM ``P(y = classes_[1]) = g^{-1}(X @ coef_[0] + intercept_[0])``
    (``link="canonical"`` is the logit; ``"probit"`` and ``"cloglog"`` are also available);
    more classes follow the softmax (categorical) GLM ``P(y = k) = softmax(X @ coef_.T + intercept_)_k``,
    whose natural parameters are the log-odds of the categorical distribution. The
    coefficients minimise the mean cross-entropy plus
    ``alpha * ((1 - l1_ratio) * ||coef||_2**2 / 2 + l1_ratio * ||coef||_1)`` (intercepts
    unpenalised): scikit-learn's ``LogisticRegression(C=C)`` is ``alpha = 1 / (C * sum(sample_weight))``.
    ``alpha=0`` is maximum likelihood (statsmodels' ``Logit`` / ``MNLogit``); then
    separated classes (for which no finite maximum exists) raise :class:`PerfectSeparationError`.

    Softmax coefficients are reported in scikit-learn's symmetric form: they sum to zero
    over the classes (for ``alpha > 0`` with an L2 part the optimum has that form; for
    ``alpha=0`` the fit is made against the first class and then centred).

    Parameters
    ----------
    family : str or probkit distribution, default="multinomial"
        ``"multinomial"`` (also ``"categorical"``; two classes then give the logistic model,
        as in scikit-learn) or ``"bernoulli"`` (exactly two classes).
    link : str, default="canonical"
        Two classes: ``"canonical"``/``"logit"``, ``"probit"`` or ``"cloglog"``.
    alpha : float, default=0.0
    l1_ratio : float, default=0.0
    fit_intercept : bool, default=True
    tol : float, default=1e-8
    max_iter : int, default=100
    verbose : int, default=0

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (1, n_features) for two classes, else (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
    bse_, intercept_bse_ : ndarray shaped like ``coef_`` / ``intercept_``, or None
        Standard errors (inverse Fisher information) of the reported coefficients; ``None``
        for a penalised fit.
    deviance_, null_deviance_, llf_, aic_, bic_ : float
        As in :class:`GeneralizedLinearModel`; ``llf_ = -deviance_ / 2``.
    n_iter_ : int
    converged_ : bool
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from probkit.glm import GeneralizedLinearClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = GeneralizedLinearClassifier(alpha=1 / (1.0 * len(X))).fit(X, y)  # LogisticRegression(C=1.0)
    >>> clf.coef_.shape, round(clf.score(X, y), 3)
    ((3, 4), 0.973)
    >>> clf.predict_proba(X[:1]).round(3)
    array([[0.982, 0.018, 0.   ]])
    """

    _parameter_constraints = GLM_PARAMETER_CONSTRAINTS

    def __init__(self, family="multinomial", link="canonical", alpha=0.0, l1_ratio=0.0, fit_intercept=True,
                 tol=1e-8, max_iter=100, verbose=0):
        self.family = family
        self.link = link
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            tags.classifier_tags.multi_class = _classifier_family(self.family) != "bernoulli"
        except ValueError:
            pass
        return tags

    def _binary_link(self):
        return resolve_link(self.link, BinomialFamily())

    # ------------------------------------------------------------------ fit
    @limit_blas_threads
    def fit(self, X, y, sample_weight=None, *, offset=None):
        """Fit the coefficients to labelled data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (any sortable values).
        sample_weight : array-like of shape (n_samples,), optional
        offset : array-like of shape (n_samples,) for two classes, or (n_samples, n_classes), optional
            Added to the linear predictor(s) with coefficient 1.

        Returns
        -------
        self
        """
        self._validate_params()
        kind = _classifier_family(self.family)
        X, y = validate_data(self, _tensor_to_numpy(X), _tensor_to_numpy(y), reset=True, dtype=np.float64)
        check_classification_targets(y)
        w = check_sample_weight(_tensor_to_numpy(sample_weight), X.shape[0])
        self.classes_, labels = np.unique(y, return_inverse=True)
        K = len(self.classes_)
        if K < 2:
            raise ValueError(f"the classifier needs samples of at least 2 classes; got 1 class ({self.classes_[0]})")
        present = np.bincount(labels, weights=w, minlength=K) > 0
        if present.sum() < 2:
            raise ValueError("the classifier needs positive sample_weight in at least 2 classes; got 1 class with "
                             "positive weight")
        if kind == "bernoulli" and K > 2:
            raise ValueError(f"Only binary classification is supported with family='bernoulli' (got {K} classes); "
                             "use family='multinomial'")
        if K > 2 and self.link.lower() not in ("canonical", "logit", "softmax"):
            raise ValueError(f"the softmax model of {K} classes has only its canonical link, got link={self.link!r}")
        off = self._check_offset(offset, X.shape[0], K)
        design = Design(X, self.fit_intercept)
        if K == 2:
            self._fit_binary(design, labels.astype(float), w, off)
        else:
            self._fit_multinomial(design, labels, w, off, K)
        return self

    def _check_offset(self, offset, n, K):
        if offset is None:
            return None
        off = np.asarray(_tensor_to_numpy(offset), dtype=float)
        shape = (n,) if K == 2 else (n, K)
        if off.shape != shape:
            raise ValueError(f"offset must have shape {shape} for {K} classes, got {off.shape}")
        if not np.all(np.isfinite(off)):
            raise ValueError("offset contains NaN or infinity")
        return off

    def _fit_binary(self, design, y01, w, off):
        fit, stats = fit_glm_estimator(self, design, y01, w, off, BinomialFamily(), self._binary_link())
        intercept, coef = design.split(fit.theta)
        self.coef_ = np.asarray(coef, dtype=float).reshape(1, -1).copy()
        self.intercept_ = np.array([intercept])
        bse = stats["bse"]
        self.bse_ = None if bse is None else bse[design.fit_intercept:].reshape(1, -1).copy()
        self.intercept_bse_ = bse[:1].copy() if bse is not None and design.fit_intercept else None

    def _fit_multinomial(self, design, labels, w, off, K):
        alpha, l1_ratio = float(self.alpha), float(self.l1_ratio)
        q = design.n_columns
        free = np.ones((K, q), dtype=bool)
        if alpha == 0:
            free[0] = False  # the first class is the reference
            check_full_rank(design, w, "drop or combine those columns, or set alpha > 0")
        elif design.fit_intercept:
            free[0, 0] = False  # intercepts are unpenalised: fix the first class's
        loss = MultinomialLoss(design, labels, w, off, K, free)
        l2_full = np.full((K, q), alpha * (1 - l1_ratio))
        l1_full = np.full((K, q), alpha * l1_ratio)
        if design.fit_intercept:
            l2_full[:, 0] = l1_full[:, 0] = 0.0
        start = np.zeros((K, q))
        if design.fit_intercept:
            freq = np.bincount(labels, weights=w, minlength=K) + 1e-3 * w.sum() / K
            start[:, 0] = np.log(freq / freq[0])
        result = penalized_newton(loss, start[free], l2_full[free], l1_full[free], tol=float(self.tol),
                                  max_iter=int(self.max_iter), value=loss.value, verbose=self.verbose)
        B = loss.full(result.theta)
        if alpha == 0:
            self._check_multinomial_separation(loss, B, result, K)
        if not result.converged:
            warn_user(f"the softmax GLM did not converge in {self.max_iter} iterations (largest gradient entry "
                      f"{result.optimality:.3g}); increase max_iter", ConvergenceWarning)
        # The symmetric form: intercepts (and unpenalised coefficients) summing to zero over classes.
        centred = B.copy()
        if design.fit_intercept:
            centred[:, 0] -= centred[:, 0].mean()
        if alpha == 0:
            centred[:, design.fit_intercept:] -= centred[:, design.fit_intercept:].mean(0)
        self.coef_ = centred[:, design.fit_intercept:].copy()
        self.intercept_ = centred[:, 0].copy() if design.fit_intercept else np.zeros(K)
        self.n_iter_, self.converged_ = int(result.n_iter), bool(result.converged)
        self.deviance_ = 2.0 * loss.value(result.theta) * loss.total_weight
        self.llf_ = -0.5 * self.deviance_
        n_params = (K - 1) * q if alpha == 0 else int(np.count_nonzero(centred[:, design.fit_intercept:])) + (
            K - 1) * design.fit_intercept
        nobs = float(w.sum())
        self.aic_ = -2 * self.llf_ + 2 * n_params
        self.bic_ = -2 * self.llf_ + n_params * math.log(nobs)
        self.bse_ = self.intercept_bse_ = None
        if alpha == 0:
            P = loss.probabilities(loss.eta(B))
            info = loss.fisher(P)[np.ix_(loss.flat_free, loss.flat_free)] * loss.total_weight
            cov_free = np.linalg.inv(info)
            # centred = T @ free coefficients, T = kron(I_K - 1/K, I_q) restricted to the free rows
            centring = np.kron(np.eye(K) - 1.0 / K, np.eye(q))[:, loss.flat_free]
            cov = centring @ cov_free @ centring.T
            bse = np.sqrt(np.clip(np.diag(cov), 0.0, None)).reshape(K, q)
            self.bse_ = bse[:, design.fit_intercept:].copy()
            self.intercept_bse_ = bse[:, 0].copy() if design.fit_intercept else None
        null_design = Design(np.empty((len(labels), 0)), True)
        if off is None:
            freq = np.bincount(labels, weights=w, minlength=K) / w.sum()
            with np.errstate(divide="ignore"):
                self.null_deviance_ = float(-2.0 * (w @ np.log(freq[labels])))
        else:
            null_free = np.ones((K, 1), dtype=bool)
            null_free[0] = False
            null_loss = MultinomialLoss(null_design, labels, w, off, K, null_free)
            zero = np.zeros(K - 1)
            res = penalized_newton(null_loss, zero, zero, zero, tol=float(self.tol), max_iter=int(self.max_iter),
                                   value=null_loss.value)
            self.null_deviance_ = 2.0 * res.objective * null_loss.total_weight

    def _check_multinomial_separation(self, loss, B, result, K):
        P = loss.probabilities(loss.eta(B))
        rows = loss.weights > 0
        with np.errstate(divide="ignore"):
            extreme = np.log(P[rows]).min(initial=0.0) < -23.0
        if result.converged and not extreme:
            return
        if find_separation(loss.design, loss.labels, K, loss.weights) is not None:
            raise PerfectSeparationError(
                "the classes are perfectly separated by linear functions of the features (complete or "
                "quasi-complete separation): the maximum-likelihood coefficients are infinite. Set alpha > 0 (an L2 "
                "penalty) for finite coefficients")

    # ------------------------------------------------------------------ prediction
    def decision_function(self, X, *, offset=None):
        """Linear predictors: shape (n_samples,) for two classes (log-odds of ``classes_[1]`` for the logit), else (n_samples, n_classes).

        %(rows_offset_to_array)s
        """
        self._check_fitted()
        X = self._validate_X(X, reset=False, dtype=np.float64)
        K = len(self.classes_)
        eta = X @ self.coef_.T + self.intercept_
        if K == 2:
            eta = eta[:, 0]
        off = self._check_offset(offset, X.shape[0], K)
        return eta + off if off is not None else eta

    def predict_log_proba(self, X, *, offset=None):
        """Log-probability of each class, shape (n_samples, n_classes).

        %(rows_offset_to_array)s
        """
        eta = self.decision_function(X, offset=offset)
        if len(self.classes_) == 2:
            link = self._binary_link()
            with np.errstate(divide="ignore"):
                return np.column_stack([link.log1m_inverse(eta), link.log_inverse(eta)])
        return eta - special.logsumexp(eta, axis=1, keepdims=True)

    def predict_proba(self, X, *, offset=None):
        """Probability of each class, shape (n_samples, n_classes).

        %(rows_offset_to_array)s
        """
        eta = self.decision_function(X, offset=offset)
        if len(self.classes_) == 2:
            mu = self._binary_link().inverse(eta)
            return np.column_stack([1.0 - mu, mu])
        return np.exp(eta - special.logsumexp(eta, axis=1, keepdims=True))

    def predict(self, X, *, offset=None):
        """The most probable class of each row.

        %(rows_offset_to_labels)s
        """
        logp = self.predict_log_proba(X, offset=offset)
        return self.classes_[np.argmax(logp, axis=1)]

    def score(self, X, y, sample_weight=None, *, offset=None):
        """Accuracy: the (weighted) fraction of rows whose predicted class is ``y``.

        %(labelled_data_to_float)s
        """
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self.predict(X, offset=offset), sample_weight=sample_weight))

    def deviance(self, X, y, sample_weight=None, *, offset=None):
        """``-2 sum_i w_i log p(y_i | x_i)``: twice the weighted cross-entropy of labelled data.

        %(labelled_data_to_float)s
        """
        logp = self.predict_log_proba(X, offset=offset)
        y = np.asarray(_tensor_to_numpy(y)).reshape(-1)
        if y.shape[0] != logp.shape[0]:
            raise ValueError(f"y has {y.shape[0]} entries but X has {logp.shape[0]} rows")
        idx, unknown = _class_indices(self.classes_, y)
        if np.any(unknown):
            raise ValueError(f"y holds labels unseen in fit, e.g. {y[unknown][0]!r}; known classes: "
                             f"{self.classes_.tolist()}")
        w = check_sample_weight(_tensor_to_numpy(sample_weight), logp.shape[0])
        return float(-2.0 * (w @ logp[np.arange(logp.shape[0]), idx]))
