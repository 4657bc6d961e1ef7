"""The compiled CPU backend (numba), imported on the first call that needs it.

Importing numba and its kernels costs a noticeable fraction of a second, which
``import probkit`` and the command line should not pay before any HMM runs.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def numba_backend():
    """``probkit.inference._numba_backend``, or ``None`` where numba is not installed.

    Examples
    --------
    >>> numba_backend() is None or hasattr(numba_backend(), "forward_backward")
    True
    """
    try:  # numba is a declared dependency; the torch backend keeps working without it.
        from probkit.inference import _numba_backend
    except ImportError:  # pragma: no cover - exercised only where numba is missing
        return None
    return _numba_backend
