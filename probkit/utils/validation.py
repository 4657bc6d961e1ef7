"""Input validation with errors that name the argument and say what was expected."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from probkit.utils._array import to_numpy


def check_finite(x, name="X"):
    """Raise ``ValueError`` if ``x`` holds NaN or infinite values.

    Examples
    --------
    >>> check_finite(np.array([1.0, np.nan]), "X")
    Traceback (most recent call last):
    ...
    ValueError: X contains NaN or infinity; remove or impute those values first
    """
    if isinstance(x, torch.Tensor):
        bad = not bool(torch.isfinite(x).all())
    else:
        arr = np.asarray(x)
        bad = arr.dtype.kind in "fc" and not np.isfinite(arr).all()
    if bad:
        raise ValueError(f"{name} contains NaN or infinity; remove or impute those values first")
    return x


def validated_float64_rows(estimator, X, *, reset, ensure_min_samples=1):
    """``X`` itself when it is a complete float64 matrix that scikit-learn's
    ``validate_data`` would return unchanged, with ``n_features_in_`` set or checked as
    it would; ``None`` for anything else (then run ``validate_data``, which also words
    the errors).

    The fast path of estimators' input validation for the common case (a writeable,
    C-contiguous, finite float64 ndarray of rows), whose cost dominates small fits.

    Examples
    --------
    >>> from sklearn.base import BaseEstimator
    >>> est = BaseEstimator()
    >>> X = np.zeros((3, 2))
    >>> validated_float64_rows(est, X, reset=True) is X, est.n_features_in_
    (True, 2)
    >>> validated_float64_rows(est, np.zeros((3, 4)), reset=False) is None  # validate_data raises
    True
    >>> validated_float64_rows(est, np.array([[np.nan, 0.0]]), reset=True) is None
    True
    """
    if (type(X) is not np.ndarray or X.ndim != 2 or X.dtype != np.float64 or not X.flags.c_contiguous
            or not X.flags.writeable or X.shape[0] < max(ensure_min_samples, 1) or X.shape[1] < 1):
        return None
    if hasattr(estimator, "feature_names_in_"):  # names to drop, or a warning to give: validate_data's
        return None
    if not reset and getattr(estimator, "n_features_in_", None) != X.shape[1]:
        return None
    # a finite sum rules out NaN and infinities (an overflowing sum goes the general way)
    if not np.isfinite(np.add.reduce(X, axis=None)):
        return None
    if reset:
        estimator.n_features_in_ = X.shape[1]
    return X


def check_lengths(lengths, n_samples=None, name="lengths", *, n_sequences=None, max_length=None, allow_empty=False):
    """Validate sequence lengths: the one checker every sequence input goes through.

    Parameters
    ----------
    lengths : None or array-like of int
        Positive integers. ``None`` means one sequence of ``n_samples`` rows (or, with
        ``max_length``, every sequence of ``max_length`` steps).
    n_samples : int, optional
        Concatenated rows: the lengths must sum to it.
    name : str, default="lengths"
        Named in error messages.
    n_sequences : int, optional
        Padded rows: one length per sequence.
    max_length : int, optional
        Padded rows: no length above the padded length.
    allow_empty : bool, default=False
        Accept lengths of 0 (padded rows with no valid step, for layers that mask them).

    Returns
    -------
    numpy.ndarray of int64

    Examples
    --------
    >>> check_lengths([2, 3], 5)
    array([2, 3])
    >>> check_lengths([2, 2], 5)
    Traceback (most recent call last):
    ...
    ValueError: lengths must sum to the number of samples in X (5), got sum 4
    >>> check_lengths([4, 1], name="valid_lengths", n_sequences=2, max_length=4)
    array([4, 1])
    """
    if lengths is None:
        if n_samples is not None:
            return np.array([n_samples], dtype=np.int64)
        return np.full(n_sequences, max_length, dtype=np.int64)
    try:
        arr = to_numpy(lengths)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D array of sequence lengths, got {type(lengths).__name__}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of sequence lengths, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must hold at least one sequence length")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integers, got {arr[:5].tolist()}")
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if allow_empty:
        if np.any(arr < 0):
            raise ValueError(f"{name} must be non-negative; got {arr[arr < 0][:5].tolist()}")
    elif np.any(arr <= 0):
        raise ValueError(f"{name} must be positive (empty sequences are not allowed); got {arr[arr <= 0][:5].tolist()}")
    if n_samples is not None and int(arr.sum()) != n_samples:
        raise ValueError(
            f"{name} must sum to the number of samples in X ({n_samples}), got sum {int(arr.sum())}"
        )
    if n_sequences is not None and arr.shape[0] != n_sequences:
        raise ValueError(f"{name} must have one entry per sequence ({n_sequences}), got {arr.shape[0]}")
    if max_length is not None and np.any(arr > max_length):
        raise ValueError(f"{name} must not exceed the padded length {max_length}; got {arr[arr > max_length][:5].tolist()}")
    return arr


def check_int(value, name, minimum=1, allow_none=False):
    """``value`` as an int of at least ``minimum``; an error naming ``name`` otherwise.

    The one integer check of probkit's functions and layers (booleans are refused). It raises
    scikit-learn's ``InvalidParameterError``, as the estimators' declarative parameter checks
    do: a ``ValueError`` and a ``TypeError``, so a wrong type and a wrong value are caught
    alike.

    Parameters
    ----------
    value : object
    name : str
        The argument's name in the error message.
    minimum : int, default=1
    allow_none : bool, default=False
        Return ``None`` unchanged.

    Returns
    -------
    int or None

    Examples
    --------
    >>> check_int(3, "n_samples")
    3
    >>> try:
    ...     check_int(0, "n_samples")
    ... except ValueError as error:
    ...     print(error)
    n_samples must be a positive integer, got 0
    >>> try:
    ...     check_int(2.5, "warmup", minimum=0)
    ... except TypeError as error:
    ...     print(error)
    warmup must be a non-negative integer, got 2.5
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        raise InvalidParameterError(f"{name} must be {what}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def check_shape(value, shape, name, hint=""):
    """``value`` as a finite float64 array of exactly ``shape`` (scikit-learn's wording).

    Parameters
    ----------
    value : array-like
    shape : tuple of int
    name : str
        The parameter's name in the error message.
    hint : str, optional
        Appended to the shape error (e.g. which argument to fix).

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> check_shape([1.0, 2.0], (2,), "weights")
    array([1., 2.])
    >>> check_shape([1.0, 2.0], (3,), "weights")
    Traceback (most recent call last):
    ...
    ValueError: The parameter 'weights' should have the shape of (3,), but got (2,)
    """
    arr = to_numpy(value).astype(np.float64)
    if arr.shape != tuple(shape):
        raise ValueError(f"The parameter '{name}' should have the shape of {tuple(shape)}, but got {arr.shape}{hint}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"The parameter '{name}' contains NaN or infinity")
    return arr


def check_stochastic(p, name, axis=-1, atol=1e-8):
    """Check that ``p`` is non-negative and sums to one along ``axis``.

    Examples
    --------
    >>> check_stochastic(np.array([[0.5, 0.5], [0.2, 0.8]]), "transmat")
    array([[0.5, 0.5],
           [0.2, 0.8]])
    >>> check_stochastic(np.array([0.5, 0.6]), "startprob")
    Traceback (most recent call last):
    ...
    ValueError: startprob must sum to 1 along its last axis; got sums [1.1]
    """
    arr = to_numpy(p).astype(float, copy=False)
    # fast path: a minimum >= 0 and a finite maximum rule out NaN, infinities and negative entries
    if not (arr.size and arr.min() >= 0 and arr.max() < np.inf):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinity")
        if np.any(arr < 0):
            raise ValueError(f"{name} must be non-negative")
    sums = arr.sum(axis=axis)
    if not np.all(np.abs(sums - 1.0) <= atol):  # np.allclose(rtol=0) for finite sums, at a fraction of its cost
        bad = np.atleast_1d(sums)[~np.isclose(np.atleast_1d(sums), 1.0, rtol=0, atol=atol)]
        raise ValueError(
            f"{name} must sum to 1 along its {'last' if axis == -1 else axis} axis; "
            f"got sums {np.round(bad[:5], 6).tolist()}"
        )
    return arr


def check_probabilities(value, shape, name):
    """``value`` as a float64 array of exactly ``shape`` whose last axis sums to one (a start
    distribution, the rows of a transition matrix).

    Examples
    --------
    >>> check_probabilities([[0.9, 0.1], [0.5, 0.5]], (2, 2), "transmat_")
    array([[0.9, 0.1],
           [0.5, 0.5]])
    >>> check_probabilities([0.5, 0.5], (3,), "startprob_")
    Traceback (most recent call last):
    ...
    ValueError: startprob_ must have shape (3,), got (2,)
    """
    arr = to_numpy(value).astype(np.float64)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    return check_stochastic(arr, name)


def check_parameters_set(estimator, names):
    """Raise ``NotFittedError`` naming the first of the attributes ``names`` that ``estimator`` lacks
    (neither fitted nor set by hand).

    Examples
    --------
    >>> class Model:
    ...     startprob_ = [1.0]
    >>> check_parameters_set(Model(), ["startprob_", "transmat_"])
    Traceback (most recent call last):
    ...
    sklearn.exceptions.NotFittedError: this Model has no transmat_: call fit or set the parameters by hand
    """
    for name in names:
        if not hasattr(estimator, name):
            raise NotFittedError(f"this {type(estimator).__name__} has no {name}: call fit or set the parameters by "
                                 "hand")


def check_nonnegative_integers(x, name="X"):
    """Check that ``x`` holds non-negative integer values (any numeric dtype).

    Examples
    --------
    >>> check_nonnegative_integers(np.array([0, 3]), "X")
    array([0, 3])
    >>> check_nonnegative_integers(np.array([1.5]), "X")
    Traceback (most recent call last):
    ...
    ValueError: X must hold non-negative integer counts; found non-integer values such as 1.5
    """
    arr = to_numpy(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinity")
        frac = arr != np.round(arr)
        if np.any(frac):
            raise ValueError(
                f"{name} must hold non-negative integer counts; found non-integer values "
                f"such as {arr[frac].flat[0]}"
            )
    if np.any(arr < 0):
        raise ValueError(
            f"Negative values in data passed to {name}: it must hold non-negative integer counts; found "
            f"{arr[arr < 0].flat[0]}"
        )
    return x


def check_inputs(inputs, n_samples, name="inputs"):
    """Covariates aligned with the rows of ``X``, as a finite float64 array ``(n_samples, n_inputs)``.

    Parameters
    ----------
    inputs : array-like or torch.Tensor of shape (n_samples,) or (n_samples, n_inputs)
        One row of known covariates per row of ``X`` (a 1-D array is one column).
    n_samples : int
        Number of rows of ``X``.
    name : str, default="inputs"
        Argument name used in error messages.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_inputs)

    Raises
    ------
    TypeError
        If the values are not real numbers.
    ValueError
        If the shape does not match ``X``'s rows or a value is NaN or infinite.

    Examples
    --------
    >>> check_inputs([1, 2, 3], 3).shape
    (3, 1)
    >>> check_inputs([[1.0], [2.0]], 3)
    Traceback (most recent call last):
    ...
    ValueError: inputs must have shape (n_samples, n_inputs) with n_samples = 3 (one row per row of X), got shape (2, 1)
    """
    u = np.asarray(to_numpy(inputs))
    if u.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {u.dtype}")
    u = u.astype(np.float64)
    if u.ndim == 1:
        u = u[:, None]
    if u.ndim != 2 or u.shape[0] != n_samples:
        raise ValueError(f"{name} must have shape (n_samples, n_inputs) with n_samples = {n_samples} (one row per "
                         f"row of X), got shape {u.shape}")
    if not np.isfinite(u).all():
        raise ValueError(f"{name} contains NaN or infinity; {name} must be known and finite at every step")
    return u


def check_sample_weight(sample_weight, n_samples, name="sample_weight"):
    """Validate sample weights: 1-D, finite, non-negative, not all zero.

    Examples
    --------
    >>> check_sample_weight(None, 3)
    array([1., 1., 1.])
    """
    if sample_weight is None:
        return np.ones(n_samples)
    w = to_numpy(sample_weight).astype(float)
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(f"{name} must have shape ({n_samples},), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or infinity")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative")
    if not np.any(w > 0):
        raise ValueError(f"{name} must have at least one positive entry; all are zero")
    return w
