"""qsm's default, the authors' QSM with the box diffusion policy (revflow.agents.box_diffusion
with QSM's options, revflow.agents.qsm): the discrete VP-beta schedule and the integer-step
time input, the iterate-clipped sampler, the eps target, the update and the evaluation rule;
old saved configs. Equality with the authors' code on stored inputs is
tests/test_fidelity_revflow_side.py."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from revflow.agents import box_diffusion as bd
from revflow.agents import qsm
from revflow.agents.base import Batch
from revflow.agents.registry import get_agent_class, make_agent, make_config

OBS, ACT, B = 3, 2, 6
TINY = {"batch_size": B, "critic_hidden": (16, 16), "actor_hidden": 16, "embed_dim": 8,
        "num_flow_steps": 4}  # fmt: skip


@pytest.mark.parametrize("steps", [1, 5, 20])
def test_vp_beta_schedule_closed_form(steps: int) -> None:
    """beta_k = 1 - exp(-b_min/T - (b_max - b_min)(2k - 1)/(2T^2)); since sum_k (2k - 1) = T^2,
    abar at the noise end is exp(-(b_min + b_max)/2) = exp(-5.05) whatever T."""
    sch = bd.vp_beta_schedule(steps)
    k = np.arange(1, steps + 1)
    betas = 1.0 - np.exp(-0.1 / steps - 9.9 * (2 * k - 1) / (2 * steps**2))
    np.testing.assert_allclose(sch.betas, betas, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sch.alphas, 1.0 - betas, rtol=1e-5)
    np.testing.assert_allclose(sch.alpha_hats, np.cumprod(1.0 - betas), rtol=2e-5)
    assert float(sch.alpha_hat_prevs[0]) == 1.0
    np.testing.assert_array_equal(sch.alpha_hat_prevs[1:], sch.alpha_hats)
    assert float(sch.alpha_hats[-1]) == pytest.approx(math.exp(-5.05), rel=1e-4)


def _policy(**options):
    agent = make_agent("qsm", make_config("qsm", **TINY), OBS, ACT)
    return agent, dataclasses.replace(agent.policy, **options)


@pytest.mark.parametrize("field", ["schedule_kind", "time_input", "clip_at", "noise_std"])
def test_an_unknown_policy_option_is_refused_by_name(field: str) -> None:
    _, policy = _policy()
    with pytest.raises(ValueError, match=f"{field} must be one of"):
        dataclasses.replace(policy, **{field: "nope"})


def test_policy_options_and_integer_step_time_input() -> None:
    agent, policy = _policy()
    options = (policy.schedule_kind, policy.time_input, policy.clip_at)
    assert options == ("vp-beta", "step", "iterate")
    params = jax.jit(agent.init)(jax.random.key(0)).actor_params
    x = jax.random.normal(jax.random.key(1), (B, ACT))
    obs = jax.random.normal(jax.random.key(2), (B, OBS))
    k = jnp.arange(B) % 4
    direct = policy.net.apply(params, k.astype(jnp.float32), x, obs, jnp.ones((B,)))
    np.testing.assert_array_equal(policy.eps_at_step(params, k, x, obs, jnp.float32(1.0)), direct)


def test_eps_form_equals_the_x0_form_without_clipping() -> None:
    """QSM's step (x - (1 - alpha)/sqrt(1 - abar) eps)/sqrt(alpha) is MaxEntDP's posterior mean
    from x0 when nothing is clipped; with the clip every iterate stays in [-1, 1]."""
    agent, eps_form = _policy(clip=False)
    x0_form = dataclasses.replace(eps_form, clip_at="x0")
    params = jax.jit(agent.init)(jax.random.key(0)).actor_params
    obs = jax.random.normal(jax.random.key(3), (64, OBS))
    x_init, noise = eps_form.draws(jax.random.key(4), 64)
    one = eps_form.sample_with_noise(params, obs, jnp.float32(1.0), x_init, noise)
    two = x0_form.sample_with_noise(params, obs, jnp.float32(1.0), x_init, noise)
    assert float(jnp.max(jnp.abs(one))) > 1.0  # unclipped
    np.testing.assert_allclose(one, two, rtol=1e-4, atol=1e-4)
    # blown-up predictions: the clipped sampler keeps every iterate in the box
    params["params"]["out"]["bias"] = params["params"]["out"]["bias"] + 1e3
    clipped = agent.policy.sample_with_noise(params, obs, jnp.float32(1.0), x_init, noise)
    assert bool(jnp.all(jnp.isfinite(clipped))) and float(jnp.max(jnp.abs(clipped))) <= 1.0


def test_eps_target_is_minus_m_times_the_mean_critic_gradient() -> None:
    """Two quadratic critics Q_j(a) = -||a - c_j||^2: -M mean_j grad Q_j = 2M(a - mean_j c_j)
    (the mean of the critics' gradients, not the gradient of their minimum)."""
    centres = jnp.asarray([[0.5, -0.2], [-0.3, 0.4]])

    def q_each(obs, a):
        return -jnp.sum((a[None] - centres[:, None, :]) ** 2, axis=-1)

    a = jax.random.uniform(jax.random.key(5), (B, ACT), minval=-1, maxval=1)
    target = qsm.box_eps_target(q_each, jnp.zeros((B, OBS)), a, 50.0)
    np.testing.assert_allclose(target, 100.0 * (a - jnp.mean(centres, 0)), rtol=1e-5, atol=1e-5)


def _batch() -> Batch:
    r = np.random.default_rng(0)
    f = lambda *s: jnp.asarray(r.standard_normal(s), jnp.float32)
    return Batch(f(B, OBS), jnp.tanh(f(B, ACT)), f(B), f(B, OBS), jnp.full((B,), 0.99))


def test_update_reads_the_critics_after_their_step_and_evaluates_by_the_state() -> None:
    agent = make_agent("qsm", make_config("qsm", **TINY), OBS, ACT)
    state = jax.jit(agent.init)(jax.random.key(0))
    new, metrics = jax.jit(agent.update)(state, _batch(), jax.random.key(1))
    assert set(metrics) == set(type(agent).METRICS)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    # the eps target is a function of the critics handed over (the updated ones), not of the
    # target critics
    _, keys, _ = agent.objective.split(jax.random.key(2))
    other = jax.jit(agent.init)(jax.random.key(9)).critic_params
    target = jax.jit(lambda s, c: agent.objective.actor_inputs(s, c, _batch(), keys)[0][3])
    one = target(state, state.critic_params)
    np.testing.assert_array_equal(one, target(state.replace(target_critic_params=other),
                                              state.critic_params))  # fmt: skip
    assert not np.array_equal(one, target(state, other))
    obs = jax.random.normal(jax.random.key(3), (5, OBS))
    act = jax.jit(agent.act, static_argnames="mode")
    explore, sample = (act(new, jax.random.key(4), obs, mode=m) for m in ("explore", "sample"))
    for a in (explore, sample):
        assert a.shape == (5, ACT) and float(jnp.max(jnp.abs(a))) <= 1.0
    assert not np.array_equal(explore, sample)  # exploration noise on top of the sample
    # evaluation: one sample per state from its state-hash key, whatever the key given
    best = act(new, jax.random.key(4), obs, mode="best-of-n")
    np.testing.assert_array_equal(best, act(new, jax.random.key(5), obs, mode="best-of-n"))
    one = act(new, jax.random.key(4), jnp.concatenate([obs[2:], obs[:2]]), mode="best-of-n")
    np.testing.assert_allclose(jnp.concatenate([best[2:], best[:2]]), one, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="unknown act mode"):
        agent.act(new, jax.random.key(4), obs, "greedy")


def test_configs_saved_before_the_authors_defaults_keep_their_behaviour() -> None:
    """A qsm config saved before ``policy_space`` existed (revflow's tanh-latent qsm, clipping
    at 10, LeCun init) loads as the ``revflow`` preset; the default is the authors' QSM."""
    config_cls = get_agent_class("qsm").Config
    old = make_config("qsm", "revflow").to_dict()
    for new_field in ("policy_space", "network_init", "embedding", "actor_loss_reduction",
                      "critic_clip"):  # fmt: skip
        del old[new_field]
    assert config_cls.from_dict(old) == make_config("qsm", "revflow")
    default = make_config("qsm")
    assert (default.policy_space, default.max_grad_norm, default.network_init) == (
        "box",
        0.0,
        "orthogonal",
    )
    with pytest.raises(ValueError, match="policy_space='tanh'"):
        make_config("qsm", policy_space="tanh")
    with pytest.raises(ValueError, match="actor_loss_reduction='max'"):
        make_config("qsm", actor_loss_reduction="max")
