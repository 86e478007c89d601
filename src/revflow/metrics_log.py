"""Run logging: a live progress bar, CSV files, TensorBoard and (optionally) Weights & Biases.

Every metric that the engine writes is named in :data:`ENGINE_METRICS` or, for an agent's
update diagnostics, in the agent's ``METRICS`` dict under the ``losses/`` prefix (CleanRL
naming). :func:`metric_docs` merges both into the one documented list (the README prints it).

Files in a run directory:

- ``metrics.csv``: one row per log event, columns ``step`` (env steps) and every documented
  training metric name; a row leaves the metrics it does not carry empty.
- ``eval.csv``: one row per evaluation, columns ``step`` and the ``eval/...`` metrics.
- ``events.out.tfevents.*``: TensorBoard scalars under the same names.

On resume (``start_step > 0``) rows logged after the checkpoint by the interrupted process are
dropped from the CSV files and TensorBoard is told to purge them, so a resumed run's logs read
like the uninterrupted run's.
"""

from __future__ import annotations

import csv
import os
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ENGINE_METRICS", "EVAL_METRICS", "RunLogger", "agent_metric_name", "metric_docs"]

#: Metrics the engine itself logs (name -> meaning), CleanRL style.
ENGINE_METRICS: dict[str, str] = {
    "charts/episodic_return": "undiscounted return of a finished training episode",
    "charts/episode_length": "length in env steps of a finished training episode",
    "charts/sps": "env steps per second since the previous log event (updates included)",
    "charts/updates": "gradient updates applied so far",
}
#: Evaluation metrics (``eval.csv``), written every ``eval_every`` env steps.
EVAL_METRICS: dict[str, str] = {
    "eval/return_mean": "mean undiscounted return over the evaluation episodes",
    "eval/return_std": "standard deviation of the evaluation returns",
}


def agent_metric_name(name: str) -> str:
    """Name under which an agent metric is logged: ``critic_loss`` -> ``losses/critic_loss``."""
    return name if "/" in name else f"losses/{name}"


def metric_docs(agent_metrics: Mapping[str, str] | None = None) -> dict[str, str]:
    """All documented metric names -> meaning: engine, evaluation and the agent's."""
    docs = dict(ENGINE_METRICS)
    docs.update(EVAL_METRICS)
    for name, doc in (agent_metrics or {}).items():
        docs[agent_metric_name(name)] = doc
    return docs


def _truncate_csv(path: Path, max_step: int) -> None:
    """Keep the header and the rows with ``step <= max_step`` (atomic rewrite)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]]
    for row in rows[1:]:
        try:
            if row and int(row[0]) <= max_step:
                kept.append(row)
        except ValueError:
            continue  # a partly written last line of a killed process
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, path)


class _CsvTable:
    """Append-only CSV with a fixed header; flushed on every row so a kill loses nothing."""

    def __init__(self, path: Path, columns: list[str], start_step: int):
        self.columns = columns
        header = ["step", *columns]
        if start_step > 0 and path.exists():
            _truncate_csv(path, start_step)
            with path.open(newline="") as f:
                existing = next(csv.reader(f), None)
            if existing != header:
                raise ValueError(
                    f"{path} has columns {existing}, expected {header}; was the run's "
                    "algorithm or revflow version changed?"
                )
            self._file = path.open("a", newline="")
            self._writer = csv.writer(self._file)
        else:
            self._file = path.open("w", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(header)
            self._file.flush()

    def write(self, step: int, values: Mapping[str, float]) -> None:
        unknown = sorted(set(values) - set(self.columns))
        if unknown:
            raise KeyError(f"undocumented metric(s) {unknown}; document them in METRICS")
        row = [step] + [
            "" if (v := values.get(c)) is None else repr(float(v)) for c in self.columns
        ]
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class RunLogger:
    """Fan-out of metrics to CSV, TensorBoard, W&B and a rich progress bar.

    ``agent_metrics`` is the agent's ``METRICS`` dict; every logged name must be documented
    (unknown names raise ``KeyError``, so the documentation cannot silently fall behind).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        total_steps: int,
        agent_metrics: Mapping[str, str],
        *,
        start_step: int = 0,
        tensorboard: bool = True,
        csv_files: bool = True,
        wandb: bool = False,
        wandb_project: str = "revflow",
        run_name: str | None = None,
        config: Mapping[str, Any] | None = None,
        progress: bool = True,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.total_steps = int(total_steps)
        self.docs = metric_docs(agent_metrics)
        train_cols = [n for n in self.docs if n not in EVAL_METRICS]
        self._csv = (
            {
                "train": _CsvTable(self.run_dir / "metrics.csv", train_cols, start_step),
                "eval": _CsvTable(self.run_dir / "eval.csv", list(EVAL_METRICS), start_step),
            }
            if csv_files
            else {}
        )
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(
                logdir=str(self.run_dir),
                purge_step=start_step + 1 if start_step > 0 else None,
                flush_secs=30,
            )
        self._wandb = None
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError as err:
                raise ImportError(
                    "Weights & Biases logging was requested but wandb is not installed: "
                    "pip install wandb (or turn wandb off)"
                ) from err
            self._wandb = wandb_module.init(
                project=wandb_project,
                name=run_name or self.run_dir.name,
                dir=str(self.run_dir),
                config=dict(config or {}),
                resume="allow",
            )
        self._returns: deque[float] = deque(maxlen=10)
        self._progress = None
        self._task = None
        self._start_step = int(start_step)
        self._t0 = time.perf_counter()
        if progress:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[sps]:>7.1f} steps/s"),
                TextColumn("return {task.fields[ret]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            self._progress.start()
            self._task = self._progress.add_task(
                run_name or "train",
                total=self.total_steps,
                completed=start_step,
                sps=0.0,
                ret="n/a",
            )

    # -- writing ----------------------------------------------------------------------------

    def _emit(self, table: str, step: int, values: Mapping[str, float]) -> None:
        if table in self._csv:
            self._csv[table].write(step, values)
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(name, float(value), step)
        if self._wandb is not None:
            self._wandb.log(dict(values), step=step)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """One training log event: engine metrics and (unprefixed or prefixed) agent metrics."""
        values = {agent_metric_name(k) if k not in self.docs else k: v for k, v in metrics.items()}
        self._emit("train", step, values)

    def log_episode(self, step: int, episodic_return: float, length: int) -> None:
        self._returns.append(float(episodic_return))
        self._emit(
            "train",
            step,
            {"charts/episodic_return": episodic_return, "charts/episode_length": length},
        )

    def log_eval(self, step: int, mean: float, std: float) -> None:
        self._emit("eval", step, {"eval/return_mean": mean, "eval/return_std": std})
        if self._progress is not None:
            self._progress.console.print(f"step {step}: eval return {mean:.2f} ± {std:.2f}")

    def progress(self, step: int) -> None:
        """Advance the progress bar to ``step`` env steps."""
        if self._progress is None:
            return
        elapsed = time.perf_counter() - self._t0
        sps = (step - self._start_step) / elapsed if elapsed > 0 else 0.0
        ret = f"{sum(self._returns) / len(self._returns):8.2f}" if self._returns else "n/a"
        self._progress.update(self._task, completed=step, sps=sps, ret=ret)

    def print(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        for table in self._csv.values():
            table.close()
        self._csv = {}
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
