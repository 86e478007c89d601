"""The ``revflow`` command line: errors exit 2 with one line, help lists everything, and the
train / eval / bench commands run end to end on tiny settings."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from revflow.cli import main

TINY = [
    "--env", "gym:Pendulum-v1", "--steps", "400", "--warmup-steps", "200",
    "--eval-every", "0", "--checkpoint-every", "200", "--no-progress", "--no-tensorboard",
    "--preset", "fast", "--agent.batch-size", "32",
    "--agent.actor-hidden", "32", "32", "--agent.critic-hidden", "32", "32",
]  # fmt: skip


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("error: ")
    return err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--algo", "nope", "--env", "gym:Pendulum-v1"], "unknown algorithm 'nope'"),
        (["train", "--algo", "sac", "--env", "gym:NoSuchEnv-v9"], "NoSuchEnv"),
        (["train", "--algo", "sac", "--env", "dmc:cheetah-fly"], "cheetah"),
        (["train", "--algo", "sac", "--env", "cheetah-run"], "prefix"),
        (["train", "--algo", "sac", "--preset", "turbo"], "unknown preset 'turbo'"),
        (["train", "--algo", "sac", "--agent.gamma", "2.0"], "gamma"),
        (["train", "--algo", "rfm", "--agent.num-particles", "0"], "num_particles=0"),
        (["train-compiled", "--algo", "rfm", "--agent.num-particles", "0"], "num_particles=0"),
        (["sweep", "--algos", "rfm", "--envs", "gym:Pendulum-v1", "--set", "agent.tau=0"], "tau=0"),
        (["train", "--algo", "sac", "--steps", "0"], "steps"),
        (["train", "--algo", "sac", "--eval-mode", "greedy"], "eval_mode"),
        (["train", "--resume", "/nonexistent/run"], "does not exist"),
        (["train", "--resume", "/nonexistent/run", "--seed", "1"], "--resume takes no other"),
        (["eval", "/nonexistent/run"], "does not exist"),
        (["bench", "throughput", "--algo", "nope"], "unknown algorithm"),
        (["bench", "warp"], "unknown bench"),
        (["bench", "throughput", "--set", "nope=1"], "has no field 'nope'"),
        (["bench", "throughput", "--set", "num_particles"], "not FIELD=VALUE"),
        (["bench", "throughput", "--warmup-steps", "-1"], "--warmup-steps -1"),
        (["fly"], "unknown command"),
    ],
)
def test_errors_exit_2_with_one_line(argv, needle, capsys) -> None:
    assert main(argv) == 2
    assert needle in _error_line(capsys)


def test_console_entry_exit_code() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "revflow.cli", "train", "--algo", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        line for line in proc.stderr.strip().splitlines() if line.startswith("error:")
    ]
    assert "unknown algorithm 'nope'" in proc.stderr


def test_top_level_help(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("train", "eval", "bench throughput", "toy"):
        assert command in out


def test_train_help_lists_engine_and_agent_options(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--algo", "sac", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--algo",
        "--env",
        "--seed",
        "--steps",
        "--preset",
        "--resume",
        "--warmup-steps",
        "--utd",
        "--updates-per-call",
        "--eval-mode",
        "--checkpoint-every",
        "--wandb",
        "--agent.actor-lr",
        "--agent.critic-hidden",
        "--agent.target-entropy",
    ):
        assert flag in out, flag


def test_train_then_eval(tmp_path: Path, capsys) -> None:
    assert main(["train", "--algo", "sac", *TINY, "--run-dir", str(tmp_path)]) == 0
    run = tmp_path / "gym_Pendulum-v1" / "sac" / "seed0"
    config = json.loads((run / "config.json").read_text())
    assert config["agent"]["actor_hidden"] == [32, 32]
    assert config["train"]["steps"] == 400
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2", "--mode", "sample"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint at step 400" in out and "±" in out and "over 2 episodes" in out
    # Training into the same directory again is refused with a pointer to --resume.
    assert main(["train", "--algo", "sac", *TINY, "--run-dir", str(tmp_path)]) == 2
    assert "--resume" in _error_line(capsys)
    assert main(["eval", str(run), "--mode", "greedy"]) == 2
    assert "--mode" in _error_line(capsys)
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        assert main(["eval", str(run), "--video", str(tmp_path / "x.mp4")]) == 2
        assert "imageio-ffmpeg" in _error_line(capsys)


def test_eval_defaults_repeat_the_runs_own_final_evaluation(tmp_path: Path, capsys) -> None:
    """``revflow eval RUN`` with no options: the run's eval mode, episodes and fixed seeds,
    so it prints the return of the run's final evaluation of that checkpoint."""
    argv = [*TINY, "--eval-every", "400", "--eval-episodes", "3", "--run-dir", str(tmp_path)]
    assert main(["train", "--algo", "sac", *argv]) == 0
    run = tmp_path / "gym_Pendulum-v1" / "sac" / "seed0"
    final = json.loads((run / "result.json").read_text())["final_eval"]
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"return {final['return_mean']:.2f} ± {final['return_std']:.2f}" in out, out
    assert "mode best-of-n" in out and "over 3 episodes (seed 0)" in out


def test_bench_throughput_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [
        "bench", "throughput", "--algo", "sac", "--preset", "fast", "--env", "gym:Pendulum-v1",
        "--update-seconds", "0.5", "--e2e-seconds", "1", "--matmul-size", "256",
        "--json", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    for key in (
        "compile_s",
        "updates_per_s",
        "env_steps_per_s",
        "flops_per_update",
        "achieved_gflops",
        "matmul_peak_gflops",
    ):
        assert result[key] > 0, key
    assert result["device"] and result["platform"] == "cpu"
    # fast preset, batch 256, hidden 128: an update is between 1e7 and 1e10 FLOPs.
    assert 1e7 < result["flops_per_update"] < 1e10


def test_toy_help() -> None:
    if importlib.util.find_spec("revflow.toy.command") is None:
        pytest.skip("revflow.toy.command not present")
    with pytest.raises(SystemExit) as info:
        main(["toy", "--help"])
    assert info.value.code == 0
