"""Posterior-mean estimators: the Reverse Flow Matching estimator family.

Method note §3-5. Given a noisy point x_t on a path, the training target of a flow or
diffusion model is an affine map (revflow.paths) of mu1 = E[x1 | x_t] under the posterior

    q(x1 | x_t)  ∝  N(x1; x_t/alpha_t, (beta_t/alpha_t)^2 I) * p1(x1).

We draw K reverse samples x1_i = (x_t - beta_t x0_i)/alpha_t, x0_i ~ N(0, I), weight them by
w_i = softmax_i(log p1(x1_i)) (self-normalised importance sampling) and add a Langevin-Stein
control variate with a diagonal coefficient c (method note §4):

    mu1_hat(c) = sum_i w_i (x1_i + c ⊙ s_i),   s_i = grad log p1(x1_i) + (alpha_t/beta_t) x0_i

    control_variate="none":      c = 0, noise-expectation (SDAC, QNE/MaxEntDP)
    control_variate="gradient":  c = (beta_t/alpha_t)^2, gradient-expectation (iDEM, DQS)
    control_variate=<float eta>: c = eta (beta_t/alpha_t)^2
    control_variate="optimal":   c = c* per dimension, ridge-regularised, clipped to +-clip
    "optimal-isotropic":         one c* shared by all dimensions
    "optimal-shrunk":            the isotropic c* shrunk toward 0 by its t-statistic (see
                                 docs/estimators/README.md)

(s_i is the posterior score grad log q(x1_i | x_t); x1_i - x_t/alpha_t = -(beta_t/alpha_t) x0_i.)

With ``latent_tanh=True`` (method note §5) x lives in the unbounded latent u, ``log_target``
is evaluated at the action tanh(u), and log p1(u) = log_target(tanh u) + sum_j log sech^2(u_j),
so the posterior is exactly the Boltzmann target in action space pushed through atanh.

Everything here is pure and jittable; :func:`estimate_posterior_mean` handles one point x_t
of shape (D,) (and is vmappable over (key, x_t, t)) or a batch of shape (B, D), one key per
row, as the agents call it (under its other name :data:`estimate_posterior_mean_batch`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from revflow.paths import Path

Array = jax.Array
LogTarget = Callable[..., Array]
#: A Gaussian reference (mean, std) for the reverse samples, see :func:`reverse_samples`.
Reference = tuple[Any, Any]

CONTROL_VARIATES: tuple[str, ...] = (
    "none",
    "gradient",
    "optimal",
    "optimal-isotropic",
    "optimal-shrunk",
)

#: "optimal-shrunk" keeps the isotropic c* only where its squared t-statistic exceeds this
#: (|t| > 2), via the positive-part James-Stein factor max(0, 1 - SHRINK_T2 / t^2).
SHRINK_T2 = 4.0

# Smallest alpha_t / beta_t used in divisions: keeps t at the ends of (0, 1) finite.
_TINY = 1e-12


@struct.dataclass
class PosteriorEstimate:
    """Estimate of the posterior mean at one noisy point (or a batch: leading dims).

    Attributes:
        x1: estimate of mu1 = E[x1 | x_t], shape (..., D).
        x0: the matching E[x0 | x_t] = (x_t - alpha_t x1) / beta_t, shape (..., D).
        ess: effective sample size 1 / sum_i w_i^2 of the self-normalised weights, in [1, K].
        coefficient: the control-variate coefficient c actually used, shape (..., D).
        variance: delta-method variance of the x1 estimate, sum_i w_i^2 (f_i - f_bar)^2 with
            f_i = x1_i + c ⊙ s_i, shape (..., D) (method note §4).
    """

    x1: Array
    x0: Array
    ess: Array
    coefficient: Array
    variance: Array


def _validate(control_variate: Any, num_samples: Any, ridge: float, clip: float) -> None:
    if isinstance(control_variate, bool) or not (
        isinstance(control_variate, (int, float)) or control_variate in CONTROL_VARIATES
    ):
        raise ValueError(
            f"unknown control_variate {control_variate!r}; use a float eta or one of "
            f"{', '.join(CONTROL_VARIATES)}"
        )
    if isinstance(control_variate, (int, float)) and not math.isfinite(control_variate):
        raise ValueError(f"control_variate eta must be finite, got {control_variate!r}")
    if not isinstance(num_samples, (int, np.integer)) or isinstance(num_samples, bool):
        raise ValueError(f"num_samples must be an int, got {num_samples!r}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if not ridge >= 0.0:
        raise ValueError(f"ridge must be >= 0, got {ridge!r}")
    if not clip > 0.0:
        raise ValueError(f"clip must be > 0, got {clip!r}")


def _check_t_range(t: Any) -> None:
    """Raise for t outside (0, 1) when t is concrete; traced values are clamped instead."""
    try:
        value = np.asarray(t)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    if value.size and not (np.all(value > 0.0) and np.all(value < 1.0)):
        bad = value[~((value > 0.0) & (value < 1.0))].ravel()[0]
        raise ValueError(f"t must lie in the open interval (0, 1), got {float(bad)!r}")


def _as_float_arrays(x_t: Any, t: Any) -> tuple[Array, Array]:
    """x_t as a floating array of shape (D,) or (B, D) (else a ValueError), t in the same
    dtype."""
    x_t = jnp.asarray(x_t)
    if x_t.ndim not in (1, 2):
        raise ValueError(f"x_t must have shape (D,) or (B, D), got {x_t.shape}")
    if not jnp.issubdtype(x_t.dtype, jnp.floating):
        x_t = x_t.astype(jnp.result_type(float))
    return x_t, jnp.asarray(t, x_t.dtype)


def log_sech2(u: Array) -> Array:
    """log(sech(u)^2) = log(1 - tanh(u)^2), computed stably for large |u|."""
    return 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def latent_log_target(log_target: LogTarget) -> LogTarget:
    """Wrap an action-space log density into the tanh latent (method note §5)."""

    def wrapped(u: Array, *args: Any) -> Array:
        return log_target(jnp.tanh(u), *args) + jnp.sum(log_sech2(u))

    return wrapped


def snis_weights(log_weights: Array) -> Array:
    """Self-normalised weights softmax(log_weights) over the last axis, safe for degenerate
    input: NaN and -inf count as zero weight, +inf as the largest finite value, and when no
    sample has a finite log weight the weights fall back to uniform."""
    lw = jnp.where(jnp.isnan(log_weights), -jnp.inf, log_weights)
    lw = jnp.where(lw == jnp.inf, jnp.finfo(lw.dtype).max, lw)
    any_finite = jnp.any(jnp.isfinite(lw), axis=-1, keepdims=True)
    lw = jnp.where(any_finite, lw, 0.0)
    return jax.nn.softmax(lw, axis=-1)


def _coefficient(
    control_variate: str | float,
    w: Array,
    x1: Array,
    s: Array,
    ratio2: Array,
    ridge: float,
    clip: float,
) -> Array:
    """Control-variate coefficient c, shape (D,). ``ratio2`` = (beta_t / alpha_t)^2."""
    d = x1.shape[-1]
    if control_variate == "none":
        return jnp.zeros((d,), x1.dtype)
    if control_variate == "gradient":
        return jnp.full((d,), ratio2, x1.dtype)
    if not isinstance(control_variate, str):
        return jnp.full((d,), float(control_variate) * ratio2, x1.dtype)
    # Variance-minimising c* of the delta-method SNIS variance (method note §4).
    w2 = (w * w)[:, None]
    dx = x1 - jnp.sum(w[:, None] * x1, axis=0)
    ds = s - jnp.sum(w[:, None] * s, axis=0)
    cov = jnp.sum(w2 * dx * ds, axis=0)
    var = jnp.sum(w2 * ds * ds, axis=0)
    if control_variate == "optimal":
        return jnp.clip(-cov / (var + ridge), -clip, clip)
    c = jnp.clip(-jnp.sum(cov) / (jnp.sum(var) + ridge), -clip, clip)
    if control_variate == "optimal-shrunk":
        c = c * _shrinkage(w, dx, ds, cov, var)
    return jnp.full((d,), c, x1.dtype)


def _shrinkage(w: Array, dx: Array, ds: Array, cov: Array, var: Array) -> Array:
    """Positive-part James-Stein factor max(0, 1 - SHRINK_T2 / t^2) for the isotropic c*.

    c* is the slope of a w^2-weighted regression of x1 on -s pooled over dimensions; with
    rho^2 its squared correlation and n = ESS the effective number of samples, its squared
    t-statistic is t^2 = rho^2 (n - 2) / (1 - rho^2). A coefficient that is not clearly
    determined (|t| < 2, always when ESS <= 2) is dropped (c = 0, the noise end); a clearly
    determined one (t -> inf, e.g. a near-Gaussian posterior as t -> 1) is kept whole.
    """
    sxx = jnp.sum((w * w)[:, None] * dx * dx)
    sxs, sss = jnp.sum(cov), jnp.sum(var)
    denom = sxx * sss
    rho2 = jnp.where(denom > 0, jnp.clip(sxs * sxs / jnp.where(denom > 0, denom, 1.0), 0, 1), 0)
    n = 1.0 / jnp.sum(w * w)
    t2 = rho2 * jnp.maximum(n - 2.0, 0.0) / jnp.maximum(1.0 - rho2, jnp.finfo(w.dtype).eps)
    return jnp.clip(1.0 - SHRINK_T2 / jnp.maximum(t2, jnp.finfo(w.dtype).tiny), 0.0, 1.0)


def reverse_samples(
    key: Array,
    x_t: Array,
    t: Array,
    path: Path,
    num_samples: int,
    reference: Reference | None = None,
) -> tuple[Array, Array, Array]:
    """K reverse samples x1_i of one noisy point and the log-weight correction they need.

    Without a reference: x1_i = (x_t - beta_t x0_i) / alpha_t, x0_i ~ N(0, I), i.e. draws of
    the reverse kernel N(x_t/alpha_t, r^2 I), r = beta_t/alpha_t, whose SNIS weights are
    p1(x1_i) (correction 0). With a Gaussian ``reference = (m, sd)`` (m, sd broadcastable to
    (D,), sd > 0): draws of the kernel times N(m, diag sd^2), the Gaussian with per-dimension
    variance v = 1/(1/r^2 + 1/sd^2) and mean v (x_t/(alpha_t r^2) + m/sd^2); their weights
    are p1(x1_i) / N(x1_i; m, sd^2), correction +|(x1_i - m)/sd|^2 / 2 (up to a constant).
    The posterior q(x1 | x_t) (module docstring) is the same either way; as t -> 0 the
    kernel's draws spread as 1/t while the reference's stay on N(m, sd^2), so a reference
    covering p1 keeps the ESS away from 1 where x_t carries little information. The
    Langevin-Stein control variate uses the posterior score either way; the "gradient"
    coefficient (beta_t/alpha_t)^2 is Tweedie's identity only without a reference.

    Returns:
        x1 and the matching noises x0 = (x_t - alpha_t x1) / beta_t, both (K, D), and the
        log-weight correction, shape (K,).
    """
    dtype = x_t.dtype
    alpha = jnp.maximum(path.alpha(t), _TINY).astype(dtype)
    beta = jnp.maximum(path.beta(t), _TINY).astype(dtype)
    noise = jax.random.normal(key, (num_samples, x_t.shape[-1]), dtype)
    if reference is None:
        x1 = (x_t[None, :] - beta * noise) / alpha
        return x1, noise, jnp.zeros((num_samples,), dtype)
    m, sd = (jnp.asarray(a, dtype) for a in reference)
    r2 = (beta / alpha) ** 2
    v = 1.0 / (1.0 / r2 + 1.0 / sd**2)
    x1 = v * (x_t / (alpha * r2) + m / sd**2) + jnp.sqrt(v) * noise
    x0 = (x_t[None, :] - alpha * x1) / beta
    return x1, x0, 0.5 * jnp.sum(((x1 - m) / sd) ** 2, axis=-1)


def _estimate(
    key: Array,
    log_target: LogTarget,
    x_t: Array,
    t: Array,
    path: Path,
    num_samples: int,
    control_variate: str | float,
    ridge: float,
    clip: float,
    latent_tanh: bool,
    cond: Any,
    reference: Reference | None = None,
) -> PosteriorEstimate:
    dtype = x_t.dtype
    alpha = jnp.maximum(path.alpha(t), _TINY).astype(dtype)
    beta = jnp.maximum(path.beta(t), _TINY).astype(dtype)
    target = latent_log_target(log_target) if latent_tanh else log_target
    args = () if cond is None else (cond,)

    x1, x0, log_correction = reverse_samples(key, x_t, t, path, num_samples, reference)
    logp, grad = jax.vmap(jax.value_and_grad(lambda x: target(x, *args)))(x1)
    w = snis_weights(logp + log_correction)
    # A zero-weight sample may have a non-finite gradient (e.g. log p1 = -inf there); it
    # must not poison the weighted sums through 0 * inf.
    grad = jnp.where(jnp.isfinite(grad) & (w[:, None] > 0), grad, 0.0)

    s = grad + (alpha / beta) * x0  # posterior score at each reverse sample
    c = _coefficient(control_variate, w, x1, s, (beta / alpha) ** 2, ridge, clip)
    f = x1 + c * s
    mu1 = jnp.sum(w[:, None] * f, axis=0)
    variance = jnp.sum((w * w)[:, None] * (f - mu1) ** 2, axis=0)
    mu0 = (x_t - alpha * mu1) / beta
    ess = 1.0 / jnp.sum(w * w)
    return PosteriorEstimate(x1=mu1, x0=mu0, ess=ess, coefficient=c, variance=variance)


def estimate_posterior_mean(
    key: Array,
    log_target: LogTarget,
    x_t: Array,
    t: Array | float,
    path: Path,
    num_samples: int,
    control_variate: str | float = "optimal",
    ridge: float = 1e-4,
    clip: float = 2.0,
    latent_tanh: bool = False,
    reference: Reference | None = None,
    cond: Any = None,
) -> PosteriorEstimate:
    """Estimate mu1 = E[x1 | x_t] for one noisy point, or for a batch of them (method note §3-4).

    Args:
        key: PRNG key for the K reverse samples (of a batch: split into one key per row).
        log_target: maps one point x1 of shape (D,) to a scalar unnormalised log density
            log p1(x1) (for RL: Q(s, x1) / lam). Differentiated with jax.
        x_t: one noisy point, shape (D,), or a batch of B, shape (B, D).
        t: a scalar in (0, 1), or for a batch also shape (B,). Concrete values outside raise;
            traced values are used as given with alpha_t, beta_t floored at 1e-12.
        path: a revflow.paths path.
        num_samples: K >= 1 reverse samples.
        control_variate: "none" (noise-expectation, eta = 0), "gradient" (gradient-expectation,
            eta = 1), a float eta (c = eta (beta_t/alpha_t)^2), "optimal" (per-dimension c*),
            "optimal-isotropic" (one c* shared by all dimensions) or "optimal-shrunk" (the
            isotropic c* times max(0, 1 - 4 / t^2), t its regression t-statistic with ESS
            effective samples; measured in docs/estimators/ against both ends).
        ridge: added to the denominator of c* (optimal variants only).
        clip: c* is clipped to [-clip, clip] (optimal variants only).
        latent_tanh: x_t and the result live in the tanh latent; log_target receives tanh(x1)
            and the Jacobian sum log sech^2 is added (method note §5).
        reference: optional Gaussian (mean, std), each broadcastable to (D,), that the
            reverse samples are drawn under (:func:`reverse_samples`); None = the reverse
            kernel alone (method note §3). Shared by all rows of a batch.
        cond: batch only: optional pytree with leading dimension B (for RL: the states).
            When given, ``log_target(x1, cond_row)`` is called with the row's slice;
            otherwise ``log_target(x1)``.

    Returns:
        PosteriorEstimate with x1, x0 of shape (D,), scalar ess, coefficient and variance (D,);
        for a batch, leading dimension B on every field.
    """
    _validate(control_variate, num_samples, ridge, clip)
    x_t, t = _as_float_arrays(x_t, t)
    options = (num_samples, control_variate, ridge, clip, latent_tanh)
    if x_t.ndim == 1:
        if jnp.ndim(t) != 0:
            raise ValueError(f"t must be a scalar for one point x_t, got shape {jnp.shape(t)}")
        if cond is not None:
            raise ValueError("cond is per row: it needs a batch x_t of shape (B, D)")
        _check_t_range(t)
        return _estimate(key, log_target, x_t, t, path, *options, None, reference)
    batch = x_t.shape[0]
    if jnp.ndim(t) not in (0, 1) or (jnp.ndim(t) == 1 and jnp.shape(t)[0] != batch):
        raise ValueError(f"t must be a scalar or have shape ({batch},), got {jnp.shape(t)}")
    if cond is not None:
        for leaf in jax.tree.leaves(cond):
            if jnp.shape(leaf)[:1] != (batch,):
                raise ValueError(
                    f"cond leaves must have leading dimension {batch}, got {jnp.shape(leaf)}"
                )
    _check_t_range(t)
    t = jnp.broadcast_to(t, (batch,))
    keys = jax.random.split(key, batch)

    def one(k: Array, x: Array, tt: Array, c: Any) -> PosteriorEstimate:
        return _estimate(k, log_target, x, tt, path, *options, c, reference)

    return jax.vmap(one, in_axes=(0, 0, 0, None if cond is None else 0))(keys, x_t, t, cond)


#: The same function as :func:`estimate_posterior_mean`, the name that call sites with a batch
#: x_t of shape (B, D) read best under.
estimate_posterior_mean_batch = estimate_posterior_mean


def posterior_diagnostics(estimate: PosteriorEstimate) -> dict[str, Array]:
    """Scalar summaries of a (batched) estimate for logging (method note §4).

    Returns ``ess_mean``, ``ess_min``, ``coefficient_mean`` (mean c over rows and dims),
    ``coefficient_abs_max``, ``variance_mean`` (mean delta-method variance of x1 per dim).
    """
    return {
        "ess_mean": jnp.mean(estimate.ess),
        "ess_min": jnp.min(estimate.ess),
        "coefficient_mean": jnp.mean(estimate.coefficient),
        "coefficient_abs_max": jnp.max(jnp.abs(estimate.coefficient)),
        "variance_mean": jnp.mean(estimate.variance),
    }
