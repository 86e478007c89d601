"""Size on disk of an exported policy (``revflow export``) per algorithm, preset and task.

The export holds the acting parameters (policy net, critic, counters), whose shapes depend
only on the architecture and the task's observation / action sizes, not on the length of
training; so each row exports a three-step run with two updates (so that every parameter,
biases included, is nonzero, as in any trained run: orbax's storage compresses zeros) and
measures it, next to that run's whole checkpoint for what it leaves out (target critic, Adam
moments; its replay buffer holds three transitions here, a real run's up to ``steps``).
Usage::

    python benchmarks/export_size.py --out docs/export_size.json \\
        [--algos rfm sac] [--presets reference fast] [--envs dmc:cartpole-swingup dmc:cheetah-run]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
from pathlib import Path

import jax

import revflow
from revflow.checkpoint import latest_step
from revflow.policy import exported_size


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(algo: str, preset: str, env: str, root: Path) -> dict:
    run = revflow.train(
        algo, env, preset, steps=3, warmup_steps=1, seed=0, run_dir=root, eval_every=0,
        checkpoint_every=0, progress=False, tensorboard=False, csv=False,
    )  # fmt: skip
    out = root / f"export_{algo}_{preset}_{env.replace(':', '_')}"
    run.export(out)
    policy = revflow.load_policy(out)
    leaves = jax.tree_util.tree_leaves(policy.params)
    checkpoint = run.path / "checkpoints" / str(latest_step(run.path))
    return {
        "algo": algo,
        "preset": preset,
        "env": env,
        "obs_dim": policy.obs_dim,
        "act_dim": policy.act_dim,
        "parameters": int(sum(math.prod(x.shape) for x in leaves)),
        "export_bytes": exported_size(out),
        "checkpoint_bytes": _bytes(checkpoint),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["rfm", "sac"])
    parser.add_argument("--presets", nargs="+", default=["reference", "fast"])
    parser.add_argument("--envs", nargs="+", default=["dmc:cartpole-swingup", "dmc:cheetah-run"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for env in args.envs:
            for algo in args.algos:
                for preset in args.presets:
                    row = measure(algo, preset, env, Path(tmp) / f"{algo}-{preset}")
                    print(
                        f"{algo:4s} {preset:9s} {env:22s} obs {row['obs_dim']:3d} act "
                        f"{row['act_dim']:2d}: {row['parameters']:,} parameters, export "
                        f"{row['export_bytes']:,} B (checkpoint {row['checkpoint_bytes']:,} B)"
                    )
                    rows.append(row)
    record = {
        "command": "python benchmarks/export_size.py "
        + " ".join(["--algos", *args.algos, "--presets", *args.presets, "--envs", *args.envs])
        + f" --out {args.out}",
        "machine": f"{platform.machine()}, {platform.system()}, jax {jax.__version__}",
        "revflow_version": revflow.__version__,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
