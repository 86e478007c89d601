"""Sample-quality metrics for the 2-D Boltzmann sampling benchmark (method note §6, last item).

All distances compare model samples ``x`` (n, 2) with exact ground-truth samples ``y`` (m, 2):

- :func:`sliced_wasserstein`: SW_2 = sqrt(E_theta W_2^2(theta.x, theta.y)), theta uniform on the
  unit circle (``num_projections`` random directions), each 1-D W_2 exact between the empirical
  measures (sorted samples; needs n == m). For x ~ N(0, I), y ~ N(m, I) in 2-D, SW_2 = |m|/sqrt(2).
- :func:`mmd2`: unbiased MMD^2 (Gretton et al. 2012, eq. 3) with the kernel
  k(a, b) = (1/5) sum_{h in {0.1, 0.2, 0.5, 1, 2}} exp(-|a - b|^2 / (2 h^2))  (``MMD_BANDWIDTHS``),
  a mean of RBF kernels so k(a, a) = 1; it can be slightly negative when x and y match.
- :func:`sinkhorn_divergence`: the debiased Sinkhorn divergence of ott-jax,
  S_eps(x, y) = OT_eps(x, y) - (OT_eps(x, x) + OT_eps(y, y)) / 2, squared-Euclidean cost
  |a - b|^2 (no 1/2), uniform weights, absolute entropic regulariser eps = 0.2
  (``SINKHORN_EPSILON``; blur sqrt(eps) ~ 0.45, comparable to the mode widths), Sinkhorn
  iterations with over-relaxation (momentum 1.5) to marginal error 1e-3 (at most 3000).
  It is >= 0, 0 for identical sets, and ~ W_2^2 for small eps.
- :func:`modes_recovered`: each sample is assigned to its nearest mode centre; a mode counts as
  recovered when at least ``min_fraction`` (default 0.5) of its fair share n / M of the samples
  are assigned to it AND lie within ``radius`` of it (targets set radius = 2 std for the
  Gaussian mixtures, where exact samples reach ~0.86 of the fair share, and a uniform smear
  over the plotted square only ~0.4).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.solvers.linear import acceleration
from ott.tools import sinkhorn_divergence as ott_sd

Array = jax.Array

MMD_BANDWIDTHS: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0)
SINKHORN_EPSILON: float = 0.2
MODE_MIN_FRACTION: float = 0.5
DIVERGED_NORM: float = 1e3


def _check_pair(x: Array, y: Array) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have shapes (n, D) and (m, D), got {x.shape}, {y.shape}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"need at least 2 samples in each set, got {x.shape[0]}, {y.shape[0]}")


@partial(jax.jit, static_argnames=("num_projections",))
def _sliced_w2(key: Array, x: Array, y: Array, num_projections: int) -> Array:
    theta = jax.random.normal(key, (num_projections, x.shape[1]))
    theta = theta / jnp.linalg.norm(theta, axis=-1, keepdims=True)
    px = jnp.sort(x @ theta.T, axis=0)  # (n, L)
    py = jnp.sort(y @ theta.T, axis=0)
    w2_sq = jnp.mean((px - py) ** 2, axis=0)  # exact 1-D W_2^2 per direction
    return jnp.sqrt(jnp.mean(w2_sq))


def sliced_wasserstein(key: Array, x: Array, y: Array, num_projections: int = 512) -> Array:
    """Sliced 2-Wasserstein distance between two equal-size sample sets (see module doc)."""
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    _check_pair(x, y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"sliced_wasserstein needs equal sample sizes, got {x.shape[0]}, {y.shape[0]}"
        )
    if num_projections < 1:
        raise ValueError(f"num_projections must be >= 1, got {num_projections}")
    return _sliced_w2(key, x, y, int(num_projections))


def _kernel(a: Array, b: Array, bandwidths: tuple[float, ...]) -> Array:
    d2 = jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2.0 * a @ b.T
    d2 = jnp.maximum(d2, 0.0)
    return sum(jnp.exp(-d2 / (2.0 * h * h)) for h in bandwidths) / len(bandwidths)


@partial(jax.jit, static_argnames=("bandwidths",))
def _mmd2(x: Array, y: Array, bandwidths: tuple[float, ...]) -> Array:
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = _kernel(x, x, bandwidths), _kernel(y, y, bandwidths), _kernel(x, y, bandwidths)
    sxx = (jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1))
    syy = (jnp.sum(kyy) - jnp.trace(kyy)) / (m * (m - 1))
    return sxx + syy - 2.0 * jnp.mean(kxy)


def mmd2(x: Array, y: Array, bandwidths: tuple[float, ...] = MMD_BANDWIDTHS) -> Array:
    """Unbiased MMD^2 with the mean-of-RBF kernel over ``bandwidths`` (see module doc)."""
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    _check_pair(x, y)
    if not bandwidths or min(bandwidths) <= 0:
        raise ValueError(f"bandwidths must be positive, got {bandwidths}")
    return _mmd2(x, y, tuple(float(h) for h in bandwidths))


@partial(jax.jit, static_argnames=("epsilon",))
def _sinkhorn(x: Array, y: Array, epsilon: float) -> Array:
    value, _ = ott_sd.sinkhorn_divergence(
        pointcloud.PointCloud,
        x,
        y,
        epsilon=epsilon,
        solve_kwargs={
            "max_iterations": 3000,
            "threshold": 1e-3,
            "momentum": acceleration.Momentum(value=1.5),
        },
    )
    return value


def sinkhorn_divergence(x: Array, y: Array, epsilon: float = SINKHORN_EPSILON) -> Array:
    """Debiased Sinkhorn divergence (ott-jax), squared-Euclidean cost, absolute ``epsilon``."""
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    _check_pair(x, y)
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    return _sinkhorn(x, y, float(epsilon))


@jax.jit
def _mode_counts(x: Array, centers: Array, radius: Array) -> Array:
    d2 = jnp.sum((x[:, None, :] - centers[None, :, :]) ** 2, axis=-1)  # (n, M)
    nearest = jnp.argmin(d2, axis=1)
    close = jnp.min(d2, axis=1) <= radius * radius
    onehot = jax.nn.one_hot(nearest, centers.shape[0]) * close[:, None]
    return jnp.sum(onehot, axis=0)


def mode_counts(x: Array, centers: np.ndarray, radius: float) -> np.ndarray:
    """Per mode: how many samples have it as nearest centre and lie within ``radius``."""
    x = jnp.asarray(x, jnp.float32)
    return np.asarray(_mode_counts(x, jnp.asarray(centers, jnp.float32), jnp.float32(radius)))


def modes_recovered(
    x: Array, centers: np.ndarray, radius: float, min_fraction: float = MODE_MIN_FRACTION
) -> int:
    """Number of modes holding >= ``min_fraction`` * n / M of the samples (see module doc)."""
    counts = mode_counts(x, centers, radius)
    fair_share = np.asarray(x).shape[0] / len(centers)
    return int(np.sum(counts >= min_fraction * fair_share))


def all_metrics(key: Array, x: Array, y: Array, target) -> dict[str, float]:
    """SW_2, MMD^2, Sinkhorn divergence and modes recovered of ``x`` against ground truth ``y``.

    ``target`` is a :class:`revflow.toy.targets.Target` (mode centres and radius). Non-finite
    model samples, or a distance that comes out non-finite, give ``inf`` (a diverged model
    must not score well). Samples farther than ``DIVERGED_NORM`` (1e3) from the origin mark
    the model as diverged: the Sinkhorn divergence is then reported as ``inf`` without
    running the solver (which would spend its 3000 iterations on costs of ~1e20).
    """
    x = np.asarray(x, np.float32)
    finite = bool(np.all(np.isfinite(x)))
    out: dict[str, float] = {}
    if finite:
        out["sw"] = float(sliced_wasserstein(key, x, y))
        out["mmd2"] = float(mmd2(x, y))
        diverged = bool(np.max(np.linalg.norm(x, axis=1)) > DIVERGED_NORM)
        out["sinkhorn"] = float("inf") if diverged else float(sinkhorn_divergence(x, y))
        out = {k: (v if np.isfinite(v) else float("inf")) for k, v in out.items()}
        out["modes"] = modes_recovered(x, target.mode_centers, target.mode_radius)
    else:
        out.update(sw=float("inf"), mmd2=float("inf"), sinkhorn=float("inf"), modes=0)
    out["modes_total"] = target.num_modes
    return out
