"""Two tiny training runs whose outputs are recorded in ``tests/data/loop_outputs.json``
(``tests/data/make_loop_outputs.py``) and checked bit for bit (``tests/test_loop_outputs.py``):
the engine with rfm on Pendulum and the compiled loop with sac on a pure-JAX point mass
(:class:`PointMass`: it compiles in seconds where an MJX task takes a minute)."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from revflow.agents.registry import make_config

ENGINE = dict(
    algo="rfm",
    env="gym:Pendulum-v1",
    seed=5,
    steps=300,
    warmup_steps=100,
    eval_every=150,
    eval_episodes=2,
    checkpoint_every=100,
    keep_checkpoints=5,
    log_every=50,
    run_dir="runs",
    tensorboard=False,
    progress=False,
)
ENGINE_AGENT = dict(
    batch_size=16,
    actor_hidden=32,
    critic_hidden=(32, 32),
    num_particles=4,
    num_flow_steps=2,
    num_reverse_samples=4,
    embed_dim=8,
    # The recording predates rfm's shared critic state product (its default since; equal up
    # to float reassociation, pinned in tests/test_critics_shared_state.py): off, as then.
    critic_shared_state=False,
)
COMPILED = dict(
    algo="sac",
    env="mjx:CartpoleSwingup",
    num_envs=2,
    steps=24,
    warmup_steps=6,
    chunk_iters=5,
    episode_length=5,
    eval_every=12,
    eval_episodes=2,
    checkpoint_every=10,
    progress=False,
    tensorboard=False,
)
COMPILED_AGENT = dict(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=8)


class PointMass:
    """A 2-D point mass pushed by its action, rewarded for staying near the origin; never
    terminates (a :class:`revflow.jax_envs.Task`)."""

    name = "PointMass"
    obs_dim = 4
    act_dim = 2
    episode_length = 5

    def reset(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        phys = jnp.concatenate(
            [jax.random.uniform(key, (2,), minval=-1.0, maxval=1.0), jnp.zeros(2)]
        )
        return phys, phys

    def step(self, phys: jax.Array, action: jax.Array) -> tuple[Any, ...]:
        vel = 0.9 * phys[2:] + 0.1 * action
        phys = jnp.concatenate([phys[:2] + 0.1 * vel, vel])
        return phys, phys, -jnp.sum(phys[:2] ** 2), jnp.zeros((), bool)


def digest(tree: Any) -> str:
    """sha256 over the bytes, shapes and dtypes of a pytree's leaves (keys as their data)."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        arr = np.asarray(leaf)
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV log without its timing column ``charts/sps``."""
    with path.open(newline="") as f:
        return [{k: v for k, v in r.items() if k != "charts/sps"} for r in csv.DictReader(f)]


def engine_run(run_dir: Path) -> Path:
    from revflow.engine import TrainConfig, train

    return train(TrainConfig(**ENGINE), make_config("rfm", "fast", **ENGINE_AGENT), run_dir)


def engine_outputs(run_dir: Path) -> dict[str, Any]:
    from revflow.engine import load_agent

    _, state, _, step = load_agent(run_dir)
    return {
        "step": step,
        "agent_state": digest(state),
        "metrics": csv_rows(run_dir / "metrics.csv"),
        "eval": csv_rows(run_dir / "eval.csv"),
        "result": json.loads((run_dir / "result.json").read_text()),
    }


@functools.cache
def compiled_trainer() -> Any:
    """The compiled loop's trainer on :class:`PointMass` (the config names an MJX task, whose
    place the point mass takes, evaluation included); one per process, so that its jitted
    chunk compiles once for every run below."""
    from revflow.compiled import CompiledConfig, CompiledTrainer
    from revflow.jax_envs import VecEnv

    cfg = CompiledConfig(**COMPILED)
    agent_cfg = make_config("sac", "fast", **COMPILED_AGENT)
    trainer = CompiledTrainer(cfg, agent_cfg, env=VecEnv(PointMass(), cfg.num_envs))
    trainer.eval_env = VecEnv(PointMass(), cfg.eval_episodes)
    return trainer


def compiled_run(run_dir: Path, resume: bool = False) -> tuple[Path, Any]:
    """The compiled run of :func:`compiled_trainer` (``resume``: continue ``run_dir``)."""
    from revflow.compiled import train_compiled

    trainer = compiled_trainer()
    return train_compiled(trainer.cfg, trainer.agent_cfg, run_dir, trainer=trainer, resume=resume)


def compiled_outputs(run_dir: Path, state: Any) -> dict[str, Any]:
    return {
        "loop_state": digest(state),
        "metrics": csv_rows(run_dir / "metrics.csv"),
        "eval": csv_rows(run_dir / "eval.csv"),
        "result": json.loads((run_dir / "result.json").read_text()),
    }
