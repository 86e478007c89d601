"""What the CLI says exists and how it reads values: ``revflow list``, ``--help`` choices and
descriptions, the one override parser (train flags, sweep ``--set``/``--grid`` and files),
sweep run-dir matching and ``report --finished-only``. Cheap: no training."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revflow import cli, envs, report, sweep
from revflow.agents.registry import available, get_agent_class
from revflow.compiled import CompiledConfig
from revflow.engine import TrainConfig, _config_dict
from revflow.overrides import OverrideError, apply_overrides, coerce, split_values

ENV = "gym:Pendulum-v1"

# --------------------------------------------------------------------------------------------
# The override parser
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "annotation", "expected"),
    [
        ("3e-4", float, 3e-4),
        ("1E6", float, 1e6),
        (3, float, 3.0),
        ("1e5", int, 100_000),
        (1e5, int, 100_000),
        ("200", int, 200),
        ("true", bool, True),
        ("No", bool, False),
        ("None", float | None, None),
        ("null", int | None, None),
        ("none", str, "none"),
        ("[64, 64]", tuple[int, ...], (64, 64)),
        ([32], tuple[int, ...], (32,)),
        ("0.5", float | str, 0.5),
        ("optimal", float | str, "optimal"),
        ("ve", Literal["linear", "ve"], "ve"),
    ],
)
def test_values_are_read_by_the_field_type(value, annotation, expected) -> None:
    got = coerce(value, annotation, "x")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("value", "annotation", "needle"),
    [
        ("3e-4x", float, "expected a number"),
        ("1.5", int, "expected an integer"),
        ("maybe", bool, "true/false"),
        (None, float, "None is not allowed"),
        ("curved", Literal["linear", "ve"], "one of linear, ve"),
    ],
)
def test_bad_values_name_the_field_and_what_it_takes(value, annotation, needle) -> None:
    with pytest.raises(OverrideError, match=needle) as err:
        coerce(value, annotation, "agent.x")
    assert str(err.value).startswith("agent.x: ")


@settings(deadline=None, max_examples=50)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_round_trips(x: float) -> None:
    assert coerce(repr(x), float, "x") == x
    assert coerce(f"{x:e}", float, "x") == float(f"{x:e}")


def test_split_values_keeps_brackets() -> None:
    assert split_values("a, [1,2], b") == ["a", "[1,2]", "b"]


def test_train_flags_and_sweep_values_agree() -> None:
    """`revflow train --agent.critic-lr 3e-4` and `revflow sweep --set agent.critic_lr=3e-4`
    give the same config."""
    parsed = cli._parse_train_command(
        ["--algo", "sac", "--agent.critic-lr", "3e-4", "--steps", "20000"],
        "revflow train",
        TrainConfig,
        "{algo}{config}{preset}{presets}",
    )
    via = sweep.build_runs(
        sweep._definition_from_args(
            sweep.SweepArgs(
                algos=("sac",), envs=(ENV,), set=("agent.critic_lr=3e-4", "steps=20000")
            )
        ),
        check_envs=False,
    )[0]
    assert via.agent["critic_lr"] == parsed.agent.critic_lr == 3e-4
    assert via.train["steps"] == parsed.train.steps == 20000
    assert type(parsed.train) is TrainConfig  # the --help wrapper does not leak


def test_sweep_grid_and_file_take_scientific_notation_booleans_and_none(tmp_path) -> None:
    args = sweep.SweepArgs(
        algos=("sac",),
        envs=(ENV,),
        grid=("agent.critic_lr=3e-4,1e-3", "agent.target_entropy=None,-1"),
        set=("agent.autotune_alpha=false",),
    )
    runs = sweep.build_runs(sweep._definition_from_args(args), check_envs=False)
    assert {(r.agent["critic_lr"], r.agent["target_entropy"]) for r in runs} == {
        (3e-4, None),
        (3e-4, -1.0),
        (1e-3, None),
        (1e-3, -1.0),
    }
    assert all(r.agent["autotune_alpha"] is False for r in runs)
    path = tmp_path / "s.yaml"
    path.write_text(
        f"algos: [sac]\nenvs: ['{ENV}']\nset: {{agent.critic_lr: 3e-4, steps: 2e4, "
        "agent.target_entropy: null, csv: no}\n"
    )
    [run] = sweep.build_runs(sweep.load_sweep_file(path), check_envs=False)
    assert run.agent["critic_lr"] == 3e-4 and run.train["steps"] == 20_000
    assert run.agent["target_entropy"] is None and run.train["csv"] is False


def test_apply_overrides_names_unknown_fields() -> None:
    with pytest.raises(OverrideError, match="has no field 'nope'"):
        apply_overrides(TrainConfig, TrainConfig(), {"nope": 1}, "train")


# --------------------------------------------------------------------------------------------
# What exists: revflow list, --help
# --------------------------------------------------------------------------------------------


def test_list_shows_algorithms_presets_and_every_env_family(capsys) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in available():
        assert f"  {name} " in out
    for family in envs.ENV_FAMILIES:
        assert f"  {family.prefix}  " in out
    assert "cheetah: run" in out and "Pendulum-v1" in out and "CheetahRun" in out
    assert "fast, reference" in out
    assert cli.main(["list", "planets"]) == 2
    assert "unknown list topic 'planets'" in capsys.readouterr().err


def test_list_envs_is_the_families_table() -> None:
    names = envs.list_envs()
    assert names == [f.prefix + t for f in envs.ENV_FAMILIES for t in f.tasks()]
    assert "dmc:cheetah-run" in names and "gym:Pendulum-v1" in names


def _configs() -> list[type]:
    return [TrainConfig, CompiledConfig, *(get_agent_class(n).Config for n in available())]


def test_every_config_field_has_a_description() -> None:
    missing = [
        f"{cls.__name__}.{f.name}"
        for cls in _configs()
        for f in dataclasses.fields(cls)
        if not cli.field_doc(cls, f.name)
    ]
    assert missing == []


FIXED_CHOICES = ("policy", "path", "parameterisation", "sampler", "explore_pick", "train_pick")


def test_fixed_choice_fields_are_literals_listed_in_help(capsys) -> None:
    for algo in available():
        hints = typing.get_type_hints(get_agent_class(algo).Config)
        for name in FIXED_CHOICES:
            if name in {f.name for f in dataclasses.fields(get_agent_class(algo).Config)}:
                assert typing.get_origin(hints[name]) is Literal, (algo, name)
    with pytest.raises(SystemExit):
        cli.main(["train", "--algo", "qne", "--help"])
    out = capsys.readouterr().out
    assert "{boltzmann,best,sample}" in out and "{flow,diffusion}" in out
    assert "{" + ",".join(available()) + "}" in out  # --algo's choices
    assert "Particles per state" in out  # an inherited description


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--algo", "qne", "--agent.policy", "curved"], "invalid choice 'curved'"),
        (["--algo", "sac", "--agent.policy", "flow"], "Unrecognized options"),
        (["--algo", "sac", "--label", ".."], "label"),
    ],
)
def test_bad_flag_is_one_error_line(argv, needle, capsys) -> None:
    assert cli.main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err


def test_bad_sweep_value_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("algos: [sac]\nenvs: ['gym:Pendulum-v1']\nset: {agent.tau: [1, 2]}\n")
    cmd = [sys.executable, "-m", "revflow.cli", "sweep", str(bad), "--dry-run"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "agent (sac).tau: expected a number" in proc.stderr


def test_runtime_error_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = TrainConfig(algo="sac", env=ENV, steps=400, warmup_steps=100)
    agent = get_agent_class("sac").Config.from_preset("fast")
    (run / "checkpoints" / "200" / "meta").mkdir(parents=True)
    (run / "checkpoints" / "200" / "_CHECKPOINT_METADATA").write_text("{")  # all garbage
    (run / "checkpoints" / "200" / "meta" / "metadata").write_text("{")
    (run / "config.json").write_text(json.dumps(_config_dict(cfg, agent)))
    cmd = [sys.executable, "-m", "revflow.cli", "train", "--resume", str(run)]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 1 and len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    assert plain.stderr.startswith("error: no intact checkpoint in")
    debug = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# --------------------------------------------------------------------------------------------
# Sweep run-dir matching, report --finished-only
# --------------------------------------------------------------------------------------------


def _made_by_train(root: Path, spec: sweep.RunSpec, run_dir_text: str) -> Path:
    cfg, agent_cfg = sweep._configs(spec)
    config = _config_dict(dataclasses.replace(cfg, run_dir=run_dir_text), agent_cfg)
    path = Path(spec.run_dir)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_sweep_adopts_a_run_made_under_another_spelling_of_its_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = sweep.SweepArgs(
        algos=("sac",), envs=(ENV,), run_dir="runs", set=("steps=500", "warmup_steps=100")
    )
    [spec] = sweep.build_runs(sweep._definition_from_args(args), check_envs=False)
    assert Path(spec.run_dir).is_absolute()
    _made_by_train(tmp_path, spec, "runs")  # `revflow train --run-dir runs`
    assert sweep.run_state(spec)[0] == "resume"
    (Path(spec.run_dir) / "config.json").write_text(
        (Path(spec.run_dir) / "config.json").read_text().replace('"runs"', '"/moved/away"')
    )
    assert sweep.run_state(spec)[0] == "resume"  # a moved results folder


def test_report_finished_only_does_not_count_a_corrupt_result(tmp_path: Path) -> None:
    run = tmp_path / "gym_Pendulum-v1" / "sac" / "seed0"
    run.mkdir(parents=True)
    train = dataclasses.asdict(TrainConfig(algo="sac", env=ENV, steps=400, warmup_steps=100))
    (run / "config.json").write_text(json.dumps({"train": train, "agent": {}}))
    (run / "eval.csv").write_text("step,eval/return_mean,eval/return_std\n400,-900.0,10.0\n")
    (run / "result.json").write_bytes(b"\xff{ truncated")
    loaded, notes = report.read_run_curve(run)
    assert not loaded.complete and any("result.json is corrupt" in n for n in notes)
    (run / "result.json").write_text('{"complete": true}')
    assert report.read_run_curve(run)[0].complete
