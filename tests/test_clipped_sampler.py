"""The box-clipped diffusion samplers of QSM's tanh-latent variant (preset ``revflow``) and DACER
(``clip=`` of revflow.samplers' ddpm_sample / ddim_sample): samples stay in the latent box
|u| <= atanh(0.999) however large the network's predictions, the sampler equals the shared one
where the clip is inactive, and the opt-out gives the shared sampler exactly. (QSM's default,
the authors' box policy, clips its iterate to [-1, 1]: tests/test_qsm_box.py.)"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from revflow.agents.policies import LATENT_BOUND, REPLAY_CLIP
from revflow.agents.registry import get_agent_class, make_agent, make_config
from revflow.paths import VPCosine
from revflow.samplers import ddim_sample, ddpm_sample

PATH = VPCosine()
T_MIN, STEPS = 0.02, 5
OBS, ACT = 3, 2
TINY = {
    "batch_size": 8,
    "critic_hidden": (16, 16),
    "actor_hidden": 16,
    "embed_dim": 8,
    "num_particles": 3,
    "num_flow_steps": STEPS,
    "entropy_samples": 16,
    "entropy_states": 2,
}
CLIP_FIELD = {"qsm": "clip_sampler", "dacer": "clip_denoised"}
CLIP_MODE = {"qsm": "iterate", "dacer": "endpoint"}
#: The preset with the tanh-latent policy.
PRESET = {"qsm": "revflow", "dacer": "reference"}


def clipped_diffusion_sample(eps_fn, key, x_init, path, num_steps, t_start, clip):
    """Ancestral (``key`` given) or DDIM sampling from ``t_start`` to 1 in the latent box."""
    box = {"clip": clip, "bound": LATENT_BOUND}
    if key is None:
        return ddim_sample(eps_fn, x_init, path, num_steps, t_start, 1.0, **box)
    return ddpm_sample(eps_fn, key, x_init, path, num_steps, t_start, 1.0, **box)


def _agent(name: str, clip: bool = True):
    fields = {f.name for f in dataclasses.fields(get_agent_class(name).Config)}
    tiny = {k: v for k, v in TINY.items() if k in fields}
    config = make_config(name, PRESET[name], **tiny, **{CLIP_FIELD[name]: clip})
    return make_agent(name, config, OBS, ACT)


def _gaussian_eps(m: float, s: float):
    """Exact eps-prediction E[x0 | x_t] for data x1 ~ N(m, s^2) on PATH (well inside the box)."""

    def eps_fn(t, x):
        a, b = PATH.alpha(t), PATH.beta(t)
        return b * (x - a * m) / (a**2 * s**2 + b**2)

    return eps_fn


@pytest.mark.parametrize("clip", ["iterate", "endpoint"])
@pytest.mark.parametrize("ancestral", [True, False])
def test_samples_stay_in_the_box_when_the_network_predicts_huge_values(clip, ancestral):
    x_init = jax.random.normal(jax.random.key(0), (64, 2))
    key = jax.random.key(1) if ancestral else None
    for sign in (1.0, -1.0):
        eps_fn = lambda t, x, sign=sign: sign * 1e4 * jnp.ones_like(x)
        x = clipped_diffusion_sample(eps_fn, key, x_init, PATH, STEPS, T_MIN, clip)
        assert bool(jnp.all(jnp.isfinite(x)))
        assert float(jnp.max(jnp.abs(x))) <= LATENT_BOUND + 1e-5
        # The shared sampler (the old behaviour) runs off to |u| ~ 1e5: every action saturated.
        if ancestral:
            old = ddpm_sample(eps_fn, key, x_init, PATH, STEPS, T_MIN, 1.0)
        else:
            old = ddim_sample(eps_fn, x_init, PATH, STEPS, T_MIN, 1.0)
        assert float(jnp.min(jnp.abs(old))) > 1e3


@pytest.mark.parametrize("clip", ["iterate", "endpoint"])
@pytest.mark.parametrize("ancestral", [True, False])
def test_equals_the_shared_sampler_where_the_clip_is_inactive(clip, ancestral):
    eps_fn = _gaussian_eps(0.3, 0.2)
    x_init = jax.random.normal(jax.random.key(2), (256, 2))  # the marginal at t_min
    key = jax.random.key(3) if ancestral else None
    x = clipped_diffusion_sample(eps_fn, key, x_init, PATH, 10, T_MIN, clip)
    if ancestral:
        ref = ddpm_sample(eps_fn, key, x_init, PATH, 10, T_MIN, 1.0)
    else:
        ref = ddim_sample(eps_fn, x_init, PATH, 10, T_MIN, 1.0)
    assert float(jnp.max(jnp.abs(ref))) < 0.8 * LATENT_BOUND  # nothing was clipped
    np.testing.assert_allclose(np.asarray(x), np.asarray(ref), rtol=1e-4, atol=1e-4)


def test_unknown_clip_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown clip"):
        clipped_diffusion_sample(_gaussian_eps(0, 1), None, jnp.zeros((2, 2)), PATH, 2, 0.1, "x")
    with pytest.raises(ValueError, match="unknown clip"):
        ddpm_sample(_gaussian_eps(0, 1), jax.random.key(0), jnp.zeros((2, 2)), PATH, 2, clip="x")


def _blown_up(agent, state, bias: float):
    """The state with the policy net's output bias shifted by ``bias`` (eps predictions far
    off everywhere, as in the saturated Pendulum runs)."""
    params = jax.tree.map(lambda x: x, state.actor_params)
    params["params"]["out"]["bias"] = params["params"]["out"]["bias"] + bias
    return state.replace(actor_params=params)


@pytest.mark.parametrize("name", ["qsm", "dacer"])
def test_agents_clip_by_default_and_keep_latents_in_the_box(name):
    """Latents stay in the box whatever the network predicts; the old sampler (clip off)
    saturates them with the same network (median |u| > 100, as in the failed Pendulum runs)."""
    cfg = make_config(name, PRESET[name])
    assert getattr(cfg, CLIP_FIELD[name]) is True
    agent, old_agent = _agent(name), _agent(name, clip=False)
    sample = jax.jit(agent.policy.sample, static_argnums=4)
    sample_old = jax.jit(old_agent.policy.sample, static_argnums=4)
    obs = jax.random.normal(jax.random.key(4), (16, OBS))
    init = agent.init(jax.random.key(0))
    lam = agent.temperature_of(init)
    for bias in (-1e3, 3.0, 1e3):
        params = _blown_up(agent, init, bias).actor_params
        u = sample(params, jax.random.key(5), obs, lam, 4)
        assert bool(jnp.all(jnp.isfinite(u)))
        assert float(jnp.max(jnp.abs(u))) <= LATENT_BOUND + 1e-5
        u_old = sample_old(params, jax.random.key(5), obs, lam, 4)
        assert float(jnp.median(jnp.abs(u_old))) > 100.0
    a = agent.act(_blown_up(agent, init, 1e3), jax.random.key(6), obs, "best-of-n")
    assert bool(jnp.all(jnp.isfinite(a))) and float(jnp.max(jnp.abs(a))) <= REPLAY_CLIP + 1e-6


@pytest.mark.parametrize("name", ["qsm", "dacer"])
def test_opting_out_gives_the_shared_sampler_exactly(name):
    assert _agent(name).policy.clip == CLIP_MODE[name]
    agent = _agent(name, clip=False)
    assert agent.policy.clip is None
    state = agent.init(jax.random.key(0))
    obs = jax.random.normal(jax.random.key(7), (5, OBS))
    lam = agent.temperature_of(state)
    u = agent.policy.sample(state.actor_params, jax.random.key(8), obs, lam, 3)
    k_init, k_steps = jax.random.split(jax.random.key(8))
    feats = agent.policy.net.apply(
        state.actor_params, obs, method=type(agent.policy.net).embed_cond
    )

    def eps_fn(t, x):
        return agent.policy._net_as(state.actor_params, t, x, lam, feats[:, None, :], "eps")

    u_init = agent.policy.init_scale * jax.random.normal(k_init, (5, 3, ACT))
    shared = ddpm_sample(eps_fn, k_steps, u_init, agent.policy.path, STEPS, T_MIN, 1.0)
    np.testing.assert_array_equal(np.asarray(u), np.asarray(shared))


@pytest.mark.parametrize("name", ["qsm", "dacer"])
def test_clip_needs_a_diffusion_policy(name):
    with pytest.raises(ValueError, match="policy='flow'"):
        make_config(name, PRESET[name], policy="flow", sampler="euler")
    make_config(name, PRESET[name], policy="flow", sampler="euler", **{CLIP_FIELD[name]: False})
