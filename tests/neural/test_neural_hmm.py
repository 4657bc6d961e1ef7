"""NeuralHMM: exactness against the classical HMM, gradients, learning, sampling, layouts and bad input."""

import doctest
import importlib
import itertools
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from probkit import CategoricalHMM, GaussianHMM, PoissonHMM
from probkit.inference import hmm_log_likelihood
from probkit.neural import NeuralHMM
from probkit.neural.networks import NeuralHMMNet, hmm_log_likelihood_sum

TINY = dict(backbone="gru", d_model=6, n_layers=1, random_state=0)


def _data(family, rng, n=60):
    if family == "gaussian":
        return rng.normal(size=(n, 2)) + np.repeat([[0.0, 0.0], [3.0, -2.0]], n // 2, 0)
    if family == "poisson":
        return rng.poisson([[2.0, 7.0]], size=(n, 2)).astype(float)
    return rng.randint(0, 3, size=(n, 1))


def _randomise_heads(net, gen):
    """Non-zero feature maps, so that the features change the emissions and transitions."""
    with torch.no_grad():
        for lin in [net.emission.proj] + ([net.trans_proj] if net.trans_proj is not None else []):
            lin.weight.copy_(0.5 * torch.randn(lin.weight.shape, generator=gen, dtype=lin.weight.dtype))
            lin.bias.copy_(0.3 * torch.randn(lin.bias.shape, generator=gen, dtype=lin.bias.dtype))


def _classical_twin(est, c):
    """The classical HMM with the parameters the NeuralHMM has when its backbone outputs ``c`` at every step."""
    net = est.module_
    with torch.no_grad():
        params = {k: v.double() for k, v in net.emission(c).items()}
        trans = net.log_transitions(c).double().exp().numpy()
        start = net.log_startprob().double().exp().numpy()
    k = est.n_components
    if est.emission == "gaussian":
        hmm = GaussianHMM(k, covariance_type="diag")
        hmm.means_ = params["loc"].numpy() * est._x_scale + est._x_mean
        hmm.covars_ = (params["scale"].numpy() * est._x_scale) ** 2
    elif est.emission == "poisson":
        hmm = PoissonHMM(k)
        hmm.lambdas_ = params["rate"].numpy()
    else:
        hmm = CategoricalHMM(k)
        hmm.emissionprob_ = params["log_probs"].exp().numpy()
    hmm.startprob_, hmm.transmat_ = start, trans
    return hmm


@pytest.mark.parametrize("family,neural_transitions", [("gaussian", True), ("poisson", False), ("categorical", True)])
def test_constant_backbone_output_gives_the_classical_hmm(family, neural_transitions, monkeypatch):
    rng = np.random.RandomState(1)
    X = _data(family, rng)
    lengths = [25, 5, 30]
    est = NeuralHMM(3, emission=family, neural_transitions=neural_transitions, max_epochs=2, dtype="float64",
                    **TINY).fit(X, lengths=lengths)
    net = est.module_
    gen = torch.Generator().manual_seed(0)
    _randomise_heads(net, gen)
    c = torch.randn(net.backbone.d_model, generator=gen, dtype=torch.float64)

    def constant_features(e, lengths=None, return_state=False):
        return c.expand(*e.shape[:-1], c.shape[0])

    monkeypatch.setattr(net.backbone, "_run", constant_features)
    twin = _classical_twin(est, c)
    # the loss is the classical forward algorithm's log-likelihood
    assert est.score(X, lengths=lengths) == pytest.approx(twin.score(X, lengths=lengths), rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(est.score_samples(X, lengths=lengths), twin.score_samples(X, lengths=lengths),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(est.predict_proba(X, lengths=lengths), twin.predict_proba(X, lengths=lengths),
                               rtol=1e-9, atol=1e-12)
    lp, path = est.decode(X, lengths=lengths)
    lp2, path2 = twin.decode(X, lengths=lengths)
    np.testing.assert_array_equal(path, path2)
    assert lp == pytest.approx(lp2, rel=1e-12, abs=1e-9)
    _, map_path = est.decode(X, lengths=lengths, algorithm="map")
    np.testing.assert_array_equal(map_path, twin.decode(X, lengths=lengths, algorithm="map")[1])


def test_training_loss_is_the_negative_marginal_per_step():
    rng = np.random.RandomState(2)
    X = _data("gaussian", rng)
    est = NeuralHMM(2, max_epochs=3, early_stopping=False, batch_size=8, dtype="float64", **TINY)
    est.fit(X, lengths=[20, 20, 20])
    # the loss of an epoch is in standardised units; the score adds the Jacobian of the standardisation
    from probkit.neural.estimators._training import evaluate_loss

    data = est._sequence_data(est._read(X, lengths=[20, 20, 20], reset=False))

    def loss_fn(model, batch):
        ls, lt, le = model(batch["x_in"], batch["x_obs"], batch["lengths"])
        n = batch["lengths"].sum()
        return -hmm_log_likelihood(ls, lt, le, batch["lengths"]).sum() / n, n

    total, n = evaluate_loss(est.module_, loss_fn, data)
    per_step = -total / n + est._log_jacobian()
    assert per_step == pytest.approx(est.score_per_step(X, lengths=[20, 20, 20]), rel=1e-12)


def test_marginal_gradients_match_finite_differences():
    torch.manual_seed(0)
    net = NeuralHMMNet("gaussian", 2, 2, backbone="gru", d_model=3, n_layers=1, neural_transitions=True).double()
    _randomise_heads(net, torch.Generator().manual_seed(1))
    x = torch.randn(3, 4, 2, dtype=torch.float64)
    lengths = torch.tensor([4, 2, 1])
    names = ["emission.proj.weight", "emission.static.loc", "emission.static.log_scale", "trans_proj.weight",
             "trans_logits", "start_logits", "encoder.weight", "start", "backbone.layers.0.rnn.weight_hh_l0"]
    params = dict(net.named_parameters())
    assert all(n in params for n in names)

    def marginal(*values):
        out = torch.func.functional_call(net, {**params, **dict(zip(names, values))}, (x, x, lengths))
        return hmm_log_likelihood(*out, lengths).sum()

    inputs = tuple(params[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(marginal, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("neural_transitions", [False, True])
@pytest.mark.parametrize("shared_start", [True, False])
def test_posterior_gradient_equals_autograd_through_the_forward_algorithm(neural_transitions, shared_start):
    # float64: the value and every parameter gradient of the training objective (posterior weights,
    # no autograd through the recursion) against autograd through the padded forward algorithm.
    # A (K,) start runs the compiled CPU kernels, a per-sequence (B, K) start the torch recursions.
    torch.manual_seed(0)
    net = NeuralHMMNet("gaussian", 3, 2, backbone="gru", d_model=4, n_layers=1,
                       neural_transitions=neural_transitions).double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x = torch.randn(3, 6, 2, dtype=torch.float64, generator=gen)
    lengths = torch.tensor([6, 3, 1])

    def value_and_grads(objective):
        net.zero_grad()
        log_start, log_trans, log_emis = net(x, x, lengths)
        if not shared_start:
            log_start = log_start.expand(3, -1)
        value = objective(log_start, log_trans, log_emis, lengths)
        value.backward()
        return value.item(), {name: p.grad.clone() for name, p in net.named_parameters()}

    reference, ref_grads = value_and_grads(lambda *terms: hmm_log_likelihood(*terms).sum())
    value, grads = value_and_grads(hmm_log_likelihood_sum)
    assert value == pytest.approx(reference, rel=1e-12)
    assert all(g.abs().max() > 0 for g in ref_grads.values())
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-9, atol=1e-11, msg=name)


def _switching_ar(rng, n_seq, T, trans=((0.97, 0.03), (0.03, 0.97)), coef=(0.9, -0.9), noise=0.3):
    trans = np.asarray(trans)
    X, Z = [], []
    for _ in range(n_seq):
        z = np.zeros(T, dtype=int)
        z[0] = rng.randint(2)
        x = np.zeros(T)
        x[0] = rng.randn()
        for t in range(1, T):
            z[t] = rng.choice(2, p=trans[z[t - 1]])
            x[t] = coef[z[t]] * x[t - 1] + np.broadcast_to(noise, 2)[z[t]] * rng.randn()
        X.append(x)
        Z.append(z)
    return np.concatenate(X)[:, None], np.concatenate(Z), [T] * n_seq


def _true_log_likelihood(X, lengths, trans=((0.97, 0.03), (0.03, 0.97)), coef=(0.9, -0.9), noise=0.3):
    """Exact log-likelihood under the generator (x_1 ~ N(0, 1) in both regimes)."""
    total = 0.0
    start = 0
    for n in lengths:
        x = X[start:start + n, 0]
        start += n
        mean = np.zeros((n, 2))
        sd = np.full((n, 2), noise)
        mean[1:] = x[:-1, None] * np.asarray(coef)[None]
        sd[0] = 1.0
        le = -0.5 * ((x[:, None] - mean) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
        total += float(hmm_log_likelihood(np.log([0.5, 0.5]), np.log(np.asarray(trans)), le[None])[0])
    return total


def _held_out_per_step(neural_hmm, X, lengths, X_test, lengths_test):
    """Held-out nats per step of a fitted NeuralHMM, of a GaussianHMM(2) fitted to the same data, and of the generator."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hmm = GaussianHMM(2, n_iter=100, random_state=0).fit(X, lengths=lengths)
    n = len(X_test)
    return (neural_hmm.score_per_step(X_test, lengths=lengths_test), hmm.score(X_test, lengths=lengths_test) / n,
            _true_log_likelihood(X_test, lengths_test) / n)


def test_recovers_switching_autoregression_that_a_classical_hmm_cannot():
    rng = np.random.RandomState(0)
    X, _, lengths = _switching_ar(rng, 12, 100)
    X_test, Z_test, lt = _switching_ar(rng, 6, 100)
    nh = NeuralHMM(2, backbone="gru", d_model=8, n_layers=1, max_epochs=40, lr=2e-2, early_stopping=False,
                   random_state=0).fit(X, lengths=lengths)
    neural, classical, truth = _held_out_per_step(nh, X, lengths, X_test, lt)
    assert neural > classical + 0.4            # measured: -0.47 vs -1.01 nats per step (truth -0.37)
    assert neural > truth - 0.2
    assert neural <= truth + 0.05              # a held-out model cannot beat the generator by much
    # the decoded regimes are the true ones (up to the labels)
    agree = np.mean(nh.predict(X_test, lengths=lt) == Z_test)
    assert max(agree, 1 - agree) > 0.9


def test_default_training_beats_the_classical_hmm_on_held_out_data():
    # Training settings left at their defaults: the fit must find the autoregressive regimes that a
    # classical HMM cannot see (both regimes have the same marginal), measured on held-out sequences.
    rng = np.random.RandomState(3)
    X, _, lengths = _switching_ar(rng, 24, 100)
    X_test, _, lt = _switching_ar(rng, 8, 100)
    nh = NeuralHMM(2, backbone="gru", d_model=8, n_layers=1, random_state=0).fit(X, lengths=lengths)
    neural, classical, truth = _held_out_per_step(nh, X, lengths, X_test, lt)
    assert neural > classical + 0.7 * (truth - classical)    # measured: 89 % of the generator's gap
    assert neural <= truth + 0.05


@pytest.mark.parametrize("backbone", ["gru", "mamba", "rwkv", "transformer", "s4d", "mambaout", "lstm"])
def test_sampling_with_step_is_an_exact_draw_from_the_model(backbone):
    """Empirical frequencies of all 2**3 sequences of 3 binary symbols vs exp(score) of each."""
    rng = np.random.RandomState(0)
    X = rng.randint(0, 2, size=(40, 1))
    est = NeuralHMM(2, emission="categorical", neural_transitions=True, max_epochs=1, backbone=backbone,
                    d_model=8, n_layers=1, random_state=0).fit(X)
    _randomise_heads(est.module_, torch.Generator().manual_seed(3))
    seqs = np.array(list(itertools.product([0, 1], repeat=3)))
    probs = np.exp([est.score(s[:, None]) for s in seqs])
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    n = 20000
    S, Z = est.sample(3, random_state=0, n_sequences=n)
    codes = S.reshape(n, 3) @ np.array([4, 2, 1])
    freq = np.bincount(codes, minlength=8) / n
    # 4.5 standard errors of a binomial proportion
    np.testing.assert_array_less(np.abs(freq - probs), 4.5 * np.sqrt(probs * (1 - probs) / n) + 1e-9)
    assert Z.shape == (3 * n,) and set(np.unique(Z)) <= {0, 1}


def test_sampled_gaussian_and_poisson_sequences_have_the_right_shapes_and_support():
    rng = np.random.RandomState(0)
    for family in ("gaussian", "poisson"):
        X = _data(family, rng)
        est = NeuralHMM(2, emission=family, max_epochs=2, **TINY).fit(X, lengths=[30, 30])
        S, Z = est.sample(7, random_state=1, n_sequences=2)
        assert S.shape == (14, 2) and Z.shape == (14,)
        S2, _ = est.sample(7, random_state=1, n_sequences=2)
        np.testing.assert_array_equal(S, S2)
        if family == "poisson":
            assert np.all(S >= 0) and np.all(S == np.round(S))
        assert np.isfinite(est.score(S, lengths=[7, 7]))


def test_init_hmm_starts_at_the_classical_solution():
    rng = np.random.RandomState(3)
    X = _data("gaussian", rng)
    est = NeuralHMM(2, max_epochs=1, lr=1e-12, weight_decay=0.0, early_stopping=False, dtype="float64", **TINY)
    est.fit(X, lengths=[30, 30])
    assert est.score(X, lengths=[30, 30]) == pytest.approx(est.init_hmm_.score(X, lengths=[30, 30]), rel=1e-8)
    np.testing.assert_allclose(est.transmat_, est.init_hmm_.transmat_, atol=1e-8)
    rand = NeuralHMM(2, init="random", max_epochs=1, **TINY).fit(X, lengths=[30, 30])
    assert rand.init_hmm_ is None and np.isfinite(rand.score(X, lengths=[30, 30]))


def test_init_hmm_restarts_escape_the_sign_alternating_optimum():
    # Regimes x_t = 0.9 x_{t-1} + 0.3 e and x_t = -0.6 x_{t-1} + e: single EM runs of a Gaussian HMM
    # often end in a non-sticky optimum that follows the sign alternation of the second regime, with a
    # lower likelihood than the sticky split by variance. The restarted initialising HMM must reach the
    # best classical optimum that any single run finds.
    rng = np.random.RandomState(0)
    X, _, lengths = _switching_ar(rng, 20, 100, coef=(0.9, -0.6), noise=(0.3, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        singles = [GaussianHMM(2, n_iter=100, random_state=r).fit(X, lengths=lengths) for r in range(8)]
    scores = np.array([h.score(X, lengths=lengths) for h in singles])
    sticky = np.array([np.diag(h.transmat_).min() > 0.8 for h in singles])
    assert sticky.any() and not sticky.all()                    # both optima occur among single runs
    assert scores[sticky].min() > scores[~sticky].max() + 0.05 * len(X)
    for seed in range(3):
        est = NeuralHMM(2, max_epochs=1, **{**TINY, "random_state": seed}).fit(X, lengths=lengths)
        assert est.init_hmm_.n_init == 5
        assert est.init_hmm_.score(X, lengths=lengths) > scores.max() - 1.0     # EM stops at tol=1e-2
        assert np.diag(est.init_hmm_.transmat_).min() > 0.8
    with pytest.raises(ValueError, match="The 'hmm_n_init' parameter of NeuralHMM must be an int in the range"):
        NeuralHMM(hmm_n_init=0, **TINY).fit(X, lengths=lengths)


def test_layouts_and_sequence_independence():
    rng = np.random.RandomState(4)
    X = _data("gaussian", rng)
    est = NeuralHMM(2, neural_transitions=True, max_epochs=2, **TINY).fit(X, lengths=[10, 20, 30])
    seqs = [X[:10], X[10:30], X[30:]]
    np.testing.assert_allclose(est.predict_proba(seqs), est.predict_proba(X, lengths=[10, 20, 30]))
    # a sequence's results do not depend on the other sequences of the batch
    np.testing.assert_allclose(est.predict_proba(X[10:30]), est.predict_proba(X, lengths=[10, 20, 30])[10:30],
                               rtol=1e-5, atol=1e-6)
    assert est.score(X, lengths=[10, 20, 30]) == pytest.approx(sum(est.score(s) for s in seqs), rel=1e-6)
    assert est.predict(torch.as_tensor(X), lengths=[10, 20, 30]).shape == (60,)
    # training on windows of one long sequence
    win = NeuralHMM(2, train_window=16, max_epochs=2, **TINY).fit(X)
    assert np.isfinite(win.score(X))


def test_the_three_forms_of_the_contract_are_the_same_sequences():
    rng = np.random.RandomState(7)
    X = _data("gaussian", rng)
    lengths = np.array([10, 20, 30])
    seqs = [X[:10], X[10:30], X[30:]]
    padded = np.full((3, 30, X.shape[1]), np.nan)
    for i, s in enumerate(seqs):
        padded[i, :len(s)] = s
    forms = [((seqs,), {}), ((X,), {"lengths": lengths}), ((padded,), {"valid_lengths": lengths})]
    fitted = [NeuralHMM(2, neural_transitions=True, max_epochs=2, **TINY).fit(*a, **k) for a, k in forms]
    for est in fitted:
        for a, k in forms:
            np.testing.assert_array_equal(est.predict_proba(*a, **k), fitted[0].predict_proba(X, lengths=lengths))
            assert est.score(*a, **k) == fitted[0].score(X, lengths=lengths)
    with pytest.raises(ValueError, match="give the valid prefix of each row as valid_lengths="):
        fitted[0].score(padded, lengths=lengths)


def test_fits_are_reproducible():
    rng = np.random.RandomState(5)
    X = _data("poisson", rng)
    a = NeuralHMM(2, emission="poisson", max_epochs=3, **TINY).fit(X, lengths=[30, 30])
    b = NeuralHMM(2, emission="poisson", max_epochs=3, **TINY).fit(X, lengths=[30, 30])
    assert a.score(X) == b.score(X)
    assert a.history_["train_loss"] == b.history_["train_loss"]


def test_bad_input_is_refused_with_clear_errors():
    rng = np.random.RandomState(6)
    X = _data("gaussian", rng)
    with pytest.raises(ValueError, match="The 'emission' parameter of NeuralHMM must be a str among .*Got 'student'"):
        NeuralHMM(emission="student").fit(X)
    with pytest.raises(ValueError, match="The 'backbone' parameter of NeuralHMM must be .*Got 'lstmx'"):
        NeuralHMM(backbone="lstmx").fit(X)
    with pytest.raises(ValueError, match="The 'init' parameter of NeuralHMM must be a str among .*Got 'kmeans'"):
        NeuralHMM(init="kmeans", **TINY).fit(X)
    with pytest.raises(ValueError, match="non-negative integer.*emission='poisson'"):
        NeuralHMM(emission="poisson", **TINY).fit(X)
    with pytest.raises(ValueError, match="non-negative integer.*emission='categorical'"):
        NeuralHMM(emission="categorical", **TINY).fit(-np.ones((10, 1)))
    with pytest.raises(ValueError, match="lengths must sum to the number of samples"):
        NeuralHMM(**TINY).fit(X, lengths=[30, 20])
    with pytest.raises(ValueError, match="lengths must be positive"):
        NeuralHMM(**TINY).fit(X, lengths=[60, 0])
    with pytest.raises(ValueError, match="sequence 1 of X is empty"):
        NeuralHMM(**TINY).fit([X[:5], X[:0]])
    with pytest.raises(ValueError, match=r"X is empty: shape \(0, 2\)"):
        NeuralHMM(**TINY).fit(np.zeros((0, 2)))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        NeuralHMM(**TINY).fit(bad)
    with pytest.raises(TypeError, match="lengths="):
        NeuralHMM(**TINY).fit(X, [30, 30])
    for method in ("predict", "predict_proba", "score", "score_samples", "score_per_step"):
        with pytest.raises(NotFittedError):
            getattr(NeuralHMM(), method)(X)
    with pytest.raises(NotFittedError):
        NeuralHMM().sample(3)
    est = NeuralHMM(emission="categorical", max_epochs=1, **TINY).fit(rng.randint(0, 3, size=(20, 1)))
    with pytest.raises(ValueError, match="symbol 5 but the model emits symbols 0 .. 2"):
        est.predict(np.array([[0], [5]]))
    with pytest.raises(ValueError, match="features"):
        NeuralHMM(max_epochs=1, **TINY).fit(X).predict(X[:, :1])
    with pytest.raises(ValueError, match="algorithm"):
        NeuralHMM(max_epochs=1, **TINY).fit(X).decode(X, algorithm="forward")


@pytest.mark.parametrize("name", ["probkit.neural.emissions", "probkit.neural.estimators.neural_hmm"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
