"""Learning curves and a final-return table from run directories (eval.csv of each run).

    python benchmarks/compare_runs.py RUN_DIR[=LABEL] ... --out docs/cartpole_swingup

Each RUN_DIR is a revflow run (``runs/<env>/<algo>/seed<N>``); runs are grouped by LABEL
(default: the algorithm in their config.json). Writes ``curves.png``, ``curves.csv``
(step, algo, seed, return) and ``summary.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def load(spec: str) -> tuple[str, str, int, np.ndarray, np.ndarray]:
    path, _, label = spec.partition("=")
    run_dir = Path(path)
    config = json.loads((run_dir / "config.json").read_text())
    train = config.get("train", config)
    rows = list(csv.DictReader((run_dir / "eval.csv").open()))
    if not rows:
        raise ValueError(f"{run_dir}/eval.csv has no evaluation rows")
    steps = np.array([int(r["step"]) for r in rows])
    returns = np.array([float(r["eval/return_mean"]) for r in rows])
    return label or train["algo"], train["env"], int(train["seed"]), steps, returns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="RUN_DIR or RUN_DIR=LABEL")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    groups: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = defaultdict(list)
    envs = set()
    for run in args.runs:
        label, env, seed, steps, returns = load(run)
        groups[label].append((seed, steps, returns))
        envs.add(env)
    fig, ax = plt.subplots(figsize=(6, 4))
    lines = [
        "| algorithm | seeds | final eval return (mean ± std over seeds) | best |",
        "|---|---|---|---|",
    ]
    with (args.out / "curves.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "algo", "seed", "eval_return_mean"])
        for label, runs in sorted(groups.items()):
            n = min(len(s) for _, s, _ in runs)
            steps = runs[0][1][:n]
            curves = np.stack([r[:n] for _, _, r in runs])
            mean = curves.mean(0)
            ax.plot(steps, mean, label=label)
            if len(runs) > 1:
                ax.fill_between(steps, curves.min(0), curves.max(0), alpha=0.2)
            for seed, s, r in runs:
                writer.writerows(
                    [[int(a), label, seed, float(b)] for a, b in zip(s, r, strict=True)]
                )
            final = curves[:, -1]
            lines.append(
                f"| {label} | {len(runs)} | {final.mean():.1f} ± {final.std():.1f} "
                f"(step {int(steps[-1])}) | {curves.max():.1f} |"
            )
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(", ".join(sorted(envs)))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=120)
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
