"""Learning side by side, task by task: do revflow's and the authors' IQM intervals overlap?

    revflow report benchmarks/results/fidelity --finished-only --final-window 3 --out docs/fidelity
    python benchmarks/fidelity/overlap.py [docs/fidelity/final.csv]

Reads the report's ``final.csv`` (one row per task and label: the IQM of the seeds' final
returns and its 95 % stratified-bootstrap interval) and pairs each revflow label ``X`` with
the authors' ``X-authors`` on the same task. Prints a markdown table (task, agent, seeds on
each side, both IQMs with their intervals, whether the intervals overlap) and, last, one line
``intervals overlap on N of M (task, agent) pairs``. A pair with one seed on either side has
a degenerate interval (the point itself) and is listed as "one seed", not counted in M.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from revflow.report import OTHER_IMPLEMENTATION as SUFFIX


def _interval(row: dict[str, str]) -> tuple[float, float, float]:
    return float(row["iqm"]), float(row["iqm_lower"]), float(row["iqm_upper"])


def main(final_csv: str = "docs/fidelity/final.csv") -> int:
    path = Path(final_csv)
    if not path.is_file():
        print(f"error: {final_csv!r} is not a file (run `revflow report` first)", file=sys.stderr)
        return 2
    with path.open(newline="") as f:
        rows = {(r["env"], r["label"]): r for r in csv.DictReader(f)}
    lines = [
        "| task | agent | seeds (revflow / authors) | revflow IQM [95 % CI] "
        "| authors IQM [95 % CI] | intervals overlap |",
        "|---|---|---|---|---|---|",
    ]
    overlapping = compared = 0
    for env, label in sorted(rows):
        theirs = rows.get((env, label + SUFFIX))
        if label.endswith(SUFFIX) or theirs is None:
            continue
        ours = rows[(env, label)]
        (p, lo, hi), (q, qlo, qhi) = _interval(ours), _interval(theirs)
        n_ours, n_theirs = int(ours["n_seeds"]), int(theirs["n_seeds"])
        if min(n_ours, n_theirs) < 2:
            verdict = "one seed"
        else:
            compared += 1
            overlap = lo <= qhi and qlo <= hi
            overlapping += overlap
            verdict = "yes" if overlap else "**no**"
        lines.append(
            f"| {env} | {label} | {n_ours} / {n_theirs} | {p:.1f} [{lo:.1f}, {hi:.1f}] "
            f"| {q:.1f} [{qlo:.1f}, {qhi:.1f}] | {verdict} |"
        )
    print("\n".join(lines))
    print(f"\nintervals overlap on {overlapping} of {compared} (task, agent) pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
