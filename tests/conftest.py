"""Fixtures shared by several test modules."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture(scope="module")
def fast_compile():
    """XLA's cheap pipeline for a module: MJX programs take tens of seconds to compile on a
    small CPU, and this roughly halves that; results stay correct."""
    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", old)
