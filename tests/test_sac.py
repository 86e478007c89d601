"""SAC agent: update numerics, log-probabilities, act modes and config validation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from revflow.agents.base import Batch
from revflow.agents.policies import squashed_gaussian as _squashed_gaussian
from revflow.agents.registry import available, get_agent_class, make_agent, make_config
from revflow.agents.sac import SAC, SACConfig

OBS, ACT, B = 5, 2, 64


def _batch(seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    return Batch(
        obs=jnp.asarray(rng.normal(size=(B, OBS)), jnp.float32),
        action=jnp.asarray(rng.uniform(-1, 1, (B, ACT)), jnp.float32),
        reward=jnp.asarray(rng.normal(size=B), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(B, OBS)), jnp.float32),
        discount=jnp.full((B,), 0.99, jnp.float32),
    )


def test_registered() -> None:
    assert "sac" in available()
    assert get_agent_class("sac") is SAC


def test_update_finite_and_reduces_critic_loss_on_fixed_batch() -> None:
    agent = make_agent("sac", make_config("sac", "fast", batch_size=B), OBS, ACT)
    state = agent.init(jax.random.PRNGKey(0))
    batch = _batch()
    update = jax.jit(agent.update)
    losses = []
    for i in range(300):
        state, metrics = update(state, batch, jax.random.PRNGKey(i))
        losses.append(float(metrics["critic_loss"]))
        if i == 0:
            assert set(metrics) == set(SAC.METRICS)
    for value in metrics.values():
        assert np.isfinite(np.asarray(value)).all()
    assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(state))
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:5])
    assert int(state.step) == 300
    # Polyak targets move slowly towards the online critics but are not equal to them.
    online = jax.tree_util.tree_leaves(state.critic_params)
    target = jax.tree_util.tree_leaves(state.target_critic_params)
    assert any(not np.allclose(a, b) for a, b in zip(online, target, strict=True))


def test_temperature_moves_towards_target_entropy() -> None:
    # With a very low entropy target alpha must shrink; with autotune off it stays fixed.
    cfg = make_config("sac", "fast", batch_size=B, target_entropy=-50.0, alpha_lr=1e-2)
    agent = make_agent("sac", cfg, OBS, ACT)
    state = agent.init(jax.random.PRNGKey(1))
    update = jax.jit(agent.update)
    for i in range(50):
        state, metrics = update(state, _batch(), jax.random.PRNGKey(i))
    assert float(metrics["alpha"]) < 0.9
    frozen = make_agent("sac", make_config("sac", "fast", autotune_alpha=False), OBS, ACT)
    fstate = frozen.init(jax.random.PRNGKey(1))
    fstate, fmetrics = jax.jit(frozen.update)(fstate, _batch(), jax.random.PRNGKey(0))
    assert float(fmetrics["alpha"]) == pytest.approx(1.0)


def test_squashed_gaussian_log_prob_matches_change_of_variables() -> None:
    mean = jnp.array([[0.3, -1.2], [2.0, 0.0]], jnp.float32)
    log_std = jnp.array([[-0.5, 0.2], [0.1, -2.0]], jnp.float32)
    key = jax.random.PRNGKey(3)
    action, logp = _squashed_gaussian(mean, log_std, key)
    eps = jax.random.normal(key, mean.shape)
    u = np.asarray(mean + jnp.exp(log_std) * eps, np.float64)
    expected = stats.norm.logpdf(u, np.asarray(mean), np.exp(np.asarray(log_std))) - np.log(
        1 - np.tanh(u) ** 2
    )
    np.testing.assert_allclose(np.asarray(action), np.tanh(u), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(logp), expected.sum(-1), rtol=1e-4, atol=1e-4)


def test_squashed_gaussian_epsilon_correction() -> None:
    """log_det_eps > 0: the tanh correction is log(1 - a^2 + eps) (the authors' / CleanRL's)."""
    mean = jnp.array([[0.3, -1.2], [2.0, 0.0]], jnp.float32)
    log_std = jnp.array([[-0.5, 0.2], [0.1, -2.0]], jnp.float32)
    key = jax.random.PRNGKey(3)
    action, logp = _squashed_gaussian(mean, log_std, key, 1e-6)
    eps = np.asarray(jax.random.normal(key, mean.shape), np.float64)
    a = np.asarray(action, np.float64)
    expected = (
        -0.5 * eps**2 - np.asarray(log_std) - 0.5 * np.log(2 * np.pi) - np.log(1 - a**2 + 1e-6)
    )
    np.testing.assert_allclose(np.asarray(logp), expected.sum(-1), rtol=1e-5, atol=1e-5)


def test_log_std_bounds_clip_or_tanh() -> None:
    obs = 50.0 * _batch().obs  # drives raw log-stds far outside [-20, 2]
    for preset, (lo, hi) in (("reference", (-20.0, 2.0)), ("standard", (-5.0, 2.0))):
        agent = make_agent("sac", make_config("sac", preset), OBS, ACT)
        state = agent.init(jax.random.PRNGKey(0))
        _, log_std = agent.policy.dist(state.actor_params, obs)
        assert float(log_std.min()) >= lo and float(log_std.max()) <= hi
    clip = make_agent("sac", make_config("sac", "reference"), OBS, ACT)
    _, log_std = clip.policy.dist(clip.init(jax.random.PRNGKey(0)).actor_params, obs)
    assert float(log_std.max()) == 2.0  # a hard clip reaches the bound


def test_act_modes() -> None:
    agent = make_agent("sac", make_config("sac", "fast"), OBS, ACT)
    state = agent.init(jax.random.PRNGKey(0))
    obs = _batch().obs
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    for mode in ("explore", "sample", "best-of-n"):
        a = np.asarray(agent.act(state, k1, obs, mode))
        assert a.shape == (B, ACT) and np.all(np.abs(a) <= 1)
    greedy = np.asarray(agent.act(state, k1, obs, "best-of-n"))
    np.testing.assert_array_equal(greedy, np.asarray(agent.act(state, k2, obs, "best-of-n")))
    assert not np.allclose(agent.act(state, k1, obs, "sample"), agent.act(state, k2, obs, "sample"))
    with pytest.raises(ValueError, match="unknown act mode"):
        agent.act(state, k1, obs, "greedy")


def test_presets_and_defaults() -> None:
    ref = SACConfig.from_preset("reference")
    # The authors' SAC (configs/default.yaml, src/agent/sac.py).
    assert (ref.actor_lr, ref.critic_lr, ref.batch_size, ref.gamma, ref.tau) == (
        3e-4,
        1e-3,
        256,
        0.99,
        0.005,
    )
    assert ref.actor_hidden == (256, 256)
    assert (ref.max_grad_norm, ref.log_std_min, ref.log_std_max, ref.log_std_bound) == (
        0.0,
        -20.0,
        2.0,
        "clip",
    )
    assert (ref.actor_arch, ref.network_init, ref.alpha_loss, ref.critic_clip) == (
        "residual",
        "orthogonal",
        "alpha",
        "per-critic",
    )
    std = SACConfig.from_preset("standard")  # CleanRL's sac_continuous_action.py
    assert (std.critic_lr, std.alpha_lr, std.log_std_min, std.log_std_bound) == (
        1e-3,
        1e-3,
        -5.0,
        "tanh",
    )
    assert (std.actor_arch, std.max_grad_norm) == ("mlp", 0.0)
    old = SACConfig.from_preset("revflow")
    assert (old.critic_lr, old.max_grad_norm, old.alpha_loss, old.log_det_eps) == (
        3e-4,
        10.0,
        "log-alpha",
        0.0,
    )
    assert SACConfig.from_preset("fast").critic_hidden == (128, 128)
    agent = make_agent("sac", ref, OBS, 3)
    assert agent.target_entropy == -3.0
    assert math.isclose(float(jnp.exp(agent.init(jax.random.PRNGKey(0)).log_alpha)), 1.0)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"actor_lr": 0.0}, "actor_lr"),
        ({"critic_lr": float("nan")}, "critic_lr"),
        ({"gamma": 1.5}, "gamma"),
        ({"tau": 0.0}, "tau"),
        ({"batch_size": 0}, "batch_size"),
        ({"actor_hidden": ()}, "actor_hidden"),
        ({"critic_hidden": (0, 4)}, "critic_hidden"),
        ({"num_critics": 0}, "num_critics"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"init_alpha": 0.0}, "init_alpha"),
        ({"target_entropy": float("inf")}, "target_entropy"),
        ({"log_std_min": 3.0}, "log_std_min"),
        ({"log_std_bound": "soft"}, "log_std_bound"),
        ({"actor_arch": "cnn"}, "actor_arch"),
        ({"actor_hidden": (64, 32)}, "actor_hidden"),
        ({"network_init": "xavier"}, "network_init"),
        ({"alpha_loss": "alpha2"}, "alpha_loss"),
        ({"critic_clip": "each"}, "critic_clip"),
        ({"log_det_eps": -1e-6}, "log_det_eps"),
        ({"no_such_field": 1}, "unknown config field"),
    ],
)
def test_config_validation(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SACConfig.from_preset("reference", **overrides)


def test_unknown_preset_and_wrong_config_type() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        SACConfig.from_preset("turbo")
    from revflow.agents.base import AgentConfig

    with pytest.raises(TypeError):
        SAC(AgentConfig(), OBS, ACT)  # type: ignore[arg-type]
