"""Ray Tune over runs: an ASHA sweep that names its best trial (slow: one whose best trial solves CartPole), a
PBT exploit that hands the weak trial
the donor's state with its new learning rate in effect, and specs refused before Ray starts."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from ray_a3c.cluster.sweeps.tune_spec import load_spec
from ray_a3c.common.reporting.errors import A3CError

SMALL = {
    "run.num_workers": 1,
    "env.num_envs_per_worker": 4,
    "run.eval_interval_s": 1.0,  # 1 CPU a trial
    "cluster.ps_num_cpus": 0.25,
    "cluster.worker_num_cpus": 0.5,
    "cluster.eval_num_cpus": 0.25,
}


def load(path):
    import torch

    return torch.load(path, weights_only=True)


def asha_sweep(tmp_path, env_steps: int, grace_period: int, trials: int = 4):
    """`trials` at once on the session's 4 CPUs (1 CPU a trial); the cartpole preset's stop: 475 confirmed on
    100 episodes.
    Returns Tune's results and the sweep's best trial; checks what every trial must leave behind."""
    import ray_a3c
    from ray_a3c.cluster.sweeps.tune import best_trial

    spec = {
        "config": "cartpole",
        "search": {"algo.learning_rate": {"loguniform": [1e-3, 3e-3]}, **SMALL},
        "scheduler": {"type": "asha", "grace_period": grace_period},
        "num_samples": trials,
        "max_concurrent_trials": trials,
        "stop": {"env_steps": env_steps},
        "seed": 0,
        "storage_path": str(tmp_path),
        "name": "asha",
    }
    results = ray_a3c.tune(spec, quiet=True)
    assert len(results) == trials and not results.errors
    for result in results:
        assert result.metrics["env_steps"] <= env_steps + 1000
        run_dir = os.path.join(result.path, "run-0")  # the run's directory lies in its trial's
        assert os.path.isfile(os.path.join(run_dir, "config.yaml"))
        assert result.metrics_dataframe["eval_return_mean"].notna().all()  # every evaluation reported on the way
        state = load(os.path.join(result.checkpoint.path, "checkpoint.pt"))  # a Tune checkpoint: our file
        assert {"model", "optimizers", "counters", "config_yaml"} <= set(state)
    return results, best_trial(results, load_spec(spec, storage_path=str(tmp_path / "unused")))


@pytest.mark.integration
def test_an_asha_sweep_names_the_trial_with_the_best_confirmed_return(ray_session, tmp_path):
    results, best = asha_sweep(tmp_path, env_steps=6000, grace_period=2000, trials=2)
    top = max(r.metrics["best_eval_return"] for r in results)
    assert best["best_eval_return"] == top and best["env_steps"] <= 6000 + 1000, best
    assert best["run_dir"].startswith(str(tmp_path)) and os.path.isdir(best["run_dir"])


@pytest.mark.slow  # a learning check: every trial trains up to 60k steps
@pytest.mark.integration
def test_an_asha_sweep_ends_with_its_best_trial_solving_cartpole(ray_session, tmp_path):
    _, best = asha_sweep(tmp_path, env_steps=60000, grace_period=8000)
    assert best["solved"] and best["best_eval_return"] >= 475 and best["env_steps"] <= 60000 + 1000, best
    best_pt = load(os.path.join(best["run_dir"], "checkpoints", "best.pt"))
    assert best_pt["eval_return_mean"] >= 475 and best_pt["eval_episodes"] == 100


@pytest.mark.slow  # an exploit needs both trials' reports at a perturbation: on a loaded machine reports thin
@pytest.mark.integration  # out and a short budget can end with none (seen once in the fast suite)
def test_a_pbt_exploit_restores_the_donors_state_with_the_mutated_learning_rate(ray_session, tmp_path):
    """Sync mode here (the example spec runs async). Two trials, a good and a hopeless learning rate,
    quantile 0.5: at a perturbation one of them exploits the other."""
    import ray_a3c

    spec = {
        "config": "cartpole",
        "search": {
            "algo.learning_rate": {"grid": [1e-3, 1e-5]},
            "algo.mode": "sync",
            "run.stop_return": None,
            "run.keep_checkpoints": 1000,
            **SMALL,
        },
        "scheduler": {
            "type": "pbt",
            "perturbation_interval": 4000,
            "quantile_fraction": 0.5,
            "hyperparam_mutations": {"algo.learning_rate": {"loguniform": [1e-4, 3e-3]}},
        },
        "stop": {"env_steps": 20000},
        "keep_checkpoints": 100,
        "storage_path": str(tmp_path),
        "name": "pbt",
    }
    results = ray_a3c.tune(spec, quiet=True)
    assert len(results) == 2 and not results.errors
    with open(os.path.join(results.experiment_path, "pbt_global.txt")) as fh:
        new_rates = [json.loads(line)[5]["algo.learning_rate"] for line in fh]
    exploits = []
    for log in glob.glob(os.path.join(results.experiment_path, "*", "run-*", "resume.log")):
        source = re.search(r"restored from (\S+) at version", open(log).read()).group(1)
        run_dir = os.path.dirname(log)
        if not source.startswith(os.path.dirname(run_dir) + os.sep):  # another trial's checkpoint
            exploits.append((run_dir, source))
    assert exploits and new_rates
    run_dir, source = exploits[0]
    donor = load(os.path.join(source, "checkpoint.pt"))
    ckpts = sorted(
        glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.pt")), key=lambda p: int(p.rsplit("-", 1)[1][:-3])
    )
    start, newest = load(ckpts[0]), load(ckpts[-1])
    assert start["counters"] == donor["counters"]
    assert all((start["model"][k] == donor["model"][k]).all() for k in donor["model"])  # the weights, the
    assert start["model"].keys() == donor["model"].keys()  # observation statistics among them (buffers)
    for name, opt in donor["optimizers"].items():  # and the optimizer's moments
        for index, moments in opt["state"].items():
            assert all((start["optimizers"][name]["state"][index][k] == v).all() for k, v in moments.items())
    with open(os.path.join(run_dir, "config.yaml")) as fh:
        new_rate = yaml.safe_load(fh)["algo"]["learning_rate"]
    donor_rate = yaml.safe_load(donor["config_yaml"])["algo"]["learning_rate"]
    assert new_rate in new_rates and new_rate != donor_rate
    assert newest["counters"]["version"] > start["counters"]["version"]  # it trained on, at the new rate
    rates = [g["lr"] for opt in newest["optimizers"].values() for g in opt["param_groups"]]
    assert rates and all(rate == pytest.approx(new_rate) for rate in rates), (rates, new_rate)


@pytest.mark.integration
def test_a_process_in_a_trials_group_gives_each_actor_its_own_bundle(ray_session):
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from ray_a3c.cluster.run.reservation import run_bundles
    from tests.helpers import small_config

    config = small_config(
        **{
            "run.num_workers": 2,
            "cluster.ps_num_cpus": 0.25,
            "cluster.eval_num_cpus": 0.25,
            "cluster.worker_num_cpus": 0.5,
        }
    )
    group = placement_group(run_bundles(config))  # as Tune makes it: the empty head bundle is dropped
    ray = ray_session
    ray.get(group.ready(), timeout=60)

    @ray.remote(num_cpus=0)
    def found(cfg, other):
        from ray_a3c.cluster.run.reservation import current_run_group

        return current_run_group(cfg) is not None, current_run_group(other) is not None

    try:
        strategy = PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)
        other = small_config(**{"run.num_workers": 3})
        assert ray.get(found.options(scheduling_strategy=strategy).remote(config, other), timeout=60) == (True, False)
        assert ray.get(found.remote(config, other), timeout=60) == (False, False)  # outside any group
    finally:
        remove_placement_group(group)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"serach": {}}, "unknown key 'serach' in the tune spec"),
        ({"search": {"algo.learning_rate": {"logunifrom": [1e-4, 1e-3]}}}, "unknown distribution 'logunifrom'"),
        ({"search": {"algo.learning_rate": {"loguniform": [1e-3, 1e-4]}}}, "low < high"),
        ({"search": {"algo.learning_rate": {"uniform": [-1.0, 1e-3]}}}, "search.algo.learning_rate: "),
        ({"search": {"algo.learnig_rate": 1e-3}}, "unknown config key 'algo.learnig_rate'"),
        ({"search": {"algo.entropy_coef": {"choice": []}}}, "non-empty list"),
        ({"scheduler": {"type": "hyperband"}}, "scheduler type must be one of"),
        ({"scheduler": {"type": "asha", "grace": 5}}, "unknown asha option 'grace'"),
        (
            {"scheduler": {"type": "pbt", "hyperparam_mutations": {"algo.learning_rate": [1e-3]}}},
            "perturbation_interval",
        ),
        (
            {
                "scheduler": {
                    "type": "pbt",
                    "perturbation_interval": 4000,
                    "hyperparam_mutations": {"model.hidden_sizes": [[32], [64]]},
                }
            },
            "pbt cannot mutate 'model.hidden_sizes'",
        ),
        (
            {
                "search": {"run.seed": {"choice": [0, 1]}},
                "scheduler": {
                    "type": "pbt",
                    "perturbation_interval": 5000,
                    "hyperparam_mutations": {"algo.entropy_coef": [0.0, 0.01]},
                },
            },
            "cannot differ in run.seed",
        ),
        ({"search": {"run.num_workers": 0}}, "not auto"),
        ({"metric": "reward"}, "metric 'reward' is not reported"),
        ({"stop": {"steps": 10}}, "unknown stop 'steps'"),
    ],
)
def test_bad_specs_are_refused_before_ray(change, message, tmp_path):
    spec = {"config": "cartpole", "storage_path": str(tmp_path), **change}
    with pytest.raises(A3CError, match=re.escape(message)):
        load_spec(spec)


def test_the_example_specs_are_valid(tmp_path):
    root = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples", "tune"
    )
    found = sorted(glob.glob(os.path.join(root, "*.yaml")))
    assert len(found) >= 4
    for path in found:
        spec = load_spec(path, storage_path=str(tmp_path))
        assert spec.search and spec.scheduler in ("asha", "pbt"), path


def test_the_cli_prints_one_error_line_exits_2_and_never_imports_ray(tmp_path):
    specs = {
        "unknown_key.yaml": {"config": "cartpole", "schedular": "asha"},
        "bad_distribution.yaml": {"config": "cartpole", "search": {"algo.entropy_coef": {"normal": [0, 1]}}},
    }
    for name, spec in specs.items():
        (tmp_path / name).write_text(yaml.safe_dump(spec))
    script = (
        "import contextlib, io, json, sys\nfrom ray_a3c.cluster.cli import main\nout = []\n"
        "for path in sys.argv[1:]:\n    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n        code = main(['tune', path])\n"
        "    out.append([code, err.getvalue()])\n"
        "print(json.dumps({'results': out, 'ray': 'ray' in sys.modules}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *(str(tmp_path / n) for n in specs)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not report["ray"], "Ray was imported for a spec that is refused"
    (code1, err1), (code2, err2) = report["results"]
    assert code1 == code2 == 2
    assert err1.startswith("error: unknown key 'schedular'") and err1.count("\n") == 1
    assert err2.startswith("error: algo.entropy_coef: unknown distribution 'normal'") and err2.count("\n") == 1
    assert not os.path.exists(tmp_path / "runs")
