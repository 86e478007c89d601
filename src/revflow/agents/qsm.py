"""QSM, Q-score matching (Psenka et al. ICML 2024, arXiv 2312.11752), on the shared diffusion
policy of :mod:`revflow.agents.posterior`.

Baselines note, "Score matching to the Q-gradient". The denoiser's score is regressed onto M
times the action-gradient of Q AT THE NOISY ACTION ITSELF (no posterior average). In the tanh
latent (a = tanh u) the target density is p1(u) ~ exp(M Q(s, tanh u)) prod sech^2(u), and with
eps-prediction (eps = -beta_t score) the actor minimises

    E_{(s, a) ~ D, t, eps} || eps_theta(t, u_t, s) + beta_t grad_u [M Q(s, tanh u_t)
                                                      + sum_j log sech^2(u_t,j)] ||^2,
    u_t = alpha_t atanh(a) + beta_t eps,   Q = min_k Q_k (fresh critics, after the TD step).

Published defaults (baselines note): M = 50 (``q_scale``), VP schedule (cosine here), 20
denoising steps (RFM comparison; 5 in the original), Gaussian exploration noise 0.1
(``explore_noise``) and target-action noise 0.1 (``target_noise``).

Bounded actions. The original (Alescontrela/score_matching_rl, ``ddpm_sampler`` with its
default ``clip_sampler=True``) samples in ACTION space and clips the iterate x_t to [-1, 1]
after every reverse step, and the final action again. Here the sampler's iterate is clipped
to the latent box |u_j| <= atanh(0.999) ~ 3.8 after every step (``clip_sampler``, default
True; :mod:`revflow.agents.clipped`). Without it the latent ran away on Pendulum (seed 1:
median |u| 40 after warm-up, ~4e3 at 5000 steps, every action -1; return -1355).

Departures: (1) the policy lives in the tanh latent, so the target score carries the
Jacobian term grad_u sum log sech^2 u (exact for the squashed density), and the sampler is
clipped to the latent box |u| <= atanh(0.999) instead of the action box [-1, 1];
(2) RFM's network and critic (shared by design, baselines note); the network's temperature
input is fed lam = 1/M (the field ``lam`` is unused); (3) noised points are built from
replayed actions, atanh(clip(a, +-0.999)); (4) the target action a' = clip(tanh u' + 0.1 N,
-1, 1), u' one draw of the clipped DDPM sampler, the noise itself is not clipped; (5) t_min
0.02 (posterior.py docstring); (6) the actor loss is the paper's regression onto the target
score; the authors' code (``score_matching_learner.py``) minimises the inner product
-eps_pred . dQ/da instead.

This module also holds :class:`ActorLossAgent`, the critic step + per-method actor loss that
QSM and DIPO (:mod:`revflow.agents.dipo`) share.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from revflow import estimators
from revflow.agents.base import Array, Batch, Metrics, require
from revflow.agents.clipped import ClippedSamplerAgent
from revflow.agents.common import advance, critic_td_step, gradient_step
from revflow.agents.posterior import (
    REPLAY_CLIP,
    DiffusionConfig,
    EndpointSource,
    Pick,
    PosteriorTargetAgent,
)
from revflow.losses import regression_loss

__all__ = ["QSM", "ActorLossAgent", "ActorLossConfig", "QSMConfig"]


@dataclasses.dataclass(frozen=True)
class ActorLossConfig(DiffusionConfig):
    """Diffusion defaults of qne.py plus the Gaussian action noises of TD3-style agents."""

    explore_pick: Pick = "sample"
    train_pick: Pick = "sample"
    endpoint_source: EndpointSource = "replay"
    #: Std of the Gaussian noise added to "explore" actions (then clipped to [-1, 1]).
    explore_noise: float = 0.0
    #: Std of the Gaussian noise added to the TD next action (then clipped to [-1, 1]).
    target_noise: float = 0.0

    def validate(self) -> None:
        super().validate()
        for name in ("explore_noise", "target_noise"):
            value = getattr(self, name)
            require(math.isfinite(value) and value >= 0, name, value, "must be finite and >= 0")
        require(
            self.endpoint_source == "replay",
            "endpoint_source",
            self.endpoint_source,
            "must be 'replay' (the actor loss is built on replayed actions)",
        )
        require(not self.entropy_backup, "entropy_backup", self.entropy_backup, "must be False")


class ActorLossAgent(PosteriorTargetAgent):
    """The posterior-target agent's critic, sampler and acting, with the actor target
    replaced: subclasses implement :meth:`actor_inputs` (targets, computed once, no
    gradient) and :meth:`actor_loss` (the loss of the network on them)."""

    config: ActorLossConfig
    METRICS: ClassVar[dict[str, str]] = {
        "critic_loss": "mean squared TD error, averaged over the critic ensemble",
        "q_mean": "mean online Q(s, a) over batch and ensemble, at the replayed actions",
        "q_std": "standard deviation of online Q(s, a) over batch and ensemble",
        "target_q_mean": "mean TD target r + discount min_k Qbar_k(s', clip(a' + noise))",
        "critic_grad_norm": "global L2 norm of the critic gradient (before clipping)",
        "actor_loss": "the method's actor loss, batch mean",
        "actor_grad_norm": "global L2 norm of the policy-net gradient (before clipping)",
        "policy_q_mean": "mean min_k Q(s, a) (fresh critics) at the replayed actions",
    }

    def act(self, state: Any, key: Array, obs: Array, mode: str = "explore") -> Array:
        a = super().act(state, key, obs, mode)
        if mode != "explore" or self.config.explore_noise == 0.0:
            return a
        noise = jax.random.normal(jax.random.fold_in(key, 1), a.shape, a.dtype)
        return jnp.clip(a + self.config.explore_noise * noise, -1.0, 1.0)

    def replay_latent(self, action: Array) -> Array:
        """u = atanh(clip(a, +-REPLAY_CLIP))."""
        return jnp.arctanh(jnp.clip(action, -REPLAY_CLIP, REPLAY_CLIP))

    def _td_target(
        self, state: Any, key: Array, batch: Batch, lam: Array
    ) -> tuple[Array, dict[str, Array]]:
        c = self.config
        k_pi, k_noise = jax.random.split(key)
        u_next, _ = self._policy_latent(state, k_pi, batch.next_obs, c.train_pick)
        a_next = jnp.tanh(u_next)
        if c.target_noise > 0:
            noise = jax.random.normal(k_noise, a_next.shape, a_next.dtype)
            a_next = jnp.clip(a_next + c.target_noise * noise, -1.0, 1.0)
        next_q = self.q_min(state.target_critic_params, batch.next_obs, a_next)
        reward = batch.reward if c.reward_scale == 1.0 else c.reward_scale * batch.reward
        return reward + batch.discount * jax.lax.stop_gradient(next_q), {}

    def actor_inputs(
        self, critic_params: Any, key: Array, batch: Batch, lam: Array
    ) -> tuple[Any, dict[str, Array]]:
        raise NotImplementedError

    def actor_loss(self, predict: Any, inputs: Any) -> Array:
        raise NotImplementedError

    def update(self, state: Any, batch: Batch, key: Array) -> tuple[Any, Metrics]:
        """One critic TD step, then one actor step on the method's loss."""
        c = self.config
        k_next, k_actor = jax.random.split(key)
        lam = self.temperature_of(state)
        target, _ = self._td_target(state, k_next, batch, lam)
        critic_params, critic_opt, metrics = critic_td_step(
            self.critic_net, self.critic_opt, state.critic_params, state.critic_opt, batch, target
        )
        inputs, extra = self.actor_inputs(critic_params, k_actor, batch, lam)
        inputs = jax.lax.stop_gradient(inputs)

        def actor_loss_fn(params: Any) -> Array:
            def predict(tt: Array, x: Array) -> Array:
                tt = tt if c.time_scale == 1.0 else c.time_scale * tt
                return self.velocity_net.apply(params, tt, x, batch.obs, lam)

            return self.actor_loss(predict, inputs)

        actor = gradient_step(actor_loss_fn, self.actor_opt, state.actor_params, state.actor_opt)
        new_state = advance(
            state, actor=actor, critic_params=critic_params, critic_opt=critic_opt, tau=c.tau
        )
        metrics.update(
            actor_loss=actor.loss,
            actor_grad_norm=actor.grad_norm,
            policy_q_mean=jnp.mean(self.q_min(critic_params, batch.obs, batch.action)),
            **extra,
        )
        return new_state, metrics


@dataclasses.dataclass(frozen=True)
class QSMConfig(ActorLossConfig):
    """QSM defaults (module docstring); the rest is RFM's critic and network."""

    #: M: the score target is M grad_a Q (the network's temperature input is 1/M).
    q_scale: float = 50.0
    explore_noise: float = 0.1
    target_noise: float = 0.1
    #: Clip the sampler's iterate to the latent box |u| <= atanh(0.999) after every step, as
    #: QSM's ``clip_sampler`` clips x_t to [-1, 1] (:mod:`revflow.agents.clipped`).
    clip_sampler: bool = True

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # As the other diffusion baselines' fast presets: fewer particles and steps.
        "fast": {
            "num_particles": 8,
            "num_flow_steps": 10,
            "actor_hidden": 128,
            "embed_dim": 64,
        },
    }

    def validate(self) -> None:
        super().validate()
        require(
            math.isfinite(self.q_scale) and self.q_scale > 0,
            "q_scale",
            self.q_scale,
            "must be a finite number > 0",
        )
        if self.clip_sampler:
            require(
                self.policy == "diffusion",
                "policy",
                self.policy,
                "must be 'diffusion' with clip_sampler=True (a clipped diffusion sampler)",
            )


class QSM(ClippedSamplerAgent, ActorLossAgent):
    """Q-score matching: eps regression onto -beta_t M grad_u Q at u_t (module docstring)."""

    name = "qsm"
    Config = QSMConfig
    METRICS: ClassVar[dict[str, str]] = {
        **ActorLossAgent.METRICS,
        "actor_loss": "||eps_theta(t, u_t) + beta_t grad_u [M Q + log sech^2](u_t)||^2, mean",
        "target_norm": "mean L2 norm of the eps target -beta_t grad_u log p1(u_t)",
    }

    config: QSMConfig

    def temperature_of(self, state: Any) -> Array:
        return jnp.asarray(1.0 / self.config.q_scale, jnp.float32)

    def sampler_clip(self) -> str | None:
        return "iterate" if self.config.clip_sampler else None

    def qsm_target(self, critic_params: Any, obs: Array, u_t: Array, t: Array) -> Array:
        """eps target -beta_t grad_u [M min_k Q_k(s, tanh u) + sum log sech^2 u] at u = u_t."""
        m = self.config.q_scale

        def log_p1(u: Array) -> Array:
            q = self.q_min(critic_params, obs, jnp.tanh(u))
            return jnp.sum(m * q + jnp.sum(estimators.log_sech2(u), axis=-1))

        score = jax.grad(log_p1)(u_t)  # rows are independent, so grad of the sum is per row
        return -self.path.beta(t)[:, None] * score

    def actor_inputs(
        self, critic_params: Any, key: Array, batch: Batch, lam: Array
    ) -> tuple[Any, dict[str, Array]]:
        k_t, k_eps = jax.random.split(key)
        t, u_t = self.noisy_points(k_t, k_eps, self.replay_latent(batch.action))
        target = self.qsm_target(critic_params, batch.obs, u_t, t)
        return (t, u_t, target), {"target_norm": jnp.mean(jnp.linalg.norm(target, axis=-1))}

    def actor_loss(self, predict: Any, inputs: Any) -> Array:
        t, u_t, target = inputs
        return regression_loss(predict(t, u_t), target)
