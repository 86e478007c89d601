"""rfm on the 10-D mixture of tests/test_sampling.py, watched during training: every 100
updates the mode weights of 2000 samples of the online and EMA parameters, the mean ESS of
the reverse samples and the batch reference's std (dims 0, 1, mean of the rest).

python docs/sampling_10d/trajectory.py '{fit options as JSON}'   (PYTHONPATH=src)
"""

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import test_sampling as T
from revflow.sampling.api import make_config
from revflow.sampling.methods import get_method
from revflow.sampling.training import init_state, make_model, make_train_chunk

kw = json.loads(sys.argv[1])
steps = kw.pop("steps", 800)
cfg = make_config(steps, {"chunk": 100, **kw})
spec = get_method(kw.pop("method", "rfm"))
model = make_model(spec, cfg, T.D)
run = make_train_chunk(model, T.mixture_log_density, spec, cfg)
k_init, key = jax.random.split(jax.random.key(0))  # as train_model splits fit's key
state = init_state(k_init, model, cfg)
draw = jax.jit(lambda p, k: model.sample(p, k, 2000))
start = time.time()
print(cfg)
for done in range(0, steps, 100):
    key, sub = jax.random.split(key)
    state, logs = run(state, sub, 100, None)
    x = np.asarray(draw(state.params, jax.random.key(1)))
    xe = np.asarray(draw(state.ema_params, jax.random.key(1)))
    sd = x.std(0)
    w = T.mixture_summary(x)[0]
    we = T.mixture_summary(xe)[0]
    print(
        f"{done + 100:4d} online w {w.round(2)} ema w {we.round(2)} ESS "
        f"{float(np.mean(logs['ess'])):.2f} model sd {sd[0]:.2f} {sd[1]:.2f} {sd[2:].mean():.2f}"
        f" loss {float(np.mean(logs['loss'])):.3g} {time.time() - start:.0f}s",
        flush=True,
    )
