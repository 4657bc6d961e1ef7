"""MaskedSequenceModel: masked-language-model training (BERT) of a bidirectional backbone."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from probkit.neural.heads import make_head
from probkit.utils.sequences import check_y_slot, keyword_lengths
from probkit.utils.threads import limit_torch_threads

from ._base import _SequenceEstimator, check_training_options, fill_doc, unwrap
from ._data import SequenceData, check_positive_int, windows
from ._network import SequenceNet

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


@fill_doc
class MaskedSequenceModel(_SequenceEstimator):
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
    head : {"auto", "categorical", "gaussian", "mixture"}, default="auto"
        Predictive distribution at a position, as in :class:`SequenceDensity`.
    n_components : int, default=5
        Components of the mixture head.
    window : int, default=256
        Length of the windows a single 1-D token sequence is cut into.
    %(training_params)s

    Attributes
    ----------
    head_ : str
    %(fitted_attrs)s

    Notes
    -----
    Inputs take the layouts of :class:`SequenceDensity`. :meth:`fill_mask` predicts the
    positions flagged in a boolean mask; :meth:`score_samples` is the pseudo-log-likelihood
    ``sum_t log p(x_t | x_{-t})`` (Salazar et al., 2020): each position in turn gets the
    ``[MASK]`` input and is scored from all the others.

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

    def __init__(self, backbone="transformer", d_model=64, n_layers=2, *, backbone_kwargs=None, vocab_size=None,
                 mask_prob=0.15, mask_token_prob=0.8, random_token_prob=0.1, head="auto", n_components=5,
                 window=256, batch_size=32, max_epochs=100, lr=1e-3, weight_decay=0.01, clip_grad_norm=1.0,
                 schedule="cosine", warmup=0.05, early_stopping=True, validation_fraction=0.1, patience=10,
                 mixed_precision="auto", random_state=None, device=None, dtype=None, verbose=0):
        self.backbone = backbone
        self.d_model = d_model
        self.n_layers = n_layers
        self.backbone_kwargs = backbone_kwargs
        self.vocab_size = vocab_size
        self.mask_prob = mask_prob
        self.mask_token_prob = mask_token_prob
        self.random_token_prob = random_token_prob
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
    def _check_params(self):
        check_training_options(self)
        if self.vocab_size is not None:
            check_positive_int(self.vocab_size, "vocab_size")
        check_positive_int(self.window, "window")
        check_positive_int(self.n_components, "n_components")
        _check_probability(self.mask_prob, "mask_prob")
        p_mask = _check_probability(self.mask_token_prob, "mask_token_prob")
        p_rand = _check_probability(self.random_token_prob, "random_token_prob")
        if p_mask + p_rand > 1 + 1e-12:
            raise ValueError(f"mask_token_prob + random_token_prob must be at most 1, got {p_mask} + {p_rand}")

    def _make_net(self):
        kw = {"vocab_size": self.vocab_size} if self._tokens else {"n_features": self.n_features_in_}
        n_out = self.vocab_size if self._tokens else self.n_features_in_
        head = make_head(self.head_, self.d_model, n_out, n_components=self.n_components)
        return SequenceNet(self.backbone, self.d_model, self.n_layers, head, backbone_kwargs=self.backbone_kwargs,
                           pooling=None, bidirectional=True, mask_embedding=True, **kw)

    def _masking(self):
        return dict(vocab_size=self.vocab_size, mask_prob=self.mask_prob, mask_token_prob=self.mask_token_prob,
                    random_token_prob=self.random_token_prob)

    # ------------------------------------------------------------------ fit
    @limit_torch_threads
    def fit(self, X, y=None, *, lengths=None):
        """Train with the masked objective on sequences ``X``.

        Parameters
        ----------
        X : list of arrays, array or tensor
            Layouts of :class:`SequenceDensity`.
        y : ignored
        lengths : array-like of int, optional
            Valid length of each row of a padded ``X``.

        Returns
        -------
        self
        """
        check_y_slot(self, "fit", X, y)
        self._check_params()
        self.head_ = self._resolve_head()
        padded, lens = self._read_windowed(X, lengths, reset=True)
        self._fit_standardizer(padded, lens)
        device, dtype = self._compute_setup()
        data = SequenceData(self._to_tensor(padded, device, dtype), torch.as_tensor(lens, device=device))
        # the masking draws: a CPU generator from a seed of its own (after the two of the base)
        mask_seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1, size=3)[2])
        generator = torch.Generator().manual_seed(mask_seed)
        masking = self._masking()

        def loss_fn(model, batch):
            return masked_lm_loss(model, batch["x"], batch["lengths"], generator, **masking)

        return self._build_and_train(data, loss_fn)

    # ------------------------------------------------------------------ prediction
    def _read_mask(self, mask, X, padded, lens):
        """The boolean ``mask`` in the padded ``(N, L)`` layout of ``X``; False past each length."""
        N, L = padded.shape[:2]
        X_np = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X
        if isinstance(X, (list, tuple)):
            if not isinstance(mask, (list, tuple)) or len(mask) != N:
                raise ValueError(f"mask must be a list of {N} boolean arrays, one per sequence of X")
            out = np.zeros((N, L), dtype=bool)
            for i, m in enumerate(mask):
                m = _boolean(m, f"mask[{i}]")
                if m.shape != (lens[i],):
                    raise ValueError(f"mask[{i}] must have shape ({lens[i]},) like sequence {i}, got {m.shape}")
                out[i, :lens[i]] = m
        else:
            m = _boolean(mask, "mask")
            one_long = self._tokens and isinstance(X_np, np.ndarray) and X_np.ndim == 1
            expected = (int(lens.sum()),) if one_long else (N, L)
            if m.shape != expected:
                raise ValueError(f"mask must have shape {expected} (the positions of X), got {m.shape}")
            if one_long:
                m = windows(m, padded.shape[1])[0]
            out = m & (np.arange(L)[None, :] < lens[:, None])
        return out

    @limit_torch_threads
    def fill_mask(self, X, mask, *, lengths=None):
        """Replace the positions flagged in ``mask`` by the model's most probable values.

        Each flagged position gets the ``[MASK]`` input (all at once) and is predicted from
        the unflagged ones: the most probable token, or the predictive mean / mode for real
        values.

        Parameters
        ----------
        X : list of arrays, array or tensor
            Sequences (the values at flagged positions are ignored).
        mask : list of boolean arrays or boolean array
            Positions to fill, in the layout of ``X`` (one entry per step).
        lengths : array-like of int, optional

        Returns
        -------
        list of arrays or ndarray
            ``X`` with the flagged positions filled, in the layout of ``X``.
        """
        check_is_fitted(self)
        padded, lens = self._read_windowed(X, lengths, reset=False)
        flags = self._read_mask(mask, X, padded, lens)
        p = next(self.module_.parameters())
        x = self._to_tensor(padded, p.device, p.dtype)
        head = self.module_.head

        def fill(xb, lb, mb):
            mb = mb[:, :xb.shape[1]]
            pred = head.mode(self.module_(xb, lb, mb)).to(xb.dtype)
            if pred.dim() < xb.dim():
                pred = pred.unsqueeze(-1)
            filled = torch.where(mb.reshape(mb.shape + (1,) * (xb.dim() - 2)), pred, xb)
            return torch.nn.functional.pad(filled, (0, 0) * (xb.dim() - 2) + (0, padded.shape[1] - xb.shape[1]))

        filled = self._map_batches(x, lens, fill, torch.as_tensor(flags, device=x.device))
        out = filled.numpy()
        if self._tokens:
            out = out.astype(padded.dtype)
        else:
            out = out.astype(np.float64) * self._x_scale + self._x_mean
            out = np.where(flags[..., None], out, padded)  # unflagged values exactly as given
        X_np = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else X
        if isinstance(X, (list, tuple)):
            return [out[i, :lens[i]] for i in range(len(lens))]
        if self._tokens and isinstance(X_np, np.ndarray) and X_np.ndim == 1:
            return out.reshape(-1)[:int(lens.sum())]
        return out

    @limit_torch_threads
    def _pseudo_log_likelihoods(self, X, lengths):
        """Per-position ``log p(x_t | x_{-t})`` ``(N, L_max)`` (0 past each length) and the lengths."""
        check_is_fitted(self)
        padded, lens = self._read_windowed(X, lengths, reset=False)
        p = next(self.module_.parameters())
        head, jac = self.module_.head, self._log_jacobian()

        def per_step(xb, lb):
            B, L = xb.shape[:2]
            t = torch.arange(L, device=xb.device)
            lp = torch.zeros(B, padded.shape[1], dtype=torch.float64)
            for i in range(L):
                alive = lb > i
                masked = (t[None, :] == i) & alive[:, None]
                out = self.module_(xb, lb, masked)
                lp[:, i] = torch.where(alive, head.log_prob(out[:, i], xb[:, i]).double() + jac,
                                       torch.zeros((), dtype=torch.float64, device=xb.device)).cpu()
            return lp

        return self._map_batches(self._to_tensor(padded, p.device, p.dtype), lens, per_step).numpy(), lens

    @keyword_lengths
    def score_samples(self, X, *, lengths=None):
        """Pseudo-log-likelihood ``sum_t log p(x_t | x_{-t})`` of each sequence, in nats.

        Parameters
        ----------
        X : list of arrays, array or tensor
        lengths : array-like of int, optional

        Returns
        -------
        ndarray of shape (N,)
        """
        lp, _ = self._pseudo_log_likelihoods(X, lengths)
        return lp.sum(1)

    def score(self, X, y=None, *, lengths=None):
        """Mean pseudo-log-likelihood per position, in nats (higher is better).

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
        lp, lens = self._pseudo_log_likelihoods(X, lengths)
        return float(lp.sum() / lens.sum())
