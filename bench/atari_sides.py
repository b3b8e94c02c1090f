"""The sides of bench/atari.py's race, each one training run and a fresh evaluation of its saved policy: ray-a3c
(`run_ours`), Sample Factory 2.1.1 (`run_sf`, launched inside bench/.sf-venv through bench/atari_sf.py) and
Stable-Baselines3 (bench/atari_sb3.py). A side's budget is frames or wall-clock seconds from its launch (`Budget`);
what they share and how each is measured: bench/atari.py's docstring."""

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
from collections.abc import Callable
from dataclasses import dataclass

from bench.common import A3C, first_crossing, fresh_evaluation, running_means, training_games

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SF_PYTHON = os.path.join(ROOT, "bench", ".sf-venv", "bin", "python")
FRAME_SKIP, EVAL_EPISODES, EVAL_SEED = 4, 30, 11
UNBOUNDED_FRAMES = 10**12  # a side sized in seconds gets a frame budget no run reaches: the clock stops it
CURVE_POINTS = 12  # (seconds, frames, 100-game mean) points each side keeps of its training curve
SF_ROLLOUT, SF_BATCH = 32, 1024  # Sample Factory's Atari throughput settings (its docs): rollout, minibatch
SF_KILL_AFTER_S = 90  # SIGKILL to Sample Factory's process group this long after its stop signal
SF_LAUNCH = "import sys; from bench.atari_sf import sf_main; sys.exit(sf_main(sys.argv[1:]))"
BUDGET_ENV = "BENCH_ATARI_BUDGET"  # Sample Factory's processes read the side's Deadline here (Deadline.encode)
ROWS = {"pong": ("Pong", 18.0), "breakout": ("Breakout", 50.0)}  # row -> (ALE game, target of the training mean)
SIDES = ("ours", "ours_nature", "sb3_ppo", "sb3", "sf")
NAMES = {
    "ours": "ray-a3c",
    "ours_nature": "ray-a3c (nature)",
    "sb3_ppo": "SB3 PPO (rl-zoo)",
    "sb3": "SB3 A2C (rl-zoo)",
    "sf": "Sample Factory APPO",
}
OUR_OVERRIDES = {"ours": (), "ours_nature": ("model.cnn_layout=nature", "model.cnn_fc_size=512")}
NATURE_CNN = "Nature (32-64-64, fc 512, ReLU)"  # SB3's CnnPolicy (NatureCNN) and SF's convnet_atari + [512]


@dataclass(frozen=True)
class Budget:
    """What one side may spend: `frames` (skipped frames included) or `seconds` of wall clock from its launch,
    start-up included; exactly one of them."""

    frames: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.frames is None) == (self.seconds is None):
            raise ValueError("a budget is frames or seconds, exactly one of them")

    def agent_steps(self) -> int:
        """The env-step budget a trainer is given (one agent step is FRAME_SKIP frames)."""
        return (UNBOUNDED_FRAMES if self.frames is None else self.frames) // FRAME_SKIP


class Deadline:
    """A side's clock, started at its launch: seconds elapsed, and with a clock budget (`seconds`) what is left,
    whether it has passed, and the share left (which a clock-sized run's linear schedules follow). Unix time, so
    Sample Factory's processes can share the launch instant (`encode` / `decode`)."""

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.time, launch: float | None = None):
        self.seconds, self.clock = seconds, clock
        self.launch = clock() if launch is None else launch

    def elapsed(self) -> float:
        return self.clock() - self.launch

    def left(self) -> float:
        return float("inf") if self.seconds is None else max(0.0, self.seconds - self.elapsed())

    def passed(self) -> bool:
        return self.seconds is not None and self.elapsed() >= self.seconds

    def fraction_left(self) -> float:
        """1 at launch, 0 from the deadline on (1 throughout without a clock budget)."""
        return 1.0 if self.seconds is None else self.left() / self.seconds

    def encode(self) -> str:
        return f"{self.launch!r},{self.seconds!r}"

    @classmethod
    def decode(cls, text: str) -> Deadline:
        launch, seconds = text.split(",")
        return cls(None if seconds == "None" else float(seconds), launch=float(launch))


def at_deadline(deadline: Deadline, action: Callable, *args, after_s: float = 0.0) -> threading.Timer | None:
    """`action(*args)` `after_s` past the deadline, on a timer thread (None without a clock budget)."""
    if deadline.seconds is None:
        return None
    timer = threading.Timer(deadline.left() + after_s, action, args)
    timer.daemon = True
    timer.start()
    return timer


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:  # it stopped on its own meanwhile
        pass


def game_means(games: list[tuple[float, int, float]]) -> list[tuple[float, int, float]]:
    """(seconds, frames, return) per game -> (seconds, frames, mean of the last 100 returns) from the 100th game."""
    means = running_means([(t, ret) for t, _, ret in games])
    return [(t, frames, m) for (t, m), (_, frames, _) in zip(means, games[len(games) - len(means) :], strict=True)]


def curve(means: list, points: int = 4) -> list:
    """The 100-game training mean at 1/points, 2/points, ... of the time to the last game (None before the
    100th game): whether a side is still flat or already climbing when its budget ends. `means`: (t, mean)."""
    if not means:
        return [None] * points
    end = means[-1][0]
    return [next((m for t, m in reversed(means) if t <= end * (i + 1) / points), None) for i in range(points)]


def thinned(means: list[tuple[float, int, float]], points: int = CURVE_POINTS) -> list[tuple[float, int, float]]:
    """`points` of the curve, evenly spaced in game order and ending at its last point, rounded for a log line."""
    if len(means) <= points:
        picked = means
    else:
        picked = [means[round((len(means) - 1) * (i + 1) / points)] for i in range(points)]
    return [(round(t, 1), int(frames), round(m, 2)) for t, frames, m in picked]


def returns_summary(returns: list[float]) -> dict:
    return {
        "eval_mean": statistics.fmean(returns) if returns else None,
        "eval_std": statistics.pstdev(returns) if returns else None,
        "eval_games": len(returns),
    }


def side_result(
    means: list, target: float, evaluation: dict, fps: float, frames: int, budget: Budget, network: str
) -> dict:
    """One side's record. `means`: (seconds from launch, frames, 100-game training mean); under a clock budget
    only the points within it count (a game that ended while the side was being stopped is past the budget)."""
    if budget.seconds is not None:
        means = [p for p in means if p[0] <= budget.seconds]
    pairs = [(t, m) for t, _, m in means]
    return {
        "time_s": first_crossing(pairs, target),
        "frames_to_target": next((f for _, f, m in means if m >= target), None),
        "final_mean100": means[-1][2] if means else None,
        "curve": curve(pairs),
        "curve_points": thinned(means),
        **evaluation,
        "fps": fps,
        "frames": frames,
        "network": network,
    }


# -- ray-a3c -----------------------------------------------------------------------------------------------------
def our_network(overrides=()) -> str:
    """The CNN the `atari` preset builds with these overrides, named as the race's rows name networks."""
    from ray_a3c.common.settings.config import from_dict, from_flat, load_yaml, parse_override

    model = from_flat(dict(parse_override(o) for o in overrides), from_dict(load_yaml("atari"))).model
    if model.cnn_layout == "nature":
        return f"Nature (32-64-64, fc {model.cnn_fc_size}, ReLU)"
    return f"A3C ({'-'.join(map(str, model.conv_channels))}, fc {model.cnn_fc_size}, ELU)"


def run_ours(
    game: str, target: float, seed: int, budget: Budget, workers: int, envs: int, eval_games: int, overrides=()
) -> dict:
    """The `atari` preset as shipped, or with `overrides` (`section.key=value` strings) on top. A clock budget
    is also the run's time limit (its linear learning rate falls over it from the workers' start), and SIGTERM
    at the deadline stops it by the trainer's own path (a final checkpoint, its summary line), so start-up
    counts against the budget; the rate is then at start-up / budget of its start (~0.3% for 10 s of an hour)."""
    deadline = Deadline(budget.seconds)
    clock_limit = [] if budget.seconds is None else [f"run.time_limit_s={budget.seconds}"]
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
            f"run.total_env_steps={budget.agent_steps()}",
            *clock_limit,
            f"env.num_envs_per_worker={envs}",
            *overrides,
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp)
        timer = at_deadline(deadline, proc.send_signal, signal.SIGTERM)
        out = proc.communicate()[0]
        if timer is not None:
            timer.cancel()
        if proc.returncode not in ((0,) if budget.seconds is None else (0, 130)):  # 130: stopped by the SIGTERM
            raise RuntimeError(f"a3c train exited {proc.returncode}:\n{out[-2000:]}")
        summary = json.loads(out.strip().splitlines()[-1])
        games = [(t, FRAME_SKIP * steps, ret) for t, steps, ret in training_games(run_dir, summary["train_start_s"])]
        evaluation = fresh_evaluation(run_dir, eval_games, EVAL_SEED, tmp, "--policy", "sample")
    frames = FRAME_SKIP * summary["env_steps"]
    ours_eval = {
        "eval_mean": evaluation["mean_return"],
        "eval_std": evaluation.get("std_return"),
        "eval_games": evaluation.get("episodes", eval_games),
    }
    fps = frames / max(summary["train_s"], 1e-9)
    result = side_result(game_means(games), target, ours_eval, fps, frames, budget, our_network(overrides))
    return {**result, "wall_s": round(summary["train_start_s"] + summary["train_s"], 1)}


# -- Sample Factory ----------------------------------------------------------------------------------------------
def sf_train_args(workers: int, envs: int) -> list[str]:
    """Sample Factory's throughput settings for Atari, from its docs' Atari page ("better parameters: more envs,
    double buffering, async learning"), sized to this machine's 2 cores:
      --num_workers=workers (2, one rollout worker per core; the docs' 16 are for a machine with 16 or more);
      --num_envs_per_worker=envs (even; 16, ours' count) with --worker_num_splits=2: double-buffered sampling,
        a worker steps one half of its envs while the policy worker infers the other half's actions;
      --async_rl=True, --rollout=32, --batch_size=1024 (the docs'): collection goes on while the learner trains,
        on short rollouts and large minibatches.
    The rest is its Atari example's (the docs leave it): 4 epochs of 4 minibatches, PPO clip 0.1, Adam 2.5e-4
    decaying linearly (under a clock budget to 0 at the deadline, bench/atari_sf.py), normalized inputs and
    returns, convnet_atari + fc 512 with ReLU (the Nature CNN). Frames are counted with the skip
    (summaries_use_frameskip stays on, as on the other sides; the docs' turning it off changes only reports)."""
    return [
        f"--num_workers={workers}",
        f"--num_envs_per_worker={envs}",
        "--worker_num_splits=2",
        "--async_rl=True",
        f"--rollout={SF_ROLLOUT}",
        f"--batch_size={SF_BATCH}",
    ]


def run_sf(game: str, target: float, seed: int, budget: Budget, workers: int, envs: int, eval_games: int) -> dict:
    """A clock budget: SIGINT to its process group at the deadline (SF saves its policy and stops; its workers
    ignore SIGINT) and SIGKILL SF_KILL_AFTER_S later. A frame budget: SIGTERM 90 s after it reports the budget."""
    deadline = Deadline(budget.seconds)
    with tempfile.TemporaryDirectory() as train_dir:
        common = [f"--env=atari_{game.lower()}", "--experiment=bench", f"--train_dir={train_dir}", "--device=cpu"]
        cmd = [
            SF_PYTHON,
            "-c",
            SF_LAUNCH,
            "train",
            *common,
            *sf_train_args(workers, envs),
            f"--train_for_env_steps={UNBOUNDED_FRAMES if budget.frames is None else budget.frames}",
            f"--seed={seed}",
            "--save_every_sec=120",
        ]
        env = dict(os.environ, PYTHONPATH=ROOT, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=train_dir,
            env=env if budget.seconds is None else dict(env, **{BUDGET_ENV: deadline.encode()}),
            start_new_session=True,
        )
        timers = [
            at_deadline(deadline, _signal_group, proc.pid, signal.SIGINT),
            at_deadline(deadline, _signal_group, proc.pid, signal.SIGKILL, after_s=SF_KILL_AFTER_S),
        ]
        means, fps, total, tail, late = [], [], 0, deque(maxlen=40), None
        for line in proc.stdout:
            tail.append(line)
            if (m := re.search(r"Fps is \(10 sec: ([\d.na]+)", line)) and m.group(1) != "nan":
                fps.append(float(m.group(1)))
            if m := re.search(r"Total num frames: (\d+)", line):
                total = int(m.group(1))
                if budget.frames is not None and total >= budget.frames and late is None:
                    late = Deadline(90.0)  # past the budget: 90 s to stop by itself, then SIGTERM, SIGKILL 60 s on
                    timers.append(at_deadline(late, _signal_group, proc.pid, signal.SIGTERM))
                    timers.append(at_deadline(late, _signal_group, proc.pid, signal.SIGKILL, after_s=60))
            if (m := re.search(r"BENCH games (\d+) mean (-?[\d.]+) frames (\d+)", line)) and int(m.group(1)) >= 100:
                means.append((deadline.elapsed(), int(m.group(3)), float(m.group(2))))
        proc.wait()
        for timer in timers:
            if timer is not None:
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
    fps_mean = sum(steady) / max(len(steady), 1)
    return side_result(means, target, returns_summary(returns), fps_mean, total, budget, NATURE_CNN)
