"""Chaos soak: a long run of a preset (vizdoom_basic, 2 workers, evaluator on, checkpoints as shipped) while a
seeded schedule SIGKILLs a random worker every ~3 minutes, the parameter server every ~12 minutes, the evaluator
once, and makes one env's step hang forever once. Every minute it samples the session's RSS (every process),
the object store's bytes, env steps/s, restarts by kind, hangs named and updates lost; at the end a fresh
100-episode evaluation of the run's latest checkpoint. It prints the table and each target's PASS / FAIL /
NOT MEASURED, and writes samples.json, table.md, driver.log and chaos.png into --out-dir; --write updates
BENCHMARKS.md's "Chaos soak" section. Exit code: the run's own (0: it ended by its rule or budget).

    .venv/bin/python -m bench.chaos [--minutes 60] [--seed 0] [--out-dir runs/chaos] [--write]

The schedule is bench/chaos_plan.py's (pure, unit-tested), the faults and samples bench/chaos_run.py's, the hung
env bench/chaos_hang.py's (a training-only env.wrappers entry), the verdict bench/chaos_report.py's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import threading
import time

from bench.chaos_hang import read_claims
from bench.chaos_plan import Fault, ScheduleOptions, build_schedule, render_table
from bench.chaos_report import SECTION, Outcome, judge, render_section, write_plot
from bench.common import BENCHMARKS, FINAL_SEED, fail, fresh_evaluation, machine, today, update_section
from ray_a3c.common.reporting.errors import A3CError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANG_WRAPPER = "bench.chaos_hang:HangOnTrigger"
BENCHMARKS_MAX_BYTES = 40_000  # tests/unit/test_docs_links.py's limit
FINAL_EPISODES = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0, help="training time (the run's run.time_limit_s)")
    p.add_argument("--preset", default="vizdoom_basic")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="the run's run.seed and the schedule's")
    p.add_argument("--worker-kill-every-s", type=float, default=180.0, help="0: no worker kills")
    p.add_argument("--ps-kill-every-s", type=float, default=720.0, help="0: no PS kills")
    p.add_argument("--evaluator-kills", type=int, default=1)
    p.add_argument("--hangs", type=int, default=1, help="envs whose step never returns, one at a time")
    p.add_argument("--min-gap-s", type=float, default=20.0, help="at least this long between two faults")
    p.add_argument("--sample-every-s", type=float, default=60.0)
    p.add_argument("--baseline-minute", type=float, default=10.0, help="memory growth is measured from here")
    p.add_argument("--target-return", type=float, default=75.0, help="the final evaluation's target")
    p.add_argument("--step-timeout-s", type=float, help="env.step_timeout_s (default: the preset's)")
    p.add_argument(
        "--out-dir", default=os.path.join("runs", time.strftime("chaos-%Y%m%d-%H%M%S")), help="must be new or empty"
    )
    writing = p.add_mutually_exclusive_group()
    writing.add_argument("--write", action="store_true", help="update BENCHMARKS.md's Chaos soak section")
    writing.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone (the default)")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.sample_every_s <= 0 or args.workers < 1:
        fail("--minutes, --sample-every-s and --workers must be > 0")
    if min(args.worker_kill_every_s, args.ps_kill_every_s, args.evaluator_kills, args.hangs, args.min_gap_s) < 0:
        fail("the schedule's options must be >= 0")
    if os.path.isdir(args.out_dir) and os.listdir(args.out_dir):
        fail(f"--out-dir '{args.out_dir}' is not empty (nothing there is overwritten); choose another")
    return args


def schedule_options(args: argparse.Namespace) -> ScheduleOptions:
    return ScheduleOptions(
        duration_s=args.minutes * 60,
        worker_kill_every_s=args.worker_kill_every_s,
        ps_kill_every_s=args.ps_kill_every_s,
        evaluator_kills=args.evaluator_kills,
        hangs=args.hangs,
        num_workers=args.workers,
        seed=args.seed,
        min_gap_s=args.min_gap_s,
    )


def prepare(args: argparse.Namespace, trigger: str):
    """The run, checked and its dir made (A3CError before anything starts): the preset with the soak's budget,
    no stop return (the schedule needs the whole time) and the hang wrapper, training only."""
    from ray_a3c.cluster.run.launch import build_config, prepare_new, use_working_directory
    from ray_a3c.common.settings.config import load_yaml

    use_working_directory()  # the workers import bench.chaos_hang from here, as `a3c train` finds user modules
    wrappers = list(load_yaml(args.preset).get("env", {}).get("wrappers") or [])
    wrappers.append({"wrapper": HANG_WRAPPER, "kwargs": {"trigger": trigger}, "training_only": True})
    overrides = {
        "run.seed": args.seed,
        "run.num_workers": args.workers,
        "run.time_limit_s": args.minutes * 60,
        "run.total_env_steps": 10**12,
        "run.stop_return": None,
        "run.run_dir": os.path.join(args.out_dir, "run"),
        "env.wrappers": wrappers,
    }
    if args.step_timeout_s is not None:
        overrides["env.step_timeout_s"] = args.step_timeout_s
    cfg = build_config(args.preset, overrides)
    if not cfg.cluster.include_dashboard:
        raise A3CError("the chaos soak finds actor processes through the Ray dashboard: keep cluster.include_dashboard")
    return prepare_new(cfg, args.preset)


def run(args: argparse.Namespace, prepared, events, trigger: str) -> tuple[Outcome, object]:
    """Train in this thread with the monkey and the sampler beside it -> (the outcome, the summary or None)."""
    from bench.chaos_run import LogTap, Monkey, Sampler, Session
    from ray_a3c.cluster.run.driver import Trainer
    from ray_a3c.cluster.run.runtime import start_ray
    from ray_a3c.common.reporting.logs import log

    tap = LogTap(os.path.join(args.out_dir, "driver.log"))
    log.addHandler(tap)
    log.setLevel(logging.INFO)
    log.propagate = False
    ray_start = start_ray(prepared.config)
    trainer = Trainer(prepared.config, prepared.spaces, prepared.run_dir)
    stop = threading.Event()
    session = Session(trainer, ray_start[2], stop)
    monkey = Monkey(session, events, trigger)
    sampler = Sampler(session, tap, args.sample_every_s, args.minutes * 60)
    threads = [threading.Thread(target=part.run, daemon=True) for part in (monkey, sampler)]
    for thread in threads:
        thread.start()
    summary, run_exit, error = None, 0, ""
    try:
        summary = trainer.train(ray_start)
    except A3CError as exc:
        run_exit, error = 2, str(exc)
    except Exception as exc:  # noqa: BLE001 - the soak reports how the run failed
        run_exit, error = 1, f"{type(exc).__name__}: {exc}"
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    log.removeHandler(tap)
    tap.file.close()
    s = trainer.summary
    outcome = Outcome(
        run_exit=run_exit,
        run_error=error,
        planned={},
        kills=monkey.done.kills,
        restarts=dict(s.restarts),
        skipped=monkey.done.skipped,
        hangs_pulled=len(monkey.done.hangs_pulled),
        claims=read_claims(trigger),
        named=tap.hangs,
        step_timeout_s=trainer.config.env.step_timeout_s,
        t0_wall=session.t0_wall,
        samples=sampler.samples,
        baseline_minute=args.baseline_minute,
        ps_kills=monkey.done.ps_kills,
        summary_lost_updates=s.lost_updates,
        final_eval=None,
        final_eval_std=None,
        target_return=args.target_return,
        env_steps=s.env_steps,
        delivered=monkey.done.log,
        extra={
            "unsettled_events": monkey.done.unsettled,
            "reason": s.reason,
            "version": s.version,
            "evaluator_busy_fraction": round(s.eval_s / max(s.train_s, 1e-9), 3),
        },
    )
    return outcome, summary


def final_evaluation(outcome: Outcome, run_dir: str) -> None:
    """`a3c evaluate RUN --checkpoint latest`, FINAL_EPISODES fresh episodes (the run's eval policy)."""
    try:
        result = fresh_evaluation(os.path.abspath(run_dir), FINAL_EPISODES, FINAL_SEED, ROOT)
    except Exception as exc:  # noqa: BLE001 - no checkpoint, or the evaluation failed: NOT MEASURED, said why
        outcome.extra["final_eval_error"] = f"{type(exc).__name__}: {exc}"
        return
    outcome.final_eval, outcome.final_eval_std = result["mean_return"], result.get("std_return")


def command_line(args: argparse.Namespace) -> str:
    return "python -m bench.chaos " + " ".join(a for a in sys.argv[1:] if a != "--write")


def report(args: argparse.Namespace, outcome: Outcome) -> None:
    checks = judge(outcome)
    table = render_table(outcome.samples)
    with open(os.path.join(args.out_dir, "table.md"), "w") as fh:
        fh.write(table + "\n")
    with open(os.path.join(args.out_dir, "samples.json"), "w") as fh:
        json.dump({**dataclasses.asdict(outcome), "checks": [dataclasses.asdict(c) for c in checks]}, fh, indent=1)
    print("\n" + table)
    print(write_plot(outcome, os.path.join(args.out_dir, "chaos.png")))
    for skipped in outcome.skipped:
        print(f"not delivered: {skipped}")
    for c in checks:
        print(c.line())
    if args.write:
        header = f"## Chaos soak: {args.preset}, {args.minutes:g} minutes, {args.workers} workers ({today()})"
        update_section(SECTION, render_section(outcome, checks, header, command_line(args), machine()))
        size = os.path.getsize(BENCHMARKS)
        if size > BENCHMARKS_MAX_BYTES:
            print(f"warning: BENCHMARKS.md is {size} bytes (at most {BENCHMARKS_MAX_BYTES}): move older runs out")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = schedule_options(args)
    try:
        events = build_schedule(opts)
        os.makedirs(args.out_dir, exist_ok=True)
        trigger = os.path.abspath(os.path.join(args.out_dir, "hang.trigger"))
        prepared = prepare(args, trigger)
    except A3CError as exc:
        fail(str(exc))
    print("chaos schedule: " + ", ".join(f"{e.at_s:.0f}s {e.fault.value}" for e in events), flush=True)
    outcome, _ = run(args, prepared, events, trigger)
    outcome.planned = {fault.value: sum(e.fault is fault for e in events) for fault in Fault}
    final_evaluation(outcome, prepared.run_dir)
    report(args, outcome)
    return outcome.run_exit


if __name__ == "__main__":
    sys.exit(main())
