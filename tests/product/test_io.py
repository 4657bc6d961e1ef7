"""Save/load: exact round trips for every estimator, and refusal of bad files."""

import io
import json
import os
import pickle
import stat
import warnings
import zipfile

import numpy as np
import pytest
import torch

import probkit
from probkit import (ARHMM, GMMHMM, HMM, HSMM, BayesianGaussianMixture, BayesianMixture, CategoricalHMM, GaussianHMM,
                     GaussianMixture, InputDrivenHMM, LinearGaussianSSM, MixtureModel, MultinomialHMM, PoissonHMM,
                     VariationalHMM)
from probkit.base import ProbkitEstimator
from probkit.distributions import Gamma, Independent, MultivariateNormal, Normal, Poisson
from probkit.io import FORMAT_VERSION, ModelFileError, dumps, load, loads, register_estimator, register_type, save

RNG = np.random.RandomState(0)
X_REAL = np.r_[RNG.normal(0, 1, (40, 2)), RNG.normal(4, 1, (40, 2))]
X_POS = np.abs(X_REAL) + 0.1
X_COUNTS = RNG.poisson(3, size=(80, 3)).astype(float)
X_SYMBOLS = RNG.randint(0, 4, size=(80, 1))
X_TRIALS = RNG.multinomial(10, [0.2, 0.3, 0.5], size=80).astype(float)

CASES = {
    "gmm-full": (lambda: GaussianMixture(2, random_state=0), X_REAL),
    "gmm-tied-f32": (lambda: GaussianMixture(2, covariance_type="tied", dtype="float32", random_state=0), X_REAL),
    "gmm-spherical-init": (lambda: GaussianMixture(2, covariance_type="spherical", weights_init=[0.5, 0.5],
                                                   means_init=[[0, 0], [4, 4]], random_state=0), X_REAL),
    "mixture-poisson-product": (lambda: MixtureModel("poisson", 2, random_state=0), X_COUNTS),
    "mixture-listed": (lambda: MixtureModel(components=[Normal(), Gamma()], random_state=0), X_POS[:, :1]),
    "mixture-mvn-instance": (lambda: MixtureModel(MultivariateNormal(covariance_type="diag"), 2,
                                                  random_state=np.random.RandomState(1)), X_REAL),
    "gaussian-hmm": (lambda: GaussianHMM(2, random_state=0), X_REAL),
    "gaussian-hmm-full-scaling": (lambda: GaussianHMM(2, covariance_type="full", implementation="scaling",
                                                      transmat_prior=np.array([2.0, 1.0]), random_state=0), X_REAL),
    "gmm-hmm": (lambda: GMMHMM(2, n_mix=2, random_state=0), X_REAL),
    "categorical-hmm": (lambda: CategoricalHMM(2, random_state=0), X_SYMBOLS),
    "multinomial-hmm": (lambda: MultinomialHMM(2, n_trials=10, random_state=0), X_TRIALS),
    "poisson-hmm": (lambda: PoissonHMM(2, random_state=0), X_COUNTS),
    "hmm-gamma-class": (lambda: HMM(emission=Gamma, n_components=2, random_state=0), X_POS),
    "hmm-poisson-name": (lambda: HMM(emission="poisson", n_components=2, random_state=0), X_COUNTS),
    "bayesian-gmm-dp": (lambda: BayesianGaussianMixture(n_components=3, random_state=0), X_REAL),
    "bayesian-gmm-diag": (lambda: BayesianGaussianMixture(n_components=2, covariance_type="diag",
                                                          weight_concentration_prior_type="dirichlet_distribution",
                                                          random_state=0), X_REAL),
    "bayesian-mixture-poisson": (lambda: BayesianMixture(family="poisson", n_components=3, random_state=0), X_COUNTS),
    "variational-hmm-gaussian": (lambda: VariationalHMM(2, emission="gaussian", random_state=0), X_REAL),
    "variational-hmm-categorical": (lambda: VariationalHMM(2, emission="categorical", random_state=0), X_SYMBOLS),
    "linear-gaussian-ssm": (lambda: LinearGaussianSSM(2, observation_covariance_type="full", random_state=0), X_REAL),
    "hsmm-negative-binomial": (lambda: HSMM(emission="gaussian", n_components=2, duration="negative_binomial",
                                            max_duration=10, random_state=0), X_REAL),
    "arhmm-order-2": (lambda: ARHMM(2, order=2, random_state=0), X_REAL),
    # without inputs every regression is intercept-only (inputs round trips: tests/hmm/test_input_driven.py)
    "input-driven-hmm": (lambda: InputDrivenHMM(2, n_iter=5, random_state=0), X_REAL),
}


def _fit(name):
    make, X = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make().fit(X), X


def _public_state(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}


def _assert_same(a, b):
    if isinstance(a, np.ndarray) or isinstance(a, torch.Tensor):
        assert type(a) is type(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert np.asarray(a).dtype == np.asarray(b).dtype
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif hasattr(a, "torch_params") and getattr(a, "is_fitted", False):
        assert type(a) is type(b)
        _assert_same(a.params, b.params)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif hasattr(a, "history"):
        assert a.history == b.history and a.iter == b.iter and a.tol == b.tol
    elif hasattr(a, "dist") or hasattr(a, "dists"):
        _assert_same(getattr(a, "dist", None) or a.dists, getattr(b, "dist", None) or b.dists)
    else:
        assert a == b or (a != a and b != b)


@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_is_exact(name, tmp_path):
    est, X = _fit(name)
    path = est.save(tmp_path / "model.pk")
    again = probkit.load(path)
    assert type(again) is type(est)
    assert again.get_params().keys() == est.get_params().keys()
    for key, value in est.get_params().items():
        if not isinstance(value, (np.ndarray, list, ProbkitEstimator, np.random.RandomState)) and \
                not hasattr(value, "_options"):
            assert again.get_params()[key] == value
    _assert_same(_public_state(est), _public_state(again))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    if hasattr(est, "predict_proba"):  # not a state-space model's (its states are continuous)
        np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(again.score_samples(X), est.score_samples(X))
    assert again.score(X) == est.score(X)
    s1, s2 = est.sample(5, random_state=3), again.sample(5, random_state=3)
    np.testing.assert_array_equal(s1[0], s2[0])
    np.testing.assert_array_equal(s1[1], s2[1])


def _neural_cases():
    from probkit.neural import MaskedSequenceModel, SequenceClassifier, SequenceDensity, SequenceRegressor

    rng = np.random.RandomState(0)
    seqs = [rng.normal(size=(rng.randint(2, 7), 2)) for _ in range(24)]
    labels = np.array(["a", "b", "c"])[np.arange(24) % 3]
    tokens = [rng.randint(0, 5, size=rng.randint(2, 9)) for _ in range(16)]
    kw = dict(backbone="gru", d_model=8, n_layers=1, max_epochs=3, random_state=0)
    return {
        "sequence-classifier": (lambda: SequenceClassifier(**kw, bidirectional=True), seqs, labels),
        "sequence-classifier-tokens": (lambda: SequenceClassifier(**kw, vocab_size=5, pooling="last"), tokens,
                                       np.arange(16) % 2),
        "sequence-regressor-gaussian": (lambda: SequenceRegressor(**kw, loss="gaussian"), seqs,
                                        rng.normal(size=(24, 2))),
        "sequence-density-tokens": (lambda: SequenceDensity(**kw, vocab_size=5), tokens, None),
        "sequence-density-mixture": (lambda: SequenceDensity(**kw, head="mixture", n_components=2,
                                                             dtype="float64"), seqs, None),
        "masked-sequence-model-tokens": (lambda: MaskedSequenceModel(**kw, vocab_size=5), tokens, None),
        "masked-sequence-model-gaussian": (lambda: MaskedSequenceModel(**kw), seqs, None),
    }


NEURAL_CASES = sorted(_neural_cases())


@pytest.mark.parametrize("name", NEURAL_CASES)
def test_neural_round_trip_is_exact(name, tmp_path):
    make, X, y = _neural_cases()[name]
    est = make().fit(X, y) if y is not None else make().fit(X)
    again = probkit.load(est.save(tmp_path / "net.pk"))
    assert type(again) is type(est) and again.get_params() == est.get_params()
    for key, value in _public_state(est).items():
        if key != "module_":
            _assert_same(value, getattr(again, key))
    for (k1, v1), (k2, v2) in zip(est.module_.state_dict().items(), again.module_.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2) and v1.dtype == v2.dtype
    assert "torch/module_.pt" in zipfile.ZipFile(tmp_path / "net.pk").namelist()
    if y is not None:
        np.testing.assert_array_equal(again.predict(X), est.predict(X))
        assert again.score(X, y) == est.score(X, y)
    else:
        np.testing.assert_array_equal(again.score_samples(X), est.score_samples(X))
    if hasattr(est, "sample"):
        np.testing.assert_array_equal(again.sample(3, n_steps=4, random_state=1),
                                      est.sample(3, n_steps=4, random_state=1))
    if hasattr(est, "fill_mask"):
        flags = [np.arange(len(x)) % 2 == 0 for x in X]
        for a, b in zip(again.fill_mask(X, flags), est.fill_mask(X, flags)):
            np.testing.assert_array_equal(a, b)
    if hasattr(est, "predict_proba"):
        np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    if getattr(est, "loss", None) == "gaussian":
        np.testing.assert_array_equal(again.predict(X, return_std=True)[1], est.predict(X, return_std=True)[1])


def _latent_neural_cases():
    """Neural latent-variable models: ``(make, X, lengths)``."""
    from probkit.neural import DeepStateSpaceModel, NeuralHMM

    rng = np.random.RandomState(0)
    kw = dict(backbone="gru", d_model=8, n_layers=1, max_epochs=3, random_state=0)
    return {
        "neural-hmm-gaussian": (lambda: NeuralHMM(2, neural_transitions=True, **kw), X_REAL, [30, 50]),
        "neural-hmm-poisson-f64": (lambda: NeuralHMM(2, emission="poisson", dtype="float64", **kw), X_COUNTS,
                                   [40, 40]),
        "neural-hmm-categorical": (lambda: NeuralHMM(2, emission="categorical", init="random", **kw),
                                   rng.randint(0, 4, size=(40, 1)), None),
        "deep-ssm-latent-backbone": (lambda: DeepStateSpaceModel(2, backbone="gru", d_model=8, hidden_dim=8,
                                                                 max_epochs=3, random_state=0), X_REAL, [30, 50]),
        "deep-ssm-poisson": (lambda: DeepStateSpaceModel(1, emission="poisson", d_model=8, hidden_dim=8,
                                                         max_epochs=3, random_state=0), X_COUNTS, None),
    }


@pytest.mark.parametrize("name", sorted(_latent_neural_cases()))
def test_neural_latent_round_trip_is_exact(name, tmp_path):
    make, X, lengths = _latent_neural_cases()[name]
    est = make().fit(X, lengths=lengths)
    if not hasattr(est, "predict"):     # DeepStateSpaceModel
        return _check_deep_ssm_round_trip(est, X, lengths, tmp_path)
    again = probkit.load(est.save(tmp_path / "lvm.pk"))
    assert type(again) is type(est) and again.get_params() == est.get_params()
    for key, value in _public_state(est).items():
        if key not in ("module_", "init_hmm_"):
            _assert_same(value, getattr(again, key))
    for (k1, v1), (k2, v2) in zip(est.module_.state_dict().items(), again.module_.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2) and v1.dtype == v2.dtype
    assert "torch/module_.pt" in zipfile.ZipFile(tmp_path / "lvm.pk").namelist()
    for method in ("predict", "predict_proba", "score_samples"):
        np.testing.assert_array_equal(getattr(again, method)(X, lengths=lengths), getattr(est, method)(X, lengths=lengths))
    assert again.score(X, lengths=lengths) == est.score(X, lengths=lengths)
    for a, b in zip(est.sample(6, random_state=2), again.sample(6, random_state=2)):
        np.testing.assert_array_equal(a, b)
    if est.init_hmm_ is not None:
        np.testing.assert_array_equal(again.init_hmm_.predict(X, lengths=lengths), est.init_hmm_.predict(X, lengths=lengths))


def _check_deep_ssm_round_trip(est, X, lengths, tmp_path):
    again = probkit.load(est.save(tmp_path / "dssm.pk"))
    assert type(again) is type(est) and again.get_params() == est.get_params()
    for key, value in _public_state(est).items():
        if key != "module_":
            _assert_same(value, getattr(again, key))
    for (k1, v1), (k2, v2) in zip(est.module_.state_dict().items(), again.module_.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2) and v1.dtype == v2.dtype
    np.testing.assert_array_equal(again.transform(X, lengths=lengths), est.transform(X, lengths=lengths))
    for bound in ("elbo", "iwae"):
        assert again.score(X, lengths=lengths, bound=bound) == est.score(X, lengths=lengths, bound=bound)
    np.testing.assert_array_equal(again.forecast(X, 3, lengths=lengths), est.forecast(X, 3, lengths=lengths))
    for a, b in zip(est.sample(6, random_state=2), again.sample(6, random_state=2)):
        np.testing.assert_array_equal(a, b)


def _supervised_cases():
    """Supervised estimators: ``(make, X, y, extra)`` with extra rows for a continued partial_fit."""
    from probkit import GeneralizedLinearClassifier, GeneralizedLinearModel, NaiveBayes

    rng = np.random.RandomState(0)
    X = rng.normal(size=(90, 3))
    counts = rng.poisson(np.exp(0.3 + X @ [0.4, -0.2, 0.1])).astype(float)
    labels = np.array(["a", "b", "c"])[rng.randint(0, 3, 90)]
    mixed = np.column_stack([X[:, 0], counts, rng.randint(0, 4, 90)])
    return {
        "glm-poisson": (lambda: GeneralizedLinearModel("poisson"), X, counts),
        "glm-negative-binomial-penalised": (lambda: GeneralizedLinearModel("negative_binomial", link="log",
                                                                           alpha=0.01, l1_ratio=0.5), X, counts),
        "glm-classifier-softmax": (lambda: GeneralizedLinearClassifier(), X, labels),
        "glm-classifier-probit": (lambda: GeneralizedLinearClassifier("bernoulli", link="probit", alpha=0.01), X,
                                  labels == "a"),
        "naive-bayes-normal": (lambda: NaiveBayes(), X, labels),
        "naive-bayes-mixed": (lambda: NaiveBayes([Normal(), "poisson", "categorical"], alpha=0.5), mixed, labels),
    }


@pytest.mark.parametrize("name", sorted(_supervised_cases()))
def test_supervised_round_trip_is_exact(name, tmp_path):
    make, X, y = _supervised_cases()[name]
    est = make().fit(X[:60], y[:60])
    again = probkit.load(est.save(tmp_path / "supervised.pk"))
    assert type(again) is type(est) and again.get_params().keys() == est.get_params().keys()
    _assert_same(_public_state(est), _public_state(again))
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        if hasattr(est, method):
            np.testing.assert_array_equal(getattr(again, method)(X), getattr(est, method)(X))
    assert again.score(X, y) == est.score(X, y)
    if hasattr(est, "partial_fit"):  # accumulated statistics survive: more rows give the same model
        est.partial_fit(X[60:], y[60:])
        again.partial_fit(X[60:], y[60:])
        np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
def _topic_cases():
    """Topic models (transformers: no predict or sample): ``(make, X)``."""
    from probkit import CollapsedGibbsLDA, LatentDirichletAllocation

    return {
        "lda-batch": (lambda: LatentDirichletAllocation(3, max_iter=3, random_state=0), X_COUNTS),
        "lda-online": (lambda: LatentDirichletAllocation(2, learning_method="online", batch_size=20, max_iter=2,
                                                         random_state=0), X_COUNTS),
        "lda-gibbs": (lambda: CollapsedGibbsLDA(2, n_samples=10, warmup=10, random_state=0), X_COUNTS),
    }


@pytest.mark.parametrize("name", sorted(_topic_cases()))
def test_topic_model_round_trip_is_exact(name, tmp_path):
    make, X = _topic_cases()[name]
    est = make().fit(X)
    again = probkit.load(est.save(tmp_path / "topics.pk"))
    assert type(again) is type(est) and again.get_params() == est.get_params()
    state, state_again = _public_state(est), _public_state(again)
    if "random_state_" in state:  # the generator of online learning travels with the model
        for a, b in zip(state.pop("random_state_").get_state(), state_again.pop("random_state_").get_state()):
            np.testing.assert_array_equal(a, b)
    _assert_same(state, state_again)
    np.testing.assert_array_equal(again.transform(X), est.transform(X))
    assert again.score(X) == est.score(X) and again.perplexity(X) == est.perplexity(X)


def _vae_cases():
    """Variational autoencoders: ``(make, X)``."""
    from probkit.neural import VAE, SequenceVAE

    rng = np.random.RandomState(0)
    kw = dict(encoder_layers=(8,), decoder_layers=(8,), max_epochs=3, random_state=0)
    seq_kw = dict(backbone="gru", d_model=8, n_layers=1, decoder_layers=(8,), max_epochs=3, random_state=0)
    return {
        "vae-gaussian": (lambda: VAE(2, **kw), X_REAL),
        "vae-bernoulli": (lambda: VAE(2, likelihood="bernoulli", **kw), (rng.rand(60, 6) < 0.4).astype(float)),
        "sequence-vae-gaussian": (lambda: SequenceVAE(2, **seq_kw), [rng.normal(size=(n, 2)) for n in range(2, 14)]),
        "sequence-vae-categorical-autoregressive": (
            lambda: SequenceVAE(2, likelihood="categorical", autoregressive=True, **seq_kw),
            [rng.randint(0, 3, size=(n, 2)) for n in range(2, 14)]),
    }


@pytest.mark.parametrize("name", sorted(_vae_cases()))
def test_vae_round_trip_is_exact(name, tmp_path):
    make, X = _vae_cases()[name]
    est = make().fit(X)
    again = probkit.load(est.save(tmp_path / "vae.pk"))
    assert type(again) is type(est) and again.get_params() == est.get_params()
    for (k1, v1), (k2, v2) in zip(est.module_.state_dict().items(), again.module_.state_dict().items()):
        assert k1 == k2
        torch.testing.assert_close(v1, v2, rtol=0, atol=0)
    np.testing.assert_array_equal(again.transform(X), est.transform(X))
    np.testing.assert_array_equal(again.score_samples(X), est.score_samples(X))
    np.testing.assert_array_equal(again.sample(5, random_state=0)[0], est.sample(5, random_state=0)[0])


def test_every_exported_estimator_has_a_round_trip_case():
    import probkit.neural

    exported = {getattr(mod, n) for mod in (probkit, probkit.neural) for n in mod.__all__
                if isinstance(getattr(mod, n), type) and issubclass(getattr(mod, n), ProbkitEstimator)}
    covered = {type(make()) for make, _ in CASES.values()}
    covered |= {type(make()) for make, _, _ in _neural_cases().values()}
    covered |= {type(make()) for make, _, _ in _latent_neural_cases().values()}
    covered |= {type(make()) for make, _, _ in _supervised_cases().values()}
    covered |= {type(make()) for make, _ in _topic_cases().values()}
    covered |= {type(make()) for make, _ in _vae_cases().values()}
    missing = sorted(c.__name__ for c in exported - covered)
    assert not missing, f"add save/load cases to tests/product/test_io.py for {missing}"


def test_warm_start_continues_identically_after_load(tmp_path):
    gm = GaussianMixture(2, max_iter=2, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X_REAL)
        again = probkit.load(gm.save(tmp_path / "m.pk"))
        gm.fit(X_REAL)
        again.fit(X_REAL)
    np.testing.assert_array_equal(gm.means_, again.means_)


def test_distribution_attributes_round_trip():
    est = GaussianMixture(1).fit(X_REAL)  # fitted: a loaded estimator that looks fitted is validated
    est.extra_ = [Independent([Normal().fit(X_REAL[:, 0]), Poisson().fit(X_COUNTS[:, 0])]),
                  MultivariateNormal(covariance_type="diag", reg_covar=1e-3), Gamma]
    again = loads(dumps(est))
    _assert_same(est.extra_[0].params, again.extra_[0].params)
    assert again.extra_[1]._options()["reg_covar"] == 1e-3 and not again.extra_[1].is_fitted
    assert again.extra_[2] is Gamma


def test_unfitted_estimator_round_trips():
    est = loads(dumps(GaussianHMM(3, covariance_type="full", dtype=torch.float32)))
    assert est.n_components == 3 and est.dtype is torch.float32
    assert not hasattr(est, "means_")


def test_expected_kind_is_enforced(tmp_path):
    path = _fit("gmm-full")[0].save(tmp_path / "m.pk")
    assert isinstance(load(path, expected=GaussianMixture), GaussianMixture)
    with pytest.raises(ModelFileError, match="holds a GaussianMixture, but a GaussianHMM or PoissonHMM is expected"):
        load(path, expected=(GaussianHMM, PoissonHMM))


# ---------------------------------------------------------------------------- bad files
def _rewrite(data, edit_meta=None, replace=None):
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            blob = src.read(name)
            if name == "meta.json" and edit_meta is not None:
                meta = json.loads(blob)
                edit_meta(meta)
                blob = json.dumps(meta).encode()
            if replace and name in replace:
                blob = replace[name]
            dst.writestr(name, blob)
    return out.getvalue()


@pytest.fixture(scope="module")
def model_bytes():
    return dumps(_fit("gaussian-hmm")[0])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="cannot read model file .*missing.pk"):
        load(tmp_path / "missing.pk")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file_is_refused(model_bytes, tmp_path, cut):
    path = tmp_path / "cut.pk"
    path.write_bytes(model_bytes[: int(len(model_bytes) * cut)])
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        load(path)


def test_future_format_version_is_refused(model_bytes):
    data = _rewrite(model_bytes, edit_meta=lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ModelFileError, match=f"format version {FORMAT_VERSION + 1}.*upgrade probkit"):
        loads(data)


def test_flipped_byte_in_an_array_is_detected(model_bytes):
    src = zipfile.ZipFile(io.BytesIO(model_bytes))
    name = next(n for n in src.namelist() if n.endswith(".npy"))
    blob = bytearray(src.read(name))
    blob[-1] ^= 0xFF
    with pytest.raises(ModelFileError, match="does not match its checksum"):
        loads(_rewrite(model_bytes, replace={name: bytes(blob)}))


def test_other_files_are_not_models(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(ModelFileError, match="not a probkit model file"):
        load(csv)
    other_zip = io.BytesIO()
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ModelFileError, match="no meta.json"):
        loads(other_zip.getvalue())
    with pytest.raises(ModelFileError, match="not a probkit model file"):
        loads(_rewrite(dumps(GaussianHMM()), edit_meta=lambda m: m.update(format="something-else")))


class _Boom:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _set_estimator_name(name, module):
    def edit(meta):
        meta["model"]["name"] = name
        meta["model"]["module"] = module
    return edit


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_no_code_runs_from_a_malicious_file(model_bytes, tmp_path):
    marker = tmp_path / "pwned"
    # An array member replaced by a pickle of an object that would create a file.
    src = zipfile.ZipFile(io.BytesIO(model_bytes))
    name = next(n for n in src.namelist() if n.endswith(".npy"))
    buf = io.BytesIO()
    np.save(buf, np.array([_Boom(str(marker))], dtype=object), allow_pickle=True)
    evil = _rewrite(model_bytes, replace={name: buf.getvalue()})
    evil = _rewrite(evil, edit_meta=lambda m: m["manifest"][name].update(
        size=len(buf.getvalue()), sha256=__import__("hashlib").sha256(buf.getvalue()).hexdigest()))
    with pytest.raises(ModelFileError, match="without pickle"):
        loads(evil)
    # A class outside the allow-list named as the estimator.
    for cls_name, module in [("system", "os"), ("Popen", "subprocess"), ("BaseEstimator", "sklearn.base")]:
        with pytest.raises(ModelFileError, match="not a probkit estimator"):
            loads(_rewrite(model_bytes, edit_meta=_set_estimator_name(cls_name, module)))
    # Attribute names that would reach into the object's machinery.
    def dunder(meta):
        meta["model"]["state"]["__class__"] = meta["model"]["state"].pop("means_")
    with pytest.raises(ModelFileError, match="invalid attribute name '__class__'"):
        loads(_rewrite(model_bytes, edit_meta=dunder))
    # A pickle in place of a torch state dict, bare or inside a torch archive.
    from probkit.io import _Reader
    buf = io.BytesIO()
    torch.save({"weight": _Boom(str(marker))}, buf)
    for pt, refusal in [(pickle.dumps(_Boom(str(marker))), "not a torch zip archive"), (buf.getvalue(), "unreadable")]:
        assert not marker.exists()
        with pytest.raises(ModelFileError, match=refusal):
            _Reader({"torch/module_.pt": pt}, "evil").get_state_dict("torch/module_.pt")
    assert not marker.exists()


def test_unknown_distribution_name_is_refused():
    data = dumps(_fit("hmm-gamma-class")[0])
    meta_text = zipfile.ZipFile(io.BytesIO(data)).read("meta.json").decode()
    assert '"Gamma"' in meta_text

    def edit(meta):
        text = json.dumps(meta).replace('"Gamma"', '"Eval"')
        meta.clear()
        meta.update(json.loads(text))
    with pytest.raises(ModelFileError, match="not a probkit distribution"):
        loads(_rewrite(data, edit_meta=edit))


def test_saving_an_unknown_type_names_the_attribute_and_register_type_fixes_it():
    est = GaussianMixture(1).fit(X_REAL)

    class Note:
        def __init__(self, text):
            self.text = text
    est.note_ = Note("hello")
    with pytest.raises(TypeError, match=r"attribute GaussianMixture\.note_.*register_type"):
        dumps(est)
    register_type("tests.Note", Note, lambda n, w: {"text": n.text}, lambda d, r: Note(d["text"]))
    assert loads(dumps(est)).note_.text == "hello"


def test_non_probkit_estimators_are_refused():
    from sklearn.mixture import GaussianMixture as SkGM
    with pytest.raises(TypeError, match="only probkit estimators"):
        dumps(SkGM())


# ---------------------------------------------------------------------------- the torch-module hook
class TinyNet(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin = torch.nn.Linear(d, 2)
        self.register_buffer("scale", torch.ones(2))

    def forward(self, x):
        return self.lin(x) * self.scale


@register_estimator
class TinyNeuralEstimator(ProbkitEstimator):
    """Stand-in for a neural estimator: one fitted torch module rebuilt through _io_build_module."""

    _io_exclude = ("optimizer_",)

    def __init__(self, hidden=2, random_state=0):
        self.hidden = hidden
        self.random_state = random_state

    def fit(self, X):
        torch.manual_seed(self.random_state)
        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        self.n_features_in_ = X.shape[1]
        self.module_ = TinyNet(self.n_features_in_)
        self.optimizer_ = torch.optim.SGD(self.module_.parameters(), lr=0.1)
        for _ in range(3):
            self.optimizer_.zero_grad()
            self.module_(X).pow(2).mean().backward()
            self.optimizer_.step()
        self.module_.scale.fill_(3.0)
        return self

    def predict(self, X):
        with torch.no_grad():
            return self.module_(torch.as_tensor(np.asarray(X), dtype=torch.float32)).numpy()

    def _io_build_module(self, name):
        assert name == "module_"
        return TinyNet(self.n_features_in_)


def test_torch_module_state_dict_round_trip(tmp_path):
    est = TinyNeuralEstimator().fit(X_REAL)
    path = est.save(tmp_path / "net.pk")
    names = zipfile.ZipFile(path).namelist()
    assert "torch/module_.pt" in names
    again = load(path)
    assert not hasattr(again, "optimizer_")
    np.testing.assert_array_equal(again.predict(X_REAL), est.predict(X_REAL))
    assert float(again.module_.scale[0]) == 3.0


def test_module_without_build_hook_is_refused_at_save_time():
    est = GaussianMixture(1)
    est.module_ = TinyNet(2)
    with pytest.raises(TypeError, match="_io_build_module"):
        dumps(est)


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "m.pk"
    GaussianMixture(2).save(path)
    assert os.listdir(tmp_path) == ["m.pk"]


# ---------------------------------------------------------------------------- saving safely
def test_save_ignores_a_planted_temporary_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path = tmp_path / "model.pk"
    planted = tmp_path / f"model.pk.tmp-{os.getpid()}"     # the name a predictable temp file would take
    planted.symlink_to(victim)
    save(probkit.GaussianHMM(2), path)
    assert victim.read_text() == "precious" and planted.is_symlink()
    assert stat.S_ISREG(os.lstat(path).st_mode) and load(path).n_components == 2


def _special_files(folder):
    fifo = folder / "fifo.pk"
    os.mkfifo(fifo)
    made = {"a named pipe": fifo, "a directory": folder / "dir.pk"}
    made["a directory"].mkdir()
    link = folder / "link.pk"
    link.symlink_to(folder / "elsewhere.pk")
    made["a symbolic link"] = link
    try:  # the device /dev/full is (only root may create device nodes)
        os.mknod(folder / "full.pk", 0o600 | stat.S_IFCHR, os.makedev(1, 7))
        made["a character device"] = folder / "full.pk"
    except (PermissionError, OSError):
        pass
    return made


def test_save_never_replaces_anything_but_a_regular_file(tmp_path):
    for kind, path in _special_files(tmp_path).items():
        mode = os.lstat(path).st_mode
        with pytest.raises(ValueError, match=f"is {kind}, not a regular file"):
            save(probkit.GaussianHMM(2), path)
        assert os.lstat(path).st_mode == mode
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_failed_save_removes_its_temporary_file_and_names_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-folder" / "model.pk"
    with pytest.raises(FileNotFoundError) as info:
        save(probkit.GaussianHMM(2), missing)
    assert info.value.filename == str(missing) and ".tmp" not in str(info.value)

    path = tmp_path / "model.pk"
    save(probkit.GaussianHMM(3), path)
    before = path.read_bytes()

    def disk_full(src, dst):
        raise OSError(28, "No space left on device", src)
    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError) as info:
        save(probkit.GaussianHMM(2), path)
    assert info.value.errno == 28 and info.value.filename == str(path) and ".tmp" not in str(info.value)
    assert os.listdir(tmp_path) == ["model.pk"] and path.read_bytes() == before


def test_saved_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "model.pk"
    save(probkit.GaussianHMM(2), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask
    os.chmod(path, 0o640)
    save(probkit.GaussianHMM(2), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
