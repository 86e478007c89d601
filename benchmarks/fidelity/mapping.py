"""Parameter mapping from the authors' networks onto revflow's (numpy; used by the revflow side
and by ``check.py`` for gradients, which have the parameters' structure).

- ``ScoreMLP`` (velocity net): one Dense on ``concat(s, y_t, emb(t), emb(temp))``, ``Block_i``
  (``x + gelu(Dense x)``), ``Dense_1`` -> ``VelocityNet``: the first kernel's row blocks
  become ``cond_proj``, ``x_proj`` (with the bias), ``t_proj``, ``lam_proj``; ``Block_i`` ->
  ``blocks_i``; ``Dense_1`` -> ``out``.
- ``ActorMLP`` (SAC actor): ``Dense_0``, ``Block_i``, ``Dense_1`` -> ``ResidualMLP``'s
  ``Dense_0``, ``Dense_{i+1}``, ``Dense_{L+1}``.
- critic ensemble ``MLP`` (leading ensemble axis): ``NormedLinear_i/Dense_0``, ``Dense_0`` ->
  ``Critic``'s ``ensemble/Dense_i``, ``ensemble/Dense_L``.
- QVPO's ``QVPOPolicyNet`` has the layout of revflow's ``StepDenoiserNet`` (no mapping); its
  two ``QVPOQNet`` critics ``q1``, ``q2`` (``Dense_i``) are stacked on the ensemble axis of
  ``Critic``'s ``ensemble/Dense_i`` (:func:`qvpo_critic`).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _blocks(p: dict[str, Any], prefix: str) -> list[str]:
    return sorted((k for k in p if k.startswith(prefix)), key=lambda n: int(n.split("_")[1]))


def velocity_net(official: dict[str, Any], obs_dim: int, act_dim: int, emb: int) -> dict:
    """The authors' ScoreMLP params -> revflow VelocityNet params."""
    p = official["params"]
    kernel, bias = np.asarray(p["Dense_0"]["kernel"]), np.asarray(p["Dense_0"]["bias"])
    cuts = np.cumsum([obs_dim, act_dim, emb])
    cond, x, t, lam = np.split(kernel, cuts, axis=0)
    assert lam.shape[0] == emb, f"first kernel has {kernel.shape[0]} rows"
    out = {
        "cond_proj": {"kernel": cond},
        "x_proj": {"kernel": x, "bias": bias},
        "t_proj": {"kernel": t},
        "lam_proj": {"kernel": lam},
        "out": dict(p["Dense_1"]),
    }
    for i, name in enumerate(_blocks(p, "Block_")):
        out[f"blocks_{i}"] = dict(p[name]["Dense_0"])
    return {"params": out}


def residual_mlp(official: dict[str, Any]) -> dict:
    """The authors' ActorMLP params -> revflow ResidualMLP params."""
    p = official["params"]
    blocks = _blocks(p, "Block_")
    out = {"Dense_0": dict(p["Dense_0"])}
    for i, name in enumerate(blocks):
        out[f"Dense_{i + 1}"] = dict(p[name]["Dense_0"])
    out[f"Dense_{len(blocks) + 1}"] = dict(p["Dense_1"])
    return {"params": out}


def critic(official: dict[str, Any]) -> dict:
    """The authors' vmapped critic MLP params -> revflow Critic params."""
    p = official["params"]
    hidden = _blocks(p, "NormedLinear_")
    layers = {f"Dense_{i}": dict(p[name]["Dense_0"]) for i, name in enumerate(hidden)}
    layers[f"Dense_{len(hidden)}"] = dict(p["Dense_0"])
    return {"params": {"ensemble": layers}}


def qvpo_critic(official: dict[str, Any]) -> dict:
    """The authors' QVPO critics ``{"q1": params, "q2": params}`` -> revflow Critic params."""
    members = [official[name]["params"] for name in ("q1", "q2")]
    layers = {
        layer: {
            leaf: np.stack([np.asarray(m[layer][leaf]) for m in members])
            for leaf in members[0][layer]
        }
        for layer in members[0]
    }
    return {"params": {"ensemble": layers}}
