"""Config parts: groups of fields (with their validation) that an agent's config is composed
of, so that a config carries only the fields its agent reads.

An agent config is a frozen dataclass deriving from the parts it uses (its fields stay flat:
``--agent.critic-lr``, ``agent.critic_lr=`` in sweeps, ``critic_lr=`` in ``revflow.api`` and
the flat ``"agent"`` section of a saved config.json). Every part's :meth:`validate` calls
``super().validate()``, so one call checks every part. A part's switches that an agent does
not expose stay class attributes (fixed choices), which a part deriving from it turns into
fields (e.g. :class:`PolicySwitchFields`).

Presets shared by several agents are constants here (:data:`FAST_DIFFUSION`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Literal

from revflow import estimators
from revflow.agents.base import AgentConfig, require
from revflow.agents.common import CLIP_SCOPES
from revflow.agents.policies import PICKS
from revflow.networks import EMBEDDINGS, KERNEL_INITS
from revflow.paths import PATHS

__all__ = [
    "FAST_DIFFUSION",
    "REVFLOW_NETWORK",
    "UNREAD_ESTIMATOR_FIELDS",
    "UNREAD_TEMPERATURE_FIELDS",
    "AuthorsNetworkFields",
    "CriticFields",
    "DiffusionAgentFields",
    "DiffusionPolicyFields",
    "EstimatorFields",
    "LatentPolicyFields",
    "OptimiserFields",
    "PickFields",
    "PolicySwitchFields",
    "TemperatureFields",
    "parse_control_variate",
    "require_positive",
]

POLICIES: dict[str, tuple[str, ...]] = {"flow": ("euler", "heun"), "diffusion": ("ddpm", "ddim")}
# The fixed choices of the switches, as types (``--help`` lists them).
Policy = Literal["flow", "diffusion"]
PathName = Literal["linear", "vp-cosine", "vp-linear", "ve"]
Parameterisation = Literal["velocity", "eps", "x1"]
SamplerName = Literal["euler", "heun", "ddpm", "ddim"]
Pick = Literal["boltzmann", "best", "sample"]
NET_PARAMETERISATIONS: tuple[str, ...] = ("velocity", "eps", "x1")

#: Fields of the estimator part and the posterior objective's switches: configs saved before
#: the config parts carried them on agents that never read them (``AgentConfig.DROPPED``).
UNREAD_ESTIMATOR_FIELDS: frozenset[str] = frozenset(
    {"num_reverse_samples", "control_variate", "cv_ridge", "cv_clip", "endpoint_source",
     "entropy_backup"}
)  # fmt: skip
#: The temperature part's fields (``AgentConfig.DROPPED`` of agents without a fixed lam).
UNREAD_TEMPERATURE_FIELDS: frozenset[str] = frozenset({"lam", "lam_end", "lam_anneal_updates"})

#: The ``fast`` preset of the diffusion agents: fewer particles and sampler steps, a narrower
#: policy network (chosen by measurement: README, "Throughput").
FAST_DIFFUSION: dict[str, Any] = {
    "num_particles": 8,
    "num_flow_steps": 10,
    "actor_hidden": 128,
    "embed_dim": 64,
}


def require_positive(config: Any, *names: str) -> None:
    """``require`` that each field ``names`` of ``config`` is a finite number > 0."""
    for name in names:
        value = getattr(config, name)
        require(math.isfinite(value) and value > 0, name, value, "must be a finite number > 0")


def _widths(value: Any, name: str) -> None:
    value = tuple(value)
    require(
        len(value) >= 1 and all(int(w) >= 1 for w in value),
        name,
        value,
        "must be a non-empty sequence of widths >= 1",
    )


def _choice(config: Any, name: str, choices: Any) -> None:
    value = getattr(config, name)
    require(value in choices, name, value, f"must be one of {list(choices)}")


def parse_control_variate(value: str) -> str | float:
    """A name in ``estimators.CONTROL_VARIATES`` or a number eta as text."""
    if value in estimators.CONTROL_VARIATES:
        return value
    try:
        eta = float(value)
    except ValueError:
        raise ValueError(
            f"invalid config: control_variate={value!r} must be a number eta or one of "
            f"{', '.join(estimators.CONTROL_VARIATES)}"
        ) from None
    if not math.isfinite(eta):
        raise ValueError(f"invalid config: control_variate={value!r} must be finite")
    return eta


@dataclasses.dataclass(frozen=True)
class OptimiserFields(AgentConfig):
    """Adam learning rates of actor and critics, gradient clipping and Polyak targets."""

    #: Polyak coefficient of the target critics.
    tau: float = 0.005
    #: Adam learning rate of the critics.
    critic_lr: float = 1e-3
    #: Adam learning rate of the policy network.
    actor_lr: float = 3e-4
    #: Global gradient-norm clip of both optimisers (0 disables).
    max_grad_norm: float = 10.0

    def validate(self) -> None:
        super().validate()
        require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        require(0.0 <= self.gamma <= 1.0, "gamma", self.gamma, "must be in [0, 1]")
        require(0.0 < self.tau <= 1.0, "tau", self.tau, "must be in (0, 1]")
        require_positive(self, "critic_lr", "actor_lr")
        require(self.max_grad_norm >= 0, "max_grad_norm", self.max_grad_norm, "must be >= 0")


@dataclasses.dataclass(frozen=True)
class CriticFields(AgentConfig):
    """The Q-ensemble (``agents.critics.CriticEnsemble``)."""

    #: Hidden widths of each critic MLP.
    critic_hidden: tuple[int, ...] = (256, 256)
    #: Number of Q-networks in the ensemble.
    num_critics: int = 2
    #: Compute each state's first-layer product once and share it across every action the
    #: critic scores at that state (reverse samples, particles); equal to the plain critic up
    #: to float reassociation (``agents.critics.shared_state_q_values``).
    critic_shared_state: bool = False

    #: Critic gradient clipping scope (a field where an agent exposes it).
    critic_clip: ClassVar[str] = "global"
    #: Hidden activation of the critics (a field where an agent exposes it).
    critic_activation: ClassVar[str] = "relu"

    def validate(self) -> None:
        super().validate()
        require(self.num_critics >= 1, "num_critics", self.num_critics, "must be >= 1")
        _widths(self.critic_hidden, "critic_hidden")
        _choice(self, "critic_clip", CLIP_SCOPES)


@dataclasses.dataclass(frozen=True)
class LatentPolicyFields(AgentConfig):
    """The flow / diffusion policy in the tanh latent (``agents.policies.LatentPolicy``):
    network sizes, particles and the sampler's grid. Its switches are class attributes
    here (a flow on the linear path, velocity parameterisation, Euler sampler, Boltzmann
    particle picks); :class:`PolicySwitchFields` makes them fields."""

    #: Width of the policy network.
    actor_hidden: int = 256
    #: Residual blocks of the policy network.
    actor_blocks: int = 2
    #: Sinusoidal embedding size of t and of lam.
    embed_dim: int = 128
    #: Particles per state, for acting and for training endpoints.
    num_particles: int = 32
    #: Steps of the policy sampler (Euler steps of the flow ODE, or diffusion steps).
    num_flow_steps: int = 10
    #: Sampler start time; flows integrate to t_max, diffusion samplers to 1. Training
    #: times are t ~ U[t_min, t_max].
    t_min: float = 0.01
    #: End time of the flow sampler and upper end of the training times.
    t_max: float = 0.99

    policy: ClassVar[str] = "flow"
    path: ClassVar[str] = "linear"
    parameterisation: ClassVar[str] = "velocity"
    sampler: ClassVar[str] = "euler"
    ve_sigma_min: ClassVar[float] = 1e-5
    ve_sigma_max: ClassVar[float] = 1.0
    time_scale: ClassVar[float] = 1.0
    explore_pick: ClassVar[str] = "boltzmann"
    train_pick: ClassVar[str] = "boltzmann"
    reward_scale: ClassVar[float] = 1.0
    actor_lr_end: ClassVar[float | None] = None
    lr_decay_updates: ClassVar[int] = 200_000
    network_init: ClassVar[str] = "lecun"
    embedding: ClassVar[str] = "cos-sin-1e4"

    def validate(self) -> None:
        super().validate()
        for name in ("actor_hidden", "num_particles", "num_flow_steps"):
            require(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        require(self.actor_blocks >= 0, "actor_blocks", self.actor_blocks, "must be >= 0")
        require(self.embed_dim >= 2, "embed_dim", self.embed_dim, "must be >= 2")
        require(
            0.0 < self.t_min < self.t_max < 1.0,
            "t_min",
            (self.t_min, self.t_max),
            "(t_min, t_max) must satisfy 0 < t_min < t_max < 1",
        )
        _choice(self, "policy", POLICIES)
        require(
            self.sampler in POLICIES[self.policy],
            "sampler",
            self.sampler,
            f"must be one of {list(POLICIES[self.policy])} for policy={self.policy!r}",
        )
        require(self.path in PATHS, "path", self.path, f"must be one of {sorted(PATHS)}")
        _choice(self, "parameterisation", NET_PARAMETERISATIONS)
        require(
            0.0 < self.ve_sigma_min < self.ve_sigma_max,
            "ve_sigma_min",
            (self.ve_sigma_min, self.ve_sigma_max),
            "(ve_sigma_min, ve_sigma_max) must satisfy 0 < min < max",
        )
        require(self.time_scale > 0, "time_scale", self.time_scale, "must be > 0")
        _choice(self, "explore_pick", PICKS)
        _choice(self, "train_pick", PICKS)
        require_positive(self, "reward_scale")
        _choice(self, "network_init", KERNEL_INITS)
        _choice(self, "embedding", tuple(EMBEDDINGS))
        if self.actor_lr_end is not None:
            require(self.actor_lr_end > 0, "actor_lr_end", self.actor_lr_end, "must be > 0")
            require(self.lr_decay_updates >= 1, "lr_decay_updates", self.lr_decay_updates, ">= 1")


@dataclasses.dataclass(frozen=True)
class PolicySwitchFields(LatentPolicyFields):
    """:class:`LatentPolicyFields` with the policy switches as (saved, CLI-settable)
    fields; defaults are the reference flow, an agent config sets its published defaults."""

    #: "flow" (ODE sampler) or "diffusion" (DDPM / DDIM sampler).
    policy: Policy = "flow"
    #: Probability path: linear | vp-cosine | vp-linear | ve.
    path: PathName = "linear"
    #: Output of the policy network: velocity | eps | x1.
    parameterisation: Parameterisation = "velocity"
    #: euler | heun (flow), ddpm | ddim (diffusion).
    sampler: SamplerName = "euler"
    #: Geometric noise range of the "ve" path (sigma_max at t = 0, sigma_min at t = 1).
    ve_sigma_min: float = 1e-5
    #: Noise scale of the "ve" path at t = 0.
    ve_sigma_max: float = 1.0
    #: The network sees time_scale * t (1000: the DDPM timestep convention).
    time_scale: float = 1.0
    #: Rewards are multiplied by this in the TD target.
    reward_scale: float = 1.0
    #: If set, the actor lr decays linearly to this over ``lr_decay_updates`` updates.
    actor_lr_end: float | None = None
    #: Updates over which the actor lr decays to ``actor_lr_end``.
    lr_decay_updates: int = 200_000


@dataclasses.dataclass(frozen=True)
class PickFields(AgentConfig):
    """How acting and training choose one particle per state, as fields (list it before
    the policy part among a config's bases; ``LatentPolicyFields`` validates them)."""

    #: Particle pick of data collection: boltzmann | best | sample.
    explore_pick: Pick = "boltzmann"
    #: Particle pick of training endpoints and of the TD next action.
    train_pick: Pick = "boltzmann"


@dataclasses.dataclass(frozen=True)
class DiffusionPolicyFields(PolicySwitchFields):
    """Switch defaults of the diffusion baselines (baselines note): VP-cosine path,
    eps-prediction, 20 ancestral (DDPM) steps, network time input 1000 t."""

    policy: Policy = "diffusion"
    path: PathName = "vp-cosine"
    parameterisation: Parameterisation = "eps"
    sampler: SamplerName = "ddpm"
    num_flow_steps: int = 20
    #: Noise end of the sampler (and of training t): 0.02, not 1e-3
    #: (``agents.policies`` docstring).
    t_min: float = 0.02
    t_max: float = 1.0 - 1e-3
    time_scale: float = 1000.0


@dataclasses.dataclass(frozen=True)
class DiffusionAgentFields(PickFields, DiffusionPolicyFields, CriticFields, OptimiserFields):
    """The parts every diffusion baseline reads: its particle picks, the diffusion policy, the
    critics and the optimisers (an algorithm's config adds its own parts before it)."""


@dataclasses.dataclass(frozen=True)
class TemperatureFields(AgentConfig):
    """A fixed (optionally annealed) temperature lam of the Boltzmann target exp(Q/lam);
    the generative policies are conditioned on it."""

    #: Temperature lam of the Boltzmann target exp(Q/lam).
    lam: float = 0.02
    #: If set, lam is annealed log-linearly from ``lam`` to ``lam_end`` over
    #: ``lam_anneal_updates`` updates, then held.
    lam_end: float | None = None
    #: Updates over which lam is annealed to ``lam_end``.
    lam_anneal_updates: int = 250_000

    def validate(self) -> None:
        super().validate()
        require_positive(self, "lam")
        if self.lam_end is not None:
            require(
                math.isfinite(self.lam_end) and self.lam_end > 0,
                "lam_end",
                self.lam_end,
                "must be None or a finite number > 0",
            )
            require(
                self.lam_anneal_updates >= 1,
                "lam_anneal_updates",
                self.lam_anneal_updates,
                "must be >= 1",
            )


@dataclasses.dataclass(frozen=True)
class EstimatorFields(AgentConfig):
    """The posterior-mean estimator (``revflow.estimators``, method note §4-5)."""

    #: K, reverse samples per posterior estimate.
    num_reverse_samples: int = 100
    #: Estimator member: none | gradient | optimal | optimal-isotropic | optimal-shrunk | <eta>.
    control_variate: str = "optimal"
    #: Ridge of the optimal coefficient's denominator.
    cv_ridge: float = 1e-4
    #: Clip of the optimal control-variate coefficient to [-cv_clip, cv_clip].
    cv_clip: float = 2.0

    def validate(self) -> None:
        super().validate()
        require(
            self.num_reverse_samples >= 1,
            "num_reverse_samples",
            self.num_reverse_samples,
            "must be >= 1",
        )
        parse_control_variate(self.control_variate)
        require(self.cv_ridge >= 0, "cv_ridge", self.cv_ridge, "must be >= 0")
        require(self.cv_clip > 0, "cv_clip", self.cv_clip, "must be > 0")


@dataclasses.dataclass(frozen=True)
class AuthorsNetworkFields(AgentConfig):
    """The network, loss and optimiser settings of the authors' diffusion baselines as fields
    (baselines note, "Shared by all four"); list it first among a config's bases so that its
    defaults win. :data:`REVFLOW_NETWORK` is revflow's earlier choice of each."""

    #: Global gradient-norm clip of both optimisers (0 disables: the authors clip nothing).
    max_grad_norm: float = 0.0
    #: Kernel initialisation of the policy net and the critics: orthogonal | lecun.
    network_init: str = "orthogonal"
    #: Sinusoidal embedding style of t and lam: sin-cos-1e3 | cos-sin-1e4.
    embedding: str = "sin-cos-1e3"
    #: Actor squared error over action dimensions: mean | sum.
    actor_loss_reduction: str = "mean"
    #: Critic loss and clipping: per-critic (each critic its own MSE) | global.
    critic_clip: str = "per-critic"


#: revflow's earlier values of :class:`AuthorsNetworkFields` (the ``revflow`` presets).
REVFLOW_NETWORK: dict[str, Any] = {
    "max_grad_norm": 10.0,
    "network_init": "lecun",
    "embedding": "cos-sin-1e4",
    "actor_loss_reduction": "sum",
    "critic_clip": "global",
}
