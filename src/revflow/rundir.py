"""A run directory on disk, for both training loops: where it is, its ``config.json`` (the
loop's options under the loop config's ``SECTION``, the agent's under ``agent``, the values
they resolve to under ``resolved``) and its ``result.json`` (written when a run finished),
both written atomically; and reading them back, including configs saved by older versions
(the fields they lack take the config classes' ``LEGACY_DEFAULTS``).

Layout: ``<run_dir>/<env>/<label or algo><RUN_SUFFIX>/seed<seed>/`` holding ``config.json``,
``result.json``, ``metrics.csv`` / ``eval.csv``, TensorBoard events and ``checkpoints/``
(:mod:`revflow.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from revflow.agents.base import AgentConfig
from revflow.agents.registry import get_agent_class
from revflow.checkpoint import CheckpointError, list_checkpoints
from revflow.loop_config import LoopConfig
from revflow.run_key import sanitize

__all__ = [
    "CONFIG_FILE",
    "RESULT_FILE",
    "ConfigMismatchError",
    "comparable",
    "config_choices",
    "config_dict",
    "configs_from_dict",
    "diff",
    "load_run",
    "read_result",
    "read_run_json",
    "require_new",
    "run_dir_for",
    "saved_section",
    "write_json",
    "write_result",
]

CONFIG_FILE = "config.json"
#: Written atomically when a run has finished all its steps.
RESULT_FILE = "result.json"


class ConfigMismatchError(ValueError):
    """A run directory's saved config disagrees with a checkpoint or with the requested one."""


def run_dir_for(cfg: LoopConfig) -> Path:
    """``<run_dir>/<env>/<label or algo><RUN_SUFFIX>/seed<seed>`` with ':' and other odd
    characters as '_'."""
    name = sanitize(cfg.label or cfg.algo) + cfg.RUN_SUFFIX
    return Path(cfg.run_dir) / sanitize(cfg.env) / name / f"seed{cfg.seed}"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def config_dict(
    cfg: LoopConfig, agent_cfg: AgentConfig, resolved: dict[str, Any]
) -> dict[str, Any]:
    """The content of ``config.json``: both configs and the values they resolve to."""
    return {
        cfg.SECTION: dataclasses.asdict(cfg),
        "agent": agent_cfg.to_dict(),
        "resolved": resolved,
    }


def tuplify(value: Any) -> Any:
    """JSON lists as tuples (how the configs hold sequences)."""
    return tuple(tuplify(v) for v in value) if isinstance(value, list) else value


def diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """``"key.path: a != b"`` for every leaf where two nested config dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if tuplify(a) == tuplify(b) else [f"{prefix[:-1]}: {a!r} != {b!r}"]


def read_run_json(run_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(path, parsed dict)`` of ``run_dir/config.json`` (clear errors if missing or invalid)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {run_dir} is not a revflow run directory")
    try:
        return path, json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigMismatchError(f"{path} is not valid JSON: {err}") from err


def saved_section(run_dir: str | Path) -> str | None:
    """Which loop wrote ``run_dir/config.json`` (its loop config's ``SECTION``: ``"train"``,
    ``"compiled"``); None if it is absent, unreadable or neither."""
    try:
        saved = json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    found = [k for k in ("train", "compiled") if isinstance(saved, dict) and k in saved]
    return found[0] if found else None


def configs_from_dict(
    d: dict[str, Any], loop_cls: type[LoopConfig], where: str = ""
) -> tuple[Any, AgentConfig]:
    """The ``(loop_cls config, agent config)`` of a saved ``config.json`` dict (validated on
    construction); ``where`` prefixes the error messages."""
    section = loop_cls.SECTION
    unknown = sorted(set(d[section]) - {f.name for f in dataclasses.fields(loop_cls)})
    if unknown:
        raise ConfigMismatchError(f"{where}saved {section} config has unknown fields {unknown}")
    cfg = loop_cls(**{**loop_cls.LEGACY_DEFAULTS, **d[section]})
    try:
        agent_cfg = get_agent_class(cfg.algo).Config.from_dict(d["agent"])
    except ValueError as err:
        raise ConfigMismatchError(f"{where}{err}") from None
    return cfg, agent_cfg


def comparable(d: Any, loop_cls: type[LoopConfig]) -> Any:
    """A saved config dict (``config.json``'s, or a checkpoint's) with the fields it lacks
    filled as loading it fills them (``LEGACY_DEFAULTS``, then the class defaults), so that
    a config saved before a field existed compares equal to the config it loads as. A dict
    that does not load is returned as it is (the comparison then names its differences)."""
    if not isinstance(d, dict) or not isinstance(d.get(loop_cls.SECTION), dict):
        return d
    try:
        cfg, agent_cfg = configs_from_dict(d, loop_cls)
    except (ConfigMismatchError, ValueError, TypeError, KeyError, AttributeError):
        return d
    return {**d, loop_cls.SECTION: dataclasses.asdict(cfg), "agent": agent_cfg.to_dict()}


def load_run(run_dir: str | Path, loop_cls: type[LoopConfig]) -> tuple[Any, AgentConfig]:
    """The configs saved in ``run_dir/config.json`` by the loop of ``loop_cls`` (clear errors
    if missing, invalid or another loop's)."""
    path, d = read_run_json(run_dir)
    if loop_cls.SECTION not in d:
        raise ConfigMismatchError(
            f"{path} is not the config of a `{loop_cls.COMMAND}` run (it has no "
            f"{loop_cls.SECTION!r} section)"
        )
    return configs_from_dict(d, loop_cls, where=f"{path}: ")


def config_choices(run_dir: Path) -> list[dict[str, Any]]:
    """The configs a checkpoint of ``run_dir`` may have been written with: ``config.json``'s
    and those it had before a resume changed it (``earlier_configs``)."""
    saved = read_run_json(run_dir)[1]
    current = {k: v for k, v in saved.items() if k != "earlier_configs"}
    return [current, *saved.get("earlier_configs", [])]


def require_new(path: Path, command: str, restart_hint: str) -> None:
    """Refuse to start a run in ``path`` if it holds checkpoints or the config of a run that
    stopped before its first one (``FileExistsError`` saying how to continue it)."""
    if list_checkpoints(path):
        raise FileExistsError(
            f"{path} already holds checkpoints; continue it with `{command} --resume {path}` "
            "or choose another --run-dir / --seed"
        )
    if (path / CONFIG_FILE).is_file():
        raise FileExistsError(
            f"{path} holds a run that stopped before its first checkpoint ({CONFIG_FILE} and "
            f"logs); {restart_hint} or choose another --run-dir / --seed / --label"
        )


def read_result(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``result.json`` of a finished run (None while it is unfinished or never started)."""
    path = Path(run_dir) / RESULT_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is unreadable or not JSON: {err}") from err


def write_result(
    run_dir: Path, fields: dict[str, Any], last_eval: tuple[int, float, float] | None
) -> None:
    """``result.json``: ``{"complete": true, **fields}`` and, if there was one, the last
    evaluation as ``final_eval`` (step, return_mean, return_std)."""
    result: dict[str, Any] = {"complete": True, **fields}
    if last_eval is not None:
        result["final_eval"] = dict(
            zip(("step", "return_mean", "return_std"), last_eval, strict=True)
        )
    write_json(run_dir / RESULT_FILE, result)
