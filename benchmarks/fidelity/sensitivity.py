"""Can the multi-step rfm check see a departure? Runs revflow's side of it
(``revflow_side.rfm_trajectory``) on the stored inputs with one rule changed at a time and
prints each ``trajectory_*`` row's max relative difference from the authors' stored outputs
(tolerance ``check.TRAJECTORY``). Needs only revflow's environment:

    python benchmarks/fidelity/sensitivity.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import check  # noqa: E402
import revflow_side  # noqa: E402


def _posterior_before_critic_step(objective: Any) -> Any:
    """The actor's target read from the critics before their step (the authors read them
    after it)."""
    inputs = objective.actor_inputs

    def before(state, critic_params, batch, key):
        return inputs(state, state.critic_params, batch, key)

    return objective._replace(actor_inputs=before)


#: name -> keyword arguments of ``rfm_trajectory``: one departure each.
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults (the authors' rules)": {},
    "one clip norm over both critics": {"critic_clip": "global"},
    "posterior from the critics before their step": {
        "objective_change": _posterior_before_critic_step
    },
    "tau 0.006 instead of 0.005": {"tau": 0.006},
}


def trajectory_differences(inputs: dict, official: dict, **variant: Any) -> dict[str, float]:
    """Each ``trajectory_*`` row's max relative difference from the official outputs."""
    mine = revflow_side.rfm_trajectory(inputs, official, **variant)
    return {
        name[len("rfm/") :]: check.relative_difference(mine[name], official[name])
        for name in sorted(mine)
    }


def main() -> int:
    with np.load(HERE / "data" / "inputs.npz") as f:
        inputs = {k: f[k] for k in f.files}
    with np.load(HERE / "data" / "official.npz") as f:
        official = {k: f[k] for k in f.files}
    print(f"max relative difference of each row (tolerance {check.TRAJECTORY:.0e})")
    for name, variant in VARIANTS.items():
        diffs = trajectory_differences(inputs, official, **variant)
        cells = "  ".join(f"{k[len('trajectory_') :]} {v:.1e}" for k, v in diffs.items())
        print(f"{name:<46} {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
