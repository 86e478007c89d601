"""Helpers shared by several test modules (imported as ``_support``; pytest puts tests/ on
sys.path)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import jax

from revflow.agents.registry import get_agent_class, make_agent, make_config
from revflow.engine import TrainConfig, evaluate, load_agent, train

PENDULUM = "gym:Pendulum-v1"

#: The smallest networks of the agents' unit tests (each test module adds its batch size and
#: sampler / estimator counts).
TINY_NETS: dict[str, Any] = {
    "critic_hidden": (16, 16),
    "actor_hidden": 16,
    "embed_dim": 8,
    "num_particles": 3,
}

#: The small learning-check budget on Pendulum (test_baselines_learn's docstring has the
#: numbers); each agent takes the fields its config has.
SMALL = {
    "batch_size": 128,
    "critic_hidden": (128, 128),
    "actor_hidden": 64,
    "embed_dim": 32,
    "num_particles": 8,
    "num_flow_steps": 5,
    "num_reverse_samples": 16,
}


def config_for(algo: str, overrides: dict[str, Any], preset: str = "fast") -> Any:
    """``algo``'s preset config with those of ``overrides`` its config has."""
    fields = {f.name for f in dataclasses.fields(get_agent_class(algo).Config)}
    return make_config(algo, preset, **{k: v for k, v in overrides.items() if k in fields})


def learn_pendulum(
    algo: str, tmp_path: Path, steps: int, seed: int = 0, **overrides: Any
) -> tuple[float, float]:
    """``(untrained return, trained return)`` of ``algo`` (SMALL budget plus ``overrides``)
    after ``steps`` env steps on Pendulum-v1 (1000 warm-up), best-of-n over 10 episodes."""
    agent_cfg = config_for(algo, {**SMALL, **overrides})
    cfg = TrainConfig(
        algo=algo,
        env=PENDULUM,
        seed=seed,
        steps=steps,
        warmup_steps=1000,
        eval_every=0,
        checkpoint_every=0,
        log_every=1000,
        run_dir=str(tmp_path),
        tensorboard=False,
        progress=False,
    )
    agent = make_agent(algo, agent_cfg, 3, 1)
    untrained = evaluate(agent, agent.init(jax.random.key(seed)), PENDULUM, 10, "best-of-n", 99)
    start = time.perf_counter()
    agent, state, _, _ = load_agent(train(cfg, agent_cfg))
    trained = evaluate(agent, state, PENDULUM, 10, "best-of-n", 99)[0]
    print(
        f"{algo}: untrained {untrained[0]:.1f}, trained {trained:.1f} after {steps} steps, "
        f"{time.perf_counter() - start:.0f} s"
    )
    return untrained[0], trained
