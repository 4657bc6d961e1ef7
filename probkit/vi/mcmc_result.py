"""The result of every probkit sampler: :class:`MCMCResult` (draws, diagnostics, ArviZ export)."""

from __future__ import annotations

import numpy as np

from probkit.vi import diagnostics

__all__ = ["MCMCResult"]


def _check_draws(name, value, n_chains=None, n_draws=None):
    arr = np.asarray(value)
    if arr.ndim < 2:
        raise ValueError(f"draws of {name!r} must have shape (n_chains, n_draws, ...), got shape {arr.shape}")
    if n_chains is not None and arr.shape[:2] != (n_chains, n_draws):
        raise ValueError(f"draws of {name!r} have {arr.shape[:2]} chains and draws, expected {(n_chains, n_draws)}")
    return arr


class MCMCResult:
    """Draws of several chains with their convergence diagnostics.

    Parameters
    ----------
    samples : dict of str to array-like
        Parameter draws, each shaped ``(n_chains, n_draws, *param_shape)``.
    sample_stats : dict of str to array-like, optional
        Per-draw sampler statistics shaped ``(n_chains, n_draws)`` (``log_likelihood``,
        ``accept_prob``, ...).
    info : dict, optional
        Sampler settings and tuned quantities (step sizes, warm-up length, seed).
    extras : dict, optional
        Per-chain summaries that are not traced draw by draw (e.g. the posterior-mean topics
        of a collapsed LDA sampler), each with a leading chain axis.

    Attributes
    ----------
    n_chains, n_draws : int
    names : list of str
        The parameters, in the order given.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.RandomState(0)
    >>> res = MCMCResult({"mu": rng.normal(1.0, 1.0, size=(4, 500)), "beta": rng.normal(size=(4, 500, 2))})
    >>> res.n_chains, res.n_draws, res.names
    (4, 500, ['mu', 'beta'])
    >>> bool(abs(res.mean("mu") - 1.0) < 4 * res.mcse("mu"))
    True
    >>> res.ess("beta").shape
    (2,)
    >>> res.draws("beta").shape   # chains pooled
    (2000, 2)
    >>> table = res.summary()
    >>> sorted(table["mu"])
    ['ess_bulk', 'ess_tail', 'mcse_mean', 'mean', 'r_hat', 'sd']
    """

    def __init__(self, samples, sample_stats=None, info=None, extras=None):
        if not isinstance(samples, dict) or not samples:
            raise ValueError("samples must be a non-empty dict of parameter name -> draws")
        first = _check_draws(next(iter(samples)), next(iter(samples.values())))
        self.n_chains, self.n_draws = int(first.shape[0]), int(first.shape[1])
        self.samples = {str(k): _check_draws(k, v, self.n_chains, self.n_draws) for k, v in samples.items()}
        self.sample_stats = {str(k): _check_draws(k, v, self.n_chains, self.n_draws)
                             for k, v in (sample_stats or {}).items()}
        self.info = dict(info or {})
        self.extras = dict(extras or {})

    @property
    def names(self):
        return list(self.samples)

    def __repr__(self):
        params = ", ".join(f"{k}{tuple(v.shape[2:])}" for k, v in self.samples.items())
        return f"MCMCResult({self.n_chains} chains x {self.n_draws} draws; {params})"

    def _get(self, name):
        if name in self.samples:
            return self.samples[name]
        if name in self.sample_stats:
            return self.sample_stats[name]
        raise KeyError(f"no parameter or sample statistic named {name!r}; parameters: {self.names}, "
                       f"statistics: {list(self.sample_stats)}")

    def draws(self, name):
        """Draws of ``name`` with the chains pooled: ``(n_chains * n_draws, *param_shape)``."""
        arr = self._get(name)
        return arr.reshape(-1, *arr.shape[2:])

    def mean(self, name):
        """Posterior mean of ``name`` over all chains and draws."""
        value = self._get(name).mean(axis=(0, 1))
        return float(value) if np.ndim(value) == 0 else value

    def std(self, name):
        """Posterior standard deviation of ``name`` (all draws pooled, ``ddof=1``)."""
        value = self.draws(name).std(axis=0, ddof=1)
        return float(value) if np.ndim(value) == 0 else value

    def rhat(self, name, method="rank"):
        """R-hat of ``name`` (see :func:`probkit.vi.diagnostics.rhat`)."""
        return diagnostics.rhat(self._get(name), method=method)

    def ess(self, name, method="bulk"):
        """Effective sample size of ``name`` (see :func:`probkit.vi.diagnostics.ess`)."""
        return diagnostics.ess(self._get(name), method=method)

    def mcse(self, name, method="mean"):
        """Monte Carlo standard error of the mean of ``name`` (see :func:`probkit.vi.diagnostics.mcse`)."""
        return diagnostics.mcse(self._get(name), method=method)

    def summary(self, names=None):
        """Mean, sd, MCSE, bulk and tail ESS and rank R-hat of every parameter.

        Returns
        -------
        dict of str to dict
            ``{name: {"mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"}}``, each value a
            float or an array of the parameter's shape.
        """
        out = {}
        for name in names or self.names:
            out[name] = {"mean": self.mean(name), "sd": self.std(name), "mcse_mean": self.mcse(name),
                         "ess_bulk": self.ess(name), "ess_tail": self.ess(name, "tail"), "r_hat": self.rhat(name)}
        return out

    def to_inference_data(self):
        """The draws as an ArviZ ``InferenceData`` (``posterior`` and ``sample_stats`` groups).

        Raises
        ------
        ImportError
            If ArviZ is not installed (it is an optional dependency: ``pip install arviz``).

        Examples
        --------
        >>> res = MCMCResult({"mu": np.zeros((2, 10))})
        >>> try:
        ...     idata = res.to_inference_data()
        ... except ImportError as exc:
        ...     print("needs arviz" if "arviz" in str(exc) else exc)
        ... else:
        ...     print("needs arviz")
        needs arviz
        """
        try:
            import arviz
        except ImportError as exc:
            raise ImportError("MCMCResult.to_inference_data needs ArviZ, which is not installed "
                              "(pip install arviz)") from exc
        groups = {"posterior": {k: np.asarray(v) for k, v in self.samples.items()}}
        if self.sample_stats:
            groups["sample_stats"] = {k: np.asarray(v) for k, v in self.sample_stats.items()}
        major = int(str(getattr(arviz, "__version__", "0")).split(".")[0] or 0)
        if major >= 1:  # ArviZ 1.x takes {group: {variable: array}}
            return arviz.from_dict(groups)
        return arviz.from_dict(**groups)
