"""Gibbs samplers for the conjugate models: mixtures, hidden Markov models and LDA.

Every model here is "latent assignments + conjugate exponential-family parts", so its
Gibbs sampler alternates two exact draws:

* the **parameters given the assignments**: the weights (or the start and transition
  rows) from their Dirichlet posteriors, and each component's parameters from its
  conjugate posterior ``p(theta_k | sum_{z_n = k} T(x_n), n_k)`` -- the same statistics and
  posteriors that EM and variational Bayes use (:class:`~probkit.vi.ConjugateFamily`);
* the **assignments given the parameters**: independent categorical draws for a mixture,
  a joint draw of each state path by forward filtering, backward sampling for an HMM
  (:mod:`probkit.inference`).

The collapsed mixture sampler integrates the parameters out and moves one assignment at
a time with the exact predictive ``p(x_n | x_{-n}, z_{-n}, z_n = k)``, a ratio of the
family's closed-form marginal likelihoods; the collapsed LDA sampler (Griffiths and
Steyvers 2004) does the same for word tokens with Dirichlet-categorical predictives.

All samplers return an :class:`~probkit.vi.MCMCResult` (several chains, R-hat, ESS) and
draw everything from ``random_state``. Component labels are not identified: a chain can
visit any of the ``K!`` relabellings, and different chains usually settle in different
ones. Compare label-invariant quantities, or relabel (sort by a parameter, or match
components across chains) before comparing chains.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from scipy.special import gammaln

from probkit.distributions import MultivariateNormal
from probkit.distributions.base import SufficientStats
from probkit.inference._lazy_numba import numba_backend
from probkit.utils.random import check_random_state, torch_generator
from probkit.utils.threads import torch_threads
from probkit.utils.validation import check_lengths
from probkit.vi.conjugate import ConjugateFamily
from probkit.vi.mcmc_result import MCMCResult
from probkit.utils.validation import check_int

__all__ = ["gibbs_hmm", "gibbs_lda", "gibbs_mixture"]

_UPDATE_LETTERS = "ste"


# ---------------------------------------------------------------------------- shared pieces
def _chain_states(random_state, n_chains):
    """One independent numpy RandomState per chain, all derived from ``random_state``."""
    master = check_random_state(random_state)
    return [np.random.RandomState(int(s)) for s in master.randint(0, 2**31 - 1, size=n_chains)]


def _check_run(n_samples, warmup, thin, n_chains):
    return (check_int(n_samples, "n_samples", 1), check_int(warmup, "warmup", 0), check_int(thin, "thin", 1),
            check_int(n_chains, "n_chains", 1))


def _concentration(value, shape, name, default):
    arr = np.asarray(default if value is None else value, dtype=np.float64)
    try:
        arr = np.array(np.broadcast_to(arr, shape))
    except ValueError:
        raise ValueError(f"{name} must broadcast to shape {shape}, got shape {np.shape(value)}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must hold positive finite Dirichlet concentrations, got {value!r}")
    return arr


def _log_standard_gamma(shape, rng):
    """``log G`` for ``G ~ Gamma(shape, 1)``, accurate for tiny shapes where ``G`` underflows.

    Shapes below one use ``G(a) = G(a + 1) U^(1 / a)`` (Marsaglia and Tsang), in logs.
    """
    shape = np.asarray(shape, dtype=np.float64)
    small = shape < 1.0
    g = rng.standard_gamma(np.where(small, shape + 1.0, shape))
    u = rng.random_sample(shape.shape)
    with np.errstate(divide="ignore"):
        return np.log(g) + np.where(small, np.log(u) / shape, 0.0)


def _dirichlet_draw(alpha, rng):
    """One draw of each row of Dirichlet(alpha); a single category has probability one."""
    alpha = np.asarray(alpha, dtype=np.float64)
    if alpha.shape[-1] == 1:
        return np.ones(alpha.shape)
    log_g = _log_standard_gamma(alpha, rng)
    log_g -= log_g.max(axis=-1, keepdims=True)
    g = np.exp(log_g)
    return g / g.sum(axis=-1, keepdims=True)


def _logsumexp_rows(a):
    top = a.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return (top + np.log(np.exp(a - top).sum(axis=1, keepdims=True)))[:, 0]


class _Components:
    """Draws of a conjugate family's parameters for K components, and their log-likelihoods.

    ``fam`` is a :class:`ConjugateFamily` already fitted to the data (``as_data``).
    """

    def __init__(self, fam, x, prior, n_components):
        self.fam = fam
        self.x = x
        self.n_components = n_components
        self.prior = prior
        self.empty = x[:0]

    def posterior(self, resp):
        return self.fam.posterior(self.fam.summarize(self.x, resp), self.prior)

    def draw(self, post, rng, gen):
        """Likelihood parameters (numpy, batch (K[, d])) drawn from the posterior ``post``.

        Gamma, Beta and Dirichlet posteriors are drawn with ``rng`` (numpy's gamma sampler,
        in logs for small shapes); the Normal-Wishart with its own Bartlett sampler and ``gen``.
        """
        name = self.fam.name
        p = {k: v.detach().cpu().numpy() for k, v in post.torch_params().items()}
        if name in ("Normal", "LogNormal"):
            shape = np.broadcast_shapes(*(v.shape for v in p.values()))
            a, b = np.broadcast_to(p["concentration"], shape), np.broadcast_to(p["rate"], shape)
            tau = np.exp(_log_standard_gamma(a, rng)) / b
            loc = p["loc"] + rng.standard_normal(shape) / np.sqrt(p["mean_precision"] * tau)
            return {"loc": loc, "scale": 1.0 / np.sqrt(tau)}
        if name == "MultivariateNormal":
            mean, precision = post.sample(1, gen)
            cov = np.linalg.inv(precision[0])
            return {"mean": mean[0], "covariance": 0.5 * (cov + np.swapaxes(cov, -1, -2))}
        if name in ("Poisson", "Exponential"):
            a = np.broadcast_to(p["concentration"], np.broadcast_shapes(p["concentration"].shape, p["rate"].shape))
            return {"rate": np.exp(_log_standard_gamma(a, rng)) / p["rate"]}
        if name in ("Categorical", "Multinomial"):
            return {"probs": _dirichlet_draw(p["concentration"], rng)}
        shape = np.broadcast_shapes(p["concentration1"].shape, p["concentration0"].shape)
        log1 = _log_standard_gamma(np.broadcast_to(p["concentration1"], shape), rng)
        log0 = _log_standard_gamma(np.broadcast_to(p["concentration0"], shape), rng)
        return {"probs": 1.0 / (1.0 + np.exp(log0 - log1))}  # Beta as a ratio of gammas

    def distribution(self, params):
        t = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in params.items()}
        if self.fam.name == "MultivariateNormal":
            return MultivariateNormal(mean=t["mean"], covariance=t["covariance"], covariance_type="full")
        if self.fam.name in ("Categorical", "Multinomial"):
            t["probs"] = t["probs"] / t["probs"].sum(-1, keepdim=True)
        return self.fam.template._new(**t)

    def log_likelihood(self, params):
        """``log p(x_n | theta_k)``: (n, K) numpy."""
        ll = self.distribution(params)._log_prob(self.x.unsqueeze(1))
        if self.fam.scalar:
            ll = ll.sum(-1)
        return ll.numpy()

    def log_evidence(self, fields):
        """``log p(x_k)`` of the data summarised in ``fields`` (batch K), without base measures."""
        stats = SufficientStats(self.fam.name, fields, self.fam.template._stats_meta())
        value = self.fam.template._log_marginal_likelihood(self.empty, stats, self.prior)
        if self.fam.scalar:
            value = value.reshape(value.shape[0], -1).sum(-1)
        return value


def _prepare(X, family, n_components, prior):
    fam = ConjugateFamily(family)
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    x = fam.as_data(X)
    k = check_int(n_components, "n_components", 1)
    if prior is None:
        prior = fam.default_prior(x)
    prior = fam.check_prior(prior, k, x.shape[1])
    return fam, x, prior, k


def _categorical_draw(log_weights, rng):
    """One category per row of unnormalised log-weights (n, K), by inverting the CDF."""
    p = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    u = rng.random_sample(p.shape[0]) * cdf[:, -1]
    return np.minimum((cdf <= u[:, None]).sum(axis=1), p.shape[1] - 1)


def _stack(records, n_chains, n_draws):
    out = {}
    for name in records[0]:
        out[name] = np.stack([np.stack([r[name] for r in chain]) for chain in _split(records, n_chains, n_draws)])
    return out


def _split(records, n_chains, n_draws):
    return [records[c * n_draws:(c + 1) * n_draws] for c in range(n_chains)]


# ---------------------------------------------------------------------------- mixtures
def gibbs_mixture(X, family, n_components, *, weight_concentration=1.0, prior=None, collapsed=False,
                  n_samples=1000, warmup=500, thin=1, n_chains=2, store_assignments=False, random_state=None):
    """Gibbs sampler of a finite mixture of any conjugate exponential family.

    The model: ``weights ~ Dirichlet(weight_concentration)``, ``theta_k ~ prior``,
    ``z_n ~ Categorical(weights)``, ``x_n ~ family(theta_{z_n})``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    family : str, ExponentialFamily class or instance
        One of :data:`probkit.vi.CONJUGATE_FAMILIES` (as for :class:`~probkit.vi.ConjugateFamily`:
        ``"normal"``, ``"gaussian"``, ``"poisson"``, ``"categorical"``, ...). A scalar family over
        several columns is a product over the columns.
    n_components : int
    weight_concentration : float or array-like of shape (n_components,), default=1.0
        Dirichlet concentration of the weights.
    prior : distribution, optional
        The components' conjugate prior (batch broadcastable to ``(n_components[, n_features])``);
        :meth:`ConjugateFamily.default_prior` (weak, data-scaled) by default.
    collapsed : bool, default=False
        Integrate the weights and parameters out and move one assignment at a time with the
        exact collapsed conditional (slower per sweep; mixes better when components overlap).
        The weights and parameters are still drawn, from their conditionals, for the output.
    n_samples, warmup, thin, n_chains : int
        Draws kept per chain, sweeps discarded first, thinning, number of chains.
    store_assignments : bool, default=False
        Keep the assignments of every draw (``samples["assignments"]``, ``(chains, draws, n)``).
    random_state : None, int or numpy.random.RandomState

    Returns
    -------
    MCMCResult
        ``samples``: ``weights`` (chains, draws, K) and the family's parameters -- ``loc`` and
        ``scale`` (Normal, LogNormal), ``mean`` and ``covariance`` (MultivariateNormal), ``rate``
        (Poisson, Exponential), ``probs`` (the discrete families); ``sample_stats``:
        ``log_likelihood`` = ``log p(X | weights, theta)``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> X = np.r_[rng.poisson(2.0, (60, 1)), rng.poisson(12.0, (40, 1))]
    >>> res = gibbs_mixture(X, "poisson", 2, n_samples=300, warmup=100, random_state=0)
    >>> rates = np.sort(res.draws("rate")[:, :, 0], axis=1).mean(0)   # sorted: labels are not identified
    >>> np.round(rates).tolist()
    [2.0, 12.0]
    """
    fam, x, prior, k = _prepare(X, family, n_components, prior)
    n_samples, warmup, thin, n_chains = _check_run(n_samples, warmup, thin, n_chains)
    alpha = _concentration(weight_concentration, (k,), "weight_concentration", 1.0)
    comps = _Components(fam, x, prior, k)
    n = x.shape[0]
    records, stats_out = [], []
    with torch.no_grad(), torch_threads(1):
        for rng in _chain_states(random_state, n_chains):
            gen = torch_generator(rng)
            z = rng.randint(0, k, size=n)
            chain_records, chain_ll = [], []
            sweep = _collapsed_sweep if collapsed else None
            cache = _CollapsedState(comps, z, alpha) if collapsed else None
            for it in range(warmup + n_samples * thin):
                if collapsed:
                    sweep(cache, rng)
                    z = cache.z
                resp = np.zeros((n, k))
                resp[np.arange(n), z] = 1.0
                weights = _dirichlet_draw(alpha + resp.sum(0), rng)
                params = comps.draw(comps.posterior(torch.from_numpy(resp)), rng, gen)
                with np.errstate(divide="ignore"):
                    log_r = np.log(weights)[None, :] + comps.log_likelihood(params)
                log_lik = float(_logsumexp_rows(log_r).sum())
                if not collapsed:
                    z = _categorical_draw(log_r, rng)
                if it >= warmup and (it - warmup) % thin == thin - 1:
                    record = {"weights": weights, **params}
                    if store_assignments:
                        record["assignments"] = z.copy()
                    chain_records.append(record)
                    chain_ll.append(log_lik)
            records += chain_records
            stats_out.append(chain_ll)
    info = {"sampler": "gibbs_mixture", "family": fam.name, "collapsed": bool(collapsed), "warmup": warmup,
            "thin": thin, "prior": prior, "weight_concentration": alpha}
    return MCMCResult(_stack(records, n_chains, n_samples), {"log_likelihood": np.asarray(stats_out)}, info)


class _CollapsedState:
    """Per-component summed statistics and log evidences of the collapsed mixture sampler."""

    def __init__(self, comps, z, alpha):
        self.comps = comps
        self.z = z.copy()
        self.alpha = alpha
        n, k = comps.x.shape[0], comps.n_components
        # One row's statistics each: the identity as responsibilities, in blocks of rows.
        blocks = []
        for lo in range(0, n, 256):
            hi = min(n, lo + 256)
            blocks.append(comps.fam.summarize(comps.x[lo:hi], torch.eye(hi - lo, dtype=torch.float64)).fields)
        self.point = {key: torch.cat([b[key] for b in blocks]) for key in blocks[0]}
        resp = torch.zeros(n, k, dtype=torch.float64)
        resp[torch.arange(n), torch.as_tensor(self.z)] = 1.0
        self.total = dict(comps.fam.summarize(comps.x, resp).fields)
        self.counts = np.bincount(self.z, minlength=k).astype(np.float64)
        self.evidence = comps.log_evidence(self.total).numpy().copy()


def _collapsed_sweep(state, rng):
    """Move every assignment once, from ``p(z_i | z_{-i}, X)`` with the parameters integrated out."""
    comps = state.comps
    keys = list(state.total)
    for i in range(comps.x.shape[0]):
        old = int(state.z[i])
        for key in keys:
            state.total[key][old] -= state.point[key][i]
        state.counts[old] -= 1
        # One batched evidence call: component ``old`` without row i, then every component with it.
        batch = {key: torch.cat([state.total[key][old:old + 1], state.total[key] + state.point[key][i:i + 1]])
                 for key in keys}
        evidence = comps.log_evidence(batch).numpy()
        state.evidence[old] = evidence[0]
        joined = evidence[1:]
        logp = np.log(state.counts + state.alpha) + joined - state.evidence
        new = int(_categorical_draw(logp[None, :], rng)[0])
        for key in keys:
            state.total[key][new] += state.point[key][i]
        state.counts[new] += 1
        state.evidence[new] = joined[new]
        state.z[i] = new


# ---------------------------------------------------------------------------- hidden Markov models
def gibbs_hmm(X, emission, n_components, *, lengths=None, startprob_prior=None, transmat_prior=None,
              emission_prior=None, init=None, update="ste", n_samples=1000, warmup=500, thin=1, n_chains=2,
              store_states=False, random_state=None):
    """Gibbs sampler of a Bayesian hidden Markov model with conjugate emissions.

    The model: ``startprob ~ Dirichlet(startprob_prior)``, each row of ``transmat`` ~
    ``Dirichlet(transmat_prior[i])``, each state's emission parameters ~ ``emission_prior``,
    and the states and observations as in the HMM. A sweep draws the parameters given the
    state paths (Dirichlet rows from the start and transition counts, each state's emission
    parameters from its conjugate posterior), then every state path jointly given the
    parameters by forward filtering, backward sampling.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Sequences stacked along the first axis.
    emission : str, ExponentialFamily class or instance
        The emission family, one of :data:`probkit.vi.CONJUGATE_FAMILIES`.
    n_components : int
        Number of states.
    lengths : array-like of int, optional
        Lengths of the sequences in ``X`` (they sum to ``n_samples``).
    startprob_prior, transmat_prior : float or array-like, optional
        Dirichlet concentrations, ``1 / n_components`` by default (as
        :class:`~probkit.VariationalHMM`).
    emission_prior : distribution, optional
        Conjugate prior of every state's emission parameters (:meth:`ConjugateFamily.default_prior`
        by default).
    init : dict, optional
        Initial parameters ``{"startprob", "transmat", "emission"}`` (``emission``: a fitted
        distribution of the emission family with batch ``(K,)`` or ``(K, n_features)``). Without
        them, every chain starts from a random assignment of the states.
    update : str, default="ste"
        Parameters resampled: ``s`` start, ``t`` transitions, ``e`` emissions. The others stay
        at their ``init`` values (which are then required): with ``update=""`` the sampler
        draws state paths from ``p(z | X)`` under fixed parameters.
    n_samples, warmup, thin, n_chains : int
    store_states : bool, default=False
        Keep every draw's state paths (``samples["states"]``, ``(chains, draws, n_samples)``).
    random_state : None, int or numpy.random.RandomState

    Returns
    -------
    MCMCResult
        ``samples``: ``startprob`` (chains, draws, K), ``transmat`` (chains, draws, K, K) and the
        emission parameters (named as in :func:`gibbs_mixture`); ``sample_stats``:
        ``log_likelihood`` = ``log p(X | parameters)`` (the forward algorithm).

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.datasets import load_earthquakes
    >>> _, counts = load_earthquakes()
    >>> res = gibbs_hmm(counts.reshape(-1, 1), "poisson", 2, n_samples=200, warmup=100, random_state=0)
    >>> rates = np.sort(res.draws("rate")[:, :, 0], axis=1).mean(0)
    >>> bool(13 < rates[0] < 18 and 22 < rates[1] < 28)
    True
    """
    fam, x, emission_prior, k = _prepare(X, emission, n_components, emission_prior)
    n_samples, warmup, thin, n_chains = _check_run(n_samples, warmup, thin, n_chains)
    n = x.shape[0]
    lengths = check_lengths(lengths, n).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    same_sequence = np.ones(n, dtype=bool)
    same_sequence[starts] = False  # step t continues the sequence of step t - 1
    start_prior = _concentration(startprob_prior, (k,), "startprob_prior", 1.0 / k)
    trans_prior = _concentration(transmat_prior, (k, k), "transmat_prior", 1.0 / k)
    if not isinstance(update, str) or set(update) - set(_UPDATE_LETTERS):
        raise ValueError(f"update must be a string of the letters {_UPDATE_LETTERS!r}, got {update!r}")
    init_params = _check_hmm_init(init, fam, comps_k=k, n_features=x.shape[1], needed=set(_UPDATE_LETTERS) - set(update))
    comps = _Components(fam, x, emission_prior, k)
    backend = numba_backend()
    if backend is None:  # pragma: no cover - numba is a declared dependency
        raise ImportError("gibbs_hmm needs numba (forward filtering, backward sampling)")
    records, stats_out = [], []
    with torch.no_grad(), torch_threads(1):
        for rng in _chain_states(random_state, n_chains):
            gen = torch_generator(rng)
            params = dict(init_params) if init_params is not None else None
            z = None if params is not None else rng.randint(0, k, size=n)
            chain_ll = []
            for it in range(warmup + n_samples * thin):
                if z is not None:
                    params = _hmm_parameter_draw(params, z, starts, same_sequence, start_prior, trans_prior, comps,
                                                 update, rng, gen, k)
                with np.errstate(divide="ignore"):
                    log_start = np.ascontiguousarray(np.log(params["startprob"]))
                    log_trans = np.ascontiguousarray(np.log(params["transmat"]))
                log_emis = np.ascontiguousarray(comps.log_likelihood(params["emission"]))
                log_lik, filtered, status = backend.forward(log_start, log_trans, log_emis, lengths, use_log=False,
                                                            keep_log=True)
                z = backend.backward_sample(log_trans, lengths, filtered, status, rng.random_sample((1, n)))[0]
                if it >= warmup and (it - warmup) % thin == thin - 1:
                    record = {"startprob": params["startprob"], "transmat": params["transmat"], **params["emission"]}
                    if store_states:
                        record["states"] = z.copy()
                    records.append(record)
                    chain_ll.append(float(log_lik.sum()))
            stats_out.append(chain_ll)
    info = {"sampler": "gibbs_hmm", "emission": fam.name, "warmup": warmup, "thin": thin, "update": update,
            "startprob_prior": start_prior, "transmat_prior": trans_prior, "emission_prior": emission_prior}
    return MCMCResult(_stack(records, n_chains, n_samples), {"log_likelihood": np.asarray(stats_out)}, info)


def _check_hmm_init(init, fam, comps_k, n_features, needed):
    if init is None:
        if needed:
            raise ValueError(f"update={''.join(sorted(set(_UPDATE_LETTERS) - needed))!r} keeps the other parameters "
                             "fixed: give their values in init={'startprob', 'transmat', 'emission'}")
        return None
    if not isinstance(init, dict) or set(init) - {"startprob", "transmat", "emission"}:
        raise ValueError("init must be a dict with the keys 'startprob', 'transmat' and 'emission'")
    missing = {"startprob", "transmat", "emission"} - set(init)
    if missing:
        raise ValueError(f"init is missing {sorted(missing)}")
    from probkit.utils.validation import check_stochastic

    k = comps_k
    start = np.asarray(init["startprob"], dtype=np.float64)
    trans = np.asarray(init["transmat"], dtype=np.float64)
    if start.shape != (k,) or trans.shape != (k, k):
        raise ValueError(f"init startprob and transmat must have shapes ({k},) and ({k}, {k}), "
                         f"got {start.shape} and {trans.shape}")
    check_stochastic(start, "init['startprob']")
    check_stochastic(trans, "init['transmat']")
    dist = init["emission"]
    if type(dist).__name__ != fam.name or not getattr(dist, "is_fitted", False):
        raise TypeError(f"init['emission'] must be a fitted {fam.name} distribution, got {dist!r}")
    params = {name: np.asarray(getattr(dist, name), dtype=np.float64) for name in dist.param_names}
    batch = tuple(dist.batch_shape)
    expected = (k, n_features) if fam.scalar else (k,)
    if batch != expected:
        raise ValueError(f"init['emission'] must have batch shape {expected}, got {batch}")
    return {"startprob": start, "transmat": trans, "emission": params}


def _hmm_parameter_draw(params, z, starts, same_sequence, start_prior, trans_prior, comps, update, rng, gen, k):
    new = dict(params) if params is not None else {}
    if "s" in update or params is None:
        counts = np.bincount(z[starts], minlength=k).astype(np.float64)
        new["startprob"] = _dirichlet_draw(start_prior + counts, rng)
    if "t" in update or params is None:
        counts = np.zeros((k, k))
        np.add.at(counts, (z[:-1][same_sequence[1:]], z[1:][same_sequence[1:]]), 1.0)
        new["transmat"] = _dirichlet_draw(trans_prior + counts, rng)
    if "e" in update or params is None:
        resp = np.zeros((z.shape[0], k))
        resp[np.arange(z.shape[0]), z] = 1.0
        new["emission"] = comps.draw(comps.posterior(torch.from_numpy(resp)), rng, gen)
    return new


# ---------------------------------------------------------------------------- latent Dirichlet allocation
def _token_arrays(X):
    """Word and document index of every token of a document-term count matrix (dense or sparse)."""
    csr = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
    csr.sum_duplicates()
    counts = csr.data
    if counts.size and (np.any(counts < 0) or np.any(counts != np.round(counts))):
        raise ValueError("the collapsed Gibbs sampler needs non-negative integer word counts in X")
    counts = counts.astype(np.int64)
    docs_of_entries = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
    words = np.repeat(csr.indices.astype(np.int64), counts)
    docs = np.repeat(docs_of_entries, counts)
    return words, docs, csr.shape


def gibbs_lda(X, n_topics, *, doc_topic_prior=None, topic_word_prior=None, n_samples=200, warmup=200, thin=1,
              n_chains=2, random_state=None):
    """Collapsed Gibbs sampler of latent Dirichlet allocation (Griffiths and Steyvers 2004).

    The topic proportions ``theta_d ~ Dirichlet(alpha)`` and the topics ``phi_k ~
    Dirichlet(beta)`` are integrated out; a sweep visits every word token and draws its
    topic from ``p(z_i = k | z_{-i}, w) ∝ (n_dk + alpha)(n_kw + beta) / (n_k + V beta)``
    (counts without token ``i``), in a compiled loop.

    Parameters
    ----------
    X : array-like or scipy.sparse matrix of shape (n_documents, n_words)
        Non-negative integer word counts.
    n_topics : int
    doc_topic_prior, topic_word_prior : float, optional
        ``alpha`` and ``beta``; ``1 / n_topics`` by default (scikit-learn's LDA defaults).
    n_samples, warmup, thin, n_chains : int
        Sweeps kept per chain (every ``thin``-th after ``warmup``), number of chains.
    random_state : None, int or numpy.random.RandomState

    Returns
    -------
    MCMCResult
        ``samples["log_likelihood"]``: ``log p(w | z)`` of every kept sweep (the convergence
        trace of Griffiths and Steyvers), ``samples["log_joint"]``: ``log p(w, z)``.
        ``extras`` (one row per chain, topics in each chain's own labelling):
        ``topic_word`` (chains, K, V), the posterior mean of the topics
        ``E[(n_kw + beta) / (n_k + V beta)]``; ``doc_topic`` (chains, D, K), the posterior mean
        proportions ``E[(n_dk + alpha) / (n_d + K alpha)]``; ``topic_word_counts`` (chains, K, V),
        the posterior mean of ``n_kw``; ``assignments``: each chain's last topic of every token.

    Examples
    --------
    Two topics with disjoint vocabularies are recovered exactly:

    >>> import numpy as np
    >>> X = np.array([[5, 4, 6, 0, 0, 0]] * 10 + [[0, 0, 0, 6, 5, 4]] * 10)
    >>> res = gibbs_lda(X, 2, n_samples=50, warmup=50, n_chains=1, random_state=0)
    >>> topics = res.extras["topic_word"][0]
    >>> np.round(np.sort(topics[:, :3].sum(1)), 2).tolist()
    [0.01, 0.99]
    """
    k = check_int(n_topics, "n_topics", 1)
    n_samples, warmup, thin, n_chains = _check_run(n_samples, warmup, thin, n_chains)
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if not sp.issparse(X):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D document-term count matrix, got shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinity")
    alpha = 1.0 / k if doc_topic_prior is None else float(doc_topic_prior)
    beta = 1.0 / k if topic_word_prior is None else float(topic_word_prior)
    for name, value in (("doc_topic_prior", alpha), ("topic_word_prior", beta)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    words, docs, (n_docs, n_words) = _token_arrays(X)
    if words.size == 0:
        raise ValueError("X holds no words (every count is zero)")
    from probkit.vi._gibbs_kernels import lda_sweep

    doc_length = np.bincount(docs, minlength=n_docs).astype(np.float64)
    log_norm_w = k * (gammaln(n_words * beta) - n_words * gammaln(beta))
    log_norm_z = n_docs * (gammaln(k * alpha) - k * gammaln(alpha))
    trace_w, trace_joint = [], []
    extras = {"topic_word": [], "doc_topic": [], "topic_word_counts": [], "assignments": []}
    for rng in _chain_states(random_state, n_chains):
        topics = rng.randint(0, k, size=words.size).astype(np.int64)
        doc_topic = np.zeros((n_docs, k), dtype=np.int64)
        word_topic = np.zeros((n_words, k), dtype=np.int64)
        np.add.at(doc_topic, (docs, topics), 1)
        np.add.at(word_topic, (words, topics), 1)
        topic_total = word_topic.sum(0)
        scratch = np.empty(k)
        sum_phi = np.zeros((k, n_words))
        sum_theta = np.zeros((n_docs, k))
        sum_counts = np.zeros((k, n_words))
        chain_w, chain_joint = [], []
        for it in range(warmup + n_samples * thin):
            lda_sweep(words, docs, topics, doc_topic, word_topic, topic_total, alpha, beta, n_words * beta,
                      rng.random_sample(words.size), scratch)
            if it >= warmup and (it - warmup) % thin == thin - 1:
                log_w = log_norm_w + float(gammaln(word_topic + beta).sum() - gammaln(topic_total + n_words * beta).sum())
                log_z = log_norm_z + float(gammaln(doc_topic + alpha).sum() - gammaln(doc_length + k * alpha).sum())
                chain_w.append(log_w)
                chain_joint.append(log_w + log_z)
                sum_phi += (word_topic + beta).T / (topic_total + n_words * beta)[:, None]
                sum_theta += (doc_topic + alpha) / (doc_length + k * alpha)[:, None]
                sum_counts += word_topic.T
        trace_w.append(chain_w)
        trace_joint.append(chain_joint)
        extras["topic_word"].append(sum_phi / n_samples)
        extras["doc_topic"].append(sum_theta / n_samples)
        extras["topic_word_counts"].append(sum_counts / n_samples)
        extras["assignments"].append(topics.copy())
    info = {"sampler": "gibbs_lda", "doc_topic_prior": alpha, "topic_word_prior": beta, "warmup": warmup,
            "thin": thin, "n_tokens": int(words.size)}
    extras = {key: np.stack(v) for key, v in extras.items()}
    return MCMCResult({"log_likelihood": np.asarray(trace_w), "log_joint": np.asarray(trace_joint)}, None, info,
                      extras)
