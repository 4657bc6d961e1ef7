"""MambaOut's Gated CNN layer: the Mamba block with the state space model removed.

After Yu & Wang, "MambaOut: Do We Really Need Mamba for Vision?" (2024), made causal for
sequences.  One layer is ``x + dropout(block(norm(x)))`` (RMSNorm) with, for a hidden width
``E = int(expansion * d_model)`` and ``C = int(conv_ratio * d_model)`` convolved channels::

    g, i, c = split(fc1(h), [E, E - C, C])
    c       = causal_depthwise_conv(c)          # width conv_width, with bias
    out     = fc2(gelu(g) * concat(i, c))

Only ``C`` of the ``E`` value channels are convolved ("partial" convolution); the others
pass through, gated.  The linear maps have biases (as in MambaOut); the convolution takes
``torch.nn.Conv1d``'s default initialisation (uniform in ``+-1/sqrt(conv_width)``).

Parameters per layer (``d = d_model``):
``2 E d + 2 E + C (conv_width + 1) + E d + d + d`` (= ``132,522`` for ``d = 128`` with the
defaults ``expansion = 8/3``, ``conv_ratio = 1``, ``conv_width = 4``: E = 341, C = 128).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from probkit.utils.validation import check_int

from ..ops import causal_conv1d, causal_conv1d_update
from ._docs import LAYER_DOCS
from .base import RMSNorm, SequenceLayer, check_dropout

__all__ = ["GatedCNNLayer"]


@LAYER_DOCS.fill
class GatedCNNLayer(SequenceLayer):
    r"""Pre-norm residual Gated CNN block (MambaOut) with a causal depthwise convolution.

    Parameters
    ----------
    %(d_model)s
    expansion : float, default 8/3
        Hidden width ``E = int(expansion * d_model)``.
    conv_ratio : float, default 1.0
        Convolved channels ``C = int(conv_ratio * d_model)``; ``1 <= C <= E``.
    conv_width : int, default 4
        Width of the causal convolution.
    %(block_dropout)s

    Notes
    -----
    State: ``(conv_state,)`` of shape ``(batch, C, conv_width - 1)``: the last inputs of the
    convolution, oldest first (:func:`~probkit.neural.ops.causal_conv1d_update`).

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import GatedCNNLayer
    >>> _ = torch.manual_seed(0)
    >>> layer = GatedCNNLayer(12)
    >>> layer.hidden, layer.conv_channels
    (32, 12)
    >>> layer(torch.randn(2, 5, 12)).shape
    torch.Size([2, 5, 12])
    >>> layer.init_state(2)[0].shape
    torch.Size([2, 12, 3])
    """

    def __init__(self, d_model, expansion=8 / 3, conv_ratio=1.0, conv_width=4, dropout=0.0):
        super().__init__(check_int(d_model, "d_model"))
        d = self.d_model
        self.hidden = int(expansion * d)
        self.conv_channels = int(conv_ratio * d)
        if not 1 <= self.conv_channels <= self.hidden:
            raise ValueError(
                f"need 1 <= conv channels <= hidden width, got int(conv_ratio * d_model) = "
                f"{self.conv_channels} and int(expansion * d_model) = {self.hidden}")
        self.conv_width = check_int(conv_width, "conv_width")
        self.norm = RMSNorm(d)
        self.fc1 = nn.Linear(d, 2 * self.hidden)
        bound = 1.0 / math.sqrt(self.conv_width)
        self.conv_weight = nn.Parameter(
            torch.empty(self.conv_channels, self.conv_width).uniform_(-bound, bound))
        self.conv_bias = nn.Parameter(torch.empty(self.conv_channels).uniform_(-bound, bound))
        self.fc2 = nn.Linear(self.hidden, d)
        self.dropout = nn.Dropout(check_dropout(dropout))

    def _split(self, h):
        return torch.split(self.fc1(h), [self.hidden, self.hidden - self.conv_channels,
                                         self.conv_channels], dim=-1)

    def forward(self, x, lengths=None, return_state=False):
        g, i, c = self._split(self.norm(x))
        c, conv_state = causal_conv1d(c.transpose(1, 2), self.conv_weight, self.conv_bias,
                                      return_final_state=True)
        out = x + self.dropout(self.fc2(F.gelu(g) * torch.cat([i, c.transpose(1, 2)], dim=-1)))
        return (out, (conv_state,)) if return_state else out

    def init_state(self, batch_size, device=None, dtype=None):
        """Zero convolution state ``(conv_state,)``, ``(batch, C, conv_width - 1)``."""
        device, dtype = self._device_dtype(device, dtype)
        return (torch.zeros(batch_size, self.conv_channels, self.conv_width - 1,
                            device=device, dtype=dtype),)

    def step(self, x_t, state):
        """One position: ``x_t`` ``(batch, d_model)`` -> ``(y_t, (conv_state,))``."""
        (conv_state,) = state
        g, i, c = self._split(self.norm(x_t))
        c, conv_state = causal_conv1d_update(c, conv_state, self.conv_weight, self.conv_bias)
        return x_t + self.dropout(self.fc2(F.gelu(g) * torch.cat([i, c], dim=-1))), (conv_state,)
