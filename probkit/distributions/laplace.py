"""The Laplace (double exponential) distribution."""

from __future__ import annotations

import numpy as np
import torch

from probkit.distributions._latent import ExpectedStatisticsMixin
from probkit.distributions.base import ExponentialFamily, _check_positive

__all__ = ["Laplace", "weighted_median"]

# Residuals below this fraction of the scale get the majorizer weight of this fraction: keeps
# the weight 1 / |x - loc| finite when the location sits on a sample (as the median does).
RESIDUAL_FLOOR = 1e-12


def weighted_median(x, weights):
    """The minimiser of ``sum_i w_i |x_i - m|``; the midpoint when a whole interval minimises it.

    Samples with zero weight are ignored. With unit weights this is ``numpy.median``.

    Parameters
    ----------
    x : array-like of shape (n,)
    weights : array-like of shape (n,), non-negative, not all zero

    Examples
    --------
    >>> weighted_median([1.0, 2.0, 10.0], [1.0, 1.0, 3.0])
    10.0
    >>> weighted_median([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0])
    2.5
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    keep = w > 0
    if not keep.any():
        raise ValueError("weighted_median needs at least one positive weight")
    x, w = x[keep], w[keep]
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    cumulative = np.cumsum(w)
    half = 0.5 * cumulative[-1]
    j = int(np.searchsorted(cumulative, half, side="left"))
    if cumulative[j] == half and j + 1 < len(x):
        # The objective is flat between x_j and x_{j+1}.
        return float(0.5 * (x[j] + x[j + 1]))
    return float(x[j])


class Laplace(ExpectedStatisticsMixin, ExponentialFamily):
    """Laplace distribution with density ``exp(-|x - loc| / scale) / (2 scale)``.

    Not an exponential family (the location enters through ``|x - loc|``). The weighted
    MLE (:meth:`fit`) is exact: ``loc`` = the weighted median (:func:`weighted_median`) and
    ``scale`` = the weighted mean absolute deviation from it.

    For mixtures and HMMs the statistics come from the normal scale-mixture form of the
    Laplace: given the current location ``m0``, ``|r| <= r**2 / (2 |r0|) + |r0| / 2`` with
    ``r0 = x - m0`` bounds the absolute deviations by a weighted sum of squares, so
    :meth:`summarize` (by a distribution with parameters) returns ``sum w / |r0|``,
    ``sum w r0 / |r0|``, ``sum w r0**2 / |r0|`` and ``sum w |r0|``, and :meth:`from_stats`
    is the minorise-maximise step (iteratively reweighted least squares for the median),
    which never lowers the likelihood. Statistics from a distribution without parameters
    give the normal-moment start (mean, and ``scale = sd / sqrt(2)``).

    Parameters
    ----------
    loc : float or array-like, optional
    scale : float or array-like, optional
        Positive scale(s) (variance ``2 scale**2``).
    min_scale : float, default=0.0
        Lower bound on the fitted scale.

    Examples
    --------
    >>> import numpy as np
    >>> round(float(Laplace(loc=0.0, scale=2.0).log_prob(np.array([1.0]))[0]), 6)
    -1.886294
    >>> fit = Laplace().fit(np.array([1.0, 2.0, 4.0, 9.0]))
    >>> float(fit.loc), float(fit.scale)
    (3.0, 2.5)
    """

    param_names = ("loc", "scale")
    _param_event_ndims = {"loc": 0, "scale": 0}
    support_description = "the real line"
    conjugate_prior_family = None

    def __init__(self, loc=None, scale=None, min_scale=0.0):
        if not min_scale >= 0:
            raise ValueError(f"min_scale must be non-negative, got {min_scale!r}")
        self.min_scale = float(min_scale)
        self._set_params(loc=loc, scale=scale)

    def _options(self):
        return {"min_scale": self.min_scale}

    def _check_params(self):
        _check_positive(self._params["scale"], "scale", "Laplace")

    def _log_prob(self, x):
        loc, scale = self._params["loc"], self._params["scale"]
        return -torch.log(2 * scale) - (x - loc).abs() / scale

    # ------------------------------------------------------------------ not an exponential family
    def _not_exponential_family(self, *args, **kwargs):
        raise NotImplementedError("Laplace with a free location is not an exponential family: it has no natural "
                                  "parameters, log-partition or mean parameters")

    _natural_parameters = _log_partition = _mean_parameters = _log_base_measure = _not_exponential_family

    @classmethod
    def _params_from_natural(cls, eta, options):
        raise NotImplementedError("Laplace is not an exponential family: it has no natural parameters")

    def _params_from_mean(self, mean, stats=None):
        raise AssertionError("Laplace fits through _mle_params")

    def _n_free_parameters(self):
        return 2

    # ------------------------------------------------------------------ statistics and fits
    def _sufficient_statistics(self, x):
        if not self.is_fitted:
            return {"u": torch.ones_like(x), "ux": x, "uxx": x * x, "abs_dev": torch.zeros_like(x)}
        loc, scale = self._params["loc"], self._params["scale"]
        r = x - loc
        a = torch.maximum(r.abs(), RESIDUAL_FLOOR * scale)
        u = 1.0 / a
        return {"u": u, "ux": u * r, "uxx": u * r * r, "abs_dev": a}

    def _stats_meta(self):
        if not self.is_fitted:
            return {"shift": None}
        return {"shift": self._params["loc"].expand(self._batch_shape)}

    def _mle_params(self, stats):
        count, u, ux, uxx = stats["count"], stats["u"], stats["ux"], stats["uxx"]
        m = ux / u
        shift = stats.meta.get("shift")
        if shift is None:
            # Normal-moment start: the variance of a Laplace is 2 scale**2.
            scale = torch.sqrt(torch.clamp((uxx - ux * m) / count, min=0.0) / 2)
            loc = m
        else:
            # Minimise the quadratic majorizer of sum w |x - loc| and take its value at the minimum.
            bound = 0.5 * torch.clamp(uxx - ux * m, min=0.0) + 0.5 * stats["abs_dev"]
            scale = bound / count
            loc = m + shift.to(m.dtype)
        scale = torch.clamp(scale, min=self.min_scale)
        if bool((scale <= 0).any()):
            raise ValueError("Laplace: the data have zero spread; set min_scale > 0 to fit a degenerate sample")
        return {"loc": loc, "scale": scale}

    def fit(self, X, sample_weight=None, prior=None):
        """Exact weighted MLE: the weighted median and the weighted mean absolute deviation from it.

        Parameters
        ----------
        X : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
        prior : None
            Laplace has no conjugate prior; anything else is a ``TypeError``.

        Returns
        -------
        self
        """
        x, w = self._direct_fit_data(X, sample_weight, prior)
        values = x.detach().cpu().numpy().astype(np.float64)
        if not (w > 0).any():
            raise ValueError("cannot fit Laplace: the total weight is zero")
        loc = weighted_median(values, w)
        scale = max(float(w @ np.abs(values - loc) / w.sum()), self.min_scale)
        if scale <= 0:
            raise ValueError("Laplace: the data have zero spread; set min_scale > 0 to fit a degenerate sample")
        self._set_params(loc=torch.tensor(loc, dtype=x.dtype, device=x.device),
                         scale=torch.tensor(scale, dtype=x.dtype, device=x.device))
        return self

    # ------------------------------------------------------------------ sampling, entropy, KL
    def _sample(self, shape, gen):
        loc, scale = self._params["loc"], self._params["scale"]
        full = (*shape, *self._batch_shape)
        # The difference of two unit exponentials is a standard Laplace; 1 - U lies in (0, 1].
        e1 = -torch.log1p(-torch.rand(full, dtype=loc.dtype, device=loc.device, generator=gen))
        e2 = -torch.log1p(-torch.rand(full, dtype=loc.dtype, device=loc.device, generator=gen))
        return loc + scale * (e1 - e2)

    def _entropy(self):
        return (1 + torch.log(2 * self._params["scale"])).expand(self._batch_shape)

    def _kl(self, other):
        m1, b1 = self._params["loc"], self._params["scale"]
        m2, b2 = other._params["loc"], other._params["scale"]
        gap = (m1 - m2).abs()
        return torch.log(b2 / b1) + gap / b2 + b1 / b2 * torch.exp(-gap / b1) - 1
