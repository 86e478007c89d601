"""Environment construction: DeepMind Control, Gymnasium and your own environments behind one
gymnasium API.

Names
-----
``"dmc:<domain>-<task>"``
    Any entry of ``dm_control.suite.ALL_TASKS`` (``dmc:cheetah-run``, ``dmc:finger-turn_hard``,
    ``dmc:ball_in_cup-catch``). The name is split on the first ``-`` after the prefix; domain
    and task names may contain underscores but never ``-``.
``"gym:<Id>"``
    A registered Gymnasium id with a continuous (``Box``) action space, e.g.
    ``gym:HalfCheetah-v5`` or ``gym:Pendulum-v1``.
``"gym:<module>:<Id>"``
    Gymnasium's own ``module:Id`` form: ``<module>`` is imported first (it registers ``<Id>``,
    e.g. with ``gymnasium.register``), then ``<Id>`` is made, e.g.
    ``gym:my_package.envs:Reacher2D-v0``. The module must be importable (installed, or on
    ``PYTHONPATH``) in every process that builds the env (``revflow sweep`` runs subprocesses).
``"py:<module>:<factory>"``
    A callable ``<factory>`` of ``<module>`` (a function or a class; dots reach attributes,
    ``py:pkg.mod:Suite.make``) returning a :class:`gymnasium.Env` or a dm_env-style
    environment (``dm_env.Environment``: ``reset``, ``step``, ``observation_spec``,
    ``action_spec``; dm_control's ``suite.load(...)`` and composer environments are ones).
    It is called with ``seed=<seed>`` if it takes a ``seed`` parameter and with
    ``render_mode="rgb_array"`` when rendering (if it takes ``render_mode``). ``revflow.train
    (env=factory)`` gives a factory this name; one that cannot be imported under it (a lambda, a
    local function) is registered in this process only (:func:`register_factory`).
``"mjx:<Task>"``
    A JAX-native (MJX) task, e.g. ``mjx:CheetahRun``: ``make_env`` returns a functional,
    jittable batched :class:`revflow.jax_envs.VecEnv` of ``num_envs`` copies (not a gymnasium
    environment; it is trained by :mod:`revflow.compiled`). See :mod:`revflow.jax_envs`.

What a custom environment must satisfy (``gym:<module>:<Id>``, ``py:``, :func:`wrap_env`)
---------------------------------------------------------------------------------------
* Observations: a ``Box`` of any shape, or a ``Dict`` (possibly nested) of ``Box`` spaces;
  dm_env: an ``Array`` spec or a (nested) mapping of them. They are flattened to one float32
  vector: a ``Box`` in C order, a ``Dict`` by concatenating its entries in the space's key
  order (``space.keys()``: gymnasium sorts a plain dict's keys, an ``OrderedDict`` keeps its
  order; dm_env mappings keep theirs), nested ones depth-first.
* Actions: a floating-point ``Box`` (dm_env: ``BoundedArray``) of any shape and bounds; the
  agent acts in ``[-1, 1]^d`` (``d`` = its size), mapped affinely onto the bounds (and reshaped).
  Gymnasium bounds must be finite; dm_env dimensions with infinite bounds pass through unscaled.
* Episodes end: ``terminated`` / ``truncated`` (dm_env: ``time_step.last()``, with
  ``discount == 0`` a termination). A gymnasium env made by ``gym.make`` gets its registered
  ``max_episode_steps`` time limit; a factory's env must end its episodes itself.
* Seeding: ``reset(seed=...)`` (gymnasium); a dm_env factory should take ``seed``. The
  engine reseeds every episode's reset, which reaches a dm_env only through dm_control's
  ``env.task`` random state; without one, a resumed run is not bit-exact.

Anything else (``Discrete``, ``MultiDiscrete``, ``Tuple``, integer or unbounded gymnasium
actions, a factory returning something that is no environment) is refused by :func:`make_env`
with a ``ValueError`` naming what is unsupported, before training starts.

Every ``dmc:`` / ``gym:`` / ``py:`` environment returned by :func:`make_env` has

* a flat ``float32`` ``Box`` observation space;
* a ``Box(-1, 1, (d,), float32)`` action space; actions are clipped to ``[-1, 1]`` and mapped
  affinely onto the native bounds (dimensions whose native bounds are infinite or larger than
  ``1e6`` in magnitude, e.g. ``dmc:lqr-*``, are passed through unscaled);
* gymnasium ``terminated``/``truncated`` semantics: for DMC, hitting the time limit gives
  ``truncated=True, terminated=False`` and a dm_control ``discount == 0`` gives
  ``terminated=True``;
* reproducible seeding: ``make_env(name, seed)`` followed by ``reset()`` is the same as
  ``reset(seed=seed)``; identical seeds and actions give identical trajectories (for a ``py:``
  dm_env factory: as far as the factory's ``seed`` makes it so);
* ``render()`` returning an ``(H, W, 3) uint8`` array when built with ``render=True``.

dm_control (and therefore MuJoCo's rendering backend) is imported lazily, on the first
``dmc:`` request. When rendering is requested and ``MUJOCO_GL`` is unset it defaults to
``"egl"``; this only takes effect if dm_control has not been imported yet in the process.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from revflow.dmc_suite import import_suite, prepare_gl

__all__ = [
    "ENV_FAMILIES",
    "DMCEnv",
    "DmEnvAdapter",
    "EnvFamily",
    "EnvInfo",
    "env_info",
    "factory_name",
    "list_envs",
    "make_env",
    "make_vector_env",
    "register_factory",
    "wrap_env",
]

DMC_PREFIX = "dmc:"
GYM_PREFIX = "gym:"
MJX_PREFIX = "mjx:"
PY_PREFIX = "py:"
_PREFIXES = (DMC_PREFIX, GYM_PREFIX, MJX_PREFIX, PY_PREFIX)

# Native bounds at least this large (or infinite) are treated as "unbounded": no rescaling.
_UNBOUNDED = 1e6


class EnvInfo(NamedTuple):
    """Sizes the learner needs; unpacks as ``(obs_dim, act_dim, max_episode_steps)``."""

    obs_dim: int
    act_dim: int
    max_episode_steps: int | None


# --------------------------------------------------------------------------------------------
# Name parsing and validation (cheap; runs before any environment is constructed)
# --------------------------------------------------------------------------------------------


def _dmc_tasks() -> dict[str, list[str]]:
    suite = import_suite()
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


def _import_module(module: str, name: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"{name}: cannot import module {module!r} ({e})") from e


def _close_gym_ids(env_id: str, prefix: str = "") -> str:
    """`` Close matches: ...`` among the registered Gymnasium ids ('' if none)."""
    close = difflib.get_close_matches(env_id, sorted(gym.registry), n=5, cutoff=0.5)
    return f" Close matches: {', '.join(prefix + c for c in close)}." if close else ""


def _parse_gym(rest: str) -> str:
    """The Gymnasium id of ``gym:<Id>`` / ``gym:<module>:<Id>`` (importing ``<module>``)."""
    module, sep, env_id = rest.partition(":")
    if sep:
        if not module or not env_id:
            raise ValueError(
                f"'gym:{rest}' is malformed; expected 'gym:<Id>' or 'gym:<module>:<Id>'"
            )
        _import_module(module, f"gym:{rest}")
        if env_id not in gym.registry:
            raise ValueError(
                f"Unknown Gymnasium id {env_id!r}: importing {module!r} did not register it."
                + _close_gym_ids(env_id)
            )
        return env_id
    if rest not in gym.registry:
        raise ValueError(
            f"Unknown Gymnasium id {rest!r}.{_close_gym_ids(rest, 'gym:')} Supported ids include: "
            f"{', '.join(_supported_gym_ids())}; a custom env: 'gym:<module>:<Id>'."
        )
    return rest


#: Factories of this process that cannot be imported by their ``py:`` name (lambdas, closures).
_FACTORIES: dict[str, Callable[..., Any]] = {}


def _resolve(module: str, attr: str) -> Any:
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _parse_py(rest: str) -> Callable[..., Any]:
    """The factory named by ``py:<module>:<factory>`` (in-process ones first)."""
    name = PY_PREFIX + rest
    if name in _FACTORIES:
        return _FACTORIES[name]
    module, sep, attr = rest.partition(":")
    if not (sep and module and attr):
        raise ValueError(f"{name!r} is malformed; expected 'py:<module>:<factory>'")
    _import_module(module, name)
    try:
        factory = _resolve(module, attr)
    except AttributeError as e:
        raise ValueError(f"{name}: module {module!r} has no attribute {attr!r}") from e
    if not callable(factory):
        raise ValueError(
            f"{name}: {attr!r} of {module!r} is not callable ({type(factory).__name__})"
        )
    return factory


def register_factory(name: str, factory: Callable[..., Any]) -> str:
    """Make ``py:``-name ``name`` build ``factory()`` in this process (replacing any earlier
    registration of that name). Returns ``name``."""
    if not name.startswith(PY_PREFIX) or ":" not in name[len(PY_PREFIX) :]:
        raise ValueError(f"factory names look like 'py:<module>:<name>', got {name!r}")
    if not callable(factory):
        raise ValueError(f"{name}: the factory must be callable, got {type(factory).__name__}")
    _FACTORIES[name] = factory
    return name


def factory_name(factory: Callable[..., Any]) -> str:
    """``py:<module>:<qualname>`` of an environment factory. A factory that cannot be imported
    under that name (a lambda, a local function) is registered in this process only: runs of
    it can be resumed or evaluated only where it is registered again."""
    if not callable(factory):
        raise ValueError(
            f"env must be a name or a callable returning an environment, got "
            f"{type(factory).__name__}; pass a factory, e.g. env=lambda: MyEnv()"
        )
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None)
    if not module or not qualname:
        raise ValueError(
            f"env factory {factory!r} has no __module__/__qualname__ (e.g. a functools.partial); "
            "wrap it in a named function"
        )
    name = f"{PY_PREFIX}{module}:{qualname}"
    try:
        importable = _resolve(module, qualname) is factory
    except (ImportError, AttributeError):
        importable = False
    if importable:
        _FACTORIES.pop(name, None)
    else:
        register_factory(name, factory)
    return name


def _validate_name(name: str) -> tuple[str, Any]:
    """``(prefix, parsed)`` of a ``dmc:`` / ``gym:`` / ``py:`` name; errors before any build."""
    prefix, rest = _split_name(name)
    if prefix == DMC_PREFIX:
        return prefix, _parse_dmc(rest)
    if prefix == GYM_PREFIX:
        return prefix, _parse_gym(rest)
    if prefix == PY_PREFIX:
        return prefix, _parse_py(rest)
    raise ValueError(f"{name} is a JAX-native environment (mjx:), not a gymnasium one")


def _split_name(name: str) -> tuple[str, str]:
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return prefix, name[len(prefix) :]
    raise ValueError(
        f"Unknown environment name {name!r}: expected a prefix of {', '.join(_PREFIXES)} "
        "(e.g. 'dmc:cheetah-run', 'gym:HalfCheetah-v5', 'gym:<module>:<Id>', "
        "'py:<module>:<factory>'). See revflow.envs.list_envs()."
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
    from revflow import jax_envs  # imports JAX: only when mjx: names are asked for

    return list(jax_envs.available())


def _dmc_names() -> list[str]:
    return sorted(f"{d}-{t}" for d, t in import_suite().ALL_TASKS)


def _grouped(names: list[str], sep: str = "-") -> list[str]:
    """``["cheetah-run", "cheetah-walk", ...]`` -> ``["cheetah: run, walk", ...]``."""
    groups: dict[str, list[str]] = {}
    for name in names:
        head, _, tail = name.partition(sep)
        groups.setdefault(head, []).append(tail)
    return [f"{head}: {', '.join(tails)}" for head, tails in groups.items()]


def _rows(names: list[str], per_row: int = 6) -> list[str]:
    return [", ".join(names[i : i + per_row]) for i in range(0, len(names), per_row)]


#: How to name your own environment (``revflow list envs`` prints these lines).
_CUSTOM_HOWTO = (
    "gym:<module>:<Id>      your Gymnasium env; <module> is imported and registers <Id>",
    "py:<module>:<factory>  your callable returning a Gymnasium or dm_env environment "
    "(seed= is passed if it takes one)",
    "needs: Box or Dict-of-Box observations, continuous bounded Box actions, episodes that end;",
    'the module must be importable (installed or on PYTHONPATH); README, "Agents"',
)


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
    EnvFamily(
        PY_PREFIX,
        "your own environments (revflow train, eval, sweep, report; revflow.train(env=...))",
        lambda: [],
        lambda _: list(_CUSTOM_HOWTO),
    ),
)


def list_envs() -> list[str]:
    """All names :func:`make_env` is known to support (every DMC task, Gymnasium subset,
    the JAX-native ``mjx:`` tasks): the tasks of :data:`ENV_FAMILIES`."""
    return [family.prefix + task for family in ENV_FAMILIES for task in family.tasks()]


# --------------------------------------------------------------------------------------------
# dm_env adapter (DeepMind Control and any dm_env-style environment)
# --------------------------------------------------------------------------------------------


def _flat_dim(spec: Any) -> int:
    return int(np.prod(spec.shape, dtype=np.int64))


def _obs_specs(spec: Any, where: str = "") -> list[Any]:
    """The leaf specs of a dm_env observation spec, in flattening order (mappings in their own
    key order, depth-first); ``ValueError`` naming an unsupported entry."""
    if isinstance(spec, Mapping):
        return [leaf for k, v in spec.items() for leaf in _obs_specs(v, f"{where}[{k!r}]")]
    dtype = getattr(spec, "dtype", None)
    if getattr(spec, "shape", None) is None or dtype is None:
        raise ValueError(
            f"observation spec{where} {spec!r} is unsupported: revflow needs an array spec or a "
            "(nested) mapping of them"
        )
    if not (np.issubdtype(np.dtype(dtype), np.number) or np.dtype(dtype) == np.bool_):
        raise ValueError(f"observation spec{where} has non-numeric dtype {dtype}; unsupported")
    return [spec]


def _flatten_obs(observation: Any) -> np.ndarray:
    if isinstance(observation, Mapping):
        parts = [_flatten_obs(v) for v in observation.values()]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return np.asarray(observation, dtype=np.float32).ravel()


def _check_render_mode(render_mode: str | None) -> None:
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")


class DmEnvAdapter(gym.Env):
    """A dm_env-style environment (``dm_env.Environment``: ``reset``, ``step``,
    ``observation_spec``, ``action_spec``) as a :class:`gymnasium.Env`.

    Observations are the observation (dict) flattened in its key order (nested mappings
    depth-first) and cast to float32. Actions live in ``[-1, 1]^d`` and are mapped onto the
    action spec's bounds (dimensions without finite bounds pass through unscaled) and reshaped
    to its shape. ``time_step.last()`` ends an episode: with ``discount == 0`` it is a
    termination, otherwise a truncation. ``reset(seed=...)`` reseeds ``env.task``'s random
    state when the environment has one (dm_control's control and composer environments).
    """

    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012 - gymnasium convention

    def __init__(
        self,
        env: Any,
        name: str = "dm_env",
        seed: int | None = None,
        render_mode: str | None = None,
        render_size: tuple[int, int] = (240, 320),
        camera_id: int = 0,
    ) -> None:
        _check_render_mode(render_mode)
        self._env = env
        self._seed = seed
        self._needs_reset = True
        self.render_mode = render_mode
        self._render_size = render_size
        self._camera_id = camera_id

        try:
            obs_dim = sum(_flat_dim(s) for s in _obs_specs(env.observation_spec()))
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from e
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)

        aspec = env.action_spec()
        dtype = getattr(aspec, "dtype", None)
        if (
            getattr(aspec, "shape", None) is None
            or dtype is None
            or not np.issubdtype(np.dtype(dtype), np.floating)
        ):
            raise ValueError(
                f"{name}: action spec {aspec!r} is unsupported; revflow needs one floating-point "
                "(Bounded)Array of continuous actions"
            )
        size = _flat_dim(aspec)
        low = np.broadcast_to(
            np.asarray(getattr(aspec, "minimum", -np.inf), np.float64), aspec.shape
        ).ravel()
        high = np.broadcast_to(
            np.asarray(getattr(aspec, "maximum", np.inf), np.float64), aspec.shape
        ).ravel()
        self._act_shape = aspec.shape
        self._act_dtype = aspec.dtype
        bounded = np.isfinite(low) & np.isfinite(high)
        bounded &= (np.abs(low) < _UNBOUNDED) & (np.abs(high) < _UNBOUNDED)
        # native = center + half * a ; identity for unbounded dimensions.
        self._act_center = np.where(bounded, (high + low) / 2.0, 0.0)
        self._act_half = np.where(bounded, (high - low) / 2.0, 1.0)
        self.action_space = spaces.Box(-1.0, 1.0, (size,), np.float32)

        limit = getattr(env, "_step_limit", np.inf)  # dm_control: control steps; inf: none
        self.max_episode_steps = int(limit) if np.isfinite(limit) else None
        self.spec = gym.envs.registration.EnvSpec(
            id=name, entry_point=None, max_episode_steps=self.max_episode_steps
        )
        self.action_space.seed(seed)
        self.observation_space.seed(seed)

    # -- helpers ---------------------------------------------------------------------------

    @property
    def dm_env(self) -> Any:
        """The wrapped dm_env environment."""
        return self._env

    @property
    def physics(self) -> Any:
        return self._env.physics

    def _flatten(self, observation: Any) -> np.ndarray:
        return _flatten_obs(observation).astype(np.float32, copy=False)

    def _reseed(self, seed: int) -> None:
        task = getattr(self._env, "task", None)
        if task is not None and hasattr(task, "_random"):
            # All of a dm_control task's randomness (initial state, targets) is task.random.
            task._random = np.random.RandomState(seed)

    # -- gymnasium API ---------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            self._reseed(seed)
            self.action_space.seed(seed)
            self.observation_space.seed(seed)
        time_step = self._env.reset()
        self._needs_reset = False
        return self._flatten(time_step.observation), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError(
                f"{type(self).__name__}.step() called before reset() or after the episode ended"
            )
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action has shape {a.shape}, expected {self.action_space.shape}")
        native = self._act_center + self._act_half * np.clip(a, -1.0, 1.0)
        time_step = self._env.step(native.reshape(self._act_shape).astype(self._act_dtype))
        obs = self._flatten(time_step.observation)
        reward = float(np.sum(time_step.reward)) if time_step.reward is not None else 0.0
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
        close = getattr(self._env, "close", None)
        if close is not None:
            close()


class DMCEnv(DmEnvAdapter):
    """A ``dm_control.suite`` task as a :class:`gymnasium.Env` (a :class:`DmEnvAdapter` of
    ``suite.load(domain, task)``, seeded by ``seed``)."""

    def __init__(
        self,
        domain: str,
        task: str,
        seed: int | None = None,
        render_mode: str | None = None,
        **render: Any,
    ) -> None:
        """``render``: ``render_size`` and ``camera_id`` of :class:`DmEnvAdapter`."""
        _check_render_mode(render_mode)  # before the (slow) suite is loaded
        prepare_gl(render_mode is not None)
        env = import_suite().load(domain, task, task_kwargs={"random": seed})
        name = f"{DMC_PREFIX}{domain}-{task}"
        super().__init__(env, name, seed, render_mode, **render)
        self.spec = gym.envs.registration.EnvSpec(
            id=name,
            entry_point="revflow.envs:DMCEnv",
            max_episode_steps=self.max_episode_steps,
            kwargs={"domain": domain, "task": task},
        )


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


class _FlatActions(gym.ActionWrapper):
    """Exposes a ``Box(-1, 1)`` action space of any shape as a flat one."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._shape = env.action_space.shape
        size = int(np.prod(self._shape, dtype=np.int64))
        self.action_space = spaces.Box(-1.0, 1.0, (size,), np.float32)

    def action(self, action: Any) -> np.ndarray:
        return np.reshape(np.asarray(action, np.float32), self._shape)


def _unsupported_obs(space: Any) -> str | None:
    """What of an observation space revflow cannot flatten (None: Box or Dict of Boxes)."""
    if isinstance(space, spaces.Box):
        ok = np.issubdtype(space.dtype, np.number) or space.dtype == np.bool_
        return None if ok else f"{space} (non-numeric dtype)"
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            bad = _unsupported_obs(sub)
            if bad is not None:
                return f"{bad} at key {key!r}"
        return None
    return str(space)


def _wrap_gymnasium(env: gym.Env, name: str, seed: int | None, hint: str = "") -> gym.Env:
    """Flat float32 observations, ``[-1, 1]^d`` actions and first-reset seeding of a
    gymnasium env (closed and refused with a ``ValueError`` if its spaces are unsupported)."""
    act, obs = env.action_space, env.observation_space
    problem = None
    if not isinstance(act, spaces.Box) or not np.issubdtype(act.dtype, np.floating):
        problem = f"action space {act}; revflow needs continuous (Box) actions.{hint}"
    elif not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
        problem = f"unbounded actions ({act}); unsupported: give the Box finite bounds"
    elif _unsupported_obs(obs) is not None:
        problem = (
            f"observation space {_unsupported_obs(obs)}; unsupported: revflow needs Box or "
            "Dict-of-Box observations"
        )
    if problem is not None:
        env.close()
        raise ValueError(f"{name} has {problem}")
    if not (isinstance(obs, spaces.Box) and len(obs.shape) == 1):
        env = gym.wrappers.FlattenObservation(env)  # Dict: its keys' order, depth-first
    if env.observation_space.dtype != np.float32:
        box = env.observation_space
        f32_space = spaces.Box(box.low.astype(np.float32), box.high.astype(np.float32), box.shape)
        env = gym.wrappers.TransformObservation(
            env, lambda o: np.asarray(o, dtype=np.float32), f32_space
        )
    low, high = act.low, act.high
    # Clip in native units (equivalent to clipping to [-1, 1]), then expose [-1, 1]^d.
    env = gym.wrappers.ClipAction(env)
    env.action_space = spaces.Box(low, high, low.shape, env.env.action_space.dtype)
    with np.errstate(over="ignore"):  # gymnasium compares float64 bounds in float32
        env = gym.wrappers.RescaleAction(env, np.float32(-1.0), np.float32(1.0))
    if len(low.shape) != 1:
        env = _FlatActions(env)
    return _SeedFirstReset(env, seed)


def _make_gym(env_id: str, seed: int, render: bool, name: str) -> gym.Env:
    prepare_gl(render)
    try:
        env = gym.make(env_id, **({"render_mode": "rgb_array"} if render else {}))
    except gym.error.DependencyNotInstalled as e:
        pkg = "gymnasium[mujoco]" if "mujoco" in str(e).lower() else "gymnasium[all]"
        raise ImportError(f"{name} needs an optional dependency: pip install {pkg} ({e})") from e
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"{name}: making it raised {type(e).__name__}: {first}") from e
    hint = ""
    if name == GYM_PREFIX + env_id:  # a built-in id: point at the supported ones
        hint = f" Supported ids include: {', '.join(_supported_gym_ids())}."
    return _wrap_gymnasium(env, name, seed, hint)


def _is_dm_env(env: Any) -> bool:
    return all(hasattr(env, m) for m in ("reset", "step", "observation_spec", "action_spec"))


def _adapt(env: Any, name: str, seed: int | None, render_mode: str | None = None) -> gym.Env:
    if isinstance(env, gym.Env):
        return _wrap_gymnasium(env, name, seed)
    if _is_dm_env(env):
        return DmEnvAdapter(env, name, seed, render_mode)
    raise ValueError(
        f"{name}: got {type(env).__name__}, which is neither a gymnasium.Env nor a dm_env-style "
        "environment (reset, step, observation_spec, action_spec)"
    )


def _make_from_factory(factory: Callable[..., Any], name: str, seed: int, render: bool) -> Any:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    any_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {}
    if "seed" in params or any_kw:
        kwargs["seed"] = seed
    if render:
        if not ("render_mode" in params or any_kw):
            raise ValueError(f"{name}: cannot render, the factory takes no render_mode argument")
        kwargs["render_mode"] = "rgb_array"
    prepare_gl(render)
    try:
        env = factory(**kwargs)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(f"{name}: the factory raised {type(e).__name__}: {first}") from e
    return _adapt(env, name, seed, "rgb_array" if render else None)


def wrap_env(env: Any, seed: int | None = None, name: str = "custom env") -> gym.Env:
    """A built gymnasium or dm_env environment as revflow trains on it: flat float32
    observations, ``[-1, 1]^d`` actions, ``reset()`` seeded by ``seed`` (the module
    docstring's requirements; ``ValueError`` naming what is unsupported). Feed a trained
    :class:`revflow.Policy`'s actions to this wrapper, not to the raw environment."""
    return _adapt(env, name, seed)


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
    """Build environment ``name`` (``"dmc:<domain>-<task>"``, ``"gym:<Id>"``,
    ``"gym:<module>:<Id>"``, ``"py:<module>:<factory>"`` or ``"mjx:<Task>"``; module
    docstring).

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
    prepare_gl(render)  # before dm_control is first imported (name validation imports it)
    prefix, parsed = _validate_name(name)
    if prefix == DMC_PREFIX:
        domain, task = parsed
        return DMCEnv(domain, task, seed=seed, render_mode="rgb_array" if render else None)
    if prefix == PY_PREFIX:
        return _make_from_factory(parsed, name, seed, render)
    return _make_gym(parsed, seed, render, name)


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
    prepare_gl(render)
    # Validate the name once, up front, so errors surface before any env is built.
    if _split_name(name)[0] == MJX_PREFIX:
        raise ValueError(
            f"{name} is a JAX-native environment: make_env({name!r}, num_envs={num_envs}) "
            "gives the batched functional version"
        )
    _validate_name(name)

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
