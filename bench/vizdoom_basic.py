"""ViZDoom basic from pixels: ray-a3c vs Sample Factory 2.1.1, same machine, same number of workers, CPU.

Time until the mean return reaches 60 (raw units; SF logs x0.01, so 0.6), frames per second counting
skipped frames (frame skip 4), and ray-a3c's communication share (perf/comm_fraction). Sample Factory runs in
its own venv (it pins gymnasium 0.29 and numpy 1.26): `make bench-sf-venv` creates bench/.sf-venv.
SF's figure is its running average of training-episode returns (sampled actions); ours is the evaluator's mean
over 20 episodes with sampled actions (the preset's run.eval_policy), taken every 10 s. Both times are wall
clock from launch, start-up included (ours: Ray start + actor spawn + training until the solving weights were
taken; the evaluator runs beside training and its CPU share is included).

    .venv/bin/python -m bench.vizdoom_basic [--seconds 600] [--workers 2]
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import ray

from bench.common import fmt, machine, today, update_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SF_PYTHON = os.path.join(ROOT, "bench", ".sf-venv", "bin", "python")
TARGET = 60.0
FRAME_SKIP = 4


def run_sample_factory(seconds: float, workers: int, envs_per_worker: int) -> dict:
    with tempfile.TemporaryDirectory() as train_dir:
        cmd = [SF_PYTHON, "-m", "sf_examples.vizdoom.train_vizdoom", "--env=doom_basic", "--experiment=bench",
               f"--train_dir={train_dir}", f"--num_workers={workers}", f"--num_envs_per_worker={envs_per_worker}",
               "--device=cpu", f"--train_for_seconds={int(seconds)}", "--seed=0", "--save_every_sec=100000"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=train_dir,
                                start_new_session=True)
        # SF 2.1.1 never advances the clock that --train_for_seconds reads: stop it (and its workers) ourselves.
        timers = [threading.Timer(seconds, os.killpg, (proc.pid, signal.SIGINT)),
                  threading.Timer(seconds + 60, os.killpg, (proc.pid, signal.SIGKILL))]  # if it hangs on exit
        for timer in timers:
            timer.start()
        solved_at, fps = None, []
        for line in proc.stdout:
            if (m := re.search(r"Fps is \(10 sec: ([\d.na]+)", line)) and m.group(1) != "nan":
                fps.append(float(m.group(1)))
            m = re.search(r"Avg episode reward: \[\(0, '(-?[\d.]+)'\)\]", line)
            if m and float(m.group(1)) * 100 >= TARGET and solved_at is None:
                solved_at = time.perf_counter() - t0
        proc.wait()
        for timer in timers:
            timer.cancel()
    steady = fps[len(fps) // 4:] or fps
    return {"time_s": solved_at, "fps": sum(steady) / max(len(steady), 1)}


VARIANTS = {  # label -> overrides of the vizdoom_basic preset
    "preset `vizdoom_basic`: async A3C, lr 3e-4": [],
    "`--mode sync`, lr 7e-4 (A2C)": ["algo.mode=sync", "algo.learning_rate=0.0007"],
}


def run_ours(seconds: float, workers: int, overrides: list[str]) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import ray_a3c
    from ray_a3c.cluster.runtime import start_ray

    cfg = ray_a3c.make_config("vizdoom_basic", overrides=["run.eval_interval_s=10", "run.eval_episodes=20",
                                                          "run.gif_every=0", *overrides],
                              **{"run.num_workers": workers, "run.time_limit_s": seconds, "run.stop_return": TARGET,
                                 "run.seed": 0})
    start_ray(cfg)
    with tempfile.TemporaryDirectory() as run_dir:
        s = ray_a3c.train(cfg, run_dir=run_dir, quiet=True)
        acc = EventAccumulator(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))[0])
        acc.Reload()
        comm = [e.value for e in acc.Scalars("perf/comm_fraction")]
        rates = [e.value for e in acc.Scalars("perf/env_steps_per_s")]
    ray.shutdown()
    steady = rates[len(rates) // 4:] or rates  # as for SF: leave out the first quarter (start-up)
    solved = s.solved_at_s is not None
    return {"time_s": s.ray_start_s + s.spawn_s + s.solved_at_s if solved else None,
            "fps": FRAME_SKIP * sum(steady) / len(steady), "startup_s": s.ray_start_s + s.spawn_s,
            "comm": sum(comm) / len(comm), "env_steps": s.solved_at_env_steps, "best": s.best_eval,
            "envs": cfg.env.num_envs_per_worker}


def _ratio(ours: dict, sf: dict) -> str:
    time_ratio = (f"{ours['time_s'] / sf['time_s']:.2f}" if ours["time_s"] and sf["time_s"] else
                  f"n/a (best eval {fmt(ours['best'], '.1f')})")
    return f"time {time_ratio}, FPS {ours['fps'] / max(sf['fps'], 1e-9):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not os.path.exists(SF_PYTHON):
        sys.exit("error: bench/.sf-venv is missing; run `make bench-sf-venv` first")
    ours = {}
    for label, overrides in VARIANTS.items():
        ours[label] = run_ours(args.seconds, args.workers, overrides)
        print(f"ray-a3c {label}: {ours[label]}", flush=True)
    envs = next(iter(ours.values()))["envs"]
    sf = run_sample_factory(args.seconds, args.workers, envs)
    print(f"sample factory: {sf}", flush=True)
    lines = [f"## ViZDoom basic: ray-a3c vs Sample Factory 2.1.1 ({today()})", "",
             (f"Machine: {machine()}. Command: `.venv/bin/python -m bench.vizdoom_basic --seconds {args.seconds:.0f} "
             f"--workers {args.workers}`. Every run: {args.workers} workers x {envs} envs, CPU, frame skip 4, seed 0, "
             f"limit {args.seconds:.0f} s, one after another on the same machine. Time = wall clock from launch "
             "(start-up included) until the mean return reaches 60 raw: SF's running average of training "
             "episodes, ours the evaluator's 20 sampled-action episodes every 10 s."), "",
             "| | time to mean return >= 60 (s) | frames/s (incl. skipped) | comm fraction | ratios to SF |",
             "|---|---|---|---|---|"]
    for label, r in ours.items():
        lines.append(f"| ray-a3c, {label} | {fmt(r['time_s'], '.0f')} | {r['fps']:,.0f} | {r['comm']:.1%} | "
                     f"{_ratio(r, sf)} |")
    lines += [(f"| Sample Factory (APPO, its doom_basic defaults) | {fmt(sf['time_s'], '.0f')} | {sf['fps']:,.0f} "
              "| - | 1 |"), "",
              ("Goals: time ratio <= 1.0, FPS ratio >= 1.0, comm fraction < 10%. In sync mode the comm fraction "
              "counts the wait at the round barrier (the packet's trip, the slowest worker, the PS's step).")]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        update_section("vizdoom", report)


if __name__ == "__main__":
    main()
