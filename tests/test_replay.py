"""Tests for revflow.replay.ReplayBuffer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revflow.replay import ReplayBuffer


def _batch(start: int, n: int, obs_dim: int = 3, act_dim: int = 2):
    """Transitions whose every field encodes its global index ``start + i``."""
    ids = np.arange(start, start + n, dtype=np.float32)
    return dict(
        obs=np.repeat(ids[:, None], obs_dim, axis=1),
        action=np.repeat(-ids[:, None], act_dim, axis=1),
        reward=ids * 10,
        next_obs=np.repeat(ids[:, None] + 0.5, obs_dim, axis=1),
        terminated=(ids % 2).astype(np.float32),
    )


def _stored_ids(buf: ReplayBuffer) -> list[int]:
    return sorted(int(x) for x in buf.state_dict()["obs"][:, 0])


def test_single_and_batch_add_shapes_and_dtypes():
    buf = ReplayBuffer(capacity=10, obs_dim=3, act_dim=2)
    assert len(buf) == 0
    buf.add(np.zeros(3), np.zeros(2), 1.0, np.ones(3), True)
    assert len(buf) == 1
    buf.add(**_batch(1, 4))
    assert len(buf) == 5
    out = buf.sample(np.random.default_rng(0), batch_size=8, num_batches=3)
    assert set(out) == {"obs", "action", "reward", "next_obs", "terminated"}
    assert out["obs"].shape == (3, 8, 3) and out["next_obs"].shape == (3, 8, 3)
    assert out["action"].shape == (3, 8, 2)
    assert out["reward"].shape == (3, 8) and out["terminated"].shape == (3, 8)
    assert all(v.dtype == np.float32 for v in out.values())
    assert set(np.unique(out["terminated"])) <= {0.0, 1.0}


def test_sampled_fields_stay_aligned():
    buf = ReplayBuffer(capacity=16, obs_dim=3, act_dim=2)
    buf.add(**_batch(0, 40))  # wraps twice
    out = buf.sample(np.random.default_rng(1), batch_size=64, num_batches=2)
    ids = out["obs"][..., 0]
    np.testing.assert_array_equal(out["action"][..., 0], -ids)
    np.testing.assert_array_equal(out["reward"], ids * 10)
    np.testing.assert_array_equal(out["next_obs"][..., 0], ids + 0.5)
    np.testing.assert_array_equal(out["terminated"], ids % 2)
    assert ids.min() >= 24 and ids.max() <= 39  # only the newest 16 survive


def test_sampling_is_uniform_and_reproducible():
    buf = ReplayBuffer(capacity=8, obs_dim=1, act_dim=1)
    buf.add(**_batch(0, 5, 1, 1))
    a = buf.sample(np.random.default_rng(3), 4000)
    b = buf.sample(np.random.default_rng(3), 4000)
    np.testing.assert_array_equal(a["obs"], b["obs"])
    counts = np.bincount(a["obs"][0, :, 0].astype(int), minlength=5)
    assert counts.shape == (5,) and counts.min() > 700  # 800 expected each, never index >= 5


def test_sample_errors():
    buf = ReplayBuffer(capacity=4, obs_dim=2, act_dim=1)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(rng, 1)
    buf.add(np.zeros(2), np.zeros(1), 0.0, np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="batch_size"):
        buf.sample(rng, 0)
    with pytest.raises(ValueError, match="num_batches"):
        buf.sample(rng, 2, num_batches=0)


def test_add_rejects_wrong_shapes():
    buf = ReplayBuffer(capacity=4, obs_dim=2, act_dim=1)
    with pytest.raises(ValueError, match="action"):
        buf.add(np.zeros(2), np.zeros(3), 0.0, np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="reward"):
        buf.add(np.zeros((2, 2)), np.zeros((2, 1)), np.zeros(3), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="obs"):
        buf.add(np.zeros((1, 2, 2)), np.zeros(1), 0.0, np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, 2, 1)


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 12),
    chunks=st.lists(st.integers(0, 20), min_size=1, max_size=8),
    single=st.booleans(),
)
def test_wraparound_keeps_newest_transitions(capacity, chunks, single):
    buf = ReplayBuffer(capacity, obs_dim=3, act_dim=2)
    total = 0
    for n in chunks:
        batch = _batch(total, n)
        if single:
            for i in range(n):
                buf.add(**{k: v[i] for k, v in batch.items()})
        else:
            buf.add(**batch)
        total += n
        assert len(buf) == min(total, capacity)
    assert _stored_ids(buf) == list(range(max(0, total - capacity), total))
    state = buf.state_dict()  # storage order; rolling by ptr gives oldest-first
    chronological = np.roll(state["obs"][:, 0], -state["ptr"] if len(buf) == capacity else 0)
    np.testing.assert_array_equal(
        chronological, np.arange(max(0, total - capacity), total, dtype=np.float32)
    )
    if total:
        out = buf.sample(np.random.default_rng(0), batch_size=5, num_batches=2)
        assert out["obs"].shape == (2, 5, 3)
        assert out["obs"].min() >= max(0, total - capacity)


@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 10), n=st.integers(0, 25), extra=st.integers(0, 12))
def test_state_dict_round_trip_then_continue(capacity, n, extra):
    a = ReplayBuffer(capacity, obs_dim=3, act_dim=2)
    a.add(**_batch(0, n))
    b = ReplayBuffer(capacity, obs_dim=3, act_dim=2)
    b.load_state_dict(a.state_dict())
    assert len(b) == len(a)
    # Both continue identically after the restore, including wrap-around.
    a.add(**_batch(n, extra))
    b.add(**_batch(n, extra))
    sa, sb = a.state_dict(), b.state_dict()
    for k in ("obs", "action", "reward", "next_obs", "terminated"):
        np.testing.assert_array_equal(sa[k], sb[k])
    if len(a):
        np.testing.assert_array_equal(
            a.sample(np.random.default_rng(5), 7)["obs"],
            b.sample(np.random.default_rng(5), 7)["obs"],
        )


def test_load_state_dict_validation_names_mismatch():
    a = ReplayBuffer(8, obs_dim=3, act_dim=2)
    a.add(**_batch(0, 5))
    state = a.state_dict()
    with pytest.raises(ValueError, match=r"capacity=8 .* capacity=6"):
        ReplayBuffer(6, 3, 2).load_state_dict(state)
    with pytest.raises(ValueError, match=r"obs_dim=3 .* obs_dim=4"):
        ReplayBuffer(8, 4, 2).load_state_dict(state)
    bad = dict(state, action=state["action"][:, :1])
    with pytest.raises(ValueError, match=r"action has shape \(5, 1\), expected \(5, 2\)"):
        ReplayBuffer(8, 3, 2).load_state_dict(bad)
    with pytest.raises(ValueError, match="missing keys: reward"):
        ReplayBuffer(8, 3, 2).load_state_dict({k: v for k, v in state.items() if k != "reward"})
    b = ReplayBuffer(8, 3, 2)
    b.add(**_batch(100, 8))
    b.load_state_dict(state)  # overwrites fully, no stale entries survive
    assert _stored_ids(b) == [0, 1, 2, 3, 4]
    assert b.sample(np.random.default_rng(0), 256)["obs"].max() < 5
    with pytest.raises(ValueError, match="ptr=2 is inconsistent"):
        ReplayBuffer(8, 3, 2).load_state_dict(dict(state, ptr=2))
    no_ptr = {k: v for k, v in state.items() if k != "ptr"}
    c = ReplayBuffer(8, 3, 2)
    c.load_state_dict(no_ptr)
    c.add(**_batch(5, 1))
    assert _stored_ids(c) == [0, 1, 2, 3, 4, 5]
