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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from spec import HYPERPARAMETERS, SIZES, flatten  # noqa: E402


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


def run_rfm(inp: dict, out: dict) -> None:
    import jax
    import jax.numpy as jnp
    from src.agent.critic import ReturnFunction, get_q_values, update_q
    from src.agent.rfm import RFM, make_posterior_mean_fns_for_q, update_actor_flow_matching

    s = SIZES
    agent = RFM(
        sample_dim=s["act_dim"],
        state_dim=s["obs_dim"],
        critic_config=critic_config(s["critic_lr"]),
        actor_hidden_size=s["hidden"],
        actor_hidden_layers=s["layers"],
        actor_emb_size=s["emb"],
        actor_lr=s["actor_lr"],
        actor_max_grad_norm=None,
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
    overlay = official / "configs" / f"{agent}.yaml"  # run.sh: --config only if it exists
    if overlay.is_file():
        config = merge(config, yaml.safe_load(overlay.read_text()) or {})
    for name, path in HYPERPARAMETERS[agent].items():
        value = config
        for part in path.split("."):
            value = value[part]
        out[f"{agent}/default/{name}"] = np.array([0.0 if value is None else float(value)])


AGENTS = {"rfm": run_rfm, "sac": run_sac}


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
