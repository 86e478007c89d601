"""QNE / MaxEntDP (Dong et al. 2025, arXiv 2502.11612): by default as the authors' code runs it
(their ``src/agent/maxentdp.py``; baselines note, "maxentdp (revflow: qne)"), checked quantity
by quantity by ``benchmarks/fidelity``; revflow's earlier variant is the preset ``revflow``.

Default (``policy_space="box"``, :mod:`revflow.agents.box_diffusion`): an eps-prediction
diffusion policy in the action box on the cosine schedule over diffusion time
tau in [1e-3, 0.998], the network reading the log-SNR, a 20-step DDPM sampler with x0 clipped
to [-1, 1] and noise std sqrt(beta_k). One update (:func:`maxentdp_objective`):

1. a' = one sampler draw at s'; log pi(a'|s') the denoising estimate (50 noises x 20 levels);
   soft TD target r + discount (min_k Qbar_k(s', a') - lam log pi(a'|s')); critic step
   (each critic its own MSE).
2. At noised REPLAY actions a_tau = sqrt(abar) a + sqrt(1 - abar) eps, K = 500 candidates
   x0_i = a_tau/sqrt(abar) + sigma z_i, z_i a normal truncated so that x0_i is in the box,
   sigma = sqrt(1 - abar)/sqrt(abar); weights softmax_i(min_k Qbar_k(s, x0_i)/lam) of the
   TARGET critics before their Polyak step; eps target -sum_i w_i z_i; loss mean over batch
   and action dimensions; Adam.
3. Polyak step. No gradient clipping; every kernel orthogonal (gain sqrt 2), the
   ``sin-cos-1e3`` embedding; lam 0.02; data collection one sample; evaluation
   (``best-of-n``) the best of 32 samples by the target critics, drawn from keys that are a
   hash of the state (the evaluation action is a fixed function of the state).

``policy_space="latent"`` (preset ``revflow``, and every config saved before this option:
``LEGACY_DEFAULTS``) is revflow's earlier qne: the posterior-target objective
(:mod:`revflow.agents.posterior`) with a diffusion policy in the tanh latent,

    E_{(s, a) ~ D, t, u_t} || eps_theta(t, u_t, s, lam) - sum_i w_i x0_i ||^2,
    u_t = alpha_t atanh(a) + beta_t eps,  w = softmax_i(log p1(u1_i)),

i.e. ``estimate_posterior_mean_batch(control_variate="none")`` mapped to eps, weights by the
fresh online critics, time input 1000 t, a' one probability-flow (DDIM) draw with its exact
change-of-variables log density (:mod:`revflow.agents.policies`), untruncated candidates,
LeCun init, ``cos-sin-1e4``, the loss summed over action dims, clip 10 (one global norm),
evaluation best of 32 by the online critics with the engine's keys.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from revflow.agents.actor_critic import Objective
from revflow.agents.base import Array, Batch, require
from revflow.agents.box_diffusion import (
    POLICY_SPACES,
    BoxDiffusionPolicy,
    PolicySpace,
    cosine_alpha_hat,
    cosine_tau_max,
    state_hash_keys,
)
from revflow.agents.configs import FAST_DIFFUSION, REVFLOW_NETWORK, AuthorsNetworkFields, Pick
from revflow.agents.critics import td_target
from revflow.agents.generative import GenerativeAgent
from revflow.agents.posterior import (
    METRICS,
    DiffusionPosteriorConfig,
    EndpointSource,
    posterior_objective,
    weighted_target_metrics,
)

__all__ = [
    "QNE",
    "QNEConfig",
    "candidate_noise",
    "eps_target",
    "maxentdp_objective",
    "noisy_replay",
]

SCALE_FLOOR = 1e-5  # of sqrt(1 - abar) and sigma = sqrt(1 - abar)/sqrt(abar), as theirs


@dataclasses.dataclass(frozen=True)
class QNEConfig(AuthorsNetworkFields, DiffusionPosteriorConfig):
    """QNE / MaxEntDP defaults (module docstring): the authors' unless ``policy_space`` is
    "latent". The latent variant reads the policy switches, ``t_min``/``t_max`` (flow time),
    the picks and the estimator's fields; the box variant reads ``tau_min``/``tau_max``
    (diffusion time), ``log_prob_*``, ``clip_sampler``, ``num_flow_steps`` (its steps),
    ``num_reverse_samples`` (its K candidates) and ``num_particles`` (its evaluation
    candidates)."""

    control_variate: str = "none"
    num_reverse_samples: int = 500
    lam: float = 0.02
    num_particles: int = 32
    explore_pick: Pick = "sample"
    train_pick: Pick = "sample"
    endpoint_source: EndpointSource = "replay"
    entropy_backup: bool = True
    #: "box": the authors' policy in the action box; "latent": revflow's tanh-latent variant.
    policy_space: PolicySpace = "box"
    #: Data end of the box policy's diffusion time (and of its training times).
    tau_min: float = 1e-3
    #: Noise end of the box policy's diffusion time (the cosine schedule's beta = 999 point).
    tau_max: float = cosine_tau_max()
    #: Noises per level of the box policy's denoising log-likelihood estimate.
    log_prob_samples: int = 50
    #: Noise levels of the box policy's denoising log-likelihood estimate.
    log_prob_steps: int = 20
    #: Clip x0 to [-1, 1] in the box policy's sampler and log-likelihood.
    clip_sampler: bool = True

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Measured (README, "Throughput"): fewer candidates and steps, narrower net.
        "fast": {**FAST_DIFFUSION, "num_reverse_samples": 32},
        # revflow's variant before the authors' defaults (module docstring).
        "revflow": {"policy_space": "latent", **REVFLOW_NETWORK},
    }
    # Runs saved before ``policy_space`` existed had revflow's variant.
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = PRESETS["revflow"]

    def validate(self) -> None:
        super().validate()
        require(
            self.policy_space in POLICY_SPACES,
            "policy_space",
            self.policy_space,
            f"must be one of {list(POLICY_SPACES)}",
        )
        require(
            0.0 < self.tau_min < self.tau_max < 1.0,
            "tau_min",
            (self.tau_min, self.tau_max),
            "(tau_min, tau_max) must satisfy 0 < tau_min < tau_max < 1",
        )
        for name in ("log_prob_samples", "log_prob_steps"):
            require(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")


def noisy_replay(tau: Array, action: Array, eps: Array) -> tuple[Array, Array, Array]:
    """(alpha1, alpha2, a_tau): sqrt(abar), max(sqrt(1 - abar), 1e-5) (B,) and
    a_tau = alpha1 a + alpha2 eps (B, D) at diffusion times tau (B,)."""
    abar = cosine_alpha_hat(tau)
    alpha1 = jnp.sqrt(abar)
    alpha2 = jnp.maximum(jnp.sqrt(1.0 - abar), SCALE_FLOOR)
    return alpha1, alpha2, alpha1[:, None] * action + alpha2[:, None] * eps


def _bounds(a_tau: Array, alpha1: Array, alpha2: Array, k: int):
    rep = jnp.broadcast_to(a_tau[:, None, :], (a_tau.shape[0], k, a_tau.shape[1]))
    sigma = jnp.maximum(alpha2 / alpha1, SCALE_FLOOR)[:, None, None]
    centre = -rep / alpha2[:, None, None]
    return centre - 1.0 / sigma, centre + 1.0 / sigma, sigma


def candidate_noise(key: Array, a_tau: Array, alpha1: Array, alpha2: Array, k: int) -> Array:
    """z (B, k, D): normals truncated so that a_tau/alpha1 + sigma z is in [-1, 1]^D (where
    the truncated draw is NaN, a clipped plain normal), drawn in the authors' order."""
    lower, upper, _ = _bounds(a_tau, alpha1, alpha2, k)
    k_tn, k_norm = jax.random.split(key)
    z = jax.random.truncated_normal(k_tn, lower, upper, lower.shape)
    fallback = jnp.clip(jax.random.normal(k_norm, lower.shape), lower, upper)
    return jnp.where(jnp.isnan(z), fallback, z)


def eps_target(q_fn: Any, obs: Array, a_tau: Array, alpha1: Array, alpha2: Array, z: Array,
               lam: Array) -> tuple[Array, Array, Array]:  # fmt: skip
    """(target (B, D), candidates (B, K, D), weights (B, K)): the candidates
    x0_i = a_tau/alpha1 + sigma z_i, w = softmax_i(q_fn(s, x0_i)/lam), target -sum_i w_i z_i."""
    _, _, sigma = _bounds(a_tau, alpha1, alpha2, z.shape[1])
    clean = a_tau[:, None, :] / alpha1[:, None, None] + sigma * z
    w = jax.nn.softmax(q_fn(obs[:, None, :], clean) / jnp.maximum(lam, 1e-12), axis=1)
    return -jnp.sum(w[..., None] * z, axis=1), clean, w


def maxentdp_objective(agent: Any) -> Objective:
    """The authors' MaxEntDP update for the box policy (module docstring, steps 1-3)."""
    c, policy, critic = agent.config, agent.policy, agent.critic

    def split(key: Array) -> tuple[Any, Any, Any]:
        _, k_next, k_t, k_eps, k_cand, k_log_prob = jax.random.split(key, 6)
        return (k_next, k_log_prob), (k_t, k_eps, k_cand), None

    def critic_target(state: Any, batch: Batch, keys: Any) -> tuple[Array, dict[str, Array]]:
        k_next, k_log_prob = keys
        lam = agent.temperature_of(state)
        a_next = policy.sample(state.actor_params, k_next, batch.next_obs, lam)
        value = critic.q_min(state.target_critic_params, batch.next_obs, a_next)
        log_pi = jnp.zeros_like(value)
        if c.entropy_backup:
            log_pi = policy.log_prob(state.actor_params, k_log_prob, batch.next_obs, a_next, lam)
        target = td_target(batch, value - lam * log_pi, c.reward_scale)
        return target, {"next_log_pi_mean": jnp.mean(log_pi)}

    def actor_inputs(state: Any, critic_params: Any, batch: Batch, keys: Any):
        k_t, k_eps, k_cand = keys
        lam = agent.temperature_of(state)
        b = batch.action.shape[0]
        tau = jax.random.uniform(k_t, (b,), minval=c.tau_min, maxval=c.tau_max)
        eps = jax.random.normal(k_eps, batch.action.shape)
        alpha1, alpha2, a_tau = noisy_replay(tau, batch.action, eps)
        z = candidate_noise(k_cand, a_tau, alpha1, alpha2, c.num_reverse_samples)
        q_target = agent.q_fn(state.target_critic_params)
        target, _, w = eps_target(q_target, batch.obs, a_tau, alpha1, alpha2, z, lam)
        spread = jnp.sum(w[..., None] ** 2 * (z + target[:, None, :]) ** 2, axis=1)
        policy_q = critic.q_min(state.critic_params, batch.obs, batch.action)
        metrics = weighted_target_metrics(lam, w, jnp.mean(spread), policy_q, target)
        return (batch.obs, cosine_alpha_hat(tau), a_tau, target, lam), metrics

    def actor_loss(params: Any, inputs: Any) -> tuple[Array, dict]:
        obs, abar, a_tau, target, lam = inputs
        sq = (policy.eps(params, abar, a_tau, obs, lam) - target) ** 2
        per_row = jnp.mean(sq, -1) if c.actor_loss_reduction == "mean" else jnp.sum(sq, -1)
        return jnp.mean(per_row), {}

    return Objective(split, critic_target, actor_inputs, actor_loss)


def qne_objective(agent: Any) -> Objective:
    """The box policy's MaxEntDP update, or the posterior-target objective (latent)."""
    if agent.config.policy_space == "box":
        return maxentdp_objective(agent)
    return posterior_objective(agent)


class QNE(GenerativeAgent):
    """MaxEntDP's Q-weighted noise estimation with a soft critic (module docstring)."""

    name = "qne"
    Config = QNEConfig
    make_objective = qne_objective
    METRICS: ClassVar[dict[str, str]] = {
        **METRICS,
        "actor_loss": "eps regression loss ||eps_theta - eps target||^2, batch mean",
        "target_q_mean": "mean soft TD target r + discount (min_k Qbar_k(s', a') - lam log pi)",
        "policy_q_mean": "mean min_k Q(s, a) at the replayed actions (training endpoints)",
        "next_log_pi_mean": "mean log pi(a'|s') of the backup actions (0 if entropy_backup off)",
    }

    def make_policy(self) -> Any:
        c = self.config
        if c.policy_space == "latent":
            return super().make_policy()
        return BoxDiffusionPolicy(
            net=self.make_net(),
            act_dim=self.act_dim,
            num_steps=c.num_flow_steps,
            tau_min=c.tau_min,
            tau_max=c.tau_max,
            log_prob_samples=c.log_prob_samples,
            log_prob_steps=c.log_prob_steps,
            clip=c.clip_sampler,
        )

    @property
    def acting_extra_fields(self) -> tuple[str, ...]:
        """The box policy's best-of-n reads the target critics (as the authors' evaluation)."""
        return ("target_critic_params",) if self.config.policy_space == "box" else ()

    def act(self, state: Any, key: Array, obs: Array, mode: str = "explore") -> Array:
        """Box policy: one sample ("explore", "sample"), or the best of ``num_particles``
        samples by the target critics from state-hash keys ("best-of-n")."""
        if self.config.policy_space == "latent":
            return super().act(state, key, obs, mode)
        lam, params = self.temperature_of(state), state.actor_params
        if mode == "best-of-n":
            q_target = self.q_fn(state.target_critic_params)
            keys = state_hash_keys(obs)
            return self.policy.best_of_n(
                params, keys, obs, lam, q_target, self.config.num_particles
            )
        if mode not in ("explore", "sample"):
            raise ValueError(f"unknown act mode {mode!r}; expected explore, best-of-n or sample")
        return self.policy.sample(params, key, obs, lam)
