"""qvpo's default, the authors' QVPO with the box diffusion policy (revflow.agents.qvpo,
revflow.agents.box_diffusion with QVPO's options, revflow.networks.StepDenoiserNet): the
discrete cosine schedule and its DDPM coefficients, the step network, best-sample weights,
the entropy rows, the target policy and the evaluation rule. Equality with the authors' code
on stored inputs is tests/test_fidelity_revflow_side.py."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _support import TINY_NETS
from revflow.agents import box_diffusion as bd
from revflow.agents import qvpo
from revflow.agents.base import Batch
from revflow.agents.registry import get_agent_class, make_agent, make_config
from revflow.networks import StepDenoiserNet

OBS, ACT, B = 3, 2, 4
TINY = {
    "batch_size": B,
    **TINY_NETS,
    "num_flow_steps": 4,
    "num_policy_samples": 5,
    "target_particles": 2,
    "behaviour_particles": 2,
    "entropy_samples": 3,
}


@functools.cache
def _tiny():
    agent = make_agent("qvpo", make_config("qvpo", **TINY), OBS, ACT)
    return agent, jax.jit(agent.update)


@functools.cache
def _acts():
    """init, one update and the evaluation rule under two keys, in one compiled program (the
    other act modes: tests/test_qvpo_dpmd.py)."""
    agent, _ = _tiny()

    def program(k_init, k_update, k_act, obs):
        state = agent.init(k_init)
        new, metrics = agent.update(state, _batch(), k_update)
        first = agent.act(new, k_act, obs, "best-of-n")
        again = agent.act(new, jax.random.fold_in(k_act, 1), obs, "best-of-n")
        return state, new, metrics, first, again

    obs = jax.random.normal(jax.random.key(3), (5, OBS))
    keys = (jax.random.key(0), jax.random.key(1), jax.random.key(4))
    return jax.jit(program)(*keys, obs)


def _batch(seed: int = 0) -> Batch:
    r = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(r.standard_normal(s), jnp.float32)
    return Batch(f(B, OBS), jnp.tanh(f(B, ACT)), f(B), f(B, OBS), jnp.full((B,), 0.99))


def test_schedule_is_the_discrete_cosine_of_the_ddpm_paper() -> None:
    """abar at linspace(0, 1, T + 1), betas clipped to 0.999 (the last step of T = 20 hits
    the clip), abar_k the cumulative product, prev 1 at the data end (numpy, float64)."""
    t_steps = 20
    x = np.linspace(0.0, 1.0, t_steps + 1)
    f = np.cos((x + 0.008) / 1.008 * np.pi / 2) ** 2
    betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    sch = bd.ddpm_cosine_schedule(t_steps)
    np.testing.assert_allclose(sch.betas, betas, rtol=2e-5, atol=1e-7)
    assert float(sch.betas[-1]) == pytest.approx(0.999)
    np.testing.assert_allclose(sch.alpha_hats, np.cumprod(1.0 - betas), rtol=1e-4, atol=1e-9)
    np.testing.assert_array_equal(sch.alpha_hat_prevs[1:], sch.alpha_hats)
    assert float(sch.alpha_hat_prevs[0]) == 1.0
    c = bd.ddpm_coefficients(sch)
    # No posterior noise at the data end: the variance is 0, its log floored at log 1e-20.
    assert float(c["posterior_variance"][0]) == 0.0
    assert float(c["posterior_log_variance_clipped"][0]) == pytest.approx(np.log(1e-20))
    # x0 = sqrt(1/abar) x - sqrt(1/abar - 1) eps inverts x = sqrt(abar) x0 + sqrt(1 - abar) eps
    np.testing.assert_allclose(
        c["sqrt_recip_alphas_cumprod"] * c["sqrt_alphas_cumprod"], 1.0, rtol=1e-5
    )
    np.testing.assert_allclose(
        c["sqrt_recipm1_alphas_cumprod"] * c["sqrt_alphas_cumprod"],
        c["sqrt_one_minus_alphas_cumprod"],
        rtol=1e-4,
    )
    # The posterior mean of x_{k-1} is the forward mean when x_k is the noised x0 without noise.
    k = np.arange(1, t_steps)
    mean = c["posterior_mean_coef1"][k] + c["posterior_mean_coef2"][k] * np.sqrt(sch.alpha_hats[k])
    np.testing.assert_allclose(mean, np.sqrt(sch.alpha_hat_prevs[k]), rtol=1e-4)


def test_step_net_layout_init_and_embedding() -> None:
    """Five orthogonal (gain sqrt 2) kernels, zero biases; the step enters through a
    [sin, cos] embedding with 1e4^(-j / (half - 1)) frequencies."""
    net = StepDenoiserNet(out_dim=ACT, hidden=16, num_layers=2, time_dim=8)
    params = jax.jit(net.init)(jax.random.key(0), 0.5, jnp.zeros((1, ACT)), jnp.zeros((1, OBS)))
    p = params["params"]
    shapes = [p[f"Dense_{i}"]["kernel"].shape for i in range(5)]
    assert shapes == [(8, 16), (16, 8), (ACT + 8 + OBS, 16), (16, 16), (16, ACT)]
    for layer in p.values():
        sv = np.linalg.svd(np.asarray(layer["kernel"]), compute_uv=False)
        np.testing.assert_allclose(sv, np.sqrt(2.0), rtol=1e-5)
        assert not np.any(np.asarray(layer["bias"]))
    out = jax.jit(net.apply)(params, jnp.array([0.0, 3.0]), jnp.ones((2, ACT)), jnp.ones((1, OBS)))
    assert out.shape == (2, ACT)
    # The step is read: two steps, two outputs.
    assert not np.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="time_dim=7"):
        StepDenoiserNet(out_dim=ACT, time_dim=7).init(
            jax.random.key(0), 0.5, jnp.zeros((1, ACT)), jnp.zeros((1, OBS))
        )


_best = jax.jit(qvpo.best_sample_weights)


@settings(max_examples=30, deadline=None)
@given(q=st.lists(st.floats(-50.0, 50.0), min_size=4, max_size=4))
def test_best_sample_weight_is_the_clipped_advantage_of_the_best(q: list) -> None:
    arr = jnp.asarray([q], jnp.float32)
    idx, w = _best(arr)
    best = float(np.max(np.asarray(arr)))
    assert float(arr[0, idx[0]]) == best
    assert float(w[0]) == pytest.approx(max(best - float(jnp.mean(arr)), 0.0), abs=1e-4)
    assert float(w[0]) >= 0.0


def test_update_trains_best_samples_moves_the_target_policy_and_acts_in_the_box() -> None:
    agent, _ = _tiny()
    c = agent.config
    state, new, metrics, first, again = _acts()
    assert jax.tree.all(jax.tree.map(jnp.array_equal, state.target_actor_params,
                                     state.actor_params))  # fmt: skip
    assert set(metrics) == set(type(agent).METRICS)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    # Polyak: target' = tau actor' + (1 - tau) target
    expect = jax.tree.map(lambda a, t: c.tau * a + (1 - c.tau) * t, new.actor_params,
                          state.target_actor_params)  # fmt: skip
    for x, y in zip(jax.tree.leaves(new.target_actor_params), jax.tree.leaves(expect), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-8)
    assert first.shape == (5, ACT) and np.all(np.abs(np.asarray(first)) <= 1.0)
    # Evaluation is a fixed function of the state (state-hash keys), whatever the key.
    np.testing.assert_array_equal(first, again)


def test_entropy_rows_carry_the_state_weight_and_zero_weights_silence_the_loss() -> None:
    """Rows are [best per state; M uniform actions per state]; a uniform row's weight is
    entropy_weight times its state's weight; with every weight 0 the loss is 0."""
    agent, _ = _tiny()
    c = agent.config
    state = _acts()[0]
    batch = _batch(1)
    _, k_actor, _ = agent.objective.split(jax.random.key(2))
    inputs, _ = jax.jit(agent.objective.actor_inputs)(state, state.critic_params, batch, k_actor)
    obs_rows, step, x_k, eps, weights = inputs
    m = c.entropy_samples
    assert obs_rows.shape == (B * (1 + m), OBS) and x_k.shape == eps.shape == (B * (1 + m), ACT)
    assert np.all((np.asarray(step) >= 0) & (np.asarray(step) < c.num_flow_steps))
    np.testing.assert_allclose(weights[B:], c.entropy_weight * np.repeat(weights[:B], m))
    np.testing.assert_array_equal(obs_rows[B:], np.repeat(batch.obs, m, axis=0))
    zero = (obs_rows, step, x_k, eps, jnp.zeros_like(weights))
    loss, aux = jax.jit(agent.objective.actor_loss)(state.actor_params, zero)
    assert float(loss) == 0.0 and float(aux["entropy_loss"]) > 0.0


def test_configs_saved_before_the_authors_defaults_keep_their_behaviour() -> None:
    """A qvpo config saved before ``policy_space`` existed loads as the ``revflow`` preset
    (tanh latent, RFM's net, ReLU critics, clip 10); the default is the authors' QVPO."""
    config_cls = get_agent_class("qvpo").Config
    old = make_config("qvpo", "revflow").to_dict()
    for new_field in ("policy_space", "network_init", "critic_clip", "critic_activation"):
        del old[new_field]
    old["max_grad_norm"] = 10.0
    assert config_cls.from_dict(old) == make_config("qvpo", "revflow")
    default = make_config("qvpo")
    assert (default.policy_space, default.max_grad_norm, default.critic_activation) == (
        "box",
        0.0,
        "mish",
    )
    with pytest.raises(ValueError, match="critic_activation='tanh'"):
        make_config("qvpo", critic_activation="tanh")
