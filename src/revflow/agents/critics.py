"""The critic object: an ensemble of Q-networks with its optimiser, its TD step and the TD
target rule (method note §6: twin critics, Polyak targets, r + discount * value(s')).

Pure functions of the parameters passed in; the agent's state holds the parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from revflow.agents.base import Array, Batch, Metrics
from revflow.agents.common import gradient_step, make_optimizer
from revflow.networks import ACTIVATIONS, Critic

__all__ = ["METRICS", "CriticEnsemble", "critic_td_step", "shared_state_q_values", "td_target"]

#: Metrics of :func:`critic_td_step` (an agent documents its own TD target's
#: ``target_q_mean``).
METRICS: dict[str, str] = {
    "critic_loss": "mean squared TD error, averaged over the critic ensemble",
    "q_mean": "mean online Q(s, a) over batch and ensemble, at the replayed actions",
    "q_std": "standard deviation of online Q(s, a) over batch and ensemble",
    "target_q_mean": "mean TD target",
    "critic_grad_norm": "global L2 norm of the critic gradient (before clipping)",
}


def td_target(batch: Batch, next_value: Array, reward_scale: float = 1.0) -> Array:
    """``reward_scale * r + discount * next_value`` (``next_value`` held constant)."""
    reward = batch.reward if reward_scale == 1.0 else reward_scale * batch.reward
    return reward + batch.discount * jax.lax.stop_gradient(next_value)


def critic_td_step(
    critic_net: Critic,
    optimizer: optax.GradientTransformation,
    params: Any,
    opt_state: Any,
    batch: Batch,
    target: Array,
    per_critic: bool = False,
) -> tuple[Any, Any, Metrics]:
    """One gradient step of every critic in the ensemble on ``(Q_k(s, a) - target)^2``.

    ``target`` (B,) is treated as a constant. The differentiated loss is the squared TD
    error averaged over batch and ensemble, or with ``per_critic`` summed over the ensemble
    (so that critic k's gradient is that of its OWN mean squared error, as in the authors'
    code; pair it with per-critic clipping). Returns the new params, optimiser state and
    metrics ``critic_loss`` (mean squared TD error over batch, averaged over the ensemble),
    ``q_mean``, ``q_std``, ``target_q_mean`` and ``critic_grad_norm`` (before clipping).
    """
    target = jax.lax.stop_gradient(target)

    def loss_fn(p: Any) -> tuple[Array, Array]:
        q = critic_net.apply(p, batch.obs, batch.action)  # (num_critics, B)
        if per_critic:
            return jnp.sum(jnp.mean((q - target[None]) ** 2, axis=-1)), q
        return jnp.mean((q - target[None]) ** 2), q

    step = gradient_step(loss_fn, optimizer, params, opt_state, has_aux=True)
    loss = step.loss / step.aux.shape[0] if per_critic else step.loss
    metrics = {
        "critic_loss": loss,
        "q_mean": jnp.mean(step.aux),
        "q_std": jnp.std(step.aux),
        "target_q_mean": jnp.mean(target),
        "critic_grad_norm": step.grad_norm,
    }
    return step.params, step.opt_state, metrics


@jax.custom_vjp
def _narrow_product(x: Array, w: Array) -> Array:
    """``einsum("...a,eah->e...h", x, w)`` for a narrow ``a`` (the action), written as ``a``
    broadcast products so that XLA fuses it with the layer's other terms and its activation
    instead of materialising it; its gradient (:func:`_narrow_product_bwd`) is two dots."""
    lead = (w.shape[0],) + (1,) * (x.ndim - 1) + (w.shape[-1],)
    out = x[None, ..., 0, None] * w[:, 0].reshape(lead)
    for j in range(1, x.shape[-1]):
        out = out + x[None, ..., j, None] * w[:, j].reshape(lead)
    return out


def _narrow_product_fwd(x: Array, w: Array) -> tuple[Array, tuple[Array, Array]]:
    return _narrow_product(x, w), (x, w)


def _narrow_product_bwd(res: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
    x, w = res  # g has the output's shape (E, *x.shape[:-1], H)
    return jnp.einsum("e...h,eah->...a", g, w), jnp.einsum("e...h,...a->eah", g, x)


_narrow_product.defvjp(_narrow_product_fwd, _narrow_product_bwd)


def shared_state_q_values(
    params: Any, obs: Array, action: Array, activation: str = "relu"
) -> Array:
    """``networks.Critic.apply(params, obs, action)`` with the first layer split by input,
    ``W_1 [s; a] = W_s s + W_a a``: the state product is computed at ``obs``'s own leading
    shape and broadcast, so K reverse samples or N particles of one state share it (and a
    gradient in the action flows through ``W_a`` alone). The same function up to float
    reassociation of the first layer's sum; shapes as ``Critic``: ``(num_critics, ...)``.

    Reads the parameters of ``Critic``'s MLP ensemble (layers ``Dense_0 .. Dense_L``,
    kernels with a leading ensemble axis) whose hidden activation is ``activation`` (a name
    in ``networks.ACTIVATIONS``); any other structure raises a ``ValueError``."""
    layers = params["params"]["ensemble"]
    names = [f"Dense_{i}" for i in range(len(layers))]
    if set(layers) != set(names) or any(set(layers[n]) != {"kernel", "bias"} for n in names):
        raise ValueError(f"not a Critic MLP ensemble: layers {sorted(layers)}")
    obs, action = jnp.asarray(obs), jnp.asarray(action).astype(obs.dtype)
    rank = max(obs.ndim, action.ndim)
    obs = obs.reshape((1,) * (rank - obs.ndim) + obs.shape)
    action = action.reshape((1,) * (rank - action.ndim) + action.shape)
    first = layers[names[0]]
    w_s, w_a = first["kernel"][:, : obs.shape[-1]], first["kernel"][:, obs.shape[-1] :]
    if w_a.shape[1] != action.shape[-1]:
        raise ValueError(
            f"obs {obs.shape[-1]} + action {action.shape[-1]} inputs, the critic has "
            f"{first['kernel'].shape[1]}"
        )

    def bias(b: Array) -> Array:
        return b.reshape((b.shape[0],) + (1,) * (rank - 1) + b.shape[1:])

    state = jnp.einsum("...s,esh->e...h", obs, w_s)
    h = _narrow_product(action, w_a) + bias(first["bias"]) + state
    act = ACTIVATIONS[activation]
    for name in names[1:]:
        h = act(h)
        h = jnp.einsum("e...h,ehk->e...k", h, layers[name]["kernel"]) + bias(layers[name]["bias"])
    return h[..., 0]


@dataclasses.dataclass(frozen=True)
class CriticEnsemble:
    """``num_critics`` MLP Q-networks (``networks.Critic``) trained on one TD target, Adam
    with gradient clipping over the whole ensemble (``clip="global"``) or per member
    (``"per-critic"``: each member's own loss gradient, clipped by its own norm).
    ``shared_state_product``: :meth:`q_min` evaluates :func:`shared_state_q_values` (the
    state's first-layer product once per state, shared by the actions evaluated at it)."""

    net: Critic
    optimizer: optax.GradientTransformation
    per_critic: bool
    shared_state_product: bool = False

    @classmethod
    def make(
        cls,
        num_critics: int,
        hidden: tuple[int, ...],
        kernel_init: str,
        lr: float,
        max_grad_norm: float,
        clip: str = "global",
        activation: str = "relu",
        shared_state_product: bool = False,
    ) -> CriticEnsemble:
        """``clip`` selects both the loss form (per-critic sum or ensemble mean) and the
        clipping scope of the optimiser; ``activation`` the members' hidden activation."""
        net = Critic(
            num_critics=num_critics,
            hidden=tuple(hidden),
            kernel_init=kernel_init,
            activation=activation,
        )
        optimizer = make_optimizer(lr, max_grad_norm, clip)
        return cls(net, optimizer, clip == "per-critic", shared_state_product)

    @classmethod
    def from_config(cls, config: Any) -> CriticEnsemble:
        """The ensemble an agent config describes (its ``CriticFields`` and
        ``OptimiserFields``, and ``network_init``)."""
        c = config
        return cls.make(
            c.num_critics,
            c.critic_hidden,
            c.network_init,
            c.critic_lr,
            c.max_grad_norm,
            c.critic_clip,
            c.critic_activation,
            shared_state_product=c.critic_shared_state,
        )

    def init(self, key: Array, obs_dim: int, act_dim: int) -> Any:
        obs = jnp.zeros((1, obs_dim), jnp.float32)
        act = jnp.zeros((1, act_dim), jnp.float32)
        return self.net.init(key, obs, act)

    def q_min(self, params: Any, obs: Array, action: Array) -> Array:
        """min_k Q_k(s, a); leading dims of obs and action broadcast."""
        if self.shared_state_product:
            return jnp.min(shared_state_q_values(params, obs, action, self.net.activation), axis=0)
        return jnp.min(self.net.apply(params, obs, action), axis=0)

    def td_step(
        self, params: Any, opt_state: Any, batch: Batch, target: Array
    ) -> tuple[Any, Any, Metrics]:
        """:func:`critic_td_step` of this ensemble."""
        return critic_td_step(
            self.net, self.optimizer, params, opt_state, batch, target, self.per_critic
        )
