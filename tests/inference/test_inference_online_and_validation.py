"""Online filtering, input validation, and the runnable docstring examples."""

import doctest

import numpy as np
import pytest
import torch
from inference_helpers import random_hmm

import probkit.inference.brute_force
import probkit.inference.concatenated
import probkit.inference.padded
import probkit.inference.sampling
from probkit.inference import (
    ForwardFilter,
    brute_force_hmm,
    forward_backward,
    forward_backward_padded,
    forward_filter,
    hmm_log_likelihood,
    pad_sequences,
    unpad_sequences,
    viterbi,
    viterbi_padded,
)

# ---------------------------------------------------------------------------------------
# ForwardFilter
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["log", "scaling"])
def test_online_filter_equals_batch_filter(implementation):
    rng = np.random.default_rng(41)
    log_start, log_trans, log_emission = random_hmm(rng, 4, [60], structural_zeros=True, masked_emissions=True)
    batch = forward_filter(log_start, log_trans, log_emission)
    online = ForwardFilter(log_start, log_trans, implementation=implementation)
    steps = [online.update(row) for row in log_emission[:25]]
    assert steps[0].shape == (4,)
    chunk = online.update(torch.as_tensor(log_emission[25:]))
    assert chunk.shape == (35, 4)
    filtered = torch.cat([torch.stack(steps), chunk]).numpy()
    np.testing.assert_allclose(filtered, batch.filtered.numpy(), rtol=1e-10, atol=1e-13)
    assert online.log_likelihood == pytest.approx(batch.log_likelihood.item(), rel=1e-12)
    assert online.n_steps_ == 60
    np.testing.assert_allclose(online.filtered_.numpy(), batch.filtered[-1].numpy(), rtol=1e-10)

    online.reset()
    assert online.log_likelihood == 0.0 and online.filtered_ is None and online.n_steps_ == 0
    np.testing.assert_allclose(online.update(log_emission[:10]).numpy(), batch.filtered[:10].numpy(), rtol=1e-10)


def test_online_scaling_filter_with_an_isolated_state_stays_exact():
    # Chain 1 is flushed to zero at step 0 in linear arithmetic but wins later; with
    # structural zeros the online "scaling" filter works in log space (see the class docs).
    with np.errstate(divide="ignore"):
        f = ForwardFilter(np.log([0.5, 0.5]), np.log(np.eye(2)), implementation="scaling")
    f.update([0.0, -800.0])
    for _ in range(3):
        last = f.update([-300.0, 0.0])
    assert f.log_likelihood == pytest.approx(np.log(0.5) - 800.0, rel=1e-13)
    np.testing.assert_allclose(last.numpy(), [0.0, 1.0], atol=1e-14)


def test_online_filter_after_the_observations_became_impossible():
    with np.errstate(divide="ignore"):
        f = ForwardFilter(np.log([1.0, 0.0]), np.log([[1.0, 0.0], [0.0, 1.0]]))
    f.update([0.0, 0.0])
    assert not f.update([-np.inf, 0.0]).any()
    assert f.log_likelihood == -np.inf
    assert not f.update(np.zeros((3, 2))).any() and f.log_likelihood == -np.inf
    assert f.n_steps_ == 5


def test_online_filter_rejects_bad_input():
    with pytest.raises(ValueError, match="log_transmat"):
        ForwardFilter(np.zeros(3), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="log_startprob"):
        ForwardFilter(np.zeros((2, 2)), np.zeros((2, 2)))
    f = ForwardFilter(np.log([0.5, 0.5]), np.log([[0.5, 0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="log_emission_t"):
        f.update(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        f.update([np.nan, 0.0])
    with pytest.raises(ValueError, match="implementation"):
        ForwardFilter(np.zeros(2), np.zeros((2, 2)), implementation="fast")


# ---------------------------------------------------------------------------------------
# Validation of the concatenated API
# ---------------------------------------------------------------------------------------

K = 3
GOOD = dict(log_startprob=np.log(np.full(K, 1 / K)), log_transmat=np.log(np.full((K, K), 1 / K)))
CONCATENATED = [forward_backward, viterbi, forward_filter]


def _call(func, log_startprob=None, log_transmat=None, log_emission=None, lengths=None, **kwargs):
    return func(
        GOOD["log_startprob"] if log_startprob is None else log_startprob,
        GOOD["log_transmat"] if log_transmat is None else log_transmat,
        np.zeros((5, K)) if log_emission is None else log_emission,
        lengths,
        **kwargs,
    )


@pytest.mark.parametrize("func", CONCATENATED)
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"log_startprob": np.zeros(K + 1)}, "log_startprob"),
        ({"log_startprob": np.zeros((1, K))}, "log_startprob"),
        ({"log_transmat": np.zeros((K, K + 1))}, "log_transmat"),
        ({"log_transmat": np.zeros((2, K, K))}, "log_transmat"),
        ({"log_emission": np.zeros(5)}, "log_emission"),
        ({"log_emission": np.zeros((0, K))}, "log_emission"),
        ({"log_emission": np.zeros((5, K, 1))}, "log_emission"),
        ({"lengths": [2, 2]}, "lengths must sum"),
        ({"lengths": [5, 0]}, "lengths must be positive"),
        ({"lengths": [6, -1]}, "lengths must be positive"),
        ({"lengths": [[5]]}, "lengths"),
        ({"lengths": [2.5, 2.5]}, "lengths must hold integers"),
        ({"log_emission": np.where(np.eye(5, K) > 0, np.nan, 0.0)}, "log_emission contains NaN"),
        ({"log_emission": np.where(np.eye(5, K) > 0, np.inf, 0.0)}, r"log_emission contains \+inf"),
        ({"log_transmat": np.full((K, K), np.nan)}, "log_transmat contains NaN"),
        ({"log_startprob": np.array([np.nan, 0.0, 0.0])}, "log_startprob contains NaN"),
    ],
)
def test_concatenated_api_rejects_bad_input(func, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _call(func, **kwargs)


@pytest.mark.parametrize("func", CONCATENATED)
def test_concatenated_api_type_errors_and_options(func):
    with pytest.raises(TypeError, match="log_emission"):
        _call(func, log_emission=np.array([["a", "b", "c"]]))
    with pytest.raises(TypeError, match="lengths"):
        _call(func, lengths=np.array(["5"]))
    with pytest.raises(ValueError, match="backend"):
        _call(func, backend="cuda")
    # -inf is a zero probability and must be accepted.
    _call(func, log_emission=np.where(np.eye(5, K) > 0, -np.inf, 0.0))


def test_implementation_option_is_validated():
    for func in [forward_backward, forward_filter]:
        with pytest.raises(ValueError, match="implementation"):
            _call(func, implementation="exact")


def test_strided_inputs_are_accepted():
    rng = np.random.default_rng(42)
    log_start, log_trans, log_emission = random_hmm(rng, 3, [12])
    reversed_view = log_emission[::-1]
    strided = np.asfortranarray(log_emission)[::2]
    for view in (reversed_view, strided):
        ref = forward_backward(log_start, log_trans, np.array(view))
        res = forward_backward(log_start, log_trans, view)
        np.testing.assert_array_equal(res.posteriors.numpy(), ref.posteriors.numpy())
        res_t = forward_backward(log_start, log_trans, torch.as_tensor(np.array(view)).T.contiguous().T)
        np.testing.assert_array_equal(res_t.posteriors.numpy(), ref.posteriors.numpy())


def test_integer_and_tensor_inputs_are_accepted():
    res_np = forward_backward(GOOD["log_startprob"], GOOD["log_transmat"], np.zeros((4, K), dtype=np.int64))
    res_t = forward_backward(
        torch.as_tensor(GOOD["log_startprob"]), torch.as_tensor(GOOD["log_transmat"]), torch.zeros(4, K, dtype=torch.float64)
    )
    assert res_np.posteriors.dtype == torch.float64
    np.testing.assert_allclose(res_np.posteriors.numpy(), 1 / K)
    np.testing.assert_allclose(res_t.log_likelihood.numpy(), res_np.log_likelihood.numpy())


def test_auto_backend_uses_torch_when_gradients_are_needed():
    log_emission = torch.zeros(4, K, dtype=torch.float64, requires_grad=True)
    res = forward_backward(GOOD["log_startprob"], GOOD["log_transmat"], log_emission)
    assert res.log_likelihood.requires_grad
    res.log_likelihood.sum().backward()
    np.testing.assert_allclose(log_emission.grad.numpy(), res.posteriors.detach().numpy(), atol=1e-12)
    numba_res = forward_backward(GOOD["log_startprob"], GOOD["log_transmat"], log_emission.detach())
    assert not numba_res.log_likelihood.requires_grad


# ---------------------------------------------------------------------------------------
# Validation of the padded API
# ---------------------------------------------------------------------------------------

PADDED = [hmm_log_likelihood, forward_backward_padded, viterbi_padded]


@pytest.mark.parametrize("func", PADDED)
@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros(K), np.zeros((K, K)), np.zeros((4, K))), "log_emission"),
        ((np.zeros(K + 1), np.zeros((K, K)), np.zeros((2, 4, K))), "log_startprob"),
        ((np.zeros((3, K)), np.zeros((K, K)), np.zeros((2, 4, K))), "log_startprob"),
        ((np.zeros(K), np.zeros((3, K, K)), np.zeros((2, 4, K))), "log_transmat"),
        ((np.zeros(K), np.zeros((2, 5, K, K)), np.zeros((2, 4, K))), "log_transmat"),
        ((np.zeros(K), np.zeros((K, K)), np.full((2, 4, K), np.nan)), "NaN"),
    ],
)
def test_padded_api_rejects_bad_shapes(func, args, match):
    with pytest.raises(ValueError, match=match):
        func(*args)


@pytest.mark.parametrize("func", PADDED)
@pytest.mark.parametrize(("lengths", "match"), [([4, 5], "exceed"), ([4, 0], "positive"), ([4], "one entry per sequence")])
def test_padded_api_rejects_bad_lengths(func, lengths, match):
    with pytest.raises(ValueError, match=match):
        func(np.zeros(K), np.zeros((K, K)), np.zeros((2, 4, K)), lengths)


def test_pad_and_unpad_validate_lengths():
    with pytest.raises(ValueError, match="lengths must sum"):
        pad_sequences(np.zeros((5, 2)), [2, 2])
    with pytest.raises(ValueError, match="exceed"):
        unpad_sequences(np.zeros((2, 3, 1)), [3, 4])
    with pytest.raises(ValueError, match="padded"):
        unpad_sequences(np.zeros(3), [3])


def test_brute_force_refuses_huge_enumerations():
    with pytest.raises(ValueError, match="K\\^T"):
        brute_force_hmm(np.zeros(4), np.zeros((4, 4)), np.zeros((20, 4)))


# ---------------------------------------------------------------------------------------
# Docstring examples
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    [probkit.inference.concatenated, probkit.inference.padded, probkit.inference.sampling, probkit.inference.brute_force],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_kernels_compile_without_a_writable_cache(monkeypatch):
    # A read-only install with no writable user cache: numba has no cache locator and
    # refuses cache=True at decoration time; the kernels must then compile uncached.
    import numba.core.caching

    from probkit.inference import _numba_kernels

    monkeypatch.setattr(numba.core.caching.CacheImpl, "_locator_classes", [])

    def add_one(x):
        return x + 1

    with pytest.raises(RuntimeError, match="cannot cache"):
        numba.njit(cache=True)(add_one)
    assert _numba_kernels._jit()(add_one)(1) == 2
