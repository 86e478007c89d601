"""Pieces every actor-critic agent shares: optimisers, one gradient step, the twin-critic TD
step and the end-of-update state (Polyak targets, step count).

One copy here instead of one per agent. All functions are pure and jittable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from revflow.agents.base import Array, Batch, Metrics


def make_optimizer(lr: float, max_grad_norm: float) -> optax.GradientTransformation:
    """Adam with optional global gradient-norm clipping (method note §6: clip 10)."""
    if max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr))
    return optax.adam(lr)


class GradientStep(NamedTuple):
    """The result of :func:`gradient_step`."""

    params: Any
    opt_state: Any
    loss: Array
    aux: Any  # loss_fn's auxiliary output (has_aux=True), else None
    grad_norm: Array  # global norm of the gradient, before any clipping


def gradient_step(
    loss_fn: Callable[[Any], Any],
    optimizer: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    has_aux: bool = False,
) -> GradientStep:
    """One optimiser step on ``loss_fn(params)`` (``(loss, aux)`` when ``has_aux``)."""
    if has_aux:
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    else:
        loss, grads = jax.value_and_grad(loss_fn)(params)
        aux = None
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return GradientStep(
        optax.apply_updates(params, updates), opt_state, loss, aux, optax.tree.norm(grads)
    )


def advance(
    state: Any,
    *,
    actor: GradientStep,
    critic_params: Any,
    critic_opt: Any,
    tau: float,
    **extra: Any,
) -> Any:
    """The state after one update: new actor and critics with their optimiser states, the
    target critics moved by Polyak averaging (``tau``, method note §6), ``step + 1``, and any
    agent-specific fields in ``extra``."""
    return state.replace(
        actor_params=actor.params,
        actor_opt=actor.opt_state,
        critic_params=critic_params,
        critic_opt=critic_opt,
        target_critic_params=optax.incremental_update(
            critic_params, state.target_critic_params, tau
        ),
        step=state.step + 1,
        **extra,
    )


def critic_td_step(
    critic_net: nn.Module,
    optimizer: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    batch: Batch,
    target: Array,
) -> tuple[Any, Any, Metrics]:
    """One gradient step of every critic in the ensemble on ``(Q_k(s, a) - target)^2``.

    ``target`` (B,) is treated as a constant. Returns the new params, optimiser state and
    metrics ``critic_loss`` (mean squared TD error over batch, averaged over the ensemble),
    ``q_mean``, ``q_std``, ``target_q_mean`` and ``critic_grad_norm`` (before clipping).
    """
    target = jax.lax.stop_gradient(target)

    def loss_fn(p: Any) -> tuple[Array, Array]:
        q = critic_net.apply(p, batch.obs, batch.action)  # (num_critics, B)
        return jnp.mean((q - target[None]) ** 2), q

    step = gradient_step(loss_fn, optimizer, params, opt_state, has_aux=True)
    metrics = {
        "critic_loss": step.loss,
        "q_mean": jnp.mean(step.aux),
        "q_std": jnp.std(step.aux),
        "target_q_mean": jnp.mean(target),
        "critic_grad_norm": step.grad_norm,
    }
    return step.params, step.opt_state, metrics
