"""HMMs with discrete emissions: CategoricalHMM, MultinomialHMM and PoissonHMM."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from probkit.base import constraints_without, positive_int
from probkit.em.engine import EStepResult
from probkit.hmm._base import (
    BaseHMM,
    EmptyStateWarning,
    _check_log_likelihoods,
    _filled,
    _fused_chain_priors,
    _normalize_rows,
    _replaces_fused_hooks,
    _warn_empty_rows,
)
from probkit.hmm._docs import HMM_DOCS
from probkit.hmm._emissions import CountEmission
from probkit.inference._lazy_numba import numba_backend
from probkit.utils._array import to_numpy
from probkit.utils._warnings import warn_user
from probkit.utils.validation import check_stochastic

__all__ = ["CategoricalHMM", "MultinomialHMM", "PoissonHMM"]


class _EmissionProbHMM(BaseHMM):
    """Shared part of the HMMs whose emissions are a probability table ``emissionprob_``
    (categorical symbols, multinomial counts): validation, random initialisation and the
    Dirichlet-MAP M-step on the expected counts."""

    _parameter_constraints = {
        **constraints_without(BaseHMM._parameter_constraints, "missing"),
        "emissionprob_prior": ["array-like", Real],
    }
    _emission_letters = "e"
    _numpy_emissions = True

    def _check_emission_probs(self, n_columns, what, ndim=2):
        """Check ``emissionprob_``: shape ``(n_components, [n_features_in_,] n_columns)``, stochastic rows."""
        if not hasattr(self, "emissionprob_"):
            raise ValueError(f"{type(self).__name__} needs emissionprob_ (fit, or set it by hand)")
        e = np.asarray(self.emissionprob_, dtype=np.float64)
        shape = f"({self.n_components}, {what})" if ndim == 2 else f"({self.n_components}, n_columns, {what})"
        if e.ndim != ndim or e.shape[0] != self.n_components:
            raise ValueError(f"emissionprob_ must have shape {shape}, got {e.shape}")
        if n_columns is not None and e.shape[-1] != n_columns:
            raise ValueError(f"emissionprob_ has {e.shape[-1]} {what} but the model expects {n_columns}")
        check_stochastic(e, "emissionprob_")

    def _init_emission_probs(self, n_columns, random_state, n_tables=None):
        if self._needs_init("e", "emissionprob_"):
            shape = (self.n_components, n_columns) if n_tables is None else (self.n_components, n_tables, n_columns)
            e = random_state.rand(*shape)
            self.emissionprob_ = e / e.sum(-1, keepdims=True)

    def _mstep_emission(self, stats, post_sum):
        if "e" not in self.params:
            return
        counts = to_numpy(stats["x"])
        prior = np.asarray(self.emissionprob_prior, dtype=np.float64)
        e = np.maximum(prior - 1 + counts, 0)
        previous = np.asarray(self.emissionprob_)
        self.emissionprob_ = _normalize_rows(e.reshape(-1, e.shape[-1]), previous.reshape(-1, e.shape[-1]),
                                             "emissionprob_").reshape(e.shape)

    def _emission_n_parameters(self):
        e = np.asarray(self.emissionprob_)
        return {"e": int(np.prod(e.shape[:-1])) * (e.shape[-1] - 1)}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # scikit-learn's checks then feed non-negative integers (rounded, shifted data)
        tags.input_tags.positive_only = True
        tags.input_tags.categorical = True
        return tags


@HMM_DOCS.fill
class CategoricalHMM(_EmissionProbHMM):
    """HMM with categorical emissions: each step emits symbols, integers from 0 to ``n_features - 1``.

    ``X`` has shape ``(n_samples, 1)`` of non-negative integers, as in hmmlearn, or
    ``(n_samples, n_columns)``: several symbols per step, independent given the state (a
    product of categoricals over the columns, sharing one alphabet size).

    Parameters
    ----------
    %(n_components)s
    emissionprob_prior : float or array-like, default=1.0
        Dirichlet concentration of each row of ``emissionprob_`` (1.0 = maximum likelihood).
    n_features : int, optional
        Number of possible symbols; inferred from the data (largest symbol + 1) when omitted.
    %(hmm_options)s
    params, init_params : str, default="ste"
        Parameters updated by EM / initialised before it: ``s`` start, ``t`` transitions,
        ``e`` emission probabilities.

    Attributes
    ----------
    %(chain_attrs)s
    emissionprob_ : ndarray of shape (n_components, n_symbols), or (n_components, n_columns, n_symbols)
        One table per state (hmmlearn's shape) for one column of symbols; one per state and
        column for several columns.
    n_symbols_ : int
        Alphabet size used by the model (hmmlearn stores this in ``n_features``; probkit
        leaves constructor parameters untouched, as scikit-learn requires).
    %(fit_attrs)s

    Examples
    --------
    >>> import numpy as np
    >>> model = CategoricalHMM(2)
    >>> model.startprob_ = np.array([0.5, 0.5])
    >>> model.transmat_ = np.array([[0.95, 0.05], [0.05, 0.95]])
    >>> model.emissionprob_ = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    >>> X, Z = model.sample(2000, random_state=0)
    >>> # random initial emissions can stall in a poor optimum: keep the best of several starts
    >>> fitted = CategoricalHMM(2, n_iter=200, tol=1e-6, n_init=5, random_state=0).fit(X)
    >>> np.round(np.sort(fitted.emissionprob_[:, 0]), 1)
    array([0.1, 0.8])
    """

    _parameter_constraints = {
        **_EmissionProbHMM._parameter_constraints,
        "n_features": [None, *positive_int],
    }

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0, *, emissionprob_prior=1.0,
                 n_features=None, algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, n_init=1, verbose=False,
                 params="ste", init_params="ste", implementation="scaling", device=None, dtype=None):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior,
                         transmat_prior=transmat_prior, algorithm=algorithm, random_state=random_state,
                         n_iter=n_iter, tol=tol, n_init=n_init, verbose=verbose, params=params, init_params=init_params,
                         implementation=implementation, device=device, dtype=dtype)
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features

    def _n_symbols(self):
        if hasattr(self, "emissionprob_"):
            return np.asarray(self.emissionprob_).shape[-1]
        return self.n_features

    def _validate_emission_X(self, X, reset, allow_nan):
        X = self._validate_counts_X(X, reset)
        m = self._n_symbols()
        if m is not None and X.max() >= m:
            raise ValueError(f"X holds symbol {int(X.max())} but the model emits symbols 0 .. {m - 1}")
        return X

    def _check_emission(self):
        e = np.asarray(getattr(self, "emissionprob_", np.zeros((0, 0))))
        self._check_emission_probs(self.n_features, "symbols", ndim=3 if e.ndim == 3 else 2)
        columns = 1 if e.ndim == 2 else e.shape[1]
        if hasattr(self, "n_features_in_") and columns != self.n_features_in_:
            raise ValueError(f"emissionprob_ has tables for {columns} column(s) of symbols but X has "
                             f"{self.n_features_in_}")

    def _init_emission(self, data, random_state):
        m = self.n_features if self.n_features is not None else int(data.X.max()) + 1
        columns = data.X.shape[1]
        self._init_emission_probs(m, random_state, n_tables=None if columns == 1 else columns)
        self.n_symbols_ = np.asarray(self.emissionprob_).shape[-1]

    def _emission_model(self, like):
        return CountEmission("categorical", self._as_like(self.emissionprob_, like))

    def _em_fused_iteration(self, data):
        """Each EM iteration of one column of symbols (numpy, float64) as one compiled call.

        The E-step of :meth:`_em_expectation` (emissions gathered from per-symbol tables)
        and the M-step of :meth:`_em_maximization` (Dirichlet MAP start and transition
        rows, :meth:`_mstep_emission`) computed by ``CategoricalEMIteration``, whose
        parameters the tests compare with the two hooks'; ``None`` (the hooks run) with
        several columns of symbols, state labels, a torch device or dtype, a subclass that
        replaces a hook, prior shapes that only the general path broadcasts, or several
        sequences that forward-backward spreads over worker threads.
        """
        emissionprob = np.asarray(self.emissionprob_, dtype=np.float64)
        if (not data.numpy or data.observed is not None or data.label_mask is not None or emissionprob.ndim != 2
                or _replaces_fused_hooks(self, CategoricalHMM)):
            return None
        backend = numba_backend()
        k, n_symbols = emissionprob.shape
        priors = _fused_chain_priors(self, k)
        if backend is None or priors is None:
            return None
        try:
            priors["emission_prior"] = _filled(np.asarray(self.emissionprob_prior, dtype=np.float64), (k, n_symbols))
        except ValueError:  # shapes that broadcast only in the general path's own way
            return None
        update = [letter in self.params for letter in "ste"]
        iterate = backend.CategoricalEMIteration.create(data.X[:, 0], data.lengths, k, self._use_log(), update,
                                                        priors)
        if iterate is None:
            return None
        n_samples = float(data.X.shape[0])

        def iteration():
            log_likelihood, startprob, transmat, emissionprob, kept = iterate(
                self.startprob_, self.transmat_, self.emissionprob_)
            if not math.isfinite(log_likelihood):
                _check_log_likelihoods(iterate.loglik)
            if kept:
                for name, n_empty in zip(("startprob_", "transmat_", "emissionprob_"), iterate.n_empty):
                    _warn_empty_rows(name, int(n_empty))
            self.startprob_, self.transmat_, self.emissionprob_ = startprob, transmat, emissionprob
            return EStepResult(log_likelihood=log_likelihood, n_samples=n_samples, stats=None)

        return iteration

    def _sample_emissions(self, states, rng):
        e = np.asarray(self.emissionprob_)
        tables = e[:, None, :] if e.ndim == 2 else e  # (K, columns, symbols)
        cdf = np.cumsum(tables[states], axis=-1)
        u = rng.rand(len(states), tables.shape[1])
        return (cdf > u[..., None]).argmax(-1)


@HMM_DOCS.fill
class MultinomialHMM(_EmissionProbHMM):
    """HMM with multinomial emissions: each step is a vector of counts over ``n_features`` categories.

    Parameters
    ----------
    %(n_components)s
    n_trials : int or array-like of int, optional
        Total count of each step; inferred from the rows when omitted.
    emissionprob_prior : float or array-like, default=1.0
        Dirichlet concentration of each row of ``emissionprob_``.
    %(hmm_options)s
    params, init_params : str, default="ste"
        Parameters updated by EM / initialised before it: ``s`` start, ``t`` transitions,
        ``e`` emission probabilities.

    %(multinomial_attributes)s

    Examples
    --------
    >>> import numpy as np
    >>> model = MultinomialHMM(2, n_trials=5)
    >>> model.startprob_ = np.array([0.5, 0.5])
    >>> model.transmat_ = np.array([[0.9, 0.1], [0.1, 0.9]])
    >>> model.emissionprob_ = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    >>> X, Z = model.sample(500, random_state=0)
    >>> int(X.sum(1).max())
    5
    """

    _parameter_constraints = {
        **_EmissionProbHMM._parameter_constraints,
        "n_trials": [None, "array-like", Integral],
    }

    def __init__(self, n_components=1, n_trials=None, startprob_prior=1.0, transmat_prior=1.0, *,
                 emissionprob_prior=1.0, algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, n_init=1,
                 verbose=False, params="ste", init_params="ste", implementation="scaling", device=None, dtype=None):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior,
                         transmat_prior=transmat_prior, algorithm=algorithm, random_state=random_state,
                         n_iter=n_iter, tol=tol, n_init=n_init, verbose=verbose, params=params, init_params=init_params,
                         implementation=implementation, device=device, dtype=dtype)
        self.n_trials = n_trials
        self.emissionprob_prior = emissionprob_prior

    def _validate_emission_X(self, X, reset, allow_nan):
        X = self._validate_counts_X(X, reset)
        if self.n_trials is not None:
            totals = X.sum(1)
            if not np.all(totals == np.asarray(self.n_trials)):
                raise ValueError("each row of X must sum to n_trials")
        return X

    def _check_emission(self):
        self._check_emission_probs(getattr(self, "n_features_in_", None), "categories")

    def _init_emission(self, data, random_state):
        self._init_emission_probs(data.X.shape[1], random_state)

    def _emission_model(self, like):
        return CountEmission("multinomial", self._as_like(self.emissionprob_, like))

    def _sample_emissions(self, states, rng):
        if self.n_trials is None:
            raise ValueError("sampling a MultinomialHMM needs n_trials")
        trials = np.broadcast_to(np.asarray(self.n_trials), (len(states),))
        e = np.asarray(self.emissionprob_)
        return np.stack([rng.multinomial(int(n), e[s]) for n, s in zip(trials, states)])


@HMM_DOCS.fill
class PoissonHMM(BaseHMM):
    """HMM with Poisson emissions: each feature is an independent count with a rate per state.

    Parameters
    ----------
    %(n_components)s
    lambdas_prior, lambdas_weight : float or array-like, default=0.0
        Gamma prior (shape ``lambdas_prior``, rate ``lambdas_weight``) on the rates; the
        M-step returns the posterior mean ``(prior + sum_t g_t x_t) / (weight + sum_t g_t)``
        of each state (0, 0 = maximum likelihood). hmmlearn 0.3.3 uses the total count of
        all states in this formula; probkit uses each state's own.
    %(hmm_options)s
    params, init_params : str, default="stl"
        Parameters updated by EM / initialised before it: ``s`` start, ``t`` transitions,
        ``l`` rates.
    missing : {"error", "marginalize"}, default="error"
        ``"marginalize"`` lets NaN counts drop out of the likelihood and statistics.

    %(poisson_attributes)s

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.datasets import load_earthquakes
    >>> _, counts = load_earthquakes()
    >>> model = PoissonHMM(2, n_iter=500, tol=1e-6, random_state=0).fit(counts.reshape(-1, 1))
    >>> np.round(np.sort(model.lambdas_[:, 0]), 1)
    array([15.4, 26. ])
    """

    _parameter_constraints = {
        **BaseHMM._parameter_constraints,
        "lambdas_prior": ["array-like", Real],
        "lambdas_weight": ["array-like", Real],
    }
    _emission_letters = "l"
    _supports_missing = True
    _numpy_emissions = True

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0, lambdas_prior=0.0,
                 lambdas_weight=0.0, algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, n_init=1, verbose=False,
                 params="stl", init_params="stl", implementation="scaling", missing="error", device=None, dtype=None):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior,
                         transmat_prior=transmat_prior, algorithm=algorithm, random_state=random_state,
                         n_iter=n_iter, tol=tol, n_init=n_init, verbose=verbose, params=params, init_params=init_params,
                         implementation=implementation, missing=missing, device=device, dtype=dtype)
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight

    def _validate_emission_X(self, X, reset, allow_nan):
        return self._validate_counts_X(X, reset, allow_nan=allow_nan)

    def _check_emission(self):
        if not hasattr(self, "lambdas_"):
            raise ValueError("PoissonHMM needs lambdas_ (fit, or set it by hand)")
        lam = self._checked_state_rows("lambdas_")
        if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
            raise ValueError("lambdas_ must be positive and finite")

    def _init_emission(self, data, random_state):
        if self._needs_init("l", "lambdas_"):
            mean, var = np.nanmean(data.X), np.nanvar(data.X)
            if not var > 0:
                var = max(mean, 1.0)
            mean = max(mean, 1e-3)
            self.lambdas_ = random_state.gamma(shape=mean ** 2 / var, scale=var / mean,
                                               size=(self.n_components, data.X.shape[1]))
            self.lambdas_ = np.maximum(self.lambdas_, 1e-6)

    def _emission_model(self, like):
        return CountEmission("poisson", self._as_like(self.lambdas_, like))

    def _mstep_emission(self, stats, post_sum):
        if "l" not in self.params:
            return
        count = to_numpy(stats["count"])
        sx = to_numpy(stats["x"])
        a = np.asarray(self.lambdas_prior, dtype=np.float64)
        b = np.asarray(self.lambdas_weight, dtype=np.float64)
        den = b + count
        empty = den <= 0
        lam = np.where(empty, self.lambdas_, (a + sx) / np.where(empty, 1.0, den))
        if empty.any():
            warn_user(f"state(s) {sorted(set(np.nonzero(empty)[0].tolist()))} received no data and kept their "
                      "previous rates", EmptyStateWarning)
        if np.any(lam <= 0):
            # An all-zero feature gives rate 0; keep it strictly positive so log-rates stay finite.
            lam = np.maximum(lam, np.finfo(np.float64).tiny)
        self.lambdas_ = lam

    def _sample_emissions(self, states, rng):
        return rng.poisson(np.asarray(self.lambdas_)[states])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # scikit-learn's checks then feed non-negative integers (rounded, shifted data)
        tags.input_tags.positive_only = True
        tags.input_tags.categorical = True
        return tags

    def _emission_n_parameters(self):
        lam = np.asarray(self.lambdas_)
        return {"l": lam.size}
