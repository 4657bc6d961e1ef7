"""Sequence lengths passed positionally (hmmlearn's habit) are refused with one clear TypeError everywhere.

``score(X, y=None, *, lengths=None)`` used to read ``score(X, lengths)`` as ``y`` and score
all rows as one sequence: a silently wrong number. Every method of every sequence estimator
now raises the same TypeError for a second positional argument that is not one value per row.
"""

import numpy as np
import pytest

from probkit import (GMMHMM, HMM, CategoricalHMM, GaussianHMM, LinearGaussianSSM, MultinomialHMM, PoissonHMM,
                     VariationalHMM)
from probkit.neural import DeepStateSpaceModel, NeuralHMM, SequenceClassifier, SequenceDensity, SequenceRegressor

MESSAGE = "pass sequence lengths by keyword"
RNG = np.random.RandomState(0)
REAL = RNG.normal(size=(40, 2))
COUNTS = RNG.poisson(3.0, size=(40, 2))
SYMBOLS = RNG.randint(0, 3, size=(40, 1))
LENGTHS = np.array([15, 25])

NEURAL = dict(d_model=4, max_epochs=1, random_state=0)
CASES = [
    (GaussianHMM(2, random_state=0), REAL),
    (GMMHMM(2, n_mix=2, random_state=0), REAL),
    (HMM("normal", n_components=2, random_state=0), REAL),
    (PoissonHMM(2, random_state=0), COUNTS),
    (MultinomialHMM(2, n_trials=None, random_state=0), COUNTS),
    (CategoricalHMM(2, random_state=0), SYMBOLS),
    (VariationalHMM(2, random_state=0), REAL),
    (LinearGaussianSSM(2, n_iter=2, random_state=0), REAL),
    (NeuralHMM(2, backbone="gru", n_layers=1, **NEURAL), REAL),
    (DeepStateSpaceModel(hidden_dim=4, **NEURAL), REAL),
]
IDS = [type(est).__name__ for est, _ in CASES]
METHODS = ("predict", "predict_proba", "score_samples", "decode", "aic", "bic", "transform", "score_per_step",
           "bounds", "filter", "smooth")


@pytest.fixture(scope="module")
def fitted():
    return [est.fit(X, lengths=LENGTHS) for est, X in CASES]


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_fit_and_score_refuse_lengths_in_the_y_slot(index, fitted):
    est, X = fitted[index], CASES[index][1]
    with pytest.raises(TypeError, match=MESSAGE):
        type(est)(**est.get_params()).fit(X, LENGTHS)
    with pytest.raises(TypeError, match=MESSAGE):
        est.score(X, LENGTHS)
    # a y with one value per row is scikit-learn's slot: ignored, the score is unchanged
    if not isinstance(est, DeepStateSpaceModel):  # its score draws particles
        assert est.score(X, np.zeros(len(X)), lengths=LENGTHS) == est.score(X, lengths=LENGTHS)


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_every_other_method_takes_lengths_by_keyword_only(index, fitted):
    est, X = fitted[index], CASES[index][1]
    methods = [m for m in METHODS if hasattr(est, m)]
    assert methods
    for name in methods:
        with pytest.raises(TypeError, match=MESSAGE):
            getattr(est, name)(X, LENGTHS)


def test_sequence_density_and_supervised_estimators_refuse_a_positional_second_argument():
    seqs = [RNG.normal(size=(n, 2)) for n in (5, 7, 6)]
    dens = SequenceDensity(backbone="gru", n_layers=1, **NEURAL).fit(seqs)
    with pytest.raises(TypeError, match=MESSAGE):
        dens.score(seqs, [5, 7])
    with pytest.raises(TypeError, match=MESSAGE):
        dens.score_samples(seqs, [5, 7, 6])
    clf = SequenceClassifier(backbone="gru", n_layers=1, **NEURAL).fit(seqs, [0, 1, 0])
    reg = SequenceRegressor(backbone="gru", n_layers=1, **NEURAL).fit(seqs, [0.0, 1.0, 0.5])
    for method in (clf.predict, clf.predict_proba, clf.predict_log_proba, reg.predict):
        with pytest.raises(TypeError, match=MESSAGE):
            method(seqs, [5, 7, 6])
