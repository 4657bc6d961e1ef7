"""MaskedSequenceModel and BERT's masking: exact proportions, the loss against a hand-computed
cross-entropy, the pseudo-log-likelihood against a loop, learning a deterministic pattern."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from probkit.neural import MaskedSequenceModel
from probkit.neural.estimators.masked import bert_mask, masked_lm_loss


def _half_up(x):
    return int(np.floor(x + 0.5))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bert_mask_exact_counts(seed):
    lengths = np.array([1, 3, 5, 7, 20, 33, 100, 6])
    sel, msk, rnd = bert_mask(lengths, 110, generator=torch.Generator().manual_seed(seed))
    assert sel.shape == (8, 110)
    valid = np.arange(110)[None, :] < lengths[:, None]
    sel, msk, rnd = sel.numpy(), msk.numpy(), rnd.numpy()
    # per row: max(1, round(0.15 n)) positions, all inside the sequence
    assert sel.sum(1).tolist() == [max(1, _half_up(0.15 * n)) for n in lengths]
    assert not (sel & ~valid).any()
    # over the batch: exactly 80 % masked and 10 % random (rounded), the rest kept
    S = int(sel.sum())
    assert int(msk.sum()) == _half_up(0.8 * S) and int(rnd.sum()) == _half_up(0.1 * S)
    assert not (msk & ~sel).any() and not (rnd & ~sel).any() and not (msk & rnd).any()


def test_bert_mask_generator_and_options():
    lengths = [40, 17, 9]
    a = bert_mask(lengths, generator=torch.Generator().manual_seed(5))
    b = bert_mask(lengths, generator=torch.Generator().manual_seed(5))
    c = bert_mask(lengths, generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    sel, msk, rnd = bert_mask([4, 2], mask_prob=1.0, mask_token_prob=0.5, random_token_prob=0.5,
                              generator=torch.Generator().manual_seed(0))
    assert sel.tolist() == [[True] * 4, [True, True, False, False]]
    assert int(msk.sum()) == 3 and int(rnd.sum()) == 3


def test_bert_mask_positions_uniform():
    """Every position of a length-10 row is chosen with probability 2/10, masked with 0.8 of that."""
    g = torch.Generator().manual_seed(0)
    n = 3000
    sel, msk, rnd = bert_mask([10] * n, generator=g)
    counts = sel.sum(0).numpy()
    expected, sd = n * 0.2, np.sqrt(n * 0.2 * 0.8)
    assert np.all(np.abs(counts - expected) < 5 * sd)
    assert int(msk.sum()) == _half_up(0.8 * 2 * n)
    # the masked share is the same at every position (within binomial noise)
    share = msk.sum(0).numpy() / counts
    assert np.all(np.abs(share - 0.8) < 5 * np.sqrt(0.16 / counts))


@pytest.mark.parametrize(("kw", "match"), [
    ({"mask_prob": 1.5}, "mask_prob"), ({"mask_prob": True}, "mask_prob"), ({"mask_token_prob": -0.1}, "mask_token_prob"),
    ({"mask_token_prob": 0.8, "random_token_prob": 0.3}, "at most 1"),
])
def test_bert_mask_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        bert_mask([3], **kw)
    with pytest.raises(ValueError, match=match):
        MaskedSequenceModel(vocab_size=3, max_epochs=1, **kw).fit(np.zeros((2, 3), dtype=int))


def _fitted(backbone="transformer", **kw):
    X = np.random.RandomState(0).randint(0, 6, size=(8, 9))
    opts = dict(d_model=8, n_layers=1, vocab_size=6, max_epochs=2, early_stopping=False, random_state=0,
                dtype="float64")
    if backbone == "transformer":
        opts["backbone_kwargs"] = {"n_heads": 2}
    opts.update(kw)
    return MaskedSequenceModel(backbone=backbone, **opts).fit(X), X


@pytest.mark.parametrize("backbone", ["transformer", "gru"])
def test_loss_is_cross_entropy_on_selected_positions(backbone):
    model, _ = _fitted(backbone)
    net = model.module_
    x = torch.as_tensor(np.random.RandomState(1).randint(0, 6, size=(5, 11)))
    lengths = torch.tensor([11, 4, 7, 1, 9])
    opts = dict(vocab_size=6, mask_prob=0.3, mask_token_prob=0.6, random_token_prob=0.2)
    loss, n = masked_lm_loss(net, x, lengths, torch.Generator().manual_seed(3), **opts)
    # by hand: the same draws, the corrupted inputs, log-softmax at the chosen positions only
    g = torch.Generator().manual_seed(3)
    sel, msk, rnd = bert_mask(lengths, 11, mask_prob=0.3, mask_token_prob=0.6, random_token_prob=0.2, generator=g)
    inputs = x.clone()
    inputs[rnd] = torch.randint(6, (int(rnd.sum()),), generator=g)
    with torch.no_grad():
        logits = net(inputs, lengths, msk).numpy()
    rows, cols = np.nonzero(sel.numpy())
    targets = x.numpy()[rows, cols]
    ce = np.mean(logsumexp(logits[rows, cols], axis=-1) - logits[rows, cols, targets])
    assert n == len(rows) == sum(max(1, _half_up(0.3 * int(m))) for m in lengths)
    assert float(loss.detach()) == pytest.approx(ce, abs=1e-12)
    # the loss ignores the targets outside the chosen positions: a cross-entropy over all
    # valid positions is a different number
    valid = np.arange(11)[None, :] < lengths.numpy()[:, None]
    r2, c2 = np.nonzero(valid)
    ce_all = np.mean(logsumexp(logits[r2, c2], -1) - logits[r2, c2, x.numpy()[r2, c2]])
    assert abs(ce_all - ce) > 1e-6


def test_masked_inputs_use_the_mask_vector():
    """The [MASK] input is one learned vector: the output does not depend on the token under it."""
    model, _ = _fitted()
    x = torch.tensor([[1, 2, 3, 4]])
    masked = torch.tensor([[False, True, False, False]])
    with torch.no_grad():
        a = model.module_(x, None, masked)
        b = model.module_(torch.tensor([[1, 5, 3, 4]]), None, masked)
        c = model.module_(torch.tensor([[1, 5, 3, 4]]), None, None)
    assert torch.equal(a, b) and not torch.allclose(a, c)


@pytest.mark.parametrize("backbone", ["transformer", "gru"])
def test_pseudo_log_likelihood_against_loop(backbone):
    model, _ = _fitted(backbone)
    seqs = [np.array([1, 4, 2, 0, 5]), np.array([3]), np.array([2, 2, 1])]
    pll = model.score_samples(seqs)
    expected = []
    for s in seqs:
        total = 0.0
        for t in range(len(s)):
            masked = torch.zeros(1, len(s), dtype=torch.bool)
            masked[0, t] = True
            with torch.no_grad():
                logits = model.module_(torch.as_tensor(s)[None], None, masked)[0, t].numpy()
            total += logits[s[t]] - logsumexp(logits)
        expected.append(total)
    np.testing.assert_allclose(pll, expected, rtol=0, atol=1e-10)
    assert model.score(seqs) == pytest.approx(sum(expected) / 9, abs=1e-10)


def _counting(n, length, vocab, seed):
    return (np.random.RandomState(seed).randint(0, vocab, size=(n, 1)) + np.arange(length)) % vocab


@pytest.mark.parametrize("backbone", ["transformer", "gru"])
def test_learns_counting_pattern_in_both_directions(backbone):
    """Tokens count modulo 7 from a random start: a hidden token follows from either neighbour;
    the first one only from the right (a causal backbone needs its reversed twin)."""
    kw = {"backbone_kwargs": {"n_heads": 2}} if backbone == "transformer" else {}
    model = MaskedSequenceModel(backbone=backbone, d_model=32, n_layers=1, vocab_size=7, max_epochs=60, lr=1e-2,
                                mask_prob=0.2, early_stopping=False, random_state=0, **kw)
    model.fit(_counting(96, 12, 7, seed=0))
    X = _counting(40, 12, 7, seed=1)
    hide = np.random.RandomState(2).rand(*X.shape) < 0.15
    hide[:, 0] = True  # no left context
    filled = model.fill_mask(X, hide)
    assert np.array_equal(filled[~hide], X[~hide])
    assert np.mean(filled[hide] == X[hide]) >= 0.95
    assert np.mean(filled[:, 0] == X[:, 0]) >= 0.95
    # pseudo-log-likelihood: near 0 on the pattern, far below on shuffled tokens
    shuffled = np.random.RandomState(3).permutation(X.ravel()).reshape(X.shape)
    assert model.score(X) > -0.3 > -1.0 > model.score(shuffled)


def test_fill_mask_layouts_and_errors():
    model, _ = _fitted()
    seqs = [np.array([1, 2, 3]), np.array([4, 5])]
    out = model.fill_mask(seqs, [np.array([False, True, False]), np.array([False, False])])
    assert [o.tolist()[0] for o in out] == [1, 4] and out[0][2] == 3 and out[1].tolist() == [4, 5]
    padded = np.array([[1, 2, 3], [4, 5, 0]])
    flags = np.array([[False, True, False], [False, False, True]])  # the flag past length 2 is ignored
    res = model.fill_mask(padded, flags, valid_lengths=[3, 2])
    assert res.shape == (2, 3) and res[1].tolist() == [4, 5, 0]
    assert res[0, 1] == out[0][1]
    long = np.arange(20) % 6
    filled = model.fill_mask(long, np.arange(20) % 5 == 0)
    assert filled.shape == (20,) and np.array_equal(filled[np.arange(20) % 5 != 0], long[np.arange(20) % 5 != 0])
    with pytest.raises(ValueError, match="mask must be a boolean"):
        model.fill_mask(padded, flags.astype(int))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 3\)"):
        model.fill_mask(padded, flags[:, :2])
    with pytest.raises(ValueError, match="mask must be a list of 2"):
        model.fill_mask(seqs, flags)
    with pytest.raises(ValueError, match=r"mask\[1\] must have shape \(2,\)"):
        model.fill_mask(seqs, [np.array([True, False, False]), np.array([True])])
    with pytest.raises(ValueError, match="head='gaussian' models real values"):
        MaskedSequenceModel(vocab_size=3, head="gaussian").fit(padded % 3)


def test_real_valued_fill_mask_recovers_a_linear_pattern():
    """Real frames x_t = (c + t, -(c + t)): the mean of a hidden frame follows from its neighbours."""
    rng = np.random.RandomState(0)
    start = rng.uniform(-2, 2, size=(128, 1))
    ramp = start + 0.25 * np.arange(10)
    X = np.stack([ramp, -ramp], -1)
    model = MaskedSequenceModel(backbone="gru", d_model=32, n_layers=1, max_epochs=60, lr=1e-2,
                                early_stopping=False, random_state=0).fit(X)
    assert model.head_ == "gaussian" and model.n_features_in_ == 2
    hide = np.zeros(X.shape[:2], dtype=bool)
    hide[:, 4] = True
    filled = model.fill_mask(X[:16], hide[:16])
    assert np.array_equal(filled[:, :4], X[:16, :4])
    spread = X[:16, 4].std()
    assert np.sqrt(np.mean((filled[:, 4] - X[:16, 4]) ** 2)) < 0.2 * spread


def test_save_load_round_trip_and_keyword_lengths(tmp_path):
    import probkit

    model, X = _fitted("gru")
    again = probkit.load(model.save(tmp_path / "mlm.pk"))
    assert type(again) is MaskedSequenceModel and again.get_params() == model.get_params()
    np.testing.assert_array_equal(again.score_samples(X), model.score_samples(X))
    flags = np.zeros(X.shape, dtype=bool)
    flags[:, ::3] = True
    np.testing.assert_array_equal(again.fill_mask(X, flags), model.fill_mask(X, flags))
    # lengths go by keyword: a positional second argument that is not one value per row is refused
    with pytest.raises(TypeError, match="pass sequence lengths by keyword"):
        model.score(X, [40, 32])
    with pytest.raises(TypeError, match="lengths"):
        model.fit(X, [40, 32])
    with pytest.raises(TypeError):
        model.score_samples(X, [9] * 8)
    np.testing.assert_allclose(model.score_samples(X, valid_lengths=[9] * 8), model.score_samples(X))
