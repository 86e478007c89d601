"""Tests for revflow.losses: targets, reduction, and stop-gradient behaviour."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from revflow.losses import generative_loss, regression_loss, regression_target
from revflow.paths import Linear, VPCosine, convert

RNG = np.random.default_rng(0)


def _normal(*shape):
    return jnp.asarray(RNG.standard_normal(shape), dtype=jnp.float32)


B, D = 6, 3
X_T = _normal(B, D)
MU1 = _normal(B, D)
T_ROWS = jnp.linspace(0.05, 0.95, B)


def test_linear_velocity_target_is_mu1_minus_mu0():
    """Method note §6: on the linear path the velocity target is mu1 - mu0."""
    t = T_ROWS[:, None]
    mu0 = (X_T - t * MU1) / (1.0 - t)  # x_t = t mu1 + (1 - t) mu0
    target = regression_target(Linear(), T_ROWS, X_T, MU1)
    np.testing.assert_allclose(target, MU1 - mu0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(target, (MU1 - X_T) / (1.0 - t), rtol=1e-5, atol=1e-5)
    scalar_t = regression_target(Linear(), 0.3, X_T, MU1)
    np.testing.assert_allclose(scalar_t, (MU1 - X_T) / 0.7, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("param", ["velocity", "eps", "x1", "score"])
def test_target_is_convert_of_mu1(param):
    path = VPCosine()
    target = regression_target(path, T_ROWS, X_T, MU1, param)
    np.testing.assert_allclose(
        target, convert(path, T_ROWS, X_T, MU1, "x1", param), rtol=1e-6, atol=1e-6
    )
    if param == "eps":
        a, b = path.alpha(T_ROWS)[:, None], path.beta(T_ROWS)[:, None]
        np.testing.assert_allclose(target, (X_T - a * MU1) / b, rtol=1e-5, atol=1e-5)
    if param == "x1":
        np.testing.assert_array_equal(target, MU1)


def test_regression_loss_reduction():
    pred = jnp.array([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]])
    target = jnp.array([[0.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    # per-row sums over the last axis: 5, 4, 4; mean over rows
    np.testing.assert_allclose(regression_loss(pred, target), 13.0 / 3.0, rtol=1e-6)
    w = jnp.array([2.0, 0.0, 1.0])
    np.testing.assert_allclose(regression_loss(pred, target, w), (10.0 + 4.0) / 3.0, rtol=1e-6)
    # multi-dim leading axes: mean over all rows
    pred4 = jnp.stack([pred, pred])
    np.testing.assert_allclose(regression_loss(pred4, jnp.stack([target, target])), 13.0 / 3.0)
    assert regression_loss(pred, target).shape == ()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"\(6, 2\)"):
        regression_loss(X_T, X_T[:, :2])
    with pytest.raises(ValueError, match="weights shape"):
        regression_loss(X_T, X_T, jnp.ones(4))
    with pytest.raises(ValueError, match="'flow'"):
        regression_target(Linear(), 0.5, X_T, MU1, "flow")
    with pytest.raises(ValueError, match="mu1 shape"):
        regression_target(Linear(), 0.5, X_T, MU1[:3])


def test_generative_loss_zero_at_target_and_positive_elsewhere():
    path = VPCosine()
    exact = lambda t, x: regression_target(path, t, x, MU1, "eps")
    assert float(generative_loss(exact, path, T_ROWS, X_T, MU1, "eps")) < 1e-10
    off = lambda t, x: exact(t, x) + 0.5
    np.testing.assert_allclose(generative_loss(off, path, T_ROWS, X_T, MU1, "eps"), 0.25 * D)


def test_gradient_flows_only_into_prediction():
    path = Linear()
    target = regression_target(path, T_ROWS, X_T, MU1)

    def loss(theta, mu1):
        return generative_loss(lambda t, x: theta * x, path, T_ROWS, X_T, mu1)

    g_theta, g_mu1 = jax.grad(loss, argnums=(0, 1))(0.7, MU1)
    np.testing.assert_array_equal(g_mu1, 0.0)
    expected = 2.0 * jnp.mean(jnp.sum((0.7 * X_T - target) * X_T, axis=-1))
    np.testing.assert_allclose(g_theta, expected, rtol=1e-5)
    assert abs(float(g_theta)) > 1e-3
    # the target itself carries no gradient either
    g_direct = jax.grad(lambda m: jnp.sum(regression_target(path, 0.5, X_T, m)))(MU1)
    np.testing.assert_array_equal(g_direct, 0.0)
