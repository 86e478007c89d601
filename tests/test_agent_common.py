"""The update pieces every agent shares (revflow.agents.common), against hand computation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from revflow.agents import common, critics
from revflow.agents.base import Batch
from revflow.agents.common import advance, gradient_step
from revflow.networks import Critic


def test_gradient_step_matches_hand_sgd_with_and_without_aux():
    params = {"w": jnp.array([1.0, -2.0])}
    opt = optax.sgd(0.1)
    loss_fn = lambda p: jnp.sum(p["w"] ** 2)  # grad 2w
    step = gradient_step(loss_fn, opt, params, opt.init(params))
    np.testing.assert_allclose(step.params["w"], [0.8, -1.6], rtol=1e-6)
    assert float(step.loss) == 5.0 and step.aux is None
    np.testing.assert_allclose(float(step.grad_norm), np.sqrt(4 + 16), rtol=1e-6)
    aux_step = gradient_step(
        lambda p: (loss_fn(p), p["w"] * 3), opt, params, opt.init(params), has_aux=True
    )
    np.testing.assert_allclose(aux_step.aux, [3.0, -6.0])
    np.testing.assert_array_equal(aux_step.params["w"], step.params["w"])


def test_advance_moves_targets_by_polyak_and_counts_the_step():
    @struct.dataclass
    class S:
        actor_params: jnp.ndarray
        actor_opt: jnp.ndarray
        critic_params: jnp.ndarray
        critic_opt: jnp.ndarray
        target_critic_params: jnp.ndarray
        step: jnp.ndarray
        log_alpha: jnp.ndarray

    s = S(*(jnp.array(float(v)) for v in (1, 2, 3, 4, 10)), jnp.array(7), jnp.array(0.0))
    opt = optax.sgd(1.0)
    actor = gradient_step(lambda p: p**2, opt, s.actor_params, opt.init(s.actor_params))
    new = advance(
        s,
        actor=actor,
        critic_params=jnp.array(20.0),
        critic_opt=jnp.array(5.0),
        tau=0.1,
        log_alpha=jnp.array(-1.0),
    )
    assert float(new.actor_params) == -1.0  # 1 - 1.0 * 2 * 1
    assert float(new.target_critic_params) == 0.1 * 20.0 + 0.9 * 10.0
    assert float(new.critic_params) == 20.0 and float(new.critic_opt) == 5.0
    assert int(new.step) == 8 and float(new.log_alpha) == -1.0


def test_clip_by_member_norm_clips_each_member_alone():
    """Member 0 (norm 5) is scaled to norm 1; member 1 (norm 0.5) is left as it is."""
    grads = {"w": jnp.array([[3.0, 0.0], [0.3, 0.0]]), "b": jnp.array([[4.0], [0.4]])}
    clip = common.clip_by_member_norm(1.0)
    out, _ = clip.update(grads, clip.init(grads))
    np.testing.assert_allclose(out["w"], [[0.6, 0.0], [0.3, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(out["b"], [[0.8], [0.4]], rtol=1e-6)
    assert common.gradient_clipping(0.0, "per-critic") is not None
    with pytest.raises(ValueError, match="clip scope"):
        common.gradient_clipping(1.0, "each")


def test_critic_td_step_per_critic_gradient_is_each_critics_own():
    """per_critic: critic k's gradient is that of its own mean squared TD error, i.e. the
    ensemble-mean loss's gradient times the ensemble size; the reported loss is the same."""
    net = Critic(num_critics=2, hidden=(8,))
    rng = np.random.default_rng(0)
    f = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
    batch = Batch(f(6, 3), f(6, 2), f(6), f(6, 3), jnp.full((6,), 0.99))
    params = net.init(jax.random.PRNGKey(0), batch.obs, batch.action)
    sgd = optax.sgd(1.0)
    target = f(6)
    joint = critics.critic_td_step(net, sgd, params, sgd.init(params), batch, target)
    own = critics.critic_td_step(net, sgd, params, sgd.init(params), batch, target, per_critic=True)
    step_joint = jax.tree.map(lambda a, b: b - a, joint[0], params)
    step_own = jax.tree.map(lambda a, b: b - a, own[0], params)
    for a, b in zip(jax.tree.leaves(step_joint), jax.tree.leaves(step_own), strict=True):
        np.testing.assert_allclose(2.0 * a, b, rtol=1e-5, atol=1e-7)
    assert float(joint[2]["critic_loss"]) == pytest.approx(float(own[2]["critic_loss"]))


def test_noise_temperature_step_is_one_adam_step_on_the_entropy_gap():
    """loss = log_alpha * (H - target): its gradient is the gap, so Adam's first step moves
    log_alpha by -lr * sign(gap); the noise std is explore_noise * alpha."""
    import math

    from revflow.agents.actor_critic import TemperatureState
    from revflow.agents.noise_temperature import NoiseTemperature, NoiseTemperatureFields

    config = NoiseTemperatureFields(explore_noise=0.2, init_alpha=2.0, alpha_lr=0.01)
    rule = NoiseTemperature.make(config, target_entropy=-1.0)
    zeros = jnp.zeros(())
    state = TemperatureState(zeros, zeros, zeros, zeros, zeros, zeros, **rule.init())
    np.testing.assert_allclose(float(rule.std(state)), 0.4, rtol=1e-6)
    for entropy, sign in ((-3.0, 1.0), (0.5, -1.0)):  # below the target: alpha grows
        fields, metrics = rule.step(state, jnp.asarray(entropy))
        moved = float(fields["log_alpha"]) - math.log(2.0)
        np.testing.assert_allclose(moved, sign * 0.01, rtol=1e-4)
        np.testing.assert_allclose(float(metrics["alpha"]), 2.0, rtol=1e-6)
        np.testing.assert_allclose(float(metrics["alpha_loss"]), math.log(2.0) * (entropy + 1))
    with pytest.raises(ValueError, match=r"explore_noise=0\.0"):
        NoiseTemperatureFields(explore_noise=0.0)
