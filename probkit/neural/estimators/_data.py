"""Sequences inside the neural estimators: value checks, padded data for training, the evaluation layout.

The layout of ``X`` is read once, by :func:`probkit.utils.sequences.check_sequences`,
into a :class:`~probkit.utils.sequences.SequenceBatch` (the concatenated rows and the
lengths); the checks here are about the values of those rows. :class:`SequenceData`
holds the padded tensors the networks read, and :func:`evaluation_layout` fixes the
batches in which fitted networks are evaluated.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import check_array

from probkit.utils.validation import check_nonnegative_integers

__all__ = ["SequenceData", "check_counts", "check_real_steps", "check_tokens", "evaluation_layout", "padded_length",
           "window_lengths"]


def check_tokens(values, vocab_size, name="X"):
    """``values`` as int64 tokens in ``[0, vocab_size)``, or a ``ValueError`` naming ``name``.

    Examples
    --------
    >>> check_tokens(np.array([0.0, 3.0]), 4).tolist()
    [0, 3]
    >>> check_tokens(np.array([0, 4]), 4)
    Traceback (most recent call last):
    ...
    ValueError: X holds tokens outside [0, vocab_size=4): min 0, max 4
    """
    values = np.asarray(values)
    if values.dtype == object:
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must hold integer tokens") from None
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


def check_real_steps(values, name="X", estimator=None, ensure_all_finite=True):
    """``values`` ``(n_samples, n_features)`` as finite float64 (scikit-learn's checks and messages).

    Examples
    --------
    >>> check_real_steps([[1, 2], [3, 4]]).dtype
    dtype('float64')
    """
    values = check_array(values, dtype=(np.float64, np.float32), ensure_2d=True, ensure_all_finite=ensure_all_finite,
                         ensure_min_samples=1, ensure_min_features=1, input_name=name, estimator=estimator)
    return np.asarray(values, dtype=np.float64)


def check_counts(values, emission, name="X", estimator=None):
    """``values`` ``(n_samples, n_features)`` as float64 non-negative integers, the support of ``emission``.

    Examples
    --------
    >>> check_counts([[0, 3]], "poisson").tolist()
    [[0.0, 3.0]]
    >>> check_counts([[0.5]], "poisson")   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: X must hold non-negative integer counts; ... (the support of emission='poisson')
    """
    values = check_array(values, dtype="numeric", ensure_min_samples=1, input_name=name, estimator=estimator)
    values = values.astype(np.float64)
    try:
        check_nonnegative_integers(values, name)
    except ValueError as exc:
        raise ValueError(f"{exc} (the support of emission={emission!r})") from None
    return values


def window_lengths(lengths, window):
    """Lengths after cutting each sequence into consecutive windows of at most ``window`` steps.

    Examples
    --------
    >>> window_lengths(np.array([5, 2]), 2).tolist()
    [2, 2, 1, 2]
    """
    parts = [[window] * (int(n) // window) + ([int(n) % window] if n % window else []) for n in lengths]
    return np.array([w for part in parts for w in part], dtype=np.int64)


def padded_length(lengths):
    """The padded length every sequence is evaluated at: the smallest ``2^k`` or ``3 * 2^k`` at least its length.

    Two sizes per octave: at most a third of a padded row is padding, and a sequence's padded
    length depends on its own length only.

    Examples
    --------
    >>> padded_length(np.array([1, 2, 3, 5, 7, 9, 100])).tolist()
    [1, 2, 3, 6, 8, 12, 128]
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    power = 2 ** np.ceil(np.log2(lengths)).astype(np.int64)           # smallest 2^k >= length
    three = 3 * (power // 4)                                            # 3 * 2^(k-2), between 2^(k-1) and 2^k
    return np.where((three >= lengths) & (power >= 4), three, power)


def evaluation_layout(lengths, batch_size, fixed=True):
    """The evaluation batches: ``(sequence indices, padded length, rows)`` triples.

    ``fixed=True``: a layout fixed per sequence. Sequences with the same
    :func:`padded_length` form batches in input order, each evaluated with
    ``batch_size`` rows (unused rows are padding) at that length; the shapes a sequence is
    computed with depend on its own length alone, not on the other sequences of the call,
    and neither do its results: floating-point kernels (matrix products, FFTs) round the
    same way for the same shapes. ``fixed=False``: consecutive sequences in input order,
    ``batch_size`` at a time, padded to the longest of the batch (for evaluations whose
    random draws depend on the batch anyway).

    Examples
    --------
    >>> [(idx.tolist(), L, rows) for idx, L, rows in evaluation_layout(np.array([5, 2, 6, 1]), batch_size=8)]
    [([3], 1, 8), ([1], 2, 8), ([0, 2], 6, 8)]
    >>> [(idx.tolist(), L, rows) for idx, L, rows in evaluation_layout(np.array([5, 2, 6]), 2, fixed=False)]
    [([0, 1], 5, 2), ([2], 6, 1)]
    """
    lengths = np.asarray(lengths)
    if not fixed:
        return [(np.arange(start, min(start + batch_size, len(lengths))),
                 int(lengths[start:start + batch_size].max()), min(batch_size, len(lengths) - start))
                for start in range(0, len(lengths), batch_size)]
    padded = padded_length(lengths)
    layout = []
    for length in np.unique(padded):
        members = np.flatnonzero(padded == length)
        for start in range(0, len(members), batch_size):
            layout.append((members[start:start + batch_size], int(length), batch_size))
    return layout


class SequenceData:
    """Padded per-step arrays of ``N`` sequences (and per-sequence targets), batched by sequence.

    The data object of :func:`~probkit.neural.train_module`: ``batch(index)`` is a dict
    with every per-step array trimmed to the longest sequence of the batch, the
    ``"lengths"``, and the targets. :meth:`padded_batch` pads to a fixed shape for
    evaluation (:func:`evaluation_layout`).

    Parameters
    ----------
    lengths : torch.Tensor of int64, shape (N,)
    steps : dict of str to torch.Tensor
        Per-step arrays ``(N, L, ...)``, zero past each length.
    targets : dict of str to torch.Tensor, optional
        Per-sequence arrays ``(N, ...)``.

    Examples
    --------
    >>> data = SequenceData(torch.tensor([2, 5, 1]), {"x": torch.zeros(3, 5, 2)})
    >>> b = data.batch(torch.tensor([0, 2]))
    >>> b["x"].shape, b["lengths"].tolist()
    (torch.Size([2, 2, 2]), [2, 1])
    >>> data.padded_batch(torch.tensor([2]), length=3, rows=4)["lengths"].tolist()
    [1, 1, 1, 1]
    """

    def __init__(self, lengths, steps, targets=None):
        self.lengths, self.steps, self.targets = lengths, dict(steps), dict(targets or {})

    @classmethod
    def from_batch(cls, batch, steps, *, device=None, dtype=None, targets=None):
        """Pad the concatenated per-step arrays ``steps`` of a :class:`~probkit.utils.sequences.SequenceBatch`.

        Integer arrays become int64 tensors, the others ``dtype`` tensors, on ``device``.
        """
        def tensor(a):
            a = np.asarray(a)
            kind = torch.long if a.dtype.kind in "iub" else dtype
            return torch.as_tensor(a, dtype=kind, device=device)

        padded = {name: tensor(batch.with_values(values).padded()) for name, values in steps.items()}
        return cls(torch.as_tensor(batch.lengths, device=device), padded,
                   {name: tensor(t) for name, t in (targets or {}).items()})

    def __len__(self):
        return int(self.lengths.shape[0])

    def batch(self, index):
        """The sequences ``index``, trimmed to their longest length."""
        lengths = self.lengths[index]
        n = int(lengths.max())
        out = {name: t[index, :n] for name, t in self.steps.items()}
        out["lengths"] = lengths
        out.update((name, t[index]) for name, t in self.targets.items())
        return out

    def padded_batch(self, index, length, rows):
        """The sequences ``index`` padded with zeros to ``length`` steps and ``rows`` rows (padding rows: length 1)."""
        n = len(index)
        out = {}
        for name, t in self.steps.items():
            part = t[index, :length]
            if part.shape[1] < length or n < rows:
                full = t.new_zeros((rows, length) + tuple(t.shape[2:]))
                full[:n, :part.shape[1]] = part
                part = full
            out[name] = part
        lengths = self.lengths.new_ones(rows)
        lengths[:n] = self.lengths[index]
        out["lengths"] = lengths
        return out
