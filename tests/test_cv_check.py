"""benchmarks/cv_check.py: the paired table and the verdict of the RL check, on stand-in run
directories (final return = mean of the last 3 evaluations; unfinished runs are left out)."""

import importlib.util
import json
import sys
from pathlib import Path

_DIR = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(_DIR))
_spec = importlib.util.spec_from_file_location("cv_check", _DIR / "cv_check.py")
cv_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cv_check)


def _run(root: Path, env: str, label: str, seed: int, returns: list[float], done=True) -> None:
    path = root / env.replace(":", "_") / label / f"seed{seed}"
    path.mkdir(parents=True)
    train = {"algo": "rfm", "env": env, "label": label, "seed": seed, "steps": 100}
    (path / "config.json").write_text(json.dumps({"train": train}))
    rows = [f"{10 * i},{r},0.0" for i, r in enumerate(returns)]
    (path / "eval.csv").write_text("step,eval/return_mean,eval/return_std\n" + "\n".join(rows))
    if done:
        (path / "result.json").write_text(json.dumps({"complete": True}))


def _tables(tmp_path, capsys, shrunk_gain):
    for env in ("dmc:a", "dmc:b"):
        for seed, base in enumerate([100.0, 200.0, 300.0]):
            _run(tmp_path, env, cv_check.BASE, seed, [0.0, base, base, base])
            gain = shrunk_gain[env][seed]
            tail = [base + gain] * 3
            _run(tmp_path, env, cv_check.CANDIDATE, seed, [999.0, *tail])  # 999: not in window
    _run(tmp_path, "dmc:a", cv_check.BASE, 3, [5.0], done=False)  # unfinished: left out
    assert cv_check.main(str(tmp_path)) == 0
    return capsys.readouterr().out


def test_helps_only_when_every_task_clears_two_standard_errors(tmp_path, capsys):
    out = _tables(tmp_path, capsys, {"dmc:a": [30, 33, 36], "dmc:b": [30, 33, 36]})
    assert "| dmc:a | 0 | 100.0 ([100.0, 100.0, 100.0]) |" in out
    assert "| dmc:a | mean of 3 pairs |" in out and "seed3" not in out
    assert out.strip().endswith("helps (dmc:a: yes, dmc:b: yes)")


def test_does_not_help_when_one_task_is_noise(tmp_path, capsys):
    out = _tables(tmp_path, capsys, {"dmc:a": [30, 33, 36], "dmc:b": [-300, 0, 300]})
    assert out.strip().endswith("does not help (dmc:a: yes, dmc:b: no)")
