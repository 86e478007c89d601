"""The agent of every generative (flow / diffusion) algorithm: a :class:`LatentPolicy`, a
:class:`CriticEnsemble` and the algorithm's objective, built from a config composed of
:mod:`revflow.agents.configs` parts.

An algorithm module defines its config, its objective (``make_objective(agent)`` ->
:class:`revflow.agents.actor_critic.Objective`) and a subclass naming them; acting is the
policy's particle pick (modes of :data:`revflow.agents.base.ACT_MODES`), plus Gaussian
exploration noise where the algorithm has it (:meth:`GenerativeAgent.explore_std`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from revflow.agents.actor_critic import ActorCriticAgent, Objective
from revflow.agents.base import Array
from revflow.agents.common import make_optimizer
from revflow.agents.critics import CriticEnsemble
from revflow.agents.policies import LatentPolicy
from revflow.networks import VelocityNet
from revflow.paths import VE, make_path

__all__ = ["GenerativeAgent"]


class GenerativeAgent(ActorCriticAgent):
    """Policy, critic and optimisers from the config; ``make_objective`` (a class attribute:
    a function of the agent) gives the algorithm. ``clip`` (None | "iterate" | "endpoint")
    keeps the diffusion sampler in the latent box."""

    make_objective: ClassVar[Callable[[Any], Objective]]

    def __init__(self, config: Any, obs_dim: int, act_dim: int):
        super().__init__(config, obs_dim, act_dim)
        c = config
        self.policy = self.make_policy()
        self.critic = CriticEnsemble.from_config(c)
        actor_lr: Any = c.actor_lr
        if c.actor_lr_end is not None:
            actor_lr = optax.linear_schedule(c.actor_lr, c.actor_lr_end, c.lr_decay_updates)
        self.actor_opt = make_optimizer(actor_lr, c.max_grad_norm)
        self.objective = type(self).make_objective(self)

    def make_net(self) -> VelocityNet:
        """The policy network of the config (``LatentPolicyFields``' sizes)."""
        c = self.config
        return VelocityNet(
            out_dim=self.act_dim, hidden=c.actor_hidden, num_blocks=c.actor_blocks,
            time_embed_dim=c.embed_dim, temp_embed_dim=c.embed_dim,
            kernel_init=c.network_init, embedding=c.embedding,
        )  # fmt: skip

    def make_policy(self) -> Any:
        """The policy object (an algorithm may compose another one around :meth:`make_net`)."""
        c = self.config
        return LatentPolicy(
            net=self.make_net(),
            path=(
                VE(sigma_min=c.ve_sigma_min, sigma_max=c.ve_sigma_max)
                if c.path == "ve"
                else make_path(c.path)
            ),
            act_dim=self.act_dim,
            kind=c.policy,
            sampler=c.sampler,
            num_steps=c.num_flow_steps,
            t_min=c.t_min,
            t_max=c.t_max,
            parameterisation=c.parameterisation,
            time_scale=c.time_scale,
            clip=self.sampler_clip(),
        )

    def sampler_clip(self) -> str | None:
        """How the diffusion sampler is kept in the latent box (None: not at all)."""
        return None

    # -- temperature --------------------------------------------------------------------------

    def temperature(self, step: Array) -> Array:
        """lam at a given update count: constant, or log-linear from lam to lam_end."""
        c = self.config
        if c.lam_end is None:
            return jnp.asarray(c.lam, jnp.float32)
        frac = jnp.clip(jnp.asarray(step).astype(jnp.float32) / c.lam_anneal_updates, 0.0, 1.0)
        return jnp.exp((1.0 - frac) * math.log(c.lam) + frac * math.log(c.lam_end))

    def temperature_of(self, state: Any) -> Array:
        """lam used with a train state (the policy network is conditioned on it)."""
        return self.temperature(state.step)

    # -- acting -------------------------------------------------------------------------------

    def q_fn(self, critic_params: Any) -> Callable[[Array, Array], Array]:
        return lambda obs, action: self.critic.q_min(critic_params, obs, action)

    def latent(
        self, state: Any, key: Array, obs: Array, pick: str, critic_params: Any = None
    ) -> tuple[Array, Array]:
        """Latent actions (B, act_dim) and their min-Q, chosen among particles by ``pick``."""
        critic_params = state.critic_params if critic_params is None else critic_params
        return self.policy.pick(
            state.actor_params,
            key,
            obs,
            self.temperature_of(state),
            self.q_fn(critic_params),
            pick,
            self.config.num_particles,
        )

    def explore_latent(self, state: Any, key: Array, obs: Array) -> Array:
        """The behaviour policy's latent action (before any exploration noise)."""
        return self.latent(state, key, obs, self.config.explore_pick)[0]

    def explore_std(self, state: Any) -> Any:
        """Std of the Gaussian noise added to "explore" actions (then clipped); None: none."""
        return None

    def act(self, state: Any, key: Array, obs: Array, mode: str = "explore") -> Array:
        if mode == "explore":
            a = jnp.tanh(self.explore_latent(state, key, obs))
            std = self.explore_std(state)
            if std is None:
                return a
            noise = jax.random.normal(jax.random.fold_in(key, 1), a.shape, a.dtype)
            return jnp.clip(a + std * noise, -1.0, 1.0)
        picks = {"best-of-n": "best", "sample": "sample"}
        if mode not in picks:
            raise ValueError(f"unknown act mode {mode!r}; expected explore, best-of-n or sample")
        return jnp.tanh(self.latent(state, key, obs, picks[mode])[0])
