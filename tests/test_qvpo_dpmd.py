"""QVPO and DPMD: weighted denoising on the current policy's samples (baselines note,
"Weighted regression"): published defaults, a finite update with its documented metrics,
act modes, config errors, and each method's defining weights."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _support import TINY_NETS
from revflow.agents.base import Batch
from revflow.agents.dpmd import dpmd_weights
from revflow.agents.qvpo import qvpo_weights
from revflow.agents.registry import available, make_agent, make_config
from revflow.agents.weighted_denoising import denoising_loss, noise_draw, uniform_action_loss

OBS, ACT, B = 3, 2, 4
TINY = {
    "batch_size": B,
    **TINY_NETS,
    "num_flow_steps": 2,
    "num_policy_samples": 5,
}
AGENTS = ("qvpo", "dpmd")


def _batch(seed: int = 0) -> Batch:
    r = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(r.standard_normal(s), jnp.float32)
    return Batch(f(B, OBS), jnp.tanh(f(B, ACT)), f(B), f(B, OBS), jnp.full((B,), 0.99))


@functools.cache
def _tiny(name: str, preset: str = "reference"):
    agent = make_agent(name, make_config(name, preset, **TINY), OBS, ACT)
    return agent, jax.jit(agent.update)


def test_registered_with_published_defaults():
    assert set(AGENTS) <= set(available())
    q = make_config("qvpo")
    assert (q.num_policy_samples, q.entropy_weight, q.entropy_samples) == (64, 0.02, 10)
    assert (q.behaviour_particles, q.target_particles, q.num_particles) == (4, 4, 32)
    assert (q.path, q.parameterisation, q.num_flow_steps, q.t_min, q.time_scale) == (
        "vp-cosine",
        "eps",
        20,
        0.02,
        1000.0,
    )
    d = make_config("dpmd")
    assert (d.path, d.parameterisation, d.num_flow_steps, d.alpha) == ("vp-cosine", "eps", 20, 1.0)
    for name in AGENTS:
        fast, ref = make_config(name, "fast"), make_config(name)
        assert fast.num_policy_samples < ref.num_policy_samples
        assert fast.num_flow_steps < ref.num_flow_steps


@pytest.mark.parametrize(
    ("name", "overrides", "match"),
    [
        ("qvpo", {"entropy_weight": -1.0}, "entropy_weight=-1.0"),
        ("qvpo", {"num_policy_samples": 0}, "num_policy_samples=0"),
        ("qvpo", {"behaviour_particles": 0}, "behaviour_particles=0"),
        ("dpmd", {"alpha": 0.0}, "alpha=0.0"),
        ("dpmd", {"num_policy_samples": 1}, "num_policy_samples=1"),
        ("dpmd", {"sampler": "euler"}, "sampler='euler'"),
    ],
)
def test_invalid_config_names_the_field(name, overrides, match):
    with pytest.raises(ValueError, match=match):
        make_config(name, **overrides)


@pytest.mark.parametrize("name", AGENTS)
def test_update_is_finite_reports_metrics_and_acts(name):
    agent, update = _tiny(name)
    state = agent.init(jax.random.key(0))
    new, metrics = update(state, _batch(), jax.random.key(1))
    assert set(metrics) == set(type(agent).METRICS)
    for key, value in metrics.items():
        assert np.isfinite(float(value)), key
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.actor_params, state.actor_params)
    assert any(jax.tree.leaves(changed))
    obs = jax.random.normal(jax.random.key(3), (5, OBS))
    act = jax.jit(agent.act, static_argnames="mode")
    for mode in ("explore", "best-of-n", "sample"):
        a = act(new, jax.random.key(4), obs, mode=mode)
        assert a.shape == (5, ACT)
        assert np.all(np.isfinite(np.asarray(a))) and np.all(np.abs(np.asarray(a)) <= 1.0)
    if name == "qvpo":  # the default trains on each state's best sample: its weight is > 0
        assert 0.0 < float(metrics["positive_fraction"]) <= 1.0
        assert float(metrics["entropy_loss"]) > 0.0


def test_qvpo_weights_are_clipped_advantages():
    q = jnp.array([[1.0, 2.0, 3.0, 6.0], [-5.0, -1.0, -3.0, -3.0]])
    w = np.asarray(qvpo_weights(q))
    v = np.array([[3.0], [-3.0]])  # mean Q over the samples
    adv = np.asarray(q) - v
    assert np.all(w[adv <= 0] == 0.0)
    np.testing.assert_allclose(w[adv > 0], adv[adv > 0], rtol=1e-6)
    np.testing.assert_allclose(w, [[0, 0, 0, 3.0], [0, 2.0, 0, 0]], rtol=1e-6)


def test_dpmd_weights_match_an_independent_computation():
    r = np.random.default_rng(0)
    q = r.standard_normal((3, 50)) * 4.0 + 10.0
    q[0, 0] = 1e3  # a clipped outlier: z > 3
    alpha = 0.7
    expected = np.empty_like(q)
    for i, row in enumerate(q):
        z = (row - row.mean()) / (row.std() + 1e-6)
        expected[i] = np.exp(np.minimum(np.maximum(z, -3.0), 3.0) / alpha)
    w, _ = dpmd_weights(jnp.asarray(q, jnp.float32), alpha)
    np.testing.assert_allclose(np.asarray(w), expected, rtol=1e-4)
    assert float(w[0, 0]) == pytest.approx(np.exp(3.0 / alpha), rel=1e-5)


@pytest.mark.parametrize("name", AGENTS)
def test_denoising_loss_is_zero_for_the_exact_noise(name):
    """The latent weighted-denoising loss (dpmd; qvpo's preset revflow)."""
    agent, _ = _tiny(name, "revflow" if name == "qvpo" else "reference")
    rows = 7
    t, eps = noise_draw(agent, jax.random.key(0), rows)
    u1 = jax.random.normal(jax.random.key(1), (rows, ACT))
    w = jnp.linspace(0.1, 2.0, rows)
    exact = denoising_loss(agent, lambda tt, x: eps, t, eps, u1, w)
    assert float(exact) == pytest.approx(0.0, abs=1e-8)
    wrong = denoising_loss(agent, lambda tt, x: jnp.zeros_like(x), t, eps, u1, w)
    expected = np.mean(np.asarray(w) * np.sum(np.asarray(eps) ** 2, -1))
    assert float(wrong) == pytest.approx(expected, rel=1e-3)
    # zero weights silence the loss whatever the prediction
    zero = denoising_loss(agent, lambda tt, x: jnp.zeros_like(x), t, eps, u1, jnp.zeros(rows))
    assert float(zero) == 0.0
    if name == "qvpo":  # the entropy term is the same denoising loss on uniform actions
        obs = jnp.zeros((2, OBS))
        _, k_noise = jax.random.split(jax.random.key(5))
        n = 2 * agent.config.entropy_samples
        _, eps_u = noise_draw(agent, k_noise, n)
        c = agent.config
        entropy_loss = functools.partial(
            uniform_action_loss, agent, c.entropy_samples, c.entropy_weight
        )
        extra, aux = entropy_loss(lambda o: lambda tt, x: eps_u, jax.random.key(5), obs)
        assert float(aux["entropy_loss"]) == pytest.approx(0.0, abs=1e-8)
        extra, aux = entropy_loss(lambda o: lambda tt, x: jnp.zeros_like(x), jax.random.key(5), obs)
        assert float(extra) == pytest.approx(0.02 * float(aux["entropy_loss"]), rel=1e-6)
        assert float(aux["entropy_loss"]) > 0.0
