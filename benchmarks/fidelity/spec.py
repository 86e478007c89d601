"""What both sides of the fidelity harness share: problem sizes, and the .npz layout.

Plain Python and numpy only: the official side imports this module under the authors'
environment (jax 0.6.2), the revflow side under revflow's. Nothing here computes.

Layout. ``inputs.npz`` (written by the revflow side, read by both) holds the batch, the
noisy points, the PRNG keys (raw uint32 key data) and the injected posterior noise.
``official.npz`` and ``revflow.npz`` hold ``<agent>.param.<net>/<path>`` (the official side's
initial parameters, which the revflow side maps onto its own networks) and ``<agent>/<quantity>``
arrays: every quantity both sides compute, compared by ``check.py``.

Conditioning. SAC's log-density carries the authors' tanh correction ``log(1 - a^2 + 1e-6)``;
at a saturated action (|u| > ~6 in float32) one ulp of ``a = tanh(u)`` moves it by up to ~0.1,
and the two XLA versions (and fused vs op-by-op code) differ in tanh's last ulp. SAC's inputs
therefore use states scaled so that its samples stay well inside (-1, 1); a second, wider set
of states drives some log-stds past the clip bound 2, and only the actions are compared there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Small sizes: the quantities are exact functions, so size only changes the run time.
SIZES: dict[str, Any] = {
    "obs_dim": 5,
    "act_dim": 3,
    "batch": 8,
    "hidden": 32,
    "layers": 2,  # residual blocks of the actor nets; hidden layers of each critic
    "emb": 16,
    "num_critics": 2,
    "particles": 4,
    "flow_steps": 3,
    "mc_samples": 16,
    "lam": 0.05,
    "t_min": 0.01,
    "cv_ridge": 1e-4,
    "cv_clip": 2.0,
    "discount": 0.99,
    "tau": 0.005,
    "actor_lr": 3e-4,
    "critic_lr": 1e-3,
    "alpha": 0.3,  # SAC temperature at which losses and gradients are compared
    "small_clip": 0.05,  # a clip norm that every gradient here exceeds: clipping is exercised
    "seed": 0,
    # The diffusion baselines (qne = the authors' maxentdp, dqs, qsm, qvpo).
    "diffusion_steps": 5,
    "qne_candidates": 16,  # maxentdp.score_samples_num
    "qne_log_prob_samples": 4,
    "qne_log_prob_steps": 5,
    "eval_candidates": 4,  # maxentdp.eval_candidate_num, qvpo.eval_sample
    "dqs_mc_samples": 16,
    "qsm_q_scale": 50.0,
    "qsm_noise": 0.1,  # target-action and exploration noise
    "qvpo_train_samples": 6,
    "qvpo_target_samples": 3,
    "qvpo_behaviour_samples": 3,
    "qvpo_entropy_samples": 2,
    "qvpo_entropy_alpha": 0.02,
    # The critic's optimiser in the recorded updates of the diffusion baselines: records the
    # gradient AND steps the critic by -probe_critic_lr * gradient, so that an update that
    # reads the critic after its step and one that reads it before differ (see README.md).
    "probe_critic_lr": 0.1,
    # rfm's multi-step check: this many consecutive full updates (real Adam on both sides),
    # with a clip norm that each critic's gradient exceeds on some steps and not on others
    # (their norms here: 2-6) and the actor's on every step (25-90).
    "trajectory_steps": 20,
    "trajectory_clip": 3.0,
}

#: rfm's multi-step check: after each update, the displacement of the actor, the critics and
#: the target critics from their initial parameters (units: actor lr, critic lr, tau x critic
#: lr; one row per update, revflow's parameter order), and the update's two losses.
TRAJECTORY_ROWS: tuple[str, ...] = ("actor", "critic", "target", "critic_loss", "actor_loss")

#: Every agent of the authors' code that revflow also has (revflow's names; the authors'
#: ``maxentdp`` is revflow's ``qne``), and the authors' ``algo`` name of each.
OFFICIAL_ALGOS: dict[str, str] = {
    "rfm": "rfm",
    "sac": "sac",
    "qne": "maxentdp",
    "dqs": "dqs",
    "qsm": "qsm",
    "qvpo": "qvpo",
}


def flatten(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    """Nested dicts of arrays -> ``{prefix/key/...: array}``."""
    out: dict[str, np.ndarray] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) or hasattr(node, "items"):
            for key in sorted(node):
                walk(node[key], f"{path}/{key}")
        else:
            out[path] = np.asarray(node)

    walk(tree, prefix)
    return out


def flat_vector(tree: Any) -> np.ndarray:
    """A parameter tree as one float64 vector, leaves in :func:`flatten`'s (sorted) order."""
    flat = flatten(tree, "")
    return np.concatenate([np.ravel(flat[k]).astype(np.float64) for k in sorted(flat)])


def unflatten(flat: dict[str, np.ndarray], prefix: str) -> dict[str, Any]:
    """Inverse of :func:`flatten` for the keys under ``prefix``."""
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        if not name.startswith(prefix + "/"):
            continue
        parts = name[len(prefix) + 1 :].split("/")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = np.asarray(value)
    return tree


#: Published defaults compared by name: ``name -> path in the authors' config`` (rfm:
#: ``configs/default.yaml`` overlaid by ``configs/rfm.yaml``, as their ``run.sh`` runs it; sac:
#: ``configs/default.yaml`` alone). null (no clipping) reads as 0; booleans as 0 / 1.
HYPERPARAMETERS: dict[str, dict[str, str]] = {
    "rfm": {
        "batch_size": "trainer.batch_size",
        "gamma": "critic.discount",
        "tau": "critic.tau",
        "critic_lr": "critic.lr",
        "actor_lr": "actor.lr",
        "actor_max_grad_norm": "actor.max_grad_norm",
        "critic_max_grad_norm": "critic.max_grad_norm",
        "num_critics": "critic.num_q",
        "critic_width": "critic.hidden_size",
        "critic_layers": "critic.hidden_layers",
        "actor_width": "actor.hidden_size",
        "actor_blocks": "actor.hidden_layers",
        "embed_dim": "actor.emb_size",
        "lam": "rfm.init_temperature",
        "lam_end": "rfm.final_temperature",
        "num_flow_steps": "rfm.num_integration_steps",
        "num_reverse_samples": "rfm.num_estimator_mc_samples",
        "num_particles_train": "rfm.num_particles_training",
        "num_particles_explore": "rfm.num_particles_data",
        "num_particles_eval": "rfm.num_particles_eval",
        "t_min": "rfm.t_min",
        "cv_ridge": "rfm.cv_ridge",
        "cv_clip": "rfm.cv_clip",
        "optimal_control_variate": "rfm.cv_weight_autotune",
        "policy_endpoints": "rfm.rfm_on_policy",
        "reward_scale": "trainer.reward_scale",
        "warmup_steps": "trainer.start_training",
        "updates_per_step": "trainer.updates_per_step",
        "eval_episodes": "trainer.num_eval_envs",
        "eval_every": "trainer.eval_interval",
        "steps": "trainer.max_steps",
    },
    "sac": {
        "batch_size": "trainer.batch_size",
        "gamma": "critic.discount",
        "tau": "critic.tau",
        "critic_lr": "critic.lr",
        "actor_lr": "actor.lr",
        "alpha_lr": "sac.alpha_lr",
        "actor_max_grad_norm": "actor.max_grad_norm",
        "critic_max_grad_norm": "critic.max_grad_norm",
        "num_critics": "critic.num_q",
        "critic_width": "critic.hidden_size",
        "critic_layers": "critic.hidden_layers",
        "actor_width": "actor.hidden_size",
        "actor_blocks": "actor.hidden_layers",
        "log_std_min": "sac.log_std_min",
        "log_std_max": "sac.log_std_max",
        "reward_scale": "trainer.reward_scale",
        "warmup_steps": "trainer.start_training",
        "updates_per_step": "trainer.updates_per_step",
        "eval_episodes": "trainer.num_eval_envs",
        "eval_every": "trainer.eval_interval",
        "steps": "trainer.max_steps",
    },
}

#: Entries every baseline shares (``configs/default.yaml``; their run.sh loads no overlay for
#: the baselines, so no gradient clipping).
_COMMON: dict[str, str] = {
    "batch_size": "trainer.batch_size",
    "gamma": "critic.discount",
    "tau": "critic.tau",
    "critic_lr": "critic.lr",
    "actor_lr": "actor.lr",
    "actor_max_grad_norm": "actor.max_grad_norm",
    "critic_max_grad_norm": "critic.max_grad_norm",
    "critic_width": "critic.hidden_size",
    "critic_layers": "critic.hidden_layers",
    "actor_width": "actor.hidden_size",
    "actor_blocks": "actor.hidden_layers",  # qvpo: hidden Dense layers of its mish MLP
    "embed_dim": "actor.emb_size",
    "reward_scale": "trainer.reward_scale",
    "warmup_steps": "trainer.start_training",
    "updates_per_step": "trainer.updates_per_step",
    "eval_episodes": "trainer.num_eval_envs",
    "eval_every": "trainer.eval_interval",
    "steps": "trainer.max_steps",
}
# String-valued entries are not compared by number: qsm.beta_schedule is "vp", qvpo's
# "cosine" (docs/reference/baselines.md lists them).
HYPERPARAMETERS.update(
    {
        "qne": {
            **_COMMON,
            "num_critics": "critic.num_q",
            "num_flow_steps": "maxentdp.num_diffusion_steps",
            "lam": "maxentdp.init_temperature",
            "lam_end": "maxentdp.final_temperature",
            "clip_sampler": "maxentdp.clip_sampler",
            "entropy_backup": "maxentdp.backup_entropy",
            "log_prob_samples": "maxentdp.log_prob_samples",
            "log_prob_steps": "maxentdp.log_prob_steps",
            "eval_best_of_n": "maxentdp.eval_action_selection",
            "num_particles_eval": "maxentdp.eval_candidate_num",
            "num_reverse_samples": "maxentdp.score_samples_num",
            "t_min": "maxentdp.t_min",
        },
        "dqs": {
            **_COMMON,
            "num_critics": "critic.num_q",
            "ve_sigma_min": "dqs.sigma_min",
            "ve_sigma_max": "dqs.sigma_max",
            "lam": "dqs.init_temperature",
            "lam_end": "dqs.final_temperature",
            "diffusion_scale": "dqs.diffusion_scale",
            "num_flow_steps": "dqs.num_integration_steps",
            "num_reverse_samples": "dqs.num_estimator_mc_samples",
        },
        "qsm": {
            **_COMMON,
            "num_critics": "critic.num_q",
            "num_flow_steps": "qsm.num_diffusion_steps",
            "ddpm_temperature": "qsm.ddpm_temperature",
            "clip_sampler": "qsm.clip_sampler",
            "q_scale": "qsm.q_grad_scale",
            "target_noise": "qsm.target_action_noise",
            "explore_noise": "qsm.exploration_noise",
        },
        "qvpo": {
            **_COMMON,
            "num_flow_steps": "qvpo.num_diffusion_steps",
            "noise_ratio": "qvpo.noise_ratio",
            "behaviour_particles": "qvpo.behavior_sample",
            "target_particles": "qvpo.target_sample",
            "num_particles": "qvpo.eval_sample",
            "num_policy_samples": "qvpo.train_sample",
            "deterministic": "qvpo.deterministic",
            "eps_greedy": "qvpo.eps_greedy",
            "action_lr": "qvpo.action_lr",
            "action_gradient_steps": "qvpo.action_gradient_steps",
            "action_augmentation": "qvpo.action_augmentation",
            "entropy_weight": "qvpo.entropy_alpha",
            "entropy_samples": "qvpo.entropy_samples",
        },
    }
)


def stored_file(agent: str) -> str:
    """The file of ``data/`` that holds an agent's stored official outputs: rfm and sac share
    ``official.npz`` (with ``jax_version``), every other agent has ``official_<agent>.npz``."""
    return "official.npz" if agent in ("rfm", "sac") else f"official_{agent}.npz"


def agent_of(name: str) -> str:
    """The agent of an array name: ``qne/td_target``, ``qne.grad.actor/...`` -> ``qne``."""
    return name.split("/", 1)[0].split(".", 1)[0]


def split_by_file(official: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The official side's outputs -> ``{file name: arrays}`` (:func:`stored_file`)."""
    files: dict[str, dict[str, np.ndarray]] = {}
    for name, value in official.items():
        agent = agent_of(name)
        if agent in OFFICIAL_ALGOS:
            files.setdefault(stored_file(agent), {})[name] = value
    if "jax_version" in official:  # in every file written
        for arrays in files.values():
            arrays["jax_version"] = official["jax_version"]
    return files
