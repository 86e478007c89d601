"""Regression loss of Reverse Flow Matching (method note §2, §3, §6).

The training target is an affine map of the posterior mean ``mu1 = E[x1 | x_t]`` produced by
``revflow.estimators`` (method note §2): the velocity, eps, x1 or score of the chosen
parameterisation, held fixed (``stop_gradient``). The network is regressed onto it with a
squared error; method note §3 explains why this has the flow-matching minimiser for any
proposal of the noisy points. On the linear path the velocity target is ``mu1 - mu0``
(method note §6).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from revflow.paths import PARAMETERISATIONS, Path, convert

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

__all__ = ["generative_loss", "regression_loss", "regression_target"]


def regression_target(
    path: Path,
    t: ArrayLike,
    x_t: ArrayLike,
    mu1: ArrayLike,
    parameterisation: str = "velocity",
) -> Array:
    """``stop_gradient(convert(path, t, x_t, mu1, "x1", parameterisation))`` (method note §2).

    ``t`` is a scalar or has shape ``x_t.shape[:-1]``; ``x_t`` and ``mu1`` have equal shapes
    ``(..., D)``. ``parameterisation``: ``velocity | eps | x1 | score``.
    """
    if parameterisation not in PARAMETERISATIONS:
        raise ValueError(
            f"unknown parameterisation {parameterisation!r}; "
            f"available: {', '.join(PARAMETERISATIONS)}"
        )
    x_t, mu1 = jnp.asarray(x_t), jnp.asarray(mu1)
    if x_t.shape != mu1.shape:
        raise ValueError(f"x_t shape {x_t.shape} and mu1 shape {mu1.shape} differ")
    return jax.lax.stop_gradient(convert(path, t, x_t, mu1, "x1", parameterisation))


def regression_loss(
    prediction: ArrayLike,
    target: ArrayLike,
    weights: ArrayLike | None = None,
    features: str = "sum",
) -> Array:
    """Squared error summed (``features="sum"``) or averaged (``"mean"``, as the authors'
    baselines) over the last (feature) axis, averaged over all leading axes.

    ``loss = mean_rows( w_row * ||prediction_row - target_row||^2 )`` with ``w = 1`` when
    ``weights`` is None. ``weights`` broadcasts to ``prediction.shape[:-1]`` and is not
    renormalised (pass weights with mean 1 for a weighted average). Returns a scalar.
    """
    if features not in ("sum", "mean"):
        raise ValueError(f"unknown feature reduction {features!r}; expected sum or mean")
    prediction, target = jnp.asarray(prediction), jnp.asarray(target)
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction shape {prediction.shape} and target shape {target.shape} differ"
        )
    if prediction.ndim < 1:
        raise ValueError(f"prediction needs a feature axis, got shape {prediction.shape}")
    reduce = jnp.sum if features == "sum" else jnp.mean
    per_row = reduce(jnp.square(prediction - target), axis=-1)
    if weights is not None:
        weights = jnp.asarray(weights)
        try:
            weights = jnp.broadcast_to(weights, per_row.shape)
        except ValueError as err:
            raise ValueError(
                f"weights shape {weights.shape} does not broadcast to rows {per_row.shape}"
            ) from err
        per_row = weights * per_row
    return jnp.mean(per_row)


def generative_loss(
    predict_fn: Callable[[Array, Array], Array],
    path: Path,
    t: ArrayLike,
    x_t: ArrayLike,
    mu1: ArrayLike,
    parameterisation: str = "velocity",
    weights: ArrayLike | None = None,
) -> Array:
    """``regression_loss(predict_fn(t, x_t), regression_target(path, t, x_t, mu1, ...))``.

    ``predict_fn(t, x_t)`` is the network (closed over its parameters and conditioning);
    gradients flow only through it, never through the target (method note §6, step 5).
    """
    target = regression_target(path, t, x_t, mu1, parameterisation)
    return regression_loss(predict_fn(jnp.asarray(t), jnp.asarray(x_t)), target, weights)
