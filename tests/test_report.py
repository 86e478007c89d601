"""``revflow report``: synthetic run directories -> numbers checked against numpy, warnings for
shorter runs / missing seeds, the output files, the error cases and the CLI entry."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import trim_mean

from revflow.cli import main
from revflow.report import ReportArgs, ReportError, ReportWarning, run_report

REPS = 200
ENVS = ("dmc:cartpole-swingup", "gym:Pendulum-v1")
LABELS = ("rfm", "sac")
STEPS = np.arange(1, 11) * 1000


def write_run(
    root: Path,
    env: str,
    label: str,
    seed: int,
    returns: np.ndarray,
    steps: np.ndarray | None = None,
    *,
    complete: bool = True,
    label_in_config: bool = True,
) -> Path:
    """A run directory as the engine writes it (config.json, eval.csv, result.json)."""
    steps = STEPS[: len(returns)] if steps is None else steps
    run_dir = root / env.replace(":", "_") / label / f"seed{seed}"
    (run_dir / "checkpoints").mkdir(parents=True)
    train = {"algo": label, "env": env, "seed": seed, "steps": int(STEPS[-1])}
    if label_in_config:
        train["label"] = label
    config = {"revflow_version": "0.1.0", "train": train, "agent": {}, "resolved": {}}
    (run_dir / "config.json").write_text(json.dumps(config))
    with (run_dir / "eval.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "eval/return_mean", "eval/return_std"])
        writer.writerows([int(s), repr(float(r)), 1.0] for s, r in zip(steps, returns, strict=True))
    (run_dir / "metrics.csv").write_text("step,charts/sps\n1000,10.0\n")
    if complete:
        result = {
            "complete": True, "algo": label, "label": label, "env": env, "seed": seed,
            "env_steps": int(steps[-1]), "updates": 0, "episodes": 0, "last_ckpt": int(steps[-1]),
            "final_eval": {"step": int(steps[-1]), "return_mean": float(returns[-1]),
                           "return_std": 1.0},
        }  # fmt: skip
        (run_dir / "result.json").write_text(json.dumps(result))
    return run_dir


def make_store(root: Path) -> dict[tuple[str, str, int], np.ndarray]:
    """2 envs x 2 labels x 3 seeds, except: sac on Pendulum lacks seed 2, and rfm seed 1 on
    Pendulum stopped early (6 of 10 evaluations, unfinished)."""
    rng = np.random.default_rng(0)
    curves = {}
    for env in ENVS:
        scale = 1000.0 if env.startswith("dmc") else -1500.0
        for li, label in enumerate(LABELS):
            for seed in range(3):
                if (env, label, seed) == ("gym:Pendulum-v1", "sac", 2):
                    continue
                n = 6 if (env, label, seed) == ("gym:Pendulum-v1", "rfm", 1) else 10
                returns = scale * (0.3 + 0.05 * li) * np.linspace(0.2, 1.0, n) + rng.normal(
                    0, 20, n
                )
                curves[(env, label, seed)] = returns
                write_run(root, env, label, seed, returns, complete=n == 10,
                          label_in_config=seed != 0)  # fmt: skip
    return curves


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("runs")
    curves = make_store(root)
    out = root.parent / "report_out"
    args = ReportArgs(
        runs=(str(root),), out=str(out), final_window=2, bootstrap_reps=REPS,
        normalize_ref=("gym:Pendulum-v1=-1600:0",),
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        md_path = run_report(args)
    messages = [str(w.message) for w in caught if issubclass(w.category, ReportWarning)]
    return curves, out, md_path, messages


def test_final_table_matches_numpy(report) -> None:
    curves, out, _, _ = report
    rows = read_csv(out / "final.csv")
    assert len(rows) == 4
    for row in rows:
        seeds = [int(s) for s in row["seeds"].split()]
        scores = np.array([curves[(row["env"], row["label"], s)][-2:].mean() for s in seeds])
        assert int(row["n_seeds"]) == len(seeds)
        np.testing.assert_allclose(float(row["mean"]), scores.mean(), rtol=1e-12)
        np.testing.assert_allclose(float(row["std"]), scores.std(ddof=1), rtol=1e-12)
        iqm = trim_mean(scores, 0.25)
        np.testing.assert_allclose(float(row["iqm"]), iqm, rtol=1e-12)
        assert float(row["iqm_lower"]) <= iqm <= float(row["iqm_upper"])
        assert float(row["iqm_lower"]) < float(row["iqm_upper"])
        assert row["final_window"] == "2"
    by_key = {(r["env"], r["label"]): r for r in rows}
    assert by_key[("gym:Pendulum-v1", "sac")]["seeds"] == "0 1"
    short = by_key[("gym:Pendulum-v1", "rfm")]
    assert (short["final_step_min"], short["final_step_max"]) == ("6000", "10000")
    assert short["n_complete"] == "2"
    assert by_key[("dmc:cartpole-swingup", "rfm")]["budget"] == "10000"


def test_aggregate_matches_numpy(report) -> None:
    curves, out, _, _ = report
    rows = {r["label"]: r for r in read_csv(out / "aggregate.csv")}
    assert set(rows) == set(LABELS)
    for label, row in rows.items():
        tasks = []
        for env, (lo, hi) in zip(ENVS, ((0, 1000), (-1600, 0)), strict=True):
            seeds = [s for s in range(3) if (env, label, s) in curves]
            finals = np.array([curves[(env, label, s)][-2:].mean() for s in seeds])
            tasks.append((finals - lo) / (hi - lo))
        pooled = np.concatenate(tasks)
        iqm = trim_mean(pooled, 0.25)
        mean = np.mean([t.mean() for t in tasks])
        assert int(row["n_tasks"]) == 2 and int(row["n_scores"]) == pooled.size
        np.testing.assert_allclose(float(row["iqm"]), iqm, rtol=1e-12)
        np.testing.assert_allclose(float(row["mean"]), mean, rtol=1e-12)
        assert float(row["iqm_lower"]) <= iqm <= float(row["iqm_upper"])
        assert float(row["mean_lower"]) <= mean <= float(row["mean_upper"])


def test_curves_average_the_seeds_present(report) -> None:
    curves, out, _, _ = report
    rows = [
        r for r in read_csv(out / "curves.csv")
        if (r["env"], r["label"]) == ("gym:Pendulum-v1", "rfm")
    ]  # fmt: skip
    assert [int(r["step"]) for r in rows] == list(STEPS)
    assert [int(r["n_seeds"]) for r in rows] == [3] * 6 + [2] * 4
    stack = np.stack([curves[("gym:Pendulum-v1", "rfm", s)][:6] for s in range(3)])
    np.testing.assert_allclose([float(r["mean"]) for r in rows[:6]], stack.mean(0))
    se = stack.std(0, ddof=1) / np.sqrt(3)
    np.testing.assert_allclose([float(r["upper"]) - float(r["mean"]) for r in rows[:6]], se)
    late = np.stack([curves[("gym:Pendulum-v1", "rfm", s)][6:] for s in (0, 2)])
    np.testing.assert_allclose([float(r["mean"]) for r in rows[6:]], late.mean(0))


def test_warnings_and_outputs(report) -> None:
    _, out, md_path, messages = report
    text = "\n".join(messages)
    assert "gym:Pendulum-v1 / rfm: shorter runs seed 1 (step 6000)" in text
    assert "gym:Pendulum-v1 / sac: 2 seeds, missing seed 2" in text
    assert "unfinished runs" in text and "gym:Pendulum-v1 / rfm / seed 1" in text
    assert md_path == out / "report.md"
    md = md_path.read_text()
    for name in ("curves.png", "aggregate.png"):
        assert (out / name).stat().st_size > 1000
        assert f"]({name})" in md
    assert "## Warnings" in md and "missing seed 2" in md and "shorter runs" in md
    assert "| gym:Pendulum-v1 | sac | 2 |" in md


def test_finished_only_leaves_out_unfinished_runs(tmp_path: Path) -> None:
    curves = make_store(tmp_path / "runs")
    args = ReportArgs(runs=(str(tmp_path / "runs"),), out=str(tmp_path / "out"),
                      bootstrap_reps=5, finished_only=True)  # fmt: skip
    with pytest.warns(ReportWarning) as record:
        run_report(args)
    text = "\n".join(str(w.message) for w in record)
    assert "gym:Pendulum-v1 / rfm / seed 1" in text and "left out (--finished-only)" in text
    assert "unfinished runs (no" not in text
    rows = {(r["env"], r["label"]): r for r in read_csv(tmp_path / "out" / "final.csv")}
    pendulum_rfm = rows[("gym:Pendulum-v1", "rfm")]
    assert pendulum_rfm["seeds"] == "0 2" and pendulum_rfm["n_complete"] == "2"
    expected = np.mean([curves[("gym:Pendulum-v1", "rfm", s)][-1] for s in (0, 2)])
    assert float(pendulum_rfm["mean"]) == pytest.approx(expected)


def test_one_seed_and_unnormalised_env(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "gym:Hopper-v5", "rfm", 0, np.array([1.0, 2.0, 3.0]))
    run_dir = write_run(tmp_path / "runs", "dmc:cheetah-run", "rfm", 0, np.array([5.0, 7.0]))
    with pytest.warns(ReportWarning) as record:
        md = run_report(ReportArgs(runs=(str(run_dir), str(tmp_path / "runs" / "gym_Hopper-v5")),
                                   out=str(tmp_path / "out"), bootstrap_reps=20))  # fmt: skip
    text = "\n".join(str(w.message) for w in record)
    assert "one seed" in text
    assert "left out of the aggregate" in text and "gym:Hopper-v5" in text
    rows = read_csv(tmp_path / "out" / "final.csv")
    assert {r["env"] for r in rows} == {"gym:Hopper-v5", "dmc:cheetah-run"}
    for row in rows:
        assert row["std"] == "nan"
        assert float(row["iqm_lower"]) == float(row["iqm"]) == float(row["iqm_upper"])
    (agg,) = read_csv(tmp_path / "out" / "aggregate.csv")
    assert agg["tasks"] == "dmc:cheetah-run" and float(agg["iqm"]) == pytest.approx(0.007)
    assert "aggregate.png" in md.read_text()


def test_partly_written_last_line_is_ignored(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, "dmc:walker-walk", "sac", 0, np.array([10.0, 20.0]))
    with (run_dir / "eval.csv").open("a") as f:
        f.write("3000,3")  # killed mid-write: no newline
    with pytest.warns(ReportWarning) as record:
        run_report(ReportArgs(runs=(str(tmp_path),), out=str(tmp_path / "o"), bootstrap_reps=5))
    assert any("partly written last line 4 ignored" in str(w.message) for w in record)
    (row,) = read_csv(tmp_path / "o" / "final.csv")
    assert float(row["mean"]) == 20.0


@pytest.mark.parametrize(
    ("corrupt", "needle"),
    [
        ("config", "config.json is unreadable or not JSON"),
        ("config-keys", "train.env"),
        ("eval", "eval.csv is corrupt: line 3"),
        ("eval-header", "eval.csv is corrupt: header"),
    ],
)
def test_corrupt_files_are_named(tmp_path: Path, corrupt: str, needle: str) -> None:
    run_dir = write_run(tmp_path, "dmc:walker-walk", "sac", 0, np.array([10.0, 20.0, 30.0]))
    if corrupt == "config":
        (run_dir / "config.json").write_text("{not json")
    elif corrupt == "config-keys":
        (run_dir / "config.json").write_text(json.dumps({"train": {"algo": "sac", "seed": 0}}))
    elif corrupt == "eval":
        (run_dir / "eval.csv").write_text(
            "step,eval/return_mean,eval/return_std\n1000,1.0,0\n2000,oops,0\n3000,2.0,0\n"
        )
    else:
        (run_dir / "eval.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ReportError, match=needle) as err:
        run_report(ReportArgs(runs=(str(tmp_path),), out=str(tmp_path / "o"), bootstrap_reps=5))
    assert str(run_dir) in str(err.value)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"final_window": 0}, "--final-window must be >= 1"),
        ({"normalize_ref": ("gym:Hopper-v5",)}, "malformed"),
        ({"normalize_ref": ("gym:Hopper-v5=1:x",)}, "malformed"),
        ({"normalize_ref": ("gym:Hopper-v5=3:3",)}, "differ"),
    ],
)
def test_bad_options(tmp_path: Path, kwargs: dict, needle: str) -> None:
    write_run(tmp_path, "dmc:walker-walk", "sac", 0, np.array([10.0]))
    with pytest.raises(ReportError, match=needle):
        run_report(ReportArgs(runs=(str(tmp_path),), out=str(tmp_path / "o"), **kwargs))


def test_no_runs_names_the_paths(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no run directories") as err:
        run_report(ReportArgs(runs=(str(tmp_path / "empty"),), out=str(tmp_path / "o")))
    assert str(tmp_path / "empty") in str(err.value)
    with pytest.raises(ReportError, match="not a directory"):
        run_report(ReportArgs(runs=(str(tmp_path / "nope"),), out=str(tmp_path / "o")))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "runs"
    for seed in range(2):
        write_run(root, "dmc:walker-walk", "sac", seed, np.array([10.0, 20.0 + seed]))
    out = tmp_path / "out"
    assert main(["report", str(root), "--out", str(out), "--bootstrap-reps", "10"]) == 0
    captured = capsys.readouterr()
    assert "| dmc:walker-walk | sac | 2 |" in captured.out
    assert (out / "report.md").is_file()

    assert main(["report", str(tmp_path / "nothing-here"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "nothing-here" in err
    bad = ["report", str(root), "--out", str(out), "--normalize-ref", "oops"]
    assert main(bad) == 2
    assert capsys.readouterr().err.startswith("error: --normalize-ref 'oops' is malformed")


def test_another_implementation_is_drawn_dashed_in_the_same_colour() -> None:
    """``X-authors`` (benchmarks/fidelity's name for the authors' run of ``X``) shares ``X``'s
    colour and is dashed; a ``-authors`` label without its ``X`` is a label of its own."""
    from revflow.report import _colours, _line_style

    labels = ["qne", "qne-authors", "rfm", "rfm-authors", "rfm-diffusion", "sac-authors"]
    colours = _colours(labels)
    assert colours["rfm"] == colours["rfm-authors"] and colours["qne"] == colours["qne-authors"]
    assert len({colours[x] for x in ("qne", "rfm", "rfm-diffusion", "sac-authors")}) == 4
    styles = [_line_style(x, labels) for x in labels]
    assert styles == ["-", "--", "-", "--", "-", "-"]
