"""Gaussian action noise of the TD3-style agents (QSM, DIPO): exploration noise on the
behaviour action and target-policy noise on the TD next action, both clipped to [-1, 1].

The config part :class:`ActionNoiseFields` and the critic's target
r + discount min_k Qbar_k(s', clip(tanh u' + target_noise N(0, I), -1, 1)), u' a policy
sample picked by ``train_pick``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from revflow.agents.base import AgentConfig, Array, Batch, require
from revflow.agents.critics import METRICS as CRITIC_METRICS
from revflow.agents.critics import td_target

__all__ = ["ACTOR_LOSS_METRICS", "ActionNoiseFields", "add_action_noise", "noisy_td_target"]

#: Metrics of an agent with a critic TD step and one actor loss on replayed actions.
ACTOR_LOSS_METRICS: dict[str, str] = {
    **CRITIC_METRICS,
    "target_q_mean": "mean TD target r + discount min_k Qbar_k(s', clip(a' + noise))",
    "actor_loss": "the method's actor loss, batch mean",
    "actor_grad_norm": "global L2 norm of the policy-net gradient (before clipping)",
    "policy_q_mean": "mean min_k Q(s, a) (fresh critics) at the replayed actions",
}


@dataclasses.dataclass(frozen=True)
class ActionNoiseFields(AgentConfig):
    """Stds of the Gaussian action noises."""

    #: Std of the Gaussian noise added to "explore" actions (then clipped to [-1, 1]).
    explore_noise: float = 0.0
    #: Std of the Gaussian noise added to the TD next action (then clipped to [-1, 1]).
    target_noise: float = 0.0

    def validate(self) -> None:
        super().validate()
        for name in ("explore_noise", "target_noise"):
            value = getattr(self, name)
            require(math.isfinite(value) and value >= 0, name, value, "must be finite and >= 0")


def add_action_noise(key: Array, action: Array, std: float) -> Array:
    """clip(action + std N(0, I), -1, 1) (the action itself when std is 0)."""
    if std <= 0:
        return action
    noise = jax.random.normal(key, action.shape, action.dtype)
    return jnp.clip(action + std * noise, -1.0, 1.0)


def noisy_td_target(agent: Any):
    """``td(state, batch, key) -> (target, {})`` of a generative agent whose config has
    :class:`ActionNoiseFields` (module docstring)."""
    c = agent.config

    def td(state: Any, batch: Batch, key: Array) -> tuple[Array, dict]:
        k_pi, k_noise = jax.random.split(key)
        u_next, _ = agent.latent(state, k_pi, batch.next_obs, c.train_pick)
        a_next = add_action_noise(k_noise, jnp.tanh(u_next), c.target_noise)
        next_q = agent.critic.q_min(state.target_critic_params, batch.next_obs, a_next)
        return td_target(batch, next_q, c.reward_scale), {}

    return td
