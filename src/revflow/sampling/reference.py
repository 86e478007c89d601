"""An adaptive Gaussian reference of the target for the reverse samples (``reference=
"adaptive"`` of :class:`revflow.sampling.TrainConfig`).

Where x_t is mostly noise (small t) the reverse kernel N(x_t/alpha_t, (beta_t/alpha_t)^2 I)
spreads as 1/t, and in 10-D the self-normalised weights of its K draws degenerate to one
sample (ESS 1): the estimate then follows the mixture component with the heaviest tail, and
rfm collapses onto it (docs/sampling_10d). Drawing the reverse samples from the kernel times
a Gaussian N(m, sd^2) that covers the target (:func:`revflow.estimators.reverse_samples`)
keeps them where the density is. A Gaussian fitted to the model's own samples does not do:
once the model has lost a mode its moments no longer cover it and the collapse is a fixed
point. This one is fitted to the density itself, by adaptive importance sampling (the
cross-entropy method with moment matching): each update draws n points from
N(m, (widen sd)^2), weights them by p1 / N(m, (widen sd)^2), and moves (m, sd^2) toward
their self-normalised mean and per-dimension variance by an exponential average with
``decay``. It starts from N(0, broad_std^2 I) and needs no model.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from revflow.estimators import snis_weights

Array = jax.Array

#: Floor of the reference's std (model coordinates): a reference never shrinks to a point.
MIN_STD = 1e-2


def adapt_reference(
    key: Array,
    log_density: Callable[[Array], Array],
    mean: Array,
    std: Array,
    num_samples: int,
    widen: float,
    decay: float,
) -> tuple[Array, Array, Array]:
    """One moment-matching step of the reference (module docstring). Pure, jittable.

    Args:
        key: PRNG key.
        log_density: one point (D,) -> scalar unnormalised log p1.
        mean, std: the current reference, shape (D,).
        num_samples: draws per step.
        widen: the draws come from N(mean, (widen * std)^2).
        decay: weight of the old moments in the exponential average (0: replace them).

    Returns:
        (mean, std, ess): the updated reference and the ESS of the step's weights. A step
        whose moments are not finite leaves the reference as it was.
    """
    q = widen * std
    x = mean + q * jax.random.normal(key, (num_samples, mean.shape[-1]), mean.dtype)
    log_w = jax.vmap(log_density)(x) + 0.5 * jnp.sum(((x - mean) / q) ** 2, axis=-1)
    w = snis_weights(log_w)
    new_mean = w @ x
    new_var = w @ (x - new_mean) ** 2
    m = decay * mean + (1.0 - decay) * new_mean
    sd = jnp.maximum(jnp.sqrt(decay * std**2 + (1.0 - decay) * new_var), MIN_STD)
    finite = jnp.all(jnp.isfinite(m)) & jnp.all(jnp.isfinite(sd))
    ess = 1.0 / jnp.sum(w * w)
    return jnp.where(finite, m, mean), jnp.where(finite, sd, std), ess
