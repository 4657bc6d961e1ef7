"""Option values of the Pyro models, importable without Pyro (estimators validate them early)."""

#: How the variational HMM's SVI sums out the state paths (see :class:`probkit.vi.models.HMMSVI`).
HMM_FORMULATIONS = ("discrete_hmm", "markov", "probkit")
