"""Continuous control: ray-a3c (sync and async) vs Stable-Baselines3 A2C (rl-zoo), SB3 PPO (rl-zoo) as a
reference row; Pendulum-v1 and MuJoCo Ant-v5; same machine, one run, one side at a time.

Every side trains the same env-step budget (PPO, the reference: the zoo's own) with nothing else on the CPU
and keeps its weights every `snapshot_every` env steps; afterwards the snapshots are evaluated in order
(greedy / deterministic episodes from the same seeds on every side) and the last one afresh over 20 other
episodes. Time to target = training
wall time at the first snapshot whose mean reaches the target (nothing subtracted; Ray start-up and actor
spawning not in it). Pendulum's target is -250; Ant's is SB3 A2C's own final return on the same seed.

SB3 hyperparameters: rl-zoo's. A2C Pendulum: the zoo's Pendulum entry (VecNormalize, 8 envs, n_steps 8, gSDE,
RMSprop, linear lr 7e-4). A2C Ant: the zoo has no MuJoCo A2C entry; its AntBulletEnv-v0 one (VecNormalize,
4 envs, n_steps 8, gSDE, linear lr 9.6e-4, log_std_init -2). PPO: the zoo's Pendulum-v1 and Ant-v3 entries.

    .venv/bin/python -m bench.continuous [--tasks pendulum ant] [--seeds 3] [--sides ...]
"""

from __future__ import annotations

import argparse
import ast
import os
import re
from dataclasses import dataclass

from bench.common import (
    EVAL_SEED,
    FINAL_SEED,
    fail,
    first_solving,
    fmt,
    machine,
    median,
    median_reached,
    run_ours,
    sb3_evaluator,
    sb3_snapshots,
    today,
    update_section,
)

FINAL_EPISODES = 20
SIDES = ("ours_sync", "ours_async", "sb3_a2c", "sb3_ppo")
NAMES = {
    "ours_sync": "ray-a3c sync",
    "ours_async": "ray-a3c async",
    "sb3_a2c": "SB3 A2C (rl-zoo)",
    "sb3_ppo": "SB3 PPO (rl-zoo, reference)",
}


@dataclass
class Task:
    env_id: str
    preset: str
    budget: int  # env steps every side trains
    snapshot_every: int  # env steps between kept weights
    scan_episodes: int  # episodes per snapshot when looking for the first that reaches the target
    target: float | None  # None: SB3 A2C's final return on the same seed
    ppo_budget: int  # the reference row trains the zoo's own n_timesteps


TASKS = {
    "pendulum": Task("Pendulum-v1", "pendulum", 1_000_000, 10_000, 20, -250.0, 100_000),
    "ant": Task("Ant-v5", "ant", 2_000_000, 50_000, 5, None, 1_000_000),
}


def _linear(start: float):
    return lambda progress: progress * start


def sb3_model(side: str, task: Task, seed: int):
    """(model, its training env, an evaluation env): VecNormalize where the zoo normalises, the evaluation one
    frozen and without reward scaling."""
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    pendulum = task.env_id == "Pendulum-v1"
    n_envs = (8 if pendulum else 4) if side == "sb3_a2c" else (4 if pendulum else 1)
    gamma = 0.9 if pendulum else 0.99
    env = make_vec_env(task.env_id, n_envs=n_envs, seed=seed)
    eval_env = make_vec_env(task.env_id, n_envs=1, seed=EVAL_SEED)
    if not (pendulum and side == "sb3_ppo"):  # every zoo entry used here normalises but PPO's Pendulum one
        env = VecNormalize(env, gamma=gamma)
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
    if side == "sb3_a2c":
        model = A2C(
            "MlpPolicy",
            env,
            ent_coef=0.0,
            max_grad_norm=0.5,
            n_steps=8,
            gae_lambda=0.9,
            vf_coef=0.4,
            gamma=gamma,
            use_rms_prop=True,
            normalize_advantage=False,
            learning_rate=_linear(7e-4 if pendulum else 9.6e-4),
            use_sde=True,
            policy_kwargs=dict(log_std_init=-2, ortho_init=False),
            seed=seed,
            verbose=0,
        )
    elif pendulum:
        model = PPO(
            "MlpPolicy",
            env,
            n_steps=1024,
            gae_lambda=0.95,
            gamma=gamma,
            n_epochs=10,
            ent_coef=0.0,
            learning_rate=1e-3,
            clip_range=0.2,
            use_sde=True,
            sde_sample_freq=4,
            seed=seed,
            verbose=0,
        )
    else:
        model = PPO("MlpPolicy", env, seed=seed, verbose=0)  # the zoo's Ant-v3: PPO defaults + VecNormalize
    return model, env, eval_env


def run_sb3(side: str, task: Task, seed: int, target: float | None) -> dict:
    from stable_baselines3.common.vec_env import VecNormalize

    model, env, eval_env = sb3_model(side, task, seed)
    budget = task.ppo_budget if side == "sb3_ppo" else task.budget
    every = task.snapshot_every if side != "sb3_ppo" else max(budget // 100, 1_000)
    taken, wall = sb3_snapshots(model, budget, every, vec_normalize=env if isinstance(env, VecNormalize) else None)
    final_mean = sb3_evaluator(model, eval_env, FINAL_EPISODES, FINAL_SEED)(taken[-1])[0]
    goal = final_mean if target is None else target
    solved = first_solving(taken, sb3_evaluator(model, eval_env, task.scan_episodes), goal)
    return {
        **solved,
        "final_mean": final_mean,
        "target": goal,
        "fps": model.num_timesteps / max(wall, 1e-9),
        "budget": budget,
    }


def run_task(
    name: str, task: Task, seeds: list[int], sides: list[str], overrides: list[str], earlier: dict[int, dict]
) -> list[dict]:
    """One dict per seed: side -> result, merged over `earlier` (seed -> an earlier invocation's row): a side run
    now replaces the earlier one. SB3 first (before Ray's daemons exist), then ours."""
    rows = {seed: {**row, "seed": seed} for seed, row in earlier.items()}
    for seed in seeds:
        row = rows.setdefault(seed, {"seed": seed})
        if "sb3_a2c" in sides or (task.target is None and "sb3_a2c" not in row):
            row["sb3_a2c"] = run_sb3("sb3_a2c", task, seed, task.target)
        row["target"] = task.target if task.target is not None else row["sb3_a2c"]["final_mean"]
        if "sb3_ppo" in sides:
            row["sb3_ppo"] = run_sb3("sb3_ppo", task, seed, row["target"])
        print(f"{name} seed {seed}: {_plain(row)}", flush=True)
    if seeds and any(side.startswith("ours") for side in sides):
        from ray_a3c.cluster.run.runtime import start_ray
        from ray_a3c.common.settings.config import Config

        start_ray(Config())
    for seed in seeds:
        for side, mode in (("ours_sync", "sync"), ("ours_async", "async")):
            if side in sides:
                rows[seed][side] = run_ours(
                    task.preset,
                    seed,
                    task.budget,
                    rows[seed]["target"],
                    task.snapshot_every,
                    task.scan_episodes,
                    overrides,
                    {"algo.mode": mode},
                    final_episodes=FINAL_EPISODES,
                )
                print(f"{name} seed {seed}: {_plain(rows[seed])}", flush=True)
    return [rows[seed] for seed in sorted(rows)]


def _plain(value):
    """Numpy scalars as Python numbers, so a printed row reads back with ast.literal_eval."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value.item() if hasattr(value, "item") else value


def earlier_rows(log_path: str, name: str) -> dict[int, dict]:
    """seed -> row from the `<task> seed N: {...}` lines an earlier invocation printed (the last line per seed is
    the fullest); older logs print numpy scalars as `np.float64(x)`."""
    found = {}
    pattern = re.compile(rf"^{re.escape(name)} seed (\d+): (\{{.*\}})$")
    with open(log_path) as fh:
        for line in fh:
            match = pattern.match(line.strip())
            if match:
                text = re.sub(r"np\.(?:float|int)\d+\(([^()]*)\)", r"\1", match.group(2))
                found[int(match.group(1))] = ast.literal_eval(text)
    if not found:
        fail(f"{log_path} has no '{name} seed N: {{...}}' line")
    return found


def render(
    name: str,
    task: Task,
    rows: list[dict],
    sides: list[str],
    command: str,
    overrides: list[str],
    earlier_note: str = "",
) -> str:
    overridden = " with " + ", ".join(f"`{o}`" for o in overrides) if overrides else ""
    target = f"{task.target:.0f}" if task.target is not None else "SB3 A2C's final return (per seed)"
    peers = "SB3 A2C and PPO" if "sb3_ppo" in sides else "SB3 A2C"
    reference = (
        f" SB3 PPO, a reference row, trains the zoo's own budget ({task.ppo_budget:,} env steps; snapshots every 1%)."
        if "sb3_ppo" in sides
        else ""
    )
    lines = [
        f"## {task.env_id}: ray-a3c vs {peers}, time to {target} and final return ({today()})",
        "",
        f"Machine: {machine()}. Command: `{command}`. Budget {task.budget:,} env steps per side; snapshots "
        f"every {task.snapshot_every:,}, scanned with {task.scan_episodes} greedy episodes (seeds from "
        f"{EVAL_SEED}); final = the last snapshot, {FINAL_EPISODES} fresh greedy episodes (seeds from "
        f"{FINAL_SEED}). ray-a3c: preset `{task.preset}`{overridden}, `algo.mode` sync and async, evaluator "
        f"off.{reference}{earlier_note} Medians over all seeds: a seed that never reached the target counts as "
        'never ("not solved" where the median seed did not get there).',
        "",
        "| side | solved | median env steps | median train s | median final return | env steps/s | "
        "ratio time / SB3 A2C |",
        "|---|---|---|---|---|---|---|",
    ]
    base = median_reached([r["sb3_a2c"]["time_s"] for r in rows]) if "sb3_a2c" in rows[0] else None
    for side in sides:
        res = [r[side] for r in rows if side in r]
        t = median_reached([x["time_s"] for x in res])
        ratio = f"{t / base:.2f}" if base and t else "-"
        lines.append(
            f"| {NAMES[side]} | {sum(x['solved'] for x in res)}/{len(res)} | "
            f"{fmt(median_reached([x['env_steps'] for x in res]), ',.0f')} | {fmt(t, '.1f')} | "
            f"{median([x['final_mean'] for x in res]):.1f} | {median([x['fps'] for x in res]):,.0f} | "
            f"{ratio} |"
        )
    lines += ["", "Per seed (final return; time to target s):", ""]
    for row in rows:
        seed = row["seed"]
        cells = [f"{NAMES[s]} {row[s]['final_mean']:.1f}; {fmt(row[s]['time_s'], '.1f')}" for s in sides if s in row]
        lines.append(f"- seed {seed} (target {row['target']:.1f}): " + " | ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["pendulum", "ant"])
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds to run")
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument(
        "--rows-from",
        nargs="+",
        default=[],
        metavar="LOG",
        help="merge the per-seed rows earlier invocations printed (their logs) into this report",
    )
    parser.add_argument("--budget", type=int, help="env steps per side (default: the task's)")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for our sides (an experiment: written to BENCHMARKS.md only with --section)",
    )
    parser.add_argument("--section", help="the BENCHMARKS.md section to write (default continuous_<task>)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if args.set and not args.section and not args.no_write:
        parser.error("--set changes our preset: name a --section for its rows, or pass --no-write")
    for log_path in args.rows_from:
        if not os.path.isfile(log_path):
            parser.error(f"--rows-from: no such file: {log_path}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    logs = [os.path.basename(p) for p in args.rows_from]
    command = (
        ".venv/bin/python -m bench.continuous --tasks "
        + " ".join(args.tasks)
        + f" --seeds {args.seeds}"
        + (f" --first-seed {args.first_seed}" if args.first_seed else "")
        + " --sides "
        + " ".join(args.sides)
        + (f" --budget {args.budget}" if args.budget else "")
        + (" --set " + " ".join(args.set) if args.set else "")
        + (f" --section {args.section}" if args.section else "")
        + (" --rows-from " + " ".join(logs) if logs else "")
    )
    for name in args.tasks:
        task = TASKS[name]
        if args.budget:
            task = Task(**{**task.__dict__, "budget": args.budget, "ppo_budget": min(task.ppo_budget, args.budget)})
        earlier: dict[int, dict] = {}
        for log_path in args.rows_from:  # a later log's side replaces an earlier one's
            for seed, row in earlier_rows(log_path, name).items():
                earlier.setdefault(seed, {}).update(row)
        rows = run_task(name, task, seeds, args.sides, args.set, earlier)
        sides = [side for side in SIDES if any(side in row for row in rows)]
        note = _earlier_note(earlier, seeds, args.sides, logs)
        report = render(name, task, rows, sides, command, args.set, note)
        print(report, flush=True)
        if not args.no_write:
            update_section(args.section or f"continuous_{name}", report)


def _earlier_note(earlier: dict[int, dict], seeds: list[int], sides: list[str], logs: list[str]) -> str:
    """Which rows of the report an earlier invocation trained (a side run again now replaced its earlier row)."""
    kept = []
    for seed, row in sorted(earlier.items()):
        names = [NAMES[s] for s in SIDES if s in row and not (seed in seeds and s in sides)]
        if names:
            kept.append(f"seed {seed}: " + ", ".join(names))
    if not kept:
        return ""
    return (
        f" Rows trained by an earlier invocation of this bench on the same machine "
        f"({', '.join(logs)}): " + "; ".join(kept) + "."
    )


if __name__ == "__main__":
    main()
