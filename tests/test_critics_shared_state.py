"""The critic with its state product shared (``shared_state_q_values``): the same function as
``networks.Critic`` up to float reassociation, values and action gradients, at every
broadcasting layout the agents use; and rfm's update with it equals the update without it."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revflow.agents.base import Batch
from revflow.agents.critics import CriticEnsemble, shared_state_q_values
from revflow.agents.registry import make_agent, make_config

OBS, ACT = 5, 3


def _ensemble(
    shared: bool, hidden=(32, 32), num_critics: int = 2, activation: str = "relu"
) -> CriticEnsemble:
    return CriticEnsemble.make(
        num_critics, hidden, "orthogonal", 1e-3, 10.0, "per-critic", activation,
        shared_state_product=shared,
    )  # fmt: skip


def _params(hidden=(32, 32), num_critics: int = 2):
    return _ensemble(False, hidden, num_critics).init(jax.random.key(0), OBS, ACT)


#: (obs shape, action shape) of the layouts the agents use.
LAYOUTS = (
    ((16, OBS), (16, ACT)),  # TD step / target: one action per state
    ((16, 1, OBS), (16, 7, ACT)),  # particles of a state
    ((OBS,), (9, ACT)),  # reverse samples of one state (inside the estimator's vmap)
    ((OBS,), (ACT,)),  # one pair
    ((4, 1, OBS), (1, 6, ACT)),  # both broadcast
)


@pytest.mark.parametrize("activation", ["relu", "mish"])
def test_equals_critic_apply(activation: str):
    net = _ensemble(False, activation=activation).net
    params = net.init(jax.random.key(0), jnp.zeros((1, OBS)), jnp.zeros((1, ACT)))
    keys = jax.random.split(jax.random.key(1), 2 * len(LAYOUTS))
    inputs = [
        (jax.random.normal(keys[2 * i], o), jnp.tanh(jax.random.normal(keys[2 * i + 1], a)))
        for i, (o, a) in enumerate(LAYOUTS)
    ]

    @jax.jit
    def both(params, inputs):
        return [
            (net.apply(params, o, a), shared_state_q_values(params, o, a, activation))
            for o, a in inputs
        ]

    for want, got in both(params, inputs):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@settings(max_examples=5, deadline=None)
@given(
    hidden=st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
    num_critics=st.integers(1, 3),
    k=st.integers(1, 5),
)
def test_value_and_action_gradient_equal(hidden, num_critics, k):
    """Any depth, width and ensemble size: min-Q and its gradient in the action agree."""
    params = _params(hidden, num_critics)
    shared, plain = _ensemble(True, hidden, num_critics), _ensemble(False, hidden, num_critics)
    k_obs, k_act = jax.random.split(jax.random.key(k))
    obs = jax.random.normal(k_obs, (OBS,))
    act = jax.random.normal(k_act, (k, ACT))

    @jax.jit
    def value_and_grad(params, obs, act):
        out = []
        for critic in (shared, plain):
            f = jax.value_and_grad(lambda a, c=critic: c.q_min(params, obs, jnp.tanh(a)))
            out.append(jax.vmap(f)(act))
        return out

    got, want = value_and_grad(params, obs, act)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_parameter_gradient_equal():
    """The custom gradient of the narrow action product also gives the kernels' gradient."""
    params, net = _params(), _ensemble(False).net
    k_obs, k_act = jax.random.split(jax.random.key(2))
    obs, act = jax.random.normal(k_obs, (6, 1, OBS)), jax.random.normal(k_act, (6, 4, ACT))

    @jax.jit
    def grads(params):
        return [
            jax.grad(lambda p, f=f: jnp.sum(jnp.sin(f(p, obs, act))))(params)
            for f in (shared_state_q_values, net.apply)
        ]

    got, want = grads(params)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_rejects_other_structures():
    params = _params()
    with pytest.raises(ValueError, match="inputs"):
        shared_state_q_values(params, jnp.zeros((2, OBS)), jnp.zeros((2, ACT + 1)))
    extra = {"params": {"ensemble": {**params["params"]["ensemble"], "LayerNorm_0": {}}}}
    with pytest.raises(ValueError, match="not a Critic MLP ensemble"):
        shared_state_q_values(extra, jnp.zeros((2, OBS)), jnp.zeros((2, ACT)))


def test_rfm_update_equals_the_unshared_update():
    """One rfm update (reference code paths, small sizes) with the shared state product and
    without it: every state leaf and metric equal up to float reassociation."""
    config = make_config(
        "rfm",
        batch_size=16,
        critic_hidden=(32, 32),
        actor_hidden=32,
        embed_dim=8,
        num_particles=4,
        num_flow_steps=3,
        num_reverse_samples=8,
    )
    assert config.critic_shared_state  # rfm's default
    assert not make_config("rfm", "revflow").critic_shared_state
    plain = make_agent("rfm", dataclasses.replace(config, critic_shared_state=False), OBS, ACT)
    assert not plain.critic.shared_state_product
    agent = make_agent("rfm", config, OBS, ACT)
    assert agent.critic.shared_state_product
    r = np.random.default_rng(0)
    f = lambda *s: jnp.asarray(r.standard_normal(s), jnp.float32)
    batch = Batch(f(16, OBS), jnp.tanh(f(16, ACT)), f(16), f(16, OBS), jnp.full((16,), 0.99))
    state = agent.init(jax.random.key(3))
    both = jax.jit(lambda s, b, k: (agent.update(s, b, k), plain.update(s, b, k)))
    out, ref = both(state, batch, jax.random.key(4))
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
