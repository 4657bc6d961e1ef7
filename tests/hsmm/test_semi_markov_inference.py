"""The semi-Markov kernels against independent truths.

* exhaustive enumeration of every segmentation (``brute_force_semi_markov``, which scores
  each segmentation directly, without recursions) on tiny models, for every output;
* the equivalent HMM over (state, remaining duration) pairs, run through probkit's HMM
  kernels (``semi_markov_as_hmm`` + ``forward_backward``), on longer sequences;
* an ordinary HMM, which is a semi-Markov model with geometric durations.
"""

import numpy as np
import pytest
import torch

from probkit.inference import (
    brute_force_semi_markov,
    forward_backward,
    semi_markov_as_hmm,
    semi_markov_forward,
    semi_markov_forward_backward,
    semi_markov_viterbi,
    viterbi,
)
from probkit.inference._semi_markov_numba import _blocks
from probkit.utils.threads import get_num_threads, set_num_threads

BACKENDS = ["numba", "torch"]


def random_model(rng, n_states, max_duration, n_samples, *, zero_diagonal=True, duration_zeros=False,
                 masked=False):
    """Log-parameters of a random semi-Markov model and random log-emissions (structural zeros on request)."""
    start = rng.dirichlet(np.ones(n_states))
    trans = rng.dirichlet(np.ones(n_states), size=n_states)
    if zero_diagonal and n_states > 1:
        np.fill_diagonal(trans, 0.0)
        trans /= trans.sum(1, keepdims=True)
    durations = rng.dirichlet(np.ones(max_duration), size=n_states)
    if duration_zeros and max_duration > 1:
        # every state forbids some lengths (but keeps length 1, so any sequence stays possible)
        forbidden = rng.random((n_states, max_duration)) < 0.4
        forbidden[:, 0] = False
        durations = np.where(forbidden, 0.0, durations)
        durations /= durations.sum(1, keepdims=True)
    log_emission = 2.0 * rng.standard_normal((n_samples, n_states))
    if masked and n_states > 1:
        hidden = rng.random((n_samples, n_states)) < 0.3
        hidden[np.arange(n_samples), rng.integers(0, n_states, n_samples)] = False
        log_emission[hidden] = -np.inf
    with np.errstate(divide="ignore"):
        return np.log(start), np.log(trans), np.log(durations), log_emission


def split(array, lengths):
    return np.split(np.asarray(array), np.cumsum(lengths)[:-1])


# (n_states, max_duration, lengths, duration_zeros, masked)
CASES = [
    (1, 3, [4, 2], False, False),
    (2, 3, [5, 1, 3], False, False),
    (2, 6, [6, 4], False, False),
    (3, 2, [6, 5], False, False),
    (3, 4, [6, 2, 5], True, False),
    (3, 3, [6, 4], False, True),
    (2, 5, [6, 3, 6], True, True),
]


def _case_id(case):
    k, d, lengths, zeros, masked = case
    return f"K{k}-D{d}-L{'_'.join(map(str, lengths))}{'-zeros' if zeros else ''}{'-masked' if masked else ''}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("censored", [True, False], ids=["censored", "uncensored"])
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_every_output_matches_enumeration_of_segmentations(case, censored, backend):
    n_states, max_dur, lengths, zeros, masked = case
    rng = np.random.default_rng([n_states, max_dur, len(lengths), int(zeros), int(masked)])
    ls, lt, ld, le = random_model(rng, n_states, max_dur, sum(lengths), duration_zeros=zeros, masked=masked)
    exact = [brute_force_semi_markov(ls, lt, ld, seq, right_censoring=censored) for seq in split(le, lengths)]
    assert all(e.n_segmentations > 0 for e in exact)
    kw = dict(right_censoring=censored, backend=backend)
    fb = semi_markov_forward_backward(ls, lt, ld, le, lengths, **kw)
    fwd = semi_markov_forward(ls, lt, ld, le, lengths, **kw)
    vit = semi_markov_viterbi(ls, lt, ld, le, lengths, **kw)

    loglik = np.array([e.log_likelihood for e in exact])
    np.testing.assert_allclose(fb.log_likelihood.numpy(), loglik, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fwd.log_likelihood.numpy(), loglik, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose([p.sum() for p in split(fwd.predictive.numpy(), lengths)], loglik, rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(fb.posteriors.numpy(), np.concatenate([e.posteriors for e in exact]), atol=1e-12)
    np.testing.assert_allclose(fb.segment_starts.numpy(), np.concatenate([e.segment_starts for e in exact]),
                               atol=1e-12)
    np.testing.assert_allclose(fb.expected_start.numpy(), sum(e.segment_starts[0] for e in exact), atol=1e-12)
    np.testing.assert_allclose(fb.expected_transitions.numpy(), sum(e.expected_transitions for e in exact),
                               atol=1e-12)
    np.testing.assert_allclose(fb.expected_durations.numpy(), sum(e.expected_durations for e in exact), atol=1e-12)
    if not censored:
        assert not fb.censored_durations.numpy().any()
    np.testing.assert_allclose(vit.log_prob.numpy(), [e.best_log_prob for e in exact], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(vit.path.numpy(), np.concatenate([e.best_path for e in exact]))
    if n_states > 1:  # one state: segmentations d1, d2 and d2, d1 tie, and the tie-breaks differ
        np.testing.assert_array_equal(vit.segment_starts.numpy(),
                                      np.concatenate([e.best_segment_starts for e in exact]))


def test_enumeration_counts_segmentations():
    # T = 4, D = 4, K = 2 with no self-transitions: compositions of 4 (8) with alternating states (2 each)
    ls = np.log([0.5, 0.5])
    with np.errstate(divide="ignore"):
        lt = np.log(np.array([[0.0, 1.0], [1.0, 0.0]]))
    ld = np.log(np.full((2, 4), 0.25))
    exact = brute_force_semi_markov(ls, lt, ld, np.zeros((4, 2)))
    assert exact.n_segmentations == 16
    # censored: summing the survival over all segmentations of any length gives probability 1
    assert exact.log_likelihood == pytest.approx(0.0, abs=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("zeros", [False, True], ids=["dense", "duration-zeros"])
def test_equals_the_expanded_hmm_on_longer_sequences(backend, zeros):
    """HMM over (state, remaining duration): same likelihood, state posteriors and duration counts."""
    rng = np.random.default_rng(7 + zeros)
    n_states, max_dur, lengths = 3, 7, [120, 1, 45, 80]
    ls, lt, ld, le = random_model(rng, n_states, max_dur, sum(lengths), duration_zeros=zeros, masked=True)
    res = semi_markov_forward_backward(ls, lt, ld, le, lengths, backend=backend)
    hmm = semi_markov_as_hmm(ls, lt, ld)
    state = hmm.state.numpy()
    ref = forward_backward(hmm.log_startprob, hmm.log_transmat, le[:, state], lengths, implementation="log")
    np.testing.assert_allclose(res.log_likelihood.numpy(), ref.log_likelihood.numpy(), rtol=1e-10)
    post = ref.posteriors.numpy().reshape(-1, n_states, max_dur)
    np.testing.assert_allclose(res.posteriors.numpy(), post.sum(-1), atol=1e-10)
    # Expected segments of state k lasting d steps: segments entering (k, d) -- at a
    # sequence start or from a remaining-duration-1 state -- whatever the censoring.
    xi = ref.expected_transitions.numpy().reshape(n_states, max_dur, n_states, max_dur)
    entered = ref.expected_start.numpy().reshape(n_states, max_dur) + xi[:, 0].sum(0)
    np.testing.assert_allclose(res.expected_durations.numpy(), entered, atol=1e-9)
    firsts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    np.testing.assert_allclose(res.segment_starts.numpy()[firsts], post[firsts].sum(-1), atol=1e-10)
    np.testing.assert_allclose(res.expected_transitions.numpy(), xi[:, 0].sum(-1), atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_geometric_durations_are_an_hmm(backend):
    """An HMM with self-transitions a_kk is a semi-Markov model with geometric durations.

    Durations d < T get (1 - a_kk) a_kk^(d-1); the last length D = T holds the tail a_kk^(T-1),
    which only the (censored) last segment can reach, so the models agree exactly.
    """
    rng = np.random.default_rng(3)
    n_states, n_steps = 3, 40
    trans = rng.dirichlet(np.ones(n_states), size=n_states) + np.diag([2.0, 4.0, 8.0])
    trans /= trans.sum(1, keepdims=True)
    start = rng.dirichlet(np.ones(n_states))
    le = rng.standard_normal((n_steps, n_states))
    a = np.diag(trans)
    d = np.arange(1, n_steps + 1)
    durations = (1 - a)[:, None] * a[:, None] ** (d - 1)
    durations[:, -1] = a ** (n_steps - 1)
    jumps = trans / (1 - a)[:, None]
    np.fill_diagonal(jumps, 0.0)
    with np.errstate(divide="ignore"):
        args = (np.log(start), np.log(jumps), np.log(durations), le)
    res = semi_markov_forward_backward(*args, backend=backend)
    ref = forward_backward(np.log(start), np.log(trans), le, implementation="log")
    np.testing.assert_allclose(res.log_likelihood.numpy(), np.asarray(ref.log_likelihood), rtol=1e-12)
    np.testing.assert_allclose(res.posteriors.numpy(), np.asarray(ref.posteriors), atol=1e-12)
    # a transition between different states is the end of a segment
    off = np.asarray(ref.expected_transitions) * (1 - np.eye(n_states))
    np.testing.assert_allclose(res.expected_transitions.numpy(), off, atol=1e-11)
    best = semi_markov_viterbi(*args, backend=backend)
    hmm_best = viterbi(np.log(start), np.log(trans), le)
    np.testing.assert_array_equal(best.path.numpy(), np.asarray(hmm_best.path))
    np.testing.assert_allclose(best.log_prob.numpy(), np.asarray(hmm_best.log_prob), rtol=1e-12)


def test_backends_agree_on_a_ragged_batch_split_over_threads():
    rng = np.random.default_rng(11)
    lengths = rng.integers(1, 400, size=50)
    lengths[:3] = [1, 2, 3]
    ls, lt, ld, le = random_model(rng, 4, 60, int(lengths.sum()), masked=True)
    before = get_num_threads()
    try:
        set_num_threads(intra_op=before["intra_op"], workers=3)
        assert len(_blocks(lengths, 4, 60)[1]) > 2  # the sequences run in several blocks on threads
        a = semi_markov_forward_backward(ls, lt, ld, le, lengths, backend="numba")
        set_num_threads(intra_op=before["intra_op"], workers=1)
        single = semi_markov_forward_backward(ls, lt, ld, le, lengths, backend="numba")
    finally:
        set_num_threads(**before)
    b = semi_markov_forward_backward(ls, lt, ld, le, lengths, backend="torch")
    for name in a._fields:
        np.testing.assert_allclose(getattr(a, name).numpy(), getattr(single, name).numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(getattr(a, name).numpy(), getattr(b, name).numpy(), rtol=1e-10, atol=1e-10)
    # one sequence at a time gives the same answers
    for i, seq in enumerate(split(le, lengths)[:5]):
        one = semi_markov_forward_backward(ls, lt, ld, seq, backend="numba")
        assert float(one.log_likelihood[0]) == pytest.approx(float(a.log_likelihood[i]), rel=1e-12)
    va = semi_markov_viterbi(ls, lt, ld, le, lengths, backend="numba")
    vb = semi_markov_viterbi(ls, lt, ld, le, lengths, backend="torch")
    np.testing.assert_array_equal(va.path.numpy(), vb.path.numpy())
    np.testing.assert_allclose(va.log_prob.numpy(), vb.log_prob.numpy(), rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_impossible_sequences_are_reported_and_leave_the_others_alone(backend):
    rng = np.random.default_rng(5)
    ls, lt, ld, le = random_model(rng, 2, 3, 9)
    le[4:6] = -np.inf  # sequence 1 (rows 3..5) has a step no state can emit
    lengths = [3, 3, 3]
    res = semi_markov_forward_backward(ls, lt, ld, le, lengths, backend=backend)
    assert np.isneginf(res.log_likelihood[1].item())
    assert not torch.isnan(res.posteriors).any()
    assert not res.posteriors[3:6].any() and not res.segment_starts[3:6].any()
    rest = semi_markov_forward_backward(ls, lt, ld, np.r_[le[:3], le[6:]], [3, 3], backend=backend)
    np.testing.assert_allclose(res.expected_durations.numpy(), rest.expected_durations.numpy(), atol=1e-12)
    np.testing.assert_allclose(res.expected_transitions.numpy(), rest.expected_transitions.numpy(), atol=1e-12)
    vit = semi_markov_viterbi(ls, lt, ld, le, lengths, backend=backend)
    assert np.isneginf(vit.log_prob[1].item()) and (vit.path[3:6] == -1).all()
    fwd = semi_markov_forward(ls, lt, ld, le, lengths, backend=backend)
    assert np.isneginf(fwd.predictive[3:6].numpy()).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_fixed_durations_without_censoring(backend):
    """Every segment lasts exactly 3 steps: a sequence of 7 steps has no complete segmentation."""
    ld = np.log(np.array([[1e-300, 1e-300, 1.0], [1e-300, 1e-300, 1.0]]))
    ld[:, :2] = -np.inf
    with np.errstate(divide="ignore"):
        lt = np.log(np.array([[0.0, 1.0], [1.0, 0.0]]))
    ls = np.log([0.5, 0.5])
    le = np.random.default_rng(0).standard_normal((13, 2))
    lengths = [6, 7]
    res = semi_markov_forward_backward(ls, lt, ld, le, lengths, right_censoring=False, backend=backend)
    assert np.isfinite(res.log_likelihood[0].item()) and np.isneginf(res.log_likelihood[1].item())
    # with censoring the last segment may be cut: both are possible and match enumeration
    res = semi_markov_forward_backward(ls, lt, ld, le, lengths, backend=backend)
    for seq, ll in zip(split(le, lengths), res.log_likelihood.numpy()):
        assert ll == pytest.approx(brute_force_semi_markov(ls, lt, ld, seq).log_likelihood, rel=1e-12)
    starts = res.segment_starts.numpy()[:6].sum(1)
    np.testing.assert_allclose(starts, [1, 0, 0, 1, 0, 0], atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_sequence_and_huge_emissions_keep_their_digits(backend):
    """Per-step offsets (here -1e11) change the likelihood by their sum and nothing else."""
    rng = np.random.default_rng(2)
    n_steps = 20_000 if backend == "numba" else 1_000
    ls, lt, ld, le = random_model(rng, 3, 9, n_steps)
    offset = -1e11 * (1 + rng.random(n_steps))
    far = le + offset[:, None]
    near = far - offset[:, None]  # exact (Sterbenz): the emissions as rounded near -1e11
    base = semi_markov_forward_backward(ls, lt, ld, near, backend=backend)
    shifted = semi_markov_forward_backward(ls, lt, ld, far, backend=backend)
    assert float(shifted.log_likelihood[0]) == pytest.approx(float(base.log_likelihood[0]) + offset.sum(), rel=1e-14)
    np.testing.assert_allclose(shifted.posteriors.numpy(), base.posteriors.numpy(), atol=1e-9)
    np.testing.assert_allclose(base.posteriors.numpy().sum(1), 1.0, atol=1e-12)
    # expected segments: a segment ends where the next starts, and every sequence starts one
    assert float(base.expected_durations.sum()) == pytest.approx(float(base.segment_starts.sum()), rel=1e-10)


def test_float32_inputs_give_float32_results_close_to_float64():
    rng = np.random.default_rng(4)
    ls, lt, ld, le = random_model(rng, 3, 5, 50)
    ref = semi_markov_forward_backward(ls, lt, ld, le)
    for backend in BACKENDS:
        res = semi_markov_forward_backward(ls, lt, ld, torch.as_tensor(le, dtype=torch.float32), backend=backend)
        assert res.posteriors.dtype == torch.float32 and res.log_likelihood.dtype == torch.float32
        np.testing.assert_allclose(res.posteriors.numpy(), ref.posteriors.numpy(), atol=1e-4)


def test_expanded_hmm_structure():
    ls, lt = np.log([0.3, 0.7]), np.log([[1e-300, 1.0], [1.0, 1e-300]])
    ld = np.log([[0.2, 0.3, 0.5], [0.6, 0.4, 1e-300]])
    hmm = semi_markov_as_hmm(ls, lt, ld)
    trans = np.exp(hmm.log_transmat.numpy())
    np.testing.assert_allclose(trans.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.exp(hmm.log_startprob.numpy()).reshape(2, 3), [[0.06, 0.09, 0.15],
                                                                                 [0.42, 0.28, 0.0]], atol=1e-12)
    assert trans[2, 1] == 1.0 and trans[1, 0] == 1.0  # (0, 3) -> (0, 2) -> (0, 1)
    np.testing.assert_allclose(trans[0, 3:], [0.6, 0.4, 0.0], atol=1e-12)  # (0, 1) -> a segment of state 1
    assert hmm.state.tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("call", [semi_markov_forward, semi_markov_forward_backward, semi_markov_viterbi])
def test_bad_inputs_are_named(call):
    ls, lt = np.log([0.5, 0.5]), np.log([[0.5, 0.5], [0.5, 0.5]])
    ld, le = np.log([[0.5, 0.5], [0.5, 0.5]]), np.zeros((4, 2))
    with pytest.raises(ValueError, match="log_duration must have shape"):
        call(ls, lt, ld[:1], le)
    with pytest.raises(ValueError, match="log_duration must have shape"):
        call(ls, lt, ld[0], le)
    with pytest.raises(ValueError, match="at least one duration"):
        call(ls, lt, np.zeros((2, 0)), le)
    with pytest.raises(ValueError, match="log_duration contains NaN"):
        call(ls, lt, np.full((2, 2), np.nan), le)
    with pytest.raises(ValueError, match="log_emission"):
        call(ls, lt, ld, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="lengths"):
        call(ls, lt, ld, le, [2, 3])
    with pytest.raises(TypeError, match="right_censoring"):
        call(ls, lt, ld, le, right_censoring="yes")
    with pytest.raises(ValueError, match="backend"):
        call(ls, lt, ld, le, backend="cuda")


def test_brute_force_refuses_large_problems():
    with pytest.raises(ValueError, match="segmentations to enumerate"):
        brute_force_semi_markov(np.log([0.5, 0.5]), np.log([[0.5, 0.5], [0.5, 0.5]]), np.log(np.full((2, 30), 1 / 30)),
                                np.zeros((30, 2)))
