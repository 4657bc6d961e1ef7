"""How the classical estimators use CPU threads.

Two kinds of parallelism, two settings:

* **intra-op threads** of torch (OpenMP) for the E-step's elementwise work and matrix
  products. The classical estimators run these single-threaded by default: their
  operations are small and memory-bound, and OpenMP's barrier between threads collapses
  when the cores are shared with other work. Measured on the 2-core development machine
  while other jobs ran: a diagonal GaussianMixture fit (N=200,000, D=8, K=16, 20
  iterations) took 40.4 s with 2 torch threads and 1.1 s with 1 (full covariance:
  3.5 s and 2.4 s). On the same machine when idle, 2 threads gained little for the
  diagonal fit (0.64 s vs 0.74 s) and 1.7x for the full one (1.48 s vs 2.57 s). A
  slowdown of 1.7x at worst against one of 37x at worst: one thread is the default;
  raise it with :func:`set_num_threads` on a dedicated machine.
* **worker threads** that run independent blocks of sequences through the compiled
  HMM kernels. They release the GIL and share nothing, so they stay efficient under
  load; by default one per CPU core.

The neural estimators use the intra-op setting too during ``fit`` and ``predict`` on the
CPU (a GRU step measured 2 ms with one thread and 195 ms with two on the busy machine).
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager

import torch

from probkit.utils.validation import check_int

__all__ = ["get_num_threads", "set_num_threads", "limit_torch_threads", "torch_threads", "worker_threads"]

_settings = {"intra_op": 1, "workers": None}


def set_num_threads(intra_op=1, workers=None):
    """Set the threads the classical estimators use on the CPU.

    Parameters
    ----------
    intra_op : int or None, default=1
        torch intra-op threads during fits and predictions; ``None`` leaves torch's own
        setting (``torch.get_num_threads()``) untouched.
    workers : int or None, default=None
        Threads running blocks of sequences in the HMM kernels; ``None`` = one per core.

    Examples
    --------
    >>> set_num_threads(intra_op=1, workers=2)
    >>> get_num_threads()
    {'intra_op': 1, 'workers': 2}
    >>> set_num_threads()
    """
    for name, value in (("intra_op", intra_op), ("workers", workers)):
        check_int(value, name, allow_none=True)
    _settings["intra_op"] = intra_op
    _settings["workers"] = workers


def get_num_threads():
    """The current settings, as a dict ``{"intra_op": ..., "workers": ...}``."""
    return dict(_settings)


_CPU_COUNT = os.cpu_count() or 1  # read once: os.cpu_count() costs tens of microseconds per call


def worker_threads():
    """Number of worker threads for independent blocks of sequences."""
    return _settings["workers"] or _CPU_COUNT


@contextmanager
def torch_threads(n):
    """Run the block with ``torch.set_num_threads(n)``, then restore the previous count.

    ``None`` changes nothing.

    Examples
    --------
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if n is None or torch.get_num_threads() == n:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def limit_torch_threads(method):
    """Decorator: run an estimator method with the configured intra-op thread count.

    Examples
    --------
    >>> class Model:
    ...     @limit_torch_threads
    ...     def threads(self):
    ...         return torch.get_num_threads()
    >>> Model().threads()
    1
    """

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with torch_threads(_settings["intra_op"]):
            return method(*args, **kwargs)

    return wrapper
