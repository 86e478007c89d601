"""The training loops produce what they produced before their refactor, bit for bit, and a run
directory written before it still resumes and evaluates.

``tests/data/loop_outputs.json`` and ``tests/data/engine_run_v0`` were written by
``tests/data/make_loop_outputs.py`` with the code as it was then (same 2-core CPU, jax 0.10.2):
the final agent / loop state (a sha256 of its arrays), every logged metric but the timing
column, every evaluation and ``result.json``; the run directories as killed before their
last checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import _loop_outputs as lo
from revflow.cli import main

DATA = Path(__file__).parent / "data"
RECORDED = json.loads((DATA / "loop_outputs.json").read_text())


def test_engine_outputs_are_those_recorded(tmp_path: Path) -> None:
    run = lo.engine_run(tmp_path / "run")
    assert lo.engine_outputs(run) == RECORDED["engine"]


def test_compiled_outputs_are_those_recorded(tmp_path: Path) -> None:
    path, state = lo.compiled_run(tmp_path / "run")
    assert lo.compiled_outputs(path, state) == RECORDED["compiled"]


def test_an_old_run_dir_resumes_and_evaluates(tmp_path: Path, capsys) -> None:
    """The recorded engine run as killed after its checkpoint at env step 200, resumed by
    ``revflow train --resume``: it ends as the uninterrupted run did; ``revflow eval`` reads
    it."""
    run = tmp_path / "old"
    shutil.copytree(DATA / "engine_run_v0", run)
    assert main(["train", "--resume", str(run)]) == 0
    assert "from checkpoint 200" in capsys.readouterr().out
    assert lo.engine_outputs(run) == RECORDED["engine"]
    assert main(["eval", str(run), "--episodes", "1"]) == 0
    assert "return" in capsys.readouterr().out


def test_an_old_compiled_run_dir_resumes(tmp_path: Path) -> None:
    """The recorded compiled run as killed after its checkpoint at env step 20, resumed: it
    ends as the uninterrupted run did."""
    run = tmp_path / "old"
    shutil.copytree(DATA / "compiled_run_v0", run)
    path, state = lo.compiled_run(run, resume=True)
    assert lo.compiled_outputs(path, state) == RECORDED["compiled"]
