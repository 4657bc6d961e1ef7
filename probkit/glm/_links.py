"""Link functions ``eta = g(mu)`` of generalised linear models.

A link maps the mean ``mu`` of the response to the linear predictor ``eta = X beta``.
IRLS needs the link, its inverse and ``d mu / d eta``; the binary families also need
``log mu`` and ``log(1 - mu)`` computed in the ``eta`` domain, without the rounding of
``mu`` to 0 or 1 that a direct ``log(inverse(eta))`` suffers for large ``|eta|``.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["LINKS", "Link", "resolve_link"]


class Link:
    """A link function ``eta = g(mu)`` and what IRLS needs of it.

    Subclasses implement :meth:`link`, :meth:`inverse` and :meth:`inverse_derivative`;
    ``eta_domain`` is ``(low, high)``, the open interval of valid linear predictors.

    Examples
    --------
    >>> import numpy as np
    >>> link = LINKS["logit"]()
    >>> float(link.inverse(np.array([0.0]))[0])
    0.5
    """

    name = "link"
    eta_domain = (-np.inf, np.inf)

    def link(self, mu):
        raise NotImplementedError

    def inverse(self, eta):
        raise NotImplementedError

    def inverse_derivative(self, eta):
        """``d mu / d eta`` at ``eta``."""
        raise NotImplementedError

    def log_inverse_derivative(self, eta):
        """``log|d mu / d eta|`` (binary links override it with a form that does not underflow)."""
        return np.log(np.abs(self.inverse_derivative(eta)))

    def valid_eta(self, eta):
        """Whether every linear predictor lies in the domain of the inverse link."""
        low, high = self.eta_domain
        return bool(np.all(eta > low) and np.all(eta < high))

    def log_inverse(self, eta):
        """``log(mu)`` (binary families override it with a stable form)."""
        return np.log(self.inverse(eta))

    def log1m_inverse(self, eta):
        """``log(1 - mu)``."""
        return np.log1p(-self.inverse(eta))

    def log_outcome(self, eta, y):
        """``log mu`` where ``y`` is 1 and ``log(1 - mu)`` where it is 0: the Bernoulli log-likelihood."""
        return np.where(y > 0, self.log_inverse(eta), self.log1m_inverse(eta))

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self), tuple(sorted(vars(self).items()))))


class IdentityLink(Link):
    """``eta = mu``: the canonical link of the normal family.

    Examples
    --------
    >>> float(IdentityLink().inverse(np.array([2.5]))[0])
    2.5
    """

    name = "identity"

    def link(self, mu):
        return np.asarray(mu, dtype=float)

    def inverse(self, eta):
        return np.asarray(eta, dtype=float)

    def inverse_derivative(self, eta):
        return np.ones_like(eta, dtype=float)


class LogLink(Link):
    """``eta = log(mu)``: canonical for the Poisson family, the usual choice for Gamma and negative binomial.

    Examples
    --------
    >>> float(LogLink().link(np.array([np.e]))[0])
    1.0
    """

    name = "log"

    def link(self, mu):
        return np.log(mu)

    def inverse(self, eta):
        return np.exp(eta)

    def inverse_derivative(self, eta):
        return np.exp(eta)

    def log_inverse(self, eta):
        return np.asarray(eta, dtype=float)


class _SymmetricBinaryLink(Link):
    """A binary link whose inverse ``F`` is symmetric, ``1 - F(eta) = F(-eta)``: ``log(1 - mu)`` and
    the Bernoulli log-likelihood come from the stable ``log F`` at ``-eta``."""

    def log1m_inverse(self, eta):
        return self.log_inverse(-np.asarray(eta))

    def log_outcome(self, eta, y):
        return self.log_inverse(np.where(y > 0, eta, -np.asarray(eta)))


class LogitLink(_SymmetricBinaryLink):
    """``eta = log(mu / (1 - mu))``: canonical for the Bernoulli and binomial families.

    Examples
    --------
    >>> LogitLink().log_inverse(np.array([-800.0, 0.0])).round(4).tolist()
    [-800.0, -0.6931]
    """

    name = "logit"

    def link(self, mu):
        return special.logit(mu)

    def inverse(self, eta):
        return special.expit(eta)

    def inverse_derivative(self, eta):
        mu = special.expit(eta)
        return mu * (1.0 - mu)

    def log_inverse(self, eta):
        return special.log_expit(eta)

    def log_inverse_derivative(self, eta):
        return special.log_expit(eta) + special.log_expit(-np.asarray(eta))


class ProbitLink(_SymmetricBinaryLink):
    """``eta = Phi^{-1}(mu)``, the standard normal quantile: probit regression.

    Examples
    --------
    >>> round(float(ProbitLink().inverse(np.array([1.959963984540054]))[0]), 6)
    0.975
    """

    name = "probit"

    def link(self, mu):
        return special.ndtri(mu)

    def inverse(self, eta):
        return special.ndtr(eta)

    def inverse_derivative(self, eta):
        return np.exp(-0.5 * np.asarray(eta) ** 2) / np.sqrt(2 * np.pi)

    def log_inverse(self, eta):
        return special.log_ndtr(eta)

    def log_inverse_derivative(self, eta):
        return -0.5 * np.asarray(eta) ** 2 - 0.5 * np.log(2 * np.pi)


class CLogLogLink(Link):
    """``eta = log(-log(1 - mu))``: the complementary log-log link of binary data.

    Examples
    --------
    >>> round(float(CLogLogLink().inverse(np.array([0.0]))[0]), 6)
    0.632121
    """

    name = "cloglog"

    def link(self, mu):
        return np.log(-np.log1p(-np.asarray(mu)))

    def inverse(self, eta):
        return -np.expm1(-np.exp(eta))

    def inverse_derivative(self, eta):
        return np.exp(eta - np.exp(eta))

    def log_inverse_derivative(self, eta):
        return np.asarray(eta) - np.exp(eta)

    def log_inverse(self, eta):
        # log(1 - exp(-u)) with u = exp(eta), written as eta + log((1 - exp(-u)) / u): no 0/0 as u -> 0
        # for eta <= 0, and log1p(-exp(-u)) above, where the first form cancels.
        eta = np.asarray(eta, dtype=float)
        u = np.exp(eta)
        with np.errstate(divide="ignore"):
            return np.where(eta <= 0, eta + np.log(special.exprel(-u)), np.log1p(-np.exp(-u)))

    def log1m_inverse(self, eta):
        return -np.exp(eta)


class InverseLink(Link):
    """``eta = 1 / mu``: the canonical link of the Gamma family (natural parameter ``-1 / mu``, sign flipped by convention).

    Valid linear predictors are positive (``mu > 0``).

    Examples
    --------
    >>> float(InverseLink().inverse(np.array([4.0]))[0])
    0.25
    """

    name = "inverse"
    eta_domain = (0.0, np.inf)

    def link(self, mu):
        return 1.0 / np.asarray(mu, dtype=float)

    def inverse(self, eta):
        return 1.0 / np.asarray(eta, dtype=float)

    def inverse_derivative(self, eta):
        return -1.0 / np.asarray(eta, dtype=float) ** 2


class NegativeBinomialLink(Link):
    """``eta = log(mu / (mu + r))``: the canonical link of the negative binomial with ``total_count`` r.

    It is the natural parameter ``log(1 - probs)`` written in terms of the mean; valid
    linear predictors are negative.

    Parameters
    ----------
    total_count : float
        The fixed ``r > 0``.

    Examples
    --------
    >>> link = NegativeBinomialLink(2.0)
    >>> round(float(link.inverse(link.link(np.array([3.0])))[0]), 12)
    3.0
    """

    name = "negative_binomial"
    eta_domain = (-np.inf, 0.0)

    def __init__(self, total_count):
        self.total_count = float(total_count)

    def link(self, mu):
        mu = np.asarray(mu, dtype=float)
        return np.log(mu / (mu + self.total_count))

    def inverse(self, eta):
        return self.total_count / np.expm1(-np.asarray(eta, dtype=float))

    def inverse_derivative(self, eta):
        em = np.expm1(-np.asarray(eta, dtype=float))
        return self.total_count * (em + 1.0) / (em * em)

    def __repr__(self):
        return f"NegativeBinomialLink(total_count={self.total_count!r})"


#: Links by name (``link="log"``); ``"canonical"`` is resolved by the family.
LINKS = {cls.name: cls for cls in (IdentityLink, LogLink, LogitLink, ProbitLink, CLogLogLink, InverseLink)}


def resolve_link(link, family):
    """The :class:`Link` object for the name ``link`` (or ``"canonical"``) in ``family``.

    Parameters
    ----------
    link : str
    family : GLMFamily
        Decides what ``"canonical"`` means and which links are allowed.

    Examples
    --------
    >>> from probkit.glm._families import resolve_glm_family
    >>> resolve_link("canonical", resolve_glm_family("poisson"))
    LogLink()
    """
    if not isinstance(link, str):
        raise TypeError(f"link must be a string ('canonical' or a link name), got {type(link).__name__}")
    key = link.lower()
    if key == "canonical":
        return family.canonical_link()
    if key not in family.allowed_links:
        raise ValueError(f"link {link!r} is not available for the {family.name} family; expected 'canonical' or one "
                         f"of {sorted(family.allowed_links)}")
    if key == "negative_binomial":
        return family.canonical_link()
    return LINKS[key]()
