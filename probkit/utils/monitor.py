"""Convergence monitoring shared by every iterative fit (EM, VB-EM, SVI)."""

from __future__ import annotations

import math
import sys


class ConvergenceMonitor:
    """Record the objective of an iterative fit and decide when it has converged.

    The fit has converged when the gain of the objective between two consecutive
    iterations is below ``tol`` (in absolute value, on the *total* objective over
    the data, as in hmmlearn), or when ``n_iter`` iterations have run.

    Parameters
    ----------
    tol : float
        Convergence threshold on the objective gain.
    n_iter : int
        Maximum number of iterations.
    verbose : bool or int, default=False
        Print one line per iteration to ``sys.stderr``.

    Attributes
    ----------
    history : list of float
        The objective after each iteration (the whole trajectory, not only the last two).
    iter : int
        Number of iterations performed.

    Examples
    --------
    >>> m = ConvergenceMonitor(tol=1e-3, n_iter=10)
    >>> for value in [-10.0, -5.0, -4.9999]:
    ...     m.report(value)
    >>> m.iter, m.converged
    (3, True)
    """

    _template = "{iter:>10d} {value:>16.8f} {delta:>+16.8f}"

    def __init__(self, tol, n_iter, verbose=False):
        self.tol = tol
        self.n_iter = n_iter
        self.verbose = verbose
        self.history = []
        self.iter = 0

    def __repr__(self):
        return (
            f"{type(self).__name__}(tol={self.tol}, n_iter={self.n_iter}, iter={self.iter}, "
            f"converged={self.converged})"
        )

    def _reset(self):
        self.iter = 0
        self.history = []

    def report(self, value):
        """Record the objective of one iteration (and print it when verbose).

        Raises
        ------
        FloatingPointError
            If ``value`` is NaN: the fit stops with the iteration number rather than
            carrying NaN parameters forward.
        """
        value = float(value)
        if math.isnan(value):
            raise FloatingPointError(
                f"the objective became NaN at iteration {self.iter + 1}; "
                "check the data for extreme values or increase regularisation"
            )
        if self.verbose:
            delta = value - self.history[-1] if self.history else math.nan
            print(self._template.format(iter=self.iter + 1, value=value, delta=delta), file=sys.stderr)
        self.history.append(value)
        self.iter += 1

    @property
    def converged(self):
        """Whether the last gain is below ``tol`` or ``n_iter`` iterations were run."""
        if self.iter >= self.n_iter:
            return True
        return len(self.history) >= 2 and abs(self.history[-1] - self.history[-2]) < self.tol

    @property
    def gain_converged(self):
        """Whether the last gain is below ``tol`` (ignoring the iteration cap)."""
        return len(self.history) >= 2 and abs(self.history[-1] - self.history[-2]) < self.tol
