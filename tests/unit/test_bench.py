"""bench.continuous merges per-seed rows printed by earlier invocations (an Ant seed of three sides takes ~1 h
on 2 cores, so its seeds run in separate invocations); nothing here trains."""

import pytest

from bench.common import median_reached
from bench.continuous import TASKS, _earlier_note, _plain, earlier_rows, render, run_task

OLD_LINE = (
    "ant seed 0: {'sb3_a2c': {'solved': True, 'time_s': 1081.2, 'env_steps': 1550000, "
    "'final_mean': np.float64(3675.9), 'target': np.float64(3675.9), 'fps': 1394.5}, "
    "'target': np.float64(3675.9)}\n"
)


def _row(final: float, time_s: float) -> dict:
    return {"solved": True, "time_s": time_s, "env_steps": 1_000_000, "final_mean": final, "fps": 1500.0}


def test_rows_printed_by_an_earlier_invocation_read_back_the_last_line_per_seed_winning(tmp_path):
    import numpy as np

    later = {"sb3_a2c": _row(3675.9, 1081.2), "target": 3675.9, "ours_sync": _row(np.float64(3837.1), 625.5)}
    log = tmp_path / "ant.log"
    log.write_text(
        OLD_LINE
        + "2026-11-22 WARNING something Ray printed\n"
        + f"ant seed 0: {_plain(later)}\n"
        + "pendulum seed 0: {'target': -250.0}\n"
    )
    rows = earlier_rows(str(log), "ant")
    assert list(rows) == [0]
    assert rows[0]["ours_sync"]["final_mean"] == pytest.approx(3837.1)
    assert rows[0]["sb3_a2c"]["final_mean"] == pytest.approx(3675.9)
    assert isinstance(rows[0]["ours_sync"]["final_mean"], float)


def test_a_log_without_rows_for_the_task_is_one_error_line_and_exit_2(tmp_path, capsys):
    log = tmp_path / "other.log"
    log.write_text(OLD_LINE)
    with pytest.raises(SystemExit) as exited:
        earlier_rows(str(log), "pendulum")
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: {log} has no 'pendulum seed N: {{...}}' line\n"


def test_earlier_seeds_join_the_report_in_seed_order_with_their_source_named():
    earlier = {
        2: {"sb3_a2c": _row(3000.0, 900.0), "target": 3000.0, "ours_sync": _row(3100.0, 450.0)},
        0: {"sb3_a2c": _row(3675.9, 1081.2), "target": 3675.9, "ours_sync": _row(3837.1, 625.5)},
    }
    rows = run_task("ant", TASKS["ant"], [], ["ours_sync"], [], earlier)  # no seed to run: no Ray, no training
    assert [row["seed"] for row in rows] == [0, 2]
    note = _earlier_note(earlier, [], ["ours_sync"], ["ant_s0.log"])
    report = render("ant", TASKS["ant"], rows, ["ours_sync", "sb3_a2c"], "cmd", [], note)
    assert report.index("- seed 0 (target 3675.9)") < report.index("- seed 2 (target 3000.0)")
    assert "| ray-a3c sync | 2/2 |" in report
    assert "(ant_s0.log): seed 0: ray-a3c sync, SB3 A2C (rl-zoo); seed 2: ray-a3c sync, SB3 A2C (rl-zoo)." in report
    median_ratio = (450.0 + 625.5) / (900.0 + 1081.2)  # medians of two values are their means
    assert f"| {median_ratio:.2f} |" in report


def test_a_side_run_again_is_not_credited_to_the_earlier_log():
    earlier = {1: {"sb3_a2c": _row(3000.0, 900.0), "target": 3000.0, "ours_sync": _row(3100.0, 450.0)}}
    note = _earlier_note(earlier, [1], ["ours_sync"], ["ant_s1.log"])
    assert note.endswith("(ant_s1.log): seed 1: SB3 A2C (rl-zoo).")
    assert _earlier_note(earlier, [1], ["ours_sync", "sb3_a2c"], ["ant_s1.log"]) == ""


def test_a_seed_that_never_reached_the_target_counts_as_never_in_the_median():
    assert median_reached([44.5, None, 39.6]) == 44.5  # 2 of 3: the slower solved seed
    assert median_reached([625.5, None]) is None  # 1 of 2: the median seed did not get there
    assert median_reached([10.0, 30.0]) == 20.0
    assert median_reached([]) is None


def test_a_side_solving_one_seed_of_two_gets_no_time_ratio():
    earlier = {
        0: {"sb3_a2c": _row(3675.9, 1081.2), "target": 3675.9, "ours_sync": _row(3837.1, 625.5)},
        1: {
            "sb3_a2c": _row(4607.9, 1709.9),
            "target": 4607.9,
            "ours_sync": {**_row(4349.2, 0.0), "solved": False, "time_s": None, "env_steps": None},
        },
    }
    rows = run_task("ant", TASKS["ant"], [], [], [], earlier)
    report = render("ant", TASKS["ant"], rows, ["ours_sync", "sb3_a2c"], "cmd", [])
    assert "| ray-a3c sync | 1/2 | not solved | not solved | 4093.1 | 1,500 | - |" in report


def test_cartpoles_report_counts_an_unsolved_seed_as_never():
    import argparse

    from bench.cartpole import render as render_cartpole

    def side(steps, time_s):
        return {"solved": steps is not None, "env_steps": steps, "time_s": time_s, "fps": 9000.0, "spawn_s": 0.1}

    rows = [
        (0, side(8000, 0.9), side(10000, 1.6)),
        (1, side(None, None), side(8000, 1.2)),
        (2, side(50000, 5.4), side(32000, 4.8)),
    ]
    report = render_cartpole(rows, 5.0, argparse.Namespace(seeds=3, budget=100000, snapshot_every=2000))
    assert "| **median** | 50,000 | 5.4 | 9,000 | 10,000 | 1.6 | 9,000 |" in report  # not 8,000 / 0.9
    assert "median time to solve: **3.38**" in report


def test_atari_running_mean_starts_at_the_100th_game_and_later_log_lines_win(tmp_path):
    from bench.atari import earlier_rows
    from bench.atari_sides import curve
    from bench.common import first_crossing, running_means

    means = running_means([(float(t), 20.0 if t >= 100 else 0.0) for t in range(200)])
    assert means[0] == (99.0, 0.0) and len(means) == 101
    assert first_crossing(means, 18.0) == 189.0 and first_crossing(means, 21.0) is None
    assert curve(means) == [None, 0.0, 10.0, 20.0]  # the last means at t <= 49.75 (none yet), 99.5, 149.25, 199
    assert curve([]) == [None] * 4
    log = tmp_path / "pong.log"
    log.write_text(
        "pong seed 1: {'sb3': {'time_s': 9.0}}\nnoise\npong seed 1: {'ours': {'time_s': 5.0}}\n"
        "pong seed 1: {'sb3': {'time_s': 7.0}}\nbreakout seed 1: {'ours': {}}\n"
    )
    assert earlier_rows(str(log), "pong") == {1: {"sb3": {"time_s": 7.0}, "ours": {"time_s": 5.0}}}


def test_atari_settings_candidates_are_real_distinct_updates_and_one_is_the_preset():
    from bench.atari_settings import CANDIDATES, candidate_config, shipped_candidate
    from ray_a3c.common.settings.config import from_dict, load_yaml

    preset = from_dict(load_yaml("atari"))
    configs = {name: candidate_config(name) for name in CANDIDATES}
    for name, config in configs.items():  # unknown keys raised above; no two candidates are the same update
        assert [other for other, c in configs.items() if c == config] == [name]
    assert configs[shipped_candidate()] == preset  # the table marks the row the preset ships


def test_atari_settings_table_shows_each_rows_climb_and_says_when_a_log_kept_none():
    import argparse

    from bench.atari_settings import CANDIDATES, shipped_candidate
    from bench.atari_settings import render as render_settings

    shipped = shipped_candidate()
    row = {"final_mean100": -20.3, "eval_mean": -20.0, "eval_std": 1.1, "fps": 3811.0}
    results = {shipped: row, "zoo_rule": {**row, "curve": [None, -20.5, -19.0, -18.2]}}
    args = argparse.Namespace(game="pong", frames=7_000_000, seed=0, workers=2, envs=16)
    table = render_settings(results, args, "cmd")
    assert f"| {shipped} (the preset) | {CANDIDATES[shipped][0]} | not kept | -20.3 | -20.0 +- 1.1 | 3,811 |" in table
    assert "| zoo_rule | rl-zoo's" in table
    assert "| -, -20.5, -19.0 | -20.3 |" in table  # the first quarter had fewer than 100 games


def test_the_pixel_profile_times_a_workers_parts_and_refuses_a_zero_budget(capsys):
    pytest.importorskip("ale_py")
    from bench.pixel_profile import main, worker_profile

    with pytest.raises(SystemExit) as exited:
        main(["--rollouts", "0"])
    assert exited.value.code == 2 and capsys.readouterr().err == "error: --rollouts must be >= 1\n"
    parts, steps = worker_profile("atari", 1, {"env.num_envs_per_worker": 2, "algo.rollout_steps": 4})
    assert steps == 2 * 4  # one rollout of 4 steps on 2 envs, after the uncounted first one
    assert {"env step", "inference", "loss + backward (4 passes)", "PS apply"} <= set(parts)
    assert all(seconds > 0 for seconds in parts.values())
