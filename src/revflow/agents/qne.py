"""QNE / MaxEntDP (Dong et al. 2025, arXiv 2502.11612) in the shared posterior-target agent.

Baselines note, "Noise-expectation family"; method note §4 (eta = 0). The diffusion policy
(VP cosine path, eps-prediction, 20 steps) regresses onto the Q-weighted average of the
reverse samples' noises at noised REPLAY actions:

    E_{(s, a) ~ D, t, u_t} || eps_theta(t, u_t, s, lam) - sum_i w_i x0_i ||^2,
    u_t = alpha_t atanh(a) + beta_t eps,  w = softmax_i(log p1(u1_i)),
    u1_i = (u_t - beta_t x0_i) / alpha_t,

i.e. ``estimate_posterior_mean_batch(control_variate="none")`` mapped to eps (for c = 0,
(u_t - alpha_t mu1_hat)/beta_t = sum_i w_i x0_i exactly). The critic is soft:
r + discount (min_k Qbar_k(s', a') - lam log pi(a'|s')), a' one draw of the probability-flow
(DDIM) sampler and log pi its exact change-of-variables log density
(:mod:`revflow.agents.policies`, module docstring); ``entropy_backup=False`` switches it off.

Published defaults (baselines note): 500 candidates, lam 0.02 (RFM comparison), 20 steps,
evaluation best of 32 by Q (``best-of-n`` with 32 particles), t_min 1e-3 (diffusion time, the
data end: our t_max = 1 - 1e-3), log-likelihood from
the probability-flow ODE with 20 steps.

Departures: (1) candidates are not truncated to the action box; the policy lives in the tanh
latent with the exact Jacobian (method note §5: truncation breaks the path), and replayed
actions enter as atanh(clip(a, +-0.999)); (2) the log-likelihood is the exact change of
variables of the 20-step DDIM map instead of a 50-sample stochastic estimate; (3) the network
and critic are RFM's (shared by design, baselines note); (4) data collection draws one sample
from the DDPM sampler (``explore_pick="sample"``), as MaxEntDP acts with its policy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from revflow.agents.configs import FAST_DIFFUSION, Pick
from revflow.agents.generative import GenerativeAgent
from revflow.agents.posterior import (
    METRICS,
    DiffusionPosteriorConfig,
    EndpointSource,
    posterior_objective,
)

__all__ = ["QNE", "QNEConfig"]


@dataclasses.dataclass(frozen=True)
class QNEConfig(DiffusionPosteriorConfig):
    """QNE / MaxEntDP defaults (module docstring); the rest is RFM's critic and network."""

    control_variate: str = "none"
    num_reverse_samples: int = 500
    lam: float = 0.02
    num_particles: int = 32
    explore_pick: Pick = "sample"
    train_pick: Pick = "sample"
    endpoint_source: EndpointSource = "replay"
    entropy_backup: bool = True

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Measured (README, "Throughput"): fewer candidates and steps, narrower net.
        "fast": {**FAST_DIFFUSION, "num_reverse_samples": 32},
    }


class QNE(GenerativeAgent):
    """MaxEntDP's Q-weighted noise estimation with a soft critic (module docstring)."""

    name = "qne"
    Config = QNEConfig
    make_objective = posterior_objective
    METRICS: ClassVar[dict[str, str]] = {
        **METRICS,
        "actor_loss": "eps regression loss ||eps_theta - sum_i w_i x0_i||^2, batch mean",
        "target_q_mean": "mean soft TD target r + discount (min_k Qbar_k(s', a') - lam log pi)",
        "policy_q_mean": "mean min_k Q(s, a) at the replayed actions (training endpoints)",
        "next_log_pi_mean": "mean log pi(a'|s') of the backup actions (0 if entropy_backup off)",
    }
