"""Neural networks for generative policies and critics (flax.linen).

Method note §6 fixes the actor: ``concat(s, u_t, emb(t), emb(lam)) -> Dense -> GELU ->
residual blocks [h + GELU(Dense h)] -> Dense(d)``, and the critic: an ensemble of two
2x256 ReLU Q-networks.

Initialisation (``kernel_init``): ``"lecun"`` (flax's LeCun normal; VelocityNet's first-layer
parts with variance ``1 / (n_parts * fan_in_part)``) or ``"orthogonal"``: every kernel
orthogonal with gain sqrt 2 and zero biases, as in the authors' code (their ``default_init``);
there VelocityNet's first layer is drawn as ONE orthogonal matrix over the concatenated input
``[cond; x; emb(t); emb(lam)]`` and split into its parts (:meth:`VelocityNet.init`).

Embeddings (``embedding``, :data:`EMBEDDINGS`): ``"cos-sin-1e4"`` (``[cos, sin]``, frequencies
``10000^(-k / half)``), ``"sin-cos-1e3"`` (``[sin, cos]``, frequencies
``1000^(-k / (half - 1))``, the authors' ``sinusoidal_embedding``) or ``"sin-cos-1e4"``
(frequencies ``10000^(-k / (half - 1))``, the step embedding of the authors' QVPO net,
:class:`StepDenoiserNet`).

The actor's first Dense layer is written as a *sum* of one Dense product per input group,
``W [cond; x; e_t; e_lam] + b = W_x x + b + W_c cond + W_t e_t + W_lam e_lam``, which is the
same function class as one Dense on the concatenation. Method note §7 explains why: the
sinusoidal embeddings of ``t`` and ``lam`` are shared by every row of one Euler step, so when
they are passed as scalars their products are computed once (shape ``(hidden,)``) and
broadcast; and the state product ``W_c cond`` (see :meth:`VelocityNet.embed_cond`) can be
computed once per state and reused for every particle and every integration step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

__all__ = [
    "ACTIVATIONS",
    "EMBEDDINGS",
    "KERNEL_INITS",
    "MLP",
    "Critic",
    "DenoiserNet",
    "ResidualMLP",
    "StepDenoiserNet",
    "VelocityNet",
    "kernel_initializer",
    "sinusoidal_embedding",
]

#: Named embedding styles: keyword arguments of :func:`sinusoidal_embedding`.
EMBEDDINGS: dict[str, dict[str, Any]] = {
    "cos-sin-1e4": {"max_period": 10000.0, "sin_first": False, "endpoint": False},
    "sin-cos-1e3": {"max_period": 1000.0, "sin_first": True, "endpoint": True},
    "sin-cos-1e4": {"max_period": 10000.0, "sin_first": True, "endpoint": True},
}
#: Hidden activations of the critic MLPs (``Critic.activation``): ReLU, or mish
#: x tanh(softplus x) (the authors' QVPO critics).
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"relu": nn.relu, "mish": jax.nn.mish}
#: Kernel initialisations (module docstring).
KERNEL_INITS: tuple[str, ...] = ("lecun", "orthogonal")
ORTHOGONAL_GAIN = math.sqrt(2.0)


def kernel_initializer(name: str) -> Callable[..., Array]:
    """The Dense kernel initializer called ``name`` (one of :data:`KERNEL_INITS`)."""
    if name == "lecun":
        return nn.initializers.lecun_normal()
    if name == "orthogonal":
        return nn.initializers.orthogonal(ORTHOGONAL_GAIN)
    raise ValueError(f"unknown kernel_init {name!r}; expected one of {KERNEL_INITS}")


def _check_choice(owner: str, field: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{owner} needs {field} in {tuple(choices)}, got {field}={value!r}")


def sinusoidal_embedding(
    x: ArrayLike,
    dim: int = 128,
    max_period: float = 10000.0,
    sin_first: bool = False,
    endpoint: bool = False,
) -> Array:
    """Sinusoidal features ``[cos(x f_k), sin(x f_k)]`` with ``f_k = max_period^(-k / half)``.

    ``x`` has any shape ``S``; the result has shape ``S + (dim,)``. Frequencies run
    geometrically from 1 down to ``1 / max_period`` (reached at ``k = half - 1`` when
    ``endpoint``, i.e. ``f_k = max_period^(-k / (half - 1))``); ``sin_first`` puts the sines
    first. For odd ``dim`` a zero column is appended. Used for ``t`` and ``lam`` (method
    note §6); :data:`EMBEDDINGS` names the two styles in use.
    """
    if dim < 2 or (endpoint and dim < 4):
        raise ValueError(f"sinusoidal_embedding needs dim >= {4 if endpoint else 2}, got dim={dim}")
    if max_period <= 0:
        raise ValueError(f"sinusoidal_embedding needs max_period > 0, got {max_period}")
    x = jnp.asarray(x, dtype=jnp.result_type(float))
    half = dim // 2
    steps = half - 1 if endpoint else half
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=x.dtype) / steps)
    args = x[..., None] * freqs
    parts = [jnp.sin(args), jnp.cos(args)] if sin_first else [jnp.cos(args), jnp.sin(args)]
    emb = jnp.concatenate(parts, axis=-1)
    if dim % 2:
        emb = jnp.concatenate([emb, jnp.zeros_like(emb[..., :1])], axis=-1)
    return emb


class VelocityNet(nn.Module):
    """Conditional vector field ``f(t, x_t, cond, lam)`` (method note §6).

    The output is interpreted by the caller: a velocity for flow policies, or an
    eps-prediction E[x0 | x_t] / x1-prediction for diffusion policies (method note §2: all are
    affine maps of one posterior mean). :data:`DenoiserNet` is this same class under the
    name used for the eps interpretation.

    Architecture: ``h = GELU(W_x x_t + b + W_c cond + W_t emb(t) + W_lam emb(lam))`` (one
    Dense on the concatenation, written as a sum; see the module docstring), then
    ``num_blocks`` residual blocks ``h <- h + GELU(Dense_hidden(h))``, then ``Dense(out_dim)``.
    With ``kernel_init="lecun"`` each first-layer part is initialised with variance
    ``1 / (n_parts * fan_in_part)`` so that the summed pre-activation has the variance of a
    LeCun-initialised single Dense layer; with ``"orthogonal"`` every kernel is orthogonal
    (gain sqrt 2) and :meth:`init` draws the first layer as one orthogonal matrix over the
    concatenated input, rows ``[cond; x; emb(t); emb(lam)]``, then splits it into the parts
    (the authors' single Dense on the concatenation). ``embedding`` names the sinusoidal
    style of ``t`` and ``lam`` (:data:`EMBEDDINGS`).

    Call ``apply(params, t, x_t, cond, lam)`` or with ``cond_features=`` the output of
    :meth:`embed_cond` (shape ``(..., hidden)``) instead of ``cond``:

    - ``t``: scalar (shared by all rows; the embedding product is computed once) or an array
      broadcastable to ``x_t.shape[:-1]`` (per-row times).
    - ``x_t``: ``(..., D)``.
    - ``cond``: ``(..., C)`` whose leading dims broadcast against ``x_t``'s, or ``None``.
    - ``lam``: like ``t``; required iff ``temp_embed_dim > 0``.

    The output has shape ``broadcast(leading dims of all inputs) + (out_dim,)``. Create the
    parameters with ``init(key, t, x_t, cond, lam)`` (pass ``cond=None`` for an
    unconditional net, ``lam=None`` when ``temp_embed_dim == 0``).
    """

    out_dim: int
    hidden: int = 256
    num_blocks: int = 2
    time_embed_dim: int = 128
    temp_embed_dim: int = 128
    kernel_init: str = "lecun"
    embedding: str = "cos-sin-1e4"

    def setup(self) -> None:
        for name, value, low in (
            ("out_dim", self.out_dim, 1),
            ("hidden", self.hidden, 1),
            ("num_blocks", self.num_blocks, 0),
            ("time_embed_dim", self.time_embed_dim, 2),
        ):
            if value < low:
                raise ValueError(f"VelocityNet needs {name} >= {low}, got {name}={value}")
        if self.temp_embed_dim != 0 and self.temp_embed_dim < 2:
            raise ValueError(
                f"VelocityNet needs temp_embed_dim == 0 (disabled) or >= 2, "
                f"got temp_embed_dim={self.temp_embed_dim}"
            )
        _check_choice("VelocityNet", "kernel_init", self.kernel_init, KERNEL_INITS)
        _check_choice("VelocityNet", "embedding", self.embedding, tuple(EMBEDDINGS))
        n_parts = 3 + (self.temp_embed_dim > 0)  # x, cond, emb(t)[, emb(lam)]
        if self.kernel_init == "lecun":
            part_init = nn.initializers.variance_scaling(
                1.0 / n_parts, "fan_in", "truncated_normal"
            )
        else:  # each part orthogonal here; init() redraws them as one orthogonal matrix
            part_init = kernel_initializer(self.kernel_init)
        dense_init = kernel_initializer(self.kernel_init)
        self.x_proj = nn.Dense(self.hidden, use_bias=True, kernel_init=part_init)
        self.cond_proj = nn.Dense(self.hidden, use_bias=False, kernel_init=part_init)
        self.t_proj = nn.Dense(self.hidden, use_bias=False, kernel_init=part_init)
        if self.temp_embed_dim > 0:
            self.lam_proj = nn.Dense(self.hidden, use_bias=False, kernel_init=part_init)
        self.blocks = [
            nn.Dense(self.hidden, kernel_init=dense_init) for _ in range(self.num_blocks)
        ]
        self.out = nn.Dense(self.out_dim, kernel_init=dense_init)

    @nn.nowrap
    def init(self, rngs: Any, *args: Any, **kwargs: Any) -> Any:
        """``flax`` ``init``; with ``kernel_init="orthogonal"`` the first-layer parts are then
        redrawn as the row blocks of ONE orthogonal (gain sqrt 2) matrix over the
        concatenated input ``[cond; x; emb(t); emb(lam)]`` (class docstring)."""
        variables = super().init(rngs, *args, **kwargs)
        if self.kernel_init != "orthogonal":
            return variables
        key = rngs if not isinstance(rngs, dict) else rngs["params"]
        params = dict(variables["params"])
        names = [n for n in ("cond_proj", "x_proj", "t_proj", "lam_proj") if n in params]
        rows = [params[n]["kernel"].shape[0] for n in names]
        kernel = kernel_initializer("orthogonal")(
            jax.random.fold_in(key, 1), (sum(rows), self.hidden), params[names[0]]["kernel"].dtype
        )
        start = 0
        for name, n_rows in zip(names, rows, strict=True):
            params[name] = {**params[name], "kernel": kernel[start : start + n_rows]}
            start += n_rows
        return {**variables, "params": params}

    def embed_cond(self, cond: ArrayLike) -> Array:
        """The first-layer product ``W_c cond``, shape ``cond.shape[:-1] + (hidden,)``.

        Compute once per state and pass as ``cond_features=`` to every call (all particles,
        all integration steps), broadcasting it (e.g. ``feats[:, None, :]`` for particles).
        """
        return self.cond_proj(jnp.asarray(cond))

    def __call__(
        self,
        t: ArrayLike,
        x_t: ArrayLike,
        cond: ArrayLike | None = None,
        lam: ArrayLike | None = None,
        cond_features: ArrayLike | None = None,
    ) -> Array:
        x_t = jnp.asarray(x_t)
        if x_t.ndim < 1:
            raise ValueError(f"x_t must have a feature axis, got shape {x_t.shape}")
        t = jnp.asarray(t, dtype=x_t.dtype)
        lead = x_t.shape[:-1]
        if cond is not None and cond_features is not None:
            raise ValueError("pass either cond or cond_features, not both")
        if self.temp_embed_dim > 0 and lam is None:
            raise ValueError(
                f"lam is required when temp_embed_dim > 0 (temp_embed_dim={self.temp_embed_dim})"
            )
        if self.temp_embed_dim == 0 and lam is not None:
            raise ValueError("lam was given but temp_embed_dim == 0 disables temperature input")

        if self.temp_embed_dim > 0:
            lam = jnp.asarray(lam, dtype=x_t.dtype)
        if cond_features is None and cond is not None:
            cond_features = self.embed_cond(cond)
        if cond_features is not None:
            cond_features = jnp.asarray(cond_features)
            if cond_features.shape[-1:] != (self.hidden,):
                raise ValueError(
                    f"cond_features must end in hidden={self.hidden}, got {cond_features.shape}"
                )
        elif not self.is_initializing() and "cond_proj" in self.variables.get("params", {}):
            raise ValueError(
                "this VelocityNet was initialised with cond; pass cond or cond_features"
            )
        shapes = {"x_t": lead, "t": t.shape}
        if lam is not None:
            shapes["lam"] = lam.shape
        if cond_features is not None:
            shapes["cond"] = cond_features.shape[:-1]
        try:
            jnp.broadcast_shapes(*shapes.values())
        except ValueError as err:
            described = ", ".join(f"{k} {v}" for k, v in shapes.items())
            raise ValueError(f"leading shapes do not broadcast: {described}") from err

        # Each term keeps its own leading shape; scalar t / lam give (hidden,) and broadcast,
        # so their products are computed once, not once per row (method note §7).
        style = EMBEDDINGS[self.embedding]
        h = self.x_proj(x_t) + self.t_proj(sinusoidal_embedding(t, self.time_embed_dim, **style))
        if lam is not None:
            h = h + self.lam_proj(sinusoidal_embedding(lam, self.temp_embed_dim, **style))
        if cond_features is not None:
            h = h + cond_features

        h = nn.gelu(h)
        for block in self.blocks:
            h = h + nn.gelu(block(h))
        return self.out(h)


DenoiserNet = VelocityNet
"""Alias of :class:`VelocityNet` for diffusion policies: same network, output read as the
eps-prediction E[x0 | x_t] (method note §2)."""


class MLP(nn.Module):
    """Plain multilayer perceptron: ``Dense -> activation`` per hidden width, then ``Dense``;
    kernels initialised by ``kernel_init`` (:data:`KERNEL_INITS`), biases zero."""

    out_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: Callable[[Array], Array] = nn.relu
    kernel_init: str = "lecun"

    @nn.compact
    def __call__(self, x: ArrayLike) -> Array:
        init = kernel_initializer(self.kernel_init)
        h = jnp.asarray(x)
        for width in self.hidden:
            h = self.activation(nn.Dense(width, kernel_init=init)(h))
        return nn.Dense(self.out_dim, kernel_init=init)(h)


class ResidualMLP(nn.Module):
    """``Dense(hidden) -> GELU -> num_blocks x [h + GELU(Dense_hidden h)] -> Dense(out_dim)``:
    VelocityNet's trunk without the time and temperature inputs (the authors' SAC actor,
    ``ActorMLP``); kernels by ``kernel_init``, biases zero."""

    out_dim: int
    hidden: int = 256
    num_blocks: int = 2
    kernel_init: str = "orthogonal"

    @nn.compact
    def __call__(self, x: ArrayLike) -> Array:
        init = kernel_initializer(self.kernel_init)
        h = nn.gelu(nn.Dense(self.hidden, kernel_init=init)(jnp.asarray(x)))
        for _ in range(self.num_blocks):
            h = h + nn.gelu(nn.Dense(self.hidden, kernel_init=init)(h))
        return nn.Dense(self.out_dim, kernel_init=init)(h)


class StepDenoiserNet(nn.Module):
    """The authors' QVPO eps network (``QVPOPolicyNet``): the integer diffusion step k is
    embedded (``"sin-cos-1e4"``, ``time_dim`` features) and passed through
    ``Dense(hidden) -> mish -> Dense(time_dim)``; then ``concat(x_k, e_k, cond) ->
    num_layers x [Dense(hidden) -> mish] -> Dense(out_dim)``. No residual blocks and no
    temperature input; kernels by ``kernel_init``, biases zero.

    ``apply(params, t, x_t, cond)``: ``t`` scalar or broadcastable to ``x_t.shape[:-1]`` (the
    step as a float), ``x_t`` (..., D), ``cond`` (..., C) broadcasting against ``x_t``.
    """

    out_dim: int
    hidden: int = 256
    num_layers: int = 2
    time_dim: int = 128
    kernel_init: str = "orthogonal"

    @nn.compact
    def __call__(self, t: ArrayLike, x_t: ArrayLike, cond: ArrayLike) -> Array:
        if self.num_layers < 1 or self.time_dim < 4 or self.time_dim % 2:
            raise ValueError(
                "StepDenoiserNet needs num_layers >= 1 and an even time_dim >= 4, got "
                f"num_layers={self.num_layers}, time_dim={self.time_dim}"
            )
        init = kernel_initializer(self.kernel_init)
        x_t, cond = jnp.asarray(x_t), jnp.asarray(cond)
        lead = jnp.broadcast_shapes(x_t.shape[:-1], cond.shape[:-1])
        t = jnp.broadcast_to(jnp.asarray(t, x_t.dtype), lead)
        e = sinusoidal_embedding(t, self.time_dim, **EMBEDDINGS["sin-cos-1e4"])
        e = nn.Dense(self.hidden, kernel_init=init)(e)
        e = nn.Dense(self.time_dim, kernel_init=init)(jax.nn.mish(e))
        h = jnp.concatenate(
            [
                jnp.broadcast_to(x_t, (*lead, x_t.shape[-1])),
                e,
                jnp.broadcast_to(cond, (*lead, cond.shape[-1])).astype(x_t.dtype),
            ],
            axis=-1,
        )
        for _ in range(self.num_layers):
            h = jax.nn.mish(nn.Dense(self.hidden, kernel_init=init)(h))
        return nn.Dense(self.out_dim, kernel_init=init)(h)


class Critic(nn.Module):
    """Ensemble of ``num_critics`` independent Q-networks (method note §6: 2 x (2x256 ReLU)),
    kernels initialised by ``kernel_init``, hidden activation ``activation``.

    ``__call__(obs, action)`` concatenates ``obs (..., S)`` and ``action (..., A)`` (leading
    dims broadcast) and returns Q-values of shape ``(num_critics, ...)``. Parameters carry a
    leading ``num_critics`` axis (``nn.vmap`` over params).
    """

    num_critics: int = 2
    hidden: Sequence[int] = (256, 256)
    kernel_init: str = "lecun"
    #: Hidden activation, a name in :data:`ACTIVATIONS`.
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs: ArrayLike, action: ArrayLike) -> Array:
        _check_choice("Critic", "activation", self.activation, tuple(ACTIVATIONS))
        if self.num_critics < 1:
            raise ValueError(f"Critic needs num_critics >= 1, got {self.num_critics}")
        obs, action = jnp.asarray(obs), jnp.asarray(action)
        lead = jnp.broadcast_shapes(obs.shape[:-1], action.shape[:-1])
        x = jnp.concatenate(
            [
                jnp.broadcast_to(obs, (*lead, obs.shape[-1])),
                jnp.broadcast_to(action, (*lead, action.shape[-1])).astype(obs.dtype),
            ],
            axis=-1,
        )
        ensemble = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_critics,
        )
        mlp = ensemble(
            out_dim=1,
            hidden=tuple(self.hidden),
            activation=ACTIVATIONS[self.activation],
            kernel_init=self.kernel_init,
            name="ensemble",
        )
        return mlp(x)[..., 0]
