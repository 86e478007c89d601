"""DACER: backpropagation through the diffusion sampler, entropy-tuned exploration noise."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from _support import TINY_NETS
from revflow.agents.base import Batch
from revflow.agents.dacer import estimate_entropy, gaussian_fit_entropy
from revflow.agents.registry import available, make_agent, make_config

OBS, ACT, B = 4, 2, 8
TINY = {
    "batch_size": B,
    **TINY_NETS,
    "num_flow_steps": 4,
    "entropy_samples": 16,
    "entropy_states": 2,
}


def _batch(seed: int = 0) -> Batch:
    r = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(r.standard_normal(s), jnp.float32)
    return Batch(f(B, OBS), jnp.tanh(f(B, ACT)), f(B), f(B, OBS), jnp.full((B,), 0.99))


@functools.cache
def _tiny():
    agent = make_agent("dacer", make_config("dacer", **TINY), OBS, ACT)
    return agent, jax.jit(agent.update)


def test_registered_with_published_defaults():
    assert "dacer" in available()
    c = make_config("dacer")
    assert (c.policy, c.path, c.parameterisation, c.sampler, c.num_flow_steps) == (
        "diffusion",
        "vp-cosine",
        "eps",
        "ddpm",
        20,
    )
    assert (c.explore_noise, c.target_entropy_scale) == (0.1, -0.9)
    assert (c.entropy_samples, c.entropy_every, c.time_scale, c.t_min) == (
        200,
        10_000,
        1000.0,
        0.02,
    )
    fast = make_config("dacer", "fast")
    assert fast.num_flow_steps < c.num_flow_steps and fast.entropy_every < c.entropy_every
    agent = make_agent("dacer", c, OBS, 3)
    assert agent.noise_temperature.target_entropy == pytest.approx(-2.7)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"explore_noise": 0.0}, "explore_noise=0.0"),
        ({"alpha_lr": -1.0}, "alpha_lr=-1.0"),
        ({"entropy_samples": 1}, "entropy_samples=1"),
        ({"entropy_every": 0}, "entropy_every=0"),
        ({"target_entropy_scale": math.inf}, "target_entropy_scale=inf"),
        ({"sampler": "euler"}, "sampler='euler'"),
    ],
)
def test_invalid_config_is_rejected(overrides, match):
    with pytest.raises(ValueError, match=match):
        make_config("dacer", **overrides)


@pytest.mark.extended
def test_update_is_finite_reports_metrics_and_acts():
    agent, update = _tiny()
    state = agent.init(jax.random.key(0))
    new, metrics = update(state, _batch(), jax.random.key(1))
    assert set(metrics) == set(type(agent).METRICS)
    for key, value in metrics.items():
        assert np.isfinite(float(value)), key
    assert int(new.step) == 1
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.actor_params, state.actor_params)
    assert any(jax.tree.leaves(changed))
    # step 0 refits the entropy (a real estimate, not the zero placeholder)
    assert float(new.entropy) != 0.0 and float(metrics["entropy"]) == float(new.entropy)
    obs = jax.random.normal(jax.random.key(3), (5, OBS))
    for mode in ("explore", "best-of-n", "sample"):
        a = agent.act(new, jax.random.key(4), obs, mode)
        assert a.shape == (5, ACT)
        assert np.all(np.isfinite(np.asarray(a))) and np.all(np.abs(np.asarray(a)) <= 1.0)
    # explore = the plain sample plus Gaussian noise of std 0.1 alpha
    plain = agent.act(new, jax.random.key(4), obs, "sample")
    noisy = agent.act(new, jax.random.key(4), obs, "explore")
    assert not np.allclose(plain, noisy)
    with pytest.raises(ValueError, match="unknown act mode"):
        agent.act(new, jax.random.key(4), obs, "greedy")


@pytest.mark.parametrize("clip_denoised", [True, pytest.param(False, marks=pytest.mark.extended)])
def test_actor_gradient_flows_through_every_layer_and_matches_finite_differences(clip_denoised):
    """The actor loss -min Q(s, tanh u_theta(s, xi)) with fixed sampler noise xi: its
    gradient is non-zero for every parameter array of the network (it flows through the
    sampler) and, for the unclipped sampler, equals the central finite difference along a
    random direction. The clipped sampler (the default) is only piecewise smooth: a step of
    h can move a sample across the edge of the box, so the difference is not checked."""
    if clip_denoised:
        agent, update = _tiny()
    else:
        agent = make_agent("dacer", make_config("dacer", clip_denoised=False, **TINY), OBS, ACT)
        update = jax.jit(agent.update)
    state = agent.init(jax.random.key(0))
    state, _ = update(state, _batch(), jax.random.key(1))  # non-trivial critics
    obs, key = _batch(5).obs, jax.random.key(9)
    lam = agent.temperature_of(state)

    def loss(params):
        return agent.objective.actor_loss(params, (state.critic_params, obs, key, lam))[0]

    grads = jax.grad(loss)(state.actor_params)
    flat = jax.tree_util.tree_leaves_with_path(grads)
    assert len(flat) >= 6
    for path, g in flat:
        assert float(jnp.linalg.norm(g)) > 0.0, jax.tree_util.keystr(path)
    if clip_denoised:
        return

    leaves, treedef = jax.tree.flatten(state.actor_params)
    keys = jax.random.split(jax.random.key(11), len(leaves))
    direction = jax.tree.unflatten(
        treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    )
    direction = jax.tree.map(lambda d: d / optax.tree.norm(direction), direction)
    analytic = float(optax.tree.vdot(grads, direction))
    h = 1e-2
    shift = lambda s: jax.tree.map(lambda p, d: p + s * d, state.actor_params, direction)
    numeric = (float(loss(shift(h))) - float(loss(shift(-h)))) / (2 * h)
    assert abs(analytic) > 1e-4
    assert numeric == pytest.approx(analytic, rel=2e-2, abs=1e-4)


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_alpha_moves_towards_the_entropy_target(sign):
    """Entropy below the target -> alpha grows (more noise); above -> alpha shrinks. At a
    step that is not a refit step the stored estimate is used, so it can be set here."""
    agent, update = _tiny()
    state = agent.init(jax.random.key(0))
    state = state.replace(
        step=jnp.asarray(1, jnp.int32), entropy=agent.noise_temperature.target_entropy + sign
    )
    new, metrics = update(state, _batch(), jax.random.key(1))
    assert float(metrics["entropy"]) == pytest.approx(agent.noise_temperature.target_entropy + sign)
    moved = float(new.log_alpha) - float(state.log_alpha)
    assert moved != 0.0 and np.sign(moved) == -sign
    assert float(metrics["alpha_loss"]) == pytest.approx(float(state.log_alpha) * sign)


def test_gaussian_fit_entropy_and_the_estimate_tracks_alpha():
    cov = jnp.array([[0.5, 0.1], [0.1, 0.2]])
    x = jax.random.multivariate_normal(jax.random.key(0), jnp.zeros(2), cov, (3, 4000))
    exact = 0.5 * (2 * math.log(2 * math.pi * math.e) + math.log(float(jnp.linalg.det(cov))))
    np.testing.assert_allclose(gaussian_fit_entropy(x), exact, atol=0.05)
    # The policy's estimate grows with the exploration noise alpha.
    agent, _ = _tiny()
    state = agent.init(jax.random.key(0))
    obs = _batch().obs
    low = estimate_entropy(agent, state, jax.random.key(2), obs)
    high = estimate_entropy(
        agent, state.replace(log_alpha=jnp.asarray(3.0)), jax.random.key(2), obs
    )
    assert float(high) > float(low)
