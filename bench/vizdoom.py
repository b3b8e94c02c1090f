"""ViZDoom, like for like: ray-a3c vs Sample Factory 2.1.1 on the same scenario, env-copy count and wall-clock
budget, one after the other on this machine. For each system:
  (a) time from launch (start-up included) until the running mean of the last 100 *training* episodes reaches
      the target: the statistic SF logs; ours from the episodes our workers finish (RUN_DIR/episodes.csv);
  (b) a fresh 100-episode evaluation of the final policy (sampled actions on both sides): `a3c evaluate` /
      SF's `enjoy_vizdoom`;
  (c) frames/s, skipped frames included (frame skip 4).
Our evaluator is off (`run.evaluate=false`), so nothing but training runs beside training on either side.
Sample Factory runs in its own venv (`make bench-sf-venv`): it pins gymnasium 0.29 and numpy 1.26.

    .venv/bin/python -m bench.vizdoom [--rows basic] [--seconds 600] [--workers 2] [--section vizdoom]
        [--sf-from LOG]  (SF's rows as an earlier invocation printed them, instead of training SF again)
"""

from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time

from bench.common import (
    A3C,
    fail,
    first_crossing,
    fmt,
    fresh_evaluation,
    machine,
    running_means,
    today,
    training_episodes,
    update_section,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SF_PYTHON = os.path.join(ROOT, "bench", ".sf-venv", "bin", "python")
FRAME_SKIP, EVAL_EPISODES, EVAL_SEED = 4, 100, 11
# row -> (our preset, SF env, SF options, target of the training running mean in raw reward units (None: no
# time target), the reward scaling SF's own env spec applies, so that its logs and evaluation are divided back to
# raw units)
ROWS = {
    "basic": ("vizdoom_basic", "doom_basic", ["--use_rnn=False"], 80.0, 0.01),
    "basic_lstm": ("vizdoom_basic_lstm", "doom_basic", ["--use_rnn=True"], 80.0, 0.01),  # recurrent on both sides
    "defend_the_center": ("vizdoom_defend_the_center", "doom_defend_the_center", [], 20.0, 1.0),
    "health_gathering": ("vizdoom_health_gathering", "doom_health_gathering", [], None, 1.0),
}
SF_SCENARIOS = "sf_examples/vizdoom/doom/scenarios"


def our_settings(row: str) -> list[str]:
    """`--set` overrides that make our side train on exactly SF's rewards where SF changes the scenario.
    SF's doom_health_gathering plays its own health_gathering.cfg (0.01 per tic alive, no death penalty, a
    fourth button MOVE_BACKWARD; vizdoom's: 1 per tic, -100 at death) and always adds +1 on each step the
    health rises (DoomGatheringRewardShaping): our side loads that same .cfg, unscaled, with the same bonus."""
    if row != "health_gathering":
        return []
    found = glob.glob(
        os.path.join(
            ROOT, "bench", ".sf-venv", "lib", "python3*", "site-packages", SF_SCENARIOS, "health_gathering.cfg"
        )
    )
    if not found:
        fail("Sample Factory's health_gathering.cfg is not in bench/.sf-venv; run `make bench-sf-venv`")
    return [f"env.id=vizdoom:{found[0]}", "env.reward_scale=1.0", "env.medkit_bonus=1.0"]


def run_ours(row: str, seconds: float, workers: int, envs: int) -> dict:
    preset, _, _, target, _ = ROWS[row]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = os.path.join(tmp, "run")
        cmd = [
            *A3C,
            "train",
            preset,
            "--seed",
            "0",
            "--num-workers",
            str(workers),
            "--time-limit",
            str(seconds),
            "--run-dir",
            run_dir,
            "--set",
            "run.evaluate=false",
            "run.stop_return=null",
            "run.gif_every=0",
            f"env.num_envs_per_worker={envs}",
            "run.total_env_steps=1000000000",
            *our_settings(row),
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp)
        # the same budget as SF's, from launch: SIGTERM stops the run cleanly (final checkpoint, summary line)
        timer = threading.Timer(seconds, proc.send_signal, (signal.SIGTERM,))
        timer.start()
        out = proc.communicate()[0]
        timer.cancel()
        if proc.returncode not in (0, 130):
            raise RuntimeError(f"a3c train exited {proc.returncode}:\n{out[-2000:]}")
        summary = json.loads(out.strip().splitlines()[-1])
        episodes = training_episodes(run_dir, summary["train_start_s"])
        evaluation = fresh_evaluation(run_dir, EVAL_EPISODES, EVAL_SEED, tmp)
    means = running_means(episodes)
    return {
        "time_s": first_crossing(means, target),
        "final_mean100": means[-1][1] if means else None,
        "eval": evaluation["mean_return"],
        "eval_ci": evaluation["ci95_return"],
        "fps": FRAME_SKIP * summary["env_steps"] / max(summary["train_s"], 1e-9),
        "env_steps": summary["env_steps"],
    }


def run_sample_factory(row: str, seconds: float, workers: int, envs: int) -> dict:
    _, env, options, target, sf_scale = ROWS[row]
    with tempfile.TemporaryDirectory() as train_dir:
        common = [f"--env={env}", "--experiment=bench", f"--train_dir={train_dir}", "--device=cpu", *options]
        cmd = [
            SF_PYTHON,
            "-m",
            "sf_examples.vizdoom.train_vizdoom",
            *common,
            f"--num_workers={workers}",
            f"--num_envs_per_worker={envs}",
            f"--train_for_seconds={int(seconds)}",
            "--seed=0",
            "--save_every_sec=60",
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=train_dir, start_new_session=True
        )
        # SF 2.1.1 never advances the clock that --train_for_seconds reads: stop it (and its workers) ourselves;
        # SIGINT makes it save a final checkpoint.
        timers = [
            threading.Timer(seconds, os.killpg, (proc.pid, signal.SIGINT)),
            threading.Timer(seconds + 90, os.killpg, (proc.pid, signal.SIGKILL)),
        ]
        for timer in timers:
            timer.start()
        points, fps = [], []
        for line in proc.stdout:
            if (m := re.search(r"Fps is \(10 sec: ([\d.na]+)", line)) and m.group(1) != "nan":
                fps.append(float(m.group(1)))
            if m := re.search(r"Avg episode reward: \[\(0, '(-?[\d.]+)'\)\]", line):
                points.append((time.perf_counter() - t0, float(m.group(1))))
        proc.wait()
        for timer in timers:
            timer.cancel()
        # SF 2.1.1 saves numpy scalars in its checkpoints, which torch >= 2.6's weights_only default refuses; its
        # own evaluator reads back the checkpoint it wrote a minute ago, so its old default is restored for it
        ev = subprocess.run(
            [
                SF_PYTHON,
                "-m",
                "sf_examples.vizdoom.enjoy_vizdoom",
                *common,
                "--no_render",
                f"--max_num_episodes={EVAL_EPISODES}",
                "--eval_deterministic=False",
            ],
            capture_output=True,
            text=True,
            cwd=train_dir,
            env=dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1"),
        )
        found = re.findall(r"Avg episode reward: (-?[\d.]+), avg true_objective: (-?[\d.]+)", ev.stdout + ev.stderr)
        evaluation = float(found[-1][1]) / sf_scale if found else None  # the true objective, unshaped
    raw = [(t, v / sf_scale) for t, v in points]
    steady = fps[len(fps) // 4 :] or fps  # its first readings include start-up
    return {
        "time_s": first_crossing(raw, target),
        "final_mean100": raw[-1][1] if raw else None,
        "eval": evaluation,
        "eval_ci": None,
        "fps": sum(steady) / max(len(steady), 1),
        "env_steps": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=["basic"])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--envs", type=int, default=16, help="env copies per worker, both systems")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--section", default="vizdoom", help="the BENCHMARKS.md section these rows replace")
    parser.add_argument(
        "--sf-from",
        metavar="LOG",
        help="take SF's rows from the output of an earlier invocation "
        "(same rows, seconds, workers, envs) instead of training SF again; the section says so",
    )
    args = parser.parse_args()
    if not os.path.exists(SF_PYTHON):
        fail("bench/.sf-venv is missing; run `make bench-sf-venv` first")
    earlier = earlier_sf_rows(args.sf_from, args.rows) if args.sf_from else {}
    results = {}
    for row in args.rows:
        results[row] = {"ray-a3c": run_ours(row, args.seconds, args.workers, args.envs)}
        print(row, "ray-a3c", results[row]["ray-a3c"], flush=True)
        results[row]["Sample Factory"] = earlier.get(row) or run_sample_factory(
            row, args.seconds, args.workers, args.envs
        )
        print(row, "Sample Factory", results[row]["Sample Factory"], flush=True)
    report = render(results, args)
    print(report)
    if not args.no_write:
        update_section(args.section, report)


def earlier_sf_rows(log_path: str, rows: list[str]) -> dict:
    """SF's result per row from the `<row> Sample Factory {...}` lines an earlier invocation printed."""
    found = {}
    with open(log_path) as fh:
        for line in fh:
            row, sep, rest = line.partition(" Sample Factory ")
            if sep and row in rows:
                found[row] = ast.literal_eval(rest.strip())
    missing = [r for r in rows if r not in found]
    if missing:
        fail(f"{log_path} has no Sample Factory result for {', '.join(missing)}")
    return found


def _models(row: str) -> str:
    ours = "CNN + LSTM" if row.endswith("_lstm") else "feed-forward CNN"
    options = ROWS[row][2]
    theirs = f"`{' '.join(options)}`" if options else "its default recurrent model"
    return f"{row}: ours {ours}, SF {theirs}"


def _scenario_notes(rows: list[str], sf_from: str | None) -> str:
    notes = []
    if "health_gathering" in rows:
        notes.append(
            " health_gathering: SF plays its own scenario file (0.01 per tic alive, no death penalty, "
            "buttons left/right/forward/backward plus its no-op; vizdoom's file: 1 per tic, -100 at death, "
            "no backward) and adds +1 on each step the health rises; our side loads the same file with the "
            "same bonus (`--set env.id=vizdoom:<SF's health_gathering.cfg> env.reward_scale=1.0 "
            "env.medkit_bonus=1.0`, from `our_settings`), so both train on the same rewards, both training "
            "means include the bonus, and both evaluations score the file's own reward (21 = alive to the "
            "2,100-tic timeout). No time target: the issue sets none for this scenario."
        )
    if "defend_the_center" in rows:
        notes.append(
            " defend_the_center: our preset charges a missed shot 0.3 in training (`env.variable_rewards`, "
            "since 2026-11-23), so our training episodes' returns, their running mean and the time to target "
            "count that charge and read below the scenario's own reward; SF trains on the scenario's own "
            "reward; both evaluations score it."
        )
    if sf_from:
        notes.append(
            f" SF's rows come from an earlier invocation of this bench with the same settings on the same "
            f"machine ({os.path.basename(sf_from)}); only ours was trained in this one."
        )
    return "".join(notes)


def render(results: dict, args: argparse.Namespace) -> str:
    lines = [
        f"## ViZDoom: ray-a3c vs Sample Factory 2.1.1, like for like: {', '.join(args.rows)} ({today()})",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python -m bench.vizdoom --rows {' '.join(args.rows)} "
        f"--seconds {args.seconds:.0f} --workers {args.workers} --envs {args.envs}"
        f"{'' if args.section == 'vizdoom' else ' --section ' + args.section}"
        f"{' --sf-from ' + os.path.basename(args.sf_from) if args.sf_from else ''}`. Each system: "
        f"{args.workers} workers x {args.envs} envs, CPU, frame skip 4, seed 0, {args.seconds:.0f} s from launch, "
        "one after the other. Time = from launch (start-up included) until the running mean of the last 100 "
        "training episodes (sampled actions) reaches the target: SF's own logged statistic, ours from "
        "episodes.csv once 100 episodes are in (SF's log line does not give its count; its first line comes "
        "10 s in, when its envs have finished about 100 episodes); our evaluator was off; both stopped at the "
        "budget from launch (ours by SIGTERM, which checkpoints). Eval = a fresh 100-episode evaluation of "
        "the final policy with sampled actions (ours: `a3c evaluate --checkpoint latest --seed "
        f"{EVAL_SEED}`, 95% CI; SF: `enjoy_vizdoom --max_num_episodes 100`, its true objective). Presets: "
        "ours as shipped; SF its Doom defaults (APPO); models: "
        + "; ".join(_models(r) for r in args.rows)
        + "."
        + _scenario_notes(args.rows, args.sf_from),
        "",
        "| scenario (target) | system | time to target (s) | last 100-episode training mean | fresh eval, 100 "
        "episodes | frames/s | ratio ours / SF (time; fps) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, sides in results.items():
        ours, sf = sides["ray-a3c"], sides["Sample Factory"]
        time_ratio = f"{ours['time_s'] / sf['time_s']:.2f}" if ours["time_s"] and sf["time_s"] else "n/a"
        for name, r in sides.items():
            ci = f" +- {r['eval_ci']:.1f}" if r["eval_ci"] is not None else ""
            ratio = f"{time_ratio}; {ours['fps'] / max(sf['fps'], 1e-9):.2f}" if name == "ray-a3c" else "1"
            target = "-" if ROWS[row][3] is None else f"{ROWS[row][3]:g}"
            time_cell = "-" if ROWS[row][3] is None else fmt(r["time_s"], ".0f")
            lines.append(
                f"| {row} ({target}) | {name} | {time_cell} | "
                f"{fmt(r['final_mean100'], '.1f')} | {fmt(r['eval'], '.1f')}{ci} | {r['fps']:,.0f} | "
                f"{ratio} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
