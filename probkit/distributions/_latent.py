"""Statistics of families fitted by EM through a latent-variable representation.

Student t (latent Gamma precision scales), Laplace (latent normal variances) and the
negative binomial (latent Poisson rates) are not exponential families, but their
complete-data models are. Their statistics are the weighted sums of the *expected*
complete-data statistics given the data under the distribution's current parameters, one
value per sample and batch member; ``from_stats`` is then the M-step of EM.
"""

from __future__ import annotations

import torch

from probkit.distributions.base import SufficientStats


def summarize_expected_statistics(dist, x, w):
    """Weighted sums of ``dist._sufficient_statistics`` evaluated for every sample and batch member.

    Parameters
    ----------
    dist : ExponentialFamily
        A distribution with parameters whose ``_sufficient_statistics(x)`` takes ``x``
        broadcast against the batch and returns fields of shape ``(n, *batch_shape, ...)``.
    x : torch.Tensor of shape (n, *event_shape)
    w : torch.Tensor of shape (n,) or (n, *batch_shape)
        Sample weights, or one weight per sample and batch member (responsibilities).

    Returns
    -------
    SufficientStats
        With a ``"count"`` field of the batch shape and ``dist._stats_meta()``.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.distributions import StudentT
    >>> d = StudentT(df=[3.0, 30.0], loc=0.0, scale=1.0)
    >>> x = torch.tensor([0.0, 10.0], dtype=torch.float64)
    >>> stats = summarize_expected_statistics(d, x, torch.ones(2, dtype=torch.float64))
    >>> np.round(stats["u"].numpy(), 3)   # 4/3 + 4/103 under df = 3, 31/30 + 31/130 under df = 30
    array([1.372, 1.272])
    """
    n = x.shape[0]
    batch = tuple(dist._batch_shape)
    stats = dist._sufficient_statistics(x.reshape(n, *([1] * len(batch)), *x.shape[1:]))
    wb = w.reshape(n, *w.shape[1:], *([1] * (len(batch) - (w.ndim - 1))))
    fields = {"count": wb.expand(n, *batch).sum(0)}
    for name, t in stats.items():
        fields[name] = (wb.reshape(wb.shape + (1,) * (t.ndim - wb.ndim)) * t).sum(0)
    return SufficientStats(type(dist).__name__, fields, dist._stats_meta())


class ExpectedStatisticsMixin:
    """``summarize`` and ``sufficient_statistics`` of a family with expected complete-data statistics.

    With parameters (and ``latent_statistics`` true) the statistics are expectations under
    the current parameters, one per sample and batch member; without parameters the
    family's own start statistics are summed as usual.
    """

    latent_statistics = True

    def _uses_expectations(self):
        return self.is_fitted and self.latent_statistics

    def _summarize(self, x, w):
        if self._uses_expectations():
            return summarize_expected_statistics(self, x, w)
        return super()._summarize(x, w)

    def sufficient_statistics(self, X):
        """Per-sample statistics: with parameters, the expected complete-data statistics of every
        sample under every batch member, shape ``(n, *batch_shape, ...)``.

        Examples
        --------
        >>> import numpy as np
        >>> from probkit.distributions import Laplace
        >>> Laplace(loc=[0.0, 1.0], scale=1.0).sufficient_statistics(np.array([2.0, 3.0]))["abs_dev"]
        array([[2., 1.],
               [3., 2.]])
        """
        x = self._prepare_X(X)
        if self._uses_expectations():
            x = x.reshape(x.shape[0], *([1] * len(self._batch_shape)), *x.shape[1:])
        return {k: self._out(v, X) for k, v in self._sufficient_statistics(x).items()}
