"""Random state handling: one ``random_state`` drives numpy and torch generators."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import check_random_state as _sk_check_random_state


def check_random_state(random_state):
    """Return a ``numpy.random.RandomState`` for ``None``, an int or a RandomState.

    Examples
    --------
    >>> check_random_state(0).randint(10)
    5
    """
    return _sk_check_random_state(random_state)


def torch_generator(random_state, device=None):
    """A ``torch.Generator`` seeded reproducibly from ``random_state``.

    Parameters
    ----------
    random_state : None, int, numpy.random.RandomState or torch.Generator
        A ``torch.Generator`` is returned unchanged. Otherwise a seed is drawn from the
        numpy random state, so one ``random_state`` drives both libraries.
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
    rng = check_random_state(random_state)
    seed = int(rng.randint(0, np.iinfo(np.int32).max))
    gen = torch.Generator(device=torch.device(device) if device is not None else "cpu")
    gen.manual_seed(seed)
    return gen


def draw_seed(random_state):
    """Draw a non-negative int32 seed from ``random_state`` (for libraries with global seeds)."""
    rng = check_random_state(random_state)
    return int(rng.randint(0, np.iinfo(np.int32).max))
