"""probkit.compat.hmmlearn against hmmlearn 0.3.3 itself, on the same inputs.

hmmlearn's own suite (the ``test_hmmlearn_*.py`` wrappers) checks the compat classes
against hmmlearn's expectations; these tests check them against hmmlearn's *results*:
signatures, inference on the same parameters, one EM step from the same start, the
variational fits, and the claims behind the expected failures listed in ``conftest.py``.
"""

import inspect
import logging
import pickle

import numpy as np
import pytest
from hmmlearn import base as hl_base
from hmmlearn import hmm as hl
from hmmlearn import vhmm as hl_vhmm
from sklearn.base import clone
from sklearn.utils import check_random_state

from probkit.compat.hmmlearn import base, hmm, vhmm

PAIRS = [(getattr(hmm, name), getattr(hl, name)) for name in hmm.__all__] + [
    (getattr(vhmm, name), getattr(hl_vhmm, name)) for name in vhmm.__all__] + [(base.BaseHMM, hl_base.BaseHMM)]
LENGTHS = [40, 25, 35]


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=lambda c: c.__name__)
def test_constructor_signature_is_hmmlearns(ours, theirs):
    def params(cls):
        return [(p.name, p.kind, p.default) for p in inspect.signature(cls.__init__).parameters.values()]

    assert params(ours) == params(theirs)
    model = ours()
    assert isinstance(model.monitor_, base.ConvergenceMonitor)   # before any fit, as hmmlearn
    assert clone(model).get_params() == model.get_params()


@pytest.mark.parametrize("ours, theirs", PAIRS, ids=lambda c: c.__name__)
def test_parameter_constraints_cover_hmmlearns_signature(ours, theirs):
    # one constraint per parameter of hmmlearn's signature, none for probkit's own options (n_init, device, ...)
    assert set(ours._parameter_constraints) == set(inspect.signature(theirs.__init__).parameters) - {"self"}


def test_options_are_checked_as_given_before_the_data():
    X = np.random.RandomState(0).normal(size=(20, 1))
    # the probkit fit runs silenced (verbose=False): the user's value is checked on entry
    with pytest.raises(ValueError, match="The 'verbose' parameter of GaussianHMM must be"):
        hmm.GaussianHMM(2, verbose=-1).fit(X)
    # checked before hmmlearn's symbol rules read X (float X would be refused as non-integer symbols)
    with pytest.raises(ValueError, match=r"The 'n_iter' parameter of CategoricalHMM must be an int in the range"):
        hmm.CategoricalHMM(2, n_iter=-1).fit(X)
    with pytest.raises(ValueError, match="Symbols should be integers"):
        hmm.CategoricalHMM(2).fit(X)
    # and by hmmlearn's hooks _init and _check
    with pytest.raises(ValueError, match="The 'algorithm' parameter of PoissonHMM must be a str among"):
        hmm.PoissonHMM(2, algorithm="beam")._init(np.ones((20, 1), dtype=int))
    model = hmm.GaussianHMM(2, tol="small")
    model.startprob_, model.transmat_ = np.array([0.5, 0.5]), np.full((2, 2), 0.5)
    model.means_, model.covars_ = np.zeros((2, 1)), np.ones((2, 1))
    with pytest.raises(TypeError, match="The 'tol' parameter of GaussianHMM must be"):
        model._check()


def _chain(rng, k):
    return rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k) * 2, size=k)


def _gaussian_covars(rng, ct, k, d):
    if ct == "spherical":
        return rng.uniform(0.5, 2.0, k)
    if ct == "diag":
        return rng.uniform(0.5, 2.0, (k, d))
    a = rng.normal(size=(k, d, d))
    full = a @ np.transpose(a, (0, 2, 1)) + np.eye(d)
    return full if ct == "full" else full[0]


def _pair(name, ct, rng, k=3, d=2):
    """The same hand-set model in hmmlearn and in the compat layer."""
    start, trans = _chain(rng, k)
    kwargs = {"covariance_type": ct} if ct else {}
    if name == "GMMHMM":
        kwargs["n_mix"] = 2
    if name == "MultinomialHMM":
        kwargs["n_trials"] = 6
    ours, theirs = getattr(hmm, name)(k, **kwargs), getattr(hl, name)(k, **kwargs)
    params = {"startprob_": start, "transmat_": trans}
    if name == "GaussianHMM":
        params.update(means_=rng.normal(0, 3, (k, d)), covars_=_gaussian_covars(rng, ct, k, d))
    elif name == "GMMHMM":
        covars = {"spherical": rng.uniform(0.5, 2.0, (k, 2)), "diag": rng.uniform(0.5, 2.0, (k, 2, d)),
                  "full": np.stack([_gaussian_covars(rng, "full", 2, d) for _ in range(k)]),
                  "tied": _gaussian_covars(rng, "full", k, d)}[ct]
        params.update(weights_=rng.dirichlet(np.ones(2), size=k), means_=rng.normal(0, 3, (k, 2, d)), covars_=covars)
    elif name == "CategoricalHMM":
        params["emissionprob_"] = rng.dirichlet(np.ones(4), size=k)
    elif name == "MultinomialHMM":
        params["emissionprob_"] = rng.dirichlet(np.ones(4), size=k)
    else:
        params["lambdas_"] = rng.uniform(1, 8, (k, d))
    for model in (ours, theirs):
        for attr, value in params.items():
            setattr(model, attr, np.array(value, copy=True))
    return ours, theirs


def _path_log_prob(reference, X, lengths, path):
    """log p(X, path) under an hmmlearn model."""
    total, start = 0.0, 0
    for n in lengths:
        log_emission = reference._compute_log_likelihood(X[start:start + n])
        z = path[start:start + n]
        total += (np.log(reference.startprob_[z[0]]) + np.log(reference.transmat_[z[:-1], z[1:]]).sum()
                  + log_emission[np.arange(n), z].sum())
        start += n
    return total


CASES = ([("GaussianHMM", ct) for ct in ("spherical", "diag", "full", "tied")]
         + [("GMMHMM", ct) for ct in ("spherical", "diag", "full", "tied")]
         + [("CategoricalHMM", None), ("MultinomialHMM", None), ("PoissonHMM", None)])


@pytest.mark.parametrize("name, ct", CASES)
def test_inference_on_the_same_parameters_is_hmmlearns(name, ct):
    rng = np.random.RandomState(0)
    ours, theirs = _pair(name, ct, rng)
    X, _ = theirs.sample(sum(LENGTHS), random_state=1)
    np.testing.assert_allclose(ours.score(X, LENGTHS), theirs.score(X, LENGTHS), rtol=1e-9)
    lp_ours, post_ours = ours.score_samples(X, LENGTHS)
    lp_theirs, post_theirs = theirs.score_samples(X, LENGTHS)
    np.testing.assert_allclose(lp_ours, lp_theirs, rtol=1e-9)
    np.testing.assert_allclose(post_ours, post_theirs, rtol=1e-7, atol=1e-10)
    vit_ours, path_ours = ours.decode(X, LENGTHS, "viterbi")
    vit_theirs, path_theirs = theirs.decode(X, LENGTHS, "viterbi")
    np.testing.assert_allclose(vit_ours, vit_theirs, rtol=1e-9)
    # where two paths tie (discrete emissions), either is right: ours must score the optimum
    np.testing.assert_allclose(_path_log_prob(theirs, X, LENGTHS, path_ours), vit_theirs, rtol=1e-9)
    np.testing.assert_array_equal(ours.predict(X, LENGTHS), path_ours)
    assert ours.n_features == theirs.n_features
    if name == "GaussianHMM":
        # covars_ reads back as hmmlearn's full matrices; _covars_ is the compact array
        np.testing.assert_array_equal(ours.covars_, theirs.covars_)
        np.testing.assert_array_equal(ours._covars_, theirs._covars_)


STEP_CASES = ([("GaussianHMM", ct) for ct in ("spherical", "diag")]
              + [("CategoricalHMM", None), ("MultinomialHMM", None), ("PoissonHMM", None)])


@pytest.mark.parametrize("name, ct", STEP_CASES)
def test_em_steps_from_the_same_start_are_hmmlearns(name, ct):
    rng = np.random.RandomState(2)
    ours, theirs = _pair(name, ct, rng)
    X, _ = theirs.sample(sum(LENGTHS), random_state=3)
    for model in (ours, theirs):
        model.init_params = ""
        model.n_iter = 3
        model.tol = -np.inf
        model.fit(X, LENGTHS)
    np.testing.assert_allclose(ours.monitor_.history, list(theirs.monitor_.history), rtol=1e-9)
    if name == "GaussianHMM":
        # hmmlearn keeps a fitted spherical model's variances tiled over the features, shape (K, d)
        np.testing.assert_allclose(np.broadcast_to(ours._covars_.T, theirs._covars_.T.shape).T, theirs._covars_,
                                   rtol=1e-8)
    names = {"GaussianHMM": ["means_"], "CategoricalHMM": ["emissionprob_"],
             "MultinomialHMM": ["emissionprob_"], "PoissonHMM": ["lambdas_"]}[name]
    for attr in ["startprob_", "transmat_", *names]:
        np.testing.assert_allclose(getattr(ours, attr), getattr(theirs, attr), rtol=1e-8, atol=1e-12, err_msg=attr)


def test_full_covariance_em_step_is_hmmlearns_with_a_matrix_prior():
    # hmmlearn adds a scalar covars_prior to every matrix entry; as a (d, d) matrix both agree
    rng = np.random.RandomState(4)
    ours, theirs = _pair("GaussianHMM", "full", rng)
    X, _ = theirs.sample(sum(LENGTHS), random_state=5)
    for model in (ours, theirs):
        model.covars_prior = 0.05 * np.eye(2)
        model.init_params = ""
        model.n_iter = 2
        model.fit(X, LENGTHS)
    np.testing.assert_allclose(ours._covars_, theirs._covars_, rtol=1e-8)
    np.testing.assert_allclose(ours.means_, theirs.means_, rtol=1e-8)


def _mcgrory_sample():
    # hmmlearn's own data set for its variational tests, drawn with hmmlearn's sampler
    model = hl.GaussianHMM(4, init_params="")
    model.startprob_ = np.full(4, 0.25)
    model.transmat_ = np.array([[0.2, 0.2, 0.3, 0.3], [0.3, 0.2, 0.2, 0.3], [0.2, 0.3, 0.3, 0.2],
                                [0.3, 0.3, 0.2, 0.2]])
    model.means_ = np.array([[-1.5], [0.0], [1.5], [3.0]])
    model.covars_ = np.sqrt([[0.25], [0.25], [0.25], [0.25]])
    rs = check_random_state(234234)
    return model.sample(500, random_state=rs)[0], rs


def _uniform_chain(model, n_sequences, n_samples, k):
    model.startprob_prior_ = np.full(k, 1 / k)
    model.startprob_posterior_ = np.full(k, 1 / k) * n_sequences
    model.transmat_prior_ = np.full((k, k), 1 / k)
    model.transmat_posterior_ = np.full((k, k), 1 / k) * n_samples


def _tied_sample_2d():
    # two features with correlated noise shared by three states, drawn with hmmlearn's sampler
    model = hl.GaussianHMM(3, covariance_type="tied", init_params="")
    model.startprob_ = np.array([0.5, 0.3, 0.2])
    model.transmat_ = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    model.means_ = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 3.0]])
    model.covars_ = np.array([[1.0, 0.6], [0.6, 0.8]])
    rs = check_random_state(7)
    return model.sample(400, random_state=rs)[0], rs


# full and tied are hmmlearn's models for any number of features; probkit's diag and spherical
# are hmmlearn's for one feature (hmmlearn takes a full Wishart's log-determinant expectation there)
@pytest.mark.parametrize("covariance_type, sample, k", [
    ("full", _mcgrory_sample, 5), ("diag", _mcgrory_sample, 5), ("tied", _mcgrory_sample, 5),
    ("spherical", _mcgrory_sample, 5), ("tied", _tied_sample_2d, 3)],
    ids=["full", "diag", "tied", "spherical", "tied-2-features"])
def test_variational_gaussian_follows_hmmlearns_trajectory(covariance_type, sample, k):
    fits = []
    for module in (vhmm, hl_vhmm):
        X, rs = sample()
        model = module.VariationalGaussianHMM(k, n_iter=30, tol=-np.inf, random_state=rs, init_params="mc",
                                              covariance_type=covariance_type)
        _uniform_chain(model, 1, len(X), k)
        fits.append(model.fit(X, [len(X)]))
    ours, theirs = fits
    for attr in ("means_posterior_", "beta_posterior_", "dof_posterior_", "scale_posterior_",
                 "startprob_posterior_", "transmat_posterior_"):
        assert np.shape(getattr(ours, attr)) == np.shape(getattr(theirs, attr)), attr
        np.testing.assert_allclose(getattr(ours, attr), getattr(theirs, attr), rtol=1e-7, err_msg=attr)
    np.testing.assert_allclose(ours.covars_, theirs.covars_, rtol=1e-7)
    np.testing.assert_allclose(ours._covars_, theirs._covars_, rtol=1e-7)
    # hmmlearn leaves out the -d/2 log(2 pi) of each Gaussian density from its lower bound
    offset = np.asarray(theirs.monitor_.history) - np.asarray(ours.monitor_.history)
    np.testing.assert_allclose(offset, X.size * 0.5 * np.log(2 * np.pi), rtol=1e-9)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "spherical"])
def test_variational_gaussian_reaches_hmmlearns_answer_on_hmmlearns_sample(covariance_type):
    # the value hmmlearn's test_fit_mcgrory_titterington1d expects (there the compat model
    # samples its own data, which differ: see the expected failures in conftest.py)
    from hmmlearn.tests import test_variational_gaussian as peer

    expected = {"full": peer.TestFull, "tied": peer.TestTied, "spherical": peer.TestSpherical}[covariance_type]
    X, rs = _mcgrory_sample()
    model = vhmm.VariationalGaussianHMM(5, n_iter=1000, tol=1e-9, random_state=rs, init_params="mc",
                                        covariance_type=covariance_type)
    _uniform_chain(model, 1, 500, 5)
    model.fit(X, [500])
    assert sorted(model.means_posterior_.ravel())[3] == pytest.approx(expected.test_fit_mcgrory_titterington1d_mean)


def test_variational_categorical_is_hmmlearns():
    gen = hl.CategoricalHMM(3, init_params="")
    gen.n_features = 3
    gen.startprob_ = np.full(3, 1 / 3)
    gen.transmat_ = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    gen.emissionprob_ = np.eye(3)
    X = np.concatenate([gen.sample(60, random_state=s)[0] for s in range(5)])
    lengths = [60] * 5
    ours = vhmm.VariationalCategoricalHMM(4, n_iter=25, tol=-np.inf, random_state=1984).fit(X, lengths)
    theirs = hl_vhmm.VariationalCategoricalHMM(4, n_iter=25, tol=-np.inf, random_state=1984).fit(X, lengths)
    np.testing.assert_allclose(ours.monitor_.history, list(theirs.monitor_.history), rtol=1e-9)
    for attr in ("startprob_posterior_", "transmat_posterior_", "emissionprob_posterior_", "emissionprob_"):
        np.testing.assert_allclose(getattr(ours, attr), getattr(theirs, attr), rtol=1e-7, err_msg=attr)
    assert ours.n_features == theirs.n_features == 3


def test_gmmhmm_sequence_orders_reach_one_optimum_from_hmmlearns_start():
    # the claim behind the expected failure of hmmlearn's
    # test_gmmhmm_multi_sequence_fit_invariant_to_sequence_ordering[*-diag]
    from itertools import permutations

    from hmmlearn.tests.test_gmm_hmm_multisequence import EXAMPLE_SEQUENCES_ISSUE_410_PRUNED as sequences

    scores = []
    for order in permutations(range(3)):
        X = np.concatenate(sequences[list(order)])
        lengths = [len(sequences[i]) for i in order]
        start = hl.GMMHMM(2, n_mix=2, covariance_type="diag", init_params="mcw", random_state=1234)
        start.startprob_, start.transmat_ = np.full(2, 0.5), np.full((2, 2), 0.5)
        start._init(X, lengths)
        model = hmm.GMMHMM(2, n_mix=2, n_iter=100, covariance_type="diag", init_params="", random_state=1234)
        model.startprob_, model.transmat_ = np.full(2, 0.5), np.full((2, 2), 0.5)
        model.weights_, model.means_, model.covars_ = start.weights_, start.means_, start.covars_
        model.fit(X, lengths)
        assert model.monitor_.converged
        assert np.diff(model.monitor_.history).min() > -1e-8   # exact EM: never decreases
        scores.append(model.score(X, lengths))
    np.testing.assert_allclose(scores, np.mean(scores), rtol=5e-3)


def test_monitor_reports_like_hmmlearns(capsys, caplog):
    values = [-10.0, -9.5, -9.6, -9.595]   # a decrease: both log "not converging"
    outputs = []
    for monitor_cls in (base.ConvergenceMonitor, hl_base.ConvergenceMonitor):
        monitor = monitor_cls(tol=1e-2, n_iter=10, verbose=True)
        converged = []
        with caplog.at_level(logging.WARNING):
            for v in values:
                monitor.report(v)
                converged.append(monitor.converged)
        outputs.append((capsys.readouterr().err, converged, monitor.iter,
                        [r.getMessage() for r in caplog.records]))
        caplog.clear()
    assert outputs[0] == outputs[1]
    assert outputs[0][1] == [False, False, True, True]


def test_verbose_output_and_custom_monitor(capsys):
    X = np.random.RandomState(0).normal(size=(120, 1))

    class CountingMonitor(base.ConvergenceMonitor):
        reports = 0

        def report(self, log_prob):
            CountingMonitor.reports += 1
            super().report(log_prob)

    model = hmm.GaussianHMM(2, n_iter=7, tol=-np.inf, verbose=True, random_state=0)
    model.monitor_ = CountingMonitor(model.monitor_.tol, model.monitor_.n_iter, model.monitor_.verbose)
    model.fit(X)
    assert model.monitor_ is not None and isinstance(model.monitor_, CountingMonitor)
    assert CountingMonitor.reports == 7 == model.monitor_.iter
    lines = capsys.readouterr().err.strip().split("\n")
    reference = hl_base.ConvergenceMonitor(1, 7, True)
    for value in model.monitor_.history:
        reference.report(value)
    assert lines == capsys.readouterr().err.strip().split("\n")


def test_init_params_overwrite_and_degenerate_warnings(caplog):
    X = np.random.RandomState(0).normal(size=(50, 2))
    model = hmm.GaussianHMM(2, random_state=0)
    model.startprob_ = np.array([0.5, 0.5])
    with caplog.at_level(logging.WARNING):
        model.fit(X)
    assert any("'startprob_' attribute is set, it will be overwritten" in r.getMessage() for r in caplog.records)
    caplog.clear()
    tiny = hmm.GaussianHMM(3, covariance_type="full", random_state=0)
    with caplog.at_level(logging.WARNING):
        tiny._init(X[:4], [4])
    assert any("degenerate solution" in r.getMessage() for r in caplog.records)


def test_settable_n_features_and_compact_covars():
    model = hmm.GaussianHMM(2, covariance_type="spherical", init_params="")
    model.n_features = 3
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.9, 0.1], [0.1, 0.9]])
    model.covars_ = np.array([[[[2.0]]], [[[3.0]]]])   # hmmlearn accepts one variance per state in any shape
    assert model.covars_.shape == (2, 3, 3) and model._covars_.shape == (2,)
    model.means_ = np.zeros((2, 3))
    X, Z = model.sample(50, random_state=0)
    assert X.shape == (50, 3)
    reloaded = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(reloaded.covars_, model.covars_)


def test_categorical_input_rules_and_n_features():
    model = hmm.CategoricalHMM(2, random_state=0)
    with pytest.raises(ValueError, match="Symbols should be integers"):
        model.fit(np.array([[0.0], [1.0], [2.0], [1.0]]))
    model.fit(np.array([[0], [1], [2], [1], [0], [2]]))
    assert model.n_features == 3 and model.emissionprob_.shape == (2, 3)
    counts = hmm.MultinomialHMM(2, random_state=0).fit(np.array([[1, 2, 0], [2, 0, 1], [0, 0, 3]]))
    np.testing.assert_array_equal(counts.n_trials, [3, 3, 3])
    assert counts.sample(4, random_state=0)[0].sum(1).tolist() == [3, 3, 3, 3]


def test_base_hmm_subclass_learns_the_chain_as_hmmlearn():
    log_frameprob = np.log(np.random.RandomState(0).dirichlet(np.ones(3), size=60))

    def make(cls):
        class Fixed(cls):
            def _compute_log_likelihood(self, X):
                return X

            def _get_n_fit_scalars_per_param(self):   # hmmlearn's fit asks for it
                return {"s": 2, "t": 6}

        model = Fixed(3, n_iter=4, tol=-np.inf, init_params="", params="st")
        model.startprob_ = np.array([0.5, 0.3, 0.2])
        model.transmat_ = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
        return model

    ours, theirs = make(base.BaseHMM).fit(log_frameprob), make(hl_base.BaseHMM).fit(log_frameprob)
    np.testing.assert_allclose(ours.transmat_, theirs.transmat_, rtol=1e-9)
    np.testing.assert_allclose(ours.startprob_, theirs.startprob_, rtol=1e-9)
    np.testing.assert_allclose(ours.get_stationary_distribution(), theirs.get_stationary_distribution(), rtol=1e-9)

    class WithStatistics(base.BaseHMM):
        def _compute_log_likelihood(self, X):
            return X

        def _do_mstep(self, stats):
            pass

    with pytest.raises(TypeError, match="statistics hooks"):
        WithStatistics(3).fit(log_frameprob)

