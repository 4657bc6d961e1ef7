"""The Dirichlet distribution over the probability simplex."""

from __future__ import annotations

import numpy as np
import torch

from probkit.distributions._sampling import standard_gamma
from probkit.distributions.base import ExponentialFamily, _check_positive, _check_simplex, _last_axis_size
from probkit.utils.validation import check_int

__all__ = ["Dirichlet", "dirichlet_expected_log", "dirichlet_map_rows", "inverse_digamma"]

_EULER_GAMMA = 0.5772156649015329


def inverse_digamma(y, tol=1e-14, max_iter=50):
    """Solve ``digamma(x) = y`` for ``x > 0``, elementwise, by Newton's method.

    Started from Minka's piecewise approximation (``exp(y) + 1/2`` for ``y >= -2.22``,
    else ``-1 / (y - digamma(1))``), from which Newton converges in a few steps because
    ``digamma`` is increasing and concave.

    Parameters
    ----------
    y : torch.Tensor

    Returns
    -------
    torch.Tensor of the shape of ``y``.

    Examples
    --------
    >>> y = torch.digamma(torch.tensor([0.1, 1.0, 50.0], dtype=torch.float64))
    >>> inverse_digamma(y)
    tensor([ 0.1000,  1.0000, 50.0000], dtype=torch.float64)
    """
    x = torch.where(y >= -2.22, torch.exp(y) + 0.5, -1.0 / (y + _EULER_GAMMA))
    tol = max(tol, 8 * torch.finfo(y.dtype).eps)  # reachable in float32 too
    for _ in range(max_iter):
        step = (torch.digamma(x) - y) / torch.polygamma(1, x)
        # Newton from the right of a concave increasing function never crosses 0, but keep
        # the iterate positive should rounding suggest otherwise.
        x_new = torch.where(x - step > 0, x - step, 0.5 * x)
        done = bool(((x_new - x).abs() <= tol * x).all())
        x = x_new
        if done:
            break
    return x


def dirichlet_expected_log(concentration):
    """``E[log p]`` under ``Dirichlet(concentration)`` along the last axis: ``digamma(a) - digamma(sum a)``.

    The expected log-probabilities that variational Bayes plugs in for ``log p`` (a single
    category gives 0). Tensor in, tensor out.

    Examples
    --------
    >>> value = dirichlet_expected_log(torch.tensor([1.0, 1.0], dtype=torch.float64))
    >>> bool(torch.allclose(value, torch.tensor([-1.0, -1.0], dtype=torch.float64)))   # digamma(1) - digamma(2)
    True
    """
    return torch.digamma(concentration) - torch.digamma(concentration.sum(-1, keepdim=True))


class Dirichlet(ExponentialFamily):
    """Dirichlet distribution over probability vectors of length ``k``.

    Density ``prod(x_i**(alpha_i - 1)) / B(alpha)`` on the simplex (w.r.t. Lebesgue
    measure on the first ``k - 1`` coordinates). ``T(x) = log x``, natural parameters
    ``alpha - 1``, log-partition ``sum(lgamma(alpha)) - lgamma(sum(alpha))``. The MLE is
    computed by Minka's fixed-point iteration
    ``digamma(alpha_i) <- digamma(sum(alpha)) + mean(log x_i)``, inverting the digamma by
    Newton's method, and finished by Newton steps on ``alpha`` (the fixed point alone
    converges slowly when the concentrations are large). Dirichlet is the conjugate prior of :class:`Categorical` and
    :class:`Multinomial` probabilities.

    Parameters
    ----------
    concentration : array-like of shape (..., k), optional
        Positive concentrations ``alpha``.
    tol : float, default=1e-12
        Relative change of ``alpha`` at which the iteration of a fit stops.
    max_iter : int, default=1000
        Iteration cap of the fit.

    Examples
    --------
    >>> import numpy as np
    >>> d = Dirichlet(concentration=[1.0, 1.0, 1.0])
    >>> round(float(np.exp(d.log_prob(np.array([[0.2, 0.3, 0.5]]))[0])), 6)
    2.0
    >>> x = Dirichlet(concentration=[2.0, 5.0, 3.0]).sample(20000, random_state=0)
    >>> np.round(Dirichlet().fit(x).concentration, 1)
    array([2., 5., 3.])
    """

    param_names = ("concentration",)
    _param_event_ndims = {"concentration": 1}
    event_ndim = 1
    support_description = "the probability simplex"
    conjugate_prior_family = None

    def __init__(self, concentration=None, tol=1e-12, max_iter=1000):
        if not tol > 0:
            raise ValueError(f"tol must be positive, got {tol!r}")
        check_int(max_iter, "max_iter")
        self.tol = float(tol)
        self.max_iter = int(max_iter)
        self._set_params(concentration=concentration)

    def _options(self):
        return {"tol": self.tol, "max_iter": self.max_iter}

    n_categories = _last_axis_size("concentration", "Length ``k`` of the probability vectors.")

    def _check_params(self):
        alpha = self._params["concentration"]
        _check_positive(alpha, "concentration", "Dirichlet")
        if alpha.shape[-1] < 2:
            raise ValueError(f"Dirichlet: concentration needs at least 2 categories, got shape {tuple(alpha.shape)}")

    def _validate_support(self, x, name="X"):
        if self.is_fitted and x.shape[-1] != self.n_categories:
            raise ValueError(f"{name} must have {self.n_categories} columns for this Dirichlet, got {x.shape[-1]}")
        if bool((x < 0).any()) or bool((x > 1).any()):
            raise ValueError(f"rows of {name} must lie on the probability simplex; found entries outside [0, 1]")
        sums = x.sum(-1)
        # Loose enough for rows normalised in float32 and then cast (a k-term sum rounds by
        # about k * eps), tight enough to catch rows that were never normalised.
        atol = max(1e-6, 8 * x.shape[-1] * torch.finfo(x.dtype).eps)
        if bool(((sums - 1).abs() > atol).any()):
            bad = sums[(sums - 1).abs() > atol].reshape(-1)[0]
            raise ValueError(f"rows of {name} must lie on the probability simplex (sum to 1); found a row summing to {float(bad):.6g}")

    def _log_prob(self, x):
        alpha = self._params["concentration"]
        return torch.xlogy(alpha - 1, x).sum(-1) - self._log_beta(alpha)

    @staticmethod
    def _log_beta(alpha):
        return torch.lgamma(alpha).sum(-1) - torch.lgamma(alpha.sum(-1))

    def _sufficient_statistics(self, x):
        return {"log_x": torch.log(x)}

    def _natural_parameters(self):
        alpha = self._params["concentration"]
        return {"log_x": (alpha - 1).expand(*self._batch_shape, alpha.shape[-1])}

    @classmethod
    def _params_from_natural(cls, eta, options):
        return {"concentration": eta["log_x"] + 1}

    def _log_partition(self):
        return self._log_beta(self._params["concentration"]).expand(self._batch_shape)

    def _log_base_measure(self, x):
        return torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)

    def _mean_parameters(self):
        alpha = self._params["concentration"]
        mean_log = dirichlet_expected_log(alpha)
        return {"log_x": mean_log.expand(*self._batch_shape, alpha.shape[-1])}

    def _params_from_mean(self, mean, stats=None):
        mean_log = mean["log_x"]
        if not bool(torch.isfinite(mean_log).all()):
            raise ValueError("Dirichlet: fitting needs every coordinate strictly positive (log 0 is unbounded)")
        geometric = torch.exp(mean_log).sum(-1, keepdim=True)
        if bool((geometric >= 1).any()):
            raise ValueError("Dirichlet: the sample has no spread (all rows equal); the MLE diverges")
        # Start from digamma(a) ~ log(a - 1/2), which makes the equations explicit:
        # a_i = 1/2 + (s - 1/2) exp(m_i) with total s = (k - G) / (2 (1 - G)), G = sum exp(m_i).
        k = mean_log.shape[-1]
        total = (k - geometric) / (2 * (1 - geometric))
        alpha = 0.5 + (total - 0.5) * torch.exp(mean_log)
        return {"concentration": self._maximise(alpha, mean_log)}

    def _maximise(self, alpha, mean_log):
        """Maximise ``f(alpha) = <alpha - 1, mean_log> - log B(alpha)`` (concave) from ``alpha``.

        Minka's fixed point ascends ``f`` monotonically but only linearly, slowly when the
        concentrations are large; so after a few fixed-point steps the iteration switches
        to Newton steps, whose Hessian ``diag(-trigamma(alpha)) + trigamma(sum alpha) 11^T``
        is inverted in O(k) by Sherman-Morrison. Where a Newton step would leave the
        positive orthant or lower ``f``, it is halved (``f`` is concave, so this ends).
        """

        def objective(a):
            return ((a - 1) * mean_log).sum(-1) - self._log_beta(a)

        tol = max(self.tol, 8 * torch.finfo(alpha.dtype).eps)  # reachable in float32 too

        n_fixed_point = min(self.max_iter, 20)
        for _ in range(n_fixed_point):
            alpha_new = inverse_digamma(torch.digamma(alpha.sum(-1, keepdim=True)) + mean_log)
            done = bool(((alpha_new - alpha).abs() <= tol * alpha).all())
            alpha = alpha_new
            if done:
                return alpha
        for _ in range(self.max_iter - n_fixed_point):
            total = alpha.sum(-1, keepdim=True)
            grad = torch.digamma(total) - torch.digamma(alpha) + mean_log
            q = -torch.polygamma(1, alpha)
            z = torch.polygamma(1, total)
            shift = (grad / q).sum(-1, keepdim=True) / (1.0 / z + (1.0 / q).sum(-1, keepdim=True))
            step = (grad - shift) / q  # H^{-1} grad; the Newton update is alpha - step
            current = objective(alpha)
            scale = torch.ones_like(total)
            for _ in range(60):
                trial = alpha - scale * step
                inside = (trial > 0).all(-1, keepdim=True)
                safe = torch.where(inside, trial, alpha)
                bad = ~inside | (objective(safe) < current - 1e-12 * current.abs()).unsqueeze(-1)
                if not bool(bad.any()):
                    break
                scale = torch.where(bad, 0.5 * scale, scale)
            alpha_new = alpha - scale * step
            done = bool(((alpha_new - alpha).abs() <= tol * alpha).all())
            alpha = alpha_new
            if done:
                break
        return alpha

    def _sample(self, shape, gen):
        alpha = self._params["concentration"]
        g = standard_gamma(alpha.expand(*shape, *self._batch_shape, alpha.shape[-1]).contiguous(), gen)
        return g / g.sum(-1, keepdim=True)

    def _entropy(self):
        alpha = self._params["concentration"]
        total = alpha.sum(-1)
        k = alpha.shape[-1]
        return (self._log_beta(alpha) + (total - k) * torch.digamma(total)
                - ((alpha - 1) * torch.digamma(alpha)).sum(-1)).expand(self._batch_shape)

    def _kl(self, other):
        a, b = self._params["concentration"], other._params["concentration"]
        a_total = a.sum(-1, keepdim=True)
        return (self._log_beta(b) - self._log_beta(a)
                + ((a - b) * (torch.digamma(a) - torch.digamma(a_total))).sum(-1))


class _DirichletConjugateProbs(ExponentialFamily):
    """A family with a probability vector ``probs`` (last axis), the per-symbol counts as the statistic
    ``"x"`` and a conjugate :class:`Dirichlet` prior: ``Dirichlet(alpha)`` updates to ``Dirichlet(alpha + sum x)``.

    The marginal likelihood here has no base-measure term; a family with one passes its sum as
    ``start`` of :meth:`_dirichlet_log_evidence`.
    """

    param_names = ("probs",)
    _param_event_ndims = {"probs": 1}
    conjugate_prior_family = Dirichlet

    def _check_params(self):
        _check_simplex(self._params["probs"], type(self).__name__)

    def _posterior(self, stats, prior):
        alpha = prior.torch_params()["concentration"]
        return type(prior)(concentration=alpha + stats["x"])

    def _map_params(self, post):
        alpha = post.torch_params()["concentration"]
        excess = torch.clamp(alpha - 1.0, min=0.0)
        total = excess.sum(-1, keepdim=True)
        # All concentrations <= 1: no interior mode; fall back to the posterior mean.
        safe_total = torch.where(total > 0, total, torch.ones_like(total))
        return {"probs": torch.where(total > 0, excess / safe_total, alpha / alpha.sum(-1, keepdim=True))}

    def _dirichlet_log_evidence(self, stats, prior, start=0.0):
        """``start + log B(alpha + sum x) - log B(alpha)`` with ``B`` the multivariate beta function."""
        alpha = prior._params["concentration"]
        post = alpha + stats["x"]
        return (start + torch.lgamma(alpha.sum(-1)) - torch.lgamma(post.sum(-1))
                + (torch.lgamma(post) - torch.lgamma(alpha)).sum(-1))

    def _log_marginal_likelihood(self, x, stats, prior):
        return self._dirichlet_log_evidence(stats, prior)


def _simplex_kl(p, q):
    """``KL(Categorical(p) || Categorical(q))`` over the last axis, with ``0 log 0 = 0``."""
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
    return terms.sum(-1)


def dirichlet_map_rows(previous, counts, prior=1.0):
    """Rows of probabilities at the Dirichlet MAP ``(prior - 1 + counts)``, normalised.

    The M-step of start and transition probabilities: entries that are zero in
    ``previous`` stay zero (structural zeros), and a row that receives no mass keeps its
    previous values.

    Parameters
    ----------
    previous : array-like of shape (..., K)
        The current probabilities.
    counts : array-like of shape (..., K)
        Expected counts.
    prior : float or array-like, default=1.0
        Dirichlet concentration (1 gives the maximum-likelihood rows).

    Returns
    -------
    rows : numpy.ndarray of shape (..., K)
    n_empty : int
        Rows that received no mass (kept their previous values).

    Examples
    --------
    >>> rows, n_empty = dirichlet_map_rows([[0.5, 0.5], [0.0, 1.0]], [[3.0, 1.0], [2.0, 0.0]])
    >>> rows.tolist(), n_empty
    ([[0.75, 0.25], [0.0, 1.0]], 1)
    """
    previous = np.asarray(previous, dtype=np.float64)
    values = np.maximum(np.asarray(prior, dtype=np.float64) - 1 + np.asarray(counts, dtype=np.float64), 0)
    values = values * (previous != 0)
    sums = values.sum(-1, keepdims=True)
    if sums.min() > 0:
        return values / sums, 0
    out = np.where(sums > 0, values / np.where(sums > 0, sums, 1.0), previous)
    return out, int((sums.reshape(-1) == 0).sum())
