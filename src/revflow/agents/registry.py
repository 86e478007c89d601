"""One registry of agents: name -> agent class (which carries its config class)."""

from __future__ import annotations

from typing import Any

from revflow.agents.base import Agent, AgentConfig

_AGENTS: dict[str, type[Agent]] = {}


def register(cls: type[Agent]) -> type[Agent]:
    """Class decorator: ``@register`` on an Agent subclass with a ``name``."""
    if cls.name in _AGENTS and _AGENTS[cls.name] is not cls:
        raise ValueError(f"agent {cls.name!r} is registered twice")
    _AGENTS[cls.name] = cls
    return cls


def _load_builtin() -> None:
    # Importing the modules runs their @register decorators.
    import revflow.agents.dacer
    import revflow.agents.dipo
    import revflow.agents.dpmd
    import revflow.agents.dqs
    import revflow.agents.qne
    import revflow.agents.qsm
    import revflow.agents.qvpo
    import revflow.agents.rfm
    import revflow.agents.sac
    import revflow.agents.sdac  # noqa: F401


def available() -> list[str]:
    _load_builtin()
    return sorted(_AGENTS)


def get_agent_class(name: str) -> type[Agent]:
    _load_builtin()
    if name not in _AGENTS:
        raise ValueError(f"unknown algorithm {name!r}; available: {', '.join(sorted(_AGENTS))}")
    return _AGENTS[name]


def make_config(name: str, preset: str = "reference", **overrides: Any) -> AgentConfig:
    return get_agent_class(name).Config.from_preset(preset, **overrides)


def make_agent(name: str, config: AgentConfig, obs_dim: int, act_dim: int) -> Agent:
    return get_agent_class(name)(config, obs_dim, act_dim)
