"""The sbx side-by-side script: its quick path without sbx (revflow's side alone, the skip
said), its refusals, the values it gives both sides, and its dm_control wrapper against
revflow's. With ``REVFLOW_SBX_PYTHON`` (sbx's venv) the extended check runs both sides."""

import importlib.util
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from revflow.agents.sac import SACConfig
from revflow.bench import ThroughputArgs, agent_config
from revflow.envs import make_env

_BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, _BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


vs_sbx = _load("vs_sbx")
sbx_side = _load("sbx_side")


@pytest.mark.parametrize("mode", sorted(vs_sbx.VALUES))
def test_both_sides_get_the_same_networks_and_batch(mode):
    values = vs_sbx.VALUES[mode]
    cfg = agent_config(ThroughputArgs(algo="sac", preset=values["preset"], set=values["set"]))
    net = tuple(int(w) for w in values["net"].split(","))
    assert cfg.actor_hidden == cfg.critic_hidden == net
    assert cfg.actor_arch == "mlp" and cfg.num_critics == 2  # sbx: ReLU MLPs, twin critics
    assert cfg.batch_size == values["batch_size"]
    assert SACConfig.from_preset("standard").actor_hidden == (256, 256)


def test_the_dmc_wrapper_sees_what_revflow_sees():
    ours = make_env("dmc:cheetah-run", seed=3)
    theirs = sbx_side.make("dmc:cheetah-run", seed=3)
    assert theirs.observation_space.shape == ours.observation_space.shape == (17,)
    o1, _ = ours.reset(seed=3)
    o2, _ = theirs.reset(seed=3)
    np.testing.assert_array_equal(o1, o2)
    action = np.linspace(-1, 1, 6).astype(np.float32)
    for _ in range(3):
        o1, r1, term1, trunc1, _ = ours.step(action)
        o2, r2, term2, trunc2, _ = theirs.step(action)
    np.testing.assert_array_equal(o1, o2)
    assert (r1, term1, trunc1) == (r2, term2, trunc2)
    ours.close()


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--sbx-python", "/nonexistent/python"], "--sbx-python"),
        (["--quick", "--envs", "cheetah-run"], "--envs"),
        (["--quick", "--rounds", "0"], "--rounds"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, flag, capsys):
    assert vs_sbx.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {flag}") and "\n" not in err


def test_quick_without_sbx_runs_revflow_alone_and_says_so(tmp_path, capsys):
    out = tmp_path / "sbx.json"
    argv = ["--quick", "--sbx-python", str(tmp_path / "absent"), "--envs", "dmc:cheetah-run"]
    assert vs_sbx.main([*argv, "--out", str(out)]) == 0
    assert "sbx side skipped: --sbx-python" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["quick"] and res["sbx_skipped"].startswith("--sbx-python")
    (row,) = res["envs"]["dmc:cheetah-run"]["revflow"]
    assert row["env_steps"] >= 20 and math.isfinite(row["env_steps_per_s"])
    assert row["env_steps_per_s"] > 0 and row["updates_per_s"] > 0


@pytest.mark.extended
@pytest.mark.skipif(not os.environ.get("REVFLOW_SBX_PYTHON"), reason="REVFLOW_SBX_PYTHON unset")
def test_quick_with_sbx_times_both_sides(tmp_path):
    out = tmp_path / "sbx.json"
    argv = ["--quick", "--sbx-python", os.environ["REVFLOW_SBX_PYTHON"], "--out", str(out)]
    assert vs_sbx.main(argv) == 0
    res = json.loads(out.read_text())
    for env in vs_sbx.ENVS:
        (ours,), (theirs,) = res["envs"][env]["revflow"], res["envs"][env]["sbx"]
        assert theirs["env_steps"] == max(ours["env_steps"], 20)
        assert theirs["net"] == [32, 32] and theirs["env_steps_per_s"] > 0
