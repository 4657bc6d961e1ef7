"""``hmmlearn.hmm`` on probkit: the EM-fitted HMMs with hmmlearn 0.3.3's calling conventions.

Each class subclasses the probkit estimator of the same name (:mod:`probkit.hmm`) and
adds only hmmlearn's conventions (:mod:`probkit.compat.hmmlearn.base`): constructor
signature and defaults (``implementation="log"``), positional ``lengths``,
``score_samples`` returning ``(log_prob, posteriors)``, ``monitor_``, ``n_features``,
``covars_`` read back as full matrices. The algorithms are probkit's.
"""

from __future__ import annotations

import numpy as np

from probkit import hmm as _hmm
from probkit.compat.hmmlearn._covars import _FullCovarsView, _SettableNFeatures
from probkit.compat.hmmlearn.base import _HMMLearnAPI, _signature_constraints
from probkit.hmm._docs import HMM_DOCS

__all__ = ["CategoricalHMM", "GMMHMM", "GaussianHMM", "MultinomialHMM", "PoissonHMM"]

COVARIANCE_TYPES = frozenset(("spherical", "diag", "full", "tied"))


class _SymbolInput:
    """hmmlearn's input rules for one categorical symbol per row (``CategoricalHMM`` and its
    variational twin): ``fit`` refuses non-integer arrays and sets ``n_features`` (the
    alphabet size) when it was not given."""

    _checks_input_on_fit = True

    def _check_and_set_n_features(self, X):
        """Check ``X`` holds non-negative integer symbols below ``n_features`` (or set ``n_features``)."""
        X = np.asarray(X)
        if not np.issubdtype(X.dtype, np.integer):
            raise ValueError("Symbols should be integers")
        if X.min() < 0:
            raise ValueError("Symbols should be nonnegative")
        if self.n_features is not None:
            if self.n_features - 1 < X.max():
                raise ValueError(f"Largest symbol is {X.max()} but the model only emits symbols up to "
                                 f"{self.n_features - 1}")
        else:
            self.n_features = int(X.max()) + 1

    def _sync_n_features(self):
        for name in ("emissionprob_posterior_", "emissionprob_"):
            if self.n_features is None and hasattr(self, name):
                self.n_features = np.shape(getattr(self, name))[1]


@HMM_DOCS.fill
class GaussianHMM(_HMMLearnAPI, _FullCovarsView, _hmm.GaussianHMM):
    """hmmlearn's ``GaussianHMM`` on :class:`probkit.GaussianHMM`.

    Parameters
    ----------
    %(n_components)s
    covariance_type : {"spherical", "diag", "full", "tied"}, default="diag"
    min_covar : float, default=1e-3
    means_prior, means_weight : float or array-like, default=0
    covars_prior, covars_weight : float or array-like, default=1e-2, 1
        As in :class:`probkit.GaussianHMM` (a scalar ``covars_prior`` of a full/tied model
        is a multiple of the identity).
    %(hmm_options)s
    params, init_params : str, default="stmc"
        ``s`` start, ``t`` transitions, ``m`` means, ``c`` covariances.

    Attributes
    ----------
    %(chain_attrs)s
    means_ : ndarray of shape (n_components, n_features)
    covars_ : ndarray of shape (n_components, n_features, n_features)
        Full matrices whatever ``covariance_type``; assign the compact shape
        (spherical ``(K,)``, diag ``(K, d)``, full ``(K, d, d)``, tied ``(d, d)``),
        which ``_covars_`` holds.
    %(fit_attrs)s
    n_features : int

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.compat.hmmlearn import hmm
    >>> model = hmm.GaussianHMM(n_components=2, covariance_type="diag")
    >>> model.startprob_ = np.array([0.6, 0.4])
    >>> model.transmat_ = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> model.means_ = np.array([[0.0], [5.0]])
    >>> model.covars_ = np.array([[1.0], [1.0]])
    >>> model.covars_.shape
    (2, 1, 1)
    >>> X, Z = model.sample(300, random_state=0)
    >>> fitted = hmm.GaussianHMM(2, n_iter=50, random_state=0).fit(X, [150, 150])
    >>> np.round(np.sort(fitted.means_[:, 0]), 1)
    array([-0.1,  4.9])
    >>> log_prob, posteriors = fitted.score_samples(X, [150, 150])
    >>> posteriors.shape
    (300, 2)
    """

    def __init__(self, n_components=1, covariance_type="diag", min_covar=1e-3, startprob_prior=1.0,
                 transmat_prior=1.0, means_prior=0, means_weight=0, covars_prior=1e-2, covars_weight=1,
                 algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, verbose=False, params="stmc",
                 init_params="stmc", implementation="log"):
        super().__init__(n_components=n_components, covariance_type=covariance_type, min_covar=min_covar,
                         startprob_prior=startprob_prior, transmat_prior=transmat_prior, means_prior=means_prior,
                         means_weight=means_weight, covars_prior=covars_prior, covars_weight=covars_weight,
                         algorithm=algorithm, random_state=random_state, n_iter=n_iter, tol=tol, verbose=verbose,
                         params=params, init_params=init_params, implementation=implementation)
        self._hmmlearn_setup()

    _parameter_constraints = _signature_constraints(_hmm.GaussianHMM, __init__)

    @property
    def full_covars_(self):
        """Covariances as full matrices (the same as ``covars_`` here)."""
        with self._probkit_call():
            return super().full_covars_


@HMM_DOCS.fill
class GMMHMM(_HMMLearnAPI, _SettableNFeatures, _hmm.GMMHMM):
    """hmmlearn's ``GMMHMM`` on :class:`probkit.GMMHMM`.

    The M-step is probkit's exact EM step (see :class:`probkit.GMMHMM`): from the same
    parameters the scores, posteriors and decoded paths are hmmlearn's, the parameters
    after a fit step are not.

    Parameters
    ----------
    %(n_components)s
    n_mix : int, default=1
    min_covar : float, default=1e-3
    weights_prior : float or array-like, default=1.0
    means_prior, means_weight : float or array-like, default=0.0
    covars_prior, covars_weight : float or array-like, optional
    covariance_type : {"diag", "spherical", "full", "tied"}, default="diag"
    %(hmm_options)s
    params, init_params : str, default="stmcw"
        ``s`` start, ``t`` transitions, ``w`` weights, ``m`` means, ``c`` covariances.

    %(gmm_attributes)s
    n_features : int

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.compat.hmmlearn.hmm import GMMHMM
    >>> rng = np.random.RandomState(0)
    >>> X = np.r_[rng.normal(0, 1, (200, 1)), rng.normal(8, 1, (200, 1))]
    >>> model = GMMHMM(n_components=2, n_mix=2, n_iter=20, random_state=0).fit(X, [200, 200])
    >>> model.weights_.shape, model.means_.shape, model.n_features
    ((2, 2), (2, 2, 1), 1)
    """

    def __init__(self, n_components=1, n_mix=1, min_covar=1e-3, startprob_prior=1.0, transmat_prior=1.0,
                 weights_prior=1.0, means_prior=0.0, means_weight=0.0, covars_prior=None, covars_weight=None,
                 algorithm="viterbi", covariance_type="diag", random_state=None, n_iter=10, tol=1e-2,
                 verbose=False, params="stmcw", init_params="stmcw", implementation="log"):
        super().__init__(n_components=n_components, n_mix=n_mix, min_covar=min_covar,
                         startprob_prior=startprob_prior, transmat_prior=transmat_prior,
                         weights_prior=weights_prior, means_prior=means_prior, means_weight=means_weight,
                         covars_prior=covars_prior, covars_weight=covars_weight, algorithm=algorithm,
                         covariance_type=covariance_type, random_state=random_state, n_iter=n_iter, tol=tol,
                         verbose=verbose, params=params, init_params=init_params, implementation=implementation)
        self._hmmlearn_setup()

    _parameter_constraints = _signature_constraints(_hmm.GMMHMM, __init__)

    def _floor(self, covars):
        # hmmlearn's min_covar regularises the initial covariances only; probkit's GMMHMM also adds
        # it to every re-estimated covariance, which is no longer an exact EM step.
        return covars


@HMM_DOCS.fill
class CategoricalHMM(_SymbolInput, _HMMLearnAPI, _hmm.CategoricalHMM):
    """hmmlearn's ``CategoricalHMM`` on :class:`probkit.CategoricalHMM`.

    ``X`` holds one integer symbol per row, shape ``(n_samples, 1)``; ``fit`` refuses
    non-integer arrays (as hmmlearn) and sets ``n_features`` to the alphabet size when it
    was not given.

    Parameters
    ----------
    %(n_components)s
    emissionprob_prior : float or array-like, default=1.0
    n_features : int, optional
        Number of symbols (largest symbol + 1 of the training data when omitted).
    %(hmm_options)s
    params, init_params : str, default="ste"
        ``s`` start, ``t`` transitions, ``e`` emission probabilities.

    Attributes
    ----------
    %(chain_attrs)s
    emissionprob_ : ndarray of shape (n_components, n_features)
        Probability of each symbol in each state.
    %(fit_attrs)s

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.compat.hmmlearn import hmm
    >>> model = hmm.CategoricalHMM(2)
    >>> model.startprob_ = np.array([0.6, 0.4])
    >>> model.transmat_ = np.array([[0.7, 0.3], [0.4, 0.6]])
    >>> model.emissionprob_ = np.array([[0.1, 0.4, 0.5], [0.6, 0.3, 0.1]])
    >>> log_prob, states = model.decode([[0], [1], [2]], algorithm="viterbi")
    >>> round(float(np.exp(log_prob)), 5), states
    (0.01344, array([1, 0, 0]))
    """

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0, *, emissionprob_prior=1.0,
                 n_features=None, algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, verbose=False,
                 params="ste", init_params="ste", implementation="log"):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior, transmat_prior=transmat_prior,
                         emissionprob_prior=emissionprob_prior, n_features=n_features, algorithm=algorithm,
                         random_state=random_state, n_iter=n_iter, tol=tol, verbose=verbose, params=params,
                         init_params=init_params, implementation=implementation)
        self._hmmlearn_setup()

    _parameter_constraints = _signature_constraints(_hmm.CategoricalHMM, __init__)


@HMM_DOCS.fill
class MultinomialHMM(_HMMLearnAPI, _hmm.MultinomialHMM):
    """hmmlearn's ``MultinomialHMM`` on :class:`probkit.MultinomialHMM`.

    Each row of ``X`` counts ``n_trials`` draws over ``n_features`` categories. When
    ``n_trials`` is None, ``fit`` sets it to the row totals (as hmmlearn).

    Parameters
    ----------
    %(n_components)s
    n_trials : int or array-like of int, optional
        Trials of each row: one number, or one per row.
    %(hmm_options)s
    params, init_params : str, default="ste"
        ``s`` start, ``t`` transitions, ``e`` emission probabilities (of the categories
        of one trial).

    %(multinomial_attributes)s

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.compat.hmmlearn import hmm
    >>> model = hmm.MultinomialHMM(n_components=2, n_trials=5)
    >>> model.startprob_ = np.array([0.6, 0.4])
    >>> model.transmat_ = np.array([[0.8, 0.2], [0.2, 0.8]])
    >>> model.emissionprob_ = np.array([[0.5, 0.3, 0.1, 0.1], [0.1, 0.1, 0.4, 0.4]])
    >>> X, Z = model.sample(100, random_state=0)
    >>> bool((X.sum(axis=1) == 5).all())
    True
    """

    def __init__(self, n_components=1, n_trials=None, startprob_prior=1.0, transmat_prior=1.0,
                 algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, verbose=False, params="ste",
                 init_params="ste", implementation="log"):
        super().__init__(n_components=n_components, n_trials=n_trials, startprob_prior=startprob_prior,
                         transmat_prior=transmat_prior, algorithm=algorithm, random_state=random_state,
                         n_iter=n_iter, tol=tol, verbose=verbose, params=params, init_params=init_params,
                         implementation=implementation)
        self._hmmlearn_setup()

    _parameter_constraints = _signature_constraints(_hmm.MultinomialHMM, __init__)

    _checks_input_on_fit = True

    def _check_and_set_n_features(self, X):
        """Check ``X`` holds non-negative integer counts summing to ``n_trials`` (or set ``n_trials``)."""
        X = np.asarray(X)
        super()._check_and_set_n_features(X)
        if not np.issubdtype(X.dtype, np.integer) or X.min() < 0:
            raise ValueError("Symbol counts should be nonnegative integers")
        if self.n_trials is None:
            self.n_trials = X.sum(axis=1)
        elif not (X.sum(axis=1) == self.n_trials).all():
            raise ValueError("Total count for each sample should add up to the number of trials")

    def _sync_n_features(self):
        if hasattr(self, "emissionprob_"):
            self.n_features = np.shape(self.emissionprob_)[1]

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """Draw ``n_samples`` count vectors of one sequence (all rows need one ``n_trials``).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        state_sequence : ndarray of shape (n_samples,)
        """
        trials = self.n_trials
        if trials is None or np.ndim(trials) == 0:
            return super().sample(n_samples, random_state, currstate)
        # n_trials set per row by fit: sampling needs one value (hmmlearn's rule)
        unique = np.unique(trials)
        if len(unique) != 1:
            raise ValueError("For sampling, a single n_trials must be given")
        self.n_trials = int(unique[0])
        try:
            return super().sample(n_samples, random_state, currstate)
        finally:
            self.n_trials = trials


@HMM_DOCS.fill
class PoissonHMM(_HMMLearnAPI, _hmm.PoissonHMM):
    """hmmlearn's ``PoissonHMM`` on :class:`probkit.PoissonHMM`.

    Parameters
    ----------
    %(n_components)s
    lambdas_prior, lambdas_weight : float or array-like, default=0.0
        Gamma prior of the rates (see :class:`probkit.PoissonHMM`).
    %(hmm_options)s
    params, init_params : str, default="stl"
        ``s`` start, ``t`` transitions, ``l`` rates.

    %(poisson_attributes)s

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.compat.hmmlearn import hmm
    >>> from probkit.datasets import load_earthquakes
    >>> _, counts = load_earthquakes()
    >>> model = hmm.PoissonHMM(2, n_iter=500, tol=1e-6, random_state=0).fit(counts[:, None])
    >>> np.round(np.sort(model.lambdas_[:, 0]), 1)
    array([15.4, 26. ])
    """

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0, lambdas_prior=0.0,
                 lambdas_weight=0.0, algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, verbose=False,
                 params="stl", init_params="stl", implementation="log"):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior, transmat_prior=transmat_prior,
                         lambdas_prior=lambdas_prior, lambdas_weight=lambdas_weight, algorithm=algorithm,
                         random_state=random_state, n_iter=n_iter, tol=tol, verbose=verbose, params=params,
                         init_params=init_params, implementation=implementation)
        self._hmmlearn_setup()

    _parameter_constraints = _signature_constraints(_hmm.PoissonHMM, __init__)

    def _sync_n_features(self):
        if hasattr(self, "lambdas_"):
            self.n_features = np.shape(self.lambdas_)[1]
