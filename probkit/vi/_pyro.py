"""Isolation of Pyro's global state: the parameter store and the random number generators.

Pyro keeps one process-wide parameter store (``pyro.get_param_store()``), and
``pyro.set_rng_seed`` reseeds the global generators of ``random``, numpy and torch. An
estimator that used them directly would share parameters with every other Pyro model in
the process (two fits would overwrite each other's ``"loc"``) and would disturb the
random streams of unrelated code. The two context managers here prevent both:

* :class:`ParamScope` -- an estimator-owned parameter store. Entering it saves the
  contents of the global store, empties it and loads the scope's own parameters;
  leaving it copies the (possibly updated) parameters back into the scope and restores
  what was there before. Pyro's modules hold a reference to the global store object
  (``pyro.nn.module`` imports it by name), so the store's *contents* are swapped, not
  the object. A process-wide re-entrant lock serialises scopes, so fits running in
  several threads of one process take turns instead of mixing their parameters.
* :func:`forked_rng` -- seeds ``random``, numpy and torch from an integer for the
  duration of a block and restores their previous states afterwards, so a fit with
  ``random_state=0`` is reproducible and leaves the caller's random streams untouched.
"""

from __future__ import annotations

import contextlib
import random
import threading

import numpy as np
import pyro
import torch

__all__ = ["ParamScope", "forked_rng", "pyro_lock", "torch_threads"]

#: Serialises every use of Pyro's global parameter store by probkit (re-entrant: a fit
#: may call a helper that enters a scope again).
pyro_lock = threading.RLock()


def _detached_state(state):
    return {
        "params": {k: v.detach().clone() for k, v in state["params"].items()},
        "constraints": dict(state["constraints"]),
    }


class ParamScope:
    """A private Pyro parameter store, entered with ``with``.

    Parameters
    ----------
    state : dict, optional
        A state from :meth:`get_state` (or Pyro's ``ParamStoreDict.get_state``) to start
        from; empty by default.

    Notes
    -----
    The scope stores *unconstrained* parameter tensors and their constraints, exactly as
    Pyro does; :meth:`constrained` gives the constrained values. A scope pickles (its
    tensors are detached when the block exits), so a fitted estimator holding one can be
    saved and its parameters re-entered later.

    Examples
    --------
    >>> import pyro, torch
    >>> a, b = ParamScope(), ParamScope()
    >>> with a:
    ...     _ = pyro.param("loc", torch.tensor(1.0))
    >>> with b:
    ...     _ = pyro.param("loc", torch.tensor(2.0))
    >>> float(a.constrained()["loc"]), float(b.constrained()["loc"])
    (1.0, 2.0)
    >>> "loc" in pyro.get_param_store()   # the global store was left as it was
    False
    """

    def __init__(self, state=None):
        self._state = {"params": {}, "constraints": {}} if state is None else _detached_state(state)
        self._saved = []

    def __enter__(self):
        pyro_lock.acquire()
        try:
            store = pyro.get_param_store()
            self._saved.append(store.get_state())
            store.clear()
            store.set_state({"params": dict(self._state["params"]), "constraints": dict(self._state["constraints"])})
        except BaseException:
            pyro_lock.release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        store = pyro.get_param_store()
        try:
            if exc_type is None:
                self._state = _detached_state(store.get_state())
        finally:
            store.clear()
            store.set_state(self._saved.pop())
            pyro_lock.release()
        return False

    def __getstate__(self):
        return {"_state": _detached_state(self._state), "_saved": []}

    def get_state(self):
        """A detached copy of the stored state (``{"params": ..., "constraints": ...}``)."""
        return _detached_state(self._state)

    def names(self):
        """Names of the stored parameters."""
        return list(self._state["params"])

    def constrained(self):
        """The parameters in their constrained space, as detached tensors keyed by name."""
        out = {}
        for name, unconstrained in self._state["params"].items():
            constraint = self._state["constraints"].get(name, torch.distributions.constraints.real)
            value = torch.distributions.transform_to(constraint)(unconstrained.detach())
            out[name] = value.detach()
        return out

    def __len__(self):
        return len(self._state["params"])

    def __repr__(self):
        return f"ParamScope({self.names()})"


@contextlib.contextmanager
def forked_rng(seed):
    """Seed ``random``, numpy and torch (CPU) with ``seed`` inside the block, then restore them.

    Parameters
    ----------
    seed : int or None
        ``None`` leaves the generators untouched (nothing is restored either).

    Examples
    --------
    >>> import torch
    >>> before = torch.get_rng_state()
    >>> with forked_rng(0):
    ...     a = torch.rand(1)
    >>> with forked_rng(0):
    ...     b = torch.rand(1)
    >>> bool(a == b), bool(torch.equal(before, torch.get_rng_state()))
    (True, True)
    """
    if seed is None:
        yield
        return
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    try:
        pyro.set_rng_seed(int(seed))
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


@contextlib.contextmanager
def torch_threads(n):
    """Run the block with ``torch.set_num_threads(n)`` and restore the previous count afterwards.

    Pyro's steps are made of many small tensor operations, for which torch's intra-op
    thread pool costs more than it gains: an SVI step of a small mixture took 0.35 s with
    2 threads and 0.03 s with 1 on a loaded 2-core machine. ``None`` changes nothing.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(int(n))
        yield
    finally:
        torch.set_num_threads(previous)
