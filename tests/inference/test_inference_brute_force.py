"""Every kernel against exhaustive enumeration of the state paths (K <= 3, T <= 6)."""

import itertools
import zlib

import numpy as np
import pytest
import torch
from inference_helpers import (
    assert_close_with_inf,
    brute_force_filtered,
    brute_force_many,
    random_hmm,
)

from probkit.inference import (
    brute_force_hmm,
    forward_backward,
    forward_backward_padded,
    forward_filter,
    pad_sequences,
    viterbi,
    viterbi_padded,
)
from inference_helpers import as_numpy  # noqa: E402

BACKENDS = ["numba", "torch"]
IMPLEMENTATIONS = ["scaling", "log"]

# (n_states, lengths, structural_zeros, masked_emissions)
CASES = [
    (1, [3, 1], False, False),
    (2, [6, 1, 4], False, False),
    (3, [5, 2, 6, 1], False, False),
    (2, [6, 3], True, False),
    (3, [4, 6, 1], True, False),
    (3, [6, 5, 2], False, True),
    (3, [6, 4, 3, 1], True, True),
    # K = 9 runs the Viterbi kernel's blocks of 8 states plus a remainder of 1.
    (9, [5, 2], True, True),
]


def _case_id(case):
    k, lengths, zeros, masked = case
    return f"K{k}-L{'_'.join(map(str, lengths))}{'-zeros' if zeros else ''}{'-masked' if masked else ''}"


@pytest.fixture(params=CASES, ids=[_case_id(c) for c in CASES])
def model(request):
    n_states, lengths, zeros, masked = request.param
    rng = np.random.default_rng(zlib.crc32(_case_id(request.param).encode()))
    params = random_hmm(rng, n_states, lengths, structural_zeros=zeros, masked_emissions=masked)
    return params, lengths


def test_oracle_on_a_hand_computed_example():
    # Two states, two steps: p(x) = sum over 4 paths, worked out by hand.
    start, trans = np.array([0.6, 0.4]), np.array([[0.7, 0.3], [0.2, 0.8]])
    emis = np.array([[0.9, 0.2], [0.1, 0.8]])
    joint = {
        (i, j): start[i] * emis[0, i] * trans[i, j] * emis[1, j] for i, j in itertools.product(range(2), repeat=2)
    }
    total = sum(joint.values())
    res = brute_force_hmm(np.log(start), np.log(trans), np.log(emis))
    assert res.log_likelihood == pytest.approx(np.log(total), rel=1e-14)
    assert res.posteriors[0, 0] == pytest.approx((joint[0, 0] + joint[0, 1]) / total, rel=1e-14)
    assert res.expected_transitions[0, 1] == pytest.approx(joint[0, 1] / total, rel=1e-14)
    best = max(joint, key=joint.get)
    assert tuple(res.best_path) == best
    assert res.best_log_prob == pytest.approx(np.log(joint[best]), rel=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_forward_backward_matches_enumeration(model, backend, implementation):
    (log_start, log_trans, log_emission), lengths = model
    expected = brute_force_many(log_start, log_trans, log_emission, lengths)
    res = forward_backward(
        log_start, log_trans, log_emission, lengths, implementation=implementation, backend=backend
    )
    assert_close_with_inf(as_numpy(res.log_likelihood), expected["log_likelihood"])
    np.testing.assert_allclose(as_numpy(res.posteriors), expected["posteriors"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        as_numpy(res.expected_transitions), expected["expected_transitions"], rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(as_numpy(res.expected_start), expected["expected_start"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_viterbi_matches_enumeration(model, backend):
    (log_start, log_trans, log_emission), lengths = model
    expected = brute_force_many(log_start, log_trans, log_emission, lengths)
    res = viterbi(log_start, log_trans, log_emission, lengths, backend=backend)
    assert isinstance(res.path, np.ndarray) and res.path.dtype == np.int64  # numpy in, numpy out
    np.testing.assert_array_equal(as_numpy(res.path), expected["best_path"])
    assert_close_with_inf(as_numpy(res.log_prob), expected["best_log_prob"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_forward_filter_matches_enumeration_of_prefixes(model, backend, implementation):
    (log_start, log_trans, log_emission), lengths = model
    res = forward_filter(log_start, log_trans, log_emission, lengths, implementation=implementation, backend=backend)
    expected = brute_force_many(log_start, log_trans, log_emission, lengths)
    assert_close_with_inf(as_numpy(res.log_likelihood), expected["log_likelihood"])
    np.testing.assert_allclose(
        as_numpy(res.filtered), brute_force_filtered(log_start, log_trans, log_emission, lengths), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_padded_batch_matches_enumeration(model, implementation):
    (log_start, log_trans, log_emission), lengths = model
    expected = brute_force_many(log_start, log_trans, log_emission, lengths)
    padded, mask = pad_sequences(log_emission, lengths)
    res = forward_backward_padded(log_start, log_trans, padded, lengths, implementation=implementation)
    assert_close_with_inf(as_numpy(res.log_likelihood), expected["log_likelihood"])
    np.testing.assert_allclose(as_numpy(res.posteriors[mask]), expected["posteriors"], rtol=1e-10, atol=1e-12)
    assert not res.posteriors[~mask].any()
    np.testing.assert_allclose(
        as_numpy(res.expected_transitions.sum(0)), expected["expected_transitions"], rtol=1e-10, atol=1e-12
    )
    vit = viterbi_padded(log_start, log_trans, padded, lengths)
    np.testing.assert_array_equal(as_numpy(vit.paths[mask]), expected["best_path"])
    assert (vit.paths[~mask] == -1).all()


def _impossible_model():
    """A left-right chain that cannot reach state 2 within 2 steps, observed in state 2."""
    with np.errstate(divide="ignore"):
        log_start = np.log([1.0, 0.0, 0.0])
        log_trans = np.log([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    log_emission = np.zeros((5, 3))
    log_emission[1] = [-np.inf, -np.inf, 0.0]  # step 1 must be in state 2: impossible
    log_emission[4] = [-1.0, -2.0, -np.inf]
    return log_start, log_trans, log_emission, [2, 3]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_impossible_sequence_gives_minus_inf_and_no_nan(backend, implementation):
    log_start, log_trans, log_emission, lengths = _impossible_model()
    expected = brute_force_many(log_start, log_trans, log_emission, lengths)
    assert expected["log_likelihood"][0] == -np.inf and np.isfinite(expected["log_likelihood"][1])
    res = forward_backward(log_start, log_trans, log_emission, lengths, implementation=implementation, backend=backend)
    assert_close_with_inf(as_numpy(res.log_likelihood), expected["log_likelihood"])
    np.testing.assert_allclose(as_numpy(res.posteriors), expected["posteriors"], atol=1e-12)
    assert not res.posteriors[:2].any()
    np.testing.assert_allclose(as_numpy(res.expected_transitions), expected["expected_transitions"], atol=1e-12)
    vit = viterbi(log_start, log_trans, log_emission, lengths, backend=backend)
    np.testing.assert_array_equal(as_numpy(vit.path), expected["best_path"])
    assert vit.path[:2].tolist() == [-1, -1]
    filt = forward_filter(log_start, log_trans, log_emission, lengths, implementation=implementation, backend=backend)
    assert filt.log_likelihood[0] == -np.inf
    assert not np.isnan(filt.filtered).any()
    assert not filt.filtered[1].any()  # p(z_1 | x_0, x_1) is undefined: reported as zeros


def test_all_minus_inf_emission_row_is_impossible_not_nan():
    log_start, log_trans, log_emission = random_hmm(np.random.default_rng(3), 3, [4])
    log_emission[2] = -np.inf
    for backend in BACKENDS:
        for implementation in IMPLEMENTATIONS:
            res = forward_backward(log_start, log_trans, log_emission, implementation=implementation, backend=backend)
            assert res.log_likelihood.item() == -np.inf
            assert not np.isnan(res.posteriors).any() and not res.posteriors.any()
