"""The sequence contract shared by every sequence estimator.

Sequences enter every estimator in one of three forms, read in exactly one place
(:func:`check_sequences`), with the same meaning in every class:

* a **list of arrays**, one per sequence, each ``(L_i, *step)``;
* **concatenated rows** ``(n_samples, *step)`` with ``lengths=`` (hmmlearn's sense: the
  lengths sum to ``n_samples``; ``None`` is one sequence);
* a **padded array** ``(N, L, *step)`` with ``valid_lengths=`` (the valid prefix of each
  row; ``None`` means all ``L`` steps). Values past a sequence's end are ignored.

``step`` is the shape of one time step: ``(n_features,)`` for real-valued data, ``()``
for integer tokens (so concatenated tokens are 1-D and padded tokens 2-D). The result is a
:class:`SequenceBatch`, the concatenated form, which internal code trusts without checking
again.

Sequence estimators keep scikit-learn's signatures: ``fit(X, y=None, *, lengths=None)``
and ``score(X, y=None, *, lengths=None)`` have a ``y`` slot (scikit-learn's tools fill
it), every other method takes ``X`` as its only positional argument. hmmlearn's habit of
passing ``lengths`` second (``model.score(X, lengths)``) would otherwise be read as ``y``
and the sequences silently scored as one; here it is an error that says what to write.
"""

from __future__ import annotations

import functools

import numpy as np

from probkit.utils.validation import check_lengths

__all__ = ["SequenceBatch", "check_sequences", "check_y_slot", "keyword_lengths"]


class SequenceBatch:
    """Sequences stored concatenated along the first axis, with their lengths (already checked).

    Built by :func:`check_sequences`; internal code receives it and never re-validates.

    Parameters
    ----------
    values : numpy.ndarray of shape (n_samples, *step)
    lengths : numpy.ndarray of int64 of shape (n_sequences,)
        Positive, summing to ``n_samples`` (not checked here).

    Examples
    --------
    >>> import numpy as np
    >>> batch = SequenceBatch(np.arange(5.0)[:, None], np.array([2, 3]))
    >>> batch.n_sequences, batch.max_length, batch.offsets.tolist()
    (2, 3, [0, 2, 5])
    >>> batch.padded(fill=-1.0)[..., 0].tolist()
    [[0.0, 1.0, -1.0], [2.0, 3.0, 4.0]]
    >>> [s[:, 0].tolist() for s in batch.split()]
    [[0.0, 1.0], [2.0, 3.0, 4.0]]
    """

    __slots__ = ("values", "lengths", "offsets")

    def __init__(self, values, lengths):
        self.values = values
        self.lengths = lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def __repr__(self):
        return (f"SequenceBatch(n_sequences={self.n_sequences}, n_samples={self.n_samples}, "
                f"step={tuple(self.values.shape[1:])})")

    def __len__(self):
        return self.n_sequences

    @property
    def n_sequences(self):
        return int(self.lengths.shape[0])

    @property
    def n_samples(self):
        return int(self.values.shape[0])

    @property
    def max_length(self):
        return int(self.lengths.max())

    def with_values(self, values):
        """The same sequence boundaries over other rows (e.g. validated or converted values)."""
        return SequenceBatch(values, self.lengths)

    def split(self):
        """One array per sequence (views into ``values``)."""
        return [self.values[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def mask(self):
        """``(n_sequences, max_length)`` boolean array, True on the valid steps."""
        return np.arange(self.max_length)[None, :] < self.lengths[:, None]

    def padded(self, fill=0):
        """``(n_sequences, max_length, *step)`` array, ``fill`` past each sequence's end."""
        out = np.full((self.n_sequences, self.max_length, *self.values.shape[1:]), fill, dtype=self.values.dtype)
        out[self.mask()] = self.values
        return out

    def take(self, index):
        """The sequences ``index`` (an integer array), as a new batch."""
        index = np.asarray(index, dtype=np.int64)
        rows = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in index]) \
            if len(index) else np.zeros(0, dtype=np.int64)
        return SequenceBatch(self.values[rows], self.lengths[index])


def _as_array(x, name):
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor
        return x.detach().cpu().numpy()
    if hasattr(x, "iloc") or hasattr(x, "to_numpy"):  # pandas
        return np.asarray(x)
    return np.asarray(x)


def _is_sequence_list(X):
    """A list/tuple whose elements are arrays or tensors, or a ragged nesting: one sequence per element.

    Nested Python lists that numpy reads as a regular array are that array (as in
    scikit-learn), so ``X.tolist()`` means the same as ``X``.
    """
    if not isinstance(X, (list, tuple)):
        return False
    if len(X) == 0:
        return True
    if any(hasattr(x, "shape") and len(getattr(x, "shape")) >= 1 for x in X):
        return True
    try:
        arr = np.asarray(X)
    except ValueError:  # ragged
        return True
    return arr.dtype == object and arr.ndim == 1


def check_sequences(X, lengths=None, *, valid_lengths=None, step_ndim=1, name="X"):
    """Read sequences in any of the three forms of the contract into a :class:`SequenceBatch`.

    Only the layout is checked here (shapes, lengths); the values of the rows are left to
    the estimator's own validation (dtype, finiteness, support), done once on
    ``batch.values``.

    Parameters
    ----------
    X : list of arrays, array-like or tensor
    lengths : array-like of int, optional
        For concatenated rows: the length of each sequence, summing to ``n_samples``.
    valid_lengths : array-like of int, optional
        For a padded array: the valid prefix of each row.
    step_ndim : int, default=1
        Dimensions of one time step: 1 for feature vectors, 0 for scalar tokens.
    name : str, default="X"

    Returns
    -------
    SequenceBatch

    Examples
    --------
    >>> import numpy as np
    >>> check_sequences(np.zeros((5, 2)), lengths=[2, 3]).lengths.tolist()
    [2, 3]
    >>> check_sequences([np.zeros((2, 2)), np.zeros((3, 2))]).lengths.tolist()
    [2, 3]
    >>> check_sequences(np.zeros((2, 4, 2)), valid_lengths=[4, 1]).values.shape
    (5, 2)
    >>> check_sequences(np.zeros((2, 4, 2)), lengths=[4, 4])
    Traceback (most recent call last):
    ...
    ValueError: lengths= splits concatenated rows (hmmlearn's sense); X is a padded array of shape (2, 4, 2): give the valid prefix of each row as valid_lengths=
    """
    if X is None:
        raise ValueError(f"{name} is None; expected sequences")
    if hasattr(X, "tocsr") or hasattr(X, "todense"):
        raise TypeError(f"Sparse data was passed for {name}, but dense data is required (sparse input is not "
                        "supported by sequence estimators). Use '.toarray()' to convert to a dense numpy array.")
    if _is_sequence_list(X):
        if lengths is not None or valid_lengths is not None:
            raise ValueError(f"{name} is a list of sequences, which carry their own lengths: drop lengths= and "
                             "valid_lengths=")
        if len(X) == 0:
            raise ValueError(f"{name} holds no sequences (empty list)")
        seqs = []
        for i, seq in enumerate(X):
            try:
                arr = _as_array(seq, name)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"sequence {i} of {name} cannot be read as an array: {exc}") from None
            if step_ndim == 1 and arr.ndim == 1:
                arr = arr[:, None]  # a univariate sequence
            elif step_ndim == 0 and arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != step_ndim + 1:
                want = "(length, n_features)" if step_ndim == 1 else "(length,)"
                raise ValueError(f"sequence {i} of {name} must be a {want} array, got shape {arr.shape}")
            if arr.shape[0] == 0:
                raise ValueError(f"sequence {i} of {name} is empty (length 0)")
            if seqs and arr.shape[1:] != seqs[0].shape[1:]:
                raise ValueError(f"sequence {i} of {name} has steps of shape {arr.shape[1:]} but sequence 0 has "
                                 f"{seqs[0].shape[1:]}")
            seqs.append(arr)
        lens = np.array([len(s) for s in seqs], dtype=np.int64)
        return SequenceBatch(np.concatenate(seqs, axis=0), lens)
    try:
        arr = _as_array(X, name)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} cannot be read as an array: {exc}") from None
    if arr.ndim == step_ndim + 2:
        if lengths is not None:
            raise ValueError(f"lengths= splits concatenated rows (hmmlearn's sense); {name} is a padded array of shape "
                             f"{arr.shape}: give the valid prefix of each row as valid_lengths=")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"{name} is empty: shape {arr.shape}")
        valid = check_lengths(valid_lengths, name="valid_lengths", n_sequences=arr.shape[0],
                              max_length=arr.shape[1])
        mask = np.arange(arr.shape[1])[None, :] < valid[:, None]
        values = arr.reshape(-1, *arr.shape[2:]) if bool(mask.all()) else arr[mask]
        return SequenceBatch(values, valid)
    if valid_lengths is not None:
        raise ValueError(f"valid_lengths= applies to a padded (N, L, ...) array; {name} has shape {arr.shape}: "
                         "concatenated rows take lengths=")
    if arr.ndim == step_ndim + 1:
        if arr.shape[0] == 0:
            raise ValueError(f"{name} is empty: shape {arr.shape}")
        return SequenceBatch(arr, check_lengths(lengths, arr.shape[0]))
    if step_ndim == 1 and arr.ndim == 1:
        raise ValueError(f"Expected 2D array for {name}, got 1D array instead: {arr[:5]!r}. Reshape your data either "
                         "using array.reshape(-1, 1) if your data has a single feature or array.reshape(1, -1) if it "
                         "contains a single sample.")
    forms = ("a list of (L_i, n_features) arrays, concatenated rows (n_samples, n_features) with lengths=, or a "
             "padded (N, L, n_features) array with valid_lengths=") if step_ndim == 1 else \
        ("a list of 1-D token arrays, concatenated tokens (n_samples,) with lengths=, or a padded (N, L) array "
         "with valid_lengths=")
    raise ValueError(f"{name} must be {forms}; got an array of shape {arr.shape}")


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
