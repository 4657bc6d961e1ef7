"""SequenceClassifier, SequenceRegressor and SequenceDensity: behaviour, layouts, bad input.

Tiny models (GRU or small widths, few epochs) so that the file runs in seconds; every
backbone kind is exercised by the gradient and the step-vs-forward tests.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from probkit.neural import KINDS, SequenceClassifier, SequenceDensity, SequenceRegressor
from probkit.neural.networks import SequenceNet, pool, reverse_within
from probkit.neural.heads import CategoricalHead, GaussianHead, MixtureGaussianHead

TINY = dict(backbone="gru", d_model=16, n_layers=1, random_state=0)
CANONICAL = [k for k in KINDS if k != "gated_cnn"]  # gated_cnn is an alias of mambaout
KIND_KW = {"transformer": {"n_heads": 2}, "rwkv": {"n_heads": 2}}


@pytest.fixture(autouse=True)
def one_thread():
    """Small models: one intra-op thread (OpenMP barriers stall on shared cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def sign_task(n=120, seed=0):
    """Ragged 2-feature sequences; label: is the sum of feature 0 positive."""
    rng = np.random.RandomState(seed)
    seqs = [rng.normal(size=(rng.randint(3, 10), 2)) + rng.choice([-0.7, 0.7]) for _ in range(n)]
    y = np.array([int(s[:, 0].sum() > 0) for s in seqs])
    return seqs, y


def ar_series(n, length, phi=0.9, seed=0):
    rng = np.random.RandomState(seed)
    x = np.zeros((n, length, 1))
    for t in range(1, length):
        x[:, t, 0] = phi * x[:, t - 1, 0] + rng.normal(size=n)
    return x


def pad(seqs, value=0.0):
    L = max(len(s) for s in seqs)
    out = np.full((len(seqs), L) + seqs[0].shape[1:], value, dtype=float)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, np.array([len(s) for s in seqs])


# ---------------------------------------------------------------------------- learning
def test_classifier_beats_chance_on_ragged_sequences():
    seqs, y = sign_task(160)
    clf = SequenceClassifier(**TINY, max_epochs=25, lr=1e-2).fit(seqs[:120], y[:120])
    assert clf.score(seqs[120:], y[120:]) >= 0.85
    proba = clf.predict_proba(seqs[120:])
    assert proba.shape == (40, 2) and np.allclose(proba.sum(1), 1)
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert clf.n_features_in_ == 2 and clf.n_iter_ == len(clf.history_["train_loss"])


def test_classifier_on_tokens_with_string_labels():
    rng = np.random.RandomState(0)
    seqs = [rng.randint(0, 6, size=rng.randint(4, 12)) for _ in range(150)]
    y = np.where([np.sum(s == 5) >= 2 for s in seqs], "many", "few")   # count a token
    clf = SequenceClassifier(**TINY, vocab_size=6, max_epochs=30, lr=1e-2).fit(seqs[:110], y[:110])
    assert set(clf.predict(seqs[110:])) <= {"few", "many"}
    chance = max(np.mean(y[110:] == "few"), np.mean(y[110:] == "many"))
    assert clf.score(seqs[110:], y[110:]) > chance + 0.1


def test_regressor_beats_the_mean_and_gives_uncertainty():
    rng = np.random.RandomState(1)
    seqs = [rng.normal(size=(rng.randint(2, 8), 1)) * 0.5 + m for m in rng.normal(size=150)]
    y = np.array([s.mean() for s in seqs]) * 10 + 3
    reg = SequenceRegressor(**TINY, max_epochs=40, lr=1e-2, loss="gaussian").fit(seqs[:120], y[:120])
    assert reg.score(seqs[120:], y[120:]) > 0.8
    mean, std = reg.predict(seqs[120:], return_std=True)
    assert mean.shape == std.shape == (30,) and np.all(std > 0)
    assert 0.3 < np.median(np.abs(mean - y[120:]) / std) < 3      # calibrated to a factor of a few
    with pytest.raises(ValueError, match="return_std"):
        SequenceRegressor(**TINY, max_epochs=1).fit(seqs, y).predict(seqs, return_std=True)


def test_regressor_multi_output():
    seqs, _ = sign_task(60)
    Y = np.stack([[s[:, 0].mean(), s[:, 1].mean()] for s in seqs])
    reg = SequenceRegressor(**TINY, max_epochs=30, lr=1e-2).fit(seqs, Y)
    assert reg.predict(seqs).shape == (60, 2) and reg.n_outputs_ == 2
    assert reg.score(seqs, Y) > 0.5


def test_density_tokens_beats_uniform_and_counts_nats_per_step():
    rng = np.random.RandomState(0)
    # a first-order Markov chain over 4 symbols with a strong preferred successor
    P = np.full((4, 4), 0.05) + np.eye(4)[[1, 2, 3, 0]] * 0.8
    seqs = []
    for _ in range(60):
        s = [rng.randint(4)]
        for _ in range(rng.randint(10, 30)):
            s.append(rng.choice(4, p=P[s[-1]]))
        seqs.append(np.array(s))
    lm = SequenceDensity(**TINY, vocab_size=4, max_epochs=30, lr=1e-2).fit(seqs[:50])
    score = lm.score(seqs[50:])
    entropy = -np.sum(P[0] * np.log(P[0]))
    assert -np.log(4) + 0.4 < score < -entropy + 0.05        # much better than uniform, not above truth
    per_seq = lm.score_samples(seqs[50:])
    assert per_seq.shape == (10,)
    assert np.isclose(per_seq.sum() / sum(map(len, seqs[50:])), score)
    assert lm.head_ == "categorical"


def test_density_gaussian_head_learns_an_ar_process():
    X = ar_series(80, 30, phi=0.9)
    lm = SequenceDensity(**TINY, max_epochs=30, lr=1e-2).fit(X[:60])
    iid = -0.5 * np.log(2 * np.pi * np.e * X[:60].var())              # best iid Gaussian per step
    cond = -0.5 * np.log(2 * np.pi * np.e)                             # true conditional (unit noise)
    score = lm.score(X[60:])
    assert iid + 0.3 < score < cond + 0.1


def test_density_mixture_head_beats_gaussian_on_bimodal_steps():
    rng = np.random.RandomState(0)
    X = rng.choice([-3.0, 3.0], size=(100, 6, 1)) + 0.3 * rng.normal(size=(100, 6, 1))
    kw = dict(TINY, max_epochs=30, lr=1e-2)
    gauss = SequenceDensity(**kw).fit(X[:80])
    mix = SequenceDensity(**kw, head="mixture", n_components=3).fit(X[:80])
    assert mix.score(X[80:]) > gauss.score(X[80:]) + 0.5
    assert mix.sample(4, n_steps=5, random_state=0).shape == (4, 5, 1)


def test_density_scores_are_in_the_units_of_the_data():
    """Scaling the data by c shifts the log-density per step by exactly -D log c."""
    X = ar_series(30, 12)
    kw = dict(TINY, max_epochs=3, dtype="float64")
    a = SequenceDensity(**kw).fit(X)
    b = SequenceDensity(**kw).fit(10.0 * X)
    np.testing.assert_allclose(b.score(10.0 * X), a.score(X) - np.log(10.0), rtol=1e-9)


# ---------------------------------------------------------------------------- layouts
def three_forms(seqs):
    """The same sequences as a list, as concatenated rows with lengths, and padded (NaN past each end)."""
    padded, lengths = pad(seqs, value=np.nan)
    return [((seqs,), {}), ((np.concatenate(seqs),), {"lengths": lengths}),
            ((padded,), {"valid_lengths": lengths})]


@pytest.mark.parametrize("Est", [SequenceClassifier, SequenceRegressor, SequenceDensity])
def test_the_three_forms_of_the_contract_give_the_same_model(Est):
    """A list, concatenated rows with lengths= and a padded array with valid_lengths= are the same sequences."""
    seqs, y = sign_task(30)
    y = y.astype(float) if Est is SequenceRegressor else (None if Est is SequenceDensity else y)
    method = "score_samples" if Est is SequenceDensity else "predict"
    results = []
    for args, kw in three_forms(seqs):
        est = Est(**TINY, max_epochs=2)
        est.fit(*args, **kw) if y is None else est.fit(*args, y, **kw)
        results.append([getattr(est, method)(*a, **k) for a, k in three_forms(seqs)])
    for row in results:
        for out in row:
            np.testing.assert_array_equal(out, results[0][0])
    assert results[0][0].shape[0] == len(seqs)


def test_tensors_and_lists_are_read_as_arrays():
    seqs, y = sign_task(40)
    a = SequenceClassifier(**TINY, max_epochs=3).fit(seqs, y)
    t = SequenceClassifier(**TINY, max_epochs=3).fit([torch.as_tensor(s) for s in seqs], torch.as_tensor(y))
    np.testing.assert_array_equal(t.predict_proba(seqs), a.predict_proba(seqs))
    X = np.concatenate(seqs)
    lengths = [len(s) for s in seqs]
    np.testing.assert_array_equal(a.predict_proba(X.tolist(), lengths=lengths), a.predict_proba(X, lengths=lengths))


def test_a_2d_array_without_lengths_is_one_sequence():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(50, 3))
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(ValueError, match=r"X without lengths= is one sequence of 50 steps, but y has 50 entries\. "
                                         r"For 50 sequences of one step each pass lengths=np\.ones\(50"):
        SequenceClassifier(**TINY, max_epochs=1).fit(X, y)
    ones = np.ones(50, dtype=int)
    clf = SequenceClassifier(**TINY, max_epochs=2).fit(X, y, lengths=ones)
    assert clf.n_features_in_ == 3 and clf.predict(X, lengths=ones).shape == (50,)
    np.testing.assert_array_equal(clf.predict_proba(X, lengths=ones), clf.predict_proba(X[:, None, :]))
    one = clf.predict_proba(X)                                  # one sequence of 50 steps
    np.testing.assert_array_equal(one, clf.predict_proba([X]))
    assert one.shape == (1, 2)
    reg = SequenceRegressor(**TINY, max_epochs=2).fit(X, [1.5])  # one sequence, one target
    assert reg.predict(X).shape == (1,)
    lm = SequenceDensity(**TINY, max_epochs=2).fit(X)
    assert lm.score_samples(X).shape == (1,)
    np.testing.assert_allclose(lm.score_samples(X, lengths=ones).sum(), lm.score(X, lengths=ones) * 50, rtol=1e-6)


def test_predictions_do_not_depend_on_the_other_sequences_of_the_call():
    """Each sequence is evaluated at shapes fixed by its own length: a subset or a reordering changes nothing."""
    seqs, y = sign_task(50)
    reg = SequenceRegressor(**TINY, max_epochs=2, batch_size=8).fit(seqs, y.astype(float))
    full = reg.predict(seqs)
    order = np.random.RandomState(1).permutation(50)
    np.testing.assert_array_equal(reg.predict([seqs[i] for i in order]), full[order])
    np.testing.assert_array_equal(np.concatenate([reg.predict([s]) for s in seqs[:10]]), full[:10])
    lm = SequenceDensity(**TINY, max_epochs=2, batch_size=8).fit(seqs)
    np.testing.assert_array_equal(lm.score_samples(seqs[3:17]), lm.score_samples(seqs)[3:17])


def test_one_long_token_sequence_is_cut_into_windows():
    rng = np.random.RandomState(0)
    tokens = rng.randint(0, 5, size=103)
    lm = SequenceDensity(**TINY, vocab_size=5, window=20, max_epochs=2).fit(tokens)
    windows = [tokens[i:i + 20] for i in range(0, 103, 20)]
    np.testing.assert_allclose(lm.score_samples(tokens), lm.score_samples(windows), rtol=1e-6)
    assert np.isclose(lm.score(tokens), lm.score(windows))
    # with lengths, 1-D tokens are concatenated sequences, modelled whole
    lengths = [len(w) for w in windows]
    np.testing.assert_array_equal(lm.score_samples(tokens, lengths=lengths), lm.score_samples(windows))
    assert lm.score_samples(tokens, lengths=[103]).shape == (1,)


# ---------------------------------------------------------------------------- determinism, clone, pickle
def test_fits_are_reproducible_and_leave_the_global_rng_alone():
    seqs, y = sign_task(40)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = SequenceClassifier(**TINY, max_epochs=3).fit(seqs, y).predict_proba(seqs)
    assert torch.equal(torch.rand(1), before)
    b = SequenceClassifier(**TINY, max_epochs=3).fit(seqs, y).predict_proba(seqs)
    c = SequenceClassifier(**dict(TINY, random_state=1), max_epochs=3).fit(seqs, y).predict_proba(seqs)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("Est", [SequenceClassifier, SequenceRegressor, SequenceDensity])
def test_clone_and_pickle(Est):
    seqs, y = sign_task(30)
    est = Est(**TINY, max_epochs=2, backbone_kwargs={"hidden_size": 8})
    cl = clone(est)
    assert cl.get_params() == est.get_params() and not hasattr(cl, "module_")
    est.fit(seqs, y.astype(float) if Est is SequenceRegressor else y)
    again = pickle.loads(pickle.dumps(est))
    if Est is SequenceDensity:
        np.testing.assert_array_equal(again.score_samples(seqs), est.score_samples(seqs))
    else:
        np.testing.assert_array_equal(again.predict(seqs), est.predict(seqs))
    assert not hasattr(clone(est), "module_")


def test_early_stopping_restores_the_best_epoch():
    seqs, y = sign_task(60)
    rng = np.random.RandomState(0)
    y_noisy = rng.randint(0, 2, size=60)           # pure noise: validation loss rises as it memorises
    clf = SequenceClassifier(**TINY, max_epochs=40, lr=3e-2, patience=3, validation_fraction=0.3).fit(seqs, y_noisy)
    h = clf.history_
    assert h["stop_reason"] == "early_stopping" and clf.n_iter_ < 40
    assert clf.best_epoch_ == int(np.argmin(h["val_loss"]))
    assert clf.n_iter_ - 1 - clf.best_epoch_ >= 3
    off = SequenceClassifier(**TINY, max_epochs=4, early_stopping=False).fit(seqs, y_noisy)
    assert off.history_["val_loss"] == [] and off.best_epoch_ is None and off.n_iter_ == 4


def test_verbose_shows_a_progress_bar(capsys):
    seqs, y = sign_task(20)
    SequenceClassifier(**TINY, max_epochs=2, verbose=1).fit(seqs, y)
    err = capsys.readouterr().err
    assert "SequenceClassifier" in err and "2/2" in err


# ---------------------------------------------------------------------------- networks
@pytest.mark.parametrize("kind", CANONICAL)
@pytest.mark.parametrize("mode", ["pooled", "bidirectional", "autoregressive", "tokens"])
def test_gradients_reach_every_parameter(kind, mode):
    torch.manual_seed(0)
    kw = dict(backbone_kwargs=KIND_KW.get(kind))
    if mode == "autoregressive":
        net = SequenceNet(kind, 8, 2, MixtureGaussianHead(8, 3, 2), n_features=3, autoregressive=True, **kw)
    elif mode == "tokens":
        net = SequenceNet(kind, 8, 2, CategoricalHead(8, 5), vocab_size=5, autoregressive=True, **kw)
    else:
        net = SequenceNet(kind, 8, 2, GaussianHead(8, 2), n_features=3, bidirectional=mode == "bidirectional",
                          pooling="last", **kw)
    with torch.no_grad():  # move off zero-initialised factors (e.g. low-rank adapters), whose partners get 0 grads
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randint(0, 5, (3, 7)) if mode == "tokens" else torch.randn(3, 7, 3)
    out = net(x, torch.tensor([7, 4, 2]))
    (out ** 2).sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing
    if mode == "bidirectional":
        assert not net.causal
        assert (net.reverse is None) == (kind == "transformer")


@pytest.mark.parametrize("kind", CANONICAL)
def test_recurrent_step_reproduces_the_autoregressive_forward(kind):
    torch.manual_seed(0)
    net = SequenceNet(kind, 8, 2, CategoricalHead(8, 5), vocab_size=5, autoregressive=True,
                      backbone_kwargs=KIND_KW.get(kind)).double().eval()
    x = torch.randint(0, 5, (2, 6))
    with torch.no_grad():
        full = net(x)
        state = net.init_state(2, dtype=torch.float64)
        outs = [net.step(None, state, batch_size=2)]
        state = outs[0][1]
        for t in range(5):
            o, state = net.step(x[:, t], state)
            outs.append((o, state))
    stepped = torch.stack([o for o, _ in outs], 1)
    torch.testing.assert_close(stepped, full, rtol=1e-7, atol=1e-9)
    # reading a prompt in parallel gives the next output and the state of the step loop
    with torch.no_grad():
        out, primed = net.prime(x[:, :3])
        torch.testing.assert_close(out, full[:, 3], rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(net.step(x[:, 3], primed)[0], full[:, 4], rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(net.prime(None, batch_size=2)[0], full[:, 0], rtol=1e-7, atol=1e-9)


def test_bidirectional_summaries_see_the_future_and_causal_ones_do_not():
    torch.manual_seed(0)
    x = torch.randn(1, 6, 2)
    x2 = x.clone()
    x2[0, 5] += 1.0                    # change only the last step
    causal = SequenceNet("gru", 8, 1, GaussianHead(8, 1), n_features=2, pooling="mean").eval()
    h1, h2 = (causal.backbone(causal.encoder(v)) for v in (x, x2))
    torch.testing.assert_close(h1[:, :5], h2[:, :5])
    bi = SequenceNet("gru", 8, 1, GaussianHead(8, 1), n_features=2, bidirectional=True, pooling="last").eval()
    assert not torch.allclose(bi(x[:, :1].expand(1, 1, 2)), bi(torch.cat([x[:, :1], x2[:, 1:]], 1)))


def test_pool_and_reverse_helpers():
    h = torch.arange(12.0).reshape(2, 3, 2)
    lengths = torch.tensor([3, 1])
    torch.testing.assert_close(pool(h, lengths, "mean"), torch.tensor([[2.0, 3.0], [6.0, 7.0]]))
    torch.testing.assert_close(pool(h, lengths, "last"), torch.tensor([[4.0, 5.0], [6.0, 7.0]]))
    torch.testing.assert_close(pool(h, lengths, "max"), torch.tensor([[4.0, 5.0], [6.0, 7.0]]))
    torch.testing.assert_close(reverse_within(reverse_within(h, lengths), lengths), h)


# ---------------------------------------------------------------------------- generation
def test_generate_and_sample_shapes_and_reproducibility():
    rng = np.random.RandomState(0)
    tokens = [rng.randint(0, 5, size=12) for _ in range(20)]
    lm = SequenceDensity(**TINY, vocab_size=5, max_epochs=2).fit(tokens)
    a = lm.generate(tokens[0][:4], n_steps=7, temperature=0.8, random_state=3)
    assert a.shape == (7,) and a.dtype == np.int64 and a.min() >= 0 and a.max() < 5
    np.testing.assert_array_equal(a, lm.generate(tokens[0][:4], n_steps=7, temperature=0.8, random_state=3))
    assert lm.generate(np.stack([t[:3] for t in tokens[:4]]), n_steps=5).shape == (4, 5)
    assert lm.generate(None, n_steps=3).shape == (3,)
    assert lm.sample(6, n_steps=4, random_state=0).shape == (6, 4)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_generation_follows_the_model_distribution(temperature):
    """Frequencies of generated symbols match the model's (tempered) predicted probabilities."""
    rng = np.random.RandomState(0)
    tokens = [rng.choice(3, p=[0.6, 0.3, 0.1], size=5) for _ in range(80)]
    lm = SequenceDensity(**TINY, vocab_size=3, max_epochs=10, lr=1e-2).fit(tokens)
    prompt = np.array([2, 0])
    nxt = lm.generate(np.tile(prompt, (3000, 1)), n_steps=1, temperature=temperature, random_state=0)[:, 0]
    net = lm.module_
    with torch.no_grad():
        out, state = net.step(None, net.init_state(1), batch_size=1)
        for t in prompt:
            out, state = net.step(torch.tensor([t]), state)
        probs = net.head.probs(out, temperature)[0].numpy()
    np.testing.assert_allclose(np.bincount(nxt, minlength=3) / 3000, probs, atol=0.03)
    assert probs.max() > 0.5


def test_real_valued_generation_is_in_data_units():
    X = ar_series(40, 15) * 5 + 100
    lm = SequenceDensity(**TINY, max_epochs=10, lr=1e-2).fit(X)
    out = lm.generate(X[0, :5], n_steps=8, random_state=0)
    assert out.shape == (8, 1) and 60 < out.mean() < 140
    assert lm.generate(X[:3, :5], n_steps=2).shape == (3, 2, 1)


# ---------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def fitted():
    seqs, y = sign_task(20)
    tokens = [np.arange(5) % 4, np.arange(3)]
    return {"clf": SequenceClassifier(**TINY, max_epochs=1).fit(seqs, y),
            "lm": SequenceDensity(**TINY, vocab_size=4, max_epochs=1).fit(tokens),
            "seqs": seqs, "y": y}


@pytest.mark.parametrize("X, match", [
    (np.zeros(5), "Reshape your data"),                                # 1-D reals
    (np.zeros((2, 3, 4, 5)), r"got an array of shape \(2, 3, 4, 5\)"),
    ([np.zeros((3, 2)), np.zeros((0, 2))], "sequence 1 of X is empty"),
    ([], "no sequences"),
    (np.zeros((0, 3)), r"X is empty: shape \(0, 3\)"),
    (np.zeros((2, 0, 3)), r"X is empty: shape \(2, 0, 3\)"),
    ([np.zeros((3, 2)), np.zeros((3, 3))], r"sequence 1 of X has steps of shape \(3,\) but sequence 0 has \(2,\)"),
    ([np.zeros((3, 2)), np.array([[0.0, np.nan]])], "X contains NaN"),
    (np.array([[[0.0], [np.inf]]]), "X contains infinity"),
    ([np.zeros((3, 2)), np.zeros((3, 2, 1))], r"\(length, n_features\)"),
])
def test_bad_X_is_refused_with_a_clear_message(X, match):
    with pytest.raises(ValueError, match=match):
        SequenceClassifier(**TINY, max_epochs=1).fit(X, np.zeros(len(X) if len(X) else 1))


@pytest.mark.parametrize("valid_lengths, match", [
    ([3, 0], "valid_lengths must be positive"),
    ([3, 9], "valid_lengths must not exceed the padded length 4"),
    ([3], r"valid_lengths must have one entry per sequence \(2\), got 1"),
    ([[3, 3]], "valid_lengths must be a 1-D array"),
    ([2.5, 3], "valid_lengths must hold integers"),
])
def test_bad_valid_lengths_are_refused(valid_lengths, match):
    with pytest.raises(ValueError, match=match):
        SequenceClassifier(**TINY, max_epochs=1).fit(np.zeros((2, 4, 1)), [0, 1], valid_lengths=valid_lengths)


@pytest.mark.parametrize("lengths, match", [
    ([3, 2], r"lengths must sum to the number of samples in X \(6\), got sum 5"),
    ([6, 0], "lengths must be positive"),
    ([[3, 3]], "lengths must be a 1-D array"),
])
def test_bad_lengths_are_refused(lengths, match):
    with pytest.raises(ValueError, match=match):
        SequenceRegressor(**TINY, max_epochs=1).fit(np.zeros((6, 1)), [0.0, 1.0], lengths=lengths)


def test_lengths_and_valid_lengths_each_belong_to_their_form():
    with pytest.raises(ValueError, match="list of sequences, which carry their own lengths"):
        SequenceClassifier(**TINY).fit([np.zeros((2, 1))], [0], lengths=[2])
    with pytest.raises(ValueError, match="lengths= splits concatenated rows .* give the valid prefix of each row as "
                                         "valid_lengths="):
        SequenceClassifier(**TINY).fit(np.zeros((2, 3, 1)), [0, 1], lengths=[3, 3])
    with pytest.raises(ValueError, match="valid_lengths= applies to a padded"):
        SequenceClassifier(**TINY).fit(np.zeros((2, 1)), [0, 1], valid_lengths=[1, 1])
    with pytest.raises(ValueError, match="X holds 2 sequences but y has 3 entries"):
        SequenceClassifier(**TINY).fit(np.zeros((2, 1)), [0, 1, 1], lengths=[1, 1])


@pytest.mark.parametrize("X, match", [
    ([np.array([0, 1, 4])], r"tokens outside \[0, vocab_size=4\): min 0, max 4"),
    ([np.array([0, -1])], r"outside \[0, vocab_size=4\): min -1"),
    ([np.array([0.5, 1.0])], "integer tokens"),
    ([np.array([0.0, np.nan])], "NaN or infinity"),
    ([np.zeros((2, 2), dtype=int)], r"sequence 0 of X must be a \(length,\) array"),
    ([np.array([], dtype=int)], "empty"),
])
def test_bad_tokens_are_refused(X, match):
    with pytest.raises(ValueError, match=match):
        SequenceDensity(**TINY, vocab_size=4, max_epochs=1).fit(X)


_BAD = "The '{}' parameter of SequenceClassifier must be "


@pytest.mark.parametrize("params, match", [
    (dict(backbone="mambo"), _BAD.format("backbone") + r"a str among \{.*'gru'.*\} \(in any letter case\) or an "
     "instance of 'probkit.neural.backbones.Backbone'. Got 'mambo' instead"),
    (dict(backbone="transformer", d_model=10, backbone_kwargs={"n_heads": 4}), "n_heads=4 must divide d_model=10"),
    (dict(backbone="gru", backbone_kwargs={"n_heads": 4}), "backbone_kwargs="),
    (dict(backbone_kwargs=[("n_heads", 4)]), _BAD.format("backbone_kwargs") + "None or an instance of 'dict'"),
    (dict(d_model=0), _BAD.format("d_model") + r"an int in the range \[1, inf\). Got 0 instead"),
    (dict(d_model=True), _BAD.format("d_model") + r"an int in the range \[1, inf\). Got True instead"),
    (dict(d_model=8.0), _BAD.format("d_model") + r"an int in the range \[1, inf\). Got 8.0 instead"),
    (dict(n_layers=-1), _BAD.format("n_layers") + r"an int in the range \[1, inf\)"),
    (dict(pooling="median"), _BAD.format("pooling") + "a str among"),
    (dict(validation_fraction=1.0), _BAD.format("validation_fraction") + r"a float in the range \[0.0, 1.0\)"),
    (dict(lr=0), _BAD.format("lr") + r"a float in the range \(0.0, inf\)"),
    (dict(lr=float("inf")), _BAD.format("lr")),
    (dict(warmup=1.5), _BAD.format("warmup") + r"a float in the range \[0.0, 1.0\) or an int in the range \[0, inf\)"),
    (dict(vocab_size=0), _BAD.format("vocab_size") + r"None or an int in the range \[1, inf\)"),
    (dict(mixed_precision="yes"), _BAD.format("mixed_precision")),
    (dict(early_stopping="yes"), _BAD.format("early_stopping")),
    (dict(dtype=3), _BAD.format("dtype")),
])
def test_bad_parameters_are_refused_at_fit(params, match):
    seqs, y = sign_task(10)
    with pytest.raises(ValueError, match=match):
        SequenceClassifier(**{**TINY, "max_epochs": 1, **params}).fit(seqs, y)


def test_backbone_names_ignore_case_and_warmup_counts_steps():
    # valid spellings the constraints must keep accepting: a kind in any letter case, a warm-up in steps
    seqs, y = sign_task(12)
    kw = {**TINY, "max_epochs": 2, "early_stopping": False, "warmup": 2}
    upper = SequenceClassifier(**{**kw, "backbone": "GRU"}).fit(seqs, y)
    lower = SequenceClassifier(**kw).fit(seqs, y)
    np.testing.assert_array_equal(upper.predict_proba(seqs), lower.predict_proba(seqs))
    assert upper.n_iter_ == 2


def test_density_parameter_errors():
    X = ar_series(4, 5)
    with pytest.raises(ValueError, match="head='categorical' needs vocab_size"):
        SequenceDensity(**TINY, head="categorical").fit(X)
    with pytest.raises(ValueError, match="with vocab_size set use head='categorical'"):
        SequenceDensity(**TINY, head="mixture", vocab_size=3).fit([np.array([0, 1])])
    with pytest.raises(ValueError, match="needs a causal backbone"):
        SequenceDensity(backbone="transformer", d_model=8, n_layers=1, backbone_kwargs={"causal": False}).fit(X)
    with pytest.raises(ValueError, match=r"The 'window' parameter of SequenceDensity must be an int in the range \[1"):
        SequenceDensity(**TINY, vocab_size=3, window=0).fit(np.array([0, 1, 2]))


def test_predict_before_fit_names_the_estimator():
    for est, method in [(SequenceClassifier(), "predict"), (SequenceRegressor(), "predict"),
                        (SequenceDensity(), "score"), (SequenceDensity(), "sample")]:
        with pytest.raises(NotFittedError, match=type(est).__name__):
            getattr(est, method)(np.zeros((2, 3))) if method != "sample" else est.sample()


def test_feature_count_and_label_errors(fitted):
    clf, seqs, y = fitted["clf"], fitted["seqs"], fitted["y"]
    with pytest.raises(ValueError, match="X has 3 features, but SequenceClassifier is expecting 2 features"):
        clf.predict([np.zeros((4, 3))])
    with pytest.raises(ValueError, match="X holds 20 sequences but y has 19 entries"):
        clone(clf).fit(seqs, y[:-1])
    with pytest.raises(ValueError, match="Unknown label type"):
        clone(clf).fit(seqs, np.linspace(0, 1, 20))
    with pytest.raises(ValueError, match="requires y to be passed"):
        clone(clf).fit(seqs, None)


def test_generation_errors(fitted):
    lm = fitted["lm"]
    with pytest.raises(ValueError, match=r"prompt holds tokens outside \[0, vocab_size=4\)"):
        lm.generate(np.array([1, 7]), n_steps=2)
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        lm.generate(np.array([1]), n_steps=2, temperature=0)
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        lm.generate(np.array([1]), n_steps=0)
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        lm.sample(0)
    with pytest.raises(ValueError, match="prompt must be a 1-D token sequence"):
        lm.generate(np.zeros((1, 2, 3), dtype=int))
