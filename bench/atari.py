"""Atari, like for like: ray-a3c vs Stable-Baselines3 PPO and A2C (rl-zoo's Atari entries) vs Sample Factory 2.1.1
APPO (its docs' Atari throughput settings, sized to 2 cores), Pong and Breakout, one side after the other on
this machine, each with the same budget: frames (`--frames`) or wall-clock minutes from launch, start-up
included (`--minutes`, one side per invocation).

Every side plays ALE/<Game>-v5 with its own defaults (sticky actions 0.25, the minimal action set) made with
frameskip=1, and preprocesses alike: up to 30 no-ops at reset, 4 frames per action (max of the last two), FIRE
at reset where the game has it, 84x84 gray, 4 stacked frames; in training only, a lost life ends the episode
and rewards are clipped to +-1. Each side's network is named in its row; `ours_nature` gives ours the Nature CNN
that SB3 and SF use. For each side:
  (a) the training curve: the mean of the last 100 *training* games (whole games, the game's own reward) against
      seconds from launch and frames: ours from RUN_DIR/episodes.csv, SB3 from its Monitor's episodes, SF from
      its RecordEpisodeStatistics stats (the 100-episode window it keeps for TensorBoard); the time to the
      row's target (None if never);
  (b) a fresh evaluation of the saved policy over EVAL_EPISODES whole games, sampled actions, seed EVAL_SEED;
  (c) frames/s over training (skipped frames included).
Nothing evaluates during training on any side. A clock budget stops each side at its deadline (bench/atari_sides.py
says how, side by side) and its linear schedules fall to 0 over it. The side runners are in bench/atari_sides.py
and bench/atari_sb3.py; Sample Factory runs in its own venv (`make bench-sf-venv`) through bench/atari_sf.py;
the sections are rendered by bench/atari_report.py.

    .venv/bin/python -m bench.atari [--rows pong breakout] [--frames N | --minutes M] [--seed 0]
        [--sides ours,ours_nature,sb3_ppo,sb3,sf] [--workers 2] [--envs 16] [--eval-games 30]
        [--rows-from LOG ...] [--section atari | atari_minutes] [--no-write]
    (each invocation prints `<row> seed N: {...}` per side; --rows-from merges earlier ones, --sides none only
    merges)
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import re

from bench.atari_report import render_frames, render_minutes
from bench.atari_sb3 import run_sb3
from bench.atari_sides import (
    EVAL_EPISODES,
    OUR_OVERRIDES,
    ROWS,
    SF_PYTHON,
    SIDES,
    Budget,
    run_ours,
    run_sf,
)
from bench.common import fail, update_section

DEFAULT_FRAMES = 10_000_000
SB3_SIDES = {"sb3_ppo": "ppo", "sb3": "a2c"}  # side -> SB3 algorithm


def earlier_rows(log_path: str, row: str) -> dict[int, dict]:
    """seed -> {side: result} from the `<row> seed N: {...}` lines an earlier invocation printed (later lines win)."""
    found: dict[int, dict] = {}
    pattern = re.compile(rf"^{re.escape(row)} seed (\d+): (\{{.*\}})$")
    with open(log_path) as fh:
        for line in fh:
            if match := pattern.match(line.strip()):
                found.setdefault(int(match.group(1)), {}).update(ast.literal_eval(match.group(2)))
    return found


def budget_label(budget: Budget) -> str:
    """How a record names its budget, so rows of another budget are not merged into a section."""
    return f"{budget.frames} frames" if budget.seconds is None else f"{budget.seconds / 60:g} minutes"


def parse_budget(minutes: float | None, frames: int | None) -> Budget:
    """The one rule for a race's size: --minutes or --frames, not both; DEFAULT_FRAMES without either."""
    if minutes is not None and frames is not None:
        fail("--minutes and --frames exclude each other: a race is sized in one of them")
    if minutes is not None:
        if not minutes > 0:
            fail(f"--minutes must be > 0, got {minutes:g}")
        return Budget(seconds=minutes * 60)
    if frames is not None and frames <= 0:
        fail(f"--frames must be > 0, got {frames}")
    return Budget(frames=DEFAULT_FRAMES if frames is None else frames)


def check_sides(sides: list[str], budget: Budget, args: argparse.Namespace) -> None:
    """Refuses, with one line, sides this invocation cannot race."""
    if set(sides) - set(SIDES) or not (sides or args.rows_from):
        fail(f"--sides: a comma-separated subset of {','.join(SIDES)} (none: only --rows-from's rows)")
    if budget.seconds is not None and len(sides) > 1:
        fail("--minutes races one side per invocation (the machine to itself): --sides one of " + ",".join(SIDES))
    if "sf" in sides and not os.path.exists(SF_PYTHON):
        fail("bench/.sf-venv is missing; run `make bench-sf-venv` first")
    if "sf" in sides and args.envs % 2:
        fail(f"--envs must be even for Sample Factory's double-buffered sampling (2 splits), got {args.envs}")
    if set(sides) & set(SB3_SIDES) and importlib.util.find_spec("stable_baselines3") is None:
        fail("stable-baselines3 is not installed: pip install 'ray-a3c[bench]'")
    if args.eval_games < 1:
        fail(f"--eval-games must be >= 1, got {args.eval_games}")
    for log_path in args.rows_from:
        if not os.path.isfile(log_path):
            fail(f"--rows-from: no such file: {log_path}")


def merged_rows(row: str, logs: list[str], budget: Budget) -> dict[int, dict]:
    """seed -> {side: record} from the logs; a record of another budget is refused (a record from before
    records named their budget counts as a frame race's)."""
    seeds: dict[int, dict] = {}
    for log_path in logs:
        for seed, found in earlier_rows(log_path, row).items():
            for side, record in found.items():
                ran = record.get("budget", "frames")
                if ran != budget_label(budget) and not (ran == "frames" and budget.seconds is None):
                    fail(f"--rows-from {log_path}: {row} seed {seed} {side} ran {ran}, not {budget_label(budget)}")
            seeds.setdefault(seed, {}).update(found)
    return seeds


def run_side(side: str, row: str, budget: Budget, args: argparse.Namespace) -> dict:
    game, target = ROWS[row]
    if side in SB3_SIDES:
        record = run_sb3(SB3_SIDES[side], game, target, args.seed, budget, args.eval_games)
    elif side == "sf":
        record = run_sf(game, target, args.seed, budget, args.workers, args.envs, args.eval_games)
    else:
        overrides = OUR_OVERRIDES[side]
        record = run_ours(game, target, args.seed, budget, args.workers, args.envs, args.eval_games, overrides)
    return {**record, "budget": budget_label(budget)}


def command_line(args: argparse.Namespace, budget: Budget, sides: list[str]) -> str:
    size = f"--frames {budget.frames}" if budget.seconds is None else f"--minutes {args.minutes:g}"
    return (
        f".venv/bin/python -m bench.atari --rows {' '.join(args.rows)} {size} --seed {args.seed} "
        f"--sides {','.join(sides) or 'none'} --workers {args.workers} --envs {args.envs}"
        + (f" --eval-games {args.eval_games}" if args.eval_games != EVAL_EPISODES else "")
        + (" --rows-from " + " ".join(os.path.basename(p) for p in args.rows_from) if args.rows_from else "")
        + ("" if args.section is None else f" --section {args.section}")
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--frames", type=int, help=f"frame budget per side (4 per agent step; {DEFAULT_FRAMES:,})")
    parser.add_argument("--minutes", type=float, help="wall-clock budget per side from launch, start-up included")
    parser.add_argument("--seed", type=int, default=0, help="this invocation's seed; --rows-from merges others")
    parser.add_argument("--sides", default="ours,sb3,sf", help="comma-separated subset of " + ",".join(SIDES))
    parser.add_argument("--workers", type=int, default=2, help="ours and SF: worker processes")
    parser.add_argument("--envs", type=int, default=16, help="ours and SF: envs per worker (SB3: the zoo's)")
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
    parser.add_argument("--section", help="the BENCHMARKS.md section these rows replace (atari | atari_minutes)")
    parser.add_argument("--no-write", action="store_true", help="print the section only; leave BENCHMARKS.md alone")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    budget = parse_budget(args.minutes, args.frames)
    args.frames = budget.frames  # the frame section reads it (None under a clock budget)
    sides = [s.strip() for s in args.sides.split(",") if s.strip() and s.strip() != "none"]
    check_sides(sides, budget, args)
    command = command_line(args, budget, sides)
    rows = {row: merged_rows(row, args.rows_from, budget) for row in args.rows}
    for row in args.rows:
        mine = rows[row].setdefault(args.seed, {}) if sides else {}
        for side in sides:
            mine[side] = run_side(side, row, budget, args)
            print(f"{row} seed {args.seed}: {mine}", flush=True)
    if budget.seconds is None:
        report, section = render_frames(rows, args, command), args.section or "atari"
    else:
        report, section = render_minutes(rows, args, command), args.section or "atari_minutes"
    print(report)
    if not args.no_write:
        update_section(section, report)


if __name__ == "__main__":
    main()
