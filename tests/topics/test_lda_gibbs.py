"""Collapsed Gibbs sampling of LDA: exact posterior on a tiny corpus, recovery of known topics,
agreement with variational Bayes.

Truths: enumeration of every topic assignment of a 6-token corpus with theta and beta
integrated out (Dirichlet-multinomial marginals written out here); topics of a corpus
drawn from a known LDA, matched by the Hungarian algorithm (scipy); the CAVI fit of the same
corpus (itself checked against scikit-learn in test_lda.py).
"""

import itertools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.special import gammaln

import probkit
from probkit import CollapsedGibbsLDA, LatentDirichletAllocation
from probkit.vi import gibbs_lda, mcse


def _log_dm(counts, prior):
    counts = np.asarray(counts, dtype=float)
    total = prior * counts.shape[-1]
    return (gammaln(total) - gammaln(total + counts.sum(-1)) + (gammaln(prior + counts) - gammaln(prior)).sum(-1))


def test_log_likelihood_trace_matches_the_enumerated_posterior():
    docs = [[0, 0, 1], [1, 2, 2]]          # word ids of the tokens of two documents
    X = np.array([[2, 1, 0], [0, 1, 2]])
    alpha, beta, k = 0.5, 0.3, 2
    tokens = [(d, w) for d, ws in enumerate(docs) for w in ws]
    logps, log_w = [], []
    for z in itertools.product(range(k), repeat=len(tokens)):
        n_dk = np.zeros((2, k))
        n_kw = np.zeros((k, 3))
        for (d, w), t in zip(tokens, z):
            n_dk[d, t] += 1
            n_kw[t, w] += 1
        lw = _log_dm(n_kw, beta).sum()
        logps.append(_log_dm(n_dk, alpha).sum() + lw)   # log p(w, z), theta and beta integrated out
        log_w.append(lw)
    p = np.exp(np.array(logps) - max(logps))
    p /= p.sum()
    exact = float(p @ np.array(log_w))               # E[log p(w | z) | w]
    res = gibbs_lda(X, k, doc_topic_prior=alpha, topic_word_prior=beta, n_samples=3000, warmup=50, n_chains=2,
                    random_state=0)
    trace = res.samples["log_likelihood"]
    assert abs(trace.mean() - exact) < 3 * mcse(trace)
    assert res.rhat("log_likelihood") < 1.01


def _known_lda(seed=0, n_docs=150, n_words=40, n_topics=4, length=60):
    rng = np.random.RandomState(seed)
    topics = rng.dirichlet(np.full(n_words, 0.1), size=n_topics)
    theta = rng.dirichlet(np.full(n_topics, 0.3), size=n_docs)
    X = np.vstack([rng.multinomial(length, t @ topics) for t in theta])
    return X, topics, theta


def _matched(reference, topics):
    cost = np.abs(reference[:, None, :] - topics[None, :, :]).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def test_gibbs_recovers_known_topics_and_agrees_with_cavi():
    X, true_topics, true_theta = _known_lda()
    gibbs = CollapsedGibbsLDA(n_components=4, doc_topic_prior=0.3, topic_word_prior=0.1, n_samples=400, warmup=300,
                              random_state=0).fit(X)
    perm = _matched(true_topics, gibbs.topic_word_)
    l1 = np.abs(gibbs.topic_word_[perm] - true_topics).sum(1)
    assert l1.max() < 0.25                        # each topic within 0.25 in total variation x 2
    theta_err = np.abs(gibbs.doc_topic_[:, perm] - true_theta).mean()
    assert theta_err < 0.06
    assert gibbs.rhat_ < 1.05

    # CAVI climbs to a local optimum of the bound: of five starts, keep the highest bound.
    fits = [LatentDirichletAllocation(n_components=4, doc_topic_prior=0.3, topic_word_prior=0.1, max_iter=100,
                                      mean_change_tol=1e-6, random_state=seed).fit(X) for seed in range(5)]
    cavi = max(fits, key=lambda f: f.score(X))
    cavi_topics = cavi.components_ / cavi.components_.sum(1, keepdims=True)
    perm_c = _matched(gibbs.topic_word_, cavi_topics)
    # The two posterior means: topics within 0.01 per word probability, document proportions
    # within 0.01 on average (the mean-field posterior is narrower, its mean nearly the same).
    assert np.abs(cavi_topics[perm_c] - gibbs.topic_word_).max() < 0.01
    assert np.abs(cavi.transform(X)[:, perm_c] - gibbs.doc_topic_).mean() < 0.01
    # the variational E-step at the Gibbs topics gives a bound close to CAVI's own
    assert gibbs.perplexity(X) == pytest.approx(cavi.perplexity(X), rel=0.02)


def test_chains_are_aligned_before_averaging():
    X, true_topics, _ = _known_lda(seed=1, n_docs=80)
    res = gibbs_lda(X, 4, doc_topic_prior=0.3, topic_word_prior=0.1, n_samples=60, warmup=100, n_chains=3,
                    random_state=1)
    est = CollapsedGibbsLDA(n_components=4, doc_topic_prior=0.3, topic_word_prior=0.1, n_samples=60, warmup=100,
                            n_chains=3, random_state=1)
    # the estimator draws its chains from the same seed sequence as gibbs_lda(random_state=RandomState(1))
    est.fit(X)
    chains = res.extras["topic_word"]
    for c in range(3):
        perm = _matched(est.topic_word_, chains[c])
        assert np.abs(chains[c][perm] - est.topic_word_).max() < 0.05
    np.testing.assert_allclose(est.components_, 0.1 + np.mean(
        [res.extras["topic_word_counts"][c][_matched(chains[0], chains[c])] for c in range(3)], axis=0), rtol=1e-12)


def test_integer_counts_are_required():
    X = np.array([[1.5, 2.0], [0.0, 3.0]])
    with pytest.raises(ValueError, match="integer word counts"):
        CollapsedGibbsLDA(n_components=2).fit(X)
    with pytest.raises(ValueError, match="integer word counts"):
        gibbs_lda(X, 2)
    with pytest.raises(ValueError, match="no words"):
        gibbs_lda(np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="Negative values"):
        CollapsedGibbsLDA(n_components=2).fit(-np.ones((2, 2)))


@pytest.mark.parametrize("params", [dict(n_samples=0), dict(warmup=-1), dict(thin=True), dict(n_chains=1.0),
                                    dict(n_components=0), dict(doc_topic_prior=0.0)])
def test_sampler_options_are_checked_by_fit(params):
    (name, _), = params.items()
    with pytest.raises(ValueError, match=f"The '{name}' parameter of CollapsedGibbsLDA must be"):
        CollapsedGibbsLDA(**params).fit(np.ones((3, 4)))


def test_save_and_load_round_trip(tmp_path):
    X, _, _ = _known_lda(seed=2, n_docs=30, n_words=12, n_topics=2, length=20)
    est = CollapsedGibbsLDA(n_components=2, n_samples=20, warmup=20, random_state=0).fit(X)
    again = probkit.load(est.save(tmp_path / "gibbs.pk"))
    assert again.get_params() == est.get_params()
    for name in ("components_", "topic_word_", "doc_topic_", "log_likelihood_trace_"):
        np.testing.assert_array_equal(getattr(again, name), getattr(est, name))
    np.testing.assert_array_equal(again.transform(X), est.transform(X))
    assert again.rhat_ == est.rhat_
