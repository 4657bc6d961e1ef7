"""What the variational autoencoders :class:`~probkit.neural.VAE` and :class:`~probkit.neural.SequenceVAE` share."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from probkit.utils.random import check_random_state, seed_from
from probkit.utils.validation import check_int, check_nonnegative_integers

from ._base import check_bound

__all__ = ["VAEMixin"]


class VAEMixin:
    """What :class:`~probkit.neural.VAE` and :class:`~probkit.neural.SequenceVAE` share (not public).

    The likelihood's support and units (scaling, one-hot inputs), the common random numbers
    of the bounds, the ELBO and IWAE of log-weights, and decoder outputs turned into means
    and draws in the data's units. Both estimators have ``likelihood``, ``n_components``,
    ``n_categories`` and a fitted ``module_`` built on :class:`~probkit.neural.estimators.vae.VAENet`.
    """

    def _check_support(self, X, name="X"):
        """Check that ``X`` lies in the likelihood's support (Bernoulli: 0/1; categorical: known categories)."""
        if self.likelihood == "bernoulli" and not np.all((X == 0) | (X == 1)):
            bad = X[(X != 0) & (X != 1)].flat[0]
            raise ValueError(f"{name} must hold only 0 and 1 for likelihood='bernoulli'; found {bad}")
        if self.likelihood == "categorical":
            try:
                check_nonnegative_integers(X, name)
            except ValueError as exc:
                raise ValueError(f"{exc} (likelihood='categorical' takes category numbers 0, 1, ...)") from None
            limit = getattr(self, "n_categories_", None) or self.n_categories
            if limit is not None and X.size and X.max() >= limit:
                raise ValueError(f"{name} holds category {int(X.max())} but the model has n_categories={limit} "
                                 f"(values 0 to {limit - 1})")

    def _resolve_categories(self, X):
        """Set ``n_categories_`` from the parameter or the training values (2 for Bernoulli, 0 for Gaussian)."""
        if self.likelihood == "categorical":
            self.n_categories_ = int(self.n_categories) if self.n_categories is not None else max(2, int(X.max()) + 1)
        else:
            self.n_categories_ = 2 if self.likelihood == "bernoulli" else 0

    # ------------------------------------------------------------------ units
    def _fit_scaling(self, X):
        """Centre Gaussian data and divide by one scale (the root mean variance), keeping isotropy."""
        d = X.shape[1]
        if self.likelihood != "gaussian":
            self._x_mean, self._x_scale = np.zeros(d), np.ones(d)
            return
        self._x_mean = X.mean(0)
        scale = math.sqrt(float(X.var(0).mean()))
        ok = scale > 1e-12 * max(1.0, float(np.abs(self._x_mean).max()))
        self._x_scale = np.full(d, scale if ok else 1.0)

    def _log_jacobian(self):
        """log |dx_model / dx_data| per row (per step of a sequence): model-unit densities to data-unit ones."""
        return -float(np.log(self._x_scale).sum()) if self.likelihood == "gaussian" else 0.0

    def _model_arrays(self, X):
        """Encoder inputs and observations of rows ``X`` in model units (one-hot inputs and int codes for
        categories; standardised values otherwise)."""
        if self.likelihood == "categorical":
            codes = X.astype(np.int64)
            return np.eye(self.n_categories_)[codes].reshape(len(X), -1), codes
        x = (X - self._x_mean) / self._x_scale
        return x, x

    # ------------------------------------------------------------------ latents and bounds
    def _check_latent(self, Z):
        check_is_fitted(self, "module_")
        Z = check_array(np.asarray(Z.detach().cpu()) if isinstance(Z, torch.Tensor) else Z,
                        dtype=(np.float64, np.float32), input_name="Z")
        if Z.shape[1] != self.n_components:
            raise ValueError(f"Z has {Z.shape[1]} columns, but this {type(self).__name__} has "
                             f"n_components={self.n_components}")
        p = next(self.module_.parameters())
        return torch.as_tensor(Z, dtype=p.dtype, device=p.device)

    def _draws(self, n_particles, random_state, like):
        """``n_particles`` standard-normal draws (K, n_components), shared by all rows."""
        gen = torch.Generator(device=like.device).manual_seed(seed_from(0 if random_state is None else random_state))
        return torch.randn(n_particles, self.n_components, generator=gen, dtype=like.dtype, device=like.device)

    def _chosen_bound(self, X, bound, n_particles, random_state, **layout):
        """The ``bound`` ("elbo" or "iwae") of :meth:`bounds` for every row or sequence of ``X``."""
        bound, n_particles = check_bound(bound, n_particles)
        return self.bounds(X, n_particles=n_particles, random_state=random_state, **layout)[bound]

    def _prior_draws(self, n_samples, random_state):
        """``n_samples`` latent vectors ``z ~ N(0, I)`` and the generator that drew them, seeded from
        ``random_state`` (None: the estimator's ``random_state``)."""
        check_is_fitted(self, "module_")
        n = check_int(n_samples, "n_samples")
        p = next(self.module_.parameters())
        rs = self.random_state if random_state is None else random_state
        gen = torch.Generator(device=p.device).manual_seed(seed_from(check_random_state(rs)))
        return torch.randn(n, self.n_components, generator=gen, dtype=p.dtype, device=p.device), gen

    # ------------------------------------------------------------------ decoder outputs
    def _mean_of_output(self, out):
        """The mean of ``p(x | z)`` in data units from decoder outputs ``out`` (numpy float64).

        Gaussian: the decoded means; Bernoulli: the probabilities of 1; categorical: the
        expected category number ``sum_c c p(x_j = c | z)``.
        """
        out = out.double()
        if self.likelihood == "gaussian":
            return out.cpu().numpy() * self._x_scale + self._x_mean
        if self.likelihood == "bernoulli":
            return torch.sigmoid(out).cpu().numpy()
        probs = torch.softmax(out, -1)
        return (probs * torch.arange(self.n_categories_, dtype=probs.dtype, device=probs.device)).sum(-1).cpu().numpy()

    def _draw_from_output(self, out, gen):
        """A draw of ``x ~ p(x | z)`` from decoder outputs ``out``, in model units (categorical: long codes)."""
        if self.likelihood == "gaussian":
            scale = self.module_.noise_scale().to(out.dtype)
            return out + scale * torch.randn(out.shape, generator=gen, dtype=out.dtype, device=out.device)
        if self.likelihood == "bernoulli":
            u = torch.rand(out.shape, generator=gen, dtype=out.dtype, device=out.device)
            return (u < torch.sigmoid(out)).to(out.dtype)
        probs = torch.softmax(out.double(), -1).reshape(-1, self.n_categories_)
        return torch.multinomial(probs, 1, generator=gen).reshape(out.shape[:-1])

    def _draw_to_data(self, x):
        """Draws in model units (:meth:`_draw_from_output`) as float64 numpy values in data units."""
        x = x.double().cpu().numpy()
        return x * self._x_scale + self._x_mean if self.likelihood == "gaussian" else x
