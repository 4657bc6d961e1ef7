"""Emission heads of neural HMMs: backbone features -> per-state parameters of a distribution family.

A head turns features ``h`` of shape ``(..., d_model)`` into the parameters of ``K``
emission distributions (one per hidden state) of a :mod:`probkit.distributions` family,

.. math::

   \\theta_k(h) = \\theta_k^{\\mathrm{static}} + W_k h ,

i.e. learned per-state *static* parameters (those of a classical HMM) plus a linear map
of the features, in an unconstrained parametrisation (log-scale, log-rate, logits).
The linear map starts at zero, so a fresh head -- or one whose features are constant
zero -- *is* the classical HMM with the static parameters, and a head initialised
from a fitted classical HMM (:meth:`EmissionHead.set_static`) starts from its solution.

* :class:`GaussianEmission` -- real vectors ``(D,)``; static ``loc`` and ``log_scale``
  ``(K, D)``; diagonal :class:`~probkit.distributions.Normal` densities.
* :class:`PoissonEmission` -- count vectors ``(D,)``; static ``log_rate`` ``(K, D)``;
  :class:`~probkit.distributions.Poisson` densities.
* :class:`CategoricalEmission` -- one symbol in ``[0, V)``; static ``logits`` ``(K, V)``;
  categorical log-probabilities.

All learnable work happens in ``forward`` (so ``DistributedDataParallel`` sees it);
``log_prob``, ``select`` and ``sample`` are parameter-free functions of its output.
The log-densities come from the families' tensor cores, which broadcast over the batch
shape ``(..., K)``: ``Normal(loc=(B, T, K, D), ...)._log_prob(x[..., None, :])``. The
categorical head evaluates ``log_softmax`` directly (``Categorical`` takes
probabilities, whose logarithm loses the precision of very small probabilities).

Examples
--------
>>> import torch
>>> head = make_emission("gaussian", d_model=8, n_components=3, n_outputs=2)
>>> params = head(torch.randn(4, 5, 8))            # (B, T, d_model) -> per-state parameters
>>> params["loc"].shape
torch.Size([4, 5, 3, 2])
>>> head.log_prob(params, torch.zeros(4, 5, 2)).shape  # (B, T, K)
torch.Size([4, 5, 3])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from probkit.distributions import Categorical, Normal, Poisson
from probkit.utils.validation import check_int

__all__ = ["EMISSIONS", "CategoricalEmission", "EmissionHead", "GaussianEmission", "PoissonEmission",
           "make_emission"]

#: Emission names accepted by :func:`make_emission` (and ``NeuralHMM(emission=...)``).
EMISSIONS = ("gaussian", "poisson", "categorical")

_LOG_MIN_SCALE = math.log(1e-3)
_MAX_LOG = 20.0


class EmissionHead(nn.Module):
    """Base class: static per-state parameters plus a zero-initialised linear map of the features.

    Subclasses set ``_fields`` (name -> trailing shape of the static tensor ``(K, n)``)
    and implement ``_constrain``, ``log_prob``, ``sample`` and ``distribution``.

    Parameters
    ----------
    d_model : int
        Width of the features.
    n_components : int
        Number of hidden states ``K``.
    n_outputs : int
        Features per observation ``D`` (Gaussian, Poisson) or alphabet size ``V``
        (categorical).

    Examples
    --------
    >>> import torch
    >>> head = PoissonEmission(d_model=4, n_components=2, n_outputs=1)
    >>> head.set_static(log_rate=torch.log(torch.tensor([[1.0], [5.0]])))
    >>> rate = head(torch.randn(3, 4))["rate"]     # the linear map starts at zero
    >>> rate.shape, [round(r, 4) for r in rate[0, :, 0].tolist()]
    (torch.Size([3, 2, 1]), [1.0, 5.0])
    """

    family = ""
    _fields: tuple = ()

    def __init__(self, d_model, n_components, n_outputs):
        super().__init__()
        self.d_model = check_int(d_model, "d_model")
        self.n_components = check_int(n_components, "n_components")
        self.n_outputs = check_int(n_outputs, "n_outputs")
        k, n = self.n_components, self.n_outputs
        self.static = nn.ParameterDict({name: nn.Parameter(torch.zeros(k, n)) for name in self._fields})
        self.proj = nn.Linear(self.d_model, len(self._fields) * k * n)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def extra_repr(self):
        return f"d_model={self.d_model}, n_components={self.n_components}, n_outputs={self.n_outputs}"

    def raw(self, h):
        """Unconstrained per-state parameters ``{name: (..., K, n)}``: static part plus ``W h``."""
        k, n = self.n_components, self.n_outputs
        out = self.proj(h).unflatten(-1, (len(self._fields), k, n))
        return {name: self.static[name].to(out.dtype) + out[..., i, :, :] for i, name in enumerate(self._fields)}

    def forward(self, h):
        """Constrained per-state parameters from features ``h`` of shape ``(..., d_model)``."""
        return self._constrain(self.raw(h))

    def set_static(self, **values):
        """Set the static (feature-independent) parameters, in the unconstrained parametrisation."""
        unknown = set(values) - set(self._fields)
        if unknown:
            raise ValueError(f"{type(self).__name__} has no static parameters {sorted(unknown)}; "
                             f"it has {list(self._fields)}")
        with torch.no_grad():
            for name, value in values.items():
                target = self.static[name]
                value = torch.as_tensor(value, dtype=target.dtype, device=target.device)
                if value.shape != target.shape:
                    raise ValueError(f"{name} must have shape {tuple(target.shape)}, got {tuple(value.shape)}")
                target.copy_(value)

    @staticmethod
    def select(params, states):
        """Parameters of the state ``states[b]`` of each row: ``(B, K, ...) -> (B, ...)``."""
        rows = torch.arange(states.shape[0], device=states.device)
        return {name: p[rows, states] for name, p in params.items()}


class GaussianEmission(EmissionHead):
    """Diagonal Gaussian emissions: ``loc`` and ``scale = exp(log_scale)`` per state and feature.

    ``log_scale`` is clamped below at ``log(1e-3)`` (a variance floor in the model's
    standardised units).

    Examples
    --------
    >>> import torch
    >>> head = GaussianEmission(d_model=4, n_components=2, n_outputs=1)
    >>> params = head(torch.zeros(1, 4))
    >>> round(head.log_prob(params, torch.zeros(1, 1))[0, 0].item(), 4)   # N(0, 1) at 0
    -0.9189
    """

    family = "gaussian"
    _fields = ("loc", "log_scale")

    def _constrain(self, raw):
        return {"loc": raw["loc"], "scale": torch.exp(raw["log_scale"].clamp(_LOG_MIN_SCALE, _MAX_LOG))}

    def log_prob(self, params, x):
        """``log p(x | state k)`` of shape ``(..., K)`` for ``x`` of shape ``(..., D)``."""
        return Normal(loc=params["loc"], scale=params["scale"])._log_prob(x.unsqueeze(-2)).sum(-1)

    def sample(self, params, generator=None):
        """One draw ``(..., D)`` from parameters already selected per row (:meth:`select`)."""
        loc, scale = params["loc"], params["scale"]
        return loc + scale * torch.randn(loc.shape, dtype=loc.dtype, device=loc.device, generator=generator)

    def mean(self, params):
        """Expected observation per state."""
        return params["loc"]

    def distribution(self, params):
        """The parameters as a :class:`probkit.distributions.Normal` (batch shape ``(..., K, D)``)."""
        return Normal(loc=params["loc"].detach(), scale=params["scale"].detach())


class PoissonEmission(EmissionHead):
    """Independent Poisson counts: ``rate = exp(log_rate)`` per state and feature.

    Examples
    --------
    >>> import torch
    >>> head = PoissonEmission(d_model=4, n_components=1, n_outputs=1)
    >>> round(head.log_prob(head(torch.zeros(4)), torch.tensor([0.0])).item(), 4)   # rate 1: log P(0) = -1
    -1.0
    """

    family = "poisson"
    _fields = ("log_rate",)

    def _constrain(self, raw):
        return {"rate": torch.exp(raw["log_rate"].clamp(-_MAX_LOG, _MAX_LOG))}

    def log_prob(self, params, x):
        """``log p(x | state k)`` of shape ``(..., K)`` for counts ``x`` of shape ``(..., D)``."""
        return Poisson(rate=params["rate"])._log_prob(x.unsqueeze(-2)).sum(-1)

    def sample(self, params, generator=None):
        """One draw ``(..., D)`` of counts (as floats) from selected parameters."""
        return torch.poisson(params["rate"], generator=generator)

    def mean(self, params):
        """Expected counts per state."""
        return params["rate"]

    def distribution(self, params):
        """The parameters as a :class:`probkit.distributions.Poisson` (batch shape ``(..., K, D)``)."""
        return Poisson(rate=params["rate"].detach())


class CategoricalEmission(EmissionHead):
    """One symbol per step from ``softmax(logits)`` over an alphabet of ``n_outputs`` symbols.

    Examples
    --------
    >>> import torch
    >>> head = CategoricalEmission(d_model=4, n_components=2, n_outputs=3)
    >>> params = head(torch.zeros(4))
    >>> params["log_probs"].exp().sum(-1)
    tensor([1.0000, 1.0000], grad_fn=<SumBackward1>)
    """

    family = "categorical"
    _fields = ("logits",)

    def _constrain(self, raw):
        return {"log_probs": torch.log_softmax(raw["logits"], dim=-1)}

    def log_prob(self, params, x):
        """``log p(x | state k)`` of shape ``(..., K)`` for integer symbols ``x`` of shape ``(...)``."""
        logp = params["log_probs"]
        idx = x.long().unsqueeze(-1).unsqueeze(-1).expand(*logp.shape[:-1], 1)
        return torch.gather(logp, -1, idx).squeeze(-1)

    def sample(self, params, generator=None):
        """One symbol per row (int64) from selected parameters ``(B, V)``."""
        return torch.multinomial(params["log_probs"].exp(), 1, generator=generator).squeeze(-1)

    def mean(self, params):
        """Symbol probabilities per state."""
        return params["log_probs"].exp()

    def distribution(self, params):
        """The parameters as a :class:`probkit.distributions.Categorical` (float64 probabilities)."""
        probs = F.softmax(params["log_probs"].detach().double(), dim=-1)
        return Categorical(probs=probs)


_HEADS = {"gaussian": GaussianEmission, "poisson": PoissonEmission, "categorical": CategoricalEmission}


def make_emission(name, d_model, n_components, n_outputs):
    """Build the emission head called ``name`` (one of :data:`EMISSIONS`).

    Parameters
    ----------
    name : {"gaussian", "poisson", "categorical"}
    d_model : int
    n_components : int
        Hidden states.
    n_outputs : int
        Features per step (Gaussian, Poisson) or alphabet size (categorical).

    Returns
    -------
    EmissionHead

    Examples
    --------
    >>> type(make_emission("poisson", 8, 2, 3)).__name__
    'PoissonEmission'
    >>> make_emission("student", 8, 2, 3)
    Traceback (most recent call last):
    ...
    ValueError: unknown emission 'student'; choose one of gaussian, poisson, categorical
    """
    if not isinstance(name, str) or name.lower() not in _HEADS:
        raise ValueError(f"unknown emission {name!r}; choose one of {', '.join(EMISSIONS)}")
    return _HEADS[name.lower()](d_model, n_components, n_outputs)
