"""scikit-learn's estimator checks over every public probkit estimator.

Every check must pass: no expected failures are listed. Families with a restricted
support (Poisson, Gamma, ...) cannot take the checks' real-valued random data, so
MixtureModel is checked with Gaussian components; its other families are covered in
tests/mixture.
"""

import warnings

from sklearn.utils.estimator_checks import parametrize_with_checks

from probkit import GaussianMixture, MixtureModel

ESTIMATORS = [
    GaussianMixture(),
    GaussianMixture(covariance_type="diag", n_init=2),
    MixtureModel(family="gaussian"),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)
