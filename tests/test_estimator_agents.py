"""The estimator-based agents sharing revflow.agents.posterior: rfm-diffusion, qne, dqs, sdac.

Each agent's actor target must be the estimator family's member it claims (method note §4,
baselines note), its update finite with its documented metrics, and the diffusion sampler and
log-likelihood must reproduce a Gaussian policy given its exact eps.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _support import TINY_NETS
from revflow import estimators
from revflow.agents.base import Batch
from revflow.agents.policies import sampler_log_prob
from revflow.agents.registry import available, make_agent, make_config
from revflow.paths import VE, VPCosine, x1_to_eps
from revflow.samplers import ddim_sample, ddpm_sample

OBS, ACT, B = 4, 2, 8
TINY = {
    "batch_size": B,
    **TINY_NETS,
    "num_flow_steps": 4,
    "num_reverse_samples": 6,
}
AGENTS = ("rfm-diffusion", "qne", "dqs", "sdac")


def _batch(seed: int = 0) -> Batch:
    r = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(r.standard_normal(s), jnp.float32)
    return Batch(f(B, OBS), jnp.tanh(f(B, ACT)), f(B), f(B, OBS), jnp.full((B,), 0.99))


#: The posterior-target members checked here; qne's and dqs's are their tanh-latent variants
#: (preset ``revflow``): their defaults, the authors' maxentdp and dqs, are checked quantity by
#: quantity by tests/test_fidelity_revflow_side.py (dqs's parts: tests/test_dqs_ve.py).
PRESETS = {"qne": "revflow", "dqs": "revflow"}


def _agent(name: str, **overrides):
    config = make_config(name, PRESETS.get(name, "reference"), **{**TINY, **overrides})
    return make_agent(name, config, OBS, ACT)


@functools.cache
def _tiny(name: str):
    """(agent, jitted update) of the TINY config, shared by tests to compile once."""
    agent = _agent(name)
    return agent, jax.jit(agent.update)


def test_registered_with_published_defaults():
    assert set(AGENTS) | {"rfm"} <= set(available())
    q = make_config("qne")
    assert (q.policy, q.path, q.parameterisation, q.num_flow_steps) == (
        "diffusion",
        "vp-cosine",
        "eps",
        20,
    )
    assert (q.control_variate, q.num_reverse_samples, q.lam, q.num_particles) == (
        "none",
        500,
        0.02,
        32,
    )
    assert (q.entropy_backup, q.endpoint_source, q.t_min, q.t_max) == (True, "replay", 0.02, 0.999)
    d = make_config("dqs", "revflow")
    assert (d.path, d.ve_sigma_min, d.ve_sigma_max, d.control_variate) == (
        "ve",
        1e-5,
        1.0,
        "gradient",
    )
    assert (d.lam, d.num_reverse_samples, d.num_flow_steps) == (0.05, 1000, 20)
    s = make_config("sdac")
    assert (s.control_variate, s.num_reverse_samples, s.q_scale, s.explore_noise) == (
        "none",
        64,
        5.0,
        0.1,
    )
    assert (s.reward_scale, s.actor_lr, s.actor_lr_end, s.train_pick) == (0.2, 3e-4, 3e-5, "best")
    r = make_config("rfm-diffusion")
    assert (r.path, r.parameterisation, r.num_flow_steps, r.control_variate) == (
        "vp-cosine",
        "eps",
        20,
        "optimal",
    )
    assert (r.num_reverse_samples, r.num_particles, r.lam, r.train_pick) == (
        100,
        32,
        0.02,
        "boltzmann",
    )
    for name in AGENTS:
        fast, ref = make_config(name, "fast"), make_config(name)
        assert fast.num_reverse_samples < ref.num_reverse_samples
        assert fast.num_particles * fast.num_flow_steps < ref.num_particles * ref.num_flow_steps


@pytest.mark.parametrize(
    ("name", "overrides", "match"),
    [
        ("qne", {"policy": "gan"}, "policy='gan'"),
        ("qne", {"policy": "flow"}, "sampler='ddpm'"),
        ("rfm-diffusion", {"sampler": "euler"}, "sampler='euler'"),
        ("dqs", {"path": "cosine"}, "path='cosine'"),
        ("dqs", {"parameterisation": "score"}, "parameterisation='score'"),
        ("dqs", {"ve_sigma_min": 2.0}, "ve_sigma_min"),
        ("qne", {"explore_pick": "greedy"}, "explore_pick='greedy'"),
        ("qne", {"endpoint_source": "buffer"}, "endpoint_source='buffer'"),
        ("sdac", {"reward_scale": 0.0}, "reward_scale=0.0"),
        ("sdac", {"q_scale": -1.0}, "q_scale=-1.0"),
        ("sdac", {"control_variate": "tweedie"}, "control_variate='tweedie'"),
        ("qne", {"num_reverse_samples": 0}, "num_reverse_samples=0"),
        ("qne", {"policy_space": "tanh"}, "policy_space='tanh'"),
    ],
)
def test_invalid_config_is_rejected(name, overrides, match):
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
    assert int(new.step) == 1
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.actor_params, state.actor_params)
    assert any(jax.tree.leaves(changed))
    obs = jax.random.normal(jax.random.key(3), (5, OBS))
    for mode in ("explore", "best-of-n", "sample"):
        a = agent.act(new, jax.random.key(4), obs, mode)
        assert a.shape == (5, ACT)
        assert np.all(np.isfinite(np.asarray(a))) and np.all(np.abs(np.asarray(a)) <= 1.0)
    with pytest.raises(ValueError, match="unknown act mode"):
        agent.act(new, jax.random.key(4), obs, "greedy")
    if name == "qne":
        assert float(metrics["next_log_pi_mean"]) != 0.0  # the entropy backup ran
    if name == "sdac":
        assert float(metrics["lam"]) == pytest.approx(float(metrics["alpha"]) / 5.0, rel=1e-5)
        # the noise entropy at alpha = 1 exceeds -D, so alpha must decrease
        assert float(new.log_alpha) < float(state.log_alpha)


@pytest.mark.parametrize(
    ("name", "member"),
    [
        ("qne", "none"),
        ("qne", 0.0),
        ("dqs", "gradient"),
        ("dqs", 1.0),
        ("rfm-diffusion", "optimal"),
    ],
)
def test_actor_loss_regresses_onto_the_estimator_member(name, member):
    """Recompute the update's actor loss from its keys with a DIRECT estimator call of the
    claimed family member (eta = 0 for QNE, eta = 1 for DQS, c* for rfm-diffusion) and the
    eps conversion of its mu1; it must equal the reported actor_loss."""
    agent, update = _tiny(name)
    c = agent.config
    state = agent.init(jax.random.key(0))
    batch, key = _batch(2), jax.random.key(7)
    new, metrics = update(state, batch, key)
    k_end, _, k_t, k_eps, k_post = jax.random.split(key, 5)
    if c.endpoint_source == "replay":
        u1 = jnp.arctanh(jnp.clip(batch.action, -0.999, 0.999))
    else:
        u1, _ = agent.latent(state, k_end, batch.obs, c.train_pick)
    t, u_t = agent.policy.noisy_points(k_t, k_eps, u1)
    lam = agent.temperature_of(state)

    def log_target(action, obs):
        return agent.critic.q_min(new.critic_params, obs, action) / lam

    def estimate(cv):
        return estimators.estimate_posterior_mean_batch(
            k_post,
            log_target,
            u_t,
            t,
            agent.policy.path,
            c.num_reverse_samples,
            control_variate=cv,
            ridge=c.cv_ridge,
            clip=c.cv_clip,
            latent_tanh=True,
            cond=batch.obs,
        )

    post = estimate(member)
    eta = {"none": 0.0, "gradient": 1.0}.get(member)
    if eta is not None:  # the named member is the family's eta = 0 / eta = 1 end
        np.testing.assert_allclose(post.x1, estimate(eta).x1, rtol=1e-6, atol=1e-6)
    target = x1_to_eps(agent.policy.path, t, u_t, post.x1)
    if member == "none":
        np.testing.assert_allclose(target, post.x0, rtol=1e-4, atol=1e-5)
    pred = agent.policy.net.apply(state.actor_params, c.time_scale * t, u_t, batch.obs, lam)
    loss = jnp.mean(jnp.sum((pred - target) ** 2, axis=-1))
    # rel 2e-3: on the VE path at sigma ~ 1e-5 the eps target (u_t - mu1)/sigma carries
    # float32 rounding of u_t / sigma ~ 1e-2, which differs between jit and eager.
    assert float(metrics["actor_loss"]) == pytest.approx(float(loss), rel=2e-3)


def _gaussian_eps(path, m: float, s: float):
    """Exact E[x0 | x_t] for x1 ~ N(m, s^2 I): beta (x_t - alpha m) / (alpha^2 s^2 + beta^2)."""

    def eps(t, x):
        a, b = path.alpha(t), path.beta(t)
        return b * (x - a * m) / (a**2 * s**2 + b**2)

    return eps


@pytest.mark.parametrize(
    ("path", "m", "ddpm_tol", "ddim_tol"),
    [(VPCosine(), 0.3, 0.15, 0.08), (VE(sigma_min=1e-5, sigma_max=1.0), 0.0, 0.25, 0.12)],
)
def test_diffusion_samplers_and_log_prob_reproduce_a_gaussian(path, m, ddpm_tol, ddim_tol):
    """With the exact eps of N(m, s^2), 20-step DDPM/DDIM from t = 1e-3 to 1 reproduce the
    Gaussian up to their discretisation error (measured: std 0.435 / 0.470 for s = 0.5 on
    VP cosine; 0.40 / 0.45 on this VE path, whose uniform-t grid spends few steps at large
    sigma); the change-of-variables log density of the DDIM map equals, to float precision,
    the density of its output, which for a Gaussian eps is the Gaussian pushed through the
    affine steps. (VE with sigma_max = 1 does not forget the data mean, so its
    N(0, s^2 + 1) start is exact only for m = 0.)"""
    s, n, steps, t0 = 0.5, 2000, 20, 1e-3
    eps = _gaussian_eps(path, m, s)
    a0, b0 = float(path.alpha(t0)), float(path.beta(t0))
    init_std = math.sqrt(a0**2 * s**2 + b0**2)
    x_init = init_std * jax.random.normal(jax.random.key(0), (n, ACT))
    for x, tol in (
        (ddpm_sample(eps, jax.random.key(1), x_init, path, steps, t0, 1.0), ddpm_tol),
        (ddim_sample(eps, x_init, path, steps, t0, 1.0), ddim_tol),
    ):
        assert abs(float(jnp.mean(x)) - m) < 0.05
        assert abs(float(jnp.std(x)) - s) < tol * s, float(jnp.std(x))
    ts = t0 + (1.0 - t0) * jnp.arange(steps + 1) / steps

    def step(k, x):
        t, tn = ts[k], ts[k + 1]
        e = eps(t, x)
        return path.alpha(tn) * (x - path.beta(t) * e) / path.alpha(t) + path.beta(tn) * e

    log_p0 = jnp.sum(jax.scipy.stats.norm.logpdf(x_init, scale=init_std), -1)
    x, logp = sampler_log_prob(step, x_init, log_p0, steps)
    np.testing.assert_allclose(x, ddim_sample(eps, x_init, path, steps, t0, 1.0), atol=1e-4)
    # The same affine steps applied to the start's mean and std give the output Gaussian.
    mean, std = 0.0, init_std
    for k in range(steps):
        mean = float(step(k, jnp.asarray(mean)))
        std = float(step(k, jnp.asarray(std)) - step(k, jnp.asarray(0.0)))
    expected = jnp.sum(jax.scipy.stats.norm.logpdf(x, mean, std), -1)
    np.testing.assert_allclose(logp, expected, atol=2e-3)
    # ... and that is close to the target Gaussian itself.
    true = jnp.sum(jax.scipy.stats.norm.logpdf(x, m, s), -1)
    assert abs(float(jnp.mean(logp - true))) < 0.1


def test_agent_log_prob_of_a_known_gaussian_policy():
    """The qne agent's own sampler + log-likelihood, with its network replaced by the exact
    eps of a latent Gaussian policy N(m, s^2): log pi must match the Gaussian's density."""
    agent = _agent("qne", num_flow_steps=20)
    path, m, s = agent.policy.path, -0.2, 0.4
    eps = _gaussian_eps(path, m, s)

    def exact(params, t, u, lam, feats, dst):
        assert dst == "eps"
        return eps(t, u)

    object.__setattr__(agent.policy, "_net_as", exact)
    state = agent.init(jax.random.key(0))
    obs = jnp.zeros((1000, OBS))
    u, logp = agent.policy.sample_with_log_prob(state.actor_params, jax.random.key(1), obs, 0.02)
    assert abs(float(jnp.mean(u)) - m) < 0.03 and abs(float(jnp.std(u)) - s) < 0.12 * s
    # The DDIM output of a Gaussian eps is Gaussian (affine steps): fit it and compare.
    fit = jnp.sum(jax.scipy.stats.norm.logpdf(u, jnp.mean(u, 0), jnp.std(u, 0)), -1)
    assert float(jnp.mean(jnp.abs(logp - fit))) < 0.05
    true = jnp.sum(jax.scipy.stats.norm.logpdf(u, m, s), -1)
    assert abs(float(jnp.mean(logp - true))) < 0.1
    particles = agent.policy.sample(state.actor_params, jax.random.key(2), obs[:500], 0.02, 4)
    assert abs(float(jnp.mean(particles)) - m) < 0.03
    assert abs(float(jnp.std(particles)) - s) < 0.2 * s  # 20-step DDPM: measured 0.338
