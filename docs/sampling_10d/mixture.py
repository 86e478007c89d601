"""rfm on the 10-D mixture of tests/test_sampling.py with the means SEP apart from 0:
python mixture.py SEP '{fit options as JSON}' (from the repository root, PYTHONPATH=src)."""

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import test_sampling as T
from revflow import sampling

sep, kw = float(sys.argv[1]), json.loads(sys.argv[2])
T.MEANS[:] = 0.0
T.MEANS[0, 0], T.MEANS[1, 0], T.MEANS[2, 1] = sep, -sep, sep
t = time.time()
s = sampling.fit(T.mixture_log_density, T.D, jax.random.key(0), progress=False, **kw)
x = np.asarray(s.sample(jax.random.key(1), 4000))
ex = np.asarray(T._exact(jax.random.key(2), 4000))
w, mu, sd = T.mixture_summary(x)
we, mue, sde = T.mixture_summary(ex)
err = np.abs(mu - mue).max().round(3)
ratio = ((sd / sde).min().round(2), (sd / sde).max().round(2))
print(
    sep,
    kw,
    "w",
    w.round(3),
    "exact w",
    we.round(3),
    "mu err",
    err,
    "sd ratio",
    *ratio,
    f"{time.time() - t:.0f}s",
)
