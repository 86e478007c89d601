"""DACER (Wang et al. NeurIPS 2024) on the shared diffusion policy and critic.

Baselines note, "Backpropagation through the sampler". The diffusion policy is trained like a
deterministic actor: the action is a differentiable function of the state and of the
sampler's noise (reparameterised), and the actor maximises the smaller critic through ALL
reverse steps of the DDPM sampler,

    L(theta) = - E_{s ~ D, xi} min_k Q_k(s, tanh u_theta(s, xi)),

u_theta(s, xi) the latent output of the ``num_flow_steps``-step DDPM sampler
(:meth:`revflow.agents.policies.LatentPolicy.sample`, one particle) driven by the fixed noise xi
(start draw and per-step noises); the gradient flows through the network at every step.
Data collection adds Gaussian noise of std ``explore_noise * alpha`` to one policy sample
(clipped to [-1, 1]). alpha = exp(log_alpha) takes one Adam step per update on

    log_alpha * stop_grad(H_hat - target_entropy),  target_entropy = -0.9 dim(A),

so alpha grows when the entropy estimate H_hat is below the target and shrinks above it.
H_hat is refit every ``entropy_every`` updates (held in the state in between) from
``entropy_samples`` noisy actions tanh(u) + explore_noise * alpha * z per state, on the
first ``entropy_states`` states of the batch: the mean over states of the entropy of a
Gaussian fitted to each state's samples, 0.5 log det(2 pi e (Sigma_hat + 1e-6 I)).

Published defaults (baselines note): 20 reverse steps, exploration std 0.15 alpha on
Humanoid and 0.1 elsewhere (default 0.1), entropy target -0.9 dim(A), entropy estimated from
200 samples and refit every 10k updates; the RFM comparison's evaluation is the noise-free
sampler (mode ``sample``, no added noise; ``best-of-n`` is also available).

Bounded actions. DACER's sampler (``GaussianDiffusion.p_mean_variance`` of its ``relax``
code) works in ACTION space and clips the predicted clean action x0_hat to [-1, 1] at every
reverse step before forming the posterior mean (DDPM's ``clip_denoised``), so the last step
lands on a clipped x0_hat; the noisy action is clipped to [-1, 1] again. Here the predicted
endpoint u1_hat = (u - beta_t eps) / alpha_t is clipped to the latent box |u_j| <=
atanh(0.999) ~ 3.8 at every step (``clip_denoised``, default True;
:func:`revflow.samplers.ddpm_sample`, ``clip``). Without it the latent ran away on
Pendulum (seed 2: |u| ~ 1.7e3 from 2000 steps on, every action -1, tanh'(u) = 0 in float32
so the actor gradient was exactly 0 and the policy froze; return -1429). As in the original,
a sample clipped at the edge of the box passes no gradient through the clip.

Departures: (1) the entropy estimate is a single Gaussian fit per state (on a few states)
instead of DACER's 3-component Gaussian mixture: cheaper and jittable; it upper-bounds the
mixture's entropy for multimodal policies; (2) the policy network is RFM's
:class:`revflow.networks.VelocityNet` (eps-prediction, VP cosine path, t_min 0.02 as in
qne/sdac, see :mod:`revflow.agents.policies`) instead of 3x256 mish, and the critic and
its TD step are RFM's;
(3) the policy lives in the tanh latent (action = tanh u), the sampler's endpoint clipped to
the latent box |u| <= atanh(0.999) instead of x0_hat to [-1, 1]; (4) the TD
next action is one plain policy sample (no noise, no entropy term); (5) init_alpha 1 and
alpha_lr 3e-4 are our choices (not fixed by the note); (6) the actor loss takes Q of the
noise-free sample; the authors' code adds the exploration noise and clips before Q.
``lam`` only conditions the network (fixed).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp

from revflow.agents.actor_critic import Objective, TemperatureState
from revflow.agents.base import Array, Batch, require
from revflow.agents.common import GradientStep
from revflow.agents.configs import (
    FAST_DIFFUSION,
    UNREAD_ESTIMATOR_FIELDS,
    DiffusionAgentFields,
    Pick,
    TemperatureFields,
)
from revflow.agents.critics import METRICS as CRITIC_METRICS
from revflow.agents.critics import td_target
from revflow.agents.generative import GenerativeAgent
from revflow.agents.noise_temperature import METRICS as TEMPERATURE_METRICS
from revflow.agents.noise_temperature import NoiseTemperature, NoiseTemperatureFields

__all__ = [
    "DACER",
    "DACERConfig",
    "DACERState",
    "dacer_objective",
    "estimate_entropy",
    "gaussian_fit_entropy",
]

#: Ridge added to the fitted covariance before log det (keeps a collapsed policy finite).
ENTROPY_RIDGE = 1e-6


def gaussian_fit_entropy(samples: Array) -> Array:
    """Entropy of the Gaussian fitted to ``samples`` (..., N, D): 0.5 log det(2 pi e Sigma)."""
    d = samples.shape[-1]
    centred = samples - jnp.mean(samples, axis=-2, keepdims=True)
    cov = jnp.einsum("...ni,...nj->...ij", centred, centred) / (samples.shape[-2] - 1)
    cov = cov + ENTROPY_RIDGE * jnp.eye(d, dtype=samples.dtype)
    _, logdet = jnp.linalg.slogdet(cov)
    return 0.5 * (d * math.log(2 * math.pi * math.e) + logdet)


@dataclasses.dataclass(frozen=True)
class DACERConfig(NoiseTemperatureFields, TemperatureFields, DiffusionAgentFields):
    """DACER defaults (module docstring; exploration noise 0.15 alpha on Humanoid, 0.1 alpha
    elsewhere); the rest is RFM's critic and network."""

    explore_pick: Pick = "sample"
    train_pick: Pick = "sample"
    #: Entropy target = target_entropy_scale * dim(A).
    target_entropy_scale: float = -0.9
    #: Entropy estimate: refit every this many updates, from this many samples per state,
    #: on this many states of the batch.
    entropy_every: int = 10_000
    #: Policy samples per state of each entropy estimate.
    entropy_samples: int = 200
    #: States of the batch the entropy is estimated on.
    entropy_states: int = 4
    #: Clip the predicted endpoint u1_hat to the latent box |u| <= atanh(0.999) at every
    #: sampler step, as DACER clips x0_hat to [-1, 1] (``samplers.ddpm_sample``, ``clip``).
    clip_denoised: bool = True

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Fewer steps and a narrower net, as the other diffusion baselines' fast presets.
        "fast": {**FAST_DIFFUSION, "entropy_every": 1000},
    }
    #: Fields of configs saved before the config parts, never read by DACER.
    DROPPED: ClassVar[frozenset[str]] = UNREAD_ESTIMATOR_FIELDS

    def validate(self) -> None:
        super().validate()
        require(
            math.isfinite(self.target_entropy_scale),
            "target_entropy_scale",
            self.target_entropy_scale,
            "must be finite",
        )
        require(self.entropy_every >= 1, "entropy_every", self.entropy_every, "must be >= 1")
        require(self.entropy_samples >= 2, "entropy_samples", self.entropy_samples, "must be >= 2")
        require(self.entropy_states >= 1, "entropy_states", self.entropy_states, "must be >= 1")
        if self.clip_denoised:
            require(
                self.policy == "diffusion",
                "policy",
                self.policy,
                "must be 'diffusion' with clip_denoised=True (a clipped diffusion sampler)",
            )


@flax.struct.dataclass
class DACERState(TemperatureState):
    """TemperatureState plus the last entropy estimate."""

    entropy: Array


def estimate_entropy(agent: DACER, state: DACERState, key: Array, obs: Array) -> Array:
    """Mean over ``entropy_states`` states of the Gaussian-fit entropy of ``entropy_samples``
    noisy actions tanh(u) + explore_noise * alpha * z each."""
    c = agent.config
    obs = obs[: c.entropy_states]
    k_u, k_z = jax.random.split(key)
    lam = agent.temperature_of(state)
    u = agent.policy.sample(state.actor_params, k_u, obs, lam, c.entropy_samples)
    z = jax.random.normal(k_z, u.shape, u.dtype)
    actions = jnp.tanh(u) + agent.explore_std(state) * z
    return jnp.mean(gaussian_fit_entropy(jax.lax.stop_gradient(actions)))


def dacer_objective(agent: DACER) -> Objective:
    """DACER's losses (module docstring): the actor maximises min_k Q_k(s, tanh u_theta(s, xi))
    through every sampler step; then log_alpha takes a step on
    log_alpha * stop_grad(H_hat - target_entropy), H_hat refit every ``entropy_every``."""
    c, policy, critic = agent.config, agent.policy, agent.critic

    def split(key: Array) -> tuple[Any, Any, Any]:
        return tuple(jax.random.split(key, 3))

    def critic_target(state: DACERState, batch: Batch, key: Array) -> tuple[Array, dict]:
        u_next, _ = agent.latent(state, key, batch.next_obs, c.train_pick)
        next_q = critic.q_min(state.target_critic_params, batch.next_obs, jnp.tanh(u_next))
        return td_target(batch, next_q, c.reward_scale), {}

    def actor_inputs(state: DACERState, critic_params: Any, batch: Batch, key: Array):
        return (critic_params, batch.obs, key, agent.temperature_of(state)), {}

    def actor_loss(params: Any, inputs: Any) -> tuple[Array, Array]:
        """``(-mean min_k Q_k(s, tanh u_theta(s, xi)), min-Q per state)``; the key fixes xi."""
        critic_params, obs, key, lam = inputs
        u = policy.sample(params, key, obs, lam, 1)[:, 0]
        q = critic.q_min(critic_params, obs, jnp.tanh(u))
        return -jnp.mean(q), q

    def temperature_step(state: DACERState, actor: GradientStep, batch: Batch, key: Array):
        entropy = jax.lax.cond(
            state.step % c.entropy_every == 0,
            lambda: estimate_entropy(agent, state, key, batch.obs),
            lambda: state.entropy,
        )
        fields, metrics = agent.noise_temperature.step(state, entropy)
        metrics = {"policy_q_mean": jnp.mean(actor.aux), **metrics, "entropy": entropy}
        return {**fields, "entropy": entropy}, metrics

    return Objective(split, critic_target, actor_inputs, actor_loss, temperature_step)


class DACER(GenerativeAgent):
    """Backpropagation through the diffusion sampler with entropy-tuned noise (module doc)."""

    name = "dacer"
    Config = DACERConfig
    State = DACERState
    make_objective = dacer_objective
    METRICS: ClassVar[dict[str, str]] = {
        **CRITIC_METRICS,
        "target_q_mean": "mean TD target r + discount * min_k Qbar_k(s', a'), a' one sample",
        "actor_loss": "-min_k Q_k(s, tanh u_theta(s, xi)), batch mean (through the sampler)",
        "actor_grad_norm": "global L2 norm of the policy-net gradient (before clipping)",
        "policy_q_mean": "mean min_k Q(s, a) of the reparameterised policy actions",
        **TEMPERATURE_METRICS,
        "entropy": "entropy estimate H_hat of the noisy policy (Gaussian fit, refit periodically)",
    }

    config: DACERConfig

    def __init__(self, config: DACERConfig, obs_dim: int, act_dim: int):
        target_entropy = config.target_entropy_scale * act_dim
        self.noise_temperature = NoiseTemperature.make(config, target_entropy)
        super().__init__(config, obs_dim, act_dim)

    def extra_state(self) -> dict[str, Any]:
        return {**self.noise_temperature.init(), "entropy": jnp.zeros((), jnp.float32)}

    def sampler_clip(self) -> str | None:
        return "endpoint" if self.config.clip_denoised else None

    def explore_std(self, state: DACERState) -> Array:
        return self.noise_temperature.std(state)
