"""The fully compiled training loop: environment, acting, replay and updates in one jitted call.

For JAX-native environments (``mjx:*``, :mod:`revflow.jax_envs`) the whole off-policy loop
runs on the device. One *iteration* is

    act in all N environments -> env step (auto-reset) -> insert N transitions into the
    device-resident replay buffer -> ``utd`` gradient updates on sampled minibatches,

and one jitted call runs ``chunk_iters`` iterations (``lax.fori_loop`` with a traced trip
count, so the last, shorter chunk does not recompile). The host only logs, evaluates and
writes checkpoints between chunks. Iterations before ``warmup_steps`` env steps act
uniformly at random and do no updates (a ``lax.cond`` inside the same program).

Units: ``steps``, ``warmup_steps``, ``eval_every`` count env steps of all environments
together (one iteration = ``num_envs`` env steps); ``utd`` counts gradient updates per
iteration, i.e. per ``num_envs`` env steps.

Supported agents: those whose ``init`` / ``act`` / ``update`` are pure jittable functions of
the train state, a key and a batch, which an agent declares with ``Agent.COMPILED_LOOP``
(:func:`supported_agents`; others raise ``ValueError``). ``rfm`` and ``sac`` are the tested
ones.

Replay. The buffer is a pytree of arrays in the loop's carry, time-major: ``obs`` has shape
(T, N, obs_dim) with T = ceil(buffer_size / N) slots per environment; slot ``ptr`` gets the N
new transitions each iteration (circular). A minibatch row i of B draws a uniform time slot
among the filled ones and an environment column from its stratum
[floor(i N / B), floor((i + 1) N / B)) (one column when N < B), so each environment
contributes equally and, below, every row comes from the device that holds its column.

Sharding. A 1-D :class:`jax.sharding.Mesh` (axis ``"data"``) spans the devices (all visible
ones by default). The env axis of the environment state and of the replay buffer is split
over it (``NamedSharding(mesh, P("data"))``), agent parameters and optimiser states are
replicated, and so is the PRNG key. The env step runs under ``shard_map`` (each device steps
its own environments), minibatches are gathered under ``shard_map`` from each device's own
buffer columns (no cross-device copies of the buffer), and the agent update runs on the
batch split over devices with replicated parameters, so XLA all-reduces the gradients.
``num_envs`` and the batch size must be divisible by the number of devices. All random
draws use keys that do not depend on the device count (JAX's partitionable threefry), so a
run on D devices follows the same trajectory as on one device up to the order of
floating-point reductions.

Checkpoints and exact resume. With ``checkpoint`` on, a checkpoint
(:mod:`revflow.checkpoint`: atomic, orbax, no pickle) is written at the first chunk end at or
after each multiple of ``checkpoint_every`` env steps and at the end, the newest
``keep_checkpoints`` kept. It holds the whole carry (:class:`LoopState`: agent state,
environment state with the MJX physics, replay buffer, loop key, counters), the host side of
the loop (evaluation key, next evaluation and checkpoint steps, last evaluation) and the
config. MJX ``Data`` has many zero-size arrays, which orbax cannot write: they are stored as
metadata only and rebuilt on restore; every restored array gets its sharding on the current
mesh (:meth:`CompiledTrainer.abstract_state`). Chunks end at multiples of ``chunk_iters``
iterations, so a run resumed from a checkpoint (``train_compiled(..., resume=True)``,
``revflow train-compiled --resume RUN_DIR``) runs the same chunks as the uninterrupted run and
ends bit-exactly like it on the same devices (checked on CPU): the final :class:`LoopState`,
``result.json``, ``eval.csv`` and ``metrics.csv`` but for the timing column ``charts/sps``;
the rows the stopped process logged after the checkpoint are dropped. The resolved device list
is not compared on resume: on other devices the run continues the same trajectory up to the
order of floating-point reductions. A chunk with non-finite parameters or metrics raises
before its checkpoint is written, so the latest checkpoint is the last good state.
``revflow eval RUN_DIR`` evaluates the latest checkpoint's agent on the run's ``mjx:`` task
(:func:`load_agent`, :meth:`CompiledTrainer.evaluate`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from revflow import rundir
from revflow.agents.base import Agent, AgentConfig, Batch, require
from revflow.agents.registry import available, get_agent_class
from revflow.checkpoint import CheckpointError, list_checkpoints, probe_writable, save_checkpoint
from revflow.jax_envs import EnvState, VecEnv
from revflow.loop_config import LoopConfig
from revflow.rundir import CONFIG_FILE, ConfigMismatchError, read_result, run_dir_for
from revflow.schedule import Every

__all__ = [
    "CompiledConfig",
    "CompiledTrainer",
    "LoopState",
    "Replay",
    "is_compiled_run",
    "load_agent",
    "load_run",
    "make_mesh",
    "resume",
    "run_dir_for",
    "supported_agents",
    "train_compiled",
]

AXIS = "data"


def supported_agents() -> tuple[str, ...]:
    """The registered agents that run in the compiled loop (``Agent.COMPILED_LOOP``)."""
    return tuple(name for name in available() if get_agent_class(name).COMPILED_LOOP)


@dataclasses.dataclass(frozen=True)
class CompiledConfig(LoopConfig):
    """Options of the compiled loop (the agent's hyperparameters live in its own config)."""

    SECTION: ClassVar[str] = "compiled"
    COMMAND: ClassVar[str] = "revflow train-compiled"
    RUN_SUFFIX: ClassVar[str] = "-compiled"

    #: Registered algorithm name (one of :func:`supported_agents`).
    algo: str = "sac"
    #: JAX-native environment, ``mjx:<Task>`` (``revflow.jax_envs.available()``).
    env: str = "mjx:CheetahRun"
    #: Total env steps, all environments together (rounded up to whole iterations).
    steps: int = 1_000_000
    #: Env steps (all environments together) with uniform-random actions and no updates.
    warmup_steps: int = 10_000
    #: Gradient updates per iteration, i.e. per ``num_envs`` env steps.
    utd: int = 1
    #: Replay capacity in transitions; None means ``min(steps, 1_000_000)``.
    buffer_size: int | None = None
    #: Evaluate every this many env steps (at the first chunk end at or after each multiple),
    #: and at the end (0: never).
    eval_every: int = 50_000
    #: Evaluation episodes (run as that many parallel environments, one episode each).
    eval_episodes: int = 10
    #: Also write a checkpoint at the first chunk end at or after each multiple of this many
    #: env steps (0: only the final checkpoint).
    checkpoint_every: int = 50_000
    #: Parallel environments (split over the devices).
    num_envs: int = 64
    #: Iterations per jitted call (the host logs / evaluates only between calls).
    chunk_iters: int = 1000
    #: Override of the task's episode length in env steps (None: the task's).
    episode_length: int | None = None
    #: Devices to use (the first ones of ``jax.devices()``); None: all visible devices.
    num_devices: int | None = None
    #: Write checkpoints of the whole loop state (agent, replay, environments with their
    #: physics, keys, counters); False: none, so the run can be neither resumed nor evaluated
    #: by ``revflow eval``.
    checkpoint: bool = True

    def validate(self) -> None:
        supported = supported_agents()
        require(
            self.algo in supported,
            "algo",
            self.algo,
            f"is not supported by the compiled loop; supported: {', '.join(supported)}",
        )
        require(self.env.startswith("mjx:"), "env", self.env, "must be an 'mjx:<Task>' name")
        require(self.num_envs >= 1, "num_envs", self.num_envs, "must be >= 1")
        super().validate()
        require(self.chunk_iters >= 1, "chunk_iters", self.chunk_iters, "must be >= 1")
        for name in ("episode_length", "num_devices"):
            value = getattr(self, name)
            require(value is None or value >= 1, name, value, "must be None or >= 1")

    @property
    def iterations(self) -> int:
        return math.ceil(self.steps / self.num_envs)

    @property
    def warmup_iterations(self) -> int:
        return math.ceil(self.warmup_steps / self.num_envs)

    def slots(self) -> int:
        """Time slots T of the replay buffer (T x num_envs transitions)."""
        capacity = self.buffer_size or min(self.steps, 1_000_000)
        return max(1, math.ceil(capacity / self.num_envs))


# --------------------------------------------------------------------------------------------
# Mesh and replay
# --------------------------------------------------------------------------------------------


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh (axis ``"data"``) over the first ``num_devices`` devices (default: all)."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if n > len(devices):
        raise ValueError(f"num_devices={n} but only {len(devices)} device(s) are visible")
    return Mesh(np.asarray(devices[:n]), (AXIS,))


@flax.struct.dataclass
class Replay:
    """Time-major circular replay buffer: arrays (T, N, ...), env axis N sharded."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    #: Next slot to write, and the number of filled slots (replicated scalars).
    ptr: jax.Array
    size: jax.Array

    @classmethod
    def zeros(cls, slots: int, num_envs: int, obs_dim: int, act_dim: int) -> Replay:
        f32 = jnp.float32
        return cls(
            obs=jnp.zeros((slots, num_envs, obs_dim), f32),
            action=jnp.zeros((slots, num_envs, act_dim), f32),
            reward=jnp.zeros((slots, num_envs), f32),
            next_obs=jnp.zeros((slots, num_envs, obs_dim), f32),
            terminated=jnp.zeros((slots, num_envs), f32),
            ptr=jnp.zeros((), jnp.int32),
            size=jnp.zeros((), jnp.int32),
        )

    def insert(self, obs, action, reward, next_obs, terminated) -> Replay:
        i = self.ptr
        slots = self.obs.shape[0]
        return self.replace(
            obs=self.obs.at[i].set(obs),
            action=self.action.at[i].set(action),
            reward=self.reward.at[i].set(reward),
            next_obs=self.next_obs.at[i].set(next_obs),
            terminated=self.terminated.at[i].set(terminated.astype(jnp.float32)),
            ptr=(i + 1) % slots,
            size=jnp.minimum(self.size + 1, slots),
        )


def _replay_specs() -> Replay:
    data = P(None, AXIS)
    return Replay(data, data, data, data, data, P(), P())


def _env_specs(state: EnvState) -> EnvState:
    return jax.tree_util.tree_map(lambda _: P(AXIS), state)


def _make_sampler(mesh: Mesh, num_envs: int, batch_size: int, gamma: float) -> Callable:
    """``sample(replay, key) -> Batch`` of ``batch_size`` rows split over the mesh; each
    device gathers its rows from its own buffer columns (module docstring)."""
    devices = mesh.shape[AXIS]
    local_b = batch_size // devices
    local_n = num_envs // devices

    def local_sample(replay: Replay, key: jax.Array) -> Batch:
        k_t, k_c = jax.random.split(key)
        # The same (B,) draws on every device, whatever the device count.
        u_t = jax.random.randint(k_t, (batch_size,), 0, jnp.maximum(replay.size, 1))
        u_c = jax.random.uniform(k_c, (batch_size,))
        shard = jax.lax.axis_index(AXIS)
        rows = shard * local_b + jnp.arange(local_b)
        lo = rows * num_envs // batch_size
        hi = jnp.maximum((rows + 1) * num_envs // batch_size, lo + 1)
        col = jnp.minimum(lo + (u_c[rows] * (hi - lo)).astype(jnp.int32), hi - 1)
        t, c = u_t[rows], col - shard * local_n

        return Batch(
            obs=replay.obs[t, c],
            action=replay.action[t, c],
            reward=replay.reward[t, c],
            next_obs=replay.next_obs[t, c],
            discount=gamma * (1.0 - replay.terminated[t, c]),
        )

    return jax.shard_map(
        local_sample,
        mesh=mesh,
        in_specs=(_replay_specs(), P()),
        out_specs=P(AXIS),
        check_vma=False,
    )


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


@flax.struct.dataclass
class LoopState:
    """The carry of the compiled loop: everything a run needs to continue."""

    agent: Any
    env: EnvState
    replay: Replay
    key: jax.Array
    #: Iterations done so far (each = num_envs env steps).
    iteration: jax.Array
    #: Gradient updates applied so far.
    updates: jax.Array


def _check_divisible(name: str, value: int, devices: int) -> None:
    if value % devices:
        raise ValueError(
            f"{name}={value} must be divisible by the number of devices ({devices}): "
            f"the {name.replace('_', ' ')} is split evenly over them"
        )


class CompiledTrainer:
    """Builds the jitted chunk and evaluation functions and the initial :class:`LoopState`."""

    def __init__(self, cfg: CompiledConfig, agent_cfg: AgentConfig, env: VecEnv | None = None):
        from revflow.jax_envs import make

        cls = get_agent_class(cfg.algo)
        if not isinstance(agent_cfg, cls.Config):
            raise TypeError(f"algo {cfg.algo!r} needs a {cls.Config.__name__}, got {agent_cfg}")
        self.cfg, self.agent_cfg = cfg, agent_cfg
        self.mesh = make_mesh(cfg.num_devices)
        devices = self.mesh.shape[AXIS]
        self.batch_size = cfg.resolved_batch_size(agent_cfg)
        _check_divisible("num_envs", cfg.num_envs, devices)
        _check_divisible("batch_size", self.batch_size, devices)
        name = cfg.env.removeprefix("mjx:")
        self.env = env or make(name, cfg.num_envs, cfg.episode_length)
        self.eval_env = make(name, cfg.eval_episodes, cfg.episode_length)
        self.agent: Agent = cls(agent_cfg, self.env.obs_dim, self.env.act_dim)
        self.gamma = float(agent_cfg.gamma)
        self.slots = cfg.slots()
        self._sample = _make_sampler(self.mesh, cfg.num_envs, self.batch_size, self.gamma)
        self._env_step = None  # built with the env-state specs in init_state
        self.shardings = None
        self._chunk = None
        self._eval = jax.jit(self._evaluate)

    # -- state ------------------------------------------------------------------------------

    def _fresh_state(self) -> LoopState:
        """The initial carry (a pure function of ``cfg.seed``), not yet placed on the mesh."""
        k_agent, k_env, k_loop = jax.random.split(jax.random.key(self.cfg.seed), 3)
        return LoopState(
            agent=self.agent.init(k_agent),
            env=jax.jit(self.env.reset)(k_env),
            replay=Replay.zeros(self.slots, self.cfg.num_envs, self.env.obs_dim, self.env.act_dim),
            key=k_loop,
            iteration=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32),
        )

    def _setup(self, state: Any) -> None:
        """Shardings of the carry and the sharded env step, from the carry's structure."""
        if self.shardings is not None:
            return
        specs = LoopState(
            agent=jax.tree_util.tree_map(lambda _: P(), state.agent),
            env=_env_specs(state.env),
            replay=_replay_specs(),
            key=P(),
            iteration=P(),
            updates=P(),
        )
        self.shardings = jax.tree_util.tree_map(lambda s: NamedSharding(self.mesh, s), specs)
        self._env_step = jax.shard_map(
            self.env.step,
            mesh=self.mesh,
            in_specs=(specs.env, P(AXIS)),
            out_specs=(specs.env, P(AXIS)),
            check_vma=False,
        )

    def abstract_state(self) -> LoopState:
        """Shapes, dtypes and shardings of the carry (``jax.ShapeDtypeStruct`` leaves), without
        computing or allocating it: the template to restore a checkpoint into."""
        shapes = jax.eval_shape(self._fresh_state)
        self._setup(shapes)
        return jax.tree_util.tree_map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, self.shardings
        )

    def init_state(self) -> LoopState:
        """The initial carry, placed on the mesh (env axis split, the rest replicated)."""
        state = self._fresh_state()
        self._setup(state)
        # Distinct buffers for every leaf (agents alias target and online params at init),
        # since the chunk function donates its input.
        state = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), state)
        return jax.device_put(state, self.shardings)

    # -- one iteration ----------------------------------------------------------------------

    def _metric_zeros(self, state: LoopState) -> dict[str, jax.Array]:
        batch = jax.eval_shape(self._sample, state.replay, state.key)
        _, metrics = jax.eval_shape(self.agent.update, state.agent, batch, state.key)
        return {k: jnp.zeros((), jnp.float32) for k in metrics}

    def _iteration(self, state: LoopState, acc: dict[str, Any]) -> tuple[LoopState, dict]:
        cfg, agent = self.cfg, self.agent
        key, k_act, k_upd = jax.random.split(state.key, 3)
        warm = state.iteration < cfg.warmup_iterations
        obs = state.env.obs
        shape = (cfg.num_envs, self.env.act_dim)
        action = jax.lax.cond(
            warm,
            lambda: jax.random.uniform(k_act, shape, jnp.float32, -1.0, 1.0),
            lambda: agent.act(state.agent, k_act, obs, mode="explore").astype(jnp.float32),
        )
        env_state, out = self._env_step(state.env, action)
        replay = state.replay.insert(obs, action, out.reward, out.next_obs, out.terminated)

        def updates(agent_state: Any) -> tuple[Any, dict[str, jax.Array]]:
            def one(s: Any, k: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
                k_batch, k_step = jax.random.split(k)
                return agent.update(s, self._sample(replay, k_batch), k_step)

            s, metrics = jax.lax.scan(one, agent_state, jax.random.split(k_upd, cfg.utd))
            return s, {k: jnp.sum(v).astype(jnp.float32) for k, v in metrics.items()}

        zeros = acc["metrics"]
        agent_state, metric_sums = jax.lax.cond(
            warm,
            lambda s: (s, jax.tree_util.tree_map(jnp.zeros_like, zeros)),
            updates,
            state.agent,
        )
        n_updates = jnp.where(warm, 0, cfg.utd).astype(jnp.int32)
        acc = {
            "metrics": jax.tree_util.tree_map(jnp.add, acc["metrics"], metric_sums),
            "updates": acc["updates"] + n_updates,
            "episodes": acc["episodes"] + jnp.sum(out.done).astype(jnp.int32),
            "return_sum": acc["return_sum"] + jnp.sum(out.episode_return),
            "length_sum": acc["length_sum"] + jnp.sum(out.episode_length),
        }
        new_state = LoopState(
            agent=agent_state,
            env=env_state,
            replay=replay,
            key=key,
            iteration=state.iteration + 1,
            updates=state.updates + n_updates,
        )
        return new_state, acc

    def _run_chunk(self, state: LoopState, num_iters: jax.Array) -> tuple[LoopState, dict]:
        acc = {
            "metrics": self._metric_zeros(state),
            "updates": jnp.zeros((), jnp.int32),
            "episodes": jnp.zeros((), jnp.int32),
            "return_sum": jnp.zeros((), jnp.float32),
            "length_sum": jnp.zeros((), jnp.int32),
        }
        state, acc = jax.lax.fori_loop(0, num_iters, lambda _, c: self._iteration(*c), (state, acc))
        finite = [
            jnp.all(jnp.isfinite(x))
            for x in jax.tree_util.tree_leaves(state.agent)
            if jnp.issubdtype(x.dtype, jnp.inexact)
        ]
        acc["params_finite"] = jnp.all(jnp.stack(finite))
        return state, acc

    def chunk_fn(self) -> Callable[[LoopState, Any], tuple[LoopState, dict]]:
        """The jitted ``(state, num_iters) -> (state, stats)``; the state is donated."""
        if self.shardings is None:
            raise RuntimeError("call init_state() or abstract_state() first")
        if self._chunk is None:
            replicated = NamedSharding(self.mesh, P())
            self._chunk = jax.jit(
                self._run_chunk,
                in_shardings=(self.shardings, replicated),
                out_shardings=(self.shardings, replicated),
                donate_argnums=0,
            )
        return self._chunk

    # -- evaluation -------------------------------------------------------------------------

    def _evaluate(self, agent_state: Any, key: jax.Array) -> jax.Array:
        """Undiscounted return of one episode in each of ``eval_episodes`` environments."""
        env, mode = self.eval_env, self.cfg.eval_mode
        k_reset, k_act = jax.random.split(key)
        zeros = jnp.zeros(env.num_envs, jnp.float32)

        def body(carry, k):
            st, ret, alive = carry
            action = self.agent.act(agent_state, k, st.obs, mode=mode)
            st, out = env.step(st, action)
            return (st, ret + alive * out.reward, alive * (1.0 - out.done)), None

        keys = jax.random.split(k_act, env.episode_length)
        init = (env.reset(k_reset), zeros, zeros + 1.0)
        (_, returns, _), _ = jax.lax.scan(body, init, keys)
        return returns

    def evaluate(self, agent_state: Any, key: jax.Array) -> np.ndarray:
        return np.asarray(self._eval(agent_state, key))


# --------------------------------------------------------------------------------------------
# Host loop
# --------------------------------------------------------------------------------------------


def _config_dict(cfg: CompiledConfig, agent_cfg: AgentConfig, mesh: Mesh) -> dict[str, Any]:
    """The content of a compiled run's ``config.json`` (:func:`revflow.rundir.config_dict`)."""
    resolved = {
        "batch_size": cfg.resolved_batch_size(agent_cfg),
        "buffer_size": cfg.slots() * cfg.num_envs,
        "devices": [str(d) for d in mesh.devices.flat],
    }
    return rundir.config_dict(cfg, agent_cfg, resolved)


def _check_config(saved: Any, current: dict[str, Any], what: str) -> None:
    """Raise :class:`ConfigMismatchError` naming every differing key, after filling the
    fields either side lacks as loading fills them (:func:`revflow.rundir.comparable`).
    ``resolved.devices`` is not compared: a run may continue on other devices (module
    docstring)."""

    def comparable(config: Any) -> Any:
        if not isinstance(config, dict):
            return config
        resolved = {k: v for k, v in config.get("resolved", {}).items() if k != "devices"}
        return {**config, "resolved": resolved}

    saved, current = (rundir.comparable(c, CompiledConfig) for c in (saved, current))
    diffs = rundir.diff(comparable(saved), comparable(current))
    if diffs:
        raise ConfigMismatchError(f"{what}: " + "; ".join(diffs))


def is_compiled_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir/config.json`` is that of a compiled run (False if absent or other)."""
    return rundir.saved_section(run_dir) == CompiledConfig.SECTION


def load_run(run_dir: str | Path) -> tuple[CompiledConfig, AgentConfig]:
    """The configs saved in a compiled run's ``config.json`` (clear errors if missing or
    invalid)."""
    return rundir.load_run(run_dir, CompiledConfig)


@dataclasses.dataclass
class _Host:
    """The host side of the loop, saved in every checkpoint next to the carry."""

    eval_key: jax.Array
    #: Evaluations and checkpoints (at the first chunk end at or after their next step).
    evals: Every
    checkpoints: Every
    #: (step, mean, std) of the latest evaluation.
    last_eval: tuple[int, float, float] | None = None

    @classmethod
    def initial(cls, cfg: CompiledConfig) -> _Host:
        key = jax.random.key(cfg.seed + 7919)
        return cls(key, Every.after(0, cfg.eval_every), Every.after(0, cfg.checkpoint_every))


def _save(
    path: Path, step: int, state: LoopState, host: _Host, config: dict, cfg: CompiledConfig
) -> None:
    extra = {
        "config": config,
        "env_steps": step,
        "next_eval": host.evals.next,
        "next_checkpoint": host.checkpoints.next,
        "last_eval": host.last_eval,
        "complete": step >= cfg.iterations * cfg.num_envs,
    }
    tree = {"loop": state, "eval_key": host.eval_key}
    save_checkpoint(path, step, tree, extra, keep=cfg.keep_checkpoints)


def _restore(
    trainer: CompiledTrainer,
    path: Path,
    config: dict[str, Any] | None,
    step: int | None = None,
    notify: Callable[[str], None] | None = None,
) -> tuple[LoopState, _Host, dict[str, Any], int]:
    """The carry, host state, extra and step of the newest intact checkpoint (or that of
    ``step``), after checking its config against ``config`` (None: against ``config.json``)
    before any array is read; ``notify`` hears of each newer checkpoint skipped as corrupt."""
    from revflow.checkpoint import restore_newest

    if step is None and not list_checkpoints(path):
        raise CheckpointError(
            f"no checkpoint in {path}: nothing to resume (start the run without --resume "
            "/ resume=True, or check the run directory)"
        )
    other = "the requested one"
    if config is None:
        config, other = json.loads((path / CONFIG_FILE).read_text()), CONFIG_FILE

    def check(ref: Any, extra: dict[str, Any]) -> None:
        _check_config(
            extra.get("config"),
            config,
            f"checkpoint {ref.step} in {path} was written with another config than {other}",
        )

    template = {"loop": trainer.abstract_state(), "eval_key": jax.random.key(0)}
    ref, tree, extra, _ = restore_newest(path, lambda r, e: template, step, check, notify)
    last = extra["last_eval"]
    cfg = trainer.cfg
    host = _Host(
        eval_key=tree["eval_key"],
        evals=Every(cfg.eval_every, int(extra["next_eval"])),
        checkpoints=Every(cfg.checkpoint_every, int(extra["next_checkpoint"])),
        last_eval=None if last is None else (int(last[0]), float(last[1]), float(last[2])),
    )
    return tree["loop"], host, extra, ref.step


def _write_result(path: Path, cfg: CompiledConfig, state: LoopState, host: _Host) -> None:
    fields = {"algo": cfg.algo, "env": cfg.env, "seed": cfg.seed}
    fields.update(env_steps=cfg.iterations * cfg.num_envs, updates=int(state.updates))
    rundir.write_result(path, fields, host.last_eval)


def train_compiled(
    cfg: CompiledConfig,
    agent_cfg: AgentConfig,
    run_dir: str | Path | None = None,
    trainer: CompiledTrainer | None = None,
    resume: bool = False,
    step: int | None = None,
    notify: Callable[[str], None] | None = None,
) -> tuple[Path, LoopState]:
    """Train with the compiled loop; returns the run directory and the final loop state.

    Writes ``config.json``, ``metrics.csv`` / ``eval.csv`` / TensorBoard events (the engine's
    metric names; ``charts/episodic_return`` is the mean return of the episodes that ended in
    a chunk), ``result.json`` and, if ``cfg.checkpoint``, checkpoints of the whole loop state
    (every ``cfg.checkpoint_every`` env steps and at the end).

    ``resume=False`` refuses a run directory that already holds checkpoints
    (``FileExistsError``). ``resume=True`` continues the run in ``run_dir`` from its latest
    checkpoint, bit-exactly as if it had not stopped (same devices); it raises
    ``CheckpointError`` if there is none and :class:`~revflow.engine.ConfigMismatchError`,
    naming the differing keys, if ``cfg`` / ``agent_cfg`` are not the checkpoint's (both
    before any compute). Resuming a finished run returns its final state. It resumes the
    newest intact checkpoint (``step``: that one), ``notify`` hearing of each newer one
    skipped as corrupt and where it resumes.

    A non-finite metric or parameter raises :class:`~revflow.engine.NumericalError`; the
    newest checkpoint (written before that chunk) is the last good state. An interrupt
    (SIGINT) writes a checkpoint at the next chunk end (exact: the carry holds the
    environments) and raises :class:`~revflow.engine.Interrupted`.
    """
    from revflow.engine import Interrupted, NumericalError, stop_on_interrupt
    from revflow.metrics_log import RunLogger

    say = notify or (lambda message: None)

    trainer = trainer or CompiledTrainer(cfg, agent_cfg)
    if trainer.cfg != cfg or trainer.agent_cfg != agent_cfg:
        raise ValueError("`trainer` was built for another config than `cfg` / `agent_cfg`")
    path = Path(run_dir) if run_dir is not None else run_dir_for(cfg)
    config = _config_dict(cfg, agent_cfg, trainer.mesh)
    total = cfg.iterations
    n = cfg.num_envs
    if resume:
        state, host, extra, start = _restore(trainer, path, config, step, say)
        if extra.get("complete"):
            try:
                result = read_result(path)
            except CheckpointError:
                result = None
            if result is None:  # killed between the last checkpoint and result.json
                _write_result(path, cfg, state, host)
            say(f"{path} had already finished ({start} env steps); nothing to do")
            return path, state
        say(f"resuming {path} from checkpoint {start} (env step {start} of {total * n})")
    else:
        rundir.require_new(path, cfg.COMMAND, "remove it")
        probe_writable(path)
        rundir.write_json(path / CONFIG_FILE, config)
        state, host, start = trainer.init_state(), _Host.initial(cfg), 0
    stop = threading.Event()
    chunk = trainer.chunk_fn()
    logger = RunLogger(
        path,
        total * n,
        trainer.agent.METRICS,
        start_step=start,
        tensorboard=cfg.tensorboard,
        csv_files=cfg.csv,
        run_name=f"{cfg.algo} {cfg.env} seed{cfg.seed} compiled",
        config=config,
        progress=cfg.progress,
    )
    try:
        with stop_on_interrupt(stop):
            it = int(state.iteration)
            while it < total:
                # Chunks end at multiples of chunk_iters (and at the end), resumed runs included.
                num = min(cfg.chunk_iters - it % cfg.chunk_iters, total - it)
                t0 = time.perf_counter()
                state, stats = chunk(state, jnp.asarray(num, jnp.int32))
                stats = jax.device_get(stats)
                seconds = time.perf_counter() - t0
                it += num
                step = it * n
                if not bool(stats["params_finite"]) or not all(
                    np.isfinite(v) for v in stats["metrics"].values()
                ):
                    kept = [r.step for r in list_checkpoints(path)]
                    good = f"checkpoint {kept[-1]}" if kept else "no checkpoint"
                    raise NumericalError(
                        f"non-finite parameters or metrics in the chunk ending at env step "
                        f"{step}; nothing of it was saved, the last good state is {good} in "
                        f"{path}: lower a learning rate (--agent.*-lr) or clip gradients "
                        "(--agent.max-grad-norm) in a new run, or start another --seed",
                        step,
                        int(state.updates),
                        "parameters or metrics",
                    )
                values: dict[str, float] = {}
                if stats["updates"]:
                    updates = int(stats["updates"])
                    values = {k: float(v) / updates for k, v in stats["metrics"].items()}
                values["charts/sps"] = num * n / max(seconds, 1e-9)
                values["charts/updates"] = int(state.updates)
                logger.log_metrics(step, values)
                if stats["episodes"]:
                    episodes = int(stats["episodes"])
                    logger.log_episode(
                        step,
                        float(stats["return_sum"]) / episodes,
                        int(stats["length_sum"]) // episodes,
                    )
                if host.evals.due(step, final=it >= total):
                    host.eval_key, sub = jax.random.split(host.eval_key)
                    returns = trainer.evaluate(state.agent, sub)
                    host.last_eval = (step, float(returns.mean()), float(returns.std()))
                    logger.log_eval(step, host.last_eval[1], host.last_eval[2])
                    host.evals.done(step)
                if cfg.checkpoint and it < total and host.checkpoints.due(step):
                    host.checkpoints.done(step)
                    _save(path, step, state, host, config, cfg)
                logger.progress(step)
                if stop.is_set() and it < total:
                    if cfg.checkpoint:
                        _save(path, step, state, host, config, cfg)
                    raise Interrupted(
                        f"interrupted at env step {step} of {total * n}: "
                        + (
                            f"checkpoint {step} written (exact); continue with `revflow "
                            f"train-compiled --resume {path}`"
                            if cfg.checkpoint
                            else "no checkpoint written (checkpoint=False)"
                        ),
                        step,
                    )
            if cfg.checkpoint:
                _save(path, total * n, state, host, config, cfg)
            _write_result(path, cfg, state, host)
    finally:
        logger.close()
    return path, state


def resume(run_dir: str | Path) -> tuple[Path, LoopState]:
    """Continue the compiled run in ``run_dir`` (its ``config.json``) from its latest
    checkpoint: :func:`train_compiled` with ``resume=True``. Also raises
    ``FileNotFoundError`` for a missing run directory or config."""
    cfg, agent_cfg = load_run(run_dir)
    return train_compiled(cfg, agent_cfg, run_dir, resume=True)


def load_agent(
    run_dir: str | Path,
    step: int | None = None,
    eval_episodes: int | None = None,
    eval_mode: str | None = None,
    notify: Callable[[str], None] | None = None,
) -> tuple[CompiledTrainer, Any, int]:
    """``(trainer, agent state, step)`` of a compiled run's checkpoint (default: the latest).

    The trainer is built on one device with ``eval_episodes`` / ``eval_mode`` (default: the
    run's), so ``trainer.evaluate(agent_state, key)`` evaluates the agent on the run's
    ``mjx:`` task (its ``episode_length``) and ``trainer.agent`` / ``trainer.cfg`` describe
    it. Errors: those of :func:`load_run` and :func:`~revflow.checkpoint.restore_checkpoint`,
    and :class:`~revflow.engine.ConfigMismatchError` if the checkpoint's config differs from
    ``config.json``.
    """
    path = Path(run_dir)
    cfg, agent_cfg = load_run(path)
    if step is None and not list_checkpoints(path):
        raise CheckpointError(f"no checkpoint in {path}")
    cfg = dataclasses.replace(
        cfg,
        num_devices=1,
        eval_episodes=eval_episodes or cfg.eval_episodes,
        eval_mode=eval_mode or cfg.eval_mode,
    )
    trainer = CompiledTrainer(cfg, agent_cfg)
    state, _, _, step = _restore(trainer, path, None, step, notify)
    return trainer, state.agent, step
