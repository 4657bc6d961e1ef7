"""Reference posteriors by Hamiltonian Monte Carlo: :func:`run_nuts`.

Variational posteriors are approximations; NUTS samples the exact posterior (up to Monte
Carlo error) and is the gold standard the tests and examples compare VI against on small
problems. Discrete latent sites (mixture assignments, HMM states) are summed out by
Pyro's enumeration, so NUTS only moves the continuous parameters.
"""

from __future__ import annotations

import numpy as np
import torch
from pyro.infer import MCMC, NUTS, config_enumerate
from pyro.infer.autoguide.initialization import init_to_value

from probkit.utils.random import forked_rng
from probkit.utils.threads import torch_threads
from probkit.utils.validation import check_int
from probkit.vi._pyro import ParamScope, model_args, pyro_lock

__all__ = ["run_nuts"]


def run_nuts(model, data=None, *, num_samples=500, warmup_steps=None, num_chains=1, max_plate_nesting=None,
             target_accept_prob=0.8, max_tree_depth=10, random_state=None, verbose=0, init_values=None):
    """Sample a Pyro model's posterior with NUTS, discrete sites enumerated.

    Parameters
    ----------
    model : callable
        A Pyro model taking the arguments in ``data`` (as in :func:`fit_svi`).
    data : tuple, dict, array or tensor, optional
    num_samples : int, default=500
        Samples kept per chain after warm-up.
    warmup_steps : int, optional
        Adaptation steps (step size and mass matrix); ``num_samples`` by default.
    num_chains : int, default=1
        Chains are run one after the other in this process.
    max_plate_nesting : int, optional
        Plates nested in the model (needed to enumerate discrete sites); guessed when omitted.
    target_accept_prob : float, default=0.8
    max_tree_depth : int, default=10
    random_state : None, int or RandomState
        Seeds the sampler (global generators restored afterwards).
    verbose : int, default=0
        Show Pyro's progress bar when positive.
    init_values : dict, optional
        Initial values of continuous sites (constrained), e.g. a variational posterior
        mean: the chain starts there (and, for a mixture, stays with those component labels).

    Returns
    -------
    samples : dict of str to numpy.ndarray
        Posterior draws of every continuous sample site, with a leading axis of
        ``num_chains * num_samples`` draws.

    Examples
    --------
    >>> import torch, pyro, pyro.distributions as dist
    >>> def model(x):
    ...     mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("obs", dist.Normal(mu, 1.0), obs=x)
    >>> draws = run_nuts(model, torch.ones(3), num_samples=200, warmup_steps=100, random_state=0)
    >>> draws["mu"].shape, bool(abs(draws["mu"].mean() - 0.75) < 0.15)
    ((200,), True)
    """
    num_samples = check_int(num_samples, "num_samples")
    warmup = num_samples if warmup_steps is None else check_int(warmup_steps, "warmup_steps", minimum=0)
    num_chains = check_int(num_chains, "num_chains")
    args, kwargs = model_args(data)
    nesting = None if max_plate_nesting is None else int(max_plate_nesting)
    kernel = NUTS(config_enumerate(model, default="parallel"), max_plate_nesting=nesting,
                  target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth, jit_compile=False,
                  init_strategy=init_to_value(values=dict(init_values or {})))
    chains = []
    with pyro_lock, torch_threads(1), forked_rng(random_state), ParamScope():
        # Chains run one after the other (Pyro's multi-chain mode would fork processes).
        for _ in range(int(num_chains)):
            mcmc = MCMC(kernel, num_samples=int(num_samples), warmup_steps=int(warmup), num_chains=1,
                        disable_progbar=not verbose)
            mcmc.run(*args, **kwargs)
            chains.append(mcmc.get_samples())
    samples = {name: torch.cat([c[name] for c in chains], 0) for name in chains[0]}
    out = {}
    for name, value in samples.items():
        arr = value.detach().cpu().numpy()
        if not np.all(np.isfinite(arr)):
            raise FloatingPointError(f"NUTS produced non-finite draws of {name!r}")
        out[name] = arr
    return out
