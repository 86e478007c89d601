"""The loop scaffold: both loop configs keep the defaults they had before they shared
:class:`~revflow.loop_config.LoopConfig`, are validated on construction, and the schedule
(:class:`~revflow.schedule.Every`) fires at the first chunk end at or after each due step."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revflow import rundir
from revflow.compiled import CompiledConfig, supported_agents
from revflow.engine import TrainConfig
from revflow.schedule import Every, next_multiple

#: ``dataclasses.asdict`` of the default configs before the refactor (read off that code).
TRAIN_DEFAULTS = {
    "algo": "rfm", "label": None, "env": "dmc:cheetah-run", "seed": 0, "steps": 250000,
    "warmup_steps": 10000, "utd": 1, "updates_per_call": 1, "batch_size": None,
    "buffer_size": None, "eval_every": 10000, "eval_episodes": 25, "eval_mode": "best-of-n",
    "eval_seeds": "fixed", "eval_at_start": True, "checkpoint_every": 50000,
    "keep_checkpoints": 2, "log_every": 1000, "run_dir": "runs", "tensorboard": True,
    "csv": True, "wandb": False, "wandb_project": "revflow", "progress": True,
}  # fmt: skip
COMPILED_DEFAULTS = {
    "algo": "sac", "env": "mjx:CheetahRun", "seed": 0, "num_envs": 64, "steps": 1000000,
    "warmup_steps": 10000, "utd": 1, "batch_size": None, "buffer_size": None,
    "chunk_iters": 1000, "episode_length": None, "eval_every": 50000, "eval_episodes": 10,
    "eval_mode": "best-of-n", "num_devices": None, "run_dir": "runs", "label": None,
    "checkpoint": True, "checkpoint_every": 50000, "keep_checkpoints": 2, "tensorboard": True,
    "csv": True, "progress": True,
}  # fmt: skip


@pytest.mark.parametrize(
    ("cls", "defaults"), [(TrainConfig, TRAIN_DEFAULTS), (CompiledConfig, COMPILED_DEFAULTS)]
)
def test_each_loop_keeps_its_defaults(cls, defaults) -> None:
    assert dataclasses.asdict(cls()) == defaults


@pytest.mark.parametrize("cls", [TrainConfig, CompiledConfig])
def test_validated_on_construction_and_replace(cls) -> None:
    with pytest.raises(ValueError, match="warmup_steps=10 must be < steps=10"):
        cls(steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="keep_checkpoints"):
        dataclasses.replace(cls(), keep_checkpoints=0)


def test_run_dirs_and_compiled_agents() -> None:
    cfg = TrainConfig(env="gym:Pendulum-v1", label="rfm.x-1", seed=3, run_dir="r")
    assert str(rundir.run_dir_for(cfg)) == "r/gym_Pendulum-v1/rfm.x-1/seed3"
    compiled = CompiledConfig(algo="rfm", seed=2, run_dir="r")
    assert str(rundir.run_dir_for(compiled)) == "r/mjx_CheetahRun/rfm-compiled/seed2"
    assert {"rfm", "sac"} <= set(supported_agents())


@given(st.integers(0, 10_000), st.integers(1, 500))
def test_every_is_due_at_the_first_chunk_end_at_or_after_its_step(start: int, every: int):
    aligned = Every.after(start, every)
    assert aligned.next == next_multiple(start, every) and start < aligned.next <= start + every
    assert not aligned.due(aligned.next - 1) and aligned.due(aligned.next)
    assert aligned.due(start, final=True)
    relative = Every.after(start, every, aligned=False)
    assert relative.next == start + every
    relative.done(start + every + 3)
    assert relative.next == start + 2 * every + 3


def test_every_zero_is_never_due() -> None:
    never = Every.after(0, 0)
    assert not never.due(10**9) and not never.due(5, final=True)


def test_a_config_saved_before_a_field_existed_compares_equal() -> None:
    """A checkpoint's or config.json's dict that lacks a field (saved before it existed)
    compares as it loads: the field at its legacy / class default, so an old run resumes;
    a value that really differs still differs."""
    from revflow.agents.registry import make_config

    cfg = TrainConfig(algo="rfm", env="gym:Pendulum-v1")
    now = rundir.config_dict(cfg, make_config("rfm", "fast"), {"batch_size": 256})
    old = {**now, "agent": {k: v for k, v in now["agent"].items() if k != "critic_shared_state"}}
    # rfm's runs saved before the option computed the critic unshared: they load it off.
    assert rundir.comparable(old, TrainConfig)["agent"]["critic_shared_state"] is False
    off = rundir.config_dict(
        cfg, make_config("rfm", "fast", critic_shared_state=False), {"batch_size": 256}
    )
    assert rundir.diff(rundir.comparable(old, TrainConfig), off) == []
    assert rundir.diff(rundir.comparable(old, TrainConfig), now) == [
        "agent.critic_shared_state: False != True"
    ]
    assert rundir.comparable({"agent": {}}, TrainConfig) == {"agent": {}}  # not a config
