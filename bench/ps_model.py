"""A model of an N-node cluster's parameter server from measured per-packet costs (bench.ps_capacity's
`breakdown`) and one worker's packet rate: PS busy fraction and NIC load per shard, for each transport, batch
cap, node-aggregation interval and shard count. Pure arithmetic: no Ray, no torch (bench.ps_capacity and
bench.ps_emulated render it; tests/unit/test_ps_emulated.py checks it)."""

from __future__ import annotations

NIC_BYTES_S = 10e9 / 8  # a 10 Gb/s link
TARGET = 0.5  # PS busy and each NIC under half their capacity
PER_PACKET = ("receive", "checks")  # paid for every packet
PER_STEP = ("clip", "adam", "flatten", "publish")  # paid once per optimizer step
MODEL_MODES = [  # (transport, k, node aggregation interval in s (0: workers push directly), shards)
    ("float32", 1, 0.0, 1),
    ("bfloat16", 32, 0.0, 1),
    ("bfloat16", 32, 0.0, 8),
    ("bfloat16", 16, 0.05, 1),
    ("bfloat16", 16, 0.1, 1),
    ("bfloat16", 16, 0.1, 8),
    ("bfloat16", 16, 0.25, 4),
    ("bfloat16", 16, 0.5, 2),
    ("bfloat16", 16, 1.0, 1),
]
SEARCH_INTERVALS = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0]  # finest first; 0 = direct pushes
SEARCH_SHARDS = [1, 2, 4, 8]


def mean_batch(offered: float, per_packet: float, per_step: float, k: int) -> float:
    """Packets per optimizer step of the greedy batching PS (learner.max_batch_packets = k: each step takes
    what waits, up to k; it never waits for more). While one packet at a time keeps up, a step finds one packet
    waiting (a deterministic view: random arrivals batch a little at high load); past that, a step takes what
    arrived during the previous one, b = offered x (b x per_packet + per_step), capped at k."""
    if offered * (per_packet + per_step) <= 1.0:
        return 1.0
    if offered * per_packet >= 1.0:
        return float(k)
    return min(float(k), offered * per_step / (1.0 - offered * per_packet))


def cluster_model(
    costs: dict,
    grad_bytes: int,
    weight_bytes: int,
    packets_per_worker_s: float,
    nodes: int,
    cores: int,
    k: int,
    aggregate_s: float = 0.0,
    shards: int = 1,
) -> dict:
    """One PS shard's busy fraction and NIC bytes/s for `nodes` x `cores` workers.

    - Offered packets/s: every worker's (cores x rate per node), or with node aggregation (`aggregate_s` > 0)
      one pre-reduced packet per node per interval.
    - Per packet the PS pays receive + checks, per step clip + Adam + flatten + publish; a step covers
      `mean_batch` packets (1 unless the PS could not keep up one at a time).
    - Shards (on different nodes): each owns 1/S of the parameters, so of every packet's bytes and of the
      work on it; the weights it sends out are its 1/S slice. Per shard, busy and both NICs divide by S.
    - Weights out: each node fetches each version it hears of once, and hears of at most as many versions as
      replies reach it (cores x rate direct, 1 / interval aggregated). Conservative: Ray may also serve a
      node from another node's copy."""
    per_node = cores * packets_per_worker_s
    replies_per_node = min(per_node, 1.0 / aggregate_s) if aggregate_s else per_node
    offered = nodes * replies_per_node
    per_packet = sum(costs[p] for p in PER_PACKET) / shards
    per_step = sum(costs[p] for p in PER_STEP) / shards
    batch = mean_batch(offered, per_packet, per_step, k)
    steps = offered / batch
    return {
        "offered": offered,
        "batch": batch,
        "steps": steps,
        "busy": offered * (per_packet + per_step / batch),
        "in": offered * grad_bytes / shards,
        "out": nodes * min(steps, replies_per_node) * weight_bytes / shards,
    }


def meets(m: dict) -> bool:
    return m["busy"] < TARGET and max(m["in"], m["out"]) < TARGET * NIC_BYTES_S


def grad_bytes_of(weight_bytes: int, dtype: str) -> int:
    return weight_bytes // (2 if dtype in ("bfloat16", "float16") else 1)


def finest(
    costs: dict, weight_bytes: int, rate: float, nodes: int, cores: int, shards: int, k: int = 16
) -> tuple[float, dict] | None:
    """The finest node aggregation (SEARCH_INTERVALS; 0 = none) at which `shards` bfloat16 shards meet both
    targets: (interval, model), or None when none does."""
    for interval in SEARCH_INTERVALS:
        grad_bytes = grad_bytes_of(weight_bytes, "bfloat16")
        m = cluster_model(costs["bfloat16"], grad_bytes, weight_bytes, rate, nodes, cores, k, interval, shards)
        if meets(m):
            return interval, m
    return None


def costs_table(costs: dict) -> str:
    """`costs[(workload, dtype)]`: seconds per PS phase, as a markdown table in ms."""
    lines = [
        "Per-packet cost of each PS phase (ms, this machine, one thread):",
        "",
        "| workload | transport | " + " | ".join(PER_PACKET + PER_STEP).replace("adam", "Adam") + " |",
        "|---|---|" + "---|" * len(PER_PACKET + PER_STEP),
    ]
    for (w, d), c in costs.items():
        lines.append(f"| {w} | {d} | " + " | ".join(f"{c[p] * 1e3:.3f}" for p in PER_PACKET + PER_STEP) + " |")
    return "\n".join(lines)


def model_section(
    costs: dict, rates: dict, weight_bytes: dict, nodes: int, cores: int, heading: str = "from the constants above"
) -> str:
    """`costs[(workload, dtype)]`: seconds per PS phase; `rates[workload]`: one worker's packets/s;
    `weight_bytes[workload]`: the float32 weights' bytes. `heading` ends the title (one anchor per section)."""
    lines = [
        f"### A model of {nodes} nodes x {cores} cores, {heading}",
        "",
        "Offered packets/s = nodes x cores x one worker's packets/s (measured here on one core), or with node "
        "aggregation nodes / interval. PS busy = offered x (receive + checks) + steps/s x (clip + Adam + flatten "
        "+ publish); the batching PS (cap k) steps on what waits, so batches grow past 1 only once one packet a "
        "step no longer keeps up (then busy is 100%). NIC in = offered x gradient bytes; NIC out = nodes x the "
        "versions each node hears of (at most its replies/s) x weight bytes. Shards (S, on different nodes) "
        "each take 1/S of every packet's bytes and work and send 1/S of the weights: busy and NICs are per "
        "shard. Not counted: Ray's per-call cost outside the PS's method. Targets: busy < 50%, each NIC < 50% "
        "of 10 Gb/s.",
        "",
        "| workload | worker packets/s | transport | k | node aggregation | shards | offered packets/s | mean batch "
        "| PS busy | NIC in | NIC out | meets both |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w, rate in rates.items():
        for dtype, k, interval, shards in MODEL_MODES:
            grad_bytes = grad_bytes_of(weight_bytes[w], dtype)
            m = cluster_model(costs[(w, dtype)], grad_bytes, weight_bytes[w], rate, nodes, cores, k, interval, shards)
            agg = f"every {interval * 1e3:g} ms" if interval else "none"
            lines.append(
                f"| {w} | {rate:,.1f} | {dtype} | {k} | {agg} | {shards} | {m['offered']:,.0f} | {m['batch']:.1f} "
                f"| {m['busy']:.0%} | {m['in'] / NIC_BYTES_S:.0%} | {m['out'] / NIC_BYTES_S:.0%} | "
                f"{'yes' if meets(m) else 'no'} |"
            )
    lines += [
        "",
        "The finest node aggregation that meets both targets, per shard count (bfloat16, k = 16; intervals "
        f"tried: none, then {', '.join(f'{i * 1e3:g}' for i in SEARCH_INTERVALS[1:])} ms):",
        "",
        "| workload | shards | node aggregation | packets per node per s | offered packets/s | PS busy | NIC in "
        "| NIC out |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w, rate in rates.items():
        per_dtype = {d: c for (cw, d), c in costs.items() if cw == w}
        for shards in SEARCH_SHARDS:
            found = finest(per_dtype, weight_bytes[w], rate, nodes, cores, shards)
            if found is None:
                lines.append(f"| {w} | {shards} | none meets | - | - | - | - | - |")
                continue
            interval, m = found
            lines.append(
                f"| {w} | {shards} | {f'every {interval * 1e3:g} ms' if interval else 'none'} | "
                f"{m['offered'] / nodes:,.1f} | {m['offered']:,.0f} | {m['busy']:.0%} | "
                f"{m['in'] / NIC_BYTES_S:.0%} | {m['out'] / NIC_BYTES_S:.0%} |"
            )
    return "\n".join(lines)
