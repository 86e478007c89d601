"""A B timing of one agent-config option: ``revflow bench throughput`` without it, then with it.

    python benchmarks/option_ab.py --algo rfm --presets reference fast \\
        --set critic_shared_state=true --rounds 3 --out docs/throughput/shared_state_ab.json

Each round runs the bench twice in fresh processes, first with the preset alone (A), then
with the preset and the ``--set`` overrides (B), so that machine noise hits both within a
minute of each other. It prints both sides' updates/s (the fused update call) and end-to-end
env steps/s, the per-round ratio B / A of each, FLOPs per update of both, and writes it all as
JSON. A ratio above 1 means the option is faster. Keep other jobs off the cores while it runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import machine, revflow_bench, summary, write_json


def ab(args: argparse.Namespace, preset: str, tmp: Path) -> dict:
    sides: dict[str, list[dict]] = {"without": [], "with": []}
    for r in range(args.rounds):
        for side, sets in (("without", ()), ("with", tuple(args.set))):
            row = revflow_bench(
                args.algo, preset, args.env, tmp,
                update_seconds=args.update_seconds, e2e_seconds=args.e2e_seconds,
                sets=sets, tag=f"-{side}-{r}",
            )  # fmt: skip
            sides[side].append(row)
        a, b = sides["without"][-1], sides["with"][-1]
        print(
            f"[{args.algo} {preset} round {r + 1}/{args.rounds}] updates/s "
            f"{a['updates_per_s']:.3g} -> {b['updates_per_s']:.3g} "
            f"(x{b['updates_per_s'] / a['updates_per_s']:.3f}); env steps/s "
            f"{a['env_steps_per_s']:.3g} -> {b['env_steps_per_s']:.3g} "
            f"(x{b['env_steps_per_s'] / a['env_steps_per_s']:.3f})",
            flush=True,
        )
    pairs = list(zip(sides["without"], sides["with"], strict=True))
    return {
        **sides,
        "updates_ratio": summary([b["updates_per_s"] / a["updates_per_s"] for a, b in pairs]),
        "env_steps_ratio": summary([b["env_steps_per_s"] / a["env_steps_per_s"] for a, b in pairs]),
        "flops_per_update": {
            "without": sides["without"][0]["flops_per_update"],
            "with": sides["with"][0]["flops_per_update"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", default="rfm")
    parser.add_argument("--presets", nargs="+", default=["reference"])
    parser.add_argument("--set", nargs="+", required=True, help="FIELD=VALUE overrides of B")
    parser.add_argument("--env", default="dmc:cheetah-run")
    parser.add_argument("--rounds", type=int, default=3, help="A B pairs per preset")
    parser.add_argument("--update-seconds", type=float, default=8.0)
    parser.add_argument("--e2e-seconds", type=float, default=15.0)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        print(f"error: --rounds {args.rounds} must be >= 1", file=sys.stderr)
        return 2
    bad = [s for s in args.set if "=" not in s]
    if bad:
        print(f"error: --set {bad[0]!r} is not FIELD=VALUE", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        results = {p: ab(args, p, Path(tmp)) for p in args.presets}
    for p, res in results.items():
        print(
            f"{args.algo} {p} with {' '.join(args.set)}: updates/s x"
            f"{res['updates_ratio']['median']:.3f} (median of {args.rounds}), env steps/s x"
            f"{res['env_steps_ratio']['median']:.3f}, FLOP/update "
            f"{res['flops_per_update']['without']:.3e} -> {res['flops_per_update']['with']:.3e}"
        )
    if args.out:
        out = {"algo": args.algo, "env": args.env, "set": args.set, "machine": machine()}
        write_json(args.out, {**out, "presets": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
