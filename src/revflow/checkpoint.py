"""Atomic, synchronous, pickle-free checkpoints of array pytrees with orbax.

Layout::

    run_dir/checkpoints/<step>/          one finalised checkpoint
        state/                           the pytree leaves (orbax PyTree, OCDBT)
        meta/                            JSON: format, step, leaf paths/shapes/dtypes/CRC32s
        extra/                           JSON: the user's ``extra`` dict
        _CHECKPOINT_METADATA             written by orbax

Atomicity: orbax writes everything into ``<step>.orbax-checkpoint-tmp-<timestamp>/`` and
renames it to ``<step>/`` only when all items are on disk, so a crash mid-write leaves at most
a temporary directory, which :func:`latest_step` never selects (only all-digit names that hold
the ``meta`` item and orbax's ``_CHECKPOINT_METADATA`` count as checkpoints).

Any pytree of arrays works: nested dicts/lists/tuples, flax ``struct.dataclass`` objects,
optax states (named tuples), numpy and jax arrays of any dtype (bfloat16, integer, uint32 raw
PRNG keys), typed jax PRNG keys (``jax.random.key``; saved via ``key_data``), and Python
scalars. The tree is stored as its flat list of leaves; on restore the stored leaf paths,
shapes and dtypes are checked against ``template`` and the leaves are put back into the
template's structure, so restoring needs no pickled classes. Each leaf carries a CRC32 so
silently corrupted data is detected, not returned.

Zero-size leaves (MJX's ``Data`` has many, e.g. ``mocap_pos`` of shape (N, 0, 3) in a model
without mocap bodies; orbax refuses to save them) are recorded in ``meta`` like any leaf but
have no array data; restore rebuilds them from their stored shape and dtype.

Placement: a leaf restored into a jax template leaf (an array, or a ``jax.ShapeDtypeStruct``
with a ``sharding``) gets that leaf's sharding, typed PRNG keys included.

``extra`` is a JSON sidecar (config, counters, ``np.random.Generator.bit_generator.state``
...). numpy scalars and arrays in it are converted to Python numbers and lists.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = [
    "CheckpointError",
    "latest_step",
    "list_steps",
    "read_extra",
    "read_meta",
    "restore_checkpoint",
    "save_checkpoint",
]

PyTree = Any

FORMAT = "revflow-checkpoint-v1"
_CKPT_DIR = "checkpoints"
_STEP_RE = re.compile(r"^\d+$")
_TMP_MARK = ".orbax-checkpoint-tmp"
_ORBAX_MARKER = "_CHECKPOINT_METADATA"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt, or does not match the template."""


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence orbax's INFO/WARNING chatter (it logs through absl -> python logging)."""
    loggers = [logging.getLogger(n) for n in ("absl", "orbax", "orbax.checkpoint")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, old, strict=True):
            lg.setLevel(level)


def _checkpointer() -> Any:
    import orbax.checkpoint as ocp

    # Synchronous Checkpointer (not AsyncCheckpointer): save() returns after finalisation.
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def _ckpt_root(run_dir: str | Path) -> Path:
    return Path(run_dir).absolute() / _CKPT_DIR  # tensorstore/OCDBT needs absolute paths


def _is_complete(path: Path) -> bool:
    return (
        path.is_dir()
        and _STEP_RE.match(path.name) is not None
        and (path / _ORBAX_MARKER).is_file()
        and (path / "meta").is_dir()
    )


def list_steps(run_dir: str | Path) -> list[int]:
    """Steps of all finalised checkpoints in ``run_dir``, ascending (``[]`` if none)."""
    root = _ckpt_root(run_dir)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if _is_complete(p))


def latest_step(run_dir: str | Path) -> int | None:
    """The newest finalised checkpoint step, or ``None``. Temporary/partial dirs are ignored."""
    steps = list_steps(run_dir)
    return steps[-1] if steps else None


def _is_key_array(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _kind(x: Any) -> str:
    if _is_key_array(x):
        return "jax_key"
    if isinstance(x, jax.Array | jax.ShapeDtypeStruct):
        return "jax"
    if isinstance(x, np.ndarray | np.generic):
        return "numpy"
    if isinstance(x, bool | int | float):
        return "python"
    raise CheckpointError(
        f"unsupported pytree leaf of type {type(x).__name__}; leaves must be arrays or "
        "Python scalars (put other data in `extra`)"
    )


def _shape_dtype(x: Any) -> tuple[tuple[int, ...], str]:
    """Shape and dtype of the *stored* form of a leaf (key arrays: their key_data)."""
    if _is_key_array(x):
        data = jax.eval_shape(jax.random.key_data, x)  # works for arrays and ShapeDtypeStructs
        return tuple(data.shape), str(np.dtype(data.dtype))
    if isinstance(x, jax.ShapeDtypeStruct | np.ndarray | np.generic | jax.Array):
        return tuple(x.shape), str(np.dtype(x.dtype))
    arr = np.asarray(x)
    return tuple(arr.shape), str(arr.dtype)


def _to_numpy(x: Any) -> np.ndarray:
    if _is_key_array(x):
        x = jax.random.key_data(x)
    return np.asarray(x)


def _crc(arr: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"extra contains a non-JSON value of type {type(obj).__name__}: {obj!r}")


def _leaf_key(i: int) -> str:
    return f"leaf_{i:06d}"


# --------------------------------------------------------------------------------------------
# Save
# --------------------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    state: PyTree,
    extra: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``state`` (and the JSON ``extra``) as ``run_dir/checkpoints/<step>/``, atomically.

    Blocks until the checkpoint is finalised; then deletes all but the newest ``keep``
    finalised checkpoints and any leftover temporary directories. Re-saving an existing step
    replaces it. Returns the checkpoint directory.
    """
    import orbax.checkpoint as ocp

    step = int(step)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    try:
        extra_json = json.loads(json.dumps(extra or {}, default=_json_default))
    except (TypeError, ValueError) as e:
        raise TypeError(f"`extra` must be JSON-serialisable: {e}") from e
    if not isinstance(extra_json, dict):
        raise TypeError(f"`extra` must be a dict, got {type(extra).__name__}")

    leaves_with_path, _ = jax.tree_util.tree_flatten_with_path(state)
    flat: dict[str, np.ndarray] = {}
    leaves_meta = []
    for i, (path, leaf) in enumerate(leaves_with_path):
        kind = _kind(leaf)
        arr = _to_numpy(leaf)
        if arr.size:  # zero-size leaves: metadata only (orbax cannot save them)
            flat[_leaf_key(i)] = arr
        leaves_meta.append(
            {
                "path": jax.tree_util.keystr(path),
                "kind": kind,
                "key_impl": str(jax.random.key_impl(leaf)) if kind == "jax_key" else None,
                "shape": list(arr.shape),
                "dtype": str(arr.dtype),
                "crc32": _crc(arr),
            }
        )
    meta = {"format": FORMAT, "step": step, "num_leaves": len(leaves_meta), "leaves": leaves_meta}

    root = _ckpt_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    _remove_tmp_dirs(root)
    target = root / str(step)
    items: dict[str, Any] = {
        "meta": ocp.args.JsonSave(meta),
        "extra": ocp.args.JsonSave(extra_json),
    }
    if flat:
        items["state"] = ocp.args.PyTreeSave(flat)
    with _quiet():
        ckptr = _checkpointer()
        try:
            ckptr.save(target, args=ocp.args.Composite(**items), force=True)
        except Exception as e:
            raise CheckpointError(f"saving checkpoint {target} failed: {e}") from e
        finally:
            ckptr.close()
    if not _is_complete(target):  # pragma: no cover - would be an orbax bug
        raise CheckpointError(f"orbax reported success but {target} is not a finalised checkpoint")

    for old in list_steps(run_dir)[:-keep]:
        shutil.rmtree(root / str(old), ignore_errors=True)
    return target


def _remove_tmp_dirs(root: Path) -> None:
    """Delete temporary dirs left by crashed saves (single writer per run_dir assumed)."""
    for p in root.iterdir():
        if _TMP_MARK in p.name and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Restore
# --------------------------------------------------------------------------------------------


def _checkpoint_path(run_dir: str | Path, step: int | None) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    if step is None:
        step = latest_step(run_dir)
        if step is None:
            raise CheckpointError(f"no finalised checkpoint in {_ckpt_root(run_dir)}")
    path = _ckpt_root(run_dir) / str(int(step))
    if not _is_complete(path):
        available = list_steps(run_dir)
        raise CheckpointError(
            f"no finalised checkpoint for step {step} in {_ckpt_root(run_dir)} "
            f"(available steps: {available or 'none'})"
        )
    return path


def _read_head(ckptr: Any, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(meta, extra)`` of the checkpoint at ``path`` (no array data is read)."""
    import orbax.checkpoint as ocp

    try:
        head = ckptr.restore(
            path,
            args=ocp.args.Composite(meta=ocp.args.JsonRestore(), extra=ocp.args.JsonRestore()),
        )
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} metadata is unreadable: {e}") from e
    meta, extra = head["meta"], head["extra"]
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has unknown format metadata")
    return meta, extra


def read_extra(run_dir: str | Path, step: int | None = None) -> dict[str, Any]:
    """The JSON ``extra`` of checkpoint ``step`` (default: latest) without reading its arrays,
    e.g. to compare a saved config before building a template. Errors as
    :func:`restore_checkpoint`."""
    path = _checkpoint_path(run_dir, step)
    with _quiet():
        ckptr = _checkpointer()
        try:
            return _read_head(ckptr, path)[1]
        finally:
            ckptr.close()


def read_meta(run_dir: str | Path, step: int | None = None) -> dict[str, Any]:
    """The ``meta`` record of checkpoint ``step`` (default: latest): format, step and each
    leaf's path, shape and dtype, without reading its arrays (e.g. to size a template).
    Errors as :func:`restore_checkpoint`."""
    path = _checkpoint_path(run_dir, step)
    with _quiet():
        ckptr = _checkpointer()
        try:
            return _read_head(ckptr, path)[0]
        finally:
            ckptr.close()


def restore_checkpoint(
    run_dir: str | Path, template: PyTree, step: int | None = None
) -> tuple[PyTree, dict[str, Any]]:
    """Restore checkpoint ``step`` (default: latest) into the structure of ``template``.

    ``template`` supplies the tree structure, shapes and dtypes (arrays,
    ``jax.ShapeDtypeStruct`` or Python scalars); leaves come back as the template's kind
    (jax arrays for jax/ShapeDtypeStruct leaves, numpy arrays for numpy leaves, Python
    scalars for Python scalars). Returns ``(state, extra)``.

    Raises :class:`CheckpointError` for a missing run dir or checkpoint, any
    structure/shape/dtype mismatch (naming the first mismatching leaf), and unreadable,
    truncated or corrupt checkpoint files.
    """
    import orbax.checkpoint as ocp

    path = _checkpoint_path(run_dir, step)
    with _quiet():
        ckptr = _checkpointer()
        try:
            meta, extra = _read_head(ckptr, path)
            t_paths, t_leaves, treedef = _check_template(path, meta, template)
            stored = [i for i, lmeta in enumerate(meta["leaves"]) if math.prod(lmeta["shape"])]
            flat: Any = {}
            if stored:
                restore_args = {
                    _leaf_key(i): ocp.RestoreArgs(restore_type=np.ndarray) for i in stored
                }
                try:
                    out = ckptr.restore(
                        path,
                        args=ocp.args.Composite(
                            state=ocp.args.PyTreeRestore(restore_args=restore_args)
                        ),
                    )
                    flat = out["state"]
                except Exception as e:
                    raise CheckpointError(
                        f"checkpoint {path} is truncated or corrupt (array data unreadable): {e}"
                    ) from e
        finally:
            ckptr.close()

    leaves = []
    for i, (lpath, tleaf, lmeta) in enumerate(zip(t_paths, t_leaves, meta["leaves"], strict=True)):
        if not math.prod(lmeta["shape"]):
            arr = np.zeros(lmeta["shape"], np.dtype(lmeta["dtype"]))
            leaves.append(_from_numpy(arr, tleaf, lmeta))
            continue
        arr = flat.get(_leaf_key(i)) if isinstance(flat, dict) else None
        if arr is None:
            raise CheckpointError(f"checkpoint {path} lacks array data for leaf {lpath}")
        arr = np.asarray(arr)
        if tuple(arr.shape) != tuple(lmeta["shape"]) or str(arr.dtype) != lmeta["dtype"]:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: leaf {lpath} has shape {arr.shape} "
                f"dtype {arr.dtype}, its metadata says {tuple(lmeta['shape'])} {lmeta['dtype']}"
            )
        if _crc(arr) != lmeta["crc32"]:
            raise CheckpointError(f"checkpoint {path} is corrupt: checksum mismatch at {lpath}")
        leaves.append(_from_numpy(arr, tleaf, lmeta))
    return jax.tree_util.tree_unflatten(treedef, leaves), extra


def _check_template(path: Path, meta: dict[str, Any], template: PyTree):
    t_with_path, treedef = jax.tree_util.tree_flatten_with_path(template)
    t_paths = [jax.tree_util.keystr(p) for p, _ in t_with_path]
    t_leaves = [leaf for _, leaf in t_with_path]
    stored = meta["leaves"]
    for i in range(max(len(stored), len(t_paths))):
        s = stored[i]["path"] if i < len(stored) else None
        t = t_paths[i] if i < len(t_paths) else None
        if s != t:
            raise CheckpointError(
                f"checkpoint {path} does not match the template structure: first difference at "
                f"leaf #{i}: checkpoint has {s or '<no more leaves>'}, template has "
                f"{t or '<no more leaves>'} ({len(stored)} vs {len(t_paths)} leaves)"
            )
    for lpath, tleaf, lmeta in zip(t_paths, t_leaves, stored, strict=True):
        try:
            _kind(tleaf)
            shape, dtype = _shape_dtype(tleaf)
        except CheckpointError as e:
            raise CheckpointError(f"template leaf {lpath}: {e}") from e
        if shape != tuple(lmeta["shape"]) or dtype != lmeta["dtype"]:
            raise CheckpointError(
                f"checkpoint {path} does not match the template at leaf {lpath}: checkpoint "
                f"has shape {tuple(lmeta['shape'])} dtype {lmeta['dtype']}, template has "
                f"shape {shape} dtype {dtype}"
            )
        tkind = _kind(tleaf)
        if (tkind == "jax_key") != (lmeta["kind"] == "jax_key"):
            raise CheckpointError(
                f"checkpoint {path} does not match the template at leaf {lpath}: checkpoint "
                f"leaf kind {lmeta['kind']}, template leaf kind {tkind}"
            )
    return t_paths, t_leaves, treedef


def _from_numpy(arr: np.ndarray, tleaf: Any, lmeta: dict[str, Any]) -> Any:
    kind = _kind(tleaf)
    sharding = getattr(tleaf, "sharding", None) if kind in ("jax", "jax_key") else None
    if kind == "jax_key":
        key = jax.random.wrap_key_data(arr, impl=lmeta["key_impl"])
        return key if sharding is None else jax.device_put(key, sharding)
    if kind == "jax":
        if sharding is not None:
            return jax.device_put(arr, sharding)
        return jax.numpy.asarray(arr)
    if kind == "numpy":
        return arr[()] if isinstance(tleaf, np.generic) else arr
    return type(tleaf)(arr.item())
