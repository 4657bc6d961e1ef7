"""RWKV-4 layer: static token shift, the per-channel WKV-4 recurrence, channel mixing.

The layer of the RWKV-4 checkpoints (``transformers``' ``RwkvForCausalLM``, Peng et al.,
2023).  Two pre-norm residual sublayers, ``x = x + tmix(norm1(x))`` then
``x = x + cmix(norm2(x))`` (LayerNorms); the first layer of a stack also normalises its
input (``input_norm``).  With ``h`` a normalised input and ``p`` the same at the previous
position (zero before the first), ``mix(m) = h * m + p * (1 - m)``:

Time mixing (``A = attention_size`` channels)::

    k, v = W_k mix(mix_k), W_v mix(mix_v)          r = sigmoid(W_r mix(mix_r))
    wkv_t = (sum_{i<t} e^{-(t-1-i) e^{decay} + k_i} v_i + e^{first + k_t} v_t)
            / (sum_{i<t} e^{-(t-1-i) e^{decay} + k_i}     + e^{first + k_t})
    out = W_o (r * wkv)

by :func:`~probkit.neural.ops.wkv4` (log-decay ``w = -exp(decay)``, bonus ``first``), which
keeps a running maximum of the exponents (so no ``exp`` overflows).

Channel mixing (hidden width ``F``)::

    out = sigmoid(W_r' mix(cmix_r)) * W_v' relu(W_k' mix(cmix_k)) ** 2

Parameters per layer (``d = d_model``, projections without bias):
``3 d A + A d + 3 A + 2 F d + d^2 + 2 d + 4 d`` (plus ``2 d`` with ``input_norm``).
"""

from __future__ import annotations

import torch
from torch import nn

from probkit.utils.validation import check_int

from ..ops import wkv4, wkv4_step
from ._docs import LAYER_DOCS
from .base import SequenceLayer, check_dropout, make_norm

__all__ = ["RWKV4Layer"]


@LAYER_DOCS.fill
class RWKV4Layer(SequenceLayer):
    r"""Pre-norm residual RWKV-4 layer (the layer of ``RwkvForCausalLM`` checkpoints).

    Parameters
    ----------
    %(d_model)s
    attention_size : int, optional
        Channels ``A`` of the time mixing (default ``d_model``).
    ffn_hidden : int, optional
        Hidden width ``F`` of the channel mixing (default ``4 * d_model``).
    norm : {"layer", "rms"}, default "layer"
        Norm before each sublayer (RWKV-4 uses LayerNorm).
    norm_eps : float, default 1e-5
    input_norm : bool, default False
        Normalise the input before the first sublayer (the first layer of an RWKV-4 stack
        normalises the embeddings).
    %(sublayer_dropout)s
    %(wkv4_backend)s

    Notes
    -----
    Initialisation: the mixing coefficients 0.5, ``time_decay`` from -5 to 1 over the
    channels (per-step decay factors from 0.993 to 0.066), ``time_first`` 0.5, the output
    projections zero (the layer starts as the identity), the rest torch's default.

    State: ``(shift_tmix (batch, d), wkv_state (batch, 3, A), shift_cmix (batch, d))``, the
    WKV state as in :func:`~probkit.neural.ops.wkv4` (at least float32).

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import RWKV4Layer
    >>> _ = torch.manual_seed(0)
    >>> layer = RWKV4Layer(8, input_norm=True).double()
    >>> x = torch.randn(2, 5, 8, dtype=torch.float64)
    >>> state, ys = layer.init_state(2), []
    >>> for t in range(5):
    ...     y_t, state = layer.step(x[:, t], state)
    ...     ys.append(y_t)
    >>> torch.allclose(torch.stack(ys, 1), layer(x), atol=1e-12)
    True
    """

    def __init__(self, d_model, attention_size=None, ffn_hidden=None, norm="layer", norm_eps=1e-5,
                 input_norm=False, dropout=0.0, backend="auto"):
        super().__init__(check_int(d_model, "d_model"))
        d = self.d_model
        A = self.attention_size = check_int(d if attention_size is None else attention_size,
                                                     "attention_size")
        F_ = self.ffn_hidden = check_int(4 * d if ffn_hidden is None else ffn_hidden,
                                                  "ffn_hidden")
        self.input_norm = make_norm(norm, d, norm_eps) if input_norm else None
        self.norm1 = make_norm(norm, d, norm_eps)
        self.tmix_k = nn.Parameter(torch.full((d,), 0.5))
        self.tmix_v = nn.Parameter(torch.full((d,), 0.5))
        self.tmix_r = nn.Parameter(torch.full((d,), 0.5))
        self.time_decay = nn.Parameter(torch.linspace(-5.0, 1.0, A))
        self.time_first = nn.Parameter(torch.full((A,), 0.5))
        self.key = nn.Linear(d, A, bias=False)
        self.value = nn.Linear(d, A, bias=False)
        self.receptance = nn.Linear(d, A, bias=False)
        self.output = nn.Linear(A, d, bias=False)
        nn.init.zeros_(self.output.weight)
        self.norm2 = make_norm(norm, d, norm_eps)
        self.cmix_k = nn.Parameter(torch.full((d,), 0.5))
        self.cmix_r = nn.Parameter(torch.full((d,), 0.5))
        self.ffn_key = nn.Linear(d, F_, bias=False)
        self.ffn_value = nn.Linear(F_, d, bias=False)
        self.ffn_receptance = nn.Linear(d, d, bias=False)
        nn.init.zeros_(self.ffn_value.weight)
        self.dropout = nn.Dropout(check_dropout(dropout))
        self.backend = backend

    def _tmix_inputs(self, h, p):
        def mix(m):
            return h * m + p * (1 - m)

        return (self.key(mix(self.tmix_k)), self.value(mix(self.tmix_v)),
                torch.sigmoid(self.receptance(mix(self.tmix_r))))

    def _cmix(self, h, p):
        k = torch.relu(self.ffn_key(h * self.cmix_k + p * (1 - self.cmix_k))).square()
        r = torch.sigmoid(self.ffn_receptance(h * self.cmix_r + p * (1 - self.cmix_r)))
        return r * self.ffn_value(k)

    def forward(self, x, lengths=None, return_state=False):
        b, L, d = x.shape
        if self.input_norm is not None:
            x = self.input_norm(x)
        zeros = x.new_zeros(b, 1, d)
        h = self.norm1(x)
        k, v, r = self._tmix_inputs(h, torch.cat([zeros, h[:, :-1]], dim=1))
        wkv, wkv_state = wkv4(-torch.exp(self.time_decay), self.time_first, k, v,
                              return_last_state=True, backend=self.backend)
        x = x + self.dropout(self.output(r * wkv))
        h2 = self.norm2(x)
        out = x + self.dropout(self._cmix(h2, torch.cat([zeros, h2[:, :-1]], dim=1)))
        return (out, (h[:, -1], wkv_state, h2[:, -1])) if return_state else out

    def init_state(self, batch_size, device=None, dtype=None):
        """Zero shifts and the empty WKV state: ``(shift_tmix, wkv_state, shift_cmix)``."""
        device, dtype = self._device_dtype(device, dtype)
        shift = torch.zeros(batch_size, self.d_model, device=device, dtype=dtype)
        wkv_state = torch.zeros(batch_size, 3, self.attention_size, device=device,
                                dtype=torch.promote_types(dtype, torch.float32))
        wkv_state[:, 2] = -1e38  # the log-scale of empty sums
        return (shift, wkv_state, shift.clone())

    def step(self, x_t, state):
        """One position: ``x_t`` ``(batch, d_model)`` -> ``(y_t, new_state)``."""
        shift_tmix, wkv_state, shift_cmix = state
        if self.input_norm is not None:
            x_t = self.input_norm(x_t)
        h = self.norm1(x_t)
        k, v, r = self._tmix_inputs(h, shift_tmix)
        wkv, wkv_state = wkv4_step(-torch.exp(self.time_decay), self.time_first, k, v, wkv_state)
        x_t = x_t + self.dropout(self.output(r * wkv.to(x_t.dtype)))
        h2 = self.norm2(x_t)
        y_t = x_t + self.dropout(self._cmix(h2, shift_cmix))
        return y_t, (h, wkv_state, h2)
