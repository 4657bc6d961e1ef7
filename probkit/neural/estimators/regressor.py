"""SequenceRegressor: real-valued targets per sequence from a neural backbone pooled over time."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted

from probkit.neural.heads import GaussianHead
from probkit.utils.sequences import keyword_lengths
from probkit.utils.threads import limit_torch_threads

from ._base import _SequenceEstimator, check_standardizer, fill_doc, unwrap
from ._data import SequenceData

__all__ = ["SequenceRegressor"]


@fill_doc
class SequenceRegressor(RegressorMixin, _SequenceEstimator):
    """Predict one real vector per sequence with a neural backbone (Mamba, RWKV, gated CNN, ...).

    Encoder, backbone and pooling as in :class:`SequenceClassifier`; the pooled features
    feed a Gaussian head. With ``loss="squared_error"`` only its means are trained (mean
    squared error); with ``loss="gaussian"`` means and standard deviations are trained on
    the Gaussian negative log-likelihood and ``predict(X, return_std=True)`` returns the
    predictive standard deviations. Targets and real-valued features are standardised
    with their training mean and standard deviation.

    Parameters
    ----------
    %(model_params)s
    pooling : {"mean", "last", "max"}, default="mean"
        Summary of the backbone features over the valid steps of each sequence.
    bidirectional : bool, default=False
        As in :class:`SequenceClassifier`: causal or bidirectional summaries.
    loss : {"squared_error", "gaussian"}, default="squared_error"
        Training objective.
    %(training_params)s

    Attributes
    ----------
    n_outputs_ : int
        Dimension of the targets.
    %(fitted_attrs)s

    Notes
    -----
    ``X`` layouts as in :class:`SequenceClassifier`; ``y`` is ``(N,)`` or ``(N, k)``.

    %(training_notes)s

    Examples
    --------
    The mean of a noisy sequence, from sequences of 3 to 9 steps:

    >>> import numpy as np
    >>> from probkit.neural import SequenceRegressor
    >>> rng = np.random.RandomState(0)
    >>> mus = rng.normal(size=150)
    >>> seqs = [m + 0.3 * rng.normal(size=(rng.randint(3, 10), 1)) for m in mus]
    >>> reg = SequenceRegressor(backbone="gru", d_model=16, n_layers=1, max_epochs=40, lr=1e-2,
    ...                         random_state=0).fit(seqs[:120], mus[:120])
    >>> reg.score(seqs[120:], mus[120:]) > 0.8         # R^2
    True
    """

    def __init__(self, backbone="mamba", d_model=64, n_layers=2, *, backbone_kwargs=None, vocab_size=None,
                 pooling="mean", bidirectional=False, loss="squared_error", batch_size=32, max_epochs=100, lr=1e-3,
                 weight_decay=0.01, clip_grad_norm=1.0, schedule="cosine", warmup=0.05, early_stopping=True,
                 validation_fraction=0.1, patience=10, mixed_precision="auto", random_state=None, device=None,
                 dtype=None, verbose=0):
        self.backbone = backbone
        self.d_model = d_model
        self.n_layers = n_layers
        self.backbone_kwargs = backbone_kwargs
        self.vocab_size = vocab_size
        self.pooling = pooling
        self.bidirectional = bidirectional
        self.loss = loss
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
        return GaussianHead(self.d_model, self.n_outputs_, learn_scale=self.loss == "gaussian")

    @limit_torch_threads
    def fit(self, X, y, *, lengths=None):
        """Train on sequences ``X`` with targets ``y``.

        Parameters
        ----------
        X : list of arrays, or array / tensor
            ``N`` sequences (see Notes of :class:`SequenceClassifier`).
        y : array-like of shape (N,) or (N, k)
        lengths : array-like of int, optional
            Valid length of each row of a padded ``X``.

        Returns
        -------
        self
        """
        self._check_params()
        if self.loss not in ("squared_error", "gaussian"):
            raise ValueError(f"loss must be 'squared_error' or 'gaussian', got {self.loss!r}")
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        padded, lens = self._check_X(X, lengths, reset=True)
        y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
        if y.shape[0] != padded.shape[0]:
            raise ValueError(f"X holds {padded.shape[0]} sequences but y has {y.shape[0]} targets")
        self._y_1d = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        self.n_outputs_ = y2.shape[1]
        self._y_mean = y2.mean(0)
        scale = y2.std(0)
        self._y_scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(self._y_mean)), scale, 1.0)
        self._fit_standardizer(padded, lens)
        device, dtype = self._compute_setup()
        yz = torch.as_tensor((y2 - self._y_mean) / self._y_scale, dtype=dtype, device=device)
        data = SequenceData(self._to_tensor(padded, device, dtype), torch.as_tensor(lens, device=device), yz)
        gaussian = self.loss == "gaussian"

        def loss_fn(model, batch):
            out = model(batch["x"], batch["lengths"])
            head = unwrap(model).head
            if gaussian:
                loss = -head.log_prob(out, batch["y"]).mean()
            else:
                loss = (head.mean(out) - batch["y"]).pow(2).sum(-1).mean()
            return loss, batch["y"].shape[0]

        return self._build_and_train(data, loss_fn)

    @limit_torch_threads
    def _predict_z(self, X, lengths):
        check_is_fitted(self)
        padded, lens = self._check_X(X, lengths, reset=False)
        device, dtype = next(self.module_.parameters()).device, next(self.module_.parameters()).dtype
        head = self.module_.head
        out = self._outputs(self._to_tensor(padded, device, dtype), lens,
                            lambda o, xb, lb: torch.cat([head.mean(o), head.scale(o)], -1).double())
        k = self.n_outputs_
        return out[:, :k].numpy(), out[:, k:].numpy()

    @keyword_lengths
    def predict(self, X, *, lengths=None, return_std=False):
        """Predicted targets (means of the Gaussian head).

        Parameters
        ----------
        X : list of arrays, or array / tensor
        lengths : array-like of int, optional
        return_std : bool, default=False
            Also return the predictive standard deviations (``loss="gaussian"`` only).

        Returns
        -------
        y_pred : ndarray of shape (N,) or (N, k)
        y_std : ndarray, same shape (only with ``return_std``)
        """
        if return_std and self.loss != "gaussian":
            raise ValueError("return_std=True needs a model fitted with loss='gaussian'")
        mean_z, std_z = self._predict_z(X, lengths)
        mean = mean_z * self._y_scale + self._y_mean
        std = std_z * self._y_scale
        if self._y_1d:
            mean, std = mean[:, 0], std[:, 0]
        return (mean, std) if return_std else mean

    def score(self, X, y, sample_weight=None, *, lengths=None):
        """Coefficient of determination R^2 of the predictions.

        Parameters
        ----------
        X : list of arrays, or array / tensor
        y : array-like of shape (N,) or (N, k)
        sample_weight : array-like of shape (N,), optional
        lengths : array-like of int, optional

        Returns
        -------
        float
        """
        from sklearn.metrics import r2_score

        return float(r2_score(y, self.predict(X, lengths=lengths), sample_weight=sample_weight))

    def _io_check_state(self):
        super()._io_check_state()
        if hasattr(self, "module_"):
            check_standardizer(self._y_mean, self._y_scale, self.n_outputs_, ("_y_mean", "_y_scale"))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
