"""Resumable result files of the sampling benchmarks (``revflow toy``, GMM-40).

A benchmark appends one JSON record per finished run to ``records.jsonl`` as soon as the run
ends, so an interrupted invocation loses at most the run in progress. Each record carries the
``setup`` it was made with (everything the result depends on besides the fields that name
the run); an invocation with the same output directory reuses the records whose name and
setup match what it would run, and trains only the rest. Records of another setup, and lines
that do not parse (a run killed mid-write), are dropped when the file is rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _canonical(setup: Any) -> str:
    return json.dumps(setup, sort_keys=True)


def run_key(name: tuple, setup: Any) -> tuple:
    """The key of one run: the values that name it (e.g. (method, seed)) and its setup."""
    return (*name, _canonical(setup))


def finished_records(path: Path, fields: tuple[str, ...]) -> dict[tuple, dict[str, Any]]:
    """The records of ``path`` that carry every field of ``fields`` and a ``setup``, keyed by
    :func:`run_key` of (their values of ``fields``, their setup); a later record of the same
    key replaces an earlier one."""
    done: dict[tuple, dict[str, Any]] = {}
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "setup" in rec and all(f in rec for f in fields):
            done[run_key(tuple(rec[f] for f in fields), rec["setup"])] = rec
    return done


def rewrite(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace ``path`` by ``records``, one per line, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(path)


def append(path: Path, record: dict[str, Any]) -> None:
    """Append one finished run's record (a whole line, flushed on close)."""
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
