"""Render the JSON files of ``revflow bench throughput --json`` as one markdown table.

    for algo in sac rfm rfm-diffusion qne dqs sdac qsm qvpo dpmd dacer dipo; do
      for preset in reference fast; do
        revflow bench throughput --algo $algo --preset $preset --env dmc:cheetah-run \\
            --json docs/throughput/$algo-$preset-cheetah-run.json
      done
    done
    python benchmarks/throughput_table.py docs/throughput/*.json

Rows follow the registry order given by ``--order`` (default: the README's agent table).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = (
    "rfm",
    "rfm-diffusion",
    "qne",
    "dqs",
    "sdac",
    "qsm",
    "qvpo",
    "dpmd",
    "dacer",
    "dipo",
    "sac",
)


def table(rows: list[dict], order: tuple[str, ...] = ORDER) -> str:
    rank = {name: i for i, name in enumerate(order)}
    rows = sorted(
        rows, key=lambda r: (rank.get(r["algo"], len(rank)), r["algo"], r["preset"] != "reference")
    )
    lines = [
        "| agent | preset | compile s | updates/s | env steps/s end-to-end | FLOP/update "
        "| GFLOP/s | fraction of matmul peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['algo']} | {r['preset']} | {r['compile_s']:.1f} | {r['updates_per_s']:.3g} "
            f"| **{r['env_steps_per_s']:.3g}** | {r['flops_per_update']:.2e} "
            f"| {r['achieved_gflops']:.0f} | {100 * r['fraction_of_peak']:.0f} % of "
            f"{r['matmul_peak_gflops']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    print(table([json.loads(f.read_text()) for f in args.files]))


if __name__ == "__main__":
    main()
