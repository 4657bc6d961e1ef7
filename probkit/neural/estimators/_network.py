"""The torch module behind the sequence estimators: input encoder, backbone, head.

``SequenceNet`` runs in one of two modes:

* **pooled** (classifier, regressor): ``encoder -> backbone -> pool over time -> head``
  gives one output per sequence. With ``bidirectional=True`` a causal backbone gets a
  twin that reads every sequence backwards (within its length); the pooled summaries
  of both directions are added. The transformer instead drops its causal mask.
* **autoregressive** (density): the input at position ``t`` is the encoding of
  ``x_{t-1}`` (a learned start vector at ``t = 0``), so the head output at ``t`` is the
  predictive distribution ``p(x_t | x_{<t})``; :meth:`SequenceNet.step` runs the same
  computation one position at a time through the backbone's recurrent ``step``.
* **per position** (masked model, ``pooling=None``): one head output per position from
  features of the whole sequence (a causal backbone gets the reversed twin as above, its
  features added position by position). With ``mask_embedding=True`` the inputs flagged
  in ``forward(..., masked=)`` are replaced by a learned vector (BERT's ``[MASK]``).
"""

from __future__ import annotations

import torch
from torch import nn

from probkit.neural.backbones import KINDS, build_backbone

__all__ = ["SequenceNet", "pool", "reverse_within"]

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
    """``build_backbone`` with error messages that name the estimator's arguments."""
    if not isinstance(kind, str) or kind.lower() not in KINDS:
        raise ValueError(f"backbone={kind!r} is not a known backbone; choose one of {', '.join(KINDS)}")
    try:
        return build_backbone(kind, d_model, n_layers, **backbone_kwargs)
    except (TypeError, ValueError) as exc:
        extra = f", backbone_kwargs={backbone_kwargs!r}" if backbone_kwargs else ""
        raise ValueError(f"cannot build the {kind!r} backbone with d_model={d_model}, n_layers={n_layers}"
                         f"{extra}: {exc}") from None


class SequenceNet(nn.Module):
    """Encoder + backbone + head (see the module docstring).

    Parameters
    ----------
    backbone : str
        Kind for :func:`~probkit.neural.build_backbone`.
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
        Pooled mode; None gives one output per position (bidirectional features).
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
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        elif bidirectional and self.backbone.causal:
            self.reverse = build_checked_backbone(backbone, d_model, n_layers, kw)
        self.mask_embedding = nn.Parameter(torch.randn(d_model) * d_model ** -0.5) if mask_embedding else None
        self.head = head

    @property
    def causal(self):
        """Whether outputs depend only on the past (True for autoregressive models)."""
        return self.backbone.causal and self.reverse is None

    def forward(self, x, lengths=None, masked=None):
        """Head outputs: ``(B, P)`` pooled, or ``(B, L, P)`` autoregressive and per position.

        ``masked`` (bool ``(B, L)``, needs ``mask_embedding``) replaces those inputs' encodings
        by the learned ``[MASK]`` vector.
        """
        e = self.encoder(x)
        if masked is not None:
            e = torch.where(masked.unsqueeze(-1), self.mask_embedding.to(e.dtype), e)
        if self.autoregressive:
            start = self.start.to(e.dtype).expand(e.shape[0], 1, e.shape[-1])
            e = torch.cat([start, e[:, :-1]], dim=1)
            return self.head(self.backbone(e, lengths))
        if self.pooling is None:
            h = self.backbone(e, lengths)
            if self.reverse is not None:
                h = h + reverse_within(self.reverse(reverse_within(e, lengths), lengths), lengths)
            return self.head(h)
        pooled = pool(self.backbone(e, lengths), lengths, self.pooling)
        if self.reverse is not None:
            pooled = pooled + pool(self.reverse(reverse_within(e, lengths), lengths), lengths, self.pooling)
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
        y, state = self.backbone(e, return_state=True)
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
