"""Fault injection at scale: the figures of the README's "Reliability" section.

    python benchmarks/fault_injection.py --kills 20 --corruptions 10 --nans 5 \
        --out docs/reliability/fault_injection.json

Every trial drives the ``revflow`` CLI in subprocesses (``tests/_faults.py``) on the tiny SAC
run (gym:Pendulum-v1, fast preset, 400 env steps, checkpoints at 200 and 400):

- kill -9 once the run's log reaches a uniformly random env step (0: as soon as it has
  written its config), then ``revflow train --resume``: *divergent* if the final
  checkpoint's arrays or ``result.json`` differ from the uninterrupted run's;
- corrupt the newest checkpoint of a finished run (cycling through truncated data, flipped
  bytes, deleted or garbage metadata, emptied data files), then resume: *recovered* if it
  falls back to the older checkpoint and ends bit-exactly like the uninterrupted run;
- a non-finite first update (learning rates 1e30; warm-up and seed varied), then two
  unchanged resumes: *states lost* counts checkpoints (healthy or last good) that the failure
  or the resumes deleted or changed; each injection must also stop with one error line and
  have both resumes refused.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _faults as F


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--corruptions", type=int, default=10)
    parser.add_argument("--nans", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.time()
        reference = F.reference_run(tmp / "reference")
        full_run_s = time.time() - start
        want = F.fingerprint(reference)

        kills = []
        for i in range(args.kills):
            got = F.kill_trial(tmp / f"kill{i}", rng.randrange(0, F.STEPS))
            got["divergent"] = got["returncode"] != 0 or got["fingerprint"] != want
            got.pop("fingerprint")
            kills.append(got)
            print(f"kill {i}: at env step {got['logged_step_at_kill']} (checkpoints "
                  f"{got['checkpoints_at_kill']}), "
                  f"divergent={got['divergent']}", flush=True)  # fmt: skip

        corruptions = []
        for i in range(args.corruptions):
            how = F.CORRUPTIONS[i % len(F.CORRUPTIONS)]
            got = F.corruption_trial(reference, tmp / f"corrupt{i}", how)
            got["recovered"] = got["returncode"] == 0 and got["fingerprint"] == want
            got.pop("fingerprint")
            corruptions.append(got)
            print(f"corruption {i} ({how}): recovered={got['recovered']}", flush=True)

        nans = []
        for i in range(args.nans):
            got = F.nan_trial(tmp / f"nan{i}", warmup=rng.choice([100, 150, 200, 250, 300]), seed=i)
            got["stopped_with_one_line"] = got["returncode"] == 1 and len(got["stderr"]) == 1
            got["resumes_refused"] = got["resume_returncodes"] == [2, 2]
            nans.append(got)
            print(f"nan {i}: checkpoints {got['checkpoints']}, lost {got['states_lost']}, "
                  f"refused={got['resumes_refused']}", flush=True)  # fmt: skip

    summary = {
        "kills_tried": len(kills),
        "kills_divergent": sum(k["divergent"] for k in kills),
        "kills_after_run_finished": sum(k["finished_before_kill"] for k in kills),
        "corruptions_tried": len(corruptions),
        "corruptions_recovered": sum(c["recovered"] for c in corruptions),
        "nan_injections": len(nans),
        "nan_states_lost": sum(len(n["states_lost"]) for n in nans),
        "nan_stopped_with_one_line": sum(n["stopped_with_one_line"] for n in nans),
        "nan_resumes_refused": sum(n["resumes_refused"] for n in nans),
        "reference_run_s": round(full_run_s, 1),
        "wall_s": round(time.time() - t0, 1),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python "
        f"{platform.python_version()}",
        "command": " ".join(["python", "benchmarks/fault_injection.py", *sys.argv[1:]]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"summary": summary, "kills": kills, "corruptions": corruptions, "nans": nans}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
