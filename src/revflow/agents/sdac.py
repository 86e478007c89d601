"""SDAC (Ma et al. ICML 2025, arXiv 2502.00361) in the shared posterior-target agent.

Baselines note, "Noise-expectation family"; method note §4 (eta = 0). The same weighted-noise
target as QNE, but on noised actions of the CURRENT policy (best of N particles by Q), and
with SDAC's temperature rule: the target is exp(5 Q / alpha), i.e. lam = alpha / 5, with
alpha learned. In one equation the actor minimises

    E_{s, t, u_t} || eps_theta(t, u_t, s, lam) - sum_i w_i x0_i ||^2,
    w = softmax_i(5 Q(s, tanh u1_i) / alpha + sum log sech^2 u1_i),
    u_t = alpha_t u1 + beta_t eps,  u1 = best-of-N policy particle,

(``estimate_posterior_mean_batch(control_variate="none")``). Data collection adds Gaussian
noise of std 0.1 alpha to the best-of-N action (clipped to [-1, 1]). alpha = exp(log_alpha)
minimises log_alpha * stop_grad(H - target_entropy), H = D (0.5 log(2 pi e) + log(0.1 alpha))
the entropy of that exploration noise (SAC-style dual step, Adam ``alpha_lr``).

Published defaults (baselines note): 64 reverse samples, Q scaled by 5/alpha, exploration
std 0.1 alpha, 20 steps, reward scale 0.2, policy lr 3e-4 decaying to 3e-5 (linear, over
200,000 updates = 1M env steps at 0.2 updates per step), evaluation best of 32 by Q.

Departures / choices not fixed by the note: (1) with the entropy taken of the added Gaussian
alone, alpha converges to the closed-form fixed point where H(alpha) = target_entropy
(alpha* = 10 exp(target/D - 0.5 log(2 pi e)) ~ 0.89 for target -D) at the speed of Adam;
(2) target_entropy defaults to -dim(A) and init_alpha to 1 (our choice); (3) the TD next
action is the best-of-N particle, without entropy term; (4) RFM's network (not 3x256 mish),
RFM's critic (lr 1e-3), the tanh latent instead of clipping, one env per update step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from revflow.agents.actor_critic import Objective, TemperatureState
from revflow.agents.base import Array, Batch
from revflow.agents.common import GradientStep
from revflow.agents.configs import (
    FAST_DIFFUSION,
    UNREAD_TEMPERATURE_FIELDS,
    DiffusionAgentFields,
    Pick,
    require_positive,
)
from revflow.agents.generative import GenerativeAgent
from revflow.agents.noise_temperature import METRICS as TEMPERATURE_METRICS
from revflow.agents.noise_temperature import NoiseTemperature, NoiseTemperatureFields
from revflow.agents.posterior import METRICS, EndpointSource, PosteriorFields, posterior_objective

__all__ = ["SDAC", "SDACConfig", "SDACState", "sdac_objective"]

SDACState = TemperatureState


@dataclasses.dataclass(frozen=True)
class SDACConfig(NoiseTemperatureFields, PosteriorFields, DiffusionAgentFields):
    """SDAC defaults (module docstring); there is no ``lam`` (lam = alpha / q_scale)."""

    control_variate: str = "none"
    num_reverse_samples: int = 64
    num_particles: int = 32
    explore_pick: Pick = "best"
    train_pick: Pick = "best"
    reward_scale: float = 0.2
    actor_lr_end: float | None = 3e-5
    lr_decay_updates: int = 200_000
    #: Training endpoints u1: "policy" samples or atanh of the "replay" actions.
    endpoint_source: EndpointSource = "policy"
    #: Soft TD target r + discount (min Qbar - lam log pi(a'|s')).
    entropy_backup: bool = False
    #: The Boltzmann target is exp(q_scale * Q / alpha): lam = alpha / q_scale.
    q_scale: float = 5.0
    #: Entropy target of the temperature rule (None: -act_dim).
    target_entropy: float | None = None

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Measured (README, "Throughput"): fewer samples, particles and steps, narrower net.
        "fast": {**FAST_DIFFUSION, "num_reverse_samples": 16},
    }
    #: Fields of configs saved before the config parts, never read by SDAC.
    DROPPED: ClassVar[frozenset[str]] = UNREAD_TEMPERATURE_FIELDS

    def validate(self) -> None:
        super().validate()
        require_positive(self, "q_scale")


def sdac_objective(agent: SDAC) -> Objective:
    """The posterior objective (control variate "none": the weighted noise of the module
    docstring) plus SDAC's temperature step
    ``min_{log_alpha} log_alpha * stop_grad(H(alpha) - target_entropy)``,
    H(alpha) = D (0.5 log(2 pi e) + log(explore_noise * alpha))."""
    c = agent.config

    def temperature_step(state: SDACState, actor: GradientStep, batch: Batch, key: Any):
        log_std = math.log(c.explore_noise) + state.log_alpha
        entropy = agent.act_dim * (0.5 * math.log(2 * math.pi * math.e) + log_std)
        fields, metrics = agent.noise_temperature.step(state, entropy)
        return fields, {**metrics, "noise_entropy": entropy}

    return posterior_objective(agent)._replace(post_update=temperature_step)


class SDAC(GenerativeAgent):
    """SDAC's weighted-noise target with its temperature rule (module docstring)."""

    name = "sdac"
    Config = SDACConfig
    State = SDACState
    make_objective = sdac_objective
    METRICS: ClassVar[dict[str, str]] = {
        **METRICS,
        "actor_loss": "eps regression loss ||eps_theta - sum_i w_i x0_i||^2, batch mean",
        "target_q_mean": "mean TD target 0.2 r + discount * min_k Qbar_k(s', a'_best)",
        "lam": "temperature lam = alpha / q_scale of the Boltzmann target",
        "policy_q_mean": "mean min_k Q(s, a) of the best-of-N training endpoints",
        **TEMPERATURE_METRICS,
        "noise_entropy": "entropy H of the Gaussian exploration noise (the alpha step's H)",
    }

    config: SDACConfig

    def __init__(self, config: SDACConfig, obs_dim: int, act_dim: int):
        te = config.target_entropy
        self.noise_temperature = NoiseTemperature.make(config, -act_dim if te is None else te)
        super().__init__(config, obs_dim, act_dim)

    def extra_state(self) -> dict[str, Any]:
        return self.noise_temperature.init()

    def temperature_of(self, state: SDACState) -> Array:
        return jnp.exp(jax.lax.stop_gradient(state.log_alpha)) / self.config.q_scale

    def explore_std(self, state: SDACState) -> Array:
        return self.noise_temperature.std(state)
