"""The 2-D Boltzmann sampling benchmark command (``revflow toy``; method note §6, last item).

Trains every requested method (:data:`revflow.toy.train.METHODS`) on every requested target
(:data:`revflow.toy.targets.TARGETS`) at one shared budget, scores the samples against exact
ground truth (:mod:`revflow.toy.metrics`), prints a table and writes to ``out``:

- ``results.json``: configuration, machine, wall time and one record per (target, method);
- ``results.md``: the same table in markdown;
- ``samples.png``: one row per target, columns = ground truth then each method, same axes.

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
from typing import Any

import jax
import numpy as np
from rich.console import Console
from rich.table import Table

from revflow.toy.metrics import MMD_BANDWIDTHS, MODE_MIN_FRACTION, SINKHORN_EPSILON
from revflow.toy.targets import TARGETS, get_target
from revflow.toy.train import METHODS, PROPOSALS, TrainConfig, TrainResult, get_method, train


@dataclasses.dataclass
class ToyArgs:
    """Arguments of ``revflow toy``. ``target`` and ``method`` take a name, a comma-separated
    list of names, or ``all``."""

    target: str = "all"
    """two-moons | ring | grid | all (or a comma-separated list)"""
    method: str = "all"
    """rfm | rfm-isotropic | rfm-none | rfm-gradient | qne | idem | all (or a list); the
    oracle reference fm-exact (flow matching on exact samples) only by name"""
    steps: int = 1000
    """gradient updates per method (the same for every method)"""
    batch: int = 256
    """noisy points per update"""
    num_reverse_samples: int = 64
    """K: reverse samples per noisy point for the posterior-mean estimate"""
    proposal: str = "model"
    """where the noisy points' x1 come from: model (own samples) | broad (N(0, 3^2 I))"""
    seed: int = 0
    out: str = "out/toy"
    """output directory for results.json, results.md and samples.png"""
    num_eval_samples: int = 2000
    """model and ground-truth samples used for the metrics and the figure"""
    hidden: int = 128
    """width of the velocity / denoiser network"""
    lr: float = 3e-4
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


def validate(args: ToyArgs) -> tuple[list[str], list[str], TrainConfig]:
    """Check every argument (before any compute) and return (targets, methods, config)."""
    targets = _names(args.target, TARGETS, "target")
    methods = _names(args.method, METHODS, "method")
    if args.method == "all":  # the oracle reference is asked for by name (train.py docstring)
        methods = [m for m in methods if not METHODS[m].oracle]
    if args.proposal not in PROPOSALS:
        raise ValueError(f"unknown proposal {args.proposal!r}; available: {', '.join(PROPOSALS)}")
    if args.num_reverse_samples < 1:
        raise ValueError(f"num_reverse_samples (K) must be >= 1, got {args.num_reverse_samples}")
    if args.steps < 1:
        raise ValueError(f"steps must be >= 1, got {args.steps}")
    if args.batch < 1:
        raise ValueError(f"batch must be >= 1, got {args.batch}")
    if args.num_eval_samples < 2:
        raise ValueError(f"num_eval_samples must be >= 2, got {args.num_eval_samples}")
    if args.hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {args.hidden}")
    if not args.lr > 0:
        raise ValueError(f"lr must be > 0, got {args.lr}")
    cfg = TrainConfig(
        steps=args.steps,
        batch=args.batch,
        num_reverse_samples=args.num_reverse_samples,
        proposal=args.proposal,
        hidden=args.hidden,
        lr=args.lr,
    )
    cfg.validate()
    return targets, methods, cfg


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, " + (
        f"jax {jax.__version__} on {jax.default_backend()}"
    )


def _record(r: TrainResult) -> dict[str, Any]:
    return {
        "target": r.target,
        "method": r.method,
        **r.metrics,
        "train_time_s": round(r.train_time, 2),
        "final_loss": float(np.mean(r.losses[-max(1, len(r.losses) // 20) :])),
    }


def _fmt(x: float, digits: int = 3) -> str:
    if not np.isfinite(x):
        return "inf"
    if abs(x) >= 1e4:
        return f"{x:.1e}"
    return f"{x:.{digits}g}" if abs(x) < 1e-2 else f"{x:.{digits}f}"


_COLUMNS = ("target", "method", "SW2", "MMD^2", "Sinkhorn", "modes", "train s")


def _row(rec: dict[str, Any]) -> list[str]:
    return [
        rec["target"],
        rec["method"],
        _fmt(rec["sw"]),
        _fmt(rec["mmd2"], 2),
        _fmt(rec["sinkhorn"]),
        f"{rec['modes']}/{rec['modes_total']}",
        f"{rec['train_time_s']:.1f}",
    ]


def _markdown(records: list[dict[str, Any]], header: dict[str, Any]) -> str:
    lines = [
        "# 2-D Boltzmann sampling benchmark",
        "",
        f"Machine: {header['machine']}. Wall time: {header['wall_time_s']:.0f} s "
        f"(all runs, compilation and evaluation included).",
        "",
        f"Budget per method: {header['config']['steps']} updates, batch "
        f"{header['config']['batch']}, K = {header['config']['num_reverse_samples']} reverse "
        f"samples per noisy point, proposal `{header['config']['proposal']}`, seed "
        f"{header['seed']}. Flow: linear path, {header['config']['flow_steps']} Euler steps. "
        f"Diffusion: VP-cosine path, eps-prediction, {header['config']['diffusion_steps']} "
        f"{header['config']['diffusion_sampler'].upper()} steps.",
        "",
        f"Metrics on {header['num_eval_samples']} model vs {header['num_eval_samples']} exact "
        "ground-truth samples (lower is better except modes): SW2 = sliced 2-Wasserstein "
        "(512 projections); MMD^2 unbiased, kernel = mean of RBFs with bandwidths "
        f"{list(MMD_BANDWIDTHS)}; Sinkhorn = debiased Sinkhorn divergence (ott-jax), squared "
        f"Euclidean cost, eps = {SINKHORN_EPSILON}; modes = modes holding >= "
        f"{MODE_MIN_FRACTION} x their fair share of samples within the mode radius.",
        "",
    ]
    oracles = sorted({r["method"] for r in records if METHODS[r["method"]].oracle})
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
    lines += ["| " + " | ".join(_row(rec)) + " |" for rec in records]
    return "\n".join(lines) + "\n"


def _figure(path: Path, targets: list[str], methods: list[str], truths, results) -> None:
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
        panels += [(m, results[(tname, m)].samples, results[(tname, m)].metrics) for m in methods]
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
                title = f"{title}\nMMD² {_fmt(met['mmd2'], 2)}, SW {_fmt(met['sw'], 2)}"
            ax.set_title(title, fontsize=7)
            if j == 0:
                ax.set_ylabel(tname, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def run_toy(args: ToyArgs) -> dict[str, Any]:
    """Train, score, print and save the benchmark (module docstring). Returns the JSON dict."""
    targets, methods, cfg = validate(args)
    console = Console()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    key = jax.random.key(args.seed)
    truths, results, records = {}, {}, []
    for ti, tname in enumerate(targets):
        target = get_target(tname)
        k_truth, k_run = jax.random.split(jax.random.fold_in(key, ti))
        truths[tname] = np.asarray(target.sample(k_truth, args.num_eval_samples))
        for method in methods:
            get_method(method)
            # Same key for every method on a target: same init seed, same metric projections.
            r = train(
                target,
                method,
                cfg,
                k_run,
                num_eval_samples=args.num_eval_samples,
                truth=truths[tname],
                progress=args.progress,
            )
            results[(tname, method)] = r
            rec = _record(r)
            records.append(rec)
            console.log(
                f"{tname} / {method}: SW {_fmt(rec['sw'])}, MMD^2 {_fmt(rec['mmd2'], 2)}, "
                f"Sinkhorn {_fmt(rec['sinkhorn'])}, modes {rec['modes']}/{rec['modes_total']}, "
                f"{rec['train_time_s']:.1f} s"
            )
    wall = time.perf_counter() - start

    header = {
        "machine": _machine(),
        "wall_time_s": round(wall, 1),
        "seed": args.seed,
        "num_eval_samples": args.num_eval_samples,
        "args": dataclasses.asdict(args),
        "config": dataclasses.asdict(cfg),
    }
    summary = {**header, "results": records}

    table = Table(title=f"2-D Boltzmann sampling benchmark ({wall:.0f} s, {header['machine']})")
    for col in _COLUMNS:
        table.add_column(
            col, justify="left" if col in ("target", "method") else "right", no_wrap=True
        )
    for rec in records:
        table.add_row(*_row(rec))
    console.print(table)

    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text(_markdown(records, header))
    _figure(out / "samples.png", targets, methods, truths, results)
    console.print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'samples.png'}")
    return summary
