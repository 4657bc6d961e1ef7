"""The multivariate normal distribution with full, diagonal, spherical or tied covariance."""

from __future__ import annotations

import numpy as np
import torch

from probkit.distributions.base import LOG_2PI, ExponentialFamily, SufficientStats, _last_axis_size
from probkit.utils._linalg import cholesky

__all__ = ["COVARIANCE_TYPES", "MultivariateNormal", "check_covariance_type", "covariance_shape", "full_covariances",
           "n_covariance_parameters", "precision_cholesky"]

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")

_COV_EVENT_NDIM = {"full": 2, "tied": 2, "diag": 1, "spherical": 0}


# ---------------------------------------------------------------------------------------------
# Covariance types: everything that depends on the type string, as functions keyed by it
# (estimators ask these instead of dispatching on the string themselves).
# ---------------------------------------------------------------------------------------------

def check_covariance_type(covariance_type, name="covariance_type"):
    """Return ``covariance_type`` or raise ``ValueError`` naming the allowed values.

    Examples
    --------
    >>> check_covariance_type("diag")
    'diag'
    >>> check_covariance_type("dense")
    Traceback (most recent call last):
    ...
    ValueError: covariance_type must be one of ('full', 'diag', 'spherical', 'tied'), got 'dense'
    """
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"{name} must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    return covariance_type


def covariance_shape(covariance_type, n_components, n_features):
    """Shape of the covariances (and precisions) of ``n_components`` Gaussians of one type.

    Examples
    --------
    >>> [covariance_shape(t, 3, 2) for t in COVARIANCE_TYPES]
    [(3, 2, 2), (3, 2), (3,), (2, 2)]
    """
    k, d = n_components, n_features
    return {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]


def n_covariance_parameters(covariance_type, n_components, n_features):
    """Free parameters of the covariances of ``n_components`` Gaussians of one type.

    Examples
    --------
    >>> [n_covariance_parameters(t, 3, 2) for t in COVARIANCE_TYPES]
    [9, 6, 3, 3]
    """
    k, d = n_components, n_features
    return {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d, "spherical": k}[covariance_type]


def full_covariances(covariances, covariance_type, n_components, n_features):
    """Covariances of any type as full matrices, shape ``(n_components, n_features, n_features)`` (numpy).

    Examples
    --------
    >>> full_covariances(np.array([[1.0, 2.0]]), "diag", 1, 2)
    array([[[1., 0.],
            [0., 2.]]])
    """
    cov = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.repeat(cov[None], n_components, axis=0)
    eye = np.eye(n_features)
    if covariance_type == "diag":
        return cov[:, :, None] * eye
    return cov[:, None, None] * eye

_ILL_DEFINED = (
    "the covariance of some component is not positive definite (for instance caused by "
    "singleton or collapsed samples); decrease the number of components, increase "
    "reg_covar, or scale the input data"
)


def precision_cholesky(covariance, covariance_type):
    """Cholesky factor ``P`` of the precision, ``precision = P @ P.T`` (scikit-learn's convention).

    For ``full``/``tied`` covariances ``P = inv(L).T`` with ``covariance = L @ L.T``
    (upper triangular); for ``diag``/``spherical`` it is ``1 / sqrt(variance)``.

    Raises
    ------
    ValueError
        If a covariance is not positive definite.

    Examples
    --------
    >>> P = precision_cholesky(torch.tensor([[4.0, 0.0], [0.0, 1.0]], dtype=torch.float64), "full")
    >>> P.diagonal().tolist()
    [0.5, 1.0]
    """
    if covariance_type in ("full", "tied"):
        L, info = torch.linalg.cholesky_ex(covariance)
        if bool((info != 0).any()):
            raise ValueError(_ILL_DEFINED)
        eye = torch.eye(covariance.shape[-1], dtype=covariance.dtype, device=covariance.device)
        return torch.linalg.solve_triangular(L, eye.expand_as(L), upper=False).mT
    if bool((covariance <= 0).any()):
        raise ValueError(_ILL_DEFINED)
    return torch.rsqrt(covariance)


class MultivariateNormal(ExponentialFamily):
    """Multivariate normal ``N(mean, covariance)`` over vectors of ``n_features``.

    ``T(x) = (x, x x^T)`` (diagonal: ``x**2``; spherical: ``|x|**2``), natural parameters
    ``(Λ mean, -Λ / 2)`` with precision ``Λ``.

    Parameters
    ----------
    mean : array-like of shape (..., n_features), optional
    covariance : array-like, optional
        Shape by ``covariance_type``: ``full`` ``(..., d, d)``; ``diag`` ``(..., d)``
        variances; ``spherical`` ``(...)`` one variance per distribution; ``tied``
        ``(d, d)`` shared by every member of the batch.
    covariance_type : {"full", "diag", "spherical", "tied"}, default="full"
    reg_covar : float, default=0.0
        Added to the diagonal of fitted covariances, keeping them positive definite.
    stats_shift : array-like of shape (n_features,), optional
        Reference point the sufficient statistics are accumulated about. Centring on a
        point near the data (the EM engine uses the data mean) avoids the cancellation of
        ``E[x x^T] - mean mean^T`` when the data sit far from the origin.
    loc, covariance_matrix : array-like, optional
        ``torch.distributions.MultivariateNormal``'s names, accepted for ``mean`` and
        ``covariance`` (a ``covariance_matrix`` is a full covariance). ``mean`` and
        ``covariance`` remain the attribute names; :meth:`to_torch` gives the torch object.

    Examples
    --------
    >>> import numpy as np
    >>> d = MultivariateNormal(mean=[0.0, 0.0], covariance=np.eye(2))
    >>> round(float(d.log_prob(np.zeros((1, 2)))[0]), 6)
    -1.837877
    >>> X = d.sample(5000, random_state=0)
    >>> fit = MultivariateNormal(covariance_type="diag").fit(X)
    >>> fit.covariance.shape
    (2,)

    torch's keyword names work too:

    >>> MultivariateNormal(loc=[1.0, 2.0], covariance_matrix=np.eye(2)).mean
    array([1., 2.])
    """

    param_names = ("mean", "covariance")
    event_ndim = 1

    def __init__(self, mean=None, covariance=None, covariance_type="full", reg_covar=0.0, stats_shift=None, *,
                 loc=None, covariance_matrix=None):
        if loc is not None:
            if mean is not None:
                raise TypeError("give the mean as mean= or as loc= (torch's name), not both")
            mean = loc
        if covariance_matrix is not None:
            if covariance is not None:
                raise TypeError("give the covariance as covariance= or as covariance_matrix= (torch's name), not both")
            if covariance_type != "full":
                raise ValueError(f"covariance_matrix is a full covariance; covariance_type={covariance_type!r} "
                                 "takes covariance=")
            covariance = covariance_matrix
        check_covariance_type(covariance_type)
        if not reg_covar >= 0:
            raise ValueError(f"reg_covar must be non-negative, got {reg_covar!r}")
        self.covariance_type = covariance_type
        self.reg_covar = float(reg_covar)
        self._param_event_ndims = {"mean": 1, "covariance": _COV_EVENT_NDIM[covariance_type]}
        self.stats_shift = None if stats_shift is None else torch.as_tensor(stats_shift, dtype=torch.float64)
        self._set_params(mean=mean, covariance=covariance)

    def _options(self):
        return {"covariance_type": self.covariance_type, "reg_covar": self.reg_covar, "stats_shift": self.stats_shift}

    def centered(self, center):
        """This family with its statistics accumulated about ``center`` (see ``stats_shift``)."""
        shift = torch.as_tensor(center, dtype=torch.float64)
        if not bool(torch.isfinite(shift).all()):
            return self
        return type(self)(**{**self._options(), "stats_shift": shift})

    n_features = _last_axis_size("mean", "Dimension ``d`` of a sample.")

    def _check_params(self):
        mean, cov = self._params["mean"], self._params["covariance"]
        d = mean.shape[-1]
        ct = self.covariance_type
        if ct in ("full", "tied") and cov.shape[-2:] != (d, d):
            raise ValueError(f"covariance must have trailing shape ({d}, {d}) for covariance_type={ct!r}, got {tuple(cov.shape)}")
        if ct == "tied" and cov.ndim != 2:
            raise ValueError(f"a tied covariance is one (d, d) matrix shared by the batch, got shape {tuple(cov.shape)}")
        if ct == "diag" and cov.shape[-1] != d:
            raise ValueError(f"diag covariance must have trailing shape ({d},), got {tuple(cov.shape)}")
        if ct in ("full", "tied") and not bool(torch.allclose(cov, cov.mT, rtol=1e-8, atol=1e-10)):
            raise ValueError("covariance must be symmetric")
        self._cache["prec_chol"] = precision_cholesky(cov, ct)

    def _validate_support(self, x, name="X"):
        # Without this a wrong feature count surfaces as a torch broadcasting RuntimeError.
        if self.is_fitted and x.shape[-1] != self.n_features:
            raise ValueError(f"{name} has {x.shape[-1]} features but this MultivariateNormal has {self.n_features}")

    @property
    def conjugate_prior_family(self):
        if self.covariance_type != "full":
            return None
        from probkit.distributions.priors import NormalWishart

        return NormalWishart

    # ------------------------------------------------------------------ precision helpers
    def _prec_chol(self):
        P = self._cache.get("prec_chol")
        if P is None:
            P = precision_cholesky(self._params["covariance"], self.covariance_type)
            self._cache["prec_chol"] = P
        return P

    def _log_det_prec_chol(self):
        P = self._prec_chol()
        d = self._params["mean"].shape[-1]
        if self.covariance_type in ("full", "tied"):
            return torch.log(torch.diagonal(P, dim1=-2, dim2=-1)).sum(-1)
        if self.covariance_type == "diag":
            return torch.log(P).sum(-1)
        return d * torch.log(P)

    def _mahalanobis_sq(self, diff):
        """``diff^T Λ diff`` for ``diff`` broadcastable against the batch, shape (..., d)."""
        P = self._prec_chol()
        if self.covariance_type in ("full", "tied"):
            y = (diff.unsqueeze(-2) @ P).squeeze(-2)
            return (y * y).sum(-1)
        if self.covariance_type == "diag":
            return ((diff * P) ** 2).sum(-1)
        return (diff * diff).sum(-1) * P * P

    # ------------------------------------------------------------------ tensor core
    def _log_prob(self, x):
        d = self._params["mean"].shape[-1]
        maha = self._mahalanobis_sq(x - self._params["mean"])
        return -0.5 * (d * LOG_2PI + maha) + self._log_det_prec_chol()

    def _log_prob_pairs(self, x):
        """(n, d) samples against a 1-D batch of K components -> (n, K), by matrix products."""
        mean = self._params["mean"]
        if len(self._batch_shape) != 1:
            return super()._log_prob_pairs(x)
        n, d = x.shape
        k = mean.shape[0]
        P = self._prec_chol()
        # Centre on the component means' average: keeps the expanded quadratic forms accurate
        # for data far from the origin.
        centre = mean.mean(0)
        xc = x - centre
        mc = mean - centre
        ct = self.covariance_type
        if ct == "full":
            # in place on the one (n, K, d) product: no further temporaries of that size
            y = (xc @ P.permute(1, 0, 2).reshape(d, k * d)).reshape(n, k, d)
            maha = y.sub_(torch.einsum("kd,kde->ke", mc, P)).square_().sum(-1)
        elif ct == "tied":
            y = (xc @ P).unsqueeze(1) - (mc @ P).unsqueeze(0)
            maha = (y * y).sum(-1)
        elif ct == "diag":
            prec = P * P
            maha = (mc * mc * prec).sum(1) - 2.0 * xc @ (mc * prec).T + (xc * xc) @ prec.T
        else:
            prec = P * P
            maha = ((mc * mc).sum(1) * prec) - 2.0 * (xc @ mc.T) * prec + (xc * xc).sum(1, keepdim=True) * prec
        return -0.5 * (d * LOG_2PI + maha) + self._log_det_prec_chol()

    def _sufficient_statistics(self, x):
        ct = self.covariance_type
        if ct in ("full", "tied"):
            xx = x.unsqueeze(-1) * x.unsqueeze(-2)
        elif ct == "diag":
            xx = x * x
        else:
            xx = (x * x).sum(-1)
        return {"x": x, "xx": xx}

    def _stats_meta(self):
        return {"shift": self.stats_shift}

    def _summarize(self, x, w):
        shift = self.stats_shift
        xc = x - shift.to(x.dtype).to(x.device) if shift is not None else x
        n, d = xc.shape
        batch = w.shape[1:]
        wb = w.reshape(n, -1)
        kb = wb.shape[1]
        ct = self.covariance_type
        fields = {"count": w.sum(0), "x": (wb.T @ xc).reshape((*batch, d))}
        if ct == "full":
            # One matrix product for all components: (K*d, n) @ (n, d).
            weighted = (wb.unsqueeze(-1) * xc.unsqueeze(1)).reshape(n, kb * d)
            fields["xx"] = (weighted.T @ xc).reshape((*batch, d, d))
        elif ct == "tied":
            total = wb.sum(1, keepdim=True)
            fields["xx"] = (xc * total).T @ xc
        elif ct == "diag":
            fields["xx"] = (wb.T @ (xc * xc)).reshape((*batch, d))
        else:
            fields["xx"] = (wb.T @ (xc * xc).sum(1)).reshape(tuple(batch))
        meta = self._stats_meta()
        if ct == "tied":
            meta["shared_fields"] = ("xx",)
        return SufficientStats(type(self).__name__, fields, meta)

    # ------------------------------------------------------------------ quadratic design (batched E-step)
    # log p_k(x) is a quadratic polynomial in x: with the design column z(x) = [second-order terms; x; 1],
    # every component's log-density is one row of C^T @ Z, and every component's sufficient statistics
    # are one column of Z @ resp^T. Both E-step passes become single matrix products with no
    # (n, K, d) temporary. Z is stored feature-major (F, n): the products and the reductions over
    # components then run along contiguous rows.
    def _quadratic_design(self, xc_t, out=None):
        """Design ``[second-order terms; xc; 1]`` of centred samples given feature-major, ``xc_t`` (d, n) -> (F, n).

        Second-order terms: ``xc_i xc_j`` for ``i <= j`` (full, tied), ``xc_i**2`` (diag),
        ``|xc|**2`` (spherical).
        """
        d, n = xc_t.shape
        ct = self.covariance_type
        n_quad = {"full": d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": d, "spherical": 1}[ct]
        z = out if out is not None else torch.empty(n_quad + d + 1, n, dtype=xc_t.dtype, device=xc_t.device)
        if ct in ("full", "tied"):
            start = 0
            for i in range(d):  # row i of the upper triangle of xc xc^T
                torch.mul(xc_t[i:], xc_t[i:i + 1], out=z[start:start + d - i])
                start += d - i
        elif ct == "diag":
            torch.mul(xc_t, xc_t, out=z[:d])
        else:
            torch.sum(xc_t * xc_t, 0, keepdim=True, out=z[:1])
        z[n_quad:n_quad + d] = xc_t
        z[-1] = 1.0
        return z

    def _quadratic_log_prob_coefficients(self, center):
        """Matrix ``C`` (F, K) with ``C.T @ _quadratic_design((x - center).T) == _log_prob_pairs(x).T``."""
        mean = self._params["mean"]
        P = self._prec_chol()
        d = mean.shape[-1]
        k = mean.shape[0]
        mc = mean - center
        ct = self.covariance_type
        if ct in ("full", "tied"):
            prec = (P @ P.mT).expand(k, d, d)
            iu = torch.triu_indices(d, d, device=mean.device)
            # an off-diagonal product appears once in the design but twice in x^T prec x
            scale = torch.where(iu[0] == iu[1], -0.5, -1.0).to(mean.dtype)
            quad = prec[:, iu[0], iu[1]] * scale
            linear = (prec @ mc.unsqueeze(-1)).squeeze(-1)
            y = mc.unsqueeze(-2) @ P if ct == "full" else (mc @ P).unsqueeze(-2)
            mean_term = (y * y).sum((-2, -1))
        elif ct == "diag":
            prec = P * P
            quad = -0.5 * prec
            linear = mc * prec
            mean_term = (mc * mc * prec).sum(-1)
        else:
            prec = P * P
            quad = (-0.5 * prec).unsqueeze(-1)
            linear = mc * prec.unsqueeze(-1)
            mean_term = (mc * mc).sum(-1) * prec
        const = -0.5 * (d * LOG_2PI + mean_term) + self._log_det_prec_chol()
        return torch.cat([quad, linear, const.unsqueeze(-1)], 1).T

    def _stats_from_design_sums(self, sums, center):
        """:meth:`_summarize`'s statistics from ``_quadratic_design((x - center).T) @ w`` (F, K).

        The statistics are returned about this family's ``stats_shift`` (the origin when it
        is None), as :meth:`_summarize` gives them, so they add to statistics of other batches.
        """
        d = self._params["mean"].shape[-1]
        ct = self.covariance_type
        n_quad = sums.shape[0] - d - 1
        count, sx = sums[-1], sums[n_quad:n_quad + d].T
        if ct in ("full", "tied"):
            iu = torch.triu_indices(d, d, device=sums.device)
            xx = sums.new_zeros((sums.shape[1], d, d))
            xx[:, iu[0], iu[1]] = sums[:n_quad].T
            xx[:, iu[1], iu[0]] = sums[:n_quad].T
        elif ct == "diag":
            xx = sums[:d].T
        else:
            xx = sums[0]
        shift = self.stats_shift
        delta = center - (shift.to(center.dtype).to(center.device) if shift is not None else 0.0)
        if bool((delta != 0).any()):
            # sums about `center` -> sums about the shift: x - shift = (x - center) + delta
            if ct in ("full", "tied"):
                outer = sx.unsqueeze(-1) * delta
                xx = xx + outer + outer.mT + count[:, None, None] * (delta.unsqueeze(-1) * delta)
            elif ct == "diag":
                xx = xx + 2.0 * sx * delta + count.unsqueeze(-1) * delta * delta
            else:
                xx = xx + 2.0 * (sx * delta).sum(-1) + count * (delta * delta).sum()
            sx = sx + count.unsqueeze(-1) * delta
        fields = {"count": count, "x": sx, "xx": xx.sum(0) if ct == "tied" else xx}
        meta = self._stats_meta()
        if ct == "tied":
            meta["shared_fields"] = ("xx",)
        return SufficientStats(type(self).__name__, fields, meta)

    def _n_free_parameters(self):
        d = self._params["mean"].shape[-1]
        # a tied covariance is counted once for the whole batch (_n_free_parameters_total)
        return d + (0 if self.covariance_type == "tied" else n_covariance_parameters(self.covariance_type, 1, d))

    def _n_free_parameters_total(self):
        total = super()._n_free_parameters_total()
        if self.covariance_type == "tied":
            d = self._params["mean"].shape[-1]
            total += d * (d + 1) // 2
        return total

    def _mle_params(self, stats):
        count = stats["count"]
        m = stats["x"] / count.unsqueeze(-1)
        ct = self.covariance_type
        d = m.shape[-1]
        if ct == "full":
            cov = stats["xx"] / count[..., None, None] - m.unsqueeze(-1) * m.unsqueeze(-2)
            cov = 0.5 * (cov + cov.mT)
            cov = cov + self.reg_covar * torch.eye(d, dtype=cov.dtype, device=cov.device)
        elif ct == "tied":
            total = count.sum()
            outer = (count[..., None, None] * m.unsqueeze(-1) * m.unsqueeze(-2)).reshape(-1, d, d).sum(0)
            cov = (stats["xx"] - outer) / total
            cov = 0.5 * (cov + cov.mT)
            cov = cov + self.reg_covar * torch.eye(d, dtype=cov.dtype, device=cov.device)
        elif ct == "diag":
            cov = stats["xx"] / count.unsqueeze(-1) - m * m + self.reg_covar
        else:
            cov = (stats["xx"] / count - (m * m).sum(-1)) / d + self.reg_covar
        shift = stats.meta.get("shift")
        mean = m + shift.to(m.dtype).to(m.device) if shift is not None else m
        return {"mean": mean, "covariance": cov}

    def _natural_parameters(self):
        mean = self._params["mean"]
        d = mean.shape[-1]
        P = self._prec_chol()
        batch = self._batch_shape
        ct = self.covariance_type
        if ct in ("full", "tied"):
            prec = P @ P.mT
            eta_x = (prec @ mean.unsqueeze(-1)).squeeze(-1)
            eta_xx = (-0.5 * prec).expand(*batch, d, d)
        elif ct == "diag":
            prec = P * P
            eta_x = mean * prec
            eta_xx = (-0.5 * prec).expand(*batch, d)
        else:
            prec = P * P
            eta_x = mean * prec.unsqueeze(-1)
            eta_xx = (-0.5 * prec).expand(batch)
        return {"x": eta_x.expand(*batch, d), "xx": eta_xx}

    @classmethod
    def _params_from_natural(cls, eta, options):
        ct = options.get("covariance_type", "full")
        if ct in ("full", "tied"):
            eta_xx = eta["xx"]
            if ct == "tied" and eta_xx.ndim > 2:
                # _natural_parameters expands the shared precision over the batch; fold it back.
                d = eta_xx.shape[-1]
                flat = eta_xx.reshape(-1, d, d)
                if not bool(torch.allclose(flat, flat[:1])):
                    raise ValueError("tied natural parameters must share one 'xx' matrix across the batch")
                eta_xx = flat[0]
            cov = torch.linalg.inv(-2.0 * eta_xx)
            mean = (cov @ eta["x"].unsqueeze(-1)).squeeze(-1)
        elif ct == "diag":
            cov = -0.5 / eta["xx"]
            mean = eta["x"] * cov
        else:
            cov = -0.5 / eta["xx"]
            mean = eta["x"] * cov.unsqueeze(-1)
        return {"mean": mean, "covariance": cov}

    def _log_partition(self):
        mean = self._params["mean"]
        maha = self._mahalanobis_sq(mean)
        return (0.5 * maha - self._log_det_prec_chol()).expand(self._batch_shape)

    def _log_base_measure(self, x):
        return torch.full(x.shape[:-1], -0.5 * x.shape[-1] * LOG_2PI, dtype=x.dtype, device=x.device)

    def _mean_parameters(self):
        mean, cov = self._params["mean"], self._params["covariance"]
        ct = self.covariance_type
        if ct in ("full", "tied"):
            exx = cov + mean.unsqueeze(-1) * mean.unsqueeze(-2)
        elif ct == "diag":
            exx = cov + mean * mean
        else:
            exx = mean.shape[-1] * cov + (mean * mean).sum(-1)
        return {"x": mean.expand(*self._batch_shape, mean.shape[-1]), "xx": exx}

    def _params_from_mean(self, mean, stats=None):
        raise AssertionError("MultivariateNormal fits through _mle_params")

    def _covariance_cholesky(self):
        cov = self._params["covariance"]
        if self.covariance_type in ("full", "tied"):
            return cholesky(cov, "the covariance of MultivariateNormal")
        return torch.sqrt(cov)

    def _sample(self, shape, gen):
        mean = self._params["mean"]
        d = mean.shape[-1]
        eps = torch.randn(*shape, *self._batch_shape, d, dtype=mean.dtype, device=mean.device, generator=gen)
        L = self._covariance_cholesky()
        ct = self.covariance_type
        if ct in ("full", "tied"):
            noise = (L @ eps.unsqueeze(-1)).squeeze(-1)
        elif ct == "diag":
            noise = eps * L
        else:
            noise = eps * L.unsqueeze(-1)
        return mean + noise

    def _entropy(self):
        d = self._params["mean"].shape[-1]
        return (0.5 * d * (1.0 + LOG_2PI) - self._log_det_prec_chol()).expand(self._batch_shape)

    def _kl(self, other):
        if other.covariance_type != self.covariance_type:
            raise TypeError("KL divergence between MultivariateNormals needs the same covariance_type")
        d = self._params["mean"].shape[-1]
        m1, m2 = self._params["mean"], other._params["mean"]
        P2 = other._prec_chol()
        ct = self.covariance_type
        if ct in ("full", "tied"):
            L1 = self._covariance_cholesky()
            trace = ((L1.mT @ P2) ** 2).sum((-2, -1))
        elif ct == "diag":
            trace = (self._params["covariance"] * P2 * P2).sum(-1)
        else:
            trace = d * self._params["covariance"] * P2 * P2
        maha = other._mahalanobis_sq(m1 - m2)
        logdet_ratio = 2.0 * (self._log_det_prec_chol() - other._log_det_prec_chol())  # log|Σ2| - log|Σ1|
        return 0.5 * (trace + maha - d + logdet_ratio)

    # conjugate prior (full covariance): NormalWishart over (mean, precision)
    def _posterior(self, stats, prior):
        return prior._update(stats["count"], stats["x"], stats["xx"], shift=stats.meta.get("shift"))

    def _map_params(self, post):
        mean, precision = post._mode()
        cov = torch.linalg.inv(precision)
        return {"mean": mean, "covariance": 0.5 * (cov + cov.mT)}

    def _log_marginal_likelihood(self, x, stats, prior):
        post = self._posterior(stats, prior)
        d = x.shape[-1]
        return post._log_normalizer() - prior._log_normalizer() - 0.5 * d * LOG_2PI * stats["count"]
