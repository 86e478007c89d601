"""Agent configs are composed of parts and carry only the fields their agent reads: an option
an agent would ignore is refused by name, configs saved before the parts (which carried such
fields) still load, and an unknown saved field is refused by name."""

from __future__ import annotations

import re

import pytest

from revflow.agents.configs import FAST_DIFFUSION
from revflow.agents.registry import available, get_agent_class, make_config


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
