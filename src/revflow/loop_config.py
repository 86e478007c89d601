"""The options every training loop shares (:class:`LoopConfig`), validated once, when a config
is constructed. The engine's :class:`~revflow.engine.TrainConfig` and the compiled loop's
:class:`~revflow.compiled.CompiledConfig` extend it; each may change a default in its own
class (a field redeclared with another default and, if need be, its own ``#:`` description).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from revflow.agents.base import ACT_MODES, AgentConfig, require
from revflow.run_key import sanitize

__all__ = ["LoopConfig"]


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Options of a training loop (the agent's hyperparameters live in its own config)."""

    #: The section of ``config.json`` that holds this loop's options.
    SECTION: ClassVar[str] = "loop"
    #: The command that trains with this loop (named in messages).
    COMMAND: ClassVar[str] = "revflow train"
    #: Appended to the label in this loop's run directories (:func:`revflow.rundir.run_dir_for`).
    RUN_SUFFIX: ClassVar[str] = ""
    #: Values of fields that configs saved before those fields existed lack (the rule those
    #: runs followed), used when such a run is loaded or resumed.
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {}

    #: Registered algorithm name (``revflow.agents.registry.available()``).
    algo: str = "rfm"
    #: Name of this run's variant in its run directory and in reports (None: ``algo``);
    #: ``revflow sweep`` sets it for config-override grids, e.g. ``rfm.control_variate-none``.
    label: str | None = None
    #: Environment name (revflow.envs): ``dmc:<domain>-<task>``, ``gym:<Id>``,
    #: ``gym:<module>:<Id>`` or ``py:<module>:<factory>``.
    env: str = "dmc:cheetah-run"
    #: Seed of everything: network init, replay sampling, exploration, env resets.
    seed: int = 0
    #: Total environment steps.
    steps: int = 250_000
    #: Initial env steps with uniform-random actions and no updates.
    warmup_steps: int = 10_000
    #: Gradient updates per env step after warm-up (update-to-data ratio).
    utd: int = 1
    #: Minibatch size; None means the agent config's ``batch_size``.
    batch_size: int | None = None
    #: Replay capacity; None means ``steps`` (nothing is ever overwritten).
    buffer_size: int | None = None
    #: Evaluate every this many env steps (0: never, except no final evaluation either).
    eval_every: int = 10_000
    #: Episodes per evaluation (run in a vectorised environment); 25 as in the authors' code.
    eval_episodes: int = 25
    #: Acting mode of evaluation: best-of-n (the reference protocol), sample, explore.
    eval_mode: str = "best-of-n"
    #: Write a checkpoint at the first episode end after this many more env steps (0: only
    #: the final checkpoint).
    checkpoint_every: int = 50_000
    #: Finalised checkpoints kept on disk.
    keep_checkpoints: int = 2
    #: Root of run directories; a run lands in ``<run_dir>/<env>/<label or algo>/seed<seed>``
    #: (``<label or algo>-compiled`` for the compiled loop).
    run_dir: str = "runs"
    #: Write TensorBoard event files.
    tensorboard: bool = True
    #: Write ``metrics.csv`` and ``eval.csv``.
    csv: bool = True
    #: Show a live progress bar.
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid option (called on construction)."""
        require(self.steps >= 1, "steps", self.steps, "must be >= 1")
        require(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, "must be >= 0")
        require(
            self.warmup_steps < self.steps,
            "warmup_steps",
            self.warmup_steps,
            f"must be < steps={self.steps} (the run would never update its agent)",
        )
        require(self.utd >= 1, "utd", self.utd, "must be >= 1")
        for name in ("batch_size", "buffer_size"):
            value = getattr(self, name)
            require(value is None or value >= 1, name, value, "must be None or >= 1")
        require(self.eval_every >= 0, "eval_every", self.eval_every, "must be >= 0")
        require(self.eval_episodes >= 1, "eval_episodes", self.eval_episodes, "must be >= 1")
        require(
            self.eval_mode in ACT_MODES, "eval_mode", self.eval_mode, f"must be one of {ACT_MODES}"
        )
        require(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, ">= 0")
        require(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints, ">= 1")
        require(0 <= self.seed < 2**31, "seed", self.seed, "must be in [0, 2**31)")
        label = self.label
        require(
            label is None or (bool(label) and sanitize(label) == label and label.strip(".")),
            "label",
            label,
            "must be None or a non-empty name of letters, digits, '_', '.', '-' (not only dots)",
        )

    def resolved_batch_size(self, agent_cfg: AgentConfig) -> int:
        """The minibatch size: ``batch_size`` if set, else the agent config's."""
        return self.batch_size if self.batch_size is not None else agent_cfg.batch_size
