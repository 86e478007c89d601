"""QVPO (Ding et al. NeurIPS 2024): Q-weighted variational policy optimisation, and the
weighted-denoising agent it shares with DPMD (:mod:`revflow.agents.dpmd`).

Baselines note, "Weighted regression". For each state, N = 64 latent actions u1_i are drawn
from the CURRENT diffusion policy (no gradient); their advantages A_i = Q(s, tanh u1_i) - V(s),
with V(s) = mean_i Q(s, tanh u1_i), clipped at 0, weight the denoising loss; an entropy term
adds the unweighted denoising loss on M = 10 uniform random actions with weight 0.02:

    L(theta) = E_{s,i,t,eps}[ max(A_i, 0) || eps_theta(t, alpha_t u1_i + beta_t eps, s) - eps ||^2 ]
             + 0.02 E_{s,j,t,eps}[ || eps_theta(t, alpha_t atanh(a_j) + beta_t eps, s) - eps ||^2 ],
    a_j ~ U[-1, 1]^D (clipped to +-0.999 before atanh).

Published defaults (baselines note): 64 policy samples per state, entropy weight 0.02 on 10
uniform samples, behaviour policy best of 4 by Q, target (TD next action) best of 4 by Q,
evaluation best of 32 by Q, cosine schedule, 20 steps.

Departures: (1) the policy lives in the tanh latent (uniform actions enter as atanh of the
clipped action), with RFM's shared network (:class:`revflow.networks.VelocityNet`, eps
prediction, time_scale 1000) and critic (shared by design, baselines note); (2) the sampler
starts at t_min = 0.02 (posterior.py docstring); (3) the RFM comparison's extra action
gradient steps and action augmentation are NOT implemented; (4) the advantage weights are
used raw (not renormalised), so their scale follows the critic's; (5) the TD target has no
entropy term, min over the twin target critics.

:class:`WeightedDenoisingAgent` is the shared update (critic TD step, then one weighted
denoising step on the policy's own samples); subclasses give :meth:`sample_weights`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from revflow.agents.base import Array, Batch, Metrics, require
from revflow.agents.common import advance, critic_td_step, gradient_step
from revflow.agents.posterior import (
    REPLAY_CLIP,
    DiffusionConfig,
    Pick,
    PosteriorState,
    PosteriorTargetAgent,
)
from revflow.losses import generative_loss
from revflow.samplers import select_argmax

__all__ = ["QVPO", "QVPOConfig", "WeightedDenoisingAgent", "qvpo_weights"]


def qvpo_weights(q: Array) -> Array:
    """max(Q - V, 0) with V the mean of ``q`` (..., N) over its last (sample) axis."""
    return jnp.maximum(q - jnp.mean(q, axis=-1, keepdims=True), 0.0)


class WeightedDenoisingAgent(PosteriorTargetAgent):
    """Critic TD step, then the policy's own samples u1 (B, N, D) re-noised and regressed
    with per-sample weights w = :meth:`sample_weights` (module docstring). Config needs
    ``num_policy_samples`` and the diffusion switches of :class:`DiffusionConfig`."""

    METRICS: ClassVar[dict[str, str]] = {
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

    #: Particles of the behaviour policy's best-of pick ("explore") and the TD next action.
    def explore_particles(self) -> int:
        return self.config.num_particles

    def target_particles(self) -> int:
        return self.config.num_particles

    def sample_weights(self, q: Array) -> tuple[Array, dict[str, Array]]:
        """Weights (B, N) of the policy samples from their min-Q (B, N), and extra metrics."""
        raise NotImplementedError

    def extra_actor_loss(
        self, predict_fn: Any, key: Array, obs: Array
    ) -> tuple[Array, dict[str, Array]]:
        """An additional actor loss term (QVPO: entropy); none here."""
        return jnp.zeros((), jnp.float32), {}

    def _best_of(
        self, state: Any, key: Array, obs: Array, n: int, critic_params: Any
    ) -> tuple[Array, Array]:
        lam = self.temperature_of(state)
        u = self.sample_particles(state.actor_params, key, obs, lam, n)
        q = self.q_min(critic_params, obs[:, None, :], jnp.tanh(u))
        uq = select_argmax(jnp.concatenate([u, q[..., None]], axis=-1), q)
        return uq[..., :-1], uq[..., -1]

    def act(self, state: Any, key: Array, obs: Array, mode: str = "explore") -> Array:
        if mode == "explore":
            n = self.explore_particles()
            return jnp.tanh(self._best_of(state, key, obs, n, state.critic_params)[0])
        return super().act(state, key, obs, mode)

    def denoising_loss(
        self, predict_fn: Any, t: Array, eps: Array, u1: Array, weights: Array | None = None
    ) -> Array:
        """mean_rows w ||predict_fn(t, u_t) - eps||^2, u_t = alpha_t u1 + beta_t eps; rows
        (M,), u1 and eps (M, D). The eps target is ``losses.generative_loss``'s map of u1."""
        u_t = self.path.alpha(t)[:, None] * u1 + self.path.beta(t)[:, None] * eps
        return generative_loss(
            predict_fn, self.path, t, u_t, u1, self.config.parameterisation, weights
        )

    def noise_draw(self, key: Array, rows: int) -> tuple[Array, Array]:
        """t ~ U[t_min, t_max] (rows,) and eps ~ N(0, I) (rows, D)."""
        k_t, k_eps = jax.random.split(key)
        c = self.config
        t = jax.random.uniform(k_t, (rows,), minval=c.t_min, maxval=c.t_max)
        return t, jax.random.normal(k_eps, (rows, self.act_dim), jnp.float32)

    def predictor(self, params: Any, obs: Array, lam: Array) -> Any:
        """predict_fn(t, u_t) of the policy network for rows conditioned on ``obs``."""
        scale = self.config.time_scale

        def predict(t: Array, x: Array) -> Array:
            return self.velocity_net.apply(params, scale * t, x, obs, lam)

        return predict

    def update(self, state: PosteriorState, batch: Batch, key: Array) -> tuple[Any, Metrics]:
        c = self.config
        k_next, k_samples, k_noise, k_extra = jax.random.split(key, 4)
        lam = self.temperature_of(state)

        # 1. critic: r + discount * min_k Qbar_k(s', best-of-n policy action).
        u_next, _ = self._best_of(
            state, k_next, batch.next_obs, self.target_particles(), state.critic_params
        )
        next_q = self.q_min(state.target_critic_params, batch.next_obs, jnp.tanh(u_next))
        reward = batch.reward if c.reward_scale == 1.0 else c.reward_scale * batch.reward
        target = reward + batch.discount * jax.lax.stop_gradient(next_q)
        critic_params, critic_opt, metrics = critic_td_step(
            self.critic_net, self.critic_opt, state.critic_params, state.critic_opt, batch, target
        )

        # 2. the current policy's samples and their weights under the fresh critics.
        n = c.num_policy_samples
        u1 = self.sample_particles(state.actor_params, k_samples, batch.obs, lam, n)
        u1 = jax.lax.stop_gradient(u1)  # (B, N, D)
        q = self.q_min(critic_params, batch.obs[:, None, :], jnp.tanh(u1))  # (B, N)
        w, weight_metrics = self.sample_weights(q)
        w = jax.lax.stop_gradient(w)
        rows = u1.shape[0] * n
        obs_rows = jnp.repeat(batch.obs, n, axis=0)
        t, eps = self.noise_draw(k_noise, rows)

        # 3. weighted denoising step (+ the subclass's extra term).
        def actor_loss_fn(params: Any) -> tuple[Array, dict[str, Array]]:
            predict = self.predictor(params, obs_rows, lam)
            main = self.denoising_loss(predict, t, eps, u1.reshape(rows, -1), w.reshape(rows))
            extra, aux = self.extra_actor_loss(
                lambda o: self.predictor(params, o, lam), k_extra, batch.obs
            )
            return main + extra, aux

        actor = gradient_step(
            actor_loss_fn, self.actor_opt, state.actor_params, state.actor_opt, has_aux=True
        )
        new_state = advance(
            state, actor=actor, critic_params=critic_params, critic_opt=critic_opt, tau=c.tau
        )
        metrics.update(
            actor_loss=actor.loss,
            actor_grad_norm=actor.grad_norm,
            policy_q_mean=jnp.mean(q),
            weight_mean=jnp.mean(w),
            weight_max=jnp.max(w),
            **weight_metrics,
            **actor.aux,
        )
        return new_state, metrics


@dataclasses.dataclass(frozen=True)
class QVPOConfig(DiffusionConfig):
    """QVPO defaults (module docstring); the rest is RFM's critic and network.
    ``lam`` only conditions the shared network (QVPO has no Boltzmann temperature)."""

    #: Evaluation: best of 32 by Q ("best-of-n").
    num_particles: int = 32
    explore_pick: Pick = "best"
    train_pick: Pick = "best"
    #: Policy samples per state whose clipped advantages weight the denoising loss.
    num_policy_samples: int = 64
    #: Behaviour policy ("explore"): best of this many by Q.
    behaviour_particles: int = 4
    #: TD next action: best of this many by Q.
    target_particles: int = 4
    #: Entropy term: weight and uniform random actions per state.
    entropy_weight: float = 0.02
    #: Uniform random actions per state of the entropy term.
    entropy_samples: int = 10

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Fewer samples and steps, narrower net (same cuts as the other diffusion agents).
        "fast": {
            "num_particles": 8,
            "num_flow_steps": 10,
            "num_policy_samples": 16,
            "actor_hidden": 128,
            "embed_dim": 64,
        },
    }

    def validate(self) -> None:
        super().validate()
        for name in (
            "num_policy_samples",
            "behaviour_particles",
            "target_particles",
            "entropy_samples",
        ):
            value = getattr(self, name)
            require(value >= 1, name, value, "must be >= 1")
        require(
            math.isfinite(self.entropy_weight) and self.entropy_weight >= 0,
            "entropy_weight",
            self.entropy_weight,
            "must be a finite number >= 0",
        )


class QVPO(WeightedDenoisingAgent):
    """QVPO's advantage-weighted denoising loss with its entropy term (module docstring)."""

    name = "qvpo"
    Config = QVPOConfig
    METRICS: ClassVar[dict[str, str]] = {
        **WeightedDenoisingAgent.METRICS,
        "actor_loss": "advantage-weighted denoising loss + entropy_weight * uniform-action loss",
        "weight_mean": "mean clipped advantage max(Q - V, 0) over the policy samples",
        "weight_max": "largest clipped advantage in the batch",
        "positive_fraction": "fraction of policy samples with positive advantage",
        "entropy_loss": "unweighted denoising loss on the uniform random actions",
    }

    config: QVPOConfig

    def explore_particles(self) -> int:
        return self.config.behaviour_particles

    def target_particles(self) -> int:
        return self.config.target_particles

    def sample_weights(self, q: Array) -> tuple[Array, dict[str, Array]]:
        w = qvpo_weights(q)
        return w, {"positive_fraction": jnp.mean((w > 0).astype(jnp.float32))}

    def uniform_latents(self, key: Array, num_states: int) -> Array:
        """atanh of uniform actions in [-1, 1]^D, clipped to +-REPLAY_CLIP: (S * M, D)."""
        m = self.config.entropy_samples
        a = jax.random.uniform(key, (num_states * m, self.act_dim), minval=-1.0, maxval=1.0)
        return jnp.arctanh(jnp.clip(a, -REPLAY_CLIP, REPLAY_CLIP))

    def extra_actor_loss(
        self, predict_fn: Any, key: Array, obs: Array
    ) -> tuple[Array, dict[str, Array]]:
        k_u, k_noise = jax.random.split(key)
        u = self.uniform_latents(k_u, obs.shape[0])
        t, eps = self.noise_draw(k_noise, u.shape[0])
        obs_rows = jnp.repeat(obs, self.config.entropy_samples, axis=0)
        ent = self.denoising_loss(predict_fn(obs_rows), t, eps, u)
        return self.config.entropy_weight * ent, {"entropy_loss": ent}
