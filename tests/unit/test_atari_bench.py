"""bench/atari.py without training: the budget rule, the deadline, records, row merging and the sections."""

import argparse
import signal
import subprocess
import sys
import time

import pytest

from bench import atari
from bench.atari_report import SECTION_MAX_BYTES, render_frames, render_minutes, verdicts
from bench.atari_sb3 import ZOO_PPO, algo_kwargs, linear
from bench.atari_sides import (
    NATURE_CNN,
    OUR_OVERRIDES,
    Budget,
    Deadline,
    at_deadline,
    game_means,
    our_network,
    side_result,
    thinned,
)


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def one_error_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        atari.main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    return err


def test_a_race_is_sized_in_minutes_or_frames_never_both(capsys):
    assert "exclude each other" in one_error_line(capsys, ["--minutes", "60", "--frames", "1000", "--sides", "ours"])
    assert "--minutes must be > 0" in one_error_line(capsys, ["--minutes", "0", "--sides", "ours"])
    assert "--frames must be > 0" in one_error_line(capsys, ["--frames", "-4", "--sides", "ours"])
    assert atari.parse_budget(60, None) == Budget(seconds=3600)
    assert atari.parse_budget(None, None) == Budget(frames=atari.DEFAULT_FRAMES)
    assert atari.parse_budget(None, 400) == Budget(frames=400) and Budget(frames=400).agent_steps() == 100
    assert Budget(seconds=60).agent_steps() * 4 > 10**11  # out of any run's reach: the clock stops it
    for wrong in ({}, {"frames": 4, "seconds": 1.0}):
        with pytest.raises(ValueError):
            Budget(**wrong)


def test_a_minutes_race_takes_one_side_and_refuses_sides_it_cannot_run(capsys, monkeypatch, tmp_path):
    assert "one side per invocation" in one_error_line(capsys, ["--minutes", "1", "--sides", "ours,sf"])
    monkeypatch.setattr(atari.importlib.util, "find_spec", lambda name: None)
    assert "stable-baselines3 is not installed" in one_error_line(capsys, ["--minutes", "1", "--sides", "sb3_ppo"])
    monkeypatch.setattr(atari, "SF_PYTHON", str(tmp_path / "absent"))
    assert "bench/.sf-venv is missing" in one_error_line(capsys, ["--minutes", "1", "--sides", "sf"])
    (tmp_path / "python").write_text("")
    monkeypatch.setattr(atari, "SF_PYTHON", str(tmp_path / "python"))
    assert "--envs must be even" in one_error_line(capsys, ["--minutes", "1", "--sides", "sf", "--envs", "7"])
    assert "no such file" in one_error_line(capsys, ["--minutes", "1", "--sides", "none", "--rows-from", "nope.log"])


def test_the_deadline_counts_from_launch_and_its_share_left_falls_to_zero():
    clock = FakeClock()
    deadline = Deadline(100.0, clock=clock)
    assert (deadline.left(), deadline.passed(), deadline.fraction_left()) == (100.0, False, 1.0)
    clock.now += 75
    assert (deadline.elapsed(), deadline.left(), deadline.fraction_left()) == (75.0, 25.0, 0.25)
    clock.now += 30
    assert deadline.passed() and deadline.left() == 0.0 and deadline.fraction_left() == 0.0
    shared = Deadline.decode(deadline.encode())  # as Sample Factory's processes read it
    assert (shared.launch, shared.seconds) == (1000.0, 100.0)
    unbounded = Deadline(None, clock=clock)
    clock.now += 10**6
    assert not unbounded.passed() and unbounded.fraction_left() == 1.0 and unbounded.elapsed() == 10**6
    assert Deadline.decode(unbounded.encode()).seconds is None
    assert at_deadline(unbounded, pytest.fail) is None  # a frame budget sets no timer


def test_at_the_deadline_a_running_side_gets_its_stop_signal():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    t0 = time.monotonic()
    timer = at_deadline(Deadline(0.3), proc.send_signal, signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM and 0.25 < time.monotonic() - t0 < 5
    timer.cancel()


def test_a_record_counts_only_games_within_the_clock_budget_and_keeps_its_curve():
    games = [(float(t), 4 * 1000 * t, 20.0 if t >= 100 else -21.0) for t in range(300)]
    means = game_means(games)
    assert means[0] == (99.0, 396_000, -21.0) and len(means) == 201  # from the 100th game, frames carried
    evaluation = {"eval_mean": 19.0, "eval_std": 1.0, "eval_games": 30}
    # the mean after game t (t >= 100) is -21 + 41 (t - 99) / 100: 18 first at t = 195, -0.09 at t = 150
    record = side_result(means, 18.0, evaluation, 2000.0, 1_200_000, Budget(seconds=150.0), "net")
    assert record["time_s"] is None and record["final_mean100"] == pytest.approx(-0.09)
    assert record["curve_points"][-1] == (150.0, 600_000, -0.09) and record["network"] == "net"
    frames_race = side_result(means, 18.0, evaluation, 2000.0, 1_200_000, Budget(frames=1_200_000), "net")
    assert frames_race["time_s"] == 195.0 and frames_race["frames_to_target"] == 780_000
    assert len(frames_race["curve_points"]) == 12 and frames_race["curve_points"][-1][0] == 299.0
    assert thinned(means[:3]) == [(99.0, 396_000, -21.0), (100.0, 400_000, -20.59), (101.0, 404_000, -20.18)]


def test_sb3_ppo_is_rl_zoos_atari_entry_and_its_linear_schedules_follow_the_budget():
    # rl-zoo's hyperparams/ppo.yml, `atari`: AtariWrapper, frame_stack 4, CnnPolicy, these, n_timesteps 1e7
    zoo = {
        "n_envs": 8,
        "n_steps": 128,
        "n_epochs": 4,
        "batch_size": 256,
        "learning_rate": 2.5e-4,  # lin_2.5e-4
        "clip_range": 0.1,  # lin_0.1
        "ent_coef": 0.01,
        "vf_coef": 0.5,
    }
    assert ZOO_PPO == zoo
    clock = FakeClock()
    deadline = Deadline(3600.0, clock=clock)
    kwargs = algo_kwargs("ppo", deadline)
    assert set(kwargs) == set(zoo) - {"n_envs"}
    assert {k: kwargs[k] for k in ("n_steps", "n_epochs", "batch_size", "ent_coef", "vf_coef")} == {
        k: zoo[k] for k in ("n_steps", "n_epochs", "batch_size", "ent_coef", "vf_coef")
    }
    assert kwargs["learning_rate"](1.0) == 2.5e-4 and kwargs["clip_range"](1.0) == 0.1
    clock.now += 2700  # three quarters of the clock gone: SB3's own progress (near 1 here) is not what counts
    assert kwargs["learning_rate"](0.999) == pytest.approx(2.5e-4 / 4) and kwargs["clip_range"](0.9) == 0.025
    clock.now += 1000
    assert kwargs["learning_rate"](0.99) == 0.0
    by_frames = linear(2.5e-4, Deadline(None))
    assert by_frames(0.5) == pytest.approx(1.25e-4) and by_frames(0.0) == 0.0  # the zoo's lin_ over frames
    assert algo_kwargs("a2c", deadline)["learning_rate"](1.0) == 0.0  # A2C's rate falls over the clock too


def test_each_side_names_its_network_and_the_nature_row_is_network_equal_to_sb3_and_sf():
    assert our_network(OUR_OVERRIDES["ours"]) == "A3C (16-32, fc 256, ELU)"  # the atari preset's
    assert our_network(OUR_OVERRIDES["ours_nature"]) == NATURE_CNN


def record(time_s, fps, eval_mean, network="n", budget="60 minutes"):
    return {
        "time_s": time_s,
        "final_mean100": 10.0,
        "eval_mean": eval_mean,
        "eval_std": 2.0,
        "eval_games": 30,
        "fps": fps,
        "frames": int(fps * 3600),
        "network": network,
        "budget": budget,
    }


def test_rows_merge_across_invocations_and_a_row_of_another_budget_is_refused(tmp_path, capsys):
    first, second = tmp_path / "pong_ours_0.log", tmp_path / "pong_sf_0.log"
    first.write_text(f"noise\npong seed 0: {{'ours': {record(900.0, 3000.0, 19.0)}}}\n")
    second.write_text(
        f"pong seed 0: {{'sf': {record(None, 1200.0, 15.0)}}}\npong seed 1: {{'sf': {record(1.0, 1.0, 1.0)}}}\n"
    )
    rows = atari.merged_rows("pong", [str(first), str(second)], Budget(seconds=3600))
    assert set(rows) == {0, 1} and set(rows[0]) == {"ours", "sf"} and rows[0]["ours"]["time_s"] == 900.0
    frames_log = tmp_path / "old.log"
    frames_log.write_text("pong seed 0: {'sb3': {'time_s': None}}\n")  # before records named their budget
    assert atari.merged_rows("pong", [str(frames_log)], Budget(frames=10)) == {0: {"sb3": {"time_s": None}}}
    with pytest.raises(SystemExit):
        atari.merged_rows("pong", [str(frames_log)], Budget(seconds=3600))
    assert "ran frames, not 60 minutes" in capsys.readouterr().err


def test_verdicts_say_plainly_where_ours_loses():
    ours = [record(1000.0, 3000.0, 30.0), record(1400.0, 2800.0, 20.0)]
    assert verdicts("pong", ours, [record(3000.0, 1500.0, 10.0)], "sb3_ppo") == [
        "time 0.40 (<= 0.5: met)",
        "frames/s 1.93x (>= 1.5x: met)",
    ]
    slow_and_late = verdicts("breakout", ours, [record(1500.0, 2000.0, 40.0)], "sf")
    assert slow_and_late == [
        "time 0.80 (<= 0.5: loses)",
        "frames/s 1.45x (>= 2x: loses)",
        "eval 25.0 vs 40.0 (loses)",
    ]
    half_solved = [record(1000.0, 3000.0, 30.0), record(None, 3000.0, 30.0)]  # the median seed never got there
    assert verdicts("pong", half_solved, [record(None, 1000.0, 0.0)], "sb3")[:2] == [
        "neither reached 18",
        "frames/s 3.00x",
    ]
    assert verdicts("pong", half_solved, [record(5.0, 1000.0, 0.0)], "sf")[0] == "time: ours never reached 18 (loses)"
    assert verdicts("pong", ours, [record(None, 1000.0, 0.0)], "sf")[0] == "time: only ours reached 18 (met)"


def test_the_minutes_section_has_a_line_per_side_and_seed_and_stays_small():
    ours_cnn = our_network(OUR_OVERRIDES["ours"])
    pong = {
        0: {
            "ours": record(900.0, 3100.0, 19.5, ours_cnn),
            "ours_nature": record(1100.0, 2100.0, 19.0, NATURE_CNN),
            "sb3_ppo": record(2500.0, 1600.0, 18.0, NATURE_CNN),
            "sf": record(None, 900.0, 12.0, NATURE_CNN),
        },
        1: {"ours": record(1000.0, 3000.0, 19.0, ours_cnn)},
    }
    breakout = {0: {"ours": record(None, 3100.0, 30.0, ours_cnn), "sf": record(None, 900.0, 40.0, NATURE_CNN)}}
    args = argparse.Namespace(minutes=60.0, workers=2, envs=16)
    logs = " ".join(
        f"{row}_{side}_{seed}.log"
        for row, seeds in (("pong", pong), ("breakout", breakout))
        for seed in seeds
        for side in seeds[seed]
    )
    merge = (
        f".venv/bin/python -m bench.atari --rows pong breakout --minutes 60 --seed 0 --sides none --rows-from {logs}"
    )
    section = render_minutes({"pong": pong, "breakout": breakout}, args, merge)
    assert section.startswith("## Atari races: 60 minutes per side")
    assert "--sides SIDE --no-write > ROW_SIDE_SEED.log`, merged by `" in section and logs not in section
    assert (
        "| Pong (18) | ray-a3c | A3C (16-32, fc 256, ELU) | 1 | 10,800,000 | 3,000 | 1000 | 10.0 | 19.0 +- 2.0 (30) |"
        in section
    )
    assert f"| Pong (18) | SB3 PPO (rl-zoo) | {NATURE_CNN} | 0 | 5,760,000 | 1,600 | 2500 |" in section
    assert f"| Breakout (50) | Sample Factory APPO | {NATURE_CNN} | 0 | 3,240,000 | 900 | never |" in section
    assert "- Pong, ours / SB3 PPO: time 0.38 (<= 0.5: met); frames/s 1.91x (>= 1.5x: met)" in section
    assert "- Pong, ours (nature) / SB3 PPO: time 0.44 (<= 0.5: met); frames/s 1.31x (>= 1.5x: loses)" in section
    assert (
        "- Breakout, ours / SF: neither reached 50; frames/s 3.44x (>= 2x: met); eval 30.0 vs 40.0 (loses)" in section
    )
    assert "SB3 A2C" not in section  # only the sides that ran are described
    assert section.count("\n| ") == 1 + 7 and len(section.encode()) <= SECTION_MAX_BYTES
    alone = render_minutes(
        {"pong": {0: {"ours": pong[0]["ours"]}}}, argparse.Namespace(minutes=1.0, workers=2, envs=16), "c"
    )
    assert alone.startswith("## Atari races: 1 minute per side") and "this section: `c`." in alone
    assert alone.endswith("- no pair of ours and a peer on one game yet")


def test_the_frames_section_still_renders_medians_over_seeds():
    rows = {"pong": {0: {"ours": record(900.0, 3000.0, 19.0), "sb3": record(1800.0, 2000.0, 15.0)}}}
    args = argparse.Namespace(frames=10_000_000, workers=2, envs=16, eval_games=30)
    section = render_frames(rows, args, "cmd")
    assert section.startswith("## Atari: ray-a3c vs SB3 vs Sample Factory 2.1.1, 10,000,000 frames")
    assert "| Pong (18) | SB3 A2C (rl-zoo) | 1/1 | 1800 | 10.0 | 15.0 | 2,000 | 0.50 |" in section
