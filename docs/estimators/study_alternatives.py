"""The coefficient rules tried before choosing "optimal-shrunk" (a study record, not library code).

Each rule maps the K weighted reverse samples of one noisy point to a control-variate
coefficient c; the estimate is sum_i w_i (x1_i + c s_i) exactly as in revflow.estimators.
Prints, per target, path and K, the MSE of each rule divided by the MSE of the better
endpoint (noise c = 0 or score eta = 1) at each t, on the same points and reverse samples.

    python docs/estimators/study_alternatives.py > docs/estimators/study_alternatives.txt
"""

from __future__ import annotations

import functools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from revflow import paths
from revflow.analytic import GaussianMixture
from revflow.estimators import estimate_posterior_mean, snis_weights

MIX3 = GaussianMixture((0.3, 0.3, 0.4), ((-1.5, 0.0), (1.0, 1.0), (0.5, -1.5)), (0.3, 0.5, 0.4))
_ANG = 2 * np.pi * np.arange(8) / 8
RING8 = GaussianMixture((1.0,) * 8, tuple((3 * np.cos(a), 3 * np.sin(a)) for a in _ANG), (0.3,) * 8)
TS = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 0.98)
RULES = {
    "optimal": "per-dimension c* (library member)",
    "optimal-isotropic": "isotropic c* (library member)",
    "ess-shrink": "per-dimension c* x clip(1 - 2/ESS, 0, 1)",
    "wiener-iso": "isotropic c* x c^2/(c^2 + sandwich var(c))",
    "crossfit": "per-dimension c* fitted on the other half of the samples",
    "crossfit-iso": "isotropic c* fitted on the other half of the samples",
    "js-dim": "per-dimension c* x max(0, 1 - 4/t_j^2)",
    "js-iso-1": "isotropic c* x max(0, 1 - 1/t^2)",
    "hybrid": "shrunk isotropic c* + per-dimension deviation shrunk by its own t-test",
    "optimal-shrunk": "isotropic c* x max(0, 1 - 4/t^2) (library member)",
}


def _moments(w, x1, s):
    w2 = (w * w)[:, None]
    dx = x1 - jnp.sum(w[:, None] * x1, 0)
    ds = s - jnp.sum(w[:, None] * s, 0)
    return dx, ds, jnp.sum(w2 * dx * ds, 0), jnp.sum(w2 * ds * ds, 0), jnp.sum(w2 * dx * dx, 0)


def _js(cov, var, vx, n, kappa):
    rho2 = jnp.clip(cov**2 / (var * vx + 1e-30), 0, 1)
    t2 = rho2 * jnp.maximum(n - 2, 0) / jnp.maximum(1 - rho2, 1e-12)
    return jnp.clip(1 - kappa / jnp.maximum(t2, 1e-30), 0, 1)


def _coefficient(rule, logp, w, x1, s, ridge=1e-4, clip=2.0):
    d = x1.shape[-1]
    dx, ds, cov, var, vx = _moments(w, x1, s)
    ess = 1 / jnp.sum(w * w)
    cstar = jnp.clip(-cov / (var + ridge), -clip, clip)
    ciso = jnp.clip(-jnp.sum(cov) / (jnp.sum(var) + ridge), -clip, clip) * jnp.ones(d)
    if rule == "ess-shrink":
        return cstar * jnp.clip(1 - 2 / ess, 0, 1)
    if rule == "wiener-iso":
        e = dx + ciso * ds
        vc = jnp.sum((w**4)[:, None] * ds**2 * e**2) / (jnp.sum(var) + ridge) ** 2
        return ciso * ciso**2 / (ciso**2 + vc + 1e-30)
    if rule.startswith("crossfit"):
        h = x1.shape[0] // 2

        def fit(lp, xx, ss):
            _, _, cv, vr, _ = _moments(snis_weights(lp), xx, ss)
            if rule == "crossfit-iso":
                return jnp.clip(-jnp.sum(cv) / (jnp.sum(vr) + ridge), -clip, clip) * jnp.ones(d)
            return jnp.clip(-cv / (vr + ridge), -clip, clip)

        c_a, c_b = fit(logp[:h], x1[:h], s[:h]), fit(logp[h:], x1[h:], s[h:])
        return jnp.concatenate(
            [jnp.broadcast_to(c_b, (h, d)), jnp.broadcast_to(c_a, (x1.shape[0] - h, d))]
        )
    if rule == "js-dim":
        return cstar * _js(cov, var, vx, ess, 4.0)
    if rule == "js-iso-1":
        return ciso * _js(jnp.sum(cov), jnp.sum(var), jnp.sum(vx), ess, 1.0)
    if rule == "hybrid":
        lam = _js(jnp.sum(cov), jnp.sum(var), jnp.sum(vx), ess, 4.0)
        e = dx + ciso * ds
        w2 = (w * w)[:, None]
        mu = _js(jnp.sum(w2 * e * ds, 0), var, jnp.sum(w2 * e * e, 0), ess, 4.0)
        return jnp.clip(lam * ciso + mu * (cstar - ciso), -clip, clip)
    raise ValueError(rule)


def _estimate(key, log_prob, x_t, t, path, k, rule):
    if rule in ("none", "gradient", "optimal", "optimal-isotropic", "optimal-shrunk"):
        return estimate_posterior_mean(key, log_prob, x_t, t, path, k, rule).x1
    a, b = path.alpha(t), path.beta(t)
    x0 = jax.random.normal(key, (k, x_t.shape[-1]))
    x1 = (x_t[None] - b * x0) / a
    logp, grad = jax.vmap(jax.value_and_grad(log_prob))(x1)
    w = snis_weights(logp)
    grad = jnp.where(jnp.isfinite(grad) & (w[:, None] > 0), grad, 0.0)
    s = grad + (a / b) * x0
    return jnp.sum(w[:, None] * (x1 + _coefficient(rule, logp, w, x1, s) * s), 0)


@functools.partial(jax.jit, static_argnames=("target", "path", "k", "rule"))
def _estimates(keys, x_rep, t, target, path, k, rule):
    return jax.vmap(lambda kk, x: _estimate(kk, target.log_prob, x, t, path, k, rule))(keys, x_rep)


def ratios(target, path, k, names, points=200, reps=20, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for t in TS:
        a, b = float(path.alpha(t)), float(path.beta(t))
        x_t = a * target.sample(rng, points) + b * rng.standard_normal((points, 2))
        exact = np.repeat(np.stack([target.posterior_mean(x, a, b) for x in x_t]), reps, 0)
        x_rep = jnp.asarray(np.repeat(x_t, reps, 0), jnp.float32)
        keys = jax.random.split(jax.random.key(seed), points * reps)
        mse = {}
        for n in names:
            est = np.asarray(_estimates(keys, x_rep, jnp.float32(t), target, path, k, n))
            mse[n] = float(np.mean(np.sum((est.astype(np.float64) - exact) ** 2, -1)))
        best = min(mse["none"], mse["gradient"])
        out[t] = {n: mse[n] / best for n in names}
    return out


def main() -> None:
    names = ["none", "gradient", *RULES]
    print(__doc__.splitlines()[0] + "\n")
    for name, desc in RULES.items():
        print(f"  {name:18s} {desc}")
    start = time.time()
    for tname, target in [("mixture3", MIX3), ("ring8", RING8)]:
        for pname, path in [("linear", paths.Linear()), ("vp", paths.VPCosine())]:
            k = 32
            res = ratios(target, path, k, names)
            print(f"\n== {tname}, {pname} path, K = {k}: MSE / MSE of the better endpoint")
            print("t     " + " ".join(f"{n[:14]:>14}" for n in names[2:]))
            for t, r in res.items():
                print(f"{t:<5} " + " ".join(f"{r[n]:14.3f}" for n in names[2:]))
            worst = {n: max(r[n] for r in res.values()) for n in names[2:]}
            print("worst " + " ".join(f"{worst[n]:14.3f}" for n in names[2:]))
            sys.stdout.flush()
    print(
        f"\n200 noisy points x 20 estimates per t; {time.time() - start:.0f} s on "
        f"{jax.devices()[0]} (2-core CPU shared with other jobs)."
    )


if __name__ == "__main__":
    main()
