"""Shared utilities: array conversion, validation, random state, convergence monitoring."""

from probkit.utils._lazy import lazy_package

__getattr__, __dir__, __all__ = lazy_package(
    __name__,
    {
        ".monitor": ["ConvergenceMonitor"],
        "._array": ["as_tensor", "resolve_device", "resolve_dtype", "to_numpy"],
        ".validation": [
            "check_finite",
            "check_lengths",
            "check_nonnegative_integers",
            "check_stochastic",
        ],
        ".random": ["check_random_state", "torch_generator"],
    },
)
