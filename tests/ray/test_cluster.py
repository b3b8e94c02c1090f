"""A real two-node Ray cluster on this machine: placement, jobs, metrics, and surviving a killed or hung worker
(faults that need more nodes: test_cluster_faults.py, on a cluster of its own).

The cluster lives in a helper process (tests/cluster_helper.py); every training run is a real
`a3c train --address ...` subprocess, inspected through the State API and the node's Prometheus endpoint.
"""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.cluster_client import ROOT, Run, actors, pid_of

pytestmark = pytest.mark.integration


def test_workers_spread_over_both_nodes_and_the_run_learns(cluster, tmp_path):
    # 150 confirmed over 100 greedy episodes (random play: ~22): learning across nodes, at a fraction of the
    # time to CartPole's 475, which the single-node learning check (test_integration) holds
    run = Run(cluster, tmp_path, "--num-workers", "2", "--stop-return", "150", "--total-env-steps", "400000")
    run.wait_for("placement:")  # printed once every actor, the evaluator too, runs
    named = actors(cluster)
    assert {"a3c:ps", "a3c:eval", "a3c:worker-0", "a3c:worker-1"} <= set(named)
    assert named["a3c:worker-0"].node_id != named["a3c:worker-1"].node_id
    assert cluster["worker_node_id"] in {named["a3c:worker-0"].node_id, named["a3c:worker-1"].node_id}
    assert run.finish()["reason"] == "solved"


def scrape(cluster) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster['metrics_port']}/metrics", timeout=10) as resp:
        return resp.read().decode()


def metric(text: str, name: str) -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")]
    return max(values) if values else float("nan")


def test_prometheus_endpoint_serves_the_project_metrics(cluster, tmp_path):
    run = Run(cluster, tmp_path, "--time-limit", "40", "--set", "run.stop_return=null")
    run.wait_for("steps/s")
    # The first export can carry a start-up reading of the throughput (a log window that began before the
    # workers ran); wait for a steady one as well as for the PS's version.
    deadline, text = time.time() + 60, ""
    while time.time() < deadline and not (
        metric(text, "ray_ps_version") > 0 and metric(text, "ray_perf_env_steps_per_s") > 100
    ):
        time.sleep(2)
        text = scrape(cluster)
    assert metric(text, "ray_ps_version") > 0, text[-2000:]
    assert metric(text, "ray_perf_env_steps_per_s") > 100
    assert metric(text, "ray_a3c_env_steps_total") > 1000  # a Counter
    assert not metric(text, "ray_a3c_restarts_total") > 0  # a Counter with no restart yet is not exported
    run.proc.send_signal(signal.SIGTERM)
    run.proc.wait(timeout=60)


def test_a_single_file_env_module_only_the_driver_has_trains_on_the_cluster(cluster, tmp_path):
    """The module sits in a directory only the driver's PYTHONPATH names: the nodes' workers can import it only
    from the job's runtime env (staged as a package), and the staging directory is gone once Ray has it."""
    import tempfile

    own = tmp_path / "own"
    own.mkdir()
    (own / "shipped_pole.py").write_text(
        "from gymnasium.envs.classic_control import CartPoleEnv\n\n\nclass ShippedPole(CartPoleEnv):\n    pass\n"
    )
    staging_before = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("a3c-modules-")}
    # 20k steps: enough for two progress lines (0.5 s apart) on a fast machine; 3k once ended after one
    run = Run(
        cluster,
        tmp_path,
        "--env",
        "shipped_pole:ShippedPole",
        "--total-env-steps",
        "20000",
        "--set",
        "run.stop_return=null",
        "run.evaluate=false",
        pythonpath=ROOT + os.pathsep + str(own),
    )
    summary = run.finish()
    assert summary["env_steps"] >= 20000
    staging_after = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("a3c-modules-")}
    assert staging_after == staging_before


def test_submit_runs_a_job_that_succeeds(cluster, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "ray_a3c.cluster.cli",
        "submit",
        "--address",
        cluster["dashboard"],
        "--total-env-steps",
        "5000",
        "--run-dir",
        str(tmp_path / "job"),
    ]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"submitted job \S+", proc.stdout) and proc.stdout.strip().endswith("SUCCEEDED")
    assert os.path.isdir(tmp_path / "job" / "checkpoints")


def test_killed_and_hung_workers_are_replaced_and_a_crashed_evaluator_restarts(cluster, tmp_path):
    """One run, three faults: worker-0 stopped (alive but silent: only cluster.worker_timeout_s can tell), the
    evaluator and then worker-1 killed. Each is replaced, training goes on past the last, and SIGTERM ends the run
    (so it lasts as long as the faults take; the time limit is only a bound)."""
    run = Run(
        cluster,
        tmp_path,
        "--time-limit",
        "90",
        "--set",
        "run.stop_return=null",
        "cluster.worker_timeout_s=3",
        "env.step_timeout_s=0",  # must be below the worker timeout; the env watchdog is not what this tests
        "run.eval_interval_s=1",
    )
    run.wait_for("placement:")  # printed once every actor, the evaluator too, runs
    named = actors(cluster)
    os.kill(named["a3c:worker-0"].pid, signal.SIGSTOP)
    os.kill(named["a3c:eval"].pid, signal.SIGKILL)
    run.wait_for("worker-0 sent nothing")
    os.kill(pid_of(cluster, "a3c:worker-1"), signal.SIGKILL)
    run.wait_for("worker-1 failed")
    run.wait_for("worker-0 failed")
    after_faults = run.versions()[-1]
    run.wait_until(lambda: run.versions()[-1] >= after_faults + 100, "training going on after the faults")
    run.proc.send_signal(signal.SIGTERM)
    summary = run.finish(code=130)
    assert summary["reason"] == "interrupted", summary
    assert summary["restarts"]["worker"] >= 2 and summary["restarts"]["evaluator"] >= 1, summary
    assert any("evaluator failed" in line for line in run.lines)


def test_a_registered_pixel_env_of_the_users_package_trains_on_the_cluster(cluster, tmp_path):
    """`module:EnvId`: the nodes import the tests' package, which registers the id; no preset: the pixel family."""
    run = Run(
        cluster,
        tmp_path,
        "--env",
        "tests.pixel_games:PixelCatch-v0",
        "--total-env-steps",
        "4000",
        "--set",
        "env.num_envs_per_worker=4",
        "run.evaluate=false",
    )
    summary = run.finish()
    assert summary["env_steps"] >= 4000 and summary["episodes"] > 100, summary
    assert any("defaults: the pixels family (image observations)" in line for line in run.lines[:3]), run.lines[:5]


def test_a_run_the_two_nodes_cannot_hold_ends_with_one_error_in_time(cluster, tmp_path):
    """8 workers, the PS and the evaluator ask for 9.5 CPUs, more than the nodes have (6: this file's cluster
    never grows): the reservation is refused as a whole, before any actor trains, within
    cluster.start_timeout_s + 30 s."""
    t0 = time.time()
    args = ["--address", cluster["address"], "--run-dir", str(tmp_path / "run"), "--num-workers", "8"]
    cmd = [sys.executable, "-m", "ray_a3c.cluster.cli", "train", *args, "--set", "cluster.start_timeout_s=3"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert (
        len(errors) == 1 and "cannot hold the run's actors together" in errors[0] and "{CPU: 9.5} in all" in errors[0]
    ), proc.stderr[-2000:]
    assert "steps/s" not in proc.stdout
    assert time.time() - t0 < 3 + 30
