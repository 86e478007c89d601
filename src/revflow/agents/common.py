"""Pieces every actor-critic agent shares: optimisers, one gradient step and the end-of-update
state (Polyak targets, step count).

One copy here instead of one per agent. All functions are pure and jittable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from revflow.agents.base import Array

#: Scopes of critic gradient clipping: one global norm over the whole ensemble, or each
#: member's own norm (the authors' code clips every critic of its ensemble separately).
CLIP_SCOPES: tuple[str, ...] = ("global", "per-critic")


def clip_by_member_norm(max_norm: float) -> optax.GradientTransformation:
    """Clip each ensemble member's gradient to L2 norm ``max_norm`` separately.

    Every leaf carries the ensemble on its leading axis (``networks.Critic`` params); member
    k's norm is taken over its slice of all leaves, and the member is scaled by
    ``max_norm / norm`` when ``norm >= max_norm``."""

    def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del params
        leaves = jax.tree.leaves(updates)
        sq = sum(jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1) for x in leaves)
        norm = jnp.sqrt(sq)
        scale = jnp.where(norm < max_norm, 1.0, max_norm / jnp.maximum(norm, 1e-30))

        def rescale(x: Array) -> Array:
            return x * scale.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)

        return jax.tree.map(rescale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def gradient_clipping(max_grad_norm: float, scope: str = "global") -> optax.GradientTransformation:
    """The clipping transform of :func:`make_optimizer`: identity when ``max_grad_norm`` is 0,
    else one global norm (``"global"``) or one norm per ensemble member (``"per-critic"``)."""
    if scope not in CLIP_SCOPES:
        raise ValueError(f"unknown clip scope {scope!r}; expected one of {CLIP_SCOPES}")
    if max_grad_norm <= 0:
        return optax.identity()
    if scope == "per-critic":
        return clip_by_member_norm(max_grad_norm)
    return optax.clip_by_global_norm(max_grad_norm)


def make_optimizer(
    lr: Any, max_grad_norm: float, scope: str = "global"
) -> optax.GradientTransformation:
    """Adam with optional gradient-norm clipping (method note §6: clip 10), global or per
    ensemble member (:func:`gradient_clipping`)."""
    if max_grad_norm > 0:
        return optax.chain(gradient_clipping(max_grad_norm, scope), optax.adam(lr))
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
