"""The torch modules behind the neural estimators: encoder, backbone and heads in one ``nn.Module``.

* :class:`SequenceNet` (:class:`~probkit.neural.SequenceClassifier`,
  :class:`~probkit.neural.SequenceRegressor`, :class:`~probkit.neural.SequenceDensity`)
  (and :class:`~probkit.neural.MaskedSequenceModel`) runs in one of three modes.

  - **pooled** (classifier, regressor): ``encoder -> backbone -> pool over time -> head``
    gives one output per sequence. With ``bidirectional=True`` a causal backbone gets a
    twin that reads every sequence backwards (within its length); the pooled summaries
    of both directions are added. The transformer instead drops its causal mask.
  - **autoregressive** (density): the input at position ``t`` is the encoding of
    ``x_{t-1}`` (a learned start vector at ``t = 0``), so the head output at ``t`` is the
    predictive distribution ``p(x_t | x_{<t})``; :meth:`SequenceNet.step` runs the same
    computation one position at a time through the backbone's recurrent ``step``.
  - **per position** (masked model, ``pooling=None``): one head output per position from
    features of the whole sequence (with ``bidirectional=True`` a causal backbone gets the
    reversed twin as above, its features added position by position). With
    ``mask_embedding=True`` the inputs flagged in ``forward(..., masked=)`` are replaced
    by a learned vector (BERT's ``[MASK]``).

* :class:`NeuralHMMNet` (:class:`~probkit.neural.NeuralHMM`): a causal backbone over the
  previous observations, per-state emission heads (:mod:`probkit.neural.emissions`) and
  static or feature-dependent transitions.
* :class:`DSSMNet` (:class:`~probkit.neural.DeepStateSpaceModel`): the deep Markov model,
  its amortised guide and their Pyro programs (Pyro is imported only when those run).

The modules receive checked, padded batches (a long tensor of valid lengths in
``[1, L]``) and call their backbones without checking them again.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from probkit.distributions import Normal, Poisson
from probkit.inference import forward_backward_padded, forward_filter_padded, hmm_log_likelihood, viterbi_padded
from probkit.neural.backbones import KINDS, Backbone, build_backbone
from probkit.neural.emissions import make_emission

__all__ = ["DSSMNet", "NeuralHMMNet", "SequenceNet", "hmm_log_likelihood_sum", "pool", "reverse_within"]

POOLINGS = ("mean", "last", "max")


def _lengths_or_full(lengths, x):
    if lengths is None:
        return torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
    return lengths.to(device=x.device, dtype=torch.long)


def reverse_within(x, lengths):
    """Reverse each sequence of ``x`` (B, L, ...) within its length; padding stays at the end.

    Examples
    --------
    >>> x = torch.arange(6.0).reshape(2, 3, 1)
    >>> reverse_within(x, torch.tensor([3, 2]))[..., 0].tolist()
    [[2.0, 1.0, 0.0], [4.0, 3.0, 5.0]]
    """
    lengths = _lengths_or_full(lengths, x)
    t = torch.arange(x.shape[1], device=x.device)
    idx = torch.where(t[None, :] < lengths[:, None], lengths[:, None] - 1 - t[None, :], t[None, :])
    idx = idx.reshape(idx.shape + (1,) * (x.dim() - 2)).expand_as(x)
    return x.gather(1, idx)


def pool(h, lengths, how):
    """Summarise features ``h`` (B, L, D) over the valid steps: "mean", "last" or "max".

    Examples
    --------
    >>> h = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> [pool(h, torch.tensor([2]), how).item() for how in ("mean", "last", "max")]
    [2.0, 3.0, 3.0]
    """
    lengths = _lengths_or_full(lengths, h)
    if how == "last":
        return h[torch.arange(h.shape[0], device=h.device), lengths - 1]
    mask = (torch.arange(h.shape[1], device=h.device)[None, :] < lengths[:, None]).unsqueeze(-1)
    if how == "mean":
        return (h * mask).sum(1) / lengths.unsqueeze(-1).to(h.dtype)
    if how == "max":
        return h.masked_fill(~mask, float("-inf")).amax(1)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {how!r}")


def build_checked_backbone(kind, d_model, n_layers, backbone_kwargs):
    """``build_backbone`` with error messages that name the estimator's arguments.

    A :class:`~probkit.neural.backbones.Backbone` given as ``kind`` (e.g. a loaded checkpoint's)
    is copied, so that training never changes the estimator's parameter; its ``n_layers`` is its own.
    """
    if isinstance(kind, Backbone):
        if d_model != kind.d_model:
            raise ValueError(f"d_model={d_model!r} must equal the width of the given backbone "
                             f"module; pass d_model={kind.d_model}")
        if backbone_kwargs:
            raise ValueError(f"backbone_kwargs={backbone_kwargs!r} only apply to a backbone built "
                             "by kind; the given Backbone module is used as it is")
        return copy.deepcopy(kind)
    if not isinstance(kind, str) or kind.lower() not in KINDS:
        raise ValueError(f"backbone={kind!r} is not a known backbone; choose one of {', '.join(KINDS)}")
    try:
        return build_backbone(kind, d_model, n_layers, **backbone_kwargs)
    except (TypeError, ValueError) as exc:
        extra = f", backbone_kwargs={backbone_kwargs!r}" if backbone_kwargs else ""
        raise ValueError(f"cannot build the {kind!r} backbone with d_model={d_model}, n_layers={n_layers}"
                         f"{extra}: {exc}") from None


class SequenceNet(nn.Module):
    """Encoder + backbone + head of the sequence classifier, regressor, density and masked model (see the module
    docstring).

    Parameters
    ----------
    backbone : str or Backbone
        Kind for :func:`~probkit.neural.build_backbone`, or a backbone module (copied).
    d_model, n_layers : int
    head : torch.nn.Module
        A head of :mod:`probkit.neural.heads`.
    n_features : int, optional
        Real-valued inputs of this size (linear encoder).
    vocab_size : int, optional
        Integer tokens (embedding encoder); exactly one of ``n_features``/``vocab_size``.
    backbone_kwargs : dict, optional
    autoregressive : bool, default=False
    pooling : {"mean", "last", "max"} or None, default="mean"
        Pooled mode; None gives one output per position.
    bidirectional : bool, default=False
        Pooled and per-position modes.
    mask_embedding : bool, default=False
        Learn a ``[MASK]`` input vector (see :meth:`forward`).

    Examples
    --------
    >>> from probkit.neural.heads import CategoricalHead
    >>> net = SequenceNet("gru", 8, 1, CategoricalHead(8, 3), n_features=2)
    >>> net(torch.randn(4, 5, 2), torch.tensor([5, 3, 1, 2])).shape
    torch.Size([4, 3])
    """

    def __init__(self, backbone, d_model, n_layers, head, *, n_features=None, vocab_size=None,
                 backbone_kwargs=None, autoregressive=False, pooling="mean", bidirectional=False,
                 mask_embedding=False):
        super().__init__()
        if (n_features is None) == (vocab_size is None):
            raise ValueError("give exactly one of n_features and vocab_size")
        kw = dict(backbone_kwargs or {})
        if bidirectional and isinstance(backbone, str) and backbone.lower() == "transformer":
            kw.setdefault("causal", False)
        self.autoregressive = bool(autoregressive)
        self.pooling = pooling
        self.tokens = vocab_size is not None
        self.encoder = nn.Embedding(vocab_size, d_model) if self.tokens else nn.Linear(n_features, d_model)
        if self.tokens:
            nn.init.normal_(self.encoder.weight, std=d_model ** -0.5)
        self.backbone = build_checked_backbone(backbone, d_model, n_layers, kw)
        self.reverse = None
        if autoregressive:
            if not self.backbone.causal:
                raise ValueError(f"an autoregressive model needs a causal backbone; the {backbone!r} backbone built "
                                 f"with backbone_kwargs={backbone_kwargs!r} is bidirectional")
            self.start = nn.Parameter(torch.randn(d_model) * d_model ** -0.5)
        elif pooling is not None and pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS} or None, got {pooling!r}")
        elif bidirectional and self.backbone.causal:
            self.reverse = build_checked_backbone(backbone, d_model, n_layers, kw)
        # registered only when asked for, so that the other modes' state dicts are unchanged
        self.mask_embedding = nn.Parameter(torch.randn(d_model) * d_model ** -0.5) if mask_embedding else None
        self.head = head

    @property
    def causal(self):
        """Whether outputs depend only on the past (True for autoregressive models)."""
        return self.backbone.causal and self.reverse is None

    def forward(self, x, lengths=None, masked=None):
        """Head outputs: ``(B, P)`` pooled, or ``(B, L, P)`` autoregressive and per position.

        ``masked`` (bool ``(B, L)``, needs ``mask_embedding=True``) replaces those inputs'
        encodings by the learned ``[MASK]`` vector.
        """
        e = self.encoder(x)
        if masked is not None:
            if self.mask_embedding is None:
                raise ValueError("masked= needs a SequenceNet built with mask_embedding=True")
            e = torch.where(masked.unsqueeze(-1), self.mask_embedding.to(e.dtype), e)
        if self.autoregressive:
            start = self.start.to(e.dtype).expand(e.shape[0], 1, e.shape[-1])
            e = torch.cat([start, e[:, :-1]], dim=1)
            return self.head(self.backbone._run(e, lengths))
        if self.pooling is None:
            h = self.backbone._run(e, lengths)
            if self.reverse is not None:
                h = h + reverse_within(self.reverse._run(reverse_within(e, lengths), lengths), lengths)
            return self.head(h)
        pooled = pool(self.backbone._run(e, lengths), lengths, self.pooling)
        if self.reverse is not None:
            pooled = pooled + pool(self.reverse._run(reverse_within(e, lengths), lengths), lengths, self.pooling)
        return self.head(pooled)

    # ------------------------------------------------------------------ recurrent form
    def init_state(self, batch_size, device=None, dtype=None):
        """Backbone state before the first position (autoregressive models)."""
        return self.backbone.init_state(batch_size, device=device, dtype=dtype)

    def prime(self, prompt=None, batch_size=None):
        """Read the start vector and a prompt ``(B, P[, D])`` in one parallel pass.

        Returns the head output for the position after the prompt and the backbone state
        there, as the same number of :meth:`step` calls would.
        """
        if prompt is None:
            e = self.start.expand(batch_size, 1, self.start.shape[0])
        else:
            e = self.encoder(prompt)
            e = torch.cat([self.start.to(e.dtype).expand(e.shape[0], 1, e.shape[-1]), e], dim=1)
        y, state = self.backbone._run(e, None, return_state=True)
        return self.head(y[:, -1]), state

    def step(self, x_prev, state, batch_size=None):
        """Head output for the next position given the previous symbol ``x_prev``.

        ``x_prev=None`` feeds the start vector (first position; give ``batch_size``).
        Returns ``(out, state)`` with ``out`` of shape ``(B, P)``.
        """
        if x_prev is None:
            p = self.start
            e = p.expand(batch_size, p.shape[0])
        else:
            e = self.encoder(x_prev)
        y, state = self.backbone.step(e, state)
        return self.head(y), state


def hmm_log_likelihood_sum(log_startprob, log_transmat, log_emission, lengths):
    """Exact ``sum_b log p(x_b)`` of padded sequences, its gradient from the posteriors instead of the recursion.

    The value is the sum of :func:`~probkit.inference.hmm_log_likelihood`'s, and so is
    the gradient, by Fisher's identity: the derivative of the marginal with respect to
    the log-terms of the joint is their posterior expectation,

    .. math::

       \\nabla \\log p(x) = \\sum_k \\gamma_1(k) \\nabla \\log \\pi_k
         + \\sum_{t, k} \\gamma_t(k) \\nabla \\log p(x_t | z_t = k, x_{<t})
         + \\sum_{t \\ge 2} \\sum_{i, j} \\xi_t(i, j) \\nabla \\log A_t(i, j),

    with ``gamma`` and ``xi`` the single and pairwise state posteriors. These come from a
    forward-backward pass run without autograd (on the CPU the compiled kernels of
    :func:`probkit.inference.forward_backward`, or
    :func:`~probkit.inference.time_varying.forward_backward_time_varying` for per-step
    transitions; elsewhere the batched torch recursions), and the result is
    ``log p(x) + S - S.detach()``, ``S`` the posterior-weighted sum of the log-terms:
    back-propagation runs through whatever produced the log-terms only, never through
    the ``T`` steps of the recursion.

    Parameters
    ----------
    log_startprob : Tensor (K,) or (B, K)
    log_transmat : Tensor (K, K), (B, K, K) or (B, T, K, K)
        As in :func:`~probkit.inference.hmm_log_likelihood`; ``[b, t]`` of the
        time-varying form is the matrix into step ``t``.
    log_emission : Tensor (B, T, K)
    lengths : LongTensor (B,)
        Real lengths, in ``[1, T]`` (trusted: not checked again).

    Returns
    -------
    Tensor ()
        ``sum_b log p(x_b)`` in the dtype of ``log_emission`` (-inf if a sequence is
        impossible; such a sequence contributes no gradient).

    Examples
    --------
    >>> from probkit.inference import hmm_log_likelihood
    >>> g = torch.Generator().manual_seed(0)
    >>> log_trans = torch.log_softmax(torch.randn(2, 5, 3, 3, generator=g, dtype=torch.float64), -1)
    >>> log_emis = torch.randn(2, 5, 3, generator=g, dtype=torch.float64).requires_grad_()
    >>> log_start, lengths = torch.log(torch.full((3,), 1 / 3, dtype=torch.float64)), torch.tensor([5, 3])
    >>> fast = hmm_log_likelihood_sum(log_start, log_trans, log_emis, lengths)
    >>> (grad_fast,) = torch.autograd.grad(fast, log_emis)
    >>> slow = hmm_log_likelihood(log_start, log_trans, log_emis, lengths).sum()
    >>> (grad_slow,) = torch.autograd.grad(slow, log_emis)
    >>> torch.allclose(fast, slow), torch.allclose(grad_fast, grad_slow)
    (True, True)
    """
    with torch.no_grad():
        terms = tuple(t.detach() for t in (log_startprob, log_transmat, log_emission))
        on_cpu = all(t.device.type == "cpu" for t in terms) and terms[0].ndim == 1 and terms[1].ndim != 3
        log_likelihood, weights = (_posterior_weights_numpy if on_cpu else _posterior_weights_torch)(*terms, lengths)
    surrogate = sum((w.to(t.dtype) * torch.where(w > 0, t, 0.0)).sum()
                    for w, t in zip(weights, (log_startprob, log_transmat, log_emission)))
    return log_likelihood.to(log_emission.dtype).sum() + (surrogate - surrogate.detach())


def _posterior_weights_numpy(ls, lt, le, lengths):
    """Log-likelihoods (B,) and the posterior weights of ``ls`` (K,), ``lt`` and ``le``, by the float64 CPU kernels."""
    from probkit.inference import forward_backward
    from probkit.inference.time_varying import forward_backward_time_varying

    mask = torch.arange(le.shape[1]).unsqueeze(0) < lengths.cpu().unsqueeze(1)
    n = lengths.cpu().numpy()
    rows = le[mask].double().numpy()
    padded = lambda values, tail: torch.zeros(mask.shape + tail, dtype=torch.float64).index_put_(  # noqa: E731
        (mask,), torch.from_numpy(values))
    if lt.ndim == 2:
        res = forward_backward(ls.double().numpy(), lt.double().numpy(), rows, n, backend="auto")
        w_trans, w_start = torch.from_numpy(res.expected_transitions), torch.from_numpy(res.expected_start)
    else:
        res = forward_backward_time_varying(ls.double().numpy(), lt[mask].double().numpy(), rows, n)
        w_trans = padded(res.pairwise, lt.shape[2:])
        w_start = torch.from_numpy(res.posteriors[np.concatenate([[0], np.cumsum(n)[:-1]])].sum(0))
    return torch.from_numpy(np.asarray(res.log_likelihood)), (w_start, w_trans, padded(res.posteriors, le.shape[2:]))


def _posterior_weights_torch(ls, lt, le, lengths):
    """:func:`_posterior_weights_numpy` by the batched torch recursions (any device, at least float32)."""
    if le.dtype in (torch.float16, torch.bfloat16):
        ls, lt, le = ls.float(), lt.float(), le.float()
    result = forward_backward_padded(ls, lt, le, lengths)
    gamma = result.posteriors
    w_start = gamma[:, 0] if ls.ndim == 2 else gamma[:, 0].sum(0)
    if lt.ndim == 4:
        w_trans = torch.zeros_like(lt)
        if le.shape[1] > 1:
            # Given z_t the chain runs backwards on the filtered terms alone:
            # xi_t(i, j) = gamma_t(j) f_{t-1}(i) A_t(i, j) / sum_l f_{t-1}(l) A_t(l, j).
            _, filtered = forward_filter_padded(ls, lt, le, lengths)
            joint = filtered[:, :-1, :, None] * lt[:, 1:].exp()
            predicted = joint.sum(-2, keepdim=True)
            w_trans[:, 1:] = torch.where(predicted > 0, joint / torch.where(predicted > 0, predicted, 1.0), 0.0) \
                * gamma[:, 1:, None, :]
    else:
        w_trans = result.expected_transitions if lt.ndim == 3 else result.expected_transitions.sum(0)
    return result.log_likelihood, (w_start, w_trans, gamma)


class NeuralHMMNet(nn.Module):
    """The torch module of :class:`~probkit.neural.NeuralHMM`: encoder, causal backbone, emission and transition heads.

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
    it by gradient ascent with the shared loop :func:`probkit.neural.train_module`; the
    gradient is the exact one of :func:`hmm_log_likelihood_sum`, assembled from the
    forward-backward posteriors, so back-propagation never runs through the ``T`` steps
    of the recursion (:func:`probkit.inference.hmm_log_likelihood`, differentiable
    through the recursion, gives the same value and gradient). Posteriors, Viterbi paths and scores
    are the classical algorithms on the same per-step quantities; sampling draws
    ``z_t``, then ``x_t``, and feeds ``x_t`` to the backbone's recurrent ``step()``.

    Every head is "static + zero-initialised linear map of the features", so a fresh
    model is a classical HMM, and ``init="hmm"`` starts from a fitted
    :class:`~probkit.GaussianHMM` / :class:`~probkit.PoissonHMM` /
    :class:`~probkit.CategoricalHMM`: the network learns the corrections.

    Parameters
    ----------
    emission : {"gaussian", "poisson", "categorical"}
    n_components : int
        Hidden states ``K``.
    n_outputs : int
        Features per step (Gaussian, Poisson) or alphabet size (categorical).
    backbone : str or Backbone
        Kind for :func:`~probkit.neural.build_backbone`, or a backbone module (copied); must be causal.
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

    def set_static(self, startprob, transmat, **emission):
        """Set the static parameters: initial and transition probabilities, and the emission head's.

        ``emission`` goes to :meth:`~probkit.neural.emissions.EmissionHead.set_static`
        (e.g. ``loc`` and ``log_scale`` of Gaussian emissions, in the network's units).
        """
        self.emission.set_static(**emission)
        with torch.no_grad():
            self.start_logits.copy_(torch.as_tensor(startprob).clamp_min(1e-10).log())
            self.trans_logits.copy_(torch.as_tensor(transmat).clamp_min(1e-10).log())

    def features(self, x_in, lengths=None):
        """Backbone features ``h`` (B, T, d_model); ``h[:, t]`` reads ``x_in[:, :t]`` only."""
        e = self.encoder(x_in)
        start = self.start.to(e.dtype).expand(e.shape[0], 1, e.shape[-1])
        return self.backbone._run(torch.cat([start, e[:, :-1]], dim=1), lengths)

    def log_startprob(self):
        """Log initial-state probabilities (K,)."""
        return torch.log_softmax(self.start_logits, -1)

    def static_probabilities(self):
        """Initial-state probabilities and the static transition matrix, float64 numpy arrays."""
        with torch.no_grad():
            return (self.log_startprob().double().exp().cpu().numpy(),
                    torch.softmax(self.trans_logits.double(), -1).cpu().numpy())

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

    # ------------------------------------------------------------------ exact inference (float64)
    def _log_terms(self, x_in, x_obs, lengths):
        return tuple(t.double() for t in self(x_in, x_obs, lengths))

    def log_likelihood(self, x_in, x_obs, lengths):
        """``log p(x_{1:T})`` of each sequence (B,), by the forward algorithm."""
        return hmm_log_likelihood(*self._log_terms(x_in, x_obs, lengths), lengths)

    def predictive_log_prob(self, x_in, x_obs, lengths):
        """``log p(x_t | x_{<t})`` (B, T): the filtered state pushed one step, mixed over the emissions."""
        log_start, log_trans, log_emis = self._log_terms(x_in, x_obs, lengths)
        _, filtered = forward_filter_padded(log_start, log_trans, log_emis, lengths)
        pred = torch.empty_like(filtered)
        pred[:, 0] = log_start.exp()
        if log_emis.shape[1] > 1:
            trans = log_trans.exp()
            if trans.ndim == 2:
                pred[:, 1:] = filtered[:, :-1] @ trans
            else:
                pred[:, 1:] = (filtered[:, :-1].unsqueeze(-2) @ trans[:, 1:]).squeeze(-2)
        return torch.logsumexp(torch.log(pred) + log_emis, -1)

    def posteriors(self, x_in, x_obs, lengths):
        """``p(z_t = k | x_{1:T})`` (B, T, K), by forward-backward."""
        return forward_backward_padded(*self._log_terms(x_in, x_obs, lengths), lengths).posteriors

    def viterbi(self, x_in, x_obs, lengths):
        """The most likely state paths (B, T) and their ``log p(x, z*)`` (B,)."""
        result = viterbi_padded(*self._log_terms(x_in, x_obs, lengths), lengths)
        return result.log_prob, result.paths

    def sample(self, n_steps, n_sequences, generator=None, to_input=None):
        """Draw ``n_sequences`` paths of ``n_steps``, running the backbone one ``step()`` at a time.

        At each step the features give the transition row of the current state (or the
        start distribution) and the emission parameters; the drawn observation is fed
        back through the encoder (after ``to_input``, e.g. a standardisation). An exact
        draw from the model.

        Returns
        -------
        x : Tensor of shape (n_sequences, n_steps, ...)
            Observations in the emission's units.
        z : Tensor of int64, shape (n_sequences, n_steps)
        """
        p = next(self.parameters())
        rows = torch.arange(n_sequences, device=p.device)
        state = self.backbone.init_state(n_sequences, device=p.device, dtype=p.dtype)
        e = self.start.expand(n_sequences, -1)
        xs, zs, z = [], [], None
        for t in range(n_steps):
            h, state = self.backbone.step(e, state)
            if t == 0:
                logits = self.log_startprob().expand(n_sequences, -1)
            else:
                log_trans = self.log_transitions(h)
                logits = log_trans[z] if log_trans.ndim == 2 else log_trans[rows, z]
            z = torch.multinomial(logits.exp(), 1, generator=generator).squeeze(-1)
            x = self.emission.sample(self.emission.select(self.emission(h), z), generator)
            xs.append(x)
            zs.append(z)
            if t + 1 < n_steps:
                e = self.encoder(x if to_input is None else to_input(x))
        return torch.stack(xs, 1), torch.stack(zs, 1)


_MIN_SCALE = 1e-3


def _mlp(n_in, hidden, n_out, zero_last=True):
    last = nn.Linear(hidden, n_out)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), last)


def _softplus_inv(y):
    return math.log(math.expm1(y))


def _where_state(keep, new, old):
    """Per-row choice between two recurrent states (``keep`` (B,) bool: take ``new``)."""
    if isinstance(new, torch.Tensor):
        shape = (-1,) + (1,) * (new.dim() - 1)
        return torch.where(keep.reshape(shape), new, old)
    return type(new)(_where_state(keep, n, o) for n, o in zip(new, old))


class DSSMNet(nn.Module):
    """The torch module of :class:`~probkit.neural.DeepStateSpaceModel`: model, guide, and Pyro's ELBO as ``forward``.

    **The model.** Continuous latent states ``z_t`` (``latent_dim``) with a neural transition
    and emission,

    .. math::

       p(z_t \\mid z_{t-1}, g_t) = \\mathcal N\\big(A z_{t-1} + b + f(z_{t-1}, g_t),\\;
           \\operatorname{diag} \\sigma(z_{t-1}, g_t)^2\\big), \\qquad
       p(x_t \\mid z_t) = \\mathcal N\\big(C z_t + d + e(z_t),\\; \\operatorname{diag} \\rho(z_t)^2\\big)

    (``z_0 = 0``, so ``p(z_1)`` is learned too; ``f``, ``e`` are MLPs whose output layers
    start at zero, so a fresh model is linear-Gaussian; Poisson emissions use
    ``log rate = C z_t + d + e(z_t)``). Without a ``backbone`` the transition is first
    order (``g_t`` absent): the deep Markov model. With one, ``g_t`` are the features of a
    causal backbone run over the latent path ``z_{<t}`` (a learned start vector first), so
    the latent dynamics may have long memory; the state of the model is then the pair
    (``z_t``, backbone state), still a state-space model.

    **The guide.** :math:`q(z_{1:T} \\mid x_{1:T}) = \\prod_t q(z_t \\mid z_{t-1}, a_t)` with
    ``a_t`` a summary of ``x_{t:T}``: the ``guide_backbone`` (any causal kind) run over the
    reversed sequence, so its output at ``t`` has read ``x_T, ..., x_t``. A combiner MLP
    maps ``(z_{t-1}, a_t)`` to the mean and scale of a diagonal Gaussian. Paths are drawn
    one step at a time and reparametrised.

    **Training and bounds.** The model and the guide are Pyro programs (one sample site for
    the whole latent path, with masks for ragged batches); the loss is Pyro's ELBO estimator
    (:func:`probkit.vi.make_elbo`: ``Trace_ELBO`` or ``TraceMeanField_ELBO``) on each
    mini-batch, minimised with the shared loop :func:`probkit.neural.train_module` (AdamW,
    clipping, schedule, early stopping on the validation ELBO). KL annealing multiplies
    ``log p(z) - log q(z)`` by a factor rising linearly to 1 over the first
    ``kl_annealing`` share of the steps (validation always uses the full ELBO). For
    ``K`` paths from the guide with log-weights ``w_k = log p(x, z_k) - log q(z_k | x)``,
    the ELBO estimate is ``mean_k w_k`` and the importance-weighted bound (IWAE) is
    ``log mean_k exp(w_k)``: both lower-bound ``log p(x)``, and from the same paths the IWAE
    bound is never below the ELBO estimate.

    Parameters
    ----------
    n_features : int
        Observation size ``D``.
    latent_dim : int
        Latent size.
    emission : {"gaussian", "poisson"}
    backbone : str or None
        Causal backbone over the latent path (None: first-order transition).
    guide_backbone : str
        Backbone run backwards over the observations in the guide.
    d_model, n_layers : int
        Size of both backbones.
    hidden_dim : int
        Width of the transition, emission and combiner MLPs.
    backbone_kwargs, guide_backbone_kwargs : dict, optional
    elbo : {"Trace_ELBO", "TraceMeanField_ELBO"}
    n_particles : int
        Guide samples per ELBO estimate in training.

    Examples
    --------
    >>> import torch
    >>> net = DSSMNet(2, 3, guide_backbone="gru", d_model=8, n_layers=1, hidden_dim=8)
    >>> x = torch.randn(4, 6, 2)
    >>> lengths = torch.tensor([6, 5, 2, 1])
    >>> w = net.log_weights(x, x, lengths, n_particles=5)     # log p(x, z) - log q(z | x)
    >>> w.shape
    torch.Size([5, 4])
    >>> loss = net(x, x, lengths)                             # Pyro's negative ELBO (a tensor)
    >>> loss.requires_grad
    True
    """

    def __init__(self, n_features, latent_dim, *, emission="gaussian", backbone=None, guide_backbone="gru",
                 d_model=32, n_layers=1, hidden_dim=32, backbone_kwargs=None, guide_backbone_kwargs=None,
                 elbo="Trace_ELBO", n_particles=1):
        super().__init__()
        self.n_features, self.latent_dim, self.emission = int(n_features), int(latent_dim), emission
        self.elbo, self.n_particles = elbo, int(n_particles)
        dz, d = self.latent_dim, d_model
        # generative model
        self.backbone = None
        ctx = 0
        if backbone is not None:
            self.backbone = build_checked_backbone(backbone, d_model, n_layers, dict(backbone_kwargs or {}))
            if not self.backbone.causal:
                raise ValueError(f"the latent backbone must be causal; {backbone!r} with backbone_kwargs="
                                 f"{backbone_kwargs!r} is bidirectional")
            self.z_encoder = nn.Linear(dz, d)
            self.z_start = nn.Parameter(torch.randn(d) * d ** -0.5)
            ctx = d
        self.trans_lin = nn.Linear(dz, dz)
        nn.init.eye_(self.trans_lin.weight)
        nn.init.zeros_(self.trans_lin.bias)
        self.trans_mlp = _mlp(dz + ctx, hidden_dim, dz)
        self.trans_scale = nn.Linear(dz + ctx, dz)
        nn.init.zeros_(self.trans_scale.weight)
        nn.init.constant_(self.trans_scale.bias, _softplus_inv(0.5))
        self.emit_lin = nn.Linear(dz, self.n_features)
        self.emit_mlp = _mlp(dz, hidden_dim, self.n_features)
        if emission == "gaussian":
            self.emit_scale = nn.Linear(dz, self.n_features)
            nn.init.zeros_(self.emit_scale.weight)
            nn.init.constant_(self.emit_scale.bias, _softplus_inv(0.5))
        # guide
        self.x_encoder = nn.Linear(self.n_features, d)
        self.guide_backbone = build_checked_backbone(guide_backbone, d_model, n_layers,
                                                     dict(guide_backbone_kwargs or {}))
        self.combiner = _mlp(dz + d, hidden_dim, 2 * dz, zero_last=False)

    # ------------------------------------------------------------------ generative model
    def prior_features(self, z, lengths=None):
        """Backbone features ``g`` (..., T, d) of the latent path (``g_t`` reads ``z_{<t}``), or None."""
        if self.backbone is None:
            return None
        lead = z.shape[:-2]
        zf = z.reshape(-1, *z.shape[-2:])
        e = self.z_encoder(zf)
        start = self.z_start.to(e.dtype).expand(e.shape[0], 1, e.shape[-1])
        lens = None if lengths is None else lengths.repeat(zf.shape[0] // lengths.shape[0])
        g = self.backbone._run(torch.cat([start, e[:, :-1]], 1), lens)
        return g.reshape(*lead, *g.shape[-2:])

    def transition(self, z_prev, g=None):
        """Mean and scale of ``p(z_t | z_{t-1}, g_t)``."""
        inp = z_prev if g is None else torch.cat([z_prev, g], -1)
        loc = self.trans_lin(z_prev) + self.trans_mlp(inp)
        return loc, F.softplus(self.trans_scale(inp)) + _MIN_SCALE

    def emission_params(self, z):
        """``(loc, scale)`` (Gaussian) or ``(rate,)`` (Poisson) of ``p(x_t | z_t)``."""
        out = self.emit_lin(z) + self.emit_mlp(z)
        if self.emission == "gaussian":
            return out, F.softplus(self.emit_scale(z)) + _MIN_SCALE
        return (torch.exp(out.clamp(-20.0, 20.0)),)

    def emission_log_prob(self, z, x_obs, mask):
        """``sum_t log p(x_t | z_t)`` over the valid steps: (..., B)."""
        params = self.emission_params(z)
        if self.emission == "gaussian":
            lp = Normal(loc=params[0], scale=params[1])._log_prob(x_obs)
        else:
            lp = Poisson(rate=params[0])._log_prob(x_obs)
        return (lp.sum(-1) * mask).sum(-1)

    @staticmethod
    def _shift(z):
        return torch.cat([torch.zeros_like(z[..., :1, :]), z[..., :-1, :]], -2)

    def prior_log_prob(self, z, mask, lengths=None):
        """``sum_t log p(z_t | z_{<t})`` over the valid steps, for paths ``z`` (..., B, T, latent_dim)."""
        loc, scale = self.transition(self._shift(z), self.prior_features(z, lengths))
        lp = Normal(loc=loc, scale=scale)._log_prob(z).sum(-1)
        return (lp * mask).sum(-1)

    # ------------------------------------------------------------------ guide
    def summary(self, x_in, lengths):
        """``a_t`` (B, T, d): the guide backbone's reading of ``x_T, ..., x_t``."""
        e = reverse_within(self.x_encoder(x_in), lengths)
        return reverse_within(self.guide_backbone._run(e, lengths), lengths)

    def guide_step(self, z_prev, a_t):
        """Mean and scale of ``q(z_t | z_{t-1}, a_t)``."""
        out = self.combiner(torch.cat([z_prev, a_t.expand(*z_prev.shape[:-1], a_t.shape[-1])], -1))
        loc, raw = out.chunk(2, -1)
        return loc, F.softplus(raw) + _MIN_SCALE

    def guide_rsample(self, a, n_particles=1, generator=None, mean_path=False):
        """Reparametrised paths ``(n_particles, B, T, latent_dim)`` from the guide, one step at a time.

        ``mean_path=True`` propagates the means instead of sampling (deterministic).
        """
        b, t_max = a.shape[0], a.shape[1]
        z = a.new_zeros(n_particles, b, self.latent_dim)
        out = []
        for t in range(t_max):
            loc, scale = self.guide_step(z, a[:, t])
            if mean_path:
                z = loc
            else:
                eps = torch.randn(loc.shape, dtype=loc.dtype, device=loc.device, generator=generator)
                z = loc + scale * eps
            out.append(z)
        return torch.stack(out, -2)

    def guide_log_prob(self, z, a, mask):
        """``sum_t log q(z_t | z_{t-1}, a_t)`` over the valid steps (..., B)."""
        loc, scale = self.guide_step(self._shift(z), a)
        lp = Normal(loc=loc, scale=scale)._log_prob(z).sum(-1)
        return (lp * mask).sum(-1)

    # ------------------------------------------------------------------ bounds
    def log_weights(self, x_in, x_obs, lengths, n_particles=1, generator=None):
        """``log p(x, z_k) - log q(z_k | x)`` for ``n_particles`` guide paths: (n_particles, B)."""
        mask = (torch.arange(x_in.shape[1], device=x_in.device)[None, :] < lengths[:, None]).to(x_obs.dtype)
        a = self.summary(x_in, lengths)
        z = self.guide_rsample(a, n_particles, generator)
        return (self.prior_log_prob(z, mask, lengths) + self.emission_log_prob(z, x_obs, mask)
                - self.guide_log_prob(z, a, mask))

    # ------------------------------------------------------------------ Pyro programs
    def model(self, x_in, x_obs, lengths, anneal=1.0):
        """The generative model as a Pyro program (observations ``x_obs``)."""
        import pyro
        from pyro import poutine

        from ._pyro_paths import LatentPath, Observations

        mask = (torch.arange(x_obs.shape[1], device=x_obs.device)[None, :] < lengths[:, None]).to(x_obs.dtype)
        with pyro.plate("sequences", x_obs.shape[0]):
            with poutine.scale(scale=anneal):
                z = pyro.sample("z", LatentPath(self, mask, lengths))
            pyro.sample("x", Observations(self, z, mask), obs=x_obs)

    def guide(self, x_in, x_obs, lengths, anneal=1.0):
        """The amortised guide as a Pyro program."""
        import pyro
        from pyro import poutine

        from ._pyro_paths import GuidePath

        mask = (torch.arange(x_in.shape[1], device=x_in.device)[None, :] < lengths[:, None]).to(x_obs.dtype)
        a = self.summary(x_in, lengths)
        with pyro.plate("sequences", x_in.shape[0]):
            with poutine.scale(scale=anneal):
                pyro.sample("z", GuidePath(self, a, mask))

    def forward(self, x_in, x_obs, lengths, anneal=1.0):
        """Pyro's negative ELBO of the batch (summed over sequences), differentiable."""
        from probkit.vi import make_elbo

        elbo = make_elbo(self.elbo, num_particles=self.n_particles, max_plate_nesting=1)
        return elbo.differentiable_loss(self.model, self.guide, x_in, x_obs, lengths, anneal)

    # ------------------------------------------------------------------ generation
    def emit(self, z, generator=None):
        """Draw ``x_t ~ p(x_t | z_t)`` (model units)."""
        params = self.emission_params(z)
        if self.emission == "gaussian":
            loc, scale = params
            return loc + scale * torch.randn(loc.shape, dtype=loc.dtype, device=loc.device, generator=generator)
        return torch.poisson(params[0], generator=generator)

    def _draw_transition(self, z, g, generator):
        loc, scale = self.transition(z, g)
        return loc + scale * torch.randn(loc.shape, dtype=loc.dtype, device=loc.device, generator=generator)

    def roll(self, z, state, n_steps, generator=None):
        """Continue latent paths from ``z`` (R, latent_dim) and backbone ``state`` for ``n_steps``.

        Returns the latent steps, the drawn observations and the emission means, each
        ``(R, n_steps, ...)``.
        """
        zs, xs, means = [], [], []
        for _ in range(n_steps):
            g = None
            if self.backbone is not None:
                g, state = self.backbone.step(self.z_encoder(z), state)
            z = self._draw_transition(z, g, generator)
            zs.append(z)
            xs.append(self.emit(z, generator))
            means.append(self.emission_params(z)[0])
        return torch.stack(zs, 1), torch.stack(xs, 1), torch.stack(means, 1)

    def sample(self, n_steps, n_sequences, generator=None):
        """Draw ``(x, z)`` paths ``(n_sequences, n_steps, ...)`` from the model (latent path first)."""
        p = next(self.parameters())
        z0 = torch.zeros(n_sequences, self.latent_dim, dtype=p.dtype, device=p.device)
        if self.backbone is None:
            zs, xs, _ = self.roll(z0, None, n_steps, generator)
            return xs, zs
        state = self.backbone.init_state(n_sequences, device=p.device, dtype=p.dtype)
        # the first latent step reads the start vector, not an encoded z_0
        g, state = self.backbone.step(self.z_start.to(p.dtype).expand(n_sequences, -1), state)
        z1 = self._draw_transition(z0, g, generator)
        x1 = self.emit(z1, generator)
        if n_steps == 1:
            return x1[:, None], z1[:, None]
        zs, xs, _ = self.roll(z1, state, n_steps - 1, generator)
        return torch.cat([x1[:, None], xs], 1), torch.cat([z1[:, None], zs], 1)

    def forecast(self, x_in, lengths, n_steps, n_particles, generator=None):
        """Continue each sequence: guide paths through the data, then the model forward.

        Returns emission means ``(B, n_steps, D)`` averaged over the ``n_particles``
        paths, and the drawn observations ``(n_particles, B, n_steps, D)`` (model units).
        """
        k, b, n = n_particles, x_in.shape[0], x_in.shape[1]
        z = self.guide_rsample(self.summary(x_in, lengths), k, generator)        # (k, b, n, dz)
        z_last = z[:, torch.arange(b, device=z.device), lengths - 1].reshape(k * b, -1)
        state = None
        if self.backbone is not None:
            # the state after reading z_{<T} of each sequence; the roll's first step feeds z_T
            state = self.backbone.init_state(k * b, device=z.device, dtype=z.dtype)
            lens_rep = lengths.repeat(k)
            zr = z.reshape(k * b, n, -1)
            e = self.z_start.to(z.dtype).expand(k * b, -1)
            for t in range(n):
                _, new = self.backbone.step(e, state)
                state = _where_state(t < lens_rep, new, state)
                e = self.z_encoder(zr[:, t])
        _, xs, means = self.roll(z_last, state, n_steps, generator)
        return means.reshape(k, b, n_steps, -1).mean(0), xs.reshape(k, b, n_steps, -1)
