"""Time to solve CartPole-v1: ray-a3c (async, 2 workers) vs Stable-Baselines3 A2C, same machine, same run.

Solved = the first deterministic 20-episode evaluation with mean return >= 475. Evaluation time is excluded
on both sides; Ray start-up and actor spawning are reported separately.

    .venv/bin/python -m bench.cartpole [--seeds 5] [--budget 500000]
"""
from __future__ import annotations

import argparse

from bench.common import fmt, machine, median, run_ours, sb3_time_to_target, today, update_section

EVAL_EPISODES, TARGET, EVAL_SEED = 20, 475.0, 100_000


def run_ours_cartpole(seed: int, budget: int, eval_interval_s: float) -> dict:
    return run_ours("cartpole", seed, budget, TARGET,
                    [f"run.eval_interval_s={eval_interval_s}", f"run.eval_episodes={EVAL_EPISODES}"])


def run_sb3(seed: int, budget: int, eval_every_steps: int) -> dict:
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env

    torch.manual_seed(seed)
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, verbose=0)  # rl-zoo: 8 envs, ent_coef 0
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=EVAL_SEED)
    return sb3_time_to_target(model, eval_env, budget, eval_every_steps, EVAL_EPISODES, TARGET)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=500_000, help="env-step budget per attempt")
    parser.add_argument("--eval-interval-s", type=float, default=0.25, help="ray-a3c evaluator period")
    parser.add_argument("--sb3-eval-every", type=int, default=2_000, help="SB3 env steps between evaluations")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()

    from ray_a3c.cluster.runtime import start_ray
    from ray_a3c.common.config import Config

    # SB3 first, before Ray's daemons exist, so they cannot slow it down.
    sb3 = [run_sb3(seed, args.budget, args.sb3_eval_every) for seed in range(args.seeds)]
    _, ray_start_s, _ = start_ray(Config())
    rows = []
    for seed in range(args.seeds):
        ours = run_ours_cartpole(seed, args.budget, args.eval_interval_s)
        rows.append((seed, ours, sb3[seed]))
        print(f"seed {seed}: ray-a3c {ours}  |  sb3 {sb3[seed]}", flush=True)
    report = render(rows, ray_start_s, args)
    print(report)
    if not args.no_write:
        update_section("cartpole", report)


def render(rows: list, ray_start_s: float, args: argparse.Namespace) -> str:
    lines = [f"## CartPole-v1: time to solve, ray-a3c vs Stable-Baselines3 A2C ({today()})", "",
             f"Machine: {machine()}. Command: `.venv/bin/python -m bench.cartpole --seeds {args.seeds} "
             f"--budget {args.budget}`.",
             f"Solved = first deterministic {EVAL_EPISODES}-episode eval mean >= {TARGET:.0f}; eval time excluded. "
             f"ray-a3c: preset `cartpole` (2 async workers x 8 envs, evaluator every {args.eval_interval_s}s); "
             f"SB3 A2C: rl-zoo hyperparameters (8 envs, ent_coef 0), evaluated every {args.sb3_eval_every} steps.",
             "", "| seed | ray-a3c steps | ray-a3c s | ray-a3c steps/s | SB3 steps | SB3 s | SB3 steps/s |",
             "|---|---|---|---|---|---|---|"]
    for seed, ours, sb3 in rows:
        lines.append(f"| {seed} | {fmt(ours['env_steps'], ',')} | {fmt(ours['time_s'], '.1f')} | {ours['fps']:,.0f} | "
                     f"{fmt(sb3['env_steps'], ',')} | {fmt(sb3['time_s'], '.1f')} | {sb3['fps']:,.0f} |")
    med = {side: {k: median([r[i][k] for r in rows]) for k in ("env_steps", "time_s", "fps")}
           for i, side in ((1, "ours"), (2, "sb3"))}
    solved = {side: sum(r[i]["solved"] for r in rows) for i, side in ((1, "ours"), (2, "sb3"))}
    lines += [f"| **median** | {med['ours']['env_steps']:,.0f} | {med['ours']['time_s']:.1f} | "
              f"{med['ours']['fps']:,.0f} | {med['sb3']['env_steps']:,.0f} | {med['sb3']['time_s']:.1f} | "
              f"{med['sb3']['fps']:,.0f} |", "",
              f"- Solved: ray-a3c {solved['ours']}/{len(rows)}, SB3 {solved['sb3']}/{len(rows)} "
              "(medians over solved seeds).",
              f"- Ratio ray-a3c / SB3, median time to solve: **{med['ours']['time_s'] / med['sb3']['time_s']:.2f}** "
              f"(goal <= 1.0); median env steps: {med['ours']['env_steps'] / med['sb3']['env_steps']:.2f}.",
              f"- Ray start-up (ray.init, dashboard on): {ray_start_s:.1f}s (goal <= 10 s); "
              f"spawning the PS, 2 workers and the evaluator: median {median([r[1]['spawn_s'] for r in rows]):.1f}s."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
