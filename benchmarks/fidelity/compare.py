"""Differential check of revflow's agents against the authors' code (azizanlab/
ReverseFlowMatching), quantity by quantity on identical inputs.

    python benchmarks/fidelity/compare.py --official DIR --official-python PY [--store]

1. the revflow side draws the inputs (``revflow_side.make_inputs``) into ``--work``;
2. ``PY official_side.py`` (the authors' environment and checkout) computes their quantities
   and writes them with their initial parameters;
3. the revflow side maps those parameters onto revflow's networks and computes the same
   quantities (``--preset``: revflow's defaults, or ``revflow`` for its earlier variants);
4. ``check.py`` prints the table (agent, quantity, max relative difference, tolerance) and
   this script exits 1 if any quantity is outside its tolerance. The last line is
   ``fidelity: N of M quantities match``.

``--store`` copies the inputs and the official outputs to ``benchmarks/fidelity/data``
(``official.npz`` for rfm and sac, ``official_<agent>.npz`` for the others), where
``tests/test_fidelity_revflow_side.py`` checks the revflow side without the authors' checkout.
Agents that the authors' code has but revflow's side does not yet (``revflow_side.AGENTS``)
are listed with every quantity "not implemented", and the check fails until they exist.
README.md (this folder) says how to build the authors' environment.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import check  # noqa: E402
import revflow_side  # noqa: E402
import spec  # noqa: E402

DATA = HERE / "data"
#: Every agent the authors' code has; those without a revflow side (``revflow_side.AGENTS``)
#: are listed as not implemented, and the check fails until they are written.
AGENTS = tuple(spec.OFFICIAL_ALGOS)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def store(inputs: dict, official: dict, agents: tuple[str, ...]) -> None:
    """Write the inputs and the official outputs of ``agents`` into ``data/``; the stored
    arrays of the other agents (in a shared file) are kept."""
    DATA.mkdir(exist_ok=True)
    np.savez_compressed(DATA / "inputs.npz", **inputs)
    for name, arrays in spec.split_by_file(official).items():
        path = DATA / name
        kept: dict = {}
        if path.is_file():
            with np.load(path) as old:
                kept = {k: old[k] for k in old.files if spec.agent_of(k) not in agents}
        np.savez_compressed(path, **{**kept, **arrays})


def load_stored() -> dict[str, np.ndarray]:
    """The stored official outputs of every agent (all files of ``data/``)."""
    out: dict[str, np.ndarray] = {}
    for agent in AGENTS:
        path = DATA / spec.stored_file(agent)
        if path.is_file():
            with np.load(path) as data:
                out.update({k: data[k] for k in data.files})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="checkout of the authors' repository")
    parser.add_argument("--official-python", required=True, help="Python of their environment")
    parser.add_argument("--agents", default=",".join(AGENTS), help="comma-separated")
    parser.add_argument("--preset", default="reference", help="revflow config preset")
    parser.add_argument("--work", default=None, help="folder for the .npz files (default: temp)")
    parser.add_argument("--store", action="store_true", help="store inputs + official outputs")
    args = parser.parse_args(argv)

    official_dir = Path(args.official)
    if not (official_dir / "src" / "agent" / "rfm.py").is_file():
        _fail(f"--official {args.official!r} is not a checkout of the authors' code")
    if shutil.which(args.official_python) is None and not Path(args.official_python).is_file():
        _fail(f"--official-python {args.official_python!r} not found")
    agents = tuple(a for a in args.agents.split(",") if a)
    unknown = sorted(set(agents) - set(AGENTS))
    if unknown or not agents:
        _fail(f"--agents {args.agents!r}: unknown {unknown}; available: {', '.join(AGENTS)}")
    work = Path(args.work or tempfile.mkdtemp(prefix="fidelity-"))
    work.mkdir(parents=True, exist_ok=True)

    inputs = revflow_side.make_inputs()
    np.savez_compressed(work / "inputs.npz", **inputs)
    cmd = [
        args.official_python,
        str(HERE / "official_side.py"),
        "--official",
        str(official_dir.resolve()),
        "--inputs",
        str(work / "inputs.npz"),
        "--out",
        str(work / "official.npz"),
        "--agents",
        ",".join(agents),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-4000:], file=sys.stderr)
        _fail(f"the official side failed (exit {done.returncode}): {' '.join(cmd)}")
    with np.load(work / "official.npz") as data:
        official = {k: data[k] for k in data.files}
    implemented = tuple(a for a in agents if a in revflow_side.AGENTS)
    revflow = revflow_side.run(inputs, official, implemented, args.preset)
    np.savez_compressed(work / "revflow.npz", **revflow)
    rows = check.compare(official, revflow, agents, implemented)
    print(f"official side: jax {official['jax_version']}; revflow preset {args.preset!r}")
    print(check.table(rows))
    if args.store:
        store(inputs, official, agents)
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
