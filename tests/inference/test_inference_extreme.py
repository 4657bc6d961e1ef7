"""Posteriors stay normalised on extreme emissions, in both implementations and both backends.

Log emissions of order -1e11 used to leave the log-space recursion with filtered
probabilities wrong in the sixth digit (and rows of posteriors summing to 1 - 1e-6);
hmmlearn's log implementation returns rows summing to 2 on the same input.
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probkit import GaussianHMM
from probkit.inference import forward_backward
from inference_helpers import as_numpy  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    n_states=st.integers(2, 4),
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    log_scale=st.sampled_from([1.0, 1e6, 1e11, 1e15]),
    seed=st.integers(0, 2**31 - 1),
)
def test_posteriors_are_normalised_for_any_emission_magnitude(n_states, lengths, log_scale, seed):
    rng = np.random.RandomState(seed)
    n = sum(lengths)
    log_emission = -log_scale * rng.uniform(0, 1, size=(n, n_states))
    # ties between states at huge magnitudes are the hard case
    tie = rng.uniform(size=n) < 0.3
    log_emission[tie] = log_emission[tie, :1]
    log_start = np.log(rng.dirichlet(np.ones(n_states)))
    log_trans = np.log(rng.dirichlet(np.ones(n_states), size=n_states))
    results = {}
    for backend in ("numba", "torch"):
        for implementation in ("log", "scaling"):
            res = forward_backward(log_start, log_trans, log_emission, lengths, implementation=implementation,
                                   backend=backend)
            post = as_numpy(res.posteriors)
            np.testing.assert_allclose(post.sum(1), 1.0, rtol=0, atol=1e-12)
            np.testing.assert_allclose(res.expected_transitions.sum().item(), n - len(lengths), rtol=1e-12,
                                       atol=1e-12)
            results[backend, implementation] = res
    ref = results["numba", "scaling"]
    for res in results.values():
        np.testing.assert_allclose(as_numpy(res.posteriors), as_numpy(ref.posteriors), rtol=0, atol=1e-9)
        np.testing.assert_allclose(as_numpy(res.log_likelihood), as_numpy(ref.log_likelihood), rtol=1e-12)


@pytest.mark.parametrize("implementation", ["log", "scaling"])
def test_gaussian_hmm_with_tiny_variances_and_a_far_observation(implementation):
    model = GaussianHMM(2, covariance_type="diag", implementation=implementation)
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.9, 0.1], [0.1, 0.9]])
    model.means_ = np.array([[0.0], [1.0]])
    model.covars_ = np.array([[1e-12], [1e-12]])
    X = np.array([[0.0], [1e3], [1.0], [0.5]])
    post = model.predict_proba(X)
    np.testing.assert_allclose(post.sum(1), 1.0, rtol=0, atol=1e-12)
    # the last observation is equidistant from both means: its posterior is the predictive
    # distribution after state 1, i.e. the second row of transmat_
    np.testing.assert_allclose(post[-1], [0.1, 0.9], atol=1e-12)


def test_gradients_are_unchanged_by_the_emission_shift():
    rng = np.random.RandomState(0)
    le = torch.tensor(rng.normal(size=(7, 3)) * 50, requires_grad=True)
    ls = torch.log(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64))
    lt = torch.log(torch.tensor(rng.dirichlet(np.ones(3), size=3)))
    ll = forward_backward(ls, lt, le, implementation="log", backend="torch").log_likelihood.sum()
    (grad,) = torch.autograd.grad(ll, le)
    # the gradient of log p(x) with respect to the log emissions is the posterior
    post = forward_backward(ls, lt, le.detach(), implementation="scaling").posteriors
    torch.testing.assert_close(grad, post, rtol=0, atol=1e-12)
