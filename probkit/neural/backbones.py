"""Neural sequence backbones: stacks of pre-norm residual layers mapping (B, L, D) -> (B, L, D).

:func:`build_backbone` builds a :class:`Backbone` of one of the kinds in :data:`KINDS`:

=================  ==================================================  ====================
kind               layer (:mod:`probkit.neural.layers`)                parameters, d=128 x4
=================  ==================================================  ====================
``"mamba"``        :class:`~probkit.neural.layers.MambaLayer`           466,560
``"mamba2"``       :class:`~probkit.neural.layers.Mamba2Layer`          470,192
``"rwkv"``         :class:`~probkit.neural.layers.RWKV6Layer`           588,928
``"rwkv7"``        :class:`~probkit.neural.layers.RWKV7Layer`           604,672
``"mambaout"``     :class:`~probkit.neural.layers.GatedCNNLayer`        530,216
``"transformer"``  :class:`~probkit.neural.layers.TransformerLayer`     525,440 (rotary)
``"s4d"``          :class:`~probkit.neural.layers.S4DLayer`             526,976
``"s4"``           :class:`~probkit.neural.layers.S4Layer`              478,080 (HiPPO-LegS)
``"gru"``          :class:`~probkit.neural.layers.GRULayer`             462,976
``"lstm"``         :class:`~probkit.neural.layers.LSTMLayer`            595,072
``"hybrid"``       any of the above, following a ``pattern``           484,004 (``"MMMA"``)
=================  ==================================================  ====================

(``"gated_cnn"`` is an alias of ``"mambaout"``, ``"rwkv6"`` of ``"rwkv"`` and ``"attention"`` of
``"transformer"``.)  The default widths of every kind were
chosen so that a layer costs about ``7-9 d_model^2`` parameters (counts above: d_model 128,
4 layers, default options; each layer module documents its formula), so backbones of
different kinds with the same ``d_model`` and ``n_layers`` are comparable;
:func:`d_model_for_budget` picks, for any kind, the ``d_model`` whose count is closest to a
parameter budget, for comparisons at equal size.

Every backbone is ``final_norm(layer_n(... layer_1(x)))`` with an RMSNorm at the end; each
layer is a pre-norm residual block.  A backbone does not embed tokens or project outputs: it
maps an already embedded ``(batch, L, d_model)`` sequence to features of the same shape.

Hybrid stacks
-------------
``build_backbone("hybrid", d_model, n_layers, pattern=...)`` mixes layer kinds in one stack,
e.g. Jamba- or Zamba-style Mamba-2 stacks with an occasional attention layer.  ``pattern`` is a
string of the letters of :data:`PATTERN_LEGEND` (``A`` attention, ``M`` Mamba-2, ``S`` Mamba,
``R`` RWKV-7, ``W`` RWKV-6, ``C`` gated CNN, ``D`` S4D, ``H`` S4 (HiPPO-LegS), ``G`` GRU,
``L`` LSTM) or a sequence of kind names; it repeats to ``n_layers`` layers (``"MMMA"`` with 6 layers is ``"MMMAMM"``), and
``layer_kwargs={kind: options}`` sets each kind's options.  The result is a plain
:class:`Backbone`: one state tuple with an entry per layer, ``step()`` equal to ``forward``,
usable by every estimator through ``backbone="hybrid"`` and ``backbone_kwargs``.

State format
------------
The recurrent state of a causal backbone is a tuple with one entry per layer; each entry is
a tuple of tensors whose first dimension is the batch (see each layer's class for its
entries).  :func:`map_state` applies a function to every tensor of a state, e.g.
``map_state(lambda s: s[index], state)`` to select or reorder sequences of the batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import (GatedCNNLayer, GRULayer, LSTMLayer, Mamba2Layer, MambaLayer, RWKV6Layer, RWKV7Layer,
                     S4DLayer, S4Layer, SequenceLayer, TransformerLayer, make_norm)
from probkit.utils.validation import check_int, check_lengths

__all__ = [
    "KINDS",
    "PATTERN_LEGEND",
    "Backbone",
    "build_backbone",
    "default_hybrid_pattern",
    "count_parameters",
    "d_model_for_budget",
    "map_state",
]


class Backbone(nn.Module):
    r"""A stack of pre-norm residual sequence layers followed by a final RMSNorm.

    Usually built with :func:`build_backbone`.

    Parameters
    ----------
    layers : sequence of SequenceLayer
        The layers, all with the same ``d_model``.
    kind : str, default "custom"
        Name recorded in :attr:`kind` (the :func:`build_backbone` kind).
    norm : {"rms", "layer"}, default "rms"
        The final norm: RMSNorm, or LayerNorm with a bias (as in GPT-2 and RWKV checkpoints).
    norm_eps : float, default 1e-6
        Epsilon of the final norm.

    Attributes
    ----------
    d_model : int
        Width of inputs and outputs.
    n_layers : int
        Number of layers.
    causal : bool
        True when the output at position ``t`` depends only on inputs at positions ``<= t``
        (every kind except the bidirectional transformer); only causal backbones have a
        recurrent form (:meth:`init_state`, :meth:`step`).

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.backbones import Backbone
    >>> from probkit.neural.layers import GRULayer
    >>> _ = torch.manual_seed(0)
    >>> net = Backbone([GRULayer(8), GRULayer(8)], kind="gru")
    >>> net.d_model, net.n_layers, net.causal
    (8, 2, True)
    >>> net(torch.randn(3, 5, 8)).shape
    torch.Size([3, 5, 8])
    """

    def __init__(self, layers, kind="custom", norm="rms", norm_eps=1e-6):
        super().__init__()
        layers = list(layers)
        if not layers:
            raise ValueError("a Backbone needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, SequenceLayer):
                raise TypeError(f"layers[{i}] must be a SequenceLayer, got {type(layer).__name__}")
        widths = {layer.d_model for layer in layers}
        if len(widths) != 1:
            raise ValueError(f"all layers must have the same d_model, got {sorted(widths)}")
        self.kind = str(kind)
        self.d_model = widths.pop()
        self.layers = nn.ModuleList(layers)
        self.norm = make_norm(norm, self.d_model, norm_eps)

    @classmethod
    def from_pretrained(cls, path, **kw):
        """The backbone of a local Hugging Face checkpoint directory (no token embedding or
        output layer): ``load_pretrained(path, **kw).backbone``.

        See :func:`probkit.neural.load_pretrained` for the architectures read and the
        options.

        Examples
        --------
        >>> import tempfile, torch
        >>> import transformers
        >>> from probkit.neural import Backbone
        >>> cfg = transformers.GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=32,
        ...                               vocab_size=50, bos_token_id=0, eos_token_id=0)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
        ...     net = Backbone.from_pretrained(folder)
        >>> net.kind, net.n_layers, type(net.norm).__name__
        ('transformer', 2, 'LayerNorm')
        >>> net(torch.randn(1, 5, 16)).shape
        torch.Size([1, 5, 16])
        """
        from .pretrained import load_pretrained

        return load_pretrained(path, **kw).backbone

    @property
    def n_layers(self):
        return len(self.layers)

    @property
    def causal(self):
        return all(layer.causal for layer in self.layers)

    def extra_repr(self):
        return f"kind={self.kind!r}, d_model={self.d_model}, n_layers={self.n_layers}, causal={self.causal}"

    # ------------------------------------------------------------------ checks
    def _check_x(self, x, name, ndim):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.dtype.is_floating_point:
            raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
        shape = "(batch, L, d_model)" if ndim == 3 else "(batch, d_model)"
        if x.dim() != ndim:
            raise ValueError(f"{name} must be {ndim}-D {shape}, got shape {tuple(x.shape)}")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"{name} must have last dimension d_model={self.d_model}, "
                             f"got shape {tuple(x.shape)}")
        if ndim == 3 and x.shape[1] == 0:
            raise ValueError(f"{name} must have at least one position (L >= 1), "
                             f"got shape {tuple(x.shape)}")

    def _check_causal(self, what):
        if not self.causal:
            raise RuntimeError(
                f"{what} needs a causal backbone, but this {self.kind} backbone is "
                "bidirectional (its outputs depend on later positions); build it with "
                "causal=True for recurrent generation")

    # ------------------------------------------------------------------ API
    def forward(self, x, lengths=None, return_state=False):
        """Map ``x`` of shape ``(batch, L, d_model)`` to features of the same shape.

        Parameters
        ----------
        x : Tensor, shape (batch, L, d_model)
            Floating-point inputs.
        lengths : array-like or Tensor of int, shape (batch,), optional
            Numbers of valid (left-aligned) positions, in ``[0, L]`` (checked by
            :func:`probkit.utils.validation.check_lengths`); positions ``>= lengths[i]`` are
            padding.  Causal backbones need no mask (their outputs at valid positions never
            see later padding), so only the bidirectional transformer uses it, to mask
            padded keys.  Outputs at padded positions are unspecified.
        return_state : bool, default False
            Also return the recurrent state after the last position ``L - 1`` (causal
            backbones only), e.g. to process a prompt in parallel and continue with
            :meth:`step`.  For a right-padded batch this state has seen the padding too.

        Returns
        -------
        y : Tensor, shape (batch, L, d_model)
        state : tuple
            Only with ``return_state=True``; the format of :meth:`init_state`.

        Examples
        --------
        >>> import torch
        >>> from probkit.neural import build_backbone
        >>> _ = torch.manual_seed(0)
        >>> net = build_backbone("mamba", d_model=8, n_layers=2).double()
        >>> x = torch.randn(1, 7, 8, dtype=torch.float64)
        >>> _, state = net(x[:, :5], return_state=True)      # prompt in parallel
        >>> y5, state = net.step(x[:, 5], state)             # then one step at a time
        >>> torch.allclose(y5, net(x)[:, 5], atol=1e-12)
        True
        """
        self._check_x(x, "x", 3)
        if lengths is not None:
            lengths = torch.as_tensor(check_lengths(lengths, name="lengths", n_sequences=x.shape[0],
                                                    max_length=x.shape[1], allow_empty=True), device=x.device)
        return self._run(x, lengths, return_state)

    def _run(self, x, lengths=None, return_state=False):
        """:meth:`forward` without checking its arguments.

        For callers that pass checked inputs (the networks of the neural estimators):
        ``x`` of shape ``(batch, L, d_model)``, ``lengths`` None or an int64 tensor on
        ``x``'s device with entries in ``[1, L]``.
        """
        context = {}  # values shared down the stack during this call (RWKV-7's value residual)
        if not return_state:
            for layer in self.layers:
                x = layer(x, lengths, **_context_kw(layer, context))
            return self.norm(x)
        self._check_causal("forward(return_state=True)")
        state = []
        for layer in self.layers:
            x, s = layer(x, lengths, return_state=True, **_context_kw(layer, context))
            state.append(s)
        return self.norm(x), tuple(state)

    def init_state(self, batch_size, device=None, dtype=None):
        """State before the first position (causal backbones only).

        Parameters
        ----------
        batch_size : int
        device, dtype : optional
            Default to those of the parameters.

        Returns
        -------
        tuple
            One tuple of batch-first tensors per layer (see the layers' classes).
        """
        self._check_causal("init_state()")
        batch_size = check_int(batch_size, "batch_size")
        return tuple(layer.init_state(batch_size, device=device, dtype=dtype)
                     for layer in self.layers)

    def step(self, x_t, state):
        """Process one position recurrently (causal backbones only).

        Running ``step`` over positions ``0 .. L-1`` from :meth:`init_state` gives the
        outputs of :meth:`forward` on the whole sequence.

        Parameters
        ----------
        x_t : Tensor, shape (batch, d_model)
        state : tuple
            As returned by :meth:`init_state` or the previous ``step``.

        Returns
        -------
        y_t : Tensor, shape (batch, d_model)
        new_state : tuple
            Same structure as ``state`` (the input state is not modified).

        Examples
        --------
        >>> import torch
        >>> from probkit.neural import build_backbone
        >>> _ = torch.manual_seed(0)
        >>> net = build_backbone("lstm", d_model=8, n_layers=2).double()
        >>> x = torch.randn(2, 6, 8, dtype=torch.float64)
        >>> state, ys = net.init_state(2), []
        >>> for t in range(6):
        ...     y_t, state = net.step(x[:, t], state)
        ...     ys.append(y_t)
        >>> torch.allclose(torch.stack(ys, 1), net(x), rtol=1e-10, atol=1e-12)
        True
        """
        self._check_causal("step()")
        self._check_x(x_t, "x_t", 2)
        if not isinstance(state, (tuple, list)) or len(state) != self.n_layers:
            raise ValueError(f"state must be a tuple of {self.n_layers} per-layer states "
                             "(from init_state or step)")
        new_state = []
        context = {}
        for layer, s in zip(self.layers, state):
            x_t, s = layer.step(x_t, s, **_context_kw(layer, context))
            new_state.append(s)
        return self.norm(x_t), tuple(new_state)


def _context_kw(layer, context):
    """``{"context": context}`` for layers that read values of earlier layers of the stack."""
    return {"context": context} if getattr(layer, "uses_stack_context", False) else {}


# ---------------------------------------------------------------------- registry


def _mamba(d_model, n_layers, *, d_state=16, expand=2, d_conv=4, dt_rank=None, dt_min=1e-3,
           dt_max=1e-1, dropout=0.0, bias=False, conv_bias=True, norm_eps=1e-6, backend="auto"):
    return [MambaLayer(d_model, d_state=d_state, expand=expand, d_conv=d_conv, dt_rank=dt_rank,
                       dt_min=dt_min, dt_max=dt_max, dropout=dropout, bias=bias,
                       conv_bias=conv_bias, norm_eps=norm_eps, backend=backend)
            for _ in range(n_layers)]


def _mamba2(d_model, n_layers, *, d_state=64, expand=2, headdim=None, ngroups=1, d_conv=4,
            chunk_size=None, dt_min=1e-3, dt_max=1e-1, dt_init_floor=1e-4, dt_limit=None,
            A_init_range=(1.0, 16.0), bias=False, conv_bias=True, norm_eps=1e-5, dropout=0.0,
            backend="auto"):
    return [Mamba2Layer(d_model, d_state=d_state, expand=expand, headdim=headdim, ngroups=ngroups,
                        d_conv=d_conv, chunk_size=chunk_size, dt_min=dt_min, dt_max=dt_max,
                        dt_init_floor=dt_init_floor, dt_limit=dt_limit, A_init_range=A_init_range,
                        bias=bias, conv_bias=conv_bias, norm_eps=norm_eps, dropout=dropout,
                        backend=backend)
            for _ in range(n_layers)]


def _rwkv(d_model, n_layers, *, n_heads=None, ffn_ratio=1.0, mix_rank=None, decay_rank=None,
          dropout=0.0, backend="auto"):
    return [RWKV6Layer(d_model, n_heads=n_heads, ffn_ratio=ffn_ratio, mix_rank=mix_rank,
                       decay_rank=decay_rank, layer_id=i, n_layers=n_layers, dropout=dropout,
                       backend=backend)
            for i in range(n_layers)]


def _gated_cnn(d_model, n_layers, *, expansion=8 / 3, conv_ratio=1.0, conv_width=4, dropout=0.0):
    return [GatedCNNLayer(d_model, expansion=expansion, conv_ratio=conv_ratio,
                          conv_width=conv_width, dropout=dropout)
            for _ in range(n_layers)]


def _transformer(d_model, n_layers, *, n_heads=4, causal=True, positional="rotary",
                 max_len=1024, mlp_ratio=2.0, rotary_base=10000.0, dropout=0.0, bias=False,
                 norm="rms", norm_eps=1e-6, activation="gelu"):
    n_heads = check_int(n_heads, "n_heads")
    if d_model % n_heads:
        raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
    return [TransformerLayer(d_model, n_heads=n_heads, causal=causal, positional=positional,
                             max_len=max_len if positional == "learned" and i == 0 else None,
                             mlp_ratio=mlp_ratio, rotary_base=rotary_base, dropout=dropout,
                             bias=bias, norm=norm, norm_eps=norm_eps, activation=activation)
            for i in range(n_layers)]


def _s4d(d_model, n_layers, *, d_state=64, expand=2, init="lin", dt_min=1e-3, dt_max=1e-1,
         discretization="zoh", dropout=0.0):
    return [S4DLayer(d_model, d_state=d_state, expand=expand, init=init, dt_min=dt_min,
                     dt_max=dt_max, dropout=dropout, discretization=discretization)
            for _ in range(n_layers)]


def _s4(d_model, n_layers, *, d_state=64, expand=2, dt_min=1e-3, dt_max=1e-1, discretization="bilinear",
        dropout=0.0):
    return [S4Layer(d_model, d_state=d_state, expand=expand, dt_min=dt_min, dt_max=dt_max,
                    dropout=dropout, discretization=discretization)
            for _ in range(n_layers)]


def _gru(d_model, n_layers, *, hidden_size=None, dropout=0.0):
    return [GRULayer(d_model, hidden_size=hidden_size, dropout=dropout) for _ in range(n_layers)]


def _lstm(d_model, n_layers, *, hidden_size=None, dropout=0.0):
    return [LSTMLayer(d_model, hidden_size=hidden_size, dropout=dropout) for _ in range(n_layers)]


def _rwkv7(d_model, n_layers, *, n_heads=None, ffn_ratio=2.0, decay_rank=None, iclr_rank=None,
           value_rank=None, gate_rank=None, chunk_size=None, dropout=0.0, backend="auto"):
    return [RWKV7Layer(d_model, n_heads=n_heads, ffn_ratio=ffn_ratio, decay_rank=decay_rank,
                       iclr_rank=iclr_rank, value_rank=value_rank, gate_rank=gate_rank, layer_id=i,
                       n_layers=n_layers, dropout=dropout, backend=backend, chunk_size=chunk_size)
            for i in range(n_layers)]


#: kind -> function ``(d_model, n_layers, **kw) -> list of layers``
_FACTORIES = {
    "mamba": _mamba,
    "mamba2": _mamba2,
    "rwkv": _rwkv,
    "rwkv7": _rwkv7,
    "mambaout": _gated_cnn,
    "transformer": _transformer,
    "s4d": _s4d,
    "s4": _s4,
    "gru": _gru,
    "lstm": _lstm,
}
_ALIASES = {"gated_cnn": "mambaout", "rwkv6": "rwkv", "attention": "transformer"}

# ---------------------------------------------------------------------- hybrid stacks

#: letter of a hybrid ``pattern`` -> layer kind
PATTERN_LEGEND = {
    "A": "transformer",  # attention
    "M": "mamba2",
    "S": "mamba",  # Mamba-1 selective scan
    "R": "rwkv7",
    "W": "rwkv",  # RWKV-6 (WKV-6)
    "C": "mambaout",  # gated CNN
    "D": "s4d",
    "H": "s4",  # S4 with the dense HiPPO-LegS matrix
    "G": "gru",
    "L": "lstm",
}


def default_hybrid_pattern(n_layers):
    """Mamba-2 layers with one attention layer in every four, last of its group of four
    (the last layer when ``n_layers < 4``): ``"MMMA"``, ``"MMMAMM"``, ``"MA"``, ...

    Examples
    --------
    >>> default_hybrid_pattern(8), default_hybrid_pattern(2)
    ('MMMAMMMA', 'MA')
    """
    n_layers = check_int(n_layers, "n_layers")
    letters = ["A" if i % 4 == 3 else "M" for i in range(n_layers)]
    if n_layers < 4:
        letters[-1] = "A"
    return "".join(letters)


def _hybrid_kinds(pattern):
    """Canonical kinds of a pattern string (letters of PATTERN_LEGEND) or sequence of kind names."""
    if isinstance(pattern, str):
        letters = [ch for ch in pattern if not ch.isspace() and ch not in "-_|"]
        bad = sorted({ch for ch in letters if ch.upper() not in PATTERN_LEGEND})
        if bad or not letters:
            legend = ", ".join(f"{k}={v}" for k, v in PATTERN_LEGEND.items())
            raise ValueError(f"pattern {pattern!r} must be a non-empty string of the letters {legend}"
                             + (f"; unknown letters {bad}" if bad else ""))
        return [PATTERN_LEGEND[ch.upper()] for ch in letters]
    try:
        names = list(pattern)
    except TypeError:
        raise TypeError(f"pattern must be a str of layer letters or a sequence of kind names, "
                        f"got {type(pattern).__name__}") from None
    if not names:
        raise ValueError("pattern must name at least one layer")
    kinds = []
    for i, name in enumerate(names):
        if isinstance(name, str) and name.lower() == "hybrid":
            raise ValueError("a hybrid pattern cannot contain 'hybrid'")
        try:
            kinds.append(_canonical_kind(name))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"pattern[{i}]: {exc}") from None
    return kinds


def _hybrid(d_model, n_layers, *, pattern=None, layer_kwargs=None, dropout=0.0):
    kinds = _hybrid_kinds(default_hybrid_pattern(n_layers) if pattern is None else pattern)
    if len(kinds) > n_layers:
        raise ValueError(f"pattern {pattern!r} describes {len(kinds)} layers but n_layers={n_layers}; "
                         "n_layers must be at least the pattern's length (the pattern repeats)")
    order = [kinds[i % len(kinds)] for i in range(n_layers)]
    options = {}
    if layer_kwargs is not None:
        if not isinstance(layer_kwargs, dict):
            raise TypeError(f"layer_kwargs must be a dict kind -> options, got {type(layer_kwargs).__name__}")
        for key, kw in layer_kwargs.items():
            kind = _canonical_kind(key)
            if kind not in order:
                raise ValueError(f"layer_kwargs has options for {key!r}, which is not in the stack "
                                 f"({', '.join(sorted(set(order)))})")
            if not isinstance(kw, dict):
                raise TypeError(f"layer_kwargs[{key!r}] must be a dict of options, got {type(kw).__name__}")
            options[kind] = {**options.get(kind, {}), **kw}
    built = {}
    for kind in dict.fromkeys(order):  # each kind's layers from its own factory, in stack order
        kw = {"dropout": dropout, **options.get(kind, {})}
        try:
            built[kind] = iter(_FACTORIES[kind](d_model, order.count(kind), **kw))
        except TypeError as exc:
            raise TypeError(f"layer_kwargs[{kind!r}]: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"the {kind!r} layers of the hybrid stack: {exc}") from None
    return [next(built[kind]) for kind in order]


_FACTORIES["hybrid"] = _hybrid

#: names accepted by :func:`build_backbone` (aliases included)
KINDS = tuple(sorted(set(_FACTORIES) | set(_ALIASES)))


def _canonical_kind(kind):
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a str, one of {KINDS}, got {kind!r}")
    name = kind.lower()
    name = _ALIASES.get(name, name)
    if name not in _FACTORIES:
        raise ValueError(f"unknown backbone kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return name


def build_backbone(kind, d_model, n_layers, **kw):
    r"""Build a sequence backbone.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`: ``"mamba"``, ``"mamba2"``, ``"rwkv"`` (alias ``"rwkv6"``),
        ``"rwkv7"``, ``"mambaout"`` (alias ``"gated_cnn"``), ``"transformer"`` (alias
        ``"attention"``), ``"s4d"``, ``"s4"``, ``"gru"``, ``"lstm"``, or ``"hybrid"`` (several kinds).
    d_model : int
        Width of the inputs, outputs and residual stream.
    n_layers : int
        Number of layers.
    **kw
        Options of the kind's layer; every kind takes ``dropout`` (default 0, on each
        residual branch).  Unknown options raise ``TypeError``.

        * ``"mamba"``: ``d_state=16, expand=2, d_conv=4, dt_rank=ceil(d_model/16),
          dt_min=1e-3, dt_max=1e-1, bias=False, conv_bias=True, norm_eps=1e-6,
          backend="auto"`` (:class:`~.layers.MambaLayer`);
        * ``"mamba2"``: ``d_state=64, expand=2, headdim=gcd(64, expand*d_model), ngroups=1,
          d_conv=4, chunk_size, dt_min=1e-3, dt_max=1e-1, dt_init_floor=1e-4, dt_limit,
          A_init_range=(1, 16), bias=False, conv_bias=True, norm_eps=1e-5, backend="auto"``
          (:class:`~.layers.Mamba2Layer`);
        * ``"rwkv"``: ``n_heads`` (default ``d_model // 64``, or 1), ``ffn_ratio=1.0``,
          ``mix_rank``, ``decay_rank``, ``backend="auto"`` (:class:`~.layers.RWKV6Layer`);
        * ``"rwkv7"``: ``n_heads`` (default ``d_model // 64``, or 1), ``ffn_ratio=2.0``,
          ``decay_rank``, ``iclr_rank``, ``value_rank``, ``gate_rank``, ``chunk_size``,
          ``backend="auto"`` (:class:`~.layers.RWKV7Layer`; the later layers mix in the values
          of the first, RWKV-7's value residual);
        * ``"mambaout"``: ``expansion=8/3, conv_ratio=1.0, conv_width=4``
          (:class:`~.layers.GatedCNNLayer`);
        * ``"transformer"``: ``n_heads=4, causal=True, positional="rotary"`` (or
          ``"learned"``), ``max_len=1024`` (learned positions only), ``mlp_ratio=2.0,
          rotary_base=10000.0, bias=False, norm="rms"`` (or ``"layer"``), ``norm_eps=1e-6,
          activation="gelu"`` (or ``"gelu_tanh"``) (:class:`~.layers.TransformerLayer`);
        * ``"s4d"``: ``d_state=64, expand=2, init="lin"`` (or ``"inv"``), ``dt_min=1e-3,
          dt_max=1e-1``, ``discretization="zoh"`` (or ``"bilinear"``) (:class:`~.layers.S4DLayer`);
        * ``"s4"``: ``d_state=64, expand=2, dt_min=1e-3, dt_max=1e-1``,
          ``discretization="bilinear"`` (or ``"zoh"``) (:class:`~.layers.S4Layer`: dense
          HiPPO-LegS state matrix);
        * ``"gru"``, ``"lstm"``: ``hidden_size=d_model``;
        * ``"hybrid"``: ``pattern`` (default :func:`default_hybrid_pattern`: one attention
          layer in every four, the others Mamba-2), ``layer_kwargs={kind: options}``, ``dropout``
          (for every layer); see "Hybrid stacks" above.

        ``backend`` selects the :mod:`probkit.neural.ops` implementation (``"auto"``: Triton
        on CUDA, the chunked torch path otherwise and always for float64).

    Returns
    -------
    Backbone

    Raises
    ------
    ValueError
        Unknown ``kind`` (the message lists the known kinds), non-positive sizes, or sizes
        that do not fit together (e.g. ``n_heads`` not dividing ``d_model``).
    TypeError
        An option the kind does not take.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural import build_backbone
    >>> _ = torch.manual_seed(0)
    >>> net = build_backbone("gru", d_model=16, n_layers=2)
    >>> net(torch.randn(4, 10, 16)).shape
    torch.Size([4, 10, 16])
    >>> build_backbone("nope", 16, 2)
    Traceback (most recent call last):
    ...
    ValueError: unknown backbone kind 'nope'; known kinds: ...

    A hybrid stack, three Mamba-2 layers then one attention layer, repeated:

    >>> net = build_backbone("hybrid", 16, 8, pattern="MMMA",
    ...                      layer_kwargs={"mamba2": {"d_state": 8}, "attention": {"n_heads": 2}})
    >>> [type(layer).__name__ for layer in net.layers][:4]
    ['Mamba2Layer', 'Mamba2Layer', 'Mamba2Layer', 'TransformerLayer']
    >>> net(torch.randn(4, 10, 16)).shape
    torch.Size([4, 10, 16])
    """
    name = _canonical_kind(kind)
    d_model = check_int(d_model, "d_model")
    n_layers = check_int(n_layers, "n_layers")
    return Backbone(_FACTORIES[name](d_model, n_layers, **kw), kind=name)


def count_parameters(module, trainable_only=True):
    """Number of scalar parameters of ``module``.

    Parameters
    ----------
    module : torch.nn.Module
    trainable_only : bool, default True
        Count only parameters with ``requires_grad``.

    Returns
    -------
    int

    Examples
    --------
    >>> from torch import nn
    >>> from probkit.neural import count_parameters
    >>> count_parameters(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _meta_count(name, d_model, n_layers, kw):
    with torch.device("meta"):
        return count_parameters(Backbone(_FACTORIES[name](d_model, n_layers, **kw), kind=name))


def d_model_for_budget(kind, n_layers, budget, *, multiple_of=8, **kw):
    """The ``d_model`` whose backbone's parameter count is closest to ``budget``.

    Candidates are the multiples of ``multiple_of`` (and of ``n_heads`` when given); the
    modules are built on the ``meta`` device, so nothing is allocated.

    Parameters
    ----------
    kind : str
        As in :func:`build_backbone`.
    n_layers : int
    budget : int
        Target number of parameters (the backbone's alone: no embedding or output head).
    multiple_of : int, default 8
    **kw
        Other :func:`build_backbone` options (they change the count).

    Returns
    -------
    int

    Examples
    --------
    >>> from probkit.neural import build_backbone, count_parameters, d_model_for_budget
    >>> d = d_model_for_budget("gru", n_layers=2, budget=100_000)
    >>> d, count_parameters(build_backbone("gru", d, 2))
    (80, 90960)
    """
    name = _canonical_kind(kind)
    n_layers = check_int(n_layers, "n_layers")
    budget = check_int(budget, "budget")
    step_ = check_int(multiple_of, "multiple_of")
    if kw.get("n_heads") is not None:
        step_ = step_ * check_int(kw["n_heads"], "n_heads") // math.gcd(step_, kw["n_heads"])

    def count(m):
        return _meta_count(name, m * step_, n_layers, kw)

    # counts grow with d_model: double until over budget, then bisect
    lo, hi = 1, 1
    while count(hi) < budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(mid) < budget:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda m: (abs(count(m) - budget), m))
    return best * step_


def map_state(fn, state):
    """Apply ``fn`` to every tensor of a (nested tuple/list/dict) recurrent state.

    Parameters
    ----------
    fn : callable
        Tensor -> tensor, e.g. ``lambda s: s[index]`` to select or reorder sequences (every
        state tensor has the batch on dimension 0) or ``lambda s: s.detach()``.
    state : tuple, list, dict or Tensor

    Returns
    -------
    Same structure as ``state``.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural import build_backbone, map_state
    >>> net = build_backbone("lstm", d_model=4, n_layers=2)
    >>> state = net.init_state(3)
    >>> picked = map_state(lambda s: s[torch.tensor([2, 0])], state)
    >>> picked[1][0].shape
    torch.Size([2, 4])
    """
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, dict):
        return {key: map_state(fn, value) for key, value in state.items()}
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(fn, value) for value in state)
    raise TypeError(f"state must be made of tensors, tuples, lists and dicts, "
                    f"got {type(state).__name__}")
