"""A learned temperature that scales Gaussian exploration noise (DACER, SDAC; baselines note).

Data collection adds noise of std ``explore_noise * alpha`` to the policy's action, and
``alpha = exp(log_alpha)`` takes one Adam step per update on

    log_alpha * stop_grad(H - target_entropy),

so alpha grows while the entropy H (the algorithm's estimate) is below the target and
shrinks above it. The state carries ``log_alpha`` and its optimiser state
(:class:`revflow.agents.actor_critic.TemperatureState`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from revflow.agents.actor_critic import temperature_init
from revflow.agents.base import AgentConfig, Array, Metrics
from revflow.agents.common import gradient_step
from revflow.agents.configs import require_positive

__all__ = ["METRICS", "NoiseTemperature", "NoiseTemperatureFields"]


@dataclasses.dataclass(frozen=True)
class NoiseTemperatureFields(AgentConfig):
    """The exploration noise and its learned temperature alpha."""

    #: Exploration noise std = explore_noise * alpha.
    explore_noise: float = 0.1
    #: Initial alpha.
    init_alpha: float = 1.0
    #: Adam learning rate of log_alpha.
    alpha_lr: float = 3e-4

    def validate(self) -> None:
        super().validate()
        require_positive(self, "explore_noise", "init_alpha", "alpha_lr")


#: Metrics of :meth:`NoiseTemperature.step`.
METRICS: dict[str, str] = {
    "alpha": "learned temperature alpha (exploration noise std = explore_noise * alpha)",
    "alpha_loss": "log_alpha * (H - target_entropy), H the algorithm's entropy estimate",
}


@dataclasses.dataclass(frozen=True)
class NoiseTemperature:
    """The temperature rule of a config with :class:`NoiseTemperatureFields`."""

    explore_noise: float
    init_alpha: float
    target_entropy: float
    optimizer: optax.GradientTransformation

    @classmethod
    def make(cls, config: Any, target_entropy: float) -> NoiseTemperature:
        return cls(
            config.explore_noise,
            config.init_alpha,
            float(target_entropy),
            optax.adam(config.alpha_lr),
        )

    def init(self) -> dict[str, Any]:
        """The initial ``log_alpha`` and its optimiser state."""
        return temperature_init(self.init_alpha, self.optimizer)

    def std(self, state: Any) -> Array:
        """Std of the exploration noise, ``explore_noise * alpha``."""
        return self.explore_noise * jnp.exp(state.log_alpha)

    def step(self, state: Any, entropy: Array) -> tuple[dict[str, Any], Metrics]:
        """One Adam step on ``log_alpha * stop_grad(entropy - target_entropy)``: the new
        state fields and :data:`METRICS` (alpha before the step)."""
        gap = jax.lax.stop_gradient(entropy - self.target_entropy)

        def loss_fn(log_alpha: Array) -> Array:
            return log_alpha * gap

        step = gradient_step(loss_fn, self.optimizer, state.log_alpha, state.alpha_opt)
        metrics = {"alpha": jnp.exp(state.log_alpha), "alpha_loss": step.loss}
        return {"log_alpha": step.params, "alpha_opt": step.opt_state}, metrics
