"""The update pieces every agent shares (revflow.agents.common), against hand computation."""

import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from revflow.agents.common import advance, gradient_step


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
