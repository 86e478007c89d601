"""A diffusion policy in the action box, as the authors' MaxEntDP, QSM and QVPO run it
(baselines note, "maxentdp (revflow: qne)", "qsm" and "qvpo"): the policy of ``qne``, ``qsm``
and ``qvpo`` with ``policy_space="box"``. The defaults are MaxEntDP's; QSM's and QVPO's
differences are options (below).

- Diffusion time tau (0 = data) on the cosine schedule abar(tau) = cos^2((tau + s)/(1 + s)
  pi/2) / cos^2(s/(1 + s) pi/2), s = 0.008, over [tau_min, tau_max] (:func:`cosine_tau_max`
  is the default tau_max); the sampler's grid is ``linspace(tau_min, tau_max, N + 1)``
  (:func:`cosine_schedule`).
- The eps network reads the log-SNR log abar - log(1 - abar) (abar clipped to
  [1e-5, 1 - 1e-5]) as its time input.
- Sampling (:meth:`BoxDiffusionPolicy.sample_with_noise`): x ~ N(0, I); for k = N-1 .. 0,
  x0 = clip((x - sqrt(1 - abar_k) eps)/sqrt(abar_k), -1, 1), then the DDPM posterior mean
  plus sqrt(beta_k) z for k > 0; the final x is clipped to [-1, 1]. No squashing.
- Log-likelihood (:meth:`BoxDiffusionPolicy.log_prob_with_noise`): the authors' discretised
  denoising estimate sum_j w_j (abar_j D - mean_s ||eps'_{s,j} - eps_{s,j}||^2) - (D/2)
  log(2 pi e), w_j = (abar'_j - abar_j)/(2 abar_j (1 - abar_j)), on a second grid of
  ``log_prob_steps`` points with ``log_prob_samples`` noises per point; stochastic.
- QSM's variant: the discrete VP-beta schedule of T steps (:func:`vp_beta_schedule`), the
  integer step k fed as the network's time input, and the eps form of the DDPM step,
  x <- (x - (1 - alpha_k)/sqrt(1 - abar_k) eps)/sqrt(alpha_k) + [k > 0] sqrt(beta_k) z, with
  the iterate itself clipped to [-1, 1] after every step (and once more at the end).
- Evaluation keys from a hash of the state (:func:`state_hash_keys`): the evaluation action is
  a fixed function of the state.

QVPO's options (``schedule_kind="ddpm-cosine"``, ``time_input="step"``, ``noise_std="posterior"``,
``temperature_input=False``, :class:`revflow.networks.StepDenoiserNet`): the discrete
T-step cosine schedule (abar at ``linspace(0, 1, T + 1)``, betas clipped to [0, 0.999],
abar_k their cumulative product, :func:`ddpm_cosine_schedule`), the integer step k as the
network's time input, the DDPM posterior std (log-variance floored at log 1e-20) as the
sampler's noise scale, no temperature input; best-of-n evaluation draws each candidate from
its own key (``split(state key, n)``), best-of-n acting and TD draw one batch of repeated
states (:meth:`BoxDiffusionPolicy.best_of_rows`).

Every function is pure; the ``*_with_noise`` forms take the draws explicitly (the fidelity
harness injects the authors' recorded draws), the key forms draw them in the authors' order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp

from revflow.agents.base import Array

__all__ = [
    "POLICY_SPACES",
    "BoxDiffusionPolicy",
    "PolicySpace",
    "Schedule",
    "cosine_alpha_hat",
    "cosine_schedule",
    "cosine_tau_max",
    "ddpm_coefficients",
    "ddpm_cosine_schedule",
    "log_snr",
    "state_hash_keys",
    "vp_beta_schedule",
]

#: Where an agent's diffusion policy lives: the action box (this module) or revflow's tanh
#: latent (:class:`revflow.agents.policies.LatentPolicy`).
PolicySpace = Literal["box", "latent"]
POLICY_SPACES: tuple[str, ...] = get_args(PolicySpace)
#: Offset s of the cosine schedule.
COSINE_S = 0.008
#: abar is clipped to [ABAR_EPS, 1 - ABAR_EPS] before the log-SNR.
ABAR_EPS = 1e-5
#: Discrete schedules (``BoxDiffusionPolicy.schedule_kind``): MaxEntDP's cosine on the tau
#: grid, QVPO's T-step DDPM cosine, QSM's VP-beta steps.
SCHEDULE_KINDS: tuple[str, ...] = ("cosine-tau", "ddpm-cosine", "vp-beta")
#: The network's time input: the log-SNR of the level (MaxEntDP) or the integer step (QSM,
#: QVPO).
TIME_INPUTS: tuple[str, ...] = ("log-snr", "step")
#: What the sampler clips to [-1, 1] (with ``clip``): the predicted x0 in every step
#: (MaxEntDP) or the iterate after every step (QSM); both clip the final sample.
CLIP_TARGETS: tuple[str, ...] = ("x0", "iterate")
#: The sampler's noise scale: sqrt(beta_k) (MaxEntDP, QSM) or DDPM's posterior std (QVPO).
NOISE_STDS: tuple[str, ...] = ("beta", "posterior")


def cosine_tau_max(s: float = COSINE_S, beta_max: float = 999.0) -> float:
    """The time where the cosine schedule's continuous beta reaches ``beta_max``."""
    return math.atan(beta_max * (1.0 + s) / math.pi) * 2.0 * (1.0 + s) / math.pi - s


def cosine_alpha_hat(tau: Array, s: float = COSINE_S) -> Array:
    """abar(tau) of the cosine schedule (module docstring)."""
    f = jnp.cos((jnp.asarray(tau) + s) / (1.0 + s) * jnp.pi * 0.5) ** 2
    f0 = jnp.cos(s / (1.0 + s) * jnp.pi * 0.5) ** 2
    return f / f0


def log_snr(alpha_hat: Array) -> Array:
    """log abar - log(1 - abar), abar clipped to [1e-5, 1 - 1e-5]: the network's time input."""
    alpha_hat = jnp.clip(alpha_hat, ABAR_EPS, 1.0 - ABAR_EPS)
    return jnp.log(alpha_hat) - jnp.log1p(-alpha_hat)


class Schedule(NamedTuple):
    """The discrete schedule of an N-step sampler: abar at the N + 1 grid points
    (``alpha_hat_prevs``), at the N upper points (``alpha_hats``), their ratios and 1 - ratios."""

    alpha_hat_prevs: Array
    alpha_hats: Array
    alphas: Array
    betas: Array


def cosine_schedule(num_steps: int, tau_min: float, tau_max: float) -> Schedule:
    """The cosine schedule on ``linspace(tau_min, tau_max, num_steps + 1)`` (float32)."""
    grid = jnp.linspace(tau_min, tau_max, num_steps + 1, dtype=jnp.float32)
    prevs = cosine_alpha_hat(grid)
    alpha_hats = prevs[1:]
    alphas = alpha_hats / prevs[:-1]
    return Schedule(prevs, alpha_hats, alphas, 1.0 - alphas)


def vp_beta_schedule(num_steps: int, b_min: float = 0.1, b_max: float = 10.0) -> Schedule:
    """QSM's discrete VP schedule: beta_k = 1 - exp(-b_min/T - (b_max - b_min)(2k - 1)/(2 T^2)),
    k = 1..T, alpha = 1 - beta, abar = cumprod(alpha); ``alpha_hat_prevs`` = [1, abar_0, ...]
    (float32, computed in the authors' order of operations)."""
    k = jnp.arange(1, num_steps + 1)
    betas = 1 - jnp.exp(-b_min / num_steps - 0.5 * (b_max - b_min) * (2 * k - 1) / num_steps**2)
    alphas = 1.0 - betas
    alpha_hats = jnp.cumprod(alphas, axis=0)
    prevs = jnp.concatenate([jnp.ones((1,), alpha_hats.dtype), alpha_hats])
    return Schedule(prevs, alpha_hats, alphas, betas)


def ddpm_cosine_schedule(num_steps: int, s: float = COSINE_S) -> Schedule:
    """The discrete cosine schedule of T = ``num_steps`` DDPM steps (module docstring): step k
    (0 = data end) has abar_k = prod_{j <= k} (1 - beta_j), abar'_k = abar_{k-1} (1 at k = 0)."""
    x = jnp.linspace(0.0, 1.0, num_steps + 1, dtype=jnp.float32)
    f = jnp.cos((x + s) / (1.0 + s) * jnp.pi * 0.5) ** 2
    f = f / f[0]
    betas = jnp.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    alphas = 1.0 - betas
    alpha_hats = jnp.cumprod(alphas)
    prevs = jnp.concatenate([jnp.ones((1,), jnp.float32), alpha_hats])
    return Schedule(prevs, alpha_hats, alphas, betas)


def ddpm_coefficients(sch: Schedule) -> dict[str, Array]:
    """The DDPM quantities of a schedule per step, under their usual names: the x0 map
    (``sqrt_recip_alphas_cumprod``, ``sqrt_recipm1_alphas_cumprod``), the forward process
    (``sqrt_alphas_cumprod``, ``sqrt_one_minus_alphas_cumprod``) and the posterior
    q(x_{k-1} | x_k, x0) (``posterior_mean_coef1`` of x0, ``posterior_mean_coef2`` of x_k,
    ``posterior_variance``, ``posterior_log_variance_clipped`` floored at log 1e-20)."""
    abar, prev = sch.alpha_hats, sch.alpha_hat_prevs[:-1]
    variance = sch.betas * (1.0 - prev) / (1.0 - abar)
    return {
        "betas": sch.betas,
        "alphas": sch.alphas,
        "alphas_cumprod": abar,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": jnp.sqrt(abar),
        "sqrt_one_minus_alphas_cumprod": jnp.sqrt(1.0 - abar),
        "sqrt_recip_alphas_cumprod": jnp.sqrt(1.0 / abar),
        "sqrt_recipm1_alphas_cumprod": jnp.sqrt(1.0 / abar - 1.0),
        "posterior_variance": variance,
        "posterior_log_variance_clipped": jnp.log(jnp.maximum(variance, 1e-20)),
        "posterior_mean_coef1": sch.betas * jnp.sqrt(prev) / (1.0 - abar),
        "posterior_mean_coef2": (1.0 - prev) * jnp.sqrt(sch.alphas) / (1.0 - abar),
    }


def state_hash_keys(obs: Array) -> Array:
    """One PRNG key per state (B, 2) from the float32 bits of its coordinates, mixed with the
    constants of the authors' evaluation rule and summed (a zero sum becomes 1)."""
    bits = jax.lax.bitcast_convert_type(obs.astype(jnp.float32), jnp.uint32)
    idx = jnp.arange(bits.shape[1], dtype=jnp.uint32)[None, :]
    x = bits + jnp.uint32(0x9E3779B9) * (idx + jnp.uint32(1))
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    x = x ^ (x >> 16)
    seeds = jnp.sum(x, axis=1, dtype=jnp.uint32)
    seeds = jnp.where(seeds == 0, jnp.uint32(1), seeds)
    return jax.vmap(jax.random.PRNGKey)(seeds)


@dataclasses.dataclass(frozen=True)
class BoxDiffusionPolicy:
    """An eps-prediction diffusion policy whose samples live in [-1, 1]^D (module docstring).
    ``clip`` clips (``clip_at``) x0 in every sampler and log-likelihood step, or the iterate
    after every sampler step, and the final sample; ``tau_min``, ``tau_max`` and ``log_prob_*``
    are read by the ``"cosine-tau"`` schedule and the log-likelihood only; the other fields
    select QSM's (:meth:`vp`) and QVPO's options (module docstring)."""

    net: Any  # VelocityNet, or StepDenoiserNet without temperature input
    act_dim: int
    num_steps: int
    tau_min: float = 1e-3
    tau_max: float = cosine_tau_max()
    log_prob_samples: int = 50
    log_prob_steps: int = 20
    clip: bool = True
    #: "cosine-tau" (MaxEntDP) | "ddpm-cosine" (QVPO) | "vp-beta" (QSM)
    schedule_kind: str = "cosine-tau"
    time_input: str = "log-snr"  # the net's time input: "log-snr" of abar | "step" k
    clip_at: str = "x0"  # what ``clip`` clips in a sampler step: "x0" | "iterate" (QSM)
    noise_std: str = "beta"  # sampler noise: "beta" (sqrt beta_k) | "posterior" (DDPM's)
    temperature_input: bool = True  # whether the net reads lam

    def __post_init__(self) -> None:
        for name, choices in (
            ("schedule_kind", SCHEDULE_KINDS),
            ("time_input", TIME_INPUTS),
            ("clip_at", CLIP_TARGETS),
            ("noise_std", NOISE_STDS),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")

    @classmethod
    def vp(cls, net: Any, act_dim: int, num_steps: int, clip: bool) -> BoxDiffusionPolicy:
        """QSM's variant (module docstring): VP-beta steps, the integer step as time input, the
        iterate clipped; it has no continuous time range and no log-likelihood (those are 0)."""
        return cls(
            net, act_dim, num_steps, tau_min=0.0, tau_max=0.0, log_prob_samples=0,
            log_prob_steps=0, clip=clip, schedule_kind="vp-beta", time_input="step",
            clip_at="iterate",
        )  # fmt: skip

    def init(self, key: Array, obs_dim: int) -> Any:
        obs = jnp.zeros((1, obs_dim), jnp.float32)
        act = jnp.zeros((1, self.act_dim), jnp.float32)
        lam = (1.0,) if self.temperature_input else ()
        return self.net.init(key, 0.5, act, obs, *lam)

    @property
    def schedule(self) -> Schedule:
        if self.schedule_kind == "vp-beta":
            return vp_beta_schedule(self.num_steps)
        if self.schedule_kind == "ddpm-cosine":
            return ddpm_cosine_schedule(self.num_steps)
        return cosine_schedule(self.num_steps, self.tau_min, self.tau_max)

    @property
    def log_prob_schedule(self) -> Schedule:
        return cosine_schedule(self.log_prob_steps, self.tau_min, self.tau_max)

    def _apply(self, params: Any, t: Array, x: Array, obs: Array, lam: Array) -> Array:
        if not self.temperature_input:
            return self.net.apply(params, t, x, obs)
        return self.net.apply(params, t, x, obs, jnp.broadcast_to(lam, x.shape[:-1]))

    def eps(self, params: Any, alpha_hat: Array, x: Array, obs: Array, lam: Array) -> Array:
        """eps_theta at rows x (..., D) of diffusion level abar (broadcast to the rows), the
        network reading its log-SNR."""
        t = jnp.broadcast_to(log_snr(alpha_hat), x.shape[:-1])
        return self._apply(params, t, x, obs, lam)

    def eps_at_step(
        self, params: Any, k: Array, x: Array, obs: Array, lam: Array, sch: Schedule | None = None
    ) -> Array:
        """eps_theta at rows x (..., D) of sampler step k (an integer, broadcast to the rows):
        the network reads k itself (``time_input="step"``) or the log-SNR of abar_k (of
        ``sch``, default :attr:`schedule`)."""
        if self.time_input != "step":
            sch = self.schedule if sch is None else sch
            return self.eps(params, sch.alpha_hats[k], x, obs, lam)
        t = jnp.broadcast_to(jnp.asarray(k).astype(jnp.float32), x.shape[:-1])
        return self._apply(params, t, x, obs, lam)

    def _x0(self, x: Array, alpha_hat: Array, eps: Array) -> Array:
        x0 = (x - jnp.sqrt(1.0 - alpha_hat) * eps) / jnp.sqrt(alpha_hat)
        return jnp.clip(x0, -1.0, 1.0) if self.clip and self.clip_at == "x0" else x0

    def _mean(self, x: Array, eps: Array, sch: Schedule, k: Array) -> Array:
        """The DDPM posterior mean of step k: from the (clipped) x0 when x0 is clipped, else
        in its eps form (equal in exact arithmetic)."""
        abar, abar_prev, alpha = sch.alpha_hats[k], sch.alpha_hat_prevs[k], sch.alphas[k]
        if self.clip_at != "x0":
            return (1.0 / jnp.sqrt(alpha)) * (x - (1.0 - alpha) / jnp.sqrt(1.0 - abar) * eps)
        x0 = self._x0(x, abar, eps)
        return (jnp.sqrt(abar_prev) * sch.betas[k] / (1.0 - abar)) * x0 + (
            jnp.sqrt(alpha) * (1.0 - abar_prev) / (1.0 - abar)
        ) * x

    def sample_with_noise(
        self, params: Any, obs: Array, lam: Array, x_init: Array, noise: Array
    ) -> Array:
        """Actions (B, D) from x_init (B, D) ~ N(0, I) and ``noise`` (N, B, D), row k the
        noise of sampler step N-1-k (the order of the draws)."""
        sch = self.schedule
        std = (
            jnp.exp(0.5 * ddpm_coefficients(sch)["posterior_log_variance_clipped"])
            if self.noise_std == "posterior"
            else jnp.sqrt(sch.betas)
        )

        def step(x: Array, inputs: tuple[Array, Array]) -> tuple[Array, None]:
            k, z = inputs
            mean = self._mean(x, self.eps_at_step(params, k, x, obs, lam, sch), sch, k)
            x = mean + jnp.where(k > 0, std[k] * z, 0.0)
            return (jnp.clip(x, -1.0, 1.0) if self.clip and self.clip_at == "iterate" else x), None

        ks = jnp.arange(self.num_steps - 1, -1, -1)
        x, _ = jax.lax.scan(step, x_init, (ks, noise))
        return jnp.clip(x, -1.0, 1.0) if self.clip else x

    def draws(self, key: Array, rows: int) -> tuple[Array, Array]:
        """The sampler's draws from ``key`` in the authors' order: x_init from the second half
        of ``split(key)``, then per step ``key, k_noise = split(key)``."""
        key, k_init = jax.random.split(key)
        x_init = jax.random.normal(k_init, (rows, self.act_dim), jnp.float32)

        def one(key: Array, _: Any) -> tuple[Array, Array]:
            key, k_noise = jax.random.split(key)
            return key, jax.random.normal(k_noise, (rows, self.act_dim), jnp.float32)

        _, noise = jax.lax.scan(one, key, None, length=self.num_steps)
        return x_init, noise

    def sample(self, params: Any, key: Array, obs: Array, lam: Array) -> Array:
        """One action per row of obs (B, obs_dim)."""
        return self.sample_with_noise(params, obs, lam, *self.draws(key, obs.shape[0]))

    def sample_per_key(self, params: Any, keys: Array, obs: Array, lam: Array) -> Array:
        """One action per state, each drawn from its own key (B, 2) as a batch of one."""
        return jax.vmap(lambda k, s: self.sample(params, k, s[None], lam)[0])(keys, obs)

    def best_of_n_with_noise(
        self, params: Any, obs: Array, lam: Array, q_fn: Callable, x_init: Array, noise: Array
    ) -> Array:
        """Per state, the candidate with the highest ``q_fn(obs, a)`` among n samples drawn
        from x_init (B, n, D) and noise (B, N, n, D)."""

        def one(s: Array, x0: Array, z: Array) -> Array:
            s_rep = jnp.broadcast_to(s[None], (x0.shape[0], s.shape[0]))
            cand = self.sample_with_noise(params, s_rep, lam, x0, z)
            return cand[jnp.argmax(q_fn(s_rep, cand))]

        return jax.vmap(one)(obs, x_init, noise)

    def best_of_n(
        self,
        params: Any,
        keys: Array,
        obs: Array,
        lam: Array,
        q_fn: Callable,
        n: int,
        split_candidates: bool = False,
    ) -> Array:
        """:meth:`best_of_n_with_noise` with each state's draws from its own key (B, 2): the
        n candidates as one batch of draws (MaxEntDP), or with ``split_candidates`` each from
        its own key of ``split(key, n)`` (QVPO)."""
        if split_candidates:

            def per_state(key: Array) -> tuple[Array, Array]:
                x_init, noise = jax.vmap(lambda k: self.draws(k, 1))(jax.random.split(key, n))
                return x_init[:, 0], jnp.moveaxis(noise[:, :, 0], 0, 1)  # (n, D), (N, n, D)

            x_init, noise = jax.vmap(per_state)(keys)
        else:
            x_init, noise = jax.vmap(lambda k: self.draws(k, n))(keys)
        return self.best_of_n_with_noise(params, obs, lam, q_fn, x_init, noise)

    def best_of_rows(
        self, params: Any, key: Array, obs: Array, lam: Array, q_fn: Callable, n: int
    ) -> Array:
        """Per state the highest-``q_fn`` of n samples drawn from ``key`` as ONE batch of
        repeated states (row i n + j: candidate j of state i): (B, D)."""
        b = obs.shape[0]
        cand = self.sample(params, key, jnp.repeat(obs, n, axis=0), lam).reshape(b, n, -1)
        q = q_fn(obs[:, None, :], cand)
        return cand[jnp.arange(b), jnp.argmax(q, axis=1)]

    def log_prob_with_noise(
        self, params: Any, obs: Array, action: Array, lam: Array, noise: Array
    ) -> Array:
        """The denoising estimate of log pi(a|s) (B,) with noise (B, S, J, D) (module
        docstring)."""
        sch = self.log_prob_schedule
        abar = jnp.clip(sch.alpha_hats, ABAR_EPS, 1.0 - ABAR_EPS)[None, None, :, None]
        abar_prev = sch.alpha_hat_prevs[:-1][None, None, :, None]
        x = jnp.sqrt(abar) * action[:, None, None, :] + jnp.sqrt(1.0 - abar) * noise
        obs_rep = jnp.broadcast_to(obs[:, None, None, :], (*x.shape[:-1], obs.shape[-1]))
        x0 = self._x0(x, abar, self.eps(params, abar[..., 0], x, obs_rep, lam))
        eps = (x - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)
        weight = ((abar_prev - abar) / (2.0 * abar * (1.0 - abar)))[0, 0, :, 0]
        error = jnp.mean(jnp.sum((eps - noise) ** 2, axis=-1), axis=1)  # (B, J)
        d = self.act_dim
        per_level = (abar[0, 0, :, 0] * d - error) * weight
        return jnp.sum(per_level, axis=1) - 0.5 * d * jnp.log(2.0 * jnp.pi * jnp.exp(1.0))

    def log_prob(self, params: Any, key: Array, obs: Array, action: Array, lam: Array) -> Array:
        """:meth:`log_prob_with_noise` with the noise from the second half of ``split(key)``."""
        _, k_noise = jax.random.split(key)
        shape = (action.shape[0], self.log_prob_samples, self.log_prob_steps, self.act_dim)
        return self.log_prob_with_noise(
            params, obs, action, lam, jax.random.normal(k_noise, shape, jnp.float32)
        )
