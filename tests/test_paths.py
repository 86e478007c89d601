"""Probability paths and the conversions between parameterisations (method note §2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revflow import paths

ALL_PATHS = [paths.Linear(), paths.VPCosine(), paths.VPLinear(), paths.VE()]
IDS = [p.name for p in ALL_PATHS]


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_derivatives_match_finite_differences(path):
    t = np.linspace(0.05, 0.95, 19)
    h = 1e-3
    with jax.enable_x64(True):
        t64 = jnp.asarray(t, jnp.float64)
        fd_a = (path.alpha(t64 + h) - path.alpha(t64 - h)) / (2 * h)
        fd_b = (path.beta(t64 + h) - path.beta(t64 - h)) / (2 * h)
        np.testing.assert_allclose(path.d_alpha(t64), fd_a, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(path.d_beta(t64), fd_b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("path", ALL_PATHS[:3], ids=IDS[:3])
def test_boundary_values(path):
    assert float(path.alpha(1.0)) == pytest.approx(1.0, abs=1e-6)
    assert float(path.beta(1.0)) == pytest.approx(0.0, abs=1e-3)
    assert float(path.alpha(0.0)) < 0.01 and float(path.beta(0.0)) > 0.99


@pytest.mark.parametrize("path", [paths.VPCosine(), paths.VPLinear()], ids=["cos", "lin"])
def test_variance_preserving(path):
    t = jnp.linspace(0, 1, 11)
    np.testing.assert_allclose(path.alpha(t) ** 2 + path.beta(t) ** 2, 1.0, atol=1e-6)


def test_ve_is_geometric():
    path = paths.VE(sigma_min=0.02, sigma_max=8.0)
    assert float(path.beta(0.0)) == pytest.approx(8.0, rel=1e-6)
    assert float(path.beta(1.0)) == pytest.approx(0.02, rel=1e-5)
    assert float(path.beta(0.5)) == pytest.approx(np.sqrt(0.02 * 8.0), rel=1e-5)
    with pytest.raises(ValueError, match=r"sigma_min=3\.0"):
        paths.VE(sigma_min=3.0, sigma_max=1.0)


def _gauss_posterior_mean(path, t, x_t, m, s):
    a, b = path.alpha(t), path.beta(t)
    return m + a * s**2 / (a**2 * s**2 + b**2) * (x_t - a * m)


def _log_pt(path, t, x, m, s):
    a, b = path.alpha(t), path.beta(t)
    var = a**2 * s**2 + b**2
    return -0.5 * jnp.sum((x - a * m) ** 2) / var


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
@pytest.mark.parametrize("t", [0.2, 0.5, 0.8])
def test_score_conversion_matches_finite_difference_of_marginal(path, t):
    """For p1 = N(m, s^2 I), p_t is Gaussian: the score from mu1 must equal grad log p_t."""
    m, s = jnp.array([0.3, -0.5]), 0.6
    x = jnp.array([0.2, 0.4])
    with jax.enable_x64(True):
        x64, m64 = x.astype(jnp.float64), m.astype(jnp.float64)
        h = 1e-5
        fd = jnp.array(
            [
                (_log_pt(path, t, x64 + h * e, m64, s) - _log_pt(path, t, x64 - h * e, m64, s))
                / (2 * h)
                for e in jnp.eye(2, dtype=jnp.float64)
            ]
        )
        mu1 = _gauss_posterior_mean(path, t, x64, m64, s)
        np.testing.assert_allclose(paths.x1_to_score(path, t, x64, mu1), fd, rtol=1e-5)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_velocity_transports_marginals(path):
    """Continuity equation check: d/dt E[x_t] = E[v_t(x_t)] = alpha' m for p1 = N(m, s^2)
    and the velocity of the mean point of a Gaussian path equals the mean's derivative."""
    m, s, t = jnp.array([0.7, -0.2]), 0.5, 0.4
    x_mean = path.alpha(t) * m
    mu1 = _gauss_posterior_mean(path, t, x_mean, m, s)
    v = paths.x1_to_velocity(path, t, x_mean, mu1)
    np.testing.assert_allclose(v, path.d_alpha(t) * m, rtol=1e-4, atol=1e-6)


def test_linear_velocity_is_mu1_minus_mu0():
    path, t = paths.Linear(), 0.3
    x_t, mu1 = jnp.array([0.5, 1.0]), jnp.array([1.5, -0.5])
    mu0 = paths.x1_to_eps(path, t, x_t, mu1)
    np.testing.assert_allclose(paths.x1_to_velocity(path, t, x_t, mu1), mu1 - mu0, rtol=1e-6)
    np.testing.assert_allclose(
        paths.x1_to_velocity(path, t, x_t, mu1), (mu1 - x_t) / (1 - t), rtol=1e-5
    )


@settings(max_examples=20, deadline=None)
@given(
    idx=st.integers(0, 3),
    t=st.floats(0.02, 0.98),
    src=st.sampled_from(paths.PARAMETERISATIONS),
    dst=st.sampled_from(paths.PARAMETERISATIONS),
    batch=st.integers(1, 4),
)
def test_conversions_round_trip(idx, t, src, dst, batch):
    path = ALL_PATHS[idx]
    key = jax.random.key(idx)
    x_t = jax.random.normal(key, (batch, 3))
    value = jax.random.normal(jax.random.fold_in(key, 1), (batch, 3))
    tt = jnp.full((batch,), t)  # per-row t broadcasts over the last dim
    there = paths.convert(path, tt, x_t, value, src, dst)
    back = paths.convert(path, tt, x_t, there, dst, src)
    assert there.shape == value.shape
    np.testing.assert_allclose(back, value, rtol=2e-3, atol=2e-3)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown path 'cosine'"):
        paths.make_path("cosine")
    with pytest.raises(ValueError, match="unknown parameterisation 'noise'"):
        paths.convert(paths.Linear(), 0.5, jnp.zeros(2), jnp.zeros(2), "noise", "x1")
    assert isinstance(paths.make_path("ve", sigma_max=5.0), paths.VE)
