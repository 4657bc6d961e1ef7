"""SequenceDensity: autoregressive neural density p(x_t | x_<t) over token or real-valued sequences."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from sklearn.base import DensityMixin

from probkit.utils.random import seed_from
from probkit.utils.sequences import check_y_slot, keyword_lengths
from probkit.utils.threads import limit_torch_threads
from probkit.utils.validation import check_int

from ._base import PerStepSequenceEstimator, store_params, unwrap
from ._docs import NEURAL_DOCS

__all__ = ["SequenceDensity"]


@NEURAL_DOCS.fill
class SequenceDensity(DensityMixin, PerStepSequenceEstimator):
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
    %(per_step_params)s
    %(training_params)s

    %(per_step_attributes)s

    Notes
    -----
    %(per_step_notes)s
    Each window starts from the start vector, so its first tokens are predicted with
    little context.

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
        store_params(self, locals())

    # ------------------------------------------------------------------ setup
    def _read_windows(self, X, lengths, valid_lengths, *, reset):
        """The checked sequences of ``X``; one long token sequence is cut into windows."""
        return self._windowed(self._read(X, lengths, valid_lengths, reset=reset), X, lengths)

    # ------------------------------------------------------------------ fit / score
    def _fit_sequences(self, options, X, lengths, valid_lengths):
        """The objective: the negative log-likelihood per valid step, under teacher forcing."""
        self.head_ = self._resolve_head()
        batch = self._read_windows(X, lengths, valid_lengths, reset=True)
        data = self._training_data(batch)

        def loss_fn(model, batch):
            x, lb = batch["x"], batch["lengths"]
            out = model(x, lb)
            lp = unwrap(model).head.log_prob(out, x)
            mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lb[:, None]).to(lp.dtype)
            n = mask.sum()
            return -(lp * mask).sum() / n, n

        self._train(options, data, loss_fn)

    @limit_torch_threads
    def _sequence_log_likelihoods(self, X, lengths, valid_lengths):
        """``log p(x_{1:T})`` of each sequence (or window) and the lengths."""
        batch = self._read_windows(X, lengths, valid_lengths, reset=False)
        head, jacobian = self.module_.head, self._log_jacobian()

        def total(b):
            x, lb = b["x"], b["lengths"]
            lp = head.log_prob(self.module_(x, lb), x).double()
            valid = torch.arange(x.shape[1], device=x.device)[None, :] < lb[:, None]
            lp = torch.where(valid, lp, torch.zeros((), dtype=lp.dtype, device=lp.device))
            return lp.sum(1) + jacobian * lb.to(lp.dtype)

        return np.array(self._evaluate(self._sequence_data(batch), total)), batch.lengths

    @keyword_lengths
    def score_samples(self, X, *, lengths=None, valid_lengths=None):
        """Log-likelihood ``log p(x_{1:T})`` of each sequence, in nats.

        %(sequences_to_values)s
        """
        return self._sequence_log_likelihoods(X, lengths, valid_lengths)[0]

    def score(self, X, y=None, *, lengths=None, valid_lengths=None):
        """Mean log-likelihood per step, in nats (higher is better).

        The total log-likelihood of all sequences divided by their total length; for
        tokens, ``-score / log(2)`` is the cross-entropy in bits per symbol.

        %(sequences_to_score)s
        """
        check_y_slot(self, "score", X, y)
        totals, lens = self._sequence_log_likelihoods(X, lengths, valid_lengths)
        return float(totals.sum() / lens.sum())

    # ------------------------------------------------------------------ generation
    def _prompt(self, prompt):
        """The prompt as a (B, L[, D]) tensor in model units (None when empty), its batch size, and whether it was
        one sequence."""
        arr = prompt.detach().cpu().numpy() if isinstance(prompt, torch.Tensor) else np.asarray(prompt)
        single = arr.ndim == (1 if self._tokens else 2)
        if self._tokens and arr.ndim not in (1, 2):
            raise ValueError(f"prompt must be a 1-D token sequence or a (B, L) batch, got shape {arr.shape}")
        if not self._tokens and arr.ndim not in (2, 3):
            raise ValueError(f"prompt must be one (L, D) sequence or a (B, L, D) batch, got shape {arr.shape}")
        batched = arr[None] if single else arr
        if batched.shape[1] == 0:
            return None, batched.shape[0], single
        batch = self._read(batched, reset=False, name="prompt")
        p = next(self.module_.parameters())
        x = batch.with_values(self._model_steps(batch.values)["x"]).padded()
        return torch.as_tensor(x, dtype=torch.long if self._tokens else p.dtype, device=p.device), len(batch), single

    @limit_torch_threads
    def _run(self, prompt_t, batch_size, n_steps, temperature, random_state):
        if not (isinstance(temperature, numbers.Real) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        n_steps = check_int(n_steps, "n_steps")
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
        return self._to_data_units(seq.double().numpy())

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
        self._check_fitted()
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
        self._check_fitted()
        n_samples = check_int(n_samples, "n_samples")
        return self._run(None, n_samples, n_steps, temperature, random_state)
