"""HSMM estimator: exact answers on tiny models, HMM equivalence, EM, recovery, persistence, errors.

Truths: enumeration of every segmentation with duration and emission tables computed
independently with scipy.stats; probkit's HMMs (an HMM is an HSMM with geometric
durations); the truncated maximum-likelihood estimate found by a generic optimiser; and
data sampled from known parameters.
"""

import warnings

import numpy as np
import pytest
import torch
from scipy import optimize, special, stats
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import probkit
from probkit import HMM, HSMM, GaussianHMM
from probkit.distributions import Categorical, Gamma, NegativeBinomial, Normal, Poisson
from probkit.hsmm._durations import TOTAL_COUNT_BOUNDS, fit_durations
from probkit.inference import brute_force_semi_markov

FAMILIES = {
    "poisson": {"rate": np.array([1.5, 4.0])},
    "negative_binomial": {"total_count": np.array([2.5, 7.0]), "probs": np.array([0.45, 0.7])},
    "geometric": {"probs": np.array([0.35, 0.6])},
    "categorical": {"probs": np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.25, 0.25]])},
}


def scipy_truncated_log_pmf(family, params, max_duration):
    """log p_k(d), d = 1..D, from scipy.stats (duration - 1 for the count families), renormalised."""
    d = np.arange(1, max_duration + 1)
    if family == "poisson":
        raw = stats.poisson.logpmf(d[None] - 1, params["rate"][:, None])
    elif family == "negative_binomial":
        raw = stats.nbinom.logpmf(d[None] - 1, params["total_count"][:, None], params["probs"][:, None])
    elif family == "geometric":
        raw = stats.geom.logpmf(d[None], params["probs"][:, None])  # scipy counts trials: d itself
    else:
        with np.errstate(divide="ignore"):
            raw = np.log(params["probs"])
    return raw - special.logsumexp(raw, axis=1, keepdims=True)


def hand_set(family, params=None, *, max_duration=4, right_censoring=True):
    model = HSMM(emission="normal", n_components=2, duration=family, max_duration=max_duration,
                 right_censoring=right_censoring)
    model.startprob_ = np.array([0.6, 0.4])
    model.transmat_ = np.array([[0.0, 1.0], [1.0, 0.0]])
    model.duration_params_ = FAMILIES[family] if params is None else params
    model.emission_params_ = {"loc": np.array([-1.0, 1.5]), "scale": np.array([1.0, 0.7])}
    return model


@pytest.mark.parametrize("censored", [True, False], ids=["censored", "uncensored"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_hand_set_model_matches_enumeration(family, censored):
    model = hand_set(family, right_censoring=censored)
    X = np.array([[-1.2], [0.3], [1.9], [1.1], [-0.4], [-2.0], [0.8], [1.4], [1.0]])
    lengths = [6, 3]
    log_dur = scipy_truncated_log_pmf(family, FAMILIES[family], 4)
    np.testing.assert_allclose(model.durationprob_, np.exp(log_dur), rtol=1e-10, atol=1e-15)
    log_emission = stats.norm.logpdf(X, loc=[-1.0, 1.5], scale=[1.0, 0.7])
    with np.errstate(divide="ignore"):
        log_trans = np.log(model.transmat_)
    exact = [brute_force_semi_markov(np.log(model.startprob_), log_trans, log_dur, seq, right_censoring=censored)
             for seq in np.split(log_emission, [6])]
    loglik = sum(e.log_likelihood for e in exact)
    assert model.score(X, lengths=lengths) == pytest.approx(loglik, rel=1e-12)
    per_row = model.score_samples(X, lengths=lengths)
    assert per_row[:6].sum() == pytest.approx(exact[0].log_likelihood, rel=1e-12)
    np.testing.assert_allclose(model.predict_proba(X, lengths=lengths),
                               np.concatenate([e.posteriors for e in exact]), atol=1e-12)
    np.testing.assert_allclose(model.predict_segment_starts(X, lengths=lengths),
                               np.concatenate([e.segment_starts for e in exact]), atol=1e-12)
    log_prob, path, starts = model.decode(X, lengths=lengths, return_segments=True)
    assert log_prob == pytest.approx(sum(e.best_log_prob for e in exact), rel=1e-12)
    np.testing.assert_array_equal(path, np.concatenate([e.best_path for e in exact]))
    np.testing.assert_array_equal(starts, np.concatenate([e.best_segment_starts for e in exact]))
    post = np.concatenate([e.posteriors for e in exact])
    map_prob, map_path = model.decode(X, lengths=lengths, algorithm="map")
    np.testing.assert_array_equal(map_path, post.argmax(1))
    assert map_prob == pytest.approx(np.log(post.max(1)).sum(), rel=1e-12)


def _hmm_pair(rng, n_states=3, n_features=2):
    trans = rng.dirichlet(np.ones(n_states), size=n_states) + np.diag(rng.uniform(2, 6, n_states))
    trans /= trans.sum(1, keepdims=True)
    start = rng.dirichlet(np.ones(n_states))
    means = rng.normal(0, 2, (n_states, n_features))
    scales = rng.uniform(0.5, 1.5, (n_states, n_features))
    hmm = GaussianHMM(n_components=n_states, covariance_type="diag")
    hmm.startprob_, hmm.transmat_, hmm.means_, hmm.covars_ = start, trans, means, scales ** 2
    jumps = trans / (1 - np.diag(trans))[:, None]
    np.fill_diagonal(jumps, 0.0)
    return hmm, start, jumps, np.diag(trans), {"loc": means, "scale": scales}


def test_categorical_geometric_durations_equal_the_hmm_exactly():
    """Durations d < T: (1 - a) a^(d-1); the last length T holds the tail a^(T-1) (only a censored segment reaches it)."""
    rng = np.random.default_rng(0)
    hmm, start, jumps, stay, emission = _hmm_pair(rng)
    X, _ = hmm.sample(60, random_state=1)
    n_steps = len(X)
    d = np.arange(1, n_steps + 1)
    probs = (1 - stay)[:, None] * stay[:, None] ** (d - 1)
    probs[:, -1] = stay ** (n_steps - 1)
    model = HSMM(emission="normal", n_components=3, duration="categorical", max_duration=n_steps)
    model.startprob_, model.transmat_ = start, jumps
    model.duration_params_ = {"probs": probs}
    model.emission_params_ = emission
    assert model.score(X) == pytest.approx(hmm.score(X), rel=1e-12)
    np.testing.assert_allclose(model.score_samples(X), hmm.score_samples(X), atol=1e-10)
    np.testing.assert_allclose(model.predict_proba(X), hmm.predict_proba(X), atol=1e-12)
    np.testing.assert_array_equal(model.predict(X), hmm.predict(X))


def test_geometric_family_with_a_long_maximum_equals_the_hmm_on_several_sequences():
    rng = np.random.default_rng(1)
    hmm, start, jumps, stay, emission = _hmm_pair(rng, n_features=1)
    X, _ = hmm.sample(300, random_state=2)
    lengths = [120, 7, 173]
    # truncation at D removes a tail of at most max(stay)^D relative mass per segment
    model = HSMM(emission="normal", n_components=3, duration="geometric", max_duration=400)
    model.startprob_, model.transmat_ = start, jumps
    model.duration_params_ = {"probs": 1 - stay}
    model.emission_params_ = {"loc": emission["loc"][:, 0], "scale": emission["scale"][:, 0]}
    assert model.score(X, lengths=lengths) == pytest.approx(hmm.score(X, lengths=lengths), rel=1e-10)
    np.testing.assert_allclose(model.predict_proba(X, lengths=lengths), hmm.predict_proba(X, lengths=lengths),
                               atol=1e-9)
    generic = HMM(emission="normal", n_components=3)
    generic.startprob_, generic.transmat_ = hmm.startprob_, hmm.transmat_
    generic.emission_params_ = model.emission_params_
    np.testing.assert_array_equal(model.predict(X, lengths=lengths), generic.predict(X, lengths=lengths))


def _sampled(family, n_samples, seed, params=None):
    model = HSMM(emission="normal", n_components=3, duration=family, max_duration=30)
    model.startprob_ = np.array([0.5, 0.3, 0.2])
    model.transmat_ = np.array([[0.0, 0.7, 0.3], [0.5, 0.0, 0.5], [0.6, 0.4, 0.0]])
    model.duration_params_ = params or {
        "poisson": {"rate": np.array([2.0, 6.0, 12.0])},
        "negative_binomial": {"total_count": np.array([3.0, 6.0, 30.0]), "probs": np.array([0.4, 0.5, 0.7])},
        "geometric": {"probs": np.array([0.4, 0.15, 0.08])},
        "categorical": {"probs": np.r_[[np.eye(30)[2]], [np.eye(30)[7]], [np.full(30, 1 / 30)]]},
    }[family]
    model.emission_params_ = {"loc": np.array([0.0, 2.5, 5.0]), "scale": np.array([1.0, 1.0, 1.0])}
    X, states, durations = model.sample(n_samples, random_state=seed, return_durations=True)
    return model, X, states, durations


@pytest.mark.parametrize("censored", [True, False], ids=["censored", "uncensored"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_em_never_decreases_the_log_likelihood(family, censored):
    _, X, _, _ = _sampled(family, 400, seed=3)
    lengths = [150, 250]
    model = HSMM(emission="normal", n_components=3, duration=family, max_duration=30, right_censoring=censored,
                 n_iter=12, tol=-np.inf, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, lengths=lengths)
    history = np.asarray(model.monitor_.history)
    assert len(history) == 12
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[:-1])), np.diff(history)
    # the monitor reports the likelihood of the parameters before each M-step
    assert model.score(X, lengths=lengths) >= history[-1] - 1e-9 * abs(history[-1])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_recovers_durations_and_emissions_from_sampled_data(family):
    truth, X, _, _ = _sampled(family, 6000, seed=4)
    model = HSMM(emission="normal", n_components=3, duration=family, max_duration=30, n_iter=200, tol=1e-3,
                 random_state=0)
    model.fit(X)
    order = np.argsort(model.emission_params_["loc"])
    np.testing.assert_allclose(model.emission_params_["loc"][order], [0.0, 2.5, 5.0], atol=0.1)
    np.testing.assert_allclose(model.emission_params_["scale"][order], 1.0, atol=0.08)
    np.testing.assert_allclose(model.transmat_[np.ix_(order, order)], truth.transmat_, atol=0.1)
    d = np.arange(1, 31)
    true_mean = truth.durationprob_ @ d
    np.testing.assert_allclose(model.durationprob_[order] @ d, true_mean, rtol=0.08)
    # total variation between the fitted and the true duration distributions
    assert np.abs(model.durationprob_[order] - truth.durationprob_).sum(1).max() < 0.3
    assert model.score(X) >= truth.score(X)  # the maximum-likelihood fit explains its data at least as well


def _truncated_q(family, params, counts, options=None):
    return float((counts * scipy_truncated_log_pmf(family, params, counts.shape[1])).sum())


@pytest.mark.parametrize("family", ["poisson", "geometric", "negative_binomial", "nb_fixed_r"])
def test_duration_m_step_is_the_truncated_maximum_likelihood(family):
    rng = np.random.default_rng(6)
    max_dur = 12
    counts = rng.gamma(0.7, 3.0, size=(3, max_dur))
    counts[1, :3] = 0.0
    counts[2] = 0.0
    counts[2, 9:] = [5.0, 1.0, 8.0]  # a mean near the upper end of the support
    template = {"poisson": Poisson(), "geometric": probkit.distributions.Geometric(),
                "negative_binomial": NegativeBinomial(), "nb_fixed_r": NegativeBinomial(fixed_total_count=3.0)}[family]
    name = "negative_binomial" if family.startswith("nb") else family
    dist, empty = fit_durations(template, counts)
    assert empty == []
    for k in range(3):
        mine = {key: np.atleast_1d(np.asarray(v)[k]) for key, v in dist.params.items()}
        ours = _truncated_q(name, mine, counts[k:k + 1])

        def minus_q(theta):
            if family == "poisson":
                p = {"rate": np.exp(theta[:1])}
            elif family == "geometric" or family == "nb_fixed_r":
                prob = special.expit(theta[:1])
                p = {"probs": prob} if family == "geometric" else {"total_count": np.array([3.0]), "probs": prob}
            else:
                # r within the M-step's search range: beyond it the limit is the Poisson, and
                # scipy's log-gamma differences at r ~ 1e12 lose more digits than the test checks
                p = {"total_count": np.exp(np.clip(theta[:1], *np.log(TOTAL_COUNT_BOUNDS))),
                     "probs": special.expit(theta[1:2])}
            return -_truncated_q(name, p, counts[k:k + 1])

        n_par = 2 if family == "negative_binomial" else 1
        best = min((optimize.minimize(minus_q, x0, method="Nelder-Mead",
                                      options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
                    for x0 in rng.normal(0, 1.5, size=(6, n_par))), key=lambda r: r.fun)
        assert ours >= -best.fun - 1e-7 * abs(best.fun)


def test_a_state_without_segments_keeps_its_durations():
    previous = Poisson(rate=np.array([2.0, 5.0]))
    counts = np.array([[0.0, 4.0, 4.0], [0.0, 0.0, 0.0]])
    dist, empty = fit_durations(Poisson(), counts, previous)
    assert empty == [1] and float(dist.params["rate"][1]) == 5.0
    with pytest.raises(ValueError, match="no segment received any expected count"):
        fit_durations(Poisson(), np.zeros((2, 3)), previous)


def test_sample_draws_durations_from_the_duration_model():
    model, X, states, durations = _sampled("categorical", 20000, seed=5,
                                           params={"probs": np.r_[[np.eye(30)[4]], [np.eye(30)[[1, 9]].mean(0)],
                                                                  [np.full(30, 1 / 30)]]})
    assert durations.sum() >= len(X) and durations[:-1].sum() < len(X)
    # zero diagonal: every segment is a run of one state
    runs = np.diff(np.flatnonzero(np.r_[True, states[1:] != states[:-1], True]))
    assert len(runs) == len(durations)
    np.testing.assert_array_equal(runs[:-1], durations[:-1])
    assert set(durations[states[np.r_[0, np.cumsum(durations)[:-1]]] == 0].tolist()) == {5}
    second = durations[states[np.r_[0, np.cumsum(durations)[:-1]]] == 1]
    assert set(second.tolist()) == {2, 10} and abs(np.mean(second == 2) - 0.5) < 0.05
    third = durations[:-1][states[np.r_[0, np.cumsum(durations)[:-2]]] == 2]
    counts = np.bincount(third, minlength=31)[1:]
    chi2 = ((counts - len(third) / 30) ** 2 / (len(third) / 30)).sum()
    assert chi2 < stats.chi2.ppf(0.9999, 29)
    first, first_states = model.sample(5, random_state=0, currstate=2)
    assert (first_states[0] == 2) and first.shape == (5, 1)


def test_lists_of_sequences_equal_lengths_and_y_slot_is_refused():
    _, X, _, _ = _sampled("poisson", 300, seed=7)
    model = HSMM(emission="normal", n_components=3, max_duration=30, n_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = model.fit(X, lengths=[100, 200]).score(X, lengths=[100, 200])
        b = HSMM(emission="normal", n_components=3, max_duration=30, n_iter=5, random_state=0).fit(
            [X[:100], X[100:]]).score([X[:100], X[100:]])
    assert a == pytest.approx(b, rel=1e-12)
    with pytest.raises(TypeError, match="lengths=lengths"):
        model.score(X, [100, 200])
    with pytest.raises(TypeError, match="lengths=lengths"):
        model.predict(X, [100, 200])
    with pytest.raises(ValueError, match="lengths"):
        model.predict(X, lengths=[100, 100])


def test_params_letters_keep_the_others_fixed_and_n_init_keeps_the_best():
    truth, X, _, _ = _sampled("poisson", 500, seed=8)
    model = HSMM(emission="normal", n_components=3, max_duration=30, n_iter=20, params="e", init_params="e",
                 random_state=0)
    model.startprob_, model.transmat_ = truth.startprob_, truth.transmat_
    model.duration_params_ = truth.duration_params_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    np.testing.assert_array_equal(model.transmat_, truth.transmat_)
    np.testing.assert_array_equal(model.duration_params_["rate"], truth.duration_params_["rate"])
    # n_init=3 draws its three starts one after the other from one random state: three
    # single fits sharing a RandomState start from the same points, and the best is kept
    shared = np.random.RandomState(0)
    runs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(3):
            runs.append(HSMM(emission="normal", n_components=3, max_duration=30, n_iter=3, random_state=shared).fit(X))
        best = HSMM(emission="normal", n_components=3, max_duration=30, n_iter=3, n_init=3,
                    random_state=np.random.RandomState(0)).fit(X)
    finals = [run.monitor_.history[-1] for run in runs]
    assert len(set(np.round(finals, 6))) > 1  # the starts differ
    winner = runs[int(np.argmax(finals))]
    assert best.monitor_.history == winner.monitor_.history
    np.testing.assert_array_equal(best.durationprob_, winner.durationprob_)


def test_convergence_warning_and_information_criteria():
    truth, X, _, _ = _sampled("negative_binomial", 300, seed=9)
    with pytest.warns(ConvergenceWarning, match="HSMM did not converge"):
        HSMM(emission="normal", n_components=3, duration="negative_binomial", max_duration=30, n_iter=1,
             random_state=0).fit(X)
    n_free = 2 + 3 * 1 + 3 * 2 + 3 * 2  # start, transitions (K - 2 per row), r and p, loc and scale
    assert truth.bic(X) == pytest.approx(-2 * truth.score(X) + n_free * np.log(len(X)), rel=1e-12)
    assert truth.aic(X) == pytest.approx(-2 * truth.score(X) + 2 * n_free, rel=1e-12)
    cat = hand_set("categorical")
    assert cat._n_parameters()["d"] == 2 * 3


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_save_and_load_round_trip(family, tmp_path):
    truth, X, _, _ = _sampled("poisson", 200, seed=10)
    model = HSMM(emission=Normal, n_components=2, duration=family, max_duration=8, n_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, lengths=[80, 120])
    again = probkit.load(model.save(tmp_path / "hsmm.pk"))
    assert type(again) is HSMM and again.get_params().keys() == model.get_params().keys()
    for name in ("startprob_", "transmat_", "durationprob_"):
        np.testing.assert_array_equal(getattr(again, name), getattr(model, name))
    assert again.score(X, lengths=[80, 120]) == model.score(X, lengths=[80, 120])
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(again.sample(20, random_state=1)[0], model.sample(20, random_state=1)[0])


def test_other_emission_families():
    rng = np.random.default_rng(12)
    states = np.repeat(np.tile([0, 1], 20), rng.integers(3, 9, size=40))
    counts = rng.poisson(np.array([1.0, 9.0])[states])[:, None].astype(float)
    model = HSMM(emission="poisson", n_components=2, max_duration=15, n_iter=50, random_state=0).fit(counts)
    assert np.round(np.sort(model.emission_params_["rate"].ravel())).tolist() == pytest.approx([1.0, 9.0], abs=1)
    assert (model.predict(counts) == states).mean() > 0.95 or (model.predict(counts) != states).mean() > 0.95
    with pytest.raises(ValueError, match="non-negative integer"):
        model.fit(counts + 0.5)
    X = np.c_[rng.normal(np.array([0.0, 3.0])[states], 1.0), rng.normal(0.0, 1.0, len(states))]
    full = HSMM(emission="gaussian", n_components=2, max_duration=15, n_iter=30, random_state=0).fit(X)
    assert full.emission_params_["covariance"].shape == (2, 2, 2)
    gamma = HSMM(emission=Gamma, n_components=2, max_duration=15, n_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gamma.fit(np.abs(X) + 0.1)
    assert gamma.emission_params_["rate"].shape == (2, 2)  # a product over the two columns


def test_bad_input_raises_clear_errors():
    X = np.random.default_rng(0).normal(size=(20, 1))
    for value in (0, -3, 2.5, True, "5"):
        with pytest.raises(ValueError, match=r"The 'max_duration' parameter of HSMM must be an int in the range \[1, inf\)"):
            HSMM(emission="normal", max_duration=value).fit(X)
    with pytest.raises(ValueError, match=r"The 'n_components' parameter of HSMM must be an int in the range \[1, inf\)"):
        HSMM(emission="normal", n_components=True).fit(X)
    with pytest.raises(ValueError, match="The 'init' parameter of HSMM must be a str among"):
        HSMM(emission="normal", init="spectral").fit(X)
    with pytest.raises(ValueError, match="cannot describe segment lengths"):
        HSMM(emission="normal", duration=Normal).fit(X)
    with pytest.raises(ValueError, match="cannot describe segment lengths"):
        HSMM(emission="normal", duration=Gamma(concentration=2.0, rate=1.0)).fit(X)
    with pytest.raises(ValueError, match="duration must be a distribution of the segment length"):
        HSMM(emission="normal", duration="lognormal").fit(X)
    with pytest.raises(ValueError, match="durations over the maximum"):
        HSMM(emission="normal", duration=Categorical(n_categories=9), max_duration=5).fit(X)
    with pytest.raises(ValueError, match="needs an emission family"):
        HSMM().fit(X)
    with pytest.raises(ValueError, match="unknown letters"):
        HSMM(emission="normal", params="stx").fit(X)
    with pytest.raises(TypeError, match="right_censoring"):
        HSMM(emission="normal", right_censoring="no").fit(X)
    with pytest.raises(ValueError, match="n_samples >= max"):
        HSMM(emission="normal", n_components=3).fit(X[:2])

    model = hand_set("categorical")
    with pytest.raises(ValueError, match="durations over the maximum"):
        model.duration_params_ = {"probs": np.full((2, 6), 1 / 6)}
        model.predict(X)
    model = hand_set("poisson")
    model.transmat_ = np.array([[0.5, 0.5], [1.0, 0.0]])
    with pytest.raises(ValueError, match="zero diagonal"):
        model.predict(X)
    model = hand_set("poisson")
    model.startprob_ = np.array([0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="startprob_ must have shape"):
        model.score(X)
    model = hand_set("poisson")
    model.duration_params_ = {"rate": np.array([1.0, 2.0, 3.0])}
    with pytest.raises(ValueError, match="one duration model per state"):
        model.score(X)
    model = hand_set("poisson")
    model.duration_ = Categorical(probs=np.full((2, 4), 0.25))
    with pytest.raises(ValueError, match="duration_ must be a Poisson"):
        model.score(X)
    model = hand_set("poisson")
    with pytest.raises(ValueError, match="features"):
        model.score(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        model.sample(0)
    with pytest.raises(ValueError, match="currstate"):
        model.sample(3, currstate=2)
    with pytest.raises(NotFittedError):
        HSMM(emission="normal").predict(X)
    with pytest.raises(ValueError, match="return_segments"):
        model.decode(X, algorithm="map", return_segments=True)
    with pytest.raises(ValueError, match="zero probability"):
        # without censoring, a sequence of 5 steps cannot be cut into segments of exactly 3 steps
        fixed = hand_set("categorical", {"probs": np.array([[0, 0, 1.0, 0], [0, 0, 1.0, 0]])}, right_censoring=False)
        fixed.set_params(init_params="", n_iter=1).fit(X[:5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    truth, X, _, _ = _sampled("negative_binomial", 500, seed=13)
    cpu = HSMM(emission="normal", n_components=3, duration="negative_binomial", max_duration=30, n_iter=5,
               random_state=0)
    gpu = HSMM(emission="normal", n_components=3, duration="negative_binomial", max_duration=30, n_iter=5,
               random_state=0, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cpu.fit(X)
        gpu.fit(X)
    np.testing.assert_allclose(gpu.monitor_.history, cpu.monitor_.history, rtol=1e-9)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-8)
    np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))
