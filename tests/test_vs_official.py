"""The side-by-side throughput script: its configurations map to revflow presets with the
same values (the authors' side itself needs their checkout and is not run here)."""

import importlib.util
from pathlib import Path

import pytest

from revflow.agents.rfm import RFMConfig

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "vs_official.py"
_spec = importlib.util.spec_from_file_location("vs_official", _PATH)
vs_official = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vs_official)

# The authors' override key -> revflow's RFMConfig field holding the same value.
_FIELD = {
    "rfm.num_particles_training": "num_particles",
    "rfm.num_particles_data": "num_particles",
    "rfm.num_particles_eval": "num_particles",
    "rfm.num_integration_steps": "num_flow_steps",
    "rfm.num_estimator_mc_samples": "num_reverse_samples",
    "actor.hidden_size": "actor_hidden",
    "actor.emb_size": "embed_dim",
}


@pytest.mark.parametrize("config", sorted(vs_official.OFFICIAL_VALUES))
def test_official_values_match_the_revflow_preset(config):
    preset = RFMConfig.from_preset(vs_official.REVFLOW_PRESET[config])
    for key, value in vs_official.OFFICIAL_VALUES[config].items():
        assert getattr(preset, _FIELD[key]) == value, key


def test_overrides_disable_wandb_and_bound_the_run():
    flags = vs_official.official_overrides("fast", "cheetah-run", 1000, 1500, "/tmp/x")
    pairs = dict(f.split("=", 1) for f in flags[3::2])
    assert flags[:2] == ["--config", "configs/rfm.yaml"]
    assert pairs["logger.wandb_project"] == "none"
    assert pairs["trainer.start_training"] == "1000"
    assert int(pairs["trainer.max_steps"]) > 1500
    assert pairs["rfm.num_estimator_mc_samples"] == "16"


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert vs_official.main(["--official", str(tmp_path), "--official-python", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --official") and "\n" not in err
