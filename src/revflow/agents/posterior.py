"""The posterior-target objective: the one objective of ``rfm``, ``rfm-diffusion``, ``qne``,
``dqs`` and ``sdac`` (method note §3-6; baselines note, noise- and gradient-expectation
families), which differ only in their configs.

The actor regresses its network onto an affine map of ONE posterior mean,

    E_{s, t, u_t} || f_theta(t, u_t, s, lam) - stop_grad(T_path,param(t, u_t, mu1_hat)) ||^2,
    u_t = alpha_t u1 + beta_t eps,

where mu1_hat = :func:`revflow.estimators.estimate_posterior_mean_batch` of the latent
Boltzmann target log p1(u) = min_k Q_k(s, tanh u)/lam + sum log sech^2 u (method note §4-5)
with the config's control variate, and T is the map of :mod:`revflow.paths` to the network's
parameterisation (velocity for flows, eps = E[u0 | u_t] for diffusion, method note §2). The
critic's TD target is r + discount min_k Qbar_k(s', a'), a' a policy sample picked by
``train_pick``, or with ``entropy_backup`` the soft r + discount (min_k Qbar_k(s', a') -
lam log pi(a'|s')), log pi the exact change-of-variables density of the deterministic sampler
(:mod:`revflow.agents.policies`).

Switches beyond the policy's (:mod:`revflow.agents.configs`): ``endpoint_source`` (u1 from
the ``policy``, method note §6, or atanh of the ``replay`` action clipped to +-0.999, as QNE
does), ``entropy_backup`` and ``actor_loss_reduction`` (the squared error summed or
averaged over action dimensions).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal, get_args

import jax
import jax.numpy as jnp

from revflow import estimators
from revflow.agents.actor_critic import Objective
from revflow.agents.base import Array, Batch, require
from revflow.agents.configs import (
    CriticFields,
    DiffusionAgentFields,
    EstimatorFields,
    LatentPolicyFields,
    OptimiserFields,
    PickFields,
    PolicySwitchFields,
    TemperatureFields,
    parse_control_variate,
)
from revflow.agents.critics import td_target
from revflow.agents.policies import replay_latent
from revflow.losses import generative_loss

__all__ = [
    "METRICS",
    "DiffusionPosteriorConfig",
    "PosteriorConfig",
    "PosteriorFields",
    "SwitchablePosteriorConfig",
    "posterior_mean",
    "posterior_objective",
    "weighted_target_metrics",
]

EndpointSource = Literal["policy", "replay"]
#: Reduction of the actor's squared error over the action dimensions.
LOSS_REDUCTIONS: tuple[str, ...] = ("sum", "mean")

#: Metrics of the posterior-target update.
METRICS: dict[str, str] = {
    "critic_loss": "mean squared TD error, averaged over the critic ensemble",
    "actor_loss": "regression loss ||f_theta - target(mu1)||^2, mean over the batch",
    "q_mean": "mean online Q(s, a) over batch and ensemble, at the replayed actions",
    "q_std": "standard deviation of online Q(s, a) over batch and ensemble",
    "target_q_mean": "mean TD target",
    "critic_grad_norm": "global L2 norm of the critic gradient (before clipping)",
    "actor_grad_norm": "global L2 norm of the policy-net gradient (before clipping)",
    "lam": "temperature lam of the Boltzmann target",
    "ess_mean": "mean effective sample size 1/sum w^2 of the K reverse samples",
    "ess_min": "smallest effective sample size in the batch",
    "cv_coefficient_mean": "mean control-variate coefficient c over batch and dims",
    "cv_coefficient_abs_max": "largest |c| in the batch",
    "posterior_variance_mean": "mean delta-method variance of the mu1 estimate",
    "policy_q_mean": "mean min_k Q(s, a) of the training endpoints",
    "target_norm": "mean L2 norm of mu1 - mu0 (the linear path's velocity target)",
}


@dataclasses.dataclass(frozen=True)
class PosteriorFields(EstimatorFields):
    """The estimator's fields and the posterior objective's own switches (class attributes
    here, fields in the switchable configs)."""

    endpoint_source: ClassVar[str] = "policy"
    entropy_backup: ClassVar[bool] = False
    actor_loss_reduction: ClassVar[str] = "sum"

    def validate(self) -> None:
        super().validate()
        for name, choices in (
            ("endpoint_source", get_args(EndpointSource)),
            ("actor_loss_reduction", LOSS_REDUCTIONS),
        ):
            value = getattr(self, name)
            require(value in choices, name, value, f"must be one of {list(choices)}")


@dataclasses.dataclass(frozen=True)
class PosteriorConfig(
    PosteriorFields, TemperatureFields, LatentPolicyFields, CriticFields, OptimiserFields
):
    """The posterior-target agent with its switches fixed (class attributes): a flow on the
    linear path, velocity parameterisation, Euler sampler, Boltzmann picks, policy
    endpoints, no entropy term. Defaults are the reference defaults of method note §6."""


@dataclasses.dataclass(frozen=True)
class SwitchablePosteriorConfig(
    PosteriorFields,
    TemperatureFields,
    PickFields,
    PolicySwitchFields,
    CriticFields,
    OptimiserFields,
):
    """:class:`PosteriorConfig` with the policy's and the objective's switches as fields."""

    #: Training endpoints u1: "policy" samples or atanh of the "replay" actions.
    endpoint_source: EndpointSource = "policy"
    #: Soft TD target r + discount (min Qbar - lam log pi(a'|s')) (module docstring).
    entropy_backup: bool = False


@dataclasses.dataclass(frozen=True)
class DiffusionPosteriorConfig(PosteriorFields, TemperatureFields, DiffusionAgentFields):
    """:class:`SwitchablePosteriorConfig` with the diffusion baselines' policy defaults."""

    #: Training endpoints u1: "policy" samples or atanh of the "replay" actions.
    endpoint_source: EndpointSource = "policy"
    #: Soft TD target r + discount (min Qbar - lam log pi(a'|s')) (module docstring).
    entropy_backup: bool = False


def weighted_target_metrics(
    lam: Array, weights: Array, variance: Array, policy_q: Array, target: Array
) -> dict[str, Array]:
    """:data:`METRICS` of an actor target that is a self-normalised average over K samples
    with ``weights`` (B, K) and no control variate (qne's box policy, dqs's action space)."""
    ess = 1.0 / jnp.sum(weights**2, axis=1)
    zero = jnp.zeros((), jnp.float32)
    return {
        "lam": lam,
        "ess_mean": jnp.mean(ess),
        "ess_min": jnp.min(ess),
        "cv_coefficient_mean": zero,
        "cv_coefficient_abs_max": zero,
        "posterior_variance_mean": variance,
        "policy_q_mean": jnp.mean(policy_q),
        "target_norm": jnp.mean(jnp.linalg.norm(target, axis=-1)),
    }


def posterior_mean(
    agent: Any, critic_params: Any, key: Array, obs: Array, u_t: Array, t: Array, lam: Array
) -> estimators.PosteriorEstimate:
    """mu1 = E[u1 | u_t] of the latent Boltzmann target (method note §4-5), held constant."""
    c, critic = agent.config, agent.critic

    def log_target(action: Array, o: Array) -> Array:
        return critic.q_min(critic_params, o, action) / lam

    post = estimators.estimate_posterior_mean_batch(
        key,
        log_target,
        u_t,
        t,
        agent.policy.path,
        c.num_reverse_samples,
        control_variate=parse_control_variate(c.control_variate),
        ridge=c.cv_ridge,
        clip=c.cv_clip,
        latent_tanh=True,
        cond=obs,
    )
    return jax.lax.stop_gradient(post)


def posterior_objective(agent: Any) -> Objective:
    """The posterior-target objective of a :class:`revflow.agents.generative.GenerativeAgent`
    whose config is one of this module's (module docstring)."""
    c, policy, critic = agent.config, agent.policy, agent.critic

    def split(key: Array) -> tuple[Any, Any, Any]:
        k_end, k_next, k_t, k_eps, k_post = jax.random.split(key, 5)
        return k_next, (k_end, k_t, k_eps, k_post), None

    def next_value(state: Any, batch: Batch, key: Array) -> tuple[Array, dict[str, Array]]:
        lam = agent.temperature_of(state)
        if c.entropy_backup:
            u_next, log_pi = policy.log_pi(state.actor_params, key, batch.next_obs, lam)
            next_q = critic.q_min(state.target_critic_params, batch.next_obs, jnp.tanh(u_next))
            return next_q - lam * log_pi, {"next_log_pi_mean": jnp.mean(log_pi)}
        u_next, _ = agent.latent(state, key, batch.next_obs, c.train_pick)
        next_q = critic.q_min(state.target_critic_params, batch.next_obs, jnp.tanh(u_next))
        if "next_log_pi_mean" in agent.METRICS:
            return next_q, {"next_log_pi_mean": jnp.zeros((), jnp.float32)}
        return next_q, {}

    def critic_target(state: Any, batch: Batch, key: Array) -> tuple[Array, dict[str, Array]]:
        value, metrics = next_value(state, batch, key)
        return td_target(batch, value, c.reward_scale), metrics

    def actor_inputs(state: Any, critic_params: Any, batch: Batch, keys: Any):
        k_end, k_t, k_eps, k_post = keys
        lam = agent.temperature_of(state)
        if c.endpoint_source == "replay":
            u1 = replay_latent(batch.action)
            policy_q = critic.q_min(state.critic_params, batch.obs, jnp.tanh(u1))
        else:
            u1, policy_q = agent.latent(state, k_end, batch.obs, c.train_pick)
        u1 = jax.lax.stop_gradient(u1)
        t, u_t = policy.noisy_points(k_t, k_eps, u1)
        post = posterior_mean(agent, critic_params, k_post, batch.obs, u_t, t, lam)
        diag = estimators.posterior_diagnostics(post)
        metrics = {
            "lam": lam,
            "ess_mean": diag["ess_mean"],
            "ess_min": diag["ess_min"],
            "cv_coefficient_mean": diag["coefficient_mean"],
            "cv_coefficient_abs_max": diag["coefficient_abs_max"],
            "posterior_variance_mean": diag["variance_mean"],
            "policy_q_mean": jnp.mean(policy_q),
            "target_norm": jnp.mean(jnp.linalg.norm(post.x1 - post.x0, axis=-1)),
        }
        return (batch.obs, t, u_t, post.x1, lam), metrics

    def actor_loss(params: Any, inputs: Any) -> tuple[Array, dict]:
        """Squared error of the policy net against the parameterisation's map of mu1."""
        obs, t, u_t, mu1, lam = inputs
        predict = policy.predictor(params, obs, lam)
        loss = generative_loss(predict, policy.path, t, u_t, mu1, policy.parameterisation)
        return (loss / agent.act_dim if c.actor_loss_reduction == "mean" else loss), {}

    return Objective(split, critic_target, actor_inputs, actor_loss)
