"""Pieces every actor-critic agent shares: optimisers and the twin-critic TD step.

One copy here instead of one per agent. All functions are pure and jittable.
"""

from __future__ import annotations

from typing import Any

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

    (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {
        "critic_loss": loss,
        "q_mean": jnp.mean(q),
        "q_std": jnp.std(q),
        "target_q_mean": jnp.mean(target),
        "critic_grad_norm": optax.tree.norm(grads),
    }
    return params, opt_state, metrics
