"""RWKV-6 ("Finch") layer: data-dependent token shift, WKV time mixing, channel mixing.

One layer is two pre-norm residual sublayers, ``x = x + tmix(norm1(x))`` then
``x = x + cmix(norm2(x))`` (RMSNorm).  With ``h`` a normalised input, ``h_prev`` the same at
the previous position (zero before the first) and ``dh = h_prev - h``:

Time mixing (``H`` heads of size ``K = d_model / H``)::

    # ddlerp: data-dependent linear interpolation between h and h_prev, low-rank (rank r_mix)
    m_w, m_k, m_v, m_r, m_g = tanh((h + dh * mix_x) @ mix_down) @ mix_up   # 5 x (batch, L, d)
    h_* = h + dh * (mix_base_* + m_*)                                      # for * in w,k,v,r,g
    r, k, v = W_r h_r, W_k h_k, W_v h_v          g = silu(W_g h_g)
    w   = -exp(decay_base + tanh(h_w @ decay_down) @ decay_up)             # log-decay <= 0
    o   = wkv6(r, k, v, w, bonus)                                          # per head
    out = W_o(group_norm_per_head(o) * g)

Channel mixing (hidden width ``F = ffn_ratio * d_model``)::

    h_k, h_r = h + dh * cmix_k, h + dh * cmix_r
    out = sigmoid(W_r' h_r) * W_v'(relu(W_k' h_k) ** 2)

Initialisation (after the RWKV-6 paper), for layer ``i`` of ``n``, channel ``c`` of ``d``:
with ``depth = i / max(n - 1, 1)`` and ``shallow = 1 - i / n``, every static interpolation
coefficient is ``1 - (c / d) ** shallow`` (early channels lean on the previous token, deeper
layers shift less); ``decay_base = -6 + 5 (c / (d - 1)) ** (0.7 + 1.3 depth)`` (per-step
decay factors from ``exp(-exp(-6)) ~ 0.998`` to ``exp(-exp(-1)) ~ 0.69``); the bonus
``u = depth (1 - c / (d - 1)) + 0.1 ((c + 1) mod 3 - 1)``; the low-rank "down" factors are
uniform in ``+-0.01`` and the "up" factors zero (the ddlerp and decay start static); the
output projections ``W_o`` and ``W_v'`` are zero, so each layer starts as the identity; the
other projections keep torch's default initialisation.

Parameters per layer (``d = d_model``, projections without bias)::

    5 d^2 (r, k, v, g, o) + 2 F d + d^2 (channel mix)
    + 6 d (mix_x, mix_base) + 5 r_mix d (down) + 5 r_mix d (up)
    + d + 2 r_decay d (decay) + d (bonus) + 2 d (group norm) + 2 d (cmix) + 2 d (norms)

i.e. ``147,200`` for ``d = 128`` with the defaults (F = d, r_mix = 8, r_decay = 16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from probkit.utils.validation import check_int

from ..ops import wkv6, wkv6_step
from ._docs import LAYER_DOCS
from .base import RMSNorm, SequenceLayer, check_dropout

__all__ = ["RWKV6Layer"]


def _shift(h, first):
    """``h`` moved one position later along dim 1, with ``first`` (batch, d) in front."""
    return torch.cat([first.unsqueeze(1), h[:, :-1]], dim=1)


class _MatrixStateRWKV(SequenceLayer):
    """What the RWKV layers with a matrix-valued WKV state per head (RWKV-6, RWKV-7) share:
    the head split, the zero state and the residual channel-mixing half of the layer.

    It sets ``d_model``, ``n_heads`` (default: heads of 64 channels where 64 divides
    ``d_model``, else one head), ``head_size`` and ``ffn_hidden``; a subclass sets ``norm2``
    and ``dropout`` and defines ``_cmix(h, h_prev)``.
    """

    def __init__(self, d_model, n_heads, ffn_ratio):
        super().__init__(check_int(d_model, "d_model"))
        d = self.d_model
        if n_heads is None:
            n_heads = d // 64 if d % 64 == 0 else 1
        self.n_heads = check_int(n_heads, "n_heads")
        if d % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={d}")
        self.head_size = d // self.n_heads
        if not ffn_ratio > 0:
            raise ValueError(f"ffn_ratio must be positive, got {ffn_ratio}")
        self.ffn_hidden = max(1, int(ffn_ratio * d))

    def _heads(self, t):
        """(batch, L, d) -> (batch, H, L, K)."""
        b, L, _ = t.shape
        return t.view(b, L, self.n_heads, self.head_size).transpose(1, 2)

    def _residual_mixes(self, x, time_mixed, shift_cmix):
        """``x + time_mixed``, then its channel mix added: ``(output, norm2 of the middle stream)``.

        ``x`` is ``(batch, L, d)`` (``shift_cmix`` is then put in front of the shifted sequence)
        or one position ``(batch, d)`` (``shift_cmix`` is the previous position's norm).
        """
        x = x + self.dropout(time_mixed)
        h2 = self.norm2(x)
        h2_prev = _shift(h2, shift_cmix) if x.dim() == 3 else shift_cmix
        return x + self.dropout(self._cmix(h2, h2_prev)), h2

    def init_state(self, batch_size, device=None, dtype=None):
        """Zero states ``(shift_tmix (batch, d), wkv_state (batch, H, K, K), shift_cmix (batch, d))``."""
        device, dtype = self._device_dtype(device, dtype)
        shift = torch.zeros(batch_size, self.d_model, device=device, dtype=dtype)
        # the matrix state accumulates over the whole sequence: at least float32
        wkv_state = torch.zeros(batch_size, self.n_heads, self.head_size, self.head_size,
                                device=device, dtype=torch.promote_types(dtype, torch.float32))
        return (shift, wkv_state, shift.clone())


@LAYER_DOCS.fill
class RWKV6Layer(_MatrixStateRWKV):
    r"""Pre-norm residual RWKV-6 layer (time mixing on WKV-6, then channel mixing).

    Parameters
    ----------
    %(d_model)s
    n_heads : int, optional
        Number of WKV heads; must divide ``d_model``.  Default: ``d_model // 64`` heads of
        size 64 when 64 divides ``d_model``, otherwise one head.
    ffn_ratio : float, default 1.0
        Channel-mix hidden width ``F = int(ffn_ratio * d_model)``.  RWKV-6 uses 3.5; the
        smaller default keeps a layer near ``9 d^2`` parameters like the other kinds.
    mix_rank : int, optional
        Rank of the ddlerp (token-shift) low-rank maps (default ``clip(d_model // 16, 4, 32)``).
    decay_rank : int, optional
        Rank of the decay low-rank map (default ``clip(d_model // 8, 8, 64)``).
    layer_id, n_layers : int, default 0, 1
        Position of the layer in its stack (sets the depth-dependent initialisation).
    %(sublayer_dropout)s
    %(wkv6_backend)s

    Notes
    -----
    State: ``(shift_tmix, wkv_state, shift_cmix)``: the normalised inputs of the time and
    channel mixing at the previous position, each ``(batch, d_model)``, and the WKV state
    ``(batch, H, K, K)`` (float32 for 16-bit models).  :meth:`step` uses :func:`~probkit.neural.ops.wkv6_step`.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import RWKV6Layer
    >>> _ = torch.manual_seed(0)
    >>> layer = RWKV6Layer(16, n_heads=2)
    >>> layer(torch.randn(2, 5, 16)).shape
    torch.Size([2, 5, 16])
    >>> [s.shape for s in layer.init_state(2)]
    [torch.Size([2, 16]), torch.Size([2, 2, 8, 8]), torch.Size([2, 16])]
    """

    def __init__(self, d_model, n_heads=None, ffn_ratio=1.0, mix_rank=None, decay_rank=None,
                 layer_id=0, n_layers=1, dropout=0.0, backend="auto"):
        super().__init__(d_model, n_heads, ffn_ratio)
        d = self.d_model
        self.mix_rank = check_int(
            min(32, max(4, d // 16)) if mix_rank is None else mix_rank, "mix_rank")
        self.decay_rank = check_int(
            min(64, max(8, d // 8)) if decay_rank is None else decay_rank, "decay_rank")
        n_layers = check_int(n_layers, "n_layers")
        if not 0 <= layer_id < n_layers:
            raise ValueError(f"layer_id must be in [0, n_layers={n_layers}), got {layer_id}")
        self.backend = backend

        depth = layer_id / max(n_layers - 1, 1)
        shallow = 1.0 - layer_id / n_layers
        pos = torch.arange(d, dtype=torch.float32) / d
        interp = 1.0 - pos ** shallow
        self.norm1 = RMSNorm(d)
        self.mix_x = nn.Parameter(interp.clone())
        self.mix_base = nn.Parameter(interp.repeat(5, 1))  # rows: w, k, v, r, g
        self.mix_down = nn.Parameter(torch.empty(d, 5 * self.mix_rank).uniform_(-0.01, 0.01))
        self.mix_up = nn.Parameter(torch.zeros(5, self.mix_rank, d))
        ramp = torch.arange(d, dtype=torch.float32) / max(d - 1, 1)
        self.decay_base = nn.Parameter(-6.0 + 5.0 * ramp ** (0.7 + 1.3 * depth))
        self.decay_down = nn.Parameter(torch.empty(d, self.decay_rank).uniform_(-0.01, 0.01))
        self.decay_up = nn.Parameter(torch.zeros(self.decay_rank, d))
        zigzag = (torch.arange(d) + 1) % 3 - 1
        bonus = depth * (1.0 - ramp) + 0.1 * zigzag
        self.bonus = nn.Parameter(bonus.view(self.n_heads, self.head_size))
        self.receptance = nn.Linear(d, d, bias=False)
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d, bias=False)
        self.gate = nn.Linear(d, d, bias=False)
        self.output = nn.Linear(d, d, bias=False)
        nn.init.zeros_(self.output.weight)
        self.head_norm = nn.GroupNorm(self.n_heads, d, eps=64e-5)

        self.norm2 = RMSNorm(d)
        self.cmix_k = nn.Parameter(interp.clone())
        self.cmix_r = nn.Parameter(interp.clone())
        self.ffn_key = nn.Linear(d, self.ffn_hidden, bias=False)
        self.ffn_value = nn.Linear(self.ffn_hidden, d, bias=False)
        self.ffn_receptance = nn.Linear(d, d, bias=False)
        nn.init.zeros_(self.ffn_value.weight)
        self.dropout = nn.Dropout(check_dropout(dropout))

    # ------------------------------------------------------------ the two mixers
    def _tmix_inputs(self, h, h_prev):
        """r, k, v, g, w from normalised inputs (any leading dims, last dim d_model)."""
        dh = h_prev - h
        lead = h.shape[:-1]
        low = torch.tanh((h + dh * self.mix_x) @ self.mix_down)
        low = low.view(*lead, 5, self.mix_rank)
        m = torch.einsum("...fr,frd->...fd", low, self.mix_up) + self.mix_base
        hw, hk, hv, hr, hg = (h + dh * m[..., i, :] for i in range(5))
        w = -torch.exp(self.decay_base + torch.tanh(hw @ self.decay_down) @ self.decay_up)
        return self.receptance(hr), self.key(hk), self.value(hv), F.silu(self.gate(hg)), w

    def _tmix_output(self, o, g):
        """Per-head group norm, gate, output projection; ``o`` is (..., d_model)."""
        lead = o.shape[:-1]
        o = self.head_norm(o.reshape(-1, self.d_model)).view(*lead, self.d_model)
        return self.output(o * g)

    def _cmix(self, h, h_prev):
        dh = h_prev - h
        k = torch.relu(self.ffn_key(h + dh * self.cmix_k)).square()
        return torch.sigmoid(self.ffn_receptance(h + dh * self.cmix_r)) * self.ffn_value(k)

    # ------------------------------------------------------------ API
    def forward(self, x, lengths=None, return_state=False):
        b, L, d = x.shape
        zeros = x.new_zeros(b, d)
        h = self.norm1(x)
        r, k, v, g, w = self._tmix_inputs(h, _shift(h, zeros))
        o, wkv_state = wkv6(self._heads(r), self._heads(k), self._heads(v), self._heads(w),
                            self.bonus, return_last_state=True,
                            backend=self.backend)
        o = o.transpose(1, 2).reshape(b, L, d)
        out, h2 = self._residual_mixes(x, self._tmix_output(o, g), zeros)
        return (out, (h[:, -1], wkv_state, h2[:, -1])) if return_state else out

    def step(self, x_t, state):
        """One position: ``x_t`` ``(batch, d_model)`` -> ``(y_t, (shift_tmix, wkv_state, shift_cmix))``."""
        shift_tmix, wkv_state, shift_cmix = state
        b = x_t.shape[0]
        h = self.norm1(x_t)
        r, k, v, g, w = self._tmix_inputs(h, shift_tmix)
        heads = (b, self.n_heads, self.head_size)
        o, wkv_state = wkv6_step(r.view(heads), k.view(heads), v.view(heads), w.view(heads),
                                 self.bonus, wkv_state)
        y_t, h2 = self._residual_mixes(x_t, self._tmix_output(o.reshape(b, self.d_model), g), shift_cmix)
        return y_t, (h, wkv_state, h2)
