"""What a run reports: its summary (the CLI's JSON line) and its progress lines."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import psutil

from ray_a3c.common.wire.counters import WindowStats


@dataclass
class RunSummary:
    run_dir: str = ""
    reason: str = ""  # what stopped the run: solved | env_steps | time_limit | interrupted
    env_steps: int = 0
    version: int = 0
    episodes: int = 0
    train_s: float = 0.0  # wall time from the workers' start to the stop
    ray_start_s: float = 0.0
    spawn_s: float = 0.0  # asking Ray for the actors (they start in the background)
    first_gradient_s: float | None = None  # from the process's start to the PS's first applied gradient
    eval_s: float = 0.0  # wall time the evaluator was busy (it runs beside training: not subtracted anywhere)
    last_eval: float | None = None  # the last screening's mean (run.eval_episodes episodes)
    best_eval: float | None = None  # best.pt's mean over run.confirm_episodes episodes of its own weights
    best_eval_std: float | None = None  # those episodes' standard deviation
    best_eval_episodes: int | None = None
    best_eval_env_steps: int | None = None  # when best.pt's weights were taken
    solved_at_s: float | None = None  # training wall time (from the workers' start) when the solving weights
    # were taken; the evaluator runs beside training, so nothing is subtracted
    solved_at_env_steps: int | None = None
    rejected_stale: int = 0
    rejected_nonfinite: int = 0
    restarts: dict = field(default_factory=dict)  # role -> count
    env_recreations: int = 0  # env processes (ViZDoom) restarted after crashes
    env_hangs: int = 0  # env steps or resets that hung past env.step_timeout_s (each rebuilt a vector env)
    dataset_passes: float | None = None  # training on a dataset: transitions replayed / its transitions
    train_start_s: float | None = None  # process age when the workers were started (episodes.csv's train_s 0)
    train_return_mean100: float | None = None  # mean return of the last 100 training episodes (sampled actions)
    worker_env_steps: int | None = None  # env steps the async workers counted as delivered (loops that ended)
    lost_updates: int = 0  # PS updates lost to parameter-server crashes (since their last checkpoint; a lower bound)
    evals: list = field(default_factory=list)  # (env_steps, mean_return)

    def settle(self) -> None:
        """After the last evaluation: a stop return confirmed on weights taken within the budget is `solved`,
        even when the confirmation ended after the budget ran out (an interrupted run stays interrupted)."""
        if self.solved_at_s is not None and self.reason in ("env_steps", "time_limit"):
            self.reason = "solved"

    @property
    def eval_busy_share(self) -> float | None:
        """The part of training's wall time the evaluator was busy (None before training started)."""
        return round(self.eval_s / self.train_s, 3) if self.train_s > 0 else None

    def result(self) -> dict:
        """The summary as the CLI prints it (one JSON line): everything but the evaluation history, with the
        evaluator's busy share."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "evals"}
        out["eval_busy_share"] = self.eval_busy_share
        return out


def process_age_s() -> float:
    """Seconds since this process started (the command's start, interpreter and imports included)."""
    return time.time() - psutil.Process().create_time()


def progress_line(
    elapsed: float,
    stats: WindowStats,
    fps: float,
    return_mean100: float | None,
    last_eval: float | None,
    eta: float | None = None,
) -> str:
    """`return100`: the mean of the last 100 training episodes (the races' statistic), not of the episodes that
    ended in this log window: where games are long and end together (Atari), most windows would have none."""
    ret = f"{return_mean100:8.1f}" if return_mean100 is not None else "       -"
    ev = f"{last_eval:8.1f}" if last_eval is not None else "       -"
    lag = stats.policy_lag_mean
    line = (
        f"[{elapsed:7.1f}s] steps {stats.env_steps:>11,} | {fps:>8,.0f} steps/s | return100 {ret} | "
        f"eval {ev} | version {stats.version:>9,} | lag {lag if lag is not None else 0:4.1f}"
    )
    return line if eta is None else f"{line} | eta {format_duration(eta)}"


def eta_s(elapsed: float, env_steps: int, fps: float, total_env_steps: int, time_limit_s: float | None) -> float | None:
    """Seconds until the first budget runs out: the env steps left at the current rate, or the time limit's
    rest; None while the rate is unknown and no time limit is set."""
    candidates = [max(time_limit_s - elapsed, 0.0)] if time_limit_s is not None else []
    if fps > 0:
        candidates.append(max(total_env_steps - env_steps, 0) / fps)
    return min(candidates) if candidates else None


def format_duration(seconds: float) -> str:
    """3725 -> '1h02m', 83 -> '1m23s', 9 -> '9s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
