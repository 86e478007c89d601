"""The fully compiled training loop (revflow.compiled): tiny runs of rfm and sac on an MJX
task, the replay sampler, configuration errors, and sharding over two (fake CPU) devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from revflow.agents.registry import make_config
from revflow.checkpoint import latest_step
from revflow.cli import main
from revflow.compiled import (
    CompiledConfig,
    CompiledTrainer,
    Replay,
    _make_sampler,
    make_mesh,
    train_compiled,
)
from revflow.engine import TrainConfig

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


@pytest.mark.parametrize("algo", ["rfm", pytest.param("sac", marks=pytest.mark.slow)])
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


@pytest.mark.slow
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
