"""The sequence contract shared by every sequence estimator.

Sequence estimators keep scikit-learn's signatures: ``fit(X, y=None, *, lengths=None)``
and ``score(X, y=None, *, lengths=None)`` have a ``y`` slot (scikit-learn's tools fill
it), every other method takes ``X`` as its only positional argument. hmmlearn's habit of
passing ``lengths`` second (``model.score(X, lengths)``) would otherwise be read as ``y``
and the sequences silently scored as one; here it is an error that says what to write.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["check_y_slot", "keyword_lengths"]


def _second_argument_error(owner, method):
    return TypeError(
        f"{owner}.{method}(X, ...) got a second positional argument that is not one value per row of X; pass "
        f"sequence lengths by keyword, {method}(X, lengths=lengths) (probkit keeps the second slot for "
        "scikit-learn's y)"
    )


def _n_rows(X):
    """Accepted lengths of ``y``: rows of an array; sequences or steps of a list of sequences."""
    if hasattr(X, "shape") and len(X.shape) > 0:
        return {int(X.shape[0])}
    try:
        n = len(X)
    except TypeError:
        try:
            return {int(np.asarray(X).shape[0])}
        except (ValueError, TypeError, IndexError):
            return set()
    if isinstance(X, (list, tuple)) and n and all(hasattr(x, "shape") and len(x.shape) >= 1 for x in X):
        return {n, sum(int(x.shape[0]) for x in X)}
    return {n}


def check_y_slot(estimator, method, X, y):
    """Refuse a ``y`` that is not one value per row of ``X`` (sequence lengths passed positionally).

    Parameters
    ----------
    estimator : object
        Named in the message.
    method : str
        Named in the message.
    X : array-like
    y : None or array-like

    Raises
    ------
    TypeError
        When ``y`` is given and is not a 1-D (or column) array with one entry per row of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.zeros((5, 2))
    >>> check_y_slot("Model", "fit", X, np.zeros(5))
    >>> check_y_slot("Model", "score", X, [2, 3])
    Traceback (most recent call last):
    ...
    TypeError: Model.score(X, ...) got a second positional argument that is not one value per row of X; pass sequence lengths by keyword, score(X, lengths=lengths) (probkit keeps the second slot for scikit-learn's y)
    """
    if y is None:
        return
    owner = estimator if isinstance(estimator, str) else type(estimator).__name__
    accepted = _n_rows(X)
    if hasattr(y, "shape") and hasattr(y, "ndim"):
        shape = tuple(y.shape)
    else:
        try:
            shape = np.asarray(y).shape  # __array__ only: scikit-learn's checks pass array-likes that refuse more
        except (ValueError, TypeError):
            raise _second_argument_error(owner, method) from None
    if len(shape) == 2 and shape[1] == 1:
        shape = shape[:1]
    if len(shape) != 1 or shape[0] not in accepted:
        raise _second_argument_error(owner, method)


def keyword_lengths(method):
    """Decorator: the method takes ``X`` as its only positional argument (``lengths`` by keyword).

    A second positional argument raises the same ``TypeError`` as :func:`check_y_slot`,
    instead of Python's generic "takes 2 positional arguments".

    Examples
    --------
    >>> class Model:
    ...     @keyword_lengths
    ...     def predict(self, X, *, lengths=None):
    ...         return lengths
    >>> Model().predict([[0.0]], lengths=[1])
    [1]
    >>> Model().predict([[0.0]], [1])
    Traceback (most recent call last):
    ...
    TypeError: Model.predict(X, ...) got a second positional argument that is not one value per row of X; pass sequence lengths by keyword, predict(X, lengths=lengths) (probkit keeps the second slot for scikit-learn's y)
    """

    @functools.wraps(method)
    def wrapper(self, X, *args, **kwargs):
        if args:
            raise _second_argument_error(type(self).__name__, method.__name__)
        return method(self, X, **kwargs)

    return wrapper
