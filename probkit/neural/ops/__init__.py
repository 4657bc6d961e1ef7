"""Sequence-model operators: selective scan (Mamba), SSD (Mamba-2), WKV (RWKV-4/6), RWKV-7, causal conv.

Every sequence operator has a plain-loop reference (``backend="reference"``), a chunked
torch path (``backend="cpu"``, runs on any device) and Triton kernels
(``backend="triton"``); the default ``backend="auto"`` picks Triton for CUDA tensors and
the torch path otherwise.  Each also has a one-step recurrent form for inference.
Triton is imported only when a Triton kernel is requested.
"""

from .conv import causal_conv1d, causal_conv1d_update
from .rwkv7 import rwkv7, rwkv7_step
from .selective_scan import selective_scan, selective_state_update
from .ssd import ssd, ssd_state_update
from .wkv import wkv4, wkv4_step, wkv6, wkv6_step

__all__ = [
    "selective_scan",
    "selective_state_update",
    "ssd",
    "ssd_state_update",
    "wkv4",
    "wkv4_step",
    "wkv6",
    "wkv6_step",
    "rwkv7",
    "rwkv7_step",
    "causal_conv1d",
    "causal_conv1d_update",
]
