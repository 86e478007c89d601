"""Closed-form posteriors for isotropic Gaussian-mixture targets (method note §3).

For p1 = sum_k pi_k N(m_k, s_k^2 I) and the reverse proposal N(x_t/alpha_t, (beta_t/alpha_t)^2 I)
the posterior q(x1 | x_t) is again a mixture, with weights
pi_k N(x_t/alpha_t; m_k, (s_k^2 + r^2) I) (r = beta_t/alpha_t), component variances
v_k = 1/(1/s_k^2 + 1/r^2) and means v_k (m_k/s_k^2 + x_t/(alpha_t r^2)). The estimator tests
and the estimator benchmark compare against it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixture:
    """Isotropic Gaussian mixture; ``weights`` (K,), ``means`` (K, D), ``stds`` (K,)."""

    weights: tuple[float, ...]
    means: tuple[tuple[float, ...], ...]
    stds: tuple[float, ...]

    def __post_init__(self) -> None:
        w, m, s = self.arrays()
        if not (w.ndim == 1 and m.ndim == 2 and s.shape == w.shape == m.shape[:1]):
            raise ValueError(
                f"mixture needs weights (K,), means (K, D), stds (K,); got {w.shape}, "
                f"{m.shape}, {s.shape}"
            )
        if np.any(w <= 0) or np.any(s <= 0):
            raise ValueError(f"weights and stds must be > 0, got {w}, {s}")

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w = np.asarray(self.weights, np.float64)
        return w / w.sum(), np.asarray(self.means, np.float64), np.asarray(self.stds, np.float64)

    @property
    def dim(self) -> int:
        return len(self.means[0])

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Normalised log density at one point x of shape (D,); jittable."""
        w, m, s = self.arrays()
        sq = jnp.sum((x[None, :] - m) ** 2, axis=-1)
        comp = -0.5 * sq / s**2 - self.dim * jnp.log(s * np.sqrt(2 * np.pi)) + jnp.log(w)
        return jax.scipy.special.logsumexp(comp)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        w, m, s = self.arrays()
        k = rng.choice(len(w), size=n, p=w)
        return m[k] + s[k, None] * rng.standard_normal((n, self.dim))

    def posterior_mean(self, x_t: np.ndarray, alpha: float, beta: float) -> np.ndarray:
        """E[x1 | x_t] exactly, for one point x_t of shape (D,)."""
        w, m, s = self.arrays()
        x_t = np.asarray(x_t, np.float64)
        r2 = (beta / alpha) ** 2
        y = x_t / alpha
        var_marg = s**2 + r2
        logw = (
            np.log(w)
            - 0.5 * np.sum((y - m) ** 2, -1) / var_marg
            - 0.5 * self.dim * np.log(var_marg)
        )
        post_w = np.exp(logw - logw.max())
        post_w /= post_w.sum()
        v = 1.0 / (1.0 / s**2 + 1.0 / r2)
        return post_w @ ((m / s[:, None] ** 2 + y / r2) * v[:, None])
