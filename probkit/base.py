"""Estimator base: scikit-learn conventions shared by every probkit estimator.

Rules (as in scikit-learn): ``__init__`` only stores its arguments; fitted attributes end
in ``_``; ``random_state`` is resolved inside ``fit``; inputs may be numpy arrays, lists or
torch tensors, outputs are numpy arrays.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions, make_constraint, validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted, validate_data

from probkit.utils._array import resolve_device, resolve_dtype
from probkit.utils.validation import validated_float64_rows

__all__ = ["COMPUTE_CONSTRAINTS", "Interval", "NumberInterval", "ProbkitEstimator", "StrOptions", "constraints_without", "positive_int",
           "positive_real", "non_negative_int", "non_negative_real"]


class NumberInterval(Interval):
    """scikit-learn's ``Interval`` that refuses booleans: ``True`` is no count, width, rate or tolerance.

    Examples
    --------
    >>> from numbers import Integral
    >>> at_least_one = NumberInterval(Integral, 1, None, closed="left")
    >>> at_least_one.is_satisfied_by(3), at_least_one.is_satisfied_by(True), str(at_least_one)
    (True, False, 'an int in the range [1, inf)')
    """

    def is_satisfied_by(self, val):
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


def constraints_without(constraints, *names):
    """A copy of a ``_parameter_constraints`` dict without the entries ``names``: the
    parameters of a parent class that a subclass's ``__init__`` does not take.

    Examples
    --------
    >>> sorted(constraints_without({"tol": [float], "missing": [str]}, "missing"))
    ['tol']
    """
    return {name: constraint for name, constraint in constraints.items() if name not in names}


#: Constraint lists shared by many estimators (scikit-learn's declarative vocabulary; booleans refused).
positive_int = [NumberInterval(Integral, 1, None, closed="left")]
non_negative_int = [NumberInterval(Integral, 0, None, closed="left")]
positive_real = [NumberInterval(Real, 0, None, closed="neither")]
non_negative_real = [NumberInterval(Real, 0, None, closed="left")]
#: ``device`` and ``dtype`` of estimators that compute with torch (resolved by ``_compute_setup``).
COMPUTE_CONSTRAINTS = {"device": [None, str, torch.device], "dtype": [None, str, torch.dtype]}


#: ``_get_param_names`` of each (class, constructor) pair.
_PARAM_NAMES: dict = {}


#: Constraint objects of each ``_parameter_constraints`` dict (keyed by its id; the dict is kept
#: alongside so the id cannot be reused by another object).
_CONSTRAINTS: dict = {}


def _compiled_constraints(parameter_constraints):
    """``{name: [constraint objects]}`` of a ``_parameter_constraints`` dict, built once
    (scikit-learn builds them on every call)."""
    entry = _CONSTRAINTS.get(id(parameter_constraints))
    if entry is None or entry[0] is not parameter_constraints:
        compiled = {name: [make_constraint(c) for c in constraints]
                    for name, constraints in parameter_constraints.items() if constraints != "no_validation"}
        entry = _CONSTRAINTS[id(parameter_constraints)] = (parameter_constraints, compiled)
    return entry[1]


def _tensor_to_numpy(X):
    if isinstance(X, torch.Tensor):
        return X.detach().cpu().numpy()
    return X


def _class_indices(classes, y):
    """Position of each label of ``y`` in the sorted ``classes``, and the mask of labels not among them.

    Examples
    --------
    >>> _class_indices(np.array(["a", "b"]), np.array(["b", "c", "a"]))
    (array([1, 1, 0]), array([False,  True, False]))
    """
    indices = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    return indices, classes[indices] != y


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

    #: scikit-learn's declarative parameter constraints, checked by :meth:`_validate_params`
    #: once per ``fit`` (one vocabulary and one error style for every estimator).
    _parameter_constraints: dict = {}

    @classmethod
    def _get_param_names(cls):
        """scikit-learn's constructor-parameter names, introspected once per class.

        ``get_params`` (called by every ``fit`` through :meth:`_validate_params`, and by
        ``clone`` and ``repr``) would otherwise build an ``inspect.signature`` each time.
        """
        key = (cls, cls.__init__)
        names = _PARAM_NAMES.get(key)
        if names is None:
            names = _PARAM_NAMES[key] = tuple(super()._get_param_names())
        return list(names)

    def _validate_params(self):
        """Check the constructor parameters against ``_parameter_constraints``.

        Raises scikit-learn's ``InvalidParameterError`` (a ``ValueError`` and a
        ``TypeError``) naming the parameter, the estimator and what was expected.
        """
        params = self.get_params(deep=False)
        checks = _compiled_constraints(self._parameter_constraints)
        for name, value in params.items():
            constraints = checks.get(name)
            if constraints is not None and not any(c.is_satisfied_by(value) for c in constraints):
                # scikit-learn's own check, for its error message
                validate_parameter_constraints(self._parameter_constraints, params, caller_name=type(self).__name__)

    #: Instance attributes that :meth:`save` leaves out (caches, optimiser state, ...).
    _io_exclude: tuple = ()

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
        if not allow_nd and (dtype is np.float64 or (isinstance(dtype, tuple) and np.float64 in dtype)):
            # complete float64 rows, the common case, skip validate_data (most of a small fit's checking)
            fast = validated_float64_rows(self, X, reset=reset, ensure_min_samples=ensure_min_samples)
            if fast is not None:
                return fast
        try:
            X = validate_data(
                self,
                X,
                reset=reset,
                dtype=dtype,
                ensure_min_samples=ensure_min_samples,
                ensure_all_finite=ensure_all_finite,
                allow_nd=allow_nd,
            )
        except ValueError as exc:
            hint = self._missing_values_hint()
            if hint and "contains NaN" in str(exc):
                raise ValueError(f"Input X contains NaN. {hint}") from None
            raise
        if isinstance(X, np.ndarray) and not X.flags.writeable:
            # torch warns on read-only arrays (pandas' copy-on-write values, memory maps): copy once here
            X = np.array(X)
        return X

    def _missing_values_hint(self):
        """What to say when ``X`` holds NaN and the estimator refuses it (``None``: scikit-learn's text)."""
        return None

    def _check_fitted(self, attributes=None):
        check_is_fitted(self, attributes)

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Save the estimator (fitted or not) to ``path`` in probkit's model format.

        The file holds the constructor parameters and every fitted attribute as numpy
        arrays and JSON metadata -- no pickle -- and :func:`probkit.load` rebuilds an
        estimator that predicts exactly as this one. See :mod:`probkit.io`.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        str
            The path written.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> import probkit
        >>> X = np.random.RandomState(0).normal(size=(50, 1))
        >>> model = probkit.GaussianHMM(2, random_state=0).fit(X)
        >>> path = model.save(os.path.join(tempfile.mkdtemp(), "model.pk"))
        >>> bool(np.array_equal(probkit.load(path).predict(X), model.predict(X)))
        True
        """
        from probkit.io import save

        return save(self, path)

    def _io_get_state(self):
        """Attributes to save: every instance attribute that is not a constructor parameter."""
        params = set(self.get_params(deep=False))
        return {k: v for k, v in vars(self).items() if k not in params and k not in self._io_exclude}

    def _io_set_state(self, state):
        """Restore the attributes returned by :meth:`_io_get_state` (after ``cls(**params)``)."""
        for name, value in state.items():
            setattr(self, name, value)
