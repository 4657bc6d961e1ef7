"""Parameter descriptions shared by the sequence layers (see :class:`~probkit.utils._docstrings.DocFragments`).

A layer's docstring names a group on a line of its own, ``%(group)s``; ``$name`` shows the
layer's own default. The ``<op>_backend`` groups name the operator a layer runs; every
operator resolves ``backend="auto"`` the same way (``resolve_backend`` of
:mod:`probkit.neural.ops`).
"""

from __future__ import annotations

from probkit.utils._docstrings import DocFragments

__all__ = ["LAYER_DOCS"]

_BACKEND = """backend : {{"auto", "cpu", "reference", "triton"}}, default $backend
    Backend of :func:`~probkit.neural.ops.{op}` (``"auto"``: Triton on
    CUDA, the ``"cpu"`` path otherwise and for float64)."""

_D_STATE = """d_state : int, default $d_state
    State size ``N`` per inner channel."""
_EXPAND = """expand : int, default $expand
    Inner width ``E = expand * d_model`` (the channels of the state space model)."""

LAYER_DOCS = DocFragments(parameters={
    "d_model": ["""d_model : int
    Width of the residual stream."""],
    # the state space layers (Mamba, Mamba-2, S4): E channels of N states each
    "ssm_sizes": [_D_STATE, _EXPAND],
    "expand": [_EXPAND],
    # a layer of one block (x + dropout(block(norm(x)))) or of two sublayers (RWKV's time and channel mixing)
    "block_dropout": ["""dropout : float, default $dropout
    Dropout on the block's output before the residual addition."""],
    "sublayer_dropout": ["""dropout : float, default $dropout
    Dropout on each sublayer's output before its residual addition."""],
    **{f"{op}_backend": [_BACKEND.format(op=op)] for op in ("selective_scan", "ssd", "wkv4", "wkv6", "rwkv7")},
})
