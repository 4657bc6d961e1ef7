r"""ARHMM: a hidden Markov model whose states are linear Gaussian autoregressions.

In state :math:`k` the observation is a linear function of the last ``order`` observations
plus Gaussian noise,

.. math::

    y_t \mid z_t = k \;\sim\; \mathcal{N}\Big(\sum_{j=1}^{p} A_{kj}\, y_{t-j} + b_k,\; \Sigma_k\Big),

and the states follow a Markov chain, so the model switches between autoregressive
regimes. Given the lags, each state's emission is a linear regression, so the E-step is
the HMM forward-backward on the per-state regression log-densities and the M-step is a
weighted least-squares fit per state (closed form).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg

from probkit.base import StrOptions, constraints_without, non_negative_real, positive_int
from probkit.distributions.base import LOG_2PI
from probkit.hmm._base import BaseHMM, EmptyStateWarning, HMMData
from probkit.hmm._docs import HMM_DOCS
from probkit.utils._array import to_numpy
from probkit.utils._warnings import warn_user

__all__ = ["ARHMM"]

COVARIANCE_TYPES = ("full", "diag")
# Initial hard assignments are blended with this much uniform weight, so every state's
# first regression sees all of the data (a cluster may be too small to fit on its own).
INIT_BLEND = 0.1


def lagged_design(X, lengths, order):
    """Rows ``[y_{t-1}, ..., y_{t-p}]`` of every step, lags before a sequence's start set to zero.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_samples, n_features)
    lengths : array-like of int
    order : int

    Returns
    -------
    numpy.ndarray of shape (n_samples, order * n_features)

    Examples
    --------
    >>> lagged_design(np.array([[1.0], [2.0], [3.0], [4.0]]), [3, 1], 2)
    array([[0., 0.],
           [1., 0.],
           [2., 1.],
           [0., 0.]])
    """
    n, d = X.shape
    out = np.zeros((n, order * d))
    start = 0
    for length in np.asarray(lengths, dtype=np.int64):
        for j in range(1, order + 1):
            if length > j:
                out[start + j:start + length, (j - 1) * d:j * d] = X[start:start + length - j]
        start += length
    return out


def _is_numpy(a):
    return isinstance(a, np.ndarray)


class _RegressionEmission:
    """K linear-Gaussian regressions on augmented rows ``[y (d), z (q)]`` (``z`` ends with a 1).

    ``weights`` (K, d, q) are the regression coefficients in the coordinates of the
    augmented rows; ``covars`` (K, d, d) full, or (K, d) diagonal.
    """

    def __init__(self, weights, covars, covariance_type, n_features):
        self.weights = weights
        self.covars = covars
        self.covariance_type = covariance_type
        self.d = n_features

    def _split(self, x):
        return x[:, :self.d], x[:, self.d:]

    def log_prob(self, x):
        y, z = self._split(x)
        k = self.weights.shape[0]
        cols = []
        for s in range(k):
            resid = y - z @ self.weights[s].T
            if self.covariance_type == "diag":
                var = self.covars[s]
                cols.append(-0.5 * ((resid * resid / var).sum(1) + (LOG_2PI + (np.log(var) if _is_numpy(var)
                                                                                  else torch.log(var))).sum()))
                continue
            if _is_numpy(resid):
                chol = np.linalg.cholesky(self.covars[s])
                u = linalg.solve_triangular(chol, resid.T, lower=True)
                log_det = 2 * np.log(np.diag(chol)).sum()
            else:
                chol = torch.linalg.cholesky(self.covars[s])
                u = torch.linalg.solve_triangular(chol, resid.T, upper=False)
                log_det = 2 * torch.log(torch.diagonal(chol)).sum()
            cols.append(-0.5 * ((u * u).sum(0) + log_det + self.d * LOG_2PI))
        return np.stack(cols, 1) if _is_numpy(x) else torch.stack(cols, 1)

    @staticmethod
    def summarize(x, post):
        """Weighted regression statistics per state: ``count``, ``zz`` (K, q, q), ``yz`` (K, d, q), ``yy``."""
        n, k = post.shape
        width = x.shape[1]
        weighted = (post[:, :, None] * x[:, None, :]).reshape(n, k * width)
        # one product for every state's second moments of the augmented rows
        moments = (weighted.T @ x).reshape(k, width, width)
        return {"count": post.sum(0), "moments": moments}


@HMM_DOCS.fill
class ARHMM(BaseHMM):
    r"""Autoregressive hidden Markov model: a switching linear Gaussian autoregression.

    In state :math:`k`, :math:`y_t = \sum_{j=1}^{p} A_{kj} y_{t-j} + b_k + \varepsilon_t`
    with :math:`\varepsilon_t \sim \mathcal{N}(0, \Sigma_k)`; the states follow a Markov
    chain. The lags before the start of each sequence are zero (dynamax's
    ``LinearAutoregressiveHMM`` convention), so the first ``order`` steps of a sequence
    are regressed on the observations that exist and zeros.

    The M-step is closed form: per state, weighted least squares of :math:`y_t` on
    :math:`(y_{t-1}, \dots, y_{t-p}, 1)` with the posteriors as weights, and the weighted
    residual covariance (plus ``reg_covar`` on its diagonal).

    Parameters
    ----------
    %(n_components)s
    order : int, default=1
        Number of lags ``p``.
    covariance_type : {"full", "diag"}, default="full"
        Noise covariance of each state.
    reg_covar : float, default=1e-6
        Added to the diagonal of every fitted noise covariance.
    %(hmm_options)s
    params, init_params : str, default="stac"
        ``s`` start, ``t`` transitions, ``a`` autoregression coefficients and intercepts,
        ``c`` noise covariances.

    Attributes
    ----------
    %(chain_attrs)s
    coefs_ : ndarray of shape (n_components, order, n_features, n_features)
        ``coefs_[k, j - 1]`` is :math:`A_{kj}`, the matrix applied to :math:`y_{t-j}`.
    intercepts_ : ndarray of shape (n_components, n_features)
    covars_ : ndarray
        ``(n_components, n_features, n_features)`` (full) or ``(n_components, n_features)`` (diag).
    %(fit_attrs)s

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.hmm import ARHMM
    >>> truth = ARHMM(n_components=2, order=1, covariance_type="diag")
    >>> truth.startprob_ = np.array([0.5, 0.5])
    >>> truth.transmat_ = np.array([[0.98, 0.02], [0.02, 0.98]])
    >>> truth.coefs_ = np.array([[[[0.9]]], [[[-0.7]]]])      # persistent vs oscillating
    >>> truth.intercepts_ = np.zeros((2, 1))
    >>> truth.covars_ = np.ones((2, 1))
    >>> X, states = truth.sample(2000, random_state=0)
    >>> model = ARHMM(n_components=2, covariance_type="diag", n_iter=100, random_state=0).fit(X)
    >>> np.round(np.sort(model.coefs_[:, 0, 0, 0]), 1)
    array([-0.7,  0.9])
    """

    _parameter_constraints = {
        **constraints_without(BaseHMM._parameter_constraints, "missing"),
        "order": positive_int,
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "reg_covar": non_negative_real,
    }
    _emission_letters = "ac"
    _numpy_emissions = True
    missing = "error"  # not a parameter: the lags of a missing row would be missing too

    def __init__(self, n_components=1, order=1, covariance_type="full", reg_covar=1e-6, startprob_prior=1.0,
                 transmat_prior=1.0, algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, n_init=1,
                 verbose=False, params="stac", init_params="stac", implementation="scaling", device=None,
                 dtype=None):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior, transmat_prior=transmat_prior,
                         algorithm=algorithm, random_state=random_state, n_iter=n_iter, tol=tol, n_init=n_init,
                         verbose=verbose, params=params, init_params=init_params, implementation=implementation,
                         device=device, dtype=dtype)
        del self.missing  # not a parameter here (__init__ sets parameters only): the class attribute applies
        self.order = order
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar

    # ------------------------------------------------------------------ data
    def _validate_emission_X(self, X, reset, allow_nan):
        return self._validate_X(X, reset=reset)

    def _validate_sequences(self, X, lengths, *, reset, state_labels=None, training=False):
        data = super()._validate_sequences(X, lengths, reset=reset, state_labels=state_labels, training=training)
        if hasattr(self, "intercepts_") and not (training and "a" in self.init_params):
            width = np.shape(self.intercepts_)[-1]
            if data.X.shape[1] != width:
                raise ValueError(f"X has {data.X.shape[1]} features, but the model's intercepts_ and coefs_ model "
                                 f"{width}")
        # The emission model reads augmented rows [y, lags, 1], centred on the training mean
        # (the regression is unchanged; the statistics keep their digits far from the origin).
        if training or not hasattr(self, "_center"):
            self._center = data.X.mean(0)
        lags = lagged_design(data.X, data.lengths, self.order)
        center = self._center
        aug = np.hstack([data.X - center, lags - np.tile(center, self.order), np.ones((data.X.shape[0], 1))])
        x = aug if data.numpy else torch.as_tensor(aug, dtype=data.x.dtype, device=data.x.device)
        return HMMData(X=data.X, x=x, lengths=data.lengths, observed=None, label_mask=data.label_mask)

    @property
    def n_features(self):
        """Number of features (from the fitted or hand-set intercepts)."""
        return np.asarray(self.intercepts_).shape[1]

    # ------------------------------------------------------------------ parameters
    def _check_emission(self):
        k, p = self.n_components, self.order
        for name in ("coefs_", "intercepts_", "covars_"):
            if not hasattr(self, name):
                raise ValueError(f"ARHMM needs coefs_, intercepts_ and covars_ (fit, or set them by hand); "
                                 f"{name} is missing")
        b = self._checked_state_rows("intercepts_")
        d = b.shape[1]
        a = np.asarray(self.coefs_, dtype=np.float64)
        if a.shape != (k, p, d, d):
            raise ValueError(f"coefs_ must have shape (n_components, order, n_features, n_features) = "
                             f"{(k, p, d, d)}, got {a.shape}")
        c = np.asarray(self.covars_, dtype=np.float64)
        shape = (k, d, d) if self.covariance_type == "full" else (k, d)
        if c.shape != shape:
            raise ValueError(f"covars_ must have shape {shape} for covariance_type={self.covariance_type!r}, "
                             f"got {c.shape}")
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(np.isfinite(c))):
            raise ValueError("coefs_, intercepts_ and covars_ must be finite")
        if self.covariance_type == "full":
            if not np.allclose(c, np.swapaxes(c, 1, 2)):
                raise ValueError("covars_ must be symmetric")
            if np.any(np.linalg.eigvalsh(c) <= 0):
                raise ValueError("covars_ must be positive definite")
        elif np.any(c <= 0):
            raise ValueError("covars_ must be positive")

    def _centered_weights(self):
        """Coefficients on the augmented rows: ``[A_1 .. A_p, b_c]`` with ``b_c = b + (sum_j A_j - I) m``."""
        a = np.asarray(self.coefs_, dtype=np.float64)
        k, p, d, _ = a.shape
        center = getattr(self, "_center", np.zeros(d))
        b_c = np.asarray(self.intercepts_, dtype=np.float64) + (a.sum(1) - np.eye(d)) @ center
        lag_w = np.transpose(a, (0, 2, 1, 3)).reshape(k, d, p * d)
        return np.concatenate([lag_w, b_c[:, :, None]], axis=2)

    def _set_from_centered(self, weights):
        k, d = weights.shape[0], weights.shape[1]
        p = self.order
        a = np.transpose(weights[:, :, :p * d].reshape(k, d, p, d), (0, 2, 1, 3))
        center = getattr(self, "_center", np.zeros(d))
        self.coefs_ = np.ascontiguousarray(a)  # a copy laid out as a loaded one (the same BLAS path)
        self.intercepts_ = weights[:, :, -1] - (a.sum(1) - np.eye(d)) @ center

    def _emission_model(self, like):
        return _RegressionEmission(self._as_like(self._centered_weights(), like),
                                   self._as_like(self.covars_, like), self.covariance_type, self.n_features)

    # ------------------------------------------------------------------ EM
    def _init_emission(self, data, random_state):
        k, d = self.n_components, data.X.shape[1]
        aug = to_numpy(data.x)
        if self._needs_init("a", "coefs_") or self._needs_init("c", "covars_"):
            from sklearn.cluster import KMeans  # slow to import; needed at fit time only

            # clusters of (observation, lags): regimes differ in how y_t relates to its past
            labels = KMeans(n_clusters=k, random_state=random_state, n_init=10).fit_predict(aug[:, :-1])
            resp = (1 - INIT_BLEND) * np.eye(k)[labels] + INIT_BLEND / k
            weights, covars = self._regression(_RegressionEmission.summarize(aug, resp), d)
            if self._needs_init("a", "coefs_"):
                self._set_from_centered(weights)
            if self._needs_init("c", "covars_"):
                self.covars_ = self._checked_fit(covars)

    def _checked_fit(self, covars):
        """Fitted noise covariances, or a clear error if a state's regression left no residual."""
        singular = (np.linalg.eigvalsh(covars).min(1) <= 0) if self.covariance_type == "full" \
            else (covars.min(1) <= 0)
        if np.any(singular):
            raise ValueError(f"the fitted noise covariance of state(s) {np.flatnonzero(singular).tolist()} is not "
                             "positive definite (the regression fits its data exactly: fewer weighted steps than "
                             f"regressors, or collinear data); increase reg_covar (now {self.reg_covar})")
        return covars

    def _regression(self, stats, d, weights=None):
        """Weighted least squares per state (given ``weights``, only the covariances)."""
        count = to_numpy(stats["count"])
        moments = to_numpy(stats["moments"])
        k = moments.shape[0]
        zz, yz, yy = moments[:, d:, d:], moments[:, :d, d:], moments[:, :d, :d]
        if weights is None:
            # lstsq: a state whose regressors are collinear gets the minimum-norm solution
            weights = np.stack([np.linalg.lstsq(zz[s], yz[s].T, rcond=None)[0].T for s in range(k)])
        # residual second moments: yy - W zy - yz W^T + W zz W^T
        wz = weights @ np.swapaxes(yz, 1, 2)
        resid = yy - wz - np.swapaxes(wz, 1, 2) + weights @ zz @ np.swapaxes(weights, 1, 2)
        covars = resid / np.maximum(count, 1e-300)[:, None, None]
        covars = 0.5 * (covars + np.swapaxes(covars, 1, 2)) + self.reg_covar * np.eye(d)
        if self.covariance_type == "diag":
            covars = np.diagonal(covars, axis1=1, axis2=2).copy()
        return weights, covars

    def _mstep_emission(self, stats, post_sum):
        d = self.n_features
        count = to_numpy(stats["count"])
        empty = count <= 1e-12 * max(count.sum(), 1e-300)
        old_weights, old_covars = self._centered_weights(), np.asarray(self.covars_, dtype=np.float64)
        weights, covars = self._regression(stats, d, None if "a" in self.params else old_weights)
        if empty.any():
            warn_user(f"state(s) {np.flatnonzero(empty).tolist()} received no data and kept their previous "
                      "regression parameters", EmptyStateWarning)
            weights = np.where(empty[:, None, None], old_weights, weights)
            covars = np.where(empty.reshape(-1, *([1] * (covars.ndim - 1))), old_covars, covars)
        if "a" in self.params:
            self._set_from_centered(weights)
        if "c" in self.params:
            self.covars_ = self._checked_fit(covars)

    # ------------------------------------------------------------------ sampling
    def _sample_emissions(self, states, rng):
        a = np.ascontiguousarray(self.coefs_, dtype=np.float64)
        b = np.asarray(self.intercepts_, dtype=np.float64)
        k, p, d, _ = a.shape
        covars = np.asarray(self.covars_, dtype=np.float64)
        full = covars if self.covariance_type == "full" else covars[:, :, None] * np.eye(d)
        chol = np.linalg.cholesky(full)
        noise = np.einsum("nij,nj->ni", chol[states], rng.standard_normal((len(states), d)))
        X = np.zeros((len(states), d))
        for t, s in enumerate(states):
            mean = b[s].copy()
            for j in range(1, min(p, t) + 1):
                mean += a[s, j - 1] @ X[t - j]
            X[t] = mean + noise[t]
        return X

    def _emission_n_parameters(self):
        k, d, p = self.n_components, self.n_features, self.order
        cov = k * d * (d + 1) // 2 if self.covariance_type == "full" else k * d
        return {"a": k * (p * d * d + d), "c": cov}
