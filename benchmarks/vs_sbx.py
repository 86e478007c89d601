"""Side-by-side throughput: sbx's SAC vs revflow's ``sac``, same task, same values.

Runs, alternately (A B A B ...; ``side_by_side.alternate``), so that machine noise hits both:

- **revflow**: ``revflow bench throughput --algo sac`` in a fresh process: env steps/s of the
  engine's real loop after the warm-up, plus updates/s of its fused update call, FLOPs per
  update and the fraction of the measured float32 matmul peak.
- **sbx**: ``sbx.SAC`` (PyPI ``sbx-rl``, the JAX port of Stable-Baselines3) run by
  ``sbx_side.py`` under the Python of sbx's own venv, timed from a callback over the same
  number of env steps as revflow's window, from the same point past the same warm-up.

Same values on both sides: actor and twin critics 256x256 ReLU MLPs (revflow's ``standard``
preset, sbx's ``net_arch=[256, 256]``), batch 256, one gradient update per env step,
``--warmup`` random-action steps before the first update (revflow's ``warmup_steps``, sbx's
``learning_starts``). Environments: ``dmc:cheetah-run`` (dm_control, flattened observation,
action repeat 1; for sbx wrapped by ``sbx_side.DMCEnv``) and ``gym:HalfCheetah-v5``.

sbx's venv (its own, so that sbx's requirements never move revflow's pins; sbx-rl 0.28.0
pulled jax 0.10.2, flax 0.12.8, optax 0.2.8, stable-baselines3 2.9.2 and torch)::

    python3.11 -m venv /work/sbx-venv
    /work/sbx-venv/bin/pip install sbx-rl==0.28.0 "torch==2.13.0+cpu" dm_control==1.0.50 \\
        mujoco==3.17.0 "gymnasium[mujoco]==1.4.0"

(stable-baselines3, which sbx builds on, imports torch; the CPU build 2.13.0+cpu is the
one used here.) Then, with nothing else on the cores::

    python benchmarks/vs_sbx.py --sbx-python /work/sbx-venv/bin/python \\
        --out docs/vs_official/sac_vs_sbx.json

``--quick``: tiny networks (32x32), batch 32, 100 warm-up steps, one round, XLA's cheap
compile pipeline: it checks that both sides run (its numbers mean nothing). Without
``--sbx-python`` (or with one that is not a file) ``--quick`` runs revflow's side alone and
says that it skipped sbx's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
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
    summary,
    write_json,
)

ENVS = ("dmc:cheetah-run", "gym:HalfCheetah-v5")

#: The shared values: (revflow preset, overrides, sbx net, batch size, warm-up) per mode.
VALUES: dict[str, dict[str, Any]] = {
    "full": {"preset": "standard", "set": (), "net": "256,256", "batch_size": 256},
    "quick": {
        "preset": "standard",
        "set": ("actor_hidden=32,32", "critic_hidden=32,32", "batch_size=32"),
        "net": "32,32",
        "batch_size": 32,
    },
}


def time_sbx(
    sbx_python: str,
    env: str,
    warmup: int,
    timed: int,
    values: dict[str, Any],
    tmp: Path,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """sbx's SAC under its own Python: env steps/s over ``timed`` steps from ``LEAD`` policy
    steps past the warm-up."""
    start = warmup + LEAD
    tag = env.replace(":", "-")
    result = tmp / f"sbx-{tag}.json"
    cmd = [sbx_python, str(Path(__file__).resolve().parent / "sbx_side.py"), "--env", env]
    cmd += ["--warmup", str(warmup), "--window-start", str(start)]
    cmd += ["--window-end", str(start + timed), "--net", values["net"]]
    cmd += ["--batch-size", str(values["batch_size"]), "--result", str(result)]
    child_env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), **(extra_env or {})}
    rss = run_child(cmd, tmp / f"sbx-{tag}.log", child_env)
    out = json.loads(result.read_text())
    return {**out, "max_rss_mib": rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sbx-python", help="Python of sbx's venv (it runs sbx_side.py)")
    parser.add_argument("--envs", nargs="+", default=list(ENVS), help="dmc:... / gym:... ids")
    parser.add_argument("--rounds", type=int, default=2, help="A B pairs per environment")
    parser.add_argument("--warmup", type=int, default=1000, help="random-action env steps")
    parser.add_argument(
        "--e2e-seconds", type=float, default=30.0, help="about how long each timed window lasts"
    )
    parser.add_argument(
        "--update-seconds", type=float, default=5.0, help="revflow's timing of its update call"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)

    values = VALUES["quick" if args.quick else "full"]
    sbx_missing = missing_file("--sbx-python", args.sbx_python)
    bad = [e for e in args.envs if not e.startswith(("dmc:", "gym:"))]
    error = None
    if bad:
        error = f"error: --envs {bad[0]!r} is neither dmc:<domain>-<task> nor gym:<Id>"
    elif args.rounds < 1:
        error = f"error: --rounds {args.rounds} must be >= 1"
    elif args.warmup < 0:
        error = f"error: --warmup {args.warmup} must be >= 0"
    elif sbx_missing and not args.quick:
        error = sbx_missing
    if error:
        print(error, file=sys.stderr)
        return 2
    quick_env = {}
    if args.quick:  # compile-bound at these sizes: XLA's cheap pipeline on both sides
        args.rounds, args.warmup = 1, 100
        args.e2e_seconds, args.update_seconds = 0.2, 0.2
        quick_env = {"JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    if sbx_missing:
        print(f"sbx side skipped: {sbx_missing.removeprefix('error: ')}", flush=True)

    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "warmup_steps": args.warmup,
        "revflow_preset": values["preset"],
        "revflow_overrides": list(values["set"]),
        "sbx_net": values["net"],
        "batch_size": values["batch_size"],
        "sbx_skipped": sbx_missing.removeprefix("error: ") if sbx_missing else None,
        "envs": {},
    }

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for env in args.envs:

            def ours(env: str = env) -> dict[str, Any]:
                return revflow_bench(
                    "sac",
                    values["preset"],
                    env,
                    tmp,
                    update_seconds=args.update_seconds,
                    e2e_seconds=args.e2e_seconds,
                    warmup_steps=args.warmup,
                    sets=values["set"],
                    matmul_size=256 if args.quick else None,
                    child_env={**os.environ, **quick_env},
                )

            if sbx_missing:
                rows = [ours() for _ in range(args.rounds)]
                results["envs"][env] = {
                    "revflow": rows,
                    "revflow_env_steps_per_s": summary([x["env_steps_per_s"] for x in rows]),
                }
                print(f"[{env}] revflow {rows[-1]['env_steps_per_s']:.2f} env steps/s")
                continue
            results["envs"][env] = alternate(
                env,
                args.rounds,
                ours,
                lambda timed, env=env: time_sbx(
                    args.sbx_python, env, args.warmup, timed, values, tmp, quick_env
                ),
                "sbx",
            )

    print(f"\n{'env':<20} {'sbx':>10} {'revflow':>10} {'ratio':>16} {'upd/s':>8} {'of peak':>8}")
    for env, res in results["envs"].items():
        ours_rows = res["revflow"]
        sbx = f"{res['sbx_env_steps_per_s']['median']:.2f}" if "sbx" in res else "skipped"
        ratio = res.get("ratio")
        ratio_s = f"{ratio['median']:.2f} [{ratio['min']:.2f},{ratio['max']:.2f}]" if ratio else "-"
        print(
            f"{env:<20} {sbx:>10} {res['revflow_env_steps_per_s']['median']:>10.2f} "
            f"{ratio_s:>16} {statistics.median(x['updates_per_s'] for x in ours_rows):>8.1f} "
            f"{100 * statistics.median(x['fraction_of_peak'] for x in ours_rows):>7.1f}%"
        )
    if args.out:
        write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
