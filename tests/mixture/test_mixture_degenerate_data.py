"""Data scikit-learn fits, probkit fits too: constant columns, collinear columns, duplicated rows, two rows, booleans.

Before, BayesianGaussianMixture raised torch's LinAlgError from a Cholesky factorisation and
GaussianMixture refused identical rows ("some batch member has zero total weight").
"""

import warnings

import numpy as np
import pytest
from sklearn import mixture as skm

from probkit import BayesianGaussianMixture, GaussianMixture
from probkit.components import EmptyComponentWarning

RNG = np.random.RandomState(0)
X1 = RNG.normal(size=50)
DATA = {
    "collinear": np.c_[X1, 2 * X1],
    "constant column": np.c_[X1, np.ones(50)],
    "two rows": RNG.normal(size=(2, 2)),
    "bool": RNG.rand(50, 3) > 0.5,
    "duplicated rows": np.repeat(RNG.normal(size=(3, 2)), 20, axis=0),
    "identical rows": np.ones((20, 2)),
}
COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


@pytest.mark.parametrize("name", DATA)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("cls, peer", [(BayesianGaussianMixture, skm.BayesianGaussianMixture),
                                       (GaussianMixture, skm.GaussianMixture)], ids=["bayesian", "em"])
def test_fits_wherever_scikit_learn_fits(name, covariance_type, cls, peer):
    X = DATA[name]
    kw = dict(n_components=2, covariance_type=covariance_type, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = peer(**kw).fit(X)
        model = cls(**kw).fit(X)
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(model, attr))), attr
    assert np.isfinite(model.lower_bound_)
    assert np.all(np.isfinite(model.score_samples(X)))
    np.testing.assert_allclose(model.weights_.sum(), 1.0)
    if name in ("identical rows", "duplicated rows") and cls is GaussianMixture:
        # the fitted density puts its mass on the same points as scikit-learn's
        np.testing.assert_allclose(model.score(X), ref.score(X), rtol=1e-6)


def test_identical_rows_warn_that_a_component_got_no_data():
    with pytest.warns(EmptyComponentWarning, match="received no data at initialisation"):
        model = GaussianMixture(2, random_state=0).fit(np.ones((20, 2)))
    assert sorted(np.round(model.weights_, 12)) == [0.0, 1.0]
    np.testing.assert_allclose(model.means_[np.argmax(model.weights_)], [1.0, 1.0])
