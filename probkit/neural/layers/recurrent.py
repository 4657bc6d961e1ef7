"""GRU and LSTM baseline layers: one ``torch.nn.GRU``/``LSTM`` layer in a pre-norm residual block.

``y = x + dropout(proj(rnn(norm(x))))`` with ``norm`` an :class:`RMSNorm`, ``rnn`` a one-layer
batch-first ``nn.GRU``/``nn.LSTM`` from ``d_model`` to ``hidden_size`` and ``proj`` a linear map
back to ``d_model``.  Parameters per layer (``d = d_model``, ``h = hidden_size``):

* GRU:  ``3 (d h + h h + 2 h) + h d + d + d``  (= ``7 d^2 + 8 d`` for ``h = d``);
* LSTM: ``4 (d h + h h + 2 h) + h d + d + d``  (= ``9 d^2 + 10 d`` for ``h = d``).

The recurrent weights keep torch's default initialisation (uniform in
``[-1/sqrt(h), 1/sqrt(h)]``).
"""

from __future__ import annotations

import torch
from torch import nn

from probkit.utils._docstrings import DocFragments

from probkit.utils.validation import check_int

from ._docs import LAYER_DOCS
from .base import RMSNorm, SequenceLayer, check_dropout

__all__ = ["GRULayer", "LSTMLayer"]


# the layers' shared parameters, and the state size of each recurrent layer, naming its torch module
_DOCS = DocFragments(parameters={
    **LAYER_DOCS.parameters,
    **{f"{rnn.lower()}_hidden_size": [f"""hidden_size : int, optional
    {rnn} state size (default ``d_model``)."""] for rnn in ("GRU", "LSTM")},
})


class _RNNLayer(SequenceLayer):
    rnn_class = None
    n_states = 1  # tensors of the recurrent state: (h,) or (h, c)

    def __init__(self, d_model, hidden_size=None, dropout=0.0):
        super().__init__(check_int(d_model, "d_model"))
        hidden_size = self.d_model if hidden_size is None else hidden_size
        self.hidden_size = check_int(hidden_size, "hidden_size")
        self.norm = RMSNorm(self.d_model)
        self.rnn = self.rnn_class(self.d_model, self.hidden_size, batch_first=True)
        self.proj = nn.Linear(self.hidden_size, self.d_model)
        self.dropout = nn.Dropout(check_dropout(dropout))

    def forward(self, x, lengths=None, return_state=False):
        h, last = self.rnn(self.norm(x))
        y = x + self.dropout(self.proj(h))
        if not return_state:
            return y
        last = last if isinstance(last, tuple) else (last,)
        return y, tuple(s[0] for s in last)

    def init_state(self, batch_size, device=None, dtype=None):
        """Zero states, each of shape ``(batch_size, hidden_size)``: ``(h,)`` or ``(h, c)``."""
        device, dtype = self._device_dtype(device, dtype)
        return tuple(torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
                     for _ in range(self.n_states))

    def step(self, x_t, state):
        """One position: ``x_t`` ``(batch, d_model)`` -> ``(y_t, new_state)``."""
        layered = tuple(s.unsqueeze(0).contiguous() for s in state)
        out, new = self.rnn(self.norm(x_t).unsqueeze(1), layered if self.n_states > 1 else layered[0])
        new = new if isinstance(new, tuple) else (new,)
        return x_t + self.dropout(self.proj(out[:, 0])), tuple(s[0] for s in new)


@_DOCS.fill
class GRULayer(_RNNLayer):
    """Pre-norm residual block around a one-layer ``torch.nn.GRU``.

    Parameters
    ----------
    %(d_model)s
    %(gru_hidden_size)s
    %(block_dropout)s

    Notes
    -----
    State: ``(h,)`` with ``h`` of shape ``(batch, hidden_size)``.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import GRULayer
    >>> layer = GRULayer(8, hidden_size=6)
    >>> x = torch.randn(2, 5, 8)
    >>> layer(x).shape
    torch.Size([2, 5, 8])
    >>> y_t, state = layer.step(x[:, 0], layer.init_state(2))
    >>> y_t.shape, state[0].shape
    (torch.Size([2, 8]), torch.Size([2, 6]))
    """

    rnn_class = nn.GRU


@_DOCS.fill
class LSTMLayer(_RNNLayer):
    """Pre-norm residual block around a one-layer ``torch.nn.LSTM``.

    Parameters
    ----------
    %(d_model)s
    %(lstm_hidden_size)s
    %(block_dropout)s

    Notes
    -----
    State: ``(h, c)``, each of shape ``(batch, hidden_size)``.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import LSTMLayer
    >>> layer = LSTMLayer(8)
    >>> h, c = layer.init_state(3)
    >>> y_t, (h, c) = layer.step(torch.randn(3, 8), (h, c))
    >>> y_t.shape, c.shape
    (torch.Size([3, 8]), torch.Size([3, 8]))
    """

    rnn_class = nn.LSTM
    n_states = 2
