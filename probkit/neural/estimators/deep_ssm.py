"""DeepStateSpaceModel: a deep Markov model with an amortised guide, trained by stochastic variational inference.

The model, the guide and the bounds are those of :class:`probkit.neural.networks.DSSMNet`;
this module is the estimator around it. Pyro runs the ELBO in ``fit`` and is imported
there, not with this module.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.base import DensityMixin, TransformerMixin

from probkit.base import NumberInterval, StrOptions, positive_int
from probkit.neural.backbones import KINDS
from probkit.neural.networks import DSSMNet
from probkit.utils.sequences import check_y_slot, keyword_lengths
from probkit.utils.threads import limit_torch_threads
from probkit.utils.validation import check_int

from ._base import NameOptions, NeuralEstimator, check_bound, elbo_and_iwae, store_params, unwrap
from ._data import check_counts
from ._docs import NEURAL_DOCS

__all__ = ["DeepStateSpaceModel"]

_EMISSIONS = ("gaussian", "poisson")
_ELBOS = ("Trace_ELBO", "TraceMeanField_ELBO")


@NEURAL_DOCS.fill
class DeepStateSpaceModel(DensityMixin, TransformerMixin, NeuralEstimator):
    """Deep state-space model (deep Markov model) with an amortised guide, fitted by stochastic variational inference.

    Continuous latent states with a neural transition ``p(z_t | z_{t-1})`` (optionally
    reading the whole latent past through a ``backbone``) and a neural emission
    ``p(x_t | z_t)``; the posterior is approximated by ``q(z_t | z_{t-1}, x_{t:T})``,
    whose summary of the future observations is a ``guide_backbone`` run backwards.
    Trained by Pyro's ELBO on mini-batches with the shared training loop (Pyro is needed
    to fit); see :class:`~probkit.neural.networks.DSSMNet` for the equations. Sequences
    are given as for the HMMs (see Notes).

    Parameters
    ----------
    latent_dim : int, default=2
        Size of ``z_t``.
    backbone : str or None, default=None
        Causal backbone over the latent path ``z_{<t}`` in the transition ("mamba",
        "rwkv", "mambaout", "transformer", "s4d", "gru", "lstm"); None for a first-order
        transition.
    guide_backbone : str, default="gru"
        Backbone run over the reversed observations to summarise ``x_{t:T}``.
    d_model : int, default=32
        Width of both backbones.
    n_layers : int, default=1
        Layers of both backbones.
    hidden_dim : int, default=32
        Width of the transition, emission and guide MLPs.
    emission : {"gaussian", "poisson"}, default="gaussian"
        Diagonal Gaussian over real vectors, or independent Poisson counts.
    backbone_kwargs, guide_backbone_kwargs : dict, optional
        Further options of the backbones.
    elbo : {"Trace_ELBO", "TraceMeanField_ELBO"}, default="Trace_ELBO"
        Pyro's ELBO estimator used in training.
    n_particles : int, default=1
        Guide paths per ELBO estimate in training.
    kl_annealing : float in [0, 1), default=0.2
        Share of the training steps over which the weight of ``log p(z) - log q(z)``
        rises linearly from ``kl_start`` to 1 (0 disables annealing).
    kl_start : float in (0, 1], default=0.1
        Initial annealing weight.
    %(training_params)s

    Attributes
    ----------
    module_ : DSSMNet
        The trained network (model and guide).
    elbo_history_ : ndarray of shape (n_epochs,)
        Training ELBO per time step of each epoch (annealed during the KL warm-up; in
        the model's standardised units for Gaussian data).
    n_features_in_ : int
    %(training_attrs)s

    Notes
    -----
    %(sequence_forms)s

    The sampled bounds, forecasts and transforms draw their paths batch by batch, so a
    sequence's draws depend on the other sequences of the call (repeated calls agree); the
    mean path of :meth:`transform` does not.

    Examples
    --------
    A noisy two-dimensional view of a one-dimensional AR(1) state:

    >>> import numpy as np
    >>> from probkit.neural import DeepStateSpaceModel
    >>> rng = np.random.RandomState(0)
    >>> z = np.zeros((20, 30))
    >>> for t in range(1, 30):
    ...     z[:, t] = 0.95 * z[:, t - 1] + 0.3 * rng.randn(20)
    >>> X = (z[..., None] * [1.0, -0.5] + 0.2 * rng.randn(20, 30, 2)).reshape(-1, 2)
    >>> ds = DeepStateSpaceModel(latent_dim=1, d_model=8, hidden_dim=8, max_epochs=30, lr=1e-2,
    ...                          random_state=0).fit(X, lengths=[30] * 20)
    >>> ds.transform(X[:30]).shape                          # posterior means of the latent path
    (30, 1)
    >>> b = ds.bounds(X, lengths=[30] * 20, n_particles=8)
    >>> bool(np.all(b["iwae"] >= b["elbo"]))
    True
    """

    _parameter_constraints = {
        **NeuralEstimator._parameter_constraints,
        "latent_dim": positive_int,
        # None: a first-order transition
        "backbone": [None, NameOptions(set(KINDS))],
        "guide_backbone": [NameOptions(set(KINDS))],
        "hidden_dim": positive_int,
        "emission": [StrOptions(set(_EMISSIONS))],
        "guide_backbone_kwargs": [None, dict],
        "elbo": [StrOptions(set(_ELBOS))],
        "n_particles": positive_int,
        "kl_annealing": [NumberInterval(numbers.Real, 0, 1, closed="left")],
        "kl_start": [NumberInterval(numbers.Real, 0, 1, closed="right")],
    }

    def __init__(self, latent_dim=2, backbone=None, guide_backbone="gru", d_model=32, n_layers=1, *, hidden_dim=32,
                 emission="gaussian", backbone_kwargs=None, guide_backbone_kwargs=None, elbo="Trace_ELBO",
                 n_particles=1, kl_annealing=0.2, kl_start=0.1, batch_size=32, max_epochs=100, lr=3e-3,
                 weight_decay=0.0, clip_grad_norm=10.0, schedule="cosine", warmup=0.0, early_stopping=True,
                 validation_fraction=0.1, patience=10, mixed_precision="auto", random_state=None, device=None,
                 dtype=None, verbose=0):
        store_params(self, locals())

    # ------------------------------------------------------------------ parameters and data
    _scores_standardized = property(lambda self: self.emission == "gaussian")

    def _check_values(self, values, name, reset):
        if self.emission == "poisson":
            return check_counts(values, "poisson", name, self)
        return super()._check_values(values, name, reset)

    def _scaling_source(self, values):
        return np.log1p(values) if self.emission == "poisson" else values

    def _make_net(self):
        return DSSMNet(self.n_features_in_, self.latent_dim, emission=self.emission, backbone=self.backbone,
                       guide_backbone=self.guide_backbone, d_model=self.d_model, n_layers=self.n_layers,
                       hidden_dim=self.hidden_dim, backbone_kwargs=self.backbone_kwargs,
                       guide_backbone_kwargs=self.guide_backbone_kwargs, elbo=self.elbo,
                       n_particles=self.n_particles)

    # ------------------------------------------------------------------ fit
    def _fit_sequences(self, options, X, lengths, valid_lengths):
        """Fit the model and the guide by maximising the ELBO."""
        batch = self._read(X, lengths, valid_lengths, reset=True)
        if batch.n_samples < 2:
            raise ValueError(f"Expected n_samples >= 2 to fit but got n_samples = {batch.n_samples}")
        data = self._training_data(batch)
        anneal_steps = self.kl_annealing * options.plan(len(data) - options.n_validation(len(data))).total_steps
        counter = {"step": 0}

        def loss_fn(model, b):
            lb = b["lengths"]
            anneal = 1.0
            if unwrap(model).training:
                if anneal_steps > 0 and counter["step"] < anneal_steps:
                    anneal = self.kl_start + (1.0 - self.kl_start) * counter["step"] / anneal_steps
                counter["step"] += 1
            n = lb.sum()
            return model(b["x_in"], b["x_obs"], lb, anneal) / n, n

        history = self._train(options, data, loss_fn)
        self.elbo_history_ = -np.asarray(history.train_loss, dtype=np.float64)

    # ------------------------------------------------------------------ inference
    def _data_and_generator(self, X, lengths, valid_lengths, random_state):
        """The checked sequences, their :class:`SequenceData`, and a generator (None: seed 0, so calls agree)."""
        batch = self._read(X, lengths, valid_lengths, reset=False)
        return batch, self._sequence_data(batch), self._generator(random_state, default=0)

    @limit_torch_threads
    @keyword_lengths
    def bounds(self, X, *, lengths=None, valid_lengths=None, n_particles=64, random_state=None):
        """ELBO and importance-weighted bound of each sequence, from the same guide paths.

        %(sequence_params)s
        %(bounds_params)s

        %(sequence_bounds_lengths_returns)s
        """
        k = check_int(n_particles, "n_particles")
        batch, data, gen = self._data_and_generator(X, lengths, valid_lengths, random_state)

        def run(b):
            w = self.module_.log_weights(b["x_in"], b["x_obs"], b["lengths"], k, gen)
            return torch.stack(elbo_and_iwae(w, k), -1)

        out = np.array(self._evaluate(data, run, fixed_layout=False))        # random draws: batch-dependent
        jac = self._log_jacobian() * batch.lengths
        return {"elbo": out[:, 0] + jac, "iwae": out[:, 1] + jac, "lengths": batch.lengths}

    def score(self, X, y=None, *, lengths=None, valid_lengths=None, bound="elbo", n_particles=None, random_state=None):
        """Lower bound of the log-likelihood per time step, in nats (higher is better).

        %(sequence_params)s
        y : None
        bound : {"elbo", "iwae"}, default="elbo"
            The ELBO (mean log-weight) or the importance-weighted bound (log-mean-exp of
            the weights), summed over the sequences and divided by ``n_samples``.
        n_particles : int, optional
            Guide paths per sequence (default 16 for the ELBO, 64 for IWAE).
        random_state : None, int or RandomState
            Seeds the paths (None: seed 0).

        Returns
        -------
        float
        """
        check_y_slot(self, "score", X, y)
        bound, n_particles = check_bound(bound, n_particles)
        b = self.bounds(X, lengths=lengths, valid_lengths=valid_lengths, n_particles=n_particles,
                        random_state=random_state)
        return float(b[bound].sum() / b["lengths"].sum())

    @limit_torch_threads
    @keyword_lengths
    def transform(self, X, *, lengths=None, valid_lengths=None, n_particles=None, random_state=None):
        """Posterior means of the latent path under the guide.

        %(sequence_params)s
        n_particles : int, optional
            None: propagate the guide's means (``z_t = mean of q(z_t | z_{t-1}, a_t)`` at
            the previous mean; deterministic, exact for a linear guide). An int: average
            of that many sampled guide paths.
        random_state : None, int or RandomState
            Seeds the sampled paths (None: seed 0).

        Returns
        -------
        ndarray of shape (n_samples, latent_dim)
        """
        mean_path = n_particles is None
        k = 1 if mean_path else check_int(n_particles, "n_particles")
        batch, data, gen = self._data_and_generator(X, lengths, valid_lengths, random_state)

        def run(b):
            a = self.module_.summary(b["x_in"], b["lengths"])
            return self.module_.guide_rsample(a, k, gen, mean_path=mean_path).mean(0).double()

        return self._evaluate_steps(data, run, fixed_layout=mean_path)

    # ------------------------------------------------------------------ generation
    @limit_torch_threads
    def sample(self, n_samples=1, random_state=None, *, n_sequences=1):
        """Draw sequences from the model (latent path first, the backbone run with ``step()``).

        Parameters
        ----------
        n_samples : int, default=1
            Steps per sequence.
        random_state : None, int or RandomState
            Defaults to the estimator's ``random_state``.
        n_sequences : int, default=1
            Independent sequences, returned concatenated.

        Returns
        -------
        X : ndarray of shape (n_sequences * n_samples, n_features)
        Z : ndarray of shape (n_sequences * n_samples, latent_dim)
        """
        gen = self._generator(random_state, default=self.random_state)
        n = check_int(n_samples, "n_samples")
        b = check_int(n_sequences, "n_sequences")
        with torch.no_grad():
            xs, zs = self.module_.sample(n, b, gen)
        X = self._to_data_units(xs.double().cpu().numpy().reshape(b * n, -1))
        return X, zs.double().cpu().numpy().reshape(b * n, -1)

    @limit_torch_threads
    def forecast(self, X, n_steps, *, lengths=None, valid_lengths=None, n_particles=100, random_state=None,
                 return_samples=False):
        """Forecast the steps after each sequence: guide paths through the data, then the model forward.

        Each of ``n_particles`` paths draws ``z_{1:T}`` from the guide given the observed
        sequence (its last state approximates ``p(z_T | x_{1:T})``), then continues the
        latent dynamics and emits ``n_steps`` observations.

        %(sequence_params)s
        n_steps : int
            Horizon.
        n_particles : int, default=100
        random_state : None, int or RandomState
            Seeds the paths (None: seed 0).
        return_samples : bool, default=False
            Also return the sampled observations.

        Returns
        -------
        mean : ndarray of shape (n_sequences, n_steps, n_features)
            Predictive means (average over the paths of the emission means).
        samples : ndarray of shape (n_particles, n_sequences, n_steps, n_features)
            Only with ``return_samples=True``.
        """
        n_steps = check_int(n_steps, "n_steps")
        k = check_int(n_particles, "n_particles")
        _, data, gen = self._data_and_generator(X, lengths, valid_lengths, random_state)

        def run(b):
            means, samples = self.module_.forecast(b["x_in"], b["lengths"], n_steps, k, gen)
            return means.double(), samples.transpose(0, 1).double()

        rows = self._evaluate(data, run, fixed_layout=False)
        mean = self._to_data_units(np.stack([r[0] for r in rows]))
        if not return_samples:
            return mean
        return mean, self._to_data_units(np.stack([r[1] for r in rows], axis=1))
