"""DQS (Jain et al. RLC 2025, arXiv 2410.01312) = iDEM with energy -Q/lam: by default as the
authors' code runs it (their ``src/agent/dqs.py`` with ``components/``; baselines note,
"dqs"), checked quantity by quantity by ``benchmarks/fidelity``; revflow's earlier variant is
the preset ``revflow``.

Default (``policy_space="action"``, :mod:`revflow.agents.ve_score`): a score network on the
VE path h(t) = sigma_min^2 (sigma_d^(2t) - 1), sigma 1e-5..1, t in [0, 1] fed as is, sampled
by 20 Euler-Maruyama steps with g^2 drift; actions are tanh of a sample. One update
(:func:`dqs_objective`):

1. a' = tanh(one sample at s', diffusion scale 1); TD target r + discount min_k Qbar_k(s', a')
   (no entropy term); critic step, each critic its own MSE.
2. The actor's target reads the critics BEFORE that step (the authors update the actor
   first): at noised REPLAY actions a_t = a + sqrt(h(t)) z, t ~ U[0, 1], the iDEM score
   estimate from K = 1000 normals (:func:`score_target`); loss weight h(t) + 1e-3, the
   squared error averaged over action dimensions and batch; Adam.
3. Polyak step. No gradient clipping; every kernel orthogonal (gain sqrt 2), the
   ``sin-cos-1e3`` embedding; lam 0.05; data collection tanh of one sample; evaluation
   (``best-of-n``, ``eval_rule="noise-free"``) tanh of the drift-only sample (scale 0) from a
   key that is a hash of the state (``eval_rule="best-of-n"``: the best of ``num_particles``
   samples by the online critics).

``policy_space="latent"`` (preset ``revflow``, and every config saved before this option:
``LEGACY_DEFAULTS``) is revflow's earlier dqs: the posterior-target objective
(:mod:`revflow.agents.posterior`) with an eps-prediction diffusion policy in the tanh latent on
the VE path sigma_t = sigma_max (sigma_min/sigma_max)^t, t in [1e-3, 0.999], time input 1000 t,

    E_{s, t, u_t} || eps_theta(t, u_t, s, lam) + sigma_t sum_i w_i grad_u log p1(u1_i) ||^2,
    u1_i = u_t - sigma_t x0_i,  w = softmax_i(log p1(u1_i)),

i.e. ``estimate_posterior_mean_batch(control_variate="gradient")`` mapped to eps (weight
sigma_t^2, no 1e-3 floor), training endpoints fresh policy samples, the fresh online critics,
the ancestral (SMLD) sampler, LeCun init, ``cos-sin-1e4``, the loss summed over action dims,
clip 10 (one global norm), evaluation best of 32 by the online critics with the engine's keys.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp

from revflow.agents.actor_critic import Objective
from revflow.agents.base import Array, Batch, require
from revflow.agents.configs import (
    FAST_DIFFUSION,
    REVFLOW_NETWORK,
    AuthorsNetworkFields,
    Parameterisation,
    PathName,
    Pick,
    Policy,
    SamplerName,
)
from revflow.agents.critics import td_target
from revflow.agents.generative import GenerativeAgent
from revflow.agents.posterior import (
    METRICS,
    SwitchablePosteriorConfig,
    posterior_objective,
    weighted_target_metrics,
)
from revflow.agents.ve_score import VEScorePolicy

__all__ = ["DQS", "DQS_METRICS", "DQSConfig", "dqs_objective", "score_target"]

PolicySpace = Literal["action", "latent"]
EvalRule = Literal["noise-free", "best-of-n"]


@dataclasses.dataclass(frozen=True)
class DQSConfig(AuthorsNetworkFields, SwitchablePosteriorConfig):
    """DQS / iDEM defaults (module docstring): the authors' unless ``policy_space`` is
    "latent". The action-space policy reads ``ve_sigma_*``, ``num_flow_steps`` (its steps),
    ``num_reverse_samples`` (its K), ``diffusion_scale``, ``loss_weight_floor`` and
    ``eval_rule``; the latent one the policy switches, ``t_min``/``t_max``, the picks and the
    estimator's fields."""

    policy: Policy = "diffusion"
    path: PathName = "ve"
    ve_sigma_min: float = 1e-5
    ve_sigma_max: float = 1.0
    parameterisation: Parameterisation = "eps"
    sampler: SamplerName = "ddpm"
    num_flow_steps: int = 20
    t_min: float = 1e-3
    t_max: float = 1.0 - 1e-3
    time_scale: float = 1000.0
    control_variate: str = "gradient"
    num_reverse_samples: int = 1000
    lam: float = 0.05
    explore_pick: Pick = "sample"
    train_pick: Pick = "sample"
    #: "action": the authors' VE score policy on actions; "latent": revflow's tanh-latent one.
    policy_space: PolicySpace = "action"
    #: Scale c of the sampler's noise in exploration and the TD next action (0: drift only).
    diffusion_scale: float = 1.0
    #: The actor's loss weight is h(t) + loss_weight_floor.
    loss_weight_floor: float = 1e-3
    #: Evaluation ("best-of-n"): noise-free (the authors') | best-of-n (by the online critics).
    eval_rule: EvalRule = "noise-free"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Measured (README, "Throughput"): fewer samples and steps, narrower net.
        "fast": {**FAST_DIFFUSION, "num_reverse_samples": 32},
        # revflow's variant before the authors' defaults (module docstring).
        "revflow": {"policy_space": "latent", "eval_rule": "best-of-n", **REVFLOW_NETWORK},
    }
    # Runs saved before ``policy_space`` existed had revflow's variant.
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = PRESETS["revflow"]

    def validate(self) -> None:
        super().validate()
        for name, choices in (("policy_space", PolicySpace), ("eval_rule", EvalRule)):
            value = getattr(self, name)
            require(value in choices.__args__, name, value, f"must be one of {choices.__args__}")
        for name in ("diffusion_scale", "loss_weight_floor"):
            require(getattr(self, name) >= 0, name, getattr(self, name), "must be >= 0")


def score_target(
    q_fn: Any, obs: Array, a_t: Array, sqrt_h: Array, xi: Array, lam: Array
) -> tuple[Array, Array]:
    """(target (B, D), weights (B, K)): the iDEM score estimate
    grad_{a_t} log (1/K) sum_k exp(q_fn(s, a_t + sqrt(h) xi_k)/lam)
    = sum_k w_k grad_a q_fn(s, a_t + sqrt(h) xi_k)/lam, w = softmax_k(q_fn/lam), at noise
    xi (B, K, D); the points are not clipped."""

    def log_mean_exp(a: Array) -> tuple[Array, Array]:
        q = q_fn(obs[:, None, :], a[:, None, :] + sqrt_h[:, None, None] * xi) / lam
        return jnp.sum(jax.nn.logsumexp(q, axis=1)), q

    grad, q = jax.grad(log_mean_exp, has_aux=True)(a_t)
    return grad, jax.nn.softmax(q, axis=1)


def dqs_objective(agent: Any) -> Objective:
    """The authors' DQS update for the action-space policy (module docstring, steps 1-3):

        min_theta E_{(s, a) ~ D, t ~ U[0, 1], z} (h(t) + 1e-3) mean_D
            || score_theta(t, a + sqrt(h(t)) z, s, lam) - score_target ||^2

    (their ``update_scores``, ``lambda_weighter.py``, ``score_estimator.py``); the revflow
    preset's posterior-target objective in the latent."""
    c, policy, critic = agent.config, agent.policy, agent.critic
    if c.policy_space == "latent":
        return posterior_objective(agent)

    def split(key: Array) -> tuple[Any, Any, Any]:
        # a' draws from the key itself; the actor's keys split the key that its sampler leaves.
        after = policy.draws(key, 1)[2]
        k_t, k_z, k_score, _ = jax.random.split(after, 4)
        return key, (k_t, k_z, k_score), None

    def critic_target(state: Any, batch: Batch, key: Array) -> tuple[Array, dict[str, Array]]:
        lam = agent.temperature_of(state)
        x = policy.sample(state.actor_params, key, batch.next_obs, lam, c.diffusion_scale)
        value = critic.q_min(state.target_critic_params, batch.next_obs, jnp.tanh(x))
        return td_target(batch, value, c.reward_scale), {}

    def actor_inputs(state: Any, critic_params: Any, batch: Batch, keys: Any):
        del critic_params  # the target reads the critics before their step
        k_t, k_z, k_score = keys
        lam = agent.temperature_of(state)
        b, d = batch.action.shape
        t = jax.random.uniform(k_t, (b,))
        sqrt_h = jnp.sqrt(policy.h(t))
        a_t = batch.action + jax.random.normal(k_z, (b, d)) * sqrt_h[:, None]
        xi = jax.vmap(lambda k: jax.random.normal(k, (c.num_reverse_samples, d)))(
            jax.random.split(k_score, b)
        )
        target, w = score_target(agent.q_fn(state.critic_params), batch.obs, a_t, sqrt_h, xi, lam)
        policy_q = critic.q_min(state.critic_params, batch.obs, batch.action)
        metrics = weighted_target_metrics(lam, w, jnp.zeros((), jnp.float32), policy_q, target)
        weight = policy.h(t) + c.loss_weight_floor
        return (batch.obs, t, a_t, target, weight, lam), metrics

    def actor_loss(params: Any, inputs: Any) -> tuple[Array, dict]:
        obs, t, a_t, target, weight, lam = inputs
        sq = (policy.score(params, t, a_t, obs, lam) - target) ** 2
        per_row = jnp.mean(sq, -1) if c.actor_loss_reduction == "mean" else jnp.sum(sq, -1)
        return jnp.mean(weight * per_row), {}

    return Objective(split, critic_target, actor_inputs, actor_loss)


#: The update's metrics: the posterior objective's, read for both policies.
DQS_METRICS: dict[str, str] = {
    **METRICS,
    "actor_loss": "score regression loss (h(t) + 1e-3) ||score_theta - score target||^2 "
    "(latent: eps regression ||eps_theta + sigma sum_i w_i grad log p1||^2)",
    "policy_q_mean": "mean min_k Q(s, a) of the training endpoints (replay actions; latent: "
    "one policy sample)",
    "posterior_variance_mean": "mean delta-method variance of the mu1 estimate (0 for the "
    "action-space policy)",
}


class DQS(GenerativeAgent):
    """iDEM-style score targets on a VE path (module docstring)."""

    name = "dqs"
    Config = DQSConfig
    METRICS: ClassVar[dict[str, str]] = DQS_METRICS
    make_objective = dqs_objective

    def make_policy(self) -> Any:
        c, latent = self.config, super().make_policy()
        if c.policy_space == "latent":
            return latent
        return VEScorePolicy(
            net=latent.net,  # the policy network every generative agent builds
            act_dim=self.act_dim,
            num_steps=c.num_flow_steps,
            sigma_min=c.ve_sigma_min,
            sigma_max=c.ve_sigma_max,
        )

    def act(self, state: Any, key: Array, obs: Array, mode: str = "explore") -> Array:
        """Action space: tanh of one sample ("explore", "sample"); "best-of-n" the
        evaluation rule (``eval_rule``)."""
        c = self.config
        if c.policy_space == "latent":
            return super().act(state, key, obs, mode)
        lam, params = self.temperature_of(state), state.actor_params
        if mode == "best-of-n" and c.eval_rule == "noise-free":
            return jnp.tanh(self.policy.noise_free(params, obs, lam))
        if mode == "best-of-n":
            q_fn = self.q_fn(state.critic_params)
            scale = c.diffusion_scale
            return self.policy.best_of_n(params, key, obs, lam, scale, q_fn, c.num_particles)
        if mode not in ("explore", "sample"):
            raise ValueError(f"unknown act mode {mode!r}; expected explore, best-of-n or sample")
        return jnp.tanh(self.policy.sample(params, key, obs, lam, c.diffusion_scale))
