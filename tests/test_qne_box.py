"""qne's default, the authors' maxentdp with the box diffusion policy
(revflow.agents.box_diffusion, revflow.agents.qne): schedule and time input, truncated
candidates, weights, the update and the evaluation rule. Equality with the authors' code on
stored inputs is tests/test_fidelity_revflow_side.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _support import TINY_NETS
from revflow.agents import box_diffusion as bd
from revflow.agents import qne
from revflow.agents.base import Batch
from revflow.agents.registry import make_agent, make_config

OBS, ACT, B = 3, 2, 6
TINY = {
    "batch_size": B,
    **TINY_NETS,
    "num_flow_steps": 4,
    "num_reverse_samples": 6,
    "log_prob_samples": 3,
    "log_prob_steps": 4,
}


def test_schedule_and_log_snr() -> None:
    tau_max = bd.cosine_tau_max()
    assert tau_max == pytest.approx(0.997998, abs=1e-6)
    sch = bd.cosine_schedule(20, 1e-3, tau_max)
    assert float(sch.alpha_hat_prevs[0]) == pytest.approx(1.0, abs=1e-4)  # data end
    assert np.all(np.diff(np.asarray(sch.alpha_hat_prevs)) < 0)
    np.testing.assert_allclose(sch.alpha_hats, sch.alpha_hat_prevs[1:])
    np.testing.assert_allclose(sch.betas, 1.0 - sch.alphas)
    # log-SNR of abar = 1/2 is 0; it is clipped at abar in [1e-5, 1 - 1e-5]
    assert float(bd.log_snr(jnp.float32(0.5))) == 0.0
    assert float(bd.log_snr(jnp.float32(0.0))) == pytest.approx(np.log(1e-5 / (1 - 1e-5)))


@jax.jit
def _candidates(tau, action, key):
    k_eps, k_cand = jax.random.split(key)
    eps = jax.random.normal(k_eps, action.shape)
    alpha1, alpha2, a_tau = qne.noisy_replay(tau, action, eps)
    z = qne.candidate_noise(k_cand, a_tau, alpha1, alpha2, 64)
    _, clean, w = qne.eps_target(lambda o, x: x[..., 0], jnp.zeros((1, OBS)), a_tau, alpha1,
                                 alpha2, z, jnp.float32(0.1))  # fmt: skip
    return z, clean, w


@settings(max_examples=20, deadline=None)
@given(
    tau=st.floats(1e-3, 0.997),
    a=st.lists(st.floats(-1.0, 1.0), min_size=ACT, max_size=ACT),
    seed=st.integers(0, 2**16),
)
def test_candidates_lie_in_the_box(tau: float, a: list, seed: int) -> None:
    """x0_i = a_tau/alpha1 + sigma z_i is in [-1, 1]^D for every truncated draw."""
    z, clean, w = _candidates(jnp.asarray([tau], jnp.float32), jnp.asarray([a], jnp.float32),
                              jax.random.key(seed))  # fmt: skip
    assert np.all(np.isfinite(np.asarray(z)))
    assert np.all(np.abs(np.asarray(clean)) <= 1.0 + 1e-4)
    assert float(jnp.sum(w)) == pytest.approx(1.0, abs=1e-5)


def test_constant_q_gives_uniform_weights_and_minus_the_mean_noise() -> None:
    z = jax.random.normal(jax.random.key(0), (2, 5, ACT))
    a_tau = jnp.zeros((2, ACT))
    one = jnp.ones((2,))
    target, _, w = qne.eps_target(lambda o, x: jnp.zeros(x.shape[:-1]), jnp.zeros((2, OBS)),
                                  a_tau, one, one, z, jnp.float32(0.02))  # fmt: skip
    np.testing.assert_allclose(w, 0.2, rtol=1e-6)
    np.testing.assert_allclose(target, -jnp.mean(z, axis=1), rtol=1e-5, atol=1e-7)


def _batch() -> Batch:
    r = np.random.default_rng(0)
    f = lambda *s: jnp.asarray(r.standard_normal(s), jnp.float32)
    return Batch(f(B, OBS), jnp.tanh(f(B, ACT)), f(B), f(B, OBS), jnp.full((B,), 0.99))


def test_update_acts_in_the_box_and_evaluates_by_the_state() -> None:
    agent = make_agent("qne", make_config("qne", **TINY), OBS, ACT)
    state = jax.jit(agent.init)(jax.random.key(0))
    new, metrics = jax.jit(agent.update)(state, _batch(), jax.random.key(1))
    assert set(metrics) == set(type(agent).METRICS)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert float(metrics["next_log_pi_mean"]) != 0.0  # the entropy backup ran
    obs = jax.random.normal(jax.random.key(3), (5, OBS))
    act = jax.jit(agent.act, static_argnames="mode")
    for mode in ("explore", "sample"):
        a = np.asarray(act(new, jax.random.key(4), obs, mode=mode))
        assert a.shape == (5, ACT) and np.all(np.abs(a) <= 1.0)
    # evaluation: a fixed function of the state (state-hash keys), whatever the key given
    best = act(new, jax.random.key(4), obs, mode="best-of-n")
    assert best.shape == (5, ACT) and np.all(np.abs(np.asarray(best)) <= 1.0)
    np.testing.assert_array_equal(best, act(new, jax.random.key(5), obs, mode="best-of-n"))
    one = act(new, jax.random.key(4), jnp.concatenate([obs[2:], obs[:2]]), mode="best-of-n")
    np.testing.assert_array_equal(jnp.concatenate([best[2:], best[:2]]), one)
    with pytest.raises(ValueError, match="unknown act mode"):
        agent.act(new, jax.random.key(4), obs, "greedy")


def test_weights_read_the_target_critics() -> None:
    """The eps target is a function of the target critics (before their Polyak step), not
    of the freshly updated online ones: changing the online critics leaves it unchanged."""
    agent = make_agent("qne", make_config("qne", **TINY), OBS, ACT)
    state = jax.jit(agent.init)(jax.random.key(0))
    _, keys, _ = agent.objective.split(jax.random.key(2))
    other = jax.jit(agent.init)(jax.random.key(9)).critic_params
    inputs = jax.jit(lambda s, c: agent.objective.actor_inputs(s, c, _batch(), keys)[0][3])
    one = inputs(state, state.critic_params)
    np.testing.assert_array_equal(one, inputs(state.replace(critic_params=other), other))
    three = inputs(state.replace(target_critic_params=other), other)
    assert not np.array_equal(one, three)


def test_policy_space_is_checked() -> None:
    with pytest.raises(ValueError, match="policy_space='tanh'"):
        make_config("qne", policy_space="tanh")
    with pytest.raises(ValueError, match="tau_min"):
        make_config("qne", tau_min=0.999)
