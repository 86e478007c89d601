"""Probability paths x_t = alpha_t * x1 + beta_t * x0 and the affine maps between targets.

Method note §2. Time runs from noise (t = 0, x_t = x0 ~ N(0, I)) to data (t = 1, x_t = x1),
for every path here, diffusion paths included (their usual "diffusion time" is tau = 1 - t).

Every regression target (velocity, eps = E[x0 | x_t], x1-prediction, score) is an affine
function of one posterior mean mu1 = E[x1 | x_t]; the ``*_to_x1`` / ``x1_to_*`` functions
below are those maps, and :func:`convert` chains them.

All methods are pure jax functions, vectorised over ``t`` by broadcasting.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

Parameterisation = Literal["velocity", "eps", "x1", "score"]
PARAMETERISATIONS: tuple[str, ...] = ("velocity", "eps", "x1", "score")


@runtime_checkable
class Path(Protocol):
    """A probability path: coefficients and their time derivatives."""

    name: str

    def alpha(self, t: ArrayLike) -> Array: ...
    def beta(self, t: ArrayLike) -> Array: ...
    def d_alpha(self, t: ArrayLike) -> Array: ...
    def d_beta(self, t: ArrayLike) -> Array: ...


def _f(t: ArrayLike) -> Array:
    return jnp.asarray(t, dtype=jnp.result_type(float))


@dataclasses.dataclass(frozen=True)
class Linear:
    """Rectified flow / conditional OT path: alpha_t = t, beta_t = 1 - t."""

    name: str = dataclasses.field(default="linear", init=False)

    def alpha(self, t: ArrayLike) -> Array:
        return _f(t)

    def beta(self, t: ArrayLike) -> Array:
        return 1.0 - _f(t)

    def d_alpha(self, t: ArrayLike) -> Array:
        return jnp.ones_like(_f(t))

    def d_beta(self, t: ArrayLike) -> Array:
        return -jnp.ones_like(_f(t))


@dataclasses.dataclass(frozen=True)
class VPCosine:
    """Variance-preserving path with the cosine schedule (Nichol & Dhariwal, 2021).

    In diffusion time tau = 1 - t:
    alpha_bar(tau) = cos^2(pi/2 (tau + s)/(1 + s)) / cos^2(pi/2 s/(1+s)),
    alpha_t = sqrt(alpha_bar(1 - t)), beta_t = sqrt(1 - alpha_t^2).
    """

    s: float = 0.008
    name: str = dataclasses.field(default="vp-cosine", init=False)

    def _phase(self, t: ArrayLike) -> Array:
        return 0.5 * math.pi * ((1.0 - _f(t)) + self.s) / (1.0 + self.s)

    def alpha(self, t: ArrayLike) -> Array:
        norm = math.cos(0.5 * math.pi * self.s / (1.0 + self.s))
        return jnp.clip(jnp.cos(self._phase(t)) / norm, 0.0, 1.0)

    def beta(self, t: ArrayLike) -> Array:
        a = self.alpha(t)
        return jnp.sqrt(jnp.clip(1.0 - a * a, 0.0, 1.0))

    def d_alpha(self, t: ArrayLike) -> Array:
        norm = math.cos(0.5 * math.pi * self.s / (1.0 + self.s))
        return jnp.sin(self._phase(t)) * (0.5 * math.pi / (1.0 + self.s)) / norm

    def d_beta(self, t: ArrayLike) -> Array:
        a, b = self.alpha(t), self.beta(t)
        return -a * self.d_alpha(t) / jnp.maximum(b, 1e-12)


@dataclasses.dataclass(frozen=True)
class VPLinear:
    """Variance-preserving path with the linear beta schedule of DDPM / VP-SDE.

    beta(tau) = beta_min + tau (beta_max - beta_min), alpha_bar(tau) = exp(-int_0^tau beta),
    alpha_t = sqrt(alpha_bar(1 - t)). alpha_0 = exp(-(beta_min + beta_max)/4) ~ 0.0066, not 0.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    name: str = dataclasses.field(default="vp-linear", init=False)

    def _log_alpha(self, t: ArrayLike) -> Array:
        tau = 1.0 - _f(t)
        return -0.5 * (self.beta_min * tau + 0.5 * (self.beta_max - self.beta_min) * tau**2)

    def alpha(self, t: ArrayLike) -> Array:
        return jnp.exp(self._log_alpha(t))

    def beta(self, t: ArrayLike) -> Array:
        return jnp.sqrt(-jnp.expm1(2.0 * self._log_alpha(t)))

    def d_alpha(self, t: ArrayLike) -> Array:
        tau = 1.0 - _f(t)
        # d/dt log alpha = -d/dtau log alpha = 0.5 * beta(tau)
        return self.alpha(t) * 0.5 * (self.beta_min + tau * (self.beta_max - self.beta_min))

    def d_beta(self, t: ArrayLike) -> Array:
        a, b = self.alpha(t), self.beta(t)
        return -a * self.d_alpha(t) / jnp.maximum(b, 1e-12)


@dataclasses.dataclass(frozen=True)
class VE:
    """Variance-exploding path: alpha_t = 1, beta_t = sigma_max^(1-t) * sigma_min^t.

    Method note §2 ("reverse time convention"): the noise level decreases geometrically from
    sigma_max at t = 0 to sigma_min at t = 1, so t = 1 is (almost) data as for the other paths.
    Samplers start from N(0, sigma_max^2 I).
    """

    sigma_min: float = 0.01
    sigma_max: float = 10.0
    name: str = dataclasses.field(default="ve", init=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"VE needs 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min}, "
                f"sigma_max={self.sigma_max}"
            )

    def alpha(self, t: ArrayLike) -> Array:
        return jnp.ones_like(_f(t))

    def beta(self, t: ArrayLike) -> Array:
        t = _f(t)
        return self.sigma_max ** (1.0 - t) * self.sigma_min**t

    def d_alpha(self, t: ArrayLike) -> Array:
        return jnp.zeros_like(_f(t))

    def d_beta(self, t: ArrayLike) -> Array:
        return self.beta(t) * math.log(self.sigma_min / self.sigma_max)


PATHS: dict[str, type] = {"linear": Linear, "vp-cosine": VPCosine, "vp-linear": VPLinear, "ve": VE}


def make_path(name: str, **kwargs: float) -> Path:
    """Build a path by name: one of ``linear``, ``vp-cosine``, ``vp-linear``, ``ve``."""
    if name not in PATHS:
        raise ValueError(f"unknown path {name!r}; available: {', '.join(sorted(PATHS))}")
    return PATHS[name](**kwargs)


# --------------------------------------------------------------------------------------------
# Conversions between parameterisations (method note §2). ``t`` broadcasts against the
# leading dimensions of ``x_t``: a scalar, or shape x_t.shape[:-1].


def _coef(fn, t: ArrayLike, x_t: Array) -> Array:
    c = fn(t)
    return c[..., None] if c.ndim and c.ndim == x_t.ndim - 1 else c


def x1_to_eps(path: Path, t: ArrayLike, x_t: Array, x1: Array) -> Array:
    """eps-target E[x0 | x_t] = (x_t - alpha_t mu1) / beta_t."""
    return (x_t - _coef(path.alpha, t, x_t) * x1) / _coef(path.beta, t, x_t)


def eps_to_x1(path: Path, t: ArrayLike, x_t: Array, eps: Array) -> Array:
    """mu1 = (x_t - beta_t E[x0 | x_t]) / alpha_t."""
    return (x_t - _coef(path.beta, t, x_t) * eps) / _coef(path.alpha, t, x_t)


def x1_to_velocity(path: Path, t: ArrayLike, x_t: Array, x1: Array) -> Array:
    """v_t = alpha'_t mu1 + beta'_t (x_t - alpha_t mu1) / beta_t."""
    return _coef(path.d_alpha, t, x_t) * x1 + _coef(path.d_beta, t, x_t) * x1_to_eps(
        path, t, x_t, x1
    )


def velocity_to_x1(path: Path, t: ArrayLike, x_t: Array, v: Array) -> Array:
    """Invert :func:`x1_to_velocity`: mu1 = (beta v - beta' x_t) / (alpha' beta - beta' alpha)."""
    a, b = _coef(path.alpha, t, x_t), _coef(path.beta, t, x_t)
    da, db = _coef(path.d_alpha, t, x_t), _coef(path.d_beta, t, x_t)
    return (b * v - db * x_t) / (da * b - db * a)


def x1_to_score(path: Path, t: ArrayLike, x_t: Array, x1: Array) -> Array:
    """grad log p_t(x_t) = -E[x0 | x_t] / beta_t."""
    return -x1_to_eps(path, t, x_t, x1) / _coef(path.beta, t, x_t)


def score_to_x1(path: Path, t: ArrayLike, x_t: Array, score: Array) -> Array:
    """mu1 from the score: E[x0 | x_t] = -beta_t * score."""
    return eps_to_x1(path, t, x_t, -_coef(path.beta, t, x_t) * score)


_TO_X1 = {
    "x1": lambda p, t, x, y: y,
    "eps": eps_to_x1,
    "velocity": velocity_to_x1,
    "score": score_to_x1,
}
_FROM_X1 = {
    "x1": lambda p, t, x, y: y,
    "eps": x1_to_eps,
    "velocity": x1_to_velocity,
    "score": x1_to_score,
}


def convert(path: Path, t: ArrayLike, x_t: Array, value: Array, src: str, dst: str) -> Array:
    """Convert a prediction between parameterisations ``velocity | eps | x1 | score``."""
    for name in (src, dst):
        if name not in _TO_X1:
            raise ValueError(
                f"unknown parameterisation {name!r}; available: {', '.join(PARAMETERISATIONS)}"
            )
    return _FROM_X1[dst](path, t, x_t, _TO_X1[src](path, t, x_t, value))
