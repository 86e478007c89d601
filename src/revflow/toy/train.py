"""Train flow and diffusion samplers of a 2-D unnormalised density from its energy alone.

The toy of method note §6 (last item): the model only sees ``log p1`` (and its gradient), like
an RL actor sees Q/lam. Each update (one jitted step, method note §6 steps 3-5 without the
critic):

1. endpoints x1 from the proposal: ``"model"`` = the model's own samples (as the RL agent
   does), or ``"broad"`` = a fixed N(0, broad_std^2 I) covering the targets;
2. t ~ U[t_min, t_max] per row, x0 ~ N(0, I), x_t = alpha_t x1 + beta_t x0 (method note §2);
3. mu1 = E[x1 | x_t] estimated with K reverse samples by
   :func:`revflow.estimators.estimate_posterior_mean_batch` under the method's control variate
   (method note §4);
4. an Adam step (gradient-norm clipped) on ||net(t, x_t) - target(mu1)||^2, where the target is
   the velocity (flow) or eps = E[x0 | x_t] (diffusion) of mu1 (method note §2).

All methods share one :class:`TrainConfig`: the same posterior-estimation budget (K), number
of updates, batch, optimiser (Adam 3e-4, gradient-norm clip 10) and network size, and all are
evaluated with an exponential moving average (decay 0.99) of their parameters. Methods
(``METHODS``):

==================  ==========  ================  ==============================  ===========
name                model       path              control variate (method note §4)  sampler
==================  ==========  ================  ==============================  ===========
``rfm``             flow        linear            ``"optimal"`` (per-dim c*)        20 Euler
``rfm-isotropic``   flow        linear            ``"optimal-isotropic"``           20 Euler
``rfm-none``        flow        linear            ``"none"`` (noise expectation)    20 Euler
``rfm-gradient``    flow        linear            ``"gradient"`` (Tweedie)          20 Euler
``qne``             diffusion   VP cosine, eps    ``"none"`` (QNE / MaxEntDP)       100 DDPM
``idem``            diffusion   VP cosine, eps    ``"gradient"`` (iDEM / DQS)       100 DDPM
``fm-exact``        flow        linear            none: exact x1 (oracle)           20 Euler
==================  ==========  ================  ==============================  ===========

``fm-exact`` is a reference, not a method: plain conditional flow matching on exact target
samples (x1 drawn by the target's sampler, regression target x1 itself, whose minimiser is
the posterior mean E[x1 | x_t] of method note §3). RL never has such samples; on the toy it
shows what the same network, path, sampler and budget reach when the posterior mean is not
estimated, i.e. how much of a method's gap is estimator noise. ``all`` in the command leaves
it out; ask for it by name.
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
from revflow.losses import generative_loss
from revflow.networks import DenoiserNet, VelocityNet
from revflow.paths import Linear, Path, VPCosine
from revflow.samplers import ddim_sample, ddpm_sample, flow_ode_sample
from revflow.toy.metrics import all_metrics
from revflow.toy.targets import Target

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """How one benchmark method builds its model and its training targets."""

    name: str
    kind: str  # "flow" | "diffusion"
    control_variate: str | float
    label: str
    oracle: bool = False  # trains on exact target samples instead of the energy (a reference)


METHODS: dict[str, MethodSpec] = {
    "rfm": MethodSpec("rfm", "flow", "optimal", "RFM (flow, optimal c*)"),
    "rfm-isotropic": MethodSpec("rfm-isotropic", "flow", "optimal-isotropic", "RFM isotropic c*"),
    "rfm-none": MethodSpec("rfm-none", "flow", "none", "RFM c=0 (noise exp.)"),
    "rfm-gradient": MethodSpec("rfm-gradient", "flow", "gradient", "RFM gradient exp."),
    "qne": MethodSpec("qne", "diffusion", "none", "QNE (diffusion, noise exp.)"),
    "idem": MethodSpec("idem", "diffusion", "gradient", "iDEM (diffusion, gradient exp.)"),
    "fm-exact": MethodSpec(
        "fm-exact", "flow", "none", "flow matching on exact samples (oracle)", oracle=True
    ),
}
PROPOSALS: tuple[str, ...] = ("model", "broad")
DIFFUSION_SAMPLERS: tuple[str, ...] = ("ddpm", "ddim")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Budget and model sizes shared by every method (so the comparison is at equal cost)."""

    steps: int = 1000
    batch: int = 256
    num_reverse_samples: int = 64  # K, the posterior-estimation budget per noisy point
    proposal: str = "model"
    broad_std: float = 3.0
    t_min: float = 0.01
    t_max: float = 0.99
    lr: float = 3e-4
    grad_clip: float = 10.0
    ema: float = 0.99  # decay of an exponential moving average of the params used to sample
    #                   at evaluation (0 = evaluate the online params)
    hidden: int = 128
    num_blocks: int = 2
    time_embed_dim: int = 64
    flow_steps: int = 20
    diffusion_steps: int = 100
    diffusion_sampler: str = "ddpm"
    diffusion_t_start: float = 0.01  # first time of the diffusion sampler (alpha_t > 0 there)
    diffusion_clip: float | None = None  # clip the sampler's x1-prediction to [-c, c]
    time_scale: float = 1000.0  # the net sees time_scale * t (sinusoidal embedding resolution)
    chunk: int = 50  # updates per jitted call (lax.scan); the progress bar moves per chunk

    def validate(self) -> None:
        """Raise ValueError for an invalid configuration (before any compute)."""
        checks = [
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch >= 1, f"batch must be >= 1, got {self.batch}"),
            (
                self.num_reverse_samples >= 1,
                f"num_reverse_samples (K) must be >= 1, got {self.num_reverse_samples}",
            ),
            (
                self.proposal in PROPOSALS,
                f"unknown proposal {self.proposal!r}; available: {', '.join(PROPOSALS)}",
            ),
            (self.broad_std > 0, f"broad_std must be > 0, got {self.broad_std}"),
            (
                0.0 < self.t_min < self.t_max < 1.0,
                f"need 0 < t_min < t_max < 1, got t_min={self.t_min}, t_max={self.t_max}",
            ),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0.0 <= self.ema < 1.0, f"ema must lie in [0, 1), got {self.ema}"),
            (self.hidden >= 1 and self.num_blocks >= 0, "hidden >= 1 and num_blocks >= 0"),
            (self.flow_steps >= 1, f"flow_steps must be >= 1, got {self.flow_steps}"),
            (
                self.diffusion_steps >= 1,
                f"diffusion_steps must be >= 1, got {self.diffusion_steps}",
            ),
            (
                self.diffusion_sampler in DIFFUSION_SAMPLERS,
                f"unknown diffusion_sampler {self.diffusion_sampler!r}; "
                f"available: {', '.join(DIFFUSION_SAMPLERS)}",
            ),
            (self.chunk >= 1, f"chunk must be >= 1, got {self.chunk}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def get_method(name: str) -> MethodSpec:
    """Look a method up by name; unknown names raise ValueError listing the available ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return METHODS[name]


# --------------------------------------------------------------------------------------------
# Model: network, path, parameterisation and sampler of one method.


@dataclasses.dataclass(frozen=True)
class Model:
    """A generative model of 2-D points: ``sample(params, key, n) -> (n, 2)``."""

    net: Any
    path: Path
    parameterisation: str  # "velocity" (flow) or "eps" (diffusion)
    sample: Callable[[Any, Array, int], Array]

    def init(self, key: Array) -> Any:
        return self.net.init(key, jnp.zeros((4,)), jnp.zeros((4, 2)))


def make_model(method: MethodSpec, cfg: TrainConfig) -> Model:
    """Flow: linear path, VelocityNet, ``flow_steps`` Euler steps from t_min to t_max (the
    training range; the reference actor integrates 0.01 -> 0.99, method note §6).
    Diffusion: VP cosine path, DenoiserNet (eps), ``diffusion_steps`` DDPM (or DDIM) steps."""
    kwargs = dict(
        out_dim=2,
        hidden=cfg.hidden,
        num_blocks=cfg.num_blocks,
        time_embed_dim=cfg.time_embed_dim,
        temp_embed_dim=0,
    )
    if method.kind == "flow":
        net, path = VelocityNet(**kwargs), Linear()

        def sample(params: Any, key: Array, n: int) -> Array:
            x0 = jax.random.normal(key, (n, 2))
            velocity = lambda t, x: net.apply(params, cfg.time_scale * t, x)
            return flow_ode_sample(velocity, x0, cfg.flow_steps, cfg.t_min, cfg.t_max)

        return Model(net, path, "velocity", sample)

    net, path = DenoiserNet(**kwargs), VPCosine()

    def sample(params: Any, key: Array, n: int) -> Array:
        k_init, k_steps = jax.random.split(key)
        x_init = jax.random.normal(k_init, (n, 2))

        def eps_fn(t: Array, x: Array) -> Array:
            eps = net.apply(params, cfg.time_scale * t, x)
            if cfg.diffusion_clip is None:
                return eps
            a, b = path.alpha(t), path.beta(t)
            x1 = jnp.clip((x - b * eps) / a, -cfg.diffusion_clip, cfg.diffusion_clip)
            return (x - a * x1) / b

        t0 = cfg.diffusion_t_start
        if cfg.diffusion_sampler == "ddim":
            return ddim_sample(eps_fn, x_init, path, cfg.diffusion_steps, t_start=t0)
        return ddpm_sample(eps_fn, k_steps, x_init, path, cfg.diffusion_steps, t_start=t0)

    return Model(net, path, "eps", sample)


# --------------------------------------------------------------------------------------------
# One update step (pure) and the jitted chunk of updates.


@struct.dataclass
class TrainState:
    params: Any
    opt_state: Any
    step: Array
    ema_params: Any


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adam(cfg.lr))


def init_state(key: Array, model: Model, cfg: TrainConfig) -> TrainState:
    params = model.init(key)
    return TrainState(params, make_optimizer(cfg).init(params), jnp.zeros((), jnp.int32), params)


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
        x1 = cfg.broad_std * jax.random.normal(k_x1, (cfg.batch, 2))
    t = jax.random.uniform(k_t, (cfg.batch,), minval=cfg.t_min, maxval=cfg.t_max)
    x0 = jax.random.normal(k_x0, (cfg.batch, 2))
    a, b = model.path.alpha(t)[:, None], model.path.beta(t)[:, None]
    return t, a * x1 + b * x0


def update_step(
    state: TrainState,
    key: Array,
    model: Model,
    target: Target,
    method: MethodSpec,
    cfg: TrainConfig,
    exact_pool: Array | None = None,
) -> tuple[TrainState, dict[str, Array]]:
    """One RFM update (module docstring, steps 1-4). Pure; jit it with static model/target.
    An ``oracle`` method regresses on exact target samples x1 instead (module docstring),
    drawn uniformly from ``exact_pool`` (exact samples made on the host: the two-moons
    sampler rejects, so it cannot run inside jit)."""
    k_pts, k_est = jax.random.split(key)
    if method.oracle:
        if exact_pool is None:
            raise ValueError(f"method {method.name!r} needs exact_pool (exact target samples)")
        x1 = exact_pool[jax.random.randint(k_est, (cfg.batch,), 0, exact_pool.shape[0])]
        t, x_t = noisy_points(k_pts, model, state.params, cfg, x1=x1)
        mu1, ess = x1, jnp.asarray(float(cfg.num_reverse_samples))
    else:
        t, x_t = noisy_points(k_pts, model, state.params, cfg)
        est = estimate_posterior_mean_batch(
            k_est,
            target.log_prob,
            x_t,
            t,
            model.path,
            cfg.num_reverse_samples,
            method.control_variate,
        )
        # Non-finite estimates (should not happen; the estimator is NaN-safe) would poison Adam.
        mu1, ess = jnp.where(jnp.isfinite(est.x1), est.x1, x_t), jnp.mean(est.ess)

    def loss_fn(params: Any) -> Array:
        predict = lambda tt, xx: model.net.apply(params, cfg.time_scale * tt, xx)
        return generative_loss(predict, model.path, t, x_t, mu1, model.parameterisation)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = make_optimizer(cfg).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = optax.incremental_update(params, state.ema_params, 1.0 - cfg.ema)
    new_state = TrainState(params, opt_state, state.step + 1, ema_params)
    return new_state, {"loss": loss, "ess": ess}


def make_train_chunk(
    model: Model, target: Target, method: MethodSpec, cfg: TrainConfig
) -> Callable[[TrainState, Array, int, Array | None], tuple[TrainState, dict[str, Array]]]:
    """Jitted ``(state, key, n, exact_pool) -> (state, per-step metrics)`` running n updates
    in a scan (``exact_pool``: exact target samples for an oracle method, else None)."""

    @partial(jax.jit, static_argnums=2)
    def run(
        state: TrainState, key: Array, n: int, exact_pool: Array | None = None
    ) -> tuple[TrainState, dict[str, Array]]:
        def body(s: TrainState, k: Array) -> tuple[TrainState, dict[str, Array]]:
            return update_step(s, k, model, target, method, cfg, exact_pool)

        return jax.lax.scan(body, state, jax.random.split(key, n))

    return run


# --------------------------------------------------------------------------------------------
# The thin loop.


@dataclasses.dataclass
class TrainResult:
    method: str
    target: str
    samples: np.ndarray  # (num_eval_samples, 2) model samples after training
    metrics: dict[str, float]
    train_time: float  # seconds, compilation included
    losses: np.ndarray  # per-update loss
    params: Any = dataclasses.field(repr=False, default=None)


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


def train(
    target: Target,
    method: str,
    cfg: TrainConfig,
    key: Array,
    num_eval_samples: int = 2000,
    truth: Array | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``method`` on ``target`` for ``cfg.steps`` updates, then sample and score it.

    ``truth``: ground-truth samples to score against (drawn from ``target.sample`` with a
    key derived from ``key`` when None; pass the same set to compare methods fairly).
    Metrics are those of :func:`revflow.toy.metrics.all_metrics`.
    """
    cfg.validate()
    spec = get_method(method)
    if num_eval_samples < 2:
        raise ValueError(f"num_eval_samples must be >= 2, got {num_eval_samples}")
    k_init, k_train, k_sample, k_truth, k_metric = jax.random.split(key, 5)
    model = make_model(spec, cfg)
    run = make_train_chunk(model, target, spec, cfg)
    state = init_state(k_init, model, cfg)
    exact_pool = None
    if spec.oracle:  # a pool of min(steps * batch, 2^20) exact samples, drawn uniformly
        k_pool = jax.random.fold_in(k_train, 1)
        exact_pool = target.sample(k_pool, min(cfg.steps * cfg.batch, 1 << 20))

    losses = []
    start = time.perf_counter()
    with _progress(not progress) as bar:
        task = bar.add_task(f"{method} on {target.name}", total=cfg.steps, loss=float("nan"))
        done = 0
        while done < cfg.steps:
            n = min(cfg.chunk, cfg.steps - done)
            k_train, sub = jax.random.split(k_train)
            state, logs = run(state, sub, n, exact_pool)
            chunk_losses = np.asarray(logs["loss"])
            losses.append(chunk_losses)
            done += n
            bar.update(task, completed=done, loss=float(np.mean(chunk_losses)))
    samples = np.asarray(
        jax.jit(model.sample, static_argnums=2)(state.ema_params, k_sample, num_eval_samples)
    )
    train_time = time.perf_counter() - start
    if truth is None:
        truth = target.sample(k_truth, num_eval_samples)
    metrics = all_metrics(k_metric, samples, np.asarray(truth), target)
    return TrainResult(
        method=method,
        target=target.name,
        samples=samples,
        metrics=metrics,
        train_time=train_time,
        losses=np.concatenate(losses),
        params=state.ema_params,
    )


def sample_untrained(method: str, cfg: TrainConfig, key: Array, n: int) -> np.ndarray:
    """``n`` samples of a freshly initialised model of ``method`` (what training must beat)."""
    model = make_model(get_method(method), cfg)
    k_init, k_sample = jax.random.split(key)
    return np.asarray(model.sample(model.init(k_init), k_sample, n))
