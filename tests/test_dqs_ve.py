"""dqs's default parts, the authors' DQS (revflow.agents.ve_score, revflow.agents.dqs): the VE
schedule's closed forms, the Euler-Maruyama sampler against its recursion written out, the
iDEM score target on critics whose gradient is known, the loss weight, the critics the target
reads, and acting (a noise-free evaluation that is a function of the state alone).
Quantity-by-quantity agreement with the authors' code: tests/test_fidelity_revflow_side.py."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _support import TINY_NETS
from revflow.agents.base import Batch
from revflow.agents.dqs import score_target
from revflow.agents.registry import make_agent, make_config
from revflow.agents.ve_score import VEScorePolicy, ve_g, ve_h

OBS, ACT, B = 4, 2, 8
SMALL = {
    "batch_size": B,
    **TINY_NETS,
    "num_flow_steps": 4,
    "num_reverse_samples": 6,
}
SIGMA_MIN, SIGMA_D = 1e-5, 1e5


def _batch(seed: int = 0) -> Batch:
    r = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(r.standard_normal(s), jnp.float32)
    return Batch(f(B, OBS), jnp.tanh(f(B, ACT)), f(B), f(B, OBS), jnp.full((B,), 0.99))


def test_ve_schedule_closed_forms() -> None:
    """h(0) = 0, h(1) = sigma_min^2 (sigma_d^2 - 1) ~ 1 (noise std sqrt(h), not sigma_min
    sigma_d^t), g(t) = sigma_min sigma_d^t sqrt(2 log sigma_d)."""
    assert float(ve_h(0.0, SIGMA_MIN, SIGMA_D)) == 0.0
    assert float(ve_h(1.0, SIGMA_MIN, SIGMA_D)) == pytest.approx(1.0 - 1e-10, rel=1e-6)
    assert float(ve_h(0.5, SIGMA_MIN, SIGMA_D)) == pytest.approx(1e-10 * (1e5 - 1), rel=1e-5)
    assert float(ve_g(1.0, SIGMA_MIN, SIGMA_D)) == pytest.approx(math.sqrt(2 * math.log(1e5)))
    assert float(ve_g(0.0, SIGMA_MIN, SIGMA_D)) == pytest.approx(
        1e-5 * math.sqrt(2 * math.log(1e5))
    )


@settings(max_examples=25, deadline=None)
@given(st.floats(0.05, 1.0))
def test_g_squared_is_the_derivative_of_h(t: float) -> None:
    dh = jax.grad(lambda x: ve_h(x, SIGMA_MIN, SIGMA_D))(jnp.float32(t))
    assert float(dh) == pytest.approx(float(ve_g(t, SIGMA_MIN, SIGMA_D)) ** 2, rel=1e-4)


class _GaussianScore:
    """The score of N(0, (s0^2 + h(t)) I): the exact score of Gaussian data N(0, s0^2 I)."""

    s0 = 0.3

    def apply(self, params: Any, t: Any, x: Any, obs: Any, lam: Any) -> Any:
        return -x / (self.s0**2 + ve_h(t, SIGMA_MIN, SIGMA_D))[..., None]


@pytest.mark.parametrize("scale", [0.0, 1.0])
def test_euler_maruyama_sampler_is_the_authors_recursion(scale: float) -> None:
    """x0 = sqrt(h(1)) x_init; at t_k = 1 - k/N: x <- x + g^2 score dt + c g sqrt(dt) z_k."""
    n, s0 = 5, _GaussianScore.s0
    policy = VEScorePolicy(_GaussianScore(), ACT, n, SIGMA_MIN, SIGMA_MIN * SIGMA_D)
    r = np.random.default_rng(1)
    x_init = r.standard_normal((B, ACT)).astype(np.float32)
    noise = r.standard_normal((n, B, ACT)).astype(np.float32)
    got = policy.sample_with_noise(None, jnp.zeros((B, OBS)), 0.05, x_init, noise, scale)
    x, dt = x_init.astype(np.float64) * math.sqrt(1e-10 * (1e10 - 1)), 1.0 / n
    for k in range(n):
        t = 1.0 - k / n
        g2 = 1e-10 * 1e10**t * 2 * math.log(1e5)
        h = 1e-10 * (1e10**t - 1)
        x = x - g2 * x / (s0**2 + h) * dt + scale * math.sqrt(g2 * dt) * noise[k]
    np.testing.assert_allclose(np.asarray(got), x, rtol=1e-4, atol=1e-5)


def test_draws_follow_the_authors_key_order() -> None:
    """x_init from the key itself, then per step ``key, carry = split(key)``."""
    policy = VEScorePolicy(_GaussianScore(), ACT, 3, SIGMA_MIN, 1.0)
    key = jax.random.PRNGKey(5)
    x_init, noise, after = policy.draws(key, B)
    np.testing.assert_array_equal(x_init, jax.random.normal(key, (B, ACT)))
    carry = key
    for k in range(3):
        k_noise, carry = jax.random.split(carry)
        np.testing.assert_array_equal(noise[k], jax.random.normal(k_noise, (B, ACT)))
    np.testing.assert_array_equal(after, carry)


def test_score_target_of_known_critics() -> None:
    """A linear Q = w.a has the target w/lam whatever the noise; with one sample (K = 1) the
    target is grad Q at the sampled point / lam (here a quadratic Q)."""
    r = np.random.default_rng(2)
    obs = jnp.asarray(r.standard_normal((B, OBS)), jnp.float32)
    a_t = jnp.asarray(r.standard_normal((B, ACT)), jnp.float32)
    sqrt_h = jnp.asarray(r.uniform(0.1, 1.0, B), jnp.float32)
    xi = jnp.asarray(r.standard_normal((B, 7, ACT)), jnp.float32)
    w_lin = jnp.array([0.5, -2.0])
    target, weights = jax.jit(score_target, static_argnums=0)(
        lambda o, a: a @ w_lin, obs, a_t, sqrt_h, xi, 0.05
    )
    np.testing.assert_allclose(target, jnp.broadcast_to(w_lin / 0.05, (B, ACT)), rtol=1e-5)
    np.testing.assert_allclose(jnp.sum(weights, axis=1), 1.0, rtol=1e-6)
    quad = lambda o, a: -0.5 * jnp.sum((a - 0.2) ** 2, -1)
    one, _ = score_target(quad, obs, a_t, sqrt_h, xi[:, :1], 0.5)
    point = a_t + sqrt_h[:, None] * xi[:, 0]
    np.testing.assert_allclose(one, -(point - 0.2) / 0.5, rtol=1e-5, atol=1e-6)


def test_update_reads_the_critics_before_their_step_and_weights_the_loss() -> None:
    """The actor's inputs do not depend on the freshly stepped critics; the loss is
    mean_b (h(t) + 1e-3) mean_D (score - target)^2; the update is finite with its metrics."""
    agent = make_agent("dqs", make_config("dqs", **SMALL), OBS, ACT)
    state, batch = agent.init(jax.random.PRNGKey(0)), _batch()
    objective, policy = agent.objective, agent.policy

    @jax.jit
    def quantities(state: Any, key: Any) -> tuple:
        _, keys, _ = objective.split(key)
        other = jax.tree.map(lambda p: p + 1.0, state.critic_params)
        inputs, _ = objective.actor_inputs(state, other, batch, keys)
        again, _ = objective.actor_inputs(state, state.critic_params, batch, keys)
        obs, t, a_t, target, weight, lam = inputs
        err = policy.score(state.actor_params, t, a_t, obs, lam) - target
        expected = jnp.mean(weight * jnp.mean(err**2, -1))
        return inputs, again, objective.actor_loss(state.actor_params, inputs)[0], expected

    inputs, again, loss, expected = quantities(state, jax.random.PRNGKey(1))
    for x, y in zip(inputs, again, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(inputs[4], policy.h(inputs[1]) + 1e-3, rtol=1e-6)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    new, metrics = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(1))
    assert set(metrics) == set(type(agent).METRICS)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert int(new.step) == 1


@pytest.mark.parametrize("eval_rule", ["noise-free", "best-of-n"])
def test_acting(eval_rule: str) -> None:
    """Actions in [-1, 1]; the noise-free evaluation is tanh of the drift-only sample from
    the state-hash keys: the same whatever the key, and per state whatever the batch."""
    agent = make_agent("dqs", make_config("dqs", **SMALL, eval_rule=eval_rule), OBS, ACT)
    state, obs = agent.init(jax.random.PRNGKey(0)), _batch(3).obs
    act = jax.jit(agent.act, static_argnums=3)
    for mode in ("explore", "sample", "best-of-n"):
        a = np.asarray(act(state, jax.random.PRNGKey(1), obs, mode))
        assert a.shape == (B, ACT) and np.all(np.abs(a) <= 1.0)
    first = act(state, jax.random.PRNGKey(1), obs, "best-of-n")
    second = act(state, jax.random.PRNGKey(2), obs, "best-of-n")
    if eval_rule == "noise-free":
        np.testing.assert_array_equal(first, second)
        np.testing.assert_array_equal(
            first[:3], act(state, jax.random.PRNGKey(3), obs[:3], "best-of-n")
        )
        lam = agent.temperature_of(state)
        raw = jax.jit(agent.policy.noise_free)(state.actor_params, obs, lam)
        np.testing.assert_allclose(first, jnp.tanh(raw), rtol=0, atol=1e-6)
    else:
        assert not np.array_equal(first, second)
    with pytest.raises(ValueError, match="unknown act mode"):
        agent.act(state, jax.random.PRNGKey(1), obs, "greedy")


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"policy_space": "box"}, "policy_space='box'"),
        ({"eval_rule": "mean"}, "eval_rule='mean'"),
        ({"diffusion_scale": -1.0}, "diffusion_scale=-1.0"),
        ({"loss_weight_floor": -1e-3}, "loss_weight_floor=-0.001"),
    ],
)
def test_invalid_config_is_rejected(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_config("dqs", **overrides)
