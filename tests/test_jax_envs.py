"""JAX-native (MJX) environments: names, the batched functional wrapper, and agreement with
dm_control's native tasks from the same state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from revflow import envs, jax_envs
from revflow.envs import env_info, list_envs, make_env
from revflow.mjx_tasks import DMC_NAMES, TASKS, tolerance

pytestmark = pytest.mark.usefixtures("fast_compile")


def test_names_are_listed_and_unknown_names_fail_before_any_construction(monkeypatch):
    names = list_envs()
    for task in ("CheetahRun", "WalkerWalk", "CartpoleSwingup"):
        assert f"mjx:{task}" in names
    monkeypatch.setattr(jax_envs, "VecEnv", None)  # nothing may be built for a bad name
    with pytest.raises(ValueError, match=r"Unknown JAX-native environment 'mjx:CheetaRun'"):
        make_env("mjx:CheetaRun", num_envs=4)
    with pytest.raises(ValueError, match="mjx:CheetahRun"):  # the error lists what exists
        make_env("mjx:Nope")
    with pytest.raises(ValueError, match="num_envs"):
        make_env("dmc:cheetah-run", num_envs=4)
    with pytest.raises(ValueError, match="JAX-native"):
        envs.make_vector_env("mjx:CheetahRun", 2)
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        jax_envs.make("CheetahRun", num_envs=0)


def test_tolerance_matches_dm_control():
    from dm_control.utils import rewards

    x = np.linspace(-4.0, 14.0, 181)
    cases = [
        {"bounds": (10.0, np.inf), "margin": 10.0, "value_at_margin": 0.0, "sigmoid": "linear"},
        {"margin": 2.0},
        {"margin": 1.0, "value_at_margin": 0.0, "sigmoid": "quadratic"},
        {"bounds": (1.2, np.inf), "margin": 0.6},
        {"bounds": (1.0, np.inf), "margin": 0.5, "value_at_margin": 0.5, "sigmoid": "linear"},
    ]
    for kw in cases:
        np.testing.assert_allclose(
            np.asarray(tolerance(jnp.asarray(x), **kw)), rewards.tolerance(x, **kw), atol=1e-6
        )


@pytest.fixture(scope="module")
def cartpole():
    env = make_env("mjx:CartpoleSwingup", num_envs=3, episode_length=3)
    return env, jax.jit(env.reset), jax.jit(env.step)


def test_batched_env_shapes_rewards_auto_reset_and_determinism(cartpole):
    env, reset, step = cartpole
    assert isinstance(env, jax_envs.VecEnv)
    assert tuple(env_info(env)) == (5, 1, 3)
    assert TASKS["CartpoleSwingup"][2] == 1000  # the task's own limit; 3 is the override

    s0 = reset(jax.random.key(0))
    assert s0.obs.shape == (3, 5) and s0.obs.dtype == jnp.float32
    # Determinism for a fixed key; different keys give different initial states.
    np.testing.assert_array_equal(s0.obs, reset(jax.random.key(0)).obs)
    assert not np.allclose(s0.obs, reset(jax.random.key(1)).obs)
    assert len({tuple(np.round(o, 6)) for o in np.asarray(s0.obs)}) == 3  # envs differ

    s, obs_seen, firsts = s0, [], []
    for t in range(7):
        action = jnp.full((3, 1), 2.0 if t % 2 else -0.5, jnp.float32)  # 2.0: clipped
        prev_obs = s.obs
        s, out = step(s, action)
        assert out.next_obs.shape == (3, 5) and out.reward.shape == (3,)
        assert np.all((np.asarray(out.reward) >= 0) & (np.asarray(out.reward) <= 1))
        assert not np.any(out.terminated)
        if t % 3 == 2:  # step 3 of an episode: truncated (a time limit, not a terminal)
            assert np.all(out.truncated) and np.all(out.done)
            np.testing.assert_array_equal(out.episode_length, 3)
            assert np.all(np.asarray(out.episode_return) > 0)
            # Auto-reset: state.obs is a new episode's first observation, next_obs the old
            # episode's last one; the new start is a swing-up start (pole down, cos ~ -1).
            assert not np.allclose(s.obs, out.next_obs)
            assert np.all(np.asarray(s.obs)[:, 1] < -0.99)
            np.testing.assert_array_equal(s.step_count, 0)
            firsts.append(np.asarray(s.obs))
        else:
            assert not np.any(out.done)
            np.testing.assert_array_equal(s.obs, out.next_obs)
            np.testing.assert_array_equal(out.episode_return, 0.0)
        obs_seen.append(np.asarray(prev_obs))
    # Every episode starts from a fresh random state.
    assert not np.allclose(firsts[0], firsts[1])
    assert not np.allclose(firsts[0], s0.obs)


def test_one_step_matches_dm_control_from_the_same_state(cartpole):
    _, reset, step = cartpole
    native = make_env("dmc:" + DMC_NAMES["CartpoleSwingup"], seed=0)
    native.reset()
    physics = native.physics
    s = reset(jax.random.key(3))
    rng = np.random.default_rng(0)
    for _ in range(2):
        # Copy env 0's state into dm_control, step both with the same action.
        physics.data.qpos[:] = np.asarray(s.physics.qpos[0])
        physics.data.qvel[:] = np.asarray(s.physics.qvel[0])
        mujoco.mj_forward(physics.model.ptr, physics.data.ptr)
        obs_native = native._flatten(native.dm_env.task.get_observation(physics))
        np.testing.assert_allclose(np.asarray(s.obs[0]), obs_native, atol=1e-5)
        action = rng.uniform(-1, 1, (3, 1)).astype(np.float32)
        s, out = step(s, jnp.asarray(action))
        next_obs, reward, *_ = native.step(action[0])
        np.testing.assert_allclose(np.asarray(out.next_obs[0]), next_obs, atol=1e-5)
        np.testing.assert_allclose(float(out.reward[0]), reward, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize(
    "task", ["CheetahRun", pytest.param("WalkerWalk", marks=pytest.mark.extended)]
)
def test_contact_tasks_match_dm_control_from_the_same_state(task):
    """~40 s per task on a 2-core CPU (MJX compile)."""
    from revflow.mjx_tasks import make_task

    t = make_task(task)
    reset, step = jax.jit(t.reset), jax.jit(t.step)
    native = make_env("dmc:" + DMC_NAMES[task], seed=0)
    native.reset()
    physics = native.physics
    d, obs = reset(jax.random.key(0))
    rng = np.random.default_rng(1)
    for _ in range(3):
        physics.data.qpos[:] = np.asarray(d.qpos)
        physics.data.qvel[:] = np.asarray(d.qvel) + rng.normal(0, 1.0, t.mj_model.nv)
        mujoco.mj_forward(physics.model.ptr, physics.data.ptr)
        d = d.replace(qvel=jnp.asarray(physics.data.qvel, jnp.float32))
        action = rng.uniform(-1, 1, t.act_dim).astype(np.float32)
        d, obs, reward, terminated = step(d, jnp.asarray(action))
        next_obs, native_reward, *_ = native.step(action)
        np.testing.assert_allclose(np.asarray(obs), next_obs, atol=2e-3, rtol=2e-3)
        np.testing.assert_allclose(float(reward), native_reward, atol=2e-3)
        assert not bool(terminated)
