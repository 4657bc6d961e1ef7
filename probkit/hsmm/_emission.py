"""Emissions of a hidden semi-Markov model from any probkit family.

How a family reads the rows of ``X`` (the convention of ``HMM(emission=...)`` and
``MixtureModel(family=...)``): a scalar family given one column models that column; a
scalar family given several columns is a product over the columns (features independent
given the state), held as one distribution with batch shape ``(K, n_features)``; vector
families (``MultivariateNormal``, ``Multinomial``, ``Dirichlet``, ``Independent``) model
whole rows; matrix families (``Wishart``) read each row as a flattened matrix. The
component models of :mod:`probkit.components` do the batched work.
"""

from __future__ import annotations

import numpy as np
import torch

from probkit.distributions.base import ExponentialFamily
from probkit.distributions.registry import matrix_rows, resolve_family
from probkit.components import BatchedComponents, FeatureProductComponents, map_dist, sample_by_state
from probkit.utils.random import torch_generator

__all__ = ["EmissionFamily"]

# Initial hard assignments are blended with this much uniform weight, so every state
# starts from all of the data (a family fitted to a cluster of equal values is degenerate).
INIT_BLEND = 0.1


class EmissionFamily:
    """One emission family and the way it reads rows of ``X``.

    Parameters
    ----------
    emission : str, ExponentialFamily class or instance
        As ``HMM(emission=...)``.

    Examples
    --------
    >>> import numpy as np
    >>> family = EmissionFamily("poisson")
    >>> X = np.array([[0.0], [1.0], [9.0], [11.0]])
    >>> resp = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> dist = family.initial(X, torch.as_tensor(X), torch.as_tensor(resp), blend=0.0)
    >>> dist.rate
    array([ 0.5, 10. ])
    """

    def __init__(self, emission):
        if emission is None:
            raise ValueError("HSMM needs an emission family, e.g. HSMM(emission='normal') or HSMM(emission=Gamma)")
        self.template = resolve_family(emission)

    @property
    def _event_ndim(self):
        return self.template.event_ndim if isinstance(self.template, ExponentialFamily) else None

    def is_product(self, n_features):
        """Whether a scalar family is applied to each of several columns."""
        return self._event_ndim == 0 and n_features > 1

    def rows(self, x):
        """``x`` (n, n_features) as the family's samples: a vector, the rows, or matrices."""
        if self._event_ndim == 0 and x.shape[1] == 1:
            return x[:, 0]
        if self._event_ndim == 2:
            return matrix_rows(x)
        return x

    def validate(self, X):
        """Raise ``ValueError`` unless every row of ``X`` (numpy, finite) is in the family's support."""
        self.template._validate_support(self.rows(torch.as_tensor(X)), "X")

    def components(self, dist):
        """The component model over a fitted distribution of K states."""
        if len(dist.batch_shape) == 2 and dist.event_ndim == 0:
            return FeatureProductComponents(dist)
        return BatchedComponents(dist)

    def initial(self, X, x, resp, blend=INIT_BLEND):
        """Emission distributions of K states fitted to ``x`` weighted by ``resp`` (n, K), blended with uniform weight."""
        k = resp.shape[1]
        resp = (1 - blend) * resp + blend / k
        template = self.template
        # statistics accumulated about the data's mean keep their digits on data far from 0
        center = torch.as_tensor(X.mean(0), dtype=torch.float64)
        if self._event_ndim == 0 and X.shape[1] == 1:
            center = center[0]
        if self._event_ndim != 2:
            template = template.centered(center)
        if self.is_product(X.shape[1]):
            return FeatureProductComponents.from_responsibilities(template, x, resp).dist
        return BatchedComponents.from_responsibilities(template, self.rows(x), resp).dist

    def on(self, dist, device, dtype):
        """``dist`` with its parameters on ``device`` in ``dtype``."""
        return map_dist(dist, lambda v: v.to(device=device, dtype=dtype))

    def log_prob(self, dist, x):
        """(n, K) log-densities of the rows of ``x`` under the K states."""
        return self.components(dist).log_prob(self.rows(x))

    def summarize(self, dist, x, post):
        """Posterior-weighted sufficient statistics of the K states."""
        return self.components(dist).summarize(self.rows(x), post)

    def refit(self, dist, stats):
        """The M-step: new distributions; a state without weight keeps its parameters (with a warning)."""
        return self.components(dist).refit(stats).dist

    def n_features(self, dist):
        """Columns of ``X`` that ``dist`` models (the width of one of its draws, flattened)."""
        with torch.no_grad():
            draw = self.components(dist).sample_member(0, 1, torch.Generator().manual_seed(0))
        return int(np.prod(draw.shape[1:]))

    def sample(self, dist, states, rng):
        """One row per entry of ``states`` drawn from that state's distribution, (n, n_features) numpy."""
        return sample_by_state(self.components(dist), states, torch_generator(rng))
