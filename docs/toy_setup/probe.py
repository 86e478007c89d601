"""One toy run: python probe.py TARGET METHOD '{TrainConfig fields as JSON}' (PYTHONPATH=src)."""

import json
import sys
import time

import jax

from revflow.toy.targets import get_target
from revflow.toy.train import TrainConfig, train

tname, method, kw = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cfg = TrainConfig(**kw)
t0 = time.time()
r = train(get_target(tname), method, cfg, jax.random.key(0), progress=False)
metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.metrics.items()}
print(tname, method, kw, metrics, "skipped", r.skipped_updates, f"{time.time() - t0:.0f}s")
