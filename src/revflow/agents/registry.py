"""One registry of agents: an explicit table name -> ``"module:Class"``.

The table imports nothing when this module is imported: an agent's module is imported the
first time the agent is asked for, so no agent module imports the registry and the registry
imports no agent at import time (no import cycle; ``tests/test_import_graph.py``). Adding an
agent is one line here (CONTRIBUTING.md).
"""

from __future__ import annotations

import importlib
from typing import Any

from revflow.agents.base import Agent, AgentConfig

#: Agent name -> "module:Class" of its class (which carries its config class).
AGENTS: dict[str, str] = {
    "dacer": "revflow.agents.dacer:DACER",
    "dipo": "revflow.agents.dipo:DIPO",
    "dpmd": "revflow.agents.dpmd:DPMD",
    "dqs": "revflow.agents.dqs:DQS",
    "qne": "revflow.agents.qne:QNE",
    "qsm": "revflow.agents.qsm:QSM",
    "qvpo": "revflow.agents.qvpo:QVPO",
    "rfm": "revflow.agents.rfm:RFM",
    "rfm-diffusion": "revflow.agents.rfm:RFMDiffusion",
    "sac": "revflow.agents.sac:SAC",
    "sdac": "revflow.agents.sdac:SDAC",
}


def available() -> list[str]:
    return sorted(AGENTS)


def get_agent_class(name: str) -> type[Agent]:
    if name not in AGENTS:
        raise ValueError(f"unknown algorithm {name!r}; available: {', '.join(sorted(AGENTS))}")
    module, _, attr = AGENTS[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if getattr(cls, "name", None) != name:
        raise ValueError(f"registry entry {name!r} -> {AGENTS[name]} has name {cls.name!r}")
    return cls


def make_config(name: str, preset: str = "reference", **overrides: Any) -> AgentConfig:
    return get_agent_class(name).Config.from_preset(preset, **overrides)


def make_agent(name: str, config: AgentConfig, obs_dim: int, act_dim: int) -> Agent:
    return get_agent_class(name)(config, obs_dim, act_dim)
