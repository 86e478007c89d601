"""QVPO (Ding et al. NeurIPS 2024): Q-weighted variational policy optimisation, by default as
the authors' code runs it (their ``src/agent/qvpo.py`` with ``action_augmentation: true``;
baselines note, "qvpo"), checked quantity by quantity by ``benchmarks/fidelity``; revflow's
earlier variant is the preset ``revflow``.

Default (``policy_space="box"``, :mod:`revflow.agents.box_diffusion` with QVPO's options): an
eps-prediction diffusion policy in the action box on the discrete T = 20 step cosine
schedule, the mish network :class:`revflow.networks.StepDenoiserNet` reading the integer step
(no temperature input), a DDPM sampler with x0 clipped to [-1, 1] and the posterior std; twin
mish critics (each its own MSE) and a Polyak-averaged target policy; the update is
:func:`best_sample_objective` (the authors' loss in its docstring), Adam without gradient
clipping, every kernel orthogonal (gain sqrt 2). Acting: the best of
``behaviour_particles`` samples by the online critics; evaluation (``best-of-n``) the best of
``num_particles`` by the online critics, each candidate from its own key split from a hash
of the state.

``policy_space="latent"`` (preset ``revflow``, and every config saved before this option:
``LEGACY_DEFAULTS``) is revflow's earlier qvpo, a weighted denoising objective
(:mod:`revflow.agents.weighted_denoising`) in the tanh latent with RFM's network
(:class:`revflow.networks.VelocityNet`, time input 1000 t, LeCun init) and ReLU critics:

    L(theta) = E_{s,i,t,eps}[ max(A_i, 0) || eps_theta(t, alpha_t u1_i + beta_t eps, s) - eps ||^2 ]
             + 0.02 E_{s,j,t,eps}[ || eps_theta(t, alpha_t atanh(a_j) + beta_t eps, s) - eps ||^2 ],

A_i = Q(s, tanh u1_i) - mean_i Q on ALL N samples, a_j ~ U[-1, 1]^D clipped to +-0.999,
a flat entropy weight; a' the best of 4 samples of the CURRENT policy by the online critics;
the continuous cosine path on t in [0.02, 0.999]; the loss summed over action dims; clip 10.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import optax

from revflow.agents.actor_critic import ActorCriticState, Objective, TargetPolicyState
from revflow.agents.base import Array, Batch, require
from revflow.agents.box_diffusion import BoxDiffusionPolicy, state_hash_keys
from revflow.agents.critics import td_target
from revflow.agents.generative import GenerativeAgent
from revflow.agents.weighted_denoising import (
    FAST_WEIGHTED,
    WEIGHTED_METRICS,
    WeightedDenoisingFields,
    best_of_latent,
    uniform_action_loss,
    weighted_denoising_objective,
)
from revflow.networks import ACTIVATIONS, StepDenoiserNet

__all__ = [
    "QVPO",
    "QVPOConfig",
    "best_sample_objective",
    "best_sample_weights",
    "qvpo_objective",
    "qvpo_weights",
]

POLICY_SPACES: tuple[str, ...] = ("box", "latent")


def qvpo_weights(q: Array) -> Array:
    """max(Q - V, 0) with V the mean of ``q`` (..., N) over its last (sample) axis."""
    return jnp.maximum(q - jnp.mean(q, axis=-1, keepdims=True), 0.0)


def best_sample_weights(q: Array) -> tuple[Array, Array]:
    """(index of the best sample (B,), its weight max(q_best - mean_i q_i, 0) (B,)) of q (B, N)."""
    idx = jnp.argmax(q, axis=1)
    return idx, jnp.maximum(q[jnp.arange(q.shape[0]), idx] - jnp.mean(q, axis=1), 0.0)


@dataclasses.dataclass(frozen=True)
class QVPOConfig(WeightedDenoisingFields):
    """QVPO defaults (module docstring): the authors' unless ``policy_space`` is "latent".
    The box variant reads ``num_flow_steps`` (its T), ``actor_hidden``, ``actor_blocks`` (its
    hidden layers) and ``embed_dim`` (its step embedding); the path, sampler and t fields
    are the latent variant's, as is ``lam`` (it only conditions the latent network)."""

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
    max_grad_norm: float = 0.0  # no gradient clipping (theirs)
    #: Where the policy lives: "box" (the authors' QVPO, action box) or "latent" (revflow's
    #: earlier tanh-latent variant, preset revflow).
    policy_space: Literal["box", "latent"] = "box"
    #: Initialisation of the policy net's and critics' kernels: orthogonal (gain sqrt 2,
    #: the authors') or lecun.
    network_init: str = "orthogonal"
    critic_clip: str = "per-critic"  # critic loss: each critic its own MSE | global
    critic_activation: str = "mish"  # hidden activation of the critics: mish | relu

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Fewer samples and steps, narrower net (same cuts as the other diffusion agents).
        "fast": FAST_WEIGHTED,
        # revflow's variant before the authors' defaults (module docstring).
        "revflow": {
            "policy_space": "latent",
            "max_grad_norm": 10.0,
            "network_init": "lecun",
            "critic_clip": "global",
            "critic_activation": "relu",
        },
    }
    # Runs saved before ``policy_space`` existed had revflow's variant.
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = PRESETS["revflow"]

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
        for name, choices in (("policy_space", POLICY_SPACES), ("critic_activation", ACTIVATIONS)):
            value = getattr(self, name)
            require(value in choices, name, value, f"must be one of {list(choices)}")
        if self.policy_space == "box":
            even = self.embed_dim >= 4 and self.embed_dim % 2 == 0
            require(even, "embed_dim", self.embed_dim, "must be even and >= 4 (box policy)")
            require(self.actor_blocks >= 1, "actor_blocks", self.actor_blocks, "must be >= 1")


def best_sample_objective(agent: QVPO) -> Objective:
    """The authors' QVPO update (``qvpo.py:540-769``, ``action_augmentation: true``):

    1. a' = the best of ``target_particles`` samples of the TARGET policy by min(Qbar1, Qbar2);
       y = r + discount min(Qbar1, Qbar2)(s', a'); critic step.
    2. N = ``num_policy_samples`` samples per state from the online policy, q_i = min(Q1, Q2)
       of the fresh critics; only the best a* = argmax_i q_i is trained on, with weight
       w = max(q_* - mean_i q_i, 0); M = ``entropy_samples`` uniform actions per state,
       each weighted ``entropy_weight`` * w; over the B (1 + M) rows, k ~ U{0..T-1}, eps ~ N:

           L(theta) = mean_rows w_row mean_D (eps_theta(sqrt(abar_k) a + sqrt(1 - abar_k) eps,
                      k, s) - eps)^2.

    3. Polyak step (tau) of the critics and of the target policy (``post_update``)."""
    c, policy, critic = agent.config, agent.policy, agent.critic
    lam = jnp.zeros((), jnp.float32)  # the box network has no temperature input

    def split(key: Array) -> tuple[Any, Any, Any]:
        _, k_next, k_actor, k_entropy, k_loss, _ = jax.random.split(key, 6)
        return k_next, (k_actor, k_entropy, k_loss), None

    def critic_target(state: Any, batch: Batch, key: Array) -> tuple[Array, dict]:
        q_target = agent.q_fn(state.target_critic_params)
        a_next = policy.best_of_rows(
            state.target_actor_params, key, batch.next_obs, lam, q_target, c.target_particles
        )
        return td_target(batch, q_target(batch.next_obs, a_next), c.reward_scale), {}

    def actor_inputs(state: Any, critic_params: Any, batch: Batch, keys: Any):
        k_actor, k_entropy, k_loss = keys
        b, n, m = batch.obs.shape[0], c.num_policy_samples, c.entropy_samples
        rows = jnp.repeat(batch.obs, n, axis=0)
        samples = policy.sample(state.actor_params, k_actor, rows, lam).reshape(b, n, -1)
        q = critic.q_min(critic_params, batch.obs[:, None, :], samples)  # (B, N)
        idx, w = best_sample_weights(q)
        uniform = jax.random.uniform(k_entropy, (b * m, agent.act_dim), minval=-1.0, maxval=1.0)
        obs_rows = jnp.concatenate([batch.obs, jnp.repeat(batch.obs, m, axis=0)])
        actions = jnp.concatenate([samples[jnp.arange(b), idx], uniform])
        weights = jnp.concatenate([w, c.entropy_weight * jnp.repeat(w, m)])
        k_step, k_eps = jax.random.split(k_loss)
        step = jax.random.randint(k_step, (actions.shape[0],), 0, c.num_flow_steps)
        eps = jax.random.normal(k_eps, actions.shape, jnp.float32)
        abar = policy.schedule.alpha_hats[step][:, None]
        x_k = jnp.sqrt(abar) * actions + jnp.sqrt(1.0 - abar) * eps
        metrics = {
            "policy_q_mean": jnp.mean(q),
            "weight_mean": jnp.mean(w),
            "weight_max": jnp.max(w),
            "positive_fraction": jnp.mean((w > 0).astype(jnp.float32)),
        }
        return (obs_rows, step, x_k, eps, jax.lax.stop_gradient(weights)), metrics

    def actor_loss(params: Any, inputs: Any) -> tuple[Array, dict]:
        obs_rows, step, x_k, eps, weights = inputs
        pred = policy.eps_at_step(params, step, x_k, obs_rows, lam, policy.schedule)
        per_row = jnp.mean((pred - eps) ** 2, axis=-1)
        entropy = jnp.mean(per_row[obs_rows.shape[0] // (1 + c.entropy_samples) :])
        return jnp.mean(per_row * weights), {"entropy_loss": entropy}

    def post_update(state: Any, actor: Any, batch: Batch, key: Any):
        target = optax.incremental_update(actor.params, state.target_actor_params, c.tau)
        return {"target_actor_params": target}, dict(actor.aux)

    return Objective(split, critic_target, actor_inputs, actor_loss, post_update)


def qvpo_objective(agent: QVPO) -> Objective:
    """The box policy's update (:func:`best_sample_objective`), or (latent) weighted
    denoising with w_i = max(Q_i - V, 0) on all samples plus ``entropy_weight`` times the
    unweighted denoising loss of ``entropy_samples`` uniform random actions per state."""
    c = agent.config
    if c.policy_space == "box":
        return best_sample_objective(agent)

    def sample_weights(q: Array) -> tuple[Array, dict[str, Array]]:
        w = qvpo_weights(q)
        return w, {"positive_fraction": jnp.mean((w > 0).astype(jnp.float32))}

    entropy = functools.partial(uniform_action_loss, agent, c.entropy_samples, c.entropy_weight)
    return weighted_denoising_objective(agent, sample_weights, c.target_particles, entropy)


class QVPO(GenerativeAgent):
    """QVPO's advantage-weighted denoising loss with its entropy term (module docstring)."""

    name = "qvpo"
    Config = QVPOConfig
    make_objective = qvpo_objective
    METRICS: ClassVar[dict[str, str]] = {
        **WEIGHTED_METRICS,
        "actor_loss": "advantage-weighted denoising loss + entropy_weight * uniform-action loss",
        "weight_mean": "mean clipped advantage max(Q - V, 0) (box: of the best sample)",
        "weight_max": "largest clipped advantage in the batch",
        "positive_fraction": "fraction of weights > 0 (box: states whose best beats the mean)",
        "entropy_loss": "unweighted denoising loss on the uniform random actions",
    }

    config: QVPOConfig

    def __init__(self, config: QVPOConfig, obs_dim: int, act_dim: int):
        super().__init__(config, obs_dim, act_dim)
        box = config.policy_space == "box"
        self.State = TargetPolicyState if box else ActorCriticState

    def make_policy(self) -> Any:
        c = self.config
        if c.policy_space == "latent":
            return super().make_policy()
        net = StepDenoiserNet(
            out_dim=self.act_dim,
            hidden=c.actor_hidden,
            num_layers=c.actor_blocks,
            time_dim=c.embed_dim,
            kernel_init=c.network_init,
        )
        return BoxDiffusionPolicy(
            net=net,
            act_dim=self.act_dim,
            num_steps=c.num_flow_steps,
            schedule_kind="ddpm-cosine",
            time_input="step",
            noise_std="posterior",
            temperature_input=False,
        )

    def extra_state(self) -> dict[str, Any]:
        return {"target_actor_params": None} if self.config.policy_space == "box" else {}

    def init(self, key: Array) -> Any:
        state = super().init(key)
        if self.config.policy_space == "box":  # the target policy starts as a copy
            state = state.replace(target_actor_params=state.actor_params)
        return state

    def explore_latent(self, state: Any, key: Array, obs: Array) -> Array:
        return best_of_latent(self, state, key, obs, self.config.behaviour_particles)

    def act(self, state: Any, key: Array, obs: Array, mode: str = "explore") -> Array:
        """Box policy: the best of ``behaviour_particles`` samples by the online critics
        ("explore"), of ``num_particles`` from state-hash keys ("best-of-n"), or one sample."""
        c = self.config
        if c.policy_space == "latent":
            return super().act(state, key, obs, mode)
        params, q_fn, lam = state.actor_params, self.q_fn(state.critic_params), jnp.zeros(())
        if mode == "explore":
            return self.policy.best_of_rows(params, key, obs, lam, q_fn, c.behaviour_particles)
        if mode == "best-of-n":
            keys = state_hash_keys(obs)
            return self.policy.best_of_n(
                params, keys, obs, lam, q_fn, c.num_particles, split_candidates=True
            )
        if mode != "sample":
            raise ValueError(f"unknown act mode {mode!r}; expected explore, best-of-n or sample")
        return self.policy.sample(params, key, obs, lam)
