"""JAX-native environments: a functional, jittable, batched wrapper with auto-reset.

``make_env("mjx:CheetahRun", num_envs=N)`` (or :func:`make` here with the bare name) gives a
:class:`VecEnv` of N copies of a single-environment task. It has no Python-side state:

    state = env.reset(key)                     # EnvState, every leaf batched over N envs
    state, out = env.step(state, action)       # action (N, act_dim) in [-1, 1]

Both are pure and can be jitted, vmapped, scanned and sharded over the env axis. ``out`` is a
:class:`StepOutput`: the reward, the true next observation ``next_obs``, ``terminated``
(a real terminal: discount 0), ``truncated`` (the episode hit ``episode_length`` steps: NOT
a terminal, the critic still bootstraps) and the finished episode's return. ``state.obs`` is
what to act on next: for an environment whose episode just ended it is already the first
observation of its next episode (auto-reset), while ``out.next_obs`` is the last one of the
old episode (the one the replay buffer needs).

Auto-reset draws a fresh initial state from the environment's own key chain (so episodes
differ), and is computed only on steps where some environment finished
(``lax.cond`` over the batch), which for fixed-length tasks is once per episode.

Task sources (names without the ``mjx:`` prefix):

- the built-in dm_control suite ports of :mod:`revflow.mjx_tasks` (``CheetahRun``,
  ``WalkerWalk``, ``CartpoleSwingup``, ...; needs ``mujoco-mjx``: ``pip install
  revflow[mjx]``); they are the same MDPs as their ``dmc:`` counterparts;
- every other environment of MuJoCo Playground's registry when ``mujoco_playground`` is
  installed (``pip install revflow[playground]``), loaded with ``impl="jax"`` (its warp
  default does not run under ``jax.vmap`` on a CPU), e.g. ``mjx:FishSwim``, ``mjx:HopperHop``.
  Built-in names always mean the built-in tasks.
"""

from __future__ import annotations

import importlib.util
from typing import Any, NamedTuple, Protocol

import flax.struct
import jax
import jax.numpy as jnp

__all__ = [
    "EnvState",
    "PlaygroundTask",
    "StepOutput",
    "Task",
    "VecEnv",
    "available",
    "make",
]

Array = jax.Array


class Task(Protocol):
    """One environment as pure functions (see :mod:`revflow.mjx_tasks`)."""

    name: str
    obs_dim: int
    act_dim: int
    episode_length: int

    def reset(self, key: Array) -> tuple[Any, Array]: ...

    def step(self, physics: Any, action: Array) -> tuple[Any, Array, Array, Array]: ...


@flax.struct.dataclass
class EnvState:
    """State of N environments; every leaf has the env axis first."""

    #: The task's own state (MJX ``Data`` for the built-in tasks).
    physics: Any
    #: Observation to act on (N, obs_dim); after an auto-reset, the new episode's first one.
    obs: Array
    #: Steps taken in the current episode (N,).
    step_count: Array
    #: Undiscounted return of the current episode so far (N,).
    episode_return: Array
    #: Per-environment PRNG keys (N,) that draw the initial states of later episodes.
    key: Array


class StepOutput(NamedTuple):
    """What one step of N environments produced (every field has the env axis first)."""

    reward: Array
    #: The true next observation (before any auto-reset).
    next_obs: Array
    #: A real terminal (the task's own ending, or non-finite physics): no bootstrapping.
    terminated: Array
    #: The episode reached ``episode_length`` steps without terminating: bootstrap.
    truncated: Array
    #: ``terminated | truncated``: the environment was reset.
    done: Array
    #: Return of the episode that ended on this step (0 where ``done`` is False).
    episode_return: Array
    #: Length of the episode that ended on this step (0 where ``done`` is False).
    episode_length: Array


def _canonical(tree: Any, ref: Any) -> Any:
    """``tree`` with the dtypes of ``ref`` and no weak types (stable carry of loops/conds)."""
    return jax.tree_util.tree_map(lambda x, r: jnp.asarray(x, dtype=r.dtype), tree, ref)


class VecEnv:
    """``num_envs`` copies of a :class:`Task`, as pure batched functions (module docstring)."""

    def __init__(self, task: Task, num_envs: int, episode_length: int | None = None):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if episode_length is not None and episode_length < 1:
            raise ValueError(f"episode_length must be None or >= 1, got {episode_length}")
        self.task = task
        self.name = f"mjx:{task.name}"
        self.num_envs = int(num_envs)
        self.obs_dim = int(task.obs_dim)
        self.act_dim = int(task.act_dim)
        self.episode_length = int(episode_length or task.episode_length)
        # The dtypes a step produces: reset output is cast to them so carries are stable.
        phys, _ = jax.eval_shape(task.reset, jax.random.key(0))
        action = jax.ShapeDtypeStruct((self.act_dim,), jnp.float32)
        self._phys_ref = jax.eval_shape(task.step, phys, action)[0]

    #: gymnasium-style name for :func:`revflow.envs.env_info`.
    @property
    def max_episode_steps(self) -> int:
        return self.episode_length

    def close(self) -> None:
        """Nothing to release (present for symmetry with gymnasium environments)."""

    def _reset_one(self, key: Array) -> tuple[Any, Array]:
        phys, obs = self.task.reset(key)
        return _canonical(phys, self._phys_ref), obs.astype(jnp.float32)

    def reset(self, key: Array) -> EnvState:
        """Fresh episodes in all environments; ``key`` is one PRNG key."""
        keys = jax.random.split(key, (self.num_envs, 2))
        phys, obs = jax.vmap(self._reset_one)(keys[:, 0])
        zeros = jnp.zeros(self.num_envs, jnp.float32)
        return EnvState(phys, obs, jnp.zeros(self.num_envs, jnp.int32), zeros, keys[:, 1])

    def step(self, state: EnvState, action: Array) -> tuple[EnvState, StepOutput]:
        """Step all environments with ``action`` (N, act_dim), clipped to [-1, 1]."""
        action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)

        def one(phys: Any, a: Array) -> tuple[Any, Array, Array, Array]:
            phys, obs, reward, terminated = self.task.step(phys, a)
            phys = _canonical(phys, self._phys_ref)
            return phys, obs.astype(jnp.float32), reward.astype(jnp.float32), terminated

        phys, next_obs, reward, terminated = jax.vmap(one)(state.physics, action)
        terminated = terminated.astype(bool)
        step_count = state.step_count + 1
        truncated = (step_count >= self.episode_length) & ~terminated
        done = terminated | truncated
        ep_return = state.episode_return + reward
        out = StepOutput(
            reward=reward,
            next_obs=next_obs,
            terminated=terminated,
            truncated=truncated,
            done=done,
            episode_return=jnp.where(done, ep_return, 0.0),
            episode_length=jnp.where(done, step_count, 0),
        )
        running = EnvState(phys, next_obs, step_count, ep_return, state.key)
        return jax.lax.cond(jnp.any(done), self._auto_reset, lambda s, _: s, running, done), out

    def _auto_reset(self, state: EnvState, done: Array) -> EnvState:
        keys = jax.vmap(lambda k: jax.random.split(k))(state.key)  # (N, 2)
        phys0, obs0 = jax.vmap(self._reset_one)(keys[:, 0])

        def pick(new: Array, old: Array) -> Array:
            mask = done.reshape(done.shape + (1,) * (new.ndim - 1))
            return jnp.where(mask, new, old)

        return EnvState(
            physics=jax.tree_util.tree_map(pick, phys0, state.physics),
            obs=pick(obs0, state.obs),
            step_count=jnp.where(done, 0, state.step_count),
            episode_return=jnp.where(done, 0.0, state.episode_return),
            key=jnp.where(done, keys[:, 1], state.key),
        )


# --------------------------------------------------------------------------------------------
# MuJoCo Playground adapter
# --------------------------------------------------------------------------------------------


class PlaygroundTask:
    """A MuJoCo Playground environment (``mujoco_playground.registry``) as a :class:`Task`.

    Playground's ``reset(rng) -> State`` / ``step(State, action) -> State`` are already pure;
    its ``State.done`` is the task's own ending (a terminal here). Episode length and action
    repeat come from the environment's config; observations must be flat arrays.
    """

    def __init__(self, name: str):
        from mujoco_playground import registry

        self.env = registry.load(name, config_overrides={"impl": "jax"})
        config = self.env._config
        self.name = name
        self.action_repeat = int(config.get("action_repeat", 1))
        self.episode_length = int(config.episode_length) // self.action_repeat
        obs_size = self.env.observation_size
        if not isinstance(obs_size, int):
            raise ValueError(
                f"mjx:{name} has structured observations {obs_size}; revflow needs a flat vector"
            )
        self.obs_dim = int(obs_size)
        self.act_dim = int(self.env.action_size)

    def reset(self, key: Array) -> tuple[Any, Array]:
        state = self.env.reset(key)
        return state, state.obs

    def step(self, state: Any, action: Array) -> tuple[Any, Array, Array, Array]:
        reward = jnp.zeros((), jnp.float32)
        for _ in range(self.action_repeat):
            state = self.env.step(state, action)
            reward = reward + state.reward
        return state, state.obs, reward, state.done > 0


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


def _playground_installed() -> bool:
    return importlib.util.find_spec("mujoco_playground") is not None


def _playground_names() -> list[str]:
    if not _playground_installed():
        return []
    from mujoco_playground import registry

    return sorted(registry.ALL_ENVS)


def _builtin_names() -> list[str]:
    from revflow.mjx_tasks import TASKS

    return sorted(TASKS)


def available() -> list[str]:
    """Every task name :func:`make` accepts (built-in first, then Playground's if installed)."""
    builtin = _builtin_names()
    return builtin + [n for n in _playground_names() if n not in builtin]


def check_name(name: str) -> None:
    """Raise ``ValueError`` listing the available names if ``name`` is not one (cheap: no
    environment is built; imports Playground's registry only for a non-built-in name)."""
    if name in _builtin_names() or name in _playground_names():
        return
    hint = (
        ""
        if _playground_installed()
        else " More tasks (every MuJoCo Playground environment) with: pip install "
        "'revflow[playground]'."
    )
    raise ValueError(
        f"Unknown JAX-native environment 'mjx:{name}'. Available: "
        f"{', '.join('mjx:' + n for n in available())}.{hint}"
    )


def _require_mjx() -> None:
    if importlib.util.find_spec("mujoco.mjx") is None:  # pragma: no cover - needs no mjx
        raise ImportError("'mjx:*' environments need MuJoCo MJX: pip install 'revflow[mjx]'")


def make(name: str, num_envs: int = 1, episode_length: int | None = None) -> VecEnv:
    """A :class:`VecEnv` of ``num_envs`` copies of task ``name`` (no ``mjx:`` prefix).

    ``episode_length`` overrides the task's time limit (in env steps). Unknown names raise
    ``ValueError`` before anything is built.
    """
    check_name(name)
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    _require_mjx()
    if name in _builtin_names():
        from revflow.mjx_tasks import make_task

        task: Task = make_task(name)
    else:
        task = PlaygroundTask(name)
    return VecEnv(task, num_envs, episode_length)
