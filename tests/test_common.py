"""scikit-learn's estimator checks over every public probkit estimator.

Expected failures are listed with their reason; everything else must pass.
"""

import warnings

import numpy as np
import pytest
from sklearn.utils.estimator_checks import check_param_validation, parametrize_with_checks

from probkit import (
    ARHMM,
    GMMHMM,
    HMM,
    HSMM,
    BayesianGaussianMixture,
    BayesianMixture,
    CategoricalHMM,
    CollapsedGibbsLDA,
    GaussianHMM,
    GaussianMixture,
    GeneralizedLinearClassifier,
    GeneralizedLinearModel,
    InputDrivenHMM,
    LatentDirichletAllocation,
    LinearGaussianSSM,
    MixtureModel,
    MultinomialHMM,
    NaiveBayes,
    PoissonHMM,
    VariationalHMM,
)
from probkit.compat.hmmlearn import hmm as compat_hmm
from probkit.neural import (VAE, DeepStateSpaceModel, MaskedSequenceModel, NeuralHMM, SequenceClassifier, SequenceDensity,
                            SequenceRegressor, SequenceVAE)

# scikit-learn's checks feed tabular data: a 2-D X with one y per row. For the neural
# per-sequence estimators a 2-D X without lengths= is one sequence, so the checks run them
# through these subclasses, which change nothing but pass lengths=np.ones(n): each row one
# sequence of one step, through the public contract (every check runs on the real
# implementation). Tiny GRU backbones keep the checks fast.
_NEURAL = dict(backbone="gru", d_model=16, n_layers=1, max_epochs=30, lr=1e-2, random_state=0)


def _rows(X, kw):
    """The keyword arguments with lengths=np.ones(n) unless given: each row of X one sequence."""
    n = X.shape[0] if hasattr(X, "shape") else np.asarray(X).shape[0]
    return {"lengths": np.ones(n, dtype=np.int64), **kw}


class RowsSequenceClassifier(SequenceClassifier):
    """SequenceClassifier with each row of X one sequence (lengths=np.ones(n))."""

    def fit(self, X, y, **kw):
        return super().fit(X, y, **_rows(X, kw))

    def predict(self, X, **kw):
        return super().predict(X, **_rows(X, kw))

    def predict_proba(self, X, **kw):
        return super().predict_proba(X, **_rows(X, kw))

    def predict_log_proba(self, X, **kw):
        return super().predict_log_proba(X, **_rows(X, kw))

    def score(self, X, y, sample_weight=None, **kw):
        return super().score(X, y, sample_weight, **_rows(X, kw))


class RowsSequenceRegressor(SequenceRegressor):
    """SequenceRegressor with each row of X one sequence (lengths=np.ones(n))."""

    def fit(self, X, y, **kw):
        return super().fit(X, y, **_rows(X, kw))

    def predict(self, X, **kw):
        return super().predict(X, **_rows(X, kw))

    def score(self, X, y, sample_weight=None, **kw):
        return super().score(X, y, sample_weight, **_rows(X, kw))


class _EachRowOneSequence:
    """Density-model methods with each row of X one sequence (lengths=np.ones(n))."""

    def fit(self, X, y=None, **kw):
        return super().fit(X, y, **_rows(X, kw))

    def score_samples(self, X, **kw):
        return super().score_samples(X, **_rows(X, kw))

    def score(self, X, y=None, **kw):
        return super().score(X, y, **_rows(X, kw))


class RowsSequenceDensity(_EachRowOneSequence, SequenceDensity):
    """SequenceDensity with each row of X one sequence (lengths=np.ones(n))."""


class RowsMaskedSequenceModel(_EachRowOneSequence, MaskedSequenceModel):
    """MaskedSequenceModel with each row of X one sequence (lengths=np.ones(n))."""


class RowsSequenceVAE(_EachRowOneSequence, SequenceVAE):
    """SequenceVAE with each row of X one sequence (lengths=np.ones(n))."""

    def transform(self, X, **kw):
        return super().transform(X, **_rows(X, kw))

    def score(self, X, y=None, **kw):
        return super().score(X, y, **_rows(X, kw))


ESTIMATORS = [
    GaussianMixture(),
    GaussianMixture(covariance_type="diag", n_init=2),
    MixtureModel(family="gaussian"),
    MixtureModel(family="normal"),
    GaussianHMM(),
    GaussianHMM(2, covariance_type="full", implementation="scaling"),
    GMMHMM(2, n_mix=2),
    HMM(emission="normal", n_components=2),
    HMM(emission="gaussian"),
    HSMM(emission="gaussian", n_components=2, max_duration=5),
    HSMM(emission="normal", n_components=1, duration="categorical", max_duration=4),
    ARHMM(),
    ARHMM(2, order=2, covariance_type="diag"),
    InputDrivenHMM(1),
    InputDrivenHMM(2, transition_model="fixed"),
    PoissonHMM(),
    CategoricalHMM(),
    MultinomialHMM(2),
    BayesianGaussianMixture(),
    BayesianGaussianMixture(n_components=2, covariance_type="diag", weight_concentration_prior_type="dirichlet_distribution"),
    BayesianMixture(family="normal", n_components=2),
    VariationalHMM(2),
    VariationalHMM(2, covariance_type="diag"),
    LinearGaussianSSM(),
    LinearGaussianSSM(2, observation_covariance_type="full", transition_covariance_type="diag"),
    LatentDirichletAllocation(),
    LatentDirichletAllocation(n_components=3, learning_method="online", batch_size=8),
    CollapsedGibbsLDA(n_components=3, n_samples=10, warmup=10),
    RowsSequenceClassifier(**_NEURAL),
    RowsSequenceRegressor(**_NEURAL),
    RowsSequenceDensity(**_NEURAL),
    RowsMaskedSequenceModel(**_NEURAL),
    NeuralHMM(2, backbone="gru", d_model=8, n_layers=1, max_epochs=5, random_state=0),
    DeepStateSpaceModel(d_model=8, hidden_dim=8, max_epochs=5, random_state=0),
    # float64: per-row results must not depend on the batch a row is computed in
    VAE(encoder_layers=(8,), decoder_layers=(8,), max_epochs=5, random_state=0, dtype="float64"),
    RowsSequenceVAE(backbone="gru", d_model=8, n_layers=1, decoder_layers=(8,), max_epochs=5, random_state=0,
                    dtype="float64"),
    GeneralizedLinearModel(),
    GeneralizedLinearModel(family="gamma", link="log", alpha=0.1),
    GeneralizedLinearModel(family="poisson"),
    GeneralizedLinearClassifier(),
    GeneralizedLinearClassifier(alpha=0.01),
    GeneralizedLinearClassifier(family="bernoulli", link="probit", alpha=0.01),
    NaiveBayes(),
    NaiveBayes(family="bernoulli", binarize=0.0),
]

# NeuralHMM reads X as one sequence (hmmlearn's layout, as the classical HMMs do) and its
# emissions at step t are computed from the observations before t: the state posteriors and
# per-step scores of a row depend on the rows before it by design. A subset or a reordering
# of the rows is a different sequence with different results (with K=1 and no neural
# features, the classical HMMs' results happen not to depend on context).
# LinearGaussianSSM's smoothed states and predictive densities depend on the whole sequence too, and
# ARHMM's emission at step t is a regression on the observations before t.
_SEQUENCE_CONTEXT = {
    name: "results at step t depend on the observations before t (a reordered or cut X is another sequence)"
    for name in ["check_methods_sample_order_invariance", "check_methods_subset_invariance"]
}


# Unpenalised GLMs (alpha=0) are maximum-likelihood fits and refuse data without a finite
# maximum: this check gives 30 features for 27 rows of positive weight (a rank-deficient design).
_GLM_RANK = {"check_sample_weight_equivalence_on_dense_data": "with alpha=0 the check's 30 features outnumber its "
             "27 rows of positive weight: the rank-deficient design is refused (set alpha > 0)"}
# The Poisson GLM reads y as counts and refuses the real-valued targets of these checks.
_GLM_COUNTS = {
    name: "y must hold non-negative integer counts for the Poisson family; the check fits real-valued targets"
    for name in ["check_n_features_in_after_fitting", "check_regressors_train", "check_regressor_data_not_an_array",
                 "check_regressors_no_decision_function", "check_fit_idempotent", "check_fit_check_is_fitted",
                 "check_n_features_in"]
}
# Unpenalised logistic regression has no finite maximum on linearly separable classes; the
# checks' small blob data sets are separable, and the fit raises PerfectSeparationError.
_GLM_SEPARATION = {
    name: "the check's classes are linearly separable: the unpenalised MLE is infinite (PerfectSeparationError; "
          "alpha > 0 fits them)"
    for name in ["check_estimators_overwrite_params", "check_dont_overwrite_parameters",
                 "check_estimators_fit_returns_self", "check_readonly_memmap_input",
                 "check_positive_only_tag_during_fit", "check_sample_weights_shape",
                 "check_sample_weights_not_overwritten", "check_pipeline_consistency", "check_estimators_pickle",
                 "check_f_contiguous_array_estimator", "check_classifiers_classes",
                 "check_non_transformer_estimators_n_iter", "check_methods_sample_order_invariance",
                 "check_methods_subset_invariance", "check_fit2d_1feature", "check_dict_unchanged",
                 "check_fit2d_predict1d"]
}


def expected_failed_checks(estimator):
    if isinstance(estimator, (NeuralHMM, DeepStateSpaceModel, LinearGaussianSSM, ARHMM)):
        return _SEQUENCE_CONTEXT
    if isinstance(estimator, GeneralizedLinearModel) and estimator.alpha == 0:
        return {**_GLM_RANK, **(_GLM_COUNTS if estimator.family == "poisson" else {})}
    if isinstance(estimator, GeneralizedLinearClassifier) and estimator.alpha == 0:
        return {**_GLM_RANK, **_GLM_SEPARATION}
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


# scikit-learn's own check of the declarative constraints: every constructor parameter has an
# entry in ``_parameter_constraints`` (and no entry names a non-parameter), and a value outside
# each constraint makes fit (and partial_fit, fit_predict, ...) raise InvalidParameterError
# naming the parameter. One estimator of each class suffices: the constraints are per class.
_ONE_PER_CLASS = list({type(e): e for e in reversed(ESTIMATORS)}.values()) + [
    compat_hmm.GaussianHMM(2), compat_hmm.GMMHMM(2, n_mix=2), compat_hmm.CategoricalHMM(2),
    compat_hmm.MultinomialHMM(2), compat_hmm.PoissonHMM(2)]


@pytest.mark.parametrize("estimator", _ONE_PER_CLASS, ids=lambda e: f"{type(e).__module__.split('.')[1]}.{type(e).__name__}")
def test_parameter_constraints(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_param_validation(type(estimator).__name__, estimator)
