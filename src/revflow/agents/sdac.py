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

import flax.struct
import jax
import jax.numpy as jnp
import optax

from revflow.agents.base import Array, Batch, Metrics, require
from revflow.agents.common import gradient_step
from revflow.agents.posterior import DiffusionConfig, Pick, PosteriorState, PosteriorTargetAgent

__all__ = ["SDAC", "SDACConfig", "SDACState"]


@dataclasses.dataclass(frozen=True)
class SDACConfig(DiffusionConfig):
    """SDAC defaults (module docstring); ``lam`` is unused (lam = alpha / q_scale)."""

    control_variate: str = "none"
    num_reverse_samples: int = 64
    num_particles: int = 32
    explore_pick: Pick = "best"
    train_pick: Pick = "best"
    reward_scale: float = 0.2
    actor_lr_end: float | None = 3e-5
    lr_decay_updates: int = 200_000
    #: The Boltzmann target is exp(q_scale * Q / alpha): lam = alpha / q_scale.
    q_scale: float = 5.0
    #: Exploration noise std = explore_noise * alpha.
    explore_noise: float = 0.1
    #: Initial alpha, Adam lr of log_alpha, entropy target (None: -act_dim).
    init_alpha: float = 1.0
    #: Adam learning rate of log_alpha.
    alpha_lr: float = 3e-4
    #: Entropy target of the temperature rule (None: -act_dim).
    target_entropy: float | None = None

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Measured (README, "Throughput"): fewer samples, particles and steps, narrower net.
        "fast": {
            "num_particles": 8,
            "num_flow_steps": 10,
            "num_reverse_samples": 16,
            "actor_hidden": 128,
            "embed_dim": 64,
        },
    }

    def validate(self) -> None:
        super().validate()
        for name in ("q_scale", "explore_noise", "init_alpha", "alpha_lr"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, name, value, "must be a finite number > 0")


@flax.struct.dataclass
class SDACState(PosteriorState):
    """PosteriorState plus the learned temperature."""

    log_alpha: Array
    alpha_opt: Any


class SDAC(PosteriorTargetAgent):
    """SDAC's weighted-noise target with its temperature rule (module docstring)."""

    name = "sdac"
    Config = SDACConfig
    State = SDACState
    METRICS: ClassVar[dict[str, str]] = {
        **PosteriorTargetAgent.METRICS,
        "actor_loss": "eps regression loss ||eps_theta - sum_i w_i x0_i||^2, batch mean",
        "target_q_mean": "mean TD target 0.2 r + discount * min_k Qbar_k(s', a'_best)",
        "lam": "temperature lam = alpha / q_scale of the Boltzmann target",
        "policy_q_mean": "mean min_k Q(s, a) of the best-of-N training endpoints",
        "alpha": "SDAC temperature alpha (exploration noise std = explore_noise * alpha)",
        "alpha_loss": "log_alpha * (H - target_entropy), H = entropy of the exploration noise",
        "noise_entropy": "entropy H of the Gaussian exploration noise",
    }

    config: SDACConfig

    def __init__(self, config: SDACConfig, obs_dim: int, act_dim: int):
        super().__init__(config, obs_dim, act_dim)
        self.alpha_opt = optax.adam(config.alpha_lr)
        te = config.target_entropy
        self.target_entropy = float(-act_dim if te is None else te)

    def _extra_state(self, key: Array) -> dict[str, Any]:
        log_alpha = jnp.asarray(math.log(self.config.init_alpha), jnp.float32)
        return {"log_alpha": log_alpha, "alpha_opt": self.alpha_opt.init(log_alpha)}

    def temperature_of(self, state: SDACState) -> Array:
        return jnp.exp(jax.lax.stop_gradient(state.log_alpha)) / self.config.q_scale

    def noise_entropy(self, log_alpha: Array) -> Array:
        """Entropy of N(0, (explore_noise * alpha)^2 I_D)."""
        log_std = math.log(self.config.explore_noise) + log_alpha
        return self.act_dim * (0.5 * math.log(2 * math.pi * math.e) + log_std)

    def act(self, state: SDACState, key: Array, obs: Array, mode: str = "explore") -> Array:
        a = super().act(state, key, obs, mode)
        if mode != "explore":
            return a
        std = self.config.explore_noise * jnp.exp(state.log_alpha)
        noise = jax.random.normal(jax.random.fold_in(key, 1), a.shape, a.dtype)
        return jnp.clip(a + std * noise, -1.0, 1.0)

    def update(self, state: SDACState, batch: Batch, key: Array) -> tuple[SDACState, Metrics]:
        new_state, metrics = super().update(state, batch, key)
        entropy = self.noise_entropy(state.log_alpha)
        gap = jax.lax.stop_gradient(entropy - self.target_entropy)

        def alpha_loss_fn(log_alpha: Array) -> Array:
            return log_alpha * gap

        alpha = gradient_step(alpha_loss_fn, self.alpha_opt, state.log_alpha, state.alpha_opt)
        new_state = new_state.replace(log_alpha=alpha.params, alpha_opt=alpha.opt_state)
        metrics.update(alpha=jnp.exp(state.log_alpha), alpha_loss=alpha.loss, noise_entropy=entropy)
        return new_state, metrics
