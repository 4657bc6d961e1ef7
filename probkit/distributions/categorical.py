"""The categorical distribution over symbols ``0 .. n_categories - 1``."""

from __future__ import annotations

import torch

from probkit.distributions.base import SufficientStats
from probkit.distributions.dirichlet import _DirichletConjugateProbs, _simplex_kl

__all__ = ["Categorical"]


class Categorical(_DirichletConjugateProbs):
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
        return _simplex_kl(self._params["probs"], other._params["probs"])
