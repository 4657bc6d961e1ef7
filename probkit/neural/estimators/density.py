"""SequenceDensity: autoregressive neural density p(x_t | x_<t) over token or real-valued sequences."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from sklearn.base import DensityMixin
from sklearn.utils.validation import check_is_fitted

from probkit.neural.heads import make_head
from probkit.utils.sequences import check_y_slot, keyword_lengths
from probkit.utils.threads import limit_torch_threads

from ._base import _SequenceEstimator, fill_doc, unwrap
from ._data import SequenceData, check_positive_int, check_sequences
from probkit.utils.random import seed_from

__all__ = ["SequenceDensity"]


@fill_doc
class SequenceDensity(DensityMixin, _SequenceEstimator):
    r"""Autoregressive sequence model :math:`p(x_{1:T}) = \prod_t p(x_t \mid x_{<t})` on a neural backbone.

    The input at step ``t`` is the previous symbol (a learned start vector at ``t = 1``);
    a causal backbone turns the inputs into features and a head gives the predictive
    distribution of ``x_t``: categorical over ``vocab_size`` tokens, or a diagonal
    Gaussian or mixture of Gaussians over real vectors. Training minimises the negative
    log-likelihood per step with the shared loop of :func:`probkit.neural.train_module`;
    :meth:`sample` and :meth:`generate` run the backbone recurrently through its
    ``step()``, one symbol at a time.

    Parameters
    ----------
    %(model_params)s
    head : {"auto", "categorical", "gaussian", "mixture"}, default="auto"
        Predictive distribution: "auto" is "categorical" with ``vocab_size`` and
        "gaussian" otherwise; "mixture" is a mixture of ``n_components`` diagonal
        Gaussians (multi-modal real-valued steps).
    n_components : int, default=5
        Components of the mixture head.
    window : int, default=256
        Length of the windows a single 1-D token sequence is cut into (fit and score).
    %(training_params)s

    Attributes
    ----------
    head_ : str
        The head used ("categorical", "gaussian" or "mixture").
    %(fitted_attrs)s

    Notes
    -----
    Layouts of ``X``: with ``vocab_size``, a list of 1-D integer arrays, a padded
    ``(N, L)`` integer array with ``lengths=``, or one long 1-D sequence, cut into
    consecutive windows of ``window`` tokens that are modelled independently (each
    starts from the start vector, so its first tokens are predicted with little
    context). Real-valued steps: a list of ``(L_i, D)`` arrays, a padded ``(N, L, D)``
    array with ``lengths=``, or a 2-D ``(N, D)`` array of ``N`` one-step sequences.
    Real-valued data are standardised per feature; log-densities are reported in the
    original units.

    %(training_notes)s

    Examples
    --------
    A character model of a repeated phrase learns it almost perfectly:

    >>> import numpy as np
    >>> from probkit.neural import SequenceDensity
    >>> text = "the cat sat on the mat. " * 40
    >>> alphabet = sorted(set(text))
    >>> tokens = np.array([alphabet.index(c) for c in text])
    >>> lm = SequenceDensity(backbone="gru", d_model=32, n_layers=1, vocab_size=len(alphabet), window=48,
    ...                      max_epochs=60, lr=1e-2, early_stopping=False, random_state=0).fit(tokens)
    >>> lm.score(tokens) > -0.5                       # nats per character; uniform: -log(11) = -2.4
    True
    >>> out = lm.generate(tokens[:6], n_steps=18, temperature=0.5, random_state=0)
    >>> "".join(alphabet[i] for i in out)
    't sat on the mat. '
    """

    _autoregressive = True

    def __init__(self, backbone="mamba", d_model=64, n_layers=2, *, backbone_kwargs=None, vocab_size=None,
                 head="auto", n_components=5, window=256, batch_size=32, max_epochs=100, lr=1e-3, weight_decay=0.01,
                 clip_grad_norm=1.0, schedule="cosine", warmup=0.05, early_stopping=True, validation_fraction=0.1,
                 patience=10, mixed_precision="auto", random_state=None, device=None, dtype=None, verbose=0):
        self.backbone = backbone
        self.d_model = d_model
        self.n_layers = n_layers
        self.backbone_kwargs = backbone_kwargs
        self.vocab_size = vocab_size
        self.head = head
        self.n_components = n_components
        self.window = window
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

    # ------------------------------------------------------------------ setup
    def _make_head(self):
        n_out = self.vocab_size if self._tokens else self.n_features_in_
        return make_head(self.head_, self.d_model, n_out, n_components=self.n_components)

    # ------------------------------------------------------------------ fit / score
    @limit_torch_threads
    def fit(self, X, y=None, *, lengths=None):
        """Train on sequences ``X`` (see Notes for the layouts).

        Parameters
        ----------
        X : list of arrays, array or tensor
        y : ignored
        lengths : array-like of int, optional
            Valid length of each row of a padded ``X``.

        Returns
        -------
        self
        """
        check_y_slot(self, "fit", X, y)
        self._check_params()
        check_positive_int(self.window, "window")
        check_positive_int(self.n_components, "n_components")
        self.head_ = self._resolve_head()
        padded, lens = self._read_windowed(X, lengths, reset=True)
        self._fit_standardizer(padded, lens)
        device, dtype = self._compute_setup()
        data = SequenceData(self._to_tensor(padded, device, dtype), torch.as_tensor(lens, device=device))

        def loss_fn(model, batch):
            x, lb = batch["x"], batch["lengths"]
            out = model(x, lb)
            lp = unwrap(model).head.log_prob(out, x)
            mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lb[:, None]).to(lp.dtype)
            n = mask.sum()
            return -(lp * mask).sum() / n, n

        return self._build_and_train(data, loss_fn)

    @limit_torch_threads
    def _step_log_probs(self, X, lengths):
        """Per-step log-likelihoods ``(N, L_max)`` (0 past each length) and the lengths."""
        check_is_fitted(self)
        padded, lens = self._read_windowed(X, lengths, reset=False)
        p = next(self.module_.parameters())
        head, jac = self.module_.head, self._log_jacobian()

        def per_step(out, xb, lb):
            mask = torch.arange(xb.shape[1], device=xb.device)[None, :] < lb[:, None]
            lp = head.log_prob(out, xb).double() + jac
            lp = torch.where(mask, lp, torch.zeros((), dtype=lp.dtype, device=lp.device))
            return torch.nn.functional.pad(lp, (0, padded.shape[1] - lp.shape[1]))

        return self._outputs(self._to_tensor(padded, p.device, p.dtype), lens, per_step).numpy(), lens

    @keyword_lengths
    def score_samples(self, X, *, lengths=None):
        """Log-likelihood ``log p(x_{1:T})`` of each sequence, in nats.

        Parameters
        ----------
        X : list of arrays, array or tensor
            As in :meth:`fit` (a 1-D token sequence gives one value per window).
        lengths : array-like of int, optional

        Returns
        -------
        ndarray of shape (N,)
        """
        lp, _ = self._step_log_probs(X, lengths)
        return lp.sum(1)

    def score(self, X, y=None, *, lengths=None):
        """Mean log-likelihood per step, in nats (higher is better).

        The total log-likelihood of all sequences divided by their total length; for
        tokens, ``-score / log(2)`` is the cross-entropy in bits per symbol.

        Parameters
        ----------
        X : list of arrays, array or tensor
        y : ignored
        lengths : array-like of int, optional

        Returns
        -------
        float
        """
        check_y_slot(self, "score", X, y)
        lp, lens = self._step_log_probs(X, lengths)
        return float(lp.sum() / lens.sum())

    # ------------------------------------------------------------------ generation
    def _prompt(self, prompt):
        """Validated prompt as a (B, L[, D]) tensor in model units, and whether it was one sequence."""
        p = next(self.module_.parameters())
        if self._tokens:
            arr = prompt.detach().cpu().numpy() if isinstance(prompt, torch.Tensor) else np.asarray(prompt)
            single = arr.ndim == 1
            if arr.ndim not in (1, 2):
                raise ValueError(f"prompt must be a 1-D token sequence or a (B, L) batch, got shape {arr.shape}")
            arr2 = arr[None] if single else arr
            if arr2.shape[1] == 0:
                return None, arr2.shape[0], single
            padded, _ = check_sequences(arr2, vocab_size=self.vocab_size, name="prompt")
        else:
            arr = prompt.detach().cpu().numpy() if isinstance(prompt, torch.Tensor) else np.asarray(prompt)
            single = arr.ndim == 2
            if arr.ndim not in (2, 3):
                raise ValueError(f"prompt must be one (L, D) sequence or a (B, L, D) batch, got shape {arr.shape}")
            arr3 = arr[None] if single else arr
            if arr3.shape[1] == 0:
                return None, arr3.shape[0], single
            padded, _ = check_sequences(arr3, name="prompt")
            if padded.shape[2] != self.n_features_in_:
                raise ValueError(f"prompt has {padded.shape[2]} features, but {type(self).__name__} is expecting "
                                 f"{self.n_features_in_} features as input.")
        return self._to_tensor(padded, p.device, p.dtype), padded.shape[0], single

    @limit_torch_threads
    def _run(self, prompt_t, batch_size, n_steps, temperature, random_state):
        if not (isinstance(temperature, numbers.Real) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        n_steps = check_positive_int(n_steps, "n_steps")
        net = self.module_
        p = next(net.parameters())
        gen = torch.Generator(device=p.device).manual_seed(seed_from(random_state))
        out_steps = []
        net.eval()
        with torch.no_grad():
            out, state = net.prime(prompt_t, batch_size=batch_size)
            for i in range(n_steps):
                x = net.head.sample(out, temperature=float(temperature), generator=gen)
                out_steps.append(x)
                if i + 1 < n_steps:
                    out, state = net.step(x, state)
        seq = torch.stack(out_steps, 1).cpu()
        if self._tokens:
            return seq.numpy().astype(np.int64)
        return seq.double().numpy() * self._x_scale + self._x_mean

    def generate(self, prompt=None, n_steps=100, *, temperature=1.0, random_state=None):
        """Continue ``prompt`` by sampling ``n_steps`` symbols, one recurrent ``step()`` at a time.

        The prompt is read in one parallel pass that also returns the backbone's
        recurrent state; then each new symbol is drawn from the head and fed back
        through the backbone's ``step()`` (constant memory for the recurrent backbones,
        a growing key/value cache for the transformer).

        Parameters
        ----------
        prompt : array-like, optional
            Tokens: a 1-D sequence or a ``(B, L)`` batch. Real values: one ``(L, D)``
            sequence or a ``(B, L, D)`` batch. None (or length 0) starts from scratch.
        n_steps : int, default=100
            Symbols to generate.
        temperature : float, default=1.0
            Divides the logits (categorical, mixture weights) and multiplies the
            standard deviations (Gaussian heads); below 1 is more conservative.
        random_state : int, RandomState instance or None

        Returns
        -------
        ndarray
            The continuation only: ``(n_steps,)`` / ``(B, n_steps)`` tokens, or
            ``(n_steps, D)`` / ``(B, n_steps, D)`` values.
        """
        check_is_fitted(self)
        if prompt is None:
            prompt_t, batch, single = None, 1, True
        else:
            prompt_t, batch, single = self._prompt(prompt)
        out = self._run(prompt_t, batch, n_steps, temperature, random_state)
        return out[0] if single else out

    def sample(self, n_samples=1, *, n_steps=100, temperature=1.0, random_state=None):
        """Draw ``n_samples`` independent sequences of ``n_steps`` steps from the model.

        Parameters
        ----------
        n_samples : int, default=1
        n_steps : int, default=100
        temperature : float, default=1.0
            See :meth:`generate`.
        random_state : int, RandomState instance or None

        Returns
        -------
        ndarray of shape (n_samples, n_steps) (tokens) or (n_samples, n_steps, D)
        """
        check_is_fitted(self)
        n_samples = check_positive_int(n_samples, "n_samples")
        return self._run(None, n_samples, n_steps, temperature, random_state)
