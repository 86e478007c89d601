"""Writes the recorded outputs of two tiny training runs, made before the loops were refactored
(``tests/test_loop_outputs.py`` checks that the loops still produce them bit for bit), and
keeps both run directories, cut back to an earlier checkpoint as if the runs had been killed
there, as old runs to resume (``engine_run_v0``, ``compiled_run_v0``).

    PYTHONPATH=src python tests/data/make_loop_outputs.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import _loop_outputs as lo  # noqa: E402  (tests/_loop_outputs.py)


def keep_killed(run: Path, dest: Path, last_step: int) -> None:
    """``run`` copied to ``dest`` without its checkpoint ``last_step``, ``result.json`` and
    TensorBoard events: what a run killed after its previous checkpoint left."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("events.*", "result.json"))
    shutil.rmtree(dest / "checkpoints" / str(last_step))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = lo.engine_run(Path(tmp) / "engine")
        engine = lo.engine_outputs(run)
        keep_killed(run, HERE / "engine_run_v0", 300)
        path, state = lo.compiled_run(Path(tmp) / "compiled")
        compiled = lo.compiled_outputs(path, state)
        keep_killed(path, HERE / "compiled_run_v0", 24)
    out = {"engine": engine, "compiled": compiled}
    (HERE / "loop_outputs.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
