"""benchmarks/option_ab.py: argument errors before any bench, and the A B bookkeeping (which
side gets the overrides, per-round ratios, their medians) on stand-in bench rows."""

import importlib.util
import json
import sys
from pathlib import Path

_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(_DIR))
_spec = importlib.util.spec_from_file_location("option_ab", _DIR / "option_ab.py")
option_ab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(option_ab)


def test_bad_arguments_are_refused_in_one_line(capsys):
    assert option_ab.main(["--set", "critic_shared_state"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --set 'critic_shared_state' is not FIELD=VALUE"
    )
    assert option_ab.main(["--set", "a=1", "--rounds", "0"]) == 2
    assert "--rounds 0" in capsys.readouterr().err


def test_rounds_alternate_and_ratios_are_with_over_without(tmp_path, monkeypatch):
    calls = []

    def bench(algo, preset, env, tmp, *, update_seconds, e2e_seconds, sets, tag):
        calls.append((preset, tuple(sets)))
        fast = bool(sets)
        return {
            "updates_per_s": 3.0 if fast else 2.0,
            "env_steps_per_s": 1.5 if fast else 1.0 + 0.25 * len(calls),
            "flops_per_update": 9.0 if fast else 10.0,
        }

    monkeypatch.setattr(option_ab, "revflow_bench", bench)
    out = tmp_path / "ab.json"
    argv = ["--presets", "fast", "--set", "x=1", "--rounds", "2", "--out", str(out)]
    assert option_ab.main(argv) == 0
    assert calls == [("fast", ()), ("fast", ("x=1",))] * 2  # A B A B
    res = json.loads(out.read_text())["presets"]["fast"]
    assert res["updates_ratio"]["median"] == 1.5
    # env steps/s of the two "without" runs: 1.25 and 1.75 -> ratios 1.2 and 6/7
    assert abs(res["env_steps_ratio"]["max"] - 1.2) < 1e-12
    assert abs(res["env_steps_ratio"]["min"] - 1.5 / 1.75) < 1e-12
    assert res["flops_per_update"] == {"without": 10.0, "with": 9.0}
