"""One prepared GPU check: the authors' RFM trainer, revflow's engine and revflow's compiled
loop at the reference values, one after the other on the same device.

Each side runs in its own process (so each takes the GPU's memory in turn):

1. **engine**: ``revflow bench throughput --algo rfm --preset reference --env
   dmc:cheetah-run`` (``side_by_side.revflow_bench``): env steps/s of the engine's loop (one
   env on the host, UTD 1, after ``--warmup`` random steps) and updates/s of its fused update.
2. **official**: the authors' unchanged ``main.py`` with ``configs/rfm.yaml`` under their
   Python (``vs_official.time_official``), on ``cheetah-run``, timed over as many env steps as
   the engine's window from the same point past the same warm-up; UTD 1, so its updates/s
   are its env steps/s.
3. **compiled**: ``benchmarks/gpu_fused.py --algos rfm --presets reference --num-envs 1`` on
   ``mjx:CheetahRun`` (the whole loop in one jitted call per chunk; UTD 1, no warm-up).

It prints env steps/s, updates/s and the projected hours of a ``--project-steps`` (250k) run
of each (at the timed rate; compilation, warm-up and evaluation not counted), and writes them
with each side's device (``jax.devices()[0].device_kind``) and JAX version to ``--out``.

Before anything runs it probes each Python: every module that side needs must be importable
and (without ``--quick``) JAX's backend must be a GPU; otherwise it stops with one ``error:``
line naming the Python and what it lacks. On a GPU machine::

    XLA_FLAGS=--xla_gpu_triton_gemm_any=true python benchmarks/gpu_check.py \\
        --official /path/to/ReverseFlowMatching --official-python /path/to/rfm-cuda/bin/python \\
        --out docs/gpu/check.json
    python benchmarks/gpu_check.py --no-official ...     # revflow's two sides alone
    python benchmarks/gpu_check.py --quick               # tiny CPU check (numbers mean nothing)

``--quick``: tiny networks, 100 warm-up steps, short windows, XLA's cheap compile pipeline,
on whatever device JAX has; the authors' side only when ``--official`` and
``--official-python`` are given (else it says that it skipped it).

What each Python needs (the probe checks exactly these, ``REVFLOW_NEEDS`` and
``OFFICIAL_NEEDS``):

- revflow's (``--revflow-python``, default this one; the children get this checkout's
  ``src`` first on ``PYTHONPATH``): a CUDA build of jax (``pip install -e ".[cuda,mjx]"``),
  flax, optax, numpy, scipy, rich, tyro, orbax-checkpoint, tensorboardX, PyYAML, imageio,
  mujoco and mujoco-mjx 3.17.0, dm_control 1.0.50 and gymnasium.
- the authors' (``--official-python``): their environment with a CUDA jax. On a GPU machine
  that reaches PyPI::

      python3.11 -m venv rfm-cuda
      rfm-cuda/bin/pip install "jax[cuda12]==0.6.2" flax==0.10.7 optax==0.2.6 \\
          gymnasium==1.2.2 dm_control==1.0.50 mujoco==3.17.0 absl-py PyYAML tqdm termcolor

  (the CPU environment of ``benchmarks/fidelity/README.md`` with jax's CUDA 12 build).

On this project's device machine (no registry, a working tree of at most 64 MiB per call):
its image has jax 0.11.2 with the CUDA 13 plugin, flax, optax, orbax-checkpoint, rich,
scipy, PyYAML, imageio, absl-py, tqdm (Python 3.12), so revflow's side runs on the image's
``python3`` (as the H200 table in the README did) given the rest as wheels (Python 3.12,
manylinux, ``--no-deps``; the device tool's README says how to download them here and
install them there into ``/tmp/site``, which the children's ``PYTHONPATH`` keeps): mujoco
3.17.0 (27 MB), mujoco-mjx 3.17.0 (7 MB), dm_control 1.0.50 (56 MB), dm-env 1.6, dm-tree
0.1.10, labmaze 1.0.6 (5 MB), glfw 2.11.0, PyOpenGL 3.1.10 (3 MB), websockets, gymnasium
1.4.0, farama-notifications 0.0.6, tyro 1.0.17, docstring-parser, typeguard, tensorboardX
2.6.5, trimesh: about 96 MiB, more than one call carries, so install them in two calls while
the machine stays warm (dm_control alone in the second; ``/tmp/site`` stays on a warm
machine). The probe then names anything still missing. The authors' jax 0.6.2 CUDA build cannot be
carried there (its wheels for Python 3.12: jaxlib 90 MB, jax-cuda12-pjrt 125 MB,
jax-cuda12-plugin 16 MB, then NVIDIA's CUDA 12 libraries, which the image's CUDA 13 does not
replace): run ``--no-official`` there, or give ``--official-python`` a Python whose jax
differs from theirs and say so (the JSON records each side's jax).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import (
    machine,
    missing_file,
    projected_hours,
    revflow_bench,
    run_child,
    write_json,
)
from vs_official import official_commit, official_error, time_official

HERE = Path(__file__).resolve().parent

SIDES = ("engine", "official", "compiled")

#: Modules revflow's side imports (bench, engine, compiled loop, dmc: and mjx: tasks).
REVFLOW_NEEDS = (
    "jax",
    "flax",
    "optax",
    "numpy",
    "scipy",
    "rich",
    "tyro",
    "orbax.checkpoint",
    "tensorboardX",
    "yaml",
    "imageio",
    "mujoco",
    "mujoco.mjx",
    "dm_control.suite",
    "dm_env",
    "gymnasium",
    "revflow.bench",  # this checkout's src (first on the children's PYTHONPATH)
    "revflow.compiled",
)
#: Modules the authors' trainer imports (``main.py`` and what it loads).
OFFICIAL_NEEDS = (
    "jax",
    "flax",
    "optax",
    "numpy",
    "yaml",
    "absl",
    "tqdm",
    "termcolor",
    "gymnasium",
    "dm_control.suite",
    "dm_env",
)

#: The reference values, and the tiny ones of ``--quick`` (the same values on both sides).
ENGINE = {
    "reference": {"preset": "reference", "set": ()},
    "quick": {
        "preset": "fast",
        "set": (
            "actor_hidden=32",
            "critic_hidden=32,32",
            "embed_dim=16",
            "num_particles=4",
            "num_flow_steps=2",
            "num_reverse_samples=8",
            "batch_size=32",
        ),
    },
}
OFFICIAL_QUICK = {
    "actor.hidden_size": 32,
    "actor.emb_size": 16,
    "critic.hidden_size": 32,
    "rfm.num_particles_training": 4,
    "rfm.num_particles_data": 4,
    "rfm.num_particles_eval": 4,
    "rfm.num_integration_steps": 2,
    "rfm.num_estimator_mc_samples": 8,
    "trainer.batch_size": 32,
}


def _probe(needs: list[str]) -> int:
    """Run under the probed Python: import each of ``needs``; print which modules are
    missing (the one named, or the one it needs that is absent), which fail to import for
    another reason, and JAX's version, backend and device."""
    missing: list[str] = []
    broken: list[str] = []
    for name in needs:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            absent = err.name or name
            if absent not in missing:
                missing.append(absent)
        except Exception as err:  # e.g. a version mismatch between two packages
            broken.append(f"{name}: {type(err).__name__}: {err}".splitlines()[0][:200])
    out: dict[str, Any] = {"missing": missing, "broken": broken, "python": sys.version.split()[0]}
    if "jax" in sys.modules:
        jax = sys.modules["jax"]
        out.update(
            jax=jax.__version__,
            backend=jax.default_backend(),
            device_kind=jax.devices()[0].device_kind,
        )
    print(json.dumps(out))
    return 0


def probe(python: str, needs: tuple[str, ...], env: dict[str, str]) -> dict[str, Any]:
    """Probe ``python`` (``_probe`` in a child process)."""
    cmd = [python, str(Path(__file__).resolve()), "--probe", *needs]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"missing": list(needs), "failed": last}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def probe_error(who: str, python: str, found: dict[str, Any], quick: bool) -> str | None:
    """The one-line error for a Python that cannot run its side (None if it can)."""
    if found.get("failed"):
        return f"error: {who} Python {python} failed to start: {found['failed']}"
    if found["missing"]:
        return (
            f"error: {who} Python {python} cannot import: {', '.join(found['missing'])} "
            "(benchmarks/gpu_check.py's docstring lists what each side needs)"
        )
    if found.get("broken"):
        return f"error: {who} Python {python} fails to import {'; '.join(found['broken'])}"
    if not quick and found.get("backend") != "gpu":
        return (
            f"error: {who} Python {python} has JAX backend {found.get('backend')!r}, not a GPU "
            "(a CUDA build of jax is needed; --quick runs on the CPU)"
        )
    return None


def compiled_loop(
    python: str, env: str, seconds: float, quick: bool, tmp: Path, child_env: dict[str, str]
) -> dict[str, Any]:
    """``gpu_fused.py`` for rfm at one environment (reference preset; ``--quick``: its tiny
    CPU sizes); env steps/s, updates/s, compile time and device."""
    out = tmp / "compiled.json"
    cmd = [python, str(HERE / "gpu_fused.py"), "--algos", "rfm", "--env", env, "--out", str(out)]
    if quick:
        cmd += ["--quick"]
    else:
        cmd += ["--presets", "reference", "--num-envs", "1", "--batch-size", "256"]
        cmd += ["--seconds", str(seconds), "--budget", "1e9", "--require-backend", "gpu"]
    rss = run_child(cmd, tmp / "compiled.log", child_env)
    res = json.loads(out.read_text())
    row = res["rows"][0]
    return {
        "env_steps_per_s": row["env_steps_per_s"],
        "updates_per_s": row["updates_per_s"],
        "compile_s": row["compile_s"],
        "num_envs": row["num_envs"],
        "batch_size": row["batch_size"],
        "preset": row["preset"],
        "device_kind": res["device"],
        "jax": res["jax"],
        "max_rss_mib": rss,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", help="checkout of the authors' repository")
    parser.add_argument("--official-python", help="Python of the authors' environment (CUDA)")
    parser.add_argument("--no-official", action="store_true", help="skip the authors' side")
    parser.add_argument("--revflow-python", default=sys.executable, help="Python of revflow")
    parser.add_argument("--env", default="cheetah-run", help="DMC task of engine and official")
    parser.add_argument("--mjx-env", default="mjx:CheetahRun", help="task of the compiled loop")
    parser.add_argument("--warmup", type=int, default=1000, help="random-action env steps")
    parser.add_argument("--e2e-seconds", type=float, default=30.0, help="engine's timed window")
    parser.add_argument("--update-seconds", type=float, default=5.0, help="engine's update timing")
    parser.add_argument("--seconds", type=float, default=10.0, help="compiled loop's timing")
    parser.add_argument("--project-steps", type=int, default=250_000, help="projected run length")
    parser.add_argument(
        "--sides",
        nargs="+",
        default=list(SIDES),
        choices=SIDES,
        help="which sides to run (default all; official also needs its paths)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        return _probe(args.probe)

    given = args.official is not None or args.official_python is not None
    wanted = "official" in args.sides and not args.no_official
    use_official = wanted and (given or not args.quick)
    error = missing_file("--revflow-python", args.revflow_python)
    if error is None and use_official:
        error = official_error(args.official, args.official_python)
        if error and not given:
            error += " (give --official and --official-python, or --no-official)"
    if error is None and args.project_steps < 1:
        error = f"error: --project-steps {args.project_steps} must be >= 1"
    if error:
        print(error, file=sys.stderr)
        return 2

    src = str(HERE.parent / "src")
    revflow_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]),
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
    }
    quick_env = {}
    if args.quick:  # compile-bound at these sizes: XLA's cheap pipeline everywhere
        args.warmup, args.e2e_seconds, args.update_seconds = 100, 0.2, 0.2
        quick_env = {"JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
    revflow_env.update(quick_env)
    official_env = {**os.environ, **quick_env}

    probes = {"revflow": probe(args.revflow_python, REVFLOW_NEEDS, revflow_env)}
    error = probe_error("revflow's", args.revflow_python, probes["revflow"], args.quick)
    if error is None and use_official:
        probes["official"] = probe(args.official_python, OFFICIAL_NEEDS, official_env)
        error = probe_error("the authors'", args.official_python, probes["official"], args.quick)
    if error:
        print(error, file=sys.stderr)
        return 2
    if wanted and not use_official:
        print("official side skipped: no --official / --official-python given", flush=True)
    print(f"revflow's Python: jax {probes['revflow']['jax']} on {probes['revflow']['device_kind']}")

    values = ENGINE["quick" if args.quick else "reference"]
    sides: dict[str, dict[str, Any]] = {}
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "device_kind": probes["revflow"]["device_kind"],
        "probes": probes,
        "env": f"dmc:{args.env}",
        "mjx_env": args.mjx_env,
        "warmup_steps": args.warmup,
        "project_steps": args.project_steps,
        "engine_values": {"preset": values["preset"], "overrides": list(values["set"])},
        "official_overrides": OFFICIAL_QUICK if args.quick else {},
        "sides": sides,
    }
    if use_official:
        results["official_commit"] = official_commit(args.official)

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        if "engine" in args.sides or use_official:  # the official side times as many steps
            sides["engine"] = revflow_bench(
                "rfm",
                values["preset"],
                f"dmc:{args.env}",
                tmp,
                update_seconds=args.update_seconds,
                e2e_seconds=args.e2e_seconds,
                warmup_steps=args.warmup,
                sets=values["set"],
                matmul_size=256 if args.quick else None,
                python=args.revflow_python,
                child_env=revflow_env,
            )
            print(f"engine: {sides['engine']['env_steps_per_s']:.2f} env steps/s", flush=True)
        if use_official:
            row = time_official(
                args.official,
                args.official_python,
                "reference",
                args.env,
                args.warmup,
                max(int(sides["engine"]["env_steps"]), 20),
                tmp,
                OFFICIAL_QUICK if args.quick else None,
                quick_env,
            )
            sides["official"] = {**row, "updates_per_s": row["env_steps_per_s"]}
            print(f"official: {row['env_steps_per_s']:.2f} env steps/s", flush=True)
        if "compiled" in args.sides:
            sides["compiled"] = compiled_loop(
                args.revflow_python, args.mjx_env, args.seconds, args.quick, tmp, revflow_env
            )
    for row in sides.values():
        row["projected_hours"] = projected_hours(args.project_steps, row["env_steps_per_s"])
    write_json(args.out, results)

    print(f"\ndevice: {results['device_kind']}")
    print(
        f"{'side':<10} {'device':<22} {'jax':<8} {'env steps/s':>12} {'updates/s':>10} "
        f"{f'{args.project_steps // 1000}k steps (h)':>16}"
    )
    for name, row in sides.items():
        print(
            f"{name:<10} {row.get('device_kind') or '?':<22} {row.get('jax') or '?':<8} "
            f"{row['env_steps_per_s']:>12.2f} {row['updates_per_s']:>10.2f} "
            f"{row['projected_hours']:>16.2f}"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
