"""HMM inference over concatenated sequences (the estimators' ``lengths`` API).

Sequences are stacked along the first axis of ``log_emission`` and delimited by
``lengths``; padding is an internal detail of the torch backend. On the CPU the numba
kernels run over the concatenated layout directly.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from probkit.inference import padded as _padded
from probkit.inference._checks import (
    as_float_tensor,
    check_choice,
    check_log_values,
    concatenated_inputs,
)

from probkit.inference._lazy_numba import numba_backend
from probkit.inference._numpy_io import numpy_out_for_numpy_in

_IMPLEMENTATIONS = ("scaling", "log")
_BACKENDS = ("auto", "numba", "torch")


class ForwardBackwardResult(NamedTuple):
    """Result of :func:`forward_backward`.

    Attributes
    ----------
    log_likelihood : Tensor (n_seq,)
        log p(x) of every sequence; -inf for a sequence impossible under the model.
    posteriors : Tensor (n_samples, K)
        p(z_t = k | x) (zero rows for impossible sequences).
    expected_transitions : Tensor (K, K)
        sum over sequences and steps of p(z_{t-1} = i, z_t = j | x).
    expected_start : Tensor (K,)
        sum over sequences of p(z_0 = k | x).
    """

    log_likelihood: torch.Tensor
    posteriors: torch.Tensor
    expected_transitions: torch.Tensor
    expected_start: torch.Tensor


class ViterbiResult(NamedTuple):
    """Result of :func:`viterbi`.

    Attributes
    ----------
    log_prob : Tensor (n_seq,)
        log p(x, z*) of each sequence's most probable path (-inf if impossible).
    path : LongTensor (n_samples,)
        The most probable states (-1 throughout an impossible sequence).
    """

    log_prob: torch.Tensor
    path: torch.Tensor


class FilterResult(NamedTuple):
    """Result of :func:`forward_filter`.

    Attributes
    ----------
    log_likelihood : Tensor (n_seq,)
    filtered : Tensor (n_samples, K)
        p(z_t = k | x_1..t); zero rows from the step at which a sequence became impossible.
    """

    log_likelihood: torch.Tensor
    filtered: torch.Tensor


def resolve_backend(backend, *tensors):
    """Pick "numba" or "torch" for ``backend="auto"`` (and validate explicit choices).

    "auto" means numba for CPU tensors that need no gradient, torch otherwise (CUDA
    tensors, ``requires_grad``, or numba unavailable).
    """
    check_choice(backend, "backend", _BACKENDS)
    if backend == "numba":
        if numba_backend() is None:
            raise ValueError("backend='numba' was requested but numba is not installed")
        return "numba"
    if backend == "torch":
        return "torch"
    for t in tensors:
        if t.device.type != "cpu" or t.requires_grad:
            return "torch"
    return "torch" if numba_backend() is None else "numba"


def _to_numpy64(t):
    return np.ascontiguousarray(t.detach().to(device="cpu", dtype=torch.float64).numpy())


def _out(array, like):
    """A numpy result as a tensor with the dtype and device of ``like``."""
    return torch.from_numpy(array).to(dtype=like.dtype, device=like.device)


def _on_float64(kernel, ls, lt, le, lengths, *options):
    """A numba driver run on float64 numpy copies of checked inputs."""
    return kernel(_to_numpy64(ls), _to_numpy64(lt), _to_numpy64(le), lengths, *options)


def _padded_batch(ls, lt, le, lengths):
    """Checked concatenated inputs as the torch backend's padded batch, and the dtype of the results."""
    padded_le, _ = _padded._pad_trusted(le, lengths)
    return _padded._trusted_batch(ls, lt, padded_le, lengths), padded_le.dtype


@numpy_out_for_numpy_in("log_startprob", "log_transmat", "log_emission")
def forward_backward(
    log_startprob,
    log_transmat,
    log_emission,
    lengths=None,
    *,
    implementation="scaling",
    backend="auto",
):
    """Posterior state marginals and expected transition counts (forward-backward).

    Parameters
    ----------
    log_startprob : array-like or Tensor, (K,)
        Log initial-state probabilities; -inf marks states a sequence cannot start in.
    log_transmat : array-like or Tensor, (K, K)
        Log transition probabilities, row = from-state; -inf marks structural zeros.
    log_emission : array-like or Tensor, (n_samples, K)
        log p(x_t | z_t = k) of all sequences stacked. -inf marks impossible states
        (for example partial supervision); NaN and +inf are rejected.
    lengths : array-like of int, (n_seq,), optional
        Lengths of the stacked sequences; positive, summing to ``n_samples``.
        ``None`` means one sequence.
    implementation : {"scaling", "log"}, default="scaling"
        "scaling" works with probabilities normalised at every step and falls back to
        "log" for any sequence on which a step normaliser underflows, so both give the
        same results; "log" runs log-sum-exp recursions throughout (slower).
    backend : {"auto", "numba", "torch"}, default="auto"
        "numba": compiled CPU loops over the concatenated layout (no gradients).
        "torch": padded batched recursions on the inputs' device, differentiable.
        "auto": numba for CPU inputs that need no gradient, torch otherwise.

    Returns
    -------
    ForwardBackwardResult
        ``log_likelihood`` (n_seq,), ``posteriors`` (n_samples, K),
        ``expected_transitions`` (K, K) and ``expected_start`` (K,): numpy arrays for
        numpy input, tensors with the dtype and device of ``log_emission`` for tensor input. A sequence whose probability is exactly
        zero gets ``log_likelihood = -inf``, zero posteriors and contributes nothing to
        the expected counts; no NaN is ever produced from -inf inputs.

    Examples
    --------
    >>> import numpy as np
    >>> log_start = np.log([0.6, 0.4])
    >>> log_trans = np.log([[0.7, 0.3], [0.2, 0.8]])
    >>> log_emission = np.log([[0.9, 0.2], [0.1, 0.8], [0.5, 0.5], [0.9, 0.1]])
    >>> res = forward_backward(log_start, log_trans, log_emission, lengths=[3, 1])
    >>> res.log_likelihood.round(4)
    array([-2.2064, -0.5447])
    >>> bool(np.allclose(res.posteriors.sum(1), 1.0))
    True
    >>> round(float(res.expected_transitions.sum()), 12)  # 2 transitions in sequence 1
    2.0
    """
    check_choice(implementation, "implementation", _IMPLEMENTATIONS)
    ls, lt, le, lengths = concatenated_inputs(log_startprob, log_transmat, log_emission, lengths)
    return _forward_backward(ls, lt, le, lengths, implementation, backend)


def _forward_backward(ls, lt, le, lengths, implementation, backend="auto"):
    """:func:`forward_backward` on checked inputs (tensors, lengths an int64 array): no validation."""
    if resolve_backend(backend, ls, lt, le) == "numba":
        loglik, post, xi, start, _ = _on_float64(numba_backend().forward_backward, ls, lt, le, lengths,
                                                 implementation == "log")
        return ForwardBackwardResult(_out(loglik, le), _out(post, le), _out(xi, le), _out(start, le))
    batch, dtype = _padded_batch(ls, lt, le, lengths)
    res = _padded._forward_backward_batch(batch, implementation, dtype)
    posteriors = _padded._unpad_trusted(res.posteriors, lengths)
    return ForwardBackwardResult(
        res.log_likelihood,
        posteriors,
        res.expected_transitions.sum(dim=0),
        res.posteriors[:, 0].sum(dim=0),
    )


@numpy_out_for_numpy_in("log_startprob", "log_transmat", "log_emission")
def viterbi(log_startprob, log_transmat, log_emission, lengths=None, *, backend="auto"):
    """Most probable state path of every sequence (Viterbi algorithm).

    Parameters
    ----------
    log_startprob, log_transmat, log_emission, lengths
        As in :func:`forward_backward`.
    backend : {"auto", "numba", "torch"}, default="auto"

    Returns
    -------
    ViterbiResult
        ``log_prob`` (n_seq,) = log p(x, z*) and ``path`` (n_samples,) int64. Ties go to
        the lowest state index. A sequence with zero probability gets ``-inf`` and a
        path of -1 (so it cannot be mistaken for a real state sequence).

    Examples
    --------
    >>> import numpy as np
    >>> res = viterbi(np.log([0.6, 0.4]), np.log([[0.7, 0.3], [0.2, 0.8]]),
    ...               np.log([[0.9, 0.2], [0.1, 0.8], [0.5, 0.5]]))
    >>> res.path
    array([0, 1, 1])
    >>> res.log_prob.round(4)
    array([-2.9596])
    """
    ls, lt, le, lengths = concatenated_inputs(log_startprob, log_transmat, log_emission, lengths)
    return _viterbi(ls, lt, le, lengths, backend)


def _viterbi(ls, lt, le, lengths, backend="auto"):
    """:func:`viterbi` on checked inputs: no validation."""
    if resolve_backend(backend, ls, lt, le) == "numba":
        log_prob, path = _on_float64(numba_backend().viterbi, ls, lt, le, lengths)
        return ViterbiResult(_out(log_prob, le), torch.from_numpy(path).to(le.device))
    res = _padded._viterbi_batch(*_padded_batch(ls, lt, le, lengths))
    return ViterbiResult(res.log_prob, _padded._unpad_trusted(res.paths, lengths))


@numpy_out_for_numpy_in("log_startprob", "log_transmat", "log_emission")
def forward_filter(
    log_startprob,
    log_transmat,
    log_emission,
    lengths=None,
    *,
    implementation="scaling",
    backend="auto",
):
    """Filtered state distributions p(z_t | x_1..t) and log-likelihoods (forward pass only).

    Parameters
    ----------
    log_startprob, log_transmat, log_emission, lengths, implementation, backend
        As in :func:`forward_backward`.

    Returns
    -------
    FilterResult
        ``log_likelihood`` (n_seq,) and ``filtered`` (n_samples, K); rows of an
        impossible sequence are zero from the step at which it became impossible.

    Examples
    --------
    >>> import numpy as np
    >>> res = forward_filter(np.log([0.5, 0.5]), np.log([[0.9, 0.1], [0.1, 0.9]]),
    ...                      np.log([[0.8, 0.2], [0.8, 0.2]]))
    >>> res.filtered.round(4)
    array([[0.8   , 0.2   ],
           [0.9193, 0.0807]])
    """
    check_choice(implementation, "implementation", _IMPLEMENTATIONS)
    ls, lt, le, lengths = concatenated_inputs(log_startprob, log_transmat, log_emission, lengths)
    return _forward_filter(ls, lt, le, lengths, implementation, backend)


def _forward_filter(ls, lt, le, lengths, implementation, backend="auto"):
    """:func:`forward_filter` on checked inputs: no validation."""
    if resolve_backend(backend, ls, lt, le) == "numba":
        loglik, filtered, _ = _on_float64(numba_backend().forward, ls, lt, le, lengths, implementation == "log")
        return FilterResult(_out(loglik, le), _out(filtered, le))
    batch, dtype = _padded_batch(ls, lt, le, lengths)
    loglik, filtered = _padded._forward_filter_batch(batch, implementation, dtype)
    return FilterResult(loglik, _padded._unpad_trusted(filtered, lengths))


class ForwardFilter:
    """Online filtering: feed emissions as they arrive, get p(z_t | x_1..t) back.

    Parameters
    ----------
    log_startprob : array-like or Tensor, (K,)
    log_transmat : array-like or Tensor, (K, K)
    implementation : {"log", "scaling"}, default="log"
        How each chunk of observations is processed (see :func:`forward_filter`).
        "scaling" is faster for long chunks; the filtered state carried from one call to
        the next passes through linear probabilities, which is exact when every
        transition probability is at least ~1.5e-154 (see :mod:`probkit.inference`), so
        with structural zeros "scaling" processes chunks in log space as well.

    Attributes
    ----------
    log_likelihood : float
        log p(x_1..t) of everything seen since construction or :meth:`reset`
        (-inf once the observations became impossible).
    filtered_ : numpy.ndarray or Tensor (K,) or None
        p(z_t | x_1..t) of the last step seen (None before the first update).
    n_steps_ : int
        Number of steps seen.

    Examples
    --------
    >>> import numpy as np
    >>> f = ForwardFilter(np.log([0.5, 0.5]), np.log([[0.9, 0.1], [0.1, 0.9]]))
    >>> f.update(np.log([0.8, 0.2]))
    array([0.8, 0.2])
    >>> f.update(np.log([[0.8, 0.2], [0.3, 0.7]])).round(4)
    array([[0.9193, 0.0807],
           [0.6851, 0.3149]])
    >>> f.n_steps_, round(f.log_likelihood, 4)
    (3, -2.1388)
    """

    def __init__(self, log_startprob, log_transmat, *, implementation="log"):
        check_choice(implementation, "implementation", _IMPLEMENTATIONS)
        ls = check_log_values(as_float_tensor(log_startprob, "log_startprob"), "log_startprob")
        lt = check_log_values(as_float_tensor(log_transmat, "log_transmat"), "log_transmat")
        if ls.ndim != 1 or ls.shape[0] == 0:
            raise ValueError(f"log_startprob must have shape (K,), got {tuple(ls.shape)}")
        n_states = ls.shape[0]
        if tuple(lt.shape) != (n_states, n_states):
            raise ValueError(
                f"log_transmat must have shape ({n_states}, {n_states}) to match log_startprob, "
                f"got {tuple(lt.shape)}"
            )
        if numba_backend() is None:  # pragma: no cover
            raise ImportError("ForwardFilter needs numba")
        self.implementation = implementation
        self.n_states = n_states
        self._log_start = _to_numpy64(ls)
        self._log_trans = _to_numpy64(lt)
        self._use_log = implementation == "log" or not numba_backend().scaled_forward_is_exact(np.exp(self._log_trans))
        self.reset()

    def reset(self):
        """Forget all observations; the next update starts from ``log_startprob``.

        Returns
        -------
        self
        """
        self.log_likelihood = 0.0
        self.filtered_ = None
        self.n_steps_ = 0
        self._log_filtered = None
        return self

    def _log_prior(self):
        if self._log_filtered is None:
            return self._log_start
        # log p(z_{t+1} = j | x_1..t) = logsumexp_i(log filtered_i + log A_ij)
        x = self._log_filtered[:, None] + self._log_trans
        m = x.max(axis=0)
        m_safe = np.where(np.isfinite(m), m, 0.0)
        with np.errstate(divide="ignore"):
            return np.log(np.exp(x - m_safe).sum(axis=0)) + m_safe

    def update(self, log_emission_t):
        """Consume the emissions of the next step(s) and return their filtered distributions.

        Parameters
        ----------
        log_emission_t : array-like or Tensor, (K,) or (m, K)
            Log emission probabilities of one step or of ``m`` consecutive steps.

        Returns
        -------
        numpy.ndarray or Tensor, (K,) or (m, K)
            p(z_t | x_1..t) for those steps (zeros once the observations are impossible):
            a tensor in the dtype and on the device of ``log_emission_t`` when it is one,
            a numpy array otherwise.
        """
        le = check_log_values(as_float_tensor(log_emission_t, "log_emission_t"), "log_emission_t")
        single = le.ndim == 1
        le2 = le.unsqueeze(0) if single else le
        if le2.ndim != 2 or le2.shape[1] != self.n_states or le2.shape[0] == 0:
            raise ValueError(
                f"log_emission_t must have shape ({self.n_states},) or (m, {self.n_states}), "
                f"got {tuple(le.shape)}"
            )
        n_new = le2.shape[0]
        if self.log_likelihood == -np.inf:
            filtered = np.zeros((n_new, self.n_states))
        else:
            loglik, filtered, status = numba_backend().forward(
                self._log_prior(),
                self._log_trans,
                _to_numpy64(le2),
                np.array([n_new], dtype=np.int64),
                self._use_log,
                keep_log=True,
            )
            self.log_likelihood += float(loglik[0])
            if status[0] == 0:  # scaled: rows are probabilities
                with np.errstate(divide="ignore"):
                    self._log_filtered = np.log(filtered[-1])
            else:
                self._log_filtered = filtered[-1].copy()
                with np.errstate(under="ignore"):
                    filtered = np.exp(filtered)
        self.n_steps_ += n_new
        # numpy in, numpy out (float64); a tensor in gets a tensor of its dtype and device
        out = _out(np.ascontiguousarray(filtered), le2) if isinstance(log_emission_t, torch.Tensor) \
            else np.ascontiguousarray(filtered)
        self.filtered_ = out[-1]
        return out[0] if single else out
