"""Student t, negative binomial, von Mises, Laplace, Wishart and inverse Wishart: densities,
entropies, sampling moments and KL divergences against scipy, quadrature and Monte Carlo."""

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from probkit.distributions import (
    InverseWishart,
    Laplace,
    MultivariateStudentT,
    NegativeBinomial,
    StudentT,
    VonMises,
    Wishart,
    kl_divergence,
)
from probkit.distributions.registry import resolve_family

RTOL = 1e-10
_V = np.array([[[2.0, 0.3], [0.3, 1.0]], [[1.0, -0.2], [-0.2, 0.5]]])
_SHAPES = np.array([[[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]],
                    [[1.0, -0.4, 0.0], [-0.4, 0.8, 0.1], [0.0, 0.1, 1.5]]])


def _mvt():
    return MultivariateStudentT(df=[3.5, 9.0], loc=[[0.0, 1.0, -1.0], [2.0, 0.5, 0.0]], scale_matrix=_SHAPES)


def _spd_samples(n, p, seed):
    return stats.wishart(p + 3, np.eye(p)).rvs(n, random_state=seed)


# ---------------------------------------------------------------------- log-densities
def test_student_t_log_density_matches_scipy():
    d = StudentT(df=[0.7, 3.0, 40.0], loc=[0.0, 1.0, -2.0], scale=[1.0, 0.5, 3.0])
    x = np.linspace(-30, 30, 41)
    np.testing.assert_allclose(d.log_prob(x), stats.t(d.df, d.loc, d.scale).logpdf(x[:, None]), rtol=RTOL)


def test_multivariate_t_log_density_matches_scipy():
    d = _mvt()
    X = np.random.default_rng(0).normal(size=(25, 3)) * 3
    expected = np.stack([stats.multivariate_t(m, S, df=v).logpdf(X)
                         for m, S, v in zip(d.loc, d.scale_matrix, d.df)], -1)
    np.testing.assert_allclose(d.log_prob(X), expected, rtol=RTOL)


def test_negative_binomial_log_mass_matches_scipy_and_torch():
    d = NegativeBinomial(total_count=[0.3, 2.5, 40.0], probs=[0.1, 0.4, 0.95])
    x = np.arange(0, 200)
    np.testing.assert_allclose(d.log_prob(x), stats.nbinom(d.total_count, d.probs).logpmf(x[:, None]), rtol=RTOL)
    # torch counts the other outcome: its probs is 1 - p.
    ref = torch.distributions.NegativeBinomial(torch.as_tensor(d.total_count), probs=torch.as_tensor(1 - d.probs))
    np.testing.assert_allclose(d.log_prob(x), ref.log_prob(torch.as_tensor(x, dtype=torch.float64)[:, None]).numpy(),
                               rtol=1e-9)


def test_von_mises_log_density_matches_scipy_on_any_angle():
    d = VonMises(loc=[0.5, -2.0, 3.0], concentration=[0.0, 2.0, 700.0])
    x = np.linspace(-9, 9, 37)  # beyond [-pi, pi]: the density is periodic
    expected = np.stack([stats.vonmises(k, loc=m).logpdf(x) if k > 0 else np.full_like(x, -np.log(2 * np.pi))
                         for m, k in zip(d.loc, d.concentration)], -1)
    np.testing.assert_allclose(d.log_prob(x), expected, rtol=RTOL)


def test_laplace_log_density_matches_scipy():
    d = Laplace(loc=[0.0, 3.0], scale=[1.0, 0.2])
    x = np.linspace(-10, 10, 21)
    np.testing.assert_allclose(d.log_prob(x), stats.laplace(d.loc, d.scale).logpdf(x[:, None]), rtol=RTOL)


@pytest.mark.parametrize("cls, ref", [(Wishart, stats.wishart), (InverseWishart, stats.invwishart)])
def test_matrix_log_densities_match_scipy(cls, ref):
    d = cls(df=[4.5, 7.0], scale_matrix=_V)
    X = _spd_samples(8, 2, 0)
    expected = np.stack([ref(v, S).logpdf(X.transpose(1, 2, 0)) for v, S in zip(d.df, _V)], -1)
    np.testing.assert_allclose(d.log_prob(X), expected, rtol=RTOL)


@pytest.mark.parametrize("cls", [Wishart, InverseWishart])
def test_matrix_families_are_exponential_families(cls):
    d = cls(df=[4.5, 7.0], scale_matrix=_V)
    X = torch.as_tensor(_spd_samples(6, 2, 1))
    np.testing.assert_allclose(d._log_prob_from_natural(X.unsqueeze(1)).numpy(), d.log_prob(X.numpy()), rtol=1e-10)
    rebuilt = cls.from_natural(d.natural_parameters())
    np.testing.assert_allclose(rebuilt.scale_matrix, d.scale_matrix, rtol=1e-12)
    np.testing.assert_allclose(rebuilt.df, d.df, rtol=1e-12)


def test_von_mises_and_fixed_negative_binomial_are_exponential_families():
    vm = VonMises(loc=[0.5, -2.0], concentration=[2.0, 0.3])
    x = torch.linspace(-4, 4, 9, dtype=torch.float64)
    np.testing.assert_allclose(vm._log_prob_from_natural(x[:, None]).numpy(), vm.log_prob(x.numpy()), rtol=1e-12)
    np.testing.assert_allclose(VonMises.from_natural(vm.natural_parameters()).loc, vm.loc, rtol=1e-12)
    nb = NegativeBinomial(total_count=3.0, probs=[0.2, 0.7], fixed_total_count=3.0)
    k = torch.arange(10, dtype=torch.float64)
    np.testing.assert_allclose(nb._log_prob_from_natural(k[:, None]).numpy(), nb.log_prob(k.numpy()), rtol=1e-12)
    back = NegativeBinomial.from_natural(nb.natural_parameters(), fixed_total_count=3.0)
    np.testing.assert_allclose(back.probs, nb.probs, rtol=1e-12)
    # the mean parameter is the gradient of the log-partition
    eta = torch.tensor(nb.natural_parameters()["x"], requires_grad=True)
    grad = torch.autograd.grad((-3.0 * torch.log(-torch.expm1(eta))).sum(), eta)[0]
    np.testing.assert_allclose(grad.numpy(), nb.mean_parameters()["x"], rtol=1e-12)


# ---------------------------------------------------------------------- entropies
def test_entropies_match_scipy():
    t = StudentT(df=[0.7, 3.0, 40.0], loc=0.0, scale=[1.0, 0.5, 3.0])
    np.testing.assert_allclose(t.entropy(), stats.t(t.df, 0, t.scale).entropy(), rtol=RTOL)
    m = _mvt()
    np.testing.assert_allclose(m.entropy(), [stats.multivariate_t(l, S, df=v).entropy()
                                             for l, S, v in zip(m.loc, m.scale_matrix, m.df)], rtol=RTOL)
    nb = NegativeBinomial(total_count=[0.5, 2.5, 40.0], probs=[0.2, 0.4, 0.95])
    np.testing.assert_allclose(nb.entropy(), stats.nbinom(nb.total_count, nb.probs).entropy(), rtol=1e-9)
    vm = VonMises(loc=0.0, concentration=[0.5, 2.0, 300.0])
    np.testing.assert_allclose(vm.entropy(), stats.vonmises(vm.concentration).entropy(), rtol=1e-9)
    la = Laplace(loc=0.0, scale=[0.3, 2.0])
    np.testing.assert_allclose(la.entropy(), stats.laplace(0, la.scale).entropy(), rtol=RTOL)
    w = Wishart(df=[4.5, 7.0], scale_matrix=_V)
    np.testing.assert_allclose(w.entropy(), [stats.wishart(v, S).entropy() for v, S in zip(w.df, _V)], rtol=RTOL)


def test_inverse_wishart_entropy_by_the_change_of_variables():
    # X = W^{-1}, W ~ Wishart(df, Psi^{-1}); the Jacobian of inversion on symmetric p x p
    # matrices is |W|^{-(p+1)}, so H(X) = H(W) - (p + 1) E[log |W|].
    p = 2
    d = InverseWishart(df=[4.5, 7.0], scale_matrix=_V)
    expected = []
    for v, S in zip(d.df, _V):
        precision = np.linalg.inv(S)
        e_log_det = sum(special.digamma((v - i) / 2) for i in range(p)) + p * np.log(2) + np.linalg.slogdet(precision)[1]
        expected.append(stats.wishart(v, precision).entropy() - (p + 1) * e_log_det)
    np.testing.assert_allclose(d.entropy(), expected, rtol=RTOL)


# ---------------------------------------------------------------------- sampling
def _assert_mean(samples, expected, var, n_se=5.0):
    se = np.sqrt(var / samples.shape[0])
    assert np.all(np.abs(samples.mean(0) - expected) < n_se * se), (samples.mean(0), expected, se)


def test_sampling_moments_within_standard_errors():
    n = 40000
    t = StudentT(df=[6.0, 12.0], loc=[1.0, -2.0], scale=[2.0, 0.5])
    x = t.sample(n, random_state=0)
    ref = stats.t(t.df, t.loc, t.scale)
    _assert_mean(x, ref.mean(), ref.var())
    # variance: the sample second central moment, its variance from the fourth moment
    m4 = ref.moment(4) - 4 * ref.moment(3) * ref.mean() + 6 * ref.moment(2) * ref.mean() ** 2 - 3 * ref.mean() ** 4
    _assert_mean((x - ref.mean()) ** 2, ref.var(), m4 - ref.var() ** 2)

    nb = NegativeBinomial(total_count=[0.7, 5.0], probs=[0.3, 0.6])
    k = nb.sample(n, random_state=1)
    assert np.all(k == np.round(k)) and k.min() >= 0
    ref = stats.nbinom(nb.total_count, nb.probs)
    _assert_mean(k, ref.mean(), ref.var())

    la = Laplace(loc=[0.0, 5.0], scale=[1.0, 3.0])
    x = la.sample(n, random_state=2)
    _assert_mean(x, la.loc, 2 * la.scale ** 2)
    _assert_mean(np.abs(x - la.loc), la.scale, la.scale ** 2)  # |x - loc| ~ Exponential(scale)

    vm = VonMises(loc=[0.5, -3.0, 1.0], concentration=[0.0, 2.0, 500.0])
    a = vm.sample(n, random_state=3)
    assert a.min() >= -np.pi and a.max() < np.pi
    mean = vm.mean_parameters()
    r = special.i1e(vm.concentration) / special.i0e(vm.concentration)
    # Var cos x = (1 + A2 cos 2m) / 2 - (A cos m)^2 with A2 = I2 / I0
    a2 = special.ive(2, vm.concentration) / special.i0e(vm.concentration)
    var_cos = 0.5 * (1 + a2 * np.cos(2 * vm.loc)) - (r * np.cos(vm.loc)) ** 2
    var_sin = 0.5 * (1 - a2 * np.cos(2 * vm.loc)) - (r * np.sin(vm.loc)) ** 2
    _assert_mean(np.cos(a), mean["cos"], np.maximum(var_cos, 1e-12))
    _assert_mean(np.sin(a), mean["sin"], np.maximum(var_sin, 1e-12))


def test_multivariate_and_matrix_sampling_moments():
    n = 40000
    m = MultivariateStudentT(df=7.0, loc=[1.0, -1.0, 0.0], scale_matrix=_SHAPES[0])
    X = m.sample(n, random_state=0)
    cov = 7.0 / 5.0 * _SHAPES[0]
    _assert_mean(X, m.loc, np.diag(cov))
    ref = stats.multivariate_t(m.loc, _SHAPES[0], df=7.0).rvs(n, random_state=1)
    np.testing.assert_allclose(np.cov(X.T), np.cov(ref.T), rtol=0.08, atol=0.04)

    w = Wishart(df=6.0, scale_matrix=_V[0])
    W = w.sample(n, random_state=2)
    var = 6.0 * (_V[0] ** 2 + np.outer(np.diag(_V[0]), np.diag(_V[0])))
    _assert_mean(W.reshape(n, -1), (6.0 * _V[0]).ravel(), var.ravel())
    iw = InverseWishart(df=9.0, scale_matrix=_V[0])
    S = iw.sample(n, random_state=3)
    ref = stats.invwishart(9.0, _V[0])
    ref_draws = ref.rvs(n, random_state=4).reshape(n, -1)
    _assert_mean(S.reshape(n, -1), ref.mean().ravel(), ref_draws.var(0))
    assert np.all(np.linalg.eigvalsh(S) > 0) and np.allclose(S, S.transpose(0, 2, 1))


def test_sampling_is_reproducible():
    for d in [StudentT(df=3.0, loc=0.0, scale=1.0), _mvt(), NegativeBinomial(total_count=2.0, probs=0.4),
              VonMises(loc=0.0, concentration=3.0), Laplace(loc=0.0, scale=1.0),
              Wishart(df=4.0, scale_matrix=_V), InverseWishart(df=4.0, scale_matrix=_V)]:
        first = d.sample(5, random_state=7)
        np.testing.assert_array_equal(first, d.sample(5, random_state=7))
        assert first.shape[:1 + len(d.batch_shape)] == (5, *d.batch_shape)
        assert not np.array_equal(first, d.sample(5, random_state=8))


# ---------------------------------------------------------------------- KL divergences
def test_laplace_and_von_mises_kl_match_quadrature():
    p = Laplace(loc=[0.0, 1.0], scale=[1.0, 0.5])
    q = Laplace(loc=[0.7, -1.0], scale=[2.0, 0.3])
    got = kl_divergence(p, q)
    for i in range(2):
        f = lambda x: stats.laplace(p.loc[i], p.scale[i]).pdf(x) * (
            stats.laplace(p.loc[i], p.scale[i]).logpdf(x) - stats.laplace(q.loc[i], q.scale[i]).logpdf(x))
        points = sorted([p.loc[i], q.loc[i]])
        value = integrate.quad(f, -60, 60, points=points, epsabs=1e-13, epsrel=1e-13, limit=500)[0]
        np.testing.assert_allclose(got[i], value, rtol=1e-9)
    vp = VonMises(loc=[0.0, 2.0], concentration=[1.5, 8.0])
    vq = VonMises(loc=[1.0, -2.5], concentration=[0.5, 3.0])
    got = vp.kl_divergence(vq)
    for i in range(2):
        lp = lambda x: stats.vonmises(vp.concentration[i], loc=vp.loc[i]).logpdf(x)
        lq = lambda x: stats.vonmises(vq.concentration[i], loc=vq.loc[i]).logpdf(x)
        value = integrate.quad(lambda x: np.exp(lp(x)) * (lp(x) - lq(x)), -np.pi, np.pi, epsabs=1e-14, epsrel=1e-13,
                               limit=200)[0]
        np.testing.assert_allclose(got[i], value, rtol=1e-9)
    # torch's closed forms agree too
    tp = torch.distributions.Laplace(torch.as_tensor(p.loc), torch.as_tensor(p.scale))
    tq = torch.distributions.Laplace(torch.as_tensor(q.loc), torch.as_tensor(q.scale))
    np.testing.assert_allclose(kl_divergence(p, q), torch.distributions.kl_divergence(tp, tq).numpy(), rtol=1e-12)


def test_negative_binomial_kl_by_direct_summation():
    p = NegativeBinomial(total_count=[2.0, 2.0, 0.8], probs=[0.3, 0.7, 0.2])
    q = NegativeBinomial(total_count=[2.0, 2.0, 5.0], probs=[0.5, 0.4, 0.6])
    got = p.kl_divergence(q)  # equal r: closed form; the last member: series
    k = np.arange(0, 5000)
    for i in range(3):
        lp = stats.nbinom(p.total_count[i], p.probs[i]).logpmf(k)
        lq = stats.nbinom(q.total_count[i], q.probs[i]).logpmf(k)
        np.testing.assert_allclose(got[i], np.sum(np.exp(lp) * (lp - lq)), rtol=1e-10)


@pytest.mark.parametrize("cls", [Wishart, InverseWishart])
def test_matrix_kl_matches_monte_carlo(cls):
    p = cls(df=[5.0, 8.0], scale_matrix=_V)
    q = cls(df=[6.5, 4.0], scale_matrix=_V[::-1].copy())
    got = p.kl_divergence(q)
    n = 40000
    draws = p.sample(n, random_state=0)
    for i in range(2):
        diff = (cls(df=p.df[i], scale_matrix=_V[i]).log_prob(draws[:, i])
                - cls(df=q.df[i], scale_matrix=q.scale_matrix[i]).log_prob(draws[:, i]))
        assert abs(diff.mean() - got[i]) < 5 * diff.std() / np.sqrt(n)
    np.testing.assert_allclose(kl_divergence(p, p), 0.0, atol=1e-12)
    assert np.all(got > 0)


def test_student_t_kl_has_no_closed_form():
    with pytest.raises(NotImplementedError, match="Monte Carlo"):
        kl_divergence(StudentT(df=3.0, loc=0.0, scale=1.0), StudentT(df=4.0, loc=0.0, scale=1.0))


# ---------------------------------------------------------------------- validation and registry
@pytest.mark.parametrize("make, match", [
    (lambda: StudentT(df=0.0, loc=0.0, scale=1.0), "df must be positive"),
    (lambda: StudentT(df=3.0, loc=0.0, scale=-1.0), "scale must be positive"),
    (lambda: StudentT(df=3.0, loc=0.0, scale=1.0, fixed_df=4.0), "fixed_df"),
    (lambda: StudentT(fixed_df=-1.0), "fixed_df"),
    (lambda: StudentT(max_iter=0), "max_iter"),
    (lambda: MultivariateStudentT(df=3.0, loc=[0.0, 0.0], scale_matrix=[[1.0, 2.0], [2.0, 1.0]]), "positive definite"),
    (lambda: MultivariateStudentT(df=3.0, loc=[0.0, 0.0], scale_matrix=np.eye(3)), "trailing shape"),
    (lambda: NegativeBinomial(total_count=-1.0, probs=0.5), "total_count must be positive"),
    (lambda: NegativeBinomial(total_count=1.0, probs=0.0), "probs"),
    (lambda: VonMises(loc=0.0, concentration=-1.0), "non-negative"),
    (lambda: Laplace(loc=0.0, scale=0.0), "scale must be positive"),
    (lambda: Wishart(df=0.5, scale_matrix=np.eye(2)), "df must exceed"),
    (lambda: InverseWishart(df=3.0, scale_matrix=[[1.0, 0.5], [0.4, 1.0]]), "symmetric"),
])
def test_bad_parameters_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_data_is_rejected():
    with pytest.raises(ValueError, match="integer"):
        NegativeBinomial(total_count=1.0, probs=0.5).log_prob(np.array([1.5]))
    with pytest.raises(ValueError, match="positive definite"):
        Wishart(df=3.0, scale_matrix=np.eye(2)).log_prob(-np.eye(2)[None])
    with pytest.raises(ValueError, match="3 features"):
        MultivariateStudentT(df=3.0, loc=[0.0, 0.0], scale_matrix=np.eye(2)).log_prob(np.zeros((2, 3)))
    with pytest.raises(NotImplementedError, match="not an exponential family"):
        StudentT(df=3.0, loc=0.0, scale=1.0).natural_parameters()
    with pytest.raises(NotImplementedError, match="not an exponential family"):
        Laplace(loc=0.0, scale=1.0).log_partition()


@pytest.mark.parametrize("name, cls", [("student_t", StudentT), ("multivariate_t", MultivariateStudentT),
                                       ("negative_binomial", NegativeBinomial), ("von_mises", VonMises),
                                       ("laplace", Laplace), ("wishart", Wishart), ("inverse_wishart", InverseWishart)])
def test_registered_by_name(name, cls):
    assert type(resolve_family(name)) is cls
