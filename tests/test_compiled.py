"""The fully compiled training loop (revflow.compiled): tiny runs of rfm and sac on an MJX
task, the replay sampler, configuration errors, sharding over two (fake CPU) devices, and
checkpoints: exact resume, refused resumes, `revflow eval` of a compiled run."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from revflow import compiled
from revflow.agents.registry import make_config
from revflow.checkpoint import CheckpointError, latest_step, list_steps, save_checkpoint
from revflow.cli import main
from revflow.compiled import (
    CompiledConfig,
    CompiledTrainer,
    Replay,
    _make_sampler,
    make_mesh,
    train_compiled,
)
from revflow.engine import ConfigMismatchError, TrainConfig

pytestmark = pytest.mark.usefixtures("fast_compile")


TINY = {
    "sac": {"actor_hidden": (32, 32), "critic_hidden": (32, 32), "batch_size": 8},
    "rfm": {
        "actor_hidden": 32,
        "critic_hidden": (32, 32),
        "batch_size": 8,
        "num_particles": 4,
        "num_flow_steps": 2,
        "num_reverse_samples": 4,
        "embed_dim": 8,
    },
}


def tiny_config(algo: str, **kw) -> CompiledConfig:
    base = {
        "algo": algo,
        "env": "mjx:CartpoleSwingup",
        "num_envs": 2,
        "steps": 24,
        "warmup_steps": 6,
        "chunk_iters": 5,
        "episode_length": 5,
        "eval_every": 0,
        "progress": False,
        "tensorboard": False,
    }
    return CompiledConfig(**{**base, **kw})


def test_config_errors_before_any_compute(tmp_path):
    agent = make_config("sac", "fast")
    with pytest.raises(ValueError, match="not supported by the compiled loop"):
        tiny_config("nope").validate()
    with pytest.raises(ValueError, match="mjx:"):
        tiny_config("sac", env="dmc:cheetah-run").validate()
    with pytest.raises(ValueError, match="num_envs"):
        tiny_config("sac", num_envs=0).validate()
    with pytest.raises(ValueError, match="only 1 device"):
        CompiledTrainer(tiny_config("sac", num_devices=len(jax.devices()) + 1), agent)
    with pytest.raises(ValueError, match="Unknown JAX-native environment"):
        CompiledTrainer(tiny_config("sac", env="mjx:Nope"), agent)
    with pytest.raises(TypeError, match="SACConfig"):
        CompiledTrainer(tiny_config("sac"), make_config("rfm", "fast"))
    cfg = tiny_config("sac", steps=25, warmup_steps=5, buffer_size=7)
    assert (cfg.iterations, cfg.warmup_iterations, cfg.slots()) == (13, 3, 4)
    with pytest.raises(ValueError, match="train-compiled"):  # the numpy engine refuses mjx:
        TrainConfig(env="mjx:CheetahRun").validate()


def test_cli_errors_exit_2(capsys):
    assert main(["train-compiled", "--env", "mjx:Nope"]) == 2
    assert "Unknown JAX-native environment" in capsys.readouterr().err
    assert main(["train-compiled", "--algo", "nope"]) == 2
    assert main(["train-compiled", "--num-devices", str(len(jax.devices()) + 1)]) == 2
    assert main(["train", "--env", "mjx:CheetahRun"]) == 2
    assert "train-compiled" in capsys.readouterr().err


def test_sampler_rows_come_from_their_env_stratum():
    mesh = make_mesh(1)
    slots, n, b = 6, 4, 8
    replay = Replay.zeros(slots, n, 1, 1)
    for t in range(4):  # 4 of 6 slots filled; obs encodes (slot, env)
        obs = jnp.asarray([[10.0 * t + e] for e in range(n)])
        replay = replay.insert(obs, obs, jnp.zeros(n), obs, jnp.asarray([False, True] * 2))
    sample = jax.jit(_make_sampler(mesh, n, b, 0.9))
    seen = set()
    for k in range(20):
        batch = sample(replay, jax.random.key(k))
        code = np.asarray(batch.obs[:, 0]).round().astype(int)
        slot, env = code // 10, code % 10
        assert np.all(slot < 4)  # only filled slots
        np.testing.assert_array_equal(env, np.arange(b) * n // b)  # B > N: one env per row
        np.testing.assert_allclose(batch.discount, np.where(env % 2, 0.0, 0.9))
        seen |= set(slot.tolist())
    assert seen == {0, 1, 2, 3}
    # N > B: row i draws among envs [i N / B, (i + 1) N / B).
    wide = Replay.zeros(2, 8, 1, 1)
    wide = wide.insert(
        *(jnp.arange(8.0)[:, None],) * 2, jnp.zeros(8), jnp.zeros((8, 1)), jnp.zeros(8)
    )
    batch = jax.jit(_make_sampler(mesh, 8, 2, 0.9))(wide, jax.random.key(0))
    env = np.asarray(batch.obs[:, 0]).astype(int)
    assert 0 <= env[0] < 4 <= env[1] < 8


@pytest.mark.parametrize("algo", ["rfm", pytest.param("sac", marks=pytest.mark.extended)])
def test_tiny_run_on_an_mjx_task(algo, tmp_path):
    """~45 s each on a 2-core CPU (compiling the loop); sac (slow-marked for the budget,
    ~75 s) also evaluates: at the first chunk end (every 10 env steps) at or after step 12,
    and at the end."""
    cfg = tiny_config(algo, **({"eval_every": 12, "eval_episodes": 2} if algo == "sac" else {}))
    agent_cfg = make_config(algo, "fast", **TINY[algo])
    path, state = train_compiled(cfg, agent_cfg, tmp_path / "run")
    iters, warm = cfg.iterations, cfg.warmup_iterations  # 12, 3
    assert int(state.iteration) == iters
    assert int(state.updates) == (iters - warm) * cfg.utd
    assert int(state.replay.size) == iters  # buffer (min(steps, 1e6) = 24 = 12 slots x 2 envs)
    assert float(jnp.abs(state.replay.obs).sum()) > 0
    for leaf in jax.tree_util.tree_leaves(state.agent):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            assert np.all(np.isfinite(np.asarray(leaf)))
    result = json.loads((path / "result.json").read_text())
    assert result["env_steps"] == 24 and result["updates"] == 9
    metrics = (path / "metrics.csv").read_text().splitlines()
    assert "losses/critic_loss" in metrics[0] and len(metrics) > 3
    assert "charts/episodic_return" in metrics[0]
    assert latest_step(path) == 24
    if cfg.eval_every:
        evals = (path / "eval.csv").read_text().splitlines()[1:]
        assert [int(float(r.split(",")[0])) for r in evals] == [20, 24]
        assert result["final_eval"]["step"] == 24
        assert np.isfinite(result["final_eval"]["return_mean"])


SHARDING_SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    jax.config.update("jax_disable_most_optimizations", True)
    from revflow.agents.registry import make_config
    from revflow.compiled import CompiledConfig, CompiledTrainer
    assert jax.device_count() == 2, jax.devices()
    agent_cfg = make_config("sac", "fast", actor_hidden=(32, 32), critic_hidden=(32, 32),
                            batch_size=8)
    base = dict(algo="sac", env="mjx:CartpoleSwingup", num_envs=4, steps=40, warmup_steps=8,
                episode_length=6, eval_every=0)
    try:
        CompiledTrainer(CompiledConfig(**{**base, "num_envs": 3}), agent_cfg)
        raise SystemExit("no divisibility error")
    except ValueError as err:
        assert "divisible by the number of devices (2)" in str(err), err
    out = {}
    for devices in (1, 2):
        trainer = CompiledTrainer(CompiledConfig(**base, num_devices=devices), agent_cfg)
        state = trainer.init_state()
        state, stats = trainer.chunk_fn()(state, np.int32(10))
        obs_devices = {s.device for s in state.env.obs.addressable_shards}
        shard_rows = sorted(s.data.shape[1] for s in state.replay.obs.addressable_shards)
        out[devices] = (state, len(obs_devices), shard_rows, int(state.updates))
    (s1, n1, rows1, u1), (s2, n2, rows2, u2) = out[1], out[2]
    assert (n1, n2) == (1, 2), (n1, n2)
    assert rows1 == [4] and rows2 == [2, 2], (rows1, rows2)
    assert u1 == u2 == 8
    np.testing.assert_allclose(s1.env.obs, s2.env.obs, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s1.replay.action, s2.replay.action, rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(s1.agent.actor_params),
                    jax.tree_util.tree_leaves(s2.agent.actor_params)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    print("SHARDING OK")
    """
)


@pytest.mark.extended
def test_two_devices_split_envs_and_batch_and_match_one_device():
    """~2 minutes on a 2-core CPU: compiles the loop for one and for two devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", SHARDING_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SHARDING OK" in proc.stdout


# --------------------------------------------------------------------------------------------
# Checkpoints, resume, revflow eval
# --------------------------------------------------------------------------------------------


def resume_config(**kw) -> CompiledConfig:
    """12 iterations of 2 envs in chunks of 2 (chunk ends every 4 env steps), an evaluation
    at each, checkpoints at env steps 8, 16 and 24 (the end)."""
    base = {"chunk_iters": 2, "checkpoint_every": 8, "eval_every": 4, "eval_episodes": 2}
    return tiny_config("sac", **{**base, **kw})


def _bits(tree) -> list[tuple]:
    out = []
    for leaf in jax.tree_util.tree_leaves(tree):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        arr = np.asarray(leaf)
        out.append((arr.shape, arr.dtype.str, arr.tobytes()))
    return out


def _assert_same_run(a, b, state_a, state_b) -> None:
    """Bit-exact: every leaf of the final LoopState, result.json, eval.csv and metrics.csv
    without the timing column charts/sps."""
    assert jax.tree_util.tree_structure(state_a) == jax.tree_util.tree_structure(state_b)
    bits_a, bits_b = _bits(state_a), _bits(state_b)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state_a)[0]]
    differing = [p for p, x, y in zip(paths, bits_a, bits_b, strict=True) if x != y]
    assert not differing, f"{len(differing)} leaves differ, e.g. {differing[:5]}"
    for name in ("result.json", "eval.csv"):
        assert (a / name).read_text() == (b / name).read_text(), name

    def metrics(path):
        rows = [r.split(",") for r in (path / "metrics.csv").read_text().splitlines()]
        sps = rows[0].index("charts/sps")
        return [r[:sps] + r[sps + 1 :] for r in rows]

    assert metrics(a) == metrics(b)


class Stop(Exception):
    """Stands for the process being killed."""


@pytest.mark.extended
def test_interrupted_then_resumed_run_equals_the_uninterrupted_one(tmp_path, monkeypatch):
    """~85 s on the loaded 2-core CPU (one compile of the chunk and of the evaluation, shared
    by the three runs): stopped before its last chunk (after logging step 20, past the checkpoint at
    16), the resumed run drops the rows after 16 and ends bit-exactly as the uninterrupted run.
    A fresh trainer then restores the finished run's final state (resume of a complete run)."""
    cfg, agent_cfg = resume_config(), make_config("sac", "fast", **TINY["sac"])
    trainer = CompiledTrainer(cfg, agent_cfg)
    full, full_state = train_compiled(cfg, agent_cfg, tmp_path / "full", trainer=trainer)
    assert list_steps(full) == [16, 24]  # keep_checkpoints=2 of 8, 16, 24
    evals = (full / "eval.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in evals] == [4, 8, 12, 16, 20, 24]

    real_chunk = trainer.chunk_fn()
    calls = []

    def stopping_chunk(state, num):
        calls.append(int(num))
        if len(calls) == 6:
            raise Stop
        return real_chunk(state, num)

    monkeypatch.setattr(trainer, "chunk_fn", lambda: stopping_chunk)
    with pytest.raises(Stop):
        train_compiled(cfg, agent_cfg, tmp_path / "cut", trainer=trainer)
    cut = tmp_path / "cut"
    assert latest_step(cut) == 16 and not (cut / "result.json").exists()
    assert (cut / "eval.csv").read_text().splitlines()[-1].startswith("20,")
    monkeypatch.undo()

    with pytest.raises(FileExistsError, match="--resume"):
        train_compiled(cfg, agent_cfg, cut, trainer=trainer)
    _, resumed_state = train_compiled(cfg, agent_cfg, cut, trainer=trainer, resume=True)
    _assert_same_run(full, cut, full_state, resumed_state)

    # As a new process would: a fresh trainer from config.json; the run is complete, so
    # resume only restores its final checkpoint (placed on the mesh).
    _, restored = compiled.resume(full)
    _assert_same_run(full, full, full_state, restored)
    assert restored.env.obs.sharding == full_state.env.obs.sharding


def test_resume_refuses_a_changed_config_and_a_missing_checkpoint(tmp_path, capsys):
    """No compute: the saved config is checked before any array is read or compiled."""
    cfg, agent_cfg = resume_config(), make_config("sac", "fast", **TINY["sac"])
    trainer = CompiledTrainer(cfg, agent_cfg)
    run = tmp_path / "run"
    with pytest.raises(CheckpointError, match=r"no checkpoint in .*nothing to resume"):
        train_compiled(cfg, agent_cfg, run, trainer=trainer, resume=True)
    config = compiled._config_dict(cfg, agent_cfg, make_mesh(1))
    save_checkpoint(run, 8, {"x": np.zeros(1)}, {"config": config})
    (run / "config.json").write_text(json.dumps(config))
    changed = dataclasses.replace(cfg, utd=2)
    changed_agent = dataclasses.replace(agent_cfg, gamma=0.9)
    with pytest.raises(ConfigMismatchError, match=r"compiled\.utd: 1 != 2") as err:
        train_compiled(changed, changed_agent, run, resume=True)
    assert "agent.gamma" in str(err.value) and "checkpoint 8" in str(err.value)
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        train_compiled(cfg, agent_cfg, run, trainer=trainer)
    # The CLI: config.json edited after the checkpoint; --resume takes no other options.
    (run / "config.json").write_text(
        json.dumps({**config, "compiled": {**config["compiled"], "steps": 48}})
    )
    assert main(["train-compiled", "--resume", str(run)]) == 2
    assert "compiled.steps: 24 != 48" in capsys.readouterr().err
    assert main(["train-compiled", "--resume", str(run), "--seed", "1"]) == 2
    assert "no other options" in capsys.readouterr().err
    assert main(["train-compiled", "--resume", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="checkpoint_every"):
        resume_config(checkpoint_every=-1).validate()
    with pytest.raises(ValueError, match="keep_checkpoints"):
        resume_config(keep_checkpoints=0).validate()


@pytest.mark.extended
def test_revflow_eval_reads_a_compiled_run(tmp_path, capsys):
    """~30 s on the loaded 2-core CPU (compiles the evaluation): an untrained agent's checkpoint,
    written as the loop writes them, evaluated on its mjx: task by `revflow eval`."""
    cfg, agent_cfg = resume_config(), make_config("sac", "fast", **TINY["sac"])
    trainer = CompiledTrainer(cfg, agent_cfg)
    run = tmp_path / "run"
    config = compiled._config_dict(cfg, agent_cfg, trainer.mesh)
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config))
    state = trainer.init_state()
    compiled._save(run, 8, state, compiled._Host.initial(cfg), config, cfg)
    assert compiled.is_compiled_run(run) and not compiled.is_compiled_run(tmp_path)
    assert main(["eval", str(run), "--episodes", "3", "--mode", "sample"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"checkpoint at step 8, mode sample: return (\S+) ± (\S+) over 3", out)
    assert match, out
    assert np.isfinite(float(match[1])) and np.isfinite(float(match[2]))
