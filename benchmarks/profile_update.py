"""Where the FLOPs of one RFM update go: XLA's cost analysis of each part jitted alone.

    PYTHONPATH=src python benchmarks/profile_update.py --out docs/throughput/profile.json

Each part of ``agent.update`` (method note §6: TD target with the particle rollout at s',
critic step, particle rollout at s, the K reverse-sample posterior estimate, actor
regression) is jitted on its own at the given sizes (default: rfm's reference preset at the
sizes of dmc:cheetah-run, obs 17, act 6, batch 256) and ``compiled.cost_analysis()`` gives
its FLOPs, transcendentals and bytes accessed; the dot (matmul) FLOPs of the whole update
are counted from the compiled HLO by shape. Nothing here is timed: the counts are exact and
do not depend on machine load. Fixed inputs: ``agent.init(PRNGKey(seed))`` and a standard
normal batch.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from revflow import estimators
from revflow.agents.base import Batch
from revflow.agents.common import gradient_step
from revflow.agents.registry import make_agent, make_config

_DEF = re.compile(r"^\s*(?:ROOT\s+)?(%[\w.-]+)\s*=\s*\w+\[([0-9,]*)\]")
_DOT = re.compile(r"=\s*\w+\[([0-9,]*)\]\S*\s+dot\((%[\w.-]+),\s*(%[\w.-]+)\),\s*(.*)$")


def cost(fn: Any, *args: Any) -> dict[str, float]:
    """FLOPs, transcendentals and bytes accessed of ``jax.jit(fn)(*args)`` by XLA's count."""
    compiled = jax.jit(fn).lower(*args).compile()
    c = compiled.cost_analysis()
    if isinstance(c, list | tuple):
        c = c[0] if c else {}
    return {
        "flops": float(c.get("flops", float("nan"))),
        "transcendentals": float(c.get("transcendentals", 0.0)),
        "bytes": float(c.get("bytes accessed", float("nan"))),
    }


def _dims(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def dot_flops(fn: Any, *args: Any) -> Counter:
    """2 * output size * contracted size of every ``dot`` in the compiled HLO of ``fn``,
    keyed by ``op name: lhs shape x rhs shape`` (the op name from the HLO's metadata)."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    shapes = {}
    for line in text.splitlines():
        d = _DEF.match(line)
        if d:
            shapes[d.group(1)] = _dims(d.group(2))
    out: Counter = Counter()
    for line in text.splitlines():
        m = _DOT.search(line)
        if not m:
            continue
        lhs, rhs = shapes[m.group(2)], shapes[m.group(3)]
        contract = re.search(r"lhs_contracting_dims=\{([0-9,]*)\}", m.group(4))
        k = int(np.prod([lhs[i] for i in _dims(contract.group(1))])) if contract else 1
        name = re.search(r'op_name="(?:jit\(\w+\)/)?([^"]*?)(?:/dot_general)?"', line)
        label = f"{name.group(1) if name else '?'}: {lhs} x {rhs}"
        out[label] += 2 * int(np.prod(_dims(m.group(1)))) * k
    return out


def fixed_batch(key: jax.Array, batch: int, obs_dim: int, act_dim: int) -> Batch:
    ks = jax.random.split(key, 4)
    return Batch(
        obs=jax.random.normal(ks[0], (batch, obs_dim)),
        action=jax.random.uniform(ks[1], (batch, act_dim), minval=-1.0, maxval=1.0),
        reward=jax.random.normal(ks[2], (batch,)),
        next_obs=jax.random.normal(ks[3], (batch, obs_dim)),
        discount=jnp.full((batch,), 0.99),
    )


def parts(agent: Any, state: Any, batch: Batch, key: jax.Array) -> dict[str, tuple]:
    """Name -> (function, args) of every profiled part of ``agent.update``."""
    c, policy, critic, obj = agent.config, agent.policy, agent.critic, agent.objective
    lam = agent.temperature_of(state)
    k_td, k_actor, _ = obj.split(key)
    target, _ = obj.td_target(state, batch, k_td)
    critic_params, _, _ = critic.td_step(state.critic_params, state.critic_opt, batch, target)
    inputs, _ = obj.actor_inputs(state, critic_params, batch, k_actor)
    obs, t, u_t, _, _ = inputs
    n, k = c.num_particles, c.num_reverse_samples

    def rollout(st, o, kk):
        return policy.sample(st.actor_params, kk, o, lam, n)

    def particle_q(params, o, u):
        return critic.q_min(params, o[:, None, :], jnp.tanh(u))

    u_particles = rollout(state, batch.next_obs, k_td)

    def pick(st, o, kk):
        return agent.latent(st, kk, o, c.train_pick)

    def posterior(params, kk, o, ut, tt):
        from revflow.agents.posterior import posterior_mean

        return posterior_mean(agent, params, kk, o, ut, tt, lam)

    x1, x0, _ = jax.vmap(
        lambda kk, x, tt: estimators.reverse_samples(kk, x, tt, policy.path, k),
    )(jax.random.split(k_actor[3], batch.obs.shape[0]), u_t, t)

    def q_value_and_grad(params, o, x):
        def log_target(u, oo):
            return critic.q_min(params, oo, jnp.tanh(u)) / lam + jnp.sum(estimators.log_sech2(u))

        one = jax.vmap(jax.value_and_grad(log_target), in_axes=(0, None))
        return jax.vmap(one)(x, o)

    logp, grad = q_value_and_grad(critic_params, obs, x1)

    def stein(logp, grad, x1, x0, ut, tt):
        """Everything of the estimator after the Q evaluations: weights, score, c*, mean."""
        alpha = jnp.maximum(policy.path.alpha(tt), 1e-12)[:, None]
        beta = jnp.maximum(policy.path.beta(tt), 1e-12)[:, None]
        w = estimators.snis_weights(logp)
        g = jnp.where(jnp.isfinite(grad) & (w[..., None] > 0), grad, 0.0)
        s = g + (alpha / beta)[..., None] * x0
        coef = jax.vmap(
            lambda ww, xx, ss, r2: estimators._coefficient(
                c.control_variate, ww, xx, ss, r2, c.cv_ridge, c.cv_clip
            )
        )(w, x1, s, ((beta / alpha) ** 2)[:, 0])
        f = x1 + coef[:, None] * s
        m1 = jnp.sum(w[..., None] * f, axis=1)
        var = jnp.sum((w * w)[..., None] * (f - m1[:, None]) ** 2, axis=1)
        return m1, (ut - alpha * m1) / beta, var

    def actor_step(st, inp):
        return gradient_step(
            lambda p: obj.actor_loss(p, inp), agent.actor_opt, st.actor_params, st.actor_opt, True
        )

    def critic_step(st, b, tgt):
        return critic.td_step(st.critic_params, st.critic_opt, b, tgt)

    return {
        "update (all)": (agent.update, (state, batch, key)),
        "TD target (rollout at s', pick, target Q)": (obj.td_target, (state, batch, k_td)),
        "  particle rollout at s' (policy.sample)": (rollout, (state, batch.next_obs, k_td)),
        "  particle Q for the pick (B x N)": (
            particle_q,
            (state.critic_params, batch.next_obs, u_particles),
        ),
        "critic TD step": (critic_step, (state, batch, target)),
        "actor inputs (rollout at s, posterior)": (
            obj.actor_inputs,
            (state, critic_params, batch, k_actor),
        ),
        "  particle rollout at s + pick": (pick, (state, batch.obs, k_actor[0])),
        "  posterior estimate (K reverse samples)": (
            posterior,
            (critic_params, k_actor[3], obs, u_t, t),
        ),
        "    Q value and grad at B x K": (q_value_and_grad, (critic_params, obs, x1)),
        "    Stein control variate and weights": (stein, (logp, grad, x1, x0, u_t, t)),
        "actor regression step": (actor_step, (state, inputs)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="rfm")
    parser.add_argument("--preset", default="reference")
    parser.add_argument("--obs-dim", type=int, default=17)
    parser.add_argument("--act-dim", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    args = parser.parse_args()

    config = make_config(args.algo, args.preset)
    agent = make_agent(args.algo, config, args.obs_dim, args.act_dim)
    key = jax.random.PRNGKey(args.seed)
    state = agent.init(key)
    batch = fixed_batch(jax.random.fold_in(key, 1), config.batch_size, args.obs_dim, args.act_dim)
    k_update = jax.random.fold_in(key, 2)

    rows = {name: cost(fn, *a) for name, (fn, a) in parts(agent, state, batch, k_update).items()}
    total = rows["update (all)"]["flops"]
    print(
        f"{args.algo} {args.preset}: obs {args.obs_dim}, act {args.act_dim}, "
        f"batch {config.batch_size}"
    )
    print("| part | GFLOP | % of update | transcendentals (M) | MB accessed |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        label = name.replace("  ", "&nbsp;&nbsp;")
        print(
            f"| {label} | {r['flops'] / 1e9:.3f} | {100 * r['flops'] / total:.1f} "
            f"| {r['transcendentals'] / 1e6:.2f} | {r['bytes'] / 1e6:.1f} |"
        )
    dots = dot_flops(agent.update, state, batch, k_update)
    dot_total = sum(dots.values())
    print(
        f"\ndot FLOPs of the compiled update: {dot_total / 1e9:.3f} G "
        f"({100 * dot_total / total:.1f} % of XLA's count); largest:"
    )
    print("| dot operands | GFLOP | % of update |")
    print("|---|---:|---:|")
    for shapes, f in dots.most_common(12):
        print(f"| {shapes} | {f / 1e9:.3f} | {100 * f / total:.1f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "algo": args.algo,
            "preset": args.preset,
            "obs_dim": args.obs_dim,
            "act_dim": args.act_dim,
            "batch_size": config.batch_size,
            "jax": jax.__version__,
            "parts": rows,
            "dot_flops": dict(dots),
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
