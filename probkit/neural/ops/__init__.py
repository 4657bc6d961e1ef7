"""Sequence-model operators: selective scan (Mamba), WKV (RWKV-4/6), causal depthwise conv.

Every operator has a plain-loop reference (``backend="reference"``), a chunked torch path
(``backend="cpu"``, runs on any device) and Triton kernels (``backend="triton"``); the
default ``backend="auto"`` picks Triton for CUDA tensors and the torch path otherwise.
Each sequence op also has a one-step recurrent form for inference.
"""

from .selective_scan import selective_scan, selective_state_update

__all__ = ["selective_scan", "selective_state_update"]
