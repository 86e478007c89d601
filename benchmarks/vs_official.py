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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import (
    LEAD,
    alternate,
    machine,
    missing_file,
    revflow_bench,
    run_child,
    write_json,
)

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
    jax = sys.modules.get("jax")  # imported by the trainer: the device it ran on
    if jax is not None:
        result["jax"] = jax.__version__
        result["device_kind"] = jax.devices()[0].device_kind
    Path(args.result).write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------
# The driver: runs under revflow's Python.
# --------------------------------------------------------------------------------------


def official_overrides(
    config: str,
    env: str,
    warmup: int,
    window_end: int,
    logdir: str,
    values: dict[str, Any] | None = None,
) -> list[str]:
    """The authors' ``main.py`` flags: their rfm config, the configuration's values (or
    ``values``), no wandb, no saving, one evaluation env and no evaluation in the window."""
    merged = {
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
        **(OFFICIAL_VALUES[config] if values is None else values),
    }
    flags = ["--config", "configs/rfm.yaml"]
    for key, value in merged.items():
        flags += ["--override", f"{key}={value}"]
    return flags


def time_official(
    official: str,
    official_python: str,
    config: str,
    env: str,
    warmup: int,
    timed: int,
    tmp: Path,
    values: dict[str, Any] | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The authors' trainer under their Python: env steps/s over ``timed`` steps from
    ``LEAD`` policy steps past the warm-up; ``values`` replace the configuration's overrides,
    ``extra_env`` is added to the child's environment."""
    start = warmup + LEAD
    end = start + timed
    result = tmp / f"official-{config}.json"
    cmd = [
        official_python,
        str(Path(__file__).resolve()),
        "--official-side",
        "--official",
        official,
        "--result",
        str(result),
        "--window-start",
        str(start),
        "--window-end",
        str(end),
        "--",
        *official_overrides(config, env, warmup, end, str(tmp / "official-logs"), values),
    ]
    child_env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        **(extra_env or {}),
    }
    rss = run_child(cmd, tmp / f"official-{config}.log", child_env)
    out = json.loads(result.read_text())
    return {
        "env_steps_per_s": out["env_steps_per_s"],
        "env_steps": out["env_steps"],
        "jax": out.get("jax"),
        "device_kind": out.get("device_kind"),
        "max_rss_mib": rss,
    }


def time_revflow(args: argparse.Namespace, config: str, tmp: Path) -> dict[str, Any]:
    return revflow_bench(
        "rfm",
        REVFLOW_PRESET[config],
        f"dmc:{args.env}",
        tmp,
        update_seconds=args.update_seconds,
        e2e_seconds=args.e2e_seconds,
        warmup_steps=args.warmup,
    )


def official_error(official: str | None, official_python: str | None) -> str | None:
    """The one-line error for an unusable checkout or Python of the authors (None if fine)."""
    if not official or not (Path(official) / "main.py").is_file():
        return f"error: --official {official!r} has no main.py"
    return missing_file("--official-python", official_python)


def official_commit(official: str) -> str:
    """The commit of the authors' checkout (empty if it is no git checkout)."""
    return subprocess.run(
        ["git", "-C", official, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


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

    error = official_error(args.official, args.official_python)
    if error is None and args.rounds < 1:
        error = f"error: --rounds {args.rounds} must be >= 1"
    if error:
        print(error, file=sys.stderr)
        return 2

    results: dict[str, Any] = {
        "machine": machine(),
        "official_commit": official_commit(args.official),
        "env": f"dmc:{args.env}",
        "warmup_steps": args.warmup,
        "configs": {},
    }
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for config in args.configs:
            pairs = alternate(
                config,
                args.rounds,
                lambda config=config: time_revflow(args, config, tmp),
                lambda timed, config=config: time_official(
                    args.official, args.official_python, config, args.env, args.warmup, timed, tmp
                ),
                "official",
            )
            results["configs"][config] = {
                "official_overrides": OFFICIAL_VALUES[config],
                "revflow_preset": REVFLOW_PRESET[config],
                **pairs,
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
        write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
