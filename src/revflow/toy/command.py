"""The 2-D Boltzmann sampling benchmark command (``revflow toy``; method note §6, last item).

Trains every requested method (:data:`revflow.sampling.METHODS`) on every requested target
(:data:`revflow.toy.targets.TARGETS`) at one shared budget (or at each of ``--budgets``),
for ``--seeds`` seeds, scores the samples against exact ground truth
(:mod:`revflow.toy.metrics`), prints a table and writes to ``out``:

- ``results.json``: configuration, machine, wall time, one record per (target, method,
  updates, seed), and the table;
- ``results.md``: the table in markdown (mean ± std over seeds; an ``exact`` row per target
  scores independent exact samples, the floor of each metric);
- ``samples.png``: one row per target, columns = ground truth then each method (first seed,
  largest budget), same axes;
- ``records.jsonl``: one line per finished run, written as it finishes, and
  ``samples_<target>_<method>.npy``: the figure's samples. An interrupted invocation, run
  again with the same ``--out``, trains only the runs not recorded there with the same setup
  (:mod:`revflow.toy.records`).

The default (``revflow toy``) is fm-exact and rfm on the three toys, 1000 updates, one seed;
``revflow toy --all`` is every method on every toy, 3 seeds.

Usage::

    from revflow.toy.command import ToyArgs, run_toy
    run_toy(ToyArgs(target="two-moons", method="rfm,qne"))
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from rich.console import Console
from rich.table import Table

from revflow.sampling.api import make_config
from revflow.toy import records
from revflow.toy.metrics import MMD_BANDWIDTHS, MODE_MIN_FRACTION, SINKHORN_EPSILON, all_metrics
from revflow.toy.targets import TARGETS, TOY_TARGETS, get_target
from revflow.toy.train import METHODS, TrainConfig, TrainResult, train

_DEFAULT = TrainConfig()
#: The arguments of ``revflow toy`` that are options of the sampler's TrainConfig.
SAMPLER_OPTIONS: tuple[str, ...] = (
    "batch", "num_reverse_samples", "proposal", "reference", "hidden", "lr"
)  # fmt: skip
DEFAULT_TARGETS = "two-moons,ring,grid"
DEFAULT_METHODS = "fm-exact,rfm"
DEFAULT_STEPS = 1000  # the default run stays within minutes on 2 CPU cores


@dataclasses.dataclass
class ToyArgs:
    """Arguments of ``revflow toy``. ``target`` and ``method`` take a name, a comma-separated
    list of names, or ``all``; ``--all`` is the full grid (every toy target, every method
    with the oracle, 3 seeds)."""

    target: str = DEFAULT_TARGETS
    """two-moons | ring | grid | gmm40 | all (the three 2-D toys) or a comma-separated list"""
    method: str = DEFAULT_METHODS
    """any of revflow.sampling.METHODS, all (every method but the oracle fm-exact), or a list"""
    all: bool = False
    """the full grid: every toy target, every method and fm-exact, 3 seeds"""
    seeds: int = 1
    """seeds per (target, method): seed, seed + 1, ...; tables give mean ± std over them"""
    steps: int = DEFAULT_STEPS
    """gradient updates per method (the same for every method)"""
    budgets: str = ""
    """comma-separated update counts (e.g. 500,1000,2000): run each at every budget"""
    batch: int = _DEFAULT.batch
    """noisy points per update"""
    num_reverse_samples: int = _DEFAULT.num_reverse_samples
    """K: reverse samples per noisy point for the posterior-mean estimate"""
    proposal: str = _DEFAULT.proposal
    """where the noisy points' x1 come from: model (own samples) | broad (N(0, 3^2 I))"""
    reference: str = _DEFAULT.reference
    """where the reverse samples come from: none (the reverse kernel) | adaptive (the kernel
    times an adaptive Gaussian reference of the target) | auto (adaptive except for qne and
    idem; revflow.sampling.TrainConfig)"""
    seed: int = 0
    out: str = "out/toy"
    """output directory for results.json, results.md and samples.png"""
    num_eval_samples: int = 2000
    """model and ground-truth samples used for the metrics and the figure"""
    hidden: int = _DEFAULT.hidden
    """width of the velocity / denoiser network"""
    lr: float = _DEFAULT.lr
    """peak learning rate (warm-up, then cosine decay)"""
    progress: bool = True
    """show a progress bar"""


def _names(value: str, registry: dict[str, Any], what: str) -> list[str]:
    if value == "all":
        return list(registry)
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise ValueError(f"no {what} given; available: {', '.join(registry)}, all")
    for name in names:
        if name not in registry:
            raise ValueError(f"unknown {what} {name!r}; available: {', '.join(registry)}, all")
    return list(dict.fromkeys(names))


def validate(args: ToyArgs) -> tuple[list[str], list[str], list[TrainConfig]]:
    """Check every argument (before any compute); return (targets, methods, one config per
    budget)."""
    toy = {name: TARGETS[name] for name in TOY_TARGETS}
    target_arg, method_arg = ("all", "all") if args.all else (args.target, args.method)
    targets = _names(target_arg, toy, "target") if target_arg == "all" else None
    if targets is None:
        targets = _names(target_arg, TARGETS, "target")
    methods = _names(method_arg, METHODS, "method")
    if method_arg == "all" and not args.all:  # the oracle reference is asked for by name
        methods = [m for m in methods if not METHODS[m].oracle]
    if args.all:  # the oracle first: it is the reference of every row after it
        methods = sorted(methods, key=lambda m: not METHODS[m].oracle)
    if args.seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {args.seeds}")
    if args.steps < 1:
        raise ValueError(f"steps must be >= 1, got {args.steps}")
    try:
        budgets = [int(b) for b in args.budgets.split(",") if b.strip()] or [args.steps]
    except ValueError:
        message = f"budgets must be comma-separated integers, got {args.budgets!r}"
        raise ValueError(message) from None
    if min(budgets) < 1:
        raise ValueError(f"budgets must be >= 1, got {args.budgets!r}")
    if args.num_eval_samples < 2:
        raise ValueError(f"num_eval_samples must be >= 2, got {args.num_eval_samples}")
    # The sampler's options are checked by its TrainConfig (on construction).
    options = {name: getattr(args, name) for name in SAMPLER_OPTIONS}
    return targets, methods, [make_config(steps, options) for steps in dict.fromkeys(budgets)]


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, " + (
        f"jax {jax.__version__} on {jax.default_backend()}"
    )


def _record(r: TrainResult, steps: int, seed: int) -> dict[str, Any]:
    return {
        "target": r.target,
        "method": r.method,
        "steps": steps,
        "seed": seed,
        **r.metrics,
        "skipped_updates": r.skipped_updates,
        "train_time_s": round(r.train_time, 2),
        "final_loss": float(np.nanmean(r.losses[-max(1, len(r.losses) // 20) :])),
    }


def _fmt(x: float, digits: int = 3) -> str:
    if not np.isfinite(x):
        return "inf"
    if abs(x) >= 1e4:
        return f"{x:.1e}"
    return f"{x:.{digits}g}" if abs(x) < 1e-2 else f"{x:.{digits}f}"


def _mean_std(values: list[float], digits: int = 3) -> str:
    v = np.asarray(values, dtype=float)
    if len(v) == 1 or not np.all(np.isfinite(v)):
        return _fmt(float(np.mean(v)), digits)
    return f"{_fmt(float(v.mean()), digits)} ± {_fmt(float(v.std()), 2)}"


_COLUMNS = ("target", "method", "updates", "SW2", "MMD^2", "Sinkhorn", "modes", "train s")


def aggregate(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (target, method, updates): metrics as mean ± std over seeds (population
    std), modes per seed, mean train time."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rec in recs:
        groups.setdefault((rec["target"], rec["method"], rec["steps"]), []).append(rec)
    rows = []
    for (target, method, steps), recs in groups.items():
        rows.append(
            {
                "target": target,
                "method": method,
                "steps": steps,
                "seeds": len(recs),
                **{k: [r[k] for r in recs] for k in ("sw", "mmd2", "sinkhorn", "modes")},
                "modes_total": recs[0]["modes_total"],
                "train_time_s": float(np.mean([r["train_time_s"] for r in recs])),
            }
        )
    return rows


def _row(agg: dict[str, Any]) -> list[str]:
    modes = ", ".join(str(m) for m in agg["modes"])
    return [
        agg["target"],
        agg["method"],
        str(agg["steps"]) if agg["steps"] else "-",
        _mean_std(agg["sw"]),
        _mean_std(agg["mmd2"], 2),
        _mean_std(agg["sinkhorn"]),
        f"{modes} / {agg['modes_total']}",
        f"{agg['train_time_s']:.1f}" if agg["steps"] else "-",
    ]


def _markdown(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    cfg = header["config"]
    lines = [
        "# 2-D Boltzmann sampling benchmark",
        "",
        f"Command: `{header['command']}`",
        "",
        f"Machine: {header['machine']}. Wall time: {header['wall_time_s']:.0f} s "
        f"(all runs, compilation and evaluation included).",
        "",
        f"Budget per method: the updates in the table, batch {cfg['batch']}, K = "
        f"{cfg['num_reverse_samples']} reverse samples per noisy point, proposal "
        f"`{cfg['proposal']}`, reference `{cfg.get('reference', 'none')}`; Adam, peak lr "
        f"{cfg['lr']} (warm-up {cfg['warmup']} updates, "
        f"cosine decay to {cfg['lr_final']} x), gradient-norm clip {cfg['grad_clip']}, "
        f"network {cfg['num_blocks']} residual blocks of width {cfg['hidden']}, samples from "
        f"an EMA (decay {cfg['ema']}) of the parameters. Flow: linear path, "
        f"{cfg['flow_steps']} Euler steps. Diffusion: {cfg['diffusion_steps']} "
        f"{cfg['diffusion_sampler'].upper()} steps (qne: VP cosine; idem: VE geometric, in "
        "coordinates normalised by the plot half-width). Seeds: "
        f"{header['seeds']}; metrics are mean ± std over seeds, modes per seed.",
        "",
        f"Metrics on {header['num_eval_samples']} model vs {header['num_eval_samples']} exact "
        "ground-truth samples (lower is better except modes): SW2 = sliced 2-Wasserstein "
        "(512 projections); MMD^2 unbiased, kernel = mean of RBFs with bandwidths "
        f"{list(MMD_BANDWIDTHS)}; Sinkhorn = debiased Sinkhorn divergence (ott-jax), squared "
        f"Euclidean cost, eps = {SINKHORN_EPSILON}; modes = modes holding >= "
        f"{MODE_MIN_FRACTION} x their fair share of samples within the mode radius. The "
        "`exact` rows score a second, independent set of exact samples: the floor of each "
        "metric at this sample size.",
        "",
    ]
    oracles = sorted({r["method"] for r in rows if getattr(METHODS.get(r["method"]), "oracle", 0)})
    if oracles:
        lines += [
            f"{', '.join(oracles)}: the oracle reference, flow matching on exact target "
            "samples (no posterior estimate, so K and the proposal do not apply); RL never has "
            "such samples.",
            "",
        ]
    lines += [
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "|".join("---" for _ in _COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(_row(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _figure(path: Path, targets: list[str], methods: list[str], truths, shown) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = 1 + len(methods)
    fig, axes = plt.subplots(
        len(targets), ncol, figsize=(2.2 * ncol, 2.3 * len(targets)), squeeze=False
    )
    for i, tname in enumerate(targets):
        lim = TARGETS[tname].extent
        panels = [("ground truth", truths[tname], None)]
        panels += [(m, shown[(tname, m)].samples, shown[(tname, m)].metrics) for m in methods]
        for j, (title, pts, met) in enumerate(panels):
            ax = axes[i, j]
            pts = np.asarray(pts)
            ax.scatter(pts[:, 0], pts[:, 1], s=1.0, alpha=0.5, lw=0, color="C0" if j else "k")
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if met is not None:
                title = (
                    f"{title}\nMMD² {_fmt(met['mmd2'], 2)}, modes "
                    f"{met['modes']}/{met['modes_total']}"
                )
            ax.set_title(title, fontsize=7)
            if j == 0:
                ax.set_ylabel(tname, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _command_line(args: ToyArgs) -> str:
    default = ToyArgs()
    parts = ["revflow toy"]
    for field in dataclasses.fields(ToyArgs):
        value = getattr(args, field.name)
        if value == getattr(default, field.name) or field.name == "progress":
            continue
        flag = "--" + field.name.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


@dataclasses.dataclass
class _Shown:
    """What the figure needs of a run: its samples and its metrics."""

    samples: np.ndarray
    metrics: dict[str, Any]


def _setup(args: ToyArgs, cfg: TrainConfig) -> dict[str, Any]:
    """What a recorded (target, method, updates, seed) result depends on besides those four:
    the training configuration, the evaluation sample size and the ground-truth seed."""
    return {
        "config": dataclasses.asdict(cfg),
        "num_eval_samples": args.num_eval_samples,
        "truth_seed": args.seed,
    }


class _Planned(NamedTuple):
    """One run of an invocation: what names it, its setup, and whether the figure shows it."""

    target: str
    method: str
    cfg: TrainConfig
    seed: int
    setup: dict[str, Any]
    shows: bool

    @property
    def key(self) -> tuple:
        return records.run_key((self.target, self.method, self.cfg.steps, self.seed), self.setup)


def _samples_file(out: Path, target: str, method: str) -> Path:
    return out / f"samples_{target}_{method}.npy"


def run_toy(args: ToyArgs) -> dict[str, Any]:
    """Train, score, print and save the benchmark (module docstring). Returns the JSON dict.

    Resumable (:mod:`revflow.toy.records`): a run recorded in ``out/records.jsonl`` with the
    same setup is not trained again."""
    targets, methods, configs = validate(args)
    seeds = [args.seed + i for i in range(3 if args.all and args.seeds == 1 else args.seeds)]
    console = Console()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # Every run of this invocation, in order; the figure shows the first seed at the largest
    # budget of each (target, method).
    plan = [
        _Planned(
            tname, method, cfg, seed, _setup(args, cfg), seed == seeds[0] and cfg is configs[-1]
        )
        for tname in targets
        for method in methods
        for cfg in configs
        for seed in seeds
    ]
    path = out / "records.jsonl"
    done = records.finished_records(path, ("target", "method", "steps", "seed"))
    reused = {  # the runs an earlier invocation finished (with the figure's samples saved)
        p.key: done[p.key]
        for p in plan
        if p.key in done and (not p.shows or _samples_file(out, p.target, p.method).exists())
    }
    records.rewrite(path, list(reused.values()))
    start = time.perf_counter()
    truths, shown, results, floors = {}, {}, [], []
    for ti, tname in enumerate(targets):
        target = get_target(tname)
        k_truth, k_floor = jax.random.split(jax.random.fold_in(jax.random.key(args.seed), ti))
        truths[tname] = np.asarray(target.sample(k_truth, args.num_eval_samples))
        floor = all_metrics(
            jax.random.fold_in(k_floor, 1),
            np.asarray(target.sample(k_floor, args.num_eval_samples)),
            truths[tname],
            target,
        )
        floors.append(
            {"target": tname, "method": "exact", "steps": 0, "seed": args.seed, **floor}
            | {"train_time_s": 0.0}
        )
        for p in plan:
            if p.target != tname:
                continue
            method, cfg, seed = p.method, p.cfg, p.seed
            samples_file = _samples_file(out, tname, method)
            rec = reused.get(p.key)
            if rec is not None:  # finished by an earlier, interrupted invocation
                results.append(rec)
                if p.shows:
                    shown[(tname, method)] = _Shown(np.load(samples_file), rec)
                console.log(
                    f"{tname} / {method} / {cfg.steps} updates / seed {seed}: "
                    f"MMD^2 {_fmt(rec['mmd2'], 2)} (recorded)"
                )
                continue
            # Same key for every method on a target and seed: same init seed, same
            # metric projections.
            k_run = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), ti), 7)
            r = train(
                target,
                method,
                cfg,
                k_run,
                num_eval_samples=args.num_eval_samples,
                truth=truths[tname],
                progress=args.progress,
            )
            rec = _record(r, cfg.steps, seed) | {"setup": p.setup}
            results.append(rec)
            if p.shows:
                np.save(samples_file, np.asarray(r.samples))
                shown[(tname, method)] = _Shown(np.asarray(r.samples), r.metrics)
            records.append(path, rec)  # survives an interrupted run
            console.log(
                f"{tname} / {method} / {cfg.steps} updates / seed {seed}: "
                f"SW {_fmt(rec['sw'])}, MMD^2 {_fmt(rec['mmd2'], 2)}, Sinkhorn "
                f"{_fmt(rec['sinkhorn'])}, modes {rec['modes']}/{rec['modes_total']}, "
                f"{rec['train_time_s']:.1f} s"
            )
    wall = time.perf_counter() - start

    header = {
        "command": _command_line(args),
        "machine": _machine(),
        "wall_time_s": round(wall, 1),
        "seeds": seeds,
        "num_eval_samples": args.num_eval_samples,
        "args": dataclasses.asdict(args),
        "config": dataclasses.asdict(configs[-1]),
        "budgets": [c.steps for c in configs],
    }
    rows = []
    for tname in targets:
        rows += aggregate([f for f in floors if f["target"] == tname])
        rows += aggregate([r for r in results if r["target"] == tname])
    summary = {**header, "exact_floor": floors, "results": results, "table": rows}

    table = Table(title=f"2-D Boltzmann sampling benchmark ({wall:.0f} s, {header['machine']})")
    for col in _COLUMNS:
        table.add_column(
            col, justify="left" if col in ("target", "method") else "right", no_wrap=True
        )
    for row in rows:
        table.add_row(*_row(row))
    console.print(table)

    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text(_markdown(rows, header))
    _figure(out / "samples.png", targets, methods, truths, shown)
    console.print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'samples.png'}")
    return summary


def table_from_records(paths: list[str]) -> str:
    """The markdown table (mean ± std over seeds) of the records in ``records.jsonl`` files,
    e.g. of runs stopped before they wrote ``results.md``."""
    recs = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines()]
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "|".join("---" for _ in _COLUMNS) + "|"]
    lines += ["| " + " | ".join(_row(row)) + " |" for row in aggregate(recs)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m revflow.toy.command RECORDS.jsonl ... > table.md
    import sys

    print(table_from_records(sys.argv[1:]), end="")
