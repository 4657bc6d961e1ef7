"""Conversion between the numpy-facing API and the torch compute core."""

from __future__ import annotations

import numpy as np
import torch

_DTYPE_NAMES = {
    "float64": torch.float64,
    "double": torch.float64,
    "float32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "half": torch.float16,
}


def resolve_dtype(dtype, default=torch.float64):
    """Turn a dtype given as a string, numpy dtype or torch dtype into a torch dtype.

    Parameters
    ----------
    dtype : None, str, numpy.dtype or torch.dtype
        ``None`` selects ``default``.
    default : torch.dtype, default=torch.float64

    Returns
    -------
    torch.dtype

    Examples
    --------
    >>> resolve_dtype("float32")
    torch.float32
    >>> resolve_dtype(None)
    torch.float64
    """
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
        return dtype
    if isinstance(dtype, str):
        if dtype not in _DTYPE_NAMES:
            raise ValueError(
                f"dtype must be one of {sorted(_DTYPE_NAMES)} or a torch dtype, got {dtype!r}"
            )
        return _DTYPE_NAMES[dtype]
    try:
        np_dtype = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be a str, numpy dtype or torch dtype, got {dtype!r}") from exc
    if np_dtype == np.float64:
        return torch.float64
    if np_dtype == np.float32:
        return torch.float32
    if np_dtype == np.float16:
        return torch.float16
    raise TypeError(f"dtype must be a floating-point dtype, got {np_dtype}")


def resolve_device(device):
    """Turn ``None``, a string or a ``torch.device`` into a ``torch.device``.

    ``None`` and ``"cpu"`` mean the CPU; ``"auto"`` picks CUDA when available.

    Examples
    --------
    >>> resolve_device(None)
    device(type='cpu')
    """
    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda', 'auto' or a torch.device, got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available")
    return dev


def as_tensor(X, dtype=None, device=None):
    """Convert array-like input to a torch tensor on ``device`` with ``dtype``.

    Tensors that already match are returned without a copy.

    Examples
    --------
    >>> as_tensor([[1, 2]], dtype=torch.float64).dtype
    torch.float64
    """
    if isinstance(X, torch.Tensor):
        t = X
    else:
        t = torch.as_tensor(np.asarray(X))
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    if device is not None and t.device != torch.device(device):
        t = t.to(device)
    return t


def to_numpy(t):
    """Return a numpy array for a tensor (detached, on the CPU) or array-like.

    Examples
    --------
    >>> to_numpy(torch.ones(2))
    array([1., 1.], dtype=float32)
    """
    if isinstance(t, torch.Tensor):
        t = t.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.cpu().numpy()
    return np.asarray(t)


def is_tensor(X):
    """Whether ``X`` is a torch tensor (used to return outputs in the caller's type)."""
    return isinstance(X, torch.Tensor)
