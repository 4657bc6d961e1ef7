"""Output heads: map backbone features to the parameters of a predictive distribution.

A head is a ``torch.nn.Module`` with one linear layer. Its ``forward(h)`` turns features
``h`` of shape ``(..., d_model)`` into a *raw output* tensor ``(..., n_params)``; every
other method (``log_prob``, ``sample``, ``mean``, ``mode``) is a parameter-free function
of that raw output. Keeping all learnable work inside ``forward`` means a model wrapped
in ``DistributedDataParallel`` synchronises the head's gradients like every other
parameter.

=============================  ==========================  ==============================
head                           target ``y``                raw output per position
=============================  ==========================  ==============================
:class:`CategoricalHead`       integer class in ``[0, C)``  ``C`` logits
:class:`GaussianHead`          real vector ``(D,)``         ``D`` means, ``D`` raw scales
:class:`MixtureGaussianHead`   real vector ``(D,)``         ``K`` logits, ``K*D`` means,
                                                            ``K*D`` raw scales
=============================  ==========================  ==============================

Scales are ``softplus(raw) + min_scale``; the Gaussian heads are diagonal.

Examples
--------
>>> import torch
>>> head = GaussianHead(d_model=8, n_outputs=2)
>>> out = head(torch.zeros(4, 8))
>>> head.log_prob(out, torch.zeros(4, 2)).shape
torch.Size([4])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from probkit.utils._docstrings import DocFragments
from probkit.utils.validation import check_int

__all__ = ["CategoricalHead", "GaussianHead", "MixtureGaussianHead", "make_head"]

_LOG_2PI = math.log(2.0 * math.pi)

# the heads' parameters, each rendered where a head's __init__ takes it
_DOCS = DocFragments(parameters={"head_params": [
    """d_model : int
    Feature size of the input.""",
    """n_classes : int
    Number of classes (or vocabulary size).""",
    """n_outputs : int
    Dimension ``D`` of the target vector.""",
    """n_components : int, default=$n_components
    Number of mixture components ``K``.""",
    """min_scale : float, default=$min_scale
    Lower bound of the standard deviations (``softplus(raw) + min_scale``).""",
    """learn_scale : bool, default=$learn_scale
    False fixes every standard deviation to 1 (the raw output is then the means
    alone, and ``-log_prob`` is half the squared error plus a constant).""",
]})


def _wide(t):
    """Half-precision outputs (autocast) are widened to float32 for the likelihood computations."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _check_temperature(temperature):
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    return float(temperature)


@_DOCS.fill
class CategoricalHead(nn.Module):
    """Categorical distribution over ``n_classes`` symbols (logits from a linear layer).

    Parameters
    ----------
    %(head_params)s

    Examples
    --------
    >>> import torch
    >>> head = CategoricalHead(4, 3)
    >>> out = head(torch.randn(2, 5, 4))           # (batch, time, d_model)
    >>> out.shape
    torch.Size([2, 5, 3])
    >>> head.log_prob(out, torch.zeros(2, 5, dtype=torch.long)).shape
    torch.Size([2, 5])
    >>> bool(torch.allclose(head.probs(out).sum(-1), torch.ones(2, 5)))
    True
    """

    def __init__(self, d_model, n_classes):
        super().__init__()
        self.d_model = check_int(d_model, "d_model")
        self.n_classes = check_int(n_classes, "n_classes")
        self.proj = nn.Linear(d_model, n_classes)

    @property
    def n_params(self):
        """Size of the raw output per position."""
        return self.n_classes

    def forward(self, h):
        """Logits ``(..., n_classes)`` from features ``(..., d_model)``."""
        return self.proj(h)

    def log_prob(self, out, y):
        """``log p(y)`` for integer targets ``y`` of shape ``out.shape[:-1]``."""
        logp = F.log_softmax(_wide(out), dim=-1)
        return logp.gather(-1, y.long().unsqueeze(-1)).squeeze(-1)

    def probs(self, out, temperature=1.0):
        """Class probabilities ``(..., n_classes)``, optionally tempered (``softmax(logits / T)``)."""
        t = _check_temperature(temperature)
        return F.softmax(_wide(out) / t, dim=-1)

    def sample(self, out, *, temperature=1.0, generator=None):
        """Draw classes ``(...)`` from ``softmax(logits / temperature)``."""
        p = self.probs(out, temperature).float()
        flat = p.reshape(-1, p.shape[-1])
        draws = torch.multinomial(flat, 1, generator=generator).squeeze(-1)
        return draws.reshape(p.shape[:-1])

    def mode(self, out):
        """The most probable class."""
        return out.argmax(-1)

    def mean(self, out):
        """Class probabilities (the mean of the one-hot encoding)."""
        return self.probs(out)


@_DOCS.fill
class GaussianHead(nn.Module):
    """Diagonal Gaussian over ``n_outputs`` real values.

    Parameters
    ----------
    %(head_params)s

    Examples
    --------
    >>> import torch
    >>> head = GaussianHead(4, 2)
    >>> out = head(torch.randn(3, 4))
    >>> head.mean(out).shape, head.scale(out).shape
    (torch.Size([3, 2]), torch.Size([3, 2]))
    >>> head.sample(out, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 2])
    """

    def __init__(self, d_model, n_outputs, min_scale=1e-3, learn_scale=True):
        super().__init__()
        self.d_model = check_int(d_model, "d_model")
        self.n_outputs = check_int(n_outputs, "n_outputs")
        if not min_scale > 0:
            raise ValueError(f"min_scale must be positive, got {min_scale!r}")
        self.min_scale = float(min_scale)
        self.learn_scale = bool(learn_scale)
        self.proj = nn.Linear(d_model, self.n_params)

    @property
    def n_params(self):
        """Size of the raw output per position."""
        return (2 if self.learn_scale else 1) * self.n_outputs

    def forward(self, h):
        """Raw output ``(..., 2 * n_outputs)``: means, then raw scales (means only without ``learn_scale``)."""
        return self.proj(h)

    def mean(self, out):
        """Means ``(..., n_outputs)``."""
        return out[..., : self.n_outputs]

    mode = mean

    def scale(self, out):
        """Standard deviations ``(..., n_outputs)``."""
        if not self.learn_scale:
            return torch.ones_like(out[..., : self.n_outputs])
        return F.softplus(out[..., self.n_outputs:]) + self.min_scale

    def log_prob(self, out, y):
        """``log N(y | mean, diag(scale^2))`` summed over the ``n_outputs`` dimensions."""
        out = _wide(out)
        mu, sigma = self.mean(out), self.scale(out)
        z = (y - mu) / sigma
        return (-0.5 * z * z - torch.log(sigma) - 0.5 * _LOG_2PI).sum(-1)

    def sample(self, out, *, temperature=1.0, generator=None):
        """Draw ``mean + temperature * scale * eps`` with ``eps ~ N(0, I)``."""
        t = _check_temperature(temperature)
        mu, sigma = self.mean(out), self.scale(out)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + t * sigma * eps


@_DOCS.fill
class MixtureGaussianHead(nn.Module):
    """Mixture of ``n_components`` diagonal Gaussians over ``n_outputs`` real values.

    Parameters
    ----------
    %(head_params)s

    Examples
    --------
    >>> import torch
    >>> head = MixtureGaussianHead(4, 1, n_components=3)
    >>> out = head(torch.randn(6, 4))
    >>> out.shape                                  # 3 logits + 3 means + 3 scales
    torch.Size([6, 9])
    >>> head.log_prob(out, torch.zeros(6, 1)).shape
    torch.Size([6])
    """

    def __init__(self, d_model, n_outputs, n_components=5, min_scale=1e-3):
        super().__init__()
        self.d_model = check_int(d_model, "d_model")
        self.n_outputs = check_int(n_outputs, "n_outputs")
        self.n_components = check_int(n_components, "n_components")
        if not min_scale > 0:
            raise ValueError(f"min_scale must be positive, got {min_scale!r}")
        self.min_scale = float(min_scale)
        self.proj = nn.Linear(d_model, n_components * (1 + 2 * n_outputs))
        with torch.no_grad():  # spread the initial means so the components are not identical
            k, d = n_components, n_outputs
            bias = self.proj.bias.view(-1)
            bias[k:k + k * d] = torch.linspace(-1.0, 1.0, k).repeat_interleave(d) if k > 1 else 0.0

    @property
    def n_params(self):
        """Size of the raw output per position."""
        return self.n_components * (1 + 2 * self.n_outputs)

    def forward(self, h):
        """Raw output ``(..., K * (1 + 2 D))``: logits, means, raw scales."""
        return self.proj(h)

    def _split(self, out):
        k, d = self.n_components, self.n_outputs
        logits = out[..., :k]
        mu = out[..., k:k + k * d].unflatten(-1, (k, d))
        sigma = F.softplus(out[..., k + k * d:].unflatten(-1, (k, d))) + self.min_scale
        return logits, mu, sigma

    def weights(self, out):
        """Mixture weights ``(..., K)``."""
        return F.softmax(self._split(out)[0], dim=-1)

    def log_prob(self, out, y):
        """``log sum_k w_k N(y | mu_k, diag(sigma_k^2))``."""
        logits, mu, sigma = self._split(_wide(out))
        z = (y.unsqueeze(-2) - mu) / sigma
        comp = (-0.5 * z * z - torch.log(sigma) - 0.5 * _LOG_2PI).sum(-1)
        return torch.logsumexp(F.log_softmax(logits, dim=-1) + comp, dim=-1)

    def mean(self, out):
        """Mixture mean ``sum_k w_k mu_k``."""
        logits, mu, _ = self._split(out)
        return (F.softmax(logits, dim=-1).unsqueeze(-1) * mu).sum(-2)

    def mode(self, out):
        """Mean of the most probable component (an approximation of the mode)."""
        logits, mu, _ = self._split(out)
        idx = logits.argmax(-1)
        return mu.gather(-2, idx[..., None, None].expand(*idx.shape, 1, self.n_outputs)).squeeze(-2)

    def sample(self, out, *, temperature=1.0, generator=None):
        """Pick a component from ``softmax(logits / T)``, then draw it with scales times ``T``."""
        t = _check_temperature(temperature)
        logits, mu, sigma = self._split(out)
        p = F.softmax(logits.float() / t, dim=-1)
        k = torch.multinomial(p.reshape(-1, self.n_components), 1, generator=generator).reshape(p.shape[:-1])
        index = k[..., None, None].expand(*k.shape, 1, self.n_outputs)
        mu_k, sigma_k = mu.gather(-2, index).squeeze(-2), sigma.gather(-2, index).squeeze(-2)
        eps = torch.randn(mu_k.shape, generator=generator, device=mu_k.device, dtype=mu_k.dtype)
        return mu_k + t * sigma_k * eps


def make_head(kind, d_model, n_outputs, *, n_components=5, min_scale=1e-3):
    """Build a head by name.

    Parameters
    ----------
    kind : {"categorical", "gaussian", "mixture"}
    d_model : int
    n_outputs : int
        Number of classes (categorical) or target dimension (Gaussian heads).
    n_components : int, default=5
        Mixture components (``kind="mixture"`` only).
    min_scale : float, default=1e-3
        Smallest standard deviation (Gaussian heads).

    Returns
    -------
    torch.nn.Module

    Examples
    --------
    >>> type(make_head("mixture", 16, 2, n_components=4)).__name__
    'MixtureGaussianHead'
    """
    if kind == "categorical":
        return CategoricalHead(d_model, n_outputs)
    if kind == "gaussian":
        return GaussianHead(d_model, n_outputs, min_scale=min_scale)
    if kind == "mixture":
        return MixtureGaussianHead(d_model, n_outputs, n_components=n_components, min_scale=min_scale)
    raise ValueError(f"head must be 'categorical', 'gaussian' or 'mixture', got {kind!r}")
