"""GMM-40: the 40-mode 2-D Gaussian mixture of FAB and iDEM, and its W2 measurement.

The target exactly as the public code defines it: FAB's ``fab.target_distributions.gmm.GMM``
(lollcat/fab-torch) with iDEM's arguments (jarridrb/DEM, ``configs/energy/gmm.yaml``:
``dimensionality=2, n_mixes=40, loc_scaling=40, log_var_scaling=1.0``; ``GMM.__init__``
calls ``torch.manual_seed(0)`` first):

- means = (torch.rand((40, 2)) - 0.5) * 2 * 40, i.e. uniform in [-40, 40]^2, the first 80
  draws of torch's CPU generator after ``manual_seed(0)``;
- every component N(mean, diag(s^2)) with s = softplus(1.0) = log(1 + e) ~ 1.3133 (their
  ``scale_trils = diag_embed(softplus(log_var))``), equal weights.

The means are committed as data (``data/gmm40_means.csv``); :func:`fab_gmm40_means`
regenerates them without torch: torch's CPU ``rand`` for float32 is an MT19937 stream
seeded by ``init_genrand(seed)`` (numpy's legacy seeding of the same generator), each draw
the low 24 bits of one 32-bit output times 2^-24 (the test checks the CSV against it and the
first draws against torch's well-known ``manual_seed(0)`` values). FAB's ``log_prob`` also
sets values below -1e4 to -inf, which changes no sample; ``log_prob`` here is the exact
mixture density. iDEM trains in coordinates divided by ``data_normalization_factor = 50``
(``Target.data_scale``).

W2 as in Aggarwal et al., "Models trained with unnormalized density functions: a need for a
course correction" (ICLR 2025 blog post): the 2-Wasserstein distance between 1000 model
samples and 1000 exact samples, exact OT with POT (``ot.emd2``, uniform weights, squared
Euclidean cost, square root), mean ± std over 25 batches (:func:`w2_batches`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from pathlib import Path

import jax
import numpy as np

from revflow.toy import records

Array = jax.Array

NUM_MODES, LOC_SCALING, LOG_VAR_SCALING, SEED = 40, 40.0, 1.0, 0
COMPONENT_STD: float = math.log1p(math.exp(LOG_VAR_SCALING))  # softplus(1.0)
DEM_NORMALIZATION: float = 50.0

# Aggarwal et al. (ICLR 2025 blog post), GMM-40, W2 over 25 batches of 1000 samples.
PUBLISHED_W2: dict[str, tuple[float, float]] = {
    "exact samples vs ground truth": (4.159, 0.604),
    "iDEM": (7.698, 1.442),
    "iEFM": (7.364, 0.955),
    "MCMC": (4.219, 0.569),
}
PUBLISHED_SOURCE = (
    'Aggarwal et al., "Models trained with unnormalized density functions: a need for a '
    'course correction", ICLR 2025 blog post'
)


def torch_cpu_rand(seed: int, n: int) -> np.ndarray:
    """The first ``n`` float32 values of ``torch.manual_seed(seed); torch.rand(n)`` on CPU."""
    bits = np.random.MT19937(0)
    bits._legacy_seeding(seed)  # init_genrand(seed), as torch's CPU generator
    raw = bits.random_raw(n).astype(np.uint64)
    return ((raw & ((1 << 24) - 1)).astype(np.float64) * 2.0**-24).astype(np.float32)


def fab_gmm40_means() -> np.ndarray:
    """FAB's GMM means for iDEM's arguments, shape (40, 2), float32."""
    u = torch_cpu_rand(SEED, NUM_MODES * 2).reshape(NUM_MODES, 2)
    return ((u - np.float32(0.5)) * np.float32(2.0) * np.float32(LOC_SCALING)).astype(np.float32)


def gmm40_means() -> np.ndarray:
    """The committed means (``data/gmm40_means.csv``), shape (40, 2)."""
    text = resources.files("revflow.toy").joinpath("data/gmm40_means.csv").read_text()
    return np.loadtxt(text.splitlines(), delimiter=",", skiprows=1, dtype=np.float32)


def w2(x: np.ndarray, y: np.ndarray) -> float:
    """Exact 2-Wasserstein distance between two empirical measures (uniform weights)."""
    import ot

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    cost = ot.dist(x, y, metric="sqeuclidean")
    a, b = np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y))
    return float(math.sqrt(max(ot.emd2(a, b, cost, numItermax=1_000_000), 0.0)))


def w2_batches(
    sample_model, sample_exact, key: Array, n: int = 1000, batches: int = 25
) -> np.ndarray:
    """W2 of ``batches`` independent pairs (n model samples, n exact samples); the callables
    map (key, n) to (n, 2) arrays."""
    out = []
    for k in jax.random.split(key, batches):
        k_model, k_exact = jax.random.split(k)
        out.append(w2(np.asarray(sample_model(k_model, n)), np.asarray(sample_exact(k_exact, n))))
    return np.asarray(out)


# --------------------------------------------------------------------------------------------
# The GMM-40 comparison: python -m revflow.toy.gmm40 --out docs/toy_gmm40


@dataclasses.dataclass
class Gmm40Args:
    """Arguments of the GMM-40 comparison."""

    out: str = "out/toy_gmm40"
    methods: str = "fm-exact,rfm,rfm-optimal-shrunk,rfm-none,qne,idem"
    """comma-separated names of revflow.sampling.METHODS"""
    seeds: int = 3
    """seeds 0 .. seeds-1 per method"""
    steps: int = 2000
    num_reverse_samples: int = 64
    proposal: str = "broad"
    broad_std: float = 1.0
    """std of the broad proposal in the model's coordinates x / 50"""
    exact_only: bool = False
    """only measure exact samples vs exact samples (the check of the protocol)"""
    progress: bool = True


def _table(records: list[dict], exact: np.ndarray) -> str:
    lines = [
        "| sampler | W2 (mean ± std over 25 batches) | source |",
        "|---|---:|---|",
    ]
    for name, (mean, std) in PUBLISHED_W2.items():
        lines.append(f"| {name} | {mean:.3f} ± {std:.3f} | published ({PUBLISHED_SOURCE}) |")
    lines.append(
        f"| exact samples vs exact samples | {exact.mean():.3f} ± {exact.std():.3f} | "
        "revflow (this run) |"
    )
    methods = list(dict.fromkeys(r["method"] for r in records))
    for m in methods:
        rs = [r for r in records if r["method"] == m]
        means = np.array([r["w2_mean"] for r in rs])
        per_seed = ", ".join(f"{r['w2_mean']:.2f} ± {r['w2_std']:.2f}" for r in rs)
        lines.append(
            f"| revflow {m} | {means.mean():.3f} ± {means.std():.3f} over {len(rs)} seeds "
            f"(per seed: {per_seed}) | revflow (this run) |"
        )
    return "\n".join(lines) + "\n"


def _setup(args: Gmm40Args) -> dict:
    """What a recorded (method, seed) result depends on besides its method and seed."""
    keys = ("steps", "num_reverse_samples", "proposal", "broad_std")
    return {k: getattr(args, k) for k in keys}


def run_gmm40(args: Gmm40Args) -> dict:
    """Train each method on GMM-40 with each seed, measure W2 as the blog post does, and
    write results.json, results.md and samples.png under ``args.out``. Resumable: a (method,
    seed) recorded in ``records.jsonl`` with the same setup is not trained again."""
    import time

    from revflow.sampling import fit, get_method
    from revflow.toy.targets import get_target

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        get_method(m)
    if args.seeds < 1 or args.steps < 1:
        raise ValueError(f"need seeds >= 1 and steps >= 1, got {args.seeds}, {args.steps}")
    target = get_target("gmm40")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    setup = _setup(args)
    done = records.finished_records(out / "records.jsonl", ("method", "seed"))
    reused = {
        (m, seed): done[key]
        for m in methods
        for seed in range(args.seeds)
        if (key := records.run_key((m, seed), setup)) in done
    }
    records.rewrite(out / "records.jsonl", list(reused.values()))
    start = time.perf_counter()
    exact = w2_batches(target.sample, target.sample, jax.random.key(12345))
    print(f"exact vs exact: W2 {exact.mean():.3f} ± {exact.std():.3f} (25 batches of 1000)")
    results, shown, training = [], {}, {}
    for m in [] if args.exact_only else methods:
        spec = get_method(m)
        for seed in range(args.seeds):
            if (m, seed) in reused:  # finished by an earlier, interrupted invocation
                results.append(reused[(m, seed)])
                print(f"{m} seed {seed}: W2 {reused[(m, seed)]['w2_mean']:.3f} (recorded)")
                if seed == 0 and (out / f"samples_{m}.npy").exists():
                    shown[m] = np.load(out / f"samples_{m}.npy")
                continue
            key = jax.random.key(seed)
            k_fit, k_eval = jax.random.split(key)
            sampler = fit(
                target.log_prob,
                2,
                k_fit,
                method=m,
                steps=args.steps,
                progress=args.progress,
                exact_sampler=target.sample if spec.oracle else None,
                scale=DEM_NORMALIZATION,
                proposal=args.proposal,
                broad_std=args.broad_std,
                num_reverse_samples=args.num_reverse_samples,
            )
            training = dataclasses.asdict(sampler.config)
            vals = w2_batches(sampler.sample, target.sample, k_eval)
            rec = {
                "method": m,
                "seed": seed,
                "w2_mean": float(vals.mean()),
                "w2_std": float(vals.std()),
                "w2_batches": [float(v) for v in vals],
                "skipped_updates": sampler.skipped_updates,
                "train_time_s": round(sampler.train_time, 1),
                "setup": setup,
            }
            results.append(rec)
            records.append(out / "records.jsonl", rec)  # survives an interrupted run
            print(f"{m} seed {seed}: W2 {vals.mean():.3f} ± {vals.std():.3f}", flush=True)
            if seed == 0:
                shown[m] = np.asarray(sampler.sample(jax.random.key(99), 2000))
                np.save(out / f"samples_{m}.npy", shown[m])
    wall = time.perf_counter() - start
    summary = {
        "target": "gmm40 (FAB / iDEM)",
        "protocol": "W2 = sqrt(ot.emd2) on squared Euclidean cost, 1000 model vs 1000 exact "
        "samples, 25 batches",
        "published": {k: list(v) for k, v in PUBLISHED_W2.items()},
        "published_source": PUBLISHED_SOURCE,
        "exact_vs_exact": {"mean": float(exact.mean()), "std": float(exact.std())},
        "args": dataclasses.asdict(args),
        "training": training,  # the fit's TrainConfig ({} when nothing was trained)
        "wall_time_s": round(wall, 1),
        "results": results,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "results.md").write_text(
        "# GMM-40 (FAB / iDEM target): W2 between 1000 model and 1000 exact samples\n\n"
        f"Command: `python -m revflow.toy.gmm40 --out {args.out} --steps {args.steps} "
        f"--seeds {args.seeds} --methods {args.methods}`. Wall time {wall:.0f} s.\n\n"
        + _table(results, exact)
    )
    if shown:
        _figure(out / "samples.png", target, shown)
    return summary


def _figure(path: Path, target, shown: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("exact", np.asarray(target.sample(jax.random.key(7), 2000))), *shown.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8), squeeze=False)
    for ax, (name, x) in zip(axes[0], panels, strict=True):
        ax.scatter(x[:, 0], x[:, 1], s=1.0, alpha=0.5, lw=0, color="k" if name == "exact" else "C0")
        ax.scatter(*target.mode_centers.T, s=6, marker="x", color="C3", lw=0.6)
        ax.set_xlim(-target.extent, target.extent)
        ax.set_ylim(-target.extent, target.extent)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    import tyro

    run_gmm40(tyro.cli(Gmm40Args))
