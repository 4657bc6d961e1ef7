"""RWKV-7 ("Goose") layer: token shift, generalised delta-rule time mixing, channel mixing.

One layer is two pre-norm residual sublayers, ``x = x + tmix(norm1(x))`` then
``x = x + cmix(norm2(x))`` (RMSNorm).  With ``h`` a normalised input, ``h_prev`` the same at the
previous position (zero before the first) and ``dh = h_prev - h``:

Time mixing (``H`` heads of size ``K = d_model / H``; ``lora(x) = (x @ down) @ up``)::

    h_* = h + dh * mix_*                                  # for * in r, w, k, v, a, g (static)
    r, k, v = W_r h_r, W_k h_k, W_v h_v
    w     = -exp(-1/2) * sigmoid(decay_base + tanh(h_w @ decay_down) @ decay_up)   # log-decay
    v     = v + (v_first - v) * sigmoid(value_base + lora_v(h_v))   # all but the first layer
    alpha = sigmoid(iclr_base + lora_a(h_a))              # in-context learning rate, (0, 1)
    g     = sigmoid(h_g @ gate_down) @ gate_up
    kappa = normalize_per_head(k * removal_scale)         # the key the state forgets along
    k     = k * (1 + (alpha - 1) * key_iclr)
    o     = rwkv7(r, w, k, v, a=-kappa, b=kappa * alpha)  # S <- (diag(e^w) - kappa (alpha kappa)^T) S + k v^T
    o     = group_norm_per_head(o) + sum_head(r * k * bonus) * v
    out   = W_o(o * g)

``v_first`` is the value vector of the first RWKV-7 layer of the stack at the same position
(the "value residual" of the RWKV-7 model): the first layer stores it in the ``context``
dictionary its :class:`~probkit.neural.backbones.Backbone` passes down a stack, and the later
layers read it there.

Channel mixing (hidden width ``F = ffn_ratio * d_model``)::

    out = W_v'(relu(W_k'(h + dh * cmix_k)) ** 2)

Initialisation (after the RWKV-7 reference model), for layer ``i`` of ``n`` and channel ``c``
of ``d`` (``depth = i / max(n - 1, 1)``, ``shallow = 1 - i / n``, ``lin = c / (d - 1) - 1/2``,
``zz`` a per-head zigzag in ``[-1, 1]``): the mixes are ``1 - (c / d) ** (p * shallow)`` with
``p`` = 0.2 (r, g), 0.9 (w, a), 0.7 (k, v); ``decay_base = -6 + 6 (c / (d - 1)) ** (1 + depth **
0.3) + 0.5 + 2.5 zz`` (per-step decay factors from about 1 to ``exp(-exp(-1/2))``);
``iclr_base = -0.19 + 0.3 zz + 0.4 lin``; ``value_base = 0.73 - 0.4 lin``; ``removal_scale =
0.71 - 0.1 lin``, ``key_iclr = 1.02``, ``bonus = -0.04``; the head norm's scale is
``((i + 1) / n) ** 0.7``.  The low-rank "down" factors are zero and the "up" factors uniform in
``+-0.1 sqrt(3 / rank)``; the output projections ``W_o`` and ``W_v'`` are zero, so each layer
starts as the identity; the other projections keep torch's default initialisation.

Parameters per layer (``d = d_model``, projections without bias)::

    4 d^2 (r, k, v, o) + 2 F d (channel mix) + 6 d (mixes) + d + 2 r_w d (decay)
    + d + 2 r_a d (learning rate) + [d + 2 r_v d (value residual, not in the first layer)]
    + 2 r_g d (gate) + 3 d (removal scale, key_iclr, bonus) + 2 d (head norm) + d (cmix) + 2 d (norms)

i.e. ``149,504`` for the first and ``151,680`` for every further layer at ``d = 128`` with the
defaults (``F = 2 d``, ranks ``r_w = r_a = 16``, ``r_v = 8``, ``r_g = 32``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from probkit.utils.validation import check_int

from ..ops import rwkv7, rwkv7_step
from ._docs import LAYER_DOCS
from .base import RMSNorm, check_dropout
from .rwkv import _MatrixStateRWKV, _shift

__all__ = ["RWKV7Layer"]

#: key of the first layer's values in the context a Backbone passes down its stack
V_FIRST = "rwkv7_v_first"
_LOG_DECAY_MAX = math.exp(-0.5)  # the log-decay is -exp(-1/2) * sigmoid(.)


def _clip(value, lo, hi):
    return min(hi, max(lo, value))


@LAYER_DOCS.fill
class RWKV7Layer(_MatrixStateRWKV):
    r"""Pre-norm residual RWKV-7 layer (delta-rule time mixing, then channel mixing).

    Parameters
    ----------
    %(d_model)s
    n_heads : int, optional
        Number of heads; must divide ``d_model``.  Default: ``d_model // 64`` heads of size
        64 when 64 divides ``d_model``, otherwise one head.
    ffn_ratio : float, default 2.0
        Channel-mix hidden width ``F = int(ffn_ratio * d_model)`` (RWKV-7 uses 4; the smaller
        default keeps a layer near ``9 d^2`` parameters like the other kinds).
    decay_rank, iclr_rank, value_rank, gate_rank : int, optional
        Ranks of the low-rank maps of the decay, the in-context learning rate, the value
        residual and the output gate (defaults ``clip(d // 8, 8, 64)``, ``clip(d // 8, 8, 64)``,
        ``clip(d // 16, 4, 32)``, ``clip(d // 4, 8, 128)``).
    layer_id, n_layers : int, default 0, 1
        Position of the layer among the RWKV-7 layers of its stack: it sets the
        depth-dependent initialisation, and layer 0 provides the value residual ``v_first``
        that the others mix in.
    %(sublayer_dropout)s
    %(rwkv7_backend)s
    chunk_size : int, optional
        Chunk length of the ``cpu`` backend.

    Notes
    -----
    State: ``(shift_tmix, wkv_state, shift_cmix)``: the normalised inputs of the time and
    channel mixing at the previous position, each ``(batch, d_model)``, and the matrix state
    ``(batch, H, K, K)`` (float32 for 16-bit models).  :meth:`step` uses
    :func:`~probkit.neural.ops.rwkv7_step`.  A layer with ``layer_id > 0`` needs the values of
    the stack's first RWKV-7 layer: run it inside a :class:`~probkit.neural.backbones.Backbone`
    or pass the same ``context`` dictionary to every layer's call, first layer first.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import RWKV7Layer
    >>> _ = torch.manual_seed(0)
    >>> first, second = RWKV7Layer(16, n_heads=2, layer_id=0, n_layers=2), RWKV7Layer(16, n_heads=2, layer_id=1, n_layers=2)
    >>> x, context = torch.randn(2, 5, 16), {}
    >>> second(first(x, context=context), context=context).shape
    torch.Size([2, 5, 16])
    >>> [s.shape for s in first.init_state(2)]
    [torch.Size([2, 16]), torch.Size([2, 2, 8, 8]), torch.Size([2, 16])]
    """

    #: a Backbone passes one dictionary down its stack to the layers that set this
    uses_stack_context = True

    def __init__(self, d_model, n_heads=None, ffn_ratio=2.0, decay_rank=None, iclr_rank=None,
                 value_rank=None, gate_rank=None, layer_id=0, n_layers=1, dropout=0.0,
                 backend="auto", chunk_size=None):
        super().__init__(d_model, n_heads, ffn_ratio)
        d, K = self.d_model, self.head_size
        ranks = {}
        for name, value, default in (("decay_rank", decay_rank, _clip(d // 8, 8, 64)),
                                     ("iclr_rank", iclr_rank, _clip(d // 8, 8, 64)),
                                     ("value_rank", value_rank, _clip(d // 16, 4, 32)),
                                     ("gate_rank", gate_rank, _clip(d // 4, 8, 128))):
            ranks[name] = check_int(default if value is None else value, name)
            setattr(self, name, ranks[name])
        n_layers = check_int(n_layers, "n_layers")
        if not 0 <= layer_id < n_layers:
            raise ValueError(f"layer_id must be in [0, n_layers={n_layers}), got {layer_id}")
        self.layer_id = int(layer_id)
        self.is_first = self.layer_id == 0
        self.backend = backend
        if chunk_size is not None:
            check_int(chunk_size, "chunk_size")
        self.chunk_size = chunk_size

        depth = layer_id / max(n_layers - 1, 1)
        shallow = 1.0 - layer_id / n_layers
        c = torch.arange(d, dtype=torch.float32)
        frac = c / d
        lin = c / max(d - 1, 1) - 0.5
        pos = (c % K) - (K - 1) / 2
        zz = pos / max((K - 1) / 2, 1e-9)
        zz = zz * zz.abs()
        powers = torch.tensor([0.2, 0.9, 0.7, 0.7, 0.9, 0.2])  # r, w, k, v, a, g
        self.norm1 = RMSNorm(d)
        self.mix = nn.Parameter(1.0 - frac[None, :] ** (powers[:, None] * shallow))

        def low_rank(rank):
            down = nn.Parameter(torch.zeros(d, rank))
            bound = 0.1 * math.sqrt(3.0 / rank)
            return down, nn.Parameter(torch.empty(rank, d).uniform_(-bound, bound))

        self.decay_base = nn.Parameter(
            -6.0 + 6.0 * (c / max(d - 1, 1)) ** (1.0 + depth ** 0.3) + 0.5 + 2.5 * zz)
        self.decay_down, self.decay_up = low_rank(self.decay_rank)
        self.iclr_base = nn.Parameter(-0.19 + 0.3 * zz + 0.4 * lin)
        self.iclr_down, self.iclr_up = low_rank(self.iclr_rank)
        if not self.is_first:
            self.value_base = nn.Parameter(0.73 - 0.4 * lin)
            self.value_down, self.value_up = low_rank(self.value_rank)
        self.gate_down, self.gate_up = low_rank(self.gate_rank)
        self.removal_scale = nn.Parameter(0.71 - 0.1 * lin)
        self.key_iclr = nn.Parameter(torch.full((d,), 1.02))
        self.bonus = nn.Parameter(torch.full((self.n_heads, K), -0.04))
        self.receptance = nn.Linear(d, d, bias=False)
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d, bias=False)
        self.output = nn.Linear(d, d, bias=False)
        nn.init.zeros_(self.output.weight)
        self.head_norm = nn.GroupNorm(self.n_heads, d, eps=K * 1e-5)
        with torch.no_grad():
            self.head_norm.weight.fill_(((layer_id + 1) / n_layers) ** 0.7)

        self.norm2 = RMSNorm(d)
        self.cmix_k = nn.Parameter(1.0 - frac ** shallow)
        self.ffn_key = nn.Linear(d, self.ffn_hidden, bias=False)
        self.ffn_value = nn.Linear(self.ffn_hidden, d, bias=False)
        nn.init.zeros_(self.ffn_value.weight)
        self.dropout = nn.Dropout(check_dropout(dropout))

    # ------------------------------------------------------------ the two mixers
    def _tmix_inputs(self, h, h_prev, v_first):
        """r, w, k, v, a, b, g and the values before the residual (any leading dims)."""
        dh = h_prev - h
        hr, hw, hk, hv, ha, hg = (h + dh * self.mix[i] for i in range(6))
        r, k, v = self.receptance(hr), self.key(hk), self.value(hv)
        w = -_LOG_DECAY_MAX * torch.sigmoid(
            self.decay_base + torch.tanh(hw @ self.decay_down) @ self.decay_up)
        v_own = v
        if not self.is_first:
            mix = torch.sigmoid(self.value_base + (hv @ self.value_down) @ self.value_up)
            v = v + (v_first - v) * mix
        alpha = torch.sigmoid(self.iclr_base + (ha @ self.iclr_down) @ self.iclr_up)
        g = torch.sigmoid(hg @ self.gate_down) @ self.gate_up
        lead = k.shape[:-1]
        heads = lead + (self.n_heads, self.head_size)
        kappa = F.normalize((k * self.removal_scale).view(heads), dim=-1).view(k.shape)
        k = k * (1.0 + (alpha - 1.0) * self.key_iclr)
        return r, w, k, v, -kappa, kappa * alpha, g, v_own

    def _tmix_output(self, o, r, k, v, g):
        """Head norm, bonus term, gate and output projection; everything is (..., d_model)."""
        lead = o.shape[:-1]
        heads = lead + (self.n_heads, self.head_size)
        o = self.head_norm(o.reshape(-1, self.d_model)).view(*lead, self.d_model)
        bonus = (r.view(heads) * k.view(heads) * self.bonus).sum(-1, keepdim=True) * v.view(heads)
        return self.output((o + bonus.view(o.shape)) * g)

    def _cmix(self, h, h_prev):
        k = torch.relu(self.ffn_key(h + (h_prev - h) * self.cmix_k)).square()
        return self.ffn_value(k)

    def _v_first(self, context):
        if self.is_first:
            return None
        if context is None or V_FIRST not in context:
            raise ValueError(
                f"RWKV7Layer(layer_id={self.layer_id}) mixes in the values of the stack's first "
                "RWKV-7 layer: run it inside a Backbone, or pass the same context dict to every "
                "layer's call, first layer first")
        return context[V_FIRST]

    # ------------------------------------------------------------ API
    def forward(self, x, lengths=None, return_state=False, context=None):
        b, L, d = x.shape
        zeros = x.new_zeros(b, d)
        h = self.norm1(x)
        r, w, k, v, a, bb, g, v_own = self._tmix_inputs(h, _shift(h, zeros), self._v_first(context))
        if self.is_first and context is not None:
            context[V_FIRST] = v_own
        o, wkv_state = rwkv7(self._heads(r), self._heads(w), self._heads(k), self._heads(v),
                             self._heads(a), self._heads(bb), return_last_state=True,
                             backend=self.backend, chunk_size=self.chunk_size)
        o = o.transpose(1, 2).reshape(b, L, d)
        out, h2 = self._residual_mixes(x, self._tmix_output(o, r, k, v, g), zeros)
        return (out, (h[:, -1], wkv_state, h2[:, -1])) if return_state else out

    def step(self, x_t, state, context=None):
        """One position: ``x_t`` ``(batch, d_model)`` -> ``(y_t, (shift_tmix, wkv_state, shift_cmix))``."""
        shift_tmix, wkv_state, shift_cmix = state
        b = x_t.shape[0]
        h = self.norm1(x_t)
        r, w, k, v, a, bb, g, v_own = self._tmix_inputs(h, shift_tmix, self._v_first(context))
        if self.is_first and context is not None:
            context[V_FIRST] = v_own
        heads = (b, self.n_heads, self.head_size)
        o, wkv_state = rwkv7_step(r.view(heads), w.view(heads), k.view(heads), v.view(heads),
                                  a.view(heads), bb.view(heads), wkv_state)
        y_t, h2 = self._residual_mixes(x_t, self._tmix_output(o.reshape(b, self.d_model), r, k, v, g), shift_cmix)
        return y_t, (h, wkv_state, h2)
