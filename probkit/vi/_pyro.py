"""Isolation of Pyro's global state: the parameter store and the random number generators.

Pyro keeps one process-wide parameter store (``pyro.get_param_store()``), and
``pyro.set_rng_seed`` reseeds the global generators of ``random``, numpy and torch. An
estimator that used them directly would share parameters with every other Pyro model in
the process (two fits would overwrite each other's ``"loc"``) and would disturb the
random streams of unrelated code. The context manager here prevents the first:

* :class:`ParamScope` -- an estimator-owned parameter store. Entering it saves the
  contents of the global store, empties it and loads the scope's own parameters;
  leaving it copies the (possibly updated) parameters back into the scope and restores
  what was there before. Pyro's modules hold a reference to the global store object
  (``pyro.nn.module`` imports it by name), so the store's *contents* are swapped, not
  the object. A process-wide re-entrant lock serialises scopes, so fits running in
  several threads of one process take turns instead of mixing their parameters.

Pyro draws its randomness from the global generators of ``random``, numpy and torch;
:func:`probkit.utils.random.forked_rng` seeds them for the duration of a fit and restores
them afterwards, so a fit with ``random_state=0`` is reproducible and leaves the caller's
random streams untouched.
"""

from __future__ import annotations

import threading

import numpy as np
import pyro
import torch

__all__ = ["ParamScope", "model_args", "pyro_lock"]

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


def model_args(data):
    """Positional and keyword arguments of a Pyro model from ``data``; numpy arrays become tensors.

    ``None`` gives no arguments, a dict keyword arguments, a tuple or list positional ones,
    anything else one positional argument.

    Examples
    --------
    >>> import numpy as np
    >>> model_args({"x": np.zeros(2)})
    ((), {'x': tensor([0., 0.], dtype=torch.float64)})
    """
    def conv(v):
        if isinstance(v, np.ndarray):
            return torch.as_tensor(np.ascontiguousarray(v))
        return v

    if data is None:
        return (), {}
    if isinstance(data, dict):
        return (), {k: conv(v) for k, v in data.items()}
    if isinstance(data, (tuple, list)):
        return tuple(conv(v) for v in data), {}
    return (conv(data),), {}
