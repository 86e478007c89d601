"""Agent configs are composed of parts and carry only the fields their agent reads: an option
an agent would ignore is refused by name, configs saved before the parts (which carried such
fields) still load, and an unknown saved field is refused by name."""

from __future__ import annotations

import dataclasses
import re

import pytest

from revflow.agents.base import AgentConfig
from revflow.agents.configs import FAST_DIFFUSION
from revflow.agents.registry import available, get_agent_class, make_agent, make_config


@pytest.mark.parametrize(
    ("algo", "field"),
    [
        ("dacer", "num_reverse_samples"),
        ("dacer", "control_variate"),
        ("qvpo", "explore_pick"),
        ("dpmd", "train_pick"),
        ("qsm", "lam"),
        ("sdac", "lam_end"),
        ("dipo", "entropy_backup"),
        ("sac", "num_particles"),
    ],
)
def test_an_option_the_agent_does_not_read_is_refused_by_name(algo: str, field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"unknown config field(s) ['{field}']")):
        make_config(algo, **{field: 1})


@pytest.mark.parametrize("algo", available())
def test_saved_dicts_with_dropped_fields_load_and_unknown_fields_are_refused(algo: str) -> None:
    config_cls = get_agent_class(algo).Config
    saved = make_config(algo).to_dict()
    old = {**saved, **dict.fromkeys(config_cls.DROPPED, 0.5)}  # the values had no effect
    assert config_cls.from_dict(old) == make_config(algo)
    with pytest.raises(ValueError, match=re.escape("unknown fields ['no_such_field']")):
        config_cls.from_dict({**saved, "no_such_field": 1})


def test_diffusion_fast_presets_share_one_constant() -> None:
    for algo in ("dacer", "dipo", "dpmd", "dqs", "qne", "qsm", "qvpo", "rfm-diffusion", "sdac"):
        fast = get_agent_class(algo).Config.PRESETS["fast"]
        assert fast.items() >= FAST_DIFFUSION.items(), algo


def test_qne_configs_saved_before_the_authors_defaults_keep_their_behaviour() -> None:
    """A qne config saved before ``policy_space`` existed (revflow's tanh-latent qne, clipping
    at 10, LeCun init) loads as the ``revflow`` preset; the default is the authors' maxentdp."""
    config_cls = get_agent_class("qne").Config
    old = make_config("qne", "revflow").to_dict()
    for new_field in ("policy_space", "network_init", "embedding", "actor_loss_reduction",
                      "critic_clip", "tau_min", "tau_max", "log_prob_samples", "log_prob_steps",
                      "clip_sampler"):  # fmt: skip
        del old[new_field]
    assert config_cls.from_dict(old) == make_config("qne", "revflow")
    default = make_config("qne")
    assert (default.policy_space, default.max_grad_norm, default.network_init) == (
        "box",
        0.0,
        "orthogonal",
    )


def test_dqs_configs_saved_before_the_authors_defaults_keep_their_behaviour() -> None:
    """A dqs config saved before ``policy_space`` existed (revflow's tanh-latent dqs, clipping
    at 10, LeCun init) loads as the ``revflow`` preset; the default is the authors' dqs."""
    config_cls = get_agent_class("dqs").Config
    old = make_config("dqs", "revflow").to_dict()
    for new_field in ("policy_space", "network_init", "embedding", "actor_loss_reduction",
                      "critic_clip", "diffusion_scale", "loss_weight_floor",
                      "eval_rule"):  # fmt: skip
        del old[new_field]
    assert config_cls.from_dict(old) == make_config("dqs", "revflow")
    default = make_config("dqs")
    assert (default.policy_space, default.max_grad_norm, default.network_init) == (
        "action",
        0.0,
        "orthogonal",
    )
    assert (default.critic_clip, default.actor_loss_reduction, default.eval_rule) == (
        "per-critic",
        "mean",
        "noise-free",
    )


@pytest.mark.parametrize("algo", ["rfm", "sac", "dacer"])
def test_a_config_is_validated_once_per_construction(algo: str, monkeypatch) -> None:
    """Every way of making a config validates it exactly once (``__post_init__``); building
    an agent from one does not validate it again; a bad value fails at construction."""
    calls = []
    monkeypatch.setattr(AgentConfig, "validate", lambda self: calls.append(type(self)))
    config_cls = get_agent_class(algo).Config
    config = config_cls()
    routes = {
        "cls()": lambda: config_cls(),
        "from_preset": lambda: config_cls.from_preset("fast"),
        "from_dict": lambda: config_cls.from_dict(config.to_dict()),
        "replace": lambda: dataclasses.replace(config, gamma=0.9),
    }
    for route, make in routes.items():
        calls.clear()
        assert isinstance(make(), config_cls)
        assert calls == [config_cls], route
    calls.clear()
    make_agent(algo, config, 3, 2)
    assert calls == []
    monkeypatch.undo()
    with pytest.raises(ValueError, match=re.escape("gamma=2.0")):
        dataclasses.replace(config, gamma=2.0)
    with pytest.raises(ValueError, match=re.escape("gamma=2.0")):
        config_cls.from_dict({**config.to_dict(), "gamma": 2.0})
