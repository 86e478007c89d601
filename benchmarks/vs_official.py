"""Side-by-side throughput: the authors' RFM trainer vs revflow's, same task, same values.

Runs, alternately (A B A B ...), so that machine noise hits both:

- **official**: the authors' own trainer (``main.py`` of a checkout of
  azizanlab/ReverseFlowMatching), unchanged, under the Python of its own environment, with
  ``--override`` flags for the configuration values, ``logger.wandb_project=none``, a short
  warm-up and one evaluation environment. This script re-invokes itself under that Python
  (``--official-side``) to time the trainer's loop: it wraps ``tqdm.tqdm`` (the trainer's
  loop iterator) with a recorder of ``time.perf_counter()`` per iteration and stops the
  process once the timed window is complete. Nothing of the authors' code is copied or changed.
- **revflow**: ``revflow bench throughput`` with the preset holding the same values, in a
  fresh process.

Both sides are timed the same way: env steps/s of the real training loop at one update per
env step, from the first step after ``lead`` policy steps past the warm-up (so compilation is
excluded) to the end of the window. Peak memory is the child process's maximum RSS
(``os.wait4``). revflow's side also reports FLOPs per update (XLA's cost analysis), updates/s
of its fused update call and the fraction of the float32 matmul peak its bench measures.

Configurations (``--configs``): ``reference`` (the authors' ``configs/rfm.yaml`` over their
defaults; revflow's ``reference`` preset) and ``fast`` (8 particles, 5 Euler steps, K = 16,
velocity net 128 wide with 64-dim embeddings; revflow's ``fast`` preset).

    python benchmarks/vs_official.py --official ../ReverseFlowMatching \\
        --official-python ../rfm-venv/bin/python --out docs/vs_official/cheetah_run.json

Keep other jobs off the cores while it runs; each pair of a reference round takes about
4 minutes on a 2-core CPU (compilation included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: The authors' overrides that give each configuration (on top of ``configs/rfm.yaml``).
OFFICIAL_VALUES: dict[str, dict[str, Any]] = {
    "reference": {},
    "fast": {
        "rfm.num_particles_training": 8,
        "rfm.num_particles_data": 8,
        "rfm.num_particles_eval": 8,
        "rfm.num_integration_steps": 5,
        "rfm.num_estimator_mc_samples": 16,
        "actor.hidden_size": 128,
        "actor.emb_size": 64,
    },
}

#: revflow's preset holding the same values.
REVFLOW_PRESET = {"reference": "reference", "fast": "fast"}


# --------------------------------------------------------------------------------------
# The official side: runs under the authors' Python; imports nothing of revflow.
# --------------------------------------------------------------------------------------


class _Done(Exception):
    """Raised from the wrapped loop iterator once the timed window is recorded."""


def _official_side(args: argparse.Namespace) -> int:
    """Run the authors' ``main.py`` in this process, timing its tqdm-driven loop."""
    import resource
    import runpy

    import tqdm

    start, stop = args.window_start, args.window_end
    stamps: dict[int, float] = {}
    original = tqdm.tqdm

    class _Recorder(original):  # type: ignore[misc, valid-type]
        def __iter__(self):
            for i, item in enumerate(super().__iter__()):
                if i == start or i == stop:
                    stamps[i] = time.perf_counter()
                if i >= stop:
                    raise _Done
                yield item

    tqdm.tqdm = _Recorder
    official = Path(args.official).resolve()
    os.chdir(official)
    sys.path.insert(0, str(official))
    sys.argv = [str(official / "main.py"), *args.official_args]
    try:
        runpy.run_path(str(official / "main.py"), run_name="__main__")
    except _Done:
        pass
    except SystemExit as exc:  # absl's app.run exits; _Done may arrive wrapped in it
        if stop not in stamps:
            raise RuntimeError(
                f"the authors' trainer exited ({exc.code}) before step {stop}"
            ) from exc
    if start not in stamps or stop not in stamps:
        raise RuntimeError(f"the authors' loop ended before step {stop}")
    steps = stop - start
    result = {
        "env_steps": steps,
        "seconds": stamps[stop] - stamps[start],
        "env_steps_per_s": steps / (stamps[stop] - stamps[start]),
        "max_rss_mib_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(args.result).write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------
# The driver: runs under revflow's Python.
# --------------------------------------------------------------------------------------


def _run_child(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Run ``cmd`` to completion (output to ``log``); returns its peak RSS in MiB."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{shlex.join(cmd)} exited {proc.returncode}:\n{tail}")
    return usage.ru_maxrss / 1024


def official_overrides(config: str, env: str, warmup: int, window_end: int, logdir: str):
    values = {
        "algo": "rfm",
        "env.name": env,
        "seed": 0,
        "logger.wandb_project": "none",
        "logger.save_agent": "false",
        "logger.log_dir": logdir,
        "trainer.start_training": warmup,
        "trainer.max_steps": window_end + 10,
        "trainer.num_eval_envs": 1,
        "trainer.eval_interval": 10**9,
        **OFFICIAL_VALUES[config],
    }
    flags = ["--config", "configs/rfm.yaml"]
    for key, value in values.items():
        flags += ["--override", f"{key}={value}"]
    return flags


def time_official(args: argparse.Namespace, config: str, lead: int, timed: int, tmp: Path):
    start = args.warmup + lead
    end = start + timed
    result = tmp / f"official-{config}.json"
    cmd = [
        args.official_python,
        str(Path(__file__).resolve()),
        "--official-side",
        "--official",
        args.official,
        "--result",
        str(result),
        "--window-start",
        str(start),
        "--window-end",
        str(end),
        "--",
        *official_overrides(config, args.env, args.warmup, end, str(tmp / "official-logs")),
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    rss = _run_child(cmd, tmp / f"official-{config}.log", env)
    out = json.loads(result.read_text())
    return {
        "env_steps_per_s": out["env_steps_per_s"],
        "env_steps": out["env_steps"],
        "max_rss_mib": rss,
    }


def time_revflow(args: argparse.Namespace, config: str, e2e_seconds: float, tmp: Path):
    out = tmp / f"revflow-{config}.json"
    cmd = [
        sys.executable,
        "-m",
        "revflow.cli",
        "bench",
        "throughput",
        "--algo",
        "rfm",
        "--preset",
        REVFLOW_PRESET[config],
        "--env",
        f"dmc:{args.env}",
        "--update-seconds",
        str(args.update_seconds),
        "--e2e-seconds",
        str(e2e_seconds),
        "--json",
        str(out),
    ]
    rss = _run_child(cmd, tmp / f"revflow-{config}.log")
    res = json.loads(out.read_text())
    return {
        "env_steps_per_s": res["env_steps_per_s"],
        "env_steps": res["e2e_env_steps"],
        "updates_per_s": res["updates_per_s"],
        "flops_per_update": res["flops_per_update"],
        "matmul_peak_gflops": res["matmul_peak_gflops"],
        "fraction_of_peak": res["fraction_of_peak"],
        "max_rss_mib": rss,
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", required=True, help="checkout of the authors' repository")
    parser.add_argument("--official-python", help="Python of the authors' environment")
    parser.add_argument("--env", default="cheetah-run", help="DMC task, <domain>-<task>")
    parser.add_argument(
        "--configs", nargs="+", default=["reference", "fast"], choices=sorted(OFFICIAL_VALUES)
    )
    parser.add_argument("--rounds", type=int, default=2, help="A B pairs per configuration")
    parser.add_argument("--warmup", type=int, default=1000, help="random-action env steps")
    parser.add_argument(
        "--e2e-seconds",
        type=float,
        default=30.0,
        help="about how long each side's timed window lasts",
    )
    parser.add_argument(
        "--update-seconds",
        type=float,
        default=5.0,
        help="revflow's timing of its fused update call",
    )
    parser.add_argument("--out", help="write the results as JSON here")
    # The official side (re-invoked under the authors' Python).
    parser.add_argument("--official-side", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--window-start", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--window-end", type=int, help=argparse.SUPPRESS)
    parser.add_argument("official_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.official_side:
        return _official_side(args)

    if not (Path(args.official) / "main.py").is_file():
        print(f"error: --official {args.official!r} has no main.py", file=sys.stderr)
        return 2
    if not args.official_python or not Path(args.official_python).is_file():
        print(f"error: --official-python {args.official_python!r} is not a file", file=sys.stderr)
        return 2
    if args.rounds < 1:
        print(f"error: --rounds {args.rounds} must be >= 1", file=sys.stderr)
        return 2

    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
        },
        "official_commit": subprocess.run(
            ["git", "-C", args.official, "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "env": f"dmc:{args.env}",
        "warmup_steps": args.warmup,
        "configs": {},
    }
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for config in args.configs:
            ours, theirs, ratios = [], [], []
            for r in range(args.rounds):
                a = time_revflow(args, config, args.e2e_seconds, tmp)
                # Give the authors' side the same number of timed steps as revflow's window.
                lead = 50
                b = time_official(args, config, lead, max(int(a["env_steps"]), 20), tmp)
                ours.append(a)
                theirs.append(b)
                ratios.append(a["env_steps_per_s"] / b["env_steps_per_s"])
                print(
                    f"[{config} round {r + 1}/{args.rounds}] revflow "
                    f"{a['env_steps_per_s']:.2f} env steps/s, official "
                    f"{b['env_steps_per_s']:.2f}, ratio {ratios[-1]:.2f}",
                    flush=True,
                )
            results["configs"][config] = {
                "official_overrides": OFFICIAL_VALUES[config],
                "revflow_preset": REVFLOW_PRESET[config],
                "revflow": ours,
                "official": theirs,
                "ratio": _summary(ratios),
                "revflow_env_steps_per_s": _summary([x["env_steps_per_s"] for x in ours]),
                "official_env_steps_per_s": _summary([x["env_steps_per_s"] for x in theirs]),
            }

    print(
        f"\n{'config':<10} {'official':>10} {'revflow':>10} {'ratio':>14} "
        f"{'GFLOP/upd':>10} {'of peak':>8} {'RSS MiB (o/r)':>15}"
    )
    for config, res in results["configs"].items():
        ours = res["revflow"]
        rss_o = max(x["max_rss_mib"] for x in res["official"])
        rss_r = max(x["max_rss_mib"] for x in ours)
        ratio = res["ratio"]
        print(
            f"{config:<10} {res['official_env_steps_per_s']['median']:>10.2f} "
            f"{res['revflow_env_steps_per_s']['median']:>10.2f} "
            f"{ratio['median']:>5.2f} [{ratio['min']:.2f},{ratio['max']:.2f}] "
            f"{ours[0]['flops_per_update'] / 1e9:>10.1f} "
            f"{100 * statistics.median(x['fraction_of_peak'] for x in ours):>7.1f}% "
            f"{rss_o:>7.0f}/{rss_r:<7.0f}"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
