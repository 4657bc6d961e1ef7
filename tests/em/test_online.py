"""Stepwise (online) EM: partial_fit of the mixtures and HMMs.

Truths: one step with rho = 1 is one EM step (scikit-learn's and hmmlearn's fits with one
iteration from the same parameters); a step with rho < 1 is the M-step of the averaged
per-row statistics computed here by hand (scipy densities, brute-force enumeration of
every state path); a stream of batches reaches the held-out likelihood of batch EM.
"""

import itertools
import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal, poisson
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from probkit import (GMMHMM, CategoricalHMM, GaussianHMM, GaussianMixture, MixtureModel, PoissonHMM,
                     VariationalHMM)
from probkit.em.online import blend_stats, scale_stats, step_size

ATOL = 1e-10


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def _blobs(n, seed):
    rng = np.random.RandomState(seed)
    centres = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]])
    z = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    scales = np.array([0.6, 1.0, 1.4])
    return centres[z] + rng.normal(size=(n, 2)) * scales[z, None]


def _gmm_start(covariance_type):
    weights = np.array([0.4, 0.35, 0.25])
    means = np.array([[0.5, 0.5], [4.0, 0.0], [0.0, 5.0]])
    full = np.array([[[1.0, 0.2], [0.2, 1.5]], [[2.0, -0.3], [-0.3, 1.0]], [[1.2, 0.0], [0.0, 0.8]]])
    precisions = {
        "full": np.linalg.inv(full),
        "tied": np.linalg.inv(full[0]),
        "diag": 1.0 / np.array([[1.0, 1.5], [2.0, 1.0], [1.2, 0.8]]),
        "spherical": 1.0 / np.array([1.0, 2.0, 1.5]),
    }[covariance_type]
    return dict(weights_init=weights, means_init=means, precisions_init=precisions)


def _gmm_params(model):
    return model.weights_, model.means_, model.covariances_


def _assert_same_params(a, b):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=0, atol=ATOL)


# ---------------------------------------------------------------------------------- mixtures
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_gmm_step_with_rho_one_is_an_em_step(covariance_type):
    X1, X2 = _blobs(300, 0), _blobs(200, 1)
    start = _gmm_start(covariance_type)
    online = GaussianMixture(3, covariance_type=covariance_type, **start)
    online.partial_fit(X1, learning_decay=0.0)
    # scikit-learn's EM with one iteration from the same parameters
    sk = _quiet(SkGaussianMixture(3, covariance_type=covariance_type, max_iter=1, **start).fit, X1)
    _assert_same_params(_gmm_params(online), _gmm_params(sk))
    assert online.n_iter_ == 1 and online.converged_ is False
    assert online.lower_bounds_ == [online.lower_bound_]
    # the second batch: rho = 1 again, so one EM step on X2 from the first step's parameters
    following = dict(weights_init=online.weights_, means_init=online.means_, precisions_init=online.precisions_)
    online.partial_fit(X2, learning_decay=0.0)
    sk2 = _quiet(SkGaussianMixture(3, covariance_type=covariance_type, max_iter=1, **following).fit, X2)
    _assert_same_params(_gmm_params(online), _gmm_params(sk2))
    assert online.n_iter_ == 2 and len(online.lower_bounds_) == 2


def test_gmm_lower_bound_is_the_batch_likelihood_before_the_step():
    X = _blobs(200, 2)
    start = _gmm_start("full")
    before = _quiet(SkGaussianMixture(3, max_iter=1, **start).fit, X)  # its lower bound: the start's E-step
    online = GaussianMixture(3, **start).partial_fit(X)
    np.testing.assert_allclose(online.lower_bound_, before.lower_bound_, rtol=1e-12)


def test_gmm_blended_step_is_the_m_step_of_averaged_statistics():
    """Two batches, rho_2 = (offset + 2)^-decay: the parameters from the averaged per-row statistics."""
    X1, X2 = _blobs(250, 3), _blobs(120, 4)
    start = _gmm_start("full")
    reg = 1e-6
    offset, decay = 0.5, 0.8
    online = GaussianMixture(3, reg_covar=reg, **start)
    online.partial_fit(X1, learning_offset=offset, learning_decay=decay)
    theta1 = _gmm_params(online)
    online.partial_fit(X2, learning_offset=offset, learning_decay=decay)

    def stats(X, weights, means, covariances):
        dens = np.column_stack([w * multivariate_normal(m, c).pdf(X) for w, m, c in zip(weights, means, covariances)])
        resp = dens / dens.sum(1, keepdims=True)
        n = len(X)
        return (resp.sum(0) / n, resp.T @ X / n, np.einsum("nk,ni,nj->kij", resp, X, X) / n)

    theta0 = (start["weights_init"], start["means_init"], np.linalg.inv(start["precisions_init"]))
    s1, s2 = stats(X1, *theta0), stats(X2, *theta1)
    rho = (offset + 2) ** -decay
    nk, sx, sxx = [(1 - rho) * a + rho * b for a, b in zip(s1, s2)]
    means = sx / nk[:, None]
    covariances = sxx / nk[:, None, None] - np.einsum("ki,kj->kij", means, means) + reg * np.eye(2)
    _assert_same_params(_gmm_params(online), (nk / nk.sum(), means, covariances))


def test_gmm_partial_fit_continues_a_fit():
    X, Xb = _blobs(400, 5), _blobs(150, 6)
    fitted = GaussianMixture(3, random_state=0).fit(X)
    following = dict(weights_init=fitted.weights_, means_init=fitted.means_, precisions_init=fitted.precisions_)
    fitted.partial_fit(Xb, learning_decay=0.0)
    truth = _quiet(SkGaussianMixture(3, max_iter=1, **following).fit, Xb)
    _assert_same_params(_gmm_params(fitted), _gmm_params(truth))
    assert fitted.n_iter_ == 1


def test_fit_between_partial_fits_starts_a_new_online_run():
    X = _blobs(300, 7)
    model = GaussianMixture(3, random_state=0)
    for batch in np.array_split(X, 3):
        model.partial_fit(batch)
    assert model.n_iter_ == 3 and len(model.lower_bounds_) == 3
    model.set_params(max_iter=200).fit(X)
    after_fit = dict(weights_init=model.weights_, means_init=model.means_, precisions_init=model.precisions_)
    model.partial_fit(X[:100], learning_decay=0.0)
    assert model.n_iter_ == 1 and len(model.lower_bounds_) == 1
    truth = _quiet(SkGaussianMixture(3, max_iter=1, **after_fit).fit, X[:100])
    _assert_same_params(_gmm_params(model), _gmm_params(truth))


def test_sample_weight_counts_rows_in_every_step():
    X1, X2 = _blobs(120, 8), _blobs(90, 9)
    rng = np.random.RandomState(0)
    w1, w2 = rng.randint(1, 4, len(X1)), rng.randint(1, 4, len(X2))
    start = _gmm_start("diag")
    weighted = GaussianMixture(3, covariance_type="diag", **start)
    repeated = GaussianMixture(3, covariance_type="diag", **start)
    weighted.partial_fit(X1, sample_weight=w1).partial_fit(X2, sample_weight=w2)
    repeated.partial_fit(np.repeat(X1, w1, 0)).partial_fit(np.repeat(X2, w2, 0))
    _assert_same_params(_gmm_params(weighted), _gmm_params(repeated))


def test_mixture_model_step_with_rho_one_is_its_em_step():
    rng = np.random.RandomState(1)
    X = np.r_[rng.poisson(2, 150), rng.poisson(12, 100)].reshape(-1, 1).astype(float)
    batch = _quiet(MixtureModel(family="poisson", n_components=2, max_iter=1, random_state=0).fit, X)
    online = MixtureModel(family="poisson", n_components=2, random_state=0).partial_fit(X, learning_decay=0.0)
    np.testing.assert_allclose(online.weights_, batch.weights_, rtol=0, atol=ATOL)
    rates = [float(c.rate) for c in online.components_]
    np.testing.assert_allclose(rates, [float(c.rate) for c in batch.components_], rtol=0, atol=ATOL)


def test_gmm_stream_reaches_batch_em_likelihood():
    batches = [_blobs(200, 100 + i) for i in range(80)]
    held_out = _blobs(5000, 999)
    online = GaussianMixture(3, random_state=0)
    for batch in batches:
        online.partial_fit(batch)
    batch_em = GaussianMixture(3, random_state=0, max_iter=500, tol=1e-6).fit(np.vstack(batches))
    gap = batch_em.score(held_out) - online.score(held_out)
    # stepwise EM ends within sampling noise of batch EM on the same rows
    assert abs(gap) < 0.01, gap
    assert online.n_iter_ == 80


def test_mixture_model_stream_recovers_poisson_rates():
    rng = np.random.RandomState(2)
    online = MixtureModel(family="poisson", n_components=2, random_state=0)
    rows = []
    for _ in range(60):
        batch = np.where(rng.rand(100) < 0.6, rng.poisson(3, 100), rng.poisson(20, 100)).reshape(-1, 1)
        rows.append(batch)
        online.partial_fit(batch)
    batch_em = MixtureModel(family="poisson", n_components=2, random_state=0, max_iter=300, tol=1e-8).fit(np.vstack(rows))
    held_out = np.where(rng.rand(4000) < 0.6, rng.poisson(3, 4000), rng.poisson(20, 4000)).reshape(-1, 1)
    assert abs(batch_em.score(held_out) - online.score(held_out)) < 0.01


# ---------------------------------------------------------------------------------- HMMs
def _hmm_truth():
    model = GaussianHMM(3, covariance_type="diag")
    model.startprob_ = np.array([0.4, 0.3, 0.3])
    model.transmat_ = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.1, 0.15, 0.75]])
    model.means_ = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    model.covars_ = np.array([[1.0, 0.5], [0.8, 1.2], [1.0, 1.0]])
    return model


def _sample_sequences(model, lengths, seed):
    return np.vstack([model.sample(n, random_state=seed * 1000 + i)[0] for i, n in enumerate(lengths)])


def _set(model, **params):
    for name, value in params.items():
        setattr(model, name, np.array(value, dtype=float))
    return model


HMM_STARTS = {
    "gaussian-diag": (lambda **kw: GaussianHMM(3, covariance_type="diag", **kw),
                      dict(startprob_=[0.5, 0.3, 0.2], transmat_=[[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]],
                           means_=[[-1.0, 0.0], [1.0, 0.5], [0.0, 2.0]], covars_=[[2.0, 1.0], [1.0, 2.0], [1.5, 1.5]])),
    # hmmlearn adds a scalar covars_prior to every entry of a full covariance: the (d, d) array says so here
    "gaussian-full": (lambda **kw: GaussianHMM(3, covariance_type="full", covars_prior=np.full((2, 2), 1e-2), **kw),
                      dict(startprob_=[0.5, 0.3, 0.2], transmat_=[[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]],
                           means_=[[-1.0, 0.0], [1.0, 0.5], [0.0, 2.0]],
                           covars_=[[[2.0, 0.3], [0.3, 1.0]], [[1.0, 0.0], [0.0, 2.0]], [[1.5, -0.2], [-0.2, 1.5]]])),
}


@pytest.mark.parametrize("name", sorted(HMM_STARTS))
def test_hmm_step_with_rho_one_is_a_baum_welch_step(name):
    from hmmlearn import hmm as hl

    make, params = HMM_STARTS[name]
    truth = _hmm_truth()
    lengths = [60, 90, 50]
    X = _sample_sequences(truth, lengths, 0)
    online = _set(make(init_params=""), **params).partial_fit(X, lengths=lengths, learning_decay=0.0)
    batch = _quiet(_set(make(init_params="", n_iter=1), **params).fit, X, lengths=lengths)
    peer = _set(hl.GaussianHMM(3, covariance_type=make().covariance_type, init_params="", n_iter=1), **params)
    _quiet(peer.fit, X, lengths)
    for attr in ("startprob_", "transmat_", "means_", "covars_"):
        np.testing.assert_allclose(getattr(online, attr), getattr(batch, attr), rtol=0, atol=ATOL, err_msg=attr)
        np.testing.assert_allclose(getattr(online, attr), getattr(peer, attr) if attr != "covars_" else
                                   peer._covars_, rtol=0, atol=1e-8, err_msg=attr)
    np.testing.assert_allclose(online.monitor_.history, batch.monitor_.history, rtol=1e-12)
    assert online.n_iter_ == 1 and online.converged_ is False


@pytest.mark.parametrize("make, params", [
    (lambda **kw: PoissonHMM(2, **kw), dict(lambdas_=[[1.0], [6.0]])),
    (lambda **kw: CategoricalHMM(2, n_features=3, **kw), dict(emissionprob_=[[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])),
    (lambda **kw: GMMHMM(2, n_mix=2, covariance_type="diag", **kw),
     dict(weights_=[[0.5, 0.5], [0.3, 0.7]], means_=[[[-2.0], [-1.0]], [[1.0], [3.0]]],
          covars_=[[[1.0], [0.5]], [[1.0], [2.0]]])),
], ids=["poisson", "categorical", "gmm"])
def test_other_hmms_step_with_rho_one_is_their_em_step(make, params):
    rng = np.random.RandomState(3)
    if "lambdas_" in params:
        X = rng.poisson(3.0, size=(150, 1))
    elif "emissionprob_" in params:
        X = rng.randint(0, 3, size=(150, 1))
    else:
        X = rng.normal(size=(150, 1)) * 2
    lengths = [40, 70, 40]
    chain = dict(startprob_=[0.7, 0.3], transmat_=[[0.9, 0.1], [0.2, 0.8]])
    online = _set(make(init_params=""), **chain, **params).partial_fit(X, lengths=lengths, learning_decay=0.0)
    batch = _quiet(_set(make(init_params="", n_iter=1), **chain, **params).fit, X, lengths=lengths)
    for attr in ("startprob_", "transmat_", *params):
        np.testing.assert_allclose(getattr(online, attr), getattr(batch, attr), rtol=0, atol=ATOL, err_msg=attr)


def _enumerated_statistics(X, lengths, startprob, transmat, lambdas):
    """Expected start, transition and emission counts of a Poisson HMM by enumerating every state path."""
    k = len(startprob)
    start, trans, post = np.zeros(k), np.zeros((k, k)), np.zeros((len(X), k))
    offset = 0
    for n in lengths:
        x = X[offset:offset + n, 0]
        emission = poisson(np.asarray(lambdas)[:, 0]).pmf(x[:, None])  # (n, k)
        paths = np.array(list(itertools.product(range(k), repeat=n)))
        joint = startprob[paths[:, 0]] * np.prod(transmat[paths[:, :-1], paths[:, 1:]], axis=1) \
            * np.prod(emission[np.arange(n), paths], axis=1)
        joint = joint / joint.sum()
        for path, p in zip(paths, joint):
            start[path[0]] += p
            np.add.at(trans, (path[:-1], path[1:]), p)
            post[offset + np.arange(n), path] += p
        offset += n
    return start, trans, post


def test_hmm_blended_step_is_the_map_step_of_averaged_statistics():
    """rho_2 < 1 with Dirichlet priors: start counts averaged per sequence, the rest per row, scaled to the data seen."""
    rng = np.random.RandomState(4)
    lengths1, lengths2 = [6, 4, 7], [5, 6]
    X1 = rng.poisson(3.0, size=(sum(lengths1), 1))
    X2 = rng.poisson(5.0, size=(sum(lengths2), 1))
    start0 = np.array([0.6, 0.4])
    trans0 = np.array([[0.7, 0.3], [0.4, 0.6]])
    lambdas0 = np.array([[1.5], [6.0]])
    prior_s, prior_t = 3.0, 2.0
    model = _set(PoissonHMM(2, init_params="", startprob_prior=prior_s, transmat_prior=prior_t),
                 startprob_=start0, transmat_=trans0, lambdas_=lambdas0)
    offset, decay = 1.0, 0.6
    model.partial_fit(X1, lengths=lengths1, learning_offset=offset, learning_decay=decay)
    theta1 = (model.startprob_.copy(), model.transmat_.copy(), model.lambdas_.copy())
    model.partial_fit(X2, lengths=lengths2, learning_offset=offset, learning_decay=decay)

    def map_step(start, trans, post_sum, post_x):
        startprob = (start + prior_s - 1) / (start + prior_s - 1).sum()
        transmat = (trans + prior_t - 1) / (trans + prior_t - 1).sum(1, keepdims=True)
        return startprob, transmat, (post_x / post_sum)[:, None]

    s1, t1, p1 = _enumerated_statistics(X1, lengths1, start0, trans0, lambdas0)
    np.testing.assert_allclose(theta1[0], map_step(s1, t1, p1.sum(0), p1.T @ X1[:, 0])[0], rtol=0, atol=ATOL)
    s2, t2, p2 = _enumerated_statistics(X2, lengths2, *theta1)
    rho = (offset + 2) ** -decay
    n1, n2, q1, q2 = len(X1), len(X2), len(lengths1), len(lengths2)
    start = ((1 - rho) * s1 / q1 + rho * s2 / q2) * (q1 + q2)
    trans = ((1 - rho) * t1 / n1 + rho * t2 / n2) * (n1 + n2)
    post_sum = ((1 - rho) * p1.sum(0) / n1 + rho * p2.sum(0) / n2) * (n1 + n2)
    post_x = ((1 - rho) * p1.T @ X1[:, 0] / n1 + rho * p2.T @ X2[:, 0] / n2) * (n1 + n2)
    expected = map_step(start, trans, post_sum, post_x)
    for got, want in zip((model.startprob_, model.transmat_, model.lambdas_), expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


def test_hmm_stream_reaches_batch_em_likelihood():
    """Both from the same start (a rough guess), so the comparison is of the updates, not of initialisations."""
    truth = _hmm_truth()
    start = dict(startprob_=np.full(3, 1 / 3), transmat_=np.full((3, 3), 1 / 3),
                 means_=[[-1.5, 1.0], [1.5, -1.0], [1.0, 2.0]], covars_=np.full((3, 2), 3.0))
    batches = [_sample_sequences(truth, [100, 100], 10 + i) for i in range(40)]
    held_out, held_lengths = _sample_sequences(truth, [500] * 4, 999), [500] * 4
    online = _set(GaussianHMM(3, init_params=""), **start)
    for batch in batches:
        online.partial_fit(batch, lengths=[100, 100])
    batch_em = _quiet(_set(GaussianHMM(3, init_params="", n_iter=200, tol=1e-4), **start).fit, np.vstack(batches),
                      lengths=[100] * 80)
    gap = (batch_em.score(held_out, lengths=held_lengths) - online.score(held_out, lengths=held_lengths)) / 2000
    assert abs(gap) < 0.01, gap
    assert online.n_iter_ == 40 and len(online.monitor_.history) == 40
    # the stream improved on its start by far more than the tolerance
    first = _set(GaussianHMM(3, init_params=""), **start).partial_fit(batches[0], lengths=[100, 100])
    assert (online.score(held_out, lengths=held_lengths) - first.score(held_out, lengths=held_lengths)) / 2000 > 0.3


def test_hand_set_parameters_between_calls_start_a_new_run():
    truth = _hmm_truth()
    model = GaussianHMM(3, random_state=0)
    for i in range(3):
        model.partial_fit(_sample_sequences(truth, [80], i))
    assert model.n_iter_ == 3
    model.transmat_ = np.full((3, 3), 1 / 3)
    X = _sample_sequences(truth, [80], 7)
    start = {a: getattr(model, a).copy() for a in ("startprob_", "transmat_", "means_", "covars_")}
    model.partial_fit(X, learning_decay=0.0)
    assert model.n_iter_ == 1
    batch = _quiet(_set(GaussianHMM(3, init_params="", n_iter=1), **start).fit, X)
    for attr in start:
        np.testing.assert_allclose(getattr(model, attr), getattr(batch, attr), rtol=0, atol=1e-9, err_msg=attr)


def test_variational_hmm_has_no_partial_fit():
    # its fit is variational inference, not the Baum-Welch that stepwise EM extends
    assert not hasattr(VariationalHMM(2), "partial_fit")
    assert hasattr(GaussianHMM(2), "partial_fit")


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("model", [GaussianMixture(2, random_state=0), MixtureModel(n_components=2, random_state=0),
                                   GaussianHMM(2, random_state=0)], ids=lambda m: type(m).__name__)
def test_feature_count_change_names_X(model):
    X = _blobs(60, 11)
    model.partial_fit(X)
    with pytest.raises(ValueError, match="X has 1 features"):
        model.partial_fit(X[:, :1])


@pytest.mark.parametrize("model", [GaussianMixture(2), GaussianHMM(2)], ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("schedule, name", [
    (dict(learning_decay=1.5), "learning_decay"),
    (dict(learning_decay=-0.1), "learning_decay"),
    (dict(learning_offset=-1.0), "learning_offset"),
    (dict(learning_offset="10"), "learning_offset"),
])
def test_invalid_schedule_is_refused_by_the_constraints(model, schedule, name):
    with pytest.raises(ValueError, match=f"The '{name}' parameter of {type(model).__name__}.partial_fit must be"):
        model.partial_fit(_blobs(40, 12), **schedule)
    assert not hasattr(model, "n_features_in_") or not hasattr(model, "n_iter_")


def test_first_batch_needs_enough_rows():
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixture(3).partial_fit(_blobs(2, 13))


# ---------------------------------------------------------------------------------- the helpers
def test_step_sizes_and_statistics_helpers():
    assert step_size(1, 0.0, 0.7) == 1.0
    np.testing.assert_allclose(step_size(5, 2.0, 0.6), 7.0 ** -0.6)
    stats = {"start": np.array([2.0, 4.0]), "trans": (np.array([6.0]), [np.array([8.0])])}
    scaled = scale_stats(stats, {"start": 2.0, None: 4.0})
    np.testing.assert_array_equal(scaled["start"], [4.0, 8.0])
    np.testing.assert_array_equal(scaled["trans"][1][0], [32.0])
    blended = blend_stats(stats, scaled, 0.25)
    np.testing.assert_array_equal(blended["start"], [2.5, 5.0])
    with pytest.raises(ValueError, match="different fields"):
        blend_stats({"a": np.ones(1)}, {"b": np.ones(1)}, 0.5)


def test_a_pickled_model_resumes_its_online_run_and_a_saved_one_starts_a_new_one(tmp_path):
    import pickle

    from probkit import io

    X1, X2, X3 = _blobs(150, 20), _blobs(150, 21), _blobs(150, 22)
    model = GaussianMixture(3, random_state=0).partial_fit(X1).partial_fit(X2)
    copy = pickle.loads(pickle.dumps(model))
    path = tmp_path / "gmm"
    io.save(model, path)
    loaded = io.load(path)
    saved = dict(weights_init=model.weights_, means_init=model.means_, precisions_init=model.precisions_)
    model.partial_fit(X3)
    copy.partial_fit(X3)
    assert copy.n_iter_ == 3
    _assert_same_params(_gmm_params(copy), _gmm_params(model))
    # the running statistics are not part of the saved format: the loaded model starts over from its parameters
    loaded.partial_fit(X3, learning_decay=0.0)
    assert loaded.n_iter_ == 1
    truth = _quiet(SkGaussianMixture(3, max_iter=1, **saved).fit, X3)
    _assert_same_params(_gmm_params(loaded), _gmm_params(truth))
