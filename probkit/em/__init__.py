"""The generic EM engine and its initialisers.

Every latent-assignment model in probkit (mixtures, HMMs, their variational variants)
runs the same loop: an E-step produces the log-likelihood and *additive* expected
sufficient statistics, the M-step turns statistics into parameters (each family's
``from_stats``), and a convergence monitor decides when to stop.
"""

from probkit.em.engine import EMResult, EStepResult, run_em
from probkit.em.init import INIT_METHODS, initial_responsibilities

__all__ = ["EMResult", "EStepResult", "INIT_METHODS", "initial_responsibilities", "run_em"]
