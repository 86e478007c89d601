"""Soft Actor-Critic with a tanh-squashed Gaussian actor: the Gaussian baseline.

The maximum-entropy counterpart of the RFM agent (method note §1, §6) with a diagonal
Gaussian policy instead of a flow, in the form of Haarnoja et al. (2018, "SAC: algorithms
and applications"):

- twin critics (``networks.Critic``) with Polyak-averaged targets; the TD target is
  ``r + discount * (min_k Qbar_k(s', a') - alpha * log pi(a' | s'))``, ``a' ~ pi(. | s')``;
- actor: ``a = tanh(mu + sigma * eps)``; loss ``E[alpha * log pi(a | s) - min_k Q_k(s, a)]``
  against the freshly updated critics;
- temperature: ``alpha = exp(log_alpha)`` tuned so that the policy entropy tracks
  ``target_entropy`` (default ``-act_dim``).

The update is a pure function of the train state, so the engine can ``jax.jit`` it and fuse
several updates with ``lax.scan``. The warm-up with uniform-random actions is the engine's
(``TrainConfig.warmup_steps``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import optax

from revflow.agents.base import Agent, AgentConfig, Array, Batch, Metrics, require
from revflow.agents.common import advance, critic_td_step, gradient_step, make_optimizer
from revflow.agents.registry import register
from revflow.estimators import log_sech2
from revflow.networks import MLP, Critic

__all__ = ["SAC", "SACConfig", "SACState"]


@dataclasses.dataclass(frozen=True)
class SACConfig(AgentConfig):
    """SAC hyperparameters (defaults: the common SAC settings used by CleanRL / SB3)."""

    #: Minibatch size of one gradient update.
    batch_size: int = 256
    #: Discount factor gamma.
    gamma: float = 0.99
    #: Polyak coefficient of the target critics: ``target <- tau * online + (1 - tau) * target``.
    tau: float = 0.005
    #: Adam learning rate of the actor.
    actor_lr: float = 3e-4
    #: Adam learning rate of the critics.
    critic_lr: float = 3e-4
    #: Adam learning rate of ``log_alpha``.
    alpha_lr: float = 3e-4
    #: Hidden widths of the actor MLP.
    actor_hidden: tuple[int, ...] = (256, 256)
    #: Hidden widths of each critic MLP.
    critic_hidden: tuple[int, ...] = (256, 256)
    #: Number of Q-networks in the ensemble (the TD target and actor loss use their minimum).
    num_critics: int = 2
    #: Global gradient-norm clip of every optimiser (0 disables clipping).
    max_grad_norm: float = 10.0
    #: Initial temperature alpha.
    init_alpha: float = 1.0
    #: Tune alpha automatically; if False alpha stays at ``init_alpha``.
    autotune_alpha: bool = True
    #: Entropy target of the temperature loss; None means ``-act_dim``.
    target_entropy: float | None = None
    #: Bounds of the actor's log standard deviation (squashed smoothly into the interval).
    log_std_min: float = -5.0
    #: Upper bound of the actor's log standard deviation.
    log_std_max: float = 2.0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Narrower networks: about 4x fewer FLOPs per update; for quick experiments.
        "fast": {"actor_hidden": (128, 128), "critic_hidden": (128, 128)},
    }

    def validate(self) -> None:
        super().validate()
        require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        require(0.0 <= self.gamma <= 1.0, "gamma", self.gamma, "must be in [0, 1]")
        require(0.0 < self.tau <= 1.0, "tau", self.tau, "must be in (0, 1]")
        for name in ("actor_lr", "critic_lr", "alpha_lr"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, name, value, "must be a finite number > 0")
        for name in ("actor_hidden", "critic_hidden"):
            value = tuple(getattr(self, name))
            require(
                len(value) >= 1 and all(int(w) >= 1 for w in value),
                name,
                value,
                "must be a non-empty sequence of widths >= 1",
            )
        require(self.num_critics >= 1, "num_critics", self.num_critics, "must be >= 1")
        require(self.max_grad_norm >= 0, "max_grad_norm", self.max_grad_norm, "must be >= 0")
        require(
            math.isfinite(self.init_alpha) and self.init_alpha > 0,
            "init_alpha",
            self.init_alpha,
            "must be a finite number > 0",
        )
        require(
            self.target_entropy is None or math.isfinite(self.target_entropy),
            "target_entropy",
            self.target_entropy,
            "must be None or finite",
        )
        require(
            self.log_std_min < self.log_std_max,
            "log_std_min",
            self.log_std_min,
            f"must be < log_std_max={self.log_std_max}",
        )


@flax.struct.dataclass
class SACState:
    """Everything an SAC update reads and writes (a pytree)."""

    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    log_alpha: Array
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any
    #: Number of updates applied so far.
    step: Array


def _squashed_gaussian(mean: Array, log_std: Array, key: Array) -> tuple[Array, Array]:
    """Sample ``a = tanh(u)``, ``u ~ N(mean, exp(log_std)^2)``, and ``log pi(a)`` (summed)."""
    std = jnp.exp(log_std)
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + std * eps
    log_prob_u = -0.5 * eps**2 - log_std - 0.5 * math.log(2.0 * math.pi)
    log_det = log_sech2(u)  # log |d tanh(u) / du|
    return jnp.tanh(u), jnp.sum(log_prob_u - log_det, axis=-1)


@register
class SAC(Agent):
    """Soft Actor-Critic (see the module docstring)."""

    name = "sac"
    Config = SACConfig
    METRICS: ClassVar[dict[str, str]] = {
        "critic_loss": "mean squared TD error, averaged over the critic ensemble",
        "actor_loss": "E[alpha * log pi(a|s) - min_k Q_k(s, a)] over the batch",
        "alpha_loss": "temperature loss -log_alpha * E[log pi + target_entropy]",
        "alpha": "entropy temperature alpha (after the update)",
        "entropy": "policy entropy estimate -E[log pi(a|s)] of the squashed policy",
        "q_mean": "mean online Q(s, a) over batch and ensemble, at the replayed actions",
        "q_std": "standard deviation of online Q(s, a) over batch and ensemble",
        "target_q_mean": "mean TD target r + discount * soft target value",
        "critic_grad_norm": "global L2 norm of the critic gradient (before clipping)",
        "actor_grad_norm": "global L2 norm of the actor gradient (before clipping)",
    }

    config: SACConfig

    def __init__(self, config: SACConfig, obs_dim: int, act_dim: int):
        super().__init__(config, obs_dim, act_dim)
        c = config
        self.actor_net = MLP(out_dim=2 * act_dim, hidden=tuple(c.actor_hidden))
        self.critic_net = Critic(num_critics=c.num_critics, hidden=tuple(c.critic_hidden))
        self.target_entropy = (
            float(c.target_entropy) if c.target_entropy is not None else -float(act_dim)
        )

        self.actor_opt = make_optimizer(c.actor_lr, c.max_grad_norm)
        self.critic_opt = make_optimizer(c.critic_lr, c.max_grad_norm)
        self.alpha_opt = optax.adam(c.alpha_lr)

    # -- state ------------------------------------------------------------------------------

    def init(self, key: Array) -> SACState:
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros((1, self.obs_dim), jnp.float32)
        act = jnp.zeros((1, self.act_dim), jnp.float32)
        actor_params = self.actor_net.init(k_actor, obs)
        critic_params = self.critic_net.init(k_critic, obs, act)
        log_alpha = jnp.asarray(math.log(self.config.init_alpha), jnp.float32)
        return SACState(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=critic_params,
            log_alpha=log_alpha,
            actor_opt=self.actor_opt.init(actor_params),
            critic_opt=self.critic_opt.init(critic_params),
            alpha_opt=self.alpha_opt.init(log_alpha),
            step=jnp.zeros((), jnp.int32),
        )

    # -- policy -----------------------------------------------------------------------------

    def _dist(self, actor_params: Any, obs: Array) -> tuple[Array, Array]:
        out = self.actor_net.apply(actor_params, obs)
        mean, raw = jnp.split(out, 2, axis=-1)
        lo, hi = self.config.log_std_min, self.config.log_std_max
        log_std = lo + 0.5 * (hi - lo) * (jnp.tanh(raw) + 1.0)
        return mean, log_std

    def act(self, state: SACState, key: Array, obs: Array, mode: str = "explore") -> Array:
        """``explore`` / ``sample``: a draw of the squashed Gaussian; ``best-of-n``: tanh(mean)."""
        mean, log_std = self._dist(state.actor_params, obs)
        if mode == "best-of-n":
            return jnp.tanh(mean)
        if mode in ("explore", "sample"):
            return _squashed_gaussian(mean, log_std, key)[0]
        raise ValueError(f"unknown act mode {mode!r}; expected explore, sample or best-of-n")

    # -- update -----------------------------------------------------------------------------

    def update(self, state: SACState, batch: Batch, key: Array) -> tuple[SACState, Metrics]:
        c = self.config
        k_next, k_pi = jax.random.split(key)
        alpha = jnp.exp(state.log_alpha)

        # Critic: soft TD target from the target critics at a' ~ pi(. | s').
        next_mean, next_log_std = self._dist(state.actor_params, batch.next_obs)
        next_action, next_logp = _squashed_gaussian(next_mean, next_log_std, k_next)
        next_q = self.critic_net.apply(state.target_critic_params, batch.next_obs, next_action)
        soft_value = jnp.min(next_q, axis=0) - alpha * next_logp
        target = batch.reward + batch.discount * soft_value

        critic_params, critic_opt, critic_metrics = critic_td_step(
            self.critic_net, self.critic_opt, state.critic_params, state.critic_opt, batch, target
        )

        # Actor: reparameterised, against the freshly updated critics.
        def actor_loss_fn(params: Any) -> tuple[Array, Array]:
            mean, log_std = self._dist(params, batch.obs)
            action, logp = _squashed_gaussian(mean, log_std, k_pi)
            q_pi = jnp.min(self.critic_net.apply(critic_params, batch.obs, action), axis=0)
            return jnp.mean(alpha * logp - q_pi), logp

        actor = gradient_step(
            actor_loss_fn, self.actor_opt, state.actor_params, state.actor_opt, has_aux=True
        )
        logp = actor.aux

        # Temperature.
        entropy_gap = jax.lax.stop_gradient(jnp.mean(logp) + self.target_entropy)

        def alpha_loss_fn(log_alpha: Array) -> Array:
            return -log_alpha * entropy_gap

        alpha = gradient_step(alpha_loss_fn, self.alpha_opt, state.log_alpha, state.alpha_opt)
        if c.autotune_alpha:
            log_alpha, alpha_opt = alpha.params, alpha.opt_state
        else:
            log_alpha, alpha_opt = state.log_alpha, state.alpha_opt

        new_state = advance(
            state,
            actor=actor,
            critic_params=critic_params,
            critic_opt=critic_opt,
            tau=c.tau,
            log_alpha=log_alpha,
            alpha_opt=alpha_opt,
        )
        metrics = {
            **critic_metrics,
            "actor_loss": actor.loss,
            "alpha_loss": alpha.loss,
            "alpha": jnp.exp(log_alpha),
            "entropy": -jnp.mean(logp),
            "actor_grad_norm": actor.grad_norm,
        }
        return new_state, metrics
