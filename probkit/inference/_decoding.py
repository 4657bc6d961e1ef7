"""What every state-space estimator's ``decode`` shares: the algorithm names and MAP decoding."""

from __future__ import annotations

import numpy as np

__all__ = ["DECODER_ALGORITHMS", "map_decode", "resolve_decoder"]

#: ``decode``'s algorithms: the jointly most likely path, or the most likely state of each step.
DECODER_ALGORITHMS = ("viterbi", "map")


def resolve_decoder(algorithm, default):
    """The algorithm of one ``decode`` call: ``algorithm``, or the estimator's ``default`` when None.

    Examples
    --------
    >>> resolve_decoder(None, "viterbi"), resolve_decoder("map", "viterbi")
    ('viterbi', 'map')
    >>> resolve_decoder("beam", "viterbi")
    Traceback (most recent call last):
    ...
    ValueError: algorithm must be one of ('viterbi', 'map'), got 'beam'
    """
    algorithm = default if algorithm is None else algorithm
    if algorithm not in DECODER_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {DECODER_ALGORITHMS}, got {algorithm!r}")
    return algorithm


def map_decode(posteriors):
    """MAP decoding: the most probable state of each step, and the sum of the log posterior
    probabilities of those states (``-inf`` where a step's best state has probability zero).

    Parameters
    ----------
    posteriors : numpy.ndarray of shape (n_samples, n_components)

    Returns
    -------
    log_prob : float
    state_sequence : numpy.ndarray of int64, shape (n_samples,)

    Examples
    --------
    >>> log_prob, states = map_decode(np.array([[0.9, 0.1], [0.2, 0.8]]))
    >>> round(log_prob, 6), states            # log 0.9 + log 0.8
    (-0.328504, array([0, 1]))
    """
    posteriors = np.asarray(posteriors)
    with np.errstate(divide="ignore"):
        return float(np.log(posteriors.max(1)).sum()), posteriors.argmax(1).astype(np.int64)
