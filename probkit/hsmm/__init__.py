"""Hidden semi-Markov models: explicit state durations, fitted by EM.

:class:`HSMM` gives every state a duration distribution (Poisson, negative binomial,
geometric or any categorical distribution up to ``max_duration``) and emissions from any
probkit family; inference runs on the kernels of :mod:`probkit.inference.semi_markov`.
"""

from probkit.hsmm.hsmm import HSMM

__all__ = ["HSMM"]
