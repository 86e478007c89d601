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

Last good states. ``save_checkpoint(..., last_good=True)`` writes the state a run had before
it failed (a non-finite loss) to ``run_dir/checkpoints/last-good/<step>/`` instead: apart from
the rotation, so no later save ever deletes it, and never deleted by this module. The rotation
(``keep``) counts and prunes only ``checkpoints/<step>/``. :func:`list_checkpoints` lists both
kinds, :func:`restore_newest` restores the newest one that is intact, naming each newer one it
had to skip (:class:`CorruptCheckpointError`) and why.

Write failures (a full disk, a read-only directory) raise :class:`CheckpointError` naming the
path and the OS's reason in one line; the half-written temporary directory is removed and the
earlier checkpoints are untouched. :func:`probe_writable` checks a directory before any compute.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import io
import json
import logging
import math
import os
import re
import shutil
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = [
    "CheckpointError",
    "CheckpointRef",
    "CorruptCheckpointError",
    "latest_step",
    "list_checkpoints",
    "list_steps",
    "probe_writable",
    "read_extra",
    "read_meta",
    "restore_checkpoint",
    "restore_newest",
    "save_checkpoint",
]

PyTree = Any

FORMAT = "revflow-checkpoint-v1"
_CKPT_DIR = "checkpoints"
_STEP_RE = re.compile(r"^\d+$")
_TMP_MARK = ".orbax-checkpoint-tmp"
_ORBAX_MARKER = "_CHECKPOINT_METADATA"
_PROBE = ".revflow-write-probe-"
#: Subdirectory of ``checkpoints/`` holding last good states (outside the rotation).
LAST_GOOD_DIR = "last-good"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, corrupt, or does not match the template."""


class CorruptCheckpointError(CheckpointError):
    """A finalised checkpoint's files are unreadable, truncated or fail their checksums."""


@dataclasses.dataclass(frozen=True, order=True)
class CheckpointRef:
    """One finalised checkpoint: its step, whether it is a last good state, its directory."""

    step: int
    #: Written by ``save_checkpoint(..., last_good=True)`` (outside the rotation).
    last_good: bool
    path: Path = dataclasses.field(compare=False)

    def describe(self) -> str:
        return f"last good state {self.step}" if self.last_good else f"checkpoint {self.step}"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence orbax's logging (it logs through absl -> python logging), errors included: a
    failed write logs a traceback from each of its threads before the error reaches us, and
    this module raises its own one-line :class:`CheckpointError` for every failure."""
    loggers = [logging.getLogger(n) for n in ("absl", "orbax", "orbax.checkpoint")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, old, strict=True):
            lg.setLevel(level)


class _LateFailureReports(logging.Filter):
    """Drops asyncio's "... exception was never retrieved" records that name ``where``: after
    a failed orbax read or write, the futures of its other failed operations are reported by
    asyncio only when they are garbage-collected, which on a loaded machine can be long after
    the failure was raised (and reported) as one :class:`CheckpointError` line."""

    def __init__(self, where: Path):
        super().__init__()
        self.where = str(where)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("exception was never retrieved" in msg and self.where in msg)

    # equal filters for one ``where``: ``Logger.addFilter`` skips one already installed
    def __eq__(self, other: object) -> bool:
        return isinstance(other, _LateFailureReports) and other.where == self.where

    def __hash__(self) -> int:
        return hash(self.where)


@contextlib.contextmanager
def _stray_tracebacks_muted(where: Path) -> Iterator[None]:
    """Mute ``sys.stderr`` (and asyncio's logger) around an orbax read or write of ``where``.
    When one of its operations fails (a truncated file, a full disk), orbax closes its event
    loop while tensorstore's other operations still complete, and each of their callbacks
    prints a "RuntimeError: Event loop is closed" traceback straight to ``sys.stderr``; the
    failure itself reaches us as an exception, reported as one :class:`CheckpointError` line.
    On a failure the stragglers get a second to finish, still muted, the failed futures are
    collected, and asyncio's later reports of any left (:class:`_LateFailureReports`) are
    dropped for good."""
    real, asyncio_log = sys.stderr, logging.getLogger("asyncio")
    level = asyncio_log.level
    sys.stderr = io.StringIO()
    asyncio_log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    except BaseException:
        time.sleep(1.0)
        gc.collect()
        asyncio_log.addFilter(_LateFailureReports(where))
        raise
    finally:
        sys.stderr = real
        asyncio_log.setLevel(level)


def _checkpointer() -> Any:
    import orbax.checkpoint as ocp

    # Synchronous Checkpointer (not AsyncCheckpointer): save() returns after finalisation.
    return ocp.Checkpointer(ocp.CompositeCheckpointHandler())


def _ckpt_root(run_dir: str | Path, last_good: bool = False) -> Path:
    root = Path(run_dir).absolute() / _CKPT_DIR  # tensorstore/OCDBT needs absolute paths
    return root / LAST_GOOD_DIR if last_good else root


def _is_complete(path: Path) -> bool:
    return (
        path.is_dir()
        and _STEP_RE.match(path.name) is not None
        and (path / _ORBAX_MARKER).is_file()
        and (path / "meta").is_dir()
    )


def list_steps(run_dir: str | Path, last_good: bool = False) -> list[int]:
    """Steps of all finalised checkpoints in ``run_dir`` (of its last good states if
    ``last_good``), ascending (``[]`` if none)."""
    root = _ckpt_root(run_dir, last_good)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if _is_complete(p))


def list_checkpoints(run_dir: str | Path) -> list[CheckpointRef]:
    """Every finalised checkpoint of ``run_dir``, rotation and last good states, oldest first
    (at equal steps the rotation's checkpoint comes last, i.e. counts as newer)."""
    refs = [
        CheckpointRef(step, last_good, _ckpt_root(run_dir, last_good) / str(step))
        for last_good in (False, True)
        for step in list_steps(run_dir, last_good)
    ]
    return sorted(refs, key=lambda r: (r.step, not r.last_good))


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
    last_good: bool = False,
) -> Path:
    """Write ``state`` (and the JSON ``extra``) as ``run_dir/checkpoints/<step>/``, atomically.

    Blocks until the checkpoint is finalised; then deletes all but the newest ``keep``
    finalised checkpoints and any leftover temporary directories. Re-saving an existing step
    replaces it. ``last_good=True`` writes ``checkpoints/last-good/<step>/`` instead and
    deletes nothing. Returns the checkpoint directory.

    A write that fails (full disk, read-only or vanished directory) raises
    :class:`CheckpointError` naming the path and the reason, after removing its temporary
    directory; the checkpoints already on disk are kept.
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

    root = _ckpt_root(run_dir, last_good)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {step}: {_os_reason(e, root)}") from e
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
            with _stray_tracebacks_muted(root):
                ckptr.save(target, args=ocp.args.Composite(**items), force=True)
        except Exception as e:
            _remove_tmp_dirs(root)  # free what the failed write took
            os_err = _os_error(e)
            reason = _os_reason(os_err, target) if os_err else f"{type(e).__name__}: {e}"
            kept = list_steps(run_dir, last_good)
            raise CheckpointError(
                f"cannot write checkpoint {step}: {reason}; "
                + (f"the earlier checkpoints {kept} are kept" if kept else "no checkpoint kept")
            ) from e
        finally:
            with contextlib.suppress(Exception):
                ckptr.close()
    if not _is_complete(target):  # pragma: no cover - would be an orbax bug
        raise CheckpointError(f"orbax reported success but {target} is not a finalised checkpoint")

    if not last_good:
        for old in list_steps(run_dir)[:-keep]:
            shutil.rmtree(root / str(old), ignore_errors=True)
    return target


def _remove_tmp_dirs(root: Path) -> None:
    """Delete temporary dirs left by crashed saves (single writer per run_dir assumed)."""
    with contextlib.suppress(OSError):
        for p in root.iterdir():
            if _TMP_MARK in p.name and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


def _os_error(err: BaseException) -> OSError | None:
    """The first ``OSError`` with an errno in ``err``'s cause / context chain (orbax and
    tensorstore wrap the OS's error; tensorstore's own message carries the errno text)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno:
            return err
        text = str(err)
        for code in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM):
            if os.strerror(code) in text:
                return OSError(code, os.strerror(code))
        err = err.__cause__ or err.__context__
    return None


def _os_reason(err: OSError, path: Path) -> str:
    where = err.filename or path
    return f"{where}: {err.strerror or err}"


def probe_writable(directory: str | Path) -> None:
    """Create ``directory`` (and parents) and write, flush and delete a small file in it;
    raises :class:`CheckpointError` naming the path and the OS's reason (read-only, no
    permission, no space left) if that fails. Run before any compute."""
    directory = Path(directory)
    probe = directory / f"{_PROBE}{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(f"{_PROBE}*"):  # left by a process killed mid-probe
            stale.unlink()
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise CheckpointError(f"cannot write to run directory {_os_reason(e, directory)}") from e
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


# --------------------------------------------------------------------------------------------
# Restore
# --------------------------------------------------------------------------------------------


def _checkpoint_path(run_dir: str | Path, step: int | None, last_good: bool = False) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    if step is None:
        step = latest_step(run_dir) if not last_good else (list_steps(run_dir, True) or [None])[-1]
        if step is None:
            raise CheckpointError(f"no finalised checkpoint in {_ckpt_root(run_dir, last_good)}")
    path = _ckpt_root(run_dir, last_good) / str(int(step))
    if not _is_complete(path):
        available = list_steps(run_dir, last_good)
        raise CheckpointError(
            f"no finalised checkpoint for step {step} in {_ckpt_root(run_dir, last_good)} "
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
        raise CorruptCheckpointError(
            f"checkpoint {path} metadata is unreadable: {_first_line(e)}"
        ) from e
    meta, extra = head["meta"], head["extra"]
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CorruptCheckpointError(f"checkpoint {path} has unknown format metadata")
    if not isinstance(extra, dict):
        raise CorruptCheckpointError(f"checkpoint {path} has unreadable extra metadata")
    return meta, extra


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def _head(
    run_dir: str | Path, step: int | None, last_good: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(meta, extra)`` of checkpoint ``step`` (default: latest), arrays unread."""
    path = _checkpoint_path(run_dir, step, last_good)
    with _quiet():
        ckptr = _checkpointer()
        try:
            return _read_head(ckptr, path)
        finally:
            ckptr.close()


def read_extra(
    run_dir: str | Path, step: int | None = None, last_good: bool = False
) -> dict[str, Any]:
    """The JSON ``extra`` of checkpoint ``step`` (default: latest) without reading its arrays,
    e.g. to compare a saved config before building a template. Errors as
    :func:`restore_checkpoint`."""
    return _head(run_dir, step, last_good)[1]


def read_meta(run_dir: str | Path, step: int | None = None) -> dict[str, Any]:
    """The ``meta`` record of checkpoint ``step`` (default: latest): format, step and each
    leaf's path, shape and dtype, without reading its arrays (e.g. to size a template).
    Errors as :func:`restore_checkpoint`."""
    return _head(run_dir, step)[0]


def restore_checkpoint(
    run_dir: str | Path, template: PyTree, step: int | None = None, last_good: bool = False
) -> tuple[PyTree, dict[str, Any]]:
    """Restore checkpoint ``step`` (default: latest) into the structure of ``template``.

    ``template`` supplies the tree structure, shapes and dtypes (arrays,
    ``jax.ShapeDtypeStruct`` or Python scalars); leaves come back as the template's kind
    (jax arrays for jax/ShapeDtypeStruct leaves, numpy arrays for numpy leaves, Python
    scalars for Python scalars). Returns ``(state, extra)``.

    Raises :class:`CheckpointError` for a missing run dir or checkpoint and any
    structure/shape/dtype mismatch (naming the first mismatching leaf), and its subclass
    :class:`CorruptCheckpointError` for unreadable, truncated or corrupt checkpoint files.
    ``last_good`` reads ``checkpoints/last-good/<step>/``.
    """
    import orbax.checkpoint as ocp

    path = _checkpoint_path(run_dir, step, last_good)
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
                    with _stray_tracebacks_muted(path):
                        out = ckptr.restore(
                            path,
                            args=ocp.args.Composite(
                                state=ocp.args.PyTreeRestore(restore_args=restore_args)
                            ),
                        )
                    flat = out["state"]
                except Exception as e:
                    raise CorruptCheckpointError(
                        f"checkpoint {path} is truncated or corrupt (array data unreadable: "
                        f"{_first_line(e)})"
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
            raise CorruptCheckpointError(f"checkpoint {path} lacks array data for leaf {lpath}")
        arr = np.asarray(arr)
        if tuple(arr.shape) != tuple(lmeta["shape"]) or str(arr.dtype) != lmeta["dtype"]:
            raise CorruptCheckpointError(
                f"checkpoint {path} is corrupt: leaf {lpath} has shape {arr.shape} "
                f"dtype {arr.dtype}, its metadata says {tuple(lmeta['shape'])} {lmeta['dtype']}"
            )
        if _crc(arr) != lmeta["crc32"]:
            raise CorruptCheckpointError(
                f"checkpoint {path} is corrupt: checksum mismatch at {lpath}"
            )
        leaves.append(_from_numpy(arr, tleaf, lmeta))
    return jax.tree_util.tree_unflatten(treedef, leaves), extra


def restore_newest(
    run_dir: str | Path,
    template_for: Callable[[CheckpointRef, dict[str, Any]], PyTree],
    step: int | None = None,
    check: Callable[[CheckpointRef, dict[str, Any]], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> tuple[CheckpointRef, PyTree, dict[str, Any], list[tuple[CheckpointRef, str]]]:
    """Restore the newest intact checkpoint of ``run_dir`` (of step ``step`` if given).

    Candidates are :func:`list_checkpoints`, newest first. For each, ``check(ref, extra)``
    sees its ``extra`` before any array is read (raise there to refuse it, e.g. a config
    mismatch: that error propagates), ``template_for(ref, extra)`` builds the template, and a
    :class:`CorruptCheckpointError` skips to the next older one. Returns ``(ref, state, extra,
    skipped)`` with ``skipped`` the ``(ref, reason)`` of every newer checkpoint passed over;
    ``notify`` hears a warning line on each.
    Raises :class:`CheckpointError` when there is no checkpoint (of that step) and
    :class:`CorruptCheckpointError`, naming each, when none is intact.
    """
    refs = list_checkpoints(run_dir)
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    if step is not None:
        chosen = [r for r in refs if r.step == step]
        if not chosen:
            have = ", ".join(str(r.step) for r in refs) or "none"
            raise CheckpointError(f"{run_dir} has no checkpoint at step {step} (steps: {have})")
        refs = chosen
    if not refs:
        raise CheckpointError(f"no finalised checkpoint in {_ckpt_root(run_dir)}")
    skipped: list[tuple[CheckpointRef, str]] = []
    for ref in reversed(refs):
        try:
            extra = read_extra(run_dir, ref.step, ref.last_good)
            if check is not None:
                check(ref, extra)
            tree, extra = restore_checkpoint(
                run_dir, template_for(ref, extra), ref.step, ref.last_good
            )
        except CorruptCheckpointError as e:
            skipped.append((ref, str(e)))
            continue
        for bad, why in skipped if notify is not None else ():
            notify(f"warning: skipped {bad.describe()} ({why}); using {ref.describe()}")
        return ref, tree, extra, skipped
    raise CorruptCheckpointError(
        f"no intact checkpoint in {run_dir}: " + "; ".join(f"{why}" for _, why in skipped)
    )


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
