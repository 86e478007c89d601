"""One toy run at commit f2cad12 (constant learning rate):
python probe_constant_lr.py TARGET METHOD STEPS LR HIDDEN BLOCKS (PYTHONPATH=src)."""

import sys
import time

import jax

from revflow.toy.targets import get_target
from revflow.toy.train import TrainConfig, train

tname, method = sys.argv[1], sys.argv[2]
steps, lr, hidden, blocks = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
ema = 0.999 if steps >= 2000 else 0.99
cfg = TrainConfig(steps=steps, lr=lr, hidden=hidden, num_blocks=blocks, ema=ema)
t0 = time.time()
r = train(get_target(tname), method, cfg, jax.random.key(0), progress=False)
metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.metrics.items()}
print(tname, method, steps, lr, hidden, blocks, metrics, f"{time.time() - t0:.0f}s")
