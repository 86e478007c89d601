"""Weighted denoising on the policy's own samples: the objective QVPO and DPMD share
(baselines note, "Weighted regression").

For each state N latent actions u1_i are drawn from the CURRENT policy (no gradient), their
min-Q under the fresh critics gives per-sample weights w_i (the algorithm's rule), and the
denoising loss of the re-noised samples is weighted by them,

    L(theta) = E_{s,i,t,eps}[ w_i || eps_theta(t, alpha_t u1_i + beta_t eps, s) - eps ||^2 ]
             (+ an algorithm's extra term).

The critic's TD target is r + discount * min_k Qbar_k(s', a'), a' the best of
``target_particles`` policy samples by Q; the behaviour policy is the best of
``explore_particles`` by Q.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from revflow.agents.actor_critic import Objective
from revflow.agents.base import AgentConfig, Array, Batch, require
from revflow.agents.configs import (
    FAST_DIFFUSION,
    UNREAD_ESTIMATOR_FIELDS,
    CriticFields,
    DiffusionPolicyFields,
    OptimiserFields,
    TemperatureFields,
)
from revflow.agents.critics import td_target
from revflow.agents.policies import replay_latent
from revflow.losses import generative_loss

__all__ = [
    "FAST_WEIGHTED",
    "WEIGHTED_METRICS",
    "PolicySampleFields",
    "WeightedDenoisingFields",
    "best_of_latent",
    "uniform_action_loss",
    "weighted_denoising_objective",
]

#: Metrics of the weighted-denoising update.
WEIGHTED_METRICS: dict[str, str] = {
    "critic_loss": "mean squared TD error, averaged over the critic ensemble",
    "q_mean": "mean online Q(s, a) over batch and ensemble, at the replayed actions",
    "q_std": "standard deviation of online Q(s, a) over batch and ensemble",
    "target_q_mean": "mean TD target r + discount * min_k Qbar_k(s', a'_best)",
    "critic_grad_norm": "global L2 norm of the critic gradient (before clipping)",
    "actor_loss": "total actor loss (weighted denoising loss plus any extra term)",
    "actor_grad_norm": "global L2 norm of the policy-net gradient (before clipping)",
    "policy_q_mean": "mean min_k Q(s, a) over the N policy samples per state",
    "weight_mean": "mean per-sample weight of the denoising loss",
    "weight_max": "largest per-sample weight in the batch",
}

Weights = Callable[[Array], tuple[Array, dict[str, Array]]]  # q (B, N) -> (w (B, N), metrics)
#: ``extra(predictor_of_obs, key, obs) -> (loss, metrics)``: an additional actor loss term.
ExtraLoss = Callable[[Callable[[Array], Any], Array, Array], tuple[Array, dict[str, Array]]]


@dataclasses.dataclass(frozen=True)
class PolicySampleFields(AgentConfig):
    """Current-policy samples per state of the weighted denoising loss."""

    #: Current-policy samples per state in the weighted denoising loss.
    num_policy_samples: int = 64

    def validate(self) -> None:
        super().validate()
        n = self.num_policy_samples
        require(n >= 1, "num_policy_samples", n, "must be >= 1")


#: The ``fast`` preset of the weighted-denoising agents: FAST_DIFFUSION, 16 policy samples.
FAST_WEIGHTED: dict[str, Any] = {**FAST_DIFFUSION, "num_policy_samples": 16}


@dataclasses.dataclass(frozen=True)
class WeightedDenoisingFields(
    PolicySampleFields, TemperatureFields, DiffusionPolicyFields, CriticFields, OptimiserFields
):
    """The config parts of a weighted-denoising agent (``lam`` only conditions the latent
    network: these agents have no Boltzmann temperature)."""

    #: Fields of configs saved before the config parts, never read by these agents.
    DROPPED: ClassVar[frozenset[str]] = UNREAD_ESTIMATOR_FIELDS | {"explore_pick", "train_pick"}


def best_of_latent(agent: Any, state: Any, key: Array, obs: Array, n: int) -> Array:
    """The behaviour policy's latent action: the best of ``n`` policy samples by Q."""
    q_fn = agent.q_fn(state.critic_params)
    lam = agent.temperature_of(state)
    return agent.policy.best_of(state.actor_params, key, obs, lam, q_fn, n)[0]


def noise_draw(agent: Any, key: Array, rows: int) -> tuple[Array, Array]:
    """t ~ U[t_min, t_max] (rows,) and eps ~ N(0, I) (rows, D)."""
    c = agent.config
    k_t, k_eps = jax.random.split(key)
    t = jax.random.uniform(k_t, (rows,), minval=c.t_min, maxval=c.t_max)
    return t, jax.random.normal(k_eps, (rows, agent.act_dim), jnp.float32)


def denoising_loss(
    agent: Any, predict: Any, t: Array, eps: Array, u1: Array, weights: Array | None = None
) -> Array:
    """mean_rows w ||predict(t, u_t) - eps||^2, u_t = alpha_t u1 + beta_t eps; rows (M,),
    u1 and eps (M, D). The eps target is ``losses.generative_loss``'s map of u1."""
    path = agent.policy.path
    u_t = path.alpha(t)[:, None] * u1 + path.beta(t)[:, None] * eps
    return generative_loss(predict, path, t, u_t, u1, agent.policy.parameterisation, weights)


def uniform_action_loss(
    agent: Any, samples: int, weight: float, predictor: Any, key: Array, obs: Array
) -> tuple[Array, dict]:
    """An entropy term (QVPO's latent variant): ``weight`` times the unweighted denoising
    loss of ``samples`` uniform random actions per state (atanh of actions clipped to
    +-0.999), and that loss as ``entropy_loss``."""
    k_u, k_noise = jax.random.split(key)
    rows = obs.shape[0] * samples
    a = jax.random.uniform(k_u, (rows, agent.act_dim), minval=-1.0, maxval=1.0)
    t, eps = noise_draw(agent, k_noise, rows)
    ent = denoising_loss(
        agent, predictor(jnp.repeat(obs, samples, axis=0)), t, eps, replay_latent(a)
    )
    return weight * ent, {"entropy_loss": ent}


def weighted_denoising_objective(
    agent: Any, sample_weights: Weights, target_particles: int, extra_loss: ExtraLoss | None = None
) -> Objective:
    """The objective of the module docstring with the algorithm's ``sample_weights`` and
    optional ``extra_loss``."""
    c, policy, critic = agent.config, agent.policy, agent.critic

    def split(key: Array) -> tuple[Any, Any, Any]:
        k_next, k_samples, k_noise, k_extra = jax.random.split(key, 4)
        return k_next, (k_samples, k_noise, k_extra), None

    def critic_target(state: Any, batch: Batch, key: Array) -> tuple[Array, dict]:
        u_next, _ = policy.best_of(
            state.actor_params,
            key,
            batch.next_obs,
            agent.temperature_of(state),
            agent.q_fn(state.critic_params),
            target_particles,
        )
        next_q = critic.q_min(state.target_critic_params, batch.next_obs, jnp.tanh(u_next))
        return td_target(batch, next_q, c.reward_scale), {}

    def actor_inputs(state: Any, critic_params: Any, batch: Batch, keys: Any):
        k_samples, k_noise, k_extra = keys
        lam = agent.temperature_of(state)
        n = c.num_policy_samples
        u1 = policy.sample(state.actor_params, k_samples, batch.obs, lam, n)
        u1 = jax.lax.stop_gradient(u1)  # (B, N, D)
        q = critic.q_min(critic_params, batch.obs[:, None, :], jnp.tanh(u1))  # (B, N)
        w, weight_metrics = sample_weights(q)
        w = jax.lax.stop_gradient(w)
        rows = u1.shape[0] * n
        t, eps = noise_draw(agent, k_noise, rows)
        metrics = {
            "policy_q_mean": jnp.mean(q),
            "weight_mean": jnp.mean(w),
            "weight_max": jnp.max(w),
            **weight_metrics,
        }
        inputs = (batch.obs, lam, t, eps, u1.reshape(rows, -1), w.reshape(rows), k_extra)
        return inputs, metrics

    def actor_loss(params: Any, inputs: Any) -> tuple[Array, dict]:
        obs, lam, t, eps, u1, w, k_extra = inputs
        obs_rows = jnp.repeat(obs, c.num_policy_samples, axis=0)
        main = denoising_loss(agent, policy.predictor(params, obs_rows, lam), t, eps, u1, w)
        if extra_loss is None:
            return main + jnp.zeros((), jnp.float32), {}
        extra, aux = extra_loss(lambda o: policy.predictor(params, o, lam), k_extra, obs)
        return main + extra, aux

    return Objective(split, critic_target, actor_inputs, actor_loss)
