"""Official side of the fidelity harness: the authors' functions on the stored inputs.

Run by a Python with the authors' environment (jax 0.6.2, flax 0.10.7, optax 0.2.6; see
README.md), with their checkout on ``sys.path``:

    PY official_side.py --official DIR --inputs inputs.npz --out official.npz

This file is revflow's; it only imports and calls the authors' modules (``src.agent.rfm``,
``src.agent.sac``, ``src.agent.critic``). Their agents are constructed with the sizes of
``spec.SIZES``; their own initialisation gives the parameters that the revflow side maps onto
its networks. Gradients are read with a "recording" optimiser (its state after one update
is the gradient it received, after any clipping of theirs), so their own update functions
(``update_q``, ``update_q_sac``, ``update_actor_flow_matching``, ``_update_alpha``) are the
ones measured. Where their code draws noise from a key, the same key is passed in (the two
draw identically from one key); the posterior estimate's reverse-sample noise differs in key
derivation, so it is injected through their ``source_distribution`` argument.

The diffusion baselines (revflow's ``qne``, which is their ``maxentdp``; ``dqs``, ``qsm``,
``qvpo``) are measured through their fused updates (see the section comment above
:func:`sgd_recorder`): the stored values are those their update computes, and the random
draws their code makes are recorded for injection on the revflow side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from spec import (  # noqa: E402
    HYPERPARAMETERS,
    OFFICIAL_ALGOS,
    SIZES,
    TRAJECTORY_ROWS,
    flat_vector,
    flatten,
    unflatten,
)


def recorder():
    """An optax transformation whose state after ``update`` is the gradient it was given."""
    import jax
    import optax

    def init(params):
        return jax.tree_util.tree_map(lambda x: x * 0.0, params)

    def update(grads, state, params=None):
        del state, params
        return jax.tree_util.tree_map(lambda g: g * 0.0, grads), grads

    return optax.GradientTransformation(init, update)


def singular_values(kernels) -> np.ndarray:
    """Sorted singular values of each kernel, concatenated (the init's fingerprint)."""
    return np.concatenate(
        [np.sort(np.linalg.svd(np.asarray(k), compute_uv=False)) for k in kernels]
    )


def critic_kernels(params, member: int) -> list:
    """The authors' critic kernels of one ensemble member, input to output."""
    p = params["params"]
    names = sorted(k for k in p if k.startswith("NormedLinear_"))
    return [p[n]["Dense_0"]["kernel"][member] for n in names] + [p["Dense_0"]["kernel"][member]]


def critic_biases(params) -> list:
    p = params["params"]
    names = sorted(k for k in p if k.startswith("NormedLinear_"))
    return [p[n]["Dense_0"]["bias"] for n in names] + [p["Dense_0"]["bias"]]


def trunk_kernels(params) -> list:
    """Kernels of ScoreMLP / ActorMLP, input to output (first layer on the concatenation)."""
    p = params["params"]
    blocks = sorted((k for k in p if k.startswith("Block_")), key=lambda n: int(n.split("_")[1]))
    return (
        [p["Dense_0"]["kernel"]]
        + [p[b]["Dense_0"]["kernel"] for b in blocks]
        + [p["Dense_1"]["kernel"]]
    )


def trunk_biases(params) -> list:
    p = params["params"]
    blocks = sorted((k for k in p if k.startswith("Block_")), key=lambda n: int(n.split("_")[1]))
    return (
        [p["Dense_0"]["bias"]] + [p[b]["Dense_0"]["bias"] for b in blocks] + [p["Dense_1"]["bias"]]
    )


def init_fingerprint(out: dict, agent: str, actor_params, critic_params) -> None:
    n = SIZES["num_critics"]
    out[f"{agent}/init_actor_singular_values"] = singular_values(trunk_kernels(actor_params))
    out[f"{agent}/init_critic_singular_values"] = np.concatenate(
        [singular_values(critic_kernels(critic_params, k)) for k in range(n)]
    )
    biases = trunk_biases(actor_params) + critic_biases(critic_params)
    out[f"{agent}/init_max_abs_bias"] = np.array([max(float(np.abs(b).max()) for b in biases)])


def critic_config(lr: float) -> dict:
    return {
        "state_dim": SIZES["obs_dim"],
        "action_dim": SIZES["act_dim"],
        "hidden_size": SIZES["hidden"],
        "hidden_layers": SIZES["layers"],
        "num_q": SIZES["num_critics"],
        "discount": SIZES["discount"],
        "tau": SIZES["tau"],
        "lr": lr,
        "max_grad_norm": None,
    }


def _rfm_agent(clip: float | None):
    """Their ``RFM`` agent at the sizes of ``spec.SIZES`` (seed ``SIZES["seed"]``: the same
    initial parameters on every call), both gradient clip norms ``clip`` (None: none)."""
    from src.agent.rfm import RFM

    s = SIZES
    return RFM(
        sample_dim=s["act_dim"],
        state_dim=s["obs_dim"],
        critic_config={**critic_config(s["critic_lr"]), "max_grad_norm": clip},
        actor_hidden_size=s["hidden"],
        actor_hidden_layers=s["layers"],
        actor_emb_size=s["emb"],
        actor_lr=s["actor_lr"],
        actor_max_grad_norm=clip,
        num_estimator_mc_samples=s["mc_samples"],
        num_integration_steps=s["flow_steps"],
        batch_size=s["batch"],
        cv_weight=0.0,
        cv_weight_autotune=True,
        cv_ridge=s["cv_ridge"],
        cv_clip=s["cv_clip"],
        rfm_on_policy=True,
        init_temperature=s["lam"],
        final_temperature=s["lam"],
        num_particles_training=s["particles"],
        num_particles_data=s["particles"],
        num_particles_eval=s["particles"],
        sampler_method="euler",
        t_min=s["t_min"],
        seed=s["seed"],
    )


def run_rfm(inp: dict, out: dict) -> None:
    import jax
    import jax.numpy as jnp
    from src.agent.critic import ReturnFunction, get_q_values, update_q
    from src.agent.rfm import make_posterior_mean_fns_for_q, update_actor_flow_matching

    s = SIZES
    agent = _rfm_agent(clip=None)
    net, params = agent.net, agent.net_params
    q_module, q_online = agent.critic.Q_module, agent.critic.Q_online_params
    # Target critics distinct from the online ones (their init copies them), so that a mix-up
    # of the two shows: a second ensemble of their own initialisation.
    q_target = ReturnFunction(
        **critic_config(s["critic_lr"]), rng=jax.random.PRNGKey(7)
    ).Q_online_params
    out.update(flatten(params, "rfm.param.actor"))
    out.update(flatten(q_online, "rfm.param.critic"))
    out.update(flatten(q_target, "rfm.param.target"))
    init_fingerprint(out, "rfm", params, q_online)

    obs, act = jnp.asarray(inp["obs"]), jnp.asarray(inp["action"])
    rew, mask, next_obs = (
        jnp.asarray(inp["reward"]),
        jnp.asarray(inp["mask"]),
        jnp.asarray(inp["next_obs"]),
    )
    t, u_t = jnp.asarray(inp["t"]), jnp.asarray(inp["u_t"])
    lam = jnp.float32(s["lam"])
    lam_rows = jnp.full_like(t, lam)

    # Networks under the mapped parameters.
    out["rfm/velocity_net"] = np.asarray(net.apply(params, t, u_t, obs, lam_rows))
    each = jax.vmap(lambda p: q_module.apply(p, jnp.concatenate([obs, act], -1)))(q_online)
    out["rfm/critic_q"] = np.asarray(each)
    out["rfm/critic_q_min"] = np.asarray(get_q_values(q_module, q_online, obs, act))

    # Evaluation action: best of N particles by min-Q (the authors' argmax rule) from the key
    # revflow's act() gives its particles (the first half of a split).
    key_eval = jax.random.split(jnp.asarray(inp["key_eval"]))[0]
    out["rfm/eval_action_best_of_n"] = np.asarray(
        agent._sample_actions_flow_argmax_fn(
            params, q_online, key_eval, obs, lam, num_particles=s["particles"], method="euler"
        )
    )
    # TD next action (Boltzmann pick among particles) and the TD target.
    y_next, a_next = agent._sample_latent_actions_flow_fn(
        params,
        q_online,
        jnp.asarray(inp["key_next"]),
        next_obs,
        lam,
        num_particles=s["particles"],
        method="euler",
    )
    out["rfm/td_next_latent"] = np.asarray(y_next)
    target = rew + s["discount"] * mask * get_q_values(q_module, q_target, next_obs, a_next)
    out["rfm/td_target"] = np.asarray(target)

    # Critic loss and per-critic gradients (their update_q, unclipped and clipped).
    rec = recorder()
    for tag, clip in (("", None), ("_clipped", s["small_clip"])):
        loss, _, grads, _ = update_q(
            q_module,
            q_online,
            q_target,
            obs,
            act,
            rew,
            mask,
            next_obs,
            a_next,
            rec,
            rec.init(q_online),
            s["discount"],
            clip,
        )
        out[f"rfm/critic_loss{tag}"] = np.asarray(loss)[None]
        out.update(flatten(grads, f"rfm.grad.critic{tag}"))

    # Posterior estimate with the injected reverse-sample noise (B, K, D).
    cfg = agent.posterior_cfg

    def one_row(noise, tt, y, st):
        per_sample, _ = make_posterior_mean_fns_for_q(
            q_module, cfg, source_distribution=lambda key, shape, dtype: noise.astype(dtype)
        )
        return per_sample(jax.random.PRNGKey(0), q_online, lam, tt, y, st)

    y0_post, y1_post, (cv_mean, ess, _, _) = jax.vmap(one_row)(
        jnp.asarray(inp["posterior_noise"]), t, u_t, obs
    )
    out["rfm/posterior_mu1"] = np.asarray(y1_post)
    out["rfm/posterior_mu0"] = np.asarray(y0_post)
    out["rfm/posterior_ess"] = np.asarray(ess)
    out["rfm/posterior_cv_coefficient_mean"] = np.asarray(cv_mean)
    targets = y1_post - y0_post
    out["rfm/regression_target"] = np.asarray(targets)

    # Actor loss and gradient (their update_actor_flow_matching), unclipped and clipped.
    for tag, clip in (("", None), ("_clipped", s["small_clip"])):
        loss, _, grads, _ = update_actor_flow_matching(
            net, params, t, u_t, obs, lam_rows, targets, rec, rec.init(params), clip
        )
        out[f"rfm/actor_loss{tag}"] = np.asarray(loss)[None]
        out.update(flatten(grads, f"rfm.grad.actor{tag}"))

    # Exploration action (data collection): their sample_actions rule, Boltzmann pick among
    # num_particles_data particles by min-Q, from the key given to revflow's act().
    out["rfm/explore_action"] = np.asarray(
        agent._sample_actions_jit(params, q_online, jnp.asarray(inp["traj_key_explore"]), obs, lam)
    )
    run_rfm_trajectory(inp, out)


def _revflow_keyed_posterior(agent):
    """Their posterior batch (their per-row estimator, ``make_posterior_mean_fns_for_q``) with
    row i's K reverse samples drawn as revflow draws them, ``normal(split(key, B)[i], (K, D))``,
    and injected through ``source_distribution`` (their own draw is ``split(split(key, B)[i])[0]``:
    the one draw whose key derivation the two codes do not share)."""
    import jax
    import jax.numpy as jnp
    from src.agent.rfm import make_posterior_mean_fns_for_q

    cfg, q_module = agent.posterior_cfg, agent.critic.Q_module
    shape = (cfg.num_mc_samples, agent.sample_dim)

    def batch(key, q_params, temperature, t_batch, y_t_batch, states):
        keys = jax.random.split(key, t_batch.shape[0])
        noise = jax.vmap(lambda k: jax.random.normal(k, shape, jnp.float32))(keys)

        def one_row(z, t, y, state):
            per_sample, _ = make_posterior_mean_fns_for_q(
                q_module, cfg, source_distribution=lambda key, shape, dtype: z.astype(dtype)
            )
            return per_sample(jax.random.PRNGKey(0), q_params, temperature, t, y, state)

        return jax.vmap(one_row)(noise, t_batch, y_t_batch, states)

    return batch


def run_rfm_trajectory(inp: dict, out: dict) -> None:
    """``trajectory_steps`` consecutive updates of their RFM agent (``agent.update``: their
    fused update with their Adam optimisers, per-critic clipping at ``trajectory_clip``, Polyak
    targets), one stored batch and key per step. After each step: the displacement of the
    actor and critic parameters from their initial values in units of the learning rate, that
    of the target critics in units of tau x critic lr (mapped onto revflow's structure), and
    the step's losses. The posterior's reverse samples are drawn with revflow's key derivation
    (:func:`_revflow_keyed_posterior`); every other draw of their update comes from the key in
    their own way, which the revflow side reproduces by splitting its key as they do."""
    import jax.numpy as jnp
    import mapping

    s = SIZES
    agent = _rfm_agent(clip=s["trajectory_clip"])
    # The same seed: the initial parameters stored by run_rfm (the revflow side starts there).
    _same("trajectory init", agent.net_params, unflatten(out, "rfm.param.actor"), 0.0)
    _same("trajectory init", agent.critic.Q_online_params, unflatten(out, "rfm.param.critic"), 0.0)
    agent._posterior_batch = _revflow_keyed_posterior(agent)
    agent._fused_update = agent._make_fused_update()  # traced with the replaced estimator

    def vectors():
        emb = s["emb"]
        actor = mapping.velocity_net(agent.net_params, s["obs_dim"], s["act_dim"], emb)
        return (
            flat_vector(actor),
            flat_vector(mapping.critic(agent.critic.Q_online_params)),
            flat_vector(mapping.critic(agent.critic.Q_target_params)),
        )

    actor0, critic0, target0 = vectors()
    rows: dict[str, list] = {k: [] for k in TRAJECTORY_ROWS}
    for k in range(s["trajectory_steps"]):
        agent.key = jnp.asarray(inp["traj_key"][k])
        metrics = agent.update(
            *(inp[f"traj_{name}"][k] for name in ("obs", "action", "reward", "mask", "next_obs"))
        )
        actor, critic, target = vectors()
        rows["actor"].append((actor - actor0) / s["actor_lr"])
        rows["critic"].append((critic - critic0) / s["critic_lr"])
        rows["target"].append((target - target0) / (s["tau"] * s["critic_lr"]))
        rows["critic_loss"].append(float(metrics["q_loss"]))
        rows["actor_loss"].append(float(metrics["actor_loss"]))
    for name, values in rows.items():
        out[f"rfm/trajectory_{name}"] = np.asarray(values, np.float32)


def run_sac(inp: dict, out: dict) -> None:
    import jax
    import jax.numpy as jnp
    from src.agent.critic import ReturnFunction, get_q_values, update_q_sac
    from src.agent.sac import SAC, _tanh_normal_sample

    s = SIZES
    agent = SAC(
        state_dim=s["obs_dim"],
        action_dim=s["act_dim"],
        critic_config=critic_config(s["critic_lr"]),
        actor_hidden_size=s["hidden"],
        actor_hidden_layers=s["layers"],
        actor_lr=s["actor_lr"],
        alpha_lr=3e-4,
        log_std_min=-20.0,
        log_std_max=2.0,
        seed=s["seed"],
    )
    actor, params = agent.actor, agent.actor_params
    q_module, q_online = agent.critic.Q_module, agent.critic.Q_online_params
    q_target = ReturnFunction(
        **critic_config(s["critic_lr"]), rng=jax.random.PRNGKey(7)
    ).Q_online_params
    out.update(flatten(params, "sac.param.actor"))
    out.update(flatten(q_online, "sac.param.critic"))
    out.update(flatten(q_target, "sac.param.target"))
    init_fingerprint(out, "sac", params, q_online)

    obs, act = jnp.asarray(inp["sac_obs"]), jnp.asarray(inp["action"])
    rew, mask = jnp.asarray(inp["reward"]), jnp.asarray(inp["mask"])
    next_obs = jnp.asarray(inp["sac_next_obs"])
    alpha = jnp.float32(s["alpha"])
    log_alpha = jnp.log(alpha)

    out["sac/actor_net"] = np.asarray(actor.apply(params, obs))
    each = jax.vmap(lambda p: q_module.apply(p, jnp.concatenate([obs, act], -1)))(q_online)
    out["sac/critic_q"] = np.asarray(each)
    out["sac/eval_action_mean"] = np.asarray(agent._det_sample_actions_jit(params, obs))

    a, logp = _tanh_normal_sample(actor, params, obs, jnp.asarray(inp["key_sample"]), -20.0, 2.0)
    out["sac/sample_action"] = np.asarray(a)
    out["sac/sample_log_prob"] = np.asarray(logp)
    # At states where some log-stds exceed 2: their hard clip against revflow's bound.
    wide, _ = _tanh_normal_sample(
        actor, params, jnp.asarray(inp["wide_obs"]), jnp.asarray(inp["key_sample"]), -20.0, 2.0
    )
    out["sac/sample_action_wide_states"] = np.asarray(wide)

    a_next, logp_next = _tanh_normal_sample(
        actor, params, next_obs, jnp.asarray(inp["key_next"]), -20.0, 2.0
    )
    next_q = get_q_values(q_module, q_target, next_obs, a_next)
    out["sac/td_target"] = np.asarray(rew + s["discount"] * mask * (next_q - alpha * logp_next))

    rec = recorder()
    loss, _, grads, _ = update_q_sac(
        q_module,
        q_online,
        q_target,
        obs,
        act,
        rew,
        mask,
        next_obs,
        a_next,
        logp_next,
        rec,
        rec.init(q_online),
        s["discount"],
        alpha,
        None,
    )
    out["sac/critic_loss"] = np.asarray(loss)[None]
    out.update(flatten(grads, "sac.grad.critic"))

    (loss, logp_pi), grads = SAC._actor_loss_and_grads(
        actor, q_module, params, q_online, obs, alpha, jnp.asarray(inp["key_actor"]), -20.0, 2.0
    )
    out["sac/actor_loss"] = np.asarray(loss)[None]
    out["sac/actor_log_prob"] = np.asarray(logp_pi)
    out.update(flatten(grads, "sac.grad.actor"))

    agent.log_alpha = log_alpha
    agent.alpha_opt = rec
    agent.alpha_opt_state = rec.init(log_alpha)
    alpha_loss, _ = agent._update_alpha(logp_pi)
    out["sac/alpha_loss"] = np.asarray(alpha_loss)[None]
    out["sac/alpha_grad"] = np.asarray(agent.alpha_opt_state)[None]


# --- The diffusion baselines: qne (their maxentdp), dqs, qsm, qvpo --------------------------
#
# Their updates are single fused jitted functions (``_make_fused_update``); the pieces that
# are closures of it (samplers, ``_calc_log_prob``, ``sample_best``, ``diffusion_loss``, ...)
# are read out of its closure and called directly, the exposed update functions
# (``update_q``, ``update_actor_*``, ``update_scores``, ``estimate_grad_Rt``) are called
# directly, and the few lines that are inline in the fused update (maxentdp's eps target,
# qsm's eps target from the critic gradients, qvpo's weights) are written out here. Each
# agent's whole fused update is then run once with recording optimisers on the same key, and
# its losses and gradients must equal the step-by-step ones (``_same``): so what is stored
# is what their update computes. The random draws their code makes from a key are recorded
# (``DrawRecorder``) and stored as ``<agent>.draw/<name>``, to be injected on the revflow
# side.


def sgd_recorder(lr: float):
    """Like :func:`recorder` (state = the gradient received), but steps by ``-lr * grad``."""
    import jax
    import optax

    def init(params):
        return jax.tree_util.tree_map(lambda x: x * 0.0, params)

    def update(grads, state, params=None):
        del state, params
        return jax.tree_util.tree_map(lambda g: -lr * g, grads), grads

    return optax.GradientTransformation(init, update)


class DrawRecorder:
    """Within ``with DrawRecorder() as rec:``, jit is disabled and every call of
    ``jax.random.{normal, uniform, randint, truncated_normal}`` is recorded in call order as
    ``(kind, value)`` (value None when drawn under vmap, i.e. not concrete)."""

    KINDS = ("normal", "uniform", "randint", "truncated_normal")

    def __enter__(self):
        import jax

        self.draws: list = []
        self._orig = {k: getattr(jax.random, k) for k in self.KINDS}
        for kind, fn in self._orig.items():
            setattr(jax.random, kind, self._wrap(kind, fn))
        self._nojit = jax.disable_jit()
        self._nojit.__enter__()
        return self

    def _wrap(self, kind, fn):
        import jax

        def wrapped(*args, **kwargs):
            value = fn(*args, **kwargs)
            concrete = not isinstance(value, jax.core.Tracer)
            self.draws.append((kind, np.asarray(value) if concrete else None))
            return value

        return wrapped

    def __exit__(self, *exc):
        import jax

        self._nojit.__exit__(*exc)
        for kind, fn in self._orig.items():
            setattr(jax.random, kind, fn)
        return False

    def take(self, kind: str):
        """The first recorded draw (removed) of ``kind``; it must be the next one."""
        got, value = self.draws.pop(0)
        if got != kind:
            raise AssertionError(f"expected a {kind} draw, their code drew {got}")
        return value

    def done(self, what: str) -> None:
        """Every concrete draw was taken (draws under vmap are derived from their keys)."""
        left = [kind for kind, value in self.draws if value is not None]
        if left:
            raise AssertionError(f"{what}: draws not accounted for: {left}")


def record_draws(fn, *args, **kwargs) -> DrawRecorder:
    with DrawRecorder() as rec:
        fn(*args, **kwargs)
    return rec


def closure(fn, name: str):
    """The free variable ``name`` of a (jitted) function: a closure of their fused update."""
    fn = getattr(fn, "__wrapped__", fn)
    return fn.__closure__[fn.__code__.co_freevars.index(name)].cell_contents


def _same(what: str, mine, theirs, tol: float = 1e-5) -> None:
    """Step-by-step value == their fused update's (pytrees), else the harness is wrong."""
    import jax

    a = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(mine)])
    b = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(theirs)])
    scale = max(float(np.max(np.abs(b))), 1.0)
    diff = float(np.max(np.abs(a - b))) / scale if a.shape == b.shape else float("inf")
    if not diff <= tol:
        raise AssertionError(f"{what}: step-by-step differs from their fused update ({diff})")


def _sampler_draws(rec: DrawRecorder, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """An ancestral sampler's draws: x_init, then one noise per step -> (x_init, (steps, ...))."""
    x_init = rec.take("normal")
    return x_init, np.stack([rec.take("normal") for _ in range(steps)])


def _state_hash_keys(obs):
    """Their evaluation keys, one per state, from a hash of the state's float bits (the same
    function in all four agents; qvpo exposes it)."""
    from src.agent.qvpo import _deterministic_keys_from_obs

    return _deterministic_keys_from_obs(obs)


def tree_kernels(params) -> tuple[list, list]:
    """All Dense kernels and biases of a flax param tree, in path order."""
    kernels, biases = [], []

    def walk(node):
        for key in sorted(node):
            value = node[key]
            if hasattr(value, "items"):
                if "kernel" in value:
                    kernels.append(np.asarray(value["kernel"]))
                    biases.append(np.asarray(value["bias"]))
                else:
                    walk(value)

    walk(params)
    return kernels, biases


def _diffusion_batch(inp: dict):
    import jax.numpy as jnp

    return tuple(jnp.asarray(inp[k]) for k in ("obs", "action", "reward", "mask", "next_obs"))


def _baseline_critics(s: dict):
    """Online and (distinct) target critics of the shared ReturnFunction ensemble."""
    import jax
    from src.agent.critic import ReturnFunction

    return ReturnFunction(
        **critic_config(s["critic_lr"]), rng=jax.random.PRNGKey(7)
    ).Q_online_params


def run_qne(inp: dict, out: dict) -> None:
    """The authors' MaxEntDP (``src/agent/maxentdp.py``), revflow's qne."""
    import jax
    import jax.numpy as jnp
    from src.agent import maxentdp as M
    from src.agent.critic import get_q_values, update_q_sac

    s, a = SIZES, "qne"
    n_steps, k_cand = s["diffusion_steps"], s["qne_candidates"]
    agent = M.MaxEntDP(
        sample_dim=s["act_dim"],
        state_dim=s["obs_dim"],
        critic_config=critic_config(s["critic_lr"]),
        actor_hidden_size=s["hidden"],
        actor_hidden_layers=s["layers"],
        actor_emb_size=s["emb"],
        actor_lr=s["actor_lr"],
        actor_max_grad_norm=None,
        num_diffusion_steps=n_steps,
        init_temperature=s["lam"],
        final_temperature=s["lam"],
        clip_sampler=True,
        backup_entropy=True,
        log_prob_samples=s["qne_log_prob_samples"],
        log_prob_steps=s["qne_log_prob_steps"],
        eval_action_selection=True,
        eval_candidate_num=s["eval_candidates"],
        score_samples_num=k_cand,
        t_min=1e-3,
        t_max=None,
        seed=s["seed"],
    )
    net, params = agent.net, agent.net_params
    q_module, q_online = agent.critic.Q_module, agent.critic.Q_online_params
    q_target = _baseline_critics(s)
    out.update(flatten(params, f"{a}.param.actor"))
    out.update(flatten(q_online, f"{a}.param.critic"))
    out.update(flatten(q_target, f"{a}.param.target"))
    init_fingerprint(out, a, params, q_online)
    obs, act, rew, mask, next_obs = _diffusion_batch(inp)
    b = obs.shape[0]
    # The temperature as their update computes it: exp(log lam) in float32.
    log_lam = jnp.log(s["lam"])
    temp = M.anneal_temperature(log_lam, log_lam, 1, agent.temperature_steps)
    out[f"{a}/temperature"] = np.asarray(temp)[None]

    # Noise schedule (maxentdp.py:22-49): cosine alpha_hat on the continuous time grid.
    for name in ("alpha_hat_prevs", "alpha_hats", "alphas", "betas"):
        out[f"{a}/schedule_{name}"] = np.asarray(getattr(agent, name))
        out[f"{a}/log_prob_schedule_{name}"] = np.asarray(getattr(agent, f"lp_{name}"))
    out[f"{a}/schedule_t_max"] = np.array([agent.t_max], np.float32)

    # Networks: the eps net reads the log-SNR of the time (maxentdp.py:203-205, 442-444).
    tau = jnp.asarray(inp["diff_tau"])
    log_snr = M.log_snr_from_alpha_hat(M.cosine_alpha_hat(tau))
    out[f"{a}/log_snr_of_tau"] = np.asarray(log_snr)
    temp_rows = temp * jnp.ones((b,))
    out[f"{a}/eps_net"] = np.asarray(
        net.apply(params, log_snr, jnp.asarray(inp["diff_x"]), obs, temp_rows)
    )
    each = jax.vmap(lambda p: q_module.apply(p, jnp.concatenate([obs, act], -1)))(q_online)
    out[f"{a}/critic_q"] = np.asarray(each)
    out[f"{a}/critic_q_min"] = np.asarray(get_q_values(q_module, q_online, obs, act))

    # Evaluation: best of eval_candidate_num by min-Q of the TARGET critics (their
    # sample_actions passes Q_target_params), keys from the state hash (maxentdp.py:232-265).
    det = agent._det_sample_actions_jit(params, q_target, obs, temp)
    out[f"{a}/eval_action_best_of_n"] = np.asarray(det)
    keys = _state_hash_keys(obs)
    n_eval = s["eval_candidates"]
    inits, noises = [], []
    for i in range(b):
        s_rep = jnp.broadcast_to(obs[i][None], (n_eval, obs.shape[1]))
        cand, _ = agent._sample_actions_jit(params, keys[i], s_rep, temp)
        q = get_q_values(q_module, q_target, s_rep, cand)
        _same("qne eval (state-hash keys)", cand[jnp.argmax(q)], det[i])
        x0, z = _sampler_draws(
            record_draws(agent._sample_actions_jit, params, keys[i], s_rep, temp), n_steps
        )
        inits.append(x0)
        noises.append(z)
    out[f"{a}.draw/eval_keys"] = np.asarray(keys)
    out[f"{a}.draw/eval_init"] = np.stack(inits)
    out[f"{a}.draw/eval_noise"] = np.stack(noises)

    # The update (maxentdp.py:373-541), step by step with their keys.
    probe, rec = sgd_recorder(s["probe_critic_lr"]), recorder()
    agent.critic.optimizer_q, agent.net_optimizer = probe, rec
    agent._fused_update = agent._make_fused_update()
    key = jnp.asarray(inp["key_update"])
    _, key_next, key_t, key_noise, key_score, key_logprob = jax.random.split(key, 6)
    next_a, _ = agent._sample_actions_jit(params, key_next, next_obs, temp)
    calc_log_prob = closure(agent._fused_update, "_calc_log_prob")
    log_prob, _ = calc_log_prob(key_logprob, params, next_obs, next_a, temp)
    out[f"{a}/td_next_action"] = np.asarray(next_a)
    out[f"{a}/td_next_log_prob"] = np.asarray(log_prob)
    next_q = get_q_values(q_module, q_target, next_obs, next_a)
    out[f"{a}/td_target"] = np.asarray(rew + s["discount"] * mask * (next_q - temp * log_prob))
    q_loss, _, q_state, _ = update_q_sac(
        q_module,
        q_online,
        q_target,
        obs,
        act,
        rew,
        mask,
        next_obs,
        next_a,
        log_prob,
        probe,
        probe.init(q_online),
        s["discount"],
        temp,
        None,
    )
    out[f"{a}/critic_loss"] = np.asarray(q_loss)[None]
    # Noisy replay actions and the truncated-normal candidates (maxentdp.py:441-493).
    times = jax.random.uniform(key_t, (b,), minval=agent.t_min, maxval=agent.t_max)
    alpha_hat = M.cosine_alpha_hat(times)
    t_log_snr = M.log_snr_from_alpha_hat(alpha_hat)
    alpha_1 = jnp.sqrt(alpha_hat)
    alpha_2 = jnp.maximum(jnp.sqrt(1.0 - alpha_hat), 1e-5)
    noise = jax.random.normal(key_noise, act.shape)
    noisy = alpha_1[:, None] * act + alpha_2[:, None] * noise
    noisy_rep = jnp.broadcast_to(noisy[:, None, :], (b, k_cand, act.shape[1]))
    std = jnp.maximum(alpha_2 / alpha_1, 1e-5)
    lower = -noisy_rep / alpha_2[:, None, None] - (1.0 / std)[:, None, None]
    upper = -noisy_rep / alpha_2[:, None, None] + (1.0 / std)[:, None, None]
    key_tn, key_norm = jax.random.split(key_score)
    tnormal = jax.random.truncated_normal(key_tn, lower=lower, upper=upper, shape=noisy_rep.shape)
    normal_clip = jnp.clip(jax.random.normal(key_norm, noisy_rep.shape), lower, upper)
    cand_noise = jnp.where(jnp.isnan(tnormal), normal_clip, tnormal)
    clean = noisy_rep / alpha_1[:, None, None] + std[:, None, None] * cand_noise
    q_cand = get_q_values(
        q_module, q_target, M._replicate_states(obs, k_cand), clean.reshape(-1, act.shape[1])
    ).reshape(b, k_cand)
    weights = jax.nn.softmax(q_cand / jnp.maximum(temp, 1e-12), axis=1)
    eps_target = -jnp.sum(weights[:, :, None] * cand_noise, axis=1)
    out[f"{a}/train_tau"] = np.asarray(times)
    out[f"{a}/train_log_snr"] = np.asarray(t_log_snr)
    out[f"{a}/train_noisy_action"] = np.asarray(noisy)
    out[f"{a}/candidate_actions"] = np.asarray(clean)
    out[f"{a}/candidate_weights"] = np.asarray(weights)
    out[f"{a}/eps_target"] = np.asarray(eps_target)
    loss, _, actor_state, _ = M.update_actor_maxentdp(
        net, params, t_log_snr, noisy, obs, temp_rows, eps_target, rec, rec.init(params), None
    )
    out[f"{a}/actor_loss"] = np.asarray(loss)[None]
    out.update(flatten(q_state, f"{a}.grad.critic"))
    out.update(flatten(actor_state, f"{a}.grad.actor"))

    fused = agent._fused_update(
        params,
        rec.init(params),
        q_online,
        q_target,
        probe.init(q_online),
        0,
        0,
        key,
        obs,
        act,
        rew,
        mask,
        next_obs,
    )
    _same("qne critic gradient", q_state, fused[4])
    _same("qne actor gradient", actor_state, fused[1], 1e-4)
    _same("qne losses", [q_loss, loss], [fused[8]["q_loss"], fused[8]["actor_loss"]])
    draws = record_draws(
        agent._fused_update,
        params,
        rec.init(params),
        q_online,
        q_target,
        probe.init(q_online),
        0,
        0,
        key,
        obs,
        act,
        rew,
        mask,
        next_obs,
    )
    td_init, td_noise = _sampler_draws(draws, n_steps)
    out[f"{a}.draw/td_init"], out[f"{a}.draw/td_noise"] = td_init, td_noise
    out[f"{a}.draw/log_prob_noise"] = draws.take("normal")
    out[f"{a}.draw/train_tau"] = draws.take("uniform")
    out[f"{a}.draw/train_noise"] = draws.take("normal")
    draws.take("truncated_normal")
    draws.take("normal")
    out[f"{a}.draw/candidate_noise"] = np.asarray(cand_noise)
    draws.done("qne update")
    _same(
        "qne recorded draws",
        [out[f"{a}.draw/train_tau"], out[f"{a}.draw/train_noise"]],
        [times, noise],
    )


def run_dqs(inp: dict, out: dict) -> None:
    """The authors' DQS (``src/agent/dqs.py``, with ``components/``)."""
    import jax
    import jax.numpy as jnp
    from src.agent import dqs as M
    from src.agent.critic import get_q_values, update_q
    from src.components.noise_schedule import noise_g, noise_h
    from src.components.score_estimator import estimate_grad_Rt, log_expectation_reward
    from src.components.sde_integration import integrate_sde

    s, a = SIZES, "dqs"
    n_steps, k_mc = s["diffusion_steps"], s["dqs_mc_samples"]
    b = s["batch"]
    agent = M.DQS(
        sample_dim=s["act_dim"],
        state_dim=s["obs_dim"],
        critic_config=critic_config(s["critic_lr"]),
        actor_hidden_size=s["hidden"],
        actor_hidden_layers=s["layers"],
        actor_emb_size=s["emb"],
        actor_lr=s["actor_lr"],
        actor_max_grad_norm=None,
        num_estimator_mc_samples=k_mc,
        num_integration_steps=n_steps,
        num_samples_to_sample_from_buffer=b,
        sigma_min=1e-5,
        sigma_max=1.0,
        init_temperature=s["lam"],
        final_temperature=s["lam"],
        diffusion_scale=1.0,
        seed=s["seed"],
    )
    net, params = agent.net, agent.net_params
    energy = agent.energy_function
    q_module, q_online = energy.Q_module, energy.Q_online_params
    q_target = _baseline_critics(s)
    out.update(flatten(params, f"{a}.param.actor"))
    out.update(flatten(q_online, f"{a}.param.critic"))
    out.update(flatten(q_target, f"{a}.param.target"))
    init_fingerprint(out, a, params, q_online)
    obs, act, rew, mask, next_obs = _diffusion_batch(inp)
    sig_min, sig_diff = agent.sigma_min, agent.sigma_diff
    log_lam = jnp.log(s["lam"])
    temp = M.anneal_temperature(log_lam, log_lam, 1, agent.temperature_steps)
    temp_rows = temp * jnp.ones(b)
    out[f"{a}/temperature"] = np.asarray(temp)[None]

    # VE schedule (noise_schedule.py): h(t) = sigma_min^2 (sigma_diff^(2t) - 1), g(t)^2 = h'(t);
    # loss weight h(t) + 1e-3 (lambda_weighter.py).
    t01 = jnp.asarray(inp["diff_t01"])
    out[f"{a}/noise_h"] = np.asarray(noise_h(t01, sig_min, sig_diff))
    out[f"{a}/noise_g"] = np.asarray(noise_g(t01, sig_min, sig_diff))
    out[f"{a}/loss_weight"] = np.asarray(agent.lambda_weighter(t01))
    # The score net reads t in [0, 1] itself (sde_integration.py:27, dqs.py:40).
    out[f"{a}/score_net"] = np.asarray(
        net.apply(params, t01, jnp.asarray(inp["diff_x"]), obs, temp_rows)
    )
    each = jax.vmap(lambda p: q_module.apply(p, jnp.concatenate([obs, act], -1)))(q_online)
    out[f"{a}/critic_q"] = np.asarray(each)
    out[f"{a}/critic_q_min"] = np.asarray(get_q_values(q_module, q_online, obs, act))
    # The score target at given points: grad_a logmeanexp_k Q(s, a + sqrt(h) z_k)/lam, from
    # the key's draws (score_estimator.py); recorded at the update's points below.

    # Evaluation (dqs.py:130-175, 356-386): one sample from the state-hash key, integrated
    # with diffusion_scale 0 (drift g^2 * score, no noise), then tanh.
    raw = agent._det_sample_actions_jit(params, obs, temp_rows)
    out[f"{a}/eval_sample_raw"] = np.asarray(raw)
    out[f"{a}/eval_action"] = np.asarray(jnp.tanh(raw))
    keys = _state_hash_keys(obs)
    base = noise_h(1.0, sig_min, sig_diff) ** 0.5
    init = jax.vmap(lambda k: jax.random.normal(k, (s["act_dim"],), jnp.float32))(keys) * base
    again, _ = integrate_sde(
        jax.random.PRNGKey(0),
        net,
        params,
        init,
        obs,
        n_steps,
        sig_min,
        sig_diff,
        diffusion_scale=0.0,
        temperature=temp_rows,
    )
    _same("dqs eval (state-hash keys)", again, raw)
    out[f"{a}.draw/eval_keys"] = np.asarray(keys)
    out[f"{a}.draw/eval_init"] = np.asarray(init / base)

    # The update (dqs.py:200-326), step by step with their keys.
    probe, rec = sgd_recorder(s["probe_critic_lr"]), recorder()
    agent.energy_function.optimizer_q, agent.net_optimizer = probe, rec
    agent._fused_update = agent._make_fused_update()
    key = jnp.asarray(inp["key_update"])
    raw_next, key_after = agent._sample_actions_jit(params, key, b, next_obs, 1.0, temp_rows)
    next_a = jnp.tanh(raw_next)
    out[f"{a}/td_next_sample_raw"] = np.asarray(raw_next)
    out[f"{a}/td_next_action"] = np.asarray(next_a)
    key1, key2, key3, _ = jax.random.split(key_after, 4)
    times = jax.random.uniform(key1, (b,))
    z = jax.random.normal(key2, act.shape)
    noised = act + z * jnp.sqrt(noise_h(times, sig_min, sig_diff))[:, None]
    scores = estimate_grad_Rt(
        key3,
        times,
        noised,
        obs,
        energy,
        {"Q_online_params": q_online},
        num_mc_samples=k_mc,
        sigma_min=sig_min,
        sigma_diff=sig_diff,
        temperature=temp_rows,
    )
    weights = agent.lambda_weighter(times)
    out[f"{a}/train_t"] = np.asarray(times)
    out[f"{a}/train_noised_action"] = np.asarray(noised)
    out[f"{a}/score_target"] = np.asarray(scores)
    out[f"{a}/train_loss_weight"] = np.asarray(weights)
    loss, _, actor_state, _ = M.update_scores(
        net, params, times, noised, obs, scores, weights, rec, rec.init(params), temp_rows, None
    )
    out[f"{a}/actor_loss"] = np.asarray(loss)[None]
    out[f"{a}/td_target"] = np.asarray(
        rew + s["discount"] * mask * get_q_values(q_module, q_target, next_obs, next_a)
    )
    q_loss, _, q_state, _ = update_q(
        q_module,
        q_online,
        q_target,
        obs,
        act,
        rew,
        mask,
        next_obs,
        next_a,
        probe,
        probe.init(q_online),
        s["discount"],
        None,
    )
    out[f"{a}/critic_loss"] = np.asarray(q_loss)[None]
    out.update(flatten(q_state, f"{a}.grad.critic"))
    out.update(flatten(actor_state, f"{a}.grad.actor"))

    fused = agent._fused_update(
        params,
        rec.init(params),
        q_online,
        q_target,
        probe.init(q_online),
        0,
        0,
        key,
        obs,
        act,
        rew,
        mask,
        next_obs,
    )
    _same("dqs critic gradient", q_state, fused[4])
    _same("dqs actor gradient", actor_state, fused[1], 1e-4)
    _same("dqs losses", [q_loss, loss], [fused[8]["q_loss"], fused[8]["dqs_loss"]], 1e-4)
    draws = record_draws(
        agent._fused_update,
        params,
        rec.init(params),
        q_online,
        q_target,
        probe.init(q_online),
        0,
        0,
        key,
        obs,
        act,
        rew,
        mask,
        next_obs,
    )
    td_init, td_noise = _sampler_draws(draws, n_steps)
    out[f"{a}.draw/td_init"], out[f"{a}.draw/td_noise"] = td_init, td_noise
    out[f"{a}.draw/train_t"] = draws.take("uniform")
    out[f"{a}.draw/train_noise"] = draws.take("normal")
    # The estimator's draws are under vmap: row i's K samples come from split(key3, B)[i].
    mc = jax.vmap(lambda k: jax.random.normal(k, (k_mc, s["act_dim"])))(jax.random.split(key3, b))
    row0 = record_draws(
        log_expectation_reward,
        jax.random.split(key3, b)[0],
        times[0],
        noised[0],
        obs[0],
        energy,
        {"Q_online_params": q_online},
        k_mc,
        sig_min,
        sig_diff,
        temp_rows[0],
    )
    _same("dqs estimator draws", row0.take("normal"), mc[0], 1e-6)
    out[f"{a}.draw/score_noise"] = np.asarray(mc)
    draws.done("dqs update")
    _same(
        "dqs recorded draws", [out[f"{a}.draw/train_t"], out[f"{a}.draw/train_noise"]], [times, z]
    )


def run_qsm(inp: dict, out: dict) -> None:
    """The authors' QSM (``src/agent/qsm.py``)."""
    import jax
    import jax.numpy as jnp
    from src.agent import qsm as M
    from src.agent.critic import get_q_values, update_q

    s, a = SIZES, "qsm"
    n_steps, b = s["diffusion_steps"], s["batch"]
    agent = M.QSM(
        sample_dim=s["act_dim"],
        state_dim=s["obs_dim"],
        critic_config=critic_config(s["critic_lr"]),
        actor_hidden_size=s["hidden"],
        actor_hidden_layers=s["layers"],
        actor_emb_size=s["emb"],
        actor_lr=s["actor_lr"],
        actor_max_grad_norm=None,
        num_diffusion_steps=n_steps,
        ddpm_temperature=1.0,
        clip_sampler=True,
        beta_schedule="vp",
        q_grad_scale=s["qsm_q_scale"],
        target_action_noise=s["qsm_noise"],
        exploration_noise=s["qsm_noise"],
        seed=s["seed"],
    )
    net, params = agent.net, agent.net_params
    q_module, q_online = agent.critic.Q_module, agent.critic.Q_online_params
    q_target = _baseline_critics(s)
    out.update(flatten(params, f"{a}.param.actor"))
    out.update(flatten(q_online, f"{a}.param.critic"))
    out.update(flatten(q_target, f"{a}.param.target"))
    init_fingerprint(out, a, params, q_online)
    obs, act, rew, mask, next_obs = _diffusion_batch(inp)
    temp_rows = jnp.ones((b,))  # ddpm_temperature, also the net's temperature input

    # Discrete VP schedule (qsm.py:27-49).
    for name in ("betas", "alphas", "alpha_hats"):
        out[f"{a}/schedule_{name}"] = np.asarray(getattr(agent, name))
    # The eps net reads the integer step as a float (qsm.py:164, 315).
    step = jnp.asarray(inp["diff_step"])
    x = jnp.asarray(inp["diff_x"])
    out[f"{a}/eps_net"] = np.asarray(net.apply(params, step.astype(jnp.float32), x, obs, temp_rows))
    each = jax.vmap(lambda p: q_module.apply(p, jnp.concatenate([obs, act], -1)))(q_online)
    out[f"{a}/critic_q"] = np.asarray(each)
    out[f"{a}/critic_q_min"] = np.asarray(get_q_values(q_module, q_online, obs, act))
    # The eps target at given points: -M * mean over critics of grad_a Q_k(s, a_t), no time
    # factor (qsm.py:237-247, 305-309); here at a_t = diff_x.
    q_grads = closure(agent._fused_update, "_critic_action_gradients")
    out[f"{a}/eps_target_at_inputs"] = np.asarray(
        -s["qsm_q_scale"] * jnp.mean(q_grads(q_online, obs, x), axis=0)
    )

    # Evaluation: one sample from the state-hash key (qsm.py:188-215).
    det = agent._det_sample_actions_jit(params, obs)
    out[f"{a}/eval_action"] = np.asarray(det)
    keys = _state_hash_keys(obs)
    inits, noises = [], []
    for i in range(b):
        one, _ = agent._sample_actions_jit(params, keys[i], obs[i][None], 1.0)
        _same("qsm eval (state-hash keys)", one[0], det[i])
        x0, z = _sampler_draws(
            record_draws(agent._sample_actions_jit, params, keys[i], obs[i][None], 1.0), n_steps
        )
        inits.append(x0[0])
        noises.append(z[:, 0])
    out[f"{a}.draw/eval_keys"] = np.asarray(keys)
    out[f"{a}.draw/eval_init"] = np.stack(inits)
    out[f"{a}.draw/eval_noise"] = np.stack(noises)
    # Exploration: one sample + N(0, 0.1^2) noise, clipped (qsm.py:358-378).
    agent.key = jnp.asarray(inp["key_explore"])
    explore, _ = agent.sample_actions(obs)
    out[f"{a}/explore_action"] = np.asarray(explore)
    agent.key = jnp.asarray(inp["key_explore"])
    draws = record_draws(agent.sample_actions, obs)
    x0, z = _sampler_draws(draws, n_steps)
    out[f"{a}.draw/explore_init"], out[f"{a}.draw/explore_noise"] = x0, z
    out[f"{a}.draw/explore_action_noise"] = draws.take("normal")

    # The update (qsm.py:249-354), step by step with their keys.
    probe, rec = sgd_recorder(s["probe_critic_lr"]), recorder()
    agent.critic.optimizer_q, agent.net_optimizer = probe, rec
    agent._fused_update = agent._make_fused_update()
    q_grads = closure(agent._fused_update, "_critic_action_gradients")
    key = jnp.asarray(inp["key_update"])
    _, key_next, key_time, key_noise, key_target_noise = jax.random.split(key, 5)
    next_a, _ = agent._sample_actions_jit(params, key_next, next_obs, 1.0)
    next_a = jnp.clip(
        next_a + s["qsm_noise"] * jax.random.normal(key_target_noise, next_a.shape), -1, 1
    )
    out[f"{a}/td_next_action"] = np.asarray(next_a)
    out[f"{a}/td_target"] = np.asarray(
        rew + s["discount"] * mask * get_q_values(q_module, q_target, next_obs, next_a)
    )
    q_loss, q_after, q_state, _ = update_q(
        q_module,
        q_online,
        q_target,
        obs,
        act,
        rew,
        mask,
        next_obs,
        next_a,
        probe,
        probe.init(q_online),
        s["discount"],
        None,
    )
    out[f"{a}/critic_loss"] = np.asarray(q_loss)[None]
    times = jax.random.randint(key_time, (b,), 0, n_steps)
    alpha_hat = agent.alpha_hats[times]
    noise = jax.random.normal(key_noise, act.shape)
    noisy = jnp.sqrt(alpha_hat)[:, None] * act + jnp.sqrt(1.0 - alpha_hat)[:, None] * noise
    # The critics AFTER their TD step (qsm.py:279-309).
    eps_target = -s["qsm_q_scale"] * jnp.mean(q_grads(q_after, obs, noisy), axis=0)
    out[f"{a}/train_step"] = np.asarray(times)
    out[f"{a}/train_noisy_action"] = np.asarray(noisy)
    out[f"{a}/eps_target"] = np.asarray(eps_target)
    loss, _, actor_state, _ = M.update_actor_qsm(
        net,
        params,
        times.astype(jnp.float32),
        noisy,
        obs,
        temp_rows,
        eps_target,
        rec,
        rec.init(params),
        None,
    )
    out[f"{a}/actor_loss"] = np.asarray(loss)[None]
    out.update(flatten(q_state, f"{a}.grad.critic"))
    out.update(flatten(actor_state, f"{a}.grad.actor"))

    fused = agent._fused_update(
        params,
        rec.init(params),
        q_online,
        q_target,
        probe.init(q_online),
        0,
        0,
        key,
        obs,
        act,
        rew,
        mask,
        next_obs,
    )
    _same("qsm critic gradient", q_state, fused[4])
    _same("qsm actor gradient", actor_state, fused[1], 1e-4)
    _same("qsm losses", [q_loss, loss], [fused[8]["q_loss"], fused[8]["actor_loss"]], 1e-4)
    draws = record_draws(
        agent._fused_update,
        params,
        rec.init(params),
        q_online,
        q_target,
        probe.init(q_online),
        0,
        0,
        key,
        obs,
        act,
        rew,
        mask,
        next_obs,
    )
    td_init, td_noise = _sampler_draws(draws, n_steps)
    out[f"{a}.draw/td_init"], out[f"{a}.draw/td_noise"] = td_init, td_noise
    out[f"{a}.draw/td_action_noise"] = draws.take("normal")
    out[f"{a}.draw/train_step"] = draws.take("randint")
    out[f"{a}.draw/train_noise"] = draws.take("normal")
    draws.done("qsm update")
    _same(
        "qsm recorded draws",
        [out[f"{a}.draw/train_step"], out[f"{a}.draw/train_noise"]],
        [times, noise],
    )


def run_qvpo(inp: dict, out: dict) -> None:
    """The authors' QVPO (``src/agent/qvpo.py``: its own mish networks and twin critics)."""
    import jax
    import jax.numpy as jnp
    from src.agent import qvpo as M

    s, a = SIZES, "qvpo"
    n_steps, b, d = s["diffusion_steps"], s["batch"], s["act_dim"]
    n_train, n_ent = s["qvpo_train_samples"], s["qvpo_entropy_samples"]
    agent = M.QVPO(
        state_dim=s["obs_dim"],
        action_dim=d,
        critic_config=critic_config(s["critic_lr"]),
        actor_hidden_size=s["hidden"],
        actor_hidden_layers=s["layers"],
        actor_emb_size=s["emb"],
        actor_lr=s["actor_lr"],
        actor_max_grad_norm=None,
        beta_schedule="cosine",
        num_diffusion_steps=n_steps,
        noise_ratio=1.0,
        behavior_sample=s["qvpo_behaviour_samples"],
        target_sample=s["qvpo_target_samples"],
        eval_sample=s["eval_candidates"],
        train_sample=n_train,
        deterministic=False,
        eps_greedy=0.0,
        action_augmentation=True,
        entropy_alpha=s["qvpo_entropy_alpha"],
        entropy_samples=n_ent,
        seed=s["seed"],
    )
    policy, q_module = agent.policy, agent.q_module
    params, q1, q2 = agent.policy_params, agent.q1_params, agent.q2_params
    # Targets distinct from the online nets (their init copies them): their own init, other keys.
    zs, za = jnp.zeros((1, s["obs_dim"])), jnp.zeros((1, d))
    k_pol, k_q1, k_q2 = jax.random.split(jax.random.PRNGKey(7), 3)
    params_target = policy.init(k_pol, za, jnp.zeros((1,)), zs)
    q1_target, q2_target = q_module.init(k_q1, zs, za), q_module.init(k_q2, zs, za)
    out.update(flatten(params, f"{a}.param.actor"))
    out.update(flatten(params_target, f"{a}.param.target_actor"))
    out.update(flatten({"q1": q1, "q2": q2}, f"{a}.param.critic"))
    out.update(flatten({"q1": q1_target, "q2": q2_target}, f"{a}.param.target"))
    actor_kernels, actor_biases = tree_kernels(params)
    critic_kernels_, critic_biases_ = tree_kernels({"q1": q1, "q2": q2})
    out[f"{a}/init_actor_singular_values"] = singular_values(actor_kernels)
    out[f"{a}/init_critic_singular_values"] = singular_values(critic_kernels_)
    out[f"{a}/init_max_abs_bias"] = np.array(
        [max(float(np.abs(x).max()) for x in actor_biases + critic_biases_)]
    )
    obs, act, rew, mask, next_obs = _diffusion_batch(inp)

    # Cosine DDPM schedule and its posterior coefficients (qvpo.py:31-94).
    for name, value in agent.coeffs.items():
        out[f"{a}/schedule_{name}"] = np.asarray(value)
    step = jnp.asarray(inp["diff_step"])
    out[f"{a}/eps_net"] = np.asarray(policy.apply(params, jnp.asarray(inp["diff_x"]), step, obs))
    out[f"{a}/critic_q"] = np.asarray(jnp.stack([q_module.apply(q, obs, act) for q in (q1, q2)]))

    # Evaluation: best of eval_sample by min(Q1, Q2) of the online critics, keys from the
    # state hash split per candidate, noise_ratio 1 (qvpo.py:349-393).
    keys = M._deterministic_keys_from_obs(obs)
    det = agent._det_sample_actions_eval_jit(params, q1, q2, obs, keys, 1.0)
    out[f"{a}/eval_action_best_of_n"] = np.asarray(det)
    n_eval = s["eval_candidates"]
    inits, noises = [], []
    for i in range(b):
        row_i, row_z = [], []
        for k in jax.random.split(keys[i], n_eval):
            x0, z = _sampler_draws(
                record_draws(agent._sample_actions_raw_jit, params, obs[i][None], k, 1.0), n_steps
            )
            row_i.append(x0[0])
            row_z.append(z[:, 0])
        inits.append(np.stack(row_i))
        noises.append(np.stack(row_z, axis=1))  # (steps, n, D), as qne's
    out[f"{a}.draw/eval_keys"] = np.asarray(keys)
    out[f"{a}.draw/eval_init"] = np.stack(inits)  # (B, n, D)
    out[f"{a}.draw/eval_noise"] = np.stack(noises)  # (B, steps, n, D)
    # Exploration: best of behavior_sample by the online critics (qvpo.py:324-347).
    key_explore = jnp.asarray(inp["key_explore"])
    explore, _ = agent._sample_actions_jit(params, q1, q2, obs, key_explore, 1.0)
    out[f"{a}/explore_action"] = np.asarray(explore)
    x0, z = _sampler_draws(
        record_draws(agent._sample_actions_jit, params, q1, q2, obs, key_explore, 1.0), n_steps
    )
    out[f"{a}.draw/explore_init"], out[f"{a}.draw/explore_noise"] = x0, z

    # The update (qvpo.py:540-769), step by step with their keys and closures.
    probe, rec = sgd_recorder(s["probe_critic_lr"]), recorder()
    agent.q_optimizer, agent.policy_optimizer = probe, rec
    agent._fused_update = agent._make_fused_update()
    fn = agent._fused_update
    sample_best, sample_raw = closure(fn, "sample_best"), closure(fn, "sample_raw")
    q_min, diffusion_loss = closure(fn, "q_min"), closure(fn, "diffusion_loss")
    key = jnp.asarray(inp["key_update"])
    _, key_next, key_actor, key_entropy, key_loss, _ = jax.random.split(key, 6)
    # TD: best of target_sample from the TARGET policy by the target critics.
    next_a, _ = sample_best(
        params_target, q1_target, q2_target, next_obs, key_next, s["qvpo_target_samples"]
    )
    target = rew + s["discount"] * mask * q_min(q1_target, q2_target, next_obs, next_a)
    out[f"{a}/td_next_action"] = np.asarray(next_a)
    out[f"{a}/td_target"] = np.asarray(target)

    def q_loss_fn(q):
        return jnp.mean((q_module.apply(q, obs, act) - target) ** 2)

    (l1, g1), (l2, g2) = jax.value_and_grad(q_loss_fn)(q1), jax.value_and_grad(q_loss_fn)(q2)
    out[f"{a}/critic_loss"] = np.asarray([l1, l2])
    q1_after = jax.tree_util.tree_map(lambda p, g: p - s["probe_critic_lr"] * g, q1, g1)
    q2_after = jax.tree_util.tree_map(lambda p, g: p - s["probe_critic_lr"] * g, q2, g2)
    # Actor (action_augmentation): best of train_sample policy samples per state by the
    # critics after their step, weight max(Q_best - mean_i Q_i, 0); entropy rows: uniform
    # actions weighted entropy_alpha * the state's weight.
    states_rep = jnp.repeat(obs, n_train, axis=0)
    samples, _ = sample_raw(params, states_rep, key_actor)
    samples = jnp.clip(samples, -1.0, 1.0)
    q_all = q_min(q1_after, q2_after, states_rep, samples).reshape(b, n_train)
    samples = samples.reshape(b, n_train, d)
    idx = jnp.argmax(q_all, axis=1)
    best = samples[jnp.arange(b), idx]
    w = M.q_adv_weights(
        q_all[jnp.arange(b), idx].reshape(-1, 1),
        v=jnp.mean(q_all, axis=1, keepdims=True),
        batch_size=b,
    )
    rand_actions = jax.random.uniform(key_entropy, (b * n_ent, d), minval=-1.0, maxval=1.0)
    rows_obs = jnp.concatenate([obs, jnp.repeat(obs, n_ent, axis=0)], 0)
    rows_act = jnp.concatenate([best, rand_actions], 0)
    rows_w = jnp.concatenate([w, jnp.repeat(w, n_ent, axis=0) * s["qvpo_entropy_alpha"]], 0)
    loss, actor_grads = jax.value_and_grad(diffusion_loss)(
        params, rows_obs, rows_act, rows_w, key_loss
    )
    out[f"{a}/train_samples"] = np.asarray(samples)
    out[f"{a}/train_q"] = np.asarray(q_all)
    out[f"{a}/train_best_action"] = np.asarray(best)
    out[f"{a}/train_weights"] = np.asarray(rows_w[:, 0])
    out[f"{a}/actor_loss"] = np.asarray(loss)[None]
    out.update(flatten({"q1": g1, "q2": g2}, f"{a}.grad.critic"))
    out.update(flatten(actor_grads, f"{a}.grad.actor"))

    args = (
        params,
        rec.init(params),
        params_target,
        q1,
        q2,
        q1_target,
        q2_target,
        probe.init(q1),
        probe.init(q2),
        agent.running_q_mean,
        agent.running_q_std,
        0,
        0,
        key,
        obs,
        act,
        rew,
        mask,
        next_obs,
    )
    fused = fn(*args)
    _same("qvpo critic gradients", [g1, g2], [fused[7], fused[8]])
    _same("qvpo actor gradient", actor_grads, fused[1], 1e-4)
    _same(
        "qvpo losses",
        [l1, l2, loss],
        [fused[14][k] for k in ("q1_loss", "q2_loss", "policy_loss")],
        1e-4,
    )
    draws = record_draws(fn, *args)
    td_init, td_noise = _sampler_draws(draws, n_steps)
    out[f"{a}.draw/td_init"], out[f"{a}.draw/td_noise"] = td_init, td_noise
    tr_init, tr_noise = _sampler_draws(draws, n_steps)
    out[f"{a}.draw/train_init"], out[f"{a}.draw/train_noise"] = tr_init, tr_noise
    out[f"{a}.draw/entropy_actions"] = draws.take("uniform")
    out[f"{a}.draw/loss_step"] = draws.take("randint")
    out[f"{a}.draw/loss_noise"] = draws.take("normal")
    draws.done("qvpo update")
    _same("qvpo recorded draws", out[f"{a}.draw/entropy_actions"], rand_actions)


def published_defaults(official: Path, agent: str, out: dict) -> None:
    """``<agent>/default/<name>`` for :data:`spec.HYPERPARAMETERS` from their config files."""
    import yaml

    def merge(base: dict, over: dict) -> dict:
        merged = dict(base)
        for key, value in over.items():
            is_dict = isinstance(value, dict) and isinstance(base.get(key), dict)
            merged[key] = merge(base[key], value) if is_dict else value
        return merged

    config = yaml.safe_load((official / "configs" / "default.yaml").read_text())
    algo = OFFICIAL_ALGOS[agent]  # their name (revflow's qne is their maxentdp)
    overlay = official / "configs" / f"{algo}.yaml"  # run.sh: --config only if it exists
    if overlay.is_file():
        config = merge(config, yaml.safe_load(overlay.read_text()) or {})
    for name, path in HYPERPARAMETERS[agent].items():
        value = config
        for part in path.split("."):
            value = value[part]
        out[f"{agent}/default/{name}"] = np.array([0.0 if value is None else float(value)])


AGENTS = {
    "rfm": run_rfm,
    "sac": run_sac,
    "qne": run_qne,
    "dqs": run_dqs,
    "qsm": run_qsm,
    "qvpo": run_qvpo,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="the authors' checkout")
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--agents", default=",".join(AGENTS))
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.official).resolve()))
    import jax

    jax.config.update("jax_platforms", "cpu")
    with np.load(args.inputs) as data:
        inp = {k: data[k] for k in data.files}
    out: dict = {"jax_version": np.array(jax.__version__)}
    for name in args.agents.split(","):
        AGENTS[name](inp, out)
        published_defaults(Path(args.official), name, out)
    np.savez_compressed(args.out, **out)


if __name__ == "__main__":
    main()
