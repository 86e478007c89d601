"""Tests for revflow.networks: embedding, VelocityNet (hoisting, shapes), MLP, Critic."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revflow.networks import (
    EMBEDDINGS,
    MLP,
    Critic,
    DenoiserNet,
    ResidualMLP,
    VelocityNet,
    sinusoidal_embedding,
)

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)


def _normal(*shape):
    return jnp.asarray(RNG.standard_normal(shape), dtype=jnp.float32)


def _flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0]
    return float(cost["flops"])


# ----------------------------------------------------------------------------- embedding


def test_sinusoidal_embedding_values_and_shape():
    x = jnp.array([[0.0, 0.5], [1.0, 2.0], [3.0, -1.0]])
    emb = sinusoidal_embedding(x, dim=8, max_period=100.0)
    assert emb.shape == (3, 2, 8)
    freqs = 100.0 ** (-np.arange(4) / 4)
    expected = np.concatenate(
        [np.cos(np.asarray(x)[..., None] * freqs), np.sin(np.asarray(x)[..., None] * freqs)], -1
    )
    np.testing.assert_allclose(emb, expected, atol=1e-6)
    np.testing.assert_allclose(sinusoidal_embedding(0.0, dim=6), [1, 1, 1, 0, 0, 0])


def test_sinusoidal_embedding_odd_dim_and_errors():
    emb = sinusoidal_embedding(jnp.arange(3.0), dim=7)
    assert emb.shape == (3, 7)
    np.testing.assert_array_equal(emb[:, -1], 0.0)
    with pytest.raises(ValueError, match="dim=1"):
        sinusoidal_embedding(1.0, dim=1)


def test_sinusoidal_embedding_sin_first_endpoint_style():
    """The "sin-cos-1e3" style: [sin, cos] with frequencies 1000^(-k / (half - 1))."""
    x = jnp.array([0.0, 0.3, 2.0])
    emb = sinusoidal_embedding(x, dim=8, **EMBEDDINGS["sin-cos-1e3"])
    freqs = 1000.0 ** (-np.arange(4) / 3)
    args = np.asarray(x)[:, None] * freqs
    np.testing.assert_allclose(emb, np.concatenate([np.sin(args), np.cos(args)], -1), atol=1e-6)
    with pytest.raises(ValueError, match="dim=2"):
        sinusoidal_embedding(1.0, dim=2, endpoint=True)


def _singular_values(kernel) -> np.ndarray:
    return np.linalg.svd(np.asarray(kernel), compute_uv=False)


def test_orthogonal_init_every_kernel_and_the_joint_first_layer():
    """kernel_init="orthogonal": every kernel has all singular values sqrt 2 (gain sqrt 2),
    the first layer as ONE matrix over [cond; x; emb(t); emb(lam)]; biases are zero."""
    # 5 + 3 + 16 + 8 = 32 input rows > hidden 16: the first kernel has orthonormal columns
    net = VelocityNet(
        out_dim=3, hidden=16, time_embed_dim=16, temp_embed_dim=8, kernel_init="orthogonal"
    )
    p = net.init(KEY, 0.3, _normal(2, 3), _normal(2, 5), 0.02)["params"]
    first = jnp.concatenate([p[n]["kernel"] for n in ("cond_proj", "x_proj", "t_proj", "lam_proj")])
    for kernel in (first, p["blocks_0"]["kernel"], p["out"]["kernel"]):
        np.testing.assert_allclose(_singular_values(kernel), np.sqrt(2.0), rtol=1e-5)
    assert float(jnp.abs(p["x_proj"]["bias"]).max()) == 0.0
    # so a part alone (some of its rows) is not: the parts are blocks of one matrix
    assert not np.allclose(_singular_values(p["x_proj"]["kernel"]), np.sqrt(2.0), rtol=1e-3)
    critic = Critic(hidden=(16, 16), kernel_init="orthogonal")
    cp = critic.init(KEY, _normal(1, 5), _normal(1, 3))["params"]["ensemble"]
    for layer in cp.values():
        for k in range(2):
            np.testing.assert_allclose(_singular_values(layer["kernel"][k]), np.sqrt(2), rtol=1e-5)
    res = ResidualMLP(out_dim=4, hidden=16, num_blocks=2)
    rp = res.init(KEY, _normal(1, 5))["params"]
    assert sorted(rp) == ["Dense_0", "Dense_1", "Dense_2", "Dense_3"]
    for layer in rp.values():
        np.testing.assert_allclose(_singular_values(layer["kernel"]), np.sqrt(2), rtol=1e-5)


def test_init_and_embedding_names_are_checked():
    with pytest.raises(ValueError, match="kernel_init"):
        VelocityNet(out_dim=2, kernel_init="xavier").init(KEY, 0.5, jnp.zeros((1, 2)), None, 0.1)
    with pytest.raises(ValueError, match="embedding"):
        VelocityNet(out_dim=2, embedding="fourier").init(KEY, 0.5, jnp.zeros((1, 2)), None, 0.1)
    with pytest.raises(ValueError, match="kernel_init"):
        MLP(out_dim=1, kernel_init="xavier").init(KEY, jnp.zeros((1, 2)))


# ----------------------------------------------------------------------------- VelocityNet


def _net_and_params(d=3, c=5, b=4, **kw):
    net = VelocityNet(out_dim=d, hidden=32, time_embed_dim=16, temp_embed_dim=8, **kw)
    x = _normal(b, d)
    cond = _normal(b, c)
    params = net.init(KEY, 0.3, x, cond, 0.02)
    return net, params, x, cond


def test_first_layer_equals_single_dense_on_concat():
    """The sum of part products is exactly one Dense on concat(cond, x, emb(t), emb(lam))."""
    net, params, x, cond = _net_and_params(num_blocks=0)
    t = jnp.linspace(0.1, 0.9, x.shape[0])
    lam = jnp.full((x.shape[0],), 0.05)
    p = params["params"]
    w = jnp.concatenate(
        [
            p["cond_proj"]["kernel"],
            p["x_proj"]["kernel"],
            p["t_proj"]["kernel"],
            p["lam_proj"]["kernel"],
        ],
        axis=0,
    )
    inp = jnp.concatenate(
        [cond, x, sinusoidal_embedding(t, 16), sinusoidal_embedding(lam, 8)], axis=-1
    )
    h = nn.gelu(inp @ w + p["x_proj"]["bias"])
    expected = h @ p["out"]["kernel"] + p["out"]["bias"]
    np.testing.assert_allclose(net.apply(params, t, x, cond, lam), expected, atol=1e-5)


def test_scalar_t_matches_per_row_t():
    net, params, x, cond = _net_and_params()
    b = x.shape[0]
    y_scalar = net.apply(params, 0.37, x, cond, 0.02)
    y_rows = net.apply(params, jnp.full((b,), 0.37), x, cond, jnp.full((b,), 0.02))
    assert y_scalar.shape == (b, 3)
    np.testing.assert_allclose(y_scalar, y_rows, rtol=1e-5, atol=1e-6)
    # and per-row times really are per row
    y_mixed = net.apply(params, jnp.array([0.37, 0.9, 0.37, 0.37]), x, cond, 0.02)
    np.testing.assert_allclose(
        np.asarray(y_mixed)[[0, 2, 3]], np.asarray(y_scalar)[[0, 2, 3]], rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(y_mixed[1], y_scalar[1])


def test_scalar_t_embedding_is_hoisted_flops():
    """Reference-size net: scalar t/lam must cost fewer FLOPs than t/lam broadcast per row."""
    b, d, c = 256, 6, 17
    net = VelocityNet(out_dim=d)
    x = jnp.ones((b, d))
    cond = jnp.ones((b, c))
    params = net.init(KEY, 0.5, x, cond, 0.02)
    t_rows, lam_rows = jnp.full((b,), 0.5), jnp.full((b,), 0.02)

    def scalar_call(p, x, cond):
        return net.apply(p, 0.5, x, cond, 0.02)

    def row_call(p, x, cond, t, lam):
        return net.apply(p, t, x, cond, lam)

    f_scalar = _flops(scalar_call, params, x, cond)
    f_rows = _flops(row_call, params, x, cond, t_rows, lam_rows)
    # per-row embedding products: b * (128 + 128) * 256 multiply-adds = 2 flops each
    per_row_embed = 2 * b * (128 + 128) * 256
    assert f_rows - f_scalar > 0.9 * per_row_embed, (f_scalar, f_rows)
    assert f_scalar < 0.75 * f_rows, (f_scalar, f_rows)

    # precomputed cond features skip the cond product as well
    feats = net.apply(params, cond, method=VelocityNet.embed_cond)

    def feats_call(p, x, feats):
        return net.apply(p, 0.5, x, None, 0.02, cond_features=feats)

    assert _flops(feats_call, params, x, feats) < f_scalar
    np.testing.assert_allclose(
        feats_call(params, x, feats), scalar_call(params, x, cond), rtol=1e-5, atol=1e-6
    )


def test_cond_features_reused_across_particles():
    net, params, _, cond = _net_and_params(b=3)
    x = _normal(3, 7, 3)  # 3 states, 7 particles
    feats = net.apply(params, cond, method=VelocityNet.embed_cond)
    assert feats.shape == (3, 32)
    y_feats = net.apply(params, 0.4, x, lam=0.02, cond_features=feats[:, None, :])
    y_cond = net.apply(params, 0.4, x, cond[:, None, :], 0.02)
    y_tiled = net.apply(params, 0.4, x, jnp.broadcast_to(cond[:, None], (3, 7, 5)), 0.02)
    assert y_feats.shape == (3, 7, 3)
    np.testing.assert_allclose(y_feats, y_cond, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y_feats, y_tiled, rtol=1e-5, atol=1e-6)


def test_lam_conditioning_rules():
    net, params, x, cond = _net_and_params()
    with pytest.raises(ValueError, match="lam is required"):
        net.apply(params, 0.5, x, cond)
    assert not np.allclose(
        net.apply(params, 0.5, x, cond, 0.02), net.apply(params, 0.5, x, cond, 1.0)
    )

    plain = VelocityNet(out_dim=3, hidden=16, time_embed_dim=8, temp_embed_dim=0)
    p = plain.init(KEY, 0.5, x, cond, None)
    assert "lam_proj" not in p["params"]
    assert plain.apply(p, 0.5, x, cond).shape == (4, 3)
    with pytest.raises(ValueError, match="temp_embed_dim == 0"):
        plain.apply(p, 0.5, x, cond, 0.02)


def test_unconditional_and_missing_cond_errors():
    net = VelocityNet(out_dim=2, hidden=16, time_embed_dim=8, temp_embed_dim=0)
    x = jnp.ones((5, 2))
    p = net.init(KEY, 0.1, x)
    assert "cond_proj" not in p["params"]
    assert net.apply(p, 0.1, x).shape == (5, 2)

    net, params, x, cond = _net_and_params()
    with pytest.raises(ValueError, match="initialised with cond"):
        net.apply(params, 0.5, x, None, 0.02)
    with pytest.raises(ValueError, match="not both"):
        net.apply(params, 0.5, x, cond, 0.02, cond_features=jnp.zeros((4, 32)))
    with pytest.raises(ValueError, match="do not broadcast"):
        net.apply(params, jnp.zeros((3,)), x, cond, 0.02)
    with pytest.raises(ValueError, match="num_blocks"):
        VelocityNet(out_dim=2, num_blocks=-1).init(KEY, 0.1, x, cond, 0.1)


def test_denoiser_alias():
    assert DenoiserNet is VelocityNet
    assert "eps" in VelocityNet.__doc__


_shapes = st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple)


_SMALL_NET = VelocityNet(out_dim=3, hidden=8, num_blocks=1, time_embed_dim=4, temp_embed_dim=2)
_SMALL_PARAMS = _SMALL_NET.init(KEY, 0.5, jnp.zeros((1, 3)), jnp.zeros((1, 2)), 0.1)


@settings(max_examples=8, deadline=None)
@given(
    x_lead=_shapes,
    cond_lead=st.sampled_from(["same", "none", "scalar-state", "features"]),
    t_kind=st.sampled_from(["scalar", "rows"]),
)
def test_velocity_net_shapes(x_lead, cond_lead, t_kind):
    """Odd leading shapes: output is broadcast(leading dims) + (out_dim,)."""
    x = jnp.zeros((*x_lead, 3))
    t = jnp.full(x_lead, 0.5) if t_kind == "rows" else 0.5
    kwargs = {}
    if cond_lead == "same":
        kwargs["cond"] = jnp.ones((*x_lead, 2))
    elif cond_lead == "scalar-state":  # one state shared by all rows
        kwargs["cond"] = jnp.ones((2,))
    else:  # "none" -> zero features (same params); "features" -> precomputed per row
        cond = jnp.ones((*x_lead, 2)) if cond_lead == "features" else jnp.zeros((2,))
        kwargs["cond_features"] = _SMALL_NET.apply(
            _SMALL_PARAMS, cond, method=VelocityNet.embed_cond
        )
    out = _SMALL_NET.apply(_SMALL_PARAMS, t, x, lam=0.1, **kwargs)
    assert out.shape == (*x_lead, 3)
    assert np.isfinite(np.asarray(out)).all()


# ----------------------------------------------------------------------------- MLP, Critic


def test_mlp():
    mlp = MLP(out_dim=3, hidden=(8, 5), activation=nn.tanh)
    x = jnp.ones((2, 7, 4))
    p = mlp.init(KEY, x)
    assert [p["params"][f"Dense_{i}"]["kernel"].shape for i in range(3)] == [
        (4, 8),
        (8, 5),
        (5, 3),
    ]
    assert mlp.apply(p, x).shape == (2, 7, 3)
    assert MLP(out_dim=1).hidden == (256, 256)


_CRITIC = Critic(num_critics=3, hidden=(16, 16))
_CRITIC_PARAMS = _CRITIC.init(KEY, jnp.ones((6,)), jnp.ones((2,)))


def test_critic_shapes():
    assert (Critic().num_critics, tuple(Critic().hidden)) == (2, (256, 256))  # method note §6
    for lead in [(), (1,), (5,), (2, 3), (1, 4, 1)]:
        obs, act = jnp.ones((*lead, 6)), jnp.ones((*lead, 2))
        assert _CRITIC.apply(_CRITIC_PARAMS, obs, act).shape == (3, *lead)


def test_critic_ensemble_is_independent_and_broadcasts():
    p = _CRITIC_PARAMS
    obs = _normal(4, 6)
    act = _normal(4, 9, 2)
    assert all(leaf.shape[0] == 3 for leaf in jax.tree.leaves(p))
    assert p["params"]["ensemble"]["Dense_0"]["kernel"].shape == (3, 8, 16)
    q = _CRITIC.apply(p, obs[:, None], act)
    assert q.shape == (3, 4, 9)
    assert not np.allclose(q[0], q[1])  # different initialisations
    # member k equals a plain MLP with member k's params
    member = jax.tree.map(lambda a: a[1], p["params"]["ensemble"])
    x = jnp.concatenate([jnp.broadcast_to(obs[:, None], (4, 9, 6)), act], -1)
    q1 = MLP(out_dim=1, hidden=(16, 16)).apply({"params": member}, x)[..., 0]
    np.testing.assert_allclose(q[1], q1, rtol=1e-5, atol=1e-5)
