"""Transformer layer: multi-head self-attention (causal or bidirectional) and an MLP.

One layer is ``x = x + attn(norm1(x))`` then ``x = x + mlp(norm2(x))`` (RMSNorm, pre-norm),
with attention by :func:`torch.nn.functional.scaled_dot_product_attention`, a fused
bias-free ``qkv`` projection, a bias-free output projection and an MLP
``W_2 gelu(W_1 h)`` of hidden width ``mlp_ratio * d_model`` (bias-free).

Positions are either *rotary* (RoPE, Su et al. 2021: each head's query and key feature
pairs ``(i, i + K/2)`` are rotated by the angle ``position * base ** (-2 i / K)``; no
parameters, any length) or *learned* (a ``(max_len, d_model)`` table added to the residual
stream by the first layer of the stack, initialised ``N(0, 0.02^2)``).

Parameters per layer (``d = d_model``, ``F = int(mlp_ratio * d)``):
``4 d^2 + 2 F d + 2 d`` (= ``8 d^2 + 2 d`` = ``131,328`` for ``d = 128`` and the default
``mlp_ratio = 2``; GPT uses 4), plus ``max_len * d`` in the first layer for learned
positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from probkit.utils.validation import check_int

from ._docs import LAYER_DOCS
from .base import SequenceLayer, check_dropout, make_norm

__all__ = ["TransformerLayer", "apply_rotary"]

POSITIONALS = ("rotary", "learned")
#: MLP activations: exact GELU, or its tanh approximation (GPT-2's ``gelu_new``)
ACTIVATIONS = {"gelu": F.gelu, "gelu_tanh": lambda h: F.gelu(h, approximate="tanh")}


def apply_rotary(x, positions, base=10000.0):
    r"""Rotate feature pairs ``(i, i + K/2)`` of ``x`` by ``positions * base ** (-2 i / K)``.

    Parameters
    ----------
    x : Tensor, shape (..., L, K)
        Queries or keys of one or more heads (``K`` even).
    positions : Tensor of shape (L,)
        Integer positions of the ``L`` rows.
    base : float, default 10000.0

    Returns
    -------
    Tensor, same shape and dtype as ``x``.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers.transformer import apply_rotary
    >>> q = torch.tensor([[1.0, 0.0]])
    >>> apply_rotary(q, torch.tensor([0])), apply_rotary(q, torch.tensor([1])).round(decimals=4)
    (tensor([[1., 0.]]), tensor([[0.5403, 0.8415]]))
    """
    K = x.shape[-1]
    half = K // 2
    # angles in float64 so that the whole-sequence and the one-step paths agree exactly
    inv_freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float64) * 2.0 / K)
    angles = positions.to(device=x.device, dtype=torch.float64)[:, None] * inv_freq
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


@LAYER_DOCS.fill
class TransformerLayer(SequenceLayer):
    r"""Pre-norm transformer layer (GPT-style causal or BERT-style bidirectional).

    Parameters
    ----------
    %(d_model)s
    n_heads : int, default 4
        Attention heads; must divide ``d_model``.
    causal : bool, default True
        Causal (each position attends to itself and earlier ones) or bidirectional.
    positional : {"rotary", "learned"}, default "rotary"
        Rotary embeddings inside every layer, or a learned table (see ``max_len``).
    max_len : int, optional
        Give it (learned positions) to make this layer add a learned ``(max_len, d_model)``
        position table to its input; sequences may then be at most ``max_len`` long.
        :func:`~probkit.neural.build_backbone` gives it to the first layer only.
    mlp_ratio : float, default 2.0
        MLP hidden width ``int(mlp_ratio * d_model)``.
    rotary_base : float, default 10000.0
    dropout : float, default 0.0
        Dropout on each sublayer's output before its residual addition (and on the
        attention weights in training).
    bias : bool, default False
        Biases in the four projections (GPT-2 has them).
    norm : {"rms", "layer"}, default "rms"
        RMSNorm, or LayerNorm with a bias (GPT-2), before each sublayer.
    norm_eps : float, default 1e-6
        Epsilon of the two norms.
    activation : {"gelu", "gelu_tanh"}, default "gelu"
        MLP activation: exact GELU or its tanh approximation (GPT-2).

    Notes
    -----
    State (causal only): the KV cache ``(keys, values)``, each ``(batch, n_heads, T,
    d_model // n_heads)`` with ``T`` the number of positions seen so far (0 initially; keys
    are stored after the rotation).  Each :meth:`step` appends one position, so its cost
    grows with ``T``.  With ``lengths`` a bidirectional layer masks the padded keys.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import TransformerLayer
    >>> _ = torch.manual_seed(0)
    >>> layer = TransformerLayer(16, n_heads=4)
    >>> x = torch.randn(2, 5, 16)
    >>> layer(x).shape
    torch.Size([2, 5, 16])
    >>> keys, values = layer.init_state(2)
    >>> keys.shape
    torch.Size([2, 4, 0, 4])
    >>> y_t, (keys, values) = layer.step(x[:, 0], (keys, values))
    >>> keys.shape
    torch.Size([2, 4, 1, 4])
    """

    def __init__(self, d_model, n_heads=4, causal=True, positional="rotary", max_len=None,
                 mlp_ratio=2.0, rotary_base=10000.0, dropout=0.0, bias=False, norm="rms",
                 norm_eps=1e-6, activation="gelu"):
        super().__init__(check_int(d_model, "d_model"))
        d = self.d_model
        self.n_heads = check_int(n_heads, "n_heads")
        if d % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={d}")
        self.head_size = d // self.n_heads
        if positional not in POSITIONALS:
            raise ValueError(f"positional must be one of {POSITIONALS}, got {positional!r}")
        if positional == "rotary" and self.head_size % 2:
            raise ValueError(f"rotary positions need an even head size, got "
                             f"d_model / n_heads = {d} / {self.n_heads} = {self.head_size}")
        if not isinstance(causal, bool):
            raise TypeError(f"causal must be a bool, got {causal!r}")
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.causal = causal
        self.positional = positional
        self.rotary_base = float(rotary_base)
        self.p_dropout = check_dropout(dropout)
        self.position_table = None
        if max_len is not None:
            self.max_len = check_int(max_len, "max_len")
            self.position_table = nn.Parameter(torch.empty(self.max_len, d).normal_(0.0, 0.02))
        hidden = max(1, int(mlp_ratio * d))
        bias = bool(bias)
        self.norm1 = make_norm(norm, d, norm_eps)
        self.qkv = nn.Linear(d, 3 * d, bias=bias)
        self.out = nn.Linear(d, d, bias=bias)
        self.norm2 = make_norm(norm, d, norm_eps)
        self.mlp_in = nn.Linear(d, hidden, bias=bias)
        self.mlp_out = nn.Linear(hidden, d, bias=bias)
        self.dropout = nn.Dropout(self.p_dropout)

    def _qkv(self, h, positions):
        """(batch, L, d) -> q, k, v of shape (batch, H, L, K), rotated when rotary."""
        b, L, _ = h.shape
        q, k, v = (t.view(b, L, self.n_heads, self.head_size).transpose(1, 2)
                   for t in self.qkv(h).chunk(3, dim=-1))
        if self.positional == "rotary":
            q = apply_rotary(q, positions, self.rotary_base)
            k = apply_rotary(k, positions, self.rotary_base)
        return q, k, v

    def _finish(self, x, attn):
        b, _, L, _ = attn.shape
        x = x + self.dropout(self.out(attn.transpose(1, 2).reshape(b, L, self.d_model)))
        act = ACTIVATIONS[self.activation]
        return x + self.dropout(self.mlp_out(act(self.mlp_in(self.norm2(x)))))

    def forward(self, x, lengths=None, return_state=False):
        if return_state:
            self._require_causal()
        b, L, _ = x.shape
        if self.position_table is not None:
            if L > self.max_len:
                raise ValueError(f"sequence length L={L} exceeds max_len={self.max_len} of the "
                                 "learned positions")
            x = x + self.position_table[:L]
        q, k, v = self._qkv(self.norm1(x), torch.arange(L, device=x.device))
        mask = None
        if not self.causal and lengths is not None:
            keep = torch.arange(L, device=x.device)[None, :] < lengths[:, None]
            # a sequence without valid positions attends everywhere (its outputs are
            # padding anyway) instead of producing NaN from an empty softmax
            keep = keep | (lengths[:, None] == 0)
            mask = keep[:, None, None, :]
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal,
            dropout_p=self.p_dropout if self.training else 0.0)
        out = self._finish(x, attn)
        return (out, (k, v)) if return_state else out

    def _require_causal(self):
        if not self.causal:
            raise RuntimeError("a bidirectional TransformerLayer has no recurrent form "
                               "(init_state/step need causal=True)")

    def init_state(self, batch_size, device=None, dtype=None):
        """Empty KV cache ``(keys, values)``, each ``(batch, n_heads, 0, head_size)``."""
        self._require_causal()
        device, dtype = self._device_dtype(device, dtype)
        empty = torch.zeros(batch_size, self.n_heads, 0, self.head_size, device=device, dtype=dtype)
        return (empty, empty.clone())

    def step(self, x_t, state):
        """One position: append it to the KV cache and attend over the cache."""
        self._require_causal()
        keys, values = state
        t = keys.shape[2]
        if self.position_table is not None:
            if t >= self.max_len:
                raise ValueError(f"position {t} is beyond max_len={self.max_len} of the "
                                 "learned positions")
            x_t = x_t + self.position_table[t]
        x = x_t.unsqueeze(1)
        q, k, v = self._qkv(self.norm1(x), torch.tensor([t], device=x.device))
        keys = torch.cat([keys, k.to(keys.dtype)], dim=2)
        values = torch.cat([values, v.to(values.dtype)], dim=2)
        attn = F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype))
        return self._finish(x, attn)[:, 0], (keys, values)
