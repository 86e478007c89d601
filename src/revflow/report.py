"""``revflow report``: run directories -> learning curves, final-performance tables, aggregates.

::

    revflow report runs/ --out reports/main [--final-window 3] \
        [--normalize-ref gym:Pendulum-v1=-1600:0]

Reads the plain files of the run directories that :mod:`revflow.engine` writes
(``<root>/<env>/<label>/seed<N>/``: ``config.json``, ``eval.csv`` and, for a finished run,
``result.json``); nothing here imports JAX or needs a checkpoint, so the results store stays
readable with ``csv`` + ``json`` alone. Runs are grouped by (environment, label); the label is
``train.label`` of the config, or ``train.algo`` when it has none.

Statistics (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the Statistical
Precipice", NeurIPS; computed with their ``rliable`` library):

- **final score** of a seed: the mean of its last ``final_window`` evaluation returns
  (``eval/return_mean`` of ``eval.csv``); per (env, label) the table gives the mean and the
  sample standard deviation (ddof = 1; undefined for one seed) of the final scores over seeds;
- **IQM** (interquartile mean): the mean of the middle 50 % of the scores (the 25 % trimmed
  mean, ``rliable.metrics.aggregate_iqm``); less sensitive to one outlying seed than the mean
  and less statistically wasteful than the median;
- **95 % confidence intervals**: percentile intervals of a *stratified bootstrap*
  (``rliable.library.get_interval_estimates``): the runs (seeds) are resampled with
  replacement within each task, tasks are kept fixed, ``bootstrap_reps`` times. With one seed
  the interval collapses onto the point estimate (reported, flagged in the warnings);
- **normalised score** of a task: ``(x - LOW) / (HIGH - LOW)``. DeepMind Control returns lie
  in [0, 1000], so ``dmc:`` tasks use LOW = 0, HIGH = 1000; other environments need
  ``--normalize-ref ENV=LOW:HIGH`` and are otherwise left out of the aggregate (with a warning);
- **aggregate** over tasks, per label: the IQM of all (seed, task) normalised final scores and
  the mean normalised score (mean over tasks of the per-task mean over seeds, rliable's
  ``aggregate_mean``), each with a stratified-bootstrap 95 % CI over seeds within tasks. A task
  with more seeds contributes more scores to the IQM;
- **learning-curve band**: mean ± one standard error of the mean over the seeds evaluated at
  that step (std with ddof = 1 divided by sqrt(n)); no band where only one seed has data.
  Curves run up to the last step any seed reached, averaging the seeds present at each step;
  shorter runs and missing seeds are named in the warnings. A label ``X-authors`` (another
  implementation of ``X``, as ``benchmarks/fidelity`` names the authors' runs) is drawn
  dashed in ``X``'s colour.

Outputs in ``out``: ``curves.png``, ``aggregate.png``, ``final.csv``, ``aggregate.csv``,
``curves.csv`` and ``report.md`` (which embeds the PNGs by relative path). Every problem that
does not stop the report is a :class:`ReportWarning` (``warnings.warn``) and a line of
``report.md``; bad input raises :class:`ReportError` before any statistics are computed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tyro

from revflow.run_key import RunKey, sanitize

__all__ = [
    "CurveStats",
    "GroupStats",
    "ReportArgs",
    "ReportError",
    "ReportWarning",
    "Run",
    "discover_runs",
    "parse_normalize_refs",
    "read_run_curve",
    "run_report",
]

#: Files of a run directory (the names :mod:`revflow.engine` writes).
CONFIG_FILE = "config.json"
EVAL_FILE = "eval.csv"
RESULT_FILE = "result.json"
STEP_COLUMN = "step"
RETURN_COLUMN = "eval/return_mean"
#: Return range of every DeepMind Control task (per-step rewards in [0, 1], 1000 steps).
DMC_PREFIX = "dmc:"
DMC_RANGE = (0.0, 1000.0)
CONFIDENCE = 0.95


class ReportError(ValueError):
    """Bad input to the report (no runs, an unreadable file, a bad option)."""


class ReportWarning(UserWarning):
    """A problem the report works around (shorter runs, missing seeds, no normalisation)."""


@dataclasses.dataclass(frozen=True)
class ReportArgs:
    """Learning curves, final-performance tables (mean, std, IQM with 95 % stratified-bootstrap
    CIs) and normalised aggregate scores of training runs."""

    #: Run directories, or any directory above them (searched recursively for config.json).
    runs: tyro.conf.Positional[Annotated[tuple[str, ...], tyro.conf.arg(metavar="RUNS...")]]
    #: Output directory: curves.png, aggregate.png, final.csv, aggregate.csv, curves.csv and
    #: report.md.
    out: str
    #: Final score of a seed: the mean of its last this many evaluations.
    final_window: int = 1
    #: Score range of a non-DMC environment for the normalised score, ENV=LOW:HIGH (score ->
    #: (x - LOW) / (HIGH - LOW)); dmc: environments use 0:1000 unless given here.
    normalize_ref: tuple[str, ...] = ()
    #: Bootstrap resamples of every confidence interval.
    bootstrap_reps: int = 2000
    #: Seed of the bootstrap resampling (the same seed gives the same intervals).
    seed: int = 0
    #: Leave out runs without result.json (e.g. those a sweep is still running), so a
    #: report of a sweep in progress compares finished runs only; each is named in the notes.
    finished_only: bool = False


@dataclasses.dataclass(frozen=True)
class Run(RunKey):
    """One run directory: its identity (:class:`revflow.run_key.RunKey`), budget and
    evaluation curve."""

    path: Path
    #: ``train.steps`` of the config (None when absent).
    budget: int | None
    #: The run wrote ``result.json`` (it finished all its steps).
    complete: bool
    #: Evaluation steps (strictly increasing) and mean evaluation returns.
    steps: np.ndarray
    returns: np.ndarray


@dataclasses.dataclass(frozen=True)
class CurveStats:
    """The learning curve of one (env, label): per evaluation step, over the seeds present."""

    steps: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    n_seeds: np.ndarray


@dataclasses.dataclass(frozen=True)
class GroupStats:
    """Final performance of one (env, label) over its seeds."""

    env: str
    label: str
    seeds: tuple[int, ...]
    final_scores: np.ndarray
    final_step_min: int
    final_step_max: int
    budget: int | None
    n_complete: int
    mean: float
    std: float
    iqm: float = math.nan
    iqm_lower: float = math.nan
    iqm_upper: float = math.nan


# --------------------------------------------------------------------------------------------
# reading the store
# --------------------------------------------------------------------------------------------


def parse_normalize_refs(specs: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``["ENV=LOW:HIGH", ...]`` -> ``{ENV: (LOW, HIGH)}``; :class:`ReportError` if malformed."""
    refs: dict[str, tuple[float, float]] = {}
    for spec in specs:
        env, eq, span = spec.rpartition("=")
        low_text, colon, high_text = span.partition(":")
        try:
            if not (eq and env and colon):
                raise ValueError
            low, high = float(low_text), float(high_text)
        except ValueError:
            raise ReportError(
                f"--normalize-ref {spec!r} is malformed; expected ENV=LOW:HIGH, "
                "e.g. gym:Pendulum-v1=-1600:0"
            ) from None
        if not (math.isfinite(low) and math.isfinite(high)) or low == high:
            raise ReportError(f"--normalize-ref {spec!r}: LOW and HIGH must be finite and differ")
        if env in refs:
            raise ReportError(f"--normalize-ref gives {env!r} twice")
        refs[env] = (low, high)
    return refs


def discover_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Every run directory (one holding ``config.json``) at or below each of ``paths``.

    The search does not descend into a run directory (its ``checkpoints/`` are skipped).
    """
    missing = [str(p) for p in paths if not Path(p).is_dir()]
    if missing:
        raise ReportError(f"not a directory: {', '.join(missing)}")
    found: dict[Path, Path] = {}
    for root in paths:
        for dirpath, dirnames, filenames in os.walk(root):
            if CONFIG_FILE in filenames:
                found.setdefault(Path(dirpath).resolve(), Path(dirpath))
                dirnames[:] = []
            else:
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    if not found:
        raise ReportError(
            f"no run directories (holding {CONFIG_FILE}) under {', '.join(map(str, paths))}"
        )
    return sorted(found.values())


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{path} is unreadable or not JSON: {err}") from None
    train = config.get("train") if isinstance(config, dict) else None
    if not isinstance(train, dict):
        raise ReportError(f"{path} has no 'train' section; is it a revflow run's config?")
    for key, kind in (("algo", str), ("env", str), ("seed", int)):
        value = train.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or value == "":
            raise ReportError(f"{path}: train.{key} is missing or not a {kind.__name__}")
    label = train.get("label")
    if label is not None and (not isinstance(label, str) or not label):
        raise ReportError(f"{path}: train.label must be a non-empty string or null")
    budget = train.get("steps")
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool)):
        raise ReportError(f"{path}: train.steps is not an integer")
    return train


def _read_eval(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Steps and mean returns of ``eval.csv``; a partly written last line is dropped (noted)."""
    notes: list[str] = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return np.zeros(0, np.int64), np.zeros(0), notes
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"{path} is unreadable: {err}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0), notes
    header = rows[0]
    if STEP_COLUMN not in header or RETURN_COLUMN not in header:
        raise ReportError(
            f"{path} is corrupt: header {header} lacks {STEP_COLUMN!r} or {RETURN_COLUMN!r}"
        )
    si, ri = header.index(STEP_COLUMN), header.index(RETURN_COLUMN)
    body = [(i, row) for i, row in enumerate(rows[1:], start=2) if any(c.strip() for c in row)]
    steps: list[int] = []
    returns: list[float] = []
    for k, (line, row) in enumerate(body):
        # The engine ends every row with a newline: an unterminated short last line is a row
        # that a killed process left half written (its return may be cut short).
        partial = k == len(body) - 1 and not text.endswith("\n") and len(row) < len(header)
        try:
            if partial:
                raise ValueError
            step, value = int(row[si]), float(row[ri])
            if not math.isfinite(value):
                raise ValueError
        except (ValueError, IndexError):
            if k == len(body) - 1 and not text.endswith("\n"):
                notes.append(f"{path}: partly written last line {line} ignored")
                continue
            raise ReportError(
                f"{path} is corrupt: line {line} {row} is not a step and a finite return"
            ) from None
        if steps and step <= steps[-1]:
            raise ReportError(f"{path} is corrupt: step {step} on line {line} does not increase")
        steps.append(step)
        returns.append(value)
    return np.asarray(steps, np.int64), np.asarray(returns, np.float64), notes


def _finished(path: Path, notes: list[str]) -> bool:
    """Whether ``path`` holds a ``result.json`` that parses and says ``complete: true``; a
    corrupt one is noted, and its run counts as unfinished."""
    result = path / RESULT_FILE
    if not result.is_file():
        return False
    try:
        data = json.loads(result.read_text())
    except (OSError, ValueError) as err:
        notes.append(f"{result} is corrupt ({type(err).__name__}); its run counts as unfinished")
        return False
    if not (isinstance(data, dict) and data.get("complete") is True):
        notes.append(f"{result} does not say complete: true; its run counts as unfinished")
        return False
    return True


def read_run_curve(path: str | Path) -> tuple[Run, list[str]]:
    """One run directory's identity and evaluation curve, read from its files without JAX
    (not :func:`revflow.rundir.load_run`, which builds its configs) -> (:class:`Run`, notes);
    :class:`ReportError` names a corrupt file."""
    path = Path(path)
    train = _read_config(path / CONFIG_FILE)
    steps, returns, notes = _read_eval(path / EVAL_FILE)
    complete = _finished(path, notes)
    run = Run(
        path=path,
        env=train["env"],
        algo=train["algo"],
        label=train.get("label") or train["algo"],
        seed=train["seed"],
        budget=train.get("steps"),
        complete=complete,
        steps=steps,
        returns=returns,
    )
    return run, notes


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------


def curve_stats(runs: Sequence[Run]) -> CurveStats:
    """Mean ± one standard error over the seeds evaluated at each step of the union grid."""
    grid = np.unique(np.concatenate([r.steps for r in runs]))
    values = np.full((len(runs), grid.size), np.nan)
    for i, run in enumerate(runs):
        values[i, np.searchsorted(grid, run.steps)] = run.returns
    present = ~np.isnan(values)
    n = present.sum(0)
    filled = np.where(present, values, 0.0)
    mean = filled.sum(0) / n
    sq = np.where(present, (values - mean) ** 2, 0.0).sum(0)
    se = np.where(n > 1, np.sqrt(sq / np.maximum(n - 1, 1) / n), 0.0)
    return CurveStats(grid, mean, mean - se, mean + se, n)


def final_score(run: Run, window: int) -> float:
    """Mean of the last ``window`` evaluation returns of ``run``."""
    return float(run.returns[-window:].mean())


@contextlib.contextmanager
def _seeded_numpy(seed: int) -> Iterator[None]:
    """rliable's bootstrap draws from NumPy's global generator: seed it, restore it after."""
    state = np.random.get_state()  # noqa: NPY002 (rliable uses the legacy global generator)
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _interval_estimates(
    scores: dict[str, list[np.ndarray]],
    func: Callable[..., np.ndarray],
    reps: int,
    seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Point estimates and percentile 95 % CIs of a stratified bootstrap (rliable).

    ``scores[key]`` is one array of per-seed scores per task; each task's seeds are resampled
    with replacement independently (tasks may have different numbers of seeds).
    """
    from rliable import library

    with _seeded_numpy(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # percentiles of constant resamples
        return library.get_interval_estimates(
            scores, func, reps=reps, confidence_interval_size=CONFIDENCE
        )


def _iqm(*tasks: np.ndarray) -> np.ndarray:
    from rliable import metrics

    return np.array([metrics.aggregate_iqm(np.concatenate(tasks))])


def _iqm_and_mean(*tasks: np.ndarray) -> np.ndarray:
    """[IQM of all (seed, task) scores, mean over tasks of the per-task mean over seeds]."""
    from rliable import metrics

    pooled = np.concatenate(tasks)
    return np.array([metrics.aggregate_iqm(pooled), float(np.mean([t.mean() for t in tasks]))])


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------


def _validate(args: ReportArgs) -> dict[str, tuple[float, float]]:
    if not args.runs:
        raise ReportError("no run directories given")
    if args.final_window < 1:
        raise ReportError(f"--final-window must be >= 1, got {args.final_window}")
    if args.bootstrap_reps < 1:
        raise ReportError(f"--bootstrap-reps must be >= 1, got {args.bootstrap_reps}")
    return parse_normalize_refs(args.normalize_ref)


def _load_all(paths: Sequence[str], finished_only: bool = False) -> tuple[list[Run], list[str]]:
    notes: list[str] = []
    runs: list[Run] = []
    seen: dict[tuple[str, str, int], Path] = {}
    for run_dir in discover_runs(paths):
        run, run_notes = read_run_curve(run_dir)
        notes += run_notes
        key = (run.env, run.label, run.seed)
        if key in seen:
            raise ReportError(
                f"two runs of {run.name}: {seen[key]} and {run_dir}; pass only one of them"
            )
        seen[key] = run_dir
        if finished_only and not run.complete:
            notes.append(f"{run.name} ({run_dir}) is unfinished; left out (--finished-only)")
            continue
        if run.steps.size == 0:
            notes.append(f"{run.name} ({run_dir}) has no evaluations yet; left out")
            continue
        runs.append(run)
    if not runs:
        raise ReportError(f"no run under {', '.join(paths)} has an evaluation in {EVAL_FILE}")
    return runs, notes


def _consistency_notes(
    groups: dict[tuple[str, str], list[Run]], envs: list[str], labels: list[str], window: int
) -> list[str]:
    notes: list[str] = []
    for (env, label), runs in groups.items():
        last = max(int(r.steps[-1]) for r in runs)
        short = [r for r in runs if int(r.steps[-1]) < last]
        if short:
            names = ", ".join(f"seed {r.seed} (step {int(r.steps[-1])})" for r in short)
            notes.append(
                f"{env} / {label}: shorter runs {names}; others reach step {last}. The curve "
                "averages the seeds present at each step; final scores use each seed's last "
                "evaluations"
            )
        grid = np.unique(np.concatenate([r.steps for r in runs]))
        gaps = [r for r in runs if np.setdiff1d(grid[grid <= r.steps[-1]], r.steps).size]
        if gaps:
            notes.append(
                f"{env} / {label}: evaluation steps differ between seeds "
                f"({', '.join(f'seed {r.seed}' for r in gaps)} miss some); the curve averages "
                "fewer seeds at those steps"
            )
        few = [r for r in runs if r.steps.size < window]
        if few:
            notes.append(
                f"{env} / {label}: {', '.join(f'seed {r.seed}' for r in few)} "
                f"{'has' if len(few) == 1 else 'have'} fewer than --final-window {window} "
                "evaluations; final score over those present"
            )
        if len(runs) == 1:
            notes.append(f"{env} / {label}: one seed; its IQM confidence interval is degenerate")
    for label in labels:
        seeds_by_env = {env: {r.seed for r in groups.get((env, label), [])} for env in envs}
        all_seeds = set().union(*seeds_by_env.values())
        for env in envs:
            have = seeds_by_env[env]
            if not have:
                notes.append(f"{label} has no runs on {env}")
            elif have != all_seeds:
                lacking = ", ".join(str(s) for s in sorted(all_seeds - have))
                notes.append(
                    f"{env} / {label}: {len(have)} seeds, missing seed {lacking} "
                    f"(present on other tasks)"
                )
    unfinished = [r.name for g in groups.values() for r in g if not r.complete]
    if unfinished:
        notes.append(f"unfinished runs (no {RESULT_FILE}): {'; '.join(unfinished)}")
    return notes


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


#: A label ``X`` + this suffix is another implementation of ``X`` (benchmarks/fidelity names
#: the authors' runs so): drawn in ``X``'s colour, dashed, when ``X`` is also in the report.
OTHER_IMPLEMENTATION = "-authors"


def _base_label(label: str, labels: list[str]) -> str:
    base = label.removesuffix(OTHER_IMPLEMENTATION)
    return base if base != label and base in labels else label


def _colours(labels: list[str]) -> dict[str, Any]:
    """One colour per label; ``X-authors`` shares ``X``'s (see :data:`OTHER_IMPLEMENTATION`)."""
    import matplotlib.pyplot as plt

    bases = list(dict.fromkeys(_base_label(label, labels) for label in labels))
    cmap = plt.get_cmap("tab10" if len(bases) <= 10 else "tab20")
    colour = {base: cmap(i % cmap.N) for i, base in enumerate(bases)}
    return {label: colour[_base_label(label, labels)] for label in labels}


def _line_style(label: str, labels: list[str]) -> str:
    return "--" if _base_label(label, labels) != label else "-"


def _plot_curves(
    path: Path,
    curves: dict[tuple[str, str], CurveStats],
    envs: list[str],
    labels: list[str],
    colours: dict[str, Any],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(3, len(envs))
    nrows = math.ceil(len(envs) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows + 0.6), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for ax, env in zip(axes.flat, envs, strict=False):
        for label in labels:
            c = curves.get((env, label))
            if c is None:
                continue
            style = _line_style(label, labels)
            ax.plot(c.steps, c.mean, color=colours[label], ls=style, label=label, lw=1.6)
            ax.fill_between(c.steps, c.lower, c.upper, color=colours[label], alpha=0.2, lw=0)
        ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(envs) :]:
        ax.set_visible(False)
    handles = [
        plt.Line2D([], [], color=colours[lb], ls=_line_style(lb, labels), lw=2) for lb in labels
    ]
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4))
    fig.suptitle("mean over seeds ± one standard error")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_aggregate(
    path: Path, rows: list[dict[str, Any]], colours: dict[str, Any], reps: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, 2, figsize=(8.5, 1.5 + 0.45 * len(rows)), sharey=True, layout="constrained"
    )
    ys = np.arange(len(rows))[::-1]
    for ax, metric, title in zip(axes, ("iqm", "mean"), ("IQM", "mean"), strict=True):
        for y, row in zip(ys, rows, strict=True):
            lo, hi = row[f"{metric}_lower"], row[f"{metric}_upper"]
            ax.barh(y, max(hi - lo, 1e-3), left=lo, height=0.6, color=colours[row["label"]],
                    alpha=0.75)  # fmt: skip
            ax.plot([row[metric]] * 2, [y - 0.3, y + 0.3], color="black", lw=2)
        ax.use_sticky_edges = False  # bars start at the CI bound, not at a baseline
        ax.margins(x=0.15, y=0.1)
        ax.set_title(f"{title} normalised score")
        ax.set_xlabel("normalised score")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, [row["label"] for row in rows])
    fig.suptitle(f"95 % stratified-bootstrap CIs ({reps} resamples)", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def run_report(args: ReportArgs) -> Path:
    """Write the report of ``args.runs`` into ``args.out``; returns the path of report.md.

    Raises :class:`ReportError` for bad input before computing anything; emits a
    :class:`ReportWarning` for each problem it works around (also listed in report.md).
    """
    refs = _validate(args)
    runs, notes = _load_all(args.runs, args.finished_only)

    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.env, run.label)].append(run)
    for group in groups.values():
        group.sort(key=lambda r: r.seed)
    envs = sorted({r.env for r in runs})
    labels = sorted({r.label for r in runs})
    notes += _consistency_notes(groups, envs, labels, args.final_window)

    def ref_for(env: str) -> tuple[float, float] | None:
        for key in (env, sanitize(env)):
            if key in refs:
                return refs[key]
        return DMC_RANGE if env.startswith(DMC_PREFIX) else None

    unknown_refs = sorted(k for k in refs if all(k not in (e, sanitize(e)) for e in envs))
    if unknown_refs:
        notes.append(f"--normalize-ref for environments without runs: {', '.join(unknown_refs)}")
    unnormalised = [env for env in envs if ref_for(env) is None]
    if unnormalised:
        notes.append(
            f"left out of the aggregate (no normalisation range; pass --normalize-ref "
            f"ENV=LOW:HIGH): {', '.join(unnormalised)}"
        )
    for note in notes:
        warnings.warn(note, ReportWarning, stacklevel=2)

    # ---- statistics --------------------------------------------------------------------
    keys = sorted(groups)
    final = {
        key: np.array([final_score(r, args.final_window) for r in groups[key]]) for key in keys
    }
    points, intervals = _interval_estimates(
        {f"{i}": [final[key]] for i, key in enumerate(keys)}, _iqm, args.bootstrap_reps, args.seed
    )
    stats: list[GroupStats] = []
    for i, key in enumerate(keys):
        scores, group = final[key], groups[key]
        budgets = [r.budget for r in group if r.budget is not None]
        stats.append(
            GroupStats(
                env=key[0],
                label=key[1],
                seeds=tuple(r.seed for r in group),
                final_scores=scores,
                final_step_min=min(int(r.steps[-1]) for r in group),
                final_step_max=max(int(r.steps[-1]) for r in group),
                budget=max(budgets) if budgets else None,
                n_complete=sum(r.complete for r in group),
                mean=float(scores.mean()),
                std=float(scores.std(ddof=1)) if scores.size > 1 else math.nan,
                iqm=float(points[f"{i}"][0]),
                iqm_lower=float(intervals[f"{i}"][0, 0]),
                iqm_upper=float(intervals[f"{i}"][1, 0]),
            )
        )
    curves = {key: curve_stats(groups[key]) for key in keys}

    normalised: dict[str, list[np.ndarray]] = defaultdict(list)
    tasks_of: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        ref = ref_for(key[0])
        if ref is not None:
            normalised[key[1]].append((final[key] - ref[0]) / (ref[1] - ref[0]))
            tasks_of[key[1]].append(key[0])
    aggregate_rows: list[dict[str, Any]] = []
    if normalised:
        agg_points, agg_intervals = _interval_estimates(
            dict(normalised), _iqm_and_mean, args.bootstrap_reps, args.seed
        )
        n_tasks = len({t for ts in tasks_of.values() for t in ts})
        for label in labels:
            if label not in normalised:
                continue
            p, ci = agg_points[label], agg_intervals[label]
            aggregate_rows.append(
                {
                    "label": label,
                    "n_tasks": len(tasks_of[label]),
                    "tasks": " ".join(tasks_of[label]),
                    "n_scores": int(sum(x.size for x in normalised[label])),
                    "iqm": float(p[0]),
                    "iqm_lower": float(ci[0, 0]),
                    "iqm_upper": float(ci[1, 0]),
                    "mean": float(p[1]),
                    "mean_lower": float(ci[0, 1]),
                    "mean_upper": float(ci[1, 1]),
                }
            )
            if len(tasks_of[label]) < n_tasks:
                note = (
                    f"aggregate of {label} covers {len(tasks_of[label])} of {n_tasks} "
                    "normalised tasks; not comparable with the other labels"
                )
                notes.append(note)
                warnings.warn(note, ReportWarning, stacklevel=2)

    # ---- outputs -----------------------------------------------------------------------
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    colours = _colours(labels)
    _plot_curves(out / "curves.png", curves, envs, labels, colours)
    if aggregate_rows:
        _plot_aggregate(out / "aggregate.png", aggregate_rows, colours, args.bootstrap_reps)

    _write_csv(
        out / "final.csv",
        ["env", "label", "n_seeds", "seeds", "final_step_min", "final_step_max", "budget",
         "n_complete", "final_window", "mean", "std", "iqm", "iqm_lower", "iqm_upper"],
        [[s.env, s.label, len(s.seeds), " ".join(map(str, s.seeds)), s.final_step_min,
          s.final_step_max, "" if s.budget is None else s.budget, s.n_complete,
          args.final_window, repr(s.mean), repr(s.std), repr(s.iqm), repr(s.iqm_lower),
          repr(s.iqm_upper)] for s in stats],
    )  # fmt: skip
    agg_columns = ["label", "n_tasks", "tasks", "n_scores", "iqm", "iqm_lower", "iqm_upper",
                   "mean", "mean_lower", "mean_upper"]  # fmt: skip
    _write_csv(
        out / "aggregate.csv",
        agg_columns,
        [[row[c] for c in agg_columns] for row in aggregate_rows],
    )
    _write_csv(
        out / "curves.csv",
        ["env", "label", "step", "mean", "lower", "upper", "n_seeds"],
        [[key[0], key[1], int(c.steps[j]), repr(float(c.mean[j])), repr(float(c.lower[j])),
          repr(float(c.upper[j])), int(c.n_seeds[j])]
         for key, c in curves.items() for j in range(c.steps.size)],
    )  # fmt: skip

    final_table = _md_table(
        ["env", "label", "seeds", "final step", "budget", "final return (mean ± std)",
         "IQM [95 % CI]"],
        [[s.env, s.label, str(len(s.seeds)),
          str(s.final_step_max) if s.final_step_min == s.final_step_max
          else f"{s.final_step_min}–{s.final_step_max}",
          "?" if s.budget is None else str(s.budget),
          f"{_fmt(s.mean)} ± {_fmt(s.std)}",
          f"{_fmt(s.iqm)} [{_fmt(s.iqm_lower)}, {_fmt(s.iqm_upper)}]"] for s in stats],
    )  # fmt: skip
    aggregate_table = _md_table(
        ["label", "tasks", "scores", "IQM [95 % CI]", "mean [95 % CI]"],
        [[row["label"], str(row["n_tasks"]), str(row["n_scores"]),
          f"{row['iqm']:.3f} [{row['iqm_lower']:.3f}, {row['iqm_upper']:.3f}]",
          f"{row['mean']:.3f} [{row['mean_lower']:.3f}, {row['mean_upper']:.3f}]"]
         for row in aggregate_rows],
    )  # fmt: skip
    window = (
        "the last evaluation"
        if args.final_window == 1
        else (f"the mean of the last {args.final_window} evaluations")
    )
    budgets = sorted({s.budget for s in stats if s.budget is not None})
    md = [
        "# revflow report",
        "",
        f"{len(runs)} runs ({', '.join(args.runs)}): {len(envs)} tasks x {len(labels)} labels.",
        f"Training budget (train.steps): {', '.join(map(str, budgets)) or 'unknown'} env steps; "
        f"{sum(r.complete for r in runs)} of {len(runs)} runs finished.",
        "",
        "## Final performance",
        "",
        f"Final return of a seed: {window} (eval/return_mean). Mean ± sample std over seeds; "
        "IQM = mean of the middle 50 % of the seeds' final returns, with a 95 % percentile "
        f"bootstrap CI over seeds ({args.bootstrap_reps} resamples, seed {args.seed}; "
        "Agarwal et al. 2021, rliable).",
        "",
        *final_table,
        "",
        "## Aggregate over tasks (normalised score)",
        "",
    ]
    if aggregate_rows:
        md += [
            "Normalised score (x - LOW) / (HIGH - LOW): dmc: tasks 0:1000"
            + "".join(f", {env} {lo:g}:{hi:g}" for env, (lo, hi) in sorted(refs.items()))
            + ". IQM over all (seed, task) final scores and mean over tasks of the per-task "
            "mean, with 95 % stratified-bootstrap CIs (seeds resampled within each task).",
            "",
            *aggregate_table,
            "",
            "![aggregate](aggregate.png)",
            "",
        ]
    else:
        md += ["No task has a normalisation range; no aggregate (see warnings).", ""]
    md += [
        "## Learning curves",
        "",
        "Mean over the seeds evaluated at each step ± one standard error; `curves.csv` has the "
        "numbers.",
        "",
        "![learning curves](curves.png)",
        "",
    ]
    if notes:
        md += ["## Warnings", "", *(f"- {note}" for note in notes), ""]
    (out / "report.md").write_text("\n".join(md))

    print("\n".join(final_table))
    if aggregate_rows:
        print()
        print("\n".join(aggregate_table))
    return out / "report.md"
