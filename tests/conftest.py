"""Fixtures shared by several test modules."""

from __future__ import annotations

import jax
import pytest


def pytest_collection_modifyitems(config, items):
    """Skip ``extended`` tests unless the ``-m`` expression names them, so that another
    selection (``-m "not slow"``) does not pull them in."""
    if "extended" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="extended check: run with `pytest -m extended`")
    for item in items:
        if "extended" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def fast_compile():
    """XLA's cheap pipeline for a module: MJX programs take tens of seconds to compile on a
    small CPU, and this roughly halves that; results stay correct."""
    # The flag is not part of jax's jit cache key: a function compiled under it would be
    # reused, with its other float results, by later tests in the same process. Clearing the
    # caches on the way in and out keeps each pipeline's programs to its own tests.
    old = jax.config.read("jax_disable_most_optimizations")
    jax.clear_caches()
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.clear_caches()
    jax.config.update("jax_disable_most_optimizations", old)
