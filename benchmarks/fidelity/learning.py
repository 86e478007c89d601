"""Learning side by side: the same configuration trained by the authors' trainer and by revflow.

    python benchmarks/fidelity/learning.py --official DIR --official-python PY [--dry-run]
    revflow report benchmarks/results/fidelity --finished-only --final-window 3 --out docs/fidelity
    python benchmarks/fidelity/overlap.py docs/fidelity/final.csv   # the README's statement

    # on 2 cores: one process per side, each on its own core
    taskset -c 0 python benchmarks/fidelity/learning.py ... --implementation revflow &
    taskset -c 1 python benchmarks/fidelity/learning.py ... --implementation authors &

Every run is (implementation, agent, task, seed) for agents rfm, sac and qne (the authors'
maxentdp, the diffusion baseline), tasks dmc:cartpole-swingup and dmc:walker-walk, seeds
0, 1, 2, at a CPU budget: 30,000 env steps, 5,000 uniform-random warm-up steps, one update
per step, an evaluation of 25 episodes (fixed seeds 0..24) at step 0 and every 2,500 steps,
and the fast values both codes accept (8 particles, 5 flow steps, K = 16, networks 128 wide,
embeddings 64; for qne its ``fast`` preset's values: 8 evaluation candidates, 10 diffusion
steps, K = 32 candidates per noisy action, the a' log-likelihood from 10 samples x 10
steps). The authors' trainer is driven by ``--override`` flags (rfm with their
``configs/rfm.yaml``: gradient clipping 10, as their ``run.sh`` runs it; sac and maxentdp from
``configs/default.yaml`` alone) and revflow by ``revflow train`` with its defaults and flags
that set the same values.

A sitting of known length: ``--start-before HH:MM`` starts no run at or after that time (a run
cut at the end of a sitting is lost: the authors' trainer cannot resume and revflow's
checkpoints are not committed), ``--agents rfm sac`` takes only those agents' pending
runs (the short ones, to fill the end of a sitting), and ``--tasks`` only those tasks' (two
processes of one side, one core each, on disjoint tasks).

Resumable: a finished run (its ``result.json``) is skipped. An interrupted revflow run is
resumed by ``revflow train`` itself from its last checkpoint (one per evaluation interval);
an interrupted official run (their trainer cannot resume) is restarted. Both land in
revflow's run layout under ``--results`` (``<results>/<env>/<label>/seed<s>``, labels
``rfm`` / ``rfm-authors``, ``sac`` / ``sac-authors``, ``qne`` / ``qne-authors``): the official
run's ``metrics.jsonl`` is converted to ``eval.csv``, ``config.json`` and ``result.json`` so
that ``revflow report`` draws both implementations in one figure with IQM intervals.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from revflow.report import OTHER_IMPLEMENTATION

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "fidelity"
AGENTS = ("rfm", "sac", "qne")
#: revflow's name -> the authors' ``algo``.
OFFICIAL_ALGO = {"rfm": "rfm", "sac": "sac", "qne": "maxentdp"}
TASKS = ("dmc:cartpole-swingup", "dmc:walker-walk")
SEEDS = (0, 1, 2)
IMPLEMENTATIONS = ("revflow", "authors")
BUDGET = {"steps": 30_000, "warmup": 5_000, "eval_every": 2_500, "eval_episodes": 25}
FAST = {"particles": 8, "flow_steps": 5, "mc_samples": 16, "width": 128, "emb": 64}
#: qne's fast preset, and its a' log-likelihood estimate cut from 50 samples x 20 steps to
#: 10 x 10 on both sides (at 50 x 20 it is most of an update: 1.7 updates/s at the fast preset).
FAST_QNE = {
    "particles": 8, "diffusion_steps": 10, "mc_samples": 32, "log_prob_samples": 10,
    "log_prob_steps": 10,
}  # fmt: skip
#: Per agent, the same values as revflow ``--agent.<flag>`` options and as the authors'
#: override keys (sac: the widths alone).
AGENT_VALUES: dict[str, dict[str, dict[str, int]]] = {
    "rfm": {
        "revflow": {
            "num-particles": FAST["particles"], "num-flow-steps": FAST["flow_steps"],
            "num-reverse-samples": FAST["mc_samples"], "actor-hidden": FAST["width"],
            "embed-dim": FAST["emb"],
        },
        "authors": {
            "actor.emb_size": FAST["emb"], "rfm.num_particles_training": FAST["particles"],
            "rfm.num_particles_data": FAST["particles"],
            "rfm.num_particles_eval": FAST["particles"],
            "rfm.num_integration_steps": FAST["flow_steps"],
            "rfm.num_estimator_mc_samples": FAST["mc_samples"],
        },
    },
    "qne": {
        "revflow": {
            "num-particles": FAST_QNE["particles"],
            "num-flow-steps": FAST_QNE["diffusion_steps"],
            "num-reverse-samples": FAST_QNE["mc_samples"],
            "log-prob-samples": FAST_QNE["log_prob_samples"],
            "log-prob-steps": FAST_QNE["log_prob_steps"], "actor-hidden": FAST["width"],
            "embed-dim": FAST["emb"],
        },
        "authors": {
            "actor.emb_size": FAST["emb"],
            "maxentdp.eval_candidate_num": FAST_QNE["particles"],
            "maxentdp.num_diffusion_steps": FAST_QNE["diffusion_steps"],
            "maxentdp.score_samples_num": FAST_QNE["mc_samples"],
            "maxentdp.log_prob_samples": FAST_QNE["log_prob_samples"],
            "maxentdp.log_prob_steps": FAST_QNE["log_prob_steps"],
        },
    },
}  # fmt: skip


@dataclass(frozen=True)
class Run:
    implementation: str
    agent: str
    task: str
    seed: int

    @property
    def label(self) -> str:
        return self.agent if self.implementation == "revflow" else self.agent + OTHER_IMPLEMENTATION

    def run_dir(self, results: Path) -> Path:
        return results / self.task.replace(":", "_") / self.label / f"seed{self.seed}"


def plan(agents=AGENTS, tasks=TASKS, seeds=SEEDS) -> list[Run]:
    """Every run, interleaved so that an early stop leaves both implementations comparable."""
    return [
        Run(impl, agent, task, seed)
        for seed in seeds
        for task in tasks
        for agent in agents
        for impl in IMPLEMENTATIONS
    ]


def revflow_command(run: Run, results: Path) -> list[str]:
    b, f = BUDGET, FAST
    cmd = [
        sys.executable, "-m", "revflow.cli", "train",
        "--algo", run.agent, "--env", run.task, "--seed", str(run.seed),
        "--steps", str(b["steps"]), "--warmup-steps", str(b["warmup"]),
        "--eval-every", str(b["eval_every"]), "--eval-episodes", str(b["eval_episodes"]),
        "--run-dir", str(results), "--no-progress", "--no-tensorboard",
        "--checkpoint-every", str(b["eval_every"]),
        "--agent.critic-hidden", str(f["width"]), str(f["width"]),
    ]  # fmt: skip
    if run.agent == "sac":
        return [*cmd, "--agent.actor-hidden", str(f["width"]), str(f["width"])]
    for flag, value in AGENT_VALUES[run.agent]["revflow"].items():
        cmd += [f"--agent.{flag}", str(value)]
    return cmd


def official_command(run: Run, official: Path, python: str, log_dir: Path) -> list[str]:
    b, f = BUDGET, FAST
    overrides = {
        "algo": OFFICIAL_ALGO[run.agent],
        "seed": run.seed,
        "env.name": run.task.split(":", 1)[1],
        "trainer.max_steps": b["steps"],
        "trainer.replay_buffer_size": b["steps"],
        "trainer.start_training": b["warmup"],
        "trainer.eval_interval": b["eval_every"],
        "trainer.num_eval_envs": b["eval_episodes"],
        "actor.hidden_size": f["width"],
        "critic.hidden_size": f["width"],
        "logger.wandb_project": "none",
        "logger.save_agent": "false",
        "logger.log_dir": str(log_dir),
    }
    overrides.update(AGENT_VALUES.get(run.agent, {}).get("authors", {}))
    cmd = [python, str(official / "main.py")]
    config = official / "configs" / f"{OFFICIAL_ALGO[run.agent]}.yaml"
    if config.is_file():
        cmd += ["--config", str(config)]
    for key, value in overrides.items():
        cmd += ["--override", f"{key}={value}"]
    return cmd


def convert_official(run: Run, log_dir: Path, results: Path) -> Path:
    """The authors' ``metrics.jsonl`` (eval records) -> revflow's run files for the report."""
    metrics = sorted(log_dir.rglob("metrics.jsonl"))
    if len(metrics) != 1:
        raise RuntimeError(f"expected one metrics.jsonl under {log_dir}, found {len(metrics)}")
    evals = []
    for line in metrics[0].read_text().splitlines():
        record = json.loads(line)
        if "episode_reward" in record and "step" in record:
            evals.append((int(record["step"]), float(record["episode_reward"])))
    if not evals:
        raise RuntimeError(f"{metrics[0]} has no evaluation records")
    out = run.run_dir(results)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "eval.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "eval/return_mean", "eval/return_std"])
        writer.writerows([s, repr(r), "nan"] for s, r in evals)
    train = {"algo": run.label, "label": run.label, "env": run.task, "seed": run.seed}
    config = {"train": {**train, "steps": BUDGET["steps"]}, "agent": {}, "source": str(metrics[0])}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    step, ret = evals[-1]
    result = {
        "complete": True, **train, "env_steps": step, "updates": step - BUDGET["warmup"],
        "episodes": 0, "last_ckpt": step,
        "final_eval": {"step": step, "return_mean": ret, "return_std": float("nan")},
    }  # fmt: skip
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, type=Path)
    parser.add_argument("--official-python", required=True)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--dry-run", action="store_true", help="print the pending commands")
    parser.add_argument(
        "--implementation",
        choices=IMPLEMENTATIONS,
        help="run only this side's pending runs (two processes, one per side, one core each)",
    )
    parser.add_argument(
        "--agents",
        nargs="+",
        choices=AGENTS,
        help="run only these agents' pending runs (e.g. the short ones, to fill a sitting)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=TASKS,
        help="run only these tasks' pending runs (two processes of one side on disjoint tasks)",
    )
    parser.add_argument(
        "--start-before",
        metavar="HH:MM",
        help="start no run at or after this local time (a sitting of known length: a run "
        "started later could not finish, and the authors' trainer cannot resume)",
    )
    args = parser.parse_args(argv)
    deadline = None
    if args.start_before is not None:
        try:
            clock = datetime.strptime(args.start_before, "%H:%M").time()
        except ValueError:
            print(f"error: --start-before {args.start_before!r} is not HH:MM", file=sys.stderr)
            return 2
        deadline = datetime.combine(datetime.now().date(), clock)
    if not (args.official / "main.py").is_file():
        print(f"error: --official {str(args.official)!r} has no main.py", file=sys.stderr)
        return 2
    scratch = args.results / "_authors_logs"
    pending = [r for r in plan() if not (r.run_dir(args.results) / "result.json").is_file()]
    print(f"{len(plan()) - len(pending)} of {len(plan())} runs done; {len(pending)} to go")
    if args.implementation:
        pending = [r for r in pending if r.implementation == args.implementation]
    if args.agents:
        pending = [r for r in pending if r.agent in args.agents]
    if args.tasks:
        pending = [r for r in pending if r.task in args.tasks]
    for run in pending:
        if deadline is not None and not args.dry_run and datetime.now() >= deadline:
            print(f"--start-before {args.start_before}: {run.label} {run.task} seed {run.seed} "
                  "and the rest left for a later sitting")  # fmt: skip
            break
        log_dir = scratch / run.task.replace(":", "_") / run.label / f"seed{run.seed}"
        # a started run (its config.json) resumes, from its last checkpoint or from step 0
        if (
            run.implementation == "revflow"
            and (run.run_dir(args.results) / "config.json").is_file()
        ):
            cmd = [sys.executable, "-m", "revflow.cli", "train", "--resume"]
            cmd.append(str(run.run_dir(args.results)))
        elif run.implementation == "revflow":
            cmd = revflow_command(run, args.results)
        else:
            cmd = official_command(run, args.official, args.official_python, log_dir)
        if args.dry_run:
            print(" ".join(cmd))
            continue
        cwd = args.official if run.implementation == "authors" else ROOT
        if run.implementation == "authors" and log_dir.exists():
            for old in sorted(log_dir.rglob("metrics.jsonl")):  # an interrupted run restarts
                old.unlink()
        done = subprocess.run(cmd, cwd=cwd)
        if done.returncode != 0:
            print(f"error: run failed (exit {done.returncode}): {' '.join(cmd)}", file=sys.stderr)
            return 1
        if run.implementation == "authors":
            convert_official(run, log_dir, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
