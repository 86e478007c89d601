"""The RL check of the shrunk control variate: paired by seed, task by task, with the rule
fixed in docs/estimators/README.md before the runs.

A run's final return is the mean of its last 3 evaluations (as the CPU-suite report). The two
members of a seed share the warm-up data and the initial networks, so the comparison is the
paired difference shrunk - optimal; the shrunk member "helps" on a task when the mean of the
paired differences exceeds twice their standard error (std / sqrt(n), ddof 1).

    python benchmarks/cv_check.py [benchmarks/results/cv_check]

Prints a markdown table (one row per task and seed, then the task's mean difference and its
standard error) and, last, the verdict.
"""

from __future__ import annotations

import sys

import numpy as np

from revflow.report import discover_runs, final_score, read_run_curve

BASE, CANDIDATE = "rfm.control_variate-optimal", "rfm.control_variate-optimal-shrunk"
WINDOW = 3


def main(root: str = "benchmarks/results/cv_check") -> int:
    scores: dict[tuple[str, str, int], tuple[float, list[float]]] = {}
    for path in discover_runs([root]):
        run, _ = read_run_curve(path)
        if run.complete:
            tail = [round(float(x), 1) for x in run.returns[-WINDOW:]]
            scores[(run.env, run.label, run.seed)] = (final_score(run, WINDOW), tail)
    envs = sorted({env for env, _, _ in scores})
    lines = [
        f"| task | seed | {BASE} | {CANDIDATE} | difference |",
        "|---|---|---|---|---|",
    ]
    helps = []
    for env in envs:
        seeds = sorted(s for e, label, s in scores if e == env and label == BASE)
        diffs = []
        for seed in seeds:
            if (env, CANDIDATE, seed) not in scores:
                continue
            (a, ta), (b, tb) = scores[(env, BASE, seed)], scores[(env, CANDIDATE, seed)]
            diffs.append(b - a)
            lines.append(f"| {env} | {seed} | {a:.1f} ({ta}) | {b:.1f} ({tb}) | {b - a:+.1f} |")
        d = np.asarray(diffs)
        se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("inf")
        mean = float(d.mean()) if d.size else float("nan")
        helps.append(d.size > 1 and mean > 2 * se)
        pairs = f"mean of {d.size} pair{'s' * (d.size != 1)}"
        lines.append(f"| {env} | {pairs} | | | {mean:+.1f} ± {se:.1f} (SE) |")
    print("\n".join(lines))
    verdict = "helps" if envs and all(helps) else "does not help"
    detail = ", ".join(f"{e}: {'yes' if h else 'no'}" for e, h in zip(envs, helps, strict=True))
    rule = "mean paired difference > 2 SE on every task"
    print(f"\nshrunk vs optimal ({rule}): {verdict} ({detail})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
