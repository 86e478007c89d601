"""Every registered agent trains end to end in the engine (fast preset, a few hundred steps),
without NaN, and its final checkpoint loads back and acts."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from revflow.agents.registry import available, make_config
from revflow.engine import TrainConfig, evaluate, load_agent, train


@pytest.mark.parametrize("algo", available())
def test_agent_trains_saves_and_loads(algo, tmp_path):
    cfg = TrainConfig(
        algo=algo,
        env="gym:Pendulum-v1",
        seed=0,
        steps=300,
        warmup_steps=100,
        eval_every=0,
        checkpoint_every=0,
        log_every=100,
        run_dir=str(tmp_path),
        tensorboard=False,
        progress=False,
    )
    run = train(cfg, make_config(algo, "fast", batch_size=32))
    agent, state, loaded_cfg, step = load_agent(run)
    assert step == 300 and loaded_cfg.algo == algo
    for leaf in jax.tree.leaves(state):
        if np.issubdtype(np.asarray(leaf).dtype, np.floating):
            assert np.all(np.isfinite(np.asarray(leaf))), algo
    mean, _, returns = evaluate(agent, state, cfg.env, 1, "best-of-n", 7)
    assert len(returns) == 1 and np.isfinite(mean)
