"""Tests for revflow.samplers with a Gaussian target whose fields are known in closed form.

Target p1 = N(m, diag(s^2)). On a path x_t = alpha x1 + beta x0 the marginal is
N(alpha m, sigma2) with sigma2 = alpha^2 s^2 + beta^2, and (Gaussian conjugacy)
    E[x1 | x_t] = m + alpha s^2 (x_t - alpha m) / sigma2,
    E[x0 | x_t] = beta (x_t - alpha m) / sigma2,
    v_t(x_t)    = alpha' E[x1 | x_t] + beta' E[x0 | x_t].
The probability-flow ODE maps x0 to alpha_t m + sqrt(sigma2_t) x0, i.e. to m + s x0 at t = 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from revflow.paths import VE, Linear, VPCosine, VPLinear
from revflow.samplers import (
    ddim_sample,
    ddpm_sample,
    flow_ode_sample,
    select_argmax,
    select_boltzmann,
)

M = jnp.array([1.0, -2.0])
S = jnp.array([0.5, 1.5])
N_SAMPLES = 20_000


def _sigma2(path, t):
    a, b = path.alpha(t), path.beta(t)
    return a**2 * S**2 + b**2


def exact_eps(path):
    def eps_fn(t, x):
        assert jnp.ndim(t) == 0, "samplers must pass t as a scalar"
        return path.beta(t) * (x - path.alpha(t) * M) / _sigma2(path, t)

    return eps_fn


def exact_velocity(path):
    def v_fn(t, x):
        assert jnp.ndim(t) == 0, "samplers must pass t as a scalar"
        a = path.alpha(t)
        mu1 = M + a * S**2 * (x - a * M) / _sigma2(path, t)
        return path.d_alpha(t) * mu1 + path.d_beta(t) * exact_eps(path)(t, x)

    return v_fn


def _check_moments(x, mean_tol=0.04, std_rtol=0.04):
    x = np.asarray(x)
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x.mean(0), M, atol=mean_tol)
    np.testing.assert_allclose(x.std(0), S, rtol=std_rtol)


RNG = np.random.default_rng(0)
X0 = jnp.asarray(RNG.standard_normal((N_SAMPLES, 2)), dtype=jnp.float32)


# ----------------------------------------------------------------------------- flow ODE


@pytest.mark.parametrize(("method", "steps"), [("euler", 200), ("heun", 30)])
def test_flow_ode_gaussian_linear_path(method, steps):
    path = Linear()
    x1 = flow_ode_sample(exact_velocity(path), X0, steps, method=method)
    assert x1.shape == X0.shape
    _check_moments(x1)
    # the exact flow map is x0 -> m + s x0
    np.testing.assert_allclose(x1, M + S * X0, atol=0.05)


def _endpoint_error(method, steps):
    path = Linear()
    x0 = X0[:256]
    x1 = flow_ode_sample(exact_velocity(path), x0, steps, method=method)
    return float(jnp.max(jnp.abs(x1 - (M + S * x0))))


def test_heun_converges_faster_than_euler():
    euler = [_endpoint_error("euler", n) for n in (4, 8, 16)]
    heun = [_endpoint_error("heun", n) for n in (4, 8, 16)]
    for e, h in zip(euler, heun, strict=True):
        assert h < 0.5 * e, (euler, heun)
    # first order: halving dt halves the error; second order: quarters it
    assert 1.5 < euler[1] / euler[2] < 2.6, euler
    assert heun[1] / heun[2] > 3.0, heun


def test_flow_ode_intermediate_states_follow_the_exact_path():
    """The first k of n Heun steps on [0, 1] (k steps on [0, k/n]) land on the exact path."""
    path = Linear()
    x0 = X0[:512]
    n = 100
    for k in (25, 50, 75):
        t = k / n
        state = flow_ode_sample(exact_velocity(path), x0, k, 0.0, t, method="heun")
        exact = path.alpha(t) * M + jnp.sqrt(_sigma2(path, t)) * x0
        np.testing.assert_allclose(state, exact, atol=1e-3)


def test_flow_ode_partial_interval_reference_schedule():
    """Reference schedule (10 Euler steps on [0.01, 0.99]) follows the exact path on VPCosine."""
    path = VPCosine()
    t0, t1 = 0.01, 0.99
    x_start = path.alpha(t0) * M + jnp.sqrt(_sigma2(path, t0)) * X0
    x_end = flow_ode_sample(exact_velocity(path), x_start, 200, t_start=t0, t_end=t1)
    exact = path.alpha(t1) * M + jnp.sqrt(_sigma2(path, t1)) * X0
    np.testing.assert_allclose(x_end, exact, atol=0.05)
    assert flow_ode_sample(exact_velocity(path), x_start, 10, t0, t1).shape == X0.shape


def test_flow_ode_leading_dims_and_jit():
    path = Linear()
    x0 = X0[:60].reshape(3, 5, 4, 2)
    out = flow_ode_sample(exact_velocity(path), x0, 10, 0.01, 0.99, "heun")
    flat = flow_ode_sample(exact_velocity(path), x0.reshape(-1, 2), 10, 0.01, 0.99, "heun")
    assert out.shape == x0.shape
    np.testing.assert_allclose(out.reshape(-1, 2), flat, rtol=1e-6, atol=1e-6)
    jitted = jax.jit(lambda x: flow_ode_sample(exact_velocity(path), x, 10, 0.01, 0.99))
    np.testing.assert_allclose(
        jitted(x0), flow_ode_sample(exact_velocity(path), x0, 10, 0.01, 0.99), atol=1e-5
    )


def test_flow_ode_bad_arguments():
    v = exact_velocity(Linear())
    with pytest.raises(ValueError, match="rk4"):
        flow_ode_sample(v, X0[:2], 10, method="rk4")
    with pytest.raises(ValueError, match="num_steps=0"):
        flow_ode_sample(v, X0[:2], 0)
    with pytest.raises(ValueError, match=r"num_steps=2\.5"):
        flow_ode_sample(v, X0[:2], 2.5)
    with pytest.raises(ValueError, match="t_start and t_end must be scalars"):
        flow_ode_sample(v, X0[:2], 3, t_start=jnp.zeros(2))


# ----------------------------------------------------------------------------- diffusion

DIFFUSION_PATHS = [VPCosine(), VPLinear(), VE(), Linear()]
T_START = 1e-3


def _x_init(path):
    return path.alpha(T_START) * M + jnp.sqrt(_sigma2(path, T_START)) * X0


@pytest.mark.parametrize("path", DIFFUSION_PATHS, ids=lambda p: p.name)
def test_ddpm_reproduces_gaussian(path):
    x = ddpm_sample(exact_eps(path), jax.random.key(1), _x_init(path), path, 200)
    _check_moments(x)


@pytest.mark.parametrize("path", DIFFUSION_PATHS, ids=lambda p: p.name)
def test_ddim_reproduces_gaussian(path):
    x = ddim_sample(exact_eps(path), _x_init(path), path, 100)
    _check_moments(x)
    # eta = 0 is deterministic: it discretises the probability-flow map
    # x0 -> alpha_1 m + sqrt(sigma2_1) x0 (= m + s x0 when beta_1 = 0), same x0 as x_init
    exact = path.alpha(1.0) * M + jnp.sqrt(_sigma2(path, 1.0)) * X0
    np.testing.assert_allclose(x, exact, atol=0.05, rtol=0.02)


def test_ddim_eta_one_is_stochastic_and_correct():
    path = VPCosine()
    x = ddim_sample(exact_eps(path), _x_init(path), path, 200, eta=1.0, key=jax.random.key(2))
    _check_moments(x)
    assert float(jnp.abs(x - (M + S * X0)).mean()) > 0.1  # noise was injected
    with pytest.raises(ValueError, match="key"):
        ddim_sample(exact_eps(path), X0[:2], path, 5, eta=0.5)
    with pytest.raises(ValueError, match="eta=-1"):
        ddim_sample(exact_eps(path), X0[:2], path, 5, eta=-1.0)


def test_diffusion_samplers_leading_dims_determinism_and_errors():
    path = VPLinear()
    eps = exact_eps(path)
    x_init = X0[:24].reshape(2, 3, 4, 2)
    a = ddim_sample(eps, x_init, path, 20)
    assert a.shape == x_init.shape
    np.testing.assert_allclose(
        a.reshape(-1, 2), ddim_sample(eps, x_init.reshape(-1, 2), path, 20), atol=1e-5
    )
    k = jax.random.key(3)
    jitted = jax.jit(lambda key, x: ddpm_sample(eps, key, x, path, 20))
    b = jitted(k, x_init)
    assert b.shape == x_init.shape
    np.testing.assert_array_equal(b, jitted(k, x_init))
    assert not np.allclose(b, jitted(jax.random.key(4), x_init))
    np.testing.assert_allclose(ddpm_sample(eps, k, x_init, path, 20), b, atol=1e-4)
    with pytest.raises(ValueError, match="num_steps=0"):
        ddpm_sample(eps, k, x_init, path, 0)
    with pytest.raises(ValueError, match="num_steps=-3"):
        ddim_sample(eps, x_init, path, -3)


# ----------------------------------------------------------------------------- selection


def _frequencies(idx, n):
    return np.bincount(np.asarray(idx).ravel(), minlength=n)


def _chi2(counts, probs):
    expected = probs * counts.sum()
    return float(np.sum((counts - expected) ** 2 / expected))


def _index_particles(n, m):
    # particle i of every state is the 1-D point i, so the picked value is the index
    return jnp.broadcast_to(jnp.arange(n, dtype=jnp.float32)[:, None], (m, n, 1))


def test_select_boltzmann_frequencies_match_softmax():
    logw = jnp.array([0.0, 1.0, -1.0, 2.0, 0.5])
    m = 20_000
    picked = select_boltzmann(jax.random.key(5), _index_particles(5, m), jnp.tile(logw, (m, 1)))
    assert picked.shape == (m, 1)
    counts = _frequencies(picked[:, 0].astype(int), 5)
    # chi-square with 4 degrees of freedom: P(chi2 > 25) ~ 5e-5
    assert _chi2(counts, np.asarray(jax.nn.softmax(logw))) < 25.0, counts


def test_select_boltzmann_degenerate_weights():
    m = 8_000
    parts = _index_particles(4, m)
    uniform = np.full(4, 0.25)
    for bad in (jnp.full((m, 4), -jnp.inf), jnp.full((m, 4), jnp.nan)):
        counts = _frequencies(select_boltzmann(jax.random.key(6), parts, bad)[:, 0].astype(int), 4)
        assert _chi2(counts, uniform) < 25.0, counts
    mixed = jnp.tile(jnp.array([jnp.nan, 0.0, -jnp.inf, 0.0]), (m, 1))
    counts = _frequencies(select_boltzmann(jax.random.key(7), parts, mixed)[:, 0].astype(int), 4)
    assert counts[0] == 0 and counts[2] == 0
    assert _chi2(counts[[1, 3]], np.array([0.5, 0.5])) < 20.0
    posinf = jnp.tile(jnp.array([5.0, jnp.inf, 0.0, jnp.nan]), (m, 1))
    picked = select_boltzmann(jax.random.key(8), parts, posinf)
    np.testing.assert_array_equal(picked, 1.0)


def test_select_boltzmann_leading_dims_and_sharp_weights():
    parts = jnp.asarray(RNG.standard_normal((2, 3, 6, 4)), dtype=jnp.float32)
    scores = jnp.asarray(RNG.standard_normal((2, 3, 6)), dtype=jnp.float32)
    picked = select_boltzmann(jax.random.key(11), parts, 1e4 * scores)  # ~ argmax
    assert picked.shape == (2, 3, 4)
    np.testing.assert_allclose(picked, select_argmax(parts, scores))
    with pytest.raises(ValueError, match=r"\(2, 3, 5\)"):
        select_boltzmann(jax.random.key(0), parts, scores[..., :5])


def test_select_argmax():
    parts = RNG.standard_normal((4, 7, 3)).astype(np.float32)
    scores = RNG.standard_normal((4, 7)).astype(np.float32)
    expected = parts[np.arange(4), scores.argmax(-1)]
    np.testing.assert_array_equal(select_argmax(parts, scores), expected)
    scores_nan = scores.copy()
    scores_nan[:, 0] = np.nan
    best = np.where(np.isnan(scores_nan), -np.inf, scores_nan).argmax(-1)
    np.testing.assert_array_equal(select_argmax(parts, scores_nan), parts[np.arange(4), best])
    with pytest.raises(ValueError, match="scores shape"):
        select_argmax(parts, scores[:, None])
    with pytest.raises(ValueError, match=r"\(\.\.\., N, D\)"):
        select_argmax(parts[0, 0], scores[0])
