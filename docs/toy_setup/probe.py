import sys, time, json, jax
from revflow.toy.train import TrainConfig, train
from revflow.toy.targets import get_target
tname, method, kw = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cfg = TrainConfig(**kw)
t0=time.time()
r = train(get_target(tname), method, cfg, jax.random.key(0), progress=False)
print(tname, method, kw, {k: round(v,4) if isinstance(v,float) else v for k,v in r.metrics.items()}, "skipped", r.skipped_updates, f"{time.time()-t0:.0f}s", flush=True)
