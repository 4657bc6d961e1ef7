"""Pyro distributions over whole padded paths: the sample sites of the Pyro programs of
:class:`~probkit.neural.networks.DSSMNet`.

One sample site holds a batch of latent (or observed) paths: batch shape ``(B,)``, event
shape ``(T, n)``; ``log_prob`` sums the valid steps of each path (a mask for ragged
batches) with the network's own densities. Imported only when a deep state-space model
runs its Pyro programs.
"""

from __future__ import annotations

import numpy as np
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

__all__ = ["GuidePath", "LatentPath", "Observations", "Path"]


class Path(TorchDistribution):
    """A distribution over whole padded paths: batch (B,), event (T, n); log_prob sums the valid steps."""

    arg_constraints = {}
    support = constraints.independent(constraints.real, 2)

    def __init__(self, batch, steps, size):
        super().__init__(torch.Size([batch]), torch.Size([steps, size]), validate_args=False)


class LatentPath(Path):
    """Latent paths under the model's transition, ``sum_t log p(z_t | z_{<t})``."""

    def __init__(self, net, mask, lengths):
        self.net, self.mask, self.lengths = net, mask, lengths
        super().__init__(mask.shape[0], mask.shape[1], net.latent_dim)

    def log_prob(self, value):
        return self.net.prior_log_prob(value, self.mask, self.lengths)

    def sample(self, sample_shape=torch.Size()):
        raise NotImplementedError("draw latent paths with DeepStateSpaceModel.sample")


class GuidePath(Path):
    """Latent paths under the amortised guide (reparametrised draws, one step at a time)."""

    has_rsample = True

    def __init__(self, net, a, mask):
        self.net, self.a, self.mask = net, a, mask
        super().__init__(mask.shape[0], mask.shape[1], net.latent_dim)

    def rsample(self, sample_shape=torch.Size()):
        n = int(np.prod(sample_shape)) if len(sample_shape) else 1
        z = self.net.guide_rsample(self.a, n)
        return z.reshape(*sample_shape, *z.shape[1:]) if len(sample_shape) else z[0]

    def log_prob(self, value):
        return self.net.guide_log_prob(value, self.a, self.mask)


class Observations(Path):
    """Observed paths given a latent path, ``sum_t log p(x_t | z_t)``."""

    def __init__(self, net, z, mask):
        self.net, self.z, self.mask = net, z, mask
        super().__init__(mask.shape[0], mask.shape[1], net.n_features)

    def log_prob(self, value):
        return self.net.emission_log_prob(self.z, value, self.mask)
