"""SequenceClassifier: one label per sequence from a neural backbone pooled over time."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from probkit.neural.heads import CategoricalHead
from probkit.utils.sequences import keyword_lengths
from probkit.utils.threads import limit_torch_threads

from ._base import _SequenceEstimator, fill_doc
from ._data import SequenceData

__all__ = ["SequenceClassifier"]


@fill_doc
class SequenceClassifier(ClassifierMixin, _SequenceEstimator):
    """Classify whole sequences with a neural backbone (Mamba, RWKV, gated CNN, ...).

    Each step of a sequence is embedded (a linear map of its features, or a token
    embedding), the backbone maps the sequence to features of width ``d_model``, which
    are pooled over the valid steps (``pooling``) and fed to a categorical head; the
    network is trained on the cross-entropy by the shared loop of
    :func:`probkit.neural.train_module`. Real-valued features are standardised with the
    training mean and standard deviation.

    Parameters
    ----------
    %(model_params)s
    pooling : {"mean", "last", "max"}, default="mean"
        Summary of the backbone features over the valid steps of each sequence.
    bidirectional : bool, default=False
        Let the summary depend on both directions: the transformer drops its causal
        mask; any other (causal) backbone gets a second copy that reads each sequence
        backwards, and the pooled features of both are added.
    %(training_params)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    %(fitted_attrs)s

    Notes
    -----
    ``X`` may be a list of ``(L_i, D)`` arrays (variable lengths), a padded
    ``(N, L, D)`` array with ``lengths=``, or a 2-D ``(N, D)`` array read as ``N``
    sequences of one step (scikit-learn's tabular layout; pass univariate series as
    ``X[:, :, None]``). With ``vocab_size``, a list of 1-D integer arrays or a padded
    ``(N, L)`` integer array.

    %(training_notes)s

    Examples
    --------
    Is the sequence's mean positive? Sequences of 4 to 11 steps, 2 features:

    >>> import numpy as np
    >>> from probkit.neural import SequenceClassifier
    >>> rng = np.random.RandomState(0)
    >>> seqs = [rng.normal(size=(rng.randint(4, 12), 2)) + s for s in rng.choice([-1, 1], 120)]
    >>> y = np.array([int(s.mean() > 0) for s in seqs])
    >>> clf = SequenceClassifier(backbone="gru", d_model=16, n_layers=1, max_epochs=30, lr=1e-2,
    ...                          random_state=0).fit(seqs[:100], y[:100])
    >>> clf.predict_proba(seqs[100:]).shape
    (20, 2)
    >>> clf.score(seqs[100:], y[100:]) > 0.9
    True
    """

    def __init__(self, backbone="mamba", d_model=64, n_layers=2, *, backbone_kwargs=None, vocab_size=None,
                 pooling="mean", bidirectional=False, batch_size=32, max_epochs=100, lr=1e-3, weight_decay=0.01,
                 clip_grad_norm=1.0, schedule="cosine", warmup=0.05, early_stopping=True, validation_fraction=0.1,
                 patience=10, mixed_precision="auto", random_state=None, device=None, dtype=None, verbose=0):
        self.backbone = backbone
        self.d_model = d_model
        self.n_layers = n_layers
        self.backbone_kwargs = backbone_kwargs
        self.vocab_size = vocab_size
        self.pooling = pooling
        self.bidirectional = bidirectional
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

    def _make_head(self):
        return CategoricalHead(self.d_model, len(self.classes_))

    @limit_torch_threads
    def fit(self, X, y, *, lengths=None):
        """Train on sequences ``X`` with one label each.

        Parameters
        ----------
        X : list of arrays, or array / tensor
            ``N`` sequences (see Notes of the class).
        y : array-like of shape (N,)
            Class labels.
        lengths : array-like of int, optional
            Valid length of each row of a padded ``X``.

        Returns
        -------
        self
        """
        self._check_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        padded, lens = self._check_X(X, lengths, reset=True)
        y = column_or_1d(np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y), warn=True)
        check_classification_targets(y)
        if y.shape[0] != padded.shape[0]:
            raise ValueError(f"X holds {padded.shape[0]} sequences but y has {y.shape[0]} labels")
        self.classes_, codes = np.unique(y, return_inverse=True)
        self._fit_standardizer(padded, lens)
        device, dtype = self._compute_setup()
        data = SequenceData(self._to_tensor(padded, device, dtype), torch.as_tensor(lens, device=device),
                            torch.as_tensor(codes, dtype=torch.long, device=device))

        def loss_fn(model, batch):
            logits = model(batch["x"], batch["lengths"])
            return F.cross_entropy(logits.float(), batch["y"]), batch["y"].shape[0]

        return self._build_and_train(data, loss_fn)

    @limit_torch_threads
    @keyword_lengths
    def predict_log_proba(self, X, *, lengths=None):
        """Log-probabilities of the classes, shape (N, n_classes)."""
        check_is_fitted(self)
        padded, lens = self._check_X(X, lengths, reset=False)
        device, dtype = next(self.module_.parameters()).device, next(self.module_.parameters()).dtype
        out = self._outputs(self._to_tensor(padded, device, dtype), lens,
                            lambda o, xb, lb: F.log_softmax(o.double(), dim=-1))
        return out.numpy()

    @keyword_lengths
    def predict_proba(self, X, *, lengths=None):
        """Class probabilities, shape (N, n_classes); columns follow ``classes_``.

        Parameters
        ----------
        X : list of arrays, or array / tensor
        lengths : array-like of int, optional

        Returns
        -------
        ndarray of shape (N, n_classes)
        """
        return np.exp(self.predict_log_proba(X, lengths=lengths))

    @keyword_lengths
    def predict(self, X, *, lengths=None):
        """Most probable class of each sequence.

        Parameters
        ----------
        X : list of arrays, or array / tensor
        lengths : array-like of int, optional

        Returns
        -------
        ndarray of shape (N,)
        """
        log_proba = self.predict_log_proba(X, lengths=lengths)
        return self.classes_[np.argmax(log_proba, axis=1)]

    def score(self, X, y, sample_weight=None, *, lengths=None):
        """Accuracy on ``(X, y)``.

        Parameters
        ----------
        X : list of arrays, or array / tensor
        y : array-like of shape (N,)
        sample_weight : array-like of shape (N,), optional
        lengths : array-like of int, optional

        Returns
        -------
        float
        """
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self.predict(X, lengths=lengths), sample_weight=sample_weight))
