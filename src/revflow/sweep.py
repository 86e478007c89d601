"""``revflow sweep``: a grid of runs (algorithms x environments x seeds x config overrides).

::

    revflow sweep --algos rfm rfm-diffusion --envs dmc:cartpole-swingup --seeds 0 1 2 \\
                  --preset fast --set steps=20000 --set eval_every=5000 \\
                  --grid agent.control_variate=none,optimal
    revflow sweep benchmarks/sweeps/cpu_suite.yaml [--backend ray --address auto] [--dry-run]

Every run goes through the ordinary engine (:func:`revflow.engine.train` /
:func:`revflow.engine.resume`) in its own subprocess, so a crash or a NaN in one run cannot
take the others down, and lands in the ordinary run directory
``<run_dir>/<env>/<label>/seed<N>`` (see :func:`revflow.engine.run_dir_for`); ``label`` is the
algorithm name, plus ``.<key>-<value>`` for each grid axis.

A sweep is idempotent and resumable: a run whose ``result.json`` says it finished is skipped,
a run with a ``config.json`` (killed, or interrupted sweep) is resumed from its latest
checkpoint, and a new run is started. A run directory that holds a *different* config is
never touched (reported as failed). A failed run is reported with its error (its full output
is in ``<run dir>/sweep.log``) and does not stop the others. The sweep ends with a summary:
done / resumed / skipped / failed, and exits with status 1 if any run failed.

Backends:

- ``local`` (default): a pool of ``--jobs`` concurrent runs, each pinned with
  ``sched_setaffinity`` to its own ``--cpus-per-run`` cores. Pinning matters on small machines:
  two JAX SAC runs pinned to one core each do ~135 updates/s each, unpinned ~90 each.
- ``ray``: each run is a Ray task with ``num_cpus=--cpus-per-run`` and
  ``num_gpus=--gpus-per-run``; Ray schedules them over the cluster (``--address auto`` joins a
  running cluster, ``HOST:PORT`` a remote one, none starts a local instance). The run
  directories must be on a filesystem all nodes share.

A sweep file (YAML or TOML) holds the same fields::

    run_dir: runs/cpu_suite
    preset: fast                       # or a mapping {default: fast, sac: reference}
    algos: [rfm, rfm-diffusion]
    envs: [dmc:cartpole-swingup]
    seeds: [0, 1, 2]
    set: {steps: 20000, eval_every: 5000, agent.lam: 0.05}   # applied to every run
    algo_set: {rfm-diffusion: {agent.batch_size: 512}}        # per algorithm
    grid: {agent.control_variate: [none, optimal]}           # cartesian product of variants

Keys of ``set`` / ``algo_set`` / ``grid`` are :class:`revflow.engine.TrainConfig` fields
(``steps``) or ``agent.<field>`` of the algorithm's config. Every config is built and
validated before the first run starts, so a typo fails at once with the bad key named.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import tyro
import yaml

from revflow.engine import TrainConfig, _config_dict
from revflow.overrides import OverrideError, apply_overrides, split_values
from revflow.run_key import RunKey, sanitize
from revflow.rundir import CONFIG_FILE, diff, read_result, run_dir_for, tuplify

__all__ = [
    "RunSpec",
    "SweepArgs",
    "SweepError",
    "build_runs",
    "execute",
    "load_sweep_file",
    "run_sweep",
]

BACKENDS = ("local", "ray")
LOG_FILE = "sweep.log"
#: Sweep-level options a file may hold (the backend options come from the command line).
FILE_KEYS = ("run_dir", "preset", "algos", "envs", "seeds", "set", "algo_set", "grid")


class SweepError(ValueError):
    """A bad sweep definition (reported before any run starts)."""


@dataclasses.dataclass(frozen=True)
class SweepArgs:
    """Run a grid of trainings: algorithms x environments x seeds x config overrides."""

    #: A YAML or TOML sweep file (then --algos/--envs/--seeds/--preset/--set/--grid/--run-dir
    #: must not be given: the file holds them).
    file: tyro.conf.Positional[str | None] = None
    #: Registered algorithm names.
    algos: tuple[str, ...] = ()
    #: Environment names (``dmc:<domain>-<task>``, ``gym:<Id>``).
    envs: tuple[str, ...] = ()
    #: Seeds.
    seeds: tuple[int, ...] = (0,)
    #: Agent config preset of every run.
    preset: str = "reference"
    #: ``KEY=VALUE`` overrides of every run: a TrainConfig field (``steps=20000``) or
    #: ``agent.<field>=VALUE``; VALUE is parsed as YAML (``agent.actor_hidden=[64,64]``).
    #: Repeat the option for several overrides.
    set: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    #: ``KEY=V1,V2,...``: one variant per value; several --grid options make a product.
    grid: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    #: Root of the run directories.
    run_dir: str = "runs"
    #: local (pinned process pool) or ray.
    backend: str = "local"
    #: local backend: concurrent runs (default: usable cores // cpus_per_run).
    jobs: int | None = None
    #: Cores per run (local: pinned to this many cores; ray: the task's num_cpus).
    cpus_per_run: int = 1
    #: GPUs per run (ray backend only; fractions share a GPU).
    gpus_per_run: float = 0.0
    #: Ray cluster address: auto, HOST:PORT, or None to start a local Ray instance.
    address: str | None = None
    #: Print the planned runs and their state (new / resume / done) and exit.
    dry_run: bool = False


# --------------------------------------------------------------------------------------------
# Sweep definition -> run specs
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSpec(RunKey):
    """One run of a sweep (:class:`revflow.run_key.RunKey`): everything the worker needs, as
    plain JSON-able values."""

    preset: str
    train: dict[str, Any]
    agent: dict[str, Any]
    run_dir: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        return cls(**json.loads(text))


def load_sweep_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) sweep file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {path} does not exist")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(path.read_text())
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(path.read_text())
        else:
            raise SweepError(f"sweep file {path}: expected .yaml, .yml or .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        raise SweepError(f"sweep file {path} is not valid: {err}") from err
    if not isinstance(data, dict):
        raise SweepError(f"sweep file {path} must hold a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise SweepError(f"sweep file {path}: unknown keys {unknown}; expected {list(FILE_KEYS)}")
    return data


def _parse_assignment(text: str, option: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise SweepError(f"{option} {text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def _definition_from_args(args: SweepArgs) -> dict[str, Any]:
    if args.file is not None:
        given = [
            name
            for name in ("algos", "envs", "seeds", "preset", "set", "grid", "run_dir")
            if getattr(args, name) != getattr(SweepArgs, name)
        ]
        if given:
            raise SweepError(
                f"--{', --'.join(g.replace('_', '-') for g in given)} cannot be combined with "
                f"a sweep file ({args.file}): put them in the file"
            )
        return load_sweep_file(args.file)
    overrides = dict(_parse_assignment(s, "--set") for s in args.set)
    grid: dict[str, list[Any]] = {}
    for g in args.grid:
        key, values = _parse_assignment(g, "--grid")
        grid[key] = split_values(values)  # text: revflow.overrides reads it by type
    return {
        "run_dir": args.run_dir,
        "preset": args.preset,
        "algos": list(args.algos),
        "envs": list(args.envs),
        "seeds": list(args.seeds),
        "set": overrides,
        "grid": grid,
    }


def _apply(cls: type, base: Any, overrides: dict[str, Any], what: str, label: str) -> Any:
    """``base`` with ``overrides`` (validated on construction); a :class:`SweepError` for an
    unknown field or a bad value, one the config refuses naming ``label``."""
    try:
        return apply_overrides(cls, base, overrides, what)
    except OverrideError as err:
        raise SweepError(str(err)) from err
    except ValueError as err:
        raise SweepError(f"{label}: {err}") from err


def _split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    train, agent = {}, {}
    for key, value in overrides.items():
        if key.startswith("agent."):
            agent[key.removeprefix("agent.").replace("-", "_")] = value
        else:
            train[key.replace("-", "_")] = value
    return train, agent


def _label(algo: str, variant: dict[str, Any]) -> str:
    parts = [algo]
    for key, value in variant.items():
        short = key.removeprefix("agent.")
        text = json.dumps(value) if isinstance(value, list | dict) else str(value)
        parts.append(f"{short}-{text}")
    return sanitize(".".join(parts))


def _as_list(value: Any, key: str, kind: type) -> list[Any]:
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, kind) or isinstance(item, bool):
            raise SweepError(f"{key}: expected {kind.__name__} values, got {item!r}")
    return list(items)


def build_runs(definition: dict[str, Any], check_envs: bool = True) -> list[RunSpec]:
    """Expand a sweep definition into validated run specs (raises :class:`SweepError`)."""
    from revflow.agents.registry import available, get_agent_class

    algos = _as_list(definition.get("algos") or [], "algos", str)
    envs = _as_list(definition.get("envs") or [], "envs", str)
    seeds = _as_list(definition.get("seeds", [0]), "seeds", int)
    if not algos:
        raise SweepError("no algorithms given (--algos or `algos:` in the sweep file)")
    if not envs:
        raise SweepError("no environments given (--envs or `envs:` in the sweep file)")
    if not seeds:
        raise SweepError("no seeds given")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds repeat: {seeds}")
    unknown = [a for a in algos if a not in available()]
    if unknown:
        raise SweepError(f"unknown algorithms {unknown}; available: {', '.join(available())}")
    preset = definition.get("preset", "reference")
    presets = preset if isinstance(preset, dict) else {"default": preset}
    bad = sorted(set(presets) - {"default", *algos})
    if bad:
        raise SweepError(f"preset mapping names algorithms not in the sweep: {bad}")
    common = dict(definition.get("set") or {})
    algo_set = dict(definition.get("algo_set") or {})
    bad = sorted(set(algo_set) - set(algos))
    if bad:
        raise SweepError(f"algo_set names algorithms not in the sweep: {bad}")
    grid = dict(definition.get("grid") or {})
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid {key!r}: expected a non-empty list of values, got {values!r}")
    root = Path(str(definition.get("run_dir", "runs"))).resolve()
    if check_envs:
        _check_envs(envs)

    variants = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    arms = []  # (algo, label, preset, agent config, train overrides)
    for algo in algos:
        cls = get_agent_class(algo)
        algo_preset = presets.get(algo, presets.get("default", "reference"))
        try:
            base_agent = cls.Config.from_preset(algo_preset)
        except ValueError as err:
            raise SweepError(f"{algo}: {err}") from err
        for variant in variants:
            label = _label(algo, variant) if variant else algo
            merged = {**common, **dict(algo_set.get(algo) or {}), **variant}
            train_over, agent_over = _split_overrides(merged)
            for reserved in ("algo", "env", "seed", "label", "run_dir"):
                if reserved in train_over:
                    raise SweepError(f"{reserved!r} is set by the sweep itself, not by set/grid")
            agent_cfg = _apply(cls.Config, base_agent, agent_over, f"agent ({algo})", label)
            arms.append((algo, label, algo_preset, agent_cfg, train_over))
    # Ordered env -> seed -> arm, so a partly run sweep holds whole comparisons.
    runs = []
    for env in envs:
        for seed in seeds:
            for algo, label, algo_preset, agent_cfg, train_over in arms:
                try:  # validated on construction
                    cfg = TrainConfig(
                        algo=algo,
                        env=env,
                        seed=seed,
                        label=None if label == algo else label,
                        run_dir=str(root),
                        progress=False,
                    )
                    cfg = apply_overrides(TrainConfig, cfg, train_over, "train")
                except ValueError as err:
                    raise SweepError(f"{label} on {env}: {err}") from err
                runs.append(
                    RunSpec(
                        algo=algo,
                        env=env,
                        seed=seed,
                        label=label,
                        preset=algo_preset,
                        train=json.loads(json.dumps(dataclasses.asdict(cfg))),
                        agent=json.loads(json.dumps(dataclasses.asdict(agent_cfg))),
                        run_dir=str(run_dir_for(cfg)),
                    )
                )
    dirs = [r.run_dir for r in runs]
    if len(set(dirs)) != len(dirs):  # pragma: no cover - labels are unique per variant
        raise SweepError("two runs of the sweep map to the same run directory")
    return runs


def _check_envs(envs: Iterable[str]) -> None:
    from revflow.envs import make_env

    for env in envs:
        try:
            make_env(env).close()
        except (ValueError, ImportError) as err:
            raise SweepError(str(err)) from err


# --------------------------------------------------------------------------------------------
# State of a run directory, and the worker that trains one run
# --------------------------------------------------------------------------------------------


def _configs(spec: RunSpec) -> tuple[TrainConfig, Any]:
    from revflow.agents.registry import get_agent_class

    cfg = TrainConfig(**spec.train)
    cls = get_agent_class(spec.algo).Config
    return cfg, cls(**{k: tuplify(v) for k, v in spec.agent.items()})


def run_state(spec: RunSpec) -> tuple[str, str]:
    """``(state, detail)``: ``done``, ``resume``, ``new`` or ``conflict`` (with the reason)."""
    path = Path(spec.run_dir)
    try:
        result = read_result(path)
    except Exception as err:  # an unreadable result.json: let the worker resume and rewrite it
        return "resume", str(err)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        return ("new", "") if result is None else ("conflict", "result.json without config.json")
    try:
        saved = json.loads(config_path.read_text())
    except ValueError as err:
        return "conflict", f"{config_path} is not JSON: {err}"
    cfg, agent_cfg = _configs(spec)
    wanted = _config_dict(cfg, agent_cfg)
    ours = {k: dict(wanted[k]) for k in ("train", "agent")}
    theirs = {k: dict(saved.get(k) or {}) for k in ("train", "agent")}
    # The results root is not compared as text: the run found at this spec's (resolved)
    # directory is this spec's run, whichever spelling of its root made it (`revflow train
    # --run-dir runs` vs the sweep's absolute path) and wherever that root was then (a moved
    # or copied results folder); env, label and seed, which place it there, are compared.
    theirs["train"].pop("run_dir", None)
    ours["train"].pop("run_dir")
    diffs = diff(theirs, ours)
    if diffs:
        return "conflict", f"{path} holds another config: " + "; ".join(diffs[:4])
    if result is not None and result.get("complete"):
        return "done", ""
    return "resume", ""


def _worker(spec: RunSpec) -> None:
    """Train (or resume) one run in this process; called as ``python -m revflow.sweep``."""
    from revflow import engine

    state, detail = run_state(spec)
    print(f"[revflow sweep] {spec.label} {spec.env} seed{spec.seed}: {state} {detail}", flush=True)
    if state == "conflict":
        raise SweepError(detail)
    if state == "new":
        cfg, agent_cfg = _configs(spec)
        engine.train(cfg, agent_cfg, run_dir=spec.run_dir)
    elif state == "resume":
        engine.resume(spec.run_dir)
    result = read_result(spec.run_dir)
    if not (result and result.get("complete")):
        raise RuntimeError(f"{spec.run_dir} has no complete result.json after training")


def _last_error(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):  # the exception line of a traceback
        if not line.startswith(("WARNING", "[revflow sweep]", "File ", "^")):
            return line[:400]
    return lines[-1][:400] if lines else "no output"


def _outcome(spec: RunSpec, status: str, **fields: Any) -> dict[str, Any]:
    """What the sweep reports about one run (plain JSON-able values)."""
    return {
        "label": spec.label,
        "env": spec.env,
        "seed": spec.seed,
        "run_dir": spec.run_dir,
        "status": status,
        **fields,
    }


def _worker_command(spec: RunSpec, cores: Sequence[int] | None) -> list[str]:
    """The worker's command line. Pinning happens in the child before anything imports JAX
    (so XLA sizes its thread pool to the pinned cores), not in a pre-exec hook: forking a
    multithreaded JAX process and running Python before exec can deadlock."""
    pin = f"import os; os.sched_setaffinity(0, {sorted(cores)!r}); " if cores else ""
    code = f"{pin}import sys; from revflow.sweep import _main; sys.exit(_main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "--worker", spec.to_json()]


def run_subprocess(spec: RunSpec, cores: Sequence[int] | None = None) -> dict[str, Any]:
    """Run one spec in a fresh Python process (pinned to ``cores``); returns its outcome."""
    path = Path(spec.run_dir)
    path.mkdir(parents=True, exist_ok=True)
    log = path / LOG_FILE
    before = run_state(spec)[0]
    t0 = time.time()

    with log.open("a") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} revflow sweep ({before})\n")
        out.flush()
        proc = subprocess.run(
            _worker_command(spec, cores),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    outcome = _outcome(
        spec, "", before=before, seconds=time.time() - t0, returncode=proc.returncode
    )
    if proc.returncode == 0:
        result = read_result(path) or {}
        outcome["status"] = "done" if before == "new" else "resumed"
        outcome["final_return"] = (result.get("final_eval") or {}).get("return_mean")
    else:
        outcome["status"] = "failed"
        outcome["error"] = _last_error(log) + f" (exit {proc.returncode})"
        outcome["log"] = str(log.resolve())
    return outcome


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


def _core_slots(jobs: int, cpus_per_run: int) -> list[list[int]]:
    cores = sorted(os.sched_getaffinity(0))
    if jobs * cpus_per_run > len(cores):
        raise SweepError(
            f"--jobs {jobs} x --cpus-per-run {cpus_per_run} needs {jobs * cpus_per_run} cores; "
            f"this process may use {len(cores)}"
        )
    return [cores[i * cpus_per_run : (i + 1) * cpus_per_run] for i in range(jobs)]


def _run_local(
    specs: list[RunSpec], jobs: int, cpus_per_run: int, report: Callable[[dict], None]
) -> list[dict[str, Any]]:
    slots: queue.Queue[list[int]] = queue.Queue()
    for slot in _core_slots(jobs, cpus_per_run):
        slots.put(slot)

    def one(spec: RunSpec) -> dict[str, Any]:
        cores = slots.get()
        try:
            return run_subprocess(spec, cores)
        finally:
            slots.put(cores)

    outcomes = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, spec) for spec in specs]
        for future in concurrent.futures.as_completed(futures):
            outcome = future.result()
            report(outcome)
            outcomes.append(outcome)
    return outcomes


def _run_ray(
    specs: list[RunSpec],
    address: str | None,
    cpus_per_run: int,
    gpus_per_run: float,
    report: Callable[[dict], None],
) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError as err:
        raise SweepError("--backend ray needs Ray: pip install 'revflow[ray]'") from err
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(run_subprocess).options(num_cpus=cpus_per_run, num_gpus=gpus_per_run)
        pending = {remote.remote(spec): spec for spec in specs}
        outcomes = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                spec = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as err:  # the task itself died (node lost, ...)
                    outcome = _outcome(spec, "failed", error=f"ray task failed: {err}")
                report(outcome)
                outcomes.append(outcome)
        return outcomes
    finally:
        if started_here:
            ray.shutdown()


def execute(
    specs: list[RunSpec],
    backend: str = "local",
    jobs: int | None = None,
    cpus_per_run: int = 1,
    gpus_per_run: float = 0.0,
    address: str | None = None,
    report: Callable[[dict], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the specs (finished ones are skipped); returns one outcome dict per spec."""
    if backend not in BACKENDS:
        raise SweepError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if cpus_per_run < 1:
        raise SweepError(f"--cpus-per-run must be >= 1, got {cpus_per_run}")
    if gpus_per_run < 0:
        raise SweepError(f"--gpus-per-run must be >= 0, got {gpus_per_run}")
    if backend == "local" and gpus_per_run:
        raise SweepError("--gpus-per-run needs --backend ray (the local backend pins CPU cores)")
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs must be >= 1, got {jobs}")
    report = report or (lambda outcome: None)
    outcomes, todo = [], []
    for spec in specs:
        state, detail = run_state(spec)
        if state == "done":
            final = (read_result(spec.run_dir) or {}).get("final_eval") or {}
            outcome = _outcome(spec, "skipped", final_return=final.get("return_mean"))
        elif state == "conflict":
            outcome = _outcome(spec, "failed", error=detail)
        else:
            todo.append(spec)
            continue
        report(outcome)
        outcomes.append(outcome)
    if todo:
        if backend == "local":
            n_cores = len(os.sched_getaffinity(0))
            jobs = jobs or max(1, n_cores // cpus_per_run)
            outcomes += _run_local(todo, min(jobs, len(todo)), cpus_per_run, report)
        else:
            outcomes += _run_ray(todo, address, cpus_per_run, gpus_per_run, report)
    order = {spec.run_dir: i for i, spec in enumerate(specs)}
    return sorted(outcomes, key=lambda o: order[o["run_dir"]])


# --------------------------------------------------------------------------------------------
# Command
# --------------------------------------------------------------------------------------------


def _summary_table(outcomes: list[dict[str, Any]]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="revflow sweep")
    for col in ("label", "env", "seed", "status", "final return", "minutes", "error"):
        table.add_column(col)
    for o in outcomes:
        ret = o.get("final_return")
        table.add_row(
            o["label"],
            o["env"],
            str(o["seed"]),
            o["status"],
            "" if ret is None else f"{ret:.1f}",
            f"{o['seconds'] / 60:.1f}" if "seconds" in o else "",
            escape(o.get("error", "")),
        )
    return table


def run_sweep(args: SweepArgs) -> int:
    """The ``revflow sweep`` command; returns the exit status (1 if any run failed)."""
    from rich.console import Console

    console = Console()
    if args.backend not in BACKENDS:
        raise SweepError(f"unknown --backend {args.backend!r}; expected one of {BACKENDS}")
    specs = build_runs(_definition_from_args(args))
    if args.dry_run:
        for spec in specs:
            state, detail = run_state(spec)
            console.print(f"{state:8s} {spec.run_dir} {detail}", highlight=False, markup=False)
        console.print(f"{len(specs)} runs")
        return 0
    lock = threading.Lock()

    def report(o: dict[str, Any]) -> None:
        with lock:
            extra = f" return {o['final_return']:.1f}" if o.get("final_return") is not None else ""
            err = f" — {o['error']}" if o.get("error") else ""
            log = f" (full log: {o['log']})" if o.get("log") else ""
            console.print(
                f"[{o['status']}] {o['label']} {o['env']} seed{o['seed']}{extra}{err}{log}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    console.print(f"revflow sweep: {len(specs)} runs, backend {args.backend}")
    outcomes = execute(
        specs,
        backend=args.backend,
        jobs=args.jobs,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run,
        address=args.address,
        report=report,
    )
    console.print(_summary_table(outcomes))
    for o in outcomes:  # whole paths, never cut by the table's width
        if o.get("log"):
            console.print(
                f"full log of {o['label']} {o['env']} seed{o['seed']}: {o['log']}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
    counts = {s: sum(o["status"] == s for o in outcomes) for s in ("done", "resumed", "skipped")}
    failed = sum(o["status"] == "failed" for o in outcomes)
    console.print(
        f"{counts['done']} done, {counts['resumed']} resumed, {counts['skipped']} skipped "
        f"(already finished), {failed} failed",
        highlight=False,
    )
    return 1 if failed else 0


def _main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "--worker":
        _worker(RunSpec.from_json(argv[1]))
        return 0
    print("usage: python -m revflow.sweep --worker SPEC_JSON (internal; use `revflow sweep`)")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
