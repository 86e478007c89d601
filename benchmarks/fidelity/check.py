"""Comparison of the two sides' quantities: tolerances, the table, the verdict.

A quantity's difference is ``max |revflow - official| / max(1, max |official|)``: the largest
absolute difference relative to the official quantity's largest magnitude, so that near-zero
entries do not inflate it, and absolute below magnitude 1 (a loss that is a small difference
of large terms, e.g. SAC's ``alpha log pi - Q`` near 0, is not judged relative to its value).
Gradients are compared leaf by leaf after mapping the official gradient onto revflow's
parameter structure (``mapping.py``), concatenated into one vector.

Tolerances. Both sides compute in float32 on CPU with different XLA versions, so an exact
function agrees to a few float32 ulps per operation: 1e-5 for network outputs and other
direct functions; 1e-4 for quantities behind a chain of exponentials or an integration
(posterior weights softmax(Q/lam) amplify rounding of Q by 1/lam, flow samples accumulate
over steps, gradients sum over the batch). A departure of the algorithm (a factor, a
different rule or initialisation) shows as a difference of order 1e-2 or more. Published
defaults (``default/<name>``: learning rates, sizes, clipping, evaluation episodes, ...) must
be equal (tolerance 0).

Intended differences. ``qvpo/default/action_lr`` and ``qvpo/default/action_gradient_steps``
are "missing" on revflow's side: they configure the authors' QVPO branch with
``action_augmentation: false`` (replay actions pushed up Q by Adam steps), which their default
(``action_augmentation: true``, the best of the policy samples) never runs and revflow does
not implement.

Agents of the authors' code that revflow's side does not cover yet (``compare(...,
implemented=...)``) give one row per quantity marked "not implemented": counted, never a
match, so the verdict stays negative until they are written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mapping
from spec import SIZES, flatten, unflatten

LOOSE = 1e-4
TIGHT = 1e-5
#: rfm's multi-step check (``trajectory_*``): parameter displacements in units of the learning
#: rate, so one float32 ulp of a parameter of magnitude ~1 is ~4e-4 units (lr 3e-4), and the
#: largest displacement after 20 steps is ~20 units: ~2e-5 relative per ulp, a few ulps ~1e-4.
#: A departure (another clipping, target or optimiser rule, a critic read before instead of
#: after its step) moves parameters by a fraction of a unit per step: 1e-2 relative or more.
TRAJECTORY = 1e-3
#: Quantities with the looser tolerance (all others: TIGHT).
LOOSE_QUANTITIES = {
    "eval_action_best_of_n",
    "td_next_latent",
    "td_target",
    "posterior_mu1",
    "posterior_mu0",
    "posterior_ess",
    "posterior_cv_coefficient_mean",
    "regression_target",
    "actor_loss",
    "actor_loss_clipped",
    "actor_grad",
    "actor_grad_clipped",
    "critic_grad",
    "critic_grad_clipped",
    "sample_log_prob",
    "actor_log_prob",
    "alpha_loss",
    "alpha_grad",
    # The diffusion baselines: samplers (several steps, clipping), softmax weights, critic
    # action-gradients and Monte-Carlo estimates.
    "eval_action",
    "eval_sample_raw",
    "explore_action",
    "td_next_action",
    "td_next_sample_raw",
    "td_next_log_prob",
    "candidate_weights",
    "eps_target",
    "eps_target_at_inputs",
    "score_target",
    "train_samples",
    "train_q",
    "train_best_action",
    "train_weights",
}
#: Gradient quantities: (agent, name) -> mapping of the official parameter structure.
GRADIENTS = {
    ("rfm", "actor"): lambda tree: mapping.velocity_net(
        tree, SIZES["obs_dim"], SIZES["act_dim"], SIZES["emb"]
    ),
    ("rfm", "critic"): mapping.critic,
    ("sac", "actor"): mapping.residual_mlp,
    ("sac", "critic"): mapping.critic,
    ("qne", "actor"): lambda tree: mapping.velocity_net(
        tree, SIZES["obs_dim"], SIZES["act_dim"], SIZES["emb"]
    ),
    ("qne", "critic"): mapping.critic,
    ("dqs", "actor"): lambda tree: mapping.velocity_net(
        tree, SIZES["obs_dim"], SIZES["act_dim"], SIZES["emb"]
    ),
    ("dqs", "critic"): mapping.critic,
    ("qsm", "actor"): lambda tree: mapping.velocity_net(
        tree, SIZES["obs_dim"], SIZES["act_dim"], SIZES["emb"]
    ),
    ("qsm", "critic"): mapping.critic,
    ("qvpo", "critic"): mapping.qvpo_critic,
}


class Row(NamedTuple):
    agent: str
    quantity: str
    difference: float  # nan: missing or of another shape on the revflow side
    tolerance: float
    #: True when the agent has no revflow side yet: the row is counted, and not a match.
    not_implemented: bool = False

    @property
    def ok(self) -> bool:
        return bool(
            not self.not_implemented
            and np.isfinite(self.difference)
            and self.difference <= self.tolerance
        )


def relative_difference(revflow: np.ndarray, official: np.ndarray) -> float:
    revflow, official = np.asarray(revflow, np.float64), np.asarray(official, np.float64)
    if revflow.shape != official.shape:
        return float("nan")
    if not official.size:
        return 0.0
    scale = max(float(np.max(np.abs(official))), 1.0)
    return float(np.max(np.abs(revflow - official))) / scale


def _gradient_vectors(official: dict, revflow: dict, agent: str, net: str, tag: str):
    prefix = f"{agent}.grad.{net}{tag}"
    # An agent without a mapping here is compared in the official parameter structure.
    to_revflow = GRADIENTS.get((agent, net), lambda tree: tree)
    mapped = flatten(to_revflow(unflatten(official, prefix)), prefix)
    mine = {k: v for k, v in revflow.items() if k.startswith(prefix + "/")}
    if sorted(mapped) != sorted(mine) or any(mapped[k].shape != mine[k].shape for k in mine):
        return None, None
    keys = sorted(mapped)
    return (
        np.concatenate([mine[k].ravel() for k in keys]),
        np.concatenate([mapped[k].ravel() for k in keys]),
    )


def compare(
    official: dict,
    revflow: dict,
    agents: tuple[str, ...] = ("rfm", "sac"),
    implemented: tuple[str, ...] | None = None,
) -> list[Row]:
    """One row per quantity of the official side, for the given agents. An agent outside
    ``implemented`` (default: every agent) has no revflow side yet: each of its quantities
    is a row marked not implemented."""
    rows: list[Row] = []
    for agent in agents:
        pending = implemented is not None and agent not in implemented
        names = sorted(k.split("/", 1)[1] for k in official if k.startswith(agent + "/"))
        for name in names:
            key = f"{agent}/{name}"
            diff = (
                relative_difference(revflow[key], official[key]) if key in revflow else float("nan")
            )
            tol = 0.0 if name.startswith("default/") else TIGHT
            tol = LOOSE if name in LOOSE_QUANTITIES else tol
            tol = TRAJECTORY if name.startswith("trajectory_") else tol
            rows.append(Row(agent, name, diff, tol, pending))
        tags = sorted(
            {
                k.split("/", 1)[0][len(agent) + len(".grad.") :]
                for k in official
                if k.startswith(f"{agent}.grad.")
            }
        )
        for net_tag in tags:
            net, _, tag = net_tag.partition("_")
            tag = f"_{tag}" if tag else ""
            mine, theirs = _gradient_vectors(official, revflow, agent, net, tag)
            diff = float("nan") if mine is None else relative_difference(mine, theirs)
            rows.append(Row(agent, f"{net}_grad{tag}", diff, LOOSE, pending))
    return rows


def table(rows: list[Row]) -> str:
    """The printed table; its last line is ``fidelity: N of M quantities match``."""
    lines = [f"{'agent':<6} {'quantity':<34} {'max rel. diff':>14} {'tolerance':>10}  result"]
    for r in rows:
        if r.not_implemented:
            diff, result = "-", "not implemented"
        else:
            diff = "missing" if not np.isfinite(r.difference) else f"{r.difference:.2e}"
            result = "ok" if r.ok else "DIFFERS"
        lines.append(f"{r.agent:<6} {r.quantity:<34} {diff:>14} {r.tolerance:>10.0e}  {result}")
    pending = [r for r in rows if r.not_implemented]
    if pending:
        agents = sorted({r.agent for r in pending})
        lines.append(
            f"not implemented: {len(pending)} quantities of {', '.join(agents)} "
            "(no revflow side yet)"
        )
    lines.append(f"fidelity: {sum(r.ok for r in rows)} of {len(rows)} quantities match")
    return "\n".join(lines)
