"""Layers of the neural sequence backbones (pre-norm residual blocks with a recurrent step).

Each layer maps a residual stream ``(batch, L, d_model)`` to one of the same shape; causal
layers also run one position at a time with ``init_state`` / ``step`` (states are tuples of
batch-first tensors).  :func:`probkit.neural.build_backbone` stacks them.
"""

from .base import RMSNorm, SequenceLayer
from .recurrent import GRULayer, LSTMLayer

__all__ = [
    "RMSNorm",
    "SequenceLayer",
    "GRULayer",
    "LSTMLayer",
]
