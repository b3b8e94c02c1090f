"""The `atari` preset's learning settings, chosen by measurement: one game, one seed, one frame budget, each
candidate in turn (one run at a time on this machine), its update's settings named in full and the rest (wrappers,
model, workers) as shipped.

For each candidate: the mean of the last 100 training games (whole games, the game's own reward), a fresh
evaluation of the final policy over 30 whole games (sampled actions, seed 11) and frames/s, exactly as
`bench/atari.py` measures ray-a3c's side. The linear learning-rate schedule runs to 0 over the budget given here,
so a short screen compares candidates on the same footing, not on a 20M-frame schedule.

    .venv/bin/python -m bench.atari_settings [--game breakout] [--frames 2000000] [--seed 0]
        [--candidates a2c adam ...] [--sb3] [--rows-from LOG ...] [--section atari_settings] [--no-write]
(--sb3 adds Stable-Baselines3 A2C's row at the same budget, for scale; --rows-from merges the `name: {...}` lines
an earlier invocation printed, so that candidates can run in separate invocations.)
"""

from __future__ import annotations

import argparse
import ast
import os
import re

from bench.atari_sb3 import run_sb3
from bench.atari_sides import EVAL_EPISODES, ROWS, Budget, run_ours
from bench.common import fail, fmt, machine, today, update_section
from ray_a3c.common.settings.config import Config, from_dict, from_flat, load_yaml, parse_override


def changed(base: tuple[str, ...], *overrides: str) -> tuple[str, ...]:
    """`base` with `overrides` replacing the keys they name (the rest in base's order, new keys after)."""
    merged = {parse_override(o)[0]: o for o in base}
    merged.update({parse_override(o)[0]: o for o in overrides})
    return tuple(merged.values())


# Every candidate names all of its update's settings, so that it means the same whatever the preset ships; the
# row equal to the preset as shipped is marked in the table.
A2C = (
    "algo.rollout_steps=5",
    "algo.gae_lambda=1.0",
    "algo.policy_epochs=1",
    "algo.optimizer=rmsprop",
    "algo.learning_rate=0.0007",
    "algo.value_coef=0.25",
    "algo.normalize_advantages=false",
    "model.normalize_rewards=false",
)
NORMALIZED = "algo.normalize_advantages=true"
# name -> (what it changes, the --set overrides on top of the preset)
CANDIDATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "a2c": ("A2C after rl-zoo's Atari settings: RMSprop 7e-4, 5-step rollouts, value weight 0.25, clip 0.5", A2C),
    "adam": (
        "a2c with Adam 2.5e-4 (eps 1e-5) instead of RMSprop",
        changed(A2C, "algo.optimizer=adam", "algo.learning_rate=0.00025"),
    ),
    "trust_region": (
        "a2c with each rollout used twice, the second pass a clipped surrogate (policy_epochs 2, clip 0.1)",
        changed(A2C, "algo.policy_epochs=2", "algo.clip_range=0.1"),
    ),
    "long_rollout": (
        "a2c with 20-step rollouts and GAE 0.95 (4x the samples per push)",
        changed(A2C, "algo.rollout_steps=20", "algo.gae_lambda=0.95"),
    ),
    "value_half": (
        "a2c with value weight 0.5: on our 0.5 (R - V)^2 the critic weight of SB3's vf_coef 0.25 on (R - V)^2",
        changed(A2C, "algo.value_coef=0.5"),
    ),
    "rmsprop_tf": (
        "a2c with RMSprop in TensorFlow's form (mean square from 1, eps inside the root), as SB3's RMSpropTFLike",
        changed(A2C, "algo.optimizer=rmsprop_tf"),
    ),
    "zoo_rule": (
        "rl-zoo's A2C update exactly: RMSprop in TensorFlow's form and its critic weight (value 0.5 here)",
        changed(A2C, "algo.optimizer=rmsprop_tf", "algo.value_coef=0.5"),
    ),
    "ppo_like": (
        "PPO's reuse (Sample Factory's and cleanrl's Atari recipe, on our async PS): 16-step rollouts, GAE 0.95, "
        "4 passes (3 clipped, clip 0.1), Adam 2.5e-4, value 1.0 (PPO's vf 0.5 on (R - V)^2)",
        changed(
            A2C,
            "algo.rollout_steps=16",
            "algo.gae_lambda=0.95",
            "algo.policy_epochs=4",
            "algo.clip_range=0.1",
            "algo.optimizer=adam",
            "algo.learning_rate=0.00025",
            "algo.value_coef=1.0",
        ),
    ),
}
CANDIDATES["ppo_like_norm"] = (
    "ppo_like with each gradient's advantages standardized (mean 0, std 1), as PPO and Sample Factory do",
    changed(CANDIDATES["ppo_like"][1], NORMALIZED),
)
CANDIDATES["ppo_like_norm_returns"] = (
    "ppo_like_norm with rewards scaled by the running std of the return (Sample Factory's normalized returns)",
    changed(CANDIDATES["ppo_like_norm"][1], "model.normalize_rewards=true"),
)
CANDIDATES["zoo_rule_norm"] = (
    "zoo_rule with standardized advantages",
    changed(CANDIDATES["zoo_rule"][1], NORMALIZED),
)
SB3_ROW = "sb3_reference"  # not a candidate: rl-zoo's A2C as bench/atari.py runs it, for scale


def earlier_rows(log_path: str) -> dict[str, dict]:
    """name -> result from the `name: {...}` lines an earlier invocation printed (later lines win)."""
    names = "|".join(map(re.escape, [*CANDIDATES, SB3_ROW]))
    found = {}
    with open(log_path) as fh:
        for line in fh:
            if match := re.match(rf"^({names}): (\{{.*\}})$", line.strip()):
                found[match.group(1)] = ast.literal_eval(match.group(2))
    return found


def candidate_config(name: str) -> Config:
    """The config a candidate runs: the `atari` preset with its overrides (an unknown key raises)."""
    return from_flat(dict(parse_override(o) for o in CANDIDATES[name][1]), from_dict(load_yaml("atari")))


def shipped_candidate() -> str | None:
    """The candidate whose settings the `atari` preset ships, if one is."""
    preset = from_dict(load_yaml("atari"))
    return next((name for name in CANDIDATES if candidate_config(name) == preset), None)


def render(results: dict[str, dict], args: argparse.Namespace, command: str) -> str:
    game, shipped = ROWS[args.game][0], shipped_candidate()
    lines = [
        f"## Atari settings: {game}, {args.frames:,} frames per candidate ({today()})",
        "",
        f"Machine: {machine()}. Command: `{command}`. ray-a3c's side of `bench/atari.py` (ALE/{game}-v5, the "
        f"`atari` preset's wrappers, {args.workers} workers x {args.envs} envs, async, evaluator off), seed "
        f"{args.seed}, one candidate at a time, each naming its whole update (the preset's marked). The learning "
        f"rate falls linearly to 0 over this budget. Eval = the final policy, {EVAL_EPISODES} fresh whole games, "
        "sampled actions, seed 11. One seed per candidate: a screen, not a result.",
        "",
        "| candidate | change | 100-game training mean at 1/4, 1/2, 3/4 of the run | last 100-game training mean "
        "| eval mean +- std | frames/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        change = CANDIDATES[name][0] if name in CANDIDATES else "SB3 A2C, rl-zoo's Atari entry (bench/atari.py's side)"
        # None: fewer than 100 games by then; logs from before the curve was kept have none
        climb = ", ".join("-" if m is None else f"{m:.1f}" for m in res["curve"][:3]) if "curve" in res else "not kept"
        label = f"{name} (the preset)" if name == shipped else name
        lines.append(
            f"| {label} | {change} | {climb} | {fmt(res['final_mean100'], '.1f')} | "
            f"{fmt(res['eval_mean'], '.1f')} +- {fmt(res['eval_std'], '.1f')} | {res['fps']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", choices=list(ROWS), default="breakout")
    parser.add_argument("--frames", type=int, default=2_000_000, help="frame budget per candidate (4 per agent step)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument(
        "--candidates", nargs="*", choices=list(CANDIDATES), default=list(CANDIDATES), help="none: only merge logs"
    )
    parser.add_argument("--sb3", action="store_true", help="add SB3 A2C's row (rl-zoo's Atari entry), for scale")
    parser.add_argument("--rows-from", nargs="+", default=[], metavar="LOG", help="merge an earlier invocation's rows")
    parser.add_argument("--section", default="atari_settings", help="the BENCHMARKS.md section this replaces")
    parser.add_argument("--no-write", action="store_true", help="print the section only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    for log_path in args.rows_from:
        if not os.path.isfile(log_path):
            fail(f"--rows-from: no such file: {log_path}")
    command = (
        f".venv/bin/python -m bench.atari_settings --game {args.game} --frames {args.frames} --seed {args.seed} "
        f"--candidates {' '.join(args.candidates)}"
        + (" --sb3" if args.sb3 else "")
        + (" --rows-from " + " ".join(os.path.basename(p) for p in args.rows_from) if args.rows_from else "")
    )
    game, target = ROWS[args.game]
    results = {name: res for path in args.rows_from for name, res in earlier_rows(path).items()}
    for name in args.candidates:
        results[name] = run_ours(
            game,
            target,
            args.seed,
            Budget(frames=args.frames),
            args.workers,
            args.envs,
            EVAL_EPISODES,
            CANDIDATES[name][1],
        )
        print(f"{name}: {results[name]}", flush=True)
    if args.sb3:
        results[SB3_ROW] = run_sb3("a2c", game, target, args.seed, Budget(frames=args.frames), EVAL_EPISODES)
        print(f"{SB3_ROW}: {results[SB3_ROW]}", flush=True)
    report = render(results, args, command)
    print(report)
    if not args.no_write:
        update_section(args.section, report)


if __name__ == "__main__":
    main()
