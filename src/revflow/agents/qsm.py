"""QSM, Q-score matching (Psenka et al. ICML 2024, arXiv 2312.11752), on the shared diffusion
policy of :mod:`revflow.agents.generative`.

Baselines note, "Score matching to the Q-gradient". The denoiser's score is regressed onto M
times the action-gradient of Q AT THE NOISY ACTION ITSELF (no posterior average). In the tanh
latent (a = tanh u) the target density is p1(u) ~ exp(M Q(s, tanh u)) prod sech^2(u), and with
eps-prediction (eps = -beta_t score) the actor minimises

    E_{(s, a) ~ D, t, eps} || eps_theta(t, u_t, s) + beta_t grad_u [M Q(s, tanh u_t)
                                                      + sum_j log sech^2(u_t,j)] ||^2,
    u_t = alpha_t atanh(a) + beta_t eps,   Q = min_k Q_k (fresh critics, after the TD step).

Published defaults (baselines note): M = 50 (``q_scale``), VP schedule (cosine here), 20
denoising steps (RFM comparison; 5 in the original), Gaussian exploration noise 0.1
(``explore_noise``) and target-action noise 0.1 (``target_noise``).

Bounded actions. The original (Alescontrela/score_matching_rl, ``ddpm_sampler`` with its
default ``clip_sampler=True``) samples in ACTION space and clips the iterate x_t to [-1, 1]
after every reverse step, and the final action again. Here the sampler's iterate is clipped
to the latent box |u_j| <= atanh(0.999) ~ 3.8 after every step (``clip_sampler``, default
True; ``samplers.ddpm_sample``, ``clip``). Without it the latent ran away on Pendulum (seed 1:
median |u| 40 after warm-up, ~4e3 at 5000 steps, every action -1; return -1355).

Departures: (1) the policy lives in the tanh latent, so the target score carries the
Jacobian term grad_u sum log sech^2 u (exact for the squashed density), and the sampler is
clipped to the latent box |u| <= atanh(0.999) instead of the action box [-1, 1];
(2) RFM's network and critic (shared by design, baselines note); the network's temperature
input is fed lam = 1/M (there is no field ``lam``); (3) noised points are built from
replayed actions, atanh(clip(a, +-0.999)); (4) the target action a' = clip(tanh u' + 0.1 N,
-1, 1), u' one draw of the clipped DDPM sampler, the noise itself is not clipped; (5) t_min
0.02 (:mod:`revflow.agents.policies` docstring); (6) the actor loss is the paper's regression
onto the target score; the authors' code (``score_matching_learner.py``) minimises the inner product
-eps_pred . dQ/da instead.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from revflow import estimators
from revflow.agents.action_noise import ACTOR_LOSS_METRICS, ActionNoiseFields, noisy_td_target
from revflow.agents.actor_critic import Objective
from revflow.agents.base import Array, Batch, require
from revflow.agents.configs import (
    FAST_DIFFUSION,
    UNREAD_ESTIMATOR_FIELDS,
    UNREAD_TEMPERATURE_FIELDS,
    CriticFields,
    DiffusionPolicyFields,
    OptimiserFields,
    Pick,
    PickFields,
)
from revflow.agents.generative import GenerativeAgent
from revflow.agents.policies import replay_latent
from revflow.losses import regression_loss

__all__ = ["QSM", "QSMConfig", "qsm_objective", "score_target"]


@dataclasses.dataclass(frozen=True)
class QSMConfig(
    ActionNoiseFields, PickFields, DiffusionPolicyFields, CriticFields, OptimiserFields
):
    """QSM defaults (module docstring); the rest is RFM's critic and network."""

    explore_pick: Pick = "sample"
    train_pick: Pick = "sample"
    #: M: the score target is M grad_a Q (the network's temperature input is 1/M).
    q_scale: float = 50.0
    explore_noise: float = 0.1
    target_noise: float = 0.1
    #: Clip the sampler's iterate to the latent box |u| <= atanh(0.999) after every step, as
    #: QSM's ``clip_sampler`` clips x_t to [-1, 1] (``samplers.ddpm_sample``, ``clip``).
    clip_sampler: bool = True

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"reference": {}, "fast": FAST_DIFFUSION}
    #: Fields of configs saved before the config parts, never read by QSM.
    DROPPED: ClassVar[frozenset[str]] = UNREAD_ESTIMATOR_FIELDS | UNREAD_TEMPERATURE_FIELDS

    def validate(self) -> None:
        super().validate()
        require(
            math.isfinite(self.q_scale) and self.q_scale > 0,
            "q_scale",
            self.q_scale,
            "must be a finite number > 0",
        )
        if self.clip_sampler:
            require(
                self.policy == "diffusion",
                "policy",
                self.policy,
                "must be 'diffusion' with clip_sampler=True (a clipped diffusion sampler)",
            )


def score_target(agent: QSM, critic_params: Any, obs: Array, u_t: Array, t: Array) -> Array:
    """The eps target -beta_t grad_u [M min_k Q_k(s, tanh u) + sum log sech^2 u] at u = u_t."""
    m = agent.config.q_scale

    def log_p1(u: Array) -> Array:
        q = agent.critic.q_min(critic_params, obs, jnp.tanh(u))
        return jnp.sum(m * q + jnp.sum(estimators.log_sech2(u), axis=-1))

    score = jax.grad(log_p1)(u_t)  # rows are independent, so grad of the sum is per row
    return -agent.policy.path.beta(t)[:, None] * score


def qsm_objective(agent: QSM) -> Objective:
    """QSM's actor loss: eps regression onto the target score at the noisy replayed action,

        || eps_theta(t, u_t, s) + beta_t grad_u [M min_k Q_k(s, tanh u) + sum log sech^2 u] ||^2

    (the gradient taken at u = u_t)

    and the TD3-style critic target (:func:`revflow.agents.action_noise.noisy_td_target`)."""
    policy, critic = agent.policy, agent.critic

    def split(key: Array) -> tuple[Any, Any, Any]:
        k_next, k_actor = jax.random.split(key)
        return k_next, k_actor, None

    def actor_inputs(state: Any, critic_params: Any, batch: Batch, key: Array):
        k_t, k_eps = jax.random.split(key)
        t, u_t = policy.noisy_points(k_t, k_eps, replay_latent(batch.action))
        target = score_target(agent, critic_params, batch.obs, u_t, t)
        inputs = jax.lax.stop_gradient((t, u_t, target))
        metrics = {
            "target_norm": jnp.mean(jnp.linalg.norm(target, axis=-1)),
            "policy_q_mean": jnp.mean(critic.q_min(critic_params, batch.obs, batch.action)),
        }
        return (batch.obs, agent.temperature_of(state), inputs), metrics

    def actor_loss(params: Any, inputs: Any) -> tuple[Array, dict]:
        obs, lam, (t, u_t, target) = inputs
        return regression_loss(policy.predictor(params, obs, lam)(t, u_t), target), {}

    return Objective(split, noisy_td_target(agent), actor_inputs, actor_loss)


class QSM(GenerativeAgent):
    """Q-score matching: eps regression onto -beta_t M grad_u Q at u_t (module docstring)."""

    name = "qsm"
    Config = QSMConfig
    make_objective = qsm_objective
    METRICS: ClassVar[dict[str, str]] = {
        **ACTOR_LOSS_METRICS,
        "actor_loss": "||eps_theta(t, u_t) + beta_t grad_u [M Q + log sech^2](u_t)||^2, mean",
        "target_norm": "mean L2 norm of the eps target -beta_t grad_u log p1(u_t)",
    }

    config: QSMConfig

    def temperature_of(self, state: Any) -> Array:
        return jnp.asarray(1.0 / self.config.q_scale, jnp.float32)

    def sampler_clip(self) -> str | None:
        return "iterate" if self.config.clip_sampler else None

    def explore_std(self, state: Any) -> float | None:
        return self.config.explore_noise or None
