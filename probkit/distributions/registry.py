"""Look up distribution families by name (``MixtureModel(family="poisson")``)."""

from __future__ import annotations

import inspect

__all__ = ["FAMILY_NAMES", "matrix_rows", "resolve_family"]

# name -> class name in probkit.distributions
FAMILY_NAMES = {
    "normal": "Normal",
    "gaussian": "MultivariateNormal",
    "multivariate_normal": "MultivariateNormal",
    "mvn": "MultivariateNormal",
    "poisson": "Poisson",
    "gamma": "Gamma",
    "categorical": "Categorical",
    "bernoulli": "Bernoulli",
    "binomial": "Binomial",
    "geometric": "Geometric",
    "multinomial": "Multinomial",
    "exponential": "Exponential",
    "beta": "Beta",
    "dirichlet": "Dirichlet",
    "lognormal": "LogNormal",
    "laplace": "Laplace",
    "negative_binomial": "NegativeBinomial",
    "negbin": "NegativeBinomial",
    "student_t": "StudentT",
    "t": "StudentT",
    "multivariate_t": "MultivariateStudentT",
    "multivariate_student_t": "MultivariateStudentT",
    "mvt": "MultivariateStudentT",
    "von_mises": "VonMises",
    "vonmises": "VonMises",
    "wishart": "Wishart",
    "inverse_wishart": "InverseWishart",
    "invwishart": "InverseWishart",
}

# Defaults that differ from the class's own when a family is named in an estimator: a
# Gaussian component gets scikit-learn's covariance regularisation.
DEFAULT_OPTIONS = {"MultivariateNormal": {"reg_covar": 1e-6}, "MultivariateStudentT": {"reg_covar": 1e-6}}


def resolve_family(family, **options):
    """Return an unfitted distribution *template* for ``family``.

    Parameters
    ----------
    family : str, ExponentialFamily subclass or instance
        A name from ``FAMILY_NAMES`` (case-insensitive), a class, or an instance whose
        options (e.g. ``covariance_type``) are kept; parameter values of an instance are ignored.
    **options
        Constructor options for a family given by name or class.

    Examples
    --------
    >>> resolve_family("poisson")
    Poisson(min_rate=0.0)
    """
    import probkit.distributions as dists
    from probkit.distributions.base import ExponentialFamily

    if isinstance(family, str):
        key = family.lower()
        if key not in FAMILY_NAMES or not hasattr(dists, FAMILY_NAMES[key]):
            known = sorted(k for k, v in FAMILY_NAMES.items() if hasattr(dists, v))
            raise ValueError(f"unknown family {family!r}; expected one of {known} or a distribution class/instance")
        cls_name = FAMILY_NAMES[key]
        return getattr(dists, cls_name)(**{**DEFAULT_OPTIONS.get(cls_name, {}), **options})
    if inspect.isclass(family) and issubclass(family, ExponentialFamily):
        return family(**{**DEFAULT_OPTIONS.get(family.__name__, {}), **options})
    from probkit.distributions.independent import Independent

    if isinstance(family, Independent):
        return Independent([resolve_family(c) for c in family.components])
    if isinstance(family, ExponentialFamily):
        return family._new()
    if hasattr(family, "_summarize") and hasattr(family, "from_stats"):
        return family
    raise TypeError(f"family must be a name, an ExponentialFamily class or instance, got {type(family).__name__}")


def matrix_rows(x, name="X"):
    """Rows of ``p * p`` values as ``p x p`` matrices: how estimators over 2-D data see matrix families.

    Mixtures and HMMs take 2-D data; a family whose samples are matrices (``event_ndim == 2``,
    e.g. :class:`~probkit.distributions.Wishart`) reads each row as a matrix flattened in
    row-major order, and their ``sample`` methods return the draws flattened the same way.

    Parameters
    ----------
    x : torch.Tensor of shape (n_samples, p * p)

    Returns
    -------
    torch.Tensor of shape (n_samples, p, p)

    Examples
    --------
    >>> import torch
    >>> matrix_rows(torch.arange(8.0).reshape(2, 4))[1]
    tensor([[4., 5.],
            [6., 7.]])
    """
    n, d = x.shape
    p = int(round(d ** 0.5))
    if p * p != d:
        raise ValueError(f"{name} must hold flattened p x p matrices (p * p columns) for a matrix family, got {d} columns")
    return x.reshape(n, p, p)
