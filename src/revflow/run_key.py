"""Which run a run directory holds: its identity (environment, algorithm, label, seed) and how
names become directory names. Plain Python, no JAX, so that the report and the sweep planner
(which read or plan run directories without building agents) share it with the loops.
"""

from __future__ import annotations

import dataclasses
import re

__all__ = ["RunKey", "sanitize"]


def sanitize(name: str) -> str:
    """``name`` with every run of characters other than letters, digits, '_', '.', '-' as '_'
    (how an environment name or a label becomes a directory name)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@dataclasses.dataclass(frozen=True)
class RunKey:
    """The identity of one run; a run's directory is ``<env>/<label>/seed<seed>`` under its
    root (``label`` is the algorithm's name unless a variant names itself)."""

    env: str
    algo: str
    label: str
    seed: int

    @property
    def name(self) -> str:
        """``env / label / seed N``, how reports and notes name the run."""
        return f"{self.env} / {self.label} / seed {self.seed}"
