"""QVPO (Ding et al. NeurIPS 2024): Q-weighted variational policy optimisation, a weighted
denoising objective (:mod:`revflow.agents.weighted_denoising`).

Baselines note, "Weighted regression". For each state, N = 64 latent actions u1_i are drawn
from the CURRENT diffusion policy (no gradient); their advantages A_i = Q(s, tanh u1_i) - V(s),
with V(s) = mean_i Q(s, tanh u1_i), clipped at 0, weight the denoising loss; an entropy term
adds the unweighted denoising loss on M = 10 uniform random actions with weight 0.02:

    L(theta) = E_{s,i,t,eps}[ max(A_i, 0) || eps_theta(t, alpha_t u1_i + beta_t eps, s) - eps ||^2 ]
             + 0.02 E_{s,j,t,eps}[ || eps_theta(t, alpha_t atanh(a_j) + beta_t eps, s) - eps ||^2 ],
    a_j ~ U[-1, 1]^D (clipped to +-0.999 before atanh).

Published defaults (baselines note): 64 policy samples per state, entropy weight 0.02 on 10
uniform samples, behaviour policy best of 4 by Q, target (TD next action) best of 4 by Q,
evaluation best of 32 by Q, cosine schedule, 20 steps.

Departures: (1) the policy lives in the tanh latent (uniform actions enter as atanh of the
clipped action), with RFM's shared network (:class:`revflow.networks.VelocityNet`, eps
prediction, time_scale 1000) and critic (shared by design, baselines note); (2) the sampler
starts at t_min = 0.02 (:mod:`revflow.agents.policies` docstring); (3) the RFM comparison's
extra action
gradient steps and action augmentation are NOT implemented; (4) the advantage weights are
used raw (not renormalised), so their scale follows the critic's; (5) the TD target has no
entropy term, min over the twin target critics.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from revflow.agents.actor_critic import Objective
from revflow.agents.base import Array, require
from revflow.agents.configs import (
    FAST_DIFFUSION,
    UNREAD_ESTIMATOR_FIELDS,
    CriticFields,
    DiffusionPolicyFields,
    OptimiserFields,
    TemperatureFields,
)
from revflow.agents.generative import GenerativeAgent
from revflow.agents.policies import replay_latent
from revflow.agents.weighted_denoising import (
    WEIGHTED_METRICS,
    PolicySampleFields,
    best_of_latent,
    denoising_loss,
    noise_draw,
    weighted_denoising_objective,
)

__all__ = ["QVPO", "QVPOConfig", "entropy_loss", "qvpo_objective", "qvpo_weights"]


def qvpo_weights(q: Array) -> Array:
    """max(Q - V, 0) with V the mean of ``q`` (..., N) over its last (sample) axis."""
    return jnp.maximum(q - jnp.mean(q, axis=-1, keepdims=True), 0.0)


@dataclasses.dataclass(frozen=True)
class QVPOConfig(
    PolicySampleFields, TemperatureFields, DiffusionPolicyFields, CriticFields, OptimiserFields
):
    """QVPO defaults (module docstring); the rest is RFM's critic and network.

    ``lam`` only conditions the shared network (QVPO has no Boltzmann temperature)."""

    #: Evaluation: best of 32 by Q ("best-of-n").
    num_particles: int = 32
    #: Behaviour policy ("explore"): best of this many by Q.
    behaviour_particles: int = 4
    #: TD next action: best of this many by Q.
    target_particles: int = 4
    #: Entropy term: weight and uniform random actions per state.
    entropy_weight: float = 0.02
    #: Uniform random actions per state of the entropy term.
    entropy_samples: int = 10

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Fewer samples and steps, narrower net (same cuts as the other diffusion agents).
        "fast": {**FAST_DIFFUSION, "num_policy_samples": 16},
    }
    #: Fields of configs saved before the config parts, never read by QVPO.
    DROPPED: ClassVar[frozenset[str]] = UNREAD_ESTIMATOR_FIELDS | {"explore_pick", "train_pick"}

    def validate(self) -> None:
        super().validate()
        for name in ("behaviour_particles", "target_particles", "entropy_samples"):
            value = getattr(self, name)
            require(value >= 1, name, value, "must be >= 1")
        require(
            math.isfinite(self.entropy_weight) and self.entropy_weight >= 0,
            "entropy_weight",
            self.entropy_weight,
            "must be a finite number >= 0",
        )


def entropy_loss(agent: QVPO, predictor: Any, key: Array, obs: Array) -> tuple[Array, dict]:
    """``entropy_weight`` times the unweighted denoising loss of ``entropy_samples`` uniform
    random actions per state (atanh of actions clipped to +-0.999), and that loss."""
    c = agent.config
    k_u, k_noise = jax.random.split(key)
    m = c.entropy_samples
    a = jax.random.uniform(k_u, (obs.shape[0] * m, agent.act_dim), minval=-1.0, maxval=1.0)
    u = replay_latent(a)
    t, eps = noise_draw(agent, k_noise, u.shape[0])
    ent = denoising_loss(agent, predictor(jnp.repeat(obs, m, axis=0)), t, eps, u)
    return c.entropy_weight * ent, {"entropy_loss": ent}


def qvpo_objective(agent: QVPO) -> Objective:
    """Weighted denoising with w_i = max(Q_i - V, 0) plus ``entropy_weight`` times the
    unweighted denoising loss of ``entropy_samples`` uniform random actions per state."""
    c = agent.config

    def sample_weights(q: Array) -> tuple[Array, dict[str, Array]]:
        w = qvpo_weights(q)
        return w, {"positive_fraction": jnp.mean((w > 0).astype(jnp.float32))}

    return weighted_denoising_objective(
        agent, sample_weights, c.target_particles, functools.partial(entropy_loss, agent)
    )


class QVPO(GenerativeAgent):
    """QVPO's advantage-weighted denoising loss with its entropy term (module docstring)."""

    name = "qvpo"
    Config = QVPOConfig
    make_objective = qvpo_objective
    METRICS: ClassVar[dict[str, str]] = {
        **WEIGHTED_METRICS,
        "actor_loss": "advantage-weighted denoising loss + entropy_weight * uniform-action loss",
        "weight_mean": "mean clipped advantage max(Q - V, 0) over the policy samples",
        "weight_max": "largest clipped advantage in the batch",
        "positive_fraction": "fraction of policy samples with positive advantage",
        "entropy_loss": "unweighted denoising loss on the uniform random actions",
    }

    config: QVPOConfig

    def explore_latent(self, state: Any, key: Array, obs: Array) -> Array:
        return best_of_latent(self, state, key, obs, self.config.behaviour_particles)
