"""The off-policy training loop shared by every agent: warm-up, act / store / update, evaluation,
logging, checkpoints and exact resume.

Loop semantics
--------------
- Env steps ``0 .. warmup_steps - 1`` take uniform-random actions in ``[-1, 1]^d`` (drawn from
  the run's numpy generator) and do no updates.
- Every later env step owes ``utd`` gradient updates. Env steps are grouped into *chunks* of
  ``updates_per_call // utd`` policy steps; a chunk ends early at the end of an episode and at
  the end of training. All env steps of a chunk act with the parameters as of the chunk's
  start; after the chunk, its owed updates run, ``updates_per_call`` of them fused into one
  jitted ``lax.scan`` over batches sampled from the (numpy) replay buffer in one go, and a
  shorter remainder as calls of ``utd`` updates. With ``updates_per_call == utd`` this is the
  usual "one env step, then ``utd`` updates" loop; larger chunks trade a few steps of policy
  staleness for fewer dispatches.
- Logging, evaluation and checkpoints happen only at chunk ends.

Checkpoints and exact resume
----------------------------
A checkpoint holds the agent's train state, the replay buffer, the numpy generator state, the
jax key, the env-step / update / episode counters and the full resolved config. The
environment's internal state cannot be saved in general, so periodic checkpoints are written
only at episode boundaries (the first episode end after ``checkpoint_every`` more env steps),
where the next thing the loop does anyway is reset the environment. Every episode is reset
with a seed derived from ``(seed, episode index)``, so on CPU with a fixed seed a run that is
killed at any moment and resumed from its latest checkpoint reproduces the uninterrupted run
bit-exactly (the final checkpoint at ``steps`` may fall inside an episode; it is the end of
the run). A checkpoint written on a numerical error is mid-episode; resuming from it starts a
new episode and drops the failed chunk's updates.

A non-finite metric or parameter after an update call raises :class:`NumericalError` naming
the env step, the update and the quantity, after saving the state from before that call as a
*last good state* (``checkpoints/last-good/<step>/``, outside the rotation, so it never
displaces a healthy checkpoint). :func:`resume` refuses to continue a last good state with an
unchanged config (it would fail the same way) and says what to change; with ``changes`` (new
values of agent or loop fields) it continues it under the changed config, which
``config.json`` then holds (the earlier ones listed under ``earlier_configs``).

Recovery: :func:`resume` and :func:`load_agent` take the newest *intact* checkpoint, naming
each newer one they skipped and why (``notify``), or the one of ``step``. An interrupt
(SIGINT, Ctrl-C) is taken at the next chunk end: the loop writes a checkpoint there (mid-
episode unless the episode just ended: resuming it starts a new episode) and raises
:class:`Interrupted`. :func:`train` writes a probe file into the run directory before any
compute, so a read-only or full disk is reported before the first update.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from revflow import __version__, rundir
from revflow.agents.base import ACT_MODES, Agent, AgentConfig, Batch, require
from revflow.agents.registry import get_agent_class
from revflow.checkpoint import (
    CheckpointError,
    CheckpointRef,
    CorruptCheckpointError,
    list_checkpoints,
    probe_writable,
    restore_newest,
    save_checkpoint,
)
from revflow.envs import env_info, make_env, make_vector_env
from revflow.loop_config import LoopConfig
from revflow.metrics_log import RunLogger
from revflow.overrides import apply_overrides
from revflow.replay import ReplayBuffer
from revflow.rundir import (
    CONFIG_FILE,
    RESULT_FILE,
    ConfigMismatchError,
    config_choices,
    read_result,
    run_dir_for,
)
from revflow.schedule import Every

__all__ = [
    "ConfigMismatchError",
    "Interrupted",
    "NumericalError",
    "ResumeRefused",
    "TrainConfig",
    "evaluate",
    "load_agent",
    "load_run",
    "read_result",
    "render_episode",
    "resume",
    "run_dir_for",
    "train",
]


class NumericalError(FloatingPointError):
    """A NaN/inf appeared in an update's metrics or in the train state."""

    def __init__(self, message: str, step: int, update: int, quantity: str):
        super().__init__(message)
        self.step = step
        self.update = update
        self.quantity = quantity


class ResumeRefused(ValueError):
    """Resuming as asked would repeat a recorded failure, or change what cannot change."""


class Interrupted(KeyboardInterrupt):
    """The run stopped on an interrupt after writing a checkpoint at env step ``step``."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


@dataclasses.dataclass(frozen=True)
class TrainConfig(LoopConfig):
    """Options of the training engine (the agent's hyperparameters live in its own config)."""

    SECTION: ClassVar[str] = "train"
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"eval_seeds": "varying", "eval_at_start": False}

    #: Updates fused into one jitted ``lax.scan`` call; the ``updates_per_call // utd`` env
    #: steps before it act with the parameters as of their chunk's start. Must be a multiple
    #: of ``utd``. Default 1 by measurement on the 2-core CPU: fusing 4 / 8 / 16 SAC updates
    #: cut the time per update by only 5 / 7 / ~5 % (4.1 -> 3.8 ms, reference sizes), not worth
    #: the policy staleness; an RFM update is ~1 s, where dispatch cost is negligible.
    updates_per_call: int = 1
    #: Seeds of evaluation episodes: "fixed" (env seeds 0..eval_episodes-1 and policy key 0 at
    #: every evaluation, the authors' rule) or "varying" (new seeds per evaluation, derived
    #: from ``seed`` and the env step).
    eval_seeds: str = "fixed"
    #: Also evaluate at env step 0, before any update (the authors' code does).
    eval_at_start: bool = True
    #: Log averaged update metrics and steps/s every this many env steps.
    log_every: int = 1_000
    #: Log to Weights & Biases (needs ``pip install wandb``).
    wandb: bool = False
    #: Weights & Biases project name.
    wandb_project: str = "revflow"

    def validate(self) -> None:
        require(
            not self.env.startswith("mjx:"),
            "env",
            self.env,
            "is a JAX-native environment: train it with the compiled loop "
            "(revflow train-compiled --env ... --num-envs N; revflow.compiled.train_compiled)",
        )
        super().validate()
        require(
            self.updates_per_call >= 1 and self.updates_per_call % self.utd == 0,
            "updates_per_call",
            self.updates_per_call,
            f"must be a positive multiple of utd={self.utd}",
        )
        require(self.log_every >= 1, "log_every", self.log_every, "must be >= 1")
        require(
            self.eval_seeds in EVAL_SEEDS,
            "eval_seeds",
            self.eval_seeds,
            f"must be one of {EVAL_SEEDS}",
        )

    @property
    def capacity(self) -> int:
        """Replay capacity: ``buffer_size``, else ``steps``."""
        return self.buffer_size or self.steps


#: ``TrainConfig.eval_seeds``: the authors' fixed seeds, or seeds new at every evaluation.
EVAL_SEEDS: tuple[str, ...] = ("fixed", "varying")


def _config_dict(cfg: TrainConfig, agent_cfg: AgentConfig) -> dict[str, Any]:
    """The content of an engine run's ``config.json`` (:func:`revflow.rundir.config_dict`)."""
    resolved = {"batch_size": cfg.resolved_batch_size(agent_cfg), "buffer_size": cfg.capacity}
    return {"revflow_version": __version__, **rundir.config_dict(cfg, agent_cfg, resolved)}


def load_run(run_dir: str | Path) -> tuple[TrainConfig, AgentConfig]:
    """The configs saved in an engine run's ``config.json`` (clear errors if missing or
    invalid)."""
    return rundir.load_run(run_dir, TrainConfig)


# --------------------------------------------------------------------------------------------
# Jitted pieces
# --------------------------------------------------------------------------------------------


def _episode_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0] % (2**31))


def _make_act_step(agent: Agent) -> Callable[..., Any]:
    """jit: ``(state, key, obs (obs_dim,)) -> (new key, action (act_dim,))`` in explore mode."""

    def act_step(state, key, obs):
        key, sub = jax.random.split(key)
        return key, agent.act(state, sub, obs[None], mode="explore")[0]

    return jax.jit(act_step)


def _make_update(agent: Agent) -> Callable[..., Any]:
    """jit: ``(state, batches (n, B, ...), keys (n, 2)) -> (state, metrics (n,), finite flags)``.

    The flags hold one bool per floating-point leaf of the new state (all entries finite).
    """

    def fused(state, batches, keys):
        def body(s, xs):
            return agent.update(s, *xs)

        state, metrics = jax.lax.scan(body, state, (batches, keys))
        flags = [
            jnp.all(jnp.isfinite(leaf))
            for leaf in jax.tree_util.tree_leaves(state)
            if jnp.issubdtype(leaf.dtype, jnp.inexact)
        ]
        return state, metrics, jnp.stack(flags) if flags else jnp.ones((0,), bool)

    return jax.jit(fused)


def _float_leaf_paths(state: Any) -> list[str]:
    return [
        jax.tree_util.keystr(path)
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
        if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)
    ]


def _to_batch(sample: dict[str, np.ndarray], gamma: float) -> Batch:
    discount = (gamma * (1.0 - sample["terminated"])).astype(np.float32)
    return Batch(sample["obs"], sample["action"], sample["reward"], sample["next_obs"], discount)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

_MAX_EVAL_ENVS = 16


def evaluate(
    agent: Agent,
    state: Any,
    env_name: str,
    episodes: int = 10,
    mode: str = "best-of-n",
    seed: int = 0,
    act_fn: Callable[..., Any] | None = None,
) -> tuple[float, float, np.ndarray]:
    """Run ``episodes`` full episodes in vectorised copies of ``env_name`` acting with ``mode``.

    Returns ``(mean, std, returns)``. ``act_fn`` is a jitted ``agent.act`` with ``mode``
    static (built here if not given; pass one to avoid recompiling across calls).
    """
    if mode not in ACT_MODES:
        raise ValueError(f"unknown eval mode {mode!r}; expected one of {ACT_MODES}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if act_fn is None:
        act_fn = jax.jit(agent.act, static_argnames=("mode",))
    num_envs = min(episodes, _MAX_EVAL_ENVS)
    envs = make_vector_env(env_name, num_envs=num_envs, seed=seed)
    key = jax.random.PRNGKey(seed)
    returns: list[float] = []
    try:
        round_idx = 0
        while len(returns) < episodes:
            obs, _ = envs.reset(seed=seed + round_idx * num_envs)
            total = np.zeros(num_envs)
            done = np.zeros(num_envs, bool)
            while not done.all():
                key, sub = jax.random.split(key)
                action = np.asarray(act_fn(state, sub, jnp.asarray(obs), mode=mode))
                obs, reward, terminated, truncated, _ = envs.step(action)
                total += np.where(done, 0.0, reward)
                done |= np.asarray(terminated) | np.asarray(truncated)
            returns.extend(total.tolist())
            round_idx += 1
    finally:
        envs.close()
    arr = np.asarray(returns[:episodes])
    return float(arr.mean()), float(arr.std()), arr


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _template(
    state: Any, key: Any, step: int, capacity: int, obs_dim: int, act_dim: int
) -> dict[str, Any]:
    """Structure, shapes and dtypes of the checkpoint written at env step ``step``."""
    size = min(step, capacity)
    replay = ReplayBuffer(max(size, 1), obs_dim, act_dim).state_dict()
    replay = {
        k: np.zeros((size, *v.shape[1:]), v.dtype) if isinstance(v, np.ndarray) else v
        for k, v in replay.items()
    }
    replay["capacity"] = capacity
    return {"agent": state, "key": key, "replay": replay}


Notify = Callable[[str], None]


def _failure_of(extra: dict[str, Any]) -> str | None:
    failure = extra.get("numerical_error")
    return None if failure is None else str(failure)


def _restore_run(
    run_dir: Path,
    state: Any,
    key: Any,
    capacity: int,
    dims: tuple[int, int],
    step: int | None,
    notify: Notify | None,
    check: Callable[[CheckpointRef, dict[str, Any]], None] | None = None,
) -> tuple[CheckpointRef, dict[str, Any], dict[str, Any]]:
    """Restore the newest intact checkpoint of a run (or that of ``step``) whose config is
    one of :func:`revflow.rundir.config_choices`; ``notify`` hears of every newer one skipped
    and why."""
    keys = ("train", "agent", "resolved")
    choices = [
        {k: c.get(k) for k in keys}
        for c in (rundir.comparable(c, TrainConfig) for c in config_choices(run_dir))
    ]

    def check_config(ref: CheckpointRef, extra: dict[str, Any]) -> None:
        saved = rundir.comparable(extra.get("config") or {}, TrainConfig)
        saved = {k: saved.get(k) for k in keys}
        if all(rundir.diff(saved, c) for c in choices):
            raise ConfigMismatchError(
                f"{ref.describe()} in {run_dir} was written with another config than "
                f"{CONFIG_FILE}: " + "; ".join(rundir.diff(saved, choices[0]))
            )
        if check is not None:
            check(ref, extra)

    ref, tree, extra, _ = restore_newest(
        run_dir,
        lambda r, _: _template(state, key, r.step, capacity, *dims),
        step,
        check_config,
        notify,
    )
    return ref, tree, extra


def load_agent(
    run_dir: str | Path,
    step: int | None = None,
    notify: Notify | None = None,
    dims: tuple[int, int] | None = None,
) -> tuple[Agent, Any, TrainConfig, int]:
    """``(agent, train state, train config, step)`` of a run's newest intact checkpoint (or
    that of ``step``). ``notify`` hears of each newer checkpoint skipped as corrupt and of a
    last good state (the state a failed run had before its failure). ``dims``: the run's
    ``(obs_dim, act_dim)``, if known (else its env is built to get them)."""
    run_dir = Path(run_dir)
    cfg, agent_cfg = load_run(run_dir)
    if not list_checkpoints(run_dir):
        raise CheckpointError(f"no checkpoint in {run_dir}")
    if dims is None:
        env = make_env(cfg.env, seed=cfg.seed)
        obs_dim, act_dim, _ = env_info(env)
        env.close()
    else:
        obs_dim, act_dim = dims
    agent = get_agent_class(cfg.algo)(agent_cfg, obs_dim, act_dim)
    key = jax.random.PRNGKey(0)
    ref, tree, extra = _restore_run(
        run_dir, agent.init(key), key, cfg.capacity, (obs_dim, act_dim), step, notify
    )
    failure = _failure_of(extra)
    if failure is not None and notify is not None:
        notify(
            f"warning: {ref.describe()} of {run_dir} is the state before the run failed "
            f"({failure}); later checkpoints do not exist"
        )
    return agent, tree["agent"], cfg, ref.step


def render_episode(
    agent: Agent, state: Any, env_name: str, mode: str = "best-of-n", seed: int = 0
) -> list[np.ndarray]:
    """RGB frames (H, W, 3) of one episode rendered headlessly (MUJOCO_GL defaults to egl)."""
    env = make_env(env_name, seed=seed, render=True)
    act_fn = jax.jit(agent.act, static_argnames=("mode",))
    key = jax.random.PRNGKey(seed)
    try:
        obs, _ = env.reset(seed=seed)
        frames = [env.render()]
        done = False
        while not done:
            key, sub = jax.random.split(key)
            action = np.asarray(act_fn(state, sub, jnp.asarray(obs)[None], mode=mode))[0]
            obs, _, terminated, truncated, _ = env.step(action)
            frames.append(env.render())
            done = bool(terminated or truncated)
    finally:
        env.close()
    return frames


@dataclasses.dataclass
class _Counters:
    env_steps: int = 0
    updates: int = 0
    episodes: int = 0
    last_ckpt: int = 0


class _Trainer:
    def __init__(self, run_dir: Path, cfg: TrainConfig, agent_cfg: AgentConfig):
        self.run_dir = run_dir
        self.cfg = cfg
        self.agent_cfg = agent_cfg
        self.config_dict = _config_dict(cfg, agent_cfg)
        self.env = make_env(cfg.env, seed=cfg.seed)
        obs_dim, act_dim, _ = env_info(self.env)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.agent = get_agent_class(cfg.algo)(agent_cfg, obs_dim, act_dim)
        self.gamma = float(agent_cfg.gamma)
        self.batch_size = cfg.resolved_batch_size(agent_cfg)
        self.capacity = cfg.capacity
        self.buffer = ReplayBuffer(self.capacity, obs_dim, act_dim)
        self.np_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
        init_key, self.key = jax.random.split(jax.random.PRNGKey(cfg.seed))
        self.state = self.agent.init(init_key)
        self.n = _Counters()
        self.act_step = _make_act_step(self.agent)
        self.update_fn = _make_update(self.agent)
        self.eval_act = jax.jit(self.agent.act, static_argnames=("mode",))
        self.leaf_paths = _float_leaf_paths(self.state)
        self.last_eval: tuple[int, float, float] | None = None
        #: Set by SIGINT (:func:`_interrupts_stop`); the loop stops at the next chunk end.
        self.stop_requested = threading.Event()

    # -- checkpoints ------------------------------------------------------------------------

    def _pytree(self, state: Any) -> dict[str, Any]:
        return {"agent": state, "key": self.key, "replay": self.buffer.state_dict()}

    def save(self, state: Any | None = None, last_good: bool = False, **flags: Any) -> None:
        extra = {
            "config": self.config_dict,
            "counters": dataclasses.asdict(self.n),
            "np_rng": json.dumps(self.np_rng.bit_generator.state),
            **flags,
        }
        save_checkpoint(
            self.run_dir,
            self.n.env_steps,
            self._pytree(self.state if state is None else state),
            extra,
            keep=self.cfg.keep_checkpoints,
            last_good=last_good,
        )

    def restore(
        self,
        step: int | None = None,
        notify: Notify | None = None,
        check: Callable[[CheckpointRef, dict[str, Any]], None] | None = None,
    ) -> tuple[CheckpointRef, dict[str, Any]]:
        ref, tree, extra = _restore_run(
            self.run_dir,
            self.state,
            self.key,
            self.capacity,
            (self.obs_dim, self.act_dim),
            step,
            notify,
            check,
        )
        self.state, self.key = tree["agent"], tree["key"]
        self.buffer.load_state_dict(tree["replay"])  # keeps storage order and ptr
        self.np_rng.bit_generator.state = json.loads(extra["np_rng"])
        self.n = _Counters(**extra["counters"])
        return ref, extra

    # -- updates ----------------------------------------------------------------------------

    def _check(self, metrics: dict[str, np.ndarray], flags: np.ndarray, before: Any) -> None:
        bad: tuple[int, str] | None = None
        for name, values in metrics.items():
            idx = np.flatnonzero(~np.isfinite(values))
            if idx.size and (bad is None or idx[0] < bad[0]):
                bad = (int(idx[0]), f"metric {name}")
        if bad is None and not flags.all():
            n_calls = next(iter(metrics.values())).shape[0] if metrics else 1
            bad = (n_calls - 1, f"parameter {self.leaf_paths[int(np.argmin(flags))]}")
        if bad is None:
            return
        offset, quantity = bad
        update = self.n.updates + offset + 1
        failure = f"non-finite {quantity} at env step {self.n.env_steps} (update {update})"
        self.save(before, last_good=True, numerical_error=failure)
        msg = (
            f"{failure}; the state before this update call is kept as last good state "
            f"{self.n.env_steps} in {self.run_dir} (checkpoints/last-good/); resuming it needs a "
            f"change: {failure_advice(self.run_dir, self.agent_cfg)}"
        )
        raise NumericalError(msg, self.n.env_steps, update, quantity)

    def run_updates(self, num: int, acc: dict[str, float], counts: list[int]) -> None:
        per_call = self.cfg.updates_per_call
        sample = _to_batch(self.buffer.sample(self.np_rng, self.batch_size, num), self.gamma)
        self.key, sub = jax.random.split(self.key)
        keys = jax.random.split(sub, num)
        start = 0
        while start < num:
            size = per_call if num - start >= per_call else self.cfg.utd
            sl = slice(start, start + size)
            batches = Batch(*(np.ascontiguousarray(x[sl]) for x in sample))
            before = self.state
            self.state, metrics, flags = self.update_fn(self.state, batches, keys[sl])
            metrics = {k: np.asarray(v) for k, v in metrics.items()}
            self._check(metrics, np.asarray(flags), before)
            for k, v in metrics.items():
                acc[k] = acc.get(k, 0.0) + float(v.sum())
            counts[0] += size
            self.n.updates += size
            start += size

    # -- main loop --------------------------------------------------------------------------

    def run(self, logger: RunLogger) -> None:
        cfg, n = self.cfg, self.n
        chunk = cfg.updates_per_call // cfg.utd
        acc: dict[str, float] = {}
        counts = [0]
        log = Every.after(n.env_steps, cfg.log_every)
        evals = Every.after(n.env_steps, cfg.eval_every)
        checkpoints = Every.after(n.last_ckpt, cfg.checkpoint_every, aligned=False)
        if cfg.eval_every and cfg.eval_at_start and n.env_steps == 0:
            self.evaluate(logger)
        t_log, steps_log = time.perf_counter(), n.env_steps
        while n.env_steps < cfg.steps:
            obs, _ = self.env.reset(seed=_episode_seed(cfg.seed, n.episodes))
            ep_return, ep_len, done = 0.0, 0, False
            while not done and n.env_steps < cfg.steps:
                policy_steps = 0
                while policy_steps < chunk:
                    if n.env_steps < cfg.warmup_steps:
                        action = self.np_rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32)
                    else:
                        self.key, act = self.act_step(self.state, self.key, obs)
                        action = np.asarray(act)
                        policy_steps += 1
                    next_obs, reward, terminated, truncated, _ = self.env.step(action)
                    self.buffer.add(obs, action, reward, next_obs, float(terminated))
                    obs = next_obs
                    n.env_steps += 1
                    ep_return += float(reward)
                    ep_len += 1
                    done = bool(terminated or truncated)
                    if done or n.env_steps >= cfg.steps:
                        break
                if policy_steps:
                    self.run_updates(policy_steps * cfg.utd, acc, counts)
                if done:
                    n.episodes += 1
                    logger.log_episode(n.env_steps, ep_return, ep_len)
                final = n.env_steps >= cfg.steps
                if log.due(n.env_steps, final):
                    now = time.perf_counter()
                    values = {k: v / counts[0] for k, v in acc.items()} if counts[0] else {}
                    values["charts/sps"] = (n.env_steps - steps_log) / max(now - t_log, 1e-9)
                    values["charts/updates"] = n.updates
                    logger.log_metrics(n.env_steps, values)
                    acc, counts = {}, [0]
                    t_log, steps_log = now, n.env_steps
                    log.done(n.env_steps)
                if evals.due(n.env_steps, final):
                    self.evaluate(logger)
                    evals.done(n.env_steps)
                    t_log = time.perf_counter()  # keep evaluation out of charts/sps
                if done and not final and checkpoints.due(n.env_steps):
                    n.last_ckpt = n.env_steps
                    checkpoints.done(n.env_steps)
                    self.save()
                logger.progress(n.env_steps)
                if self.stop_requested.is_set() and n.env_steps < cfg.steps:
                    self.stop(done)
        n.last_ckpt = n.env_steps
        self.save(complete=True)
        self.write_result()

    def stop(self, episode_ended: bool) -> None:
        """Write a checkpoint at this chunk end and raise :class:`Interrupted`."""
        n = self.n
        n.last_ckpt = n.env_steps
        self.save(interrupted=True)
        where = "at an episode end" if episode_ended else "mid-episode (resuming starts a new one)"
        raise Interrupted(
            f"interrupted at env step {n.env_steps} of {self.cfg.steps}: checkpoint "
            f"{n.env_steps} written {where}; continue with `revflow train --resume "
            f"{self.run_dir}`",
            n.env_steps,
        )

    def write_result(self) -> None:
        """``result.json``: the run finished; its counters and its last evaluation. Written
        only by a run that did all its steps (and, past its warm-up, its updates)."""
        if self.n.env_steps < self.cfg.steps or self.n.updates == 0:
            raise RuntimeError(  # pragma: no cover - the loop's own invariant
                f"refusing to write {RESULT_FILE}: {self.n.env_steps} of {self.cfg.steps} env "
                f"steps, {self.n.updates} updates"
            )
        cfg = self.cfg
        fields = {"algo": cfg.algo, "label": cfg.label or cfg.algo, "env": cfg.env}
        fields.update(seed=cfg.seed, **dataclasses.asdict(self.n))
        last = self.last_eval
        csv_path = self.run_dir / "eval.csv"
        if last is None and csv_path.is_file():  # a resumed run that had already finished
            rows = [r.split(",") for r in csv_path.read_text().splitlines()[1:] if r.strip()]
            if rows:
                last = (int(float(rows[-1][0])), float(rows[-1][1]), float(rows[-1][2]))
        rundir.write_result(self.run_dir, fields, last)

    def evaluate(self, logger: RunLogger) -> None:
        if self.cfg.eval_seeds == "fixed":
            eval_seed = 0
        else:
            eval_seed = _episode_seed(self.cfg.seed + 7919, self.n.env_steps) % (2**30)
        mean, std, _ = evaluate(
            self.agent,
            self.state,
            self.cfg.env,
            self.cfg.eval_episodes,
            self.cfg.eval_mode,
            eval_seed,
            act_fn=self.eval_act,
        )
        logger.log_eval(self.n.env_steps, mean, std)
        self.last_eval = (self.n.env_steps, float(mean), float(std))


def _check_logs(run_dir: Path, start_step: int) -> None:
    """Before continuing a run's CSV logs: each must be readable text (a garbage file would
    fail deep inside the logger)."""
    if start_step == 0:
        return
    for name in ("metrics.csv", "eval.csv"):
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            text = path.read_text()  # all of it: a decoding error may be on any line
            header = next(csv.reader(text.splitlines()[:1]), [])
            if header[:1] != ["step"]:
                raise ValueError(f"its header is {header[:3]}..., not step,...")
        except (OSError, UnicodeDecodeError, csv.Error, ValueError) as err:
            raise ResumeRefused(
                f"{path} is not a readable CSV log ({type(err).__name__}: {err}); move it away "
                f"to resume (it then restarts at env step {start_step})"
            ) from err


def _make_logger(trainer: _Trainer, start_step: int) -> RunLogger:
    cfg = trainer.cfg
    _check_logs(trainer.run_dir, start_step)
    return RunLogger(
        trainer.run_dir,
        cfg.steps,
        trainer.agent.METRICS,
        start_step=start_step,
        tensorboard=cfg.tensorboard,
        csv_files=cfg.csv,
        wandb=cfg.wandb,
        wandb_project=cfg.wandb_project,
        run_name=f"{cfg.algo} {cfg.env} seed{cfg.seed}",
        config=trainer.config_dict,
        progress=cfg.progress,
    )


@contextlib.contextmanager
def stop_on_interrupt(event: threading.Event):
    """While active (main thread only), the first SIGINT sets ``event`` instead of raising,
    so the loop can write a checkpoint at its next chunk end; a second one raises
    ``KeyboardInterrupt`` at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        event.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _execute(trainer: _Trainer, start_step: int) -> Path:
    logger = _make_logger(trainer, start_step)
    try:
        with stop_on_interrupt(trainer.stop_requested):
            trainer.run(logger)
    finally:
        logger.close()
        trainer.env.close()
    return trainer.run_dir


def failure_advice(run_dir: str | Path, agent_cfg: AgentConfig) -> str:
    """What to change after a non-finite loss: the agent's learning rates and gradient clip
    (as flags of ``revflow train --resume``), or another seed."""
    fields = dataclasses.asdict(agent_cfg)
    lrs = [k for k in fields if k.endswith("_lr") and isinstance(fields[k], int | float)]
    parts = []
    if lrs:
        flags = ", ".join(f"--agent.{k.replace('_', '-')} (now {fields[k]:g})" for k in lrs)
        parts.append(f"lower a learning rate ({flags})")
    if fields.get("max_grad_norm"):  # turning a clip on (from 0) changes the optimiser state
        parts.append(
            f"clip gradients harder (--agent.max-grad-norm, now {fields['max_grad_norm']:g})"
        )
    example = (
        f"`revflow train --resume {run_dir} --agent.{lrs[0].replace('_', '-')} "
        f"{fields[lrs[0]] / 10:g}`"
        if lrs
        else f"`revflow train --resume {run_dir} --agent.<field> VALUE`"
    )
    return (
        f"{' or '.join(parts) or 'change an agent option'}, e.g. {example}; or start another --seed"
    )


def train(cfg: TrainConfig, agent_cfg: AgentConfig, run_dir: str | Path | None = None) -> Path:
    """Train from scratch; returns the run directory (default :func:`run_dir_for`).

    Refuses a run directory that already holds checkpoints or the config of a run that
    stopped before its first checkpoint (use :func:`resume`), and one it cannot write
    (:class:`~revflow.checkpoint.CheckpointError`, before any compute).
    """
    cls = get_agent_class(cfg.algo)
    if not isinstance(agent_cfg, cls.Config):
        raise TypeError(f"algo {cfg.algo!r} needs a {cls.Config.__name__}, got {agent_cfg}")
    path = Path(run_dir) if run_dir is not None else run_dir_for(cfg)
    hint = f"continue it with `revflow train --resume {path}` (it starts over from step 0)"
    rundir.require_new(path, cfg.COMMAND, hint)
    probe_writable(path)
    trainer = _Trainer(path, cfg, agent_cfg)
    rundir.write_json(path / CONFIG_FILE, trainer.config_dict)
    return _execute(trainer, 0)


#: Loop options a resume cannot change: the run's identity and the replay buffer's size.
FIXED_ON_RESUME = ("algo", "env", "seed", "label", "run_dir", "steps", "buffer_size")


def apply_changes(
    cfg: TrainConfig, agent_cfg: AgentConfig, changes: dict[str, Any] | None
) -> tuple[TrainConfig, AgentConfig]:
    """``(cfg, agent_cfg)`` with ``changes`` applied: ``{"agent.<field>" | "<field>": value}``
    (values as text or typed, read by :mod:`revflow.overrides`), validated."""
    train_over, agent_over = {}, {}
    for key, value in (changes or {}).items():
        if key.startswith("agent."):
            agent_over[key.removeprefix("agent.")] = value
        else:
            name = key.replace("-", "_")
            if name in FIXED_ON_RESUME:
                raise ResumeRefused(
                    f"--{name.replace('_', '-')} cannot change on resume (it fixes the run's "
                    "identity or its replay buffer); start a new run instead"
                )
            train_over[name] = value
    cfg = apply_overrides(TrainConfig, cfg, train_over, "train")  # validated on construction
    agent_cfg = apply_overrides(type(agent_cfg), agent_cfg, agent_over, "agent")
    return cfg, agent_cfg


def resume(
    run_dir: str | Path,
    step: int | None = None,
    changes: dict[str, Any] | None = None,
    notify: Notify | None = None,
) -> Path:
    """Continue the run in ``run_dir`` from its newest intact checkpoint (that of ``step`` if
    given; from scratch if it stopped before its first one). Returns the run directory.

    ``changes`` (see :func:`apply_changes`) continue it under a changed config, which
    ``config.json`` then holds. A last good state (the state before a non-finite loss) is
    continued only with changes (:class:`ResumeRefused` otherwise, saying what to change).
    ``notify`` hears one line on what happens: where it resumes, each checkpoint skipped as
    corrupt and why, or that the run had already finished.

    Raises ``FileNotFoundError`` for a missing run dir or config, :class:`ConfigMismatchError`
    when the checkpoint's config differs from ``config.json``, and ``CheckpointError`` when no
    checkpoint is intact (or none exists at ``step``).
    """
    path = Path(run_dir)
    say = notify or (lambda message: None)
    cfg, agent_cfg = load_run(path)
    old_config = _config_dict(cfg, agent_cfg)
    new_cfg, new_agent = apply_changes(cfg, agent_cfg, changes)
    trainer_config = _config_dict(new_cfg, new_agent)
    changed = rundir.diff(
        {k: old_config[k] for k in ("train", "agent")},
        {k: trainer_config[k] for k in ("train", "agent")},
    )
    refs = list_checkpoints(path)
    if step is not None and not refs:
        raise CheckpointError(f"{path} has no checkpoint (asked for --step {step})")

    def record_changes() -> None:
        if changed:
            earlier = config_choices(path)
            rundir.write_json(path / CONFIG_FILE, {**trainer_config, "earlier_configs": earlier})
            say(f"config changed on resume: {'; '.join(changed).replace(' != ', ' -> ')}")

    probe_writable(path)
    if not refs:
        trainer = _Trainer(path, new_cfg, new_agent)
        record_changes()
        say(f"{path} stopped before its first checkpoint: starting it from env step 0")
        return _execute(trainer, 0)

    def refuse_repeat(ref: CheckpointRef, extra: dict[str, Any]) -> None:
        failure = _failure_of(extra)
        if failure is None or changed:
            return
        healthy = [str(r.step) for r in refs if not r.last_good and r.step < ref.step]
        earlier = (
            f"; with a change, an earlier checkpoint can be continued too (--step "
            f"{' / '.join(healthy)})"
            if healthy
            else ""
        )
        raise ResumeRefused(
            f"{path}: {ref.describe()} is the state before the run failed ({failure}); "
            f"resuming it unchanged would repeat that failure. Change the config: "
            f"{failure_advice(path, agent_cfg)}{earlier}"
        )

    trainer = _Trainer(path, new_cfg, new_agent)
    try:
        ref, extra = trainer.restore(step, say, refuse_repeat)
    except CorruptCheckpointError:
        raise
    except CheckpointError as err:
        if not changed:
            raise
        raise ResumeRefused(
            f"the change ({'; '.join(changed)}) alters the structure of the saved state, so "
            f"{path} cannot continue under it ({err}); start a new run with it instead"
        ) from err
    n = trainer.n
    if extra.get("complete"):
        trainer.env.close()
        try:
            result = read_result(path)
        except CheckpointError as err:
            say(f"warning: {err}; rewriting it from {ref.describe()}")
            result = None
        if result is None:  # finished before result.json existed, or crashed in between
            trainer.write_result()
        say(f"{path} had already finished ({n.env_steps} env steps); nothing to do")
        return path
    later = [r for r in refs if r.last_good and r.step > ref.step]
    if later and not changed:
        say(
            f"warning: this run failed at env step {later[-1].step} with this config; "
            f"resuming {ref.describe()} unchanged will likely repeat it"
        )
    record_changes()
    say(f"resuming {path} from {ref.describe()} (env step {n.env_steps} of {new_cfg.steps})")
    return _execute(trainer, n.env_steps)
