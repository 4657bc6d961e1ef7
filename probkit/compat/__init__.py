"""Drop-in layers that give probkit's estimators another library's calling conventions.

:mod:`probkit.compat.hmmlearn` mirrors ``hmmlearn`` 0.3.3: change
``from hmmlearn import hmm, vhmm`` to ``from probkit.compat.hmmlearn import hmm, vhmm``
and the program keeps working, on probkit's algorithms.
"""
