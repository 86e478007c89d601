"""revflow: online RL with flow and diffusion policies via Reverse Flow Matching.

The mathematics is specified in one place, ``docs/reference/method.md`` (cited below as
"method note §N"); module docstrings cite its sections instead of re-deriving them. The
baselines' published defaults are in ``docs/reference/baselines.md`` ("baselines note").

``revflow.train``, ``revflow.load``, ``revflow.resume``, ``revflow.load_policy`` and the
classes ``Run`` and ``Policy`` are the Python API (:mod:`revflow.api`, :mod:`revflow.policy`);
they are imported on first use, so ``import revflow`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "train": "revflow.api",
    "load": "revflow.api",
    "resume": "revflow.api",
    "Run": "revflow.api",
    "load_policy": "revflow.policy",
    "Policy": "revflow.policy",
}

__all__ = ["Policy", "Run", "__version__", "load", "load_policy", "resume", "train"]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'revflow' has no attribute {name!r}")
