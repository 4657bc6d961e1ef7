"""The response families of generalised linear models, built on probkit's exponential families.

A GLM family is an exponential *dispersion* model: the density of a response ``y`` with
mean ``mu`` is ``exp((y theta - b(theta)) / phi + c(y, phi))``, where ``theta(mu)`` is the
natural parameter of the probkit distribution written as a function of its mean (at unit
dispersion) and ``phi`` the dispersion. The canonical link is ``theta(mu)`` itself (up to
the sign convention of the Gamma family), the variance function is ``V(mu) = b''(theta)``,
and the unit deviance ``d(y, mu) = 2 phi (log p(y | mu = y) - log p(y | mu))`` is what
IRLS minimises. Each family here names the probkit distribution it stands for
(:meth:`GLMFamily.distribution`): log-likelihoods and natural parameters come from it.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from probkit.glm._links import IdentityLink, InverseLink, LogitLink, LogLink, NegativeBinomialLink

__all__ = ["GLMFamily", "resolve_glm_family"]


class GLMFamily:
    """One response family of a GLM: variance, deviance, link and the probkit distribution behind it.

    Attributes
    ----------
    name : str
    dispersion : float or None
        The fixed dispersion ``phi``, or ``None`` where it is estimated (Pearson chi2 / df).
    allowed_links : frozenset of str
    weights_are_trials : bool
        ``sample_weight`` counts binomial trials (proportion responses), not repeated rows.

    Examples
    --------
    >>> import numpy as np
    >>> fam = resolve_glm_family("poisson")
    >>> fam.canonical_link()
    LogLink()
    >>> float(fam.unit_deviance(np.array([2.0]), np.array([2.0]))[0])
    0.0
    """

    name = "family"
    dispersion = 1.0
    allowed_links = frozenset()
    weights_are_trials = False
    positive_response = False
    #: A negative binomial whose total_count is estimated alongside the coefficients.
    estimate_total_count = False
    #: Sign relating the canonical link to the natural parameter: ``g(mu) = sign * theta(mu)``.
    canonical_sign = 1.0

    def canonical_link(self):
        raise NotImplementedError

    def variance(self, mu):
        raise NotImplementedError

    def unit_deviance(self, y, mu, eta=None, link=None):
        """``d(y, mu)``, twice the log-likelihood ratio of the saturated model (at unit dispersion)."""
        raise NotImplementedError

    def check_y(self, y, name="y"):
        """Raise a ``ValueError`` if ``y`` holds values outside the family's support."""

    def score_ratio(self, eta, mu, dmu, link):
        """``(d mu / d eta) / V(mu)``, the factor of ``y - mu`` in the score (1 for the canonical link)."""
        return dmu / self.variance(mu)

    def start_mu(self, y, ybar):
        """A valid starting mean for IRLS (between ``y`` and its weighted mean)."""
        return 0.5 * (y + ybar)

    def valid_mu(self, mu):
        return bool(np.all(np.isfinite(mu)))

    def distribution(self, mu, dispersion=1.0):
        """The probkit distribution of the responses (one batch member per row) with means ``mu``."""
        raise NotImplementedError

    def natural_parameter(self, mu):
        """``theta(mu)``: the natural parameter of :meth:`distribution` at unit dispersion."""
        return np.asarray(self.distribution(np.asarray(mu, dtype=float), 1.0).natural_parameters()["x"])

    def log_likelihood(self, y, mu, dispersion, trials=None):
        """Log-density of each response under :meth:`distribution`."""
        import torch

        dist = self.distribution(mu, dispersion)
        return dist._log_prob(torch.as_tensor(np.asarray(y, dtype=float))).numpy()

    def __repr__(self):
        return f"{type(self).__name__}()"


class NormalFamily(GLMFamily):
    """Normal responses: ``V(mu) = 1``, ``d = (y - mu)**2``, dispersion ``sigma**2`` estimated."""

    name = "normal"
    dispersion = None
    allowed_links = frozenset({"identity", "log", "inverse"})

    def canonical_link(self):
        return IdentityLink()

    def variance(self, mu):
        return np.ones_like(mu)

    def unit_deviance(self, y, mu, eta=None, link=None):
        return (y - mu) ** 2

    def start_mu(self, y, ybar):
        return np.full_like(y, ybar) if ybar > 0 else 0.5 * (y + ybar)

    def distribution(self, mu, dispersion=1.0):
        from probkit.distributions import Normal

        return Normal(loc=mu, scale=np.sqrt(dispersion) * np.ones_like(mu))


class _CountFamily(GLMFamily):
    """Families of counts: non-negative integer responses, positive means."""

    positive_response = True

    def check_y(self, y, name="y"):
        if np.any(y < 0):
            raise ValueError(f"{name} must hold non-negative integer counts for the {self.name} family; found "
                             f"negative values such as {y[y < 0][0]:g}")
        frac = y != np.round(y)
        if np.any(frac):
            raise ValueError(f"{name} must hold non-negative integer counts for the {self.name} family; found "
                             f"non-integer values such as {y[frac][0]:g}")

    def start_mu(self, y, ybar):
        return 0.5 * (y + ybar) + 0.1 * (ybar == 0)

    def valid_mu(self, mu):
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def _log_mu(self, mu, eta, link):
        return link.log_inverse(eta) if eta is not None else np.log(mu)


class PoissonFamily(_CountFamily):
    """Counts: ``V(mu) = mu``, ``d = 2 (y log(y / mu) - y + mu)``, canonical link log."""

    name = "poisson"
    allowed_links = frozenset({"log", "identity"})

    def canonical_link(self):
        return LogLink()

    def variance(self, mu):
        return mu

    def unit_deviance(self, y, mu, eta=None, link=None):
        return 2.0 * (special.xlogy(y, y) - y * self._log_mu(mu, eta, link) - y + mu)

    def distribution(self, mu, dispersion=1.0):
        from probkit.distributions import Poisson

        return Poisson(rate=mu)


class GammaFamily(GLMFamily):
    """Positive responses: ``V(mu) = mu**2``, ``d = 2 (log(mu / y) + y / mu - 1)``.

    The shape ``1 / phi`` is estimated (Pearson) unless given as ``Gamma(fixed_concentration=a)``;
    the exponential family is the shape-1 case.
    """

    name = "gamma"
    dispersion = None
    allowed_links = frozenset({"inverse", "log", "identity"})
    positive_response = True
    canonical_sign = -1.0

    def __init__(self, dispersion=None, exponential=False):
        self.dispersion = dispersion
        self.exponential = exponential

    def canonical_link(self):
        return InverseLink()

    def variance(self, mu):
        return mu * mu

    def unit_deviance(self, y, mu, eta=None, link=None):
        return 2.0 * (np.log(mu / y) + y / mu - 1.0)

    def check_y(self, y, name="y"):
        if np.any(y <= 0):
            bad = y[y <= 0][0]
            raise ValueError(f"{name} must be strictly positive for the {self.name} family; found {bad:g}")

    def start_mu(self, y, ybar):
        return 0.5 * (y + ybar)

    def valid_mu(self, mu):
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def distribution(self, mu, dispersion=1.0):
        if self.exponential and dispersion == 1.0:
            from probkit.distributions import Exponential

            return Exponential(rate=1.0 / mu)
        from probkit.distributions import Gamma

        return Gamma(concentration=np.full_like(mu, 1.0 / dispersion), rate=1.0 / (dispersion * mu))

    def __repr__(self):
        return f"GammaFamily(dispersion={self.dispersion!r})"


class BinomialFamily(GLMFamily):
    """Binary outcomes and proportions: ``V(mu) = mu (1 - mu)``, canonical link logit.

    With ``proportions=True`` the response is a proportion of successes in ``[0, 1]`` and
    ``sample_weight`` the number of trials of each row; otherwise ``y`` is 0/1
    (Bernoulli) and weights count repeated rows.
    """

    name = "binomial"
    allowed_links = frozenset({"logit", "probit", "cloglog"})

    def __init__(self, proportions=False):
        self.proportions = proportions
        self.weights_are_trials = proportions
        self.name = "binomial" if proportions else "bernoulli"

    def canonical_link(self):
        return LogitLink()

    def variance(self, mu):
        return mu * (1.0 - mu)

    def unit_deviance(self, y, mu, eta=None, link=None):
        if eta is not None and not self.proportions:
            return -2.0 * link.log_outcome(eta, y)  # 0/1 outcomes: the saturated model has likelihood 1
        if eta is not None:
            log_mu, log1m_mu = link.log_inverse(eta), link.log1m_inverse(eta)
        else:
            log_mu, log1m_mu = np.log(mu), np.log1p(-mu)
        # 0 * log(0) = 0: a sure outcome costs nothing when it is predicted as sure.
        loss = -np.where(y > 0, y * log_mu, 0.0) - np.where(y < 1, (1.0 - y) * log1m_mu, 0.0)
        saturated = special.xlogy(y, y) + special.xlogy(1.0 - y, 1.0 - y)
        return 2.0 * (loss + saturated)

    def check_y(self, y, name="y"):
        if self.proportions:
            if np.any((y < 0) | (y > 1)):
                raise ValueError(f"{name} must hold proportions of successes in [0, 1] for the binomial family "
                                 f"(sample_weight = number of trials); found {y[(y < 0) | (y > 1)][0]:g}")
        elif np.any((y != 0) & (y != 1)):
            raise ValueError(f"{name} must hold 0/1 outcomes for the bernoulli family; found "
                             f"{y[(y != 0) & (y != 1)][0]:g} (use GeneralizedLinearClassifier for class labels, "
                             "or family='binomial' for proportions)")

    def start_mu(self, y, ybar):
        return (y + 0.5) / 2.0

    def score_ratio(self, eta, mu, dmu, link):
        # In log space: for large |eta| both mu' and mu (1 - mu) underflow (probit, cloglog).
        return np.exp(link.log_inverse_derivative(eta) - link.log_inverse(eta) - link.log1m_inverse(eta))

    def valid_mu(self, mu):
        return bool(np.all(np.isfinite(mu)))

    def distribution(self, mu, dispersion=1.0):
        from probkit.distributions import Bernoulli

        return Bernoulli(probs=mu)

    def log_likelihood(self, y, mu, dispersion, trials=None):
        if not self.proportions or trials is None:
            return super().log_likelihood(y, mu, dispersion)
        # Binomial with n = trials and n * y successes (the number of trials varies by row,
        # which the probkit Binomial, with one total_count, does not express).
        n = trials
        k = n * y
        return (special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
                + special.xlogy(k, mu) + special.xlog1py(n - k, -mu))

    def __repr__(self):
        return f"BinomialFamily(proportions={self.proportions})"


class NegativeBinomialFamily(_CountFamily):
    """Over-dispersed counts with ``total_count`` r: ``V(mu) = mu + mu**2 / r``.

    ``d = 2 (y log(y / mu) - (y + r) log((y + r) / (mu + r)))``; the canonical link is
    ``log(mu / (mu + r))``, the log link is the usual choice.
    """

    name = "negative_binomial"
    allowed_links = frozenset({"log", "identity", "negative_binomial"})

    def __init__(self, total_count):
        self.total_count = float(total_count)

    def canonical_link(self):
        return NegativeBinomialLink(self.total_count)

    def variance(self, mu):
        return mu + mu * mu / self.total_count

    def unit_deviance(self, y, mu, eta=None, link=None):
        r = self.total_count
        return 2.0 * (special.xlogy(y, y) - y * self._log_mu(mu, eta, link)
                      - (y + r) * (np.log(y + r) - np.log(mu + r)))

    def distribution(self, mu, dispersion=1.0):
        from probkit.distributions import NegativeBinomial

        r = self.total_count
        return NegativeBinomial(total_count=np.full_like(mu, r), probs=r / (r + mu))

    def __repr__(self):
        return f"NegativeBinomialFamily(total_count={self.total_count!r})"


#: Families by name; "negative_binomial" estimates total_count unless a fixed one is given.
GLM_FAMILY_NAMES = ("normal", "gaussian", "poisson", "gamma", "exponential", "bernoulli", "binomial",
                    "negative_binomial", "negbin", "geometric")


def resolve_glm_family(family):
    """The :class:`GLMFamily` for ``family`` (a name, a probkit distribution class or an unfitted instance).

    Returns the family and, for a negative binomial whose ``total_count`` is to be
    estimated, a family at a provisional ``total_count`` of 1 with ``estimate_total_count``
    set to ``True``.

    Examples
    --------
    >>> resolve_glm_family("gamma")
    GammaFamily(dispersion=None)
    >>> from probkit.distributions import NegativeBinomial
    >>> resolve_glm_family(NegativeBinomial(fixed_total_count=2.0))
    NegativeBinomialFamily(total_count=2.0)
    """
    import inspect

    from probkit.distributions import (Bernoulli, Binomial, Exponential, ExponentialFamily, Gamma, Geometric,
                                       NegativeBinomial, Normal, Poisson)

    if isinstance(family, str):
        key = family.lower()
        simple = {"normal": NormalFamily, "gaussian": NormalFamily, "poisson": PoissonFamily}
        if key in simple:
            return simple[key]()
        if key == "gamma":
            return GammaFamily()
        if key == "exponential":
            return GammaFamily(dispersion=1.0, exponential=True)
        if key == "bernoulli":
            return BinomialFamily(proportions=False)
        if key == "binomial":
            return BinomialFamily(proportions=True)
        if key in ("negative_binomial", "negbin"):
            return _estimated_negative_binomial()
        if key == "geometric":
            return NegativeBinomialFamily(1.0)
        hint = " (class labels: use GeneralizedLinearClassifier)" if key in ("categorical", "multinomial") else ""
        raise ValueError(f"unknown GLM family {family!r}{hint}; expected one of {list(GLM_FAMILY_NAMES)} or a "
                         "probkit distribution (class or unfitted instance) of these families")
    if inspect.isclass(family) and issubclass(family, ExponentialFamily):
        return resolve_glm_family(_CLASS_TO_NAME.get(family.__name__, family.__name__))
    if isinstance(family, ExponentialFamily):
        if isinstance(family, Gamma):
            fixed = family.fixed_concentration
            return GammaFamily(dispersion=None if fixed is None else 1.0 / fixed)
        if isinstance(family, NegativeBinomial):
            if family.fixed_total_count is None:
                return _estimated_negative_binomial()
            return NegativeBinomialFamily(family.fixed_total_count)
        if isinstance(family, Binomial):
            raise ValueError("a Binomial with a fixed total_count is not a GLM family here: pass family='binomial' "
                             "with y the proportion of successes and sample_weight the number of trials")
        if isinstance(family, (Normal, Poisson, Exponential, Bernoulli, Geometric)):
            return resolve_glm_family(type(family))
    hint = (" (class labels: use GeneralizedLinearClassifier)"
            if type(family).__name__ in ("Categorical", "Multinomial") or getattr(family, "__name__", "") in (
                "Categorical", "Multinomial") else "")
    raise ValueError(f"family {family!r} has no GLM here{hint}; expected one of {list(GLM_FAMILY_NAMES)} or a probkit "
                     "Normal, Poisson, Gamma, Exponential, Bernoulli, Binomial, NegativeBinomial or Geometric")


_CLASS_TO_NAME = {"Normal": "normal", "Poisson": "poisson", "Gamma": "gamma", "Exponential": "exponential",
                  "Bernoulli": "bernoulli", "Binomial": "binomial", "NegativeBinomial": "negative_binomial",
                  "Geometric": "geometric"}


def _estimated_negative_binomial():
    fam = NegativeBinomialFamily(1.0)
    fam.estimate_total_count = True
    return fam

