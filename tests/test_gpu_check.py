"""The GPU check script: its quick CPU path (revflow's engine; the authors' side skipped and
said), its probe of what a Python lacks, and its refusals. With ``REVFLOW_OFFICIAL`` and
``REVFLOW_OFFICIAL_PYTHON`` (the authors' checkout and environment) the extended check runs
all three sides at the quick sizes."""

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import pytest

from revflow.bench import ThroughputArgs, agent_config

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
_spec = importlib.util.spec_from_file_location("gpu_check", _PATH)
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)

# The authors' override key -> revflow's RFMConfig field holding the same value.
_FIELD = {
    "actor.hidden_size": "actor_hidden",
    "actor.emb_size": "embed_dim",
    "critic.hidden_size": "critic_hidden",
    "rfm.num_particles_training": "num_particles",
    "rfm.num_particles_data": "num_particles",
    "rfm.num_particles_eval": "num_particles",
    "rfm.num_integration_steps": "num_flow_steps",
    "rfm.num_estimator_mc_samples": "num_reverse_samples",
    "trainer.batch_size": "batch_size",
}


def test_quick_values_are_the_same_on_both_sides():
    quick = gpu_check.ENGINE["quick"]
    cfg = agent_config(ThroughputArgs(algo="rfm", preset=quick["preset"], set=quick["set"]))
    for key, value in gpu_check.OFFICIAL_QUICK.items():
        ours = getattr(cfg, _FIELD[key])
        assert (ours[0] if key == "critic.hidden_size" else ours) == value, key
    assert cfg.critic_hidden == (32, 32)


def test_probe_names_what_a_python_lacks():
    found = gpu_check.probe(sys.executable, ("json", "no_such_module_x", "os.nope"), os.environ)
    assert found["missing"] == ["no_such_module_x", "os.nope"] and found["broken"] == []
    err = gpu_check.probe_error("revflow's", "py", found, quick=True)
    assert err.startswith("error: revflow's Python py cannot import: no_such_module_x, os.nope")
    assert "\n" not in err


def test_a_cpu_backend_is_refused_unless_quick():
    found = {"missing": [], "backend": "cpu"}
    assert gpu_check.probe_error("revflow's", "py", found, quick=True) is None
    err = gpu_check.probe_error("revflow's", "py", found, quick=False)
    assert "JAX backend 'cpu', not a GPU" in err and "\n" not in err


@pytest.mark.parametrize(
    "argv, start",
    [
        ([], "error: --official None has no main.py"),  # a GPU run needs the authors' side
        (["--quick", "--official", "/nonexistent"], "error: --official '/nonexistent'"),
        (["--quick", "--revflow-python", "/nonexistent/py"], "error: --revflow-python"),
        (["--quick", "--project-steps", "0"], "error: --project-steps 0"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, start, capsys):
    assert gpu_check.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(start) and "\n" not in err


def test_quick_engine_side(tmp_path, capsys):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--quick", "--sides", "engine", "official", "--out", str(out)]) == 0
    assert "official side skipped" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["device_kind"] and res["quick"] and list(res["sides"]) == ["engine"]
    row = res["sides"]["engine"]
    assert row["env_steps"] >= 20 and math.isfinite(row["env_steps_per_s"])
    assert row["projected_hours"] == pytest.approx(250_000 / row["env_steps_per_s"] / 3600)
    assert row["updates_per_s"] > 0 and row["jax"]


@pytest.mark.extended
@pytest.mark.skipif(
    not (os.environ.get("REVFLOW_OFFICIAL") and os.environ.get("REVFLOW_OFFICIAL_PYTHON")),
    reason="REVFLOW_OFFICIAL / REVFLOW_OFFICIAL_PYTHON unset",
)
def test_quick_all_sides(tmp_path):
    out = tmp_path / "check.json"
    official = ["--official", os.environ["REVFLOW_OFFICIAL"]]
    official += ["--official-python", os.environ["REVFLOW_OFFICIAL_PYTHON"]]
    assert gpu_check.main(["--quick", *official, "--out", str(out)]) == 0
    sides = json.loads(out.read_text())["sides"]
    assert set(sides) == {"engine", "official", "compiled"}
    assert sides["official"]["env_steps"] == max(sides["engine"]["env_steps"], 20)
    assert all(row["env_steps_per_s"] > 0 for row in sides.values())
