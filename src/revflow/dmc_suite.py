"""dm_control's suite, imported on first use (it is heavy, and MuJoCo's rendering backend must
be chosen before it is imported): the one place :mod:`revflow.envs` (``dmc:`` environments)
and :mod:`revflow.mjx_tasks` (the suite's models, ported to MJX) get it from."""

from __future__ import annotations

import os
import warnings
from typing import Any

__all__ = ["import_suite", "prepare_gl"]


def prepare_gl(render: bool) -> None:
    """With ``render``, default ``MUJOCO_GL`` to ``egl`` (headless); it takes effect only if
    dm_control has not been imported yet in the process."""
    if render and "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl"


def import_suite() -> Any:
    """``dm_control.suite`` (``ImportError`` naming the pip package if it is missing)."""
    try:
        with warnings.catch_warnings():
            # With no display, dm_control's GLFW probe warns on import; harmless without render.
            warnings.filterwarnings("ignore", message=".*DISPLAY.*")
            warnings.filterwarnings("ignore", module="glfw")
            from dm_control import suite
    except ImportError as e:  # pragma: no cover - exercised only without dm_control
        raise ImportError(
            "DeepMind Control environments ('dmc:*') need dm_control: pip install dm_control "
            f"(import failed: {e})"
        ) from e
    return suite
