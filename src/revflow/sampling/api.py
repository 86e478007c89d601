"""Fit a sampler to any unnormalised density: ``fit(log_density, dim, key) -> Sampler``.

``log_density`` maps ONE point of shape (dim,) to a scalar log density up to a constant
(jittable; its gradient is taken with jax). :func:`fit` trains a flow or diffusion model of
that density from the density alone with one of :data:`revflow.sampling.METHODS` (method note
§3-4, §6) and returns a :class:`Sampler`; ``Sampler.save(path)`` / :func:`load` store and
restore it with orbax (:mod:`revflow.checkpoint`: atomic, no pickle)::

    import jax, jax.numpy as jnp
    from revflow import sampling

    def log_density(x):  # two Gaussians at +-2 in 3-D
        return jax.nn.logsumexp(jnp.stack([-0.5 * jnp.sum((x - m) ** 2) for m in (-2.0, 2.0)]))

    sampler = sampling.fit(log_density, 3, jax.random.key(0), steps=1500)
    x = sampler.sample(jax.random.key(1), 1000)  # (1000, 3)
    sampler.save("out/sampler"); same = sampling.load("out/sampler")

Every option of :class:`revflow.sampling.TrainConfig` but ``steps`` is a keyword of
:func:`fit` (``lr``, ``hidden``, ``num_reverse_samples``, ``scale``, ...); an unknown option,
an unknown method, ``dim < 1``, or a ``log_density`` that does not return one scalar per point
or is not finite anywhere on a probe around the origin raise one-line ValueErrors before any
training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from revflow.checkpoint import read_extra, restore_checkpoint, save_checkpoint
from revflow.sampling.methods import TrainConfig, get_method
from revflow.sampling.training import LogDensity, make_model, train_model

Array = jax.Array
FORMAT = "revflow-sampler-v1"

_OPTIONS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "steps")


@dataclasses.dataclass
class Sampler:
    """A trained sampler. ``sample(key, n)`` returns (n, dim) points in the target's
    coordinates; ``skipped_updates`` counts updates skipped for a non-finite loss or
    gradient (0 for a healthy run)."""

    method: str
    dim: int
    config: TrainConfig
    params: Any = dataclasses.field(repr=False)
    skipped_updates: int = 0
    train_time: float = 0.0
    losses: np.ndarray | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        model = make_model(get_method(self.method), self.config, self.dim)
        scale = self.config.scale
        self._draw = jax.jit(
            lambda params, key, n: scale * model.sample(params, key, n), static_argnums=2
        )

    def sample(self, key: Array, n: int) -> Array:
        """``n`` samples, shape (n, dim)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        return self._draw(self.params, key, int(n))

    def save(self, path: str | Path) -> Path:
        """Write the sampler to the directory ``path`` (orbax, atomic, no pickle)."""
        extra = {
            "format": FORMAT,
            "method": self.method,
            "dim": self.dim,
            "config": dataclasses.asdict(self.config),
            "skipped_updates": self.skipped_updates,
            "train_time": self.train_time,
        }
        return save_checkpoint(path, 0, self.params, extra=extra, keep=1)


def load(path: str | Path) -> Sampler:
    """Restore a sampler written by :meth:`Sampler.save`."""
    extra = read_extra(path)
    if extra.get("format") != FORMAT:
        raise ValueError(f"{path} is not a revflow sampler (format {extra.get('format')!r})")
    cfg = TrainConfig(**extra["config"])
    dim = int(extra["dim"])
    model = make_model(get_method(extra["method"]), cfg, dim)
    template = jax.eval_shape(model.init, jax.random.key(0))
    params, _ = restore_checkpoint(path, template)
    return Sampler(
        extra["method"],
        dim,
        cfg,
        params,
        skipped_updates=int(extra.get("skipped_updates", 0)),
        train_time=float(extra.get("train_time", 0.0)),
    )


def make_config(steps: int, options: dict[str, Any]) -> TrainConfig:
    """TrainConfig from ``steps`` and keyword options; unknown options raise ValueError."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}; available: {', '.join(_OPTIONS)}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise ValueError(f"steps must be an int, got {steps!r}")
    if "warmup" not in options:  # the default warm-up, at most a tenth of a short run
        options = {**options, "warmup": min(TrainConfig.warmup, int(steps) // 10)}
    return TrainConfig(steps=int(steps), **options)  # validated on construction


def check_log_density(log_density: Callable[[Array], Array], dim: int, scale: float) -> None:
    """Raise ValueError unless ``log_density`` maps one (dim,) point to one finite-somewhere,
    differentiable scalar: its output shape is read with ``jax.eval_shape``; its values and
    gradients are evaluated on 512 probe points N(0, (r * scale)^2 I), r in {0.5, 1, 2, 4}."""
    if not callable(log_density):
        raise ValueError(f"log_density must be callable, got {type(log_density).__name__}")
    try:
        out = jax.eval_shape(log_density, jax.ShapeDtypeStruct((dim,), jnp.float32))
    except Exception as err:  # a wrong-dimension density fails while tracing
        raise ValueError(
            f"log_density failed on a point of shape ({dim},): {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}"
        ) from None
    if not hasattr(out, "shape") or tuple(out.shape) != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"log_density must return a scalar for one point of shape ({dim},), got {shape}"
        )
    radii = jnp.repeat(jnp.asarray([0.5, 1.0, 2.0, 4.0]), 128)[:, None]
    probe = scale * radii * jax.random.normal(jax.random.key(0), (512, dim))
    values, grads = jax.jit(jax.vmap(jax.value_and_grad(log_density)))(probe)
    finite = np.isfinite(np.asarray(values)) & np.all(np.isfinite(np.asarray(grads)), axis=1)
    if not finite.any():
        raise ValueError(
            "log_density (or its gradient) is not finite at any of 512 probe points around "
            "the origin (NaN or inf everywhere?)"
        )


def fit(
    log_density: LogDensity,
    dim: int,
    key: Array,
    *,
    method: str = "rfm",
    steps: int = 2000,
    progress: bool = True,
    exact_sampler: Callable[[Array, int], Array] | None = None,
    **options: Any,
) -> Sampler:
    """Train a sampler of exp(log_density) in R^dim from the density alone.

    Args:
        log_density: one point (dim,) -> scalar unnormalised log density (jittable).
        dim: dimension >= 1.
        key: PRNG key (initialisation and training).
        method: a name of :data:`revflow.sampling.METHODS`; ``fm-exact`` (the oracle) also
            needs ``exact_sampler``.
        steps: gradient updates.
        progress: show a progress bar (rich).
        exact_sampler: ``(key, n) -> (n, dim)`` exact samples, for ``fm-exact`` only.
        **options: fields of :class:`revflow.sampling.TrainConfig` (not ``steps``).

    Returns:
        The trained :class:`Sampler` (its ``skipped_updates`` reports numerical trouble).
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be an int >= 1, got {dim!r}")
    dim = int(dim)
    spec = get_method(method)
    cfg = make_config(steps, options)
    if spec.oracle and exact_sampler is None:
        raise ValueError(f"method {method!r} trains on exact samples: pass exact_sampler")
    check_log_density(log_density, dim, cfg.scale)

    scale = cfg.scale
    scaled = log_density if scale == 1.0 else (lambda y: log_density(scale * y))
    k_pool, k_train = jax.random.split(key)
    exact_pool = None
    if spec.oracle:  # min(steps * batch, 2^20) exact samples, drawn uniformly in training
        pool = np.asarray(exact_sampler(k_pool, min(cfg.steps * cfg.batch, 1 << 20)))
        if pool.ndim != 2 or pool.shape[1] != dim or not np.all(np.isfinite(pool)):
            raise ValueError(f"exact_sampler must return finite (n, {dim}) samples")
        exact_pool = jnp.asarray(pool / scale, jnp.float32)
    out = train_model(
        scaled, dim, spec, cfg, k_train, exact_pool, progress, description=f"fit {method}"
    )
    return Sampler(
        method,
        dim,
        cfg,
        out.ema_params,
        skipped_updates=out.skipped_updates,
        train_time=out.train_time,
        losses=out.losses,
    )
