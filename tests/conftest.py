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
    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", old)
