"""DIPO, action-gradient then behaviour cloning (Yang et al. 2023), on the shared diffusion
policy of :mod:`revflow.agents.generative`.

Baselines note, "Action gradient". Replayed actions are pushed up the critic by
``action_steps`` = 20 steps of ``action_optimizer`` (Adam, lr 0.03) IN ACTION SPACE, each step
followed by clipping to [-1, 1]:

    a* = G^20(a),  G(a) = clip(a + Adam_step_lr(grad_a min_k Q_k(s, a)), -1, 1),

and the diffusion model is behaviour-cloned on them with the standard denoising loss

    E_{(s, a) ~ D, t, eps} || eps_theta(t, alpha_t u* + beta_t eps, s) - eps ||^2,
    u* = atanh(clip(a*, +-0.999)).

Published defaults (baselines note): 20 gradient steps, lr 0.03, cosine schedule; 100
diffusion steps in the original, 20 here (the RFM comparison's setting, baselines note).

Departures: (1) DIPO WRITES the improved actions back into its replay buffer, so later
updates start from already-improved actions; the engine's buffer is not agent-writable, so
here a* is recomputed from the replayed action at every update (20 steps from the stored
action, never accumulated across updates) and only the diffusion model sees a*; the critic
is trained on the stored (s, a, r, s'). (2) The policy lives in the tanh latent: the network
denoises u* = atanh(a*), actions are tanh of samples. (3) RFM's network and critic (shared by
design); the TD next action is one draw of the DDPM sampler. (4) The Adam state of the action
ascent starts fresh at each update (each batch is a new set of variables). (5) t_min 0.02
(:mod:`revflow.agents.policies` docstring).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from revflow.agents.action_noise import ACTOR_LOSS_METRICS, ActionNoiseFields, noisy_td_target
from revflow.agents.actor_critic import Objective
from revflow.agents.base import Array, Batch, require
from revflow.agents.configs import (
    FAST_DIFFUSION,
    UNREAD_ESTIMATOR_FIELDS,
    DiffusionAgentFields,
    Pick,
    TemperatureFields,
)
from revflow.agents.generative import GenerativeAgent
from revflow.agents.policies import replay_latent
from revflow.losses import generative_loss

__all__ = ["DIPO", "DIPOConfig", "dipo_objective"]

ACTION_OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class DIPOConfig(ActionNoiseFields, TemperatureFields, DiffusionAgentFields):
    """DIPO defaults (module docstring); the rest is RFM's critic and network."""

    explore_pick: Pick = "sample"
    train_pick: Pick = "sample"
    #: Gradient-ascent steps on the replayed actions, and their learning rate.
    action_steps: int = 20
    #: Learning rate of the gradient-ascent steps on the replayed actions.
    action_lr: float = 0.03
    #: "adam" (eps 1e-5) or plain "sgd" gradient ascent on the actions.
    action_optimizer: str = "adam"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"reference": {}, "fast": FAST_DIFFUSION}
    #: Fields of configs saved before the config parts, never read by DIPO.
    DROPPED: ClassVar[frozenset[str]] = UNREAD_ESTIMATOR_FIELDS

    def validate(self) -> None:
        super().validate()
        require(self.action_steps >= 1, "action_steps", self.action_steps, "must be >= 1")
        require(
            math.isfinite(self.action_lr) and self.action_lr > 0,
            "action_lr",
            self.action_lr,
            "must be a finite number > 0",
        )
        require(
            self.action_optimizer in ACTION_OPTIMIZERS,
            "action_optimizer",
            self.action_optimizer,
            f"must be one of {list(ACTION_OPTIMIZERS)}",
        )


def improve_actions(q_fn: Any, action: Array, steps: int, lr: float, optimizer: str) -> Array:
    """``steps`` ascent steps of ``q_fn(a) -> (B,)`` from ``action``, each clipped to [-1, 1]."""
    opt = optax.adam(lr, eps=1e-5) if optimizer == "adam" else optax.sgd(lr)
    grad_fn = jax.grad(lambda a: -jnp.sum(q_fn(a)))  # rows independent

    def body(carry: tuple[Array, Any], _: Any) -> tuple[tuple[Array, Any], None]:
        a, opt_state = carry
        updates, opt_state = opt.update(grad_fn(a), opt_state, a)
        return (jnp.clip(optax.apply_updates(a, updates), -1.0, 1.0), opt_state), None

    (a, _), _ = jax.lax.scan(body, (action, opt.init(action)), None, length=steps)
    return jax.lax.stop_gradient(a)


def dipo_objective(agent: DIPO) -> Objective:
    """DIPO's actor loss: the denoising loss of the improved actions a* = G^steps(a),

        || eps_theta(t, alpha_t u* + beta_t eps, s) - eps ||^2,  u* = atanh(clip(a*, +-0.999)),

    and the TD3-style critic target (:func:`revflow.agents.action_noise.noisy_td_target`)."""
    c, policy, critic = agent.config, agent.policy, agent.critic

    def split(key: Array) -> tuple[Any, Any, Any]:
        k_next, k_actor = jax.random.split(key)
        return k_next, k_actor, None

    def actor_inputs(state: Any, critic_params: Any, batch: Batch, key: Array):
        def q_fn(a: Array) -> Array:
            return critic.q_min(critic_params, batch.obs, a)

        improved = improve_actions(
            q_fn, batch.action, c.action_steps, c.action_lr, c.action_optimizer
        )
        u_star = replay_latent(improved)
        k_t, k_eps = jax.random.split(key)
        t, u_t = policy.noisy_points(k_t, k_eps, u_star)
        q_old, q_new = q_fn(batch.action), q_fn(improved)
        metrics = {
            "improved_q_mean": jnp.mean(q_new),
            "q_gain_mean": jnp.mean(q_new - q_old),
            "action_shift_mean": jnp.mean(jnp.linalg.norm(improved - batch.action, axis=-1)),
            "policy_q_mean": jnp.mean(q_old),
        }
        inputs = jax.lax.stop_gradient((t, u_t, u_star))
        return (batch.obs, agent.temperature_of(state), inputs), metrics

    def actor_loss(params: Any, inputs: Any) -> tuple[Array, dict]:
        """Standard denoising loss: eps-target (u_t - alpha_t u*) / beta_t = the drawn noise."""
        obs, lam, (t, u_t, u_star) = inputs
        predict = policy.predictor(params, obs, lam)
        return generative_loss(predict, policy.path, t, u_t, u_star, "eps"), {}

    return Objective(split, noisy_td_target(agent), actor_inputs, actor_loss)


class DIPO(GenerativeAgent):
    """Action-gradient improvement of replayed actions, then behaviour cloning (docstring)."""

    name = "dipo"
    Config = DIPOConfig
    make_objective = dipo_objective
    METRICS: ClassVar[dict[str, str]] = {
        **ACTOR_LOSS_METRICS,
        "actor_loss": "denoising loss ||eps_theta(t, alpha_t u* + beta_t eps) - eps||^2, mean",
        "improved_q_mean": "mean min_k Q(s, a*) at the improved actions",
        "q_gain_mean": "mean min_k Q(s, a*) - min_k Q(s, a) over the batch",
        "action_shift_mean": "mean L2 norm of a* - a",
    }

    config: DIPOConfig

    def explore_std(self, state: Any) -> float | None:
        return self.config.explore_noise or None
