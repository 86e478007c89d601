"""QSM (Q-score matching) and DIPO (action gradient + behaviour cloning): updates, acting,
config validation and each method's defining target (baselines note). QSM's tanh-latent
variant (preset ``revflow``) here; its default, the authors' box policy: tests/test_qsm_box.py."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _support import TINY_NETS
from revflow.agents.base import Batch
from revflow.agents.dipo import improve_actions
from revflow.agents.qsm import score_target
from revflow.agents.registry import available, make_agent, make_config
from revflow.losses import generative_loss
from revflow.paths import VPCosine

OBS, ACT, B = 3, 2, 6
TINY = {
    "batch_size": B,
    **TINY_NETS,
    "num_flow_steps": 3,
}
AGENTS = ("qsm", "dipo")


def _batch(seed: int = 0) -> Batch:
    r = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(r.standard_normal(s), jnp.float32)
    return Batch(f(B, OBS), jnp.tanh(f(B, ACT)), f(B), f(B, OBS), jnp.full((B,), 0.99))


@functools.cache
def _tiny(name: str, preset: str = "reference"):
    agent = make_agent(name, make_config(name, preset, **TINY), OBS, ACT)
    return agent, jax.jit(agent.update)


def test_registered_with_published_defaults():
    assert {"qsm", "dipo"} <= set(available())
    q = make_config("qsm", "revflow")
    assert (q.q_scale, q.explore_noise, q.target_noise, q.num_flow_steps) == (50.0, 0.1, 0.1, 20)
    assert (q.policy, q.path, q.parameterisation, q.t_min, q.time_scale) == (
        "diffusion",
        "vp-cosine",
        "eps",
        0.02,
        1000.0,
    )
    d = make_config("dipo")
    assert (d.action_steps, d.action_lr, d.num_flow_steps, d.path) == (20, 0.03, 20, "vp-cosine")
    for name in AGENTS:
        fast, ref = make_config(name, "fast"), make_config(name)
        assert fast.num_particles * fast.num_flow_steps < ref.num_particles * ref.num_flow_steps


@pytest.mark.parametrize("name", AGENTS)
def test_update_finite_metrics_and_actor_changes(name):
    agent, update = _tiny(name)
    state = agent.init(jax.random.PRNGKey(0))
    new_state, metrics = update(state, _batch(), jax.random.PRNGKey(1))
    assert set(metrics) == set(agent.METRICS)
    for k, v in metrics.items():
        assert np.isfinite(float(v)), k
    leaves0 = jax.tree_util.tree_leaves(state.actor_params)
    leaves1 = jax.tree_util.tree_leaves(new_state.actor_params)
    assert any(not np.allclose(a, b) for a, b in zip(leaves0, leaves1, strict=True))
    assert int(new_state.step) == 1


@pytest.mark.parametrize("name", AGENTS)
@pytest.mark.parametrize("mode", ["explore", "best-of-n", "sample"])
def test_act_modes_shape_and_range(name, mode):
    agent, _ = _tiny(name)
    state = agent.init(jax.random.PRNGKey(0))
    a = agent.act(state, jax.random.PRNGKey(2), _batch().obs, mode)
    assert a.shape == (B, ACT)
    assert bool(jnp.all(jnp.abs(a) <= 1.0)) and bool(jnp.all(jnp.isfinite(a)))


@pytest.mark.parametrize(
    ("name", "overrides", "match"),
    [
        ("qsm", {"q_scale": 0.0}, "q_scale=0.0"),
        ("qsm", {"explore_noise": -0.1}, "explore_noise=-0.1"),
        ("qsm", {"target_noise": float("nan")}, "target_noise=nan"),
        ("qsm", {"endpoint_source": "policy"}, "unknown config field(s) ['endpoint_source']"),
        ("qsm", {"entropy_backup": True}, "unknown config field(s) ['entropy_backup']"),
        ("qsm", {"num_reverse_samples": 8}, "unknown config field(s) ['num_reverse_samples']"),
        ("dipo", {"action_steps": 0}, "action_steps=0"),
        ("dipo", {"action_lr": -1.0}, "action_lr=-1.0"),
        ("dipo", {"action_optimizer": "lbfgs"}, "action_optimizer='lbfgs'"),
        ("dipo", {"sampler": "euler"}, "sampler='euler'"),
    ],
)
def test_config_validation_names_field(name, overrides, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        make_config(name, **overrides)


def test_qsm_target_is_scaled_q_gradient_at_noisy_action():
    agent, _ = _tiny("qsm", "revflow")
    state = agent.init(jax.random.PRNGKey(3))
    batch = _batch(1)
    r = np.random.default_rng(5)
    u_t = jnp.asarray(r.standard_normal((B, ACT)) * 1.5, jnp.float32)
    t = jnp.asarray(r.uniform(0.05, 0.95, B), jnp.float32)
    target = score_target(agent, state.critic_params, batch.obs, u_t, t)

    m = 50.0
    beta = np.sqrt(1.0 - np.asarray(VPCosine().alpha(t)) ** 2)
    for i in range(B):

        def log_p(u, i=i):  # independent: M min_k Q_k(s, tanh u) + sum log(1 - tanh^2 u)
            q = agent.critic.net.apply(state.critic_params, batch.obs[i], jnp.tanh(u))
            return m * jnp.min(q) + jnp.sum(jnp.log1p(-(jnp.tanh(u) ** 2)))

        expected = -beta[i] * np.asarray(jax.grad(log_p)(u_t[i]))
        np.testing.assert_allclose(np.asarray(target[i]), expected, rtol=2e-4, atol=1e-5)
    # The Q term dominates with M = 50: the target is not just the Jacobian term.
    jac_only = -beta[:, None] * np.asarray(-2.0 * jnp.tanh(u_t))
    assert not np.allclose(np.asarray(target), jac_only, atol=1e-3)


def test_dipo_improved_actions_increase_known_quadratic_q():
    center = jnp.asarray([0.3, -0.5])

    def q_fn(a):  # (B, D) -> (B,), maximum inside the box at `center`
        return -jnp.sum((a - center) ** 2, axis=-1)

    a0 = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (B, ACT)), jnp.float32)
    a1 = improve_actions(q_fn, a0, 20, 0.03, "adam")
    assert bool(jnp.all(q_fn(a1) > q_fn(a0)))
    assert bool(jnp.all(jnp.abs(a1) <= 1.0))
    # 20 Adam steps of lr 0.03 move each coordinate by up to ~0.6: most of the gap is closed.
    assert float(jnp.mean(q_fn(a1))) > 0.4 * float(jnp.mean(q_fn(a0)))
    assert bool(jnp.all(q_fn(improve_actions(q_fn, a0, 20, 0.03, "sgd")) > q_fn(a0)))


def test_dipo_loss_zero_for_exact_noise_prediction():
    agent, _ = _tiny("dipo")
    r = np.random.default_rng(2)
    u_star = jnp.asarray(r.standard_normal((B, ACT)), jnp.float32)
    eps = jnp.asarray(r.standard_normal((B, ACT)), jnp.float32)
    t = jnp.asarray(r.uniform(0.05, 0.95, B), jnp.float32)
    path = VPCosine()
    u_t = path.alpha(t)[:, None] * u_star + path.beta(t)[:, None] * eps
    assert agent.policy.parameterisation == "eps" and isinstance(agent.policy.path, VPCosine)
    exact = generative_loss(lambda tt, x: eps, path, t, u_t, u_star, "eps")
    assert float(exact) < 1e-8
    off = generative_loss(lambda tt, x: eps + 0.1, path, t, u_t, u_star, "eps")
    np.testing.assert_allclose(float(off), 0.01 * ACT, rtol=1e-3)
