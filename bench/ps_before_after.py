"""The parameter server through Ray, this code against an earlier checkout, in one invocation: K pusher actors
replay one ready packet as fast as Ray carries it (bench/ps_capacity.py's `measure`, the same in both trees),
the two trees alternating run by run; then this tree's sharded PS (S = 2) the same way. Each figure is the
median over the repeats; ratios are this tree's / the earlier one's.

    git worktree add /tmp/ps-before 778be56 && cp -al .venv /tmp/ps-before/.venv   # (then point it there)
    .venv/bin/python -m bench.ps_before_after --before /tmp/ps-before [--pushers 2] [--seconds 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

from bench.common import fail, machine, today, update_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = ("doom-cnn", "cartpole-mlp")
RAY_INIT = "import ray; ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False); "  # as ps_capacity's
MEASURE = (
    RAY_INIT + "import json, sys; from bench.ps_capacity import measure; "
    "print(json.dumps(measure(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))))"
)


def measure_tree(tree: str, workload: str, pushers: int, seconds: float) -> dict:
    """One `measure(workload, 'serial', pushers, seconds)` in `tree`'s own venv and Ray."""
    python = os.path.join(tree, ".venv", "bin", "python")
    out = subprocess.run(
        [python, "-c", MEASURE, workload, "serial", str(pushers), str(seconds)],
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=tree),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_sharded(workload: str, pushers: int, seconds: float, shards: int) -> dict:
    """As ps_capacity.measure, against this tree's sharded PS: each push sends every slice at once and waits
    for every reply, as a worker's ShardedClient does."""
    import numpy as np
    import ray

    from bench.ps_capacity import make_config, ready_packet
    from ray_a3c.cluster.comms.sharding import RemoteShardServer
    from ray_a3c.common.env.envs import probe_spaces
    from ray_a3c.learner.shards import split_packet

    cfg = make_config(workload, "serial")
    cfg = dataclasses.replace(cfg, learner=dataclasses.replace(cfg.learner, num_shards=shards))
    packet = ready_packet(cfg)

    @ray.remote(num_cpus=0, scheduling_strategy="SPREAD")
    class Pusher:
        def push(self, handles, plan, packet, seconds: float) -> list:
            end, lags, versions = time.time() + seconds, [], [packet.version] * plan.num_shards
            while time.time() < end:
                replies = ray.get(
                    [
                        h.apply_gradients.remote(p)
                        for h, p in zip(handles, split_packet(packet, plan, versions), strict=True)
                    ]
                )
                lags.append(max(replies[0].version - 1 - versions[0], 0))
                versions = [r.version for r in replies]
            return lags

    handles = [RemoteShardServer.options(num_cpus=0).remote(cfg, probe_spaces(cfg.env), i) for i in range(shards)]
    plan = ray.get(handles[0].shard_plan.remote())
    actors = [Pusher.remote() for _ in range(pushers)]
    ray.get([h.ping.remote() for h in handles] + [a.__ray_ready__.remote() for a in actors])
    before, t0 = ray.get([h.get_counters.remote() for h in handles]), time.perf_counter()
    lags = sum(ray.get([a.push.remote(handles, plan, packet, seconds) for a in actors]), [])
    elapsed = time.perf_counter() - t0
    after = ray.get([h.get_counters.remote() for h in handles])
    busy = [(a.busy_s - b.busy_s) / elapsed for a, b in zip(after, before, strict=True)]
    return {"packets_s": len(lags) / elapsed, "lag_mean": float(np.mean(lags)), "busy": max(busy)}


def _sharded_in_subprocess(workload: str, pushers: int, seconds: float, shards: int) -> dict:
    code = (
        RAY_INIT + "import json, sys; from bench.ps_before_after import measure_sharded; "
        "print(json.dumps(measure_sharded(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, workload, str(pushers), str(seconds), str(shards)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="a checkout of the earlier code with its own .venv")
    parser.add_argument("--pushers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.before, ".venv", "bin", "python")):
        fail(f"{args.before} has no .venv/bin/python: give a checkout with its own venv")
    before_rev = subprocess.run(
        ["git", "-C", args.before, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    after_rev = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    rows = {}
    for workload in args.workloads:
        runs = {"before": [], "after S=1": [], "after S=2": []}
        for _ in range(args.repeats):  # alternating, so a change in the machine's load hits every side alike
            runs["before"].append(measure_tree(args.before, workload, args.pushers, args.seconds))
            runs["after S=1"].append(measure_tree(ROOT, workload, args.pushers, args.seconds))
            runs["after S=2"].append(_sharded_in_subprocess(workload, args.pushers, args.seconds, 2))
        rows[workload] = {
            side: {k: statistics.median(r[k] for r in results) for k in ("packets_s", "lag_mean", "busy")}
            for side, results in runs.items()
        }
        print(json.dumps({"workload": workload, **rows[workload]}), flush=True)
    body = render(rows, args, before_rev, after_rev)
    print(body)
    if args.write:
        update_section("ps_before_after", body)


def render(rows: dict, args: argparse.Namespace, before_rev: str, after_rev: str) -> str:
    lines = [
        f"## Parameter server through Ray, before and after the flat buffer and shards ({today()})",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python -m bench.ps_before_after "
        f"--before <checkout of {before_rev}> "
        f"--pushers {args.pushers} --seconds {args.seconds:g} --repeats {args.repeats}` (this tree: {after_rev}). "
        f"{args.pushers} pusher actors replay one ready packet through Ray (no env, no forward pass); the PS, its "
        "shards and the pushers share the 2 cores, so S = 2 here measures the cost of splitting, not the gain of "
        "two machines. Medians of the repeats, the trees alternating run by run.",
        "",
        "| workload | side | packets/s | ratio to before | mean lag | PS busy (max over shards) |",
        "|---|---|---|---|---|---|",
    ]
    for workload, sides in rows.items():
        base = sides["before"]["packets_s"]
        for side, row in sides.items():
            lines.append(
                f"| {workload} | {side} | {row['packets_s']:,.0f} | {row['packets_s'] / base:.2f} | "
                f"{row['lag_mean']:.2f} | {row['busy']:.0%} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
