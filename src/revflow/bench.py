"""``revflow bench throughput``: how fast an agent trains on this machine.

Everything is measured after warm-up and compilation:

- compile time of one update (``jax.jit(update).lower(...).compile()``);
- updates/s of the engine's fused update call (``updates_per_call`` updates per call, batches
  already on the device: the pure learner speed);
- env steps/s end to end: the real engine loop (act, env step, replay insert, sampling,
  ``utd`` updates per step, NaN checks) after its warm-up, timed between log events;
- FLOPs of one update from XLA's cost analysis of the compiled update, the achieved GFLOP/s
  (FLOPs x updates/s), and the float32 matmul peak measured by timing a large ``jnp.dot``;
- the device JAX ran on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from revflow.agents.base import Batch
from revflow.agents.registry import get_agent_class
from revflow.engine import TrainConfig, _make_update, _to_batch, _Trainer
from revflow.envs import env_info, make_env
from revflow.overrides import OverrideError, apply_overrides
from revflow.replay import ReplayBuffer

__all__ = ["ThroughputArgs", "agent_config", "matmul_peak_gflops", "run_throughput", "throughput"]


@dataclasses.dataclass(frozen=True)
class ThroughputArgs:
    """Measure compile time, updates/s, end-to-end env steps/s and GFLOP/s of an agent."""

    #: Registered algorithm name.
    algo: str = "rfm"
    #: Agent config preset (reference | fast | ...).
    preset: str = "reference"
    #: Environment of the end-to-end measurement (sets the observation / action sizes).
    env: str = "dmc:cheetah-run"
    #: Updates fused per jitted call (as ``TrainConfig.updates_per_call``).
    updates_per_call: int = TrainConfig.updates_per_call
    #: Seconds spent timing the fused update call.
    update_seconds: float = 5.0
    #: Seconds (approximately) spent timing the end-to-end loop; 0 skips it.
    e2e_seconds: float = 10.0
    #: Random-action env steps of the end-to-end loop before its first update.
    warmup_steps: int = 1000
    #: Agent config overrides on top of the preset, ``FIELD=VALUE`` (as ``revflow sweep --set``).
    set: tuple[str, ...] = ()
    #: Size of the matmul that measures the float32 peak.
    matmul_size: int = 2048
    #: Also write the results as JSON to this path.
    json: str | None = None
    seed: int = 0


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best-of-``repeats`` float32 GFLOP/s of an ``n x n @ n x n`` ``jnp.dot``."""
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), jnp.float32)
    b = jax.random.normal(key_b, (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def _flops(compiled: Any) -> float:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older jax returns one dict per computation
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", float("nan")))


class _TimingLogger:
    """Stand-in for RunLogger that records when each log event happens."""

    def __init__(self) -> None:
        self.events: list[tuple[int, float]] = []

    def log_metrics(self, step: int, metrics: Any) -> None:
        self.events.append((step, time.perf_counter()))

    def log_episode(self, *args: Any) -> None:
        pass

    def log_eval(self, *args: Any) -> None:
        pass

    def progress(self, step: int) -> None:
        pass


def agent_config(args: ThroughputArgs) -> Any:
    """The agent config measured: the preset with ``args.set`` applied (``OverrideError``, a
    ``ValueError``, for an unknown field or a bad value)."""
    cls = get_agent_class(args.algo)
    base = cls.Config.from_preset(args.preset)
    pairs = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise OverrideError(f"--set {item!r} is not FIELD=VALUE")
        pairs[key] = value
    return apply_overrides(cls.Config, base, pairs, f"{args.algo} config")


def throughput(args: ThroughputArgs) -> dict[str, Any]:
    """Run the measurements; returns a dict of results (see the module docstring)."""
    agent_cfg = agent_config(args)
    env = make_env(args.env, seed=args.seed)
    obs_dim, act_dim, _ = env_info(env)
    agent = get_agent_class(args.algo)(agent_cfg, obs_dim, act_dim)
    batch_size = int(getattr(agent_cfg, "batch_size", 256))
    gamma = float(getattr(agent_cfg, "gamma", 0.99))

    # Real transitions from random actions, so the update sees realistic inputs.
    rng = np.random.default_rng(args.seed)
    buffer = ReplayBuffer(2000, obs_dim, act_dim)
    obs, _ = env.reset(seed=args.seed)
    for _ in range(2000):
        action = rng.uniform(-1, 1, act_dim).astype(np.float32)
        nxt, reward, term, trunc, _ = env.step(action)
        buffer.add(obs, action, reward, nxt, float(term))
        obs = nxt if not (term or trunc) else env.reset()[0]
    env.close()

    key = jax.random.PRNGKey(args.seed)
    state = agent.init(key)

    # Compile time and FLOPs of one (unfused) update.
    single = _to_batch(buffer.sample(rng, batch_size, 1), gamma)
    single = Batch(*(x[0] for x in single))
    t0 = time.perf_counter()
    compiled = jax.jit(agent.update).lower(state, single, key).compile()
    compile_s = time.perf_counter() - t0
    flops = _flops(compiled)

    # Fused update call.
    n = args.updates_per_call
    fused = _make_update(agent)
    batches = jax.device_put(_to_batch(buffer.sample(rng, batch_size, n), gamma))
    keys = jax.random.split(key, n)
    t0 = time.perf_counter()
    state, _, _ = fused(state, batches, keys)
    jax.block_until_ready(state)
    fused_compile_s = time.perf_counter() - t0
    calls, t0 = 0, time.perf_counter()
    while True:
        state, _, flags = fused(state, batches, keys)
        calls += 1
        if calls % 4 == 0 or time.perf_counter() - t0 > args.update_seconds:
            jax.block_until_ready(flags)
            if time.perf_counter() - t0 > args.update_seconds:
                break
    updates_per_s = calls * n / (time.perf_counter() - t0)

    peak = matmul_peak_gflops(args.matmul_size)
    achieved = flops * updates_per_s / 1e9

    result: dict[str, Any] = {
        "algo": args.algo,
        "preset": args.preset,
        "overrides": list(args.set),
        "env": args.env,
        "device": str(jax.devices()[0]),
        "device_kind": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "platform": jax.default_backend(),
        "updates_per_call": n,
        "batch_size": batch_size,
        "warmup_steps": args.warmup_steps,
        "compile_s": compile_s,
        "fused_compile_s": fused_compile_s,
        "updates_per_s": updates_per_s,
        "flops_per_update": flops,
        "achieved_gflops": achieved,
        "matmul_peak_gflops": peak,
        "fraction_of_peak": achieved / peak if peak > 0 else float("nan"),
    }
    if args.e2e_seconds > 0:
        result.update(_end_to_end(args, agent_cfg, updates_per_s))
    return result


def _end_to_end(args: ThroughputArgs, agent_cfg: Any, updates_per_s: float) -> dict[str, Any]:
    """The engine's real loop at UTD 1; timed from the first log event after the policy has
    acted (so the act/update compilation is excluded) to the last."""
    warmup = args.warmup_steps
    lead = max(args.updates_per_call, 50)  # policy steps before timing starts (compiles)
    timed = int(min(max(updates_per_s * args.e2e_seconds, 20), 20_000))
    timed = max(args.updates_per_call, timed // args.updates_per_call * args.updates_per_call)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            algo=args.algo,
            env=args.env,
            seed=args.seed,
            steps=warmup + lead + timed,
            warmup_steps=warmup,
            updates_per_call=args.updates_per_call,
            eval_every=0,
            checkpoint_every=0,
            log_every=warmup + lead,
            run_dir=tmp,
            tensorboard=False,
            csv=False,
            progress=False,
        )
        trainer = _Trainer(Path(tmp) / "run", cfg, agent_cfg)
        logger = _TimingLogger()
        try:
            trainer.run(logger)  # type: ignore[arg-type]
        finally:
            trainer.env.close()
    (s0, t0), (s1, t1) = logger.events[0], logger.events[-1]
    return {"e2e_env_steps": s1 - s0, "env_steps_per_s": (s1 - s0) / (t1 - t0)}


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"revflow throughput: {result['algo']} ({result['preset']}) on {result['env']}"
    )
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("device", f"{result['device']} ({result['device_kind']})"),
        ("compile time, one update", f"{result['compile_s']:.2f} s"),
        (
            f"compile + first call, fused x{result['updates_per_call']}",
            f"{result['fused_compile_s']:.2f} s",
        ),
        (
            f"updates/s (fused x{result['updates_per_call']}, batch {result['batch_size']})",
            f"{result['updates_per_s']:.1f}",
        ),
    ]
    if "env_steps_per_s" in result:
        rows.append(("env steps/s end-to-end (UTD 1)", f"{result['env_steps_per_s']:.1f}"))
    rows += [
        ("FLOPs per update (XLA cost analysis)", f"{result['flops_per_update']:.3e}"),
        ("achieved GFLOP/s", f"{result['achieved_gflops']:.1f}"),
        ("measured f32 matmul peak GFLOP/s", f"{result['matmul_peak_gflops']:.1f}"),
        ("fraction of peak", f"{100 * result['fraction_of_peak']:.1f} %"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def run_throughput(args: ThroughputArgs) -> dict[str, Any]:
    """CLI entry: measure, print the table, optionally write JSON."""
    result = throughput(args)
    print_table(result)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result
