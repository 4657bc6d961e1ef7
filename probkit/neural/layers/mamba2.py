"""Mamba-2 layer (state space duality) and the weight mapping from ``transformers``' Mamba2.

One layer is ``x + dropout(mixer(norm(x)))`` with ``norm`` an :class:`RMSNorm` and ``mixer``
the Mamba-2 block (Dao & Gu, 2024), ``E = expand * d_model`` inner channels split into
``nheads = E / headdim`` heads, ``N = d_state``, ``G = ngroups``::

    z, xBC, dt = split(in_proj(h))                 # (E, E + 2 G N, nheads) per position
    xBC        = silu(causal_depthwise_conv(xBC))  # width d_conv, over x, B and C together
    x, B, C    = split(xBC)                        # (E, G N, G N)
    y          = ssd(x, dt, A, B, C, D, z, dt_bias, softplus)   # per head, times silu(z)
    out        = out_proj(grouped_rms_norm(y))     # RMS over each of the G channel groups

with ``A = -exp(A_log)`` one scalar per head.  Initialisation as in ``mamba_ssm``: ``A``
uniform in ``A_init_range`` per head, ``D = 1``, ``dt_bias`` the inverse softplus of a
log-uniform step in ``[dt_min, dt_max]`` (floored at ``dt_init_floor``), conv weights and
bias uniform in ``+-1/sqrt(d_conv)``, projections torch's default.

Parameters per layer (``d = d_model``, ``H = nheads``, without projection biases)::

    d (2 E + 2 G N + H) + (E + 2 G N)(d_conv + 1) + 3 H + E + E d + d

i.e. ``117,516`` for ``d = 128`` with the defaults (E = 256, N = 64, G = 1, headdim 64,
H = 4, d_conv = 4).

The parameter names follow the block's equations; :func:`load_hf_mamba2_block_state` and
:func:`load_hf_mamba2_model_state` copy the weights of ``transformers``' ``Mamba2Block`` /
``Mamba2Model`` (whose names are those of ``mamba_ssm`` checkpoints) into a layer or a
backbone, and :func:`hf_mamba2_layer_options` turns a ``Mamba2Config`` into the matching
:class:`Mamba2Layer` options.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from probkit.utils.validation import check_int

from ..ops import causal_conv1d, causal_conv1d_update, ssd, ssd_state_update
from ._docs import LAYER_DOCS
from .base import (RMSNorm, SequenceLayer, check_dropout, inverse_softplus,
                   log_uniform_)

__all__ = ["Mamba2Layer", "hf_mamba2_layer_options", "load_hf_mamba2_block_state",
           "load_hf_mamba2_model_state"]


class _GroupRMSNorm(nn.Module):
    """RMS normalisation over each of ``groups`` equal slices of the last dimension, times a
    learned per-channel scale (the output norm of the Mamba-2 block)."""

    def __init__(self, dim, groups, eps):
        super().__init__()
        self.groups = int(groups)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y):
        shape = y.shape
        yg = y.reshape(*shape[:-1], self.groups, shape[-1] // self.groups)
        yg = yg * torch.rsqrt(yg.pow(2).mean(-1, keepdim=True) + self.eps)
        return yg.reshape(shape) * self.weight

    def extra_repr(self):
        return f"{self.weight.shape[0]}, groups={self.groups}, eps={self.eps}"


@LAYER_DOCS.fill
class Mamba2Layer(SequenceLayer):
    r"""Pre-norm residual Mamba-2 block (multi-head SSD with a short causal convolution).

    Parameters
    ----------
    %(d_model)s
    %(ssm_sizes)s
    headdim : int, optional
        Channels per head; must divide ``E``.  Default ``gcd(64, E)`` (64 whenever ``E`` is a
        multiple of 64).
    ngroups : int, default 1
        Number of B/C groups (each shared by ``nheads / ngroups`` heads; must divide
        ``nheads``); also the number of groups of the output RMS norm.
    d_conv : int, default 4
        Width of the causal depthwise convolution.
    chunk_size : int, optional
        Chunk length of :func:`~probkit.neural.ops.ssd` (default: the op's).
    dt_min, dt_max : float, default 1e-3, 1e-1
        Range of the initial step sizes ``softplus(dt_bias)``.
    dt_init_floor : float, default 1e-4
        Lower bound of the initial step sizes.
    dt_limit : (float, float), optional
        Clamp of the step sizes (``ssd``'s ``dt_limit``); none by default.
    A_init_range : (float, float), default (1, 16)
        ``-A`` is initialised uniformly in this range, one value per head.
    bias : bool, default False
        Biases in ``in_proj`` and ``out_proj``.
    conv_bias : bool, default True
        Bias in the convolution.
    norm_eps : float, default 1e-5
        Epsilon of the input RMSNorm and of the grouped output norm.
    %(block_dropout)s
    %(ssd_backend)s

    Attributes
    ----------
    d_inner, nheads, headdim, conv_dim : int
        ``E``, the number of heads, channels per head and ``E + 2 G N`` (the convolved
        channels).

    Notes
    -----
    State: ``(conv_state, ssm_state)`` with ``conv_state`` of shape
    ``(batch, E + 2 G N, d_conv - 1)`` (the last inputs of the convolution, oldest first) and
    ``ssm_state`` of shape ``(batch, nheads, headdim, N)`` (float32 for 16-bit models).

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import Mamba2Layer
    >>> _ = torch.manual_seed(0)
    >>> layer = Mamba2Layer(16, d_state=8, headdim=8).double()
    >>> layer.nheads, layer.conv_dim
    (4, 48)
    >>> x = torch.randn(2, 5, 16, dtype=torch.float64)
    >>> y = layer(x)
    >>> state = layer.init_state(2)
    >>> steps = []
    >>> for t in range(5):
    ...     y_t, state = layer.step(x[:, t], state)
    ...     steps.append(y_t)
    >>> torch.allclose(torch.stack(steps, 1), y, rtol=1e-10, atol=1e-12)
    True
    """

    def __init__(self, d_model, d_state=64, expand=2, headdim=None, ngroups=1, d_conv=4,
                 chunk_size=None, dt_min=1e-3, dt_max=1e-1, dt_init_floor=1e-4, dt_limit=None,
                 A_init_range=(1.0, 16.0), bias=False, conv_bias=True, norm_eps=1e-5,
                 dropout=0.0, backend="auto"):
        super().__init__(check_int(d_model, "d_model"))
        self.d_state = check_int(d_state, "d_state")
        self.expand = check_int(expand, "expand")
        self.d_conv = check_int(d_conv, "d_conv")
        E = self.expand * self.d_model
        self.d_inner = E
        if headdim is None:
            headdim = math.gcd(64, E)
        self.headdim = check_int(headdim, "headdim")
        if E % self.headdim:
            raise ValueError(f"headdim={self.headdim} must divide the inner width "
                             f"expand * d_model = {E}")
        self.nheads = E // self.headdim
        self.ngroups = check_int(ngroups, "ngroups")
        if self.nheads % self.ngroups:
            raise ValueError(f"ngroups={self.ngroups} must divide the number of heads "
                             f"({self.nheads} = {E} / headdim {self.headdim})")
        self.chunk_size = None if chunk_size is None else check_int(chunk_size, "chunk_size")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if dt_limit is not None:
            lo, hi = (float(v) for v in dt_limit)
            if not lo <= hi:
                raise ValueError(f"dt_limit must satisfy low <= high, got {dt_limit!r}")
            dt_limit = (lo, hi)
        self.dt_limit = dt_limit
        a_lo, a_hi = (float(v) for v in A_init_range)
        if not 0 < a_lo <= a_hi:
            raise ValueError(f"A_init_range must satisfy 0 < low <= high, got {A_init_range!r}")
        self.norm_eps = float(norm_eps)
        self.backend = backend
        H, G, N = self.nheads, self.ngroups, self.d_state
        self.conv_dim = E + 2 * G * N
        self.norm = RMSNorm(self.d_model, eps=self.norm_eps)
        self.in_proj = nn.Linear(self.d_model, 2 * E + 2 * G * N + H, bias=bool(bias))
        bound = 1.0 / math.sqrt(self.d_conv)
        self.conv_weight = nn.Parameter(torch.empty(self.conv_dim, self.d_conv).uniform_(-bound, bound))
        self.conv_bias = (nn.Parameter(torch.empty(self.conv_dim).uniform_(-bound, bound))
                          if conv_bias else None)
        dt = log_uniform_(torch.empty(H), dt_min, dt_max).clamp_(min=float(dt_init_floor))
        self.dt_bias = nn.Parameter(inverse_softplus(dt))
        self.A_log = nn.Parameter(torch.log(torch.empty(H).uniform_(a_lo, a_hi)))
        self.D = nn.Parameter(torch.ones(H))
        # the SSM's dynamics parameters are not weight-decayed (as in mamba_ssm's training setup)
        for p in (self.A_log, self.D, self.dt_bias):
            p._no_weight_decay = True
        self.out_norm = _GroupRMSNorm(E, G, self.norm_eps)
        self.out_proj = nn.Linear(E, self.d_model, bias=bool(bias))
        self.dropout = nn.Dropout(check_dropout(dropout))

    def _split(self, zxbcdt):
        E, H = self.d_inner, self.nheads
        return torch.split(zxbcdt, [E, self.conv_dim, H], dim=-1)

    def _split_xbc(self, xbc):
        GN = self.ngroups * self.d_state
        return torch.split(xbc, [self.d_inner, GN, GN], dim=-1)

    def forward(self, x, lengths=None, return_state=False):
        b, L, _ = x.shape
        H, P, G, N = self.nheads, self.headdim, self.ngroups, self.d_state
        z, xbc, dt = self._split(self.in_proj(self.norm(x)))
        xbc, conv_state = causal_conv1d(xbc.transpose(1, 2), self.conv_weight, self.conv_bias,
                                        activation="silu", return_final_state=True)
        xs, B, C = self._split_xbc(xbc.transpose(1, 2))
        y, ssm_state = ssd(
            xs.reshape(b, L, H, P), dt, -torch.exp(self.A_log), B.reshape(b, L, G, N),
            C.reshape(b, L, G, N), D=self.D, z=z.reshape(b, L, H, P), dt_bias=self.dt_bias,
            dt_softplus=True, dt_limit=self.dt_limit, return_last_state=True,
            backend=self.backend, chunk_size=self.chunk_size)
        out = x + self.dropout(self.out_proj(self.out_norm(y.reshape(b, L, self.d_inner))))
        return (out, (conv_state, ssm_state)) if return_state else out

    def init_state(self, batch_size, device=None, dtype=None):
        """Zero states ``(conv_state (batch, conv_dim, d_conv - 1), ssm_state (batch, nheads, headdim, N))``."""
        device, dtype = self._device_dtype(device, dtype)
        return (torch.zeros(batch_size, self.conv_dim, self.d_conv - 1, device=device, dtype=dtype),
                torch.zeros(batch_size, self.nheads, self.headdim, self.d_state, device=device,
                            dtype=torch.promote_types(dtype, torch.float32)))

    def step(self, x_t, state):
        """One position: ``x_t`` ``(batch, d_model)`` -> ``(y_t, (conv_state, ssm_state))``."""
        conv_state, ssm_state = state
        b = x_t.shape[0]
        H, P, G, N = self.nheads, self.headdim, self.ngroups, self.d_state
        z, xbc, dt = self._split(self.in_proj(self.norm(x_t)))
        xbc, conv_state = causal_conv1d_update(xbc, conv_state, self.conv_weight, self.conv_bias,
                                               activation="silu")
        xs, B, C = self._split_xbc(xbc)
        y, ssm_state = ssd_state_update(
            ssm_state, xs.reshape(b, H, P), dt, -torch.exp(self.A_log), B.reshape(b, G, N),
            C.reshape(b, G, N), D=self.D, z=z.reshape(b, H, P), dt_bias=self.dt_bias,
            dt_softplus=True, dt_limit=self.dt_limit)
        out = x_t + self.dropout(self.out_proj(self.out_norm(y.reshape(b, self.d_inner))))
        return out, (conv_state, ssm_state)


# ---------------------------------------------------------------------- transformers' Mamba2


def _cfg(config, name):
    if isinstance(config, dict):
        if name not in config:
            raise ValueError(f"the Mamba2 config has no {name!r} entry")
        return config[name]
    if not hasattr(config, name):
        raise ValueError(f"the Mamba2 config has no attribute {name!r}")
    return getattr(config, name)


def hf_mamba2_layer_options(config):
    """:class:`Mamba2Layer` options equal to a ``transformers`` ``Mamba2Config``'s blocks.

    Parameters
    ----------
    config : transformers.Mamba2Config or dict
        Read: ``hidden_size, state_size, expand, head_dim, num_heads, n_groups,
        conv_kernel, use_bias, use_conv_bias, layer_norm_epsilon, time_step_limit,
        hidden_act``.  The config's ``chunk_size`` is not carried over: the chunk length
        changes only the speed of the scan, and each backend has its own default.

    Returns
    -------
    dict
        ``d_model`` and the keyword options of :class:`Mamba2Layer` (also accepted by
        ``build_backbone("mamba2", ...)`` after removing ``d_model``).

    Raises
    ------
    ValueError
        When the config is inconsistent (``num_heads * head_dim != expand * hidden_size``)
        or uses something the layer does not implement (an activation other than SiLU).

    Examples
    --------
    >>> from probkit.neural.layers import hf_mamba2_layer_options
    >>> cfg = dict(hidden_size=16, state_size=8, expand=2, head_dim=8, num_heads=4, n_groups=2,
    ...            conv_kernel=4, use_bias=False, use_conv_bias=True,
    ...            layer_norm_epsilon=1e-5, time_step_limit=(0.0, float("inf")), hidden_act="silu")
    >>> opts = hf_mamba2_layer_options(cfg)
    >>> opts["d_model"], opts["headdim"], opts["ngroups"], opts["dt_limit"]
    (16, 8, 2, None)
    """
    d_model = int(_cfg(config, "hidden_size"))
    expand = int(_cfg(config, "expand"))
    headdim = int(_cfg(config, "head_dim"))
    if int(_cfg(config, "num_heads")) * headdim != expand * d_model:
        raise ValueError(f"inconsistent Mamba2 config: num_heads * head_dim = "
                         f"{_cfg(config, 'num_heads')} * {headdim} must equal expand * hidden_size = "
                         f"{expand} * {d_model}")
    if _cfg(config, "hidden_act") != "silu":
        raise ValueError(f"Mamba2Layer uses a SiLU after the convolution; the config asks for "
                         f"{_cfg(config, 'hidden_act')!r}")
    lo, hi = (float(v) for v in _cfg(config, "time_step_limit"))
    # softplus steps are > 0, so the default limit (0, inf) clamps nothing
    dt_limit = None if (lo <= 0.0 and hi == math.inf) else (lo, hi)
    return dict(d_model=d_model, d_state=int(_cfg(config, "state_size")), expand=expand,
                headdim=headdim, ngroups=int(_cfg(config, "n_groups")),
                d_conv=int(_cfg(config, "conv_kernel")), dt_limit=dt_limit, bias=bool(_cfg(config, "use_bias")),
                conv_bias=bool(_cfg(config, "use_conv_bias")),
                norm_eps=float(_cfg(config, "layer_norm_epsilon")))


def _block_mapping(layer):
    """(source key suffix, target parameter, source -> target reshape) of one block."""
    pairs = [("norm.weight", layer.norm.weight, None),
             ("mixer.in_proj.weight", layer.in_proj.weight, None),
             ("mixer.conv1d.weight", layer.conv_weight, lambda w: w.reshape(w.shape[0], -1)),
             ("mixer.dt_bias", layer.dt_bias, None),
             ("mixer.A_log", layer.A_log, None),
             ("mixer.D", layer.D, None),
             ("mixer.norm.weight", layer.out_norm.weight, None),
             ("mixer.out_proj.weight", layer.out_proj.weight, None)]
    if layer.in_proj.bias is not None:
        pairs.append(("mixer.in_proj.bias", layer.in_proj.bias, None))
    if layer.out_proj.bias is not None:
        pairs.append(("mixer.out_proj.bias", layer.out_proj.bias, None))
    if layer.conv_bias is not None:
        pairs.append(("mixer.conv1d.bias", layer.conv_bias, None))
    return pairs


def _copy_checked(pairs, state_dict, prefix):
    with torch.no_grad():
        for key, target, reshape in pairs:
            full = prefix + key
            if full not in state_dict:
                raise ValueError(f"state_dict has no entry {full!r}")
            src = torch.as_tensor(state_dict[full])
            if reshape is not None and src.dim() >= 2:
                src = reshape(src)
            if tuple(src.shape) != tuple(target.shape):
                raise ValueError(f"{full!r} has shape {tuple(src.shape)}, the layer expects "
                                 f"{tuple(target.shape)}")
            target.copy_(src.to(dtype=target.dtype, device=target.device))


def _check_no_extra(state_dict, prefix, known):
    extra = sorted(k for k in state_dict if k.startswith(prefix) and k not in known)
    if extra:
        raise ValueError(f"state_dict entries the model has no place for: {extra[:5]}"
                         + (" ..." if len(extra) > 5 else ""))


def load_hf_mamba2_block_state(layer, state_dict, prefix=""):
    """Copy the weights of a ``transformers`` ``Mamba2Block`` into a :class:`Mamba2Layer`.

    The block's keys (those of ``mamba_ssm`` checkpoints too) map as ``norm.weight`` ->
    ``norm.weight``, ``mixer.in_proj.*`` -> ``in_proj.*``, ``mixer.conv1d.weight``
    ``(C, 1, W)`` -> ``conv_weight`` ``(C, W)``, ``mixer.conv1d.bias`` -> ``conv_bias``,
    ``mixer.dt_bias``, ``mixer.A_log``, ``mixer.D`` -> same names, ``mixer.norm.weight`` ->
    ``out_norm.weight``, ``mixer.out_proj.*`` -> ``out_proj.*``.

    Parameters
    ----------
    layer : Mamba2Layer
        Built with the block's sizes (see :func:`hf_mamba2_layer_options`).
    state_dict : mapping of str to Tensor
        E.g. ``block.state_dict()`` or a checkpoint's tensors.
    prefix : str, default ""
        Prefix of the block's keys in ``state_dict`` (e.g. ``"backbone.layers.0."``).

    Returns
    -------
    Mamba2Layer
        ``layer``, with its parameters overwritten in place.

    Raises
    ------
    ValueError
        A missing key, a shape that does not match, or a key under ``prefix`` that the
        layer has no place for.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural.layers import Mamba2Layer, load_hf_mamba2_block_state
    >>> _ = torch.manual_seed(0)
    >>> src, dst = Mamba2Layer(8, d_state=4, headdim=4), Mamba2Layer(8, d_state=4, headdim=4)
    >>> block = {"norm.weight": src.norm.weight, "mixer.in_proj.weight": src.in_proj.weight,
    ...          "mixer.conv1d.weight": src.conv_weight[:, None, :],
    ...          "mixer.conv1d.bias": src.conv_bias, "mixer.dt_bias": src.dt_bias,
    ...          "mixer.A_log": src.A_log, "mixer.D": src.D,
    ...          "mixer.norm.weight": src.out_norm.weight, "mixer.out_proj.weight": src.out_proj.weight}
    >>> x = torch.randn(1, 3, 8)
    >>> torch.equal(load_hf_mamba2_block_state(dst, block)(x), src(x))
    True
    """
    if not isinstance(layer, Mamba2Layer):
        raise TypeError(f"layer must be a Mamba2Layer, got {type(layer).__name__}")
    pairs = _block_mapping(layer)
    _copy_checked(pairs, state_dict, prefix)
    _check_no_extra(state_dict, prefix, {prefix + key for key, _, _ in pairs})
    return layer


def load_hf_mamba2_model_state(backbone, state_dict, prefix=""):
    """Copy the weights of a ``transformers`` ``Mamba2Model`` (without its embedding) into a
    ``"mamba2"`` :class:`~probkit.neural.backbones.Backbone`.

    Block ``i`` (keys ``layers.{i}.*``) goes to layer ``i`` as in
    :func:`load_hf_mamba2_block_state`, ``norm_f.weight`` to the backbone's final norm, whose
    epsilon is set to the blocks' (as in ``Mamba2Model``).  The embedding (``embeddings.*``
    or ``embedding.*``) is not part of a backbone and is skipped.

    Parameters
    ----------
    backbone : Backbone
        Of :class:`Mamba2Layer` layers, as many as the model's blocks, e.g.
        ``build_backbone("mamba2", opts.pop("d_model"), n_layers, **opts)`` with
        ``opts = hf_mamba2_layer_options(config)``.
    state_dict : mapping of str to Tensor
    prefix : str, default ""
        Prefix of the model's keys (``"backbone."`` for a ``Mamba2ForCausalLM``).

    Returns
    -------
    Backbone
        ``backbone``, with its parameters overwritten in place.

    Examples
    --------
    >>> import torch
    >>> from probkit.neural import build_backbone
    >>> from probkit.neural.layers import load_hf_mamba2_model_state
    >>> _ = torch.manual_seed(0)
    >>> src = build_backbone("mamba2", 8, 2, d_state=4, headdim=4)
    >>> src.norm.eps = 1e-5                                  # Mamba2Model's final norm
    >>> sd = {"norm_f.weight": src.norm.weight}
    >>> for i, layer in enumerate(src.layers):
    ...     sd.update({f"layers.{i}.norm.weight": layer.norm.weight,
    ...                f"layers.{i}.mixer.in_proj.weight": layer.in_proj.weight,
    ...                f"layers.{i}.mixer.conv1d.weight": layer.conv_weight[:, None, :],
    ...                f"layers.{i}.mixer.conv1d.bias": layer.conv_bias,
    ...                f"layers.{i}.mixer.dt_bias": layer.dt_bias,
    ...                f"layers.{i}.mixer.A_log": layer.A_log, f"layers.{i}.mixer.D": layer.D,
    ...                f"layers.{i}.mixer.norm.weight": layer.out_norm.weight,
    ...                f"layers.{i}.mixer.out_proj.weight": layer.out_proj.weight})
    >>> dst = load_hf_mamba2_model_state(build_backbone("mamba2", 8, 2, d_state=4, headdim=4), sd)
    >>> x = torch.randn(1, 3, 8)
    >>> torch.equal(dst(x), src(x)), dst.norm.eps
    (True, 1e-05)
    """
    layers = getattr(backbone, "layers", None)
    if layers is None or not all(isinstance(layer, Mamba2Layer) for layer in layers):
        raise TypeError("backbone must be a Backbone of Mamba2Layer layers "
                        "(build_backbone('mamba2', ...))")
    known = set()
    for i, layer in enumerate(layers):
        p = f"{prefix}layers.{i}."
        pairs = _block_mapping(layer)
        _copy_checked(pairs, state_dict, p)
        known |= {p + key for key, _, _ in pairs}
    _copy_checked([("norm_f.weight", backbone.norm.weight, None)], state_dict, prefix)
    known.add(prefix + "norm_f.weight")
    backbone.norm.eps = layers[0].norm.eps
    skipped = (prefix + "embeddings.", prefix + "embedding.")
    _check_no_extra({k: v for k, v in state_dict.items() if not k.startswith(skipped)}, prefix, known)
    return backbone
