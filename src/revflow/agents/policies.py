"""Policy objects: how an agent's actor network becomes actions (sampling, log-likelihood,
particle picks), apart from how it is trained.

- :class:`LatentPolicy`: a flow or diffusion model in the tanh latent u (action a = tanh u),
  the policy of every generative agent. Sampling is :mod:`revflow.samplers` (flow ODE, DDPM,
  DDIM, optionally kept in the latent box), the log-likelihood the exact change of variables
  of the deterministic sampler (:func:`sampler_log_prob`), and one action per state is picked
  among particles by a critic (``boltzmann`` / ``best`` / ``sample``).
- :class:`GaussianPolicy`: a tanh-squashed diagonal Gaussian (SAC).

Both are frozen dataclasses of static choices and flax modules; every method is a pure
function of the parameters passed in.

Noise end of diffusion samplers. On VP paths alpha_t -> 0 as t -> 0, and the first
sampler step multiplies the network's eps error by ~alpha_{t_1}/alpha_{t_0}. In the
unbounded tanh latent that error is not clipped: measured on Pendulum after 200 updates
(qne fast, 10 steps), starting at t_min = 1e-3 gave latent samples with median |u| ~ 170
(saturated actions, log pi ~ +460), starting at 0.02 median |u| ~ 0.9. The diffusion agents
therefore start at t_min = 0.02 (a choice: the published t_min = 1e-3 of QNE is the DATA end
in diffusion time, our t_max = 1 - 1e-3).

Log-likelihood (:meth:`LatentPolicy.sample_with_log_prob`). a' is drawn with the
DETERMINISTIC version of the policy sampler (probability-flow DDIM for diffusion, the
Euler/Heun ODE for flows) from u(t_min) ~ N(0, s0^2 I), s0^2 = alpha_{t_min}^2 +
beta_{t_min}^2, and its latent density is the exact change of variables of that discrete map,

    log p(u_N) = log N(u_0; 0, s0^2 I) - sum_k log |det d u_{k+1} / d u_k|,

with each step's D x D Jacobian computed exactly by D forward-mode JVPs through the network
(``jax.linearize``) and ``slogdet``; then log pi(a') = log p(u_N) - sum_j log sech^2(u_N,j).
This is the discrete counterpart of the instantaneous change-of-variables integral
-int div v dt along the probability-flow ODE. The exact Jacobian is used rather than a
Hutchinson trace estimate because the DDIM steps of a 20-step VP-cosine sampler are NOT small
near t = 0 (the first step's Jacobian is ~ I - 0.98 I), so log det(I + M) ~ tr(M) is badly
biased there, while D JVPs per step cost about as much as D Hutchinson probes for the action
sizes of DMC/MuJoCo (D <= 17) and carry no estimator noise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from revflow.agents.base import Array
from revflow.estimators import log_sech2
from revflow.networks import VelocityNet
from revflow.paths import Path, convert
from revflow.samplers import (
    ddim_sample,
    ddim_step,
    ddpm_sample,
    flow_ode_sample,
    flow_step,
    select_argmax,
    select_boltzmann,
)

__all__ = [
    "LATENT_BOUND",
    "PICKS",
    "REPLAY_CLIP",
    "GaussianPolicy",
    "LatentPolicy",
    "replay_latent",
    "sampler_log_prob",
    "squashed_gaussian",
]

#: How one action per state is chosen among particles.
PICKS: tuple[str, ...] = ("boltzmann", "best", "sample")
#: Replayed actions are clipped to +-REPLAY_CLIP before atanh (atanh(0.999) ~ 3.8).
REPLAY_CLIP = 0.999
#: Bound of the latent box of clipped samplers: |u_j| <= atanh(REPLAY_CLIP).
LATENT_BOUND = math.atanh(REPLAY_CLIP)

QFn = Callable[[Array, Array], Array]  # (obs, action) -> min_k Q_k(s, a), broadcasting


def replay_latent(action: Array) -> Array:
    """u = atanh(clip(a, +-REPLAY_CLIP)): a replayed action in the tanh latent."""
    return jnp.arctanh(jnp.clip(action, -REPLAY_CLIP, REPLAY_CLIP))


def sampler_log_prob(
    step_fn: Callable[[Array, Array], Array],
    x_init: Array,
    log_p_init: Array,
    num_steps: int,
) -> tuple[Array, Array]:
    """Push ``x_init`` (B, D) through ``num_steps`` deterministic steps ``x <- step_fn(k, x)``
    and track the exact log density: ``log p <- log p - log|det d step / d x|`` per row.

    ``step_fn`` must act row-wise (row b of the output depends only on row b of x); each
    row's D x D Jacobian is built from D JVPs. Returns ``(x_N, log p(x_N))`` of shapes
    (B, D), (B,). Module docstring: the discrete change of variables of the sampler.
    """
    d = x_init.shape[-1]
    basis = jnp.broadcast_to(jnp.eye(d, dtype=x_init.dtype)[:, None, :], (d, *x_init.shape))

    def body(carry: tuple[Array, Array], k: Array) -> tuple[tuple[Array, Array], None]:
        x, logp = carry
        x_next, jvp_fn = jax.linearize(lambda y: step_fn(k, y), x)
        cols = jax.vmap(jvp_fn)(basis)  # (D_in, B, D_out): column j of every row's Jacobian
        jac = jnp.moveaxis(cols, 0, -1)  # (B, D_out, D_in)
        _, logdet = jnp.linalg.slogdet(jac)
        return (x_next, logp - logdet), None

    (x, logp), _ = jax.lax.scan(body, (x_init, log_p_init), jnp.arange(num_steps))
    return x, logp


@dataclasses.dataclass(frozen=True)
class LatentPolicy:
    """A flow (``kind="flow"``: Euler/Heun ODE from t_min to t_max) or diffusion
    (``kind="diffusion"``: DDPM/DDIM from t_min to 1) policy in the tanh latent, on ``path``,
    with the network output in ``parameterisation``; ``clip`` (None | "iterate" | "endpoint")
    keeps a diffusion sampler in the latent box |u| <= LATENT_BOUND."""

    net: VelocityNet
    path: Path
    act_dim: int
    kind: str
    sampler: str
    num_steps: int
    t_min: float
    t_max: float
    parameterisation: str
    time_scale: float = 1.0
    clip: str | None = None

    def init(self, key: Array, obs_dim: int) -> Any:
        """Network parameters (their values do not depend on the dummy inputs)."""
        obs = jnp.zeros((1, obs_dim), jnp.float32)
        act = jnp.zeros((1, self.act_dim), jnp.float32)
        return self.net.init(key, 0.5, act, obs, 1.0)

    @property
    def init_scale(self) -> float:
        """Std of the diffusion sampler's start: the marginal std at t_min for x1 ~ N(0, I)."""
        with jax.ensure_compile_time_eval():
            a0, b0 = self.path.alpha(self.t_min), self.path.beta(self.t_min)
            return float(jnp.sqrt(a0**2 + b0**2))

    def _time(self, t: Array) -> Array:
        return t if self.time_scale == 1.0 else self.time_scale * t

    def predictor(self, params: Any, obs: Array, lam: Array) -> Callable[[Array, Array], Array]:
        """``predict(t, u_t)``: the network's raw output for rows conditioned on ``obs``."""

        def predict(t: Array, x: Array) -> Array:
            return self.net.apply(params, self._time(t), x, obs, lam)

        return predict

    def _net_as(self, params: Any, t: Array, u: Array, lam: Array, feats: Array, dst: str):
        """The network's output at scalar t, converted to parameterisation ``dst``."""
        out = self.net.apply(params, self._time(t), u, lam=lam, cond_features=feats)
        if self.parameterisation == dst:
            return out
        return convert(self.path, t, u, out, self.parameterisation, dst)

    def noisy_points(self, key_t: Array, key_eps: Array, u1: Array) -> tuple[Array, Array]:
        """t ~ U[t_min, t_max] per row and u_t = alpha_t u1 + beta_t eps."""
        t = jax.random.uniform(key_t, (u1.shape[0],), minval=self.t_min, maxval=self.t_max)
        eps = jax.random.normal(key_eps, u1.shape, u1.dtype)
        u_t = self.path.alpha(t)[:, None] * u1 + self.path.beta(t)[:, None] * eps
        return t, u_t

    def sample(self, params: Any, key: Array, obs: Array, lam: Array, num_particles: int):
        """Latent samples u1 of shape (B, N, act_dim) for obs (B, obs_dim).

        The state's first-layer product is computed once per state and t/lam are scalars,
        so their embedding products are computed once per step (method note §7).
        """
        feats = self.net.apply(params, obs, method=VelocityNet.embed_cond)[:, None, :]
        shape = (obs.shape[0], num_particles, self.act_dim)
        if self.kind == "flow":
            u0 = jax.random.normal(key, shape, obs.dtype)

            def velocity(t: Array, u: Array) -> Array:
                return self._net_as(params, t, u, lam, feats, "velocity")

            return flow_ode_sample(
                velocity, u0, self.num_steps, self.t_min, self.t_max, self.sampler, unroll=True
            )
        k_init, k_steps = jax.random.split(key)
        u_init = self.init_scale * jax.random.normal(k_init, shape, obs.dtype)

        def eps_fn(t: Array, u: Array) -> Array:
            return self._net_as(params, t, u, lam, feats, "eps")

        box = {"clip": self.clip, "bound": LATENT_BOUND}
        if self.sampler == "ddim":
            return ddim_sample(eps_fn, u_init, self.path, self.num_steps, self.t_min, 1.0, **box)
        return ddpm_sample(
            eps_fn, k_steps, u_init, self.path, self.num_steps, self.t_min, 1.0, **box
        )

    def sample_with_log_prob(
        self, params: Any, key: Array, obs: Array, lam: Array
    ) -> tuple[Array, Array]:
        """One latent sample per state from the deterministic sampler and its exact latent
        log density (module docstring): ``(u (B, D), log p(u) (B,))``."""
        feats = self.net.apply(params, obs, method=VelocityNet.embed_cond)
        shape = (obs.shape[0], self.act_dim)
        n = self.num_steps
        if self.kind == "flow":
            scale, t_end = 1.0, self.t_max
        else:
            scale, t_end = self.init_scale, 1.0
        ts = self.t_min + (t_end - self.t_min) * jnp.arange(n + 1, dtype=jnp.float32) / n
        u_init = scale * jax.random.normal(key, shape, obs.dtype)
        log_p0 = jnp.sum(
            -0.5 * (u_init / scale) ** 2 - 0.5 * math.log(2 * math.pi) - math.log(scale), -1
        )
        if self.kind == "flow":
            velocity = flow_step(
                self.sampler, lambda t, u: self._net_as(params, t, u, lam, feats, "velocity")
            )

            def step(k: Array, u: Array) -> Array:
                return velocity(u, ts[k], ts[k + 1])
        else:

            def step(k: Array, u: Array) -> Array:
                def eps_fn(t: Array, x: Array) -> Array:
                    return self._net_as(params, t, x, lam, feats, "eps")

                return ddim_step(self.path, eps_fn, u, ts[k], ts[k + 1])

        return sampler_log_prob(step, u_init, log_p0, n)

    def log_pi(self, params: Any, key: Array, obs: Array, lam: Array) -> tuple[Array, Array]:
        """``(u, log pi(tanh u | s))``: :meth:`sample_with_log_prob` with the tanh Jacobian."""
        u, logp_u = self.sample_with_log_prob(params, key, obs, lam)
        return u, logp_u - jnp.sum(log_sech2(u), axis=-1)

    def pick(
        self,
        params: Any,
        key: Array,
        obs: Array,
        lam: Array,
        q_fn: QFn,
        pick: str,
        num_particles: int,
    ) -> tuple[Array, Array]:
        """Latent actions (B, act_dim) and their min-Q, chosen among ``num_particles``
        samples by ``pick`` (``boltzmann``: prob. softmax(Q/lam); ``best``: highest Q;
        ``sample``: one draw)."""
        if pick not in PICKS:
            raise ValueError(f"unknown particle pick {pick!r}; expected one of {PICKS}")
        k_particles, k_pick = jax.random.split(key)
        n = 1 if pick == "sample" else num_particles
        u = self.sample(params, k_particles, obs, lam, n)
        q = q_fn(obs[:, None, :], jnp.tanh(u))  # (B, N)
        if pick == "sample":
            return u[:, 0], q[:, 0]
        if pick == "boltzmann":
            return _with_q(u, q, lambda uq: select_boltzmann(k_pick, uq, q / lam))
        return _with_q(u, q, lambda uq: select_argmax(uq, q))

    def best_of(
        self, params: Any, key: Array, obs: Array, lam: Array, q_fn: QFn, num_particles: int
    ) -> tuple[Array, Array]:
        """The highest-Q of ``num_particles`` samples drawn with ``key`` itself, and its Q."""
        u = self.sample(params, key, obs, lam, num_particles)
        q = q_fn(obs[:, None, :], jnp.tanh(u))
        return _with_q(u, q, lambda uq: select_argmax(uq, q))


def _with_q(u: Array, q: Array, select: Callable[[Array], Array]) -> tuple[Array, Array]:
    """Select a particle and its Q together: Q rides along as an extra coordinate."""
    picked = select(jnp.concatenate([u, q[..., None]], axis=-1))
    return picked[..., :-1], picked[..., -1]


def squashed_gaussian(
    mean: Array, log_std: Array, key: Array, log_det_eps: float = 0.0
) -> tuple[Array, Array]:
    """Sample ``a = tanh(u)``, ``u ~ N(mean, exp(log_std)^2)``, and ``log pi(a)`` (summed).

    The tanh correction is the exact ``log sech^2(u)``, or ``log(1 - a^2 + log_det_eps)``
    when ``log_det_eps > 0`` (the authors', CleanRL's and SB3's form)."""
    std = jnp.exp(log_std)
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + std * eps
    action = jnp.tanh(u)
    log_prob_u = -0.5 * eps**2 - log_std - 0.5 * math.log(2.0 * math.pi)
    if log_det_eps > 0:
        log_det = jnp.log(1.0 - action**2 + log_det_eps)
    else:
        log_det = log_sech2(u)  # log |d tanh(u) / du|
    return action, jnp.sum(log_prob_u - log_det, axis=-1)


@dataclasses.dataclass(frozen=True)
class GaussianPolicy:
    """A tanh-squashed diagonal Gaussian: ``net(obs)`` gives (mean, raw log-std); the log-std
    is kept in [log_std_min, log_std_max] by a hard ``clip`` or squashed by ``tanh``."""

    net: nn.Module
    log_std_min: float
    log_std_max: float
    log_std_bound: str
    log_det_eps: float

    def init(self, key: Array, obs_dim: int) -> Any:
        return self.net.init(key, jnp.zeros((1, obs_dim), jnp.float32))

    def dist(self, params: Any, obs: Array) -> tuple[Array, Array]:
        mean, raw = jnp.split(self.net.apply(params, obs), 2, axis=-1)
        lo, hi = self.log_std_min, self.log_std_max
        if self.log_std_bound == "clip":
            return mean, jnp.clip(raw, lo, hi)
        return mean, lo + 0.5 * (hi - lo) * (jnp.tanh(raw) + 1.0)

    def sample(self, params: Any, obs: Array, key: Array) -> tuple[Array, Array]:
        """``(a, log pi(a | s))`` for a batch of states: one reparameterised draw."""
        mean, log_std = self.dist(params, obs)
        return squashed_gaussian(mean, log_std, key, self.log_det_eps)

    def act(self, params: Any, key: Array, obs: Array, mode: str) -> Array:
        """``explore`` / ``sample``: a draw of the squashed Gaussian; ``best-of-n``: tanh(mean)."""
        mean, log_std = self.dist(params, obs)
        if mode == "best-of-n":
            return jnp.tanh(mean)
        if mode in ("explore", "sample"):
            return squashed_gaussian(mean, log_std, key, self.log_det_eps)[0]
        raise ValueError(f"unknown act mode {mode!r}; expected explore, sample or best-of-n")
