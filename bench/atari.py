"""Atari, like for like: ray-a3c vs Stable-Baselines3 A2C (rl-zoo's Atari entry) vs Sample Factory 2.1.1's Atari
example (its APPO defaults), Pong and Breakout, one side after the other on this machine, the same frame budget.

Every side plays ALE/<Game>-v5 with its own defaults (sticky actions 0.25, the minimal action set) made with
frameskip=1, and preprocesses alike: up to 30 no-ops at reset, 4 frames per action (max of the last two), FIRE
at reset where the game has it, 84x84 gray, 4 stacked frames; in training only, a lost life ends the episode
and rewards are clipped to +-1. For each side:
  (a) time from launch (start-up included) until the mean of the last 100 *training* games (whole games, the
      game's own reward) reaches the target: ours from RUN_DIR/episodes.csv, SB3 from its Monitor's episodes,
      SF from its RecordEpisodeStatistics stats (the 100-episode window it keeps for TensorBoard);
  (b) a fresh evaluation of the final policy over EVAL_EPISODES whole games, sampled actions, seed EVAL_SEED;
  (c) frames/s over training (skipped frames included).
Nothing evaluates during training on any side. Sample Factory runs in its own venv (`make bench-sf-venv`), through
bench/atari_sf.py: SF's own train/enjoy entry points with its Atari env factory pointed at the v5 env. The side
runners are in bench/atari_sides.py.

    .venv/bin/python -m bench.atari [--rows pong breakout] [--frames 10000000] [--seed 0] [--sides ours,sb3,sf]
        [--workers 2] [--envs 16] [--eval-games 30] [--rows-from LOG ...] [--section atari]
        [--no-write]  (seeds: one per invocation, each printing `<row> seed N: {...}`; --rows-from merges them)
"""

from __future__ import annotations

import argparse
import ast
import os
import re

from bench.atari_sides import EVAL_EPISODES, EVAL_SEED, SF_PYTHON, run_ours, run_sb3, run_sf
from bench.common import fail, fmt, machine, median, median_reached, today, update_section

ROWS = {"pong": ("Pong", 18.0), "breakout": ("Breakout", 50.0)}  # row -> (ALE game, target of the training mean)
SIDES = ("ours", "sb3", "sf")
NAMES = {"ours": "ray-a3c", "sb3": "SB3 A2C (rl-zoo)", "sf": "Sample Factory APPO"}


def _num(value, spec: str) -> str:
    """A number, or '-' for none (a median over no values is nan)."""
    return "-" if value is None or value != value else format(value, spec)


# -- rows, report --------------------------------------------------------------------------------------------------
def earlier_rows(log_path: str, row: str) -> dict[int, dict]:
    """seed -> {side: result} from the `<row> seed N: {...}` lines an earlier invocation printed (later lines win)."""
    found: dict[int, dict] = {}
    pattern = re.compile(rf"^{re.escape(row)} seed (\d+): (\{{.*\}})$")
    with open(log_path) as fh:
        for line in fh:
            if match := pattern.match(line.strip()):
                found.setdefault(int(match.group(1)), {}).update(ast.literal_eval(match.group(2)))
    return found


def render(rows: dict[str, dict[int, dict]], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"## Atari: ray-a3c vs SB3 A2C vs Sample Factory 2.1.1, {args.frames:,} frames ({today()})",
        "",
        f"Machine: {machine()}. Command: `{command}`. Each side: ALE/<Game>-v5 (sticky actions 0.25, minimal "
        "actions) made with frameskip=1; 30 no-ops, frame skip 4 (max of the last two), FIRE at reset, 84x84 "
        "gray, 4 stacked frames; life loss and reward clipping in training only; CPU; one side at a time. "
        f"ray-a3c: preset `atari` ({args.workers} workers x {args.envs} envs, async) as shipped. SB3: "
        "rl-zoo's A2C `atari` entry (16 envs, n_steps 5, ent 0.01, vf 0.25, RMSpropTFLike alpha 0.99 eps 1e-5, "
        "clip 0.5), learning rate 7e-4 decaying linearly as ours (the zoo keeps it constant). SF: its Atari "
        f"example's defaults (APPO: PPO clip 0.1, rollout 128, 4 epochs, Adam 2.5e-4 linear, normalized inputs "
        f"and returns), {args.workers} workers x {args.envs} envs, minibatches of 256 per epoch scaled to "
        "take every sample of a rollout (its sync mode needs it; the example's 8 x 1 envs fill 4); its factory "
        "builds the v5 env instead of its "
        "<Game>NoFrameskip-v4 (no sticky actions), wrappers unchanged. Differences left: SF resizes before "
        "converting to gray (ours and SB3 the other way round); each side its own model and algorithm. "
        "Time = from launch (start-up included) until the mean of the last 100 training games (whole games, "
        "the game's own reward, sampled actions) reaches the target: ours from episodes.csv, SB3 from its "
        "Monitor, SF from its RecordEpisodeStatistics window (read at its ~5 s reports); no side evaluates "
        f"during training. Eval = the final policy, {args.eval_games} fresh whole games, sampled actions, seed "
        f"{EVAL_SEED} (ours: game i seeded {EVAL_SEED}+i; SB3 and SF: the env seeded once, games follow on), "
        "no life loss, unclipped. Medians over seeds; a seed that never reached the target counts as never.",
        "",
        "| game (target) | side | seeds reaching target | median time to target (s) | median last 100-game "
        "training mean | median eval mean | median frames/s | time ratio ours / side |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, seeds in rows.items():
        target = ROWS[row][1]
        ours_t = median_reached([s["ours"]["time_s"] for s in seeds.values() if "ours" in s])
        for side in SIDES:
            res = [s[side] for s in seeds.values() if side in s]
            if not res:
                continue
            t = median_reached([r["time_s"] for r in res])
            ratio = "1" if side == "ours" else (f"{ours_t / t:.2f}" if ours_t and t else "-")
            lines.append(
                f"| {ROWS[row][0]} ({target:g}) | {NAMES[side]} | {sum(r['time_s'] is not None for r in res)}"
                f"/{len(res)} | {fmt(t, '.0f')} | {_num(median([r['final_mean100'] for r in res]), '.1f')} | "
                f"{_num(median([r['eval_mean'] for r in res]), '.1f')} | "
                f"{median([r['fps'] for r in res]):,.0f} | {ratio} |"
            )
    lines += ["", "Per seed (time to target s; last 100-game training mean; eval mean +- std):", ""]
    for row, seeds in rows.items():
        for seed, sides in sorted(seeds.items()):
            cells = [
                f"{NAMES[s]} {fmt(r['time_s'], '.0f')}; {_num(r['final_mean100'], '.1f')}; "
                f"{_num(r['eval_mean'], '.1f')} +- {_num(r['eval_std'], '.1f')}"
                for s in SIDES
                if (r := sides.get(s))
            ]
            lines.append(f"- {ROWS[row][0]} seed {seed}: " + " | ".join(cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--frames", type=int, default=10_000_000, help="frame budget per side (4 per agent step)")
    parser.add_argument("--seed", type=int, default=0, help="this invocation's seed; --rows-from merges others")
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated subset of " + ",".join(SIDES))
    parser.add_argument("--workers", type=int, default=2, help="ours and SF: worker processes")
    parser.add_argument("--envs", type=int, default=16, help="ours and SF: envs per worker (SB3: the zoo's 16)")
    parser.add_argument(
        "--eval-games",
        type=int,
        default=EVAL_EPISODES,
        help="whole games in the final evaluation (the issue asks for >= 30; fewer only for smoke runs)",
    )
    parser.add_argument(
        "--rows-from",
        nargs="+",
        default=[],
        metavar="LOG",
        help="merge the per-seed rows earlier invocations printed (a side run now replaces its row)",
    )
    parser.add_argument("--section", default="atari", help="the BENCHMARKS.md section these rows replace")
    parser.add_argument("--no-write", action="store_true", help="print the section only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    sides = [s.strip() for s in args.sides.split(",") if s.strip() and s.strip() != "none"]
    if set(sides) - set(SIDES) or not (sides or args.rows_from):
        parser.error(f"--sides: a comma-separated subset of {','.join(SIDES)} (none: only --rows-from's rows)")
    if "sf" in sides and not os.path.exists(SF_PYTHON):
        fail("bench/.sf-venv is missing; run `make bench-sf-venv` first")
    for log_path in args.rows_from:
        if not os.path.isfile(log_path):
            fail(f"--rows-from: no such file: {log_path}")
    command = (
        f".venv/bin/python -m bench.atari --rows {' '.join(args.rows)} --frames {args.frames} --seed "
        f"{args.seed} --sides {','.join(sides)} --workers {args.workers} --envs {args.envs}"
        + (f" --eval-games {args.eval_games}" if args.eval_games != EVAL_EPISODES else "")
        + (" --rows-from " + " ".join(os.path.basename(p) for p in args.rows_from) if args.rows_from else "")
        + ("" if args.section == "atari" else f" --section {args.section}")
    )
    rows: dict[str, dict[int, dict]] = {}
    for row in args.rows:
        game, target = ROWS[row]
        seeds = rows[row] = {}
        for log_path in args.rows_from:
            for seed, found in earlier_rows(log_path, row).items():
                seeds.setdefault(seed, {}).update(found)
        mine = seeds.setdefault(args.seed, {}) if sides else {}
        for side in sides:
            if side == "sb3":
                mine[side] = run_sb3(game, target, args.seed, args.frames, args.eval_games)
            elif side == "ours":
                mine[side] = run_ours(game, target, args.seed, args.frames, args.workers, args.envs, args.eval_games)
            else:
                mine[side] = run_sf(game, target, args.seed, args.frames, args.workers, args.envs, args.eval_games)
            print(f"{row} seed {args.seed}: {mine}", flush=True)
    report = render(rows, args, command)
    print(report)
    if not args.no_write:
        update_section(args.section, report)


if __name__ == "__main__":
    main()
