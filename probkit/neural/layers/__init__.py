"""Layers of the neural sequence backbones (pre-norm residual blocks with a recurrent step).

Each layer maps a residual stream ``(batch, L, d_model)`` to one of the same shape; causal
layers also run one position at a time with ``init_state`` / ``step`` (states are tuples of
batch-first tensors).  :func:`probkit.neural.build_backbone` stacks them.
"""

from .base import RMSNorm, SequenceLayer, make_norm
from .gated_cnn import GatedCNNLayer
from .mamba import MambaLayer
from .mamba2 import (Mamba2Layer, hf_mamba2_layer_options, load_hf_mamba2_block_state,
                     load_hf_mamba2_model_state)
from .recurrent import GRULayer, LSTMLayer
from .rwkv import RWKV6Layer
from .rwkv4 import RWKV4Layer
from .rwkv7 import RWKV7Layer
from .s4 import S4, S4Layer
from .s4d import S4D, S4DLayer
from .transformer import TransformerLayer

__all__ = [
    "RMSNorm",
    "SequenceLayer",
    "make_norm",
    "MambaLayer",
    "Mamba2Layer",
    "hf_mamba2_layer_options",
    "load_hf_mamba2_block_state",
    "load_hf_mamba2_model_state",
    "RWKV4Layer",
    "RWKV6Layer",
    "RWKV7Layer",
    "GatedCNNLayer",
    "TransformerLayer",
    "S4",
    "S4D",
    "S4DLayer",
    "S4Layer",
    "GRULayer",
    "LSTMLayer",
]
