"""Tests for revflow.checkpoint: bit-exact round trips, atomicity, pruning, error reporting."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from revflow.checkpoint import (
    CheckpointError,
    latest_step,
    list_steps,
    restore_checkpoint,
    save_checkpoint,
)


@struct.dataclass
class TrainState:
    params: dict
    opt_state: optax.OptState
    key: jax.Array  # raw uint32 key
    typed_key: jax.Array  # jax.random.key
    step: int


def _state(seed: int = 0) -> TrainState:
    k = jax.random.PRNGKey(seed)
    params = {
        "dense": {
            "kernel": jax.random.normal(k, (7, 5), jnp.bfloat16),
            "bias": jax.random.normal(jax.random.fold_in(k, 1), (5,), jnp.float32),
        },
        "table": np.arange(12, dtype=np.int32).reshape(3, 4) - 6,
        "scale": jnp.asarray(2.5, jnp.float64 if jax.config.x64_enabled else jnp.float32),
    }
    tx = optax.adamw(1e-3)
    opt_state = tx.init(params)
    grads = jax.tree.map(lambda p: jnp.ones_like(p), params)
    _, opt_state = tx.update(grads, opt_state, params)  # non-trivial moments and count
    return TrainState(
        params=params,
        opt_state=opt_state,
        key=jax.random.split(k, 3),
        typed_key=jax.random.key(seed + 11),
        step=seed + 3,
    )


def _assert_trees_bit_equal(a, b):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array))
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert x.dtype == y.dtype
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        xa, ya = np.asarray(x), np.asarray(y)
        assert xa.dtype == ya.dtype and xa.shape == ya.shape
        np.testing.assert_array_equal(xa.reshape(-1).view(np.uint8), ya.reshape(-1).view(np.uint8))


def _data_files(ckpt: Path) -> list[Path]:
    files = [p for p in (ckpt / "state").rglob("*") if p.is_file() and "/d/" in p.as_posix()]
    return sorted(files, key=lambda p: p.stat().st_size)


def test_round_trip_bit_exact_with_numpy_rng_state(tmp_path):
    state = _state(0)
    rng = np.random.default_rng(123)
    rng.normal(size=17)
    extra = {"config": {"lr": 1e-3, "name": "x"}, "env_steps": 4567, "rng": rng.bit_generator.state}
    path = save_checkpoint(tmp_path, 100, state, extra=extra)
    assert path == (tmp_path / "checkpoints" / "100").absolute()
    assert latest_step(tmp_path) == 100

    restored, rextra = restore_checkpoint(tmp_path, _state(1))  # template values don't matter
    _assert_trees_bit_equal(restored, state)
    assert isinstance(restored, TrainState) and restored.step == 3
    assert restored.key.dtype == jnp.uint32 and restored.params["table"].dtype == np.int32
    assert isinstance(restored.params["table"], np.ndarray)
    assert restored.params["dense"]["kernel"].dtype == jnp.bfloat16
    assert rextra["config"] == extra["config"] and rextra["env_steps"] == 4567
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = rextra["rng"]
    np.testing.assert_array_equal(rng2.normal(size=9), rng.normal(size=9))


def test_restore_against_abstract_template(tmp_path):
    state = _state(2)
    save_checkpoint(tmp_path, 1, state)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if isinstance(x, jax.Array) else x,
        state,
    )
    restored, extra = restore_checkpoint(tmp_path, abstract, step=1)
    _assert_trees_bit_equal(restored, state)
    assert extra == {}


def test_template_mismatch_names_leaf_and_shapes(tmp_path):
    state = {"actor": {"w": np.zeros((4, 3), np.float32)}, "critic": np.ones(2, np.float32)}
    save_checkpoint(tmp_path, 5, state)
    wrong_shape = {"actor": {"w": np.zeros((4, 8), np.float32)}, "critic": np.ones(2, np.float32)}
    with pytest.raises(CheckpointError, match=r"\['actor'\]\['w'\].*\(4, 3\).*\(4, 8\)"):
        restore_checkpoint(tmp_path, wrong_shape)
    wrong_dtype = {"actor": {"w": np.zeros((4, 3), np.float16)}, "critic": np.ones(2, np.float32)}
    with pytest.raises(CheckpointError, match=r"float32.*float16"):
        restore_checkpoint(tmp_path, wrong_dtype)
    wrong_struct = {"actor": {"w": np.zeros((4, 3), np.float32)}, "target": np.ones(2)}
    with pytest.raises(CheckpointError, match=r"checkpoint has \['critic'\].*\['target'\]"):
        restore_checkpoint(tmp_path, wrong_struct)
    extra_leaf = dict(state, more=np.zeros(1))
    with pytest.raises(CheckpointError, match="structure"):
        restore_checkpoint(tmp_path, extra_leaf)


def test_missing_run_dir_and_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        restore_checkpoint(tmp_path / "nope", {})
    assert latest_step(tmp_path / "nope") is None
    with pytest.raises(CheckpointError, match="no finalised checkpoint"):
        restore_checkpoint(tmp_path, {})
    save_checkpoint(tmp_path, 3, {"a": np.ones(2)})
    with pytest.raises(CheckpointError, match=r"step 4 .*available steps: \[3\]"):
        restore_checkpoint(tmp_path, {"a": np.ones(2)}, step=4)


def test_truncated_data_file_is_reported(tmp_path):
    state = {"w": np.random.default_rng(0).normal(size=(256, 256)).astype(np.float32)}
    path = save_checkpoint(tmp_path, 1, state)
    biggest = _data_files(path)[-1]
    with open(biggest, "r+b") as f:
        f.truncate(biggest.stat().st_size // 2)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        restore_checkpoint(tmp_path, state)


@pytest.mark.parametrize("target", ["data", "meta"])
def test_overwritten_bytes_are_reported(tmp_path, target):
    state = {"w": np.random.default_rng(1).normal(size=(128, 128)).astype(np.float32)}
    path = save_checkpoint(tmp_path, 1, state)
    victim = _data_files(path)[-1] if target == "data" else path / "meta" / "metadata"
    raw = bytearray(victim.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 64] = bytes(range(64))[: len(raw) - mid]  # same length, different bytes
    victim.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"corrupt|unreadable|format"):
        restore_checkpoint(tmp_path, state)


def test_leftover_tmp_dir_from_crash_is_ignored(tmp_path):
    state = {"a": np.arange(3.0)}
    save_checkpoint(tmp_path, 10, state)
    # A crash mid-save leaves orbax's temporary directory (and maybe a half-copied step dir).
    crashed = tmp_path / "checkpoints" / "20.orbax-checkpoint-tmp-1700000000"
    shutil.copytree(tmp_path / "checkpoints" / "10", crashed)
    (tmp_path / "checkpoints" / "30").mkdir()  # no orbax metadata -> not finalised
    assert latest_step(tmp_path) == 10 and list_steps(tmp_path) == [10]
    restored, _ = restore_checkpoint(tmp_path, state)
    np.testing.assert_array_equal(restored["a"], state["a"])
    save_checkpoint(tmp_path, 11, state)  # next save cleans up the crashed tmp dir
    assert not crashed.exists()
    assert latest_step(tmp_path) == 11


def test_keep_prunes_old_checkpoints(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, {"x": np.full(2, step, np.int64)}, extra={"s": step})
    assert list_steps(tmp_path) == [3, 4]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["3", "4"]
    x, extra = restore_checkpoint(tmp_path, {"x": np.zeros(2, np.int64)}, step=3)
    assert extra == {"s": 3} and x["x"].tolist() == [3, 3]
    save_checkpoint(tmp_path, 5, {"x": np.zeros(2, np.int64)}, keep=1)
    assert list_steps(tmp_path) == [5]


def test_resave_same_step_replaces_it(tmp_path):
    save_checkpoint(tmp_path, 7, {"x": np.zeros(2)}, extra={"v": 1})
    save_checkpoint(tmp_path, 7, {"x": np.ones(2)}, extra={"v": 2})
    x, extra = restore_checkpoint(tmp_path, {"x": np.zeros(2)})
    assert extra == {"v": 2} and x["x"].tolist() == [1.0, 1.0]


def test_save_is_synchronous_and_quiet(tmp_path, caplog):
    jax.devices()  # jax's own first-use INFO lines (its backend probe) are not the checkpoint's
    before = {t.ident for t in threading.enumerate()}
    with caplog.at_level("INFO"):
        save_checkpoint(tmp_path, 1, _state(0), extra={"a": 1})
        restore_checkpoint(tmp_path, _state(0))
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert leftover == []
    assert not [r for r in caplog.records if r.levelno < 40], caplog.text
    meta = json.loads((tmp_path / "checkpoints" / "1" / "meta" / "metadata").read_text())
    assert meta["num_leaves"] == len(jax.tree.leaves(_state(0)))


def test_late_asyncio_reports_of_a_failed_read_are_dropped(tmp_path, caplog):
    """A failed orbax read leaves failed futures that asyncio reports ("Future exception was
    never retrieved") only when they are garbage-collected, possibly long after the failure
    was raised: those naming the failed checkpoint are dropped, any other report is kept."""
    import asyncio
    import gc
    import logging

    from revflow import checkpoint as C

    where = tmp_path / "checkpoints" / "400"
    for _ in range(2):  # a second failure of the same checkpoint installs no second filter
        with pytest.raises(RuntimeError, match="boom"):
            with C._stray_tracebacks_muted(where):
                raise RuntimeError("boom")
    mine = [f for f in logging.getLogger("asyncio").filters if f == C._LateFailureReports(where)]
    assert len(mine) == 1

    def stray(path):  # a failed future, collected outside the muted window
        loop = asyncio.new_event_loop()
        fut = loop.create_future()
        fut.set_exception(ValueError(f'OUT_OF_RANGE: Error reading "leaf_000001" at "{path}"'))
        loop.close()
        del fut
        gc.collect()

    with caplog.at_level("ERROR", logger="asyncio"):
        stray(where / "state")
        assert "never retrieved" not in caplog.text
        stray(tmp_path / "elsewhere")
        assert "never retrieved" in caplog.text and "elsewhere" in caplog.text


def test_bad_inputs(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path, 1, {"a": np.ones(1)}, extra={"f": object()})
    with pytest.raises(CheckpointError, match="unsupported pytree leaf"):
        save_checkpoint(tmp_path, 1, {"a": "a string"})
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 1, {"a": np.ones(1)}, keep=0)
    assert latest_step(tmp_path) is None


def test_zero_size_leaves_round_trip_onto_the_template_sharding(tmp_path):
    """orbax refuses zero-size arrays (MJX's Data has many): they are kept as metadata and
    rebuilt; every jax leaf, typed keys included, comes back with the template's sharding."""
    sharding = NamedSharding(Mesh(np.asarray(jax.devices()[:1]), ("data",)), P("data"))
    state = {
        "mocap_pos": jax.device_put(jnp.zeros((2, 0, 3), jnp.float32), sharding),
        "empty_int": np.zeros((0,), np.int32),
        "empty_bf16": jnp.zeros((0, 2), jnp.bfloat16),
        "empty_keys": jax.random.split(jax.random.key(0), 0),
        "qpos": jax.device_put(jnp.arange(6.0).reshape(2, 3), sharding),
        "keys": jax.device_put(jax.random.split(jax.random.key(1), 2), sharding),
        "count": 3,
    }
    save_checkpoint(tmp_path, 1, state)
    meta = json.loads((tmp_path / "checkpoints" / "1" / "meta" / "metadata").read_text())
    assert meta["num_leaves"] == 7
    template = jax.tree.map(
        lambda x: (
            jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
            if isinstance(x, jax.Array)
            else x
        ),
        state,
    )
    restored, _ = restore_checkpoint(tmp_path, template)
    _assert_trees_bit_equal(restored, state)
    for name in ("mocap_pos", "qpos", "keys"):
        assert restored[name].sharding == sharding, name
    # Only zero-size leaves: nothing for orbax to write at all.
    only_empty = {"a": np.zeros((0, 2), np.float32)}
    save_checkpoint(tmp_path, 2, only_empty)
    restored, _ = restore_checkpoint(tmp_path, only_empty, step=2)
    assert restored["a"].shape == (0, 2) and restored["a"].dtype == np.float32
