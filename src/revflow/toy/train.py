"""Train one method on one benchmark target and score it (the toy of method note §6).

The training itself is :func:`revflow.sampling.fit` (the general sampler API: the method
registry, the shared budget :class:`TrainConfig` and the update step live in
:mod:`revflow.sampling`); this module adds what only a benchmark has: exact ground-truth
samples for scoring (:mod:`revflow.toy.metrics`) and for the oracle reference ``fm-exact``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from revflow.sampling import METHODS, MethodSpec, TrainConfig, fit, get_method
from revflow.sampling.methods import DIFFUSION_SAMPLERS, PROPOSALS
from revflow.sampling.training import make_model
from revflow.toy.metrics import all_metrics
from revflow.toy.targets import Target

Array = jax.Array

__all__ = [
    "DIFFUSION_SAMPLERS",
    "METHODS",
    "PROPOSALS",
    "MethodSpec",
    "TrainConfig",
    "TrainResult",
    "get_method",
    "sample_untrained",
    "train",
]


@dataclasses.dataclass
class TrainResult:
    method: str
    target: str
    samples: np.ndarray  # (num_eval_samples, dim) model samples after training
    metrics: dict[str, float]
    train_time: float  # seconds, compilation included
    losses: np.ndarray  # per-update loss
    skipped_updates: int = 0  # updates skipped for a non-finite loss or gradient
    params: Any = dataclasses.field(repr=False, default=None)


def _options(cfg: TrainConfig, spec: MethodSpec, target: Target) -> dict[str, Any]:
    """cfg's fields but ``steps``; a method on the VE path (iDEM, sigma_max = 1) works in
    coordinates normalised by the target's ``normalisation`` as DEM does."""
    options = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "steps"}
    if spec.path == "ve-geometric":
        options["scale"] = target.normalisation
    return options


def train(
    target: Target,
    method: str,
    cfg: TrainConfig,
    key: Array,
    num_eval_samples: int = 2000,
    truth: Array | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``method`` on ``target`` for ``cfg.steps`` updates, then sample and score it.

    ``truth``: ground-truth samples to score against (drawn from ``target.sample`` with a
    key derived from ``key`` when None; pass the same set to compare methods fairly).
    Metrics are those of :func:`revflow.toy.metrics.all_metrics`.
    """
    spec = get_method(method)
    if num_eval_samples < 2:
        raise ValueError(f"num_eval_samples must be >= 2, got {num_eval_samples}")
    k_fit, k_sample, k_truth, k_metric = jax.random.split(key, 4)
    sampler = fit(
        target.log_prob,
        target.dim,
        k_fit,
        method=method,
        steps=cfg.steps,
        progress=progress,
        exact_sampler=target.sample if spec.oracle else None,
        **_options(cfg, spec, target),
    )
    samples = np.asarray(sampler.sample(k_sample, num_eval_samples))
    if truth is None:
        truth = target.sample(k_truth, num_eval_samples)
    metrics = all_metrics(k_metric, samples, np.asarray(truth), target)
    return TrainResult(
        method=method,
        target=target.name,
        samples=samples,
        metrics=metrics,
        train_time=sampler.train_time,
        losses=sampler.losses,
        skipped_updates=sampler.skipped_updates,
        params=sampler.params,
    )


def sample_untrained(method: str, cfg: TrainConfig, key: Array, n: int, dim: int = 2) -> np.ndarray:
    """``n`` samples of a freshly initialised model of ``method`` (what training must beat)."""
    model = make_model(get_method(method), cfg, dim)
    k_init, k_sample = jax.random.split(key)
    return np.asarray(cfg.scale * model.sample(model.init(k_init), k_sample, n))
