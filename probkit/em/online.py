r"""Stepwise (online) EM: the running-statistics update behind every ``partial_fit`` of an EM estimator.

Stepwise EM (Cappé & Moulines 2009; Liang & Klein 2009) replaces the E-step over the whole
data set by an E-step over one mini-batch, and keeps a running average of the expected
sufficient statistics:

.. math::

    s_t = (1 - \rho_t)\, s_{t-1} + \rho_t\, \bar s(\text{batch}_t), \qquad
    \theta_t = \text{M-step}(N_t\, s_t),

where :math:`\bar s(\text{batch}_t)` are the batch's statistics divided by its number of
rows (its total sample weight; start-state counts by its number of sequences), so the
batch size does not change their scale, and :math:`N_t` is the number of rows (sequences)
the stream has delivered so far: the M-step sees the statistics of a data set of that size,
so priors weigh as they would in a batch fit on the data seen so far. The step sizes are
:math:`\rho_t = (\text{learning\_offset} + t)^{-\text{learning\_decay}}` for the ``t``-th
batch; the first batch sets :math:`s_1` (there is nothing to average it with), and
:math:`\text{learning\_decay} \in (0.5, 1]` gives the stochastic-approximation guarantees
(the steps sum to infinity, their squares do not). ``learning_decay = 0`` makes every
step a full EM step on its batch alone.

The estimators only call :meth:`StepwiseEM.step` with their EM hooks
(``_em_expectation`` and ``_em_maximization``, see :mod:`probkit.em.engine`), so the
update lives here once for mixtures and HMMs alike. Statistics are any nesting of
plain dicts, tuples and lists whose leaves support ``leaf * number`` and ``leaf + leaf``
(numpy arrays, torch tensors, :class:`~probkit.distributions.SufficientStats`).
"""

from __future__ import annotations

from numbers import Real

from sklearn.utils._param_validation import validate_parameter_constraints

from probkit.base import NumberInterval, non_negative_real

__all__ = ["SCHEDULE_CONSTRAINTS", "FittedSnapshot", "StepwiseEM", "blend_stats", "check_schedule", "scale_stats", "step_size"]

#: Defaults of the step-size schedule (``learning_offset = 2`` as in Liang & Klein 2009).
DEFAULT_LEARNING_OFFSET = 2.0
DEFAULT_LEARNING_DECAY = 0.7

#: scikit-learn parameter constraints of the schedule (checked by :func:`check_schedule`).
SCHEDULE_CONSTRAINTS = {
    "learning_offset": non_negative_real,
    "learning_decay": [NumberInterval(Real, 0, 1, closed="both")],
}


def check_schedule(learning_offset, learning_decay, caller_name):
    """Validate the step-size schedule against :data:`SCHEDULE_CONSTRAINTS`.

    Parameters
    ----------
    learning_offset : float
        ``>= 0``.
    learning_decay : float
        In ``[0, 1]``.
    caller_name : str
        Named in the error message, e.g. ``"GaussianMixture.partial_fit"``.

    Raises
    ------
    ValueError
        scikit-learn's ``InvalidParameterError`` (a ``ValueError``) naming the parameter.

    Examples
    --------
    >>> check_schedule(2.0, 0.7, "Model.partial_fit")
    >>> check_schedule(2.0, 1.5, "Model.partial_fit")
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'learning_decay' parameter of Model.partial_fit must be a float in the range [0.0, 1.0]. Got 1.5 instead.
    """
    validate_parameter_constraints(
        SCHEDULE_CONSTRAINTS, {"learning_offset": learning_offset, "learning_decay": learning_decay},
        caller_name=caller_name,
    )


def step_size(t, learning_offset, learning_decay):
    """``rho_t = (learning_offset + t) ** -learning_decay``, the weight of the ``t``-th batch (``t >= 1``).

    Examples
    --------
    >>> step_size(1, 0.0, 0.7), step_size(2, 2.0, 0.5)
    (1.0, 0.5)
    """
    return float((learning_offset + t) ** (-learning_decay))


def _map_leaves(stats, fn):
    # plain containers only: SufficientStats is a Mapping too, but a leaf with its own arithmetic
    if isinstance(stats, dict):
        return {key: _map_leaves(value, fn) for key, value in stats.items()}
    if isinstance(stats, (tuple, list)):
        return type(stats)(_map_leaves(value, fn) for value in stats)
    return None if stats is None else fn(stats)


def scale_stats(stats, factor):
    """Every statistic multiplied by ``factor``.

    Parameters
    ----------
    stats : nested dict / tuple / list of arrays, tensors or SufficientStats
    factor : float or dict
        One number for every statistic, or a dict from the top-level keys of ``stats``
        to numbers, with the key ``None`` for the keys it does not name.

    Returns
    -------
    The same nesting, scaled.

    Examples
    --------
    >>> import numpy as np
    >>> scale_stats({"start": np.array([2.0]), "trans": np.array([4.0])}, {"start": 0.5, None: 0.25})
    {'start': array([1.]), 'trans': array([1.])}
    """
    if isinstance(factor, dict):
        return {key: scale_stats(value, factor[key] if key in factor else factor[None])
                for key, value in stats.items()}
    return _map_leaves(stats, lambda leaf: leaf * factor)


def blend_stats(running, new, rho):
    """``(1 - rho) * running + rho * new``, statistic by statistic.

    Examples
    --------
    >>> import numpy as np
    >>> blend_stats((np.array([0.0, 4.0]), {"x": np.array([1.0])}), (np.array([2.0, 0.0]), {"x": np.array([3.0])}), 0.25)
    (array([0.5, 3. ]), {'x': array([1.5])})
    """
    if isinstance(running, dict):
        if set(running) != set(new):
            raise ValueError(f"statistics with different fields cannot be averaged: {sorted(running, key=str)} "
                             f"vs {sorted(new, key=str)}")
        return {key: blend_stats(value, new[key], rho) for key, value in running.items()}
    if isinstance(running, (tuple, list)):
        return type(running)(blend_stats(a, b, rho) for a, b in zip(running, new, strict=True))
    if running is None:
        return None
    return running * (1.0 - rho) + new * rho


def _add_units(a, b):
    if isinstance(a, dict):
        return {key: a[key] + b[key] for key in a}
    return a + b


def _inverse_units(units):
    if isinstance(units, dict):
        return {key: 1.0 / value for key, value in units.items()}
    return 1.0 / units


class FittedSnapshot:
    """The identities of an estimator's fitted attributes, to tell whether they were replaced since.

    A ``fit``, a load or a parameter set by hand replaces attribute objects; comparing
    identities costs nothing, unlike re-validating the parameters.

    Examples
    --------
    >>> class Model:
    ...     pass
    >>> model = Model()
    >>> model.means_ = [0.0]
    >>> snapshot = FittedSnapshot(model)
    >>> snapshot.matches(model)
    True
    >>> model.means_ = [1.0]
    >>> snapshot.matches(model)
    False
    """

    def __init__(self, model):
        self._attributes = self._fitted(model)

    @staticmethod
    def _fitted(model):
        return {key: value for key, value in vars(model).items() if key.endswith("_") and not key.startswith("_")}

    @staticmethod
    def _same(a, b):
        # immutable scalars compare by value: a copy (pickle, deepcopy) does not keep their identity
        if a is b:
            return True
        return type(a) is type(b) and isinstance(a, (int, float, str, bytes)) and a == b

    def matches(self, model):
        """Whether every fitted attribute of ``model`` is the object it was (and no attribute came or went).

        Immutable scalars (``n_iter_``, ``lower_bound_``) only need the same value.
        """
        current = self._fitted(model)
        return current.keys() == self._attributes.keys() and all(
            self._same(current[k], v) for k, v in self._attributes.items())


class StepwiseEM:
    """Running state of stepwise EM for one estimator (kept between ``partial_fit`` calls).

    Attributes
    ----------
    stats : object or None
        The running statistics per unit (row, sequence), as the E-step's nesting.
    n_steps : int
        Batches absorbed so far.
    seen : float or dict
        Units (rows, total sample weight, sequences) delivered so far.
    hook_state : object
        What the estimator needs besides its fitted attributes to resume (e.g. its live
        components, whose statistics reference point must stay the same across batches).

    Examples
    --------
    >>> import numpy as np
    >>> from probkit.em.engine import EStepResult
    >>> class RunningMean:  # the M-step of a mean: statistics (count, sum)
    ...     def _em_expectation(self, x):
    ...         return EStepResult(0.0, len(x), (np.array(len(x), dtype=float), x.sum()))
    ...     def _em_maximization(self, stats):
    ...         self.mean_ = stats[1] / stats[0]
    >>> model, online = RunningMean(), StepwiseEM()
    >>> _ = online.step(model, np.array([1.0, 3.0]), 2, learning_offset=0.0, learning_decay=1.0)
    >>> _ = online.step(model, np.array([5.0]), 1, learning_offset=0.0, learning_decay=1.0)
    >>> float(model.mean_)  # rho_2 = 1/2: the average of the two batch means
    3.5
    """

    def __init__(self):
        self.stats = None
        self.n_steps = 0
        self.seen = None
        self.hook_state = None
        self._owner = None

    def step(self, model, data, units, *, learning_offset, learning_decay):
        """One stepwise-EM step on a batch: E-step, running average, M-step.

        Parameters
        ----------
        model : object
            Implements ``_em_expectation(data) -> EStepResult`` and ``_em_maximization(stats)``.
        data : object
            The validated batch, passed to ``_em_expectation``.
        units : float or dict
            What the batch's statistics are sums over: its number of rows (or total sample
            weight), or a dict as in :func:`scale_stats` (e.g. ``{"start": n_sequences,
            None: n_rows}``).
        learning_offset, learning_decay : float
            The schedule (see the module docstring).

        Returns
        -------
        estep : EStepResult
            The batch's E-step (its log-likelihood is that of the parameters before the step).
        rho : float
            The step size used (1 for the first batch).
        """
        estep = model._em_expectation(data)
        per_unit = scale_stats(estep.stats, _inverse_units(units))
        self.n_steps += 1
        if self.stats is None:
            rho = 1.0
            self.stats, self.seen = per_unit, units
        else:
            rho = step_size(self.n_steps, learning_offset, learning_decay)
            self.stats = blend_stats(self.stats, per_unit, rho)
            self.seen = _add_units(self.seen, units)
        model._em_maximization(scale_stats(self.stats, self.seen))
        return estep, rho

    def bind(self, model):
        """Remember ``model``'s fitted attributes as this state left them."""
        self._owner = FittedSnapshot(model)

    def owns(self, model):
        """Whether ``model``'s fitted attributes are still those :meth:`bind` saw.

        A ``fit``, a load or a parameter set by hand in between replaces them: the running
        statistics then belong to other parameters and a new online run starts.
        """
        return self._owner is not None and self._owner.matches(model)
