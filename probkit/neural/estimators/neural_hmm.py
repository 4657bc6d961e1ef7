"""NeuralHMM: an HMM whose emissions (and optionally transitions) are read off a neural backbone.

The model
---------
Hidden states ``z_t`` in ``{0, ..., K-1}`` form a Markov chain; a causal backbone reads
the *previous* observations and produces features

.. math::

   h_t = f_\\theta(s, x_1, \\dots, x_{t-1})  \\qquad (s \\text{ a learned start vector}),

from which an emission head gives the parameters of ``p(x_t | z_t = k, x_{<t})`` for
every state (:mod:`probkit.neural.emissions`) and, with ``neural_transitions=True``, a
transition head gives ``p(z_t | z_{t-1}, x_{<t}) = softmax(L + W h_t)`` (``L`` static
logits). Because ``h_t`` depends on ``x_{<t}`` only, the joint

.. math::

   p(x_{1:T}, z_{1:T}) = \\pi_{z_1} p(x_1 | z_1, h_1) \\prod_{t \\ge 2} A_t[z_{t-1}, z_t] \\, p(x_t | z_t, h_t)

is a proper generative model: given the observations, the features are fixed numbers,
so the exact marginal ``log p(x_{1:T})`` is the classical forward algorithm with
per-step emission log-densities and per-step transition matrices. Training maximises
it by gradient ascent through the padded, differentiable forward recursion of
:func:`probkit.inference.hmm_log_likelihood` (masked for ragged batches), with the
shared loop :func:`probkit.neural.train_module`. Posteriors, Viterbi paths and scores
are the classical algorithms on the same per-step quantities; sampling draws
``z_t``, then ``x_t``, and feeds ``x_t`` to the backbone's recurrent ``step()``.

Every head is "static + zero-initialised linear map of the features", so a fresh
model is a classical HMM, and ``init="hmm"`` starts from a fitted
:class:`~probkit.GaussianHMM` / :class:`~probkit.PoissonHMM` /
:class:`~probkit.CategoricalHMM`: the network learns the corrections.
"""

from __future__ import annotations


import numpy as np
import torch
from sklearn.base import DensityMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data
from torch import nn

from probkit.base import ProbkitEstimator
from probkit.inference import forward_backward_padded, forward_filter_padded, hmm_log_likelihood, viterbi_padded
from probkit.neural.backbones import KINDS
from probkit.neural.emissions import EMISSIONS, make_emission
from probkit.utils.sequences import check_y_slot, keyword_lengths
from probkit.utils.threads import limit_torch_threads
from probkit.utils.validation import check_lengths, check_nonnegative_integers

from ._base import _TRAINING_PARAMS, build_net_for_loading, check_standardizer, check_training_options, unwrap
from ._data import check_positive_int
from ._network import build_checked_backbone
from probkit.utils.random import seed_from

from ._training import seeded, train_module

__all__ = ["NeuralHMM", "NeuralHMMNet"]

_INITS = ("hmm", "random")
_ALGORITHMS = ("viterbi", "map")


class NeuralHMMNet(nn.Module):
    """The torch module of :class:`NeuralHMM`: encoder, causal backbone, emission and transition heads.

    Parameters
    ----------
    emission : {"gaussian", "poisson", "categorical"}
    n_components : int
        Hidden states ``K``.
    n_outputs : int
        Features per step (Gaussian, Poisson) or alphabet size (categorical).
    backbone : str
        Kind for :func:`~probkit.neural.build_backbone`; must be causal.
    d_model, n_layers : int
    backbone_kwargs : dict, optional
    neural_transitions : bool, default=False
        Per-step transition matrices ``softmax(L + W h_t)`` instead of a static one.

    Examples
    --------
    >>> import torch
    >>> net = NeuralHMMNet("gaussian", 3, 2, backbone="gru", d_model=8, n_layers=1, neural_transitions=True)
    >>> x = torch.randn(4, 6, 2)
    >>> log_start, log_trans, log_emis = net(x, x, torch.tensor([6, 5, 2, 1]))
    >>> log_start.shape, log_trans.shape, log_emis.shape
    (torch.Size([3]), torch.Size([4, 6, 3, 3]), torch.Size([4, 6, 3]))
    """

    def __init__(self, emission, n_components, n_outputs, *, backbone, d_model, n_layers, backbone_kwargs=None,
                 neural_transitions=False):
        super().__init__()
        self.tokens = emission == "categorical"
        self.n_components = int(n_components)
        self.encoder = nn.Embedding(n_outputs, d_model) if self.tokens else nn.Linear(n_outputs, d_model)
        if self.tokens:
            nn.init.normal_(self.encoder.weight, std=d_model ** -0.5)
        self.start = nn.Parameter(torch.randn(d_model) * d_model ** -0.5)
        self.backbone = build_checked_backbone(backbone, d_model, n_layers, dict(backbone_kwargs or {}))
        if not self.backbone.causal:
            raise ValueError(f"NeuralHMM needs a causal backbone (features of x_<t only); the {backbone!r} backbone "
                             f"built with backbone_kwargs={backbone_kwargs!r} is bidirectional")
        self.emission = make_emission(emission, d_model, n_components, n_outputs)
        k = self.n_components
        self.start_logits = nn.Parameter(torch.zeros(k))
        self.trans_logits = nn.Parameter(torch.zeros(k, k))
        self.trans_proj = None
        if neural_transitions:
            self.trans_proj = nn.Linear(d_model, k * k)
            nn.init.zeros_(self.trans_proj.weight)
            nn.init.zeros_(self.trans_proj.bias)

    def features(self, x_in, lengths=None):
        """Backbone features ``h`` (B, T, d_model); ``h[:, t]`` reads ``x_in[:, :t]`` only."""
        e = self.encoder(x_in)
        start = self.start.to(e.dtype).expand(e.shape[0], 1, e.shape[-1])
        return self.backbone(torch.cat([start, e[:, :-1]], dim=1), lengths)

    def log_startprob(self):
        """Log initial-state probabilities (K,)."""
        return torch.log_softmax(self.start_logits, -1)

    def log_transitions(self, h):
        """Log transition matrices: static (K, K), or per step (..., K, K) from features ``h`` (..., d_model)."""
        if self.trans_proj is None:
            return torch.log_softmax(self.trans_logits, -1)
        k = self.n_components
        logits = self.trans_logits.to(h.dtype) + self.trans_proj(h).unflatten(-1, (k, k))
        return torch.log_softmax(logits, -1)

    def forward(self, x_in, x_obs, lengths=None):
        """``(log_startprob (K,), log_transmat (K, K) or (B, T, K, K), log_emission (B, T, K))``.

        ``x_in`` is what the backbone reads (standardised features or tokens), ``x_obs``
        what the emissions score (standardised features, counts or tokens).
        """
        h = self.features(x_in, lengths)
        log_emission = self.emission.log_prob(self.emission(h), x_obs)
        return self.log_startprob(), self.log_transitions(h), log_emission


class _HMMData:
    """Padded model inputs for :func:`train_module` (a batch is a dict trimmed to its longest sequence)."""

    def __init__(self, x_in, x_obs, lengths):
        self.x_in, self.x_obs, self.lengths = x_in, x_obs, lengths

    def __len__(self):
        return int(self.lengths.shape[0])

    def batch(self, index):
        lengths = self.lengths[index]
        n = int(lengths.max())
        return {"x_in": self.x_in[index, :n], "x_obs": self.x_obs[index, :n], "lengths": lengths}


def _is_list_of_arrays(X):
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(
        isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim >= 1 for x in X)


class NeuralHMM(DensityMixin, ProbkitEstimator):
    """Hidden Markov model with neural emissions (and transitions), trained on the exact marginal likelihood.

    The emission parameters of every state at step ``t`` -- and, with
    ``neural_transitions=True``, the transition matrix into step ``t`` -- are
    computed by a causal backbone from the previous observations ``x_{<t}``; the
    hidden states are summed out exactly by the forward algorithm, so training
    maximises ``log p(x_{1:T})`` itself (see :mod:`probkit.neural.estimators.neural_hmm`).
    Inputs, outputs and method semantics follow the classical HMMs
    (:class:`probkit.GaussianHMM`): concatenated sequences with ``lengths``.

    Parameters
    ----------
    n_components : int, default=2
        Number of hidden states.
    emission : {"gaussian", "poisson", "categorical"}, default="gaussian"
        Emission family: diagonal Gaussian over real vectors, independent Poisson
        counts, or one categorical symbol per step (``X`` of shape ``(n_samples, 1)``).
    backbone : str, default="mamba"
        Causal backbone kind of :func:`probkit.neural.build_backbone` ("mamba", "rwkv",
        "mambaout", "transformer", "s4d", "gru", "lstm").
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
    history_ : dict
        The :class:`~probkit.neural.TrainingHistory` of the fit as a dict (per-epoch
        ``train_loss``: mean negative log-likelihood per step, in the model's
        standardised units for Gaussian data; ``val_loss``; ...).
    n_iter_ : int
        Epochs run.
    best_epoch_ : int or None
        Epoch whose weights were restored (None without early stopping).

    Notes
    -----
    Gaussian data are standardised per feature before the network sees them;
    log-likelihoods are reported in the original units. Counts are fed to the
    backbone as standardised ``log1p(x)`` and scored as counts.

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

    _default_dtype = torch.float32

    def __init__(self, n_components=2, emission="gaussian", backbone="mamba", d_model=64, n_layers=2, *,
                 neural_transitions=False, init="hmm", hmm_n_iter=100, n_symbols=None, backbone_kwargs=None,
                 train_window=None, algorithm="viterbi", batch_size=32, max_epochs=100, lr=1e-3, weight_decay=0.01,
                 clip_grad_norm=1.0, schedule="cosine", warmup=0.05, early_stopping=True, validation_fraction=0.1,
                 patience=10, mixed_precision="auto", random_state=None, device=None, dtype=None, verbose=0):
        self.n_components = n_components
        self.emission = emission
        self.backbone = backbone
        self.d_model = d_model
        self.n_layers = n_layers
        self.neural_transitions = neural_transitions
        self.init = init
        self.hmm_n_iter = hmm_n_iter
        self.n_symbols = n_symbols
        self.backbone_kwargs = backbone_kwargs
        self.train_window = train_window
        self.algorithm = algorithm
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
        check_positive_int(self.n_components, "n_components")
        if not isinstance(self.emission, str) or self.emission.lower() not in EMISSIONS:
            raise ValueError(f"unknown emission {self.emission!r}; choose one of {', '.join(EMISSIONS)}")
        if not isinstance(self.backbone, str) or self.backbone.lower() not in KINDS:
            raise ValueError(f"backbone={self.backbone!r} is not a known backbone; choose one of {', '.join(KINDS)}")
        check_training_options(self)
        check_positive_int(self.hmm_n_iter, "hmm_n_iter")
        if self.init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {self.init!r}")
        if self.algorithm not in _ALGORITHMS:
            raise ValueError(f"algorithm must be one of {_ALGORITHMS}, got {self.algorithm!r}")
        if self.train_window is not None:
            check_positive_int(self.train_window, "train_window")
        if self.n_symbols is not None:
            check_positive_int(self.n_symbols, "n_symbols")

    @property
    def _family(self):
        return self.emission.lower()

    def _validate(self, X, lengths, *, reset):
        """Concatenated ``(n_samples, n_features)`` float64 array and lengths, with the family's support checked."""
        if _is_list_of_arrays(X):
            if lengths is not None:
                raise ValueError("lengths= applies to concatenated sequences; a list of sequences carries its own")
            seqs = [x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in X]
            seqs = [s[:, None] if s.ndim == 1 else s for s in seqs]
            for i, s in enumerate(seqs):
                if s.shape[0] == 0:
                    raise ValueError(f"sequence {i} of X is empty (length 0)")
            lengths = [len(s) for s in seqs]
            X = np.concatenate(seqs, 0)
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        family = self._family
        X = validate_data(self, X, reset=reset, dtype=None if family != "gaussian" else (np.float64, np.float32),
                          ensure_min_samples=1)
        if X.dtype.kind not in "biuf":
            raise TypeError(f"X must be numeric, got dtype {X.dtype}")
        X = X.astype(np.float64)
        if family != "gaussian":
            try:
                check_nonnegative_integers(X, "X")
            except ValueError as exc:
                raise ValueError(f"{exc} (the support of emission={family!r})") from None
        if family == "categorical":
            if X.shape[1] != 1:
                raise ValueError(f"X must have shape (n_samples, 1) of symbols for emission='categorical', "
                                 f"got {X.shape}")
            m = self.n_symbols if reset else self.n_symbols_
            if m is not None and X.max() >= m:
                raise ValueError(f"X holds symbol {int(X.max())} but the model emits symbols 0 .. {m - 1}")
        lengths = check_lengths(lengths, X.shape[0])
        return X, lengths

    def _check_fitted(self):
        if not hasattr(self, "module_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    # ------------------------------------------------------------------ model units
    def _fit_scaling(self, X):
        family = self._family
        if family == "categorical":
            return
        Z = np.log1p(X) if family == "poisson" else X
        self._x_mean = Z.mean(0)
        scale = Z.std(0)
        self._x_scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(self._x_mean)), scale, 1.0)

    def _model_inputs(self, X, device, dtype):
        """``(x_in, x_obs)`` numpy arrays in model units, concatenated."""
        family = self._family
        if family == "categorical":
            tok = X[:, 0].astype(np.int64)
            return tok, tok
        if family == "poisson":
            return (np.log1p(X) - self._x_mean) / self._x_scale, X
        z = (X - self._x_mean) / self._x_scale
        return z, z

    def _log_jacobian(self):
        """log-density change per step from model units to the data's units."""
        return -float(np.log(self._x_scale).sum()) if self._family == "gaussian" else 0.0

    def _padded(self, X, lengths, device, dtype):
        x_in, x_obs = self._model_inputs(X, device, dtype)
        n, L = len(lengths), int(lengths.max())
        mask = np.arange(L)[None, :] < lengths[:, None]

        def pad(a):
            out = np.zeros((n, L) + a.shape[1:], dtype=a.dtype)
            out[mask] = a
            if a.dtype == np.int64:
                return torch.as_tensor(out, device=device)
            return torch.as_tensor(out, dtype=dtype, device=device)

        return pad(x_in), pad(x_obs), torch.as_tensor(lengths, device=device)

    def _n_outputs(self):
        return self.n_symbols_ if self._family == "categorical" else self.n_features_in_

    def _make_net(self):
        return NeuralHMMNet(self._family, self.n_components, self._n_outputs(), backbone=self.backbone,
                            d_model=self.d_model, n_layers=self.n_layers, backbone_kwargs=self.backbone_kwargs,
                            neural_transitions=bool(self.neural_transitions))

    # ------------------------------------------------------------------ initialisation
    def _classical(self, seed):
        from probkit import CategoricalHMM, GaussianHMM, PoissonHMM

        k, n_iter = self.n_components, self.hmm_n_iter
        if self._family == "gaussian":
            return GaussianHMM(k, covariance_type="diag", n_iter=n_iter, random_state=seed)
        if self._family == "poisson":
            return PoissonHMM(k, n_iter=n_iter, random_state=seed)
        return CategoricalHMM(k, n_features=self.n_symbols_, n_iter=n_iter, random_state=seed)

    def _init_static(self, net, X, lengths, rs):
        k, family = self.n_components, self._family
        if self.init == "hmm":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hmm = self._classical(int(rs.randint(0, 2**31 - 1))).fit(X, lengths=lengths)
            self.init_hmm_ = hmm
            start, trans = hmm.startprob_, hmm.transmat_
            if family == "gaussian":
                loc = (hmm.means_ - self._x_mean) / self._x_scale
                log_scale = 0.5 * np.log(np.maximum(hmm.covars_, 1e-300)) - np.log(self._x_scale)
                net.emission.set_static(loc=loc, log_scale=log_scale)
            elif family == "poisson":
                net.emission.set_static(log_rate=np.log(np.maximum(hmm.lambdas_, 1e-10)))
            else:
                net.emission.set_static(logits=np.log(np.maximum(hmm.emissionprob_, 1e-10)))
        else:
            self.init_hmm_ = None
            start, trans = np.full(k, 1.0 / k), np.full((k, k), 1.0 / k)
            rows = rs.choice(X.shape[0], size=k, replace=X.shape[0] < k)
            if family == "gaussian":
                net.emission.set_static(loc=(X[rows] - self._x_mean) / self._x_scale,
                                        log_scale=np.zeros((k, X.shape[1])))
            elif family == "poisson":
                net.emission.set_static(log_rate=np.log(X[rows] + 0.5))
            else:
                net.emission.set_static(logits=0.1 * rs.randn(k, self.n_symbols_))
        with torch.no_grad():
            net.start_logits.copy_(torch.as_tensor(np.log(np.maximum(start, 1e-10))))
            net.trans_logits.copy_(torch.as_tensor(np.log(np.maximum(trans, 1e-10))))

    # ------------------------------------------------------------------ fit
    @limit_torch_threads
    def fit(self, X, y=None, *, lengths=None):
        """Train on the sequences in ``X`` by maximising their exact log-likelihood.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
            Sequences stacked along the first axis (or a list of ``(L_i, n_features)``
            arrays). Categorical emissions: ``(n_samples, 1)`` integer symbols.
        y : None
            Unused; sequence lengths go in ``lengths=``.
        lengths : array-like of int, optional
            Lengths of the sequences in ``X``; they must sum to ``n_samples``.

        Returns
        -------
        self
        """
        check_y_slot(self, "fit", X, y)
        self._check_params()
        X, lengths = self._validate(X, lengths, reset=True)
        if X.shape[0] < max(2, self.n_components):
            raise ValueError(f"Expected n_samples >= max(2, n_components) to fit but got n_components = "
                             f"{self.n_components}, n_samples = {X.shape[0]}")
        self.emission_ = self._family
        if self._family == "categorical":
            self.n_symbols_ = int(self.n_symbols) if self.n_symbols is not None else int(X.max()) + 1
        self._fit_scaling(X)
        device, dtype = self._compute_setup()
        rs = check_random_state(self.random_state)
        init_seed, train_seed = (int(s) for s in rs.randint(0, 2**31 - 1, size=2))
        with seeded(init_seed, device):
            net = self._make_net()
        self._init_static(net, X, lengths, rs)
        net = net.to(device=device, dtype=dtype)

        win_X, win_lengths = X, lengths
        if self.train_window is not None:
            w = int(self.train_window)
            win_lengths = np.concatenate([[w] * (n // w) + ([n % w] if n % w else []) for n in lengths])
            win_lengths = win_lengths.astype(np.int64)
        data = _HMMData(*self._padded(win_X, win_lengths, device, dtype))

        def loss_fn(model, batch):
            lb = batch["lengths"]
            log_start, log_trans, log_emis = model(batch["x_in"], batch["x_obs"], lb)
            ll = hmm_log_likelihood(log_start, log_trans, log_emis, lb)
            n = lb.sum()
            return -ll.sum() / n, n

        use_val = bool(self.early_stopping) and self.validation_fraction > 0 and len(data) >= 2
        history = train_module(
            net, loss_fn, data, validation_fraction=self.validation_fraction if use_val else 0.0,
            batch_size=self.batch_size, max_epochs=self.max_epochs, lr=self.lr, weight_decay=self.weight_decay,
            clip_grad_norm=self.clip_grad_norm, schedule=self.schedule, warmup=self.warmup,
            early_stopping=bool(self.early_stopping), patience=self.patience, restore_best=True,
            random_state=train_seed, device=device, mixed_precision=self.mixed_precision, verbose=self.verbose,
            desc=type(self).__name__)
        self.module_ = unwrap(net).eval()
        self.history_ = history.as_dict()
        self.n_iter_ = history.n_epochs
        self.best_epoch_ = history.best_epoch
        self._set_static_attributes()
        return self

    def _set_static_attributes(self):
        with torch.no_grad():
            self.startprob_ = self.module_.log_startprob().double().exp().cpu().numpy()
            self.transmat_ = torch.softmax(self.module_.trans_logits.double(), -1).cpu().numpy()

    # ------------------------------------------------------------------ evaluation
    def _prepare(self, X, lengths):
        self._check_fitted()
        X, lengths = self._validate(X, lengths, reset=False)
        p = next(self.module_.parameters())
        return X, lengths, p.device, p.dtype

    def _per_batch(self, X, lengths, fn):
        """Run the network over batches of sequences; ``fn(log_start, log_trans, log_emis, lengths)`` per batch.

        Log-probabilities are handed over in float64. Returns the list of ``fn`` results
        per sequence, in input order (``fn`` returns a list with one entry per sequence).
        """
        X, lengths, device, dtype = self._prepare(X, lengths)
        x_in, x_obs, lens_t = self._padded(X, lengths, device, dtype)
        order = np.argsort(lengths, kind="stable")
        out = [None] * len(lengths)
        self.module_.eval()
        with torch.no_grad():
            for s in range(0, len(order), self.batch_size):
                idx = order[s:s + self.batch_size]
                it = torch.as_tensor(idx, device=device)
                lb = lens_t[it]
                n = int(lb.max())
                ls, lt, le = self.module_(x_in[it, :n], x_obs[it, :n], lb)
                results = fn(ls.double(), lt.double(), le.double(), lb)
                for j, i in enumerate(idx):
                    out[i] = results[j]
        return out, lengths

    def _concat(self, parts):
        return np.concatenate([np.asarray(p) for p in parts], 0)

    @limit_torch_threads
    def _total_log_likelihood(self, X, lengths):
        parts, lengths = self._per_batch(X, lengths, lambda ls, lt, le, lb: list(
            hmm_log_likelihood(ls, lt, le, lb).cpu().numpy()))
        n_steps = int(lengths.sum())
        return float(np.sum(parts) + self._log_jacobian() * n_steps), n_steps

    def score(self, X, y=None, *, lengths=None):
        """Total log-likelihood ``sum_i log p(x^{(i)})`` of the sequences in ``X``, in nats (as hmmlearn).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
        y : None
        lengths : array-like of int, optional

        Returns
        -------
        float
        """
        check_y_slot(self, "score", X, y)
        return self._total_log_likelihood(X, lengths)[0]

    @keyword_lengths
    def score_per_step(self, X, *, lengths=None):
        """Mean log-likelihood per time step: :meth:`score` divided by ``n_samples``.

        The number to compare across models and data sets of different sizes (nats per
        step; higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
        lengths : array-like of int, optional

        Returns
        -------
        float
        """
        total, n_steps = self._total_log_likelihood(X, lengths)
        return total / n_steps

    @limit_torch_threads
    @keyword_lengths
    def score_samples(self, X, *, lengths=None):
        """One-step predictive log-likelihood of each row, ``log p(x_t | x_1, ..., x_{t-1})``.

        The rows of a sequence sum to its log-likelihood.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
        lengths : array-like of int, optional

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        def fn(ls, lt, le, lb):
            _, filtered = forward_filter_padded(ls, lt, le, lb)
            b, t, k = le.shape
            pred = torch.empty_like(filtered)
            pred[:, 0] = ls.exp()
            if t > 1:
                trans = lt.exp()
                if trans.ndim == 2:
                    pred[:, 1:] = filtered[:, :-1] @ trans
                else:
                    pred[:, 1:] = (filtered[:, :-1].unsqueeze(-2) @ trans[:, 1:]).squeeze(-2)
            with np.errstate(divide="ignore"):
                lp = torch.logsumexp(torch.log(pred) + le, -1).cpu().numpy()
            return [lp[j, :int(lb[j])] for j in range(b)]

        parts, _ = self._per_batch(X, lengths, fn)
        return self._concat(parts) + self._log_jacobian()

    @limit_torch_threads
    @keyword_lengths
    def predict_proba(self, X, *, lengths=None):
        """Posterior probability of each state at each step, ``p(z_t = k | x_{1:T})``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
        lengths : array-like of int, optional

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        def fn(ls, lt, le, lb):
            post = forward_backward_padded(ls, lt, le, lb).posteriors.cpu().numpy()
            return [post[j, :int(lb[j])] for j in range(len(lb))]

        parts, _ = self._per_batch(X, lengths, fn)
        return self._concat(parts)

    @limit_torch_threads
    @keyword_lengths
    def decode(self, X, *, lengths=None, algorithm=None):
        """Most likely state sequence.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
        lengths : array-like of int, optional
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
        algorithm = self.algorithm if algorithm is None else algorithm
        if algorithm not in _ALGORITHMS:
            raise ValueError(f"algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
        if algorithm == "viterbi":
            def fn(ls, lt, le, lb):
                res = viterbi_padded(ls, lt, le, lb)
                paths = res.paths.cpu().numpy()
                return [(float(res.log_prob[j]), paths[j, :int(lb[j])]) for j in range(len(lb))]

            parts, lengths = self._per_batch(X, lengths, fn)
            log_prob = sum(p[0] for p in parts) + self._log_jacobian() * float(lengths.sum())
            return float(log_prob), self._concat([p[1] for p in parts]).astype(np.int64)
        post = self.predict_proba(X, lengths=lengths)
        best = post.max(1)
        with np.errstate(divide="ignore"):
            return float(np.log(best).sum()), post.argmax(1).astype(np.int64)

    @keyword_lengths
    def predict(self, X, *, lengths=None):
        """Most likely state of each step, decoded with ``algorithm``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of arrays
        lengths : array-like of int, optional

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.decode(X, lengths=lengths)[1]

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
        self._check_fitted()
        n = check_positive_int(n_samples, "n_samples")
        b = check_positive_int(n_sequences, "n_sequences")
        net = self.module_
        p = next(net.parameters())
        seed = seed_from(check_random_state(self.random_state if random_state is None else random_state))
        gen = torch.Generator(device=p.device).manual_seed(seed)
        family = self._family
        xs, zs = [], []
        rows = torch.arange(b, device=p.device)
        net.eval()
        with torch.no_grad():
            state = net.backbone.init_state(b, device=p.device, dtype=p.dtype)
            e = net.start.expand(b, -1)
            z = None
            for t in range(n):
                h, state = net.backbone.step(e, state)
                if t == 0:
                    logits = net.log_startprob().expand(b, -1)
                else:
                    lt = net.log_transitions(h)
                    logits = lt[z] if lt.ndim == 2 else lt[rows, z]
                z = torch.multinomial(logits.exp(), 1, generator=gen).squeeze(-1)
                params = net.emission.select(net.emission(h), z)
                x = net.emission.sample(params, gen)
                xs.append(x)
                zs.append(z)
                if t + 1 < n:
                    if family == "poisson":
                        x_in = (torch.log1p(x) - torch.as_tensor(self._x_mean, dtype=x.dtype, device=x.device)) / \
                            torch.as_tensor(self._x_scale, dtype=x.dtype, device=x.device)
                    else:
                        x_in = x
                    e = net.encoder(x_in)
        X = torch.stack(xs, 1).cpu()
        Z = torch.stack(zs, 1).cpu().numpy().reshape(-1).astype(np.int64)
        if family == "categorical":
            return X.numpy().reshape(-1, 1).astype(np.int64), Z
        X = X.double().numpy().reshape(b * n, -1)
        if family == "gaussian":
            X = X * self._x_scale + self._x_mean
        return X, Z

    # ------------------------------------------------------------------ persistence / tags
    def _io_build_module(self, name, device=None):
        return build_net_for_loading(self, name, device)

    def _io_check_state(self):
        """Check what :func:`probkit.load` restored besides the network (whose weights the loader checks)."""
        from probkit.utils.validation import check_stochastic

        if not hasattr(self, "module_"):
            return
        if self._family != "categorical":
            check_standardizer(self._x_mean, self._x_scale, self._n_outputs())
        k = self.n_components
        for name, shape in (("startprob_", (k,)), ("transmat_", (k, k))):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
            check_stochastic(value, name, atol=1e-6)


NeuralHMM.__doc__ = NeuralHMM.__doc__.replace("%(training_params)s", _TRAINING_PARAMS)
