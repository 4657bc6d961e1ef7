"""GaussianHMM: Gaussian emissions with spherical, diagonal, full or tied covariances."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch

from probkit.base import StrOptions, non_negative_real
from probkit.distributions.mvn import COVARIANCE_TYPES, covariance_shape, full_covariances, n_covariance_parameters
from probkit.em.engine import EStepResult
from probkit.hmm._base import (
    BaseHMM,
    EmptyStateWarning,
    _check_log_likelihoods,
    _filled,
    _fused_chain_priors,
    _replaces_fused_hooks,
    _warn_empty_rows,
)
from probkit.hmm._docs import HMM_DOCS
from probkit.hmm._emissions import GaussianEmission
from probkit.inference._lazy_numba import numba_backend
from probkit.utils._array import to_numpy
from probkit.utils._warnings import warn_user

__all__ = ["GaussianHMM"]


def _warn_empty_states(states):
    warn_user(f"state(s) {[int(k) for k in states]} received no data and kept their previous emission parameters",
              EmptyStateWarning)


def _fused_priors(model, k, d):
    """The priors of :meth:`GaussianHMM._mstep_emission` and of the start and transition
    updates as the arrays of ``GaussianEMIteration``, or ``None`` for prior shapes that
    only the general path broadcasts."""
    chain = _fused_chain_priors(model, k)
    if chain is None:
        return None
    ct = model.covariance_type
    means_prior, means_weight = model._prior_arrays(k, d)
    cp, dof = model._covars_prior_terms(d)
    if ct == "tied" and (np.ndim(dof) or np.ndim(cp) > 2):  # per-state terms of one shared matrix
        return None
    try:
        return {
            **chain,
            "means_prior": _filled(means_prior, (k, d)),
            "means_weight": _filled(means_weight, (k, d)),
            "covars_prior": _filled(cp, (k, d)).reshape(k, 1, d) if ct in ("diag", "spherical") else (
                _filled(cp, (k, d, d)) if ct == "full" else _filled(cp, (1, d, d))),
            "covars_dof": _filled(dof, (k, d)) if ct in ("diag", "spherical") else (
                _filled(dof, (k,)).reshape(k, 1) if ct == "full" else _filled(dof, (1, 1))),
        }
    except ValueError:  # shapes that broadcast only in the general path's own way
        return None


@HMM_DOCS.fill
class GaussianHMM(BaseHMM):
    """Hidden Markov model with Gaussian emissions (hmmlearn's ``GaussianHMM``).

    Parameters
    ----------
    %(n_components)s
    covariance_type : {"spherical", "diag", "full", "tied"}, default="diag"
    min_covar : float, default=1e-3
        Added to the diagonal of the data covariance used to initialise ``covars_``.
    means_prior, means_weight : float or array-like, default=0
        Normal prior on the means: mean ``means_prior``, weight (pseudo-count) ``means_weight``.
    covars_prior, covars_weight : float or array-like, default=1e-2, 1
        Prior on the covariances (inverse gamma for spherical/diag, inverse Wishart for
        full/tied), with hmmlearn's MAP formulas: the default adds ``1e-2`` to every
        variance's numerator, which keeps covariances positive definite. For full/tied
        covariances a scalar means that multiple of the identity (hmmlearn 0.3.3 adds it
        to every matrix entry; pass a ``(d, d)`` array for that).
    %(hmm_options)s
    params, init_params : str, default="stmc"
        Parameters updated by EM / initialised before it: ``s`` start, ``t`` transitions,
        ``m`` means, ``c`` covariances.
    missing : {"error", "marginalize"}, default="error"
        ``"marginalize"`` (diag and spherical only): NaN features drop out of a step's
        likelihood and of the statistics of that feature.

    Attributes
    ----------
    %(chain_attrs)s
    means_ : ndarray of shape (n_components, n_features)
    covars_ : ndarray
        Compact shape by ``covariance_type`` -- spherical ``(K,)``, diag ``(K, d)``,
        full ``(K, d, d)``, tied ``(d, d)`` -- for reading and for setting alike.
        (hmmlearn 0.3.3 accepts compact shapes when setting but returns full matrices
        when reading; probkit returns what was set. :attr:`full_covars_` gives full matrices.)
    %(fit_attrs)s

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import GaussianHMM
    >>> model = GaussianHMM(n_components=2, covariance_type="diag")
    >>> model.startprob_ = np.array([0.6, 0.4])
    >>> model.transmat_ = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> model.means_ = np.array([[0.0], [5.0]])
    >>> model.covars_ = np.array([[1.0], [1.0]])
    >>> X, Z = model.sample(300, random_state=0)
    >>> fitted = GaussianHMM(2, n_iter=50, random_state=0).fit(X)
    >>> np.round(np.sort(fitted.means_[:, 0]), 1)
    array([-0.1,  4.9])
    """

    _parameter_constraints = {
        **BaseHMM._parameter_constraints,
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "min_covar": non_negative_real,
        "means_prior": [Real, "array-like"],
        "means_weight": [Real, "array-like"],
        "covars_prior": [Real, "array-like"],
        "covars_weight": [Real, "array-like"],
    }
    _emission_letters = "mc"
    _numpy_emissions = True

    def __init__(self, n_components=1, covariance_type="diag", min_covar=1e-3, startprob_prior=1.0,
                 transmat_prior=1.0, means_prior=0, means_weight=0, covars_prior=1e-2, covars_weight=1,
                 algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, n_init=1, verbose=False, params="stmc",
                 init_params="stmc", implementation="scaling", missing="error", device=None, dtype=None):
        super().__init__(n_components=n_components, startprob_prior=startprob_prior,
                         transmat_prior=transmat_prior, algorithm=algorithm, random_state=random_state,
                         n_iter=n_iter, tol=tol, n_init=n_init, verbose=verbose, params=params, init_params=init_params,
                         implementation=implementation, missing=missing, device=device, dtype=dtype)
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    # ------------------------------------------------------------------ hooks
    def _marginalizes_missing(self):
        return self.covariance_type in ("diag", "spherical")

    def _validate_emission_X(self, X, reset, allow_nan):
        return self._validate_X(X, reset=reset, ensure_all_finite="allow-nan" if allow_nan else True)

    @property
    def n_features(self):
        """Number of features (from the fitted or hand-set means)."""
        return np.asarray(self.means_).shape[1]

    @property
    def full_covars_(self):
        """Covariances as full matrices, shape (n_components, n_features, n_features)."""
        return full_covariances(self.covars_, self.covariance_type, self.n_components, self.n_features)

    def _check_emission(self):
        k = self.n_components
        if not hasattr(self, "means_") or not hasattr(self, "covars_"):
            raise ValueError("GaussianHMM needs means_ and covars_ (fit, or set them by hand)")
        means = self._checked_state_rows("means_")
        d = means.shape[1]
        covars = np.asarray(self.covars_, dtype=np.float64)
        shape = covariance_shape(self.covariance_type, k, d)
        if covars.shape != shape:
            raise ValueError(
                f"covars_ must have shape {shape} for covariance_type={self.covariance_type!r}, got {covars.shape}"
            )
        if not np.all(np.isfinite(means)) or not np.all(np.isfinite(covars)):
            raise ValueError("means_ and covars_ must be finite")
        if self.covariance_type in ("full", "tied"):
            mats = covars.reshape(-1, d, d)
            if not np.allclose(mats, np.transpose(mats, (0, 2, 1))):
                raise ValueError("covars_ must be symmetric")
            if np.any(np.linalg.eigvalsh(mats) <= 0):
                raise ValueError("covars_ must be positive definite")
        elif np.any(covars <= 0):
            raise ValueError("covars_ must be positive")

    def _emission_model(self, like):
        shift = getattr(self, "_stats_shift", None)
        shift = np.zeros(self.n_features) if shift is None else shift
        return GaussianEmission(self._as_like(self.means_, like), self._as_like(self.covars_, like),
                                self.covariance_type, self._as_like(shift, like))

    def _init_emission(self, data, random_state):
        X = data.X
        complete = X[~np.isnan(X).any(axis=1)] if np.isnan(X).any() else X
        if len(complete) < self.n_components:
            raise ValueError(
                f"need at least n_components={self.n_components} rows without missing values to initialise the means"
            )
        # nanmean is several times slower than mean; it is needed only where values are missing
        self._stats_shift = np.nanmean(X, axis=0) if data.observed is not None else X.mean(axis=0)
        if self._needs_init("m", "means_"):
            from sklearn.cluster import KMeans  # slow to import; needed at fit time only
            km = KMeans(n_clusters=self.n_components, random_state=random_state, n_init=10).fit(complete)
            self.means_ = km.cluster_centers_
        if self._needs_init("c", "covars_"):
            d = X.shape[1]
            cv = np.atleast_2d(np.cov(complete.T)) + self.min_covar * np.eye(d) if len(complete) > 1 \
                else np.eye(d)
            k = self.n_components
            self.covars_ = {
                "spherical": np.full(k, cv.mean()),
                "diag": np.tile(np.diag(cv), (k, 1)),
                "full": np.tile(cv, (k, 1, 1)),
                "tied": cv.copy(),
            }[self.covariance_type]

    def _prior_arrays(self, k, d):
        # scalars become Python floats (cheaper in the small updates of every iteration); arrays
        # take the (k, d) shape
        means_prior = np.asarray(self.means_prior, dtype=np.float64)
        w = np.asarray(self.means_weight, dtype=np.float64)
        means_prior = np.broadcast_to(means_prior, (k, d)) if means_prior.ndim else float(means_prior)
        w = np.broadcast_to(w.reshape(-1, 1) if w.ndim == 1 else w, (k, d)) if w.ndim else float(w)
        return means_prior, w

    def _covars_prior_terms(self, d):
        """``(scale, dof)``: the covariance prior's term of the numerator and of the denominator.

        Per feature (spherical/diag): ``covars_prior`` and ``max(covars_weight - 1, 0)``,
        with per-state values as a column. Full/tied: the inverse-Wishart scale matrix (a
        scalar, or one per state, is that multiple of the identity; hmmlearn 0.3.3 adds a
        scalar to every matrix entry instead, pass a ``(d, d)`` array for that) and
        ``max(covars_weight - d, 0)``.
        """
        cp = np.asarray(self.covars_prior, dtype=np.float64)
        cw = np.asarray(self.covars_weight, dtype=np.float64)
        if self.covariance_type in ("diag", "spherical"):
            return (cp.reshape(-1, 1) if cp.ndim == 1 else cp,
                    np.maximum((cw.reshape(-1, 1) if cw.ndim == 1 else cw) - 1, 0))
        if cp.ndim == 0:
            cp = cp * np.eye(d)
        elif cp.ndim == 1:
            cp = cp[:, None, None] * np.eye(d)
        return cp, np.maximum(cw - d, 0)

    def _mstep_emission(self, stats, post_sum):
        k, d = self.n_components, self.n_features
        count = to_numpy(stats["count"])
        sx = to_numpy(stats["x"])
        sxx = to_numpy(stats["xx"])
        shift = getattr(self, "_stats_shift", None)
        shift = np.zeros(d) if shift is None else shift
        ct = self.covariance_type
        means_prior, means_weight = self._prior_arrays(k, d)
        # A zero scalar prior weight drops out of every formula below exactly.
        weighted = not (isinstance(means_weight, float) and means_weight == 0.0)
        n = count if count.ndim == 2 else np.repeat(count[:, None], d, axis=1)  # per (state, feature)
        den = means_weight + n if weighted else n
        empty = den <= 0
        any_empty = bool(empty.any())
        old_means = np.asarray(self.means_, dtype=np.float64)
        old_covars = np.asarray(self.covars_, dtype=np.float64)
        if "m" in self.params:
            # (w mu0 + sum_t g_t x_t) / (w + sum_t g_t); statistics are about ``shift``
            num = means_weight * means_prior + sx + shift * n if weighted else sx + shift * n
            if any_empty:
                means = np.where(empty, old_means, num / np.where(empty, 1.0, den))
            else:
                means = num / den
        else:
            means = old_means
        if "c" in self.params:
            mc = means - shift                 # means in the shifted coordinates
            cp, dof = self._covars_prior_terms(d)
            if ct in ("diag", "spherical"):
                # sum_t g_t (x_t - mu)^2 per feature
                c_n = sxx - 2 * mc * sx + mc * mc * n
                if weighted:
                    c_n = means_weight * (means - means_prior) ** 2 + c_n
                covars = (cp + c_n) / np.maximum(dof + n, 1e-5)
                if ct == "spherical":
                    covars = covars.mean(1)
                    state_empty = empty.all(1)
                else:
                    state_empty = empty
                if any_empty:
                    covars = np.where(state_empty, old_covars, covars)
            else:
                nk = count
                outer_sx_m = sx[:, :, None] * mc[:, None, :]
                c_n = sxx - outer_sx_m - np.transpose(outer_sx_m, (0, 2, 1)) + nk[:, None, None] * (
                    mc[:, :, None] * mc[:, None, :])
                if weighted:
                    meandiff = means - means_prior
                    w_k = np.broadcast_to(means_weight, (k, d))[:, 0]
                    c_n = w_k[:, None, None] * meandiff[:, :, None] * meandiff[:, None, :] + c_n
                if ct == "tied":
                    covars = (cp + c_n.sum(0)) / (dof + nk.sum())
                else:
                    den = np.broadcast_to(dof, (k,)) + nk
                    if any_empty:
                        state_empty = empty.all(1)
                        covars = np.where(state_empty[:, None, None], old_covars,
                                          (cp + c_n) / np.where(state_empty, 1.0, den)[:, None, None])
                    else:
                        covars = (cp + c_n) / den[:, None, None]
                covars = 0.5 * (covars + np.swapaxes(covars, -1, -2))
        else:
            covars = old_covars
        if any_empty:
            _warn_empty_states(np.nonzero(empty.any(1))[0])
        self.means_ = means
        self.covars_ = covars

    def _em_fused_iteration(self, data):
        """Each EM iteration of a complete float64 problem as one compiled call.

        The E-step of :meth:`_em_expectation` and the M-step of :meth:`_em_maximization`
        (Dirichlet MAP start and transition rows, :meth:`_mstep_emission`) computed by
        ``GaussianEMIteration``, whose parameters the tests compare with the two hooks';
        ``None`` (the hooks run) with missing values, state labels, a torch device or
        dtype, large inputs whose sequences forward-backward spreads over several worker
        threads (the general path threads its steps), a subclass that replaces a hook, or
        prior shapes that only the general path broadcasts.
        """
        if (not data.numpy or data.observed is not None or data.label_mask is not None
                or _replaces_fused_hooks(self, GaussianHMM)):
            return None
        backend = numba_backend()
        k, d = self.n_components, self.n_features
        priors = _fused_priors(self, k, d)
        shift = getattr(self, "_stats_shift", None)
        if backend is None or priors is None:
            return None
        update = [letter in self.params for letter in "stmc"]
        iterate = backend.GaussianEMIteration.create(data.x, data.lengths, np.zeros(d) if shift is None else shift,
                                                     self.covariance_type, self._use_log(), update, priors)
        if iterate is None:
            return None
        n_samples = float(data.X.shape[0])

        def iteration():
            log_likelihood, startprob, transmat, means, covars, kept = iterate(
                self.startprob_, self.transmat_, self.means_, self.covars_)
            if not math.isfinite(log_likelihood):
                _check_log_likelihoods(iterate.loglik)
            if kept:
                _warn_empty_rows("startprob_", int(iterate.n_empty[0]))
                _warn_empty_rows("transmat_", int(iterate.n_empty[1]))
                if iterate.empty.any():
                    _warn_empty_states(np.flatnonzero(iterate.empty))
            self.startprob_, self.transmat_, self.means_, self.covars_ = startprob, transmat, means, covars
            return EStepResult(log_likelihood=log_likelihood, n_samples=n_samples, stats=None)

        return iteration

    def _sample_emissions(self, states, rng):
        d = self.n_features
        means = np.asarray(self.means_, dtype=np.float64)
        chol = np.linalg.cholesky(self.full_covars_)
        eps = rng.standard_normal((len(states), d))
        return means[states] + np.einsum("nij,nj->ni", chol[states], eps)

    def _emission_n_parameters(self):
        k, d = self.n_components, self.n_features
        return {"m": k * d, "c": n_covariance_parameters(self.covariance_type, k, d)}
