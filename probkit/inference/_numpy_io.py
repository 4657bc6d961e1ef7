"""numpy in, numpy out for the public kernels; tensors in, tensors out.

The kernels compute in torch. A caller that passed only numpy arrays (or lists) gets
numpy arrays back, as from every other probkit function; a caller that passed a tensor
gets tensors (on its device, with autograd where the kernel supports it).
"""

from __future__ import annotations

import functools
import inspect

import torch

__all__ = ["numpy_out_for_numpy_in"]


def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # NamedTuple results
        return type(value)(*(_to_numpy(v) for v in value))
    if isinstance(value, tuple):
        return tuple(_to_numpy(v) for v in value)
    return value


def numpy_out_for_numpy_in(*array_args):
    """Decorate a kernel whose arguments ``array_args`` are its arrays: no tensor among them -> numpy results.

    Examples
    --------
    >>> import numpy as np
    >>> @numpy_out_for_numpy_in("x")
    ... def double(x):
    ...     return torch.as_tensor(x) * 2
    >>> double(np.array([1, 2])), double(torch.tensor([1, 2]))
    (array([2, 4]), tensor([2, 4]))
    """
    def decorate(func):
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            result = func(*args, **kwargs)
            bound = signature.bind_partial(*args, **kwargs)
            if any(isinstance(bound.arguments.get(name), torch.Tensor) for name in array_args):
                return result
            return _to_numpy(result)

        return wrapper

    return decorate
