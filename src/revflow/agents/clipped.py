"""A diffusion sampler kept inside the box of the action space, for QSM and DACER.

The published QSM and DACER sample in ACTION space and keep the sampler inside the action box
[-1, 1] at every reverse step:

- QSM (Psenka et al., ``ddpm_sampler`` with ``clip_sampler=True``, the default) clips the
  iterate x_t to [-1, 1] after every step (noise included), and the final action again;
- DACER (Wang et al., ``GaussianDiffusion.p_mean_variance``) clips the predicted clean action
  x0_hat to [-1, 1] at every step before forming the posterior mean (DDPM's ``clip_denoised``);
  the last step lands on the clipped x0_hat.

Our policies live in the tanh latent (a = tanh u), where the box has no edge: without a
clip, an eps-prediction error is amplified by the early steps and nothing pulls the latent
back, so the samples can drift to |u| ~ 1e3 (every action at -1 or +1; tanh'(u) underflows,
so a gradient through tanh is exactly 0). Here the box becomes the latent box
|u_j| <= atanh(REPLAY_CLIP) ~ 3.8, the range the replayed actions are mapped into: ``clip``
``"iterate"`` clips u after every step (QSM), ``"endpoint"`` clips the predicted endpoint
u1_hat = (u - beta_t eps) / alpha_t at every step (DACER). Both use the ancestral (DDPM)
transition of :func:`revflow.samplers.ddpm_sample` or the deterministic DDIM step of
:func:`revflow.samplers.ddim_sample`; the shared samplers themselves are not changed.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from revflow.agents.base import Array
from revflow.agents.posterior import REPLAY_CLIP, PosteriorTargetAgent
from revflow.networks import VelocityNet
from revflow.paths import Path
from revflow.samplers import ModelFn

__all__ = ["CLIP_MODES", "LATENT_BOUND", "ClippedSamplerAgent", "clipped_diffusion_sample"]

#: Bound of the latent box: |u_j| <= atanh(REPLAY_CLIP) (tanh of it is 0.999).
LATENT_BOUND = math.atanh(REPLAY_CLIP)
CLIP_MODES: tuple[str, ...] = ("iterate", "endpoint")


def clipped_diffusion_sample(
    eps_fn: ModelFn,
    key: Array | None,
    x_init: Array,
    path: Path,
    num_steps: int,
    t_start: float,
    clip: str,
    bound: float = LATENT_BOUND,
) -> Array:
    """Diffusion sampling from ``t_start`` to 1 on a uniform grid, kept in [-bound, bound].

    ``key`` given: ancestral (DDPM) steps; ``key=None``: deterministic DDIM steps. ``clip``:
    ``"iterate"`` clips x after every step; ``"endpoint"`` clips the predicted endpoint
    x1_hat = (x - beta_t eps) / alpha_t at every step and steps to the posterior mean given
    it (DDIM: to alpha_{t'} x1_hat + beta_{t'} eps_hat, eps_hat re-derived from the clipped
    x1_hat). The last step lands on the (clipped) x1_hat either way.
    """
    if clip not in CLIP_MODES:
        raise ValueError(f"unknown clip {clip!r}; expected one of {CLIP_MODES}")
    frac = jnp.arange(num_steps + 1, dtype=x_init.dtype) / num_steps
    ts = t_start + (1.0 - t_start) * frac
    keys = None if key is None else jax.random.split(key, num_steps)

    def body(k: Array, x: Array) -> Array:
        t, t_next = ts[k], ts[k + 1]
        a_t, b_t = path.alpha(t), path.beta(t)
        a_n, b_n = path.alpha(t_next), path.beta(t_next)
        ratio = a_t / a_n
        s2 = jnp.maximum(b_t**2 - (ratio * b_n) ** 2, 0.0)
        eps = eps_fn(t, x)
        if clip == "endpoint":
            x1_hat = jnp.clip((x - b_t * eps) / a_t, -bound, bound)
            if keys is None:
                eps_hat = (x - a_t * x1_hat) / b_t
                return a_n * x1_hat + b_n * eps_hat
            mean = (s2 / b_t**2) * a_n * x1_hat + (ratio * b_n**2 / b_t**2) * x
        elif keys is None:
            mean = a_n * (x - b_t * eps) / a_t + b_n * eps
        else:
            mean = (x - (s2 / b_t) * eps) / ratio
        if keys is not None:
            std = jnp.sqrt(s2) * b_n / b_t
            mean = mean + std * jax.random.normal(keys[k], x.shape, x.dtype)
        return jnp.clip(mean, -bound, bound) if clip == "iterate" else mean

    return jax.lax.fori_loop(0, num_steps, body, x_init)


class ClippedSamplerAgent(PosteriorTargetAgent):
    """:class:`PosteriorTargetAgent` whose diffusion sampler (acting, TD next actions, DACER's
    actor loss and entropy samples) is :func:`clipped_diffusion_sample` with the mode
    :meth:`sampler_clip` returns (``None``: the shared sampler, unchanged). Put it first in
    the bases of an agent that derives from another PosteriorTargetAgent subclass."""

    def sampler_clip(self) -> str | None:
        raise NotImplementedError

    def sample_particles(
        self, actor_params: Any, key: Array, obs: Array, lam: Array, num_particles: int
    ) -> Array:
        """Latent samples (B, N, act_dim), as the shared sampler's but kept in the box."""
        clip = self.sampler_clip()
        if clip is None:
            return super().sample_particles(actor_params, key, obs, lam, num_particles)
        c = self.config
        feats = self.velocity_net.apply(actor_params, obs, method=VelocityNet.embed_cond)
        feats = feats[:, None, :]
        shape = (obs.shape[0], num_particles, self.act_dim)
        k_init, k_steps = jax.random.split(key)  # the shared sampler's draws
        u_init = self._init_scale() * jax.random.normal(k_init, shape, obs.dtype)

        def eps_fn(t: Array, u: Array) -> Array:
            return self._net_as(actor_params, t, u, lam, feats, "eps")

        step_key = None if c.sampler == "ddim" else k_steps
        return clipped_diffusion_sample(
            eps_fn, step_key, u_init, self.path, c.num_flow_steps, c.t_min, clip
        )
