"""The one actor-critic update, and the agent that composes a policy, a critic and an
algorithm's objective into the :class:`revflow.agents.base.Agent` interface.

An algorithm is an :class:`Objective`: a few pure functions (Brax's ``make_losses`` style)
that :func:`actor_critic_update` calls in the order of method note §6 — the TD target from
the current state, one critic step, the actor's inputs from the fresh critics, one actor
gradient step, then any further step (a temperature), and the end-of-update state (Polyak
targets, ``step + 1``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from revflow.agents.base import Agent, Array, Batch, Metrics
from revflow.agents.common import GradientStep, advance, gradient_step
from revflow.agents.critics import CriticEnsemble

__all__ = [
    "ActorCriticAgent",
    "ActorCriticState",
    "Objective",
    "TargetPolicyState",
    "TemperatureState",
    "actor_critic_update",
    "no_post_update",
    "temperature_init",
]


@flax.struct.dataclass
class ActorCriticState:
    """Everything an actor-critic update reads and writes (a pytree)."""

    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    actor_opt: Any
    critic_opt: Any
    #: Number of updates applied so far (drives schedules).
    step: Array


@flax.struct.dataclass
class TargetPolicyState(ActorCriticState):
    """ActorCriticState plus a Polyak-averaged copy of the policy parameters (an algorithm
    whose TD next action comes from a target policy moves it in its ``post_update``)."""

    target_actor_params: Any


@flax.struct.dataclass
class TemperatureState(ActorCriticState):
    """ActorCriticState plus a learned temperature ``alpha = exp(log_alpha)``."""

    log_alpha: Array
    alpha_opt: Any


def no_post_update(
    state: Any, actor: GradientStep, batch: Batch, key: Any
) -> tuple[dict[str, Any], Metrics]:
    """No step after the actor's; the actor loss's auxiliary output (a dict) is logged."""
    return {}, dict(actor.aux)


class Objective(NamedTuple):
    """An algorithm's part of the update, as pure functions of the train state.

    - ``split(key) -> (k_td, k_actor, k_post)``: the PRNG keys of the three stages;
    - ``td_target(state, batch, k_td) -> (target (B,), metrics)``;
    - ``actor_inputs(state, critic_params, batch, k_actor) -> (inputs, metrics)``: everything
      the actor loss needs that does not depend on the actor's parameters (computed once,
      with the freshly updated critics);
    - ``actor_loss(actor_params, inputs) -> (loss, aux)``;
    - ``post_update(state, actor_step, batch, k_post) -> (extra state fields, metrics)``:
      any further step (a temperature); :func:`no_post_update` logs ``aux``.
    """

    split: Callable[[Array], tuple[Any, Any, Any]]
    td_target: Callable[[Any, Batch, Any], tuple[Array, Metrics]]
    actor_inputs: Callable[[Any, Any, Batch, Any], tuple[Any, Metrics]]
    actor_loss: Callable[[Any, Any], tuple[Array, Any]]
    post_update: Callable[[Any, GradientStep, Batch, Any], tuple[dict[str, Any], Metrics]] = (
        no_post_update
    )


def actor_critic_update(
    state: Any,
    batch: Batch,
    key: Array,
    objective: Objective,
    critic: CriticEnsemble,
    actor_opt: optax.GradientTransformation,
    tau: float,
) -> tuple[Any, Metrics]:
    """One critic step then one actor step (method note §6, steps 1-5) of ``objective``."""
    k_td, k_actor, k_post = objective.split(key)
    target, td_metrics = objective.td_target(state, batch, k_td)
    critic_params, critic_opt, metrics = critic.td_step(
        state.critic_params, state.critic_opt, batch, target
    )
    inputs, input_metrics = objective.actor_inputs(state, critic_params, batch, k_actor)

    def loss_fn(params: Any) -> tuple[Array, Any]:
        return objective.actor_loss(params, inputs)

    actor = gradient_step(loss_fn, actor_opt, state.actor_params, state.actor_opt, has_aux=True)
    extra, post_metrics = objective.post_update(state, actor, batch, k_post)
    new_state = advance(
        state, actor=actor, critic_params=critic_params, critic_opt=critic_opt, tau=tau, **extra
    )
    metrics.update(
        actor_loss=actor.loss,
        actor_grad_norm=actor.grad_norm,
        **td_metrics,
        **input_metrics,
        **post_metrics,
    )
    return new_state, metrics


class ActorCriticAgent(Agent):
    """An agent composed of ``self.policy`` (with ``init(key, obs_dim)``), ``self.critic``
    (a :class:`CriticEnsemble`), ``self.actor_opt`` and ``self.objective``, which a
    subclass's ``__init__`` sets; ``extra_state`` gives the initial values of the fields its
    ``State`` adds."""

    State: ClassVar[type] = ActorCriticState
    policy: Any
    critic: CriticEnsemble
    actor_opt: optax.GradientTransformation
    objective: Objective

    def extra_state(self) -> dict[str, Any]:
        return {}

    def init(self, key: Array) -> Any:
        k_actor, k_critic = jax.random.split(key)
        actor_params = self.policy.init(k_actor, self.obs_dim)
        critic_params = self.critic.init(k_critic, self.obs_dim, self.act_dim)
        return self.State(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=critic_params,
            actor_opt=self.actor_opt.init(actor_params),
            critic_opt=self.critic.optimizer.init(critic_params),
            step=jnp.zeros((), jnp.int32),
            **self.extra_state(),
        )

    def update(self, state: Any, batch: Batch, key: Array) -> tuple[Any, Metrics]:
        return actor_critic_update(
            state, batch, key, self.objective, self.critic, self.actor_opt, self.config.tau
        )


def temperature_init(init_alpha: float, optimizer: optax.GradientTransformation) -> dict:
    """Initial ``log_alpha`` and its optimiser state (:class:`TemperatureState`)."""

    log_alpha = jnp.asarray(math.log(init_alpha), jnp.float32)
    return {"log_alpha": log_alpha, "alpha_opt": optimizer.init(log_alpha)}
