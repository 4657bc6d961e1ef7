"""Ground truth for the state-space tests: the joint of all states and observations as one Gaussian.

For a short sequence every state and observation is a linear function of the independent
Gaussians ``x_1 - m0``, ``w_2..w_T`` and ``v_1..v_T``; their joint mean and covariance are
built explicitly and conditioned with plain linear algebra (float64, no recursion).
"""

import numpy as np
from scipy import stats


def random_model(n, p, m=0, seed=0, stable=0.9):
    """A random model with stable A, full positive-definite covariances and m inputs."""
    rng = np.random.RandomState(seed)
    A = rng.normal(size=(n, n))
    A *= stable / max(abs(np.linalg.eigvals(A)))
    C = rng.normal(size=(p, n))

    def spd(k, scale):
        G = rng.normal(size=(k, k))
        return scale * (G @ G.T / k + 0.5 * np.eye(k))

    params = dict(transition_matrix=A, observation_matrix=C, transition_covariance=spd(n, 0.5),
                  observation_covariance=spd(p, 0.7), initial_state_mean=rng.normal(size=n),
                  initial_state_covariance=spd(n, 1.0))
    if m:
        params["input_matrix"] = rng.normal(size=(n, m))
        params["feedthrough_matrix"] = rng.normal(size=(p, m))
    return params


class DenseGaussian:
    """Joint Gaussian of (x_1..x_T, y_1..y_T) for one sequence of length T."""

    def __init__(self, params, T, inputs=None):
        A = params["transition_matrix"]
        C = params["observation_matrix"]
        Q = params["transition_covariance"]
        R = params["observation_covariance"]
        m0 = params["initial_state_mean"]
        P0 = params["initial_state_covariance"]
        B = params.get("input_matrix")
        D = params.get("feedthrough_matrix")
        n, p = A.shape[0], C.shape[0]
        self.n, self.p, self.T = n, p, T
        n_noise = n + (T - 1) * n + T * p
        Mx = np.zeros((T * n, n_noise))
        mx = np.zeros(T * n)
        # x_1 = m0 + e_0
        Mx[:n, :n] = np.eye(n)
        mx[:n] = m0
        for t in range(1, T):
            rows = slice(t * n, (t + 1) * n)
            prev = slice((t - 1) * n, t * n)
            Mx[rows] = A @ Mx[prev]
            Mx[rows, n + (t - 1) * n:n + t * n] += np.eye(n)
            mx[rows] = A @ mx[prev] + (B @ inputs[t] if B is not None else 0.0)
        My = np.zeros((T * p, n_noise))
        my = np.zeros(T * p)
        for t in range(T):
            rows = slice(t * p, (t + 1) * p)
            My[rows] = C @ Mx[t * n:(t + 1) * n]
            My[rows, n + (T - 1) * n + t * p:n + (T - 1) * n + (t + 1) * p] += np.eye(p)
            my[rows] = C @ mx[t * n:(t + 1) * n] + (D @ inputs[t] if D is not None else 0.0)
        blocks = [P0] + [Q] * (T - 1) + [R] * T
        cov_noise = np.zeros((n_noise, n_noise))
        i = 0
        for blk in blocks:
            k = blk.shape[0]
            cov_noise[i:i + k, i:i + k] = blk
            i += k
        M = np.vstack([Mx, My])
        self.mean = np.concatenate([mx, my])
        self.cov = M @ cov_noise @ M.T

    def _y_index(self, y, upto):
        """Indices (into the joint) of the observed entries of rows < upto."""
        obs = ~np.isnan(y[:upto])
        return self.T * self.n + np.flatnonzero(obs.ravel()), y[:upto][obs]

    def log_likelihood(self, y, upto=None):
        upto = self.T if upto is None else upto
        idx, values = self._y_index(y, upto)
        if idx.size == 0:
            return 0.0
        return float(stats.multivariate_normal(self.mean[idx], self.cov[np.ix_(idx, idx)]).logpdf(values))

    def condition(self, y, upto=None):
        """Mean and covariance of the whole joint given observed entries of rows < upto."""
        upto = self.T if upto is None else upto
        idx, values = self._y_index(y, upto)
        if idx.size == 0:
            return self.mean.copy(), self.cov.copy()
        Soo = self.cov[np.ix_(idx, idx)]
        G = np.linalg.solve(Soo, self.cov[idx]).T
        mean = self.mean + G @ (values - self.mean[idx])
        cov = self.cov - G @ self.cov[idx]
        return mean, 0.5 * (cov + cov.T)

    def state_moments(self, y, upto=None):
        """(T, n) means and (T, n, n) covariances of the states given rows < upto."""
        mean, cov = self.condition(y, upto)
        n, T = self.n, self.T
        means = mean[:T * n].reshape(T, n)
        covs = np.stack([cov[t * n:(t + 1) * n, t * n:(t + 1) * n] for t in range(T)])
        lag = np.zeros((T, n, n))
        for t in range(1, T):
            lag[t] = cov[t * n:(t + 1) * n, (t - 1) * n:t * n]
        return means, covs, lag

    def filtered(self, y):
        """Filtered, predicted moments and per-step log p(y_t | y_<t) by conditioning on prefixes."""
        n, T = self.n, self.T
        fm, fc, pm, pc, steps = np.zeros((T, n)), np.zeros((T, n, n)), np.zeros((T, n)), np.zeros((T, n, n)), []
        for t in range(T):
            means, covs, _ = self.state_moments(y, t + 1)
            fm[t], fc[t] = means[t], covs[t]
            means, covs, _ = self.state_moments(y, t)
            pm[t], pc[t] = means[t], covs[t]
            steps.append(self.log_likelihood(y, t + 1) - self.log_likelihood(y, t))
        return fm, fc, pm, pc, np.array(steps)

    def observation_moments(self, y):
        """(T, p) means and (T, p, p) covariances of every y_t given all observed entries."""
        mean, cov = self.condition(y)
        p, T, off = self.p, self.T, self.T * self.n
        means = mean[off:].reshape(T, p)
        covs = np.stack([cov[off + t * p:off + (t + 1) * p, off + t * p:off + (t + 1) * p] for t in range(T)])
        return means, covs
