"""Helpers shared by the benchmark scripts: machine description and BENCHMARKS.md section updates."""
from __future__ import annotations

import os
import platform
import re
import statistics
import tempfile
import time
from typing import Optional

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "BENCHMARKS.md")


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


def run_ours(preset: str, seed: int, budget: int, target: float, overrides: list[str],
             settings: Optional[dict] = None) -> dict:
    """One ray-a3c training run on an already-started Ray; time and env steps at the solving evaluation
    (evaluation time excluded), or None where the budget ran out first."""
    import ray_a3c

    cfg = ray_a3c.make_config(preset, overrides=overrides, **{"run.seed": seed, "run.total_env_steps": budget,
                                                              "run.stop_return": target, **(settings or {})})
    with tempfile.TemporaryDirectory() as run_dir:
        s = ray_a3c.train(cfg, run_dir=run_dir, quiet=True)
    return {"solved": s.solved_at_s is not None, "time_s": s.solved_at_s, "env_steps": s.solved_at_env_steps,
            "spawn_s": s.spawn_s, "fps": s.env_steps / max(s.train_s, 1e-9)}


def fmt(value, spec: str) -> str:
    return "not solved" if value is None else format(value, spec)


def sb3_time_to_target(model, eval_env, budget: int, eval_every: int, episodes: int, target: float,
                       before_eval=None) -> dict:
    """Train an SB3 model, evaluating `episodes` deterministic episodes every `eval_every` env steps with the
    clock stopped; returns the training time and env steps at the first evaluation with mean >= target."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    class SolveClock(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.excluded, self.next_eval, self.solved_at = 0.0, eval_every, None

        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            self.next_eval += eval_every
            t = time.perf_counter()
            if before_eval is not None:
                before_eval()
            mean, _ = evaluate_policy(self.model, eval_env, n_eval_episodes=episodes, deterministic=True)
            if mean >= target:
                self.solved_at = (t - self.t0 - self.excluded, self.num_timesteps)
                return False
            self.excluded += time.perf_counter() - t
            return True

    clock = SolveClock()
    t0 = time.perf_counter()
    model.learn(total_timesteps=budget, callback=clock)
    wall = time.perf_counter() - t0 - clock.excluded
    solved = clock.solved_at is not None
    return {"solved": solved, "time_s": clock.solved_at[0] if solved else None,
            "env_steps": clock.solved_at[1] if solved else None, "fps": model.num_timesteps / max(wall, 1e-9)}
