"""Every registered agent trains end to end in the engine, is interrupted after its first
periodic checkpoint, resumes with :func:`revflow.engine.resume`, and ends bit-exactly equal to
an uninterrupted run of the same config; its final checkpoint loads back finite and acts.

Agents are tiny (32-wide nets, 4 particles, 3 sampler steps) so the test measures the engine
and the agents' state handling, not learning. A run's cost is almost all XLA compilation
(a tiny update runs in about a millisecond on the 2-core CPU, its compilation takes 4-10 s),
so the three runs of one agent share their jitted update and act functions (``shared_jit``):
the resumed run still compiles once more (restored arrays are committed to the device, a
new jit signature), the two fresh runs share one compilation. The executable is a pure
function of the train state, so sharing it changes nothing the test checks; resuming in a
new process is covered by ``test_engine.test_resume_after_sigkill_is_bit_exact``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import jax
import numpy as np
import pytest

import revflow.engine as engine
from _support import config_for
from revflow.agents.registry import available, make_config
from revflow.checkpoint import latest_step, list_steps, restore_checkpoint
from revflow.engine import TrainConfig, evaluate, load_agent, read_result, resume, train

ENV = "gym:Pendulum-v1"  # 200-step episodes: the first periodic checkpoint is at step 200
STEPS, WARMUP, INTERRUPT_AT = 400, 100, 250

#: Overrides that make every agent tiny; each agent takes the fields its config has.
TINY = {
    "batch_size": 32,
    "critic_hidden": (32, 32),
    "actor_hidden": 32,
    "embed_dim": 8,
    "num_particles": 4,
    "num_flow_steps": 3,
    "num_reverse_samples": 8,
    "num_policy_samples": 4,  # qvpo, dpmd
    "entropy_samples": 4,  # qvpo (uniform actions), dacer (entropy fit)
    "entropy_every": 64,  # dacer: a held entropy estimate crosses the resume (update 100)
    "action_steps": 3,  # dipo
}


def tiny_config(algo: str):
    if algo == "sac":
        return make_config(
            "sac", "fast", batch_size=32, actor_hidden=(32, 32), critic_hidden=(32, 32)
        )
    return config_for(algo, TINY)


@pytest.fixture
def shared_jit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trainers of the same agent config reuse one jitted update / act step (docstring)."""
    cache: dict[tuple, object] = {}

    def memo(factory):
        def make(agent):
            key = (factory.__name__, type(agent), agent.config, agent.obs_dim, agent.act_dim)
            if key not in cache:
                cache[key] = factory(agent)
            return cache[key]

        return make

    monkeypatch.setattr(engine, "_make_update", memo(engine._make_update))
    monkeypatch.setattr(engine, "_make_act_step", memo(engine._make_act_step))


class _Interrupt(Exception):
    pass


def _checkpoint(run: Path, step: int, agent_state):
    """``(tree, extra)`` of checkpoint ``step``: agent state, jax key, replay buffer, counters."""
    capacity = STEPS
    template = engine._template(agent_state, jax.random.PRNGKey(0), step, capacity, 3, 1)
    return restore_checkpoint(run, template, step)


def _log_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as f:
        return [{k: v for k, v in r.items() if k != "charts/sps"} for r in csv.DictReader(f)]


def assert_trees_equal(a, b, what: str) -> None:
    (la, ta), (lb, tb) = jax.tree_util.tree_flatten(a), jax.tree_util.tree_flatten(b)
    assert ta == tb, what
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=what)


#: Agents the default suite smoke-tests (the method, the Gaussian baseline and two diffusion
#: baselines: the checkpoint and resume code is the same for every agent); the others run
#: with ``pytest -m extended`` (about 25 s each on 2 cores).
DEFAULT_AGENTS = ("rfm", "sac", "qne", "dqs")


@pytest.mark.parametrize(
    "algo",
    [
        a if a in DEFAULT_AGENTS else pytest.param(a, marks=pytest.mark.extended)
        for a in available()
    ],
)
def test_agent_trains_resumes_bit_exactly_and_acts(
    algo: str, tmp_path: Path, shared_jit: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cfg_in(root: Path) -> TrainConfig:
        return TrainConfig(
            algo=algo,
            env=ENV,
            seed=0,
            steps=STEPS,
            warmup_steps=WARMUP,
            eval_every=0,
            checkpoint_every=150,  # first episode end after 150 steps: step 200
            keep_checkpoints=5,
            log_every=50,
            run_dir=str(root),
            tensorboard=False,
            progress=False,
        )

    # The uninterrupted run.
    clean = train(cfg_in(tmp_path / "clean"), tiny_config(algo))
    assert list_steps(clean) == [200, STEPS]

    # The same config, interrupted at the first log event after step INTERRUPT_AT (after the
    # checkpoint at 200, mid-episode), then resumed.
    log_metrics = engine.RunLogger.log_metrics

    def interrupting(self, step, values):
        log_metrics(self, step, values)
        if step >= INTERRUPT_AT:
            raise _Interrupt(step)

    monkeypatch.setattr(engine.RunLogger, "log_metrics", interrupting)
    with pytest.raises(_Interrupt):
        train(cfg_in(tmp_path / "killed"), tiny_config(algo))
    monkeypatch.setattr(engine.RunLogger, "log_metrics", log_metrics)
    run = engine.run_dir_for(cfg_in(tmp_path / "killed"))
    assert latest_step(run) == 200 and read_result(run) is None
    assert resume(run) == run
    assert list_steps(run) == [200, STEPS]

    # Bit-exact: agent state (params, targets, optimiser states, counters), jax key, replay
    # buffer, numpy generator and the engine's counters; the same log rows.
    agent, state, loaded_cfg, step = load_agent(run)
    assert step == STEPS and loaded_cfg.algo == algo
    tree_a, extra_a = _checkpoint(run, STEPS, state)
    tree_b, extra_b = _checkpoint(clean, STEPS, state)
    assert_trees_equal(tree_a["agent"], tree_b["agent"], f"{algo}: agent state")
    assert_trees_equal(tree_a["key"], tree_b["key"], f"{algo}: jax key")
    assert_trees_equal(tree_a["replay"], tree_b["replay"], f"{algo}: replay buffer")
    assert extra_a["np_rng"] == extra_b["np_rng"]
    assert extra_a["counters"] == extra_b["counters"]
    assert read_result(run) == read_result(clean)
    assert read_result(run)["updates"] == STEPS - WARMUP == int(state.step)
    rows_a, rows_b = _log_rows(run), _log_rows(clean)
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    assert rows_a == rows_b  # every logged metric but charts/sps

    # The final checkpoint is finite and acts.
    for leaf in jax.tree.leaves(state):
        if np.issubdtype(np.asarray(leaf).dtype, np.floating):
            assert np.all(np.isfinite(np.asarray(leaf))), algo
    mean, _, returns = evaluate(agent, state, ENV, 1, "best-of-n", 7)
    assert len(returns) == 1 and np.isfinite(mean)
