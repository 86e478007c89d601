"""Nothing lost, nothing silent: every failure a user can cause, driven through the ``revflow``
command line in a subprocess (tests/_faults.py). One trial of each fault runs here; many
trials (the README's figures) are ``benchmarks/fault_injection.py`` and the ``extended``
tests below.

Each case checks the exit status, that stderr is exactly one ``error:`` line (no traceback)
naming what failed, and what is left on disk.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

import _faults as F


def _one_error_line(stderr: str, *needles: str) -> str:
    got = F.lines(stderr)
    assert len(got) == 1 and got[0].startswith("error: "), stderr
    for needle in needles:
        assert needle in got[0], got[0]
    return got[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted tiny run (checkpoints 200 and 400, result.json)."""
    return F.reference_run(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory) -> dict:
    """A run whose first update (env step 201) is non-finite, and two unchanged resumes."""
    return F.nan_trial(tmp_path_factory.mktemp("nan"), warmup=200, seed=0)


# --------------------------------------------------------------------------------------------
# Refused before any compute
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--steps", "300", "--warmup-steps", "1000"], ["warmup_steps", "never update"]),
    ],
)
def test_bad_requests_are_one_line_and_leave_nothing(tmp_path: Path, extra, needles) -> None:
    proc = F.revflow("train", *F.TINY, *extra, "--run-dir", tmp_path)
    assert proc.returncode == 2
    _one_error_line(proc.stderr, *needles)
    assert not any(tmp_path.iterdir())  # no run directory, no result.json


def test_second_train_into_a_run_that_died_early_is_refused(tmp_path: Path, reference) -> None:
    run = tmp_path / F.RUN
    run.mkdir(parents=True)
    config = (reference / "config.json").read_text()
    (run / "config.json").write_text(config)  # died before its first checkpoint
    proc = F.revflow("train", *F.TINY, "--run-dir", tmp_path)
    assert proc.returncode == 2
    _one_error_line(proc.stderr, "stopped before its first checkpoint", "--resume")
    assert (run / "config.json").read_text() == config


def test_read_only_run_dir_is_one_line_before_compute(tmp_path: Path) -> None:
    if not F.namespace_mount_works(tmp_path):
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    mount = tmp_path / "ro"
    proc = F.on_tmpfs(
        mount, "ro,size=64k", f"$REVFLOW train {' '.join(F.TINY)} --run-dir '{mount}'"
    )
    assert proc.returncode == 1
    _one_error_line(proc.stderr, "cannot write to run directory", str(mount), "Read-only")


# --------------------------------------------------------------------------------------------
# Failures during a run
# --------------------------------------------------------------------------------------------


def test_nan_stops_keeps_the_last_good_state_and_refuses_to_repeat(nan_run) -> None:
    assert nan_run["returncode"] == 1
    [line] = nan_run["stderr"]
    assert line.startswith("error: non-finite") and "last good state 201" in line
    assert "--agent.critic-lr" in line  # says what to change
    assert nan_run["checkpoints"] == ["200", "last-good/201"]
    assert nan_run["resume_returncodes"] == [2, 2]  # refused, not looping
    for stderr in nan_run["resume_stderr"]:
        [line] = stderr
        assert "would repeat that failure" in line and "--step 200" in line
    assert nan_run["new_checkpoints"] == [] and nan_run["states_lost"] == []


def test_resume_with_a_change_continues_the_last_good_state(nan_run, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(nan_run["run"], run)
    proc = F.revflow(
        "train", "--resume", run, "--agent.critic-lr", "3e-4", "--agent.actor-lr", "3e-4"
    )
    assert proc.returncode == 0, proc.stderr
    assert "config changed on resume: agent.actor_lr: 1e+30 -> 0.0003" in proc.stdout
    assert "from last good state 201" in proc.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["agent"]["critic_lr"] == 3e-4
    assert config["earlier_configs"][0]["agent"]["critic_lr"] == 1e30
    assert json.loads((run / "result.json").read_text())["env_steps"] == F.STEPS
    assert "last-good/201" in F.checkpoint_dirs(run)  # still kept


def test_disk_full_is_one_line_and_keeps_the_earlier_checkpoint(tmp_path: Path, reference):
    if not F.namespace_mount_works(tmp_path):
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    one = sum(p.stat().st_size for p in (reference / "checkpoints" / "200").rglob("*"))
    got = F.disk_full_trial(tmp_path / "full", size_kb=int(one * 1.6) // 1024 + 16)
    assert got["returncode"] == 1
    [line] = got["stderr"]
    assert line.startswith("error: cannot write checkpoint 400") and "No space left" in line
    assert "earlier checkpoints [200] are kept" in line
    assert got["after"] == ["200"]


@pytest.mark.extended  # test_engine.py kills a run in CI (in-process train, kill -9, resume)
def test_kill_9_then_resume_is_bit_exact(tmp_path: Path, reference) -> None:
    got = F.kill_trial(tmp_path, at_step=random.Random(0).randrange(200, F.STEPS))
    assert got["returncode"] == 0, got["stderr"]
    assert got["fingerprint"] == F.fingerprint(reference)


@pytest.mark.parametrize(
    "resume", [False, pytest.param(True, marks=pytest.mark.extended)], ids=["stop", "resume"]
)
def test_ctrl_c_writes_a_checkpoint_and_says_how_to_resume(tmp_path: Path, resume) -> None:
    got = F.interrupt_trial(tmp_path, resume=resume)
    assert got["returncode"] == 130
    [line] = got["stderr"]
    assert line.startswith("interrupted at env step") and "train --resume" in line
    step = int(line.split("env step ")[1].split()[0])
    assert 150 <= step < F.STEPS and got["checkpoints"] == [str(step)]
    if resume:
        assert got["resume_returncode"] == 0 and got["result"]
        assert any(f"from checkpoint {step}" in x for x in got["resume_stdout"])


# --------------------------------------------------------------------------------------------
# Recovery from damaged files
# --------------------------------------------------------------------------------------------


def test_eval_falls_back_past_a_corrupt_checkpoint_and_step_picks(tmp_path, reference):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    F.corrupt(run / "checkpoints" / "400", "truncate-data")
    proc = F.revflow("eval", run, "--episodes", "1")
    assert proc.returncode == 0, proc.stderr
    [warning] = F.lines(proc.stderr) or [""]
    assert len(F.lines(proc.stderr)) == 1, proc.stderr
    assert warning.startswith("warning: skipped checkpoint 400") and "checkpoint 200" in warning
    assert "checkpoint at step 200" in proc.stdout
    proc = F.revflow("eval", run, "--episodes", "1", "--step", "400")  # asked for: no fallback
    assert proc.returncode == 2
    _one_error_line(proc.stderr, "truncated or corrupt")


@pytest.mark.extended  # the fallback itself runs in CI through eval (above)
def test_resume_falls_back_past_a_corrupt_checkpoint_bit_exactly(tmp_path, reference) -> None:
    got = F.corruption_trial(reference, tmp_path, "overwrite-data")
    assert got["returncode"] == 0, got["output"]
    assert "warning: skipped checkpoint 400" in got["output"]
    assert "resuming" in got["output"] and "from checkpoint 200" in got["output"]
    assert got["fingerprint"] == F.fingerprint(reference)


def test_eval_warns_on_a_last_good_state(nan_run) -> None:
    proc = F.revflow("eval", nan_run["run"], "--episodes", "1")
    assert proc.returncode == 0, proc.stderr
    assert "state before the run failed" in proc.stderr and "step 201" in proc.stdout


def test_resume_of_a_finished_run_with_a_corrupt_result_rewrites_it(tmp_path, reference):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    (run / "result.json").write_bytes(b"\xff\xfe{ not json")
    proc = F.revflow("train", "--resume", run)
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and "had already finished" in proc.stdout
    assert json.loads((run / "result.json").read_text()) == json.loads(
        (reference / "result.json").read_text()
    )


def test_resume_with_a_garbage_log_is_one_line(tmp_path: Path, reference) -> None:
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    (run / "result.json").unlink()
    shutil.rmtree(run / "checkpoints" / "400")
    (run / "metrics.csv").write_bytes(bytes(range(256)) * 4)
    proc = F.revflow("train", "--resume", run)
    assert proc.returncode == 2
    _one_error_line(proc.stderr, "metrics.csv", "move it away")


# --------------------------------------------------------------------------------------------
# Many trials (the README's figures come from benchmarks/fault_injection.py)
# --------------------------------------------------------------------------------------------


@pytest.mark.extended
def test_many_kills_resume_bit_exactly(tmp_path: Path, reference) -> None:
    rng = random.Random(1)
    want = F.fingerprint(reference)
    for i in range(5):
        got = F.kill_trial(tmp_path / str(i), at_step=rng.randrange(0, F.STEPS))
        assert got["returncode"] == 0 and got["fingerprint"] == want, got


@pytest.mark.extended
@pytest.mark.parametrize("how", F.CORRUPTIONS)
def test_every_corruption_is_recovered(tmp_path: Path, reference, how: str) -> None:
    got = F.corruption_trial(reference, tmp_path, how)
    assert got["returncode"] == 0 and got["fingerprint"] == F.fingerprint(reference), got
