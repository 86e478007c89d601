"""Where each member of the estimator family wins (method note §4), measured.

RMSE of the posterior-mean estimate mu1_hat against the closed form, for a 2-D Gaussian
mixture target on the linear path, at K reverse samples, averaged over noisy points drawn
from the path marginal and over independent estimates. Writes a markdown table.

    python benchmarks/estimator_mse.py --num-samples 32 --out docs/estimator_mse.md
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from revflow import paths
from revflow.analytic import GaussianMixture
from revflow.estimators import estimate_posterior_mean

TARGET = GaussianMixture((0.3, 0.3, 0.4), ((-1.5, 0.0), (1.0, 1.0), (0.5, -1.5)), (0.3, 0.5, 0.4))
ESTIMATORS = ("none", "gradient", "0.5", "optimal", "optimal-isotropic")
LABELS = {
    "none": "noise (eta=0)",
    "gradient": "gradient (eta=1)",
    "0.5": "eta=0.5",
    "optimal": "optimal c*",
    "optimal-isotropic": "optimal iso",
}


@functools.partial(jax.jit, static_argnames=("path", "k", "cv"))
def _estimates(keys, x_t, t, path, k, cv):
    cv = float(cv) if cv[0].isdigit() else cv
    return jax.vmap(
        lambda kk, x: estimate_posterior_mean(kk, TARGET.log_prob, x, t, path, k, cv).x1
    )(keys, x_t)


def rmse_table(ts, k, points, reps, seed=0, path=None):
    path = paths.Linear() if path is None else path
    rng = np.random.default_rng(seed)
    rows = {}
    for t in ts:
        a, b = float(path.alpha(t)), float(path.beta(t))
        x1 = TARGET.sample(rng, points)
        x_t = a * x1 + b * rng.standard_normal(x1.shape)
        exact = np.stack([TARGET.posterior_mean(x, a, b) for x in x_t])
        x_rep = jnp.asarray(np.repeat(x_t, reps, axis=0), jnp.float32)
        keys = jax.random.split(jax.random.key(seed), points * reps)
        rows[t] = {}
        for cv in ESTIMATORS:
            est = np.asarray(_estimates(keys, x_rep, jnp.float32(t), path, k, cv), np.float64)
            err = np.sum((est - np.repeat(exact, reps, axis=0)) ** 2, axis=-1)
            rows[t][cv] = float(np.sqrt(np.mean(err)))
    return rows


def to_markdown(rows, k):
    head = "| t | " + " | ".join(LABELS[c] for c in ESTIMATORS) + " | best |"
    lines = [head, "|" + "---|" * (len(ESTIMATORS) + 2)]
    for t, r in rows.items():
        best = min(r, key=r.get)
        cells = [f"**{r[c]:.3g}**" if c == best else f"{r[c]:.3g}" for c in ESTIMATORS]
        lines.append(f"| {t:g} | " + " | ".join(cells) + f" | {LABELS[best]} |")
    return "\n".join(lines) + f"\n\nRMSE of mu1_hat vs the closed-form posterior mean, K = {k}.\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-samples", type=int, default=32)
    p.add_argument("--points", type=int, default=200)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    ts = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 0.98)
    start = time.time()
    rows = rmse_table(ts, args.num_samples, args.points, args.reps)
    md = to_markdown(rows, args.num_samples)
    md += (
        f"Target: 3-component 2-D Gaussian mixture, linear path, {args.points} noisy points x "
        f"{args.reps} estimates per t; {time.time() - start:.0f} s on {jax.devices()[0]}.\n"
    )
    print(md)
    if args.out:
        with open(args.out, "w") as f:
            f.write(md)


if __name__ == "__main__":
    main()
