"""Parameter descriptions shared by the sequence operators (see :class:`~probkit.utils._docstrings.DocFragments`).

An operator's docstring names a group on a line of its own, ``%(group)s``; ``$name`` shows
the operator's own default.
"""

from __future__ import annotations

from probkit.utils._docstrings import DocFragments

__all__ = ["OPS_DOCS"]

_RETURN_LAST_STATE = """return_last_state : bool, default $return_last_state
    Also return the state after the last step."""
# every operator resolves backend="auto" with _common.resolve_backend
_BACKEND = """backend : {"auto", "reference", "cpu", "triton"}, default $backend
    ``"auto"`` uses Triton for CUDA tensors when Triton is installed and ``"cpu"``
    otherwise and for float64 inputs; ``"reference"`` is the per-step loop."""

OPS_DOCS = DocFragments(
    parameters={
        # wkv4 and wkv6: their cpu paths take chunks of 16 steps by default
        "wkv_options": [_RETURN_LAST_STATE, _BACKEND, """chunk_size : int, optional
    Steps per chunk of the ``cpu`` path (default 16)."""],
    },
    sections={
        # the description of an operator's returned last state
        "last_state_dtype": "Only with ``return_last_state=True``; float32 (float64 for float64 inputs).",
    },
)
