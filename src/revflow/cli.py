"""The ``revflow`` command line (tyro).

::

    revflow train --algo rfm --env dmc:cheetah-run --seed 0 [--steps N] [--preset fast]
                  [any engine option, e.g. --eval-every 5000] [--agent.<field> VALUE ...]
    revflow train --resume RUN_DIR [--step N] [--agent.<field> VALUE ...] [--<option> VALUE ...]
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
    revflow list [algos|envs|presets]
    revflow --debug ...   (any command: show the traceback of an error)

``revflow train --help`` lists every engine option and every field of the chosen algorithm's
config (``--algo`` picks which; the defaults shown are those of ``--preset``). An unknown
algorithm, environment, preset or an invalid option value prints one ``error:`` line and
exits with status 2 before any computation. Every other failure a user can cause (a non-finite
loss, a full disk, a read-only run directory, a corrupt checkpoint or log) prints one
``error:`` line naming what failed and exits with status 1; Ctrl-C during training writes a
checkpoint and prints how to resume (status 130). ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from revflow.engine import TrainConfig

__all__ = ["EvalArgs", "ExportArgs", "main"]

USAGE = """usage: revflow [--debug] COMMAND ...   (COMMAND: one of the commands below)

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
  list                what exists: revflow list [algos|envs|presets]

--debug (anywhere on the line) shows the traceback of an error instead of its one line.
"""


class UsageError(Exception):
    """A bad command line: printed as one ``error:`` line, exit status 2."""


def _one_line(message: object) -> str:
    return " ".join(str(message).split()) or type(message).__name__


def _fail(message: object, status: int = 2) -> int:
    print(f"error: {_one_line(message)}", file=sys.stderr)
    return status


def _notify(message: str) -> None:
    """A progress line of the engine: warnings to stderr, the rest to stdout."""
    print(message, file=sys.stderr if message.startswith("warning:") else sys.stdout, flush=True)


def _tyro_cli(cls: Any, argv: Sequence[str], prog: str) -> Any:
    """``tyro.cli`` whose parse errors (a bad value, an unknown flag, a choice not among a
    ``Literal``'s) become one :class:`UsageError` line instead of tyro's panel."""
    import contextlib
    import io

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(cls, args=list(argv), prog=prog)
    except SystemExit as exit_:
        if exit_.code in (0, None):
            raise
        # A config's own validation error (raised on construction) without tyro's prefix.
        message = re.sub(r"^Error parsing [\w.-]+: ", "", _panel_message(captured.getvalue()))
        raise UsageError(message) from None


def _panel_message(text: str) -> str:
    """The message of a tyro error panel: its first section below the title, without the
    borders (a box on a terminal, rules of dashes otherwise)."""
    boxed = "╭" in text
    sections: list[list[str]] = [[]]
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("╭"):
            continue  # the title, inside the top border
        stripped = stripped.strip("│|").strip()
        if stripped and set(stripped) <= set("-─╰╯+"):
            sections.append([])
        elif stripped:
            sections[-1].append(stripped)
    sections = [sec for sec in sections if sec]
    body = sections[0] if boxed or len(sections) < 2 else sections[1]
    return " ".join(body) if sections else "invalid command line (see --help)"


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


def field_doc(cls: type, name: str) -> str:
    """The ``#:`` comment above field ``name`` in the nearest class of ``cls``'s MRO that
    declares it with one (a subclass that only changes a default inherits its description)."""
    import inspect

    for owner in cls.__mro__:
        if name not in inspect.get_annotations(owner):
            continue
        try:
            lines = inspect.getsource(owner).splitlines()
        except (OSError, TypeError):
            continue
        for i, line in enumerate(lines):
            if re.match(rf"\s+{name}\s*:", line):
                doc: list[str] = []
                for prev in reversed(lines[:i]):
                    if not prev.strip().startswith("#:"):
                        break
                    doc.insert(0, prev.strip()[2:].strip())
                if doc:
                    return " ".join(doc)
                break
    return ""


def _with_inherited_help(cls: type, types: dict[str, Any] | None = None) -> type:
    """``cls`` with every field's help set from :func:`field_doc` (and the annotations in
    ``types`` replaced), for tyro's ``--help``."""
    import typing

    hints = {**typing.get_type_hints(cls, include_extras=True), **(types or {})}
    fields = [
        (
            f.name,
            Annotated[hints[f.name], tyro.conf.arg(help=field_doc(cls, f.name) or None)],
            dataclasses.field(default=f.default),
        )
        for f in dataclasses.fields(cls)
    ]
    return dataclasses.make_dataclass(cls.__name__, fields, bases=(cls,), frozen=True)


def _as(cls: type, value: Any, **changes: Any) -> Any:
    """``value`` (an instance of ``cls`` or of a subclass) as a plain ``cls``."""
    return cls(**{f.name: getattr(value, f.name) for f in dataclasses.fields(cls)}, **changes)


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
    from revflow.agents.registry import available

    names = tuple(available())
    loop_shown = _with_inherited_help(loop_cls, {"algo": Literal[names]})  # lists the choices
    try:  # a loop config is validated on construction (so is every one tyro builds below)
        loop_default = loop_shown(algo=algo)
    except ValueError as err:
        raise UsageError(str(err)) from err
    agent_shown = _with_inherited_help(cls.Config)
    command = dataclasses.make_dataclass(
        "TrainCommand",
        [
            (
                "train",
                Annotated[loop_shown, tyro.conf.OmitArgPrefixes],
                dataclasses.field(default=loop_default),
            ),
            ("agent", agent_shown, dataclasses.field(default=_as(agent_shown, agent_default))),
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
    parsed = _tyro_cli(command, list(argv), prog)
    plain = loop_cls(
        **{f.name: getattr(parsed.train, f.name) for f in dataclasses.fields(loop_cls)}
    )
    return dataclasses.replace(parsed, train=plain)


def _resume_args(argv: Sequence[str], fixed: Sequence[str]) -> tuple[str, int | None, dict]:
    """``(run dir, step, changes)`` of ``--resume RUN_DIR [--step N] [--key VALUE ...]``
    (``--no-key`` sets a boolean option false); values stay text for
    :mod:`revflow.overrides`."""
    run_dir, step, changes = None, None, {}
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        flag, eq, value = tokens[i].partition("=")
        if not flag.startswith("--"):
            raise UsageError(f"unexpected argument {tokens[i]!r} (options look like --key VALUE)")
        name = flag[2:]
        if not eq and name.startswith("no-"):
            changes[name[3:]] = "false"
            i += 1
            continue
        if not eq:
            if i + 1 >= len(tokens):
                raise UsageError(f"{flag} needs a value")
            value = tokens[i + 1]
            i += 1
        i += 1
        if name == "resume":
            run_dir = value
        elif name == "step":
            try:
                step = int(value)
            except ValueError:
                raise UsageError(f"--step takes an env step (an integer), got {value!r}") from None
        elif name.replace("-", "_") in fixed:
            raise UsageError(
                f"--resume takes no other options than --step N and changed agent or loop "
                f"options; {flag} cannot change on resume (it fixes the run's identity or "
                "its replay buffer): start a new run instead"
            )
        else:
            changes[name] = value
    assert run_dir is not None
    return run_dir, step, changes


def _train_command(argv: Sequence[str]) -> int:
    resume = _option_value(argv, "resume")
    if resume is not None and not {"-h", "--help"} & set(argv):
        from revflow import engine
        from revflow.overrides import OverrideError

        run_dir, step, changes = _resume_args(argv, engine.FIXED_ON_RESUME)
        return _report_run(
            lambda: engine.resume(run_dir, step=step, changes=changes, notify=_notify),
            (FileNotFoundError, engine.ConfigMismatchError, OverrideError),
        )

    parsed = _parse_train_command(
        argv,
        "revflow train",
        TrainConfig,
        "Train an agent. Agent options are those of --algo {algo} ({config}, defaults of "
        "--preset {preset}); presets: {presets}. --resume RUN_DIR continues a killed run "
        "(--step N: from that checkpoint; other options given with it change the run's "
        "config from there on, e.g. a lower --agent.critic-lr after a non-finite loss).",
        extra=[("resume", str | None, dataclasses.field(default=None))],
    )
    cfg: TrainConfig = parsed.train  # both configs validated on construction (by tyro)
    _check_env(cfg.env)

    from revflow import engine

    return _report_run(lambda: engine.train(cfg, parsed.agent), (FileExistsError,))


def _report_run(run: Any, refused: tuple[type[BaseException], ...]) -> int:
    """Run ``run()`` (a training; it returns the run directory) and print where the run is;
    an error of ``refused`` types is a :class:`UsageError`."""
    try:
        run_dir = run()
    except refused as err:
        raise UsageError(str(err)) from err
    print(f"run saved in {run_dir}")
    return 0


# --------------------------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvalArgs:
    """Evaluate the newest intact checkpoint of a run (--step N: that one) and report mean ±
    std return; a newer checkpoint that is corrupt is skipped with a warning. A compiled run
    (revflow train-compiled) is evaluated on its own mjx: task, with the compiled loop's
    evaluation (its episode length; compiles one jitted call); its --video renders the
    task's dm_control twin (dmc:..., built-in mjx: tasks only)."""

    #: The run directory (holds config.json and checkpoints/).
    run_dir: tyro.conf.Positional[str]
    #: Acting mode: best-of-n, sample or explore (default: the run's eval_mode).
    mode: str | None = None
    #: Number of episodes, vectorised (default: the run's eval_episodes).
    episodes: int | None = None
    #: Seed of the evaluation environments and policy noise (default: the run's evaluation
    #: seeds: 0 for eval_seeds "fixed", so that the defaults repeat the run's own evaluation
    #: of that checkpoint; 12345 otherwise).
    seed: int | None = None
    #: Also render one episode headlessly to this file (.mp4 needs imageio-ffmpeg; .gif
    #: works with plain imageio).
    video: str | None = None
    #: Evaluate the checkpoint of this env step (default: the newest intact one).
    step: int | None = None


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


def _check_render(env_name: str, video: str) -> None:
    """Build ``env_name`` for rendering once (before any compute), so a missing renderer
    (pygame for Gymnasium's classic control, EGL/OSMesa for MuJoCo) is one line."""
    from revflow.envs import make_env

    try:
        env = make_env(env_name, render=True)
        try:
            env.reset(seed=0)
            env.render()
        finally:
            env.close()
    except Exception as err:  # gymnasium's DependencyNotInstalled, ImportError, GL errors
        raise UsageError(
            f"--video {video}: {env_name} cannot render here ({_one_line(err)})"
        ) from err


def _eval_command(argv: Sequence[str]) -> int:
    from revflow.agents.base import ACT_MODES

    args = _tyro_cli(EvalArgs, list(argv), "revflow eval")
    if args.mode is not None and args.mode not in ACT_MODES:
        raise UsageError(f"unknown --mode {args.mode!r}; expected one of {', '.join(ACT_MODES)}")
    if args.episodes is not None and args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    if args.video:
        _check_video_writer(args.video)

    from revflow import compiled, engine
    from revflow.checkpoint import CheckpointError

    if compiled.is_compiled_run(args.run_dir):
        return _eval_compiled(args)
    try:
        if args.video:
            _check_render(engine.load_run(args.run_dir)[0].env, args.video)
        agent, state, cfg, step = engine.load_agent(args.run_dir, args.step, notify=_notify)
    except (FileNotFoundError, CheckpointError, engine.ConfigMismatchError) as err:
        raise UsageError(str(err)) from err
    mode = args.mode or cfg.eval_mode
    episodes = args.episodes or cfg.eval_episodes
    seed = args.seed if args.seed is not None else (0 if cfg.eval_seeds == "fixed" else 12345)
    mean, std, _ = engine.evaluate(agent, state, cfg.env, episodes, mode, seed)
    print(
        f"{cfg.algo} on {cfg.env}, checkpoint at step {step}, mode {mode}: "
        f"return {mean:.2f} ± {std:.2f} over {episodes} episodes (seed {seed})"
    )
    if args.video:
        frames = engine.render_episode(agent, state, cfg.env, mode, seed)
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
            args.run_dir, args.step, eval_episodes=args.episodes, eval_mode=args.mode
        )
    except (FileNotFoundError, CheckpointError, ValueError, ImportError) as err:
        raise UsageError(str(err)) from err
    mode, seed = trainer.cfg.eval_mode, 12345 if args.seed is None else args.seed
    returns = trainer.evaluate(state, jax.random.key(seed))
    print(
        f"{cfg.algo} on {cfg.env} (compiled run), checkpoint at step {step}, mode {mode}: "
        f"return {returns.mean():.2f} ± {returns.std():.2f} over {len(returns)} episodes "
        f"(seed {seed})"
    )
    if args.video:
        frames = engine.render_episode(trainer.agent, state, f"dmc:{twin}", mode, seed)
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
    from revflow.bench import ThroughputArgs, agent_config, run_throughput

    args = _tyro_cli(ThroughputArgs, list(argv[1:]), "revflow bench throughput")
    _agent_class(args.algo)
    try:
        agent_config(args)
    except ValueError as err:
        raise UsageError(str(err)) from err
    if args.warmup_steps < 0:
        raise UsageError(f"--warmup-steps {args.warmup_steps} must be >= 0")
    _check_env(args.env)
    run_throughput(args)
    return 0


def _sweep_command(argv: Sequence[str]) -> int:
    from revflow.sweep import SweepArgs, SweepError, run_sweep

    args = _tyro_cli(SweepArgs, list(argv), "revflow sweep")
    try:
        return run_sweep(args)
    except SweepError as err:
        raise UsageError(str(err)) from err


def _report_command(argv: Sequence[str]) -> int:
    import warnings

    from revflow.report import ReportArgs, ReportError, ReportWarning, run_report

    args = _tyro_cli(ReportArgs, list(argv), "revflow report")
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

    run_toy(_tyro_cli(ToyArgs, list(argv), "revflow toy"))
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
        resume, step, others = _resume_args(argv, ())
        if others:
            raise UsageError(
                f"--resume takes no other options than --step N (got {', '.join(others)})"
            )
        from revflow.checkpoint import CheckpointError
        from revflow.compiled import load_run

        try:  # the saved config, the devices it needs: checked before any compute
            cfg, agent_cfg = load_run(resume)
            trainer = CompiledTrainer(cfg, agent_cfg)
        except (FileNotFoundError, ValueError, ImportError) as err:
            raise UsageError(str(err)) from err
        return _report_run(
            lambda: train_compiled(
                cfg, agent_cfg, resume, trainer=trainer, resume=True, step=step, notify=_notify
            )[0],
            (ConfigMismatchError, CheckpointError),
        )

    parsed = _parse_train_command(
        argv,
        "revflow train-compiled",
        CompiledConfig,
        "Train on a JAX-native environment (mjx:*) with the fully compiled loop "
        "(revflow.compiled): parallel envs, device-resident replay and updates in one jitted "
        "call per chunk, sharded over all visible devices. Agent options are those of --algo "
        "{algo} ({config}, defaults of --preset {preset}); presets: {presets}. --resume RUN_DIR "
        "continues a killed run from its newest intact checkpoint (--step N: that one).",
        extra=[("resume", str | None, dataclasses.field(default=None))],
    )
    cfg = parsed.train
    try:
        from revflow import jax_envs

        jax_envs.check_name(cfg.env.removeprefix("mjx:"))
        trainer = CompiledTrainer(cfg, parsed.agent)  # device-count checks, builds the envs
    except (ValueError, ImportError) as err:
        raise UsageError(str(err)) from err
    return _report_run(
        lambda: train_compiled(cfg, parsed.agent, trainer=trainer)[0], (FileExistsError,)
    )


# --------------------------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------------------------

LIST_TOPICS = ("algos", "envs", "presets")


def _summary(cls: type) -> str:
    """The first sentence of an agent's docstring (its module's if it has none)."""
    doc = cls.__doc__ if cls.__doc__ and cls.__doc__ is not object.__doc__ else None
    text = " ".join(
        (doc or sys.modules[cls.__module__].__doc__ or cls.__name__).split("\n\n")[0].split()
    )
    sentence = re.sub(r"\s*\([^()]*doc[^()]*\)$", "", text.split(". ")[0].rstrip("."))
    return sentence if len(sentence) <= 110 else sentence[:107] + "..."


def _list_command(argv: Sequence[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: revflow list [{'|'.join(LIST_TOPICS)}]  (default: all three)")
        return 0
    topics = list(argv) or list(LIST_TOPICS)
    bad = [t for t in topics if t not in LIST_TOPICS]
    if bad:
        raise UsageError(f"unknown list topic {bad[0]!r}; expected one of {', '.join(LIST_TOPICS)}")
    from revflow.agents.registry import available, get_agent_class

    for topic in topics:
        if topic == "algos":
            print("algorithms (revflow train --algo NAME; NAME's options: --algo NAME --help):")
            for name in available():
                print(f"  {name:14s} {_summary(get_agent_class(name))}")
        elif topic == "presets":
            print("presets (revflow train --algo NAME --preset PRESET):")
            for name in available():
                presets = get_agent_class(name).Config.PRESETS
                print(f"  {name:14s} {', '.join(sorted(presets))}")
        else:
            from revflow.envs import ENV_FAMILIES

            print("environments (revflow train --env NAME):")
            for family in ENV_FAMILIES:
                print(f"  {family.prefix}  {family.description}")
                for line in family.listing():
                    print(f"    {line}")
    return 0


COMMANDS = {
    "train": _train_command,
    "train-compiled": _train_compiled_command,
    "eval": _eval_command,
    "export": _export_command,
    "bench": _bench_command,
    "sweep": _sweep_command,
    "report": _report_command,
    "list": _list_command,
}


def _handle(handler: Any, rest: list[str]) -> int:
    """Run a command; every error becomes one ``error:`` line and an exit status: 2 for a bad
    command line or a refused request, 1 for a failure during the run, 130 for an interrupt."""
    from revflow.checkpoint import CheckpointError
    from revflow.engine import ConfigMismatchError, Interrupted, NumericalError, ResumeRefused
    from revflow.overrides import OverrideError

    try:
        return handler(rest)
    except UsageError as err:
        return _fail(err)
    except Interrupted as err:
        print(_one_line(err), file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except (ConfigMismatchError, ResumeRefused, OverrideError, FileExistsError) as err:
        return _fail(err)
    except (CheckpointError, NumericalError) as err:
        return _fail(err, 1)
    except OSError as err:  # disk full, read-only or vanished directory, permissions
        where = f"{err.filename}: " if err.filename else ""
        return _fail(f"{where}{err.strerror or err}", 1)
    except Exception as err:
        return _fail(
            f"{type(err).__name__}: {_one_line(err)} (an unexpected error: `revflow --debug "
            "...` shows its traceback)",
            1,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``revflow`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("REVFLOW_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    handler = {**COMMANDS, "toy": _toy_command, "sample": _sample_command}.get(command)
    if handler is None:
        return _fail(
            f"unknown command {command!r}; expected one of train, train-compiled, eval, export, "
            "bench, sweep, report, toy, sample, list"
        )
    if debug:
        try:
            return handler(rest)
        except UsageError as err:
            return _fail(err)
    return _handle(handler, rest)


if __name__ == "__main__":
    sys.exit(main())
