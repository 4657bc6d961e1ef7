"""Shared pieces of the backbone layers: the layer protocol, RMSNorm, argument checks.

Every layer of a :class:`probkit.neural.backbones.Backbone` is a :class:`SequenceLayer`:
a pre-norm residual block that maps the residual stream ``(batch, L, d_model)`` to a new
residual stream of the same shape, and (for causal layers) has a recurrent form
``step(x_t, state) -> (y_t, new_state)`` working on one position ``(batch, d_model)`` at a
time.  A layer's state is a tuple of tensors, each with the batch on dimension 0, so
states can be indexed, concatenated or reordered along the batch with plain tensor ops.
"""

from __future__ import annotations

import abc
import math

import torch
from torch import nn

from ._docs import LAYER_DOCS

__all__ = ["RMSNorm", "SequenceLayer", "make_norm"]

NORMS = ("rms", "layer")


class RMSNorm(nn.Module):
    r"""Root-mean-square normalisation over the last dimension with a learned scale.

    ``y = x / sqrt(mean(x ** 2) + eps) * weight`` (no centring, no bias).

    Parameters
    ----------
    d_model : int
        Size of the last dimension.
    eps : float, default 1e-6
        Added to the mean square before the square root.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import RMSNorm
    >>> norm = RMSNorm(4)
    >>> y = norm(torch.tensor([[3.0, -3.0, 3.0, -3.0]]))
    >>> torch.allclose(y, torch.tensor([[1.0, -1.0, 1.0, -1.0]]), atol=1e-5)
    True
    """

    def __init__(self, d_model, eps=1e-6):
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return x * scale * self.weight

    def extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}"


def make_norm(norm, d_model, eps=1e-6):
    """A normalisation over the last dimension: ``"rms"`` (:class:`RMSNorm`, the default of
    every layer) or ``"layer"`` (:class:`torch.nn.LayerNorm` with a bias, as in GPT-2 and RWKV).

    Examples
    --------
    >>> from probkit.neural.layers import make_norm
    >>> norm = make_norm("layer", 4, eps=1e-5)
    >>> type(norm).__name__, norm.eps, norm.bias.shape
    ('LayerNorm', 1e-05, torch.Size([4]))
    """
    if norm == "rms":
        return RMSNorm(d_model, eps=eps)
    if norm == "layer":
        return nn.LayerNorm(d_model, eps=eps)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


@LAYER_DOCS.fill
class SequenceLayer(nn.Module, metaclass=abc.ABCMeta):
    """Base class of the backbone layers (pre-norm residual blocks).

    Subclasses implement ``forward(x, lengths=None, return_state=False)`` on
    ``(batch, L, d_model)`` inputs and, when ``causal`` is true, ``init_state`` and ``step``;
    running ``step`` over the positions of a sequence from ``init_state`` gives the same
    outputs as ``forward`` on the whole sequence, and ``forward(..., return_state=True)``
    also returns the state after the last position (to continue with ``step``).

    Parameters
    ----------
    %(d_model)s

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import GRULayer
    >>> layer = GRULayer(8)
    >>> isinstance(layer, SequenceLayer), layer.causal
    (True, True)
    """

    #: whether the output at position t depends only on inputs at positions <= t
    causal = True

    def __init__(self, d_model):
        super().__init__()
        self.d_model = int(d_model)

    def _device_dtype(self, device, dtype):
        """``device``/``dtype`` for a new state, defaulting to those of the parameters."""
        ref = next(self.parameters(), None)
        if device is None:
            device = ref.device if ref is not None else torch.device("cpu")
        if dtype is None:
            dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        return device, dtype

    @abc.abstractmethod
    def init_state(self, batch_size, device=None, dtype=None):
        """Return the state before the first position: a tuple of batch-first tensors."""

    @abc.abstractmethod
    def step(self, x_t, state):
        """Process one position: ``x_t`` is ``(batch, d_model)``; return ``(y_t, new_state)``."""


def check_dropout(p):
    """Return ``p`` as a float in [0, 1), raising ``ValueError`` otherwise."""
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return p


def inverse_softplus(y):
    """``x`` with ``softplus(x) = y`` for ``y > 0``, computed stably as ``y + log(-expm1(-y))``."""
    return y + torch.log(-torch.expm1(-y))


def log_uniform_(tensor, low, high, generator=None):
    """Fill ``tensor`` in place with ``exp(U(log low, log high))`` and return it."""
    with torch.no_grad():
        tensor.uniform_(math.log(low), math.log(high), generator=generator)
        tensor.exp_()
    return tensor
