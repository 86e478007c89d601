"""The revflow side of benchmarks/fidelity on its stored inputs, against the stored outputs of
the authors' code (written by ``compare.py --store``): the harness cannot rot, and revflow's
rfm and sac defaults stay equal to the authors' on every compared quantity."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

FIDELITY = Path(__file__).resolve().parents[1] / "benchmarks" / "fidelity"
sys.path.insert(0, str(FIDELITY))

import check  # noqa: E402
import revflow_side  # noqa: E402


def _load(name: str) -> dict[str, np.ndarray]:
    with np.load(FIDELITY / "data" / name) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def stored() -> tuple[dict, dict]:
    return _load("inputs.npz"), _load("official.npz")


def test_inputs_are_reproducible(stored) -> None:
    """make_inputs still draws the stored inputs (incl. the posterior noise revflow's
    estimator draws from its key); otherwise the stored official outputs are stale."""
    inputs, _ = stored
    fresh = revflow_side.make_inputs()
    assert sorted(fresh) == sorted(inputs)
    for key, value in inputs.items():
        np.testing.assert_array_equal(fresh[key], value, err_msg=key)


@pytest.mark.parametrize("agent", ["rfm", "sac"])
def test_defaults_match_the_authors(stored, agent: str) -> None:
    inputs, official = stored
    rows = check.compare(official, revflow_side.run(inputs, official, (agent,)), (agent,))
    assert len(rows) >= 15
    bad = [r for r in rows if not r.ok]
    assert not bad, check.table(bad)


def test_check_flags_a_departure(stored) -> None:
    """The check can fail: a factor of 2 in one official output, or in one official gradient
    leaf, is flagged (``compare.py --preset revflow`` shows the real departures)."""
    _, official = stored
    mine = dict(official)
    mine["rfm/velocity_net"] = 2.0 * official["rfm/velocity_net"]
    leaf = next(k for k in official if k.startswith("rfm.grad.actor/"))
    mine[leaf] = 2.0 * official[leaf]
    # Map the official gradient onto revflow's layout to stand in for the revflow side.
    grads = check.flatten(
        check.GRADIENTS[("rfm", "actor")](check.unflatten(mine, "rfm.grad.actor")),
        "rfm.grad.actor",
    )
    mine.update(grads)
    rows = {r.quantity: r for r in check.compare(official, mine, ("rfm",))}
    assert not rows["velocity_net"].ok and not rows["actor_grad"].ok
    assert rows["critic_q"].ok and rows["posterior_mu1"].ok


def test_multi_step_check_sees_a_departure(stored) -> None:
    """The 20-update rfm check can fail: clipping both critics by one norm (revflow's earlier
    rule) moves the critics' trajectory outside its tolerance (``sensitivity.py``)."""
    import sensitivity

    inputs, official = stored
    diffs = sensitivity.trajectory_differences(inputs, official, critic_clip="global")
    assert diffs["trajectory_critic"] > 10 * check.TRAJECTORY, diffs


def test_relative_difference_and_table() -> None:
    assert check.relative_difference(np.array([2.0, 4.0]), np.array([2.0, 4.4])) == pytest.approx(
        0.4 / 4.4
    )
    assert check.relative_difference(np.array([0.1]), np.array([0.0])) == pytest.approx(0.1)
    assert np.isnan(check.relative_difference(np.zeros(2), np.zeros(3)))
    rows = [check.Row("rfm", "a", 1e-7, 1e-5), check.Row("rfm", "b", float("nan"), 1e-5)]
    text = check.table(rows)
    assert "missing" in text and text.splitlines()[-1] == "fidelity: 1 of 2 quantities match"


def test_learning_dry_run_and_conversion(tmp_path, capsys) -> None:
    """learning.py: the plan (2 implementations x 3 agents x 2 tasks x 3 seeds), commands
    that set the same values on both sides, finished runs skipped, and the authors'
    metrics.jsonl converted into a run that revflow's report reads."""
    import learning

    from revflow.report import read_run_curve

    official = tmp_path / "official"
    (official / "configs").mkdir(parents=True)
    (official / "main.py").write_text("")
    (official / "configs" / "rfm.yaml").write_text("")
    results = tmp_path / "results"
    argv = ["--official", str(official), "--official-python", "py", "--results", str(results)]
    assert learning.main([*argv, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "0 of 36 runs done; 36 to go" and len(lines) == 37
    rfm_authors = next(x for x in lines if "algo=rfm" in x)
    assert "--config" in rfm_authors and "rfm.num_particles_training=8" in rfm_authors
    assert "logger.wandb_project=none" in rfm_authors and "trainer.num_eval_envs=25" in rfm_authors
    sac_authors = next(x for x in lines if "algo=sac" in x)
    assert "--config" not in sac_authors  # their run.sh: baselines without a config file
    rfm_revflow = next(x for x in lines if "--algo rfm" in x)
    assert "--agent.num-particles 8" in rfm_revflow and "--eval-episodes 25" in rfm_revflow
    assert "--checkpoint-every 2500" in rfm_revflow  # an interrupted run resumes
    qne_authors = next(x for x in lines if "algo=maxentdp" in x)
    assert "maxentdp.score_samples_num=32" in qne_authors and "--config" not in qne_authors
    qne_revflow = next(x for x in lines if "--algo qne" in x)
    assert "--agent.num-reverse-samples 32" in qne_revflow
    assert "maxentdp.log_prob_samples=10" in qne_authors
    assert "--agent.log-prob-samples 10" in qne_revflow
    assert learning.main([*argv, "--dry-run", "--implementation", "authors"]) == 0
    authors_only = capsys.readouterr().out.splitlines()[1:]
    assert len(authors_only) == 18 and all("main.py" in x for x in authors_only)
    assert learning.main([*argv, "--dry-run", "--agents", "sac", "rfm"]) == 0
    short = capsys.readouterr().out.splitlines()[1:]
    assert len(short) == 24 and not any("qne" in x or "maxentdp" in x for x in short)
    assert learning.main([*argv, "--dry-run", "--tasks", "dmc:walker-walk"]) == 0
    walker = capsys.readouterr().out.splitlines()[1:]
    assert len(walker) == 18 and all("walker" in x for x in walker)
    assert learning.main([*argv, "--start-before", "00:00"]) == 0  # past: starts nothing
    assert "left for a later sitting" in capsys.readouterr().out
    assert not results.exists()
    assert learning.main([*argv, "--start-before", "7pm"]) == 2
    assert "'7pm' is not HH:MM" in capsys.readouterr().err

    run = learning.Run("authors", "rfm", "dmc:cartpole-swingup", 0)
    logs = tmp_path / "logs" / "x"
    logs.mkdir(parents=True)
    records = [{"step": s, "episode_reward": 10.0 + s / 100} for s in (0, 2500, 5000)]
    (logs / "metrics.jsonl").write_text(
        "\n".join(json.dumps(r) for r in [{"step": 1000, "q_loss": 1.0}, *records]) + "\n"
    )
    loaded, _ = read_run_curve(learning.convert_official(run, tmp_path / "logs", results))
    assert loaded.label == "rfm-authors" and loaded.complete
    np.testing.assert_array_equal(loaded.steps, [0, 2500, 5000])
    np.testing.assert_allclose(loaded.returns, [10.0, 35.0, 60.0])
    assert learning.main([*argv, "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "1 of 36 runs done; 35 to go"


def test_qne_matches_the_authors_maxentdp(stored) -> None:
    """revflow's qne (its default, the box policy) reproduces every stored maxentdp quantity
    with their recorded draws injected, and its evaluation from its own state-hash keys."""
    inputs, _ = stored
    official = _load("official_qne.npz")
    rows = check.compare(official, revflow_side.run(inputs, official, ("qne",)), ("qne",))
    assert len(rows) >= 60
    bad = [r for r in rows if not r.ok]
    assert not bad, check.table(bad)


def test_qne_update_draws_as_the_authors(stored) -> None:
    """The keys of qne's update are split and used in the authors' order: from their update
    key, revflow's own draws equal the recorded ones (normal and uniform draws, to an ulp; the
    truncated-normal candidates are injected above), and the evaluation keys are theirs."""
    import jax
    from spec import SIZES

    from revflow.agents.box_diffusion import state_hash_keys
    from revflow.agents.registry import make_agent, make_config

    inputs, _ = stored
    official = _load("official_qne.npz")
    cfg = make_config(
        "qne",
        num_flow_steps=SIZES["diffusion_steps"],
        log_prob_samples=SIZES["qne_log_prob_samples"],
        log_prob_steps=SIZES["qne_log_prob_steps"],
    )
    agent = make_agent("qne", cfg, SIZES["obs_dim"], SIZES["act_dim"])
    (k_next, k_log_prob), (k_t, k_eps, _), _ = agent.objective.split(inputs["key_update"])
    b, d = inputs["action"].shape
    x_init, noise = agent.policy.draws(k_next, b)
    draw = {k.split("/", 1)[1]: v for k, v in official.items() if k.startswith("qne.draw/")}
    np.testing.assert_array_equal(x_init, draw["td_init"])
    np.testing.assert_allclose(noise, draw["td_noise"], rtol=0, atol=1e-6)  # XLA: 1 ulp
    _, k_noise = jax.random.split(k_log_prob)
    shape = (b, cfg.log_prob_samples, cfg.log_prob_steps, d)
    np.testing.assert_array_equal(jax.random.normal(k_noise, shape), draw["log_prob_noise"])
    tau = jax.random.uniform(k_t, (b,), minval=cfg.tau_min, maxval=cfg.tau_max)
    np.testing.assert_array_equal(tau, draw["train_tau"])
    np.testing.assert_array_equal(jax.random.normal(k_eps, (b, d)), draw["train_noise"])
    keys = jax.random.key_data(state_hash_keys(inputs["obs"]))
    np.testing.assert_array_equal(keys, draw["eval_keys"])


def test_qne_revflow_preset_departs(stored) -> None:
    """The ``revflow`` preset (the tanh-latent qne) is not the authors' algorithm: it has no
    box sampler to compare (its quantities are missing) and its published defaults differ."""
    inputs, _ = stored
    official = _load("official_qne.npz")
    rows = check.compare(
        official, revflow_side.run(inputs, official, ("qne",), "revflow"), ("qne",)
    )
    bad = {r.quantity for r in rows if not r.ok}
    assert {"eps_net", "td_target", "actor_grad", "default/actor_max_grad_norm"} <= bad
    assert "default/log_prob_samples" in bad and "default/lam" not in bad


def test_dqs_matches_the_authors_dqs(stored) -> None:
    """revflow's dqs (its default, the action-space VE score policy) reproduces every stored
    dqs quantity with their recorded draws injected, and its evaluation from its own
    state-hash keys; the ``revflow`` preset (the tanh-latent dqs) is not their algorithm."""
    inputs, _ = stored
    official = _load("official_dqs.npz")
    rows = check.compare(official, revflow_side.run(inputs, official, ("dqs",)), ("dqs",))
    assert len(rows) >= 45
    bad = [r for r in rows if not r.ok]
    assert not bad, check.table(bad)
    rows = check.compare(
        official, revflow_side.run(inputs, official, ("dqs",), "revflow"), ("dqs",)
    )
    bad = {r.quantity for r in rows if not r.ok}
    assert {"score_net", "td_target", "actor_grad", "default/actor_max_grad_norm"} <= bad
    assert "default/lam" not in bad


def test_dqs_update_draws_as_the_authors(stored) -> None:
    """dqs's update splits and uses its key in the authors' order: from their update key,
    revflow's own draws (a' sampler, t, the replay noise, the K estimator normals per row)
    equal the recorded ones, and its evaluation keys and initial draws are theirs."""
    import jax
    from spec import SIZES

    from revflow.agents.box_diffusion import state_hash_keys
    from revflow.agents.registry import make_agent, make_config

    inputs, _ = stored
    official = _load("official_dqs.npz")
    draw = {k.split("/", 1)[1]: v for k, v in official.items() if k.startswith("dqs.draw/")}
    k_mc = SIZES["dqs_mc_samples"]
    cfg = make_config("dqs", num_flow_steps=SIZES["diffusion_steps"], num_reverse_samples=k_mc)
    agent = make_agent("dqs", cfg, SIZES["obs_dim"], SIZES["act_dim"])
    k_td, (k_t, k_z, k_score), _ = agent.objective.split(inputs["key_update"])
    b, d = inputs["action"].shape
    x_init, noise, _ = agent.policy.draws(k_td, b)
    np.testing.assert_array_equal(x_init, draw["td_init"])
    np.testing.assert_allclose(noise, draw["td_noise"], rtol=0, atol=1e-6)  # XLA: 1 ulp
    np.testing.assert_array_equal(jax.random.uniform(k_t, (b,)), draw["train_t"])
    np.testing.assert_array_equal(jax.random.normal(k_z, (b, d)), draw["train_noise"])
    xi = jax.vmap(lambda k: jax.random.normal(k, (k_mc, d)))(jax.random.split(k_score, b))
    np.testing.assert_allclose(xi, draw["score_noise"], rtol=0, atol=1e-6)
    keys = state_hash_keys(inputs["obs"])
    np.testing.assert_array_equal(jax.random.key_data(keys), draw["eval_keys"])
    init = jax.vmap(lambda k: jax.random.normal(k, (d,)))(keys)
    np.testing.assert_allclose(init, draw["eval_init"], rtol=0, atol=1e-6)


#: The authors' baselines whose official outputs are stored: quantities every one records.
_BASELINE_QUANTITIES = ("td_target", "critic_loss", "actor_loss", "critic_q", "init_max_abs_bias")


def test_qsm_matches_the_authors_qsm(stored) -> None:
    """revflow's qsm (its default, the box policy) reproduces every stored QSM quantity with
    their recorded draws injected, and its evaluation from its own state-hash keys; the
    ``revflow`` preset (the tanh-latent qsm) has none of their quantities and other defaults."""
    inputs, _ = stored
    official = _load("official_qsm.npz")
    rows = check.compare(official, revflow_side.run(inputs, official, ("qsm",)), ("qsm",))
    assert len(rows) >= 45
    bad = [r for r in rows if not r.ok]
    assert not bad, check.table(bad)
    rows = check.compare(
        official, revflow_side.run(inputs, official, ("qsm",), "revflow"), ("qsm",)
    )
    bad = {r.quantity for r in rows if not r.ok}
    assert {"eps_net", "eps_target", "actor_grad", "default/actor_max_grad_norm"} <= bad
    assert "default/ddpm_temperature" in bad and "default/q_scale" not in bad


def test_qsm_update_draws_as_the_authors(stored) -> None:
    """The keys of qsm's update are split and used in the authors' order: from their update
    key, revflow's own draws equal the recorded ones (to an ulp), and the evaluation keys are
    theirs."""
    import jax
    from spec import SIZES

    from revflow.agents.box_diffusion import state_hash_keys
    from revflow.agents.registry import make_agent, make_config

    inputs, _ = stored
    official = _load("official_qsm.npz")
    cfg = make_config("qsm", num_flow_steps=SIZES["diffusion_steps"])
    agent = make_agent("qsm", cfg, SIZES["obs_dim"], SIZES["act_dim"])
    (k_next, k_noise), (k_step, k_eps), _ = agent.objective.split(inputs["key_update"])
    b, d = inputs["action"].shape
    draw = {k.split("/", 1)[1]: v for k, v in official.items() if k.startswith("qsm.draw/")}
    x_init, noise = agent.policy.draws(k_next, b)
    np.testing.assert_array_equal(x_init, draw["td_init"])
    np.testing.assert_allclose(noise, draw["td_noise"], rtol=0, atol=1e-6)  # XLA: 1 ulp
    np.testing.assert_array_equal(jax.random.normal(k_noise, (b, d)), draw["td_action_noise"])
    steps = jax.random.randint(k_step, (b,), 0, cfg.num_flow_steps)
    np.testing.assert_array_equal(steps, draw["train_step"])
    np.testing.assert_array_equal(jax.random.normal(k_eps, (b, d)), draw["train_noise"])
    keys = jax.random.key_data(state_hash_keys(inputs["obs"]))
    np.testing.assert_array_equal(keys, draw["eval_keys"])


#: The authors' baselines whose official outputs are stored: quantities every one records.
_BASELINE_QUANTITIES = ("td_target", "critic_loss", "actor_loss", "critic_q", "init_max_abs_bias")


#: Quantities of qvpo that are absent on revflow's side by design (check.py's docstring):
#: the defaults of the authors' action-gradient branch, which their default never runs.
QVPO_ABSENT = {"default/action_lr", "default/action_gradient_steps"}


def test_qvpo_matches_the_authors_qvpo(stored) -> None:
    """revflow's qvpo (its default, the box policy) reproduces every stored QVPO quantity
    from their update and exploration keys, and its evaluation from its own state-hash keys;
    only the two defaults of their unused action-gradient branch are absent."""
    inputs, _ = stored
    official = _load("official_qvpo.npz")
    rows = check.compare(official, revflow_side.run(inputs, official, ("qvpo",)), ("qvpo",))
    assert len(rows) >= 60
    bad = {r.quantity for r in rows if not r.ok}
    assert bad == QVPO_ABSENT, check.table([r for r in rows if not r.ok])


def test_qvpo_update_draws_as_the_authors(stored) -> None:
    """From their update and exploration keys, revflow's qvpo draws the recorded normals,
    uniforms and integer steps (to an ulp), so the rows above use the authors' randomness;
    the evaluation keys are theirs."""
    import jax
    import jax.numpy as jnp
    from spec import SIZES

    from revflow.agents.box_diffusion import state_hash_keys
    from revflow.agents.registry import make_agent, make_config

    inputs, _ = stored
    draw = {k.split("/", 1)[1]: v for k, v in _load("official_qvpo.npz").items()
            if k.startswith("qvpo.draw/")}  # fmt: skip
    n_td, n_train = SIZES["qvpo_target_samples"], SIZES["qvpo_train_samples"]
    m, steps = SIZES["qvpo_entropy_samples"], SIZES["diffusion_steps"]
    cfg = make_config("qvpo", num_flow_steps=steps)
    agent = make_agent("qvpo", cfg, SIZES["obs_dim"], SIZES["act_dim"])
    b, d = inputs["action"].shape
    k_next, (k_actor, k_entropy, k_loss), _ = agent.objective.split(inputs["key_update"])
    for key, rows, name in ((k_next, b * n_td, "td"), (k_actor, b * n_train, "train"),
                            (inputs["key_explore"], b * SIZES["qvpo_behaviour_samples"],
                             "explore")):  # fmt: skip
        x_init, noise = agent.policy.draws(key, rows)
        np.testing.assert_array_equal(x_init, draw[f"{name}_init"], err_msg=name)
        np.testing.assert_allclose(noise, draw[f"{name}_noise"], rtol=0, atol=1e-6)
    uniform = jax.random.uniform(k_entropy, (b * m, d), minval=-1.0, maxval=1.0)
    np.testing.assert_array_equal(uniform, draw["entropy_actions"])
    k_step, k_eps = jax.random.split(k_loss)
    rows = b * (1 + m)
    np.testing.assert_array_equal(jax.random.randint(k_step, (rows,), 0, steps), draw["loss_step"])
    np.testing.assert_array_equal(jax.random.normal(k_eps, (rows, d), jnp.float32),
                                  draw["loss_noise"])  # fmt: skip
    keys = jax.random.key_data(state_hash_keys(inputs["obs"]))
    np.testing.assert_array_equal(keys, draw["eval_keys"])


def test_qvpo_revflow_preset_departs(stored) -> None:
    """The ``revflow`` preset (the tanh-latent qvpo) is not the authors' algorithm: it has no
    box sampler or mish nets to compare (its quantities are missing), and its defaults differ."""
    inputs, _ = stored
    official = _load("official_qvpo.npz")
    rows = check.compare(
        official, revflow_side.run(inputs, official, ("qvpo",), "revflow"), ("qvpo",)
    )
    bad = {r.quantity for r in rows if not r.ok}
    assert {"eps_net", "td_target", "actor_grad", "default/actor_max_grad_norm"} <= bad
    assert "default/action_augmentation" in bad and "default/entropy_weight" not in bad


#: The authors' baselines whose official outputs are stored: quantities every one records.
_BASELINE_QUANTITIES = ("td_target", "critic_loss", "actor_loss", "critic_q", "init_max_abs_bias")


@pytest.mark.parametrize("agent", ["qne", "dqs", "qsm", "qvpo"])
def test_stored_baseline_outputs(agent: str) -> None:
    """Each baseline's stored official outputs hold its defining quantities, its gradients,
    its published defaults and the draws to inject; without a revflow side every row is
    counted as not implemented (not a match), and the table says so."""
    import compare
    import spec

    official = _load(spec.stored_file(agent))
    assert {spec.agent_of(k) for k in official} == {agent, "jax_version"}
    for name in _BASELINE_QUANTITIES:
        assert f"{agent}/{name}" in official, name
    assert any(k.startswith(f"{agent}.grad.actor/") for k in official)
    assert any(k.startswith(f"{agent}.draw/td_") for k in official)
    defaults = {k.split("/default/")[1] for k in official if "/default/" in k}
    assert defaults == set(spec.HYPERPARAMETERS[agent])
    assert float(official[f"{agent}/default/critic_max_grad_norm"][0]) == 0.0  # no clipping

    rows = check.compare(official, {}, (agent,), implemented=())
    assert rows and all(r.not_implemented and not r.ok for r in rows)
    lines = check.table(rows).splitlines()
    assert lines[-1] == f"fidelity: 0 of {len(rows)} quantities match"
    assert lines[-2].startswith(f"not implemented: {len(rows)} quantities of {agent}")
    assert set(compare.load_stored()) >= set(official)


def test_store_keeps_the_other_agents(tmp_path, monkeypatch) -> None:
    """compare.py --store for some agents replaces their arrays only: rfm's and sac's share
    official.npz, so storing rfm keeps sac's."""
    import compare

    monkeypatch.setattr(compare, "DATA", tmp_path)
    compare.store({"x": np.zeros(1)}, {"rfm/a": np.ones(1), "sac/b": np.ones(2)}, ("rfm", "sac"))
    compare.store(
        {"x": np.zeros(1)}, {"rfm/a": np.full(1, 2.0), "qsm/c": np.ones(3)}, ("rfm", "qsm")
    )
    shared = dict(np.load(tmp_path / "official.npz"))
    assert sorted(shared) == ["rfm/a", "sac/b"] and shared["rfm/a"][0] == 2.0
    assert list(np.load(tmp_path / "official_qsm.npz")) == ["qsm/c"]


@pytest.mark.filterwarnings("ignore::revflow.report.ReportWarning")
def test_overlap_pairs_each_agent_with_the_authors(tmp_path, capsys) -> None:
    """overlap.py on a report of stand-in runs: revflow's ``X`` paired with ``X-authors`` per
    task, overlapping and disjoint intervals told apart, a one-seed pair not counted."""
    import overlap

    from revflow.report import ReportArgs, run_report

    def run(env: str, label: str, seed: int, final: float) -> None:
        path = tmp_path / "runs" / env.replace(":", "_") / label / f"seed{seed}"
        path.mkdir(parents=True)
        train = {"algo": label.split("-")[0], "env": env, "label": label, "seed": seed}
        (path / "config.json").write_text(json.dumps({"train": {**train, "steps": 20}}))
        (path / "eval.csv").write_text(
            f"step,eval/return_mean,eval/return_std\n0,0.0,0.0\n20,{final},0.0\n"
        )
        (path / "result.json").write_text(json.dumps({"complete": True}))

    for seed in range(3):
        run("dmc:a", "rfm", seed, 100.0 + seed)
        run("dmc:a", "rfm-authors", seed, 101.0 + seed)  # overlaps
        run("dmc:b", "rfm", seed, 100.0 + seed)
        run("dmc:b", "rfm-authors", seed, 500.0 + seed)  # disjoint
    run("dmc:a", "sac", 0, 50.0)
    run("dmc:a", "sac-authors", 0, 50.0)  # one seed each: listed, not compared
    run_report(ReportArgs(runs=(str(tmp_path / "runs"),), out=str(tmp_path / "report")))
    capsys.readouterr()
    assert overlap.main(str(tmp_path / "report" / "final.csv")) == 0
    out = capsys.readouterr().out
    assert "| dmc:a | rfm | 3 / 3 |" in out and out.count("| yes |") == 1
    assert "| dmc:b | rfm | 3 / 3 |" in out and out.count("| **no** |") == 1
    assert "| dmc:a | sac | 1 / 1 |" in out and "| one seed |" in out
    assert out.strip().endswith("intervals overlap on 1 of 2 (task, agent) pairs")
    assert overlap.main(str(tmp_path / "missing.csv")) == 2
