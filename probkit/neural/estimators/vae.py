"""VAE: a variational autoencoder with Gaussian, Bernoulli or categorical observations.

The model
---------
A latent vector ``z`` of ``n_components`` standard normal coordinates and a decoder MLP
``f`` that gives the parameters of independent observations,

.. math::

   p(z) = \\mathcal N(0, I), \\qquad
   p(x \\mid z) = \\prod_{j=1}^{D} p(x_j \\mid f_j(z)),

with ``p(x_j | f_j(z))`` a normal of mean ``f_j(z)`` and a learned variance (one shared
by the features, ``noise="isotropic"``, or one per feature, ``noise="diagonal"``), a
Bernoulli of logit ``f_j(z)``, or a categorical over ``n_categories`` values with logits
``f_j(z)``. Real data are centred and divided by one overall scale (the root mean
variance), which keeps an isotropic noise isotropic; bounds are reported in the data's
own units.

The guide (encoder) is a diagonal normal ``q(z | x) = N(mu(x), diag s(x)^2)`` whose mean
and scale come from an encoder MLP. With no hidden layers (``encoder_layers=()`` and
``decoder_layers=()``) and ``noise="isotropic"`` the model is probabilistic PCA: the
marginal is ``N(b, W W^T + sigma^2 I)``, the exact posterior is Gaussian with a mean
linear in ``x``, and at the maximum of the ELBO the decoder's columns are orthogonal, the
posterior is diagonal and the ELBO equals the log-likelihood -- so the fitted decoder is
the PPCA maximum-likelihood solution (Tipping & Bishop, 1999; Lucas et al., 2019).

Training and bounds
-------------------
The model and the guide are Pyro programs; the loss is Pyro's ELBO estimator
(:func:`probkit.vi.make_elbo`: ``TraceMeanField_ELBO``, whose Gaussian KL term is
analytic, or ``Trace_ELBO``) on each mini-batch, minimised with the shared loop
:func:`probkit.neural.train_module` (AdamW, clipping, schedule, early stopping on a
validation split). For ``K`` draws ``z_k`` from the guide with log-weights
``w_k = log p(x, z_k) - log q(z_k | x)``, the ELBO estimate is ``mean_k w_k`` and the
importance-weighted bound (IWAE, Burda et al., 2016) is ``log mean_k exp(w_k)``; both
lower-bound ``log p(x)`` in expectation, the IWAE bound is never below the ELBO from the
same draws, and it tightens as ``K`` grows. The ``K`` standard-normal draws are shared by
all rows (common random numbers), so a row's value does not depend on which other rows
are scored with it.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.base import DensityMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from probkit.base import NumberInterval, ProbkitEstimator, StrOptions, positive_int
from probkit.neural._vae import ELBOS, LIKELIHOODS, NOISE_TYPES, VAENet
from probkit.utils.random import check_random_state
from probkit.utils.threads import limit_torch_threads
from probkit.utils.validation import check_int

from ._base import TRAINING_CONSTRAINTS, build_net_for_loading, check_standardizer, elbo_and_iwae
from ._docs import NEURAL_DOCS
from ._training import TensorData, seeded, train_module
from ._vae_mixin import VAEMixin

__all__ = ["VAE", "VAENet"]


@NEURAL_DOCS.fill
class VAE(VAEMixin, DensityMixin, TransformerMixin, ProbkitEstimator):
    """Variational autoencoder (Gaussian, Bernoulli or categorical observations), fitted by Pyro's ELBO.

    A standard normal latent vector, a decoder MLP giving the parameters of independent
    observations and an encoder MLP giving a diagonal normal posterior approximation
    (see :mod:`probkit.neural.estimators.vae` for the equations). With linear maps and
    ``noise="isotropic"`` the fitted model is probabilistic PCA. Rows of ``X`` are
    independent observations.

    Parameters
    ----------
    n_components : int, default=2
        Size of the latent vector.
    likelihood : {"gaussian", "bernoulli", "categorical"}, default="gaussian"
        Real features; binary features (0/1); or integer features in ``[0, n_categories)``.
    encoder_layers : tuple of int, default=(64,)
        Hidden widths of the encoder MLP; ``()`` makes the encoder linear.
    decoder_layers : tuple of int, default=(64,)
        Hidden widths of the decoder MLP; ``()`` makes the decoder linear.
    noise : {"isotropic", "diagonal"}, default="diagonal"
        Gaussian observation noise: one variance for all features (probabilistic PCA with
        linear maps), or one per feature (factor analysis with linear maps).
    n_categories : int, optional
        Values per feature for ``likelihood="categorical"``; by default one more than the
        largest value in the training data.
    elbo : {"TraceMeanField_ELBO", "Trace_ELBO"}, default="TraceMeanField_ELBO"
        Pyro's ELBO estimator in training (the first uses the analytic Gaussian KL).
    n_particles : int, default=1
        Guide draws per ELBO estimate in training.
    batch_size : int, default=64
        Rows per mini-batch (training and prediction).
    max_epochs : int, default=100
        Passes over the training rows.
    lr : float, default=1e-3
        Peak learning rate of AdamW.
    weight_decay : float, default=0.0
        Decoupled weight decay (on weight matrices); it biases the likelihood fit, hence 0.
    clip_grad_norm : float or None, default=10.0
        Global gradient-norm clipping.
    schedule : {"cosine", "linear", "constant"}, default="cosine"
        Learning-rate decay after the warm-up.
    warmup : float or int, default=0.0
        Linear warm-up: fraction of all steps (float) or number of steps (int).
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows, stop when the validation ELBO has
        not improved for ``patience`` epochs and restore the best epoch's weights.
    validation_fraction : float, default=0.1
        Share of the rows held out when ``early_stopping`` (at least one, with two or
        more rows).
    patience : int, default=10
        Epochs without improvement before stopping.
    mixed_precision : {"auto", True, False, "bf16", "fp16"}, default="auto"
        Autocast on CUDA; ignored on the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, the validation split, the shuffling and the guide draws
        of training; with an int, fits on the CPU are reproducible.
    device : str or torch.device, optional
        "cpu" (default), "cuda", "cuda:1" or "auto".
    dtype : str or torch.dtype, optional
        Parameter dtype; default float32.
    verbose : int, default=0
        1 shows a progress bar over epochs; 2 also one over the batches.

    Attributes
    ----------
    module_ : VAENet
        The trained network (decoder, encoder, noise scale).
    n_features_in_ : int
    n_categories_ : int
        Values per feature (categorical likelihood; 2 for Bernoulli, 0 for Gaussian).
    elbo_history_ : ndarray of shape (n_epochs,)
        Training ELBO per row of each epoch (Gaussian data: in the standardised units).
    history_ : dict
        The :class:`~probkit.neural.TrainingHistory` of the fit (losses are negative ELBOs per row).
    n_iter_ : int
        Epochs run.
    best_epoch_ : int or None

    Examples
    --------
    Two latent coordinates behind five noisy features:

    >>> import numpy as np
    >>> from probkit.neural import VAE
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(300, 2) @ rng.randn(2, 5) + 0.1 * rng.randn(300, 5)
    >>> vae = VAE(2, encoder_layers=(), decoder_layers=(), noise="isotropic", lr=2e-2, max_epochs=40,
    ...           random_state=0).fit(X)
    >>> vae.transform(X).shape                       # posterior means
    (300, 2)
    >>> vae.inverse_transform(vae.transform(X[:3])).shape
    (3, 5)
    >>> b = vae.bounds(X, n_particles=16)            # per-row ELBO and IWAE bound, same draws
    >>> bool(np.all(b["iwae"] >= b["elbo"]))
    True
    >>> X_new, Z_new = vae.sample(4, random_state=0)
    >>> X_new.shape, Z_new.shape
    ((4, 5), (4, 2))
    """

    _default_dtype = torch.float32

    _parameter_constraints = {
        "n_components": positive_int,
        "likelihood": [StrOptions(set(LIKELIHOODS))],
        "encoder_layers": [tuple, list],
        "decoder_layers": [tuple, list],
        "noise": [StrOptions(set(NOISE_TYPES))],
        "n_categories": [None, NumberInterval(Integral, 2, None, closed="left")],
        "elbo": [StrOptions(set(ELBOS))],
        "n_particles": positive_int,
        **TRAINING_CONSTRAINTS,
    }

    def __init__(self, n_components=2, likelihood="gaussian", *, encoder_layers=(64,), decoder_layers=(64,),
                 noise="diagonal", n_categories=None, elbo="TraceMeanField_ELBO", n_particles=1, batch_size=64,
                 max_epochs=100, lr=1e-3, weight_decay=0.0, clip_grad_norm=10.0, schedule="cosine", warmup=0.0,
                 early_stopping=True, validation_fraction=0.1, patience=10, mixed_precision="auto",
                 random_state=None, device=None, dtype=None, verbose=0):
        self.n_components = n_components
        self.likelihood = likelihood
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.noise = noise
        self.n_categories = n_categories
        self.elbo = elbo
        self.n_particles = n_particles
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.clip_grad_norm = clip_grad_norm
        self.schedule = schedule
        self.warmup = warmup
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.mixed_precision = mixed_precision
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _check_params(self):
        self._validate_params()
        for name in ("encoder_layers", "decoder_layers"):
            for width in getattr(self, name):
                check_int(width, f"every width of {name}")

    def _validate(self, X, *, reset):
        if not reset:
            check_is_fitted(self, "module_")
        X = self._validate_X(X, reset=reset, dtype=(np.float64, np.float32)).astype(np.float64)
        self._check_support(X)
        return X

    def _tensors(self, X, device, dtype):
        """Encoder inputs and observations as tensors (one-hot inputs and long observations for categories)."""
        return tuple(torch.as_tensor(a, dtype=torch.long if a.dtype.kind == "i" else dtype, device=device)
                     for a in self._model_arrays(X))

    def _make_net(self):
        n_in = self.n_features_in_ * (self.n_categories_ if self.likelihood == "categorical" else 1)
        return VAENet(n_in, self.n_features_in_, self.n_components, self.likelihood, self.encoder_layers,
                      self.decoder_layers, noise=self.noise, n_categories=max(self.n_categories_, 2),
                      elbo=self.elbo, n_particles=self.n_particles)

    # ------------------------------------------------------------------ fit
    @limit_torch_threads
    def fit(self, X, y=None):
        """Fit the decoder and the encoder by maximising the ELBO.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Unused.

        Returns
        -------
        self
        """
        self._check_params()
        X = self._validate(X, reset=True)
        if X.shape[0] < 2:
            raise ValueError(f"Expected n_samples >= 2 to fit but got n_samples = {X.shape[0]}")
        self._resolve_categories(X)
        self._fit_scaling(X)
        device, dtype = self._compute_setup()
        rs = check_random_state(self.random_state)
        init_seed, train_seed = (int(s) for s in rs.randint(0, 2**31 - 1, size=2))
        with seeded(init_seed, device):
            net = self._make_net()
        net = net.to(device=device, dtype=dtype)
        x_in, x_obs = self._tensors(X, device, dtype)

        def loss_fn(model, batch):
            xb_in, xb_obs = batch
            return model(xb_in, xb_obs) / xb_obs.shape[0], xb_obs.shape[0]

        use_val = bool(self.early_stopping) and self.validation_fraction > 0
        history = train_module(
            net, loss_fn, TensorData(x_in, x_obs), validation_fraction=self.validation_fraction if use_val else 0.0,
            batch_size=self.batch_size, max_epochs=self.max_epochs, lr=self.lr, weight_decay=self.weight_decay,
            clip_grad_norm=self.clip_grad_norm, schedule=self.schedule, warmup=self.warmup,
            early_stopping=use_val, patience=self.patience, restore_best=True, random_state=train_seed,
            device=device, mixed_precision=self.mixed_precision, verbose=self.verbose, desc=type(self).__name__)
        self.module_ = net.eval()
        self.history_ = history.as_dict()
        self.elbo_history_ = -np.asarray(history.train_loss, dtype=np.float64)
        self.n_iter_ = history.n_epochs
        self.best_epoch_ = history.best_epoch
        return self

    # ------------------------------------------------------------------ inference
    def _prepared(self, X):
        X = self._validate(X, reset=False)
        p = next(self.module_.parameters())
        return self._tensors(X, p.device, p.dtype)

    def _batches(self, n):
        return (slice(s, s + self.batch_size) for s in range(0, n, self.batch_size))

    @limit_torch_threads
    def transform(self, X):
        """Posterior means ``E_q[z | x]`` (the encoder's means).

        %(rows_to_latents)s
        """
        x_in, _ = self._prepared(X)
        with torch.no_grad():
            out = [self.module_.encode(x_in[s])[0] for s in self._batches(len(x_in))]
        return torch.cat(out).double().cpu().numpy()

    @limit_torch_threads
    def inverse_transform(self, Z):
        """Decode latent vectors: the mean of ``p(x | z)`` in data units.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_components)

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            Gaussian: the decoded means; Bernoulli: the probabilities of 1; categorical:
            the expected category number ``sum_c c p(x_j = c | z)``.
        """
        z = self._check_latent(Z)
        with torch.no_grad():
            return self._mean_of_output(self.module_.decode(z))

    @limit_torch_threads
    def bounds(self, X, *, n_particles=64, random_state=None):
        """ELBO and importance-weighted bound of each row, from the same guide draws.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        %(bounds_params)s

        %(row_bounds_returns)s
        """
        k = check_int(n_particles, "n_particles")
        x_in, x_obs = self._prepared(X)
        eps = self._draws(k, random_state, x_in)
        elbo, iwae = [], []
        with torch.no_grad():
            for s in self._batches(len(x_in)):
                row_elbo, row_iwae = elbo_and_iwae(self.module_.log_weights(x_in[s], x_obs[s], eps), k)
                elbo.append(row_elbo)
                iwae.append(row_iwae)
        jac = self._log_jacobian()
        return {"elbo": torch.cat(elbo).cpu().numpy() + jac, "iwae": torch.cat(iwae).cpu().numpy() + jac}

    def score_samples(self, X, *, bound="elbo", n_particles=None, random_state=None):
        """Lower bound of ``log p(x)`` of each row, in nats (data units).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        %(bound_params)s

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self._chosen_bound(X, bound, n_particles, random_state)

    def score(self, X, y=None, *, bound="elbo", n_particles=None, random_state=None):
        """Mean lower bound of ``log p(x)`` per row (see :meth:`score_samples`); higher is better."""
        return float(np.mean(self.score_samples(X, bound=bound, n_particles=n_particles, random_state=random_state)))

    @limit_torch_threads
    def sample(self, n_samples=1, random_state=None):
        """Draw rows from the model: ``z ~ N(0, I)``, then ``x ~ p(x | z)``.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : None, int or RandomState
            Defaults to the estimator's ``random_state``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        Z : ndarray of shape (n_samples, n_components)
        """
        z, gen = self._prior_draws(n_samples, random_state)
        with torch.no_grad():
            X = self._draw_to_data(self._draw_from_output(self.module_.decode(z), gen))
        return X, z.double().cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def _io_build_module(self, name, device=None):
        return build_net_for_loading(self, name, device)

    def _io_check_state(self):
        """Check what :func:`probkit.load` restored besides the network (whose weights the loader checks)."""
        if hasattr(self, "module_"):
            check_standardizer(self._x_mean, self._x_scale, self.n_features_in_)
