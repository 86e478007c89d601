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

Defaults ("reference" preset) are those of the authors' SAC (azizanlab/ReverseFlowMatching,
``src/agent/sac.py`` with ``configs/default.yaml``; checked by ``benchmarks/fidelity``):
critic lr 1e-3, actor and alpha lr 3e-4; actor ``ResidualMLP`` (Dense 256, GELU, 2 residual
GELU blocks) and ReLU critics, all kernels orthogonal (gain sqrt 2); log-std hard-clipped to
[-20, 2]; ``log pi`` with the tanh correction ``log(1 - a^2 + 1e-6)``; temperature loss
``mean(alpha * (-log pi - target_entropy))``; each critic's gradient that of its own TD loss;
no gradient clipping (their ``run.sh`` loads a config with clipping only for rfm).

Presets:

- ``standard``: SAC as CleanRL's ``sac_continuous_action.py`` sets it (users' generic
  baseline): plain 2x256 ReLU MLP actor, LeCun-normal kernels (PyTorch's default init is
  not reproduced), log-std squashed smoothly into [-5, 2], critic and alpha lr 1e-3, actor
  lr 3e-4, no clipping, the same temperature loss. CleanRL's delayed actor updates
  (``policy_frequency=2``, two actor steps every second update) are not reproduced: one
  actor step per update.
- ``revflow``: revflow's earlier SAC (all lr 3e-4, global-norm clip 10, plain MLP, LeCun,
  log-std squashed into [-5, 2], exact ``log sech^2`` correction, SB3's temperature loss
  ``-log_alpha * (log pi + target_entropy)``, one clip norm over the ensemble-mean loss).
- ``fast``: the reference with 128-wide networks.
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
from revflow.agents.common import (
    CLIP_SCOPES,
    advance,
    critic_td_step,
    gradient_step,
    make_optimizer,
)
from revflow.estimators import log_sech2
from revflow.networks import KERNEL_INITS, MLP, Critic, ResidualMLP

__all__ = ["SAC", "SACConfig", "SACState"]


@dataclasses.dataclass(frozen=True)
class SACConfig(AgentConfig):
    """SAC hyperparameters; defaults are the authors' SAC, presets ``standard`` (CleanRL),
    ``revflow`` and ``fast`` (module docstring)."""

    #: Minibatch size of one gradient update.
    batch_size: int = 256
    #: Discount factor gamma.
    gamma: float = 0.99
    #: Polyak coefficient of the target critics: ``target <- tau * online + (1 - tau) * target``.
    tau: float = 0.005
    #: Adam learning rate of the actor.
    actor_lr: float = 3e-4
    #: Adam learning rate of the critics.
    critic_lr: float = 1e-3
    #: Adam learning rate of ``log_alpha``.
    alpha_lr: float = 3e-4
    #: Hidden widths of the actor MLP (``residual``: equal widths, one block per entry).
    actor_hidden: tuple[int, ...] = (256, 256)
    #: Hidden widths of each critic MLP.
    critic_hidden: tuple[int, ...] = (256, 256)
    #: Number of Q-networks in the ensemble (the TD target and actor loss use their minimum).
    num_critics: int = 2
    #: Gradient-norm clip of actor and critics (0 disables clipping).
    max_grad_norm: float = 0.0
    #: Initial temperature alpha.
    init_alpha: float = 1.0
    #: Tune alpha automatically; if False alpha stays at ``init_alpha``.
    autotune_alpha: bool = True
    #: Entropy target of the temperature loss; None means ``-act_dim``.
    target_entropy: float | None = None
    #: Lower bound of the actor's log standard deviation (see ``log_std_bound``).
    log_std_min: float = -20.0
    #: Upper bound of the actor's log standard deviation.
    log_std_max: float = 2.0
    #: How log-std is kept in its bounds: "clip" (hard) or "tanh" (squashed smoothly).
    log_std_bound: str = "clip"
    #: Actor network: "residual" (networks.ResidualMLP) or "mlp" (plain ReLU MLP).
    actor_arch: str = "residual"
    #: Kernel initialisation of actor and critics: orthogonal (gain sqrt 2) | lecun.
    network_init: str = "orthogonal"
    #: Temperature loss: "alpha" mean(alpha (-log pi - H)) or "log-alpha" -log_alpha (log pi + H).
    alpha_loss: str = "alpha"
    #: Tanh correction log(1 - a^2 + eps) of log pi; 0 means the exact log sech^2(u).
    log_det_eps: float = 1e-6
    #: Critic gradient: "per-critic" (each critic's own TD loss, clipped by its own norm) or
    #: "global" (the ensemble-mean loss, one clip norm).
    critic_clip: str = "per-critic"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Narrower networks: about 4x fewer FLOPs per update; for quick experiments.
        "fast": {"actor_hidden": (128, 128), "critic_hidden": (128, 128)},
        "standard": {
            "critic_lr": 1e-3,
            "alpha_lr": 1e-3,
            "log_std_min": -5.0,
            "log_std_bound": "tanh",
            "actor_arch": "mlp",
            "network_init": "lecun",
        },
        "revflow": {
            "critic_lr": 3e-4,
            "max_grad_norm": 10.0,
            "log_std_min": -5.0,
            "log_std_bound": "tanh",
            "actor_arch": "mlp",
            "network_init": "lecun",
            "alpha_loss": "log-alpha",
            "log_det_eps": 0.0,
            "critic_clip": "global",
        },
    }
    # Runs saved before the last six fields existed had revflow's earlier SAC.
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {
        "log_std_bound": "tanh",
        "actor_arch": "mlp",
        "network_init": "lecun",
        "alpha_loss": "log-alpha",
        "log_det_eps": 0.0,
        "critic_clip": "global",
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
        for name, choices in (
            ("log_std_bound", ("clip", "tanh")),
            ("actor_arch", ("residual", "mlp")),
            ("network_init", KERNEL_INITS),
            ("alpha_loss", ("alpha", "log-alpha")),
            ("critic_clip", CLIP_SCOPES),
        ):
            value = getattr(self, name)
            require(value in choices, name, value, f"must be one of {list(choices)}")
        if self.actor_arch == "residual":
            require(
                len(set(self.actor_hidden)) == 1,
                "actor_hidden",
                self.actor_hidden,
                "must have equal widths for actor_arch='residual'",
            )
        require(
            math.isfinite(self.log_det_eps) and 0.0 <= self.log_det_eps < 1.0,
            "log_det_eps",
            self.log_det_eps,
            "must be in [0, 1)",
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


def _squashed_gaussian(
    mean: Array, log_std: Array, key: Array, log_det_eps: float = 0.0
) -> tuple[Array, Array]:
    """Sample ``a = tanh(u)``, ``u ~ N(mean, exp(log_std)^2)``, and ``log pi(a)`` (summed).

    The tanh correction is the exact ``log sech^2(u)``, or ``log(1 - a^2 + log_det_eps)``
    when ``log_det_eps > 0`` (the authors', CleanRL's and SB3's form)."""
    std = jnp.exp(log_std)
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + std * eps
    action = jnp.tanh(u)
    log_prob_u = -0.5 * eps**2 - log_std - 0.5 * math.log(2.0 * math.pi)
    if log_det_eps > 0:
        log_det = jnp.log(1.0 - action**2 + log_det_eps)
    else:
        log_det = log_sech2(u)  # log |d tanh(u) / du|
    return action, jnp.sum(log_prob_u - log_det, axis=-1)


class SAC(Agent):
    """Soft Actor-Critic (see the module docstring)."""

    name = "sac"
    Config = SACConfig
    METRICS: ClassVar[dict[str, str]] = {
        "critic_loss": "mean squared TD error, averaged over the critic ensemble",
        "actor_loss": "E[alpha * log pi(a|s) - min_k Q_k(s, a)] over the batch",
        "alpha_loss": "temperature loss (alpha_loss: alpha * E[-log pi - target_entropy] or "
        "-log_alpha * E[log pi + target_entropy])",
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
        if c.actor_arch == "residual":
            self.actor_net: Any = ResidualMLP(
                out_dim=2 * act_dim,
                hidden=int(c.actor_hidden[0]),
                num_blocks=len(c.actor_hidden),
                kernel_init=c.network_init,
            )
        else:
            self.actor_net = MLP(
                out_dim=2 * act_dim, hidden=tuple(c.actor_hidden), kernel_init=c.network_init
            )
        self.critic_net = Critic(
            num_critics=c.num_critics, hidden=tuple(c.critic_hidden), kernel_init=c.network_init
        )
        self.target_entropy = (
            float(c.target_entropy) if c.target_entropy is not None else -float(act_dim)
        )

        self.actor_opt = make_optimizer(c.actor_lr, c.max_grad_norm)
        self.critic_opt = make_optimizer(c.critic_lr, c.max_grad_norm, c.critic_clip)
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
        if self.config.log_std_bound == "clip":
            return mean, jnp.clip(raw, lo, hi)
        return mean, lo + 0.5 * (hi - lo) * (jnp.tanh(raw) + 1.0)

    def sample(self, actor_params: Any, obs: Array, key: Array) -> tuple[Array, Array]:
        """``(a, log pi(a | s))`` for a batch of states: one reparameterised draw."""
        mean, log_std = self._dist(actor_params, obs)
        return _squashed_gaussian(mean, log_std, key, self.config.log_det_eps)

    def act(self, state: SACState, key: Array, obs: Array, mode: str = "explore") -> Array:
        """``explore`` / ``sample``: a draw of the squashed Gaussian; ``best-of-n``: tanh(mean)."""
        mean, log_std = self._dist(state.actor_params, obs)
        if mode == "best-of-n":
            return jnp.tanh(mean)
        if mode in ("explore", "sample"):
            return _squashed_gaussian(mean, log_std, key, self.config.log_det_eps)[0]
        raise ValueError(f"unknown act mode {mode!r}; expected explore, sample or best-of-n")

    # -- update -----------------------------------------------------------------------------

    def td_target(self, state: SACState, batch: Batch, key: Array) -> Array:
        """Soft TD target ``r + discount (min_k Qbar_k(s', a') - alpha log pi(a'|s'))``,
        ``a' ~ pi(. | s')`` drawn with ``key``."""
        next_action, next_logp = self.sample(state.actor_params, batch.next_obs, key)
        next_q = self.critic_net.apply(state.target_critic_params, batch.next_obs, next_action)
        soft_value = jnp.min(next_q, axis=0) - jnp.exp(state.log_alpha) * next_logp
        return batch.reward + batch.discount * soft_value

    def actor_loss(
        self, params: Any, critic_params: Any, obs: Array, alpha: Array, key: Array
    ) -> tuple[Array, Array]:
        """``(E[alpha log pi(a|s) - min_k Q_k(s, a)], log pi)``, ``a`` reparameterised."""
        action, logp = self.sample(params, obs, key)
        q_pi = jnp.min(self.critic_net.apply(critic_params, obs, action), axis=0)
        return jnp.mean(alpha * logp - q_pi), logp

    def alpha_loss(self, log_alpha: Array, logp: Array) -> Array:
        """Temperature loss (``alpha_loss``); ``logp`` is held fixed."""
        logp = jax.lax.stop_gradient(logp)
        if self.config.alpha_loss == "alpha":
            return jnp.mean(jnp.exp(log_alpha) * (-logp - self.target_entropy))
        return -log_alpha * (jnp.mean(logp) + self.target_entropy)

    def update(self, state: SACState, batch: Batch, key: Array) -> tuple[SACState, Metrics]:
        c = self.config
        k_next, k_pi = jax.random.split(key)
        alpha = jnp.exp(state.log_alpha)

        # Critic: soft TD target from the target critics at a' ~ pi(. | s').
        target = self.td_target(state, batch, k_next)
        critic_params, critic_opt, critic_metrics = critic_td_step(
            self.critic_net,
            self.critic_opt,
            state.critic_params,
            state.critic_opt,
            batch,
            target,
            per_critic=c.critic_clip == "per-critic",
        )

        # Actor: reparameterised, against the freshly updated critics.
        def actor_loss_fn(params: Any) -> tuple[Array, Array]:
            return self.actor_loss(params, critic_params, batch.obs, alpha, k_pi)

        actor = gradient_step(
            actor_loss_fn, self.actor_opt, state.actor_params, state.actor_opt, has_aux=True
        )
        logp = actor.aux

        # Temperature.
        def alpha_loss_fn(log_alpha: Array) -> Array:
            return self.alpha_loss(log_alpha, logp)

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
