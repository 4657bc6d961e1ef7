"""GaussianMixture with scikit-learn's constructor, attributes and behaviour."""

from __future__ import annotations

import numpy as np
import torch

from probkit.base import StrOptions, non_negative_real, positive_int
from probkit.distributions.mvn import (_ILL_DEFINED, COVARIANCE_TYPES, MultivariateNormal, covariance_shape,
                                       precision_cholesky)
from probkit.em.engine import EStepResult
from probkit.mixture._base import BaseMixture
from probkit.components import BatchedComponents, CollapsedComponentWarning
from probkit.utils._array import to_numpy
from probkit.utils._warnings import warn_user
from probkit.utils.validation import check_shape

__all__ = ["GaussianMixture"]

# scikit-learn's wording, which its users match in their error handling
_SKLEARN_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical covariance "
    "(for instance caused by singleton or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)


class GaussianMixture(BaseMixture):
    """Gaussian mixture model fitted by EM, with scikit-learn's API.

    Same constructor, fitted attributes and methods as
    ``sklearn.mixture.GaussianMixture``; from the same initial parameters it reaches the
    same parameters after the same iterations. The E-step runs on a torch core in row
    blocks: one matrix product evaluates every component on a block, one more
    accumulates every component's statistics.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Convergence threshold on the gain of the mean log-likelihood per sample.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the diagonal of covariances.
    max_iter : int, default=100
    n_init : int, default=1
        Number of initialisations; the best result is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
    weights_init : array-like of shape (n_components,), optional
    means_init : array-like of shape (n_components, n_features), optional
    precisions_init : array-like, optional
        Initial precisions (inverse covariances), shaped by ``covariance_type`` as in scikit-learn.
    random_state : int, RandomState or None, default=None
    warm_start : bool, default=False
        Continue from the previous fit's parameters.
    verbose : int, default=0
        scikit-learn's progress lines on standard error: 1 prints ``Initialization k``,
        ``Iteration n`` every ``verbose_interval`` iterations and whether the start
        converged; 2 adds the time lapse, the change of the lower bound and a progress bar.
    verbose_interval : int, default=10
        Iterations between two progress lines.
    device : str or torch.device, optional
        Compute device (``"cpu"``, ``"cuda"``); CPU by default.
    dtype : str or torch.dtype, optional
        Compute precision; float64 by default.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        Shape by ``covariance_type``: full ``(K, d, d)``, tied ``(d, d)``, diag ``(K, d)``, spherical ``(K,)``.
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood per sample of the best run (as in scikit-learn, from the last E-step).
    lower_bounds_ : list of float
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from probkit import GaussianMixture
    >>> rng = np.random.RandomState(0)
    >>> X = np.vstack([rng.normal(0, 1, (100, 2)), rng.normal(5, 1, (100, 2))])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> np.round(np.sort(gm.means_[:, 0]), 1)
    array([-0. ,  4.9])
    >>> gm.predict(X[:3]).shape, gm.sample(5)[0].shape
    ((3,), (5, 2))
    """

    _parameter_constraints = {
        **BaseMixture._parameter_constraints,
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "reg_covar": non_negative_real,
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "verbose_interval": positive_int,
    }

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6, max_iter=100,
                 n_init=1, init_params="kmeans", weights_init=None, means_init=None, precisions_init=None,
                 random_state=None, warm_start=False, verbose=0, verbose_interval=10, device=None, dtype=None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ checks
    def _check_parameters(self, data):
        k = self.n_components
        d = data.X.shape[1]
        # the options are checked by _parameter_constraints; the initial arrays' shapes and values here
        if self.weights_init is not None:
            w = check_shape(self.weights_init, (k,), "weights")
            if np.any(w < 0) or np.any(w > 1):
                raise ValueError(
                    f"The parameter 'weights' should be in the range [0, 1], but got max value {w.max():.5f}, "
                    f"min value {w.min():.5f}"
                )
            if not np.allclose(w.sum(), 1.0, rtol=0, atol=1e-6):
                raise ValueError(f"The parameter 'weights' should be normalized, but got sum(weights) = {w.sum():.5f}")
        if self.means_init is not None:
            check_shape(self.means_init, (k, d), "means")
        if self.precisions_init is not None:
            prec = check_shape(self.precisions_init, covariance_shape(self.covariance_type, k, d),
                                f"{self.covariance_type} precision", hint=" (precisions_init)")
            if self.covariance_type in ("full", "tied"):
                mats = prec.reshape(-1, d, d)
                for m in mats:
                    if not np.allclose(m, m.T):
                        raise ValueError(f"'{self.covariance_type} precision' should be symmetric, positive-definite")
                    if np.any(np.linalg.eigvalsh(m) <= 0.0):
                        raise ValueError(f"'{self.covariance_type} precision' should be symmetric, positive-definite")
            elif np.any(prec <= 0):
                raise ValueError(f"'{self.covariance_type} precision' should be positive")

    # ------------------------------------------------------------------ hooks
    def _template(self, data):
        shift = (data.x * (data.weight.unsqueeze(1) if data.weight is not None else 1)).sum(0) / data.total_weight
        return MultivariateNormal(covariance_type=self.covariance_type, reg_covar=self.reg_covar,
                                  stats_shift=shift.detach().cpu().to(torch.float64))

    def _em_initialize(self, data, random_state):
        # With every initial parameter given, no responsibilities are needed (as in scikit-learn).
        if self.weights_init is not None and self.means_init is not None and self.precisions_init is not None:
            self._initialize_components(data, None)
            return
        super()._em_initialize(data, random_state)

    def _em_expectation(self, data):
        # Each component's log-density is quadratic in x: one matrix product of the design rows
        # [second-order terms | x | 1] with a coefficient matrix gives all K log-densities of a
        # block, and one product of the design with the responsibilities gives all K components'
        # statistics (as BaseMixture's E-step, without (rows, K, d) temporaries).
        dist = self._components.dist
        x, weight = data.x, data.weight
        # The expansion is accurate near the data; statistics come back about the family's stats_shift.
        if dist.stats_shift is not None:
            center = dist.stats_shift.to(dtype=x.dtype, device=x.device)
        else:
            center = dist._params["mean"].mean(0)
        coef = dist._quadratic_log_prob_coefficients(center)
        coef[-1] += torch.log(self._weights_t)
        coef_t = coef.T.contiguous()
        sums = torch.zeros_like(coef)
        total_ll = torch.zeros((), dtype=x.dtype, device=x.device)
        design = None
        for start in range(0, x.shape[0], self.chunk_size):
            xb = x[start:start + self.chunk_size]
            if design is None or design.shape[1] != xb.shape[0]:
                design = torch.empty(coef.shape[0], xb.shape[0], dtype=x.dtype, device=x.device)
            z = dist._quadratic_design((xb - center).T, out=design)
            resp = coef_t @ z  # (K, rows)
            # log-sum-exp and responsibilities sharing one exp pass
            top = resp.amax(0, keepdim=True)
            top = torch.where(torch.isfinite(top), top, 0.0)
            resp.sub_(top).exp_()
            norm = resp.sum(0, keepdim=True)
            lse = torch.log(norm).add_(top)
            if weight is None:
                total_ll += lse.sum()
                resp.div_(norm)
            else:
                wb = weight[start:start + self.chunk_size].unsqueeze(0)
                total_ll += (lse * wb).sum()
                resp.mul_(wb / norm)
            sums.addmm_(z, resp.T)
        stats = dist._stats_from_design_sums(sums, center)
        return EStepResult(log_likelihood=float(total_ll), n_samples=data.total_weight,
                           stats=(stats["count"], stats))

    def _initialize_components(self, data, resp):
        x = data.x
        template = self._template(data)
        d = x.shape[1]
        if resp is not None:
            empty = resp.sum(0) <= 0
            if bool(empty.any()):
                # A component the initialisation leaves empty (k-means on duplicated rows) starts from
                # the whole data with a negligible weight, as scikit-learn's 10 * eps does.
                resp = resp.clone()
                resp[:, empty] = 10 * torch.finfo(resp.dtype).eps / x.shape[0]
            comps = BatchedComponents.from_responsibilities(template, x, resp)
            weights = resp.sum(0) / data.total_weight
            mean, cov = comps.dist._params["mean"], comps.dist._params["covariance"]
        else:
            weights = mean = cov = None
        if self.weights_init is not None:
            weights = torch.as_tensor(np.asarray(self.weights_init, dtype=np.float64), dtype=x.dtype, device=x.device)
        if self.means_init is not None:
            mean = torch.as_tensor(np.asarray(self.means_init, dtype=np.float64), dtype=x.dtype, device=x.device)
        if self.precisions_init is not None:
            prec = torch.as_tensor(np.asarray(self.precisions_init, dtype=np.float64), dtype=x.dtype, device=x.device)
            if self.covariance_type in ("full", "tied"):
                cov = torch.linalg.inv(prec)
                cov = 0.5 * (cov + cov.mT)
            else:
                cov = 1.0 / prec
        if self.covariance_type == "tied" and mean is not None and mean.ndim == 1:
            mean = mean.reshape(-1, d)
        dist = MultivariateNormal(mean=mean, covariance=cov, covariance_type=self.covariance_type,
                                  reg_covar=self.reg_covar, stats_shift=template.stats_shift)
        self._weights_t = weights
        self._components = BatchedComponents(dist)

    def _components_from_attributes(self):
        device, dtype = self._compute_setup()
        weights = torch.as_tensor(np.asarray(self.weights_, dtype=np.float64), dtype=dtype, device=device)
        dist = MultivariateNormal(
            mean=torch.as_tensor(np.asarray(self.means_, dtype=np.float64), dtype=dtype, device=device),
            covariance=torch.as_tensor(np.asarray(self.covariances_, dtype=np.float64), dtype=dtype, device=device),
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
        )
        return weights, BatchedComponents(dist)

    def _io_check_state(self):
        if not hasattr(self, "weights_"):
            return
        k, ct = self.n_components, self.covariance_type
        means = np.asarray(self.means_, dtype=np.float64)
        d = getattr(self, "n_features_in_", means.shape[-1] if means.ndim == 2 else -1)
        check_shape(means, (k, d), "means_")
        cov = check_shape(self.covariances_, covariance_shape(ct, k, d), "covariances_")
        for name in ("precisions_cholesky_", "precisions_"):
            if hasattr(self, name):
                check_shape(getattr(self, name), covariance_shape(ct, k, d), name)
        if ct in ("full", "tied") and not np.allclose(cov, np.swapaxes(cov, -1, -2)):
            raise ValueError("covariances_ must be symmetric")
        try:
            precision_cholesky(torch.as_tensor(cov), ct)
        except ValueError as exc:
            raise ValueError(f"covariances_ must be positive definite: {exc}") from None
        super()._io_check_state()

    def _warn_collapsed(self):
        """Warn about components whose data contribute (almost) no variance in some direction.

        Such a component sits on (nearly) identical points: its covariance is positive
        definite only thanks to ``reg_covar`` (scikit-learn fits it silently).
        """
        cov = np.asarray(self.covariances_)
        if self.covariance_type in ("full", "tied"):
            smallest = np.linalg.eigvalsh(cov.reshape(-1, cov.shape[-1], cov.shape[-1])).min(-1)
        elif self.covariance_type == "diag":
            smallest = cov.min(-1)
        else:
            smallest = cov
        collapsed = np.flatnonzero(np.atleast_1d(smallest) <= 2 * self.reg_covar)
        if collapsed.size:
            which = "the tied covariance" if self.covariance_type == "tied" else f"component(s) {collapsed.tolist()}"
            warn_user(
                f"{which} collapsed onto (nearly) identical points: the data add at most reg_covar={self.reg_covar} "
                "of variance in some direction, so only reg_covar keeps the covariance positive definite; "
                "consider fewer components or rescaling the data",
                CollapsedComponentWarning
            )

    def fit_predict(self, X, y=None, sample_weight=None):
        try:
            labels = super().fit_predict(X, y, sample_weight=sample_weight)
        except ValueError as exc:
            if str(exc) == _ILL_DEFINED:
                raise ValueError(_SKLEARN_ILL_DEFINED) from exc
            raise
        self._warn_collapsed()
        return labels

    fit_predict.__doc__ = BaseMixture.fit_predict.__doc__

    def _set_attributes(self, weights, components):
        dist = components.dist
        self.weights_ = to_numpy(weights).astype(np.float64)
        self.means_ = to_numpy(dist._params["mean"]).astype(np.float64)
        self.covariances_ = to_numpy(dist._params["covariance"]).astype(np.float64)
        P = to_numpy(precision_cholesky(dist._params["covariance"].to(torch.float64), self.covariance_type))
        self.precisions_cholesky_ = P
        if self.covariance_type == "full":
            self.precisions_ = P @ np.transpose(P, (0, 2, 1))
        elif self.covariance_type == "tied":
            self.precisions_ = P @ P.T
        else:
            self.precisions_ = P ** 2
