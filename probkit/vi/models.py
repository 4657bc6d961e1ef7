"""Pyro models and guides behind the estimators' ``inference="svi"`` and ``inference="nuts"``.

:class:`GaussianMixtureSVI`
    The Bayesian Gaussian mixture of :class:`~probkit.BayesianGaussianMixture`
    (full covariances): Dirichlet or truncated stick-breaking weights, Normal-Wishart
    components, assignments summed out by enumeration.
:class:`HMMSVI`
    The Bayesian HMM of :class:`~probkit.VariationalHMM`: Dirichlet start and transition
    rows, conjugate emissions (Gaussian full/diagonal, categorical, Poisson), the state
    paths summed out by Pyro's ``DiscreteHMM``, a ``pyro.markov`` enumeration, or probkit's
    differentiable forward recursion.

Guides keep the conjugate families of the coordinate-ascent posterior (Dirichlet/Beta,
Wishart, normal given the precision), so SVI optimises over the same variational
family as CAVI and its result is read back as the same posterior attributes.

For NUTS the Wishart precision is reparametrised by Bartlett's decomposition
(``precision = L A A^T L^T`` with ``A_ii^2 ~ chi2(nu - i)``, ``A_ij ~ N(0, 1)`` below the
diagonal, ``L L^T`` the Wishart scale), an exact change of variables whose pieces have
unconstrained transforms (torch has no bijection onto positive-definite matrices).
"""

from __future__ import annotations

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.ops.indexing import Vindex
from torch.distributions import constraints

from probkit.vi._options import HMM_FORMULATIONS
from probkit.vi.mcmc import run_nuts
from probkit.vi.svi import fit_svi

__all__ = ["EMISSION_KINDS", "GaussianMixtureSVI", "HMMSVI", "HMM_FORMULATIONS"]


class Wishart(dist.Wishart):
    """Pyro's Wishart with a plain Bartlett ``rsample``.

    torch 2.13's ``Wishart.rsample`` tests ``support.check(sample)`` where it means
    "singular" (the negation is missing), so every valid draw is thrown away and drawn
    again inside a correction loop, with a warning; here a draw is just the Bartlett
    decomposition, reparameterised through the chi-square (gamma) draws.

    Examples
    --------
    >>> import torch
    >>> w = Wishart(torch.tensor(5.0), scale_tril=torch.eye(2))
    >>> draws = w.rsample((4000,))
    >>> bool(torch.allclose(draws.mean(0), 5.0 * torch.eye(2), atol=0.3))
    True
    """

    def rsample(self, sample_shape=torch.Size()):
        return self._bartlett_sampling(torch.Size(sample_shape))


def _wishart(df, **kwargs):
    """:class:`Wishart` built without torch's warning for degrees of freedom in (d - 1, d):
    such values are legitimate here (the prior of an empty component) and sampling handles them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Low df values detected")
        return Wishart(df, **kwargs)


def _bartlett_factor(diag_chi2, offdiag, d):
    """Lower-triangular ``A`` with ``A_ii = sqrt(chi2_i)`` and ``offdiag`` below the diagonal (row-major)."""
    A = torch.diag_embed(torch.sqrt(diag_chi2))
    if d > 1:
        lower = torch.zeros_like(A)
        rows, cols = torch.tril_indices(d, d, -1)
        lower[..., rows, cols] = offdiag
        A = A + lower
    return A


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
    def _log_weights(self, w):
        """``log pi`` shaped ``(*particles, 1, K)``: batch dimensions left of the data plate.

        Sticks are drawn inside the component plate (shape ``(*particles, K)``); Dirichlet
        weights outside every plate (``(K,)``, or ``(P, 1, K)`` with vectorised particles).
        """
        if self.dp:
            return _stick_log_weights(w).unsqueeze(-2)
        log_pi = torch.log(w)
        return log_pi if log_pi.dim() >= 2 else log_pi.unsqueeze(0)

    def _data_part(self, x, log_pi, mu, prec, batch_size):
        # Leading dims of the global sites (vectorised particles) move left of the data plate.
        cov = torch.linalg.inv(prec)
        scale_tril = torch.linalg.cholesky(0.5 * (cov + cov.mT)).unsqueeze(-4)
        mu = mu.unsqueeze(-3)
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
            prec = pyro.sample("precision", _wishart(torch.tensor(self.nu0, dtype=dtype), scale_tril=self.w0_tril))
            mu = pyro.sample("mean", dist.MultivariateNormal(self.m0, precision_matrix=self.kappa0 * prec))
        log_pi = self._log_weights(v if self.dp else pyro.sample(
            "weights", dist.Dirichlet(torch.full((k,), self.weight_prior, dtype=dtype))))
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
            prec = pyro.sample("precision", _wishart(nu, scale_tril=prec_tril / torch.sqrt(nu)[:, None, None]))
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
        A = _bartlett_factor(diag_chi2, offdiag, d)
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
        log_pi = self._log_weights(v if self.dp else pyro.sample(
            "weights", dist.Dirichlet(torch.full((k,), self.weight_prior, dtype=dtype))))
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


# ---------------------------------------------------------------------------------------------
# Hidden Markov models
# ---------------------------------------------------------------------------------------------

EMISSION_KINDS = ("gaussian_full", "gaussian_diag", "categorical", "poisson")


class HMMSVI:
    """The Bayesian HMM of :class:`~probkit.VariationalHMM` as a Pyro model, with a conjugate guide.

    ``startprob ~ Dirichlet``, each row of ``transmat ~ Dirichlet``, per-state emission
    parameters from their conjugate priors; the state paths are summed out exactly. Three
    formulations of that sum (``formulation``):

    ``"discrete_hmm"``
        Pyro's :class:`~pyro.distributions.DiscreteHMM` distribution (a parallel-scan
        forward algorithm over the time axis, vectorised over sequences).
    ``"markov"``
        A ``pyro.markov`` loop over time with the state of each step enumerated by
        ``TraceEnum_ELBO`` (the textbook Pyro HMM; one sample site per step).
    ``"probkit"``
        A ``pyro.factor`` holding :func:`probkit.inference.hmm_log_likelihood` (the padded,
        differentiable forward recursion).

    Padding steps (sequences shorter than the longest) have their emissions masked out;
    with normalised transition rows they contribute nothing.

    Parameters
    ----------
    kind : {"gaussian_full", "gaussian_diag", "categorical", "poisson"}
    start_prior : Tensor (K,)
    trans_prior : Tensor (K, K)
    emission_prior : dict of Tensor
        ``gaussian_full``: ``loc`` (K, d), ``mean_precision`` (K,), ``degrees_of_freedom`` (K,),
        ``covariance`` (K, d, d) (the Wishart inverse scale); ``gaussian_diag``: ``loc``,
        ``mean_precision``, ``concentration``, ``rate`` (K, d) of Normal-Gamma priors;
        ``categorical``: ``concentration`` (K, M); ``poisson``: ``concentration``, ``rate`` (K, d).
    formulation : {"discrete_hmm", "markov", "probkit"}, default="discrete_hmm"

    Examples
    --------
    >>> import torch
    >>> spec = HMMSVI("poisson", torch.ones(2), torch.ones(2, 2),
    ...               {"concentration": torch.ones(2, 1), "rate": torch.ones(2, 1)})
    >>> x = torch.tensor([[[0.0], [3.0], [4.0]]])
    >>> import pyro.poutine as poutine
    >>> tr = poutine.trace(spec.model).get_trace(x, torch.tensor([3]), torch.ones(1, 3, dtype=torch.bool))
    >>> tr.nodes["transmat"]["value"].shape, tr.nodes["obs"]["fn"].event_shape
    (torch.Size([2, 2]), torch.Size([3, 1]))
    """

    def __init__(self, kind, start_prior, trans_prior, emission_prior, formulation="discrete_hmm"):
        if kind not in EMISSION_KINDS:
            raise ValueError(f"unknown emission kind {kind!r}; expected one of {EMISSION_KINDS}")
        if formulation not in HMM_FORMULATIONS:
            raise ValueError(f"unknown HMM formulation {formulation!r}; expected one of {HMM_FORMULATIONS}")
        self.kind = kind
        self.formulation = formulation
        self.start_prior = torch.as_tensor(start_prior, dtype=torch.float64)
        self.trans_prior = torch.as_tensor(trans_prior, dtype=torch.float64)
        self.k = self.start_prior.shape[0]
        self.ep = {name: torch.as_tensor(v, dtype=torch.float64) for name, v in emission_prior.items()}
        if kind == "gaussian_full":
            cov = self.ep["covariance"]
            w0 = torch.linalg.inv(cov)
            self.w0_tril = torch.linalg.cholesky(0.5 * (w0 + w0.mT))

    # ------------------------------------------------------------------ emissions
    def _sample_emission_prior(self, bartlett=False):
        ep, kind = self.ep, self.kind
        if kind == "gaussian_full":
            d = ep["loc"].shape[-1]
            if bartlett:
                dfs = ep["degrees_of_freedom"].unsqueeze(-1) - torch.arange(d, dtype=torch.float64)
                c = pyro.sample("bartlett_diag", dist.Chi2(dfs).to_event(1))
                off = None
                if d > 1:
                    off = pyro.sample("bartlett_offdiag", dist.Normal(
                        torch.zeros(self.k, d * (d - 1) // 2, dtype=torch.float64), 1.0).to_event(1))
                prec = self.bartlett_precision(c, off)
            else:
                prec = pyro.sample("precision", _wishart(ep["degrees_of_freedom"], scale_tril=self.w0_tril))
            mu = pyro.sample("mean", dist.MultivariateNormal(
                ep["loc"], precision_matrix=ep["mean_precision"][:, None, None] * prec))
            return {"mean": mu, "precision": prec}
        if kind == "gaussian_diag":
            tau = pyro.sample("precision", dist.Gamma(ep["concentration"], ep["rate"]).to_event(1))
            mu = pyro.sample("mean", dist.Normal(ep["loc"], torch.rsqrt(ep["mean_precision"] * tau)).to_event(1))
            return {"mean": mu, "precision": tau}
        if kind == "categorical":
            return {"probs": pyro.sample("emissionprob", dist.Dirichlet(ep["concentration"]))}
        return {"rate": pyro.sample("rate", dist.Gamma(ep["concentration"], ep["rate"]).to_event(1))}

    def bartlett_precision(self, diag_chi2, offdiag):
        d = self.ep["loc"].shape[-1]
        A = _bartlett_factor(diag_chi2, offdiag, d)
        LA = self.w0_tril @ A
        return LA @ LA.mT

    def observation_dist(self, params):
        """The per-state emission distribution, batch (K,)."""
        kind = self.kind
        if kind == "gaussian_full":
            cov = torch.linalg.inv(params["precision"])
            return dist.MultivariateNormal(params["mean"], scale_tril=torch.linalg.cholesky(0.5 * (cov + cov.mT)))
        if kind == "gaussian_diag":
            return dist.Normal(params["mean"], torch.rsqrt(params["precision"])).to_event(1)
        if kind == "categorical":
            return dist.Categorical(probs=params["probs"])
        return dist.Poisson(params["rate"]).to_event(1)

    def _obs_for_states(self, params, z):
        kind = self.kind
        if kind == "gaussian_full":
            cov = torch.linalg.inv(params["precision"])
            tril = torch.linalg.cholesky(0.5 * (cov + cov.mT))
            return dist.MultivariateNormal(Vindex(params["mean"])[..., z, :], scale_tril=Vindex(tril)[..., z, :, :])
        if kind == "gaussian_diag":
            return dist.Normal(Vindex(params["mean"])[..., z, :],
                               torch.rsqrt(Vindex(params["precision"])[..., z, :])).to_event(1)
        if kind == "categorical":
            return dist.Categorical(probs=Vindex(params["probs"])[..., z, :])
        return dist.Poisson(Vindex(params["rate"])[..., z, :]).to_event(1)

    # ------------------------------------------------------------------ model
    def model(self, x, lengths, mask, batch_size=None, bartlett=False, formulation=None):
        """``x`` padded (B, T[, d]), ``lengths`` (B,), ``mask`` (B, T) True on real steps."""
        formulation = self.formulation if formulation is None else formulation
        k = self.k
        start = pyro.sample("startprob", dist.Dirichlet(self.start_prior))
        with pyro.plate("states", k):
            trans = pyro.sample("transmat", dist.Dirichlet(self.trans_prior))
            params = self._sample_emission_prior(bartlett=bartlett)
        with pyro.plate("sequences", x.shape[0], subsample_size=batch_size) as idx:
            xb, mb = x[idx], mask[idx]
            if formulation == "markov":
                self._markov(xb, mb, start, trans, params)
                return
            obs = self.observation_dist(params)
            if formulation == "discrete_hmm":
                # Pyro's DiscreteHMM draws the state of the first step from initial @ transition
                # (its initial distribution is of a step before the data); a first transition
                # whose every row is the start distribution makes it the usual HMM.
                T = xb.shape[1]
                log_trans = torch.log(trans)
                steps = torch.cat([torch.log(start).expand(1, k, k), log_trans.expand(T - 1, k, k)], 0)
                obs = obs.mask(mb.unsqueeze(-1))
                pyro.sample("obs", dist.DiscreteHMM(torch.zeros_like(start), steps, obs), obs=xb)
            else:
                from probkit.inference import hmm_log_likelihood

                event = 0 if self.kind == "categorical" else 1
                log_emis = obs.log_prob(xb.unsqueeze(-1 - event))
                pyro.factor("obs", hmm_log_likelihood(torch.log(start), torch.log(trans), log_emis, lengths[idx]))

    def _markov(self, xb, mb, start, trans, params):
        z = None
        for t in pyro.markov(range(xb.shape[1])):
            probs = start if z is None else Vindex(trans)[..., z, :]
            z = pyro.sample(f"z_{t}", dist.Categorical(probs), infer={"enumerate": "parallel"})
            with pyro.poutine.mask(mask=mb[:, t]):
                pyro.sample(f"x_{t}", self._obs_for_states(params, z), obs=xb[:, t])

    # ------------------------------------------------------------------ guide
    def guide(self, x, lengths, mask, batch_size=None, bartlett=False, formulation=None):
        """Dirichlet start and rows, conjugate emissions; mean-parametrised (see :class:`GaussianMixtureSVI`)."""
        init = self._init
        kind = self.kind
        s_mean = pyro.param("start_mean", init["start_mean"], constraint=constraints.simplex)
        s_total = pyro.param("start_total", init["start_total"], constraint=constraints.positive)
        t_mean = pyro.param("trans_mean", init["trans_mean"], constraint=constraints.simplex)
        t_total = pyro.param("trans_total", init["trans_total"], constraint=constraints.positive)
        pyro.sample("startprob", dist.Dirichlet(s_mean * s_total))
        if kind == "gaussian_full":
            d = init["means"].shape[-1]
            m = pyro.param("means", init["means"])
            kappa = pyro.param("mean_precision", init["mean_precision"], constraint=constraints.positive)
            nu = pyro.param("degrees_of_freedom", init["degrees_of_freedom"], constraint=constraints.greater_than(d - 1.0))
            prec_tril = pyro.param("precision_tril", init["precision_tril"], constraint=constraints.lower_cholesky)
        elif kind == "gaussian_diag":
            m = pyro.param("means", init["means"])
            kappa = pyro.param("mean_precision", init["mean_precision"], constraint=constraints.positive)
            tau_mean = pyro.param("precision_mean", init["precision_mean"], constraint=constraints.positive)
            tau_conc = pyro.param("precision_concentration", init["precision_concentration"],
                                  constraint=constraints.positive)
        elif kind == "categorical":
            e_mean = pyro.param("emission_mean", init["emission_mean"], constraint=constraints.simplex)
            e_total = pyro.param("emission_total", init["emission_total"], constraint=constraints.positive)
        else:
            r_mean = pyro.param("rate_mean", init["rate_mean"], constraint=constraints.positive)
            r_conc = pyro.param("rate_concentration", init["rate_concentration"], constraint=constraints.positive)
        with pyro.plate("states", self.k):
            pyro.sample("transmat", dist.Dirichlet(t_mean * t_total.unsqueeze(-1)))
            if kind == "gaussian_full":
                prec = pyro.sample("precision", _wishart(nu, scale_tril=prec_tril / torch.sqrt(nu)[:, None, None]))
                pyro.sample("mean", dist.MultivariateNormal(m, precision_matrix=kappa[:, None, None] * prec))
            elif kind == "gaussian_diag":
                tau = pyro.sample("precision", dist.Gamma(tau_conc, tau_conc / tau_mean).to_event(1))
                pyro.sample("mean", dist.Normal(m, torch.rsqrt(kappa * tau)).to_event(1))
            elif kind == "categorical":
                pyro.sample("emissionprob", dist.Dirichlet(e_mean * e_total.unsqueeze(-1)))
            else:
                pyro.sample("rate", dist.Gamma(r_conc, r_conc / r_mean).to_event(1))

    # ------------------------------------------------------------------ posterior <-> guide parameters
    def guide_init(self, start_conc, trans_conc, emission):
        """Guide parameters from Dirichlet concentrations and the emission posterior's parameters."""
        start_conc = torch.as_tensor(start_conc, dtype=torch.float64)
        trans_conc = torch.as_tensor(trans_conc, dtype=torch.float64)
        init = {"start_mean": start_conc / start_conc.sum(), "start_total": start_conc.sum(),
                "trans_mean": trans_conc / trans_conc.sum(-1, keepdim=True), "trans_total": trans_conc.sum(-1)}
        e = {name: torch.as_tensor(v, dtype=torch.float64) for name, v in emission.items()}
        if self.kind == "gaussian_full":
            nu = e["degrees_of_freedom"]
            e_prec = nu[:, None, None] * torch.linalg.inv(e["covariance"])
            init.update(means=e["loc"], mean_precision=e["mean_precision"], degrees_of_freedom=nu,
                        precision_tril=torch.linalg.cholesky(0.5 * (e_prec + e_prec.mT)))
        elif self.kind == "gaussian_diag":
            init.update(means=e["loc"], mean_precision=e["mean_precision"].expand_as(e["loc"]).clone(),
                        precision_mean=e["concentration"] / e["rate"], precision_concentration=e["concentration"])
        elif self.kind == "categorical":
            alpha = e["concentration"]
            init.update(emission_mean=alpha / alpha.sum(-1, keepdim=True), emission_total=alpha.sum(-1))
        else:
            init.update(rate_mean=e["concentration"] / e["rate"], rate_concentration=e["concentration"])
        return {k: v.detach().clone() for k, v in init.items()}

    def posterior_params(self, params):
        """``(start_conc, trans_conc, emission posterior parameters)`` from fitted guide parameters."""
        p = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in params.items()}
        start = p["start_mean"] * p["start_total"]
        trans = p["trans_mean"] * p["trans_total"].unsqueeze(-1)
        if self.kind == "gaussian_full":
            nu = p["degrees_of_freedom"]
            e_prec = p["precision_tril"] @ p["precision_tril"].mT
            psi = nu[:, None, None] * torch.linalg.inv(e_prec)
            em = {"loc": p["means"], "mean_precision": p["mean_precision"], "degrees_of_freedom": nu,
                  "covariance": 0.5 * (psi + psi.mT)}
        elif self.kind == "gaussian_diag":
            em = {"loc": p["means"], "mean_precision": p["mean_precision"],
                  "concentration": p["precision_concentration"],
                  "rate": p["precision_concentration"] / p["precision_mean"]}
        elif self.kind == "categorical":
            em = {"concentration": p["emission_mean"] * p["emission_total"].unsqueeze(-1)}
        else:
            em = {"concentration": p["rate_concentration"], "rate": p["rate_concentration"] / p["rate_mean"]}
        return start, trans, em

    def fit(self, x, lengths, mask, init, *, num_steps, lr, batch_size=None, num_particles=1, tol=None,
            random_state=None, verbose=0):
        """SVI from the guide parameters ``init``; returns the :class:`SVIResult`."""
        self._init = init
        loss = "TraceEnum_ELBO" if self.formulation == "markov" else "Trace_ELBO"
        try:
            optim = {"lr": lr, "lrd": 0.1 ** (1.0 / num_steps)}
            return fit_svi(self.model, self.guide, {"x": x, "lengths": lengths, "mask": mask, "batch_size": batch_size},
                           num_steps=num_steps, optim=optim, loss=loss, num_particles=num_particles,
                           max_plate_nesting=1, tol=tol, window=100, random_state=random_state, verbose=verbose,
                           desc="VariationalHMM(svi)")
        finally:
            del self._init

    def nuts_init(self, start_conc, trans_conc, emission):
        """Initial values (posterior means) of the NUTS model's sites."""
        start_conc = torch.as_tensor(start_conc, dtype=torch.float64)
        trans_conc = torch.as_tensor(trans_conc, dtype=torch.float64)
        values = {"startprob": start_conc / start_conc.sum(), "transmat": trans_conc / trans_conc.sum(-1, keepdim=True)}
        e = {name: torch.as_tensor(v, dtype=torch.float64) for name, v in emission.items()}
        if self.kind == "gaussian_full":
            d = e["loc"].shape[-1]
            prec = e["degrees_of_freedom"][:, None, None] * torch.linalg.inv(e["covariance"])
            Linv = torch.linalg.inv(self.w0_tril)
            inner = Linv @ prec @ Linv.mT
            A = torch.linalg.cholesky(0.5 * (inner + inner.mT))
            values["bartlett_diag"] = torch.diagonal(A, dim1=-2, dim2=-1) ** 2
            if d > 1:
                rows, cols = torch.tril_indices(d, d, -1)
                values["bartlett_offdiag"] = A[..., rows, cols]
            values["mean"] = e["loc"]
        elif self.kind == "gaussian_diag":
            values["precision"] = e["concentration"] / e["rate"]
            values["mean"] = e["loc"]
        elif self.kind == "categorical":
            alpha = e["concentration"]
            values["emissionprob"] = alpha / alpha.sum(-1, keepdim=True)
        else:
            values["rate"] = e["concentration"] / e["rate"]
        return values

    def sample_posterior(self, x, lengths, mask, init_values, *, num_samples, warmup_steps=None, random_state=None,
                         verbose=0):
        """NUTS draws of ``startprob``, ``transmat`` and the emission parameters (states summed out)."""
        bartlett = self.kind == "gaussian_full"
        raw = run_nuts(self.model, {"x": x, "lengths": lengths, "mask": mask, "bartlett": bartlett,
                                    "formulation": "discrete_hmm"},
                       num_samples=num_samples, warmup_steps=warmup_steps, max_plate_nesting=1,
                       random_state=random_state, verbose=verbose, init_values=init_values)
        out = {"startprob": raw["startprob"], "transmat": raw["transmat"]}
        if bartlett:
            off = torch.as_tensor(raw["bartlett_offdiag"]) if "bartlett_offdiag" in raw else None
            prec = self.bartlett_precision(torch.as_tensor(raw["bartlett_diag"]), off)
            out.update(mean=raw["mean"], precision=(0.5 * (prec + prec.mT)).numpy())
        elif self.kind == "gaussian_diag":
            out.update(mean=raw["mean"], precision=raw["precision"])
        elif self.kind == "categorical":
            out["emissionprob"] = raw["emissionprob"]
        else:
            out["rate"] = raw["rate"]
        return out
