import sys, json, time, jax, jax.numpy as jnp, numpy as np
sys.path.insert(0, "/work/wt14/src")
from revflow import sampling
kw = json.loads(sys.argv[1])
D = 10
mean = np.linspace(-1.0, 2.0, D); std = np.linspace(0.5, 1.5, D)
f = lambda x: -0.5 * jnp.sum(((x - mean) / std) ** 2)
t = time.time()
s = sampling.fit(f, D, jax.random.key(0), progress=False, **kw)
x = np.asarray(s.sample(jax.random.key(1), 4000))
print(kw, "mean err", np.abs(x.mean(0) - mean).max().round(3), "std ratio", (x.std(0) / std).min().round(3), (x.std(0) / std).max().round(3), "corr max", np.abs(np.corrcoef(x.T) - np.eye(D)).max().round(3), f"{time.time()-t:.0f}s", flush=True)
