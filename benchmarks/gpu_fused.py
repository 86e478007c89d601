"""Throughput of the fully compiled loop (``revflow.compiled``) on the visible device(s).

Prints the device, then for rfm and sac (fast preset and reference) at 1, 64 and 1024
parallel environments on ``mjx:CheetahRun``: compile time of the chunk function, env steps/s
and gradient updates/s of the fused loop (act, env step, replay insert, ``utd`` updates per
iteration; no warm-up, so every timed iteration updates). Writes the rows as JSON.

    XLA_FLAGS=--xla_gpu_triton_gemm_any=true \
        python benchmarks/gpu_fused.py --out docs/gpu/fused.json        # on the GPU machine
    python benchmarks/gpu_fused.py --quick                            # tiny CPU check

``--quick``: tiny networks, 2 environments, fast preset, XLA's cheap compile pipeline; it
only checks that the script runs (its numbers mean nothing).

Measured on an H200 (README; ``docs/gpu/h200_fused.json``), compiling one configuration
takes 60-85 s and dominates the run. Each configuration is timed for ``--seconds`` after its
compile; configurations still left when ``--budget`` seconds have passed are skipped (and
listed as skipped), fast preset first, so the default budget (420 s) covers about six
configurations in about 8 minutes. The JSON is rewritten after every configuration.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp


def measure(algo, preset, num_envs, env, seconds, batch_size, quick):
    from revflow.agents.registry import make_config
    from revflow.compiled import CompiledConfig, CompiledTrainer

    overrides = {}
    if quick:  # tiny networks: only checks that everything runs
        if algo == "sac":
            overrides = {"actor_hidden": (32, 32), "critic_hidden": (32, 32)}
        else:
            overrides = {"actor_hidden": 32, "critic_hidden": (32, 32), "num_particles": 4}
    agent_cfg = make_config(algo, preset, batch_size=batch_size, **overrides)
    cfg = CompiledConfig(
        algo=algo,
        env=env,
        num_envs=num_envs,
        steps=10**9,
        warmup_steps=0,
        buffer_size=max(100_000, num_envs * 16) if not quick else 1000,
        eval_every=0,
        eval_episodes=1,
        progress=False,
        tensorboard=False,
        csv=False,
    )
    t0 = time.perf_counter()
    trainer = CompiledTrainer(cfg, agent_cfg)
    state = trainer.init_state()
    chunk = trainer.chunk_fn()
    state, stats = chunk(state, jnp.asarray(2, jnp.int32))  # compile + 2 iterations
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    # Calibrate: a short chunk, then one sized to last about `seconds`.
    n = 3 if quick else 20
    t0 = time.perf_counter()
    state, stats = chunk(state, jnp.asarray(n, jnp.int32))
    jax.block_until_ready(state)
    per_iter = (time.perf_counter() - t0) / n
    if not quick:
        n = int(min(max(seconds / max(per_iter, 1e-6), 10), 100_000))
        t0 = time.perf_counter()
        state, stats = chunk(state, jnp.asarray(n, jnp.int32))
        jax.block_until_ready(state)
        per_iter = (time.perf_counter() - t0) / n
    finite = bool(stats["params_finite"])
    return {
        "algo": algo,
        "preset": preset,
        "num_envs": num_envs,
        "batch_size": batch_size,
        "utd": cfg.utd,
        "compile_s": round(compile_s, 1),
        "timed_iterations": n,
        "env_steps_per_s": num_envs / per_iter,
        "updates_per_s": cfg.utd / per_iter,
        "finite": finite,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a CPU check")
    parser.add_argument("--env", default="mjx:CheetahRun")
    parser.add_argument("--algos", nargs="+", default=["rfm", "sac"])
    parser.add_argument("--presets", nargs="+", default=["fast", "reference"])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 64, 1024])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per configuration")
    parser.add_argument("--budget", type=float, default=420.0, help="skip configs after this")
    parser.add_argument("--out", default="gpu_fused.json")
    parser.add_argument(
        "--require-backend",
        default=None,
        help="exit at once unless JAX's default backend is this one (e.g. gpu)",
    )
    args = parser.parse_args(argv)
    if args.quick:  # compile-bound on a CPU: XLA's cheap pipeline, two configurations
        args.presets, args.num_envs, args.batch_size = ["fast"], [2], 8
        jax.config.update("jax_disable_most_optimizations", True)

    device = jax.devices()[0]
    name = getattr(device, "device_kind", str(device))
    print(f"device: {name} x {jax.device_count()} ({jax.default_backend()}), jax {jax.__version__}")
    if args.require_backend and jax.default_backend() != args.require_backend:
        print(f"expected backend {args.require_backend!r}, got {jax.default_backend()!r}")
        return 2
    configs = [
        (algo, preset, n) for preset in args.presets for n in args.num_envs for algo in args.algos
    ]
    rows, skipped, failed = [], [], []
    start = time.perf_counter()

    def write() -> dict:  # after every configuration, so a cut-off run keeps its rows
        out = {
            "device": name,
            "device_count": jax.device_count(),
            "backend": jax.default_backend(),
            "jax": jax.__version__,
            "env": args.env,
            "total_s": round(time.perf_counter() - start, 1),
            "rows": rows,
            "skipped": skipped,
            "failed": failed,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        tmp.replace(args.out)
        return out

    print(
        f"{'algo':5} {'preset':9} {'envs':>5} {'compile s':>9} {'env steps/s':>12} "
        f"{'updates/s':>10}",
        flush=True,
    )
    for algo, preset, n in configs:
        if time.perf_counter() - start > args.budget:
            skipped.append({"algo": algo, "preset": preset, "num_envs": n})
            print(f"{algo:5} {preset:9} {n:5d}   skipped (time budget)", flush=True)
            continue
        try:
            row = measure(algo, preset, n, args.env, args.seconds, args.batch_size, args.quick)
        except Exception as err:  # e.g. out of device memory: keep the other rows
            failed.append({"algo": algo, "preset": preset, "num_envs": n, "error": repr(err)})
            print(f"{algo:5} {preset:9} {n:5d}   failed: {err!r}"[:400], flush=True)
            write()
            continue
        rows.append(row)
        write()
        print(
            f"{algo:5} {preset:9} {n:5d} {row['compile_s']:9.1f} "
            f"{row['env_steps_per_s']:12.1f} {row['updates_per_s']:10.1f}",
            flush=True,
        )
    out = write()
    print(f"wrote {args.out} ({out['total_s']} s)")
    ok = all(r["finite"] and math.isfinite(r["env_steps_per_s"]) for r in rows)
    return 0 if ok and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
