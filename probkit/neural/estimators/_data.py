"""Ragged sequences: input validation, padding and batching for the sequence estimators.

Accepted layouts of ``X``
-------------------------
Real-valued features (``vocab_size=None``):

* a list of arrays (or tensors), one per sequence, each ``(L_i, D)`` (or ``(L_i,)``
  for ``D = 1``);
* a padded 3-D array ``(N, L, D)``, with ``lengths`` (``N`` ints in ``[1, L]``) giving
  the valid prefix of each row (default: all ``L`` steps);
* a 2-D array ``(N, D)``: scikit-learn's tabular layout, read as ``N`` sequences of
  length one (one step of ``D`` features), so that ``n_features_in_`` is always the
  per-step feature count ``D``. Univariate series stored as rows of a 2-D array are
  passed as ``X[:, :, None]``.

Integer tokens (``vocab_size`` given):

* a list of 1-D integer arrays;
* a padded 2-D array ``(N, L)`` with optional ``lengths``;
* a 1-D array: one long sequence (:class:`~probkit.neural.SequenceDensity` cuts it into
  windows).

Torch tensors are accepted wherever arrays are. Nested Python lists are read as numpy
reads them: a regular nesting is the array it forms (so ``X.tolist()`` means the same
as ``X``), a ragged one is a list of sequences. Values past a sequence's length are
ignored (they may be anything, NaN included).
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils.validation import check_array

__all__ = ["SequenceData", "check_sequences"]


def _to_numpy(a):
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return a


def _is_sequence_list(X):
    """A list of arrays/tensors, or a ragged nested list: one sequence per element.

    Nested Python lists that numpy reads as a regular array are that array (a 2-D
    table, a padded 3-D array, or one 1-D token sequence), as in scikit-learn.
    """
    if not isinstance(X, (list, tuple)):
        return False
    if len(X) == 0:
        return True
    if any(isinstance(x, (np.ndarray, torch.Tensor)) and np.ndim(x) >= 1 for x in X):
        return True
    try:
        arr = np.asarray(X)
    except ValueError:  # ragged
        return True
    return arr.dtype == object and arr.ndim == 1


def _check_lengths(lengths, n, max_len, name="lengths"):
    lengths = _to_numpy(lengths)
    try:
        arr = np.asarray(lengths)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} must be a 1-D array of integers: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integers, got shape {arr.shape}")
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or
                         (np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and
                          np.all(arr == np.round(arr)))):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but X holds {n} sequences")
    if arr.size and arr.min() < 1:
        raise ValueError(f"{name} must be >= 1 (empty sequences are not allowed), got min {int(arr.min())}")
    if arr.size and arr.max() > max_len:
        raise ValueError(f"{name} must be <= the padded length {max_len}, got max {int(arr.max())}")
    return arr


def _check_tokens(values, vocab_size, name):
    if values.size == 0:
        return values.astype(np.int64)
    numeric = np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
    if values.dtype == bool or not numeric:
        raise ValueError(f"{name} must hold integer tokens, got dtype {values.dtype}")
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} contains NaN or infinity; it must hold integer tokens")
        if not np.all(values == np.round(values)):
            raise ValueError(f"{name} must hold integer tokens, got non-integer values")
    values = values.astype(np.int64)
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"{name} holds tokens outside [0, vocab_size={vocab_size}): min {lo}, max {hi}")
    return values


def _numeric_array(a, name, allow_nd=True, ensure_2d=False):
    return check_array(a, dtype=(np.float64, np.float32), ensure_2d=ensure_2d, allow_nd=allow_nd,
                       ensure_all_finite=False, ensure_min_samples=1, ensure_min_features=1, input_name=name)


def _check_finite_valid(padded, lengths, name):
    if padded.size == 0:
        return
    mask = np.arange(padded.shape[1])[None, :] < lengths[:, None]
    if not np.all(np.isfinite(padded[mask])):
        raise ValueError(f"{name} contains NaN or infinity")


def check_sequences(X, lengths=None, *, vocab_size=None, name="X", one_long=False):
    """Validate ``X`` and return it padded, with the length of every sequence.

    Parameters
    ----------
    X : list of arrays, or array / tensor
        See the module docstring for the layouts.
    lengths : array-like of int, optional
        Valid length of each row of a padded array.
    vocab_size : int, optional
        Tokens mode: ``X`` holds integers in ``[0, vocab_size)``.
    name : str, default="X"
        Name used in error messages.
    one_long : bool, default=False
        Tokens mode: accept a 1-D array as one long sequence (returned as ``(1, T)``).

    Returns
    -------
    padded : numpy.ndarray
        ``(N, L_max, D)`` float64 (features) or ``(N, L_max)`` int64 (tokens), zero past
        each length.
    lengths : numpy.ndarray of int64, shape (N,)

    Examples
    --------
    >>> import numpy as np
    >>> padded, lengths = check_sequences([np.ones((3, 2)), np.ones((1, 2))])
    >>> padded.shape, lengths.tolist()
    ((2, 3, 2), [3, 1])
    >>> check_sequences(np.array([[1, 2], [3, 0]]), lengths=[2, 1], vocab_size=4)[0].tolist()
    [[1, 2], [3, 0]]
    """
    tokens = vocab_size is not None
    if X is None:
        raise ValueError(f"{name} is None; expected sequences")
    if _is_sequence_list(X):
        if lengths is not None:
            raise ValueError("lengths= applies to a padded array; a list of sequences carries its own lengths")
        if len(X) == 0:
            raise ValueError(f"{name} holds no sequences (empty list)")
        seqs = []
        for i, s in enumerate(X):
            s = _to_numpy(s)
            what = f"sequence {i} of {name}"
            if tokens:
                arr = np.asarray(s)
                if arr.ndim == 2 and arr.shape[1] == 1:
                    arr = arr[:, 0]
                if arr.ndim != 1:
                    raise ValueError(f"{what} must be a 1-D array of tokens, got shape {arr.shape}")
                if arr.shape[0] == 0:
                    raise ValueError(f"{what} is empty (length 0)")
                arr = _check_tokens(arr, vocab_size, what)
            else:
                try:
                    arr = np.asarray(s)
                except Exception as exc:
                    raise ValueError(f"{what} cannot be read as an array: {exc}") from None
                if arr.ndim == 1:
                    arr = arr[:, None]
                if arr.ndim != 2:
                    raise ValueError(f"{what} must be a (length, n_features) array, got shape {arr.shape}")
                if arr.shape[0] == 0:
                    raise ValueError(f"{what} is empty (length 0)")
                if arr.shape[1] == 0:
                    raise ValueError(f"{what} has 0 features")
                arr = _numeric_array(arr, what, allow_nd=False, ensure_2d=True)
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"{what} contains NaN or infinity")
                if seqs and arr.shape[1] != seqs[0].shape[1]:
                    raise ValueError(f"{what} has {arr.shape[1]} features but sequence 0 has {seqs[0].shape[1]}")
            seqs.append(arr)
        lens = np.array([len(s) for s in seqs], dtype=np.int64)
        L = int(lens.max())
        if tokens:
            padded = np.zeros((len(seqs), L), dtype=np.int64)
        else:
            padded = np.zeros((len(seqs), L, seqs[0].shape[1]), dtype=np.float64)
        for i, s in enumerate(seqs):
            padded[i, : len(s)] = s
        return padded, lens

    X = _to_numpy(X)
    if tokens:
        arr = np.asarray(X)
        if arr.dtype == object:
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must hold integer tokens") from None
        if arr.ndim == 1:
            if not one_long:
                raise ValueError(f"{name} is 1-D; pass a list of token sequences or a padded (N, L) array")
            if lengths is not None:
                raise ValueError("lengths= applies to a padded 2-D array, not to one long 1-D sequence")
            if arr.shape[0] == 0:
                raise ValueError(f"{name} is empty (length 0)")
            arr = arr[None, :]
        if arr.ndim != 2:
            raise ValueError(f"{name} of tokens must be a list of 1-D arrays, a padded (N, L) array or one 1-D "
                             f"sequence; got shape {arr.shape}")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"{name} is empty: shape {arr.shape}")
        lens = (np.full(arr.shape[0], arr.shape[1], dtype=np.int64) if lengths is None
                else _check_lengths(lengths, arr.shape[0], arr.shape[1]))
        mask = np.arange(arr.shape[1])[None, :] < lens[:, None]
        valid = _check_tokens(arr[mask], vocab_size, name)
        padded = np.zeros(arr.shape, dtype=np.int64)
        padded[mask] = valid
        return padded, lens

    arr = np.asarray(X) if not isinstance(X, np.ndarray) else X
    if getattr(arr, "ndim", 0) <= 2:
        if lengths is not None:
            raise ValueError("lengths= applies to a padded 3-D (N, L, D) array")
        arr = check_array(X, dtype=(np.float64, np.float32), ensure_2d=True, allow_nd=False, ensure_all_finite=True,
                          ensure_min_samples=1, ensure_min_features=1, input_name=name)
        padded = np.array(arr, dtype=np.float64)[:, None, :]
        return padded, np.ones(arr.shape[0], dtype=np.int64)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a list of (L_i, D) arrays, a padded (N, L, D) array or a 2-D (N, D) "
                         f"array; got {arr.ndim} dimensions")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} holds no sequences: shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has sequences of length 0: shape {arr.shape}")
    if arr.shape[2] == 0:
        raise ValueError(f"{name} has 0 features: shape {arr.shape}")
    arr = _numeric_array(arr, name)
    lens = (np.full(arr.shape[0], arr.shape[1], dtype=np.int64) if lengths is None
            else _check_lengths(lengths, arr.shape[0], arr.shape[1]))
    _check_finite_valid(arr, lens, name)
    padded = np.array(arr, dtype=np.float64)
    padded[np.arange(arr.shape[1])[None, :] >= lens[:, None]] = 0.0
    return padded, lens


def windows(tokens, window):
    """Cut a 1-D token sequence into consecutive windows (the last one may be shorter).

    Parameters
    ----------
    tokens : numpy.ndarray, shape (T,)
    window : int

    Returns
    -------
    padded : numpy.ndarray, shape (ceil(T / window), window)
    lengths : numpy.ndarray of int64

    Examples
    --------
    >>> p, l = windows(np.arange(5), 2)
    >>> p.tolist(), l.tolist()
    ([[0, 1], [2, 3], [4, 0]], [2, 2, 1])
    """
    T = tokens.shape[0]
    n = -(-T // window)
    padded = np.zeros((n, window), dtype=tokens.dtype)
    padded.reshape(-1)[:T] = tokens
    lengths = np.full(n, window, dtype=np.int64)
    lengths[-1] = T - (n - 1) * window
    return padded, lengths


class SequenceData:
    """Padded sequences (and optional targets) in memory, batched for :func:`train_module`.

    A batch is a dict ``{"x", "lengths"[, "y"]}`` trimmed to the longest sequence of the
    batch.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, L, D)`` features or ``(N, L)`` tokens.
    lengths : torch.Tensor of int64, shape (N,)
    y : torch.Tensor, optional
        Per-sequence targets, first dimension ``N``.

    Examples
    --------
    >>> data = SequenceData(torch.zeros(3, 5, 2), torch.tensor([2, 5, 1]))
    >>> b = data.batch(torch.tensor([0, 2]))
    >>> b["x"].shape, b["lengths"].tolist()
    (torch.Size([2, 2, 2]), [2, 1])
    """

    def __init__(self, x, lengths, y=None):
        self.x, self.lengths, self.y = x, lengths, y
        if y is not None and y.shape[0] != x.shape[0]:
            raise ValueError(f"X holds {x.shape[0]} sequences but y has {y.shape[0]} entries")

    def __len__(self):
        return int(self.x.shape[0])

    def batch(self, index):
        """The sequences ``index``, trimmed to their longest length."""
        lengths = self.lengths[index]
        L = int(lengths.max())
        out = {"x": self.x[index, :L], "lengths": lengths}
        if self.y is not None:
            out["y"] = self.y[index]
        return out


def check_positive_int(value, name):
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
