"""What the side-by-side throughput scripts share (``vs_official.py``, ``vs_sbx.py``,
``gpu_check.py``): running one side in a fresh process, revflow's side (``revflow bench
throughput``), the A B alternation and the summaries.

Standard library only, and nothing of revflow at import time: ``vs_official.py`` imports this
module under the authors' Python too (when it re-invokes itself there).

The alternation: each round runs revflow's side first, then the other side with the same
number of timed env steps as revflow's window, so that machine noise (other jobs, thermal
state) hits both within minutes of each other; the ratio is that of the round's two rates.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "alternate",
    "machine",
    "missing_file",
    "projected_hours",
    "revflow_bench",
    "run_child",
    "summary",
    "write_json",
]

#: Policy steps past the warm-up before a side's timed window starts (its compiles happen
#: there), as ``revflow bench throughput`` does.
LEAD = 50


def run_child(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Run ``cmd`` to completion (its output to ``log``); returns its peak RSS in MiB.

    A non-zero exit raises ``RuntimeError`` with the command and the last lines of its log."""
    with log.open("w") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}:\n{tail}")
    return usage.ru_maxrss / 1024


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of ``values``."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def machine() -> dict[str, Any]:
    """The host: platform string, CPU count, processor."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor(),
    }


def missing_file(flag: str, path: str | None) -> str | None:
    """The one-line error for a required file that is not there (None when it is)."""
    if path and Path(path).is_file():
        return None
    return f"error: {flag} {path!r} is not a file"


def projected_hours(steps: int, env_steps_per_s: float) -> float:
    """Hours that ``steps`` env steps take at ``env_steps_per_s`` (compile, warm-up and
    evaluation not counted)."""
    return steps / env_steps_per_s / 3600.0


def revflow_bench(
    algo: str,
    preset: str,
    env: str,
    tmp: Path,
    *,
    update_seconds: float,
    e2e_seconds: float,
    warmup_steps: int | None = None,
    sets: Sequence[str] = (),
    matmul_size: int | None = None,
    tag: str = "",
    python: str = sys.executable,
    child_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``revflow bench throughput`` in a fresh process; its rates, FLOPs and peak RSS."""
    out = tmp / f"revflow-{algo}-{preset}{tag}.json"
    cmd = [python, "-m", "revflow.cli", "bench", "throughput", "--algo", algo]
    cmd += ["--preset", preset, "--env", env, "--update-seconds", str(update_seconds)]
    cmd += ["--e2e-seconds", str(e2e_seconds), "--json", str(out)]
    if warmup_steps is not None:
        cmd += ["--warmup-steps", str(warmup_steps)]
    if sets:
        cmd += ["--set", *sets]
    if matmul_size is not None:
        cmd += ["--matmul-size", str(matmul_size)]
    rss = run_child(cmd, tmp / f"revflow-{algo}-{preset}{tag}.log", child_env)
    res = json.loads(out.read_text())
    return {
        "env_steps_per_s": res["env_steps_per_s"],
        "env_steps": res["e2e_env_steps"],
        "updates_per_s": res["updates_per_s"],
        "flops_per_update": res["flops_per_update"],
        "matmul_peak_gflops": res["matmul_peak_gflops"],
        "fraction_of_peak": res["fraction_of_peak"],
        "compile_s": res["compile_s"],
        "device_kind": res["device_kind"],
        "jax": res.get("jax"),
        "max_rss_mib": rss,
    }


def alternate(
    label: str,
    rounds: int,
    revflow_side: Callable[[], dict[str, Any]],
    other_side: Callable[[int], dict[str, Any]],
    other: str,
) -> dict[str, Any]:
    """``rounds`` A B pairs: ``revflow_side()``, then ``other_side(timed_steps)`` with revflow's
    number of timed env steps (at least 20). Returns both sides' rows under ``"revflow"`` and
    ``other``, the per-round ratio revflow / other and the median, min and max of each rate."""
    ours, theirs, ratios = [], [], []
    for r in range(rounds):
        a = revflow_side()
        b = other_side(max(int(a["env_steps"]), 20))
        ours.append(a)
        theirs.append(b)
        ratios.append(a["env_steps_per_s"] / b["env_steps_per_s"])
        print(
            f"[{label} round {r + 1}/{rounds}] revflow {a['env_steps_per_s']:.2f} env steps/s, "
            f"{other} {b['env_steps_per_s']:.2f}, ratio {ratios[-1]:.2f}",
            flush=True,
        )
    return {
        "revflow": ours,
        other: theirs,
        "ratio": summary(ratios),
        "revflow_env_steps_per_s": summary([x["env_steps_per_s"] for x in ours]),
        f"{other}_env_steps_per_s": summary([x["env_steps_per_s"] for x in theirs]),
    }


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)
