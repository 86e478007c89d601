"""The ``revflow`` command line (tyro).

::

    revflow train --algo rfm --env dmc:cheetah-run --seed 0 [--steps N] [--preset fast]
                  [any engine option, e.g. --eval-every 5000] [--agent.<field> VALUE ...]
    revflow train --resume RUN_DIR
    revflow train-compiled --algo sac --env mjx:CheetahRun --num-envs 64 [--steps N] [--preset fast]
                  [any option of revflow.compiled.CompiledConfig] [--agent.<field> VALUE ...]
    revflow train-compiled --resume RUN_DIR
    revflow eval RUN_DIR [--mode best-of-n|sample] [--episodes N] [--video out.mp4]
    revflow export RUN_DIR --out DIR [--step N]
    revflow bench throughput --algo rfm [--preset reference|fast] [--env ...] [--json out.json]
    revflow sweep [FILE.yaml] [--algos ...] [--envs ...] [--seeds ...] [--set K=V] [--grid K=V1,V2]
                  [--backend local|ray] [--jobs N] [--dry-run]
    revflow report RUNS... --out DIR [--final-window N] [--normalize-ref ENV=LOW:HIGH ...]
    revflow toy [options of the 2-D toy benchmark]
    revflow sample --target MODULE:FUNCTION --dim D [--steps N] [--out DIR]

``revflow train --help`` lists every engine option and every field of the chosen algorithm's
config (``--algo`` picks which; the defaults shown are those of ``--preset``). An unknown
algorithm, environment, preset or an invalid option value prints one ``error:`` line and
exits with status 2 before any computation.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import tyro

from revflow.engine import TrainConfig

__all__ = ["EvalArgs", "ExportArgs", "main"]

USAGE = """usage: revflow {train,train-compiled,eval,export,bench,sweep,report,toy,sample} ...

Online RL with flow / diffusion policies via Reverse Flow Matching.

commands:
  train               train an agent (revflow train --help lists every option);
                      revflow train --resume RUN_DIR continues a killed run
  train-compiled      train on a JAX-native env (mjx:*) with N parallel envs, the whole
                      loop in one jitted call per chunk, sharded over all devices;
                      revflow train-compiled --resume RUN_DIR continues a killed run
  eval                evaluate the latest checkpoint of a run (train or train-compiled):
                      revflow eval RUN_DIR
  export              write a run's trained policy (parameters and config, orbax; no replay
                      buffer or optimiser state) for revflow.load_policy(DIR):
                      revflow export RUN_DIR --out DIR
  bench throughput    compile time, updates/s, env steps/s and GFLOP/s of an agent
  sweep               a grid of runs (algos x envs x seeds x overrides), local or on Ray;
                      skips finished runs, resumes interrupted ones
  report              learning curves, final-score tables (mean, std, IQM with bootstrap
                      CIs) and normalised aggregates of run directories: revflow report
                      RUNS... --out DIR
  toy                 the 2-D Boltzmann sampling toy benchmark
  sample              fit a sampler to an unnormalised log density MODULE:FUNCTION;
                      writes samples.npy and a corner plot
"""


class UsageError(Exception):
    """A bad command line: printed as one ``error:`` line, exit status 2."""


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _option_value(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name X`` / ``--name=X`` (last one wins), without parsing the rest."""
    value = None
    flags = {f"--{name}", f"--{name.replace('_', '-')}"}
    for i, token in enumerate(argv):
        flag, eq, rest = token.partition("=")
        if flag in flags:
            if eq:
                value = rest
            elif i + 1 < len(argv):
                value = argv[i + 1]
    return value


def _check_env(name: str) -> None:
    from revflow.envs import make_env

    try:
        make_env(name).close()
    except (ValueError, ImportError) as err:
        raise UsageError(str(err)) from err


def _agent_class(algo: str) -> Any:
    from revflow.agents.registry import get_agent_class

    try:
        return get_agent_class(algo)
    except ValueError as err:
        raise UsageError(str(err)) from err


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


def _parse_train_command(
    argv: Sequence[str], prog: str, loop_cls: type, doc: str, extra: list | None = None
) -> Any:
    """Parse ``--algo``/``--preset`` first, then every option of the loop config ``loop_cls``
    (un-prefixed) and of that algorithm's config (``--agent.<field>``, preset defaults)."""
    algo = _option_value(argv, "algo") or loop_cls.algo
    preset = _option_value(argv, "preset") or "reference"
    cls = _agent_class(algo)
    try:
        agent_default = cls.Config.from_preset(preset)
    except ValueError as err:
        raise UsageError(str(err)) from err
    command = dataclasses.make_dataclass(
        "TrainCommand",
        [
            (
                "train",
                Annotated[loop_cls, tyro.conf.OmitArgPrefixes],
                dataclasses.field(default=loop_cls(algo=algo)),
            ),
            ("agent", cls.Config, dataclasses.field(default=agent_default)),
            ("preset", str, dataclasses.field(default=preset)),
            *(extra or []),
        ],
    )
    command.__doc__ = doc.format(
        algo=algo,
        config=cls.Config.__name__,
        preset=preset,
        presets=", ".join(sorted(cls.Config.PRESETS)),
    )
    return tyro.cli(command, args=list(argv), prog=prog)


def _train_command(argv: Sequence[str]) -> int:
    resume = _option_value(argv, "resume")
    if resume is not None:
        others = [t for t in argv if t.partition("=")[0] != "--resume" and t != resume]
        if others:
            raise UsageError(f"--resume takes no other options (got {' '.join(others)})")
        from revflow import engine

        try:
            engine.resume(resume)
        except (FileNotFoundError, engine.ConfigMismatchError) as err:
            raise UsageError(str(err)) from err
        return 0

    parsed = _parse_train_command(
        argv,
        "revflow train",
        TrainConfig,
        "Train an agent. Agent options are those of --algo {algo} ({config}, defaults of "
        "--preset {preset}); presets: {presets}. --resume RUN_DIR continues a killed run "
        "(no other options).",
        extra=[("resume", str | None, dataclasses.field(default=None))],
    )
    cfg: TrainConfig = parsed.train
    try:
        cfg.validate()
        parsed.agent.validate()
    except ValueError as err:
        raise UsageError(str(err)) from err
    _check_env(cfg.env)

    from revflow import engine

    try:
        run_dir = engine.train(cfg, parsed.agent)
    except FileExistsError as err:
        raise UsageError(str(err)) from err
    print(f"run saved in {run_dir}")
    return 0


# --------------------------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvalArgs:
    """Evaluate the latest checkpoint of a run and report mean ± std return. A compiled run
    (revflow train-compiled) is evaluated on its own mjx: task, with the compiled loop's
    evaluation (its episode length; compiles one jitted call); its --video renders the
    task's dm_control twin (dmc:..., built-in mjx: tasks only)."""

    #: The run directory (holds config.json and checkpoints/).
    run_dir: tyro.conf.Positional[str]
    #: Acting mode: best-of-n (the reference protocol), sample or explore.
    mode: str = "best-of-n"
    #: Number of episodes (vectorised).
    episodes: int = 10
    #: Seed of the evaluation environments and policy noise.
    seed: int = 12345
    #: Also render one episode headlessly to this file (.mp4 needs imageio-ffmpeg; .gif
    #: works with plain imageio).
    video: str | None = None


def _check_video_writer(path: str) -> None:
    try:
        import imageio.v2  # noqa: F401
    except ImportError as err:
        raise UsageError("--video needs imageio: pip install imageio imageio-ffmpeg") from err
    if Path(path).suffix.lower() in (".mp4", ".mkv", ".mov", ".avi", ".webm"):
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError as err:
            raise UsageError(
                f"--video {path} needs imageio-ffmpeg for {Path(path).suffix}: "
                "pip install imageio-ffmpeg (or write a .gif)"
            ) from err


def _eval_command(argv: Sequence[str]) -> int:
    from revflow.agents.base import ACT_MODES

    args = tyro.cli(EvalArgs, args=list(argv), prog="revflow eval")
    if args.mode not in ACT_MODES:
        raise UsageError(f"unknown --mode {args.mode!r}; expected one of {', '.join(ACT_MODES)}")
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    if args.video:
        _check_video_writer(args.video)

    from revflow import compiled, engine
    from revflow.checkpoint import CheckpointError

    if compiled.is_compiled_run(args.run_dir):
        return _eval_compiled(args)
    try:
        agent, state, cfg, step = engine.load_agent(args.run_dir)
    except (FileNotFoundError, CheckpointError, engine.ConfigMismatchError) as err:
        raise UsageError(str(err)) from err
    mean, std, _ = engine.evaluate(agent, state, cfg.env, args.episodes, args.mode, args.seed)
    print(
        f"{cfg.algo} on {cfg.env}, checkpoint at step {step}, mode {args.mode}: "
        f"return {mean:.2f} ± {std:.2f} over {args.episodes} episodes"
    )
    if args.video:
        frames = engine.render_episode(agent, state, cfg.env, args.mode, args.seed)
        import imageio.v2 as imageio

        imageio.mimsave(args.video, frames, fps=30)
        print(f"video of one episode ({len(frames)} frames) written to {args.video}")
    return 0


def _eval_compiled(args: EvalArgs) -> int:
    import jax

    from revflow import compiled, engine
    from revflow.checkpoint import CheckpointError
    from revflow.mjx_tasks import DMC_NAMES

    try:
        cfg, _ = compiled.load_run(args.run_dir)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from err
    twin = DMC_NAMES.get(cfg.env.removeprefix("mjx:"))
    if args.video and twin is None:
        raise UsageError(
            f"--video renders the dm_control twin of a compiled run's task; {cfg.env} has none "
            f"(built-in twins: {', '.join('mjx:' + n for n in DMC_NAMES)})"
        )
    try:
        trainer, state, step = compiled.load_agent(
            args.run_dir, eval_episodes=args.episodes, eval_mode=args.mode
        )
    except (FileNotFoundError, CheckpointError, ValueError, ImportError) as err:
        raise UsageError(str(err)) from err
    returns = trainer.evaluate(state, jax.random.key(args.seed))
    print(
        f"{cfg.algo} on {cfg.env} (compiled run), checkpoint at step {step}, mode {args.mode}: "
        f"return {returns.mean():.2f} ± {returns.std():.2f} over {args.episodes} episodes"
    )
    if args.video:
        frames = engine.render_episode(trainer.agent, state, f"dmc:{twin}", args.mode, args.seed)
        import imageio.v2 as imageio

        imageio.mimsave(args.video, frames, fps=30)
        print(f"video of one episode of dmc:{twin} ({len(frames)} frames) written to {args.video}")
    return 0


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExportArgs:
    """Export the trained policy of a run (revflow train or train-compiled): its acting
    parameters and config in the orbax format, without replay buffer or optimiser state.
    revflow.load_policy(OUT) loads it (revflow alone, no environment)."""

    #: The run directory (holds config.json and checkpoints/).
    run_dir: tyro.conf.Positional[str]
    #: Directory to write (must not exist, or be empty).
    out: str
    #: Checkpoint step to export (default: the latest).
    step: int | None = None


def _export_command(argv: Sequence[str]) -> int:
    args = tyro.cli(ExportArgs, args=list(argv), prog="revflow export")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} already exists and is not empty; choose another --out")

    from revflow import api, engine
    from revflow.checkpoint import CheckpointError
    from revflow.policy import exported_size

    try:
        run = api.load(args.run_dir, args.step)
        if run.step is None:
            raise CheckpointError(f"no checkpoint in {args.run_dir}")
        run.export(out)
    except (FileNotFoundError, CheckpointError, engine.ConfigMismatchError, ValueError) as err:
        raise UsageError(str(err)) from err
    print(
        f"policy of {run.algo} on {run.env} (checkpoint at step {run.step}) exported to {out} "
        f"({exported_size(out):,} bytes); load it with revflow.load_policy({str(out)!r})"
    )
    return 0


# --------------------------------------------------------------------------------------------
# bench, toy, entry point
# --------------------------------------------------------------------------------------------


def _bench_command(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: revflow bench throughput [--help] [OPTIONS]")
        return 0
    if argv[0] != "throughput":
        raise UsageError(f"unknown bench {argv[0]!r}; available: throughput")
    from revflow.bench import ThroughputArgs, run_throughput

    args = tyro.cli(ThroughputArgs, args=list(argv[1:]), prog="revflow bench throughput")
    _agent_class(args.algo)
    try:
        _agent_class(args.algo).Config.from_preset(args.preset)
    except ValueError as err:
        raise UsageError(str(err)) from err
    _check_env(args.env)
    run_throughput(args)
    return 0


def _sweep_command(argv: Sequence[str]) -> int:
    from revflow.sweep import SweepArgs, SweepError, run_sweep

    args = tyro.cli(SweepArgs, args=list(argv), prog="revflow sweep")
    try:
        return run_sweep(args)
    except SweepError as err:
        raise UsageError(str(err)) from err


def _report_command(argv: Sequence[str]) -> int:
    import warnings

    from revflow.report import ReportArgs, ReportError, ReportWarning, run_report

    args = tyro.cli(ReportArgs, args=list(argv), prog="revflow report")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReportWarning)
        try:
            path = run_report(args)
        except ReportError as err:
            raise UsageError(str(err)) from err
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    print(f"report written to {path}")
    return 0


def _toy_command(argv: Sequence[str]) -> int:
    from revflow.toy.command import ToyArgs, run_toy

    run_toy(tyro.cli(ToyArgs, args=list(argv), prog="revflow toy"))
    return 0


def _sample_command(argv: Sequence[str]) -> int:
    from revflow.sampling.command import SampleArgs, run_sample

    try:
        run_sample(tyro.cli(SampleArgs, args=list(argv), prog="revflow sample"))
    except ValueError as err:
        raise UsageError(str(err)) from err
    return 0


def _train_compiled_command(argv: Sequence[str]) -> int:
    from revflow.compiled import CompiledConfig, CompiledTrainer, train_compiled
    from revflow.engine import ConfigMismatchError

    resume = _option_value(argv, "resume")
    if resume is not None:
        others = [t for t in argv if t.partition("=")[0] != "--resume" and t != resume]
        if others:
            raise UsageError(f"--resume takes no other options (got {' '.join(others)})")
        from revflow.checkpoint import CheckpointError
        from revflow.compiled import load_run

        try:  # the saved config, the devices it needs: checked before any compute
            cfg, agent_cfg = load_run(resume)
            trainer = CompiledTrainer(cfg, agent_cfg)
        except (FileNotFoundError, ValueError, ImportError) as err:
            raise UsageError(str(err)) from err
        try:
            run_dir, _ = train_compiled(cfg, agent_cfg, resume, trainer=trainer, resume=True)
        except (ConfigMismatchError, CheckpointError) as err:
            raise UsageError(str(err)) from err
        print(f"run saved in {run_dir}")
        return 0

    parsed = _parse_train_command(
        argv,
        "revflow train-compiled",
        CompiledConfig,
        "Train on a JAX-native environment (mjx:*) with the fully compiled loop "
        "(revflow.compiled): parallel envs, device-resident replay and updates in one jitted "
        "call per chunk, sharded over all visible devices. Agent options are those of --algo "
        "{algo} ({config}, defaults of --preset {preset}); presets: {presets}. --resume RUN_DIR "
        "continues a killed run from its latest checkpoint (no other options).",
        extra=[("resume", str | None, dataclasses.field(default=None))],
    )
    cfg = parsed.train
    try:
        cfg.validate()
        parsed.agent.validate()
        from revflow import jax_envs

        jax_envs.check_name(cfg.env.removeprefix("mjx:"))
        trainer = CompiledTrainer(cfg, parsed.agent)  # device-count checks, builds the envs
    except (ValueError, ImportError) as err:
        raise UsageError(str(err)) from err
    try:
        run_dir, _ = train_compiled(cfg, parsed.agent, trainer=trainer)
    except FileExistsError as err:
        raise UsageError(str(err)) from err
    print(f"run saved in {run_dir}")
    return 0


COMMANDS = {
    "train": _train_command,
    "train-compiled": _train_compiled_command,
    "eval": _eval_command,
    "export": _export_command,
    "bench": _bench_command,
    "sweep": _sweep_command,
    "report": _report_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``revflow`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    handler = {**COMMANDS, "toy": _toy_command, "sample": _sample_command}.get(command)
    if handler is None:
        return _fail(
            f"unknown command {command!r}; expected one of train, train-compiled, eval, export, "
            "bench, sweep, report, toy, sample"
        )
    try:
        return handler(rest)
    except UsageError as err:
        return _fail(str(err))


if __name__ == "__main__":
    sys.exit(main())
