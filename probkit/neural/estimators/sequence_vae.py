r"""SequenceVAE: a variational autoencoder over whole sequences, on probkit's sequence backbones.

The model
---------
One latent vector ``z`` of ``n_components`` standard normal coordinates per sequence,
and a decoder backbone conditioned on it that gives the parameters of every step,

.. math::

   p(z) = \mathcal N(0, I), \qquad
   p(x_{1:T} \mid z) = \prod_{t=1}^{T} p(x_t \mid h_t, z), \qquad
   h_{1:T} = \mathrm{backbone}(u_{1:T}), \quad u_t = A z + b \;[+\, E x_{t-1}],

with ``p(x_t | h_t, z)`` a Gaussian, Bernoulli or categorical observation of
:class:`~probkit.neural.VAE` whose parameters are a readout MLP of ``[h_t, z]`` (``z``
reaches every step twice: through the backbone's inputs and beside its features, the
usual remedy against a decoder that ignores it). ``autoregressive=True`` adds the
encoding of the previous observation to the backbone's input (teacher forcing in
training; a learned start vector at ``t = 1``), so that ``p(x_t | x_{<t}, z)``; the
backbone must be causal. ``latent_input=False`` feeds the backbone a learned constant
instead of ``A z + b``, so that ``z`` enters through the readout alone.

The guide is ``q(z | x_{1:T}) = N(mu, diag s^2)``, whose mean and scale are a linear
map of the encoder backbone's features pooled over the valid steps (mean, last or max;
``bidirectional=True`` adds a backbone reading the sequence backwards). The ELBO of one
sequence is

.. math::

   \mathcal L(x_{1:T}) = \mathbb E_{q(z \mid x_{1:T})}\Big[\sum_{t=1}^{T}
       \log p(x_t \mid h_t, z)\Big] - \mathrm{KL}\big(q(z \mid x_{1:T}) \,\|\, \mathcal N(0, I)\big)
   \le \log p(x_{1:T}),

with the sum over the sequence's own steps only: padded steps are masked out of the
likelihood and out of the pooling, and the decoder's causal or length-masked backbone
never lets them reach a valid step, so a sequence's ELBO does not depend on the other
sequences of a batch. The ELBO and the importance-weighted bound come from the
network and the code of :class:`~probkit.neural.VAE` (:class:`SequenceVAENet` is a
:class:`~probkit.neural.estimators.vae.VAENet`).

Linear special case
-------------------
With ``latent_input=False``, ``decoder_layers=()``, a Gaussian likelihood and no
autoregression, the step means are ``m_t + C z`` with ``m_t`` set by the backbone alone:
the model of a length-``T`` sequence is a factor analysis of the flattened sequence,
``N(m, (1_T 1_T^T) \otimes C C^T + I_T \otimes \operatorname{diag}\sigma^2)``, whose
marginal likelihood is closed form (the tests compare the bounds with it).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.base import DensityMixin, TransformerMixin
from torch import nn

from probkit.base import NumberInterval, StrOptions, positive_int
from probkit.neural._vae import ELBOS, LIKELIHOODS, NOISE_TYPES, VAENet, mlp
from probkit.neural.networks import POOLINGS, SequenceNet, build_checked_backbone
from probkit.utils.sequences import check_y_slot, keyword_lengths
from probkit.utils.threads import limit_torch_threads
from probkit.utils.validation import check_int

from ._base import NeuralEstimator, elbo_and_iwae, store_params
from ._data import check_real_steps
from ._docs import NEURAL_DOCS
from ._vae_mixin import VAEMixin

__all__ = ["SequenceVAE", "SequenceVAENet"]


class SequenceVAENet(VAENet):
    """The torch module of :class:`SequenceVAE`: sequence encoder, latent-conditioned decoder backbone.

    The ELBO, the log-weights and the Pyro programs are :class:`VAENet`'s; this class
    gives them a pooled backbone encoder (:meth:`encode`) and a decoder whose
    observation distribution has event shape ``(L, D)`` with the padded steps masked.

    Parameters
    ----------
    n_inputs : int
        Per-step encoder input size (``n_features``, or ``n_features * n_categories`` one-hot).
    n_features : int
        Per-step observation size ``D``.
    n_components : int
        Latent size.
    likelihood : {"gaussian", "bernoulli", "categorical"}
    backbone : str or Backbone
    d_model, n_layers : int
    backbone_kwargs : dict, optional
    decoder_layers : tuple of int
        Hidden widths of the per-step readout MLP of ``[h_t, z]``.
    pooling : {"mean", "last", "max"}
    bidirectional : bool
    autoregressive : bool
    latent_input : bool
    noise, n_categories, elbo, n_particles
        As for :class:`VAENet`.

    Examples
    --------
    >>> import torch
    >>> net = SequenceVAENet(2, 2, 3, "gaussian", "gru", 8, 1)
    >>> x, lengths = torch.randn(4, 6, 2), torch.tensor([6, 2, 5, 1])
    >>> net.log_weights(x, x, torch.randn(5, 3), lengths).shape     # (K draws, B sequences)
    torch.Size([5, 4])
    >>> net.decode(torch.randn(4, 3), length=7).shape                 # step means
    torch.Size([4, 7, 2])
    """

    def __init__(self, n_inputs, n_features, n_components, likelihood, backbone, d_model, n_layers, *,
                 backbone_kwargs=None, decoder_layers=(), pooling="mean", bidirectional=False, autoregressive=False,
                 latent_input=True, noise="diagonal", n_categories=2, elbo="TraceMeanField_ELBO", n_particles=1):
        nn.Module.__init__(self)
        self._init_observation_model(n_features, n_components, likelihood, n_categories, elbo, n_particles)
        kw = dict(backbone_kwargs or {})
        self.encoder = SequenceNet(backbone, d_model, n_layers, nn.Linear(d_model, 2 * self.n_components),
                                   n_features=int(n_inputs), backbone_kwargs=kw, pooling=pooling,
                                   bidirectional=bidirectional)
        self.autoregressive, self.latent_input = bool(autoregressive), bool(latent_input)
        self.decoder_backbone = build_checked_backbone(backbone, d_model, n_layers, kw)
        if self.autoregressive and not self.decoder_backbone.causal:
            raise ValueError(f"autoregressive=True needs a causal backbone; the {backbone!r} backbone built with "
                             f"backbone_kwargs={backbone_kwargs!r} is bidirectional")
        if self.latent_input:
            self.latent_in = nn.Linear(self.n_components, d_model)
        else:
            self.constant_in = nn.Parameter(torch.randn(d_model) * d_model ** -0.5)
        if self.autoregressive:
            self.step_in = nn.Linear(int(n_inputs), d_model)
            self.start = nn.Parameter(torch.randn(d_model) * d_model ** -0.5)
        self.readout = mlp(d_model + self.n_components, tuple(decoder_layers), self.n_features * self.n_categories)
        self._init_noise(noise)

    def _encoder_output(self, x_in, lengths=None):
        return self.encoder(x_in, lengths)

    def _event(self):
        return (self.n_features, self.n_categories) if self.likelihood == "categorical" else (self.n_features,)

    def _backbone_input(self, z):
        """The z-part of every step's backbone input, (M, d_model) for ``z`` (M, n_components)."""
        if self.latent_input:
            return self.latent_in(z)
        return self.constant_in.to(z.dtype).expand(z.shape[0], self.constant_in.shape[0])

    def _readout(self, h, z):
        out = self.readout(torch.cat([h, z.expand(*h.shape[:-1], z.shape[-1])], -1))
        return out.reshape(*out.shape[:-1], *self._event())

    def decode(self, z, x_in=None, lengths=None, length=None):
        """Decoder outputs of every step, ``(..., L, D)`` (categorical: ``(..., L, D, C)``) for ``z`` ``(..., k)``.

        Autoregressive decoders read the observations ``x_in`` ``(B, L, n_inputs)``
        (teacher forcing; ``z``'s leading shape ends with ``B``); the others need only
        ``length`` (or ``x_in``'s length).
        """
        lead = z.shape[:-1]
        zf = z.reshape(-1, self.n_components)
        m = zf.shape[0]
        n_steps = x_in.shape[1] if x_in is not None else int(length)
        u = self._backbone_input(zf)[:, None, :].expand(m, n_steps, -1)
        if self.autoregressive:
            if x_in is None:
                raise ValueError("an autoregressive decoder reads the previous observations: pass x_in")
            prev = self.step_in(x_in)
            prev = torch.cat([self.start.to(prev.dtype).expand(prev.shape[0], 1, -1), prev[:, :-1]], 1)
            u = u + prev.expand(*lead, *prev.shape[1:]).reshape(m, n_steps, -1)
        flat_lengths = None if lengths is None else lengths.expand(lead).reshape(m)
        h = self.decoder_backbone._run(u, flat_lengths)
        return self._readout(h, zf[:, None, :]).reshape(*lead, n_steps, *self._event())

    def observation_dist(self, z, x_in=None, lengths=None):
        """``p(x_{1:L} | z)`` with event shape ``(L, D)``; steps at or past ``lengths`` are masked out."""
        out = self.decode(z, x_in, lengths, length=None if x_in is None else x_in.shape[1])
        per_step = self._elementwise_dist(out).to_event(1)
        if lengths is not None:
            n_steps = per_step.batch_shape[-1]
            per_step = per_step.mask(torch.arange(n_steps, device=lengths.device)[None, :] < lengths[:, None])
        return per_step.to_event(1)

    def roll_out(self, z, length, choose):
        """Run an autoregressive decoder step by step from latents ``z`` (M, k) for ``length`` steps.

        ``choose(out_t)`` maps the step's decoder output to ``(kept, next_input)``: what
        is returned for the step, and the encoder-input representation fed to the next
        step. Returns the kept values stacked along dimension 1.
        """
        base = self._backbone_input(z)
        state = self.decoder_backbone.init_state(z.shape[0], device=z.device, dtype=z.dtype)
        e, kept = base + self.start.to(z.dtype), []
        for t in range(length):
            h, state = self.decoder_backbone.step(e, state)
            value, next_input = choose(self._readout(h, z))
            kept.append(value)
            if t + 1 < length:
                e = base + self.step_in(next_input)
        return torch.stack(kept, 1)


@NEURAL_DOCS.fill
class SequenceVAE(VAEMixin, DensityMixin, TransformerMixin, NeuralEstimator):
    r"""Variational autoencoder of whole sequences: one latent vector per sequence, backbone encoder and decoder.

    The encoder backbone reads a sequence and pools its features over the valid steps
    into ``q(z | x_{1:T}) = N(mu, diag s^2)``; the decoder backbone, conditioned on
    ``z``, gives a Gaussian, Bernoulli or categorical observation at every step
    (optionally also conditioned on the previous step: ``autoregressive=True``). Trained
    on Pyro's ELBO with the network, bounds and likelihoods of
    :class:`~probkit.neural.VAE` (see :mod:`probkit.neural.estimators.sequence_vae` for
    the equations); sequences of different lengths are masked, so a sequence's ELBO does
    not depend on the others in its batch.

    Parameters
    ----------
    n_components : int, default=2
        Size of the latent vector of a sequence.
    likelihood : {"gaussian", "bernoulli", "categorical"}, default="gaussian"
        Real features; binary features (0/1); or integer features in ``[0, n_categories)``.
    backbone : str or Backbone, default="mamba"
        Backbone kind of :func:`probkit.neural.build_backbone` ("mamba", "rwkv",
        "mambaout", "transformer", "s4d", "gru", "lstm", ...) for the encoder and the
        decoder, or a :class:`~probkit.neural.backbones.Backbone` module (each gets a copy).
    d_model : int, default=64
        Width of the backbones.
    n_layers : int, default=2
        Layers of each backbone.
    backbone_kwargs : dict, optional
        Further options of the backbones.
    pooling : {"mean", "last", "max"}, default="mean"
        Summary of the encoder's features over the valid steps.
    bidirectional : bool, default=False
        Add an encoder backbone that reads each sequence backwards (the transformer
        drops its causal mask instead).
    autoregressive : bool, default=False
        Decode ``p(x_t | x_{<t}, z)`` (needs a causal backbone) instead of ``p(x_t | z)``.
    latent_input : bool, default=True
        Feed ``z`` to the decoder backbone at every step; False feeds it a learned
        constant, so that ``z`` enters only through the readout (with
        ``decoder_layers=()`` and a Gaussian likelihood: factor analysis of the sequence).
    decoder_layers : tuple of int, default=(64,)
        Hidden widths of the per-step readout MLP of ``[h_t, z]``; ``()`` is linear.
    noise : {"isotropic", "diagonal"}, default="diagonal"
        Gaussian observation noise: one variance for all features or one per feature.
    n_categories : int, optional
        Values per feature for ``likelihood="categorical"``; by default one more than the
        largest training value.
    elbo : {"TraceMeanField_ELBO", "Trace_ELBO"}, default="TraceMeanField_ELBO"
        Pyro's ELBO estimator in training (the first uses the analytic Gaussian KL).
    n_particles : int, default=1
        Guide draws per ELBO estimate in training.
    %(training_params)s

    Attributes
    ----------
    module_ : SequenceVAENet
        The trained network.
    n_features_in_ : int
        Features per step.
    n_categories_ : int
        Values per feature (categorical; 2 for Bernoulli, 0 for Gaussian).
    max_length_ : int
        Longest training sequence (the default length of :meth:`sample` and
        :meth:`inverse_transform`).
    elbo_history_ : ndarray of shape (n_epochs,)
        Training ELBO per step of each epoch (Gaussian data: in the standardised units).
    %(training_attrs)s

    Notes
    -----
    %(sequence_forms)s

    Gaussian data are centred per feature and divided by one overall scale (keeping an
    isotropic noise isotropic); bounds are reported in the data's units.

    Examples
    --------
    Sine waves of two frequencies, with random phases, separate in the latent space:

    >>> import numpy as np
    >>> from probkit.neural import SequenceVAE
    >>> rng = np.random.RandomState(0)
    >>> freq = np.repeat([0.3, 0.9], 40)
    >>> X = [np.sin(f * np.arange(20) + rng.uniform(0, 6.3))[:, None] + 0.1 * rng.randn(20, 1) for f in freq]
    >>> vae = SequenceVAE(2, backbone="gru", d_model=16, n_layers=1, decoder_layers=(16,), lr=1e-2,
    ...                   max_epochs=40, early_stopping=False, random_state=0).fit(X)
    >>> Z = vae.transform(X)                          # posterior means, one row per sequence
    >>> Z.shape
    (80, 2)
    >>> b = vae.bounds(X[:3], n_particles=8)           # ELBO and IWAE of each sequence, same draws
    >>> bool(np.all(b["iwae"] >= b["elbo"]))
    True
    >>> X_new, Z_new = vae.sample(3, length=20, random_state=0)
    >>> X_new.shape, Z_new.shape
    ((3, 20, 1), (3, 2))
    """

    _parameter_constraints = {
        **NeuralEstimator._parameter_constraints,
        "n_components": positive_int,
        "likelihood": [StrOptions(set(LIKELIHOODS))],
        "pooling": [StrOptions(set(POOLINGS))],
        "bidirectional": ["boolean"],
        "autoregressive": ["boolean"],
        "latent_input": ["boolean"],
        "decoder_layers": [tuple, list],
        "noise": [StrOptions(set(NOISE_TYPES))],
        "n_categories": [None, NumberInterval(Integral, 2, None, closed="left")],
        "elbo": [StrOptions(set(ELBOS))],
        "n_particles": positive_int,
    }

    def __init__(self, n_components=2, likelihood="gaussian", *, backbone="mamba", d_model=64, n_layers=2,
                 backbone_kwargs=None, pooling="mean", bidirectional=False, autoregressive=False, latent_input=True,
                 decoder_layers=(64,), noise="diagonal", n_categories=None, elbo="TraceMeanField_ELBO", n_particles=1,
                 batch_size=32, max_epochs=100, lr=1e-3, weight_decay=0.01, clip_grad_norm=1.0, schedule="cosine",
                 warmup=0.05, early_stopping=True, validation_fraction=0.1, patience=10, mixed_precision="auto",
                 random_state=None, device=None, dtype=None, verbose=0):
        store_params(self, locals())

    # ------------------------------------------------------------------ setup
    def _check_model_params(self):
        for width in self.decoder_layers:
            check_int(width, "every width of decoder_layers")

    def _check_values(self, values, name, reset):
        values = check_real_steps(values, name, estimator=self)
        self._check_support(values, name)
        return values

    def _model_steps(self, values):
        x_in, x_obs = self._model_arrays(values)
        return {"x_in": x_in, "x_obs": x_obs}

    def _make_net(self):
        n_in = self.n_features_in_ * (self.n_categories_ if self.likelihood == "categorical" else 1)
        return SequenceVAENet(n_in, self.n_features_in_, self.n_components, self.likelihood, self.backbone,
                              self.d_model, self.n_layers, backbone_kwargs=self.backbone_kwargs,
                              decoder_layers=self.decoder_layers, pooling=self.pooling,
                              bidirectional=self.bidirectional, autoregressive=self.autoregressive,
                              latent_input=self.latent_input, noise=self.noise,
                              n_categories=max(self.n_categories_, 2), elbo=self.elbo, n_particles=self.n_particles)

    # ------------------------------------------------------------------ fit
    def _fit_sequences(self, options, X, lengths, valid_lengths):
        """Fit the encoder and the decoder by maximising the ELBO of the sequences."""
        batch = self._read(X, lengths, valid_lengths, reset=True)
        self._resolve_categories(batch.values)
        self._fit_scaling(batch.values)
        self.max_length_ = int(batch.lengths.max())
        device, dtype = self._compute_setup()
        data = self._sequence_data(batch, device=device, dtype=dtype)

        def loss_fn(model, b):
            n_steps = b["lengths"].sum()
            return model(b["x_in"], b["x_obs"], b["lengths"]) / n_steps, n_steps

        history = self._train(options, data, loss_fn)
        self.elbo_history_ = -np.asarray(history.train_loss, dtype=np.float64)

    # ------------------------------------------------------------------ inference
    def _data(self, X, lengths, valid_lengths):
        return self._sequence_data(self._read(X, lengths, valid_lengths, reset=False))

    @keyword_lengths
    @limit_torch_threads
    def transform(self, X, *, lengths=None, valid_lengths=None):
        """Posterior means ``E_q[z | x_{1:T}]`` (the encoder's means), one row per sequence.

        %(sequences_to_latents)s
        """
        data = self._data(X, lengths, valid_lengths)
        return np.stack(self._evaluate(data, lambda b: self.module_.encode(b["x_in"], b["lengths"])[0].double()))

    @keyword_lengths
    @limit_torch_threads
    def bounds(self, X, *, lengths=None, valid_lengths=None, n_particles=64, random_state=None):
        """ELBO and importance-weighted bound of each sequence, from the same guide draws.

        The ``K`` standard-normal draws are shared by all sequences (common random
        numbers), so a sequence's values do not depend on the others of the call.

        %(sequence_params)s
        %(bounds_params)s

        %(sequence_bounds_returns)s
        """
        k = check_int(n_particles, "n_particles")
        data = self._data(X, lengths, valid_lengths)
        eps = self._draws(k, random_state, next(self.module_.parameters()))

        def run(b):
            w = self.module_.log_weights(b["x_in"], b["x_obs"], eps, b["lengths"])
            return elbo_and_iwae(w, k)

        rows = self._evaluate(data, run)
        jacobian = self._log_jacobian() * data.lengths.cpu().numpy()
        return {name: np.array([r[i] for r in rows]) + jacobian for i, name in enumerate(("elbo", "iwae"))}

    @keyword_lengths
    def score_samples(self, X, *, lengths=None, valid_lengths=None, bound="elbo", n_particles=None,
                      random_state=None):
        """Lower bound of ``log p(x_{1:T})`` of each sequence, in nats (data units).

        %(sequence_params)s
        %(bound_params)s

        Returns
        -------
        ndarray of shape (n_sequences,)
        """
        return self._chosen_bound(X, bound, n_particles, random_state, lengths=lengths, valid_lengths=valid_lengths)

    def score(self, X, y=None, *, lengths=None, valid_lengths=None, bound="elbo", n_particles=None,
              random_state=None):
        """Mean lower bound of ``log p(x_{1:T})`` per sequence (see :meth:`score_samples`); higher is better."""
        check_y_slot(self, "score", X, y)
        return float(np.mean(self.score_samples(X, lengths=lengths, valid_lengths=valid_lengths, bound=bound,
                                                n_particles=n_particles, random_state=random_state)))

    # ------------------------------------------------------------------ decoding and sampling
    def _length(self, length):
        return self.max_length_ if length is None else check_int(length, "length")

    def _as_input(self, x):
        """Model-unit values or expectations ``(M, D)`` (categorical: codes, or probabilities ``(M, D, C)``) as the
        encoder-input representation of one step."""
        if self.likelihood != "categorical":
            return x
        if x.dtype == torch.long:
            x = torch.nn.functional.one_hot(x, self.n_categories_)
        return x.to(next(self.module_.parameters()).dtype).flatten(-2)

    def _model_mean(self, out):
        """The mean of one step's observation in model units (categorical: the probabilities)."""
        if self.likelihood == "gaussian":
            return out
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else torch.softmax(out, -1)

    @limit_torch_threads
    def inverse_transform(self, Z, *, length=None):
        """Decode latent vectors into sequences: the mean of ``p(x_t | ...)`` at every step, in data units.

        An autoregressive decoder is fed back each step's mean (the expected one-hot
        vector for categories), a deterministic decoding.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_components)
        length : int, optional
            Steps to decode (default: ``max_length_``).

        Returns
        -------
        ndarray of shape (n_samples, length, n_features)
            Gaussian: the means; Bernoulli: the probabilities of 1; categorical: the
            expected category number.
        """
        z = self._check_latent(Z)
        n_steps = self._length(length)
        with torch.no_grad():
            if not self.autoregressive:
                return self._mean_of_output(self.module_.decode(z, length=n_steps))
            out = self.module_.roll_out(z, n_steps, lambda o: (o, self._as_input(self._model_mean(o))))
        return self._mean_of_output(out)

    @limit_torch_threads
    def sample(self, n_samples=1, random_state=None, *, length=None):
        """Draw sequences from the model: ``z ~ N(0, I)``, then every step from the decoder.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : None, int or RandomState
            Defaults to the estimator's ``random_state``.
        length : int, optional
            Steps per sequence (default: ``max_length_``).

        Returns
        -------
        X : ndarray of shape (n_samples, length, n_features)
        Z : ndarray of shape (n_samples, n_components)
        """
        z, gen = self._prior_draws(n_samples, random_state)
        n_steps = self._length(length)
        with torch.no_grad():
            if self.autoregressive:
                def draw(out):
                    x = self._draw_from_output(out, gen)
                    return x, self._as_input(x)

                x = self.module_.roll_out(z, n_steps, draw)
            else:
                x = self._draw_from_output(self.module_.decode(z, length=n_steps), gen)
        return self._draw_to_data(x), z.double().cpu().numpy()
