"""Gradients of the differentiable (padded, torch) API."""

import numpy as np
import pytest
import torch
from inference_helpers import random_hmm

from probkit.inference import (
    forward_backward,
    forward_backward_padded,
    hmm_log_likelihood,
    pad_sequences,
)
from inference_helpers import as_numpy  # noqa: E402

IMPLEMENTATIONS = ["scaling", "log"]


def _batch(rng, n_states, lengths, **options):
    log_start, log_trans, log_emission = random_hmm(rng, n_states, lengths, **options)
    padded, mask = pad_sequences(log_emission, lengths)
    return torch.as_tensor(log_start), torch.as_tensor(log_trans), torch.as_tensor(padded), mask


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_gradcheck_shared_parameters(implementation):
    rng = np.random.default_rng(21)
    log_start, log_trans, padded, _ = _batch(rng, 3, [4, 2, 3])
    inputs = [x.clone().requires_grad_() for x in (log_start, log_trans, padded)]

    def f(ls, lt, le):
        return hmm_log_likelihood(ls, lt, le, [4, 2, 3], implementation=implementation)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_gradcheck_time_varying_transitions_and_per_sequence_starts(implementation):
    rng = np.random.default_rng(22)
    lengths, n_states, n_steps = [4, 3], 3, 4
    log_start = torch.log(torch.as_tensor(rng.dirichlet(np.ones(n_states), size=2))).requires_grad_()
    log_trans = torch.log(
        torch.as_tensor(rng.dirichlet(np.ones(n_states), size=(2, n_steps, n_states)))
    ).requires_grad_()
    log_emission = torch.as_tensor(rng.normal(size=(2, n_steps, n_states))).requires_grad_()

    def f(ls, lt, le):
        return hmm_log_likelihood(ls, lt, le, lengths, implementation=implementation)

    assert torch.autograd.gradcheck(f, (log_start, log_trans, log_emission), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_gradcheck_forward_backward_outputs():
    rng = np.random.default_rng(23)
    log_start, log_trans, padded, _ = _batch(rng, 2, [3, 2])
    inputs = [x.clone().requires_grad_() for x in (log_trans, padded)]

    def f(lt, le):
        res = forward_backward_padded(log_start, lt, le, [3, 2])
        return res.posteriors, res.expected_transitions

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_gradient_identities(implementation):
    # d log p(x) / d log B[t, k] = p(z_t = k | x);  d / d log A[i, j] = sum_t xi_t(i, j);
    # d / d log pi[k] = p(z_0 = k | x). Checked against the numba forward-backward.
    rng = np.random.default_rng(24)
    lengths = [9, 1, 6]
    log_start, log_trans, log_emission = random_hmm(rng, 3, lengths, structural_zeros=True, masked_emissions=True)
    padded, mask = pad_sequences(log_emission, lengths)
    ls = torch.as_tensor(log_start).requires_grad_()
    lt = torch.as_tensor(log_trans).requires_grad_()
    le = torch.as_tensor(padded).clone().requires_grad_()
    hmm_log_likelihood(ls, lt, le, lengths, implementation=implementation).sum().backward()
    ref = forward_backward(log_start, log_trans, log_emission, lengths, backend="numba")
    for grad in (ls.grad, lt.grad, le.grad):
        assert torch.isfinite(grad).all()
    np.testing.assert_allclose(as_numpy(le.grad[mask]), as_numpy(ref.posteriors), atol=1e-12)
    assert not le.grad[~mask].any()  # padding does not influence the likelihood
    np.testing.assert_allclose(as_numpy(lt.grad), as_numpy(ref.expected_transitions), atol=1e-12)
    np.testing.assert_allclose(as_numpy(ls.grad), as_numpy(ref.expected_start), atol=1e-12)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_impossible_sequence_has_zero_not_nan_gradient(implementation):
    with np.errstate(divide="ignore"):
        log_start = torch.log(torch.tensor([1.0, 0.0], dtype=torch.float64)).requires_grad_()
        log_trans = torch.log(torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)).requires_grad_()
    log_emission = torch.zeros(2, 3, 2, dtype=torch.float64)
    log_emission[0, 2, 0] = -np.inf  # sequence 0 must end in state 1, unreachable from 0
    log_emission.requires_grad_()
    ll = hmm_log_likelihood(log_start, log_trans, log_emission, implementation=implementation)
    assert ll[0].item() == -np.inf and np.isfinite(ll[1].item())
    ll[1].backward(retain_graph=True)
    for grad in (log_start.grad, log_trans.grad, log_emission.grad):
        assert not torch.isnan(grad).any()
    assert not log_emission.grad[0].any()
    log_emission.grad = None
    ll.sum().backward()  # -inf in the sum: its gradient is still NaN-free
    assert not torch.isnan(log_emission.grad).any()
    assert not log_emission.grad[0].any()
