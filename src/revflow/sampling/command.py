"""``revflow sample``: fit a sampler to a density given as ``MODULE:FUNCTION``.

::

    revflow sample --target mypkg.densities:banana --dim 2 --steps 2000 --out out/banana

``FUNCTION`` maps one point of shape (dim,) to a scalar unnormalised log density (jax). The
command checks every argument and the density (:func:`revflow.sampling.api.check_log_density`)
before training, then writes to ``out``: ``samples.npy`` (``--num-samples`` x dim),
``corner.png`` (a corner plot: histograms on the diagonal, pairwise scatter below it; at
most 6 coordinates), ``sampler/`` (the saved sampler, :func:`revflow.sampling.load`) and
``summary.json`` (arguments, training time, skipped updates).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from revflow.sampling.api import check_log_density, fit, make_config
from revflow.sampling.methods import METHODS, TrainConfig, get_method

MAX_CORNER_DIMS = 6


@dataclasses.dataclass
class SampleArgs:
    """Arguments of ``revflow sample``."""

    target: str
    """the log density as MODULE:FUNCTION (FUNCTION: one point (dim,) -> scalar, jax)"""
    dim: int
    """dimension of the points"""
    steps: int = 2000
    """gradient updates"""
    out: str = "out/sample"
    """output directory (samples.npy, corner.png, sampler/, summary.json)"""
    method: str = "rfm"
    """one of revflow.sampling.METHODS (fm-exact needs exact samples: not here)"""
    num_samples: int = 10000
    """samples written to samples.npy"""
    seed: int = 0
    lr: float = 2e-3
    hidden: int = TrainConfig.hidden
    num_reverse_samples: int = TrainConfig.num_reverse_samples
    """K: reverse samples per noisy point"""
    scale: float = TrainConfig.scale
    """the model works in x / scale (about [-1, 1] suits the idem method)"""
    reference: str = TrainConfig.reference
    """reverse samples from the kernel alone (none) or times an adaptive Gaussian reference
    of the density (adaptive; needed in 10-D); auto: adaptive except for qne and idem"""
    progress: bool = True


def load_target(spec: str) -> Callable[[Any], Any]:
    """The function named by ``MODULE:FUNCTION`` (ValueError naming what is missing)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--target must be MODULE:FUNCTION, got {spec!r}")
    if "" not in sys.path:  # let a module in the working directory be found
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r} of --target: {err}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise ValueError(f"--target {spec!r} is not callable")
    return fn


def corner_plot(path: Path, x: np.ndarray, max_dims: int = MAX_CORNER_DIMS) -> None:
    """Histograms of each coordinate on the diagonal, pairwise scatter plots below it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = min(x.shape[1], max_dims)
    fig, axes = plt.subplots(d, d, figsize=(1.9 * d + 0.6, 1.9 * d + 0.6), squeeze=False)
    lo, hi = np.percentile(x[:, :d], 0.5, axis=0), np.percentile(x[:, :d], 99.5, axis=0)
    pad = 0.05 * (hi - lo + 1e-9)
    lo, hi = lo - pad, hi + pad
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            if i == j:
                ax.hist(x[:, i], bins=60, range=(lo[i], hi[i]), color="C0")
                ax.set_yticks([])
            else:
                ax.scatter(x[:, j], x[:, i], s=0.5, alpha=0.3, lw=0, color="C0")
                ax.set_xlim(lo[j], hi[j])
                ax.set_ylim(lo[i], hi[i])
            if i == d - 1:
                ax.set_xlabel(f"x{j}", fontsize=8)
            if j == 0 and i > 0:
                ax.set_ylabel(f"x{i}", fontsize=8)
            ax.tick_params(labelsize=6)
    title = f"{x.shape[0]} samples" + (
        f" (first {d} of {x.shape[1]} dims)" if d < x.shape[1] else ""
    )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: The arguments of ``revflow sample`` that are options of the sampler's ``TrainConfig``.
SAMPLER_OPTIONS: tuple[str, ...] = ("lr", "hidden", "num_reverse_samples", "scale", "reference")


def sampler_options(args: SampleArgs) -> dict[str, Any]:
    """The :data:`SAMPLER_OPTIONS` of ``args``, as keywords of :func:`fit`."""
    return {name: getattr(args, name) for name in SAMPLER_OPTIONS}


def validate(args: SampleArgs) -> Callable[[Any], Any]:
    """Check every argument and the density (before any training); return the density."""
    if isinstance(args.dim, bool) or args.dim < 1:
        raise ValueError(f"--dim must be >= 1, got {args.dim}")
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
    spec = get_method(args.method)
    if spec.oracle:
        raise ValueError(
            f"method {args.method!r} trains on exact samples, which a density alone does not "
            f"give; use one of {', '.join(m for m in METHODS if not METHODS[m].oracle)}"
        )
    make_config(args.steps, sampler_options(args))
    fn = load_target(args.target)
    check_log_density(fn, args.dim, args.scale)
    return fn


def run_sample(args: SampleArgs) -> dict[str, Any]:
    """Fit, sample and write the outputs (module docstring). Returns the summary dict."""
    fn = validate(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    k_fit, k_sample = jax.random.split(jax.random.key(args.seed))
    run = {"method": args.method, "steps": args.steps, "progress": args.progress}
    sampler = fit(fn, args.dim, k_fit, **run, **sampler_options(args))
    x = np.asarray(sampler.sample(k_sample, args.num_samples))
    np.save(out / "samples.npy", x)
    corner_plot(out / "corner.png", x)
    sampler.save(out / "sampler")
    summary = {
        "args": dataclasses.asdict(args),
        "train_time_s": round(sampler.train_time, 2),
        "skipped_updates": sampler.skipped_updates,
        "finite_samples": bool(np.all(np.isfinite(x))),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"wrote {out / 'samples.npy'} ({x.shape[0]} x {x.shape[1]}), {out / 'corner.png'}, "
        f"{out / 'sampler'}; {sampler.train_time:.0f} s, "
        f"{sampler.skipped_updates} updates skipped (non-finite)"
    )
    return summary
