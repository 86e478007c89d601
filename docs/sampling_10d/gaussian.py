"""rfm on a 10-D Gaussian (means -1 ... 2, stds 0.5 ... 1.5):
python gaussian.py '{fit options as JSON}' (PYTHONPATH=src)."""

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from revflow import sampling

kw = json.loads(sys.argv[1])
D = 10
mean, std = np.linspace(-1.0, 2.0, D), np.linspace(0.5, 1.5, D)


def f(x):
    return -0.5 * jnp.sum(((x - mean) / std) ** 2)


t = time.time()
s = sampling.fit(f, D, jax.random.key(0), progress=False, **kw)
x = np.asarray(s.sample(jax.random.key(1), 4000))
ratio = x.std(0) / std
corr = np.abs(np.corrcoef(x.T) - np.eye(D)).max().round(3)
print(
    kw,
    "mean err",
    np.abs(x.mean(0) - mean).max().round(3),
    "std ratio",
    ratio.min().round(3),
    ratio.max().round(3),
    "corr max",
    corr,
    f"{time.time() - t:.0f}s",
)
