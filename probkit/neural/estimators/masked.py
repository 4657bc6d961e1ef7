"""MaskedSequenceModel: masked-language-model training (BERT) of a bidirectional backbone."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from probkit.base import NumberInterval
from probkit.neural.networks import SequenceNet
from probkit.utils.sequences import _is_sequence_list, check_y_slot, keyword_lengths
from probkit.utils.threads import limit_torch_threads

from ._base import PerStepSequenceEstimator, store_params, unwrap
from ._data import SequenceData
from ._docs import NEURAL_DOCS

__all__ = ["MaskedSequenceModel", "bert_mask"]


def _check_probability(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _boolean(mask, name):
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.dtype != bool:
        raise ValueError(f"{name} must be a boolean array (True where a value is to be filled), got dtype {m.dtype}")
    return m


def _round_half_up(x):
    return int(np.floor(x + 0.5))


def bert_mask(lengths, max_len=None, *, mask_prob=0.15, mask_token_prob=0.8, random_token_prob=0.1,
              generator=None):
    """BERT's masking: which positions to predict, and which of them to hide or replace.

    In each sequence of length ``n``, ``max(1, round(mask_prob * n))`` valid positions are
    chosen uniformly at random (the count rule of BERT's data generator). Of the ``S``
    positions chosen in the whole batch, exactly ``round(mask_token_prob * S)``, drawn
    uniformly, get the ``[MASK]`` input, ``round(random_token_prob * S)`` a random input,
    and the others keep their input (80/10/10 by default). Halves round up.

    Parameters
    ----------
    lengths : array-like of int, shape (B,)
        Valid length of each sequence (at least 1).
    max_len : int, optional
        Padded length ``L`` (default: the longest length).
    mask_prob, mask_token_prob, random_token_prob : float
        Share of positions predicted; shares of those masked and randomised
        (``mask_token_prob + random_token_prob <= 1``).
    generator : torch.Generator, optional
        Source of every draw (CPU).

    Returns
    -------
    selected, masked, randomized : torch.Tensor of bool, shape (B, L)
        Positions in the loss; those given ``[MASK]``; those given a random input
        (``masked`` and ``randomized`` are disjoint subsets of ``selected``).

    Examples
    --------
    >>> import torch
    >>> sel, msk, rnd = bert_mask([20, 20, 20, 20, 20], generator=torch.Generator().manual_seed(0))
    >>> sel.sum(1).tolist(), int(msk.sum()), int(rnd.sum())      # 3 per row; 12 and 2 of 15
    ([3, 3, 3, 3, 3], 12, 2)
    >>> bool((msk & ~sel).any() or (msk & rnd).any())
    False
    """
    mask_prob = _check_probability(mask_prob, "mask_prob")
    p_mask = _check_probability(mask_token_prob, "mask_token_prob")
    p_rand = _check_probability(random_token_prob, "random_token_prob")
    if p_mask + p_rand > 1 + 1e-12:
        raise ValueError(f"mask_token_prob + random_token_prob must be at most 1, got {p_mask} + {p_rand}")
    lens = torch.as_tensor(np.asarray(lengths), dtype=torch.long).reshape(-1)
    if lens.numel() == 0 or int(lens.min()) < 1:
        raise ValueError("lengths must hold at least one sequence, each of length >= 1")
    L = int(lens.max()) if max_len is None else int(max_len)
    if L < int(lens.max()):
        raise ValueError(f"max_len={L} is shorter than the longest sequence ({int(lens.max())})")
    valid = torch.arange(L)[None, :] < lens[:, None]
    n_pick = torch.tensor([max(1, _round_half_up(mask_prob * int(n))) for n in lens])
    # a uniformly random order of the valid positions of each row: rank of uniform keys
    keys = torch.rand(lens.shape[0], L, generator=generator, dtype=torch.float64)
    keys = keys.masked_fill(~valid, 2.0)
    rank = keys.argsort(1).argsort(1)
    selected = rank < n_pick[:, None]
    S = int(selected.sum())
    n_mask, n_rand = _round_half_up(p_mask * S), _round_half_up(p_rand * S)
    n_rand = min(n_rand, S - n_mask)
    kind = torch.full((S,), 2, dtype=torch.long)
    perm = torch.randperm(S, generator=generator)
    kind[perm[:n_mask]] = 0
    kind[perm[n_mask:n_mask + n_rand]] = 1
    masked = torch.zeros_like(selected)
    randomized = torch.zeros_like(selected)
    masked[selected] = kind == 0
    randomized[selected] = kind == 1
    return selected, masked, randomized


def corrupt(x, lengths, randomized, vocab_size, generator=None):
    """Inputs with the ``randomized`` positions replaced: a uniform token, or (real values)
    the frame of a uniformly drawn valid position of the batch."""
    if not bool(randomized.any()):
        return x
    n = int(randomized.sum())
    if vocab_size is not None:
        draws = torch.randint(vocab_size, (n,), generator=generator).to(device=x.device, dtype=x.dtype)
    else:
        valid = (torch.arange(x.shape[1], device=lengths.device)[None, :] < lengths[:, None]).cpu()
        pool = x[valid.to(x.device)]
        draws = pool[torch.randint(pool.shape[0], (n,), generator=generator).to(x.device)]
    x = x.clone()
    x[randomized.to(x.device)] = draws
    return x


def masked_lm_loss(module, x, lengths, generator, *, vocab_size, mask_prob, mask_token_prob, random_token_prob):
    """Mean negative log-likelihood of the original inputs at the selected positions.

    Returns ``(loss, number of predicted positions)``.
    """
    selected, masked, randomized = bert_mask(lengths.cpu(), x.shape[1], mask_prob=mask_prob,
                                             mask_token_prob=mask_token_prob,
                                             random_token_prob=random_token_prob, generator=generator)
    inputs = corrupt(x, lengths, randomized, vocab_size, generator)
    out = module(inputs, lengths, masked.to(x.device))
    head = unwrap(module).head
    lp = head.log_prob(out[selected.to(x.device)], x[selected.to(x.device)])
    return -lp.mean(), lp.shape[0]


@NEURAL_DOCS.fill
class MaskedSequenceModel(PerStepSequenceEstimator):
    r"""Masked sequence model (BERT's objective) on a bidirectional neural backbone.

    Training hides a random share of each sequence's positions and learns to predict them
    from the rest of the sequence, in both directions: in every mini-batch
    :func:`bert_mask` chooses ``mask_prob`` of the positions; ``mask_token_prob`` of them
    get a learned ``[MASK]`` input vector, ``random_token_prob`` a random input (a uniform
    token, or the frame of a random position for real values) and the rest keep their
    input; the loss is the negative log-likelihood of the original inputs at the chosen
    positions only. The draws come from a ``torch.Generator`` seeded from
    ``random_state``. The transformer runs without its causal mask; a causal backbone
    (Mamba, RWKV, S4D, ...) gets a twin that reads each sequence backwards, its features
    added position by position.

    Parameters
    ----------
    %(model_params)s
    mask_prob : float, default=0.15
        Share of the positions of each sequence predicted in each batch (at least one).
    mask_token_prob : float, default=0.8
        Share of the predicted positions whose input is the ``[MASK]`` vector.
    random_token_prob : float, default=0.1
        Share of the predicted positions whose input is replaced by a random one.
    %(per_step_params)s
    %(training_params)s

    %(per_step_attributes)s

    Notes
    -----
    %(per_step_notes)s

    :meth:`fill_mask` predicts the positions flagged in a boolean mask;
    :meth:`score_samples` is the pseudo-log-likelihood ``sum_t log p(x_t | x_{-t})``
    (Salazar et al., 2020): each position in turn gets the ``[MASK]`` input and is
    scored from all the others.

    %(training_notes)s

    Examples
    --------
    Counting sequences modulo 5: a hidden token follows from its neighbours, the first one
    from the token after it.

    >>> import numpy as np
    >>> from probkit.neural import MaskedSequenceModel
    >>> rng = np.random.RandomState(0)
    >>> X = (rng.randint(0, 5, size=(64, 1)) + np.arange(12)) % 5
    >>> mlm = MaskedSequenceModel(backbone="transformer", d_model=32, n_layers=1, vocab_size=5,
    ...                           backbone_kwargs={"n_heads": 2}, max_epochs=80, lr=1e-2,
    ...                           early_stopping=False, random_state=0).fit(X)
    >>> x = np.array([[3, 4, 0, 1, 2, 3]])
    >>> hide = np.array([[True, False, False, True, False, False]])
    >>> mlm.fill_mask(x, hide).tolist()
    [[3, 4, 0, 1, 2, 3]]
    """

    _parameter_constraints = {
        **PerStepSequenceEstimator._parameter_constraints,
        "mask_prob": [NumberInterval(numbers.Real, 0, 1, closed="both")],
        "mask_token_prob": [NumberInterval(numbers.Real, 0, 1, closed="both")],
        "random_token_prob": [NumberInterval(numbers.Real, 0, 1, closed="both")],
    }

    def __init__(self, backbone="transformer", d_model=64, n_layers=2, *, backbone_kwargs=None, vocab_size=None,
                 mask_prob=0.15, mask_token_prob=0.8, random_token_prob=0.1, head="auto", n_components=5,
                 window=256, batch_size=32, max_epochs=100, lr=1e-3, weight_decay=0.01, clip_grad_norm=1.0,
                 schedule="cosine", warmup=0.05, early_stopping=True, validation_fraction=0.1, patience=10,
                 mixed_precision="auto", random_state=None, device=None, dtype=None, verbose=0):
        store_params(self, locals())

    # ------------------------------------------------------------------ setup
    def _check_model_params(self):
        p_mask, p_rand = self.mask_token_prob, self.random_token_prob
        if p_mask + p_rand > 1 + 1e-12:
            raise ValueError(f"mask_token_prob + random_token_prob must be at most 1, got {p_mask} + {p_rand}")

    # the heads of the autoregressive density, one per position here

    def _make_net(self):
        kw = {"vocab_size": self.vocab_size} if self._tokens else {"n_features": self.n_features_in_}
        return SequenceNet(self.backbone, self.d_model, self.n_layers, self._make_head(),
                           backbone_kwargs=self.backbone_kwargs, pooling=None, bidirectional=True,
                           mask_embedding=True, **kw)

    def _read_windows(self, X, lengths, valid_lengths, *, reset):
        """The checked sequences of ``X`` and the same rows with one long token sequence cut into windows."""
        batch = self._read(X, lengths, valid_lengths, reset=reset)
        return batch, self._windowed(batch, X, lengths)

    # ------------------------------------------------------------------ fit
    def _fit_sequences(self, options, X, lengths, valid_lengths):
        """The masked objective: predict the hidden positions of every sequence from the others."""
        self.head_ = self._resolve_head()
        data = self._training_data(self._read_windows(X, lengths, valid_lengths, reset=True)[1])
        masking = dict(vocab_size=self.vocab_size, mask_prob=self.mask_prob, mask_token_prob=self.mask_token_prob,
                       random_token_prob=self.random_token_prob)
        generators = []

        def seed_masking(net, rs):
            # the masking draws: a CPU generator seeded from random_state after the seeds of the base
            generators.append(torch.Generator().manual_seed(int(rs.randint(0, 2**31 - 1))))

        def loss_fn(model, batch):
            return masked_lm_loss(model, batch["x"], batch["lengths"], generators[0], **masking)

        self._train(options, data, loss_fn, initialise=seed_masking)

    # ------------------------------------------------------------------ prediction
    def _read_flags(self, mask, X, batch):
        """The boolean ``mask``, given in the layout of ``X``, as one flag per row of ``batch`` (concatenated)."""
        if _is_sequence_list(X):
            if not isinstance(mask, (list, tuple)) or len(mask) != batch.n_sequences:
                raise ValueError(f"mask must be a list of {batch.n_sequences} boolean arrays, one per sequence of X")
            flags = []
            for i, (m, n) in enumerate(zip(mask, batch.lengths)):
                m = _boolean(m, f"mask[{i}]")
                if m.shape != (n,):
                    raise ValueError(f"mask[{i}] must have shape ({n},) like sequence {i}, got {m.shape}")
                flags.append(m)
            return np.concatenate(flags)
        m = _boolean(mask, "mask")
        shape = np.shape(X.detach().cpu() if isinstance(X, torch.Tensor) else X)
        padded = len(shape) == self._step_ndim + 2
        expected = tuple(shape[:2]) if padded else (batch.n_samples,)
        if m.shape != expected:
            raise ValueError(f"mask must have shape {expected} (one entry per step of X), got {m.shape}")
        return m[np.arange(shape[1])[None, :] < batch.lengths[:, None]] if padded else m

    @limit_torch_threads
    def fill_mask(self, X, mask, *, lengths=None, valid_lengths=None):
        """Replace the positions flagged in ``mask`` by the model's most probable values.

        Each flagged position gets the ``[MASK]`` input (all at once) and is predicted from
        the unflagged ones: the most probable token, or the predictive mean / mode for real
        values.

        %(sequence_params)s
        mask : list of boolean arrays or boolean array
            Positions to fill, one entry per step in the layout of ``X``: a list of
            ``(L_i,)`` arrays for a list, ``(n_samples,)`` for concatenated rows,
            ``(N, L)`` for a padded array (flags past a sequence's end are ignored).

        Returns
        -------
        list of arrays or ndarray
            ``X`` with the flagged positions filled, in the layout of ``X`` (a padded
            array holds zeros past each sequence's end).
        """
        batch, windowed = self._read_windows(X, lengths, valid_lengths, reset=False)
        flags = self._read_flags(mask, X, batch)
        steps = self._model_steps(batch.values)
        steps["masked"] = flags
        p = next(self.module_.parameters())
        data = SequenceData.from_batch(windowed, steps, device=p.device, dtype=p.dtype)
        head = self.module_.head

        def predict(b):
            return head.mode(self.module_(b["x"], b["lengths"], b["masked"].bool()))

        predicted = self._evaluate_steps(data, predict)
        if self._tokens:
            predicted = predicted.astype(batch.values.dtype)
        else:
            predicted = self._to_data_units(predicted.astype(np.float64))
        flag_shape = flags.shape + (1,) * (batch.values.ndim - 1)
        filled = np.where(flags.reshape(flag_shape), predicted, batch.values)   # unflagged values exactly as given
        if _is_sequence_list(X):
            return batch.with_values(filled).split()
        if len(np.shape(X.detach().cpu() if isinstance(X, torch.Tensor) else X)) == self._step_ndim + 2:
            return batch.with_values(filled).padded()
        return filled

    @limit_torch_threads
    def _pseudo_log_likelihoods(self, X, lengths, valid_lengths):
        """Per-step ``log p(x_t | x_{-t})`` (concatenated rows) and the batch of (windowed) sequences."""
        windowed = self._read_windows(X, lengths, valid_lengths, reset=False)[1]
        head, jacobian = self.module_.head, self._log_jacobian()

        def per_step(b):
            x, lb = b["x"], b["lengths"]
            t = torch.arange(x.shape[1], device=x.device)
            lp = torch.zeros(x.shape[:2], dtype=torch.float64, device=x.device)
            zero = torch.zeros((), dtype=torch.float64, device=x.device)
            for i in range(int(lb.max())):
                alive = lb > i
                out = self.module_(x, lb, (t[None, :] == i) & alive[:, None])
                lp[:, i] = torch.where(alive, head.log_prob(out[:, i], x[:, i]).double() + jacobian, zero)
            return lp

        return self._evaluate_steps(self._sequence_data(windowed), per_step), windowed

    @keyword_lengths
    def score_samples(self, X, *, lengths=None, valid_lengths=None):
        """Pseudo-log-likelihood ``sum_t log p(x_t | x_{-t})`` of each sequence, in nats.

        %(sequences_to_values)s
        """
        lp, windowed = self._pseudo_log_likelihoods(X, lengths, valid_lengths)
        return np.add.reduceat(lp, windowed.offsets[:-1])

    def score(self, X, y=None, *, lengths=None, valid_lengths=None):
        """Mean pseudo-log-likelihood per position, in nats (higher is better).

        %(sequences_to_score)s
        """
        check_y_slot(self, "score", X, y)
        lp, _ = self._pseudo_log_likelihoods(X, lengths, valid_lengths)
        return float(lp.mean())
