"""Shared utilities: array conversion, validation, random state, convergence monitoring."""

from probkit.utils._array import (
    as_tensor,
    resolve_device,
    resolve_dtype,
    to_numpy,
)
from probkit.utils.monitor import ConvergenceMonitor
from probkit.utils.random import check_random_state, torch_generator
from probkit.utils.validation import (
    check_finite,
    check_lengths,
    check_nonnegative_integers,
    check_stochastic,
)

__all__ = [
    "ConvergenceMonitor",
    "as_tensor",
    "check_finite",
    "check_lengths",
    "check_nonnegative_integers",
    "check_random_state",
    "check_stochastic",
    "resolve_device",
    "resolve_dtype",
    "to_numpy",
    "torch_generator",
]
