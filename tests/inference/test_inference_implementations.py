"""Implementations and backends against each other, and the numerically hard cases."""

import itertools

import numpy as np
import pytest
import torch
from inference_helpers import assert_close_with_inf, brute_force_many, random_hmm, split

from probkit.inference import (
    forward_backward,
    forward_backward_padded,
    forward_filter,
    forward_filter_padded,
    hmm_log_likelihood,
    pad_sequences,
    unpad_sequences,
    viterbi,
    viterbi_padded,
)
from probkit.inference import _numba_backend, _numba_kernels, _torch_kernels
from inference_helpers import as_numpy  # noqa: E402


def _all_results(log_start, log_trans, log_emission, lengths, combos):
    return {
        (backend, impl): forward_backward(
            log_start, log_trans, log_emission, lengths, implementation=impl, backend=backend
        )
        for backend, impl in combos
    }


def _assert_same(a, b, rtol=1e-9, atol=1e-12):
    assert_close_with_inf(as_numpy(a.log_likelihood), as_numpy(b.log_likelihood), rtol=rtol)
    np.testing.assert_allclose(as_numpy(a.posteriors), as_numpy(b.posteriors), rtol=rtol, atol=atol)
    np.testing.assert_allclose(as_numpy(a.expected_transitions), as_numpy(b.expected_transitions), rtol=rtol, atol=atol)
    np.testing.assert_allclose(as_numpy(a.expected_start), as_numpy(b.expected_start), rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    "options",
    [{}, {"structural_zeros": True}, {"masked_emissions": True}, {"structural_zeros": True, "masked_emissions": True}],
    ids=["dense", "zeros", "masked", "zeros+masked"],
)
def test_scaling_log_numba_torch_all_agree(options):
    rng = np.random.default_rng(11)
    lengths = [120, 1, 33, 80]
    params = random_hmm(rng, 5, lengths, **options)
    combos = [("numba", "scaling"), ("numba", "log"), ("torch", "scaling")]
    results = _all_results(*params, lengths, combos)
    reference = results[("numba", "log")]
    for key, res in results.items():
        _assert_same(res, reference)
    # The torch log recursion on a shorter batch (it runs several small ops per step).
    short = [20, 1, 9]
    params = random_hmm(rng, 4, short, **options)
    _assert_same(
        forward_backward(*params, short, implementation="log", backend="torch"),
        forward_backward(*params, short, implementation="log", backend="numba"),
    )


def test_viterbi_and_filter_backends_agree():
    rng = np.random.default_rng(12)
    lengths = [150, 2, 60]
    params = random_hmm(rng, 6, lengths, structural_zeros=True, masked_emissions=True)
    a, b = viterbi(*params, lengths, backend="numba"), viterbi(*params, lengths, backend="torch")
    np.testing.assert_array_equal(as_numpy(a.path), as_numpy(b.path))
    np.testing.assert_allclose(as_numpy(a.log_prob), as_numpy(b.log_prob), rtol=1e-12)
    f = {
        (be, im): forward_filter(*params, lengths, backend=be, implementation=im)
        for be, im in [("numba", "scaling"), ("numba", "log"), ("torch", "scaling")]
    }
    for res in f.values():
        np.testing.assert_allclose(as_numpy(res.log_likelihood), as_numpy(f[("numba", "log")].log_likelihood), rtol=1e-10)
        np.testing.assert_allclose(as_numpy(res.filtered), as_numpy(f[("numba", "log")].filtered), rtol=1e-9, atol=1e-12)


def _dynamic_range_model():
    """Two disconnected chains; the data favour chain 0 by 800 nats for three steps, then
    rule it out by 1e4 nats. Normalised linear messages flush chain 1 to zero (exp(-800)
    underflows), so the scaled recursion must detect this and recompute in log space."""
    log_start = np.log([0.5, 0.5])
    with np.errstate(divide="ignore"):
        log_trans = np.log(np.eye(2))
    log_emission = np.array([[0.0, -800.0], [0.0, -800.0], [0.0, -800.0], [-1e4, 0.0]])
    return log_start, log_trans, log_emission


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("implementation", ["scaling", "log"])
def test_fallback_recovers_states_flushed_by_underflow(backend, implementation):
    log_start, log_trans, log_emission = _dynamic_range_model()
    expected = brute_force_many(log_start, log_trans, log_emission, [4])
    assert expected["log_likelihood"][0] == pytest.approx(np.log(0.5) - 2400.0, rel=1e-14)
    res = forward_backward(log_start, log_trans, log_emission, implementation=implementation, backend=backend)
    np.testing.assert_allclose(as_numpy(res.log_likelihood), expected["log_likelihood"], rtol=1e-13)
    np.testing.assert_allclose(as_numpy(res.posteriors), expected["posteriors"], atol=1e-14)
    np.testing.assert_allclose(as_numpy(res.expected_transitions), expected["expected_transitions"], atol=1e-14)
    filt = forward_filter(log_start, log_trans, log_emission, implementation=implementation, backend=backend)
    np.testing.assert_allclose(as_numpy(filt.log_likelihood), expected["log_likelihood"], rtol=1e-13)
    np.testing.assert_allclose(as_numpy(filt.filtered[-1]), [0.0, 1.0], atol=1e-14)


def test_fallback_is_actually_taken_by_the_scaled_kernels():
    # Guards the test above against passing vacuously: the scaled passes must report failure.
    log_start, log_trans, log_emission = _dynamic_range_model()
    *_, status = _numba_backend.forward_backward(log_start, log_trans, log_emission, np.array([4]), use_log=False)
    assert status.tolist() == [_numba_kernels.STATUS_LOG]
    *_, status = _numba_backend.forward(log_start, log_trans, log_emission, np.array([4]), use_log=False)
    assert status.tolist() == [_numba_kernels.STATUS_LOG]
    batch = [torch.as_tensor(x)[None] for x in (log_start, log_trans, log_emission)]
    mask = torch.ones(1, 4, dtype=torch.bool)
    _, _, failed, _ = _torch_kernels.forward_scaled(batch[0], batch[1][0], batch[2], mask, True)
    assert failed.tolist() == [True]
    # ...while an ordinary model stays on the fast path.
    params = random_hmm(np.random.default_rng(0), 3, [50])
    *_, status = _numba_backend.forward_backward(*params, np.array([50]), use_log=False)
    assert status.tolist() == [_numba_kernels.STATUS_SCALED]


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_emissions_near_minus_1e4_match_enumeration(backend):
    rng = np.random.default_rng(13)
    lengths = [6, 4, 5]
    params = random_hmm(rng, 3, lengths, structural_zeros=True, emission_offset=-1e4, emission_scale=5.0)
    expected = brute_force_many(*params, lengths)
    assert np.all(expected["log_likelihood"] < -3e4)
    for implementation in ["scaling", "log"]:
        res = forward_backward(*params, lengths, implementation=implementation, backend=backend)
        np.testing.assert_allclose(as_numpy(res.log_likelihood), expected["log_likelihood"], rtol=1e-13)
        np.testing.assert_allclose(as_numpy(res.posteriors), expected["posteriors"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            as_numpy(res.expected_transitions), expected["expected_transitions"], rtol=1e-9, atol=1e-12
        )
    vit = viterbi(*params, lengths, backend=backend)
    np.testing.assert_array_equal(as_numpy(vit.path), expected["best_path"])
    np.testing.assert_allclose(as_numpy(vit.log_prob), expected["best_log_prob"], rtol=1e-13)


def test_million_step_sequence_is_finite_and_matches_log_space():
    rng = np.random.default_rng(14)
    n_steps = 1_000_000
    log_start, log_trans, log_emission = random_hmm(rng, 2, [n_steps], emission_offset=-1e4, emission_scale=2.0)
    scaled = forward_backward(log_start, log_trans, log_emission, implementation="scaling")
    exact = forward_backward(log_start, log_trans, log_emission, implementation="log")
    ll = scaled.log_likelihood.item()
    assert np.isfinite(ll) and ll < -9e9  # about -1e4 per step
    assert ll == pytest.approx(exact.log_likelihood.item(), rel=1e-12)
    assert np.isfinite(scaled.posteriors).all()
    np.testing.assert_allclose(as_numpy(scaled.posteriors), as_numpy(exact.posteriors), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(
        as_numpy(scaled.expected_transitions), as_numpy(exact.expected_transitions), rtol=1e-8
    )
    assert scaled.expected_transitions.sum().item() == pytest.approx(n_steps - 1, rel=1e-10)
    vit = viterbi(log_start, log_trans, log_emission)
    assert np.isfinite(vit.log_prob.item()) and vit.log_prob.item() <= ll
    assert int((vit.path >= 0).sum()) == n_steps


def test_threaded_blocks_give_the_same_results_as_one_block(monkeypatch):
    rng = np.random.default_rng(15)
    lengths = list(rng.integers(1, 60, size=40))
    params = random_hmm(rng, 4, lengths, masked_emissions=True)
    one_block = forward_backward(*params, lengths)
    one_vit = viterbi(*params, lengths)
    monkeypatch.setattr(_numba_backend, "_MIN_WORK_FOR_THREADS", 0)
    monkeypatch.setattr(_numba_backend, "worker_threads", lambda: 3)
    offsets = _numba_backend._offsets(np.array(lengths))
    assert len(_numba_backend._block_bounds(offsets, 4)) == 4
    _assert_same(forward_backward(*params, lengths), one_block, rtol=1e-13)
    np.testing.assert_array_equal(as_numpy(viterbi(*params, lengths).path), as_numpy(one_vit.path))


def test_padded_matches_concatenated_with_per_sequence_parameters():
    rng = np.random.default_rng(16)
    lengths = [7, 3, 5]
    n_states = 3
    starts, transes, emissions = [], [], []
    for length in lengths:
        s, a, e = random_hmm(rng, n_states, [length], structural_zeros=bool(length % 2))
        starts.append(s), transes.append(a), emissions.append(e)
    padded, mask = pad_sequences(np.concatenate(emissions), lengths)
    log_start = torch.as_tensor(np.stack(starts))
    log_trans = torch.as_tensor(np.stack(transes))
    for implementation in ["scaling", "log"]:
        res = forward_backward_padded(log_start, log_trans, padded, lengths, implementation=implementation)
        for b, length in enumerate(lengths):
            ref = forward_backward(starts[b], transes[b], emissions[b])
            assert res.log_likelihood[b].item() == pytest.approx(ref.log_likelihood.item(), rel=1e-12)
            np.testing.assert_allclose(as_numpy(res.posteriors[b, :length]), as_numpy(ref.posteriors), atol=1e-12)
            np.testing.assert_allclose(as_numpy(res.expected_transitions[b]), as_numpy(ref.expected_transitions), atol=1e-12)
        # Time-varying form with every step's matrix equal to the sequence's own matrix.
        varying = log_trans[:, None].expand(-1, padded.shape[1], -1, -1)
        res_t = forward_backward_padded(log_start, varying, padded, lengths, implementation=implementation)
        _assert_same_padded(res_t, res)
    vit = viterbi_padded(log_start, log_trans, padded, lengths)
    for b, length in enumerate(lengths):
        ref = viterbi(starts[b], transes[b], emissions[b])
        np.testing.assert_array_equal(as_numpy(vit.paths[b, :length]), as_numpy(ref.path))
    assert (vit.paths[~mask] == -1).all()


def _assert_same_padded(a, b):
    np.testing.assert_allclose(as_numpy(a.log_likelihood), as_numpy(b.log_likelihood), rtol=1e-12)
    np.testing.assert_allclose(as_numpy(a.posteriors), as_numpy(b.posteriors), atol=1e-12)
    np.testing.assert_allclose(as_numpy(a.expected_transitions), as_numpy(b.expected_transitions), atol=1e-12)


def _enumerate_time_varying(log_start, log_trans_t, log_emission):
    """Brute force for time-varying transitions: log_trans_t[t] moves step t-1 into t."""
    n_steps, n_states = log_emission.shape
    log_joint, paths = [], []
    for path in itertools.product(range(n_states), repeat=n_steps):
        lp = log_start[path[0]] + log_emission[0, path[0]]
        for t in range(1, n_steps):
            lp += log_trans_t[t, path[t - 1], path[t]] + log_emission[t, path[t]]
        log_joint.append(lp)
        paths.append(path)
    log_joint, paths = np.array(log_joint), np.array(paths)
    top = log_joint.max()
    w = np.exp(log_joint - top)
    loglik = top + np.log(w.sum())
    w /= w.sum()
    post = np.zeros((n_steps, n_states))
    xi = np.zeros((n_states, n_states))
    for t in range(n_steps):
        np.add.at(post[t], paths[:, t], w)
        if t:
            np.add.at(xi, (paths[:, t - 1], paths[:, t]), w)
    return loglik, post, xi, paths[np.argmax(log_joint)]


@pytest.mark.parametrize("implementation", ["scaling", "log"])
def test_time_varying_transitions_match_enumeration(implementation):
    rng = np.random.default_rng(17)
    lengths, n_states, n_steps = [5, 3], 3, 5
    log_start = np.log(rng.dirichlet(np.ones(n_states), size=2))
    log_trans = np.log(rng.dirichlet(np.ones(n_states), size=(2, n_steps, n_states)))
    log_trans[0, 2, 1, :] = -np.inf  # a structural zero at one step only
    log_trans[0, 2, 1, 0] = 0.0
    log_emission = rng.normal(size=(2, n_steps, n_states))
    res = forward_backward_padded(log_start, log_trans, log_emission, lengths, implementation=implementation)
    vit = viterbi_padded(log_start, log_trans, log_emission, lengths)
    for b, length in enumerate(lengths):
        loglik, post, xi, best = _enumerate_time_varying(log_start[b], log_trans[b], log_emission[b, :length])
        assert res.log_likelihood[b].item() == pytest.approx(loglik, rel=1e-12)
        np.testing.assert_allclose(as_numpy(res.posteriors[b, :length]), post, atol=1e-12)
        np.testing.assert_allclose(as_numpy(res.expected_transitions[b]), xi, atol=1e-12)
        np.testing.assert_array_equal(as_numpy(vit.paths[b, :length]), best)
        assert hmm_log_likelihood(
            log_start, log_trans, log_emission, lengths, implementation=implementation
        )[b].item() == pytest.approx(loglik, rel=1e-12)


def test_padded_filter_and_pad_roundtrip():
    rng = np.random.default_rng(18)
    lengths = [4, 1, 6]
    params = random_hmm(rng, 3, lengths, masked_emissions=True)
    padded, mask = pad_sequences(params[2], lengths, fill=-7.0)
    assert padded.shape == (3, 6, 3) and (padded[~mask] == -7.0).all()
    np.testing.assert_array_equal(as_numpy(unpad_sequences(padded, lengths)), params[2])
    ref = forward_filter(*params, lengths)
    for implementation in ["scaling", "log"]:
        ll, filtered = forward_filter_padded(params[0], params[1], padded, lengths, implementation=implementation)
        np.testing.assert_allclose(as_numpy(ll), as_numpy(ref.log_likelihood), rtol=1e-12)
        np.testing.assert_allclose(as_numpy(unpad_sequences(filtered, lengths)), as_numpy(ref.filtered), atol=1e-12)
        assert not filtered[~mask].any()


def test_float32_inputs_give_float32_outputs_close_to_float64():
    rng = np.random.default_rng(19)
    lengths = [40, 25]
    params64 = [torch.as_tensor(p) for p in random_hmm(rng, 4, lengths)]
    params32 = [p.float() for p in params64]
    for backend in ["numba", "torch"]:
        res32 = forward_backward(*params32, lengths, backend=backend)
        res64 = forward_backward(*params64, lengths, backend=backend)
        assert res32.posteriors.dtype == torch.float32 and res32.log_likelihood.dtype == torch.float32
        np.testing.assert_allclose(as_numpy(res32.log_likelihood), as_numpy(res64.log_likelihood), rtol=1e-5)
        np.testing.assert_allclose(as_numpy(res32.posteriors), as_numpy(res64.posteriors), atol=1e-4)
    padded, _ = pad_sequences(params32[2], lengths)
    ll = hmm_log_likelihood(params32[0], params32[1], padded, lengths)
    assert ll.dtype == torch.float32
    np.testing.assert_allclose(as_numpy(ll), as_numpy(res64.log_likelihood), rtol=1e-5)
    split(as_numpy(params32[2]), lengths)  # the helper works on float32 too


def _isolated_state_model():
    """Two disconnected chains. Step 0 favours chain 0 by 800 nats, which flushes chain 1
    to zero in a normalised linear recursion; the next three steps favour chain 1 by 300
    nats each (each step normaliser stays above the floor), so chain 1 wins by 100 nats
    in the end. A plain scaled forward pass silently returns log(0.5) - 900."""
    log_start = np.log([0.5, 0.5])
    with np.errstate(divide="ignore"):
        log_trans = np.log(np.eye(2))
    log_emission = np.array([[0.0, -800.0], [-300.0, 0.0], [-300.0, 0.0], [-300.0, 0.0]])
    return log_start, log_trans, log_emission


def test_plain_scaled_forward_is_wrong_on_the_isolated_state_model():
    # Documents why forward-only calls verify: the bare kernels report success and are wrong.
    log_start, log_trans, log_emission = _isolated_state_model()
    emis, shift = _numba_backend._scaled_emission(log_emission)
    trans, trans_t, log_trans_t = _numba_backend._transition_arrays(log_trans)
    loglik, status = np.empty(1), np.empty(1, dtype=np.int64)
    filtered = np.empty_like(emis)
    _numba_kernels.forward_block(
        np.exp(log_start), trans, trans_t, log_start, log_trans_t, log_emission, np.array([0, 4]), 0, 1,
        False, False, False, emis, filtered, shift, loglik, status,
    )
    assert status[0] == _numba_kernels.STATUS_SCALED
    assert loglik[0] == pytest.approx(np.log(0.5) - 900.0, rel=1e-14)
    assert not _numba_backend.scaled_forward_is_exact(trans)
    batch = [torch.as_tensor(x) for x in (log_start[None], log_trans, log_emission[None])]
    mask = torch.ones(1, 4, dtype=torch.bool)
    alpha, _, failed, emis_t = _torch_kernels.forward_scaled(*batch, mask, True)
    assert failed.tolist() == [False]
    assert _torch_kernels.backward_check_scaled(batch[1], alpha, emis_t, mask, True).tolist() == [True]


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("implementation", ["scaling", "log"])
def test_forward_only_paths_are_exact_on_the_isolated_state_model(backend, implementation):
    log_start, log_trans, log_emission = _isolated_state_model()
    expected = brute_force_many(log_start, log_trans, log_emission, [4])
    assert expected["log_likelihood"][0] == pytest.approx(np.log(0.5) - 800.0, rel=1e-12)
    filt = forward_filter(log_start, log_trans, log_emission, implementation=implementation, backend=backend)
    np.testing.assert_allclose(as_numpy(filt.log_likelihood), expected["log_likelihood"], rtol=1e-13)
    np.testing.assert_allclose(as_numpy(filt.filtered[-1]), [0.0, 1.0], atol=1e-14)
    res = forward_backward(log_start, log_trans, log_emission, implementation=implementation, backend=backend)
    np.testing.assert_allclose(as_numpy(res.log_likelihood), expected["log_likelihood"], rtol=1e-13)
    np.testing.assert_allclose(as_numpy(res.posteriors), expected["posteriors"], atol=1e-14)


def test_padded_forward_only_paths_on_the_isolated_state_model():
    log_start, log_trans, log_emission = _isolated_state_model()
    truth = np.log(0.5) - 800.0 + np.log1p(np.exp(-100.0))
    for chunk_size in [None, 1, 3]:
        ll = hmm_log_likelihood(log_start, log_trans, log_emission[None], chunk_size=chunk_size)
        assert ll.item() == pytest.approx(truth, rel=1e-13)
    ll, filtered = forward_filter_padded(log_start, log_trans, log_emission[None])
    assert ll.item() == pytest.approx(truth, rel=1e-13)
    np.testing.assert_allclose(as_numpy(filtered[0, -1]), [0.0, 1.0], atol=1e-14)


CHUNK_CASES = [
    ({}, [50, 13, 1, 37]),
    ({"masked_emissions": True}, [20, 31]),
    ({"emission_offset": -1e4, "emission_scale": 4.0}, [40, 40, 7]),
]


@pytest.mark.parametrize(("options", "lengths"), CHUNK_CASES)
@pytest.mark.parametrize("chunk_size", [1, 3, 8, 100])
def test_chunked_log_likelihood_matches_step_by_step(options, lengths, chunk_size):
    rng = np.random.default_rng(25)
    log_start, log_trans, log_emission = random_hmm(rng, 4, lengths, **options)
    padded, _ = pad_sequences(log_emission, lengths)
    reference = hmm_log_likelihood(log_start, log_trans, padded, lengths)
    chunked = hmm_log_likelihood(log_start, log_trans, padded, lengths, chunk_size=chunk_size)
    np.testing.assert_allclose(as_numpy(chunked), as_numpy(reference), rtol=1e-12)
    # The chunked scan must really have run (not been bypassed) for a dense model.
    assert _torch_kernels.scaled_forward_is_exact(torch.as_tensor(log_trans))


def test_chunked_log_likelihood_gradients_and_parameter_layouts():
    rng = np.random.default_rng(26)
    lengths, n_states, n_steps = [9, 4, 7], 3, 9
    log_start = torch.log(torch.as_tensor(rng.dirichlet(np.ones(n_states), size=3))).requires_grad_()
    log_trans = torch.log(
        torch.as_tensor(rng.dirichlet(np.ones(n_states), size=(3, n_steps, n_states)))
    ).requires_grad_()
    log_emission = torch.as_tensor(rng.normal(size=(3, n_steps, n_states))).requires_grad_()
    inputs = (log_start, log_trans, log_emission)
    ref = hmm_log_likelihood(*inputs, lengths)
    ref_grads = torch.autograd.grad(ref.sum(), inputs)
    out = hmm_log_likelihood(*inputs, lengths, chunk_size=4)
    grads = torch.autograd.grad(out.sum(), inputs)
    np.testing.assert_allclose(as_numpy(out.detach()), as_numpy(ref.detach()), rtol=1e-12)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(as_numpy(g), as_numpy(r), atol=1e-12)
    small = [x.detach()[:2, :4].clone().requires_grad_() for x in inputs[1:]]
    assert torch.autograd.gradcheck(
        lambda lt, le: hmm_log_likelihood(log_start.detach()[:2], lt, le, [4, 3], chunk_size=2),
        small,
        eps=1e-6,
        atol=1e-7,
    )


def test_chunk_size_is_validated():
    args = (np.zeros(2), np.zeros((2, 2)), np.zeros((1, 3, 2)))
    for bad in [0, -1, 2.5, True]:
        with pytest.raises(ValueError, match="chunk_size"):
            hmm_log_likelihood(*args, chunk_size=bad)
    with pytest.raises(ValueError, match="chunk_size"):
        hmm_log_likelihood(*args, implementation="log", chunk_size=2)
