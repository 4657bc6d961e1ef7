"""Online decoding of a fitted HMM: the forward filter fed one observation (or block of rows) at a time."""

from __future__ import annotations

import math

import numpy as np
import torch

from probkit.em.online import FittedSnapshot
from probkit.utils._array import to_numpy
from probkit.utils.threads import limit_torch_threads

__all__ = ["HMMStreamFilter"]


class HMMStreamFilter:
    """Running forward filter of an HMM (built by :meth:`BaseHMM.filter_stream <probkit.hmm.BaseHMM.filter_stream>`).

    Every :meth:`update` continues one sequence: the first row is predicted from
    ``startprob_``, each later row from the previous filtered distribution through
    ``transmat_``, and the filtered distribution is renormalised at every step, so a
    stream of any length stays normalised. A block of rows goes through the same
    forward kernel as :meth:`~probkit.hmm.BaseHMM.score`, started from the predicted
    distribution. The model's parameters are read at every update, so the filter can run
    beside :meth:`~probkit.hmm.BaseHMM.partial_fit`; with fixed parameters its outputs
    equal the forward pass over the whole sequence.

    Parameters
    ----------
    model : BaseHMM
        A fitted HMM (or one whose parameters were set by hand).

    Attributes
    ----------
    filtered_proba : numpy.ndarray of shape (n_components,) or None
        ``p(z_t | x_1..x_t)`` after the latest step (None before the first).
    log_likelihood : float
        ``log p(x_1..x_t)`` of the steps seen so far (0 before the first).
    n_steps : int
        Steps seen so far.

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import GaussianHMM
    >>> model = GaussianHMM(2)
    >>> model.startprob_ = np.array([0.5, 0.5])
    >>> model.transmat_ = np.array([[0.9, 0.1], [0.1, 0.9]])
    >>> model.means_ = np.array([[-2.0], [2.0]])
    >>> model.covars_ = np.array([[1.0], [1.0]])
    >>> stream = model.filter_stream()
    >>> for x in ([-2.1], [-1.7], [2.4]):
    ...     proba = stream.update(x)
    >>> stream.n_steps, np.round(proba, 3)
    (3, array([0.001, 0.999]))
    >>> X = np.array([[-2.1], [-1.7], [2.4]])
    >>> bool(np.isclose(stream.log_likelihood, model.score(X)))
    True
    """

    def __init__(self, model):
        model._check_fitted_or_set()
        self.model = model
        self._checked = FittedSnapshot(model)
        self.reset()

    def reset(self):
        """Forget the steps seen: the next update starts a new sequence.

        Returns
        -------
        self
        """
        self.filtered_proba = None
        self.log_likelihood = 0.0
        self.n_steps = 0
        return self

    def predict_proba(self):
        """``p(z_{t+1} | x_1..x_t)``: the state distribution of the next step before it is seen.

        Returns
        -------
        numpy.ndarray of shape (n_components,)
        """
        model = self.model
        if self.filtered_proba is None:
            return np.array(model.startprob_, dtype=np.float64)
        return self.filtered_proba @ np.asarray(model.transmat_, dtype=np.float64)

    @limit_torch_threads
    def update(self, X):
        """Filter one more observation, or a block of consecutive rows.

        Parameters
        ----------
        X : array-like of shape (n_features,) or (n_rows, n_features)
            One observation, or the next rows of the sequence.

        Returns
        -------
        filtered : numpy.ndarray of shape (n_components,) or (n_rows, n_components)
            ``p(z_t | x_1..x_t)`` of each new step (one row for one observation).

        Raises
        ------
        ValueError
            When the rows have zero probability under the model given the past (the
            filter's state is then left as it was).
        """
        model = self.model
        ndim = X.ndim if isinstance(X, (np.ndarray, torch.Tensor)) else np.ndim(X)
        one_row = ndim <= 1
        if one_row:
            X = X.reshape(1, -1) if isinstance(X, (np.ndarray, torch.Tensor)) else np.reshape(X, (1, -1))
        # a model set by hand learns its number of features from the first rows, as in predict
        reset = not hasattr(model, "n_features_in_")
        data = model._validate_sequences(X, None, reset=reset)
        if reset or not self._checked.matches(model):
            # parameters replaced since the last check (partial_fit, fit, set by hand)
            try:
                model._check_fitted_or_set()
            except ValueError as exc:
                if not reset:
                    raise
                for name in ("n_features_in_", "feature_names_in_"):
                    model.__dict__.pop(name, None)
                raise ValueError(f"X does not fit the model's parameters: {exc}") from None
            self._checked = FittedSnapshot(model)
        with np.errstate(divide="ignore"):
            log_predicted = np.log(self.predict_proba())
        with torch.no_grad():
            loglik, filtered = model._forward_filter(data, model._log_emission(data), log_start=log_predicted)
        loglik = float(to_numpy(loglik).sum())
        if not math.isfinite(loglik):
            raise ValueError(f"X has zero probability under the model after the {self.n_steps} step(s) seen "
                             "(a structural zero, or a value outside every state's support)")
        filtered = np.asarray(to_numpy(filtered), dtype=np.float64)
        self.log_likelihood += loglik
        self.n_steps += filtered.shape[0]
        self.filtered_proba = filtered[-1].copy()
        return filtered[0] if one_row else filtered
