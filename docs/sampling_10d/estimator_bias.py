"""Why rfm collapses on the 10-D mixture of tests/test_sampling.py: the K-sample estimator of
E[x1 | x_t] against the exact posterior, with no training (x_t from the true marginal).

python docs/sampling_10d/estimator_bias.py [reference ...]   (PYTHONPATH=src)

Per t: the ESS of the K reverse samples, the estimator's average responsibility of each
mixture component (the SNIS weight mass of the reverse samples nearest to it; exact: its
average posterior weight, which is the prior weight .5/.3/.2 by the tower property), and
the RMSE of mu1 against the exact posterior mean. ``reference`` rows: "none" (the reverse
kernel, as rfm does), "target" (a diagonal Gaussian moment-matched to the target) and
"wide" (the same, stds x 1.5).
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import test_sampling as T
from revflow.estimators import estimate_posterior_mean_batch, reverse_samples, snis_weights
from revflow.paths import Linear

W, M, S = T.WEIGHTS, T.MEANS, T.STDS
N = 1024


def exact_posterior(x_t, t):
    """Diagonal-mixture posterior under the linear path: component weights and mean."""
    r2 = ((1 - t) / t) ** 2
    y = x_t / t
    var = S[None] ** 2 + r2  # (1, C, D)
    logw = np.log(W) - 0.5 * (((y[:, None] - M[None]) ** 2) / var).sum(-1)
    logw -= 0.5 * np.log(var).sum(-1)
    pw = np.exp(logw - logw.max(1, keepdims=True))
    pw /= pw.sum(1, keepdims=True)
    v = 1.0 / (1.0 / S**2 + 1.0 / r2)
    comp_mean = v[None] * (M[None] / S[None] ** 2 + y[:, None] / r2)
    return pw, (pw[..., None] * comp_mean).sum(1)


def main(references):
    x1 = np.asarray(T._exact(jax.random.key(0), N), np.float64)
    mom_mean = (W[:, None] * M).sum(0)
    mom_var = (W[:, None] * (S**2 + M**2)).sum(0) - mom_mean**2
    refs = {
        "none": None,
        "target": (jnp.asarray(mom_mean, jnp.float32), jnp.asarray(np.sqrt(mom_var), jnp.float32)),
        "wide": (
            jnp.asarray(mom_mean, jnp.float32),
            jnp.asarray(1.5 * np.sqrt(mom_var), jnp.float32),
        ),
    }
    print(f"{'reference':>9} {'K':>5} {'t':>5} {'ESS':>7} {'resp .5/.3/.2':>18} {'RMSE':>6}")
    for ref in references:
        for K in (32, 256):
            for t in (0.02, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9):
                x0 = np.random.default_rng(1).standard_normal(x1.shape)
                x_t = t * x1 + (1 - t) * x0
                ref_ = refs[ref]
                xt = jnp.asarray(x_t, jnp.float32)
                keys = jax.random.split(jax.random.key(2), N)
                est = jax.jit(
                    lambda x, K=K, t=t, ref_=ref_: estimate_posterior_mean_batch(
                        jax.random.key(2),
                        T.mixture_log_density,
                        x,
                        t,
                        Linear(),
                        K,
                        "optimal",
                        reference=ref_,
                    )
                )(xt)

                def draws(k, x, K=K, t=t, ref_=ref_):  # the same keys as the estimate's rows
                    x1s, _, corr = reverse_samples(k, x, jnp.float32(t), Linear(), K, ref_)
                    logp = jax.vmap(T.mixture_log_density)(x1s)
                    return x1s, snis_weights(logp + corr)

                xs, w = (np.asarray(a) for a in jax.jit(jax.vmap(draws))(keys, xt))
                comp = T._assign(xs.reshape(-1, T.D)).reshape(w.shape)
                resp = np.array([(w * (comp == c)).sum(1).mean() for c in range(3)])
                _, mu = exact_posterior(x_t, t)
                rmse = np.sqrt(((np.asarray(est.x1) - mu) ** 2).sum(1).mean())
                ess = float(np.mean(est.ess))
                r = "/".join(f"{v:.2f}" for v in resp)
                print(f"{ref:>9} {K:>5} {t:>5.2f} {ess:>7.2f} {r:>18} {rmse:>6.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["none"])
