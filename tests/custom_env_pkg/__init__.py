"""A small custom continuous-control task, registered the way a user's package would register
it, for the tests of custom environments (``gym:custom_env_pkg:PointMass-v0``,
``py:custom_env_pkg:make_point_mass``, ``py:custom_env_pkg:make_dm_point_mass``).

PointMass: a point in the plane is pushed towards the origin; observation a ``Dict`` of
``position`` and ``velocity`` (flattened by revflow in key order: position, velocity), action
a force in ``Box(-2, 2, (2,))`` (not the unit box), reward ``-|position|``, 50 steps an
episode. The dm_env twin has the same dynamics and a ``BoundedArray`` action spec.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ID = "PointMass-v0"
HORIZON = 50
DT = 0.1


def _start(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.uniform(-1.0, 1.0, 2), np.zeros(2)


def _advance(pos: np.ndarray, vel: np.ndarray, force: np.ndarray) -> tuple:
    vel = 0.9 * vel + DT * np.clip(force, -2.0, 2.0)
    pos = pos + DT * vel
    return pos, vel, -float(np.linalg.norm(pos))


class PointMassEnv(gym.Env):
    metadata = {"render_modes": []}  # noqa: RUF012 - gymnasium convention

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = spaces.Dict(
            {
                "velocity": spaces.Box(-np.inf, np.inf, (2,), np.float64),
                "position": spaces.Box(-np.inf, np.inf, (2,), np.float64),
            }
        )
        self.action_space = spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.render_mode = render_mode
        self._pos = self._vel = np.zeros(2)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"position": self._pos.copy(), "velocity": self._vel.copy()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._pos, self._vel = _start(self.np_random)
        return self._obs(), {}

    def step(self, action):
        self._pos, self._vel, reward = _advance(self._pos, self._vel, np.asarray(action))
        return self._obs(), reward, False, False, {}


gym.register(ID, entry_point=PointMassEnv, max_episode_steps=HORIZON)


def make_point_mass() -> gym.Env:
    """The gymnasium env with its time limit (``py:custom_env_pkg:make_point_mass``)."""
    return gym.wrappers.TimeLimit(PointMassEnv(), HORIZON)


class DmPointMass:
    """The same task as a dm_env environment (seeded through its constructor)."""

    def __init__(self, seed: int | None = None) -> None:
        import dm_env  # noqa: F401 - the specs below

        self._rng = np.random.default_rng(seed)
        self._pos = self._vel = np.zeros(2)
        self._t = 0

    def observation_spec(self):
        from dm_env import specs

        return {
            "position": specs.Array((2,), np.float64),
            "velocity": specs.Array((2,), np.float64),
        }

    def action_spec(self):
        from dm_env import specs

        return specs.BoundedArray((2,), np.float32, minimum=-2.0, maximum=2.0)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"position": self._pos.copy(), "velocity": self._vel.copy()}

    def reset(self):
        import dm_env

        self._pos, self._vel = _start(self._rng)
        self._t = 0
        return dm_env.restart(self._obs())

    def step(self, action):
        import dm_env

        self._pos, self._vel, reward = _advance(self._pos, self._vel, np.asarray(action))
        self._t += 1
        if self._t >= HORIZON:
            return dm_env.truncation(reward, self._obs())
        return dm_env.transition(reward, self._obs())


def make_dm_point_mass(seed: int = 0) -> DmPointMass:
    """A dm_env factory (``py:custom_env_pkg:make_dm_point_mass``); revflow passes ``seed``."""
    return DmPointMass(seed)


class _DiscreteEnv(PointMassEnv):
    def __init__(self) -> None:
        super().__init__()
        self.action_space = spaces.Discrete(3)


class _TupleObsEnv(PointMassEnv):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Tuple((spaces.Box(-1, 1, (2,)), spaces.Discrete(2)))


gym.register("DiscretePointMass-v0", entry_point=_DiscreteEnv, max_episode_steps=HORIZON)
gym.register("TuplePointMass-v0", entry_point=_TupleObsEnv, max_episode_steps=HORIZON)
