"""BLAS threads of the GLM solvers follow probkit's intra-op thread setting."""

from __future__ import annotations

import functools
from contextlib import nullcontext

from probkit.utils.threads import get_num_threads, torch_threads

__all__ = ["limit_blas_threads"]


def limit_blas_threads(method):
    """Decorator: run a method with BLAS (and torch) limited to :func:`probkit.get_num_threads`'s ``intra_op``.

    The Newton steps are Gram products and Cholesky factorisations in numpy/scipy's BLAS.
    Like the torch work of the other classical estimators they run on one thread by
    default: on cores shared with other work a multi-threaded BLAS can be many times
    slower (``probkit.set_num_threads(intra_op=n)`` raises it; ``None`` leaves BLAS alone).

    Examples
    --------
    >>> from threadpoolctl import threadpool_info
    >>> class Model:
    ...     @limit_blas_threads
    ...     def threads(self):
    ...         return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    >>> Model().threads()
    {1}
    """

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        n = get_num_threads()["intra_op"]
        if n is None:
            limits = nullcontext()
        else:
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(n, user_api="blas")
        with torch_threads(n), limits:
            return method(*args, **kwargs)

    return wrapper
