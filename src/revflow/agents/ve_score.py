"""A score policy on the variance-exploding path, as the authors' DQS runs it (baselines note,
"dqs"): the policy of ``dqs`` with ``policy_space="action"``.

- VE time t in [0, 1] (0 = data): the noise variance h(t) = sigma_min^2 (sigma_d^(2t) - 1)
  and the diffusion coefficient g(t) = sigma_min sigma_d^t sqrt(2 log sigma_d), g^2 = h',
  sigma_d = sigma_max / sigma_min (:func:`ve_h`, :func:`ve_g`). The noise std is sqrt(h(t)):
  0 at t = 0, ~sigma_max at t = 1.
- The network outputs the score itself and reads t as is (no time scale).
- Sampling (:meth:`VEScorePolicy.sample_with_noise`): x ~ sqrt(h(1)) N(0, I); at
  t_k = 1 - k/N, k = 0..N-1, Euler-Maruyama steps x <- x + g(t_k)^2 score dt +
  c g(t_k) sqrt(dt) z_k with dt = 1/N and c the diffusion scale (c = 0: the drift alone, the
  authors' evaluation). No clipping: acting squashes the result by tanh, while training
  noises replay actions, which lie in [-1, 1], with the same path.

Every function is pure; the ``*_with_noise`` form takes the draws explicitly (the fidelity
harness injects the authors' recorded draws), :meth:`VEScorePolicy.draws` draws them from a
key in the authors' order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from revflow.agents.base import Array
from revflow.agents.box_diffusion import state_hash_keys
from revflow.networks import VelocityNet

__all__ = ["VEScorePolicy", "ve_g", "ve_h"]


def ve_h(t: Array, sigma_min: float, sigma_d: float) -> Array:
    """The noise variance h(t) = sigma_min^2 (sigma_d^(2t) - 1) at VE times t."""
    return (sigma_min * jnp.sqrt(sigma_d ** (2.0 * jnp.asarray(t)) - 1.0)) ** 2


def ve_g(t: Array, sigma_min: float, sigma_d: float) -> Array:
    """The diffusion coefficient g(t) = sigma_min sigma_d^t sqrt(2 log sigma_d)."""
    return sigma_min * sigma_d ** jnp.asarray(t) * math.sqrt(2.0 * math.log(sigma_d))


@dataclasses.dataclass(frozen=True)
class VEScorePolicy:
    """A score network sampled by Euler-Maruyama on the VE path (module docstring); its
    samples are unsquashed (acting applies tanh)."""

    net: VelocityNet
    act_dim: int
    num_steps: int
    sigma_min: float
    sigma_max: float

    @property
    def sigma_d(self) -> float:
        return self.sigma_max / self.sigma_min

    def h(self, t: Array) -> Array:
        return ve_h(t, self.sigma_min, self.sigma_d)

    def g(self, t: Array) -> Array:
        return ve_g(t, self.sigma_min, self.sigma_d)

    def init(self, key: Array, obs_dim: int) -> Any:
        obs = jnp.zeros((1, obs_dim), jnp.float32)
        act = jnp.zeros((1, self.act_dim), jnp.float32)
        return self.net.init(key, jnp.zeros((1,)), act, obs, jnp.zeros((1,)))

    def score(self, params: Any, t: Array, x: Array, obs: Array, lam: Array) -> Array:
        """score_theta(t, x, s, lam) at rows x (..., D); t and lam broadcast to the rows."""
        rows = x.shape[:-1]
        t, lam = jnp.broadcast_to(t, rows), jnp.broadcast_to(lam, rows)
        return self.net.apply(params, t, x, obs, lam)

    def sample_with_noise(
        self, params: Any, obs: Array, lam: Array, x_init: Array, noise: Array, scale: Array
    ) -> Array:
        """Unsquashed samples (B, D) from x_init (B, D) ~ N(0, I) (scaled here by sqrt(h(1)))
        and ``noise`` (N, B, D), row k the noise of the step at t_k = 1 - k/N."""
        dt = 1.0 / self.num_steps
        times = jnp.linspace(1.0, 0.0, self.num_steps + 1)[:-1]

        def step(x: Array, inputs: tuple[Array, Array]) -> tuple[Array, None]:
            t, z = inputs
            g = self.g(t)
            drift = g**2 * self.score(params, t, x, obs, lam) * dt
            return x + drift + scale * g * math.sqrt(dt) * z, None

        x, _ = jax.lax.scan(step, x_init * jnp.sqrt(self.h(1.0)), (times, noise))
        return x

    def draws(self, key: Array, rows: int) -> tuple[Array, Array, Array]:
        """(x_init, noise, key after) from ``key`` in the authors' order: x_init from the key
        itself, then per step ``key, carry = split(key)``, the noise from ``key``."""
        x_init = jax.random.normal(key, (rows, self.act_dim), jnp.float32)

        def one(key: Array, _: Any) -> tuple[Array, Array]:
            k_noise, key = jax.random.split(key)
            return key, jax.random.normal(k_noise, (rows, self.act_dim), jnp.float32)

        key, noise = jax.lax.scan(one, key, None, length=self.num_steps)
        return x_init, noise, key

    def sample(self, params: Any, key: Array, obs: Array, lam: Array, scale: Array) -> Array:
        """One unsquashed sample per row of obs (B, obs_dim)."""
        x_init, noise, _ = self.draws(key, obs.shape[0])
        return self.sample_with_noise(params, obs, lam, x_init, noise, scale)

    def noise_free(self, params: Any, obs: Array, lam: Array) -> Array:
        """The authors' evaluation sample (unsquashed): x_init from a hash of each state,
        then the drift alone (scale 0)."""
        x_init = jax.vmap(lambda k: jax.random.normal(k, (self.act_dim,), jnp.float32))(
            state_hash_keys(obs)
        )
        noise = jnp.zeros((self.num_steps, *x_init.shape), jnp.float32)
        return self.sample_with_noise(params, obs, lam, x_init, noise, 0.0)

    def best_of_n(
        self, params: Any, key: Array, obs: Array, lam: Array, scale: Array, q_fn: Callable, n: int
    ) -> Array:
        """Per state, the squashed sample with the highest ``q_fn(obs, a)`` among n."""
        b = obs.shape[0]
        rep = jnp.repeat(obs, n, axis=0)
        cand = jnp.tanh(self.sample(params, key, rep, lam, scale)).reshape(b, n, -1)
        best = jnp.argmax(q_fn(obs[:, None, :], cand), axis=1)
        return jnp.take_along_axis(cand, best[:, None, None], axis=1)[:, 0]
