"""The Python API, read like the command line.

::

    run = revflow.train(algo="rfm", env="dmc:cartpole-swingup", preset="fast", steps=20_000,
                        seed=0, run_dir="runs", eval_every=5_000, num_particles=16)
    run = revflow.load("runs/dmc_cartpole-swingup/rfm/seed0")     # or a chosen step=
    run.metrics, run.evals, run.result                             # pandas tables, result.json
    policy = run.policy(mode="best-of-n")                          # jitted, batched, seeded
    action = policy(obs)                                           # (obs_dim,) or (B, obs_dim)
    run.export("policy/");  policy = revflow.load_policy("policy/")

:func:`train` takes the options of ``revflow train``: the engine's (:class:`TrainConfig`:
``eval_every``, ``warmup_steps``, ``utd``, ...) and the algorithm config's (``--agent.<field>``:
pass ``actor_lr=...``, or ``**{"agent.actor_lr": ...}`` for a name both have, e.g.
``batch_size``, which is the engine's, as ``--batch-size`` is). Hyphens may replace
underscores. Every option is type-checked and validated as the CLI does, before any compute;
a bad one is one ``ValueError`` line naming it. ``env`` is an environment name
(:mod:`revflow.envs`) or a callable returning a gymnasium or dm_env environment (saved in the
run's config as its ``py:<module>:<qualname>`` name; see :func:`revflow.envs.factory_name`).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from revflow.agents.base import AgentConfig
from revflow.engine import TrainConfig
from revflow.policy import Policy, acting_params, save_policy

__all__ = ["Run", "load", "resume", "train"]

#: TrainConfig fields that train() takes as named arguments.
_NAMED = ("algo", "env", "seed", "steps", "run_dir")


# --------------------------------------------------------------------------------------------
# Option checking
# --------------------------------------------------------------------------------------------


def _conforms(value: Any, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is typing.Literal:
        return value in args
    if origin is tuple:
        if not isinstance(value, tuple | list):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(
            _conforms(v, a) for v, a in zip(value, args, strict=True)
        )
    return isinstance(value, tp) if isinstance(tp, type) else True


def _coerce(value: Any, tp: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if tp is float and isinstance(value, int):
        return float(value)
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _checked(cls: type, name: str, value: Any, flag: str) -> Any:
    tp = _hints(cls)[name]
    if not _conforms(value, tp):
        shown = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
        raise ValueError(f"invalid option {flag}={value!r}: expected {shown}")
    return _coerce(value, tp)


def _split_overrides(
    algo: str, overrides: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], type[AgentConfig]]:
    """``(loop options, agent options, agent config class)`` of ``train``'s keyword options,
    type-checked (``ValueError`` naming an unknown or ill-typed one)."""
    from revflow.agents.registry import get_agent_class

    config_cls = get_agent_class(algo).Config
    loop_fields = {f.name for f in dataclasses.fields(TrainConfig)} - set(_NAMED)
    agent_fields = {f.name for f in dataclasses.fields(config_cls)}
    loop: dict[str, Any] = {}
    agent: dict[str, Any] = {}
    for raw, value in overrides.items():
        key = raw.replace("-", "_")
        if key.startswith("agent."):
            field = key.removeprefix("agent.")
            if field not in agent_fields:
                raise ValueError(
                    f"unknown option {raw!r}: {config_cls.__name__} ({algo}) has no field "
                    f"{field!r}; its fields: {', '.join(sorted(agent_fields))}"
                )
            agent[field] = _checked(config_cls, field, value, raw)
        elif key in loop_fields:
            loop[key] = _checked(TrainConfig, key, value, raw)
        elif key in agent_fields:
            agent[key] = _checked(config_cls, key, value, raw)
        else:
            raise ValueError(
                f"unknown option {raw!r}: neither a loop option ({', '.join(sorted(loop_fields))}) "
                f"nor a field of {config_cls.__name__} ({algo})"
            )
    return loop, agent, config_cls


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------


def _read_table(path: Path) -> Any:
    import pandas as pd

    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


@dataclasses.dataclass
class Run:
    """A run directory: its config, logs, checkpoints and trained policy.

    ``step`` is the checkpoint :meth:`policy`, :meth:`evaluate` and :meth:`export` use (the
    latest one when loaded, unless another was chosen)."""

    path: Path
    config: Any
    agent_config: AgentConfig
    step: int | None
    compiled: bool = False
    _loaded: tuple[Any, Any, int] | None = dataclasses.field(default=None, repr=False)

    @property
    def algo(self) -> str:
        return self.config.algo

    @property
    def env(self) -> str:
        return self.config.env

    @property
    def metrics(self) -> Any:
        """``metrics.csv`` as a pandas DataFrame (``step`` and the logged update metrics)."""
        return _read_table(self.path / "metrics.csv")

    @property
    def evals(self) -> Any:
        """``eval.csv`` as a pandas DataFrame (step, mean and std of the evaluation return)."""
        return _read_table(self.path / "eval.csv")

    @property
    def result(self) -> dict[str, Any] | None:
        """``result.json`` of a finished run (None while unfinished)."""
        from revflow.engine import read_result

        return read_result(self.path)

    @property
    def checkpoints(self) -> list[int]:
        """Steps of the run's finalised checkpoints, ascending."""
        from revflow.checkpoint import list_steps

        return list_steps(self.path)

    def _agent_state(self) -> tuple[Any, Any, int]:
        if self.step is None:
            from revflow.checkpoint import CheckpointError

            raise CheckpointError(f"no checkpoint in {self.path}")
        if self._loaded is None or self._loaded[2] != self.step:
            if self.compiled:
                from revflow import compiled

                trainer, state, step = compiled.load_agent(self.path, self.step)
                self._loaded = (trainer.agent, state, step)
            else:
                from revflow import engine

                agent, state, _, step = engine.load_agent(
                    self.path, self.step, dims=_dims(self.path, self.step)
                )
                self._loaded = (agent, state, step)
        return self._loaded

    def policy(self, mode: str = "best-of-n", seed: int = 0) -> Policy:
        """The policy of checkpoint ``step`` (see :class:`revflow.policy.Policy`)."""
        agent, state, step = self._agent_state()
        info = {"algo": self.algo, "env": self.env, "run_dir": str(self.path), "step": step}
        return Policy(agent, acting_params(state, agent.acting_extra_fields), mode, seed, info)

    def evaluate(
        self, episodes: int = 10, mode: str = "best-of-n", seed: int = 12345
    ) -> tuple[float, float]:
        """``(mean, std)`` of the return over ``episodes`` episodes of the run's env (an
        engine run; as ``revflow eval``)."""
        from revflow import engine

        if self.compiled:
            raise ValueError(f"{self.path} is a compiled run: evaluate it with revflow eval")
        agent, state, _ = self._agent_state()
        mean, std, _ = engine.evaluate(agent, state, self.env, episodes, mode, seed)
        return mean, std

    def export(self, out: str | Path) -> Path:
        """Export the policy of checkpoint ``step`` to ``out`` (``revflow export``)."""
        policy = self.policy()
        return save_policy(policy, out, step=policy.info["step"])


def _dims(run_dir: Path, step: int) -> tuple[int, int] | None:
    """``(obs_dim, act_dim)`` of an engine run from its checkpoint's replay-buffer shapes
    (no environment is built); None where that checkpoint's head cannot be read (a last good
    state or a corrupt checkpoint: ``load_agent`` then builds the env and falls back)."""
    from revflow.checkpoint import CheckpointError, read_meta

    try:
        leaves = read_meta(run_dir, step)["leaves"]
    except CheckpointError:
        return None
    shapes = {leaf["path"]: leaf["shape"] for leaf in leaves}
    return int(shapes["['replay']['obs']"][-1]), int(shapes["['replay']['action']"][-1])


def _register_env(env: Any, run_env: str | None = None) -> str:
    from revflow import envs

    if isinstance(env, str):
        return env
    name = envs.factory_name(env)
    if run_env is not None and run_env != name:
        envs.register_factory(run_env, env)
        return run_env
    return name


def load(
    run_dir: str | Path, step: int | None = None, env: Callable[..., Any] | None = None
) -> Run:
    """The :class:`Run` in ``run_dir`` (of ``revflow train`` or ``train-compiled``), set to its
    checkpoint ``step`` (default: the latest). ``env``: the factory of a run trained on one
    that is registered in-process only, for :meth:`Run.evaluate` (acting needs none)."""
    from revflow import compiled, engine
    from revflow.checkpoint import CheckpointError, list_steps

    path = Path(run_dir)
    is_compiled = compiled.is_compiled_run(path)
    cfg, agent_cfg = compiled.load_run(path) if is_compiled else engine.load_run(path)
    if env is not None:
        _register_env(env, cfg.env)
    steps = list_steps(path)
    if step is not None and step not in steps:
        raise CheckpointError(
            f"no checkpoint at step {step} in {path} (available: {steps or 'none'})"
        )
    return Run(
        path,
        cfg,
        agent_cfg,
        step if step is not None else (steps[-1] if steps else None),
        is_compiled,
    )


def train(
    algo: str = "rfm",
    env: str | Callable[..., Any] = "dmc:cheetah-run",
    preset: str = "reference",
    steps: int | None = None,
    seed: int = 0,
    run_dir: str | Path = "runs",
    **overrides: Any,
) -> Run:
    """Train ``algo`` on ``env`` as ``revflow train`` does (module docstring); returns the
    finished :class:`Run` (in ``<run_dir>/<env>/<algo>/seed<seed>``, as the CLI's)."""
    from revflow import engine
    from revflow.agents.registry import get_agent_class
    from revflow.envs import make_env

    get_agent_class(algo)  # unknown algorithm: ValueError naming it
    loop, agent_opts, config_cls = _split_overrides(algo, overrides)
    for name, value, tp in (("steps", steps, int | None), ("seed", seed, int)):
        if not _conforms(value, tp):
            raise ValueError(f"invalid option {name}={value!r}: expected an int")
    env_name = _register_env(env)
    named = {"algo": algo, "env": env_name, "seed": seed, "run_dir": str(run_dir)}
    if steps is not None:
        named["steps"] = steps
    cfg = TrainConfig(**named, **loop)  # both configs validated on construction
    agent_cfg = config_cls.from_preset(preset, **agent_opts)
    make_env(cfg.env, seed=cfg.seed).close()  # a bad env fails here, before any compute
    return load(engine.train(cfg, agent_cfg))


def resume(run_dir: str | Path, env: Callable[..., Any] | None = None) -> Run:
    """Continue the run in ``run_dir`` from its latest checkpoint (``revflow train --resume``);
    ``env``: the factory of a run trained on an in-process-only one."""
    from revflow import engine

    if env is not None:
        _register_env(env, engine.load_run(run_dir)[0].env)
    return load(engine.resume(run_dir))
