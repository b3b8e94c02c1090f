"""The sides of bench/atari.py's race, each one training run and a fresh evaluation of its final policy:
ray-a3c (`run_ours`), Stable-Baselines3 (`run_sb3`) and Sample Factory 2.1.1 (`run_sf`, launched inside
bench/.sf-venv through bench/atari_sf.py). What they share and how each is measured: bench/atari.py's docstring."""

from __future__ import annotations

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

from bench.common import A3C, first_crossing, fresh_evaluation, running_means, training_episodes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SF_PYTHON = os.path.join(ROOT, "bench", ".sf-venv", "bin", "python")
FRAME_SKIP, EVAL_EPISODES, EVAL_SEED = 4, 30, 11
SF_ROLLOUT, SF_BATCH = 128, 256  # Sample Factory's Atari example: rollout length and minibatch size
SF_LAUNCH = "import sys; from bench.atari_sf import sf_main; sys.exit(sf_main(sys.argv[1:]))"


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
            *A3C,
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
