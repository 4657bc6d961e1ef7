"""Naive Bayes classifiers with class-conditional distributions of any probkit family.

``p(y = k | x) ∝ pi_k p_k(x)``, where ``p_k`` is one probkit distribution per class: a
product of independent per-feature families (the "naive" assumption), or one joint
family over all the columns (a multinomial over word counts, a multivariate normal).
Each class's distribution is the family's fit to that class's rows, computed from
class-weighted sufficient statistics -- so :meth:`NaiveBayes.partial_fit` only adds
statistics -- and, where the family has a conjugate Dirichlet or Beta prior, it is the
posterior mode under the symmetric prior of concentration ``1 + alpha``: the additive
(Laplace/Lidstone) smoothing of scikit-learn's MultinomialNB, BernoulliNB and
CategoricalNB. Normal features get scikit-learn's GaussianNB variance floor instead.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
import torch
from scipy import special
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from probkit.base import NumberInterval, ProbkitEstimator, _class_indices, _tensor_to_numpy, non_negative_real
from probkit.utils._docstrings import COMMON_DOCS
from probkit.utils.threads import limit_torch_threads
from probkit.utils.validation import check_sample_weight

__all__ = ["NaiveBayes"]


def _templates(family, n_features):
    """``(joint, templates)``: a joint family over all columns, or one scalar template per column."""
    from probkit.distributions import ExponentialFamily, Independent
    from probkit.distributions.registry import resolve_family

    if isinstance(family, Independent):
        family = family.components
    if isinstance(family, (list, tuple)):
        if len(family) != n_features:
            raise ValueError(f"family lists {len(family)} distributions but X has {n_features} columns")
        templates = [resolve_family(f) for f in family]
        for j, t in enumerate(templates):
            if t.event_ndim != 0:
                raise ValueError(f"family[{j}] ({type(t).__name__}) models vectors; a list needs one scalar family "
                                 "per column")
        return None, templates
    template = resolve_family(family)
    if not isinstance(template, ExponentialFamily):
        raise TypeError(f"family must be a probkit distribution family, got {type(family).__name__}")
    if template.event_ndim == 0:
        return None, [resolve_family(template) for _ in range(n_features)]
    if template.event_ndim == 1:
        return template, None
    raise ValueError(f"{type(template).__name__} models matrices; naive Bayes needs one row of X per sample")


def _smoothing_prior(template, alpha, n_categories):
    """The symmetric Dirichlet/Beta prior of concentration ``1 + alpha`` where ``template`` has one, else None."""
    from probkit.distributions import Beta, Dirichlet

    try:
        prior_cls = template.conjugate_prior_family
    except (TypeError, AttributeError):
        return None
    if prior_cls is Dirichlet:
        if n_categories is not None and n_categories < 2:
            return None  # one category: its probability is 1 whatever the prior
        return Dirichlet(concentration=np.full(n_categories, 1.0 + alpha))
    if prior_cls is Beta:
        return Beta(concentration1=1.0 + alpha, concentration0=1.0 + alpha)
    return None


@COMMON_DOCS.fill
class NaiveBayes(ClassifierMixin, ProbkitEstimator):
    """Naive Bayes classifier whose class-conditional distributions are any probkit family.

    ``log p(y = k | x) = log pi_k + log p_k(x) - log sum_j pi_j p_j(x)`` with ``p_k`` fitted to
    the rows of class ``k``:

    * ``family="normal"`` (independent normal features) is scikit-learn's ``GaussianNB``:
      variances get ``var_smoothing * (largest variance of a feature)`` added;
    * ``family="multinomial"`` (count vectors) is ``MultinomialNB`` and ``family="bernoulli"``
      (0/1 features; ``binarize`` thresholds real ones) is ``BernoulliNB``;
      ``family="categorical"`` (integer-coded features, one alphabet per column) is
      ``CategoricalNB``. Their probabilities are the posterior modes under the symmetric
      Dirichlet (Beta) prior of concentration ``1 + alpha``, i.e. ``(count + alpha) /
      (total + alpha * n_categories)``: scikit-learn's additive smoothing;
    * any other family (``"poisson"``, ``"gamma"``, ``"gaussian"`` for a full-covariance
      normal per class, ...) or a list of one family per column (like
      :class:`~probkit.distributions.Independent`) is fitted by maximum likelihood, or by
      MAP under ``feature_prior``.

    Parameters
    ----------
    family : str, probkit distribution, or list of them, default="normal"
        One scalar family for every column, a list of one per column, or a vector family
        (``"multinomial"``, ``"gaussian"``, ...) for all columns jointly.
    alpha : float, default=1.0
        Additive smoothing (pseudo-counts) of the families with a Dirichlet or Beta
        conjugate prior; ignored by the others.
    var_smoothing : float, default=1e-9
        Fraction of the largest variance of the normal features added to their variances.
    feature_prior : distribution or list, optional
        Conjugate priors overriding ``alpha``: one for every feature, or a list with one (or
        ``None``) per feature; the fit of a feature is then its posterior mode.
    class_prior : array-like of shape (n_classes,), optional
        Fixed prior class probabilities (scikit-learn's ``priors`` / ``class_prior``).
    fit_prior : bool, default=True
        Estimate the class probabilities from the data; ``False`` makes them uniform.
    binarize : float, optional
        Threshold turning features into 0/1 (``x > binarize``) before anything else, as
        ``BernoulliNB(binarize=...)``; ``None`` leaves ``X`` as it is.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    class_count_ : ndarray of shape (n_classes,)
        Weighted number of training rows per class.
    class_prior_, class_log_prior_ : ndarray of shape (n_classes,)
    distribution_ : probkit distribution with batch shape (n_classes,)
        The fitted class-conditional distributions (an ``Independent`` product, or the joint family).
    epsilon_ : float
        The variance added to normal features.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from probkit.naive_bayes import NaiveBayes
    >>> X, y = load_iris(return_X_y=True)
    >>> nb = NaiveBayes().fit(X, y)                       # GaussianNB
    >>> round(nb.score(X, y), 3)
    0.96
    >>> nb.distribution_.components[0].loc.round(2)       # per-class means of the first feature
    array([5.01, 5.94, 6.59])
    >>> counts = (X * 2).round().astype(int)
    >>> NaiveBayes(family="multinomial", alpha=1.0).fit(counts, y).predict_proba(counts[:1]).round(3)
    array([[0.968, 0.025, 0.007]])
    """

    _parameter_constraints = {
        # the family resolver, and each family's fit with its prior, raise clear errors for
        # what is no family, or no prior of that family
        "family": "no_validation",
        "alpha": non_negative_real,
        "var_smoothing": non_negative_real,
        "feature_prior": "no_validation",
        "class_prior": ["array-like", None],
        "fit_prior": ["boolean"],
        "binarize": [None, NumberInterval(Real, None, None, closed="both")],
    }

    def __init__(self, family="normal", alpha=1.0, var_smoothing=1e-9, feature_prior=None, class_prior=None,
                 fit_prior=True, binarize=None):
        self.family = family
        self.alpha = alpha
        self.var_smoothing = var_smoothing
        self.feature_prior = feature_prior
        self.class_prior = class_prior
        self.fit_prior = fit_prior
        self.binarize = binarize

    def _binarized(self, X):
        return X if self.binarize is None else (X > self.binarize).astype(np.float64)

    # ------------------------------------------------------------------ fitting
    @limit_torch_threads
    def fit(self, X, y, sample_weight=None):
        """Fit the class probabilities and the class-conditional distributions.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        self._validate_params()
        for name in ("classes_", "_stats_state", "_shift", "_normal_moments"):
            if hasattr(self, name):
                delattr(self, name)
        return self._fit(X, y, sample_weight, classes=None, first=True)

    @limit_torch_threads
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Add a batch of rows: the statistics accumulate and the parameters are refitted from them.

        The result equals :meth:`fit` on all the rows seen, including ``epsilon_`` (the
        variance floor of normal features, from the variance of every row seen; scikit-learn's
        GaussianNB.partial_fit takes it from the latest batch instead). A class without rows
        yet gets mean 0 and variance ``epsilon_`` for its normal features, as in GaussianNB.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like, optional
            Every class label; required on the first call.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        self._validate_params()
        first = not hasattr(self, "_stats_state")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, sample_weight, classes=classes, first=first)

    def _fit(self, X, y, sample_weight, classes, first):
        from probkit.distributions import Independent, Normal
        from probkit.distributions.base import SufficientStats

        X, y = validate_data(self, _tensor_to_numpy(X), _tensor_to_numpy(y), reset=first, dtype=np.float64)
        X = self._binarized(X)
        check_classification_targets(y)
        w = check_sample_weight(_tensor_to_numpy(sample_weight), X.shape[0])
        if first:
            self.classes_ = np.unique(y) if classes is None else np.unique(np.asarray(classes))
            if classes is not None and len(self.classes_) < 1:
                raise ValueError("classes must hold at least one label")
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes={list(classes)} differs from the classes of the first call "
                             f"{self.classes_.tolist()}")
        labels, unknown = _class_indices(self.classes_, y)
        if np.any(unknown):
            raise ValueError(f"y holds the label {y[unknown][0]!r}, which is not in classes {self.classes_.tolist()}")
        K = len(self.classes_)
        joint, templates = _templates(self.family, X.shape[1])
        normal_cols = [] if templates is None else [j for j, t in enumerate(templates) if isinstance(t, Normal)]
        if first:
            # Normal statistics are sums of x and x**2: centre them on the first batch's means.
            self._shift = np.zeros(X.shape[1])
            self._shift[normal_cols] = X[:, normal_cols].mean(0) if normal_cols else 0.0
        shifted = X - self._shift
        template = joint if joint is not None else Independent(self._with_alphabets(templates, X, first))
        resp = np.zeros((X.shape[0], K))
        resp[np.arange(X.shape[0]), labels] = w
        try:
            stats = template.summarize(torch.as_tensor(shifted), torch.as_tensor(resp))
        except ValueError as exc:
            raise ValueError(f"X does not fit the family: {exc}") from None
        if not first:
            state = self._stats_state
            stats = stats + SufficientStats(state["family"], state["fields"], state["meta"])
        self._stats_state = {"family": stats.family, "fields": dict(stats.fields), "meta": dict(stats.meta)}
        class_count = stats.count.numpy().copy()
        # The variance floor comes from the unweighted variance of every row seen (fit on the
        # concatenated batches gives the same floor as the batches through partial_fit).
        cols = shifted[:, normal_cols]
        moments = np.stack([np.full(len(normal_cols), float(len(X))), cols.sum(0), (cols * cols).sum(0)])
        if not first:
            moments = moments + self._normal_moments
        self._normal_moments = moments
        if normal_cols:
            n, s1, s2 = moments
            self.epsilon_ = float(self.var_smoothing * np.max(np.maximum(s2 / n - (s1 / n) ** 2, 0.0)))
        else:
            self.epsilon_ = 0.0
        self.distribution_ = self._from_stats(template, stats, normal_cols)
        self.class_count_ = class_count
        self._set_class_prior(class_count)
        return self

    def _with_alphabets(self, templates, X, first):
        """Categorical columns without an alphabet size get one from the data (largest symbol + 1)."""
        from probkit.distributions import Categorical

        out = []
        for j, t in enumerate(templates):
            if isinstance(t, Categorical) and t.n_categories is None:
                if first or not hasattr(self, "n_categories_"):
                    col = X[:, j]
                    if np.any(col < 0) or np.any(col != np.round(col)):
                        raise ValueError(f"X[:, {j}] must hold non-negative integer category codes for Categorical")
                    m = int(col.max()) + 1
                else:
                    m = int(self.n_categories_[j])
                t = Categorical(n_categories=m)
            out.append(t)
        if first:
            self.n_categories_ = np.array([getattr(t, "n_categories", 0) or 0 for t in out])
        return out

    def _priors(self, template):
        from probkit.distributions import Independent

        user = self.feature_prior
        if isinstance(template, Independent):
            n = template.n_features
            if user is not None and isinstance(user, (list, tuple)):
                if len(user) != n:
                    raise ValueError(f"feature_prior lists {len(user)} priors but X has {n} columns")
                user_list = list(user)
            else:
                user_list = [user] * n
            priors = []
            for comp, given in zip(template.components, user_list):
                if given is not None:
                    priors.append(given)
                else:
                    m = getattr(comp, "n_categories", None)
                    priors.append(_smoothing_prior(comp, float(self.alpha), m))
            return priors
        if user is not None:
            return user
        return _smoothing_prior(template, float(self.alpha), None if template.event_ndim == 0 else self.n_features_in_)

    def _from_stats(self, template, stats, normal_cols):
        from probkit.distributions import Independent, Normal

        priors = self._priors(template)
        if not isinstance(template, Independent):
            try:
                return template.from_stats(stats, prior=priors)
            except ValueError as exc:
                raise ValueError(f"cannot fit the {type(template).__name__} of every class: {exc}") from None
        fitted = []
        for j, (comp, sub, prior) in enumerate(zip(template.components, template._component_stats(stats), priors)):
            try:
                if isinstance(comp, Normal) and prior is None:
                    fitted.append(self._smoothed_normal(j, sub))
                else:
                    fitted.append(comp.from_stats(sub, prior=prior))
            except ValueError as exc:
                raise ValueError(f"cannot fit feature {j} ({type(comp).__name__}) of every class: {exc}") from None
        return Independent(fitted)

    def _smoothed_normal(self, j, stats):
        """Per-class mean and variance (plus ``epsilon_``) of a normal feature, as GaussianNB."""
        from probkit.distributions import Normal

        count = stats["count"]
        seen = count > 0
        safe = torch.where(seen, count, torch.ones_like(count))
        # A class without rows yet (partial_fit) gets mean 0 and the floor variance, as in
        # GaussianNB; its fitted prior probability is 0.
        mean = torch.where(seen, stats["x"] / safe, -torch.as_tensor(float(self._shift[j])))
        var = torch.where(seen, torch.clamp(stats["xx"] / safe - mean * mean, min=0.0), torch.zeros_like(mean))
        var = var + (self.epsilon_ if self.epsilon_ > 0 else (~seen).to(var.dtype))
        if bool((var <= 0).any()):
            n = int(count.sum().item())
            raise ValueError(f"feature {j} has zero variance in a class (from {n} sample{'s' if n != 1 else ''}) "
                             "and every feature is constant, so var_smoothing adds nothing; set var_smoothing > 0 on "
                             "data with spread")
        offset = float(self._shift[j])
        if stats.meta.get("shift") is not None:  # a family that accumulates about its own centre
            offset += float(stats.meta["shift"])
        return Normal(loc=mean + offset, scale=torch.sqrt(var))

    def _set_class_prior(self, class_count):
        K = len(self.classes_)
        if self.class_prior is not None:
            prior = np.asarray(self.class_prior, dtype=float)
            if prior.shape != (K,):
                raise ValueError(f"class_prior must have one probability per class ({K}), got shape {prior.shape}")
            if np.any(prior < 0) or not np.isclose(prior.sum(), 1.0):
                raise ValueError("class_prior must be non-negative and sum to 1")
        elif self.fit_prior:
            prior = class_count / class_count.sum()
        else:
            prior = np.full(K, 1.0 / K)
        self.class_prior_ = prior
        with np.errstate(divide="ignore"):
            self.class_log_prior_ = np.log(prior)

    # ------------------------------------------------------------------ prediction
    @limit_torch_threads
    def predict_joint_log_proba(self, X):
        """``log pi_k + log p_k(x)`` for every row and class, shape (n_samples, n_classes).

        %(rows_to_array)s
        """
        self._check_fitted()
        X = self._binarized(self._validate_X(X, reset=False, dtype=np.float64))
        try:
            loglik = np.asarray(self.distribution_.log_prob(X))
        except ValueError as exc:
            raise ValueError(f"X does not fit the fitted family: {exc}") from None
        return loglik + self.class_log_prior_

    def predict_log_proba(self, X):
        """Log posterior probability of each class, shape (n_samples, n_classes).

        %(rows_to_array)s
        """
        jll = self.predict_joint_log_proba(X)
        return jll - special.logsumexp(jll, axis=1, keepdims=True)

    def predict_proba(self, X):
        """Posterior probability of each class, shape (n_samples, n_classes).

        %(rows_to_array)s
        """
        return np.exp(self.predict_log_proba(X))

    def score(self, X, y, sample_weight=None):
        """Accuracy: the (weighted) fraction of rows whose predicted class is ``y``.

        %(labelled_rows_to_float)s
        """
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))

    def predict(self, X):
        """The most probable class of each row.

        %(rows_to_labels)s
        """
        jll = self.predict_joint_log_proba(X)
        return self.classes_[np.argmax(jll, axis=1)]
