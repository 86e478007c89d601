"""Fault injection through the ``revflow`` command line, each run in its own subprocess:
kill -9 at a random moment, a corrupt newest checkpoint, a full or read-only disk (a
size-limited or read-only tmpfs in a private mount namespace), a non-finite loss, Ctrl-C.

Used by ``tests/test_reliability.py`` (one trial of each) and by
``benchmarks/fault_injection.py`` (many trials, the README's figures). A run is a tiny SAC
run on gym:Pendulum-v1 (fast preset, 400 env steps, checkpoints at 200 and 400); two runs
are "the same" when their final checkpoints hold bit-identical arrays (every leaf's CRC32
from the checkpoint's metadata) and identical ``result.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STEPS = 400
TINY = [
    "--algo", "sac", "--preset", "fast", "--env", "gym:Pendulum-v1",
    "--steps", str(STEPS), "--warmup-steps", "100", "--eval-every", "0",
    "--checkpoint-every", "200", "--log-every", "10", "--no-progress", "--no-tensorboard",
]  # fmt: skip
#: A learning rate that makes the first update non-finite.
NAN_FLAGS = ["--agent.critic-lr", "1e30", "--agent.actor-lr", "1e30", "--agent.max-grad-norm", "0"]
RUN = Path("gym_Pendulum-v1") / "sac" / "seed0"


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "revflow.cli", *map(str, args)]


def revflow(*args: Any, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``revflow ARGS`` to its end; stdout and stderr as text."""
    return subprocess.run(
        command(*args), capture_output=True, text=True, env=cli_env(), timeout=timeout
    )


def start(*args: Any) -> subprocess.Popen:
    return subprocess.Popen(
        command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# What a run left on disk
# --------------------------------------------------------------------------------------------


def checkpoint_dirs(run: Path) -> dict[str, Path]:
    """``{"200": path, "last-good/201": path, ...}`` of the run's finalised checkpoints."""
    root = run / "checkpoints"
    found = {}
    for sub, prefix in ((root, ""), (root / "last-good", "last-good/")):
        if sub.is_dir():
            for p in sub.iterdir():
                if p.name.isdigit() and (p / "_CHECKPOINT_METADATA").is_file():
                    found[prefix + p.name] = p
    return found


def leaf_crcs(ckpt: Path) -> list[int]:
    meta = json.loads((ckpt / "meta" / "metadata").read_text())
    return [leaf["crc32"] for leaf in meta["leaves"]]


def fingerprint(run: Path) -> dict[str, Any]:
    """The final checkpoint's step and leaf CRC32s, and ``result.json``."""
    dirs = {k: v for k, v in checkpoint_dirs(run).items() if k.isdigit()}
    final = max(dirs, key=int)
    return {
        "step": int(final),
        "crcs": leaf_crcs(dirs[final]),
        "result": json.loads((run / "result.json").read_text()),
    }


def data_files(ckpt: Path) -> list[Path]:
    files = [p for p in (ckpt / "state").rglob("*") if p.is_file() and "/d/" in p.as_posix()]
    return sorted(files, key=lambda p: p.stat().st_size)


CORRUPTIONS = ("truncate-data", "overwrite-data", "delete-meta", "garbage-meta", "empty-data")


def corrupt(ckpt: Path, how: str) -> None:
    """Damage a finalised checkpoint the way a failing disk or an interrupted copy would."""
    biggest = data_files(ckpt)[-1]
    if how == "truncate-data":
        with open(biggest, "r+b") as f:
            f.truncate(biggest.stat().st_size // 2)
    elif how == "overwrite-data":
        raw = bytearray(biggest.read_bytes())
        mid = len(raw) // 2
        raw[mid : mid + 64] = bytes((b + 1) % 256 for b in raw[mid : mid + 64])
        biggest.write_bytes(bytes(raw))
    elif how == "delete-meta":
        (ckpt / "meta" / "metadata").unlink()
    elif how == "garbage-meta":
        (ckpt / "meta" / "metadata").write_bytes(b"\xff\xfe not json \x00")
    elif how == "empty-data":
        for p in data_files(ckpt):
            p.write_bytes(b"")
    else:
        raise ValueError(how)


# --------------------------------------------------------------------------------------------
# Trials
# --------------------------------------------------------------------------------------------


def reference_run(root: Path) -> Path:
    """The uninterrupted tiny run under ``root``; returns its run directory."""
    proc = revflow("train", *TINY, "--run-dir", root)
    assert proc.returncode == 0, proc.stderr
    return root / RUN


def logged_step(run: Path) -> int:
    """The last env step in the run's ``metrics.csv`` (0 before the first row)."""
    path = run / "metrics.csv"
    rows = path.read_text().splitlines()[1:] if path.is_file() else []
    steps = [int(r.split(",")[0]) for r in rows if r.split(",")[0].isdigit()]
    return max(steps, default=0)


def kill_trial(root: Path, at_step: int) -> dict[str, Any]:
    """Start the tiny run, kill -9 it once its log reaches env step ``at_step`` (0: as soon
    as it writes its config), resume it (or start it again if it died before writing its
    config); returns what it left and how the resumed run ended."""
    proc = start("train", *TINY, "--run-dir", root)
    run = root / RUN
    while proc.poll() is None:
        if (run / "config.json").is_file() and logged_step(run) >= at_step:
            break
        time.sleep(0.05)
    finished_first = proc.poll() is not None
    killed_at = logged_step(run)
    proc.kill()
    proc.communicate()
    had = sorted(checkpoint_dirs(run))
    if (run / "config.json").is_file():
        again = revflow("train", "--resume", run)
    else:
        again = revflow("train", *TINY, "--run-dir", root)
    return {
        "target_step": at_step,
        "logged_step_at_kill": killed_at,
        "finished_before_kill": finished_first,
        "checkpoints_at_kill": had,
        "returncode": again.returncode,
        "stderr": again.stderr[-2000:],
        "fingerprint": fingerprint(run) if again.returncode == 0 else None,
    }


def corruption_trial(reference: Path, root: Path, how: str) -> dict[str, Any]:
    """Copy the finished reference run, corrupt its newest checkpoint, resume the copy."""
    run = root / RUN
    shutil.copytree(reference, run)
    (run / "result.json").unlink()
    newest = max((k for k in checkpoint_dirs(run) if k.isdigit()), key=int)
    corrupt(checkpoint_dirs(run)[newest], how)
    proc = revflow("train", "--resume", run)
    return {
        "how": how,
        "returncode": proc.returncode,
        "output": proc.stdout[-1000:] + proc.stderr[-1000:],
        "fingerprint": fingerprint(run) if proc.returncode == 0 else None,
    }


def nan_trial(root: Path, warmup: int, seed: int) -> dict[str, Any]:
    """A run whose first update is non-finite, then two resumes without a change: it must
    stop with one error line, keep its last good state and every checkpoint, and refuse the
    resumes instead of repeating the failure."""
    flags = [*TINY, "--warmup-steps", str(warmup), "--checkpoint-every", "100", "--seed", str(seed)]
    proc = revflow("train", *flags, *NAN_FLAGS, "--run-dir", root)
    run = root / "gym_Pendulum-v1" / "sac" / f"seed{seed}"
    before = {k: leaf_crcs(p) for k, p in checkpoint_dirs(run).items()}
    resumes = [revflow("train", "--resume", run) for _ in range(2)]
    after = {k: leaf_crcs(p) for k, p in checkpoint_dirs(run).items()}
    lost = [k for k in before if after.get(k) != before[k]]
    return {
        "run": str(run),
        "warmup": warmup,
        "seed": seed,
        "returncode": proc.returncode,
        "stderr": lines(proc.stderr),
        "checkpoints": sorted(before),
        "resume_returncodes": [r.returncode for r in resumes],
        "resume_stderr": [lines(r.stderr) for r in resumes],
        "new_checkpoints": sorted(set(after) - set(before)),
        "states_lost": lost,
    }


def interrupt_trial(root: Path, after_step: int = 150, resume: bool = True) -> dict[str, Any]:
    """Start the tiny run, send SIGINT once its log passes ``after_step``, then resume it
    (if ``resume``)."""
    proc = start("train", *TINY, "--checkpoint-every", "0", "--log-every", "25", "--run-dir", root)
    metrics = root / RUN / "metrics.csv"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        rows = metrics.read_text().splitlines()[1:] if metrics.is_file() else []
        if any(r.split(",")[0].isdigit() and int(r.split(",")[0]) >= after_step for r in rows):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    saved = sorted(checkpoint_dirs(root / RUN))
    got = {"returncode": proc.returncode, "stderr": lines(err), "checkpoints": saved}
    if resume:
        again = revflow("train", "--resume", root / RUN)
        got["resume_returncode"] = again.returncode
        got["resume_stdout"] = lines(again.stdout)
        got["result"] = (root / RUN / "result.json").is_file()
    return got


def namespace_mount_works(tmp: Path) -> bool:
    """Whether this machine can mount a tmpfs in a private user + mount namespace."""
    if shutil.which("unshare") is None:
        return False
    probe = tmp / "mount-probe"
    probe.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{probe}'"],
        capture_output=True,
        timeout=60,
    )
    return proc.returncode == 0


def on_tmpfs(mount: Path, options: str, script: str) -> subprocess.CompletedProcess:
    """Run the shell ``script`` with a fresh tmpfs (``-o options``) at ``mount``, in a
    private namespace (the mount vanishes with it); ``$REVFLOW`` runs the CLI."""
    mount.mkdir(parents=True, exist_ok=True)
    revflow_cmd = " ".join(command())  # word-split by the shell: no spaces in these paths
    full = f"mount -t tmpfs -o {options} tmpfs '{mount}' && REVFLOW=\"{revflow_cmd}\" && {script}"
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", full],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=900,
    )


def disk_full_trial(mount: Path, size_kb: int) -> dict[str, Any]:
    """The tiny run on a tmpfs of ``size_kb`` KiB (room for one checkpoint, not two)."""
    flags = " ".join(f"'{a}'" for a in TINY)
    run = mount / RUN
    proc = on_tmpfs(
        mount,
        f"size={size_kb}k",
        f"eval $REVFLOW train {flags} --run-dir '{mount}'; echo \"rc=$?\"; ls '{run}/checkpoints'",
    )
    out = lines(proc.stdout)
    rc = next((int(x[3:]) for x in out if x.startswith("rc=")), None)
    return {
        "returncode": rc,
        "stderr": lines(proc.stderr),
        "after": out[out.index(f"rc={rc}") + 1 :],
    }
