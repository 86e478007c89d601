"""Where the shrunk c* loses to the per-dimension c* (ring8, VP path, K = 16, t = 0.9 in mse.md):
the share of its estimates that fall back to c = 0 and their share of its MSE (same points and
reverse samples as benchmarks/estimator_mse.py).

    python docs/estimators/fallback_check.py > docs/estimators/fallback_check.txt
"""

import sys

sys.path.insert(0, "benchmarks")  # run from the repository root
import estimator_mse as em
import jax
import jax.numpy as jnp
import numpy as np

from revflow.estimators import estimate_posterior_mean

tg = em.TARGETS["ring8"]
path = em.PATHS["vp"]
t = 0.9
rng = np.random.default_rng(0)
a, b = float(path.alpha(t)), float(path.beta(t))
x_t = a * tg.sample(rng, 200) + b * rng.standard_normal((200, 2))
exact = np.repeat(tg.posterior_means(x_t, a, b), 20, 0)
x_rep = jnp.asarray(np.repeat(x_t, 20, 0), jnp.float32)
keys = jax.random.split(jax.random.key(0), 4000)
f = jax.jit(
    jax.vmap(
        lambda k, x: estimate_posterior_mean(
            k, tg.log_prob, x, jnp.float32(t), path, 16, "optimal-shrunk"
        )
    )
)
e = f(keys, x_rep)
c = np.asarray(e.coefficient[:, 0])
err = np.sum((np.asarray(e.x1, np.float64) - exact) ** 2, -1)
z = c == 0
print(
    "fraction c=0:",
    z.mean(),
    "share of MSE from c=0 estimates:",
    err[z].sum() / err.sum(),
    "ESS of those: median",
    np.median(np.asarray(e.ess)[z]) if z.any() else None,
)
