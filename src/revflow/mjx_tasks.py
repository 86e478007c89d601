"""DeepMind Control suite tasks on MJX (MuJoCo in JAX): pure ``reset`` / ``step`` functions.

Each task here is the dm_control task of the same name, made jittable: the model is
dm_control's own XML (``dm_control.suite.<domain>.get_model_and_assets()``, unmodified), the
physics is ``mujoco.mjx`` (``impl="jax"``: runs on CPU and GPU), and the initial-state
distribution, observation and reward are the dm_control task's, restated in ``jax.numpy``.
So ``mjx:CheetahRun`` is the same MDP as ``dmc:cheetah-run`` up to float32 physics: the test
suite checks one step from the same state against dm_control.

=================  ====================  =====  =====  ==========================
name               dm_control task       obs    act    steps (control dt)
=================  ====================  =====  =====  ==========================
CartpoleBalance    cartpole-balance       5      1     1000 (0.01 s, RK4)
CartpoleSwingup    cartpole-swingup       5      1     1000 (0.01 s, RK4)
CheetahRun         cheetah-run           17      6     1000 (0.01 s)
WalkerStand        walker-stand          24      6     1000 (0.025 s = 10 x 0.0025)
WalkerWalk         walker-walk           24      6     1000
WalkerRun          walker-run            24      6     1000
=================  ====================  =====  =====  ==========================

Timing of derived quantities. ``mjx.step`` runs ``forward`` (kinematics, sensors, ...) and
then integrates, so after it the positions/velocities are new but ``xmat``, ``xpos`` and
``sensordata`` still belong to the previous state. dm_control's step ends with
``mj_step1``, which brings them up to date; :func:`_sync` does the same with the cheap
position/velocity stages (kinematics, centre-of-mass quantities, velocity sensors), no
collision or constraint solve.

The energy flag that cartpole.xml enables (a diagnostic, no effect on the dynamics) is
switched off: MJX does not implement it.

A task whose physics becomes non-finite reports ``terminated`` (and a finite observation);
dm_control raises ``PhysicsError`` there instead.

Task protocol (what :mod:`revflow.jax_envs` vectorises), for ONE environment:
``reset(key) -> (physics, obs)`` and ``step(physics, action) -> (physics, obs, reward,
terminated)`` with ``action`` in [-1, 1]^act_dim (mapped affinely onto the actuator's
``ctrlrange``), plus ``name``, ``obs_dim``, ``act_dim`` and ``episode_length``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from revflow.dmc_suite import import_suite

__all__ = ["TASKS", "MjxTask", "make_task", "tolerance"]

Array = jax.Array


# --------------------------------------------------------------------------------------------
# dm_control's reward shaping (dm_control.utils.rewards.tolerance), in jax.numpy
# --------------------------------------------------------------------------------------------


def _sigmoid(d: Array, value_at_1: float, kind: str) -> Array:
    """dm_control's sigmoids of the scaled distance ``d`` (value 1 at 0, value_at_1 at 1)."""
    if kind == "gaussian":
        scale = math.sqrt(-2.0 * math.log(value_at_1))
        return jnp.exp(-0.5 * (d * scale) ** 2)
    if kind == "linear":
        x = d * (1.0 - value_at_1)
        return jnp.where(jnp.abs(x) < 1.0, 1.0 - x, 0.0)
    if kind == "quadratic":
        x = d * math.sqrt(1.0 - value_at_1)
        return jnp.where(jnp.abs(x) < 1.0, 1.0 - x**2, 0.0)
    raise ValueError(f"unsupported sigmoid {kind!r}; expected gaussian, linear or quadratic")


def tolerance(
    x: Array,
    bounds: tuple[float, float] = (0.0, 0.0),
    margin: float = 0.0,
    sigmoid: str = "gaussian",
    value_at_margin: float = 0.1,
) -> Array:
    """1 inside ``bounds``, decaying with the distance to them over ``margin`` (dm_control)."""
    lower, upper = bounds
    in_bounds = (lower <= x) & (x <= upper)
    if margin == 0:
        return jnp.where(in_bounds, 1.0, 0.0)
    d = jnp.where(x < lower, lower - x, x - upper) / margin
    return jnp.where(in_bounds, 1.0, _sigmoid(d, value_at_margin, sigmoid))


# --------------------------------------------------------------------------------------------
# The task class
# --------------------------------------------------------------------------------------------


@functools.cache
def _mjx() -> Any:
    """``mujoco.mjx``, imported once without its "Failed to import warp" prints (the optional
    warp backend is not used here)."""
    with contextlib.redirect_stdout(io.StringIO()):
        from mujoco import mjx
    return mjx


def _sync(m: Any, d: Any) -> Any:
    """Bring positions, orientations and velocity sensors up to date with qpos/qvel."""
    mjx = _mjx()

    d = mjx.kinematics(m, d)
    d = mjx.com_pos(m, d)
    d = mjx.com_vel(m, d)
    return mjx.sensor_vel(m, d)


class MjxTask:
    """One dm_control task on MJX (module docstring). Built by :func:`make_task`."""

    def __init__(
        self,
        name: str,
        domain: str,
        n_substeps: int,
        episode_length: int,
        init_fn: Callable[[MjxTask, Array], tuple[Array, Array]],
        obs_fn: Callable[[MjxTask, Any], Array],
        reward_fn: Callable[[MjxTask, Any], Array],
        stabilize_steps: int = 0,
    ):
        import mujoco

        mjx = _mjx()

        xml, assets = getattr(import_suite(), domain).get_model_and_assets()
        self.mj_model = mujoco.MjModel.from_xml_string(xml, assets)
        # The energy diagnostic (cartpole.xml enables it) does not affect the dynamics and
        # MJX does not implement it.
        self.mj_model.opt.enableflags &= ~int(mujoco.mjtEnableBit.mjENBL_ENERGY)
        self.model = mjx.put_model(self.mj_model, impl="jax")
        self.name = name
        self.n_substeps = n_substeps
        self.episode_length = episode_length
        self.stabilize_steps = stabilize_steps
        self._init_fn, self._obs_fn, self._reward_fn = init_fn, obs_fn, reward_fn
        m = self.mj_model
        self.act_dim = int(m.nu)
        limited = m.actuator_ctrllimited.astype(bool)
        low = np.where(limited, m.actuator_ctrlrange[:, 0], -1.0)
        high = np.where(limited, m.actuator_ctrlrange[:, 1], 1.0)
        self._ctrl_center = jnp.asarray((high + low) / 2.0, jnp.float32)
        self._ctrl_half = jnp.asarray((high - low) / 2.0, jnp.float32)
        self._data0 = mjx.make_data(self.mj_model, impl="jax")
        self.obs_dim = int(jax.eval_shape(lambda: self._obs_fn(self, self._data0)).shape[0])

    # -- helpers used by the task definitions -------------------------------------------------

    def body(self, name: str) -> int:
        import mujoco

        return mujoco.mj_name2id(self.mj_model, mujoco.mjtObj.mjOBJ_BODY, name)

    def sensor(self, d: Any, name: str) -> Array:
        import mujoco

        i = mujoco.mj_name2id(self.mj_model, mujoco.mjtObj.mjOBJ_SENSOR, name)
        adr, dim = int(self.mj_model.sensor_adr[i]), int(self.mj_model.sensor_dim[i])
        return d.sensordata[adr : adr + dim]

    # -- the task protocol ------------------------------------------------------------------

    def _physics_step(self, d: Any, n: int) -> Any:
        mjx = _mjx()

        if n == 1:
            return mjx.step(self.model, d)
        return jax.lax.fori_loop(0, n, lambda _, x: mjx.step(self.model, x), d)

    def reset(self, key: Array) -> tuple[Any, Array]:
        mjx = _mjx()

        qpos, qvel = self._init_fn(self, key)
        d = self._data0.replace(qpos=qpos.astype(jnp.float32), qvel=qvel.astype(jnp.float32))
        if self.stabilize_steps:
            d = mjx.forward(self.model, d)
            d = self._physics_step(d, self.stabilize_steps)
            d = d.replace(time=jnp.zeros_like(d.time))
        d = mjx.forward(self.model, d)
        return d, self._obs_fn(self, d)

    def step(self, d: Any, action: Array) -> tuple[Any, Array, Array, Array]:
        a = jnp.clip(action.astype(jnp.float32), -1.0, 1.0)
        d = d.replace(ctrl=self._ctrl_center + self._ctrl_half * a)
        d = _sync(self.model, self._physics_step(d, self.n_substeps))
        obs = self._obs_fn(self, d)
        reward = self._reward_fn(self, d).astype(jnp.float32)
        finite = jnp.all(jnp.isfinite(d.qpos)) & jnp.all(jnp.isfinite(d.qvel))
        finite &= jnp.all(jnp.isfinite(obs)) & jnp.isfinite(reward)
        obs = jnp.where(finite, obs, 0.0)
        reward = jnp.where(finite, reward, 0.0)
        return d, obs, reward, ~finite


# --------------------------------------------------------------------------------------------
# Task definitions (dm_control.suite.cartpole / cheetah / walker)
# --------------------------------------------------------------------------------------------


def _cartpole_init(swing_up: bool) -> Callable[[MjxTask, Array], tuple[Array, Array]]:
    def init(task: MjxTask, key: Array) -> tuple[Array, Array]:
        nq, nv = task.mj_model.nq, task.mj_model.nv
        k1, k2, k3 = jax.random.split(key, 3)
        if swing_up:
            slider = 0.01 * jax.random.normal(k1, ())
            hinge = jnp.pi + 0.01 * jax.random.normal(k2, ())
            qpos = jnp.zeros(nq).at[0].set(slider).at[1].set(hinge)
        else:
            slider = jax.random.uniform(k1, (), minval=-0.1, maxval=0.1)
            rest = jax.random.uniform(k2, (nq - 1,), minval=-0.034, maxval=0.034)
            qpos = jnp.concatenate([slider[None], rest])
        return qpos, 0.01 * jax.random.normal(k3, (nv,))

    return init


def _cartpole_obs(task: MjxTask, d: Any) -> Array:
    # position: cart x, then (cos, sin) of each pole from its world frame; velocity: qvel.
    return jnp.concatenate([d.qpos[:1], d.xmat[2:, 2, 2], d.xmat[2:, 0, 2], d.qvel])


def _cartpole_reward(task: MjxTask, d: Any) -> Array:
    upright = (d.xmat[2:, 2, 2] + 1.0) / 2.0
    centered = (1.0 + tolerance(d.qpos[0], margin=2.0)) / 2.0
    small_control = tolerance(d.ctrl[0], margin=1.0, value_at_margin=0.0, sigmoid="quadratic")
    small_control = (4.0 + small_control) / 5.0
    small_velocity = (1.0 + jnp.min(tolerance(d.qvel[1:], margin=5.0))) / 2.0
    return jnp.mean(upright) * small_control * small_velocity * centered


def _limited_and_rotational_init(task: MjxTask, key: Array) -> tuple[Array, Array]:
    """dm_control's ``randomize_limited_and_rotational_joints`` for hinge/slide joints:
    limited joints uniform in their range, unlimited hinges uniform in [-pi, pi]."""
    import mujoco

    m = task.mj_model
    hinge, slide = mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE
    if not np.all(np.isin(m.jnt_type, (hinge, slide))):
        raise NotImplementedError(f"{task.name}: only hinge and slide joints are supported")
    limited = m.jnt_limited.astype(bool)
    low = np.where(limited, m.jnt_range[:, 0], -np.pi)
    high = np.where(limited, m.jnt_range[:, 1], np.pi)
    randomized = limited | (m.jnt_type == hinge)
    u = jax.random.uniform(key, (m.njnt,), minval=low, maxval=high)
    qpos = jnp.asarray(m.qpos0, jnp.float32)
    qpos = qpos.at[m.jnt_qposadr].set(jnp.where(randomized, u, qpos[m.jnt_qposadr]))
    return qpos, jnp.zeros(m.nv)


def _cheetah_init(task: MjxTask, key: Array) -> tuple[Array, Array]:
    """Limited joints uniform in their range (the root stays at 0); then 200 steps."""
    m = task.mj_model
    limited = m.jnt_limited.astype(bool)
    u = jax.random.uniform(key, (m.njnt,), minval=m.jnt_range[:, 0], maxval=m.jnt_range[:, 1])
    qpos = jnp.zeros(m.nq).at[m.jnt_qposadr].set(jnp.where(limited, u, 0.0))
    return qpos, jnp.zeros(m.nv)


def _cheetah_obs(task: MjxTask, d: Any) -> Array:
    return jnp.concatenate([d.qpos[1:], d.qvel])


def _cheetah_reward(task: MjxTask, d: Any) -> Array:
    speed = task.sensor(d, "torso_subtreelinvel")[0]
    return tolerance(speed, (10.0, math.inf), margin=10.0, value_at_margin=0.0, sigmoid="linear")


def _walker_obs(task: MjxTask, d: Any) -> Array:
    torso = task.body("torso")
    orientations = d.xmat[1:][:, (0, 0), (0, 2)].reshape(-1)
    return jnp.concatenate([orientations, d.xpos[torso, 2:3], d.qvel])


def _walker_reward(move_speed: float) -> Callable[[MjxTask, Any], Array]:
    stand_height = 1.2

    def reward(task: MjxTask, d: Any) -> Array:
        torso = task.body("torso")
        standing = tolerance(d.xpos[torso, 2], (stand_height, math.inf), margin=stand_height / 2)
        upright = (1.0 + d.xmat[torso, 2, 2]) / 2.0
        stand_reward = (3.0 * standing + upright) / 4.0
        if move_speed == 0:
            return stand_reward
        speed = task.sensor(d, "torso_subtreelinvel")[0]
        move = tolerance(
            speed, (move_speed, math.inf), margin=move_speed / 2, value_at_margin=0.5,
            sigmoid="linear",
        )  # fmt: skip
        return stand_reward * (5.0 * move + 1.0) / 6.0

    return reward


#: name -> (domain, substeps, episode steps, init, obs, reward, stabilisation steps).
TASKS: dict[str, tuple[Any, ...]] = {
    "CartpoleBalance": ("cartpole", 1, 1000, _cartpole_init(False), _cartpole_obs,
                        _cartpole_reward, 0),
    "CartpoleSwingup": ("cartpole", 1, 1000, _cartpole_init(True), _cartpole_obs,
                        _cartpole_reward, 0),
    "CheetahRun": ("cheetah", 1, 1000, _cheetah_init, _cheetah_obs, _cheetah_reward, 200),
    "WalkerStand": ("walker", 10, 1000, _limited_and_rotational_init, _walker_obs,
                    _walker_reward(0.0), 0),
    "WalkerWalk": ("walker", 10, 1000, _limited_and_rotational_init, _walker_obs,
                   _walker_reward(1.0), 0),
    "WalkerRun": ("walker", 10, 1000, _limited_and_rotational_init, _walker_obs,
                  _walker_reward(8.0), 0),
}  # fmt: skip

#: The dm_control name of each task (``mjx:CheetahRun`` <-> ``dmc:cheetah-run``).
DMC_NAMES: dict[str, str] = {
    "CartpoleBalance": "cartpole-balance",
    "CartpoleSwingup": "cartpole-swingup",
    "CheetahRun": "cheetah-run",
    "WalkerStand": "walker-stand",
    "WalkerWalk": "walker-walk",
    "WalkerRun": "walker-run",
}


@functools.cache
def make_task(name: str) -> MjxTask:
    """The task ``name`` (a key of :data:`TASKS`); built once per process."""
    if name not in TASKS:
        raise ValueError(f"unknown MJX task {name!r}; available: {', '.join(sorted(TASKS))}")
    domain, substeps, length, init, obs, reward, stabilize = TASKS[name]
    return MjxTask(name, domain, substeps, length, init, obs, reward, stabilize)
