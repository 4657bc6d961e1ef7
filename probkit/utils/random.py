"""Random state handling: one ``random_state`` drives numpy, torch and Pyro.

The seeding rule, used by every estimator and function of probkit:

* numpy work draws from ``check_random_state(random_state)`` (scikit-learn's rule);
* a library that needs an integer seed (a ``torch.Generator``, Pyro's global generators,
  a network's initialisation) gets :func:`seed_from`: an int is used as it is; a
  ``numpy.random.RandomState``/``Generator`` or a ``torch.Generator`` gives one draw;
  ``None`` draws from numpy's global generator (so ``np.random.seed`` makes it
  reproducible, as in scikit-learn).
"""

from __future__ import annotations

import contextlib
import numbers
import random

import numpy as np
import torch
from sklearn.utils import check_random_state as _sk_check_random_state

__all__ = ["check_random_state", "forked_rng", "seed_from", "torch_generator"]

_SEED_BOUND = 2**31 - 1


def check_random_state(random_state):
    """Return a ``numpy.random.RandomState`` for ``None``, an int or a RandomState.

    Examples
    --------
    >>> check_random_state(0).randint(10)
    5
    """
    return _sk_check_random_state(random_state)


def seed_from(random_state):
    """The integer seed that ``random_state`` stands for (the module's seeding rule).

    Parameters
    ----------
    random_state : None, int, numpy.random.RandomState, numpy.random.Generator or torch.Generator

    Returns
    -------
    int
        Non-negative.

    Examples
    --------
    >>> seed_from(7)
    7
    >>> seed_from(np.random.RandomState(0)) == seed_from(np.random.RandomState(0))
    True
    """
    if isinstance(random_state, (numbers.Integral, np.integer)) and not isinstance(random_state, bool):
        seed = int(random_state)
        if seed < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {seed}")
        return seed
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, _SEED_BOUND))
    if isinstance(random_state, torch.Generator):
        return int(torch.randint(0, _SEED_BOUND, (1,), generator=random_state, device=random_state.device).item())
    if random_state is None or isinstance(random_state, np.random.RandomState):
        return int(check_random_state(random_state).randint(0, _SEED_BOUND))
    raise ValueError("random_state must be None, a non-negative int, a numpy RandomState/Generator or a "
                     f"torch.Generator, got {random_state!r}")


def torch_generator(random_state, device=None):
    """A ``torch.Generator`` seeded with :func:`seed_from` of ``random_state``.

    Parameters
    ----------
    random_state : None, int, numpy.random.RandomState or torch.Generator
        A ``torch.Generator`` is returned unchanged.
    device : torch.device or str, optional
        Device the generator is created on (CUDA generators are needed for CUDA sampling).

    Returns
    -------
    torch.Generator

    Examples
    --------
    >>> g = torch_generator(0)
    >>> torch.rand(1, generator=g).item() == torch.rand(1, generator=torch_generator(0)).item()
    True
    """
    if isinstance(random_state, torch.Generator):
        return random_state
    gen = torch.Generator(device=torch.device(device) if device is not None else "cpu")
    gen.manual_seed(seed_from(random_state))
    return gen


@contextlib.contextmanager
def forked_rng(random_state, devices=()):
    """Seed Python's, numpy's and torch's global generators inside the block, then restore them.

    For code that can only use the global generators (Pyro, ``torch.nn`` initialisers):
    the block is reproducible and the caller's random streams are left untouched.

    Parameters
    ----------
    random_state : None, int, RandomState or Generator
        Turned into a seed by :func:`seed_from`.
    devices : sequence of torch.device, default=()
        CUDA devices whose generators are forked and seeded too.

    Yields
    ------
    int
        The seed used.

    Examples
    --------
    >>> before = torch.get_rng_state()
    >>> with forked_rng(0):
    ...     a = torch.rand(1)
    >>> with forked_rng(0):
    ...     b = torch.rand(1)
    >>> bool(a == b), bool(torch.equal(before, torch.get_rng_state()))
    (True, True)
    """
    seed = seed_from(random_state)
    cuda = [torch.device(d) for d in devices if torch.device(d).type == "cuda"]
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=cuda):
        try:
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            yield seed
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
