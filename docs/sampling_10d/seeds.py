"""The 10-D mixture test's fit (tests/test_sampling.py) at other seeds: mode weights, the
largest mean error and the range of std ratios against the truth.

python docs/sampling_10d/seeds.py SEED ...   (PYTHONPATH=src)
"""

import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import test_sampling as T
from revflow import sampling

for seed in map(int, sys.argv[1:]):
    s = sampling.fit(
        T.mixture_log_density,
        T.D,
        jax.random.key(seed),
        steps=800,
        progress=False,
        lr=2e-3,
        warmup=50,
        lr_final=0.1,
        batch=128,
        num_reverse_samples=128,
        ema=0.99,
        reference="adaptive",
    )
    x = np.asarray(s.sample(jax.random.key(seed + 1), 4000))
    w, mu, sd = T.mixture_summary(x)
    ratio = sd / T.STDS
    print(
        f"seed {seed}: weights {w.round(3)} (tol 0.1 of .5/.3/.2), max mean error "
        f"{np.abs(mu - T.MEANS).max():.3f} (tol 0.5), std ratio {ratio.min():.2f}-"
        f"{ratio.max():.2f} (tol 0.65-1.35), skipped {s.skipped_updates}",
        flush=True,
    )
