"""The Python API (revflow.train / load / resume, Run, Policy), export and load_policy, on a
custom environment through the CLI and Python, and the README's quickstart snippet verbatim.

Trainings are a few hundred env steps of tiny networks. The module shares one persistent
XLA compilation cache (and XLA's cheap pipeline), so the Python run of an algorithm reuses
the programs its CLI run compiled (same shapes, same config)."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

import custom_env_pkg
import revflow
from revflow import engine
from revflow.agents.base import ACT_MODES
from revflow.agents.registry import available, get_agent_class
from revflow.checkpoint import CheckpointError
from revflow.cli import main
from revflow.policy import acting_params

GYM_ID = "gym:custom_env_pkg:PointMass-v0"
README = Path(__file__).resolve().parents[1] / "README.md"

#: Loop options of every training here (CLI flags and Python keywords name the same fields).
LOOP = {
    "steps": 200,
    "warmup_steps": 100,
    "eval_every": 100,
    "eval_episodes": 2,
    "checkpoint_every": 100,
    "progress": False,
    "tensorboard": False,
}
AGENT = {
    "sac": {"batch_size": 16, "actor_hidden": (16, 16), "critic_hidden": (16, 16)},
    "rfm": {
        "batch_size": 16,
        "actor_hidden": 16,
        "embed_dim": 8,
        "critic_hidden": (16, 16),
        "num_particles": 4,
        "num_flow_steps": 2,
        "num_reverse_samples": 4,
    },
}


def _flags(options: dict, prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + prefix + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else flag.replace("--" + prefix, "--" + prefix + "no-"))
        else:
            out += [flag, *(str(v) for v in np.atleast_1d(value))]
    return out


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    names = (
        "jax_disable_most_optimizations",
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    old = {}
    for name in names:  # flags with a context manager are read as attributes
        try:
            old[name] = jax.config.read(name)
        except AttributeError:
            old[name] = getattr(jax.config, name)
    jax.clear_caches()  # see conftest.fast_compile: the flag is not in the jit cache key
    jax.config.update("jax_disable_most_optimizations", True)
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()
    yield
    for name, value in old.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    jax.clear_caches()


def _same_actions(a: revflow.Policy, b: revflow.Policy, obs: np.ndarray) -> None:
    for mode in ("best-of-n", "explore"):  # "sample" is "explore" without the particle pick
        pa, pb = a.with_mode(mode), b.with_mode(mode)
        for i in range(3):
            key = jax.random.key(i)
            np.testing.assert_array_equal(np.asarray(pa(obs, key)), np.asarray(pb(obs, key)))


#: The Python runs' env factories: a dm_env for rfm, an in-process gymnasium lambda for sac.
FACTORIES = {
    "rfm": custom_env_pkg.make_dm_point_mass,
    "sac": lambda: custom_env_pkg.make_point_mass(),
}


@pytest.mark.parametrize("algo", [pytest.param("sac", marks=pytest.mark.extended), "rfm"])
def test_custom_env_through_cli_and_python(algo, tmp_path, capsys, compile_cache):
    # -- CLI: train, eval, export, report and sweep on gym:<module>:<Id> ----------------------
    root = tmp_path / "cli"
    argv = ["train", "--algo", algo, "--env", GYM_ID, "--preset", "fast", *_flags(LOOP)]
    assert main([*argv, *_flags(AGENT[algo], "agent."), "--run-dir", str(root)]) == 0
    run_dir = root / "gym_custom_env_pkg_PointMass-v0" / algo / "seed0"
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0
    assert "over 2 episodes" in capsys.readouterr().out
    out = tmp_path / "policy"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    assert "exported to" in capsys.readouterr().out
    assert main(["export", str(run_dir), "--out", str(out)]) == 2  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
    if algo == "sac":  # the env name only passes through these two: once is enough
        assert main(["report", str(root), "--out", str(tmp_path / "report")]) == 0
        assert (tmp_path / "report" / "report.md").is_file()
        sweep = ["sweep", "--algos", algo, "--envs", GYM_ID, "--seeds", "0", "1", "--dry-run"]
        assert main([*sweep, "--run-dir", str(tmp_path / "sweep")]) == 0
        assert GYM_ID in capsys.readouterr().out

    # -- the exported policy acts exactly as the run's, needing only revflow ------------------
    run = revflow.load(run_dir)
    assert run.algo == algo and run.env == GYM_ID and run.step == 200
    assert run.checkpoints == [100, 200] and run.result["env_steps"] == 200
    assert list(run.evals["step"]) == [0, 100, 200] and "step" in run.metrics.columns
    exported = revflow.load_policy(out)
    assert (exported.obs_dim, exported.act_dim) == (4, 2)
    assert exported.info["step"] == 200 and exported.info["env"] == GYM_ID
    obs = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    _same_actions(run.policy(), exported, obs)
    # ... and as the agent with its whole train state (optimisers, targets) does (up to
    # float rounding: XLA compiles the two programs separately).
    agent, state, _, _ = engine.load_agent(run_dir)
    key = jax.random.key(7)
    np.testing.assert_allclose(
        np.asarray(jax.jit(agent.act)(state, key, jnp.asarray(obs))),  # explore mode
        np.asarray(run.policy("explore")(obs, key)),
        rtol=1e-5,
        atol=1e-6,
    )
    # One observation or a batch; seeded calls without a key; the chosen checkpoint.
    first = revflow.load(run_dir).policy(mode="explore", seed=3)
    again = revflow.load(run_dir).policy(mode="explore", seed=3)
    one = np.asarray(first(obs[0]))
    assert one.shape == (2,) and np.all(np.abs(one) <= 1.0)
    np.testing.assert_array_equal(one, np.asarray(again(obs[0])))
    assert first(obs).shape == (5, 2)
    early = revflow.load(run_dir, step=100)
    assert early.step == 100
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        exported(np.zeros(3))

    # -- Python: the same training on a factory (rfm: dm_env; sac: a gymnasium lambda) -------
    opts = {**LOOP, **{f"agent.{k}": v for k, v in AGENT[algo].items()}}
    py_run = revflow.train(algo, FACTORIES[algo], "fast", seed=0, run_dir=tmp_path / "py", **opts)
    assert py_run.env.startswith("py:") and py_run.result["env_steps"] == 200
    assert py_run.agent_config == run.agent_config
    assert len(py_run.evals) == 3 and np.isfinite(py_run.evals["eval/return_mean"]).all()
    mean, std = py_run.evaluate(episodes=2)
    assert np.isfinite(mean) and std >= 0
    py_run.export(tmp_path / "py_policy")
    _same_actions(py_run.policy(), revflow.load_policy(tmp_path / "py_policy"), obs)
    assert revflow.resume(py_run.path).result == py_run.result  # finished: nothing to do


def test_train_refuses_bad_options_before_compute(tmp_path):
    cases = [
        ({"algo": "nope"}, "unknown algorithm 'nope'"),
        ({"warmup": 10}, "unknown option 'warmup'"),
        ({"agent.warmup_steps": 10}, "has no field 'warmup_steps'"),
        ({"eval_every": "often"}, "invalid option eval_every='often'"),
        ({"actor_hidden": "wide"}, "invalid option actor_hidden='wide'"),
        ({"agent.gamma": 2.0}, "gamma=2.0"),
        ({"steps": 0}, "steps=0"),
        ({"env": "gym:custom_env_pkg:DiscretePointMass-v0"}, "Discrete(3)"),
        ({"env": "dmc:cheetah-fly"}, "cheetah"),
        ({"preset": "turbo"}, "unknown preset 'turbo'"),
    ]
    for options, needle in cases:
        kwargs = {"algo": "rfm", "env": GYM_ID, "run_dir": tmp_path, **options}
        with pytest.raises(ValueError) as err:
            revflow.train(**kwargs)
        assert needle in str(err.value) and "\n" not in str(err.value), (options, err.value)
    assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.extended
def test_export_of_a_compiled_run(tmp_path, capsys, compile_cache):
    """A checkpoint written as revflow train-compiled writes them (of an untrained agent, no
    loop compiled) exports and loads like an engine run's. Extended: building the MJX task's
    state and restoring it took 167 s on the loaded 2-core CPU."""
    from revflow import compiled
    from revflow.agents.registry import make_config

    cfg = compiled.CompiledConfig(
        algo="sac", env="mjx:CartpoleSwingup", num_envs=2, steps=24, warmup_steps=6,
        chunk_iters=2, episode_length=5, progress=False, tensorboard=False,
    )  # fmt: skip
    agent_cfg = make_config("sac", "fast", **AGENT["sac"])
    trainer = compiled.CompiledTrainer(cfg, agent_cfg)
    run_dir = tmp_path / "run"
    config = compiled._config_dict(cfg, agent_cfg, trainer.mesh)
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(config))
    state = trainer.init_state()
    compiled._save(run_dir, 8, state, compiled._Host.initial(cfg), config, cfg)
    assert main(["export", str(run_dir), "--out", str(tmp_path / "policy")]) == 0
    run = revflow.load(run_dir)
    assert run.compiled and run.step == 8 and run.env == "mjx:CartpoleSwingup"
    exported = revflow.load_policy(tmp_path / "policy")
    assert (exported.obs_dim, exported.act_dim) == (5, 1)
    obs = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    _same_actions(run.policy(), exported, obs)


def test_export_errors_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    cases = [
        (["export", str(tmp_path / "nope"), "--out", str(tmp_path / "p")], "does not exist"),
        (["export", str(tmp_path), "--out", str(tmp_path / "full")], "already exists"),
        (["export", str(tmp_path)], "--out"),
    ]
    for argv, needle in cases:
        try:
            status = main(argv)
        except SystemExit as exit_:  # tyro: a missing required option
            status = exit_.code
        assert status == 2, argv
        err = capsys.readouterr().err.strip()
        assert needle in err, (argv, err)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        revflow.load_policy(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="holds no exported policy"):
        revflow.load_policy(tmp_path)


def test_import_revflow_stays_cheap():
    code = (
        "import sys, revflow\n"
        "assert 'jax' not in sys.modules and 'revflow.api' not in sys.modules\n"
        "assert callable(revflow.train) and 'jax' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_every_default_passes_the_option_type_check():
    """train()'s type check accepts every preset's own values (so it refuses only misuse)."""
    from revflow.api import _conforms, _hints
    from revflow.engine import TrainConfig

    configs = [TrainConfig()]
    for name in available():
        cls = get_agent_class(name).Config
        configs += [cls.from_preset(preset) for preset in cls.PRESETS]
    for config in configs:
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            assert _conforms(value, _hints(type(config))[field.name]), (config, field.name)


def test_acting_reads_only_the_exported_fields():
    """For every agent, the jaxpr of acting (all modes) reads no target network and no
    optimiser state: the leaves :func:`acting_params` drops are dead inputs."""
    for name in available():
        cls = get_agent_class(name)
        agent = cls(cls.Config.from_preset("fast"), 3, 2)
        abstract = jax.eval_shape(agent.init, jax.random.key(0))
        leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)

        def act_all(*xs, agent=agent, treedef=treedef):
            state = jax.tree_util.tree_unflatten(treedef, xs)
            obs = jnp.zeros((4, 3))
            return [agent.act(state, jax.random.key(1), obs, mode) for mode in ACT_MODES]

        jaxpr = jax.make_jaxpr(act_all)(*[leaf for _, leaf in leaves]).jaxpr
        read = {id(v) for eqn in jaxpr.eqns for v in eqn.invars}
        read |= {id(v) for v in jaxpr.outvars}
        kept = set(acting_params(abstract, agent.acting_extra_fields))
        for (path, _), var in zip(leaves, jaxpr.invars, strict=True):
            field = path[0].name
            assert id(var) not in read or field in kept, (name, jax.tree_util.keystr(path))
        assert "actor_params" in kept and not any(
            f.name.endswith("_opt") or f.name.startswith("target_")
            for f in dataclasses.fields(abstract)
            if f.name in kept and f.name not in agent.acting_extra_fields
        )


def _readme_snippet() -> str:
    text = README.read_text()
    match = re.search(r"<!-- python-quickstart -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, "README.md lost its python-quickstart snippet"
    return match.group(1)


def test_readme_quickstart_snippet_runs(tmp_path, monkeypatch, compile_cache):
    snippet = _readme_snippet()
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 10
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    policy, action = namespace["policy"], np.asarray(namespace["action"])
    assert isinstance(policy, revflow.Policy) and action.shape == (policy.act_dim,)
    assert (tmp_path / "policy").is_dir()
