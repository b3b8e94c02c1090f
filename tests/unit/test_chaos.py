"""The chaos soak's pure parts (bench/chaos_plan.py, bench/chaos_report.py, bench/chaos_hang.py): its seeded
schedule, the memory growth rule, the hang lines it reads back, its table and verdicts. No Ray, no training;
the soak itself runs in tests/slow/test_chaos_slow.py."""

import dataclasses
import os
import threading

import gymnasium as gym
import numpy as np
import pytest

from bench.chaos_hang import HangClaim, HangOnTrigger, pull_trigger, read_claims
from bench.chaos_plan import (
    Fault,
    NamedHang,
    PSKill,
    Sample,
    ScheduleOptions,
    build_schedule,
    growth_percent,
    parse_hang,
    planned_counts,
    render_table,
    store_series,
)
from bench.chaos_report import Outcome, Verdict, judge, render_section
from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.wire.packet import HangReport

HOUR = ScheduleOptions(3600, 180, 720, 1, 1, num_workers=2, seed=0)  # the soak's defaults
DENSE = ScheduleOptions(300, 45, 120, 1, 1, num_workers=2, seed=0)  # the slow test's


@pytest.mark.parametrize("opts", [HOUR, DENSE], ids=["hour", "dense"])
def test_the_schedule_holds_the_counts_the_options_ask_for_inside_its_window_apart(opts):
    events = build_schedule(opts)
    counts = {fault: sum(e.fault is fault for e in events) for fault in Fault}
    assert counts == planned_counts(opts)
    start, end = opts.window
    times = [e.at_s for e in events]
    assert times == sorted(times) and start <= times[0] and times[-1] <= end
    assert all(b - a >= opts.min_gap_s - 0.1 for a, b in zip(times, times[1:], strict=False))  # 0.1: rounding
    assert {e.worker_rank for e in events if e.fault is Fault.WORKER_KILL} <= {0, 1}
    assert all(e.worker_rank is None for e in events if e.fault is not Fault.WORKER_KILL)


def test_an_hour_of_the_defaults_is_twenty_worker_kills_five_ps_kills_one_evaluator_kill_one_hang():
    assert planned_counts(HOUR) == {Fault.WORKER_KILL: 20, Fault.PS_KILL: 5, Fault.EVALUATOR_KILL: 1, Fault.HANG: 1}
    assert planned_counts(DENSE) == {Fault.WORKER_KILL: 6, Fault.PS_KILL: 2, Fault.EVALUATOR_KILL: 1, Fault.HANG: 1}


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another():
    assert build_schedule(HOUR) == build_schedule(dataclasses.replace(HOUR))
    assert build_schedule(HOUR) != build_schedule(dataclasses.replace(HOUR, seed=1))


def test_a_schedule_too_dense_for_its_gaps_is_refused():
    with pytest.raises(A3CError, match="do not fit 20s apart"):
        build_schedule(dataclasses.replace(DENSE, worker_kill_every_s=10))


def test_growth_compares_medians_from_the_baseline_minute_to_the_end():
    flat_then_up = [(m, 100.0) for m in range(10)] + [(10, 100.0), (11, 300.0), (12, 100.0), (13, 104.0)]
    flat_then_up += [(14, 104.0), (15, 104.0)]
    assert growth_percent(flat_then_up, from_minute=10) == pytest.approx(4.0)  # the spike at 11 is outvoted
    assert growth_percent([(m, 0.0) for m in range(12)], 0) == 0.0
    assert growth_percent([(m, float(m > 5)) for m in range(12)], 0) == float("inf")
    assert growth_percent(flat_then_up, from_minute=12) is None  # 4 samples: not measured


def test_a_hang_line_reads_back_as_the_report_the_watchdog_named():
    report = HangReport(1, 7, 1234, 16, 42, 30.2, 1, 3)
    line = f"{report.describe()}: its vector env was rebuilt ({report.budget_text()})"
    assert parse_hang(line, 5.0) == NamedHang(1, 7, 1234, 42, 5.0)
    in_reset = dataclasses.replace(report, episode_step=0)
    assert parse_hang(in_reset.describe()) == NamedHang(1, 7, 1234, 0)
    assert parse_hang(dataclasses.replace(report, env_index=-1).describe()) is None  # a whole vector env
    assert parse_hang("worker-1 failed: RayActorError; restart #2 in 1s") is None


def _sample(minute: float, rss: float, steps: int, restarts=None, pinned: int | None = 2_000_000) -> Sample:
    return Sample(minute, 70.0, 80.5, int(rss * 1e6), 3_000_000, steps, 1000.0, restarts or {}, 0, 0, pinned)


def test_the_table_has_a_row_per_sample_and_keeps_every_nth_and_the_last():
    samples = [_sample(m, 3000 + m, m * 60_000, {"worker": m // 3, "ps": 0, "evaluator": 0}) for m in range(1, 8)]
    table = render_table(samples)
    assert table.count("\n") == 2 + 6 and "| 7.0 | 70.0 | 80.5 | 3,007 | 2.0 / 3.0 | 1,000 | 2/0/0 | 0 | 0 |" in table
    kept = [line.split(" | ")[0] for line in render_table(samples, every=3).splitlines()[2:]]
    assert kept == ["| 3.0", "| 6.0", "| 7.0"]


def test_the_store_target_judges_held_bytes_not_the_traffic_in_flight():
    rng = np.random.default_rng(0)
    samples = [_sample(m, 3000.0, m * 60_000) for m in range(1, 41)]
    for s in samples:  # freed-not-deleted copies of a 2.7 MB push: 0-20 of them in any one reading
        s.object_store_bytes = 17_000_000 + int(rng.integers(0, 20)) * 2_700_000
    samples[9].object_store_bytes = 17_000_000  # minute 10 read right after a PS kill: no traffic
    what, series = store_series(samples)
    assert what == "object store bytes held" and growth_percent(series, 10) == 0.0
    leaking = [dataclasses.replace(s, object_store_pinned_bytes=2_000_000 + int(s.minute) * 900_000) for s in samples]
    assert growth_percent(store_series(leaking)[1], 10) > 100  # +0.9 MB a minute is seen
    unsampled = [dataclasses.replace(s, object_store_pinned_bytes=None) for s in samples]  # older soaks' samples
    what, series = store_series(unsampled)
    assert what == "object store bytes in use" and series[0] == (1, samples[0].object_store_bytes)


def _outcome(**changes) -> Outcome:
    samples = [_sample(m, 3000.0, m * 60_000) for m in range(1, 16)]
    base = Outcome(
        run_exit=0,
        run_error="",
        planned={},
        kills={"worker": 3, "ps": 1, "evaluator": 1},
        restarts={"worker": 3, "ps": 1, "evaluator": 1},
        skipped=[],
        hangs_pulled=1,
        claims=[HangClaim(1234, 42, hung_at=1000.0, pid=9)],
        named=[NamedHang(1, 7, 1234, 42, named_at=1035.0)],
        step_timeout_s=30.0,
        t0_wall=1000.0 - 60 * 4,  # the hang at minute 4
        samples=samples,
        baseline_minute=10,
        ps_kills=[PSKill(300.0, 5000, 4000, 1010, 1200)],
        summary_lost_updates=1010,
        final_eval=80.1,
        final_eval_std=9.0,
        target_return=75,
    )
    return dataclasses.replace(base, **changes)


def test_every_target_passes_on_a_run_that_meets_them():
    checks = judge(_outcome())
    assert [c.verdict for c in checks] == [Verdict.PASS] * 8, [c.line() for c in checks]
    assert "worker 1, env 7, seed 1234, step 42: named after 35.0 s (limit 40)" in checks[2].detail


def test_each_target_fails_or_is_not_measured_on_its_own_fault():
    def verdicts(**changes) -> list[Verdict]:
        return [c.verdict for c in judge(_outcome(**changes))]

    assert verdicts(run_exit=2)[0] is Verdict.FAIL
    assert verdicts(restarts={"worker": 2, "ps": 1, "evaluator": 1})[1] is Verdict.FAIL
    assert verdicts(named=[NamedHang(1, 7, 1234, 42, named_at=1041.0)])[2] is Verdict.FAIL  # too late
    assert verdicts(named=[NamedHang(1, 7, 99, 42, named_at=1001.0)])[2] is Verdict.FAIL  # another env
    assert verdicts(claims=[])[2] is Verdict.FAIL  # the trigger was made, no env took it
    flat = [_sample(m, 3000.0, 1000) for m in range(1, 16)]
    assert verdicts(samples=flat)[3] is Verdict.FAIL  # env steps stopped after the hang
    grown = [_sample(m, 3000.0 * (1 + 0.03 * m), m * 60_000) for m in range(1, 16)]  # +6.8%: 11 to 14
    assert verdicts(samples=grown)[4] is Verdict.FAIL
    assert verdicts(baseline_minute=20)[4:6] == [Verdict.NOT_MEASURED] * 2
    assert verdicts(ps_kills=[PSKill(300.0, 5000, 3000, 2000, 1200)])[6] is Verdict.FAIL  # > one interval
    assert verdicts(summary_lost_updates=0)[6] is Verdict.FAIL  # lost but not reported
    assert verdicts(final_eval=60.0)[7] is Verdict.FAIL
    assert verdicts(final_eval=None)[7] is Verdict.NOT_MEASURED


def test_the_benchmarks_section_stays_small_for_an_hour_of_samples():
    samples = [_sample(m, 3000.0, m * 60_000, {"worker": 20, "ps": 5, "evaluator": 1}) for m in range(1, 61)]
    outcome = _outcome(samples=samples)
    cmd = "python -m bench.chaos --minutes 60 --seed 0 --out-dir runs/chaos-60"
    section = render_section(
        outcome, judge(outcome), "## Chaos soak: vizdoom_basic, 60 minutes (2026-12-07)", cmd, "m" * 90
    )
    assert len(section.encode()) <= 2000, len(section.encode())
    assert section.count("\n| ") == 1 + 6 and "PASS: restarts equal kills" in section


def test_exactly_one_env_takes_a_trigger_and_its_step_never_returns(tmp_path):
    trigger = str(tmp_path / "hang.trigger")
    envs = [HangOnTrigger(gym.make("CartPole-v1"), trigger, poll_s=0.0) for _ in range(2)]
    for i, env in enumerate(envs):
        env.reset(seed=10 + i)
        env.step(0)
    pull_trigger(trigger)
    hung = threading.Thread(target=envs[1].step, args=(0,), daemon=True)  # left blocked, as the watchdog leaves it
    hung.start()
    hung.join(timeout=0.3)
    assert hung.is_alive() and not os.path.exists(trigger)
    assert len(envs[0].step(0)) == 5  # the trigger is taken: the other env steps on
    (claim,) = read_claims(trigger)
    assert (claim.seed, claim.episode_step, claim.pid) == (11, 2, os.getpid())
