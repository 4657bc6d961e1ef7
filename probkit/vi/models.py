"""Pyro models and guides behind the estimators' ``inference="svi"`` and ``inference="nuts"``.

:class:`GaussianMixtureSVI`
    The Bayesian Gaussian mixture of :class:`~probkit.BayesianGaussianMixture`
    (full covariances): Dirichlet or truncated stick-breaking weights, Normal-Wishart
    components, assignments summed out by enumeration.

Guides keep the conjugate families of the coordinate-ascent posterior (Dirichlet/Beta,
Wishart, normal given the precision), so SVI optimises over the same variational
family as CAVI and its result is read back as the same posterior attributes.

For NUTS the Wishart precision is reparametrised by Bartlett's decomposition
(``precision = L A A^T L^T`` with ``A_ii^2 ~ chi2(nu - i)``, ``A_ij ~ N(0, 1)`` below the
diagonal, ``L L^T`` the Wishart scale), an exact change of variables whose pieces have
unconstrained transforms (torch has no bijection onto positive-definite matrices).
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from torch.distributions import constraints

from probkit.vi.mcmc import run_nuts
from probkit.vi.svi import fit_svi

__all__ = ["GaussianMixtureSVI"]


class Wishart(dist.Wishart):
    """Pyro's Wishart with a plain Bartlett ``rsample``.

    torch 2.13's ``Wishart.rsample`` tests ``support.check(sample)`` where it means
    "singular" (the negation is missing), so every valid draw is thrown away and drawn
    again inside a correction loop, with a warning; here a draw is just the Bartlett
    decomposition, reparameterised through the chi-square (gamma) draws.
    """

    def rsample(self, sample_shape=torch.Size()):
        return self._bartlett_sampling(torch.Size(sample_shape))


def _stick_log_weights(v):
    """``log pi_k = log v_k + sum_{j<k} log(1 - v_j)`` over the last axis."""
    log_1mv = torch.log1p(-v)
    cum = torch.cumsum(log_1mv, -1)
    shifted = torch.cat([torch.zeros_like(cum[..., :1]), cum[..., :-1]], -1)
    return torch.log(v) + shifted


class GaussianMixtureSVI:
    """The Bayesian Gaussian mixture as a Pyro model, with a conjugate-family guide.

    Parameters
    ----------
    n_components : int
    weight_prior_type : {"dirichlet_process", "dirichlet_distribution"}
    weight_prior : float
        Stick concentration ``gamma`` or Dirichlet ``alpha0``.
    mean_prior : array-like (d,)
    mean_precision_prior : float
    dof_prior : float
    covariance_prior : array-like (d, d)
        The Wishart inverse scale ``Psi0``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> spec = GaussianMixtureSVI(2, "dirichlet_distribution", 1.0, np.zeros(1), 1.0, 1.0, np.eye(1))
    >>> x = torch.tensor([[-2.0], [-2.1], [2.0], [2.2]], dtype=torch.float64)
    >>> import pyro.poutine as poutine
    >>> tr = poutine.trace(spec.model).get_trace(x)
    >>> tr.nodes["precision"]["value"].shape, tr.nodes["mean"]["value"].shape
    (torch.Size([2, 1, 1]), torch.Size([2, 1]))
    """

    def __init__(self, n_components, weight_prior_type, weight_prior, mean_prior, mean_precision_prior, dof_prior,
                 covariance_prior):
        self.k = int(n_components)
        self.dp = weight_prior_type == "dirichlet_process"
        self.weight_prior = float(weight_prior)
        self.m0 = torch.as_tensor(np.asarray(mean_prior, dtype=np.float64))
        self.d = self.m0.shape[0]
        self.kappa0 = float(mean_precision_prior)
        self.nu0 = float(dof_prior)
        self.psi0 = torch.as_tensor(np.asarray(covariance_prior, dtype=np.float64)).reshape(self.d, self.d)
        self.w0 = torch.linalg.inv(self.psi0)
        self.w0 = 0.5 * (self.w0 + self.w0.mT)
        self.w0_tril = torch.linalg.cholesky(self.w0)

    # ------------------------------------------------------------------ model
    def _data_part(self, x, log_pi, mu, prec, batch_size):
        # Leading dims of the global sites (vectorised particles) move left of the data plate.
        cov = torch.linalg.inv(prec)
        scale_tril = torch.linalg.cholesky(0.5 * (cov + cov.mT)).unsqueeze(-4)
        mu = mu.unsqueeze(-3)
        log_pi = log_pi.unsqueeze(-2)
        n = x.shape[0]
        with pyro.plate("data", n, subsample_size=batch_size) as idx:
            z = pyro.sample("assignment", dist.Categorical(logits=log_pi), infer={"enumerate": "parallel"})
            if self.dp:
                # Un-normalise p(z = k) to pi_k: the likelihood of the K retained components.
                lse = torch.logsumexp(log_pi, -1)
                pyro.factor("truncation", lse.expand(*lse.shape[:-1], len(idx)))
            pyro.sample("obs", dist.MultivariateNormal(Vindex(mu)[..., z, :], scale_tril=Vindex(scale_tril)[..., z, :, :]),
                        obs=x[idx])

    def model(self, x, batch_size=None):
        """``weights, (mean_k, precision_k) ~ prior``; ``z_n ~ weights``; ``x_n ~ N(mean_z, precision_z^-1)``."""
        k = self.k
        dtype = x.dtype
        with pyro.plate("components", k):
            if self.dp:
                v = pyro.sample("sticks", dist.Beta(torch.ones((), dtype=dtype),
                                                    torch.tensor(self.weight_prior, dtype=dtype)))
            prec = pyro.sample("precision", Wishart(torch.tensor(self.nu0, dtype=dtype), scale_tril=self.w0_tril))
            mu = pyro.sample("mean", dist.MultivariateNormal(self.m0, precision_matrix=self.kappa0 * prec))
        if self.dp:
            log_pi = _stick_log_weights(v)
        else:
            pi = pyro.sample("weights", dist.Dirichlet(torch.full((k,), self.weight_prior, dtype=dtype)))
            log_pi = torch.log(pi)
        self._data_part(x, log_pi, mu, prec, batch_size)

    def guide(self, x, batch_size=None):
        """``q = q(weights) prod_k Wishart(precision_k; nu_k, W_k) N(mean_k; m_k, (kappa_k precision_k)^-1)``.

        Parametrised by means rather than natural scales: the Wishart by ``nu`` and the
        Cholesky factor of its mean ``E[precision] = nu W``, the Dirichlet (and each Beta
        stick) by its mean and total concentration. Then a step in ``nu`` (or in a total
        concentration) changes only the spread of ``q``, not its location; with ``(nu, W)``
        the noisy reparameterised gradient of ``nu`` dragged ``E[precision]`` along and
        SVI drifted far from the optimum (``nu`` fell from 102 to 44 in a one-component
        test whose exact posterior it started at).
        """
        k, d = self.k, self.d
        init = self._init
        if self.dp:
            mean_v = pyro.param("stick_mean", init["stick_mean"], constraint=constraints.unit_interval)
            total_v = pyro.param("stick_total", init["stick_total"], constraint=constraints.positive)
        else:
            mean_w = pyro.param("weight_mean", init["weight_mean"], constraint=constraints.simplex)
            total_w = pyro.param("weight_total", init["weight_total"], constraint=constraints.positive)
        m = pyro.param("means", init["means"])
        kappa = pyro.param("mean_precision", init["kappa"], constraint=constraints.positive)
        nu = pyro.param("degrees_of_freedom", init["nu"], constraint=constraints.greater_than(d - 1.0))
        prec_tril = pyro.param("precision_tril", init["precision_tril"], constraint=constraints.lower_cholesky)
        with pyro.plate("components", k):
            if self.dp:
                pyro.sample("sticks", dist.Beta(mean_v * total_v, (1 - mean_v) * total_v))
            prec = pyro.sample("precision", Wishart(nu, scale_tril=prec_tril / torch.sqrt(nu)[:, None, None]))
            pyro.sample("mean", dist.MultivariateNormal(m, precision_matrix=kappa[:, None, None] * prec))
        if not self.dp:
            pyro.sample("weights", dist.Dirichlet(mean_w * total_w))

    # ------------------------------------------------------------------ SVI
    def _guide_init(self, post):
        nu = post["nu"].to(torch.float64)
        e_prec = torch.linalg.inv(post["cov"].to(torch.float64))  # E[precision] = nu W = inv(Psi / nu)
        init = {"means": post["means"].to(torch.float64).clone(), "kappa": post["kappa"].to(torch.float64).clone(),
                "nu": nu.clone(), "precision_tril": torch.linalg.cholesky(0.5 * (e_prec + e_prec.mT))}
        conc = post["conc"]
        if self.dp:
            a, b = (c.to(torch.float64) for c in conc)
            init["stick_mean"] = (a / (a + b)).clamp(1e-6, 1 - 1e-6)
            init["stick_total"] = a + b
        else:
            alpha = conc.to(torch.float64)
            init["weight_mean"] = alpha / alpha.sum()
            init["weight_total"] = alpha.sum()
        return init

    def fit(self, x, init_post, *, num_steps, lr, batch_size=None, num_particles=1, tol=None, random_state=None,
            verbose=0):
        """Run SVI (``TraceEnum_ELBO``) from the posterior ``init_post``; return the :class:`SVIResult`."""
        self._init = self._guide_init(init_post)
        try:
            # The learning rate decays tenfold over num_steps: with a constant rate Adam keeps
            # jittering around the optimum at the scale of the gradient noise.
            optim = {"lr": lr, "lrd": 0.1 ** (1.0 / num_steps)}
            return fit_svi(self.model, self.guide, (x,) if batch_size is None else (x, int(batch_size)),
                           num_steps=num_steps, optim=optim, loss="TraceEnum_ELBO", num_particles=num_particles,
                           vectorize_particles=num_particles > 1, max_plate_nesting=1, tol=tol, window=100,
                           random_state=random_state, verbose=verbose, desc="BayesianGaussianMixture(svi)")
        finally:
            del self._init

    def posterior(self, result):
        """The posterior dict (as CAVI's) from the guide's parameters."""
        p = {k: torch.as_tensor(v) for k, v in result.params.items()}
        e_prec = p["precision_tril"] @ p["precision_tril"].mT
        cov = torch.linalg.inv(e_prec)  # Psi / nu
        nu = p["degrees_of_freedom"]
        if self.dp:
            conc = (p["stick_mean"] * p["stick_total"], (1 - p["stick_mean"]) * p["stick_total"])
        else:
            conc = p["weight_mean"] * p["weight_total"]
        return {"conc": conc, "kappa": p["mean_precision"], "means": p["means"], "nu": nu,
                "cov": 0.5 * (cov + cov.mT)}

    # ------------------------------------------------------------------ NUTS
    def _bartlett_precision(self, diag_chi2, offdiag):
        d = self.d
        A = torch.diag_embed(torch.sqrt(diag_chi2))
        if d > 1:
            rows, cols = torch.tril_indices(d, d, -1)
            A = A.index_put((..., rows, cols), offdiag)
        LA = self.w0_tril.to(A.dtype) @ A
        return LA @ LA.mT

    def model_nuts(self, x):
        """The same model with the Wishart precision written by Bartlett's decomposition."""
        k, d = self.k, self.d
        dtype = x.dtype
        with pyro.plate("components", k):
            if self.dp:
                v = pyro.sample("sticks", dist.Beta(torch.ones((), dtype=dtype),
                                                    torch.tensor(self.weight_prior, dtype=dtype)))
            dfs = self.nu0 - torch.arange(d, dtype=dtype)
            c = pyro.sample("bartlett_diag", dist.Chi2(dfs).to_event(1))
            off = None
            if d > 1:
                off = pyro.sample("bartlett_offdiag",
                                  dist.Normal(torch.zeros(d * (d - 1) // 2, dtype=dtype), 1.0).to_event(1))
            prec = self._bartlett_precision(c, off)
            mu = pyro.sample("mean", dist.MultivariateNormal(self.m0, precision_matrix=self.kappa0 * prec))
        if self.dp:
            log_pi = _stick_log_weights(v)
        else:
            log_pi = torch.log(pyro.sample("weights", dist.Dirichlet(torch.full((k,), self.weight_prior,
                                                                                dtype=dtype))))
        self._data_part(x, log_pi, mu, prec, None)

    def _nuts_init(self, post):
        d = self.d
        nu = post["nu"].to(torch.float64)
        prec = torch.linalg.inv(post["cov"].to(torch.float64))  # E[precision] = nu W
        Linv = torch.linalg.inv(self.w0_tril)
        inner = Linv @ prec @ Linv.mT
        A = torch.linalg.cholesky(0.5 * (inner + inner.mT))
        values = {"bartlett_diag": torch.diagonal(A, dim1=-2, dim2=-1) ** 2, "mean": post["means"].to(torch.float64)}
        if d > 1:
            rows, cols = torch.tril_indices(d, d, -1)
            values["bartlett_offdiag"] = A[..., rows, cols]
        if self.dp:
            a, b = post["conc"]
            values["sticks"] = (a / (a + b)).to(torch.float64)
        else:
            alpha = post["conc"].to(torch.float64)
            values["weights"] = alpha / alpha.sum()
        del nu
        return values

    def sample_posterior(self, x, init_post, *, num_samples, warmup_steps=None, random_state=None, verbose=0):
        """NUTS draws: ``weights`` (normalised over the K components), ``means`` and ``precisions``."""
        raw = run_nuts(self.model_nuts, (x,), num_samples=num_samples, warmup_steps=warmup_steps, max_plate_nesting=1,
                       random_state=random_state, verbose=verbose, init_values=self._nuts_init(init_post))
        off = torch.as_tensor(raw["bartlett_offdiag"]) if self.d > 1 else None
        prec = self._bartlett_precision(torch.as_tensor(raw["bartlett_diag"]), off)
        if self.dp:
            w = torch.exp(_stick_log_weights(torch.as_tensor(raw["sticks"])))
        else:
            w = torch.as_tensor(raw["weights"])
        w = w / w.sum(-1, keepdim=True)
        return {"weights": w.numpy(), "means": raw["mean"], "precisions": (0.5 * (prec + prec.mT)).numpy()}
