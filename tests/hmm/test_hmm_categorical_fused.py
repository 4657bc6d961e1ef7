"""The fused EM iteration of CategoricalHMM against the general path.

``CategoricalHMM._em_fused_iteration`` runs each Baum-Welch iteration (forward-backward
with emissions gathered from per-symbol tables, symbol counts, Dirichlet MAP start,
transition and emission rows) as one compiled call. The truth is the general path of the
same estimator -- ``_em_expectation`` then ``_em_maximization``, whose numpy M-step the
hmmlearn parity tests check -- run on the same data from the same start: every parameter
and every log-likelihood of the history must agree to float64 rounding, with default and
non-default priors (scalars and arrays), parameter subsets, several sequences, states
without data, structural zeros and both forward-backward implementations.
"""

import numpy as np
import pytest
import torch

from probkit import CategoricalHMM
from probkit.em import engine
from probkit.hmm import EmptyStateWarning
from probkit.inference._lazy_numba import numba_backend
from probkit.utils.threads import set_num_threads, worker_threads
from tests.hmm.test_hmm_fused_iteration import assert_same_fit as assert_same_parameters
from tests.hmm.test_hmm_fused_iteration import fit_both
from tests.hmm.test_hmm_hmmlearn_parity import random_chain

pytestmark = [pytest.mark.skipif(numba_backend() is None, reason="numba is not installed"),
              pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]


def start_parameters(k, n_symbols, seed):
    rng = np.random.RandomState(seed)
    startprob, transmat = random_chain(rng, k)
    return {"startprob_": startprob, "transmat_": transmat,
            "emissionprob_": rng.dirichlet(np.ones(n_symbols), size=k)}


def symbols(k, n_symbols, lengths, seed):
    """Symbols of a sticky chain whose states prefer different symbols."""
    rng = np.random.RandomState(seed)
    tables = rng.dirichlet(np.full(n_symbols, 0.4), size=k)
    states = np.repeat(rng.randint(k, size=sum(lengths) // 5 + 1), 5)[:sum(lengths)]
    cdf = np.cumsum(tables[states], axis=1)
    return (cdf > rng.rand(len(states), 1)).argmax(1).reshape(-1, 1)


def assert_same_fit(fused, general):
    assert_same_parameters(fused, general, ("startprob_", "transmat_", "emissionprob_"), atol=1e-13,
                           history_rtol=1e-10)


@pytest.mark.parametrize("implementation", ["scaling", "log"])
@pytest.mark.parametrize("lengths", [[400], [150, 80, 1, 40]])
def test_default_priors_match_general_path(lengths, implementation):
    k, n_symbols = 4, 6
    start = start_parameters(k, n_symbols, seed=1)
    X = symbols(k, n_symbols, lengths, seed=2)
    (fused, w_fused), (general, w_general) = fit_both(
        dict(n_components=k, n_iter=8, implementation=implementation), start, X, lengths, CategoricalHMM)
    assert_same_fit(fused, general)
    assert w_fused == w_general
    # the fit moved: a test of the M-step, not of copied parameters
    assert np.abs(fused.emissionprob_ - start["emissionprob_"]).max() > 1e-2


@pytest.mark.parametrize("params", ["ste", "e", "st", "t", "se", ""])
@pytest.mark.parametrize("prior_kind", ["scalar", "array"])
def test_priors_and_parameter_subsets_match_general_path(prior_kind, params):
    k, n_symbols, lengths = 3, 5, [120, 90]
    rng = np.random.RandomState(3)
    if prior_kind == "scalar":
        priors = dict(startprob_prior=2.0, transmat_prior=1.5, emissionprob_prior=0.7)
    else:
        priors = dict(startprob_prior=rng.uniform(1, 3, k), transmat_prior=rng.uniform(0.8, 3, (k, k)),
                      emissionprob_prior=rng.uniform(0.5, 3, (k, n_symbols)))
    start = start_parameters(k, n_symbols, seed=4)
    X = symbols(k, n_symbols, lengths, seed=5)
    (fused, w_fused), (general, w_general) = fit_both(
        dict(n_components=k, n_iter=6, params=params, **priors), start, X, lengths, CategoricalHMM)
    assert_same_fit(fused, general)
    assert w_fused == w_general
    for letter, name in zip("ste", ("startprob_", "transmat_", "emissionprob_")):
        if letter not in params:
            np.testing.assert_array_equal(getattr(fused, name), start[name])


def test_emission_prior_per_symbol_broadcasts_as_in_the_general_path():
    k, n_symbols, lengths = 3, 4, [200]
    start = start_parameters(k, n_symbols, seed=6)
    X = symbols(k, n_symbols, lengths, seed=7)
    (fused, _), (general, _) = fit_both(
        dict(n_components=k, n_iter=5, emissionprob_prior=np.array([1.0, 2.0, 0.5, 3.0])), start, X, lengths,
        CategoricalHMM)
    assert_same_fit(fused, general)


@pytest.mark.parametrize("implementation", ["scaling", "log"])
def test_structural_zeros_and_state_without_data_match_general_path(implementation):
    # state 2 can never be entered: its rows keep their values with an EmptyStateWarning;
    # emissionprob_ zeros become positive again under a prior above 1 (no structural zeros
    # in the emission update), transition zeros stay
    k, n_symbols, lengths = 3, 4, [70, 50]
    start = start_parameters(k, n_symbols, seed=8)
    start["startprob_"] = np.array([0.5, 0.5, 0.0])
    start["transmat_"] = np.array([[0.7, 0.3, 0.0], [0.4, 0.6, 0.0], [0.2, 0.3, 0.5]])
    start["emissionprob_"][0] = [0.5, 0.5, 0.0, 0.0]
    X = symbols(k, n_symbols, lengths, seed=9)
    for prior in (1.0, 1.5):
        (fused, w_fused), (general, w_general) = fit_both(
            dict(n_components=k, n_iter=5, emissionprob_prior=prior, implementation=implementation),
            start, X, lengths, CategoricalHMM)
        assert_same_fit(fused, general)
        assert w_fused == w_general
        if prior == 1.0:
            assert any(category is EmptyStateWarning and message.startswith("emissionprob_")
                       for category, message in w_fused)
            np.testing.assert_array_equal(fused.emissionprob_[2], start["emissionprob_"][2])
            assert np.all(fused.emissionprob_[0, 2:] == 0)
        else:
            assert np.all(fused.emissionprob_[0, 2:] > 0)
        np.testing.assert_array_equal(fused.transmat_[2], start["transmat_"][2])
        assert np.all(fused.transmat_[:2, 2] == 0) and fused.startprob_[2] == 0


def test_impossible_sequence_is_refused_as_in_the_general_path():
    k, n_symbols = 2, 3
    start = start_parameters(k, n_symbols, seed=10)
    start["emissionprob_"][:, 2] = 0.0                 # symbol 2 has probability zero in every state
    start["emissionprob_"] /= start["emissionprob_"].sum(1, keepdims=True)
    X = np.array([[0], [1], [2], [0]])
    messages = []
    for fused in (True, False):
        model = CategoricalHMM(k, init_params="", n_iter=2)
        for name, value in start.items():
            setattr(model, name, np.array(value, copy=True))
        if not fused:
            model._em_fused_iteration = lambda data: None
        with pytest.raises(ValueError, match="zero probability") as info:
            model.fit(X)
        messages.append(str(info.value))
        np.testing.assert_array_equal(model.emissionprob_, start["emissionprob_"])
    assert messages[0] == messages[1]


def test_hmmlearn_compat_model_takes_the_fused_path_with_the_same_result():
    from probkit.compat.hmmlearn import hmm

    k, n_symbols, lengths = 3, 5, [150, 60]
    start = start_parameters(k, n_symbols, seed=11)
    X = symbols(k, n_symbols, lengths, seed=12)
    (fused, _), (general, _) = fit_both(dict(n_components=k, n_iter=6), start, X, lengths,
                                        model_class=hmm.CategoricalHMM)
    assert fused.implementation == "log"
    assert_same_fit(fused, general)


def _fused_iteration_of(model, X, lengths=None, **kwargs):
    model._check_options()
    data = model._validate_sequences(X, lengths, reset=True, training=True, **kwargs)
    model._em_initialize(data, np.random.RandomState(0))
    return model._em_fused_iteration(data)


def test_general_path_where_the_fused_iteration_does_not_apply():
    k, n_symbols = 2, 4
    X = symbols(k, n_symbols, [100], seed=13)
    assert _fused_iteration_of(CategoricalHMM(k, random_state=0), X) is not None
    # several columns of symbols
    assert _fused_iteration_of(CategoricalHMM(k, random_state=0), np.hstack([X, X[::-1]])) is None
    # a torch dtype
    assert _fused_iteration_of(CategoricalHMM(k, dtype=torch.float32, random_state=0), X) is None
    # state labels
    labels = np.full(len(X), -1)
    labels[0] = 1
    assert _fused_iteration_of(CategoricalHMM(k, random_state=0), X, state_labels=labels) is None
    # a prior shape only the general path broadcasts
    assert _fused_iteration_of(CategoricalHMM(k, startprob_prior=np.ones((1, k)), random_state=0), X) is None

    class CustomMstep(CategoricalHMM):
        def _mstep_emission(self, stats, post_sum):
            super()._mstep_emission(stats, post_sum)

    assert _fused_iteration_of(CustomMstep(k, random_state=0), X) is None
    # inside distributed EM the statistics are all-reduced between the steps: the hooks run
    reduced = []
    with engine.em_hooks(all_reduce=lambda estep: reduced.append(estep) or estep):
        CategoricalHMM(k, n_iter=3, tol=-np.inf, random_state=0).fit(X)
    assert len(reduced) == 3 and all(estep.stats is not None for estep in reduced)


def test_sequences_spread_over_worker_threads_take_the_general_path():
    k, n_symbols, lengths = 10, 4, [12_000, 12_000]
    X = symbols(k, n_symbols, lengths, seed=14)
    previous = worker_threads()
    try:
        set_num_threads(1, workers=2)
        assert _fused_iteration_of(CategoricalHMM(k, random_state=0), X, lengths) is None
        set_num_threads(1, workers=1)
        assert _fused_iteration_of(CategoricalHMM(k, random_state=0), X, lengths) is not None
    finally:
        set_num_threads(1, workers=previous)
