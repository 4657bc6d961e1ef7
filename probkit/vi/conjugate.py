"""Variational Bayes with conjugate exponential families: :class:`ConjugateFamily`.

For a likelihood ``p(x | theta) = h(x) exp(<eta(theta), T(x)> - A(theta))`` with a
conjugate prior ``p(theta)``, mean-field variational Bayes keeps ``q(theta)`` in the
prior's family, and everything the coordinate-ascent updates need is

* the posterior from weighted statistics: ``q(theta) = p(theta | sum_n r_n T(x_n), sum_n r_n)``
  (the family's own :meth:`~probkit.distributions.ExponentialFamily.posterior`);
* the expected log-likelihood under ``q``:
  ``E_q[log p(x | theta)] = log h(x) + <E_q[eta], T(x)> - E_q[A]``, which needs only
  the expected natural parameters and the expected log-partition (tabulated below);
* ``KL(q || p)`` between two members of the prior's family (``prior._kl``).

The table (``q`` in brackets):

==================  ==================  ===========================================  =====================================
family              prior / posterior   ``E[eta]``                                   ``E[A]``
==================  ==================  ===========================================  =====================================
Normal, LogNormal   NormalGamma         ``(E[tau mu], -E[tau] / 2)``                  ``(E[tau mu^2] - E[log tau]) / 2``
MultivariateNormal  NormalWishart       ``(nu W m, -nu W / 2)``                       ``(d/kappa + nu m'Wm - E log|L|) / 2``
Poisson             Gamma(a, b)         ``digamma(a) - log b``                        ``a / b``
Exponential         Gamma(a, b)         ``-a / b``                                    ``log b - digamma(a)``
Categorical         Dirichlet(alpha)    ``digamma(alpha) - digamma(sum alpha)``       ``0``
Multinomial         Dirichlet(alpha)    same                                          ``0``
Bernoulli           Beta(c1, c0)        ``digamma(c1) - digamma(c0)``                 ``digamma(c) - digamma(c0)``
Binomial(n)         Beta(c1, c0)        same                                          ``n (digamma(c) - digamma(c0))``
Geometric           Beta(c1, c0)        ``digamma(c0) - digamma(c)``                  ``digamma(c) - digamma(c1)``
==================  ==================  ===========================================  =====================================

(``c = c1 + c0``.) A scalar family over several columns is a product over the columns
(one posterior per component and column), as in :class:`~probkit.MixtureModel`.
"""

from __future__ import annotations

import numpy as np
import torch

from probkit.distributions import (
    Beta,
    Categorical,
    Dirichlet,
    Exponential,
    Gamma,
    MultivariateNormal,
    NormalGamma,
    NormalWishart,
    Poisson,
)
from probkit.distributions.base import SufficientStats
from probkit.distributions.registry import resolve_family

__all__ = ["CONJUGATE_FAMILIES", "ConjugateFamily"]

CONJUGATE_FAMILIES = ("Normal", "LogNormal", "MultivariateNormal", "Poisson", "Exponential", "Categorical",
                      "Multinomial", "Bernoulli", "Binomial", "Geometric")

_PRIOR_TYPES = {
    "Normal": NormalGamma, "LogNormal": NormalGamma, "MultivariateNormal": NormalWishart, "Poisson": Gamma,
    "Exponential": Gamma, "Categorical": Dirichlet, "Multinomial": Dirichlet, "Bernoulli": Beta,
    "Binomial": Beta, "Geometric": Beta,
}


def _dg(t):
    return torch.digamma(t)


class ConjugateFamily:
    """A likelihood family with its conjugate prior, and the variational-Bayes operations on them.

    Parameters
    ----------
    family : str, ExponentialFamily class or instance
        One of :data:`CONJUGATE_FAMILIES` (by name as in
        :func:`~probkit.distributions.registry.resolve_family`, e.g. ``"poisson"``,
        ``"gaussian"``). A Gaussian must have ``covariance_type="full"`` (the Normal-Wishart
        prior); use ``"normal"`` for independent features with Normal-Gamma priors.

    Attributes
    ----------
    template : ExponentialFamily
        The unfitted likelihood family (with its options, e.g. ``n_categories``).
    scalar : bool
        Whether samples are scalars; data then have one column per independent feature.

    Examples
    --------
    Three Poisson counts and a Gamma(1, 1) prior: the posterior is Gamma(1 + 9, 1 + 3).

    >>> import numpy as np, torch
    >>> fam = ConjugateFamily("poisson")
    >>> x = fam.as_data(np.array([[2], [3], [4]]))
    >>> prior = Gamma(concentration=1.0, rate=1.0)
    >>> post = fam.posterior(fam.summarize(x, torch.ones(3, 1, dtype=torch.float64)), prior)
    >>> post.concentration.tolist(), post.rate.tolist()
    ([[10.0]], [[4.0]])
    >>> fam.expected_log_likelihood(post, x).shape
    torch.Size([3, 1])
    """

    def __init__(self, family):
        template = resolve_family(family)
        name = type(template).__name__
        if name not in _PRIOR_TYPES:
            raise ValueError(
                f"{name} has no conjugate prior usable for variational Bayes; supported families: "
                f"{list(CONJUGATE_FAMILIES)}"
            )
        if name == "MultivariateNormal":
            if template.covariance_type != "full":
                raise ValueError("a MultivariateNormal family needs covariance_type='full' (Normal-Wishart prior); "
                                 "use family='normal' for independent features")
            template = MultivariateNormal(covariance_type="full")
        self.template = template
        self.name = name
        self.prior_type = _PRIOR_TYPES[name]
        self.scalar = template.event_ndim == 0

    # ------------------------------------------------------------------ data
    def as_data(self, X):
        """Validate ``X`` (n, d) against the family's support and return it as a float64 tensor."""
        x = torch.as_tensor(np.asarray(X, dtype=np.float64)) if not isinstance(X, torch.Tensor) else X.to(torch.float64)
        if x.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("X contains NaN or infinity")
        if self.name == "Categorical" and self.template.n_categories is None:
            self.template = Categorical(n_categories=int(x.max()) + 1)
        self.template._validate_support(x, "X")
        self.center_on(x)
        return x

    def center_on(self, x):
        """Accumulate statistics about the mean of ``x`` (n, d): data far from the origin keep their digits.

        Only the normal families change (see :meth:`ExponentialFamily.centered`); a scalar
        family gets one centre per column.
        """
        if self.name in ("Normal", "LogNormal", "MultivariateNormal"):
            self.template = self.template.centered(x.detach().to(torch.float64).cpu().mean(0))
        return self

    def _stats(self, x):
        # (n, d, *s) for a scalar family over d columns, (n, *s) for a vector family
        return self.template._statistics_for_sums(x)

    def summarize(self, x, resp):
        """Weighted statistics per component: ``resp`` (n, K) -> SufficientStats with batch (K[, d])."""
        n = x.shape[0]
        k = resp.shape[1]
        if self.scalar:
            d = x.shape[1]
            fields = {"count": resp.sum(0).unsqueeze(1).expand(k, d).clone()}
            for key, t in self._stats(x).items():
                extra = t.shape[2:]
                fields[key] = (resp.T @ t.reshape(n, -1)).reshape(k, d, *extra)
            return SufficientStats(self.name, fields, self.template._stats_meta())
        return self.template._summarize(x, resp)

    # ------------------------------------------------------------------ priors
    def default_prior(self, x):
        """A weak, data-scaled prior (scikit-learn's convention for Gaussians).

        Normal: ``NormalGamma(mean, 1, 1/2, var/2)`` per column (``E[tau] = 1/var``);
        Gaussian: ``NormalWishart(mean, 1, d, cov)``; Poisson: ``Gamma(1, 1/mean)``;
        Exponential: ``Gamma(1, mean)``; Categorical / Multinomial: ``Dirichlet(1)``;
        Bernoulli / Binomial / Geometric: ``Beta(1, 1)``.
        """
        xn = x.detach().cpu().numpy()
        name = self.name
        if name in ("Normal", "LogNormal"):
            y = np.log(xn) if name == "LogNormal" else xn
            var = np.maximum(y.var(0, ddof=1) if len(y) > 1 else np.ones(y.shape[1]), 1e-12)
            return NormalGamma(loc=y.mean(0), mean_precision=np.ones_like(var), concentration=np.full_like(var, 0.5),
                               rate=0.5 * var)
        if name == "MultivariateNormal":
            d = xn.shape[1]
            cov = np.atleast_2d(np.cov(xn.T)) if len(xn) > 1 else np.eye(d)
            cov = cov + 1e-9 * np.trace(cov) / d * np.eye(d)
            return NormalWishart(loc=xn.mean(0), mean_precision=1.0, degrees_of_freedom=float(d), covariance=cov)
        if name == "Poisson":
            mean = np.maximum(xn.mean(0), 1e-3)
            return Gamma(concentration=np.ones_like(mean), rate=1.0 / mean)
        if name == "Exponential":
            mean = np.maximum(xn.mean(0), 1e-12)
            return Gamma(concentration=np.ones_like(mean), rate=mean)
        if name == "Categorical":
            return Dirichlet(concentration=np.ones(self.template.n_categories))
        if name == "Multinomial":
            return Dirichlet(concentration=np.ones(xn.shape[1]))
        return Beta(concentration1=np.ones(xn.shape[1]), concentration0=np.ones(xn.shape[1]))

    def check_prior(self, prior, n_components, n_features):
        """Validate a user prior: its type, and that its batch shape broadcasts to the components."""
        if not isinstance(prior, self.prior_type):
            raise TypeError(f"the prior of a {self.name} family must be a {self.prior_type.__name__}, "
                            f"got {type(prior).__name__}")
        prior._require_params()
        batch = tuple(prior.batch_shape)
        target = (n_components, n_features) if self.scalar else (n_components,)
        try:
            shape = torch.broadcast_shapes(batch, target)
        except RuntimeError:
            shape = None
        if shape != torch.Size(target):
            raise ValueError(f"the prior's batch shape {batch} does not broadcast to {target} "
                             f"(n_components{', n_features' if self.scalar else ''})")
        if self.name == "MultivariateNormal" and prior.n_features != n_features:
            raise ValueError(f"the NormalWishart prior has {prior.n_features} features, X has {n_features}")
        if self.name in ("Categorical", "Multinomial"):
            m = prior.n_categories
            expected = self.template.n_categories if self.name == "Categorical" else n_features
            if expected is not None and m != expected:
                raise ValueError(f"the Dirichlet prior has {m} categories, the data have {expected}")
        return prior

    # ------------------------------------------------------------------ VB operations
    def posterior(self, stats, prior):
        """``q(theta)`` from weighted statistics (batch (K[, d]))."""
        return self.template._posterior(stats, prior)

    def kl(self, post, prior):
        """``KL(q || p)`` summed to one value per component, shape (K,)."""
        kl = post._kl(prior)
        kl = kl.expand(post._batch_shape) if kl.ndim < len(post._batch_shape) else kl
        return kl.reshape(kl.shape[0], -1).sum(1)

    def expected_natural(self, post):
        """``(E[eta], E[A])``: expected natural parameters (dict keyed like ``T(x)``) and log-partition."""
        name = self.name
        p = post._params
        if name in ("Normal", "LogNormal"):
            m, kappa, a, b = p["loc"], p["mean_precision"], p["concentration"], p["rate"]
            shape = post._batch_shape
            e_tau = (a / b).expand(shape)
            e_tau_mu = (m * a / b).expand(shape)
            e_tau_mu2 = (1.0 / kappa + m * m * a / b).expand(shape)
            e_log_tau = (_dg(a) - torch.log(b)).expand(shape)
            keys = ("x", "xx") if name == "Normal" else ("log_x", "log_x_sq")
            return {keys[0]: e_tau_mu, keys[1]: -0.5 * e_tau}, 0.5 * (e_tau_mu2 - e_log_tau)
        if name == "MultivariateNormal":
            m, kappa, nu = p["loc"], p["mean_precision"], p["degrees_of_freedom"]
            d = m.shape[-1]
            batch = post._batch_shape
            e_prec = nu[..., None, None] * post._scale_matrix()
            e_prec_m = (e_prec @ m.unsqueeze(-1)).squeeze(-1)
            e_quad = d / kappa + (m * e_prec_m).sum(-1)
            e_a = 0.5 * (e_quad - post._expected_log_det())
            return {"x": e_prec_m.expand(*batch, d), "xx": (-0.5 * e_prec).expand(*batch, d, d)}, e_a.expand(batch)
        if name in ("Poisson", "Exponential"):
            a, b = p["concentration"], p["rate"]
            e_log = _dg(a) - torch.log(b)
            if name == "Poisson":
                return {"x": e_log}, a / b
            return {"x": -a / b}, -e_log
        if name in ("Categorical", "Multinomial"):
            alpha = p["concentration"]
            e_log = _dg(alpha) - _dg(alpha.sum(-1, keepdim=True))
            return {"x": e_log}, torch.zeros(post._batch_shape, dtype=alpha.dtype, device=alpha.device)
        c1, c0 = p["concentration1"], p["concentration0"]
        c = c1 + c0
        if name == "Bernoulli":
            return {"x": _dg(c1) - _dg(c0)}, _dg(c) - _dg(c0)
        if name == "Binomial":
            return {"x": _dg(c1) - _dg(c0)}, self.template.total_count * (_dg(c) - _dg(c0))
        return {"x": _dg(c0) - _dg(c)}, _dg(c) - _dg(c1)  # Geometric

    def expected_log_likelihood(self, post, x):
        """``E_q[log p(x_n | theta_k)]`` for every row and component: (n, K)."""
        n = x.shape[0]
        k = post._batch_shape[0]
        base = self.template._log_base_measure(x)
        if self.name in ("Normal", "LogNormal", "MultivariateNormal"):
            return base.reshape(n, -1).sum(1, keepdim=True) + self._expected_gaussian_log_kernel(post, x)
        eta, e_a = self.expected_natural(post)
        stats = self.template._sufficient_statistics(x)
        out = base.reshape(n, -1).sum(1, keepdim=True) - e_a.reshape(k, -1).sum(1).unsqueeze(0)
        for key, t in stats.items():
            e = eta[key]
            if self.name == "MultivariateNormal" and key == "xx":
                # <E[eta_xx], x x^T> = x^T E[eta_xx] x, without forming (n, d, d) outer products
                out = out + torch.einsum("nd,kde,ne->nk", x, e.expand(k, *e.shape[-2:]), x)
                continue
            out = out + t.reshape(n, -1) @ e.reshape(k, -1).T
        return out

    def _expected_gaussian_log_kernel(self, post, x):
        """``E_q[log N(g(x) | mu, precision)]`` without the base measure, in centred form.

        ``E[<eta, T(x)>] - E[A]`` expands ``x**2`` and cancels catastrophically for data far
        from the origin; ``-1/2 E[tau] (y - m)**2 - 1/(2 kappa) + E[log tau]/2`` (and its
        matrix form) does not.
        """
        p = post._params
        if self.name == "MultivariateNormal":
            m, kappa, nu = p["loc"], p["mean_precision"], p["degrees_of_freedom"]
            d = m.shape[-1]
            e_prec = nu[..., None, None] * post._scale_matrix()
            diff = x.unsqueeze(1) - m  # (n, K, d)
            quad = torch.einsum("nkd,kde,nke->nk", diff, e_prec.expand(m.shape[0], d, d), diff)
            const = 0.5 * (post._expected_log_det() - d / kappa)
            return const.reshape(1, -1) - 0.5 * quad
        m, kappa, a, b = p["loc"], p["mean_precision"], p["concentration"], p["rate"]
        shape = post._batch_shape  # (K, d)
        e_tau = (a / b).expand(shape)
        const = (0.5 * (_dg(a) - torch.log(b)) - 0.5 / kappa).expand(shape).sum(-1)
        y = self.template._transform(x)  # (n, d)
        diff = y.unsqueeze(1) - m.expand(shape)
        return const.unsqueeze(0) - 0.5 * (e_tau * diff * diff).sum(-1)

    def point_estimate(self, post):
        """The likelihood family at the posterior means of its mean-like parameters (batched)."""
        name = self.name
        p = post._params
        opts = self.template._options()
        if name in ("Normal", "LogNormal"):
            scale = torch.sqrt(p["rate"] / p["concentration"]).expand(post._batch_shape)
            return type(self.template)(loc=p["loc"].expand(post._batch_shape), scale=scale, **opts)
        if name == "MultivariateNormal":
            cov = post._params["covariance"] / p["degrees_of_freedom"][..., None, None]
            return MultivariateNormal(mean=p["loc"], covariance=0.5 * (cov + cov.mT), covariance_type="full")
        if name == "Poisson":
            return Poisson(rate=p["concentration"] / p["rate"], **opts)
        if name == "Exponential":
            return Exponential(rate=p["concentration"] / p["rate"])
        if name in ("Categorical", "Multinomial"):
            alpha = p["concentration"]
            return type(self.template)(probs=alpha / alpha.sum(-1, keepdim=True), **opts)
        probs = p["concentration1"] / (p["concentration1"] + p["concentration0"])
        return type(self.template)(probs=probs, **opts)
