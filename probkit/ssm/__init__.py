"""State-space models with continuous latent states, on probkit's EM engine.

:class:`LinearGaussianSSM` is the linear-Gaussian model (linear dynamical system): Kalman
filtering and smoothing (:mod:`probkit.inference.kalman`), EM for every parameter,
missing observations, inputs, forecasts and sampling.
"""

from probkit.ssm.linear_gaussian import KalmanStreamFilter, LinearGaussianSSM

__all__ = ["KalmanStreamFilter", "LinearGaussianSSM"]
