"""Tests for revflow.envs: naming, spaces, seeding, termination semantics, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from revflow import envs
from revflow.envs import EnvInfo, env_info, list_envs, make_env, make_vector_env

DMC_NAMES = ["dmc:cheetah-run", "dmc:cartpole-swingup", "dmc:finger-turn_hard",
             "dmc:ball_in_cup-catch", "dmc:stacker-stack_2"]  # fmt: skip
GYM_NAMES = ["gym:HalfCheetah-v5", "gym:Hopper-v5", "gym:Pendulum-v1"]


def _rollout(env: gym.Env, actions: np.ndarray, seed: int | None = None):
    obs, _ = env.reset(seed=seed)
    traj = [obs]
    rewards = []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        traj.append(obs)
        rewards.append(r)
        if term or trunc:
            break
    return np.stack(traj), np.asarray(rewards)


@pytest.mark.parametrize("name", DMC_NAMES + GYM_NAMES)
def test_spaces_and_step_contract(name):
    env = make_env(name, seed=0)
    try:
        obs_dim, act_dim, max_steps = env_info(env)
        assert isinstance(env_info(env), EnvInfo)
        obs_space, act_space = env.observation_space, env.action_space
        assert isinstance(obs_space, gym.spaces.Box) and obs_space.dtype == np.float32
        assert obs_space.shape == (obs_dim,)
        assert isinstance(act_space, gym.spaces.Box) and act_space.dtype == np.float32
        assert act_space.shape == (act_dim,)
        np.testing.assert_array_equal(act_space.low, -1.0)
        np.testing.assert_array_equal(act_space.high, 1.0)
        assert max_steps is not None and max_steps > 0
        obs, info = env.reset()
        assert obs.dtype == np.float32 and obs.shape == (obs_dim,)
        assert isinstance(info, dict)
        obs, r, term, trunc, _ = env.step(act_space.sample())
        assert obs.dtype == np.float32 and obs.shape == (obs_dim,)
        assert np.isfinite(float(r))
        assert isinstance(term, bool) and isinstance(trunc, bool)
    finally:
        env.close()


def test_known_dimensions():
    assert tuple(env_info(make_env("dmc:cheetah-run"))) == (17, 6, 1000)
    assert tuple(env_info(make_env("dmc:finger-turn_hard"))) == (12, 2, 1000)
    assert tuple(env_info(make_env("gym:HalfCheetah-v5"))) == (17, 6, 1000)
    assert tuple(env_info(make_env("gym:Pendulum-v1"))) == (3, 1, 200)


def test_list_envs_covers_every_dmc_task_and_gym_subset():
    from dm_control import suite

    names = list_envs()
    assert len(names) == len(set(names))
    for domain, task in suite.ALL_TASKS:
        assert f"dmc:{domain}-{task}" in names
    for n in ("gym:HalfCheetah-v5", "gym:Humanoid-v5", "gym:Pendulum-v1"):
        assert n in names
    assert "gym:CartPole-v1" not in names  # discrete actions


@pytest.mark.parametrize("name", ["dmc:finger-turn_hard", "dmc:cartpole-swingup", *GYM_NAMES])
def test_same_seed_same_trajectory(name):
    rng = np.random.default_rng(0)
    e1, e2, e3 = make_env(name, seed=7), make_env(name, seed=7), make_env(name, seed=8)
    actions = rng.uniform(-1, 1, size=(30, e1.action_space.shape[0])).astype(np.float32)
    o1, r1 = _rollout(e1, actions)
    o2, r2 = _rollout(e2, actions)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    o3, _ = _rollout(e3, actions)
    assert not np.array_equal(o1[0], o3[0]), "different seeds should give different starts"
    # reset(seed=s) on an env built with another seed reproduces make_env(name, s).
    o4, r4 = _rollout(e3, actions, seed=7)
    np.testing.assert_array_equal(o1, o4)
    np.testing.assert_array_equal(r1, r4)
    # and a second unseeded episode continues the RNG stream (differs from the first)
    o5, _ = _rollout(e1, actions[:1])
    assert not np.array_equal(o1[0], o5[0])


def test_dmc_time_limit_is_truncation_not_termination():
    env = make_env("dmc:cartpole-balance", seed=0)
    env.reset()
    a = np.zeros(env.action_space.shape, np.float32)
    steps, term, trunc = 0, False, False
    while not (term or trunc):
        _, _, term, trunc, info = env.step(a)
        steps += 1
    assert steps == env_info(env).max_episode_steps == 1000
    assert trunc and not term and info["discount"] == 1.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step(a)


def test_dmc_discount_zero_is_termination():
    env = make_env("dmc:cheetah-run", seed=0)
    env.reset()
    # Make the task report a terminal state (dm_control: discount 0 at a LAST step).
    env.unwrapped.dm_env.task.get_termination = lambda physics: 0.0
    _, _, term, trunc, info = env.step(env.action_space.sample())
    assert term and not trunc and info["discount"] == 0.0


def test_gym_termination_passthrough():
    env = make_env("gym:Hopper-v5", seed=0)
    env.reset()
    term = trunc = False
    for _ in range(200):  # hopper falls quickly under maximal torques
        _, _, term, trunc, _ = env.step(np.ones(env.action_space.shape, np.float32))
        if term or trunc:
            break
    assert term and not trunc


def test_gym_actions_rescaled_and_clipped_to_native_bounds():
    env = make_env("gym:Pendulum-v1", seed=0)  # native torque bounds [-2, 2]
    env.reset()
    for a, expected in [(0.5, 1.0), (1.0, 2.0), (-1.0, -2.0), (5.0, 2.0), (-7.0, -2.0)]:
        env.step(np.array([a], np.float32))
        assert env.unwrapped.last_u == pytest.approx(expected)


def test_dmc_actions_reach_physics():
    env = make_env("dmc:cheetah-run", seed=0)  # native bounds [-1, 1]
    env.reset()
    env.step(np.full(6, 3.0, np.float32))
    np.testing.assert_allclose(env.unwrapped.physics.data.ctrl, 1.0)
    env.step(np.full(6, -0.25, np.float32))
    np.testing.assert_allclose(env.unwrapped.physics.data.ctrl, -0.25)
    lqr = make_env("dmc:lqr-lqr_2_1", seed=0)  # effectively unbounded spec: no rescaling
    lqr.reset()
    lqr.step(np.array([0.5], np.float32))
    np.testing.assert_allclose(lqr.unwrapped.physics.data.ctrl, 0.5)


def test_dmc_env_is_gymnasium_env_with_spec():
    env = make_env("dmc:ball_in_cup-catch", seed=1)
    assert isinstance(env, gym.Env) and isinstance(env, envs.DMCEnv)
    assert env.spec.id == "dmc:ball_in_cup-catch"
    assert env.render() is None  # not built for rendering


def test_vector_env_seeds_and_shapes():
    name = "dmc:finger-turn_hard"
    venv = make_vector_env(name, num_envs=3, seed=5)
    assert isinstance(venv, gym.vector.SyncVectorEnv)
    assert tuple(env_info(venv)) == (12, 2, 1000)
    obs, _ = venv.reset()
    assert obs.shape == (3, 12) and obs.dtype == np.float32
    for i in range(3):
        np.testing.assert_array_equal(obs[i], make_env(name, seed=5 + i).reset()[0])
    obs, r, term, trunc, _ = venv.step(np.zeros((3, 2), np.float32))
    assert obs.shape == (3, 12) and r.shape == (3,) and term.shape == trunc.shape == (3,)
    venv.close()
    gvenv = make_vector_env("gym:Pendulum-v1", num_envs=2, seed=0)
    assert tuple(env_info(gvenv)) == (3, 1, 200)
    with pytest.raises(ValueError, match="num_envs"):
        make_vector_env(name, num_envs=0)


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("mujoco:cheetah-run", ["prefix", "dmc:", "gym:"]),
        ("cheetah-run", ["prefix"]),
        ("dmc:cheeta-run", ["domain", "cheetah", "ball_in_cup", "Did you mean"]),
        ("dmc:cheetah-walk", ["task", "Tasks of 'cheetah': run"]),
        ("dmc:finger", ["Missing task", "turn_hard"]),
        ("gym:HalfCheeta-v5", ["Unknown Gymnasium id", "gym:HalfCheetah-v5"]),
        ("gym:CartPole-v1", ["continuous", "Pendulum-v1"]),
    ],
)
def test_errors_list_what_is_available(name, fragments, monkeypatch):
    if not name.endswith("CartPole-v1"):  # name errors come before any construction
        monkeypatch.setattr(envs, "DMCEnv", None)
        monkeypatch.setattr(envs.gym, "make", None)
    with pytest.raises(ValueError) as err:
        make_env(name)
    for fragment in fragments:
        assert fragment in str(err.value)
    with pytest.raises(ValueError):
        make_vector_env(name, 2)


def test_missing_dm_control_names_pip_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "dm_control", None)
    with pytest.raises(ImportError, match="pip install dm_control"):
        make_env("dmc:cheetah-run")


def test_missing_gym_dependency_names_pip_package(monkeypatch):
    def fail(*args, **kwargs):
        raise gym.error.DependencyNotInstalled("mujoco is not installed")

    monkeypatch.setattr(envs.gym, "make", fail)
    with pytest.raises(ImportError, match=r"pip install gymnasium\[mujoco\]"):
        make_env("gym:HalfCheetah-v5")


def test_mujoco_gl_defaults_to_egl_only_when_rendering(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "placeholder")  # so monkeypatch restores the original
    monkeypatch.delenv("MUJOCO_GL")
    make_env("gym:Pendulum-v1")
    assert "MUJOCO_GL" not in os.environ
    make_env("gym:Pendulum-v1", render=True)
    assert os.environ["MUJOCO_GL"] == "egl"
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    make_env("gym:Pendulum-v1", render=True)
    assert os.environ["MUJOCO_GL"] == "osmesa"


def test_module_import_is_lazy():
    code = "import sys, revflow.envs; assert 'dm_control' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_render_rgb_array_when_backend_available():
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}  # exercise the default
    code = (
        "from revflow.envs import make_env\n"
        "e = make_env('dmc:cartpole-swingup', 0, render=True); e.reset()\n"
        "im = e.render(); assert im.ndim == 3 and im.shape[2] == 3 and im.dtype.name == 'uint8'\n"
        "g = make_env('gym:Hopper-v5', 0, render=True); g.reset()\n"
        "im2 = g.render(); assert im2.ndim == 3 and im2.shape[2] == 3\n"
        "print('rendered', im.shape, im2.shape)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    if out.returncode != 0:
        pytest.skip(f"no working MuJoCo GL backend here: {out.stderr.strip()[-200:]}")
    assert "rendered" in out.stdout
