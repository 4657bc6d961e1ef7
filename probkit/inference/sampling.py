"""Sampling state paths: posterior paths given observations, and plain Markov chains.

All randomness comes from one ``random_state`` (None, an int, a
``numpy.random.RandomState``) or a ``torch.Generator``: the uniforms are drawn up
front and the compiled kernels are deterministic functions of them, so equal seeds give
equal paths.
"""

from __future__ import annotations


import numpy as np
import torch

from probkit.inference._lazy_numba import numba_backend
from probkit.inference._checks import as_float_tensor, concatenated_inputs
from probkit.utils.random import check_random_state
from probkit.utils.validation import check_int, check_stochastic
from probkit.inference._numpy_io import numpy_out_for_numpy_in


def _uniforms(random_state, shape):
    """Uniforms in [0, 1) of ``shape`` from a numpy random state or a torch.Generator."""
    if isinstance(random_state, torch.Generator):
        u = torch.rand(shape, generator=random_state, dtype=torch.float64, device=random_state.device)
        return np.ascontiguousarray(u.cpu().numpy())
    return check_random_state(random_state).random_sample(shape)


@numpy_out_for_numpy_in("log_startprob", "log_transmat", "log_emission")
def sample_posterior_paths(log_startprob, log_transmat, log_emission, lengths=None, n_paths=1, random_state=None):
    """Draw state paths from p(z | x) by forward filtering, backward sampling.

    Parameters
    ----------
    log_startprob, log_transmat, log_emission, lengths
        As in :func:`probkit.inference.forward_backward`.
    n_paths : int, default=1
        Number of independent joint paths to draw (per sequence).
    random_state : None, int, numpy.random.RandomState or torch.Generator
        Source of randomness; equal seeds give equal paths.

    Returns
    -------
    LongTensor (n_paths, n_samples)
        Row ``p`` holds one joint draw of the states of every sequence, on the device of
        ``log_emission``. An impossible sequence gets -1 throughout.

    Notes
    -----
    The last state is drawn from the filtered distribution p(z_{T-1} | x), then
    backwards z_t ~ p(z_t | x_1..t) A[z_t, z_{t+1}], which makes the whole path an
    exact draw from the joint posterior. Runs on the CPU (numba).

    Examples
    --------
    >>> import numpy as np
    >>> paths = sample_posterior_paths(np.log([0.5, 0.5]), np.log([[0.9, 0.1], [0.1, 0.9]]),
    ...                                np.log([[0.99, 0.01], [0.01, 0.99], [0.99, 0.01]]),
    ...                                n_paths=3, random_state=0)
    >>> paths.shape, paths.dtype
    ((3, 3), dtype('int64'))
    >>> bool(((paths == 0) | (paths == 1)).all())
    True
    """
    n_paths = check_int(n_paths, "n_paths")
    ls, lt, le, lengths = concatenated_inputs(log_startprob, log_transmat, log_emission, lengths)
    to64 = lambda t: np.ascontiguousarray(t.detach().to(device="cpu", dtype=torch.float64).numpy())  # noqa: E731
    log_trans = to64(lt)
    _, filtered, status = numba_backend().forward(to64(ls), log_trans, to64(le), lengths, use_log=False, keep_log=True)
    uniforms = _uniforms(random_state, (n_paths, le.shape[0]))
    paths = numba_backend().backward_sample(log_trans, lengths, filtered, status, uniforms)
    return torch.from_numpy(paths).to(le.device)


@numpy_out_for_numpy_in("startprob", "transmat")
def sample_markov_chain(startprob, transmat, n_steps, random_state=None):
    """Sample a state sequence from a Markov chain.

    Parameters
    ----------
    startprob : array-like or Tensor, (K,)
        Initial-state probabilities (probability space, not log); must sum to 1.
    transmat : array-like or Tensor, (K, K)
        Transition probabilities, row = from-state; every row must sum to 1.
    n_steps : int
        Length of the chain (positive).
    random_state : None, int, numpy.random.RandomState or torch.Generator

    Returns
    -------
    LongTensor (n_steps,)
        The states, on the device of ``transmat`` when it is a tensor (CPU otherwise).

    Raises
    ------
    ValueError
        If ``startprob`` or a row of ``transmat`` is negative or does not sum to one.

    Examples
    --------
    >>> states = sample_markov_chain([1.0, 0.0], [[0.0, 1.0], [1.0, 0.0]], 5)
    >>> states
    array([0, 1, 0, 1, 0])
    """
    n_steps = check_int(n_steps, "n_steps")
    start = as_float_tensor(startprob, "startprob")
    trans = as_float_tensor(transmat, "transmat")
    if start.ndim != 1 or start.shape[0] == 0:
        raise ValueError(f"startprob must have shape (K,), got {tuple(start.shape)}")
    n_states = start.shape[0]
    if tuple(trans.shape) != (n_states, n_states):
        raise ValueError(f"transmat must have shape ({n_states}, {n_states}), got {tuple(trans.shape)}")
    start_np = np.ascontiguousarray(check_stochastic(start, "startprob"), dtype=np.float64)
    trans_np = np.ascontiguousarray(check_stochastic(trans, "transmat"), dtype=np.float64)
    uniforms = _uniforms(random_state, (n_steps,))
    states = numba_backend().markov_chain(start_np, trans_np, uniforms)
    return torch.from_numpy(states).to(trans.device)
