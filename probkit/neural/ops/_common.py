"""Shared argument checking and backend selection for :mod:`probkit.neural.ops`."""

from __future__ import annotations

import os

import torch

BACKENDS = ("auto", "reference", "cpu", "triton")


def check_tensor(x, name, ndim=None, allow_none=False):
    """Check that ``x`` is a floating-point tensor (of ``ndim`` dimensions) and return it."""
    if x is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a torch.Tensor, got None")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(x.shape)}")
    return x


def check_shape(x, name, shape, what=""):
    """Raise ``ValueError`` naming ``name`` when ``x.shape`` differs from ``shape``."""
    if x is not None and tuple(x.shape) != tuple(shape):
        extra = f" ({what})" if what else ""
        raise ValueError(f"{name} must have shape {tuple(shape)}{extra}, got {tuple(x.shape)}")


def check_same_device(ref_name, ref, **tensors):
    """Raise ``ValueError`` when a tensor lives on another device than ``ref``."""
    for name, t in tensors.items():
        if t is not None and t.device != ref.device:
            raise ValueError(
                f"{name} is on device {t.device} but {ref_name} is on {ref.device}; "
                "move all inputs to one device"
            )


def check_nonpositive(x, name, hint):
    """Raise ``ValueError`` when ``x`` holds a positive (or NaN) entry.

    The answer is read back on the host: for tensors on an accelerator that is a
    synchronisation per call (per layer, per generated step), so there the check runs only
    with ``PROBKIT_DEBUG_CHECKS=1``. The layers build these tensors as ``-exp(...)``,
    non-positive by construction.
    """
    if x.device.type != "cpu" and os.environ.get("PROBKIT_DEBUG_CHECKS", "0") != "1":
        return
    if not bool((x <= 0).all()):
        raise ValueError(f"{name} must be <= 0 everywhere ({hint}); got max {float(x.max())}")


def compute_dtype(*tensors):
    """float64 when any input is float64, else float32 (bf16/fp16 are computed in fp32)."""
    for t in tensors:
        if t is not None and t.dtype == torch.float64:
            return torch.float64
    return torch.float32


def save_scan_context(ctx, initial_state, needs_grad, *saved):
    """Keep on an autograd ``ctx`` what the backward of a scan with an optional ``initial_state`` needs."""
    ctx.has_h0 = initial_state is not None
    ctx.h0_dtype = None if initial_state is None else initial_state.dtype
    if needs_grad:
        ctx.save_for_backward(*saved)
    ctx.set_materialize_grads(False)


def restore_scan_context(ctx, gout, h0_index=8, out_like=0):
    """The tensors :func:`save_scan_context` kept, ``gout`` (zeros shaped like saved tensor ``out_like``
    where the output got no gradient) and whether the initial state (input ``h0_index``) wants one."""
    saved = ctx.saved_tensors
    if gout is None:
        gout = torch.zeros_like(saved[out_like])
    return saved, gout, ctx.has_h0 and ctx.needs_input_grad[h0_index]


def grad_as(g, like):
    """Gradient ``g`` in the dtype of its input ``like``; None without a gradient or without that input."""
    return None if (g is None or like is None) else g.to(like.dtype)


def triton_status(device):
    """Return ``(usable, reason)`` for running Triton kernels on tensors on ``device``."""
    try:
        import triton  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the installation
        return False, "Triton is not installed (pip install triton, Linux x86-64 only)"
    if device.type == "cuda":
        return True, ""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return True, ""
    return False, (
        f"the Triton kernels need CUDA tensors (got tensors on {device}); no GPU is in use. "
        "Use backend='cpu' (or 'auto', which falls back to it), or set TRITON_INTERPRET=1 "
        "before importing probkit to run the kernels in Triton's (slow) interpreter"
    )


def resolve_backend(backend, device, op, dtype=None):
    """Map ``backend`` to one of ``'reference'``, ``'cpu'``, ``'triton'`` for tensors on ``device``.

    ``"auto"`` is Triton for CUDA tensors (when Triton is installed) and the torch path
    ``"cpu"`` otherwise, and always for ``dtype`` float64: the Triton kernels compute in
    16- and 32-bit floats.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if dtype == torch.float64:
            return "cpu"
        if device.type == "cuda" and triton_status(device)[0]:
            return "triton"
        return "cpu"
    if backend == "triton":
        ok, why = triton_status(device)
        if not ok:
            raise RuntimeError(f"{op}: backend='triton' is unavailable: {why}")
    return backend
