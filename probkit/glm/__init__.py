"""Generalised linear models of exponential-family responses.

:class:`GeneralizedLinearModel` regresses a response of any probkit family with a
natural parameter (normal, Poisson, Gamma, Bernoulli/binomial proportions, negative
binomial) on features; :class:`GeneralizedLinearClassifier` is its classifier face for
class labels (logistic and softmax regression). Both are fitted by penalised IRLS
(Newton's method with a line search; proximal Newton for an L1 penalty).

Examples
--------
>>> import numpy as np
>>> from probkit.glm import GeneralizedLinearModel
>>> X = np.arange(6.0).reshape(-1, 1)
>>> GeneralizedLinearModel(family="poisson").fit(X, [1, 1, 2, 3, 5, 8]).coef_.round(3)
array([0.463])
"""

from probkit.glm._classifier import GeneralizedLinearClassifier
from probkit.glm._design import PerfectSeparationError
from probkit.glm._links import LINKS
from probkit.glm._regressor import GeneralizedLinearModel

__all__ = ["LINKS", "GeneralizedLinearClassifier", "GeneralizedLinearModel", "PerfectSeparationError"]
