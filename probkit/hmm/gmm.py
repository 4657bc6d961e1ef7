"""GMMHMM: each state emits from its own Gaussian mixture."""

from __future__ import annotations

from numbers import Real

import numpy as np
import torch

from probkit.distributions.mvn import COVARIANCE_TYPES, MultivariateNormal
from probkit.base import StrOptions, constraints_without, non_negative_real, positive_int
from probkit.hmm._base import BaseHMM, EmptyStateWarning
from probkit.hmm._docs import HMM_DOCS
from probkit.hmm._emissions import GMMEmission
from probkit.distributions.mvn import full_covariances
from probkit.utils._array import to_numpy
from probkit.utils._warnings import warn_user

__all__ = ["GMMHMM"]


@HMM_DOCS.fill
class GMMHMM(BaseHMM):
    """HMM whose states emit from Gaussian mixtures of ``n_mix`` components (hmmlearn's ``GMMHMM``).

    Parameters
    ----------
    %(n_components)s
    n_mix : int, default=1
        Mixture components per state.
    min_covar : float, default=1e-3
        Added to the diagonal of the data covariance used to initialise ``covars_`` and
        to every re-estimated covariance (keeps a component fitted to few points
        positive definite; hmmlearn uses it at initialisation only).
    weights_prior : float or array-like, default=1.0
        Dirichlet concentration of each state's mixture weights.
    means_prior, means_weight : float or array-like, default=0.0
        Normal prior on the component means (mean, pseudo-count).
    covars_prior, covars_weight : float or array-like, optional
        Prior on the covariances (inverse Wishart for full/tied, inverse gamma for
        diag/spherical), hmmlearn's parametrisation; the defaults give maximum likelihood.
    covariance_type : {"diag", "spherical", "full", "tied"}, default="diag"
        ``tied``: one full covariance per state, shared by its mixture components.
    %(hmm_options)s
    params, init_params : str, default="stmcw"
        Parameters updated by EM / initialised before it: ``s`` start, ``t`` transitions,
        ``w`` mixture weights, ``m`` means, ``c`` covariances.

    Notes
    -----
    The M-step is the exact EM update: covariances are centred on the *new* means.
    hmmlearn 0.3.3 centres them on the previous means (a generalised EM step), so the
    two libraries agree on scores, posteriors and decoding for the same parameters but
    not on the parameters after a fit step; its spherical default prior also departs from
    maximum likelihood when ``n_mix != n_features``.

    %(gmm_attributes)s

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = np.r_[rng.normal(0, 1, (200, 1)), rng.normal(8, 1, (200, 1))]
    >>> model = GMMHMM(n_components=2, n_mix=2, n_iter=20, random_state=0).fit(X)
    >>> model.weights_.shape, model.means_.shape
    ((2, 2), (2, 2, 1))
    """

    _parameter_constraints = {
        **constraints_without(BaseHMM._parameter_constraints, "missing"),
        "n_mix": positive_int,
        "min_covar": non_negative_real,
        "weights_prior": ["array-like", Real],
        "means_prior": ["array-like", Real],
        "means_weight": ["array-like", Real],
        "covars_prior": [None, "array-like", Real],
        "covars_weight": [None, "array-like", Real],
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
    }
    _emission_letters = "wmc"

    def __init__(self, n_components=1, n_mix=1, min_covar=1e-3, startprob_prior=1.0, transmat_prior=1.0,
                 weights_prior=1.0, means_prior=0.0, means_weight=0.0, covars_prior=None, covars_weight=None,
                 algorithm="viterbi", covariance_type="diag", random_state=None, n_iter=10, tol=1e-2, n_init=1,
                 verbose=False, params="stmcw", init_params="stmcw", implementation="scaling", device=None,
                 dtype=None):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior,
                         transmat_prior=transmat_prior, algorithm=algorithm, random_state=random_state,
                         n_iter=n_iter, tol=tol, n_init=n_init, verbose=verbose, params=params, init_params=init_params,
                         implementation=implementation, device=device, dtype=dtype)
        self.n_mix = n_mix
        self.min_covar = min_covar
        self.weights_prior = weights_prior
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight
        self.covariance_type = covariance_type

    def _validate_emission_X(self, X, reset, allow_nan):
        return self._validate_X(X, reset=reset)

    @property
    def n_features(self):
        return np.asarray(self.means_).shape[2]

    def _cov_shape(self, k, m, d):
        return {"full": (k, m, d, d), "diag": (k, m, d), "spherical": (k, m), "tied": (k, d, d)}[self.covariance_type]

    def _check_emission(self):
        k, m = self.n_components, self.n_mix
        for name in ("weights_", "means_", "covars_"):
            if not hasattr(self, name):
                raise ValueError(f"GMMHMM needs {name} (fit, or set it by hand)")
        w = np.asarray(self.weights_, dtype=np.float64)
        if w.shape != (k, m):
            raise ValueError(f"weights_ must have shape ({k}, {m}), got {w.shape}")
        if np.any(w < 0) or not np.allclose(w.sum(1), 1.0):
            raise ValueError("each row of weights_ must be non-negative and sum to 1")
        means = np.asarray(self.means_, dtype=np.float64)
        if means.ndim != 3 or means.shape[:2] != (k, m):
            raise ValueError(f"means_ must have shape ({k}, {m}, n_features), got {means.shape}")
        d = means.shape[2]
        covars = np.asarray(self.covars_, dtype=np.float64)
        shape = self._cov_shape(k, m, d)
        if covars.shape != shape:
            raise ValueError(f"covars_ must have shape {shape} for covariance_type={self.covariance_type!r}, "
                             f"got {covars.shape}")
        if not np.all(np.isfinite(means)) or not np.all(np.isfinite(covars)):
            raise ValueError("means_ and covars_ must be finite")
        if self.covariance_type in ("full", "tied"):
            if np.any(np.linalg.eigvalsh(covars.reshape(-1, d, d)) <= 0):
                raise ValueError("covars_ must be positive definite")
        elif np.any(covars <= 0):
            raise ValueError("covars_ must be positive")

    def _emission_model(self, like):
        shift = getattr(self, "_stats_shift", None)
        shift = torch.as_tensor(shift, dtype=torch.float64) if shift is not None else None
        return GMMEmission(self._as_like(self.weights_, like), self._as_like(self.means_, like),
                           self._as_like(self.covars_, like), self.covariance_type, shift)

    def _init_emission(self, data, random_state):
        X = data.X
        k, m, d = self.n_components, self.n_mix, X.shape[1]
        self._stats_shift = X.mean(0)
        cv = np.atleast_2d(np.cov(X.T)) + self.min_covar * np.eye(d)
        if self._needs_init("w", "weights_"):
            self.weights_ = np.full((k, m), 1.0 / m)
        if self._needs_init("m", "means_"):
            from sklearn.cluster import KMeans  # slow to import; needed at fit time only
            labels = KMeans(n_clusters=k, random_state=random_state, n_init=10).fit_predict(X)
            means = []
            for label in range(k):
                cluster = X[labels == label]
                if len(cluster) >= m:
                    means.append(KMeans(n_clusters=m, random_state=random_state, n_init=10).fit(cluster).cluster_centers_)
                else:
                    means.append(random_state.multivariate_normal(X.mean(0), cv, size=m))
            self.means_ = np.stack(means)
        if self._needs_init("c", "covars_"):
            self.covars_ = {
                "full": np.tile(cv, (k, m, 1, 1)),
                "tied": np.tile(cv, (k, 1, 1)),
                "diag": np.tile(np.diag(cv), (k, m, 1)),
                "spherical": np.full((k, m), cv.mean()),
            }[self.covariance_type]

    def _mstep_emission(self, stats, post_sum):
        k, m, d = self.n_components, self.n_mix, self.n_features
        mix = to_numpy(stats["mix"])
        gs = stats["gauss"]
        nkm = to_numpy(gs["count"]).reshape(k, m)
        sx = to_numpy(gs["x"]).reshape(k, m, d)
        shift = gs.meta.get("shift")
        shift = np.zeros(d) if shift is None else to_numpy(shift)
        empty = nkm <= 1e-12 * max(nkm.sum(), 1.0)
        if "w" in self.params:
            alpha = np.broadcast_to(np.asarray(self.weights_prior, dtype=np.float64), (k, m))
            w = np.maximum(mix + alpha - 1, 0)
            sums = w.sum(1, keepdims=True)
            self.weights_ = np.where(sums > 0, w / np.where(sums > 0, sums, 1), self.weights_)
        lam = np.broadcast_to(np.asarray(self.means_weight, dtype=np.float64), (k, m))
        mu0 = np.broadcast_to(np.asarray(self.means_prior, dtype=np.float64), (k, m, d))
        old_means = np.asarray(self.means_, dtype=np.float64)
        if "m" in self.params:
            den = nkm + lam
            means = (lam[..., None] * mu0 + sx + shift * nkm[..., None]) / np.where(den > 0, den, 1)[..., None]
            self.means_ = np.where((den > 0)[..., None], means, old_means)
        if "c" in self.params:
            self.covars_ = self._floor(self._covariance_update(gs, nkm, sx, shift, lam, mu0, empty))
        if empty.any():
            warn_user("some mixture components received no data and kept their previous parameters",
                      EmptyStateWarning)

    def _floor(self, covars):
        """Add ``min_covar`` to every variance, so a component fitted to one point stays valid."""
        d = self.n_features
        if self.covariance_type in ("full", "tied"):
            return covars + self.min_covar * np.eye(d)
        return covars + self.min_covar

    def _covariance_update(self, gs, nkm, sx, shift, lam, mu0, empty):
        k, m, d = self.n_components, self.n_mix, self.n_features
        ct = self.covariance_type
        means = np.asarray(self.means_, dtype=np.float64)
        mc = means - shift
        diff = means - mu0
        old = np.asarray(self.covars_, dtype=np.float64)
        if ct in ("full", "tied"):
            sxx = to_numpy(gs["xx"]).reshape(k, m, d, d)
            outer = sx[..., :, None] * mc[..., None, :]
            scatter = sxx - outer - np.swapaxes(outer, -1, -2) + nkm[..., None, None] * mc[..., :, None] * mc[..., None, :]
            prior_outer = lam[..., None, None] * diff[..., :, None] * diff[..., None, :]
            if ct == "full":
                psi = np.broadcast_to(np.asarray(0.0 if self.covars_prior is None else self.covars_prior), (k, m, d, d))
                nu = np.broadcast_to(np.asarray(-(d + 2.0) if self.covars_weight is None else self.covars_weight),
                                     (k, m))
                den = nkm + nu + d + 2
                cov = (np.swapaxes(psi, -1, -2) + prior_outer + scatter) / np.where(den > 0, den, 1)[..., None, None]
                cov = np.where(empty[..., None, None] | (den <= 0)[..., None, None], old, cov)
            else:
                psi = np.broadcast_to(np.asarray(0.0 if self.covars_prior is None else self.covars_prior), (k, d, d))
                nu = np.broadcast_to(np.asarray(-(m + d + 1.0) if self.covars_weight is None else self.covars_weight),
                                     (k,))
                nk = nkm.sum(1)
                den = nk + nu + m + d + 1
                cov = (np.swapaxes(psi, -1, -2) + prior_outer.sum(1) + scatter.sum(1)) / np.where(den > 0, den, 1)[:, None, None]
                cov = np.where((nk <= 0)[:, None, None] | (den <= 0)[:, None, None], old, cov)
            return 0.5 * (cov + np.swapaxes(cov, -1, -2))
        if ct == "diag":
            sxx = to_numpy(gs["xx"]).reshape(k, m, d)
            scatter = sxx - 2 * mc * sx + mc * mc * nkm[..., None]
            alpha = np.broadcast_to(np.asarray(-1.5 if self.covars_prior is None else self.covars_prior), (k, m, d))
            beta = np.broadcast_to(np.asarray(0.0 if self.covars_weight is None else self.covars_weight), (k, m, d))
            den = nkm[..., None] + 1 + 2 * (alpha + 1)
            cov = (lam[..., None] * diff ** 2 + 2 * beta + scatter) / np.where(den > 0, den, 1)
            return np.where(empty[..., None] | (den <= 0), old, cov)
        sxx = to_numpy(gs["xx"]).reshape(k, m)
        scatter = sxx - 2 * (mc * sx).sum(-1) + (mc * mc).sum(-1) * nkm
        alpha = np.broadcast_to(np.asarray(-1.0 if self.covars_prior is None else self.covars_prior), (k, m))
        beta = np.broadcast_to(np.asarray(0.0 if self.covars_weight is None else self.covars_weight), (k, m))
        den = d * nkm + 2 * (alpha + 1)
        cov = (lam * (diff ** 2).sum(-1) + 2 * beta + scatter) / np.where(den > 0, den, 1)
        return np.where(empty | (den <= 0), old, cov)

    def _sample_emissions(self, states, rng):
        k, m, d = self.n_components, self.n_mix, self.n_features
        w = np.asarray(self.weights_)
        cdf = np.cumsum(w, axis=1)
        comp = (cdf[states] > rng.rand(len(states))[:, None]).argmax(1)
        means = np.asarray(self.means_)[states, comp]
        covars = np.asarray(self.covars_)
        ct = self.covariance_type
        if ct == "tied":
            full = covars[states]
        else:
            per = {"full": covars, "diag": None, "spherical": None}[ct]
            if per is None:
                flat = covars.reshape(k * m, *covars.shape[2:])
                per = full_covariances(flat, ct, k * m, d).reshape(k, m, d, d)
            full = per[states, comp]
        chol = np.linalg.cholesky(full)
        return means + np.einsum("nij,nj->ni", chol, rng.standard_normal((len(states), d)))

    def _emission_n_parameters(self):
        k, m, d = self.n_components, self.n_mix, self.n_features
        return {"w": k * (m - 1), "m": k * m * d,
                "c": {"spherical": k * m, "diag": k * m * d, "full": k * m * d * (d + 1) // 2,
                      "tied": k * d * (d + 1) // 2}[self.covariance_type]}
