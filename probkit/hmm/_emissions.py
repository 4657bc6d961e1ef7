"""Emission models of the HMMs: per-step log-densities under every state, and expected statistics.

Every HMM's E-step asks its emission model two things: ``log_prob(x, observed)`` -- the
``(n_samples, K)`` log-density of each step under each state -- and
``summarize(x, post, observed)`` -- the statistics of the M-step, weighted by the state
posteriors ``post``. ``observed`` (True where a value is present) marginalises missing
values where the family allows it.

:class:`GaussianEmission` and :class:`CountEmission` work on numpy arrays or torch tensors
alike (the arrays' own operations): on the CPU in float64 the HMMs run them in numpy,
whose small-array overhead is a fraction of torch's, which keeps a 200-step fit cheaper
than hmmlearn's; with ``device``/``dtype`` set they run in torch. :class:`ComponentEmission`
(any probkit family) and :class:`GMMEmission` (Gaussian mixtures) are torch only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import gammaln

from probkit.distributions.base import LOG_2PI
from probkit.distributions.mvn import MultivariateNormal
from probkit.distributions.registry import matrix_rows
from probkit.components import BatchedComponents, FeatureProductComponents
from probkit.inference._lazy_numba import numba_backend

__all__ = ["ComponentEmission", "CountEmission", "GMMEmission", "GaussianEmission", "with_nan"]


def _is_numpy(a):
    return isinstance(a, np.ndarray)


def _log(a):
    return np.log(a) if _is_numpy(a) else torch.log(a)


def _as_float(mask, like):
    return mask.astype(like.dtype) if _is_numpy(like) else mask.to(like.dtype)


def _compiled(x, observed):
    """The numba backend when ``x`` is a complete float64 numpy array it can take, else ``None``."""
    if observed is None and _is_numpy(x) and x.dtype == np.float64:
        return numba_backend()
    return None


def _lgamma(a):
    return gammaln(a) if _is_numpy(a) else torch.lgamma(a)


class GaussianEmission:
    """Gaussian emissions of K states (missing values allowed for diagonal and spherical covariances).

    Parameters
    ----------
    means : array (K, d)
    covars : array
        Compact shape by ``covariance_type``: spherical ``(K,)``, diag ``(K, d)``, full
        ``(K, d, d)``, tied ``(d, d)``.
    covariance_type : {"spherical", "diag", "full", "tied"}
    shift : array (d,)
        Reference point the statistics are accumulated about (the data mean), so that
        data far from the origin keep their digits.

    Examples
    --------
    >>> import numpy as np
    >>> em = GaussianEmission(np.zeros((1, 1)), np.ones((1, 1)), "diag", np.zeros(1))
    >>> round(float(em.log_prob(np.zeros((1, 1)))[0, 0]), 6)   # log N(0; 0, 1)
    -0.918939
    """

    def __init__(self, means, covars, covariance_type, shift):
        self.covariance_type = covariance_type
        self.means = means
        self.covars = covars
        self.shift = shift
        if covariance_type in ("full", "tied") and not _is_numpy(means):
            self.mvn = MultivariateNormal(mean=means, covariance=covars, covariance_type=covariance_type)

    def _per_feature_var(self):
        if self.covariance_type == "diag":
            return self.covars
        return self.covars[:, None] + 0 * self.means

    def _full_log_prob_numpy(self, x):
        k, d = self.means.shape
        covs = np.broadcast_to(self.covars, (k, d, d)) if self.covariance_type == "tied" else self.covars
        chol = np.linalg.cholesky(covs)
        inv_chol = np.linalg.inv(chol)  # (K, d, d): y = L^-1 (x - mu)
        y = np.einsum("ked,nd->nke", inv_chol, x) - np.einsum("ked,kd->ke", inv_chol, self.means)[None]
        log_det = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
        return -0.5 * ((y * y).sum(2) + log_det + d * LOG_2PI)

    def log_prob(self, x, observed=None):
        """``(n_samples, K)`` log-densities; NaN-free ``x`` with ``observed`` marking real values."""
        backend = _compiled(x, observed)
        if backend is not None:
            return backend.gaussian_log_density(x, self.means, self.covars, self.covariance_type)
        if self.covariance_type in ("full", "tied"):
            return self._full_log_prob_numpy(x) if _is_numpy(x) else self.mvn._log_prob_pairs(x)
        # Per-feature normal log-densities summed over observed features, as matrix products:
        # sum_d m_nd [-(x_nd - mu_kd)^2 / (2 v_kd) - log(2 pi v_kd) / 2], about a centre
        # near the data so the expansion of the square does not cancel.
        var = self._per_feature_var()
        prec = 1.0 / var
        centre = self.means.sum(0) / self.means.shape[0]
        xc = x - centre
        mc = self.means - centre
        half_log_norm = -0.5 * (LOG_2PI + _log(var))
        const = half_log_norm - 0.5 * mc * mc * prec
        if observed is None:
            return (xc * xc) @ (-0.5 * prec).T + xc @ (mc * prec).T + const.sum(1)
        mask = _as_float(observed, x)
        xm = xc * mask
        return (xm * xc) @ (-0.5 * prec).T + xm @ (mc * prec).T + mask @ const.T

    def forward_backward_and_summarize(self, x, log_start, log_trans, lengths, use_log):
        """Forward-backward and :meth:`summarize` of a small complete float64 numpy input in one
        compiled call: ``(forward-backward results, statistics)``, or ``None`` where that does
        not apply (then run them separately)."""
        backend = _compiled(x, None)
        if backend is None:
            return None
        out = backend.gaussian_estep(x, self.means, self.covars, self.covariance_type, self.shift,
                                     log_start, log_trans, lengths, use_log)
        if out is None:
            return None
        fb, (count, sx, sxx) = out
        if self.covariance_type not in ("full", "tied"):
            count = np.repeat(count[:, None], x.shape[1], axis=1)
        return fb, {"count": count, "x": sx, "xx": sxx}

    def summarize(self, x, post, observed=None):
        """Weighted sums about ``shift``: ``count``, ``x`` and ``xx`` (per feature, or matrices)."""
        full = self.covariance_type in ("full", "tied")
        backend = _compiled(x, observed)
        if backend is not None:
            count, sx, sxx = backend.gaussian_stats(x, self.shift, post, full)
            if not full:
                count = np.repeat(count[:, None], x.shape[1], axis=1)
            return {"count": count, "x": sx, "xx": sxx}
        xs = x - self.shift
        if self.covariance_type in ("full", "tied"):
            k, d = post.shape[1], x.shape[1]
            weighted = (post[:, :, None] * xs[:, None, :]).reshape(x.shape[0], k * d)
            return {"count": post.sum(0), "x": post.T @ xs, "xx": (weighted.T @ xs).reshape(k, d, d)}
        if observed is None:
            count = post.sum(0)[:, None] + 0 * self.means
            return {"count": count, "x": post.T @ xs, "xx": post.T @ (xs * xs)}
        mask = _as_float(observed, x)
        xm = xs * mask
        return {"count": post.T @ mask, "x": post.T @ xm, "xx": post.T @ (xm * xs)}


class CountEmission:
    """Count and symbol emissions of K states: Poisson rates, categorical or multinomial tables.

    Parameters
    ----------
    kind : {"poisson", "categorical", "multinomial"}
    table : array
        Poisson rates ``(K, d)`` (one per feature, independent given the state);
        categorical probabilities ``(K, M)`` for one column of symbols or ``(K, C, M)``
        for C columns; multinomial probabilities ``(K, d)``.

    Examples
    --------
    >>> import numpy as np
    >>> em = CountEmission("poisson", np.array([[2.0]]))
    >>> round(float(em.log_prob(np.array([[3.0]]))[0, 0]), 6)   # log Poisson(3; 2)
    -1.712318
    """

    def __init__(self, kind, table):
        self.kind = kind
        self.table = table
        # a zero probability (a symbol a state never emits) is a log of -inf, not a warning
        with np.errstate(divide="ignore"):
            self.log_table = _log(table)

    def log_prob(self, x, observed=None):
        if self.kind == "poisson":
            # x log(lambda) - lambda - log(x!), summed over the observed features
            mask = None if observed is None else _as_float(observed, x)
            rate = self.table
            terms = x @ self.log_table.T
            if mask is None:
                return terms - rate.sum(1) - _lgamma(x + 1).sum(1)[:, None]
            return terms - mask @ rate.T - (_lgamma(x + 1) * mask).sum(1)[:, None]
        if self.kind == "categorical":
            symbols = x.astype(np.int64) if _is_numpy(x) else x.long()
            if self.log_table.ndim == 2:
                if _is_numpy(x):
                    # rows of the (M, K) table: a contiguous (n_samples, K) result
                    return np.ascontiguousarray(self.log_table.T).take(symbols[:, 0], axis=0)
                return self.log_table[:, symbols[:, 0]].T
            columns = symbols.shape[1]
            out = 0
            for c in range(columns):
                out = out + self.log_table[:, c, symbols[:, c]].T
            return out
        # multinomial: log n! - sum log x_j! + sum x_j log p_j
        totals = x.sum(1)
        return x @ self.log_table.T + (_lgamma(totals + 1) - _lgamma(x + 1).sum(1))[:, None]

    def summarize(self, x, post, observed=None):
        if self.kind == "poisson":
            if observed is None:
                return {"count": post.sum(0)[:, None] + 0 * self.table, "x": post.T @ x}
            mask = _as_float(observed, x)
            return {"count": post.T @ mask, "x": post.T @ (x * mask)}
        if self.kind == "categorical":
            symbols = x.astype(np.int64) if _is_numpy(x) else x.long()
            k, m = post.shape[1], self.table.shape[-1]
            backend = _compiled(x, observed)
            if backend is not None and self.table.ndim == 2:
                count, counts = backend.categorical_counts(symbols[:, 0], post, m)
                return {"count": count, "x": counts}
            tables = []
            for c in range(symbols.shape[1]):
                if _is_numpy(post):
                    counts = np.zeros((m, k))
                    np.add.at(counts, symbols[:, c], post)
                else:
                    counts = post.new_zeros(m, k).index_add_(0, symbols[:, c], post)
                tables.append(counts.T)
            counts = tables[0] if self.table.ndim == 2 else (np.stack(tables, 1) if _is_numpy(post)
                                                              else torch.stack(tables, 1))
            return {"count": post.sum(0), "x": counts}
        return {"count": post.sum(0), "x": post.T @ x}


def with_nan(x, observed):
    """Missing entries back as NaN: ``Independent`` products treat NaN as a feature to marginalise out."""
    return torch.where(observed, x, torch.full_like(x, math.nan))


class ComponentEmission:
    """Emissions of any probkit family held as a component model (torch).

    Parameters
    ----------
    components : BatchedComponents or FeatureProductComponents
        K components of one family; a scalar family over one column takes that column,
        a product family every column, a matrix family the rows as flattened matrices.
    """

    def __init__(self, components):
        self.components = components
        self.product = isinstance(components, FeatureProductComponents)
        self.squeeze = isinstance(components, BatchedComponents) and not self.product \
            and components.dist.event_ndim == 0
        self.matrices = isinstance(components, BatchedComponents) and components.dist.event_ndim == 2

    def _rows(self, x, observed):
        if observed is not None:
            x = with_nan(x, observed)
        if self.matrices:
            return matrix_rows(x)
        return x[:, 0] if self.squeeze else x

    def log_prob(self, x, observed=None):
        if self.product:
            return self.components.log_prob(x, observed)
        return self.components.log_prob(self._rows(x, observed))

    def summarize(self, x, post, observed=None):
        if self.product:
            return self.components.summarize(x, post, observed)
        return self.components.summarize(self._rows(x, observed), post)


class GMMEmission:
    """K states x M mixture components of Gaussians, evaluated as one batch of K*M (torch)."""

    def __init__(self, weights, means, covars, covariance_type, shift):
        self.k, self.m, self.d = means.shape
        self.log_weights = torch.log(weights)
        flat_means = means.reshape(self.k * self.m, self.d)
        if covariance_type == "tied":
            # One covariance per state, shared by its mixture components.
            cov = covars.unsqueeze(1).expand(self.k, self.m, self.d, self.d).reshape(-1, self.d, self.d)
            ct = "full"
        elif covariance_type == "full":
            cov, ct = covars.reshape(-1, self.d, self.d), "full"
        elif covariance_type == "diag":
            cov, ct = covars.reshape(-1, self.d), "diag"
        else:
            cov, ct = covars.reshape(-1), "spherical"
        self.stats_type = ct if covariance_type != "tied" else "full"
        self.mvn = MultivariateNormal(mean=flat_means, covariance=cov, covariance_type=ct, stats_shift=shift)

    def _joint(self, x):
        return self.mvn._log_prob_pairs(x).reshape(x.shape[0], self.k, self.m) + self.log_weights

    def log_prob(self, x, observed=None):
        return torch.logsumexp(self._joint(x), dim=2)

    def summarize(self, x, post, observed=None):
        joint = self._joint(x)
        within = torch.softmax(joint, dim=2)          # p(mixture component | state, x)
        resp = within * post.unsqueeze(2)             # (n, K, M)
        stats = self.mvn._summarize(x, resp.reshape(x.shape[0], self.k * self.m))
        return {"mix": resp.sum(0), "gauss": stats}
