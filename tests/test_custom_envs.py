"""Custom environments: Gymnasium's ``gym:<module>:<Id>``, ``py:<module>:<factory>`` of a
gymnasium or dm_env environment, in-process factories, flattening of Dict observations,
actions of any bounds and shape, and one-line refusals of what is unsupported (no training
here; test_api.py trains on these envs)."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

import custom_env_pkg
from revflow import envs
from revflow.cli import main
from revflow.envs import env_info, factory_name, make_env, make_vector_env, wrap_env

FORMS = [
    "gym:custom_env_pkg:PointMass-v0",
    "py:custom_env_pkg:make_point_mass",
    "py:custom_env_pkg:make_dm_point_mass",
]


def _trajectory(env: gym.Env, actions: np.ndarray, seed: int) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, *_ = env.step(a)
        out.append(obs)
    return np.stack(out)


def test_every_form_is_the_same_task():
    """The three spellings build the same MDP: flat float32 observations (position, then
    velocity: the Dict's key order), [-1, 1] actions onto the native Box(-2, 2), 50 steps, and
    the same first episode for the same seed (the dm_env factory is seeded by ``seed``)."""
    actions = np.random.default_rng(0).uniform(-1, 1, (60, 2)).astype(np.float32)
    trajectories = []
    for name in FORMS:
        env = make_env(name, seed=3)
        assert env.observation_space == spaces.Box(-np.inf, np.inf, (4,), np.float32)
        assert env.action_space == spaces.Box(-1.0, 1.0, (2,), np.float32)
        assert env_info(env)[:2] == (4, 2)
        trajectories.append(_trajectory(env, actions[:40], seed=3))
        env.reset(seed=3)
        obs, *_ = env.step(np.ones(2, np.float32))
        # From rest a full action (force +2) gives velocity 0.1 * 2.
        np.testing.assert_allclose(obs[2:], [0.2, 0.2], rtol=1e-6)
        steps, terminated, truncated = 1, False, False
        while not (terminated or truncated):
            _, _, terminated, truncated, _ = env.step(actions[steps % 60])
            steps += 1
        assert (steps, terminated, truncated) == (custom_env_pkg.HORIZON, False, True)
        env.close()
    for other in trajectories[1:]:
        np.testing.assert_allclose(other, trajectories[0], rtol=1e-6)
    start = np.random.default_rng(3).uniform(-1.0, 1.0, 2)  # gymnasium's np_random(3)
    np.testing.assert_allclose(trajectories[0][0], [*start, 0.0, 0.0], rtol=1e-6)


def test_vector_env_of_a_factory():
    venv = make_vector_env("py:custom_env_pkg:make_dm_point_mass", 3, seed=0)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (3, 4) and obs.dtype == np.float32
    venv.close()


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("gym:custom_env_pkg:DiscretePointMass-v0", ["action space Discrete(3)", "continuous"]),
        ("gym:custom_env_pkg:TuplePointMass-v0", ["observation space Tuple(", "Dict-of-Box"]),
        ("gym:custom_env_pkg:Nope-v0", ["'Nope-v0'", "did not register it"]),
        ("gym:no_such_pkg_xyz:Env-v0", ["cannot import module 'no_such_pkg_xyz'"]),
        ("gym::Env-v0", ["malformed"]),
        ("py:custom_env_pkg", ["malformed", "py:<module>:<factory>"]),
        ("py:custom_env_pkg:nope", ["has no attribute 'nope'"]),
        ("py:custom_env_pkg:HORIZON", ["not callable"]),
        ("py:custom_env_pkg:_start", ["the factory raised TypeError"]),
        ("py:no_such_pkg_xyz:make", ["cannot import module 'no_such_pkg_xyz'"]),
    ],
)
def test_unsupported_is_refused_in_one_line(name, fragments, capsys):
    with pytest.raises(ValueError) as err:
        make_env(name)
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    # The CLI refuses it the same way, before any compute.
    assert (
        main(["train", "--algo", "sac", "--env", name, "--steps", "10", "--warmup-steps", "5"]) == 2
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragments[0] in lines[0]


class _Spaces(gym.Env):
    """A stub env with given spaces that records the actions it receives."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space
        self.received: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        self.received.append(np.asarray(action))
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.mark.parametrize(
    ("action_space", "fragment"),
    [
        (spaces.Box(-np.inf, np.inf, (2,)), "unbounded actions"),
        (spaces.Box(0, 3, (2,), np.int64), "continuous (Box) actions"),
        (spaces.MultiDiscrete([2, 3]), "MultiDiscrete"),
    ],
)
def test_wrap_env_refuses_unsupported_actions(action_space, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        wrap_env(_Spaces(spaces.Box(-1, 1, (3,)), action_space))


def test_nested_dict_and_image_observations_flatten_in_key_order():
    obs_space = spaces.Dict(
        {"b": spaces.Box(0, 1, (2, 3)), "a": spaces.Dict({"z": spaces.Box(0, 1, (1,))})}
    )
    env = wrap_env(_Spaces(obs_space, spaces.Box(-1, 1, (1,))), seed=0)
    assert env.observation_space.shape == (7,)
    raw = {"a": {"z": np.array([0.5])}, "b": np.arange(6.0).reshape(2, 3) / 10}
    flat = spaces.flatten(env.unwrapped.observation_space, raw)
    np.testing.assert_allclose(flat, [0.5, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    obs, _ = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (7,)


@settings(max_examples=25, deadline=None)
@given(
    low=st.lists(st.floats(-100, 100), min_size=1, max_size=4),
    width=st.floats(1e-3, 100),
    unit=st.floats(-1.5, 1.5),
    shape_2d=st.booleans(),
)
def test_actions_map_affinely_onto_any_bounds(low, width, unit, shape_2d):
    low_arr = np.asarray(low, np.float64)
    high_arr = low_arr + width
    shape = (len(low), 1) if shape_2d else (len(low),)
    box = spaces.Box(low_arr.reshape(shape), high_arr.reshape(shape), shape, np.float64)
    stub = _Spaces(spaces.Box(-1, 1, (2,)), box)
    env = wrap_env(stub, seed=0)
    assert env.action_space.shape == (len(low),)
    env.reset()
    env.step(np.full(len(low), unit, np.float32))
    sent = stub.received[-1]
    assert sent.shape == shape
    a = np.clip(np.float32(unit), -1.0, 1.0)
    expected = low_arr + (a + 1.0) / 2.0 * (high_arr - low_arr)
    np.testing.assert_allclose(sent.ravel(), expected, rtol=1e-5, atol=1e-4 * (1 + width))


def test_factory_names():
    name = factory_name(custom_env_pkg.make_point_mass)
    assert name == "py:custom_env_pkg:make_point_mass" and name not in envs._FACTORIES
    local = lambda: custom_env_pkg.make_point_mass()  # an in-process factory
    local_name = factory_name(local)
    assert local_name.startswith("py:test_custom_envs:") and "<lambda>" in local_name
    assert env_info(make_env(local_name))[:2] == (4, 2)
    with pytest.raises(ValueError, match="__qualname__"):
        factory_name(functools.partial(custom_env_pkg.make_dm_point_mass, seed=1))
    with pytest.raises(ValueError, match="a name or a callable"):
        factory_name("not a callable")  # type: ignore[arg-type]


def test_factory_returning_something_else_is_refused():
    envs.register_factory("py:test_custom_envs:bad", lambda: object())
    with pytest.raises(ValueError, match=r"neither a gymnasium\.Env nor a dm_env"):
        make_env("py:test_custom_envs:bad")
