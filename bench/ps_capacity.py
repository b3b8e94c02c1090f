"""Parameter-server capacity: K pusher actors replay a ready gradient packet (no env, no forward pass) at
the PS as fast as Ray carries them, for the CartPole MLP and the ViZDoom CNN, in each PS mode; plus the
per-packet cost breakdown and, from those constants, a model of an N-node cluster.

    .venv/bin/python -m bench.ps_capacity [--pushers 1 2 4 8 16] [--seconds 4] [--nodes 100 --cores 16]
    .venv/bin/python -m bench.ps_capacity --cluster-nodes 3 --pushers 8   # node aggregation, real Ray nodes
    .venv/bin/python -m bench.ps_capacity --in-process [--seconds 4]        # no Ray: one JSON line per workload
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import time

import numpy as np

from bench.common import machine, today, update_section
from bench.ps_model import costs_table, model_section

WORKLOADS = {"cartpole-mlp": "cartpole", "doom-cnn": "vizdoom_basic"}
MODES = {  # name -> (learner.max_batch_packets, learner.grad_dtype)
    "serial": (1, "float32"),
    "batched k=8": (8, "float32"),
    "serial bf16": (1, "bfloat16"),
    "batched k=8 bf16": (8, "bfloat16"),
}
NODE_MODES = {  # the --cluster-nodes run: name -> (max_batch_packets, grad_dtype, cluster.aggregate)
    "serial": (1, "float32", "none"),
    "batched k=8": (8, "float32", "none"),
    "node aggregation": (1, "float32", "node"),
    "node aggregation + batched k=8": (8, "float32", "node"),
    "node aggregation + batched k=8, bf16": (8, "bfloat16", "node"),
}


def make_config(workload: str, mode: str):
    import ray_a3c

    k, dtype, aggregate = NODE_MODES[mode] if mode in NODE_MODES else (*MODES[mode], "none")
    return ray_a3c.make_config(
        WORKLOADS[workload],
        **{
            "learner.max_batch_packets": k,
            "learner.grad_dtype": dtype,
            "algo.max_policy_lag": 10**6,
            "cluster.aggregate": aggregate,
        },
    )


def ready_packet(cfg):
    from ray_a3c.common.algo.models import build_model
    from ray_a3c.common.env.envs import probe_spaces
    from ray_a3c.common.wire.flat import encode_gradient, num_params
    from ray_a3c.common.wire.packet import GradientPacket

    model = build_model(probe_spaces(cfg.env), cfg.model)
    grad = np.random.default_rng(0).normal(0, 1e-3, num_params(model)).astype(np.float32)
    return GradientPacket(
        encode_gradient(grad, cfg.learner.grad_dtype),
        version=0,
        env_steps=80,
        episode_returns=[1.0],
        episode_lengths=[10],
    )


def measure(workload: str, mode: str, pushers: int, seconds: float) -> dict:
    import ray

    from ray_a3c.cluster.comms.aggregation import spawn_aggregators
    from ray_a3c.cluster.comms.remote import RemoteBatchingParameterServer, RemoteParameterServer
    from ray_a3c.common.env.envs import probe_spaces

    cfg = make_config(workload, mode)
    packet = ready_packet(cfg)
    namespace, prefix = cfg.cluster.namespace, f"bench-{os.getpid()}:"

    @ray.remote(num_cpus=0, scheduling_strategy="SPREAD")
    class Pusher:
        def push(self, ps, packet, seconds: float, aggregate: bool) -> list:
            """Lags (PS versions applied between this packet's weights and its own step) of every push; with
            node aggregation through the aggregator on this pusher's node."""
            from ray_a3c.cluster.comms.transport import find_aggregator

            target = (find_aggregator(cfg, prefix) or ps) if aggregate else ps
            end, lags = time.time() + seconds, []
            while time.time() < end:
                result = ray.get(target.apply_gradients.remote(packet))
                lags.append(max(result.version - 1 - packet.version, 0))
                packet.version = result.version
            return lags

    actor = RemoteBatchingParameterServer if cfg.learner.max_batch_packets > 1 else RemoteParameterServer
    ps = actor.options(num_cpus=0, name=prefix + "ps", namespace=namespace).remote(cfg, probe_spaces(cfg.env))
    aggregators = {}
    if cfg.cluster.aggregate == "node":
        aggregators = spawn_aggregators(
            cfg,
            prefix,
            lambda name, num_cpus: {"name": name, "namespace": namespace, "num_cpus": num_cpus, "max_task_retries": 0},
        )
    actors = [Pusher.remote() for _ in range(pushers)]
    ray.get(
        [ps.ping.remote()]
        + [a.ping.remote() for a in aggregators.values()]
        + [a.__ray_ready__.remote() for a in actors]
    )
    before, t0 = ray.get(ps.get_counters.remote()), time.perf_counter()
    lags = sum(ray.get([a.push.remote(ps, packet, seconds, bool(aggregators)) for a in actors]), [])
    elapsed = time.perf_counter() - t0
    after, weights_bytes = ray.get([ps.get_counters.remote(), ps.get_weights.remote()])
    weights_bytes = _nbytes(weights_bytes[1])
    forwarded = 0
    if aggregators:
        forwarded = sum(c["forwarded"] for c in ray.get([a.get_counters.remote() for a in aggregators.values()]))
    for a in [ps, *actors, *aggregators.values()]:
        ray.kill(a)
    packets_s = len(lags) / elapsed
    arrivals_s = forwarded / elapsed if aggregators else packets_s  # what reaches the PS
    steps_s = (after.version - before.version) / elapsed
    inline = weights_bytes <= 100 * 1024  # small weights ride each reply; large ones are put once per version
    return {
        "packets_s": packets_s,
        "steps_s": steps_s,
        "lag_mean": float(np.mean(lags)),
        "lag_p99": float(np.percentile(lags, 99)),
        "busy": (after.busy_s - before.busy_s) / elapsed,
        "in_bytes_s": arrivals_s * packet.gradient.nbytes,
        "out_bytes_s": (arrivals_s if inline else steps_s) * weights_bytes,
        "ps_arrivals_s": arrivals_s,
    }


def _nbytes(weights) -> int:
    import ray

    return int((ray.get(weights) if isinstance(weights, ray.ObjectRef) else weights).nbytes)


def breakdown(workload: str, dtype: str, repeats: int = 50) -> dict:
    """Seconds per packet of each PS phase, measured in this process on the plain classes."""
    import ray
    import torch

    from ray_a3c.common.env.envs import probe_spaces
    from ray_a3c.common.wire.flat import finite_norm, gradient_tensor
    from ray_a3c.common.wire.packet import rejection
    from ray_a3c.learner.flat_params import step
    from ray_a3c.learner.parameter_server import ParameterServer

    cfg = make_config(workload, "serial bf16" if dtype == "bfloat16" else "serial")
    ps, packet = ParameterServer(cfg, probe_spaces(cfg.env)), ready_packet(cfg)
    wire = pickle.dumps(packet, protocol=5)
    grad = gradient_tensor(packet.gradient)
    phases = {  # clip: the decoding copy into the flat gradient buffer, scaled; flatten: the weights' view
        "receive": lambda: pickle.loads(wire),
        "checks": lambda: rejection(
            [packet], math.isfinite(finite_norm(gradient_tensor(packet.gradient))), ps.version, cfg.algo.max_policy_lag
        ),
        "clip": lambda: ps.flat.set_gradient([(grad, 1.0)], cfg.algo.max_grad_norm),
        "adam": lambda: [step(opt) for opt in ps.optimizers.values()],
        "flatten": lambda: ps.flat.weights(copy=False),
        "publish": lambda: ray.put(ps.flat.weights(copy=False)),
    }
    torch.set_num_threads(1)
    costs = {}
    for name, fn in phases.items():
        fn()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        costs[name] = (time.perf_counter() - t0) / repeats
    costs["publish"] -= costs["flatten"]  # publish includes its own flatten
    if ps.flat.num_weights * 4 <= 100 * 1024:
        costs["publish"] = 0.0  # small weights ride inside each reply: no object-store put
    return costs


def in_process(workload: str, dtype: str, seconds: float, blocks: int = 5, shards: int = 1) -> dict:
    """The plain ParameterServer in this process (no Ray, default publish) applying one ready packet over and
    over, serial mode: what one packet costs the PS itself (decode, checks, clip, optimizer step, weights
    out). The median of `blocks` timed blocks, so a neighbour's burst on a shared machine moves it less.
    `shards` > 1: what the lead shard of a PS in that many shards pays for its slice (the largest part)."""
    from ray_a3c.common.env.envs import probe_spaces
    from ray_a3c.common.wire.flat import num_params
    from ray_a3c.learner.parameter_server import ParameterServer
    from ray_a3c.learner.shards import split_packet

    cfg = make_config(workload, "serial")
    cfg.learner.grad_dtype = dtype
    cfg.learner.num_shards = shards
    ps, packet = ParameterServer(cfg, probe_spaces(cfg.env)), ready_packet(cfg)
    packet = split_packet(packet, ps.plan, [0] * shards)[0]  # the lead's slice, with the sender's global norm
    encoded = packet.gradient

    def apply(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            packet.gradient, packet.version = encoded, ps.version  # a fresh arrival each time
            ps.apply_gradients(packet)
        return time.perf_counter() - t0

    n = max(10, int(0.2 / max(apply(10) / 10, 1e-6)))  # ~0.2 s per block after a warm-up
    per_block = max(1, int(seconds / blocks / 0.2))
    costs = sorted(apply(n * per_block) / (n * per_block) for _ in range(blocks))
    ms = costs[len(costs) // 2] * 1e3
    return {
        "workload": workload,
        "params": num_params(ps.model),
        "grad_dtype": dtype,
        "shards": shards,
        "optimizer": cfg.algo.optimizer,
        "ms_per_packet": round(ms, 4),
        "ms_best": round(costs[0] * 1e3, 4),
        "packets_s": round(1e3 / ms, 1),
    }


def worker_packet_rate(preset: str, iterations: int = 6) -> float:
    """Packets/s one rollout worker produces on one core of this machine (env + forward + backward)."""
    import ray_a3c
    from ray_a3c.actors.worker import RolloutWorker

    worker = RolloutWorker(ray_a3c.make_config(preset), 0)
    worker.compute_gradient()
    t0 = time.perf_counter()
    for _ in range(iterations):
        worker.compute_gradient()
    rate = iterations / (time.perf_counter() - t0)
    worker.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--cores", type=int, default=16)
    parser.add_argument("--rows", help="JSON file of pusher measurements: read if it exists, else written")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--cluster-nodes",
        type=int,
        default=0,
        help="measure node aggregation on a ray.cluster_utils.Cluster of this many nodes instead",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="no Ray: the plain PS applies one ready packet repeatedly; one JSON line per workload",
    )
    parser.add_argument(
        "--shards", nargs="+", type=int, default=[1], help="--in-process: shard counts (the lead shard's cost)"
    )
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32"],
        choices=["float32", "float16", "bfloat16"],
        help="--in-process: the gradient transport dtypes to measure",
    )
    args = parser.parse_args()
    if args.in_process:
        for w in WORKLOADS:
            for d in args.dtypes:
                for shards in args.shards:
                    print(json.dumps(in_process(w, d, args.seconds, shards=shards)), flush=True)
        return
    import ray

    if args.cluster_nodes:
        return node_run(args)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    if args.rows and os.path.exists(args.rows):
        with open(args.rows) as fh:
            rows = {tuple(r["key"]): r["row"] for r in json.load(fh)}
    else:
        rows = {}
        for key in [(w, m, k) for w in WORKLOADS for m in MODES for k in args.pushers]:
            rows[key] = measure(*key, args.seconds)
            print(key, {k: round(v, 3) for k, v in rows[key].items()}, flush=True)
        if args.rows:
            with open(args.rows, "w") as fh:
                json.dump([{"key": list(k), "row": r} for k, r in rows.items()], fh)
    costs = {(w, d): breakdown(w, d) for w in WORKLOADS for d in ("float32", "bfloat16")}
    rates = {w: worker_packet_rate(p) for w, p in WORKLOADS.items()}
    report = render(rows, costs, rates, args)
    print(report)
    if not args.no_write:
        update_section("ps_capacity", report)


def node_run(args: argparse.Namespace) -> None:
    """Pushers spread over N Ray nodes (one machine: the nodes share its cores), each mode of NODE_MODES."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    for _ in range(args.cluster_nodes - 1):
        cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    rows = {}
    try:
        for key in [(w, m, k) for w in WORKLOADS for m in NODE_MODES for k in args.pushers]:
            rows[key] = measure(*key, args.seconds)
            print(key, {k: round(v, 3) for k, v in rows[key].items()}, flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    lines = [
        f"## Node aggregation on {args.cluster_nodes} Ray nodes ({today()})",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python -m bench.ps_capacity --cluster-nodes "
        f"{args.cluster_nodes} --pushers {' '.join(map(str, args.pushers))} --seconds {args.seconds:g}`. "
        f"A `ray.cluster_utils.Cluster` of {args.cluster_nodes} nodes on this one machine (they share its 2 "
        "cores); pushers spread over the nodes replay one ready packet; with aggregation each pushes to its "
        "node's aggregator. PS arrivals/s = packets (or aggregates) that reach the PS.",
        "",
        "| workload | mode | pushers | packets/s | vs serial | PS arrivals/s | Adam steps/s | lag mean | lag p99 "
        "| PS busy | MB/s into PS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w in WORKLOADS:
        for m in NODE_MODES:
            for k in args.pushers:
                r, base = rows[(w, m, k)], rows[(w, "serial", k)]
                lines.append(
                    f"| {w} | {m} | {k} | {r['packets_s']:,.0f} | {r['packets_s'] / base['packets_s']:.2f}x "
                    f"| {r['ps_arrivals_s']:,.0f} | {r['steps_s']:,.0f} | {r['lag_mean']:.1f} | "
                    f"{r['lag_p99']:.0f} | {r['busy']:.0%} | {r['in_bytes_s'] / 1e6:,.1f} |"
                )
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        update_section("ps_capacity_nodes", report)


def render(rows: dict, costs: dict, rates: dict, args: argparse.Namespace) -> str:
    sizes = {w: ready_packet(make_config(w, "serial")).gradient.nbytes for w in WORKLOADS}
    lines = [
        f"## Parameter-server capacity ({today()})",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python -m bench.ps_capacity --pushers "
        f"{' '.join(map(str, args.pushers))} --seconds {args.seconds:g}`. K pusher actors replay one ready "
        "packet (no env, no forward pass) as fast as Ray carries it; PS and pushers share the 2 cores, so "
        "rows past 2 pushers measure a PS under contention.",
        "",
    ]
    for w in WORKLOADS:
        lines += [
            f"**{w}** (gradient {sizes[w] / 1e6:.2f} MB float32)",
            "",
            "| mode | pushers | packets/s | Adam steps/s | lag mean | lag p99 | PS busy | MB/s in | MB/s out "
            "| packets/s vs serial |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in MODES:
            for k in args.pushers:
                r, base = rows[(w, m, k)], rows[(w, "serial", k)]
                lines.append(
                    f"| {m} | {k} | {r['packets_s']:,.0f} | {r['steps_s']:,.0f} | {r['lag_mean']:.1f} | "
                    f"{r['lag_p99']:.0f} | {r['busy']:.0%} | {r['in_bytes_s'] / 1e6:,.1f} | "
                    f"{r['out_bytes_s'] / 1e6:,.1f} | {r['packets_s'] / base['packets_s']:.2f}x |"
                )
        lines.append("")
    lines += [costs_table(costs), "", model_section(costs, rates, sizes, args.nodes, args.cores)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
