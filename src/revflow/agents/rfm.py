"""Reverse Flow Matching agents: ``rfm`` (flow policy) and ``rfm-diffusion``.

``rfm`` (method note §6, reference defaults): the actor minimises

    E_{s, t, u_t} || v_theta(t, u_t, s, lam) - stop_grad(mu1_hat - mu0_hat) ||^2,
    u_t = t u1 + (1 - t) eps,  u1 ~ current policy (Boltzmann pick among particles),

where (mu1_hat, mu0_hat) = ``estimate_posterior_mean_batch`` of the latent Boltzmann target
log p1(u) = min_k Q_k(s, tanh u) / lam + sum log sech^2(u) (method note §4-5), with the
control variate of ``RFMConfig.control_variate`` ("optimal" by default; "none",
"gradient", "optimal-isotropic", "optimal-shrunk" or a number eta select the other members:
the ablation flag). This is :func:`revflow.agents.posterior.posterior_objective` on the
linear path with velocity parameterisation (mu1 - mu0 is the linear path's velocity map of
the posterior means, method note §2).

The critic is a twin Q-ensemble with Polyak targets and TD target
r + discount * min_k Qbar_k(s', a'), a' from the current policy, no entropy term.

Policy (``act``): u(0) ~ N(0, I), ``num_flow_steps`` Euler steps of the velocity field from
t_min to t_max for ``num_particles`` particles per state; then
- "explore": one particle drawn with probability softmax(Q/lam) (data collection and
  training endpoints),
- "best-of-n": the particle with the highest Q (the paper's evaluation protocol),
- "sample": the first particle, no selection (a plain draw of the flow policy).
Q here is the minimum over the online critics. The action is tanh(u).

``rfm-diffusion`` (the unified claim made concrete: baselines note, first
paragraph): the same critic, particles and estimator ("optimal" control variate), but the
policy is a diffusion model on the VP cosine path with eps-prediction and 20 DDPM steps:

    E_{s, t, u_t} || eps_theta(t, u_t, s, lam) - stop_grad((u_t - alpha_t mu1_hat) / beta_t) ||^2,
    u_t = alpha_t u1 + beta_t eps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from revflow.agents.configs import FAST_DIFFUSION
from revflow.agents.generative import GenerativeAgent
from revflow.agents.posterior import (
    METRICS,
    DiffusionPosteriorConfig,
    PosteriorConfig,
    posterior_objective,
)

__all__ = ["RFM", "RFMConfig", "RFMDiffusion", "RFMDiffusionConfig"]


@dataclasses.dataclass(frozen=True)
class RFMConfig(PosteriorConfig):
    """RFM hyperparameters; defaults are the reference defaults of method note §6: batch 256,
    gamma 0.99, tau 0.005, critic lr 1e-3, actor lr 3e-4, grad clip 10, critics 2 x (2x256),
    velocity net 256 wide with 2 residual blocks and 128-dim embeddings, 32 particles,
    10 Euler steps on [0.01, 0.99], K = 100, per-dimension optimal c* (ridge 1e-4, clip 2),
    lam 0.02. Flow policy, linear path, velocity parameterisation (class attributes).

    The fields network_init to critic_clip make the defaults those of the authors' code (azizanlab/
    ReverseFlowMatching, checked by ``benchmarks/fidelity``): every kernel orthogonal with
    gain sqrt 2, their sinusoidal embedding, the actor's squared error averaged over action
    dimensions, and each critic's own TD-loss gradient clipped by its own norm. revflow's
    earlier choices stay selectable: ``network_init="lecun"``, ``embedding="cos-sin-1e4"``,
    ``actor_loss_reduction="sum"`` (a D-times larger actor gradient before clipping),
    ``critic_clip="global"`` (one norm over both critics' gradients of the ensemble-mean
    loss); the ``revflow`` preset sets all four. ``critic_shared_state`` changes no quantity
    (up to float reassociation), only the speed; the ``revflow`` preset turns it off, so that
    it reproduces the earlier default bit for bit."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Chosen by measurement (README, "Throughput"): ~10x cheaper per update.
        "fast": {**FAST_DIFFUSION, "num_flow_steps": 5, "num_reverse_samples": 16},
        # revflow's variant before the authors' defaults (class docstring).
        "revflow": {
            "network_init": "lecun",
            "embedding": "cos-sin-1e4",
            "actor_loss_reduction": "sum",
            "critic_clip": "global",
            "critic_shared_state": False,
        },
    }

    # Runs saved before the four fields below existed had revflow's earlier variant, and runs
    # saved before ``critic_shared_state`` existed computed the critic's first layer unshared.
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = PRESETS["revflow"]

    #: Kernel initialisation of the velocity net and the critics: orthogonal | lecun.
    network_init: str = "orthogonal"
    #: Sinusoidal embedding style of t and lam: sin-cos-1e3 | cos-sin-1e4.
    embedding: str = "sin-cos-1e3"
    #: Actor squared error over action dimensions: mean | sum.
    actor_loss_reduction: str = "mean"
    #: Critic gradient clipping: per-critic | global.
    critic_clip: str = "per-critic"
    #: Share each state's critic first-layer product across its K reverse samples and N
    #: particles (``CriticFields``; equal up to float reassociation). On: it pays in wall time
    #: at both presets (docs/throughput/shared_state_ab.json).
    critic_shared_state: bool = True


class RFM(GenerativeAgent):
    """Reverse Flow Matching with a flow policy in a tanh latent (module docstring)."""

    name = "rfm"
    Config = RFMConfig
    make_objective = posterior_objective
    METRICS: ClassVar[dict[str, str]] = {
        **METRICS,
        "actor_loss": "velocity regression loss ||v - (mu1 - mu0)||^2 (mean or sum over action "
        "dims: actor_loss_reduction), mean over the batch",
        "target_q_mean": "mean TD target r + discount * min_k Qbar_k(s', a')",
        "policy_q_mean": "mean min_k Q(s, a) of the Boltzmann-picked training endpoints",
    }


@dataclasses.dataclass(frozen=True)
class RFMDiffusionConfig(DiffusionPosteriorConfig):
    """``rfm-diffusion``: RFM's reference defaults (critic, particles, K = 100, optimal c*,
    lam 0.02) with a diffusion policy: VP cosine path, eps-prediction, 20 DDPM steps on
    t in [0.02, 1] (training t ~ U[0.02, 1 - 1e-3]), the net sees 1000 t."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # rfm's fast preset with 10 diffusion steps (measured: README, "Throughput").
        "fast": {**FAST_DIFFUSION, "num_reverse_samples": 16},
    }


class RFMDiffusion(GenerativeAgent):
    """RFM posterior targets for a diffusion (eps-prediction) policy (module docstring)."""

    name = "rfm-diffusion"
    Config = RFMDiffusionConfig
    make_objective = posterior_objective
    METRICS: ClassVar[dict[str, str]] = {
        **METRICS,
        "actor_loss": "eps regression loss ||eps_theta - (u_t - alpha mu1)/beta||^2, batch mean",
    }
