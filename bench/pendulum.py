"""Pendulum-v1 to eval mean >= -250: ray-a3c sync and async vs Stable-Baselines3 A2C, same machine, one run.

SB3 uses the rl-zoo A2C hyperparameters for Pendulum-v1 (VecNormalize, 8 envs, n_steps 8, gSDE, RMSprop,
linear lr 7e-4, 1M steps). Every side trains for the same env-step budget with nothing else on the CPU and
keeps its weights every 10k env steps; the snapshots are evaluated afterwards, in order (20 greedy episodes).
Time to target = training wall time at the first snapshot whose mean is >= -250. Ray start-up and actor
spawning are not in the times.

    .venv/bin/python -m bench.pendulum [--seeds 3] [--budget 1000000]
"""
from __future__ import annotations

import argparse

from bench.common import EVAL_SEED, fmt, machine, median, run_ours, sb3_time_to_target, today, update_section

TARGET, EVAL_EPISODES, SNAPSHOT_EVERY = -250.0, 20, 10_000


def run_sb3(seed: int, budget: int) -> dict:
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=8, seed=seed), gamma=0.9)
    eval_env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=1, seed=EVAL_SEED), training=False,
                            norm_reward=False)

    def linear(start: float):
        return lambda progress: progress * start

    model = A2C("MlpPolicy", env, ent_coef=0.0, max_grad_norm=0.5, n_steps=8, gae_lambda=0.9, vf_coef=0.4,
                gamma=0.9, use_rms_prop=True, normalize_advantage=False, learning_rate=linear(7e-4),
                use_sde=True, policy_kwargs=dict(log_std_init=-2, ortho_init=False), seed=seed, verbose=0)
    return sb3_time_to_target(model, eval_env, budget, SNAPSHOT_EVERY, EVAL_EPISODES, TARGET, vec_normalize=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    sb3 = []
    for seed in range(args.seeds):  # SB3 first, before Ray's daemons exist
        sb3.append(run_sb3(seed, args.budget))
        print(f"seed {seed}: sb3 {sb3[-1]}", flush=True)
    from ray_a3c.cluster.runtime import start_ray
    from ray_a3c.common.config import Config

    start_ray(Config())
    rows = []
    for seed in range(args.seeds):
        sync = run_ours("pendulum", seed, args.budget, TARGET, SNAPSHOT_EVERY, EVAL_EPISODES, [], {"algo.mode": "sync"})
        asyn = run_ours("pendulum", seed, args.budget, TARGET, SNAPSHOT_EVERY, EVAL_EPISODES, [],
                        {"algo.mode": "async"})
        rows.append((seed, sync, asyn, sb3[seed]))
        print(f"seed {seed}: sync {sync} | async {asyn}", flush=True)
    report = render(rows, args)
    print(report)
    if not args.no_write:
        update_section("pendulum", report)


def render(rows: list, args: argparse.Namespace) -> str:
    sides = [(1, "ray-a3c sync"), (2, "ray-a3c async"), (3, "SB3 A2C")]
    lines = [f"## Pendulum-v1: env steps and wall time to eval mean >= {TARGET:.0f} ({today()})", "",
             f"Machine: {machine()}. Command: `.venv/bin/python -m bench.pendulum --seeds {args.seeds} "
             f"--budget {args.budget}`.",
             f"ray-a3c: preset `pendulum` (2 workers x 8 envs, GAE 0.95, 2 critic epochs, obs normalisation), "
             f"`--mode sync` and `--mode async`; SB3: rl-zoo A2C hyperparameters. Every side trains the whole budget "
             f"with nothing else running and keeps its weights every {SNAPSHOT_EVERY:,} env steps; afterwards the "
             f"snapshots are evaluated in order ({EVAL_EPISODES} greedy episodes from seed {EVAL_SEED}); time = "
             "training wall time at the first snapshot with mean >= the target (nothing subtracted).", "",
             "| seed | " + " | ".join(f"{name} steps | {name} s" for _, name in sides) + " |",
             "|---|" + "---|---|" * len(sides)]
    for row in rows:
        cells = [f"{fmt(row[i]['env_steps'], ',')} | {fmt(row[i]['time_s'], '.1f')}" for i, _ in sides]
        lines.append(f"| {row[0]} | " + " | ".join(cells) + " |")
    med = {i: (median([r[i]["env_steps"] for r in rows]), median([r[i]["time_s"] for r in rows])) for i, _ in sides}
    lines.append("| **median** | " + " | ".join(f"{med[i][0]:,.0f} | {med[i][1]:.1f}" for i, _ in sides) + " |")
    lines.append("")
    for i, name in sides:
        lines.append(f"- {name}: solved {sum(r[i]['solved'] for r in rows)}/{len(rows)}, "
                     f"throughput median {median([r[i]['fps'] for r in rows]):,.0f} env steps/s.")
    for i, name in sides[:2]:
        lines.append(f"- Ratio {name} / SB3: wall time **{med[i][1] / med[3][1]:.2f}** (goal <= 1.0), "
                     f"env steps {med[i][0] / med[3][0]:.2f}.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
