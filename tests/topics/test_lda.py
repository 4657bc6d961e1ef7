"""LatentDirichletAllocation against scikit-learn's on the same data and random state.

probkit reproduces scikit-learn's initialisation (``components_`` and every training
E-step's ``gamma`` drawn from Gamma(100, 1/100) in the same order), so the fits must agree
to 1e-6: relative to the largest value for the topic pseudo-counts and the document-topic
matrices, relative for the perplexity and the bound. The only difference is the digamma
function, which scikit-learn approximates (an asymptotic series cut after the x^-6 term,
error up to ~3e-9) and probkit evaluates to ~1e-15; carried through the EM iterations it
moves the smallest pseudo-counts by a few 1e-6 of their own size. (With scikit-learn's
approximation substituted, the two implementations agreed to 4e-13 on the Python-docs
corpus, 5 topics and 5 iterations.)
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition import LatentDirichletAllocation as SkLDA

import probkit
from probkit import LatentDirichletAllocation
from probkit.topics import python_doc_topics

RTOL = 1e-6


def _synthetic_corpus(n_docs=60, n_words=30, n_topics=3, seed=0):
    rng = np.random.RandomState(seed)
    topics = rng.dirichlet(np.full(n_words, 0.2), size=n_topics)
    theta = rng.dirichlet(np.full(n_topics, 0.5), size=n_docs)
    lengths = rng.poisson(50, size=n_docs) + 1
    return np.vstack([rng.multinomial(n, t @ topics) for n, t in zip(lengths, theta)]).astype(float)


X_SMALL = _synthetic_corpus()
X_DOCS, _, _ = python_doc_topics()


def _close(ours, theirs):
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=RTOL * np.abs(theirs).max())


def _assert_same_fit(ours, theirs, X):
    _close(ours.components_, theirs.components_)
    _close(ours.exp_dirichlet_component_, theirs.exp_dirichlet_component_)
    _close(ours.transform(X), theirs.transform(X))
    _close(ours.transform(X, normalize=False), theirs.transform(X, normalize=False))
    assert ours.perplexity(X) == pytest.approx(theirs.perplexity(X), rel=RTOL)
    assert ours.score(X) == pytest.approx(theirs.score(X), rel=RTOL)
    assert ours.bound_ == pytest.approx(theirs.bound_, rel=RTOL)
    assert (ours.n_iter_, ours.n_batch_iter_) == (theirs.n_iter_, theirs.n_batch_iter_)
    assert ours.doc_topic_prior_ == theirs.doc_topic_prior_ and ours.topic_word_prior_ == theirs.topic_word_prior_


@pytest.mark.parametrize("sparse", [False, True])
def test_batch_cavi_equals_scikit_learn(sparse):
    X = sp.csr_matrix(X_SMALL) if sparse else X_SMALL
    kw = dict(n_components=3, max_iter=15, random_state=0)
    _assert_same_fit(LatentDirichletAllocation(**kw).fit(X), SkLDA(**kw).fit(X), X)


def test_batch_cavi_equals_scikit_learn_on_python_docs():
    kw = dict(n_components=6, max_iter=10, doc_topic_prior=0.3, topic_word_prior=0.05, random_state=1)
    _assert_same_fit(LatentDirichletAllocation(**kw).fit(X_DOCS), SkLDA(**kw).fit(X_DOCS), X_DOCS)


def test_online_svi_equals_scikit_learn():
    kw = dict(n_components=3, learning_method="online", batch_size=16, max_iter=6, learning_offset=5.0,
              learning_decay=0.6, random_state=2)
    ours, theirs = LatentDirichletAllocation(**kw).fit(X_SMALL), SkLDA(**kw).fit(X_SMALL)
    _assert_same_fit(ours, theirs, X_SMALL)
    assert ours.perplexity(X_SMALL[:20], sub_sampling=True) == pytest.approx(
        theirs.perplexity(X_SMALL[:20], sub_sampling=True), rel=RTOL)


def test_partial_fit_equals_scikit_learn():
    kw = dict(n_components=3, batch_size=10, total_samples=500, random_state=3)
    ours, theirs = LatentDirichletAllocation(**kw), SkLDA(**kw)
    for chunk in (X_SMALL[:25], X_SMALL[25:], X_SMALL[10:40]):
        ours.partial_fit(chunk)
        theirs.partial_fit(chunk)
    _close(ours.components_, theirs.components_)
    _close(ours.transform(X_SMALL), theirs.transform(X_SMALL))
    assert ours.n_batch_iter_ == theirs.n_batch_iter_


def test_evaluate_every_stops_as_scikit_learn_does():
    kw = dict(n_components=3, max_iter=50, evaluate_every=2, perp_tol=0.5, random_state=4)
    ours, theirs = LatentDirichletAllocation(**kw).fit(X_SMALL), SkLDA(**kw).fit(X_SMALL)
    assert ours.n_iter_ == theirs.n_iter_ < 50
    _close(ours.components_, theirs.components_)


def test_weighted_non_integer_counts_as_scikit_learn():
    X = X_SMALL * np.random.RandomState(5).uniform(0.2, 1.5, size=X_SMALL.shape[1])  # tf-idf-like weights
    kw = dict(n_components=3, max_iter=8, random_state=5)
    _assert_same_fit(LatentDirichletAllocation(**kw).fit(X), SkLDA(**kw).fit(X), X)


def test_empty_documents_as_scikit_learn():
    X = X_SMALL.copy()
    X[[3, 7, 8]] = 0.0
    kw = dict(n_components=3, max_iter=8, random_state=6)
    ours = LatentDirichletAllocation(**kw).fit(X)
    _assert_same_fit(ours, SkLDA(**kw).fit(X), X)
    np.testing.assert_allclose(ours.transform(X[[3]]), [[1 / 3, 1 / 3, 1 / 3]], rtol=1e-12)
    np.testing.assert_allclose(ours.transform(X[[3]], normalize=False), [[1 / 3, 1 / 3, 1 / 3]], rtol=1e-12)
    with pytest.raises(ValueError, match="at least one word"):
        ours.perplexity(np.zeros((2, X.shape[1])))


def test_heldout_perplexity_on_python_docs_is_no_worse_than_scikit_learn():
    test = np.arange(X_DOCS.shape[0]) % 4 == 0
    train_X, test_X = X_DOCS[~test], X_DOCS[test]
    for method in ("batch", "online"):
        kw = dict(n_components=8, learning_method=method, max_iter=10, batch_size=16, random_state=7)
        ours, theirs = LatentDirichletAllocation(**kw).fit(train_X), SkLDA(**kw).fit(train_X)
        assert ours.perplexity(test_X) <= theirs.perplexity(test_X) * (1 + RTOL)


def test_batch_cavi_bound_never_decreases():
    # Local steps run to convergence, so each batch iteration is an exact coordinate-ascent step.
    kw = dict(n_components=3, mean_change_tol=1e-10, max_doc_update_iter=5000, random_state=8)
    scores = [LatentDirichletAllocation(max_iter=t, **kw).fit(X_SMALL).score(X_SMALL) for t in range(1, 13)]
    assert np.all(np.diff(scores) >= -1e-9 * np.abs(scores[1:]))
    assert scores[-1] > scores[0]


def test_threads_do_not_change_the_result():
    kw = dict(n_components=3, max_iter=5, random_state=9)
    one = LatentDirichletAllocation(**kw).fit(X_SMALL)
    two = LatentDirichletAllocation(n_jobs=2, **kw).fit(X_SMALL)
    np.testing.assert_allclose(two.components_, one.components_, rtol=1e-12)
    np.testing.assert_allclose(two.transform(X_SMALL), one.transform(X_SMALL), rtol=1e-12)


def test_dtype_of_transform_follows_the_input():
    lda = LatentDirichletAllocation(n_components=2, max_iter=3, random_state=0).fit(X_SMALL.astype(np.float32))
    assert lda.transform(X_SMALL.astype(np.float32)).dtype == np.float32
    assert lda.transform(X_SMALL).dtype == np.float64
    assert list(lda.get_feature_names_out()) == ["latentdirichletallocation0", "latentdirichletallocation1"]


def test_clear_errors():
    lda = LatentDirichletAllocation(n_components=2, max_iter=2, random_state=0)
    bad = X_SMALL.copy()
    bad[0, 0] = -1.0
    with pytest.raises(ValueError, match="Negative values in data passed to LatentDirichletAllocation.fit"):
        lda.fit(bad)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lda.fit(bad)
    lda.fit(X_SMALL)
    with pytest.raises(ValueError, match="30 features"):  # another vocabulary
        lda.transform(X_SMALL[:, :20])
    with pytest.raises(ValueError, match="Negative values in data passed to LatentDirichletAllocation.transform"):
        lda.transform(-X_SMALL)
    for params in [dict(learning_method="gibbs"), dict(n_components=0), dict(n_components=True),
                   dict(learning_offset=0.5), dict(learning_decay=1.5), dict(batch_size=0), dict(doc_topic_prior=-1.0),
                   dict(topic_word_prior=np.inf), dict(n_jobs=0), dict(n_jobs=True), dict(evaluate_every=1.0),
                   dict(total_samples=0), dict(perp_tol=np.nan), dict(max_doc_update_iter=-1)]:
        (name, _), = params.items()
        for method in ("fit", "partial_fit", "fit_transform"):
            with pytest.raises(ValueError, match=f"The '{name}' parameter of LatentDirichletAllocation must be"):
                getattr(LatentDirichletAllocation(**params), method)(X_SMALL)


def test_feature_names_must_match():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X_SMALL, columns=[f"w{i}" for i in range(X_SMALL.shape[1])])
    lda = LatentDirichletAllocation(n_components=2, max_iter=2, random_state=0).fit(frame)
    renamed = frame.rename(columns={"w0": "zz"})
    with pytest.raises(ValueError, match="feature names"):
        lda.transform(renamed)


@pytest.mark.parametrize("method", ["batch", "online"])
def test_save_and_load_round_trip(method, tmp_path):
    lda = LatentDirichletAllocation(n_components=3, learning_method=method, max_iter=3, batch_size=20,
                                    random_state=0).fit(X_SMALL)
    again = probkit.load(lda.save(tmp_path / "lda.pk"))
    assert type(again) is LatentDirichletAllocation and again.get_params() == lda.get_params()
    np.testing.assert_array_equal(again.components_, lda.components_)
    np.testing.assert_array_equal(again.transform(X_SMALL), lda.transform(X_SMALL))
    assert again.score(X_SMALL) == lda.score(X_SMALL) and again.bound_ == lda.bound_
    # online learning continues identically after loading (the random state travels with the model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lda.partial_fit(X_SMALL[:30])
        again.partial_fit(X_SMALL[:30])
    np.testing.assert_array_equal(again.components_, lda.components_)


def test_load_refuses_invalid_topics(tmp_path):
    from probkit.io import ModelFileError, dumps, loads

    lda = LatentDirichletAllocation(n_components=2, max_iter=2, random_state=0).fit(X_SMALL)
    lda.components_ = -lda.components_
    with pytest.raises(ModelFileError, match="components_"):
        loads(dumps(lda))
