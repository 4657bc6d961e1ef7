"""The categorical distribution over symbols ``0 .. n_categories - 1``."""

from __future__ import annotations

import torch

from probkit.distributions.base import ExponentialFamily, SufficientStats

__all__ = ["Categorical"]


class Categorical(ExponentialFamily):
    """Categorical distribution: symbol ``k`` has probability ``probs[..., k]``.

    Samples are integers (event shape ``()``). ``T(x) = onehot(x)``, natural parameters
    ``log(probs)`` (over-complete), log-partition ``logsumexp(eta) = 0``. Conjugate
    prior: :class:`Dirichlet`.

    Parameters
    ----------
    probs : array-like of shape (..., n_categories), optional
        Non-negative, each row summing to 1. Zero entries are allowed (impossible symbols).
    n_categories : int, optional
        Alphabet size for an unfitted distribution; inferred from ``probs`` when given,
        and from the largest symbol seen by ``fit`` when neither is given.

    Examples
    --------
    >>> import numpy as np
    >>> d = Categorical(probs=[0.2, 0.3, 0.5])
    >>> np.round(np.exp(d.log_prob(np.array([2, 0]))), 3)
    array([0.5, 0.2])
    >>> Categorical(n_categories=3).fit(np.array([0, 0, 1, 2])).probs
    array([0.5 , 0.25, 0.25])
    """

    param_names = ("probs",)
    _param_event_ndims = {"probs": 1}
    support_description = "integers 0 .. n_categories - 1"

    def __init__(self, probs=None, n_categories=None):
        if n_categories is not None and (int(n_categories) != n_categories or n_categories < 1):
            raise ValueError(f"n_categories must be a positive integer, got {n_categories!r}")
        self.n_categories = None if n_categories is None else int(n_categories)
        self._set_params(probs=probs)
        if self.is_fitted:
            m = self._params["probs"].shape[-1]
            if self.n_categories is not None and self.n_categories != m:
                raise ValueError(f"probs has {m} categories but n_categories={self.n_categories}")
            self.n_categories = m

    def _options(self):
        return {"n_categories": self.n_categories}

    def _check_params(self):
        p = self._params["probs"]
        if bool((p < 0).any()):
            raise ValueError("Categorical: probs must be non-negative")
        if not bool(torch.allclose(p.sum(-1), torch.ones((), dtype=p.dtype, device=p.device), atol=1e-8, rtol=0)):
            raise ValueError("Categorical: probs must sum to 1 along the last axis")

    @property
    def conjugate_prior_family(self):
        from probkit.distributions.dirichlet import Dirichlet

        return Dirichlet

    def _validate_support(self, x, name="X"):
        if bool((x != torch.round(x)).any()) or bool((x < 0).any()):
            raise ValueError(f"{name} must hold non-negative integer symbols for Categorical")
        m = self.n_categories
        if m is not None and x.numel() and int(x.max()) >= m:
            raise ValueError(
                f"{name} holds symbol {int(x.max())} but the alphabet has {m} symbols (0 .. {m - 1})"
            )

    def _log_prob(self, x):
        logp = torch.log(self._params["probs"])
        idx = x.long()
        shape = torch.broadcast_shapes(idx.shape, logp.shape[:-1])
        return torch.gather(logp.expand(*shape, logp.shape[-1]), -1, idx.expand(shape).unsqueeze(-1)).squeeze(-1)

    def _sufficient_statistics(self, x):
        m = self.n_categories if self.n_categories is not None else int(x.max()) + 1
        return {"x": torch.nn.functional.one_hot(x.long(), m).to(x.dtype)}

    def _summarize(self, x, w):
        # Scatter-add the weights by symbol instead of forming one-hot rows.
        m = self.n_categories if self.n_categories is not None else int(x.max()) + 1
        n = x.shape[0]
        wb = w.reshape(n, -1)
        counts = torch.zeros(m, wb.shape[1], dtype=w.dtype, device=w.device).index_add_(0, x.long(), wb)
        fields = {"count": w.sum(0), "x": counts.transpose(0, 1).reshape((*w.shape[1:], m))}
        return SufficientStats(type(self).__name__, fields)

    def _n_free_parameters(self):
        return self.n_categories - 1

    def _natural_parameters(self):
        return {"x": torch.log(self._params["probs"]).expand(*self._batch_shape, self.n_categories)}

    @classmethod
    def _params_from_natural(cls, eta, options):
        return {"probs": torch.softmax(eta["x"], dim=-1)}

    def _log_partition(self):
        return torch.logsumexp(torch.log(self._params["probs"]), -1).expand(self._batch_shape)

    def _log_base_measure(self, x):
        return torch.zeros_like(x)

    def _mean_parameters(self):
        return {"x": self._params["probs"].expand(*self._batch_shape, self.n_categories)}

    def _params_from_mean(self, mean, stats=None):
        p = mean["x"]
        return {"probs": p / p.sum(-1, keepdim=True)}

    def _sample(self, shape, gen):
        p = self._params["probs"].expand(*self._batch_shape, self.n_categories).reshape(-1, self.n_categories)
        n = 1
        for s in shape:
            n *= s
        draws = torch.multinomial(p, n, replacement=True, generator=gen)  # (batch, n)
        return draws.transpose(0, 1).reshape((*shape, *self._batch_shape)).to(self.dtype)

    def _entropy(self):
        p = self._params["probs"]
        plogp = torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))
        return (-plogp.sum(-1)).expand(self._batch_shape)

    def _kl(self, other):
        p, q = self._params["probs"], other._params["probs"]
        terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
        return terms.sum(-1)

    # conjugate prior: Dirichlet(concentration) over probs
    def _posterior(self, stats, prior):
        alpha = prior.torch_params()["concentration"]
        return type(prior)(concentration=alpha + stats["x"])

    def _map_params(self, post):
        alpha = post.torch_params()["concentration"]
        mode = torch.clamp(alpha - 1.0, min=0.0)
        total = mode.sum(-1, keepdim=True)
        # All concentrations <= 1: the mode is on the boundary; use the posterior mean there.
        mode = torch.where(total > 0, mode / torch.where(total > 0, total, torch.ones_like(total)),
                           alpha / alpha.sum(-1, keepdim=True))
        return {"probs": mode}

    def _log_marginal_likelihood(self, x, stats, prior):
        alpha = prior._params["concentration"]
        post = alpha + stats["x"]
        return (torch.lgamma(alpha.sum(-1)) - torch.lgamma(post.sum(-1))
                + (torch.lgamma(post) - torch.lgamma(alpha)).sum(-1))
