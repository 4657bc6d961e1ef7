"""Descriptions of the parameters the HMM family shares, written once (see :class:`~probkit.utils._docstrings.DocFragments`).

Used by the EM-fitted HMMs, the variational and input-driven HMMs, the HSMM and the
hmmlearn-compatible classes: each docstring names a group, and gets the entries its own
signature takes, with its own defaults.
"""

from __future__ import annotations

from probkit.utils._docstrings import STEPWISE_OPTIONS, DocFragments, parameters_returns, stepwise_returns

__all__ = ["HMM_DOCS"]

_CHAIN_PRIORS = [
    """startprob_prior, transmat_prior : float or array-like, default=$startprob_prior
    Dirichlet concentrations of the MAP estimates of ``startprob_`` and of each row of
    ``transmat_`` (1.0 = maximum likelihood; zero entries stay zero).""",
]

_EM_OPTIONS = [
    """algorithm : {"viterbi", "map"}, default=$algorithm
    Default decoder of :meth:`decode` / :meth:`predict`: the jointly most likely path
    (``viterbi``) or the most likely state of each step (``map``).""",
    """random_state : int, RandomState instance or None, default=$random_state
    Seeds the random initialisation of :meth:`fit`, and :meth:`sample` when that is
    given no ``random_state`` of its own.""",
    """n_iter : int, default=$n_iter
    Maximum number of EM iterations.""",
    """tol : float, default=$tol
    Convergence threshold on the gain of the *total* objective (log-likelihood) of the
    training data between iterations (as in hmmlearn, not per sample).""",
    """n_init : int, default=$n_init
    Number of initialisations (parameters named in ``init_params`` are drawn anew each
    time); the run with the highest objective is kept. Not in hmmlearn.""",
    """verbose : bool, default=$verbose
    Report the objective of each iteration (through ``monitor_``).""",
]

_COMPUTE_OPTIONS = [
    """implementation : {"scaling", "log"}, default=$implementation
    Forward-backward numerics; both give the same results. ``scaling`` (normalised
    linear-space messages, recomputed in log space for any sequence where they could
    underflow) is the faster; hmmlearn defaults to ``log`` for backward compatibility.""",
    """device : str or torch.device, optional
    Compute device (the CPU by default; ``"cuda"`` runs the torch kernels there).""",
    """dtype : str or torch.dtype, optional
    Compute precision (float64 by default).""",
]

_SEQUENCES = [
    """X : array-like of shape (n_samples, n_features), or a list of such arrays
    Sequences stacked along the first axis (or one array per sequence).""",
    """y : None
    Unused (scikit-learn's slot). Sequence lengths passed here are an error: use ``lengths=``.""",
    """lengths : array-like of int, optional
    Lengths of the sequences in ``X``; they must sum to ``n_samples``.""",
]

_CHAIN_ATTRS = """startprob_ : ndarray of shape (n_components,)
    Probability of each state at the first step of a sequence.
transmat_ : ndarray of shape (n_components, n_components)
    ``transmat_[i, j]``: probability of moving from state ``i`` to state ``j``."""

_FIT_ATTRS = """monitor_ : ConvergenceMonitor
    ``history`` holds the objective of every iteration.
n_iter_ : int
    EM iterations run (of the kept initialisation).
converged_ : bool
    Whether the gain fell below ``tol`` within ``n_iter`` iterations.
n_features_in_ : int
    Number of features seen in :meth:`fit`."""


def _attributes(*emission_entries):
    """The ``Attributes`` section of an EM-fitted HMM: the chain's parameters, the emission's
    entries, and what ``fit`` records."""
    return "\n".join(["Attributes", "----------", _CHAIN_ATTRS, *emission_entries, _FIT_ATTRS])


HMM_DOCS = DocFragments(
    parameters={
        "n_components": [
            """n_components : int, default=$n_components
    Number of hidden states.""",
        ],
        # everything an EM-fitted HMM shares, in one group
        "hmm_options": _CHAIN_PRIORS + _EM_OPTIONS + _COMPUTE_OPTIONS,
        "em_options": _EM_OPTIONS,
        "compute_options": _COMPUTE_OPTIONS,
        "stepwise_options": STEPWISE_OPTIONS,
        "sequences": _SEQUENCES,
        "sample_options": [
            """n_samples : int, default=$n_samples
    Number of steps.""",
            """random_state : None, int or RandomState
    Defaults to the estimator's ``random_state`` (as hmmlearn).""",
            """currstate : int, optional
    Start from this state instead of drawing it from ``startprob_``.""",
        ],
    },
    sections={
        "chain_attrs": _CHAIN_ATTRS,
        "fit_attrs": _FIT_ATTRS,
        # methods that take only the sequences (``fit``, ``score``)
        "sequences_to_self": parameters_returns(_SEQUENCES, "self"),
        "sequences_to_log_likelihood": parameters_returns(_SEQUENCES, "log_likelihood : float"),
        "stepwise_returns": stepwise_returns(
            "``monitor_.history`` holds the total log-likelihood of every batch under the\n"
            "parameters before its step."),
        # the whole Attributes section of the models that probkit.hmm and probkit.compat.hmmlearn share
        "multinomial_attributes": _attributes(
            """emissionprob_ : ndarray of shape (n_components, n_features)
    Probability of each category in each state."""),
        "poisson_attributes": _attributes(
            """lambdas_ : ndarray of shape (n_components, n_features)
    Rate of each feature in each state."""),
        "gmm_attributes": _attributes(
            """weights_ : ndarray of shape (n_components, n_mix)
means_ : ndarray of shape (n_components, n_mix, n_features)
covars_ : ndarray
    full ``(K, M, d, d)``, diag ``(K, M, d)``, spherical ``(K, M)``, tied ``(K, d, d)``
    (as hmmlearn)."""),
    },
)
