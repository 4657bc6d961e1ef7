"""The univariate normal distribution."""

from __future__ import annotations

import torch

from probkit.distributions.base import LOG_2PI, ExponentialFamily

__all__ = ["Normal"]


class Normal(ExponentialFamily):
    """Univariate normal distribution ``N(loc, scale**2)``.

    Sufficient statistics ``T(x) = (x, x**2)``; natural parameters
    ``(loc / scale**2, -1 / (2 scale**2))``. Conjugate prior: :class:`NormalGamma` on
    ``(loc, precision)``.

    Parameters
    ----------
    loc : float or array-like, optional
        Mean(s). Omit both parameters for an unfitted distribution.
    scale : float or array-like, optional
        Standard deviation(s), positive.
    min_scale : float, default=0.0
        Lower bound on ``scale`` after a fit (a variance floor for degenerate data).

    Examples
    --------
    >>> import numpy as np
    >>> d = Normal(loc=0.0, scale=2.0)
    >>> round(float(d.log_prob(np.array([0.0]))[0]), 6)
    -1.612086
    >>> Normal().fit(np.array([1.0, 3.0])).params
    {'loc': array(2.), 'scale': array(1.)}
    """

    param_names = ("loc", "scale")
    _param_event_ndims = {"loc": 0, "scale": 0}
    event_ndim = 0

    def __init__(self, loc=None, scale=None, min_scale=0.0):
        if min_scale < 0:
            raise ValueError(f"min_scale must be non-negative, got {min_scale}")
        self.min_scale = float(min_scale)
        self._set_params(loc=loc, scale=scale)

    def _options(self):
        return {"min_scale": self.min_scale}

    def _check_params(self):
        if bool((self._params["scale"] <= 0).any()):
            raise ValueError("Normal: scale must be positive")

    @property
    def conjugate_prior_family(self):
        from probkit.distributions.priors import NormalGamma

        return NormalGamma

    # tensor core
    def _log_prob(self, x):
        loc, scale = self._params["loc"], self._params["scale"]
        z = (x - loc) / scale
        return -0.5 * z * z - torch.log(scale) - 0.5 * LOG_2PI

    def _sufficient_statistics(self, x):
        return {"x": x, "xx": x * x}

    def _natural_parameters(self):
        loc, scale = self._params["loc"], self._params["scale"]
        var = scale * scale
        return {"x": (loc / var).expand(self._batch_shape), "xx": (-0.5 / var).expand(self._batch_shape)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        var = -0.5 / eta["xx"]
        return {"loc": eta["x"] * var, "scale": torch.sqrt(var)}

    def _log_partition(self):
        loc, scale = self._params["loc"], self._params["scale"]
        return (0.5 * loc * loc / (scale * scale) + torch.log(scale)).expand(self._batch_shape)

    def _log_base_measure(self, x):
        return torch.full_like(x, -0.5 * LOG_2PI)

    def _mean_parameters(self):
        loc, scale = self._params["loc"], self._params["scale"]
        return {"x": loc.expand(self._batch_shape), "xx": (loc * loc + scale * scale).expand(self._batch_shape)}

    def _params_from_mean(self, mean, stats=None):
        loc = mean["x"]
        var = torch.clamp(mean["xx"] - loc * loc, min=0.0)
        scale = torch.clamp(torch.sqrt(var), min=self.min_scale)
        if bool((scale <= 0).any()):
            raise ValueError(
                "Normal: the data have zero variance; set min_scale > 0 to fit a degenerate sample"
            )
        return {"loc": loc, "scale": scale}

    def _sample(self, shape, gen):
        loc, scale = self._params["loc"], self._params["scale"]
        eps = torch.randn(*shape, *self._batch_shape, dtype=loc.dtype, device=loc.device, generator=gen)
        return loc + scale * eps

    def _entropy(self):
        return (0.5 + 0.5 * LOG_2PI + torch.log(self._params["scale"])).expand(self._batch_shape)

    def _kl(self, other):
        m1, s1 = self._params["loc"], self._params["scale"]
        m2, s2 = other._params["loc"], other._params["scale"]
        return torch.log(s2 / s1) + (s1 * s1 + (m1 - m2) ** 2) / (2 * s2 * s2) - 0.5

    # conjugate prior: NormalGamma over (loc, precision)
    def _posterior(self, stats, prior):
        return prior._update(stats["count"], stats["x"], stats["xx"])

    def _map_params(self, post):
        loc, precision = post._mode()
        return {"loc": loc, "scale": torch.rsqrt(precision)}

    def _log_marginal_likelihood(self, x, stats, prior):
        post = self._posterior(stats, prior)
        return post._log_normalizer() - prior._log_normalizer() - 0.5 * LOG_2PI * stats["count"]

