"""Time to solve CartPole-v1: ray-a3c (async, 2 workers) vs Stable-Baselines3 A2C, same machine, same run.

Both sides train for the same env-step budget with nothing else on the CPU, keeping their weights every
`--snapshot-every` env steps; afterwards each snapshot is evaluated in order (20 greedy episodes, the same
seeds on both sides). Time to solve = training wall time at the first snapshot whose mean is >= 475. Ray
start-up and actor spawning are reported separately.

    .venv/bin/python -m bench.cartpole [--seeds 5] [--budget 100000]
"""

from __future__ import annotations

import argparse

from bench.common import (
    EVAL_SEED,
    fmt,
    machine,
    median,
    median_reached,
    run_ours,
    sb3_time_to_target,
    today,
    update_section,
)

EVAL_EPISODES, TARGET = 20, 475.0


def run_sb3(seed: int, budget: int, snapshot_every: int) -> dict:
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env

    torch.manual_seed(seed)
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, verbose=0)  # rl-zoo: 8 envs, ent_coef 0
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=EVAL_SEED)
    return sb3_time_to_target(model, eval_env, budget, snapshot_every, EVAL_EPISODES, TARGET)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=100_000, help="env steps each side trains for")
    parser.add_argument("--snapshot-every", type=int, default=2_000, help="env steps between kept weights")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()

    from ray_a3c.cluster.run.runtime import start_ray
    from ray_a3c.common.settings.config import Config

    # SB3 first, before Ray's daemons exist, so they cannot slow it down.
    sb3 = []
    for seed in range(args.seeds):
        sb3.append(run_sb3(seed, args.budget, args.snapshot_every))
        print(f"seed {seed}: sb3 {sb3[-1]}", flush=True)
    _, ray_start_s, _ = start_ray(Config())
    rows = []
    for seed in range(args.seeds):
        ours = run_ours("cartpole", seed, args.budget, TARGET, args.snapshot_every, EVAL_EPISODES, [])
        rows.append((seed, ours, sb3[seed]))
        print(f"seed {seed}: ray-a3c {ours}  |  sb3 {sb3[seed]}", flush=True)
    report = render(rows, ray_start_s, args)
    print(report)
    if not args.no_write:
        update_section("cartpole", report)


def render(rows: list, ray_start_s: float, args: argparse.Namespace) -> str:
    lines = [
        f"## CartPole-v1: time to solve, ray-a3c vs Stable-Baselines3 A2C ({today()})",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python -m bench.cartpole --seeds {args.seeds} "
        f"--budget {args.budget} --snapshot-every {args.snapshot_every}`.",
        f"Both sides train {args.budget:,} env steps with nothing else running and keep their weights every "
        f"{args.snapshot_every:,} env steps; the snapshots are evaluated afterwards, in order "
        f"({EVAL_EPISODES} greedy episodes from seed {EVAL_SEED} on both sides). Time to solve = training wall "
        f"time at the first snapshot with mean >= {TARGET:.0f} (no evaluation ran during training, so nothing "
        "is subtracted). ray-a3c: preset `cartpole` (2 async workers x 8 envs, no evaluator actor); "
        "SB3 A2C: rl-zoo hyperparameters (8 envs, ent_coef 0).",
        "",
        "| seed | ray-a3c steps | ray-a3c s | ray-a3c steps/s | SB3 steps | SB3 s | SB3 steps/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed, ours, sb3 in rows:
        lines.append(
            f"| {seed} | {fmt(ours['env_steps'], ',')} | {fmt(ours['time_s'], '.1f')} | {ours['fps']:,.0f} | "
            f"{fmt(sb3['env_steps'], ',')} | {fmt(sb3['time_s'], '.1f')} | {sb3['fps']:,.0f} |"
        )
    med = {
        side: {
            "env_steps": median_reached([r[i]["env_steps"] for r in rows]),
            "time_s": median_reached([r[i]["time_s"] for r in rows]),
            "fps": median([r[i]["fps"] for r in rows]),
        }
        for i, side in ((1, "ours"), (2, "sb3"))
    }
    solved = {side: sum(r[i]["solved"] for r in rows) for i, side in ((1, "ours"), (2, "sb3"))}

    def ratio(key: str) -> str:
        ours, sb3 = med["ours"][key], med["sb3"][key]
        return f"{ours / sb3:.2f}" if ours and sb3 else "-"

    cells = [
        f"{fmt(m['env_steps'], ',.0f')} | {fmt(m['time_s'], '.1f')} | {m['fps']:,.0f}"
        for m in (med["ours"], med["sb3"])
    ]
    lines += [
        f"| **median** | {cells[0]} | {cells[1]} |",
        "",
        f"- Solved: ray-a3c {solved['ours']}/{len(rows)}, SB3 {solved['sb3']}/{len(rows)} "
        "(medians over all seeds, an unsolved seed counting as never).",
        f"- Ratio ray-a3c / SB3, median time to solve: **{ratio('time_s')}** "
        f"(goal <= 1.0); median env steps: {ratio('env_steps')}.",
        f"- Throughput ratio ray-a3c / SB3 (env steps/s over the whole budget): "
        f"{med['ours']['fps'] / med['sb3']['fps']:.2f}.",
        f"- Not in the times: Ray start-up {ray_start_s:.1f}s (once per bench), spawning the PS and workers "
        f"median {median([r[1]['spawn_s'] for r in rows]):.2f}s.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
