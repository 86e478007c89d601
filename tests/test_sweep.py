"""``revflow sweep``: definitions -> validated runs, skip / resume / fail semantics, backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from revflow import cli
from revflow.checkpoint import latest_step
from revflow.engine import read_result
from revflow.sweep import (
    RunSpec,
    SweepArgs,
    SweepError,
    build_runs,
    execute,
    load_sweep_file,
    run_state,
)

ENV = "gym:Pendulum-v1"
TINY = {
    "steps": 400,
    "warmup_steps": 100,
    "eval_every": 200,
    "eval_episodes": 2,
    "checkpoint_every": 200,
    "log_every": 100,
    "tensorboard": False,
    "agent.batch_size": 32,
    "agent.actor_hidden": [32, 32],
    "agent.critic_hidden": [32, 32],
}


def definition(root: Path, **kw) -> dict:
    base = {
        "run_dir": str(root),
        "preset": "fast",
        "algos": ["sac"],
        "envs": [ENV],
        "seeds": [0],
        "set": dict(TINY),
    }
    base.update(kw)
    return base


# --------------------------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------------------------


def test_grid_expands_to_labelled_validated_runs(tmp_path: Path) -> None:
    d = definition(
        tmp_path,
        algos=["rfm", "qne"],
        seeds=[0, 1],
        preset={"default": "fast", "qne": "reference"},
        grid={"agent.lam": [0.02, 0.1], "agent.batch_size": [64]},
        algo_set={"rfm": {"agent.num_particles": 4}},
        set={"steps": 400, "warmup_steps": 100},
    )
    runs = build_runs(d, check_envs=False)
    assert len(runs) == 2 * 2 * 2  # algos x lam values x seeds
    # env -> seed -> arm order, so a partly finished sweep holds whole comparisons
    assert [(r.seed, r.label) for r in runs[:4]] == [
        (0, "rfm.lam-0.02.batch_size-64"),
        (0, "rfm.lam-0.1.batch_size-64"),
        (0, "qne.lam-0.02.batch_size-64"),
        (0, "qne.lam-0.1.batch_size-64"),
    ]
    first = runs[0]
    assert first.run_dir == str(tmp_path / "gym_Pendulum-v1" / first.label / "seed0")
    assert first.agent["lam"] == 0.02 and first.agent["batch_size"] == 64
    assert first.agent["num_particles"] == 4 and first.preset == "fast"
    assert first.train["steps"] == 400 and first.train["label"] == first.label
    qne = next(r for r in runs if r.algo == "qne")
    assert qne.preset == "reference" and "num_particles" not in TINY
    assert RunSpec.from_json(first.to_json()) == first


def test_plain_algo_keeps_the_engine_run_dir(tmp_path: Path) -> None:
    (run,) = build_runs(definition(tmp_path), check_envs=False)
    assert run.label == "sac" and run.train["label"] is None
    assert run.run_dir == str(tmp_path / "gym_Pendulum-v1" / "sac" / "seed0")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"algos": ["nope"]}, "unknown algorithms"),
        ({"algos": []}, "no algorithms"),
        ({"envs": []}, "no environments"),
        ({"seeds": [0, 0]}, "seeds repeat"),
        ({"set": {"stepz": 5}}, "no field 'stepz'"),
        ({"set": {"agent.lamda": 5}}, "no field 'lamda'"),
        ({"set": {"steps": "many"}}, "train.steps: expected an integer"),
        ({"set": {"steps": -3}}, "steps"),
        ({"set": {"agent.tau": -1.0}}, "tau"),
        ({"set": {"seed": 4}}, "'seed' is set by the sweep"),
        ({"grid": {"agent.tau": []}}, "non-empty list"),
        ({"preset": "turbo"}, "turbo"),
        ({"algo_set": {"rfm": {}}}, "not in the sweep"),
    ],
)
def test_bad_definitions_fail_before_any_run(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(SweepError, match=message):
        build_runs(definition(tmp_path, **change), check_envs=False)
    assert not tmp_path.joinpath("gym_Pendulum-v1").exists()


def test_unknown_env_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="nope"):
        build_runs(definition(tmp_path, envs=["dmc:nope-run"]))


def test_sweep_files(tmp_path: Path) -> None:
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text("algos: [sac]\nenvs: [gym:Pendulum-v1]\nset: {steps: 300}\n")
    toml_file = tmp_path / "s.toml"
    toml_file.write_text('algos = ["sac"]\nenvs = ["gym:Pendulum-v1"]\n[set]\nsteps = 300\n')
    assert load_sweep_file(yaml_file) == load_sweep_file(toml_file)
    bad = tmp_path / "bad.yaml"
    bad.write_text("algos: [sac]\nalgorithms: [rfm]\n")
    with pytest.raises(SweepError, match="unknown keys \\['algorithms'\\]"):
        load_sweep_file(bad)
    with pytest.raises(SweepError, match="does not exist"):
        load_sweep_file(tmp_path / "missing.yaml")
    for name in ("benchmarks/sweeps/cpu_suite.yaml", "benchmarks/sweeps/paper_dmc.yaml"):
        path = Path(__file__).parents[1] / name
        assert build_runs(load_sweep_file(path), check_envs=False)


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sweep", "--algos", "sac", "--envs", ENV, "--set", "stepz=3"]) == 2
    assert "error:" in capsys.readouterr().err
    f = tmp_path / "s.yaml"
    f.write_text("algos: [sac]\nenvs: [gym:Pendulum-v1]\n")
    assert cli.main(["sweep", str(f), "--seeds", "3"]) == 2
    assert "cannot be combined with a sweep file" in capsys.readouterr().err
    assert cli.main(["sweep", str(f), "--backend", "slurm"]) == 2
    args = [
        "sweep",
        "--algos",
        "sac",
        "--envs",
        ENV,
        "--set",
        "steps=5",
        "--set",
        "warmup_steps=1",
        "--dry-run",
    ]
    assert cli.main([*args, "--run-dir", str(tmp_path)]) == 0
    assert "new" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def test_local_sweep_skips_resumes_and_reports_failures(tmp_path: Path) -> None:
    d = definition(tmp_path, seeds=[0, 1], grid={"agent.critic_lr": [3e-4, 1e12]})
    runs = [r for r in build_runs(d) if r.seed == 0 or r.agent["critic_lr"] < 1]
    good = [r for r in runs if r.agent["critic_lr"] < 1]
    bad = [r for r in runs if r.agent["critic_lr"] > 1]
    assert len(good) == 2 and len(bad) == 1

    # Kill seed 1's good run after its first checkpoint, as a crash or Ctrl-C would.
    victim = good[1]
    Path(victim.run_dir).mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "revflow.sweep", "--worker", victim.to_json()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while latest_step(victim.run_dir) is None and time.time() < deadline:
        assert proc.poll() is None, "worker ended before its first checkpoint"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert run_state(victim)[0] == "resume"

    outcomes = execute(runs, jobs=2)
    status = {o["run_dir"]: o for o in outcomes}
    assert status[good[0].run_dir]["status"] == "done"
    assert status[victim.run_dir]["status"] == "resumed"
    for r in bad:  # a diverging run is reported with its error and stops nothing else
        assert status[r.run_dir]["status"] == "failed"
        assert "non-finite" in status[r.run_dir]["error"]
    for r in good:
        result = read_result(r.run_dir)
        assert result["complete"] and result["env_steps"] == 400 and result["updates"] == 300
        assert status[r.run_dir]["final_return"] == result["final_eval"]["return_mean"]

    # Running it again skips the finished runs and retries (and fails) the failed ones.
    again = {o["run_dir"]: o["status"] for o in execute(good)}
    assert set(again.values()) == {"skipped"}

    # A run directory holding another config is never touched.
    changed = json.loads(good[0].to_json())
    changed["train"]["steps"] = 500
    clash = RunSpec(**changed)
    (outcome,) = execute([clash])
    assert outcome["status"] == "failed" and "holds another config" in outcome["error"]
    assert read_result(good[0].run_dir)["env_steps"] == 400


@pytest.mark.extended
def test_ray_backend_runs_a_tiny_sweep(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        runs = build_runs(definition(tmp_path, seeds=[0, 1]))
        outcomes = execute(runs, backend="ray", cpus_per_run=1)
    finally:
        ray.shutdown()
    assert [o["status"] for o in outcomes] == ["done", "done"]
    assert all(read_result(r.run_dir)["complete"] for r in runs)


def test_sweep_args_defaults_match_train() -> None:
    from revflow.engine import TrainConfig

    assert SweepArgs().run_dir == TrainConfig.run_dir


def test_repeated_cli_options_accumulate(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    import tyro

    argv = ["--algos", "sac", "--envs", ENV, "--set", "steps=300", "--set", "agent.tau=0.01"]
    argv += ["--grid", "agent.gamma=0.9,0.99", "--grid", "warmup_steps=10,20"]
    args = tyro.cli(SweepArgs, args=[*argv, "--run-dir", str(tmp_path)])
    assert args.set == ("steps=300", "agent.tau=0.01")
    from revflow.sweep import _definition_from_args

    runs = build_runs(_definition_from_args(args), check_envs=False)
    assert len(runs) == 4
    assert {r.train["steps"] for r in runs} == {300} and {r.agent["tau"] for r in runs} == {0.01}
    assert {(r.agent["gamma"], r.train["warmup_steps"]) for r in runs} == {
        (0.9, 10),
        (0.9, 20),
        (0.99, 10),
        (0.99, 20),
    }


def test_worker_is_pinned_before_it_imports_jax() -> None:
    from revflow.sweep import _worker_command

    spec = RunSpec("sac", ENV, 0, "sac", "fast", {}, {}, "/nonexistent")
    core = sorted(os.sched_getaffinity(0))[-1]
    cmd = _worker_command(spec, [core])
    assert cmd[-2:] == ["--worker", spec.to_json()]
    head, _, _ = cmd[2].partition("import sys;")
    assert "sched_setaffinity" in head and "revflow" not in head  # pin first, then import
    probe = [*cmd[:2], head + "import sys; print(sorted(os.sched_getaffinity(0)))"]
    out = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
    assert out.split() == [f"[{core}]"]
    assert "sched_setaffinity" not in _worker_command(spec, None)[2]
