"""DPMD (Ma et al. ICML 2025, arXiv 2502.00361; the SDAC paper): diffusion policy mirror
descent by weighted denoising on the current policy's samples.

Baselines note, "Weighted regression". The mirror-descent target pi_new ~ pi_old exp(Q/lam)
is fitted by drawing N latent actions u1_i ~ pi_old(.|s) (the current policy, no gradient)
and weighting their denoising loss by an exponential of the normalised Q:

    L(theta) = E_{s,i,t,eps}[ w_i || eps_theta(t, alpha_t u1_i + beta_t eps, s) - eps ||^2 ],
    w_i = exp(clip(z_i, -3, 3) / alpha),  z_i = (Q(s, tanh u1_i) - mean_j Q_j) / (std_j Q_j + 1e-6),

i.e. Q is normalised PER STATE over its N policy samples (mean and std over the sample axis;
``q_norm_eps`` = 1e-6 guards the std), then clipped to [-3, 3]; alpha = ``alpha`` (default 1.0:
lam = alpha * std_j Q_j in the mirror-descent target, since exp(z/alpha) is exp(Q/lam) up to
a per-state constant).

Published definition (baselines note): weights exp(clip(normalised Q, -3, 3)/alpha) on the
current policy's samples. Not fixed by the note and chosen here: alpha = 1.0, N = 64
policy samples per state (SDAC's 64 samples), per-state normalisation, behaviour and TD
next action best of ``num_particles`` by Q and evaluation best of 32 (SDAC's protocol, same
paper), no exploration noise, reward scale 1.

Departures: (1) the tanh latent with RFM's shared network (eps prediction, time_scale 1000,
VP cosine, 20 steps) and critic; (2) the sampler starts at t_min = 0.02
(:mod:`revflow.agents.policies`
docstring); (3) one env per update step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax.numpy as jnp

from revflow.agents.actor_critic import Objective
from revflow.agents.base import Array, require
from revflow.agents.generative import GenerativeAgent
from revflow.agents.weighted_denoising import (
    FAST_WEIGHTED,
    WEIGHTED_METRICS,
    WeightedDenoisingFields,
    best_of_latent,
    weighted_denoising_objective,
)

__all__ = ["DPMD", "DPMDConfig", "dpmd_objective", "dpmd_weights"]

#: Normalised Q is clipped to [-Q_CLIP, Q_CLIP] (published).
Q_CLIP = 3.0


def dpmd_weights(q: Array, alpha: float, eps: float = 1e-6) -> tuple[Array, Array]:
    """``(exp(clip(z, -3, 3) / alpha), z)`` with z = q normalised over its last axis."""
    z = (q - jnp.mean(q, axis=-1, keepdims=True)) / (jnp.std(q, axis=-1, keepdims=True) + eps)
    return jnp.exp(jnp.clip(z, -Q_CLIP, Q_CLIP) / alpha), z


@dataclasses.dataclass(frozen=True)
class DPMDConfig(WeightedDenoisingFields):
    """DPMD defaults (module docstring); ``lam`` only conditions the shared network."""

    #: Evaluation: best of 32 by Q; also the behaviour policy's and the TD next action.
    num_particles: int = 32
    #: Temperature of the weights exp(clip(z, -3, 3) / alpha).
    alpha: float = 1.0
    #: Added to the per-state std of Q before normalising.
    q_norm_eps: float = 1e-6

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"reference": {}, "fast": FAST_WEIGHTED}

    def validate(self) -> None:
        super().validate()
        require(
            self.num_policy_samples >= 2,
            "num_policy_samples",
            self.num_policy_samples,
            "must be >= 2 (Q is normalised over the samples)",
        )
        require(
            math.isfinite(self.alpha) and self.alpha > 0,
            "alpha",
            self.alpha,
            "must be a finite number > 0",
        )
        require(self.q_norm_eps > 0, "q_norm_eps", self.q_norm_eps, "must be > 0")


def dpmd_objective(agent: DPMD) -> Objective:
    """Weighted denoising with w_i = exp(clip(z_i, -3, 3) / alpha) (module docstring)."""
    c = agent.config

    def sample_weights(q: Array) -> tuple[Array, dict[str, Array]]:
        w, z = dpmd_weights(q, c.alpha, c.q_norm_eps)
        return w, {"clipped_fraction": jnp.mean((jnp.abs(z) > Q_CLIP).astype(jnp.float32))}

    return weighted_denoising_objective(agent, sample_weights, c.num_particles)


class DPMD(GenerativeAgent):
    """DPMD's exponentially weighted denoising loss (module docstring)."""

    name = "dpmd"
    Config = DPMDConfig
    make_objective = dpmd_objective
    METRICS: ClassVar[dict[str, str]] = {
        **WEIGHTED_METRICS,
        "actor_loss": "denoising loss weighted by exp(clip(normalised Q, -3, 3) / alpha)",
        "weight_mean": "mean weight exp(clip(z, -3, 3) / alpha) over the policy samples",
        "weight_max": "largest weight in the batch",
        "clipped_fraction": "fraction of samples with |normalised Q| > 3 (clipped)",
    }

    config: DPMDConfig

    def explore_latent(self, state: Any, key: Array, obs: Array) -> Array:
        return best_of_latent(self, state, key, obs, self.config.num_particles)
