"""The von Mises distribution: the exponential family of angles on the circle."""

from __future__ import annotations

import math

import torch

from probkit.distributions.base import ExponentialFamily

__all__ = ["VonMises", "mean_resultant_inverse"]

LOG_2PI = math.log(2 * math.pi)


def _log_i0(kappa):
    """``log I0(kappa)``, stable for large ``kappa`` through the exponentially scaled Bessel function."""
    return torch.log(torch.special.i0e(kappa)) + kappa


def _bessel_ratio(kappa):
    """``A(kappa) = I1(kappa) / I0(kappa)``, the mean resultant length of a von Mises."""
    return torch.special.i1e(kappa) / torch.special.i0e(kappa)


def mean_resultant_inverse(mean_resultant_length, tol=1e-15, max_iter=100):
    """Solve ``I1(kappa) / I0(kappa) = R`` for ``kappa >= 0``, elementwise: the MLE of the concentration.

    Newton's method on ``log kappa`` (which keeps the iterate positive and handles the
    ``kappa ~ 1 / (2 (1 - R))`` growth near ``R = 1``), started from Best and Fisher's
    piecewise approximation; ``A'(kappa) = 1 - A / kappa - A**2``. ``R = 0`` gives 0.

    Parameters
    ----------
    mean_resultant_length : torch.Tensor
        Values in ``[0, 1)``.

    Examples
    --------
    >>> kappa = mean_resultant_inverse(torch.tensor([0.3, 0.9], dtype=torch.float64))
    >>> torch.allclose(torch.special.i1e(kappa) / torch.special.i0e(kappa), torch.tensor([0.3, 0.9], dtype=torch.float64), rtol=0, atol=1e-14)
    True
    """
    r = mean_resultant_length
    small = 2 * r + r ** 3 + 5 * r ** 5 / 6
    middle = -0.4 + 1.39 * r + 0.43 / (1 - r)
    large = 1 / (r ** 3 - 4 * r ** 2 + 3 * r).clamp(min=torch.finfo(r.dtype).tiny)
    kappa = torch.where(r < 0.53, small, torch.where(r < 0.85, middle, large))
    positive = r > 0
    log_kappa = torch.log(torch.where(positive, kappa.clamp(min=torch.finfo(r.dtype).tiny), torch.ones_like(r)))
    target = torch.where(positive, r, torch.full_like(r, 0.5))
    for _ in range(max_iter):
        k = torch.exp(log_kappa)
        a = _bessel_ratio(k)
        # d A / d log kappa = kappa - A - kappa A**2 (> 0)
        slope = k - a - k * a * a
        step = (a - target) / slope
        log_kappa = log_kappa - step.clamp(min=-2.0, max=2.0)
        if bool((step.abs() < tol).all()):
            break
    return torch.where(positive, torch.exp(log_kappa), torch.zeros_like(r))


class VonMises(ExponentialFamily):
    """Von Mises distribution of an angle (radians) with mean direction ``loc`` and concentration ``concentration``.

    Density ``exp(kappa cos(x - loc)) / (2 pi I0(kappa))``, periodic in ``x`` (any real angle
    is valid). ``T(x) = (cos x, sin x)``, natural parameters ``kappa (cos loc, sin loc)``,
    log-partition ``log(2 pi I0(kappa))``, base measure 1. The MLE from weighted statistics
    is ``loc = atan2(mean sin, mean cos)`` and ``kappa = A^{-1}(R)`` with the mean resultant
    length ``R`` and ``A = I1 / I0`` (:func:`mean_resultant_inverse`, Newton to machine
    precision). ``concentration = 0`` is the uniform distribution on the circle.

    Parameters
    ----------
    loc : float or array-like, optional
        Mean direction(s) in radians.
    concentration : float or array-like, optional
        ``kappa >= 0``.

    Examples
    --------
    >>> import numpy as np
    >>> d = VonMises(loc=0.5, concentration=2.0)
    >>> round(float(d.log_prob(np.array([0.5]))[0]), 6)
    -0.661871
    >>> angles = d.sample(20000, random_state=0)
    >>> fit = VonMises().fit(angles)
    >>> round(float(fit.loc), 2), round(float(fit.concentration), 1)
    (0.5, 2.0)
    """

    param_names = ("loc", "concentration")
    _param_event_ndims = {"loc": 0, "concentration": 0}
    support_description = "angles (any real number, periodic with period 2 pi)"

    def __init__(self, loc=None, concentration=None):
        self._set_params(loc=loc, concentration=concentration)

    def _check_params(self):
        if bool((self._params["concentration"] < 0).any()):
            raise ValueError("VonMises: concentration must be non-negative")

    def _log_prob(self, x):
        mu, kappa = self._params["loc"], self._params["concentration"]
        return kappa * torch.cos(x - mu) - LOG_2PI - _log_i0(kappa)

    def _sufficient_statistics(self, x):
        return {"cos": torch.cos(x), "sin": torch.sin(x)}

    def _natural_parameters(self):
        mu, kappa = self._params["loc"], self._params["concentration"]
        return {"cos": (kappa * torch.cos(mu)).expand(self._batch_shape),
                "sin": (kappa * torch.sin(mu)).expand(self._batch_shape)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        return {"loc": torch.atan2(eta["sin"], eta["cos"]), "concentration": torch.hypot(eta["cos"], eta["sin"])}

    def _log_partition(self):
        return (LOG_2PI + _log_i0(self._params["concentration"])).expand(self._batch_shape)

    def _log_base_measure(self, x):
        return torch.zeros_like(x)

    def _mean_parameters(self):
        mu, kappa = self._params["loc"], self._params["concentration"]
        a = _bessel_ratio(kappa)
        return {"cos": (a * torch.cos(mu)).expand(self._batch_shape), "sin": (a * torch.sin(mu)).expand(self._batch_shape)}

    def _params_from_mean(self, mean, stats=None):
        c, s = mean["cos"], mean["sin"]
        r = torch.hypot(c, s)
        if bool((r >= 1).any()):
            raise ValueError("VonMises: all angles are equal, so the concentration MLE is infinite")
        return {"loc": torch.atan2(s, c), "concentration": mean_resultant_inverse(r)}

    def _sample(self, shape, gen):
        # Best and Fisher's (1979) rejection sampler, vectorised; rho in a cancellation-free form.
        mu, kappa = self._params["loc"], self._params["concentration"]
        full = (*shape, *self._batch_shape)
        k = kappa.expand(full).contiguous()
        root = torch.sqrt(1 + 4 * k * k)
        tau = 1 + root
        tau_minus_2 = 4 * k * k / (root + 1)
        safe_k = torch.where(k > 0, k, torch.ones_like(k))
        rho = tau * tau_minus_2 / (tau + torch.sqrt(2 * tau)) / (2 * safe_k)
        r = (1 + rho * rho) / (2 * rho)
        out = torch.empty_like(k)
        todo = k > 0
        while bool(todo.any()):
            idx = todo.nonzero(as_tuple=True)
            kk, rr = k[idx], r[idx]
            u1, u2, u3 = (torch.rand(kk.shape, dtype=k.dtype, device=k.device, generator=gen) for _ in range(3))
            z = torch.cos(math.pi * u1)
            f = (1 + rr * z) / (rr + z)
            c = kk * (rr - f)
            ok = (c * (2 - c) - u2 > 0) | (torch.log(c / u2) + 1 - c >= 0)
            theta = torch.sign(u3 - 0.5) * torch.acos(f.clamp(-1.0, 1.0))
            accepted = tuple(i[ok] for i in idx)
            out[accepted] = theta[ok]
            todo[accepted] = False
        uniform = (2 * torch.rand(full, dtype=k.dtype, device=k.device, generator=gen) - 1) * math.pi
        angle = torch.where(k > 0, out, uniform) + mu
        return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi

    def _entropy(self):
        kappa = self._params["concentration"]
        return (LOG_2PI + _log_i0(kappa) - kappa * _bessel_ratio(kappa)).expand(self._batch_shape)

    def _kl(self, other):
        m1, k1 = self._params["loc"], self._params["concentration"]
        m2, k2 = other._params["loc"], other._params["concentration"]
        return _log_i0(k2) - _log_i0(k1) + _bessel_ratio(k1) * (k1 - k2 * torch.cos(m1 - m2))
