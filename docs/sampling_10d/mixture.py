import sys, json, time, jax, jax.numpy as jnp, numpy as np
sys.path.insert(0, "/work/wt14/tests"); sys.path.insert(0, "/work/wt14/src")
import test_sampling as T
sep = float(sys.argv[1]); kw = json.loads(sys.argv[2])
T.MEANS[:] = 0.0; T.MEANS[0, 0], T.MEANS[1, 0], T.MEANS[2, 1] = sep, -sep, sep
from revflow import sampling
t = time.time()
s = sampling.fit(T.mixture_log_density, T.D, jax.random.key(0), progress=False, **kw)
x = np.asarray(s.sample(jax.random.key(1), 4000))
ex = np.asarray(T._exact(jax.random.key(2), 4000))
w, mu, sd = T.mixture_summary(x); we, mue, sde = T.mixture_summary(ex)
print(sep, kw, "w", w.round(3), "exact w", we.round(3), "mu err", np.abs(mu - mue).max().round(3), "sd ratio", (sd / sde).min().round(2), (sd / sde).max().round(2), f"{time.time()-t:.0f}s", flush=True)
