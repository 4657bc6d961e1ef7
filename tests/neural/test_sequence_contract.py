"""The sequence contract, the same for the five neural estimators.

A list of arrays, concatenated rows with ``lengths=`` and a padded array with
``valid_lengths=`` are the same sequences: every estimator fitted on any form gives
bit-identical results on every form (the layout of a call is not part of a sequence's
arithmetic). Inputs that describe no sequences, or describe them inconsistently, get a
``ValueError`` that names the argument at fault, at fit and at prediction time.
"""

import numpy as np
import pytest
from sklearn.base import clone

from probkit.neural import DeepStateSpaceModel, NeuralHMM, SequenceClassifier, SequenceDensity, SequenceRegressor

GRU = dict(backbone="gru", d_model=6, n_layers=1, max_epochs=2, random_state=0)
ESTIMATORS = {
    "classifier": (SequenceClassifier(**GRU), "predict_proba"),
    "regressor": (SequenceRegressor(**GRU), "predict"),
    "density": (SequenceDensity(**GRU), "score_samples"),
    "neural_hmm": (NeuralHMM(2, **GRU), "predict_proba"),
    "deep_ssm": (DeepStateSpaceModel(latent_dim=1, d_model=6, hidden_dim=6, max_epochs=2, random_state=0),
                 "transform"),
}
LENGTHS = np.array([5, 9, 3, 7])


def sequences(seed=0):
    rng = np.random.RandomState(seed)
    return [rng.normal(size=(n, 2)) + i % 2 for i, n in enumerate(LENGTHS)]


def targets(name):
    """One target per sequence for the supervised estimators, None for the others."""
    return {"classifier": np.array([0, 1, 0, 1]), "regressor": np.array([0.5, -1.0, 2.0, 0.0])}.get(name)


def forms(seqs):
    """The same sequences as (args, kwargs) of each form; padding is NaN, which must never be read."""
    lengths = np.array([len(s) for s in seqs])
    padded = np.full((len(seqs), lengths.max(), seqs[0].shape[1]), np.nan)
    for i, s in enumerate(seqs):
        padded[i, :len(s)] = s
    return {"list": ((seqs,), {}), "lengths": ((np.concatenate(seqs),), {"lengths": lengths}),
            "valid_lengths": ((padded,), {"valid_lengths": lengths})}


def fit(name, args, kwargs):
    est, _ = ESTIMATORS[name]
    y = targets(name)
    return clone(est).fit(*args, **kwargs) if y is None else clone(est).fit(*args, y, **kwargs)


@pytest.fixture(scope="module")
def fitted():
    return {name: fit(name, (sequences(),), {}) for name in ESTIMATORS}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_three_forms_give_identical_fits_and_results(name):
    seqs = sequences()
    method = ESTIMATORS[name][1]
    models = {form: fit(name, *call) for form, call in forms(seqs).items()}
    reference = getattr(models["list"], method)(seqs)
    per_step = name in ("neural_hmm", "deep_ssm")
    assert reference.shape[0] == (LENGTHS.sum() if per_step else len(LENGTHS))
    assert np.all(np.isfinite(reference))
    y = () if targets(name) is None else (targets(name),)
    score = models["list"].score(seqs, *y)
    assert np.isfinite(score)
    for model in models.values():
        for args, kwargs in forms(seqs).values():
            np.testing.assert_array_equal(getattr(model, method)(*args, **kwargs), reference)
            assert model.score(*args, *y, **kwargs) == score


BAD_INPUTS = {
    # ragged rows of scalars: neither rows of features (unequal) nor arrays of sequences
    "ragged list": (([[0.1, 0.2, 0.3], [0.4, 0.5]],), {}, r"X is a ragged nested list of scalars"),
    "object array": ((np.array([np.zeros((3, 2)), np.zeros((2, 2))], dtype=object),), {},
                     r"X is an object array of 2 ragged sequences"),
    "lengths sum": ((np.zeros((24, 2)),), {"lengths": [5, 9, 3, 6]},
                    r"lengths must sum to the number of samples in X \(24\), got sum 23"),
    "valid_lengths too long": ((np.zeros((4, 9, 2)),), {"valid_lengths": [5, 9, 3, 10]},
                               r"valid_lengths must not exceed the padded length 9; got \[10\]"),
    "lengths on padded": ((np.zeros((4, 9, 2)),), {"lengths": [9, 9, 9, 9]},
                          r"lengths= splits concatenated rows .* valid_lengths="),
    "valid_lengths on rows": ((np.zeros((24, 2)),), {"valid_lengths": [24]},
                              r"valid_lengths= applies to a padded"),
    "lengths with a list": (([np.zeros((3, 2)), np.zeros((2, 2))],), {"lengths": [3, 2]},
                            r"X is a list of sequences, which carry their own lengths: drop lengths="),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
@pytest.mark.parametrize("name", ESTIMATORS)
def test_bad_sequence_inputs_name_the_argument(fitted, name, case):
    args, kwargs, match = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=match):
        fit(name, args, kwargs)
    with pytest.raises(ValueError, match=match):
        getattr(fitted[name], ESTIMATORS[name][1])(*args, **kwargs)


def test_token_sequences_follow_the_same_contract():
    rng = np.random.RandomState(0)
    seqs = [rng.randint(0, 5, size=n) for n in LENGTHS]
    padded = np.zeros((4, LENGTHS.max()), dtype=int)
    for i, s in enumerate(seqs):
        padded[i, :len(s)] = s
    lm = SequenceDensity(**GRU, vocab_size=5).fit(seqs)
    reference = lm.score_samples(seqs)
    np.testing.assert_array_equal(lm.score_samples(np.concatenate(seqs), lengths=LENGTHS), reference)
    np.testing.assert_array_equal(lm.score_samples(padded, valid_lengths=LENGTHS), reference)
    np.testing.assert_array_equal(lm.score_samples([s.tolist() for s in seqs]), reference)  # ragged tokens: a list
    with pytest.raises(ValueError, match=r"lengths must sum to the number of samples in X \(24\), got sum 25"):
        lm.score_samples(np.concatenate(seqs), lengths=[5, 9, 3, 8])
    with pytest.raises(ValueError, match=r"valid_lengths must not exceed the padded length 9"):
        lm.score_samples(padded, valid_lengths=[5, 9, 3, 12])
