"""Mamba (selective state space) layer.

One layer is ``x + dropout(mixer(norm(x)))`` with ``norm`` an :class:`RMSNorm` and ``mixer``
the Mamba block (Gu & Dao, 2023), ``E = expand * d_model`` inner channels, ``N = d_state``::

    u, z   = split(in_proj(h))                     # each (batch, L, E)
    u      = silu(causal_depthwise_conv(u))        # width d_conv
    dt, B, C = split(x_proj(u))                    # (dt_rank, N, N) per position
    delta  = dt_proj(dt)                           # (batch, L, E); its bias is passed to the scan
    y      = selective_scan(u, delta, A, B, C, D, z, delta_bias, softplus)   # times silu(z)
    out    = out_proj(y)

with ``A = -exp(A_log)``.  Initialisation as in the paper: ``A_log[i, n] = log(n + 1)``
(S4D-real, ``A = -(1, ..., N)`` in every channel), ``D = 1``, ``dt_proj`` weight uniform in
``+-dt_rank ** -0.5`` and bias the inverse softplus of a log-uniform step in
``[dt_min, dt_max]`` (so ``softplus(bias)`` lies in that range), conv weights and bias
uniform in ``+-1/sqrt(d_conv)``, projections torch's default.

Parameters per layer (``d = d_model``, ``R = dt_rank``, projections without bias)::

    2 d E + E (d_conv + 1) + E (R + 2 N) + (R E + E) + E N + E + E d + d
    = 3 d E + E (d_conv + 3 + 2 R + 3 N) + d

i.e. ``116,608`` for ``d = 128`` with the defaults (E = 256, N = 16, R = 8, d_conv = 4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from probkit.utils.validation import check_int

from ..ops import causal_conv1d, causal_conv1d_update, selective_scan, selective_state_update
from ._docs import LAYER_DOCS
from .base import (RMSNorm, SequenceLayer, check_dropout, inverse_softplus,
                   log_uniform_)

__all__ = ["MambaLayer"]


@LAYER_DOCS.fill
class MambaLayer(SequenceLayer):
    r"""Pre-norm residual Mamba block (selective SSM with a short causal convolution).

    Parameters
    ----------
    %(d_model)s
    %(ssm_sizes)s
    d_conv : int, default 4
        Width of the causal depthwise convolution.
    dt_rank : int, optional
        Rank of the step-size projection (default ``ceil(d_model / 16)``).
    dt_min, dt_max : float, default 1e-3, 1e-1
        Range of the initial step sizes ``softplus(dt_proj.bias)``.
    %(block_dropout)s
    bias : bool, default False
        Biases in ``in_proj`` and ``out_proj`` (``use_bias`` of ``transformers``' Mamba).
    conv_bias : bool, default True
        Bias in the convolution.
    norm_eps : float, default 1e-6
        Epsilon of the input RMSNorm (``transformers``' Mamba uses 1e-5).
    %(selective_scan_backend)s

    Notes
    -----
    State: ``(conv_state, ssm_state)`` with ``conv_state`` of shape
    ``(batch, E, d_conv - 1)`` (the last inputs of the convolution, oldest first) and
    ``ssm_state`` of shape ``(batch, E, N)`` (float32 for 16-bit models).  :meth:`step` uses
    :func:`~probkit.neural.ops.causal_conv1d_update` and
    :func:`~probkit.neural.ops.selective_state_update`.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import MambaLayer
    >>> _ = torch.manual_seed(0)
    >>> layer = MambaLayer(8, d_state=4)
    >>> -torch.exp(layer.A_log[0])
    tensor([-1., -2., -3., -4.], grad_fn=<NegBackward0>)
    >>> x = torch.randn(2, 5, 8)
    >>> layer(x).shape
    torch.Size([2, 5, 8])
    >>> conv_state, ssm_state = layer.init_state(2)
    >>> conv_state.shape, ssm_state.shape
    (torch.Size([2, 16, 3]), torch.Size([2, 16, 4]))
    """

    def __init__(self, d_model, d_state=16, expand=2, d_conv=4, dt_rank=None, dt_min=1e-3,
                 dt_max=1e-1, dropout=0.0, bias=False, conv_bias=True, norm_eps=1e-6,
                 backend="auto"):
        super().__init__(check_int(d_model, "d_model"))
        self.d_state = check_int(d_state, "d_state")
        self.expand = check_int(expand, "expand")
        self.d_conv = check_int(d_conv, "d_conv")
        if dt_rank is None:
            dt_rank = math.ceil(self.d_model / 16)
        self.dt_rank = check_int(dt_rank, "dt_rank")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.backend = backend
        d, E, N, R = self.d_model, self.expand * self.d_model, self.d_state, self.dt_rank
        self.d_inner = E
        self.norm = RMSNorm(d, eps=norm_eps)
        self.in_proj = nn.Linear(d, 2 * E, bias=bool(bias))
        bound = 1.0 / math.sqrt(self.d_conv)
        self.conv_weight = nn.Parameter(torch.empty(E, self.d_conv).uniform_(-bound, bound))
        self.conv_bias = (nn.Parameter(torch.empty(E).uniform_(-bound, bound))
                          if conv_bias else None)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        with torch.no_grad():
            self.dt_proj.weight.uniform_(-R ** -0.5, R ** -0.5)
            self.dt_proj.bias.copy_(inverse_softplus(log_uniform_(torch.empty(E), dt_min, dt_max)))
        # S4D-real: A[i, n] = -(n + 1) in every channel
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))
        self.D = nn.Parameter(torch.ones(E))
        # The SSM's dynamics parameters are not weight-decayed (decay would pull A towards -1
        # and the step sizes towards softplus(0)), as in the Mamba reference training setup.
        for p in (self.A_log, self.D, self.dt_proj.bias):
            p._no_weight_decay = True
        self.out_proj = nn.Linear(E, d, bias=bool(bias))
        self.dropout = nn.Dropout(check_dropout(dropout))

    def _ssm_inputs(self, u):
        """``(delta_without_bias, B, C)`` from the conv output ``u`` (..., E)."""
        dbc = self.x_proj(u)
        dt, B, C = torch.split(dbc, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C

    def forward(self, x, lengths=None, return_state=False):
        u, z = self.in_proj(self.norm(x)).chunk(2, dim=-1)  # (batch, L, E) each
        u, conv_state = causal_conv1d(u.transpose(1, 2), self.conv_weight, self.conv_bias,
                                      activation="silu", return_final_state=True)
        delta, B, C = self._ssm_inputs(u.transpose(1, 2))
        y, ssm_state = selective_scan(
            u, delta.transpose(1, 2), -torch.exp(self.A_log), B.transpose(1, 2),
            C.transpose(1, 2), self.D, z.transpose(1, 2), delta_bias=self.dt_proj.bias,
            delta_softplus=True, return_last_state=True, backend=self.backend)
        out = x + self.dropout(self.out_proj(y.transpose(1, 2)))
        return (out, (conv_state, ssm_state)) if return_state else out

    def init_state(self, batch_size, device=None, dtype=None):
        """Zero states ``(conv_state (batch, E, d_conv - 1), ssm_state (batch, E, N))``."""
        device, dtype = self._device_dtype(device, dtype)
        # the SSM state accumulates over the whole sequence: at least float32
        return (torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device, dtype=dtype),
                torch.zeros(batch_size, self.d_inner, self.d_state, device=device,
                            dtype=torch.promote_types(dtype, torch.float32)))

    def step(self, x_t, state):
        """One position: ``x_t`` ``(batch, d_model)`` -> ``(y_t, (conv_state, ssm_state))``."""
        conv_state, ssm_state = state
        u, z = self.in_proj(self.norm(x_t)).chunk(2, dim=-1)
        u, conv_state = causal_conv1d_update(u, conv_state, self.conv_weight, self.conv_bias,
                                             activation="silu")
        delta, B, C = self._ssm_inputs(u)
        y, ssm_state = selective_state_update(ssm_state, u, delta, -torch.exp(self.A_log), B, C,
                                              self.D, z, dt_bias=self.dt_proj.bias,
                                              dt_softplus=True)
        return x_t + self.dropout(self.out_proj(y)), (conv_state, ssm_state)
