"""A real two-node Ray cluster on this machine, under faults that need more than one node: a killed parameter
server, a removed node, node aggregation with a killed aggregator, a sharded PS behind aggregators with a killed
shard.

The tests run in order on one cluster: the node removal, then two nodes added for the aggregation tests. Placement,
jobs, metrics and single-worker faults are in test_cluster.py, on a cluster of its own.
"""

import os
import re
import signal
import time

import pytest

from tests.cluster_client import PROGRESS, Run, actors, pid_of

pytestmark = pytest.mark.integration


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
    )
    run.wait_for_checkpoint()
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


def test_removed_node_takes_its_workers_down_and_the_run_still_solves(cluster, tmp_path):
    run = Run(cluster, tmp_path, "--stop-return", "300", "--total-env-steps", "1500000")
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


def test_a_sharded_ps_behind_node_aggregators_survives_a_killed_shard_and_counts_every_step_once(cluster, tmp_path):
    """Runs after the aggregation test, on its nodes: learner.num_shards=2 with cluster.aggregate=node. The
    shards land on different nodes; each node's aggregator forwards one part per shard and hands its workers
    every shard's reply; checkpoints (one consistent cut over the aggregates' members) are taken every 1.5 s
    while aggregates are in flight. SIGKILL the shard that is not the lead once one is written: it is recreated
    from its part of that checkpoint and the workers find it again. The run learns, and the lead counted exactly
    the env steps the workers delivered."""
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
    assert named["a3c:ps"].node_id != named["a3c:ps-shard-1"].node_id, named
    worker_nodes = {a.node_id for n, a in named.items() if n.startswith("a3c:worker-")}
    agg_nodes = {a.node_id for n, a in named.items() if n.startswith("a3c:agg-")}
    assert worker_nodes <= agg_nodes, (worker_nodes, agg_nodes)  # every worker pushes through its node's aggregator
    run.wait_for_checkpoint()
    before_kill = len(run.lines)
    os.kill(named["a3c:ps-shard-1"].pid, signal.SIGKILL)
    summary = run.finish()
    assert summary["reason"] == "solved" and summary["restarts"]["ps"] == 1, summary
    assert summary["worker_env_steps"] == summary["env_steps"], summary
    assert any("parameter-server shard(s) [1] died" in line for line in run.lines), "".join(run.lines)
    assert any("aggregation: one aggregator on each of" in line for line in run.lines), "".join(run.lines)
    # no packet went missing from a cut while both shards lived (the killed one's own packets may)
    assert not any("checkpoint cut:" in line for line in run.lines[:before_kill]), "".join(run.lines)
    checkpoints = os.listdir(os.path.join(run.run_dir, "checkpoints"))
    assert sum(f.startswith("ckpt-") for f in checkpoints) >= 1, checkpoints
