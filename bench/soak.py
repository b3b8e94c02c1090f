"""Soak: a long CartPole async run (2 workers), sampling every minute the total RSS of this Ray session's
processes and the object store's used bytes; reports growth from minute 5 to the end (goal < 5%).

    .venv/bin/python -m bench.soak [--minutes 30]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass

from bench.common import machine, today, update_section


def _proc_table() -> dict[int, tuple[int, bytes, int]]:
    """pid -> (parent pid, command line, RSS bytes) for every readable process."""
    table = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
            with open(f"/proc/{pid}/status") as fh:
                match = re.search(r"VmRSS:\s+(\d+)", fh.read())
            table[int(pid)] = (ppid, cmdline, int(match.group(1)) * 1024 if match else 0)
        except (OSError, ValueError, IndexError):
            continue  # the process ended meanwhile
    return table


def session_rss_bytes(session_name: str) -> int:
    """RSS of this Ray session: the processes whose command line names it (GCS, raylet, dashboard, agents),
    every descendant of those (the actors: Ray renames their command lines to ray::...), and this driver."""
    table = _proc_table()
    members = {pid for pid, (_, cmd, _) in table.items() if session_name.encode() in cmd} | {os.getpid()}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in table.items() if ppid in members} - members
        members |= children
        grew = bool(children)
    return sum(table[pid][2] for pid in members if pid in table)


@dataclass(frozen=True)
class StoreStats:
    """The node's object store, exactly (the summary line rounds to whole MiB)."""

    used_bytes: int  # everything in the store: held objects, objects in flight, freed ones not yet deleted
    pinned_bytes: int  # primary copies, the objects some owner still holds ("% needed" in `ray memory`)
    objects: int


def object_store_stats(address: str) -> StoreStats:
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    stats = get_memory_info_reply(get_state_from_address(address)).store_stats  # explicit: other Rays may run
    return StoreStats(
        int(stats.object_store_bytes_used), int(stats.object_store_bytes_primary_copy), int(stats.num_local_objects)
    )


def object_store_used_bytes(address: str) -> int:
    return object_store_stats(address).used_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    import ray

    import ray_a3c
    from ray_a3c.cluster.run.runtime import start_ray

    cfg = ray_a3c.make_config(
        "cartpole",
        **{
            "run.stop_return": None,
            "run.log_interval_s": 30,
            "run.checkpoint_interval_s": 60,
            "run.time_limit_s": args.minutes * 60.0,
            "run.total_env_steps": 10**12,
        },
    )
    start_ray(cfg)
    session = ray._private.worker.global_worker.node.session_name
    address = ray.get_runtime_context().gcs_address
    samples: list[tuple[float, int, int]] = []
    done = threading.Event()

    def sample() -> None:
        t0 = time.time()
        while not done.wait(timeout=60 - (time.time() - t0) % 60):
            try:
                samples.append(((time.time() - t0) / 60, session_rss_bytes(session), object_store_used_bytes(address)))
            except Exception as exc:  # noqa: BLE001 - a failed sample must not end the soak silently
                print(f"sample failed: {exc!r}", flush=True)
                continue
            print(
                f"minute {samples[-1][0]:.0f}: rss {samples[-1][1] / 2**20:,.0f} MiB, "
                f"object store {samples[-1][2] / 2**20:,.1f} MiB",
                flush=True,
            )

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as run_dir:
        summary = ray_a3c.train(cfg, run_dir=run_dir, quiet=True)
    done.set()
    report = render(samples, summary, args)
    print(report)
    if not args.no_write:
        update_section("soak", report)


def render(samples: list, summary, args: argparse.Namespace) -> str:
    base = next((s for s in samples if s[0] >= 5), samples[0])
    last = samples[-1]
    growth = (last[1] - base[1]) / base[1] * 100
    lines = [
        f"## Soak: {args.minutes}-minute CartPole async run, 2 workers ({today()})",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python -m bench.soak --minutes {args.minutes}`. "
        f"{summary.env_steps:,} env steps, {summary.version:,} PS versions.",
        "",
        "| minute | RSS of Ray's processes (MiB) | object store used (MiB) |",
        "|---|---|---|",
    ]
    lines += [f"| {m:.0f} | {rss / 2**20:,.1f} | {obj / 2**20:,.2f} |" for m, rss, obj in samples]
    lines += [
        "",
        f"- RSS growth from minute {base[0]:.0f} to minute {last[0]:.0f}: **{growth:+.2f}%** (goal < 5%); "
        f"object store {base[2] / 2**20:,.2f} -> {last[2] / 2**20:,.2f} MiB.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
