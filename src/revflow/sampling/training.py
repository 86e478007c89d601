"""Training a sampler of an unnormalised density from the density alone (method note §6).

The model only sees ``log p1`` and its gradient, as an RL actor sees Q/lam. Each update (one
jitted step, method note §6 steps 3-5 without the critic):

1. endpoints x1 from the proposal: ``"model"`` = the model's own samples (as the RL agent
   does), or ``"broad"`` = a fixed N(0, broad_std^2 I);
2. t ~ U[t_min, t_max] per row, x0 ~ N(0, I), x_t = alpha_t x1 + beta_t x0 (method note §2);
3. mu1 = E[x1 | x_t] estimated with K reverse samples by
   :func:`revflow.estimators.estimate_posterior_mean_batch` under the method's control variate
   (method note §4), drawn from the reverse kernel alone (``reference="none"``) or from the
   kernel times an adaptive Gaussian reference of the target, updated first
   (``reference="adaptive"``: :mod:`revflow.sampling.reference`; the default ``"auto"``:
   adaptive for the rfm family, none for qne and idem); for a method with
   ``max_score_norm`` the score (alpha_t mu1 - x_t) / beta_t^2 that mu1 implies is clipped to
   that norm (iDEM; :func:`clipped_target`);
4. an Adam step (gradient-norm clipped, warm-up + cosine learning rate) on
   ||net(t, x_t) - target(mu1)||^2, where the target is the velocity (flow) or
   eps = E[x0 | x_t] (diffusion) of mu1 (method note §2). An update whose loss or gradient
   is not finite is skipped (the parameters and optimiser state stay as they were) and
   counted, so numerical trouble is reported instead of trained on.

Everything is in the model's coordinates y = x / ``cfg.scale`` (see :class:`TrainConfig`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from revflow.estimators import estimate_posterior_mean_batch
from revflow.losses import regression_loss, regression_target
from revflow.networks import DenoiserNet, VelocityNet
from revflow.paths import VE, Linear, Path, VPCosine, convert, x1_to_eps
from revflow.samplers import ddim_sample, ddpm_sample, flow_ode_sample
from revflow.sampling.methods import (
    IDEM_SIGMA_MAX,
    IDEM_SIGMA_MIN,
    MethodSpec,
    TrainConfig,
    resolve_reference,
)
from revflow.sampling.reference import adapt_reference

Array = jax.Array
LogDensity = Callable[[Array], Array]


def make_path(method: MethodSpec) -> Path:
    if method.path == "linear":
        return Linear()
    if method.path == "vp-cosine":
        return VPCosine()
    if method.path == "ve-geometric":
        return VE(sigma_min=IDEM_SIGMA_MIN, sigma_max=IDEM_SIGMA_MAX)
    raise ValueError(f"unknown path {method.path!r} of method {method.name!r}")


@dataclasses.dataclass(frozen=True)
class Model:
    """A generative model of points in R^dim: ``sample(params, key, n) -> (n, dim)``, in the
    model's coordinates (multiply by ``cfg.scale`` for the target's)."""

    net: Any
    path: Path
    parameterisation: str  # "velocity" (flow) or "eps" (diffusion)
    sample: Callable[[Any, Array, int], Array]
    dim: int

    def init(self, key: Array) -> Any:
        return self.net.init(key, jnp.zeros((4,)), jnp.zeros((4, self.dim)))


def make_model(method: MethodSpec, cfg: TrainConfig, dim: int) -> Model:
    """Flow: VelocityNet, ``flow_steps`` Euler steps from t_min to t_max (the training range;
    the reference actor integrates 0.01 -> 0.99, method note §6). Diffusion: DenoiserNet
    (eps), ``diffusion_steps`` DDPM (or DDIM) steps from N(0, beta_{t_start}^2 I)."""
    kwargs = dict(
        out_dim=dim,
        hidden=cfg.hidden,
        num_blocks=cfg.num_blocks,
        time_embed_dim=cfg.time_embed_dim,
        temp_embed_dim=0,
    )
    path = make_path(method)
    if method.kind == "flow":
        net = VelocityNet(**kwargs)

        def sample(params: Any, key: Array, n: int) -> Array:
            x0 = jax.random.normal(key, (n, dim))
            velocity = lambda t, x: net.apply(params, cfg.time_scale * t, x)
            return flow_ode_sample(velocity, x0, cfg.flow_steps, cfg.t_min, cfg.t_max)

        return Model(net, path, "velocity", sample, dim)

    net = DenoiserNet(**kwargs)

    def sample(params: Any, key: Array, n: int) -> Array:
        k_init, k_steps = jax.random.split(key)
        t0 = cfg.diffusion_t_start
        x_init = path.beta(t0) * jax.random.normal(k_init, (n, dim))

        def eps_fn(t: Array, x: Array) -> Array:
            eps = net.apply(params, cfg.time_scale * t, x)
            if cfg.diffusion_clip is None:
                return eps
            a, b = path.alpha(t), path.beta(t)
            x1 = jnp.clip((x - b * eps) / a, -cfg.diffusion_clip, cfg.diffusion_clip)
            return (x - a * x1) / b

        if cfg.diffusion_sampler == "ddim":
            return ddim_sample(eps_fn, x_init, path, cfg.diffusion_steps, t_start=t0)
        return ddpm_sample(eps_fn, k_steps, x_init, path, cfg.diffusion_steps, t_start=t0)

    return Model(net, path, "eps", sample, dim)


@struct.dataclass
class TrainState:
    params: Any
    opt_state: Any
    step: Array
    ema_params: Any
    skipped: Array  # updates skipped for a non-finite loss or gradient
    ref_mean: Array  # the adaptive reference N(ref_mean, ref_std^2) (sampling.reference)
    ref_std: Array


def learning_rate(cfg: TrainConfig) -> optax.Schedule:
    """Linear warm-up over ``warmup`` updates, then cosine decay to ``lr * lr_final``."""
    if cfg.warmup == 0 and cfg.lr_final == 1.0:
        return optax.constant_schedule(cfg.lr)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if cfg.warmup else cfg.lr,
        peak_value=cfg.lr,
        warmup_steps=cfg.warmup,
        decay_steps=cfg.steps,
        end_value=cfg.lr * cfg.lr_final,
    )


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adam(learning_rate(cfg)))


def init_state(key: Array, model: Model, cfg: TrainConfig) -> TrainState:
    params = model.init(key)
    zero = jnp.zeros((), jnp.int32)
    ref_mean = jnp.zeros((model.dim,))
    ref_std = jnp.full((model.dim,), cfg.broad_std)
    return TrainState(
        params, make_optimizer(cfg).init(params), zero, params, zero, ref_mean, ref_std
    )


def clipped_target(
    path: Path, t: Array, x_t: Array, mu1: Array, parameterisation: str, max_norm: float
) -> Array:
    """The regression target of mu1 with its implied score clipped to norm <= ``max_norm`` per
    row (iDEM's score clipping: the score is rescaled, its direction kept).

    The clip is applied to eps = (x_t - alpha_t mu1) / beta_t = -beta_t * score, as
    |eps| <= max_norm * beta_t, so that no quantity of size beta_t^2 (1e-10 at the end of
    iDEM's VE path) meets float32 round-off; an eps target is returned as it is, any other
    parameterisation converted from it."""
    tt = t[:, None]
    beta = path.beta(tt)
    eps = x1_to_eps(path, tt, x_t, mu1)
    norm = jnp.sqrt(jnp.sum(eps * eps, axis=-1, keepdims=True))
    eps = eps * jnp.minimum(1.0, max_norm * beta / (norm + 1e-30))
    target = (
        eps if parameterisation == "eps" else convert(path, tt, x_t, eps, "eps", parameterisation)
    )
    return jax.lax.stop_gradient(target)


def noisy_points(
    key: Array, model: Model, params: Any, cfg: TrainConfig, x1: Array | None = None
) -> tuple[Array, Array]:
    """(t, x_t) for one batch: x1 from the proposal (or the given x1), x_t = alpha_t x1 +
    beta_t x0."""
    k_x1, k_t, k_x0 = jax.random.split(key, 3)
    if x1 is not None:
        pass
    elif cfg.proposal == "model":
        x1 = jax.lax.stop_gradient(model.sample(params, k_x1, cfg.batch))
    else:
        x1 = cfg.broad_std * jax.random.normal(k_x1, (cfg.batch, model.dim))
    t = jax.random.uniform(k_t, (cfg.batch,), minval=cfg.t_min, maxval=cfg.t_max)
    x0 = jax.random.normal(k_x0, (cfg.batch, model.dim))
    a, b = model.path.alpha(t)[:, None], model.path.beta(t)[:, None]
    return t, a * x1 + b * x0


def update_step(
    state: TrainState,
    key: Array,
    model: Model,
    log_density: LogDensity,
    method: MethodSpec,
    cfg: TrainConfig,
    exact_pool: Array | None = None,
) -> tuple[TrainState, dict[str, Array]]:
    """One update (module docstring, steps 1-4). Pure; jit it with static model/density.
    ``log_density`` is in the model's coordinates. An ``oracle`` method regresses on exact
    samples x1 drawn uniformly from ``exact_pool`` instead."""
    k_pts, k_est = jax.random.split(key)
    k_ref = jax.random.fold_in(key, 1)  # a separate stream: runs without it stay as before
    ref_mean, ref_std, ref_ess = state.ref_mean, state.ref_std, jnp.asarray(0.0)
    if method.oracle:
        if exact_pool is None:
            raise ValueError(f"method {method.name!r} needs exact samples of the target")
        x1 = exact_pool[jax.random.randint(k_est, (cfg.batch,), 0, exact_pool.shape[0])]
        t, x_t = noisy_points(k_pts, model, state.params, cfg, x1=x1)
        mu1, ess = x1, jnp.asarray(float(cfg.num_reverse_samples))
    else:
        reference = None
        if resolve_reference(cfg, method) == "adaptive":
            ref_mean, ref_std, ref_ess = adapt_reference(
                k_ref,
                log_density,
                ref_mean,
                ref_std,
                cfg.reference_samples,
                cfg.reference_widen,
                cfg.reference_decay,
            )
            reference = (ref_mean, ref_std)
        t, x_t = noisy_points(k_pts, model, state.params, cfg)
        est = estimate_posterior_mean_batch(
            k_est,
            log_density,
            x_t,
            t,
            model.path,
            cfg.num_reverse_samples,
            method.control_variate,
            reference=reference,
        )
        mu1, ess = est.x1, jnp.mean(est.ess)
    if method.max_score_norm is None:
        target = regression_target(model.path, t, x_t, mu1, model.parameterisation)
    else:
        target = clipped_target(
            model.path, t, x_t, mu1, model.parameterisation, method.max_score_norm
        )

    def loss_fn(params: Any) -> Array:
        return regression_loss(model.net.apply(params, cfg.time_scale * t, x_t), target)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    finite = jnp.isfinite(loss) & jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
    )
    grads = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grads)
    updates, opt_state = make_optimizer(cfg).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
    ema_params = optax.incremental_update(params, state.ema_params, 1.0 - cfg.ema)
    new_state = TrainState(
        params,
        opt_state,
        state.step + 1,
        ema_params,
        state.skipped + (~finite).astype(jnp.int32),
        ref_mean,
        ref_std,
    )
    return new_state, {"loss": loss, "ess": ess, "reference_ess": ref_ess}


def make_train_chunk(
    model: Model, log_density: LogDensity, method: MethodSpec, cfg: TrainConfig
) -> Callable[..., tuple[TrainState, dict[str, Array]]]:
    """Jitted ``(state, key, n, exact_pool) -> (state, per-step metrics)`` running n updates
    in a scan (``exact_pool``: exact samples for an oracle method, else None)."""

    @partial(jax.jit, static_argnums=2)
    def run(
        state: TrainState, key: Array, n: int, exact_pool: Array | None = None
    ) -> tuple[TrainState, dict[str, Array]]:
        def body(s: TrainState, k: Array) -> tuple[TrainState, dict[str, Array]]:
            return update_step(s, k, model, log_density, method, cfg, exact_pool)

        return jax.lax.scan(body, state, jax.random.split(key, n))

    return run


def _progress(disable: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3g}"),
        TimeElapsedColumn(),
        disable=disable,
        transient=True,
    )


@dataclasses.dataclass
class TrainOutput:
    model: Model
    ema_params: Any
    losses: np.ndarray  # per-update loss (non-finite where the update was skipped)
    skipped_updates: int
    train_time: float  # seconds, compilation included


def train_model(
    log_density: LogDensity,
    dim: int,
    method: MethodSpec,
    cfg: TrainConfig,
    key: Array,
    exact_pool: Array | None = None,
    progress: bool = True,
    description: str = "",
) -> TrainOutput:
    """Run ``cfg.steps`` updates (the thin loop around :func:`make_train_chunk`).

    ``log_density`` and ``exact_pool`` are in the model's coordinates."""
    k_init, k_train = jax.random.split(key)
    model = make_model(method, cfg, dim)
    run = make_train_chunk(model, log_density, method, cfg)
    state = init_state(k_init, model, cfg)
    losses = []
    start = time.perf_counter()
    with _progress(not progress) as bar:
        task = bar.add_task(description or method.name, total=cfg.steps, loss=float("nan"))
        done = 0
        while done < cfg.steps:
            n = min(cfg.chunk, cfg.steps - done)
            k_train, sub = jax.random.split(k_train)
            state, logs = run(state, sub, n, exact_pool)
            chunk_losses = np.asarray(logs["loss"])
            losses.append(chunk_losses)
            done += n
            finite = chunk_losses[np.isfinite(chunk_losses)]
            bar.update(task, completed=done, loss=float(np.mean(finite)) if finite.size else np.nan)
    jax.block_until_ready(state.ema_params)
    return TrainOutput(
        model=model,
        ema_params=state.ema_params,
        losses=np.concatenate(losses),
        skipped_updates=int(state.skipped),
        train_time=time.perf_counter() - start,
    )
