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
`sf_main` below: SF's own train/enjoy entry points with its Atari env factory pointed at the v5 env.

    .venv/bin/python -m bench.atari [--rows pong breakout] [--frames 10000000] [--seed 0] [--sides ours,sb3,sf]
        [--workers 2] [--envs 16] [--eval-games 30] [--rows-from LOG ...] [--section atari]
        [--no-write]  (seeds: one per invocation, each printing `<row> seed N: {...}`; --rows-from merges them)
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections import deque

from bench.common import (
    A3C,
    fail,
    first_crossing,
    fmt,
    fresh_evaluation,
    machine,
    median,
    median_reached,
    running_means,
    today,
    training_episodes,
    update_section,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SF_PYTHON = os.path.join(ROOT, "bench", ".sf-venv", "bin", "python")
FRAME_SKIP, EVAL_EPISODES, EVAL_SEED = 4, 30, 11
SF_ROLLOUT, SF_BATCH = 128, 256  # Sample Factory's Atari example: rollout length and minibatch size
ROWS = {"pong": ("Pong", 18.0), "breakout": ("Breakout", 50.0)}  # row -> (ALE game, target of the training mean)
SIDES = ("ours", "sb3", "sf")
NAMES = {"ours": "ray-a3c", "sb3": "SB3 A2C (rl-zoo)", "sf": "Sample Factory APPO"}
SF_LAUNCH = "import sys; from bench.atari import sf_main; sys.exit(sf_main(sys.argv[1:]))"


def _num(value, spec: str) -> str:
    """A number, or '-' for none (a median over no values is nan)."""
    return "-" if value is None or value != value else format(value, spec)


def curve(means: list, points: int = 4) -> list:
    """The 100-game training mean at 1/points, 2/points, ... of the time to the last game (None before the
    100th game): whether a side is still flat or already climbing when its budget ends."""
    if not means:
        return [None] * points
    end = means[-1][0]
    return [next((m for t, m in reversed(means) if t <= end * (i + 1) / points), None) for i in range(points)]


def _result(means: list, target: float, returns: list, fps: float, frames: int) -> dict:
    return {
        "time_s": first_crossing(means, target),
        "final_mean100": means[-1][1] if means else None,
        "curve": curve(means),
        "eval_mean": statistics.fmean(returns) if returns else None,
        "eval_std": statistics.pstdev(returns) if returns else None,
        "eval_games": len(returns),
        "fps": fps,
        "frames": frames,
    }


# -- ray-a3c -----------------------------------------------------------------------------------------------------
def run_ours(
    game: str, target: float, seed: int, frames: int, workers: int, envs: int, eval_games: int, overrides=()
) -> dict:
    """The `atari` preset as shipped, or with `overrides` (`section.key=value` strings) on top."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = os.path.join(tmp, "run")
        cmd = [
            A3C,
            "train",
            "atari",
            "--env",
            f"ALE/{game}-v5",
            "--seed",
            str(seed),
            "--num-workers",
            str(workers),
            "--run-dir",
            run_dir,
            "--set",
            "run.evaluate=false",
            "run.stop_return=null",
            "run.gif_every=0",
            f"run.total_env_steps={frames // FRAME_SKIP}",
            f"env.num_envs_per_worker={envs}",
            *overrides,
        ]
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp)
        if out.returncode != 0:
            raise RuntimeError(f"a3c train exited {out.returncode}:\n{out.stdout[-2000:]}")
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        games = training_episodes(run_dir, summary["train_start_s"])
        evaluation = fresh_evaluation(run_dir, eval_games, EVAL_SEED, tmp, "--policy", "sample")
    frames_done = FRAME_SKIP * summary["env_steps"]
    result = _result(running_means(games), target, [], frames_done / max(summary["train_s"], 1e-9), frames_done)
    return {
        **result,
        "eval_mean": evaluation["mean_return"],
        "eval_std": evaluation.get("std_return"),
        "eval_games": evaluation.get("episodes", eval_games),
    }


# -- Stable-Baselines3 -------------------------------------------------------------------------------------------
def run_sb3(game: str, target: float, seed: int, frames: int, eval_games: int) -> dict:
    """rl-zoo's a2c.yml `atari` entry (16 envs, n_steps 5, ent 0.01, vf 0.25, RMSpropTFLike eps 1e-5) with a
    linear learning rate from 7e-4 (the zoo: constant), on ALE v5 made with frameskip=1 (AtariWrapper skips 4)."""
    t0 = time.perf_counter()
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env_id, base = f"ALE/{game}-v5", {"frameskip": 1}
    env = VecFrameStack(make_atari_env(env_id, n_envs=16, seed=seed, env_kwargs=base), n_stack=4)
    model = A2C(
        "CnnPolicy",
        env,
        n_steps=5,
        ent_coef=0.01,
        vf_coef=0.25,
        max_grad_norm=0.5,
        learning_rate=lambda progress: progress * 7e-4,
        seed=seed,
        device="cpu",
        verbose=0,
        policy_kwargs=dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=dict(alpha=0.99, eps=1e-5)),
    )
    games: list[tuple[float, float]] = []

    class Games(BaseCallback):  # Monitor sits inside AtariWrapper: its "episode" is a whole game, unclipped
        def _on_step(self) -> bool:
            games.extend(
                (time.perf_counter() - t0, float(i["episode"]["r"])) for i in self.locals["infos"] if "episode" in i
            )
            return True

    t1 = time.perf_counter()
    model.learn(total_timesteps=frames // FRAME_SKIP, callback=Games())
    wall = time.perf_counter() - t1
    eval_env = VecFrameStack(
        make_atari_env(
            env_id,
            n_envs=1,
            seed=EVAL_SEED,
            env_kwargs=base,
            wrapper_kwargs=dict(terminal_on_life_loss=False, clip_reward=False),
        ),
        n_stack=4,
    )
    returns, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=eval_games, deterministic=False, return_episode_rewards=True
    )
    env.close()
    eval_env.close()
    return _result(
        running_means(games),
        target,
        [float(r) for r in returns],
        FRAME_SKIP * model.num_timesteps / max(wall, 1e-9),
        FRAME_SKIP * model.num_timesteps,
    )


# -- Sample Factory ----------------------------------------------------------------------------------------------
def run_sf(game: str, target: float, seed: int, frames: int, workers: int, envs: int, eval_games: int) -> dict:
    with tempfile.TemporaryDirectory() as train_dir:
        common = [f"--env=atari_{game.lower()}", "--experiment=bench", f"--train_dir={train_dir}", "--device=cpu"]
        cmd = [
            SF_PYTHON,
            "-c",
            SF_LAUNCH,
            "train",
            *common,
            f"--num_workers={workers}",
            f"--num_envs_per_worker={envs}",
            # SF's sync mode trains on exactly what a rollout collected: its example's 8 x 1 envs x 128 steps fill
            # 4 minibatches of 256; with these envs every rollout fills workers x envs x 128 / 256 of them
            f"--num_batches_per_epoch={max(1, workers * envs * SF_ROLLOUT // SF_BATCH)}",
            f"--train_for_env_steps={frames}",
            f"--seed={seed}",
            "--save_every_sec=120",
        ]
        env = dict(os.environ, PYTHONPATH=ROOT, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=train_dir,
            env=env,
            start_new_session=True,
        )
        means, fps, total, tail, timers = [], [], 0, deque(maxlen=40), []
        for line in proc.stdout:
            tail.append(line)
            if (m := re.search(r"Fps is \(10 sec: ([\d.na]+)", line)) and m.group(1) != "nan":
                fps.append(float(m.group(1)))
            if m := re.search(r"Total num frames: (\d+)", line):
                total = int(m.group(1))
                if total >= frames and not timers:  # past the budget: give it 90 s to stop, then stop it
                    timers = [
                        threading.Timer(90, os.killpg, (proc.pid, signal.SIGTERM)),
                        threading.Timer(150, os.killpg, (proc.pid, signal.SIGKILL)),
                    ]
                    for timer in timers:
                        timer.start()
            if (m := re.search(r"BENCH games (\d+) mean (-?[\d.]+)", line)) and int(m.group(1)) >= 100:
                means.append((time.perf_counter() - t0, float(m.group(2))))
        proc.wait()
        for timer in timers:
            timer.cancel()
        ev = subprocess.run(
            [
                SF_PYTHON,
                "-c",
                SF_LAUNCH,
                "enjoy",
                *common,
                "--no_render",
                "--eval_deterministic=False",
                f"--max_num_episodes={eval_games}",
                f"--seed={EVAL_SEED}",
            ],
            capture_output=True,
            text=True,
            cwd=train_dir,
            env=env,
        )
        returns = [float(r) for r in re.findall(r"BENCH game (-?[\d.]+)", ev.stdout + ev.stderr)][:eval_games]
        if not returns:
            raise RuntimeError(f"SF's enjoy reported no game:\n{''.join(tail)}\n{(ev.stdout + ev.stderr)[-2000:]}")
    steady = fps[len(fps) // 4 :] or fps  # its first readings include start-up
    return _result(means, target, returns, sum(steady) / max(len(steady), 1), total)


def sf_make_env(full_env_name, cfg, env_config, render_mode=None):
    """SF's own Atari env factory (sf_examples.atari.atari_utils.make_atari_env) on ALE/<Game>-v5 (frameskip=1)
    instead of its <Game>NoFrameskip-v4 (no sticky actions); in `enjoy` without EpisodicLifeEnv and ClipRewardEnv,
    each game's own return printed as it ends. Runs inside bench/.sf-venv (gymnasium 0.29)."""
    import ale_py  # noqa: F401 - registers the ALE ids
    import gymnasium as gym
    from sf_examples.atari import atari_utils

    spec = atari_utils.atari_env_by_name(full_env_name)
    game = spec.env_id.split("NoFrameskip")[0]
    bench_id = f"BenchALE/{game}-v5"
    if bench_id not in gym.registry:
        v5 = gym.spec(f"ALE/{game}-v5")
        gym.register(bench_id, entry_point=v5.entry_point, kwargs={**v5.kwargs, "frameskip": 1})
    if os.environ.get("BENCH_ATARI_MODE") != "enjoy":
        original, spec.env_id = spec.env_id, bench_id  # SF's spec objects are shared: put the id back after
        try:
            return atari_utils.make_atari_env(full_env_name, cfg, env_config, render_mode)
        finally:
            spec.env_id = original
    # enjoy: SF's wrappers but the training-only two, whole games at the game's own reward
    from sample_factory.envs.env_wrappers import FireResetEnv, MaxAndSkipEnv, NoopResetEnv, NumpyObsWrapper

    class PrintGames(gym.Wrapper):
        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            if "episode" in info:
                print(f"BENCH game {float(info['episode']['r'])}", flush=True)
            return obs, reward, terminated, truncated, info

    env = gym.make(bench_id, render_mode=render_mode)
    env.reset(seed=cfg.seed)  # the ALE's generator, once; SF's own resets carry no seed
    env = NoopResetEnv(PrintGames(gym.wrappers.RecordEpisodeStatistics(env)), noop_max=30)
    env = MaxAndSkipEnv(env, skip=cfg.env_frameskip)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireResetEnv(env)
    env = gym.wrappers.GrayScaleObservation(gym.wrappers.ResizeObservation(env, (84, 84)))
    return NumpyObsWrapper(gym.wrappers.FrameStack(env, cfg.env_framestack))


def sf_main(argv: list[str]) -> int:
    """`train ARGS` / `enjoy ARGS` inside bench/.sf-venv: SF's Atari example with `sf_make_env` registered; in
    training, each stats report also prints the 100-game window of whole-game returns SF keeps."""
    import numpy as np
    from sample_factory.envs.env_utils import register_env
    from sf_examples.atari.atari_utils import ATARI_ENVS
    from sf_examples.atari.train_atari import parse_atari_args

    mode, rest = argv[0], argv[1:]
    os.environ["BENCH_ATARI_MODE"] = mode  # spawned workers inherit it
    for spec in ATARI_ENVS:
        register_env(spec.name, sf_make_env)
    cfg = parse_atari_args(argv=rest, evaluation=mode == "enjoy")
    if mode == "enjoy":
        from sample_factory.enjoy import enjoy

        return int(enjoy(cfg)[0])
    from sample_factory.algo.runners.runner import Runner
    from sample_factory.train import run_rl

    print_stats = Runner.print_stats

    def with_games(self, *args):
        print_stats(self, *args)
        games = self.policy_avg_stats.get("RecordEpisodeStatistics_reward", [[]])[0]
        if games:
            print(f"BENCH games {len(games)} mean {float(np.mean(games))}", flush=True)

    Runner.print_stats = with_games
    return int(run_rl(cfg))


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
