"""Inputs at the edges: data far from the origin, missing values, pandas frames."""

import warnings

import numpy as np
import pandas as pd
import pytest

from probkit import (GMMHMM, HMM, BayesianGaussianMixture, BayesianMixture, CategoricalHMM, GaussianHMM,
                     GaussianMixture, MixtureModel, PoissonHMM, VariationalHMM)

RNG = np.random.RandomState(0)
X = np.r_[RNG.normal(0, 1, (100, 2)), RNG.normal(5, 1, (100, 2))]

OFFSET_MODELS = [
    lambda: HMM("normal", n_components=2, n_iter=50, random_state=0),
    lambda: VariationalHMM(2, n_iter=50, random_state=0),
    lambda: VariationalHMM(2, covariance_type="full", n_iter=50, random_state=0),
    lambda: GaussianHMM(2, n_iter=50, random_state=0),
    lambda: GMMHMM(2, n_mix=2, n_iter=20, random_state=0),
    lambda: MixtureModel(family="normal", n_components=2, random_state=0),
    lambda: MixtureModel(family="gaussian", n_components=2, random_state=0),
    lambda: BayesianMixture(family="normal", n_components=2, random_state=0),
    lambda: BayesianMixture(family="gaussian", n_components=2, random_state=0),
    lambda: GaussianMixture(2, random_state=0),
    lambda: BayesianGaussianMixture(n_components=2, random_state=0),
]


@pytest.mark.parametrize("offset", [1e8, 1e10])
@pytest.mark.parametrize("make", OFFSET_MODELS, ids=lambda f: repr(f()))
def test_fits_are_translation_equivariant_far_from_the_origin(make, offset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = make().fit(X)
        moved = make().fit(X + offset)
    # Per-sample log-likelihoods agree up to what float64 can resolve of X + offset (ulp ~ 2e-6 at 1e10).
    per_sample = np.abs(moved.score_samples(X + offset) - base.score_samples(X)).max() \
        if not hasattr(base, "transmat_") else abs(moved.score(X + offset) - base.score(X)) / len(X)
    # float64 resolves X + offset to about 2.2e-16 * offset; a log-density moves by a few times that
    assert per_sample < 1e-14 * offset + 1e-9, per_sample


@pytest.mark.parametrize("model", [GaussianHMM(2), PoissonHMM(2), HMM("poisson", n_components=2)],
                         ids=lambda m: type(m).__name__)
def test_nan_error_names_missing_marginalize_for_hmms(model):
    data = np.abs(np.round(X)).astype(float)
    data[3, 1] = np.nan
    with pytest.raises(ValueError, match="missing='marginalize'") as info:
        model.fit(data)
    assert "HistGradientBoosting" not in str(info.value)
    model.set_params(missing="marginalize").fit(data)  # and it works when asked


def test_nan_error_of_an_hmm_that_cannot_marginalise_says_so():
    data = X.copy()
    data[0, 0] = np.nan
    with pytest.raises(ValueError, match="cannot sum missing values out"):
        GaussianHMM(2, covariance_type="full").fit(data)


@pytest.mark.parametrize("model", [GaussianHMM(2, n_iter=5), GaussianMixture(2), PoissonHMM(2, n_iter=5),
                                   CategoricalHMM(2, n_iter=5)], ids=lambda m: type(m).__name__)
def test_pandas_frames_raise_no_torch_warning(model):
    data = np.abs(np.round(X)) if isinstance(model, PoissonHMM) else X
    data = np.abs(np.round(X[:, :1])) % 3 if isinstance(model, CategoricalHMM) else data
    frame = pd.DataFrame(data, columns=[f"c{j}" for j in range(data.shape[1])])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not writable.*")
        warnings.filterwarnings("ignore", category=Warning, message="(?!.*not writable)")
        model.fit(frame)
        model.predict(frame)
