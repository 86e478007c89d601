"""2-D unnormalised target densities with exact ground-truth samplers (the toy of method note §6).

Each target p1 is given to the learner only through ``log_prob`` (an unnormalised log density of
ONE point of shape (2,), jittable and differentiable) -- exactly like exp(Q(s, a)/lam) in RL
(method note §1). ``sample`` draws exact i.i.d. ground-truth samples, used only for scoring.

Targets (all multimodal):

- ``two-moons``: the "two moons" energy of Rezende & Mohamed (2015, U1),
  E(z) = 0.5 ((|z| - 2) / 0.4)^2 - log(exp(-0.5 ((z_1 - 2)/0.6)^2) + exp(-0.5 ((z_1 + 2)/0.6)^2)),
  two crescents on the circle of radius 2 centred at (+-2, 0). Sampled exactly by rejection
  from N(0, 2^2 I) under a closed-form bound of p~/q (see :func:`_two_moons_log_bound`).
- ``ring``: equal mixture of 8 isotropic Gaussians (std 0.3) on the circle of radius 3.
- ``grid``: equal mixture of 4 x 4 isotropic Gaussians (std 0.3) at {-3, -1, 1, 3}^2.
- ``gmm40``: the 40-mode mixture of FAB and iDEM (:mod:`revflow.toy.gmm40`), a published
  target with published numbers; not in the toy's ``all`` (its scale, +-40, needs its own
  metric, W2).

The mixtures are sampled in closed form (component, then Gaussian). ``mode_centers`` and
``mode_radius`` feed :func:`revflow.toy.metrics.modes_recovered`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class Target:
    """A 2-D target: unnormalised log density, exact sampler and its modes.

    Attributes:
        name: registry name.
        description: one line for tables and figures.
        log_prob: x (2,) -> scalar unnormalised log density (jittable, differentiable).
        sampler: (key, n) -> (n, 2) exact i.i.d. samples.
        mode_centers: (M, 2) centres of the M modes.
        mode_radius: a sample within this distance of its nearest centre counts for that mode.
        extent: half-width of the square [-extent, extent]^2 used for plots and grid tests.
        data_scale: the normalisation of methods that work in coordinates of about [-1, 1]
            (iDEM's ``data_normalization_factor``); ``extent`` when not given.
    """

    name: str
    description: str
    log_prob: Callable[[Array], Array]
    sampler: Callable[[Array, int], Array]
    mode_centers: np.ndarray
    mode_radius: float
    extent: float
    data_scale: float | None = None

    @property
    def normalisation(self) -> float:
        return float(self.extent if self.data_scale is None else self.data_scale)

    @property
    def dim(self) -> int:
        return int(self.mode_centers.shape[1])

    @property
    def num_modes(self) -> int:
        return int(self.mode_centers.shape[0])

    def sample(self, key: Array, n: int) -> Array:
        """Exact samples, shape (n, 2)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self.sampler(key, int(n))


# --------------------------------------------------------------------------------------------
# Gaussian mixtures (normalised, closed form).


def _mixture(
    name: str,
    description: str,
    centers: np.ndarray,
    std: float,
    extent: float | None = None,
    data_scale: float | None = None,
) -> Target:
    centers = np.asarray(centers, dtype=np.float32)
    mus = jnp.asarray(centers)
    m = centers.shape[0]
    log_norm = -math.log(2.0 * math.pi * std**2) - math.log(m)

    def log_prob(x: Array) -> Array:
        d2 = jnp.sum((x[None, :] - mus) ** 2, axis=-1)
        return jax.scipy.special.logsumexp(-0.5 * d2 / std**2) + log_norm

    def sampler(key: Array, n: int) -> Array:
        k1, k2 = jax.random.split(key)
        comp = jax.random.randint(k1, (n,), 0, m)
        return mus[comp] + std * jax.random.normal(k2, (n, 2))

    if extent is None:
        extent = float(np.max(np.abs(centers)) + 4.0 * std + 0.3)
    return Target(name, description, log_prob, sampler, centers, 2.0 * std, extent, data_scale)


def _ring_centers(num: int = 8, radius: float = 3.0) -> np.ndarray:
    ang = 2.0 * np.pi * np.arange(num) / num
    return np.stack([radius * np.cos(ang), radius * np.sin(ang)], axis=-1)


def _grid_centers(side: int = 4, spacing: float = 2.0) -> np.ndarray:
    ticks = spacing * (np.arange(side) - (side - 1) / 2.0)
    xx, yy = np.meshgrid(ticks, ticks, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=-1)


# --------------------------------------------------------------------------------------------
# Two moons (Rezende & Mohamed 2015, U1), exact rejection sampling.

_TM_RADIUS, _TM_RADIAL_STD, _TM_LOBE_STD = 2.0, 0.4, 0.6
_TM_PROPOSAL_STD = 2.0


def _two_moons_log_prob(z: Array) -> Array:
    # Smooth |z| (the +1e-12 keeps the gradient finite at the origin).
    r = jnp.sqrt(jnp.sum(z * z) + 1e-12)
    radial = -0.5 * ((r - _TM_RADIUS) / _TM_RADIAL_STD) ** 2
    lobes = jnp.stack(
        [
            -0.5 * ((z[0] - _TM_RADIUS) / _TM_LOBE_STD) ** 2,
            -0.5 * ((z[0] + _TM_RADIUS) / _TM_LOBE_STD) ** 2,
        ]
    )
    return radial + jax.scipy.special.logsumexp(lobes)


def _two_moons_log_bound(s: float = _TM_PROPOSAL_STD) -> float:
    """Upper bound of log p~(z) - log N(z; 0, s^2 I) over R^2.

    The lobe term is at most log 2 (each exponential <= 1), so the ratio is at most
    h(r) = log 2 - (r - R)^2 / (2 sr^2) + r^2 / (2 s^2) + log(2 pi s^2), a concave quadratic
    in r when s > sr, maximised at r* = (R / sr^2) / (1 / sr^2 - 1 / s^2).
    """
    sr2 = _TM_RADIAL_STD**2
    assert s * s > sr2
    r_star = (_TM_RADIUS / sr2) / (1.0 / sr2 - 1.0 / (s * s))
    return (
        math.log(2.0)
        - (r_star - _TM_RADIUS) ** 2 / (2.0 * sr2)
        + r_star**2 / (2.0 * s * s)
        + math.log(2.0 * math.pi * s * s)
    )


_TM_LOG_BOUND = _two_moons_log_bound()


@jax.jit
def _two_moons_propose(key: Array) -> tuple[Array, Array]:
    """4096 proposals from N(0, s^2 I) and their acceptance flags."""
    k1, k2 = jax.random.split(key)
    s = _TM_PROPOSAL_STD
    z = s * jax.random.normal(k1, (4096, 2))
    log_q = -0.5 * jnp.sum(z * z, axis=-1) / s**2 - math.log(2.0 * math.pi * s * s)
    log_ratio = jax.vmap(_two_moons_log_prob)(z) - log_q - _TM_LOG_BOUND
    accept = jnp.log(jax.random.uniform(k2, (4096,))) < log_ratio
    return z, accept


def _two_moons_sampler(key: Array, n: int) -> Array:
    out, have = [], 0
    while have < n:
        key, sub = jax.random.split(key)
        z, accept = _two_moons_propose(sub)
        z = np.asarray(z)[np.asarray(accept)]
        out.append(z)
        have += z.shape[0]
    return jnp.asarray(np.concatenate(out, axis=0)[:n] if out else np.zeros((0, 2), np.float32))


def _two_moons() -> Target:
    centers = np.array([[_TM_RADIUS, 0.0], [-_TM_RADIUS, 0.0]], dtype=np.float32)
    return Target(
        "two-moons",
        "two moons (Rezende & Mohamed U1 energy)",
        _two_moons_log_prob,
        _two_moons_sampler,
        centers,
        1.5,
        3.5,
    )


def _gmm40() -> Target:
    from revflow.toy import gmm40

    return _mixture(
        "gmm40",
        "GMM-40 of FAB / iDEM (40 modes in [-40, 40]^2, std 1.31)",
        gmm40.gmm40_means(),
        gmm40.COMPONENT_STD,
        extent=56.0,  # DEM's plotting bounds, 1.4 x 40
        data_scale=gmm40.DEM_NORMALIZATION,
    )


TARGETS: dict[str, Target] = {
    "two-moons": _two_moons(),
    "ring": _mixture("ring", "ring of 8 Gaussians (r=3, std 0.3)", _ring_centers(), 0.3),
    "grid": _mixture("grid", "4x4 grid of Gaussians (spacing 2, std 0.3)", _grid_centers(), 0.3),
    "gmm40": _gmm40(),
}
TOY_TARGETS: tuple[str, ...] = ("two-moons", "ring", "grid")  # ``revflow toy``'s "all"


def get_target(name: str) -> Target:
    """Look a target up by name; unknown names raise ValueError listing the available ones."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; available: {', '.join(TARGETS)}")
    return TARGETS[name]
