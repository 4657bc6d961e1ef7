"""The network of the variational autoencoders: encoder and decoder MLPs, Pyro's ELBO, and their options.

:class:`VAENet` is the torch module of :class:`~probkit.neural.VAE`; the sequence network
of :class:`~probkit.neural.SequenceVAE` is built on it. Pyro is imported with this module.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ELBOS", "LIKELIHOODS", "NOISE_TYPES", "VAENet", "mlp"]

LIKELIHOODS = ("gaussian", "bernoulli", "categorical")
NOISE_TYPES = ("isotropic", "diagonal")
ELBOS = ("TraceMeanField_ELBO", "Trace_ELBO")
_MIN_SCALE = 1e-4


def _softplus_inv(y):
    return math.log(math.expm1(y))


def mlp(n_in, widths, n_out):
    """Linear layers of the given hidden ``widths`` with SiLU between them (no hidden layer: one linear map)."""
    layers, size = [], n_in
    for width in widths:
        layers += [nn.Linear(size, width), nn.SiLU()]
        size = width
    layers.append(nn.Linear(size, n_out))
    return nn.Sequential(*layers)


class VAENet(nn.Module):
    """The torch module of :class:`~probkit.neural.VAE`: decoder (model), encoder (guide), Pyro's ELBO as ``forward``.

    Parameters
    ----------
    n_inputs : int
        Encoder input size (``n_features``, or ``n_features * n_categories`` one-hot inputs).
    n_features : int
        Observation size ``D``.
    n_components : int
        Latent size.
    likelihood : {"gaussian", "bernoulli", "categorical"}
        Distribution of each observed feature given its decoder output.
    encoder_layers, decoder_layers : tuple of int
        Hidden widths of the two MLPs (empty: linear maps).
    noise : {"isotropic", "diagonal"}
        Gaussian noise variance: one shared by the features, or one per feature.
    n_categories : int
        Values per feature (categorical likelihood).
    elbo : {"TraceMeanField_ELBO", "Trace_ELBO"}
        Pyro's ELBO estimator of the training loss.
    n_particles : int
        Guide draws per ELBO estimate in training.

    Examples
    --------
    >>> import torch
    >>> net = VAENet(3, 3, 2, "gaussian", (8,), (8,))
    >>> x = torch.randn(5, 3)
    >>> net.log_weights(x, x, torch.randn(4, 2)).shape     # log p(x, z_k) - log q(z_k | x)
    torch.Size([4, 5])
    >>> net(x, x).requires_grad                            # Pyro's negative ELBO, summed over rows
    True
    """

    def __init__(self, n_inputs, n_features, n_components, likelihood, encoder_layers=(), decoder_layers=(), *,
                 noise="diagonal", n_categories=2, elbo="TraceMeanField_ELBO", n_particles=1):
        super().__init__()
        self._init_observation_model(n_features, n_components, likelihood, n_categories, elbo, n_particles)
        self.encoder = mlp(int(n_inputs), tuple(encoder_layers), 2 * self.n_components)
        self.decoder = mlp(self.n_components, tuple(decoder_layers), self.n_features * self.n_categories)
        self._init_noise(noise)

    def _init_observation_model(self, n_features, n_components, likelihood, n_categories, elbo, n_particles):
        """Sizes, likelihood and ELBO options, shared with the sequence networks built on this class."""
        self.n_features, self.n_components, self.likelihood = int(n_features), int(n_components), likelihood
        self.n_categories = int(n_categories) if likelihood == "categorical" else 1
        self.elbo, self.n_particles = elbo, int(n_particles)

    def _init_noise(self, noise):
        if self.likelihood == "gaussian":
            size = 1 if noise == "isotropic" else self.n_features
            self.noise_raw = nn.Parameter(torch.full((size,), _softplus_inv(0.5)))

    def _encoder_output(self, x_in, lengths=None):
        """The encoder's ``2 * n_components`` outputs: raw means and scales."""
        return self.encoder(x_in)

    def encode(self, x_in, lengths=None):
        """Mean and scale of ``q(z | x)``: two (..., n_components) tensors."""
        loc, raw = self._encoder_output(x_in, lengths).chunk(2, -1)
        return loc, F.softplus(raw) + _MIN_SCALE

    def noise_scale(self):
        """Standard deviation of the Gaussian observation noise, (1,) or (n_features,)."""
        return F.softplus(self.noise_raw) + _MIN_SCALE

    def decode(self, z):
        """Decoder output: Gaussian means or Bernoulli logits (..., D), categorical logits (..., D, C)."""
        out = self.decoder(z)
        if self.likelihood == "categorical":
            out = out.reshape(*out.shape[:-1], self.n_features, self.n_categories)
        return out

    def _elementwise_dist(self, out):
        """The likelihood of each observed value given the decoder output ``out``, as a Pyro distribution."""
        if self.likelihood == "gaussian":
            return dist.Normal(out, self.noise_scale().to(out.dtype).expand(out.shape), validate_args=False)
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out, validate_args=False)
        return dist.Categorical(logits=out, validate_args=False)

    def observation_dist(self, z, x_in=None, lengths=None):
        """``p(x | z)`` as a Pyro distribution with event shape (D,) (``x_in`` and ``lengths``: unused here)."""
        return self._elementwise_dist(self.decode(z)).to_event(1)

    def log_weights(self, x_in, x_obs, eps, lengths=None):
        """``log p(x, z_k) - log q(z_k | x)``, ``z_k = mu(x) + s(x) * eps_k``: (K, B) for ``eps`` (K, n_components)."""
        loc, scale = self.encode(x_in, lengths)
        z = loc + scale * eps[:, None, :]
        prior = dist.Normal(torch.zeros_like(loc), 1.0).to_event(1)
        guide = dist.Normal(loc, scale).to_event(1)
        return self.observation_dist(z, x_in, lengths).log_prob(x_obs) + prior.log_prob(z) - guide.log_prob(z)

    # ------------------------------------------------------------------ Pyro programs
    def model(self, x_in, x_obs, lengths=None):
        """The generative model as a Pyro program (observations ``x_obs``; ``lengths``: valid steps)."""
        loc = x_obs.new_zeros(x_obs.shape[0], self.n_components, dtype=next(self.parameters()).dtype)
        with pyro.plate("rows", x_obs.shape[0]):
            z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
            pyro.sample("x", self.observation_dist(z, x_in, lengths), obs=x_obs)

    def guide(self, x_in, x_obs, lengths=None):
        """The amortised guide (encoder) as a Pyro program."""
        loc, scale = self.encode(x_in, lengths)
        with pyro.plate("rows", x_in.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def forward(self, x_in, x_obs, lengths=None):
        """Pyro's negative ELBO of the batch (summed over rows), differentiable."""
        from probkit.vi import make_elbo

        elbo = make_elbo(self.elbo, num_particles=self.n_particles, max_plate_nesting=1)
        return elbo.differentiable_loss(self.model, self.guide, x_in, x_obs, lengths)
