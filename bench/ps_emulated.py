"""Parameter server under emulated workers: N light pushers (asyncio coroutines in a few host actors) each
sleep one real worker's env time, push a ready packet, wait for the reply and its weights, and start again;
for each N and shard count S, what the PS absorbs of what they offer, its policy lag, busy fraction and the
round trip. Then the cluster model (bench.ps_model) from this machine's constants.

    .venv/bin/python -m bench.ps_emulated [--workers 4 8 16 32 64 128 256] [--shards 1 2] [--seconds 4]
    .venv/bin/python -m bench.ps_emulated --workers 8 16 --seconds 2 --no-write     # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import time

import numpy as np

from bench.common import fail, machine, today, update_section
from bench.ps_capacity import WORKLOADS, breakdown, make_config, ready_packet, worker_packet_rate
from bench.ps_model import costs_table, model_section

WORKERS = [4, 8, 16, 32, 64, 128, 256]
FOLLOW = 0.5  # absorbed follows offered while each step up in N adds at least this share of its extra offer


def offered_rate(workers: int, env_s: float) -> float:
    """Packets/s N emulated workers offer with an instant reply: the ceiling of what the PS can absorb."""
    return workers / env_s


def knee(rows: list[dict], follow: float = FOLLOW) -> dict | None:
    """The last row (by offered rate) up to which the absorbed rate follows the offered one: every row up to
    it absorbs at least `follow` of the offer it adds over the row before (the first: of its whole offer).
    None when even the first row does not. Each row: {"offered": ..., "absorbed": ...} (packets/s)."""
    last, offered, absorbed = None, 0.0, 0.0
    for row in sorted(rows, key=lambda r: r["offered"]):
        if row["absorbed"] - absorbed < follow * (row["offered"] - offered):
            break
        last, offered, absorbed = row, row["offered"], row["absorbed"]
    return last


def knee_line(rows: list[dict], follow: float = FOLLOW) -> str:
    """One sentence: where absorbed stops following offered, for one workload and shard count."""
    found, best = knee(rows, follow), max(rows, key=lambda r: r["absorbed"])
    top = f"the most absorbed: {best['absorbed']:,.0f} packets/s at {best['workers']} workers"
    if found is None:
        smallest = min(rows, key=lambda r: r["offered"])
        return (
            f"S = {smallest['shards']}: absorbed does not follow offered even at {smallest['workers']} workers "
            f"(offered {smallest['offered']:,.0f}/s): the knee is below them; {top}."
        )
    if found is max(rows, key=lambda r: r["offered"]):
        return f"S = {found['shards']}: absorbed follows offered up to the largest N tried; {top}."
    return (
        f"S = {found['shards']}: absorbed follows offered up to {found['workers']} workers (offered "
        f"{found['offered']:,.0f}/s, absorbed {found['absorbed']:,.0f}/s), not past them; {top}."
    )


def emulated_config(workload: str, shards: int):
    import ray_a3c

    if shards == 1:
        return make_config(workload, "serial")  # today's serial PS, algo.max_policy_lag huge: nothing stale
    return ray_a3c.make_config(WORKLOADS[workload], **{"algo.max_policy_lag": 10**6, "learner.num_shards": shards})


async def emulated_worker(
    servers: list, plan, packet, env_s: float, begin: float, end: float, rng: random.Random
) -> list[float]:
    """Sleep env_s, push (one part per shard, each stamped with that shard's version), wait for the
    replies and fetch the weights they carry, as a real worker would; until `end` (epoch s). Returns the round
    trips (s) of the pushes begun in [begin, end)."""
    import ray

    from ray_a3c.learner.shards import split_packet

    versions, trips = [0] * len(servers), []
    await asyncio.sleep(rng.uniform(0, env_s))  # the workers do not start in step
    while True:
        await asyncio.sleep(env_s)
        sent = time.time()
        if sent >= end:
            return trips
        parts = split_packet(packet, plan, versions)  # S = 1: the whole packet
        replies = await asyncio.gather(*(s.apply_gradients.remote(p) for s, p in zip(servers, parts, strict=True)))
        for reply in replies:
            if isinstance(reply.weights, ray.ObjectRef):
                await reply.weights
        versions = [reply.version for reply in replies]
        if sent >= begin:
            trips.append(time.time() - sent)


class EmulatedHost:
    """One process of many emulated workers (a Ray actor with num_cpus 0; its coroutines share one loop)."""

    def __init__(self) -> None:  # imported now, not in the first row's window (a PS handle's arrival did)
        import ray_a3c.cluster.comms.remote  # noqa: F401
        import ray_a3c.cluster.comms.sharding  # noqa: F401

    async def run(self, servers: list, plan, packet, ranks: list[int], env_s: float, begin: float, end: float):
        mine = [dataclasses.replace(packet, worker_rank=r) for r in ranks]
        workers = [emulated_worker(servers, plan, p, env_s, begin, end, random.Random(p.worker_rank)) for p in mine]
        return sum(await asyncio.gather(*workers), [])


def measure(workload: str, shards: int, workers: int, env_s: float, seconds: float, hosts: list, ctx: dict) -> dict:
    """One row: `workers` emulated workers over `hosts` against a fresh PS (S = 1) or S fresh shard servers,
    timed over `seconds` after a warm-up. `ctx`: the workload's spaces and ready packet, and the warm-up."""
    import ray

    from ray_a3c.cluster.comms.remote import RemoteParameterServer
    from ray_a3c.learner.shards import plan_for

    cfg = emulated_config(workload, shards)
    spaces, packet = ctx["spaces"], ctx["packet"]
    plan = plan_for(cfg, spaces)
    if shards == 1:
        servers = [RemoteParameterServer.options(num_cpus=0).remote(cfg, spaces)]
    else:
        from ray_a3c.cluster.comms.sharding import RemoteShardServer

        packet = packet.rerouted(grad_norm=ctx["grad_norm"])  # the sender's, as a real worker's
        servers = [RemoteShardServer.options(num_cpus=0).remote(cfg, spaces, s) for s in range(shards)]

    def read() -> tuple[list, list, float]:
        got = ray.get([s.get_counters.remote() for s in servers] + [s.pull_stats.remote() for s in servers])
        return got[:shards], got[shards:], time.time()  # the reads ran just before they returned

    read()  # constructed; the window's statistics start clean
    begin = time.time() + ctx["warmup_s"]
    end = begin + seconds
    runs = [
        h.run.remote(servers, plan, packet, list(range(i, workers, len(hosts))), env_s, begin, end)
        for i, h in enumerate(hosts)
    ]
    time.sleep(max(0.0, begin - time.time()))
    before, _, t0 = read()
    time.sleep(max(0.0, end - time.time()))
    after, stats, t1 = read()
    trips = np.array(sum(ray.get(runs), [])) * 1e3
    for s in servers:
        ray.kill(s)
    window = t1 - t0
    counted = sum(after[0].packets.values()) - sum(before[0].packets.values())  # S > 1: shard 0's
    lags = [st.policy_lag_mean for st in stats if st.policy_lag_mean is not None]
    offered = offered_rate(workers, env_s)
    return {
        "workload": workload,
        "shards": shards,
        "workers": workers,
        "env_s": round(env_s, 5),
        "offered": round(offered, 1),
        "absorbed": round(counted / window, 1),
        "follows": round(counted / window / offered, 3),
        "lag_mean": round(float(np.mean(lags)), 2) if lags else None,
        "busy": round(max((a.busy_s - b.busy_s) / window for a, b in zip(after, before, strict=True)), 3),
        "rtt_p50_ms": round(float(np.percentile(trips, 50)), 2) if trips.size else None,
        "rtt_p95_ms": round(float(np.percentile(trips, 95)), 2) if trips.size else None,
        "pushes_s": round(trips.size / seconds, 1),  # what the pushers began in the window: ~absorbed
        "window_s": round(window, 2),
    }


def render(rows: list[dict], env_s: dict, costs: dict, rates: dict, args: argparse.Namespace) -> str:
    sizes = {w: ready_packet(make_config(w, "serial")).gradient.nbytes for w in WORKLOADS}
    env_note = ", ".join(f"{w} {s * 1e3:.1f} ms" for w, s in env_s.items())
    lines = [
        f"## Parameter server under emulated workers ({today()})",
        "",
        f"Machine: {machine()}. Command: `{command(args)}`. Each emulated worker is a coroutine in one of "
        f"{args.hosts} host actors: it sleeps env_s (one real worker's collect + differentiate time per packet, "
        f"{'given' if args.env_s else '1 / its packets/s on one core of this machine'}: {env_note}), pushes one "
        "ready packet (float32), waits for the reply, fetches the weights it carries, and starts again. Offered = "
        "N / env_s, the ceiling (an instant reply); absorbed = packets the PS counted per second (S > 1: shard "
        f"0) over a {args.seconds:g} s window after a {args.warmup:g} s warm-up; lag = the PS's mean policy lag "
        "over the window (S > 1: the shards' mean); PS busy = its busy_s over the window (S > 1: the busiest "
        "shard); round trip = push to reply and weights, as the pushers timed it. S = 1 is today's serial PS. "
        "**The PS, its shards and the hosts all share the 2 cores** (num_cpus 0 each): the ceiling here is this "
        f"machine's, not a PS node's. The knee: the last N whose step up still adds >= {FOLLOW:.0%} of its "
        "extra offer to the absorbed rate.",
        "",
    ]
    for w in dict.fromkeys(r["workload"] for r in rows):
        lines += [
            f"**{w}** (gradient {sizes[w] / 1e6:.2f} MB float32, env_s {env_s[w] * 1e3:.1f} ms)",
            "",
            "| shards | workers | offered packets/s | absorbed packets/s | absorbed / offered | lag mean | PS busy "
            "| round trip p50 ms | p95 ms |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        mine = [r for r in rows if r["workload"] == w]
        for r in mine:
            lag = "-" if r["lag_mean"] is None else f"{r['lag_mean']:.1f}"
            lines.append(
                f"| {r['shards']} | {r['workers']} | {r['offered']:,.0f} | {r['absorbed']:,.0f} | {r['follows']:.0%} "
                f"| {lag} | {r['busy']:.0%} | {r['rtt_p50_ms'] or 0:,.1f} | {r['rtt_p95_ms'] or 0:,.1f} |"
            )
        lines.append("")
        for s in dict.fromkeys(r["shards"] for r in mine):
            lines.append(f"- {knee_line([r for r in mine if r['shards'] == s])}")
        lines.append("")
    heading = "PS shards included, from this run's constants"
    lines += [costs_table(costs), "", model_section(costs, rates, sizes, args.nodes, args.cores, heading)]
    return "\n".join(lines)


def command(args: argparse.Namespace) -> str:
    parts = [
        ".venv/bin/python -m bench.ps_emulated",
        f"--workloads {' '.join(args.workloads)}",
        f"--workers {' '.join(map(str, args.workers))}",
        f"--shards {' '.join(map(str, args.shards))}",
        f"--seconds {args.seconds:g}",
        f"--warmup {args.warmup:g}",
        f"--hosts {args.hosts}",
    ]
    if args.env_s:
        parts.append(f"--env-s {args.env_s:g}")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["doom-cnn"], choices=list(WORKLOADS))
    parser.add_argument("--workers", type=int, nargs="+", default=WORKERS, help="emulated worker counts N")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2], help="shard counts S (learner.num_shards)")
    parser.add_argument("--seconds", type=float, default=4.0, help="the timed window of each row")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of pushing before each window")
    parser.add_argument("--hosts", type=int, default=2, help="host actors the emulated workers are spread over")
    parser.add_argument("--env-s", type=float, help="an emulated worker's seconds per packet (default: measured)")
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--cores", type=int, default=16)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if any(s < 1 for s in args.shards) or min(args.workers) < 1 or args.hosts < 1:
        fail("--shards, --workers and --hosts take positive counts")
    import ray

    from ray_a3c.common.env.envs import probe_spaces
    from ray_a3c.common.wire.flat import finite_norm, gradient_tensor

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a running cluster
    rates = {w: worker_packet_rate(p) for w, p in WORKLOADS.items()}  # before any pusher runs
    env_s = {w: args.env_s or 1.0 / rates[w] for w in args.workloads}
    hosts = [ray.remote(num_cpus=0)(EmulatedHost).remote() for _ in range(args.hosts)]
    ray.get([h.__ray_ready__.remote() for h in hosts])
    rows = []
    for w in args.workloads:
        cfg = make_config(w, "serial")
        packet = ready_packet(cfg)
        norm = finite_norm(gradient_tensor(packet.gradient))
        ctx = {"spaces": probe_spaces(cfg.env), "packet": packet, "grad_norm": norm, "warmup_s": args.warmup}
        for s in args.shards:
            for n in args.workers:
                rows.append(measure(w, s, n, env_s[w], args.seconds, hosts, ctx))
                print(json.dumps(rows[-1]), flush=True)
    for h in hosts:
        ray.kill(h)
    costs = {(w, d): breakdown(w, d) for w in WORKLOADS for d in ("float32", "bfloat16")}
    report = render(rows, env_s, costs, rates, args)
    print(report)
    if not args.no_write:
        update_section("ps_emulated", report)


if __name__ == "__main__":
    main()
