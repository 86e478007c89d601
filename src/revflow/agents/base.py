"""The one agent interface every algorithm implements, so the engine can train any of them.

An agent is a thin, stateless object holding its typed config and the problem sizes. All
state lives in a pytree (``TrainState``) and every method that touches arrays is a pure
function of it, so the engine can ``jax.jit`` them and fuse several updates with ``lax.scan``.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax

Array = jax.Array
Metrics = dict[str, Array]

#: Evaluation / acting modes shared by all agents (method note §6).
#: - "explore": the behaviour policy used for data collection (for RFM: Boltzmann pick among
#:   particles; for SAC: a draw from the squashed Gaussian).
#: - "best-of-n": the particle with the highest Q (the paper's evaluation protocol; for a
#:   Gaussian policy, the mean action).
#: - "sample": one stochastic draw from the policy, no particle selection.
ACT_MODES: tuple[str, ...] = ("explore", "best-of-n", "sample")


class Batch(NamedTuple):
    """A batch of transitions. ``discount`` is gamma * (1 - terminated): time-limit
    truncation is NOT a terminal, so it keeps the full discount."""

    obs: Array
    action: Array
    reward: Array
    next_obs: Array
    discount: Array


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Base class of every agent config. Subclasses are frozen dataclasses of typed fields
    with the published defaults, and override :meth:`validate` (call ``super().validate()``).

    A config is validated once, on construction (``__post_init__``): by ``cls(...)``,
    :meth:`from_preset`, :meth:`from_dict`, ``dataclasses.replace`` and tyro alike, so every
    instance in existence is valid and nothing downstream validates it again."""

    #: Presets: name -> dict of field overrides. "reference" is the published default.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"reference": {}}
    #: Values of fields that configs saved before those fields existed lack (the behaviour
    #: those runs had); a saved config is read as ``{**LEGACY_DEFAULTS, **saved}``.
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {}
    #: Fields that configs saved before the config parts carried but this agent never read;
    #: :meth:`from_dict` drops them (their value had no effect).
    DROPPED: ClassVar[frozenset[str]] = frozenset()

    #: Discount factor of the TD target. Declared here so that the training loops read it typed.
    gamma: float = 0.99
    #: Minibatch size of one update (the loops' ``--batch-size`` overrides it when given).
    batch_size: int = 256

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending field and value (called on
        construction)."""

    def to_dict(self) -> dict[str, Any]:
        """The flat dict saved as a run's ``config.json`` "agent" section."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """The validated config of a saved flat dict (``{**LEGACY_DEFAULTS, **d}``, lists as
        tuples, :attr:`DROPPED` fields removed); an unknown field is a ``ValueError``
        naming it."""
        saved = {k: v for k, v in {**cls.LEGACY_DEFAULTS, **d}.items() if k not in cls.DROPPED}
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(saved) - fields)
        if unknown:
            raise ValueError(f"saved {cls.__name__} has unknown fields {unknown}")
        return cls(**{k: _tuplify(v) for k, v in saved.items()})

    @classmethod
    def from_preset(cls, preset: str = "reference", **overrides: Any):
        if preset not in cls.PRESETS:
            raise ValueError(
                f"unknown preset {preset!r} for {cls.__name__}; available: "
                f"{', '.join(sorted(cls.PRESETS))}"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(
                f"unknown config field(s) {unknown} for {cls.__name__}; "
                f"available: {', '.join(sorted(fields))}"
            )
        return cls(**{**cls.PRESETS[preset], **overrides})


def _tuplify(value: Any) -> Any:
    return tuple(_tuplify(v) for v in value) if isinstance(value, list) else value


def require(condition: bool, field: str, value: Any, what: str) -> None:
    """Config validation helper: ``require(lr > 0, "lr", lr, "must be > 0")``."""
    if not condition:
        raise ValueError(f"invalid config: {field}={value!r} {what}")


class Agent(abc.ABC):
    """Interface of every agent. Subclasses set ``name``, ``Config`` and ``METRICS``."""

    name: ClassVar[str]
    Config: ClassVar[type[AgentConfig]]
    #: metric name -> one-line documentation (logged by ``update``; CleanRL style).
    METRICS: ClassVar[dict[str, str]] = {}
    #: Whether the fully compiled loop can train this agent: its ``init``/``act``/``update``
    #: are pure functions of (state, key, batch) with no host-side work.
    COMPILED_LOOP: ClassVar[bool] = True

    @property
    def acting_extra_fields(self) -> tuple[str, ...]:
        """Train-state fields that ``act`` reads beyond the non-target, non-optimiser ones
        (an exported policy keeps them); none for most agents."""
        return ()

    def __init__(self, config: AgentConfig, obs_dim: int, act_dim: int):
        if not isinstance(config, self.Config):
            raise TypeError(
                f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config)}"
            )
        if obs_dim < 1 or act_dim < 1:
            raise ValueError(f"obs_dim and act_dim must be >= 1, got {obs_dim}, {act_dim}")
        self.config = config
        self.obs_dim = obs_dim
        self.act_dim = act_dim

    @abc.abstractmethod
    def init(self, key: Array) -> Any:
        """Initial train state (a pytree: params, targets, optimiser states, counters)."""

    @abc.abstractmethod
    def act(self, state: Any, key: Array, obs: Array, mode: str = "explore") -> Array:
        """Actions in [-1, 1] for a batch of observations (B, obs_dim) -> (B, act_dim).
        Pure; ``mode`` (one of ACT_MODES) is static."""

    @abc.abstractmethod
    def update(self, state: Any, batch: Batch, key: Array) -> tuple[Any, Metrics]:
        """One gradient update. Pure and jittable; metrics are scalars named in METRICS."""
