"""Load local Hugging Face checkpoints (Mamba, Mamba-2, GPT-2, RWKV-4) into probkit's layers.

A checkpoint directory holds ``config.json`` and the weights (``model.safetensors``, a
sharded ``model.safetensors.index.json``, or the PyTorch ``pytorch_model.bin`` read with
``torch.load(weights_only=True)``), as written by ``transformers``' ``save_pretrained`` or
downloaded from the Hugging Face Hub.  :func:`load_pretrained` reads it without any network
access and returns a :class:`PretrainedLM`: token embedding, a probkit
:class:`~probkit.neural.backbones.Backbone` and the output layer.

=====================  ==================================================  ================
architecture           probkit layer                                       backbone kind
=====================  ==================================================  ================
``MambaForCausalLM``   :class:`~probkit.neural.layers.MambaLayer`           ``"mamba"``
``Mamba2ForCausalLM``  :class:`~probkit.neural.layers.Mamba2Layer`          ``"mamba2"``
``GPT2LMHeadModel``    :class:`~probkit.neural.layers.TransformerLayer`     ``"transformer"``
                       (learned positions, biases, LayerNorm, tanh GELU)
``RwkvForCausalLM``    :class:`~probkit.neural.layers.RWKV4Layer`           ``"rwkv4"``
=====================  ==================================================  ================

Every tensor of the checkpoint must find its place and every parameter must be found, with
the expected shape; anything else raises a ``ValueError`` naming the key.
"""

from __future__ import annotations

import json
import os
import re

import torch
from torch import nn

from .backbones import Backbone, build_backbone
from .layers import (MambaLayer, RWKV4Layer, TransformerLayer, hf_mamba2_layer_options,
                     load_hf_mamba2_model_state)

__all__ = ["ARCHITECTURES", "PretrainedLM", "load_pretrained"]


class PretrainedLM(nn.Module):
    r"""A causal language model made of a token embedding, a probkit backbone and an output layer.

    Usually returned by :func:`load_pretrained`.  ``logits = lm_head(backbone(embedding(ids)))``.

    Parameters
    ----------
    embedding : torch.nn.Embedding
        ``(vocab_size, d_model)`` token embedding.
    backbone : Backbone
        A causal :class:`~probkit.neural.backbones.Backbone` of width ``d_model``.
    lm_head : torch.nn.Linear
        ``d_model -> vocab_size`` output layer (its weight may be the embedding's, tied).
    architecture : str, default "custom"
        Name of the source architecture (e.g. ``"MambaForCausalLM"``).
    config : dict, optional
        The checkpoint's ``config.json``.
    tokenizer : tokenizers.Tokenizer, optional
        The checkpoint's tokenizer (``tokenizer.json``), when there is one.

    Attributes
    ----------
    vocab_size, d_model : int

    Examples
    --------
    >>> import torch
    >>> from probkit.neural import build_backbone
    >>> from probkit.neural.pretrained import PretrainedLM
    >>> _ = torch.manual_seed(0)
    >>> emb = torch.nn.Embedding(10, 8)
    >>> lm = PretrainedLM(emb, build_backbone("gru", 8, 1), torch.nn.Linear(8, 10, bias=False))
    >>> lm(torch.tensor([[1, 2, 3]])).shape
    torch.Size([1, 3, 10])
    >>> lm.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4).shape
    torch.Size([1, 7])
    """

    def __init__(self, embedding, backbone, lm_head, *, architecture="custom", config=None,
                 tokenizer=None):
        super().__init__()
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"embedding must be a torch.nn.Embedding, got {type(embedding).__name__}")
        if not isinstance(backbone, Backbone):
            raise TypeError(f"backbone must be a probkit Backbone, got {type(backbone).__name__}")
        if not isinstance(lm_head, nn.Linear):
            raise TypeError(f"lm_head must be a torch.nn.Linear, got {type(lm_head).__name__}")
        d = backbone.d_model
        if embedding.embedding_dim != d or lm_head.in_features != d:
            raise ValueError(f"embedding width {embedding.embedding_dim} and lm_head input "
                             f"{lm_head.in_features} must equal the backbone's d_model={d}")
        if lm_head.out_features != embedding.num_embeddings:
            raise ValueError(f"lm_head has {lm_head.out_features} outputs for a vocabulary of "
                             f"{embedding.num_embeddings} tokens")
        self.embedding = embedding
        self.backbone = backbone
        self.lm_head = lm_head
        self.architecture = str(architecture)
        self.config = dict(config or {})
        self.tokenizer = tokenizer

    @property
    def vocab_size(self):
        return self.embedding.num_embeddings

    @property
    def d_model(self):
        return self.backbone.d_model

    def extra_repr(self):
        return f"architecture={self.architecture!r}, vocab_size={self.vocab_size}"

    def _check_ids(self, ids, name, ndim):
        if not isinstance(ids, torch.Tensor):
            ids = torch.as_tensor(ids)
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
        if ids.dim() != ndim:
            shape = "(batch, L)" if ndim == 2 else "(batch,)"
            raise ValueError(f"{name} must be {ndim}-D {shape}, got shape {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"{name} must lie in [0, vocab_size={self.vocab_size}), got "
                             f"min {int(ids.min())} and max {int(ids.max())}")
        return ids.to(device=self.embedding.weight.device, dtype=torch.long)

    def forward(self, input_ids, return_state=False):
        """Next-token logits ``(batch, L, vocab_size)`` at every position of ``input_ids`` ``(batch, L)``.

        With ``return_state=True`` also the backbone state after the last position (to
        continue with :meth:`step`).
        """
        ids = self._check_ids(input_ids, "input_ids", 2)
        out = self.backbone(self.embedding(ids), return_state=return_state)
        if return_state:
            return self.lm_head(out[0]), out[1]
        return self.lm_head(out)

    def init_state(self, batch_size, device=None, dtype=None):
        """The backbone's state before the first token (see :meth:`Backbone.init_state`)."""
        return self.backbone.init_state(batch_size, device=device, dtype=dtype)

    def step(self, token_ids, state):
        """Logits ``(batch, vocab_size)`` after one more token per sequence, and the new state."""
        ids = self._check_ids(token_ids, "token_ids", 1)
        y, state = self.backbone.step(self.embedding(ids), state)
        return self.lm_head(y), state

    @torch.no_grad()
    def generate(self, input_ids, max_new_tokens, *, use_state=True):
        """Greedy continuation: append the most probable token ``max_new_tokens`` times.

        Parameters
        ----------
        input_ids : Tensor of shape (batch, P)
            Prompt token ids (``P >= 1``).
        max_new_tokens : int
        use_state : bool, default True
            Read the prompt in one parallel pass and continue with :meth:`step` (cost
            linear in the length for the recurrent backbones); False recomputes the whole
            forward pass for each new token.

        Returns
        -------
        Tensor of shape (batch, P + max_new_tokens)
        """
        ids = self._check_ids(input_ids, "input_ids", 2)
        n = int(max_new_tokens)
        if n < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens!r}")
        if ids.shape[1] == 0:
            raise ValueError("input_ids must hold at least one token per sequence")
        if n == 0:
            return ids
        if not use_state:
            for _ in range(n):
                ids = torch.cat([ids, self(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
            return ids
        logits, state = self(ids, return_state=True)
        token = logits[:, -1].argmax(-1)
        out = [ids, token[:, None]]
        for _ in range(n - 1):
            logits, state = self.step(token, state)
            token = logits.argmax(-1)
            out.append(token[:, None])
        return torch.cat(out, dim=1)


# ---------------------------------------------------------------------- reading a directory


def _decode_floats(value):
    """``transformers`` writes infinities in config.json as ``{"__float__": "Infinity"}``."""
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _decode_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_floats(v) for v in value]
    return value


def _read_config(path):
    file = os.path.join(path, "config.json")
    if not os.path.isfile(file):
        raise ValueError(f"path={path!r} has no config.json (a Hugging Face checkpoint "
                         "directory holds config.json and the weights)")
    with open(file, encoding="utf-8") as f:
        config = _decode_floats(json.load(f))
    if not isinstance(config, dict):
        raise ValueError(f"{file} must hold a JSON object")
    return config


def _read_tensors(path):
    """All tensors of the checkpoint's weight files, by name."""
    names = os.listdir(path)
    index = None
    for candidate in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if candidate in names:
            with open(os.path.join(path, candidate), encoding="utf-8") as f:
                index = json.load(f)
            files = sorted(set(index.get("weight_map", {}).values()))
            break
    else:
        files = [f for f in ("model.safetensors", "pytorch_model.bin") if f in names][:1]
    if not files:
        raise ValueError(f"path={path!r} has no weights: expected model.safetensors, "
                         "pytorch_model.bin or a sharded index of either")
    tensors = {}
    for name in files:
        file = os.path.join(path, name)
        if name.endswith(".safetensors"):
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise ImportError(f"reading {name} needs the safetensors package "
                                  "(pip install safetensors, or probkit[hf])") from None

            part = load_file(file, device="cpu")
        else:
            part = torch.load(file, map_location="cpu", weights_only=True)
        tensors.update(part)
    return tensors


def _read_tokenizer(path):
    file = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(file):
        return None
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    return Tokenizer.from_file(file)


class _Weights:
    """Checked copying of checkpoint tensors into parameters, keeping track of what was used."""

    def __init__(self, tensors, prefix, dtype, ignore=()):
        self.dtype = dtype
        self.tensors = dict(tensors)
        # checkpoints of the base model (e.g. GPT-2's own) store its keys without the prefix
        if prefix and not any(k.startswith(prefix) for k in self.tensors):
            self.tensors = {(k if k.startswith(("lm_head.", "head.")) else prefix + k): v
                            for k, v in self.tensors.items()}
        self.used = set()
        self.ignore = [re.compile(p) for p in ignore]

    def take(self, key, target, transform=None):
        if key not in self.tensors:
            raise ValueError(f"the checkpoint has no tensor {key!r}")
        src = self.tensors[key]
        if transform is not None:
            src = transform(src)
        if tuple(src.shape) != tuple(target.shape):
            raise ValueError(f"checkpoint tensor {key!r} has shape {tuple(src.shape)}, the "
                             f"model expects {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(src.to(dtype=target.dtype))
        self.used.add(key)

    def finish(self):
        extra = sorted(k for k in self.tensors
                       if k not in self.used and not any(p.fullmatch(k) for p in self.ignore))
        if extra:
            raise ValueError(f"checkpoint tensors the model has no place for: {extra[:5]}"
                             + (" ..." if len(extra) > 5 else ""))


def _get(config, key, arch):
    if key not in config:
        raise ValueError(f"the {arch} config.json has no {key!r} entry")
    return config[key]


# ---------------------------------------------------------------------- the architectures


def _mamba(config, weights, backend):
    arch = "MambaForCausalLM"
    d = int(_get(config, "hidden_size", arch))
    inner = int(_get(config, "intermediate_size", arch))
    if inner % d:
        raise ValueError(f"the inner width intermediate_size={inner} must be a multiple of "
                         f"hidden_size={d} (MambaLayer's expand)")
    if config.get("hidden_act", "silu") != "silu":
        raise ValueError(f"MambaLayer uses SiLU; the config asks for {config['hidden_act']!r}")
    eps = float(config.get("layer_norm_epsilon", 1e-5))
    layers = [MambaLayer(d, d_state=int(_get(config, "state_size", arch)), expand=inner // d,
                         d_conv=int(_get(config, "conv_kernel", arch)),
                         dt_rank=int(_get(config, "time_step_rank", arch)),
                         bias=bool(config.get("use_bias", False)),
                         conv_bias=bool(config.get("use_conv_bias", True)), norm_eps=eps,
                         backend=backend)
              for _ in range(int(_get(config, "num_hidden_layers", arch)))]
    backbone = Backbone(layers, kind="mamba", norm_eps=eps).to(weights.dtype)
    for i, layer in enumerate(layers):
        p = f"backbone.layers.{i}."
        weights.take(p + "norm.weight", layer.norm.weight)
        for src, name in [("in_proj", "in_proj"), ("x_proj", "x_proj"), ("dt_proj", "dt_proj"),
                          ("out_proj", "out_proj")]:
            mod = getattr(layer, name)
            weights.take(f"{p}mixer.{src}.weight", mod.weight)
            if mod.bias is not None:
                weights.take(f"{p}mixer.{src}.bias", mod.bias)
        weights.take(p + "mixer.conv1d.weight", layer.conv_weight, lambda w: w.reshape(w.shape[0], -1))
        if layer.conv_bias is not None:
            weights.take(p + "mixer.conv1d.bias", layer.conv_bias)
        weights.take(p + "mixer.A_log", layer.A_log)
        weights.take(p + "mixer.D", layer.D)
    weights.take("backbone.norm_f.weight", backbone.norm.weight)
    return backbone, "backbone.embeddings.weight", "lm_head.weight"


def _mamba2(config, weights, backend):
    opts = hf_mamba2_layer_options(config)
    d = opts.pop("d_model")
    backbone = build_backbone("mamba2", d, int(_get(config, "num_hidden_layers", "Mamba2ForCausalLM")),
                              backend=backend, **opts).to(weights.dtype)
    sub = {k: v for k, v in weights.tensors.items() if k.startswith("backbone.")}
    load_hf_mamba2_model_state(backbone, sub, prefix="backbone.")
    weights.used |= {k for k in sub if not k.startswith(("backbone.embeddings.", "backbone.embedding."))}
    emb = "backbone.embeddings.weight" if "backbone.embeddings.weight" in weights.tensors \
        else "backbone.embedding.weight"
    return backbone, emb, "lm_head.weight"


_GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}


def _gpt2(config, weights, backend):
    arch = "GPT2LMHeadModel"
    d = int(_get(config, "n_embd", arch))
    act = config.get("activation_function", "gelu_new")
    if act not in _GPT2_ACTIVATIONS:
        raise ValueError(f"activation_function={act!r} is not supported; TransformerLayer has "
                         f"{sorted(_GPT2_ACTIVATIONS)}")
    for key, want in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                      ("add_cross_attention", False)):
        if bool(config.get(key, want)) != want:
            raise ValueError(f"GPT-2 checkpoints with {key}={config[key]!r} are not supported")
    hidden = config.get("n_inner") or 4 * d
    eps = float(config.get("layer_norm_epsilon", 1e-5))
    n_layers = int(_get(config, "n_layer", arch))
    # (hidden + 0.5) / d: int(mlp_ratio * d) is exactly `hidden` despite float rounding
    layers = [TransformerLayer(d, n_heads=int(_get(config, "n_head", arch)), causal=True,
                               positional="learned",
                               max_len=int(_get(config, "n_positions", arch)) if i == 0 else None,
                               mlp_ratio=(hidden + 0.5) / d, bias=True, norm="layer",
                               norm_eps=eps, activation=_GPT2_ACTIVATIONS[act])
              for i in range(n_layers)]
    backbone = Backbone(layers, kind="transformer", norm="layer", norm_eps=eps).to(weights.dtype)

    def conv1d(w):  # transformers' Conv1D stores (in, out): y = x @ W + b
        return w.t()

    weights.take("transformer.wpe.weight", layers[0].position_table)
    for i, layer in enumerate(layers):
        p = f"transformer.h.{i}."
        for src, mod in [("ln_1", layer.norm1), ("ln_2", layer.norm2)]:
            weights.take(f"{p}{src}.weight", mod.weight)
            weights.take(f"{p}{src}.bias", mod.bias)
        for src, mod in [("attn.c_attn", layer.qkv), ("attn.c_proj", layer.out),
                         ("mlp.c_fc", layer.mlp_in), ("mlp.c_proj", layer.mlp_out)]:
            weights.take(f"{p}{src}.weight", mod.weight, conv1d)
            weights.take(f"{p}{src}.bias", mod.bias)
    weights.take("transformer.ln_f.weight", backbone.norm.weight)
    weights.take("transformer.ln_f.bias", backbone.norm.bias)
    return backbone, "transformer.wte.weight", "lm_head.weight"


def _rwkv4(config, weights, backend):
    arch = "RwkvForCausalLM"
    d = int(_get(config, "hidden_size", arch))
    att = config.get("attention_hidden_size") or d
    ffn = config.get("intermediate_size") or 4 * d
    eps = float(config.get("layer_norm_epsilon", 1e-5))
    n_layers = int(_get(config, "num_hidden_layers", arch))
    layers = [RWKV4Layer(d, attention_size=int(att), ffn_hidden=int(ffn), norm_eps=eps,
                         input_norm=(i == 0))
              for i in range(n_layers)]
    backbone = Backbone(layers, kind="rwkv4", norm="layer", norm_eps=eps).to(weights.dtype)

    def flat(w):  # time-mix vectors are stored (1, 1, d)
        return w.reshape(-1)

    for i, layer in enumerate(layers):
        p = f"rwkv.blocks.{i}."
        norms = [("ln1", layer.norm1), ("ln2", layer.norm2)]
        if layer.input_norm is not None:
            norms.insert(0, ("pre_ln", layer.input_norm))
        for src, mod in norms:
            weights.take(f"{p}{src}.weight", mod.weight)
            weights.take(f"{p}{src}.bias", mod.bias)
        a, f = p + "attention.", p + "feed_forward."
        for src, target in [("time_mix_key", layer.tmix_k), ("time_mix_value", layer.tmix_v),
                            ("time_mix_receptance", layer.tmix_r)]:
            weights.take(a + src, target, flat)
        weights.take(a + "time_decay", layer.time_decay)
        weights.take(a + "time_first", layer.time_first)
        for src, mod in [("key", layer.key), ("value", layer.value),
                         ("receptance", layer.receptance), ("output", layer.output)]:
            weights.take(f"{a}{src}.weight", mod.weight)
        for src, target in [("time_mix_key", layer.cmix_k), ("time_mix_receptance", layer.cmix_r)]:
            weights.take(f + src, target, flat)
        for src, mod in [("key", layer.ffn_key), ("value", layer.ffn_value),
                         ("receptance", layer.ffn_receptance)]:
            weights.take(f"{f}{src}.weight", mod.weight)
    weights.take("rwkv.ln_out.weight", backbone.norm.weight)
    weights.take("rwkv.ln_out.bias", backbone.norm.bias)
    return backbone, "rwkv.embeddings.weight", "head.weight"


#: architecture -> (model_type, base-model prefix, builder, tensors that are not weights)
_ARCHITECTURES = {
    "MambaForCausalLM": ("mamba", "backbone.", _mamba, ()),
    "Mamba2ForCausalLM": ("mamba2", "backbone.", _mamba2, ()),
    # old GPT-2 checkpoints store the causal-mask buffers of the attention
    "GPT2LMHeadModel": ("gpt2", "transformer.", _gpt2,
                        (r"transformer\.h\.\d+\.attn\.(bias|masked_bias)",)),
    "RwkvForCausalLM": ("rwkv", "rwkv.", _rwkv4, ()),
}

#: the ``architectures`` entries of config.json that :func:`load_pretrained` reads
ARCHITECTURES = tuple(_ARCHITECTURES)


def _architecture(config, path):
    names = config.get("architectures") or []
    for name in names:
        if name in _ARCHITECTURES:
            return name
    by_type = {v[0]: k for k, v in _ARCHITECTURES.items()}
    if not names and config.get("model_type") in by_type:
        return by_type[config["model_type"]]
    found = names or config.get("model_type")
    raise ValueError(f"the checkpoint in {path!r} is a {found!r}; load_pretrained reads "
                     f"{', '.join(ARCHITECTURES)}")


def load_pretrained(path, *, dtype=None, device=None, backend="auto"):
    r"""Load a local Hugging Face checkpoint directory into probkit's layers.

    Nothing is downloaded: ``path`` is a directory written by ``save_pretrained`` or
    fetched beforehand (see the user guide's section on checkpoints).

    Parameters
    ----------
    path : str or os.PathLike
        Directory with ``config.json`` and ``model.safetensors`` (or a sharded
        ``model.safetensors.index.json``, or ``pytorch_model.bin``).  Its
        ``architectures`` entry must be one of :data:`ARCHITECTURES`:
        ``MambaForCausalLM``, ``Mamba2ForCausalLM``, ``GPT2LMHeadModel`` or
        ``RwkvForCausalLM`` (RWKV-4).
    dtype : torch.dtype, optional
        Parameter dtype (default: torch's default dtype, float32).
    device : str or torch.device, optional
        Where to put the model (default CPU).
    backend : {"auto", "cpu", "reference", "triton"}, default "auto"
        Backend of the Mamba and Mamba-2 scans.

    Returns
    -------
    PretrainedLM
        In evaluation mode; ``.backbone`` is a :class:`~probkit.neural.backbones.Backbone`
        usable on its own (e.g. ``SequenceClassifier(backbone=lm.backbone, ...)``), and
        ``.tokenizer`` the directory's ``tokenizer.json`` read by the ``tokenizers``
        package (``None`` when either is missing).

    Raises
    ------
    ValueError
        No config or weights in ``path``, an architecture or option probkit does not
        implement, a missing tensor, a tensor of the wrong shape, or a tensor the model
        has no place for (the message names the key).

    Notes
    -----
    The output layer is tied to the embedding when the config says so
    (``tie_word_embeddings``, the default of Mamba and GPT-2).  RWKV checkpoints are read
    with their weights as trained; ``transformers`` halves the residual stream every
    ``rescale_every`` layers at inference, which the final LayerNorm undoes, so the
    logits agree up to that norm's epsilon.

    Examples
    --------
    Build a tiny random Mamba with ``transformers``, save it, load it, and compare:

    >>> import tempfile, torch
    >>> import transformers
    >>> from probkit.neural import load_pretrained
    >>> cfg = transformers.MambaConfig(hidden_size=16, state_size=4, num_hidden_layers=2,
    ...                                vocab_size=50)
    >>> _ = torch.manual_seed(0)
    >>> hf = transformers.MambaForCausalLM(cfg).eval()
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     hf.save_pretrained(folder)
    ...     lm = load_pretrained(folder)
    >>> lm.architecture, lm.backbone.kind, lm.backbone.n_layers
    ('MambaForCausalLM', 'mamba', 2)
    >>> ids = torch.tensor([[3, 1, 4, 1, 5, 9]])
    >>> with torch.no_grad():
    ...     torch.allclose(lm(ids), hf(ids).logits, atol=1e-5)
    True
    >>> lm.generate(ids, max_new_tokens=5).shape
    torch.Size([1, 11])

    A published model, fetched once with network access and loaded offline afterwards:

    >>> from huggingface_hub import snapshot_download                  # doctest: +SKIP
    >>> folder = snapshot_download("state-spaces/mamba-130m-hf")       # doctest: +SKIP
    >>> lm = load_pretrained(folder)                                   # doctest: +SKIP
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"path={path!r} is not a directory (load_pretrained reads a local "
                         "checkpoint directory; it never downloads)")
    config = _read_config(path)
    arch = _architecture(config, path)
    _, prefix, build, ignore = _ARCHITECTURES[arch]
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    weights = _Weights(_read_tensors(path), prefix, dtype, ignore)
    # the modules are built in `dtype`, so float64 checkpoints keep every digit
    backbone, emb_key, head_key = build(config, weights, backend)
    vocab = int(_get(config, "vocab_size", arch))
    embedding = nn.Embedding(vocab, backbone.d_model, dtype=dtype)
    weights.take(emb_key, embedding.weight)
    lm_head = nn.Linear(backbone.d_model, vocab, bias=False, dtype=dtype)
    tied = bool(config.get("tie_word_embeddings", True))
    if tied:
        lm_head.weight = embedding.weight
        if head_key in weights.tensors:  # PyTorch-format checkpoints store the tied copy too
            if not torch.equal(weights.tensors[head_key].to(embedding.weight.dtype),
                               embedding.weight.detach()):
                raise ValueError(f"checkpoint tensor {head_key!r} differs from the embedding it "
                                 "is tied to (tie_word_embeddings=True)")
            weights.used.add(head_key)
    else:
        weights.take(head_key, lm_head.weight)
    weights.finish()
    lm = PretrainedLM(embedding, backbone, lm_head, architecture=arch, config=config,
                      tokenizer=_read_tokenizer(path))
    return lm.to(device=device).eval()

