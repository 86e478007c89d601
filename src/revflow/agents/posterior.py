"""The one implementation of every estimator-based ("posterior-target") agent.

Method note §3-6 and the baselines note (noise- and gradient-expectation families). All of
``rfm``, ``rfm-diffusion``, ``qne``, ``dqs`` and ``sdac`` are this class with different
configs: the policy is a generative model in the tanh latent u (action a = tanh u), and the
actor regresses its network onto an affine map of ONE posterior mean,

    E_{s, t, u_t} || f_theta(t, u_t, s, lam) - stop_grad(T_path,param(t, u_t, mu1_hat)) ||^2,
    u_t = alpha_t u1 + beta_t eps,

where mu1_hat = :func:`revflow.estimators.estimate_posterior_mean_batch` of the latent
Boltzmann target log p1(u) = min_k Q_k(s, tanh u)/lam + sum log sech^2 u (method note §4-5)
with the config's control variate, and T is the map of :mod:`revflow.paths` to the network's
parameterisation (velocity for flows, eps = E[u0 | u_t] for diffusion, method note §2).

The switches (dataclass fields of :class:`SwitchableConfig`; fixed class attributes of the
plain :class:`PosteriorTargetConfig`, which is the ``rfm`` config):

- ``policy``: ``"flow"`` (ODE sampler ``euler``/``heun`` from t_min to t_max, the reference
  actor) or ``"diffusion"`` (``ddpm`` ancestral or ``ddim`` probability-flow sampler from
  t_min to 1, where the last step lands on the x1-prediction);
- ``path``: ``linear | vp-cosine | vp-linear | ve`` (``ve`` uses ``ve_sigma_min/max``);
- ``parameterisation``: ``velocity | eps | x1`` (output of the shared network class
  :class:`revflow.networks.VelocityNet` / ``DenoiserNet``);
- ``explore_pick`` / ``train_pick``: how one action per state is chosen among
  ``num_particles`` policy samples for data collection / for training endpoints and the TD
  next action: ``boltzmann`` (prob. softmax(Q/lam)), ``best`` (highest Q) or ``sample``
  (one draw, no particles);
- ``endpoint_source``: ``policy`` (u1 from the current policy, method note §6) or
  ``replay`` (u1 = atanh of the replayed action, clipped to +-0.999, as QNE does);
- ``entropy_backup``: add ``- lam log pi(a'|s')`` to the TD target (soft critic, QNE), with
  the log-density of :func:`sampler_log_prob` (below);
- ``reward_scale``; ``actor_lr_end`` (linear decay of the actor lr, SDAC);
- ``network_init`` (``lecun`` | ``orthogonal``: kernels of the policy net and critics,
  :mod:`revflow.networks`), ``embedding`` (sinusoidal style of t and lam),
  ``actor_loss_reduction`` (squared error ``sum`` or ``mean`` over action dimensions) and
  ``critic_clip`` (``global``: one clip norm over both critics, the gradient being that of the
  ensemble-mean loss; ``per-critic``: each critic's own loss gradient clipped by its own
  norm). Class attributes (revflow's choices) except where a config makes them fields: ``rfm``
  sets the authors' (orthogonal, sin-cos-1e3, mean, per-critic).

Evaluation mode "best-of-n" always takes the highest-Q of ``num_particles`` samples; "sample"
is one plain draw; "explore" uses ``explore_pick``.

Noise end of diffusion samplers. On VP paths alpha_t -> 0 as t -> 0, and the first
sampler step multiplies the network's eps error by ~alpha_{t_1}/alpha_{t_0}. In the
unbounded tanh latent that error is not clipped: measured on Pendulum after 200 updates
(qne fast, 10 steps), starting at t_min = 1e-3 gave latent samples with median |u| ~ 170
(saturated actions, log pi ~ +460), starting at 0.02 median |u| ~ 0.9. The diffusion agents
therefore start at t_min = 0.02 (a choice: the published t_min = 1e-3 of QNE is the DATA end
in diffusion time, our t_max = 1 - 1e-3).

Log-likelihood of the policy (``entropy_backup``). a' is drawn with the DETERMINISTIC version
of the policy sampler (probability-flow DDIM for diffusion, the Euler/Heun ODE for flows) from
u(t_min) ~ N(0, s0^2 I), s0^2 = alpha_{t_min}^2 + beta_{t_min}^2, and its latent density is
the exact change of variables of that discrete map,

    log p(u_N) = log N(u_0; 0, s0^2 I) - sum_k log |det d u_{k+1} / d u_k|,

with each step's D x D Jacobian computed exactly by D forward-mode JVPs through the network
(``jax.linearize``) and ``slogdet``; then log pi(a') = log p(u_N) - sum_j log sech^2(u_N,j).
This is the discrete counterpart of the instantaneous change-of-variables integral
-int div v dt along the probability-flow ODE. We chose the exact Jacobian over a Hutchinson
trace estimate because the DDIM steps of a 20-step VP-cosine sampler are NOT small near t = 0
(the first step's Jacobian is ~ I - 0.98 I), so log det(I + M) ~ tr(M) is badly biased there,
while D JVPs per step cost about as much as D Hutchinson probes for the action sizes of
DMC/MuJoCo (D <= 17) and carry no estimator noise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import flax.struct
import jax
import jax.numpy as jnp
import optax

from revflow import estimators
from revflow.agents.base import Agent, AgentConfig, Array, Batch, Metrics, require
from revflow.agents.common import (
    CLIP_SCOPES,
    advance,
    critic_td_step,
    gradient_step,
    make_optimizer,
)
from revflow.losses import generative_loss, regression_target
from revflow.networks import EMBEDDINGS, KERNEL_INITS, Critic, VelocityNet
from revflow.paths import PATHS, VE, Path, convert, make_path
from revflow.samplers import (
    ddim_sample,
    ddpm_sample,
    flow_ode_sample,
    select_argmax,
    select_boltzmann,
)

__all__ = [
    "PICKS",
    "POLICIES",
    "PosteriorState",
    "PosteriorTargetAgent",
    "PosteriorTargetConfig",
    "SwitchableConfig",
    "parse_control_variate",
    "sampler_log_prob",
]

POLICIES: dict[str, tuple[str, ...]] = {"flow": ("euler", "heun"), "diffusion": ("ddpm", "ddim")}
# The fixed choices of the switches, as types (``--help`` lists them).
Policy = Literal["flow", "diffusion"]
PathName = Literal["linear", "vp-cosine", "vp-linear", "ve"]
Parameterisation = Literal["velocity", "eps", "x1"]
SamplerName = Literal["euler", "heun", "ddpm", "ddim"]
Pick = Literal["boltzmann", "best", "sample"]
EndpointSource = Literal["policy", "replay"]
PICKS: tuple[str, ...] = ("boltzmann", "best", "sample")
ENDPOINT_SOURCES: tuple[str, ...] = ("policy", "replay")
NET_PARAMETERISATIONS: tuple[str, ...] = ("velocity", "eps", "x1")
#: Reduction of the actor's squared error over the action dimensions.
LOSS_REDUCTIONS: tuple[str, ...] = ("sum", "mean")
#: Replayed actions are clipped to +-REPLAY_CLIP before atanh (atanh(0.999) ~ 3.8).
REPLAY_CLIP = 0.999


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
class PosteriorTargetConfig(AgentConfig):
    """Hyperparameters shared by every posterior-target agent; the field defaults are the
    reference defaults of method note §6 (the ``rfm`` agent).

    The policy switches are class attributes here (a flow on the linear path, velocity
    parameterisation, Euler sampler, Boltzmann particle picks, no entropy term): ``rfm``'s
    saved configs keep exactly the fields they had. :class:`SwitchableConfig` makes them
    fields.
    """

    #: Minibatch size of one gradient update.
    batch_size: int = 256
    #: Discount factor gamma.
    gamma: float = 0.99
    #: Polyak coefficient of the target critics.
    tau: float = 0.005
    #: Adam learning rate of the critics.
    critic_lr: float = 1e-3
    #: Adam learning rate of the policy network.
    actor_lr: float = 3e-4
    #: Global gradient-norm clip of both optimisers (0 disables).
    max_grad_norm: float = 10.0
    #: Hidden widths of each critic MLP.
    critic_hidden: tuple[int, ...] = (256, 256)
    #: Number of Q-networks in the ensemble.
    num_critics: int = 2
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
    #: K, reverse samples per posterior estimate.
    num_reverse_samples: int = 100
    #: Estimator member: none | gradient | optimal | optimal-isotropic | optimal-shrunk | <eta>.
    control_variate: str = "optimal"
    #: Ridge of the optimal coefficient's denominator.
    cv_ridge: float = 1e-4
    #: Clip of the optimal control-variate coefficient to [-cv_clip, cv_clip].
    cv_clip: float = 2.0
    #: Temperature lam of the Boltzmann target exp(Q/lam).
    lam: float = 0.02
    #: If set, lam is annealed log-linearly from ``lam`` to ``lam_end`` over
    #: ``lam_anneal_updates`` updates, then held.
    lam_end: float | None = None
    #: Updates over which lam is annealed to ``lam_end``.
    lam_anneal_updates: int = 250_000

    # Switches (fields in SwitchableConfig). ClassVar: not part of the saved rfm config.
    policy: ClassVar[str] = "flow"
    path: ClassVar[str] = "linear"
    parameterisation: ClassVar[str] = "velocity"
    sampler: ClassVar[str] = "euler"
    ve_sigma_min: ClassVar[float] = 1e-5
    ve_sigma_max: ClassVar[float] = 1.0
    time_scale: ClassVar[float] = 1.0
    explore_pick: ClassVar[str] = "boltzmann"
    train_pick: ClassVar[str] = "boltzmann"
    endpoint_source: ClassVar[str] = "policy"
    entropy_backup: ClassVar[bool] = False
    reward_scale: ClassVar[float] = 1.0
    actor_lr_end: ClassVar[float | None] = None
    lr_decay_updates: ClassVar[int] = 200_000
    network_init: ClassVar[str] = "lecun"
    embedding: ClassVar[str] = "cos-sin-1e4"
    actor_loss_reduction: ClassVar[str] = "sum"
    critic_clip: ClassVar[str] = "global"

    def validate(self) -> None:
        super().validate()
        for name in ("batch_size", "num_critics", "actor_hidden", "num_particles"):
            require(getattr(self, name) >= 1, name, getattr(self, name), "must be >= 1")
        require(self.num_flow_steps >= 1, "num_flow_steps", self.num_flow_steps, "must be >= 1")
        require(
            self.num_reverse_samples >= 1,
            "num_reverse_samples",
            self.num_reverse_samples,
            "must be >= 1",
        )
        require(self.actor_blocks >= 0, "actor_blocks", self.actor_blocks, "must be >= 0")
        require(self.embed_dim >= 2, "embed_dim", self.embed_dim, "must be >= 2")
        require(0.0 <= self.gamma <= 1.0, "gamma", self.gamma, "must be in [0, 1]")
        require(0.0 < self.tau <= 1.0, "tau", self.tau, "must be in (0, 1]")
        for name in ("critic_lr", "actor_lr", "lam"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, name, value, "must be a finite number > 0")
        require(self.max_grad_norm >= 0, "max_grad_norm", self.max_grad_norm, "must be >= 0")
        require(
            0.0 < self.t_min < self.t_max < 1.0,
            "t_min",
            (self.t_min, self.t_max),
            "(t_min, t_max) must satisfy 0 < t_min < t_max < 1",
        )
        require(
            all(int(w) >= 1 for w in self.critic_hidden) and len(self.critic_hidden) >= 1,
            "critic_hidden",
            self.critic_hidden,
            "must be a non-empty sequence of widths >= 1",
        )
        parse_control_variate(self.control_variate)
        require(self.cv_ridge >= 0, "cv_ridge", self.cv_ridge, "must be >= 0")
        require(self.cv_clip > 0, "cv_clip", self.cv_clip, "must be > 0")
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
        self._validate_switches()

    def _validate_switches(self) -> None:
        require(self.policy in POLICIES, "policy", self.policy, f"must be one of {list(POLICIES)}")
        require(
            self.sampler in POLICIES[self.policy],
            "sampler",
            self.sampler,
            f"must be one of {list(POLICIES[self.policy])} for policy={self.policy!r}",
        )
        require(self.path in PATHS, "path", self.path, f"must be one of {sorted(PATHS)}")
        require(
            self.parameterisation in NET_PARAMETERISATIONS,
            "parameterisation",
            self.parameterisation,
            f"must be one of {list(NET_PARAMETERISATIONS)}",
        )
        require(
            0.0 < self.ve_sigma_min < self.ve_sigma_max,
            "ve_sigma_min",
            (self.ve_sigma_min, self.ve_sigma_max),
            "(ve_sigma_min, ve_sigma_max) must satisfy 0 < min < max",
        )
        require(self.time_scale > 0, "time_scale", self.time_scale, "must be > 0")
        for name in ("explore_pick", "train_pick"):
            value = getattr(self, name)
            require(value in PICKS, name, value, f"must be one of {list(PICKS)}")
        require(
            self.endpoint_source in ENDPOINT_SOURCES,
            "endpoint_source",
            self.endpoint_source,
            f"must be one of {list(ENDPOINT_SOURCES)}",
        )
        require(
            math.isfinite(self.reward_scale) and self.reward_scale > 0,
            "reward_scale",
            self.reward_scale,
            "must be a finite number > 0",
        )
        for name, choices in (
            ("network_init", KERNEL_INITS),
            ("embedding", tuple(EMBEDDINGS)),
            ("actor_loss_reduction", LOSS_REDUCTIONS),
            ("critic_clip", CLIP_SCOPES),
        ):
            value = getattr(self, name)
            require(value in choices, name, value, f"must be one of {list(choices)}")
        if self.actor_lr_end is not None:
            require(self.actor_lr_end > 0, "actor_lr_end", self.actor_lr_end, "must be > 0")
            require(self.lr_decay_updates >= 1, "lr_decay_updates", self.lr_decay_updates, ">= 1")


@dataclasses.dataclass(frozen=True)
class SwitchableConfig(PosteriorTargetConfig):
    """:class:`PosteriorTargetConfig` with the policy switches as (saved, CLI-settable)
    fields; defaults are the reference flow, subclasses set their published defaults."""

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
    #: Particle pick of data collection: boltzmann | best | sample.
    explore_pick: Pick = "boltzmann"
    #: Particle pick of training endpoints and of the TD next action.
    train_pick: Pick = "boltzmann"
    #: Training endpoints u1: "policy" samples or atanh of the "replay" actions.
    endpoint_source: EndpointSource = "policy"
    #: Soft TD target r + discount (min Qbar - lam log pi(a'|s')) (module docstring).
    entropy_backup: bool = False
    #: Rewards are multiplied by this in the TD target.
    reward_scale: float = 1.0
    #: If set, the actor lr decays linearly to this over ``lr_decay_updates`` updates.
    actor_lr_end: float | None = None
    #: Updates over which the actor lr decays to ``actor_lr_end``.
    lr_decay_updates: int = 200_000


@dataclasses.dataclass(frozen=True)
class DiffusionConfig(SwitchableConfig):
    """Switch defaults of the diffusion baselines (baselines note): VP-cosine path,
    eps-prediction, 20 ancestral (DDPM) steps, network time input 1000 t."""

    policy: Policy = "diffusion"
    path: PathName = "vp-cosine"
    parameterisation: Parameterisation = "eps"
    sampler: SamplerName = "ddpm"
    num_flow_steps: int = 20
    #: Noise end of the sampler (and of training t): 0.02, not 1e-3; see the module docstring.
    t_min: float = 0.02
    t_max: float = 1.0 - 1e-3
    time_scale: float = 1000.0


@flax.struct.dataclass
class PosteriorState:
    """Everything a posterior-target update reads and writes (a pytree)."""

    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    actor_opt: Any
    critic_opt: Any
    #: Number of updates applied so far (drives the lam schedule).
    step: Array


def sampler_log_prob(
    step_fn: Callable[[Array, Array], Array],
    x_init: Array,
    log_p_init: Array,
    num_steps: int,
) -> tuple[Array, Array]:
    """Push ``x_init`` (B, D) through ``num_steps`` deterministic steps ``x <- step_fn(k, x)``
    and track the exact log density: ``log p <- log p - log|det d step / d x|`` per row.

    ``step_fn`` must act row-wise (row b of the output depends only on row b of x); each
    row's D x D Jacobian is built from D JVPs. Returns ``(x_N, log p(x_N))`` of shapes
    (B, D), (B,). Module docstring: the discrete change of variables of the sampler.
    """
    d = x_init.shape[-1]
    basis = jnp.broadcast_to(jnp.eye(d, dtype=x_init.dtype)[:, None, :], (d, *x_init.shape))

    def body(carry: tuple[Array, Array], k: Array) -> tuple[tuple[Array, Array], None]:
        x, logp = carry
        x_next, jvp_fn = jax.linearize(lambda y: step_fn(k, y), x)
        cols = jax.vmap(jvp_fn)(basis)  # (D_in, B, D_out): column j of every row's Jacobian
        jac = jnp.moveaxis(cols, 0, -1)  # (B, D_out, D_in)
        _, logdet = jnp.linalg.slogdet(jac)
        return (x_next, logp - logdet), None

    (x, logp), _ = jax.lax.scan(body, (x_init, log_p_init), jnp.arange(num_steps))
    return x, logp


class PosteriorTargetAgent(Agent):
    """Shared machinery of the posterior-target agents (module docstring). Subclasses set
    ``name``, ``Config`` and ``METRICS`` and may override :meth:`temperature_of`,
    :meth:`act` or :meth:`update` for method-specific rules."""

    Config: ClassVar[type[AgentConfig]] = PosteriorTargetConfig
    State: ClassVar[type] = PosteriorState
    METRICS: ClassVar[dict[str, str]] = {
        "critic_loss": "mean squared TD error, averaged over the critic ensemble",
        "actor_loss": "regression loss ||f_theta - target(mu1)||^2, mean over the batch",
        "q_mean": "mean online Q(s, a) over batch and ensemble, at the replayed actions",
        "q_std": "standard deviation of online Q(s, a) over batch and ensemble",
        "target_q_mean": "mean TD target",
        "critic_grad_norm": "global L2 norm of the critic gradient (before clipping)",
        "actor_grad_norm": "global L2 norm of the policy-net gradient (before clipping)",
        "lam": "temperature lam of the Boltzmann target",
        "ess_mean": "mean effective sample size 1/sum w^2 of the K reverse samples",
        "ess_min": "smallest effective sample size in the batch",
        "cv_coefficient_mean": "mean control-variate coefficient c over batch and dims",
        "cv_coefficient_abs_max": "largest |c| in the batch",
        "posterior_variance_mean": "mean delta-method variance of the mu1 estimate",
        "policy_q_mean": "mean min_k Q(s, a) of the training endpoints",
        "target_norm": "mean L2 norm of mu1 - mu0 (the linear path's velocity target)",
    }

    config: PosteriorTargetConfig

    def __init__(self, config: PosteriorTargetConfig, obs_dim: int, act_dim: int):
        super().__init__(config, obs_dim, act_dim)
        c = config
        self.control_variate = parse_control_variate(c.control_variate)
        if c.path == "ve":
            self.path: Path = VE(sigma_min=c.ve_sigma_min, sigma_max=c.ve_sigma_max)
        else:
            self.path = make_path(c.path)
        self.velocity_net = VelocityNet(
            out_dim=act_dim,
            hidden=c.actor_hidden,
            num_blocks=c.actor_blocks,
            time_embed_dim=c.embed_dim,
            temp_embed_dim=c.embed_dim,
            kernel_init=c.network_init,
            embedding=c.embedding,
        )
        self.critic_net = Critic(
            num_critics=c.num_critics, hidden=tuple(c.critic_hidden), kernel_init=c.network_init
        )
        with jax.ensure_compile_time_eval():
            a0, b0 = self.path.alpha(c.t_min), self.path.beta(c.t_min)
            self._diffusion_init_scale = float(jnp.sqrt(a0**2 + b0**2))
        actor_lr: Any = c.actor_lr
        if c.actor_lr_end is not None:
            actor_lr = optax.linear_schedule(c.actor_lr, c.actor_lr_end, c.lr_decay_updates)
        self.actor_opt = make_optimizer(actor_lr, c.max_grad_norm)
        self.critic_opt = make_optimizer(c.critic_lr, c.max_grad_norm, c.critic_clip)

    # -- state ------------------------------------------------------------------------------

    def _extra_state(self, key: Array) -> dict[str, Any]:
        """Additional state fields of a subclass's ``State`` (none here)."""
        return {}

    def init(self, key: Array) -> PosteriorState:
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros((1, self.obs_dim), jnp.float32)
        act = jnp.zeros((1, self.act_dim), jnp.float32)
        actor_params = self.velocity_net.init(k_actor, 0.5, act, obs, self.config.lam)
        critic_params = self.critic_net.init(k_critic, obs, act)
        return self.State(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=critic_params,
            actor_opt=self.actor_opt.init(actor_params),
            critic_opt=self.critic_opt.init(critic_params),
            step=jnp.zeros((), jnp.int32),
            **self._extra_state(key),
        )

    def temperature(self, step: Array) -> Array:
        """lam at a given update count: constant, or log-linear from lam to lam_end."""
        c = self.config
        if c.lam_end is None:
            return jnp.asarray(c.lam, jnp.float32)
        frac = jnp.clip(jnp.asarray(step).astype(jnp.float32) / c.lam_anneal_updates, 0.0, 1.0)
        return jnp.exp((1.0 - frac) * math.log(c.lam) + frac * math.log(c.lam_end))

    def temperature_of(self, state: Any) -> Array:
        """lam used with a train state (SDAC overrides: a learned temperature)."""
        return self.temperature(state.step)

    # -- policy -----------------------------------------------------------------------------

    def q_min(self, critic_params: Any, obs: Array, action: Array) -> Array:
        """min_k Q_k(s, a); leading dims of obs and action broadcast."""
        return jnp.min(self.critic_net.apply(critic_params, obs, action), axis=0)

    def _net_as(self, params: Any, t: Array, u: Array, lam: Array, feats: Array, dst: str) -> Array:
        """The policy network's output at scalar t, converted to parameterisation ``dst``."""
        c = self.config
        tt = t if c.time_scale == 1.0 else c.time_scale * t
        out = self.velocity_net.apply(params, tt, u, lam=lam, cond_features=feats)
        if c.parameterisation == dst:
            return out
        return convert(self.path, t, u, out, c.parameterisation, dst)

    def _init_scale(self) -> float:
        """Std of the diffusion sampler's start: the marginal std at t_min for x1 ~ N(0, I)."""
        return self._diffusion_init_scale

    def sample_particles(
        self, actor_params: Any, key: Array, obs: Array, lam: Array, num_particles: int
    ) -> Array:
        """Latent samples u1 of shape (B, N, act_dim) for obs (B, obs_dim).

        The state's first-layer product is computed once per state and t/lam are scalars,
        so their embedding products are computed once per step (method note §7).
        """
        c = self.config
        feats = self.velocity_net.apply(actor_params, obs, method=VelocityNet.embed_cond)
        feats = feats[:, None, :]  # broadcast over particles
        shape = (obs.shape[0], num_particles, self.act_dim)
        if c.policy == "flow":
            u0 = jax.random.normal(key, shape, obs.dtype)

            def velocity(t: Array, u: Array) -> Array:
                return self._net_as(actor_params, t, u, lam, feats, "velocity")

            return flow_ode_sample(
                velocity, u0, c.num_flow_steps, c.t_min, c.t_max, method=c.sampler, unroll=True
            )
        k_init, k_steps = jax.random.split(key)
        u_init = self._init_scale() * jax.random.normal(k_init, shape, obs.dtype)

        def eps_fn(t: Array, u: Array) -> Array:
            return self._net_as(actor_params, t, u, lam, feats, "eps")

        if c.sampler == "ddim":
            return ddim_sample(eps_fn, u_init, self.path, c.num_flow_steps, c.t_min, 1.0)
        return ddpm_sample(eps_fn, k_steps, u_init, self.path, c.num_flow_steps, c.t_min, 1.0)

    def sample_with_log_prob(
        self, actor_params: Any, key: Array, obs: Array, lam: Array
    ) -> tuple[Array, Array]:
        """One latent sample per state from the deterministic sampler and its exact latent
        log density (module docstring): ``(u (B, D), log p(u) (B,))``."""
        c = self.config
        feats = self.velocity_net.apply(actor_params, obs, method=VelocityNet.embed_cond)
        shape = (obs.shape[0], self.act_dim)
        n = c.num_flow_steps
        if c.policy == "flow":
            scale, t_end = 1.0, c.t_max
        else:
            scale, t_end = self._init_scale(), 1.0
        ts = c.t_min + (t_end - c.t_min) * jnp.arange(n + 1, dtype=jnp.float32) / n
        u_init = scale * jax.random.normal(key, shape, obs.dtype)
        log_p0 = jnp.sum(
            -0.5 * (u_init / scale) ** 2 - 0.5 * math.log(2 * math.pi) - math.log(scale), -1
        )

        def step(k: Array, u: Array) -> Array:
            t, t_next = ts[k], ts[k + 1]
            if c.policy == "flow":
                v = self._net_as(actor_params, t, u, lam, feats, "velocity")
                if c.sampler == "euler":
                    return u + (t_next - t) * v
                v_next = self._net_as(
                    actor_params, t_next, u + (t_next - t) * v, lam, feats, "velocity"
                )
                return u + 0.5 * (t_next - t) * (v + v_next)
            a_t, b_t = self.path.alpha(t), self.path.beta(t)
            a_n, b_n = self.path.alpha(t_next), self.path.beta(t_next)
            eps = self._net_as(actor_params, t, u, lam, feats, "eps")
            return a_n * (u - b_t * eps) / a_t + b_n * eps  # DDIM (eta = 0)

        return sampler_log_prob(step, u_init, log_p0, n)

    def _policy_latent(
        self,
        state: Any,
        key: Array,
        obs: Array,
        pick: str,
        critic_params: Any = None,
    ) -> tuple[Array, Array]:
        """Latent actions (B, act_dim) and their min-Q, chosen among particles by ``pick``."""
        critic_params = state.critic_params if critic_params is None else critic_params
        lam = self.temperature_of(state)
        k_particles, k_pick = jax.random.split(key)
        n = 1 if pick == "sample" else self.config.num_particles
        u = self.sample_particles(state.actor_params, k_particles, obs, lam, n)
        q = self.q_min(critic_params, obs[:, None, :], jnp.tanh(u))  # (B, N)
        # Select particle and its Q together: append Q as an extra coordinate.
        uq = jnp.concatenate([u, q[..., None]], axis=-1)
        if pick == "boltzmann":
            picked = select_boltzmann(k_pick, uq, q / lam)
            return picked[..., :-1], picked[..., -1]
        if pick == "best":
            picked = select_argmax(uq, q)
            return picked[..., :-1], picked[..., -1]
        if pick == "sample":
            return u[:, 0], q[:, 0]
        raise ValueError(f"unknown particle pick {pick!r}; expected one of {PICKS}")

    def _mode_pick(self, mode: str) -> str:
        picks = {"explore": self.config.explore_pick, "best-of-n": "best", "sample": "sample"}
        if mode not in picks:
            raise ValueError(f"unknown act mode {mode!r}; expected explore, best-of-n or sample")
        return picks[mode]

    def act(self, state: Any, key: Array, obs: Array, mode: str = "explore") -> Array:
        return jnp.tanh(self._policy_latent(state, key, obs, self._mode_pick(mode))[0])

    # -- update -----------------------------------------------------------------------------

    def posterior(
        self, critic_params: Any, key: Array, obs: Array, u_t: Array, t: Array, lam: Array
    ) -> estimators.PosteriorEstimate:
        """mu1 = E[u1 | u_t] of the latent Boltzmann target (method note §4-5)."""
        c = self.config

        def log_target(action: Array, o: Array) -> Array:
            return self.q_min(critic_params, o, action) / lam

        post = estimators.estimate_posterior_mean_batch(
            key,
            log_target,
            u_t,
            t,
            self.path,
            c.num_reverse_samples,
            control_variate=self.control_variate,
            ridge=c.cv_ridge,
            clip=c.cv_clip,
            latent_tanh=True,
            cond=obs,
        )
        return jax.lax.stop_gradient(post)

    def noisy_points(self, key_t: Array, key_eps: Array, u1: Array) -> tuple[Array, Array]:
        """t ~ U[t_min, t_max] per row and u_t = alpha_t u1 + beta_t eps."""
        c = self.config
        t = jax.random.uniform(key_t, (u1.shape[0],), minval=c.t_min, maxval=c.t_max)
        eps = jax.random.normal(key_eps, u1.shape, u1.dtype)
        u_t = self.path.alpha(t)[:, None] * u1 + self.path.beta(t)[:, None] * eps
        return t, u_t

    def regression_target(self, t: Array, u_t: Array, post: estimators.PosteriorEstimate):
        """The network's regression target: the parameterisation's map of mu1 (method §2)."""
        return regression_target(self.path, t, u_t, post.x1, self.config.parameterisation)

    def actor_loss(
        self,
        params: Any,
        obs: Array,
        t: Array,
        u_t: Array,
        post: estimators.PosteriorEstimate,
        lam: Array,
    ) -> Array:
        """Squared error of the policy net against :meth:`regression_target`, summed or
        averaged over action dimensions (``actor_loss_reduction``), mean over the batch."""
        c = self.config

        def predict(tt: Array, x: Array) -> Array:
            tt = tt if c.time_scale == 1.0 else c.time_scale * tt
            return self.velocity_net.apply(params, tt, x, obs, lam)

        loss = generative_loss(predict, self.path, t, u_t, post.x1, c.parameterisation)
        return loss / self.act_dim if c.actor_loss_reduction == "mean" else loss

    def _td_target(
        self, state: Any, key: Array, batch: Batch, lam: Array
    ) -> tuple[Array, dict[str, Array]]:
        c = self.config
        reward = batch.reward if c.reward_scale == 1.0 else c.reward_scale * batch.reward
        extra: dict[str, Array] = {}
        if c.entropy_backup:
            u_next, logp_u = self.sample_with_log_prob(state.actor_params, key, batch.next_obs, lam)
            log_pi = logp_u - jnp.sum(estimators.log_sech2(u_next), axis=-1)
            next_q = self.q_min(state.target_critic_params, batch.next_obs, jnp.tanh(u_next))
            next_q = next_q - lam * log_pi
            extra["next_log_pi_mean"] = jnp.mean(log_pi)
        else:
            u_next, _ = self._policy_latent(state, key, batch.next_obs, c.train_pick)
            next_q = self.q_min(state.target_critic_params, batch.next_obs, jnp.tanh(u_next))
            if "next_log_pi_mean" in self.METRICS:
                extra["next_log_pi_mean"] = jnp.zeros((), jnp.float32)
        return reward + batch.discount * jax.lax.stop_gradient(next_q), extra

    def update(self, state: Any, batch: Batch, key: Array) -> tuple[Any, Metrics]:
        """One critic step then one actor step (method note §6, steps 1-5)."""
        c = self.config
        k_end, k_next, k_t, k_eps, k_post = jax.random.split(key, 5)
        lam = self.temperature_of(state)

        # 1. training endpoints u1; 2. the TD target from s' and the critic step.
        if c.endpoint_source == "replay":
            u1 = jnp.arctanh(jnp.clip(batch.action, -REPLAY_CLIP, REPLAY_CLIP))
            policy_q = self.q_min(state.critic_params, batch.obs, jnp.tanh(u1))
        else:
            u1, policy_q = self._policy_latent(state, k_end, batch.obs, c.train_pick)
        u1 = jax.lax.stop_gradient(u1)
        target, extra = self._td_target(state, k_next, batch, lam)
        critic_params, critic_opt, metrics = critic_td_step(
            self.critic_net,
            self.critic_opt,
            state.critic_params,
            state.critic_opt,
            batch,
            target,
            per_critic=c.critic_clip == "per-critic",
        )

        # 3. noisy points on the path; 4. posterior targets from the fresh critics.
        t, u_t = self.noisy_points(k_t, k_eps, u1)
        post = self.posterior(critic_params, k_post, batch.obs, u_t, t, lam)

        # 5. regression onto the parameterisation's map of mu1.
        def actor_loss_fn(params: Any) -> Array:
            return self.actor_loss(params, batch.obs, t, u_t, post, lam)

        actor = gradient_step(actor_loss_fn, self.actor_opt, state.actor_params, state.actor_opt)
        new_state = advance(
            state, actor=actor, critic_params=critic_params, critic_opt=critic_opt, tau=c.tau
        )
        diag = estimators.posterior_diagnostics(post)
        metrics.update(
            actor_loss=actor.loss,
            actor_grad_norm=actor.grad_norm,
            lam=lam,
            ess_mean=diag["ess_mean"],
            ess_min=diag["ess_min"],
            cv_coefficient_mean=diag["coefficient_mean"],
            cv_coefficient_abs_max=diag["coefficient_abs_max"],
            posterior_variance_mean=diag["variance_mean"],
            policy_q_mean=jnp.mean(policy_q),
            target_norm=jnp.mean(jnp.linalg.norm(post.x1 - post.x0, axis=-1)),
            **extra,
        )
        return new_state, metrics
