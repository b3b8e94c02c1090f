"""Does the PS mode change learning? CartPole-v1 trained with serial A3C, batched application and node
aggregation, the same seeds and budget, 4 async workers on this machine's 2 cores (so packets do queue at the
PS). Snapshots are evaluated afterwards (20 greedy episodes); the time to 475 is training wall time.

    .venv/bin/python -m bench.ps_modes_learning [--seeds 5] [--budget 100000]
"""

from __future__ import annotations

import argparse

from bench.common import EVAL_SEED, fmt, machine, median, run_ours, today, update_section

EVAL_EPISODES, TARGET = 20, 475.0
ARMS = {  # name -> settings on top of the cartpole preset
    "serial (k=1, default)": {},
    "batched k=4": {"learner.max_batch_packets": 4},
    "batched k=8": {"learner.max_batch_packets": 8},
    "node aggregation": {"cluster.aggregate": "node"},
}
COMMON = {"run.num_workers": 4, "cluster.worker_num_cpus": 0.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=100_000)
    parser.add_argument("--snapshot-every", type=int, default=2_000)
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    from ray_a3c.cluster.run.runtime import start_ray
    from ray_a3c.common.settings.config import Config

    start_ray(Config())
    results: dict[str, list] = {arm: [] for arm in args.arms}
    for seed in range(args.seeds):  # seeds outermost: slow drift of the machine hits every arm alike
        for arm in args.arms:
            settings = ARMS[arm]
            row = run_ours(
                "cartpole", seed, args.budget, TARGET, args.snapshot_every, EVAL_EPISODES, [], {**COMMON, **settings}
            )
            results[arm].append(row)
            print(f"seed {seed} {arm}: {row}", flush=True)
    report = render(results, args)
    print(report)
    if not args.no_write:
        update_section("ps_modes_learning", report)


def render(results: dict, args: argparse.Namespace) -> str:
    lines = [
        f"## PS modes and learning: CartPole-v1, 4 workers on 2 cores ({today()})",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python -m bench.ps_modes_learning --seeds {args.seeds} "
        f"--budget {args.budget} --snapshot-every {args.snapshot_every}"
        + (f" --arms {' '.join(repr(a) for a in args.arms)}" if args.arms != list(ARMS) else "")
        + "`. Preset `cartpole` with 4 async workers (0.5 CPU each) so that packets queue at the PS; seeds 0.."
        f"{args.seeds - 1} in every arm; snapshots every {args.snapshot_every:,} env steps evaluated afterwards "
        f"({EVAL_EPISODES} greedy episodes from seed {EVAL_SEED}); time = training wall time at the first "
        f"snapshot >= {TARGET:.0f}.",
        "",
        "| mode | solved | median env steps | median s | env steps per seed | median env steps/s |",
        "|---|---|---|---|---|---|",
    ]
    for arm, rows in results.items():
        solved = [r for r in rows if r["solved"]]
        steps = median([r["env_steps"] for r in rows])
        secs = median([r["time_s"] for r in rows])
        per_seed = ", ".join(fmt(r["env_steps"], ",") for r in rows)
        lines.append(
            f"| {arm} | {len(solved)}/{len(rows)} | {fmt(steps, ',.0f')} | {fmt(secs, '.1f')} | {per_seed} | "
            f"{median([r['fps'] for r in rows]):,.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
