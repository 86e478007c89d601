"""sbx's SAC, timed: the runner that ``vs_sbx.py`` executes under the Python of sbx's venv.

Imports sbx, gymnasium, dm_control and numpy, nothing of revflow (revflow's venv and sbx's
are separate). It trains ``sbx.SAC`` (``MlpPolicy``, one gradient update per env step after
``--warmup`` random-action steps) on one environment and records ``time.perf_counter()``
from a callback at env steps ``--window-start`` and ``--window-end``, then stops training;
the JSON it writes holds the env steps/s of that window (after the warm-up and after the
first updates, so compilation is excluded), the versions and JAX's device.

Environments: ``gym:<Id>`` (``gymnasium.make``) or ``dmc:<domain>-<task>``: the dm_control
task as a gymnasium env, its observation dict flattened in the task's key order into one
float32 vector, action repeat 1, the task's own time limit (1000 steps) as truncation and a
zero discount as termination.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np


class DMCEnv(gym.Env):
    """A dm_control suite task as a gymnasium env (flattened observation, action repeat 1)."""

    def __init__(self, domain: str, task: str, seed: int) -> None:
        from dm_control import suite

        self._env = suite.load(domain, task, task_kwargs={"random": seed})
        spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(
            spec.minimum.astype(np.float32), spec.maximum.astype(np.float32), dtype=np.float32
        )
        dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)

    @staticmethod
    def _flat(observation) -> np.ndarray:
        return np.concatenate([np.asarray(v, np.float32).ravel() for v in observation.values()])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._flat(self._env.reset().observation), {}

    def step(self, action):
        ts = self._env.step(action)
        terminated = bool(ts.last() and ts.discount == 0.0)
        truncated = bool(ts.last() and not terminated)
        return self._flat(ts.observation), float(ts.reward or 0.0), terminated, truncated, {}


def make(name: str, seed: int) -> gym.Env:
    """``gym:<Id>`` or ``dmc:<domain>-<task>`` as a gymnasium env."""
    kind, _, rest = name.partition(":")
    if kind == "gym":
        return gym.make(rest)
    if kind == "dmc" and "-" in rest:
        domain, task = rest.split("-", 1)
        return DMCEnv(domain.replace("-", "_"), task.replace("-", "_"), seed)
    raise ValueError(f"environment {name!r}: expected gym:<Id> or dmc:<domain>-<task>")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--warmup", type=int, required=True, help="sbx's learning_starts")
    parser.add_argument("--window-start", type=int, required=True)
    parser.add_argument("--window-end", type=int, required=True)
    parser.add_argument("--net", default="256,256", help="hidden widths of actor and critics")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)

    import jax
    from sbx import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    start, stop = args.window_start, args.window_end
    stamps: dict[int, float] = {}

    class Stamps(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps in (start, stop):
                stamps[self.num_timesteps] = time.perf_counter()
            return self.num_timesteps < stop

    env = make(args.env, args.seed)
    net = [int(w) for w in args.net.split(",")]
    model = SAC(
        "MlpPolicy",
        env,
        learning_starts=args.warmup,
        batch_size=args.batch_size,
        buffer_size=stop + 10,
        train_freq=1,
        gradient_steps=1,
        policy_kwargs={"net_arch": net},
        seed=args.seed,
        verbose=0,
    )
    model.learn(total_timesteps=stop + 10, callback=Stamps())
    if start not in stamps or stop not in stamps:
        print(f"error: sbx's loop ended before env step {stop}", file=sys.stderr)
        return 1
    steps = stop - start
    result = {
        "env_steps": steps,
        "seconds": stamps[stop] - stamps[start],
        "env_steps_per_s": steps / (stamps[stop] - stamps[start]),
        "sbx": importlib.metadata.version("sbx-rl"),
        "jax": jax.__version__,
        "device_kind": jax.devices()[0].device_kind,
        "net": net,
        "batch_size": args.batch_size,
        "learning_starts": args.warmup,
    }
    Path(args.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
