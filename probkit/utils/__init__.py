"""Shared utilities: array conversion, validation, random state, convergence monitoring."""

from probkit.utils._lazy import lazy_exports

_EXPORTS = {
    "ConvergenceMonitor": "probkit.utils.monitor",
    "as_tensor": "probkit.utils._array",
    "check_finite": "probkit.utils.validation",
    "check_lengths": "probkit.utils.validation",
    "check_nonnegative_integers": "probkit.utils.validation",
    "check_random_state": "probkit.utils.random",
    "check_stochastic": "probkit.utils.validation",
    "resolve_device": "probkit.utils._array",
    "resolve_dtype": "probkit.utils._array",
    "to_numpy": "probkit.utils._array",
    "torch_generator": "probkit.utils.random",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
