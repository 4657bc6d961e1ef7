"""Documentation shared by the neural estimators (see :class:`~probkit.utils._docstrings.DocFragments`).

Each docstring names a fragment on a line of its own; the entries of the parameter groups
show the documented signature's own defaults.
"""

from __future__ import annotations

from probkit.utils._docstrings import ROWS, DocFragments, parameters_returns

__all__ = ["NEURAL_DOCS"]

_TRAINING_ATTRS = """history_ : dict
    The :class:`~probkit.neural.TrainingHistory` of the fit as a dict: per-epoch
    ``train_loss`` (the training objective per unit of the loss: step or sequence),
    ``val_loss``, ``lr``, ``epoch_time``, and ``best_epoch``, ``n_steps``,
    ``stop_reason``.
n_iter_ : int
    Epochs run.
best_epoch_ : int or None
    Epoch whose weights were restored (None without early stopping)."""

_SEQUENCES = """X : list of arrays, array-like or tensor
    Sequences, in one of three forms: a list of arrays (one per sequence); rows of
    all sequences concatenated, with ``lengths``; or a padded array with
    ``valid_lengths``.
lengths : array-like of int, optional
    Concatenated rows: the length of each sequence, summing to the number of rows
    (hmmlearn's sense). None: the rows are one sequence.
valid_lengths : array-like of int, optional
    Padded array: the valid prefix of each row (the rest is ignored). None: every
    step is valid."""

_FITTED_ATTRS = """n_features_in_ : int
    Features per time step (1 for tokens).
module_ : SequenceNet
    The trained torch module (encoder, backbone, head).
""" + _TRAINING_ATTRS

_SEQUENCE_FORMS = """Sequences enter every method in one of the three forms of probkit's sequence contract
(:mod:`probkit.utils.sequences`), with the same meaning in every neural estimator:

* a list of arrays, one per sequence: ``(L_i, n_features)`` real values, or ``(L_i,)``
  integer tokens;
* concatenated rows with ``lengths=``: ``(n_samples, n_features)`` (``(n_samples,)``
  tokens), the lengths summing to ``n_samples``; without ``lengths`` the rows are **one**
  sequence;
* a padded array with ``valid_lengths=``: ``(N, L, n_features)`` (``(N, L)`` tokens),
  the valid prefix of each row (default: all ``L`` steps)."""



def _sequences_to(returns, *parameters):
    """A ``Parameters`` section on sequences (with further ``parameters``) and a ``Returns`` section."""
    return parameters_returns([_SEQUENCES, *parameters], returns)


def _bounds_returns(shape, x, more=""):
    """The ``Returns`` section of ``bounds``: the two bounds of each row or sequence ``x``
    (and the ``more`` entries of the dict)."""
    return f"""Returns
-------
dict
    ``"elbo"``: ``mean_k w_k`` and ``"iwae"``: ``log mean_k exp(w_k)``, arrays of
    shape ({shape},) in nats (data units), with
    ``w_k = log p({x}, z_k) - log q(z_k | {x})``{more}. Both are lower
    bounds of ``log p({x})`` (in expectation), and ``iwae >= elbo``."""


NEURAL_DOCS = DocFragments(
    parameters={
        "model_params": [
            """backbone : str or Backbone, default=$backbone
    Backbone kind of :func:`probkit.neural.build_backbone`: "mamba", "rwkv",
    "mambaout" (gated CNN), "transformer", "s4d", "gru" or "lstm" (the kinds of
    :data:`probkit.neural.KINDS`), or a :class:`~probkit.neural.backbones.Backbone`
    module to start from (e.g. a loaded checkpoint's,
    :func:`probkit.neural.load_pretrained`): ``d_model`` must be its width, its own
    layers are used (``n_layers`` is not) and a copy is trained.""",
            """d_model : int, default=$d_model
    Width of the backbone.""",
            """n_layers : int, default=$n_layers
    Number of backbone layers.""",
            """backbone_kwargs : dict, optional
    Further options of the backbone (e.g. ``{"n_heads": 4}`` for the transformer).""",
            """vocab_size : int, optional
    When given, ``X`` holds integer tokens in ``[0, vocab_size)`` (embedded) instead
    of real-valued features.""",
        ],
        "pooling_params": [
            """pooling : {"mean", "last", "max"}, default=$pooling
    Summary of the backbone features over the valid steps of each sequence.""",
            """bidirectional : bool, default=$bidirectional
    Let the summary depend on both directions: the transformer drops its causal
    mask; any other (causal) backbone gets a second copy that reads each sequence
    backwards, and the pooled features of both are added.""",
        ],
        "training_params": [
            """batch_size : int, default=$batch_size
    Sequences per mini-batch in training; in prediction, every sequence is evaluated in
    a batch of exactly ``batch_size`` rows padded to a length set by its own length, so
    that its results do not depend on the other sequences of the call.""",
            """max_epochs : int, default=$max_epochs
    Passes over the training data.""",
            """lr : float, default=$lr
    Peak learning rate of AdamW.""",
            """weight_decay : float, default=$weight_decay
    Decoupled weight decay (on weight matrices and embeddings).""",
            """clip_grad_norm : float or None, default=$clip_grad_norm
    Global gradient-norm clipping.""",
            """schedule : {"cosine", "linear", "constant"}, default=$schedule
    Learning-rate decay after the warm-up.""",
            """warmup : float or int, default=$warmup
    Linear warm-up: fraction of all steps (float) or number of steps (int).""",
            """early_stopping : bool, default=$early_stopping
    Hold out ``validation_fraction`` of the sequences, stop when the validation loss
    has not improved for ``patience`` epochs and restore the best epoch's weights.
    False trains on all sequences for ``max_epochs``.""",
            """validation_fraction : float, default=$validation_fraction
    Share of the sequences held out when ``early_stopping`` (at least one, and only
    with two or more sequences).""",
            """patience : int, default=$patience
    Epochs without improvement before stopping.""",
            """mixed_precision : {"auto", True, False, "bf16", "fp16"}, default=$mixed_precision
    Autocast on CUDA (bfloat16 where supported); ignored on the CPU.""",
            """random_state : int, RandomState instance or None, default=$random_state
    Seeds the initialisation, the validation split and the shuffling; with an int,
    fits on the CPU are reproducible.""",
            """device : str or torch.device, optional
    "cpu" (default), "cuda", "cuda:1", or "auto" (CUDA when available). On the
    CPU, fitting and prediction run with probkit's intra-op thread setting
    (:func:`probkit.set_num_threads`, default one thread: small sequence models are
    dominated by per-operation overheads, and OpenMP barriers stall when the cores
    are shared; raise it for wide models on a dedicated machine).""",
            """dtype : str or torch.dtype, optional
    Parameter dtype; default float32.""",
            """verbose : int, default=$verbose
    1 shows a progress bar over epochs with the training and validation losses
    (tqdm); 2 also one over the batches of each epoch.""",
        ],
        # SequenceDensity and MaskedSequenceModel: one predictive distribution per step
        "per_step_params": [
            """head : {"auto", "categorical", "gaussian", "mixture"}, default=$head
    Predictive distribution of a step: "auto" is "categorical" with ``vocab_size``
    and "gaussian" otherwise; "mixture" is a mixture of ``n_components`` diagonal
    Gaussians (multi-modal real-valued steps).""",
            """n_components : int, default=$n_components
    Components of the mixture head.""",
            """window : int, default=$window
    Length of the windows one long token sequence (a 1-D array without ``lengths``)
    is cut into.""",
        ],
        # bounds of the latent-variable models
        "bounds_params": [
            """n_particles : int, default=$n_particles
    Guide draws ``K`` for each row or sequence.""",
            """random_state : None, int or RandomState
    Seeds the draws (None: seed 0, so repeated calls agree).""",
        ],
        # score_samples of the variational autoencoders
        "bound_params": [
            """bound : {"elbo", "iwae"}, default=$bound
    Which bound of :meth:`bounds` to return.""",
            """n_particles : int, optional
    Guide draws ``K`` of the bound (default 16 for the ELBO, 64 for the IWAE bound).""",
            """random_state : None, int or RandomState
    Seeds the draws (None: seed 0).""",
        ],
    },
    sections={
        "fitted_attrs": _FITTED_ATTRS,
        "per_step_attributes": """Attributes
----------
head_ : str
    The head used ("categorical", "gaussian" or "mixture").
""" + _FITTED_ATTRS,
        "training_attrs": _TRAINING_ATTRS,
        "training_notes": """Training runs :func:`probkit.neural.train_module`: AdamW with gradient clipping, linear
warm-up then cosine (or linear) decay of the learning rate, early stopping on a
validation split with restore of the best epoch, autocast on CUDA. Inside a
``torch.distributed`` process group of several processes (e.g. a script launched
with ``torchrun`` that called :func:`probkit.distributed.init_distributed`), ``fit``
trains data-parallel: the network is wrapped with
:func:`probkit.distributed.wrap_ddp`, each rank takes its share of every epoch's
mini-batches from the same shuffled order (every rank passes the full data), and
all ranks end with the same weights.""",
        # the Parameters section of a method on sequences (further parameters may follow it)
        "sequence_params": "Parameters\n----------\n" + _SEQUENCES,
        "tabular_rows": """A 2-D array without ``lengths`` is one sequence; ``N`` sequences of one step each
(scikit-learn's tabular layout) are ``X`` with ``lengths=np.ones(N, dtype=int)``.""",
        "sequence_forms": _SEQUENCE_FORMS,
        # a method's whole Parameters and Returns sections: what it takes to what it returns
        "sequences_to_values": _sequences_to(
            "ndarray of shape (n_sequences,)\n    One value per sequence (per window of one long token sequence)."),
        "sequences_to_score": _sequences_to("float", "y : ignored"),
        "sequences_to_labels": _sequences_to("ndarray of shape (n_sequences,)"),
        "sequences_to_class_table": _sequences_to("ndarray of shape (n_sequences, n_classes)"),
        "sequences_to_latents": _sequences_to("ndarray of shape (n_sequences, n_components)"),
        "steps_to_values": _sequences_to("ndarray of shape (n_samples,)"),
        "steps_to_state_table": _sequences_to("ndarray of shape (n_samples, n_components)"),
        "rows_to_latents": parameters_returns([ROWS], "ndarray of shape (n_samples, n_components)"),
        "row_bounds_returns": _bounds_returns("n_samples", "x"),
        "sequence_bounds_returns": _bounds_returns("n_sequences", "x_{1:T}"),
        "sequence_bounds_lengths_returns": _bounds_returns(
            "n_sequences", "x_{1:T}", ';\n    ``"lengths"``: the sequence lengths'),
        "per_step_notes": _SEQUENCE_FORMS + """

One long token sequence, a 1-D array without ``lengths``, is cut into consecutive
windows of ``window`` tokens that are modelled independently. Real-valued data are
standardised per feature; log-likelihoods are reported in the original units.""",
    },
)
