"""Every registered agent's init state, three updates and acting are bit-identical to a stored
recording (tests/data/bit_exact.npz).

The recording pins the agents' arithmetic: a change to how agents are organised (modules,
configs, state classes) must leave every leaf of the state, every metric and every action
bit-for-bit equal. A deliberate change of an algorithm's maths re-records it
(``python tests/test_bit_exact.py --record ALGO@PRESET ...``; ``OLD=NEW`` moves a recording
to another case name, as when a preset keeps the earlier behaviour) in the same commit, with the
reason in its message.

Each case is one agent under one preset with small sizes (batch 8, obs_dim 3, act_dim 2,
32-wide nets): the ``reference`` preset with every size field small, the ``fast`` preset with
only the network widths small (its particle, sampler-step and estimator counts kept), and the
presets that switch code paths (``rfm`` ``revflow``; ``sac`` ``standard`` and ``revflow``);
the suite runs the reference cases, ``pytest -m extended`` all of them.
One jitted program per case runs ``init``, three ``update`` steps (``lax.scan``) and ``act`` in
every mode from the final state. The state's structure is compared as its flattened key
paths, through :data:`RENAMES` (old key path prefix -> new) when state fields are renamed.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from revflow.agents.base import ACT_MODES, Batch
from revflow.agents.registry import available, get_agent_class, make_agent, make_config

DATA = Path(__file__).parent / "data" / "bit_exact.npz"
OBS_DIM, ACT_DIM, BATCH, UPDATES, SEED = 3, 2, 8, 3, 7

#: Old key path prefix -> new key path prefix of renamed state fields (none yet).
RENAMES: dict[str, str] = {}

#: Network widths of every case.
WIDTHS: dict[str, Any] = {
    "batch_size": BATCH,
    "critic_hidden": (32, 32),
    "actor_hidden": 32,
    "embed_dim": 8,
}
#: Counts of the reference cases (the fast cases keep their preset's).
COUNTS: dict[str, Any] = {
    "num_particles": 4,
    "num_flow_steps": 3,
    "num_reverse_samples": 8,
    "num_policy_samples": 4,
    "entropy_samples": 4,
    "entropy_every": 2,
    "action_steps": 3,
}
#: Presets beyond reference / fast whose code paths differ.
EXTRA_PRESETS: dict[str, tuple[str, ...]] = {
    "rfm": ("revflow",),
    "qne": ("revflow",),
    "dqs": ("revflow",),
    "qsm": ("revflow",),
    "qvpo": ("revflow",),
    "sac": ("standard", "revflow"),
}


def _overrides(algo: str, preset: str) -> dict[str, Any]:
    config_cls = get_agent_class(algo).Config
    fields = {f.name for f in dataclasses.fields(config_cls)}
    wanted = dict(WIDTHS) if preset == "fast" else {**WIDTHS, **COUNTS}
    if algo == "sac":
        wanted["actor_hidden"] = (32, 32)
    return {k: v for k, v in wanted.items() if k in fields}


def cases() -> list[tuple[str, str]]:
    out = []
    for algo in available():
        presets = get_agent_class(algo).Config.PRESETS
        names = ["reference"] + (["fast"] if "fast" in presets else [])
        out += [(algo, p) for p in names + list(EXTRA_PRESETS.get(algo, ()))]
    return out


def _batches(key: jax.Array) -> Batch:
    ks = jax.random.split(key, 5)
    shape = (UPDATES, BATCH)
    terminated = jax.random.bernoulli(ks[4], 0.2, shape)
    return Batch(
        obs=jax.random.normal(ks[0], (*shape, OBS_DIM)),
        action=jax.random.uniform(ks[1], (*shape, ACT_DIM), minval=-1.0, maxval=1.0),
        reward=jax.random.normal(ks[2], shape),
        next_obs=jax.random.normal(ks[3], (*shape, OBS_DIM)),
        discount=0.99 * (1.0 - terminated.astype(jnp.float32)),
    )


def run_case(algo: str, preset: str) -> dict[str, np.ndarray]:
    """``{name: array}`` of one case: ``init/<path>``, ``metrics/<name>`` (one entry per
    update), ``final/<path>`` and ``act/<mode>``."""
    config = make_config(algo, preset, **_overrides(algo, preset))
    agent = make_agent(algo, config, OBS_DIM, ACT_DIM)
    k_init, k_data, k_updates, k_act = jax.random.split(jax.random.key(SEED), 4)

    def program(k_init, k_data, k_updates, k_act):
        state0 = agent.init(k_init)
        batches = _batches(k_data)

        def body(s, xs):
            return agent.update(s, *xs)

        final, metrics = jax.lax.scan(body, state0, (batches, jax.random.split(k_updates, UPDATES)))
        acts = {m: agent.act(final, k_act, batches.obs[0], mode=m) for m in ACT_MODES}
        return state0, metrics, final, acts

    state0, metrics, final, acts = jax.jit(program)(k_init, k_data, k_updates, k_act)
    out: dict[str, np.ndarray] = {}
    for prefix, tree in (("init", state0), ("final", final)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            out[f"{prefix}/{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    out.update({f"metrics/{k}": np.asarray(v) for k, v in metrics.items()})
    out.update({f"act/{m}": np.asarray(v) for m, v in acts.items()})
    return out


def _renamed(name: str) -> str:
    for old, new in RENAMES.items():
        kind, _, path = name.partition("/")
        if path.startswith(old):
            return f"{kind}/{new}{path[len(old) :]}"
    return name


def _recorded(algo: str, preset: str) -> dict[str, np.ndarray]:
    prefix = f"{algo}@{preset}::"
    with np.load(DATA) as data:
        return {_renamed(k[len(prefix) :]): data[k] for k in data.files if k.startswith(prefix)}


#: Cases the default suite runs (one XLA compilation each, 10-40 s on 2 CPU cores): the
#: method and the Gaussian baseline; every other case runs with ``pytest -m extended``.
DEFAULT_CASES = {("rfm", "reference"), ("sac", "reference")}


def _params() -> list:
    return [
        pytest.param(a, p, marks=() if (a, p) in DEFAULT_CASES else pytest.mark.extended)
        for a, p in cases()
    ]


@pytest.mark.parametrize(("algo", "preset"), _params())
def test_agent_is_bit_exact(algo: str, preset: str) -> None:
    recorded = _recorded(algo, preset)
    assert recorded, f"no recording of {algo}@{preset}; record with --record"
    now = run_case(algo, preset)
    assert sorted(now) == sorted(recorded), "state structure or metric names changed"
    # A checkpoint is restored leaf by leaf, so the order of the state's leaves is part of the
    # checkpoint format: a reordered state class would make old runs unresumable.
    order = [k for k in now if k.startswith(("init/", "final/"))]
    assert order == [k for k in recorded if k.startswith(("init/", "final/"))], "leaf order"
    differing = [
        k
        for k in sorted(now)
        if now[k].dtype != recorded[k].dtype or not np.array_equal(now[k], recorded[k])
    ]
    assert not differing, f"{len(differing)} arrays differ, first: {differing[:5]}"


def test_recording_covers_every_agent() -> None:
    with np.load(DATA) as data:
        stored = {k.split("::")[0] for k in data.files}
    assert stored == {f"{a}@{p}" for a, p in cases()}


def _record(names: list[str]) -> None:
    """Record the cases named ``algo@preset`` (all cases when none is named), keeping every
    other stored case as it is; ``OLD=NEW`` stores the recording of case OLD under NEW (a
    preset that keeps an agent's earlier behaviour keeps its earlier recording)."""
    known = {f"{a}@{p}": (a, p) for a, p in cases()}
    arrays: dict[str, np.ndarray] = {}
    if DATA.exists():
        with np.load(DATA) as data:
            arrays = {k: data[k] for k in data.files}
    for name in names or list(known):
        old, _, new = name.partition("=")
        if new:
            moved = {k: v for k, v in arrays.items() if k.startswith(f"{old}::")}
            if not moved:
                sys.exit(f"error: no stored recording of {old!r}")
            arrays = {k: v for k, v in arrays.items() if not k.startswith(f"{new}::")}
            arrays.update({f"{new}::{k.split('::', 1)[1]}": v for k, v in moved.items()})
            print(f"stored {old} as {new}")
            continue
        if name not in known:
            sys.exit(f"error: unknown case {name!r} (known: {', '.join(sorted(known))})")
        arrays = {k: v for k, v in arrays.items() if not k.startswith(f"{name}::")}
        for k, v in run_case(*known[name]).items():
            arrays[f"{name}::{k}"] = v
        print(f"recorded {name}")
    DATA.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(DATA, **arrays)
    print(f"{len(arrays)} arrays -> {DATA} ({DATA.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    if sys.argv[1:2] != ["--record"]:
        sys.exit("usage: python tests/test_bit_exact.py --record [ALGO@PRESET | OLD=NEW ...]")
    _record(sys.argv[2:])


DEFAULTS = Path(__file__).parent / "data" / "agent_defaults.json"


@pytest.mark.parametrize(("algo", "preset"), cases())
def test_preset_values_are_unchanged(algo: str, preset: str) -> None:
    """Every preset's values equal those recorded before the config parts (fields an agent
    never read, its config's ``DROPPED``, are gone), and that recorded dict — a saved
    config of then — loads back to the same config."""
    import json

    recorded = json.loads(DEFAULTS.read_text())[f"{algo}@{preset}"]
    config_cls = get_agent_class(algo).Config
    now = json.loads(json.dumps(make_config(algo, preset).to_dict()))
    assert now == {k: v for k, v in recorded.items() if k not in config_cls.DROPPED}
    assert config_cls.from_dict(recorded) == make_config(algo, preset)
