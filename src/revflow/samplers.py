"""Samplers for flow and diffusion policies, and particle selection.

Time runs from noise (t = 0) to data (t = 1) for every path (method note §2). All samplers are
pure, jittable and vectorised over arbitrary leading dims of ``x``. The model callables receive
``t`` as a *scalar* array, so a network can compute its time-embedding product once per step
(method note §7).

- :func:`flow_ode_sample`: integrate ``dx/dt = v(t, x)`` with Euler or Heun steps. Reference
  actor: 10 Euler steps from t = 0.01 to 0.99 (method note §6).
- :func:`ddpm_sample`: ancestral sampling with the Gaussian posterior
  ``q(x_{t'} | x_t, x1_hat)`` of the path's own transitions (any path of method note §2).
- :func:`ddim_sample`: DDIM; ``eta = 0`` is a discretisation of the probability-flow ODE.
- :func:`select_boltzmann` / :func:`select_argmax`: pick one particle per state, by
  probability ``softmax(log_weights)`` (data collection, training endpoints) or by highest
  score (evaluation), method note §6.

Diffusion transitions. For a path with ``x_t = alpha_t x1 + beta_t x0`` and ``t < t'`` (``t'``
closer to data), the Markov transition consistent with both marginals given ``x1`` is
``x_t | x_{t'} ~ N(a x_{t'}, s^2 I)`` with ``a = alpha_t / alpha_{t'}`` and
``s^2 = beta_t^2 - a^2 beta_{t'}^2`` (non-negative because ``beta/alpha`` decreases in t).
Conditioning on ``x1`` gives the posterior ``q(x_{t'} | x_t, x1) = N(mean, var I)`` with::

    var  = s^2 beta_{t'}^2 / beta_t^2
    mean = (s^2 / beta_t^2) alpha_{t'} x1 + (a beta_{t'}^2 / beta_t^2) x_t
         = (x_t - (s^2 / beta_t) eps) / a           (x1 = (x_t - beta_t eps) / alpha_t)

The last form uses the eps-prediction directly and never divides by a small ``alpha_t``.
For VP paths it is DDPM; for VE (``alpha = 1``) it is the SMLD ancestral sampler.

Clipped samplers. A policy whose actions live in a box can keep its diffusion sampler inside
it: ``clip="iterate"`` clips the iterate after every step (QSM's ``clip_sampler``),
``clip="endpoint"`` clips the predicted endpoint ``x1_hat = (x_t - beta_t eps) / alpha_t`` at
every step and steps to the posterior mean given it (DDPM's ``clip_denoised``, DACER); the
last step lands on the clipped ``x1_hat`` either way.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from revflow.paths import Path

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
ModelFn = Callable[[Array, Array], Array]

__all__ = [
    "CLIP_MODES",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "flow_ode_sample",
    "flow_step",
    "select_argmax",
    "select_boltzmann",
]

FLOW_METHODS: tuple[str, ...] = ("euler", "heun")
DIFFUSION_T_START = 1e-3
"""Default start time of the diffusion samplers: VPCosine has alpha_0 = 0 exactly, so the
first step's ``x1_hat`` would divide by zero; at t = 1e-3 it is ~1.6e-3 for VPCosine."""


def _check_steps(num_steps: int) -> None:
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be a Python int >= 1, got num_steps={num_steps!r}")


def _time_grid(t_start: ArrayLike, t_end: ArrayLike, num_steps: int, dtype) -> Array:
    t_start = jnp.asarray(t_start, dtype)
    t_end = jnp.asarray(t_end, dtype)
    if t_start.ndim or t_end.ndim:
        raise ValueError(
            f"t_start and t_end must be scalars, got shapes {t_start.shape}, {t_end.shape}"
        )
    frac = jnp.arange(num_steps + 1, dtype=dtype) / num_steps
    return t_start + (t_end - t_start) * frac


def _float(x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def flow_step(method: str, velocity_fn: ModelFn) -> Callable[[Array, Array, Array], Array]:
    """One step ``x(t) -> x(t_next)`` of the flow ODE: ``step(x, t, t_next)``, Euler or Heun."""
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(FLOW_METHODS)}")

    def euler(x: Array, t: Array, t_next: Array) -> Array:
        return x + (t_next - t) * velocity_fn(t, x)

    def heun(x: Array, t: Array, t_next: Array) -> Array:
        dt = t_next - t
        v = velocity_fn(t, x)
        v_next = velocity_fn(t_next, x + dt * v)
        return x + 0.5 * dt * (v + v_next)

    return euler if method == "euler" else heun


def flow_ode_sample(
    velocity_fn: ModelFn,
    x0: ArrayLike,
    num_steps: int,
    t_start: ArrayLike = 0.0,
    t_end: ArrayLike = 1.0,
    method: str = "euler",
    unroll: bool = False,
) -> Array:
    """Integrate ``dx/dt = velocity_fn(t, x)`` from ``t_start`` to ``t_end`` on a uniform grid.

    ``velocity_fn(t, x)`` gets ``t`` as a scalar array and ``x`` of ``x0``'s shape (any
    leading dims) and returns an array of that shape. ``method``: ``"euler"`` (one velocity
    evaluation per step, first order) or ``"heun"`` (two, second order; the last step
    evaluates the field at ``t_end``). Reference actor: ``num_steps=10, t_start=0.01,
    t_end=0.99, method="euler"`` (method note §6). ``unroll=True`` unrolls the loop: XLA
    then fuses across steps and its cost analysis counts every step (a rolled loop's body
    is counted once); worth it for the few steps of a policy, not for 100-step diffusion.
    """
    _check_steps(num_steps)
    step = flow_step(method, velocity_fn)
    x0 = _float(x0)
    ts = _time_grid(t_start, t_end, num_steps, x0.dtype)

    def body(k, x):
        return step(x, ts[k], ts[k + 1])

    return jax.lax.fori_loop(0, num_steps, body, x0, unroll=bool(unroll))


def _coefs(path: Path, t: Array, t_next: Array) -> tuple[Array, ...]:
    a_t, b_t = path.alpha(t), path.beta(t)
    a_n, b_n = path.alpha(t_next), path.beta(t_next)
    ratio = a_t / a_n  # a = alpha_t / alpha_{t'}
    s2 = jnp.maximum(b_t**2 - (ratio * b_n) ** 2, 0.0)  # transition variance x_t | x_{t'}
    return a_t, b_t, a_n, b_n, ratio, s2


#: Ways of keeping a diffusion sampler in a box (:func:`ddpm_sample`, :func:`ddim_sample`).
CLIP_MODES: tuple[str, ...] = ("iterate", "endpoint")


def _check_clip(clip: str | None) -> None:
    if clip is not None and clip not in CLIP_MODES:
        raise ValueError(f"unknown clip {clip!r}; expected None or one of {CLIP_MODES}")


def ddim_step(
    path: Path,
    eps_fn: ModelFn,
    x: Array,
    t: Array,
    t_next: Array,
    clip: str | None = None,
    bound: float = 1.0,
) -> Array:
    """One deterministic DDIM step (``eta = 0``) from ``t`` to ``t_next``:
    ``alpha_{t'} (x - beta_t eps) / alpha_t + beta_{t'} eps``. ``clip="endpoint"`` clips
    ``x1_hat`` to ``[-bound, bound]`` and re-derives eps from it; ``"iterate"`` clips the
    result."""
    a_t, b_t, a_n, b_n, _, _ = _coefs(path, t, t_next)
    eps = eps_fn(t, x)
    if clip == "endpoint":
        x1_hat = jnp.clip((x - b_t * eps) / a_t, -bound, bound)
        eps_hat = (x - a_t * x1_hat) / b_t
        return a_n * x1_hat + b_n * eps_hat
    out = a_n * (x - b_t * eps) / a_t + b_n * eps
    return jnp.clip(out, -bound, bound) if clip == "iterate" else out


def ddpm_sample(
    eps_fn: ModelFn,
    key: Array,
    x_init: ArrayLike,
    path: Path,
    num_steps: int,
    t_start: ArrayLike = DIFFUSION_T_START,
    t_end: ArrayLike = 1.0,
    clip: str | None = None,
    bound: float = 1.0,
) -> Array:
    """Ancestral sampling: ``x_{t'} ~ q(x_{t'} | x_t, x1_hat(x_t))`` on a uniform t grid.

    ``eps_fn(t, x)`` (scalar ``t``) predicts E[x0 | x_t]; ``x_init`` should be drawn from
    (an approximation of) the marginal at ``t_start``: ``N(0, I)`` for VP paths and the linear
    path, ``N(0, sigma_max^2 I)`` for VE. The posterior is derived for the general
    ``alpha, beta`` form in the module docstring, so it works for ``Linear``, ``VPCosine``,
    ``VPLinear`` and ``VE``. The default ``t_start = 1e-3`` avoids ``alpha_t = 0`` (VPCosine
    and the linear path have ``alpha_0 = 0``); ``t_end = 1`` ends on the (noise-free) mean, which
    for ``beta_1 = 0`` is ``x1_hat``.

    ``clip`` keeps the sampler in the box ``[-bound, bound]`` (module docstring, "Clipped
    samplers"): ``"iterate"`` clips x after every step, ``"endpoint"`` clips the predicted
    endpoint ``x1_hat`` at every step and steps to the posterior mean given it.
    """
    _check_steps(num_steps)
    _check_clip(clip)
    x_init = _float(x_init)
    ts = _time_grid(t_start, t_end, num_steps, x_init.dtype)
    keys = jax.random.split(key, num_steps)

    def body(k, x):
        t, t_next = ts[k], ts[k + 1]
        a_t, b_t, a_n, b_n, ratio, s2 = _coefs(path, t, t_next)
        eps = eps_fn(t, x)
        if clip == "endpoint":
            x1_hat = jnp.clip((x - b_t * eps) / a_t, -bound, bound)
            mean = (s2 / b_t**2) * a_n * x1_hat + (ratio * b_n**2 / b_t**2) * x
        else:
            mean = (x - (s2 / b_t) * eps) / ratio
        std = jnp.sqrt(s2) * b_n / b_t
        noise = jax.random.normal(keys[k], x.shape, x.dtype)
        out = mean + std * noise
        return jnp.clip(out, -bound, bound) if clip == "iterate" else out

    return jax.lax.fori_loop(0, num_steps, body, x_init)


def ddim_sample(
    eps_fn: ModelFn,
    x_init: ArrayLike,
    path: Path,
    num_steps: int,
    t_start: ArrayLike = DIFFUSION_T_START,
    t_end: ArrayLike = 1.0,
    eta: float = 0.0,
    key: Array | None = None,
    clip: str | None = None,
    bound: float = 1.0,
) -> Array:
    """DDIM: ``x_{t'} = alpha_{t'} x1_hat + sqrt(beta_{t'}^2 - sigma^2) eps_hat + sigma z``.

    ``x1_hat = (x_t - beta_t eps_hat) / alpha_t`` and ``sigma = eta * sqrt(var)`` with ``var``
    the ancestral posterior variance of :func:`ddpm_sample`. ``eta = 0`` (default) is
    deterministic: the DDIM discretisation of the probability-flow ODE; ``eta = 1`` has the
    ancestral sampler's noise level (then ``key`` is required). Arguments and time defaults as
    in :func:`ddpm_sample`; ``clip`` as there (with ``eta = 0``; :func:`ddim_step`).
    """
    _check_steps(num_steps)
    _check_clip(clip)
    if clip is not None and eta > 0:
        raise ValueError(f"ddim_sample with clip={clip!r} needs eta=0, got eta={eta}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got eta={eta}")
    if eta > 0 and key is None:
        raise ValueError(f"ddim_sample with eta={eta} > 0 needs a PRNG key")
    x_init = _float(x_init)
    ts = _time_grid(t_start, t_end, num_steps, x_init.dtype)
    keys = jax.random.split(key, num_steps) if eta > 0 else None

    def body(k, x):
        t, t_next = ts[k], ts[k + 1]
        if keys is None:
            return ddim_step(path, eps_fn, x, t, t_next, clip, bound)
        a_t, b_t, a_n, b_n, _, s2 = _coefs(path, t, t_next)
        eps = eps_fn(t, x)
        x1_hat = (x - b_t * eps) / a_t
        sigma = eta * jnp.sqrt(s2) * b_n / b_t
        dir_scale = jnp.sqrt(jnp.maximum(b_n**2 - sigma**2, 0.0))
        noise = jax.random.normal(keys[k], x.shape, x.dtype)
        return a_n * x1_hat + dir_scale * eps + sigma * noise

    return jax.lax.fori_loop(0, num_steps, body, x_init)


def _check_particles(particles: Array, scores: Array, what: str) -> None:
    if particles.ndim < 2:
        raise ValueError(f"particles must have shape (..., N, D), got {particles.shape}")
    if particles.shape[:-1] != scores.shape:
        raise ValueError(
            f"{what} shape {scores.shape} must equal particles.shape[:-1] = "
            f"{particles.shape[:-1]} (particles shape {particles.shape})"
        )


def _take(particles: Array, idx: Array) -> Array:
    return jnp.take_along_axis(particles, idx[..., None, None], axis=-2)[..., 0, :]


@jax.jit
def select_boltzmann(key: Array, particles: ArrayLike, log_weights: ArrayLike) -> Array:
    """Pick one particle per state with probability ``softmax(log_weights)`` over axis -2.

    ``particles (..., N, D)``, ``log_weights (..., N)`` (e.g. ``Q / lam``, method note §6)
    -> ``(..., D)``. NaN weights count as ``-inf``; if every weight of a state is ``-inf``
    (or NaN) the pick is uniform; if some are ``+inf`` the pick is uniform among those.
    """
    particles, log_weights = jnp.asarray(particles), jnp.asarray(log_weights)
    _check_particles(particles, log_weights, "log_weights")
    logits = jnp.where(jnp.isnan(log_weights), -jnp.inf, log_weights)
    pos_inf = jnp.isposinf(logits)
    logits = jnp.where(pos_inf.any(-1, keepdims=True), jnp.where(pos_inf, 0.0, -jnp.inf), logits)
    all_neg_inf = jnp.isneginf(logits).all(-1, keepdims=True)
    logits = jnp.where(all_neg_inf, 0.0, logits)
    idx = jax.random.categorical(key, logits, axis=-1)
    return _take(particles, idx)


@jax.jit
def select_argmax(particles: ArrayLike, scores: ArrayLike) -> Array:
    """The particle with the highest score per state: ``(..., N, D), (..., N) -> (..., D)``.

    NaN scores are ignored (treated as ``-inf``); ties go to the first particle.
    """
    particles, scores = jnp.asarray(particles), jnp.asarray(scores)
    _check_particles(particles, scores, "scores")
    idx = jnp.argmax(jnp.where(jnp.isnan(scores), -jnp.inf, scores), axis=-1)
    return _take(particles, idx)
