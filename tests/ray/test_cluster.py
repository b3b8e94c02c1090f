"""A real two-node Ray cluster on this machine: placement, jobs, metrics, and surviving SIGKILLs.

The cluster lives in a helper process (tests/cluster_helper.py); every training run is a real
`a3c train --address ...` subprocess, inspected through the State API and the node's Prometheus endpoint.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRESS = re.compile(r"steps\s+([\d,]+) \|.*version\s+([\d,]+)")


@pytest.fixture(scope="module")
def cluster():
    env = dict(os.environ, PYTHONPATH=ROOT, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    helper = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster_helper"],
        cwd=ROOT,
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    info = json.loads(helper.stdout.readline())
    info["helper"] = helper
    yield info
    try:
        helper.communicate("exit\n", timeout=60)
    except subprocess.TimeoutExpired:
        helper.kill()


class Run:
    """`a3c train --address` in a subprocess; its output is collected line by line on a thread."""

    def __init__(self, cluster, tmp_path, *args, pythonpath: str = ROOT):
        self.run_dir = str(tmp_path / "run")
        cmd = [
            sys.executable,
            "-m",
            "ray_a3c.cluster.cli",
            "train",
            "--address",
            cluster["address"],
            "--run-dir",
            self.run_dir,
            "--seed",
            "0",
            "--set",
            "run.log_interval_s=0.5",
            *args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=pythonpath),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while not any(needle in line for line in self.lines):
            assert self.proc.poll() is None or any(needle in line for line in self.lines), "".join(self.lines)
            assert time.time() < deadline, f"no '{needle}' in:\n" + "".join(self.lines)
            time.sleep(0.1)

    def finish(self, timeout: float = 300) -> dict:
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        out = "".join(self.lines)
        assert self.proc.returncode == 0, out
        self.assert_counters_never_go_backwards()
        return json.loads(self.lines[-1])

    def assert_counters_never_go_backwards(self) -> None:
        points = [tuple(int(g.replace(",", "")) for g in m.groups()) for m in map(PROGRESS.search, self.lines) if m]
        assert len(points) >= 2
        for (s0, v0), (s1, v1) in zip(points, points[1:], strict=False):
            assert s1 >= s0 and v1 >= v0, f"counters went backwards: {(s0, v0)} -> {(s1, v1)}"


def actors(cluster) -> dict:
    from ray.util.state import list_actors

    alive = list_actors(address=cluster["dashboard"], filters=[("state", "=", "ALIVE")], limit=1000)
    # Names carry the run (`a3c:<run>:ps`); each test runs one training at a time, so the role identifies it.
    return {"a3c:" + a.name.rsplit(":", 1)[1]: a for a in alive if a.name and a.name.startswith("a3c:")}


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


def pid_of(cluster, name: str) -> int:
    return actors(cluster)[name].pid


def test_killed_worker_is_restarted_and_the_run_solves(cluster, tmp_path):
    # 300, not CartPole's 475 confirmed over 100 greedy episodes: the kill reorders every later gradient, and once
    # in CI a run ended its 600k steps unconfirmed at 475; 300 still needs learning after the restart (random: ~22)
    run = Run(cluster, tmp_path, "--stop-return", "300", "--total-env-steps", "600000")
    run.wait_for("steps/s")
    os.kill(pid_of(cluster, "a3c:worker-1"), signal.SIGKILL)
    summary = run.finish()
    progress = [line for line in run.lines if "steps/s" in line][-5:]
    assert summary["reason"] == "solved" and summary["restarts"]["worker"] >= 1, (summary, progress)
    assert any("worker-1 failed" in line for line in run.lines)


def test_hung_worker_is_replaced_and_crashed_evaluator_restarts(cluster, tmp_path):
    # A fixed time, not a stop return: the other worker alone may solve CartPole before the timeout fires.
    run = Run(
        cluster,
        tmp_path,
        "--time-limit",
        "20",
        "--set",
        "run.stop_return=null",
        "cluster.worker_timeout_s=3",
        "env.step_timeout_s=0",  # must be below the worker timeout; the env watchdog is not what this tests
        "run.eval_interval_s=1",
    )
    run.wait_for("placement:")
    named = actors(cluster)
    os.kill(named["a3c:worker-0"].pid, signal.SIGSTOP)  # alive but silent: only the timeout can tell
    os.kill(named["a3c:eval"].pid, signal.SIGKILL)
    summary = run.finish()
    assert summary["reason"] == "time_limit", summary
    assert summary["restarts"]["worker"] >= 1 and summary["restarts"]["evaluator"] >= 1, summary
    assert any("evaluator failed" in line for line in run.lines)
    assert any("worker-0 sent nothing" in line for line in run.lines)


def test_killed_parameter_server_is_recreated_from_its_checkpoint(cluster, tmp_path):
    interval = 1.5
    run = Run(
        cluster,
        tmp_path,
        "--stop-return",
        "300",
        "--total-env-steps",
        "1500000",
        "--set",
        f"run.checkpoint_interval_s={interval}",
        "algo.learning_rate=0.0002",
    )
    deadline = time.time() + 120
    while not os.path.isdir(os.path.join(run.run_dir, "checkpoints")) or not any(
        f.startswith("ckpt-") for f in os.listdir(os.path.join(run.run_dir, "checkpoints"))
    ):
        assert time.time() < deadline and run.proc.poll() is None, "".join(run.lines)
        time.sleep(0.1)
    os.kill(pid_of(cluster, "a3c:ps"), signal.SIGKILL)
    summary = run.finish()
    assert summary["reason"] == "solved" and summary["restarts"]["ps"] == 1, summary
    versions = [
        (float(re.search(r"\[\s*([\d.]+)s\]", line).group(1)), int(m.group(2).replace(",", "")))
        for line in run.lines
        if (m := PROGRESS.search(line))
    ]
    fastest = max((v1 - v0) / max(t1 - t0, 1e-3) for (t0, v0), (t1, v1) in zip(versions, versions[1:], strict=False))
    assert summary["lost_updates"] <= fastest * interval * 1.5 + 20, (summary, fastest)


def test_a_sharded_ps_spreads_over_both_nodes_and_survives_a_killed_shard(cluster, tmp_path):
    """learner.num_shards=2: the shards land on different nodes; SIGKILL the one that is not the lead mid-run:
    it is recreated from its part of the newest checkpoint, the workers find it again, the run solves, and the
    env steps the lead counted are exactly the ones the workers delivered."""
    run = Run(
        cluster,
        tmp_path,
        "--stop-return",
        "300",
        "--total-env-steps",
        "1500000",
        "--set",
        "learner.num_shards=2",
        "run.checkpoint_interval_s=1.5",
    )
    run.wait_for("placement:")
    named = actors(cluster)
    assert named["a3c:ps"].node_id != named["a3c:ps-shard-1"].node_id, named
    checkpoints = os.path.join(run.run_dir, "checkpoints")
    deadline = time.time() + 120
    while not os.path.isdir(checkpoints) or not any(f.startswith("ckpt-") for f in os.listdir(checkpoints)):
        assert time.time() < deadline and run.proc.poll() is None, "".join(run.lines)
        time.sleep(0.1)
    os.kill(named["a3c:ps-shard-1"].pid, signal.SIGKILL)
    summary = run.finish()
    assert summary["reason"] == "solved" and summary["restarts"]["ps"] == 1, summary
    assert summary["worker_env_steps"] == summary["env_steps"], summary
    assert any("parameter-server shard(s) [1] died" in line for line in run.lines), "".join(run.lines)


def test_removed_node_takes_its_workers_down_and_the_run_still_solves(cluster, tmp_path):
    run = Run(
        cluster, tmp_path, "--stop-return", "300", "--total-env-steps", "1500000", "--set", "algo.learning_rate=0.0002"
    )
    run.wait_for("steps/s")
    on_node = [n for n, a in actors(cluster).items() if a.node_id == cluster["worker_node_id"]]
    assert any(n.startswith("a3c:worker-") for n in on_node), on_node
    cluster["helper"].stdin.write("remove\n")
    cluster["helper"].stdin.flush()
    assert cluster["helper"].stdout.readline().strip() == "removed"
    summary = run.finish()
    assert summary["reason"] == "solved" and summary["restarts"]["worker"] >= 1, summary
    named = actors(cluster)
    assert all(a.node_id != cluster["worker_node_id"] for a in named.values())


def test_node_aggregation_on_three_nodes_survives_a_killed_aggregator(cluster, tmp_path):
    """Runs after the node removal: two fresh nodes join the head. One aggregator per node; SIGKILL the one
    beside a worker mid-run: its workers push directly until Ray restarts it, and nothing is counted twice."""
    for _ in range(2):
        cluster["helper"].stdin.write("add\n")
        cluster["helper"].stdin.flush()
        cluster["helper"].stdout.readline()
    run = Run(
        cluster,
        tmp_path,
        "--num-workers",
        "3",
        "--stop-return",
        "150",  # learning goes on (random play: ~22); counting every step once is what is tested
        "--total-env-steps",
        "1500000",
        "--set",
        "cluster.aggregate=node",
        "algo.learning_rate=0.0002",
    )
    run.wait_for("steps/s")
    named = actors(cluster)
    aggregators = {n: a for n, a in named.items() if n.startswith("a3c:agg-")}
    worker_nodes = {a.node_id for n, a in named.items() if n.startswith("a3c:worker-")}
    agg_nodes = [a.node_id for a in aggregators.values()]
    assert len(set(agg_nodes)) == len(agg_nodes) >= 3, aggregators  # one per alive node
    assert len(worker_nodes) == 3 and worker_nodes <= set(agg_nodes)  # spread, each beside an aggregator
    victim_name, victim = next(
        (n, a) for n, a in aggregators.items() if a.node_id in worker_nodes and a.node_id != named["a3c:ps"].node_id
    )
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.time() + 60
    while (now := actors(cluster).get(victim_name)) is None or now.pid == victim.pid:
        assert time.time() < deadline and run.proc.poll() is None, "".join(run.lines)
        time.sleep(0.5)
    summary = run.finish()
    assert summary["reason"] == "solved", summary
    assert summary["worker_env_steps"] == summary["env_steps"], summary
    assert any(f"aggregation: one aggregator on each of {len(agg_nodes)} node(s)" in line for line in run.lines)


def test_a_sharded_ps_behind_node_aggregators_learns_and_counts_every_step_once(cluster, tmp_path):
    """Runs after the aggregation test, on its nodes: learner.num_shards=2 with cluster.aggregate=node. Each
    node's aggregator forwards one part per shard and hands its workers every shard's reply; checkpoints (one
    consistent cut over the aggregates' members) are taken every 1.5 s while aggregates are in flight. The run
    learns and the lead counted exactly the env steps the workers delivered."""
    run = Run(
        cluster,
        tmp_path,
        "--num-workers",
        "4",
        "--stop-return",
        "150",  # learning goes on (random play: ~22); counting every step once is what is tested
        "--total-env-steps",
        "1500000",
        "--set",
        "learner.num_shards=2",
        "cluster.aggregate=node",
        "run.checkpoint_interval_s=1.5",
    )
    run.wait_for("placement:")
    named = actors(cluster)
    assert {"a3c:ps", "a3c:ps-shard-1"} <= set(named), named
    worker_nodes = {a.node_id for n, a in named.items() if n.startswith("a3c:worker-")}
    agg_nodes = {a.node_id for n, a in named.items() if n.startswith("a3c:agg-")}
    assert worker_nodes <= agg_nodes, (worker_nodes, agg_nodes)  # every worker pushes through its node's aggregator
    summary = run.finish()
    assert summary["reason"] == "solved", summary
    assert summary["worker_env_steps"] == summary["env_steps"], summary
    assert any("aggregation: one aggregator on each of" in line for line in run.lines), "".join(run.lines)
    assert not any("checkpoint cut:" in line for line in run.lines), "".join(run.lines)  # no packet went missing
    checkpoints = os.listdir(os.path.join(run.run_dir, "checkpoints"))
    assert sum(f.startswith("ckpt-") for f in checkpoints) >= 1, checkpoints


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
    """8 workers, the PS and the evaluator ask for 9.5 CPUs, more than the nodes have (6 at the start, 8 after
    the node tests): the reservation is refused as a whole, before any actor trains, within
    cluster.start_timeout_s + 30 s."""
    t0 = time.time()
    args = ["--address", cluster["address"], "--run-dir", str(tmp_path / "run"), "--num-workers", "8"]
    cmd = [sys.executable, "-m", "ray_a3c.cluster.cli", "train", *args, "--set", "cluster.start_timeout_s=10"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert (
        len(errors) == 1 and "cannot hold the run's actors together" in errors[0] and "{CPU: 9.5} in all" in errors[0]
    ), proc.stderr[-2000:]
    assert "steps/s" not in proc.stdout
    assert time.time() - t0 < 10 + 30
