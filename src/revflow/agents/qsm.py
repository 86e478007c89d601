"""QSM, Q-score matching (Psenka et al. ICML 2024, arXiv 2312.11752): by default as the authors'
code runs it (their ``src/agent/qsm.py``; baselines note, "qsm"), checked quantity by quantity
by ``benchmarks/fidelity``; revflow's earlier variant is the preset ``revflow``.

Default (``policy_space="box"``, :mod:`revflow.agents.box_diffusion` with QSM's options): an
eps-prediction diffusion policy in the action box on the discrete VP-beta schedule of T = 20
steps, the network reading the integer step k and the temperature input 1.0 (their
``ddpm_temperature``), a DDPM sampler (noise std sqrt(beta_k)) whose iterate is clipped to
[-1, 1] after every step (``clip_sampler``). One update (:func:`qsm_box_objective`):
(1) a' = clip(one sample at s' + 0.1 N(0, I), -1, 1), TD target r + discount min_k
Qbar_k(s', a'), critic step (each critic its own MSE); (2) with the critics AFTER that step,
the eps target -M mean_j grad_a Q_j(s, a_k) (M = 50, ``q_scale``) at noised REPLAY actions
a_k, loss mean over batch and action dimensions; (3) Polyak step. Adam, no gradient
clipping, every kernel orthogonal (gain sqrt 2), the ``sin-cos-1e3`` embedding; data
collection one sample + clipped N(0, 0.1^2) noise; evaluation (``best-of-n``, the engine's
evaluation mode) ONE sample drawn from a key that is a hash of the state.

``policy_space="latent"`` (preset ``revflow``, and every config saved before this option:
``LEGACY_DEFAULTS``) is revflow's earlier qsm (:func:`qsm_latent_objective`): the policy in the
tanh latent on the continuous VP-cosine path (t in [0.02, 0.999], time input 1000 t), the eps
target -beta_t grad_u [M min_k Q_k(s, tanh u) + sum log sech^2 u] at u_t built from
atanh(clip(a, +-0.999)), temperature input 1/M, the sampler clipped to the latent box
|u| <= atanh(0.999) (without it the latent ran away on Pendulum, seed 1: every action -1,
return -1355), DDPM noise the posterior std, evaluation best of 32 by Q with the engine's
keys, LeCun init, ``cos-sin-1e4``, the loss summed over action dims, clip 10 (one global
norm). Both regress onto the target score; the original code (Alescontrela/
score_matching_rl) minimises the inner product -eps_pred . dQ/da instead.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from revflow import estimators
from revflow.agents.action_noise import (
    ACTOR_LOSS_METRICS,
    ActionNoiseFields,
    add_action_noise,
    noisy_td_target,
)
from revflow.agents.actor_critic import Objective
from revflow.agents.base import Array, Batch, require
from revflow.agents.box_diffusion import (
    POLICY_SPACES,
    BoxDiffusionPolicy,
    PolicySpace,
    state_hash_keys,
)
from revflow.agents.configs import (
    FAST_DIFFUSION,
    REVFLOW_NETWORK,
    UNREAD_ESTIMATOR_FIELDS,
    UNREAD_TEMPERATURE_FIELDS,
    AuthorsNetworkFields,
    CriticFields,
    DiffusionPolicyFields,
    OptimiserFields,
    Pick,
    PickFields,
)
from revflow.agents.critics import td_target
from revflow.agents.generative import GenerativeAgent
from revflow.agents.policies import replay_latent
from revflow.losses import regression_loss

__all__ = ["QSM", "QSMConfig", "box_eps_target", "qsm_objective", "score_target"]

#: The box policy's temperature input (the authors' ``ddpm_temperature``).
DDPM_TEMPERATURE = 1.0
#: The actor loss's reduction over action dimensions (``losses.regression_loss``).
REDUCTIONS: tuple[str, ...] = ("mean", "sum")


@dataclasses.dataclass(frozen=True)
class QSMConfig(
    AuthorsNetworkFields,
    ActionNoiseFields,
    PickFields,
    DiffusionPolicyFields,
    CriticFields,
    OptimiserFields,
):
    """QSM defaults (module docstring): the authors' unless ``policy_space`` is "latent".
    The box variant reads ``num_flow_steps`` (T), ``q_scale``, the noises, ``clip_sampler``
    and the network / optimiser fields; the latent variant also the policy switches,
    ``t_min``/``t_max``, the picks and ``num_particles``."""

    explore_pick: Pick = "sample"
    train_pick: Pick = "sample"
    #: M: the eps target is -M grad_a Q (latent: the temperature input is 1/M).
    q_scale: float = 50.0
    explore_noise: float = 0.1
    target_noise: float = 0.1
    #: Clip the sampler's iterate after every step: to [-1, 1] (box), to the latent box
    #: |u| <= atanh(0.999) (latent; ``samplers.ddpm_sample``, ``clip``).
    clip_sampler: bool = True
    #: "box": the authors' policy in the action box; "latent": revflow's tanh-latent variant.
    policy_space: PolicySpace = "box"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        "fast": FAST_DIFFUSION,
        # revflow's variant before the authors' defaults (module docstring).
        "revflow": {"policy_space": "latent", **REVFLOW_NETWORK},
    }
    # Runs saved before ``policy_space`` existed had revflow's variant.
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = PRESETS["revflow"]
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
        for name, choices in (
            ("policy_space", POLICY_SPACES),
            ("actor_loss_reduction", REDUCTIONS),
        ):
            value = getattr(self, name)
            require(value in choices, name, value, f"must be one of {list(choices)}")
        if self.clip_sampler and self.policy_space == "latent":
            require(
                self.policy == "diffusion",
                "policy",
                self.policy,
                "must be 'diffusion' with clip_sampler=True (a clipped diffusion sampler)",
            )


def box_eps_target(q_each: Any, obs: Array, a_k: Array, q_scale: float) -> Array:
    """-M mean_j grad_a Q_j(s, a) at a = a_k (B, D); ``q_each(obs, a)`` -> (num_critics, B)."""
    grads = jax.jacrev(lambda a: jnp.sum(q_each(obs, a), axis=-1))(a_k)  # (critics, B, D)
    return -q_scale * jnp.mean(grads, axis=0)


def qsm_box_objective(agent: QSM) -> Objective:
    """The authors' QSM update (module docstring, steps 1-3): the actor minimises

        mean_b mean_D ( eps_theta(k, a_k, s, 1) + M mean_j grad_a Q_j(s, a_k) )^2,
        a_k = sqrt(abar_k) a + sqrt(1 - abar_k) eps,  k ~ U{0, ..., T-1},

    with the critics after their TD step, whose target is
    r + discount min_j Qbar_j(s', clip(a' + 0.1 N(0, I), -1, 1)), a' ~ pi(.|s')."""
    c, policy, critic = agent.config, agent.policy, agent.critic
    temp = jnp.float32(DDPM_TEMPERATURE)

    def split(key: Array) -> tuple[Any, Any, Any]:
        _, k_next, k_step, k_noise, k_target_noise = jax.random.split(key, 5)
        return (k_next, k_target_noise), (k_step, k_noise), None

    def critic_target(state: Any, batch: Batch, keys: Any) -> tuple[Array, dict]:
        k_next, k_noise = keys
        a_next = policy.sample(state.actor_params, k_next, batch.next_obs, temp)
        a_next = add_action_noise(k_noise, a_next, c.target_noise)
        next_q = critic.q_min(state.target_critic_params, batch.next_obs, a_next)
        return td_target(batch, next_q, c.reward_scale), {}

    def actor_inputs(state: Any, critic_params: Any, batch: Batch, keys: Any):
        k_step, k_noise = keys
        b = batch.action.shape[0]
        k = jax.random.randint(k_step, (b,), 0, policy.num_steps)
        abar = policy.schedule.alpha_hats[k]
        eps = jax.random.normal(k_noise, batch.action.shape)
        a_k = jnp.sqrt(abar)[:, None] * batch.action + jnp.sqrt(1.0 - abar)[:, None] * eps

        def q_each(obs: Array, a: Array) -> Array:
            return critic.net.apply(critic_params, obs, a)

        target = jax.lax.stop_gradient(box_eps_target(q_each, batch.obs, a_k, c.q_scale))
        metrics = {
            "target_norm": jnp.mean(jnp.linalg.norm(target, axis=-1)),
            "policy_q_mean": jnp.mean(critic.q_min(critic_params, batch.obs, batch.action)),
        }
        return (batch.obs, k, a_k, target), metrics

    def actor_loss(params: Any, inputs: Any) -> tuple[Array, dict]:
        obs, k, a_k, target = inputs
        pred = policy.eps_at_step(params, k, a_k, obs, temp)
        return regression_loss(pred, target, features=c.actor_loss_reduction), {}

    return Objective(split, critic_target, actor_inputs, actor_loss)


def score_target(agent: QSM, critic_params: Any, obs: Array, u_t: Array, t: Array) -> Array:
    """The latent variant's eps target -beta_t grad_u [M min_k Q_k(s, tanh u) + sum log sech^2 u]
    at u = u_t."""
    m = agent.config.q_scale

    def log_p1(u: Array) -> Array:
        q = agent.critic.q_min(critic_params, obs, jnp.tanh(u))
        return jnp.sum(m * q + jnp.sum(estimators.log_sech2(u), axis=-1))

    score = jax.grad(log_p1)(u_t)  # rows are independent, so grad of the sum is per row
    return -agent.policy.path.beta(t)[:, None] * score


def qsm_latent_objective(agent: QSM) -> Objective:
    """revflow's tanh-latent QSM: eps regression onto the target score at the noisy replayed
    action, || eps_theta(t, u_t, s) + beta_t grad_u [M min_k Q_k(s, tanh u) + sum log sech^2 u]
    ||^2 (the gradient at u = u_t), and the TD3-style critic target (:func:`noisy_td_target`)."""
    policy, critic = agent.policy, agent.critic
    features = agent.config.actor_loss_reduction

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
        pred = policy.predictor(params, obs, lam)(t, u_t)
        return regression_loss(pred, target, features=features), {}

    return Objective(split, noisy_td_target(agent), actor_inputs, actor_loss)


def qsm_objective(agent: QSM) -> Objective:
    """The box policy's QSM update, or revflow's latent variant."""
    if agent.config.policy_space == "box":
        return qsm_box_objective(agent)
    return qsm_latent_objective(agent)


class QSM(GenerativeAgent):
    """Q-score matching: eps regression onto -M grad_a Q at noised replay actions (module
    docstring)."""

    name = "qsm"
    Config = QSMConfig
    make_objective = qsm_objective
    METRICS: ClassVar[dict[str, str]] = {
        **ACTOR_LOSS_METRICS,
        "actor_loss": "eps regression loss ||eps_theta - eps target||^2, batch mean",
        "target_norm": "mean L2 norm of the eps target (-M grad Q, scaled by beta_t if latent)",
    }

    config: QSMConfig

    def make_policy(self) -> Any:
        c = self.config
        if c.policy_space == "latent":
            return super().make_policy()
        net = super().make_policy().net  # the config's VelocityNet
        return BoxDiffusionPolicy.vp(net, self.act_dim, c.num_flow_steps, c.clip_sampler)

    def temperature_of(self, state: Any) -> Array:
        box = self.config.policy_space == "box"
        return jnp.asarray(DDPM_TEMPERATURE if box else 1.0 / self.config.q_scale, jnp.float32)

    def sampler_clip(self) -> str | None:
        return "iterate" if self.config.clip_sampler else None

    def explore_std(self, state: Any) -> float | None:
        return self.config.explore_noise or None

    def act(self, state: Any, key: Array, obs: Array, mode: str = "explore") -> Array:
        """Box policy: one sample, plus clipped N(0, explore_noise^2) noise ("explore"); one
        sample ("sample"); one sample from a state-hash key ("best-of-n", the authors'
        evaluation: a fixed function of the state)."""
        if self.config.policy_space == "latent":
            return super().act(state, key, obs, mode)
        lam, params = self.temperature_of(state), state.actor_params
        if mode == "best-of-n":
            return self.policy.sample_per_key(params, state_hash_keys(obs), obs, lam)
        if mode == "explore":
            k_sample, k_noise = jax.random.split(key)
            a = self.policy.sample(params, k_sample, obs, lam)
            return add_action_noise(k_noise, a, self.config.explore_noise)
        if mode != "sample":
            raise ValueError(f"unknown act mode {mode!r}; expected explore, best-of-n or sample")
        return self.policy.sample(params, key, obs, lam)
