"""revflow side of the fidelity harness: draws the inputs, and computes every quantity that the
official side computes, with revflow's agents under the authors' parameters (``mapping.py``).

The agents are revflow's defaults (``--preset reference``) at the sizes of ``spec.SIZES``;
``--preset revflow`` selects revflow's earlier variants (rfm and sac both have that preset),
which shows the departures the defaults removed. Gradients are read with a recording
optimiser chained after revflow's own clipping transform (``agents.common.gradient_clipping``
with the config's scope), through ``agents.critics.critic_td_step`` and the agents'
objectives' ``actor_loss`` (and sac's ``alpha_loss``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mapping
from spec import SIZES, TRAJECTORY_ROWS, flat_vector, flatten, unflatten

from revflow.agents import box_diffusion, dqs, qne, qsm, qvpo
from revflow.agents.actor_critic import actor_critic_update
from revflow.agents.base import Batch
from revflow.agents.common import gradient_clipping
from revflow.agents.critics import critic_td_step, td_target
from revflow.agents.posterior import posterior_mean
from revflow.agents.registry import make_agent, make_config
from revflow.agents.sac import alpha_loss
from revflow.engine import TrainConfig
from revflow.losses import regression_target


def make_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """The batch, noisy points, PRNG keys and the posterior's reverse-sample noise."""
    s = SIZES
    rng = np.random.default_rng(seed)
    b, d, n_obs = s["batch"], s["act_dim"], s["obs_dim"]
    obs = rng.normal(size=(b, n_obs)).astype(np.float32)
    next_obs = rng.normal(size=(b, n_obs)).astype(np.float32)
    mask = np.ones(b, np.float32)
    mask[[2, 6]] = 0.0  # two terminal transitions
    inp = {
        "obs": obs,
        "next_obs": next_obs,
        # SAC's states: scaled down so that its pre-tanh samples stay below |u| ~ 3.5 (see
        # spec.py: log(1 - a^2 + 1e-6) is ill-conditioned in float32 at saturation) ...
        "sac_obs": 0.25 * obs,
        "sac_next_obs": 0.25 * next_obs,
        # ... and up, so that some log-stds exceed 2 (the clip is exercised; actions only).
        "wide_obs": 1.5 * obs,
        "action": rng.uniform(-0.95, 0.95, (b, d)).astype(np.float32),
        "reward": rng.normal(size=b).astype(np.float32),
        "mask": mask,
        "t": rng.uniform(s["t_min"], 1.0 - s["t_min"], b).astype(np.float32),
        "u_t": (1.5 * rng.normal(size=(b, d))).astype(np.float32),
    }
    for i, name in enumerate(("key_eval", "key_next", "key_post", "key_sample", "key_actor")):
        inp[name] = np.asarray(jax.random.PRNGKey(1000 + i))
    # revflow's posterior estimator draws row i's K reverse samples from split(key, B)[i]:
    # the official side receives exactly these.
    keys = jax.random.split(jnp.asarray(inp["key_post"]), b)
    noise = jax.vmap(lambda k: jax.random.normal(k, (s["mc_samples"], d), jnp.float32))(keys)
    inp["posterior_noise"] = np.asarray(noise)
    inp.update(_diffusion_inputs(seed))
    inp.update(_trajectory_inputs(seed))
    return inp


def _trajectory_inputs(seed: int) -> dict[str, np.ndarray]:
    """rfm's multi-step check: one batch and one PRNG key per update, and the key of the
    exploration action (a generator of their own: the arrays above stay as stored)."""
    s = SIZES
    rng = np.random.default_rng(seed + 200)
    n, b, d, n_obs = s["trajectory_steps"], s["batch"], s["act_dim"], s["obs_dim"]
    mask = np.ones((n, b), np.float32)
    mask[:, [1, 5]] = 0.0
    return {
        "traj_obs": rng.normal(size=(n, b, n_obs)).astype(np.float32),
        "traj_action": rng.uniform(-0.95, 0.95, (n, b, d)).astype(np.float32),
        "traj_reward": rng.normal(size=(n, b)).astype(np.float32),
        "traj_mask": mask,
        "traj_next_obs": rng.normal(size=(n, b, n_obs)).astype(np.float32),
        "traj_key": np.stack([np.asarray(jax.random.PRNGKey(3000 + k)) for k in range(n)]),
        "traj_key_explore": np.asarray(jax.random.PRNGKey(2999)),
    }


def _diffusion_inputs(seed: int) -> dict[str, np.ndarray]:
    """The inputs of the diffusion baselines (qne, dqs, qsm, qvpo), from a generator of their
    own so that the arrays above stay as stored: network inputs in each code's time
    convention, and the keys of the recorded updates and of exploration."""
    s = SIZES
    rng = np.random.default_rng(seed + 100)
    b, d = s["batch"], s["act_dim"]
    inp = {
        # maxentdp: continuous diffusion time tau in [t_min, t_max] (tau = 0: data).
        "diff_tau": rng.uniform(1e-3, 0.9, b).astype(np.float32),
        # dqs: VE time in [0, 1] (t = 0: data).
        "diff_t01": rng.uniform(0.0, 1.0, b).astype(np.float32),
        # qsm, qvpo: integer DDPM step in [0, diffusion_steps) (0: data end).
        "diff_step": rng.integers(0, s["diffusion_steps"], b).astype(np.int32),
        # A noisy action (network input).
        "diff_x": (1.2 * rng.normal(size=(b, d))).astype(np.float32),
    }
    for i, name in enumerate(("key_update", "key_explore")):
        inp[name] = np.asarray(jax.random.PRNGKey(2000 + i))
    return inp


def recorder() -> optax.GradientTransformation:
    """An optax transformation whose state after ``update`` is the gradient it was given."""

    def init(params: Any) -> Any:
        return jax.tree.map(jnp.zeros_like, params)

    def update(grads: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del state, params
        return jax.tree.map(jnp.zeros_like, grads), grads

    return optax.GradientTransformation(init, update)


def recorded_grads(clipping: optax.GradientTransformation, grads: Any) -> Any:
    """``grads`` after ``clipping`` (an optax transform that keeps no state of use here)."""
    return clipping.update(grads, clipping.init(grads))[0]


def _kernel_singular_values(kernels: list[Any]) -> np.ndarray:
    return np.concatenate(
        [np.sort(np.linalg.svd(np.asarray(k), compute_uv=False)) for k in kernels]
    )


def _init_fingerprint(out: dict, agent_name: str, actor_kernels, actor_biases, critic) -> None:
    p = critic["params"]["ensemble"]
    layers = sorted(p, key=lambda n: int(n.split("_")[1]))
    out[f"{agent_name}/init_actor_singular_values"] = _kernel_singular_values(actor_kernels)
    out[f"{agent_name}/init_critic_singular_values"] = np.concatenate(
        [
            _kernel_singular_values([p[name]["kernel"][k] for name in layers])
            for k in range(SIZES["num_critics"])
        ]
    )
    biases = list(actor_biases) + [p[name]["bias"] for name in layers]
    out[f"{agent_name}/init_max_abs_bias"] = np.array([max(float(np.abs(b).max()) for b in biases)])


def _batch(inp: dict, states: str = "") -> Batch:
    return Batch(
        obs=jnp.asarray(inp[states + "obs"]),
        action=jnp.asarray(inp["action"]),
        reward=jnp.asarray(inp["reward"]),
        next_obs=jnp.asarray(inp[states + "next_obs"]),
        discount=SIZES["discount"] * jnp.asarray(inp["mask"]),
    )


def _tree(x: Any) -> Any:
    return jax.tree.map(jnp.asarray, x)


def _sized_config(algo: str, preset: str, **values: Any) -> Any:
    """``algo``'s config at the harness's small sizes (shared by the generative agents)."""
    s = SIZES
    return make_config(
        algo,
        preset,
        batch_size=s["batch"],
        gamma=s["discount"],
        tau=s["tau"],
        critic_hidden=(s["hidden"],) * s["layers"],
        num_critics=s["num_critics"],
        actor_hidden=s["hidden"],
        actor_blocks=s["layers"],
        embed_dim=s["emb"],
        **values,
    )


def _collect(out: dict, name: str, values: dict, grads: dict) -> dict[str, np.ndarray]:
    """``out`` with an agent's quantities and its gradient trees flattened under
    ``<name>.grad.<tree>``, as numpy arrays."""
    out.update(values)
    for tree_name, tree in grads.items():
        out.update(flatten(tree, f"{name}.grad.{tree_name}"))
    return {k: np.asarray(v) for k, v in out.items()}


def _run_with_draws(
    name: str, cfg: Any, inp: dict, official: dict, quantities: Callable
) -> dict[str, np.ndarray]:
    """The revflow side of a diffusion baseline whose networks are revflow's velocity net and
    critic (qne, dqs, qsm): the agent at ``cfg``, its fresh networks fingerprinted, the
    authors' actor and (online, target) critics mapped in, their recorded draws
    (``<name>.draw/*``) injected, and ``quantities(agent, state, inputs, draws)`` run as one
    jitted program."""
    s = SIZES
    agent = make_agent(name, cfg, s["obs_dim"], s["act_dim"])
    out: dict[str, np.ndarray] = {}
    fresh = jax.jit(agent.init)(jax.random.PRNGKey(s["seed"]))
    _fingerprint_velocity_net(out, name, fresh, cfg.actor_blocks)
    actor = unflatten(official, f"{name}.param.actor")
    state = fresh.replace(
        actor_params=_tree(mapping.velocity_net(actor, s["obs_dim"], s["act_dim"], s["emb"])),
        critic_params=_tree(mapping.critic(unflatten(official, f"{name}.param.critic"))),
        target_critic_params=_tree(mapping.critic(unflatten(official, f"{name}.param.target"))),
    )
    prefix = f"{name}.draw/"
    draws = {k[len(prefix) :]: v for k, v in official.items() if k.startswith(prefix)}
    values, grads = jax.jit(lambda st, x, d: quantities(agent, st, x, d))(
        state, _tree(inp), _tree(draws)
    )
    return _collect(out, name, values, grads)


def _rfm_config(preset: str) -> Any:
    s = SIZES
    return _sized_config(
        "rfm",
        preset,
        num_particles=s["particles"],
        num_flow_steps=s["flow_steps"],
        t_min=s["t_min"],
        t_max=1.0 - s["t_min"],
        num_reverse_samples=s["mc_samples"],
        cv_ridge=s["cv_ridge"],
        cv_clip=s["cv_clip"],
        lam=s["lam"],
    )


def _rfm_official_params(official: dict) -> tuple[Any, Any, Any]:
    """The authors' initial rfm actor, critics and target critics on revflow's layout."""
    s = SIZES
    actor = mapping.velocity_net(
        unflatten(official, "rfm.param.actor"), s["obs_dim"], s["act_dim"], s["emb"]
    )
    critic = mapping.critic(unflatten(official, "rfm.param.critic"))
    target = mapping.critic(unflatten(official, "rfm.param.target"))
    return _tree(actor), _tree(critic), _tree(target)


def run_rfm(inp: dict, official: dict, preset: str) -> dict[str, np.ndarray]:
    s = SIZES
    cfg = _rfm_config(preset)
    agent = make_agent("rfm", cfg, s["obs_dim"], s["act_dim"])
    out: dict[str, np.ndarray] = {}

    fresh = jax.jit(agent.init)(jax.random.PRNGKey(s["seed"]))
    a = fresh.actor_params["params"]
    first = [a[n]["kernel"] for n in ("cond_proj", "x_proj", "t_proj", "lam_proj")]
    blocks = [a[f"blocks_{i}"]["kernel"] for i in range(cfg.actor_blocks)]
    _init_fingerprint(
        out,
        "rfm",
        [np.concatenate(first, 0), *blocks, a["out"]["kernel"]],
        [a["x_proj"]["bias"]]
        + [a[f"blocks_{i}"]["bias"] for i in range(cfg.actor_blocks)]
        + [a["out"]["bias"]],
        fresh.critic_params,
    )

    actor, critic, target_critic = _rfm_official_params(official)
    state = fresh.replace(
        actor_params=actor, critic_params=critic, target_critic_params=target_critic
    )
    values, grads = jax.jit(lambda st, x: _rfm_quantities(agent, st, x))(state, _tree(inp))
    explore_key, obs = jnp.asarray(inp["traj_key_explore"]), jnp.asarray(inp["obs"])
    values["rfm/explore_action"] = agent.act(state, explore_key, obs, "explore")
    values.update(rfm_trajectory(inp, official, preset))
    return _collect(out, "rfm", values, grads)


def authors_split(key: jax.Array) -> tuple[Any, Any, Any]:
    """rfm's stage keys derived from an update key as the authors' fused update derives its
    draws (``src/agent/rfm.py``, ``_update``): ``(_, t, noise, mc, sample) = split(key, 5)``,
    ``(endpoint, next action) = split(sample)``; revflow's own split takes them in another
    order, which only changes which draw comes from which key."""
    _, k_t, k_eps, k_post, k_sample = jax.random.split(key, 5)
    k_end, k_next = jax.random.split(k_sample)
    return k_next, (k_end, k_t, k_eps, k_post), None


def rfm_trajectory(
    inp: dict,
    official: dict,
    preset: str = "reference",
    *,
    objective_change: Callable[[Any], Any] | None = None,
    **changes: Any,
) -> dict[str, np.ndarray]:
    """``trajectory_steps`` consecutive revflow rfm updates (``actor_critic_update`` with the
    agent's objective, Adam optimisers, per-critic clipping and Polyak targets) from the
    authors' initial parameters (targets = online critics, as their init copies them), on the
    stored batches and keys, the keys split as the authors split theirs
    (:func:`authors_split`): the rows of ``official_side.run_rfm_trajectory``.
    ``changes`` (config fields) and ``objective_change`` (applied to the objective) make a
    departure from the defaults, to show that the check sees it (``sensitivity.py``)."""
    s = SIZES
    cfg = dataclasses.replace(_rfm_config(preset), max_grad_norm=s["trajectory_clip"], **changes)
    actor, critic, _ = _rfm_official_params(official)
    agent = make_agent("rfm", cfg, s["obs_dim"], s["act_dim"])
    fresh = agent.init(jax.random.PRNGKey(s["seed"]))
    state = fresh.replace(
        actor_params=actor,
        critic_params=critic,
        target_critic_params=critic,
        actor_opt=agent.actor_opt.init(actor),
        critic_opt=agent.critic.optimizer.init(critic),
    )
    objective = agent.objective._replace(split=authors_split)
    if objective_change is not None:
        objective = objective_change(objective)

    @jax.jit
    def update(state: Any, batch: Batch, key: jax.Array) -> tuple[Any, dict]:
        return actor_critic_update(
            state, batch, key, objective, agent.critic, agent.actor_opt, cfg.tau
        )

    def vectors(st: Any) -> tuple[np.ndarray, ...]:
        trees = (st.actor_params, st.critic_params, st.target_critic_params)
        return tuple(flat_vector(jax.device_get(t)) for t in trees)

    actor0, critic0, target0 = vectors(state)
    rows: dict[str, list] = {k: [] for k in TRAJECTORY_ROWS}
    for k in range(s["trajectory_steps"]):
        batch = Batch(
            obs=jnp.asarray(inp["traj_obs"][k]),
            action=jnp.asarray(inp["traj_action"][k]),
            reward=jnp.asarray(inp["traj_reward"][k]),
            next_obs=jnp.asarray(inp["traj_next_obs"][k]),
            discount=s["discount"] * jnp.asarray(inp["traj_mask"][k]),
        )
        state, metrics = update(state, batch, jnp.asarray(inp["traj_key"][k]))
        a, c, t = vectors(state)
        rows["actor"].append((a - actor0) / s["actor_lr"])
        rows["critic"].append((c - critic0) / s["critic_lr"])
        rows["target"].append((t - target0) / (s["tau"] * s["critic_lr"]))
        rows["critic_loss"].append(float(metrics["critic_loss"]))
        rows["actor_loss"].append(float(metrics["actor_loss"]))
    return {f"rfm/trajectory_{k}": np.asarray(v, np.float32) for k, v in rows.items()}


def _rfm_quantities(agent: Any, state: Any, inp: dict) -> tuple[dict, dict]:
    """Every rfm quantity (one jitted program): ``(values, gradient trees)``."""
    s, cfg = SIZES, agent.config
    out: dict[str, Any] = {}
    grads_out: dict[str, Any] = {}
    actor, critic = state.actor_params, state.critic_params
    batch = _batch(inp)
    t, u_t = inp["t"], inp["u_t"]
    lam = agent.temperature(state.step)

    out["rfm/velocity_net"] = agent.policy.net.apply(actor, t, u_t, batch.obs, lam)
    out["rfm/critic_q"] = agent.critic.net.apply(critic, batch.obs, batch.action)
    out["rfm/critic_q_min"] = agent.critic.q_min(critic, batch.obs, batch.action)
    out["rfm/eval_action_best_of_n"] = agent.act(state, inp["key_eval"], batch.obs, "best-of-n")
    key_next = inp["key_next"]
    latent, _ = agent.latent(state, key_next, batch.next_obs, "boltzmann")
    out["rfm/td_next_latent"] = latent
    target, _ = agent.objective.td_target(state, batch, key_next)
    out["rfm/td_target"] = target

    per_critic = cfg.critic_clip == "per-critic"
    for tag, clip in (("", 0.0), ("_clipped", s["small_clip"])):
        opt = optax.chain(gradient_clipping(clip, cfg.critic_clip), recorder())
        _, opt_state, metrics = critic_td_step(
            agent.critic.net, opt, critic, opt.init(critic), batch, target, per_critic=per_critic
        )
        out[f"rfm/critic_loss{tag}"] = metrics["critic_loss"][None]
        grads_out[f"critic{tag}"] = opt_state[1]

    post = posterior_mean(agent, critic, inp["key_post"], batch.obs, u_t, t, lam)
    out["rfm/posterior_mu1"] = post.x1
    out["rfm/posterior_mu0"] = post.x0
    out["rfm/posterior_ess"] = post.ess
    out["rfm/posterior_cv_coefficient_mean"] = jnp.mean(post.coefficient, axis=-1)
    out["rfm/regression_target"] = regression_target(
        agent.policy.path, t, u_t, post.x1, agent.policy.parameterisation
    )

    inputs = (batch.obs, t, u_t, post.x1, lam)
    loss, grads = jax.value_and_grad(lambda p: agent.objective.actor_loss(p, inputs)[0])(actor)
    for tag, clip in (("", 0.0), ("_clipped", s["small_clip"])):
        out[f"rfm/actor_loss{tag}"] = loss[None]
        grads_out[f"actor{tag}"] = recorded_grads(gradient_clipping(clip, "global"), grads)
    return out, grads_out


def run_sac(inp: dict, official: dict, preset: str) -> dict[str, np.ndarray]:
    s = SIZES
    cfg = make_config(
        "sac",
        preset,
        batch_size=s["batch"],
        gamma=s["discount"],
        tau=s["tau"],
        actor_hidden=(s["hidden"],) * s["layers"],
        critic_hidden=(s["hidden"],) * s["layers"],
        num_critics=s["num_critics"],
    )
    agent = make_agent("sac", cfg, s["obs_dim"], s["act_dim"])
    out: dict[str, np.ndarray] = {}

    fresh = jax.jit(agent.init)(jax.random.PRNGKey(s["seed"]))
    a = fresh.actor_params["params"]
    layers = sorted(a, key=lambda n: int(n.split("_")[1]))
    _init_fingerprint(
        out,
        "sac",
        [a[n]["kernel"] for n in layers],
        [a[n]["bias"] for n in layers],
        fresh.critic_params,
    )
    if cfg.actor_arch != "residual":  # no mapping onto a plain MLP: network quantities absent
        return {k: np.asarray(v) for k, v in out.items()}

    state = fresh.replace(
        actor_params=_tree(mapping.residual_mlp(unflatten(official, "sac.param.actor"))),
        critic_params=_tree(mapping.critic(unflatten(official, "sac.param.critic"))),
        target_critic_params=_tree(mapping.critic(unflatten(official, "sac.param.target"))),
        log_alpha=jnp.log(jnp.float32(s["alpha"])),
    )
    values, grads = jax.jit(lambda st, x: _sac_quantities(agent, st, x))(state, _tree(inp))
    return _collect(out, "sac", values, grads)


def _sac_quantities(agent: Any, state: Any, inp: dict) -> tuple[dict, dict]:
    """Every sac quantity (one jitted program): ``(values, gradient trees)``."""
    cfg = agent.config
    out: dict[str, Any] = {}
    actor, critic, log_alpha = state.actor_params, state.critic_params, state.log_alpha
    batch = _batch(inp, "sac_")
    alpha = jnp.exp(log_alpha)

    out["sac/actor_net"] = agent.policy.net.apply(actor, batch.obs)
    out["sac/critic_q"] = agent.critic.net.apply(critic, batch.obs, batch.action)
    out["sac/eval_action_mean"] = agent.act(state, inp["key_eval"], batch.obs, "best-of-n")
    action, logp = agent.policy.sample(actor, batch.obs, inp["key_sample"])
    out["sac/sample_action"], out["sac/sample_log_prob"] = action, logp
    out["sac/sample_action_wide_states"] = agent.policy.sample(
        actor, inp["wide_obs"], inp["key_sample"]
    )[0]
    target, _ = agent.objective.td_target(state, batch, inp["key_next"])
    out["sac/td_target"] = target

    opt = optax.chain(gradient_clipping(cfg.max_grad_norm, cfg.critic_clip), recorder())
    _, opt_state, metrics = critic_td_step(
        agent.critic.net,
        opt,
        critic,
        opt.init(critic),
        batch,
        target,
        per_critic=cfg.critic_clip == "per-critic",
    )
    out["sac/critic_loss"] = metrics["critic_loss"][None]

    inputs = (critic, batch.obs, alpha, inp["key_actor"])
    (loss, logp_pi), grads = jax.value_and_grad(agent.objective.actor_loss, has_aux=True)(
        actor, inputs
    )
    out["sac/actor_loss"], out["sac/actor_log_prob"] = loss[None], logp_pi
    temp_loss, alpha_grad = jax.value_and_grad(lambda la: alpha_loss(agent, la, logp_pi))(log_alpha)
    out["sac/alpha_loss"], out["sac/alpha_grad"] = temp_loss[None], alpha_grad[None]
    actor_grads = recorded_grads(gradient_clipping(cfg.max_grad_norm), grads)
    return out, {"critic": opt_state[1], "actor": actor_grads}


def run_qne(inp: dict, official: dict, preset: str) -> dict[str, np.ndarray]:
    """The authors' maxentdp quantities with revflow's ``qne`` (box policy), their recorded
    draws injected (``draw/*``), their three critics mapped (online, target)."""
    s = SIZES
    cfg = _sized_config(
        "qne",
        preset,
        num_particles=s["eval_candidates"],
        num_flow_steps=s["diffusion_steps"],
        num_reverse_samples=s["qne_candidates"],
        log_prob_samples=s["qne_log_prob_samples"],
        log_prob_steps=s["qne_log_prob_steps"],
        lam=s["lam"],
        actor_lr=s["actor_lr"],
        critic_lr=s["critic_lr"],
    )
    if cfg.policy_space != "box":
        # The tanh-latent variant has no counterpart of their box sampler, log-likelihood or
        # candidates: its quantities are missing (rows that differ), only its defaults compare.
        return {}
    return _run_with_draws("qne", cfg, inp, official, _qne_quantities)


def _fingerprint_velocity_net(out: dict, name: str, fresh: Any, blocks: int) -> None:
    a = fresh.actor_params["params"]
    first = [a[n]["kernel"] for n in ("cond_proj", "x_proj", "t_proj", "lam_proj")]
    _init_fingerprint(
        out,
        name,
        [
            np.concatenate(first, 0),
            *(a[f"blocks_{i}"]["kernel"] for i in range(blocks)),
            a["out"]["kernel"],
        ],
        [a["x_proj"]["bias"]]
        + [a[f"blocks_{i}"]["bias"] for i in range(blocks)]
        + [a["out"]["bias"]],
        fresh.critic_params,
    )


def _qne_quantities(agent: Any, state: Any, inp: dict, d: dict) -> tuple[dict, dict]:
    """Every qne quantity (one jitted program): ``(values, gradient trees)``."""
    policy, critic, cfg = agent.policy, agent.critic, agent.config
    out: dict[str, Any] = {}
    actor, online, target = state.actor_params, state.critic_params, state.target_critic_params
    batch = _batch(inp)
    lam = agent.temperature(state.step)
    out["qne/temperature"] = lam[None]
    for prefix, sch in (
        ("schedule", policy.schedule),
        ("log_prob_schedule", policy.log_prob_schedule),
    ):
        for name, value in sch._asdict().items():
            out[f"qne/{prefix}_{name}"] = value
    out["qne/schedule_t_max"] = jnp.asarray([cfg.tau_max], jnp.float32)

    abar = box_diffusion.cosine_alpha_hat(inp["diff_tau"])
    out["qne/log_snr_of_tau"] = box_diffusion.log_snr(abar)
    out["qne/eps_net"] = policy.eps(actor, abar, inp["diff_x"], batch.obs, lam)
    out["qne/critic_q"] = critic.net.apply(online, batch.obs, batch.action)
    out["qne/critic_q_min"] = critic.q_min(online, batch.obs, batch.action)
    # Evaluation: revflow's own rule (state-hash keys, its own draws from them).
    out["qne/eval_action_best_of_n"] = agent.act(state, inp["key_eval"], batch.obs, "best-of-n")

    # TD: a' and its log-likelihood with their draws injected.
    a_next = policy.sample_with_noise(actor, batch.next_obs, lam, d["td_init"], d["td_noise"])
    log_pi = policy.log_prob_with_noise(actor, batch.next_obs, a_next, lam, d["log_prob_noise"])
    out["qne/td_next_action"], out["qne/td_next_log_prob"] = a_next, log_pi
    next_q = critic.q_min(target, batch.next_obs, a_next)
    y = batch.reward + batch.discount * (next_q - lam * log_pi)
    out["qne/td_target"] = y
    opt = optax.chain(gradient_clipping(cfg.max_grad_norm, cfg.critic_clip), recorder())
    _, opt_state, metrics = critic_td_step(
        critic.net, opt, online, opt.init(online), batch, y, per_critic=critic.per_critic
    )
    out["qne/critic_loss"] = metrics["critic_loss"][None]

    # Actor: noised replay actions, truncated candidates weighted by the target critics.
    alpha1, alpha2, a_tau = qne.noisy_replay(d["train_tau"], batch.action, d["train_noise"])
    out["qne/train_tau"] = d["train_tau"]
    out["qne/train_log_snr"] = box_diffusion.log_snr(box_diffusion.cosine_alpha_hat(d["train_tau"]))
    out["qne/train_noisy_action"] = a_tau
    eps_target, cand, w = qne.eps_target(
        agent.q_fn(target), batch.obs, a_tau, alpha1, alpha2, d["candidate_noise"], lam
    )
    out["qne/candidate_actions"], out["qne/candidate_weights"] = cand, w
    out["qne/eps_target"] = eps_target
    inputs = (batch.obs, box_diffusion.cosine_alpha_hat(d["train_tau"]), a_tau, eps_target, lam)
    loss, grads = jax.value_and_grad(lambda p: agent.objective.actor_loss(p, inputs)[0])(actor)
    out["qne/actor_loss"] = loss[None]
    actor_grads = recorded_grads(gradient_clipping(cfg.max_grad_norm, "global"), grads)
    return out, {"critic": opt_state[1], "actor": actor_grads}


def run_dqs(inp: dict, official: dict, preset: str) -> dict[str, np.ndarray]:
    """The authors' DQS quantities with revflow's ``dqs`` (action-space VE score policy), their
    recorded draws injected (``draw/*``), their critics mapped (online, target)."""
    s = SIZES
    cfg = _sized_config(
        "dqs",
        preset,
        num_flow_steps=s["diffusion_steps"],
        num_reverse_samples=s["dqs_mc_samples"],
        lam=s["lam"],
        actor_lr=s["actor_lr"],
        critic_lr=s["critic_lr"],
    )
    if cfg.policy_space != "action":
        return {}  # the tanh-latent variant has no counterpart of their sampler or target
    return _run_with_draws("dqs", cfg, inp, official, _dqs_quantities)


def _dqs_quantities(agent: Any, state: Any, inp: dict, d: dict) -> tuple[dict, dict]:
    """Every dqs quantity (one jitted program): ``(values, gradient trees)``."""
    policy, critic, cfg = agent.policy, agent.critic, agent.config
    out: dict[str, Any] = {}
    actor, online, target = state.actor_params, state.critic_params, state.target_critic_params
    batch = _batch(inp)
    lam = agent.temperature(state.step)
    out["dqs/temperature"] = lam[None]
    t01 = inp["diff_t01"]
    out["dqs/noise_h"], out["dqs/noise_g"] = policy.h(t01), policy.g(t01)
    out["dqs/loss_weight"] = policy.h(t01) + cfg.loss_weight_floor
    out["dqs/score_net"] = policy.score(actor, t01, inp["diff_x"], batch.obs, lam)
    out["dqs/critic_q"] = critic.net.apply(online, batch.obs, batch.action)
    out["dqs/critic_q_min"] = critic.q_min(online, batch.obs, batch.action)
    # Evaluation: revflow's own rule (its state-hash keys and draws).
    out["dqs/eval_sample_raw"] = policy.noise_free(actor, batch.obs, lam)
    out["dqs/eval_action"] = agent.act(state, inp["key_eval"], batch.obs, "best-of-n")

    # TD: a' with their draws injected.
    raw = policy.sample_with_noise(
        actor, batch.next_obs, lam, d["td_init"], d["td_noise"], cfg.diffusion_scale
    )
    out["dqs/td_next_sample_raw"], out["dqs/td_next_action"] = raw, jnp.tanh(raw)
    y = td_target(batch, critic.q_min(target, batch.next_obs, jnp.tanh(raw)))
    out["dqs/td_target"] = y
    opt = optax.chain(gradient_clipping(cfg.max_grad_norm, cfg.critic_clip), recorder())
    _, opt_state, metrics = critic_td_step(
        critic.net, opt, online, opt.init(online), batch, y, per_critic=critic.per_critic
    )
    out["dqs/critic_loss"] = metrics["critic_loss"][None]

    # Actor: noised replay actions, the score target from the critics before their step.
    t = d["train_t"]
    sqrt_h = jnp.sqrt(policy.h(t))
    a_t = batch.action + d["train_noise"] * sqrt_h[:, None]
    out["dqs/train_t"], out["dqs/train_noised_action"] = t, a_t
    score, _ = dqs.score_target(agent.q_fn(online), batch.obs, a_t, sqrt_h, d["score_noise"], lam)
    out["dqs/score_target"] = score
    weight = policy.h(t) + cfg.loss_weight_floor
    out["dqs/train_loss_weight"] = weight
    inputs = (batch.obs, t, a_t, score, weight, lam)
    loss, grads = jax.value_and_grad(lambda p: agent.objective.actor_loss(p, inputs)[0])(actor)
    out["dqs/actor_loss"] = loss[None]
    actor_grads = recorded_grads(gradient_clipping(cfg.max_grad_norm, "global"), grads)
    return out, {"critic": opt_state[1], "actor": actor_grads}


def stepping_recorder(lr: float) -> optax.GradientTransformation:
    """:func:`recorder` that also steps by ``-lr * gradient`` (the official side's
    ``sgd_recorder``: the critics after their probe step differ from those before)."""

    def update(grads: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        del state, params
        return jax.tree.map(lambda g: -lr * g, grads), grads

    return optax.GradientTransformation(recorder().init, update)


def run_qsm(inp: dict, official: dict, preset: str) -> dict[str, np.ndarray]:
    """The authors' QSM quantities with revflow's ``qsm`` (box policy), their recorded draws
    injected (``draw/*``), their online and target critics mapped; the evaluation row is
    revflow's own rule (its state-hash keys and draws)."""
    s = SIZES
    cfg = _sized_config(
        "qsm",
        preset,
        num_flow_steps=s["diffusion_steps"],
        q_scale=s["qsm_q_scale"],
        explore_noise=s["qsm_noise"],
        target_noise=s["qsm_noise"],
        actor_lr=s["actor_lr"],
        critic_lr=s["critic_lr"],
    )
    if cfg.policy_space != "box":
        # The tanh-latent variant has no counterpart of their box sampler or target: its
        # quantities are missing (rows that differ), only its defaults compare.
        return {}
    return _run_with_draws("qsm", cfg, inp, official, _qsm_quantities)


def _qsm_quantities(agent: Any, state: Any, inp: dict, d: dict) -> tuple[dict, dict]:
    """Every qsm quantity (one jitted program): ``(values, gradient trees)``."""
    policy, critic, cfg = agent.policy, agent.critic, agent.config
    out: dict[str, Any] = {}
    actor, online, target = state.actor_params, state.critic_params, state.target_critic_params
    batch = _batch(inp)
    temp = agent.temperature_of(state)
    sch = policy.schedule
    for name in ("betas", "alphas", "alpha_hats"):
        out[f"qsm/schedule_{name}"] = getattr(sch, name)
    out["qsm/eps_net"] = policy.eps_at_step(actor, inp["diff_step"], inp["diff_x"], batch.obs, temp)
    out["qsm/critic_q"] = critic.net.apply(online, batch.obs, batch.action)
    out["qsm/critic_q_min"] = critic.q_min(online, batch.obs, batch.action)

    def q_each(params: Any):
        return lambda obs, a: critic.net.apply(params, obs, a)

    out["qsm/eps_target_at_inputs"] = qsm.box_eps_target(
        q_each(online), batch.obs, inp["diff_x"], cfg.q_scale
    )
    # Evaluation: revflow's own rule (one sample from its state-hash keys).
    out["qsm/eval_action"] = agent.act(state, inp["key_eval"], batch.obs, "best-of-n")

    def noisy(a: jax.Array, z: jax.Array, std: float) -> jax.Array:  # noise injected
        return jnp.clip(a + std * z, -1.0, 1.0)

    explore = policy.sample_with_noise(
        actor, batch.obs, temp, d["explore_init"], d["explore_noise"]
    )
    out["qsm/explore_action"] = noisy(explore, d["explore_action_noise"], cfg.explore_noise)
    a_next = policy.sample_with_noise(actor, batch.next_obs, temp, d["td_init"], d["td_noise"])
    a_next = noisy(a_next, d["td_action_noise"], cfg.target_noise)
    out["qsm/td_next_action"] = a_next
    y = td_target(batch, critic.q_min(target, batch.next_obs, a_next))
    out["qsm/td_target"] = y
    opt = optax.chain(
        gradient_clipping(cfg.max_grad_norm, cfg.critic_clip),
        stepping_recorder(SIZES["probe_critic_lr"]),
    )
    after, opt_state, metrics = critic_td_step(
        critic.net, opt, online, opt.init(online), batch, y, per_critic=critic.per_critic
    )
    out["qsm/critic_loss"] = metrics["critic_loss"][None]

    # Actor, with the critics after their (probe) step.
    k = d["train_step"]
    abar = sch.alpha_hats[k]
    a_k = jnp.sqrt(abar)[:, None] * batch.action + jnp.sqrt(1.0 - abar)[:, None] * d["train_noise"]
    out["qsm/train_step"], out["qsm/train_noisy_action"] = k, a_k
    eps_target = qsm.box_eps_target(q_each(after), batch.obs, a_k, cfg.q_scale)
    out["qsm/eps_target"] = eps_target
    inputs = (batch.obs, k, a_k, eps_target)
    loss, grads = jax.value_and_grad(lambda p: agent.objective.actor_loss(p, inputs)[0])(actor)
    out["qsm/actor_loss"] = loss[None]
    actor_grads = recorded_grads(gradient_clipping(cfg.max_grad_norm, "global"), grads)
    return out, {"critic": opt_state[1], "actor": actor_grads}


def run_qvpo(inp: dict, official: dict, preset: str) -> dict[str, np.ndarray]:
    """The authors' QVPO quantities with revflow's ``qvpo`` (box policy) under their
    parameters (the policy net's layout is theirs; ``mapping.qvpo_critic`` stacks their two
    critics), from their update and exploration keys with revflow's own draws (the CI test
    checks that those equal the recorded ones)."""
    s = SIZES
    cfg = _sized_config(
        "qvpo",
        preset,
        num_particles=s["eval_candidates"],
        num_flow_steps=s["diffusion_steps"],
        num_policy_samples=s["qvpo_train_samples"],
        target_particles=s["qvpo_target_samples"],
        behaviour_particles=s["qvpo_behaviour_samples"],
        entropy_samples=s["qvpo_entropy_samples"],
        entropy_weight=s["qvpo_entropy_alpha"],
        actor_lr=s["actor_lr"],
        critic_lr=s["critic_lr"],
    )
    if cfg.policy_space != "box":
        # The tanh-latent variant has no counterpart of their box sampler or mish nets: its
        # quantities are missing (rows that differ), only its defaults compare.
        return {}
    agent = make_agent("qvpo", cfg, s["obs_dim"], s["act_dim"])
    out: dict[str, np.ndarray] = {}
    fresh = jax.jit(agent.init)(jax.random.PRNGKey(s["seed"]))
    a = fresh.actor_params["params"]
    names = sorted(a, key=lambda n: int(n.split("_")[1]))
    _init_fingerprint(
        out,
        "qvpo",
        [a[n]["kernel"] for n in names],
        [a[n]["bias"] for n in names],
        fresh.critic_params,
    )
    state = fresh.replace(
        actor_params=_tree(unflatten(official, "qvpo.param.actor")),
        target_actor_params=_tree(unflatten(official, "qvpo.param.target_actor")),
        critic_params=_tree(mapping.qvpo_critic(unflatten(official, "qvpo.param.critic"))),
        target_critic_params=_tree(mapping.qvpo_critic(unflatten(official, "qvpo.param.target"))),
    )
    values, grads = jax.jit(lambda st, x: _qvpo_quantities(agent, st, x))(state, _tree(inp))
    return _collect(out, "qvpo", values, grads)


def _qvpo_quantities(agent: Any, state: Any, inp: dict) -> tuple[dict, dict]:
    """Every qvpo quantity (one jitted program): ``(values, gradient trees)``."""
    s, policy, critic, cfg = SIZES, agent.policy, agent.critic, agent.config
    out: dict[str, Any] = {}
    actor, online = state.actor_params, state.critic_params
    batch = _batch(inp)
    lam = jnp.zeros((), jnp.float32)
    sch = policy.schedule
    for name, value in box_diffusion.ddpm_coefficients(sch).items():
        out[f"qvpo/schedule_{name}"] = value
    out["qvpo/eps_net"] = policy.eps_at_step(
        actor, inp["diff_step"], inp["diff_x"], batch.obs, lam, sch
    )
    out["qvpo/critic_q"] = critic.net.apply(online, batch.obs, batch.action)
    out["qvpo/eval_action_best_of_n"] = agent.act(state, inp["key_eval"], batch.obs, "best-of-n")
    out["qvpo/explore_action"] = agent.act(state, inp["key_explore"], batch.obs, "explore")

    # The update with their key: TD from the target policy by the target critics.
    k_next, (k_actor, k_entropy, k_loss), _ = agent.objective.split(inp["key_update"])
    out["qvpo/td_next_action"] = policy.best_of_rows(
        state.target_actor_params,
        k_next,
        batch.next_obs,
        lam,
        agent.q_fn(state.target_critic_params),
        cfg.target_particles,
    )
    y, _ = agent.objective.td_target(state, batch, k_next)
    out["qvpo/td_target"] = y
    q = critic.net.apply(online, batch.obs, batch.action)
    out["qvpo/critic_loss"] = jnp.mean((q - y[None]) ** 2, axis=1)
    probe = stepping_recorder(s["probe_critic_lr"])
    opt = optax.chain(gradient_clipping(cfg.max_grad_norm, cfg.critic_clip), probe)
    after, opt_state, _ = critic_td_step(
        critic.net, opt, online, opt.init(online), batch, y, per_critic=critic.per_critic
    )

    # Actor: the best of the policy samples by the critics after their step.
    b, n = batch.obs.shape[0], cfg.num_policy_samples
    rows = jnp.repeat(batch.obs, n, axis=0)
    samples = policy.sample(actor, k_actor, rows, lam).reshape(b, n, -1)
    q_all = critic.q_min(after, batch.obs[:, None, :], samples)
    idx, _ = qvpo.best_sample_weights(q_all)
    out["qvpo/train_samples"], out["qvpo/train_q"] = samples, q_all
    out["qvpo/train_best_action"] = samples[jnp.arange(b), idx]
    inputs, _ = agent.objective.actor_inputs(state, after, batch, (k_actor, k_entropy, k_loss))
    out["qvpo/train_weights"] = inputs[-1]
    loss, grads = jax.value_and_grad(lambda p: agent.objective.actor_loss(p, inputs)[0])(actor)
    out["qvpo/actor_loss"] = loss[None]
    actor_grads = recorded_grads(gradient_clipping(cfg.max_grad_norm, "global"), grads)
    return out, {"critic": opt_state[1], "actor": actor_grads}


def published_defaults(agent: str, preset: str = "reference") -> dict[str, np.ndarray]:
    """``<agent>/default/<name>``: revflow's defaults under the names of
    :data:`spec.HYPERPARAMETERS` (the agent's reference config and the engine's)."""
    c, t = make_config(agent, preset), TrainConfig()
    common = {
        "batch_size": c.batch_size,
        "gamma": c.gamma,
        "tau": c.tau,
        "critic_lr": c.critic_lr,
        "actor_lr": c.actor_lr,
        "actor_max_grad_norm": c.max_grad_norm,
        "critic_max_grad_norm": c.max_grad_norm,
        "num_critics": c.num_critics,
        "critic_width": c.critic_hidden[0] if len(set(c.critic_hidden)) == 1 else -1,
        "critic_layers": len(c.critic_hidden),
        "reward_scale": getattr(c, "reward_scale", 1.0),
        "warmup_steps": t.warmup_steps,
        "updates_per_step": t.utd,
        "eval_episodes": t.eval_episodes,
        "eval_every": t.eval_every,
        "steps": t.steps,
    }
    if agent == "rfm":
        values = {
            **common,
            "actor_width": c.actor_hidden,
            "actor_blocks": c.actor_blocks,
            "embed_dim": c.embed_dim,
            "lam": c.lam,
            "lam_end": c.lam if c.lam_end is None else c.lam_end,
            "num_flow_steps": c.num_flow_steps,
            "num_reverse_samples": c.num_reverse_samples,
            "num_particles_train": c.num_particles,
            "num_particles_explore": c.num_particles,
            "num_particles_eval": c.num_particles,
            # their sampler and training times run over [t_min, 1 - t_min]
            "t_min": c.t_min if abs(c.t_max - (1.0 - c.t_min)) < 1e-12 else -1,
            "cv_ridge": c.cv_ridge,
            "cv_clip": c.cv_clip,
            "optimal_control_variate": c.control_variate == "optimal",
            "policy_endpoints": c.endpoint_source == "policy",
        }
    elif agent == "qne":
        values = {
            **common,
            "actor_width": c.actor_hidden,
            "actor_blocks": c.actor_blocks,
            "embed_dim": c.embed_dim,
            "num_flow_steps": c.num_flow_steps,
            "lam": c.lam,
            "lam_end": c.lam if c.lam_end is None else c.lam_end,
            # the box policy is theirs; the latent one clips nothing and has no tau_min
            "clip_sampler": c.policy_space == "box" and c.clip_sampler,
            "entropy_backup": c.entropy_backup,
            "log_prob_samples": c.log_prob_samples if c.policy_space == "box" else -1,
            "log_prob_steps": c.log_prob_steps if c.policy_space == "box" else -1,
            "eval_best_of_n": True,
            "num_particles_eval": c.num_particles,
            "num_reverse_samples": c.num_reverse_samples,
            "t_min": c.tau_min if c.policy_space == "box" else round(1.0 - c.t_max, 12),
        }
    elif agent == "dqs":
        values = {
            **common,
            "actor_width": c.actor_hidden,
            "actor_blocks": c.actor_blocks,
            "embed_dim": c.embed_dim,
            "ve_sigma_min": c.ve_sigma_min,
            "ve_sigma_max": c.ve_sigma_max,
            "lam": c.lam,
            "lam_end": c.lam if c.lam_end is None else c.lam_end,
            "diffusion_scale": c.diffusion_scale,
            "num_flow_steps": c.num_flow_steps,
            "num_reverse_samples": c.num_reverse_samples,
        }
    elif agent == "qsm":
        box = c.policy_space == "box"
        values = {
            **common,
            "actor_width": c.actor_hidden,
            "actor_blocks": c.actor_blocks,
            "embed_dim": c.embed_dim,
            "num_flow_steps": c.num_flow_steps,
            # the network's temperature input (latent: 1/M)
            "ddpm_temperature": qsm.DDPM_TEMPERATURE if box else 1.0 / c.q_scale,
            "clip_sampler": c.clip_sampler,
            "q_scale": c.q_scale,
            "target_noise": c.target_noise,
            "explore_noise": c.explore_noise,
        }
    elif agent == "qvpo":
        box = c.policy_space == "box"
        values = {
            **common,
            "actor_width": c.actor_hidden,
            "actor_blocks": c.actor_blocks if box else -1,  # theirs: hidden mish layers
            "embed_dim": c.embed_dim,
            "num_flow_steps": c.num_flow_steps,
            "noise_ratio": 1.0,  # revflow's samplers always add their full noise
            "behaviour_particles": c.behaviour_particles,
            "target_particles": c.target_particles,
            "num_particles": c.num_particles,
            "num_policy_samples": c.num_policy_samples,
            "deterministic": False,  # evaluation samples with noise (best of n)
            "eps_greedy": 0.0,  # no uniform-random exploration
            # revflow implements only their action_augmentation branch (the best of the
            # policy samples); action_lr and action_gradient_steps configure the other branch
            # and are absent here (check.py's docstring).
            "action_augmentation": box,
            "entropy_weight": c.entropy_weight,
            "entropy_samples": c.entropy_samples,
        }
    else:
        residual = c.actor_arch == "residual"
        values = {
            **common,
            "alpha_lr": c.alpha_lr,
            "actor_width": c.actor_hidden[0] if residual else -1,
            "actor_blocks": len(c.actor_hidden) if residual else -1,
            "log_std_min": c.log_std_min,
            "log_std_max": c.log_std_max,
        }
    return {f"{agent}/default/{k}": np.array([float(v)]) for k, v in values.items()}


AGENTS = {
    "rfm": run_rfm,
    "sac": run_sac,
    "qne": run_qne,
    "dqs": run_dqs,
    "qsm": run_qsm,
    "qvpo": run_qvpo,
}


def run(
    inp: dict, official: dict, agents: tuple[str, ...] = ("rfm", "sac"), preset: str = "reference"
) -> dict[str, np.ndarray]:
    """Every revflow quantity of ``agents`` on the inputs, under the official parameters."""
    out: dict[str, np.ndarray] = {}
    for name in agents:
        out.update(AGENTS[name](inp, official, preset))
        out.update(published_defaults(name, preset))
    return out
