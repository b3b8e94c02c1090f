"""Helpers shared by the benchmark scripts: machine description and BENCHMARKS.md section updates."""

from __future__ import annotations

import csv
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from typing import NoReturn

EVAL_SEED = 100_000  # evaluation episode i is seeded EVAL_SEED + i, on every side
FINAL_SEED = 200_000  # the final evaluation's episodes: other seeds than the snapshots' scan
BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BENCHMARKS.md")


def fail(message: str) -> NoReturn:
    """Bad input to a bench: one line on stderr, exit code 2, nothing written."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, no GPU, Python {platform.python_version()}"


def today() -> str:
    return time.strftime("%Y-%m-%d")


def median(values: list) -> float:
    finite = [v for v in values if v is not None]
    return statistics.median(finite) if finite else float("nan")


def median_reached(values: list[float | None]) -> float | None:
    """The median over all seeds, a seed that never reached the target counting as never (None): with 2 of 3
    solved it is the slower solved seed's value, with 1 of 2 it is None (the median seed did not get there).
    Taking the median over solved seeds only would report a side that failed half its seeds as fast."""
    ordered = sorted(float("inf") if v is None else v for v in values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    value = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return None if value == float("inf") else value


def update_section(name: str, body: str) -> None:
    """Replace the text between <!-- name:begin --> and <!-- name:end --> in BENCHMARKS.md (append if absent)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = open(BENCHMARKS).read() if os.path.exists(BENCHMARKS) else "# Benchmarks\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(BENCHMARKS, "w") as fh:
        fh.write(text)


def run_ours(
    preset: str,
    seed: int,
    budget: int,
    target: float,
    snapshot_every: int,
    eval_episodes: int,
    overrides: list[str],
    settings: dict | None = None,
    final_episodes: int = 0,
) -> dict:
    """One ray-a3c training run on an already-started Ray, without the evaluator (nothing but training uses the
    CPU); the PS keeps its weights every `snapshot_every` env steps, evaluated afterwards. Time to solve is the
    training wall time (from the workers' start) of the first snapshot whose greedy `eval_episodes`-episode
    mean reaches `target`. With `final_episodes`, the last snapshot is also evaluated afresh (FINAL_SEED)."""
    import ray_a3c
    from ray_a3c.actors.evaluator import Evaluator
    from ray_a3c.common.storage import checkpoint
    from ray_a3c.common.storage.keys import CKPT_COUNTERS, CKPT_MODEL, CKPT_TRAIN_S

    cfg = ray_a3c.make_config(
        preset,
        overrides=overrides,
        **{
            "run.seed": seed,
            "run.total_env_steps": budget,
            "run.stop_return": None,
            "run.evaluate": False,
            "run.snapshot_every_env_steps": snapshot_every,
            **(settings or {}),
        },
    )
    with tempfile.TemporaryDirectory() as run_dir:
        s = ray_a3c.train(cfg, run_dir=run_dir, quiet=True)
        folder = os.path.join(run_dir, "snapshots")
        paths = sorted(glob.glob(os.path.join(folder, "*.pt")), key=lambda p: int(os.path.basename(p)[:-3]))
        evaluator = Evaluator(cfg)

        def evaluate(path: str) -> tuple[float, float, int]:
            state = checkpoint.load(path)
            evaluator.load_state_dict(state[CKPT_MODEL])
            mean = evaluator.run_episodes(eval_episodes, EVAL_SEED).mean_return
            return mean, state[CKPT_TRAIN_S], state[CKPT_COUNTERS]["env_steps"]

        solved = first_solving(paths, evaluate, target)
        if final_episodes and paths:
            evaluator.load_state_dict(checkpoint.load(paths[-1])[CKPT_MODEL])
            final = evaluator.run_episodes(final_episodes, FINAL_SEED)
            solved.update(final_mean=final.mean_return, final_std=final.std_return)
        evaluator.close()
    return {
        **solved,
        "fps": s.env_steps / max(s.train_s, 1e-9),
        "spawn_s": s.spawn_s,
        "first_gradient_s": s.first_gradient_s,
        "snapshots": len(paths),
    }


def first_solving(snapshots: list, evaluate: Callable, target: float) -> dict:
    """The first snapshot (in training order) whose evaluation mean reaches `target`: its training time and
    env steps. `evaluate(snapshot) -> (mean, train_s, env_steps)`."""
    for snap in snapshots:
        mean, train_s, env_steps = evaluate(snap)
        if mean >= target:
            return {"solved": True, "time_s": train_s, "env_steps": env_steps, "eval_mean": mean}
    return {"solved": False, "time_s": None, "env_steps": None, "eval_mean": None}


def fmt(value, spec: str) -> str:
    return "not solved" if value is None else format(value, spec)


def sb3_snapshots(model, budget: int, snapshot_every: int, vec_normalize=None) -> tuple[list, float]:
    """Train an SB3 model for `budget` env steps, keeping (env steps, training wall time, policy weights,
    VecNormalize's observation statistics) every `snapshot_every` env steps -> (snapshots, wall seconds)."""
    import copy

    from stable_baselines3.common.callbacks import BaseCallback

    class Snapshots(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next, self.taken = snapshot_every, []

        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next:
                self.next += snapshot_every
                rms = copy.deepcopy(vec_normalize.obs_rms) if vec_normalize is not None else None
                self.taken.append(
                    (
                        self.num_timesteps,
                        time.perf_counter() - self.t0,
                        copy.deepcopy(self.model.policy.state_dict()),
                        rms,
                    )
                )
            return True

    snapshots = Snapshots()
    t0 = time.perf_counter()
    model.learn(total_timesteps=budget, callback=snapshots)
    return snapshots.taken, time.perf_counter() - t0


def sb3_evaluator(model, eval_env, episodes: int, seed: int = EVAL_SEED) -> Callable:
    """snapshot -> (mean return over `episodes` deterministic episodes, training time, env steps)."""
    from stable_baselines3.common.evaluation import evaluate_policy

    def evaluate(snap: tuple) -> tuple[float, float, int]:
        env_steps, train_s, weights, rms = snap
        model.policy.load_state_dict(weights)
        if rms is not None:
            eval_env.obs_rms = rms
        eval_env.seed(seed)
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
        return mean, train_s, env_steps

    return evaluate


def sb3_time_to_target(
    model, eval_env, budget: int, snapshot_every: int, episodes: int, target: float, vec_normalize=None
) -> dict:
    """Train an SB3 model for `budget` env steps with snapshots; then evaluate the snapshots in order with
    `episodes` deterministic episodes. Time to solve is the training wall time at the first solving snapshot."""
    taken, wall = sb3_snapshots(model, budget, snapshot_every, vec_normalize)
    return {
        **first_solving(taken, sb3_evaluator(model, eval_env, episodes), target),
        "fps": model.num_timesteps / max(wall, 1e-9),
        "snapshots": len(taken),
    }


def first_crossing(points: list[tuple[float, float]], target: float | None) -> float | None:
    """The first time whose running mean reaches `target` (None: no target); `points` are (time, running mean)
    in time order."""
    return None if target is None else next((t for t, mean in points if mean >= target), None)


def running_means(rows: list[tuple[float, float]], window: int = 100) -> list[tuple[float, float]]:
    """(time, return) per episode -> (time, mean of the last `window` returns) after each episode, from the
    `window`-th episode on (a mean of the first few lucky episodes is no result)."""
    last: deque = deque(maxlen=window)
    out = []
    for t, ret in rows:
        last.append(ret)
        if len(last) == window:
            out.append((t, sum(last) / window))
    return out


# the CLI, run by this interpreter: the venv's `a3c` script names the python that installed it, which in a
# shared venv can be another checkout's
A3C = (sys.executable, "-m", "ray_a3c.cluster.cli")


def training_games(run_dir: str, train_start_s: float) -> list[tuple[float, int, float]]:
    """(seconds from launch, env steps, return) of each training episode in RUN_DIR/episodes.csv; [] before one
    ends."""
    path = os.path.join(run_dir, "episodes.csv")
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [
            (train_start_s + float(r["train_s"]), int(r["env_steps"]), float(r["return"])) for r in csv.DictReader(fh)
        ]


def training_episodes(run_dir: str, train_start_s: float) -> list[tuple[float, float]]:
    """(seconds from launch, return) of each training episode in RUN_DIR/episodes.csv; [] before one ends."""
    return [(t, ret) for t, _, ret in training_games(run_dir, train_start_s)]


def fresh_evaluation(run_dir: str, episodes: int, seed: int, cwd: str, *extra: str) -> dict:
    """`a3c evaluate RUN_DIR --checkpoint latest`'s JSON: a fresh evaluation of the final policy."""
    cmd = [*A3C, "evaluate", run_dir, "--checkpoint", "latest", "--episodes", str(episodes), "--seed", str(seed)]
    out = subprocess.run([*cmd, *extra], capture_output=True, text=True, cwd=cwd, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])
