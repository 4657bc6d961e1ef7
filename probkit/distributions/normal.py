"""The univariate normal distribution."""

from __future__ import annotations

import torch

from probkit.distributions.base import LOG_2PI, ExponentialFamily, _check_positive

__all__ = ["Normal"]


class _GaussianOfTransform(ExponentialFamily):
    """Shared core of families where ``g(x) ~ N(loc, scale**2)`` for a fixed bijection ``g``.

    Subclasses set the names of the two sufficient statistics (``g(x)`` and ``g(x)**2``)
    and ``_transform``; the statistics, natural and mean parameters, MLE, KL and the
    NormalGamma conjugate updates are those of the normal model of ``g(x)``. What depends
    on ``x`` itself (Jacobian, sampling, entropy, support) is in the subclasses.
    """

    param_names = ("loc", "scale")
    _param_event_ndims = {"loc": 0, "scale": 0}
    event_ndim = 0
    _stat_names = ("x", "xx")

    def __init__(self, loc=None, scale=None, min_scale=0.0, stats_shift=None):
        if min_scale < 0:
            raise ValueError(f"min_scale must be non-negative, got {min_scale}")
        self.min_scale = float(min_scale)
        self.stats_shift = None if stats_shift is None else torch.as_tensor(stats_shift, dtype=torch.float64)
        self._set_params(loc=loc, scale=scale)

    @staticmethod
    def _transform(x):
        return x

    def _options(self):
        return {"min_scale": self.min_scale, "stats_shift": self.stats_shift}

    def centered(self, center):
        """This family with its statistics accumulated about ``center`` (a point near the data).

        ``sum g(x)**2 - n mean**2`` cancels catastrophically when the data sit far from the
        origin (an offset of 1e8 leaves no digit of a unit variance); about a nearby point
        the scatter is computed from small numbers. Fitted values do not depend on it.
        """
        shift = self._transform(torch.as_tensor(center, dtype=torch.float64))
        if not bool(torch.isfinite(shift).all()):
            return self
        return type(self)(**{**self._options(), "stats_shift": shift})

    def _shift_like(self, t):
        return None if self.stats_shift is None else self.stats_shift.to(dtype=t.dtype, device=t.device)

    def _statistics_for_sums(self, x):
        shift = self._shift_like(x)
        if shift is None:
            return self._sufficient_statistics(x)
        y = self._transform(x) - shift
        first, second = self._stat_names
        return {first: y, second: y * y}

    def _stats_meta(self):
        return {} if self.stats_shift is None else {"shift": self.stats_shift}

    def _mle_params(self, stats):
        shift = stats.meta.get("shift")
        if shift is None:
            return super()._mle_params(stats)
        first, second = self._stat_names
        count = stats.count
        centred = stats[first] / count
        var = torch.clamp(stats[second] / count - centred * centred, min=0.0)
        return self._finish_params(centred + shift.to(centred), var)

    def _check_params(self):
        _check_positive(self._params["scale"], "scale", type(self).__name__)

    @property
    def conjugate_prior_family(self):
        from probkit.distributions.priors import NormalGamma

        return NormalGamma

    def _gaussian_log_prob(self, y):
        loc, scale = self._params["loc"], self._params["scale"]
        z = (y - loc) / scale
        return -0.5 * z * z - torch.log(scale) - 0.5 * LOG_2PI

    def _sufficient_statistics(self, x):
        y = self._transform(x)
        first, second = self._stat_names
        return {first: y, second: y * y}

    def _natural_parameters(self):
        loc, scale = self._params["loc"], self._params["scale"]
        var = scale * scale
        first, second = self._stat_names
        return {first: (loc / var).expand(self._batch_shape), second: (-0.5 / var).expand(self._batch_shape)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        first, second = cls._stat_names
        var = -0.5 / eta[second]
        return {"loc": eta[first] * var, "scale": torch.sqrt(var)}

    def _log_partition(self):
        loc, scale = self._params["loc"], self._params["scale"]
        return (0.5 * loc * loc / (scale * scale) + torch.log(scale)).expand(self._batch_shape)

    def _mean_parameters(self):
        loc, scale = self._params["loc"], self._params["scale"]
        first, second = self._stat_names
        return {first: loc.expand(self._batch_shape), second: (loc * loc + scale * scale).expand(self._batch_shape)}

    def _params_from_mean(self, mean, stats=None):
        first, second = self._stat_names
        loc = mean[first]
        return self._finish_params(loc, torch.clamp(mean[second] - loc * loc, min=0.0))

    def _finish_params(self, loc, var):
        scale = torch.clamp(torch.sqrt(var), min=self.min_scale)
        if bool((scale <= 0).any()):
            raise ValueError(
                f"{type(self).__name__}: the data have zero spread; set min_scale > 0 to fit a degenerate sample"
            )
        return {"loc": loc, "scale": scale}

    def _standard_normal(self, shape, gen):
        loc, scale = self._params["loc"], self._params["scale"]
        eps = torch.randn(*shape, *self._batch_shape, dtype=loc.dtype, device=loc.device, generator=gen)
        return loc + scale * eps

    def _kl(self, other):
        # The KL of the underlying normals (invariant under the bijection g).
        m1, s1 = self._params["loc"], self._params["scale"]
        m2, s2 = other._params["loc"], other._params["scale"]
        return torch.log(s2 / s1) + (s1 * s1 + (m1 - m2) ** 2) / (2 * s2 * s2) - 0.5

    # conjugate prior: NormalGamma over (loc, 1 / scale**2) of g(x)
    def _posterior(self, stats, prior):
        first, second = self._stat_names
        return prior._update(stats["count"], stats[first], stats[second], shift=stats.meta.get("shift"))

    def _map_params(self, post):
        loc, precision = post._mode()
        return {"loc": loc, "scale": torch.rsqrt(precision)}

    def _log_marginal_likelihood(self, x, stats, prior):
        post = self._posterior(stats, prior)
        return post._log_normalizer() - prior._log_normalizer() - 0.5 * LOG_2PI * stats["count"]


class Normal(_GaussianOfTransform):
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

    def _log_prob(self, x):
        return self._gaussian_log_prob(x)

    def _log_base_measure(self, x):
        return torch.full_like(x, -0.5 * LOG_2PI)

    def _sample(self, shape, gen):
        return self._standard_normal(shape, gen)

    def _entropy(self):
        return (0.5 + 0.5 * LOG_2PI + torch.log(self._params["scale"])).expand(self._batch_shape)
