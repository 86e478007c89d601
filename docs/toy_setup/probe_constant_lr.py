import sys, time, dataclasses, jax, numpy as np
from revflow.toy.train import TrainConfig, train
from revflow.toy.targets import get_target
tname, method, steps, lr, hidden, blocks = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
cfg = TrainConfig(steps=steps, lr=lr, hidden=hidden, num_blocks=blocks, ema=0.999 if steps>=2000 else 0.99)
t0=time.time()
r = train(get_target(tname), method, cfg, jax.random.key(0), progress=False)
print(tname, method, steps, lr, hidden, blocks, {k: round(v,4) if isinstance(v,float) else v for k,v in r.metrics.items()}, f"{time.time()-t0:.0f}s", flush=True)
