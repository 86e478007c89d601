"""A trained policy as a plain function of observations, and its export.

:class:`Policy` ``(obs, key=None) -> action`` acts with an agent's acting parameters: one
jitted call, one observation ``(obs_dim,)`` or a batch ``(B, obs_dim)`` (flat float32, as
:func:`revflow.envs.make_env` / :func:`revflow.envs.wrap_env` give them), actions in
``[-1, 1]^act_dim`` (the wrapped env maps them onto the native bounds), no environment needed.
Without ``key`` the n-th call uses ``fold_in(key(seed), n)``, so a policy's calls are seeded
and reproducible; with ``key`` a call is a pure function of ``(obs, key)``.

Acting parameters: the fields of the agent's train state other than target networks
(``target_*``) and optimiser states (``*_opt``): the policy network, the critic (``best-of-n``
takes the particle of highest min-Q), the update counter (temperature schedules) and learned
temperatures. Acting never reads the dropped fields (a test acts with them set to NaN); inside
the jitted call they are zeros of their shapes.

Export (:func:`save_policy`, ``revflow export RUN_DIR --out DIR``): ``DIR/checkpoints/<step>/``
is a checkpoint of :mod:`revflow.checkpoint` (orbax, atomic, CRC-checked, no pickle) holding
the acting parameters, with the policy's config as its JSON ``extra``: format, algorithm,
agent config, observation and action sizes, the source run and step. No replay buffer, no
optimiser state. :func:`load_policy` rebuilds the same :class:`Policy` from it with revflow
alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from revflow.agents.base import ACT_MODES, Agent
from revflow.agents.registry import get_agent_class
from revflow.checkpoint import (
    CheckpointError,
    latest_step,
    read_extra,
    restore_checkpoint,
    save_checkpoint,
)

__all__ = [
    "POLICY_FORMAT",
    "Policy",
    "acting_params",
    "exported_size",
    "load_policy",
    "save_policy",
]

POLICY_FORMAT = "revflow-policy-v1"


def _dropped(field: str) -> bool:
    return field.startswith("target_") or field.endswith("_opt")


def acting_params(state: Any, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of a train state (a flax struct dataclass) that acting reads: all but target
    networks (``target_*``) and optimiser states (``*_opt``), except the fields in ``keep``
    (the agent's :attr:`~revflow.agents.base.Agent.acting_extra_fields`)."""
    return {
        f.name: getattr(state, f.name)
        for f in dataclasses.fields(state)
        if f.name in keep or not _dropped(f.name)
    }


def _zeros_like(abstract: Any) -> Any:
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)


class Policy:
    """``policy(obs, key=None) -> action`` (module docstring). Attributes: ``agent``,
    ``params`` (the acting parameters), ``mode``, ``obs_dim``, ``act_dim``, ``info`` (algorithm,
    agent config, source run and step)."""

    def __init__(
        self,
        agent: Agent,
        params: dict[str, Any],
        mode: str = "best-of-n",
        seed: int = 0,
        info: dict[str, Any] | None = None,
    ) -> None:
        if mode not in ACT_MODES:
            raise ValueError(
                f"unknown policy mode {mode!r}; expected one of {', '.join(ACT_MODES)}"
            )
        self.agent = agent
        self.params = params
        self.mode = mode
        self.seed = int(seed)
        self.obs_dim, self.act_dim = agent.obs_dim, agent.act_dim
        self.info = dict(info or {})
        self._base_key = jax.random.key(self.seed)
        self._calls = 0
        abstract = jax.eval_shape(agent.init, jax.random.key(0))
        rest = {f.name: getattr(abstract, f.name) for f in dataclasses.fields(abstract)}
        rest = {k: v for k, v in rest.items() if _dropped(k) and k not in agent.acting_extra_fields}
        template = abstract

        def act(params: dict[str, Any], key: jax.Array, obs: jax.Array) -> jax.Array:
            state = template.replace(**params, **_zeros_like(rest))
            return agent.act(state, key, obs, mode=mode)

        self._act = jax.jit(act)

    def __call__(self, obs: Any, key: jax.Array | None = None) -> jax.Array:
        """Action(s) in ``[-1, 1]^act_dim`` for ``obs`` of shape ``(obs_dim,)`` or
        ``(B, obs_dim)`` (the same leading shape comes back)."""
        x = jnp.asarray(obs, jnp.float32)
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_dim:
            raise ValueError(
                f"obs has shape {tuple(x.shape)}; this policy takes ({self.obs_dim},) or "
                f"(batch, {self.obs_dim})"
            )
        if key is None:
            key = jax.random.fold_in(self._base_key, self._calls)
            self._calls += 1
        if x.ndim == 1:
            return self._act(self.params, key, x[None])[0]
        return self._act(self.params, key, x)

    def with_mode(self, mode: str, seed: int | None = None) -> Policy:
        """The same parameters acting in another mode (and seed)."""
        return Policy(self.agent, self.params, mode, self.seed if seed is None else seed, self.info)

    def __repr__(self) -> str:
        algo = self.info.get("algo", self.agent.name)
        return f"Policy({algo}, mode={self.mode!r}, obs_dim={self.obs_dim}, act_dim={self.act_dim})"


def _tuplify(value: Any) -> Any:
    return tuple(_tuplify(v) for v in value) if isinstance(value, list) else value


def save_policy(policy: Policy, out: str | Path, step: int = 0) -> Path:
    """Write ``policy``'s acting parameters and config to directory ``out`` (module
    docstring); refuses an ``out`` that exists and is not empty. Returns ``out``."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty; choose another --out")
    agent = policy.agent
    extra = {
        "format": POLICY_FORMAT,
        "algo": agent.name,
        "agent": dataclasses.asdict(agent.config),
        "obs_dim": agent.obs_dim,
        "act_dim": agent.act_dim,
        **{k: v for k, v in policy.info.items() if k not in ("algo", "agent")},
    }
    params = jax.tree_util.tree_map(np.asarray, policy.params)
    save_checkpoint(out, step, params, extra, keep=1)
    return out


def load_policy(path: str | Path, mode: str = "best-of-n", seed: int = 0) -> Policy:
    """The :class:`Policy` exported to ``path`` by :func:`save_policy` / ``revflow export``.

    Raises ``FileNotFoundError`` for a missing directory and :class:`CheckpointError` for one
    that holds no exported policy, or a truncated or corrupt one."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"policy directory {path} does not exist")
    step = latest_step(path)
    if step is None:
        raise CheckpointError(f"{path} holds no exported policy (revflow export RUN --out {path})")
    extra = read_extra(path, step)
    if extra.get("format") != POLICY_FORMAT:
        raise CheckpointError(
            f"{path} is not an exported policy (format {extra.get('format')!r}, expected "
            f"{POLICY_FORMAT!r}); a run directory loads with revflow.load"
        )
    cls = get_agent_class(extra["algo"])
    try:
        config = cls.Config.from_dict(extra["agent"])
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    agent = cls(config, int(extra["obs_dim"]), int(extra["act_dim"]))
    template = acting_params(
        jax.eval_shape(agent.init, jax.random.key(0)), agent.acting_extra_fields
    )
    params, _ = restore_checkpoint(path, template, step)
    info = {k: v for k, v in extra.items() if k not in ("format", "agent", "obs_dim", "act_dim")}
    return Policy(agent, params, mode, seed, info)


def exported_size(path: str | Path) -> int:
    """Bytes on disk of an exported policy (all files under ``path``)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
