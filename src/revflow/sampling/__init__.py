"""Samplers of unnormalised densities trained from the density alone (method note §3-4, §6).

``fit(log_density, dim, key, method=..., steps=..., **options) -> Sampler``; ``load(path)``.
See :mod:`revflow.sampling.api` (the API), :mod:`revflow.sampling.methods` (the methods and
their shared budget) and :mod:`revflow.sampling.training` (the update step).
"""

from revflow.sampling.api import Sampler, fit, load
from revflow.sampling.methods import METHODS, MethodSpec, TrainConfig, get_method

__all__ = ["METHODS", "MethodSpec", "Sampler", "TrainConfig", "fit", "get_method", "load"]
