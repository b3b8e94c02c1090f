"""bench/atari.py's BENCHMARKS.md sections: a frame-budget race (`render_frames`: medians over seeds) and a
clock-budget race (`render_minutes`: one line per game, side and seed, then ours against each peer, read
against the issue's targets). `rows`: row -> seed -> side -> the side's record (bench/atari_sides.side_result)."""

from __future__ import annotations

import argparse

from bench.atari_sb3 import ZOO_PPO
from bench.atari_sides import EVAL_SEED, NAMES, ROWS, SF_BATCH, SF_ROLLOUT, SIDES
from bench.common import fmt, machine, median, median_reached, today

OURS = ("ours", "ours_nature")
PEERS = ("sb3_ppo", "sf", "sb3")
TIME_RATIO_TARGET = 0.5  # ours' time to the target at most half each peer's (or the peer never gets there)
FPS_RATIO_TARGETS = {"sb3_ppo": 1.5, "sf": 2.0}  # ours' frames/s at least this many times the peer's
EVAL_TARGET_ROWS = ("breakout",)  # rows where ours' fresh eval must reach each peer's
SECTION_MAX_BYTES = 2_800  # the issue's rows (7 side runs on 2 games); BENCHMARKS.md must stay <= 40 KB
COMMON = (
    "Every side: ALE/<Game>-v5, sticky actions, skip 4, 84x84 gray, 4 frames stacked, life loss and clipped rewards "
    "in training only (bench/atari.py); CPU; one side at a time; no evaluation during training. "
)
SHORT = {"ours": "ours", "ours_nature": "ours (nature)", "sb3_ppo": "SB3 PPO", "sb3": "SB3 A2C", "sf": "SF"}
SIDE_SETTINGS = {  # what each side runs, said once per section for the sides it has
    "ours": "ray-a3c: preset `atari`, {workers} workers x {envs} envs, async",
    "ours_nature": "its nature row: `model.cnn_layout=nature`, fc 512",
    "sb3_ppo": "SB3 PPO: rl-zoo's `atari` entry ({ppo_envs} envs, n_steps {n_steps}, 4 epochs, batch {batch}, "
    "2.5e-4 and clip 0.1 linear, ent 0.01, vf 0.5)",
    "sb3": "SB3 A2C: rl-zoo's entry (16 envs, n_steps 5, RMSpropTFLike), 7e-4 linear",
    "sf": "SF: APPO, its docs' Atari throughput settings on {workers} workers x {envs} envs (double-buffered, "
    "async, rollout {sf_rollout}, batch {sf_batch}), the rest its example's",
}


def _num(value, spec: str) -> str:
    """A number, or '-' for none (a median over no values is nan)."""
    return "-" if value is None or value != value else format(value, spec)


def _settings(rows: dict[str, dict[int, dict]], args: argparse.Namespace) -> str:
    present = [side for side in SIDES if any(side in sides for seeds in rows.values() for sides in seeds.values())]
    values = dict(workers=args.workers, envs=args.envs, sf_rollout=SF_ROLLOUT, sf_batch=SF_BATCH)
    values.update(ppo_envs=ZOO_PPO["n_envs"], n_steps=ZOO_PPO["n_steps"], batch=ZOO_PPO["batch_size"])
    return "; ".join(SIDE_SETTINGS[side].format(**values) for side in present) + ". "


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}"


def _eval(r: dict) -> str:
    return f"{_num(r['eval_mean'], '.1f')} +- {_num(r['eval_std'], '.1f')} ({r.get('eval_games', '-')})"


def verdicts(row: str, ours: list[dict], peer: list[dict], peer_side: str) -> list[str]:
    """Ours against one peer on one game, medians over seeds, each against its target where the issue sets
    one: time to the target (a seed that never reached it counts as never), frames/s, and on EVAL_TARGET_ROWS
    the fresh eval. Each part says `met` or `loses` (no target: the ratio alone)."""
    target = ROWS[row][1]
    ours_t = median_reached([r["time_s"] for r in ours])
    peer_t = median_reached([r["time_s"] for r in peer])
    if ours_t is None:
        parts = [f"neither reached {target:g}" if peer_t is None else f"time: ours never reached {target:g} (loses)"]
    elif peer_t is None:
        parts = [f"time: only ours reached {target:g} (met)"]
    else:
        ratio = ours_t / peer_t
        parts = [f"time {ratio:.2f} (<= {TIME_RATIO_TARGET:g}: {'met' if ratio <= TIME_RATIO_TARGET else 'loses'})"]
    fps = median([r["fps"] for r in ours]) / median([r["fps"] for r in peer])
    need = FPS_RATIO_TARGETS.get(peer_side)
    parts.append(
        f"frames/s {fps:.2f}x" + ("" if need is None else f" (>= {need:g}x: {'met' if fps >= need else 'loses'})")
    )
    if row in EVAL_TARGET_ROWS:
        ours_e, peer_e = median([r["eval_mean"] for r in ours]), median([r["eval_mean"] for r in peer])
        parts.append(f"eval {ours_e:.1f} vs {peer_e:.1f} ({'met' if ours_e >= peer_e else 'loses'})")
    return parts


def render_minutes(rows: dict[str, dict[int, dict]], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"## Atari races: {args.minutes:g} minute{'' if args.minutes == 1 else 's'} per side (ray-a3c, SB3 PPO, "
        f"Sample Factory 2.1.1) ({today()})",
        "",
        f"Machine: {machine()}. Each side alone: `.venv/bin/python -m bench.atari --minutes {args.minutes:g} "
        "--rows ROW --seed SEED --sides SIDE --no-write > ROW_SIDE_SEED.log`, "
        + (
            f"merged by `{command.split(' --rows-from ')[0]} --rows-from` those logs. "
            if " --rows-from " in command
            else f"this section: `{command}`. "
        )
        + COMMON
        + _settings(rows, args)
        + "Budget: wall clock from launch, start-up included; learning rates fall linearly to 0 over it. Time: "
        "launch to a 100-game training mean (whole games) at the target. Eval: the saved policy, fresh whole "
        f"games, sampled actions, seed {EVAL_SEED}.",
        "",
        "| game (target) | side | network | seed | frames | frames/s | to target (s) | last mean100 | eval (games) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row, seeds in rows.items():
        game, target = ROWS[row]
        for side in SIDES:
            for seed, sides in sorted(seeds.items()):
                if r := sides.get(side):
                    lines.append(
                        f"| {game} ({target:g}) | {NAMES[side]} | {r.get('network', '-')} | {seed} | "
                        f"{r['frames']:,} | {r['fps']:,.0f} | {_seconds(r['time_s'])} | "
                        f"{_num(r['final_mean100'], '.1f')} | {_eval(r)} |"
                    )
    lines += ["", "Ours / each peer, medians over seeds, against the issue's targets:", ""]
    for row, seeds in rows.items():
        results = {side: [s[side] for s in seeds.values() if side in s] for side in SIDES}
        for ours in (o for o in OURS if results[o]):
            for peer in (p for p in PEERS if results[p]):
                parts = verdicts(row, results[ours], results[peer], peer)
                lines.append(f"- {ROWS[row][0]}, {SHORT[ours]} / {SHORT[peer]}: " + "; ".join(parts))
    if lines[-1] == "":
        lines.append("- no pair of ours and a peer on one game yet")
    return "\n".join(lines)


def render_frames(rows: dict[str, dict[int, dict]], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"## Atari: ray-a3c vs SB3 vs Sample Factory 2.1.1, {args.frames:,} frames ({today()})",
        "",
        f"Machine: {machine()}. Command: `{command}`. "
        + COMMON
        + _settings(rows, args)
        + "Time = from launch (start-up included) until the mean of the last 100 training games (whole games, "
        "the game's own reward, sampled actions) reaches the target. Eval = the final policy, "
        f"{args.eval_games} fresh whole games, sampled actions, seed {EVAL_SEED}, no life loss, unclipped. "
        "Medians over seeds; a seed that never reached the target counts as never.",
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
