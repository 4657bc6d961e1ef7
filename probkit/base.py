"""Estimator base: scikit-learn conventions shared by every probkit estimator.

Rules (as in scikit-learn): ``__init__`` only stores its arguments; fitted attributes end
in ``_``; ``random_state`` is resolved inside ``fit``; inputs may be numpy arrays, lists or
torch tensors, outputs are numpy arrays.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from probkit.utils._array import resolve_device, resolve_dtype


def _tensor_to_numpy(X):
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    return X


class ProbkitEstimator(BaseEstimator):
    """Mixin with the validation and compute-setup helpers every estimator uses.

    Subclasses that expose ``device`` and ``dtype`` constructor parameters get them
    resolved by :meth:`_compute_setup`; classical models default to CPU float64.

    Examples
    --------
    >>> from probkit import GaussianMixture
    >>> isinstance(GaussianMixture(), ProbkitEstimator)
    True
    """

    _default_dtype = torch.float64

    def _compute_setup(self):
        """Return ``(device, dtype)`` as torch objects from the estimator's parameters."""
        device = resolve_device(getattr(self, "device", None))
        dtype = resolve_dtype(getattr(self, "dtype", None), default=self._default_dtype)
        return device, dtype

    def _validate_X(self, X, *, reset, dtype=(np.float64, np.float32), ensure_min_samples=1,
                    ensure_all_finite=True, allow_nd=False):
        """Validate ``X`` (numpy, list or torch tensor) into a 2-D numpy array.

        ``reset=True`` (in ``fit``) records ``n_features_in_``; ``reset=False`` checks it.
        """
        X = _tensor_to_numpy(X)
        return validate_data(
            self,
            X,
            reset=reset,
            dtype=dtype,
            ensure_min_samples=ensure_min_samples,
            ensure_all_finite=ensure_all_finite,
            allow_nd=allow_nd,
        )

    def _check_fitted(self, attributes=None):
        check_is_fitted(self, attributes)
