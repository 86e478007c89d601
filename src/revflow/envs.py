"""Environment construction: DeepMind Control suite and Gymnasium behind one gymnasium API.

Names
-----
``"dmc:<domain>-<task>"``
    Any entry of ``dm_control.suite.ALL_TASKS`` (``dmc:cheetah-run``, ``dmc:finger-turn_hard``,
    ``dmc:ball_in_cup-catch``). The name is split on the first ``-`` after the prefix; domain
    and task names may contain underscores but never ``-``.
``"gym:<Id>"``
    A registered Gymnasium id with a continuous (``Box``) action space, e.g.
    ``gym:HalfCheetah-v5`` or ``gym:Pendulum-v1``.
``"mjx:<Task>"``
    A JAX-native (MJX) task, e.g. ``mjx:CheetahRun``: ``make_env`` returns a functional,
    jittable batched :class:`revflow.jax_envs.VecEnv` of ``num_envs`` copies (not a gymnasium
    environment; it is trained by :mod:`revflow.compiled`). See :mod:`revflow.jax_envs`.

Every ``dmc:`` / ``gym:`` environment returned by :func:`make_env` has

* a flat ``float32`` ``Box`` observation space;
* a ``Box(-1, 1, (d,), float32)`` action space; actions are clipped to ``[-1, 1]`` and mapped
  affinely onto the native bounds (dimensions whose native bounds are infinite or larger than
  ``1e6`` in magnitude, e.g. ``dmc:lqr-*``, are passed through unscaled);
* gymnasium ``terminated``/``truncated`` semantics: for DMC, hitting the time limit gives
  ``truncated=True, terminated=False`` and a dm_control ``discount == 0`` gives
  ``terminated=True``;
* reproducible seeding: ``make_env(name, seed)`` followed by ``reset()`` is the same as
  ``reset(seed=seed)``; identical seeds and actions give identical trajectories;
* ``render()`` returning an ``(H, W, 3) uint8`` array when built with ``render=True``.

dm_control (and therefore MuJoCo's rendering backend) is imported lazily, on the first
``dmc:`` request. When rendering is requested and ``MUJOCO_GL`` is unset it defaults to
``"egl"``; this only takes effect if dm_control has not been imported yet in the process.
"""

from __future__ import annotations

import difflib
import functools
import os
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = [
    "ENV_FAMILIES",
    "DMCEnv",
    "EnvFamily",
    "EnvInfo",
    "env_info",
    "list_envs",
    "make_env",
    "make_vector_env",
]

DMC_PREFIX = "dmc:"
GYM_PREFIX = "gym:"
MJX_PREFIX = "mjx:"
_PREFIXES = (DMC_PREFIX, GYM_PREFIX, MJX_PREFIX)

# Native bounds at least this large (or infinite) are treated as "unbounded": no rescaling.
_UNBOUNDED = 1e6


class EnvInfo(NamedTuple):
    """Sizes the learner needs; unpacks as ``(obs_dim, act_dim, max_episode_steps)``."""

    obs_dim: int
    act_dim: int
    max_episode_steps: int | None


# --------------------------------------------------------------------------------------------
# Lazy imports
# --------------------------------------------------------------------------------------------


def _prepare_gl(render: bool) -> None:
    if render and "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl"


def _import_dmc_suite() -> Any:
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


# --------------------------------------------------------------------------------------------
# Name parsing and validation (cheap; runs before any environment is constructed)
# --------------------------------------------------------------------------------------------


def _dmc_tasks() -> dict[str, list[str]]:
    suite = _import_dmc_suite()
    tasks: dict[str, list[str]] = {}
    for domain, task in suite.ALL_TASKS:
        tasks.setdefault(domain, []).append(task)
    return tasks


def _parse_dmc(rest: str) -> tuple[str, str]:
    tasks = _dmc_tasks()
    domain, sep, task = rest.partition("-")
    if domain not in tasks:
        close = difflib.get_close_matches(domain, list(tasks), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown DeepMind Control domain {domain!r} in 'dmc:{rest}'.{hint} "
            f"Available domains: {', '.join(sorted(tasks))}. Names look like 'dmc:<domain>-<task>'."
        )
    if not sep or task not in tasks[domain]:
        what = f"Unknown task {task!r}" if sep else "Missing task"
        raise ValueError(
            f"{what} for DeepMind Control domain {domain!r} in 'dmc:{rest}'. "
            f"Tasks of {domain!r}: {', '.join(sorted(tasks[domain]))}."
        )
    return domain, task


def _parse_gym(env_id: str) -> str:
    if env_id not in gym.registry:
        ids = sorted(gym.registry)
        close = difflib.get_close_matches(env_id, ids, n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join('gym:' + c for c in close)}." if close else ""
        raise ValueError(
            f"Unknown Gymnasium id {env_id!r}.{hint} Supported ids include: "
            f"{', '.join(_supported_gym_ids())}."
        )
    return env_id


def _split_name(name: str) -> tuple[str, str]:
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return prefix, name[len(prefix) :]
    raise ValueError(
        f"Unknown environment name {name!r}: expected a prefix of {', '.join(_PREFIXES)} "
        "(e.g. 'dmc:cheetah-run' or 'gym:HalfCheetah-v5'). See revflow.envs.list_envs()."
    )


@functools.cache
def _supported_gym_ids() -> tuple[str, ...]:
    """Gymnasium MuJoCo v5 tasks plus classic-control tasks with continuous actions."""
    ids = []
    for env_id, spec in gym.registry.items():
        entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
        if entry.startswith("gymnasium.envs.mujoco.") and env_id.endswith("-v5"):
            ids.append(env_id)
        elif entry.startswith("gymnasium.envs.classic_control."):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "CartPole-v0 is out of date"
                env = gym.make(env_id)  # classic control: pure python, cheap to build
            try:
                if isinstance(env.action_space, spaces.Box):
                    ids.append(env_id)
            finally:
                env.close()
    return tuple(sorted(ids))


def _mjx_names() -> list[str]:
    from revflow import jax_envs

    return list(jax_envs.available())


def _dmc_names() -> list[str]:
    return sorted(f"{d}-{t}" for d, t in _import_dmc_suite().ALL_TASKS)


def _grouped(names: list[str], sep: str = "-") -> list[str]:
    """``["cheetah-run", "cheetah-walk", ...]`` -> ``["cheetah: run, walk", ...]``."""
    groups: dict[str, list[str]] = {}
    for name in names:
        head, _, tail = name.partition(sep)
        groups.setdefault(head, []).append(tail)
    return [f"{head}: {', '.join(tails)}" for head, tails in groups.items()]


def _rows(names: list[str], per_row: int = 6) -> list[str]:
    return [", ".join(names[i : i + per_row]) for i in range(0, len(names), per_row)]


class EnvFamily(NamedTuple):
    """One family of environment names: ``<prefix><task>``; ``tasks()`` lists its tasks
    (without the prefix), ``listing()`` the lines ``revflow list envs`` prints for it."""

    prefix: str
    description: str
    tasks: Callable[[], list[str]]
    format: Callable[[list[str]], list[str]] = _rows

    def listing(self) -> list[str]:
        return self.format(self.tasks())


#: Every environment family, in the order ``revflow list envs`` and :func:`list_envs` show
#: them; a new family is one more row here (and its branch in :func:`make_env`).
ENV_FAMILIES: tuple[EnvFamily, ...] = (
    EnvFamily(
        DMC_PREFIX,
        "DeepMind Control suite, dmc:<domain>-<task> (revflow train)",
        _dmc_names,
        _grouped,
    ),
    EnvFamily(
        GYM_PREFIX,
        "Gymnasium ids with continuous (Box) actions, gym:<Id> (revflow train): the MuJoCo v5 "
        "and classic-control ones",
        lambda: list(_supported_gym_ids()),
    ),
    EnvFamily(
        MJX_PREFIX,
        "JAX-native MuJoCo (MJX) tasks, mjx:<Task> (revflow train-compiled)",
        _mjx_names,
    ),
)


def list_envs() -> list[str]:
    """All names :func:`make_env` is known to support (every DMC task, Gymnasium subset,
    the JAX-native ``mjx:`` tasks): the tasks of :data:`ENV_FAMILIES`."""
    return [family.prefix + task for family in ENV_FAMILIES for task in family.tasks()]


# --------------------------------------------------------------------------------------------
# DeepMind Control adapter
# --------------------------------------------------------------------------------------------


def _flat_dim(spec: Any) -> int:
    return int(np.prod(spec.shape, dtype=np.int64))


class DMCEnv(gym.Env):
    """A ``dm_control.suite`` task as a :class:`gymnasium.Env`.

    Observations are the task's observation dict flattened in its (ordered) key order and cast
    to float32. Actions live in ``[-1, 1]^d`` and are mapped onto the action spec bounds.
    """

    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium convention

    def __init__(
        self,
        domain: str,
        task: str,
        seed: int | None = None,
        render_mode: str | None = None,
        render_size: tuple[int, int] = (240, 320),
        camera_id: int = 0,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        _prepare_gl(render_mode is not None)
        suite = _import_dmc_suite()
        self._env = suite.load(domain, task, task_kwargs={"random": seed})
        self._seed = seed
        self._needs_reset = True
        self.render_mode = render_mode
        self._render_size = render_size
        self._camera_id = camera_id

        obs_dim = sum(_flat_dim(s) for s in self._env.observation_spec().values())
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)

        aspec = self._env.action_spec()
        low = np.broadcast_to(np.asarray(aspec.minimum, np.float64), aspec.shape).ravel()
        high = np.broadcast_to(np.asarray(aspec.maximum, np.float64), aspec.shape).ravel()
        self._act_shape = aspec.shape
        self._act_dtype = aspec.dtype
        bounded = np.isfinite(low) & np.isfinite(high)
        bounded &= (np.abs(low) < _UNBOUNDED) & (np.abs(high) < _UNBOUNDED)
        # native = center + half * a ; identity for unbounded dimensions.
        self._act_center = np.where(bounded, (high + low) / 2.0, 0.0)
        self._act_half = np.where(bounded, (high - low) / 2.0, 1.0)
        self.action_space = spaces.Box(-1.0, 1.0, (low.size,), np.float32)

        limit = self._env._step_limit  # number of control steps; inf when no time limit
        self.max_episode_steps = int(limit) if np.isfinite(limit) else None
        self.spec = gym.envs.registration.EnvSpec(
            id=f"{DMC_PREFIX}{domain}-{task}",
            entry_point="revflow.envs:DMCEnv",
            max_episode_steps=self.max_episode_steps,
            kwargs={"domain": domain, "task": task},
        )
        self.action_space.seed(seed)
        self.observation_space.seed(seed)

    # -- helpers ---------------------------------------------------------------------------

    @property
    def dm_env(self) -> Any:
        """The wrapped ``dm_control.rl.control.Environment``."""
        return self._env

    @property
    def physics(self) -> Any:
        return self._env.physics

    def _flatten(self, observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate(
            [np.asarray(v, dtype=np.float32).ravel() for v in observation.values()]
        ).astype(np.float32, copy=False)

    # -- gymnasium API ---------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            # All of a suite task's randomness (initial state, targets) comes from task.random.
            self._env.task._random = np.random.RandomState(seed)
            self.action_space.seed(seed)
            self.observation_space.seed(seed)
        time_step = self._env.reset()
        self._needs_reset = False
        return self._flatten(time_step.observation), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("DMCEnv.step() called before reset() or after the episode ended")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action has shape {a.shape}, expected {self.action_space.shape}")
        native = self._act_center + self._act_half * np.clip(a, -1.0, 1.0)
        time_step = self._env.step(native.reshape(self._act_shape).astype(self._act_dtype))
        obs = self._flatten(time_step.observation)
        reward = float(time_step.reward) if time_step.reward is not None else 0.0
        discount = float(time_step.discount) if time_step.discount is not None else 1.0
        terminated = bool(time_step.last() and discount == 0.0)
        truncated = bool(time_step.last() and not terminated)
        self._needs_reset = bool(time_step.last())
        return obs, reward, terminated, truncated, {"discount": discount}

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        height, width = self._render_size
        return self._env.physics.render(height=height, width=width, camera_id=self._camera_id)

    def close(self) -> None:
        self._env.close()


# --------------------------------------------------------------------------------------------
# Gymnasium construction
# --------------------------------------------------------------------------------------------


class _SeedFirstReset(gym.Wrapper):
    """Uses ``seed`` for the first ``reset()`` that is given none (and seeds the spaces)."""

    def __init__(self, env: gym.Env, seed: int | None) -> None:
        super().__init__(env)
        self._pending_seed = seed
        env.action_space.seed(seed)
        env.observation_space.seed(seed)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        return self.env.reset(seed=seed, options=options)


def _make_gym(env_id: str, seed: int, render: bool) -> gym.Env:
    _prepare_gl(render)
    try:
        env = gym.make(env_id, render_mode="rgb_array" if render else None)
    except gym.error.DependencyNotInstalled as e:
        pkg = "gymnasium[mujoco]" if "mujoco" in str(e).lower() else "gymnasium[all]"
        raise ImportError(
            f"gym:{env_id} needs an optional dependency: pip install {pkg} ({e})"
        ) from e
    if not isinstance(env.action_space, spaces.Box):
        space = env.action_space
        env.close()
        raise ValueError(
            f"gym:{env_id} has action space {space}; revflow needs continuous (Box) actions. "
            f"Supported ids include: {', '.join(_supported_gym_ids())}."
        )
    if not (
        isinstance(env.observation_space, spaces.Box) and len(env.observation_space.shape) == 1
    ):
        env = gym.wrappers.FlattenObservation(env)
    if env.observation_space.dtype != np.float32:
        box = env.observation_space
        f32_space = spaces.Box(box.low.astype(np.float32), box.high.astype(np.float32), box.shape)
        env = gym.wrappers.TransformObservation(
            env, lambda o: np.asarray(o, dtype=np.float32), f32_space
        )
    low, high = env.action_space.low, env.action_space.high
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"gym:{env_id} has unbounded actions ({env.action_space}); unsupported")
    # Clip in native units (equivalent to clipping to [-1, 1]), then expose [-1, 1]^d.
    env = gym.wrappers.ClipAction(env)
    env.action_space = spaces.Box(low, high, low.shape, env.env.action_space.dtype)
    env = gym.wrappers.RescaleAction(env, np.float32(-1.0), np.float32(1.0))
    return _SeedFirstReset(env, seed)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def make_env(
    name: str,
    seed: int = 0,
    render: bool = False,
    *,
    num_envs: int | None = None,
    episode_length: int | None = None,
) -> Any:
    """Build environment ``name`` (``"dmc:<domain>-<task>"``, ``"gym:<Id>"`` or
    ``"mjx:<Task>"``).

    ``mjx:`` names give a :class:`revflow.jax_envs.VecEnv` of ``num_envs`` (default 1)
    environments; its randomness comes from the key passed to its ``reset``, so ``seed`` is
    unused, and ``episode_length`` overrides the task's time limit. ``num_envs`` and
    ``episode_length`` are for ``mjx:`` names only.

    Raises ``ValueError`` (listing what is available) for unknown names, before anything heavy
    is constructed, and ``ImportError`` naming the pip package for a missing dependency.
    """
    prefix, rest = _split_name(name)
    if prefix == MJX_PREFIX:
        from revflow import jax_envs

        jax_envs.check_name(rest)
        if render:
            raise ValueError(f"{name}: rendering is not supported for mjx: environments")
        return jax_envs.make(rest, num_envs or 1, episode_length)
    if num_envs is not None or episode_length is not None:
        raise ValueError(
            f"{name}: num_envs / episode_length are for mjx: environments; use "
            "make_vector_env for several gymnasium environments"
        )
    _prepare_gl(render)  # before dm_control is first imported (name validation imports it)
    if prefix == DMC_PREFIX:
        domain, task = _parse_dmc(rest)
        return DMCEnv(domain, task, seed=seed, render_mode="rgb_array" if render else None)
    env_id = _parse_gym(rest)
    return _make_gym(env_id, seed, render)


def make_vector_env(
    name: str,
    num_envs: int,
    seed: int = 0,
    *,
    render: bool = False,
    autoreset_mode: str | gym.vector.AutoresetMode = gym.vector.AutoresetMode.NEXT_STEP,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``make_env(name, ...)`` in a :class:`SyncVectorEnv`.

    Sub-environment ``i`` is seeded with ``seed + i``.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    _prepare_gl(render)
    # Validate the name once, up front, so errors surface before any env is built.
    prefix, rest = _split_name(name)
    if prefix == MJX_PREFIX:
        raise ValueError(
            f"{name} is a JAX-native environment: make_env({name!r}, num_envs={num_envs}) "
            "gives the batched functional version"
        )
    if prefix == DMC_PREFIX:
        _parse_dmc(rest)
    else:
        _parse_gym(rest)

    def factory(i: int) -> Callable[[], gym.Env]:
        return lambda: make_env(name, seed + i, render=render)

    return gym.vector.SyncVectorEnv(
        [factory(i) for i in range(num_envs)], autoreset_mode=autoreset_mode
    )


def env_info(env: Any) -> EnvInfo:
    """``(obs_dim, act_dim, max_episode_steps)`` of a single or vector environment (gymnasium
    or :class:`revflow.jax_envs.VecEnv`)."""
    if hasattr(env, "act_dim") and hasattr(env, "episode_length"):  # jax_envs.VecEnv
        return EnvInfo(int(env.obs_dim), int(env.act_dim), int(env.episode_length))
    if isinstance(env, gym.vector.VectorEnv):
        obs_space, act_space = env.single_observation_space, env.single_action_space
        subs = getattr(env, "envs", None)
        spec = subs[0].spec if subs else getattr(env, "spec", None)
    else:
        obs_space, act_space = env.observation_space, env.action_space
        spec = env.spec
    if not isinstance(obs_space, spaces.Box) or not isinstance(act_space, spaces.Box):
        raise ValueError(f"expected Box spaces, got {obs_space} and {act_space}")
    max_steps = spec.max_episode_steps if spec is not None else None
    return EnvInfo(
        obs_dim=int(np.prod(obs_space.shape, dtype=np.int64)),
        act_dim=int(np.prod(act_space.shape, dtype=np.int64)),
        max_episode_steps=None if max_steps is None else int(max_steps),
    )
