"""NeuralHMM: an HMM whose emissions (and optionally transitions) are read off a neural backbone.

The model, its exact marginal likelihood and its sampler are those of
:class:`probkit.neural.networks.NeuralHMMNet`; this module is the estimator around it.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.base import DensityMixin

from probkit.base import StrOptions, positive_int
from probkit.inference._decoding import DECODER_ALGORITHMS, map_decode, resolve_decoder
from probkit.neural.emissions import EMISSIONS
from probkit.neural.networks import NeuralHMMNet, hmm_log_likelihood_sum
from probkit.utils.sequences import SequenceBatch, check_y_slot, keyword_lengths
from probkit.utils.threads import limit_torch_threads
from probkit.utils.validation import check_int, check_stochastic

from ._base import NameOptions, NeuralEstimator, store_params
from ._data import check_counts, window_lengths
from ._docs import NEURAL_DOCS

__all__ = ["NeuralHMM"]

_INITS = ("hmm", "random")


@NEURAL_DOCS.fill
class NeuralHMM(DensityMixin, NeuralEstimator):
    """Hidden Markov model with neural emissions (and transitions), trained on the exact marginal likelihood.

    The emission parameters of every state at step ``t`` -- and, with
    ``neural_transitions=True``, the transition matrix into step ``t`` -- are
    computed by a causal backbone from the previous observations ``x_{<t}``; the
    hidden states are summed out exactly by the forward algorithm, so training
    maximises ``log p(x_{1:T})`` itself (see :class:`~probkit.neural.networks.NeuralHMMNet`).
    Inputs, outputs and method semantics follow the classical HMMs
    (:class:`probkit.GaussianHMM`): concatenated sequences with ``lengths`` (or a list
    of arrays, or a padded array with ``valid_lengths``); per-step outputs follow the
    concatenated rows.

    Parameters
    ----------
    n_components : int, default=2
        Number of hidden states.
    emission : {"gaussian", "poisson", "categorical"}, default="gaussian"
        Emission family: diagonal Gaussian over real vectors, independent Poisson
        counts, or one categorical symbol per step (``X`` of shape ``(n_samples, 1)``).
    backbone : str or Backbone, default="mamba"
        Causal backbone kind of :func:`probkit.neural.build_backbone` ("mamba", "rwkv",
        "mambaout", "transformer", "s4d", "gru", "lstm"), or a causal
        :class:`~probkit.neural.backbones.Backbone` module to start from (e.g. a loaded
        checkpoint's, :func:`probkit.neural.load_pretrained`; ``d_model`` must be its
        width, its own layers are used and a copy is trained).
    d_model : int, default=64
        Width of the backbone.
    n_layers : int, default=2
        Backbone layers.
    neural_transitions : bool, default=False
        Transition logits ``L + W h_t`` per step instead of one static matrix.
    init : {"hmm", "random"}, default="hmm"
        Static parameters at the start of training: those of a classical HMM fitted to
        the training data (Baum-Welch, ``hmm_n_iter`` iterations), or random (means at
        randomly chosen observations, uniform transitions). The feature maps start at
        zero either way, so the network starts as that classical HMM.
    hmm_n_iter : int, default=100
        EM iterations of the classical HMM of ``init="hmm"``.
    hmm_n_init : int, default=5
        EM restarts of that classical HMM, the best by training likelihood kept (a
        single run can end in a poor local optimum, which the network may not leave).
    n_symbols : int, optional
        Categorical emissions: alphabet size (default: largest symbol seen in ``fit`` + 1).
    backbone_kwargs : dict, optional
        Further options of the backbone.
    train_window : int, optional
        Cut training sequences into consecutive windows of at most this many steps
        (each modelled as an independent sequence): more, shorter sequences per epoch
        for data that is one long series. Scoring and decoding always use whole
        sequences.
    algorithm : {"viterbi", "map"}, default="viterbi"
        Default decoder of :meth:`decode` / :meth:`predict`.
    %(training_params)s

    Attributes
    ----------
    module_ : NeuralHMMNet
        The trained network.
    startprob_ : ndarray of shape (n_components,)
        Initial-state probabilities.
    transmat_ : ndarray of shape (n_components, n_components)
        The static transition matrix: the transitions themselves without
        ``neural_transitions``, the matrix at zero features with them.
    emission_ : str
        The emission family.
    n_symbols_ : int
        Categorical emissions only: the alphabet size.
    init_hmm_ : BaseHMM or None
        The classical HMM the static parameters were initialised from (``init="hmm"``).
    n_features_in_ : int
        Columns of ``X``.
    %(training_attrs)s

    Notes
    -----
    %(sequence_forms)s

    Gaussian data are standardised per feature before the network sees them;
    log-likelihoods are reported in the original units (the training losses of
    ``history_`` are in the standardised units). Counts are fed to the backbone as
    standardised ``log1p(x)`` and scored as counts.

    Examples
    --------
    A regime-switching AR(1) process (``x_t = 0.9 x_{t-1}`` or ``-0.9 x_{t-1}``, plus
    noise) has the same marginal in both regimes, so a classical HMM cannot tell them
    apart; a NeuralHMM whose emission means read ``x_{t-1}`` can:

    >>> import numpy as np
    >>> from probkit import GaussianHMM
    >>> from probkit.neural import NeuralHMM
    >>> rng = np.random.RandomState(0)
    >>> z = np.repeat(rng.randint(0, 2, 40), 25)              # regimes of 25 steps
    >>> x = np.zeros(1000)
    >>> for t in range(1, 1000):
    ...     x[t] = (0.9 if z[t] else -0.9) * x[t - 1] + 0.3 * rng.randn()
    >>> X, lengths = x[:, None], [100] * 10
    >>> nh = NeuralHMM(2, backbone="gru", d_model=8, n_layers=1, max_epochs=40, lr=2e-2,
    ...                early_stopping=False, random_state=0).fit(X, lengths=lengths)
    >>> hmm = GaussianHMM(2, n_iter=50, random_state=0).fit(X, lengths=lengths)
    >>> bool(nh.score(X, lengths=lengths) > hmm.score(X, lengths=lengths) + 100)
    True
    >>> nh.predict(X, lengths=lengths).shape, nh.sample(5, random_state=0)[0].shape
    ((1000,), (5, 1))
    """

    # Fewer, shorter epochs at a larger step than the other neural estimators: the model starts at a
    # fitted classical HMM and learns corrections, the objective is the exact marginal (no sampling noise),
    # and the cosine decay then ends within the budget instead of after early stopping cut it short.
    _parameter_constraints = {
        **NeuralEstimator._parameter_constraints,
        "n_components": positive_int,
        "emission": [NameOptions(set(EMISSIONS))],
        "neural_transitions": ["boolean"],
        "init": [StrOptions(set(_INITS))],
        "hmm_n_iter": positive_int,
        "hmm_n_init": positive_int,
        "n_symbols": [None, *positive_int],
        "train_window": [None, *positive_int],
        "algorithm": [StrOptions(set(DECODER_ALGORITHMS))],
    }

    def __init__(self, n_components=2, emission="gaussian", backbone="mamba", d_model=64, n_layers=2, *,
                 neural_transitions=False, init="hmm", hmm_n_iter=100, hmm_n_init=5, n_symbols=None,
                 backbone_kwargs=None, train_window=None, algorithm="viterbi", batch_size=8, max_epochs=60, lr=1e-2,
                 weight_decay=0.01, clip_grad_norm=1.0, schedule="cosine", warmup=0.05, early_stopping=True,
                 validation_fraction=0.1, patience=20, mixed_precision="auto", random_state=None, device=None,
                 dtype=None, verbose=0):
        store_params(self, locals())

    # ------------------------------------------------------------------ parameters and data
    _family = property(lambda self: self.emission.lower())
    _standardizes = property(lambda self: self._family != "categorical")          # counts: log1p, standardised
    _scores_standardized = property(lambda self: self._family == "gaussian")

    def _check_values(self, values, name, reset):
        """float64 rows in the support of the emission family (and of the fitted alphabet)."""
        family = self._family
        if family == "gaussian":
            return super()._check_values(values, name, reset)
        values = check_counts(values, family, name, self)
        if family == "categorical":
            if values.shape[1] != 1:
                raise ValueError(f"{name} must have shape (n_samples, 1) of symbols for emission='categorical', "
                                 f"got {values.shape}")
            m = self.n_symbols if reset else self.n_symbols_
            if m is not None and values.max() >= m:
                raise ValueError(f"{name} holds symbol {int(values.max())} but the model emits symbols 0 .. {m - 1}")
        return values

    def _scaling_source(self, values):
        return np.log1p(values) if self._family == "poisson" else values

    def _model_steps(self, values):
        if self._family == "categorical":
            tokens = values[:, 0].astype(np.int64)
            return {"x_in": tokens, "x_obs": tokens}
        return super()._model_steps(values)

    def _n_outputs(self):
        return self.n_symbols_ if self._family == "categorical" else self.n_features_in_

    def _make_net(self):
        return NeuralHMMNet(self._family, self.n_components, self._n_outputs(), backbone=self.backbone,
                            d_model=self.d_model, n_layers=self.n_layers, backbone_kwargs=self.backbone_kwargs,
                            neural_transitions=bool(self.neural_transitions))

    # ------------------------------------------------------------------ initialisation
    def _init_static(self, net, batch, rs):
        """Static parameters before training: a classical HMM's (``init="hmm"``) or random ones."""
        X, k, family = batch.values, self.n_components, self._family
        self.init_hmm_ = None
        if self.init == "hmm":
            from probkit import CategoricalHMM, GaussianHMM, PoissonHMM

            kw = dict(n_iter=self.hmm_n_iter, n_init=self.hmm_n_init, random_state=int(rs.randint(0, 2**31 - 1)))
            hmm = {"gaussian": lambda: GaussianHMM(k, covariance_type="diag", **kw),
                   "poisson": lambda: PoissonHMM(k, **kw),
                   "categorical": lambda: CategoricalHMM(k, n_features=self.n_symbols_, **kw)}[family]()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.init_hmm_ = hmm.fit(X, lengths=batch.lengths)
            start, trans = hmm.startprob_, hmm.transmat_
            if family == "gaussian":
                emission = dict(loc=self._standardize(hmm.means_),
                                log_scale=0.5 * np.log(np.maximum(hmm.covars_, 1e-300)) - np.log(self._x_scale))
            elif family == "poisson":
                emission = dict(log_rate=np.log(np.maximum(hmm.lambdas_, 1e-10)))
            else:
                emission = dict(logits=np.log(np.maximum(hmm.emissionprob_, 1e-10)))
        else:
            start, trans = np.full(k, 1.0 / k), np.full((k, k), 1.0 / k)
            rows = rs.choice(X.shape[0], size=k, replace=X.shape[0] < k)
            if family == "gaussian":
                emission = dict(loc=self._standardize(X[rows]), log_scale=np.zeros((k, X.shape[1])))
            elif family == "poisson":
                emission = dict(log_rate=np.log(X[rows] + 0.5))
            else:
                emission = dict(logits=0.1 * rs.randn(k, self.n_symbols_))
        net.set_static(start, trans, **emission)

    # ------------------------------------------------------------------ fit
    def _fit_sequences(self, options, X, lengths, valid_lengths):
        """Maximise the exact log-likelihood of the sequences (gradient from the forward-backward posteriors)."""
        batch = self._read(X, lengths, valid_lengths, reset=True)
        if batch.n_samples < max(2, self.n_components):
            raise ValueError(f"Expected n_samples >= max(2, n_components) to fit but got n_components = "
                             f"{self.n_components}, n_samples = {batch.n_samples}")
        self.emission_ = self._family
        if self._family == "categorical":
            self.n_symbols_ = int(self.n_symbols) if self.n_symbols is not None else int(batch.values.max()) + 1
        train = batch   # windows: the same rows (and standardisation), shorter sequences
        if self.train_window is not None:
            train = SequenceBatch(batch.values, window_lengths(batch.lengths, int(self.train_window)))

        def loss_fn(model, b):
            # The exact marginal; its gradient from the posteriors (no back-propagation through the recursion).
            lb = b["lengths"]
            ll = hmm_log_likelihood_sum(*model(b["x_in"], b["x_obs"], lb), lb)
            n = lb.sum()
            return -ll / n, n

        self._train(options, self._training_data(train), loss_fn,
                    initialise=lambda net, rs: self._init_static(net, batch, rs))
        self.startprob_, self.transmat_ = self.module_.static_probabilities()

    # ------------------------------------------------------------------ evaluation
    def _network_call(self, method):
        """A function of a padded batch: the network's exact-inference ``method`` on it."""
        run = getattr(self.module_, method)
        return lambda b: run(b["x_in"], b["x_obs"], b["lengths"])

    @limit_torch_threads
    def _infer(self, method, X, lengths, valid_lengths, per_step=False):
        """The network's ``method`` for every sequence of ``X`` (per-step outputs concatenated), and the batch."""
        batch = self._read(X, lengths, valid_lengths, reset=False)
        data, fn = self._sequence_data(batch), self._network_call(method)
        return (self._evaluate_steps(data, fn) if per_step else self._evaluate(data, fn)), batch

    def _total_log_likelihood(self, X, lengths, valid_lengths):
        parts, batch = self._infer("log_likelihood", X, lengths, valid_lengths)
        return float(np.sum(parts) + self._log_jacobian() * batch.n_samples), batch.n_samples

    def score(self, X, y=None, *, lengths=None, valid_lengths=None):
        """Total log-likelihood ``sum_i log p(x^{(i)})`` of the sequences in ``X``, in nats (as hmmlearn).

        %(sequences_to_score)s
        """
        check_y_slot(self, "score", X, y)
        return self._total_log_likelihood(X, lengths, valid_lengths)[0]

    @keyword_lengths
    def score_per_step(self, X, *, lengths=None, valid_lengths=None):
        """Mean log-likelihood per time step: :meth:`score` divided by the number of steps.

        The number to compare across models and data sets of different sizes (nats per
        step; higher is better).

        %(sequence_params)s

        Returns
        -------
        float
        """
        total, n_steps = self._total_log_likelihood(X, lengths, valid_lengths)
        return total / n_steps

    @keyword_lengths
    def score_samples(self, X, *, lengths=None, valid_lengths=None):
        """One-step predictive log-likelihood of each row, ``log p(x_t | x_1, ..., x_{t-1})``.

        The rows of a sequence sum to its log-likelihood.

        %(steps_to_values)s
        """
        return self._infer("predictive_log_prob", X, lengths, valid_lengths, per_step=True)[0] + self._log_jacobian()

    @keyword_lengths
    def predict_proba(self, X, *, lengths=None, valid_lengths=None):
        """Posterior probability of each state at each step, ``p(z_t = k | x_{1:T})``.

        %(steps_to_state_table)s
        """
        return self._infer("posteriors", X, lengths, valid_lengths, per_step=True)[0]

    @keyword_lengths
    def decode(self, X, *, lengths=None, valid_lengths=None, algorithm=None):
        """Most likely state sequence.

        %(sequence_params)s
        algorithm : {"viterbi", "map"}, optional
            ``viterbi``: the jointly most likely path; ``map``: the most likely state of
            each step. Defaults to the estimator's ``algorithm``.

        Returns
        -------
        log_prob : float
            Viterbi: ``log p(x, z*)`` (original units). MAP: the sum of the log posterior
            probabilities of the chosen states.
        state_sequence : ndarray of shape (n_samples,)
        """
        if resolve_decoder(algorithm, self.algorithm) == "map":
            return map_decode(self.predict_proba(X, lengths=lengths, valid_lengths=valid_lengths))
        parts, batch = self._infer("viterbi", X, lengths, valid_lengths)
        log_prob = sum(float(p[0]) for p in parts) + self._log_jacobian() * batch.n_samples
        return float(log_prob), np.concatenate([p[1][:n] for p, n in zip(parts, batch.lengths)]).astype(np.int64)

    @keyword_lengths
    def predict(self, X, *, lengths=None, valid_lengths=None):
        """Most likely state of each step, decoded with ``algorithm``.

        %(steps_to_values)s
        """
        return self.decode(X, lengths=lengths, valid_lengths=valid_lengths)[1]

    # ------------------------------------------------------------------ sampling
    @limit_torch_threads
    def sample(self, n_samples=1, random_state=None, *, n_sequences=1):
        """Draw sequences of ``n_samples`` steps, running the backbone one ``step()`` at a time.

        At each step the backbone's features give the transition row of the current
        state (or the start distribution) and the emission parameters; the drawn
        observation is fed back to the backbone. This is an exact draw from the model.

        Parameters
        ----------
        n_samples : int, default=1
            Steps per sequence.
        random_state : None, int or RandomState
            Defaults to the estimator's ``random_state`` (as hmmlearn).
        n_sequences : int, default=1
            Independent sequences, drawn as one batch and returned concatenated (their
            lengths are all ``n_samples``).

        Returns
        -------
        X : ndarray of shape (n_sequences * n_samples, n_features)
        state_sequence : ndarray of shape (n_sequences * n_samples,)
        """
        gen = self._generator(random_state, default=self.random_state)
        n = check_int(n_samples, "n_samples")
        b = check_int(n_sequences, "n_sequences")
        to_input = None
        if self._family == "poisson":
            def to_input(x):
                mean = torch.as_tensor(self._x_mean, dtype=x.dtype, device=x.device)
                return (torch.log1p(x) - mean) / torch.as_tensor(self._x_scale, dtype=x.dtype, device=x.device)
        self.module_.eval()
        with torch.no_grad():
            X, Z = self.module_.sample(n, b, gen, to_input)
        Z = Z.cpu().numpy().reshape(-1).astype(np.int64)
        if self._family == "categorical":
            return X.cpu().numpy().reshape(-1, 1).astype(np.int64), Z
        return self._to_data_units(X.cpu().double().numpy().reshape(b * n, -1)), Z

    # ------------------------------------------------------------------ persistence
    def _io_check_state(self):
        """Check what :func:`probkit.load` restored besides the network (whose weights the loader checks)."""
        super()._io_check_state()
        if not hasattr(self, "module_"):
            return
        k = self.n_components
        for name, shape in (("startprob_", (k,)), ("transmat_", (k, k))):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
            check_stochastic(value, name, atol=1e-6)

