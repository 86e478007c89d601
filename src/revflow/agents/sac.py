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

The update is a pure function of the train state (the engine jits it and fuses several
updates with ``lax.scan``); the uniform-random warm-up is the engine's.

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

from revflow.agents.actor_critic import ActorCriticAgent, Objective, temperature_init
from revflow.agents.base import Array, Batch, require
from revflow.agents.common import GradientStep, gradient_step, make_optimizer
from revflow.agents.configs import CriticFields, OptimiserFields
from revflow.agents.critics import CriticEnsemble, td_target
from revflow.agents.policies import GaussianPolicy
from revflow.networks import KERNEL_INITS, MLP, ResidualMLP

__all__ = ["SAC", "SACConfig", "SACState", "alpha_loss", "sac_objective"]


@flax.struct.dataclass
class SACState:
    """Everything an SAC update reads and writes (a pytree). The same fields as
    :class:`TemperatureState`, in the order SAC checkpoints have always stored them (a
    checkpoint is restored leaf by leaf, so the order is part of the format)."""

    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    log_alpha: Array
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any
    #: Number of updates applied so far.
    step: Array


#: The switches of revflow's earlier SAC (the ``revflow`` preset; runs saved before these
#: fields existed had them).
EARLIER_SAC: dict[str, Any] = {
    "log_std_bound": "tanh",
    "actor_arch": "mlp",
    "network_init": "lecun",
    "alpha_loss": "log-alpha",
    "log_det_eps": 0.0,
    "critic_clip": "global",
}


@dataclasses.dataclass(frozen=True)
class SACConfig(CriticFields, OptimiserFields):
    """SAC hyperparameters; defaults are the authors' SAC, presets ``standard`` (CleanRL),
    ``revflow`` and ``fast`` (module docstring)."""

    #: Adam learning rate of ``log_alpha``.
    alpha_lr: float = 3e-4
    #: Hidden widths of the actor MLP (``residual``: equal widths, one block per entry).
    actor_hidden: tuple[int, ...] = (256, 256)
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
            **EARLIER_SAC,
        },
    }
    # Runs saved before these six fields existed had revflow's earlier SAC.
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = EARLIER_SAC

    def validate(self) -> None:
        super().validate()
        require(math.isfinite(self.alpha_lr) and self.alpha_lr > 0, "alpha_lr", self.alpha_lr,
                "must be a finite number > 0")  # fmt: skip
        value = tuple(self.actor_hidden)
        require(
            len(value) >= 1 and all(int(w) >= 1 for w in value),
            "actor_hidden",
            value,
            "must be a non-empty sequence of widths >= 1",
        )
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


def alpha_loss(agent: SAC, log_alpha: Array, logp: Array) -> Array:
    """Temperature loss (``alpha_loss``); ``logp`` is held fixed."""
    logp = jax.lax.stop_gradient(logp)
    if agent.config.alpha_loss == "alpha":
        return jnp.mean(jnp.exp(log_alpha) * (-logp - agent.target_entropy))
    return -log_alpha * (jnp.mean(logp) + agent.target_entropy)


def sac_objective(agent: SAC) -> Objective:
    """SAC's losses (Haarnoja et al. 2018):

    critic:      (Q_k(s, a) - [r + discount (min_k Qbar_k(s', a') - alpha log pi(a'|s'))])^2,
    actor:       E_s[alpha log pi(a|s) - min_k Q_k(s, a)],  a = tanh(mu + sigma eps),
    temperature: mean(alpha (-log pi - H)) or -log_alpha (mean log pi + H).
    """
    c, policy, critic = agent.config, agent.policy, agent.critic

    def split(key: Array) -> tuple[Any, Any, Any]:
        k_next, k_pi = jax.random.split(key)
        return k_next, k_pi, None

    def critic_target(state: SACState, batch: Batch, key: Array) -> tuple[Array, dict]:
        next_action, next_logp = policy.sample(state.actor_params, batch.next_obs, key)
        next_q = critic.q_min(state.target_critic_params, batch.next_obs, next_action)
        return td_target(batch, next_q - jnp.exp(state.log_alpha) * next_logp), {}

    def actor_inputs(state: SACState, critic_params: Any, batch: Batch, key: Array):
        return (critic_params, batch.obs, jnp.exp(state.log_alpha), key), {}

    def actor_loss(params: Any, inputs: Any) -> tuple[Array, Array]:
        critic_params, obs, alpha, key = inputs
        action, logp = policy.sample(params, obs, key)
        return jnp.mean(alpha * logp - critic.q_min(critic_params, obs, action)), logp

    def temperature_step(state: SACState, actor: GradientStep, batch: Batch, key: Any):
        logp = actor.aux

        def alpha_loss_fn(log_alpha: Array) -> Array:
            return alpha_loss(agent, log_alpha, logp)

        step = gradient_step(alpha_loss_fn, agent.alpha_opt, state.log_alpha, state.alpha_opt)
        if c.autotune_alpha:
            log_alpha, alpha_opt = step.params, step.opt_state
        else:
            log_alpha, alpha_opt = state.log_alpha, state.alpha_opt
        metrics = {"alpha_loss": step.loss, "alpha": jnp.exp(log_alpha), "entropy": -jnp.mean(logp)}
        return {"log_alpha": log_alpha, "alpha_opt": alpha_opt}, metrics

    return Objective(split, critic_target, actor_inputs, actor_loss, temperature_step)


class SAC(ActorCriticAgent):
    """Soft Actor-Critic (see the module docstring)."""

    name = "sac"
    Config = SACConfig
    State = SACState
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
            net: Any = ResidualMLP(
                out_dim=2 * act_dim,
                hidden=int(c.actor_hidden[0]),
                num_blocks=len(c.actor_hidden),
                kernel_init=c.network_init,
            )
        else:
            net = MLP(out_dim=2 * act_dim, hidden=tuple(c.actor_hidden), kernel_init=c.network_init)
        self.policy = GaussianPolicy(
            net, c.log_std_min, c.log_std_max, c.log_std_bound, c.log_det_eps
        )
        self.critic = CriticEnsemble.from_config(c)
        te = c.target_entropy
        self.target_entropy = float(te) if te is not None else -float(act_dim)
        self.actor_opt = make_optimizer(c.actor_lr, c.max_grad_norm)
        self.alpha_opt = optax.adam(c.alpha_lr)
        self.objective = sac_objective(self)

    def extra_state(self) -> dict[str, Any]:
        return temperature_init(self.config.init_alpha, self.alpha_opt)

    def act(self, state: SACState, key: Array, obs: Array, mode: str = "explore") -> Array:
        """``explore`` / ``sample``: a draw of the squashed Gaussian; ``best-of-n``: tanh(mean)."""
        return self.policy.act(state.actor_params, key, obs, mode)
