"""Reverse Flow Matching agent: a flow policy trained on posterior-mean targets.

Method note §6 is the specification; in one equation, the actor minimises

    E_{s, t, u_t} || v_theta(t, u_t, s, lam) - stop_grad(mu1_hat - mu0_hat) ||^2,
    u_t = t u1 + (1 - t) eps,  u1 ~ current policy (Boltzmann pick among particles),

where (mu1_hat, mu0_hat) = ``estimate_posterior_mean_batch`` of the latent Boltzmann target
log p1(u) = min_k Q_k(s, tanh u) / lam + sum log sech^2(u) (method note §4-5), with the
control variate of ``RFMConfig.control_variate`` ("optimal" by default; "none",
"gradient", "optimal-isotropic" or a number eta select the other members of the family).

The critic is a twin Q-ensemble with Polyak targets and TD target
r + discount * min_k Qbar_k(s', a'), a' from the current policy, no entropy term.

Policy (``act``): u(0) ~ N(0, I), ``num_flow_steps`` Euler steps of the velocity field from
t_start to t_end for ``num_particles`` particles per state; then
- "explore": one particle drawn with probability softmax(Q/lam) (data collection and
  training endpoints),
- "best-of-n": the particle with the highest Q (the paper's evaluation protocol),
- "sample": the first particle, no selection (a plain draw of the flow policy).
Q here is the minimum over the online critics. The action is tanh(u).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import optax

from revflow import estimators
from revflow.agents.base import Agent, AgentConfig, Array, Batch, Metrics, require
from revflow.agents.common import critic_td_step, make_optimizer
from revflow.agents.registry import register
from revflow.losses import generative_loss
from revflow.networks import Critic, VelocityNet
from revflow.paths import Linear
from revflow.samplers import flow_ode_sample, select_argmax, select_boltzmann

__all__ = ["RFM", "RFMConfig", "RFMState", "parse_control_variate"]


def parse_control_variate(value: str) -> str | float:
    """``"none" | "gradient" | "optimal" | "optimal-isotropic"`` or a number eta as text."""
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
class RFMConfig(AgentConfig):
    """RFM hyperparameters; defaults are the reference defaults of method note §6."""

    #: Minibatch size of one gradient update.
    batch_size: int = 256
    #: Discount factor gamma.
    gamma: float = 0.99
    #: Polyak coefficient of the target critics.
    tau: float = 0.005
    #: Adam learning rate of the critics.
    critic_lr: float = 1e-3
    #: Adam learning rate of the velocity network.
    actor_lr: float = 3e-4
    #: Global gradient-norm clip of both optimisers (0 disables).
    max_grad_norm: float = 10.0
    #: Hidden widths of each critic MLP.
    critic_hidden: tuple[int, ...] = (256, 256)
    #: Number of Q-networks in the ensemble.
    num_critics: int = 2
    #: Width of the velocity network.
    actor_hidden: int = 256
    #: Residual blocks of the velocity network.
    actor_blocks: int = 2
    #: Sinusoidal embedding size of t and of lam.
    embed_dim: int = 128
    #: Particles per state, for acting and for training endpoints.
    num_particles: int = 32
    #: Euler steps of the flow ODE.
    num_flow_steps: int = 10
    #: Integration interval of the flow ODE, and the range of the training t ~ U[t_min, t_max].
    t_min: float = 0.01
    t_max: float = 0.99
    #: K, reverse samples per posterior estimate.
    num_reverse_samples: int = 100
    #: Member of the estimator family: none | gradient | optimal | optimal-isotropic | <eta>.
    control_variate: str = "optimal"
    #: Ridge of the optimal coefficient's denominator, and its clip.
    cv_ridge: float = 1e-4
    cv_clip: float = 2.0
    #: Temperature lam of the Boltzmann target exp(Q/lam).
    lam: float = 0.02
    #: If set, lam is annealed log-linearly from ``lam`` to ``lam_end`` over
    #: ``lam_anneal_updates`` updates, then held.
    lam_end: float | None = None
    lam_anneal_updates: int = 250_000

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        # Chosen by measurement (README, "Throughput"): ~10x cheaper per update.
        "fast": {
            "num_particles": 8,
            "num_flow_steps": 5,
            "num_reverse_samples": 16,
            "actor_hidden": 128,
            "embed_dim": 64,
        },
    }

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


@flax.struct.dataclass
class RFMState:
    """Everything an RFM update reads and writes (a pytree)."""

    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    actor_opt: Any
    critic_opt: Any
    #: Number of updates applied so far (drives the lam schedule).
    step: Array


@register
class RFM(Agent):
    """Reverse Flow Matching with a flow policy in a tanh latent (module docstring)."""

    name = "rfm"
    Config = RFMConfig
    METRICS: ClassVar[dict[str, str]] = {
        "critic_loss": "mean squared TD error, averaged over the critic ensemble",
        "actor_loss": "velocity regression loss ||v - (mu1 - mu0)||^2, mean over the batch",
        "q_mean": "mean online Q(s, a) over batch and ensemble, at the replayed actions",
        "q_std": "standard deviation of online Q(s, a) over batch and ensemble",
        "target_q_mean": "mean TD target r + discount * min_k Qbar_k(s', a')",
        "critic_grad_norm": "global L2 norm of the critic gradient (before clipping)",
        "actor_grad_norm": "global L2 norm of the velocity-net gradient (before clipping)",
        "lam": "temperature lam of the Boltzmann target",
        "ess_mean": "mean effective sample size 1/sum w^2 of the K reverse samples",
        "ess_min": "smallest effective sample size in the batch",
        "cv_coefficient_mean": "mean control-variate coefficient c over batch and dims",
        "cv_coefficient_abs_max": "largest |c| in the batch",
        "posterior_variance_mean": "mean delta-method variance of the mu1 estimate",
        "policy_q_mean": "mean min_k Q(s, a) of the Boltzmann-picked training endpoints",
        "target_norm": "mean L2 norm of the velocity target mu1 - mu0",
    }

    config: RFMConfig

    def __init__(self, config: RFMConfig, obs_dim: int, act_dim: int):
        super().__init__(config, obs_dim, act_dim)
        c = config
        self.control_variate = parse_control_variate(c.control_variate)
        self.path = Linear()
        self.velocity_net = VelocityNet(
            out_dim=act_dim,
            hidden=c.actor_hidden,
            num_blocks=c.actor_blocks,
            time_embed_dim=c.embed_dim,
            temp_embed_dim=c.embed_dim,
        )
        self.critic_net = Critic(num_critics=c.num_critics, hidden=tuple(c.critic_hidden))
        self.actor_opt = make_optimizer(c.actor_lr, c.max_grad_norm)
        self.critic_opt = make_optimizer(c.critic_lr, c.max_grad_norm)

    # -- state ------------------------------------------------------------------------------

    def init(self, key: Array) -> RFMState:
        k_actor, k_critic = jax.random.split(key)
        obs = jnp.zeros((1, self.obs_dim), jnp.float32)
        act = jnp.zeros((1, self.act_dim), jnp.float32)
        actor_params = self.velocity_net.init(k_actor, 0.5, act, obs, self.config.lam)
        critic_params = self.critic_net.init(k_critic, obs, act)
        return RFMState(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=critic_params,
            actor_opt=self.actor_opt.init(actor_params),
            critic_opt=self.critic_opt.init(critic_params),
            step=jnp.zeros((), jnp.int32),
        )

    def temperature(self, step: Array) -> Array:
        """lam at a given update count: constant, or log-linear from lam to lam_end."""
        c = self.config
        if c.lam_end is None:
            return jnp.asarray(c.lam, jnp.float32)
        frac = jnp.clip(step.astype(jnp.float32) / c.lam_anneal_updates, 0.0, 1.0)
        return jnp.exp((1.0 - frac) * math.log(c.lam) + frac * math.log(c.lam_end))

    # -- policy -----------------------------------------------------------------------------

    def q_min(self, critic_params: Any, obs: Array, action: Array) -> Array:
        """min_k Q_k(s, a); leading dims of obs and action broadcast."""
        return jnp.min(self.critic_net.apply(critic_params, obs, action), axis=0)

    def sample_particles(
        self, actor_params: Any, key: Array, obs: Array, lam: Array, num_particles: int
    ) -> Array:
        """Latent endpoints u1 of shape (B, N, act_dim) for obs (B, obs_dim).

        The state's first-layer product is computed once per state and t/lam are scalars,
        so their embedding products are computed once per Euler step (method note §7).
        """
        c = self.config
        feats = self.velocity_net.apply(actor_params, obs, method=VelocityNet.embed_cond)
        feats = feats[:, None, :]  # broadcast over particles
        u0 = jax.random.normal(key, (obs.shape[0], num_particles, self.act_dim), obs.dtype)

        def velocity(t: Array, u: Array) -> Array:
            return self.velocity_net.apply(actor_params, t, u, lam=lam, cond_features=feats)

        return flow_ode_sample(velocity, u0, c.num_flow_steps, c.t_min, c.t_max, unroll=True)

    def _policy_latent(
        self, state: RFMState, key: Array, obs: Array, mode: str, critic_params: Any = None
    ) -> tuple[Array, Array]:
        """Latent actions (B, act_dim) and their min-Q, chosen among particles by ``mode``."""
        critic_params = state.critic_params if critic_params is None else critic_params
        lam = self.temperature(state.step)
        k_particles, k_pick = jax.random.split(key)
        n = 1 if mode == "sample" else self.config.num_particles
        u = self.sample_particles(state.actor_params, k_particles, obs, lam, n)
        q = self.q_min(critic_params, obs[:, None, :], jnp.tanh(u))  # (B, N)
        # Select particle and its Q together: append Q as an extra coordinate.
        uq = jnp.concatenate([u, q[..., None]], axis=-1)
        if mode == "explore":
            picked = select_boltzmann(k_pick, uq, q / lam)
            return picked[..., :-1], picked[..., -1]
        if mode == "best-of-n":
            picked = select_argmax(uq, q)
            return picked[..., :-1], picked[..., -1]
        if mode == "sample":
            return u[:, 0], q[:, 0]
        raise ValueError(f"unknown act mode {mode!r}; expected explore, best-of-n or sample")

    def act(self, state: RFMState, key: Array, obs: Array, mode: str = "explore") -> Array:
        return jnp.tanh(self._policy_latent(state, key, obs, mode)[0])

    # -- update -----------------------------------------------------------------------------

    def update(self, state: RFMState, batch: Batch, key: Array) -> tuple[RFMState, Metrics]:
        """One critic step then one actor step (method note §6, steps 1-5)."""
        c = self.config
        k_end, k_next, k_t, k_eps, k_post = jax.random.split(key, 5)
        lam = self.temperature(state.step)

        # 1. training endpoints u1 from the current policy; 2. a' for s', then the TD step.
        u1, policy_q = self._policy_latent(state, k_end, batch.obs, "explore")
        u1 = jax.lax.stop_gradient(u1)
        u_next, _ = self._policy_latent(state, k_next, batch.next_obs, "explore")
        next_q = self.q_min(state.target_critic_params, batch.next_obs, jnp.tanh(u_next))
        target = batch.reward + batch.discount * next_q
        critic_params, critic_opt, metrics = critic_td_step(
            self.critic_net, self.critic_opt, state.critic_params, state.critic_opt, batch, target
        )

        # 3. noisy points on the linear path.
        b = batch.obs.shape[0]
        t = jax.random.uniform(k_t, (b,), minval=c.t_min, maxval=c.t_max)
        eps = jax.random.normal(k_eps, u1.shape, u1.dtype)
        u_t = t[:, None] * u1 + (1.0 - t[:, None]) * eps

        # 4. posterior targets with Q from the freshly updated critics (tanh latent).
        def log_target(action: Array, obs: Array) -> Array:
            return self.q_min(critic_params, obs, action) / lam

        post = estimators.estimate_posterior_mean_batch(
            k_post,
            log_target,
            u_t,
            t,
            self.path,
            c.num_reverse_samples,
            control_variate=self.control_variate,
            ridge=c.cv_ridge,
            clip=c.cv_clip,
            latent_tanh=True,
            cond=batch.obs,
        )
        post = jax.lax.stop_gradient(post)

        # 5. velocity regression onto mu1 - mu0 (the linear path's velocity).
        def actor_loss_fn(params: Any) -> Array:
            def predict(tt: Array, x: Array) -> Array:
                return self.velocity_net.apply(params, tt, x, batch.obs, lam)

            return generative_loss(predict, self.path, t, u_t, post.x1)

        actor_loss, actor_grads = jax.value_and_grad(actor_loss_fn)(state.actor_params)
        updates, actor_opt = self.actor_opt.update(actor_grads, state.actor_opt, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, updates)

        new_state = RFMState(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=optax.incremental_update(
                critic_params, state.target_critic_params, c.tau
            ),
            actor_opt=actor_opt,
            critic_opt=critic_opt,
            step=state.step + 1,
        )
        diag = estimators.posterior_diagnostics(post)
        metrics.update(
            actor_loss=actor_loss,
            actor_grad_norm=optax.tree.norm(actor_grads),
            lam=lam,
            ess_mean=diag["ess_mean"],
            ess_min=diag["ess_min"],
            cv_coefficient_mean=diag["coefficient_mean"],
            cv_coefficient_abs_max=diag["coefficient_abs_max"],
            posterior_variance_mean=diag["variance_mean"],
            policy_q_mean=jnp.mean(policy_q),
            target_norm=jnp.mean(jnp.linalg.norm(post.x1 - post.x0, axis=-1)),
        )
        return new_state, metrics
