"""Discrete count families: Bernoulli, Binomial, Geometric and Multinomial."""

from __future__ import annotations

import math

import torch

from probkit.distributions.base import ExponentialFamily, _last_axis_size
from probkit.distributions.dirichlet import _DirichletConjugateProbs, _simplex_kl
from probkit.utils.validation import check_nonnegative_integers

__all__ = ["Bernoulli", "Binomial", "Geometric", "Multinomial"]


def _beta_prior_class():
    from probkit.distributions.continuous import Beta

    return Beta


def _beta_mode(post, lower=0.0):
    """Mode of a ``Beta(a, b)`` posterior over a probability, clamped to ``[lower, 1]``.

    With ``a <= 1`` and ``b <= 1`` the density has no interior mode (it is U-shaped or
    flat); the posterior mean is used there, as :class:`Categorical` does for Dirichlet.
    """
    p = post.torch_params()
    a, b = p["concentration1"], p["concentration0"]
    excess_a = torch.clamp(a - 1.0, min=0.0)
    excess_b = torch.clamp(b - 1.0, min=0.0)
    total = excess_a + excess_b
    safe_total = torch.where(total > 0, total, torch.ones_like(total))
    mode = torch.where(total > 0, excess_a / safe_total, a / (a + b))
    return torch.clamp(mode, min=lower, max=1.0)


def _lbeta(a, b):
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def _beta_log_evidence(prior, post):
    """``log B(a_n, b_n) - log B(a, b)``: the marginal likelihood of data whose likelihood is ``p**s (1 - p)**f``
    under a ``Beta(a, b)`` prior (``post`` is the conjugate posterior), up to the base measure."""
    a, b = prior._params["concentration1"], prior._params["concentration0"]
    a_n, b_n = post._params["concentration1"], post._params["concentration0"]
    return _lbeta(a_n, b_n) - _lbeta(a, b)


def _check_probability(p, family, allow_zero=True):
    """Check ``probs`` in ``[0, 1]``, or in ``(0, 1]`` where ``allow_zero`` is false."""
    below = (p < 0) if allow_zero else (p <= 0)
    if bool(below.any()) or bool((p > 1).any()):
        raise ValueError(f"{family}: probs must lie in {'[' if allow_zero else '('}0, 1]")


def _bernoulli_kl(p, q):
    # KL between Bernoulli(p) and Bernoulli(q); 0 log 0 = 0 by the xlogy convention.
    return (torch.xlogy(p, p) - torch.xlogy(p, q)
            + torch.special.xlog1py(1 - p, -p) - torch.special.xlog1py(1 - p, -q))


class _BetaConjugateProbs(ExponentialFamily):
    """A family with one probability parameter ``probs`` and a conjugate :class:`Beta` prior on it.

    The subclass defines ``_posterior``; the marginal likelihood here has no base-measure term
    (a family with one overrides ``_log_marginal_likelihood``).
    """

    param_names = ("probs",)
    _param_event_ndims = {"probs": 0}

    def __init__(self, probs=None):
        self._set_params(probs=probs)

    @property
    def conjugate_prior_family(self):
        return _beta_prior_class()

    def _sufficient_statistics(self, x):
        return {"x": x}

    def _map_params(self, post):
        return {"probs": _beta_mode(post)}

    def _log_marginal_likelihood(self, x, stats, prior):
        return _beta_log_evidence(prior, self._posterior(stats, prior))


class _SuccessCount(_BetaConjugateProbs):
    """The number of successes in ``_n_trials`` independent trials of probability ``probs``.

    ``T(x) = x``, natural parameter ``logit(probs)``, log-partition ``-n log(1 - probs)``,
    mean ``n probs``; the ``Beta(a, b)`` prior updates to ``Beta(a + sum(x), b + n count - sum(x))``.
    """

    def _check_params(self):
        _check_probability(self._params["probs"], type(self).__name__)

    def _natural_parameters(self):
        return {"x": torch.logit(self._params["probs"]).expand(self._batch_shape)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        return {"probs": torch.sigmoid(eta["x"])}

    def _log_partition(self):
        return (-self._n_trials * torch.log1p(-self._params["probs"])).expand(self._batch_shape)

    def _mean_parameters(self):
        return {"x": (self._n_trials * self._params["probs"]).expand(self._batch_shape)}

    def _params_from_mean(self, mean, stats=None):
        return {"probs": torch.clamp(mean["x"] / self._n_trials, 0.0, 1.0)}

    def _kl(self, other):
        # n independent Bernoulli trials: the divergence adds up.
        return self._n_trials * _bernoulli_kl(self._params["probs"], other._params["probs"])

    def _posterior(self, stats, prior):
        p = prior.torch_params()
        return type(prior)(concentration1=p["concentration1"] + stats["x"],
                           concentration0=p["concentration0"] + self._n_trials * stats["count"] - stats["x"])


class Bernoulli(_SuccessCount):
    """Bernoulli distribution over ``{0, 1}`` with ``P(x = 1) = probs``.

    ``T(x) = x``, natural parameter ``logit(probs)``, log-partition
    ``log(1 + exp(eta)) = -log(1 - probs)``, base measure 1. Conjugate prior:
    :class:`Beta` on ``probs``.

    Parameters
    ----------
    probs : float or array-like, optional
        Success probabilities in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> d = Bernoulli(probs=0.25)
    >>> np.exp(d.log_prob(np.array([1, 0])))
    array([0.25, 0.75])
    >>> float(Bernoulli().fit(np.array([1, 0, 1, 1])).probs)
    0.75
    """

    support_description = "{0, 1}"
    _n_trials = 1

    def _validate_support(self, x, name="X"):
        check_nonnegative_integers(x, name)
        if bool((x > 1).any()):
            raise ValueError(f"{name} must hold 0/1 outcomes for Bernoulli; found values > 1")

    def _log_prob(self, x):
        p = self._params["probs"]
        return torch.xlogy(x, p) + torch.special.xlog1py(1 - x, -p)

    def _log_base_measure(self, x):
        return torch.zeros_like(x)

    def _sample(self, shape, gen):
        p = self._params["probs"]
        u = torch.rand(*shape, *self._batch_shape, dtype=p.dtype, device=p.device, generator=gen)
        return (u < p).to(p.dtype)

    def _entropy(self):
        p = self._params["probs"]
        return (-torch.xlogy(p, p) - torch.special.xlog1py(1 - p, -p)).expand(self._batch_shape)


def _check_total_count(total_count, name="total_count"):
    if isinstance(total_count, bool) or int(total_count) != total_count or total_count < 1:
        raise ValueError(f"{name} must be a positive integer, got {total_count!r}")
    return int(total_count)


class Binomial(_SuccessCount):
    """Binomial distribution: successes in ``total_count`` independent trials of probability ``probs``.

    ``total_count`` is a fixed option, not a fitted parameter. ``T(x) = x``, natural
    parameter ``logit(probs)``, log-partition ``total_count * log(1 + exp(eta))``, base
    measure ``C(total_count, x)``. Conjugate prior: :class:`Beta` on ``probs``.

    Parameters
    ----------
    total_count : int
        Number of trials (at least 1).
    probs : float or array-like, optional
        Success probabilities in ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> d = Binomial(total_count=4, probs=0.5)
    >>> np.exp(d.log_prob(np.array([0, 2])))
    array([0.0625, 0.375 ])
    >>> float(Binomial(total_count=10).fit(np.array([3, 5])).probs)
    0.4
    """

    support_description = "integers 0 .. total_count"

    def __init__(self, total_count, probs=None):
        self.total_count = _check_total_count(total_count)
        self._set_params(probs=probs)

    def _options(self):
        return {"total_count": self.total_count}

    @property
    def _n_trials(self):
        return self.total_count

    def _validate_support(self, x, name="X"):
        check_nonnegative_integers(x, name)
        if bool((x > self.total_count).any()):
            raise ValueError(
                f"{name} holds counts above total_count={self.total_count} for Binomial "
                f"(e.g. {float(x[x > self.total_count].reshape(-1)[0]):g})"
            )

    def _log_prob(self, x):
        p = self._params["probs"]
        return self._log_base_measure(x) + torch.xlogy(x, p) + torch.special.xlog1py(self.total_count - x, -p)

    def _log_base_measure(self, x):
        n = float(self.total_count)
        return math.lgamma(n + 1) - torch.lgamma(x + 1) - torch.lgamma(n - x + 1)

    def _sample(self, shape, gen):
        p = self._params["probs"].expand(*shape, *self._batch_shape).contiguous()
        return torch.binomial(torch.full_like(p, float(self.total_count)), p, generator=gen)

    def _entropy(self):
        # Exact sum over the finite support 0 .. total_count.
        p = self._params["probs"].expand(self._batch_shape)
        k = torch.arange(self.total_count + 1, dtype=p.dtype, device=p.device).reshape(-1, *([1] * p.ndim))
        logp = self._log_base_measure(k) + torch.xlogy(k, p) + torch.special.xlog1py(self.total_count - k, -p)
        terms = torch.where(torch.isfinite(logp), torch.exp(logp) * logp, torch.zeros_like(logp))
        return -terms.sum(0)

    def _kl(self, other):
        if other.total_count != self.total_count:
            raise ValueError(
                f"KL divergence between Binomials needs equal total_count, got {self.total_count} and {other.total_count}"
            )
        return super()._kl(other)

    def _log_marginal_likelihood(self, x, stats, prior):
        return self._log_base_measure(x).sum() + _beta_log_evidence(prior, self._posterior(stats, prior))


class Geometric(_BetaConjugateProbs):
    """Geometric distribution: the number of failures before the first success.

    Support ``0, 1, 2, ...`` with ``P(x) = probs * (1 - probs)**x`` (as in
    ``torch.distributions.Geometric``; ``scipy.stats.geom`` counts trials instead, i.e.
    is shifted by one). ``T(x) = x``, natural parameter ``log(1 - probs)``,
    log-partition ``-log(probs) = -log(1 - exp(eta))``. Conjugate prior: :class:`Beta`
    on ``probs``.

    Parameters
    ----------
    probs : float or array-like, optional
        Success probabilities in ``(0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> d = Geometric(probs=0.5)
    >>> np.exp(d.log_prob(np.array([0, 2])))
    array([0.5  , 0.125])
    >>> float(Geometric().fit(np.array([1, 1, 3, 7])).probs)
    0.25
    """

    support_description = "non-negative integers"

    def _check_params(self):
        _check_probability(self._params["probs"], "Geometric", allow_zero=False)

    def _validate_support(self, x, name="X"):
        check_nonnegative_integers(x, name)

    def _log_prob(self, x):
        p = self._params["probs"]
        return torch.log(p) + torch.special.xlog1py(x, -p)

    def _natural_parameters(self):
        return {"x": torch.log1p(-self._params["probs"]).expand(self._batch_shape)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        return {"probs": -torch.expm1(eta["x"])}

    def _log_partition(self):
        return (-torch.log(self._params["probs"])).expand(self._batch_shape)

    def _log_base_measure(self, x):
        return torch.zeros_like(x)

    def _mean_parameters(self):
        p = self._params["probs"]
        return {"x": ((1 - p) / p).expand(self._batch_shape)}

    def _params_from_mean(self, mean, stats=None):
        return {"probs": 1.0 / (1.0 + mean["x"])}

    def _sample(self, shape, gen):
        # Inverse CDF: P(X >= k) = (1 - p)**k, so floor(log U / log(1 - p)) with U in (0, 1].
        p = self._params["probs"]
        u = 1.0 - torch.rand(*shape, *self._batch_shape, dtype=p.dtype, device=p.device, generator=gen)
        return torch.clamp(torch.floor(torch.log(u) / torch.log1p(-p)), min=0.0)

    def _entropy(self):
        p = self._params["probs"]
        return ((-torch.special.xlog1py(1 - p, -p) - torch.xlogy(p, p)) / p).expand(self._batch_shape)

    def _kl(self, other):
        p, q = self._params["probs"], other._params["probs"]
        return torch.log(p / q) + (torch.special.xlog1py(1 - p, -p) - torch.special.xlog1py(1 - p, -q)) / p

    # conjugate prior: Beta on probs; the likelihood is p**n (1 - p)**sum(x)
    def _posterior(self, stats, prior):
        p = prior.torch_params()
        return type(prior)(concentration1=p["concentration1"] + stats["count"],
                           concentration0=p["concentration0"] + stats["x"])

    def _map_params(self, post):
        p = post.torch_params()["concentration1"]
        return {"probs": _beta_mode(post, lower=torch.finfo(p.dtype).tiny)}


class Multinomial(_DirichletConjugateProbs):
    """Multinomial distribution over count vectors of ``n_categories`` symbols.

    A sample is a row of counts (event shape ``(n_categories,)``). ``T(x) = x``, natural
    parameters ``log(probs)`` (over-complete), base measure the multinomial coefficient
    ``n! / prod(x_k!)`` with ``n`` the row total. Conjugate prior: :class:`Dirichlet`.

    Parameters
    ----------
    probs : array-like of shape (..., n_categories), optional
        Non-negative, each row summing to 1.
    total_count : int, optional
        Number of trials per sample. ``None`` (default) takes each row's own total, so
        rows of different totals can be mixed; when set, every row must sum to it (and
        :meth:`sample` and :meth:`entropy` need it).

    Examples
    --------
    >>> import numpy as np
    >>> d = Multinomial(probs=[0.5, 0.5])
    >>> np.exp(d.log_prob(np.array([[1, 1], [2, 0]])))
    array([0.5 , 0.25])
    >>> Multinomial().fit(np.array([[3, 1], [2, 2]])).probs
    array([0.625, 0.375])
    """

    event_ndim = 1
    support_description = "vectors of non-negative integer counts"

    def __init__(self, probs=None, total_count=None):
        self.total_count = None if total_count is None else _check_total_count(total_count)
        self._set_params(probs=probs)

    def _options(self):
        return {"total_count": self.total_count}

    n_categories = _last_axis_size("probs", "Number of categories (length of a count vector).")

    def _validate_support(self, x, name="X"):
        check_nonnegative_integers(x, name)
        if self.is_fitted and x.shape[-1] != self.n_categories:
            raise ValueError(
                f"{name} must have {self.n_categories} columns (one per category), got {x.shape[-1]}"
            )
        if self.total_count is not None:
            totals = x.sum(-1)
            if bool((totals != self.total_count).any()):
                bad = float(totals[totals != self.total_count].reshape(-1)[0])
                raise ValueError(
                    f"every row of {name} must sum to total_count={self.total_count}; found a row summing to {bad:g}"
                )

    def _log_prob(self, x):
        return self._log_base_measure(x) + torch.xlogy(x, self._params["probs"]).sum(-1)

    def _sufficient_statistics(self, x):
        return {"x": x}

    def _natural_parameters(self):
        p = self._params["probs"]
        return {"x": torch.log(p).expand(*self._batch_shape, p.shape[-1])}

    @classmethod
    def _params_from_natural(cls, eta, options):
        return {"probs": torch.softmax(eta["x"], dim=-1)}

    def _log_partition(self):
        # n * logsumexp(eta), which is 0 for normalised probs; without a fixed total the
        # per-trial value is returned (the row total multiplies a zero either way).
        per_trial = torch.logsumexp(torch.log(self._params["probs"]), -1).expand(self._batch_shape)
        return per_trial if self.total_count is None else self.total_count * per_trial

    def _log_base_measure(self, x):
        return torch.lgamma(x.sum(-1) + 1) - torch.lgamma(x + 1).sum(-1)

    def _mean_parameters(self):
        """``E[x]``: ``total_count * probs``, or ``probs`` per trial when the total is not fixed."""
        p = self._params["probs"].expand(*self._batch_shape, self._params["probs"].shape[-1])
        return {"x": p if self.total_count is None else self.total_count * p}

    def _params_from_mean(self, mean, stats=None):
        m = mean["x"]
        total = m.sum(-1, keepdim=True)
        if bool((total <= 0).any()):
            raise ValueError("Multinomial: the weighted rows hold no counts at all")
        return {"probs": m / total}

    def _require_total_count(self, what):
        if self.total_count is None:
            raise ValueError(f"Multinomial.{what} needs a fixed total_count; pass total_count=... to the constructor")

    def _sample(self, shape, gen):
        self._require_total_count("sample")
        # Sequential conditional binomials: x_k ~ Bin(remaining, p_k / sum_{j>=k} p_j).
        p = self._params["probs"]
        k = p.shape[-1]
        p = p.expand(*shape, *self._batch_shape, k)
        tail = torch.flip(torch.cumsum(torch.flip(p, [-1]), -1), [-1])
        remaining = torch.full(p.shape[:-1], float(self.total_count), dtype=p.dtype, device=p.device)
        counts = []
        for j in range(k - 1):
            safe_tail = torch.where(tail[..., j] > 0, tail[..., j], torch.ones_like(remaining))
            q = torch.clamp(p[..., j] / safe_tail, 0.0, 1.0)
            xj = torch.binomial(remaining.contiguous(), q.contiguous(), generator=gen)
            counts.append(xj)
            remaining = remaining - xj
        counts.append(remaining)
        return torch.stack(counts, -1)

    def _entropy(self):
        self._require_total_count("entropy")
        # H = -log n! - n sum p log p + sum_k E[log x_k!], each x_k ~ Binomial(n, p_k).
        n = self.total_count
        p = self._params["probs"].expand(*self._batch_shape, self._params["probs"].shape[-1])
        c = torch.arange(n + 1, dtype=p.dtype, device=p.device).reshape(-1, *([1] * p.ndim))
        log_binom = (math.lgamma(n + 1.0) - torch.lgamma(c + 1) - torch.lgamma(n - c + 1)
                     + torch.xlogy(c, p) + torch.special.xlog1py(n - c, -p))
        expected_log_fact = (torch.exp(log_binom) * torch.lgamma(c + 1)).sum(0).sum(-1)
        return -math.lgamma(n + 1.0) - n * torch.xlogy(p, p).sum(-1) + expected_log_fact

    def _kl(self, other):
        self._require_total_count("kl_divergence")
        if other.total_count != self.total_count:
            raise ValueError("KL divergence between Multinomials needs equal total_count")
        return self.total_count * _simplex_kl(self._params["probs"], other._params["probs"])

    def _log_marginal_likelihood(self, x, stats, prior):
        return self._dirichlet_log_evidence(stats, prior, start=self._log_base_measure(x).sum())
