"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
import shutil
import tempfile

import jax
import pytest

#: XLA programs taking at least this long to compile go to the session's persistent cache.
_CACHE_MIN_COMPILE_S = "0.2"


def pytest_configure(config):
    """One persistent XLA compilation cache for the whole test session, shared by the xdist
    workers and by the subprocesses that tests start (the CLI runs, the SIGKILL resume).

    Most of the suite's time is XLA compiling small agents, and many tests compile the same
    program (same agent, config and shapes): with the cache, the second compile is a disk
    read. The cache key covers the program, the compile options (``fast_compile``'s cheap
    pipeline included), the jax version and the device, so a hit is the same executable.
    The directory is new for each session (a run starts cold, as CI does) and removed at its
    end; a ``JAX_COMPILATION_CACHE_DIR`` set by the user is used and kept instead."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller set the environment
        return
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        path = tempfile.mkdtemp(prefix="revflow-xla-cache-")
        config._revflow_xla_cache = path
        os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", _CACHE_MIN_COMPILE_S)
    # jax was imported before this hook ran: give this process the settings too.
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )


def pytest_unconfigure(config):
    path = getattr(config, "_revflow_xla_cache", None)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


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
