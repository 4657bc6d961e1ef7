"""Agreement with hmmlearn 0.3.3 on the same inputs (its C++ kernels and its estimators)."""

import numpy as np
import pytest
from inference_helpers import random_hmm, split

from probkit.inference import forward_backward, forward_filter, viterbi

hmmlearn = pytest.importorskip("hmmlearn")
from hmmlearn import _hmmc  # noqa: E402
from hmmlearn.hmm import CategoricalHMM  # noqa: E402
from inference_helpers import as_numpy  # noqa: E402

RTOL = 1e-8


def _hmmlearn_scaling(log_start, log_trans, log_emission, lengths):
    """hmmlearn's E-step ("scaling"): what BaseHMM._fit_scaling + stats accumulation compute."""
    start, trans = np.exp(log_start), np.exp(log_trans)
    logliks, posteriors, xi = [], [], np.zeros_like(trans)
    for seq in split(log_emission, lengths):
        frameprob = np.exp(seq)
        loglik, fwd, scaling = _hmmc.forward_scaling(start, trans, frameprob)
        bwd = _hmmc.backward_scaling(start, trans, frameprob, scaling)
        post = fwd * bwd
        post /= post.sum(axis=1, keepdims=True)
        if len(seq) > 1:
            xi += _hmmc.compute_scaling_xi_sum(fwd, trans, bwd, frameprob)
        logliks.append(loglik)
        posteriors.append(post)
    return np.array(logliks), np.concatenate(posteriors), xi


def _hmmlearn_log(log_start, log_trans, log_emission, lengths):
    """hmmlearn's E-step ("log")."""
    start, trans = np.exp(log_start), np.exp(log_trans)
    logliks, posteriors, xi = [], [], np.zeros_like(trans)
    for seq in split(log_emission, lengths):
        loglik, fwd = _hmmc.forward_log(start, trans, seq)
        bwd = _hmmc.backward_log(start, trans, seq)
        log_post = fwd + bwd
        post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
        post /= post.sum(axis=1, keepdims=True)
        if len(seq) > 1:
            xi += np.exp(_hmmc.compute_log_xi_sum(fwd, trans, bwd, seq))
        logliks.append(loglik)
        posteriors.append(post)
    return np.array(logliks), np.concatenate(posteriors), xi


# The torch "log" recursion is covered on shorter inputs (test_inference_implementations):
# torch runs each small transcendental op through its intra-op thread pool, which is slow
# on a busy two-core machine, and this test is about agreeing with hmmlearn.
@pytest.mark.parametrize(
    ("backend", "implementation"), [("numba", "scaling"), ("numba", "log"), ("torch", "scaling")]
)
def test_forward_backward_matches_hmmlearn_scaling_kernels(backend, implementation):
    rng = np.random.default_rng(0)
    lengths = [300, 1, 57, 140]
    log_start, log_trans, log_emission = random_hmm(rng, 5, lengths)
    loglik, post, xi = _hmmlearn_scaling(log_start, log_trans, log_emission, lengths)
    res = forward_backward(log_start, log_trans, log_emission, lengths, implementation=implementation, backend=backend)
    np.testing.assert_allclose(as_numpy(res.log_likelihood), loglik, rtol=RTOL)
    np.testing.assert_allclose(as_numpy(res.posteriors), post, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(as_numpy(res.expected_transitions), xi, rtol=RTOL)
    starts = np.cumsum([0] + lengths[:-1])
    np.testing.assert_allclose(as_numpy(res.expected_start), post[starts].sum(0), rtol=RTOL)


def test_forward_backward_matches_hmmlearn_log_kernels_with_emissions_near_minus_1e4():
    # hmmlearn's scaling kernels underflow here (exp(-1e4) == 0); its log kernels do not.
    rng = np.random.default_rng(1)
    lengths = [200, 33]
    log_start, log_trans, log_emission = random_hmm(rng, 4, lengths, emission_offset=-1e4, emission_scale=3.0)
    loglik, post, xi = _hmmlearn_log(log_start, log_trans, log_emission, lengths)
    for implementation in ["scaling", "log"]:
        res = forward_backward(log_start, log_trans, log_emission, lengths, implementation=implementation)
        np.testing.assert_allclose(as_numpy(res.log_likelihood), loglik, rtol=1e-12)
        np.testing.assert_allclose(as_numpy(res.posteriors), post, rtol=RTOL, atol=1e-12)
        np.testing.assert_allclose(as_numpy(res.expected_transitions), xi, rtol=RTOL)


# K = 8 and 19 exercise the register-blocked max-plus kernel (blocks of 8 states) and
# its remainder; K = 6 only the remainder path.
@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize(("n_states", "structural_zeros"), [(6, False), (8, False), (19, True)])
def test_viterbi_matches_hmmlearn(backend, n_states, structural_zeros):
    rng = np.random.default_rng(2 + n_states)
    lengths = [400, 2, 99]
    log_start, log_trans, log_emission = random_hmm(rng, n_states, lengths, structural_zeros=structural_zeros)
    res = viterbi(log_start, log_trans, log_emission, lengths, backend=backend)
    for s, seq in enumerate(split(log_emission, lengths)):
        log_prob, path = _hmmc.viterbi(np.exp(log_start), np.exp(log_trans), seq)
        assert res.log_prob[s].item() == pytest.approx(log_prob, rel=RTOL)
        np.testing.assert_array_equal(split(as_numpy(res.path), lengths)[s], path)


def test_categorical_hmm_estimator_with_hand_set_parameters():
    rng = np.random.default_rng(3)
    n_states, n_symbols, lengths = 4, 7, [120, 80, 5]
    model = CategoricalHMM(n_components=n_states, n_features=n_symbols, implementation="scaling")
    model.startprob_ = rng.dirichlet(np.ones(n_states))
    model.transmat_ = rng.dirichlet(np.ones(n_states), size=n_states)
    model.emissionprob_ = rng.dirichlet(np.ones(n_symbols), size=n_states)
    X = rng.integers(0, n_symbols, size=(sum(lengths), 1))
    log_emission = np.log(model.emissionprob_[:, X[:, 0]].T)
    log_start, log_trans = np.log(model.startprob_), np.log(model.transmat_)

    filt = forward_filter(log_start, log_trans, log_emission, lengths)
    assert filt.log_likelihood.sum().item() == pytest.approx(model.score(X, lengths), rel=RTOL)
    res = forward_backward(log_start, log_trans, log_emission, lengths)
    np.testing.assert_allclose(as_numpy(res.posteriors), model.predict_proba(X, lengths=lengths), rtol=RTOL, atol=1e-12)
    vit = viterbi(log_start, log_trans, log_emission, lengths)
    log_prob, path = model.decode(X, lengths=lengths, algorithm="viterbi")
    assert vit.log_prob.sum().item() == pytest.approx(log_prob, rel=RTOL)
    # Discrete emissions produce exact ties between paths (same factors, different order),
    # so compare the paths by their joint probability: both must be optimal.
    for s, (ours, theirs) in enumerate(zip(split(as_numpy(vit.path), lengths), split(path, lengths))):
        seq = split(log_emission, lengths)[s]
        assert _log_joint(log_start, log_trans, seq, ours) == pytest.approx(
            _log_joint(log_start, log_trans, seq, theirs), rel=1e-12
        )
    assert (as_numpy(vit.path) == path).mean() > 0.95


def _log_joint(log_start, log_trans, log_emission, path):
    """log p(x, z) of one path, summed directly."""
    steps = np.arange(len(path))
    return log_start[path[0]] + log_trans[path[:-1], path[1:]].sum() + log_emission[steps, path].sum()
